/* Genotypes: the discrete cell read off a supernet's alpha (per node the two
 * strongest incoming edges with their strongest non-zero op), pairs of them
 * (normal, reduce) for the conv supernet, equality, and the one-hot alpha a
 * genotype decodes back to. Its text form, parser and DOT: genotype_text.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nas/genotype_internal.h"

mnas_genotype *mnas__geno_alloc(mnas_ctx *ctx, const mnas_search_space *space, int n_nodes, int n_cells,
                                 const char *fn)
{
    size_t size = sizeof(mnas_genotype) + (size_t)(n_cells * n_nodes) * sizeof(geno_pair[2]);
    mnas_genotype *g = mnas__alloc(ctx, size);
    if (!g) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a genotype of %d nodes", fn, n_nodes);
        return NULL;
    }
    memset(g, 0, size);
    g->ctx = ctx;
    g->space = space;
    g->n_nodes = n_nodes;
    g->n_cells = n_cells;
    return g;
}

void mnas__geno_sort_node(geno_pair p[2])
{
    if (p[1].input < p[0].input) {
        geno_pair t = p[0];
        p[0] = p[1];
        p[1] = t;
    }
}

/* ---- derive --------------------------------------------------------------- */

/* Check alpha (rows x ops of space) for derivation. */
static int derive_alpha_ok(mnas_ctx *ctx, const char *fn, const mnas_tensor *alpha, size_t rows, size_t n_ops,
                           const mnas_search_space *space)
{
    if (!alpha) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: alpha is NULL", fn);
        return 0;
    }
    if (mnas__tensor_check(alpha, fn, "alpha") != MNAS_OK) return 0;
    if (alpha->ctx != ctx) {
        mnas__error(ctx, MNAS_E_MISMATCH, "%s: alpha and the cell come from different contexts", fn);
        return 0;
    }
    if (alpha->ndim != 2 || alpha->shape[0] != (int64_t)rows || alpha->shape[1] != (int64_t)n_ops) {
        char got[MNAS_SHAPE_BUF];
        mnas__error(ctx, MNAS_E_SHAPE, "%s: alpha must be [edges, ops] = [%zu, %zu] for this %s, got %s", fn, rows,
                    n_ops, strcmp(fn, "mnas_genotype_derive") ? "supernet" : "cell",
                    mnas__shape_str(got, sizeof got, alpha->ndim, alpha->shape));
        return 0;
    }
    size_t n_live = 0;
    for (size_t o = 0; o < n_ops; o++) n_live += !mnas_search_space_op_is_zero(space, o);
    if (n_live == 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: every op of the space is a zero op, so no edge can be chosen", fn);
        return 0;
    }
    const mnas_real *a = alpha->data;
    for (size_t i = 0; i < rows * n_ops; i++)
        if (isnan(a[i])) {
            mnas__error(ctx, MNAS_E_NUMERIC, "%s: alpha[%zu, %zu] is NaN", fn, i / n_ops, i % n_ops);
            return 0;
        }
    return 1;
}

static int cell_usable(mnas_ctx *ctx, const char *fn, const mnas_cell *cell)
{
    const mnas_search_space *space = mnas_cell_space(cell);
    int n_nodes = mnas_cell_num_nodes(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    if (!space || n_nodes < 1 || n_nodes > GENO_MAX_NODES || n_edges < 2) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the cell is not usable (%d nodes, %zu edges)", fn, n_nodes, n_edges);
        return 0;
    }
    return 1;
}

/* One cell's nodes from its rows a of alpha. */
static int derive_cell(mnas_ctx *ctx, const char *fn, const mnas_cell *cell, const mnas_real *a, geno_pair (*out)[2])
{
    const mnas_search_space *space = mnas_cell_space(cell);
    int n_nodes = mnas_cell_num_nodes(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    size_t n_ops = mnas_search_space_num_ops(space);
    for (int j = 0; j < n_nodes; j++) {
        /* Best and second-best input by edge strength; strict '>' keeps the
         * lower input index on ties, as inputs are visited in order. */
        geno_pair best[2] = { { -1, -1 }, { -1, -1 } };
        mnas_real strength[2] = { 0, 0 };
        for (int i = 0; i < j + 2; i++) {
            int e = mnas_cell_edge(cell, j, i);
            if (e < 0 || (size_t)e >= n_edges) {
                mnas__error(ctx, MNAS_E_INTERNAL, "%s: edge of node %d, input %d is %d, outside 0..%zu", fn, j, i,
                            e, n_edges - 1);
                return 0;
            }
            const mnas_real *row = a + (size_t)e * n_ops;
            int op = -1;
            mnas_real s = 0;
            for (size_t o = 0; o < n_ops; o++) {
                if (mnas_search_space_op_is_zero(space, o)) continue;
                if (op < 0 || row[o] > s) {
                    op = (int)o;
                    s = row[o];
                }
            }
            if (best[0].input < 0 || s > strength[0]) {
                best[1] = best[0];
                strength[1] = strength[0];
                best[0] = (geno_pair){ i, op };
                strength[0] = s;
            } else if (best[1].input < 0 || s > strength[1]) {
                best[1] = (geno_pair){ i, op };
                strength[1] = s;
            }
        }
        out[j][0] = best[0];
        out[j][1] = best[1];
        mnas__geno_sort_node(out[j]);
    }
    return 1;
}

mnas_genotype *mnas_genotype_derive(const mnas_cell *cell, const mnas_tensor *alpha)
{
    const char *fn = "mnas_genotype_derive";
    if (!cell) {
        if (mnas__tensor_live(alpha)) mnas__error(alpha->ctx, MNAS_E_INVALID, "%s: cell is NULL", fn);
        return NULL;
    }
    mnas_ctx *ctx = cell->ctx;
    if (!alpha) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: alpha is NULL", fn);
        return NULL;
    }
    if (!cell_usable(ctx, fn, cell)) return NULL;
    const mnas_search_space *space = mnas_cell_space(cell);
    if (!derive_alpha_ok(ctx, fn, alpha, mnas_cell_num_edges(cell), mnas_search_space_num_ops(space), space))
        return NULL;
    mnas_genotype *g = mnas__geno_alloc(ctx, space, mnas_cell_num_nodes(cell), 1, fn);
    if (g && !derive_cell(ctx, fn, cell, alpha->data, g->pair)) {
        mnas_genotype_free(g);
        return NULL;
    }
    return g;
}

mnas_genotype *mnas_genotype_derive_supernet(const mnas_supernet *net, const mnas_tensor *alpha)
{
    const char *fn = "mnas_genotype_derive_supernet";
    if (!net) {
        if (mnas__tensor_live(alpha)) mnas__error(alpha->ctx, MNAS_E_INVALID, "%s: net is NULL", fn);
        return NULL;
    }
    mnas_ctx *ctx = net->ctx;
    int n_cells = mnas_supernet_num_cells(net);
    for (int k = 0; k < n_cells; k++)
        if (!cell_usable(ctx, fn, mnas_supernet_cell_at(net, k))) return NULL;
    const mnas_cell *c0 = mnas_supernet_cell_at(net, 0);
    const mnas_search_space *space = mnas_cell_space(c0);
    if (!derive_alpha_ok(ctx, fn, alpha, mnas_supernet_alpha_rows(net), mnas_search_space_num_ops(space), space))
        return NULL;
    int n_nodes = mnas_cell_num_nodes(c0);
    mnas_genotype *g = mnas__geno_alloc(ctx, space, n_nodes, n_cells, fn);
    if (!g) return NULL;
    const mnas_real *a = alpha->data;
    for (int k = 0; k < n_cells; k++) {
        const mnas_cell *c = mnas_supernet_cell_at(net, k);
        if (!derive_cell(ctx, fn, c, a, g->pair + (size_t)k * (size_t)n_nodes)) {
            mnas_genotype_free(g);
            return NULL;
        }
        a += mnas_cell_num_edges(c) * mnas_search_space_num_ops(space);
    }
    return g;
}

/* ---- small things ---------------------------------------------------------- */

void mnas_genotype_free(mnas_genotype *g)
{
    if (g) mnas__free(g->ctx, g);
}

mnas_genotype *mnas_genotype_copy(const mnas_genotype *g)
{
    if (!g) return NULL;
    mnas_genotype *c = mnas__geno_alloc(g->ctx, g->space, g->n_nodes, g->n_cells, "mnas_genotype_copy");
    if (c) memcpy(c->pair, g->pair, (size_t)(g->n_cells * g->n_nodes) * sizeof g->pair[0]);
    return c;
}

int mnas_genotype_num_nodes(const mnas_genotype *g) { return g ? g->n_nodes : -1; }
int mnas_genotype_num_cells(const mnas_genotype *g) { return g ? g->n_cells : -1; }

mnas_genotype *mnas_genotype_make_pair(const mnas_genotype *normal, const mnas_genotype *reduce)
{
    const char *fn = "mnas_genotype_make_pair";
    if (!normal || !reduce) {
        const mnas_genotype *some = normal ? normal : reduce;
        if (some) mnas__error(some->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, normal ? "reduce" : "normal");
        return NULL;
    }
    if (normal->n_cells != 1 || reduce->n_cells != 1) {
        mnas__error(normal->ctx, MNAS_E_INVALID, "%s: both parts must be single cells", fn);
        return NULL;
    }
    if (normal->space != reduce->space || normal->n_nodes != reduce->n_nodes) {
        mnas__error(normal->ctx, MNAS_E_INVALID, "%s: the parts must share a search space and node count (%d, %d)",
                    fn, normal->n_nodes, reduce->n_nodes);
        return NULL;
    }
    mnas_genotype *g = mnas__geno_alloc(normal->ctx, normal->space, normal->n_nodes, 2, fn);
    if (!g) return NULL;
    memcpy(g->pair, normal->pair, (size_t)normal->n_nodes * sizeof g->pair[0]);
    memcpy(g->pair + normal->n_nodes, reduce->pair, (size_t)normal->n_nodes * sizeof g->pair[0]);
    return g;
}

mnas_genotype *mnas_genotype_part(const mnas_genotype *g, int k)
{
    const char *fn = "mnas_genotype_part";
    if (!g) return NULL;
    if (k < 0 || k >= g->n_cells) {
        mnas__error(g->ctx, MNAS_E_INVALID, "%s: part %d of a genotype of %d cell%s", fn, k, g->n_cells,
                    g->n_cells == 1 ? "" : "s");
        return NULL;
    }
    mnas_genotype *c = mnas__geno_alloc(g->ctx, g->space, g->n_nodes, 1, fn);
    if (c) memcpy(c->pair, g->pair + (size_t)k * (size_t)g->n_nodes, (size_t)g->n_nodes * sizeof g->pair[0]);
    return c;
}

static const geno_pair *pair_at(const mnas_genotype *g, int node, int k)
{
    if (!g || node < 0 || node >= g->n_nodes || k < 0 || k > 1) return NULL;
    return &g->pair[node][k];
}

int mnas_genotype_input(const mnas_genotype *g, int node, int k)
{
    const geno_pair *p = pair_at(g, node, k);
    return p ? p->input : -1;
}

int mnas_genotype_op(const mnas_genotype *g, int node, int k)
{
    const geno_pair *p = pair_at(g, node, k);
    return p ? p->op : -1;
}

static int same_pair(const mnas_genotype *a, const geno_pair *p, const mnas_genotype *b, const geno_pair *q)
{
    if (p->input != q->input) return 0;
    if (a->space == b->space) return p->op == q->op;
    const char *na = mnas_search_space_op_name(a->space, (size_t)p->op);
    const char *nb = mnas_search_space_op_name(b->space, (size_t)q->op);
    return na && nb && strcmp(na, nb) == 0;
}

int mnas_genotype_equal(const mnas_genotype *a, const mnas_genotype *b)
{
    if (!a || !b) return 0;
    if (a->n_nodes != b->n_nodes || a->n_cells != b->n_cells) return 0;
    for (int j = 0; j < a->n_cells * a->n_nodes; j++) {
        const geno_pair *p = a->pair[j], *q = b->pair[j];
        int straight = same_pair(a, &p[0], b, &q[0]) && same_pair(a, &p[1], b, &q[1]);
        int crossed = same_pair(a, &p[0], b, &q[1]) && same_pair(a, &p[1], b, &q[0]);
        if (!straight && !crossed) return 0;
    }
    return 1;
}

/* ---- one-hot alpha ---------------------------------------------------------- */

/* Resolve one cell's chosen (edge, op) into flat indices of its alpha rows,
 * so that a failure can leave the output as it was. */
static mnas_status onehot_resolve(const mnas_genotype *g, const geno_pair (*pair)[2], const mnas_cell *cell,
                                  const char *fn, size_t hot[][2])
{
    const mnas_search_space *space = mnas_cell_space(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    size_t n_ops = space ? mnas_search_space_num_ops(space) : 0;
    if (!space || n_ops == 0)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the cell has no usable search space", fn);
    if (mnas_cell_num_nodes(cell) != g->n_nodes)
        return mnas__error(g->ctx, MNAS_E_SHAPE, "%s: the genotype has %d nodes, the cell %d", fn, g->n_nodes,
                           mnas_cell_num_nodes(cell));
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < 2; k++) {
            const geno_pair *pr = &pair[j][k];
            const char *name = op_name(g, pr->op);
            int op = g->space == space ? pr->op : mnas_search_space_find_op(space, name);
            if (op < 0 || (size_t)op >= n_ops)
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: node %d's op '%s' is not in the cell's space", fn, j,
                                   name);
            if (mnas_search_space_op_is_zero(space, (size_t)op))
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: node %d's op '%s' is a zero op in the cell's space",
                                   fn, j, name);
            int e = mnas_cell_edge(cell, j, pr->input);
            if (e < 0 || (size_t)e >= n_edges)
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the cell has no edge for node %d, input %d", fn, j,
                                   pr->input);
            hot[j][k] = (size_t)e * n_ops + (size_t)op;
        }
    return MNAS_OK;
}

mnas_status mnas_genotype_onehot(const mnas_genotype *g, const mnas_cell *cell, mnas_real *alpha_out)
{
    const char *fn = "mnas_genotype_onehot";
    if (!g) return MNAS_E_INVALID;
    if (!cell || !alpha_out)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, !cell ? "cell" : "alpha_out");
    /* A pair gives a reduction cell its reduce part. */
    int part = g->n_cells == 2 && mnas_cell_is_reduction(cell) ? 1 : 0;
    size_t hot[GENO_MAX_NODES][2];
    mnas_status st = onehot_resolve(g, g->pair + (size_t)part * (size_t)g->n_nodes, cell, fn, hot);
    if (st != MNAS_OK) return st;
    size_t n = mnas_cell_num_edges(cell) * mnas_search_space_num_ops(mnas_cell_space(cell));
    for (size_t i = 0; i < n; i++) alpha_out[i] = 0;
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < 2; k++) alpha_out[hot[j][k]] = 1;
    return MNAS_OK;
}

mnas_status mnas_genotype_onehot_supernet(const mnas_genotype *g, const mnas_supernet *net, mnas_real *alpha_out)
{
    const char *fn = "mnas_genotype_onehot_supernet";
    if (!g) return MNAS_E_INVALID;
    if (!net || !alpha_out)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, !net ? "net" : "alpha_out");
    int n_cells = mnas_supernet_num_cells(net);
    if (g->n_cells != n_cells)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the supernet has %d cell%s, the genotype %d", fn, n_cells,
                           n_cells == 1 ? "" : "s", g->n_cells);
    size_t hot[2][GENO_MAX_NODES][2];
    size_t row_off[2] = { 0, 0 };
    for (int c = 0; c < n_cells; c++) {
        const mnas_cell *cell = mnas_supernet_cell_at(net, c);
        mnas_status st = onehot_resolve(g, g->pair + (size_t)c * (size_t)g->n_nodes, cell, fn, hot[c]);
        if (st != MNAS_OK) return st;
        if (c + 1 < n_cells)
            row_off[c + 1] = row_off[c] + mnas_cell_num_edges(cell) * mnas_search_space_num_ops(mnas_cell_space(cell));
    }
    const mnas_cell *c0 = mnas_supernet_cell_at(net, 0);
    size_t n = mnas_supernet_alpha_rows(net) * mnas_search_space_num_ops(mnas_cell_space(c0));
    for (size_t i = 0; i < n; i++) alpha_out[i] = 0;
    for (int c = 0; c < n_cells; c++)
        for (int j = 0; j < g->n_nodes; j++)
            for (int k = 0; k < 2; k++) alpha_out[row_off[c] + hot[c][j][k]] = 1;
    return MNAS_OK;
}
