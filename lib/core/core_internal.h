/* Private core: the context's layout, allocation through its hooks, error
 * reporting helpers and the bump arenas tapes draw their memory from. */
#ifndef MNAS_CORE_INTERNAL_H
#define MNAS_CORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include <mnas/core.h>

#define MNAS_MSG_MAX 512
#define MNAS_CTX_MAGIC 0x6d6e4358u /* "mnCX" */
#define MNAS_ALIGN 64

struct mnas_rng {
    uint64_t s[4];
    int has_spare;
    double spare;
    mnas_ctx *ctx; /* for messages and freeing */
    int owned;     /* 0 for the context's embedded generator */
};

struct mnas_ctx {
    uint32_t magic;
    mnas_alloc_fn alloc;
    mnas_free_fn free;
    void *alloc_user;
    mnas_log_fn log;
    void *log_user;
    int log_level;
    struct mnas_rng rng;
    pthread_mutex_t err_lock;
    char last_error[MNAS_MSG_MAX];
    /* Live blocks from mnas__alloc and live persistent tensors, for
     * mnas_ctx_free's report of leaked children (atomic: workers allocate). */
    int64_t live_allocs;
    int64_t live_tensors;
};

#if defined(__GNUC__)
#define MNAS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MNAS_LIKELY(x) __builtin_expect(!!(x), 1)
#define MNAS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define MNAS_PRINTF(a, b)
#define MNAS_LIKELY(x) (x)
#define MNAS_UNLIKELY(x) (x)
#endif

static inline int mnas__ctx_ok(const mnas_ctx *ctx) { return ctx && ctx->magic == MNAS_CTX_MAGIC; }

void *mnas__alloc(mnas_ctx *ctx, size_t size);
void *mnas__calloc(mnas_ctx *ctx, size_t n, size_t size);
void mnas__free(mnas_ctx *ctx, void *p);
/* Aligned to MNAS_ALIGN bytes through the context hooks. */
void *mnas__alloc_aligned(mnas_ctx *ctx, size_t size);
void mnas__free_aligned(mnas_ctx *ctx, void *p);

/* Record a failure on ctx (may be NULL) and return status. */
mnas_status mnas__error(mnas_ctx *ctx, mnas_status status, const char *fmt, ...) MNAS_PRINTF(3, 4);
void mnas__verror(mnas_ctx *ctx, mnas_status status, const char *fmt, va_list ap);
void mnas__set_message(mnas_ctx *ctx, const char *msg);

/* size_t multiplication with overflow detection: 0 on overflow. */
static inline int mnas__mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* ---- arenas: bump allocation in chunks, reset in O(1) ---------------- */

typedef struct mnas_arena_chunk {
    struct mnas_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, MNAS_ALIGN-aligned */
} mnas_arena_chunk;

typedef struct mnas_arena {
    mnas_ctx *ctx;
    mnas_arena_chunk *first;
    mnas_arena_chunk *cur;
    size_t min_chunk;
    size_t reserved; /* sum of chunk sizes */
    size_t high_water; /* most bytes in use at once since creation */
    size_t in_use;
} mnas_arena;

void mnas__arena_init(mnas_arena *a, mnas_ctx *ctx, size_t min_chunk);
/* MNAS_ALIGN-aligned; NULL when the context allocator fails. */
void *mnas__arena_alloc(mnas_arena *a, size_t size);
void mnas__arena_reset(mnas_arena *a);
/* A point to come back to: everything allocated after mnas__arena_mark is
 * given back by mnas__arena_rewind (for scratch that lives only during one
 * call; the chunks stay reserved for the next allocations). */
typedef struct mnas_arena_mark {
    mnas_arena_chunk *chunk;
    size_t used, in_use;
} mnas_arena_mark;
mnas_arena_mark mnas__arena_mark(const mnas_arena *a);
void mnas__arena_rewind(mnas_arena *a, mnas_arena_mark m);
void mnas__arena_release(mnas_arena *a);

/* Deterministic natural logarithm (basic IEEE operations only), used where
 * results must be identical on every platform (the RNG's normal variates). */
double mnas__det_log(double x);

void mnas__rng_seed(struct mnas_rng *r, uint64_t seed, uint64_t stream);

/* ---- worker pool ------------------------------------------------------ */

typedef struct mnas_pool mnas_pool;
typedef void (*mnas__job_fn)(void *user, size_t job, int worker);
/* nthreads workers in all: the caller of mnas__pool_run plus nthreads - 1
 * helper threads. NULL if threads or memory cannot be had. */
mnas_pool *mnas__pool_create(mnas_ctx *ctx, int nthreads);
/* Run fn(user, j, worker) for j in [0, njobs); returns when all are done.
 * worker is in [0, nthreads). Not reentrant. */
void mnas__pool_run(mnas_pool *p, size_t njobs, mnas__job_fn fn, void *user);
int mnas__pool_threads(const mnas_pool *p);
void mnas__pool_free(mnas_pool *p);

#endif /* MNAS_CORE_INTERNAL_H */
