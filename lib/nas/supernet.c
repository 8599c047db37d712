/* Supernets: the toy-regression one (stem Linear + ReLU into both inputs of
 * one MLP cell, then a Linear head) and the paper's conv one (stem conv-BN,
 * a normal and a reduction DARTS cell, global average pooling, Linear). */
#include <stdio.h>
#include <string.h>

#include "autodiff/checkpoint.h"
#include "nas/nas_internal.h"

static mnas_supernet *net_alloc(const mnas_search_space *space, const char *fn, int kind)
{
    mnas_supernet *n = mnas__calloc(space->ctx, 1, sizeof *n);
    if (!n) {
        mnas__error(space->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    n->ctx = space->ctx;
    n->kind = kind;
    return n;
}

mnas_supernet *mnas_supernet_create_mlp(const mnas_search_space *space, int64_t in, int64_t width, int n_nodes,
                                        int64_t out)
{
    const char *fn = "mnas_supernet_create_mlp";
    if (!space) return NULL;
    if (in < 1 || in > 65536 || out < 1 || out > 65536) {
        mnas__error(space->ctx, MNAS_E_INVALID, "%s: in %lld and out %lld features (1..65536)", fn, (long long)in,
                    (long long)out);
        return NULL;
    }
    mnas_cell *cell = mnas_cell_create_mlp(space, n_nodes, width);
    if (!cell) return NULL;
    mnas_supernet *n = net_alloc(space, fn, MNAS__CELL_MLP);
    if (!n) {
        mnas_cell_free(cell);
        return NULL;
    }
    n->cell[0] = cell;
    n->n_cells = 1;
    n->in = in;
    n->width = width;
    n->out = out;
    return n;
}

mnas_supernet *mnas_supernet_create_conv(const mnas_search_space *space, int64_t in_channels, int64_t channels,
                                         int n_nodes, int64_t n_classes)
{
    const char *fn = "mnas_supernet_create_conv";
    if (!space) return NULL;
    mnas_ctx *ctx = space->ctx;
    if (in_channels < 1 || in_channels > 4096 || n_classes < 1 || n_classes > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %lld input channels (1..4096) and %lld classes (1..65536)", fn,
                    (long long)in_channels, (long long)n_classes);
        return NULL;
    }
    if (channels < 1 || channels > 4096) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: C = %lld channels (1..4096)", fn, (long long)channels);
        return NULL;
    }
    if (n_nodes < 1 || n_nodes > 16) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %d nodes (1..16)", fn, n_nodes);
        return NULL;
    }
    int64_t stem = 3 * channels; /* DARTS's stem multiplier */
    mnas_supernet *n = net_alloc(space, fn, MNAS__CELL_CONV);
    if (!n) return NULL;
    n->n_cells = 2;
    n->in = in_channels;
    n->width = channels;
    n->out = n_classes;
    n->stem_c = stem;
    n->stem_stride = 1;
    /* As in DARTS: s0 = s1 = stem into the normal cell; the reduction cell
     * (2C channels) reads the stem and the normal cell's output. */
    n->cell[0] = mnas_cell_create_conv(space, n_nodes, stem, stem, channels, 0, 0);
    if (n->cell[0]) n->cell[1] = mnas_cell_create_conv(space, n_nodes, stem, n_nodes * channels, 2 * channels, 1, 0);
    if (!n->cell[1]) {
        mnas_supernet_free(n);
        return NULL;
    }
    return n;
}

void mnas_supernet_free(mnas_supernet *n)
{
    if (!n) return;
    mnas_cell_free(n->cell[0]);
    mnas_cell_free(n->cell[1]);
    mnas__free(n->ctx, n);
}

const mnas_cell *mnas_supernet_cell(const mnas_supernet *n) { return n ? n->cell[0] : NULL; }
int mnas_supernet_is_conv(const mnas_supernet *n) { return n ? n->kind == MNAS__CELL_CONV : 0; }

mnas_status mnas_supernet_set_stem_stride(mnas_supernet *n, int stride)
{
    if (!n) return MNAS_E_INVALID;
    if (n->kind != MNAS__CELL_CONV)
        return mnas__error(n->ctx, MNAS_E_INVALID, "mnas_supernet_set_stem_stride: an MLP supernet has no conv stem");
    if (stride != 1 && stride != 2 && stride != 4)
        return mnas__error(n->ctx, MNAS_E_INVALID, "mnas_supernet_set_stem_stride: stride %d (1, 2 or 4)", stride);
    n->stem_stride = stride;
    return MNAS_OK;
}

int mnas_supernet_stem_stride(const mnas_supernet *n)
{
    return n && n->kind == MNAS__CELL_CONV ? n->stem_stride : 0;
}
int mnas_supernet_num_cells(const mnas_supernet *n) { return n ? n->n_cells : 0; }
const mnas_cell *mnas_supernet_cell_at(const mnas_supernet *n, int k)
{
    return n && k >= 0 && k < n->n_cells ? n->cell[k] : NULL;
}

size_t mnas_supernet_alpha_rows(const mnas_supernet *n)
{
    if (!n) return 0;
    size_t r = 0;
    for (int k = 0; k < n->n_cells; k++) r += n->cell[k]->n_edges;
    return r;
}

size_t mnas_supernet_num_params(const mnas_supernet *n)
{
    if (!n) return 0;
    if (n->kind == MNAS__CELL_MLP) return 4 + n->cell[0]->n_params;
    return 3 + n->cell[0]->n_params + n->cell[1]->n_params + 2;
}

/* Stem and head: shared with the child networks. */
int mnas__add_stem_head(mnas_params *p, const char *prefix, const char *part, int64_t in, int64_t out, int group)
{
    char name[96];
    int64_t w[2] = { out, in }, b[1] = { out };
    snprintf(name, sizeof name, "%s%s.w", prefix, part);
    int k = mnas_params_add(p, name, 2, w, MNAS_INIT_FAN_IN, (double)in, group);
    snprintf(name, sizeof name, "%s%s.b", prefix, part);
    if (k < 0 || mnas_params_add(p, name, 1, b, MNAS_INIT_FAN_IN, (double)in, group) < 0) return -1;
    return k;
}

int mnas__add_conv_stem(mnas_params *p, const char *prefix, int64_t in, int64_t out, int group)
{
    char name[96];
    int64_t w[4] = { out, in, 3, 3 }, b[1] = { out };
    snprintf(name, sizeof name, "%sstem.w", prefix);
    int k = mnas_params_add(p, name, 4, w, MNAS_INIT_FAN_IN, (double)(in * 9), group);
    snprintf(name, sizeof name, "%sstem.bn_g", prefix);
    if (k < 0 || mnas_params_add(p, name, 1, b, MNAS_INIT_ONES, 0, group) < 0) return -1;
    snprintf(name, sizeof name, "%sstem.bn_b", prefix);
    if (mnas_params_add(p, name, 1, b, MNAS_INIT_ZEROS, 0, group) < 0) return -1;
    return k;
}

int mnas_supernet_add_params(const mnas_supernet *n, mnas_params *p, const char *prefix, int group)
{
    if (!n || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 24) {
        mnas__error(n->ctx, MNAS_E_INVALID, "mnas_supernet_add_params: prefix longer than 24 characters");
        return -1;
    }
    char cp[64], rp[64];
    size_t first = mnas_params_count(p);
    int ok;
    if (n->kind == MNAS__CELL_MLP) {
        snprintf(cp, sizeof cp, "%scell.", prefix);
        ok = mnas__add_stem_head(p, prefix, "stem", n->in, n->width, group) >= 0 &&
             mnas__cell_add_params(n->cell[0], p, cp, group) >= 0 &&
             mnas__add_stem_head(p, prefix, "head", n->width, n->out, group) >= 0;
    } else {
        snprintf(cp, sizeof cp, "%snormal.", prefix);
        snprintf(rp, sizeof rp, "%sreduce.", prefix);
        ok = mnas__add_conv_stem(p, prefix, n->in, n->stem_c, group) >= 0 &&
             mnas__cell_add_params(n->cell[0], p, cp, group) >= 0 &&
             mnas__cell_add_params(n->cell[1], p, rp, group) >= 0 &&
             mnas__add_stem_head(p, prefix, "head", mnas_cell_out_width(n->cell[1]), n->out, group) >= 0;
    }
    if (!ok) {
        mnas__params_truncate(p, first);
        return -1;
    }
    return (int)first;
}

int mnas__check_linear(mnas_tape *tp, const char *fn, mnas_tensor *const *w, int64_t in, int64_t out)
{
    if (!mnas__input_ok(tp, fn, "a weight", w[0]) || !mnas__input_ok(tp, fn, "a bias", w[1])) return 0;
    if (w[0]->size != in * out || w[1]->size != out) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: a stem or head weight does not fit %lld -> %lld", fn, (long long)in,
                         (long long)out);
        return 0;
    }
    return 1;
}

mnas_tensor *mnas__conv_stem(const mnas_supernet *n, mnas_tape *tp, const char *fn, mnas_tensor *x,
                             mnas_tensor *const *w)
{
    if (!mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim != 4 || x->shape[1] != n->in) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must be [N, %lld, H, W]", fn, (long long)n->in);
        return NULL;
    }
    for (int k = 0; k < 3; k++)
        if (!mnas__input_ok(tp, fn, "a stem weight", w[k])) return NULL;
    if (w[0]->size != n->stem_c * n->in * 9 || w[1]->size != n->stem_c || w[2]->size != n->stem_c) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the stem weights do not fit %lld -> %lld channels", fn,
                         (long long)n->in, (long long)n->stem_c);
        return NULL;
    }
    int s = n->stem_stride > 1 ? 2 : 1;
    mnas_tensor *h = mnas_batch_norm(tp, mnas_conv2d(tp, x, w[0], NULL, s, 1, 1, 1), w[1], w[2], 1e-5);
    return n->stem_stride == 4 ? mnas_avg_pool2d(tp, h, 2, 2, 0) : h;
}

/* A cell as a checkpointed segment: ins = s0, s1, alpha, the cell's weights. */
typedef struct {
    const mnas_cell *c;
    const char *fn;
    size_t row0;
    int skip_zero;
} cell_closure;

static mnas_tensor *cell_segment(mnas_tape *tp, mnas_tensor *const *ins, const void *user)
{
    const cell_closure *k = user;
    return mnas__cell_forward_rows(k->c, tp, k->fn, ins[0], ins[1], ins + 3, ins[2], k->row0, k->skip_zero);
}

static mnas_tensor *run_cell(const mnas_cell *c, mnas_tape *tp, const char *fn, mnas_tensor *s0, mnas_tensor *s1,
                             mnas_tensor *const *w, mnas_tensor *alpha, size_t row0, int skip_zero, int checkpoint)
{
    if (!checkpoint) return mnas__cell_forward_rows(c, tp, fn, s0, s1, w, alpha, row0, skip_zero);
    size_t n = 3 + c->n_params;
    mnas_tensor **ins = mnas__tape_scratch(tp, fn, n * sizeof *ins);
    if (!ins) return NULL;
    ins[0] = s0;
    ins[1] = s1;
    ins[2] = alpha;
    memcpy(ins + 3, w, c->n_params * sizeof *w);
    cell_closure k = { c, fn, row0, skip_zero };
    return mnas__checkpoint(tp, fn, cell_segment, &k, sizeof k, n, ins);
}

static mnas_tensor *conv_forward(const mnas_supernet *n, mnas_tape *tp, const char *fn, mnas_tensor *x,
                                 mnas_tensor *const *w, mnas_tensor *alpha, int skip_zero, int checkpoint)
{
    size_t P = mnas_supernet_num_params(n);
    const mnas_cell *nc = n->cell[0], *rc = n->cell[1];
    if (!mnas__check_linear(tp, fn, w + P - 2, mnas_cell_out_width(rc), n->out)) return NULL;
    mnas_tensor *h = mnas__conv_stem(n, tp, fn, x, w);
    if (!h) return NULL;
    mnas_tensor *c0 = run_cell(nc, tp, fn, h, h, w + 3, alpha, 0, skip_zero, checkpoint);
    if (!c0) return NULL;
    mnas_tensor *c1 =
        run_cell(rc, tp, fn, h, c0, w + 3 + nc->n_params, alpha, nc->n_edges, skip_zero, checkpoint);
    if (!c1) return NULL;
    return mnas_linear(tp, mnas_global_avg_pool(tp, c1), w[P - 2], w[P - 1]);
}

mnas_tensor *mnas_supernet_forward(const mnas_supernet *n, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                   mnas_tensor *alpha)
{
    return mnas__supernet_forward(n, tp, x, w, alpha, 0, 0);
}

mnas_tensor *mnas__supernet_forward(const mnas_supernet *n, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                    mnas_tensor *alpha, int skip_zero, int checkpoint)
{
    const char *fn = "mnas_supernet_forward";
    if (!n || !mnas__tape_ok(tp)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    if (n->kind == MNAS__CELL_CONV) {
        if (!mnas__input_ok(tp, fn, "alpha", alpha)) return NULL;
        size_t rows = mnas_supernet_alpha_rows(n), ops = n->cell[0]->n_ops;
        if (alpha->ndim != 2 || alpha->shape[0] != (int64_t)rows || alpha->shape[1] != (int64_t)ops) {
            mnas__tape_error(tp, MNAS_E_SHAPE,
                             "%s: alpha must be [%zu, %zu]: the normal cell's %zu edges, then the reduction cell's",
                             fn, rows, ops, n->cell[0]->n_edges);
            return NULL;
        }
        return conv_forward(n, tp, fn, x, w, alpha, skip_zero, checkpoint);
    }
    size_t P = mnas_supernet_num_params(n);
    if (!mnas__check_linear(tp, fn, w, n->in, n->width) || !mnas__check_linear(tp, fn, w + P - 2, n->width, n->out))
        return NULL;
    mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, x, w[0], w[1]));
    const mnas_cell *cell = n->cell[0];
    if (!mnas__input_ok(tp, fn, "alpha", alpha)) return NULL;
    if (alpha->ndim != 2 || alpha->shape[0] != (int64_t)cell->n_edges || alpha->shape[1] != (int64_t)cell->n_ops) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: alpha must be [%zu, %zu] (edges, ops)", fn, cell->n_edges,
                         cell->n_ops);
        return NULL;
    }
    mnas_tensor *c = h ? run_cell(cell, tp, fn, h, h, w + 2, alpha, 0, skip_zero, checkpoint) : NULL;
    return mnas_linear(tp, c, w[P - 2], w[P - 1]);
}
