/* Checkpointed segments (checkpoint.c): record a piece of a forward pass as
 * one node that keeps its inputs and output, and recompute its interior on
 * the tape's scratch tape during the backward pass. */
#ifndef MNAS_AUTODIFF_CHECKPOINT_H
#define MNAS_AUTODIFF_CHECKPOINT_H

#include "autodiff/opkit.h"

/* The segment: builds its output on tp from ins (the same count and order
 * as given to mnas__checkpoint). It must be deterministic, read nothing but
 * ins and user, and may be called several times. */
typedef mnas_tensor *(*mnas__segment_fn)(mnas_tape *tp, mnas_tensor *const *ins, const void *user);

/* f(tp, ins, user) as one recorded node: the forward pass runs unrecorded on
 * the scratch tape (mnas__tape_aux) and only the output is kept on tp; the
 * backward rule runs f again, recorded, on the scratch tape and passes the
 * input gradients on. user (user_size bytes) is copied into tp's arena.
 * Values and gradients are those of f run on tp directly (an input that no
 * path of f reaches gets no contribution, as there). The backward pass
 * cannot itself be recorded: mnas_grad with create_graph fails with
 * MNAS_E_UNSUPPORTED. When no input needs a gradient, f runs on tp. */
mnas_tensor *mnas__checkpoint(mnas_tape *tp, const char *fn, mnas__segment_fn f, const void *user, size_t user_size,
                              size_t n, mnas_tensor *const *ins);

#endif /* MNAS_AUTODIFF_CHECKPOINT_H */
