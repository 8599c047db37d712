/* The meta-learner, its core: the method's model built from its options
 * (network or supernet over a search space, task encoder, controller or
 * shared alpha, modulator), the parameter set and optimiser, the worker pool
 * and the per-task buffers. The phases live beside it: learner_task.c (one
 * task's objective), learner_batch.c (meta-batches, reduction, training),
 * learner_eval.c (evaluation and the architecture phase) and
 * learner_checkpoint.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "meta/learner_internal.h"

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

const char *mnas_inner_lr_mode_name(mnas_inner_lr_mode m)
{
    switch (m) {
    case MNAS_INNER_LR_FIXED: return "fixed";
    case MNAS_INNER_LR_PER_TENSOR: return "per-tensor";
    case MNAS_INNER_LR_PER_ELEMENT: return "per-element";
    }
    return "unknown";
}

static int in_range(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

static mnas_status check_options(mnas_ctx *ctx, const char *fn, const mnas_learner_options *o, int user_net)
{
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
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: nodes %d (1..8), z_dim %d, f_dim %d, controller_hidden %d (1..4096)", fn, o->nodes,
                           o->z_dim, o->f_dim, o->controller_hidden);
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
        o->inner_mode != MNAS_INNER_RECOMPUTE && o->inner_mode != MNAS_INNER_RECOMPUTE_CELLS)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown inner_mode %d", fn, (int)o->inner_mode);
    if (o->inner_lr_mode != MNAS_INNER_LR_FIXED && o->inner_lr_mode != MNAS_INNER_LR_PER_TENSOR &&
        o->inner_lr_mode != MNAS_INNER_LR_PER_ELEMENT)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown inner_lr_mode %d", fn, (int)o->inner_lr_mode);
    if (o->inner_lr_mode != MNAS_INNER_LR_FIXED &&
        (o->inner_mode == MNAS_INNER_RECOMPUTE || o->inner_mode == MNAS_INNER_RECOMPUTE_CELLS))
        return mnas__error(ctx, MNAS_E_UNSUPPORTED,
                           "%s: inner_lr_mode %s (learned inner rates) does not support inner_mode %s; use "
                           "second or first order",
                           fn, mnas_inner_lr_mode_name(o->inner_lr_mode),
                           o->inner_mode == MNAS_INNER_RECOMPUTE ? "recompute" : "recompute_cells");
    if (o->inner_lr_max != 0) {
        if (o->inner_lr_mode == MNAS_INNER_LR_FIXED)
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: inner_lr_max %g bounds learned inner rates; inner_lr_mode is fixed (use 0)", fn,
                               o->inner_lr_max);
        /* The bound's log range b = log(inner_lr_max / inner_lr) must be
         * positive and finite. */
        if (!(o->inner_lr > 0) || !in_range(o->inner_lr_max, 0, 1e6) || !(o->inner_lr_max > o->inner_lr) ||
            !(o->inner_lr_max <= 1e6 * o->inner_lr))
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: inner_lr_max %g must be 0 or finite, above inner_lr %g > 0 and at most "
                               "1e6 times it",
                               fn, o->inner_lr_max, o->inner_lr);
    }
    if (!(o->encoder_input_scale >= 0 && o->encoder_input_scale <= 1))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: encoder_input_scale %g is outside [0, 1] (0: unscaled)", fn,
                           o->encoder_input_scale);
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
    if (o->stem_stride != 1 && (o->stem_stride != 2 && o->stem_stride != 4 ? 1 : o->classes <= 0 ||
                                                                                o->method == MNAS_METHOD_MAML))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: stem_stride %d must be 1, 2 or 4 (and 1 for MAML and "
                           "regression, which have no conv supernet)", fn, o->stem_stride);
    if (o->sample_ops < 0 || (o->method == MNAS_METHOD_MAML && o->sample_ops != 0))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: sample_ops %lld must be >= 0 (and 0 for MAML, which has no "
                           "mixed edges)", fn, (long long)o->sample_ops);
    if (o->classes > 0 && o->method == MNAS_METHOD_MAML && !user_net && o->image_size < 16)
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
    mnas_search_space_free(l->own_space);
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
/* A user's network for MAML (mnas_learner_create_with_network). */
typedef struct {
    mnas_network_params_fn params;
    mnas_network_forward_fn forward;
    void *user;
} user_network;

static mnas_status build_model(mnas_learner *l, const char *fn, const mnas_search_space *space,
                               const user_network *un)
{
    const mnas_learner_options *o = &l->o;
    mnas_ctx *ctx = l->ctx;
    mnas_params *p = l->params;
    if (un) {
        mnas_ctx_clear_error(ctx);
        mnas_status st = un->params(un->user, p);
        if (st != MNAS_OK) {
            char msg[MNAS_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", mnas_ctx_last_error(ctx));
            return mnas__error(ctx, st, "%s: the network's params callback failed: %s", fn,
                               msg[0] ? msg : mnas_status_str(st));
        }
        l->s_net = add_span(p, 0);
        if (!l->s_net.count || l->s_net.count > MAX_P)
            return mnas__error(ctx, MNAS_E_INVALID, "%s: the network has %zu parameter tensors (1..%d)", fn,
                               l->s_net.count, MAX_P);
        l->user_forward = un->forward;
        l->user_net = un->user;
        return MNAS_OK;
    }
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
    /* The presets' spaces are built here; a user's space takes the same path. */
    if (!space) {
        l->own_space = l->classify ? mnas_search_space_darts(ctx) : mnas_search_space_mlp(ctx);
        if (!l->own_space) return MNAS_E_NOMEM;
        space = l->own_space;
    }
    l->space = space;
    l->net = l->classify ? mnas_supernet_create_conv(l->space, o->in_channels, o->channels, o->nodes, o->classes)
                         : mnas_supernet_create_mlp(l->space, o->in_features, o->hidden, o->nodes, o->out_features);
    if (!l->net) return MNAS_E_INVALID;
    if (l->classify && mnas_supernet_set_stem_stride(l->net, o->stem_stride) != MNAS_OK) return MNAS_E_INVALID;
    l->s_net = add_span(p, mnas_supernet_add_params(l->net, p, "net.", 0));
    if (!l->s_net.count) return MNAS_E_INVALID;
    l->edges = mnas_supernet_alpha_rows(l->net);
    l->ops = mnas_search_space_num_ops(l->space);
    if (o->sample_ops > (int64_t)l->ops)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: sample_ops %lld is more than the %zu ops of the search space", fn,
                           (long long)o->sample_ops, l->ops);
    /* Images reach the encoder flattened, with one-hot labels. */
    int64_t xf = l->classify ? (int64_t)o->in_channels * o->image_size * o->image_size : o->in_features;
    int64_t yf = l->classify ? o->classes : o->out_features;
    l->enc = mnas_task_encoder_create(ctx, xf, yf, o->f_dim, o->z_dim, o->encoder);
    if (!l->enc) return MNAS_E_INVALID;
    if (o->encoder_input_scale > 0 && mnas_task_encoder_set_input_scale(l->enc, o->encoder_input_scale) != MNAS_OK)
        return MNAS_E_INVALID;
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
        mnas__modulator_fc_shape(l->mod, &l->mod_total, &l->mod_zdim);
    }
    return MNAS_OK;
}

/* Learned inner rates (inner_lr_mode): one parameter rho per network
 * weight, "lr." + its name ("lr.#" + its index when that name would be too
 * long), [1] or the weight's shape, every element 0: the rate is inner_lr *
 * exp(rho) (mnas__learner_rates). Added last, so the other parameters'
 * indices and initial values do not depend on the mode. */
static mnas_status add_rates(mnas_learner *l, const char *fn)
{
    if (l->o.inner_lr_mode == MNAS_INNER_LR_FIXED) return MNAS_OK;
    mnas_params *p = l->params;
    size_t first = mnas_params_count(p);
    for (size_t i = 0; i < l->s_net.count; i++) {
        const mnas_tensor *w = mnas_params_get(p, l->s_net.first + i);
        const char *wn = mnas_params_name(p, l->s_net.first + i);
        char name[80];
        if (strlen(wn) + 3 <= 63) snprintf(name, sizeof name, "lr.%s", wn);
        else snprintf(name, sizeof name, "lr.#%zu", i);
        int64_t one[1] = { 1 };
        int per_element = l->o.inner_lr_mode == MNAS_INNER_LR_PER_ELEMENT;
        if (mnas_params_add(p, name, per_element ? w->ndim : 1, per_element ? w->shape : one, MNAS_INIT_ZEROS, 0,
                            0) < 0) {
            char msg[MNAS_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", mnas_ctx_last_error(l->ctx));
            return mnas__error(l->ctx, MNAS_E_INVALID, "%s: cannot add the inner rate %s: %s", fn, name, msg);
        }
    }
    l->s_lr.first = first;
    l->s_lr.count = l->s_net.count;
    return MNAS_OK;
}

/* The learner of options opts over space (NULL: the preset's built-in one). */
static mnas_learner *create(mnas_ctx *ctx, const char *fn, const mnas_learner_options *opts,
                            const mnas_search_space *space, const user_network *un)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof o) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: options struct_size %zu is not valid", fn, opts->struct_size);
            return NULL;
        }
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
        o.struct_size = sizeof o;
    }
    if (check_options(ctx, fn, &o, un != NULL) != MNAS_OK) return NULL;
    if (un && o.method != MNAS_METHOD_MAML) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: a user's network is for MAML (the M-NAS methods search a supernet: "
                    "mnas_learner_create_with_space)", fn);
        return NULL;
    }
    if (space && o.method == MNAS_METHOD_MAML) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: MAML has no search space (method M-NAS, M-NAS-Shared or M-NAS-NM)", fn);
        return NULL;
    }
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
    l->alpha_temp = 1;
    l->dist.rank = 0;
    l->dist.nprocs = 1;
    if (!l->params) goto fail;
    if (build_model(l, fn, space, un) != MNAS_OK || add_rates(l, fn) != MNAS_OK) goto fail;
    if (mnas_params_count(l->params) > MAX_P) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %zu parameter tensors (at most %d)", fn, mnas_params_count(l->params),
                    MAX_P);
        goto fail;
    }
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

mnas_learner *mnas_learner_create(mnas_ctx *ctx, const mnas_learner_options *opts)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    return create(ctx, "mnas_learner_create", opts, NULL, NULL);
}

mnas_learner *mnas_learner_create_with_space(mnas_ctx *ctx, const mnas_learner_options *opts,
                                             const mnas_search_space *space)
{
    const char *fn = "mnas_learner_create_with_space";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!space) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: space is NULL", fn);
        return NULL;
    }
    if (space->ctx != ctx) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the search space belongs to another context", fn);
        return NULL;
    }
    return create(ctx, fn, opts, space, NULL);
}

mnas_learner *mnas_learner_create_with_network(mnas_ctx *ctx, const mnas_learner_options *opts,
                                               mnas_network_params_fn params, mnas_network_forward_fn forward,
                                               void *user)
{
    const char *fn = "mnas_learner_create_with_network";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!params || !forward) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the params and forward callbacks are required", fn);
        return NULL;
    }
    user_network un = { params, forward, user };
    return create(ctx, fn, opts, NULL, &un);
}

const mnas_search_space *mnas_learner_search_space(const mnas_learner *l) { return l ? l->space : NULL; }

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

mnas_status mnas_learner_set_alpha_temperature(mnas_learner *l, double temperature)
{
    if (!l) return MNAS_E_INVALID;
    const char *fn = "mnas_learner_set_alpha_temperature";
    if (!l->net) return mnas__error(l->ctx, MNAS_E_STATE, "%s: MAML has no architecture weights", fn);
    if (!mnas__temperature_ok(temperature))
        return mnas__error(l->ctx, MNAS_E_INVALID, "%s: temperature %g must be finite and in [%g, %g]", fn, temperature,
                           MNAS__TEMP_MIN, MNAS__TEMP_MAX);
    if (l->ctl) (void)mnas_controller_set_temperature(l->ctl, temperature); /* in range: cannot fail */
    l->alpha_temp = temperature;
    return MNAS_OK;
}

double mnas_learner_alpha_temperature(const mnas_learner *l) { return l ? l->alpha_temp : 1; }

mnas_tensor *mnas__learner_shared_alpha(const mnas_learner *l, mnas_tape *tp)
{
    mnas_tensor *logits = mnas_params_get(l->params, (size_t)l->alpha_idx);
    if (l->alpha_temp != 1) logits = mnas_scale(tp, logits, 1 / l->alpha_temp);
    return mnas_softmax(tp, logits);
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
mnas_status mnas__learner_ensure_slots(mnas_learner *l, size_t n, int training)
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
            return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate modulator buffers for %zu tasks",
                               n);
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
