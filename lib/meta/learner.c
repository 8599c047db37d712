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
#include "nas/nas_internal.h"
#include "nn/nn_internal.h"

#define TASK_MSG (MNAS_MSG_MAX + 32)

/* Where each module's parameters sit in the learner's single set. */
typedef struct {
    size_t first, count;
} span;

struct mnas_learner {
    mnas_ctx *ctx;
    mnas_learner_options o;
    mnas_mlp *mlp;              /* MAML's network: regression ... */
    mnas_convnet *cnet;         /* ... or image classification */
    int classify;               /* classes > 0: cross-entropy on labels */
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
    /* The modulator's FC is also batched forwards and backwards: training
     * first computes every task's z (phase 1), then U = Z W^T + b for the
     * meta-batch in one product (mod_pre, [slots][total]); the tasks read
     * their row of U (phase 2) and leave dL/du in mod_u; dZ = mod_u W in one
     * product (mod_dz) is then pushed through each task's encoder (phase 3).
     * The tasks of the batch live in btask across the phases. */
    mnas_real *mod_pre, *mod_dz;
    const mnas_task **btask;
    mnas_task **bown;
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
    /* Distribution over processes (mnas_learner_set_distribution): dist_off
     * [nprocs + 1] holds the task ranges of the batch being gathered. */
    mnas_distribution dist;
    size_t *dist_off;
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
    /* issue 17 research option */
    if (o->modulator_form != MNAS_MODULATOR_SIGMOID && o->modulator_form != MNAS_MODULATOR_TWO_SIGMOID &&
        o->modulator_form != MNAS_MODULATOR_ONE_PLUS_TANH && o->modulator_form != MNAS_MODULATOR_FILM)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown modulator_form %d", fn, (int)o->modulator_form);
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
    if (o->classes < 0 || o->classes > 1000)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: classes %d is outside 0..1000", fn, o->classes);
    if (o->classes > 0 && (o->in_channels < 1 || o->in_channels > 64 || o->image_size < 1 || o->image_size > 1024 ||
                           o->filters < 0 || o->filters > 1024 || o->channels < 1 || o->channels > 1024))
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: images need in_channels 1..64, image_size 1..1024, filters 0..1024 and channels "
                           "1..1024 (got %d, %d, %d, %d)",
                           fn, o->in_channels, o->image_size, o->filters, o->channels);
    if (o->sample_ops < 0 || (o->method == MNAS_METHOD_MAML && o->sample_ops != 0))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: sample_ops %lld must be >= 0 (and 0 for MAML, which has no "
                           "mixed edges)", fn, (long long)o->sample_ops);
    if (o->classes > 0 && o->method == MNAS_METHOD_MAML && o->image_size < 16)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: the conv MAML network needs image_size >= 16 (got %d)", fn,
                           o->image_size);
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
    mnas_convnet_free(l->cnet);
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
    mnas__free(l->ctx, l->mod_pre);
    mnas__free(l->ctx, l->mod_dz);
    mnas__free(l->ctx, l->btask);
    mnas__free(l->ctx, l->bown);
    mnas__free(l->ctx, l->goff);
    mnas__free(l->ctx, l->task_grad);
    mnas__free(l->ctx, l->dist_off);
    mnas__free(l->ctx, l);
}

/* The modulator's FC weight and bias: their gradients are formed for the
 * whole meta-batch at once (mod_weight_grad), not per task. */
static int is_mod_fc(const mnas_learner *l, size_t i) { return l->mod && (i == l->s_mod.first || i == l->s_mod.first + 1); }

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
    if (o->method == MNAS_METHOD_MAML && l->classify) {
        l->cnet = mnas_convnet_create(ctx, o->in_channels, o->image_size, o->image_size, o->filters, o->classes);
        if (!l->cnet) return MNAS_E_INVALID;
        l->s_net = add_span(p, mnas_convnet_add_params(l->cnet, p, "net.", 0));
        return l->s_net.count ? MNAS_OK : MNAS_E_INVALID;
    }
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
    l->space = l->classify ? mnas_search_space_darts(ctx) : mnas_search_space_mlp(ctx);
    if (!l->space) return MNAS_E_NOMEM;
    l->net = l->classify ? mnas_supernet_create_conv(l->space, o->in_channels, o->channels, o->nodes, o->classes)
                         : mnas_supernet_create_mlp(l->space, o->in_features, o->hidden, o->nodes, o->out_features);
    if (!l->net) return MNAS_E_INVALID;
    l->s_net = add_span(p, mnas_supernet_add_params(l->net, p, "net.", 0));
    if (!l->s_net.count) return MNAS_E_INVALID;
    l->edges = mnas_supernet_alpha_rows(l->net);
    l->ops = mnas_search_space_num_ops(l->space);
    if (o->sample_ops > (int64_t)l->ops)
        return mnas__error(ctx, MNAS_E_INVALID, "mnas_learner_create: sample_ops %lld is more than the %zu ops of the "
                           "search space", (long long)o->sample_ops, l->ops);
    /* Images reach the encoder flattened, with one-hot labels. */
    int64_t xf = l->classify ? (int64_t)o->in_channels * o->image_size * o->image_size : o->in_features;
    int64_t yf = l->classify ? o->classes : o->out_features;
    l->enc = mnas_task_encoder_create(ctx, xf, yf, o->f_dim, o->z_dim, o->encoder);
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
        if (!l->mod || mnas_modulator_set_form(l->mod, o->modulator_form) != MNAS_OK) return MNAS_E_INVALID;
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
    l->classify = o.classes > 0;
    l->nthreads = o.threads;
    l->params = mnas_params_create(ctx);
    l->alpha_idx = -1;
    l->dist.rank = 0;
    l->dist.nprocs = 1;
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
        if (!is_mod_fc(l, i)) l->red_total += (size_t)mnas_tensor_size(mnas_params_get(l->params, i));
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

mnas_status mnas_learner_set_lr(mnas_learner *l, double outer_lr, double arch_lr)
{
    if (!l) return MNAS_E_INVALID;
    if (!in_range(outer_lr, 0, 1e6) || !in_range(arch_lr, 0, 1e6))
        return mnas__error(l->ctx, MNAS_E_INVALID,
                           "mnas_learner_set_lr: outer_lr %g and arch_lr %g must be finite and in [0, 1e6]", outer_lr,
                           arch_lr);
    /* Valid groups and rates: these cannot fail. */
    (void)mnas_optim_set_group_lr(l->opt, 0, outer_lr);
    (void)mnas_optim_set_group_lr(l->opt, 1, arch_lr);
    l->o.outer_lr = outer_lr;
    l->o.arch_lr = arch_lr;
    return MNAS_OK;
}

int64_t mnas_learner_iteration(const mnas_learner *l) { return l ? l->iteration : 0; }

/* k zeroed blocks of count[i] elements of esize[i] bytes, all or none. */
static int alloc_blocks(mnas_ctx *ctx, size_t k, const size_t *count, const size_t *esize, void **out)
{
    for (size_t i = 0; i < k; i++) {
        size_t bytes;
        out[i] = mnas__mul_ok(count[i], esize[i], &bytes) ? mnas__calloc(ctx, 1, bytes) : NULL;
        if (!out[i]) {
            while (i--) mnas__free(ctx, out[i]);
            return 0;
        }
    }
    return 1;
}

/* Per-task buffers for n tasks; the modulator's u/z rows only when
 * training needs them (evaluation sets can be thousands of tasks). */
static mnas_status ensure_slots(mnas_learner *l, size_t n, int training)
{
    void *b[6];
    if (training && n > l->grad_slots) {
        size_t cnt[1] = { l->red_total }, sz[1] = { sizeof(mnas_real) };
        if (!mnas__mul_ok(n, cnt[0], &cnt[0]) || !alloc_blocks(l->ctx, 1, cnt, sz, b))
            return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate gradients of %zu tasks", n);
        mnas__free(l->ctx, l->task_grad);
        l->task_grad = b[0];
        l->grad_slots = n;
    }
    if (training && l->mod && n > l->mod_slots) {
        /* The first four are BLIS operands; its edge-case kernels were seen
         * (valgrind) to read a vector past the end of a small C, so each
         * gets a pad. */
        enum { PAD = 16 };
        size_t T = n * (size_t)l->mod_total + PAD, Z = n * (size_t)l->mod_zdim + PAD;
        size_t cnt[6] = { T, Z, T, Z, n, n };
        size_t sz[6] = { sizeof(mnas_real), sizeof(mnas_real), sizeof(mnas_real), sizeof(mnas_real),
                         sizeof(const mnas_task *), sizeof(mnas_task *) };
        if (!alloc_blocks(l->ctx, 6, cnt, sz, b))
            return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate modulator buffers for %zu tasks", n);
        mnas__free(l->ctx, l->mod_u);
        mnas__free(l->ctx, l->mod_z);
        mnas__free(l->ctx, l->mod_pre);
        mnas__free(l->ctx, l->mod_dz);
        mnas__free(l->ctx, l->btask);
        mnas__free(l->ctx, l->bown);
        l->mod_u = b[0];
        l->mod_z = b[1];
        l->mod_pre = b[2];
        l->mod_dz = b[3];
        l->btask = b[4];
        l->bown = b[5];
        l->mod_slots = n;
    }
    if (n <= l->slots) return MNAS_OK;
    size_t cnt[3] = { n, n, n }, sz[3] = { sizeof(double), sizeof(mnas_status), sizeof(char[TASK_MSG]) };
    if (!alloc_blocks(l->ctx, 3, cnt, sz, b))
        return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate buffers for %zu tasks", n);
    mnas__free(l->ctx, l->task_loss);
    mnas__free(l->ctx, l->task_status);
    mnas__free(l->ctx, l->task_msg);
    l->task_loss = b[0];
    l->task_status = b[1];
    l->task_msg = b[2];
    l->slots = n;
    return MNAS_OK;
}

/* ---- one task ------------------------------------------------------------ */

typedef struct {
    const mnas_learner *l;
    mnas_tensor *x, *y;
    const int32_t *labels; /* classification: y as class indices */
} support_data;

static mnas_tensor *predict(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                            mnas_tensor *alpha)
{
    if (l->cnet) return mnas_convnet_forward(l->cnet, tp, x, w);
    if (l->mlp) return mnas_mlp_forward(l->mlp, tp, x, w);
    /* Ops of alpha value exactly 0 (sampled out, dropped, or a softmax
     * entry that underflowed) are skipped: the gradient such an entry would
     * receive is multiplied by 0 on its way to the parameters (dropout's
     * mask, softmax's own value) or is by definition not used (sampled
     * edges). The discrete phase's straight-through alpha is the exception:
     * its zeros pass their gradient on unchanged. */
    return mnas__supernet_forward(l->net, tp, x, w, alpha, !l->discrete);
}

/* The task loss of the model's output: the MSE against y, or the
 * cross-entropy against the labels. */
static mnas_tensor *task_loss(const mnas_learner *l, mnas_tape *tp, mnas_tensor *out, mnas_tensor *y,
                              const int32_t *labels)
{
    if (!out) return NULL;
    return l->classify ? mnas_cross_entropy(tp, out, (size_t)mnas_tensor_dim(y, 0), labels) : mnas_mse(tp, out, y);
}

/* The support loss of the inner loop; extra[0] is alpha for the supernet. */
static mnas_tensor *support_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    support_data *d = user;
    return task_loss(d->l, tp, predict(d->l, tp, d->x, w, d->l->net ? extra[0] : NULL), d->y, d->labels);
}

/* A classification task's labels (y [n, 1]) as int32 in the tape's arena;
 * NULL for regression (or with the tape's error set). */
static const int32_t *labels_of(const mnas_learner *l, mnas_tape *tp, const mnas_tensor *y)
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

static mnas_status check_task(const mnas_learner *l, const mnas_task *t, size_t j, char *msg)
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
static mnas_tensor *onehot_of(const mnas_learner *l, mnas_tape *tp, mnas_tensor *alpha)
{
    mnas_genotype *g = mnas_genotype_derive_supernet(l->net, alpha);
    int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
    mnas_tensor *oh = g ? mnas_tape_tensor(tp, 2, sh, NULL) : NULL;
    if (oh && mnas_genotype_onehot_supernet(g, l->net, oh->data) != MNAS_OK) oh = NULL;
    mnas_genotype_free(g);
    if (!oh && !tp->status) mnas__tape_error(tp, MNAS_E_INVALID, "deriving the genotype failed: %s", mnas_ctx_last_error(l->ctx));
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
static mnas_status encode(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream, struct mnas_rng *r,
                          mnas_tensor **z, mnas_tensor **recon)
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
        if (!oh || !sx) return tp->status ? tp->status : MNAS_E_INTERNAL;
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
static mnas_status prepare(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream, int training,
                           mnas_tensor **w0, mnas_tensor **alpha, mnas_tensor **recon, const mnas_real *u_pre,
                           mnas_real *u_grad)
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
    mnas_status st = encode(l, tp, t, stream, &r, &z, recon);
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
    if (a && !l->discrete && l->o.sample_ops > 0 && (size_t)l->o.sample_ops < l->ops)
        a = sample_edges(l, tp, a, &r, training);
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
    /* u = W z + b comes from the meta-batch's product U (phase 2): the
     * modulated weights are ops of the meta-weights alone, and dL/du goes to
     * u_grad for phase 3 (first-order gradients only). */
    if (l->mod && u_pre) return mnas__modulator_apply_row(l->mod, tp, u_pre, u_grad, W + l->s_net.first, w0);
    if (l->mod) return mnas_modulator_forward(l->mod, tp, z, W + l->s_mod.first, W + l->s_net.first, w0);
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
    double *acc_before, *acc_after;
    size_t j0; /* this process's first task: pool index i is task j0 + i */
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
    mnas_real *u_grad = l->mod ? l->mod_u + j * (size_t)l->mod_total : NULL;
    if (u_grad) memset(u_grad, 0, (size_t)l->mod_total * sizeof(mnas_real));
    const mnas_real *u_pre = l->mod ? l->mod_pre + j * (size_t)l->mod_total : NULL;
    if ((st = prepare(l, tp, t, stream, 1, w0, &alpha, &recon, u_pre, u_grad)) != MNAS_OK) return st;
    mnas_tensor *sy = mnas_task_support_y(t), *qy = mnas_task_query_y(t);
    const int32_t *slab = labels_of(l, tp, sy), *qlab = labels_of(l, tp, qy);
    if (l->classify && (!slab || !qlab)) return tp->status ? tp->status : MNAS_E_NOMEM;
    support_data sd = { l, mnas_task_support_x(t), sy, slab };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = l->o.inner_steps;
    io.lr = l->o.inner_lr;
    io.mode = l->o.inner_mode;
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io, fast)) != MNAS_OK)
        return st;
    mnas_tensor *q = task_loss(l, tp, predict(l, tp, mnas_task_query_x(t), fast, alpha), qy, qlab);
    if (!q) return tp->status ? tp->status : MNAS_E_INTERNAL;
    double loss = (double)q->data[0];
    if (recon && l->o.beta > 0) q = mnas_add(tp, q, mnas_scale(tp, recon, l->o.beta));
    if (!q) return tp->status;
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

/* Task j of the batch: given, or drawn from the source (then *own is set
 * and the caller frees it). NULL with the task's message set if the source
 * gave none. Training draws its tasks on the workers, in parallel. */
static const mnas_task *batch_task(mnas_learner *l, const job_data *d, size_t j, mnas_task **own)
{
    *own = NULL;
    if (d->tasks) return d->tasks[j];
    const mnas_task *t = *own = d->source(d->source_user, d->source_base + j);
    if (!t)
        snprintf(l->task_msg[j], TASK_MSG, "task %zu: the task source gave no task %llu", j,
                 (unsigned long long)(d->source_base + j));
    return t;
}

/* Phase 1 of training with a modulator: draw task j and compute its z. */
static void encode_job(void *user, size_t i, int worker)
{
    job_data *d = user;
    size_t j = d->j0 + i;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    const mnas_task *t = l->btask[j] = batch_task(l, d, j, &l->bown[j]);
    mnas_status st = MNAS_E_INVALID;
    if (t && (st = check_task(l, t, j, l->task_msg[j])) == MNAS_OK) {
        struct mnas_rng r;
        mnas_tensor *z;
        mnas_tape_no_grad_begin(tp);
        st = encode(l, tp, t, d->stream0 + j, &r, &z, NULL); /* z only: no decoder */
        mnas_tape_no_grad_end(tp);
        if (st == MNAS_OK)
            memcpy(l->mod_z + j * (size_t)l->mod_zdim, z->data, (size_t)l->mod_zdim * sizeof(mnas_real));
    }
    if (st != MNAS_OK && !l->task_msg[j][0]) record_failure(l, j, tp, st);
    if (st != MNAS_OK) l->task_status[j] = st;
    mnas_tape_reset(tp);
}

/* Phase 3: the modulator's share of the encoder's gradient, dz = dL/du W
 * (row j of mod_dz), through task j's encoder, added to its gradient row. */
static void encoder_dz_job(void *user, size_t i, int worker)
{
    job_data *d = user;
    size_t j = d->j0 + i;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    struct mnas_rng r;
    mnas_tensor *z, *g[MAX_P];
    mnas_status st = encode(l, tp, l->btask[j], d->stream0 + j, &r, &z, NULL); /* L_r's share came in phase 2 */
    if (st == MNAS_OK) {
        int64_t sh[2] = { 1, l->mod_zdim };
        mnas_tensor *dz = mnas_tape_tensor(tp, 2, sh, l->mod_dz + j * (size_t)l->mod_zdim);
        mnas_tensor *s = mnas_sum(tp, mnas_mul(tp, z, dz));
        mnas_tensor *const *W = mnas_params_tensors(l->params);
        st = s ? mnas_grad(tp, s, l->s_enc.count, W + l->s_enc.first, g, 0) : (tp->status ? tp->status : MNAS_E_NOMEM);
    }
    if (st == MNAS_OK) {
        mnas_real *row = l->task_grad + j * l->red_total;
        for (size_t i = 0; i < l->s_enc.count; i++)
            mnas__k_add_scaled(g[i]->size, 1, g[i]->data, row + l->goff[l->s_enc.first + i]);
    } else {
        l->task_status[j] = st;
        record_failure(l, j, tp, st);
    }
    mnas_tape_reset(tp);
}

static void train_job(void *user, size_t i, int worker)
{
    job_data *d = user;
    size_t j = d->j0 + i;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    mnas_tensor *g[MAX_P];
    double loss = 0;
    /* With a modulator, phase 1 drew the task. */
    mnas_task *own = NULL;
    const mnas_task *t = l->mod ? l->btask[j] : batch_task(l, d, j, &own);
    mnas_status st = t ? task_gradient(l, tp, t, j, d->stream0 + j, g, &loss, NULL) : MNAS_E_INVALID;
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
    if (is_mod_fc(l, i)) return; /* formed by mod_weight_grad */
    mnas_tensor *gb = mnas_params_grad(l->params, i);
    mnas_real *dst = mnas_tensor_data(gb);
    int64_t sz = mnas_tensor_size(gb);
    memcpy(dst, l->task_grad + l->goff[i], (size_t)sz * sizeof(mnas_real));
    for (size_t j = 1; j < l->red_n; j++) mnas__k_add_scaled(sz, 1, l->task_grad + j * l->red_total + l->goff[i], dst);
    if (l->red_n > 1) mnas__k_unary(K_SCALE, sz, dst, dst, 1.0 / (double)l->red_n); /* the mean */
}

/* The modulator's three batched products, cut into pieces the pool's
 * workers share: U = Z W^T + b and dZ = dL/dU W by columns,
 * and the FC's gradient (dL/dU)^T Z / n, with its bias's, by rows of W.
 * The pieces are fixed by the shapes alone and every element is one
 * product call's, so the bits do not depend on the number of threads. */
enum { MOD_PIECES = 8, MOD_DZ_COLS = 16 };

typedef struct mod_job {
    mnas_learner *l;
    size_t n;
} mod_job;

static void mod_piece(int64_t total, size_t k, int64_t *lo, int64_t *len)
{
    int64_t step = (total + MOD_PIECES - 1) / MOD_PIECES;
    *lo = (int64_t)k * step < total ? (int64_t)k * step : total;
    *len = total - *lo < step ? total - *lo : step;
}

/* U = Z W^T + b for tasks 0..n-1 (after phase 1), columns of piece k. */
static void mod_forward_job(void *user, size_t k, int worker)
{
    (void)worker;
    const mod_job *mj = user;
    mnas_learner *l = mj->l;
    int64_t j0, nc, T = l->mod_total, Zd = l->mod_zdim;
    mod_piece(T, k, &j0, &nc);
    if (nc <= 0) return;
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    const mnas_real *w = mnas_tensor_cdata(W[l->s_mod.first]), *b = mnas_tensor_cdata(W[l->s_mod.first + 1]);
    mnas__k_gemm(0, 1, (int64_t)mj->n, nc, Zd, 1, l->mod_z, Zd, w + j0 * Zd, Zd, 0, l->mod_pre + j0, T);
    for (size_t j = 0; j < mj->n; j++) mnas__k_add_scaled(nc, 1, b + j0, l->mod_pre + j * (size_t)T + j0);
}

/* dZ = dL/dU W for tasks 0..n-1 (after phase 2), columns 16k.. of it (a
 * piece reads all of dL/dU and its share of W's rows). */
static void mod_backward_job(void *user, size_t k, int worker)
{
    (void)worker;
    const mod_job *mj = user;
    mnas_learner *l = mj->l;
    int64_t T = l->mod_total, Zd = l->mod_zdim, c0 = (int64_t)k * MOD_DZ_COLS;
    int64_t nc = Zd - c0 < MOD_DZ_COLS ? Zd - c0 : MOD_DZ_COLS;
    const mnas_real *w = mnas_tensor_cdata(mnas_params_get(l->params, l->s_mod.first));
    mnas__k_gemm(0, 0, (int64_t)mj->n, nc, T, 1, l->mod_u, T, w + c0, Zd, 0, l->mod_dz + c0, Zd);
}

/* The FC's gradient, the mean over tasks 0..n-1, rows of piece k of W (and
 * the same entries of b: the rows of dL/dU summed in task order). */
static void mod_grad_job(void *user, size_t k, int worker)
{
    (void)worker;
    const mod_job *mj = user;
    mnas_learner *l = mj->l;
    int64_t r0, nr, T = l->mod_total, Zd = l->mod_zdim;
    mod_piece(T, k, &r0, &nr);
    if (nr <= 0) return;
    size_t n = mj->n;
    mnas_real inv = (mnas_real)(1.0 / (double)n);
    mnas_real *gw = mnas_tensor_data(mnas_params_grad(l->params, l->s_mod.first));
    mnas__k_gemm(1, 0, nr, Zd, (int64_t)n, inv, l->mod_u + r0, T, l->mod_z, Zd, 0, gw + r0 * Zd, Zd);
    mnas_real *gb = mnas_tensor_data(mnas_params_grad(l->params, l->s_mod.first + 1)) + r0;
    memcpy(gb, l->mod_u + r0, (size_t)nr * sizeof(mnas_real));
    for (size_t j = 1; j < n; j++) mnas__k_add_scaled(nr, 1, l->mod_u + j * (size_t)T + r0, gb);
    if (n > 1) mnas__k_unary(K_SCALE, nr, gb, gb, 1.0 / (double)n);
}

static void mod_weight_grad(mnas_learner *l, size_t n)
{
    if (!l->mod) return;
    mod_job mj = { l, n };
    mnas__pool_run(l->pool, MOD_PIECES, mod_grad_job, &mj);
}

static void mod_forward_batch(mnas_learner *l, size_t n)
{
    mod_job mj = { l, n };
    mnas__pool_run(l->pool, MOD_PIECES, mod_forward_job, &mj);
}

static void mod_backward_batch(mnas_learner *l, size_t n)
{
    mod_job mj = { l, n };
    mnas__pool_run(l->pool, (size_t)((l->mod_zdim + MOD_DZ_COLS - 1) / MOD_DZ_COLS), mod_backward_job, &mj);
}

/* ---- distribution ---------------------------------------------------------- */

static void task_range(const mnas_learner *l, size_t n, int r, size_t *first, size_t *end)
{
    /* n <= 100000 tasks and nprocs <= 65536: no overflow. */
    *first = n * (size_t)r / (size_t)l->dist.nprocs;
    *end = n * (size_t)(r + 1) / (size_t)l->dist.nprocs;
}

/* Make every process hold all n units of data (unit bytes each). */
static mnas_status gather(mnas_learner *l, const char *fn, void *data, size_t unit, size_t n)
{
    if (l->dist.nprocs <= 1) return MNAS_OK;
    for (int r = 0; r <= l->dist.nprocs; r++) l->dist_off[r] = n * (size_t)r / (size_t)l->dist.nprocs;
    mnas_ctx_clear_error(l->ctx);
    mnas_status st = l->dist.allgather(l->dist.user, data, unit, l->dist_off);
    if (st != MNAS_OK) {
        char msg[MNAS_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", mnas_ctx_last_error(l->ctx));
        return mnas__error(l->ctx, st, "%s: rank %d of %d: the allgather failed: %s", fn, l->dist.rank,
                           l->dist.nprocs, msg[0] ? msg : mnas_status_str(st));
    }
    return MNAS_OK;
}

static int batch_failed(const mnas_learner *l, size_t n);

/* Every task's status, and when one failed every task's message, so that
 * every process fails alike (all see the same statuses, so all agree on
 * gathering the messages). */
static mnas_status gather_status(mnas_learner *l, const char *fn, size_t n)
{
    mnas_status st = gather(l, fn, l->task_status, sizeof *l->task_status, n);
    if (st == MNAS_OK && batch_failed(l, n)) st = gather(l, fn, l->task_msg, sizeof *l->task_msg, n);
    return st;
}

mnas_status mnas_learner_set_distribution(mnas_learner *l, const mnas_distribution *dist)
{
    const char *fn = "mnas_learner_set_distribution";
    if (!l) return MNAS_E_INVALID;
    mnas_distribution d = MNAS_DISTRIBUTION_INIT;
    if (dist) {
        if (dist->struct_size < sizeof(size_t) || dist->struct_size > 4 * sizeof d)
            return mnas__error(l->ctx, MNAS_E_INVALID, "%s: struct_size %zu is not valid", fn, dist->struct_size);
        memcpy(&d, dist, dist->struct_size < sizeof d ? dist->struct_size : sizeof d);
        d.struct_size = sizeof d;
    }
    if (d.nprocs < 1 || d.nprocs > 65536 || d.rank < 0 || d.rank >= d.nprocs)
        return mnas__error(l->ctx, MNAS_E_INVALID, "%s: rank %d of %d processes (need 0 <= rank < nprocs <= 65536)",
                           fn, d.rank, d.nprocs);
    if (d.nprocs > 1 && !d.allgather)
        return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d processes need an allgather callback", fn, d.nprocs);
    size_t *off = mnas__calloc(l->ctx, (size_t)d.nprocs + 1, sizeof *off);
    if (!off) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate %d task ranges", fn, d.nprocs);
    mnas__free(l->ctx, l->dist_off);
    l->dist_off = off;
    l->dist = d;
    return MNAS_OK;
}

mnas_status mnas_learner_task_range(const mnas_learner *l, size_t n, size_t *first, size_t *end)
{
    if (!l) return MNAS_E_INVALID;
    if (!first || !end) return mnas__error(l->ctx, MNAS_E_INVALID, "mnas_learner_task_range: NULL output");
    task_range(l, n, l->dist.rank, first, end);
    return MNAS_OK;
}

int mnas_learner_rank(const mnas_learner *l) { return l ? l->dist.rank : 0; }

static int batch_failed(const mnas_learner *l, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (l->task_status[j] != MNAS_OK) return 1;
    return 0;
}

mnas_status mnas_learner_task_objective(mnas_learner *l, const mnas_task *task, uint64_t stream, double *objective,
                                        int want_grad)
{
    const char *fn = "mnas_learner_task_objective";
    if (!l) return MNAS_E_INVALID;
    if (!task || !objective) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task and objective must not be NULL", fn);
    if (l->P > MAX_P) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: too many parameter tensors", fn);
    /* The same phases as training (see mnas_learner.mod_pre), for one task. */
    mnas_status st = ensure_slots(l, 1, want_grad || l->mod);
    if (st != MNAS_OK) return st;
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    l->task_msg[0][0] = '\0';
    l->task_status[0] = MNAS_OK;
    const mnas_task *one[1] = { task };
    job_data d = { l, one, NULL, NULL, 0, 0, stream, NULL, NULL, NULL, NULL, 0 };
    if (l->mod) {
        encode_job(&d, 0, 0);
        if (l->task_status[0] != MNAS_OK) return mnas__error(l->ctx, l->task_status[0], "%s: %s", fn, l->task_msg[0]);
        mod_forward_batch(l, 1);
    }
    mnas_tensor *g[MAX_P];
    double loss;
    st = task_gradient(l, tp, task, 0, stream, want_grad ? g : NULL, &loss, objective);
    if (st != MNAS_OK) {
        mnas_tape_reset(tp);
        return mnas__error(l->ctx, st, "%s: %s", fn, l->task_msg[0][0] ? l->task_msg[0] : tp->msg);
    }
    if (want_grad) {
        for (size_t i = 0; i < l->P; i++)
            if (g[i]) memcpy(l->task_grad + l->goff[i], g[i]->data, (size_t)g[i]->size * sizeof(mnas_real));
        mnas_tape_reset(tp);
        if (l->mod) {
            mod_backward_batch(l, 1);
            encoder_dz_job(&d, 0, 0);
            if (l->task_status[0] != MNAS_OK)
                return mnas__error(l->ctx, l->task_status[0], "%s: %s", fn, l->task_msg[0]);
        }
        l->red_n = 1;
        for (size_t i = 0; i < l->P; i++) reduce_job(l, i, 0);
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
    size_t lo, hi;
    task_range(l, n, l->dist.rank, &lo, &hi);
    for (size_t j = 0; j < n; j++) {
        l->task_msg[j][0] = '\0';
        l->task_status[j] = MNAS_OK;
    }
    job_data d = { l, tasks, source, source_user, (uint64_t)l->iteration * (uint64_t)n, 0,
                   (uint64_t)l->iteration * (uint64_t)n, NULL, NULL, NULL, NULL, lo };
    /* This process computes tasks lo..hi-1; each gather gives every process
     * all tasks' results, so what follows a gather is what one process
     * computing the whole batch does, bit for bit. Every process makes the
     * same gathers whatever failed. */
    if (l->mod) {
        /* The three phases (see mnas_learner.mod_pre). */
        mnas__pool_run(l->pool, hi - lo, encode_job, &d);
        if ((st = gather_status(l, fn, n)) == MNAS_OK)
            st = gather(l, fn, l->mod_z, (size_t)l->mod_zdim * sizeof(mnas_real), n);
        if (st == MNAS_OK && !batch_failed(l, n)) {
            mod_forward_batch(l, n);
            mnas__pool_run(l->pool, hi - lo, train_job, &d);
        }
        if (st == MNAS_OK && (st = gather_status(l, fn, n)) == MNAS_OK)
            st = gather(l, fn, l->mod_u, (size_t)l->mod_total * sizeof(mnas_real), n);
        if (st == MNAS_OK && !batch_failed(l, n)) {
            mod_backward_batch(l, n);
            mnas__pool_run(l->pool, hi - lo, encoder_dz_job, &d);
        }
        for (size_t j = lo; j < hi; j++) {
            mnas_task_free(l->bown[j]);
            l->bown[j] = NULL;
        }
    } else {
        mnas__pool_run(l->pool, hi - lo, train_job, &d);
    }
    if (st == MNAS_OK) st = gather_status(l, fn, n);
    if (st == MNAS_OK && !batch_failed(l, n)) {
        if ((st = gather(l, fn, l->task_grad, l->red_total * sizeof(mnas_real), n)) == MNAS_OK)
            st = gather(l, fn, l->task_loss, sizeof *l->task_loss, n);
    }
    if (st != MNAS_OK) {
        mnas_params_zero_grad(l->params);
        return st;
    }
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
    mean_loss /= (double)n;
    if ((st = mnas__optim_step_pool(l->opt, l->pool)) != MNAS_OK)
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
/* The query loss (and, with acc, the accuracy) of weights w. */
static mnas_status query_eval(mnas_learner *l, mnas_tape *tp, const mnas_task *t, mnas_tensor *const *w,
                              mnas_tensor *alpha, const int32_t *qlab, double *loss, double *acc)
{
    mnas_tensor *qy = mnas_task_query_y(t);
    mnas_tape_no_grad_begin(tp);
    mnas_tensor *out = predict(l, tp, mnas_task_query_x(t), w, alpha);
    mnas_tensor *q = task_loss(l, tp, out, qy, qlab);
    mnas_tape_no_grad_end(tp);
    if (!q) return tp->status ? tp->status : MNAS_E_INTERNAL;
    if (loss) *loss = (double)q->data[0];
    if (acc) {
        /* The first largest logit wins a tie. */
        int64_t n = out->shape[0], c = out->shape[1], right = 0;
        for (int64_t i = 0; i < n; i++) {
            const mnas_real *row = out->data + i * c;
            int64_t best = 0;
            for (int64_t k = 1; k < c; k++)
                if (row[k] > row[best]) best = k;
            right += best == qlab[i];
        }
        *acc = n ? (double)right / (double)n : 0.0;
    }
    return MNAS_OK;
}

static mnas_status adapt(mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream, int steps,
                         mnas_tensor **fast, mnas_tensor **alpha_out, double *before, double *after,
                         double *acc_before, double *acc_after)
{
    mnas_tensor *w0[MAX_P], *alpha, *recon;
    mnas_status st = prepare(l, tp, t, stream, 0, w0, &alpha, &recon, NULL, NULL);
    if (st != MNAS_OK) return st;
    mnas_tensor *sy = mnas_task_support_y(t);
    const int32_t *slab = labels_of(l, tp, sy), *qlab = labels_of(l, tp, mnas_task_query_y(t));
    if (l->classify && (!slab || !qlab)) return tp->status ? tp->status : MNAS_E_NOMEM;
    if ((before || acc_before) && (st = query_eval(l, tp, t, w0, alpha, qlab, before, acc_before)) != MNAS_OK)
        return st;
    support_data sd = { l, mnas_task_support_x(t), sy, slab };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = steps;
    io.lr = l->o.inner_lr;
    io.mode = MNAS_INNER_FIRST_ORDER; /* no meta-gradient needed */
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io, fast)) != MNAS_OK)
        return st;
    if ((after || acc_after) && (st = query_eval(l, tp, t, fast, alpha, qlab, after, acc_after)) != MNAS_OK)
        return st;
    if (alpha_out) *alpha_out = alpha;
    return MNAS_OK;
}

#define EVAL_STREAM ((uint64_t)1 << 62)

static void eval_job(void *user, size_t i, int worker)
{
    job_data *d = user;
    size_t j = d->j0 + i;
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
               d->after ? &d->after[j] : NULL, d->acc_before ? &d->acc_before[j] : NULL,
               d->acc_after ? &d->acc_after[j] : NULL);
    if (st != MNAS_OK) record_failure(l, j, tp, st);
}

static mnas_status evaluate(mnas_learner *l, const char *fn, const mnas_task_set *set, int steps, double *before,
                           double *after, double *acc_before, double *acc_after)
{
    size_t n = mnas_task_set_size(set);
    if (!set || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: the task set is empty or NULL", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    mnas_status st = ensure_slots(l, n, 0);
    if (st != MNAS_OK) return st;
    const mnas_task **tasks = mnas__calloc(l->ctx, n, sizeof *tasks);
    if (!tasks) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    for (size_t j = 0; j < n; j++) tasks[j] = mnas_task_set_get(set, j);
    size_t lo, hi;
    task_range(l, n, l->dist.rank, &lo, &hi);
    job_data d = { l, tasks, NULL, NULL, 0, steps, 0, before, after, acc_before, acc_after, lo };
    for (size_t j = 0; j < n; j++) l->task_msg[j][0] = '\0';
    mnas__pool_run(l->pool, hi - lo, eval_job, &d);
    mnas__free(l->ctx, tasks);
    /* Evaluation is split across processes like training. */
    st = gather_status(l, fn, n);
    double *outs[4] = { before, after, acc_before, acc_after };
    for (int k = 0; k < 4 && st == MNAS_OK; k++)
        if (outs[k]) st = gather(l, fn, outs[k], sizeof(double), n);
    if (st != MNAS_OK) return st;
    for (size_t j = 0; j < n; j++)
        if (l->task_status[j] != MNAS_OK)
            return mnas__error(l->ctx, l->task_status[j], "%s: %s", fn, l->task_msg[j]);
    return MNAS_OK;
}

mnas_status mnas_learner_evaluate(mnas_learner *l, const mnas_task_set *set, int steps, double *before, double *after)
{
    if (!l) return MNAS_E_INVALID;
    return evaluate(l, "mnas_learner_evaluate", set, steps, before, after, NULL, NULL);
}

mnas_status mnas_learner_evaluate_accuracy(mnas_learner *l, const mnas_task_set *set, int steps, double *acc_before,
                                           double *acc_after)
{
    const char *fn = "mnas_learner_evaluate_accuracy";
    if (!l) return MNAS_E_INVALID;
    if (!l->classify) return mnas__error(l->ctx, MNAS_E_STATE, "%s: the learner does regression, not classification", fn);
    return evaluate(l, fn, set, steps, NULL, NULL, acc_before, acc_after);
}

mnas_status mnas_learner_adapt_predict(mnas_learner *l, const mnas_task *task, int steps, size_t n, const mnas_real *x,
                                       mnas_real *y)
{
    const char *fn = "mnas_learner_adapt_predict";
    if (!l) return MNAS_E_INVALID;
    if (!task || !x || !y || n == 0 || n > 1000000)
        return mnas__error(l->ctx, MNAS_E_INVALID, "%s: need a task and 1..1000000 inputs", fn);
    if (l->classify || l->o.in_features != 1)
        return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: only for regression models with one input feature", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    if (l->P > MAX_P) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: too many parameter tensors", fn);
    char msg[TASK_MSG];
    mnas_status st = check_task(l, task, 0, msg);
    if (st != MNAS_OK) return mnas__error(l->ctx, st, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    mnas_tensor *fast[MAX_P], *alpha = NULL;
    if ((st = adapt(l, tp, task, EVAL_STREAM, steps, fast, &alpha, NULL, NULL, NULL, NULL)) != MNAS_OK)
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
    if (!l->net) return mnas__error(l->ctx, MNAS_E_STATE, "%s: MAML has no architecture to discretise", fn);
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
    if (!l->net) {
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
    mnas_genotype *g = a ? mnas_genotype_derive_supernet(l->net, a) : NULL;
    if (!a) mnas__error(l->ctx, tp->status ? tp->status : MNAS_E_INTERNAL, "%s: %s", fn, tp->msg);
    mnas_tape_reset(tp);
    return g;
}

mnas_status mnas_learner_task_embedding(mnas_learner *l, const mnas_task *task, double *z, size_t cap,
                                        size_t *z_dim)
{
    const char *fn = "mnas_learner_task_embedding";
    if (!l) return MNAS_E_INVALID;
    if (!l->enc) return mnas__error(l->ctx, MNAS_E_STATE, "%s: %s has no task encoder", fn, mnas_method_name(l->o.method));
    if (!task || !z) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task or z is NULL", fn);
    size_t d = (size_t)l->o.z_dim;
    if (cap < d) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: room for %zu values, z has %zu", fn, cap, d);
    char msg[TASK_MSG];
    if (check_task(l, task, 0, msg) != MNAS_OK) return mnas__error(l->ctx, MNAS_E_SHAPE, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    struct mnas_rng r;
    mnas_tensor *zt = NULL;
    mnas_status st = encode(l, tp, task, EVAL_STREAM, &r, &zt, NULL);
    if (st == MNAS_OK && zt) {
        const mnas_real *zd = mnas_tensor_cdata(zt);
        for (size_t k = 0; k < d; k++) z[k] = (double)zd[k];
        if (z_dim) *z_dim = d;
    } else {
        st = mnas__error(l->ctx, st != MNAS_OK ? st : MNAS_E_INTERNAL, "%s: %s", fn, tp->msg);
    }
    mnas_tape_reset(tp);
    return st;
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
