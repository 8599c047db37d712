/* The learner's checkpoints: its options, state, parameters and optimiser
 * state as records of the checkpoint format (lib/io/checkpoint.c), a load
 * that validates everything before changing the learner, and training with
 * periodic checkpoints and a divergence guard. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/atomic_file.h"
#include "io/checkpoint_internal.h"
#include "meta/learner_internal.h"

/* ---- the learner's options ---------------------------------------------------- */

typedef struct {
    const char *name;
    int is_real;
    size_t offset;
} opt_field;

#define OF_I(f) { "config." #f, 0, offsetof(mnas_learner_options, f) }
#define OF_R(f) { "config." #f, 1, offsetof(mnas_learner_options, f) }

/* Every option but threads (which never changes results); seed is stored as
 * its bit pattern in an i64. Enums are stored as i64 too. */
static const opt_field opt_fields[] = {
    OF_I(method),    OF_I(meta_batch), OF_I(inner_steps),   OF_R(inner_lr),   OF_R(outer_lr),
    OF_I(inner_mode), OF_R(clip_norm), OF_I(hidden),        OF_I(layers),     OF_I(in_features),
    OF_I(out_features), OF_R(arch_lr), OF_R(beta),          OF_R(path_dropout), OF_I(nodes),
    OF_I(z_dim),     OF_I(f_dim),      OF_I(controller_hidden), OF_I(encoder), OF_I(modulation),
    OF_R(modulator_bias), OF_I(classes), OF_I(in_channels), OF_I(image_size), OF_I(filters),
    OF_I(channels),
};
#define N_OPT_FIELDS (sizeof opt_fields / sizeof opt_fields[0])

/* Enum-typed fields are int-sized in C11 on every ABI libmnas supports. */
static int64_t opt_get_i(const mnas_learner_options *o, size_t off)
{
    int v;
    memcpy(&v, (const char *)o + off, sizeof v);
    return v;
}

static void w_options(mnas__ckpt_writer *w, const mnas_learner_options *o)
{
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        if (f->is_real) {
            double v;
            memcpy(&v, (const char *)o + f->offset, sizeof v);
            mnas__ckpt_w_f64(w, f->name, v);
        } else {
            mnas__ckpt_w_i64(w, f->name, opt_get_i(o, f->offset));
        }
    }
    mnas__ckpt_w_u64(w, "config.seed", o->seed);
    mnas__ckpt_w_i64(w, "config.threads", o->threads);
    mnas__ckpt_w_i64(w, "config.modulator_form", (int64_t)o->modulator_form);
    mnas__ckpt_w_i64(w, "config.sample_ops", o->sample_ops);
    mnas__ckpt_w_i64(w, "config.stem_stride", o->stem_stride);
    mnas__ckpt_w_i64(w, "config.inner_lr_mode", (int64_t)o->inner_lr_mode);
    mnas__ckpt_w_f64(w, "config.inner_lr_max", o->inner_lr_max);
    mnas__ckpt_w_f64(w, "config.encoder_input_scale", o->encoder_input_scale);
}

/* Read the options of a checkpoint into o (threads included). */
static mnas_status read_options(const mnas__ckpt *c, const char *what, mnas_learner_options *o)
{
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        mnas_status st;
        if (f->is_real) {
            double v;
            if ((st = mnas__ckpt_need_f64(c, what, f->name, &v)) != MNAS_OK) return st;
            memcpy((char *)&r + f->offset, &v, sizeof v);
        } else {
            int64_t v;
            if ((st = mnas__ckpt_need_i64(c, what, f->name, &v)) != MNAS_OK) return st;
            if (v < INT32_MIN || v > INT32_MAX)
                return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: %s is %lld (out of range)", what, f->name, (long long)v);
            int iv = (int)v;
            memcpy((char *)&r + f->offset, &iv, sizeof iv);
        }
    }
    const mnas__ckpt_record *s;
    mnas_status st = mnas__ckpt_need(c, what, "config.seed", MNAS__DT_U64, 0, NULL, &s);
    if (st != MNAS_OK) return st;
    r.seed = mnas__ckpt_get_u64(s->data);
    int64_t th;
    if ((st = mnas__ckpt_need_i64(c, what, "config.threads", &th)) != MNAS_OK) return st;
    r.threads = th >= 1 && th <= 256 ? (int)th : 1;
    /* Appended after the first format (issue 17): an older file has no
     * record and gets the default. */
    if (mnas__ckpt_find(c, "config.modulator_form")) {
        if ((st = mnas__ckpt_need_i64(c, what, "config.modulator_form", &th)) != MNAS_OK) return st;
        if (th < MNAS_MODULATOR_SIGMOID || th > MNAS_MODULATOR_FILM)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.modulator_form is %lld (unknown form)", what,
                               (long long)th);
        r.modulator_form = (mnas_modulator_form)th;
    }
    /* Absent from checkpoints written before the option existed: 0. */
    if (mnas__ckpt_find(c, "config.sample_ops")) {
        if ((st = mnas__ckpt_need_i64(c, what, "config.sample_ops", &r.sample_ops)) != MNAS_OK) return st;
        /* The learner checks it against its search space; here only a bound
         * no space reaches (a cell runs at most 64 ops per edge). */
        if (r.sample_ops < 0 || r.sample_ops > 64)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.sample_ops is %lld (out of range)", what,
                               (long long)r.sample_ops);
    }
    /* Absent from checkpoints written before the option existed: 1. */
    if (mnas__ckpt_find(c, "config.stem_stride")) {
        if ((st = mnas__ckpt_need_i64(c, what, "config.stem_stride", &th)) != MNAS_OK) return st;
        if (th != 1 && th != 2 && th != 4)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.stem_stride is %lld (1, 2 or 4)", what,
                               (long long)th);
        r.stem_stride = (int)th;
    }
    /* Absent from checkpoints written before learned inner rates existed:
     * the fixed rate (their parameters have no "lr." records). */
    if (mnas__ckpt_find(c, "config.inner_lr_mode")) {
        if ((st = mnas__ckpt_need_i64(c, what, "config.inner_lr_mode", &th)) != MNAS_OK) return st;
        if (th < MNAS_INNER_LR_FIXED || th > MNAS_INNER_LR_PER_ELEMENT)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.inner_lr_mode is %lld (unknown mode)", what,
                               (long long)th);
        r.inner_lr_mode = (mnas_inner_lr_mode)th;
    }
    /* Absent from checkpoints written before the bound existed: 0. */
    if (mnas__ckpt_find(c, "config.inner_lr_max")) {
        if ((st = mnas__ckpt_need_f64(c, what, "config.inner_lr_max", &r.inner_lr_max)) != MNAS_OK) return st;
        if (!(r.inner_lr_max >= 0 && r.inner_lr_max <= 1e6))
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.inner_lr_max is %g (0..1e6)", what, r.inner_lr_max);
    }
    /* Absent from checkpoints written before the option existed: 0. */
    if (mnas__ckpt_find(c, "config.encoder_input_scale")) {
        if ((st = mnas__ckpt_need_f64(c, what, "config.encoder_input_scale", &r.encoder_input_scale)) != MNAS_OK)
            return st;
        if (!(r.encoder_input_scale >= 0 && r.encoder_input_scale <= 1))
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.encoder_input_scale is %g (0..1)", what,
                               r.encoder_input_scale);
    }
    *o = r;
    return MNAS_OK;
}

/* "config.space": the op names of the supernet's search space, separated
 * by spaces, so that a checkpoint loads only over the same ops (a user's
 * space may differ from the preset's in nothing but its names). A context
 * allocation of *len bytes (not terminated); NULL when out of memory. */
static char *space_names(const mnas_learner *l, size_t *len)
{
    size_t n = mnas_search_space_num_ops(l->space), k = 0;
    for (size_t o = 0; o < n; o++) k += strlen(mnas_search_space_op_name(l->space, o)) + 1;
    char *s = mnas__alloc(l->ctx, k ? k : 1);
    if (!s) return NULL;
    k = 0;
    for (size_t o = 0; o < n; o++) {
        const char *name = mnas_search_space_op_name(l->space, o);
        if (o) s[k++] = ' ';
        memcpy(s + k, name, strlen(name));
        k += strlen(name);
    }
    *len = k;
    return s;
}

/* A checkpoint of a supernet learner carries config.space (files written
 * before it existed do not: they load as before); it must name this
 * learner's ops. */
static mnas_status check_space(const mnas_learner *l, const mnas__ckpt *c, const char *what)
{
    const mnas__ckpt_record *r = mnas__ckpt_find(c, "config.space");
    if (!r) return MNAS_OK;
    if (!l->space) return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: unexpected record \"config.space\" (MAML)", what);
    if (r->dtype != MNAS__DT_U8 || r->ndim != 1)
        return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: record \"config.space\" is not a string", what);
    size_t len;
    char *mine = space_names(l, &len);
    if (!mine) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate the search space's op names", what);
    mnas_status st = MNAS_OK;
    if (len != r->bytes || memcmp(mine, r->data, len) != 0) {
        int shown = r->bytes > 200 ? 200 : (int)r->bytes;
        st = mnas__error(l->ctx, MNAS_E_MISMATCH,
                         "%s: written over a search space of ops [%.*s], this learner's has [%.*s]", what, shown,
                         (const char *)r->data, len > 200 ? 200 : (int)len, mine);
    }
    mnas__free(l->ctx, mine);
    return st;
}

mnas_status mnas_learner_save(const mnas_learner *l, const char *path)
{
    const char *fn = "mnas_learner_save";
    if (!l) return MNAS_E_INVALID;
    mnas_ctx *ctx = l->ctx;
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    const mnas_params *p = mnas_learner_params(l);
    const mnas_real *fixed = l->fixed_alpha;
    size_t edges = l->edges, ops = l->ops;
    int discrete = l->discrete;
    mnas__ckpt_writer w;
    mnas__ckpt_w_begin(&w, ctx, MNAS__CKPT_KIND_LEARNER);
    w_options(&w, &l->o);
    if (l->space) {
        size_t len;
        char *names = space_names(l, &len);
        int64_t dims[1] = { (int64_t)len };
        if (names) mnas__ckpt_w_record(&w, "config.space", MNAS__DT_U8, 1, dims, names);
        else w.st = MNAS_E_NOMEM;
        mnas__free(ctx, names);
    }
    mnas__ckpt_w_i64(&w, "state.iteration", mnas_learner_iteration(l));
    mnas__ckpt_w_i64(&w, "state.discrete", discrete);
    mnas__ckpt_w_f64(&w, "state.alpha_temperature", l->alpha_temp);
    if (fixed) {
        int64_t sh[2] = { (int64_t)edges, (int64_t)ops };
        mnas__ckpt_w_record(&w, "state.fixed_alpha", MNAS__DT_REAL, 2, sh, fixed);
    }
    uint64_t rs[MNAS_RNG_STATE_WORDS];
    mnas_rng_get_state(mnas_ctx_rng(ctx), rs);
    int64_t rn = MNAS_RNG_STATE_WORDS;
    mnas__ckpt_w_record(&w, "rng.ctx", MNAS__DT_U64, 1, &rn, rs);
    mnas__ckpt_w_optim_head(&w, l->opt);
    mnas__ckpt_w_i64(&w, "params.count", (int64_t)mnas_params_count(p));
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas__ckpt_w_param(&w, p, i);
        mnas__ckpt_w_optim_moments(&w, l->opt, i);
    }
    return mnas__ckpt_w_save(&w, fn, path);
}

/* The checkpoint's options must equal the learner's, except the Adam rates
 * (mnas_learner_set_lr changes them during training): those are state, and
 * *lr receives them (outer, arch), checked finite and in [0, 1e6]. */
static mnas_status compare_options(const mnas__ckpt *c, const char *what, const mnas_learner_options *mine,
                                   double lr[2])
{
    mnas_learner_options f;
    mnas_status st = read_options(c, what, &f);
    if (st != MNAS_OK) return st;
    lr[0] = f.outer_lr;
    lr[1] = f.arch_lr;
    for (int k = 0; k < 2; k++)
        if (!isfinite(lr[k]) || lr[k] < 0 || lr[k] > 1e6)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: %s = %g is not a valid learning rate", what,
                               k ? "arch_lr" : "outer_lr", lr[k]);
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *o = &opt_fields[i];
        if (o->offset == offsetof(mnas_learner_options, outer_lr) ||
            o->offset == offsetof(mnas_learner_options, arch_lr))
            continue;
        if (o->is_real) {
            double a, b;
            memcpy(&a, (const char *)&f + o->offset, sizeof a);
            memcpy(&b, (const char *)mine + o->offset, sizeof b);
            if (memcmp(&a, &b, sizeof a) != 0)
                return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with %s = %.17g, this learner has %.17g", what,
                                   o->name + 7, a, b);
        } else {
            int64_t a = opt_get_i(&f, o->offset), b = opt_get_i(mine, o->offset);
            if (a != b)
                return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with %s = %lld, this learner has %lld", what,
                                   o->name + 7, (long long)a, (long long)b);
        }
    }
    if (f.seed != mine->seed)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with seed = %llu, this learner has %llu", what,
                           (unsigned long long)f.seed, (unsigned long long)mine->seed);
    if (f.modulator_form != mine->modulator_form)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with modulator_form = %d, this learner has %d", what,
                           (int)f.modulator_form, (int)mine->modulator_form);
    if (f.sample_ops != mine->sample_ops)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with sample_ops = %lld, this learner has %lld", what,
                           (long long)f.sample_ops, (long long)mine->sample_ops);
    if (f.stem_stride != mine->stem_stride)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with stem_stride = %d, this learner has %d", what,
                           f.stem_stride, mine->stem_stride);
    if (f.inner_lr_mode != mine->inner_lr_mode)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with inner_lr_mode = %s, this learner has %s", what,
                           mnas_inner_lr_mode_name(f.inner_lr_mode), mnas_inner_lr_mode_name(mine->inner_lr_mode));
    if (f.inner_lr_max != mine->inner_lr_max)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with inner_lr_max = %.17g, this learner has %.17g",
                           what, f.inner_lr_max, mine->inner_lr_max);
    if (f.encoder_input_scale != mine->encoder_input_scale)
        return mnas__error(c->ctx, MNAS_E_MISMATCH,
                           "%s: written with encoder_input_scale = %.17g, this learner has %.17g", what,
                           f.encoder_input_scale, mine->encoder_input_scale);
    return MNAS_OK;
}

/* The phase records: state.discrete in 0..1 (never for MAML), and
 * M-NAS-Shared's one-hot state.fixed_alpha exactly when it is discrete
 * (*fa, else NULL). */
static mnas_status need_phase(const mnas_learner *l, const mnas__ckpt *c, const char *what, int64_t discrete,
                              const mnas__ckpt_record **fa)
{
    if (discrete != 0 && discrete != 1)
        return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: state.discrete is %lld (0 or 1)", what, (long long)discrete);
    if (discrete && l->o.method == MNAS_METHOD_MAML)
        return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: a MAML learner cannot be in the discrete phase", what);
    int want_fixed = discrete && (l->alpha_idx >= 0);
    *fa = mnas__ckpt_find(c, "state.fixed_alpha");
    if (!want_fixed && *fa)
        return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: unexpected record \"state.fixed_alpha\"", what);
    if (!want_fixed) return MNAS_OK;
    int64_t sh[2] = { (int64_t)l->edges, (int64_t)l->ops };
    mnas_status st = mnas__ckpt_need(c, what, "state.fixed_alpha", MNAS__DT_REAL, 2, sh, fa);
    if (st != MNAS_OK) return st;
    for (uint64_t i = 0; i < (*fa)->count; i++) {
        double v = mnas__ckpt_rec_real(*fa, i);
        if (v != 0.0 && v != 1.0)
            return mnas__error(l->ctx, MNAS_E_FORMAT, "%s: state.fixed_alpha is not one-hot (element %llu is %g)",
                               what, (unsigned long long)i, v);
    }
    return MNAS_OK;
}

/* The context RNG's state (rng.ctx), checked to be one the generator can be in. */
static mnas_status need_rng(const mnas__ckpt *c, const char *what, uint64_t rs[MNAS_RNG_STATE_WORDS])
{
    const mnas__ckpt_record *rr;
    int64_t rn = MNAS_RNG_STATE_WORDS;
    mnas_status st = mnas__ckpt_need(c, what, "rng.ctx", MNAS__DT_U64, 1, &rn, &rr);
    if (st != MNAS_OK) return st;
    for (int i = 0; i < MNAS_RNG_STATE_WORDS; i++) rs[i] = mnas__ckpt_get_u64(rr->data + 8 * i);
    double spare;
    memcpy(&spare, &rs[5], sizeof spare);
    if (!(rs[0] | rs[1] | rs[2] | rs[3]) || rs[4] > 1 || (rs[4] && !isfinite(spare)))
        return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: rng.ctx is not a valid generator state", what);
    return MNAS_OK;
}

/* Every parameter's values and optimiser moments: present, of the
 * parameter's shape, finite (second moments >= 0). */
static mnas_status need_param_records(const mnas_learner *l, const mnas__ckpt *c, const char *what)
{
    const mnas_params *p = l->params;
    mnas_status st;
    for (size_t i = 0; i < mnas_params_count(p); i++)
        if ((st = mnas__ckpt_need_param(c, what, p, i)) != MNAS_OK ||
            (st = mnas__ckpt_need_optim_moments(c, what, l->opt, i)) != MNAS_OK)
            return st;
    return MNAS_OK;
}

/* Copy the records need_param_records checked into the parameters and the
 * optimiser's moments. Cannot fail. */
static void copy_param_records(mnas_learner *l, const mnas__ckpt *c)
{
    mnas_params *p = l->params;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas__ckpt_copy_param(c, p, i);
        mnas__ckpt_copy_optim_moments(c, l->opt, i);
    }
    mnas_params_zero_grad(p);
}

mnas_status mnas__learner_load_parsed(mnas_learner *l, const mnas__ckpt *c, const char *what)
{
    mnas_ctx *ctx = l->ctx;
    mnas_status st = mnas__ckpt_need_kind(c, what, MNAS__CKPT_KIND_LEARNER);
    if (st != MNAS_OK) return st;
    double lr[2];
    if ((st = compare_options(c, what, &l->o, lr)) != MNAS_OK) return st;
    if ((st = check_space(l, c, what)) != MNAS_OK) return st;
    int64_t iteration, discrete, steps, count;
    if ((st = mnas__ckpt_need_i64(c, what, "state.iteration", &iteration)) != MNAS_OK ||
        (st = mnas__ckpt_need_i64(c, what, "state.discrete", &discrete)) != MNAS_OK ||
        (st = mnas__ckpt_need_optim_head(c, what, l->opt, &steps)) != MNAS_OK ||
        (st = mnas__ckpt_need_i64(c, what, "params.count", &count)) != MNAS_OK)
        return st;
    if (iteration < 0 || steps < 0 || steps > iteration)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: iteration %lld / optimiser steps %lld are not valid", what,
                           (long long)iteration, (long long)steps);
    const mnas__ckpt_record *fa;
    if ((st = need_phase(l, c, what, discrete, &fa)) != MNAS_OK) return st;
    /* Checkpoints written before the alpha temperature existed were at T = 1. */
    double temp = 1;
    if (mnas__ckpt_find(c, "state.alpha_temperature") &&
        (st = mnas__ckpt_need_f64(c, what, "state.alpha_temperature", &temp)) != MNAS_OK)
        return st;
    if (!mnas__temperature_ok(temp) || (!l->net && temp != 1))
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: state.alpha_temperature %g is not valid (in [%g, %g]; 1 for MAML)",
                           what, temp, MNAS__TEMP_MIN, MNAS__TEMP_MAX);
    uint64_t rs[MNAS_RNG_STATE_WORDS];
    if ((st = need_rng(c, what, rs)) != MNAS_OK) return st;
    if (count != (int64_t)mnas_params_count(l->params))
        return mnas__error(ctx, MNAS_E_MISMATCH, "%s: %lld parameters, this learner has %zu", what, (long long)count,
                           mnas_params_count(l->params));
    /* Validate every tensor before changing anything. */
    if ((st = need_param_records(l, c, what)) != MNAS_OK) return st;
    mnas_real *fixed = NULL;
    if (fa) {
        fixed = mnas__calloc(ctx, (size_t)fa->count, sizeof *fixed);
        if (!fixed) return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the fixed alpha", what);
        mnas__ckpt_copy_real(fixed, fa);
    }
    /* Commit: nothing below can fail. */
    copy_param_records(l, c);
    mnas__optim_set_steps(l->opt, steps);
    l->iteration = iteration;
    l->discrete = (int)discrete;
    if (fixed != l->fixed_alpha) {
        mnas__free(ctx, l->fixed_alpha);
        l->fixed_alpha = fixed;
    }
    (void)mnas_learner_set_lr(l, lr[0], lr[1]); /* validated above */
    if (l->net) (void)mnas_learner_set_alpha_temperature(l, temp); /* validated above */
    (void)mnas_rng_set_state(mnas_ctx_rng(ctx), rs);
    return MNAS_OK;
}

static mnas_status apply_learner(void *obj, const mnas__ckpt *c, const char *what)
{
    return mnas__learner_load_parsed(obj, c, what);
}

mnas_status mnas_learner_load(mnas_learner *l, const char *path)
{
    if (!l) return MNAS_E_INVALID;
    return mnas__ckpt_load_file(l->ctx, "mnas_learner_load", path, apply_learner, l);
}

/* A learner checkpoint's options into obj (an mnas_learner_options). */
static mnas_status apply_options(void *obj, const mnas__ckpt *c, const char *what)
{
    mnas_status st = mnas__ckpt_need_kind(c, what, MNAS__CKPT_KIND_LEARNER);
    return st == MNAS_OK ? read_options(c, what, obj) : st;
}

mnas_status mnas_learner_checkpoint_options(mnas_ctx *ctx, const char *path, mnas_learner_options *opts)
{
    const char *fn = "mnas_learner_checkpoint_options";
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    if (!path || !*path || !opts)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: path and opts must not be NULL", fn);
    if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof *opts)
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: opts->struct_size %zu is not valid (use MNAS_LEARNER_OPTIONS_INIT)", fn,
                           opts->struct_size);
    mnas_learner_options o;
    mnas_status st = mnas__ckpt_load_file(ctx, fn, path, apply_options, &o);
    if (st != MNAS_OK) return st;
    size_t keep = opts->struct_size;
    memcpy(opts, &o, keep < sizeof o ? keep : sizeof o);
    opts->struct_size = keep;
    return MNAS_OK;
}

/* ---- training with checkpoints and a divergence guard ------------------------------ */

static int keep_loss(void *user, int64_t it, int64_t total, double loss)
{
    (void)it;
    (void)total;
    *(double *)user = loss;
    return 0;
}

static int params_finite(const mnas_params *p, size_t *bad)
{
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        for (int64_t k = 0; k < t->size; k++)
            if (!isfinite(t->data[k])) {
                *bad = i;
                return 0;
            }
    }
    return 1;
}

mnas_status mnas_learner_train_checkpointed(mnas_learner *l, mnas_task_source source, void *source_user,
                                            int64_t iterations, const char *path, int64_t every,
                                            mnas_progress_fn progress, void *progress_user)
{
    const char *fn = "mnas_learner_train_checkpointed";
    if (!l) return MNAS_E_INVALID;
    mnas_ctx *ctx = l->ctx;
    if (!source || !path || !*path)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: source and path must not be NULL", fn);
    if (iterations < 0 || every < 0)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: iterations %lld and every %lld must be >= 0", fn,
                           (long long)iterations, (long long)every);
    /* Distributed (mnas_learner_set_distribution), every process holds the
     * same state and rank 0 alone writes. */
    int writer = mnas_learner_rank(l) == 0;
    mnas_status st = writer ? mnas_learner_save(l, path) : MNAS_OK;
    if (st != MNAS_OK) return st;
    int64_t saved = mnas_learner_iteration(l);
    for (int64_t it = 0; it < iterations; it++) {
        int64_t at = mnas_learner_iteration(l);
        double loss = NAN;
        st = mnas_learner_train(l, source, source_user, 1, keep_loss, &loss);
        if (st != MNAS_OK) {
            char msg[MNAS_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", mnas_ctx_last_error(ctx));
            if (st == MNAS_E_NUMERIC)
                return mnas__error(ctx, st,
                                   "%s: diverged at iteration %lld (%s); the learner stays at its last good state "
                                   "(iteration %lld) and '%s' keeps the checkpoint of iteration %lld",
                                   fn, (long long)at, msg, (long long)mnas_learner_iteration(l), path,
                                   (long long)saved);
            return mnas__error(ctx, st, "%s: iteration %lld: %s", fn, (long long)at, msg);
        }
        size_t bad;
        if (!params_finite(mnas_learner_params(l), &bad)) {
            char pname[96];
            snprintf(pname, sizeof pname, "%s", mnas_params_name(mnas_learner_params(l), bad));
            mnas_status lst = mnas_learner_load(l, path);
            return mnas__error(ctx, MNAS_E_NUMERIC,
                               "%s: diverged at iteration %lld (parameter \"%s\" is no longer finite); %s '%s' "
                               "(iteration %lld)",
                               fn, (long long)at, pname,
                               lst == MNAS_OK ? "the learner was restored from" : "could not restore the learner from",
                               path, (long long)saved);
        }
        int last = it + 1 == iterations;
        if (last || (every > 0 && (it + 1) % every == 0)) {
            if (writer && (st = mnas_learner_save(l, path)) != MNAS_OK) return st;
            saved = mnas_learner_iteration(l);
        }
        if (progress && progress(progress_user, it + 1, iterations, loss)) {
            if (writer && !last && saved != mnas_learner_iteration(l) && (st = mnas_learner_save(l, path)) != MNAS_OK)
                return st;
            break;
        }
    }
    return MNAS_OK;
}
