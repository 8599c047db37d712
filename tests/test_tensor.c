/* Unit tests of the tensor layer: constructors, bad input, queries, reshape,
 * assign, the two lifetimes (persistent / tape-owned) and random tensors. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

/* Only for the epoch wrap-around test, which must move a tape's epoch
 * counter to the end of its range without 2^32 resets. */
#include "autodiff/autodiff_internal.h"

/* ------------------------------------------------------------ helpers */

static mnas_ctx *new_ctx(uint64_t seed)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = seed;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static mnas_tape *new_tape(mnas_ctx *ctx)
{
    mnas_tape *tp = NULL;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    ck_assert_ptr_nonnull(tp);
    return tp;
}

static int contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

/* The last error names fn and carries the text of status. */
#define ASSERT_ERROR(ctx, fn, status)                                                          \
    do {                                                                                       \
        const char *m_ = mnas_ctx_last_error(ctx);                                             \
        ck_assert_msg(contains(m_, fn), "message \"%s\" does not name %s", m_, fn);           \
        ck_assert_msg(contains(m_, mnas_status_str(status)), "message \"%s\" is not a %s", m_, \
                      mnas_status_str(status));                                                \
    } while (0)

static void assert_shape(const mnas_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_int_eq(mnas_tensor_ndim(t), ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        ck_assert_int_eq(mnas_tensor_dim(t, i), shape[i]);
        n *= shape[i];
    }
    ck_assert_int_eq(mnas_tensor_size(t), n);
    int64_t got[MNAS_MAX_DIMS] = { -7, -7, -7, -7 };
    ck_assert_int_eq(mnas_tensor_shape(t, got), MNAS_OK);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(got[i], shape[i]);
}

/* A generator state whose next u64 output is `out` (xoshiro256** outputs
 * rotl(s[1] * 5, 7) * 9; 5 and 9 are invertible modulo 2^64). */
static uint64_t inverse_odd(uint64_t a)
{
    uint64_t x = a;
    for (int i = 0; i < 6; i++) x *= 2 - a * x;
    return x;
}

static void state_for_output(uint64_t out, uint64_t st[MNAS_RNG_STATE_WORDS])
{
    uint64_t v = out * inverse_odd(9);
    v = (v >> 7) | (v << 57);
    st[0] = 0x0123456789abcdefull;
    st[1] = v * inverse_odd(5);
    st[2] = 0xfedcba9876543210ull;
    st[3] = 0x0f0f0f0f0f0f0f0full;
    st[4] = 0;
    st[5] = 0;
}

/* ------------------------------------------------------- constructors */

START_TEST(zeros_shapes)
{
    mnas_ctx *ctx = new_ctx(0);
    const int64_t shapes[5][4] = { { 0 }, { 7 }, { 3, 5 }, { 2, 3, 4 }, { 2, 1, 3, 2 } };
    for (int nd = 0; nd <= 4; nd++) {
        mnas_tensor *t = mnas_tensor_zeros(ctx, nd, shapes[nd]);
        ck_assert_ptr_nonnull(t);
        assert_shape(t, nd, shapes[nd]);
        ck_assert_ptr_eq(mnas_tensor_ctx(t), ctx);
        ck_assert_int_eq(mnas_tensor_is_tape_owned(t), 0);
        ck_assert_int_eq(mnas_tensor_is_valid(t), 1);
        ck_assert_int_eq(mnas_tensor_requires_grad(t), 0);
        const mnas_real *d = mnas_tensor_cdata(t);
        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_eq(d, mnas_tensor_data(t));
        for (int64_t i = 0; i < mnas_tensor_size(t); i++) ck_assert(d[i] == 0);
        mnas_tensor_free(t);
    }
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(scalar_ndim0)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tensor *z = mnas_tensor_zeros(ctx, 0, NULL); /* no shape needed */
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(mnas_tensor_ndim(z), 0);
    ck_assert_int_eq(mnas_tensor_size(z), 1);
    ck_assert_int_eq(mnas_tensor_dim(z, 0), 0);
    ck_assert_int_eq(mnas_tensor_dim(z, -1), 0);
    ck_assert_double_eq(mnas_tensor_item(z), 0.0);

    const mnas_real v = (mnas_real)2.5;
    mnas_tensor *s = mnas_tensor_from_data(ctx, 0, NULL, &v);
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq(mnas_tensor_item(s), 2.5);
    mnas_tensor *c = mnas_tensor_copy(s);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(mnas_tensor_ndim(c), 0);
    ck_assert_double_eq(mnas_tensor_item(c), 2.5);

    /* item of a one-element tensor of any rank works too */
    const int64_t one[3] = { 1, 1, 1 };
    mnas_tensor *o = mnas_tensor_from_data(ctx, 3, one, &v);
    ck_assert_double_eq(mnas_tensor_item(o), 2.5);

    mnas_tensor_free(o);
    mnas_tensor_free(c);
    mnas_tensor_free(s);
    mnas_tensor_free(z);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(item_not_scalar)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tensor *t = mnas_tensor_zeros(ctx, 1, (int64_t[]){ 2 });
    ck_assert(isnan(mnas_tensor_item(t)));
    ASSERT_ERROR(ctx, "mnas_tensor_item", MNAS_E_SHAPE);
    ck_assert(isnan(mnas_tensor_item(NULL)));
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(from_data_copies)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_real src[6] = { 1, -2, 3.5f, 4, 5, -6.25f };
    const int64_t shape[2] = { 2, 3 };
    mnas_tensor *t = mnas_tensor_from_data(ctx, 2, shape, src);
    ck_assert_ptr_nonnull(t);
    assert_shape(t, 2, shape);
    ck_assert_ptr_ne(mnas_tensor_cdata(t), src);
    ck_assert_mem_eq(mnas_tensor_cdata(t), src, sizeof src);
    for (int i = 0; i < 6; i++) src[i] = 100 + (mnas_real)i;
    const mnas_real expect[6] = { 1, -2, 3.5f, 4, 5, -6.25f };
    ck_assert_mem_eq(mnas_tensor_cdata(t), expect, sizeof expect);
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
}
END_TEST

/* mnas_tensor_wrap views the caller's buffer: both sides see each other's
 * writes, and freeing the tensor leaves the buffer to the caller (ASan and
 * valgrind would report a free of a stack or malloc'd block, or a leak). */
START_TEST(wrap_shares_memory)
{
    mnas_ctx *ctx = new_ctx(0);
    int64_t live0 = mnas_ctx_live_tensors(ctx);
    mnas_real *buf = malloc(6 * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 6; i++) buf[i] = (mnas_real)i;
    const int64_t shape[2] = { 2, 3 };
    mnas_tensor *t = mnas_tensor_wrap(ctx, 2, shape, buf);
    ck_assert_ptr_nonnull(t);
    assert_shape(t, 2, shape);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(t), 0);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), live0 + 1);
    ck_assert_ptr_eq(mnas_tensor_cdata(t), buf);
    /* caller -> tensor */
    buf[4] = 40.5f;
    ck_assert(mnas_tensor_cdata(t)[4] == 40.5f);
    /* tensor -> caller, through data and through assign */
    mnas_tensor_data(t)[1] = -7.0f;
    ck_assert(buf[1] == -7.0f);
    const mnas_real ones[6] = { 1, 1, 1, 1, 1, 1 };
    mnas_tensor *src = mnas_tensor_from_data(ctx, 1, (int64_t[]){ 6 }, ones);
    ck_assert_int_eq(mnas_tensor_assign(t, src), MNAS_OK);
    for (int i = 0; i < 6; i++) ck_assert(buf[i] == 1.0f);
    /* a persistent copy owns its memory */
    mnas_tensor *c = mnas_tensor_copy(t);
    ck_assert_ptr_ne(mnas_tensor_cdata(c), buf);
    /* reshape works on the view, the buffer stays where it is */
    ck_assert_int_eq(mnas_tensor_reshape(t, 1, (int64_t[]){ 6 }), MNAS_OK);
    ck_assert_ptr_eq(mnas_tensor_cdata(t), buf);
    mnas_tensor_free(c);
    mnas_tensor_free(src);
    mnas_tensor_free(t);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), live0);
    /* the buffer is still the caller's, with the values written through t */
    for (int i = 0; i < 6; i++) ck_assert(buf[i] == 1.0f);
    free(buf);
    /* a stack buffer and a scalar work too (free must not touch it) */
    mnas_real v = 3.0f;
    mnas_tensor *s = mnas_tensor_wrap(ctx, 0, NULL, &v);
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq(mnas_tensor_item(s), 3.0);
    mnas_tensor_free(s);
    ck_assert(v == 3.0f);
    mnas_ctx_free(ctx);
}
END_TEST

/* Bad input: NULL context/data/shape, bad extents, overflowing counts and a
 * pointer that is not aligned to an element. Each is refused with a message
 * naming the problem and leaves the context usable. */
START_TEST(wrap_bad_input)
{
    ck_assert_ptr_null(mnas_tensor_wrap(NULL, 1, (int64_t[]){ 1 }, (mnas_real[1]){ 0 }));
    mnas_ctx *ctx = new_ctx(0);
    int64_t live0 = mnas_ctx_live_tensors(ctx);
    mnas_real buf[8] = { 0 };
    static const struct {
        int ndim;
        int64_t shape[4];
        int null_shape;
        mnas_status status;
        const char *says;
    } cases[] = {
        { 1, { 0 }, 0, MNAS_E_SHAPE, "not positive" },
        { 2, { 2, -3 }, 0, MNAS_E_SHAPE, "not positive" },
        { 5, { 1 }, 0, MNAS_E_SHAPE, "outside" },
        { -1, { 1 }, 0, MNAS_E_SHAPE, "outside" },
        { 2, { INT64_MAX, 2 }, 0, MNAS_E_SHAPE, "2^40" },
        { 4, { 1 << 20, 1 << 20, 1 << 20, 1 << 20 }, 0, MNAS_E_SHAPE, "2^40" },
        { 1, { 1 }, 1, MNAS_E_INVALID, "shape is NULL" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mnas_ctx_clear_error(ctx);
        mnas_tensor *t = mnas_tensor_wrap(ctx, cases[i].ndim, cases[i].null_shape ? NULL : cases[i].shape, buf);
        ck_assert_msg(t == NULL, "case %zu accepted", i);
        ASSERT_ERROR(ctx, "mnas_tensor_wrap", cases[i].status);
        ck_assert_msg(contains(mnas_ctx_last_error(ctx), cases[i].says), "case %zu: \"%s\"", i,
                      mnas_ctx_last_error(ctx));
    }
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_tensor_wrap(ctx, 1, (int64_t[]){ 2 }, NULL));
    ASSERT_ERROR(ctx, "mnas_tensor_wrap", MNAS_E_INVALID);
    ck_assert(contains(mnas_ctx_last_error(ctx), "data is NULL"));

    /* misaligned by one byte: refused, naming the alignment */
    mnas_ctx_clear_error(ctx);
    mnas_real *odd = (mnas_real *)(void *)((unsigned char *)buf + 1);
    ck_assert_ptr_null(mnas_tensor_wrap(ctx, 1, (int64_t[]){ 2 }, odd));
    ASSERT_ERROR(ctx, "mnas_tensor_wrap", MNAS_E_INVALID);
    char want[64];
    snprintf(want, sizeof want, "aligned to %zu bytes", sizeof(mnas_real));
    ck_assert_msg(contains(mnas_ctx_last_error(ctx), want), "\"%s\"", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), live0);
    for (int i = 0; i < 8; i++) ck_assert(buf[i] == 0.0f);
    /* the context still works */
    mnas_tensor *ok = mnas_tensor_wrap(ctx, 1, (int64_t[]){ 8 }, buf);
    ck_assert_ptr_nonnull(ok);
    mnas_tensor_free(ok);
    mnas_ctx_free(ctx);
}
END_TEST

/* Allocator hooks that fail while *user is nonzero. */
static void *failing_alloc(void *user, size_t size) { return *(int *)user ? NULL : malloc(size); }
static void plain_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* Out of memory for the tensor header: NULL with MNAS_E_NOMEM, nothing
 * counted, the caller's buffer untouched; the context works afterwards. */
START_TEST(wrap_out_of_memory)
{
    int failing = 0;
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.alloc = failing_alloc;
    o.free = plain_free;
    o.alloc_user = &failing;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    int64_t blocks = mnas_ctx_live_allocations(ctx);
    mnas_real buf[4] = { 1, 2, 3, 4 };
    failing = 1;
    ck_assert_ptr_null(mnas_tensor_wrap(ctx, 1, (int64_t[]){ 4 }, buf));
    failing = 0;
    ASSERT_ERROR(ctx, "mnas_tensor_wrap", MNAS_E_NOMEM);
    ck_assert_int_eq(mnas_ctx_live_tensors(ctx), 0);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), blocks);
    ck_assert(buf[0] == 1 && buf[3] == 4);
    mnas_tensor *t = mnas_tensor_wrap(ctx, 1, (int64_t[]){ 4 }, buf);
    ck_assert_ptr_nonnull(t);
    /* one block for the header, none for the data */
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), blocks + 1);
    mnas_tensor_free(t);
    ck_assert_int_eq(mnas_ctx_live_allocations(ctx), blocks);
    mnas_ctx_free(ctx);
}
END_TEST

/* Element-aligned but not 64-byte aligned data is accepted (the kernels
 * load unaligned), and an op and its gradient on such a wrapped tensor give
 * the values an owned copy gives: y = sum(x * x * w), dy/dx = 2 x w. Sizes
 * past one AVX-512 vector so the vector loops run. */
START_TEST(wrap_op_and_gradient_unaligned)
{
    enum { N = 37 };
    mnas_ctx *ctx = new_ctx(0);
    mnas_real *raw = malloc((N + 1) * sizeof *raw);
    ck_assert_ptr_nonnull(raw);
    mnas_real *x = raw + 1; /* 4 bytes past a malloc boundary: not 64-aligned */
    mnas_real wv[N];
    for (int i = 0; i < N; i++) {
        x[i] = (mnas_real)(0.25 * (i - 18));
        wv[i] = (mnas_real)(1.0 + 0.125 * (i % 5));
    }
    const int64_t shape[1] = { N };
    mnas_tensor *xw = mnas_tensor_wrap(ctx, 1, shape, x);
    ck_assert_ptr_nonnull(xw);
    mnas_tensor *xc = mnas_tensor_from_data(ctx, 1, shape, x);
    mnas_tensor *w = mnas_tensor_from_data(ctx, 1, shape, wv);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(xw, 1), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(xc, 1), MNAS_OK);
    mnas_real gw[N], gc[N];
    double yw = 0, yc = 0;
    for (int pass = 0; pass < 2; pass++) {
        mnas_tensor *in = pass ? xc : xw;
        mnas_tape *tp = new_tape(ctx);
        mnas_tensor *y = mnas_sum(tp, mnas_mul(tp, mnas_mul(tp, in, in), w));
        ck_assert_ptr_nonnull(y);
        mnas_tensor *g = NULL;
        ck_assert_int_eq(mnas_grad(tp, y, 1, &in, &g, 0), MNAS_OK);
        ck_assert_ptr_nonnull(g);
        memcpy(pass ? gc : gw, mnas_tensor_cdata(g), sizeof gw);
        *(pass ? &yc : &yw) = mnas_tensor_item(y);
        mnas_tape_free(tp);
    }
    double want = 0;
    for (int i = 0; i < N; i++) {
        want += (double)x[i] * x[i] * wv[i];
        ck_assert_float_eq_tol(gw[i], 2.0 * x[i] * wv[i], 1e-5);
        ck_assert(gw[i] == gc[i]);
    }
    ck_assert_double_eq_tol(yw, want, 1e-4 * (1 + fabs(want)));
    ck_assert(yw == yc);
    /* a change of the caller's buffer is what the next op reads */
    x[0] = 100.0f;
    mnas_tape *tp = new_tape(ctx);
    mnas_tensor *y = mnas_sum(tp, xw);
    ck_assert_double_eq_tol(mnas_tensor_item(y), mnas_tensor_item(mnas_sum(tp, xc)) + 100.0 - (-4.5), 1e-3);
    mnas_tape_free(tp);
    mnas_tensor_free(w);
    mnas_tensor_free(xc);
    mnas_tensor_free(xw);
    free(raw);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(random_shapes_and_ranges)
{
    mnas_ctx *ctx = new_ctx(5);
    const int64_t shape[3] = { 4, 5, 6 };
    mnas_tensor *n = mnas_tensor_randn(ctx, 3, shape, 1.0, 0.5);
    mnas_tensor *u = mnas_tensor_rand(ctx, 3, shape, -2.0, 3.0);
    ck_assert_ptr_nonnull(n);
    ck_assert_ptr_nonnull(u);
    assert_shape(n, 3, shape);
    assert_shape(u, 3, shape);
    const mnas_real *dn = mnas_tensor_cdata(n), *du = mnas_tensor_cdata(u);
    int distinct = 0;
    for (int i = 0; i < 120; i++) {
        ck_assert(isfinite(dn[i]));
        ck_assert(du[i] >= -2.0f && du[i] < 3.0f);
        distinct += i > 0 && dn[i] != dn[i - 1];
    }
    ck_assert_int_gt(distinct, 100);
    /* std 0 gives the mean exactly; lo == hi is allowed and gives lo */
    mnas_tensor *c = mnas_tensor_randn(ctx, 1, shape, 4.0, 0.0);
    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < 4; i++) ck_assert(mnas_tensor_cdata(c)[i] == 4.0f);
    mnas_tensor_free(c);
    mnas_tensor_free(n);
    mnas_tensor_free(u);
    mnas_ctx_free(ctx);
}
END_TEST

/* core.h documents Uniform[lo, hi). A double in [0, 1) converted to float
 * rounds up to 1.0f when it is within 2^-25 of 1 (probability 2^-25 per
 * element), so building the value in double and converting at the end can
 * return hi itself. Force the largest raw output and check the bound. */
START_TEST(rand_excludes_hi)
{
    /* Failures are collected and asserted after cleaning up, so that the
     * valgrind run (no fork) reports the failure rather than a leak. */
    char failure[256] = "";
    mnas_ctx *ctx = new_ctx(0);
    uint64_t st[MNAS_RNG_STATE_WORDS];
    const double ranges[3][2] = { { 0.0, 1.0 }, { -1.0, 1.0 }, { 1.0, 2.0 } };
    for (int k = 0; k < 3; k++) {
        double lo = ranges[k][0], hi = ranges[k][1];
        state_for_output(UINT64_MAX, st);
        ck_assert_int_eq(mnas_rng_set_state(mnas_ctx_rng(ctx), st), MNAS_OK);
        mnas_tensor *t = mnas_tensor_rand(ctx, 1, (int64_t[]){ 1 }, lo, hi);
        ck_assert_ptr_nonnull(t);
        double v = mnas_tensor_cdata(t)[0];
        mnas_tensor_free(t);
        if (!(v >= lo && v < hi) && !failure[0])
            snprintf(failure, sizeof failure, "mnas_tensor_rand in [%g, %g) gave %.9g", lo, hi, v);

        /* the same through an explicit generator */
        mnas_rng *r = mnas_rng_create(ctx, 0, 0);
        ck_assert_int_eq(mnas_rng_set_state(r, st), MNAS_OK);
        t = mnas_tensor_rand_rng(ctx, r, 1, (int64_t[]){ 1 }, lo, hi);
        mnas_rng_free(r);
        ck_assert_ptr_nonnull(t);
        v = mnas_tensor_cdata(t)[0];
        mnas_tensor_free(t);
        if (!(v >= lo && v < hi) && !failure[0])
            snprintf(failure, sizeof failure, "mnas_tensor_rand_rng in [%g, %g) gave %.9g", lo, hi, v);
    }
    /* and the smallest raw output gives lo */
    state_for_output(0, st);
    ck_assert_int_eq(mnas_rng_set_state(mnas_ctx_rng(ctx), st), MNAS_OK);
    mnas_tensor *t = mnas_tensor_rand(ctx, 1, (int64_t[]){ 1 }, -3.0, 5.0);
    ck_assert_ptr_nonnull(t);
    double first = mnas_tensor_cdata(t)[0];
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
    ck_assert(first == -3.0);
    ck_assert_msg(failure[0] == '\0', "%s", failure);
}
END_TEST

START_TEST(copy_persistent)
{
    mnas_ctx *ctx = new_ctx(1);
    const int64_t shape[2] = { 3, 4 };
    mnas_tensor *a = mnas_tensor_randn(ctx, 2, shape, 0, 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(a, 1), MNAS_OK);
    mnas_tensor *b = mnas_tensor_copy(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(b, a);
    assert_shape(b, 2, shape);
    ck_assert_ptr_ne(mnas_tensor_cdata(b), mnas_tensor_cdata(a));
    ck_assert_mem_eq(mnas_tensor_cdata(b), mnas_tensor_cdata(a), 12 * sizeof(mnas_real));
    ck_assert_int_eq(mnas_tensor_requires_grad(b), 0); /* documented */
    ck_assert_int_eq(mnas_tensor_is_tape_owned(b), 0);
    mnas_tensor_data(b)[0] = 1234.0f;
    ck_assert(mnas_tensor_cdata(a)[0] != 1234.0f);
    ck_assert_ptr_null(mnas_tensor_copy(NULL));
    mnas_tensor_free(a);
    mnas_tensor_free(b);
    mnas_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------- bad input */

START_TEST(bad_shapes)
{
    mnas_ctx *ctx = new_ctx(0);
    const mnas_real data[8] = { 0 };
    const int64_t ok[4] = { 1, 2, 2, 2 };
    const int64_t zero[2] = { 3, 0 };
    const int64_t neg[3] = { 2, -4, 1 };
    const int64_t huge[3] = { (int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31 };
    const int64_t max1[1] = { INT64_MAX };
    const int64_t maxs[2] = { INT64_MAX, INT64_MAX };
    struct {
        int ndim;
        const int64_t *shape;
        mnas_status status;
        const char *says;
    } cases[] = {
        { -1, ok, MNAS_E_SHAPE, "ndim -1" },
        { 5, ok, MNAS_E_SHAPE, "ndim 5" },
        { 2, zero, MNAS_E_SHAPE, "extent 0" },
        { 3, neg, MNAS_E_SHAPE, "extent -4" },
        { 3, huge, MNAS_E_SHAPE, "2^40" },
        { 1, max1, MNAS_E_SHAPE, "2^40" },
        { 2, maxs, MNAS_E_SHAPE, "2^40" },
        /* A NULL shape is a bad argument rather than a bad shape. */
        { 2, NULL, MNAS_E_INVALID, "shape is NULL" },
    };
    const char *fns[4] = { "mnas_tensor_zeros", "mnas_tensor_from_data", "mnas_tensor_randn",
                           "mnas_tensor_rand" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int f = 0; f < 4; f++) {
            mnas_ctx_clear_error(ctx);
            mnas_tensor *t = NULL;
            switch (f) {
            case 0: t = mnas_tensor_zeros(ctx, cases[i].ndim, cases[i].shape); break;
            case 1: t = mnas_tensor_from_data(ctx, cases[i].ndim, cases[i].shape, data); break;
            case 2: t = mnas_tensor_randn(ctx, cases[i].ndim, cases[i].shape, 0, 1); break;
            case 3: t = mnas_tensor_rand(ctx, cases[i].ndim, cases[i].shape, 0, 1); break;
            }
            ck_assert_msg(t == NULL, "%s accepted case %zu", fns[f], i);
            ASSERT_ERROR(ctx, fns[f], cases[i].status);
            ck_assert_msg(contains(mnas_ctx_last_error(ctx), cases[i].says), "case %zu: \"%s\"", i,
                          mnas_ctx_last_error(ctx));
        }
    }
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(bad_params)
{
    mnas_ctx *ctx = new_ctx(0);
    const int64_t shape[1] = { 3 };
    const mnas_real data[3] = { 1, 2, 3 };

    ck_assert_ptr_null(mnas_tensor_from_data(ctx, 1, shape, NULL));
    ASSERT_ERROR(ctx, "mnas_tensor_from_data", MNAS_E_INVALID);

    const double bad_randn[][2] = { { 0, -1 }, { NAN, 1 }, { 0, NAN }, { INFINITY, 1 },
                                    { 0, INFINITY }, { 0, -DBL_MIN } };
    for (size_t i = 0; i < sizeof bad_randn / sizeof bad_randn[0]; i++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_ptr_null(mnas_tensor_randn(ctx, 1, shape, bad_randn[i][0], bad_randn[i][1]));
        ASSERT_ERROR(ctx, "mnas_tensor_randn", MNAS_E_INVALID);
    }
    const double bad_rand[][2] = { { 1, 0 }, { 0, -1e-300 }, { NAN, 1 }, { 0, NAN },
                                   { -INFINITY, 0 }, { 0, INFINITY } };
    for (size_t i = 0; i < sizeof bad_rand / sizeof bad_rand[0]; i++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_ptr_null(mnas_tensor_rand(ctx, 1, shape, bad_rand[i][0], bad_rand[i][1]));
        ASSERT_ERROR(ctx, "mnas_tensor_rand", MNAS_E_INVALID);
    }
    ck_assert_ptr_null(mnas_tensor_randn_rng(ctx, NULL, 1, shape, 0, 1));
    ASSERT_ERROR(ctx, "mnas_tensor_randn", MNAS_E_INVALID);
    ck_assert_ptr_null(mnas_tensor_rand_rng(ctx, NULL, 1, shape, 0, 1));
    ASSERT_ERROR(ctx, "mnas_tensor_rand", MNAS_E_INVALID);

    /* NULL context: NULL, no crash. */
    mnas_rng *r = mnas_rng_create(ctx, 1, 1);
    ck_assert_ptr_null(mnas_tensor_zeros(NULL, 1, shape));
    ck_assert_ptr_null(mnas_tensor_from_data(NULL, 1, shape, data));
    ck_assert_ptr_null(mnas_tensor_randn(NULL, 1, shape, 0, 1));
    ck_assert_ptr_null(mnas_tensor_rand(NULL, 1, shape, 0, 1));
    ck_assert_ptr_null(mnas_tensor_randn_rng(NULL, r, 1, shape, 0, 1));
    ck_assert_ptr_null(mnas_tensor_rand_rng(NULL, r, 1, shape, 0, 1));
    mnas_rng_free(r);
    mnas_ctx_free(ctx);
}
END_TEST

/* Rejected random constructors leave the context generator where it was. */
START_TEST(bad_random_keeps_rng)
{
    mnas_ctx *ctx = new_ctx(77);
    uint64_t before[MNAS_RNG_STATE_WORDS], after[MNAS_RNG_STATE_WORDS];
    (void)mnas_rng_normal(mnas_ctx_rng(ctx)); /* a cached spare, too */
    mnas_rng_get_state(mnas_ctx_rng(ctx), before);
    ck_assert_ptr_null(mnas_tensor_randn(ctx, 5, (int64_t[]){ 1, 1, 1, 1, 1 }, 0, 1));
    ck_assert_ptr_null(mnas_tensor_randn(ctx, 1, (int64_t[]){ 4 }, 0, -1));
    ck_assert_ptr_null(mnas_tensor_rand(ctx, 1, (int64_t[]){ 0 }, 0, 1));
    ck_assert_ptr_null(mnas_tensor_rand(ctx, 1, (int64_t[]){ 4 }, 1, 0));
    mnas_rng_get_state(mnas_ctx_rng(ctx), after);
    ck_assert_mem_eq(before, after, sizeof before);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- queries */

START_TEST(queries_on_null)
{
    ck_assert_int_eq(mnas_tensor_ndim(NULL), -1);
    ck_assert_int_eq(mnas_tensor_size(NULL), 0);
    ck_assert_int_eq(mnas_tensor_dim(NULL, 0), 0);
    ck_assert_int_eq(mnas_tensor_dim(NULL, -1), 0);
    ck_assert_ptr_null(mnas_tensor_data(NULL));
    ck_assert_ptr_null(mnas_tensor_cdata(NULL));
    ck_assert_ptr_null(mnas_tensor_ctx(NULL));
    ck_assert_int_eq(mnas_tensor_is_tape_owned(NULL), -1);
    ck_assert_int_eq(mnas_tensor_is_valid(NULL), 0);
    ck_assert_int_eq(mnas_tensor_requires_grad(NULL), 0);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(NULL, 1), MNAS_E_INVALID);
    int64_t shape[MNAS_MAX_DIMS];
    ck_assert_int_eq(mnas_tensor_shape(NULL, shape), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_tensor_reshape(NULL, 1, (int64_t[]){ 1 }), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_tensor_assign(NULL, NULL), MNAS_E_INVALID);
}
END_TEST

START_TEST(dim_axes)
{
    mnas_ctx *ctx = new_ctx(0);
    const int64_t shape[4] = { 2, 3, 5, 7 };
    mnas_tensor *t = mnas_tensor_zeros(ctx, 4, shape);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(mnas_tensor_dim(t, i), shape[i]);
        ck_assert_int_eq(mnas_tensor_dim(t, i - 4), shape[i]);
    }
    ck_assert_int_eq(mnas_tensor_dim(t, -1), 7);
    ck_assert_int_eq(mnas_tensor_dim(t, 4), 0);
    ck_assert_int_eq(mnas_tensor_dim(t, -5), 0);
    ck_assert_int_eq(mnas_tensor_dim(t, 1000), 0);
    ck_assert_int_eq(mnas_tensor_dim(t, INT32_MIN), 0);
    mnas_tensor_free(t);

    mnas_tensor *v = mnas_tensor_zeros(ctx, 2, (int64_t[]){ 6, 9 });
    ck_assert_int_eq(mnas_tensor_dim(v, -1), 9);
    ck_assert_int_eq(mnas_tensor_dim(v, -2), 6);
    ck_assert_int_eq(mnas_tensor_dim(v, -3), 0);
    ck_assert_int_eq(mnas_tensor_dim(v, 2), 0);
    ck_assert_int_eq(mnas_tensor_shape(v, NULL), MNAS_E_INVALID);
    ASSERT_ERROR(ctx, "mnas_tensor_shape", MNAS_E_INVALID);
    mnas_tensor_free(v);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------- reshape */

START_TEST(reshape_persistent)
{
    mnas_ctx *ctx = new_ctx(3);
    const int64_t s23[2] = { 2, 3 };
    mnas_tensor *t = mnas_tensor_randn(ctx, 2, s23, 0, 1);
    mnas_real vals[6];
    memcpy(vals, mnas_tensor_cdata(t), sizeof vals);
    const mnas_real *data = mnas_tensor_cdata(t);

    const int64_t s321[3] = { 3, 2, 1 };
    ck_assert_int_eq(mnas_tensor_reshape(t, 3, s321), MNAS_OK);
    assert_shape(t, 3, s321);
    ck_assert_ptr_eq(mnas_tensor_cdata(t), data); /* in place */
    ck_assert_mem_eq(mnas_tensor_cdata(t), vals, sizeof vals);

    const int64_t s6[1] = { 6 };
    ck_assert_int_eq(mnas_tensor_reshape(t, 1, s6), MNAS_OK);
    assert_shape(t, 1, s6);

    /* wrong element count: refused, shape unchanged */
    const int64_t s7[1] = { 7 };
    ck_assert_int_eq(mnas_tensor_reshape(t, 1, s7), MNAS_E_SHAPE);
    ASSERT_ERROR(ctx, "mnas_tensor_reshape", MNAS_E_SHAPE);
    assert_shape(t, 1, s6);
    const int64_t s22[2] = { 2, 2 };
    ck_assert_int_eq(mnas_tensor_reshape(t, 2, s22), MNAS_E_SHAPE);
    assert_shape(t, 1, s6);
    /* invalid shapes: refused, unchanged */
    ck_assert_int_eq(mnas_tensor_reshape(t, 5, (int64_t[]){ 6, 1, 1, 1, 1 }), MNAS_E_SHAPE);
    ck_assert_int_eq(mnas_tensor_reshape(t, 2, (int64_t[]){ -2, -3 }), MNAS_E_SHAPE);
    ck_assert_int_eq(mnas_tensor_reshape(t, 2, NULL), MNAS_E_INVALID);
    assert_shape(t, 1, s6);
    ck_assert_mem_eq(mnas_tensor_cdata(t), vals, sizeof vals);

    /* a one-element tensor reshapes to a scalar and back */
    mnas_tensor *one = mnas_tensor_zeros(ctx, 2, (int64_t[]){ 1, 1 });
    ck_assert_int_eq(mnas_tensor_reshape(one, 0, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_ndim(one), 0);
    ck_assert_int_eq(mnas_tensor_size(one), 1);
    mnas_tensor_free(one);
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(reshape_tape_tensor)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tape *tp = new_tape(ctx);
    const int64_t s23[2] = { 2, 3 };
    mnas_tensor *t = mnas_tape_tensor(tp, 2, s23, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mnas_tensor_reshape(t, 1, (int64_t[]){ 6 }), MNAS_E_STATE);
    ASSERT_ERROR(ctx, "mnas_tensor_reshape", MNAS_E_STATE);
    assert_shape(t, 2, s23);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

/* -------------------------------------------------------------- assign */

START_TEST(assign_values)
{
    mnas_ctx *ctx = new_ctx(8);
    const int64_t s23[2] = { 2, 3 }, s6[1] = { 6 }, s5[1] = { 5 };
    mnas_tensor *src = mnas_tensor_randn(ctx, 2, s23, 0, 1);
    mnas_tensor *dst = mnas_tensor_zeros(ctx, 1, s6); /* other shape, same count */
    ck_assert_int_eq(mnas_tensor_assign(dst, src), MNAS_OK);
    ck_assert_mem_eq(mnas_tensor_cdata(dst), mnas_tensor_cdata(src), 6 * sizeof(mnas_real));
    ck_assert_ptr_ne(mnas_tensor_cdata(dst), mnas_tensor_cdata(src));
    assert_shape(dst, 1, s6); /* the shape of dst stays */
    ck_assert_int_eq(mnas_tensor_assign(dst, dst), MNAS_OK);

    /* size mismatch: refused, dst untouched */
    mnas_tensor *small = mnas_tensor_rand(ctx, 1, s5, 1, 2);
    mnas_real keep[6];
    memcpy(keep, mnas_tensor_cdata(dst), sizeof keep);
    ck_assert_int_eq(mnas_tensor_assign(dst, small), MNAS_E_SHAPE);
    ASSERT_ERROR(ctx, "mnas_tensor_assign", MNAS_E_SHAPE);
    ck_assert_mem_eq(mnas_tensor_cdata(dst), keep, sizeof keep);
    assert_shape(dst, 1, s6);
    ck_assert_int_eq(mnas_tensor_assign(small, dst), MNAS_E_SHAPE);

    ck_assert_int_eq(mnas_tensor_assign(dst, NULL), MNAS_E_INVALID);
    ASSERT_ERROR(ctx, "mnas_tensor_assign", MNAS_E_INVALID);
    ck_assert_mem_eq(mnas_tensor_cdata(dst), keep, sizeof keep);
    ck_assert_int_eq(mnas_tensor_assign(NULL, src), MNAS_E_INVALID);

    /* into a fresh tape tensor, and from one */
    mnas_tape *tp = new_tape(ctx);
    mnas_tensor *tt = mnas_tape_tensor(tp, 1, s6, NULL);
    ck_assert_int_eq(mnas_tensor_assign(tt, src), MNAS_OK);
    ck_assert_mem_eq(mnas_tensor_cdata(tt), mnas_tensor_cdata(src), 6 * sizeof(mnas_real));
    ck_assert_int_eq(mnas_tensor_assign(small, mnas_tape_tensor(tp, 1, s5, NULL)), MNAS_OK);
    for (int i = 0; i < 5; i++) ck_assert(mnas_tensor_cdata(small)[i] == 0);

    mnas_tape_free(tp);
    mnas_tensor_free(small);
    mnas_tensor_free(src);
    mnas_tensor_free(dst);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------ lifetimes */

START_TEST(free_noop_cases)
{
    mnas_tensor_free(NULL);
    mnas_ctx *ctx = new_ctx(0);
    mnas_tape *tp = new_tape(ctx);
    const mnas_real vals[3] = { 1, 2, 3 };
    mnas_tensor *t = mnas_tape_tensor(tp, 1, (int64_t[]){ 3 }, vals);
    ck_assert_ptr_nonnull(t);
    mnas_tensor_free(t); /* tape-owned: left to the tape */
    ck_assert_int_eq(mnas_tensor_is_valid(t), 1);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(t), 1);
    ck_assert_int_eq(mnas_tensor_size(t), 3);
    ck_assert_ptr_nonnull(mnas_tensor_cdata(t));
    ck_assert_mem_eq(mnas_tensor_cdata(t), vals, sizeof vals);
    /* and still usable in ops */
    mnas_tensor *s = mnas_add(tp, t, t);
    ck_assert_ptr_nonnull(s);
    ck_assert(mnas_tensor_cdata(s)[2] == 6.0f);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(tape_tensor_basics)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tape *tp = new_tape(ctx);
    const int64_t shape[2] = { 2, 2 };
    mnas_tensor *z = mnas_tape_tensor(tp, 2, shape, NULL);
    const mnas_real vals[4] = { 1, -1, 2, -2 };
    mnas_real src[4];
    memcpy(src, vals, sizeof src);
    mnas_tensor *d = mnas_tape_tensor(tp, 2, shape, src);
    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_nonnull(d);
    src[0] = 99; /* copied, not aliased */
    assert_shape(z, 2, shape);
    for (int i = 0; i < 4; i++) ck_assert(mnas_tensor_cdata(z)[i] == 0);
    ck_assert_mem_eq(mnas_tensor_cdata(d), vals, sizeof vals);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(z), 1);
    ck_assert_int_eq(mnas_tensor_is_valid(z), 1);
    ck_assert_ptr_eq(mnas_tensor_ctx(z), ctx);
    ck_assert_int_eq(mnas_tensor_requires_grad(z), 0);

    /* bad shapes on the tape */
    ck_assert_ptr_null(mnas_tape_tensor(tp, 5, (int64_t[]){ 1, 1, 1, 1, 1 }, NULL));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    ck_assert(contains(mnas_tape_last_error(tp), "mnas_tape_tensor"));
    ck_assert_ptr_null(mnas_tape_tensor(NULL, 1, (int64_t[]){ 1 }, NULL));
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(tape_reset_makes_stale)
{
    mnas_ctx *ctx = new_ctx(4);
    mnas_tape *tp = new_tape(ctx);
    const int64_t shape[2] = { 3, 2 };
    const mnas_real vals[6] = { 1, 2, 3, 4, 5, 6 };
    mnas_tensor *t = mnas_tape_tensor(tp, 2, shape, vals);
    mnas_tensor *p = mnas_tensor_randn(ctx, 2, shape, 0, 1);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(t), 1);
    ck_assert_int_eq(mnas_tensor_is_valid(t), 1);
    mnas_tensor *sum = mnas_add(tp, t, p); /* an op result: tape-owned too */
    ck_assert_ptr_nonnull(sum);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(sum), 1);
    ck_assert_ptr_nonnull(mnas_tensor_data(t));

    /* persistent copies taken before the reset */
    mnas_tensor *tc = mnas_tensor_copy(t);
    mnas_tensor *sc = mnas_tensor_copy(sum);
    ck_assert_ptr_nonnull(tc);
    ck_assert_ptr_nonnull(sc);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(tc), 0);
    mnas_real sum_vals[6];
    memcpy(sum_vals, mnas_tensor_cdata(sum), sizeof sum_vals);

    mnas_tape_reset(tp);
    /* Fill the new recording, so the old memory is really reused. */
    mnas_tensor *fresh[8];
    for (int i = 0; i < 8; i++) {
        fresh[i] = mnas_tape_tensor(tp, 2, shape, NULL);
        ck_assert_ptr_nonnull(fresh[i]);
        for (int j = 0; j < 6; j++) mnas_tensor_data(fresh[i])[j] = -7.0f;
    }

    mnas_tensor *stale[2] = { t, sum };
    for (int k = 0; k < 2; k++) {
        mnas_tensor *s = stale[k];
        ck_assert_int_eq(mnas_tensor_is_valid(s), 0);
        ck_assert_int_eq(mnas_tensor_is_tape_owned(s), -1);
        ck_assert_int_eq(mnas_tensor_ndim(s), -1);
        ck_assert_int_eq(mnas_tensor_size(s), 0);
        ck_assert_int_eq(mnas_tensor_dim(s, 0), 0);
        ck_assert_ptr_null(mnas_tensor_ctx(s));
        mnas_ctx_clear_error(ctx);
        ck_assert_ptr_null(mnas_tensor_data(s));
        ASSERT_ERROR(ctx, "mnas_tensor_data", MNAS_E_STALE);
        ck_assert(contains(mnas_ctx_last_error(ctx), "reset"));
        ck_assert_ptr_null(mnas_tensor_cdata(s));
        ck_assert(isnan(mnas_tensor_item(s)));
        ck_assert_ptr_null(mnas_tensor_copy(s));
        ASSERT_ERROR(ctx, "mnas_tensor_copy", MNAS_E_STALE);
        ck_assert_int_eq(mnas_tensor_set_requires_grad(s, 1), MNAS_E_STALE);
        int64_t sh[MNAS_MAX_DIMS];
        ck_assert_int_eq(mnas_tensor_shape(s, sh), MNAS_E_STALE);
        ck_assert_int_eq(mnas_tensor_assign(s, p), MNAS_E_STALE);
        ck_assert_int_eq(mnas_tensor_assign(tc, s), MNAS_E_STALE);
        mnas_tensor_free(s); /* a no-op, not a crash */
    }
    ck_assert_mem_eq(mnas_tensor_cdata(tc), vals, sizeof vals); /* assign above failed */

    /* Using a stale tensor in an op: NULL, MNAS_E_STALE on the tape. */
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_OK);
    ck_assert_ptr_null(mnas_add(tp, t, p));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_STALE);
    ck_assert(contains(mnas_tape_last_error(tp), "mnas_add"));
    ck_assert(contains(mnas_tape_last_error(tp), "reset"));
    ASSERT_ERROR(ctx, "mnas_add", MNAS_E_STALE);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_add(tp, p, sum));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_STALE);

    /* The copies survived with their values; the persistent input too. */
    ck_assert_int_eq(mnas_tensor_is_valid(tc), 1);
    ck_assert_int_eq(mnas_tensor_is_valid(p), 1);
    ck_assert_mem_eq(mnas_tensor_cdata(tc), vals, sizeof vals);
    ck_assert_mem_eq(mnas_tensor_cdata(sc), sum_vals, sizeof sum_vals);
    assert_shape(tc, 2, shape);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(mnas_tensor_is_valid(fresh[i]), 1);

    mnas_tensor_free(tc);
    mnas_tensor_free(sc);
    mnas_tensor_free(p);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

/* core.h: stale use is "detected at least until the next reset". The tape
 * keeps tensor headers in two arenas by epoch parity; when the epoch counter
 * wraps (UINT32_MAX -> 0 -> 1) two consecutive recordings share a parity, so
 * the new recording reuses the previous one's headers and an old handle
 * turns into a live alias of a new tensor. */
START_TEST(stale_detected_across_epoch_wrap)
{
    char failure[256] = "";
    mnas_ctx *ctx = new_ctx(0);
    mnas_tape *tp = new_tape(ctx);
    tp->epoch = UINT32_MAX - 2; /* as after ~4e9 resets */
    for (int round = 0; round < 4 && !failure[0]; round++) {
        const mnas_real one = 1.0f;
        mnas_tensor *old = mnas_tape_tensor(tp, 1, (int64_t[]){ 1 }, &one);
        ck_assert_ptr_nonnull(old);
        mnas_tape_reset(tp);
        const mnas_real two = 2.0f;
        mnas_tensor *fresh = mnas_tape_tensor(tp, 1, (int64_t[]){ 1 }, &two);
        ck_assert_ptr_nonnull(fresh);
        if (mnas_tensor_is_valid(old) != 0 || old == fresh)
            snprintf(failure, sizeof failure,
                     "round %d (epoch now %u): a handle of the previous recording is live again%s",
                     round, (unsigned)tp->epoch, old == fresh ? " (it aliases the new tensor)" : "");
        mnas_tape_reset(tp);
    }
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
    ck_assert_msg(failure[0] == '\0', "%s", failure);
}
END_TEST

START_TEST(detach_shares_values)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tape *tp = new_tape(ctx);
    const mnas_real vals[4] = { 1, 2, 3, 4 };
    mnas_tensor *x = mnas_tape_tensor(tp, 2, (int64_t[]){ 2, 2 }, vals);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(x, 1), MNAS_OK);
    mnas_tensor *y = mnas_scale(tp, x, 2.0);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 1);

    mnas_tensor *d = mnas_detach(tp, y);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_ne(d, y);
    ck_assert_int_eq(mnas_tensor_requires_grad(d), 0);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(d), 1);
    assert_shape(d, 2, (int64_t[]){ 2, 2 });
    ck_assert_ptr_eq(mnas_tensor_cdata(d), mnas_tensor_cdata(y)); /* shared memory */
    for (int i = 0; i < 4; i++) ck_assert(mnas_tensor_cdata(d)[i] == 2 * vals[i]);
    mnas_tensor_data(y)[1] = 42.0f;
    ck_assert(mnas_tensor_cdata(d)[1] == 42.0f);

    /* detaching a persistent tensor: a tape view of its memory */
    mnas_tensor *p = mnas_tensor_from_data(ctx, 1, (int64_t[]){ 4 }, vals);
    mnas_tensor *dp = mnas_detach(tp, p);
    ck_assert_ptr_nonnull(dp);
    ck_assert_int_eq(mnas_tensor_is_tape_owned(dp), 1);
    ck_assert_ptr_eq(mnas_tensor_cdata(dp), mnas_tensor_cdata(p));

    ck_assert_ptr_null(mnas_detach(tp, NULL));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_INVALID);
    ck_assert_ptr_null(mnas_detach(NULL, p));

    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_tensor_is_valid(d), 0);
    ck_assert_int_eq(mnas_tensor_is_valid(dp), 0);
    ck_assert_int_eq(mnas_tensor_is_valid(p), 1);
    ck_assert_mem_eq(mnas_tensor_cdata(p), vals, sizeof vals);
    mnas_tensor_free(p);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------- random tensors */

START_TEST(random_reproducible)
{
    const int64_t shape[2] = { 7, 9 }; /* odd count: a spare normal is left over */
    mnas_ctx *a = new_ctx(2020), *b = new_ctx(2020);
    mnas_tensor *ta = mnas_tensor_randn(a, 2, shape, 0.5, 2.0);
    mnas_tensor *tb = mnas_tensor_randn(b, 2, shape, 0.5, 2.0);
    ck_assert_mem_eq(mnas_tensor_cdata(ta), mnas_tensor_cdata(tb), 63 * sizeof(mnas_real));
    mnas_tensor *ua = mnas_tensor_rand(a, 2, shape, -1, 1);
    mnas_tensor *ub = mnas_tensor_rand(b, 2, shape, -1, 1);
    ck_assert_mem_eq(mnas_tensor_cdata(ua), mnas_tensor_cdata(ub), 63 * sizeof(mnas_real));

    /* reseeding restarts the stream */
    mnas_ctx_seed(a, 2020);
    mnas_tensor *ta2 = mnas_tensor_randn(a, 2, shape, 0.5, 2.0);
    ck_assert_mem_eq(mnas_tensor_cdata(ta), mnas_tensor_cdata(ta2), 63 * sizeof(mnas_real));
    /* another seed gives other values */
    mnas_ctx_seed(b, 2021);
    mnas_tensor *tb2 = mnas_tensor_randn(b, 2, shape, 0.5, 2.0);
    int differ = 0;
    for (int i = 0; i < 63; i++) differ += mnas_tensor_cdata(tb2)[i] != mnas_tensor_cdata(ta)[i];
    ck_assert_int_gt(differ, 60);

    /* the values are mean + std * the context's normal stream (seed, 0) */
    mnas_rng *r = mnas_rng_create(a, 2020, 0);
    for (int i = 0; i < 63; i++) {
        mnas_real expect = (mnas_real)(0.5 + 2.0 * mnas_rng_normal(r));
        ck_assert_msg(mnas_tensor_cdata(ta)[i] == expect, "element %d", i);
    }
    /* and an explicit generator gives the same as the context one */
    mnas_rng_seed(r, 2020, 0);
    mnas_tensor *tr = mnas_tensor_randn_rng(a, r, 2, shape, 0.5, 2.0);
    ck_assert_mem_eq(mnas_tensor_cdata(ta), mnas_tensor_cdata(tr), 63 * sizeof(mnas_real));

    /* one call of 63 equals calls of 1 + 62 (the spare normal carries over) */
    mnas_ctx_seed(a, 2020);
    mnas_tensor *p1 = mnas_tensor_randn(a, 1, (int64_t[]){ 1 }, 0.5, 2.0);
    mnas_tensor *p2 = mnas_tensor_randn(a, 1, (int64_t[]){ 62 }, 0.5, 2.0);
    ck_assert(mnas_tensor_cdata(p1)[0] == mnas_tensor_cdata(ta)[0]);
    ck_assert_mem_eq(mnas_tensor_cdata(p2), mnas_tensor_cdata(ta) + 1, 62 * sizeof(mnas_real));

    mnas_tensor *all[] = { ta, tb, ua, ub, ta2, tb2, tr, p1, p2 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mnas_tensor_free(all[i]);
    mnas_rng_free(r);
    mnas_ctx_free(a);
    mnas_ctx_free(b);
}
END_TEST

START_TEST(randn_statistics)
{
    mnas_ctx *ctx = new_ctx(31337);
    const int64_t shape[2] = { 100, 100 };
    const double mean = 3.0, sd = 2.0;
    mnas_tensor *t = mnas_tensor_randn(ctx, 2, shape, mean, sd);
    const mnas_real *d = mnas_tensor_cdata(t);
    double s = 0, s2 = 0;
    int above = 0;
    for (int i = 0; i < 10000; i++) {
        s += d[i];
        s2 += (double)d[i] * d[i];
        above += d[i] > mean;
    }
    double m = s / 10000, var = s2 / 10000 - m * m;
    /* standard errors: mean 0.02, sd about 0.014 */
    ck_assert_double_eq_tol(m, mean, 0.1);
    ck_assert_double_eq_tol(sqrt(var), sd, 0.1);
    ck_assert_int_gt(above, 4700);
    ck_assert_int_lt(above, 5300);

    mnas_tensor *u = mnas_tensor_rand(ctx, 2, shape, -4.0, 2.0);
    const mnas_real *du = mnas_tensor_cdata(u);
    s = 0;
    for (int i = 0; i < 10000; i++) s += du[i];
    ck_assert_double_eq_tol(s / 10000, -1.0, 0.1);
    mnas_tensor_free(u);
    mnas_tensor_free(t);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------- requires_grad */

START_TEST(requires_grad_round_trip)
{
    mnas_ctx *ctx = new_ctx(0);
    mnas_tensor *p = mnas_tensor_zeros(ctx, 1, (int64_t[]){ 3 });
    ck_assert_int_eq(mnas_tensor_requires_grad(p), 0);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(p, 1), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_requires_grad(p), 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(p, 5), MNAS_OK); /* any non-zero */
    ck_assert_int_eq(mnas_tensor_requires_grad(p), 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(p, 0), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_requires_grad(p), 0);

    mnas_tape *tp = new_tape(ctx);
    mnas_tensor *t = mnas_tape_tensor(tp, 1, (int64_t[]){ 3 }, NULL);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(t, 1), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_requires_grad(t), 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(t, 0), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_requires_grad(t), 0);

    /* The result of a recorded op requires a gradient and keeps it. */
    ck_assert_int_eq(mnas_tensor_set_requires_grad(p, 1), MNAS_OK);
    mnas_tensor *y = mnas_add(tp, p, t);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(y, 0), MNAS_E_STATE);
    ASSERT_ERROR(ctx, "mnas_tensor_set_requires_grad", MNAS_E_STATE);
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(y, 1), MNAS_OK);

    /* Without a grad-requiring input nothing is recorded. */
    ck_assert_int_eq(mnas_tensor_set_requires_grad(p, 0), MNAS_OK);
    mnas_tensor *z = mnas_add(tp, p, t);
    ck_assert_int_eq(mnas_tensor_requires_grad(z), 0);

    mnas_tape_free(tp);
    mnas_tensor_free(p);
    mnas_ctx_free(ctx);
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");

    TCase *tc = tcase_create("create");
    tcase_add_test(tc, zeros_shapes);
    tcase_add_test(tc, scalar_ndim0);
    tcase_add_test(tc, item_not_scalar);
    tcase_add_test(tc, from_data_copies);
    tcase_add_test(tc, random_shapes_and_ranges);
    tcase_add_test(tc, rand_excludes_hi);
    tcase_add_test(tc, copy_persistent);
    tcase_add_test(tc, wrap_shares_memory);
    tcase_add_test(tc, wrap_op_and_gradient_unaligned);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, bad_shapes);
    tcase_add_test(tc, bad_params);
    tcase_add_test(tc, bad_random_keeps_rng);
    tcase_add_test(tc, wrap_bad_input);
    tcase_add_test(tc, wrap_out_of_memory);
    suite_add_tcase(s, tc);

    tc = tcase_create("queries");
    tcase_add_test(tc, queries_on_null);
    tcase_add_test(tc, dim_axes);
    tcase_add_test(tc, reshape_persistent);
    tcase_add_test(tc, reshape_tape_tensor);
    tcase_add_test(tc, assign_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetimes");
    tcase_add_test(tc, free_noop_cases);
    tcase_add_test(tc, tape_tensor_basics);
    tcase_add_test(tc, tape_reset_makes_stale);
    tcase_add_test(tc, stale_detected_across_epoch_wrap);
    tcase_add_test(tc, detach_shares_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, random_reproducible);
    tcase_add_test(tc, randn_statistics);
    tcase_add_test(tc, requires_grad_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tensor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
