/* The learner's distribution hook (mnas_learner_set_distribution) without
 * MPI: "ranks" are threads of this process, each with its own context and
 * learner, joined by an in-process allgather. 1, 2 and 3 ranks (x 1 and 2
 * worker threads) give the parameters of a single process bit for bit for
 * the four methods on toy regression and images; evaluation splits alike; a
 * task failing on one rank fails every rank with the same status; bad
 * distributions and a failing allgather are reported. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

#include "dist_workload.h"

enum { MAXR = 4, UPDATES = 8 };

/* The in-process engine: every rank publishes its buffer, then copies the
 * other ranks' units out of theirs. */
typedef struct {
    pthread_barrier_t bar;
    int nprocs;
    void *bufs[MAXR];
    int fail_at; /* > 0: every rank's allgather number fail_at fails */
    long calls;
} fake_engine;

typedef struct {
    fake_engine *e;
    int rank;
    mnas_ctx *ctx;
    int calls;
} fake_user;

static mnas_status fake_allgather(void *user, void *data, size_t unit, const size_t *off)
{
    fake_user *u = user;
    fake_engine *e = u->e;
    e->bufs[u->rank] = data;
    pthread_barrier_wait(&e->bar);
    for (int r = 0; r < e->nprocs; r++)
        if (r != u->rank)
            memcpy((char *)data + off[r] * unit, (char *)e->bufs[r] + off[r] * unit, (off[r + 1] - off[r]) * unit);
    if (u->rank == 0) e->calls++;
    pthread_barrier_wait(&e->bar);
    if (++u->calls == e->fail_at) return mnas_ctx_set_error(u->ctx, MNAS_E_IO, "fake engine: link down");
    return MNAS_OK;
}

typedef struct {
    fake_engine *e;
    int rank, nprocs, threads, images, updates;
    mnas_method method;
    int64_t bad_task; /* >= 0: the source gives no task at this index */
    /* results */
    uint64_t hash;
    mnas_status st;
    char msg[512];
    double eval_after[40];
    mnas_status eval_st;
} rank_job;

typedef struct {
    dw_data d;
    int64_t bad_task;
} src_data;

static mnas_task *src(void *user, uint64_t index)
{
    src_data *s = user;
    if (s->bad_task >= 0 && index == (uint64_t)s->bad_task) return NULL;
    return dw_source(&s->d, index);
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    mnas_ctx *ctx;
    j->st = MNAS_E_INTERNAL;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return NULL;
    mnas_learner_options o = dw_options(j->method, j->images, j->threads);
    src_data s;
    s.bad_task = j->bad_task;
    mnas_learner *l = NULL;
    fake_user u = { j->e, j->rank, ctx, 0 };
    if (dw_init(&s.d, ctx, j->images, o.image_size) == 0 && (l = mnas_learner_create(ctx, &o)) != NULL) {
        mnas_status st = MNAS_OK;
        if (j->e) {
            mnas_distribution dist = MNAS_DISTRIBUTION_INIT;
            dist.rank = j->rank;
            dist.nprocs = j->nprocs;
            dist.allgather = fake_allgather;
            dist.user = &u;
            st = mnas_learner_set_distribution(l, &dist);
        }
        if (st == MNAS_OK) st = mnas_learner_train(l, src, &s, j->updates, NULL, NULL);
        j->st = st;
        snprintf(j->msg, sizeof j->msg, "%s", st ? mnas_ctx_last_error(ctx) : "");
        j->hash = dw_hash(l);
        if (st == MNAS_OK && !j->images) {
            mnas_task_set *test = mnas_regression_test_set(ctx, &s.d.ro, 99, 10);
            j->eval_st = test ? mnas_learner_evaluate(l, test, -1, NULL, j->eval_after) : MNAS_E_NOMEM;
            mnas_task_set_free(test);
        }
    }
    mnas_learner_free(l);
    dw_free(&s.d);
    mnas_ctx_free(ctx);
    return NULL;
}

/* Run nprocs ranks (0: one process without distribution). */
static void run_ranks(int nprocs, int threads, mnas_method m, int images, int64_t bad_task, int fail_at,
                      rank_job *jobs)
{
    fake_engine e;
    memset(&e, 0, sizeof e);
    e.nprocs = nprocs;
    e.fail_at = fail_at;
    int n = nprocs ? nprocs : 1;
    if (nprocs) ck_assert_int_eq(pthread_barrier_init(&e.bar, NULL, (unsigned)nprocs), 0);
    pthread_t th[MAXR];
    for (int r = 0; r < n; r++) {
        memset(&jobs[r], 0, sizeof jobs[r]);
        jobs[r].e = nprocs ? &e : NULL;
        jobs[r].rank = r;
        jobs[r].nprocs = n;
        jobs[r].threads = threads;
        jobs[r].images = images;
        jobs[r].updates = UPDATES;
        jobs[r].method = m;
        jobs[r].bad_task = bad_task;
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
    }
    for (int r = 0; r < n; r++) pthread_join(th[r], NULL);
    if (nprocs) {
        pthread_barrier_destroy(&e.bar);
        if (nprocs > 1 && fail_at <= 0 && bad_task < 0) ck_assert_int_gt(e.calls, 0);
    }
}

/* _i: method (0..3) x toy/images (4..7). */
START_TEST(ranks_and_threads_do_not_change_a_bit)
{
    mnas_method m = dw_methods[_i % 4];
    int images = _i >= 4;
    /* Under valgrind, the image workload of MAML only: the M-NAS variants'
     * gathers (modulator rows) are the same code on toy tasks, and their
     * image supernets cost minutes there; the plain run checks them all. */
    if (images && m != MNAS_METHOD_MAML && getenv("MNAS_TEST_UNDER_VALGRIND")) return;
    rank_job ref[1], jobs[MAXR];
    run_ranks(0, 1, m, images, -1, 0, ref);
    ck_assert_msg(ref[0].st == MNAS_OK, "%s", ref[0].msg);
    static const int cfg[][2] = { { 3, 2 }, { 2, 1 }, { 1, 1 }, { 3, 1 }, { 2, 2 } };
    /* Under valgrind (every op is ~50x slower) the hardest case only. */
    size_t ncfg = getenv("MNAS_TEST_UNDER_VALGRIND") ? 1 : sizeof cfg / sizeof cfg[0];
    for (size_t c = 0; c < ncfg; c++) {
        run_ranks(cfg[c][0], cfg[c][1], m, images, -1, 0, jobs);
        for (int r = 0; r < cfg[c][0]; r++) {
            ck_assert_msg(jobs[r].st == MNAS_OK, "%s", jobs[r].msg);
            ck_assert_msg(jobs[r].hash == ref[0].hash, "%s %s: %d ranks x %d threads, rank %d differs",
                          mnas_method_name(m), images ? "images" : "toy", cfg[c][0], cfg[c][1], r);
            if (!images) {
                ck_assert_int_eq(jobs[r].eval_st, MNAS_OK);
                ck_assert_mem_eq(jobs[r].eval_after, ref[0].eval_after, sizeof ref[0].eval_after);
            }
        }
    }
}
END_TEST

START_TEST(a_failing_task_fails_every_rank)
{
    /* Task 11 is task 1 of the third meta-update (5 tasks each): rank 1's
     * of 3 (tasks [5*1/3, 5*2/3) = [1, 3)). */
    rank_job jobs[MAXR];
    run_ranks(3, 1, MNAS_METHOD_MNAS, 0, 11, 0, jobs);
    for (int r = 0; r < 3; r++) {
        ck_assert_int_eq(jobs[r].st, MNAS_E_INVALID);
        ck_assert_msg(strstr(jobs[r].msg, "gave no task 11") != NULL, "rank %d: %s", r, jobs[r].msg);
        ck_assert_uint_eq(jobs[r].hash, jobs[0].hash);
    }
}
END_TEST

START_TEST(a_failing_allgather_is_reported)
{
    rank_job jobs[MAXR];
    /* The engine fails the fifth gather on every rank (as MPI reports a
     * failed collective): each rank returns it with the engine's message. */
    run_ranks(2, 1, MNAS_METHOD_MAML, 0, -1, 5, jobs);
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(jobs[r].st, MNAS_E_IO);
        ck_assert_msg(strstr(jobs[r].msg, "link down") != NULL, "%s", jobs[r].msg);
    }
    ck_assert_msg(strstr(jobs[1].msg, "rank 1 of 2") != NULL, "%s", jobs[1].msg);
}
END_TEST

START_TEST(bad_distributions_are_refused)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_learner_options o = dw_options(MNAS_METHOD_MAML, 0, 1);
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_ptr_nonnull(l);
    mnas_distribution d = MNAS_DISTRIBUTION_INIT;
    d.nprocs = 2;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_E_INVALID); /* no allgather */
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "allgather"));
    d.allgather = fake_allgather;
    d.rank = 2;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "rank 2 of 2"));
    d.rank = -1;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_E_INVALID);
    d.rank = 0;
    d.nprocs = 0;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_E_INVALID);
    d.nprocs = 2;
    d.struct_size = 1;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_rank(l), 0);
    size_t a, b;
    ck_assert_int_eq(mnas_learner_task_range(l, 5, &a, &b), MNAS_OK);
    ck_assert_uint_eq(a, 0);
    ck_assert_uint_eq(b, 5);
    ck_assert_int_eq(mnas_learner_task_range(l, 5, NULL, &b), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_task_range(NULL, 5, &a, &b), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_set_distribution(NULL, &d), MNAS_E_INVALID);
    /* A valid one: the ranges of rank 1 of 3 over 5 and 7 tasks. */
    d.struct_size = sizeof d;
    d.nprocs = 3;
    d.rank = 1;
    ck_assert_int_eq(mnas_learner_set_distribution(l, &d), MNAS_OK);
    ck_assert_int_eq(mnas_learner_rank(l), 1);
    ck_assert_int_eq(mnas_learner_task_range(l, 5, &a, &b), MNAS_OK);
    ck_assert_uint_eq(a, 1);
    ck_assert_uint_eq(b, 3);
    ck_assert_int_eq(mnas_learner_task_range(l, 7, &a, &b), MNAS_OK);
    ck_assert_uint_eq(a, 2);
    ck_assert_uint_eq(b, 4);
    /* Back to one process. */
    ck_assert_int_eq(mnas_learner_set_distribution(l, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_learner_task_range(l, 7, &a, &b), MNAS_OK);
    ck_assert_uint_eq(b - a, 7);
    /* mnas_ctx_set_error: the message, or the status's description. */
    ck_assert_int_eq(mnas_ctx_set_error(ctx, MNAS_E_IO, "engine says no"), MNAS_E_IO);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "engine says no");
    ck_assert_int_eq(mnas_ctx_set_error(ctx, MNAS_E_IO, NULL), MNAS_E_IO);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), mnas_status_str(MNAS_E_IO));
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("distribution");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, ranks_and_threads_do_not_change_a_bit, 0, 8);
    tcase_add_test(tc, a_failing_task_fails_every_rank);
    tcase_add_test(tc, a_failing_allgather_is_reported);
    tcase_add_test(tc, bad_distributions_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
