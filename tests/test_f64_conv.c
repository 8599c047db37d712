/* Finite-difference checks, in double precision, of the convolution and
 * pooling ops (and of the existing ops the conv search space leans on on
 * [N, C, H, W] tensors: channel concat, 4-D batch-norm): orders 1 to 3 (the
 * gradient, the gradient of v·grad, the gradient of w·grad(v·grad)), each
 * with the last pass recorded and not, alone and in seeded random
 * compositions. Linked with the double build of the library (mnas_f64).
 *
 * As in test_f64_gradcheck.c, each op's output y is reduced to a scalar by
 * f = Σ w1⊙y + Σ w2⊙y² with fixed random weights, so the second derivative
 * of even a linear op is not zero. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

#include "autodiff/autodiff_internal.h" /* mnas__batch_norm_relu, the conv net's fused block op */
#include "kernels/kernels.h"             /* the convolution kernels, on scratch of their exact size */

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

enum { INIT_NORMAL, INIT_POSITIVE, INIT_AWAY_FROM_ZERO, INIT_DISTINCT };

#define MAXIN 5

typedef mnas_tensor *(*op_fn)(mnas_tape *tp, mnas_tensor *const *in);

typedef struct {
    const char *name;
    int nin;
    int ndim[MAXIN];
    int64_t shape[MAXIN][4];
    int init[MAXIN];
    op_fn op;
} op_case;

/* ---- the ops under test ---------------------------------------------- */

static mnas_tensor *f_unfold_3x3_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_unfold(t, in[0], 3, 3, 1, 1, 1);
}
static mnas_tensor *f_unfold_2x3_s2_p1_d2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_unfold(t, in[0], 2, 3, 2, 1, 2);
}
static mnas_tensor *f_fold_3x3_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_fold(t, in[0], 2, 5, 4, 3, 3, 1, 1, 1);
}
static mnas_tensor *f_fold_2x3_s2_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_fold(t, in[0], 2, 5, 6, 2, 3, 2, 1, 1);
}
static mnas_tensor *f_fold_3x3_d2_p2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_fold(t, in[0], 1, 5, 5, 3, 3, 1, 2, 2);
}
static mnas_tensor *f_conv(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 0, 1, 1);
}
static mnas_tensor *f_conv_s2_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 2, 1, 1, 1);
}
static mnas_tensor *f_conv_p2_nob(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 1, 2, 1, 1);
}
static mnas_tensor *f_conv_d2_p2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 2, 2, 1);
}
static mnas_tensor *f_conv_g2_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 1, 2);
}
static mnas_tensor *f_conv_g2_nob(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 2, 1, 1, 2);
}
static mnas_tensor *f_dw_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 1, 3);
}
static mnas_tensor *f_dw_s2_d2_p2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 2, 2, 2, 3);
}
static mnas_tensor *f_dw_5x5_p2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 1, 2, 1, 3);
}
static mnas_tensor *f_dw_2x3_s2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 2, 1, 1, 2);
}
static mnas_tensor *f_dw_2x3_d2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 2, 2);
}
static mnas_tensor *f_dw_far(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 1, 38, 40, 2); /* stride 1, direct loops */
}
static mnas_tensor *f_conv_1x1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 0, 1, 1);
}
static mnas_tensor *f_conv_1x1_g2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 1, 0, 1, 2);
}
static mnas_tensor *f_conv_1x1_s2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 2, 0, 1, 1);
}
static mnas_tensor *f_conv_2x3_p1(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 1, 1);
}
static mnas_tensor *f_conv_p3(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 3, 1, 1); /* padding past the kernel: im2col */
}
static mnas_tensor *f_conv_5x3_d2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], NULL, 1, 2, 2, 1); /* direct, taps unequal per axis */
}
static mnas_tensor *f_conv_mult2(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 1, 2); /* groups == C, O == 2C */
}
static mnas_tensor *f_max_3_s1_p1(mnas_tape *t, mnas_tensor *const *in) { return mnas_max_pool2d(t, in[0], 3, 1, 1); }
static mnas_tensor *f_max_2_s2(mnas_tape *t, mnas_tensor *const *in) { return mnas_max_pool2d(t, in[0], 2, 2, 0); }
static mnas_tensor *f_max_3_s2_p1(mnas_tape *t, mnas_tensor *const *in) { return mnas_max_pool2d(t, in[0], 3, 2, 1); }
static mnas_tensor *f_avg_3_s1_p1(mnas_tape *t, mnas_tensor *const *in) { return mnas_avg_pool2d(t, in[0], 3, 1, 1); }
static mnas_tensor *f_avg_2_s2(mnas_tape *t, mnas_tensor *const *in) { return mnas_avg_pool2d(t, in[0], 2, 2, 0); }
static mnas_tensor *f_avg_3_s2_p1(mnas_tape *t, mnas_tensor *const *in) { return mnas_avg_pool2d(t, in[0], 3, 2, 1); }
static mnas_tensor *f_gap(mnas_tape *t, mnas_tensor *const *in) { return mnas_global_avg_pool(t, in[0]); }
static mnas_tensor *f_concat1(mnas_tape *t, mnas_tensor *const *in) { return mnas_concat(t, 3, in, 1); }
static mnas_tensor *f_bn4d(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_batch_norm(t, in[0], in[1], in[2], 1e-5);
}
static mnas_tensor *f_bn4d_plain(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas_batch_norm(t, in[0], NULL, NULL, 1e-3);
}
/* DARTS's sep_conv / dil_conv unit: ReLU -> depthwise -> 1x1 -> BN. */
static mnas_tensor *f_bn_relu4d(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas__batch_norm_relu(t, in[0], in[1], in[2], 1e-5);
}
static mnas_tensor *f_bn_relu4d_plain(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas__batch_norm_relu(t, in[0], NULL, NULL, 1e-3);
}
static mnas_tensor *f_bn_relu2d(mnas_tape *t, mnas_tensor *const *in)
{
    return mnas__batch_norm_relu(t, in[0], in[1], NULL, 1e-5);
}
static mnas_tensor *f_sep_chain(mnas_tape *t, mnas_tensor *const *in)
{
    mnas_tensor *h = mnas_conv2d(t, mnas_relu(t, in[0]), in[1], NULL, 1, 1, 1, 3);
    h = mnas_conv2d(t, h, in[2], NULL, 1, 0, 1, 1);
    return mnas_batch_norm(t, h, in[3], in[4], 1e-5);
}
static mnas_tensor *f_dil_chain(mnas_tape *t, mnas_tensor *const *in)
{
    mnas_tensor *h = mnas_conv2d(t, mnas_relu(t, in[0]), in[1], NULL, 1, 2, 2, 3);
    h = mnas_conv2d(t, h, in[2], NULL, 1, 0, 1, 1);
    return mnas_batch_norm(t, h, in[3], in[4], 1e-5);
}
/* A small image classifier head: conv -> max-pool -> avg-pool -> global
 * pool -> linear; a composite of every op here. */
static mnas_tensor *f_conv_net(mnas_tape *t, mnas_tensor *const *in)
{
    mnas_tensor *h = mnas_tanh(t, mnas_conv2d(t, in[0], in[1], in[2], 1, 1, 1, 1));
    h = mnas_avg_pool2d(t, mnas_max_pool2d(t, h, 2, 2, 0), 3, 1, 1);
    return mnas_linear(t, mnas_global_avg_pool(t, h), in[3], NULL);
}

#define S1(a) { a, 1, 1, 1 }
#define S3(a, b, c) { a, b, c, 1 }
#define S4(a, b, c, d) { a, b, c, d }
#define S2(a, b) { a, b, 1, 1 }
#define N INIT_NORMAL
#define Z INIT_AWAY_FROM_ZERO
#define D INIT_DISTINCT

static const op_case cases[] = {
    { "unfold 3x3 pad 1", 1, { 4 }, { S4(2, 3, 5, 4) }, { N }, f_unfold_3x3_p1 },
    { "unfold 2x3 stride 2 pad 1 dilation 2", 1, { 4 }, { S4(2, 2, 7, 6) }, { N }, f_unfold_2x3_s2_p1_d2 },
    { "fold 3x3 pad 1", 1, { 3 }, { S3(2, 18, 20) }, { N }, f_fold_3x3_p1 },
    { "fold 2x3 stride 2 pad 1", 1, { 3 }, { S3(2, 12, 9) }, { N }, f_fold_2x3_s2_p1 },
    { "fold 3x3 dilation 2 pad 2", 1, { 3 }, { S3(1, 9, 25) }, { N }, f_fold_3x3_d2_p2 },
    { "conv2d plain", 3, { 4, 4, 1 }, { S4(2, 3, 5, 5), S4(4, 3, 3, 3), S1(4) }, { N, N, N }, f_conv },
    { "conv2d stride 2 pad 1", 3, { 4, 4, 1 }, { S4(2, 3, 6, 5), S4(4, 3, 3, 3), S1(4) }, { N, N, N }, f_conv_s2_p1 },
    { "conv2d pad 2 no bias", 2, { 4, 4 }, { S4(1, 2, 4, 5), S4(3, 2, 3, 3) }, { N, N }, f_conv_p2_nob },
    { "conv2d dilation 2 pad 2", 3, { 4, 4, 1 }, { S4(2, 2, 6, 6), S4(3, 2, 3, 3), S1(3) }, { N, N, N }, f_conv_d2_p2 },
    { "conv2d groups 2 pad 1", 3, { 4, 4, 1 }, { S4(2, 4, 5, 5), S4(6, 2, 3, 3), S1(6) }, { N, N, N }, f_conv_g2_p1 },
    { "conv2d groups 2 stride 2 no bias", 2, { 4, 4 }, { S4(2, 4, 5, 6), S4(4, 2, 3, 2) }, { N, N }, f_conv_g2_nob },
    { "conv2d depthwise pad 1", 3, { 4, 4, 1 }, { S4(2, 3, 5, 6), S4(3, 1, 3, 3), S1(3) }, { N, N, N }, f_dw_p1 },
    { "conv2d depthwise stride 2 dilation 2 pad 2", 2, { 4, 4 }, { S4(2, 3, 7, 7), S4(3, 1, 3, 3) }, { N, N },
      f_dw_s2_d2_p2 },
    { "conv2d depthwise 5x5 pad 2", 2, { 4, 4 }, { S4(1, 3, 6, 5), S4(3, 1, 5, 5) }, { N, N }, f_dw_5x5_p2 },
    { "conv2d depthwise 2x3 stride 2 pad 1", 3, { 4, 4, 1 }, { S4(2, 2, 5, 6), S4(2, 1, 2, 3), S1(2) }, { N, N, N },
      f_dw_2x3_s2 },
    { "conv2d depthwise 2x3 dilation 2 stride 1", 3, { 4, 4, 1 }, { S4(2, 2, 6, 5), S4(2, 1, 2, 3), S1(2) },
      { N, N, N }, f_dw_2x3_d2 },
    { "conv2d depthwise stride 1 huge padding and dilation", 2, { 4, 4 }, { S4(1, 2, 5, 5), S4(2, 1, 3, 3) }, { N, N },
      f_dw_far },
    { "conv2d 1x1", 3, { 4, 4, 1 }, { S4(2, 4, 3, 3), S4(5, 4, 1, 1), S1(5) }, { N, N, N }, f_conv_1x1 },
    { "conv2d 1x1 groups 2", 2, { 4, 4 }, { S4(2, 4, 3, 2), S4(4, 2, 1, 1) }, { N, N }, f_conv_1x1_g2 },
    { "conv2d 1x1 stride 2", 2, { 4, 4 }, { S4(1, 3, 5, 5), S4(2, 3, 1, 1) }, { N, N }, f_conv_1x1_s2 },
    { "conv2d 2x3 kernel pad 1 non-square image", 3, { 4, 4, 1 }, { S4(2, 2, 4, 6), S4(3, 2, 2, 3), S1(3) },
      { N, N, N }, f_conv_2x3_p1 },
    { "conv2d 3x3 pad 1, 8 -> 9 channels, 8 x 9 (Winograd)", 3, { 4, 4, 1 },
      { S4(1, 8, 8, 9), S4(9, 8, 3, 3), S1(9) }, { N, N, N }, f_conv_2x3_p1 },
    { "conv2d pad 3 (im2col)", 3, { 4, 4, 1 }, { S4(1, 2, 4, 5), S4(3, 2, 3, 3), S1(3) }, { N, N, N }, f_conv_p3 },
    { "conv2d 5x3 dilation 2 one channel", 2, { 4, 4 }, { S4(2, 1, 9, 5), S4(1, 1, 5, 3) }, { N, N }, f_conv_5x3_d2 },
    { "conv2d groups == C, O == 2C", 3, { 4, 4, 1 }, { S4(1, 2, 4, 4), S4(4, 1, 3, 3), S1(4) }, { N, N, N },
      f_conv_mult2 },
    { "max_pool2d 3 stride 1 pad 1", 1, { 4 }, { S4(2, 2, 5, 5) }, { D }, f_max_3_s1_p1 },
    { "max_pool2d 2 stride 2", 1, { 4 }, { S4(2, 2, 6, 5) }, { D }, f_max_2_s2 },
    { "max_pool2d 3 stride 2 pad 1", 1, { 4 }, { S4(1, 3, 7, 6) }, { D }, f_max_3_s2_p1 },
    { "avg_pool2d 3 stride 1 pad 1", 1, { 4 }, { S4(2, 2, 5, 5) }, { N }, f_avg_3_s1_p1 },
    { "avg_pool2d 2 stride 2", 1, { 4 }, { S4(2, 2, 6, 5) }, { N }, f_avg_2_s2 },
    { "avg_pool2d 3 stride 2 pad 1", 1, { 4 }, { S4(1, 3, 7, 6) }, { N }, f_avg_3_s2_p1 },
    { "global_avg_pool", 1, { 4 }, { S4(2, 3, 4, 5) }, { N }, f_gap },
    { "concat axis 1 NCHW", 3, { 4, 4, 4 }, { S4(2, 1, 3, 3), S4(2, 2, 3, 3), S4(2, 3, 3, 3) }, { N, N, N },
      f_concat1 },
    { "batch_norm NCHW", 3, { 4, 1, 1 }, { S4(3, 2, 3, 4), S1(2), S1(2) }, { N, N, N }, f_bn4d },
    { "batch_norm NCHW no affine", 1, { 4 }, { S4(2, 3, 2, 3) }, { N }, f_bn4d_plain },
    { "batch_norm+relu NCHW (fused)", 3, { 4, 1, 1 }, { S4(3, 2, 3, 4), S1(2), S1(2) }, { N, N, N }, f_bn_relu4d },
    { "batch_norm+relu NCHW, 5x5 planes (fused)", 3, { 4, 1, 1 }, { S4(2, 2, 5, 5), S1(2), S1(2) }, { N, N, N }, f_bn_relu4d },
    { "batch_norm+relu NCHW no affine (fused)", 1, { 4 }, { S4(2, 3, 2, 3) }, { N }, f_bn_relu4d_plain },
    { "batch_norm+relu [N, F] gamma only (fused)", 2, { 2, 1 }, { S2(5, 3), S1(3) }, { N, N }, f_bn_relu2d },
    { "sep_conv chain relu-depthwise-1x1-bn", 5, { 4, 4, 4, 1, 1 },
      { S4(2, 3, 5, 5), S4(3, 1, 3, 3), S4(4, 3, 1, 1), S1(4), S1(4) }, { Z, N, N, N, N }, f_sep_chain },
    { "dil_conv chain relu-depthwise(d2)-1x1-bn", 5, { 4, 4, 4, 1, 1 },
      { S4(2, 3, 6, 6), S4(3, 1, 3, 3), S4(4, 3, 1, 1), S1(4), S1(4) }, { Z, N, N, N, N }, f_dil_chain },
    { "conv-tanh-maxpool-avgpool-gap-linear", 4, { 4, 4, 1, 2 },
      { S4(2, 2, 6, 6), S4(3, 2, 3, 3), S1(3), S2(2, 3) }, { N, N, N, N }, f_conv_net },
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- harness ---------------------------------------------------------- */

typedef struct {
    const op_case *c;
    mnas_tensor *w1, *w2;
} harness;

static mnas_tensor *reduce_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    harness *h = user;
    mnas_tensor *y = h->c->op(tp, in);
    if (!y) return NULL;
    mnas_tensor *a = mnas_sum(tp, mnas_mul(tp, y, h->w1));
    mnas_tensor *b = mnas_sum(tp, mnas_mul(tp, mnas_square(tp, y), h->w2));
    return mnas_add(tp, a, b);
}

static int cmp_val(const void *a, const void *b, void *d)
{
    const mnas_real *v = d;
    mnas_real x = v[*(const int64_t *)a], y = v[*(const int64_t *)b];
    return (x > y) - (x < y);
}

/* Replace the values by their ranks spaced 0.05 apart (same order): every
 * window's maximum then beats the runner-up by far more than the
 * finite-difference step, so no perturbation moves an argmax. */
static void make_distinct(mnas_real *d, int64_t n)
{
    int64_t *ix = malloc((size_t)n * sizeof *ix);
    ck_assert_ptr_nonnull(ix);
    for (int64_t i = 0; i < n; i++) ix[i] = i;
    /* insertion sort by value (small tensors) */
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = i; j > 0 && cmp_val(&ix[j - 1], &ix[j], d) > 0; j--) {
            int64_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    for (int64_t r = 0; r < n; r++) d[ix[r]] = 0.05 * (double)(r - n / 2);
    free(ix);
}

static void run_case(int i, int order, int record_last)
{
    /* Valgrind checks memory, not numbers: orders 1 and 2 exercise every
     * rule's allocations; order 3 runs natively only. */
    if (order == 3 && (getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED")))
        return; /* valgrind and the sanitizers: order 3 is the plain run's */
    const op_case *c = &cases[i];
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_ctx_seed(ctx, 5000u + (uint64_t)i);
    mnas_tensor *in[MAXIN] = { NULL };
    for (int k = 0; k < c->nin; k++) {
        in[k] = mnas_tensor_randn(ctx, c->ndim[k], c->shape[k], 0.0, 1.0);
        ck_assert_ptr_nonnull(in[k]);
        mnas_real *d = mnas_tensor_data(in[k]);
        int64_t n = mnas_tensor_size(in[k]);
        for (int64_t j = 0; j < n; j++) {
            if (c->init[k] == INIT_POSITIVE) d[j] = 0.5 + fabs(d[j]);
            if (c->init[k] == INIT_AWAY_FROM_ZERO) d[j] = (d[j] < 0 ? -0.2 : 0.2) + d[j];
        }
        if (c->init[k] == INIT_DISTINCT) make_distinct(d, n);
        ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    }
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *y = c->op(tp, in);
    ck_assert_msg(y != NULL, "%s: forward failed: %s", c->name, mnas_tape_last_error(tp));
    int64_t ys[4];
    ck_assert_int_eq(mnas_tensor_shape(y, ys), MNAS_OK);
    harness h = { c, mnas_tensor_randn(ctx, mnas_tensor_ndim(y), ys, 0.0, 1.0),
                  mnas_tensor_randn(ctx, mnas_tensor_ndim(y), ys, 0.0, 0.5) };
    mnas_tape_free(tp);
    ck_assert_ptr_nonnull(h.w1);
    ck_assert_ptr_nonnull(h.w2);

    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = order;
    o.record_last = record_last;
    double worst = -1;
    mnas_status st = mnas_gradcheck(ctx, reduce_fn, &h, (size_t)c->nin, in, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "%s, order %d%s: %s", c->name, order, record_last ? ", last pass recorded" : "",
                  mnas_ctx_last_error(ctx));
    ck_assert(worst >= 0.0 && worst <= 1.0);

    mnas_tensor_free(h.w1);
    mnas_tensor_free(h.w2);
    for (int k = 0; k < c->nin; k++) mnas_tensor_free(in[k]);
    mnas_ctx_free(ctx);
}

/* Loop index: case * 6 + mode, mode = (order - 1) * 2 + record_last. */
START_TEST(op_orders_1_to_3) { run_case(_i / 6, 1 + (_i % 6) / 2, _i % 2); }
END_TEST

/* ---- random compositions ----------------------------------------------
 * Seeded random chains of 3-8 conv-space ops over [2, 2, 5, 5] images, each
 * op reading one or two earlier values, so every op's incoming gradient
 * depends on its inputs. Inputs: x, y [2, 2, 5, 5]; a 3x3 kernel K
 * [2, 2, 3, 3]; a depthwise kernel D [2, 1, 3, 3]; a 1x1 kernel P
 * [2, 2, 1, 1]; gamma, beta [2]. Max-pool sees continuous random data, so
 * at these seeds no window's two largest values lie within the
 * finite-difference step of each other (a tie would show as a failure). */

enum { C_CONV, C_CONV_S1_D2, C_DW, C_PW, C_MAX, C_AVG, C_BN, C_BN_AFFINE, C_RELU, C_TANH, C_MUL, C_ADD,
       C_CONCAT_SLICE, C_UNFOLD_FOLD, C_GAP_BCAST, C_SEP, C_NOPS };
enum { CGRAPH_MAX = 8, CGRAPHS = 30 };

typedef struct {
    int nops;
    int op[CGRAPH_MAX], a[CGRAPH_MAX], b[CGRAPH_MAX];
} cgraph;

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static cgraph make_cgraph(int g)
{
    uint64_t st = 0xc0dull + (uint64_t)g * 104729u;
    cgraph gr;
    gr.nops = 3 + (int)(lcg(&st) % 6);
    for (int k = 0; k < gr.nops; k++) {
        int nvals = 2 + k;
        gr.op[k] = (int)(lcg(&st) % C_NOPS);
        gr.a[k] = nvals - 1 - (int)(lcg(&st) % (unsigned)(nvals < 3 ? nvals : 3));
        gr.b[k] = (int)(lcg(&st) % (unsigned)nvals);
    }
    return gr;
}

static mnas_tensor *cgraph_op(mnas_tape *t, int op, mnas_tensor *x, mnas_tensor *y, mnas_tensor *const *in)
{
    mnas_tensor *K = in[2], *D = in[3], *P = in[4], *gamma = in[5], *beta = in[6];
    switch (op) {
    case C_CONV: return mnas_conv2d(t, x, K, beta, 1, 1, 1, 1);
    case C_CONV_S1_D2: return mnas_conv2d(t, x, K, NULL, 1, 2, 2, 1);
    case C_DW: return mnas_conv2d(t, x, D, NULL, 1, 1, 1, 2);
    case C_PW: return mnas_conv2d(t, x, P, NULL, 1, 0, 1, 1);
    case C_MAX: return mnas_max_pool2d(t, x, 3, 1, 1);
    case C_AVG: return mnas_avg_pool2d(t, x, 3, 1, 1);
    case C_BN: return mnas_batch_norm(t, x, NULL, NULL, 1e-3);
    case C_BN_AFFINE: return mnas_batch_norm(t, x, gamma, beta, 1e-3);
    case C_RELU: return mnas_relu(t, mnas_add_scalar(t, x, 0.03));
    case C_TANH: return mnas_tanh(t, x);
    case C_MUL: return mnas_mul(t, x, y);
    case C_ADD: return mnas_add(t, x, y);
    case C_CONCAT_SLICE: {
        mnas_tensor *xy[2] = { x, y };
        return mnas_slice(t, mnas_concat(t, 2, xy, 1), 1, 1, 2);
    }
    case C_UNFOLD_FOLD: return mnas_fold(t, mnas_unfold(t, x, 3, 3, 1, 1, 1), 2, 5, 5, 3, 3, 1, 1, 1);
    case C_GAP_BCAST: {
        int64_t s[4] = { 2, 2, 1, 1 };
        return mnas_mul(t, x, mnas_reshape(t, mnas_global_avg_pool(t, y), 4, s));
    }
    case C_SEP: /* DARTS's sep_conv stage */
        return mnas_batch_norm(t, mnas_conv2d(t, mnas_conv2d(t, mnas_relu(t, x), D, NULL, 1, 1, 1, 2), P, NULL, 1, 0, 1, 1),
                               gamma, beta, 1e-5);
    }
    return NULL;
}

typedef struct {
    cgraph g;
    mnas_tensor *w1, *w2;
} cgraph_harness;

static mnas_tensor *cgraph_fn(mnas_tape *t, mnas_tensor *const *in, void *user)
{
    cgraph_harness *h = user;
    mnas_tensor *val[2 + CGRAPH_MAX] = { in[0], in[1] };
    for (int k = 0; k < h->g.nops; k++) val[2 + k] = cgraph_op(t, h->g.op[k], val[h->g.a[k]], val[h->g.b[k]], in);
    mnas_tensor *y = val[1 + h->g.nops];
    return mnas_add(t, mnas_sum(t, mnas_mul(t, y, h->w1)), mnas_sum(t, mnas_mul(t, mnas_square(t, y), h->w2)));
}

static void run_cgraph(int i, int order, int record_last)
{
    /* Valgrind checks memory, not numbers: orders 1 and 2 exercise every
     * rule's allocations; order 3 runs natively only. */
    if (order == 3 && (getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED")))
        return; /* valgrind and the sanitizers: order 3 is the plain run's */
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_ctx_seed(ctx, 8000u + (uint64_t)i);
    int64_t sx[4] = { 2, 2, 5, 5 }, sk[4] = { 2, 2, 3, 3 }, sd[4] = { 2, 1, 3, 3 }, sp[4] = { 2, 2, 1, 1 }, s2[1] = { 2 };
    mnas_tensor *in[7] = { mnas_tensor_randn(ctx, 4, sx, 0, 1),   mnas_tensor_randn(ctx, 4, sx, 0, 1),
                           mnas_tensor_randn(ctx, 4, sk, 0, 0.4), mnas_tensor_randn(ctx, 4, sd, 0, 0.5),
                           mnas_tensor_randn(ctx, 4, sp, 0, 0.7), mnas_tensor_randn(ctx, 1, s2, 1, 0.3),
                           mnas_tensor_randn(ctx, 1, s2, 0, 0.3) };
    for (int k = 0; k < 7; k++) {
        ck_assert_ptr_nonnull(in[k]);
        ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    }
    cgraph_harness h = { make_cgraph(i), mnas_tensor_randn(ctx, 4, sx, 0, 1), mnas_tensor_randn(ctx, 4, sx, 0, 0.5) };
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = order;
    o.record_last = record_last;
    double worst = -1;
    mnas_status st = mnas_gradcheck(ctx, cgraph_fn, &h, 7, in, &o, &worst);
    char ops[128] = "";
    for (int k = 0; k < h.g.nops; k++) {
        size_t len = strlen(ops);
        snprintf(ops + len, sizeof ops - len, "%s%d", k ? "," : "", h.g.op[k]);
    }
    ck_assert_msg(st == MNAS_OK, "conv graph %d (ops %s), order %d%s: %s", i, ops, order,
                  record_last ? ", last pass recorded" : "", mnas_ctx_last_error(ctx));
    ck_assert(worst >= 0.0 && worst <= 1.0);
    mnas_tensor_free(h.w1);
    mnas_tensor_free(h.w2);
    for (int k = 0; k < 7; k++) mnas_tensor_free(in[k]);
    mnas_ctx_free(ctx);
}

START_TEST(random_graphs_orders_1_to_3) { run_cgraph(_i / 6, 1 + (_i % 6) / 2, _i % 2); }
END_TEST

START_TEST(random_graphs_cover_every_op)
{
    int seen[C_NOPS] = { 0 };
    for (int g = 0; g < CGRAPHS; g++) {
        cgraph gr = make_cgraph(g);
        for (int k = 0; k < gr.nops; k++) seen[gr.op[k]]++;
    }
    for (int op = 0; op < C_NOPS; op++) ck_assert_msg(seen[op] > 0, "op %d never drawn", op);
}
END_TEST

/* ---- MAML through a conv net -------------------------------------------
 * One second-order SGD step on a support loss of a small DARTS-like conv
 * net (relu -> depthwise 3x3 -> 1x1 -> batch-norm -> max-pool -> global
 * pool -> linear), then the query loss: its gradient with respect to the
 * meta-weights needs the conv ops' second derivatives (Eq. (8) inside
 * Eq. (9)), and the order-2 check of it their third. */

enum { P_DW, P_PW, P_GAMMA, P_BETA, P_FC, NP };

typedef struct {
    mnas_tensor *xs, *ys, *xq, *yq;
    double lr;
} maml_data;

static mnas_tensor *net(mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    mnas_tensor *h = mnas_conv2d(tp, mnas_relu(tp, x), w[P_DW], NULL, 1, 1, 1, 2);
    h = mnas_batch_norm(tp, mnas_conv2d(tp, h, w[P_PW], NULL, 1, 0, 1, 1), w[P_GAMMA], w[P_BETA], 1e-5);
    h = mnas_global_avg_pool(tp, mnas_max_pool2d(tp, h, 2, 2, 0));
    return mnas_linear(tp, h, w[P_FC], NULL);
}

static mnas_tensor *maml_objective(mnas_tape *tp, mnas_tensor *const *params, void *user)
{
    maml_data *d = user;
    mnas_tensor *fast[NP], *g[NP];
    for (int k = 0; k < NP; k++) fast[k] = params[k];
    mnas_tensor *loss = mnas_mse(tp, net(tp, d->xs, fast), d->ys);
    if (!loss || mnas_grad(tp, loss, NP, fast, g, 1) != MNAS_OK) return NULL;
    for (int k = 0; k < NP; k++) fast[k] = mnas_axpy(tp, -d->lr, g[k], fast[k]);
    return mnas_mse(tp, net(tp, d->xq, fast), d->yq);
}

START_TEST(maml_conv_net_meta_gradient)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 11;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    int64_t sx[4] = { 3, 2, 4, 4 }, sy[2] = { 3, 1 }, sdw[4] = { 2, 1, 3, 3 }, spw[4] = { 3, 2, 1, 1 }, s3[1] = { 3 },
            sfc[2] = { 1, 3 };
    maml_data d = { mnas_tensor_randn(ctx, 4, sx, 0, 1), mnas_tensor_randn(ctx, 2, sy, 0, 1),
                    mnas_tensor_randn(ctx, 4, sx, 0, 1), mnas_tensor_randn(ctx, 2, sy, 0, 1), 0.1 };
    /* Keep the inputs away from the ReLU kink and free of max-pool ties. */
    mnas_tensor *xs2[2] = { d.xs, d.xq };
    for (int t = 0; t < 2; t++) {
        mnas_real *v = mnas_tensor_data(xs2[t]);
        for (int64_t i = 0; i < mnas_tensor_size(xs2[t]); i++) v[i] += v[i] < 0 ? -0.2 : 0.2;
    }
    mnas_tensor *p[NP] = { mnas_tensor_randn(ctx, 4, sdw, 0, 0.5), mnas_tensor_randn(ctx, 4, spw, 0, 0.5),
                           mnas_tensor_randn(ctx, 1, s3, 1, 0.2), mnas_tensor_randn(ctx, 1, s3, 0, 0.2),
                           mnas_tensor_randn(ctx, 2, sfc, 0, 0.5) };
    for (int k = 0; k < NP; k++) {
        ck_assert_ptr_nonnull(p[k]);
        mnas_tensor_set_requires_grad(p[k], 1);
    }
    double worst;
    mnas_status st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, NULL, &worst);
    ck_assert_msg(st == MNAS_OK, "meta-gradient: %s", mnas_ctx_last_error(ctx));
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = 2;
    st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "order 2 of the meta-objective: %s", mnas_ctx_last_error(ctx));
    o.record_last = 1; /* every pass recorded: the fourth derivative of the net */
    st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "order 2 of the meta-objective, recorded: %s", mnas_ctx_last_error(ctx));
    for (int k = 0; k < NP; k++) mnas_tensor_free(p[k]);
    mnas_tensor_free(d.xs);
    mnas_tensor_free(d.ys);
    mnas_tensor_free(d.xq);
    mnas_tensor_free(d.yq);
    mnas_ctx_free(ctx);
}
END_TEST

static int same_bits(mnas_tensor *a, mnas_tensor *b)
{
    return mnas_tensor_size(a) == mnas_tensor_size(b) &&
           !memcmp(mnas_tensor_cdata(a), mnas_tensor_cdata(b), (size_t)mnas_tensor_size(a) * sizeof(mnas_real));
}

/* relu(batch_norm) as one op gives the bits of the two ops: values, the
 * unrecorded gradients (the fused kernel), the recorded ones, and the
 * gradients of those (through the recorded rule), for [N, C, H, W] runs
 * of 323 values (the kernel's blocks of 16 and a tail of 3, with the ReLU's
 * mask applied in the sums) and for [N, F] rows, with a NaN in one channel
 * passed through as mnas_relu passes it. */
START_TEST(batch_norm_relu_matches_separate_ops)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 12;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    for (int shape = 0; shape < 2; shape++) {
        int64_t sx[4] = { 3, 4, 19, 17 }, sr[2] = { 6, 5 }, sc[1] = { shape ? 5 : 4 };
        int nd = shape ? 2 : 4;
        const int64_t *xs = shape ? sr : sx;
        int64_t nan_at = shape ? 3 : 19 * 17 + 5; /* channel 1 of image 0, or feature 3 of row 0 */
        mnas_tensor *x = mnas_tensor_randn(ctx, nd, xs, 0, 1), *wy = mnas_tensor_randn(ctx, nd, xs, 0, 1);
        mnas_tensor *gam = mnas_tensor_randn(ctx, 1, sc, 1, 0.5), *bet = mnas_tensor_randn(ctx, 1, sc, 0, 0.5);
        ck_assert(x && wy && gam && bet);
        mnas_tensor_data(x)[nan_at] = NAN;
        mnas_tensor *in[3] = { x, gam, bet };
        for (int k = 0; k < 3; k++) mnas_tensor_set_requires_grad(in[k], 1);
        mnas_tensor *y[2], *g[2][3], *gr[2][3], *h[2][3];
        for (int fused = 0; fused < 2; fused++) {
            y[fused] = fused ? mnas__batch_norm_relu(tp, x, gam, bet, 1e-5)
                             : mnas_relu(tp, mnas_batch_norm(tp, x, gam, bet, 1e-5));
            ck_assert_ptr_nonnull(y[fused]);
            /* g = wy + 2 y: not zero where the ReLU cuts */
            mnas_tensor *loss =
                mnas_add(tp, mnas_sum(tp, mnas_mul(tp, y[fused], wy)), mnas_sum(tp, mnas_square(tp, y[fused])));
            ck_assert_int_eq(mnas_grad(tp, loss, 3, in, g[fused], 0), MNAS_OK);
            ck_assert_int_eq(mnas_grad(tp, loss, 3, in, gr[fused], 1), MNAS_OK);
            mnas_tensor *const *r = gr[fused];
            mnas_tensor *s2 = mnas_add(tp, mnas_sum(tp, mnas_square(tp, r[0])), mnas_sum(tp, mnas_mul(tp, r[1], r[2])));
            ck_assert_int_eq(mnas_grad(tp, s2, 3, in, h[fused], 0), MNAS_OK);
        }
        ck_assert(same_bits(y[0], y[1]));
        ck_assert(isnan(mnas_tensor_cdata(y[1])[nan_at]));
        int64_t zeros = 0;
        for (int64_t i = 0; i < mnas_tensor_size(y[1]); i++) zeros += mnas_tensor_cdata(y[1])[i] == 0;
        ck_assert(zeros > mnas_tensor_size(y[1]) / 4); /* the ReLU does cut */
        for (int k = 0; k < 3; k++) {
            ck_assert_msg(same_bits(g[0][k], g[1][k]), "shape %d: gradient %d differs", shape, k);
            ck_assert_msg(same_bits(gr[0][k], gr[1][k]), "shape %d: recorded gradient %d differs", shape, k);
            ck_assert_msg(same_bits(h[0][k], h[1][k]), "shape %d: second-order gradient %d differs", shape, k);
        }
        mnas_tape_reset(tp);
        for (int k = 0; k < 3; k++) mnas_tensor_free(in[k]);
        mnas_tensor_free(wy);
    }
    /* Bad input: batch-norm's checks and messages, and the tape goes on. */
    int64_t s4[4] = { 2, 3, 4, 4 }, s3[3] = { 2, 3, 4 }, s1[1] = { 4 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, s4, 0, 1), *x3 = mnas_tensor_randn(ctx, 3, s3, 0, 1),
                *gam = mnas_tensor_randn(ctx, 1, s1, 0, 1);
    struct { mnas_tensor *x, *gamma; double eps; mnas_status st; const char *msg; } bad[] = {
        { x3, NULL, 1e-5, MNAS_E_SHAPE, "x must be [N, F] or [N, C, H, W]" },
        { x, gam, 1e-5, MNAS_E_SHAPE, "gamma and beta need 3 elements" },
        { x, NULL, 0, MNAS_E_INVALID, "eps 0 must be positive" },
        { NULL, NULL, 1e-5, MNAS_E_INVALID, "x is NULL" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(mnas__batch_norm_relu(tp, bad[i].x, bad[i].gamma, NULL, bad[i].eps));
        ck_assert_int_eq(mnas_tape_status(tp), bad[i].st);
        ck_assert_msg(strstr(mnas_tape_last_error(tp), bad[i].msg) != NULL, "'%s' lacks '%s'", mnas_tape_last_error(tp),
                      bad[i].msg);
        mnas_tape_clear_error(tp);
    }
    ck_assert_ptr_nonnull(mnas__batch_norm_relu(tp, x, NULL, NULL, 1e-5));
    mnas_tensor_free(x);
    mnas_tensor_free(x3);
    mnas_tensor_free(gam);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- the convolution kernels on scratch of exactly their size -----------
 * The ops take kernel scratch from the tape's arena, inside which an
 * overrun would go unseen; here each kernel (forward, input and weight
 * gradients) gets a heap block of exactly mnas__k_conv_scratch elements,
 * so the sanitizers and valgrind see every byte past it, and its results
 * are compared with plain loops. The geometries cover each kernel family
 * and the Winograd edge cases. */

#undef N /* the op table's shorthands */
#undef Z
#undef D

/* N, C, H, W, O, groups, kh, kw, stride, pad, dil (OH, OW derived) */
static const mnas_kconv kgeo[] = {
    { 1, 64, 8, 8, 64, 1, 3, 3, 1, 1, 1, 0, 0 },  /* Winograd: filter planes larger than the tile buffers */
    { 2, 8, 64, 66, 8, 1, 3, 3, 1, 1, 1, 0, 0 },  /* Winograd: chunks that split an image */
    { 3, 9, 9, 11, 12, 1, 3, 3, 1, 1, 1, 0, 0 },  /* Winograd: odd sizes, C != O */
    { 9, 16, 8, 9, 8, 1, 3, 3, 1, 1, 1, 0, 0 },   /* Winograd: several chunks of whole images */
    { 2, 32, 7, 7, 32, 1, 3, 3, 1, 1, 1, 0, 0 },  /* direct */
    { 1, 3, 9, 7, 5, 1, 3, 3, 1, 3, 1, 0, 0 },    /* im2col */
    { 2, 4, 6, 5, 4, 4, 3, 3, 1, 1, 1, 0, 0 },    /* depthwise */
    { 2, 4, 9, 8, 4, 4, 3, 3, 2, 1, 1, 0, 0 },    /* depthwise, stride 2: phase planes */
    { 1, 3, 11, 10, 3, 3, 5, 5, 2, 4, 2, 0, 0 },  /* depthwise 5 x 5, dilation 2, stride 2 */
    { 1, 2, 7, 9, 2, 2, 3, 2, 2, 0, 1, 0, 0 },    /* depthwise, stride 2, no padding, odd sizes */
};
#define NKGEO ((int)(sizeof kgeo / sizeof kgeo[0]))

static double kx(const mnas_kconv *g, const double *x, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return h < 0 || h >= g->H || w < 0 || w >= g->W ? 0 : x[((n * g->C + c) * g->H + h) * g->W + w];
}

START_TEST(kernels_on_exact_scratch)
{
    mnas_kconv g = kgeo[_i];
    g.OH = (g.H + 2 * g.pad - g.dil * (g.kh - 1) - 1) / g.stride + 1;
    g.OW = (g.W + 2 * g.pad - g.dil * (g.kw - 1) - 1) / g.stride + 1;
    const int64_t Cg = g.C / g.groups, Og = g.O / g.groups;
    const int64_t nx = g.N * g.C * g.H * g.W, nw = g.O * Cg * g.kh * g.kw, ny = g.N * g.O * g.OH * g.OW;
    int64_t ns = mnas__k_conv_scratch(&g);
    ck_assert_int_ge(ns, 0);
    double *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w), *b = malloc((size_t)g.O * sizeof *b);
    double *gy = malloc((size_t)ny * sizeof *gy), *y = malloc((size_t)ny * sizeof *y);
    double *dx = malloc((size_t)nx * sizeof *dx), *dw = malloc((size_t)nw * sizeof *dw);
    double *ry = calloc((size_t)ny, sizeof *ry), *rdx = calloc((size_t)nx, sizeof *rdx), *rdw = calloc((size_t)nw, sizeof *rdw);
    double *scratch = ns ? malloc((size_t)ns * sizeof *scratch) : NULL;
    ck_assert(x && w && b && gy && y && dx && dw && ry && rdx && rdw && (scratch || !ns));
    uint64_t st = 12345u + (uint64_t)_i;
    double *all[4] = { x, w, b, gy };
    int64_t cnt[4] = { nx, nw, g.O, ny };
    for (int a = 0; a < 4; a++)
        for (int64_t k = 0; k < cnt[a]; k++) {
            st = st * 6364136223846793005u + 1442695040888963407u;
            all[a][k] = (double)(st >> 11) / 9007199254740992.0 * 2 - 1;
        }
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t o = 0; o < g.O; o++)
            for (int64_t oh = 0; oh < g.OH; oh++)
                for (int64_t ow = 0; ow < g.OW; ow++) {
                    int64_t yi = ((n * g.O + o) * g.OH + oh) * g.OW + ow;
                    ry[yi] = b[o];
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < g.kh; i++)
                            for (int64_t j = 0; j < g.kw; j++) {
                                int64_t c = o / Og * Cg + ci, h = oh * g.stride - g.pad + i * g.dil,
                                        ww = ow * g.stride - g.pad + j * g.dil;
                                int64_t wi = ((o * Cg + ci) * g.kh + i) * g.kw + j;
                                ry[yi] += w[wi] * kx(&g, x, n, c, h, ww);
                                if (h >= 0 && h < g.H && ww >= 0 && ww < g.W) {
                                    rdx[((n * g.C + c) * g.H + h) * g.W + ww] += w[wi] * gy[yi];
                                    rdw[wi] += gy[yi] * x[((n * g.C + c) * g.H + h) * g.W + ww];
                                }
                            }
                }
    mnas__k_conv2d(&g, x, w, b, y, scratch);
    mnas__k_conv2d_dx(&g, gy, w, dx, scratch);
    mnas__k_conv2d_dw(&g, x, gy, dw, scratch);
    const double *got[3] = { y, dx, dw }, *want[3] = { ry, rdx, rdw };
    const int64_t len[3] = { ny, nx, nw };
    const char *what[3] = { "y", "dx", "dw" };
    for (int a = 0; a < 3; a++) {
        int64_t k = 0;
        while (k < len[a] && fabs(got[a][k] - want[a][k]) <= 1e-12 * (1 + fabs(want[a][k])) * 64) k++;
        ck_assert_msg(k == len[a], "geometry %d: %s[%lld] = %.17g, want %.17g", _i, what[a], (long long)k,
                      k < len[a] ? got[a][k] : 0.0, k < len[a] ? want[a][k] : 0.0);
    }
    free(x), free(w), free(b), free(gy), free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw), free(scratch);
}
END_TEST

/* The pools' kernels the same way: mnas__k_pool_scratch (average) and
 * mnas__k_max_pool_scratch (max) elements exactly (the flat windows' planes
 * for stride 1 and 2), against plain loops. */
static const mnas_kconv pgeo[] = {
    { 2, 3, 9, 11, 3, 3, 3, 3, 1, 1, 1, 0, 0 }, /* stride 1: padded planes */
    { 1, 2, 10, 7, 2, 2, 3, 3, 2, 1, 1, 0, 0 }, /* stride 2: phases */
    { 1, 2, 9, 9, 2, 2, 5, 5, 2, 2, 1, 0, 0 },  /* 5 x 5, stride 2 */
    { 1, 1, 6, 6, 1, 1, 3, 3, 3, 1, 1, 0, 0 },  /* stride 3: the row-range loops */
};
#define NPGEO ((int)(sizeof pgeo / sizeof pgeo[0]))

START_TEST(pool_kernels_on_exact_scratch)
{
    mnas_kconv g = pgeo[_i];
    g.OH = (g.H + 2 * g.pad - (g.kh - 1) - 1) / g.stride + 1;
    g.OW = (g.W + 2 * g.pad - (g.kw - 1) - 1) / g.stride + 1;
    const int64_t nx = g.N * g.C * g.H * g.W, ny = g.N * g.C * g.OH * g.OW, ns = mnas__k_pool_scratch(&g);
    double *x = malloc((size_t)nx * sizeof *x), *gy = malloc((size_t)ny * sizeof *gy);
    double *mx = malloc((size_t)ny * sizeof *mx), *av = malloc((size_t)ny * sizeof *av), *dx = malloc((size_t)nx * sizeof *dx);
    double *rdx = calloc((size_t)nx, sizeof *rdx), *scratch = malloc((size_t)ns * sizeof *scratch);
    const int64_t nm = mnas__k_max_pool_scratch(&g);
    double *mscratch = nm ? malloc((size_t)nm * sizeof *mscratch) : NULL;
    int64_t *idx = malloc((size_t)ny * sizeof *idx);
    ck_assert(x && gy && mx && av && dx && rdx && scratch && idx && (mscratch || !nm));
    uint64_t st = 777u + (uint64_t)_i;
    for (int64_t k = 0; k < nx + ny; k++) {
        st = st * 6364136223846793005u + 1442695040888963407u;
        double v = (double)(st >> 11) / 9007199254740992.0 * 2 - 1;
        if (k < nx) x[k] = v;
        else gy[k - nx] = v;
    }
    mnas__k_max_pool(&g, x, mx, idx, mscratch);
    mnas__k_avg_pool(&g, x, av, scratch);
    mnas__k_avg_pool_adj(&g, gy, dx, scratch);
    for (int64_t nc = 0; nc < g.N * g.C; nc++)
        for (int64_t oh = 0; oh < g.OH; oh++)
            for (int64_t ow = 0; ow < g.OW; ow++) {
                int64_t o = (nc * g.OH + oh) * g.OW + ow, arg = -1, cnt = 0;
                double sum = 0;
                for (int64_t i = 0; i < g.kh; i++)
                    for (int64_t j = 0; j < g.kw; j++) {
                        int64_t h = oh * g.stride - g.pad + i, w = ow * g.stride - g.pad + j;
                        if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
                        int64_t k = (nc * g.H + h) * g.W + w;
                        if (arg < 0 || x[k] > x[arg]) arg = k;
                        sum += x[k];
                        cnt++;
                    }
                ck_assert_msg(idx[o] == arg && mx[o] == x[arg], "geometry %d: max %lld", _i, (long long)o);
                ck_assert_msg(fabs(av[o] - sum / (double)cnt) <= 1e-15, "geometry %d: avg %lld", _i, (long long)o);
                for (int64_t i = 0; i < g.kh; i++)
                    for (int64_t j = 0; j < g.kw; j++) {
                        int64_t h = oh * g.stride - g.pad + i, w = ow * g.stride - g.pad + j;
                        if (h >= 0 && h < g.H && w >= 0 && w < g.W) rdx[(nc * g.H + h) * g.W + w] += gy[o] / (double)cnt;
                    }
            }
    for (int64_t k = 0; k < nx; k++) ck_assert_msg(fabs(dx[k] - rdx[k]) <= 1e-15, "geometry %d: dx[%lld]", _i, (long long)k);
    free(x), free(gy), free(mx), free(av), free(dx), free(rdx), free(scratch), free(mscratch), free(idx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv_f64");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 600);
    tcase_add_loop_test(ops, op_orders_1_to_3, 0, 6 * NCASES);
    suite_add_tcase(s, ops);
    TCase *graphs = tcase_create("graphs");
    tcase_set_timeout(graphs, 600);
    tcase_add_loop_test(graphs, random_graphs_orders_1_to_3, 0, 6 * CGRAPHS);
    tcase_add_test(graphs, random_graphs_cover_every_op);
    suite_add_tcase(s, graphs);
    TCase *maml = tcase_create("maml");
    tcase_set_timeout(maml, 600);
    tcase_add_test(maml, maml_conv_net_meta_gradient);
    tcase_add_test(maml, batch_norm_relu_matches_separate_ops);
    suite_add_tcase(s, maml);
    TCase *kernels = tcase_create("kernels");
    tcase_add_loop_test(kernels, kernels_on_exact_scratch, 0, NKGEO);
    tcase_add_loop_test(kernels, pool_kernels_on_exact_scratch, 0, NPGEO);
    suite_add_tcase(s, kernels);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
