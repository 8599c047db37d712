/* Finite-difference checks, in double precision, of every differentiable op:
 * first order (the gradient), second order (the gradient of v·grad, i.e.
 * Hessian-vector products through the recorded backward pass) and third
 * order (the gradient of w·grad(v·grad)), each with the last, checked pass
 * recorded and not recorded — the two run different backward rules (the
 * recorded form of a fused op's backward, or its fused kernel). Ops are
 * checked alone and inside seeded random compositions. Linked with the
 * double build of the library (mnas_f64).
 *
 * Each op's output y is reduced to a scalar by f = Σ w1⊙y + Σ w2⊙y², with
 * fixed random weights, so that no gradient is trivially constant (a plain
 * sum of a softmax is 1) and the second derivative of even a linear op is
 * not zero. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <mnas/mnas.h>

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

enum { INIT_NORMAL, INIT_POSITIVE, INIT_AWAY_FROM_ZERO };

typedef mnas_tensor *(*op_fn)(mnas_tape *tp, mnas_tensor *const *in);

typedef struct {
    const char *name;
    int nin;
    int ndim[3];
    int64_t shape[3][4];
    int init[3];
    op_fn op;
} op_case;

/* ---- the ops under test ---------------------------------------------- */

static mnas_tensor *f_add(mnas_tape *t, mnas_tensor *const *in) { return mnas_add(t, in[0], in[1]); }
static mnas_tensor *f_sub(mnas_tape *t, mnas_tensor *const *in) { return mnas_sub(t, in[0], in[1]); }
static mnas_tensor *f_mul(mnas_tape *t, mnas_tensor *const *in) { return mnas_mul(t, in[0], in[1]); }
static mnas_tensor *f_div(mnas_tape *t, mnas_tensor *const *in) { return mnas_div(t, in[0], in[1]); }
static mnas_tensor *f_mask_mul(mnas_tape *t, mnas_tensor *const *in)
{
    /* The mask is a constant made on the tape (dropout-like 0/2 pattern). */
    int64_t s[2] = { 3, 4 };
    mnas_real m[12];
    for (int i = 0; i < 12; i++) m[i] = (i % 3 == 0) ? 0.0 : 2.0;
    return mnas_mask_mul(t, in[0], mnas_tape_tensor(t, 2, s, m));
}
static mnas_tensor *f_axpy(mnas_tape *t, mnas_tensor *const *in) { return mnas_axpy(t, -0.7, in[0], in[1]); }
static mnas_tensor *f_mix(mnas_tape *t, mnas_tensor *const *in)
{
    const int64_t idx[3] = { 4, 0, 4 }; /* a weight used twice */
    mnas_tensor *ys[3] = { in[1], in[2], mnas_tanh(t, in[1]) };
    return mnas_mix(t, in[0], 3, ys, idx);
}
static mnas_tensor *f_neg(mnas_tape *t, mnas_tensor *const *in) { return mnas_neg(t, in[0]); }
static mnas_tensor *f_scale(mnas_tape *t, mnas_tensor *const *in) { return mnas_scale(t, in[0], -2.5); }
static mnas_tensor *f_add_scalar(mnas_tape *t, mnas_tensor *const *in) { return mnas_add_scalar(t, in[0], 0.7); }
static mnas_tensor *f_relu(mnas_tape *t, mnas_tensor *const *in) { return mnas_relu(t, in[0]); }
static mnas_tensor *f_sigmoid(mnas_tape *t, mnas_tensor *const *in) { return mnas_sigmoid(t, in[0]); }
static mnas_tensor *f_tanh(mnas_tape *t, mnas_tensor *const *in) { return mnas_tanh(t, in[0]); }
static mnas_tensor *f_exp(mnas_tape *t, mnas_tensor *const *in) { return mnas_exp(t, in[0]); }
static mnas_tensor *f_log(mnas_tape *t, mnas_tensor *const *in) { return mnas_log(t, in[0]); }
static mnas_tensor *f_sqrt(mnas_tape *t, mnas_tensor *const *in) { return mnas_sqrt(t, in[0]); }
static mnas_tensor *f_pow17(mnas_tape *t, mnas_tensor *const *in) { return mnas_pow(t, in[0], 1.7); }
static mnas_tensor *f_pow_m05(mnas_tape *t, mnas_tensor *const *in) { return mnas_pow(t, in[0], -0.5); }
static mnas_tensor *f_pow3(mnas_tape *t, mnas_tensor *const *in) { return mnas_pow(t, in[0], 3.0); }
static mnas_tensor *f_square(mnas_tape *t, mnas_tensor *const *in) { return mnas_square(t, in[0]); }
static mnas_tensor *f_mm00(mnas_tape *t, mnas_tensor *const *in) { return mnas_matmul(t, in[0], in[1], 0, 0); }
static mnas_tensor *f_mm10(mnas_tape *t, mnas_tensor *const *in) { return mnas_matmul(t, in[0], in[1], 1, 0); }
static mnas_tensor *f_mm01(mnas_tape *t, mnas_tensor *const *in) { return mnas_matmul(t, in[0], in[1], 0, 1); }
static mnas_tensor *f_mm11(mnas_tape *t, mnas_tensor *const *in) { return mnas_matmul(t, in[0], in[1], 1, 1); }
static mnas_tensor *f_linear(mnas_tape *t, mnas_tensor *const *in) { return mnas_linear(t, in[0], in[1], in[2]); }
static mnas_tensor *f_linear_nob(mnas_tape *t, mnas_tensor *const *in) { return mnas_linear(t, in[0], in[1], NULL); }
static mnas_tensor *f_transpose(mnas_tape *t, mnas_tensor *const *in) { return mnas_transpose(t, in[0]); }
static mnas_tensor *f_sum(mnas_tape *t, mnas_tensor *const *in) { return mnas_sum(t, in[0]); }
static mnas_tensor *f_mean(mnas_tape *t, mnas_tensor *const *in) { return mnas_mean(t, in[0]); }
static mnas_tensor *f_sum_axis0(mnas_tape *t, mnas_tensor *const *in) { return mnas_sum_axis(t, in[0], 0, 0); }
static mnas_tensor *f_sum_axis1k(mnas_tape *t, mnas_tensor *const *in) { return mnas_sum_axis(t, in[0], 1, 1); }
static mnas_tensor *f_mean_axis_last(mnas_tape *t, mnas_tensor *const *in) { return mnas_mean_axis(t, in[0], -1, 0); }
static mnas_tensor *f_sum_to(mnas_tape *t, mnas_tensor *const *in)
{
    int64_t s[3] = { 1, 3, 1 };
    return mnas_sum_to(t, in[0], 3, s);
}
static mnas_tensor *f_broadcast_to(mnas_tape *t, mnas_tensor *const *in)
{
    int64_t s[3] = { 2, 3, 4 };
    return mnas_broadcast_to(t, in[0], 3, s);
}
static mnas_tensor *f_reshape(mnas_tape *t, mnas_tensor *const *in)
{
    int64_t s[3] = { 2, 2, 3 };
    return mnas_reshape(t, in[0], 3, s);
}
static mnas_tensor *f_concat(mnas_tape *t, mnas_tensor *const *in) { return mnas_concat(t, 3, in, 1); }
static mnas_tensor *f_concat0(mnas_tape *t, mnas_tensor *const *in) { return mnas_concat(t, 2, in, 0); }
static mnas_tensor *f_slice(mnas_tape *t, mnas_tensor *const *in) { return mnas_slice(t, in[0], 1, 1, 2); }
static mnas_tensor *f_pad_axis(mnas_tape *t, mnas_tensor *const *in) { return mnas_pad_axis(t, in[0], 0, 2, 6); }
static mnas_tensor *f_gather(mnas_tape *t, mnas_tensor *const *in)
{
    const int64_t idx[5] = { 2, 0, 2, 3, 1 };
    return mnas_gather_rows(t, in[0], 5, idx);
}
static mnas_tensor *f_scatter(mnas_tape *t, mnas_tensor *const *in)
{
    const int64_t idx[3] = { 1, 3, 1 };
    return mnas_scatter_add_rows(t, in[0], 3, idx, 4);
}
static mnas_tensor *f_softmax(mnas_tape *t, mnas_tensor *const *in) { return mnas_softmax(t, in[0]); }
static mnas_tensor *f_log_softmax(mnas_tape *t, mnas_tensor *const *in) { return mnas_log_softmax(t, in[0]); }
static mnas_tensor *f_cross_entropy(mnas_tape *t, mnas_tensor *const *in)
{
    const int32_t labels[4] = { 2, 0, 4, 2 };
    return mnas_cross_entropy(t, in[0], 4, labels);
}
static mnas_tensor *f_mse(mnas_tape *t, mnas_tensor *const *in) { return mnas_mse(t, in[0], in[1]); }
static mnas_tensor *f_bn2d(mnas_tape *t, mnas_tensor *const *in) { return mnas_batch_norm(t, in[0], in[1], in[2], 1e-5); }
static mnas_tensor *f_bn2d_plain(mnas_tape *t, mnas_tensor *const *in) { return mnas_batch_norm(t, in[0], NULL, NULL, 1e-3); }
static mnas_tensor *f_bn4d(mnas_tape *t, mnas_tensor *const *in) { return mnas_batch_norm(t, in[0], in[1], in[2], 1e-5); }

#define S2(a, b) { a, b, 1, 1 }
#define S3(a, b, c) { a, b, c, 1 }
#define S4(a, b, c, d) { a, b, c, d }
#define S1(a) { a, 1, 1, 1 }
#define S0 { 1, 1, 1, 1 }
#define N INIT_NORMAL
#define P INIT_POSITIVE
#define Z INIT_AWAY_FROM_ZERO

static const op_case cases[] = {
    { "add", 2, { 2, 2 }, { S2(3, 4), S2(3, 4) }, { N, N }, f_add },
    { "add row broadcast", 2, { 2, 1 }, { S2(3, 4), S1(4) }, { N, N }, f_add },
    { "add scalar broadcast", 2, { 2, 0 }, { S2(3, 4), S0 }, { N, N }, f_add },
    { "add both broadcast", 2, { 2, 2 }, { S2(3, 1), S2(1, 4) }, { N, N }, f_add },
    { "sub", 2, { 2, 2 }, { S2(3, 4), S2(3, 4) }, { N, N }, f_sub },
    { "sub row broadcast", 2, { 2, 2 }, { S2(3, 4), S2(1, 4) }, { N, N }, f_sub },
    { "mul", 2, { 2, 2 }, { S2(3, 4), S2(3, 4) }, { N, N }, f_mul },
    { "mul row broadcast", 2, { 2, 1 }, { S2(3, 4), S1(4) }, { N, N }, f_mul },
    { "mul scalar broadcast", 2, { 0, 2 }, { S0, S2(3, 4) }, { N, N }, f_mul },
    { "mul 4-D channel broadcast", 2, { 4, 4 }, { S4(2, 3, 2, 2), S4(1, 3, 1, 1) }, { N, N }, f_mul },
    { "div", 2, { 2, 2 }, { S2(3, 4), S2(3, 4) }, { N, P }, f_div },
    { "div row broadcast", 2, { 2, 1 }, { S2(3, 4), S1(4) }, { N, P }, f_div },
    { "div scalar broadcast", 2, { 2, 0 }, { S2(3, 4), S0 }, { N, P }, f_div },
    { "mask_mul", 1, { 2 }, { S2(3, 4) }, { N }, f_mask_mul },
    { "axpy", 2, { 2, 2 }, { S2(3, 4), S2(3, 4) }, { N, N }, f_axpy },
    { "mix", 3, { 2, 2, 2 }, { S2(2, 3), S2(3, 4), S2(3, 4) }, { N, N, N }, f_mix },
    { "neg", 1, { 2 }, { S2(3, 4) }, { N }, f_neg },
    { "scale", 1, { 2 }, { S2(3, 4) }, { N }, f_scale },
    { "add_scalar", 1, { 2 }, { S2(3, 4) }, { N }, f_add_scalar },
    { "relu", 1, { 2 }, { S2(3, 4) }, { Z }, f_relu },
    { "sigmoid", 1, { 2 }, { S2(3, 4) }, { N }, f_sigmoid },
    { "tanh", 1, { 2 }, { S2(3, 4) }, { N }, f_tanh },
    { "exp", 1, { 2 }, { S2(3, 4) }, { N }, f_exp },
    { "log", 1, { 2 }, { S2(3, 4) }, { P }, f_log },
    { "sqrt", 1, { 2 }, { S2(3, 4) }, { P }, f_sqrt },
    { "pow 1.7", 1, { 2 }, { S2(3, 4) }, { P }, f_pow17 },
    { "pow -0.5", 1, { 2 }, { S2(3, 4) }, { P }, f_pow_m05 },
    { "pow 3", 1, { 2 }, { S2(3, 4) }, { N }, f_pow3 },
    { "square", 1, { 2 }, { S2(3, 4) }, { N }, f_square },
    { "matmul", 2, { 2, 2 }, { S2(3, 4), S2(4, 5) }, { N, N }, f_mm00 },
    { "matmul a^T", 2, { 2, 2 }, { S2(4, 3), S2(4, 5) }, { N, N }, f_mm10 },
    { "matmul b^T", 2, { 2, 2 }, { S2(3, 4), S2(5, 4) }, { N, N }, f_mm01 },
    { "matmul a^T b^T", 2, { 2, 2 }, { S2(4, 3), S2(5, 4) }, { N, N }, f_mm11 },
    { "linear", 3, { 2, 2, 1 }, { S2(5, 4), S2(3, 4), S1(3) }, { N, N, N }, f_linear },
    { "linear without bias", 2, { 2, 2 }, { S2(5, 4), S2(3, 4) }, { N, N }, f_linear_nob },
    { "transpose", 1, { 2 }, { S2(3, 4) }, { N }, f_transpose },
    { "transpose 3-D", 1, { 3 }, { S3(2, 3, 4) }, { N }, f_transpose },
    { "sum", 1, { 2 }, { S2(3, 4) }, { N }, f_sum },
    { "mean", 1, { 3 }, { S3(2, 3, 4) }, { N }, f_mean },
    { "sum_axis 0", 1, { 2 }, { S2(3, 4) }, { N }, f_sum_axis0 },
    { "sum_axis 1 keepdim", 1, { 3 }, { S3(2, 3, 4) }, { N }, f_sum_axis1k },
    { "mean_axis last", 1, { 3 }, { S3(2, 3, 4) }, { N }, f_mean_axis_last },
    { "sum_to", 1, { 3 }, { S3(2, 3, 4) }, { N }, f_sum_to },
    { "broadcast_to", 1, { 2 }, { S2(3, 1) }, { N }, f_broadcast_to },
    { "reshape", 1, { 2 }, { S2(3, 4) }, { N }, f_reshape },
    { "concat axis 1", 3, { 2, 2, 2 }, { S2(3, 2), S2(3, 1), S2(3, 3) }, { N, N, N }, f_concat },
    { "concat axis 0", 2, { 3, 3 }, { S3(1, 2, 3), S3(2, 2, 3) }, { N, N }, f_concat0 },
    { "slice", 1, { 3 }, { S3(2, 4, 3) }, { N }, f_slice },
    { "pad_axis", 1, { 2 }, { S2(3, 2) }, { N }, f_pad_axis },
    { "gather_rows", 1, { 2 }, { S2(4, 3) }, { N }, f_gather },
    { "scatter_add_rows", 1, { 2 }, { S2(3, 2) }, { N }, f_scatter },
    { "softmax", 1, { 2 }, { S2(3, 5) }, { N }, f_softmax },
    { "log_softmax", 1, { 2 }, { S2(3, 5) }, { N }, f_log_softmax },
    { "cross_entropy", 1, { 2 }, { S2(4, 5) }, { N }, f_cross_entropy },
    { "mse", 2, { 2, 2 }, { S2(4, 3), S2(4, 3) }, { N, N }, f_mse },
    { "batch_norm 2-D", 3, { 2, 1, 1 }, { S2(5, 3), S1(3), S1(3) }, { N, N, N }, f_bn2d },
    { "batch_norm 2-D no affine", 1, { 2 }, { S2(4, 3) }, { N }, f_bn2d_plain },
    { "batch_norm NCHW", 3, { 4, 1, 1 }, { S4(2, 3, 2, 2), S1(3), S1(3) }, { N, N, N }, f_bn4d },
    { "batch_norm NCHW, 3x5 planes", 3, { 4, 1, 1 }, { S4(2, 2, 3, 5), S1(2), S1(2) }, { N, N, N }, f_bn4d },
    { "batch_norm NCHW, 5x7 planes", 3, { 4, 1, 1 }, { S4(2, 2, 5, 7), S1(2), S1(2) }, { N, N, N }, f_bn4d },
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- harness ---------------------------------------------------------- */

typedef struct {
    const op_case *c;
    mnas_tensor *w1, *w2; /* reduction weights, made to fit the op's output */
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

static void run_case(int i, int order, int record_last)
{
    /* Valgrind checks memory, not numbers: orders 1 and 2 exercise every
     * rule's allocations; order 3 runs natively only. */
    if (order == 3 && (getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED")))
        return; /* valgrind and the sanitizers: order 3 is the plain run's */
    const op_case *c = &cases[i];
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_ctx_seed(ctx, 1000u + (uint64_t)i);
    mnas_tensor *in[3] = { NULL, NULL, NULL };
    for (int k = 0; k < c->nin; k++) {
        in[k] = mnas_tensor_randn(ctx, c->ndim[k], c->shape[k], 0.0, 1.0);
        ck_assert_ptr_nonnull(in[k]);
        mnas_real *d = mnas_tensor_data(in[k]);
        for (int64_t j = 0; j < mnas_tensor_size(in[k]); j++) {
            if (c->init[k] == INIT_POSITIVE) d[j] = 0.5 + fabs(d[j]);
            if (c->init[k] == INIT_AWAY_FROM_ZERO) d[j] = (d[j] < 0 ? -0.2 : 0.2) + d[j];
        }
        ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    }
    /* Run the op once to learn its output shape, then make the weights. */
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

/* The checker itself must catch a wrong derivative of every order: the
 * tape sees x² ⊙ detach(x) as c·x² with c constant, while the function is x³
 * (derivatives 2cx vs 3x², 2c vs 6x, 0 vs 6). */
static mnas_tensor *wrong_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    (void)user;
    return mnas_sum(tp, mnas_mul(tp, mnas_square(tp, in[0]), mnas_detach(tp, in[0])));
}

START_TEST(checker_detects_wrong_gradient)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    int64_t s[1] = { 4 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 1, s, 1.0, 1.0);
    mnas_tensor_set_requires_grad(x, 1);
    double worst;
    for (int mode = 0; mode < 6; mode++) {
        mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
        o.order = 1 + mode / 2;
        o.record_last = mode % 2;
        ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_NUMERIC);
        ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "analytic"));
    }
    /* Bad options are refused with a message, not run. */
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = 4;
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "order 4"));
    o.order = 1;
    o.record_last = 2;
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "record_last"));
    o.record_last = 0;
    o.order = 1;
    o.eps = -1;
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_INVALID);
    mnas_tensor_set_requires_grad(x, 0);
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, NULL, &worst), MNAS_E_INVALID);
    mnas_tensor_free(x);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- random compositions ----------------------------------------------
 * Seeded random graphs of 3-8 ops over [4, 3] tensors: each op reads one or
 * two earlier values (or parameters), so gradients reach an op through
 * several paths and its incoming gradient depends on its own inputs — the
 * situation a single op reduced by Σ w ⊙ y² only partly exercises. Inputs:
 * a, b [4, 3]; W [3, 3]; gamma, beta [3]; alpha [2, 2] for mix. */

enum { G_NEG, G_SCALE, G_ADD_SCALAR, G_RELU, G_SIGMOID, G_TANH, G_EXP_TANH, G_LOG, G_SQRT, G_POW, G_SQUARE,
       G_SOFTMAX, G_LOG_SOFTMAX, G_BN, G_BN_AFFINE, G_MATMUL, G_LINEAR, G_TRANSPOSE2, G_ADD, G_SUB, G_MUL, G_DIV,
       G_MIX, G_CONCAT_SLICE, G_GATHER, G_PAD_SLICE, G_SUM_TO, G_AXPY, G_NOPS };
enum { GRAPH_MAX = 8, GRAPHS = 100 };

typedef struct {
    int nops;
    int op[GRAPH_MAX], a[GRAPH_MAX], b[GRAPH_MAX]; /* operands: indices into the value list */
} graph;

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static graph make_graph(int g)
{
    uint64_t st = 0x5eedull + (uint64_t)g * 7919u;
    graph gr;
    gr.nops = 3 + (int)(lcg(&st) % 6);
    for (int k = 0; k < gr.nops; k++) {
        int nvals = 2 + k; /* a, b, then one value per op */
        gr.op[k] = (int)(lcg(&st) % G_NOPS);
        /* Lean on recent values so the graph is deep, not a fan. */
        gr.a[k] = nvals - 1 - (int)(lcg(&st) % (unsigned)(nvals < 3 ? nvals : 3));
        gr.b[k] = (int)(lcg(&st) % (unsigned)nvals);
    }
    return gr;
}

static mnas_tensor *positive(mnas_tape *t, mnas_tensor *x) { return mnas_add_scalar(t, mnas_square(t, x), 0.5); }

static mnas_tensor *graph_op(mnas_tape *t, int op, mnas_tensor *x, mnas_tensor *y, mnas_tensor *const *in)
{
    mnas_tensor *W = in[2], *gamma = in[3], *beta = in[4], *alpha = in[5];
    switch (op) {
    case G_NEG: return mnas_neg(t, x);
    case G_SCALE: return mnas_scale(t, x, -1.3);
    case G_ADD_SCALAR: return mnas_add_scalar(t, x, 0.4);
    case G_RELU: return mnas_relu(t, mnas_add_scalar(t, x, 0.05));
    case G_SIGMOID: return mnas_sigmoid(t, x);
    case G_TANH: return mnas_tanh(t, x);
    case G_EXP_TANH: return mnas_exp(t, mnas_tanh(t, x));
    case G_LOG: return mnas_log(t, positive(t, x));
    case G_SQRT: return mnas_sqrt(t, positive(t, x));
    case G_POW: return mnas_pow(t, positive(t, x), 1.7);
    case G_SQUARE: return mnas_square(t, x);
    case G_SOFTMAX: return mnas_softmax(t, x);
    case G_LOG_SOFTMAX: return mnas_log_softmax(t, x);
    case G_BN: return mnas_batch_norm(t, x, NULL, NULL, 1e-3);
    case G_BN_AFFINE: return mnas_batch_norm(t, x, gamma, beta, 1e-3);
    case G_MATMUL: return mnas_matmul(t, x, W, 0, 1);
    case G_LINEAR: return mnas_linear(t, x, W, beta);
    case G_TRANSPOSE2: return mnas_transpose(t, mnas_matmul(t, W, x, 0, 1));
    case G_ADD: return mnas_add(t, x, y);
    case G_SUB: return mnas_sub(t, x, y);
    case G_MUL: return mnas_mul(t, x, y);
    case G_DIV: return mnas_div(t, x, positive(t, y));
    case G_MIX: {
        const int64_t idx[2] = { 1, 2 };
        mnas_tensor *ys[2] = { x, y };
        return mnas_mix(t, alpha, 2, ys, idx);
    }
    case G_CONCAT_SLICE: {
        mnas_tensor *xy[2] = { x, y };
        return mnas_slice(t, mnas_concat(t, 2, xy, 1), 1, 2, 3);
    }
    case G_GATHER: {
        const int64_t idx[4] = { 3, 0, 0, 2 };
        return mnas_add(t, mnas_gather_rows(t, x, 4, idx), y);
    }
    case G_PAD_SLICE: return mnas_slice(t, mnas_pad_axis(t, mnas_mul(t, x, y), 0, 1, 6), 0, 0, 4);
    case G_SUM_TO: {
        int64_t row[2] = { 1, 3 };
        return mnas_mul(t, x, mnas_sum_to(t, y, 2, row));
    }
    case G_AXPY: return mnas_axpy(t, 0.6, x, y);
    }
    return NULL;
}

typedef struct {
    graph g;
    mnas_tensor *w1, *w2;
} graph_harness;

static mnas_tensor *graph_fn(mnas_tape *t, mnas_tensor *const *in, void *user)
{
    graph_harness *h = user;
    mnas_tensor *val[2 + GRAPH_MAX] = { in[0], in[1] };
    for (int k = 0; k < h->g.nops; k++) val[2 + k] = graph_op(t, h->g.op[k], val[h->g.a[k]], val[h->g.b[k]], in);
    mnas_tensor *y = val[1 + h->g.nops];
    return mnas_add(t, mnas_sum(t, mnas_mul(t, y, h->w1)), mnas_sum(t, mnas_mul(t, mnas_square(t, y), h->w2)));
}

static void run_graph(int i, int order, int record_last)
{
    /* Valgrind checks memory, not numbers: orders 1 and 2 exercise every
     * rule's allocations; order 3 runs natively only. */
    if (order == 3 && (getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED")))
        return; /* valgrind and the sanitizers: order 3 is the plain run's */
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_ctx_seed(ctx, 9000u + (uint64_t)i);
    int64_t s43[2] = { 4, 3 }, s33[2] = { 3, 3 }, s3[1] = { 3 }, s22[2] = { 2, 2 };
    mnas_tensor *in[6] = { mnas_tensor_randn(ctx, 2, s43, 0, 1), mnas_tensor_randn(ctx, 2, s43, 0, 1),
                           mnas_tensor_randn(ctx, 2, s33, 0, 0.6), mnas_tensor_randn(ctx, 1, s3, 1, 0.3),
                           mnas_tensor_randn(ctx, 1, s3, 0, 0.3), mnas_tensor_randn(ctx, 2, s22, 0, 1) };
    for (int k = 0; k < 6; k++) {
        ck_assert_ptr_nonnull(in[k]);
        ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    }
    graph_harness h = { make_graph(i), mnas_tensor_randn(ctx, 2, s43, 0, 1), mnas_tensor_randn(ctx, 2, s43, 0, 0.5) };
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = order;
    o.record_last = record_last;
    double worst = -1;
    mnas_status st = mnas_gradcheck(ctx, graph_fn, &h, 6, in, &o, &worst);
    char ops[128] = "";
    for (int k = 0; k < h.g.nops; k++) {
        size_t len = strlen(ops);
        snprintf(ops + len, sizeof ops - len, "%s%d", k ? "," : "", h.g.op[k]);
    }
    ck_assert_msg(st == MNAS_OK, "graph %d (ops %s), order %d%s: %s", i, ops, order,
                  record_last ? ", last pass recorded" : "", mnas_ctx_last_error(ctx));
    ck_assert(worst >= 0.0 && worst <= 1.0);
    mnas_tensor_free(h.w1);
    mnas_tensor_free(h.w2);
    for (int k = 0; k < 6; k++) mnas_tensor_free(in[k]);
    mnas_ctx_free(ctx);
}

START_TEST(random_graphs_orders_1_to_3) { run_graph(_i / 6, 1 + (_i % 6) / 2, _i % 2); }
END_TEST

/* The generator must reach every op, or some op is never composed. */
START_TEST(random_graphs_cover_every_op)
{
    int seen[G_NOPS] = { 0 };
    for (int g = 0; g < GRAPHS; g++) {
        graph gr = make_graph(g);
        ck_assert(gr.nops >= 3 && gr.nops <= GRAPH_MAX);
        for (int k = 0; k < gr.nops; k++) seen[gr.op[k]]++;
    }
    for (int op = 0; op < G_NOPS; op++) ck_assert_msg(seen[op] > 0, "op %d never drawn", op);
}
END_TEST

/* ---- the case that exposed the recorded batch-norm rule -------------------
 * f = Σ c ⊙ bn(x)², x = [0.5, -1, 2]ᵀ (one feature, batch statistics),
 * c = [1, 2, 3]ᵀ, v = e0: the gradient of <df/dx, v> with respect to x. The
 * incoming gradient of batch-norm (2 c ⊙ bn(x)) depends on x, which the
 * recorded rule once followed twice. Reference values from the closed form
 * (and PyTorch in float64). */
START_TEST(batch_norm_hvp_with_x_dependent_cotangent)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    int64_t s[2] = { 3, 1 };
    const mnas_real xv[3] = { 0.5, -1, 2 }, cv[3] = { 1, 2, 3 }, ev[3] = { 1, 0, 0 };
    const double want[3] = { -0.888868, 0.222216, 0.666652 };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 2, s, xv);
    mnas_tensor *c = mnas_tensor_from_data(ctx, 2, s, cv);
    mnas_tensor *v = mnas_tensor_from_data(ctx, 2, s, ev);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(x, 1), MNAS_OK);
    for (int rec = 0; rec <= 1; rec++) {
        mnas_tape *tp;
        ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
        mnas_tensor *y = mnas_batch_norm(tp, x, NULL, NULL, 1e-5);
        mnas_tensor *f = mnas_sum(tp, mnas_mul(tp, c, mnas_square(tp, y)));
        mnas_tensor *g, *h;
        ck_assert_int_eq(mnas_grad(tp, f, 1, &x, &g, 1), MNAS_OK);
        ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_mul(tp, g, v)), 1, &x, &h, rec), MNAS_OK);
        for (int i = 0; i < 3; i++)
            ck_assert_msg(fabs(mnas_tensor_data(h)[i] - want[i]) < 2e-6, "last pass %s: element %d is %.9g, want %.6f",
                          rec ? "recorded" : "not recorded", i, mnas_tensor_data(h)[i], want[i]);
        mnas_tape_free(tp);
    }
    mnas_tensor_free(x);
    mnas_tensor_free(c);
    mnas_tensor_free(v);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- MAML through two SGD steps ---------------------------------------
 * A 2-layer MLP with batch-norm, Linear(3->8)-ReLU-BN-Linear(8->1). The
 * meta-objective is the query MSE after two second-order SGD steps on the
 * support MSE (Eq. (2)-(3) of the paper with 2 steps). Its gradient with
 * respect to the meta-weights involves the Hessian of the support loss, so
 * mnas_grad(create_graph=1) must be right for every op of the network.
 *
 * Tolerance: the defaults of the double build (eps 1e-6, |diff| <= 1e-6 +
 * 1e-5 |numeric|). The central difference's truncation error is about
 * eps^2 |f'''| ~ 1e-12 and its rounding error about 1e-16 |f| / eps ~ 1e-10,
 * far below the tolerance; a pre-activation would have to lie within 1e-6 of
 * a ReLU kink to break the check, which the fixed seed avoids. */

typedef struct {
    mnas_tensor *xs, *ys, *xq, *yq; /* support and query sets */
    double lr;
    int steps;
} maml_data;

enum { P_W1, P_B1, P_G1, P_BETA1, P_W2, P_B2, NP };

static mnas_tensor *mlp(mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, x, w[P_W1], w[P_B1]));
    h = mnas_batch_norm(tp, h, w[P_G1], w[P_BETA1], 1e-5);
    return mnas_linear(tp, h, w[P_W2], w[P_B2]);
}

static mnas_tensor *maml_objective(mnas_tape *tp, mnas_tensor *const *params, void *user)
{
    maml_data *d = user;
    mnas_tensor *fast[NP];
    for (int k = 0; k < NP; k++) fast[k] = params[k];
    for (int s = 0; s < d->steps; s++) {
        mnas_tensor *loss = mnas_mse(tp, mlp(tp, d->xs, fast), d->ys);
        if (!loss) return NULL;
        mnas_tensor *g[NP];
        if (mnas_grad(tp, loss, NP, fast, g, 1) != MNAS_OK) return NULL;
        for (int k = 0; k < NP; k++) fast[k] = mnas_sub(tp, fast[k], mnas_scale(tp, g[k], d->lr));
    }
    return mnas_mse(tp, mlp(tp, d->xq, fast), d->yq);
}

static void maml_setup(mnas_ctx *ctx, maml_data *d, mnas_tensor **p)
{
    int64_t sx[2] = { 6, 3 }, sy[2] = { 6, 1 };
    d->xs = mnas_tensor_randn(ctx, 2, sx, 0, 1);
    d->ys = mnas_tensor_randn(ctx, 2, sy, 0, 1);
    d->xq = mnas_tensor_randn(ctx, 2, sx, 0, 1);
    d->yq = mnas_tensor_randn(ctx, 2, sy, 0, 1);
    d->lr = 0.1;
    d->steps = 2;
    int64_t s_w1[2] = { 8, 3 }, s_8[1] = { 8 }, s_w2[2] = { 1, 8 }, s_1[1] = { 1 };
    p[P_W1] = mnas_tensor_randn(ctx, 2, s_w1, 0, 0.6);
    p[P_B1] = mnas_tensor_randn(ctx, 1, s_8, 0, 0.3);
    p[P_G1] = mnas_tensor_randn(ctx, 1, s_8, 1, 0.2);
    p[P_BETA1] = mnas_tensor_randn(ctx, 1, s_8, 0, 0.2);
    p[P_W2] = mnas_tensor_randn(ctx, 2, s_w2, 0, 0.4);
    p[P_B2] = mnas_tensor_randn(ctx, 1, s_1, 0, 0.3);
    for (int k = 0; k < NP; k++) {
        ck_assert_ptr_nonnull(p[k]);
        mnas_tensor_set_requires_grad(p[k], 1);
    }
}

static void maml_teardown(mnas_ctx *ctx, maml_data *d, mnas_tensor **p)
{
    for (int k = 0; k < NP; k++) mnas_tensor_free(p[k]);
    mnas_tensor_free(d->xs);
    mnas_tensor_free(d->ys);
    mnas_tensor_free(d->xq);
    mnas_tensor_free(d->yq);
    mnas_ctx_free(ctx);
}

START_TEST(maml_two_steps_second_order_meta_gradient)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 7;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    maml_data d;
    mnas_tensor *p[NP];
    maml_setup(ctx, &d, p);

    /* The steps must actually change the loss, or the test proves little. */
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    double before = mnas_tensor_item(mnas_mse(tp, mlp(tp, d.xs, p), d.ys));
    d.steps = 2;
    mnas_tensor *fast[NP];
    for (int k = 0; k < NP; k++) fast[k] = p[k];
    for (int s = 0; s < 2; s++) {
        mnas_tensor *g[NP];
        ck_assert_int_eq(mnas_grad(tp, mnas_mse(tp, mlp(tp, d.xs, fast), d.ys), NP, fast, g, 1), MNAS_OK);
        for (int k = 0; k < NP; k++) fast[k] = mnas_sub(tp, fast[k], mnas_scale(tp, g[k], d.lr));
    }
    double after = mnas_tensor_item(mnas_mse(tp, mlp(tp, d.xs, fast), d.ys));
    ck_assert_msg(after < before * 0.95, "support loss %g -> %g: the inner steps do not adapt", before, after);
    mnas_tape_free(tp);

    double worst;
    mnas_status st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, NULL, &worst);
    ck_assert_msg(st == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    /* And the third order: the gradient of v·(meta-gradient). */
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = 2;
    st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "order 2: %s", mnas_ctx_last_error(ctx));
    /* Every pass recorded: batch-norm's recorded rules at the fourth order. */
    o.record_last = 1;
    st = mnas_gradcheck(ctx, maml_objective, &d, NP, p, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "order 2, last pass recorded: %s", mnas_ctx_last_error(ctx));
    maml_teardown(ctx, &d, p);
}
END_TEST

/* First-order MAML (inner gradients as constants) must differ from the
 * second-order meta-gradient: otherwise create_graph would not matter. */
static mnas_tensor *maml_first_order(mnas_tape *tp, mnas_tensor *const *params, void *user)
{
    maml_data *d = user;
    mnas_tensor *fast[NP];
    for (int k = 0; k < NP; k++) fast[k] = params[k];
    for (int s = 0; s < d->steps; s++) {
        mnas_tensor *g[NP];
        if (mnas_grad(tp, mnas_mse(tp, mlp(tp, d->xs, fast), d->ys), NP, fast, g, 0) != MNAS_OK) return NULL;
        for (int k = 0; k < NP; k++) fast[k] = mnas_sub(tp, fast[k], mnas_scale(tp, g[k], d->lr));
    }
    return mnas_mse(tp, mlp(tp, d->xq, fast), d->yq);
}

START_TEST(maml_first_order_differs_from_second_order)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 7;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    maml_data d;
    mnas_tensor *p[NP];
    maml_setup(ctx, &d, p);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *g2[NP], *g1[NP];
    ck_assert_int_eq(mnas_grad(tp, maml_objective(tp, p, &d), NP, p, g2, 0), MNAS_OK);
    ck_assert_int_eq(mnas_grad(tp, maml_first_order(tp, p, &d), NP, p, g1, 0), MNAS_OK);
    double diff = 0, norm = 0;
    for (int k = 0; k < NP; k++)
        for (int64_t j = 0; j < mnas_tensor_size(p[k]); j++) {
            double a = mnas_tensor_data(g2[k])[j], b = mnas_tensor_data(g1[k])[j];
            diff += (a - b) * (a - b);
            norm += a * a;
        }
    ck_assert_msg(diff > 1e-6 * norm, "first- and second-order meta-gradients agree (%g vs %g)", diff, norm);
    /* The first-order value is not the true gradient: the checker says so. */
    ck_assert_int_eq(mnas_gradcheck(ctx, maml_first_order, &d, NP, p, NULL, NULL), MNAS_E_NUMERIC);
    mnas_tape_free(tp);
    maml_teardown(ctx, &d, p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gradcheck_f64");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 600);
    tcase_add_loop_test(ops, op_orders_1_to_3, 0, 6 * NCASES);
    tcase_add_test(ops, checker_detects_wrong_gradient);
    tcase_add_test(ops, batch_norm_hvp_with_x_dependent_cotangent);
    suite_add_tcase(s, ops);
    TCase *graphs = tcase_create("graphs");
    tcase_set_timeout(graphs, 600);
    tcase_add_loop_test(graphs, random_graphs_orders_1_to_3, 0, 6 * GRAPHS);
    tcase_add_test(graphs, random_graphs_cover_every_op);
    suite_add_tcase(s, graphs);
    TCase *maml = tcase_create("maml");
    tcase_set_timeout(maml, 600);
    tcase_add_test(maml, maml_two_steps_second_order_meta_gradient);
    tcase_add_test(maml, maml_first_order_differs_from_second_order);
    suite_add_tcase(s, maml);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
