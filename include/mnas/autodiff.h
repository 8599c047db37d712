/** @file
 * @brief libmnas — autodiff layer: the tape, differentiable ops, reverse-mode
 * gradients of any order, and a finite-difference gradient checker.
 *
 * Semantics (docs/autodiff.md):
 *   - An op called on a tape computes its result into tape-owned memory. If
 *     the tape is recording (not inside a no-grad scope) and an input requires
 *     a gradient, the op is recorded and its result requires a gradient too.
 *   - mnas_grad returns d y / d input for a scalar y. With create_graph the
 *     backward computation is itself recorded, so the returned gradients can
 *     be differentiated again (MAML's second order, M-NAS's Eq. (8)-(9)).
 *   - Every backward rule is written with these same ops, so every order of
 *     derivative works.
 *
 * Errors: an op returns NULL on failure and stores the message on the tape
 * (mnas_tape_last_error) and the context. An op given a NULL input while the
 * tape holds an earlier error returns NULL without replacing that message,
 * so an expression can be written whole and checked once.
 *
 * Shapes: binary elementwise ops broadcast like NumPy (align trailing axes;
 * an extent of 1, or a missing leading axis, stretches).
 */
#ifndef MNAS_AUTODIFF_H
#define MNAS_AUTODIFF_H

#include <mnas/core.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A recording of differentiable ops (opaque); owns the tensors its ops make. */
typedef struct mnas_tape mnas_tape;

/* ---- tape ------------------------------------------------------------ */

/** Create an empty tape on ctx in *out (NULL on failure). */
MNAS_API mnas_status mnas_tape_create(mnas_ctx *ctx, mnas_tape **out);
/** Free the tape and every tensor it owns. NULL is a no-op. */
MNAS_API void mnas_tape_free(mnas_tape *tape);
/** Drop every recorded op and tape-owned tensor in O(1), keeping the memory
 * for reuse. Tensors of the previous recording become stale: using one is
 * reported as MNAS_E_STALE (detected at least until the next reset). */
MNAS_API void mnas_tape_reset(mnas_tape *tape);
/** The context the tape was made from. */
MNAS_API mnas_ctx *mnas_tape_ctx(const mnas_tape *tape);
/** The message of the tape's last failure ("" if none); one per tape, so per thread. */
MNAS_API const char *mnas_tape_last_error(const mnas_tape *tape);
/** The status of the first failure since the last reset or clear (MNAS_OK if none). */
MNAS_API mnas_status mnas_tape_status(const mnas_tape *tape);
/** Forget the tape's failure status and message. */
MNAS_API void mnas_tape_clear_error(mnas_tape *tape);
/** Number of recorded ops; bytes of arena memory held (for diagnostics). */
MNAS_API size_t mnas_tape_num_nodes(const mnas_tape *tape);
/** Bytes of arena memory the tape holds (for diagnostics). */
MNAS_API size_t mnas_tape_bytes_reserved(const mnas_tape *tape);

/** No-grad scopes nest: inside one, ops compute but record nothing. */
MNAS_API void mnas_tape_no_grad_begin(mnas_tape *tape);
/** End the innermost no-grad scope opened by mnas_tape_no_grad_begin. */
MNAS_API void mnas_tape_no_grad_end(mnas_tape *tape);
/** 1 if ops on the tape are recorded (no no-grad scope is open), else 0. */
MNAS_API int mnas_tape_is_recording(const mnas_tape *tape);

/** A tape-owned tensor: zeros if data is NULL, else a copy of data. Set
 * requires_grad on it to make it a leaf of the recording. */
MNAS_API mnas_tensor *mnas_tape_tensor(mnas_tape *tape, int ndim, const int64_t *shape,
                                       const mnas_real *data);
/** The same values, cut from the recording: no gradient flows through. The
 * result shares x's memory. */
MNAS_API mnas_tensor *mnas_detach(mnas_tape *tape, mnas_tensor *x);

/** Gradients of the scalar y (one element) with respect to inputs[0..n-1].
 * grads[i] receives a tape-owned tensor of inputs[i]'s shape; an input that
 * y does not depend on gets zeros. With create_graph != 0 the computation is
 * recorded and the gradients require gradients themselves. */
MNAS_API mnas_status mnas_grad(mnas_tape *tape, mnas_tensor *y, size_t n,
                               mnas_tensor *const *inputs, mnas_tensor **grads,
                               int create_graph);

/* ---- elementwise (broadcasting) ------------------------------------- */

/** Elementwise a + b (broadcasting as described above). */
MNAS_API mnas_tensor *mnas_add(mnas_tape *tape, mnas_tensor *a, mnas_tensor *b);
/** Elementwise a - b (broadcasting as described above). */
MNAS_API mnas_tensor *mnas_sub(mnas_tape *tape, mnas_tensor *a, mnas_tensor *b);
/** Elementwise a * b (broadcasting as described above). */
MNAS_API mnas_tensor *mnas_mul(mnas_tape *tape, mnas_tensor *a, mnas_tensor *b);
/** Elementwise a / b (broadcasting as described above). */
MNAS_API mnas_tensor *mnas_div(mnas_tape *tape, mnas_tensor *a, mnas_tensor *b);
/** Elementwise multiply by a mask that carries no gradient (dropout, path
 * dropout): mask is treated as a constant; it broadcasts like mnas_mul. */
MNAS_API mnas_tensor *mnas_mask_mul(mnas_tape *tape, mnas_tensor *x, mnas_tensor *mask);

/** alpha*x + y (same shapes): the fused SGD step w - lr*g of the inner loop. */
MNAS_API mnas_tensor *mnas_axpy(mnas_tape *tape, double alpha, mnas_tensor *x, mnas_tensor *y);
/** Elementwise -x. */
MNAS_API mnas_tensor *mnas_neg(mnas_tape *tape, mnas_tensor *x);
MNAS_API mnas_tensor *mnas_scale(mnas_tape *tape, mnas_tensor *x, double s); /**< s*x */
MNAS_API mnas_tensor *mnas_add_scalar(mnas_tape *tape, mnas_tensor *x, double c); /**< x+c */
/** Elementwise max(x, 0); NaN stays NaN. */
MNAS_API mnas_tensor *mnas_relu(mnas_tape *tape, mnas_tensor *x);
/** Elementwise logistic sigmoid 1 / (1 + exp(-x)). */
MNAS_API mnas_tensor *mnas_sigmoid(mnas_tape *tape, mnas_tensor *x);
/** Elementwise hyperbolic tangent. */
MNAS_API mnas_tensor *mnas_tanh(mnas_tape *tape, mnas_tensor *x);
/** Elementwise exp(x). */
MNAS_API mnas_tensor *mnas_exp(mnas_tape *tape, mnas_tensor *x);
/** Elementwise natural logarithm. */
MNAS_API mnas_tensor *mnas_log(mnas_tape *tape, mnas_tensor *x);
/** Elementwise square root. */
MNAS_API mnas_tensor *mnas_sqrt(mnas_tape *tape, mnas_tensor *x);
MNAS_API mnas_tensor *mnas_pow(mnas_tape *tape, mnas_tensor *x, double p); /**< x^p */
/** Elementwise x * x. */
MNAS_API mnas_tensor *mnas_square(mnas_tape *tape, mnas_tensor *x);

/** sum_k alpha.flat[idx[k]] * ys[k]: a weighted sum of n same-shaped tensors
 * with weights read from alpha (any shape) at flat indices idx — one
 * supernet node's mixed edges in a single op. */
MNAS_API mnas_tensor *mnas_mix(mnas_tape *tape, mnas_tensor *alpha, size_t n, mnas_tensor *const *ys,
                               const int64_t *idx);

/* ---- linear algebra -------------------------------------------------- */

/** op(a)·op(b) for 2-D a, b; op transposes when the flag is set (BLIS sgemm). */
MNAS_API mnas_tensor *mnas_matmul(mnas_tape *tape, mnas_tensor *a, mnas_tensor *b,
                                  int transpose_a, int transpose_b);
/** x·Wᵀ + b: x [N, in], W [out, in], b [out] or NULL. */
MNAS_API mnas_tensor *mnas_linear(mnas_tape *tape, mnas_tensor *x, mnas_tensor *w,
                                  mnas_tensor *b);
/** Swap the last two axes (ndim >= 2). */
MNAS_API mnas_tensor *mnas_transpose(mnas_tape *tape, mnas_tensor *x);

/* ---- reductions and shape -------------------------------------------- */

MNAS_API mnas_tensor *mnas_sum(mnas_tape *tape, mnas_tensor *x); /**< all -> scalar */
MNAS_API mnas_tensor *mnas_mean(mnas_tape *tape, mnas_tensor *x); /**< all -> scalar */
/** Sum over one axis (negative counts from the end); keepdim keeps it with extent 1. */
MNAS_API mnas_tensor *mnas_sum_axis(mnas_tape *tape, mnas_tensor *x, int axis, int keepdim);
/** Mean over one axis (negative counts from the end); keepdim keeps it with extent 1. */
MNAS_API mnas_tensor *mnas_mean_axis(mnas_tape *tape, mnas_tensor *x, int axis, int keepdim);
/** Sum x down to a shape it broadcasts from (the backward of broadcasting). */
MNAS_API mnas_tensor *mnas_sum_to(mnas_tape *tape, mnas_tensor *x, int ndim, const int64_t *shape);
/** x repeated along its extent-1 axes to the given shape. */
MNAS_API mnas_tensor *mnas_broadcast_to(mnas_tape *tape, mnas_tensor *x, int ndim,
                                        const int64_t *shape);
/** x with a new shape of the same element count. */
MNAS_API mnas_tensor *mnas_reshape(mnas_tape *tape, mnas_tensor *x, int ndim, const int64_t *shape);
/** Join n tensors along axis (all other extents equal). */
MNAS_API mnas_tensor *mnas_concat(mnas_tape *tape, size_t n, mnas_tensor *const *xs, int axis);
/** x[..., start:start+len, ...] along axis. */
MNAS_API mnas_tensor *mnas_slice(mnas_tape *tape, mnas_tensor *x, int axis, int64_t start,
                                 int64_t len);
/** Rows idx[0..n-1] of x (along axis 0); indices may repeat. */
MNAS_API mnas_tensor *mnas_gather_rows(mnas_tape *tape, mnas_tensor *x, size_t n,
                                       const int64_t *idx);
/** The adjoint of gather: a [rows, ...] tensor of zeros into which the rows
 * of x are added at idx (repeats accumulate). */
MNAS_API mnas_tensor *mnas_scatter_add_rows(mnas_tape *tape, mnas_tensor *x, size_t n,
                                            const int64_t *idx, int64_t rows);
/** The adjoint of slice: x placed at [start, start+len) of a zero tensor
 * whose extent along axis is full. */
MNAS_API mnas_tensor *mnas_pad_axis(mnas_tape *tape, mnas_tensor *x, int axis, int64_t start,
                                    int64_t full);

/* ---- neural-network ops ---------------------------------------------- */

/** Along the last axis. */
MNAS_API mnas_tensor *mnas_softmax(mnas_tape *tape, mnas_tensor *x);
/** log(softmax(x)) over the last axis, computed stably. */
MNAS_API mnas_tensor *mnas_log_softmax(mnas_tape *tape, mnas_tensor *x);
/** Mean over rows of -log softmax(logits)[label]: logits [N, C], labels in [0, C). */
MNAS_API mnas_tensor *mnas_cross_entropy(mnas_tape *tape, mnas_tensor *logits, size_t n,
                                         const int32_t *labels);
/** mean((pred - target)^2) over all elements (same shapes). */
MNAS_API mnas_tensor *mnas_mse(mnas_tape *tape, mnas_tensor *pred, mnas_tensor *target);
/** Batch normalisation with batch statistics (biased variance):
 * 2-D x [N, F] normalises each feature over N; 4-D x [N, C, H, W] each
 * channel over N, H, W. gamma and beta have F (or C) elements; either may
 * be NULL (scale 1, shift 0). N*H*W must be >= 1. */
MNAS_API mnas_tensor *mnas_batch_norm(mnas_tape *tape, mnas_tensor *x, mnas_tensor *gamma,
                                      mnas_tensor *beta, double eps);

/* ---- convolution and pooling ------------------------------------------
 * Images are [N, C, H, W]. A k_h x k_w window with stride s, zero padding p
 * and dilation d gives OH = (H + 2p - d(k_h - 1) - 1) / s + 1 rows of
 * outputs, OW likewise; an OH or OW below 1 is an error (MNAS_E_SHAPE).
 * Kernel, stride and dilation must be >= 1 and padding >= 0. */

/** im2col: x [N, C, H, W] -> columns [N, C*kh*kw, OH*OW]; row (c*kh + i)*kw
 * + j of image n holds x[n, c, oh*s - p + i*d, ow*s - p + j*d] at column
 * oh*OW + ow (0 where that cell is padding). */
MNAS_API mnas_tensor *mnas_unfold(mnas_tape *tape, mnas_tensor *x, int kh, int kw, int stride, int padding,
                                  int dilation);
/** col2im, the adjoint of unfold: columns [N, channels*kh*kw, OH*OW] summed
 * back into [N, channels, height, width] (overlapping windows add up;
 * padding cells are dropped). */
MNAS_API mnas_tensor *mnas_fold(mnas_tape *tape, mnas_tensor *cols, int64_t channels, int64_t height,
                                int64_t width, int kh, int kw, int stride, int padding, int dilation);
/** 2-D convolution (cross-correlation): x [N, C, H, W], w [O, C/groups, kh,
 * kw], b [O] or NULL -> [N, O, OH, OW]. groups must divide C and O; the
 * input channels of group k feed its O/groups output channels only.
 * groups == C == O is depthwise (direct loops); otherwise im2col + GEMM. */
MNAS_API mnas_tensor *mnas_conv2d(mnas_tape *tape, mnas_tensor *x, mnas_tensor *w, mnas_tensor *b, int stride,
                                  int padding, int dilation, int groups);
/** kernel x kernel windows of x [N, C, H, W] -> [N, C, OH, OW] (dilation 1;
 * padding < kernel, so every window holds an input cell). Max: padding
 * cells never win; the first maximum in row-major window order wins a tie
 * and receives the gradient. Avg: the mean over the window's non-padding
 * cells (count_include_pad = false). */
MNAS_API mnas_tensor *mnas_max_pool2d(mnas_tape *tape, mnas_tensor *x, int kernel, int stride, int padding);
/** Average pooling over kernel x kernel windows of NCHW x. */
MNAS_API mnas_tensor *mnas_avg_pool2d(mnas_tape *tape, mnas_tensor *x, int kernel, int stride, int padding);
/** [N, C, H, W] -> [N, C]: the mean over H and W. */
MNAS_API mnas_tensor *mnas_global_avg_pool(mnas_tape *tape, mnas_tensor *x);

/* ---- gradient checking ------------------------------------------------ */

/** The function under test: builds a scalar from inputs on tape, or returns
 * NULL on failure. It must be deterministic. */
typedef mnas_tensor *(*mnas_gradcheck_fn)(mnas_tape *tape, mnas_tensor *const *inputs,
                                          void *user);

/** Options of mnas_gradcheck; initialise with MNAS_GRADCHECK_OPTIONS_INIT. */
typedef struct mnas_gradcheck_options {
    /** sizeof(mnas_gradcheck_options), set by the _INIT macro. */
    size_t struct_size;
    int order;      /**< 1: gradient; 2: gradient of v·grad (Hessian-vector);
                       3: gradient of w·grad(v·grad) */
    double eps; /**< finite-difference step; 0: default for the precision */
    double atol; /**< 0: default for the precision */
    double rtol; /**< 0: default for the precision */
    uint64_t seed; /**< for the random directions v and w of orders 2 and 3 */
    /** Appended in 0.2. 1: the last, checked gradient pass is recorded too
     * (create_graph), so the recorded form of every backward rule on the
     * path is the one under test; 0: it is not (the fused kernels are). */
    int record_last;
} mnas_gradcheck_options;

/** Defaults of mnas_gradcheck_options: order 1, default tolerances, seed 1, last pass not recorded. */
#define MNAS_GRADCHECK_OPTIONS_INIT { sizeof(mnas_gradcheck_options), 1, 0.0, 0.0, 0.0, 1u, 0 }

/** Compare analytic gradients of f with respect to the persistent inputs
 * (each must require a gradient) against central finite differences,
 * computed in double: |analytic - numeric| <= atol + rtol*|numeric| for
 * every element. The inputs are perturbed in place and restored. Returns
 * MNAS_OK when all elements agree, MNAS_E_NUMERIC naming the first bad
 * element otherwise. *max_err (may be NULL) receives the largest
 * |analytic - numeric| / (atol + rtol*|numeric|) seen (<= 1 passes). */
MNAS_API mnas_status mnas_gradcheck(mnas_ctx *ctx, mnas_gradcheck_fn f, void *user, size_t n,
                                    mnas_tensor *const *inputs,
                                    const mnas_gradcheck_options *opts, double *max_err);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_AUTODIFF_H */
