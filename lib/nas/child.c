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
    const mnas_supernet *net;
    int n_cells;
    const mnas_cell *cell[2];
    size_t pre_first[2]; /* conv: index of a cell's preprocessing parameters */
    int n_nodes;
    chosen pick[2][16][2];
    size_t n_params;
};

mnas_child *mnas_child_create(const mnas_supernet *net, const mnas_genotype *g)
{
    const char *fn = "mnas_child_create";
    if (!net || !g) return NULL;
    mnas_ctx *ctx = net->ctx;
    int conv = net->kind == MNAS__CELL_CONV;
    if (mnas_genotype_num_cells(g) != net->n_cells) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the %s supernet needs a genotype of %s, got %s", fn,
                    conv ? "conv" : "MLP", conv ? "a (normal, reduce) pair" : "one cell",
                    mnas_genotype_num_cells(g) == 2 ? "a pair" : "one cell");
        return NULL;
    }
    const mnas_cell *cell0 = net->cell[0];
    if (mnas_genotype_num_nodes(g) != cell0->n_nodes) {
        mnas__error(ctx, MNAS_E_SHAPE, "%s: the genotype has %d nodes, the cell %d", fn, mnas_genotype_num_nodes(g),
                    cell0->n_nodes);
        return NULL;
    }
    mnas_child *c = mnas__calloc(ctx, 1, sizeof *c);
    if (!c) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    c->ctx = ctx;
    c->net = net;
    c->n_cells = net->n_cells;
    c->n_nodes = cell0->n_nodes;
    size_t k = conv ? 3 : 2;
    for (int q = 0; q < c->n_cells; q++) {
        const mnas_cell *cell = net->cell[q];
        mnas_genotype *part = c->n_cells == 2 ? mnas_genotype_part(g, q) : NULL;
        const mnas_genotype *gq = part ? part : g;
        if (c->n_cells == 2 && !part) {
            mnas__free(ctx, c);
            return NULL;
        }
        c->cell[q] = cell;
        c->pre_first[q] = k;
        k += cell->n_pre;
        for (int j = 0; j < c->n_nodes; j++) {
            /* Keep the pairs in input order: the supernet sums edges that way. */
            int order[2] = { 0, 1 };
            if (mnas_genotype_input(gq, j, 0) > mnas_genotype_input(gq, j, 1)) {
                order[0] = 1;
                order[1] = 0;
            }
            for (int r = 0; r < 2; r++) {
                chosen *ch = &c->pick[q][j][r];
                ch->input = mnas_genotype_input(gq, j, order[r]);
                ch->op = mnas_genotype_op(gq, j, order[r]);
                ch->edge = mnas_cell_edge(cell, j, ch->input);
                if (ch->edge < 0 || ch->op < 0 || (size_t)ch->op >= cell->n_ops || cell->space->ops[ch->op].is_zero) {
                    mnas__error(ctx, MNAS_E_INVALID, "%s: %snode %d pair %d is not valid for this cell", fn,
                                c->n_cells == 2 ? (q ? "reduce cell, " : "normal cell, ") : "", j, r);
                    mnas_genotype_free(part);
                    mnas__free(ctx, c);
                    return NULL;
                }
                ch->first = k;
                k += (size_t)mnas__edge_decl(cell, (size_t)ch->edge, (size_t)ch->op)->n;
            }
        }
        mnas_genotype_free(part);
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
    const mnas_supernet *net = c->net;
    int conv = net->kind == MNAS__CELL_CONV;
    size_t first = mnas_params_count(p);
    int ok = conv ? mnas__add_conv_stem(p, prefix, net->in, net->stem_c, group) >= 0
                  : mnas__add_stem_head(p, prefix, "stem", net->in, net->width, group) >= 0;
    for (int q = 0; ok && q < c->n_cells; q++) {
        const mnas_cell *cell = c->cell[q];
        char cp[64];
        snprintf(cp, sizeof cp, "%s%s", prefix, !conv ? "cell." : q ? "reduce." : "normal.");
        if (conv) {
            /* The preprocessing parameters, named as the supernet's. */
            char name[96];
            int64_t C = cell->width;
            int64_t half[4] = { C / 2, cell->c_pp, 1, 1 }, full0[4] = { C, cell->c_pp, 1, 1 },
                    full1[4] = { C, cell->c_p, 1, 1 };
            if (cell->reduction_prev) {
                snprintf(name, sizeof name, "%spre0.w1", cp);
                ok = mnas_params_add(p, name, 4, half, MNAS_INIT_FAN_IN, (double)cell->c_pp, group) >= 0;
                snprintf(name, sizeof name, "%spre0.w2", cp);
                ok = ok && mnas_params_add(p, name, 4, half, MNAS_INIT_FAN_IN, (double)cell->c_pp, group) >= 0;
            } else {
                snprintf(name, sizeof name, "%spre0.w", cp);
                ok = mnas_params_add(p, name, 4, full0, MNAS_INIT_FAN_IN, (double)cell->c_pp, group) >= 0;
            }
            snprintf(name, sizeof name, "%spre1.w", cp);
            ok = ok && mnas_params_add(p, name, 4, full1, MNAS_INIT_FAN_IN, (double)cell->c_p, group) >= 0;
        }
        for (int j = 0; ok && j < c->n_nodes; j++)
            for (int r = 0; ok && r < 2; r++) {
                const chosen *ch = &c->pick[q][j][r];
                ok = mnas__add_op_params(p, cp, ch->edge, cell->space->ops[ch->op].name,
                                         mnas__edge_decl(cell, (size_t)ch->edge, (size_t)ch->op), group) >= 0;
            }
    }
    int64_t head_in = conv ? mnas_cell_out_width(c->cell[1]) : net->width;
    ok = ok && mnas__add_stem_head(p, prefix, "head", head_in, net->out, group) >= 0;
    if (!ok) {
        mnas__params_truncate(p, first);
        return -1;
    }
    return (int)first;
}

/* One cell's nodes from its (preprocessed) input states. */
static mnas_tensor *child_cell(const mnas_child *c, int q, mnas_tape *tp, mnas_tensor *s0, mnas_tensor *s1,
                               mnas_tensor *const *w)
{
    const mnas_cell *cell = c->cell[q];
    mnas_tensor *states[2 + 16];
    states[0] = s0;
    states[1] = s1;
    mnas_tensor *out = NULL;
    for (int j = 0; j < c->n_nodes; j++) {
        mnas_tensor *node = NULL;
        for (int r = 0; r < 2; r++) {
            const chosen *ch = &c->pick[q][j][r];
            const mnas__op_entry *op = &cell->space->ops[ch->op];
            mnas_tensor *y = mnas__op_call(op, tp, "mnas_child_forward", states[ch->input], w + ch->first,
                                           mnas__edge_stride(cell, (size_t)ch->edge));
            if (!y) return NULL;
            node = node ? mnas_add(tp, node, y) : y;
        }
        states[2 + j] = node;
        if (cell->kind == MNAS__CELL_MLP) out = out ? mnas_add(tp, out, node) : node;
    }
    if (cell->kind == MNAS__CELL_CONV)
        return c->n_nodes == 1 ? states[2] : mnas_concat(tp, (size_t)c->n_nodes, states + 2, 1);
    return mnas_scale(tp, out, 1.0 / (double)c->n_nodes);
}

mnas_tensor *mnas_child_forward(const mnas_child *c, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    const char *fn = "mnas_child_forward";
    if (!c || !mnas__tape_ok(tp)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    const mnas_supernet *net = c->net;
    size_t P = c->n_params;
    int conv = net->kind == MNAS__CELL_CONV;
    if (conv ? !mnas__check_linear(tp, fn, w + P - 2, mnas_cell_out_width(c->cell[1]), net->out)
             : (!mnas__check_linear(tp, fn, w, net->in, net->width) ||
                !mnas__check_linear(tp, fn, w + P - 2, net->width, net->out)))
        return NULL;
    for (int q = 0; q < c->n_cells; q++)
        for (int j = 0; j < c->n_nodes; j++)
            for (int r = 0; r < 2; r++) {
                const chosen *ch = &c->pick[q][j][r];
                if (!mnas__check_op_weights(tp, fn, mnas__edge_decl(c->cell[q], (size_t)ch->edge, (size_t)ch->op),
                                            w + ch->first))
                    return NULL;
            }
    if (!conv) {
        mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, x, w[0], w[1]));
        mnas_tensor *y = h ? child_cell(c, 0, tp, h, h, w) : NULL;
        return y ? mnas_linear(tp, y, w[P - 2], w[P - 1]) : NULL;
    }
    mnas_tensor *h = mnas__conv_stem(net, tp, fn, x, w);
    if (!h) return NULL;
    mnas_tensor *p0, *p1;
    if (!mnas__cell_preprocess(c->cell[0], tp, fn, h, h, w + c->pre_first[0], &p0, &p1)) return NULL;
    mnas_tensor *c0 = child_cell(c, 0, tp, p0, p1, w);
    if (!c0) return NULL;
    if (!mnas__cell_preprocess(c->cell[1], tp, fn, h, c0, w + c->pre_first[1], &p0, &p1)) return NULL;
    mnas_tensor *c1 = child_cell(c, 1, tp, p0, p1, w);
    if (!c1) return NULL;
    return mnas_linear(tp, mnas_global_avg_pool(tp, c1), w[P - 2], w[P - 1]);
}
