/* Convolution and pooling ops: unfold / fold, conv2d (im2col + GEMM, direct
 * loops for depthwise), max / average / global-average pooling.
 *
 * Every op here is linear in each input, and the ops come in families
 * closed under differentiation, so every derivative order works:
 *   unfold <-> fold (adjoints of each other);
 *   conv(x, w), conv_dx(g, w), conv_dw(x, g) are the three partial
 *   derivatives of T(x, w, g) = <g, conv(x, w)>, so each one's backward
 *   rule is made of the other two (and itself);
 *   avg_pool <-> its adjoint; max_pool records its argmax and is a gather
 *   at those positions, whose adjoint is a scatter (argmax held constant). */
#include <string.h>

#include "autodiff/autodiff_internal.h"

/* ---- geometry ------------------------------------------------------------ */

#define ELEM_LIMIT ((int64_t)1 << 40) /* as the tensor layer's shape check */

/* Product of n factors, or -1 when it overflows or passes ELEM_LIMIT. */
static int64_t product(int n, const int64_t *f)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        if (f[i] < 0 || __builtin_mul_overflow(p, f[i], &p) || p > ELEM_LIMIT) return -1;
    return p;
}

/* Check the window parameters against an N x C x H x W input and fill g
 * (O and groups are set to C; conv2d overrides them). */
static int geometry(mnas_tape *tp, const char *fn, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                    int stride, int padding, int dilation, mnas_kconv *g)
{
    if (kh < 1 || kw < 1) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: kernel %lld x %lld must be positive", fn, (long long)kh,
                         (long long)kw);
        return 0;
    }
    if (stride < 1) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: stride %d must be positive", fn, stride);
        return 0;
    }
    if (dilation < 1) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: dilation %d must be positive", fn, dilation);
        return 0;
    }
    if (padding < 0) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: padding %d must not be negative", fn, padding);
        return 0;
    }
    /* H, W <= 2^40 and padding < 2^31: no overflow in the padded extents. */
    int64_t ph = H + 2 * (int64_t)padding, pw = W + 2 * (int64_t)padding, eh, ew;
    if (__builtin_mul_overflow(kh - 1, (int64_t)dilation, &eh) ||
        __builtin_mul_overflow(kw - 1, (int64_t)dilation, &ew) || eh >= ph || ew >= pw) {
        mnas__tape_error(tp, MNAS_E_SHAPE,
                         "%s: output size is not positive: a %lld x %lld kernel with dilation %d does not fit "
                         "the %lld x %lld input padded by %d",
                         fn, (long long)kh, (long long)kw, dilation, (long long)H, (long long)W, padding);
        return 0;
    }
    g->N = N;
    g->C = C;
    g->H = H;
    g->W = W;
    g->O = C;
    g->groups = C;
    g->kh = kh;
    g->kw = kw;
    g->stride = stride;
    g->pad = padding;
    g->dil = dilation;
    g->OH = (ph - eh - 1) / stride + 1;
    g->OW = (pw - ew - 1) / stride + 1;
    /* The column matrix of the batch must be addressable. */
    int64_t f[4] = { N * C, kh, kw, 1 }, L = product(2, (int64_t[2]){ g->OH, g->OW });
    f[3] = L;
    if (L < 0 || product(4, f) < 0) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the %lld x %lld kernel over %lld x %lld outputs needs more than 2^40 "
                         "column elements", fn, (long long)kh, (long long)kw, (long long)g->OH, (long long)g->OW);
        return 0;
    }
    return 1;
}

static int need_4d(mnas_tape *tp, const char *fn, const char *arg, const mnas_tensor *x)
{
    if (x->ndim == 4) return 1;
    char s[MNAS_SHAPE_BUF];
    mnas__tape_error(tp, MNAS_E_SHAPE, "%s: %s must be 4-D [N, C, H, W] (got %s)", fn, arg,
                     mnas__shape_str(s, sizeof s, x->ndim, x->shape));
    return 0;
}

/* Record op if needed and attach a copy of the geometry to its node. */
static mnas_tensor *finish(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t n, mnas_tensor *const *ins,
                           const mnas_kconv *g)
{
    mnas_kconv *k = NULL;
    if (mnas__should_record(tp, n, ins)) {
        /* before recording: a node never exists without its geometry */
        if (!(k = mnas__tape_scratch(tp, fn, sizeof *k))) return NULL;
        *k = *g;
    }
    mnas_node *node;
    if (!mnas__finish(tp, fn, op, out, n, ins, &node)) return NULL;
    if (node) node->state = k;
    return out;
}

/* The kernel's scratch (NULL when it needs none), given back by
 * mnas__tape_scratch_end(tp, *m) as soon as the kernel is done: it is
 * megabytes for Winograd, and kept for the recording every op would touch
 * fresh memory. */
static real *conv_scratch(mnas_tape *tp, const char *fn, const mnas_kconv *g, int *ok, mnas_arena_mark *m)
{
    int64_t n = mnas__k_conv_scratch(g);
    *ok = 1;
    if (n == 0) return NULL;
    real *p = mnas__tape_scratch_begin(tp, fn, (size_t)n * sizeof(real), m);
    if (!p) *ok = 0;
    return p;
}

/* Average pooling's scratch, given back the same way. */
static real *pool_scratch(mnas_tape *tp, const char *fn, const mnas_kconv *g, mnas_arena_mark *m)
{
    return mnas__tape_scratch_begin(tp, fn, (size_t)mnas__k_pool_scratch(g) * sizeof(real), m);
}

/* ---- the ops, given a checked geometry --------------------------------- */

static mnas_tensor *unfold_op(mnas_tape *tp, mnas_tensor *x, const mnas_kconv *g)
{
    const char *fn = "mnas_unfold";
    int64_t shape[3] = { g->N, g->C * g->kh * g->kw, g->OH * g->OW };
    mnas_tensor *out = mnas__tape_new(tp, fn, 3, shape);
    if (!out) return NULL;
    for (int64_t n = 0; n < g->N; n++)
        mnas__k_unfold(g, x->data + n * g->C * g->H * g->W, out->data + n * shape[1] * shape[2]);
    return finish(tp, fn, OP_UNFOLD, out, 1, &x, g);
}

static mnas_tensor *fold_op(mnas_tape *tp, mnas_tensor *cols, const mnas_kconv *g)
{
    const char *fn = "mnas_fold";
    int64_t shape[4] = { g->N, g->C, g->H, g->W };
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    if (!out) return NULL;
    memset(out->data, 0, (size_t)out->size * sizeof(real));
    int64_t per = g->C * g->kh * g->kw * g->OH * g->OW;
    for (int64_t n = 0; n < g->N; n++)
        mnas__k_fold_add(g, cols->data + n * per, out->data + n * g->C * g->H * g->W);
    return finish(tp, fn, OP_FOLD, out, 1, &cols, g);
}

static mnas_tensor *conv_op(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w, mnas_tensor *b, const mnas_kconv *g)
{
    const char *fn = "mnas_conv2d";
    int64_t shape[4] = { g->N, g->O, g->OH, g->OW };
    int ok;
    mnas_arena_mark mark;
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    real *scratch = out ? conv_scratch(tp, fn, g, &ok, &mark) : NULL;
    if (!out || !ok) return NULL;
    mnas__k_conv2d(g, x->data, w->data, b ? b->data : NULL, out->data, scratch);
    if (scratch) mnas__tape_scratch_end(tp, mark);
    mnas_tensor *ins[3] = { x, w, b };
    return finish(tp, fn, OP_CONV2D, out, b ? 3 : 2, ins, g);
}

/* The input gradient of conv(., w) for output gradient gy (transposed conv). */
static mnas_tensor *conv_dx_op(mnas_tape *tp, mnas_tensor *gy, mnas_tensor *w, const mnas_kconv *g)
{
    const char *fn = "mnas_conv2d backward (input)";
    int64_t shape[4] = { g->N, g->C, g->H, g->W };
    int ok;
    mnas_arena_mark mark;
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    real *scratch = out ? conv_scratch(tp, fn, g, &ok, &mark) : NULL;
    if (!out || !ok) return NULL;
    mnas__k_conv2d_dx(g, gy->data, w->data, out->data, scratch);
    if (scratch) mnas__tape_scratch_end(tp, mark);
    mnas_tensor *ins[2] = { gy, w };
    return finish(tp, fn, OP_CONV2D_DX, out, 2, ins, g);
}

/* The weight gradient of conv(x, .) for output gradient gy. */
static mnas_tensor *conv_dw_op(mnas_tape *tp, mnas_tensor *x, mnas_tensor *gy, const mnas_kconv *g)
{
    const char *fn = "mnas_conv2d backward (weights)";
    int64_t shape[4] = { g->O, g->C / g->groups, g->kh, g->kw };
    int ok;
    mnas_arena_mark mark;
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    real *scratch = out ? conv_scratch(tp, fn, g, &ok, &mark) : NULL;
    if (!out || !ok) return NULL;
    mnas__k_conv2d_dw(g, x->data, gy->data, out->data, scratch);
    if (scratch) mnas__tape_scratch_end(tp, mark);
    mnas_tensor *ins[2] = { x, gy };
    return finish(tp, fn, OP_CONV2D_DW, out, 2, ins, g);
}

static mnas_tensor *avg_op(mnas_tape *tp, mnas_tensor *x, const mnas_kconv *g)
{
    const char *fn = "mnas_avg_pool2d";
    int64_t shape[4] = { g->N, g->C, g->OH, g->OW };
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    mnas_arena_mark mark;
    real *scratch = out ? pool_scratch(tp, fn, g, &mark) : NULL;
    if (!scratch) return NULL;
    mnas__k_avg_pool(g, x->data, out->data, scratch);
    mnas__tape_scratch_end(tp, mark);
    return finish(tp, fn, OP_AVG_POOL, out, 1, &x, g);
}

static mnas_tensor *avg_adj_op(mnas_tape *tp, mnas_tensor *gy, const mnas_kconv *g)
{
    const char *fn = "mnas_avg_pool2d backward";
    int64_t shape[4] = { g->N, g->C, g->H, g->W };
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    mnas_arena_mark mark;
    real *scratch = out ? pool_scratch(tp, fn, g, &mark) : NULL;
    if (!scratch) return NULL;
    mnas__k_avg_pool_adj(g, gy->data, out->data, scratch);
    mnas__tape_scratch_end(tp, mark);
    return finish(tp, fn, OP_AVG_POOL_ADJ, out, 1, &gy, g);
}

/* y = x.flat[idx] with y shaped (4-D) shape; idx lives in the arena. */
static mnas_tensor *gather_op(mnas_tape *tp, mnas_tensor *x, const int64_t *idx, const int64_t shape[4])
{
    const char *fn = "mnas_max_pool2d backward";
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    if (!out) return NULL;
    mnas__k_gather_at(out->size, idx, x->data, out->data);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_POOL_GATHER, out, 1, &x, &node)) return NULL;
    if (node) {
        node->idx = idx;
        node->nidx = (size_t)out->size;
    }
    return out;
}

/* The adjoint: a zero tensor of shape with y added at idx. */
static mnas_tensor *scatter_op(mnas_tape *tp, mnas_tensor *y, const int64_t *idx, const int64_t shape[4])
{
    const char *fn = "mnas_max_pool2d backward";
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    if (!out) return NULL;
    mnas__k_scatter_at(shape[0] * shape[1], y->size, idx, y->data, out->size, out->data);
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_POOL_SCATTER, out, 1, &y, &node)) return NULL;
    if (node) {
        node->idx = idx;
        node->nidx = (size_t)y->size;
    }
    return out;
}

/* ---- public ops ------------------------------------------------------------ */

mnas_tensor *mnas_unfold(mnas_tape *tp, mnas_tensor *x, int kh, int kw, int stride, int padding, int dilation)
{
    const char *fn = "mnas_unfold";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!need_4d(tp, fn, "x", x)) return NULL;
    mnas_kconv g;
    if (!geometry(tp, fn, x->shape[0], x->shape[1], x->shape[2], x->shape[3], kh, kw, stride, padding, dilation, &g))
        return NULL;
    return unfold_op(tp, x, &g);
}

mnas_tensor *mnas_fold(mnas_tape *tp, mnas_tensor *cols, int64_t channels, int64_t height, int64_t width, int kh,
                       int kw, int stride, int padding, int dilation)
{
    const char *fn = "mnas_fold";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "cols", cols)) return NULL;
    if (cols->ndim != 3) {
        char s[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: cols must be 3-D [N, C*kh*kw, OH*OW] (got %s)", fn,
                         mnas__shape_str(s, sizeof s, cols->ndim, cols->shape));
        return NULL;
    }
    int64_t out4[4] = { cols->shape[0], channels, height, width }, size;
    if (channels < 1 || height < 1 || width < 1 || mnas__shape_check(tp->ctx, fn, 4, out4, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the output [%lld, %lld, %lld, %lld] is not a valid shape", fn,
                         (long long)out4[0], (long long)channels, (long long)height, (long long)width);
        return NULL;
    }
    mnas_kconv g;
    if (!geometry(tp, fn, cols->shape[0], channels, height, width, kh, kw, stride, padding, dilation, &g)) return NULL;
    if (cols->shape[1] != channels * kh * kw || cols->shape[2] != g.OH * g.OW) {
        char s[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE,
                         "%s: cols is %s but %lld channels of %lld x %lld with a %d x %d kernel need [%lld, %lld, "
                         "%lld] (OH = %lld, OW = %lld)",
                         fn, mnas__shape_str(s, sizeof s, cols->ndim, cols->shape), (long long)channels,
                         (long long)height, (long long)width, kh, kw, (long long)g.N, (long long)(channels * kh * kw),
                         (long long)(g.OH * g.OW), (long long)g.OH, (long long)g.OW);
        return NULL;
    }
    return fold_op(tp, cols, &g);
}

mnas_tensor *mnas_conv2d(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w, mnas_tensor *b, int stride, int padding,
                         int dilation, int groups)
{
    const char *fn = "mnas_conv2d";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x) || !mnas__input_ok(tp, fn, "w", w)) return NULL;
    if (b && !mnas__input_ok(tp, fn, "b", b)) return NULL;
    if (!need_4d(tp, fn, "x", x)) return NULL;
    if (w->ndim != 4) {
        char s[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: w must be 4-D [O, C/groups, kh, kw] (got %s)", fn,
                         mnas__shape_str(s, sizeof s, w->ndim, w->shape));
        return NULL;
    }
    int64_t C = x->shape[1], O = w->shape[0];
    if (groups < 1) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: groups %d must be positive", fn, groups);
        return NULL;
    }
    if (C % groups != 0 || O % groups != 0) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: groups %d must divide the %lld input and %lld output channels", fn,
                         groups, (long long)C, (long long)O);
        return NULL;
    }
    if (w->shape[1] != C / groups) {
        char s[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE,
                         "%s: channel mismatch: x has %lld channels in %d groups (%lld per group) but w is %s", fn,
                         (long long)C, groups, (long long)(C / groups), mnas__shape_str(s, sizeof s, 4, w->shape));
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != O)) {
        char s[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: b must be [%lld] (one per output channel), got %s", fn, (long long)O,
                         mnas__shape_str(s, sizeof s, b->ndim, b->shape));
        return NULL;
    }
    mnas_kconv g;
    if (!geometry(tp, fn, x->shape[0], C, x->shape[2], x->shape[3], w->shape[2], w->shape[3], stride, padding,
                  dilation, &g))
        return NULL;
    g.O = O;
    g.groups = groups;
    return conv_op(tp, x, w, b, &g);
}

static int pool_geometry(mnas_tape *tp, const char *fn, mnas_tensor *x, int kernel, int stride, int padding,
                         mnas_kconv *g)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return 0;
    if (!need_4d(tp, fn, "x", x)) return 0;
    if (kernel >= 1 && padding >= kernel) {
        /* Such a window could hold padding only: no max, no divisor. */
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: padding %d must be smaller than the kernel %d", fn, padding, kernel);
        return 0;
    }
    return geometry(tp, fn, x->shape[0], x->shape[1], x->shape[2], x->shape[3], kernel, kernel, stride, padding, 1, g);
}

mnas_tensor *mnas_max_pool2d(mnas_tape *tp, mnas_tensor *x, int kernel, int stride, int padding)
{
    const char *fn = "mnas_max_pool2d";
    mnas_kconv g;
    if (!pool_geometry(tp, fn, x, kernel, stride, padding, &g)) return NULL;
    int64_t shape[4] = { g.N, g.C, g.OH, g.OW };
    mnas_tensor *out = mnas__tape_new(tp, fn, 4, shape);
    if (!out) return NULL;
    int64_t *idx = NULL;
    if (mnas__should_record(tp, 1, &x)) {
        idx = mnas__tape_scratch(tp, fn, (size_t)out->size * sizeof *idx);
        if (!idx) return NULL;
    }
    real *scratch = NULL;
    mnas_arena_mark mark;
    int64_t ns = mnas__k_max_pool_scratch(&g);
    if (ns && !(scratch = mnas__tape_scratch_begin(tp, fn, (size_t)ns * sizeof(real), &mark))) return NULL;
    mnas__k_max_pool(&g, x->data, out->data, idx, scratch);
    if (scratch) mnas__tape_scratch_end(tp, mark);
    /* Recorded as the gather of x at its argmax. */
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_POOL_GATHER, out, 1, &x, &node)) return NULL;
    if (node) {
        node->idx = idx;
        node->nidx = (size_t)out->size;
    }
    return out;
}

mnas_tensor *mnas_avg_pool2d(mnas_tape *tp, mnas_tensor *x, int kernel, int stride, int padding)
{
    const char *fn = "mnas_avg_pool2d";
    mnas_kconv g;
    if (!pool_geometry(tp, fn, x, kernel, stride, padding, &g)) return NULL;
    return avg_op(tp, x, &g);
}

mnas_tensor *mnas_global_avg_pool(mnas_tape *tp, mnas_tensor *x)
{
    const char *fn = "mnas_global_avg_pool";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!need_4d(tp, fn, "x", x)) return NULL;
    int64_t s3[3] = { x->shape[0], x->shape[1], x->shape[2] * x->shape[3] };
    return mnas_mean_axis(tp, mnas_reshape(tp, x, 3, s3), 2, 0);
}

/* ---- backward rules ---------------------------------------------------- */

mnas_status mnas__vjp_conv(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    const mnas_kconv *geo = n->state;
    mnas_tensor *in0 = n->in[0], *in1 = n->nin > 1 ? n->in[1] : NULL;
    switch ((mnas_opcode)n->op) {
    /* Every op below makes a new tensor (MNAS__ACC_NEW), except the bias's
     * reshaped sum. */
    case OP_UNFOLD: MNAS__ACC_NEW(0, fold_op(tp, g, geo)); return MNAS_OK;
    case OP_FOLD: MNAS__ACC_NEW(0, unfold_op(tp, g, geo)); return MNAS_OK;
    case OP_CONV2D: /* y = conv(x, w) + b */
        MNAS__ACC_NEW(0, conv_dx_op(tp, g, in1, geo));
        MNAS__ACC_NEW(1, conv_dw_op(tp, in0, g, geo));
        if (n->nin > 2 && MNAS__WANT(2)) {
            int64_t s[4] = { 1, geo->O, 1, 1 };
            mnas_tensor *bias = n->in[2];
            MNAS__ACC(2, mnas_reshape(tp, mnas_sum_to(tp, g, 4, s), bias->ndim, bias->shape));
        }
        return MNAS_OK;
    case OP_CONV2D_DX: /* dx(gy, w): d/dgy = conv(v, w), d/dw = dw(v, gy) */
        MNAS__ACC_NEW(0, conv_op(tp, g, in1, NULL, geo));
        MNAS__ACC_NEW(1, conv_dw_op(tp, g, in0, geo));
        return MNAS_OK;
    case OP_CONV2D_DW: /* dw(x, gy): d/dx = dx(gy, q), d/dgy = conv(x, q) */
        MNAS__ACC_NEW(0, conv_dx_op(tp, in1, g, geo));
        MNAS__ACC_NEW(1, conv_op(tp, in0, g, NULL, geo));
        return MNAS_OK;
    case OP_AVG_POOL: MNAS__ACC_NEW(0, avg_adj_op(tp, g, geo)); return MNAS_OK;
    case OP_AVG_POOL_ADJ: MNAS__ACC_NEW(0, avg_op(tp, g, geo)); return MNAS_OK;
    case OP_POOL_GATHER: MNAS__ACC_NEW(0, scatter_op(tp, g, n->idx, in0->shape)); return MNAS_OK;
    case OP_POOL_SCATTER: MNAS__ACC_NEW(0, gather_op(tp, g, n->idx, in0->shape)); return MNAS_OK;
    default: break;
    }
    return mnas__bw_no_rule(tp, n);
}
