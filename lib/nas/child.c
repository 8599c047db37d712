/* Child networks: a genotype decoded into a stand-alone network with only
 * the chosen ops; same parameter names as the supernet's. */
#include <stdio.h>
#include <string.h>

#include "nas/nas_internal.h"

typedef struct {
    int input, op, edge;
    size_t first; /* index of its first parameter in the child's array */
} chosen;

struct mnas_child {
    mnas_ctx *ctx;
    const mnas_cell *cell;
    int64_t in, width, out;
    int n_nodes;
    chosen pick[16][2];
    size_t n_params;
};

mnas_child *mnas_child_create(const mnas_supernet *net, const mnas_genotype *g)
{
    const char *fn = "mnas_child_create";
    const mnas_cell *cell = mnas_supernet_cell(net);
    if (!cell || !g) return NULL;
    mnas_ctx *ctx = cell->ctx;
    if (mnas_genotype_num_nodes(g) != cell->n_nodes) {
        mnas__error(ctx, MNAS_E_SHAPE, "%s: the genotype has %d nodes, the cell %d", fn, mnas_genotype_num_nodes(g),
                    cell->n_nodes);
        return NULL;
    }
    mnas_child *c = mnas__calloc(ctx, 1, sizeof *c);
    if (!c) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    c->ctx = ctx;
    c->cell = cell;
    c->in = net->in;
    c->out = net->out;
    c->width = cell->width;
    c->n_nodes = cell->n_nodes;
    size_t k = 2;
    for (int j = 0; j < c->n_nodes; j++) {
        /* Keep the pairs in input order: the supernet sums edges that way. */
        int order[2] = { 0, 1 };
        if (mnas_genotype_input(g, j, 0) > mnas_genotype_input(g, j, 1)) {
            order[0] = 1;
            order[1] = 0;
        }
        for (int q = 0; q < 2; q++) {
            chosen *ch = &c->pick[j][q];
            ch->input = mnas_genotype_input(g, j, order[q]);
            ch->op = mnas_genotype_op(g, j, order[q]);
            ch->edge = mnas_cell_edge(cell, j, ch->input);
            if (ch->edge < 0 || ch->op < 0 || (size_t)ch->op >= cell->n_ops || cell->space->ops[ch->op].is_zero) {
                mnas__error(ctx, MNAS_E_INVALID, "%s: node %d pair %d is not valid for this cell", fn, j, q);
                mnas__free(ctx, c);
                return NULL;
            }
            ch->first = k;
            k += (size_t)cell->decl[ch->op].n;
        }
    }
    c->n_params = k + 2;
    return c;
}

void mnas_child_free(mnas_child *c)
{
    if (c) mnas__free(c->ctx, c);
}

size_t mnas_child_num_params(const mnas_child *c) { return c ? c->n_params : 0; }

int mnas_child_add_params(const mnas_child *c, mnas_params *p, const char *prefix, int group)
{
    if (!c || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 24) {
        mnas__error(c->ctx, MNAS_E_INVALID, "mnas_child_add_params: prefix longer than 24 characters");
        return -1;
    }
    char cp[64];
    snprintf(cp, sizeof cp, "%scell.", prefix);
    size_t first = mnas_params_count(p);
    int ok = mnas__add_stem_head(p, prefix, "stem", c->in, c->width, group) >= 0;
    for (int j = 0; ok && j < c->n_nodes; j++)
        for (int q = 0; ok && q < 2; q++) {
            const chosen *ch = &c->pick[j][q];
            ok = mnas__add_op_params(p, cp, ch->edge, c->cell->space->ops[ch->op].name, &c->cell->decl[ch->op], group) >= 0;
        }
    ok = ok && mnas__add_stem_head(p, prefix, "head", c->width, c->out, group) >= 0;
    if (!ok) {
        mnas__params_truncate(p, first);
        return -1;
    }
    return (int)first;
}

mnas_tensor *mnas_child_forward(const mnas_child *c, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    const char *fn = "mnas_child_forward";
    if (!c || !mnas__tape_ok(tp)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    size_t P = c->n_params;
    if (!mnas__check_linear(tp, fn, w, c->in, c->width) || !mnas__check_linear(tp, fn, w + P - 2, c->width, c->out))
        return NULL;
    for (int j = 0; j < c->n_nodes; j++)
        for (int q = 0; q < 2; q++)
            if (!mnas__check_op_weights(tp, fn, &c->cell->decl[c->pick[j][q].op], w + c->pick[j][q].first)) return NULL;
    mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, x, w[0], w[1]));
    mnas_tensor *states[2 + 16];
    states[0] = states[1] = h;
    mnas_tensor *out = NULL;
    for (int j = 0; j < c->n_nodes; j++) {
        mnas_tensor *node = NULL;
        for (int q = 0; q < 2; q++) {
            const chosen *ch = &c->pick[j][q];
            const mnas__op_entry *op = &c->cell->space->ops[ch->op];
            mnas_tensor *y = op->forward(op->user, tp, states[ch->input], w + ch->first, 1);
            if (!y) return NULL;
            node = node ? mnas_add(tp, node, y) : y;
        }
        states[2 + j] = node;
        out = out ? mnas_add(tp, out, node) : node;
    }
    return mnas_linear(tp, mnas_scale(tp, out, 1.0 / (double)c->n_nodes), w[P - 2], w[P - 1]);
}
