/* Private learner header: the learner's state and the functions its phase
 * files share. learner.c: creation, options, parameters, per-task buffers;
 * learner_task.c: one task's objective (encoder, architecture, inner loop,
 * gradient); learner_batch.c: meta-batches on the worker pool, the fixed-order
 * reduction, distribution, step and train; learner_eval.c: evaluation,
 * prediction and the architecture phase; learner_checkpoint.c: save, load,
 * training with checkpoints. */
#ifndef MNAS_LEARNER_INTERNAL_H
#define MNAS_LEARNER_INTERNAL_H

#include <mnas/meta.h>

#include "autodiff/opkit.h"
#include "meta/meta_internal.h"
#include "nas/nas_internal.h"
#include "nn/nn_internal.h"

#define TASK_MSG (MNAS_MSG_MAX + 32)
#define MAX_P 1024
/* The per-task streams of evaluation, prediction and genotypes. */
#define EVAL_STREAM ((uint64_t)1 << 62)


/* Where each module's parameters sit in the learner's single set. */
typedef struct {
    size_t first, count;
} span;

struct mnas_learner {
    mnas_ctx *ctx;
    mnas_learner_options o;
    mnas_mlp *mlp;              /* MAML's network: regression ... */
    mnas_convnet *cnet;         /* ... or image classification */
    mnas_network_forward_fn user_forward; /* ... or the user's network (forward, user) */
    void *user_net;
    int classify;               /* classes > 0: cross-entropy on labels */
    const mnas_search_space *space; /* M-NAS variants: the one-shot model over a search space ... */
    mnas_search_space *own_space;   /* the built-in space of a preset (NULL: the user's, borrowed) */
    mnas_supernet *net;
    mnas_task_encoder *enc;     /* ... the task encoder ... */
    mnas_controller *ctl;       /* ... the controller (M-NAS, M-NAS-NM) ... */
    mnas_modulator *mod;        /* ... and the modulator (M-NAS, M-NAS-Shared) */
    span s_net, s_enc, s_ctl, s_mod;
    span s_lr;                  /* learned inner rates (inner_lr_mode), one per s_net tensor; count 0 when fixed */
    int alpha_idx;              /* M-NAS-Shared: the [edges, ops] logits */
    size_t edges, ops;
    int discrete;               /* architecture-evaluation phase */
    double alpha_temp;          /* alpha = softmax(logits / alpha_temp) while searching */
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

/* The modulator's parameters (its FC weight and bias): their gradients are
 * formed for the whole meta-batch at once (mnas__modulator_batch_grad), not
 * per task. */
static inline int is_mod_fc(const mnas_learner *l, size_t i)
{
    return l->mod && i >= l->s_mod.first && i < l->s_mod.first + l->s_mod.count;
}

typedef struct {
    const mnas_learner *l;
    mnas_tensor *x, *y;
    const int32_t *labels; /* classification: y as class indices */
} support_data;

typedef struct job_data job_data;
/* The work of a pool job for task j of a batch, with the worker's tape tp
 * (reset before the call). */
typedef void (*mnas__task_fn)(job_data *d, size_t j, mnas_tape *tp);

struct job_data {
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
    mnas__task_fn run; /* set by mnas__learner_run_tasks */
};

/* learner_batch.c */
/* run(d, j, tape) for tasks j = d->j0 .. d->j0 + count - 1 on the worker
 * pool, each with its worker's tape, reset first. */
void mnas__learner_run_tasks(job_data *d, size_t count, mnas__task_fn run);

/* learner.c */
/* Per-task buffers for n tasks; the modulator's rows only when training. */
mnas_status mnas__learner_ensure_slots(mnas_learner *l, size_t n, int training);

/* learner_task.c */
/* The learned inner rates of the network's weights on tape: r = inner_lr *
 * exp(rho) from the "lr." parameters rho, into r[0..s_net.count-1]; returns
 * r, or NULL in the fixed mode (or on failure, with the tape's error set). */
mnas_tensor *const *mnas__learner_rates(const mnas_learner *l, mnas_tape *tp, mnas_tensor **r);
mnas_tensor *mnas__learner_predict(const mnas_learner *l, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                   mnas_tensor *alpha);
mnas_tensor *mnas__learner_task_loss(const mnas_learner *l, mnas_tape *tp, mnas_tensor *out, mnas_tensor *y,
                                     const int32_t *labels);
/* The inner loop's loss callback; user is a support_data. */
mnas_tensor *mnas__learner_support_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user);
const int32_t *mnas__learner_labels_of(const mnas_learner *l, mnas_tape *tp, const mnas_tensor *y);
/* Shapes (and labels) of task t against the learner's network; msg gets
 * "task j: ..." (TASK_MSG bytes) on failure. */
mnas_status mnas__learner_check_task(const mnas_learner *l, const mnas_task *t, size_t j, char *msg);
mnas_tensor *mnas__learner_onehot_of(const mnas_learner *l, mnas_tape *tp, mnas_tensor *alpha);
mnas_status mnas__learner_encode(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream,
                                 struct mnas_rng *r, mnas_tensor **z, mnas_tensor **recon);
mnas_status mnas__learner_prepare(const mnas_learner *l, mnas_tape *tp, const mnas_task *t, uint64_t stream,
                                  int training, mnas_tensor **w0, mnas_tensor **alpha, mnas_tensor **recon,
                                  const mnas_real *u_pre, mnas_real *u_grad);
void mnas__learner_record_failure(mnas_learner *l, size_t j, mnas_tape *tp, mnas_status st);
mnas_status mnas__learner_task_gradient(mnas_learner *l, mnas_tape *tp, const mnas_task *t, size_t j,
                                        uint64_t stream, mnas_tensor **g, double *loss_out, double *objective_out);

/* learner_batch.c */
void mnas__learner_task_range(const mnas_learner *l, size_t n, int r, size_t *first, size_t *end);
mnas_status mnas__learner_gather(mnas_learner *l, const char *fn, void *data, size_t unit, size_t n);
mnas_status mnas__learner_gather_status(mnas_learner *l, const char *fn, size_t n);

/* M-NAS-Shared's alpha while searching: softmax of the shared logits at the
 * learner's temperature, on tp. */
mnas_tensor *mnas__learner_shared_alpha(const mnas_learner *l, mnas_tape *tp);

#endif /* MNAS_LEARNER_INTERNAL_H */
