/* Unit tests of the core layer: contexts and their options, allocator hooks,
 * status strings, version queries, the deterministic RNG, logging and the
 * last-error message. */
#include <check.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>
#include <mnas/version.h>

/* ------------------------------------------------------------ helpers */

/* A counting allocator: every block carries a header with its size so the
 * free hook can keep the live byte count. fail_after >= 0 makes the alloc
 * hook return NULL once that many allocations have succeeded. */
typedef struct counting_alloc {
    long allocs;        /* successful allocations */
    long frees;
    long failed;        /* allocations refused on purpose */
    long null_frees;    /* free hook called with NULL (forbidden by core.h) */
    long wrong_user;    /* hook called with another user pointer */
    size_t live_bytes;
    size_t peak_bytes;
    long fail_after;    /* -1: never fail */
} counting_alloc;

typedef union block_header {
    max_align_t align;
    size_t size;
} block_header;

static counting_alloc *g_expected_user; /* what the hooks should receive */

static void *count_alloc(void *user, size_t size)
{
    counting_alloc *c = user;
    if (c != g_expected_user) c->wrong_user++;
    if (c->fail_after >= 0 && c->allocs >= c->fail_after) {
        c->failed++;
        return NULL;
    }
    block_header *h = malloc(sizeof *h + size);
    if (!h) return NULL;
    h->size = size;
    c->allocs++;
    c->live_bytes += size;
    if (c->live_bytes > c->peak_bytes) c->peak_bytes = c->live_bytes;
    return h + 1;
}

static void count_free(void *user, void *p)
{
    counting_alloc *c = user;
    if (c != g_expected_user) c->wrong_user++;
    if (!p) {
        c->null_frees++;
        return;
    }
    block_header *h = (block_header *)p - 1;
    c->frees++;
    c->live_bytes -= h->size;
    free(h);
}

static void counting_init(counting_alloc *c)
{
    memset(c, 0, sizeof *c);
    c->fail_after = -1;
    g_expected_user = c;
}

static mnas_ctx *counting_ctx(counting_alloc *c)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = count_alloc;
    o.free = count_free;
    o.alloc_user = c;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static void assert_balanced(const counting_alloc *c)
{
    ck_assert_int_eq(c->allocs, c->frees);
    ck_assert_uint_eq(c->live_bytes, 0);
    ck_assert_int_eq(c->null_frees, 0);
    ck_assert_int_eq(c->wrong_user, 0);
}

/* A log sink that remembers what it was given. */
typedef struct log_sink {
    int count;
    int counts[4];
    mnas_log_level last_level;
    char last[512];
    void *self;
} log_sink;

static void sink_log(void *user, mnas_log_level level, const char *message)
{
    log_sink *s = user;
    s->count++;
    if ((int)level >= 0 && (int)level < 4) s->counts[level]++;
    s->last_level = level;
    strncpy(s->last, message ? message : "(null)", sizeof s->last - 1);
    s->last[sizeof s->last - 1] = '\0';
}

/* ------------------------------------------------------ ctx creation */

START_TEST(ctx_create_null_opts)
{
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");
    ck_assert_ptr_nonnull(mnas_ctx_rng(ctx));
    /* NULL opts means seed 0: the context stream equals a (0, 0) generator. */
    mnas_rng *r = mnas_rng_create(ctx, 0, 0);
    ck_assert_ptr_nonnull(r);
    for (int i = 0; i < 8; i++) ck_assert_uint_eq(mnas_rng_u64(mnas_ctx_rng(ctx)), mnas_rng_u64(r));
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(ctx_create_options_init)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    ck_assert_uint_eq(o.struct_size, sizeof(mnas_ctx_options));
    ck_assert(o.alloc == NULL); /* function pointers: no ck_assert_ptr_* (void *) */
    ck_assert(o.free == NULL);
    ck_assert(o.log == NULL);
    ck_assert_int_eq(o.log_level, MNAS_LOG_WARN);
    ck_assert_uint_eq(o.seed, 0);
    o.seed = 1234;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    /* The seed option seeds the context RNG as stream 0. */
    mnas_rng *r = mnas_rng_create(ctx, 1234, 0);
    for (int i = 0; i < 8; i++) ck_assert_uint_eq(mnas_rng_u64(mnas_ctx_rng(ctx)), mnas_rng_u64(r));
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(ctx_create_one_hook_only)
{
    counting_alloc c;
    counting_init(&c);
    mnas_ctx *ctx = (mnas_ctx *)&c; /* garbage that must be overwritten */
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = count_alloc;
    o.alloc_user = &c;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_INVALID);
    ck_assert_ptr_null(ctx);

    ctx = (mnas_ctx *)&c;
    o.alloc = NULL;
    o.free = count_free;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_INVALID);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(c.allocs, 0);
    ck_assert_int_eq(c.frees, 0);
}
END_TEST

START_TEST(ctx_create_out_null)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    ck_assert_int_eq(mnas_ctx_create(NULL, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_ctx_create(NULL, &o), MNAS_E_INVALID);
}
END_TEST

START_TEST(ctx_create_bad_log_level)
{
    const int bad[] = { -1, MNAS_LOG_DEBUG + 1, 100, -100 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
        o.log_level = bad[i];
        mnas_ctx *ctx = (mnas_ctx *)&o;
        ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_INVALID);
        ck_assert_ptr_null(ctx);
    }
    /* Every defined level is accepted. */
    for (int lvl = MNAS_LOG_ERROR; lvl <= MNAS_LOG_DEBUG; lvl++) {
        mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
        o.log_level = lvl;
        mnas_ctx *ctx = NULL;
        ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
        mnas_ctx_free(ctx);
    }
}
END_TEST

START_TEST(ctx_create_struct_size)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    mnas_ctx *ctx = (mnas_ctx *)&o;
    o.struct_size = 0;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_INVALID);
    ck_assert_ptr_null(ctx);

    /* Absurdly large: rejected as well. */
    ctx = (mnas_ctx *)&o;
    o.struct_size = (size_t)1 << 40;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_INVALID);
    ck_assert_ptr_null(ctx);

    /* An older, smaller struct: the fields past struct_size are not read, so
     * a garbage log_level there does not matter. */
    o = (mnas_ctx_options)MNAS_CTX_OPTIONS_INIT;
    o.struct_size = offsetof(mnas_ctx_options, log);
    o.seed = 99;
    o.log_level = 77;
    ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    mnas_rng *r = mnas_rng_create(ctx, 99, 0);
    ck_assert_uint_eq(mnas_rng_u64(mnas_ctx_rng(ctx)), mnas_rng_u64(r));
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(ctx_free_null)
{
    mnas_ctx_free(NULL);
    ck_assert_str_eq(mnas_ctx_last_error(NULL), "invalid context");
    mnas_ctx_clear_error(NULL);
    mnas_ctx_log(NULL, MNAS_LOG_ERROR, "nobody listens");
    ck_assert_ptr_null(mnas_ctx_rng(NULL));
    mnas_ctx_seed(NULL, 1);
}
END_TEST

/* --------------------------------------------------- allocator hooks */

START_TEST(alloc_hooks_balance)
{
    counting_alloc c;
    counting_init(&c);
    mnas_ctx *ctx = counting_ctx(&c);
    ck_assert_int_gt(c.allocs, 0); /* the context itself came from the hook */
    const long ctx_live = c.allocs - c.frees;

    mnas_tape *tp = NULL;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    int64_t shape[2] = { 8, 16 };
    mnas_tensor *a = mnas_tensor_zeros(ctx, 2, shape);
    mnas_tensor *b = mnas_tensor_randn(ctx, 2, shape, 0.0, 1.0);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(b, 1), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 5, 6);
    ck_assert_ptr_nonnull(r);
    long before_ops = c.allocs;

    for (int round = 0; round < 3; round++) {
        mnas_tensor *s = mnas_add(tp, a, b);
        ck_assert_ptr_nonnull(s);
        mnas_tensor *m = mnas_mul(tp, s, b);
        ck_assert_ptr_nonnull(m);
        mnas_tensor *y = mnas_sum(tp, m);
        ck_assert_ptr_nonnull(y);
        ck_assert_uint_gt(mnas_tape_num_nodes(tp), 0);
        mnas_tensor *big_shape_t = mnas_tape_tensor(tp, 2, (int64_t[]){ 512, 1024 }, NULL);
        ck_assert_ptr_nonnull(big_shape_t); /* 2 MiB: more than one arena chunk */
        mnas_tensor *keep = mnas_tensor_copy(y);
        ck_assert_ptr_nonnull(keep);
        mnas_tensor_free(keep);
        mnas_tape_reset(tp);
    }
    ck_assert_int_gt(c.allocs, before_ops); /* the tape's memory came from the hook too */
    ck_assert_uint_gt(c.live_bytes, 0);

    mnas_rng_free(r);
    mnas_tensor_free(a);
    mnas_tensor_free(b);
    mnas_tape_free(tp);
    ck_assert_int_eq(c.allocs - c.frees, ctx_live); /* only the context is left */
    mnas_ctx_free(ctx);
    assert_balanced(&c);
    ck_assert_int_eq(c.failed, 0);
}
END_TEST

START_TEST(alloc_ctx_create_fails)
{
    counting_alloc c;
    counting_init(&c);
    c.fail_after = 0;
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = count_alloc;
    o.free = count_free;
    o.alloc_user = &c;
    mnas_ctx *ctx = (mnas_ctx *)&c;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_E_NOMEM);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(c.failed, 1);
    assert_balanced(&c);
}
END_TEST

START_TEST(alloc_failure_tensor_zeros)
{
    /* Refuse the k-th allocation of mnas_tensor_zeros (header, data, ...)
     * for k = 0, 1, ... until the call needs fewer than k allocations. */
    long k;
    for (k = 0; k < 16; k++) {
        counting_alloc c;
        counting_init(&c);
        mnas_ctx *ctx = counting_ctx(&c);
        long ctx_allocs = c.allocs;
        c.fail_after = c.allocs + k;
        int64_t shape[2] = { 3, 4 };
        mnas_tensor *t = mnas_tensor_zeros(ctx, 2, shape);
        if (t) { /* nothing was refused: done */
            ck_assert_int_eq(c.failed, 0);
            mnas_tensor_free(t);
            mnas_ctx_free(ctx);
            assert_balanced(&c);
            break;
        }
        ck_assert_int_eq(c.failed, 1);
        const char *msg = mnas_ctx_last_error(ctx);
        ck_assert_msg(strstr(msg, mnas_status_str(MNAS_E_NOMEM)) != NULL, "k=%ld: \"%s\"", k, msg);
        ck_assert_ptr_nonnull(strstr(msg, "mnas_tensor_zeros"));
        /* whatever was allocated before the refusal was given back */
        ck_assert_int_eq(c.allocs - c.frees, ctx_allocs);

        /* The context still works once memory is back. */
        c.fail_after = -1;
        t = mnas_tensor_zeros(ctx, 2, shape);
        ck_assert_ptr_nonnull(t);
        mnas_tensor_free(t);
        mnas_ctx_free(ctx);
        assert_balanced(&c);
    }
    ck_assert_int_ge(k, 1);  /* at least one refusal was exercised */
    ck_assert_int_lt(k, 16); /* and the call eventually succeeded */
}
END_TEST

START_TEST(alloc_failure_other_objects)
{
    counting_alloc c;
    counting_init(&c);
    mnas_ctx *ctx = counting_ctx(&c);
    c.fail_after = c.allocs;

    mnas_tape *tp = (mnas_tape *)&c;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_E_NOMEM);
    ck_assert_ptr_null(tp);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_tape_create"));

    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_rng_create(ctx, 1, 2));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_rng_create"));

    ck_assert_ptr_null(mnas_tensor_from_data(ctx, 1, (int64_t[]){ 2 }, (mnas_real[]){ 1, 2 }));
    ck_assert_ptr_null(mnas_tensor_randn(ctx, 1, (int64_t[]){ 2 }, 0, 1));
    ck_assert_ptr_null(mnas_tensor_rand(ctx, 1, (int64_t[]){ 2 }, 0, 1));

    c.fail_after = -1;
    mnas_ctx_free(ctx);
    assert_balanced(&c);
}
END_TEST

/* Fault injection: make the k-th allocation after the context fail, for
 * every k up to the point where the whole scenario succeeds. Nothing may
 * crash and nothing may leak. */
static int fault_scenario(mnas_ctx *ctx)
{
    int ok = 1;
    mnas_tape *tp = NULL;
    if (mnas_tape_create(ctx, &tp) != MNAS_OK) ok = 0;
    int64_t shape[2] = { 4, 5 };
    mnas_tensor *a = mnas_tensor_rand(ctx, 2, shape, -1, 1);
    mnas_tensor *b = mnas_tensor_zeros(ctx, 2, shape);
    if (!a || !b) ok = 0;
    if (mnas_tensor_set_requires_grad(a, 1) != MNAS_OK) ok = 0;
    mnas_tensor *y = mnas_sum(tp, mnas_mul(tp, mnas_add(tp, a, b), a));
    if (!y) ok = 0;
    mnas_tensor *keep = mnas_tensor_copy(y);
    if (!keep) ok = 0;
    mnas_tape_reset(tp);
    mnas_tensor *z = mnas_add(tp, mnas_tape_tensor(tp, 2, shape, NULL), a);
    if (!z) ok = 0;
    mnas_tensor_free(keep);
    mnas_tensor_free(a);
    mnas_tensor_free(b);
    mnas_tape_free(tp);
    return ok;
}

START_TEST(alloc_fault_injection)
{
    int succeeded = 0;
    for (long k = 0; k < 200 && !succeeded; k++) {
        counting_alloc c;
        counting_init(&c);
        mnas_ctx *ctx = counting_ctx(&c);
        c.fail_after = c.allocs + k;
        succeeded = fault_scenario(ctx);
        ck_assert_msg(succeeded == (c.failed == 0), "k=%ld: ok=%d but %ld refused allocations", k,
                      succeeded, c.failed);
        c.fail_after = -1;
        mnas_ctx_free(ctx);
        ck_assert_msg(c.allocs == c.frees && c.live_bytes == 0,
                      "k=%ld: %ld allocations, %ld frees, %zu bytes live", k, c.allocs, c.frees,
                      c.live_bytes);
        assert_balanced(&c);
    }
    ck_assert_msg(succeeded, "the scenario never ran without a refused allocation");
}
END_TEST

/* ------------------------------------------------------ status, version */

START_TEST(status_strings)
{
    const mnas_status codes[] = { MNAS_OK, MNAS_E_INVALID, MNAS_E_SHAPE, MNAS_E_NOMEM,
                                  MNAS_E_STALE, MNAS_E_NUMERIC, MNAS_E_IO, MNAS_E_FORMAT,
                                  MNAS_E_STATE, MNAS_E_UNSUPPORTED, MNAS_E_INTERNAL,
                                  MNAS_E_MISMATCH };
    const size_t n = sizeof codes / sizeof codes[0];
    /* The values are ABI: pin them. */
    for (size_t i = 0; i < n; i++) ck_assert_int_eq((int)codes[i], -(int)i);
    for (size_t i = 0; i < n; i++) {
        const char *s = mnas_status_str(codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_gt(strlen(s), 0);
        ck_assert_str_ne(s, "unknown status");
        for (size_t j = 0; j < i; j++) ck_assert_str_ne(s, mnas_status_str(codes[j]));
    }
    ck_assert_str_eq(mnas_status_str(MNAS_OK), "ok");
    ck_assert_str_eq(mnas_status_str((mnas_status)1), "unknown status");
    ck_assert_str_eq(mnas_status_str((mnas_status)-12), "unknown status");
    ck_assert_str_eq(mnas_status_str((mnas_status)-1000), "unknown status");
    ck_assert_str_eq(mnas_status_str((mnas_status)INT32_MIN), "unknown status");
}
END_TEST

START_TEST(version_agrees)
{
    ck_assert_int_eq(mnas_version_number(), MNAS_VERSION_NUMBER);
    ck_assert_int_eq(MNAS_VERSION_NUMBER,
                     MNAS_VERSION_MAJOR * 10000 + MNAS_VERSION_MINOR * 100 + MNAS_VERSION_PATCH);
    ck_assert_ptr_nonnull(mnas_version_string());
    ck_assert_str_eq(mnas_version_string(), MNAS_VERSION_STRING);
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", MNAS_VERSION_MAJOR, MNAS_VERSION_MINOR, MNAS_VERSION_PATCH);
    ck_assert_str_eq(mnas_version_string(), buf);
}
END_TEST

/* ---------------------------------------------------------------- RNG */

/* Golden values: the first outputs of mnas_rng_create(ctx, 42, 0), recorded
 * once from the library. core.h documents the stream as bit-identical on
 * every platform, so these literals pin it: a change here breaks every
 * seeded experiment and checkpoint, and must be deliberate. */
static const uint64_t golden_u64[4] = {
    0x046cf680659deb84ull,
    0x439af57dcd89054dull,
    0xa6983177c9c850ceull,
    0xf1e6abd8d0f2da09ull,
};
static const double golden_normal[3] = {
    0x1.483e614e0d3c2p-3,  /* 0.16027523059315568 */
    0x1.e45c454f97fadp-2,  /* 0.47300823496152128 */
    0x1.ad4c03d2afc5ap-1,  /* 0.83847057291849159 */
};

/* A generator state whose next mnas_rng_u64 is `out`: xoshiro256** outputs
 * rotl(s[1] * 5, 7) * 9, and 5 and 9 are invertible modulo 2^64. */
static uint64_t inverse_odd(uint64_t a)
{
    uint64_t x = a; /* correct to 3 bits; Newton doubles that each step */
    for (int i = 0; i < 6; i++) x *= 2 - a * x;
    return x;
}

static void state_for_output(uint64_t out, uint64_t st[MNAS_RNG_STATE_WORDS])
{
    uint64_t v = out * inverse_odd(9);
    v = (v >> 7) | (v << 57); /* rotr 7 */
    st[0] = 0x0123456789abcdefull;
    st[1] = v * inverse_odd(5);
    st[2] = 0xfedcba9876543210ull;
    st[3] = 0x0f0f0f0f0f0f0f0full;
    st[4] = 0;
    st[5] = 0;
}

START_TEST(rng_golden)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 42, 0);
    ck_assert_ptr_nonnull(r);
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(mnas_rng_u64(r), golden_u64[i]);
    mnas_rng_seed(r, 42, 0);
    for (int i = 0; i < 3; i++) {
        double v = mnas_rng_normal(r);
        ck_assert_msg(v == golden_normal[i], "normal %d: %a, expected %a", i, v, golden_normal[i]);
    }
    /* Uniform doubles are (x >> 11) * 2^-53 of the same stream. */
    mnas_rng_seed(r, 42, 0);
    for (int i = 0; i < 4; i++) {
        double u = mnas_rng_uniform(r);
        ck_assert_msg(u == (double)(golden_u64[i] >> 11) * 0x1.0p-53, "uniform %d: %a", i, u);
    }
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

/* The published xoshiro256** output for the state {1, 2, 3, 4} (the test
 * vector of the reference implementation, as used by e.g. rand_xoshiro). */
START_TEST(rng_xoshiro_reference_vector)
{
    static const uint64_t expected[10] = {
        11520u, 0u, 1509978240u, 1215971899390074240u, 1216172134540287360u,
        607988272756665600u, 16172922978634559625u, 8476171486693032832u,
        10595114339597558777u, 2904607092377533576u,
    };
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 0, 0);
    const uint64_t st[MNAS_RNG_STATE_WORDS] = { 1, 2, 3, 4, 0, 0 };
    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    for (int i = 0; i < 10; i++) ck_assert_uint_eq(mnas_rng_u64(r), expected[i]);
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_streams)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *a = mnas_rng_create(ctx, 7, 3);
    mnas_rng *b = mnas_rng_create(ctx, 7, 3);
    mnas_rng *c = mnas_rng_create(ctx, 7, 4);
    mnas_rng *d = mnas_rng_create(ctx, 8, 3);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(d);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 64; i++) {
        uint64_t x = mnas_rng_u64(a);
        ck_assert_uint_eq(x, mnas_rng_u64(b));
        same_c += x == mnas_rng_u64(c);
        same_d += x == mnas_rng_u64(d);
    }
    ck_assert_int_eq(same_c, 0);
    ck_assert_int_eq(same_d, 0);
    for (int i = 0; i < 64; i++) {
        double x = mnas_rng_normal(a);
        ck_assert(x == mnas_rng_normal(b));
    }
    /* Reseeding a generator restarts its stream. */
    mnas_rng_seed(c, 7, 3);
    mnas_rng_seed(a, 7, 3);
    for (int i = 0; i < 16; i++) ck_assert_uint_eq(mnas_rng_u64(a), mnas_rng_u64(c));
    /* Stream 0 and 1 of seed 0 differ too (stream mixing is not a no-op). */
    mnas_rng_seed(a, 0, 0);
    mnas_rng_seed(b, 0, 1);
    ck_assert_uint_ne(mnas_rng_u64(a), mnas_rng_u64(b));
    mnas_rng_free(a);
    mnas_rng_free(b);
    mnas_rng_free(c);
    mnas_rng_free(d);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_ctx_seed_resets)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 42;
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_rng *cr = mnas_ctx_rng(ctx);
    ck_assert_ptr_nonnull(cr);
    ck_assert_ptr_eq(cr, mnas_ctx_rng(ctx));
    /* The context stream with seed 42 is the golden (42, 0) stream. */
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(mnas_rng_u64(cr), golden_u64[i]);
    /* Leave a cached normal behind, then reseed: the spare must be dropped. */
    (void)mnas_rng_normal(cr);
    mnas_ctx_seed(ctx, 42);
    for (int i = 0; i < 3; i++) ck_assert(mnas_rng_normal(cr) == golden_normal[i]);
    mnas_ctx_seed(ctx, 42);
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(mnas_rng_u64(cr), golden_u64[i]);
    mnas_ctx_seed(ctx, 43);
    ck_assert_uint_ne(mnas_rng_u64(cr), golden_u64[0]);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_below)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 2024, 1);
    enum { N = 100000, K = 10 };
    long counts[K] = { 0 };
    for (int i = 0; i < N; i++) {
        uint64_t v = mnas_rng_below(r, K);
        ck_assert_uint_lt(v, K);
        counts[v]++;
    }
    double chi2 = 0;
    for (int k = 0; k < K; k++) {
        double e = (double)N / K, d = (double)counts[k] - e;
        chi2 += d * d / e;
    }
    /* 9 degrees of freedom: P(chi2 > 40) is about 1e-5. */
    ck_assert_msg(chi2 < 40.0, "chi-square %.2f too large", chi2);

    ck_assert_uint_eq(mnas_rng_below(r, 0), 0);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(mnas_rng_below(r, 1), 0);
    const uint64_t big[] = { 3, 7, (uint64_t)1 << 63, ((uint64_t)1 << 63) + 1,
                             UINT64_MAX / 3 * 2, UINT64_MAX };
    for (size_t j = 0; j < sizeof big / sizeof big[0]; j++)
        for (int i = 0; i < 1000; i++) ck_assert_uint_lt(mnas_rng_below(r, big[j]), big[j]);
    /* n just above 2^63: half the raw outputs are rejected, the results
     * must still be spread over the whole range. */
    uint64_t n = ((uint64_t)1 << 63) + 1;
    int high = 0;
    for (int i = 0; i < 1000; i++) high += mnas_rng_below(r, n) >= n / 2;
    ck_assert_int_gt(high, 400);
    ck_assert_int_lt(high, 600);
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_uniform_stats)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 11, 0);
    enum { N = 100000 };
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; i++) {
        double u = mnas_rng_uniform(r);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
        sum2 += u * u;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    ck_assert_double_eq_tol(mean, 0.5, 0.01);
    ck_assert_double_eq_tol(var, 1.0 / 12.0, 0.005);

    /* The extremes of the mapping: a raw 0 gives 0, a raw 2^64-1 stays < 1. */
    uint64_t st[MNAS_RNG_STATE_WORDS];
    state_for_output(0, st);
    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    ck_assert_uint_eq(mnas_rng_u64(r), 0);
    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    ck_assert(mnas_rng_uniform(r) == 0.0);
    state_for_output(UINT64_MAX, st);
    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    ck_assert_uint_eq(mnas_rng_u64(r), UINT64_MAX);
    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    double top = mnas_rng_uniform(r);
    ck_assert(top < 1.0);
    ck_assert(top == 1.0 - 0x1.0p-53);
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_normal_stats)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 12, 0);
    enum { N = 100000 };
    double sum = 0, sum2 = 0;
    int beyond3 = 0;
    for (int i = 0; i < N; i++) {
        double x = mnas_rng_normal(r);
        ck_assert(isfinite(x));
        sum += x;
        sum2 += x * x;
        beyond3 += fabs(x) > 3.0;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    ck_assert_double_eq_tol(mean, 0.0, 0.02);
    ck_assert_double_eq_tol(var, 1.0, 0.03);
    /* P(|x| > 3) = 0.0027: expect about 270. */
    ck_assert_int_gt(beyond3, 150);
    ck_assert_int_lt(beyond3, 400);
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_state_round_trip)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 99, 5);
    uint64_t st[MNAS_RNG_STATE_WORDS];
    mnas_rng_get_state(r, st);
    ck_assert_uint_eq(st[4], 0); /* no spare after seeding */

    (void)mnas_rng_normal(r); /* leaves a spare behind */
    mnas_rng_get_state(r, st);
    ck_assert_uint_eq(st[4], 1);

    double first[8];
    uint64_t raw[4];
    double uni[2];
    for (int i = 0; i < 8; i++) first[i] = mnas_rng_normal(r);
    for (int i = 0; i < 4; i++) raw[i] = mnas_rng_u64(r);
    for (int i = 0; i < 2; i++) uni[i] = mnas_rng_uniform(r);

    ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
    for (int i = 0; i < 8; i++) ck_assert(mnas_rng_normal(r) == first[i]);
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(mnas_rng_u64(r), raw[i]);
    for (int i = 0; i < 2; i++) ck_assert(mnas_rng_uniform(r) == uni[i]);

    /* The state also moves to another generator (and the context's). */
    mnas_rng *other = mnas_rng_create(ctx, 1, 1);
    ck_assert_int_eq(mnas_rng_set_state(other, st), MNAS_OK);
    ck_assert_int_eq(mnas_rng_set_state(mnas_ctx_rng(ctx), st), MNAS_OK);
    for (int i = 0; i < 8; i++) {
        ck_assert(mnas_rng_normal(other) == first[i]);
        ck_assert(mnas_rng_normal(mnas_ctx_rng(ctx)) == first[i]);
    }
    uint64_t st2[MNAS_RNG_STATE_WORDS];
    /* Both continued identically: same state now (spare included). */
    mnas_rng_get_state(other, st2);
    mnas_rng_get_state(mnas_ctx_rng(ctx), st);
    ck_assert_mem_eq(st, st2, sizeof st);
    mnas_rng_free(other);
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_set_state_invalid)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_rng *r = mnas_rng_create(ctx, 3, 3);
    mnas_rng *twin = mnas_rng_create(ctx, 3, 3);
    (void)mnas_rng_normal(r);
    (void)mnas_rng_normal(twin);
    uint64_t before[MNAS_RNG_STATE_WORDS], after[MNAS_RNG_STATE_WORDS];
    mnas_rng_get_state(r, before);

    const uint64_t zero[MNAS_RNG_STATE_WORDS] = { 0, 0, 0, 0, 0, 0 };
    ck_assert_int_eq(mnas_rng_set_state(r, zero), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_rng_set_state"));
    mnas_rng_get_state(r, after);
    ck_assert_mem_eq(before, after, sizeof before);

    uint64_t bad_flag[MNAS_RNG_STATE_WORDS];
    memcpy(bad_flag, before, sizeof bad_flag);
    bad_flag[4] = 2;
    bad_flag[0] ^= 0x1234; /* would change the stream if it were accepted */
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_rng_set_state(r, bad_flag), MNAS_E_INVALID);
    ck_assert_str_ne(mnas_ctx_last_error(ctx), "");
    mnas_rng_get_state(r, after);
    ck_assert_mem_eq(before, after, sizeof before);

    ck_assert_int_eq(mnas_rng_set_state(r, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_rng_set_state(NULL, before), MNAS_E_INVALID);
    mnas_rng_get_state(r, after);
    ck_assert_mem_eq(before, after, sizeof before);

    /* Still the same generator as its twin, spare included. */
    for (int i = 0; i < 5; i++) ck_assert(mnas_rng_normal(r) == mnas_rng_normal(twin));
    for (int i = 0; i < 5; i++) ck_assert_uint_eq(mnas_rng_u64(r), mnas_rng_u64(twin));
    mnas_rng_free(r);
    mnas_rng_free(twin);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(rng_free_ctx_rng_noop)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 42;
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_rng_free(mnas_ctx_rng(ctx));
    mnas_rng_free(NULL);
    /* The context generator still works and continues its stream. */
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(mnas_rng_u64(mnas_ctx_rng(ctx)), golden_u64[i]);
    /* NULL generators: neutral values, no crash. */
    ck_assert_uint_eq(mnas_rng_u64(NULL), 0);
    ck_assert_uint_eq(mnas_rng_below(NULL, 10), 0);
    ck_assert(mnas_rng_uniform(NULL) == 0.0);
    ck_assert(mnas_rng_normal(NULL) == 0.0);
    mnas_rng_seed(NULL, 1, 2);
    uint64_t st[MNAS_RNG_STATE_WORDS] = { 9, 9, 9, 9, 9, 9 };
    mnas_rng_get_state(NULL, st);
    ck_assert_uint_eq(st[0], 9);
    ck_assert_ptr_null(mnas_rng_create(NULL, 1, 1));
    mnas_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- logging */

/* A tracking allocator: remembers its live blocks, so a test can leave
 * children alive at mnas_ctx_free and still release them afterwards. */
typedef struct tracking_alloc {
    void *blocks[4096];
    int n;
} tracking_alloc;

static void *tracking_malloc(void *user, size_t size)
{
    tracking_alloc *t = user;
    if (t->n == 4096) return NULL;
    void *p = malloc(size);
    if (p) t->blocks[t->n++] = p;
    return p;
}

static void tracking_free(void *user, void *ptr)
{
    tracking_alloc *t = user;
    for (int i = 0; i < t->n; i++)
        if (t->blocks[i] == ptr) {
            t->blocks[i] = t->blocks[--t->n];
            break;
        }
    free(ptr);
}

START_TEST(ctx_live_counts_and_free_report)
{
    static tracking_alloc ta; /* large: not on the stack */
    ta.n = 0;
    log_sink s;
    memset(&s, 0, sizeof s);
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = tracking_malloc;
    o.free = tracking_free;
    o.alloc_user = &ta;
    o.log = sink_log;
    o.log_user = &s;
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_ctx_live_allocations(NULL), -1);
    ck_assert_int_eq(mnas_ctx_live_tensors(NULL), -1);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), 0);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), 0);

    int64_t shape[2] = { 3, 4 };
    mnas_tensor *a = mnas_tensor_zeros(ctx, 2, shape);
    mnas_tensor *b = mnas_tensor_copy(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), 2);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), 4); /* header and data each */
    mnas_tape *tp = NULL;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    ck_assert_ptr_nonnull(mnas_add(tp, a, b));
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), 2); /* tape tensors are not counted */
    ck_assert_int_gt(mnas_ctx_live_allocations(ctx), 4);
    mnas_tape_free(tp);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), 4);
    mnas_tensor_free(b);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), 1);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), 2);
    /* a failed constructor leaves nothing behind */
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, 2, (int64_t[]){ 0, 4 }));
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), 2);

    /* freeing the context with a live tensor reports it through the log */
    int before = s.count;
    mnas_ctx_free(ctx);
    ck_assert_int_eq(s.count, before + 1);
    ck_assert_int_eq(s.last_level, MNAS_LOG_ERROR);
    ck_assert_msg(strstr(s.last, "mnas_ctx_free") && strstr(s.last, "2 allocation(s) still live") &&
                      strstr(s.last, "1 of them persistent tensors"),
                  "message: %s", s.last);
    ck_assert_int_eq(ta.n, 2); /* the leaked tensor's two blocks, nothing else */
    while (ta.n > 0) tracking_free(&ta, ta.blocks[0]);
    (void)a;

    /* a clean context says nothing when freed */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_tensor *c = mnas_tensor_zeros(ctx, 2, shape);
    mnas_tensor_free(c);
    mnas_ctx_free(ctx);
    ck_assert_int_eq(s.count, 0);
    ck_assert_int_eq(ta.n, 0);
}
END_TEST

START_TEST(log_levels)
{
    log_sink s;
    memset(&s, 0, sizeof s);
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.log = sink_log;
    o.log_user = &s;
    o.log_level = MNAS_LOG_INFO;
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);

    mnas_ctx_log(ctx, MNAS_LOG_ERROR, "e");
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(s.last_level, MNAS_LOG_ERROR);
    ck_assert_str_eq(s.last, "e");
    mnas_ctx_log(ctx, MNAS_LOG_WARN, "w");
    mnas_ctx_log(ctx, MNAS_LOG_INFO, "i");
    ck_assert_int_eq(s.count, 3);
    ck_assert_int_eq(s.last_level, MNAS_LOG_INFO);
    ck_assert_str_eq(s.last, "i");
    mnas_ctx_log(ctx, MNAS_LOG_DEBUG, "d"); /* above log_level: dropped */
    ck_assert_int_eq(s.count, 3);
    ck_assert_int_eq(s.counts[MNAS_LOG_DEBUG], 0);
    ck_assert_str_eq(s.last, "i");
    mnas_ctx_log(ctx, MNAS_LOG_ERROR, NULL); /* ignored */
    ck_assert_int_eq(s.count, 3);
    mnas_ctx_free(ctx);

    /* ERROR level: only errors pass. */
    memset(&s, 0, sizeof s);
    o.log_level = MNAS_LOG_ERROR;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_ctx_log(ctx, MNAS_LOG_WARN, "w");
    mnas_ctx_log(ctx, MNAS_LOG_INFO, "i");
    mnas_ctx_log(ctx, MNAS_LOG_DEBUG, "d");
    ck_assert_int_eq(s.count, 0);
    mnas_ctx_log(ctx, MNAS_LOG_ERROR, "boom");
    ck_assert_int_eq(s.count, 1);
    ck_assert_str_eq(s.last, "boom");
    mnas_ctx_free(ctx);

    /* No callback: messages are dropped quietly. */
    o.log = NULL;
    o.log_level = MNAS_LOG_DEBUG;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_ctx_log(ctx, MNAS_LOG_ERROR, "nowhere");
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(log_debug_sees_errors)
{
    log_sink s;
    memset(&s, 0, sizeof s);
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.log = sink_log;
    o.log_user = &s;
    o.log_level = MNAS_LOG_DEBUG;
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mnas_ctx_log(ctx, MNAS_LOG_DEBUG, "d");
    ck_assert_int_eq(s.count, 1);
    /* At debug level every recorded failure also reaches the sink. */
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, 5, (int64_t[]){ 1, 1, 1, 1, 1 }));
    ck_assert_int_eq(s.count, 2);
    ck_assert_int_eq(s.last_level, MNAS_LOG_DEBUG);
    ck_assert_str_eq(s.last, mnas_ctx_last_error(ctx));
    mnas_ctx_free(ctx);

    /* Below debug level failures are not logged. */
    memset(&s, 0, sizeof s);
    o.log_level = MNAS_LOG_INFO;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, 5, (int64_t[]){ 1, 1, 1, 1, 1 }));
    ck_assert_int_eq(s.count, 0);
    mnas_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------- last error */

START_TEST(last_error_message)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");
    int64_t shape[5] = { 1, 2, 3, 4, 5 };
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, 5, shape));
    const char *msg = mnas_ctx_last_error(ctx);
    ck_assert_ptr_nonnull(strstr(msg, "mnas_tensor_zeros"));
    ck_assert_ptr_nonnull(strstr(msg, "ndim 5"));
    ck_assert_ptr_nonnull(strstr(msg, mnas_status_str(MNAS_E_SHAPE)));

    /* A successful call leaves the message alone; a new failure replaces it. */
    mnas_tensor *t = mnas_tensor_zeros(ctx, 1, shape);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_tensor_zeros"));
    ck_assert_ptr_null(mnas_tensor_rand(ctx, 1, shape, 1.0, 0.0));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_tensor_rand"));
    ck_assert_ptr_null(strstr(mnas_ctx_last_error(ctx), "ndim 5"));

    mnas_ctx_clear_error(ctx);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");

    TCase *tc = tcase_create("ctx");
    tcase_add_test(tc, ctx_create_null_opts);
    tcase_add_test(tc, ctx_create_options_init);
    tcase_add_test(tc, ctx_create_one_hook_only);
    tcase_add_test(tc, ctx_create_out_null);
    tcase_add_test(tc, ctx_create_bad_log_level);
    tcase_add_test(tc, ctx_create_struct_size);
    tcase_add_test(tc, ctx_free_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("alloc");
    tcase_add_test(tc, alloc_hooks_balance);
    tcase_add_test(tc, alloc_ctx_create_fails);
    tcase_add_test(tc, alloc_failure_tensor_zeros);
    tcase_add_test(tc, alloc_failure_other_objects);
    tcase_add_test(tc, alloc_fault_injection);
    suite_add_tcase(s, tc);

    tc = tcase_create("status");
    tcase_add_test(tc, status_strings);
    tcase_add_test(tc, version_agrees);
    suite_add_tcase(s, tc);

    tc = tcase_create("rng");
    tcase_add_test(tc, rng_golden);
    tcase_add_test(tc, rng_xoshiro_reference_vector);
    tcase_add_test(tc, rng_streams);
    tcase_add_test(tc, rng_ctx_seed_resets);
    tcase_add_test(tc, rng_below);
    tcase_add_test(tc, rng_uniform_stats);
    tcase_add_test(tc, rng_normal_stats);
    tcase_add_test(tc, rng_state_round_trip);
    tcase_add_test(tc, rng_set_state_invalid);
    tcase_add_test(tc, rng_free_ctx_rng_noop);
    suite_add_tcase(s, tc);

    tc = tcase_create("log");
    tcase_add_test(tc, log_levels);
    tcase_add_test(tc, ctx_live_counts_and_free_report);
    tcase_add_test(tc, log_debug_sees_errors);
    tcase_add_test(tc, last_error_message);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(core_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
