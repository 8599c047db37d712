/* Reductions and shape ops: sums, broadcasting, reshape, concat, slices,
 * row gathers and their adjoints. */
#include <string.h>

#include "autodiff/autodiff_internal.h"

static int norm_axis(mnas_tape *tp, const char *fn, const mnas_tensor *x, int *axis)
{
    int a = *axis < 0 ? *axis + x->ndim : *axis;
    if (a < 0 || a >= x->ndim) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: axis %d is out of range for a %d-D tensor", fn, *axis, x->ndim);
        return 0;
    }
    *axis = a;
    return 1;
}

mnas_tensor *mnas_sum(mnas_tape *tp, mnas_tensor *x)
{
    const char *fn = "mnas_sum";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    mnas_tensor *out = mnas__tape_new(tp, fn, 0, NULL);
    if (!out) return NULL;
    out->data[0] = (mnas_real)mnas__k_sum(x->size, x->data);
    return mnas__finish(tp, fn, OP_SUM, out, 1, &x, NULL);
}

mnas_tensor *mnas_mean(mnas_tape *tp, mnas_tensor *x)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, "mnas_mean", "x", x)) return NULL;
    return mnas_scale(tp, mnas_sum(tp, x), 1.0 / (double)x->size);
}

/* Can x (shape xs) be summed to shape (nd, s)? */
static int reduces_to(mnas_tape *tp, const char *fn, const mnas_tensor *x, int nd, const int64_t *s)
{
    int64_t size;
    if (mnas__shape_check(tp->ctx, fn, nd, s, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: invalid target shape", fn);
        return 0;
    }
    int ok = nd <= x->ndim;
    for (int i = 0; ok && i < nd; i++) {
        int64_t e = x->shape[x->ndim - nd + i];
        if (s[i] != e && s[i] != 1) ok = 0;
    }
    if (!ok) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: %s does not broadcast to %s", fn,
                         mnas__shape_str(a, sizeof a, nd, s), mnas__shape_str(b, sizeof b, x->ndim, x->shape));
    }
    return ok;
}

mnas_tensor *mnas_sum_to(mnas_tape *tp, mnas_tensor *x, int ndim, const int64_t *shape)
{
    const char *fn = "mnas_sum_to";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!reduces_to(tp, fn, x, ndim, shape)) return NULL;
    if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof *shape) == 0) return x;
    mnas_tensor *out = mnas__tape_new(tp, fn, ndim, shape);
    if (!out) return NULL;
    int64_t xs[4], ys[4];
    mnas__pad4(x, xs);
    mnas__pad4(out, ys);
    double *acc = mnas__tape_scratch(tp, fn, (size_t)mnas__k_sum_to_scratch(xs, ys) * sizeof(double));
    if (!acc) return NULL;
    mnas__k_sum_to(x->data, xs, out->data, ys, acc);
    return mnas__finish(tp, fn, OP_SUM_TO, out, 1, &x, NULL);
}

mnas_tensor *mnas_broadcast_to(mnas_tape *tp, mnas_tensor *x, int ndim, const int64_t *shape)
{
    const char *fn = "mnas_broadcast_to";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    int64_t size;
    if (mnas__shape_check(tp->ctx, fn, ndim, shape, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: invalid target shape", fn);
        return NULL;
    }
    int ok = x->ndim <= ndim;
    for (int i = 0; ok && i < x->ndim; i++) {
        int64_t e = shape[ndim - x->ndim + i];
        if (x->shape[i] != e && x->shape[i] != 1) ok = 0;
    }
    if (!ok) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: %s does not broadcast to %s", fn,
                         mnas__shape_str(a, sizeof a, x->ndim, x->shape), mnas__shape_str(b, sizeof b, ndim, shape));
        return NULL;
    }
    if (ndim == x->ndim && memcmp(shape, x->shape, (size_t)ndim * sizeof *shape) == 0) return x;
    mnas_tensor *out = mnas__tape_new(tp, fn, ndim, shape);
    if (!out) return NULL;
    int64_t xs[4], ys[4];
    mnas__pad4(x, xs);
    mnas__pad4(out, ys);
    mnas__k_broadcast(x->data, xs, out->data, ys);
    return mnas__finish(tp, fn, OP_BROADCAST_TO, out, 1, &x, NULL);
}

mnas_tensor *mnas_reshape(mnas_tape *tp, mnas_tensor *x, int ndim, const int64_t *shape)
{
    const char *fn = "mnas_reshape";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    int64_t size;
    if (mnas__shape_check(tp->ctx, fn, ndim, shape, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: invalid target shape", fn);
        return NULL;
    }
    if (size != x->size) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: cannot reshape %s (%lld elements) to %s", fn,
                         mnas__shape_str(a, sizeof a, x->ndim, x->shape), (long long)x->size,
                         mnas__shape_str(b, sizeof b, ndim, shape));
        return NULL;
    }
    mnas_tensor *out = mnas__tape_view(tp, fn, x, ndim, shape);
    if (!out) return NULL;
    return mnas__finish(tp, fn, OP_RESHAPE, out, 1, &x, NULL);
}

mnas_tensor *mnas_sum_axis(mnas_tape *tp, mnas_tensor *x, int axis, int keepdim)
{
    const char *fn = "mnas_sum_axis";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!norm_axis(tp, fn, x, &axis)) return NULL;
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = 1;
    mnas_tensor *s = mnas_sum_to(tp, x, x->ndim, shape);
    if (!s || keepdim) return s;
    int64_t squeezed[4];
    int k = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) squeezed[k++] = x->shape[i];
    return mnas_reshape(tp, s, k, squeezed);
}

mnas_tensor *mnas_mean_axis(mnas_tape *tp, mnas_tensor *x, int axis, int keepdim)
{
    const char *fn = "mnas_mean_axis";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!norm_axis(tp, fn, x, &axis)) return NULL;
    return mnas_scale(tp, mnas_sum_axis(tp, x, axis, keepdim), 1.0 / (double)x->shape[axis]);
}

/* [outer, extent, inner] view of x around axis. */
static void split_at(const mnas_tensor *x, int axis, int64_t *outer, int64_t *inner)
{
    int64_t o = 1, in = 1;
    for (int i = 0; i < axis; i++) o *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) in *= x->shape[i];
    *outer = o;
    *inner = in;
}

mnas_tensor *mnas_concat(mnas_tape *tp, size_t n, mnas_tensor *const *xs, int axis)
{
    const char *fn = "mnas_concat";
    if (!mnas__tape_ok(tp)) return NULL;
    if (n == 0 || !xs) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: no tensors to join", fn);
        return NULL;
    }
    if (n > 4096) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %zu tensors (at most 4096)", fn, n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!mnas__input_ok(tp, fn, "an input", xs[i])) return NULL;
    if (!norm_axis(tp, fn, xs[0], &axis)) return NULL;
    int64_t shape[4];
    memcpy(shape, xs[0]->shape, sizeof shape);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const mnas_tensor *t = xs[i];
        int ok = t->ndim == xs[0]->ndim;
        for (int d = 0; ok && d < t->ndim; d++)
            if (d != axis && t->shape[d] != shape[d]) ok = 0;
        if (!ok) {
            char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: input %zu is %s, input 0 is %s (only axis %d may differ)", fn,
                             i, mnas__shape_str(a, sizeof a, t->ndim, t->shape),
                             mnas__shape_str(b, sizeof b, xs[0]->ndim, xs[0]->shape), axis);
            return NULL;
        }
        total += t->shape[axis];
    }
    shape[axis] = total;
    mnas_tensor *out = mnas__tape_new(tp, fn, xs[0]->ndim, shape);
    if (!out) return NULL;
    int64_t outer, inner, off = 0;
    split_at(out, axis, &outer, &inner);
    for (size_t i = 0; i < n; i++) {
        int64_t e = xs[i]->shape[axis];
        mnas__k_copy_axis(outer, inner, xs[i]->data, e, 0, out->data, total, off, e);
        off += e;
    }
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_CONCAT, out, n, xs, &node)) return NULL;
    if (node) node->a[0] = axis;
    return out;
}

mnas_tensor *mnas_slice(mnas_tape *tp, mnas_tensor *x, int axis, int64_t start, int64_t len)
{
    const char *fn = "mnas_slice";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!norm_axis(tp, fn, x, &axis)) return NULL;
    int64_t e = x->shape[axis];
    if (start < 0 || len < 1 || start > e || len > e - start) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: [%lld, %lld + %lld) is not inside axis %d of extent %lld", fn,
                         (long long)start, (long long)start, (long long)len, axis, (long long)e);
        return NULL;
    }
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = len;
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, shape);
    if (!out) return NULL;
    int64_t outer, inner;
    split_at(x, axis, &outer, &inner);
    mnas__k_copy_axis(outer, inner, x->data, e, start, out->data, len, 0, len);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_SLICE, out, 1, &x, &node)) return NULL;
    if (node) {
        node->a[0] = axis;
        node->a[1] = start;
    }
    return out;
}

mnas_tensor *mnas_pad_axis(mnas_tape *tp, mnas_tensor *x, int axis, int64_t start, int64_t full)
{
    const char *fn = "mnas_pad_axis";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!norm_axis(tp, fn, x, &axis)) return NULL;
    int64_t e = x->shape[axis];
    if (start < 0 || full < e || start > full - e) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %lld slices at %lld do not fit an extent of %lld", fn,
                         (long long)e, (long long)start, (long long)full);
        return NULL;
    }
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = full;
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, shape);
    if (!out) return NULL;
    memset(out->data, 0, (size_t)out->size * sizeof(mnas_real));
    int64_t outer, inner;
    split_at(x, axis, &outer, &inner);
    mnas__k_copy_axis(outer, inner, x->data, e, 0, out->data, full, start, e);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_PAD_AXIS, out, 1, &x, &node)) return NULL;
    if (node) {
        node->a[0] = axis;
        node->a[1] = start;
    }
    return out;
}

static const int64_t *keep_indices(mnas_tape *tp, const char *fn, size_t n, const int64_t *idx, int64_t rows)
{
    if (n == 0 || !idx) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: no row indices", fn);
        return NULL;
    }
    if (n > ((size_t)1 << 40)) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %zu indices is absurd", fn, n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows) {
            mnas__tape_error(tp, MNAS_E_INVALID, "%s: index %lld at position %zu is outside [0, %lld)", fn,
                             (long long)idx[i], i, (long long)rows);
            return NULL;
        }
    int64_t *copy = mnas__tape_scratch(tp, fn, n * sizeof *copy);
    if (copy) memcpy(copy, idx, n * sizeof *copy);
    return copy;
}

mnas_tensor *mnas_gather_rows(mnas_tape *tp, mnas_tensor *x, size_t n, const int64_t *idx)
{
    const char *fn = "mnas_gather_rows";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim < 1) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x is a scalar", fn);
        return NULL;
    }
    const int64_t *kept = keep_indices(tp, fn, n, idx, x->shape[0]);
    if (!kept) return NULL;
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = (int64_t)n;
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, shape);
    if (!out) return NULL;
    int64_t row = x->size / x->shape[0];
    for (size_t i = 0; i < n; i++)
        memcpy(out->data + (int64_t)i * row, x->data + kept[i] * row, (size_t)row * sizeof(mnas_real));
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_GATHER_ROWS, out, 1, &x, &node)) return NULL;
    if (node) {
        node->idx = kept;
        node->nidx = n;
    }
    return out;
}

mnas_tensor *mnas_scatter_add_rows(mnas_tape *tp, mnas_tensor *x, size_t n, const int64_t *idx, int64_t rows)
{
    const char *fn = "mnas_scatter_add_rows";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim < 1 || (size_t)x->shape[0] != n) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must have %zu rows (one per index)", fn, n);
        return NULL;
    }
    if (rows < 1) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: rows %lld is not positive", fn, (long long)rows);
        return NULL;
    }
    const int64_t *kept = keep_indices(tp, fn, n, idx, rows);
    if (!kept) return NULL;
    int64_t shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = rows;
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, shape);
    if (!out) return NULL;
    memset(out->data, 0, (size_t)out->size * sizeof(mnas_real));
    int64_t row = x->size / x->shape[0];
    for (size_t i = 0; i < n; i++) {
        mnas_real *dst = out->data + kept[i] * row;
        const mnas_real *src = x->data + (int64_t)i * row;
        for (int64_t j = 0; j < row; j++) dst[j] += src[j];
    }
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_SCATTER_ROWS, out, 1, &x, &node)) return NULL;
    if (node) {
        node->idx = kept;
        node->nidx = n;
        node->a[0] = rows;
    }
    return out;
}

/* ---- backward rules ------------------------------------------------------ */

mnas_status mnas__vjp_shape(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *x = n->in[0];
    switch ((mnas_opcode)n->op) {
    case OP_SUM: MNAS__ACC(0, mnas_broadcast_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_SUM_TO: MNAS__ACC(0, mnas_broadcast_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_BROADCAST_TO: MNAS__ACC(0, mnas_sum_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_RESHAPE: MNAS__ACC(0, mnas_reshape(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_CONCAT: {
        int axis = (int)n->a[0];
        int64_t off = 0;
        for (int k = 0; k < n->nin; k++) {
            int64_t e = n->in[k]->shape[axis];
            if (MNAS__WANT(k)) MNAS__ACC(k, mnas_slice(tp, g, axis, off, e));
            off += e;
        }
        return MNAS_OK;
    }
    case OP_SLICE:
        if (!mnas__bw_create_graph(bc) && MNAS__WANT(0))
            return mnas__bw_accumulate_slice(tp, bc, n, 0, g, (int)n->a[0], n->a[1]);
        MNAS__ACC(0, mnas_pad_axis(tp, g, (int)n->a[0], n->a[1], x->shape[n->a[0]]));
        return MNAS_OK;
    case OP_PAD_AXIS: MNAS__ACC(0, mnas_slice(tp, g, (int)n->a[0], n->a[1], x->shape[n->a[0]])); return MNAS_OK;
    case OP_GATHER_ROWS: MNAS__ACC(0, mnas_scatter_add_rows(tp, g, n->nidx, n->idx, x->shape[0])); return MNAS_OK;
    case OP_SCATTER_ROWS: MNAS__ACC(0, mnas_gather_rows(tp, g, n->nidx, n->idx)); return MNAS_OK;
    default: break;
    }
    return mnas__bw_no_rule(tp, n);
}
