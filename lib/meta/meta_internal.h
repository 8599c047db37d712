/* Private meta layer: hooks the learner uses into the modules. */
#ifndef MNAS_META_INTERNAL_H
#define MNAS_META_INTERNAL_H

#include <mnas/meta.h>

/* mnas_modulator_forward that also hands back the FC's output u = W z + b
 * ([1, total]) so the learner can form the weight's gradient u_grad^T z
 * for a whole meta-batch in one product. */
mnas_status mnas__modulator_forward_u(const mnas_modulator *m, mnas_tape *tp, mnas_tensor *z, mnas_tensor *const *w,
                                      mnas_tensor *const *targets, mnas_tensor **out, mnas_tensor **u_out);
/* The second half of it: tau = sigmoid(u) applied to the targets, for a u
 * ([1, total]) the caller made (the learner batches the FC over tasks). */
mnas_status mnas__modulator_apply(const mnas_modulator *m, mnas_tape *tp, mnas_tensor *u, mnas_tensor *const *targets,
                                  mnas_tensor **out);

#endif /* MNAS_META_INTERNAL_H */
