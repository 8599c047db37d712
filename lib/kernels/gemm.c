/* Matrix products through BLIS (sgemm, or dgemm in the double test build). */
#include <blis.h>

#include "kernels/kernels.h"

void mnas__k_gemm_init(void)
{
    /* The library parallelises over tasks itself; a threaded BLIS must not
     * start threads of its own (an OpenMP team can also hang a forked test
     * child). The flavour loaded at run time may differ from the one built
     * against, so do it always. */
    bli_thread_set_num_threads(1);
}

void mnas__k_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                  int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
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
