/* The learner's meta-batches: tasks on the worker pool with one tape per
 * worker (drawn, encoded, differentiated), the modulator's batched FC between
 * the phases, per-task gradients reduced in task order (so results do not
 * depend on the number of threads), distribution over processes, and the
 * meta-update (mnas_learner_step, mnas_learner_train). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "meta/learner_internal.h"

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

/* The pool job of mnas__learner_run_tasks: pool index i is task j0 + i. */
static void task_job(void *user, size_t i, int worker)
{
    job_data *d = user;
    mnas_tape *tp = d->l->tapes[worker];
    mnas_tape_reset(tp);
    d->run(d, d->j0 + i, tp);
}

void mnas__learner_run_tasks(job_data *d, size_t count, mnas__task_fn run)
{
    d->run = run;
    mnas__pool_run(d->l->pool, count, task_job, d);
}

/* Phase 1 of training with a modulator: draw task j and compute its z. */
static void encode_job(job_data *d, size_t j, mnas_tape *tp)
{
    mnas_learner *l = d->l;
    l->task_status[j] = MNAS_OK;
    const mnas_task *t = l->btask[j] = batch_task(l, d, j, &l->bown[j]);
    mnas_status st = MNAS_E_INVALID;
    if (t && (st = mnas__learner_check_task(l, t, j, l->task_msg[j])) == MNAS_OK) {
        struct mnas_rng r;
        mnas_tensor *z;
        mnas_tape_no_grad_begin(tp);
        st = mnas__learner_encode(l, tp, t, d->stream0 + j, &r, &z, NULL); /* z only: no decoder */
        mnas_tape_no_grad_end(tp);
        if (st == MNAS_OK)
            memcpy(l->mod_z + j * (size_t)l->mod_zdim, z->data, (size_t)l->mod_zdim * sizeof(mnas_real));
    }
    if (st != MNAS_OK && !l->task_msg[j][0]) mnas__learner_record_failure(l, j, tp, st);
    if (st != MNAS_OK) l->task_status[j] = st;
    mnas_tape_reset(tp);
}

/* Phase 3: the modulator's share of the encoder's gradient, dz = dL/du W
 * (row j of mod_dz), through task j's encoder, added to its gradient row. */
static void encoder_dz_job(job_data *d, size_t j, mnas_tape *tp)
{
    mnas_learner *l = d->l;
    struct mnas_rng r;
    mnas_tensor *z, *g[MAX_P];
    mnas_status st =
        mnas__learner_encode(l, tp, l->btask[j], d->stream0 + j, &r, &z, NULL); /* L_r's share came in phase 2 */
    if (st == MNAS_OK) {
        int64_t sh[2] = { 1, l->mod_zdim };
        mnas_tensor *dz = mnas_tape_tensor(tp, 2, sh, l->mod_dz + j * (size_t)l->mod_zdim);
        mnas_tensor *s = mnas_sum(tp, mnas_mul(tp, z, dz));
        mnas_tensor *const *W = mnas_params_tensors(l->params);
        mnas_status ts = mnas_tape_status(tp);
        st = s ? mnas_grad(tp, s, l->s_enc.count, W + l->s_enc.first, g, 0) : (ts ? ts : MNAS_E_NOMEM);
    }
    if (st == MNAS_OK) {
        mnas_real *row = l->task_grad + j * l->red_total;
        for (size_t i = 0; i < l->s_enc.count; i++)
            mnas__k_add_scaled(g[i]->size, 1, g[i]->data, row + l->goff[l->s_enc.first + i]);
    } else {
        l->task_status[j] = st;
        mnas__learner_record_failure(l, j, tp, st);
    }
    mnas_tape_reset(tp);
}

static void train_job(job_data *d, size_t j, mnas_tape *tp)
{
    mnas_learner *l = d->l;
    l->task_status[j] = MNAS_OK;
    mnas_tensor *g[MAX_P];
    double loss = 0;
    /* With a modulator, phase 1 drew the task. */
    mnas_task *own = NULL;
    const mnas_task *t = l->mod ? l->btask[j] : batch_task(l, d, j, &own);
    mnas_status st = t ? mnas__learner_task_gradient(l, tp, t, j, d->stream0 + j, g, &loss, NULL) : MNAS_E_INVALID;
    if (st != MNAS_OK && !l->task_msg[j][0]) mnas__learner_record_failure(l, j, tp, st);
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

/* The modulator's FC for the whole meta-batch (see mnas_learner.mod_pre):
 * U = Z W^T + b, dZ = dL/dU W, and the FC's gradient. */
static void mod_forward_batch(mnas_learner *l, size_t n)
{
    mnas__modulator_batch_forward(l->mod, l->pool, mnas_params_tensors(l->params) + l->s_mod.first, n, l->mod_z,
                                  l->mod_pre);
}

static void mod_backward_batch(mnas_learner *l, size_t n)
{
    mnas__modulator_batch_backward(l->mod, l->pool, mnas_params_tensors(l->params) + l->s_mod.first, n, l->mod_u,
                                   l->mod_dz);
}

static void mod_weight_grad(mnas_learner *l, size_t n)
{
    if (!l->mod) return;
    mnas_tensor *g[2] = {mnas_params_grad(l->params, l->s_mod.first), mnas_params_grad(l->params, l->s_mod.first + 1)};
    mnas__modulator_batch_grad(l->mod, l->pool, g, n, l->mod_u, l->mod_z);
}

/* ---- distribution ---------------------------------------------------------- */

void mnas__learner_task_range(const mnas_learner *l, size_t n, int r, size_t *first, size_t *end)
{
    /* n <= 100000 tasks and nprocs <= 65536: no overflow. */
    *first = n * (size_t)r / (size_t)l->dist.nprocs;
    *end = n * (size_t)(r + 1) / (size_t)l->dist.nprocs;
}

/* Make every process hold all n units of data (unit bytes each). */
mnas_status mnas__learner_gather(mnas_learner *l, const char *fn, void *data, size_t unit, size_t n)
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
mnas_status mnas__learner_gather_status(mnas_learner *l, const char *fn, size_t n)
{
    mnas_status st = mnas__learner_gather(l, fn, l->task_status, sizeof *l->task_status, n);
    if (st == MNAS_OK && batch_failed(l, n)) st = mnas__learner_gather(l, fn, l->task_msg, sizeof *l->task_msg, n);
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
    mnas__learner_task_range(l, n, l->dist.rank, first, end);
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
    mnas_status st = mnas__learner_ensure_slots(l, 1, want_grad || l->mod);
    if (st != MNAS_OK) return st;
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    l->task_msg[0][0] = '\0';
    l->task_status[0] = MNAS_OK;
    const mnas_task *one[1] = { task };
    job_data d = { l, one, NULL, NULL, 0, 0, stream, NULL, NULL, NULL, NULL, 0, NULL };
    if (l->mod) {
        mnas_tape_reset(tp);
        encode_job(&d, 0, tp);
        if (l->task_status[0] != MNAS_OK) return mnas__error(l->ctx, l->task_status[0], "%s: %s", fn, l->task_msg[0]);
        mod_forward_batch(l, 1);
    }
    mnas_tensor *g[MAX_P];
    double loss;
    st = mnas__learner_task_gradient(l, tp, task, 0, stream, want_grad ? g : NULL, &loss, objective);
    if (st != MNAS_OK) {
        mnas_tape_reset(tp);
        return mnas__error(l->ctx, st, "%s: %s", fn, l->task_msg[0][0] ? l->task_msg[0] : mnas_tape_last_error(tp));
    }
    if (want_grad) {
        for (size_t i = 0; i < l->P; i++)
            if (g[i]) memcpy(l->task_grad + l->goff[i], g[i]->data, (size_t)g[i]->size * sizeof(mnas_real));
        mnas_tape_reset(tp);
        if (l->mod) {
            mod_backward_batch(l, 1);
            mnas_tape_reset(tp);
            encoder_dz_job(&d, 0, tp);
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
    mnas_status st = mnas__learner_ensure_slots(l, n, 1);
    if (st != MNAS_OK) return st;
    size_t lo, hi;
    mnas__learner_task_range(l, n, l->dist.rank, &lo, &hi);
    for (size_t j = 0; j < n; j++) {
        l->task_msg[j][0] = '\0';
        l->task_status[j] = MNAS_OK;
    }
    job_data d = { l, tasks, source, source_user, (uint64_t)l->iteration * (uint64_t)n, 0,
                   (uint64_t)l->iteration * (uint64_t)n, NULL, NULL, NULL, NULL, lo, NULL };
    /* This process computes tasks lo..hi-1; each gather gives every process
     * all tasks' results, so what follows a gather is what one process
     * computing the whole batch does, bit for bit. Every process makes the
     * same gathers whatever failed. */
    if (l->mod) {
        /* The three phases (see mnas_learner.mod_pre). */
        mnas__learner_run_tasks(&d, hi - lo, encode_job);
        if ((st = mnas__learner_gather_status(l, fn, n)) == MNAS_OK)
            st = mnas__learner_gather(l, fn, l->mod_z, (size_t)l->mod_zdim * sizeof(mnas_real), n);
        if (st == MNAS_OK && !batch_failed(l, n)) {
            mod_forward_batch(l, n);
            mnas__learner_run_tasks(&d, hi - lo, train_job);
        }
        if (st == MNAS_OK && (st = mnas__learner_gather_status(l, fn, n)) == MNAS_OK)
            st = mnas__learner_gather(l, fn, l->mod_u, (size_t)l->mod_total * sizeof(mnas_real), n);
        if (st == MNAS_OK && !batch_failed(l, n)) {
            mod_backward_batch(l, n);
            mnas__learner_run_tasks(&d, hi - lo, encoder_dz_job);
        }
        for (size_t j = lo; j < hi; j++) {
            mnas_task_free(l->bown[j]);
            l->bown[j] = NULL;
        }
    } else {
        mnas__learner_run_tasks(&d, hi - lo, train_job);
    }
    if (st == MNAS_OK) st = mnas__learner_gather_status(l, fn, n);
    if (st == MNAS_OK && !batch_failed(l, n)) {
        if ((st = mnas__learner_gather(l, fn, l->task_grad, l->red_total * sizeof(mnas_real), n)) == MNAS_OK)
            st = mnas__learner_gather(l, fn, l->task_loss, sizeof *l->task_loss, n);
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
        return mnas__error(l->ctx, st, "%s: iteration %lld: %s", fn, (long long)l->iteration,
                           mnas_ctx_last_error(l->ctx));
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
