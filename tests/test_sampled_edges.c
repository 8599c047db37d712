/* Sampled mixed edges (learner option sample_ops) and the skipping of ops
 * whose mixing weight is exactly zero: bad values are refused with a
 * message naming the option; threads do not change a bit; k = the number
 * of ops is the full supernet, bit for bit; the architecture parameters
 * still get gradients; checkpoints record the option; skipped zero-weight
 * ops give the same bits as evaluating them. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* 8 classes of s x s grey images: a class is a random pattern plus noise. */
typedef struct {
    mnas_ctx *ctx;
    mnas_image_dataset *ds;
    mnas_fewshot_sampler *sampler;
} fixture;

static void fx_init(fixture *f, int s)
{
    ck_assert_int_eq(mnas_ctx_create(&f->ctx, NULL), MNAS_OK);
    enum { CLASSES = 8, PER = 4 };
    size_t counts[CLASSES];
    size_t px = (size_t)s * (size_t)s;
    mnas_real *data = malloc(CLASSES * PER * px * sizeof *data);
    ck_assert_ptr_nonnull(data);
    mnas_rng *r = mnas_rng_create(f->ctx, 8, 0);
    ck_assert_ptr_nonnull(r);
    for (size_t c = 0; c < CLASSES; c++) {
        counts[c] = PER;
        for (size_t i = 0; i < PER; i++)
            for (size_t p = 0; p < px; p++)
                data[(c * PER + i) * px + p] = (mnas_real)((c * 7 + p * 3) % 5) * 0.2f +
                                               (mnas_real)(0.3 * (mnas_rng_uniform(r) - 0.5));
    }
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
    return mnas_fewshot_task(f->ctx, f->sampler, 41, index);
}

static const mnas_method methods[3] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM };

static mnas_learner_options small_options(mnas_method m, int threads, int64_t k)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.classes = 3;
    o.in_channels = 1;
    o.image_size = 8;
    o.channels = 4;
    o.nodes = 2;
    o.meta_batch = 3; /* not a multiple of the thread count */
    o.inner_steps = 2;
    o.inner_lr = 0.1;
    o.outer_lr = 0.01;
    o.arch_lr = 0.01;
    o.z_dim = 8;
    o.f_dim = 8;
    o.controller_hidden = 8;
    o.threads = threads;
    o.seed = 5;
    o.sample_ops = k;
    return o;
}

START_TEST(bad_values_are_refused)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    const int64_t bad[3] = { -1, 9, 1000000 };
    for (int i = 0; i < 3; i++) {
        mnas_learner_options o = small_options(MNAS_METHOD_MNAS, 1, bad[i]);
        mnas_learner *l = mnas_learner_create(ctx, &o);
        ck_assert_ptr_null(l);
        ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "sample_ops") != NULL, "%s", mnas_ctx_last_error(ctx));
    }
    /* The MLP space has 3 ops. */
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = MNAS_METHOD_MNAS;
    o.sample_ops = 4;
    ck_assert_ptr_null(mnas_learner_create(ctx, &o));
    ck_assert(strstr(mnas_ctx_last_error(ctx), "sample_ops") != NULL);
    o.sample_ops = 3;
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(ctx));
    mnas_learner_free(l);
    /* MAML has no mixed edges. */
    o.method = MNAS_METHOD_MAML;
    o.sample_ops = 1;
    ck_assert_ptr_null(mnas_learner_create(ctx, &o));
    ck_assert(strstr(mnas_ctx_last_error(ctx), "sample_ops") != NULL);
    mnas_ctx_free(ctx);
}
END_TEST

static size_t train_copy(mnas_method m, int threads, int64_t k, int iters, mnas_real *out, size_t cap)
{
    fixture f;
    mnas_learner_options o = small_options(m, threads, k);
    fx_init(&f, o.image_size);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_msg(mnas_learner_train(l, source, &f, iters, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_params *p = mnas_learner_params(l);
    size_t n = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *w = mnas_params_get(p, i);
        size_t sz = (size_t)mnas_tensor_size(w);
        ck_assert_uint_le(n + sz, cap);
        memcpy(out + n, mnas_tensor_data(w), sz * sizeof(mnas_real));
        n += sz;
    }
    mnas_learner_free(l);
    fx_free(&f);
    return n;
}

/* _i: method (0..2) x k in {1, 2}. */
START_TEST(threads_give_identical_bits)
{
    enum { CAP = 1 << 20 };
    mnas_real *a = malloc(CAP * sizeof *a), *b = malloc(CAP * sizeof *b), *c = malloc(CAP * sizeof *c);
    ck_assert(a && b && c);
    mnas_method m = methods[_i % 3];
    int64_t k = 1 + _i / 3;
    size_t na = train_copy(m, 1, k, 2, a, CAP), nb = train_copy(m, 2, k, 2, b, CAP);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, na * sizeof *a) == 0, "%s k=%lld: 1 and 2 threads differ", mnas_method_name(m),
                  (long long)k);
    /* And sampling does change training: the full supernet differs. */
    size_t nc = train_copy(m, 1, 0, 2, c, CAP);
    ck_assert_uint_eq(na, nc);
    ck_assert(memcmp(a, c, na * sizeof *a) != 0);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* The objective and every gradient of one task, into obj and g. */
static size_t objective_and_grad(mnas_learner *l, const mnas_task *t, double *obj, double *g, size_t cap)
{
    ck_assert_int_eq(mnas_learner_task_objective(l, t, 77, obj, 1), MNAS_OK);
    mnas_params *p = mnas_learner_params(l);
    size_t n = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *gr = mnas_params_grad(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(gr); j++) {
            ck_assert_uint_lt(n, cap);
            g[n++] = (double)mnas_tensor_data(gr)[j];
        }
    }
    return n;
}

START_TEST(all_ops_is_the_full_supernet)
{
    enum { CAP = 1 << 20 };
    double *g0 = malloc(CAP * sizeof *g0), *g8 = malloc(CAP * sizeof *g8);
    ck_assert(g0 && g8);
    fixture f;
    fx_init(&f, 8);
    mnas_task *t = source(&f, 3);
    ck_assert_ptr_nonnull(t);
    mnas_learner_options o0 = small_options(methods[_i], 1, 0), o8 = small_options(methods[_i], 1, 8);
    mnas_learner *l0 = mnas_learner_create(f.ctx, &o0), *l8 = mnas_learner_create(f.ctx, &o8);
    ck_assert(l0 && l8);
    double f0, f8;
    size_t n0 = objective_and_grad(l0, t, &f0, g0, CAP), n8 = objective_and_grad(l8, t, &f8, g8, CAP);
    ck_assert_uint_eq(n0, n8);
    ck_assert(memcmp(&f0, &f8, sizeof f0) == 0);
    ck_assert(memcmp(g0, g8, n0 * sizeof *g0) == 0);
    /* Evaluation too. */
    mnas_task_set *set = mnas_fewshot_test_set(f.ctx, f.sampler, 99, 3);
    ck_assert_ptr_nonnull(set);
    double a0[3], a8[3];
    ck_assert_int_eq(mnas_learner_evaluate(l0, set, -1, NULL, a0), MNAS_OK);
    ck_assert_int_eq(mnas_learner_evaluate(l8, set, -1, NULL, a8), MNAS_OK);
    ck_assert(memcmp(a0, a8, sizeof a0) == 0);
    mnas_task_set_free(set);
    mnas_learner_free(l0);
    mnas_learner_free(l8);
    mnas_task_free(t);
    fx_free(&f);
    free(g0);
    free(g8);
}
END_TEST

/* k = 1: the architecture parameters (controller, or the shared alpha)
 * receive non-zero gradients, and the objective differs from the full
 * supernet's (fewer ops). */
START_TEST(gradients_reach_the_architecture)
{
    fixture f;
    fx_init(&f, 8);
    mnas_task *t = source(&f, 5);
    ck_assert_ptr_nonnull(t);
    mnas_learner_options o = small_options(methods[_i], 1, 1), o0 = small_options(methods[_i], 1, 0);
    o.path_dropout = o0.path_dropout = 0;
    mnas_learner *l = mnas_learner_create(f.ctx, &o), *l0 = mnas_learner_create(f.ctx, &o0);
    ck_assert(l && l0);
    double obj, obj0;
    ck_assert_int_eq(mnas_learner_task_objective(l0, t, 9, &obj0, 0), MNAS_OK);
    ck_assert_int_eq(mnas_learner_task_objective(l, t, 9, &obj, 1), MNAS_OK);
    ck_assert(isfinite(obj));
    ck_assert(obj != obj0);
    mnas_params *p = mnas_learner_params(l);
    size_t arch_nonzero = 0, arch_total = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const char *name = mnas_params_name(p, i);
        if (strncmp(name, "ctl.", 4) && strncmp(name, "arch.", 5)) continue;
        mnas_tensor *g = mnas_params_grad(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(g); j++) {
            arch_total++;
            ck_assert(isfinite(mnas_tensor_data(g)[j]));
            if (mnas_tensor_data(g)[j] != 0) arch_nonzero++;
        }
    }
    ck_assert_uint_gt(arch_total, 0);
    /* Through the softmax every logit of an edge gets a share. */
    ck_assert_msg(arch_nonzero * 2 > arch_total, "%zu of %zu architecture gradients are non-zero", arch_nonzero,
                  arch_total);
    mnas_learner_free(l);
    mnas_learner_free(l0);
    mnas_task_free(t);
    fx_free(&f);
}
END_TEST

START_TEST(checkpoint_records_the_option)
{
    fixture f;
    fx_init(&f, 8);
    char path[64];
    snprintf(path, sizeof path, "sampled_edges_%d.ckpt", (int)getpid());
    mnas_learner_options o = small_options(MNAS_METHOD_MNAS, 1, 2);
    mnas_learner *l = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(mnas_learner_train(l, source, &f, 1, NULL, NULL), MNAS_OK);
    ck_assert_msg(mnas_learner_save(l, path) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(f.ctx, path, &r), MNAS_OK);
    ck_assert_int_eq(r.sample_ops, 2);
    /* The same options load; another sample_ops is refused by name. */
    mnas_learner *same = mnas_learner_create(f.ctx, &r);
    ck_assert_ptr_nonnull(same);
    ck_assert_msg(mnas_learner_load(same, path) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_int_eq(mnas_learner_iteration(same), 1);
    o.sample_ops = 0;
    mnas_learner *other = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(mnas_learner_load(other, path), MNAS_E_MISMATCH);
    ck_assert_msg(strstr(mnas_ctx_last_error(f.ctx), "sample_ops") != NULL, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_int_eq(mnas_learner_iteration(other), 0);
    remove(path);
    mnas_learner_free(other);
    mnas_learner_free(same);
    mnas_learner_free(l);
    fx_free(&f);
}
END_TEST

/* The supernet with an alpha that has exact zeros: evaluated with every op
 * (alpha requires a gradient) and with the zero-weight ops skipped (alpha
 * is a constant) gives the same bits. */
START_TEST(zero_weight_skip_is_bit_identical)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_search_space *sp = mnas_search_space_darts(ctx);
    mnas_supernet *net = mnas_supernet_create_conv(sp, 1, 4, 2, 3);
    ck_assert_ptr_nonnull(net);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_supernet_add_params(net, p, "n.", 0), 0);
    mnas_rng *r = mnas_rng_create(ctx, 3, 0);
    mnas_params_init(p, r);
    size_t rows = mnas_supernet_alpha_rows(net), ops = mnas_search_space_num_ops(sp);
    mnas_real *av = malloc(rows * ops * sizeof *av);
    ck_assert_ptr_nonnull(av);
    for (size_t i = 0; i < rows * ops; i++)
        av[i] = mnas_rng_uniform(r) < 0.6 ? 0 : (mnas_real)(0.1 + mnas_rng_uniform(r));
    int64_t xs[4] = { 3, 1, 8, 8 }, as[2] = { (int64_t)rows, (int64_t)ops };
    mnas_real xv[3 * 64];
    for (int i = 0; i < 3 * 64; i++) xv[i] = (mnas_real)(mnas_rng_uniform(r) - 0.5);
    mnas_real out[2][9];
    size_t nodes[2];
    for (int pass = 0; pass < 2; pass++) {
        mnas_tape *tp;
        ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
        mnas_tensor *x = mnas_tape_tensor(tp, 4, xs, xv), *a = mnas_tape_tensor(tp, 2, as, av);
        ck_assert(x && a);
        if (pass == 0) ck_assert_int_eq(mnas_tensor_set_requires_grad(a, 1), MNAS_OK);
        mnas_tensor *y = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), a);
        ck_assert_msg(y != NULL, "%s", mnas_ctx_last_error(ctx));
        ck_assert_int_eq(mnas_tensor_size(y), 9);
        memcpy(out[pass], mnas_tensor_data(y), sizeof out[pass]);
        nodes[pass] = mnas_tape_num_nodes(tp);
        mnas_tape_free(tp);
    }
    ck_assert(memcmp(out[0], out[1], sizeof out[0]) == 0);
    /* The constant alpha records nothing; the first pass did record. */
    ck_assert_uint_gt(nodes[0], nodes[1]);
    free(av);
    mnas_rng_free(r);
    mnas_params_free(p);
    mnas_supernet_free(net);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    int slow = getenv("MNAS_TEST_UNDER_VALGRIND") != NULL;
    Suite *s = suite_create("sampled_edges");
    TCase *tc = tcase_create("sampled_edges");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, bad_values_are_refused);
    tcase_add_loop_test(tc, threads_give_identical_bits, 0, slow ? 1 : 6);
    tcase_add_loop_test(tc, all_ops_is_the_full_supernet, 0, slow ? 1 : 3);
    tcase_add_loop_test(tc, gradients_reach_the_architecture, 0, 3);
    tcase_add_test(tc, checkpoint_records_the_option);
    tcase_add_test(tc, zero_weight_skip_is_bit_identical);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
