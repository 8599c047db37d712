/* The op kit: the part of the autodiff layer that code defining ops outside
 * lib/autodiff needs (argument checks, tape outputs and scratch, recording
 * an op with its own backward rule, and the calls a backward rule makes),
 * without the tape's or the node's layout. Kernels are not in it: a file
 * that calls them includes kernels/kernels.h itself. */
#ifndef MNAS_OPKIT_H
#define MNAS_OPKIT_H

#include <stddef.h>

#include <mnas/autodiff.h>

#include "core/core_internal.h"
#include "tensor/tensor_internal.h"

/* A recorded op (opaque here). */
typedef struct mnas_node mnas_node;
/* The state of one backward pass (opaque). */
typedef struct mnas_backward_ctx mnas_backward_ctx;

/* ---- checks and errors ---- */

/* Record a failure on the tape (first one wins for status) and its context. */
mnas_status mnas__tape_error(mnas_tape *tp, mnas_status st, const char *fmt, ...) MNAS_PRINTF(3, 4);
/* Validate the tape argument of an op. */
int mnas__tape_ok(mnas_tape *tp);
/* Validate input x of op fn: live, on this tape or persistent, same context.
 * A NULL x while the tape holds an error fails silently (the first message
 * stays). Returns 1 when usable. */
int mnas__input_ok(mnas_tape *tp, const char *fn, const char *arg, mnas_tensor *x);

/* ---- outputs and scratch ---- */

/* A new tape tensor (uninitialised data). */
mnas_tensor *mnas__tape_new(mnas_tape *tp, const char *fn, int ndim, const int64_t *shape);
/* A new tape tensor of x's shape (no shape validation needed). */
mnas_tensor *mnas__tape_new_like(mnas_tape *tp, const char *fn, const mnas_tensor *x);
/* A new tape tensor sharing x's data with a new shape (same count). */
mnas_tensor *mnas__tape_view(mnas_tape *tp, const char *fn, mnas_tensor *x, int ndim, const int64_t *shape);
/* Scratch memory from the tape's arena (freed with the recording). */
void *mnas__tape_scratch(mnas_tape *tp, const char *fn, size_t bytes);
/* Scratch for one kernel call only: taken after *m is set to the arena's
 * current point, and given back (with everything allocated after it) by
 * mnas__tape_scratch_end(tp, *m), which must come before the op allocates
 * anything it keeps. NULL with an error on failure (nothing to give back). */
void *mnas__tape_scratch_begin(mnas_tape *tp, const char *fn, size_t bytes, mnas_arena_mark *m);
void mnas__tape_scratch_end(mnas_tape *tp, mnas_arena_mark m);
/* The tape's scratch tape for recomputation (created on first use), or
 * NULL with an error. */
mnas_tape *mnas__tape_aux(mnas_tape *tp);
/* relu(x), shared: when x is a tensor of this tape's current recording and
 * the previous call had the same x (and the same no-grad depth), its result
 * is returned again instead of a new tensor. The DARTS ops that all start
 * with ReLU of an edge's input thus keep one ReLU (data, node, backward) per
 * edge instead of one per op. Results are the same as mnas_relu's. */
mnas_tensor *mnas__relu_shared(mnas_tape *tp, mnas_tensor *x);

/* relu(mnas_batch_norm(x, gamma, beta, eps)) as one op, with the same
 * checks, messages and bits: the ReLU is applied as batch-norm stores its
 * output, and the rule takes the gradient through the ReLU's mask inside
 * batch-norm's rule, so the normalised values before the ReLU are never
 * stored (the conv net's blocks). */
mnas_tensor *mnas__batch_norm_relu(mnas_tape *tp, mnas_tensor *x, mnas_tensor *gamma, mnas_tensor *beta, double eps);

/* ---- an op with its own backward rule ---- */

/* The op's backward rule: for the output gradient g, add each input's
 * contribution through mnas__bw_accumulate (only where mnas__bw_wants), with
 * differentiable ops when mnas__bw_create_graph says the pass is recorded.
 * state is what mnas__record_op was given. g lives for the call only: an
 * unrecorded pass reuses its memory afterwards unless a contribution is g
 * itself or a view of it (backward.c), so a rule keeps no pointer to it. */
typedef mnas_status (*mnas__vjp_fn)(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc,
                                    void *state);
typedef struct mnas__custom_op {
    const char *name;
    mnas__vjp_fn vjp;
} mnas__custom_op;

/* Record op as producing out from the n inputs ins (their values are kept
 * for the backward rule), when the tape records and some input needs a
 * gradient; state (tape memory, or static) goes to the rule. Returns out,
 * or NULL on failure (error set on the tape). */
mnas_tensor *mnas__record_op(mnas_tape *tp, const char *fn, const mnas__custom_op *op, void *state,
                             mnas_tensor *out, size_t n, mnas_tensor *const *ins);
/* Input k of a recorded op, as it was recorded. */
mnas_tensor *mnas__op_input(const mnas_node *node, int k);

/* ---- inside a backward rule ---- */

/* Does input k of node need a gradient in this backward pass? */
int mnas__bw_wants(mnas_backward_ctx *bc, mnas_node *node, int k);
/* Is this backward pass recording (create_graph)? */
int mnas__bw_create_graph(const mnas_backward_ctx *bc);
/* Add contribution to the gradient of input k of node. */
mnas_status mnas__bw_accumulate(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k,
                                mnas_tensor *contribution);

#endif /* MNAS_OPKIT_H */
