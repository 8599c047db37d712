/* Optimiser state in checkpoints: the records ("optim.kind", "optim.steps",
 * "optim.m:<param>", "optim.v:<param>") that learner checkpoints embed and
 * that mnas_optim_save writes on its own, with their checks and commit. */
#include <stdio.h>

#include "io/atomic_file.h"
#include "io/checkpoint_internal.h"
#include "nn/nn_internal.h"
#include "tensor/tensor_internal.h"

/* An optimiser's state (mnas__optim_state) in one value. */
typedef struct {
    mnas_optim_kind kind;
    int64_t steps;
    size_t n;
    mnas_real *const *m, *const *v;
} optim_state;

static optim_state state_of(const mnas_optim *o)
{
    optim_state s;
    mnas__optim_state(o, &s.kind, &s.steps, &s.n, &s.m, &s.v);
    return s;
}

void mnas__ckpt_w_optim_head(mnas__ckpt_writer *w, const mnas_optim *o)
{
    optim_state s = state_of(o);
    mnas__ckpt_w_i64(w, "optim.kind", (int64_t)s.kind);
    mnas__ckpt_w_i64(w, "optim.steps", s.steps);
}

void mnas__ckpt_w_optim_moments(mnas__ckpt_writer *w, const mnas_optim *o, size_t i)
{
    optim_state s = state_of(o);
    const mnas_params *p = mnas__optim_params(o);
    const mnas_tensor *t = mnas_params_get(p, i);
    char name[MNAS__CKPT_NAME_MAX + 1];
    mnas__ckpt_param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
    mnas__ckpt_w_record(w, name, MNAS__DT_REAL, t->ndim, t->shape, s.m[i]);
    if (s.v && s.v[i]) {
        mnas__ckpt_param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
        mnas__ckpt_w_record(w, name, MNAS__DT_REAL, t->ndim, t->shape, s.v[i]);
    }
}

mnas_status mnas__ckpt_need_optim_head(const mnas__ckpt *c, const char *what, const mnas_optim *o, int64_t *steps)
{
    int64_t okind;
    mnas_status st;
    if ((st = mnas__ckpt_need_i64(c, what, "optim.kind", &okind)) != MNAS_OK ||
        (st = mnas__ckpt_need_i64(c, what, "optim.steps", steps)) != MNAS_OK)
        return st;
    if (*steps < 0)
        return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: optimiser steps %lld are not valid", what, (long long)*steps);
    mnas_optim_kind kind = state_of(o).kind;
    if (okind != (int64_t)kind)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: optimiser kind %lld, this optimiser's is %d", what,
                           (long long)okind, (int)kind);
    return MNAS_OK;
}

mnas_status mnas__ckpt_need_optim_moments(const mnas__ckpt *c, const char *what, const mnas_optim *o, size_t i)
{
    optim_state s = state_of(o);
    const mnas_params *p = mnas__optim_params(o);
    const mnas_tensor *t = mnas_params_get(p, i);
    char name[MNAS__CKPT_NAME_MAX + 1];
    const mnas__ckpt_record *r;
    mnas_status st;
    mnas__ckpt_param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
    if ((st = mnas__ckpt_need_tensor(c, what, name, t, &r)) != MNAS_OK) return st;
    if (s.v && s.v[i]) {
        mnas__ckpt_param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
        if ((st = mnas__ckpt_need_tensor(c, what, name, t, &r)) != MNAS_OK) return st;
        for (uint64_t k = 0; k < r->count; k++)
            if (mnas__ckpt_rec_real(r, k) < 0)
                return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: record \"%s\" has a negative second moment", what,
                                   name);
    }
    return MNAS_OK;
}

void mnas__ckpt_copy_optim_moments(const mnas__ckpt *c, mnas_optim *o, size_t i)
{
    optim_state s = state_of(o);
    const mnas_params *p = mnas__optim_params(o);
    char name[MNAS__CKPT_NAME_MAX + 1];
    mnas__ckpt_param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
    mnas__ckpt_copy_real(s.m[i], mnas__ckpt_find(c, name));
    if (s.v && s.v[i]) {
        mnas__ckpt_param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
        mnas__ckpt_copy_real(s.v[i], mnas__ckpt_find(c, name));
    }
}

/* ---- optimiser checkpoints ------------------------------------------------ */

mnas_status mnas_optim_save(const mnas_optim *o, const char *path)
{
    const char *fn = "mnas_optim_save";
    if (!o) return MNAS_E_INVALID;
    mnas_ctx *ctx = mnas__params_ctx(mnas__optim_params(o));
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    size_t n = state_of(o).n; /* the parameters of its set when it was made */
    mnas__ckpt_writer w;
    mnas__ckpt_w_begin(&w, ctx, MNAS__CKPT_KIND_OPTIM);
    mnas__ckpt_w_optim_head(&w, o);
    mnas__ckpt_w_i64(&w, "params.count", (int64_t)n);
    for (size_t i = 0; i < n; i++) mnas__ckpt_w_optim_moments(&w, o, i);
    return mnas__ckpt_w_save(&w, fn, path);
}

mnas_status mnas__optim_load_parsed(mnas_optim *o, const mnas__ckpt *c, const char *what)
{
    mnas_status st = mnas__ckpt_need_kind(c, what, MNAS__CKPT_KIND_OPTIM);
    if (st != MNAS_OK) return st;
    int64_t steps, count;
    if ((st = mnas__ckpt_need_optim_head(c, what, o, &steps)) != MNAS_OK) return st;
    if ((st = mnas__ckpt_need_i64(c, what, "params.count", &count)) != MNAS_OK) return st;
    size_t n = state_of(o).n; /* the parameters of its set when it was made */
    if (count != (int64_t)n)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: %lld parameters, this optimiser has %zu", what,
                           (long long)count, n);
    for (size_t i = 0; i < n; i++)
        if ((st = mnas__ckpt_need_optim_moments(c, what, o, i)) != MNAS_OK) return st;
    /* Commit: nothing below can fail. */
    for (size_t i = 0; i < n; i++) mnas__ckpt_copy_optim_moments(c, o, i);
    mnas__optim_set_steps(o, steps);
    return MNAS_OK;
}

static mnas_status apply_optim(void *obj, const mnas__ckpt *c, const char *what)
{
    return mnas__optim_load_parsed(obj, c, what);
}

mnas_status mnas_optim_load(mnas_optim *o, const char *path)
{
    if (!o) return MNAS_E_INVALID;
    return mnas__ckpt_load_file(mnas__params_ctx(mnas__optim_params(o)), "mnas_optim_load", path, apply_optim, o);
}
