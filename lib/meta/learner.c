/* The meta-learner: meta-training (Eq. (3); Eq. (9) once the search core
 * lands), evaluation before and after adaptation, and prediction. Tasks of a
 * meta-batch run on a worker pool with one tape per worker; per-task
 * gradients are reduced in task order, so results do not depend on the
 * number of threads. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mnas/meta.h>

#include "autodiff/autodiff_internal.h"
#include "meta/meta_internal.h"

#define TASK_MSG (MNAS_MSG_MAX + 32)

/* Where each module's parameters sit in the learner's single set. */
typedef struct {
    size_t first, count;
} span;

struct mnas_learner {
    mnas_ctx *ctx;
    mnas_learner_options o;
    mnas_mlp *mlp;              /* MAML's network */
    mnas_search_space *space;   /* M-NAS variants: the one-shot model ... */
    mnas_supernet *net;
    mnas_task_encoder *enc;     /* ... the task encoder ... */
    mnas_controller *ctl;       /* ... the controller (M-NAS, M-NAS-NM) ... */
    mnas_modulator *mod;        /* ... and the modulator (M-NAS, M-NAS-Shared) */
    span s_net, s_enc, s_ctl, s_mod;
    int alpha_idx;              /* M-NAS-Shared: the [edges, ops] logits */
    size_t edges, ops;
    int discrete;               /* architecture-evaluation phase */
    mnas_real *fixed_alpha;     /* M-NAS-Shared in that phase: one-hot */
    mnas_params *params;
    mnas_optim *opt;
    mnas_pool *pool;
    int nthreads;
    mnas_tape **tapes;      /* one per worker */
    size_t P;               /* parameter tensors */
    int64_t numel;
    size_t slots;           /* per-task buffers allocated */
    double *task_loss;      /* [slots] */
    /* The modulator's FC weight gradient is sum_j u_grad_j^T z_j: kept per
     * task as u_grad [total] and z [z_dim], formed by one product after the
     * meta-batch instead of an outer product and a reduction per task. */
    mnas_real *mod_u, *mod_z;
    int64_t mod_total, mod_zdim;
    size_t mod_slots;
    /* Per-task gradients (all but the modulator's FC weight), summed in
     * task order after the batch: goff[i] is parameter i's offset in a
     * task's row of red_total values. */
    size_t *goff;
    size_t red_total;
    mnas_real *task_grad; /* [grad_slots][red_total] */
    size_t grad_slots;
    size_t red_n;         /* tasks in the batch being reduced */
    mnas_status *task_status;
    char (*task_msg)[TASK_MSG];
    int64_t iteration;
};

const char *mnas_method_name(mnas_method m)
{
    switch (m) {
    case MNAS_METHOD_MAML: return "MAML";
    case MNAS_METHOD_MNAS: return "M-NAS";
    case MNAS_METHOD_MNAS_SHARED: return "M-NAS-Shared";
    case MNAS_METHOD_MNAS_NM: return "M-NAS-NM";
    }
    return "unknown";
}

static int in_range(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

static mnas_status check_options(mnas_ctx *ctx, const mnas_learner_options *o)
{
    const char *fn = "mnas_learner_create";
    if (o->method != MNAS_METHOD_MAML && o->method != MNAS_METHOD_MNAS && o->method != MNAS_METHOD_MNAS_SHARED &&
        o->method != MNAS_METHOD_MNAS_NM)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown method %d", fn, (int)o->method);
    if (!in_range(o->arch_lr, 0, 1e6) || !in_range(o->beta, 0, 1e6) || !in_range(o->path_dropout, 0, 0.95) ||
        !in_range(o->modulator_bias, -30, 30))
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: need arch_lr >= 0, beta >= 0, path_dropout in [0, 0.95], modulator_bias in [-30, 30] "
                           "(got %g, %g, %g, %g)",
                           fn, o->arch_lr, o->beta, o->path_dropout, o->modulator_bias);
    if (o->nodes < 1 || o->nodes > 8 || o->z_dim < 1 || o->z_dim > 4096 || o->f_dim < 1 || o->f_dim > 4096 ||
        o->controller_hidden < 1 || o->controller_hidden > 4096)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: nodes %d (1..8), z_dim %d, f_dim %d, controller_hidden %d (1..4096)",
                           fn, o->nodes, o->z_dim, o->f_dim, o->controller_hidden);
    if ((o->encoder != MNAS_RNN_GRU && o->encoder != MNAS_RNN_LSTM) ||
        (o->modulation != MNAS_MODULATE_ELEMENT && o->modulation != MNAS_MODULATE_CHANNEL))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown encoder %d or modulation %d", fn, (int)o->encoder,
                           (int)o->modulation);
    if (o->meta_batch < 1 || o->meta_batch > 100000)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: meta_batch %d is outside 1..100000", fn, o->meta_batch);
    if (o->inner_steps < 0 || o->inner_steps > 1000)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: inner_steps %d is outside 0..1000", fn, o->inner_steps);
    if (!in_range(o->inner_lr, 0, 1e6))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: inner_lr %g must be finite and >= 0", fn, o->inner_lr);
    if (!in_range(o->outer_lr, 0, 1e6))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: outer_lr %g must be finite and >= 0", fn, o->outer_lr);
    if (o->inner_mode != MNAS_INNER_SECOND_ORDER && o->inner_mode != MNAS_INNER_FIRST_ORDER &&
        o->inner_mode != MNAS_INNER_RECOMPUTE)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown inner_mode %d", fn, (int)o->inner_mode);
    if (o->threads < 1 || o->threads > 256)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: threads %d is outside 1..256", fn, o->threads);
    if (!in_range(o->clip_norm, 0, 1e30))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: clip_norm %g must be finite and >= 0", fn, o->clip_norm);
    if (o->hidden < 1 || o->hidden > 4096 || o->layers < 1 || o->layers > 64 || o->in_features < 1 ||
        o->in_features > 4096 || o->out_features < 1 || o->out_features > 4096)
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: network hidden %d (1..4096), layers %d (1..64), in %d and out %d (1..4096)", fn,
                           o->hidden, o->layers, o->in_features, o->out_features);
    return MNAS_OK;
}

void mnas_learner_free(mnas_learner *l)
{
    if (!l) return;
    mnas__pool_free(l->pool);
    for (int i = 0; l->tapes && i < l->nthreads; i++) mnas_tape_free(l->tapes[i]);
    mnas__free(l->ctx, l->tapes);
    mnas_optim_free(l->opt);
    mnas_params_free(l->params);
    mnas_mlp_free(l->mlp);
    mnas_modulator_free(l->mod);
    mnas_controller_free(l->ctl);
    mnas_task_encoder_free(l->enc);
    mnas_supernet_free(l->net);
    mnas_search_space_free(l->space);
    mnas__free(l->ctx, l->fixed_alpha);
    mnas__free(l->ctx, l->task_loss);
    mnas__free(l->ctx, l->task_status);
    mnas__free(l->ctx, l->task_msg);
    mnas__free(l->ctx, l->mod_u);
    mnas__free(l->ctx, l->mod_z);
    mnas__free(l->ctx, l->goff);
    mnas__free(l->ctx, l->task_grad);
    mnas__free(l->ctx, l);
}

static span add_span(mnas_params *p, int first)
{
    span s = { 0, 0 };
    if (first >= 0) {
        s.first = (size_t)first;
        s.count = mnas_params_count(p) - (size_t)first;
    }
    return s;
}

/* The network, and for the M-NAS variants the encoder, controller or shared
 * alpha (group 1: the architecture learning rate), and modulator. */
static mnas_status build_model(mnas_learner *l)
{
    const mnas_learner_options *o = &l->o;
    mnas_ctx *ctx = l->ctx;
    mnas_params *p = l->params;
    if (o->method == MNAS_METHOD_MAML) {
        int64_t dims[65];
        dims[0] = o->in_features;
        for (int i = 1; i < o->layers; i++) dims[i] = o->hidden;
        dims[o->layers] = o->out_features;
        l->mlp = mnas_mlp_create(ctx, o->layers, dims, 0);
        if (!l->mlp) return MNAS_E_INVALID;
        l->s_net = add_span(p, mnas_mlp_add_params(l->mlp, p, "net.", 0));
        return l->s_net.count ? MNAS_OK : MNAS_E_INVALID;
    }
    l->space = mnas_search_space_mlp(ctx);
    if (!l->space) return MNAS_E_NOMEM;
    l->net = mnas_supernet_create_mlp(l->space, o->in_features, o->hidden, o->nodes, o->out_features);
    if (!l->net) return MNAS_E_INVALID;
    l->s_net = add_span(p, mnas_supernet_add_params(l->net, p, "net.", 0));
    if (!l->s_net.count) return MNAS_E_INVALID;
    l->edges = mnas_cell_num_edges(mnas_supernet_cell(l->net));
    l->ops = mnas_search_space_num_ops(l->space);
    l->enc = mnas_task_encoder_create(ctx, o->in_features, o->out_features, o->f_dim, o->z_dim, o->encoder);
    if (!l->enc) return MNAS_E_INVALID;
    l->s_enc = add_span(p, mnas_task_encoder_add_params(l->enc, p, "enc.", 0));
    if (!l->s_enc.count) return MNAS_E_INVALID;
    if (o->method == MNAS_METHOD_MNAS_SHARED) {
        int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
        l->alpha_idx = mnas_params_add(p, "arch.alpha", 2, sh, MNAS_INIT_UNIFORM, 1e-3, 1);
        if (l->alpha_idx < 0) return MNAS_E_INVALID;
    } else {
        l->ctl = mnas_controller_create(ctx, o->z_dim, o->controller_hidden, (int64_t)l->edges, (int64_t)l->ops);
        if (!l->ctl) return MNAS_E_INVALID;
        l->s_ctl = add_span(p, mnas_controller_add_params(l->ctl, p, "ctl.", 1));
        if (!l->s_ctl.count) return MNAS_E_INVALID;
    }
    if (o->method != MNAS_METHOD_MNAS_NM) {
        mnas_tensor *const *W = mnas_params_tensors(p);
        l->mod = mnas_modulator_create(ctx, o->z_dim, l->s_net.count, W + l->s_net.first, o->modulation,
                                       o->modulator_bias);
        if (!l->mod) return MNAS_E_INVALID;
        l->s_mod = add_span(p, mnas_modulator_add_params(l->mod, p, "mod.", 0));
        if (!l->s_mod.count) return MNAS_E_INVALID;
        /* The FC weight is the first modulator parameter, [total, z_dim]. */
        l->mod_total = mnas_tensor_dim(mnas_params_get(p, l->s_mod.first), 0);
        l->mod_zdim = mnas_tensor_dim(mnas_params_get(p, l->s_mod.first), 1);
    }
    return MNAS_OK;
}

mnas_learner *mnas_learner_create(mnas_ctx *ctx, const mnas_learner_options *opts)
{
    const char *fn = "mnas_learner_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof o) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: options struct_size %zu is not valid", fn, opts->struct_size);
            return NULL;
        }
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
        o.struct_size = sizeof o;
    }
    if (check_options(ctx, &o) != MNAS_OK) return NULL;
    mnas_learner *l = mnas__calloc(ctx, 1, sizeof *l);
    if (!l) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the learner", fn);
        return NULL;
    }
    l->ctx = ctx;
    l->o = o;
    l->nthreads = o.threads;
    l->params = mnas_params_create(ctx);
    l->alpha_idx = -1;
    if (!l->params) goto fail;
    if (build_model(l) != MNAS_OK) goto fail;
    /* Initialise from the learner's seed, not from whatever the context
     * RNG has done so far. */
    mnas_rng *rng = mnas_rng_create(ctx, o.seed, 0x1417);
    if (!rng) goto fail;
    mnas_params_init(l->params, rng);
    mnas_rng_free(rng);
    l->P = mnas_params_count(l->params);
    l->numel = mnas_params_numel(l->params);
    l->goff = mnas__calloc(ctx, l->P + 1, sizeof *l->goff);
    if (!l->goff) goto nomem;
    for (size_t i = 0; i < l->P; i++) {
        l->goff[i] = l->red_total;
        if (!(l->mod && i == l->s_mod.first)) l->red_total += (size_t)mnas_tensor_size(mnas_params_get(l->params, i));
    }
    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.kind = MNAS_OPTIM_ADAM;
    oo.lr = o.outer_lr;
    oo.clip_norm = o.clip_norm;
    l->opt = mnas_optim_create(l->params, &oo);
    if (!l->opt || mnas_optim_set_group_lr(l->opt, 1, o.arch_lr) != MNAS_OK) goto fail;
    l->tapes = mnas__calloc(ctx, (size_t)o.threads, sizeof *l->tapes);
    if (!l->tapes) goto nomem;
    for (int i = 0; i < o.threads; i++)
        if (mnas_tape_create(ctx, &l->tapes[i]) != MNAS_OK) goto fail;
    l->pool = mnas__pool_create(ctx, o.threads);
    if (!l->pool) goto nomem;
    return l;
nomem:
    mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the learner's workers", fn);
fail:
    mnas_learner_free(l);
    return NULL;
}

mnas_params *mnas_learner_params(const mnas_learner *l) { return l ? l->params : NULL; }
int64_t mnas_learner_iteration(const mnas_learner *l) { return l ? l->iteration : 0; }

/* Per-task buffers for n tasks; the modulator's u/z rows only when
 * training needs them (evaluation sets can be thousands of tasks). */
static mnas_status ensure_slots(mnas_learner *l, size_t n, int training)
{
    if (training && n > l->grad_slots) {
        size_t bytes;
        if (!mnas__mul_ok(n, l->red_total * sizeof(mnas_real), &bytes))
            return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: gradients of %zu tasks overflow", n);
        mnas_real *tg = mnas__alloc(l->ctx, bytes);
        if (!tg) return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate gradients of %zu tasks", n);
        mnas__free(l->ctx, l->task_grad);
        l->task_grad = tg;
        l->grad_slots = n;
    }
    if (training && l->mod && n > l->mod_slots) {
        mnas_real *mu = mnas__calloc(l->ctx, n * (size_t)l->mod_total, sizeof *mu);
        mnas_real *mz = mnas__calloc(l->ctx, n * (size_t)l->mod_zdim, sizeof *mz);
        if (!mu || !mz) {
            mnas__free(l->ctx, mu);
            mnas__free(l->ctx, mz);
            return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate modulator buffers for %zu tasks", n);
        }
        mnas__free(l->ctx, l->mod_u);
        mnas__free(l->ctx, l->mod_z);
        l->mod_u = mu;
        l->mod_z = mz;
        l->mod_slots = n;
    }
    if (n <= l->slots) return MNAS_OK;
    double *loss = mnas__calloc(l->ctx, n, sizeof *loss);
    mnas_status *st = mnas__calloc(l->ctx, n, sizeof *st);
    char(*msg)[TASK_MSG] = mnas__calloc(l->ctx, n, sizeof *msg);
    if (!loss || !st || !msg) {
        mnas__free(l->ctx, loss);
        mnas__free(l->ctx, st);
        mnas__free(l->ctx, msg);
        return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate buffers for %zu tasks", n);
    }
    mnas__free(l->ctx, l->task_loss);
    mnas__free(l->ctx, l->task_status);
    mnas__free(l->ctx, l->task_msg);
    l->task_loss = loss;
    l->task_status = st;
    l->task_msg = msg;
    l->slots = n;
    return MNAS_OK;
}

/* ---- one task ------------------------------------------------------------ */

typedef struct {
    const mnas_learner *l;
    mnas_tensor *x, *y;
} support_data;

/* The support loss of the inner loop; extra[0] is alpha for the supernet. */
static mnas_tensor *support_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    support_data *d = user;
    return mnas_mse(tp, d->l->mlp ? mnas_mlp_forward(d->l->mlp, tp, d->x, w)
                                  : mnas_supernet_forward(d->l->net, tp, d->x, w, extra[0]),
                    d->y);
}

static mnas_tensor *predict(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                            mnas_tensor *alpha)
{
    return l->mlp ? mnas_mlp_forward(l->mlp, tp, x, w) : mnas_supernet_forward(l->net, tp, x, w, alpha);
}

static mnas_status check_task(const mnas_learner *l, const mnas_task *t, size_t j, char *msg)
{
    mnas_tensor *xs[4] = { mnas_task_support_x(t), mnas_task_support_y(t), mnas_task_query_x(t),
                           mnas_task_query_y(t) };
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
static mnas_tensor *onehot_of(const mnas_learner *l, mnas_tape *tp, mnas_tensor *alpha)
{
    const mnas_cell *cell = mnas_supernet_cell(l->net);
    mnas_genotype *g = mnas_genotype_derive(cell, alpha);
    int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
    mnas_tensor *oh = g ? mnas_tape_tensor(tp, 2, sh, NULL) : NULL;
    if (oh && mnas_genotype_onehot(g, cell, oh->data) != MNAS_OK) oh = NULL;
    mnas_genotype_free(g);
    if (!oh && !tp->status) mnas__tape_error(tp, MNAS_E_INVALID, "deriving the genotype failed: %s", mnas_ctx_last_error(l->ctx));
    return oh;
}

/* Everything before the inner loop (Algorithm 1, lines 5-6): the task
 * representation z and L_r (Eq. (4)-(6)), the architecture alpha_i = A(z_i)
 * (or the shared one), and the modulated meta-weights tau_i * w (Eq. (7)).
 * w0 receives the network's starting weights. */
static mnas_status prepare(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream, int training,
                           mnas_tensor **w0, mnas_tensor **alpha, mnas_tensor **recon, mnas_tensor **u_out,
                           mnas_tensor **z_out)
{
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    *alpha = NULL;
    *recon = NULL;
    if (u_out) *u_out = NULL;
    if (l->mlp) {
        memcpy(w0, W + l->s_net.first, l->s_net.count * sizeof *w0);
        return MNAS_OK;
    }
    /* The per-task generator: the same permutation and dropout whichever
     * thread runs the task. */
    struct mnas_rng r;
    mnas__rng_seed(&r, l->o.seed ^ 0x6d6e617354736b73ull, stream);
    mnas_tensor *sx = mnas_task_support_x(t), *sy = mnas_task_support_y(t);
    int64_t K = mnas_tensor_dim(sx, 0);
    int64_t perm[4096];
    for (int64_t i = 0; i < K; i++) perm[i] = i;
    for (int64_t i = K - 1; i > 0; i--) {
        int64_t k = (int64_t)mnas_rng_below(&r, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[k];
        perm[k] = tmp;
    }
    mnas_tensor *z;
    mnas_status st = mnas_task_encoder_forward(l->enc, tp, sx, sy, W + l->s_enc.first, perm, &z, recon);
    if (st != MNAS_OK) return st;
    mnas_tensor *a;
    if (l->alpha_idx >= 0) {
        if (l->discrete) {
            int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
            a = mnas_tape_tensor(tp, 2, sh, l->fixed_alpha);
        } else {
            a = mnas_softmax(tp, W[l->alpha_idx]);
        }
    } else {
        a = mnas_controller_forward(l->ctl, tp, z, W + l->s_ctl.first);
        if (a && l->discrete) {
            mnas_tensor *oh = onehot_of(l, tp, a);
            if (!oh) return tp->status;
            if (training) {
                /* Straight-through: forward value one-hot, gradient as if soft. */
                mnas_tensor *shift = mnas_tape_tensor(tp, 2, a->shape, NULL);
                if (!shift) return tp->status;
                for (int64_t i = 0; i < a->size; i++) shift->data[i] = oh->data[i] - a->data[i];
                a = mnas_add(tp, a, shift);
            } else {
                a = oh;
            }
        }
    }
    if (!a) return tp->status ? tp->status : MNAS_E_INTERNAL;
    if (training && !l->discrete && l->o.path_dropout > 0) {
        /* Path dropout on alpha (paper, "Task-Aware Architecture Generation"). */
        mnas_tensor *mask = mnas_tape_tensor(tp, 2, a->shape, NULL);
        if (!mask) return tp->status;
        for (int64_t i = 0; i < a->size; i++) mask->data[i] = mnas_rng_uniform(&r) < l->o.path_dropout ? 0 : 1;
        a = mnas_mask_mul(tp, a, mask);
        if (!a) return tp->status;
    }
    *alpha = a;
    if (z_out) *z_out = z;
    if (l->mod) return mnas__modulator_forward_u(l->mod, tp, z, W + l->s_mod.first, W + l->s_net.first, w0, u_out);
    memcpy(w0, W + l->s_net.first, l->s_net.count * sizeof *w0);
    return MNAS_OK;
}

typedef struct {
    mnas_learner *l;
    const mnas_task *const *tasks; /* or, when NULL, drawn from source */
    mnas_task_source source;
    void *source_user;
    uint64_t source_base;
    int steps;
    uint64_t stream0;
    double *before, *after; /* evaluation outputs */
} job_data;

static void record_failure(mnas_learner *l, size_t j, mnas_tape *tp, mnas_status st)
{
    l->task_status[j] = st;
    snprintf(l->task_msg[j], TASK_MSG, "task %zu: %s", j, tp->msg[0] ? tp->msg : mnas_status_str(st));
}

#define MAX_P 1024

/* Eq. (9) for one task: query loss after adaptation + beta L_r, and its
 * gradient with respect to every meta-parameter. */
static mnas_status task_gradient(mnas_learner *l, mnas_tape *tp, const mnas_task *t, size_t j, uint64_t stream,
                                 mnas_tensor **g, double *loss_out, double *objective_out)
{
    mnas_tensor *w0[MAX_P], *fast[MAX_P], *alpha, *recon;
    mnas_status st = check_task(l, t, j, l->task_msg[j]);
    if (st != MNAS_OK) return st;
    mnas_tensor *u = NULL, *z = NULL;
    if ((st = prepare(l, tp, t, stream, 1, w0, &alpha, &recon, &u, &z)) != MNAS_OK) return st;
    support_data sd = { l, mnas_task_support_x(t), mnas_task_support_y(t) };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = l->o.inner_steps;
    io.lr = l->o.inner_lr;
    io.mode = l->o.inner_mode;
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io, fast)) != MNAS_OK)
        return st;
    mnas_tensor *q = mnas_mse(tp, predict(l, tp, mnas_task_query_x(t), fast, alpha), mnas_task_query_y(t));
    if (!q) return tp->status ? tp->status : MNAS_E_INTERNAL;
    double loss = (double)q->data[0];
    if (recon && l->o.beta > 0) q = mnas_add(tp, q, mnas_scale(tp, recon, l->o.beta));
    if (!q) return tp->status;
    if (!isfinite(loss) || !isfinite(q->data[0]))
        return mnas__tape_error(tp, MNAS_E_NUMERIC, "the query loss is %g (objective %g)", loss, (double)q->data[0]);
    if (objective_out) *objective_out = (double)q->data[0];
    if (g) {
        mnas_tensor *ins[MAX_P];
        memcpy(ins, mnas_params_tensors(l->params), l->P * sizeof *ins);
        size_t wm = l->s_mod.first;
        if (l->mod) ins[wm] = u; /* see mnas_learner.mod_u */
        if ((st = mnas_grad(tp, q, l->P, ins, g, 0)) != MNAS_OK) return st;
        if (l->mod) {
            memcpy(l->mod_u + j * (size_t)l->mod_total, g[wm]->data, (size_t)l->mod_total * sizeof(mnas_real));
            memcpy(l->mod_z + j * (size_t)l->mod_zdim, z->data, (size_t)l->mod_zdim * sizeof(mnas_real));
            g[wm] = NULL;
        }
    }
    *loss_out = loss;
    return MNAS_OK;
}

static void train_job(void *user, size_t j, int worker)
{
    job_data *d = user;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    mnas_tensor *g[MAX_P];
    double loss = 0;
    /* Training draws its tasks here, on the workers, in parallel. */
    mnas_task *own = NULL;
    const mnas_task *t = d->tasks ? d->tasks[j] : (own = d->source(d->source_user, d->source_base + j));
    mnas_status st;
    if (!t) {
        st = MNAS_E_INVALID;
        snprintf(l->task_msg[j], TASK_MSG, "task %zu: the task source gave no task %llu", j,
                 (unsigned long long)(d->source_base + j));
    } else {
        st = task_gradient(l, tp, t, j, d->stream0 + j, g, &loss, NULL);
    }
    if (st != MNAS_OK && !l->task_msg[j][0]) record_failure(l, j, tp, st);
    if (st != MNAS_OK) l->task_status[j] = st;
    if (st == MNAS_OK) {
        mnas_real *row = l->task_grad + j * l->red_total;
        for (size_t i = 0; i < l->P; i++)
            if (g[i]) memcpy(row + l->goff[i], g[i]->data, (size_t)g[i]->size * sizeof(mnas_real));
        l->task_loss[j] = loss;
    }
    mnas_tape_reset(tp);
    mnas_task_free(own);
}

/* Sum parameter i's gradient over the batch's tasks, in task order: the
 * same bits whichever thread computed which task or sums which parameter. */
static void reduce_job(void *user, size_t i, int worker)
{
    (void)worker;
    mnas_learner *l = user;
    if (l->mod && i == l->s_mod.first) return; /* formed by mod_weight_grad */
    mnas_tensor *gb = mnas_params_grad(l->params, i);
    mnas_real *dst = mnas_tensor_data(gb);
    int64_t sz = mnas_tensor_size(gb);
    memcpy(dst, l->task_grad + l->goff[i], (size_t)sz * sizeof(mnas_real));
    for (size_t j = 1; j < l->red_n; j++) mnas__k_add_scaled(sz, 1, l->task_grad + j * l->red_total + l->goff[i], dst);
}

/* The modulator's FC weight gradient for tasks 0..n-1: U^T Z, one product. */
static void mod_weight_grad(mnas_learner *l, size_t n)
{
    if (!l->mod) return;
    mnas_real *gw = mnas_tensor_data(mnas_params_grad(l->params, l->s_mod.first));
    mnas__k_gemm(1, 0, l->mod_total, l->mod_zdim, (int64_t)n, 1, l->mod_u, l->mod_total, l->mod_z, l->mod_zdim, 0, gw,
                 l->mod_zdim);
}

mnas_status mnas_learner_task_objective(mnas_learner *l, const mnas_task *task, uint64_t stream, double *objective,
                                        int want_grad)
{
    const char *fn = "mnas_learner_task_objective";
    if (!l) return MNAS_E_INVALID;
    if (!task || !objective) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task and objective must not be NULL", fn);
    if (l->P > MAX_P) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: too many parameter tensors", fn);
    mnas_status st = ensure_slots(l, 1, want_grad);
    if (st != MNAS_OK) return st;
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    l->task_msg[0][0] = '\0';
    mnas_tensor *g[MAX_P];
    double loss;
    st = task_gradient(l, tp, task, 0, stream, want_grad ? g : NULL, &loss, objective);
    if (st != MNAS_OK) {
        mnas_tape_reset(tp);
        return mnas__error(l->ctx, st, "%s: %s", fn, l->task_msg[0][0] ? l->task_msg[0] : tp->msg);
    }
    if (want_grad) {
        for (size_t i = 0; i < l->P; i++)
            if (g[i]) mnas_tensor_assign(mnas_params_grad(l->params, i), g[i]);
        mod_weight_grad(l, 1);
    }
    mnas_tape_reset(tp);
    return MNAS_OK;
}

static mnas_status run_batch(mnas_learner *l, const char *fn, const mnas_task *const *tasks, mnas_task_source source,
                             void *source_user, size_t n, double *loss_out);

mnas_status mnas_learner_step(mnas_learner *l, const mnas_task *const *tasks, size_t n, double *loss_out)
{
    const char *fn = "mnas_learner_step";
    if (!l) return MNAS_E_INVALID;
    if (!tasks || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: no tasks", fn);
    for (size_t j = 0; j < n; j++)
        if (!tasks[j]) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task %zu is NULL", fn, j);
    return run_batch(l, fn, tasks, NULL, NULL, n, loss_out);
}

/* One meta-update on n tasks, given or drawn from source. */
static mnas_status run_batch(mnas_learner *l, const char *fn, const mnas_task *const *tasks, mnas_task_source source,
                             void *source_user, size_t n, double *loss_out)
{
    if (l->P > MAX_P) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: more than %d parameter tensors", fn, MAX_P);
    mnas_status st = ensure_slots(l, n, 1);
    if (st != MNAS_OK) return st;
    for (size_t j = 0; j < n; j++) l->task_msg[j][0] = '\0';
    job_data d = { l, tasks, source, source_user, (uint64_t)l->iteration * (uint64_t)n, 0,
                   (uint64_t)l->iteration * (uint64_t)n, NULL, NULL };
    mnas__pool_run(l->pool, n, train_job, &d);
    for (size_t j = 0; j < n; j++)
        if (l->task_status[j] != MNAS_OK) {
            mnas_params_zero_grad(l->params);
            return mnas__error(l->ctx, l->task_status[j], "%s: iteration %lld, %s; parameters unchanged", fn,
                               (long long)l->iteration, l->task_msg[j]);
        }
    l->red_n = n;
    if (l->red_total * n > ((size_t)1 << 20)) {
        mnas__pool_run(l->pool, l->P, reduce_job, l);
    } else {
        for (size_t i = 0; i < l->P; i++) reduce_job(l, i, 0); /* small: not worth waking the pool */
    }
    mod_weight_grad(l, n);
    double mean_loss = 0;
    for (size_t j = 0; j < n; j++) mean_loss += l->task_loss[j];
    mnas_real inv = (mnas_real)(1.0 / (double)n);
    for (size_t i = 0; i < l->P; i++) {
        mnas_tensor *gb = mnas_params_grad(l->params, i);
        mnas_real *dst = mnas_tensor_data(gb);
        for (int64_t k = 0; k < mnas_tensor_size(gb); k++) dst[k] *= inv;
    }
    mean_loss /= (double)n;
    if ((st = mnas_optim_step(l->opt)) != MNAS_OK)
        return mnas__error(l->ctx, st, "%s: iteration %lld: %s", fn, (long long)l->iteration, mnas_ctx_last_error(l->ctx));
    l->iteration++;
    if (loss_out) *loss_out = mean_loss;
    return MNAS_OK;
}

mnas_status mnas_learner_train(mnas_learner *l, mnas_task_source source, void *source_user, int64_t iterations,
                               mnas_progress_fn progress, void *progress_user)
{
    const char *fn = "mnas_learner_train";
    if (!l) return MNAS_E_INVALID;
    if (!source) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: no task source", fn);
    if (iterations < 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %lld iterations", fn, (long long)iterations);
    size_t B = (size_t)l->o.meta_batch;
    mnas_status st = MNAS_OK;
    for (int64_t it = 0; it < iterations && st == MNAS_OK; it++) {
        double loss = 0;
        st = run_batch(l, fn, NULL, source, source_user, B, &loss);
        if (st == MNAS_OK && progress && progress(progress_user, it + 1, iterations, loss)) break;
    }
    return st;
}

/* ---- evaluation and prediction ---------------------------------------- */

/* Adapt to the support set and return the query loss before / after. */
static mnas_status adapt(mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream, int steps,
                         mnas_tensor **fast, mnas_tensor **alpha_out, double *before, double *after)
{
    mnas_tensor *w0[MAX_P], *alpha, *recon;
    mnas_status st = prepare(l, tp, t, stream, 0, w0, &alpha, &recon, NULL, NULL);
    if (st != MNAS_OK) return st;
    mnas_tensor *qx = mnas_task_query_x(t), *qy = mnas_task_query_y(t);
    if (before) {
        mnas_tape_no_grad_begin(tp);
        mnas_tensor *q = mnas_mse(tp, predict(l, tp, qx, w0, alpha), qy);
        mnas_tape_no_grad_end(tp);
        if (!q) return tp->status ? tp->status : MNAS_E_INTERNAL;
        *before = (double)q->data[0];
    }
    support_data sd = { l, mnas_task_support_x(t), mnas_task_support_y(t) };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = steps;
    io.lr = l->o.inner_lr;
    io.mode = MNAS_INNER_FIRST_ORDER; /* no meta-gradient needed */
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io, fast)) != MNAS_OK)
        return st;
    if (after) {
        mnas_tape_no_grad_begin(tp);
        mnas_tensor *q = mnas_mse(tp, predict(l, tp, qx, fast, alpha), qy);
        mnas_tape_no_grad_end(tp);
        if (!q) return tp->status ? tp->status : MNAS_E_INTERNAL;
        *after = (double)q->data[0];
    }
    if (alpha_out) *alpha_out = alpha;
    return MNAS_OK;
}

#define EVAL_STREAM ((uint64_t)1 << 62)

static void eval_job(void *user, size_t j, int worker)
{
    job_data *d = user;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    mnas_status st = check_task(l, d->tasks[j], j, l->task_msg[j]);
    if (st != MNAS_OK) {
        l->task_status[j] = st;
        return;
    }
    mnas_tensor *fast[MAX_P];
    st = adapt(l, tp, d->tasks[j], EVAL_STREAM + j, d->steps, fast, NULL, d->before ? &d->before[j] : NULL,
               d->after ? &d->after[j] : NULL);
    if (st != MNAS_OK) record_failure(l, j, tp, st);
}

mnas_status mnas_learner_evaluate(mnas_learner *l, const mnas_task_set *set, int steps, double *before, double *after)
{
    const char *fn = "mnas_learner_evaluate";
    if (!l) return MNAS_E_INVALID;
    size_t n = mnas_task_set_size(set);
    if (!set || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: the task set is empty or NULL", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    mnas_status st = ensure_slots(l, n, 0);
    if (st != MNAS_OK) return st;
    const mnas_task **tasks = mnas__calloc(l->ctx, n, sizeof *tasks);
    if (!tasks) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    for (size_t j = 0; j < n; j++) tasks[j] = mnas_task_set_get(set, j);
    job_data d = { l, tasks, NULL, NULL, 0, steps, 0, before, after };
    mnas__pool_run(l->pool, n, eval_job, &d);
    mnas__free(l->ctx, tasks);
    for (size_t j = 0; j < n; j++)
        if (l->task_status[j] != MNAS_OK)
            return mnas__error(l->ctx, l->task_status[j], "%s: %s", fn, l->task_msg[j]);
    return MNAS_OK;
}

mnas_status mnas_learner_adapt_predict(mnas_learner *l, const mnas_task *task, int steps, size_t n, const mnas_real *x,
                                       mnas_real *y)
{
    const char *fn = "mnas_learner_adapt_predict";
    if (!l) return MNAS_E_INVALID;
    if (!task || !x || !y || n == 0 || n > 1000000)
        return mnas__error(l->ctx, MNAS_E_INVALID, "%s: need a task and 1..1000000 inputs", fn);
    if (l->o.in_features != 1)
        return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: only for models with one input feature", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    if (l->P > MAX_P) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: too many parameter tensors", fn);
    char msg[TASK_MSG];
    mnas_status st = check_task(l, task, 0, msg);
    if (st != MNAS_OK) return mnas__error(l->ctx, st, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    mnas_tensor *fast[MAX_P], *alpha = NULL;
    if ((st = adapt(l, tp, task, EVAL_STREAM, steps, fast, &alpha, NULL, NULL)) != MNAS_OK)
        return mnas__error(l->ctx, st, "%s: %s", fn, tp->msg);
    int64_t xs[2] = { (int64_t)n, 1 };
    mnas_tape_no_grad_begin(tp);
    mnas_tensor *out = predict(l, tp, mnas_tape_tensor(tp, 2, xs, x), fast, alpha);
    mnas_tape_no_grad_end(tp);
    if (!out) return mnas__error(l->ctx, tp->status ? tp->status : MNAS_E_INTERNAL, "%s: %s", fn, tp->msg);
    memcpy(y, out->data, (size_t)out->size * sizeof(mnas_real));
    mnas_tape_reset(tp);
    return MNAS_OK;
}

/* ---- the architecture-evaluation phase ------------------------------------ */

mnas_status mnas_learner_discretize(mnas_learner *l, int reinit)
{
    const char *fn = "mnas_learner_discretize";
    if (!l) return MNAS_E_INVALID;
    if (l->mlp) return mnas__error(l->ctx, MNAS_E_STATE, "%s: MAML has no architecture to discretise", fn);
    if (l->discrete) return mnas__error(l->ctx, MNAS_E_STATE, "%s: already discrete", fn);
    if (l->alpha_idx >= 0) {
        mnas_tape *tp = l->tapes[0];
        mnas_tape_reset(tp);
        mnas_tensor *a = mnas_softmax(tp, mnas_params_get(l->params, (size_t)l->alpha_idx));
        mnas_real *fixed = mnas__calloc(l->ctx, l->edges * l->ops, sizeof *fixed);
        mnas_tensor *oh = a ? onehot_of(l, tp, a) : NULL;
        if (!fixed || !oh) {
            mnas__free(l->ctx, fixed);
            mnas_tape_reset(tp);
            return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: %s", fn, tp->msg);
        }
        memcpy(fixed, oh->data, l->edges * l->ops * sizeof *fixed);
        mnas_tape_reset(tp);
        l->fixed_alpha = fixed;
    }
    if (reinit) {
        /* Re-draw every parameter but the architecture's. */
        mnas_rng *rng = mnas_rng_create(l->ctx, l->o.seed, 0x2417);
        if (!rng) return MNAS_E_NOMEM;
        mnas_tensor *keep = l->alpha_idx >= 0 ? mnas_tensor_copy(mnas_params_get(l->params, (size_t)l->alpha_idx)) : NULL;
        mnas_params_init(l->params, rng);
        mnas_rng_free(rng);
        if (keep) {
            mnas_tensor_assign(mnas_params_get(l->params, (size_t)l->alpha_idx), keep);
            mnas_tensor_free(keep);
        }
    }
    l->discrete = 1;
    return MNAS_OK;
}

int mnas_learner_is_discrete(const mnas_learner *l) { return l ? l->discrete : 0; }

mnas_genotype *mnas_learner_genotype(mnas_learner *l, const mnas_task *task)
{
    const char *fn = "mnas_learner_genotype";
    if (!l) return NULL;
    if (l->mlp) {
        mnas__error(l->ctx, MNAS_E_STATE, "%s: MAML has no architecture", fn);
        return NULL;
    }
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    mnas_tensor *a = NULL;
    if (l->alpha_idx >= 0) {
        if (l->discrete) {
            int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
            a = mnas_tape_tensor(tp, 2, sh, l->fixed_alpha);
        } else {
            a = mnas_softmax(tp, mnas_params_get(l->params, (size_t)l->alpha_idx));
        }
    } else {
        char msg[TASK_MSG];
        if (!task) {
            mnas__error(l->ctx, MNAS_E_INVALID, "%s: M-NAS needs a task to generate its architecture", fn);
            return NULL;
        }
        if (check_task(l, task, 0, msg) != MNAS_OK) {
            mnas__error(l->ctx, MNAS_E_SHAPE, "%s: %s", fn, msg);
            return NULL;
        }
        mnas_tensor *w0[MAX_P], *recon;
        if (prepare(l, tp, task, EVAL_STREAM, 0, w0, &a, &recon, NULL, NULL) != MNAS_OK) a = NULL;
    }
    mnas_genotype *g = a ? mnas_genotype_derive(mnas_supernet_cell(l->net), a) : NULL;
    if (!a) mnas__error(l->ctx, tp->status ? tp->status : MNAS_E_INTERNAL, "%s: %s", fn, tp->msg);
    mnas_tape_reset(tp);
    return g;
}

/* ---- checkpoint access (lib/io/checkpoint.c) ------------------------------ */

mnas_ctx *mnas__learner_ctx(const mnas_learner *l) { return l->ctx; }
const mnas_learner_options *mnas__learner_options(const mnas_learner *l) { return &l->o; }
mnas_optim *mnas__learner_optim(const mnas_learner *l) { return l->opt; }

int mnas__learner_phase(const mnas_learner *l, const mnas_real **fixed_alpha, size_t *edges, size_t *ops)
{
    *fixed_alpha = l->fixed_alpha;
    *edges = l->edges;
    *ops = l->ops;
    return l->discrete;
}

int mnas__learner_has_shared_alpha(const mnas_learner *l) { return l->alpha_idx >= 0; }

void mnas__learner_restore(mnas_learner *l, int64_t iteration, int discrete, mnas_real *fixed_alpha)
{
    l->iteration = iteration;
    l->discrete = discrete;
    if (fixed_alpha != l->fixed_alpha) {
        mnas__free(l->ctx, l->fixed_alpha);
        l->fixed_alpha = fixed_alpha;
    }
}
