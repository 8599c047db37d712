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

#define TASK_MSG (MNAS_MSG_MAX + 32)

struct mnas_learner {
    mnas_ctx *ctx;
    mnas_learner_options o;
    mnas_mlp *mlp;
    mnas_params *params;
    mnas_optim *opt;
    mnas_pool *pool;
    int nthreads;
    mnas_tape **tapes;      /* one per worker */
    size_t P;               /* parameter tensors */
    int64_t numel;
    size_t slots;           /* per-task buffers allocated */
    mnas_real *task_grad;   /* [slots][numel] */
    double *task_loss;      /* [slots] */
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
    if (o->method == MNAS_METHOD_MNAS || o->method == MNAS_METHOD_MNAS_SHARED || o->method == MNAS_METHOD_MNAS_NM)
        return mnas__error(ctx, MNAS_E_UNSUPPORTED, "%s: method %s is not available in this build yet", fn,
                           mnas_method_name(o->method));
    if (o->method != MNAS_METHOD_MAML) return mnas__error(ctx, MNAS_E_INVALID, "%s: unknown method %d", fn, (int)o->method);
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
    mnas__free(l->ctx, l->task_grad);
    mnas__free(l->ctx, l->task_loss);
    mnas__free(l->ctx, l->task_status);
    mnas__free(l->ctx, l->task_msg);
    mnas__free(l->ctx, l);
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
    int64_t dims[65];
    dims[0] = o.in_features;
    for (int i = 1; i < o.layers; i++) dims[i] = o.hidden;
    dims[o.layers] = o.out_features;
    l->mlp = mnas_mlp_create(ctx, o.layers, dims, 0);
    l->params = mnas_params_create(ctx);
    if (!l->mlp || !l->params || mnas_mlp_add_params(l->mlp, l->params, "", 0) < 0) goto fail;
    /* Initialise from the learner's seed, not from whatever the context
     * RNG has done so far. */
    mnas_rng *rng = mnas_rng_create(ctx, o.seed, 0x1417);
    if (!rng) goto fail;
    mnas_params_init(l->params, rng);
    mnas_rng_free(rng);
    l->P = mnas_params_count(l->params);
    l->numel = mnas_params_numel(l->params);
    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.kind = MNAS_OPTIM_ADAM;
    oo.lr = o.outer_lr;
    oo.clip_norm = o.clip_norm;
    l->opt = mnas_optim_create(l->params, &oo);
    if (!l->opt) goto fail;
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

static mnas_status ensure_slots(mnas_learner *l, size_t n)
{
    if (n <= l->slots) return MNAS_OK;
    size_t bytes;
    if (!mnas__mul_ok(n, (size_t)l->numel * sizeof(mnas_real), &bytes))
        return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: %zu tasks of gradients overflow", n);
    mnas_real *g = mnas__alloc(l->ctx, bytes);
    double *loss = mnas__calloc(l->ctx, n, sizeof *loss);
    mnas_status *st = mnas__calloc(l->ctx, n, sizeof *st);
    char(*msg)[TASK_MSG] = mnas__calloc(l->ctx, n, sizeof *msg);
    if (!g || !loss || !st || !msg) {
        mnas__free(l->ctx, g);
        mnas__free(l->ctx, loss);
        mnas__free(l->ctx, st);
        mnas__free(l->ctx, msg);
        return mnas__error(l->ctx, MNAS_E_NOMEM, "mnas_learner: cannot allocate buffers for %zu tasks", n);
    }
    mnas__free(l->ctx, l->task_grad);
    mnas__free(l->ctx, l->task_loss);
    mnas__free(l->ctx, l->task_status);
    mnas__free(l->ctx, l->task_msg);
    l->task_grad = g;
    l->task_loss = loss;
    l->task_status = st;
    l->task_msg = msg;
    l->slots = n;
    return MNAS_OK;
}

/* ---- one task ------------------------------------------------------------ */

typedef struct {
    const mnas_mlp *mlp;
    mnas_tensor *x, *y;
} support_data;

static mnas_tensor *support_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    (void)extra;
    support_data *d = user;
    return mnas_mse(tp, mnas_mlp_forward(d->mlp, tp, d->x, w), d->y);
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
    return MNAS_OK;
}

typedef struct {
    mnas_learner *l;
    const mnas_task *const *tasks;
    int steps;
    mnas_inner_mode mode;
    double *before, *after; /* evaluation outputs */
} job_data;

static void record_failure(mnas_learner *l, size_t j, mnas_tape *tp, mnas_status st)
{
    l->task_status[j] = st;
    snprintf(l->task_msg[j], TASK_MSG, "task %zu: %s", j, tp->msg[0] ? tp->msg : mnas_status_str(st));
}

static void train_job(void *user, size_t j, int worker)
{
    job_data *d = user;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    const mnas_task *t = d->tasks[j];
    mnas_status st = check_task(l, t, j, l->task_msg[j]);
    if (st != MNAS_OK) {
        l->task_status[j] = st;
        return;
    }
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    support_data sd = { l->mlp, mnas_task_support_x(t), mnas_task_support_y(t) };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = l->o.inner_steps;
    io.lr = l->o.inner_lr;
    io.mode = l->o.inner_mode;
    mnas_tensor *fast[256], *g[256];
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->P, W, 0, NULL, &io, fast)) != MNAS_OK) {
        record_failure(l, j, tp, st);
        return;
    }
    mnas_tensor *q = mnas_mse(tp, mnas_mlp_forward(l->mlp, tp, mnas_task_query_x(t), fast), mnas_task_query_y(t));
    if (!q) {
        record_failure(l, j, tp, tp->status ? tp->status : MNAS_E_INTERNAL);
        return;
    }
    double loss = (double)q->data[0];
    if (!isfinite(loss)) {
        l->task_status[j] = MNAS_E_NUMERIC;
        snprintf(l->task_msg[j], TASK_MSG, "task %zu: the query loss is %g", j, loss);
        return;
    }
    if ((st = mnas_grad(tp, q, l->P, W, g, 0)) != MNAS_OK) {
        record_failure(l, j, tp, st);
        return;
    }
    mnas_real *dst = l->task_grad + j * (size_t)l->numel;
    for (size_t i = 0; i < l->P; i++) {
        memcpy(dst, g[i]->data, (size_t)g[i]->size * sizeof(mnas_real));
        dst += g[i]->size;
    }
    l->task_loss[j] = loss;
}

mnas_status mnas_learner_step(mnas_learner *l, const mnas_task *const *tasks, size_t n, double *loss_out)
{
    const char *fn = "mnas_learner_step";
    if (!l) return MNAS_E_INVALID;
    if (!tasks || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: no tasks", fn);
    for (size_t j = 0; j < n; j++)
        if (!tasks[j]) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task %zu is NULL", fn, j);
    if (l->P > 256) return mnas__error(l->ctx, MNAS_E_UNSUPPORTED, "%s: more than 256 parameter tensors", fn);
    mnas_status st = ensure_slots(l, n);
    if (st != MNAS_OK) return st;
    job_data d = { l, tasks, 0, MNAS_INNER_SECOND_ORDER, NULL, NULL };
    mnas__pool_run(l->pool, n, train_job, &d);
    for (size_t j = 0; j < n; j++)
        if (l->task_status[j] != MNAS_OK)
            return mnas__error(l->ctx, l->task_status[j], "%s: iteration %lld, %s; parameters unchanged", fn,
                               (long long)l->iteration, l->task_msg[j]);
    /* Sum the per-task gradients in task order: the same bits whatever
     * thread computed which task. */
    mnas_params_zero_grad(l->params);
    double mean_loss = 0;
    for (size_t j = 0; j < n; j++) {
        const mnas_real *src = l->task_grad + j * (size_t)l->numel;
        for (size_t i = 0; i < l->P; i++) {
            mnas_tensor *gb = mnas_params_grad(l->params, i);
            mnas_real *dst = mnas_tensor_data(gb);
            int64_t sz = mnas_tensor_size(gb);
            for (int64_t k = 0; k < sz; k++) dst[k] += src[k];
            src += sz;
        }
        mean_loss += l->task_loss[j];
    }
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
    mnas_task **tasks = mnas__calloc(l->ctx, B, sizeof *tasks);
    if (!tasks) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate the batch", fn);
    mnas_status st = MNAS_OK;
    for (int64_t it = 0; it < iterations && st == MNAS_OK; it++) {
        uint64_t base = (uint64_t)l->iteration * B;
        for (size_t j = 0; j < B; j++) {
            tasks[j] = source(source_user, base + j);
            if (!tasks[j]) {
                st = mnas__error(l->ctx, MNAS_E_INVALID, "%s: the task source gave no task %llu (%s)", fn,
                                 (unsigned long long)(base + j), mnas_ctx_last_error(l->ctx));
                break;
            }
        }
        double loss = 0;
        if (st == MNAS_OK) st = mnas_learner_step(l, (const mnas_task *const *)tasks, B, &loss);
        for (size_t j = 0; j < B; j++) {
            mnas_task_free(tasks[j]);
            tasks[j] = NULL;
        }
        if (st == MNAS_OK && progress && progress(progress_user, it + 1, iterations, loss)) break;
    }
    mnas__free(l->ctx, tasks);
    return st;
}

/* ---- evaluation and prediction ---------------------------------------- */

static void eval_job(void *user, size_t j, int worker)
{
    job_data *d = user;
    mnas_learner *l = d->l;
    mnas_tape *tp = l->tapes[worker];
    mnas_tape_reset(tp);
    l->task_status[j] = MNAS_OK;
    const mnas_task *t = d->tasks[j];
    mnas_status st = check_task(l, t, j, l->task_msg[j]);
    if (st != MNAS_OK) {
        l->task_status[j] = st;
        return;
    }
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    mnas_tensor *qx = mnas_task_query_x(t), *qy = mnas_task_query_y(t);
    if (d->before) {
        mnas_tape_no_grad_begin(tp);
        mnas_tensor *q = mnas_mse(tp, mnas_mlp_forward(l->mlp, tp, qx, W), qy);
        mnas_tape_no_grad_end(tp);
        if (!q) {
            record_failure(l, j, tp, tp->status ? tp->status : MNAS_E_INTERNAL);
            return;
        }
        d->before[j] = (double)q->data[0];
    }
    if (d->after) {
        support_data sd = { l->mlp, mnas_task_support_x(t), mnas_task_support_y(t) };
        mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
        io.steps = d->steps;
        io.lr = l->o.inner_lr;
        io.mode = MNAS_INNER_FIRST_ORDER; /* no meta-gradient needed */
        mnas_tensor *fast[256];
        if ((st = mnas_inner_loop(tp, support_loss, &sd, l->P, W, 0, NULL, &io, fast)) != MNAS_OK) {
            record_failure(l, j, tp, st);
            return;
        }
        mnas_tape_no_grad_begin(tp);
        mnas_tensor *q = mnas_mse(tp, mnas_mlp_forward(l->mlp, tp, qx, fast), qy);
        mnas_tape_no_grad_end(tp);
        if (!q) {
            record_failure(l, j, tp, tp->status ? tp->status : MNAS_E_INTERNAL);
            return;
        }
        d->after[j] = (double)q->data[0];
    }
}

mnas_status mnas_learner_evaluate(mnas_learner *l, const mnas_task_set *set, int steps, double *before, double *after)
{
    const char *fn = "mnas_learner_evaluate";
    if (!l) return MNAS_E_INVALID;
    size_t n = mnas_task_set_size(set);
    if (!set || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: the task set is empty or NULL", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    mnas_status st = ensure_slots(l, n);
    if (st != MNAS_OK) return st;
    const mnas_task **tasks = mnas__calloc(l->ctx, n, sizeof *tasks);
    if (!tasks) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    for (size_t j = 0; j < n; j++) tasks[j] = mnas_task_set_get(set, j);
    job_data d = { l, tasks, steps, MNAS_INNER_FIRST_ORDER, before, after };
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
    char msg[TASK_MSG];
    mnas_status st = check_task(l, task, 0, msg);
    if (st != MNAS_OK) return mnas__error(l->ctx, st, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    mnas_tensor *const *W = mnas_params_tensors(l->params);
    support_data sd = { l->mlp, mnas_task_support_x(task), mnas_task_support_y(task) };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = steps;
    io.lr = l->o.inner_lr;
    io.mode = MNAS_INNER_FIRST_ORDER;
    mnas_tensor *fast[256];
    if ((st = mnas_inner_loop(tp, support_loss, &sd, l->P, W, 0, NULL, &io, fast)) != MNAS_OK)
        return mnas__error(l->ctx, st, "%s: %s", fn, tp->msg);
    int64_t xs[2] = { (int64_t)n, 1 };
    mnas_tape_no_grad_begin(tp);
    mnas_tensor *out = mnas_mlp_forward(l->mlp, tp, mnas_tape_tensor(tp, 2, xs, x), fast);
    mnas_tape_no_grad_end(tp);
    if (!out) return mnas__error(l->ctx, tp->status, "%s: %s", fn, tp->msg);
    memcpy(y, out->data, (size_t)out->size * sizeof(mnas_real));
    mnas_tape_reset(tp);
    return MNAS_OK;
}
