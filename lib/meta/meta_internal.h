/* Private meta layer: hooks the learner uses into the modules. */
#ifndef MNAS_META_INTERNAL_H
#define MNAS_META_INTERNAL_H

#include <mnas/meta.h>

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

/* Checkpoint access to the learner's state (lib/io/checkpoint.c). */
mnas_ctx *mnas__learner_ctx(const mnas_learner *l);
const mnas_learner_options *mnas__learner_options(const mnas_learner *l);
mnas_optim *mnas__learner_optim(const mnas_learner *l);
/* The architecture-evaluation flag; *fixed_alpha is M-NAS-Shared's one-hot
 * [edges, ops] alpha in that phase (else NULL); edges = ops = 0 for MAML. */
int mnas__learner_phase(const mnas_learner *l, const mnas_real **fixed_alpha, size_t *edges, size_t *ops);
int mnas__learner_has_shared_alpha(const mnas_learner *l);
/* Commit a loaded state; takes ownership of fixed_alpha (context
 * allocator, or NULL). Cannot fail. */
void mnas__learner_restore(mnas_learner *l, int64_t iteration, int discrete, mnas_real *fixed_alpha);

#endif /* MNAS_META_INTERNAL_H */
