/* Supernet cells: mixed edges (sum_o alpha[e,o] op_o(x)) from every earlier
 * state into every intermediate node; the MLP cell averages its nodes. */
#include <string.h>

#include "nas/nas_internal.h"

static size_t edges_for(int n_nodes) { return (size_t)(2 * n_nodes + n_nodes * (n_nodes - 1) / 2); }

void mnas_cell_free(mnas_cell *c)
{
    if (!c) return;
    mnas__free(c->ctx, c->decl);
    mnas__free(c->ctx, c->off);
    mnas__free(c->ctx, c);
}

mnas_cell *mnas_cell_create_mlp(const mnas_search_space *space, int n_nodes, int64_t width)
{
    const char *fn = "mnas_cell_create_mlp";
    if (!space) return NULL;
    mnas_ctx *ctx = space->ctx;
    if (n_nodes < 1 || n_nodes > 16) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %d nodes (1..16)", fn, n_nodes);
        return NULL;
    }
    if (width < 1 || width > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: width %lld (1..65536)", fn, (long long)width);
        return NULL;
    }
    if (space->n == 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the search space has no ops", fn);
        return NULL;
    }
    mnas_cell *c = mnas__calloc(ctx, 1, sizeof *c);
    if (!c) goto nomem;
    c->ctx = ctx;
    c->space = space;
    c->n_nodes = n_nodes;
    c->width = width;
    c->n_edges = edges_for(n_nodes);
    c->n_ops = space->n;
    c->decl = mnas__calloc(ctx, c->n_ops, sizeof *c->decl);
    c->off = mnas__calloc(ctx, c->n_edges * c->n_ops, sizeof *c->off);
    if (!c->decl || !c->off) goto nomem;
    for (size_t o = 0; o < c->n_ops; o++)
        if (mnas__op_declare(space, o, width, &c->decl[o]) != MNAS_OK) {
            mnas_cell_free(c);
            return NULL;
        }
    size_t k = 0;
    for (size_t e = 0; e < c->n_edges; e++)
        for (size_t o = 0; o < c->n_ops; o++) {
            c->off[e * c->n_ops + o] = k;
            k += (size_t)c->decl[o].n;
        }
    c->n_params = k;
    return c;
nomem:
    mnas_cell_free(c);
    mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    return NULL;
}

int mnas_cell_num_nodes(const mnas_cell *c) { return c ? c->n_nodes : 0; }
size_t mnas_cell_num_edges(const mnas_cell *c) { return c ? c->n_edges : 0; }
const mnas_search_space *mnas_cell_space(const mnas_cell *c) { return c ? c->space : NULL; }
size_t mnas_cell_num_params(const mnas_cell *c) { return c ? c->n_params : 0; }

int mnas_cell_edge(const mnas_cell *c, int node, int input)
{
    if (!c || node < 0 || node >= c->n_nodes || input < 0 || input > node + 1) return -1;
    return 2 * node + node * (node - 1) / 2 + input;
}

int mnas_cell_add_params(const mnas_cell *c, mnas_params *p, const char *prefix, int group)
{
    if (!c || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 32) {
        mnas__error(c->ctx, MNAS_E_INVALID, "mnas_cell_add_params: prefix longer than 32 characters");
        return -1;
    }
    size_t first = mnas_params_count(p);
    for (size_t e = 0; e < c->n_edges; e++)
        for (size_t o = 0; o < c->n_ops; o++)
            if (mnas__add_op_params(p, prefix, (int)e, c->space->ops[o].name, &c->decl[o], group) < 0) {
                mnas__params_truncate(p, first);
                return -1;
            }
    return (int)first;
}

mnas_tensor *mnas_cell_forward(const mnas_cell *c, mnas_tape *tp, mnas_tensor *s0, mnas_tensor *s1,
                               mnas_tensor *const *w, mnas_tensor *alpha)
{
    const char *fn = "mnas_cell_forward";
    if (!c || !mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "s0", s0) || !mnas__input_ok(tp, fn, "s1", s1) ||
        !mnas__input_ok(tp, fn, "alpha", alpha))
        return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    if (alpha->ndim != 2 || alpha->shape[0] != (int64_t)c->n_edges || alpha->shape[1] != (int64_t)c->n_ops) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: alpha must be [%zu, %zu] (edges, ops)", fn, c->n_edges, c->n_ops);
        return NULL;
    }
    if (!mnas__same_shape(s0, s1) || s0->ndim < 2 || s0->shape[1] != c->width) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: s0 and s1 must both be [N, %lld]", fn, (long long)c->width);
        return NULL;
    }
    for (size_t e = 0; e < c->n_edges; e++)
        for (size_t o = 0; o < c->n_ops; o++)
            if (!mnas__check_op_weights(tp, fn, &c->decl[o], w + c->off[e * c->n_ops + o])) return NULL;
    /* A decoded (one-hot) alpha that needs no gradient lets us skip the ops
     * it gives weight 0. */
    int prune = !alpha->requires_grad;
    mnas_tensor *states[2 + 16];
    states[0] = s0;
    states[1] = s1;
    mnas_tensor *out = NULL;
    mnas_tensor *ys[16 * 18 * 8];
    int64_t idx[16 * 18 * 8];
    for (int j = 0; j < c->n_nodes; j++) {
        size_t k = 0;
        for (int i = 0; i < j + 2; i++) {
            size_t e = (size_t)mnas_cell_edge(c, j, i);
            for (size_t o = 0; o < c->n_ops; o++) {
                const mnas__op_entry *op = &c->space->ops[o];
                if (op->is_zero) continue;
                if (prune && alpha->data[e * c->n_ops + o] == 0) continue;
                mnas_tensor *y = op->forward(op->user, tp, states[i], w + c->off[e * c->n_ops + o], 1);
                if (!y) {
                    if (!tp->status) mnas__tape_error(tp, MNAS_E_INVALID, "%s: op \"%s\" failed", fn, op->name);
                    return NULL;
                }
                ys[k] = y;
                idx[k++] = (int64_t)(e * c->n_ops + o);
            }
        }
        /* The node: sum over its edges and ops of alpha[e, o] op_o(state). */
        mnas_tensor *node = k ? mnas_mix(tp, alpha, k, ys, idx) : mnas_tape_tensor(tp, s0->ndim, s0->shape, NULL);
        if (!node) return NULL;
        states[2 + j] = node;
        out = out ? mnas_add(tp, out, node) : node;
    }
    return mnas_scale(tp, out, 1.0 / (double)c->n_nodes);
}
