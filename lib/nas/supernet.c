/* The toy-regression supernet: stem Linear + ReLU into both inputs of one
 * MLP cell, then a Linear head. */
#include <stdio.h>
#include <string.h>

#include "nas/nas_internal.h"

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
    mnas_supernet *n = mnas__calloc(space->ctx, 1, sizeof *n);
    if (!n) {
        mnas_cell_free(cell);
        mnas__error(space->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    n->ctx = space->ctx;
    n->cell = cell;
    n->in = in;
    n->width = width;
    n->out = out;
    return n;
}

void mnas_supernet_free(mnas_supernet *n)
{
    if (!n) return;
    mnas_cell_free(n->cell);
    mnas__free(n->ctx, n);
}

const mnas_cell *mnas_supernet_cell(const mnas_supernet *n) { return n ? n->cell : NULL; }
size_t mnas_supernet_num_params(const mnas_supernet *n) { return n ? 4 + n->cell->n_params : 0; }

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

int mnas_supernet_add_params(const mnas_supernet *n, mnas_params *p, const char *prefix, int group)
{
    if (!n || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 24) {
        mnas__error(n->ctx, MNAS_E_INVALID, "mnas_supernet_add_params: prefix longer than 24 characters");
        return -1;
    }
    char cp[64];
    snprintf(cp, sizeof cp, "%scell.", prefix);
    size_t first = mnas_params_count(p);
    if (mnas__add_stem_head(p, prefix, "stem", n->in, n->width, group) < 0 || mnas_cell_add_params(n->cell, p, cp, group) < 0 ||
        mnas__add_stem_head(p, prefix, "head", n->width, n->out, group) < 0) {
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

mnas_tensor *mnas_supernet_forward(const mnas_supernet *n, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                   mnas_tensor *alpha)
{
    const char *fn = "mnas_supernet_forward";
    if (!n || !mnas__tape_ok(tp)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    size_t P = mnas_supernet_num_params(n);
    if (!mnas__check_linear(tp, fn, w, n->in, n->width) || !mnas__check_linear(tp, fn, w + P - 2, n->width, n->out))
        return NULL;
    mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, x, w[0], w[1]));
    mnas_tensor *c = mnas_cell_forward(n->cell, tp, h, h, w + 2, alpha);
    return mnas_linear(tp, c, w[P - 2], w[P - 1]);
}
