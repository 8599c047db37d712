/* Supernet cells: mixed edges (sum_o alpha[e,o] op_o(x)) from every earlier
 * state into every intermediate node; the MLP cell averages its nodes, the
 * DARTS conv cell preprocesses its inputs and concatenates its nodes. */
#include <stdio.h>
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

int mnas__edge_input(const mnas_cell *c, size_t e)
{
    for (int j = 0; j < c->n_nodes; j++) {
        size_t first = (size_t)mnas_cell_edge(c, j, 0);
        if (e < first + (size_t)j + 2) return (int)(e - first);
    }
    return -1;
}

int mnas__edge_stride(const mnas_cell *c, size_t e) { return c->reduction && mnas__edge_input(c, e) < 2 ? 2 : 1; }

const mnas_param_decl *mnas__edge_decl(const mnas_cell *c, size_t e, size_t o)
{
    return &c->decl[(size_t)(mnas__edge_stride(c, e) - 1) * c->n_ops + o];
}

/* The layout shared by both kinds: declarations per stride and the offset
 * of every (edge, op)'s parameters after n_pre preprocessing ones. */
static mnas_cell *cell_build(const mnas_search_space *space, const char *fn, int kind, int n_nodes, int64_t width,
                             int reduction, size_t n_pre)
{
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
    c->kind = kind;
    c->n_nodes = n_nodes;
    c->width = width;
    c->reduction = reduction;
    c->n_edges = edges_for(n_nodes);
    c->n_ops = space->n;
    c->decl = mnas__calloc(ctx, 2 * c->n_ops, sizeof *c->decl);
    c->off = mnas__calloc(ctx, c->n_edges * c->n_ops, sizeof *c->off);
    if (!c->decl || !c->off) goto nomem;
    for (int stride = 1; stride <= (reduction ? 2 : 1); stride++)
        for (size_t o = 0; o < c->n_ops; o++)
            if (mnas__op_declare(space, o, width, stride, &c->decl[(size_t)(stride - 1) * c->n_ops + o]) != MNAS_OK) {
                mnas_cell_free(c);
                return NULL;
            }
    size_t k = n_pre;
    for (size_t e = 0; e < c->n_edges; e++)
        for (size_t o = 0; o < c->n_ops; o++) {
            c->off[e * c->n_ops + o] = k;
            k += (size_t)mnas__edge_decl(c, e, o)->n;
        }
    c->n_pre = n_pre;
    c->n_params = k;
    return c;
nomem:
    mnas_cell_free(c);
    mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    return NULL;
}

mnas_cell *mnas_cell_create_mlp(const mnas_search_space *space, int n_nodes, int64_t width)
{
    if (!space) return NULL;
    return cell_build(space, "mnas_cell_create_mlp", MNAS__CELL_MLP, n_nodes, width, 0, 0);
}

mnas_cell *mnas_cell_create_conv(const mnas_search_space *space, int n_nodes, int64_t c_pp, int64_t c_p,
                                 int64_t channels, int reduction, int reduction_prev)
{
    const char *fn = "mnas_cell_create_conv";
    if (!space) return NULL;
    mnas_ctx *ctx = space->ctx;
    if (c_pp < 1 || c_pp > 65536 || c_p < 1 || c_p > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: input channels %lld and %lld (1..65536)", fn, (long long)c_pp,
                    (long long)c_p);
        return NULL;
    }
    if (reduction_prev && channels % 2) {
        mnas__error(ctx, MNAS_E_INVALID,
                    "%s: after a reduction cell, s0 is reduced by the factorized reduce, which needs an even C (got %lld)",
                    fn, (long long)channels);
        return NULL;
    }
    mnas_cell *c = cell_build(space, fn, MNAS__CELL_CONV, n_nodes, channels, reduction ? 1 : 0,
                              reduction_prev ? 3 : 2);
    if (!c) return NULL;
    c->reduction_prev = reduction_prev ? 1 : 0;
    c->c_pp = c_pp;
    c->c_p = c_p;
    return c;
}

int mnas_cell_num_nodes(const mnas_cell *c) { return c ? c->n_nodes : 0; }
size_t mnas_cell_num_edges(const mnas_cell *c) { return c ? c->n_edges : 0; }
const mnas_search_space *mnas_cell_space(const mnas_cell *c) { return c ? c->space : NULL; }
size_t mnas_cell_num_params(const mnas_cell *c) { return c ? c->n_params : 0; }
int mnas_cell_is_conv(const mnas_cell *c) { return c ? c->kind == MNAS__CELL_CONV : 0; }
int mnas_cell_is_reduction(const mnas_cell *c) { return c ? c->reduction : 0; }

int64_t mnas_cell_out_width(const mnas_cell *c)
{
    if (!c) return 0;
    return c->kind == MNAS__CELL_CONV ? (int64_t)c->n_nodes * c->width : c->width;
}

int mnas_cell_edge(const mnas_cell *c, int node, int input)
{
    if (!c || node < 0 || node >= c->n_nodes || input < 0 || input > node + 1) return -1;
    return 2 * node + node * (node - 1) / 2 + input;
}

static int add_conv1x1(mnas_params *p, const char *prefix, const char *what, int64_t out, int64_t in, int group)
{
    char name[96];
    int64_t s[4] = { out, in, 1, 1 };
    snprintf(name, sizeof name, "%s%s", prefix, what);
    return mnas_params_add(p, name, 4, s, MNAS_INIT_FAN_IN, (double)in, group);
}

int mnas__cell_add_params(const mnas_cell *c, mnas_params *p, const char *prefix, int group)
{
    size_t first = mnas_params_count(p);
    int ok = 1;
    if (c->kind == MNAS__CELL_CONV) {
        if (c->reduction_prev)
            ok = add_conv1x1(p, prefix, "pre0.w1", c->width / 2, c->c_pp, group) >= 0 &&
                 add_conv1x1(p, prefix, "pre0.w2", c->width / 2, c->c_pp, group) >= 0;
        else
            ok = add_conv1x1(p, prefix, "pre0.w", c->width, c->c_pp, group) >= 0;
        ok = ok && add_conv1x1(p, prefix, "pre1.w", c->width, c->c_p, group) >= 0;
    }
    for (size_t e = 0; ok && e < c->n_edges; e++)
        for (size_t o = 0; ok && o < c->n_ops; o++)
            ok = mnas__add_op_params(p, prefix, (int)e, c->space->ops[o].name, mnas__edge_decl(c, e, o), group) >= 0;
    if (!ok) {
        mnas__params_truncate(p, first);
        return -1;
    }
    return (int)first;
}

int mnas_cell_add_params(const mnas_cell *c, mnas_params *p, const char *prefix, int group)
{
    if (!c || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 32) {
        mnas__error(c->ctx, MNAS_E_INVALID, "mnas_cell_add_params: prefix longer than 32 characters");
        return -1;
    }
    return mnas__cell_add_params(c, p, prefix, group);
}

static int conv_weight_ok(mnas_tape *tp, const char *fn, mnas_tensor *w, int64_t want, const char *what)
{
    if (!mnas__input_ok(tp, fn, "a preprocessing weight", w)) return 0;
    if (w->size != want) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight %s has %lld elements, the cell needs %lld", fn, what,
                         (long long)w->size, (long long)want);
        return 0;
    }
    return 1;
}

int mnas__cell_preprocess(const mnas_cell *c, mnas_tape *tp, const char *fn, mnas_tensor *s0, mnas_tensor *s1,
                          mnas_tensor *const *w, mnas_tensor **p0, mnas_tensor **p1)
{
    if (s0->ndim != 4 || s1->ndim != 4 || s0->shape[1] != c->c_pp || s1->shape[1] != c->c_p ||
        s0->shape[0] != s1->shape[0]) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: s0 and s1 must be [N, %lld, H0, W0] and [N, %lld, H, W]", fn,
                         (long long)c->c_pp, (long long)c->c_p);
        return 0;
    }
    int64_t h0 = s0->shape[2], w0 = s0->shape[3];
    if (c->reduction_prev) {
        h0 = (h0 + 1) / 2;
        w0 = (w0 + 1) / 2;
    }
    if (h0 != s1->shape[2] || w0 != s1->shape[3]) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: s0 is %lldx%lld, s1 %lldx%lld: they must match%s", fn,
                         (long long)s0->shape[2], (long long)s0->shape[3], (long long)s1->shape[2],
                         (long long)s1->shape[3], c->reduction_prev ? " after halving s0 (ceil)" : "");
        return 0;
    }
    int64_t C = c->width;
    if (c->reduction_prev) {
        if (!conv_weight_ok(tp, fn, w[0], C / 2 * c->c_pp, "pre0.w1") ||
            !conv_weight_ok(tp, fn, w[1], C / 2 * c->c_pp, "pre0.w2") ||
            !conv_weight_ok(tp, fn, w[2], C * c->c_p, "pre1.w"))
            return 0;
    } else if (!conv_weight_ok(tp, fn, w[0], C * c->c_pp, "pre0.w") ||
               !conv_weight_ok(tp, fn, w[1], C * c->c_p, "pre1.w")) {
        return 0;
    }
    if (c->reduction_prev) {
        *p0 = mnas__factorized_reduce(tp, s0, w[0], w[1]);
        *p1 = mnas__relu_conv_bn(tp, s1, w[2]);
    } else {
        *p0 = mnas__relu_conv_bn(tp, s0, w[0]);
        *p1 = mnas__relu_conv_bn(tp, s1, w[1]);
    }
    return *p0 && *p1;
}

mnas_tensor *mnas__cell_forward_rows(const mnas_cell *c, mnas_tape *tp, const char *fn, mnas_tensor *s0,
                                     mnas_tensor *s1, mnas_tensor *const *w, mnas_tensor *alpha, size_t row0,
                                     int skip_zero)
{
    if (!mnas__input_ok(tp, fn, "s0", s0) || !mnas__input_ok(tp, fn, "s1", s1)) return NULL;
    if (c->kind == MNAS__CELL_MLP &&
        (!mnas__same_shape(s0, s1) || s0->ndim < 2 || s0->shape[1] != c->width)) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: s0 and s1 must both be [N, %lld]", fn, (long long)c->width);
        return NULL;
    }
    for (size_t e = 0; e < c->n_edges; e++)
        for (size_t o = 0; o < c->n_ops; o++)
            if (!mnas__check_op_weights(tp, fn, mnas__edge_decl(c, e, o), w + c->off[e * c->n_ops + o])) return NULL;
    mnas_tensor *states[2 + 16];
    states[0] = s0;
    states[1] = s1;
    if (c->kind == MNAS__CELL_CONV && !mnas__cell_preprocess(c, tp, fn, s0, s1, w, &states[0], &states[1]))
        return NULL;
    /* An op whose mixing weight is exactly 0 is not evaluated (the active
     * mask): always when alpha needs no gradient (a decoded one-hot alpha),
     * and with skip_zero when the caller knows that the gradient reaching
     * such an entry is not used (softmax, sampled or dropped entries: see
     * docs/images.md for why the results are the same bits). */
    int prune = skip_zero || !alpha->requires_grad;
    mnas_tensor *out = NULL;
    mnas_tensor *ys[18 * 64];
    int64_t idx[18 * 64];
    for (int j = 0; j < c->n_nodes; j++) {
        size_t k = 0;
        for (int i = 0; i < j + 2; i++) {
            size_t e = (size_t)mnas_cell_edge(c, j, i);
            int stride = mnas__edge_stride(c, e);
            for (size_t o = 0; o < c->n_ops; o++) {
                const mnas__op_entry *op = &c->space->ops[o];
                size_t a = (row0 + e) * c->n_ops + o;
                if (op->is_zero) continue;
                if (prune && alpha->data[a] == 0) continue;
                mnas_tensor *y = mnas__op_call(op, tp, fn, states[i], w + c->off[e * c->n_ops + o], stride);
                if (!y) return NULL;
                ys[k] = y;
                idx[k++] = (int64_t)a;
            }
        }
        /* The node: sum over its edges and ops of alpha[e, o] op_o(state). */
        mnas_tensor *node;
        if (k) {
            node = mnas_mix(tp, alpha, k, ys, idx);
        } else {
            /* Every op pruned: a zero state of the node's shape. */
            int64_t shape[4] = { states[0]->shape[0], c->width, 1, 1 };
            if (c->kind == MNAS__CELL_CONV) {
                int64_t h = states[1]->shape[2], wd = states[1]->shape[3];
                shape[2] = c->reduction ? (h + 1) / 2 : h;
                shape[3] = c->reduction ? (wd + 1) / 2 : wd;
                node = mnas_tape_tensor(tp, 4, shape, NULL);
            } else {
                node = mnas_tape_tensor(tp, s0->ndim, s0->shape, NULL);
            }
        }
        if (!node) return NULL;
        states[2 + j] = node;
        if (c->kind == MNAS__CELL_MLP) out = out ? mnas_add(tp, out, node) : node;
    }
    if (c->kind == MNAS__CELL_CONV) return c->n_nodes == 1 ? states[2] : mnas_concat(tp, (size_t)c->n_nodes, states + 2, 1);
    return mnas_scale(tp, out, 1.0 / (double)c->n_nodes);
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
    return mnas__cell_forward_rows(c, tp, fn, s0, s1, w, alpha, 0, 0);
}
