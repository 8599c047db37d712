/* Matrix products through BLIS (sgemm, or dgemm in the double test build). */
#include <blis.h>
#include <string.h>

#include "kernels/kernels.h"

void mnas__k_gemm_init(void)
{
    /* The library parallelises over tasks itself; a threaded BLIS must not
     * start threads of its own (an OpenMP team can also hang a forked test
     * child). The flavour loaded at run time may differ from the one built
     * against, so do it always. */
    bli_thread_set_num_threads(1);
}

/* Small products (the 10 x 50 x 50 layers of few-shot learning) are
 * dominated by BLIS's per-call set-up, so they get a register-blocked
 * kernel of their own: op(B) is packed into a K x NP buffer (NP = N rounded
 * up to NR, zero padded) on the stack, and MR x NR blocks of C accumulate in
 * registers. Every element of C sums its K products in order k = 0..K-1,
 * whatever the blocking or the instruction set, so results are the same on
 * every x86-64 machine (no FMA: contraction is off). */
/* 32-byte vectors of mnas_real (GNU vector extension): one AVX register, or
 * two SSE registers in the baseline clone. */
typedef real vreal __attribute__((vector_size(32)));
#define VL ((int64_t)(32 / sizeof(real)))
enum { MR = 4, SMALL_PACK = 8192 };
#define NR (2 * VL)

MNAS_CLONES
static void gemm_small(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                       int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc)
{
    vreal Bv[SMALL_PACK / (32 / sizeof(real))];
    real *Bp = (real *)Bv;
    const int64_t NP = (N + NR - 1) / NR * NR;
    for (int64_t k = 0; k < K; k++) {
        real *row = Bp + k * NP;
        if (tb)
            for (int64_t j = 0; j < N; j++) row[j] = B[j * ldb + k];
        else
            for (int64_t j = 0; j < N; j++) row[j] = B[k * ldb + j];
        for (int64_t j = N; j < NP; j++) row[j] = 0;
    }
    const int64_t sak = ta ? lda : 1, sai = ta ? 1 : lda; /* A(i,k) = A[i*sai + k*sak] */
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        int mr = M - i0 < MR ? (int)(M - i0) : MR;
        const real *Ai = A + i0 * sai;
        for (int64_t j0 = 0; j0 < NP; j0 += NR) {
            vreal acc[MR][2];
            for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = (vreal){ 0 };
            const vreal *b = (const vreal *)(Bp + j0);
            const int64_t bstep = NP / VL;
            if (mr == MR) {
                for (int64_t k = 0; k < K; k++, b += bstep) {
                    vreal b0 = b[0], b1 = b[1];
                    for (int r = 0; r < MR; r++) {
                        real a = Ai[r * sai + k * sak];
                        acc[r][0] += a * b0;
                        acc[r][1] += a * b1;
                    }
                }
            } else {
                for (int64_t k = 0; k < K; k++, b += bstep) {
                    vreal b0 = b[0], b1 = b[1];
                    for (int r = 0; r < mr; r++) {
                        real a = Ai[r * sai + k * sak];
                        acc[r][0] += a * b0;
                        acc[r][1] += a * b1;
                    }
                }
            }
            int64_t nb = N - j0 < NR ? N - j0 : NR;
            for (int r = 0; r < mr; r++) {
                real *c = C + (i0 + r) * ldc + j0;
                vreal o0 = alpha * acc[r][0], o1 = alpha * acc[r][1];
                if (nb == NR && beta == 0) {
                    memcpy(c, &o0, sizeof o0);
                    memcpy(c + VL, &o1, sizeof o1);
                } else {
                    /* Element reads straight from the registers: a store of
                     * the vectors followed by narrower loads would stall. */
                    for (int64_t j = 0; j < nb; j++) {
                        real v = j < VL ? o0[j] : o1[j - VL];
                        c[j] = beta == 0 ? v : v + beta * c[j];
                    }
                }
            }
        }
    }
}

/* Row-vector times matrix (M = 1, beta = 0): the task encoder's and the
 * modulator's products with a [1, z] vector. One pass over B; BLIS would
 * first copy (pack) all of B. */
MNAS_CLONES
static void gemv_row(int ta, int tb, int64_t N, int64_t K, real alpha, const real *A, int64_t lda, const real *B,
                     int64_t ldb, real *C)
{
    const int64_t sa = ta ? lda : 1; /* A(0, k) = A[k * sa] */
    if (tb) {
        /* C[j] = <A, B[j, :]>: lanes of 8 partial sums, then a fixed-order fold. */
        for (int64_t j = 0; j < N; j++) {
            const real *b = B + j * ldb;
            real acc[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
            int64_t k = 0;
            if (sa == 1)
                for (; k + 8 <= K; k += 8)
                    for (int q = 0; q < 8; q++) acc[q] += A[k + q] * b[k + q];
            for (; k < K; k++) acc[0] += A[k * sa] * b[k];
            real s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            C[j] = alpha * s;
        }
    } else {
        /* C = sum_k A[k] B[k, :], row by row. */
        for (int64_t j = 0; j < N; j++) C[j] = 0;
        for (int64_t k = 0; k < K; k++) {
            real a = A[k * sa];
            const real *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) C[j] += a * b[j];
        }
        if (alpha != 1)
            for (int64_t j = 0; j < N; j++) C[j] *= alpha;
    }
}

/* ---- AVX-512 small products (float build, x86-64, GCC) -------------------
 *
 * The few-shot shapes (10 x 50 x 50 and its transposes, ~430 products per
 * M-NAS task) spend more time in BLIS's packing and set-up than in
 * arithmetic. This kernel keeps a 4 x 64 block of C in 16 registers and
 * reads op(B) in place when it is stored by rows (op = no transpose); a
 * transposed B is packed once into K x NP by 8 x 8 register transposes.
 * Every element of C sums its K products in order k = 0..K-1 with fused
 * multiply-adds, so the result depends only on the shape: the same on every
 * call and every thread of an AVX-512 machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !(defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE)
#define MNAS_GEMM512 1
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512vl")))
#define T512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512vl")))

/* rows x (16 * NV) block of C. A(r, k) = A[r * sai + k * sak]; row k of
 * op(B) starts at B + k * ldb, or at B + boff[k] when boff is not NULL (the
 * shifted planes of a direct convolution); lanes past ncols are neither
 * read nor written (masked). */
T512_INLINE void blk512(int rows, int NV, int64_t K, const float *A, int64_t sai, int64_t sak, const float *B,
                        int64_t ldb, const int64_t *boff, int64_t ncols, float alpha, float beta, float *C,
                        int64_t ldc)
{
    __mmask16 mk[4];
    for (int v = 0; v < 4; v++) {
        int64_t left = ncols - 16 * v;
        mk[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
    }
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 b[4];
        const float *Bk = B + (boff ? boff[k] : k * ldb);
        for (int v = 0; v < NV; v++) b[v] = _mm512_maskz_loadu_ps(mk[v], Bk + 16 * v);
        for (int r = 0; r < rows; r++) {
            __m512 a = _mm512_set1_ps(A[r * sai + k * sak]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < NV; v++) {
            float *c = C + r * ldc + 16 * v;
            __m512 o = _mm512_mul_ps(va, acc[r][v]);
            if (beta != 0) o = _mm512_add_ps(o, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mk[v], c)));
            _mm512_mask_storeu_ps(c, mk[v], o);
        }
}

/* Bp[k * NP + j] = B[j * ldb + k] (B[boff[j] + k] when boff is not NULL)
 * for j < N, k < K, and 0 for N <= j < 8 * ceil(N / 8) (NP >= that): 8 x 8
 * tiles through registers; the ragged edges are tiles too, with masked
 * loads (nothing past row N or column K of B is read) and only the rows
 * below K stored. */
T512_INLINE void pack_transposed(int64_t N, int64_t K, const float *B, int64_t ldb, const int64_t *boff, float *Bp,
                                 int64_t NP)
{
    static const float zero8[8] = { 0 };
    for (int64_t j = 0; j < N; j += 8) {
        const float *row[8];
        int64_t inc[8];
        for (int r = 0; r < 8; r++) {
            row[r] = j + r < N ? B + (boff ? boff[j + r] : (j + r) * ldb) : zero8;
            inc[r] = j + r < N ? 1 : 0; /* a missing row reads zeros, in place */
        }
        for (int64_t k = 0; k < K; k += 8) {
            int kk = K - k >= 8 ? 8 : (int)(K - k);
            __mmask8 mk = (__mmask8)((1u << kk) - 1u);
            __m256 r0 = _mm256_maskz_loadu_ps(mk, row[0] + k * inc[0]), r1 = _mm256_maskz_loadu_ps(mk, row[1] + k * inc[1]),
                   r2 = _mm256_maskz_loadu_ps(mk, row[2] + k * inc[2]), r3 = _mm256_maskz_loadu_ps(mk, row[3] + k * inc[3]),
                   r4 = _mm256_maskz_loadu_ps(mk, row[4] + k * inc[4]), r5 = _mm256_maskz_loadu_ps(mk, row[5] + k * inc[5]),
                   r6 = _mm256_maskz_loadu_ps(mk, row[6] + k * inc[6]), r7 = _mm256_maskz_loadu_ps(mk, row[7] + k * inc[7]);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            __m256 o[8] = { _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                            _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                            _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                            _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31) };
            float *out = Bp + k * NP + j;
            for (int q = 0; q < kk; q++) _mm256_storeu_ps(out + q * NP, o[q]);
        }
    }
}

enum { PACK512 = 8192 };

static int gemm512_fits(int tb, int64_t M, int64_t N, int64_t K)
{
    /* A few rows times a B stored by rows (the modulator's [1, 24051] x
     * [24051, 32] backward) stream B once at full speed, whatever its size. */
    if (!tb && M <= 4) return 1;
    /* Otherwise measured against BLIS (the few-shot shapes): this kernel
     * wins up to about 64 x 64 x 64; BLIS's blocking wins beyond. */
    if (M * N * K > 300000 || M > 256) return 0;
    return !tb || K * ((N + 15) / 16 * 16) <= PACK512;
}

/* boff (may be NULL): row k of op(B) = B + boff[k] (no transpose), or
 * column j of op(B) = B + boff[j] (transposed: packed like any other). */
T512 static void gemm512_off(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, const int64_t *boff, float beta, float *C,
                             int64_t ldc)
{
    float Bp[PACK512] __attribute__((aligned(64)));
    if (tb) {
        int64_t NP = (N + 15) / 16 * 16;
        pack_transposed(N, K, B, ldb, boff, Bp, NP);
        B = Bp;
        ldb = NP;
        boff = NULL;
    }
    const int64_t sak = ta ? lda : 1, sai = ta ? 1 : lda; /* A(i,k) = A[i*sai + k*sak] */
    for (int64_t j0 = 0; j0 < N; j0 += 64) {
        int64_t ncols = N - j0;
        int nv = ncols >= 64 ? 4 : (int)((ncols + 15) / 16);
        for (int64_t i0 = 0; i0 < M; i0 += 4) {
            int rows = M - i0 < 4 ? (int)(M - i0) : 4;
            const float *Ai = A + i0 * sai;
            float *Ci = C + i0 * ldc + j0;
            const float *Bj = B + j0;
#define BLK(R, V) blk512(R, V, K, Ai, sai, sak, Bj, ldb, boff, ncols, alpha, beta, Ci, ldc)
#define BLK_ROWS(V)                                                                                                  \
    switch (rows) {                                                                                                  \
    case 4: BLK(4, V); break;                                                                                        \
    case 3: BLK(3, V); break;                                                                                        \
    case 2: BLK(2, V); break;                                                                                        \
    default: BLK(1, V); break;                                                                                       \
    }
            switch (nv) {
            case 4: BLK_ROWS(4); break;
            case 3: BLK_ROWS(3); break;
            case 2: BLK_ROWS(2); break;
            default: BLK_ROWS(1); break;
            }
#undef BLK_ROWS
#undef BLK
        }
    }
}

T512 static void gemm512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    gemm512_off(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

/* Everything else on an AVX-512 machine: long, skinny products (the
 * modulator's FC batched over a meta-batch, 25 x 24051 x 32 and its
 * transposes) and the convolutions' im2col products (32 x 196 x 288 and
 * friends). The BLIS a distribution ships may not know the CPU and fall
 * back to its generic C kernels (it does on the Zen 5 of the bench
 * machine: a tenth of this kernel's speed), so these are cut into pieces
 * that gemm512 takes with its operands in L1/L2: a B stored by rows in
 * chunks of SKINNY_KC rows; a transposed B in panels of 64 columns by
 * PANEL_KC rows that fit the pack buffer. Partial products of the K chunks
 * accumulate into C in chunk order, so every element still sums in the
 * same order on every call. */
enum { SKINNY_KC = 256, PANEL_KC = PACK512 / 64 };

T512 static void gemm512_pieces(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                int64_t lda, const float *B, int64_t ldb, const int64_t *boff, float beta, float *C,
                                int64_t ldc)
{
    const int64_t sak = ta ? lda : 1;
    if (tb) {
        for (int64_t j0 = 0; j0 < N; j0 += 64) {
            int64_t nc = N - j0 < 64 ? N - j0 : 64;
            for (int64_t k0 = 0; k0 < K; k0 += PANEL_KC)
                gemm512_off(ta, 1, M, nc, K - k0 < PANEL_KC ? K - k0 : PANEL_KC, alpha, A + k0 * sak, lda,
                            boff ? B + k0 : B + j0 * ldb + k0, ldb, boff ? boff + j0 : NULL, k0 ? 1.0f : beta,
                            C + j0, ldc);
        }
        return;
    }
    for (int64_t k0 = 0; k0 < K; k0 += SKINNY_KC)
        gemm512_off(ta, 0, M, N, K - k0 < SKINNY_KC ? K - k0 : SKINNY_KC, alpha, A + k0 * sak, lda,
                    boff ? B : B + k0 * ldb, ldb, boff ? boff + k0 : NULL, k0 ? 1.0f : beta, C, ldc);
}

static int have_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}
#endif /* MNAS_GEMM512 */

void mnas__k_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                  int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    /* Measured on the few-shot shapes (bench/bench_ops): BLIS's FMA kernels
     * win from about 10 x 50 x 50 up; below that its set-up costs more than
     * the arithmetic. Matrix-vector shapes and rank-few updates stay here. */
    int64_t NP = (N + NR - 1) / NR * NR;
    if (N == 1 && K > 0) {
        for (int64_t i = 0; i < M; i++) {
            real s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[k] : B[k * ldb]);
            C[i * ldc] = beta == 0 ? alpha * s : alpha * s + beta * C[i * ldc];
        }
        return;
    }
#ifdef MNAS_GEMM512
    const int have512 = have_avx512();
    if (K > 0 && have512 && gemm512_fits(tb, M, N, K)) {
        gemm512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (K > 0 && have512) {
        gemm512_pieces(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
        return;
    }
#endif
    if (M == 1 && K > 0 && beta == 0) {
        gemv_row(ta, tb, N, K, alpha, A, lda, B, ldb, C);
        return;
    }
    if (K > 0 && K * NP <= SMALL_PACK && (K <= 8 || M <= 2)) {
        gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    /* BLIS takes general strides, so a transpose is a swap of strides. */
    inc_t rsa = ta ? 1 : (inc_t)lda, csa = ta ? (inc_t)lda : 1;
    inc_t rsb = tb ? 1 : (inc_t)ldb, csb = tb ? (inc_t)ldb : 1;
    real al = alpha, be = beta;
#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
    bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)M, (dim_t)N, (dim_t)K, &al, (real *)A, rsa, csa,
              (real *)B, rsb, csb, &be, C, (inc_t)ldc, 1);
#else
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)M, (dim_t)N, (dim_t)K, &al, (real *)A, rsa, csa,
              (real *)B, rsb, csb, &be, C, (inc_t)ldc, 1);
#endif
}

/* ---- products whose B rows are shifted planes (direct convolution) ----
 * The portable versions sum in the same order k = 0..K-1 per element (no
 * FMA); the AVX-512 ones are gemm512 with a table of row offsets. */
MNAS_CLONES
static void gemm_rows_plain(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                            const int64_t *boff, real *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        real *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++) c[j] = 0;
        for (int64_t k = 0; k < K; k++) {
            real a = A[i * lda + k];
            const real *b = B + boff[k];
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

/* sum_k a[k] b[k] in 8 fixed lanes, folded in a fixed order. */
MNAS_CLONES
static void gemm_nt_rows_plain(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                               const int64_t *boff, real beta, real *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            const real *a = A + i * lda, *b = B + boff[j];
            real acc[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int q = 0; q < 8; q++) acc[q] += a[k + q] * b[k + q];
            for (; k < K; k++) acc[0] += a[k] * b[k];
            real s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            C[i * ldc + j] = beta == 0 ? s : s + beta * C[i * ldc + j];
        }
}

void mnas__k_gemm_rows(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                       const int64_t *boff, real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
#ifdef MNAS_GEMM512
    if (have_avx512()) {
        gemm512_pieces(0, 0, M, N, K, 1, A, lda, B, 0, boff, 0, C, ldc);
        return;
    }
#endif
    gemm_rows_plain(M, N, K, A, lda, B, boff, C, ldc);
}

void mnas__k_gemm_nt_rows(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                          const int64_t *boff, real beta, real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
#ifdef MNAS_GEMM512
    if (have_avx512()) {
        gemm512_pieces(0, 1, M, N, K, 1, A, lda, B, 0, boff, beta, C, ldc);
        return;
    }
#endif
    gemm_nt_rows_plain(M, N, K, A, lda, B, boff, beta, C, ldc);
}

void mnas__k_gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                      int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            double c = beta == 0 ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (real)((double)alpha * s + c);
        }
}
