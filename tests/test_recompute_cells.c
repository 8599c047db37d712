/* MNAS_INNER_RECOMPUTE_CELLS (per-cell checkpointing of the supernet's
 * query pass): the same objective and meta-gradient as MNAS_INNER_RECOMPUTE
 * bit for bit, for the M-NAS variants on images and on toy regression and
 * for MAML (no cells: plain recompute); training gives the same parameters
 * with 1 and 2 threads; checkpoints record the mode and refuse another by
 * name; an unknown mode is refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* Under valgrind and the sanitizers: the same code paths, fewer repetitions. */
static int slow(void) { return getenv("MNAS_TEST_UNDER_VALGRIND") || getenv("MNAS_TEST_SANITIZED"); }

typedef struct {
    mnas_ctx *ctx;
    mnas_image_dataset *ds;
    mnas_fewshot_sampler *sampler;
    mnas_regression_options ro;
    int images;
} fixture;

/* 8 classes of 8 x 8 grey images, a fixed random pattern per class plus
 * noise; 3-way 1-shot tasks with 2 queries per class. */
static void fx_init(fixture *f, int images)
{
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(mnas_ctx_create(&f->ctx, NULL), MNAS_OK);
    f->images = images;
    f->ro = (mnas_regression_options)MNAS_REGRESSION_OPTIONS_INIT;
    if (!images) return;
    enum { CLASSES = 8, PER = 3, PX = 64 };
    size_t counts[CLASSES];
    mnas_real *data = malloc(sizeof(mnas_real) * CLASSES * PER * PX);
    mnas_rng *r = mnas_rng_create(f->ctx, 7, 0);
    ck_assert(data && r);
    for (size_t c = 0; c < CLASSES; c++) {
        counts[c] = PER;
        for (size_t i = 0; i < PER; i++)
            for (size_t p = 0; p < PX; p++)
                data[(c * PER + i) * PX + p] =
                    (mnas_real)(((p * (c + 3)) % 7) / 7.0 + 0.3 * mnas_rng_uniform(r));
    }
    mnas_rng_free(r);
    f->ds = mnas_image_dataset_create(f->ctx, CLASSES, counts, NULL, 1, 8, 8, data);
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
    if (f->images) return mnas_fewshot_task(f->ctx, f->sampler, 5, index);
    return mnas_regression_task(f->ctx, &f->ro, 5, index, -1);
}

static mnas_learner_options options(const fixture *f, mnas_method m, mnas_inner_mode mode, int threads)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.inner_mode = mode;
    o.threads = threads;
    o.seed = 11;
    o.meta_batch = 3;
    o.inner_steps = 2;
    o.z_dim = 6;
    o.f_dim = 6;
    o.controller_hidden = 6;
    o.path_dropout = 0.3; /* some alpha entries are exactly 0: skipped ops */
    if (f->images) {
        o.classes = 3;
        o.in_channels = 1;
        o.image_size = m == MNAS_METHOD_MAML ? 16 : 8;
        o.filters = 3;
        o.channels = 3;
        o.nodes = 2;
        o.inner_lr = 0.1;
    } else {
        o.hidden = 8;
        o.nodes = 2;
        o.inner_lr = 0.01;
    }
    return o;
}

/* All parameters (or their gradients) of l, concatenated. */
static mnas_real *flatten(mnas_learner *l, int grads, size_t *total)
{
    mnas_params *p = mnas_learner_params(l);
    size_t n = (size_t)mnas_params_numel(p), q = 0;
    mnas_real *v = malloc(n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *t = grads ? mnas_params_grad(p, i) : mnas_params_get(p, i);
        memcpy(v + q, mnas_tensor_data(t), (size_t)mnas_tensor_size(t) * sizeof *v);
        q += (size_t)mnas_tensor_size(t);
    }
    *total = n;
    return v;
}

/* The objective and every meta-gradient of a few tasks: the same bits in
 * both modes. _i 0-2: M-NAS, M-NAS-Shared, M-NAS-NM on images (the DARTS
 * supernet, two cells); 3-6: the same and MAML on toy regression. */
START_TEST(same_bits_as_recompute)
{
    static const mnas_method ms[4] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM,
                                       MNAS_METHOD_MAML };
    if (slow() && _i != 0 && _i != 3 && _i != 6) return; /* M-NAS on both, MAML */
    fixture f;
    fx_init(&f, _i < 3);
    mnas_method m = ms[_i < 3 ? _i : _i - 3];
    mnas_learner *l[2];
    for (int k = 0; k < 2; k++) {
        mnas_learner_options o = options(&f, m, k ? MNAS_INNER_RECOMPUTE_CELLS : MNAS_INNER_RECOMPUTE, 1);
        l[k] = mnas_learner_create(f.ctx, &o);
        ck_assert_msg(l[k] != NULL, "%s", mnas_ctx_last_error(f.ctx));
    }
    for (uint64_t s = 0; s < (slow() ? 1u : 3u); s++) {
        mnas_task *t = source(&f, 40 + s);
        ck_assert_ptr_nonnull(t);
        double obj[2];
        mnas_real *g[2];
        size_t n[2];
        for (int k = 0; k < 2; k++) {
            ck_assert_msg(mnas_learner_task_objective(l[k], t, 900 + s, &obj[k], 1) == MNAS_OK, "%s",
                          mnas_ctx_last_error(f.ctx));
            g[k] = flatten(l[k], 1, &n[k]);
        }
        ck_assert(isfinite(obj[0]));
        ck_assert(obj[0] == obj[1]);
        ck_assert_uint_eq(n[0], n[1]);
        double gmax = 0;
        for (size_t q = 0; q < n[0]; q++) gmax = fmax(gmax, fabs((double)g[0][q]));
        ck_assert(gmax > 0);
        for (size_t q = 0; q < n[0]; q++)
            ck_assert_msg(memcmp(&g[0][q], &g[1][q], sizeof g[0][q]) == 0, "task %d, element %zu: %.9g vs %.9g",
                          (int)s, q, (double)g[0][q], (double)g[1][q]);
        free(g[0]);
        free(g[1]);
        mnas_task_free(t);
    }
    mnas_learner_free(l[0]);
    mnas_learner_free(l[1]);
    fx_free(&f);
}
END_TEST

/* Two meta-updates (one under valgrind): recompute on 1 thread,
 * recompute-cells on 1 and on 2 threads end with the same parameters, bit
 * for bit. */
START_TEST(training_same_bits_any_threads)
{
    fixture f;
    fx_init(&f, 1);
    mnas_real *v[3];
    size_t n[3];
    for (int k = 0; k < 3; k++) {
        mnas_learner_options o =
            options(&f, MNAS_METHOD_MNAS, k ? MNAS_INNER_RECOMPUTE_CELLS : MNAS_INNER_RECOMPUTE, k == 2 ? 2 : 1);
        mnas_learner *l = mnas_learner_create(f.ctx, &o);
        ck_assert_ptr_nonnull(l);
        ck_assert_msg(mnas_learner_train(l, source, &f, slow() ? 1 : 2, NULL, NULL) == MNAS_OK, "%s",
                      mnas_ctx_last_error(f.ctx));
        v[k] = flatten(l, 0, &n[k]);
        mnas_learner_free(l);
    }
    for (int k = 1; k < 3; k++) {
        ck_assert_uint_eq(n[0], n[k]);
        ck_assert_msg(memcmp(v[0], v[k], n[0] * sizeof *v[0]) == 0, "run %d differs", k);
    }
    /* ... and training moved them (not a trivially equal result) */
    mnas_learner_options o = options(&f, MNAS_METHOD_MNAS, MNAS_INNER_RECOMPUTE_CELLS, 1);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    size_t n0;
    mnas_real *init = flatten(l, 0, &n0);
    ck_assert(memcmp(init, v[0], n0 * sizeof *init) != 0);
    free(init);
    mnas_learner_free(l);
    for (int k = 0; k < 3; k++) free(v[k]);
    fx_free(&f);
}
END_TEST

START_TEST(checkpoint_records_the_mode)
{
    fixture f;
    fx_init(&f, 1);
    char path[64];
    snprintf(path, sizeof path, "/tmp/mnas-test-rc-%ld.ckpt", (long)getpid());
    mnas_learner_options o = options(&f, MNAS_METHOD_MNAS, MNAS_INNER_RECOMPUTE_CELLS, 1);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(mnas_learner_train(l, source, &f, 1, NULL, NULL), MNAS_OK);
    ck_assert_msg(mnas_learner_save(l, path) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_learner_options got = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(f.ctx, path, &got), MNAS_OK);
    ck_assert_int_eq(got.inner_mode, MNAS_INNER_RECOMPUTE_CELLS);
    mnas_learner *same = mnas_learner_create(f.ctx, &got);
    ck_assert_ptr_nonnull(same);
    ck_assert_msg(mnas_learner_load(same, path) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    o.inner_mode = MNAS_INNER_RECOMPUTE;
    mnas_learner *other = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(mnas_learner_load(other, path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "inner_mode"));
    unlink(path);
    mnas_learner_free(other);
    mnas_learner_free(same);
    mnas_learner_free(l);
    fx_free(&f);
}
END_TEST

START_TEST(unknown_mode_is_refused)
{
    fixture f;
    fx_init(&f, 0);
    mnas_learner_options o = options(&f, MNAS_METHOD_MNAS, (mnas_inner_mode)4, 1);
    ck_assert_ptr_null(mnas_learner_create(f.ctx, &o));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "inner_mode"));
    fx_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recompute_cells");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, same_bits_as_recompute, 0, 7);
    tcase_add_test(tc, training_same_bits_any_threads);
    tcase_add_test(tc, checkpoint_records_the_mode);
    tcase_add_test(tc, unknown_mode_is_refused);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
