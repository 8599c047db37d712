/* The paper's MAML baseline for images: 4 conv blocks (3x3 conv - BN -
 * ReLU - 2x2 max-pool) and a Linear head, used functionally. */
#include <stdio.h>
#include <string.h>

#include "autodiff/opkit.h"
#include "nn/nn_internal.h"

#define CONVNET_BLOCKS 4
#define CONVNET_PARAMS (4 * CONVNET_BLOCKS + 2)

struct mnas_convnet {
    mnas_ctx *ctx;
    int64_t in, height, width, filters, classes;
    int64_t head_in; /* filters * (height >> 4) * (width >> 4) */
};

mnas_convnet *mnas_convnet_create(mnas_ctx *ctx, int64_t in_channels, int64_t height, int64_t width, int64_t filters,
                                  int64_t n_classes)
{
    const char *fn = "mnas_convnet_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (filters == 0) filters = 32;
    if (in_channels < 1 || in_channels > 4096 || filters < 1 || filters > 4096) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %lld input channels and %lld filters (1..4096)", fn,
                    (long long)in_channels, (long long)filters);
        return NULL;
    }
    if (height < 16 || width < 16 || height > 65536 || width > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: images of %lldx%lld: 4 max-pools need 16..65536 pixels a side", fn,
                    (long long)height, (long long)width);
        return NULL;
    }
    if (n_classes < 1 || n_classes > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %lld classes (1..65536)", fn, (long long)n_classes);
        return NULL;
    }
    mnas_convnet *m = mnas__calloc(ctx, 1, sizeof *m);
    if (!m) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    m->ctx = ctx;
    m->in = in_channels;
    m->height = height;
    m->width = width;
    m->filters = filters;
    m->classes = n_classes;
    m->head_in = filters * (height >> CONVNET_BLOCKS) * (width >> CONVNET_BLOCKS);
    return m;
}

void mnas_convnet_free(mnas_convnet *m)
{
    if (m) mnas__free(m->ctx, m);
}

size_t mnas_convnet_num_params(const mnas_convnet *m) { return m ? CONVNET_PARAMS : 0; }
int64_t mnas_convnet_filters(const mnas_convnet *m) { return m ? m->filters : 0; }

static void spec_of(const mnas_convnet *m, mnas__pspec spec[CONVNET_PARAMS], char names[CONVNET_PARAMS][16])
{
    static const char *const what[4] = { "w", "b", "bn_g", "bn_b" };
    for (int l = 0; l < CONVNET_BLOCKS; l++) {
        int64_t cin = l == 0 ? m->in : m->filters;
        for (int q = 0; q < 4; q++) {
            mnas__pspec *s = &spec[4 * l + q];
            snprintf(names[4 * l + q], 16, "b%d.%s", l, what[q]);
            memset(s, 0, sizeof *s);
            s->name = names[4 * l + q];
            s->ndim = q == 0 ? 4 : 1;
            s->shape[0] = m->filters;
            if (q == 0) {
                s->shape[1] = cin;
                s->shape[2] = s->shape[3] = 3;
            }
            s->init = q < 2 ? MNAS_INIT_FAN_IN : q == 2 ? MNAS_INIT_ONES : MNAS_INIT_ZEROS;
            s->arg = q < 2 ? (double)(cin * 9) : 0.0;
        }
    }
    mnas__pspec *hw = &spec[4 * CONVNET_BLOCKS], *hb = &spec[4 * CONVNET_BLOCKS + 1];
    memset(hw, 0, 2 * sizeof *hw);
    hw->name = "head.w";
    hw->ndim = 2;
    hw->shape[0] = m->classes;
    hw->shape[1] = m->head_in;
    hw->init = MNAS_INIT_FAN_IN;
    hw->arg = (double)m->head_in;
    hb->name = "head.b";
    hb->ndim = 1;
    hb->shape[0] = m->classes;
    hb->init = MNAS_INIT_FAN_IN;
    hb->arg = (double)m->head_in;
}

int mnas_convnet_add_params(const mnas_convnet *m, mnas_params *p, const char *prefix, int group)
{
    if (!m) return -1;
    mnas__pspec spec[CONVNET_PARAMS];
    char names[CONVNET_PARAMS][16];
    spec_of(m, spec, names);
    return mnas__params_add_module(p, m->ctx, "mnas_convnet_add_params", prefix, CONVNET_PARAMS, spec, group);
}

mnas_tensor *mnas_convnet_forward(const mnas_convnet *m, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    const char *fn = "mnas_convnet_forward";
    if (!m || !mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    if (x->ndim != 4 || x->shape[1] != m->in || x->shape[2] != m->height || x->shape[3] != m->width) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must be [N, %lld, %lld, %lld]", fn, (long long)m->in,
                         (long long)m->height, (long long)m->width);
        return NULL;
    }
    mnas__pspec spec[CONVNET_PARAMS];
    char names[CONVNET_PARAMS][16];
    spec_of(m, spec, names);
    for (int k = 0; k < CONVNET_PARAMS; k++) {
        if (!mnas__input_ok(tp, fn, "a weight", w[k])) return NULL;
        int64_t want = 1;
        for (int d = 0; d < spec[k].ndim; d++) want *= spec[k].shape[d];
        if (w[k]->size != want) {
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight %d (\"%s\") has %lld elements, the network needs %lld", fn,
                             k, spec[k].name, (long long)w[k]->size, (long long)want);
            return NULL;
        }
    }
    mnas_tensor *h = x;
    for (int l = 0; l < CONVNET_BLOCKS; l++) {
        mnas_tensor *const *wl = w + 4 * l;
        h = mnas_conv2d(tp, h, wl[0], wl[1], 1, 1, 1, 1);
        h = mnas__batch_norm_relu(tp, h, wl[2], wl[3], 1e-5);
        h = mnas_max_pool2d(tp, h, 2, 2, 0);
    }
    if (!h) return NULL;
    int64_t flat[2] = { x->shape[0], m->head_in };
    h = mnas_reshape(tp, h, 2, flat);
    return mnas_linear(tp, h, w[4 * CONVNET_BLOCKS], w[4 * CONVNET_BLOCKS + 1]);
}
