/* The numeric loops, with no knowledge of tapes or gradients. Shapes are
 * passed as 4 extents, left-padded with 1s (row-major, contiguous). */
#ifndef MNAS_KERNELS_H
#define MNAS_KERNELS_H

#include <stdint.h>

#include <mnas/core.h>

typedef mnas_real real;

/* Hot loops are compiled twice, for AVX2 and for the x86-64 baseline, and
 * the loader picks one (GNU ifunc). Neither uses FMA (contraction is off),
 * so both give the same bits. Not under sanitizers, nor with clang. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    defined(__linux__)
#define MNAS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MNAS_CLONES
#endif

/* C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is M x K, op(B) is
 * K x N, C is M x N; lda/ldb/ldc are row strides of the stored matrices. */
void mnas__k_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                  int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc);
/* The same by plain loops (reference for tests; small sizes). */
void mnas__k_gemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, real alpha, const real *A,
                      int64_t lda, const real *B, int64_t ldb, real beta, real *C, int64_t ldc);
/* Products whose B is a table of shifted rows (direct convolution): C [M,
 * N] = A [M, K] times the K x N matrix whose row k is B + boff[k]; and C =
 * A [M, K] times the transpose of the N x K matrix whose row j is B +
 * boff[j], plus beta C. Row strides lda and ldc; every element sums its K
 * products in the same order on every call. K <= 0 leaves C alone. */
void mnas__k_gemm_rows(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                       const int64_t *boff, real *C, int64_t ldc);
void mnas__k_gemm_nt_rows(int64_t M, int64_t N, int64_t K, const real *A, int64_t lda, const real *B,
                          const int64_t *boff, real beta, real *C, int64_t ldc);
/* Called once per context: pins BLIS to one thread where it is threaded. */
void mnas__k_gemm_init(void);

typedef enum { K_ADD, K_SUB, K_MUL, K_DIV } mnas_kbinop;
/* out[i] = a[bcast i] op b[bcast i]; os/as/bs are padded 4-D shapes. */
void mnas__k_binary(mnas_kbinop op, real *out, const int64_t os[4], const real *a, const int64_t as[4],
                    const real *b, const int64_t bs[4]);

/* out[i] = a[i] op b[i] for n elements (same shapes: the common case). */
void mnas__k_binary_flat(mnas_kbinop op, int64_t n, real *out, const real *a, const real *b);
/* y[i] += alpha * x[i] (in place) */
void mnas__k_add_scaled(int64_t n, real alpha, const real *x, real *y);
/* y = a + y elementwise (a first, as mnas_add(a, y) computes it). */
void mnas__k_add_into(int64_t n, const real *a, real *y);
/* y[i] = alpha * x[i] + y0[i] */
void mnas__k_axpy(int64_t n, real alpha, const real *x, const real *y0, real *y);
/* The modulator's backward per element: du = g w tau (1 - tau), dw = g tau
 * (dw may be NULL). */
void mnas__k_modulate_backward(int64_t n, const real *g, const real *w, const real *tau, real *du, real *dw);

typedef enum {
    K_NEG, K_SCALE, K_ADDC, K_RELU, K_STEP, K_SIGMOID, K_TANH, K_EXP, K_LOG, K_SQRT, K_POW, K_SQUARE
} mnas_kunop;
/* y = f(x; p) elementwise; K_STEP is 1 where x > 0 else 0. */
void mnas__k_unary(mnas_kunop op, int64_t n, const real *x, real *y, double p);
/* out = g * step(x) (ReLU's backward), the same product as K_MUL of g and
 * x's K_STEP mask (1 where x > 0, x where x is NaN, else 0), in one pass. */
void mnas__k_relu_grad(int64_t n, const real *g, const real *x, real *out);

/* y (shape ys) = sum of x (shape xs) over the axes where ys is 1 and xs is
 * not. acc is scratch of mnas__k_sum_to_scratch(xs, ys) doubles. When a
 * cell of y sums whole planes (the last two axes of x; a channel's bias
 * gradient), element i of each plane goes to double lane i mod 16, the
 * planes in order, and the lanes fold as mnas__k_fold16: the order of the
 * batch-norm kernels' dbeta, so the two give the same bits. */
void mnas__k_sum_to(const real *x, const int64_t xs[4], real *y, const int64_t ys[4], double *acc);
int64_t mnas__k_sum_to_scratch(const int64_t xs[4], const int64_t ys[4]);
/* t[0] + ... + t[15], folded pairwise (neighbours, then pairs of pairs). */
static inline double mnas__k_fold16(double t[16])
{
    for (int w = 1; w < 16; w *= 2)
        for (int j = 0; j < 16; j += 2 * w) t[j] += t[j + w];
    return t[0];
}
/* y (shape ys) = x (shape xs) repeated along axes where xs is 1. */
void mnas__k_broadcast(const real *x, const int64_t xs[4], real *y, const int64_t ys[4]);
/* Sum of n values, accumulated in double. */
double mnas__k_sum(int64_t n, const real *x);
/* sum_i a[i] * b[i], accumulated in double in a fixed order. */
double mnas__k_dot(int64_t n, const real *a, const real *b);

/* Row-wise (last axis of length cols) softmax / log-softmax. */
void mnas__k_softmax(int64_t rows, int64_t cols, const real *x, real *y);
void mnas__k_log_softmax(int64_t rows, int64_t cols, const real *x, real *y);

/* Swap the last two axes of a batch of rows x cols matrices. */
void mnas__k_transpose(int64_t batch, int64_t rows, int64_t cols, const real *x, real *y);

/* Copy a block along one axis: the tensor is viewed as [outer, ext, inner];
 * copies len slices from src (extent src_ext, starting at src_off) to dst
 * (extent dst_ext, starting at dst_off). */
void mnas__k_copy_axis(int64_t outer, int64_t inner, const real *src, int64_t src_ext,
                       int64_t src_off, real *dst, int64_t dst_ext, int64_t dst_off, int64_t len);

/* Batch-norm with batch statistics on x viewed as [outer, C, inner];
 * gamma/beta may be NULL (1, 0). Forward also returns the per-C mean and
 * 1/sqrt(var + eps); with relu set it stores relu of the result (the fused
 * batch-norm + ReLU op). Backward (given those) fills any of dx, dgamma,
 * dbeta that is not NULL; y, when not NULL, is that op's output, and the
 * gradient g is taken as g * step(y) (through the ReLU). */
void mnas__k_bn_forward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *gamma, const real *beta,
                        double eps, int relu, real *y, real *mean, real *rstd);
void mnas__k_bn_backward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *g, const real *y,
                         const real *gamma, const real *mean, const real *rstd, real *dx, real *dgamma, real *dbeta);

/* One Adam update of n weights: m = b1 m + (1-b1) c g, v = b2 v + (1-b2)
 * (c g)^2, w -= step * m / (sqrt(v / c2) + eps), in double, stored back. */
void mnas__k_adam(int64_t n, real *w, const real *g, real *m, real *v, double c, double b1, double b2, double step,
                  double c2, double eps);

/* Per-C mean and 1/sqrt(var + eps) of x viewed as [outer, C, inner]. */
void mnas__k_bn_stats(int64_t outer, int64_t C, int64_t inner, const real *x, double eps, real *mean, real *rstd);
/* Second derivatives: of <u, dx> + <vg, dgamma> (batch-norm's backward
 * outputs for upstream g) with respect to x, g and gamma. u, vg, gamma and
 * any output may be NULL. */
void mnas__k_bn_double_backward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *g,
                                const real *gamma, const real *mean, const real *rstd, const real *u, const real *vg,
                                real *ddx, real *ddg, real *dgam);

/* ---- convolution and pooling (conv.c) ----------------------------------
 * The geometry of a 2-D window op over x [N, C, H, W] (row-major): output
 * [N, O, OH, OW] with OH = (H + 2 pad - dil (kh - 1) - 1) / stride + 1 (OW
 * alike), zero padding. Weights of a convolution are [O, C / groups, kh,
 * kw]; a pool has O = groups = C. The callers validate every field. */
typedef struct mnas_kconv {
    int64_t N, C, H, W;
    int64_t O, groups;
    int64_t kh, kw, stride, pad, dil;
    int64_t OH, OW;
} mnas_kconv;

/* The outputs o in [0, n_out) whose input coordinate o * s + off lies in
 * [0, n_in), as [*lo, *hi): the run of outputs a kernel tap reads without
 * padding (convolution and pooling loops). */
void mnas__k_tap_span(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t *lo, int64_t *hi);

/* One image: x [C, H, W] -> cols [C kh kw, OH OW] (im2col), and the adjoint
 * that adds cols back into x (col2im, accumulating). */
void mnas__k_unfold(const mnas_kconv *g, const real *x, real *cols);
void mnas__k_fold_add(const mnas_kconv *g, const real *cols, real *x);
/* Elements of scratch the three convolution kernels below need: one
 * image's columns; the Winograd or the direct kernels' buffers where those
 * apply; for depthwise a padded plane (stride 1) or its four phases
 * (stride 2); 0 for 1x1 and the other depthwise cases. */
int64_t mnas__k_conv_scratch(const mnas_kconv *g);
/* Is this the depthwise case (groups == C == O) that has direct loops? */
int mnas__k_conv_depthwise(const mnas_kconv *g);
/* y [N, O, OH, OW] = conv(x, w) + b (b may be NULL). */
void mnas__k_conv2d(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y, real *scratch);
/* dx [N, C, H, W] = the adjoint of conv(., w) applied to gy (transposed conv). */
void mnas__k_conv2d_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx, real *scratch);
/* dw [O, C/groups, kh, kw] = sum over the batch of gy (x) windows of x. */
void mnas__k_conv2d_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch);

/* Winograd F(2x2, 3x3) (winograd.c): the 3 x 3, stride 1, padding 1,
 * groups 1 convolution with at least 8 channels in and out. The scratch
 * the three kernels need, or 0 when this case does not apply (the callers
 * above dispatch on it); then the forward, the input and the weight
 * gradients, with the meanings of mnas__k_conv2d, _dx and _dw. */
int64_t mnas__k_wino_scratch(const mnas_kconv *g);
void mnas__k_wino_forward(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y, real *scratch);
void mnas__k_wino_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx, real *scratch);
void mnas__k_wino_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch);

/* Max over each kh x kw window (padding never wins); idx (may be NULL)
 * receives the flat index into x of each output's maximum (first on ties).
 * scratch holds mnas__k_max_pool_scratch(g) elements (NULL when that is 0,
 * or for the slower loops that need none). */
int64_t mnas__k_max_pool_scratch(const mnas_kconv *g);
void mnas__k_max_pool(const mnas_kconv *g, const real *x, real *y, int64_t *idx, real *scratch);
/* Mean over the non-padding cells of each window, and its adjoint (dx is
 * overwritten); scratch holds mnas__k_pool_scratch(g) elements. */
int64_t mnas__k_pool_scratch(const mnas_kconv *g);
void mnas__k_avg_pool(const mnas_kconv *g, const real *x, real *y, real *scratch);
void mnas__k_avg_pool_adj(const mnas_kconv *g, const real *gy, real *dx, real *scratch);
/* The pools' windows on padded planes (conv.c, stride 1) or their phases
 * (stride 2), dilation 1, up to 64 taps: the scratch they need (0 when they
 * do not apply), the plain sum of each window and its adjoint (dx
 * overwritten), and the max with its argmax as mnas__k_max_pool's. */
int64_t mnas__k_window_scratch(const mnas_kconv *g);
void mnas__k_window_sum(const mnas_kconv *g, const real *x, real *y, real *scratch);
void mnas__k_window_sum_adj(const mnas_kconv *g, const real *gy, real *dx, real *scratch);
void mnas__k_window_max(const mnas_kconv *g, const real *x, real *y, int64_t *idx, real *scratch);
/* y[i] = x[idx[i]] for n outputs; and its adjoint x[idx[i]] += y[i] into a
 * zeroed x of size nx, where x and y are `planes` equal planes and plane
 * p's indices point into plane p of x (max-pooling's argmax per image and
 * channel; planes 1 when nothing is known). */
void mnas__k_gather_at(int64_t n, const int64_t *idx, const real *x, real *y);
void mnas__k_scatter_at(int64_t planes, int64_t n, const int64_t *idx, const real *y, int64_t nx, real *x);

#endif /* MNAS_KERNELS_H */
