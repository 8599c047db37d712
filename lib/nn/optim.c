/* SGD (with momentum) and Adam over a parameter set, with per-group
 * learning rates and optional clipping of the global gradient norm. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nn/nn_internal.h"

#include "tensor/tensor_internal.h"

#define MAX_GROUPS 16

struct mnas_optim {
    mnas_ctx *ctx;
    mnas_params *params;
    mnas_optim_options o;
    double group_lr[MAX_GROUPS];
    int64_t steps;
    size_t n;          /* parameters when created */
    mnas_real **m, **v; /* per parameter: momentum / Adam moments */
};

static int finite_nonneg(double x) { return isfinite(x) && x >= 0; }

mnas_optim *mnas_optim_create(mnas_params *p, const mnas_optim_options *opts)
{
    const char *fn = "mnas_optim_create";
    if (!p) return NULL;
    mnas_ctx *ctx = mnas__params_ctx(p);
    if (mnas_params_count(p) == 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the parameter set is empty", fn);
        return NULL;
    }
    mnas_optim_options o = MNAS_OPTIM_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof o) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: struct_size %zu is not valid", fn, opts->struct_size);
            return NULL;
        }
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    }
    if (o.kind != MNAS_OPTIM_SGD && o.kind != MNAS_OPTIM_ADAM) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: unknown optimiser kind %d", fn, (int)o.kind);
        return NULL;
    }
    if (!finite_nonneg(o.lr) || !finite_nonneg(o.momentum) || o.momentum >= 1 || !(o.beta1 >= 0 && o.beta1 < 1) ||
        !(o.beta2 >= 0 && o.beta2 < 1) || !(o.eps > 0) || !isfinite(o.eps) || !finite_nonneg(o.clip_norm)) {
        mnas__error(ctx, MNAS_E_INVALID,
                    "%s: need lr >= 0, 0 <= momentum < 1, 0 <= beta1, beta2 < 1, eps > 0, clip_norm >= 0 "
                    "(all finite); got lr %g momentum %g beta1 %g beta2 %g eps %g clip %g",
                    fn, o.lr, o.momentum, o.beta1, o.beta2, o.eps, o.clip_norm);
        return NULL;
    }
    mnas_optim *op = mnas__calloc(ctx, 1, sizeof *op);
    if (!op) goto nomem;
    op->ctx = ctx;
    op->params = p;
    op->o = o;
    op->n = mnas_params_count(p);
    for (int g = 0; g < MAX_GROUPS; g++) op->group_lr[g] = o.lr;
    op->m = mnas__calloc(ctx, op->n, sizeof *op->m);
    op->v = mnas__calloc(ctx, op->n, sizeof *op->v);
    if (!op->m || !op->v) goto nomem;
    for (size_t i = 0; i < op->n; i++) {
        size_t sz = (size_t)mnas_params_get(p, i)->size;
        op->m[i] = mnas__calloc(ctx, sz, sizeof(mnas_real));
        if (!op->m[i]) goto nomem;
        if (o.kind == MNAS_OPTIM_ADAM) {
            op->v[i] = mnas__calloc(ctx, sz, sizeof(mnas_real));
            if (!op->v[i]) goto nomem;
        }
    }
    return op;
nomem:
    mnas_optim_free(op);
    mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the optimiser state", fn);
    return NULL;
}

void mnas_optim_free(mnas_optim *op)
{
    if (!op) return;
    for (size_t i = 0; i < op->n; i++) {
        if (op->m) mnas__free(op->ctx, op->m[i]);
        if (op->v) mnas__free(op->ctx, op->v[i]);
    }
    mnas__free(op->ctx, op->m);
    mnas__free(op->ctx, op->v);
    mnas__free(op->ctx, op);
}

mnas_status mnas_optim_set_group_lr(mnas_optim *op, int group, double lr)
{
    if (!op) return MNAS_E_INVALID;
    if (group < 0 || group >= MAX_GROUPS)
        return mnas__error(op->ctx, MNAS_E_INVALID, "mnas_optim_set_group_lr: group %d is outside 0..%d", group,
                           MAX_GROUPS - 1);
    if (!finite_nonneg(lr))
        return mnas__error(op->ctx, MNAS_E_INVALID, "mnas_optim_set_group_lr: lr %g must be finite and >= 0", lr);
    op->group_lr[group] = lr;
    return MNAS_OK;
}

int64_t mnas_optim_steps(const mnas_optim *op) { return op ? op->steps : 0; }

/* One step's constants, shared by the chunks of the update. */
typedef struct {
    mnas_optim *op;
    double clip, b1, b2, c1, c2;
} step_job;

enum { STEP_CHUNK = 1 << 16 }; /* elements per chunk of the pooled update */

/* Elements [lo, lo + len) of parameter i. Each element's update reads only
 * its own gradient and moments, so chunking changes no bits. */
static void update_range(const step_job *sj, size_t i, int64_t lo, int64_t len)
{
    mnas_optim *op = sj->op;
    mnas_params *p = op->params;
    mnas_tensor *w = mnas_params_get(p, i);
    const mnas_real *g = mnas_params_grad(p, i)->data + lo;
    double lr = op->group_lr[mnas_params_group(p, i)];
    mnas_real *d = w->data + lo, *m = op->m[i] + lo, *v = op->v[i] + lo;
    if (op->o.kind == MNAS_OPTIM_SGD) {
        double mu = op->o.momentum;
        for (int64_t j = 0; j < len; j++) {
            double gj = sj->clip * g[j];
            if (mu > 0) {
                m[j] = (mnas_real)(mu * m[j] + gj);
                gj = m[j];
            }
            d[j] = (mnas_real)(d[j] - lr * gj);
        }
    } else {
        mnas__k_adam(len, d, g, m, v, sj->clip, sj->b1, sj->b2, lr / sj->c1, sj->c2, op->o.eps);
    }
}

/* Pool job k: chunk k of the parameters laid end to end in STEP_CHUNK
 * pieces per parameter (a parameter's last piece may be shorter). */
static void update_job(void *user, size_t k, int worker)
{
    (void)worker;
    const step_job *sj = user;
    mnas_params *p = sj->op->params;
    for (size_t i = 0; i < sj->op->n; i++) {
        int64_t size = mnas_params_get(p, i)->size, pieces = (size + STEP_CHUNK - 1) / STEP_CHUNK;
        if ((int64_t)k < pieces) {
            int64_t lo = (int64_t)k * STEP_CHUNK;
            update_range(sj, i, lo, size - lo < STEP_CHUNK ? size - lo : STEP_CHUNK);
            return;
        }
        k -= (size_t)pieces;
    }
}

mnas_status mnas__optim_step_pool(mnas_optim *op, mnas_pool *pool)
{
    const char *fn = "mnas_optim_step";
    if (!op) return MNAS_E_INVALID;
    mnas_params *p = op->params;
    if (mnas_params_count(p) != op->n)
        return mnas__error(op->ctx, MNAS_E_STATE, "%s: the parameter set changed after the optimiser was made", fn);
    double norm = mnas_params_grad_norm(p);
    if (!isfinite(norm)) {
        for (size_t i = 0; i < op->n; i++) {
            const mnas_tensor *g = mnas_params_grad(p, i);
            for (int64_t j = 0; j < g->size; j++)
                if (!isfinite(g->data[j]))
                    return mnas__error(op->ctx, MNAS_E_NUMERIC,
                                       "%s: gradient of \"%s\" is not finite at element %lld; nothing was updated", fn,
                                       mnas_params_name(p, i), (long long)j);
        }
        return mnas__error(op->ctx, MNAS_E_NUMERIC, "%s: the gradient norm overflows; nothing was updated", fn);
    }
    step_job sj = { op, 1.0, op->o.beta1, op->o.beta2, 0, 0 };
    if (op->o.clip_norm > 0 && norm > op->o.clip_norm) sj.clip = op->o.clip_norm / norm;
    op->steps++;
    sj.c1 = 1.0 - pow(sj.b1, (double)op->steps);
    sj.c2 = 1.0 - pow(sj.b2, (double)op->steps);
    if (pool) {
        size_t jobs = 0;
        for (size_t i = 0; i < op->n; i++)
            jobs += (size_t)((mnas_params_get(p, i)->size + STEP_CHUNK - 1) / STEP_CHUNK);
        mnas__pool_run(pool, jobs, update_job, &sj);
    } else {
        for (size_t i = 0; i < op->n; i++) update_range(&sj, i, 0, mnas_params_get(p, i)->size);
    }
    return MNAS_OK;
}

mnas_status mnas_optim_step(mnas_optim *op) { return mnas__optim_step_pool(op, NULL); }

/* ---- checkpoint access ---------------------------------------------------- */

void mnas__optim_state(const mnas_optim *op, mnas_optim_kind *kind, int64_t *steps, size_t *n, mnas_real *const **m,
                       mnas_real *const **v)
{
    *kind = op->o.kind;
    *steps = op->steps;
    *n = op->n;
    *m = op->m;
    *v = op->v;
}

mnas_params *mnas__optim_params(const mnas_optim *op) { return op->params; }

void mnas__optim_set_steps(mnas_optim *op, int64_t steps) { op->steps = steps; }
