/* The whole meta-objective of Eq. (9) — query loss after the inner SGD
 * steps from modulated weights, plus beta * L_r — differentiated by the
 * learner, against central finite differences in double precision, with
 * respect to every parameter: meta-weights, encoder, controller (or shared
 * alpha) and modulator. Tiny configuration: 2 inner steps, widths of 3-4.
 * The same for few-shot image classification (cross-entropy): the DARTS
 * supernet on 5x5 images (2 channels, 1 node per cell) and MAML's conv
 * network (16x16 images, 2 filters). Learned inner rates (Meta-SGD): the
 * same objective through 5 steps with the rates among the parameters, and
 * the inner loop's rates at orders 1 and 2. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

static const mnas_method methods[] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM,
                                       MNAS_METHOD_MAML };

/* A 3-way task of random s x s images: 1 support and 2 query images per class. */
static mnas_task *image_task(mnas_ctx *ctx, int s)
{
    mnas_rng *r = mnas_rng_create(ctx, 99, 1);
    ck_assert_ptr_nonnull(r);
    int64_t xs[4] = { 3, 1, s, s }, xq[4] = { 6, 1, s, s }, ys[2] = { 3, 1 }, yq[2] = { 6, 1 };
    mnas_tensor *sx = mnas_tensor_zeros(ctx, 4, xs), *qx = mnas_tensor_zeros(ctx, 4, xq);
    mnas_tensor *sy = mnas_tensor_zeros(ctx, 2, ys), *qy = mnas_tensor_zeros(ctx, 2, yq);
    ck_assert(sx && qx && sy && qy);
    mnas_real *d = mnas_tensor_data(sx);
    for (int64_t i = 0; i < mnas_tensor_size(sx); i++) d[i] = (mnas_real)mnas_rng_uniform(r);
    d = mnas_tensor_data(qx);
    for (int64_t i = 0; i < mnas_tensor_size(qx); i++) d[i] = (mnas_real)mnas_rng_uniform(r);
    for (int i = 0; i < 3; i++) mnas_tensor_data(sy)[i] = (mnas_real)i;
    for (int i = 0; i < 6; i++) mnas_tensor_data(qy)[i] = (mnas_real)(i % 3);
    mnas_task *t = mnas_task_create(ctx, sx, sy, qx, qy, 0);
    mnas_tensor_free(sx);
    mnas_tensor_free(qx);
    mnas_tensor_free(sy);
    mnas_tensor_free(qy);
    mnas_rng_free(r);
    return t;
}

static void check_full(int mi, mnas_inner_mode mode, mnas_modulation modulation, mnas_rnn_kind rnn, int images,
                       mnas_modulator_form form, mnas_inner_lr_mode lr_mode, int steps);

/* > 0: check_full bounds the learned rates at inner_lr_max = rate_bound * inner_lr */
static double rate_bound;

static void check_method_form(int mi, mnas_inner_mode mode, mnas_modulation modulation, mnas_rnn_kind rnn, int images,
                              mnas_modulator_form form)
{
    check_full(mi, mode, modulation, rnn, images, form, MNAS_INNER_LR_FIXED, 2);
}

static void check_full(int mi, mnas_inner_mode mode, mnas_modulation modulation, mnas_rnn_kind rnn, int images,
                       mnas_modulator_form form, mnas_inner_lr_mode lr_mode, int steps)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = methods[mi];
    o.seed = 17;
    o.inner_steps = steps;
    o.inner_lr = 0.05; /* large enough that the steps matter */
    o.inner_lr_mode = lr_mode;
    o.inner_lr_max = rate_bound * o.inner_lr;
    o.inner_mode = mode;
    o.hidden = 3;
    o.layers = 3;
    o.nodes = 2;
    o.z_dim = 3;
    o.f_dim = 2;
    o.controller_hidden = 3;
    o.path_dropout = 0.3; /* the mask is fixed by the stream, so it is part of f */
    o.beta = 0.5;         /* a weight that makes L_r's gradient visible */
    o.encoder = rnn;
    o.modulation = modulation;
    o.modulator_bias = 0.5;
    o.modulator_form = form;
    if (images) {
        o.classes = 3;
        o.in_channels = 1;
        o.image_size = o.method == MNAS_METHOD_MAML ? 16 : 5;
        o.filters = 2;
        o.channels = 2;
        o.nodes = 1;
    }
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(ctx));
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    ro.k_shot = 4;
    ro.k_query = 5;
    mnas_task *t = images ? image_task(ctx, o.image_size) : mnas_regression_task(ctx, &ro, 3, 1, -1);
    ck_assert_ptr_nonnull(t);
    const uint64_t stream = 12345;
    mnas_params *p = mnas_learner_params(l);
    /* Learned rates away from their uniform start, so that a rate applied
     * to the wrong element or tensor shows. */
    for (size_t i = 0; i < mnas_params_count(p); i++)
        if (!strncmp(mnas_params_name(p, i), "lr.", 3)) {
            mnas_tensor *r = mnas_params_get(p, i);
            for (int64_t j = 0; j < mnas_tensor_size(r); j++)
                mnas_tensor_data(r)[j] = -0.4 + 0.8 * (double)((j * 7 + (int64_t)i * 3) % 11) / 11.0; /* log rate */
        }
    double f0;
    ck_assert_msg(mnas_learner_task_objective(l, t, stream, &f0, 1) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert(isfinite(f0));
    size_t P = mnas_params_count(p);
    /* analytic gradient copied out before the evaluations overwrite nothing
     * (want_grad 0 leaves the buffers), but keep a copy anyway */
    double worst = 0;
    size_t checked = 0;
    const int slow = getenv("MNAS_TEST_UNDER_VALGRIND") != NULL;
    int saw_enc = 0, saw_arch = 0, saw_mod = 0, saw_net = 0, saw_rate = 0;
    for (size_t i = 0; i < P; i++) {
        mnas_tensor *w = mnas_params_get(p, i), *g = mnas_params_grad(p, i);
        const char *name = mnas_params_name(p, i);
        mnas_real *d = mnas_tensor_data(w);
        int64_t n = mnas_tensor_size(w);
        /* Every element of small tensors; a fixed spread of large ones
         * (a sparser one under valgrind: the same code, fewer probes). */
        int64_t cap = images ? 6 : 40;
        if (slow) cap = images ? 3 : 12;
        int64_t stride = n > cap ? n / cap : 1;
        /* ... and always the last one (FiLM: the last shift's FC bias) */
        for (int64_t j = 0; j < n; j = j + stride < n || j == n - 1 ? j + stride : n - 1) {
            double a = mnas_tensor_data(g)[j];
            double v = d[j], h = 1e-6, fp, fm;
            d[j] = v + h;
            ck_assert_int_eq(mnas_learner_task_objective(l, t, stream, &fp, 0), MNAS_OK);
            d[j] = v - h;
            ck_assert_int_eq(mnas_learner_task_objective(l, t, stream, &fm, 0), MNAS_OK);
            d[j] = v;
            double num = (fp - fm) / (2 * h);
            /* eps^2 |f'''| and 1e-16 |f| / eps are far below this */
            double err = fabs(a - num) / (1e-6 + 1e-5 * fabs(num));
            ck_assert_msg(err <= 1.0, "%s: %s[%lld]: analytic %.10g, numeric %.10g", mnas_method_name(o.method), name,
                          (long long)j, a, num);
            if (err > worst) worst = err;
            checked++;
            if (fabs(num) > 1e-8) {
                if (!strncmp(name, "enc.", 4)) saw_enc = 1;
                if (!strncmp(name, "ctl.", 4) || !strncmp(name, "arch.", 5)) saw_arch = 1;
                if (!strncmp(name, "mod.", 4)) saw_mod = 1;
                if (!strncmp(name, "net.", 4)) saw_net = 1;
                if (!strncmp(name, "lr.", 3)) saw_rate = 1;
            }
        }
    }
    /* The check covered each part with a non-zero gradient. */
    ck_assert(saw_net);
    ck_assert(saw_rate == (lr_mode != MNAS_INNER_LR_FIXED));
    if (o.method != MNAS_METHOD_MAML) ck_assert(saw_enc);
    if (o.method != MNAS_METHOD_MAML) ck_assert(saw_arch);
    if (o.method == MNAS_METHOD_MNAS || o.method == MNAS_METHOD_MNAS_SHARED) ck_assert(saw_mod);
    ck_assert_uint_gt(checked, slow ? 15 : 30);
    mnas_task_free(t);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}

static void check_method_on(int mi, mnas_inner_mode mode, mnas_modulation modulation, mnas_rnn_kind rnn, int images)
{
    check_method_form(mi, mode, modulation, rnn, images, MNAS_MODULATOR_SIGMOID);
}

static void check_method(int mi, mnas_inner_mode mode, mnas_modulation modulation, mnas_rnn_kind rnn)
{
    check_method_on(mi, mode, modulation, rnn, 0);
}

/* Under valgrind (a memory check, not a second gradient check: the plain
 * run checks every method) M-NAS and M-NAS-NM on images, and recompute for
 * M-NAS alone, whose LSTM and channel modulation no other case reaches. */
static int valgrind_skips(int i, int keep_a, int keep_b)
{
    return getenv("MNAS_TEST_UNDER_VALGRIND") != NULL && i != keep_a && i != keep_b;
}

START_TEST(eq9_gradient_images)
{
    if (valgrind_skips(_i, 1, 3)) return;
    check_method_on(_i, MNAS_INNER_SECOND_ORDER, MNAS_MODULATE_ELEMENT, MNAS_RNN_GRU, 1);
}
END_TEST

START_TEST(eq9_gradient_second_order) { check_method(_i, MNAS_INNER_SECOND_ORDER, MNAS_MODULATE_ELEMENT, MNAS_RNN_GRU); }
END_TEST

START_TEST(eq9_gradient_recompute)
{
    if (valgrind_skips(_i, 1, 1)) return;
    check_method(_i, MNAS_INNER_RECOMPUTE, MNAS_MODULATE_CHANNEL, MNAS_RNN_LSTM);
}
END_TEST

/* Per-cell checkpointing of the query pass (MNAS_INNER_RECOMPUTE_CELLS):
 * the M-NAS variants on the DARTS supernet (_i 0-2) and on the toy
 * regression's MLP cell (_i 3-5), through 2 recomputed inner steps. */
START_TEST(eq9_gradient_recompute_cells)
{
    /* under valgrind and the sanitizers, M-NAS on images alone (the same
     * code paths: test_recompute_cells runs the MLP cell there) */
    if (_i && (getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED"))) return;
    check_method_on(_i % 3, MNAS_INNER_RECOMPUTE_CELLS, _i < 3 ? MNAS_MODULATE_ELEMENT : MNAS_MODULATE_CHANNEL,
                    MNAS_RNN_GRU, _i < 3);
}
END_TEST

/* The modulator forms of issue 17 through the whole Eq. (9) objective, for
 * M-NAS and M-NAS-Shared (the methods with a modulator): second order with
 * element modulation, recompute with channel modulation. */
START_TEST(eq9_gradient_modulator_forms)
{
    mnas_modulator_form form = _i % 2 ? MNAS_MODULATOR_ONE_PLUS_TANH : MNAS_MODULATOR_TWO_SIGMOID;
    /* under valgrind, one case per form and inner mode (M-NAS alone) */
    if ((_i / 2) % 2 && getenv("MNAS_TEST_UNDER_VALGRIND")) return;
    int mi = (_i / 2) % 2; /* M-NAS, M-NAS-Shared */
    if (_i >= 8) { /* FiLM: shifts on the biases and batch-norm parameters */
        form = MNAS_MODULATOR_FILM;
        mi = _i % 2;
    }
    if (_i < 4 || _i == 8 || _i == 9)
        check_method_form(mi, MNAS_INNER_SECOND_ORDER, MNAS_MODULATE_ELEMENT, MNAS_RNN_GRU, 0, form);
    else
        check_method_form(mi, MNAS_INNER_RECOMPUTE, MNAS_MODULATE_CHANNEL, MNAS_RNN_LSTM, 0, form);
}
END_TEST

/* Learned inner rates (issue 17): the meta-gradient with respect to every
 * parameter, the rates ("lr.*") included, through 5 second-order inner steps,
 * for the four methods: per element (_i < 4) and per tensor. */
START_TEST(eq9_gradient_learned_rates)
{
    /* under valgrind and the sanitizers: M-NAS per element, MAML per tensor,
     * M-NAS bounded */
    if ((getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED")) && _i != 1 && _i != 4 && _i != 9)
        return;
    /* 8..11: per element, bounded by inner_lr_max = 3 inner_lr (the log
     * rates of check_full, +-0.4, are then 0.36 of the bound's range) */
    rate_bound = _i >= 8 ? 3 : 0;
    check_full(_i % 4, MNAS_INNER_SECOND_ORDER, MNAS_MODULATE_ELEMENT, MNAS_RNN_GRU, 0, MNAS_MODULATOR_SIGMOID,
               _i < 4 || _i >= 8 ? MNAS_INNER_LR_PER_ELEMENT : MNAS_INNER_LR_PER_TENSOR, 5);
    rate_bound = 0;
}
END_TEST

/* ---- the inner loop's rates, orders 1 and 2 ------------------------------------- */

/* A Linear-tanh-Linear network; weights w[0..3], rates w[4..7] (per element
 * for the matrices, per tensor for the biases). */
typedef struct {
    mnas_tensor *xs, *ys, *xq, *yq;
    int steps;
    mnas_inner_mode mode;
    mnas_tensor *const *w; /* the fixed weights, when only the rates are inputs */
} rates_data;

static mnas_tensor *net2(mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    return mnas_linear(tp, mnas_tanh(tp, mnas_linear(tp, x, w[0], w[1])), w[2], w[3]);
}

static mnas_tensor *net2_support(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    (void)extra;
    rates_data *d = user;
    return mnas_mse(tp, net2(tp, d->xs, w), d->ys);
}

/* The query loss after the inner steps; inputs: 4 weights then 4 rates, or
 * (d->w set) the 4 rates alone. */
static mnas_tensor *rates_objective(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    rates_data *d = user;
    mnas_tensor *const *w = d->w ? d->w : in, *const *r = d->w ? in : in + 4;
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = d->steps;
    io.mode = d->mode;
    io.rates = r;
    mnas_tensor *fast[4];
    if (mnas_inner_loop(tp, net2_support, d, 4, w, 0, NULL, &io, fast) != MNAS_OK) return NULL;
    return mnas_mse(tp, net2(tp, d->xq, fast), d->yq);
}

START_TEST(inner_loop_rates_orders_1_and_2)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 5;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    int64_t sx[2] = { 6, 2 }, sy[2] = { 6, 1 }, w1[2] = { 4, 2 }, b1[1] = { 4 }, w2[2] = { 1, 4 }, b2[1] = { 1 };
    rates_data d = { mnas_tensor_randn(ctx, 2, sx, 0, 1), mnas_tensor_randn(ctx, 2, sy, 0, 1),
                     mnas_tensor_randn(ctx, 2, sx, 0, 1), mnas_tensor_randn(ctx, 2, sy, 0, 1), 5,
                     MNAS_INNER_SECOND_ORDER, NULL };
    mnas_tensor *in[8] = { mnas_tensor_randn(ctx, 2, w1, 0, 0.7), mnas_tensor_randn(ctx, 1, b1, 0, 0.3),
                           mnas_tensor_randn(ctx, 2, w2, 0, 0.7), mnas_tensor_randn(ctx, 1, b2, 0, 0.3),
                           mnas_tensor_rand(ctx, 2, w1, 0.05, 0.3), mnas_tensor_rand(ctx, 1, b2, 0.05, 0.3),
                           mnas_tensor_rand(ctx, 2, w2, 0.05, 0.3), mnas_tensor_rand(ctx, 1, b2, 0.05, 0.3) };
    for (int k = 0; k < 8; k++) {
        ck_assert_ptr_nonnull(in[k]);
        mnas_tensor_set_requires_grad(in[k], 1);
    }
    double worst;
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    /* order 2 is left to the plain run under valgrind and the sanitizers */
    const int slow = getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED");
    for (int order = 1; order <= (slow ? 1 : 2); order++) {
        o.order = order;
        mnas_status st = mnas_gradcheck(ctx, rates_objective, &d, 8, in, &o, &worst);
        ck_assert_msg(st == MNAS_OK, "order %d: %s", order, mnas_ctx_last_error(ctx));
    }
    /* First order, one step: the step's gradient does not depend on the
     * rates, so the first-order derivative with respect to them is exact. */
    d.mode = MNAS_INNER_FIRST_ORDER;
    d.steps = 1;
    d.w = in;
    o.order = 1;
    ck_assert_msg(mnas_gradcheck(ctx, rates_objective, &d, 4, in + 4, &o, &worst) == MNAS_OK, "%s",
                  mnas_ctx_last_error(ctx));
    /* Over 5 steps it is not, and the checker sees it: the test has teeth. */
    d.steps = 5;
    ck_assert_int_eq(mnas_gradcheck(ctx, rates_objective, &d, 4, in + 4, &o, &worst), MNAS_E_NUMERIC);
    for (int k = 0; k < 8; k++) mnas_tensor_free(in[k]);
    mnas_tensor_free(d.xs);
    mnas_tensor_free(d.ys);
    mnas_tensor_free(d.xq);
    mnas_tensor_free(d.yq);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mnas_f64");
    TCase *tc = tcase_create("eq9");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, eq9_gradient_second_order, 0, 4);
    tcase_add_loop_test(tc, eq9_gradient_recompute, 0, 4);
    tcase_add_loop_test(tc, eq9_gradient_images, 0, 4);
    tcase_add_loop_test(tc, eq9_gradient_modulator_forms, 0, 12);
    tcase_add_loop_test(tc, eq9_gradient_learned_rates, 0, 12);
    tcase_add_test(tc, inner_loop_rates_orders_1_and_2);
    suite_add_tcase(s, tc);
    TCase *cells = tcase_create("recompute_cells");
    tcase_set_timeout(cells, 600);
    tcase_add_loop_test(cells, eq9_gradient_recompute_cells, 0, 6);
    suite_add_tcase(s, cells);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
