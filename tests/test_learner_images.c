/* The learner on few-shot image classification: every method trains on
 * N-way K-shot tasks of a synthetic image dataset and its query
 * cross-entropy after adaptation falls; threads do not change a bit; the
 * architecture phase and genotypes work on the conv supernet; bad input is
 * refused with a message and leaves the learner as it was. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* 12 classes of s x s grey images: a class is a fixed random pattern, its
 * images that pattern plus noise. */
typedef struct {
    mnas_ctx *ctx;
    mnas_image_dataset *ds;
    mnas_fewshot_sampler *sampler;
} fixture;

static void fx_init(fixture *f, int s, int per_class)
{
    /* MAML's network needs 16 x 16 images; the supernet takes any size. */
    ck_assert_int_eq(mnas_ctx_create(&f->ctx, NULL), MNAS_OK);
    enum { CLASSES = 12 };
    size_t counts[CLASSES];
    size_t px = (size_t)s * (size_t)s;
    mnas_real *data = malloc(CLASSES * (size_t)per_class * px * sizeof *data);
    ck_assert_ptr_nonnull(data);
    mnas_rng *r = mnas_rng_create(f->ctx, 5, 0);
    ck_assert_ptr_nonnull(r);
    mnas_real *pattern = malloc(px * sizeof *pattern);
    ck_assert_ptr_nonnull(pattern);
    for (size_t c = 0; c < CLASSES; c++) {
        counts[c] = (size_t)per_class;
        for (size_t p = 0; p < px; p++) pattern[p] = mnas_rng_uniform(r) < 0.5 ? 0.1f : 0.9f;
        for (size_t i = 0; i < (size_t)per_class; i++)
            for (size_t p = 0; p < px; p++)
                data[(c * (size_t)per_class + i) * px + p] = pattern[p] + (mnas_real)(0.3 * (mnas_rng_uniform(r) - 0.5));
    }
    free(pattern);
    mnas_rng_free(r);
    f->ds = mnas_image_dataset_create(f->ctx, CLASSES, counts, NULL, 1, s, s, data);
    free(data);
    ck_assert_ptr_nonnull(f->ds);
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.way = 3;
    fo.shot = 1;
    fo.query = 2;
    const mnas_image_dataset *dss[1] = { f->ds };
    f->sampler = mnas_fewshot_sampler_create(f->ctx, dss, 1, &fo);
    ck_assert_ptr_nonnull(f->sampler);
}

static void fx_free(fixture *f)
{
    mnas_fewshot_sampler_free(f->sampler);
    mnas_image_dataset_free(f->ds);
    mnas_ctx_free(f->ctx);
}

static mnas_task *source(void *user, uint64_t index)
{
    fixture *f = user;
    return mnas_fewshot_task(f->ctx, f->sampler, 31, index);
}

static const mnas_method methods[4] = { MNAS_METHOD_MAML, MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED,
                                        MNAS_METHOD_MNAS_NM };

/* Small enough for a unit test: 3-way 1-shot, 16 x 16 images and 4 filters
 * for MAML's network, 8 x 8 images and a 2-node supernet of 4 channels for
 * the M-NAS variants. */
static mnas_learner_options small_options(mnas_method m, int threads)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.classes = 3;
    o.in_channels = 1;
    o.image_size = m == MNAS_METHOD_MAML ? 16 : 8;
    o.filters = 4;
    o.channels = 4;
    o.nodes = 2;
    o.meta_batch = 4;
    o.inner_steps = 2;
    o.inner_lr = 0.1;
    o.outer_lr = 0.01;
    o.arch_lr = 0.01;
    o.z_dim = 8;
    o.f_dim = 8;
    o.controller_hidden = 8;
    o.threads = threads;
    o.seed = 3;
    return o;
}

static double mean_of(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

START_TEST(training_lowers_query_cross_entropy)
{
    fixture f;
    mnas_learner_options o = small_options(methods[_i], 2);
    fx_init(&f, o.image_size, 6);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(f.ctx));
    mnas_task_set *test = mnas_fewshot_test_set(f.ctx, f.sampler, 777, 16);
    ck_assert_ptr_nonnull(test);
    double before[16], after[16], acc0[16], acc1[16];
    ck_assert_int_eq(mnas_learner_evaluate(l, test, -1, NULL, before), MNAS_OK);
    ck_assert_int_eq(mnas_learner_evaluate_accuracy(l, test, -1, NULL, acc0), MNAS_OK);
    ck_assert_msg(mnas_learner_train(l, source, &f, 30, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_int_eq(mnas_learner_evaluate(l, test, -1, NULL, after), MNAS_OK);
    ck_assert_int_eq(mnas_learner_evaluate_accuracy(l, test, -1, NULL, acc1), MNAS_OK);
    double l0 = mean_of(before, 16), l1 = mean_of(after, 16), a0 = mean_of(acc0, 16), a1 = mean_of(acc1, 16);
    for (int i = 0; i < 16; i++) ck_assert(acc1[i] >= 0 && acc1[i] <= 1);
    /* Measured (x86-64, AVX-512): over 30 meta-updates the query
     * cross-entropy after adaptation falls from 1.00 to 0.45 (MAML) and from
     * 0.94 to 0.01-0.04 (M-NAS variants); accuracy after adaptation rises
     * from 0.61 to 0.89 (MAML) and from 0.72 to 0.99-1.0. */
    ck_assert_msg(l1 < 0.6 * l0, "%s: cross-entropy after adaptation %g -> %g", mnas_method_name(o.method), l0, l1);
    ck_assert_msg(a1 > a0 + 0.15, "%s: accuracy %g -> %g", mnas_method_name(o.method), a0, a1);
    mnas_task_set_free(test);
    mnas_learner_free(l);
    fx_free(&f);
}
END_TEST

static void train_copy(mnas_method m, int threads, mnas_real *out, size_t cap, size_t *count)
{
    fixture f;
    mnas_learner_options o = small_options(m, threads);
    fx_init(&f, o.image_size, 4);
    o.meta_batch = 3; /* not a multiple of the thread count */
    o.filters = 8;    /* MAML's second layer (8 -> 8 at 8 x 8) then runs through Winograd */
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(mnas_learner_train(l, source, &f, 3, NULL, NULL), MNAS_OK);
    mnas_params *p = mnas_learner_params(l);
    size_t k = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *w = mnas_params_get(p, i);
        int64_t n = mnas_tensor_size(w);
        ck_assert_uint_le(k + (size_t)n, cap);
        memcpy(out + k, mnas_tensor_data(w), (size_t)n * sizeof(mnas_real));
        k += (size_t)n;
    }
    *count = k;
    mnas_learner_free(l);
    fx_free(&f);
}

START_TEST(threads_give_identical_bits)
{
    enum { CAP = 1 << 21 };
    mnas_real *a = malloc(CAP * sizeof *a), *b = malloc(CAP * sizeof *b);
    ck_assert(a && b);
    size_t na, nb;
    train_copy(methods[_i], 1, a, CAP, &na);
    train_copy(methods[_i], 2, b, CAP, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, na * sizeof *a) == 0, "%s: 1 and 2 threads differ", mnas_method_name(methods[_i]));
    free(a);
    free(b);
}
END_TEST

START_TEST(architecture_phase_and_genotypes)
{
    fixture f;
    mnas_learner_options o = small_options(methods[_i], 1);
    fx_init(&f, o.image_size, 4);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(mnas_learner_train(l, source, &f, 2, NULL, NULL), MNAS_OK);
    mnas_task *t = source(&f, 1000);
    ck_assert_ptr_nonnull(t);
    mnas_genotype *g = mnas_learner_genotype(l, t);
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(f.ctx));
    /* The conv supernet's genotype is a (normal, reduce) pair that prints
     * and parses back to itself. */
    ck_assert_int_eq(mnas_genotype_num_cells(g), 2);
    char buf[4096];
    ck_assert_int_gt(mnas_genotype_to_string(g, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "reduce:"));
    mnas_search_space *space = mnas_search_space_darts(f.ctx);
    mnas_genotype *back = mnas_genotype_parse(f.ctx, space, buf);
    ck_assert_msg(back != NULL, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert(mnas_genotype_equal(g, back));
    mnas_genotype_free(back);
    mnas_search_space_free(space);
    ck_assert_int_eq(mnas_learner_discretize(l, 0), MNAS_OK);
    ck_assert_int_eq(mnas_learner_train(l, source, &f, 2, NULL, NULL), MNAS_OK);
    mnas_genotype *g2 = mnas_learner_genotype(l, t);
    ck_assert_ptr_nonnull(g2);
    /* M-NAS-Shared keeps the genotype it fixed when it entered the phase. */
    if (o.method == MNAS_METHOD_MNAS_SHARED) ck_assert(mnas_genotype_equal(g, g2));
    mnas_genotype_free(g2);
    mnas_genotype_free(g);
    mnas_task_free(t);
    mnas_learner_free(l);
    fx_free(&f);
}
END_TEST

/* The memory-saving inner loop (recompute) gives the gradient of the
 * second-order one on the DARTS supernet, whose 4-node cells have more than
 * 255 parameter tensors. */
START_TEST(recompute_matches_second_order)
{
    fixture f;
    mnas_learner_options o = small_options(MNAS_METHOD_MNAS, 1);
    o.nodes = 4;
    fx_init(&f, o.image_size, 4);
    mnas_task *t = source(&f, 3);
    ck_assert_ptr_nonnull(t);
    double obj[2];
    mnas_real *g[2] = { NULL, NULL };
    size_t total = 0, tensors = 0;
    for (int k = 0; k < 2; k++) {
        o.inner_mode = k ? MNAS_INNER_RECOMPUTE : MNAS_INNER_SECOND_ORDER;
        mnas_learner *l = mnas_learner_create(f.ctx, &o);
        ck_assert_ptr_nonnull(l);
        ck_assert_msg(mnas_learner_task_objective(l, t, 5, &obj[k], 1) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
        mnas_params *p = mnas_learner_params(l);
        tensors = mnas_params_count(p);
        total = (size_t)mnas_params_numel(p);
        g[k] = malloc(total * sizeof(mnas_real));
        ck_assert_ptr_nonnull(g[k]);
        size_t q = 0;
        for (size_t i = 0; i < tensors; i++) {
            mnas_tensor *gi = mnas_params_grad(p, i);
            memcpy(g[k] + q, mnas_tensor_data(gi), (size_t)mnas_tensor_size(gi) * sizeof(mnas_real));
            q += (size_t)mnas_tensor_size(gi);
        }
        mnas_learner_free(l);
    }
    ck_assert_uint_gt(tensors, 255);
    ck_assert_msg(obj[0] == obj[1], "%.9g vs %.9g", obj[0], obj[1]); /* the same forward computation */
    double gmax = 0;
    for (size_t q = 0; q < total; q++) gmax = fmax(gmax, fabs(g[0][q]));
    for (size_t q = 0; q < total; q++)
        ck_assert_msg(fabs(g[0][q] - g[1][q]) <= 1e-4 * gmax + 1e-4 * fabs(g[0][q]), "element %zu: %g vs %g", q,
                      (double)g[0][q], (double)g[1][q]);
    free(g[0]);
    free(g[1]);
    mnas_task_free(t);
    fx_free(&f);
}
END_TEST

/* A task from caller tensors: n images of s x s with the given labels. */
static mnas_task *custom_task(mnas_ctx *ctx, int n, int s, const mnas_real *labels, int ndim_y)
{
    int64_t xs[4] = { n, 1, s, s }, ys[2] = { n, 1 };
    mnas_tensor *x = mnas_tensor_rand(ctx, 4, xs, 0, 1);
    mnas_tensor *y = mnas_tensor_from_data(ctx, ndim_y, ys, labels);
    ck_assert(x && y);
    mnas_task *t = mnas_task_create(ctx, x, y, x, y, 0);
    mnas_tensor_free(x);
    mnas_tensor_free(y);
    return t;
}

START_TEST(bad_input_is_refused)
{
    fixture f;
    fx_init(&f, 8, 4);
    mnas_learner_options o = small_options(MNAS_METHOD_MNAS, 1);
    o.classes = -1;
    ck_assert_ptr_null(mnas_learner_create(f.ctx, &o));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "classes"));
    o = small_options(MNAS_METHOD_MAML, 1);
    o.image_size = 8; /* four 2x2 pools need 16 pixels */
    ck_assert_ptr_null(mnas_learner_create(f.ctx, &o));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "image_size"));
    o = small_options(MNAS_METHOD_MNAS, 1);
    o.in_channels = 0;
    ck_assert_ptr_null(mnas_learner_create(f.ctx, &o));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "in_channels"));

    o = small_options(MNAS_METHOD_MNAS, 1);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    mnas_params *p = mnas_learner_params(l);
    mnas_tensor *w0 = mnas_tensor_copy(mnas_params_get(p, 0));
    const mnas_real good[3] = { 0, 1, 2 }, out_of_range[3] = { 0, 1, 3 }, fractional[3] = { 0, 1.5f, 2 },
                    negative[3] = { 0, -1, 2 };
    struct {
        const mnas_real *labels;
        int s;
        const char *words;
    } cases[] = { { out_of_range, 8, "label 3" }, { fractional, 8, "label 1.5" }, { negative, 8, "label -1" },
                  { good, 12, "expected images" } };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mnas_task *t = custom_task(f.ctx, 3, cases[k].s, cases[k].labels, 2);
        ck_assert_ptr_nonnull(t);
        const mnas_task *ts[1] = { t };
        ck_assert_int_ne(mnas_learner_step(l, ts, 1, NULL), MNAS_OK);
        ck_assert_msg(strstr(mnas_ctx_last_error(f.ctx), cases[k].words) != NULL, "case %zu: %s", k,
                      mnas_ctx_last_error(f.ctx));
        mnas_task_free(t);
    }
    /* A regression task given to a classification learner. */
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    mnas_task *rt = mnas_regression_task(f.ctx, &ro, 1, 0, -1);
    const mnas_task *rts[1] = { rt };
    ck_assert_int_eq(mnas_learner_step(l, rts, 1, NULL), MNAS_E_SHAPE);
    mnas_task_free(rt);
    /* Nothing moved. */
    ck_assert_int_eq(mnas_learner_iteration(l), 0);
    ck_assert(memcmp(mnas_tensor_data(w0), mnas_tensor_data(mnas_params_get(p, 0)),
                     (size_t)mnas_tensor_size(w0) * sizeof(mnas_real)) == 0);
    /* Regression-only and classification-only calls. */
    mnas_real x = 0, y;
    mnas_task *t = custom_task(f.ctx, 3, 8, good, 2);
    ck_assert_int_eq(mnas_learner_adapt_predict(l, t, 1, 1, &x, &y), MNAS_E_UNSUPPORTED);
    mnas_learner_options ro2 = MNAS_LEARNER_OPTIONS_INIT;
    mnas_learner *reg = mnas_learner_create(f.ctx, &ro2);
    mnas_task_set *set = mnas_regression_test_set(f.ctx, &ro, 1, 1);
    double acc[4];
    ck_assert_int_eq(mnas_learner_evaluate_accuracy(reg, set, -1, NULL, acc), MNAS_E_STATE);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "classification"));
    /* and the classification learner still works */
    const mnas_task *ts[1] = { t };
    ck_assert_msg(mnas_learner_step(l, ts, 1, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_task_set_free(set);
    mnas_learner_free(reg);
    mnas_task_free(t);
    mnas_tensor_free(w0);
    mnas_learner_free(l);
    fx_free(&f);
}
END_TEST

/* stem_stride (1, 2, 4): the same parameters, another network; it trains,
 * gives the same bits on 1 and 2 threads, is saved and checked on load,
 * and is refused where there is no conv supernet or for other values. */
static double query_loss(mnas_learner *l, mnas_task_set *set)
{
    double after[8];
    ck_assert_int_eq(mnas_learner_evaluate(l, set, -1, NULL, after), MNAS_OK);
    return mean_of(after, 8);
}

START_TEST(stem_stride_option)
{
    fixture f;
    fx_init(&f, 16, 4);
    mnas_task_set *test = mnas_fewshot_test_set(f.ctx, f.sampler, 777, 8);
    ck_assert_ptr_nonnull(test);
    mnas_learner *l[3];
    mnas_real *bits[2];
    size_t nbits = 0;
    for (int k = 0; k < 3; k++) {
        mnas_learner_options o = small_options(MNAS_METHOD_MNAS, k == 2 ? 2 : 1);
        o.image_size = 16;
        o.stem_stride = k == 0 ? 1 : 4;
        l[k] = mnas_learner_create(f.ctx, &o);
        ck_assert_msg(l[k] != NULL, "%s", mnas_ctx_last_error(f.ctx));
        ck_assert_uint_eq(mnas_params_count(mnas_learner_params(l[k])), mnas_params_count(mnas_learner_params(l[0])));
    }
    /* same seed, same initial weights, another network: other losses */
    ck_assert(query_loss(l[0], test) != query_loss(l[1], test));
    double before = query_loss(l[1], test);
    for (int k = 1; k < 3; k++) {
        ck_assert_msg(mnas_learner_train(l[k], source, &f, 12, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
        mnas_params *p = mnas_learner_params(l[k]);
        size_t n = 0;
        for (size_t i = 0; i < mnas_params_count(p); i++) n += (size_t)mnas_tensor_size(mnas_params_get(p, i));
        bits[k - 1] = malloc(n * sizeof(mnas_real));
        ck_assert_ptr_nonnull(bits[k - 1]);
        nbits = 0;
        for (size_t i = 0; i < mnas_params_count(p); i++) {
            mnas_tensor *w = mnas_params_get(p, i);
            memcpy(bits[k - 1] + nbits, mnas_tensor_data(w), (size_t)mnas_tensor_size(w) * sizeof(mnas_real));
            nbits += (size_t)mnas_tensor_size(w);
        }
    }
    ck_assert_msg(memcmp(bits[0], bits[1], nbits * sizeof(mnas_real)) == 0, "stem stride 4: 1 and 2 threads differ");
    double after = query_loss(l[1], test);
    ck_assert_msg(after < before, "stem stride 4: query loss after adaptation %g -> %g", before, after);
    /* checkpoints: the stride is part of the configuration */
    char path[] = "/tmp/mnas-stem-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(mnas_learner_save(l[1], path), MNAS_OK);
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(f.ctx, path, &r), MNAS_OK);
    ck_assert_int_eq(r.stem_stride, 4);
    ck_assert_int_eq(mnas_learner_load(l[0], path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "stem_stride"));
    ck_assert_int_eq(mnas_learner_load(l[2], path), MNAS_OK);
    remove(path);
    /* refusals */
    struct {
        mnas_method m;
        int classes, stride;
    } bad[] = { { MNAS_METHOD_MNAS, 3, 3 }, { MNAS_METHOD_MNAS, 3, 0 }, { MNAS_METHOD_MNAS, 3, 8 },
                { MNAS_METHOD_MAML, 3, 2 }, { MNAS_METHOD_MNAS, 0, 2 } };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        mnas_learner_options o = small_options(bad[k].m, 1);
        o.classes = bad[k].classes;
        o.stem_stride = bad[k].stride;
        ck_assert_ptr_null(mnas_learner_create(f.ctx, &o));
        ck_assert_msg(strstr(mnas_ctx_last_error(f.ctx), "stem_stride") != NULL, "case %zu: %s", k,
                      mnas_ctx_last_error(f.ctx));
    }
    for (int k = 0; k < 3; k++) mnas_learner_free(l[k]);
    free(bits[0]);
    free(bits[1]);
    mnas_task_set_free(test);
    fx_free(&f);
}
END_TEST

int main(void)
{
    int slow = getenv("MNAS_TEST_UNDER_VALGRIND") != NULL;
    Suite *s = suite_create("learner_images");
    TCase *tc = tcase_create("images");
    tcase_set_timeout(tc, 600);
    if (!slow) tcase_add_loop_test(tc, training_lowers_query_cross_entropy, 0, 4);
    tcase_add_loop_test(tc, threads_give_identical_bits, slow ? 1 : 0, slow ? 2 : 4);
    /* under valgrind M-NAS alone: the variants share its architecture phase */
    tcase_add_loop_test(tc, architecture_phase_and_genotypes, 1, slow ? 2 : 4);
    tcase_add_test(tc, bad_input_is_refused);
    tcase_add_test(tc, stem_stride_option);
    tcase_add_test(tc, recompute_matches_second_order);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
