/* Elementwise ops: broadcasting binary arithmetic and unary maps. */
#include <math.h>
#include <string.h>

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

/* Only tape tensors of the current epoch are remembered: a persistent x
 * could be rewritten between calls, and an old epoch's pointers may have
 * been reused. */
mnas_tensor *mnas__relu_shared(mnas_tape *tp, mnas_tensor *x)
{
    if (!mnas__tape_ok(tp)) return NULL;
    if (x && x == tp->relu_x && tp->relu_y && tp->relu_epoch == tp->epoch && tp->relu_no_grad == tp->no_grad &&
        mnas__tensor_live(x) && x->tape == tp && mnas__tensor_live(tp->relu_y))
        return tp->relu_y;
    mnas_tensor *y = mnas_relu(tp, x);
    if (y && x->tape == tp) {
        tp->relu_x = x;
        tp->relu_y = y;
        tp->relu_epoch = tp->epoch;
        tp->relu_no_grad = tp->no_grad;
    } else {
        tp->relu_x = NULL;
        tp->relu_y = NULL;
    }
    return y;
}
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

mnas_tensor *mnas_mix(mnas_tape *tp, mnas_tensor *alpha, size_t n, mnas_tensor *const *ys, const int64_t *idx)
{
    const char *fn = "mnas_mix";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "alpha", alpha)) return NULL;
    if (n == 0 || n > 4096 || !ys || !idx) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: need 1..4096 tensors and their weight indices", fn);
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        if (!mnas__input_ok(tp, fn, "a mixed tensor", ys[k])) return NULL;
        if (!mnas__same_shape(ys[k], ys[0])) {
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: tensor %zu differs in shape from tensor 0", fn, k);
            return NULL;
        }
        if (idx[k] < 0 || idx[k] >= alpha->size) {
            mnas__tape_error(tp, MNAS_E_INVALID, "%s: weight index %lld is outside alpha's %lld elements", fn,
                             (long long)idx[k], (long long)alpha->size);
            return NULL;
        }
    }
    mnas_tensor *out = mnas__tape_new_like(tp, fn, ys[0]);
    int64_t *kept = out ? mnas__tape_scratch(tp, fn, n * sizeof *kept) : NULL;
    if (!kept) return NULL;
    memcpy(kept, idx, n * sizeof *kept);
    mnas__k_unary(K_SCALE, out->size, ys[0]->data, out->data, (double)alpha->data[idx[0]]);
    for (size_t k = 1; k < n; k++) mnas__k_add_scaled(out->size, alpha->data[idx[k]], ys[k]->data, out->data);
    mnas_tensor **ins = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *ins);
    if (!ins) return NULL;
    ins[0] = alpha;
    memcpy(ins + 1, ys, n * sizeof *ins);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_MIX, out, n + 1, ins, &node)) return NULL;
    if (node) {
        node->idx = kept;
        node->nidx = n;
    }
    return out;
}

mnas_tensor *mnas__mix_dalpha(mnas_tape *tp, const mnas_tensor *like, mnas_tensor *g, size_t n,
                              mnas_tensor *const *ys, const int64_t *idx)
{
    const char *fn = "mnas_mix backward";
    mnas_tensor *out = mnas__tape_new_like(tp, fn, like);
    mnas_tensor **ins = out ? mnas__tape_scratch(tp, fn, (n + 1) * sizeof *ins) : NULL;
    if (!ins) return NULL;
    memset(out->data, 0, (size_t)out->size * sizeof(mnas_real));
    for (size_t k = 0; k < n; k++) {
        double s = mnas__k_dot(g->size, g->data, ys[k]->data);
        out->data[idx[k]] += (mnas_real)s;
    }
    ins[0] = g;
    memcpy(ins + 1, ys, n * sizeof *ins);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_MIX_DALPHA, out, n + 1, ins, &node)) return NULL;
    if (node) {
        node->idx = idx; /* the mix node's copy lives as long as the tape */
        node->nidx = n;
    }
    return out;
}

/* ReLU's rule, g * step(x), in one pass (the product mnas_mask_mul would
 * form with the K_STEP mask, bit for bit). Recorded with g as its only
 * differentiable input: x enters through the step, whose derivative is 0,
 * and the rule reads it. Its own rule is relu_grad of the incoming gradient
 * at the same x, so every derivative order works. */
mnas_tensor *mnas__relu_grad(mnas_tape *tp, mnas_tensor *g, mnas_tensor *x)
{
    const char *fn = "relu backward";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "g", g)) return NULL;
    mnas_tensor *out = mnas__tape_new_like(tp, fn, x);
    if (!out) return NULL;
    mnas__k_relu_grad(x->size, g->data, x->data, out->data);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_RELU_GRAD, out, 1, &g, &node)) return NULL;
    if (node) {
        node->nin = 2;
        node->in[1] = x;
        node->inode[1] = NULL;
    }
    return out;
}

/* ---- backward rules ------------------------------------------------------ */

/* Reduce a broadcast gradient back to the shape of input k. */
static mnas_tensor *unbroadcast(mnas_tape *tp, mnas_tensor *g, const mnas_tensor *like)
{
    if (!g) return NULL;
    if (mnas__same_shape(g, like)) return g;
    return mnas_sum_to(tp, g, like->ndim, like->shape);
}

/* mix: y = sum_k a[idx_k] y_k, so dy_k = a[idx_k] g and da[idx_k] += <g, y_k>. */
static mnas_status mix_vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *alpha = n->in[0];
    size_t K = n->nidx;
    int want_a = mnas__bw_wants(bc, n, 0);
    mnas_status st;
    if (!mnas__bw_create_graph(bc)) {
        for (size_t k = 0; k < K; k++)
            if (mnas__bw_wants(bc, n, (int)k + 1)) {
                mnas_tensor *dy = mnas__tape_new_like(tp, "mnas_mix backward", g);
                if (!dy) return tp->status;
                mnas__k_unary(K_SCALE, g->size, g->data, dy->data, (double)alpha->data[n->idx[k]]);
                if ((st = mnas__bw_accumulate_new(tp, bc, n, (int)k + 1, dy)) != MNAS_OK) return st;
            }
        if (want_a) {
            mnas_tensor *da = mnas__tape_new_like(tp, "mnas_mix backward", alpha);
            if (!da) return tp->status;
            memset(da->data, 0, (size_t)da->size * sizeof(mnas_real));
            for (size_t k = 0; k < K; k++) {
                double s = mnas__k_dot(g->size, g->data, n->in[k + 1]->data);
                da->data[n->idx[k]] += (mnas_real)s;
            }
            if ((st = mnas__bw_accumulate_new(tp, bc, n, 0, da)) != MNAS_OK) return st;
        }
        return MNAS_OK;
    }
    /* Recorded: dy_k is a one-term mix, da a mix_dalpha; both have rules. */
    for (size_t k = 0; k < K; k++)
        if (mnas__bw_wants(bc, n, (int)k + 1)) {
            mnas_tensor *dy = mnas_mix(tp, alpha, 1, &g, &n->idx[k]);
            if (!dy || (st = mnas__bw_accumulate(tp, bc, n, (int)k + 1, dy)) != MNAS_OK) return tp->status;
        }
    if (want_a) {
        mnas_tensor *da = mnas__mix_dalpha(tp, alpha, g, K, n->in + 1, n->idx);
        if (!da || (st = mnas__bw_accumulate(tp, bc, n, 0, da)) != MNAS_OK) return tp->status;
    }
    return MNAS_OK;
}

mnas_status mnas__vjp_elementwise(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *x = n->in[0], *y = n->out;
    mnas_tensor *b = n->nin > 1 ? n->in[1] : NULL;
    switch ((mnas_opcode)n->op) {
    case OP_ADD:
        if (MNAS__WANT(0)) MNAS__ACC(0, unbroadcast(tp, g, x));
        if (MNAS__WANT(1)) MNAS__ACC(1, unbroadcast(tp, g, b));
        return MNAS_OK;
    case OP_SUB:
        if (MNAS__WANT(0)) MNAS__ACC(0, unbroadcast(tp, g, x));
        if (MNAS__WANT(1)) MNAS__ACC(1, unbroadcast(tp, mnas_neg(tp, g), b));
        return MNAS_OK;
    case OP_MUL:
        if (MNAS__WANT(0)) MNAS__ACC(0, unbroadcast(tp, mnas_mul(tp, g, b), x));
        if (MNAS__WANT(1)) MNAS__ACC(1, unbroadcast(tp, mnas_mul(tp, g, x), b));
        return MNAS_OK;
    case OP_MASK_MUL:
        if (MNAS__WANT(0)) MNAS__ACC(0, unbroadcast(tp, mnas_mask_mul(tp, g, b), x));
        return MNAS_OK;
    case OP_DIV:
        if (MNAS__WANT(0)) MNAS__ACC(0, unbroadcast(tp, mnas_div(tp, g, b), x));
        if (MNAS__WANT(1)) MNAS__ACC(1, unbroadcast(tp, mnas_neg(tp, mnas_mul(tp, g, mnas_div(tp, y, b))), b));
        return MNAS_OK;
    case OP_AXPY: /* alpha x + y */
        MNAS__ACC(0, mnas_scale(tp, g, n->p));
        MNAS__ACC(1, g);
        return MNAS_OK;
    case OP_MIX: return mix_vjp(tp, n, g, bc);
    case OP_MIX_DALPHA: { /* da[idx_k] = <g, y_k>: d/dg = mix(v, ys), d/dy_k = v[idx_k] g */
        size_t K = n->nidx;
        MNAS__ACC(0, mnas_mix(tp, g, K, n->in + 1, n->idx));
        for (size_t k = 0; k < K; k++) MNAS__ACC((int)k + 1, mnas_mix(tp, g, 1, &n->in[0], &n->idx[k]));
        return MNAS_OK;
    }
    case OP_NEG: MNAS__ACC(0, mnas_neg(tp, g)); return MNAS_OK;
    case OP_SCALE: MNAS__ACC(0, mnas_scale(tp, g, n->p)); return MNAS_OK;
    case OP_ADD_SCALAR: MNAS__ACC(0, g); return MNAS_OK;
    case OP_RELU: MNAS__ACC_NEW(0, mnas__relu_grad(tp, g, x)); return MNAS_OK;
    case OP_RELU_GRAD: MNAS__ACC_NEW(0, mnas__relu_grad(tp, g, b)); return MNAS_OK;
    case OP_SIGMOID: /* g * y * (1 - y) */
        MNAS__ACC(0, mnas_mul(tp, g, mnas_mul(tp, y, mnas_add_scalar(tp, mnas_neg(tp, y), 1.0))));
        return MNAS_OK;
    case OP_TANH: /* g * (1 - y^2) */
        MNAS__ACC(0, mnas_mul(tp, g, mnas_add_scalar(tp, mnas_neg(tp, mnas_square(tp, y)), 1.0)));
        return MNAS_OK;
    case OP_EXP: MNAS__ACC(0, mnas_mul(tp, g, y)); return MNAS_OK;
    case OP_LOG: MNAS__ACC(0, mnas_div(tp, g, x)); return MNAS_OK;
    case OP_SQRT: MNAS__ACC(0, mnas_div(tp, mnas_scale(tp, g, 0.5), y)); return MNAS_OK;
    case OP_SQUARE: MNAS__ACC(0, mnas_mul(tp, g, mnas_scale(tp, x, 2.0))); return MNAS_OK;
    case OP_POW:
        if (n->p == 0.0) return MNAS_OK; /* constant */
        if (n->p == 1.0) {
            MNAS__ACC(0, g);
        } else {
            MNAS__ACC(0, mnas_mul(tp, g, mnas_scale(tp, mnas_pow(tp, x, n->p - 1.0), n->p)));
        }
        return MNAS_OK;
    default: break;
    }
    return mnas__bw_no_rule(tp, n);
}
