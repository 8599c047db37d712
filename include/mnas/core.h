/** @file
 * @brief libmnas — core layer: the context, status codes, allocator hooks, logging
 * and the library's deterministic random number generator. */
#ifndef MNAS_CORE_H
#define MNAS_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <mnas/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The scalar type of every tensor: float (IEEE binary32) in the installed
 * library, always. A test-only build of the library (never installed) defines
 * MNAS_REAL_IS_DOUBLE to run the same code in double precision, so that
 * gradients can be checked against finite differences in double. */
#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
typedef double mnas_real;
#else
/** The scalar type of every tensor (float; double only in the test-only build). */
typedef float mnas_real;
#endif

/** Status codes. 0 is success; failures are fixed negative values. The list
 * only grows (values are part of the ABI). */
typedef enum mnas_status {
    MNAS_OK = 0,
    MNAS_E_INVALID = -1, /**< bad argument: NULL handle, out-of-range option */
    MNAS_E_SHAPE = -2, /**< shapes do not fit the operation */
    MNAS_E_NOMEM = -3, /**< an allocation failed */
    MNAS_E_STALE = -4, /**< a tape tensor used after its tape was reset or freed */
    MNAS_E_NUMERIC = -5, /**< NaN or Inf where finite values are required */
    MNAS_E_IO = -6, /**< a file could not be read or written */
    MNAS_E_FORMAT = -7, /**< a file or string is malformed */
    MNAS_E_STATE = -8, /**< the call does not fit the object's state */
    MNAS_E_UNSUPPORTED = -9, /**< a valid request this build cannot do */
    MNAS_E_INTERNAL = -10, /**< a bug in libmnas: please report it */
    MNAS_E_MISMATCH = -11 /**< objects from different contexts or tapes mixed */
} mnas_status;

/** A static English description of a status code ("invalid argument", ...). */
MNAS_API const char *mnas_status_str(mnas_status status);

/** Run-time version of the library (compare with MNAS_VERSION_NUMBER). */
MNAS_API int mnas_version_number(void);
/** Run-time version of the library as "MAJOR.MINOR.PATCH". */
MNAS_API const char *mnas_version_string(void);

/** A library context (opaque): allocator, RNG, logging and the last error. */
typedef struct mnas_ctx mnas_ctx;

/** Log levels for the log callback. */
typedef enum mnas_log_level {
    MNAS_LOG_ERROR = 0,
    MNAS_LOG_WARN = 1,
    MNAS_LOG_INFO = 2,
    MNAS_LOG_DEBUG = 3
} mnas_log_level;

/** Log callback: receives every message up to the context's log_level. */
typedef void (*mnas_log_fn)(void *user, mnas_log_level level, const char *message);

/** Allocator hooks: alloc(user, size) returns memory aligned like malloc or
 * NULL; free(user, ptr) releases it (never called with NULL). Either both
 * hooks are given or neither. */
typedef void *(*mnas_alloc_fn)(void *user, size_t size);
/** Free hook matching mnas_alloc_fn. */
typedef void (*mnas_free_fn)(void *user, void *ptr);

/** Options for mnas_ctx_create. Initialise with MNAS_CTX_OPTIONS_INIT, then set
 * fields; struct_size lets the struct grow in later versions. */
typedef struct mnas_ctx_options {
    /** sizeof(mnas_ctx_options), set by the _INIT macro. */
    size_t struct_size;
    mnas_alloc_fn alloc; /**< NULL: malloc */
    mnas_free_fn free; /**< NULL: free */
    /** Passed to alloc and free. */
    void *alloc_user;
    uint64_t seed; /**< seed of the context's RNG */
    mnas_log_fn log; /**< NULL: messages are dropped */
    /** Passed to log. */
    void *log_user;
    int log_level; /**< highest mnas_log_level passed to log */
} mnas_ctx_options;

/** Defaults of mnas_ctx_options: malloc/free, seed 0, no log, warnings and errors. */
#define MNAS_CTX_OPTIONS_INIT \
    { sizeof(mnas_ctx_options), NULL, NULL, NULL, 0u, NULL, NULL, MNAS_LOG_WARN }

/** Create a context. opts may be NULL (defaults, seed 0). On failure *out is
 * NULL and the status says why (there is no context to hold a message). */
MNAS_API mnas_status mnas_ctx_create(mnas_ctx **out, const mnas_ctx_options *opts);

/** Free a context. Every tensor and tape made from it must be freed first;
 * if some are still live, the context logs an MNAS_LOG_ERROR message through
 * its log callback saying how many (they are not freed, and using them
 * afterwards is undefined). mnas_ctx_free(NULL) is a no-op. */
MNAS_API void mnas_ctx_free(mnas_ctx *ctx);

/** The message of the last failure on this context ("" if none). The pointer
 * stays valid until the next failing call on the context. Calls made from
 * several threads each set it; use mnas_tape_last_error for a per-thread
 * message. */
MNAS_API const char *mnas_ctx_last_error(const mnas_ctx *ctx);
/** Reset the context's last error message to "". */
MNAS_API void mnas_ctx_clear_error(mnas_ctx *ctx);
/** Record a failure message on the context, for code outside the library
 * that runs inside a library call (an engine's callbacks, for instance the
 * allgather of mnas_distribution), so that the caller reads it through
 * mnas_ctx_last_error. NULL message: the status's description. Returns
 * status (MNAS_E_INTERNAL for MNAS_OK; MNAS_E_INVALID for a NULL ctx). */
MNAS_API mnas_status mnas_ctx_set_error(mnas_ctx *ctx, mnas_status status, const char *message);

/** Number of memory blocks the library holds from this context's allocator
 * (every live object, tensor, tape arena chunk, ...); -1 if ctx is invalid.
 * 0 once everything made from the context is freed: a leak check. */
MNAS_API int64_t mnas_ctx_live_allocations(const mnas_ctx *ctx);
/** Number of live persistent tensors made from this context (tape-owned
 * tensors are not counted); -1 if ctx is invalid. */
MNAS_API int64_t mnas_ctx_live_tensors(const mnas_ctx *ctx);

/** Log through the context's callback (used by the library; open to
 * embedders so their messages share one sink). */
MNAS_API void mnas_ctx_log(mnas_ctx *ctx, mnas_log_level level, const char *message);

/** The context's random number generator.
 *
 * The generator is xoshiro256** (Blackman and Vigna), seeded by expanding the
 * 64-bit seed with splitmix64. It uses only integer arithmetic, and the
 * derived variates use only IEEE-754 basic operations (+ - * / sqrt, each
 * correctly rounded) plus a logarithm computed by the library itself, so the
 * stream is bit-identical on every platform:
 *   - uniform double in [0,1): (x >> 11) * 2^-53
 *   - normal: Marsaglia's polar method in double, one value kept for the
 *     next call.
 * The context RNG is not thread-safe; give each thread its own mnas_rng. */
typedef struct mnas_rng mnas_rng;

/** Reseed the context's generator. */
MNAS_API void mnas_ctx_seed(mnas_ctx *ctx, uint64_t seed);
/** The context's own generator (not thread-safe). */
MNAS_API mnas_rng *mnas_ctx_rng(mnas_ctx *ctx);

/** A free-standing generator (same algorithm). stream selects one of 2^64
 * independent streams for the same seed (seed and stream are mixed with
 * splitmix64), e.g. one per task index, so results do not depend on which
 * thread runs a task. */
MNAS_API mnas_rng *mnas_rng_create(mnas_ctx *ctx, uint64_t seed, uint64_t stream);
/** Free a generator. NULL is a no-op. */
MNAS_API void mnas_rng_free(mnas_rng *rng);
/** Restart the generator at (seed, stream). */
MNAS_API void mnas_rng_seed(mnas_rng *rng, uint64_t seed, uint64_t stream);
/** The next 64 random bits. */
MNAS_API uint64_t mnas_rng_u64(mnas_rng *rng);
/** Uniform integer in [0, n) without modulo bias; 0 when n == 0. */
MNAS_API uint64_t mnas_rng_below(mnas_rng *rng, uint64_t n);
/** Uniform double in [0, 1). */
MNAS_API double mnas_rng_uniform(mnas_rng *rng);
/** Standard normal variate (mean 0, variance 1). */
MNAS_API double mnas_rng_normal(mnas_rng *rng);
/** The full state (for checkpoints): 4 words of xoshiro state, then the
 * cached normal flag and its value's bit pattern, 6 words in all. */
#define MNAS_RNG_STATE_WORDS 6
/** Copy the generator's full state into state. */
MNAS_API void mnas_rng_get_state(const mnas_rng *rng, uint64_t state[MNAS_RNG_STATE_WORDS]);
/** Restore a state saved by mnas_rng_get_state (all-zero xoshiro words are refused). */
MNAS_API mnas_status mnas_rng_set_state(mnas_rng *rng, const uint64_t state[MNAS_RNG_STATE_WORDS]);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_CORE_H */
