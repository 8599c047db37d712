/* The nn layer in the float32 library, as users link it: parameter sets
 * (naming, initialisers, groups, gradient buffers), the SGD / momentum /
 * Adam optimisers against hand recurrences and a double reference, and the
 * functional MLP against a hand composition of the public ops, with fast
 * weights and finite differences. Bad input of every kind must be refused
 * with a message and leave the objects as they were. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_tape *tp;

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 2024;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
}

/* Objects of tests that are expected to fail on a library bug, freed here so
 * that a failing assertion does not also show up as a leak under valgrind. */
#define KEEP_MAX 8
static mnas_params *kept_params[KEEP_MAX];
static mnas_mlp *kept_mlps[KEEP_MAX];
static mnas_tensor *kept_tensors[KEEP_MAX];

static mnas_params *keep_params(mnas_params *p)
{
    for (int i = 0; i < KEEP_MAX; i++)
        if (!kept_params[i]) return kept_params[i] = p;
    ck_abort_msg("keep_params: full");
    return NULL;
}

static mnas_mlp *keep_mlp(mnas_mlp *m)
{
    for (int i = 0; i < KEEP_MAX; i++)
        if (!kept_mlps[i]) return kept_mlps[i] = m;
    ck_abort_msg("keep_mlp: full");
    return NULL;
}

static mnas_tensor *keep_tensor(mnas_tensor *t)
{
    for (int i = 0; i < KEEP_MAX; i++)
        if (!kept_tensors[i]) return kept_tensors[i] = t;
    ck_abort_msg("keep_tensor: full");
    return NULL;
}

static void teardown(void)
{
    for (int i = 0; i < KEEP_MAX; i++) {
        mnas_params_free(kept_params[i]);
        mnas_mlp_free(kept_mlps[i]);
        mnas_tensor_free(kept_tensors[i]);
        kept_params[i] = NULL;
        kept_mlps[i] = NULL;
        kept_tensors[i] = NULL;
    }
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}

/* ---- helpers ------------------------------------------------------------- */

static mnas_real *data_of(mnas_tensor *t)
{
    mnas_real *d = mnas_tensor_data(t);
    ck_assert_ptr_nonnull(d);
    return d;
}

static mnas_real *W(mnas_params *p, size_t i) { return data_of(mnas_params_get(p, i)); }
static mnas_real *G(mnas_params *p, size_t i) { return data_of(mnas_params_grad(p, i)); }

static void set_values(mnas_tensor *t, const double *v)
{
    mnas_real *d = data_of(t);
    for (int64_t j = 0; j < mnas_tensor_size(t); j++) d[j] = (mnas_real)v[j];
}

/* Macros, so that a failure reports the caller's line. */
#define expect_message(msg, needle)                                                                          \
    do {                                                                                                     \
        const char *msg_ = (msg);                                                                            \
        ck_assert_ptr_nonnull(msg_);                                                                         \
        ck_assert_msg(strstr(msg_, (needle)) != NULL, "message \"%s\" does not mention \"%s\"", msg_, (needle)); \
    } while (0)

#define expect_ctx_message(needle) expect_message(mnas_ctx_last_error(ctx), (needle))

static int add1(mnas_params *p, const char *name, int64_t n, mnas_init init, double arg, int group)
{
    int64_t s[1] = { n };
    return mnas_params_add(p, name, 1, s, init, arg, group);
}

static int add2(mnas_params *p, const char *name, int64_t r, int64_t c, mnas_init init, double arg, int group)
{
    int64_t s[2] = { r, c };
    return mnas_params_add(p, name, 2, s, init, arg, group);
}

/* All values of a set, concatenated (caller frees). */
static mnas_real *snapshot_values(mnas_params *p)
{
    int64_t n = mnas_params_numel(p);
    mnas_real *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    ck_assert_ptr_nonnull(s);
    int64_t k = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        int64_t m = mnas_tensor_size(mnas_params_get(p, i));
        memcpy(s + k, W(p, i), (size_t)m * sizeof *s);
        k += m;
    }
    return s;
}

static mnas_real *snapshot_grads(mnas_params *p)
{
    int64_t n = mnas_params_numel(p);
    mnas_real *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    ck_assert_ptr_nonnull(s);
    int64_t k = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        int64_t m = mnas_tensor_size(mnas_params_grad(p, i));
        memcpy(s + k, G(p, i), (size_t)m * sizeof *s);
        k += m;
    }
    return s;
}

static int same_values(mnas_params *p, const mnas_real *snap)
{
    mnas_real *now = snapshot_values(p);
    int same = memcmp(now, snap, (size_t)mnas_params_numel(p) * sizeof *now) == 0;
    free(now);
    return same;
}

static int same_grads(mnas_params *p, const mnas_real *snap)
{
    mnas_real *now = snapshot_grads(p);
    int same = memcmp(now, snap, (size_t)mnas_params_numel(p) * sizeof *now) == 0;
    free(now);
    return same;
}

static int same_tensor(mnas_tensor *a, mnas_tensor *b)
{
    int64_t sa[MNAS_MAX_DIMS], sb[MNAS_MAX_DIMS];
    if (mnas_tensor_ndim(a) != mnas_tensor_ndim(b)) return 0;
    ck_assert_int_eq(mnas_tensor_shape(a, sa), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_shape(b, sb), MNAS_OK);
    if (memcmp(sa, sb, (size_t)mnas_tensor_ndim(a) * sizeof *sa) != 0) return 0;
    return memcmp(mnas_tensor_cdata(a), mnas_tensor_cdata(b), (size_t)mnas_tensor_size(a) * sizeof(mnas_real)) == 0;
}

/* ==== parameter sets ====================================================== */

START_TEST(params_add_and_query)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(mnas_params_count(p), 0);
    ck_assert_int_eq(mnas_params_numel(p), 0);

    int64_t s2[2] = { 2, 3 }, s1[1] = { 4 };
    ck_assert_int_eq(mnas_params_add(p, "layer.w", 2, s2, MNAS_INIT_ZEROS, 0, 0), 0);
    ck_assert_int_eq(mnas_params_add(p, "layer.b", 1, s1, MNAS_INIT_ONES, 0, 3), 1);
    ck_assert_int_eq(mnas_params_add(p, "temperature", 0, NULL, MNAS_INIT_CONSTANT, 2.5, 15), 2);
    ck_assert_uint_eq(mnas_params_count(p), 3);
    ck_assert_int_eq(mnas_params_numel(p), 6 + 4 + 1);

    ck_assert_str_eq(mnas_params_name(p, 0), "layer.w");
    ck_assert_str_eq(mnas_params_name(p, 1), "layer.b");
    ck_assert_str_eq(mnas_params_name(p, 2), "temperature");
    ck_assert_int_eq(mnas_params_group(p, 0), 0);
    ck_assert_int_eq(mnas_params_group(p, 1), 3);
    ck_assert_int_eq(mnas_params_group(p, 2), 15);
    ck_assert_int_eq(mnas_params_find(p, "layer.b"), 1);
    ck_assert_int_eq(mnas_params_find(p, "temperature"), 2);
    ck_assert_int_eq(mnas_params_find(p, "layer"), -1);
    ck_assert_int_eq(mnas_params_find(p, "nothing"), -1);
    ck_assert_int_eq(mnas_params_find(p, NULL), -1);

    /* shapes round-trip, for the values and the gradient buffers */
    int64_t sh[MNAS_MAX_DIMS];
    ck_assert_int_eq(mnas_tensor_ndim(mnas_params_get(p, 0)), 2);
    ck_assert_int_eq(mnas_tensor_shape(mnas_params_get(p, 0), sh), MNAS_OK);
    ck_assert(sh[0] == 2 && sh[1] == 3);
    ck_assert_int_eq(mnas_tensor_ndim(mnas_params_get(p, 1)), 1);
    ck_assert_int_eq(mnas_tensor_dim(mnas_params_get(p, 1), 0), 4);
    ck_assert_int_eq(mnas_tensor_ndim(mnas_params_get(p, 2)), 0);
    ck_assert_double_eq(mnas_tensor_item(mnas_params_get(p, 2)), 2.5);
    for (size_t i = 0; i < 3; i++) {
        mnas_tensor *v = mnas_params_get(p, i), *g = mnas_params_grad(p, i);
        ck_assert_ptr_nonnull(v);
        ck_assert_ptr_nonnull(g);
        ck_assert_ptr_ne(v, g);
        ck_assert_int_eq(mnas_tensor_requires_grad(v), 1);
        ck_assert_int_eq(mnas_tensor_is_tape_owned(v), 0);
        ck_assert_int_eq(mnas_tensor_ndim(g), mnas_tensor_ndim(v));
        ck_assert_int_eq(mnas_tensor_size(g), mnas_tensor_size(v));
        for (int64_t j = 0; j < mnas_tensor_size(g); j++) ck_assert(G(p, i)[j] == 0);
    }
    for (int j = 0; j < 6; j++) ck_assert(W(p, 0)[j] == 0);
    for (int j = 0; j < 4; j++) ck_assert(W(p, 1)[j] == 1);

    /* out of range */
    ck_assert_ptr_null(mnas_params_get(p, 3));
    ck_assert_ptr_null(mnas_params_grad(p, 3));
    ck_assert_ptr_null(mnas_params_name(p, 3));
    ck_assert_int_eq(mnas_params_group(p, 3), -1);

    /* many more: indices stay consecutive across the set's growth, and the
     * tensor array follows */
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_int_eq(add1(p, name, i + 1, MNAS_INIT_CONSTANT, i, i % 16), 3 + i);
    }
    ck_assert_uint_eq(mnas_params_count(p), 43);
    ck_assert_int_eq(mnas_params_numel(p), 11 + 40 * 41 / 2);
    mnas_tensor *const *ts = mnas_params_tensors(p);
    ck_assert_ptr_nonnull(ts);
    for (size_t i = 0; i < 43; i++) ck_assert_ptr_eq(ts[i], mnas_params_get(p, i));
    ck_assert_int_eq(mnas_params_find(p, "p39"), 42);
    ck_assert_int_eq(mnas_params_group(p, 42), 39 % 16);
    ck_assert(W(p, 42)[39] == 39);

    /* NULL sets */
    ck_assert_uint_eq(mnas_params_count(NULL), 0);
    ck_assert_int_eq(mnas_params_numel(NULL), 0);
    ck_assert_int_eq(add1(NULL, "x", 1, MNAS_INIT_ZEROS, 0, 0), -1);
    ck_assert_ptr_null(mnas_params_create(NULL));
    mnas_params_free(p);
    mnas_params_free(NULL); /* no-op */
}
END_TEST

START_TEST(params_add_rejects_bad_input)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(add2(p, "a", 2, 2, MNAS_INIT_NORMAL, 1.0, 0), 0);
    mnas_real *before = snapshot_values(p);

    char long_name[65], max_name[64];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    memset(max_name, 'y', 63);
    max_name[63] = '\0';

    struct {
        const char *name;
        int ndim;
        int64_t extent;
        int init;
        double arg;
        int group;
        const char *needle;
    } bad[] = {
        { "a", 1, 3, MNAS_INIT_ZEROS, 0, 0, "exists" },           /* duplicate */
        { "", 1, 3, MNAS_INIT_ZEROS, 0, 0, "name" },              /* empty */
        { long_name, 1, 3, MNAS_INIT_ZEROS, 0, 0, "name" },       /* 64 characters */
        { "has space", 1, 3, MNAS_INIT_ZEROS, 0, 0, "name" },     /* space */
        { "tab\tname", 1, 3, MNAS_INIT_ZEROS, 0, 0, "name" },     /* control character */
        { NULL, 1, 3, MNAS_INIT_ZEROS, 0, 0, "name" },            /* no name */
        { "b", 1, 3, 6, 0, 0, "initialiser" },                    /* unknown kind */
        { "b", 1, 3, -1, 0, 0, "initialiser" },                   /* unknown kind */
        { "b", 1, 3, MNAS_INIT_FAN_IN, 0.5, 0, "argument" },      /* fan_in < 1 */
        { "b", 1, 3, MNAS_INIT_FAN_IN, 0, 0, "argument" },        /* fan_in < 1 */
        { "b", 1, 3, MNAS_INIT_FAN_IN, -4, 0, "argument" },       /* fan_in < 1 */
        { "b", 1, 3, MNAS_INIT_UNIFORM, -1, 0, "argument" },      /* negative scale */
        { "b", 1, 3, MNAS_INIT_NORMAL, -0.5, 0, "argument" },     /* negative scale */
        { "b", 1, 3, MNAS_INIT_NORMAL, NAN, 0, "argument" },      /* NaN */
        { "b", 1, 3, MNAS_INIT_ZEROS, NAN, 0, "argument" },       /* NaN, even if unused */
        { "b", 1, 3, MNAS_INIT_CONSTANT, INFINITY, 0, "argument" }, /* Inf */
        { "b", 1, 3, MNAS_INIT_FAN_IN, NAN, 0, "argument" },      /* NaN fan_in */
        { "b", 1, 3, MNAS_INIT_ZEROS, 0, -1, "group" },           /* group -1 */
        { "b", 1, 3, MNAS_INIT_ZEROS, 0, 16, "group" },           /* group 16 */
        { "b", 5, 3, MNAS_INIT_ZEROS, 0, 0, "ndim" },             /* too many axes */
        { "b", 1, 0, MNAS_INIT_ZEROS, 0, 0, "extent" },           /* empty axis */
        { "b", 1, -2, MNAS_INIT_ZEROS, 0, 0, "extent" },          /* negative axis */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int64_t s[5] = { bad[k].extent, 1, 1, 1, 1 };
        mnas_ctx_clear_error(ctx);
        int r = mnas_params_add(p, bad[k].name, bad[k].ndim, s, (mnas_init)bad[k].init, bad[k].arg, bad[k].group);
        ck_assert_msg(r == -1, "case %zu was accepted (index %d)", k, r);
        ck_assert_msg(mnas_params_count(p) == 1, "case %zu changed the count", k);
        ck_assert_int_eq(mnas_params_numel(p), 4);
        ck_assert_msg(strlen(mnas_ctx_last_error(ctx)) > 0, "case %zu left no message", k);
        expect_ctx_message(bad[k].needle);
    }
    ck_assert(same_values(p, before));
    ck_assert_int_eq(mnas_params_find(p, "b"), -1);
    ck_assert_str_eq(mnas_params_name(p, 0), "a");

    /* the limits themselves are fine: 63 characters, groups 0 and 15,
     * fan_in 1, scale 0, a negative constant */
    ck_assert_int_eq(add1(p, max_name, 2, MNAS_INIT_ZEROS, 0, 15), 1);
    ck_assert_str_eq(mnas_params_name(p, 1), max_name);
    ck_assert_int_eq(add1(p, "fan1", 2, MNAS_INIT_FAN_IN, 1.0, 0), 2);
    ck_assert_int_eq(add1(p, "zero_scale", 2, MNAS_INIT_NORMAL, 0.0, 0), 3);
    ck_assert(W(p, 3)[0] == 0 && W(p, 3)[1] == 0);
    ck_assert_int_eq(add1(p, "neg_const", 2, MNAS_INIT_CONSTANT, -1.5, 0), 4);
    ck_assert(W(p, 4)[0] == -1.5f && W(p, 4)[1] == -1.5f);
    ck_assert_int_eq(add1(p, "punct:[0]/x~", 1, MNAS_INIT_ZEROS, 0, 0), 5);
    free(before);
    mnas_params_free(p);
}
END_TEST

START_TEST(params_initialisers)
{
    mnas_params *p = mnas_params_create(ctx);
    const double fan_in = 16, bound = 1.0 / sqrt(fan_in);
    ck_assert_int_eq(add2(p, "fan", 64, 64, MNAS_INIT_FAN_IN, fan_in, 0), 0);
    ck_assert_int_eq(add2(p, "ones", 3, 5, MNAS_INIT_ONES, 0, 0), 1);
    ck_assert_int_eq(add2(p, "zeros", 3, 5, MNAS_INIT_ZEROS, 0, 0), 2);
    ck_assert_int_eq(add2(p, "const", 3, 5, MNAS_INIT_CONSTANT, 0.375, 0), 3);
    ck_assert_int_eq(add2(p, "uni", 64, 64, MNAS_INIT_UNIFORM, 3.0, 0), 4);
    ck_assert_int_eq(add2(p, "normal", 100, 200, MNAS_INIT_NORMAL, 2.0, 0), 5);

    /* FAN_IN: U[-1/sqrt(fan_in), 1/sqrt(fan_in)], spread over the interval */
    {
        const mnas_real *d = W(p, 0);
        double lo = 1, hi = -1, sum = 0, sq = 0;
        for (int j = 0; j < 4096; j++) {
            ck_assert_msg(fabs(d[j]) <= bound * (1 + 1e-6), "%g outside +-%g", (double)d[j], bound);
            lo = fmin(lo, d[j]);
            hi = fmax(hi, d[j]);
            sum += d[j];
            sq += (double)d[j] * d[j];
        }
        ck_assert_msg(hi > 0.99 * bound && lo < -0.99 * bound, "range [%g, %g] vs bound %g", lo, hi, bound);
        double mean = sum / 4096, var = sq / 4096 - mean * mean;
        ck_assert_msg(fabs(mean) < 0.02, "mean %g", mean);
        ck_assert_msg(fabs(var - bound * bound / 3) < 0.1 * bound * bound / 3, "variance %g", var);
    }
    for (int j = 0; j < 15; j++) {
        ck_assert(W(p, 1)[j] == 1);
        ck_assert(W(p, 2)[j] == 0);
        ck_assert(W(p, 3)[j] == 0.375f);
    }
    /* UNIFORM: U[-scale, scale] */
    {
        const mnas_real *d = W(p, 4);
        double lo = 10, hi = -10;
        for (int j = 0; j < 4096; j++) {
            ck_assert(fabs(d[j]) <= 3.0 * (1 + 1e-6));
            lo = fmin(lo, d[j]);
            hi = fmax(hi, d[j]);
        }
        ck_assert_msg(hi > 2.97 && lo < -2.97, "range [%g, %g]", lo, hi);
    }
    /* NORMAL: N(0, scale^2) */
    {
        const mnas_real *d = W(p, 5);
        const int n = 20000;
        double sum = 0, sq = 0, big = 0;
        for (int j = 0; j < n; j++) {
            sum += d[j];
            sq += (double)d[j] * d[j];
            if (fabs(d[j]) > 2 * 2.0) big++;
        }
        double mean = sum / n, sd = sqrt(sq / n - mean * mean);
        ck_assert_msg(fabs(mean) < 0.06, "mean %g", mean);
        ck_assert_msg(fabs(sd - 2.0) < 0.05, "sd %g", sd);
        /* P(|z| > 2) = 4.55 % */
        ck_assert_msg(fabs(big / n - 0.0455) < 0.01, "tail fraction %g", big / n);
    }
    mnas_params_free(p);
}
END_TEST

START_TEST(params_init_reproducible)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(add2(p, "w", 8, 5, MNAS_INIT_FAN_IN, 5, 0), 0);
    ck_assert_int_eq(add1(p, "b", 8, MNAS_INIT_UNIFORM, 0.5, 0), 1);
    ck_assert_int_eq(add1(p, "z", 3, MNAS_INIT_ZEROS, 0, 0), 2);
    ck_assert_int_eq(add1(p, "n", 30, MNAS_INIT_NORMAL, 1.0, 0), 3);
    ck_assert_int_eq(add1(p, "c", 3, MNAS_INIT_CONSTANT, -7, 0), 4);
    mnas_real *at_add = snapshot_values(p);

    /* overwrite the deterministic ones to see init restore them */
    W(p, 2)[1] = 5;
    W(p, 4)[0] = 5;

    mnas_rng *r1 = mnas_rng_create(ctx, 42, 0), *r2 = mnas_rng_create(ctx, 42, 0), *r3 = mnas_rng_create(ctx, 43, 0);
    ck_assert_ptr_nonnull(r1);
    ck_assert_ptr_nonnull(r2);
    ck_assert_ptr_nonnull(r3);
    ck_assert_int_eq(mnas_params_init(p, r1), MNAS_OK);
    mnas_real *first = snapshot_values(p);
    ck_assert(W(p, 2)[1] == 0 && W(p, 4)[0] == -7);
    /* different from the values drawn at add time (ctx RNG) */
    int differ = 0;
    for (int j = 0; j < 40; j++) differ += first[j] != at_add[j];
    ck_assert_int_gt(differ, 35);

    ck_assert_int_eq(mnas_params_init(p, r2), MNAS_OK);
    ck_assert(same_values(p, first)); /* same seed, same values, bit for bit */
    ck_assert_int_eq(mnas_params_init(p, r3), MNAS_OK);
    ck_assert(!same_values(p, first)); /* another seed, other values */
    ck_assert(W(p, 0)[0] != first[0]);
    /* within their bounds again */
    for (int j = 0; j < 40; j++) ck_assert(fabs(W(p, 0)[j]) <= 1 / sqrt(5.0) * (1 + 1e-6));
    for (int j = 0; j < 8; j++) ck_assert(fabs(W(p, 1)[j]) <= 0.5 * (1 + 1e-6));

    /* NULL rng: the context's, reproducible through mnas_ctx_seed */
    mnas_ctx_seed(ctx, 77);
    ck_assert_int_eq(mnas_params_init(p, NULL), MNAS_OK);
    mnas_real *ctx_a = snapshot_values(p);
    mnas_ctx_seed(ctx, 77);
    ck_assert_int_eq(mnas_params_init(p, NULL), MNAS_OK);
    ck_assert(same_values(p, ctx_a));

    /* two sets built the same way from the same seed are identical */
    mnas_ctx_seed(ctx, 9);
    mnas_params *q1 = mnas_params_create(ctx);
    add2(q1, "w", 4, 3, MNAS_INIT_FAN_IN, 3, 0);
    add1(q1, "b", 4, MNAS_INIT_NORMAL, 1, 0);
    mnas_ctx_seed(ctx, 9);
    mnas_params *q2 = mnas_params_create(ctx);
    add2(q2, "w", 4, 3, MNAS_INIT_FAN_IN, 3, 0);
    add1(q2, "b", 4, MNAS_INIT_NORMAL, 1, 0);
    mnas_real *s1 = snapshot_values(q1);
    ck_assert(same_values(q2, s1));

    ck_assert_int_eq(mnas_params_init(NULL, r1), MNAS_E_INVALID);
    free(s1);
    free(ctx_a);
    free(first);
    free(at_add);
    mnas_rng_free(r1);
    mnas_rng_free(r2);
    mnas_rng_free(r3);
    mnas_params_free(q1);
    mnas_params_free(q2);
    mnas_params_free(p);
}
END_TEST

START_TEST(params_zero_and_accumulate_grad)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(add2(p, "a", 2, 3, MNAS_INIT_FAN_IN, 3, 0), 0);
    ck_assert_int_eq(add1(p, "b", 4, MNAS_INIT_ZEROS, 0, 0), 1);
    const double g0[6] = { 0.5, -1.25, 3, 0.1, -0.2, 7 }, b0[4] = { 1, 2, 3, 4 };
    set_values(mnas_params_grad(p, 0), g0);
    set_values(mnas_params_grad(p, 1), b0);

    int64_t sa[2] = { 2, 3 }, sb[1] = { 4 }, s5[1] = { 5 };
    const mnas_real ga[6] = { 1, 2, 3, -4, 0.3f, -0.7f }, gb[4] = { -1, 0.25f, 8, 0.5f };
    mnas_tensor *ta = mnas_tensor_from_data(ctx, 2, sa, ga);
    mnas_tensor *tb = mnas_tape_tensor(tp, 1, sb, gb); /* tape tensors are fine too */
    ck_assert_ptr_nonnull(ta);
    ck_assert_ptr_nonnull(tb);

    /* grad += scale * g, NULL entries skipped */
    mnas_tensor *only_a[2] = { ta, NULL };
    ck_assert_int_eq(mnas_params_accumulate_grad(p, only_a, 0.5), MNAS_OK);
    for (int j = 0; j < 6; j++) {
        mnas_real e = (mnas_real)g0[j] + 0.5f * ga[j];
        ck_assert_msg(G(p, 0)[j] == e, "%g vs %g", (double)G(p, 0)[j], (double)e);
    }
    for (int j = 0; j < 4; j++) ck_assert(G(p, 1)[j] == (mnas_real)b0[j]);
    mnas_tensor *only_b[2] = { NULL, tb };
    ck_assert_int_eq(mnas_params_accumulate_grad(p, only_b, 1.0), MNAS_OK);
    for (int j = 0; j < 6; j++) ck_assert(G(p, 0)[j] == (mnas_real)g0[j] + 0.5f * ga[j]);
    for (int j = 0; j < 4; j++) ck_assert(G(p, 1)[j] == (mnas_real)b0[j] + gb[j]);
    mnas_tensor *both[2] = { ta, tb };
    mnas_real *mid = snapshot_grads(p);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, both, -2.0), MNAS_OK);
    for (int j = 0; j < 6; j++) ck_assert(G(p, 0)[j] == mid[j] + -2.0f * ga[j]);
    for (int j = 0; j < 4; j++) ck_assert(G(p, 1)[j] == mid[6 + j] + -2.0f * gb[j]);
    /* values untouched */
    for (int j = 0; j < 4; j++) ck_assert(W(p, 1)[j] == 0);

    /* refusals change nothing: a NaN or Inf in the second gradient, a wrong
     * size, a bad scale, no array, a stale tensor */
    mnas_real *snap = snapshot_grads(p);
    const mnas_real nan_b[4] = { 1, NAN, 1, 1 }, inf_b[4] = { 1, 1, 1, -INFINITY };
    mnas_tensor *tnan = mnas_tensor_from_data(ctx, 1, sb, nan_b);
    mnas_tensor *tinf = mnas_tensor_from_data(ctx, 1, sb, inf_b);
    mnas_tensor *t5 = mnas_tensor_zeros(ctx, 1, s5);
    mnas_tensor *bad_nan[2] = { ta, tnan }, *bad_inf[2] = { ta, tinf }, *bad_size[2] = { ta, t5 };
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, bad_nan, 1.0), MNAS_E_NUMERIC);
    expect_ctx_message("\"b\"");
    ck_assert(same_grads(p, snap));
    ck_assert_int_eq(mnas_params_accumulate_grad(p, bad_inf, 1.0), MNAS_E_NUMERIC);
    ck_assert(same_grads(p, snap));
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, bad_size, 1.0), MNAS_E_SHAPE);
    expect_ctx_message("elements");
    ck_assert(same_grads(p, snap));
    ck_assert_int_eq(mnas_params_accumulate_grad(p, both, NAN), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, both, INFINITY), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, NULL, 1.0), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_accumulate_grad(NULL, both, 1.0), MNAS_E_INVALID);
    mnas_tape_reset(tp); /* tb is stale now */
    mnas_tensor *stale[2] = { ta, tb };
    ck_assert_int_ne(mnas_params_accumulate_grad(p, stale, 1.0), MNAS_OK);
    ck_assert(same_grads(p, snap));

    /* zero_grad clears the buffers and nothing else */
    mnas_real *vals = snapshot_values(p);
    mnas_params_zero_grad(p);
    for (size_t i = 0; i < 2; i++)
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_grad(p, i)); j++) ck_assert(G(p, i)[j] == 0);
    ck_assert(same_values(p, vals));
    ck_assert_double_eq(mnas_params_grad_norm(p), 0);
    mnas_params_zero_grad(NULL);

    free(vals);
    free(snap);
    free(mid);
    mnas_tensor_free(ta);
    mnas_tensor_free(tnan);
    mnas_tensor_free(tinf);
    mnas_tensor_free(t5);
    mnas_params_free(p);
}
END_TEST

static mnas_params *small_set(uint64_t seed)
{
    mnas_ctx_seed(ctx, seed);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(add2(p, "w", 3, 2, MNAS_INIT_FAN_IN, 2, 0), 0);
    ck_assert_int_eq(add1(p, "b", 3, MNAS_INIT_NORMAL, 1, 1), 1);
    return p;
}

START_TEST(params_copy_values)
{
    mnas_params *dst = small_set(1), *src = small_set(2);
    mnas_real *src_vals = snapshot_values(src);
    ck_assert(!same_values(dst, src_vals));
    const double gd[3] = { 9, 8, 7 };
    set_values(mnas_params_grad(dst, 1), gd);
    mnas_real *dst_grads = snapshot_grads(dst);
    mnas_tensor *dst_w = mnas_params_get(dst, 0);

    ck_assert_int_eq(mnas_params_copy_values(dst, src), MNAS_OK);
    ck_assert(same_values(dst, src_vals));  /* values copied */
    ck_assert(same_values(src, src_vals));  /* source untouched */
    ck_assert(same_grads(dst, dst_grads));  /* gradients are not values */
    ck_assert_ptr_eq(mnas_params_get(dst, 0), dst_w); /* same tensors, new contents */
    ck_assert_ptr_ne(mnas_params_get(dst, 0), mnas_params_get(src, 0));
    ck_assert_int_eq(mnas_params_group(dst, 1), 1);
    /* independent storage */
    W(src, 0)[0] += 1;
    ck_assert(W(dst, 0)[0] == src_vals[0]);

    /* mismatched sets are refused and dst is left alone */
    mnas_real *dst_vals = snapshot_values(dst);
    mnas_params *other_name = mnas_params_create(ctx), *other_shape = mnas_params_create(ctx),
                *fewer = mnas_params_create(ctx);
    add2(other_name, "w", 3, 2, MNAS_INIT_ONES, 0, 0);
    add1(other_name, "bias", 3, MNAS_INIT_ONES, 0, 1);
    add2(other_shape, "w", 2, 3, MNAS_INIT_ONES, 0, 0);
    add1(other_shape, "b", 3, MNAS_INIT_ONES, 0, 1);
    add2(fewer, "w", 3, 2, MNAS_INIT_ONES, 0, 0);
    mnas_params *bad[3] = { other_name, other_shape, fewer };
    for (int k = 0; k < 3; k++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_int_eq(mnas_params_copy_values(dst, bad[k]), MNAS_E_SHAPE);
        ck_assert(strlen(mnas_ctx_last_error(ctx)) > 0);
        ck_assert(same_values(dst, dst_vals));
        ck_assert_int_eq(mnas_params_copy_values(bad[k], dst), MNAS_E_SHAPE);
        ck_assert(W(bad[k], 0)[0] == 1);
    }
    ck_assert_int_eq(mnas_params_copy_values(dst, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_copy_values(NULL, src), MNAS_E_INVALID);
    ck_assert(same_values(dst, dst_vals));

    free(dst_vals);
    free(src_vals);
    free(dst_grads);
    for (int k = 0; k < 3; k++) mnas_params_free(bad[k]);
    mnas_params_free(dst);
    mnas_params_free(src);
}
END_TEST

START_TEST(params_grad_norm)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_double_eq(mnas_params_grad_norm(p), 0); /* empty */
    ck_assert_double_eq(mnas_params_grad_norm(NULL), 0);
    add1(p, "a", 2, MNAS_INIT_ZEROS, 0, 0);
    add1(p, "b", 1, MNAS_INIT_ZEROS, 0, 0);
    const double ga[2] = { 3, -4 }, gb[1] = { 12 };
    set_values(mnas_params_grad(p, 0), ga);
    set_values(mnas_params_grad(p, 1), gb);
    ck_assert_double_eq(mnas_params_grad_norm(p), 13.0); /* sqrt(9 + 16 + 144) */

    /* random gradients against a hand sum in double */
    add2(p, "c", 7, 9, MNAS_INIT_ZEROS, 0, 0);
    mnas_rng *r = mnas_rng_create(ctx, 3, 0);
    double sum = 0;
    for (size_t i = 0; i < 3; i++) {
        mnas_real *g = G(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_grad(p, i)); j++) {
            g[j] = (mnas_real)(mnas_rng_normal(r) * 3);
            sum += (double)g[j] * (double)g[j];
        }
    }
    double norm = mnas_params_grad_norm(p);
    ck_assert_msg(fabs(norm - sqrt(sum)) <= 1e-12 * sqrt(sum), "%.17g vs %.17g", norm, sqrt(sum));
    ck_assert(norm > 10);
    mnas_rng_free(r);
    mnas_params_free(p);
}
END_TEST

START_TEST(free_null_is_noop)
{
    mnas_params_free(NULL);
    mnas_optim_free(NULL);
    mnas_mlp_free(NULL);
}
END_TEST

/* ==== optimisers ========================================================== */

/* Three parameters in groups 0, 1, 2 with fixed values, and a function that
 * sets step-dependent gradients. */
static mnas_params *opt_set(void)
{
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(add2(p, "w", 2, 3, MNAS_INIT_ZEROS, 0, 0), 0);
    ck_assert_int_eq(add1(p, "b", 3, MNAS_INIT_ZEROS, 0, 1), 1);
    ck_assert_int_eq(add1(p, "s", 2, MNAS_INIT_ZEROS, 0, 2), 2);
    const double w[6] = { 0.5, -1.25, 2.0, 0.75, -0.3, 1.1 }, b[3] = { 1.5, -0.6, 0.9 }, s[2] = { -2.0, 0.45 };
    set_values(mnas_params_get(p, 0), w);
    set_values(mnas_params_get(p, 1), b);
    set_values(mnas_params_get(p, 2), s);
    return p;
}

static void set_step_grads(mnas_params *p, int t)
{
    static const double base[11] = { 0.3, -0.8, 1.7, -0.05, 0.6, -2.2, 0.9, 0.1, -0.4, 1.3, -0.7 };
    int k = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_real *g = G(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_grad(p, i)); j++, k++)
            g[j] = (mnas_real)(base[k % 11] * (1.0 + 0.5 * t) * ((t + k) % 3 == 0 ? -1 : 1));
    }
}

static mnas_optim *make_optim(mnas_params *p, mnas_optim_kind kind, double lr, double momentum, double clip)
{
    mnas_optim_options o = MNAS_OPTIM_OPTIONS_INIT;
    o.kind = kind;
    o.lr = lr;
    o.momentum = momentum;
    o.clip_norm = clip;
    mnas_optim *op = mnas_optim_create(p, &o);
    ck_assert_msg(op != NULL, "%s", mnas_ctx_last_error(ctx));
    return op;
}

START_TEST(sgd_step_is_exact)
{
    mnas_params *p = opt_set();
    mnas_optim *o = make_optim(p, MNAS_OPTIM_SGD, 0.1, 0, 0);
    ck_assert_int_eq(mnas_optim_steps(o), 0);
    set_step_grads(p, 0);
    mnas_real *w0 = snapshot_values(p), *g0 = snapshot_grads(p);
    ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
    mnas_real *w1 = snapshot_values(p);
    for (int j = 0; j < 11; j++) {
        mnas_real e = (mnas_real)((double)w0[j] - 0.1 * (double)g0[j]);
        ck_assert_msg(w1[j] == e, "element %d: %.9g vs %.9g", j, (double)w1[j], (double)e);
        ck_assert(w1[j] != w0[j]);
    }
    ck_assert(same_grads(p, g0)); /* a step does not clear the gradients */
    ck_assert_int_eq(mnas_optim_steps(o), 1);
    free(w0);
    free(g0);
    free(w1);
    mnas_optim_free(o);
    mnas_params_free(p);
}
END_TEST

START_TEST(sgd_momentum_three_steps)
{
    const double lr = 0.05, mu = 0.9;
    mnas_params *p = opt_set();
    mnas_optim *o = make_optim(p, MNAS_OPTIM_SGD, lr, mu, 0);
    mnas_real *w = snapshot_values(p);
    mnas_real buf[11] = { 0 };
    double wd[11], bufd[11] = { 0 };
    for (int j = 0; j < 11; j++) wd[j] = w[j];
    for (int t = 0; t < 3; t++) {
        set_step_grads(p, t);
        mnas_real *g = snapshot_grads(p);
        ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
        mnas_real *now = snapshot_values(p);
        for (int j = 0; j < 11; j++) {
            /* buf <- mu*buf + g;  w <- w - lr*buf  (state kept in float) */
            buf[j] = (mnas_real)(mu * buf[j] + (double)g[j]);
            w[j] = (mnas_real)((double)w[j] - lr * buf[j]);
            ck_assert_msg(now[j] == w[j], "step %d element %d: %.9g vs %.9g", t, j, (double)now[j], (double)w[j]);
            /* and the same recurrence in double, to the float's precision */
            bufd[j] = mu * bufd[j] + g[j];
            wd[j] -= lr * bufd[j];
            ck_assert(fabs(now[j] - wd[j]) <= 1e-6 * (1 + fabs(wd[j])));
        }
        free(g);
        free(now);
    }
    ck_assert_int_eq(mnas_optim_steps(o), 3);
    /* momentum differs from plain SGD from the second step on */
    mnas_params *q = opt_set();
    mnas_optim *plain = make_optim(q, MNAS_OPTIM_SGD, lr, 0, 0);
    for (int t = 0; t < 3; t++) {
        set_step_grads(q, t);
        mnas_optim_step(plain);
    }
    mnas_real *qv = snapshot_values(q);
    ck_assert(!same_values(p, qv));
    free(qv);
    free(w);
    mnas_optim_free(plain);
    mnas_params_free(q);
    mnas_optim_free(o);
    mnas_params_free(p);
}
END_TEST

/* Adam in double, PyTorch's formulation, with optional global-norm clipping:
 *   g <- g * min(1, c/|g|);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
 *   w <- w - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
typedef struct {
    double w[16], m[16], v[16];
    int n, t;
} adam_ref;

static void adam_ref_step(adam_ref *r, const mnas_real *g, const double *lr, double b1, double b2, double eps,
                          double clip)
{
    double norm = 0;
    for (int j = 0; j < r->n; j++) norm += (double)g[j] * g[j];
    norm = sqrt(norm);
    double s = clip > 0 && norm > clip ? clip / norm : 1;
    r->t++;
    for (int j = 0; j < r->n; j++) {
        double gj = s * g[j];
        r->m[j] = b1 * r->m[j] + (1 - b1) * gj;
        r->v[j] = b2 * r->v[j] + (1 - b2) * gj * gj;
        double mhat = r->m[j] / (1 - pow(b1, r->t)), vhat = r->v[j] / (1 - pow(b2, r->t));
        r->w[j] -= lr[j] * mhat / (sqrt(vhat) + eps);
    }
}

static void adam_case(double b1, double b2, double eps, double clip, double lr1)
{
    const double lr = 0.01;
    mnas_params *p = opt_set();
    mnas_optim_options o = MNAS_OPTIM_OPTIONS_INIT;
    ck_assert_int_eq(o.kind, MNAS_OPTIM_ADAM);
    o.lr = lr;
    o.beta1 = b1;
    o.beta2 = b2;
    o.eps = eps;
    o.clip_norm = clip;
    mnas_optim *op = mnas_optim_create(p, &o);
    ck_assert_ptr_nonnull(op);
    ck_assert_int_eq(mnas_optim_set_group_lr(op, 1, lr1), MNAS_OK);
    adam_ref r = { .n = 11 };
    double lrs[11];
    mnas_real *w0 = snapshot_values(p);
    for (int j = 0; j < 11; j++) {
        r.w[j] = w0[j];
        lrs[j] = j >= 6 && j < 9 ? lr1 : lr; /* "b" is in group 1 */
    }
    for (int t = 0; t < 3; t++) {
        set_step_grads(p, t);
        mnas_real *g = snapshot_grads(p);
        ck_assert_int_eq(mnas_optim_step(op), MNAS_OK);
        adam_ref_step(&r, g, lrs, b1, b2, eps, clip);
        mnas_real *now = snapshot_values(p);
        for (int j = 0; j < 11; j++)
            ck_assert_msg(fabs(now[j] - r.w[j]) <= 1e-6 * fabs(r.w[j]) + 1e-9,
                          "b1 %g b2 %g eps %g clip %g, step %d element %d: %.9g vs %.9g", b1, b2, eps, clip, t, j,
                          (double)now[j], r.w[j]);
        free(g);
        free(now);
    }
    /* the reference moved every parameter of a group with lr > 0 */
    for (int j = 0; j < 11; j++)
        if (lrs[j] > 0) ck_assert(fabs(r.w[j] - w0[j]) > 1e-4);
    ck_assert_int_eq(mnas_optim_steps(op), 3);
    free(w0);
    mnas_optim_free(op);
    mnas_params_free(p);
}

START_TEST(adam_three_steps_against_reference)
{
    adam_case(0.9, 0.999, 1e-8, 0, 0.01);   /* defaults */
    adam_case(0.5, 0.9, 0.3, 0, 0.01);      /* large eps: outside the sqrt */
    adam_case(0.0, 0.0, 1e-8, 0, 0.02);     /* no averaging, group lr */
    adam_case(0.8, 0.95, 1e-3, 4.0, 0.01);  /* norms 3.3, 5, 6.6: clipped on steps 2 and 3 */
}
END_TEST

START_TEST(optim_group_learning_rates)
{
    for (int kind = 0; kind < 2; kind++) {
        mnas_params *p = opt_set();
        mnas_optim *o = make_optim(p, (mnas_optim_kind)kind, 0.1, kind == 0 ? 0 : 0.5, 0);
        ck_assert_int_eq(mnas_optim_set_group_lr(o, 1, 0.0), MNAS_OK);
        ck_assert_int_eq(mnas_optim_set_group_lr(o, 2, 0.5), MNAS_OK);
        mnas_real *w0 = snapshot_values(p);
        for (int t = 0; t < 2; t++) {
            set_step_grads(p, t);
            mnas_real *g = snapshot_grads(p);
            mnas_real *before = snapshot_values(p);
            ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
            if (kind == MNAS_OPTIM_SGD) {
                for (int j = 0; j < 6; j++) ck_assert(W(p, 0)[j] == (mnas_real)(before[j] - 0.1 * (double)g[j]));
                for (int j = 0; j < 2; j++)
                    ck_assert(W(p, 2)[j] == (mnas_real)(before[9 + j] - 0.5 * (double)g[9 + j]));
            }
            free(g);
            free(before);
        }
        /* group 1 (lr 0) did not move; groups 0 and 2 did */
        for (int j = 0; j < 3; j++) ck_assert(W(p, 1)[j] == w0[6 + j]);
        for (int j = 0; j < 6; j++) ck_assert(W(p, 0)[j] != w0[j]);
        for (int j = 0; j < 2; j++) ck_assert(W(p, 2)[j] != w0[9 + j]);
        free(w0);
        mnas_optim_free(o);
        mnas_params_free(p);
    }
}
END_TEST

START_TEST(optim_set_group_lr_errors)
{
    mnas_params *p = opt_set();
    mnas_optim *o = make_optim(p, MNAS_OPTIM_SGD, 0.1, 0, 0);
    struct {
        int group;
        double lr;
        const char *needle;
    } bad[] = { { -1, 0.1, "group" }, { 16, 0.1, "group" },    { 1, -0.1, "lr" },
                { 1, NAN, "lr" },     { 1, INFINITY, "lr" }, { 1000, 0.1, "group" } };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_int_eq(mnas_optim_set_group_lr(o, bad[k].group, bad[k].lr), MNAS_E_INVALID);
        expect_ctx_message(bad[k].needle);
    }
    ck_assert_int_eq(mnas_optim_set_group_lr(NULL, 0, 0.1), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_set_group_lr(o, 15, 0.2), MNAS_OK);
    ck_assert_int_eq(mnas_optim_set_group_lr(o, 0, 0.0), MNAS_OK);
    ck_assert_int_eq(mnas_optim_set_group_lr(o, 0, 0.1), MNAS_OK);
    /* the refused calls did not change group 1's rate */
    set_step_grads(p, 0);
    mnas_real *w0 = snapshot_values(p), *g = snapshot_grads(p);
    ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
    for (int j = 0; j < 3; j++) ck_assert(W(p, 1)[j] == (mnas_real)(w0[6 + j] - 0.1 * (double)g[6 + j]));
    free(w0);
    free(g);
    mnas_optim_free(o);
    mnas_params_free(p);
}
END_TEST

START_TEST(optim_clips_global_norm)
{
    const double lr = 0.1, c = 1.0;
    mnas_params *p = opt_set(), *q = opt_set();
    mnas_optim *clipped = make_optim(p, MNAS_OPTIM_SGD, lr, 0, c);
    mnas_optim *plain = make_optim(q, MNAS_OPTIM_SGD, lr, 0, 0);
    set_step_grads(p, 0);
    double norm = mnas_params_grad_norm(p);
    ck_assert(norm > 2 * c);
    /* q gets the gradients scaled by c/norm, and no clipping */
    for (size_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_grad(p, i)); j++)
            G(q, i)[j] = (mnas_real)(G(p, i)[j] * (c / norm));
    ck_assert(fabs(mnas_params_grad_norm(q) - c) < 1e-6);
    mnas_real *w0 = snapshot_values(p), *g = snapshot_grads(p);
    ck_assert_int_eq(mnas_optim_step(clipped), MNAS_OK);
    ck_assert_int_eq(mnas_optim_step(plain), MNAS_OK);
    double upd = 0;
    for (size_t i = 0, k = 0; i < 3; i++)
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_get(p, i)); j++, k++) {
            mnas_real e = (mnas_real)((double)w0[k] - lr * ((c / norm) * (double)g[k]));
            ck_assert_msg(W(p, i)[j] == e, "%zu: %.9g vs %.9g", k, (double)W(p, i)[j], (double)e);
            ck_assert(fabs(W(p, i)[j] - W(q, i)[j]) <= 1e-7 * (1 + fabs(W(q, i)[j])));
            upd += ((double)w0[k] - W(p, i)[j]) * ((double)w0[k] - W(p, i)[j]);
        }
    /* the update has norm lr*c */
    ck_assert_msg(fabs(sqrt(upd) - lr * c) < 1e-6, "update norm %g", sqrt(upd));
    ck_assert(same_grads(p, g)); /* the buffers themselves are not rescaled */

    /* below the threshold clipping changes nothing */
    mnas_optim *loose = make_optim(q, MNAS_OPTIM_SGD, lr, 0, 100);
    mnas_params_copy_values(q, p);
    set_step_grads(q, 1);
    set_step_grads(p, 1);
    mnas_real *qg = snapshot_grads(q), *qw = snapshot_values(q);
    ck_assert_int_eq(mnas_optim_step(loose), MNAS_OK);
    for (int k = 0, i = 0; i < 3; i++)
        for (int64_t j = 0; j < mnas_tensor_size(mnas_params_get(q, i)); j++, k++)
            ck_assert(W(q, i)[j] == (mnas_real)((double)qw[k] - lr * (double)qg[k]));
    free(qg);
    free(qw);
    free(w0);
    free(g);
    mnas_optim_free(loose);
    mnas_optim_free(clipped);
    mnas_optim_free(plain);
    mnas_params_free(p);
    mnas_params_free(q);
}
END_TEST

START_TEST(optim_non_finite_gradient_changes_nothing)
{
    mnas_optim_options opts[2] = { MNAS_OPTIM_OPTIONS_INIT, MNAS_OPTIM_OPTIONS_INIT };
    opts[0].kind = MNAS_OPTIM_SGD;
    opts[0].lr = 0.05;
    opts[0].momentum = 0.9;
    opts[1].kind = MNAS_OPTIM_ADAM;
    opts[1].lr = 0.01;
    opts[1].clip_norm = 3.0;
    for (int k = 0; k < 2; k++) {
        mnas_params *p = opt_set(), *twin = opt_set();
        mnas_optim *o = mnas_optim_create(p, &opts[k]), *ot = mnas_optim_create(twin, &opts[k]);
        ck_assert_ptr_nonnull(o);
        ck_assert_ptr_nonnull(ot);
        for (int t = 0; t < 2; t++) {
            set_step_grads(p, t);
            set_step_grads(twin, t);
            ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
            ck_assert_int_eq(mnas_optim_step(ot), MNAS_OK);
        }
        mnas_real *vals = snapshot_values(p);
        const mnas_real bad[3] = { NAN, INFINITY, -INFINITY };
        for (int b = 0; b < 3; b++) {
            set_step_grads(p, 2);
            G(p, 1)[2] = bad[b]; /* in the second parameter: the first would already be updated */
            mnas_ctx_clear_error(ctx);
            ck_assert_int_eq(mnas_optim_step(o), MNAS_E_NUMERIC);
            expect_ctx_message("\"b\"");
            ck_assert(same_values(p, vals));
            ck_assert_int_eq(mnas_optim_steps(o), 2);
        }
        /* the next good step is the one the twin takes without the bad ones:
         * no moment, momentum or step count moved */
        set_step_grads(p, 2);
        set_step_grads(twin, 2);
        ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
        ck_assert_int_eq(mnas_optim_step(ot), MNAS_OK);
        mnas_real *tv = snapshot_values(twin);
        ck_assert_msg(same_values(p, tv), "optimiser %d: state changed by a refused step", k);
        ck_assert_int_eq(mnas_optim_steps(o), 3);
        set_step_grads(p, 3);
        set_step_grads(twin, 3);
        mnas_optim_step(o);
        mnas_optim_step(ot);
        free(tv);
        tv = snapshot_values(twin);
        ck_assert(same_values(p, tv));
        free(tv);
        free(vals);
        mnas_optim_free(o);
        mnas_optim_free(ot);
        mnas_params_free(p);
        mnas_params_free(twin);
    }
}
END_TEST

START_TEST(optim_rejects_bad_options)
{
    mnas_params *p = opt_set();
    for (int k = 0; k < 13; k++) {
        mnas_optim_options o = MNAS_OPTIM_OPTIONS_INIT;
        switch (k) {
        case 0: o.lr = -0.1; break;
        case 1: o.lr = NAN; break;
        case 2: o.kind = MNAS_OPTIM_SGD, o.momentum = 1.0; break;
        case 3: o.kind = MNAS_OPTIM_SGD, o.momentum = -0.1; break;
        case 4: o.beta1 = 1.0; break;
        case 5: o.beta2 = 1.0; break;
        case 6: o.eps = 0; break;
        case 7: o.eps = -1e-8; break;
        case 8: o.kind = (mnas_optim_kind)2; break;
        case 9: o.kind = (mnas_optim_kind)-1; break;
        case 10: o.clip_norm = NAN; break;
        case 11: o.clip_norm = -1; break;
        case 12: o.struct_size = 0; break;
        }
        mnas_ctx_clear_error(ctx);
        mnas_optim *op = mnas_optim_create(p, &o);
        ck_assert_msg(op == NULL, "case %d was accepted", k);
        expect_ctx_message("mnas_optim_create");
    }
    /* the message names the problem */
    mnas_optim_options o = MNAS_OPTIM_OPTIONS_INIT;
    o.kind = (mnas_optim_kind)7;
    mnas_optim_create(p, &o);
    expect_ctx_message("kind");
    o = (mnas_optim_options)MNAS_OPTIM_OPTIONS_INIT;
    o.eps = 0;
    mnas_optim_create(p, &o);
    expect_ctx_message("eps");

    ck_assert_ptr_null(mnas_optim_create(NULL, &o));
    mnas_params *empty = mnas_params_create(ctx);
    ck_assert_ptr_null(mnas_optim_create(empty, NULL));
    mnas_params_free(empty);

    /* an older caller's smaller struct: fields past struct_size are not read */
    o = (mnas_optim_options)MNAS_OPTIM_OPTIONS_INIT;
    o.kind = MNAS_OPTIM_SGD;
    o.lr = 0.25;
    o.clip_norm = -5; /* garbage beyond the old struct's end */
    o.struct_size = offsetof(mnas_optim_options, clip_norm);
    mnas_optim *old = mnas_optim_create(p, &o);
    ck_assert_msg(old != NULL, "%s", mnas_ctx_last_error(ctx));
    set_step_grads(p, 0);
    mnas_real *w0 = snapshot_values(p), *g = snapshot_grads(p);
    ck_assert_int_eq(mnas_optim_step(old), MNAS_OK);
    ck_assert(W(p, 0)[0] == (mnas_real)(w0[0] - 0.25 * (double)g[0]));
    mnas_optim_free(old);

    /* NULL options: Adam with lr 1e-3; the first Adam step moves each
     * element by about lr against its gradient's sign */
    mnas_real *w1 = snapshot_values(p);
    mnas_optim *def = mnas_optim_create(p, NULL);
    ck_assert_ptr_nonnull(def);
    ck_assert_int_eq(mnas_optim_step(def), MNAS_OK);
    for (int j = 0; j < 6; j++) {
        double d = (double)W(p, 0)[j] - w1[j];
        ck_assert_msg(fabs(fabs(d) - 1e-3) < 1e-6 && d * g[j] < 0, "moved by %g (gradient %g)", d, (double)g[j]);
    }
    free(w0);
    free(w1);
    free(g);
    mnas_optim_free(def);
    mnas_params_free(p);
}
END_TEST

START_TEST(optim_counts_steps)
{
    mnas_params *p = opt_set();
    mnas_optim *o = make_optim(p, MNAS_OPTIM_ADAM, 0.01, 0, 0);
    ck_assert_int_eq(mnas_optim_steps(o), 0);
    for (int t = 1; t <= 4; t++) {
        set_step_grads(p, t);
        ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
        ck_assert_int_eq(mnas_optim_steps(o), t);
    }
    ck_assert_int_eq(mnas_optim_steps(NULL), 0);
    ck_assert_int_eq(mnas_optim_step(NULL), MNAS_E_INVALID);
    /* a set that grew after the optimiser was made is refused */
    add1(p, "late", 2, MNAS_INIT_ONES, 0, 0);
    mnas_real *vals = snapshot_values(p);
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_optim_step(o), MNAS_E_STATE);
    ck_assert(strlen(mnas_ctx_last_error(ctx)) > 0);
    ck_assert(same_values(p, vals));
    ck_assert_int_eq(mnas_optim_steps(o), 4);
    free(vals);
    mnas_optim_free(o);
    mnas_params_free(p);
}
END_TEST

/* ==== MLP ================================================================= */

START_TEST(mlp_layout_and_names)
{
    const int64_t dims[4] = { 3, 5, 4, 2 };
    mnas_mlp *m = mnas_mlp_create(ctx, 3, dims, 0);
    mnas_mlp *nb = mnas_mlp_create(ctx, 3, dims, MNAS_MLP_NO_BN);
    mnas_mlp *one = mnas_mlp_create(ctx, 1, dims, 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(nb);
    ck_assert_ptr_nonnull(one);
    ck_assert_uint_eq(mnas_mlp_num_params(m), 4 + 4 + 2);
    ck_assert_uint_eq(mnas_mlp_num_params(nb), 2 + 2 + 2);
    ck_assert_uint_eq(mnas_mlp_num_params(one), 2);
    ck_assert_uint_eq(mnas_mlp_num_params(NULL), 0);

    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(add1(p, "other", 1, MNAS_INIT_ZEROS, 0, 0), 0);
    ck_assert_int_eq(mnas_mlp_add_params(m, p, "net.", 2), 1);
    ck_assert_uint_eq(mnas_params_count(p), 11);
    const char *names[10] = { "net.l0.w", "net.l0.b", "net.l0.bn_g", "net.l0.bn_b", "net.l1.w",
                              "net.l1.b", "net.l1.bn_g", "net.l1.bn_b", "net.l2.w",    "net.l2.b" };
    const int64_t rows[10] = { 5, 5, 5, 5, 4, 4, 4, 4, 2, 2 }, cols[10] = { 3, 0, 0, 0, 5, 0, 0, 0, 4, 0 };
    const double fan[10] = { 3, 3, 0, 0, 5, 5, 0, 0, 4, 4 };
    for (size_t i = 0; i < 10; i++) {
        mnas_tensor *t = mnas_params_get(p, 1 + i);
        ck_assert_str_eq(mnas_params_name(p, 1 + i), names[i]);
        ck_assert_int_eq(mnas_params_group(p, 1 + i), 2);
        ck_assert_int_eq(mnas_tensor_ndim(t), cols[i] ? 2 : 1);
        ck_assert_int_eq(mnas_tensor_dim(t, 0), rows[i]);
        if (cols[i]) ck_assert_int_eq(mnas_tensor_dim(t, 1), cols[i]);
        const mnas_real *d = mnas_tensor_cdata(t);
        for (int64_t j = 0; j < mnas_tensor_size(t); j++) {
            if (strstr(names[i], "bn_g"))
                ck_assert(d[j] == 1);
            else if (strstr(names[i], "bn_b"))
                ck_assert(d[j] == 0);
            else
                ck_assert_msg(fabs(d[j]) <= (1 + 1e-6) / sqrt(fan[i]) && d[j] != 0, "%s[%lld] = %g", names[i],
                              (long long)j, (double)d[j]);
        }
    }
    /* no BN: weights and biases only; no prefix */
    mnas_params *q = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_mlp_add_params(nb, q, NULL, 0), 0);
    ck_assert_uint_eq(mnas_params_count(q), 6);
    const char *nb_names[6] = { "l0.w", "l0.b", "l1.w", "l1.b", "l2.w", "l2.b" };
    for (size_t i = 0; i < 6; i++) ck_assert_str_eq(mnas_params_name(q, i), nb_names[i]);
    ck_assert_int_eq(mnas_params_numel(q), 15 + 5 + 20 + 4 + 8 + 2);

    /* a prefix over 40 characters, a bad group, a second copy under the same
     * names: refused, set unchanged */
    char longp[42];
    memset(longp, 'p', 41);
    longp[41] = '\0';
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_mlp_add_params(m, p, longp, 0), -1);
    expect_ctx_message("prefix");
    ck_assert_int_eq(mnas_mlp_add_params(m, p, "x.", 16), -1);
    ck_assert_int_eq(mnas_mlp_add_params(m, p, "net.", 0), -1);
    ck_assert_int_eq(mnas_mlp_add_params(NULL, p, "y.", 0), -1);
    ck_assert_int_eq(mnas_mlp_add_params(m, NULL, "y.", 0), -1);
    ck_assert_uint_eq(mnas_params_count(p), 11);

    mnas_params_free(p);
    mnas_params_free(q);
    mnas_mlp_free(m);
    mnas_mlp_free(nb);
    mnas_mlp_free(one);
}
END_TEST

/* DESIGN.md: bad input "leaves every object as it was". A name collision in
 * the middle of an MLP's parameters must not leave the first layers added.
 * Fails on lib/nn/mlp.c:74-89, which returns -1 at line 88 after l0.w, l0.b,
 * l0.bn_g and l0.bn_b were already appended to the set. */
START_TEST(mlp_add_params_failure_leaves_set_unchanged)
{
    const int64_t dims[4] = { 3, 5, 4, 2 };
    mnas_mlp *m = keep_mlp(mnas_mlp_create(ctx, 3, dims, 0));
    mnas_params *p = keep_params(mnas_params_create(ctx));
    ck_assert_int_eq(add1(p, "l1.w", 1, MNAS_INIT_ZEROS, 0, 0), 0);
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_mlp_add_params(m, p, "", 0), -1);
    expect_ctx_message("l1.w");
    ck_assert_msg(mnas_params_count(p) == 1, "a failed mnas_mlp_add_params left %zu parameters (expected 1)",
                  mnas_params_count(p));
    ck_assert_int_eq(mnas_params_find(p, "l0.w"), -1);
}
END_TEST

/* The hand composition of the MLP with the public ops. */
static mnas_tensor *hand_mlp(mnas_tensor *x, mnas_tensor *const *w, int n_layers, int bn)
{
    mnas_tensor *h = x;
    size_t k = 0;
    for (int l = 0; l < n_layers; l++) {
        h = mnas_linear(tp, h, w[k], w[k + 1]);
        k += 2;
        if (l < n_layers - 1) {
            h = mnas_relu(tp, h);
            if (bn) {
                h = mnas_batch_norm(tp, h, w[k], w[k + 1], 1e-5);
                k += 2;
            }
        }
    }
    return h;
}

START_TEST(mlp_forward_matches_hand_composition)
{
    const int64_t dims[4] = { 3, 5, 4, 2 }, xs[2] = { 6, 3 };
    for (int bn = 1; bn >= 0; bn--) {
        mnas_mlp *m = mnas_mlp_create(ctx, 3, dims, bn ? 0 : MNAS_MLP_NO_BN);
        mnas_params *p = mnas_params_create(ctx);
        ck_assert_int_eq(mnas_mlp_add_params(m, p, "", 0), 0);
        if (bn) { /* make the BN parameters non-trivial */
            const double g[5] = { 1.5, 0.5, -1, 2, 0.25 }, b[5] = { 0.1, -0.2, 0.3, 0, 1 };
            set_values(mnas_params_get(p, 2), g);
            set_values(mnas_params_get(p, 3), b);
        }
        mnas_tensor *x = mnas_tensor_randn(ctx, 2, xs, 0, 1);
        mnas_tensor *const *w = mnas_params_tensors(p);
        mnas_tensor *y = mnas_mlp_forward(m, tp, x, w);
        ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
        ck_assert_int_eq(mnas_tensor_ndim(y), 2);
        ck_assert_int_eq(mnas_tensor_dim(y, 0), 6);
        ck_assert_int_eq(mnas_tensor_dim(y, 1), 2);
        ck_assert_int_eq(mnas_tensor_requires_grad(y), 1);
        mnas_tensor *h = hand_mlp(x, w, 3, bn);
        ck_assert_ptr_nonnull(h);
        ck_assert_msg(same_tensor(y, h), "MLP forward differs from the hand composition (bn %d)", bn);
        /* not trivially zero */
        double s = 0;
        for (int j = 0; j < 12; j++) s += fabs(mnas_tensor_cdata(y)[j]);
        ck_assert(s > 1e-3);
        /* batch statistics: with BN, each output of the first BN has mean beta */
        mnas_tensor_free(x);
        mnas_params_free(p);
        mnas_mlp_free(m);
        mnas_tape_reset(tp);
    }
}
END_TEST

START_TEST(mlp_forward_with_fast_weights)
{
    const int64_t dims[3] = { 3, 6, 2 }, xs[2] = { 5, 3 };
    mnas_mlp *m = mnas_mlp_create(ctx, 2, dims, 0);
    mnas_params *p = mnas_params_create(ctx);
    mnas_mlp_add_params(m, p, "", 0);
    size_t np = mnas_mlp_num_params(m);
    ck_assert_uint_eq(np, 6);
    mnas_tensor *x = mnas_tensor_randn(ctx, 2, xs, 0, 1), *target = mnas_tensor_randn(ctx, 2, (int64_t[2]){ 5, 2 }, 0, 1);
    mnas_tensor *const *w = mnas_params_tensors(p);
    mnas_tensor *fast[6];
    for (size_t k = 0; k < np; k++) fast[k] = mnas_scale(tp, w[k], 2.0);
    mnas_tensor *y = mnas_mlp_forward(m, tp, x, w);
    mnas_tensor *yf = mnas_mlp_forward(m, tp, x, fast);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(yf);
    ck_assert(same_tensor(yf, hand_mlp(x, fast, 2, 1)));
    double diff = 0;
    for (int j = 0; j < 10; j++) diff = fmax(diff, fabs(mnas_tensor_cdata(yf)[j] - mnas_tensor_cdata(y)[j]));
    ck_assert_msg(diff > 1e-2, "fast weights gave the same output (max diff %g)", diff);
    /* the parameters themselves are untouched */
    for (int j = 0; j < 6; j++) ck_assert(W(p, 2)[j] == 1);

    /* a MAML inner step: fast = w - lr * dL/dw, recorded; then the
     * meta-gradient of the query loss reaches the parameters */
    mnas_tensor *g[6], *meta[6];
    mnas_tensor *loss = mnas_mse(tp, y, target);
    ck_assert_int_eq(mnas_grad(tp, loss, np, w, g, 1), MNAS_OK);
    for (size_t k = 0; k < np; k++) fast[k] = mnas_sub(tp, w[k], mnas_scale(tp, g[k], 0.1));
    mnas_tensor *yq = mnas_mlp_forward(m, tp, x, fast);
    ck_assert(same_tensor(yq, hand_mlp(x, fast, 2, 1)));
    mnas_tensor *qloss = mnas_mse(tp, yq, target);
    ck_assert_ptr_nonnull(qloss);
    ck_assert_msg(mnas_tensor_item(qloss) < mnas_tensor_item(loss), "one SGD step did not lower the loss: %g -> %g",
                  mnas_tensor_item(loss), mnas_tensor_item(qloss));
    ck_assert_int_eq(mnas_grad(tp, qloss, np, w, meta, 0), MNAS_OK);
    mnas_params_zero_grad(p);
    ck_assert_int_eq(mnas_params_accumulate_grad(p, meta, 1.0), MNAS_OK);
    for (size_t k = 0; k < np; k++) ck_assert(memcmp(G(p, k), mnas_tensor_cdata(meta[k]),
                                                     (size_t)mnas_tensor_size(meta[k]) * sizeof(mnas_real)) == 0);
    ck_assert(mnas_params_grad_norm(p) > 0);

    mnas_tensor_free(x);
    mnas_tensor_free(target);
    mnas_params_free(p);
    mnas_mlp_free(m);
}
END_TEST

typedef struct {
    const mnas_mlp *m;
    mnas_tensor *x, *target;
} mlp_case;

static mnas_tensor *mlp_loss(mnas_tape *tape, mnas_tensor *const *inputs, void *user)
{
    mlp_case *c = user;
    return mnas_mse(tape, mnas_mlp_forward(c->m, tape, c->x, inputs), c->target);
}

START_TEST(mlp_gradient_matches_finite_differences)
{
    const int64_t dims[3] = { 3, 4, 2 }, xs[2] = { 5, 3 }, ts[2] = { 5, 2 };
    for (int bn = 1; bn >= 0; bn--) {
        mnas_ctx_seed(ctx, 31);
        mnas_mlp *m = mnas_mlp_create(ctx, 2, dims, bn ? 0 : MNAS_MLP_NO_BN);
        mnas_params *p = mnas_params_create(ctx);
        ck_assert_int_eq(mnas_mlp_add_params(m, p, "", 0), 0);
        mlp_case c = { m, mnas_tensor_randn(ctx, 2, xs, 0, 1), mnas_tensor_randn(ctx, 2, ts, 0, 1) };
        double worst = INFINITY;
        mnas_status st = mnas_gradcheck(ctx, mlp_loss, &c, mnas_params_count(p), mnas_params_tensors(p), NULL, &worst);
        ck_assert_msg(st == MNAS_OK, "bn %d: %s (worst %g)", bn, mnas_ctx_last_error(ctx), worst);
        ck_assert(worst <= 1.0);

        /* Adam on this tiny regression lowers the loss */
        mnas_optim *o = make_optim(p, MNAS_OPTIM_ADAM, 0.02, 0, 0);
        double first = 0, last = 0;
        for (int it = 0; it < 30; it++) {
            mnas_tape_reset(tp);
            mnas_tensor *loss = mlp_loss(tp, mnas_params_tensors(p), &c);
            mnas_tensor *g[6];
            ck_assert_int_eq(mnas_grad(tp, loss, mnas_params_count(p), mnas_params_tensors(p), g, 0), MNAS_OK);
            mnas_params_zero_grad(p);
            ck_assert_int_eq(mnas_params_accumulate_grad(p, g, 1.0), MNAS_OK);
            ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
            if (it == 0) first = mnas_tensor_item(loss);
            last = mnas_tensor_item(loss);
        }
        ck_assert_msg(last < 0.8 * first, "bn %d: loss %g -> %g", bn, first, last);
        mnas_optim_free(o);
        mnas_tensor_free(c.x);
        mnas_tensor_free(c.target);
        mnas_params_free(p);
        mnas_mlp_free(m);
    }
}
END_TEST

START_TEST(mlp_create_rejects_bad_structure)
{
    const int64_t ok[3] = { 3, 4, 2 };
    struct {
        int n;
        int64_t d0, d1, d2;
        unsigned flags;
    } bad[] = {
        { 2, 0, 4, 2, 0 },  { 2, 3, 0, 2, 0 },   { 2, 3, 4, 0, 0 },          { 2, -1, 4, 2, 0 },
        { 2, 3, -4, 2, 0 }, { 0, 3, 4, 2, 0 },   { -1, 3, 4, 2, 0 },         { 65, 3, 4, 2, 0 },
        { 2, 3, 4, 2, 2 },  { 2, 3, 4, 2, 0x80 }, { 2, 3, (1 << 20) + 1, 2, 0 },
    };
    int64_t big[66];
    for (int i = 0; i < 66; i++) big[i] = 2;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int64_t d[3] = { bad[k].d0, bad[k].d1, bad[k].d2 };
        mnas_ctx_clear_error(ctx);
        mnas_mlp *m = mnas_mlp_create(ctx, bad[k].n, bad[k].n == 65 ? big : d, bad[k].flags);
        ck_assert_msg(m == NULL, "case %zu was accepted", k);
        mnas_mlp_free(m);
        expect_ctx_message("mnas_mlp_create");
    }
    ck_assert_ptr_null(mnas_mlp_create(ctx, 2, NULL, 0));
    ck_assert_ptr_null(mnas_mlp_create(NULL, 2, ok, 0));
    /* the limits: 64 layers, width 2^20 declared */
    mnas_mlp *deep = mnas_mlp_create(ctx, 64, big, MNAS_MLP_NO_BN);
    ck_assert_ptr_nonnull(deep);
    ck_assert_uint_eq(mnas_mlp_num_params(deep), 128);
    mnas_mlp_free(deep);
}
END_TEST

START_TEST(mlp_forward_rejects_bad_input)
{
    const int64_t dims[3] = { 3, 4, 2 };
    mnas_mlp *m = mnas_mlp_create(ctx, 2, dims, 0);
    mnas_params *p = mnas_params_create(ctx);
    mnas_mlp_add_params(m, p, "", 0);
    mnas_tensor *const *w = mnas_params_tensors(p);

    /* wrong width */
    mnas_tensor *x5 = mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 5 });
    ck_assert_ptr_null(mnas_mlp_forward(m, tp, x5, w));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    expect_message(mnas_tape_last_error(tp), "shape");
    expect_message(mnas_tape_last_error(tp), "5 features");
    mnas_tape_clear_error(tp);

    /* wrong rank */
    mnas_tensor *x1 = mnas_tensor_zeros(ctx, 1, (int64_t[1]){ 3 });
    ck_assert_ptr_null(mnas_mlp_forward(m, tp, x1, w));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_clear_error(tp);

    mnas_tensor *x = mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 3 });
    /* a NULL weight matrix among the weights */
    mnas_tensor *holes[6] = { NULL, w[1], w[2], w[3], w[4], w[5] };
    ck_assert_ptr_null(mnas_mlp_forward(m, tp, x, holes));
    ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
    mnas_tape_clear_error(tp);

    /* NULL pieces */
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_mlp_forward(m, tp, x, NULL));
    ck_assert(strlen(mnas_ctx_last_error(ctx)) > 0);
    ck_assert_ptr_null(mnas_mlp_forward(NULL, tp, x, w));
    ck_assert_ptr_null(mnas_mlp_forward(m, NULL, x, w));
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_mlp_forward(m, tp, NULL, w));
    ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);

    mnas_tensor_free(x);
    mnas_tensor_free(x1);
    mnas_tensor_free(x5);
    mnas_params_free(p);
    mnas_mlp_free(m);
}
END_TEST

/* The weights must fit the widths the MLP was created with (a shape
 * mismatch gets a status and a message). Fails on lib/nn/mlp.c:93-113: the
 * forward never compares w[k] with m->dims, so the weights of a 3-7-2 MLP run
 * through a 3-4-2 MLP without complaint. */
START_TEST(mlp_forward_checks_weights_against_its_dims)
{
    const int64_t dims[3] = { 3, 4, 2 }, dims2[3] = { 3, 7, 2 };
    mnas_mlp *m = keep_mlp(mnas_mlp_create(ctx, 2, dims, 0)), *m2 = keep_mlp(mnas_mlp_create(ctx, 2, dims2, 0));
    mnas_params *p2 = keep_params(mnas_params_create(ctx));
    ck_assert_int_eq(mnas_mlp_add_params(m2, p2, "", 0), 0);
    mnas_tensor *x = keep_tensor(mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 3 }));
    ck_assert_ptr_nonnull(mnas_mlp_forward(m2, tp, x, mnas_params_tensors(p2)));
    mnas_tensor *wrong = mnas_mlp_forward(m, tp, x, mnas_params_tensors(p2));
    ck_assert_msg(wrong == NULL, "a 3-4-2 MLP ran with the weights of a 3-7-2 MLP");
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
}
END_TEST

/* Every one of the mnas_mlp_num_params weights is required. Fails on
 * lib/nn/mlp.c:103 and :108: a NULL bias, BN scale or BN shift is passed on to
 * mnas_linear / mnas_batch_norm, which read NULL as "no bias", "scale 1",
 * "shift 0", so a hole in the weight array silently changes the network. */
START_TEST(mlp_forward_refuses_null_weight_entries)
{
    const int64_t dims[3] = { 3, 4, 2 };
    mnas_mlp *m = keep_mlp(mnas_mlp_create(ctx, 2, dims, 0));
    mnas_params *p = keep_params(mnas_params_create(ctx));
    ck_assert_int_eq(mnas_mlp_add_params(m, p, "", 0), 0);
    mnas_tensor *x = keep_tensor(mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 3 }));
    mnas_tensor *const *w = mnas_params_tensors(p);
    for (int hole = 1; hole < 6; hole += 2) {
        mnas_tensor *holes[6] = { w[0], w[1], w[2], w[3], w[4], w[5] };
        holes[hole] = NULL;
        mnas_tape_clear_error(tp);
        ck_assert_msg(mnas_mlp_forward(m, tp, x, holes) == NULL, "weight %d (%s) was NULL and the forward ran", hole,
                      mnas_params_name(p, (size_t)hole));
        ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
    }
}
END_TEST

/* A failing forward reports on the tape like an op, so that an expression
 * built around it is checked once and names the real cause
 * (docs/autodiff.md, "Errors"). Fails on lib/nn/mlp.c:97: "weights are NULL"
 * goes to the context only; the tape holds no error, so the enclosing
 * mnas_mse reports "pred is NULL" instead and overwrites the context's
 * message. */
START_TEST(mlp_forward_reports_on_the_tape)
{
    const int64_t dims[3] = { 3, 4, 2 };
    mnas_mlp *m = keep_mlp(mnas_mlp_create(ctx, 2, dims, 0));
    mnas_tensor *x = keep_tensor(mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 3 }));
    mnas_tensor *y = keep_tensor(mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 4, 2 }));
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_mse(tp, mnas_mlp_forward(m, tp, x, NULL), y));
    ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
    expect_message(mnas_tape_last_error(tp), "mnas_mlp_forward");
    expect_ctx_message("mnas_mlp_forward");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn");
    TCase *tp_ = tcase_create("params");
    tcase_add_checked_fixture(tp_, setup, teardown);
    tcase_add_test(tp_, params_add_and_query);
    tcase_add_test(tp_, params_add_rejects_bad_input);
    tcase_add_test(tp_, params_initialisers);
    tcase_add_test(tp_, params_init_reproducible);
    tcase_add_test(tp_, params_zero_and_accumulate_grad);
    tcase_add_test(tp_, params_copy_values);
    tcase_add_test(tp_, params_grad_norm);
    tcase_add_test(tp_, free_null_is_noop);
    suite_add_tcase(s, tp_);

    TCase *to = tcase_create("optim");
    tcase_add_checked_fixture(to, setup, teardown);
    tcase_add_test(to, sgd_step_is_exact);
    tcase_add_test(to, sgd_momentum_three_steps);
    tcase_add_test(to, adam_three_steps_against_reference);
    tcase_add_test(to, optim_group_learning_rates);
    tcase_add_test(to, optim_set_group_lr_errors);
    tcase_add_test(to, optim_clips_global_norm);
    tcase_add_test(to, optim_non_finite_gradient_changes_nothing);
    tcase_add_test(to, optim_rejects_bad_options);
    tcase_add_test(to, optim_counts_steps);
    suite_add_tcase(s, to);

    TCase *tm = tcase_create("mlp");
    tcase_add_checked_fixture(tm, setup, teardown);
    tcase_add_test(tm, mlp_layout_and_names);
    tcase_add_test(tm, mlp_add_params_failure_leaves_set_unchanged);
    tcase_add_test(tm, mlp_forward_matches_hand_composition);
    tcase_add_test(tm, mlp_forward_with_fast_weights);
    tcase_add_test(tm, mlp_gradient_matches_finite_differences);
    tcase_add_test(tm, mlp_create_rejects_bad_structure);
    tcase_add_test(tm, mlp_forward_rejects_bad_input);
    tcase_add_test(tm, mlp_forward_checks_weights_against_its_dims);
    tcase_add_test(tm, mlp_forward_refuses_null_weight_entries);
    tcase_add_test(tm, mlp_forward_reports_on_the_tape);
    suite_add_tcase(s, tm);

    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
