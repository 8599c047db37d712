/* Unit tests of the data layer: tasks from caller data, the toy-regression
 * sampler (determinism, the documented draw order, the distributions it
 * samples), fixed test sets, task sets and the mean ± 95 % CI helper. */
#include <check.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

/* ------------------------------------------------------------ helpers */

/* A counting allocator: live blocks and bytes, and a switch that refuses
 * every allocation once fail_after allocations have succeeded. */
typedef struct counting_alloc {
    long allocs;
    long frees;
    long failed;
    long null_frees;
    size_t live_bytes;
    long fail_after; /* -1: never fail */
} counting_alloc;

typedef union block_header {
    max_align_t align;
    size_t size;
} block_header;

static void *count_alloc(void *user, size_t size)
{
    counting_alloc *c = user;
    if (c->fail_after >= 0 && c->allocs >= c->fail_after) {
        c->failed++;
        return NULL;
    }
    block_header *h = malloc(sizeof *h + size);
    if (!h) return NULL;
    h->size = size;
    c->allocs++;
    c->live_bytes += size;
    return h + 1;
}

static void count_free(void *user, void *p)
{
    counting_alloc *c = user;
    if (!p) {
        c->null_frees++;
        return;
    }
    block_header *h = (block_header *)p - 1;
    c->frees++;
    c->live_bytes -= h->size;
    free(h);
}

static mnas_ctx *counting_ctx(counting_alloc *c)
{
    memset(c, 0, sizeof *c);
    c->fail_after = -1;
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = count_alloc;
    o.free = count_free;
    o.alloc_user = c;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static long live_blocks(const counting_alloc *c) { return c->allocs - c->frees; }

/* Free the context, then check that nothing is left. */
static void free_counting_ctx(mnas_ctx *ctx, const counting_alloc *c)
{
    mnas_ctx_free(ctx);
    ck_assert_int_eq(c->allocs, c->frees);
    ck_assert_uint_eq(c->live_bytes, 0);
    ck_assert_int_eq(c->null_frees, 0);
}

static mnas_ctx *new_ctx(uint64_t seed)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = seed;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static int contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* The last error names fn, carries the text of status and mentions what. */
#define ASSERT_ERROR(ctx, fn, status, what)                                                    \
    do {                                                                                       \
        const char *m_ = mnas_ctx_last_error(ctx);                                             \
        ck_assert_msg(contains(m_, fn), "message \"%s\" does not name %s", m_, fn);           \
        ck_assert_msg(contains(m_, mnas_status_str(status)), "message \"%s\" is not a %s", m_, \
                      mnas_status_str(status));                                                \
        ck_assert_msg(contains(m_, what), "message \"%s\" does not mention \"%s\"", m_, what); \
    } while (0)

static mnas_tensor *tensor2(mnas_ctx *ctx, int64_t rows, int64_t cols, const mnas_real *data)
{
    const int64_t shape[2] = { rows, cols };
    mnas_tensor *t = data ? mnas_tensor_from_data(ctx, 2, shape, data) : mnas_tensor_zeros(ctx, 2, shape);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Same shape and bit-identical elements. */
static int tensors_identical(const mnas_tensor *a, const mnas_tensor *b)
{
    if (mnas_tensor_ndim(a) != mnas_tensor_ndim(b) || mnas_tensor_ndim(a) < 0) return 0;
    for (int i = 0; i < mnas_tensor_ndim(a); i++)
        if (mnas_tensor_dim(a, i) != mnas_tensor_dim(b, i)) return 0;
    return memcmp(mnas_tensor_cdata(a), mnas_tensor_cdata(b),
                  (size_t)mnas_tensor_size(a) * sizeof(mnas_real)) == 0;
}

static int tasks_identical(const mnas_task *a, const mnas_task *b)
{
    double pa[8], pb[8];
    int na = mnas_task_params(a, pa), nb = mnas_task_params(b, pb);
    if (na != nb || mnas_task_family(a) != mnas_task_family(b)) return 0;
    if (na > 0 && memcmp(pa, pb, (size_t)na * sizeof(double)) != 0) return 0;
    return tensors_identical(mnas_task_support_x(a), mnas_task_support_x(b)) &&
           tensors_identical(mnas_task_support_y(a), mnas_task_support_y(b)) &&
           tensors_identical(mnas_task_query_x(a), mnas_task_query_x(b)) &&
           tensors_identical(mnas_task_query_y(a), mnas_task_query_y(b));
}

static mnas_regression_options opts_k(int k_shot, int k_query, unsigned families)
{
    mnas_regression_options o = MNAS_REGRESSION_OPTIONS_INIT;
    o.k_shot = k_shot;
    o.k_query = k_query;
    o.families = families;
    return o;
}

/* The ranges of data.h, written out again here (not taken from the
 * library) so that the tests check the library against the spec. */
#define TWO_PI 6.28318530717958647692528676655900577
static const int k_nparams[4] = { 3, 2, 3, 5 };
static const double k_lo[4][5] = {
    { 0.1, 0.8, 0.0 }, { -3.0, -3.0 }, { -0.2, -2.0, -3.0 }, { 0.1, 0.1, 0.0, 0.0, 0.8 }
};
static const double k_hi[4][5] = {
    { 5.0, 1.2, TWO_PI }, { 3.0, 3.0 }, { 0.2, 2.0, 3.0 }, { 5.0, 5.0, TWO_PI, TWO_PI, 1.2 }
};

/* The true functions of data.h, from the parameters in their listed order. */
static double spec_f(int family, const double *p, double x)
{
    switch (family) {
    case 0: return p[0] * sin(p[1] * x) + p[2];
    case 1: return p[0] * x + p[1];
    case 2: return p[0] * x * x + p[1] * x + p[2];
    case 3: return p[0] * sin(p[4] * x + p[2]) + p[1] * sin(2.0 * p[4] * x + p[3]);
    }
    return NAN;
}

/* ------------------------------------------------- caller-made tasks */

START_TEST(task_create_copies)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    const mnas_real sx[6] = { 1, 2, 3, 4, 5, 6 }, sy[3] = { 7, 8, 9 };
    const mnas_real qx[4] = { -1, -2, -3, -4 }, qy[2] = { 10, 11 };
    mnas_tensor *tsx = tensor2(ctx, 3, 2, sx), *tsy = tensor2(ctx, 3, 1, sy);
    mnas_tensor *tqx = tensor2(ctx, 2, 2, qx), *tqy = tensor2(ctx, 2, 1, qy);

    mnas_task *task = mnas_task_create(ctx, tsx, tsy, tqx, tqy, 5);
    ck_assert_ptr_nonnull(task);
    ck_assert_int_eq(mnas_task_family(task), 5);
    mnas_tensor *const mine[4] = { tsx, tsy, tqx, tqy };
    mnas_tensor *const theirs[4] = { mnas_task_support_x(task), mnas_task_support_y(task),
                                     mnas_task_query_x(task), mnas_task_query_y(task) };
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(theirs[i]);
        ck_assert_ptr_ne(theirs[i], mine[i]);
        ck_assert(tensors_identical(theirs[i], mine[i]));
        ck_assert_int_eq(mnas_tensor_is_tape_owned(theirs[i]), 0);
    }
    /* Change, then free, the sources: the task keeps its values. */
    for (int i = 0; i < 4; i++) {
        mnas_real *d = mnas_tensor_data(mine[i]);
        for (int64_t j = 0; j < mnas_tensor_size(mine[i]); j++) d[j] = (mnas_real)-99;
    }
    const mnas_real *got = mnas_tensor_cdata(mnas_task_support_x(task));
    for (int j = 0; j < 6; j++) ck_assert(got[j] == sx[j]);
    ck_assert(mnas_tensor_cdata(mnas_task_query_y(task))[1] == qy[1]);
    for (int i = 0; i < 4; i++) mnas_tensor_free(mine[i]);
    ck_assert(mnas_tensor_cdata(mnas_task_support_y(task))[2] == sy[2]);
    ck_assert(mnas_tensor_cdata(mnas_task_query_x(task))[3] == qx[3]);

    /* No true function: no parameters, eval is NaN. */
    double p[8];
    ck_assert_int_eq(mnas_task_params(task, p), 0);
    ck_assert(isnan(mnas_regression_eval(task, 0.5)));
    mnas_task_free(task);
    free_counting_ctx(ctx, &c);
}
END_TEST

START_TEST(task_create_shapes_accepted)
{
    mnas_ctx *ctx = new_ctx(0);
    /* Images [n, C, H, W] with one-hot labels; support and query sizes differ. */
    const int64_t ss[4] = { 3, 1, 2, 2 }, qs[4] = { 5, 1, 2, 2 };
    mnas_tensor *sx = mnas_tensor_zeros(ctx, 4, ss), *qx = mnas_tensor_zeros(ctx, 4, qs);
    mnas_tensor *sy = tensor2(ctx, 3, 4, NULL), *qy = tensor2(ctx, 5, 4, NULL);
    mnas_task *task = mnas_task_create(ctx, sx, sy, qx, qy, -1);
    ck_assert_ptr_nonnull(task);
    ck_assert_int_eq(mnas_task_family(task), -1);
    ck_assert_int_eq(mnas_tensor_ndim(mnas_task_query_x(task)), 4);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_query_x(task), 0), 5);
    mnas_task_free(task);

    /* A live tape tensor is copied into a persistent one. */
    mnas_tape *tape = NULL;
    ck_assert_int_eq(mnas_tape_create(ctx, &tape), MNAS_OK);
    const int64_t s2[2] = { 3, 4 };
    mnas_tensor *ty = mnas_tape_tensor(tape, 2, s2, NULL);
    ck_assert_ptr_nonnull(ty);
    task = mnas_task_create(ctx, sx, ty, qx, qy, 0);
    ck_assert_ptr_nonnull(task);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(mnas_task_support_y(task)), 0);
    mnas_tape_free(tape);
    ck_assert_int_eq(mnas_tensor_is_valid(mnas_task_support_y(task)), 1);
    mnas_task_free(task);

    mnas_tensor_free(sx);
    mnas_tensor_free(sy);
    mnas_tensor_free(qx);
    mnas_tensor_free(qy);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(task_create_bad_input)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    static const char fn[] = "mnas_task_create";
    mnas_tensor *sx = tensor2(ctx, 3, 2, NULL), *sy = tensor2(ctx, 3, 1, NULL);
    mnas_tensor *qx = tensor2(ctx, 4, 2, NULL), *qy = tensor2(ctx, 4, 1, NULL);
    const long base = live_blocks(&c);

    ck_assert_ptr_null(mnas_task_create(NULL, sx, sy, qx, qy, 0));

    /* NULL tensors, each named. */
    ck_assert_ptr_null(mnas_task_create(ctx, NULL, sy, qx, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "support_x is NULL");
    ck_assert_ptr_null(mnas_task_create(ctx, sx, NULL, qx, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "support_y is NULL");
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, NULL, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "query_x is NULL");
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx, NULL, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "query_y is NULL");

    /* Rows of x and y differ. */
    mnas_tensor *y4 = tensor2(ctx, 4, 1, NULL), *y3 = tensor2(ctx, 3, 1, NULL);
    ck_assert_ptr_null(mnas_task_create(ctx, sx, y4, qx, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "support_x has 3 rows but support_y has 4");
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx, y3, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "query_x has 4 rows but query_y has 3");

    /* Feature shapes of support and query x differ; output shapes of y differ. */
    mnas_tensor *qx3 = tensor2(ctx, 4, 3, NULL), *qy2 = tensor2(ctx, 4, 2, NULL);
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx3, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "support_x is [3, 2] but query_x is [4, 3]");
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx, qy2, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "support_y is [3, 1] but query_y is [4, 2]");
    /* Same element count per row, different rank. */
    const int64_t s3[3] = { 4, 2, 1 };
    mnas_tensor *qx_3d = mnas_tensor_zeros(ctx, 3, s3);
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx_3d, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "query_x is [4, 2, 1]");

    /* A rank-1 x has no feature axis. */
    const int64_t s1[1] = { 3 };
    mnas_tensor *v = mnas_tensor_zeros(ctx, 1, s1);
    ck_assert_ptr_null(mnas_task_create(ctx, v, sy, qx, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_SHAPE, "support_x is [3]");

    /* NaN / Inf in each tensor, named. */
    mnas_tensor *const ok[4] = { sx, sy, qx, qy };
    const char *const names[4] = { "support_x", "support_y", "query_x", "query_y" };
    for (int which = 0; which < 4; which++) {
        for (int kind = 0; kind < 3; kind++) {
            mnas_tensor *bad = mnas_tensor_copy(ok[which]);
            ck_assert_ptr_nonnull(bad);
            mnas_real *d = mnas_tensor_data(bad);
            d[mnas_tensor_size(bad) - 1] = kind == 0 ? (mnas_real)NAN : kind == 1 ? (mnas_real)INFINITY
                                                                                  : (mnas_real)-INFINITY;
            mnas_tensor *t[4] = { sx, sy, qx, qy };
            t[which] = bad;
            long before = live_blocks(&c);
            ck_assert_ptr_null(mnas_task_create(ctx, t[0], t[1], t[2], t[3], 0));
            ASSERT_ERROR(ctx, fn, MNAS_E_NUMERIC, names[which]);
            ASSERT_ERROR(ctx, fn, MNAS_E_NUMERIC, kind == 0 ? "NaN" : "Inf");
            ck_assert_int_eq(live_blocks(&c), before);
            mnas_tensor_free(bad);
        }
    }

    /* family below -1 */
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx, qy, -2));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "family -2");

    /* A tensor of another context. */
    mnas_ctx *other = new_ctx(0);
    mnas_tensor *foreign = tensor2(other, 4, 1, NULL);
    ck_assert_ptr_null(mnas_task_create(ctx, sx, sy, qx, foreign, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_MISMATCH, "query_y");
    mnas_tensor_free(foreign);
    mnas_ctx_free(other);

    /* A stale tape tensor. */
    mnas_tape *tape = NULL;
    ck_assert_int_eq(mnas_tape_create(ctx, &tape), MNAS_OK);
    const int64_t s2[2] = { 3, 1 };
    mnas_tensor *stale = mnas_tape_tensor(tape, 2, s2, NULL);
    ck_assert_ptr_nonnull(stale);
    mnas_tape_reset(tape);
    ck_assert_ptr_null(mnas_task_create(ctx, sx, stale, qx, qy, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_STALE, "support_y");
    mnas_tape_free(tape);

    mnas_tensor_free(y4);
    mnas_tensor_free(y3);
    mnas_tensor_free(qx3);
    mnas_tensor_free(qy2);
    mnas_tensor_free(qx_3d);
    mnas_tensor_free(v);
    ck_assert_int_eq(live_blocks(&c), base); /* no failed call kept anything */

    /* The inputs were left as they were. */
    ck_assert_int_eq(mnas_tensor_dim(sx, 0), 3);
    ck_assert(mnas_tensor_cdata(qy)[3] == 0);

    mnas_tensor_free(sx);
    mnas_tensor_free(sy);
    mnas_tensor_free(qx);
    mnas_tensor_free(qy);
    free_counting_ctx(ctx, &c);
}
END_TEST

START_TEST(task_queries_null)
{
    ck_assert_ptr_null(mnas_task_support_x(NULL));
    ck_assert_ptr_null(mnas_task_support_y(NULL));
    ck_assert_ptr_null(mnas_task_query_x(NULL));
    ck_assert_ptr_null(mnas_task_query_y(NULL));
    ck_assert_int_eq(mnas_task_family(NULL), -1);
    double p[8];
    ck_assert_int_lt(mnas_task_params(NULL, p), 0);
    ck_assert(isnan(mnas_regression_eval(NULL, 1.0)));
    mnas_task_free(NULL);
    mnas_task_set_free(NULL);

    mnas_ctx *ctx = new_ctx(0);
    mnas_task *task = mnas_regression_task(ctx, NULL, 1, 2, -1);
    ck_assert_ptr_nonnull(task);
    ck_assert_int_eq(mnas_task_params(task, NULL), MNAS_E_INVALID);
    ASSERT_ERROR(ctx, "mnas_task_params", MNAS_E_INVALID, "out is NULL");
    mnas_task_free(task);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- toy regression */

START_TEST(regression_family_names)
{
    ck_assert_str_eq(mnas_regression_family_name(MNAS_FAMILY_SINUSOID), "sinusoid");
    ck_assert_str_eq(mnas_regression_family_name(MNAS_FAMILY_LINEAR), "linear");
    ck_assert_str_eq(mnas_regression_family_name(MNAS_FAMILY_QUADRATIC), "quadratic");
    ck_assert_str_eq(mnas_regression_family_name(MNAS_FAMILY_HARMONICS), "harmonics");
    ck_assert_str_eq(mnas_regression_family_name(4), "unknown");
    ck_assert_str_eq(mnas_regression_family_name(-1), "unknown");
    ck_assert_str_eq(mnas_regression_family_name(INT_MIN), "unknown");
}
END_TEST

START_TEST(regression_defaults_and_shapes)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    mnas_task *a = mnas_regression_task(ctx, NULL, 3, 4, -1);
    mnas_regression_options o = MNAS_REGRESSION_OPTIONS_INIT;
    mnas_task *b = mnas_regression_task(ctx, &o, 3, 4, -1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert(tasks_identical(a, b)); /* NULL options are the defaults */
    mnas_tensor *const t[4] = { mnas_task_support_x(a), mnas_task_support_y(a), mnas_task_query_x(a),
                                mnas_task_query_y(a) };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(mnas_tensor_ndim(t[i]), 2);
        ck_assert_int_eq(mnas_tensor_dim(t[i], 0), 10);
        ck_assert_int_eq(mnas_tensor_dim(t[i], 1), 1);
    }
    mnas_task_free(a);
    mnas_task_free(b);

    o = opts_k(3, 17, 0xF);
    a = mnas_regression_task(ctx, &o, 3, 4, -1);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_x(a), 0), 3);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_y(a), 0), 3);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_query_x(a), 0), 17);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_query_y(a), 0), 17);
    mnas_task_free(a);

    /* The limits themselves are accepted. */
    o = opts_k(1, 1, 0xF);
    a = mnas_regression_task(ctx, &o, 0, 0, -1);
    ck_assert_ptr_nonnull(a);
    mnas_task_free(a);
    o = opts_k(1000000, 1, 0x2);
    a = mnas_regression_task(ctx, &o, 0, 0, -1);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_x(a), 0), 1000000);
    mnas_task_free(a);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");
    free_counting_ctx(ctx, &c);
}
END_TEST

START_TEST(regression_deterministic)
{
    mnas_ctx *c1 = new_ctx(1), *c2 = new_ctx(777);
    mnas_regression_options o = opts_k(7, 9, 0xF);
    const uint64_t seeds[3] = { 0, 42, UINT64_MAX };
    const uint64_t idx[4] = { 0, 1, 123456789, UINT64_MAX };
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 4; i++)
            for (int fam = -1; fam < 4; fam++) {
                mnas_task *a = mnas_regression_task(c1, &o, seeds[s], idx[i], fam);
                /* another context, whose own generator is in another state */
                (void)mnas_rng_u64(mnas_ctx_rng(c2));
                mnas_task *b = mnas_regression_task(c2, &o, seeds[s], idx[i], fam);
                ck_assert_ptr_nonnull(a);
                ck_assert_ptr_nonnull(b);
                ck_assert_msg(tasks_identical(a, b), "seed %d index %d family %d differ", s, i, fam);
                mnas_task_free(a);
                mnas_task_free(b);
            }
    mnas_ctx_free(c1);
    mnas_ctx_free(c2);
}
END_TEST

START_TEST(regression_index_and_seed_matter)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_task *base = mnas_regression_task(ctx, NULL, 5, 10, 0);
    mnas_task *next = mnas_regression_task(ctx, NULL, 5, 11, 0);
    mnas_task *seed = mnas_regression_task(ctx, NULL, 6, 10, 0);
    ck_assert(!tensors_identical(mnas_task_support_x(base), mnas_task_support_x(next)));
    ck_assert(!tensors_identical(mnas_task_support_x(base), mnas_task_support_x(seed)));
    double p0[8], p1[8], p2[8];
    ck_assert_int_eq(mnas_task_params(base, p0), 3);
    ck_assert_int_eq(mnas_task_params(next, p1), 3);
    ck_assert_int_eq(mnas_task_params(seed, p2), 3);
    ck_assert(p0[0] != p1[0] && p0[0] != p2[0]);
    mnas_task_free(base);
    mnas_task_free(next);
    mnas_task_free(seed);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_order_independent)
{
    enum { N = 24 };
    mnas_ctx *ctx = new_ctx(0);
    mnas_regression_options o = opts_k(5, 5, 0xF);
    mnas_task *fwd[N], *perm[N];
    for (int i = 0; i < N; i++) fwd[i] = mnas_regression_task(ctx, &o, 99, (uint64_t)i, -1);
    /* An order that is neither forward nor backward: i -> 7 i mod N (7 and 24 coprime). */
    for (int j = 0; j < N; j++) {
        int i = (7 * j) % N;
        perm[i] = mnas_regression_task(ctx, &o, 99, (uint64_t)i, -1);
    }
    for (int i = 0; i < N; i++) {
        ck_assert_ptr_nonnull(fwd[i]);
        ck_assert_ptr_nonnull(perm[i]);
        ck_assert_msg(tasks_identical(fwd[i], perm[i]), "task %d depends on the order of draws", i);
        mnas_task_free(fwd[i]);
        mnas_task_free(perm[i]);
    }
    mnas_ctx_free(ctx);
}
END_TEST

/* Rebuild a task from the order of draws in docs/data.md, with the public
 * generator only, and compare bit for bit. */
static void check_documented_order(mnas_ctx *ctx, const mnas_regression_options *o, uint64_t seed,
                                   uint64_t index, int forced)
{
    mnas_task *task = mnas_regression_task(ctx, o, seed, index, forced);
    ck_assert_ptr_nonnull(task);
    mnas_rng *rng = mnas_rng_create(ctx, seed, index);
    ck_assert_ptr_nonnull(rng);

    int family = forced;
    if (family < 0) {
        int count = 0;
        for (int f = 0; f < 4; f++) count += (o->families >> f) & 1u;
        uint64_t k = mnas_rng_below(rng, (uint64_t)count);
        for (int f = 0; f < 4 && family < 0; f++)
            if ((o->families >> f) & 1u) {
                if (k == 0) family = f;
                else k--;
            }
    }
    ck_assert_int_eq(mnas_task_family(task), family);
    double p[5], got[8];
    for (int i = 0; i < k_nparams[family]; i++)
        p[i] = k_lo[family][i] + (k_hi[family][i] - k_lo[family][i]) * mnas_rng_uniform(rng);
    ck_assert_int_eq(mnas_task_params(task, got), k_nparams[family]);
    for (int i = 0; i < k_nparams[family]; i++) ck_assert(got[i] == p[i]);

    double u = -4.0 + 8.0 * mnas_rng_uniform(rng);
    const mnas_tensor *xs[2] = { mnas_task_support_x(task), mnas_task_query_x(task) };
    const mnas_tensor *ys[2] = { mnas_task_support_y(task), mnas_task_query_y(task) };
    const int n[2] = { o->k_shot, o->k_query };
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(mnas_tensor_size(xs[s]), n[s]);
        for (int i = 0; i < n[s]; i++) {
            mnas_real x = (mnas_real)(u + sqrt(2.0) * mnas_rng_normal(rng));
            mnas_real y = (mnas_real)spec_f(family, p, (double)x);
            ck_assert(mnas_tensor_cdata(xs[s])[i] == x);
            ck_assert(mnas_tensor_cdata(ys[s])[i] == y);
        }
    }
    mnas_rng_free(rng);
    mnas_task_free(task);
}

START_TEST(regression_documented_order)
{
    mnas_ctx *ctx = new_ctx(0);
    const unsigned masks[5] = { 0xF, 0x5, 0x8, 0x6, 0x1 };
    for (int m = 0; m < 5; m++) {
        mnas_regression_options o = opts_k(3 + m, 4 + 2 * m, masks[m]); /* odd and even counts */
        for (uint64_t index = 0; index < 60; index++) {
            check_documented_order(ctx, &o, 2024 + (uint64_t)m, index, -1);
            for (int f = 0; f < 4; f++)
                if ((masks[m] >> f) & 1u) check_documented_order(ctx, &o, 7, index * 1000003u, f);
        }
    }
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_family_frequencies_and_params)
{
    enum { N = 4000 };
    mnas_ctx *ctx = new_ctx(0);
    mnas_regression_options o = opts_k(1, 1, 0xF);
    int count[4] = { 0 };
    double sum[4][5] = { { 0 } };
    for (int i = 0; i < N; i++) {
        mnas_task *t = mnas_regression_task(ctx, &o, 11, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(t);
        int f = mnas_task_family(t);
        ck_assert_int_ge(f, 0);
        ck_assert_int_lt(f, 4);
        count[f]++;
        double p[8];
        ck_assert_int_eq(mnas_task_params(t, p), k_nparams[f]);
        for (int j = 0; j < k_nparams[f]; j++) {
            ck_assert_msg(p[j] >= k_lo[f][j] && p[j] <= k_hi[f][j], "family %d param %d = %g", f, j, p[j]);
            sum[f][j] += p[j];
        }
        mnas_task_free(t);
    }
    /* Binomial(4000, 1/4): sd 27.4, the bound is 5.5 sd. */
    for (int f = 0; f < 4; f++)
        ck_assert_msg(count[f] > 850 && count[f] < 1150, "family %d drawn %d times of %d", f, count[f], N);
    /* Each parameter's mean sits mid-range (sd of the mean ~0.01 of the
     * range): catches swapped parameters or ranges. */
    for (int f = 0; f < 4; f++)
        for (int j = 0; j < k_nparams[f]; j++) {
            double mean = sum[f][j] / count[f];
            double mid = 0.5 * (k_lo[f][j] + k_hi[f][j]), width = k_hi[f][j] - k_lo[f][j];
            ck_assert_msg(fabs(mean - mid) < 0.05 * width, "family %d param %d: mean %g, range [%g, %g]", f, j,
                          mean, k_lo[f][j], k_hi[f][j]);
        }
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_input_distribution)
{
    enum { N = 4000, K = 50 };
    mnas_ctx *ctx = new_ctx(0);
    mnas_regression_options o = opts_k(K, K, 0xF);
    double sum_m = 0, sum_m2 = 0, sum_var = 0, sum_diff2 = 0, lo = INFINITY, hi = -INFINITY;
    int bins[8] = { 0 };
    for (int i = 0; i < N; i++) {
        mnas_task *t = mnas_regression_task(ctx, &o, 5, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(t);
        const mnas_real *sx = mnas_tensor_cdata(mnas_task_support_x(t));
        const mnas_real *qx = mnas_tensor_cdata(mnas_task_query_x(t));
        double ms = 0, mq = 0;
        for (int j = 0; j < K; j++) {
            ms += sx[j];
            mq += qx[j];
        }
        ms /= K;
        mq /= K;
        double m = 0.5 * (ms + mq), v = 0;
        for (int j = 0; j < K; j++) v += (sx[j] - m) * (sx[j] - m) + (qx[j] - m) * (qx[j] - m);
        v /= 2 * K - 1;
        sum_m += m;
        sum_m2 += m * m;
        sum_var += v;
        sum_diff2 += (ms - mq) * (ms - mq);
        if (m < lo) lo = m;
        if (m > hi) hi = m;
        int b = (int)floor(m + 4.0);
        if (b >= 0 && b < 8) bins[b]++;
        mnas_task_free(t);
    }
    /* The task's mean input estimates u ~ U[-4, 4] (mean 0, variance 16/3)
     * with sd sqrt(2 / 100) = 0.14. */
    double mean_m = sum_m / N, var_m = sum_m2 / N - mean_m * mean_m;
    ck_assert_msg(fabs(mean_m) < 0.2, "mean of u %g", mean_m);
    ck_assert_msg(fabs(var_m - (16.0 / 3.0 + 0.02)) < 0.5, "variance of u %g", var_m);
    ck_assert_msg(lo > -4.8 && lo < -3.8, "smallest u %g", lo);
    ck_assert_msg(hi < 4.8 && hi > 3.8, "largest u %g", hi);
    /* u uniform: 500 per unit bin (the edge bins lose ~6 % to the noise). */
    for (int b = 0; b < 8; b++) ck_assert_msg(bins[b] > 400 && bins[b] < 600, "bin %d has %d", b, bins[b]);
    /* Within a task x ~ N(u, 2): the mean sample variance is 2 (sd 0.003). */
    ck_assert_msg(fabs(sum_var / N - 2.0) < 0.05, "mean within-task variance %g", sum_var / N);
    /* Support and query share u: their means differ by N(0, 2/50 + 2/50). */
    ck_assert_msg(fabs(sum_diff2 / N - 0.08) < 0.01, "support/query mean gap %g", sum_diff2 / N);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_y_is_true_function)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_regression_options o = opts_k(20, 20, 0xF);
    for (int i = 0; i < 1000; i++) {
        mnas_task *t = mnas_regression_task(ctx, &o, 8, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(t);
        int f = mnas_task_family(t);
        double p[8];
        ck_assert_int_eq(mnas_task_params(t, p), k_nparams[f]);
        const mnas_tensor *xs[2] = { mnas_task_support_x(t), mnas_task_query_x(t) };
        const mnas_tensor *ys[2] = { mnas_task_support_y(t), mnas_task_query_y(t) };
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < 20; j++) {
                double x = mnas_tensor_cdata(xs[s])[j], y = mnas_tensor_cdata(ys[s])[j];
                double f_lib = mnas_regression_eval(t, x);
                double f_spec = spec_f(f, p, x);
                /* eval is the function of data.h ... */
                ck_assert_msg(fabs(f_lib - f_spec) <= 1e-12 * (1.0 + fabs(f_spec)),
                              "family %d: eval %.17g, formula %.17g", f, f_lib, f_spec);
                /* ... and y is that function at the stored x, rounded once. */
                ck_assert_msg(fabs(y - f_lib) <= FLT_EPSILON * fabs(f_lib) + 1e-30,
                              "family %d: y %.9g, f(x) %.9g", f, y, f_lib);
            }
        mnas_task_free(t);
    }
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_forced_family)
{
    mnas_ctx *ctx = new_ctx(0);
    for (int f = 0; f < 4; f++)
        for (int i = 0; i < 200; i++) {
            mnas_task *t = mnas_regression_task(ctx, NULL, 3, (uint64_t)i, f);
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(mnas_task_family(t), f);
            double p[8];
            ck_assert_int_eq(mnas_task_params(t, p), k_nparams[f]);
            for (int j = 0; j < k_nparams[f]; j++) ck_assert(p[j] >= k_lo[f][j] && p[j] <= k_hi[f][j]);
            mnas_task_free(t);
        }
    /* A forced family must be in the mask, and one of the four. */
    mnas_regression_options o = opts_k(10, 10, 0x6);
    mnas_task *t = mnas_regression_task(ctx, &o, 3, 0, 1);
    ck_assert_ptr_nonnull(t);
    mnas_task_free(t);
    ck_assert_ptr_null(mnas_regression_task(ctx, &o, 3, 0, 0));
    ASSERT_ERROR(ctx, "mnas_regression_task", MNAS_E_INVALID, "not in the families mask");
    ck_assert_ptr_null(mnas_regression_task(ctx, &o, 3, 0, 3));
    ASSERT_ERROR(ctx, "mnas_regression_task", MNAS_E_INVALID, "family 3");
    ck_assert_ptr_null(mnas_regression_task(ctx, NULL, 3, 0, 4));
    ASSERT_ERROR(ctx, "mnas_regression_task", MNAS_E_INVALID, "family 4");
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_masks)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_regression_options o = opts_k(2, 2, 0x5);
    int count[4] = { 0 };
    for (int i = 0; i < 2000; i++) {
        mnas_task *t = mnas_regression_task(ctx, &o, 17, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(t);
        count[mnas_task_family(t)]++;
        mnas_task_free(t);
    }
    ck_assert_int_eq(count[1], 0);
    ck_assert_int_eq(count[3], 0);
    /* Binomial(2000, 1/2): sd 22. */
    ck_assert_msg(count[0] > 880 && count[0] < 1120, "sinusoid %d of 2000", count[0]);

    for (int f = 0; f < 4; f++) {
        o.families = 1u << f;
        for (int i = 0; i < 100; i++) {
            mnas_task *t = mnas_regression_task(ctx, &o, 17, (uint64_t)i, -1);
            ck_assert_int_eq(mnas_task_family(t), f);
            mnas_task_free(t);
        }
    }
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(regression_bad_options)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    static const char fn[] = "mnas_regression_task";
    const long base = live_blocks(&c);
    mnas_regression_options o = MNAS_REGRESSION_OPTIONS_INIT;

    ck_assert_ptr_null(mnas_regression_task(NULL, &o, 0, 0, -1));

    const size_t sizes[4] = { 0, sizeof o - 1, sizeof o + 8, sizeof(size_t) };
    for (int i = 0; i < 4; i++) {
        o = (mnas_regression_options)MNAS_REGRESSION_OPTIONS_INIT;
        o.struct_size = sizes[i];
        ck_assert_ptr_null(mnas_regression_task(ctx, &o, 0, 0, -1));
        ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "struct_size");
    }
    const int bad_k[5] = { 0, -1, 1000001, INT_MIN, INT_MAX };
    for (int i = 0; i < 5; i++) {
        o = opts_k(bad_k[i], 10, 0xF);
        ck_assert_ptr_null(mnas_regression_task(ctx, &o, 0, 0, -1));
        ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "k_shot");
        o = opts_k(10, bad_k[i], 0xF);
        ck_assert_ptr_null(mnas_regression_task(ctx, &o, 0, 0, -1));
        ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "k_query");
    }
    const unsigned bad_mask[4] = { 0u, 0x10u, 0x1Fu, 0xFFFFFFFFu };
    for (int i = 0; i < 4; i++) {
        o = opts_k(10, 10, bad_mask[i]);
        ck_assert_ptr_null(mnas_regression_task(ctx, &o, 0, 0, -1));
        ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "families mask");
        ck_assert_ptr_null(mnas_regression_task(ctx, &o, 0, 0, 0));
        ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "families mask");
    }
    ck_assert_ptr_null(mnas_regression_task(ctx, NULL, 0, 0, 100));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "family 100");
    ck_assert_int_eq(live_blocks(&c), base);
    ck_assert_int_eq(c.failed, 0);
    free_counting_ctx(ctx, &c);
}
END_TEST

/* ------------------------------------------------------ test sets */

START_TEST(test_set_layout)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    enum { N = 6 };
    mnas_regression_options o = opts_k(5, 7, 0xF);
    mnas_task_set *all = mnas_regression_test_set(ctx, &o, 31, N);
    ck_assert_ptr_nonnull(all);
    ck_assert_uint_eq(mnas_task_set_size(all), 4 * N);
    for (size_t j = 0; j < 4 * N; j++) {
        const mnas_task *t = mnas_task_set_get(all, j);
        ck_assert_ptr_nonnull(t);
        int f = (int)(j / N);
        ck_assert_int_eq(mnas_task_family(t), f); /* family-major */
        ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_x(t), 0), 5);
        ck_assert_int_eq(mnas_tensor_dim(mnas_task_query_y(t), 0), 7);
        /* task i of family f is index f * N + i of the seed, family forced */
        mnas_task *same = mnas_regression_task(ctx, &o, 31, (uint64_t)f * N + j % N, f);
        ck_assert(tasks_identical(t, same));
        mnas_task_free(same);
    }
    /* Tasks of one family are distinct. */
    ck_assert(!tasks_identical(mnas_task_set_get(all, 0), mnas_task_set_get(all, 1)));

    /* A subset of families: the same tasks as in the full set. */
    o.families = 0xA;
    mnas_task_set *some = mnas_regression_test_set(ctx, &o, 31, N);
    ck_assert_ptr_nonnull(some);
    ck_assert_uint_eq(mnas_task_set_size(some), 2 * N);
    for (size_t j = 0; j < 2 * N; j++) {
        const mnas_task *t = mnas_task_set_get(some, j);
        int f = j < N ? 1 : 3;
        ck_assert_int_eq(mnas_task_family(t), f);
        ck_assert(tasks_identical(t, mnas_task_set_get(all, (size_t)f * N + j % N)));
    }
    mnas_task_set_free(some);
    mnas_task_set_free(all);

    /* NULL options: defaults (10 shots, 10 queries, every family). */
    mnas_task_set *def = mnas_regression_test_set(ctx, NULL, 1, 3);
    ck_assert_ptr_nonnull(def);
    ck_assert_uint_eq(mnas_task_set_size(def), 12);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_query_x(mnas_task_set_get(def, 11)), 0), 10);
    ck_assert_int_eq(mnas_task_family(mnas_task_set_get(def, 11)), 3);
    mnas_task_set_free(def);
    free_counting_ctx(ctx, &c);
}
END_TEST

START_TEST(test_set_disjoint_from_training)
{
    enum { N_TRAIN = 800, N_PER = 100 };
    mnas_ctx *ctx = new_ctx(0);
    mnas_task_set *test = mnas_regression_test_set(ctx, NULL, 2, N_PER);
    ck_assert_ptr_nonnull(test);
    ck_assert_uint_eq(mnas_task_set_size(test), 4 * N_PER);
    mnas_task_set *train = mnas_task_set_create(ctx);
    for (int i = 0; i < N_TRAIN; i++)
        ck_assert_int_eq(mnas_task_set_add(train, mnas_regression_task(ctx, NULL, 1, (uint64_t)i, -1)), MNAS_OK);
    int shared = 0;
    for (size_t a = 0; a < mnas_task_set_size(train); a++) {
        const mnas_task *ta = mnas_task_set_get(train, a);
        double pa[8];
        mnas_task_params(ta, pa);
        float xa = mnas_tensor_cdata(mnas_task_support_x(ta))[0];
        for (size_t b = 0; b < mnas_task_set_size(test); b++) {
            const mnas_task *tb = mnas_task_set_get(test, b);
            double pb[8];
            mnas_task_params(tb, pb);
            if (pa[0] == pb[0] || xa == mnas_tensor_cdata(mnas_task_support_x(tb))[0]) shared++;
        }
    }
    /* Two float inputs can coincide by chance (~1e-5 per pair at most), a
     * shared double parameter practically never. */
    ck_assert_msg(shared < 20, "%d train/test pairs share values", shared);
    for (size_t a = 0; a < 50; a++)
        for (size_t b = 0; b < mnas_task_set_size(test); b++)
            ck_assert(!tasks_identical(mnas_task_set_get(train, a), mnas_task_set_get(test, b)));
    mnas_task_set_free(train);
    mnas_task_set_free(test);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(test_set_bad_input)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    static const char fn[] = "mnas_regression_test_set";
    const long base = live_blocks(&c);
    ck_assert_ptr_null(mnas_regression_test_set(NULL, NULL, 0, 5));
    ck_assert_ptr_null(mnas_regression_test_set(ctx, NULL, 0, 0));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "n_per_family 0");
    ck_assert_ptr_null(mnas_regression_test_set(ctx, NULL, 0, 10000001));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "n_per_family 10000001");
    ck_assert_ptr_null(mnas_regression_test_set(ctx, NULL, 0, SIZE_MAX));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "n_per_family");
    mnas_regression_options o = opts_k(0, 10, 0xF);
    ck_assert_ptr_null(mnas_regression_test_set(ctx, &o, 0, 5));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "k_shot");
    o = opts_k(10, 10, 0x30);
    ck_assert_ptr_null(mnas_regression_test_set(ctx, &o, 0, 5));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "families mask");
    o = opts_k(10, 10, 0xF);
    o.struct_size = 4;
    ck_assert_ptr_null(mnas_regression_test_set(ctx, &o, 0, 5));
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "struct_size");
    ck_assert_int_eq(live_blocks(&c), base);
    free_counting_ctx(ctx, &c);
}
END_TEST

/* ------------------------------------------------------ task sets */

START_TEST(task_set_grows_and_keeps_order)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    mnas_task_set *set = mnas_task_set_create(ctx);
    ck_assert_ptr_nonnull(set);
    ck_assert_uint_eq(mnas_task_set_size(set), 0);
    ck_assert_ptr_null(mnas_task_set_get(set, 0));
    ASSERT_ERROR(ctx, "mnas_task_set_get", MNAS_E_INVALID, "out of range");

    enum { N = 37 }; /* past several doublings */
    mnas_task *added[N];
    for (int i = 0; i < N; i++) {
        added[i] = mnas_regression_task(ctx, NULL, 4, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(added[i]);
        ck_assert_int_eq(mnas_task_set_add(set, added[i]), MNAS_OK);
        ck_assert_uint_eq(mnas_task_set_size(set), (size_t)i + 1);
    }
    for (int i = 0; i < N; i++) ck_assert_ptr_eq(mnas_task_set_get(set, (size_t)i), added[i]);
    ck_assert_ptr_null(mnas_task_set_get(set, N));
    ASSERT_ERROR(ctx, "mnas_task_set_get", MNAS_E_INVALID, "index 37");
    ck_assert_ptr_null(mnas_task_set_get(set, SIZE_MAX));
    ck_assert_ptr_null(mnas_task_set_get(NULL, 0));
    ck_assert_uint_eq(mnas_task_set_size(NULL), 0);

    /* The set owns its tasks: freeing one it holds is ignored (no double free). */
    mnas_task_free(added[3]);
    ck_assert_int_eq(mnas_task_family(mnas_task_set_get(set, 3)), mnas_task_family(added[3]));
    mnas_task_set_free(set); /* frees all 37 */
    free_counting_ctx(ctx, &c);
}
END_TEST

START_TEST(task_set_add_failures)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    static const char fn[] = "mnas_task_set_add";
    const long base = live_blocks(&c);

    /* NULL set: the task is freed all the same. */
    mnas_task *t = mnas_regression_task(ctx, NULL, 0, 0, -1);
    ck_assert_int_eq(mnas_task_set_add(NULL, t), MNAS_E_INVALID);
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "set is NULL");
    ck_assert_int_eq(live_blocks(&c), base);
    ck_assert_int_eq(mnas_task_set_add(NULL, NULL), MNAS_E_INVALID);

    mnas_task_set *set = mnas_task_set_create(ctx);
    ck_assert_int_eq(mnas_task_set_add(set, NULL), MNAS_E_INVALID);
    ASSERT_ERROR(ctx, fn, MNAS_E_INVALID, "task is NULL");

    /* Adding a task twice is refused and leaves it to the set. */
    t = mnas_regression_task(ctx, NULL, 0, 1, -1);
    ck_assert_int_eq(mnas_task_set_add(set, t), MNAS_OK);
    ck_assert_int_eq(mnas_task_set_add(set, t), MNAS_E_STATE);
    ASSERT_ERROR(ctx, fn, MNAS_E_STATE, "already belongs to this set");
    ck_assert_uint_eq(mnas_task_set_size(set), 1);
    mnas_task_set *set2 = mnas_task_set_create(ctx);
    ck_assert_int_eq(mnas_task_set_add(set2, t), MNAS_E_STATE);
    ASSERT_ERROR(ctx, fn, MNAS_E_STATE, "another set");
    ck_assert_uint_eq(mnas_task_set_size(set2), 0);
    mnas_task_set_free(set2);

    /* A task of another context is refused and freed (into its own context). */
    counting_alloc c2;
    mnas_ctx *other = counting_ctx(&c2);
    const long other_base = live_blocks(&c2);
    mnas_task *foreign = mnas_regression_task(other, NULL, 0, 2, -1);
    ck_assert_int_gt(live_blocks(&c2), other_base);
    ck_assert_int_eq(mnas_task_set_add(set, foreign), MNAS_E_MISMATCH);
    ASSERT_ERROR(ctx, fn, MNAS_E_MISMATCH, "another context");
    ck_assert_int_eq(live_blocks(&c2), other_base);
    ck_assert_uint_eq(mnas_task_set_size(set), 1);
    free_counting_ctx(other, &c2);

    mnas_task_set_free(set);
    ck_assert_int_eq(live_blocks(&c), base);
    free_counting_ctx(ctx, &c);
}
END_TEST

/* ------------------------------------------- allocation failures */

/* Refuse the k-th allocation of a call for k = 0, 1, ... until the call
 * needs fewer than k: every refusal gives NULL / MNAS_E_NOMEM, a message
 * naming fn, and leaves no allocation behind. */
#define FAULT_LOOP(c, ctx, fn, call_ok, cleanup)                                         \
    for (long k_ = 0;; k_++) {                                                           \
        const long before_ = live_blocks(&(c));                                          \
        (c).failed = 0;                                                                  \
        (c).fail_after = (c).allocs + k_;                                                \
        mnas_ctx_clear_error(ctx);                                                       \
        int ok_ = (call_ok);                                                             \
        (c).fail_after = -1;                                                             \
        if ((c).failed == 0) {                                                           \
            ck_assert_msg(ok_, "%s failed without an allocation failure", fn);           \
            ck_assert_int_gt(k_, 0);                                                     \
            cleanup;                                                                     \
            ck_assert_int_eq(live_blocks(&(c)), before_);                                \
            break;                                                                       \
        }                                                                                \
        ck_assert_msg(!ok_, "%s succeeded although allocation %ld failed", fn, k_);      \
        ASSERT_ERROR(ctx, fn, MNAS_E_NOMEM, "");                                         \
        ck_assert_int_eq(live_blocks(&(c)), before_);                                    \
        ck_assert_int_lt(k_, 10000);                                                     \
    }

START_TEST(alloc_failures)
{
    counting_alloc c;
    mnas_ctx *ctx = counting_ctx(&c);
    mnas_regression_options o = opts_k(4, 6, 0xF);
    mnas_task *t = NULL;
    FAULT_LOOP(c, ctx, "mnas_regression_task", (t = mnas_regression_task(ctx, &o, 1, 2, -1)) != NULL,
               mnas_task_free(t));

    mnas_tensor *sx = tensor2(ctx, 3, 2, NULL), *sy = tensor2(ctx, 3, 1, NULL);
    FAULT_LOOP(c, ctx, "mnas_task_create", (t = mnas_task_create(ctx, sx, sy, sx, sy, 0)) != NULL,
               mnas_task_free(t));
    mnas_tensor_free(sx);
    mnas_tensor_free(sy);

    mnas_task_set *s = NULL;
    FAULT_LOOP(c, ctx, "mnas_regression_test_set", (s = mnas_regression_test_set(ctx, &o, 3, 3)) != NULL,
               mnas_task_set_free(s));
    FAULT_LOOP(c, ctx, "mnas_task_set_create", (s = mnas_task_set_create(ctx)) != NULL, mnas_task_set_free(s));

    /* Growing a set: a refused growth frees the task and leaves the set as it was. */
    s = mnas_task_set_create(ctx);
    for (int i = 0; i < 20; i++) {
        mnas_task *ti = mnas_regression_task(ctx, &o, 1, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(ti);
        size_t size = mnas_task_set_size(s);
        long before = live_blocks(&c);
        c.failed = 0;
        c.fail_after = c.allocs; /* refuse the next allocation */
        mnas_status st = mnas_task_set_add(s, ti);
        c.fail_after = -1;
        if (c.failed) { /* the set had to grow */
            ck_assert_int_eq(st, MNAS_E_NOMEM);
            ASSERT_ERROR(ctx, "mnas_task_set_add", MNAS_E_NOMEM, "");
            ck_assert_uint_eq(mnas_task_set_size(s), size);
            ck_assert_int_lt(live_blocks(&c), before); /* the task was freed */
            ti = mnas_regression_task(ctx, &o, 1, (uint64_t)i, -1);
            st = mnas_task_set_add(s, ti);
        }
        ck_assert_int_eq(st, MNAS_OK);
        ck_assert_uint_eq(mnas_task_set_size(s), size + 1);
    }
    mnas_task_set_free(s);
    free_counting_ctx(ctx, &c);
}
END_TEST

/* ---------------------------------------------------- statistics */

static void assert_close(double got, double want, double rel)
{
    ck_assert_msg(fabs(got - want) <= rel * fabs(want) + 1e-300, "got %.17g, want %.17g", got, want);
}

START_TEST(mean_ci95_values)
{
    double mean = 0, ci = 0;
    const double a[4] = { 1, 2, 3, 4 };
    ck_assert_int_eq(mnas_mean_ci95(a, 4, &mean, &ci), MNAS_OK);
    /* sd = sqrt(5/3) (n - 1 denominator); ci = 1.96 sd / 2 */
    assert_close(mean, 2.5, 1e-15);
    assert_close(ci, 1.2651745597610895, 1e-13);

    const double b[8] = { 2, 4, 4, 4, 5, 5, 7, 9 };
    ck_assert_int_eq(mnas_mean_ci95(b, 8, &mean, &ci), MNAS_OK);
    /* sample variance 32/7; ci = 1.96 sqrt(32/7) / sqrt(8) = 1.96 sqrt(4/7) */
    assert_close(mean, 5.0, 1e-15);
    assert_close(ci, 1.4816207341961706, 1e-13);

    /* n - 1, not n: {0, 2} has sd sqrt(2), so ci = 1.96 sqrt(2) / sqrt(2) */
    const double two[2] = { 0, 2 };
    ck_assert_int_eq(mnas_mean_ci95(two, 2, &mean, &ci), MNAS_OK);
    assert_close(mean, 1.0, 1e-15);
    assert_close(ci, 1.96, 1e-14);

    /* one value: ci 0 */
    const double one = -3.25;
    ck_assert_int_eq(mnas_mean_ci95(&one, 1, &mean, &ci), MNAS_OK);
    ck_assert(mean == -3.25 && ci == 0.0);

    /* constant values: no spread */
    double same[100];
    for (int i = 0; i < 100; i++) same[i] = 0.1;
    ck_assert_int_eq(mnas_mean_ci95(same, 100, &mean, &ci), MNAS_OK);
    assert_close(mean, 0.1, 1e-15);
    ck_assert_msg(ci >= 0 && ci < 1e-16, "ci of constants %g", ci);
    const double zeros[3] = { 0, 0, 0 };
    ck_assert_int_eq(mnas_mean_ci95(zeros, 3, &mean, &ci), MNAS_OK);
    ck_assert(mean == 0.0 && ci == 0.0);
}
END_TEST

START_TEST(mean_ci95_stable)
{
    double mean, ci;
    /* A large offset: the naive sum of squares loses every digit here. */
    const double off[4] = { 1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4 };
    ck_assert_int_eq(mnas_mean_ci95(off, 4, &mean, &ci), MNAS_OK);
    assert_close(mean, 1e9 + 2.5, 1e-15);
    assert_close(ci, 1.2651745597610895, 1e-7);

    /* Finite values whose plain sum would overflow. */
    const double big[2] = { 1.5e308, 1.7e308 };
    ck_assert_int_eq(mnas_mean_ci95(big, 2, &mean, &ci), MNAS_OK);
    assert_close(mean, 1.6e308, 1e-15);
    assert_close(ci, 1.96e307, 1e-13); /* sd = 0.1e308 sqrt(2), / sqrt(2) */

    /* Tiny values keep their precision. */
    const double tiny[4] = { 1e-310, 2e-310, 3e-310, 4e-310 };
    ck_assert_int_eq(mnas_mean_ci95(tiny, 4, &mean, &ci), MNAS_OK);
    assert_close(mean, 2.5e-310, 1e-9);
    assert_close(ci, 1.2651745597610895e-310, 1e-9);

    /* Many values: the mean of 0..999999 and its CI. */
    enum { N = 1000000 };
    double *v = malloc(N * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int i = 0; i < N; i++) v[i] = (double)i;
    ck_assert_int_eq(mnas_mean_ci95(v, N, &mean, &ci), MNAS_OK);
    assert_close(mean, 499999.5, 1e-14);
    /* variance n (n + 1) / 12 with n = N */
    assert_close(ci, 1.96 * sqrt((double)N * (N + 1) / 12.0) / sqrt((double)N), 1e-12);
    free(v);
}
END_TEST

START_TEST(mean_ci95_bad_input)
{
    const double a[3] = { 1, 2, 3 };
    double mean = 42, ci = 42;
    ck_assert_int_eq(mnas_mean_ci95(a, 0, &mean, &ci), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_mean_ci95(NULL, 3, &mean, &ci), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_mean_ci95(a, 3, NULL, &ci), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_mean_ci95(a, 3, &mean, NULL), MNAS_E_INVALID);
    ck_assert(mean == 42 && ci == 42); /* bad arguments change nothing */

    const double specials[3] = { NAN, INFINITY, -INFINITY };
    for (int s = 0; s < 3; s++)
        for (int pos = 0; pos < 3; pos++) {
            double v[3] = { 1, 2, 3 };
            v[pos] = specials[s];
            mean = 0;
            ci = 0;
            ck_assert_int_eq(mnas_mean_ci95(v, 3, &mean, &ci), MNAS_E_NUMERIC);
            ck_assert(isnan(mean) && isnan(ci));
        }
    mean = 0;
    ci = 0;
    const double nan1 = NAN;
    ck_assert_int_eq(mnas_mean_ci95(&nan1, 1, &mean, &ci), MNAS_E_NUMERIC);
    ck_assert(isnan(mean) && isnan(ci));
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");

    TCase *tc = tcase_create("task");
    tcase_add_test(tc, task_create_copies);
    tcase_add_test(tc, task_create_shapes_accepted);
    tcase_add_test(tc, task_create_bad_input);
    tcase_add_test(tc, task_queries_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("regression");
    tcase_add_test(tc, regression_family_names);
    tcase_add_test(tc, regression_defaults_and_shapes);
    tcase_add_test(tc, regression_deterministic);
    tcase_add_test(tc, regression_index_and_seed_matter);
    tcase_add_test(tc, regression_order_independent);
    tcase_add_test(tc, regression_documented_order);
    tcase_add_test(tc, regression_family_frequencies_and_params);
    tcase_add_test(tc, regression_input_distribution);
    tcase_add_test(tc, regression_y_is_true_function);
    tcase_add_test(tc, regression_forced_family);
    tcase_add_test(tc, regression_masks);
    tcase_add_test(tc, regression_bad_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("test_set");
    tcase_add_test(tc, test_set_layout);
    tcase_add_test(tc, test_set_disjoint_from_training);
    tcase_add_test(tc, test_set_bad_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("task_set");
    tcase_add_test(tc, task_set_grows_and_keeps_order);
    tcase_add_test(tc, task_set_add_failures);
    tcase_add_test(tc, alloc_failures);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_add_test(tc, mean_ci95_values);
    tcase_add_test(tc, mean_ci95_stable);
    tcase_add_test(tc, mean_ci95_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
