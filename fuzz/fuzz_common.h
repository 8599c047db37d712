/* Shared setup of the libFuzzer harnesses: one context for the process,
 * with messages dropped. */
#ifndef MNAS_FUZZ_COMMON_H
#define MNAS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *fuzz_ctx(void)
{
    static mnas_ctx *ctx;
    if (!ctx && mnas_ctx_create(&ctx, NULL) != MNAS_OK) abort();
    return ctx;
}

/* Every failure must leave a message naming the problem. */
static void fuzz_expect_message(mnas_ctx *ctx)
{
    if (mnas_ctx_last_error(ctx)[0] == '\0') abort();
    mnas_ctx_clear_error(ctx);
}

#endif /* MNAS_FUZZ_COMMON_H */
