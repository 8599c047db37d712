/* The context: allocator hooks, the log sink, the last error message and the
 * context's random number generator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"

static void *default_alloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}

static void default_free(void *user, void *p)
{
    (void)user;
    free(p);
}

mnas_status mnas_ctx_create(mnas_ctx **out, const mnas_ctx_options *opts)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    if (!out) return MNAS_E_INVALID;
    *out = NULL;
    if (opts) {
        /* Accept older, smaller option structs: copy what the caller has. */
        if (opts->struct_size < offsetof(mnas_ctx_options, alloc) ||
            opts->struct_size > sizeof(mnas_ctx_options) * 4)
            return MNAS_E_INVALID;
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
        o.struct_size = sizeof o;
    }
    if ((o.alloc == NULL) != (o.free == NULL)) return MNAS_E_INVALID;
    if (o.log_level < MNAS_LOG_ERROR || o.log_level > MNAS_LOG_DEBUG) return MNAS_E_INVALID;
    if (!o.alloc) {
        o.alloc = default_alloc;
        o.free = default_free;
    }
    mnas_ctx *ctx = o.alloc(o.alloc_user, sizeof *ctx);
    if (!ctx) return MNAS_E_NOMEM;
    memset(ctx, 0, sizeof *ctx);
    if (pthread_mutex_init(&ctx->err_lock, NULL) != 0) {
        o.free(o.alloc_user, ctx);
        return MNAS_E_NOMEM;
    }
    ctx->magic = MNAS_CTX_MAGIC;
    ctx->alloc = o.alloc;
    ctx->free = o.free;
    ctx->alloc_user = o.alloc_user;
    ctx->log = o.log;
    ctx->log_user = o.log_user;
    ctx->log_level = o.log_level;
    mnas__rng_seed(&ctx->rng, o.seed, 0);
    ctx->rng.ctx = ctx;
    ctx->rng.owned = 0;
    *out = ctx;
    return MNAS_OK;
}

int64_t mnas_ctx_live_allocations(const mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return -1;
    return __atomic_load_n(&ctx->live_allocs, __ATOMIC_RELAXED);
}

int64_t mnas_ctx_live_tensors(const mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return -1;
    return __atomic_load_n(&ctx->live_tensors, __ATOMIC_RELAXED);
}

void mnas_ctx_free(mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return;
    /* Children still alive are the caller's leak (or a use-after-free to
     * come): say so through the log rather than silently. */
    int64_t blocks = mnas_ctx_live_allocations(ctx), tensors = mnas_ctx_live_tensors(ctx);
    if (blocks > 0) {
        char msg[192];
        snprintf(msg, sizeof msg,
                 "mnas_ctx_free: %lld allocation(s) still live, %lld of them persistent tensors: free every "
                 "tensor, tape and object made from the context first",
                 (long long)blocks, (long long)tensors);
        mnas_ctx_log(ctx, MNAS_LOG_ERROR, msg);
    }
    ctx->magic = 0;
    pthread_mutex_destroy(&ctx->err_lock);
    mnas_free_fn f = ctx->free;
    void *u = ctx->alloc_user;
    f(u, ctx);
}

const char *mnas_ctx_last_error(const mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return "invalid context";
    return ctx->last_error;
}

void mnas_ctx_clear_error(mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return;
    pthread_mutex_lock(&ctx->err_lock);
    ctx->last_error[0] = '\0';
    pthread_mutex_unlock(&ctx->err_lock);
}

void mnas_ctx_log(mnas_ctx *ctx, mnas_log_level level, const char *message)
{
    if (!mnas__ctx_ok(ctx) || !ctx->log || !message) return;
    if ((int)level > ctx->log_level) return;
    ctx->log(ctx->log_user, level, message);
}

void *mnas__alloc(mnas_ctx *ctx, size_t size)
{
    if (size == 0) size = 1;
    void *p = ctx->alloc(ctx->alloc_user, size);
    if (p) __atomic_add_fetch(&ctx->live_allocs, 1, __ATOMIC_RELAXED);
    return p;
}

void *mnas__calloc(mnas_ctx *ctx, size_t n, size_t size)
{
    size_t bytes;
    if (!mnas__mul_ok(n, size, &bytes)) return NULL;
    void *p = mnas__alloc(ctx, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void mnas__free(mnas_ctx *ctx, void *p)
{
    if (!p) return;
    __atomic_sub_fetch(&ctx->live_allocs, 1, __ATOMIC_RELAXED);
    ctx->free(ctx->alloc_user, p);
}

/* The hooks promise malloc alignment only; tensor data wants MNAS_ALIGN, so
 * over-allocate and keep the original pointer just below the aligned one. */
void *mnas__alloc_aligned(mnas_ctx *ctx, size_t size)
{
    if (size > SIZE_MAX - MNAS_ALIGN - sizeof(void *)) return NULL;
    unsigned char *raw = mnas__alloc(ctx, size + MNAS_ALIGN + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + (MNAS_ALIGN - 1)) & ~(uintptr_t)(MNAS_ALIGN - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void mnas__free_aligned(mnas_ctx *ctx, void *p)
{
    if (p) mnas__free(ctx, ((void **)p)[-1]);
}
