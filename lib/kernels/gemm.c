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
