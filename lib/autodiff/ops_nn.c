/* Neural-network ops: softmax family, losses, batch normalisation (alone
 * or fused with the ReLU after it) and, at the end, their backward rules.
 * The losses are compositions of recorded ops; batch-norm is one fused op
 * whose rule emits ops with rules of their own, so every order works. */
#include <math.h>
#include <string.h>

#include "autodiff/autodiff_internal.h"

static mnas_tensor *softmax_like(mnas_tape *tp, const char *fn, int op, mnas_tensor *x)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim < 1) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x is a scalar (needs a last axis)", fn);
        return NULL;
    }
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, x->shape);
    if (!out) return NULL;
    int64_t cols = x->shape[x->ndim - 1];
    if (op == OP_SOFTMAX)
        mnas__k_softmax(x->size / cols, cols, x->data, out->data);
    else
        mnas__k_log_softmax(x->size / cols, cols, x->data, out->data);
    return mnas__finish(tp, fn, op, out, 1, &x, NULL);
}

mnas_tensor *mnas_softmax(mnas_tape *tp, mnas_tensor *x) { return softmax_like(tp, "mnas_softmax", OP_SOFTMAX, x); }
mnas_tensor *mnas_log_softmax(mnas_tape *tp, mnas_tensor *x)
{
    return softmax_like(tp, "mnas_log_softmax", OP_LOG_SOFTMAX, x);
}

mnas_tensor *mnas_cross_entropy(mnas_tape *tp, mnas_tensor *logits, size_t n, const int32_t *labels)
{
    const char *fn = "mnas_cross_entropy";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "logits", logits)) return NULL;
    if (logits->ndim != 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: logits must be [N, C] (got %d-D)", fn, logits->ndim);
        return NULL;
    }
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (!labels || n != (size_t)N) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: %zu labels for %lld rows of logits", fn, labels ? n : 0,
                         (long long)N);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C) {
            mnas__tape_error(tp, MNAS_E_INVALID, "%s: label %d at row %zu is outside [0, %lld)", fn, (int)labels[i],
                             i, (long long)C);
            return NULL;
        }
    /* -1/N at each row's label: the loss is the masked sum of log-softmax. */
    mnas_tensor *pick = mnas__tape_new(tp, fn, 2, logits->shape);
    if (!pick) return NULL;
    memset(pick->data, 0, (size_t)pick->size * sizeof(mnas_real));
    for (size_t i = 0; i < n; i++) pick->data[(int64_t)i * C + labels[i]] = (mnas_real)(-1.0 / (double)N);
    return mnas_sum(tp, mnas_mask_mul(tp, mnas_log_softmax(tp, logits), pick));
}

mnas_tensor *mnas_mse(mnas_tape *tp, mnas_tensor *pred, mnas_tensor *target)
{
    const char *fn = "mnas_mse";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "pred", pred) || !mnas__input_ok(tp, fn, "target", target)) return NULL;
    if (!mnas__same_shape(pred, target)) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: pred is %s but target is %s", fn,
                         mnas__shape_str(a, sizeof a, pred->ndim, pred->shape),
                         mnas__shape_str(b, sizeof b, target->ndim, target->shape));
        return NULL;
    }
    return mnas_mean(tp, mnas_square(tp, mnas_sub(tp, pred, target)));
}

/* Batch-norm is one recorded op: a fused forward, and a backward rule that
 * is a fused kernel when the backward pass is not recorded and the same
 * mathematics written with differentiable ops when it is (create_graph),
 * so every derivative order works. */
static void bn_layout(const mnas_tensor *x, int64_t *outer, int64_t *C, int64_t *inner, int64_t s[4])
{
    *outer = x->shape[0];
    *C = x->shape[1];
    *inner = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    s[0] = 1;
    s[1] = *C;
    s[2] = 1;
    s[3] = 1;
}

/* batch_norm, or relu(batch_norm) as one op (relu set: op OP_BN_RELU). */
static mnas_tensor *bn_op(mnas_tape *tp, const char *fn, int relu, mnas_tensor *x, mnas_tensor *gamma, mnas_tensor *beta,
                          double eps)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (gamma && !mnas__input_ok(tp, fn, "gamma", gamma)) return NULL;
    if (beta && !mnas__input_ok(tp, fn, "beta", beta)) return NULL;
    if (!(eps > 0) || !isfinite(eps)) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: eps %g must be positive and finite", fn, eps);
        return NULL;
    }
    if (x->ndim != 2 && x->ndim != 4) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must be [N, F] or [N, C, H, W] (got %d-D)", fn, x->ndim);
        return NULL;
    }
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    if ((gamma && gamma->size != C) || (beta && beta->size != C)) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: gamma and beta need %lld elements (got %lld and %lld)", fn,
                         (long long)C, (long long)(gamma ? gamma->size : C), (long long)(beta ? beta->size : C));
        return NULL;
    }
    mnas_tensor *out = mnas__tape_new_like(tp, fn, x);
    mnas_real *stats = out ? mnas__tape_scratch(tp, fn, 2 * (size_t)C * sizeof(mnas_real)) : NULL;
    if (!stats) return NULL;
    mnas__k_bn_forward(outer, C, inner, x->data, gamma ? gamma->data : NULL, beta ? beta->data : NULL, eps, relu,
                       out->data, stats, stats + C);
    mnas_tensor *ins[3] = { x, gamma, beta };
    mnas_node *node;
    if (!mnas__finish(tp, fn, relu ? OP_BN_RELU : OP_BATCH_NORM, out, 3, ins, &node)) return NULL;
    if (node) {
        node->p = eps;
        node->state = stats;
    }
    return out;
}

mnas_tensor *mnas_batch_norm(mnas_tape *tp, mnas_tensor *x, mnas_tensor *gamma, mnas_tensor *beta, double eps)
{
    return bn_op(tp, "mnas_batch_norm", 0, x, gamma, beta, eps);
}

mnas_tensor *mnas__batch_norm_relu(mnas_tape *tp, mnas_tensor *x, mnas_tensor *gamma, mnas_tensor *beta, double eps)
{
    return bn_op(tp, "mnas_batch_norm (with ReLU)", 1, x, gamma, beta, eps);
}

/* ---- batch-norm's backward outputs as ops --------------------------------
 * dx = gamma r (g - mean(g) - xh mean(g xh)) and dgamma = sum(g xh), each a
 * fused op whose own backward rule is a fused kernel (second derivatives)
 * or, when that is recorded too, the derivative of their composite form. */

/* The recorded backward's outputs, as ops: dx (OP_BN_DX, if want_x), dgamma
 * [C] (OP_BN_DGAMMA, if want_g) and dbeta [1, C, 1, 1] (OP_SUM_TO of g, if
 * want_b), from one kernel call: the channel sums are read once for all
 * three. dbeta is mnas_sum_to's own result when each channel has planes of
 * more than one value, because the kernel then sums it in mnas_sum_to's
 * order (kernels.h); otherwise mnas_sum_to computes it. st: the forward's
 * per-channel mean and rstd of x (the same kernel would recompute the same
 * bits). */
static mnas_status bn_backward_ops(mnas_tape *tp, mnas_tensor *x, mnas_tensor *g, mnas_tensor *gamma, double eps,
                                   mnas_real *st, int want_x, int want_g, int want_b, mnas_tensor **dx,
                                   mnas_tensor **dg, mnas_tensor **db)
{
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    int64_t c1[1] = { C };
    const int fused_b = want_b && inner > 1;
    *dx = *dg = *db = NULL;
    if (want_x && !(*dx = mnas__tape_new_like(tp, "batch-norm dx", x))) return tp->status;
    if (want_g && !(*dg = mnas__tape_new(tp, "batch-norm dgamma", 1, c1))) return tp->status;
    if (fused_b && !(*db = mnas__tape_new(tp, "mnas_sum_to", 4, s))) return tp->status;
    if (*dx || *dg || *db)
        mnas__k_bn_backward(outer, C, inner, x->data, g->data, NULL, gamma ? gamma->data : NULL, st, st + C,
                            *dx ? (*dx)->data : NULL, *dg ? (*dg)->data : NULL, *db ? (*db)->data : NULL);
    mnas_node *node;
    mnas_tensor *ins[3] = { x, g, gamma };
    if (*dx) {
        if (!mnas__finish(tp, "batch-norm dx", OP_BN_DX, *dx, 3, ins, &node)) return tp->status;
        if (node) {
            node->p = eps;
            node->state = st;
        }
    }
    if (*dg) {
        if (!mnas__finish(tp, "batch-norm dgamma", OP_BN_DGAMMA, *dg, 2, ins, &node)) return tp->status;
        if (node) {
            node->p = eps;
            node->state = st;
        }
    }
    if (fused_b && !mnas__finish(tp, "mnas_sum_to", OP_SUM_TO, *db, 1, &g, NULL)) return tp->status;
    if (want_b && !fused_b && !(*db = mnas_sum_to(tp, g, x->ndim, s))) return tp->status;
    return MNAS_OK;
}

/* xh = (x - mean) / sqrt(var + eps) written with differentiable ops. */
static mnas_tensor *xhat_composite(mnas_tape *tp, mnas_tensor *x, double eps, mnas_tensor **rstd_out)
{
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    int nd = x->ndim;
    double inv_m = 1.0 / (double)(outer * inner);
    mnas_tensor *mu = mnas_scale(tp, mnas_sum_to(tp, x, nd, s), inv_m);
    mnas_tensor *xc = mnas_sub(tp, x, mu);
    mnas_tensor *var = mnas_scale(tp, mnas_sum_to(tp, mnas_square(tp, xc), nd, s), inv_m);
    mnas_tensor *rstd = mnas_pow(tp, mnas_add_scalar(tp, var, eps), -0.5);
    if (rstd_out) *rstd_out = rstd;
    return mnas_mul(tp, xc, rstd);
}

/* ---- backward rules ------------------------------------------------------ */

/* A recorded backward rule from the op's composite form, in two halves.
 *
 * composite_inputs gives each input the pass wants a fresh identity node (a
 * same-shape view); the caller builds the composite from those, and
 * vjp_via_composite differentiates sum(composite * u) with respect to them.
 * The views make every result a partial derivative: the incoming gradient g
 * of a backward op usually depends on x itself (anything nonlinear after
 * batch-norm), and differentiating with respect to x directly would follow
 * that dependence too and count the path through g twice — once here and
 * once when g's own gradient flows back to x. The views come after
 * everything else on the tape, so the inner pass walks only the composite. */
static int composite_inputs(mnas_tape *tp, mnas_node *n, mnas_backward_ctx *bc, mnas_tensor **view)
{
    for (int i = 0; i < n->nin; i++) {
        mnas_tensor *x = n->in[i];
        view[i] = x;
        if (x && mnas__bw_wants(bc, n, i) && !(view[i] = mnas_reshape(tp, x, x->ndim, x->shape))) return 0;
    }
    return 1;
}

static mnas_status vjp_via_composite(mnas_tape *tp, mnas_node *n, mnas_tensor *u, mnas_backward_ctx *bc,
                                     mnas_tensor *const *view, mnas_tensor *composite)
{
    if (!composite) return tp->status ? tp->status : MNAS_E_INTERNAL;
    mnas_tensor *sum = mnas_sum(tp, mnas_mul(tp, composite, u));
    if (!sum) return tp->status;
    mnas_tensor *ins[3], *gr[3];
    int which[3];
    size_t k = 0;
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] && mnas__bw_wants(bc, n, i)) {
            ins[k] = view[i];
            which[k++] = i;
        }
    mnas_status st = mnas_grad(tp, sum, k, ins, gr, 1);
    for (size_t i = 0; st == MNAS_OK && i < k; i++) st = mnas__bw_accumulate(tp, bc, n, which[i], gr[i]);
    return st;
}

static mnas_status bnb_vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *u, mnas_backward_ctx *bc)
{
    const char *fn = "batch-norm dx backward";
    mnas_tensor *x = n->in[0], *g = n->in[1], *gamma = n->in[2];
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    if (mnas__bw_create_graph(bc)) {
        mnas_tensor *v[3];
        if (!composite_inputs(tp, n, bc, v)) return tp->status;
        mnas_tensor *rstd;
        mnas_tensor *xh = xhat_composite(tp, v[0], n->p, &rstd);
        int nd = x->ndim;
        double inv_m = 1.0 / (double)(outer * inner);
        mnas_tensor *gh = gamma ? mnas_mul(tp, v[1], mnas_reshape(tp, v[2], nd, s)) : v[1];
        mnas_tensor *a = mnas_scale(tp, mnas_sum_to(tp, gh, nd, s), inv_m);
        mnas_tensor *b = mnas_scale(tp, mnas_sum_to(tp, mnas_mul(tp, gh, xh), nd, s), inv_m);
        return vjp_via_composite(tp, n, u, bc, v,
                                 mnas_mul(tp, mnas_sub(tp, mnas_sub(tp, gh, a), mnas_mul(tp, xh, b)), rstd));
    }
    const mnas_real *st = n->state;
    int wx = mnas__bw_wants(bc, n, 0), wg = mnas__bw_wants(bc, n, 1), wgam = gamma && mnas__bw_wants(bc, n, 2);
    mnas_tensor *ddx = wx ? mnas__tape_new_like(tp, fn, x) : NULL, *ddg = wg ? mnas__tape_new_like(tp, fn, g) : NULL;
    mnas_tensor *dgam = wgam ? mnas__tape_new_like(tp, fn, gamma) : NULL;
    if ((wx && !ddx) || (wg && !ddg) || (wgam && !dgam)) return tp->status;
    mnas__k_bn_double_backward(outer, C, inner, x->data, g->data, gamma ? gamma->data : NULL, st, st + C, u->data, NULL,
                               ddx ? ddx->data : NULL, ddg ? ddg->data : NULL, dgam ? dgam->data : NULL);
    mnas_status r = MNAS_OK;
    if (ddx) r = mnas__bw_accumulate_new(tp, bc, n, 0, ddx);
    if (r == MNAS_OK && ddg) r = mnas__bw_accumulate_new(tp, bc, n, 1, ddg);
    if (r == MNAS_OK && dgam) r = mnas__bw_accumulate_new(tp, bc, n, 2, dgam);
    return r;
}

static mnas_status bng_vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *v, mnas_backward_ctx *bc)
{
    const char *fn = "batch-norm dgamma backward";
    mnas_tensor *x = n->in[0], *g = n->in[1];
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    if (mnas__bw_create_graph(bc)) {
        mnas_tensor *in[3];
        if (!composite_inputs(tp, n, bc, in)) return tp->status;
        mnas_tensor *xh = xhat_composite(tp, in[0], n->p, NULL);
        int64_t c1[1] = { C };
        return vjp_via_composite(tp, n, v, bc, in,
                                 mnas_reshape(tp, mnas_sum_to(tp, mnas_mul(tp, in[1], xh), x->ndim, s), 1, c1));
    }
    const mnas_real *st = n->state;
    int wx = mnas__bw_wants(bc, n, 0), wg = mnas__bw_wants(bc, n, 1);
    mnas_tensor *ddx = wx ? mnas__tape_new_like(tp, fn, x) : NULL, *ddg = wg ? mnas__tape_new_like(tp, fn, g) : NULL;
    if ((wx && !ddx) || (wg && !ddg)) return tp->status;
    mnas__k_bn_double_backward(outer, C, inner, x->data, g->data, NULL, st, st + C, NULL, v->data,
                               ddx ? ddx->data : NULL, ddg ? ddg->data : NULL, NULL);
    mnas_status r = MNAS_OK;
    if (ddx) r = mnas__bw_accumulate_new(tp, bc, n, 0, ddx);
    if (r == MNAS_OK && ddg) r = mnas__bw_accumulate_new(tp, bc, n, 1, ddg);
    return r;
}

/* batch_norm's rule; for the fused batch-norm + ReLU (relu set) the
 * incoming gradient first goes through the ReLU: g * step(y), fused into
 * the kernel when not recorded, a recorded mask_mul (whose rule is itself)
 * followed by batch-norm's recorded outputs when it is. */
static mnas_status bn_vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc, int relu)
{
    const char *fn = "mnas_batch_norm backward";
    mnas_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    int want_x = mnas__bw_wants(bc, n, 0), want_g = gamma && mnas__bw_wants(bc, n, 1),
        want_b = beta && mnas__bw_wants(bc, n, 2);
    int64_t outer, C, inner, s[4];
    bn_layout(x, &outer, &C, &inner, s);
    mnas_tensor *dx = NULL, *dg = NULL, *db = NULL;
    if (!mnas__bw_create_graph(bc)) {
        const mnas_real *stats = n->state;
        if (want_x && !(dx = mnas__tape_new_like(tp, fn, x))) return tp->status;
        if (want_g && !(dg = mnas__tape_new_like(tp, fn, gamma))) return tp->status;
        if (want_b && !(db = mnas__tape_new_like(tp, fn, beta))) return tp->status;
        mnas__k_bn_backward(outer, C, inner, x->data, g->data, relu ? n->out->data : NULL, gamma ? gamma->data : NULL,
                            stats, stats + C, dx ? dx->data : NULL, dg ? dg->data : NULL, db ? db->data : NULL);
    } else {
        if (relu && !(g = mnas__relu_grad(tp, g, n->out))) return tp->status;
        /* Recorded: the backward outputs are themselves fused ops with
         * their own rules, so second derivatives stay cheap. */
        mnas_status r = bn_backward_ops(tp, x, g, gamma, n->p, n->state, want_x, want_g, want_b, &dx, &dg, &db);
        if (r != MNAS_OK) return r;
        if (want_g && !(dg = mnas_reshape(tp, dg, gamma->ndim, gamma->shape))) return tp->status;
        if (want_b && !(db = mnas_reshape(tp, db, beta->ndim, beta->shape))) return tp->status;
    }
    /* Unrecorded, all three are new tensors; recorded, the flag is unused. */
    mnas_status st = MNAS_OK;
    if (dx) st = mnas__bw_accumulate_new(tp, bc, n, 0, dx);
    if (st == MNAS_OK && dg) st = mnas__bw_accumulate_new(tp, bc, n, 1, dg);
    if (st == MNAS_OK && db) st = mnas__bw_accumulate_new(tp, bc, n, 2, db);
    return st;
}

mnas_status mnas__vjp_nn(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *y = n->out;
    switch ((mnas_opcode)n->op) {
    case OP_SOFTMAX: { /* y * (g - sum(g*y, last)) */
        int64_t s[4];
        memcpy(s, y->shape, sizeof s);
        s[y->ndim - 1] = 1;
        mnas_tensor *dot = mnas_sum_to(tp, mnas_mul(tp, g, y), y->ndim, s);
        MNAS__ACC(0, mnas_mul(tp, y, mnas_sub(tp, g, dot)));
        return MNAS_OK;
    }
    case OP_LOG_SOFTMAX: { /* g - exp(y) * sum(g, last) */
        int64_t s[4];
        memcpy(s, y->shape, sizeof s);
        s[y->ndim - 1] = 1;
        mnas_tensor *gs = mnas_sum_to(tp, g, y->ndim, s);
        MNAS__ACC(0, mnas_sub(tp, g, mnas_mul(tp, mnas_exp(tp, y), gs)));
        return MNAS_OK;
    }
    case OP_BATCH_NORM: return bn_vjp(tp, n, g, bc, 0);
    case OP_BN_RELU: return bn_vjp(tp, n, g, bc, 1);
    case OP_BN_DX: return bnb_vjp(tp, n, g, bc);
    case OP_BN_DGAMMA: return bng_vjp(tp, n, g, bc);
    default: break;
    }
    return mnas__bw_no_rule(tp, n);
}
