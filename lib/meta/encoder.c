/* The task encoder of M-NAS (Eq. (4)-(6) of the paper): a recurrent
 * auto-encoder over the embedded support pairs F(x, y). The encoder RNN's
 * states, averaged, are the task representation z; a decoder RNN running
 * backwards over the encoder states reconstructs the embeddings, and the
 * squared error is the reconstruction loss L_r. Used functionally like every
 * module: structure here, weights passed to every forward. Everything is
 * built from differentiable ops, so derivatives of any order flow through it
 * (M-NAS differentiates the meta-objective, L_r included, end to end).
 *
 * Parameter order (prefix + name, shape, initialiser):
 *   0 f.w       [f_dim, x_features + y_features]  fan-in x_features + y_features
 *   1 f.b       [f_dim]                           fan-in x_features + y_features
 *   2 enc.w_ih  [G*z_dim, f_dim]                  fan-in z_dim
 *   3 enc.w_hh  [G*z_dim, z_dim]                  fan-in z_dim
 *   4 enc.b_ih  [G*z_dim]                         fan-in z_dim
 *   5 enc.b_hh  [G*z_dim]                         fan-in z_dim
 *   6 dec.w_ih  [G*f_dim, z_dim]                  fan-in f_dim
 *   7 dec.w_hh  [G*f_dim, f_dim]                  fan-in f_dim
 *   8 dec.b_ih  [G*f_dim]                         fan-in f_dim
 *   9 dec.b_hh  [G*f_dim]                         fan-in f_dim
 * with G = 3 (GRU gates r, z, n) or 4 (LSTM gates i, f, g, o), in PyTorch's
 * layout and with its default initialisation U[-1/sqrt(H), 1/sqrt(H)]. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mnas/meta.h>

#include "autodiff/opkit.h"
#include "nn/nn_internal.h"

#define ENC_MAX_DIM 65536
#define ENC_MAX_ROWS 65536
#define CONCAT_MAX 4096 /* mnas_concat's limit on inputs */

enum { P_FW, P_FB, P_EWI, P_EWH, P_EBI, P_EBH, P_DWI, P_DWH, P_DBI, P_DBH, ENC_NP };

struct mnas_task_encoder {
    mnas_ctx *ctx;
    int64_t xf, yf, f_dim, z_dim;
    mnas_rnn_kind kind;
    double in_scale; /* the embedding reads in_scale [x, y] (1: the paper's) */
};

static const char *const enc_names[ENC_NP] = { "f.w",      "f.b",      "enc.w_ih", "enc.w_hh", "enc.b_ih",
                                               "enc.b_hh", "dec.w_ih", "dec.w_hh", "dec.b_ih", "dec.b_hh" };

static int64_t gates(const mnas_task_encoder *e) { return e->kind == MNAS_RNN_LSTM ? 4 : 3; }

/* Shape of parameter k; returns its ndim. */
static int enc_shape(const mnas_task_encoder *e, int k, int64_t s[2])
{
    int64_t G = gates(e), in = e->xf + e->yf;
    switch (k) {
    case P_FW: s[0] = e->f_dim, s[1] = in; return 2;
    case P_FB: s[0] = e->f_dim; return 1;
    case P_EWI: s[0] = G * e->z_dim, s[1] = e->f_dim; return 2;
    case P_EWH: s[0] = G * e->z_dim, s[1] = e->z_dim; return 2;
    case P_EBI:
    case P_EBH: s[0] = G * e->z_dim; return 1;
    case P_DWI: s[0] = G * e->f_dim, s[1] = e->z_dim; return 2;
    case P_DWH: s[0] = G * e->f_dim, s[1] = e->f_dim; return 2;
    default: s[0] = G * e->f_dim; return 1; /* P_DBI, P_DBH */
    }
}

static double enc_fan_in(const mnas_task_encoder *e, int k)
{
    if (k <= P_FB) return (double)(e->xf + e->yf);
    if (k <= P_EBH) return (double)e->z_dim;
    return (double)e->f_dim;
}

mnas_task_encoder *mnas_task_encoder_create(mnas_ctx *ctx, int64_t x_features, int64_t y_features, int64_t f_dim,
                                            int64_t z_dim, mnas_rnn_kind kind)
{
    const char *fn = "mnas_task_encoder_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    const int64_t dims[4] = { x_features, y_features, f_dim, z_dim };
    static const char *const what[4] = { "x_features", "y_features", "f_dim", "z_dim" };
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > ENC_MAX_DIM) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: %s = %lld is outside 1..%d", fn, what[i], (long long)dims[i],
                        ENC_MAX_DIM);
            return NULL;
        }
    if (kind != MNAS_RNN_GRU && kind != MNAS_RNN_LSTM) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: unknown RNN kind %d (MNAS_RNN_GRU or MNAS_RNN_LSTM)", fn, (int)kind);
        return NULL;
    }
    mnas_task_encoder *e = mnas__calloc(ctx, 1, sizeof *e);
    if (!e) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    e->ctx = ctx;
    e->xf = x_features;
    e->yf = y_features;
    e->f_dim = f_dim;
    e->z_dim = z_dim;
    e->kind = kind;
    e->in_scale = 1;
    return e;
}

mnas_status mnas_task_encoder_set_input_scale(mnas_task_encoder *e, double s)
{
    if (!e) return MNAS_E_INVALID;
    if (!(s > 0 && s <= 1))
        return mnas__error(e->ctx, MNAS_E_INVALID, "mnas_task_encoder_set_input_scale: scale %g is outside (0, 1]",
                           s);
    e->in_scale = s;
    return MNAS_OK;
}

void mnas_task_encoder_free(mnas_task_encoder *e)
{
    if (e) mnas__free(e->ctx, e);
}

int64_t mnas_task_encoder_z_dim(const mnas_task_encoder *e) { return e ? e->z_dim : 0; }

size_t mnas_task_encoder_num_params(const mnas_task_encoder *e) { return e ? ENC_NP : 0; }

int mnas_task_encoder_add_params(const mnas_task_encoder *e, mnas_params *p, const char *prefix, int group)
{
    if (!e) return -1;
    mnas__pspec spec[ENC_NP];
    for (int k = 0; k < ENC_NP; k++) {
        memset(&spec[k], 0, sizeof spec[k]);
        spec[k].name = enc_names[k];
        spec[k].ndim = enc_shape(e, k, spec[k].shape);
        spec[k].init = MNAS_INIT_FAN_IN;
        spec[k].arg = enc_fan_in(e, k);
    }
    /* f.w reads in_scale [x, y]: a bound 1 / in_scale times wider keeps F's
     * distribution at initialisation. */
    if (e->in_scale != 1) {
        spec[P_FW].init = MNAS_INIT_UNIFORM;
        spec[P_FW].arg = 1.0 / (e->in_scale * sqrt(enc_fan_in(e, P_FW)));
    }
    return mnas__params_add_module(p, e->ctx, "mnas_task_encoder_add_params", prefix, ENC_NP, spec, group);
}

/* ---- forward ------------------------------------------------------------ */

/* Join n row blocks along axis 0, in groups within mnas_concat's limit. */
static mnas_tensor *concat_rows(mnas_tape *tp, size_t n, mnas_tensor *const *xs)
{
    if (n == 1) return xs[0];
    if (n <= CONCAT_MAX) return mnas_concat(tp, n, xs, 0);
    mnas_tensor *parts[(ENC_MAX_ROWS + CONCAT_MAX - 1) / CONCAT_MAX];
    size_t np = 0;
    for (size_t i = 0; i < n; i += CONCAT_MAX) {
        size_t len = n - i < CONCAT_MAX ? n - i : CONCAT_MAX;
        parts[np] = mnas_concat(tp, len, xs + i, 0);
        if (!parts[np]) return NULL;
        np++;
    }
    return mnas_concat(tp, np, parts, 0);
}

/* One recurrent cell. gi: this step's input projection [1, G*H] (for the
 * LSTM it already includes b_hh). h, c: the state, NULL for the zero state
 * of the first step. w_hh: [G*H, H]; b_hh_row: b_hh as [1, G*H] (GRU only).
 * Returns the new h (and *c_out for the LSTM), NULL on failure. */
static mnas_tensor *gru_cell(mnas_tape *tp, int64_t H, mnas_tensor *gi, mnas_tensor *h, mnas_tensor *w_hh,
                             mnas_tensor *b_hh, mnas_tensor *b_hh_row)
{
    /* With h = 0, W_hh h + b_hh is b_hh exactly. */
    mnas_tensor *gh = h ? mnas_linear(tp, h, w_hh, b_hh) : b_hh_row;
    mnas_tensor *s = mnas_add(tp, gi, gh);
    mnas_tensor *ru = mnas_sigmoid(tp, mnas_slice(tp, s, 1, 0, 2 * H));
    mnas_tensor *r = mnas_slice(tp, ru, 1, 0, H);
    mnas_tensor *u = mnas_slice(tp, ru, 1, H, H);
    mnas_tensor *n =
        mnas_tanh(tp, mnas_add(tp, mnas_slice(tp, gi, 1, 2 * H, H), mnas_mul(tp, r, mnas_slice(tp, gh, 1, 2 * H, H))));
    /* h' = (1 - u) n + u h = n + u (h - n) */
    if (!h) return mnas_sub(tp, n, mnas_mul(tp, u, n));
    return mnas_add(tp, n, mnas_mul(tp, u, mnas_sub(tp, h, n)));
}

static mnas_tensor *lstm_cell(mnas_tape *tp, int64_t H, mnas_tensor *gi, mnas_tensor *h, mnas_tensor *c,
                              mnas_tensor *w_hh, mnas_tensor **c_out)
{
    mnas_tensor *a = h ? mnas_add(tp, gi, mnas_linear(tp, h, w_hh, NULL)) : gi;
    mnas_tensor *sg = mnas_sigmoid(tp, a);
    mnas_tensor *i = mnas_slice(tp, sg, 1, 0, H);
    mnas_tensor *g = mnas_tanh(tp, mnas_slice(tp, a, 1, 2 * H, H));
    mnas_tensor *o = mnas_slice(tp, sg, 1, 3 * H, H);
    mnas_tensor *cn = mnas_mul(tp, i, g);
    if (c) cn = mnas_add(tp, mnas_mul(tp, mnas_slice(tp, sg, 1, H, H), c), cn);
    *c_out = cn;
    return mnas_mul(tp, o, mnas_tanh(tp, cn));
}

/* Run an RNN of hidden size H over the rows of the input projection GI
 * [K, G*H] (order: rows 0..K-1 when forward, K-1..0 otherwise); states[j]
 * receives the hidden state after reading row j. */
static int run_rnn(mnas_tape *tp, mnas_rnn_kind kind, int64_t H, int64_t K, mnas_tensor *GI, mnas_tensor *w_hh,
                   mnas_tensor *b_hh, int forward, mnas_tensor **states)
{
    mnas_tensor *b_row = NULL;
    if (kind == MNAS_RNN_GRU) {
        int64_t s[2] = { 1, 3 * H };
        b_row = mnas_reshape(tp, b_hh, 2, s);
        if (!b_row) return 0;
    } else {
        /* LSTM: both biases simply add, so fold b_hh into every step's input
         * projection once. */
        GI = mnas_add(tp, GI, b_hh);
        if (!GI) return 0;
    }
    mnas_tensor *h = NULL, *c = NULL;
    for (int64_t t = 0; t < K; t++) {
        int64_t j = forward ? t : K - 1 - t;
        mnas_tensor *gi = K == 1 ? GI : mnas_slice(tp, GI, 0, j, 1);
        if (kind == MNAS_RNN_GRU)
            h = gru_cell(tp, H, gi, h, w_hh, b_hh, b_row);
        else
            h = lstm_cell(tp, H, gi, h, c, w_hh, &c);
        if (!h) return 0;
        states[j] = h;
    }
    return 1;
}

/* A [rows, features] view of t: rows = first extent, features = the rest. */
static mnas_tensor *as_rows(mnas_tape *tp, mnas_tensor *t)
{
    if (t->ndim == 2) return t;
    int64_t s[2] = { t->shape[0], t->size / t->shape[0] };
    return mnas_reshape(tp, t, 2, s);
}

static int all_finite(const mnas_tensor *t)
{
    for (int64_t i = 0; i < t->size; i++)
        if (!isfinite((double)t->data[i])) return 0;
    return 1;
}

mnas_status mnas_task_encoder_forward(const mnas_task_encoder *e, mnas_tape *tp, mnas_tensor *x, mnas_tensor *y,
                                      mnas_tensor *const *w, const int64_t *perm, mnas_tensor **z,
                                      mnas_tensor **recon)
{
    const char *fn = "mnas_task_encoder_forward";
    if (!mnas__tape_ok(tp)) return e ? mnas__error(e->ctx, MNAS_E_INVALID, "%s: the tape is not valid", fn)
                                     : MNAS_E_INVALID;
    if (!e) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: the encoder is NULL", fn);
    if (!z) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: z (the output) is NULL", fn);
    if (!mnas__input_ok(tp, fn, "x", x) || !mnas__input_ok(tp, fn, "y", y))
        return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID;
    if (!w) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);

    /* The weights must be this encoder's: right count (and matrix shape). */
    for (int k = 0; k < ENC_NP; k++) {
        if (!mnas__input_ok(tp, fn, "a weight", w[k])) return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID;
        int64_t s[2];
        int nd = enc_shape(e, k, s);
        int64_t want = nd == 2 ? s[0] * s[1] : s[0];
        /* Matrices exactly; vectors as [n] or [1, n] (what mnas_linear takes). */
        int ok = w[k]->size == want &&
                 (nd == 2 ? w[k]->ndim == 2 && w[k]->shape[0] == s[0] && w[k]->shape[1] == s[1]
                          : w[k]->ndim == 1 || (w[k]->ndim == 2 && w[k]->shape[0] == 1));
        if (!ok) {
            char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
            return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight %d (%s) is %s, the encoder needs %s", fn, k,
                                    enc_names[k], mnas__shape_str(a, sizeof a, w[k]->ndim, w[k]->shape),
                                    mnas__shape_str(b, sizeof b, nd, s));
        }
    }

    /* The support set: x [K, x_features], y [K, y_features] (trailing axes
     * of x or y are flattened into features). */
    if (x->ndim < 1 || y->ndim < 1)
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x and y need a row axis (got %d-D and %d-D)", fn, x->ndim,
                                y->ndim);
    int64_t K = x->shape[0];
    if (y->shape[0] != K)
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x has %lld rows but y has %lld", fn, (long long)K,
                                (long long)y->shape[0]);
    if (K > ENC_MAX_ROWS)
        return mnas__tape_error(tp, MNAS_E_INVALID, "%s: %lld support pairs (at most %d)", fn, (long long)K,
                                ENC_MAX_ROWS);
    if (x->size / K != e->xf || y->size / K != e->yf)
        return mnas__tape_error(tp, MNAS_E_SHAPE,
                                "%s: rows of x and y have %lld and %lld features, the encoder was made for %lld and %lld",
                                fn, (long long)(x->size / K), (long long)(y->size / K), (long long)e->xf,
                                (long long)e->yf);
    if (!all_finite(x) || !all_finite(y))
        return mnas__tape_error(tp, MNAS_E_NUMERIC, "%s: the support set holds NaN or Inf", fn);

    /* perm must be a permutation of 0..K-1. */
    if (perm) {
        unsigned char *seen = mnas__tape_scratch(tp, fn, (size_t)K);
        if (!seen) return mnas_tape_status(tp);
        memset(seen, 0, (size_t)K);
        for (int64_t j = 0; j < K; j++) {
            if (perm[j] < 0 || perm[j] >= K)
                return mnas__tape_error(tp, MNAS_E_INVALID, "%s: perm[%lld] = %lld is outside [0, %lld)", fn,
                                        (long long)j, (long long)perm[j], (long long)K);
            if (seen[perm[j]])
                return mnas__tape_error(tp, MNAS_E_INVALID, "%s: perm repeats %lld (at position %lld): not a permutation",
                                        fn, (long long)perm[j], (long long)j);
            seen[perm[j]] = 1;
        }
    }
    mnas_tensor **zs = mnas__tape_scratch(tp, fn, (size_t)K * sizeof *zs);
    mnas_tensor **ds = recon ? mnas__tape_scratch(tp, fn, (size_t)K * sizeof *ds) : NULL;
    if (!zs || (recon && !ds)) return mnas_tape_status(tp);

    const int64_t H = e->z_dim, D = e->f_dim;
#define FAIL() return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID
    /* F_j = ReLU(f.w [x, y]_j + f.b) for the pairs in feeding order. The rows
     * are permuted before any arithmetic, so feeding pre-permuted data with
     * perm NULL gives bit-identical results. */
    mnas_tensor *xy2[2] = { as_rows(tp, x), as_rows(tp, y) };
    mnas_tensor *xy = mnas_concat(tp, 2, xy2, 1);
    if (xy && perm) xy = mnas_gather_rows(tp, xy, (size_t)K, perm);
    if (xy && e->in_scale != 1) xy = mnas_scale(tp, xy, e->in_scale);
    mnas_tensor *F = mnas_relu(tp, mnas_linear(tp, xy, w[P_FW], w[P_FB]));
    if (!F) FAIL();

    /* Encoder: z_j = RNN_enc(F_j, z_{j-1}), z_0 = 0; input projections of
     * all steps in one product. */
    mnas_tensor *GI = mnas_linear(tp, F, w[P_EWI], w[P_EBI]);
    if (!GI || !run_rnn(tp, e->kind, H, K, GI, w[P_EWH], w[P_EBH], 1, zs)) FAIL();
    mnas_tensor *Z = concat_rows(tp, (size_t)K, zs); /* [K, z_dim] */
    mnas_tensor *zm = K == 1 ? Z : mnas_mean_axis(tp, Z, 0, 1);
    if (!zm) FAIL();

    mnas_tensor *L = NULL;
    if (recon) {
        /* Decoder: d_j = RNN_dec(z_j, d_{j+1}), d_{K+1} = 0, j = K..1;
         * L_r = sum_j ||d_j - F_j||^2. */
        mnas_tensor *DI = mnas_linear(tp, Z, w[P_DWI], w[P_DBI]);
        if (!DI || !run_rnn(tp, e->kind, D, K, DI, w[P_DWH], w[P_DBH], 0, ds)) FAIL();
        mnas_tensor *Dm = concat_rows(tp, (size_t)K, ds); /* [K, f_dim], row j = d_j */
        L = mnas_sum(tp, mnas_square(tp, mnas_sub(tp, Dm, F)));
        if (!L) FAIL();
    }
#undef FAIL
    *z = zm;
    if (recon) *recon = L;
    return MNAS_OK;
}
