/* Elementwise ops: broadcasting binary arithmetic and unary maps. */
#include <math.h>

#include "autodiff/autodiff_internal.h"

/* Broadcast shape of a and b (NumPy rules), or an error naming both shapes. */
static int broadcast_shape(mnas_tape *tp, const char *fn, const mnas_tensor *a, const mnas_tensor *b,
                           int *ndim, int64_t shape[4])
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t ea = ia >= 0 ? a->shape[ia] : 1, eb = ib >= 0 ? b->shape[ib] : 1;
        if (ea != eb && ea != 1 && eb != 1) {
            char sa[MNAS_SHAPE_BUF], sb[MNAS_SHAPE_BUF];
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: shapes %s and %s do not broadcast", fn,
                             mnas__shape_str(sa, sizeof sa, a->ndim, a->shape),
                             mnas__shape_str(sb, sizeof sb, b->ndim, b->shape));
            return 0;
        }
        shape[i] = ea > eb ? ea : eb;
    }
    *ndim = nd;
    return 1;
}

static mnas_tensor *binary(mnas_tape *tp, const char *fn, int op, mnas_kbinop kop, mnas_tensor *a,
                           mnas_tensor *b, int b_is_constant)
{
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "a", a) || !mnas__input_ok(tp, fn, "b", b)) return NULL;
    mnas_tensor *out;
    if (mnas__same_shape(a, b)) {
        out = mnas__tape_new_like(tp, fn, a);
        if (!out) return NULL;
        mnas__k_binary_flat(kop, a->size, out->data, a->data, b->data);
    } else {
        int nd;
        int64_t shape[4], os[4], as[4], bs[4];
        if (!broadcast_shape(tp, fn, a, b, &nd, shape)) return NULL;
        out = mnas__tape_new(tp, fn, nd, shape);
        if (!out) return NULL;
        mnas__pad4(out, os);
        mnas__pad4(a, as);
        mnas__pad4(b, bs);
        mnas__k_binary(kop, out->data, os, a->data, as, b->data, bs);
    }
    mnas_tensor *ins[2] = { a, b };
    if (b_is_constant) {
        /* The mask is an input the backward rule reads, but no gradient
         * flows into it: record with it masked out of requires_grad. */
        mnas_node *node;
        if (!mnas__finish(tp, fn, op, out, 1, ins, &node)) return NULL;
        if (node) {
            node->nin = 2;
            node->in[1] = b;
            node->inode[1] = NULL;
        }
        return out;
    }
    return mnas__finish(tp, fn, op, out, 2, ins, NULL);
}

mnas_tensor *mnas_add(mnas_tape *tp, mnas_tensor *a, mnas_tensor *b)
{
    return binary(tp, "mnas_add", OP_ADD, K_ADD, a, b, 0);
}
mnas_tensor *mnas_sub(mnas_tape *tp, mnas_tensor *a, mnas_tensor *b)
{
    return binary(tp, "mnas_sub", OP_SUB, K_SUB, a, b, 0);
}
mnas_tensor *mnas_mul(mnas_tape *tp, mnas_tensor *a, mnas_tensor *b)
{
    return binary(tp, "mnas_mul", OP_MUL, K_MUL, a, b, 0);
}
mnas_tensor *mnas_div(mnas_tape *tp, mnas_tensor *a, mnas_tensor *b)
{
    return binary(tp, "mnas_div", OP_DIV, K_DIV, a, b, 0);
}
mnas_tensor *mnas_mask_mul(mnas_tape *tp, mnas_tensor *x, mnas_tensor *mask)
{
    return binary(tp, "mnas_mask_mul", OP_MASK_MUL, K_MUL, x, mask, 1);
}

static mnas_tensor *unary(mnas_tape *tp, const char *fn, int op, mnas_kunop kop, mnas_tensor *x, double p)
{
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x)) return NULL;
    mnas_tensor *out = mnas__tape_new_like(tp, fn, x);
    if (!out) return NULL;
    mnas__k_unary(kop, x->size, x->data, out->data, p);
    mnas_node *node;
    if (!mnas__finish(tp, fn, op, out, 1, &x, &node)) return NULL;
    if (node) node->p = p;
    return out;
}

static int finite_param(mnas_tape *tp, const char *fn, const char *what, double v)
{
    if (isfinite(v)) return 1;
    if (mnas__tape_ok(tp)) mnas__tape_error(tp, MNAS_E_INVALID, "%s: %s %g is not finite", fn, what, v);
    return 0;
}

mnas_tensor *mnas_neg(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_neg", OP_NEG, K_NEG, x, 0); }
mnas_tensor *mnas_scale(mnas_tape *tp, mnas_tensor *x, double s)
{
    if (!finite_param(tp, "mnas_scale", "factor", s)) return NULL;
    return unary(tp, "mnas_scale", OP_SCALE, K_SCALE, x, s);
}
mnas_tensor *mnas_add_scalar(mnas_tape *tp, mnas_tensor *x, double c)
{
    if (!finite_param(tp, "mnas_add_scalar", "constant", c)) return NULL;
    return unary(tp, "mnas_add_scalar", OP_ADD_SCALAR, K_ADDC, x, c);
}
mnas_tensor *mnas_relu(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_relu", OP_RELU, K_RELU, x, 0); }
mnas_tensor *mnas_sigmoid(mnas_tape *tp, mnas_tensor *x)
{
    return unary(tp, "mnas_sigmoid", OP_SIGMOID, K_SIGMOID, x, 0);
}
mnas_tensor *mnas_tanh(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_tanh", OP_TANH, K_TANH, x, 0); }
mnas_tensor *mnas_exp(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_exp", OP_EXP, K_EXP, x, 0); }
mnas_tensor *mnas_log(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_log", OP_LOG, K_LOG, x, 0); }
mnas_tensor *mnas_sqrt(mnas_tape *tp, mnas_tensor *x) { return unary(tp, "mnas_sqrt", OP_SQRT, K_SQRT, x, 0); }
mnas_tensor *mnas_square(mnas_tape *tp, mnas_tensor *x)
{
    return unary(tp, "mnas_square", OP_SQUARE, K_SQUARE, x, 0);
}
mnas_tensor *mnas_pow(mnas_tape *tp, mnas_tensor *x, double p)
{
    if (!finite_param(tp, "mnas_pow", "exponent", p)) return NULL;
    return unary(tp, "mnas_pow", OP_POW, K_POW, x, p);
}

mnas_tensor *mnas_axpy(mnas_tape *tp, double alpha, mnas_tensor *x, mnas_tensor *y)
{
    const char *fn = "mnas_axpy";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!finite_param(tp, fn, "alpha", alpha)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x) || !mnas__input_ok(tp, fn, "y", y)) return NULL;
    if (!mnas__same_shape(x, y)) {
        char sa[MNAS_SHAPE_BUF], sb[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x is %s but y is %s (axpy does not broadcast)", fn,
                         mnas__shape_str(sa, sizeof sa, x->ndim, x->shape),
                         mnas__shape_str(sb, sizeof sb, y->ndim, y->shape));
        return NULL;
    }
    mnas_tensor *out = mnas__tape_new_like(tp, fn, y);
    if (!out) return NULL;
    mnas__k_axpy(y->size, (mnas_real)alpha, x->data, y->data, out->data);
    mnas_tensor *ins[2] = { x, y };
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_AXPY, out, 2, ins, &node)) return NULL;
    if (node) node->p = alpha;
    return out;
}

/* 1 where x > 0, else 0; never recorded (the derivative of a step is 0). */
mnas_tensor *mnas__step(mnas_tape *tp, mnas_tensor *x)
{
    mnas_tensor *out = mnas__tape_new_like(tp, "relu backward", x);
    if (out) mnas__k_unary(K_STEP, x->size, x->data, out->data, 0);
    return out;
}
