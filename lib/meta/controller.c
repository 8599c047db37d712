/* The task-aware architecture controller of M-NAS ("Task-Aware Architecture
 * Generation"): alpha_i = A(z_i), an MLP from the task representation to
 * DARTS-style architecture weights, softmax over the ops of each edge.
 *
 * Parameter order (prefix + name, shape, initialiser):
 *   0 l0.w  [hidden, z_dim]      fan-in z_dim
 *   1 l0.b  [hidden]             fan-in z_dim
 *   2 l1.w  [edges*ops, hidden]  U[-1e-3, 1e-3]
 *   3 l1.b  [edges*ops]          zeros
 * The last layer starts almost at zero so that the initial alpha is almost
 * uniform (every op of every edge equally likely, 1/ops) whatever z is: the
 * search starts without a prior on the ops, and the gradient still reaches
 * every weight (the last layer is not exactly zero). */
#include <stdio.h>
#include <string.h>

#include <mnas/meta.h>

#include "autodiff/opkit.h"
#include "meta/meta_internal.h"
#include "nn/nn_internal.h"

#define CTRL_MAX_DIM 65536
#define CTRL_MAX_OUT ((int64_t)1 << 24) /* edges * ops */
#define CTRL_LAST_INIT 1e-3

enum { C_W0, C_B0, C_W1, C_B1, CTRL_NP };

struct mnas_controller {
    mnas_ctx *ctx;
    int64_t z_dim, hidden, edges, ops;
    double temperature; /* softmax(logits / temperature); 1 skips the scaling */
};

static const char *const ctrl_names[CTRL_NP] = { "l0.w", "l0.b", "l1.w", "l1.b" };

static int ctrl_shape(const mnas_controller *c, int k, int64_t s[2])
{
    switch (k) {
    case C_W0: s[0] = c->hidden, s[1] = c->z_dim; return 2;
    case C_B0: s[0] = c->hidden; return 1;
    case C_W1: s[0] = c->edges * c->ops, s[1] = c->hidden; return 2;
    default: s[0] = c->edges * c->ops; return 1;
    }
}

mnas_controller *mnas_controller_create(mnas_ctx *ctx, int64_t z_dim, int64_t hidden, int64_t edges, int64_t ops)
{
    const char *fn = "mnas_controller_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    const int64_t dims[4] = { z_dim, hidden, edges, ops };
    static const char *const what[4] = { "z_dim", "hidden", "edges", "ops" };
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > CTRL_MAX_DIM) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: %s = %lld is outside 1..%d", fn, what[i], (long long)dims[i],
                        CTRL_MAX_DIM);
            return NULL;
        }
    if (edges * ops > CTRL_MAX_OUT) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: edges * ops = %lld is more than 2^24", fn, (long long)(edges * ops));
        return NULL;
    }
    mnas_controller *c = mnas__calloc(ctx, 1, sizeof *c);
    if (!c) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    c->ctx = ctx;
    c->z_dim = z_dim;
    c->hidden = hidden;
    c->edges = edges;
    c->ops = ops;
    c->temperature = 1;
    return c;
}

void mnas_controller_free(mnas_controller *c)
{
    if (c) mnas__free(c->ctx, c);
}

size_t mnas_controller_num_params(const mnas_controller *c) { return c ? CTRL_NP : 0; }

int mnas_controller_add_params(const mnas_controller *c, mnas_params *p, const char *prefix, int group)
{
    if (!c) return -1;
    static const mnas_init init[CTRL_NP] = { MNAS_INIT_FAN_IN, MNAS_INIT_FAN_IN, MNAS_INIT_UNIFORM, MNAS_INIT_ZEROS };
    const double arg[CTRL_NP] = { (double)c->z_dim, (double)c->z_dim, CTRL_LAST_INIT, 0.0 };
    mnas__pspec spec[CTRL_NP];
    for (int k = 0; k < CTRL_NP; k++) {
        memset(&spec[k], 0, sizeof spec[k]);
        spec[k].name = ctrl_names[k];
        spec[k].ndim = ctrl_shape(c, k, spec[k].shape);
        spec[k].init = init[k];
        spec[k].arg = arg[k];
    }
    return mnas__params_add_module(p, c->ctx, "mnas_controller_add_params", prefix, CTRL_NP, spec, group);
}

mnas_tensor *mnas_controller_forward(const mnas_controller *c, mnas_tape *tp, mnas_tensor *z, mnas_tensor *const *w)
{
    const char *fn = "mnas_controller_forward";
    if (!mnas__tape_ok(tp)) {
        if (c) mnas__error(c->ctx, MNAS_E_INVALID, "%s: the tape is not valid", fn);
        return NULL;
    }
    if (!c) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: the controller is NULL", fn);
        return NULL;
    }
    if (!mnas__input_ok(tp, fn, "z", z)) return NULL;
    if (z->ndim != 2 || z->shape[0] != 1 || z->shape[1] != c->z_dim) {
        char a[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: z is %s, the controller needs [1, %lld]", fn,
                         mnas__shape_str(a, sizeof a, z->ndim, z->shape), (long long)c->z_dim);
        return NULL;
    }
    if (!w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    for (int k = 0; k < CTRL_NP; k++) {
        if (!mnas__input_ok(tp, fn, "a weight", w[k])) return NULL;
        int64_t s[2];
        int nd = ctrl_shape(c, k, s);
        int64_t want = nd == 2 ? s[0] * s[1] : s[0];
        int ok = w[k]->size == want &&
                 (nd == 2 ? w[k]->ndim == 2 && w[k]->shape[0] == s[0] && w[k]->shape[1] == s[1]
                          : w[k]->ndim == 1 || (w[k]->ndim == 2 && w[k]->shape[0] == 1));
        if (!ok) {
            char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight %d (%s) is %s, the controller needs %s", fn, k,
                             ctrl_names[k], mnas__shape_str(a, sizeof a, w[k]->ndim, w[k]->shape),
                             mnas__shape_str(b, sizeof b, nd, s));
            return NULL;
        }
    }
    mnas_tensor *h = mnas_relu(tp, mnas_linear(tp, z, w[C_W0], w[C_B0]));
    mnas_tensor *logits = mnas_linear(tp, h, w[C_W1], w[C_B1]);
    if (c->temperature != 1) logits = mnas_scale(tp, logits, 1 / c->temperature);
    int64_t s[2] = { c->edges, c->ops };
    return mnas_softmax(tp, mnas_reshape(tp, logits, 2, s));
}

mnas_status mnas_controller_set_temperature(mnas_controller *c, double temperature)
{
    if (!c) return MNAS_E_INVALID;
    if (!mnas__temperature_ok(temperature))
        return mnas__error(c->ctx, MNAS_E_INVALID,
                           "mnas_controller_set_temperature: temperature %g must be finite and in [%g, %g]",
                           temperature, MNAS__TEMP_MIN, MNAS__TEMP_MAX);
    c->temperature = temperature;
    return MNAS_OK;
}

double mnas_controller_temperature(const mnas_controller *c) { return c ? c->temperature : 1; }
