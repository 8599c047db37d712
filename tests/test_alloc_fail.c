/* Allocation-failure injection: through the context's allocator hooks, fail
 * the n-th allocation for every n over a representative workload (context
 * and learner creation, a training step of M-NAS and of MAML, a checkpoint
 * save and load, second-order tape ops). Every failure must be reported
 * (MNAS_E_NOMEM, or NULL with a message), leak nothing (the hooks count live
 * blocks), and leave the objects usable: the rest of the workload, rerun
 * from the failing call with a working allocator, gives bit-identical
 * results to a run without failures.
 *
 * The number of injection points and of distinct call stacks (4 frames
 * above the hook) is printed; MNAS_ALLOC_SWEEP_STRIDE=k tests every k-th n
 * (the valgrind run uses a stride, native and ASan runs test every n). */
#include <check.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* ---- the failing allocator ---------------------------------------------------- */

#define MAX_SITES 4096
#define SITE_FRAMES 4

typedef struct {
    pthread_mutex_t lock;
    long count;     /* allocations so far */
    long fail_at;   /* fail allocation number fail_at (1-based); 0: never */
    long failures;  /* injected failures */
    long live;      /* blocks not yet freed */
    int record;     /* record the call stack of the injected failure */
    void *site[SITE_FRAMES];
} alloc_state;

static void *hook_alloc(void *user, size_t size)
{
    alloc_state *s = user;
    pthread_mutex_lock(&s->lock);
    long n = ++s->count;
    int fail = s->fail_at && n == s->fail_at;
    if (fail) s->failures++;
    pthread_mutex_unlock(&s->lock);
    if (fail) {
        if (s->record) {
            void *frames[SITE_FRAMES + 2];
            int k = backtrace(frames, SITE_FRAMES + 2);
            memset(s->site, 0, sizeof s->site);
            for (int i = 1; i < k && i <= SITE_FRAMES; i++) s->site[i - 1] = frames[i];
        }
        return NULL;
    }
    void *p = malloc(size);
    if (p) {
        pthread_mutex_lock(&s->lock);
        s->live++;
        pthread_mutex_unlock(&s->lock);
    }
    return p;
}

static void hook_free(void *user, void *p)
{
    alloc_state *s = user;
    pthread_mutex_lock(&s->lock);
    s->live--;
    pthread_mutex_unlock(&s->lock);
    free(p);
}

/* ---- the workload ---------------------------------------------------------------- */

typedef struct {
    alloc_state a;
    mnas_ctx *ctx;
    mnas_learner *mnas, *maml, *loaded;
    mnas_task *tasks[3];
    mnas_tape *tape;
    mnas_tensor *x, *w;
    double loss_mnas, loss_maml, tape_value;
    mnas_real tape_grad[12];
    char path[256];
} work;

static mnas_learner_options tiny(mnas_method m)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.seed = 5;
    o.meta_batch = 3;
    o.inner_steps = 2;
    o.hidden = 4;
    o.layers = 2;
    o.z_dim = 3;
    o.f_dim = 3;
    o.controller_hidden = 4;
    o.threads = 1;
    o.inner_lr = 0.01;
    return o;
}

/* Phases: each returns MNAS_OK or the failure's status (MNAS_E_NOMEM for
 * handle-returning calls that gave NULL). A failed phase must be rerunnable. */
enum { PH_CTX, PH_TASKS, PH_LEARNERS, PH_STEP_MNAS, PH_STEP_MAML, PH_SAVE, PH_LOAD_LEARNER, PH_LOAD, PH_TAPE, PH_N };

static mnas_status phase(work *w, int ph)
{
    switch (ph) {
    case PH_CTX: {
        mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
        co.alloc = hook_alloc;
        co.free = hook_free;
        co.alloc_user = &w->a;
        co.seed = 3;
        return mnas_ctx_create(&w->ctx, &co);
    }
    case PH_TASKS: {
        mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
        ro.k_shot = 5;
        ro.k_query = 5;
        for (int i = 0; i < 3; i++) {
            if (w->tasks[i]) continue;
            w->tasks[i] = mnas_regression_task(w->ctx, &ro, 11, (uint64_t)i, -1);
            if (!w->tasks[i]) return MNAS_E_NOMEM;
        }
        return MNAS_OK;
    }
    case PH_LEARNERS: {
        mnas_learner_options o = tiny(MNAS_METHOD_MNAS);
        if (!w->mnas && !(w->mnas = mnas_learner_create(w->ctx, &o))) return MNAS_E_NOMEM;
        o = tiny(MNAS_METHOD_MAML);
        if (!w->maml && !(w->maml = mnas_learner_create(w->ctx, &o))) return MNAS_E_NOMEM;
        return MNAS_OK;
    }
    case PH_STEP_MNAS: return mnas_learner_step(w->mnas, (const mnas_task *const *)w->tasks, 3, &w->loss_mnas);
    case PH_STEP_MAML: return mnas_learner_step(w->maml, (const mnas_task *const *)w->tasks, 3, &w->loss_maml);
    case PH_SAVE: return mnas_learner_save(w->mnas, w->path);
    case PH_LOAD_LEARNER: {
        mnas_learner_options o = tiny(MNAS_METHOD_MNAS);
        if (!w->loaded && !(w->loaded = mnas_learner_create(w->ctx, &o))) return MNAS_E_NOMEM;
        return MNAS_OK;
    }
    case PH_LOAD: return mnas_learner_load(w->loaded, w->path);
    case PH_TAPE: {
        /* y = sum(tanh(x W^T)^2); g = dy/dW with create_graph; z = sum(g^2);
         * dz/dW: a second-order gradient. */
        int64_t xs[2] = { 4, 3 }, ws[2] = { 4, 3 };
        if (!w->tape && mnas_tape_create(w->ctx, &w->tape) != MNAS_OK) return MNAS_E_NOMEM;
        if (!w->x) {
            static const mnas_real xv[12] = { 0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, -0.9f, 1.0f, 1.1f, 1.2f };
            if (!(w->x = mnas_tensor_from_data(w->ctx, 2, xs, xv))) return MNAS_E_NOMEM;
        }
        if (!w->w) {
            static const mnas_real wv[12] = { 0.3f, 0.1f, -0.2f, 0.05f, 0.4f, 0.2f, -0.3f, 0.1f, 0.2f, 0.1f, -0.1f, 0.25f };
            if (!(w->w = mnas_tensor_from_data(w->ctx, 2, ws, wv))) return MNAS_E_NOMEM;
            if (mnas_tensor_set_requires_grad(w->w, 1) != MNAS_OK) return MNAS_E_INTERNAL;
        }
        mnas_tape *tp = w->tape;
        mnas_tape_reset(tp);
        mnas_tensor *y = mnas_sum(tp, mnas_square(tp, mnas_tanh(tp, mnas_linear(tp, w->x, w->w, NULL))));
        mnas_tensor *g = NULL, *h = NULL;
        mnas_status st = y ? mnas_grad(tp, y, 1, &w->w, &g, 1) : mnas_tape_status(tp);
        mnas_tensor *z = st == MNAS_OK ? mnas_sum(tp, mnas_square(tp, g)) : NULL;
        if (st == MNAS_OK && !z) st = mnas_tape_status(tp);
        if (st == MNAS_OK) st = mnas_grad(tp, z, 1, &w->w, &h, 0);
        if (st == MNAS_OK) {
            w->tape_value = mnas_tensor_item(z);
            memcpy(w->tape_grad, mnas_tensor_data(h), sizeof w->tape_grad);
        }
        mnas_tape_reset(tp);
        return st;
    }
    }
    return MNAS_E_INTERNAL;
}

static void work_free(work *w)
{
    mnas_tensor_free(w->x);
    mnas_tensor_free(w->w);
    mnas_tape_free(w->tape);
    for (int i = 0; i < 3; i++) mnas_task_free(w->tasks[i]);
    mnas_learner_free(w->mnas);
    mnas_learner_free(w->maml);
    mnas_learner_free(w->loaded);
    mnas_ctx_free(w->ctx);
    unlink(w->path);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", w->path);
    unlink(tmp);
}

/* Everything the workload computes, flattened, for bitwise comparison. */
static size_t fingerprint(const work *w, unsigned char *out, size_t cap)
{
    size_t k = 0;
#define PUT(ptr, n)                            \
    do {                                       \
        ck_assert_uint_le(k + (n), cap);       \
        memcpy(out + k, (ptr), (n));           \
        k += (n);                              \
    } while (0)
    const mnas_learner *ls[3] = { w->mnas, w->maml, w->loaded };
    for (int j = 0; j < 3; j++) {
        mnas_params *p = mnas_learner_params(ls[j]);
        for (size_t i = 0; i < mnas_params_count(p); i++) {
            mnas_tensor *t = mnas_params_get(p, i);
            PUT(mnas_tensor_data(t), (size_t)mnas_tensor_size(t) * sizeof(mnas_real));
        }
        int64_t it = mnas_learner_iteration(ls[j]);
        PUT(&it, sizeof it);
    }
    PUT(&w->loss_mnas, sizeof(double));
    PUT(&w->loss_maml, sizeof(double));
    PUT(&w->tape_value, sizeof(double));
    PUT(w->tape_grad, sizeof w->tape_grad);
#undef PUT
    return k;
}

static void work_init(work *w, int id)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->a.lock, NULL);
    snprintf(w->path, sizeof w->path, "/tmp/mnas-allocfail-%ld-%d.ckpt", (long)getpid(), id);
}

#define FP_CAP (1 << 20)

START_TEST(fail_every_allocation)
{
    static unsigned char ref[FP_CAP], got[FP_CAP];
    /* Reference run and allocation count. */
    work w;
    work_init(&w, 0);
    for (int ph = 0; ph < PH_N; ph++) ck_assert_msg(phase(&w, ph) == MNAS_OK, "reference phase %d failed", ph);
    size_t nref = fingerprint(&w, ref, FP_CAP);
    long total = w.a.count;
    work_free(&w);
    ck_assert_int_eq(w.a.live, 0);
    pthread_mutex_destroy(&w.a.lock);

    const char *stride_s = getenv("MNAS_ALLOC_SWEEP_STRIDE");
    long stride = stride_s ? strtol(stride_s, NULL, 10) : 1;
    if (stride < 1) stride = 1;
    static void *sites[MAX_SITES][SITE_FRAMES];
    size_t nsites = 0;
    long tested = 0, failed_calls = 0, per_phase[PH_N] = { 0 };
    for (long n = 1; n <= total; n += stride) {
        work_init(&w, (int)(n % 1000));
        w.a.fail_at = n;
        w.a.record = 1;
        int failed_phase = -1;
        for (int ph = 0; ph < PH_N; ph++) {
            mnas_status st = phase(&w, ph);
            if (st == MNAS_OK) continue;
            ck_assert_msg(w.a.failures == 1, "n=%ld: phase %d failed (%d: %s) without an injected failure", n, ph, st,
                          w.ctx ? mnas_ctx_last_error(w.ctx) : "");
            ck_assert_msg(st == MNAS_E_NOMEM, "n=%ld: phase %d reported %d (%s), not MNAS_E_NOMEM", n, ph, st,
                          w.ctx ? mnas_ctx_last_error(w.ctx) : "no context");
            if (w.ctx) ck_assert_msg(mnas_ctx_last_error(w.ctx)[0] != '\0', "n=%ld: phase %d left no message", n, ph);
            failed_phase = ph;
            /* Rerun the failing call and the rest with a working allocator. */
            w.a.fail_at = 0;
            st = phase(&w, ph);
            ck_assert_msg(st == MNAS_OK, "n=%ld: phase %d fails again after the injected failure (%d: %s)", n, ph, st,
                          w.ctx ? mnas_ctx_last_error(w.ctx) : "");
        }
        ck_assert_msg(w.a.failures == 1, "n=%ld: the injected failure was not hit (%ld allocations)", n, w.a.count);
        /* An allocation failure the library absorbed (a fallback) is fine
         * as long as the results stay the same. */
        if (failed_phase >= 0) {
            failed_calls++;
            per_phase[failed_phase]++;
        }
        size_t ngot = fingerprint(&w, got, FP_CAP);
        ck_assert_msg(ngot == nref && memcmp(got, ref, nref) == 0,
                      "n=%ld: results differ from the run without failures (failure in phase %d)", n, failed_phase);
        work_free(&w);
        ck_assert_msg(w.a.live == 0, "n=%ld: %ld blocks leaked (failure in phase %d)", n, w.a.live, failed_phase);
        pthread_mutex_destroy(&w.a.lock);
        size_t s = 0;
        for (; s < nsites; s++)
            if (!memcmp(sites[s], w.a.site, sizeof w.a.site)) break;
        if (s == nsites && nsites < MAX_SITES) memcpy(sites[nsites++], w.a.site, sizeof w.a.site);
        tested++;
    }
    printf("alloc-failure sweep: %ld allocations in the workload, %ld injected failures (stride %ld), "
           "%ld reported by the failing call, %zu distinct call stacks; 0 crashes, 0 leaks, identical results\n",
           total, tested, stride, failed_calls, nsites);
    static const char *names[PH_N] = { "ctx", "tasks", "learners", "step M-NAS", "step MAML",
                                       "save", "learner for load", "load", "tape ops" };
    printf("  failures per phase:");
    for (int ph = 0; ph < PH_N; ph++) printf(" %s %ld%s", names[ph], per_phase[ph], ph + 1 < PH_N ? "," : "\n");
    fflush(stdout);
}
END_TEST

int main(void)
{
    void *warm[4];
    backtrace(warm, 4); /* load the unwinder before the sweep */
    if (getenv("MNAS_TEST_UNDER_VALGRIND") && !getenv("MNAS_ALLOC_SWEEP_STRIDE"))
        setenv("MNAS_ALLOC_SWEEP_STRIDE", "5", 1);
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, fail_every_allocation);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
