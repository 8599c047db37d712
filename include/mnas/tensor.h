/** @file
 * @brief libmnas — tensor layer: dense row-major tensors of mnas_real (float32),
 * 0 to 4 dimensions, contiguous.
 *
 * Two lifetimes (docs/tensors.md):
 *   - persistent tensors are made by the mnas_tensor_* constructors below and
 *     live until mnas_tensor_free;
 *   - tape-owned tensors are made by ops (autodiff.h) and by
 *     mnas_tape_tensor; they live until their tape is reset or freed.
 *     mnas_tensor_copy turns one into a persistent tensor.
 */
#ifndef MNAS_TENSOR_H
#define MNAS_TENSOR_H

#include <mnas/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most dimensions a tensor may have. */
#define MNAS_MAX_DIMS 4

/** A dense row-major tensor of mnas_real (opaque), persistent or tape-owned. */
typedef struct mnas_tensor mnas_tensor;

/** Constructors of persistent tensors. ndim is 0..4 (0: a scalar); every
 * extent must be >= 1 and the element count must fit in memory. They return
 * NULL on failure with the reason in mnas_ctx_last_error(ctx). */
MNAS_API mnas_tensor *mnas_tensor_zeros(mnas_ctx *ctx, int ndim, const int64_t *shape);
/** Copies size elements from data (row-major). data must not be NULL. */
MNAS_API mnas_tensor *mnas_tensor_from_data(mnas_ctx *ctx, int ndim, const int64_t *shape,
                                            const mnas_real *data);
/** A persistent tensor that views the caller's memory instead of copying it
 * (zero-copy input). data holds size elements, row-major; the tensor reads
 * and writes them in place.
 *
 * The contract: the caller keeps data alive and unmoved until
 * mnas_tensor_free(t); the library never frees or reallocates it, and
 * mnas_tensor_free releases only the tensor itself. Writes through the
 * tensor (mnas_tensor_assign, stores through mnas_tensor_data) land in the
 * caller's memory, and the caller's writes are seen by the next op that
 * reads the tensor; writing while a recorded graph still reads the tensor
 * changes what its gradients compute, as with mnas_tensor_data.
 * mnas_tensor_reshape changes the view's shape only; mnas_tensor_copy makes
 * a tensor that owns a copy.
 *
 * data needs the alignment of mnas_real only (4 bytes for float32), not the
 * 64 bytes the library gives its own buffers: every kernel uses unaligned
 * loads and stores. A NULL or misaligned data pointer is refused with
 * MNAS_E_INVALID (the message names the alignment); shapes are checked as
 * in mnas_tensor_from_data (MNAS_E_SHAPE). Returns NULL on failure with the
 * reason in mnas_ctx_last_error(ctx). */
MNAS_API mnas_tensor *mnas_tensor_wrap(mnas_ctx *ctx, int ndim, const int64_t *shape, mnas_real *data);
/** Normal(mean, std^2) and Uniform[lo, hi) values from the context RNG. */
MNAS_API mnas_tensor *mnas_tensor_randn(mnas_ctx *ctx, int ndim, const int64_t *shape,
                                        double mean, double std);
/** Uniform[lo, hi) values from the context RNG. */
MNAS_API mnas_tensor *mnas_tensor_rand(mnas_ctx *ctx, int ndim, const int64_t *shape,
                                       double lo, double hi);
/** The same two, from an explicit generator (for per-thread streams). */
MNAS_API mnas_tensor *mnas_tensor_randn_rng(mnas_ctx *ctx, mnas_rng *rng, int ndim,
                                            const int64_t *shape, double mean, double std);
/** Uniform[lo, hi) values from an explicit generator. */
MNAS_API mnas_tensor *mnas_tensor_rand_rng(mnas_ctx *ctx, mnas_rng *rng, int ndim,
                                           const int64_t *shape, double lo, double hi);

/** A persistent copy of any live tensor (persistent or tape-owned). The copy
 * does not require a gradient. */
MNAS_API mnas_tensor *mnas_tensor_copy(const mnas_tensor *t);

/** Copy the values of src into dst (same element count; shapes may differ).
 * dst must be persistent, or a tape tensor no recorded op reads yet. */
MNAS_API mnas_status mnas_tensor_assign(mnas_tensor *dst, const mnas_tensor *src);

/** Free a persistent tensor. NULL is a no-op; a tape-owned tensor is left to
 * its tape (the call does nothing). */
MNAS_API void mnas_tensor_free(mnas_tensor *t);

/** Change the shape of a persistent tensor in place (same element count). */
MNAS_API mnas_status mnas_tensor_reshape(mnas_tensor *t, int ndim, const int64_t *shape);

/** Queries. On a NULL or stale tensor: ndim -1, dim/size 0, data NULL. */
MNAS_API int mnas_tensor_ndim(const mnas_tensor *t);
MNAS_API int64_t mnas_tensor_dim(const mnas_tensor *t, int axis); /**< axis < 0 counts from the end */
/** Number of elements (1 for a scalar). */
MNAS_API int64_t mnas_tensor_size(const mnas_tensor *t);
/** Writes ndim extents into shape (room for MNAS_MAX_DIMS). */
MNAS_API mnas_status mnas_tensor_shape(const mnas_tensor *t, int64_t shape[MNAS_MAX_DIMS]);
/** Zero-copy access to the elements (row-major). Writing into a tensor that a
 * recorded graph still reads changes what its gradients compute: don't. */
MNAS_API mnas_real *mnas_tensor_data(mnas_tensor *t);
/** Read-only access to the elements (row-major). */
MNAS_API const mnas_real *mnas_tensor_cdata(const mnas_tensor *t);
/** Value of a tensor with one element (a scalar); NaN if t is not one. */
MNAS_API double mnas_tensor_item(const mnas_tensor *t);
/** The context the tensor belongs to. */
MNAS_API mnas_ctx *mnas_tensor_ctx(const mnas_tensor *t);

/** 1 if the tensor is owned by a tape, 0 if persistent, -1 if invalid. */
MNAS_API int mnas_tensor_is_tape_owned(const mnas_tensor *t);
/** 1 if the tensor can be used (not stale, not freed), else 0. */
MNAS_API int mnas_tensor_is_valid(const mnas_tensor *t);

/** Gradients are computed for tensors that require them: persistent tensors
 * marked here (parameters), and every output of a recorded op. */
MNAS_API mnas_status mnas_tensor_set_requires_grad(mnas_tensor *t, int requires_grad);
/** 1 if gradients are computed for the tensor, 0 if not (or invalid). */
MNAS_API int mnas_tensor_requires_grad(const mnas_tensor *t);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_TENSOR_H */
