/* Linear algebra ops: matrix product, the linear layer, transposes. */
#include <string.h>

#include "autodiff/autodiff_internal.h"

mnas_tensor *mnas_matmul(mnas_tape *tp, mnas_tensor *a, mnas_tensor *b, int ta, int tb)
{
    const char *fn = "mnas_matmul";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "a", a) || !mnas__input_ok(tp, fn, "b", b)) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: operands must be 2-D (got %d-D and %d-D)", fn, a->ndim, b->ndim);
        return NULL;
    }
    int64_t M = ta ? a->shape[1] : a->shape[0], K = ta ? a->shape[0] : a->shape[1];
    int64_t K2 = tb ? b->shape[1] : b->shape[0], N = tb ? b->shape[0] : b->shape[1];
    if (K != K2) {
        mnas__tape_error(tp, MNAS_E_SHAPE,
                         "%s: inner extents differ: op(a) is %lld x %lld, op(b) is %lld x %lld", fn,
                         (long long)M, (long long)K, (long long)K2, (long long)N);
        return NULL;
    }
    int64_t shape[2] = { M, N };
    mnas_tensor *out = mnas__tape_new(tp, fn, 2, shape);
    if (!out) return NULL;
    mnas__k_gemm(ta, tb, M, N, K, 1, a->data, a->shape[1], b->data, b->shape[1], 0, out->data, N);
    mnas_tensor *ins[2] = { a, b };
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_MATMUL, out, 2, ins, &node)) return NULL;
    if (node) {
        node->a[0] = ta ? 1 : 0;
        node->a[1] = tb ? 1 : 0;
    }
    return out;
}

mnas_tensor *mnas_linear(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w, mnas_tensor *b)
{
    const char *fn = "mnas_linear";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x) || !mnas__input_ok(tp, fn, "w", w)) return NULL;
    if (b && !mnas__input_ok(tp, fn, "b", b)) return NULL;
    if (x->ndim != 2 || w->ndim != 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x and w must be 2-D (got %d-D and %d-D)", fn, x->ndim, w->ndim);
        return NULL;
    }
    int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    if (w->shape[1] != I) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x has %lld features but w is [%lld, %lld]", fn, (long long)I,
                         (long long)O, (long long)w->shape[1]);
        return NULL;
    }
    if (b && b->size != O) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: b has %lld elements, the layer %lld outputs", fn,
                         (long long)b->size, (long long)O);
        return NULL;
    }
    if (b && !(b->ndim == 1 || (b->ndim == 2 && b->shape[0] == 1))) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: b must be [out] or [1, out]", fn);
        return NULL;
    }
    int64_t shape[2] = { N, O };
    mnas_tensor *out = mnas__tape_new(tp, fn, 2, shape);
    if (!out) return NULL;
    if (b)
        for (int64_t i = 0; i < N; i++) memcpy(out->data + i * O, b->data, (size_t)O * sizeof(mnas_real));
    mnas__k_gemm(0, 1, N, O, I, 1, x->data, I, w->data, I, b ? 1 : 0, out->data, O);
    mnas_tensor *ins[3] = { x, w, b };
    return mnas__finish(tp, fn, OP_LINEAR, out, b ? 3 : 2, ins, NULL);
}

mnas_tensor *mnas_transpose(mnas_tape *tp, mnas_tensor *x)
{
    const char *fn = "mnas_transpose";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim < 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must have at least 2 axes (has %d)", fn, x->ndim);
        return NULL;
    }
    int64_t shape[4];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    int64_t r = shape[x->ndim - 2], c = shape[x->ndim - 1];
    shape[x->ndim - 2] = c;
    shape[x->ndim - 1] = r;
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, shape);
    if (!out) return NULL;
    mnas__k_transpose(x->size / (r * c), r, c, x->data, out->data);
    return mnas__finish(tp, fn, OP_TRANSPOSE, out, 1, &x, NULL);
}

/* ---- backward rules ------------------------------------------------------ */

mnas_status mnas__vjp_linalg(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *x = n->in[0];
    mnas_tensor *b = n->nin > 1 ? n->in[1] : NULL;
    switch ((mnas_opcode)n->op) {
    case OP_MATMUL: {
        int ta = (int)n->a[0], tb = (int)n->a[1];
        /* C = op(A) op(B); dop(A) = g op(B)^T, dop(B) = op(A)^T g. */
        if (MNAS__WANT(0)) MNAS__ACC(0, ta ? mnas_matmul(tp, b, g, tb, 1) : mnas_matmul(tp, g, b, 0, !tb));
        if (MNAS__WANT(1)) MNAS__ACC(1, tb ? mnas_matmul(tp, g, x, 1, ta) : mnas_matmul(tp, x, g, !ta, 0));
        return MNAS_OK;
    }
    case OP_LINEAR: /* y = x W^T + b */
        if (MNAS__WANT(0)) MNAS__ACC(0, mnas_matmul(tp, g, b, 0, 0));
        if (MNAS__WANT(1)) MNAS__ACC(1, mnas_matmul(tp, g, x, 1, 0));
        if (n->nin > 2 && MNAS__WANT(2)) {
            mnas_tensor *bias = n->in[2];
            int64_t row[2] = { 1, g->shape[1] };
            mnas_tensor *s = mnas_sum_to(tp, g, 2, row);
            MNAS__ACC(2, s ? mnas_reshape(tp, s, bias->ndim, bias->shape) : NULL);
        }
        return MNAS_OK;
    case OP_TRANSPOSE: MNAS__ACC(0, mnas_transpose(tp, g)); return MNAS_OK;
    default: break;
    }
    return mnas__bw_no_rule(tp, n);
}
