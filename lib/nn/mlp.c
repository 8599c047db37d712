/* The multi-layer perceptron of Linear-ReLU-BN blocks, used functionally:
 * structure here, weights passed to every forward. */
#include <stdio.h>
#include <string.h>

#include "autodiff/opkit.h"
#include "nn/nn_internal.h"

#define MLP_MAX_LAYERS 64

struct mnas_mlp {
    mnas_ctx *ctx;
    int n_layers;
    unsigned flags;
    int64_t dims[MLP_MAX_LAYERS + 1];
};

mnas_mlp *mnas_mlp_create(mnas_ctx *ctx, int n_layers, const int64_t *dims, unsigned flags)
{
    const char *fn = "mnas_mlp_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (n_layers < 1 || n_layers > MLP_MAX_LAYERS || !dims) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: need 1..%d layers and their dims (got %d)", fn, MLP_MAX_LAYERS, n_layers);
        return NULL;
    }
    for (int i = 0; i <= n_layers; i++)
        if (dims[i] < 1 || dims[i] > (1 << 20)) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: width %lld of layer boundary %d is outside 1..2^20", fn,
                        (long long)dims[i], i);
            return NULL;
        }
    if (flags & ~(unsigned)MNAS_MLP_NO_BN) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: unknown flags 0x%x", fn, flags);
        return NULL;
    }
    mnas_mlp *m = mnas__calloc(ctx, 1, sizeof *m);
    if (!m) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    m->ctx = ctx;
    m->n_layers = n_layers;
    m->flags = flags;
    memcpy(m->dims, dims, (size_t)(n_layers + 1) * sizeof *dims);
    return m;
}

void mnas_mlp_free(mnas_mlp *m)
{
    if (m) mnas__free(m->ctx, m);
}

static int has_bn(const mnas_mlp *m, int layer) { return layer < m->n_layers - 1 && !(m->flags & MNAS_MLP_NO_BN); }

size_t mnas_mlp_num_params(const mnas_mlp *m)
{
    if (!m) return 0;
    size_t n = 0;
    for (int l = 0; l < m->n_layers; l++) n += has_bn(m, l) ? 4 : 2;
    return n;
}

static void param_name(char *buf, size_t n, const char *prefix, int layer, const char *what)
{
    snprintf(buf, n, "%sl%d.%s", prefix, layer, what);
}

int mnas_mlp_add_params(const mnas_mlp *m, mnas_params *p, const char *prefix, int group)
{
    const char *fn = "mnas_mlp_add_params";
    if (!m || !p) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 40) {
        mnas__error(m->ctx, MNAS_E_INVALID, "%s: prefix longer than 40 characters", fn);
        return -1;
    }
    static const char *const what[4] = { "w", "b", "bn_g", "bn_b" };
    char name[64];
    /* Refuse a name clash before adding anything. */
    for (int l = 0; l < m->n_layers; l++)
        for (int k = 0; k < (has_bn(m, l) ? 4 : 2); k++) {
            param_name(name, sizeof name, prefix, l, what[k]);
            if (mnas_params_find(p, name) >= 0) {
                mnas__error(m->ctx, MNAS_E_INVALID, "%s: the set already has a parameter \"%s\"", fn, name);
                return -1;
            }
        }
    size_t first = mnas_params_count(p);
    for (int l = 0; l < m->n_layers; l++) {
        int64_t w[2] = { m->dims[l + 1], m->dims[l] }, b[1] = { m->dims[l + 1] };
        double fan_in = (double)m->dims[l];
        int ok = 1;
        param_name(name, sizeof name, prefix, l, "w");
        ok &= mnas_params_add(p, name, 2, w, MNAS_INIT_FAN_IN, fan_in, group) >= 0;
        param_name(name, sizeof name, prefix, l, "b");
        ok &= ok && mnas_params_add(p, name, 1, b, MNAS_INIT_FAN_IN, fan_in, group) >= 0;
        if (ok && has_bn(m, l)) {
            param_name(name, sizeof name, prefix, l, "bn_g");
            ok &= mnas_params_add(p, name, 1, b, MNAS_INIT_ONES, 0, group) >= 0;
            param_name(name, sizeof name, prefix, l, "bn_b");
            ok &= ok && mnas_params_add(p, name, 1, b, MNAS_INIT_ZEROS, 0, group) >= 0;
        }
        if (!ok) {
            mnas__params_truncate(p, first); /* leave the set as it was */
            return -1;
        }
    }
    return (int)first;
}

mnas_tensor *mnas_mlp_forward(const mnas_mlp *m, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    const char *fn = "mnas_mlp_forward";
    if (!m || !mnas__tape_ok(tp)) return NULL;
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    /* The weights must be this network's: right count of elements each. */
    size_t k0 = 0;
    for (int l = 0; l < m->n_layers; l++) {
        int64_t want[4] = { m->dims[l + 1] * m->dims[l], m->dims[l + 1], m->dims[l + 1], m->dims[l + 1] };
        for (int q = 0; q < (has_bn(m, l) ? 4 : 2); q++, k0++) {
            if (!mnas__input_ok(tp, fn, "a weight", w[k0])) return NULL;
            if (w[k0]->size != want[q]) {
                mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight %zu (layer %d) has %lld elements, the network needs %lld",
                                 fn, k0, l, (long long)w[k0]->size, (long long)want[q]);
                return NULL;
            }
        }
    }
    mnas_tensor *h = x;
    size_t k = 0;
    for (int l = 0; l < m->n_layers; l++) {
        h = mnas_linear(tp, h, w[k], w[k + 1]);
        k += 2;
        if (l < m->n_layers - 1) {
            h = mnas_relu(tp, h);
            if (has_bn(m, l)) {
                h = mnas_batch_norm(tp, h, w[k], w[k + 1], 1e-5);
                k += 2;
            }
        }
    }
    return h;
}
