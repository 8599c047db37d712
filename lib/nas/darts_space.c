/* The DARTS conv search space (Liu et al. 2018, as used by the paper): its
 * eight ops on [N, C, H, W] states, and the ReLU-conv-BN and factorized
 * reduce pieces the conv cells share with them. */
#include <string.h>

#include "nas/nas_internal.h"

/* DARTS's search uses BN with affine=False: the ops have no BN parameters,
 * and the batch statistics are what the paper asks for. */
#define DARTS_BN_EPS 1e-5

static mnas_tensor *bn(mnas_tape *tp, mnas_tensor *x) { return mnas_batch_norm(tp, x, NULL, NULL, DARTS_BN_EPS); }

mnas_tensor *mnas__relu_conv_bn(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w)
{
    return bn(tp, mnas_conv2d(tp, mnas_relu(tp, x), w, NULL, 1, 0, 1, 1));
}

/* x shifted up and left by one pixel, zero filled, so that a 1x1 stride-2
 * conv reads the odd pixels (DARTS's x[:, :, 1:, 1:], kept at ceil(H/2) for
 * odd sizes too). */
static mnas_tensor *shift1(mnas_tape *tp, mnas_tensor *x)
{
    int64_t H = x->shape[2], W = x->shape[3];
    mnas_tensor *y = x;
    if (H > 1) y = mnas_pad_axis(tp, mnas_slice(tp, y, 2, 1, H - 1), 2, 0, H);
    else y = mnas_scale(tp, y, 0.0);
    if (W > 1) y = mnas_pad_axis(tp, mnas_slice(tp, y, 3, 1, W - 1), 3, 0, W);
    else y = mnas_scale(tp, y, 0.0);
    return y;
}

mnas_tensor *mnas__factorized_reduce(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w1, mnas_tensor *w2)
{
    mnas_tensor *r = mnas_relu(tp, x);
    if (!r) return NULL;
    mnas_tensor *halves[2] = { mnas_conv2d(tp, r, w1, NULL, 2, 0, 1, 1), mnas_conv2d(tp, shift1(tp, r), w2, NULL, 2, 0, 1, 1) };
    if (!halves[0] || !halves[1]) return NULL;
    return bn(tp, mnas_concat(tp, 2, halves, 1));
}

/* ---- declarations ------------------------------------------------------- */

static mnas_status add_conv(mnas_param_decl *d, const char *suffix, int64_t out, int64_t in, int64_t k)
{
    int64_t s[4] = { out, in, k, k };
    return mnas_param_decl_add(d, suffix, 4, s, MNAS_INIT_FAN_IN, (double)(in * k * k));
}

/* ReLU - depthwise kxk - pointwise 1x1 - BN, once (dil_conv) or twice
 * (sep_conv): dw1, pw1[, dw2, pw2]. */
static mnas_status dw_pw_declare(mnas_param_decl *d, int64_t C, int64_t k, int twice)
{
    mnas_status st = add_conv(d, "dw1", C, 1, k);
    if (st == MNAS_OK) st = add_conv(d, "pw1", C, C, 1);
    if (twice && st == MNAS_OK) st = add_conv(d, "dw2", C, 1, k);
    if (twice && st == MNAS_OK) st = add_conv(d, "pw2", C, C, 1);
    return st;
}

static mnas_status sep3_declare(void *u, int64_t C, mnas_param_decl *d) { (void)u; return dw_pw_declare(d, C, 3, 1); }
static mnas_status sep5_declare(void *u, int64_t C, mnas_param_decl *d) { (void)u; return dw_pw_declare(d, C, 5, 1); }
static mnas_status dil3_declare(void *u, int64_t C, mnas_param_decl *d) { (void)u; return dw_pw_declare(d, C, 3, 0); }
static mnas_status dil5_declare(void *u, int64_t C, mnas_param_decl *d) { (void)u; return dw_pw_declare(d, C, 5, 0); }

/* Identity needs nothing; the factorized reduce two 1x1 convs of C/2. */
static mnas_status skip_declare(void *u, int64_t C, mnas_param_decl *d)
{
    (void)u;
    if (mnas_param_decl_stride(d) != 2) return MNAS_OK;
    if (C % 2)
        return mnas__error(d->ctx, MNAS_E_INVALID,
                           "skip_connect at stride 2 (factorized reduce) needs an even width, got %lld", (long long)C);
    mnas_status st = add_conv(d, "fr_w1", C / 2, C, 1);
    if (st == MNAS_OK) st = add_conv(d, "fr_w2", C / 2, C, 1);
    return st;
}

/* ---- forwards ------------------------------------------------------------- */

static int conv_input_ok(mnas_tape *tp, mnas_tensor *x, const char *op)
{
    if (!x) return 0;
    if (x->ndim != 4) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "op \"%s\": x must be [N, C, H, W], got %d dimensions", op, x->ndim);
        return 0;
    }
    return 1;
}

/* ReLU - depthwise conv (k, stride, dilation) - 1x1 conv - BN. The ReLU of
 * an op's input (first stage) is shared by the four conv ops of an edge,
 * which read the same state: one ReLU's data and backward instead of four. */
static mnas_tensor *dw_pw(mnas_tape *tp, mnas_tensor *x, mnas_tensor *dw, mnas_tensor *pw, int k, int stride,
                          int dilation, int first)
{
    int pad = dilation * (k / 2);
    mnas_tensor *r = first ? mnas__relu_shared(tp, x) : mnas_relu(tp, x);
    mnas_tensor *y = mnas_conv2d(tp, r, dw, NULL, stride, pad, dilation, (int)x->shape[1]);
    return bn(tp, mnas_conv2d(tp, y, pw, NULL, 1, 0, 1, 1));
}

static mnas_tensor *sep(mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int k, int stride, const char *name)
{
    if (!conv_input_ok(tp, x, name)) return NULL;
    mnas_tensor *y = dw_pw(tp, x, w[0], w[1], k, stride, 1, 1);
    return y ? dw_pw(tp, y, w[2], w[3], k, 1, 1, 0) : NULL;
}

static mnas_tensor *dil(mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int k, int stride, const char *name)
{
    if (!conv_input_ok(tp, x, name)) return NULL;
    return dw_pw(tp, x, w[0], w[1], k, stride, 2, 1);
}

static mnas_tensor *sep3_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    return sep(tp, x, w, 3, s, "sep_conv_3x3");
}
static mnas_tensor *sep5_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    return sep(tp, x, w, 5, s, "sep_conv_5x5");
}
static mnas_tensor *dil3_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    return dil(tp, x, w, 3, s, "dil_conv_3x3");
}
static mnas_tensor *dil5_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    return dil(tp, x, w, 5, s, "dil_conv_5x5");
}

/* Pools 3x3, padding 1, then BN as in DARTS's search (it puts the pools on
 * the same scale as the conv ops, whose outputs are normalised). */
static mnas_tensor *max_pool_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    (void)w;
    if (!conv_input_ok(tp, x, "max_pool_3x3")) return NULL;
    return bn(tp, mnas_max_pool2d(tp, x, 3, s, 1));
}

static mnas_tensor *avg_pool_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    (void)w;
    if (!conv_input_ok(tp, x, "avg_pool_3x3")) return NULL;
    return bn(tp, mnas_avg_pool2d(tp, x, 3, s, 1));
}

static mnas_tensor *skip_connect_forward(void *u, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int s)
{
    (void)u;
    if (!conv_input_ok(tp, x, "skip_connect")) return NULL;
    if (s == 1) return x;
    if (x->shape[1] % 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "op \"skip_connect\": the factorized reduce needs an even C, got %lld",
                         (long long)x->shape[1]);
        return NULL;
    }
    return mnas__factorized_reduce(tp, x, w[0], w[1]);
}

mnas_search_space *mnas_search_space_darts(mnas_ctx *ctx)
{
    mnas_search_space *s = mnas_search_space_create(ctx);
    if (!s) return NULL;
    if (mnas_search_space_add_op(s, "none", 1, NULL, NULL, NULL) < 0 ||
        mnas_search_space_add_op(s, "max_pool_3x3", 0, NULL, max_pool_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "avg_pool_3x3", 0, NULL, avg_pool_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "skip_connect", 0, skip_declare, skip_connect_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "sep_conv_3x3", 0, sep3_declare, sep3_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "sep_conv_5x5", 0, sep5_declare, sep5_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "dil_conv_3x3", 0, dil3_declare, dil3_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "dil_conv_5x5", 0, dil5_declare, dil5_forward, NULL) < 0) {
        mnas_search_space_free(s);
        return NULL;
    }
    return s;
}
