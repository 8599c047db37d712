/* Private meta layer: hooks the learner uses into the modules. */
#ifndef MNAS_META_INTERNAL_H
#define MNAS_META_INTERNAL_H

#include <mnas/meta.h>

#include "core/core_internal.h" /* mnas_pool */

/* The range of the architecture weights' softmax temperature
 * (mnas_controller_set_temperature, mnas_learner_set_alpha_temperature). */
#define MNAS__TEMP_MIN 1e-3
#define MNAS__TEMP_MAX 1e3
static inline int mnas__temperature_ok(double t) { return t >= MNAS__TEMP_MIN && t <= MNAS__TEMP_MAX; }

/* The second half of mnas_modulator_forward: tau = sigmoid(u) applied to
 * the targets, for a u = W z + b ([1, total]) the caller made (the learner
 * computes the FC for a whole meta-batch in one product). */
mnas_status mnas__modulator_apply(const mnas_modulator *m, mnas_tape *tp, mnas_tensor *u, mnas_tensor *const *targets,
                                  mnas_tensor **out);

/* The learner's training path, fused and first order only: the targets
 * modulated by tau = sigmoid(u) for a row u of values computed outside the
 * tape (the batched FC), one recorded op per target, whose backward (when
 * the target's gradient is asked for) writes dL/du into the target's slice
 * of u_grad (zeroed here) and sends tau * g to the target. */
/* For MNAS_MODULATOR_FILM, u and u_grad have total + nbeta values (the FC's
 * output count, the first extent of its weight). */
mnas_status mnas__modulator_apply_row(const mnas_modulator *m, mnas_tape *tp, const mnas_real *u, mnas_real *u_grad,
                                      mnas_tensor *const *targets, mnas_tensor **out);

/* The FC's shape: u = W z + b has *total entries (the modulated weights' count,
 * + the beta values for MNAS_MODULATOR_FILM), z has *z_dim. */
void mnas__modulator_fc_shape(const mnas_modulator *m, int64_t *total, int64_t *z_dim);

/* The FC for a meta-batch of n tasks, in pieces the pool's workers share
 * (fixed by the shapes alone, so the bits do not depend on the number of
 * threads). w is the modulator's parameters (fc.w [total, z_dim], fc.b
 * [total]) in its own order, rows are row-major [n][...]:
 * U = Z W^T + b (forward), dZ = dU W (backward to the encoders), and the
 * mean gradient over the tasks, g[0] = dU^T Z / n and g[1] = the mean of dU
 * (g: the parameters' gradient tensors, overwritten). */
void mnas__modulator_batch_forward(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *w, size_t n,
                                   const mnas_real *Z, mnas_real *U);
void mnas__modulator_batch_backward(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *w, size_t n,
                                    const mnas_real *dU, mnas_real *dZ);
void mnas__modulator_batch_grad(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *g, size_t n,
                                const mnas_real *dU, const mnas_real *Z);

#endif /* MNAS_META_INTERNAL_H */
