/* Sampled mixed edges (sample_ops = k) against central finite differences
 * in double precision: the meta-objective of Eq. (9) through 2 inner SGD
 * steps (the meta-gradient differentiates the inner gradients: second
 * order), with respect to the meta-weights and the modulator, in the
 * second-order and the recompute inner modes. With the sampled ops fixed
 * (they depend on alpha, not on these parameters) the objective is a
 * smooth function of them, so the check is exact. The gradient reaching
 * alpha is straight-through by definition (the hard weights' gradient
 * passed to the soft alpha), not the derivative of the forward, so the
 * encoder, controller and shared alpha are not compared here; the unit
 * test checks that they get gradients. */
#include <check.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mnas/mnas.h>

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

static const mnas_method methods[] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM };

/* A 3-way task of random s x s images: 1 support and 2 query images per class. */
static mnas_task *image_task(mnas_ctx *ctx, int s)
{
    mnas_rng *r = mnas_rng_create(ctx, 98, 1);
    ck_assert_ptr_nonnull(r);
    int64_t xs[4] = { 3, 1, s, s }, xq[4] = { 6, 1, s, s }, ys[2] = { 3, 1 }, yq[2] = { 6, 1 };
    mnas_tensor *sx = mnas_tensor_zeros(ctx, 4, xs), *qx = mnas_tensor_zeros(ctx, 4, xq);
    mnas_tensor *sy = mnas_tensor_zeros(ctx, 2, ys), *qy = mnas_tensor_zeros(ctx, 2, yq);
    ck_assert(sx && qx && sy && qy);
    for (int64_t i = 0; i < mnas_tensor_size(sx); i++) mnas_tensor_data(sx)[i] = mnas_rng_uniform(r);
    for (int64_t i = 0; i < mnas_tensor_size(qx); i++) mnas_tensor_data(qx)[i] = mnas_rng_uniform(r);
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

static void check(int mi, int64_t k, mnas_inner_mode mode, int images)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = methods[mi];
    o.seed = 23;
    o.inner_steps = 2;
    o.inner_lr = 0.05;
    o.inner_mode = mode;
    o.hidden = 3;
    o.layers = 3;
    o.nodes = 2;
    o.z_dim = 3;
    o.f_dim = 2;
    o.controller_hidden = 3;
    o.path_dropout = 0.2; /* dropout and sampling together, both fixed by the stream */
    o.beta = 0.5;
    o.modulator_bias = 0.5;
    o.sample_ops = k;
    if (images) {
        o.classes = 3;
        o.image_size = 5;
        o.channels = 2;
        o.nodes = 1;
    }
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(ctx));
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    ro.k_shot = 4;
    ro.k_query = 5;
    mnas_task *t = images ? image_task(ctx, 5) : mnas_regression_task(ctx, &ro, 3, 1, -1);
    ck_assert_ptr_nonnull(t);
    const uint64_t stream = 4242;
    mnas_params *p = mnas_learner_params(l);
    double f0;
    ck_assert_msg(mnas_learner_task_objective(l, t, stream, &f0, 1) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert(isfinite(f0));
    size_t checked = 0, nonzero = 0, zero_both = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const char *name = mnas_params_name(p, i);
        if (strncmp(name, "net.", 4) && strncmp(name, "mod.", 4)) continue;
        mnas_tensor *w = mnas_params_get(p, i), *g = mnas_params_grad(p, i);
        mnas_real *d = mnas_tensor_data(w);
        int64_t n = mnas_tensor_size(w), cap = images ? 4 : 20;
        int64_t stride = n > cap ? n / cap : 1;
        for (int64_t j = 0; j < n; j += stride) {
            double a = mnas_tensor_data(g)[j], v = d[j], h = 1e-6, fp, fm;
            d[j] = v + h;
            ck_assert_int_eq(mnas_learner_task_objective(l, t, stream, &fp, 0), MNAS_OK);
            d[j] = v - h;
            ck_assert_int_eq(mnas_learner_task_objective(l, t, stream, &fm, 0), MNAS_OK);
            d[j] = v;
            double num = (fp - fm) / (2 * h);
            double err = fabs(a - num) / (1e-6 + 1e-5 * fabs(num));
            ck_assert_msg(err <= 1.0, "%s k=%lld: %s[%lld]: analytic %.10g, numeric %.10g",
                          mnas_method_name(o.method), (long long)k, name, (long long)j, a, num);
            checked++;
            if (fabs(num) > 1e-8) nonzero++;
            /* The weights of ops that were not sampled: exactly zero both ways. */
            if (a == 0 && num == 0) zero_both++;
        }
    }
    ck_assert_uint_gt(checked, 20);
    ck_assert_uint_gt(nonzero, 5);
    if (images && k == 1) ck_assert_uint_gt(zero_both, 0);
    mnas_task_free(t);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}

/* _i: method x k (1, 2). */
/* Under valgrind (every op ~50x slower) the first method of each loop only:
 * the other methods run the same sampled-edge code; the plain run checks
 * them all. */
static int skip_under_valgrind(int i) { return i % 3 != 0 && getenv("MNAS_TEST_UNDER_VALGRIND") != NULL; }

START_TEST(sampled_images_second_order)
{
    if (!skip_under_valgrind(_i)) check(_i % 3, 1 + _i / 3, MNAS_INNER_SECOND_ORDER, 1);
}
END_TEST

START_TEST(sampled_images_recompute)
{
    if (!skip_under_valgrind(_i)) check(_i % 3, 1 + _i / 3, MNAS_INNER_RECOMPUTE, 1);
}
END_TEST

START_TEST(sampled_regression_second_order) { check(_i, 1, MNAS_INNER_SECOND_ORDER, 0); }
END_TEST

int main(void)
{
    Suite *s = suite_create("sampled_edges_f64");
    TCase *tc = tcase_create("sampled");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, sampled_images_second_order, 0, 6);
    tcase_add_loop_test(tc, sampled_images_recompute, 0, 3);
    tcase_add_loop_test(tc, sampled_regression_second_order, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
