/* A small worker pool: mnas__pool_run hands out job indices to the calling
 * thread and nthreads - 1 helpers. Which thread runs which job varies; jobs
 * write only their own results, so outcomes do not. */
#include <stdatomic.h>

#include "core/core_internal.h"

struct mnas_pool {
    mnas_ctx *ctx;
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    uint64_t generation; /* bumped per run */
    int running;         /* helpers still busy with this generation */
    int quit;
    void *args; /* helper_arg[nthreads], alive as long as the helpers */
    /* the current run */
    mnas__job_fn fn;
    void *user;
    size_t njobs;
    atomic_size_t next;
};

typedef struct {
    mnas_pool *pool;
    int id;
} helper_arg;

static void work(mnas_pool *p, int worker)
{
    for (;;) {
        size_t j = atomic_fetch_add(&p->next, 1);
        if (j >= p->njobs) break;
        p->fn(p->user, j, worker);
    }
}

static void *helper_main(void *arg)
{
    mnas_pool *p = ((helper_arg *)arg)->pool;
    int id = ((helper_arg *)arg)->id;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        work(p, id);
        pthread_mutex_lock(&p->lock);
        if (--p->running == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

mnas_pool *mnas__pool_create(mnas_ctx *ctx, int nthreads)
{
    if (nthreads < 1) nthreads = 1;
    mnas_pool *p = mnas__calloc(ctx, 1, sizeof *p);
    if (!p) return NULL;
    p->ctx = ctx;
    p->nthreads = nthreads;
    atomic_init(&p->next, 0);
    if (nthreads == 1) return p;
    helper_arg *args = mnas__calloc(ctx, (size_t)nthreads, sizeof *args);
    p->threads = mnas__calloc(ctx, (size_t)nthreads, sizeof *p->threads);
    if (!args || !p->threads) goto fail;
    if (pthread_mutex_init(&p->lock, NULL) != 0) goto fail;
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        goto fail;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        goto fail;
    }
    int started = 0;
    for (int i = 1; i < nthreads; i++) {
        args[i].pool = p;
        args[i].id = i;
        if (pthread_create(&p->threads[i], NULL, helper_main, &args[i]) != 0) break;
        started++;
    }
    if (started != nthreads - 1) {
        pthread_mutex_lock(&p->lock);
        p->quit = 1;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 1; i <= started; i++) pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        goto fail;
    }
    p->args = args;
    return p;
fail:
    mnas__free(ctx, args);
    mnas__free(ctx, p->threads);
    mnas__free(ctx, p);
    return NULL;
}

int mnas__pool_threads(const mnas_pool *p) { return p ? p->nthreads : 1; }

void mnas__pool_run(mnas_pool *p, size_t njobs, mnas__job_fn fn, void *user)
{
    if (njobs == 0) return;
    if (p->nthreads == 1 || njobs == 1) {
        for (size_t j = 0; j < njobs; j++) fn(user, j, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->user = user;
    p->njobs = njobs;
    atomic_store(&p->next, 0);
    p->running = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    work(p, 0);
    pthread_mutex_lock(&p->lock);
    while (p->running > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void mnas__pool_free(mnas_pool *p)
{
    if (!p) return;
    if (p->nthreads > 1) {
        pthread_mutex_lock(&p->lock);
        p->quit = 1;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        mnas__free(p->ctx, p->args);
        mnas__free(p->ctx, p->threads);
    }
    mnas__free(p->ctx, p);
}
