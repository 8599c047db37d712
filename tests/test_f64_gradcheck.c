/* Finite-difference checks, in double precision, of every differentiable op:
 * first order (the gradient) and second order (the gradient of v·grad, i.e.
 * Hessian-vector products through the recorded backward pass). Linked with
 * the double build of the library (mnas_f64).
 *
 * Each op's output y is reduced to a scalar by f = Σ w1⊙y + Σ w2⊙y², with
 * fixed random weights, so that no gradient is trivially constant (a plain
 * sum of a softmax is 1) and the second derivative of even a linear op is
 * not zero. */
#include <check.h>
#include <math.h>
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

static void run_case(int i, int order)
{
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
    double worst = -1;
    mnas_status st = mnas_gradcheck(ctx, reduce_fn, &h, (size_t)c->nin, in, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "%s, order %d: %s", c->name, order, mnas_ctx_last_error(ctx));
    ck_assert(worst >= 0.0 && worst <= 1.0);

    mnas_tensor_free(h.w1);
    mnas_tensor_free(h.w2);
    for (int k = 0; k < c->nin; k++) mnas_tensor_free(in[k]);
    mnas_ctx_free(ctx);
}

START_TEST(op_first_order) { run_case(_i, 1); }
END_TEST

START_TEST(op_second_order) { run_case(_i, 2); }
END_TEST

/* The checker itself must catch a wrong gradient: x ⊙ detach(x) has true
 * gradient 2x but the tape sees only x. */
static mnas_tensor *wrong_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    (void)user;
    return mnas_sum(tp, mnas_mul(tp, in[0], mnas_detach(tp, in[0])));
}

START_TEST(checker_detects_wrong_gradient)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    int64_t s[1] = { 4 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 1, s, 1.0, 1.0);
    mnas_tensor_set_requires_grad(x, 1);
    double worst;
    for (int order = 1; order <= 2; order++) {
        mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
        o.order = order;
        ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_NUMERIC);
        ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "analytic"));
    }
    /* Bad options are refused with a message, not run. */
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    o.order = 3;
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_INVALID);
    o.order = 1;
    o.eps = -1;
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, &o, &worst), MNAS_E_INVALID);
    mnas_tensor_set_requires_grad(x, 0);
    ck_assert_int_eq(mnas_gradcheck(ctx, wrong_fn, NULL, 1, &x, NULL, &worst), MNAS_E_INVALID);
    mnas_tensor_free(x);
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
    tcase_add_loop_test(ops, op_first_order, 0, NCASES);
    tcase_add_loop_test(ops, op_second_order, 0, NCASES);
    tcase_add_test(ops, checker_detects_wrong_gradient);
    suite_add_tcase(s, ops);
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
