/* The meta-weight modulator of M-NAS ("Transferable Knowledge Modulation",
 * Eq. (7)): tau_i = sigmoid(FC(z_i)) and w_i = tau_i * w for every
 * meta-weight tensor of the one-shot model.
 *
 * Element mode: one tau per element of every target (total = sum of the
 * targets' sizes). Channel mode: one tau per output row (first axis) of each
 * target, broadcast over the other axes (total = sum of first extents; a
 * scalar target counts as one row).
 *
 * Parameter order (prefix + name, shape, initialiser):
 *   0 fc.w  [total, z_dim]  fan-in z_dim (U[-1/sqrt(z_dim), 1/sqrt(z_dim)])
 *   1 fc.b  [total]         constant bias_init
 * sigmoid(bias_init) is the initial scale (3 gives 0.953).
 *
 * Forms of the squashing function (mnas_modulator_set_form; issue 17):
 * sigmoid (the paper's), 2 sigmoid(u) and 1 + tanh(u); the last two reach
 * (0, 2), so a task can scale a meta-weight up as well as down.
 *
 * FiLM (MNAS_MODULATOR_FILM): w_i = gamma_i * w + beta_i, gamma = sigmoid(u)
 * as the paper's tau, and a shift beta on the one-dimensional targets only
 * (biases, batch-norm scales and shifts), one per element. On a layer
 * y = W x + b that is FiLM of the layer's output, gamma (W x + b) + beta =
 * (gamma W) x + (gamma b + beta), with a factor of its own for b. The FC
 * then has total + nbeta outputs, u = [u_gamma | u_beta], and
 * beta = k (u_beta - bias_init) with k = sigmoid'(bias_init): beta starts
 * near 0 (exactly 0 where the FC weight's row is 0) and moves as fast as
 * gamma does at the start. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mnas/meta.h>

#include "autodiff/opkit.h"
#include "kernels/kernels.h"
#include "meta/meta_internal.h"
#include "nn/nn_internal.h"

#define MOD_MAX_DIM 65536
#define MOD_MAX_TARGETS 65536
#define MOD_MAX_TOTAL ((int64_t)1 << 31)

enum { M_W, M_B, MOD_NP };

typedef struct {
    int ndim;
    int64_t shape[MNAS_MAX_DIMS];
    int64_t off, len;   /* this target's slice of tau */
    int64_t boff, blen; /* its slice of beta (FiLM; blen 0 for targets of 2+ dims) */
} mod_target;

struct mnas_modulator {
    mnas_ctx *ctx;
    int64_t z_dim, total;
    int64_t nbeta, nout; /* beta values of FiLM; FC outputs (total, + nbeta for FiLM) */
    size_t n;
    mnas_modulation mode;
    mnas_modulator_form form;
    double bias_init;
    mod_target *t;
};

static const char *const mod_names[MOD_NP] = { "fc.w", "fc.b" };

mnas_modulator *mnas_modulator_create(mnas_ctx *ctx, int64_t z_dim, size_t n, mnas_tensor *const *targets,
                                      mnas_modulation mode, double bias_init)
{
    const char *fn = "mnas_modulator_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (z_dim < 1 || z_dim > MOD_MAX_DIM) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: z_dim = %lld is outside 1..%d", fn, (long long)z_dim, MOD_MAX_DIM);
        return NULL;
    }
    if (n < 1 || n > MOD_MAX_TARGETS || !targets) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: need 1..%d target tensors (got %zu%s)", fn, MOD_MAX_TARGETS, n,
                    targets ? "" : ", array NULL");
        return NULL;
    }
    if (mode != MNAS_MODULATE_ELEMENT && mode != MNAS_MODULATE_CHANNEL) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: unknown modulation mode %d", fn, (int)mode);
        return NULL;
    }
    if (!isfinite(bias_init)) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: bias_init is not finite", fn);
        return NULL;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const mnas_tensor *t = targets[i];
        if (!t || mnas__tensor_check(t, fn, "a target") != MNAS_OK) {
            if (!t || t->magic != MNAS_TENSOR_MAGIC)
                mnas__error(ctx, MNAS_E_INVALID, "%s: target %zu is NULL or not a tensor", fn, i);
            return NULL;
        }
        if (t->ctx != ctx) {
            mnas__error(ctx, MNAS_E_MISMATCH, "%s: target %zu comes from another context", fn, i);
            return NULL;
        }
        total += mode == MNAS_MODULATE_ELEMENT ? t->size : (t->ndim > 0 ? t->shape[0] : 1);
        if (total > MOD_MAX_TOTAL) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: more than 2^31 modulation factors", fn);
            return NULL;
        }
    }
    mnas_modulator *m = mnas__calloc(ctx, 1, sizeof *m);
    mod_target *ts = m ? mnas__calloc(ctx, n, sizeof *ts) : NULL;
    if (!ts) {
        if (m) mnas__free(ctx, m);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
        return NULL;
    }
    int64_t off = 0, boff = 0;
    for (size_t i = 0; i < n; i++) {
        const mnas_tensor *t = targets[i];
        ts[i].ndim = t->ndim;
        memcpy(ts[i].shape, t->shape, sizeof ts[i].shape);
        ts[i].off = off;
        ts[i].len = mode == MNAS_MODULATE_ELEMENT ? t->size : (t->ndim > 0 ? t->shape[0] : 1);
        off += ts[i].len;
        ts[i].boff = boff;
        ts[i].blen = t->ndim <= 1 ? t->size : 0;
        boff += ts[i].blen;
    }
    m->ctx = ctx;
    m->z_dim = z_dim;
    m->total = total;
    m->nbeta = boff;
    m->nout = total;
    m->n = n;
    m->mode = mode;
    m->bias_init = bias_init;
    m->t = ts;
    return m;
}

void mnas_modulator_free(mnas_modulator *m)
{
    if (!m) return;
    mnas__free(m->ctx, m->t);
    mnas__free(m->ctx, m);
}

mnas_status mnas_modulator_set_form(mnas_modulator *m, mnas_modulator_form form)
{
    if (!m) return MNAS_E_INVALID;
    if (form != MNAS_MODULATOR_SIGMOID && form != MNAS_MODULATOR_TWO_SIGMOID && form != MNAS_MODULATOR_ONE_PLUS_TANH &&
        form != MNAS_MODULATOR_FILM)
        return mnas__error(m->ctx, MNAS_E_INVALID, "mnas_modulator_set_form: unknown modulator form %d", (int)form);
    if (form == MNAS_MODULATOR_FILM && m->total + m->nbeta > MOD_MAX_TOTAL)
        return mnas__error(m->ctx, MNAS_E_INVALID, "mnas_modulator_set_form: FiLM needs more than 2^31 FC outputs");
    m->form = form;
    m->nout = m->total + (form == MNAS_MODULATOR_FILM ? m->nbeta : 0);
    return MNAS_OK;
}

/* FiLM's beta = k (u_beta - bias_init): k = sigmoid'(bias_init), the slope
 * of gamma = sigmoid(u_gamma) at its starting point. */
static double film_gain(const mnas_modulator *m)
{
    double s = 1.0 / (1.0 + exp(-m->bias_init));
    return s * (1.0 - s);
}

size_t mnas_modulator_num_params(const mnas_modulator *m) { return m ? MOD_NP : 0; }

int mnas_modulator_add_params(const mnas_modulator *m, mnas_params *p, const char *prefix, int group)
{
    if (!m) return -1;
    const mnas__pspec spec[MOD_NP] = {
        [M_W] = { mod_names[M_W], 2, { m->nout, m->z_dim, 1, 1 }, MNAS_INIT_FAN_IN, (double)m->z_dim },
        [M_B] = { mod_names[M_B], 1, { m->nout, 1, 1, 1 }, MNAS_INIT_CONSTANT, m->bias_init },
    };
    return mnas__params_add_module(p, m->ctx, "mnas_modulator_add_params", prefix, MOD_NP, spec, group);
}

mnas_status mnas_modulator_forward(const mnas_modulator *m, mnas_tape *tp, mnas_tensor *z, mnas_tensor *const *w,
                                   mnas_tensor *const *targets, mnas_tensor **out)
{
    const char *fn = "mnas_modulator_forward";
    if (!mnas__tape_ok(tp))
        return m ? mnas__error(m->ctx, MNAS_E_INVALID, "%s: the tape is not valid", fn) : MNAS_E_INVALID;
    if (!m) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: the modulator is NULL", fn);
    if (!out) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: out is NULL", fn);
#define FAIL() return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID
    if (!mnas__input_ok(tp, fn, "z", z)) FAIL();
    if (z->ndim != 2 || z->shape[0] != 1 || z->shape[1] != m->z_dim) {
        char a[MNAS_SHAPE_BUF];
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: z is %s, the modulator needs [1, %lld]", fn,
                                mnas__shape_str(a, sizeof a, z->ndim, z->shape), (long long)m->z_dim);
    }
    if (!w) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
    if (!mnas__input_ok(tp, fn, "the FC weight", w[M_W]) || !mnas__input_ok(tp, fn, "the FC bias", w[M_B])) FAIL();
    if (w[M_W]->ndim != 2 || w[M_W]->shape[0] != m->nout || w[M_W]->shape[1] != m->z_dim) {
        char a[MNAS_SHAPE_BUF];
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the FC weight is %s, the modulator needs [%lld, %lld]", fn,
                                mnas__shape_str(a, sizeof a, w[M_W]->ndim, w[M_W]->shape), (long long)m->nout,
                                (long long)m->z_dim);
    }
    if (w[M_B]->size != m->nout || !(w[M_B]->ndim == 1 || (w[M_B]->ndim == 2 && w[M_B]->shape[0] == 1))) {
        char a[MNAS_SHAPE_BUF];
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the FC bias is %s, the modulator needs [%lld]", fn,
                                mnas__shape_str(a, sizeof a, w[M_B]->ndim, w[M_B]->shape), (long long)m->nout);
    }
    mnas_tensor *u = mnas_linear(tp, z, w[M_W], w[M_B]); /* [1, total] */
    if (!u) FAIL();
#undef FAIL
    return mnas__modulator_apply(m, tp, u, targets, out);
}

/* The targets must be the ones the modulator was made for. */
static int targets_ok(const mnas_modulator *m, mnas_tape *tp, const char *fn, mnas_tensor *const *targets)
{
    if (!targets) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: targets are NULL", fn);
        return 0;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (!mnas__input_ok(tp, fn, "a target", targets[i])) return 0;
        const mnas_tensor *t = targets[i];
        int same = t->ndim == m->t[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == m->t[i].shape[d];
        if (!same) {
            char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: target %zu is %s, the modulator was made for %s", fn, i,
                             mnas__shape_str(a, sizeof a, t->ndim, t->shape),
                             mnas__shape_str(b, sizeof b, m->t[i].ndim, m->t[i].shape));
            return 0;
        }
    }
    return 1;
}

mnas_status mnas__modulator_apply(const mnas_modulator *m, mnas_tape *tp, mnas_tensor *u, mnas_tensor *const *targets,
                                  mnas_tensor **out)
{
    const char *fn = "mnas_modulator_forward";
#define FAIL() return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID
    if (!u || u->size != m->nout) return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: u does not have %lld values", fn,
                                                         (long long)m->nout);
    if (!targets_ok(m, tp, fn, targets)) FAIL();
    mnas_tensor **res = mnas__tape_scratch(tp, fn, m->n * sizeof *res);
    if (!res) FAIL();

    mnas_tensor *tau, *beta = NULL, *ug = u;
    int film = m->form == MNAS_MODULATOR_FILM && m->nbeta > 0;
    if (film) {
        /* u = [u_gamma | u_beta]; beta = k (u_beta - bias_init) */
        if (u->ndim != 2) u = mnas_reshape(tp, u, 2, (int64_t[]){ 1, m->nout });
        ug = mnas_slice(tp, u, 1, 0, m->total);
        beta = mnas_scale(tp, mnas_add_scalar(tp, mnas_slice(tp, u, 1, m->total, m->nbeta), -m->bias_init),
                          film_gain(m));
        if (!beta) FAIL();
    }
    switch (m->form) {
    case MNAS_MODULATOR_TWO_SIGMOID: tau = mnas_scale(tp, mnas_sigmoid(tp, ug), 2.0); break;
    case MNAS_MODULATOR_ONE_PLUS_TANH: tau = mnas_add_scalar(tp, mnas_tanh(tp, ug), 1.0); break;
    default: tau = mnas_sigmoid(tp, ug); break; /* sigmoid, FiLM's gamma */
    }
    if (!tau) FAIL();
    for (size_t i = 0; i < m->n; i++) {
        const mod_target *t = &m->t[i];
        mnas_tensor *ti = t->len == m->total ? tau : mnas_slice(tp, tau, 1, t->off, t->len);
        int64_t s[MNAS_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++)
            s[d] = m->mode == MNAS_MODULATE_ELEMENT || d == 0 ? t->shape[d] : 1;
        res[i] = mnas_mul(tp, mnas_reshape(tp, ti, t->ndim, s), targets[i]);
        if (film && t->blen > 0) {
            mnas_tensor *bi = t->blen == m->nbeta ? beta : mnas_slice(tp, beta, 1, t->boff, t->blen);
            res[i] = mnas_add(tp, res[i], mnas_reshape(tp, bi, t->ndim, t->shape));
        }
        if (!res[i]) FAIL();
    }
#undef FAIL
    memcpy(out, res, m->n * sizeof *out);
    return MNAS_OK;
}

/* ---- the learner's batched training path ---------------------------------- */

/* One target: its slice of tau = f(u) and of dL/du, as rows x inner
 * (element mode: inner 1; channel mode: a tau per first-axis row). dtau is
 * f'(u) for the forms other than the sigmoid (whose f' = tau (1 - tau) the
 * kernel forms itself), NULL for the sigmoid. */
typedef struct {
    const mnas_real *tau, *dtau;
    mnas_real *u_grad;
    int64_t rows, inner;
    mnas_real *ub_grad; /* FiLM: the target's slice of dL/du_beta (rows values), else NULL */
    double gain;        /* FiLM: dbeta/du_beta */
} row_state;

static mnas_status row_vjp(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc, void *state)
{
    const char *fn = "mnas_grad";
    const row_state *s = state;
    /* The inner loop's passes, which ask for the modulated weights, stop
     * here; the meta-gradient asks for the meta-weights and gets dL/du too. */
    if (!mnas__bw_wants(bc, node, 0)) return MNAS_OK;
    if (mnas__bw_create_graph(bc))
        return mnas__tape_error(tp, MNAS_E_UNSUPPORTED, "the batched modulator has first-order gradients only");
    const mnas_tensor *w = mnas__op_input(node, 0);
    const mnas_real *tau = s->tau, *gd = g->data, *wd = w->data;
    mnas_tensor *dw = mnas__tape_new_like(tp, fn, w);
    if (!dw) return mnas_tape_status(tp);
    if (s->dtau) {
        /* dL/du = (sum over a row of g w) f'(u), dL/dw = g tau */
        for (int64_t r = 0; r < s->rows; r++) {
            const mnas_real *gr = gd + r * s->inner;
            s->u_grad[r] = (mnas_real)mnas__k_dot(s->inner, gr, wd + r * s->inner) * s->dtau[r];
            mnas__k_unary(K_SCALE, s->inner, gr, dw->data + r * s->inner, (double)tau[r]);
        }
    } else if (s->inner == 1) {
        mnas__k_modulate_backward(s->rows, gd, wd, tau, s->u_grad, dw->data);
    } else {
        /* dL/du = (sum over a row of g w) tau (1 - tau), dL/dw = g tau */
        for (int64_t r = 0; r < s->rows; r++) {
            const mnas_real *gr = gd + r * s->inner;
            s->u_grad[r] = (mnas_real)mnas__k_dot(s->inner, gr, wd + r * s->inner) * (tau[r] * (1 - tau[r]));
            mnas__k_unary(K_SCALE, s->inner, gr, dw->data + r * s->inner, (double)tau[r]);
        }
    }
    /* FiLM: y = gamma w + beta, dL/du_beta = k g (one-dimensional targets) */
    if (s->ub_grad) mnas__k_unary(K_SCALE, s->rows, gd, s->ub_grad, s->gain);
    return mnas__bw_accumulate(tp, bc, node, 0, dw);
}

static const mnas__custom_op row_op = { "modulate_row", row_vjp };

mnas_status mnas__modulator_apply_row(const mnas_modulator *m, mnas_tape *tp, const mnas_real *u, mnas_real *u_grad,
                                      mnas_tensor *const *targets, mnas_tensor **out)
{
    const char *fn = "mnas_modulator_forward";
#define FAIL() return mnas_tape_status(tp) != MNAS_OK ? mnas_tape_status(tp) : MNAS_E_INVALID
    if (!targets_ok(m, tp, fn, targets)) FAIL();
    mnas_tensor **res = mnas__tape_scratch(tp, fn, m->n * sizeof *res);
    mnas_real *tau = mnas__tape_scratch(tp, fn, (size_t)m->total * sizeof *tau);
    row_state *st = mnas__tape_scratch(tp, fn, m->n * sizeof *st);
    mnas_real *dtau = NULL, *beta = NULL;
    int sig = m->form == MNAS_MODULATOR_SIGMOID || m->form == MNAS_MODULATOR_FILM; /* FiLM's gamma is the sigmoid */
    int film = m->form == MNAS_MODULATOR_FILM && m->nbeta > 0;
    if (!sig) dtau = mnas__tape_scratch(tp, fn, (size_t)m->total * sizeof *dtau);
    if (film) beta = mnas__tape_scratch(tp, fn, (size_t)m->nbeta * sizeof *beta);
    if (!res || !tau || !st || (!sig && !dtau) || (film && !beta)) FAIL();
    /* A target no gradient reaches keeps zeros in its slice. */
    memset(u_grad, 0, (size_t)m->nout * sizeof *u_grad);
    /* FiLM: beta = k (u_beta - bias_init), rounded as mnas__modulator_apply's
     * add_scalar and scale round it */
    if (film) {
        mnas__k_unary(K_ADDC, m->nbeta, u + m->total, beta, -m->bias_init);
        mnas__k_unary(K_SCALE, m->nbeta, beta, beta, film_gain(m));
    }
    /* tau = f(u) rounded as mnas__modulator_apply's ops round it; f'(u) from
     * the unscaled sigmoid or tanh */
    if (m->form == MNAS_MODULATOR_ONE_PLUS_TANH) {
        mnas__k_unary(K_TANH, m->total, u, dtau, 0);
        for (int64_t i = 0; i < m->total; i++) {
            mnas_real t = dtau[i];
            tau[i] = t + (mnas_real)1; /* as K_ADDC */
            dtau[i] = 1 - t * t;
        }
    } else {
        mnas__k_unary(K_SIGMOID, m->total, u, tau, 0);
        if (m->form == MNAS_MODULATOR_TWO_SIGMOID)
            for (int64_t i = 0; i < m->total; i++) {
                mnas_real sg = tau[i];
                dtau[i] = 2 * sg * (1 - sg);
                tau[i] = 2 * sg;
            }
    }
    for (size_t i = 0; i < m->n; i++) {
        const mnas_tensor *w = targets[i];
        row_state *si = &st[i];
        si->tau = tau + m->t[i].off;
        si->dtau = dtau ? dtau + m->t[i].off : NULL;
        si->u_grad = u_grad + m->t[i].off;
        si->rows = m->t[i].len;
        si->inner = w->size / si->rows;
        si->ub_grad = film && m->t[i].blen > 0 ? u_grad + m->total + m->t[i].boff : NULL;
        si->gain = film_gain(m);
        const mnas_real *ti = tau + m->t[i].off;
        mnas_tensor *y = mnas__tape_new(tp, fn, w->ndim, w->shape);
        if (!y) FAIL();
        /* tau * w, as mnas_mul of the reshaped slice of tau computes it */
        if (si->inner == 1)
            mnas__k_binary_flat(K_MUL, si->rows, y->data, ti, w->data);
        else
            for (int64_t r = 0; r < si->rows; r++)
                mnas__k_unary(K_SCALE, si->inner, w->data + r * si->inner, y->data + r * si->inner, (double)ti[r]);
        /* FiLM's shift, as mnas_add adds it (a one-dimensional target has
         * one gamma and one beta per element: rows = blen) */
        if (si->ub_grad)
            for (int64_t r = 0; r < si->rows; r++) y->data[r] += beta[m->t[i].boff + r];
        if (!mnas__record_op(tp, fn, &row_op, si, y, 1, &targets[i])) FAIL();
        res[i] = y;
    }
#undef FAIL
    memcpy(out, res, m->n * sizeof *out);
    return MNAS_OK;
}

/* ---- the FC for a whole meta-batch (the learner's training path) ---------- */

void mnas__modulator_fc_shape(const mnas_modulator *m, int64_t *total, int64_t *z_dim)
{
    *total = m->nout; /* the FC's outputs: total, + nbeta for FiLM */
    *z_dim = m->z_dim;
}

/* The three products are cut into pieces: U and dZ by columns, the FC's
 * gradient by rows of W. Every element is one product call's, so the bits do
 * not depend on which worker runs which piece. */
enum { MOD_PIECES = 8, MOD_DZ_COLS = 16 };

typedef struct {
    const mnas_modulator *m;
    size_t n;
    const mnas_real *w, *b; /* fc.w [total, z_dim], fc.b [total] */
    const mnas_real *in;    /* Z (forward), dU (backward, gradient) */
    const mnas_real *z;     /* Z (gradient) */
    mnas_real *out;         /* U (forward), dZ (backward) */
    mnas_real *gw, *gb;     /* the FC's gradient */
} batch_job;

static void mod_piece(int64_t total, size_t k, int64_t *lo, int64_t *len)
{
    int64_t step = (total + MOD_PIECES - 1) / MOD_PIECES;
    *lo = (int64_t)k * step < total ? (int64_t)k * step : total;
    *len = total - *lo < step ? total - *lo : step;
}

/* U = Z W^T + b, columns of piece k. */
static void batch_forward_job(void *user, size_t k, int worker)
{
    (void)worker;
    const batch_job *bj = user;
    int64_t j0, nc, T = bj->m->nout, Zd = bj->m->z_dim;
    mod_piece(T, k, &j0, &nc);
    if (nc <= 0) return;
    mnas__k_gemm(0, 1, (int64_t)bj->n, nc, Zd, 1, bj->in, Zd, bj->w + j0 * Zd, Zd, 0, bj->out + j0, T);
    for (size_t j = 0; j < bj->n; j++) mnas__k_add_scaled(nc, 1, bj->b + j0, bj->out + j * (size_t)T + j0);
}

/* dZ = dU W, columns 16k.. of it (a piece reads all of dU and its share of
 * W's columns). */
static void batch_backward_job(void *user, size_t k, int worker)
{
    (void)worker;
    const batch_job *bj = user;
    int64_t T = bj->m->nout, Zd = bj->m->z_dim, c0 = (int64_t)k * MOD_DZ_COLS;
    int64_t nc = Zd - c0 < MOD_DZ_COLS ? Zd - c0 : MOD_DZ_COLS;
    mnas__k_gemm(0, 0, (int64_t)bj->n, nc, T, 1, bj->in, T, bj->w + c0, Zd, 0, bj->out + c0, Zd);
}

/* The FC's gradient, the mean over the n tasks, rows of piece k of W (and
 * the same entries of b: the rows of dU summed in task order). */
static void batch_grad_job(void *user, size_t k, int worker)
{
    (void)worker;
    const batch_job *bj = user;
    int64_t r0, nr, T = bj->m->nout, Zd = bj->m->z_dim;
    mod_piece(T, k, &r0, &nr);
    if (nr <= 0) return;
    size_t n = bj->n;
    mnas_real inv = (mnas_real)(1.0 / (double)n);
    mnas__k_gemm(1, 0, nr, Zd, (int64_t)n, inv, bj->in + r0, T, bj->z, Zd, 0, bj->gw + r0 * Zd, Zd);
    mnas_real *gb = bj->gb + r0;
    memcpy(gb, bj->in + r0, (size_t)nr * sizeof(mnas_real));
    for (size_t j = 1; j < n; j++) mnas__k_add_scaled(nr, 1, bj->in + j * (size_t)T + r0, gb);
    if (n > 1) mnas__k_unary(K_SCALE, nr, gb, gb, 1.0 / (double)n);
}

void mnas__modulator_batch_forward(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *w, size_t n,
                                   const mnas_real *Z, mnas_real *U)
{
    batch_job bj = { m, n, mnas_tensor_cdata(w[M_W]), mnas_tensor_cdata(w[M_B]), Z, NULL, U, NULL, NULL };
    mnas__pool_run(pool, MOD_PIECES, batch_forward_job, &bj);
}

void mnas__modulator_batch_backward(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *w, size_t n,
                                    const mnas_real *dU, mnas_real *dZ)
{
    batch_job bj = { m, n, mnas_tensor_cdata(w[M_W]), NULL, dU, NULL, dZ, NULL, NULL };
    mnas__pool_run(pool, (size_t)((m->z_dim + MOD_DZ_COLS - 1) / MOD_DZ_COLS), batch_backward_job, &bj);
}

void mnas__modulator_batch_grad(const mnas_modulator *m, mnas_pool *pool, mnas_tensor *const *g, size_t n,
                                const mnas_real *dU, const mnas_real *Z)
{
    batch_job bj = { m, n, NULL, NULL, dU, Z, NULL, mnas_tensor_data(g[M_W]), mnas_tensor_data(g[M_B]) };
    mnas__pool_run(pool, MOD_PIECES, batch_grad_job, &bj);
}
