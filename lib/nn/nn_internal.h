/* Private helpers shared by the nn layer's files. */
#ifndef MNAS_NN_INTERNAL_H
#define MNAS_NN_INTERNAL_H

#include <mnas/nn.h>

#include "core/core_internal.h"

/* The context a parameter set was made with. */
mnas_ctx *mnas__params_ctx(const mnas_params *p);
/* Drop the parameters from index count on (undoing a partial add). */
void mnas__params_truncate(mnas_params *p, size_t count);

/* One parameter of a module, for mnas__params_add_module. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[MNAS_MAX_DIMS];
    mnas_init init;
    double arg;
} mnas__pspec;

/* Add a module's n parameters, named prefix + spec[i].name, to p. A NULL
 * set, a prefix over 40 characters or a name clash is refused (message
 * naming fn) before anything is added; a failure part-way undoes the
 * additions. Returns the first index or -1. */
int mnas__params_add_module(mnas_params *p, mnas_ctx *ctx, const char *fn, const char *prefix, size_t n,
                            const mnas__pspec *spec, int group);

/* Optimiser state for checkpoints: kind, step count, and per parameter the
 * first moment / momentum m[i] and (Adam) second moment v[i] (NULL for
 * SGD), each the size of parameter i; n parameters. */
void mnas__optim_state(const mnas_optim *o, mnas_optim_kind *kind, int64_t *steps, size_t *n, mnas_real *const **m,
                       mnas_real *const **v);
/* The parameter set o updates. */
mnas_params *mnas__optim_params(const mnas_optim *o);
/* Overwrite the step count (the moments are written through the pointers
 * mnas__optim_state gives). */
void mnas__optim_set_steps(mnas_optim *o, int64_t steps);
/* mnas_optim_step with the update cut into fixed chunks that the pool's
 * workers share (pool NULL: in the calling thread); the same bits either way. */
mnas_status mnas__optim_step_pool(mnas_optim *o, mnas_pool *pool);

#endif /* MNAS_NN_INTERNAL_H */
