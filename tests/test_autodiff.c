/* The tape and ops in the float32 library, as users link it: forward values
 * against plain reference loops, tape semantics (recording, no-grad,
 * detach, create_graph, reset), and bad input of every kind. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_tape *tp;

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 12345;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
}

static void teardown(void)
{
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}

static mnas_tensor *randn2(int64_t r, int64_t c)
{
    int64_t s[2] = { r, c };
    mnas_tensor *t = mnas_tensor_randn(ctx, 2, s, 0, 1);
    ck_assert_ptr_nonnull(t);
    return t;
}

static const mnas_real *D(mnas_tensor *t)
{
    const mnas_real *d = mnas_tensor_cdata(t);
    ck_assert_ptr_nonnull(d);
    return d;
}

#define ASSERT_CLOSE(a, b, tol) ck_assert_msg(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g", (double)(a), (double)(b))

/* ---- forward values --------------------------------------------------- */

START_TEST(broadcast_binary_values)
{
    mnas_tensor *a = randn2(3, 4), *row = randn2(1, 4), *col = randn2(3, 1);
    int64_t s0[1] = { 1 };
    mnas_tensor *sc = mnas_tensor_randn(ctx, 0, s0, 0, 1);
    mnas_tensor *r;
    r = mnas_add(tp, a, row);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ASSERT_CLOSE(D(r)[i * 4 + j], D(a)[i * 4 + j] + D(row)[j], 1e-6);
    r = mnas_sub(tp, a, col);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ASSERT_CLOSE(D(r)[i * 4 + j], D(a)[i * 4 + j] - D(col)[i], 1e-6);
    r = mnas_mul(tp, sc, a);
    for (int i = 0; i < 12; i++) ASSERT_CLOSE(D(r)[i], D(a)[i] * D(sc)[0], 1e-6);
    r = mnas_div(tp, col, row); /* [3,1] / [1,4] -> [3,4] */
    ck_assert_int_eq(mnas_tensor_dim(r, 0), 3);
    ck_assert_int_eq(mnas_tensor_dim(r, 1), 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ASSERT_CLOSE(D(r)[i * 4 + j], D(col)[i] / D(row)[j], 1e-5 * fabs(D(r)[i * 4 + j]) + 1e-6);
    mnas_tensor_free(a);
    mnas_tensor_free(row);
    mnas_tensor_free(col);
    mnas_tensor_free(sc);
}
END_TEST

START_TEST(unary_values)
{
    mnas_tensor *x = randn2(4, 5);
    const mnas_real *d = D(x);
    mnas_tensor *y;
    y = mnas_relu(tp, x);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], d[i] > 0 ? d[i] : 0, 0);
    y = mnas_sigmoid(tp, x);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], 1 / (1 + exp(-d[i])), 1e-6);
    y = mnas_tanh(tp, x);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], tanh(d[i]), 1e-6);
    y = mnas_exp(tp, x);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], exp(d[i]), 1e-5 * exp(d[i]));
    y = mnas_log(tp, mnas_exp(tp, x));
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], d[i], 1e-5);
    y = mnas_sqrt(tp, mnas_square(tp, x));
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], fabs(d[i]), 1e-6);
    y = mnas_pow(tp, mnas_square(tp, x), 1.5);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], pow(fabs(d[i]), 3), 1e-5 * (1 + pow(fabs(d[i]), 3)));
    y = mnas_scale(tp, mnas_add_scalar(tp, mnas_neg(tp, x), 2.0), 3.0);
    for (int i = 0; i < 20; i++) ASSERT_CLOSE(D(y)[i], 3 * (2 - d[i]), 1e-5);
    /* sigmoid stays finite at the extremes */
    mnas_real big[2] = { 1000, -1000 };
    int64_t s[1] = { 2 };
    y = mnas_sigmoid(tp, mnas_tape_tensor(tp, 1, s, big));
    ck_assert(D(y)[0] == 1 && D(y)[1] == 0);
    /* The float build's own vector exp: a sweep over [-100, 100] (odd
     * count: the last block of 8 is partial), infinities and NaN. */
    enum { NS = 2003 };
    static mnas_real sw[NS + 3];
    for (int i = 0; i < NS; i++) sw[i] = (mnas_real)(-100.0 + 200.0 * i / (NS - 1));
    sw[NS] = INFINITY;
    sw[NS + 1] = -INFINITY;
    sw[NS + 2] = NAN;
    int64_t ns[1] = { NS + 3 };
    y = mnas_sigmoid(tp, mnas_tape_tensor(tp, 1, ns, sw));
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < NS; i++) {
        double v = sw[i], ref = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
        double tol = ref < 1e-37 ? 2e-38 : 3e-7 * ref; /* 0 below -87 */
        ck_assert_msg(fabs(D(y)[i] - ref) <= tol, "sigmoid(%g) = %.9g, expected %.9g", v, (double)D(y)[i], ref);
    }
    ck_assert(D(y)[NS] == 1 && D(y)[NS + 1] == 0 && isnan(D(y)[NS + 2]));
    mnas_tensor_free(x);
}
END_TEST

static void ref_gemm(int ta, int tb, int M, int N, int K, const mnas_real *A, const mnas_real *B, double *C)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            C[i * N + j] = s;
        }
}

START_TEST(matmul_and_linear_values)
{
    int M = 7, N = 5, K = 9;
    double ref[64];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            mnas_tensor *a = ta ? randn2(K, M) : randn2(M, K);
            mnas_tensor *b = tb ? randn2(N, K) : randn2(K, N);
            mnas_tensor *c = mnas_matmul(tp, a, b, ta, tb);
            ck_assert_ptr_nonnull(c);
            ck_assert_int_eq(mnas_tensor_dim(c, 0), M);
            ck_assert_int_eq(mnas_tensor_dim(c, 1), N);
            ref_gemm(ta, tb, M, N, K, D(a), D(b), ref);
            for (int i = 0; i < M * N; i++) ASSERT_CLOSE(D(c)[i], ref[i], 1e-5);
            mnas_tensor_free(a);
            mnas_tensor_free(b);
        }
    mnas_tensor *x = randn2(M, K), *w = randn2(N, K);
    int64_t sb[1] = { N };
    mnas_tensor *b = mnas_tensor_randn(ctx, 1, sb, 0, 1);
    mnas_tensor *y = mnas_linear(tp, x, w, b);
    ref_gemm(0, 1, M, N, K, D(x), D(w), ref);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) ASSERT_CLOSE(D(y)[i * N + j], ref[i * N + j] + D(b)[j], 1e-5);
    y = mnas_linear(tp, x, w, NULL);
    for (int i = 0; i < M * N; i++) ASSERT_CLOSE(D(y)[i], ref[i], 1e-5);
    mnas_tensor *t = mnas_transpose(tp, x);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) ck_assert(D(t)[k * M + i] == D(x)[i * K + k]);
    mnas_tensor_free(x);
    mnas_tensor_free(w);
    mnas_tensor_free(b);
}
END_TEST

/* op(A) [M, K] times op(B) [K, N] through mnas_matmul against the
 * reference, ref holding at least M * N doubles. The inputs are exact binary
 * fractions (multiples of 1/32 below 1 in the products): products and their
 * sums are exact in float for the sizes used here, so equality is required. */
static void check_exact_matmul(int M, int N, int K, int ta, int tb, double *ref)
{
    mnas_tape_reset(tp);
    int64_t as[2] = { ta ? K : M, ta ? M : K }, bs[2] = { tb ? N : K, tb ? K : N };
    mnas_tensor *a = mnas_tape_tensor(tp, 2, as, NULL), *b = mnas_tape_tensor(tp, 2, bs, NULL);
    mnas_real *pa = mnas_tensor_data(a), *pb = mnas_tensor_data(b);
    for (int i = 0; i < M * K; i++) pa[i] = (mnas_real)((i * 7 % 13) - 6) / 4;
    for (int i = 0; i < K * N; i++) pb[i] = (mnas_real)((i * 5 % 11) - 5) / 8;
    mnas_tensor *c = mnas_matmul(tp, a, b, ta, tb);
    ck_assert_ptr_nonnull(c);
    ref_gemm(ta, tb, M, N, K, pa, pb, ref);
    for (int i = 0; i < M * N; i++)
        ck_assert_msg(D(c)[i] == ref[i], "M%d N%d K%d ta%d tb%d at %d: %g vs %g", M, N, K, ta, tb, i, (double)D(c)[i],
                      ref[i]);
}

/* Every GEMM path (matrix-vector, the small register-blocked kernel, BLIS)
 * against the reference, for all four transpose combinations. */
START_TEST(matmul_shape_sweep)
{
    static const int ext[] = { 1, 2, 3, 5, 9, 17, 40, 70 };
    const int ne = (int)(sizeof ext / sizeof ext[0]);
    /* under valgrind (no AVX-512 there: BLIS's path) every other extent */
    const int step = getenv("MNAS_TEST_UNDER_VALGRIND") ? 2 : 1;
    static double ref[70 * 70];
    for (int mi = 0; mi < ne; mi += step)
        for (int ni = 0; ni < ne; ni += step)
            for (int ki = 0; ki < ne; ki += step)
                for (int t = 0; t < 4; t++) check_exact_matmul(ext[mi], ext[ni], ext[ki], t & 1, t >> 1, ref);
}
END_TEST

/* Long, skinny products (the batched modulator's shapes, scaled down): a
 * transposed B wider than one pack panel, a K longer than one chunk, and
 * many rows, with ragged tails, and the convolutions' shapes that pass one
 * K chunk and one column panel; exact as in the sweep above (sums of at
 * most 700 multiples of 1/32 below 1). */
START_TEST(matmul_long_skinny)
{
    static const int shapes[][3] = { { 25, 600, 32 }, { 25, 32, 700 }, { 601, 32, 25 }, { 7, 1000, 100 },
                                     { 130, 40, 300 }, { 3, 48, 513 },
                                     /* the conv net's im2col products: forward, input and weight gradients */
                                     { 32, 196, 288 }, { 288, 196, 32 }, { 32, 288, 196 }, { 33, 67, 257 } };
    static double ref[288 * 196];
    /* under valgrind one conv shape: the others add run time, not code paths */
    size_t nq = getenv("MNAS_TEST_UNDER_VALGRIND") ? 7 : sizeof shapes / sizeof shapes[0];
    for (size_t q = 0; q < nq; q++)
        for (int t = 0; t < 4; t++) {
            int M = shapes[q][0], N = shapes[q][1], K = shapes[q][2];
            ck_assert((size_t)M * (size_t)N <= sizeof ref / sizeof ref[0]);
            check_exact_matmul(M, N, K, t & 1, t >> 1, ref);
        }
}
END_TEST

START_TEST(reduction_and_shape_values)
{
    int64_t s3[3] = { 2, 3, 4 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 3, s3, 0, 1);
    const mnas_real *d = D(x);
    double total = 0;
    for (int i = 0; i < 24; i++) total += d[i];
    ASSERT_CLOSE(mnas_tensor_item(mnas_sum(tp, x)), total, 1e-5);
    ASSERT_CLOSE(mnas_tensor_item(mnas_mean(tp, x)), total / 24, 1e-6);
    ck_assert_int_eq(mnas_tensor_ndim(mnas_sum(tp, x)), 0);
    mnas_tensor *s1 = mnas_sum_axis(tp, x, 1, 0); /* [2,4] */
    ck_assert_int_eq(mnas_tensor_ndim(s1), 2);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            double r = 0;
            for (int j = 0; j < 3; j++) r += d[i * 12 + j * 4 + k];
            ASSERT_CLOSE(D(s1)[i * 4 + k], r, 1e-5);
        }
    mnas_tensor *m2 = mnas_mean_axis(tp, x, -1, 1); /* [2,3,1] */
    ck_assert_int_eq(mnas_tensor_dim(m2, 2), 1);
    for (int i = 0; i < 6; i++) ASSERT_CLOSE(D(m2)[i], (d[i * 4] + d[i * 4 + 1] + d[i * 4 + 2] + d[i * 4 + 3]) / 4, 1e-6);
    int64_t to[3] = { 1, 3, 1 };
    mnas_tensor *st = mnas_sum_to(tp, x, 3, to);
    for (int j = 0; j < 3; j++) {
        double r = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++) r += d[i * 12 + j * 4 + k];
        ASSERT_CLOSE(D(st)[j], r, 1e-5);
    }
    mnas_tensor *bt = mnas_broadcast_to(tp, st, 3, s3);
    for (int i = 0; i < 24; i++) ck_assert(D(bt)[i] == D(st)[(i / 4) % 3]);
    int64_t r2[2] = { 6, 4 };
    mnas_tensor *rs = mnas_reshape(tp, x, 2, r2);
    ck_assert(memcmp(D(rs), d, 24 * sizeof(mnas_real)) == 0);
    /* concat / slice / pad round trip */
    mnas_tensor *parts[2] = { mnas_slice(tp, x, 2, 0, 1), mnas_slice(tp, x, 2, 1, 3) };
    mnas_tensor *cat = mnas_concat(tp, 2, parts, 2);
    ck_assert(memcmp(D(cat), d, 24 * sizeof(mnas_real)) == 0);
    mnas_tensor *pad = mnas_pad_axis(tp, parts[0], 2, 2, 5);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 5; k++) ck_assert(D(pad)[i * 5 + k] == (k == 2 ? d[i * 4] : 0));
    /* gather / scatter */
    int64_t idx[4] = { 1, 1, 0, 1 };
    mnas_tensor *g = mnas_gather_rows(tp, x, 4, idx);
    ck_assert_int_eq(mnas_tensor_dim(g, 0), 4);
    ck_assert(memcmp(D(g), d + 12, 12 * sizeof(mnas_real)) == 0);
    ck_assert(memcmp(D(g) + 24, d, 12 * sizeof(mnas_real)) == 0);
    mnas_tensor *sc = mnas_scatter_add_rows(tp, g, 4, idx, 3);
    for (int j = 0; j < 12; j++) {
        ASSERT_CLOSE(D(sc)[j], d[j], 1e-6);
        ASSERT_CLOSE(D(sc)[12 + j], 3 * d[12 + j], 1e-5);
        ck_assert(D(sc)[24 + j] == 0);
    }
    mnas_tensor_free(x);
}
END_TEST

START_TEST(softmax_losses_batchnorm_values)
{
    mnas_tensor *x = randn2(3, 5);
    const mnas_real *d = D(x);
    mnas_tensor *sm = mnas_softmax(tp, x), *lsm = mnas_log_softmax(tp, x);
    for (int i = 0; i < 3; i++) {
        double z = 0;
        for (int j = 0; j < 5; j++) z += exp(d[i * 5 + j]);
        for (int j = 0; j < 5; j++) {
            ASSERT_CLOSE(D(sm)[i * 5 + j], exp(d[i * 5 + j]) / z, 1e-6);
            ASSERT_CLOSE(D(lsm)[i * 5 + j], d[i * 5 + j] - log(z), 1e-5);
        }
    }
    /* log-softmax does not overflow for large logits */
    mnas_tensor *big = mnas_scale(tp, x, 1000);
    mnas_tensor *lb = mnas_log_softmax(tp, big);
    for (int i = 0; i < 15; i++) ck_assert(isfinite(D(lb)[i]) && D(lb)[i] <= 0);
    int32_t labels[3] = { 4, 0, 2 };
    double ce = 0;
    for (int i = 0; i < 3; i++) ce -= D(lsm)[i * 5 + labels[i]];
    ASSERT_CLOSE(mnas_tensor_item(mnas_cross_entropy(tp, x, 3, labels)), ce / 3, 1e-5);
    mnas_tensor *t = randn2(3, 5);
    double mse = 0;
    for (int i = 0; i < 15; i++) mse += (d[i] - D(t)[i]) * (d[i] - D(t)[i]);
    ASSERT_CLOSE(mnas_tensor_item(mnas_mse(tp, x, t)), mse / 15, 1e-5);
    /* batch-norm: each feature of the output has mean beta and (biased)
     * variance gamma^2 * var / (var + eps) */
    mnas_real gam[5] = { 1, 2, 0.5, -1, 3 }, bet[5] = { 0, 1, -1, 0.5, 2 };
    int64_t s5[1] = { 5 };
    mnas_tensor *bn = mnas_batch_norm(tp, x, mnas_tape_tensor(tp, 1, s5, gam), mnas_tape_tensor(tp, 1, s5, bet), 1e-5);
    for (int j = 0; j < 5; j++) {
        double m = 0, v = 0, mx = 0, vx = 0;
        for (int i = 0; i < 3; i++) mx += d[i * 5 + j] / 3;
        for (int i = 0; i < 3; i++) vx += (d[i * 5 + j] - mx) * (d[i * 5 + j] - mx) / 3;
        for (int i = 0; i < 3; i++) m += D(bn)[i * 5 + j] / 3;
        for (int i = 0; i < 3; i++) v += (D(bn)[i * 5 + j] - m) * (D(bn)[i * 5 + j] - m) / 3;
        ASSERT_CLOSE(m, bet[j], 1e-5);
        ASSERT_CLOSE(v, gam[j] * gam[j] * vx / (vx + 1e-5), 1e-4);
    }
    /* NCHW: statistics per channel over N, H, W */
    int64_t s4[4] = { 2, 3, 2, 2 };
    mnas_tensor *x4 = mnas_tensor_randn(ctx, 4, s4, 3, 2);
    mnas_tensor *b4 = mnas_batch_norm(tp, x4, NULL, NULL, 1e-5);
    for (int c = 0; c < 3; c++) {
        double m = 0, v = 0;
        for (int n = 0; n < 2; n++)
            for (int k = 0; k < 4; k++) m += D(b4)[n * 12 + c * 4 + k] / 8;
        for (int n = 0; n < 2; n++)
            for (int k = 0; k < 4; k++) v += pow(D(b4)[n * 12 + c * 4 + k] - m, 2) / 8;
        ASSERT_CLOSE(m, 0, 1e-5);
        ASSERT_CLOSE(v, 1, 1e-3);
    }
    mnas_tensor_free(x);
    mnas_tensor_free(t);
    mnas_tensor_free(x4);
}
END_TEST

/* NCHW batch-norm in float: the kernels sum in 16 float lanes (and dbeta
 * in double), so runs of 9, 49, 196 and 323 values cover full blocks of 16,
 * a block of 8 and one-by-one tails. Values and gradients against the
 * formulas in double; and the recorded backward (dx and dgamma as fused
 * ops, dbeta as mnas_sum_to) gives the bits of the unrecorded one: the
 * memory-saving inner loops rely on it (their first pass is unrecorded). */
START_TEST(batch_norm_nchw_values_and_recorded_bits)
{
    const int64_t hw[4][2] = { { 3, 3 }, { 7, 7 }, { 14, 14 }, { 19, 17 } };
    for (int k = 0; k < 4; k++) {
        int64_t N = 3, C = 4, inner = hw[k][0] * hw[k][1];
        int64_t s4[4] = { N, C, hw[k][0], hw[k][1] }, s1[1] = { C };
        mnas_tensor *x = mnas_tensor_randn(ctx, 4, s4, 0.5, 2), *w = mnas_tensor_randn(ctx, 4, s4, 0, 1);
        mnas_tensor *gam = mnas_tensor_randn(ctx, 1, s1, 1, 0.5), *bet = mnas_tensor_randn(ctx, 1, s1, 0, 0.5);
        ck_assert(x && w && gam && bet);
        mnas_tensor *in[3] = { x, gam, bet };
        for (int i = 0; i < 3; i++) mnas_tensor_set_requires_grad(in[i], 1);
        mnas_tensor *y = mnas_batch_norm(tp, x, gam, bet, 1e-5);
        mnas_tensor *loss = mnas_sum(tp, mnas_mul(tp, y, w)); /* upstream gradient w */
        mnas_tensor *g[3], *gr[3];
        ck_assert_int_eq(mnas_grad(tp, loss, 3, in, g, 0), MNAS_OK);
        ck_assert_int_eq(mnas_grad(tp, loss, 3, in, gr, 1), MNAS_OK);
        for (int i = 0; i < 3; i++)
            ck_assert_msg(!memcmp(D(g[i]), D(gr[i]), (size_t)mnas_tensor_size(g[i]) * sizeof(mnas_real)),
                          "%lld values a run: recorded gradient %d differs from the fused one", (long long)inner, i);
        const mnas_real *xd = D(x), *wd = D(w), *gd = D(gam), *bd = D(bet);
        for (int64_t c = 0; c < C; c++) {
            double m = (double)(N * inner), mu = 0, var = 0, sw = 0, swx = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) mu += xd[(n * C + c) * inner + i] / m;
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) var += pow(xd[(n * C + c) * inner + i] - mu, 2) / m;
            double r = 1 / sqrt(var + 1e-5);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) {
                    int64_t at = (n * C + c) * inner + i;
                    sw += wd[at];
                    swx += wd[at] * (xd[at] - mu) * r;
                }
            ASSERT_CLOSE(D(g[2])[c], sw, 1e-5 * (1 + fabs(sw)));
            ASSERT_CLOSE(D(g[1])[c], swx, 1e-4 * (1 + fabs(swx)));
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) {
                    int64_t at = (n * C + c) * inner + i;
                    double xh = (xd[at] - mu) * r;
                    ASSERT_CLOSE(D(y)[at], xh * gd[c] + bd[c], 1e-5 * (1 + fabs(xh * gd[c])));
                    double dx = gd[c] * r * (wd[at] - sw / m - xh * swx / m);
                    ASSERT_CLOSE(D(g[0])[at], dx, 1e-5 * (1 + fabs(dx)));
                }
        }
        mnas_tape_reset(tp);
        for (int i = 0; i < 3; i++) mnas_tensor_free(in[i]);
        mnas_tensor_free(w);
    }
}
END_TEST

/* mnas_sum_to over whole planes ([N, C, H, W] to [1, C, 1, 1], a channel's
 * bias gradient) puts element i of each plane in double lane i mod 16, the
 * planes in order, and folds the 16 lanes pairwise: the order of the NCHW
 * batch-norm kernels' dbeta, so the recorded backward (dbeta as
 * mnas_sum_to) has the unrecorded one's bits by construction. Values 2^55
 * apart make the order visible: 2^55 and -2^55 share lane 0 in planes 0
 * and 1 and cancel before the small values join them, whereas a serial sum,
 * or a fold per plane, loses a small value next to 2^55 (its double ulp is
 * 8). Runs of 9, 49 and 323 values: a block of 16 or none, and tails. */
START_TEST(sum_to_planes_lane_order)
{
    const int64_t hw[3][2] = { { 3, 3 }, { 7, 7 }, { 19, 17 } };
    const double big = 36028797018963968.0; /* 2^55 */
    for (int k = 0; k < 3; k++) {
        const int64_t N = 2, C = 3, n = hw[k][0] * hw[k][1];
        int64_t s4[4] = { N, C, hw[k][0], hw[k][1] }, to[4] = { 1, C, 1, 1 }, s1[1] = { C };
        mnas_tensor *w = mnas_tensor_randn(ctx, 4, s4, 0, 1);
        ck_assert_ptr_nonnull(w);
        mnas_real *wd = mnas_tensor_data(w);
        for (int64_t c = 0; c < C; c++) {
            wd[(0 * C + c) * n] = (mnas_real)big;
            wd[(1 * C + c) * n] = (mnas_real)-big;
        }
        mnas_tensor *st = mnas_sum_to(tp, w, 4, to);
        ck_assert_ptr_nonnull(st);
        for (int64_t c = 0; c < C; c++) {
            double lane[16] = { 0 }, serial = 0;
            for (int64_t m = 0; m < N; m++)
                for (int64_t i = 0; i < n; i++) {
                    lane[i % 16] += (double)wd[(m * C + c) * n + i];
                    serial += (double)wd[(m * C + c) * n + i];
                }
            for (int s = 1; s < 16; s *= 2)
                for (int j = 0; j < 16; j += 2 * s) lane[j] += lane[j + s];
            ck_assert_msg(D(st)[c] == (mnas_real)lane[0], "run of %lld: channel %lld sums to %.9g, lanes give %.9g",
                          (long long)n, (long long)c, (double)D(st)[c], lane[0]);
            ck_assert_msg((mnas_real)serial != (mnas_real)lane[0], "the data do not tell the orders apart");
        }
        /* the same upstream gradient through batch-norm: dbeta recorded
         * (mnas_sum_to) and unrecorded (the kernel) */
        mnas_tensor *x = mnas_tensor_randn(ctx, 4, s4, 0, 1), *gam = mnas_tensor_randn(ctx, 1, s1, 1, 0.5);
        mnas_tensor *bet = mnas_tensor_randn(ctx, 1, s1, 0, 0.5);
        ck_assert(x && gam && bet);
        mnas_tensor_set_requires_grad(bet, 1);
        mnas_tensor *loss = mnas_sum(tp, mnas_mul(tp, mnas_batch_norm(tp, x, gam, bet, 1e-5), w));
        mnas_tensor *g, *gr;
        ck_assert_int_eq(mnas_grad(tp, loss, 1, &bet, &g, 0), MNAS_OK);
        ck_assert_int_eq(mnas_grad(tp, loss, 1, &bet, &gr, 1), MNAS_OK);
        for (int64_t c = 0; c < C; c++) {
            ck_assert_msg(D(g)[c] == D(st)[c], "unrecorded dbeta %.9g, sum_to %.9g", (double)D(g)[c], (double)D(st)[c]);
            ck_assert_msg(D(gr)[c] == D(st)[c], "recorded dbeta %.9g, sum_to %.9g", (double)D(gr)[c], (double)D(st)[c]);
        }
        mnas_tape_reset(tp);
        mnas_tensor_free(w);
        mnas_tensor_free(x);
        mnas_tensor_free(gam);
        mnas_tensor_free(bet);
    }
}
END_TEST

/* A log-probability near 0 survives: log_softmax is (x - m) - log s, so the
 * row's largest entry is exact and log s (6.1e-7 here) is not rounded away
 * against m = 45 as it would be in x - (m + log s). */
START_TEST(log_softmax_keeps_small_log_probabilities)
{
    mnas_real row[3] = { 45, 30, 30 };
    int64_t s[2] = { 1, 3 };
    int32_t label[1] = { 0 };
    double ls = log1p(2 * exp(-15.0)); /* 6.1180e-7 */
    mnas_tensor *x = mnas_tape_tensor(tp, 2, s, row);
    mnas_tensor *lsm = mnas_log_softmax(tp, x);
    ck_assert_ptr_nonnull(lsm);
    ck_assert_msg(fabs(D(lsm)[0] + ls) <= 1e-6 * ls, "log_softmax[0] = %.9g, expected %.9g", (double)D(lsm)[0], -ls);
    ASSERT_CLOSE(D(lsm)[1], -15 - ls, 2e-6);
    ASSERT_CLOSE(D(lsm)[2], -15 - ls, 2e-6);
    mnas_tensor *ce = mnas_cross_entropy(tp, x, 1, label);
    ck_assert_ptr_nonnull(ce);
    double v = mnas_tensor_item(ce);
    ck_assert_msg(fabs(v - ls) <= 1e-6 * ls, "cross_entropy = %.9g, expected %.9g", v, ls);
    /* the same with the maximum elsewhere, in a batch of two rows */
    mnas_real rows[6] = { 30, 45, 30, 1, 2, 3 };
    int64_t s2[2] = { 2, 3 };
    int32_t labels[2] = { 1, 2 };
    double ls2 = log1p(exp(-1.0) + exp(-2.0));
    v = mnas_tensor_item(mnas_cross_entropy(tp, mnas_tape_tensor(tp, 2, s2, rows), 2, labels));
    ck_assert_msg(fabs(v - (ls + ls2) / 2) <= 1e-6 * ls2, "cross_entropy = %.9g, expected %.9g", v, (ls + ls2) / 2);
}
END_TEST

/* relu(NaN) is NaN, and so is its gradient, as for every other op; the
 * other elements are untouched. */
START_TEST(relu_propagates_nan)
{
    mnas_real d[4] = { NAN, -1, 2, 0 };
    int64_t s[1] = { 4 };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 1, s, d);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(x, 1), MNAS_OK);
    mnas_tensor *y = mnas_relu(tp, x);
    ck_assert_ptr_nonnull(y);
    ck_assert(isnan(D(y)[0]));
    ck_assert(D(y)[1] == 0 && D(y)[2] == 2 && D(y)[3] == 0);
    /* d sum(3 * relu(x)) / dx = 3 * step(x): NaN, 0, 3, 0 (recorded or not) */
    for (int create_graph = 0; create_graph <= 1; create_graph++) {
        mnas_tensor *g = NULL;
        ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_scale(tp, y, 3)), 1, &x, &g, create_graph), MNAS_OK);
        ck_assert(isnan(D(g)[0]));
        ck_assert(D(g)[1] == 0 && D(g)[2] == 3 && D(g)[3] == 0);
    }
    mnas_tensor_free(x);
}
END_TEST

/* ---- tape semantics ---------------------------------------------------- */

START_TEST(recording_and_no_grad)
{
    mnas_tensor *w = randn2(2, 3), *c = randn2(2, 3);
    mnas_tensor_set_requires_grad(w, 1);
    size_t n0 = mnas_tape_num_nodes(tp);
    mnas_tensor *y = mnas_mul(tp, c, c); /* no input requires grad: not recorded */
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 0);
    ck_assert_uint_eq(mnas_tape_num_nodes(tp), n0);
    y = mnas_mul(tp, w, c);
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 1);
    ck_assert_uint_gt(mnas_tape_num_nodes(tp), n0);
    size_t n1 = mnas_tape_num_nodes(tp);
    mnas_tape_no_grad_begin(tp);
    mnas_tape_no_grad_begin(tp);
    ck_assert_int_eq(mnas_tape_is_recording(tp), 0);
    y = mnas_mul(tp, w, c);
    ck_assert_int_eq(mnas_tensor_requires_grad(y), 0);
    mnas_tape_no_grad_end(tp);
    ck_assert_int_eq(mnas_tape_is_recording(tp), 0);
    mnas_tape_no_grad_end(tp);
    ck_assert_int_eq(mnas_tape_is_recording(tp), 1);
    ck_assert_uint_eq(mnas_tape_num_nodes(tp), n1);
    /* an unmatched end is an error, not a negative depth */
    mnas_tape_no_grad_end(tp);
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_STATE);
    ck_assert_int_eq(mnas_tape_is_recording(tp), 1);
    mnas_tensor_free(w);
    mnas_tensor_free(c);
}
END_TEST

START_TEST(grad_semantics)
{
    mnas_tensor *w = randn2(2, 3), *u = randn2(2, 3);
    mnas_tensor_set_requires_grad(w, 1);
    mnas_tensor_set_requires_grad(u, 1);
    /* y = sum(w^3): dy/dw = 3 w^2; d/dw (v . 3 w^2) = 6 w v */
    mnas_tensor *y = mnas_sum(tp, mnas_pow(tp, w, 3));
    mnas_tensor *in[2] = { w, u }, *g[2];
    ck_assert_int_eq(mnas_grad(tp, y, 2, in, g, 1), MNAS_OK);
    for (int i = 0; i < 6; i++) {
        ASSERT_CLOSE(D(g[0])[i], 3 * D(w)[i] * D(w)[i], 1e-5);
        ck_assert(D(g[1])[i] == 0); /* y does not depend on u */
    }
    ck_assert_int_eq(mnas_tensor_requires_grad(g[0]), 1); /* create_graph */
    mnas_tensor *gg;
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, g[0]), 1, &w, &gg, 0), MNAS_OK);
    for (int i = 0; i < 6; i++) ASSERT_CLOSE(D(gg)[i], 6 * D(w)[i], 1e-5);
    ck_assert_int_eq(mnas_tensor_requires_grad(gg), 0);
    /* without create_graph the gradient is a constant */
    ck_assert_int_eq(mnas_grad(tp, y, 1, &w, &gg, 0), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_requires_grad(gg), 0);
    /* a tensor used twice accumulates: d/dw sum(w*w + w) = 2w + 1 */
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_add(tp, mnas_mul(tp, w, w), w)), 1, &w, &gg, 0), MNAS_OK);
    for (int i = 0; i < 6; i++) ASSERT_CLOSE(D(gg)[i], 2 * D(w)[i] + 1, 1e-5);
    /* detach cuts the graph */
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_mul(tp, w, mnas_detach(tp, w))), 1, &w, &gg, 0), MNAS_OK);
    for (int i = 0; i < 6; i++) ASSERT_CLOSE(D(gg)[i], D(w)[i], 1e-6);
    /* the gradient of y with respect to y is 1 */
    mnas_tensor *s = mnas_sum(tp, w);
    ck_assert_int_eq(mnas_grad(tp, s, 1, &s, &gg, 0), MNAS_OK);
    ck_assert(D(gg)[0] == 1);
    /* a tape tensor made a leaf */
    int64_t sh[1] = { 3 };
    mnas_real vals[3] = { 1, 2, 3 };
    mnas_tensor *leaf = mnas_tape_tensor(tp, 1, sh, vals);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(leaf, 1), MNAS_OK);
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_square(tp, leaf)), 1, &leaf, &gg, 0), MNAS_OK);
    for (int i = 0; i < 3; i++) ASSERT_CLOSE(D(gg)[i], 2 * vals[i], 1e-6);
    mnas_tensor_free(w);
    mnas_tensor_free(u);
}
END_TEST

START_TEST(reset_reuses_memory_and_marks_stale)
{
    mnas_tensor *w = randn2(10, 50);
    mnas_tensor_set_requires_grad(w, 1);
    size_t reserved = 0;
    for (int it = 0; it < 50; it++) {
        mnas_tape_reset(tp);
        mnas_tensor *y = mnas_sum(tp, mnas_tanh(tp, mnas_mul(tp, w, w)));
        mnas_tensor *g;
        ck_assert_int_eq(mnas_grad(tp, y, 1, &w, &g, 1), MNAS_OK);
        ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, g), 1, &w, &g, 0), MNAS_OK);
        if (it == 1) reserved = mnas_tape_bytes_reserved(tp);
        if (it > 1) ck_assert_uint_eq(mnas_tape_bytes_reserved(tp), reserved); /* steady state: no growth */
    }
    mnas_tensor *old = mnas_add(tp, w, w);
    ck_assert_int_eq(mnas_tensor_is_valid(old), 1);
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_tensor_is_valid(old), 0);
    ck_assert_ptr_null(mnas_tensor_data(old));
    ck_assert_ptr_null(mnas_add(tp, old, w));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_STALE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "mnas_add"));
    mnas_tensor *g;
    mnas_tape_clear_error(tp);
    ck_assert_int_eq(mnas_grad(tp, old, 1, &w, &g, 0), MNAS_E_STALE);
    ck_assert_ptr_null(g);
    mnas_tensor_free(w);
}
END_TEST

/* ---- bad input --------------------------------------------------------- */

START_TEST(bad_input_is_reported_not_fatal)
{
    mnas_tensor *a = randn2(3, 4), *b = randn2(4, 3), *c = randn2(3, 4);
    /* NULL handles */
    ck_assert_ptr_null(mnas_add(NULL, a, c));
    ck_assert_ptr_null(mnas_add(tp, NULL, c));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "mnas_add: a is NULL"));
    mnas_tape_clear_error(tp);
    /* shape mismatches name both shapes */
    ck_assert_ptr_null(mnas_add(tp, a, b));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "[3, 4] and [4, 3]"));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "[3, 4] and [4, 3]"));
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_matmul(tp, a, c, 0, 0));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_linear(tp, a, b, NULL));
    ck_assert_ptr_null(mnas_linear(tp, a, c, b));
    ck_assert_ptr_null(mnas_mse(NULL, a, b));
    mnas_tape_clear_error(tp);
    /* the first error of a chained expression is kept */
    mnas_tensor *r = mnas_sum(tp, mnas_relu(tp, mnas_add(tp, a, b)));
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "mnas_add"));
    mnas_tape_clear_error(tp);
    /* grad of a non-scalar */
    mnas_tensor_set_requires_grad(a, 1);
    mnas_tensor *g = a;
    ck_assert_int_eq(mnas_grad(tp, mnas_mul(tp, a, c), 1, &a, &g, 0), MNAS_E_SHAPE);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "scalar"));
    mnas_tape_clear_error(tp);
    ck_assert_int_eq(mnas_grad(tp, NULL, 1, &a, &g, 0), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_grad(NULL, a, 1, &a, &g, 0), MNAS_E_INVALID);
    mnas_tape_clear_error(tp);
    /* out-of-range arguments */
    ck_assert_ptr_null(mnas_sum_axis(tp, a, 2, 0));
    ck_assert_ptr_null(mnas_slice(tp, a, 1, 3, 2));
    ck_assert_ptr_null(mnas_slice(tp, a, 1, -1, 2));
    ck_assert_ptr_null(mnas_pad_axis(tp, a, 0, 1, 3));
    int64_t bad_idx[2] = { 0, 3 };
    ck_assert_ptr_null(mnas_gather_rows(tp, a, 2, bad_idx));
    ck_assert_ptr_null(mnas_scatter_add_rows(tp, a, 2, bad_idx, 3));
    int32_t bad_labels[3] = { 0, 4, 1 };
    ck_assert_ptr_null(mnas_cross_entropy(tp, a, 3, bad_labels));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "label 4"));
    ck_assert_ptr_null(mnas_cross_entropy(tp, a, 2, bad_labels));
    ck_assert_ptr_null(mnas_scale(tp, a, NAN));
    ck_assert_ptr_null(mnas_pow(tp, a, INFINITY));
    ck_assert_ptr_null(mnas_batch_norm(tp, a, NULL, NULL, 0.0));
    ck_assert_ptr_null(mnas_batch_norm(tp, a, b, NULL, 1e-5));
    int64_t s3[3] = { 2, 2, 3 };
    mnas_tensor *x3 = mnas_tensor_zeros(ctx, 3, s3);
    ck_assert_ptr_null(mnas_batch_norm(tp, x3, NULL, NULL, 1e-5));
    int64_t huge[2] = { (int64_t)1 << 40, 2 };
    ck_assert_ptr_null(mnas_reshape(tp, a, 2, huge));
    ck_assert_ptr_null(mnas_broadcast_to(tp, a, 2, huge));
    int64_t wrong[2] = { 5, 4 };
    ck_assert_ptr_null(mnas_broadcast_to(tp, a, 2, wrong));
    ck_assert_ptr_null(mnas_sum_to(tp, a, 2, wrong));
    ck_assert_ptr_null(mnas_concat(tp, 0, NULL, 0));
    mnas_tensor *pair[2] = { a, b };
    ck_assert_ptr_null(mnas_concat(tp, 2, pair, 0));
    ck_assert_ptr_null(mnas_transpose(tp, mnas_sum(tp, a)));
    /* axpy does not broadcast; mix needs in-range weight indices and equal shapes */
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_axpy(tp, 2.0, a, b));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    ck_assert_ptr_null(mnas_axpy(tp, NAN, a, c));
    mnas_tape_clear_error(tp);
    int64_t good_idx[2] = { 0, 11 }, far_idx[2] = { 0, 12 };
    mnas_tensor *ys[2] = { a, c }, *mixed[2] = { a, b };
    ck_assert_ptr_nonnull(mnas_mix(tp, c, 2, ys, good_idx));
    ck_assert_ptr_null(mnas_mix(tp, c, 2, ys, far_idx));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "index 12"));
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_mix(tp, c, 2, mixed, good_idx));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_mix(tp, c, 0, ys, good_idx));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_INVALID);
    ck_assert_ptr_null(mnas_tape_tensor(tp, 5, s3, NULL));
    /* the objects are still usable afterwards */
    mnas_tape_clear_error(tp);
    r = mnas_add(tp, a, c);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_OK);
    /* tensors of another tape or context */
    mnas_tape *other;
    ck_assert_int_eq(mnas_tape_create(ctx, &other), MNAS_OK);
    mnas_tensor *foreign = mnas_add(other, a, c);
    ck_assert_ptr_null(mnas_add(tp, foreign, a));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_MISMATCH);
    mnas_tape_free(other);
    mnas_ctx *ctx2;
    ck_assert_int_eq(mnas_ctx_create(&ctx2, NULL), MNAS_OK);
    int64_t s2[2] = { 3, 4 };
    mnas_tensor *alien = mnas_tensor_zeros(ctx2, 2, s2);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_add(tp, a, alien));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_MISMATCH);
    mnas_tensor_free(alien);
    mnas_ctx_free(ctx2);
    /* freeing NULL is a no-op */
    mnas_tape_free(NULL);
    mnas_tape_reset(NULL);
    ck_assert_int_eq(mnas_tape_create(ctx, NULL), MNAS_E_INVALID);
    mnas_tensor_free(x3);
    mnas_tensor_free(a);
    mnas_tensor_free(b);
    mnas_tensor_free(c);
}
END_TEST

/* The checker also works on the float library, with looser defaults: it
 * passes a correct gradient and catches a wrong one (detach hides half of
 * d/dx x^2). */
static mnas_tensor *tanh_sq(mnas_tape *t, mnas_tensor *const *in, void *user)
{
    (void)user;
    return mnas_sum(t, mnas_square(t, mnas_tanh(t, in[0])));
}

static mnas_tensor *half_hidden(mnas_tape *t, mnas_tensor *const *in, void *user)
{
    (void)user;
    return mnas_sum(t, mnas_mul(t, in[0], mnas_detach(t, in[0])));
}

START_TEST(gradcheck_in_float)
{
    mnas_tensor *x = randn2(2, 3);
    mnas_tensor_set_requires_grad(x, 1);
    double worst;
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    for (o.order = 1; o.order <= 2; o.order++) {
        ck_assert_msg(mnas_gradcheck(ctx, tanh_sq, NULL, 1, &x, &o, &worst) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        ck_assert(worst <= 1.0);
        ck_assert_int_eq(mnas_gradcheck(ctx, half_hidden, NULL, 1, &x, &o, &worst), MNAS_E_NUMERIC);
    }
    ck_assert_int_eq(mnas_gradcheck(ctx, NULL, NULL, 1, &x, NULL, &worst), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_gradcheck(ctx, tanh_sq, NULL, 0, &x, NULL, &worst), MNAS_E_INVALID);
    mnas_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("autodiff");
    TCase *tc = tcase_create("values");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, broadcast_binary_values);
    tcase_add_test(tc, unary_values);
    tcase_add_test(tc, matmul_and_linear_values);
    tcase_add_test(tc, matmul_shape_sweep);
    tcase_add_test(tc, matmul_long_skinny);
    tcase_add_test(tc, reduction_and_shape_values);
    tcase_add_test(tc, softmax_losses_batchnorm_values);
    tcase_add_test(tc, batch_norm_nchw_values_and_recorded_bits);
    tcase_add_test(tc, sum_to_planes_lane_order);
    tcase_add_test(tc, log_softmax_keeps_small_log_probabilities);
    tcase_add_test(tc, relu_propagates_nan);
    suite_add_tcase(s, tc);
    TCase *sem = tcase_create("semantics");
    tcase_add_checked_fixture(sem, setup, teardown);
    tcase_add_test(sem, recording_and_no_grad);
    tcase_add_test(sem, grad_semantics);
    tcase_add_test(sem, reset_reuses_memory_and_marks_stale);
    tcase_add_test(sem, bad_input_is_reported_not_fatal);
    tcase_add_test(sem, gradcheck_in_float);
    suite_add_tcase(s, sem);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
