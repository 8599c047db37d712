/* The learner's evaluation (loss and accuracy before and after adapting to
 * each task's support set), prediction, task embeddings, and the
 * architecture phase: discretisation and the genotype of a task. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "meta/learner_internal.h"

/* ---- evaluation and prediction ---------------------------------------- */

/* Adapt to the support set and return the query loss before / after. */
/* The query loss (and, with acc, the accuracy) of weights w. */
static mnas_status query_eval(mnas_learner *l, mnas_tape *tp, const mnas_task *t, mnas_tensor *const *w,
                              mnas_tensor *alpha, const int32_t *qlab, double *loss, double *acc)
{
    mnas_tensor *qy = mnas_task_query_y(t);
    mnas_tape_no_grad_begin(tp);
    mnas_tensor *out = mnas__learner_predict(l, tp, mnas_task_query_x(t), w, alpha);
    mnas_tensor *q = mnas__learner_task_loss(l, tp, out, qy, qlab);
    mnas_tape_no_grad_end(tp);
    if (!q) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
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
    mnas_tensor *w0[MAX_P], *rates[MAX_P], *alpha, *recon;
    mnas_status st = mnas__learner_prepare(l, tp, t, stream, 0, w0, &alpha, &recon, NULL, NULL);
    if (st != MNAS_OK) return st;
    mnas_tensor *sy = mnas_task_support_y(t);
    const int32_t *slab = mnas__learner_labels_of(l, tp, sy),
                  *qlab = mnas__learner_labels_of(l, tp, mnas_task_query_y(t));
    if (l->classify && (!slab || !qlab)) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_NOMEM;
    if ((before || acc_before) && (st = query_eval(l, tp, t, w0, alpha, qlab, before, acc_before)) != MNAS_OK)
        return st;
    support_data sd = { l, mnas_task_support_x(t), sy, slab };
    mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
    io.steps = steps;
    io.lr = l->o.inner_lr;
    io.rates = mnas__learner_rates(l, tp, rates);
    if (l->s_lr.count && !io.rates) return mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL;
    io.mode = MNAS_INNER_FIRST_ORDER; /* no meta-gradient needed */
    if ((st = mnas_inner_loop(tp, mnas__learner_support_loss, &sd, l->s_net.count, w0, alpha ? 1 : 0, &alpha, &io,
                              fast)) != MNAS_OK)
        return st;
    if ((after || acc_after) && (st = query_eval(l, tp, t, fast, alpha, qlab, after, acc_after)) != MNAS_OK)
        return st;
    if (alpha_out) *alpha_out = alpha;
    return MNAS_OK;
}


static void eval_job(job_data *d, size_t j, mnas_tape *tp)
{
    mnas_learner *l = d->l;
    l->task_status[j] = MNAS_OK;
    mnas_status st = mnas__learner_check_task(l, d->tasks[j], j, l->task_msg[j]);
    if (st != MNAS_OK) {
        l->task_status[j] = st;
        return;
    }
    mnas_tensor *fast[MAX_P];
    st = adapt(l, tp, d->tasks[j], EVAL_STREAM + j, d->steps, fast, NULL, d->before ? &d->before[j] : NULL,
               d->after ? &d->after[j] : NULL, d->acc_before ? &d->acc_before[j] : NULL,
               d->acc_after ? &d->acc_after[j] : NULL);
    if (st != MNAS_OK) mnas__learner_record_failure(l, j, tp, st);
}

static mnas_status evaluate(mnas_learner *l, const char *fn, const mnas_task_set *set, int steps, double *before,
                           double *after, double *acc_before, double *acc_after)
{
    size_t n = mnas_task_set_size(set);
    if (!set || n == 0) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: the task set is empty or NULL", fn);
    if (steps < 0) steps = l->o.inner_steps;
    if (steps > 1000) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, steps);
    mnas_status st = mnas__learner_ensure_slots(l, n, 0);
    if (st != MNAS_OK) return st;
    const mnas_task **tasks = mnas__calloc(l->ctx, n, sizeof *tasks);
    if (!tasks) return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: cannot allocate", fn);
    for (size_t j = 0; j < n; j++) tasks[j] = mnas_task_set_get(set, j);
    size_t lo, hi;
    mnas__learner_task_range(l, n, l->dist.rank, &lo, &hi);
    job_data d = { l, tasks, NULL, NULL, 0, steps, 0, before, after, acc_before, acc_after, lo, NULL };
    for (size_t j = 0; j < n; j++) l->task_msg[j][0] = '\0';
    mnas__learner_run_tasks(&d, hi - lo, eval_job);
    mnas__free(l->ctx, tasks);
    /* Evaluation is split across processes like training. */
    st = mnas__learner_gather_status(l, fn, n);
    double *outs[4] = { before, after, acc_before, acc_after };
    for (int k = 0; k < 4 && st == MNAS_OK; k++)
        if (outs[k]) st = mnas__learner_gather(l, fn, outs[k], sizeof(double), n);
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
    if (!l->classify)
        return mnas__error(l->ctx, MNAS_E_STATE, "%s: the learner does regression, not classification", fn);
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
    mnas_status st = mnas__learner_check_task(l, task, 0, msg);
    if (st != MNAS_OK) return mnas__error(l->ctx, st, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    mnas_tensor *fast[MAX_P], *alpha = NULL;
    if ((st = adapt(l, tp, task, EVAL_STREAM, steps, fast, &alpha, NULL, NULL, NULL, NULL)) != MNAS_OK)
        return mnas__error(l->ctx, st, "%s: %s", fn, mnas_tape_last_error(tp));
    int64_t xs[2] = { (int64_t)n, 1 };
    mnas_tape_no_grad_begin(tp);
    mnas_tensor *out = mnas__learner_predict(l, tp, mnas_tape_tensor(tp, 2, xs, x), fast, alpha);
    mnas_tape_no_grad_end(tp);
    if (!out) return mnas__error(l->ctx, mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL, "%s: %s", fn, mnas_tape_last_error(tp));
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
        mnas_tensor *a = mnas__learner_shared_alpha(l, tp);
        mnas_real *fixed = mnas__calloc(l->ctx, l->edges * l->ops, sizeof *fixed);
        mnas_tensor *oh = a ? mnas__learner_onehot_of(l, tp, a) : NULL;
        if (!fixed || !oh) {
            mnas__free(l->ctx, fixed);
            mnas_tape_reset(tp);
            return mnas__error(l->ctx, MNAS_E_NOMEM, "%s: %s", fn, mnas_tape_last_error(tp));
        }
        memcpy(fixed, oh->data, l->edges * l->ops * sizeof *fixed);
        mnas_tape_reset(tp);
        l->fixed_alpha = fixed;
    }
    if (reinit) {
        /* Re-draw every parameter but the architecture's. */
        mnas_rng *rng = mnas_rng_create(l->ctx, l->o.seed, 0x2417);
        if (!rng) return MNAS_E_NOMEM;
        mnas_tensor *keep =
            l->alpha_idx >= 0 ? mnas_tensor_copy(mnas_params_get(l->params, (size_t)l->alpha_idx)) : NULL;
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
            a = mnas__learner_shared_alpha(l, tp);
        }
    } else {
        char msg[TASK_MSG];
        if (!task) {
            mnas__error(l->ctx, MNAS_E_INVALID, "%s: M-NAS needs a task to generate its architecture", fn);
            return NULL;
        }
        if (mnas__learner_check_task(l, task, 0, msg) != MNAS_OK) {
            mnas__error(l->ctx, MNAS_E_SHAPE, "%s: %s", fn, msg);
            return NULL;
        }
        mnas_tensor *w0[MAX_P], *recon;
        if (mnas__learner_prepare(l, tp, task, EVAL_STREAM, 0, w0, &a, &recon, NULL, NULL) != MNAS_OK) a = NULL;
    }
    mnas_genotype *g = a ? mnas_genotype_derive_supernet(l->net, a) : NULL;
    if (!a) mnas__error(l->ctx, mnas_tape_status(tp) ? mnas_tape_status(tp) : MNAS_E_INTERNAL, "%s: %s", fn, mnas_tape_last_error(tp));
    mnas_tape_reset(tp);
    return g;
}

mnas_status mnas_learner_task_embedding(mnas_learner *l, const mnas_task *task, double *z, size_t cap,
                                        size_t *z_dim)
{
    const char *fn = "mnas_learner_task_embedding";
    if (!l) return MNAS_E_INVALID;
    if (!l->enc)
        return mnas__error(l->ctx, MNAS_E_STATE, "%s: %s has no task encoder", fn, mnas_method_name(l->o.method));
    if (!task || !z) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: task or z is NULL", fn);
    size_t d = (size_t)l->o.z_dim;
    if (cap < d) return mnas__error(l->ctx, MNAS_E_INVALID, "%s: room for %zu values, z has %zu", fn, cap, d);
    char msg[TASK_MSG];
    if (mnas__learner_check_task(l, task, 0, msg) != MNAS_OK)
        return mnas__error(l->ctx, MNAS_E_SHAPE, "%s: %s", fn, msg);
    mnas_tape *tp = l->tapes[0];
    mnas_tape_reset(tp);
    struct mnas_rng r;
    mnas_tensor *zt = NULL;
    mnas_status st = mnas__learner_encode(l, tp, task, EVAL_STREAM, &r, &zt, NULL);
    if (st == MNAS_OK && zt) {
        const mnas_real *zd = mnas_tensor_cdata(zt);
        for (size_t k = 0; k < d; k++) z[k] = (double)zd[k];
        if (z_dim) *z_dim = d;
    } else {
        st = mnas__error(l->ctx, st != MNAS_OK ? st : MNAS_E_INTERNAL, "%s: %s", fn, mnas_tape_last_error(tp));
    }
    mnas_tape_reset(tp);
    return st;
}
