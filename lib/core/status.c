/* Status codes: their descriptions, and how failures are recorded on a context. */
#include <stdio.h>
#include <string.h>

#include "core/core_internal.h"

const char *mnas_status_str(mnas_status status)
{
    switch (status) {
    case MNAS_OK: return "ok";
    case MNAS_E_INVALID: return "invalid argument";
    case MNAS_E_SHAPE: return "shape mismatch";
    case MNAS_E_NOMEM: return "out of memory";
    case MNAS_E_STALE: return "stale tensor (its tape was reset or freed)";
    case MNAS_E_NUMERIC: return "non-finite or inaccurate numeric value";
    case MNAS_E_IO: return "input/output error";
    case MNAS_E_FORMAT: return "malformed data";
    case MNAS_E_STATE: return "invalid state for this call";
    case MNAS_E_UNSUPPORTED: return "unsupported";
    case MNAS_E_INTERNAL: return "internal error";
    case MNAS_E_MISMATCH: return "objects from different contexts or tapes";
    }
    return "unknown status";
}

void mnas__set_message(mnas_ctx *ctx, const char *msg)
{
    if (!mnas__ctx_ok(ctx)) return;
    pthread_mutex_lock(&ctx->err_lock);
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
    pthread_mutex_unlock(&ctx->err_lock);
    if (ctx->log && ctx->log_level >= MNAS_LOG_DEBUG) ctx->log(ctx->log_user, MNAS_LOG_DEBUG, msg);
}

void mnas__verror(mnas_ctx *ctx, mnas_status status, const char *fmt, va_list ap)
{
    char buf[MNAS_MSG_MAX];
    int n = snprintf(buf, sizeof buf, "%s: ", mnas_status_str(status));
    if (n < 0) n = 0;
    if ((size_t)n < sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    mnas__set_message(ctx, buf);
}

mnas_status mnas__error(mnas_ctx *ctx, mnas_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mnas__verror(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

mnas_status mnas_ctx_set_error(mnas_ctx *ctx, mnas_status status, const char *message)
{
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    if (status == MNAS_OK) status = MNAS_E_INTERNAL; /* a failure was meant */
    mnas__set_message(ctx, message ? message : mnas_status_str(status));
    return status;
}
