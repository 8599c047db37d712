/* The learner's per-task objective (Algorithm 1, lines 5-10; Eq. (9) for
 * one task): the task representation, the architecture of the task (with
 * sampled edges, path dropout or straight-through discretisation), the
 * modulated meta-weights, the inner loop and the gradient of the query loss
 * with respect to every meta-parameter. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "meta/learner_internal.h"

/* The user's network, its result checked where it returns: logits
 * [n, classes] or outputs [n, out_features] for n inputs. */
static mnas_tensor *user_forward(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    mnas_tensor *y = l->user_forward(l->user_net, tp, x, w);
    if (!y) {
        if (!mnas_tape_status(tp)) mnas__tape_error(tp, MNAS_E_INVALID, "the user's network failed (forward returned NULL)");
        return NULL;
    }
    int64_t n = x->shape[0], want = l->classify ? l->o.classes : l->o.out_features;
    if (y->ndim != 2 || y->shape[0] != n || y->shape[1] != want) {
        char got[96] = "";
        size_t k = 0;
        for (int d = 0; d < y->ndim && d < 8; d++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)y->shape[d]);
        mnas__tape_error(tp, MNAS_E_SHAPE, "the user's network returned a tensor of shape [%s]; expected [%lld, %lld]",
                         got, (long long)n, (long long)want);
        return NULL;
    }
    return y;
}

mnas_tensor *mnas__learner_predict(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                            mnas_tensor *alpha)
{
    if (l->user_forward) return user_forward(l, tp, x, w);
    if (l->cnet) return mnas_convnet_forward(l->cnet, tp, x, w);
    if (l->mlp) return mnas_mlp_forward(l->mlp, tp, x, w);
    /* Ops of alpha value exactly 0 (sampled out, dropped, or a softmax
     * entry that underflowed) are skipped: the gradient such an entry would
     * receive is multiplied by 0 on its way to the parameters (dropout's
     * mask, softmax's own value) or is by definition not used (sampled
     * edges). The discrete phase's straight-through alpha is the exception:
     * its zeros pass their gradient on unchanged. */
    return mnas__supernet_forward(l->net, tp, x, w, alpha, !l->discrete, 0);
}

/* The query pass of training: as mnas__learner_predict, with the supernet's
 * cells checkpointed in MNAS_INNER_RECOMPUTE_CELLS (the meta-gradient
 * through them is first order, as through the recompute inner loop). */
static mnas_tensor *query_predict(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                  mnas_tensor *alpha)
{
    if (l->user_forward || l->cnet || l->mlp || l->o.inner_mode != MNAS_INNER_RECOMPUTE_CELLS)
        return mnas__learner_predict(l, tp, x, w, alpha);
    return mnas__supernet_forward(l->net, tp, x, w, alpha, !l->discrete, 1);
}

/* The task loss of the model's output: the MSE against y, or the
 * cross-entropy against the labels. */
mnas_tensor *mnas__learner_task_loss(const mnas_learner *l, mnas_tape *tp, mnas_tensor *out, mnas_tensor *y,
                              const int32_t *labels)
{
    if (!out) return NULL;
    return l->classify ? mnas_cross_entropy(tp, out, (size_t)mnas_tensor_dim(y, 0), labels) : mnas_mse(tp, out, y);
}

/* The support loss of the inner loop; extra[0] is alpha for the supernet. */
mnas_tensor *mnas__learner_support_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    support_data *d = user;
    return mnas__learner_task_loss(d->l, tp, mnas__learner_predict(d->l, tp, d->x, w, d->l->net ? extra[0] : NULL),
                                   d->y, d->labels);
}

/* A classification task's labels (y [n, 1]) as int32 in the tape's arena;
 * NULL for regression (or with the tape's error set). */
const int32_t *mnas__learner_labels_of(const mnas_learner *l, mnas_tape *tp, const mnas_tensor *y)
{
    if (!l->classify) return NULL;
    int64_t n = mnas_tensor_dim(y, 0);
    int32_t *lab = mnas__tape_scratch(tp, "mnas_learner", (size_t)n * sizeof *lab);
    if (!lab) return NULL;
    const mnas_real *v = mnas_tensor_cdata(y);
    for (int64_t i = 0; i < n; i++) lab[i] = (int32_t)v[i];
    return lab;
}

/* Images [n, C, S, S] with labels [n, 1] holding integers 0..classes-1. */
static mnas_status check_image_task(const mnas_learner *l, mnas_tensor *const xs[4], size_t j, char *msg)
{
    const mnas_learner_options *o = &l->o;
    for (int k = 0; k < 4; k += 2) {
        mnas_tensor *x = xs[k], *y = xs[k + 1];
        if (!x || !y || mnas_tensor_ndim(x) != 4 || mnas_tensor_dim(x, 1) != o->in_channels ||
            mnas_tensor_dim(x, 2) != o->image_size || mnas_tensor_dim(x, 3) != o->image_size ||
            mnas_tensor_ndim(y) != 2 || mnas_tensor_dim(y, 1) != 1 || mnas_tensor_dim(y, 0) != mnas_tensor_dim(x, 0)) {
            snprintf(msg, TASK_MSG, "task %zu: expected images x [n, %d, %d, %d] and labels y [n, 1]", j,
                     o->in_channels, o->image_size, o->image_size);
            return MNAS_E_SHAPE;
        }
        if (mnas_tensor_dim(x, 0) > 4096) {
            snprintf(msg, TASK_MSG, "task %zu: more than 4096 images in a set", j);
            return MNAS_E_SHAPE;
        }
        const mnas_real *v = mnas_tensor_cdata(y);
        for (int64_t i = 0; i < mnas_tensor_dim(y, 0); i++)
            if (!(v[i] >= 0 && v[i] < (mnas_real)o->classes) || v[i] != (mnas_real)(int32_t)v[i]) {
                snprintf(msg, TASK_MSG, "task %zu: label %g of %s image %lld is not a class index 0..%d", j,
                         (double)v[i], k == 0 ? "support" : "query", (long long)i, o->classes - 1);
                return MNAS_E_INVALID;
            }
    }
    return MNAS_OK;
}

mnas_status mnas__learner_check_task(const mnas_learner *l, const mnas_task *t, size_t j, char *msg)
{
    mnas_tensor *xs[4] = { mnas_task_support_x(t), mnas_task_support_y(t), mnas_task_query_x(t),
                           mnas_task_query_y(t) };
    if (l->classify) return check_image_task(l, xs, j, msg);
    for (int k = 0; k < 4; k++)
        if (!xs[k] || mnas_tensor_ndim(xs[k]) != 2 ||
            mnas_tensor_dim(xs[k], 1) != (k % 2 == 0 ? l->o.in_features : l->o.out_features)) {
            snprintf(msg, TASK_MSG, "task %zu: expected x [n, %d] and y [n, %d] tensors", j, l->o.in_features,
                     l->o.out_features);
            return MNAS_E_SHAPE;
        }
    if (mnas_tensor_dim(xs[0], 0) > 4096) {
        snprintf(msg, TASK_MSG, "task %zu: more than 4096 support points", j);
        return MNAS_E_SHAPE;
    }
    return MNAS_OK;
}

/* The genotype's one-hot alpha for a soft alpha, as a constant tape tensor. */
mnas_tensor *mnas__learner_onehot_of(const mnas_learner *l, mnas_tape *tp, mnas_tensor *alpha)
{
    mnas_genotype *g = mnas_genotype_derive_supernet(l->net, alpha);
    int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
    mnas_tensor *oh = g ? mnas_tape_tensor(tp, 2, sh, NULL) : NULL;
    if (oh && mnas_genotype_onehot_supernet(g, l->net, oh->data) != MNAS_OK) oh = NULL;
    mnas_genotype_free(g);
    if (!oh && !mnas_tape_status(tp))
        mnas__tape_error(tp, MNAS_E_INVALID, "deriving the genotype failed: %s", mnas_ctx_last_error(l->ctx));
    return oh;
}

/* Sampled mixed edges (sample_ops = k, 0 < k < ops): per edge, the k ops of
 * largest log(alpha) + Gumbel noise (training; the task's stream r) or of
 * largest alpha (evaluation), ties to the lower index. Their weights are
 * alpha renormalised over the k, the others exactly 0. Training returns
 * alpha + (hard - alpha) with the shift constant (straight-through: the
 * value is hard, the gradient reaches alpha unchanged); evaluation the hard
 * weights as a constant. */
static mnas_tensor *sample_edges(const mnas_learner *l, mnas_tape *tp, mnas_tensor *a, struct mnas_rng *r,
                                 int training)
{
    size_t n = l->ops, k = (size_t)l->o.sample_ops;
    mnas_tensor *hard = mnas_tape_tensor(tp, 2, a->shape, NULL);
    double *score = mnas__tape_scratch(tp, "mnas_learner", n * sizeof *score);
    unsigned char *pick = mnas__tape_scratch(tp, "mnas_learner", n);
    if (!hard || !score || !pick) return NULL;
    for (size_t e = 0; e < l->edges; e++) {
        const mnas_real *p = a->data + e * n;
        for (size_t o = 0; o < n; o++) {
            double g = 0;
            if (training) {
                double u = mnas_rng_uniform(r);
                if (u < 1e-300) u = 1e-300;
                g = -log(-log(u));
            }
            score[o] = (p[o] > 0 ? log((double)p[o]) : -INFINITY) + g;
            pick[o] = 0;
        }
        double sum = 0;
        for (size_t j = 0; j < k; j++) {
            size_t best = n;
            for (size_t o = 0; o < n; o++)
                if (!pick[o] && (best == n || score[o] > score[best])) best = o;
            pick[best] = 1;
            sum += (double)p[best];
        }
        for (size_t o = 0; o < n; o++) {
            double h = !pick[o] ? 0 : sum > 0 ? (double)p[o] / sum : 1.0 / (double)k;
            hard->data[e * n + o] = training ? (mnas_real)(h - (double)p[o]) : (mnas_real)h;
        }
    }
    /* Training: hard holds the shift; a + (0 - a) is exactly +0. */
    return training ? mnas_add(tp, a, hard) : hard;
}

/* The task representation z and L_r (Eq. (4)-(6)) of task t. r receives the
 * per-task generator after the support permutation was drawn (prepare goes
 * on with it), so every phase of a task sees the same permutation and
 * dropout whichever thread runs it. */
mnas_status mnas__learner_encode(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream,
                                 struct mnas_rng *r, mnas_tensor **z, mnas_tensor **recon)
{
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    mnas__rng_seed(r, l->o.seed ^ 0x6d6e617354736b73ull, stream);
    mnas_tensor *sx = mnas_task_support_x(t), *sy = mnas_task_support_y(t);
    int64_t K = mnas_tensor_dim(sx, 0);
    int64_t perm[4096];
    for (int64_t i = 0; i < K; i++) perm[i] = i;
    for (int64_t i = K - 1; i > 0; i--) {
        int64_t k = (int64_t)mnas_rng_below(r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[k];
        perm[k] = tmp;
    }
    if (l->classify) {
        /* Images reach the encoder flattened, labels one-hot. */
        int64_t xs[2] = { K, mnas_tensor_size(sx) / (K > 0 ? K : 1) }, ys[2] = { K, l->o.classes };
        mnas_tensor *oh = mnas_tape_tensor(tp, 2, ys, NULL);
        sx = mnas_reshape(tp, sx, 2, xs);
        if (!oh || !sx) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
        const mnas_real *lab = mnas_tensor_cdata(sy);
        memset(oh->data, 0, (size_t)oh->size * sizeof(mnas_real));
        for (int64_t i = 0; i < K; i++) oh->data[i * l->o.classes + (int64_t)lab[i]] = 1;
        sy = oh;
    }
    return mnas_task_encoder_forward(l->enc, tp, sx, sy, W + l->s_enc.first, perm, z, recon);
}

/* Everything before the inner loop (Algorithm 1, lines 5-6): the task
 * representation z and L_r (Eq. (4)-(6)), the architecture alpha_i = A(z_i)
 * (or the shared one), and the modulated meta-weights tau_i * w (Eq. (7)).
 * w0 receives the network's starting weights. With u_pre (training) the
 * modulator's FC output comes from the batch product, and dL/du goes to
 * u_grad. */
mnas_status mnas__learner_prepare(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream,
                                  int training, mnas_tensor **w0, mnas_tensor **alpha, mnas_tensor **recon,
                                  const mnas_real *u_pre, mnas_real *u_grad)
{
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    *alpha = NULL;
    *recon = NULL;
    if (!l->net) { /* MAML */
        memcpy(w0, W + l->s_net.first, l->s_net.count * sizeof *w0);
        return MNAS_OK;
    }
    struct mnas_rng r;
    mnas_tensor *z;
    mnas_status st = mnas__learner_encode(l, tp, t, stream, &r, &z, recon);
    if (st != MNAS_OK) return st;
    mnas_tensor *a;
    if (l->alpha_idx >= 0) {
        if (l->discrete) {
            int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
            a = mnas_tape_tensor(tp, 2, sh, l->fixed_alpha);
        } else {
            a = mnas__learner_shared_alpha(l, tp);
        }
    } else {
        a = mnas_controller_forward(l->ctl, tp, z, W + l->s_ctl.first);
        if (a && l->discrete) {
            mnas_tensor *oh = mnas__learner_onehot_of(l, tp, a);
            if (!oh) return mnas_tape_status(tp);
            if (training) {
                /* Straight-through: forward value one-hot, gradient as if soft. */
                mnas_tensor *shift = mnas_tape_tensor(tp, 2, a->shape, NULL);
                if (!shift) return mnas_tape_status(tp);
                for (int64_t i = 0; i < a->size; i++) shift->data[i] = oh->data[i] - a->data[i];
                a = mnas_add(tp, a, shift);
            } else {
                a = oh;
            }
        }
    }
    if (a && !l->discrete && l->o.sample_ops > 0 && (size_t)l->o.sample_ops < l->ops)
        a = sample_edges(l, tp, a, &r, training);
    if (!a) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
    if (training && !l->discrete && l->o.path_dropout > 0) {
        /* Path dropout on alpha (paper, "Task-Aware Architecture Generation"). */
        mnas_tensor *mask = mnas_tape_tensor(tp, 2, a->shape, NULL);
        if (!mask) return mnas_tape_status(tp);
        for (int64_t i = 0; i < a->size; i++) mask->data[i] = mnas_rng_uniform(&r) < l->o.path_dropout ? 0 : 1;
        a = mnas_mask_mul(tp, a, mask);
        if (!a) return mnas_tape_status(tp);
    }
    *alpha = a;
    /* u = W z + b comes from the meta-batch's product U (phase 2): the
     * modulated weights are ops of the meta-weights alone, and dL/du goes to
     * u_grad for phase 3 (first-order gradients only). */
    if (l->mod && u_pre) return mnas__modulator_apply_row(l->mod, tp, u_pre, u_grad, W + l->s_net.first, w0);
    if (l->mod) return mnas_modulator_forward(l->mod, tp, z, W + l->s_mod.first, W + l->s_net.first, w0);
    memcpy(w0, W + l->s_net.first, l->s_net.count * sizeof *w0);
    return MNAS_OK;
}

void mnas__learner_record_failure(mnas_learner *l, size_t j, mnas_tape *tp, mnas_status st)
{
    l->task_status[j] = st;
    const char *msg = mnas_tape_last_error(tp);
    snprintf(l->task_msg[j], TASK_MSG, "task %zu: %s", j, msg[0] ? msg : mnas_status_str(st));
}

mnas_tensor *const *mnas__learner_rates(const mnas_learner *l, mnas_tape *tp, mnas_tensor **r)
{
    if (!l->s_lr.count) return NULL;
    mnas_tensor *const *rho = mnas_params_tensors(l->params) + l->s_lr.first;
    /* Log-parametrised (docs/meta.md "Learned inner rates"): positive, and
     * an Adam step changes a rate by a fraction of itself. With inner_lr_max
     * the log rate is squashed to b tanh(rho / b), b = log(max / inner_lr). */
    const double b = l->o.inner_lr_max > 0 ? log(l->o.inner_lr_max / l->o.inner_lr) : 0;
    for (size_t i = 0; i < l->s_lr.count; i++) {
        mnas_tensor *lr = b > 0 ? mnas_scale(tp, mnas_tanh(tp, mnas_scale(tp, rho[i], 1 / b)), b) : rho[i];
        if (!(r[i] = mnas_scale(tp, mnas_exp(tp, lr), l->o.inner_lr))) return NULL;
    }
    return r;
}

/* Eq. (9) for one task: query loss after adaptation + beta L_r, and its
 * gradient with respect to every meta-parameter. */
mnas_status mnas__learner_task_gradient(mnas_learner *l, mnas_tape *tp, const mnas_task *t, size_t j, uint64_t stream,
                                 mnas_tensor **g, double *loss_out, double *objective_out)
{
    mnas_tensor *w0[MAX_P], *fast[MAX_P], *rates[MAX_P], *alpha, *recon;
    mnas_status st = mnas__learner_check_task(l, t, j, l->task_msg[j]);
    if (st != MNAS_OK) return st;
    mnas_real *u_grad = l->mod ? l->mod_u + j * (size_t)l->mod_total : NULL;
    if (u_grad) memset(u_grad, 0, (size_t)l->mod_total * sizeof(mnas_real));
    const mnas_real *u_pre = l->mod ? l->mod_pre + j * (size_t)l->mod_total : NULL;
    if ((st = mnas__learner_prepare(l, tp, t, stream, 1, w0, &alpha, &recon, u_pre, u_grad)) != MNAS_OK) return st;
    mnas_tensor *sy = mnas_task_support_y(t), *qy = mnas_task_query_y(t);
    const int32_t *slab = mnas__learner_labels_of(l, tp, sy), *qlab = mnas__learner_labels_of(l, tp, qy);
    if (l->classify && (!slab || !qlab)) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_NOMEM;
    support_data sd = { l, mnas_task_support_x(t), sy, slab };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = l->o.inner_steps;
    io.lr = l->o.inner_lr;
    io.rates = mnas__learner_rates(l, tp, rates);
    if (l->s_lr.count && !io.rates) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
    io.mode = l->o.inner_mode;
    if ((st = mnas_inner_loop(tp, mnas__learner_support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io,
                              fast)) != MNAS_OK)
        return st;
    mnas_tensor *q =
        mnas__learner_task_loss(l, tp, query_predict(l, tp, mnas_task_query_x(t), fast, alpha), qy, qlab);
    if (!q) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
    double loss = (double)q->data[0];
    if (recon && l->o.beta > 0) q = mnas_add(tp, q, mnas_scale(tp, recon, l->o.beta));
    if (!q) return mnas_tape_status(tp);
    if (!isfinite(loss) || !isfinite(q->data[0]))
        return mnas__tape_error(tp, MNAS_E_NUMERIC, "the query loss is %g (objective %g)", loss, (double)q->data[0]);
    if (objective_out) *objective_out = (double)q->data[0];
    if (g) {
        /* Every parameter but the modulator's FC, which is not in this
         * graph (see pre_u): its gradient is formed for the whole batch. */
        mnas_tensor *ins[MAX_P], *gs[MAX_P], *const *W = mnas_params_tensors(l->params);
        size_t k = 0;
        for (size_t i = 0; i < l->P; i++)
            if (!is_mod_fc(l, i)) ins[k++] = W[i];
        if ((st = mnas_grad(tp, q, k, ins, gs, 0)) != MNAS_OK) return st;
        k = 0;
        for (size_t i = 0; i < l->P; i++) g[i] = is_mod_fc(l, i) ? NULL : gs[k++];
    }
    *loss_out = loss;
    return MNAS_OK;
}

