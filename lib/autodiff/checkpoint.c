/* Checkpointed segments: a piece of a recorded forward pass that keeps only
 * its inputs and its output on the tape; the interior is computed on the
 * scratch tape and thrown away, and computed again there when a backward
 * pass reaches the segment (first order only). */
#include <math.h>
#include <string.h>

#include "autodiff/autodiff_internal.h"
#include "autodiff/checkpoint.h"

typedef struct {
    mnas__segment_fn f;
    void *user; /* a copy of the caller's closure, in the arena */
} segment_state;

/* Leaves on the scratch tape holding copies of the segment's inputs, with
 * their requires_grad flags; an input given twice gets one leaf, so the
 * segment sees the same sharing as on the main tape (mnas__relu_shared). */
static int make_leaves(mnas_tape *aux, size_t n, mnas_tensor *const *ins, mnas_tensor **leaf)
{
    for (size_t k = 0; k < n; k++) {
        leaf[k] = NULL;
        for (size_t j = 0; j < k; j++)
            if (ins[j] == ins[k]) {
                leaf[k] = leaf[j];
                break;
            }
        if (leaf[k]) continue;
        leaf[k] = mnas_tape_tensor(aux, ins[k]->ndim, ins[k]->shape, ins[k]->data);
        if (!leaf[k]) return 0;
        if (ins[k]->requires_grad && mnas_tensor_set_requires_grad(leaf[k], 1) != MNAS_OK) return 0;
    }
    return 1;
}

static mnas_status aux_error(mnas_tape *tp, mnas_tape *aux, const char *fn)
{
    mnas_status st = aux->status ? aux->status : MNAS_E_NOMEM;
    if (aux->msg[0])
        mnas__tape_error(tp, st, "%s", aux->msg);
    else
        mnas__tape_error(tp, st, "%s: the scratch tape failed", fn);
    mnas_tape_reset(aux);
    return st;
}

static int all_positive_zero(const mnas_tensor *t)
{
    for (int64_t i = 0; i < t->size; i++) {
        mnas_real v = t->data[i];
        if (v != 0 || signbit(v)) return 0;
    }
    return 1;
}

static mnas_status segment_vjp(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc, void *state)
{
    const char *fn = "checkpointed segment";
    segment_state *s = state;
    if (mnas__bw_create_graph(bc))
        return mnas__tape_error(tp, MNAS_E_UNSUPPORTED,
                                "%s: the gradient through it cannot itself be differentiated (create_graph)", fn);
    size_t n = node->nin;
    mnas_tape *aux = mnas__tape_aux(tp);
    mnas_tensor **leaf = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *leaf);
    mnas_tensor **want = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *want);
    mnas_tensor **gr = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *gr);
    int *pos = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *pos);
    unsigned char *seeded = mnas__tape_scratch(tp, fn, n + 1);
    if (!aux || !leaf || !want || !gr || !pos || !seeded) return tp->status;
    mnas_tape_reset(aux);
    if (!make_leaves(aux, n, node->in, leaf)) return aux_error(tp, aux, fn);
    mnas_tensor *y = s->f(aux, leaf, s->user);
    if (!y) return aux_error(tp, aux, fn);
    if (y->ndim != g->ndim || y->size != g->size) {
        mnas_tape_reset(aux);
        return mnas__tape_error(tp, MNAS_E_INTERNAL, "%s: the recomputed output has another shape", fn);
    }
    /* d<y, g>/d leaf: the gradient reaching y is g itself (1 * g). */
    mnas_tensor *gl = mnas_tape_tensor(aux, g->ndim, g->shape, g->data);
    mnas_tensor *dot = gl ? mnas_sum(aux, mnas_mul(aux, y, gl)) : NULL;
    if (!dot) return aux_error(tp, aux, fn);
    /* One gradient per distinct wanted input, at its first position. */
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        int first = 1;
        for (size_t j = 0; j < k; j++)
            if (node->in[j] == node->in[k]) first = 0;
        if (first && node->inode[k] && mnas__bw_wants(bc, node, (int)k) && leaf[k]->requires_grad) {
            want[m] = leaf[k];
            pos[m++] = (int)k;
        }
    }
    /* An input whose gradient already holds terms (the stem's output, read
     * by both cells; alpha) is seeded with that sum: dot gains <leaf, sum>
     * after y's graph, so the backward pass on the scratch tape starts the
     * leaf's gradient at the sum and adds the segment's terms to it one by
     * one, in the order the main tape would: the same bits as no segment. */
    for (size_t i = 0; i < m; i++) {
        mnas_tensor *prev = mnas__bw_current(bc, node, pos[i]);
        seeded[i] = prev != NULL;
        if (!prev) continue;
        if (!mnas__same_shape(prev, want[i])) {
            mnas_tape_reset(aux);
            return mnas__tape_error(tp, MNAS_E_INTERNAL, "%s: a gradient of another shape than its input", fn);
        }
        mnas_tensor *pl = mnas_tape_tensor(aux, prev->ndim, prev->shape, prev->data);
        dot = pl ? mnas_add(aux, dot, mnas_sum(aux, mnas_mul(aux, want[i], pl))) : NULL;
        if (!dot) return aux_error(tp, aux, fn);
    }
    mnas_status st = m ? mnas_grad(aux, dot, m, want, gr, 0) : MNAS_OK;
    if (st != MNAS_OK) return aux_error(tp, aux, fn);
    for (size_t i = 0; i < m; i++) {
        /* No path from y to this input (an op skipped for a zero alpha): no
         * contribution, as on an unsegmented tape. */
        if (!seeded[i] && all_positive_zero(gr[i])) continue;
        mnas_tensor *c = mnas_tape_tensor(tp, gr[i]->ndim, gr[i]->shape, gr[i]->data);
        if (!c) {
            mnas_tape_reset(aux);
            return tp->status;
        }
        if (seeded[i]) {
            mnas__bw_replace(bc, node, pos[i], c);
        } else if ((st = mnas__bw_accumulate(tp, bc, node, pos[i], c)) != MNAS_OK) {
            mnas_tape_reset(aux);
            return st;
        }
    }
    mnas_tape_reset(aux);
    return MNAS_OK;
}

static const mnas__custom_op segment_op = { "checkpointed_segment", segment_vjp };

mnas_tensor *mnas__checkpoint(mnas_tape *tp, const char *fn, mnas__segment_fn f, const void *user, size_t user_size,
                              size_t n, mnas_tensor *const *ins)
{
    if (!mnas__tape_ok(tp)) return NULL;
    for (size_t k = 0; k < n; k++)
        if (!mnas__input_ok(tp, fn, "a segment input", ins[k])) return NULL;
    /* Nothing recorded: nothing to keep, so no reason to segment. */
    if (!mnas__should_record(tp, n, ins)) return f(tp, ins, user);
    if (n > UINT16_MAX) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %zu segment inputs (at most %u)", fn, n, (unsigned)UINT16_MAX);
        return NULL;
    }
    segment_state *s = mnas__tape_scratch(tp, fn, sizeof *s);
    void *copy = mnas__tape_scratch(tp, fn, user_size ? user_size : 1);
    mnas_tensor **leaf = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *leaf);
    mnas_tape *aux = mnas__tape_aux(tp);
    if (!s || !copy || !leaf || !aux) return NULL;
    if (user_size) memcpy(copy, user, user_size);
    s->f = f;
    s->user = copy;
    /* The forward pass, unrecorded, on the scratch tape; only y is kept. */
    mnas_tape_reset(aux);
    if (!make_leaves(aux, n, ins, leaf)) {
        aux_error(tp, aux, fn);
        return NULL;
    }
    mnas_tape_no_grad_begin(aux);
    mnas_tensor *y = f(aux, leaf, copy);
    mnas_tape_no_grad_end(aux);
    if (!y) {
        aux_error(tp, aux, fn);
        return NULL;
    }
    mnas_tensor *out = mnas__tape_new(tp, fn, y->ndim, y->shape);
    if (out) memcpy(out->data, y->data, (size_t)y->size * sizeof(mnas_real));
    mnas_tape_reset(aux);
    if (!out) return NULL;
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_CUSTOM, out, n, ins, &node)) return NULL;
    if (node) {
        node->custom = &segment_op;
        node->state = s;
    }
    return out;
}
