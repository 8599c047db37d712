/* The library's random number generator: xoshiro256** seeded by splitmix64,
 * with variates derived using only correctly rounded IEEE operations, so a
 * seed gives the same stream on every platform (see core.h). */
#include <math.h>
#include <string.h>

#include "core/core_internal.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(struct mnas_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void mnas__rng_seed(struct mnas_rng *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream in through its own splitmix64 pass so that (seed, 0)
     * and (seed, 1) give unrelated states. */
    uint64_t x = seed;
    uint64_t y = stream ^ 0x2545f4914f6cdd1dull;
    uint64_t m = splitmix64(&y);
    x ^= m;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1; /* never all zero */
    r->has_spare = 0;
    r->spare = 0.0;
}

double mnas__det_log(double x)
{
    if (!(x > 0.0)) return x == 0.0 ? -HUGE_VAL : NAN;
    if (isinf(x)) return x;
    int e;
    double m = frexp(x, &e); /* exact: x = m * 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    /* ln m = 2 atanh(t), t = (m-1)/(m+1), |t| <= 0.1716: the odd series
     * converges to double precision within 14 terms. */
    double t = (m - 1.0) / (m + 1.0);
    double t2 = t * t;
    double term = t, sum = 0.0;
    for (int k = 0; k < 16; k++) {
        sum += term / (double)(2 * k + 1);
        term *= t2;
    }
    return 2.0 * sum + (double)e * 0.69314718055994530942;
}

mnas_rng *mnas_ctx_rng(mnas_ctx *ctx) { return mnas__ctx_ok(ctx) ? &ctx->rng : NULL; }

void mnas_ctx_seed(mnas_ctx *ctx, uint64_t seed)
{
    if (mnas__ctx_ok(ctx)) mnas__rng_seed(&ctx->rng, seed, 0);
}

mnas_rng *mnas_rng_create(mnas_ctx *ctx, uint64_t seed, uint64_t stream)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    struct mnas_rng *r = mnas__alloc(ctx, sizeof *r);
    if (!r) {
        mnas__error(ctx, MNAS_E_NOMEM, "mnas_rng_create: cannot allocate %zu bytes", sizeof *r);
        return NULL;
    }
    mnas__rng_seed(r, seed, stream);
    r->ctx = ctx;
    r->owned = 1;
    return r;
}

void mnas_rng_free(mnas_rng *rng)
{
    if (!rng || !rng->owned) return; /* the context's own generator is not freed */
    mnas__free(rng->ctx, rng);
}

void mnas_rng_seed(mnas_rng *rng, uint64_t seed, uint64_t stream)
{
    if (!rng) return;
    mnas__rng_seed(rng, seed, stream); /* keeps ctx and owned */
}

uint64_t mnas_rng_u64(mnas_rng *rng) { return rng ? next_u64(rng) : 0; }

uint64_t mnas_rng_below(mnas_rng *rng, uint64_t n)
{
    if (!rng || n == 0) return 0;
    /* Rejection on the top of the range keeps every value equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = next_u64(rng);
    } while (x >= limit);
    return x % n;
}

double mnas_rng_uniform(mnas_rng *rng)
{
    if (!rng) return 0.0;
    return (double)(next_u64(rng) >> 11) * 0x1.0p-53;
}

double mnas_rng_normal(mnas_rng *rng)
{
    if (!rng) return 0.0;
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * mnas_rng_uniform(rng) - 1.0;
        v = 2.0 * mnas_rng_uniform(rng) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * mnas__det_log(s) / s);
    rng->spare = v * f;
    rng->has_spare = 1;
    return u * f;
}

void mnas_rng_get_state(const mnas_rng *rng, uint64_t state[MNAS_RNG_STATE_WORDS])
{
    if (!rng || !state) return;
    for (int i = 0; i < 4; i++) state[i] = rng->s[i];
    state[4] = (uint64_t)rng->has_spare;
    uint64_t bits;
    memcpy(&bits, &rng->spare, sizeof bits);
    state[5] = bits;
}

mnas_status mnas_rng_set_state(mnas_rng *rng, const uint64_t state[MNAS_RNG_STATE_WORDS])
{
    if (!rng) return MNAS_E_INVALID;
    if (!state) return mnas__error(rng->ctx, MNAS_E_INVALID, "mnas_rng_set_state: state is NULL");
    if (!(state[0] | state[1] | state[2] | state[3]))
        return mnas__error(rng->ctx, MNAS_E_INVALID, "mnas_rng_set_state: all-zero xoshiro state");
    if (state[4] > 1)
        return mnas__error(rng->ctx, MNAS_E_INVALID, "mnas_rng_set_state: spare flag %llu is not 0 or 1",
                           (unsigned long long)state[4]);
    for (int i = 0; i < 4; i++) rng->s[i] = state[i];
    rng->has_spare = (int)state[4];
    memcpy(&rng->spare, &state[5], sizeof rng->spare);
    return MNAS_OK;
}
