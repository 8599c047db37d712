/* mnas_tsne: the 2-D map of task embeddings behind Figure 6 keeps clusters
 * apart, is reproducible from its seed, and refuses bad input. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

enum { CLUSTERS = 3, PER = 30, NPTS = CLUSTERS * PER, DIM = 8 };

/* Three Gaussian clusters in 8-D, centres 6 apart, spread 0.5. */
static void make_clusters(mnas_ctx *ctx, double *x, int *label)
{
    mnas_rng *r = mnas_rng_create(ctx, 42, 0);
    ck_assert_ptr_nonnull(r);
    for (int i = 0; i < NPTS; i++) {
        label[i] = i % CLUSTERS; /* interleaved: order says nothing */
        for (int k = 0; k < DIM; k++) x[i * DIM + k] = (k == label[i] ? 6.0 : 0.0) + 0.5 * mnas_rng_normal(r);
    }
    mnas_rng_free(r);
}

/* Share of points whose nearest other point in the map has their label. */
static double nn_agreement(const double *y, const int *label)
{
    int good = 0;
    for (int i = 0; i < NPTS; i++) {
        int best = -1;
        double bd = INFINITY;
        for (int j = 0; j < NPTS; j++) {
            if (j == i) continue;
            double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1], d = dx * dx + dy * dy;
            if (d < bd) {
                bd = d;
                best = j;
            }
        }
        good += label[best] == label[i];
    }
    return (double)good / NPTS;
}

START_TEST(clusters_stay_apart_and_the_map_is_centred)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    double x[NPTS * DIM], y[NPTS * 2];
    int label[NPTS];
    make_clusters(ctx, x, label);
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 500, 7, y), MNAS_OK);
    ck_assert_double_ge(nn_agreement(y, label), 0.97);
    /* Between-cluster distances dwarf the clusters' own spread. */
    double c[CLUSTERS][2] = { { 0 } }, spread = 0, mx = 0, my = 0;
    for (int i = 0; i < NPTS; i++) {
        c[label[i]][0] += y[2 * i] / PER;
        c[label[i]][1] += y[2 * i + 1] / PER;
        mx += y[2 * i] / NPTS;
        my += y[2 * i + 1] / NPTS;
    }
    for (int i = 0; i < NPTS; i++)
        spread += hypot(y[2 * i] - c[label[i]][0], y[2 * i + 1] - c[label[i]][1]) / NPTS;
    for (int a = 0; a < CLUSTERS; a++)
        for (int b = a + 1; b < CLUSTERS; b++)
            ck_assert_double_gt(hypot(c[a][0] - c[b][0], c[a][1] - c[b][1]), 3.0 * spread);
    ck_assert_double_lt(fabs(mx), 1e-9);
    ck_assert_double_lt(fabs(my), 1e-9);
    /* The same points with labels shuffled across clusters do not pass:
     * the agreement measures the map, not the test. */
    int shuffled[NPTS];
    for (int i = 0; i < NPTS; i++) shuffled[i] = (i / CLUSTERS) % CLUSTERS;
    ck_assert_double_lt(nn_agreement(y, shuffled), 0.7);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(a_seed_gives_the_same_map)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    double x[NPTS * DIM], a[NPTS * 2], b[NPTS * 2], c[NPTS * 2];
    int label[NPTS];
    make_clusters(ctx, x, label);
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 120, 3, a), MNAS_OK);
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 120, 3, b), MNAS_OK);
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 120, 4, c), MNAS_OK);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(bad_input_is_refused_and_y_untouched)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    double x[NPTS * DIM], y[NPTS * 2];
    int label[NPTS];
    make_clusters(ctx, x, label);
    for (int i = 0; i < NPTS * 2; i++) y[i] = -7.0;
    struct {
        size_t n, dim;
        double perp;
        int iters;
        mnas_status want;
        const char *msg;
    } bad[] = {
        { 3, DIM, 1.0, 10, MNAS_E_INVALID, "3 points" },
        { 8193, DIM, 10.0, 10, MNAS_E_INVALID, "8193 points" },
        { NPTS, 0, 10.0, 10, MNAS_E_INVALID, "dimension 0" },
        { NPTS, DIM, 0.5, 10, MNAS_E_INVALID, "perplexity 0.5" },
        { NPTS, DIM, 30.0, 10, MNAS_E_INVALID, "perplexity 30" }, /* > (90 - 1) / 3 */
        { NPTS, DIM, NAN, 10, MNAS_E_INVALID, "perplexity nan" },
        { NPTS, DIM, 10.0, 0, MNAS_E_INVALID, "iterations 0" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ck_assert_int_eq(mnas_tsne(ctx, x, bad[k].n, bad[k].dim, bad[k].perp, bad[k].iters, 1, y), bad[k].want);
        ck_assert_msg(strstr(mnas_ctx_last_error(ctx), bad[k].msg) != NULL, "case %zu: %s", k,
                      mnas_ctx_last_error(ctx));
    }
    ck_assert_int_eq(mnas_tsne(ctx, NULL, NPTS, DIM, 10.0, 10, 1, y), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 10, 1, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_tsne(NULL, x, NPTS, DIM, 10.0, 10, 1, y), MNAS_E_INVALID);
    x[5 * DIM + 2] = NAN;
    ck_assert_int_eq(mnas_tsne(ctx, x, NPTS, DIM, 10.0, 10, 1, y), MNAS_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "x[5][2]"));
    for (int i = 0; i < NPTS * 2; i++) ck_assert(y[i] == -7.0);
    mnas_ctx_free(ctx);
}
END_TEST

/* Identical points: no structure, but a finite, centred map. */
START_TEST(identical_points_give_a_finite_map)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    double x[20 * 3], y[20 * 2];
    for (int i = 0; i < 60; i++) x[i] = 1.5;
    ck_assert_int_eq(mnas_tsne(ctx, x, 20, 3, 5.0, 300, 1, y), MNAS_OK);
    for (int i = 0; i < 40; i++) ck_assert(isfinite(y[i]));
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tsne");
    TCase *tc = tcase_create("tsne");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, clusters_stay_apart_and_the_map_is_centred);
    tcase_add_test(tc, a_seed_gives_the_same_map);
    tcase_add_test(tc, bad_input_is_refused_and_y_untouched);
    tcase_add_test(tc, identical_points_give_a_finite_map);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
