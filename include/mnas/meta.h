/* libmnas — meta layer: the inner loop (fast-weight adaptation, Eq. (2) and
 * (8) of the paper) and the meta-learners built on it.
 *
 * The learner trains meta-weights so that a few SGD steps on a task's
 * support set give low loss on its query set (Eq. (3)); the meta-gradient
 * flows through the inner steps (second order by default). Tasks of a
 * meta-batch run in parallel on a worker pool; per-task gradients are summed
 * in task order, so the same seed gives bit-identical parameters with any
 * number of threads. */
#ifndef MNAS_META_H
#define MNAS_META_H

#include <mnas/autodiff.h>
#include <mnas/core.h>
#include <mnas/data.h>
#include <mnas/nn.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the inner loop ------------------------------------------------------ */

/* A task loss: builds a scalar on tape from the weights being adapted and
 * extra inputs the loss depends on (architecture weights, ...; NULL when
 * there are none). It must be deterministic and read its data from user
 * (persistent tensors). */
typedef mnas_tensor *(*mnas_loss_fn)(mnas_tape *tape, mnas_tensor *const *weights, mnas_tensor *const *extra,
                                     void *user);

typedef enum mnas_inner_mode {
    /* Differentiate through every step (create_graph): exact meta-gradient. */
    MNAS_INNER_SECOND_ORDER = 0,
    /* Inner gradients are constants (first-order MAML). */
    MNAS_INNER_FIRST_ORDER = 1,
    /* Exact like SECOND_ORDER, but keeps only each step's weights and
     * recomputes the step's graph during the backward pass, so memory does
     * not grow with the number of steps. The result can be differentiated
     * once (mnas_grad without create_graph). */
    MNAS_INNER_RECOMPUTE = 2
} mnas_inner_mode;

typedef struct mnas_inner_options {
    size_t struct_size;
    int steps;            /* 0..1000 (default 5) */
    double lr;            /* SGD step size, >= 0 (default 0.001, the paper's toy value) */
    mnas_inner_mode mode; /* default MNAS_INNER_SECOND_ORDER */
} mnas_inner_options;

#define MNAS_INNER_OPTIONS_INIT { sizeof(mnas_inner_options), 5, 0.001, MNAS_INNER_SECOND_ORDER }

/* steps SGD steps w <- w - lr * d loss(w, extra) / d w from w0, recorded on
 * tape so that w_out (n_weights tape tensors) is differentiable with respect
 * to w0 and extra. A non-finite inner loss fails with MNAS_E_NUMERIC. */
MNAS_API mnas_status mnas_inner_loop(mnas_tape *tape, mnas_loss_fn loss, void *user, size_t n_weights,
                                     mnas_tensor *const *w0, size_t n_extra, mnas_tensor *const *extra,
                                     const mnas_inner_options *opts, mnas_tensor **w_out);

/* ---- meta-learners ---------------------------------------------------------- */

typedef enum mnas_method {
    MNAS_METHOD_MAML = 0,
    MNAS_METHOD_MNAS = 1,
    MNAS_METHOD_MNAS_SHARED = 2,
    MNAS_METHOD_MNAS_NM = 3
} mnas_method;

MNAS_API const char *mnas_method_name(mnas_method method);

typedef struct mnas_learner_options {
    size_t struct_size;
    mnas_method method;
    int meta_batch;          /* tasks per meta-update (default 25) */
    int inner_steps;         /* default 5 */
    double inner_lr;         /* default 0.001 (toy regression; the paper uses 0.01 for images) */
    double outer_lr;         /* Adam, default 0.001 */
    mnas_inner_mode inner_mode;
    int threads;             /* worker threads, 1..256 (default 1) */
    uint64_t seed;           /* initialisation and every random choice */
    double clip_norm;        /* > 0: clip the meta-gradient's norm (default 0: off) */
    int hidden;              /* width of the baseline MLP (default 50) */
    int layers;              /* Linear layers of the baseline MLP (default 5) */
    int in_features;         /* default 1 */
    int out_features;        /* default 1 */
} mnas_learner_options;

#define MNAS_LEARNER_OPTIONS_INIT                                                                         \
    { sizeof(mnas_learner_options), MNAS_METHOD_MAML, 25, 5, 0.001, 0.001, MNAS_INNER_SECOND_ORDER, 1, 0u, \
      0.0, 50, 5, 1, 1 }

typedef struct mnas_learner mnas_learner;

MNAS_API mnas_learner *mnas_learner_create(mnas_ctx *ctx, const mnas_learner_options *opts);
MNAS_API void mnas_learner_free(mnas_learner *l);

/* The meta-parameters (owned by the learner). */
MNAS_API mnas_params *mnas_learner_params(const mnas_learner *l);
MNAS_API int64_t mnas_learner_iteration(const mnas_learner *l);

/* One meta-update on n tasks (n >= 1): the mean over tasks of the query
 * loss after adaptation. *loss (may be NULL) receives that mean. On failure
 * (bad task, non-finite loss or gradient) nothing changes. */
MNAS_API mnas_status mnas_learner_step(mnas_learner *l, const mnas_task *const *tasks, size_t n, double *loss);

/* Where training tasks come from: task number index (0, 1, ...) of a
 * stream. Called from worker threads, so it must be thread-safe; the
 * learner frees the tasks. */
typedef mnas_task *(*mnas_task_source)(void *user, uint64_t index);

/* Progress: called on the calling thread after every meta-update; return
 * nonzero to stop early. */
typedef int (*mnas_progress_fn)(void *user, int64_t iteration, int64_t total, double loss);

/* iterations meta-updates; iteration i uses tasks i*meta_batch ..
 * (i+1)*meta_batch - 1 of the source, counted from the learner's current
 * iteration, so training resumed later continues the same stream. */
MNAS_API mnas_status mnas_learner_train(mnas_learner *l, mnas_task_source source, void *source_user,
                                        int64_t iterations, mnas_progress_fn progress, void *progress_user);

/* Query MSE-style losses of every task of set, before (mse_before[i], with
 * the meta-weights) and after adaptation (mse_after[i]); steps < 0 uses the
 * training inner_steps. Either output may be NULL. Runs on the worker pool. */
MNAS_API mnas_status mnas_learner_evaluate(mnas_learner *l, const mnas_task_set *set, int steps,
                                           double *loss_before, double *loss_after);

/* Adapt to task's support set, then predict at n inputs x[0..n-1] (one
 * feature each; the model's outputs go to y, n * out_features values). */
MNAS_API mnas_status mnas_learner_adapt_predict(mnas_learner *l, const mnas_task *task, int steps,
                                                size_t n, const mnas_real *x, mnas_real *y);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_META_H */
