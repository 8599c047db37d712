/** @file
 * @brief libmnas — meta layer: the inner loop (fast-weight adaptation, Eq. (2) and
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
#include <mnas/nas.h>
#include <mnas/nn.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the inner loop ------------------------------------------------------ */

/** A task loss: builds a scalar on tape from the weights being adapted and
 * extra inputs the loss depends on (architecture weights, ...; NULL when
 * there are none). It must be deterministic and read its data from user
 * (persistent tensors). */
typedef mnas_tensor *(*mnas_loss_fn)(mnas_tape *tape, mnas_tensor *const *weights, mnas_tensor *const *extra,
                                     void *user);

/** How the inner loop differentiates through its SGD steps. */
typedef enum mnas_inner_mode {
    /** Differentiate through every step (create_graph): exact meta-gradient. */
    MNAS_INNER_SECOND_ORDER = 0,
    /** Inner gradients are constants (first-order MAML). */
    MNAS_INNER_FIRST_ORDER = 1,
    /** Exact like SECOND_ORDER, but keeps only each step's weights and
     * recomputes the step's graph during the backward pass, so memory does
     * not grow with the number of steps. The result can be differentiated
     * once (mnas_grad without create_graph). */
    MNAS_INNER_RECOMPUTE = 2,
    /** MNAS_INNER_RECOMPUTE, and in a learner with a supernet the query pass
     * also keeps only each cell's inputs and output, recomputing the cell's
     * interior when the meta-gradient reaches it (per-cell checkpointing).
     * Same values and meta-gradients as MNAS_INNER_RECOMPUTE, bit for bit;
     * less memory, one more forward pass of the query set. mnas_inner_loop
     * itself treats it as MNAS_INNER_RECOMPUTE. */
    MNAS_INNER_RECOMPUTE_CELLS = 3
} mnas_inner_mode;

/** Options of mnas_inner_loop; initialise with MNAS_INNER_OPTIONS_INIT. */
typedef struct mnas_inner_options {
    /** sizeof(mnas_inner_options), set by the _INIT macro. */
    size_t struct_size;
    int steps; /**< 0..1000 (default 5) */
    double lr; /**< SGD step size, >= 0 (default 0.001, the paper's toy value) */
    mnas_inner_mode mode; /**< default MNAS_INNER_SECOND_ORDER */
    /** Appended in 0.2 (issue 17). Learned step sizes (Meta-SGD): NULL (the
     * default) steps every weight by lr; otherwise n_weights tensors, rates[i]
     * of shape [1] (one rate for weight i) or of weight i's shape (one rate
     * per element), and each step is w_i <- w_i - rates[i] (.) g_i, with lr
     * unused. The rates are inputs of the recorded graph like w0 (persistent
     * tensors that require a gradient, or tape tensors), so w_out is
     * differentiable with respect to them. Second and first order only:
     * MNAS_INNER_RECOMPUTE refuses them (MNAS_E_UNSUPPORTED). The caller keeps
     * the array and the tensors alive during the call. */
    mnas_tensor *const *rates;
} mnas_inner_options;

/** Defaults: 5 steps of 0.001, second order, no learned rates. */
#define MNAS_INNER_OPTIONS_INIT { sizeof(mnas_inner_options), 5, 0.001, MNAS_INNER_SECOND_ORDER, NULL }

/** steps SGD steps w <- w - lr * d loss(w, extra) / d w from w0 (or with
 * opts->rates, w <- w - rates (.) d loss / d w), recorded on tape so that
 * w_out (n_weights tape tensors) is differentiable with respect to w0, extra
 * and the rates. A non-finite inner loss fails with MNAS_E_NUMERIC. */
MNAS_API mnas_status mnas_inner_loop(mnas_tape *tape, mnas_loss_fn loss, void *user, size_t n_weights,
                                     mnas_tensor *const *w0, size_t n_extra, mnas_tensor *const *extra,
                                     const mnas_inner_options *opts, mnas_tensor **w_out);

/* ---- task encoder (Eq. (4)-(6)) ------------------------------------------------
 *
 * F(x, y) = ReLU(Linear([x, y])) embeds each support pair (f_dim features);
 * an encoder RNN (GRU or LSTM, hidden size z_dim) reads the embeddings in the
 * order perm gives: z_j = RNN_enc(F_j, z_{j-1}), z_0 = 0; the task
 * representation is z = mean_j z_j (Eq. (6)). A decoder RNN (hidden size
 * f_dim) runs backwards over the sequence, d_j = RNN_dec(z_j, d_{j+1}),
 * d_{K+1} = 0, and the reconstruction loss is L_r = sum_j ||d_j - F_j||^2
 * (Eq. (5)). GRU: r = s(W_ir x + b_ir + W_hr h + b_hr), u = s(W_iz x + b_iz
 * + W_hz h + b_hz), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
 * h' = (1 - u) * n + u * h. LSTM: i, f, g, o gates, c' = f c + i g,
 * h' = o tanh(c'). */
/** Recurrent cell of the task encoder. */
typedef enum mnas_rnn_kind { MNAS_RNN_GRU = 0, MNAS_RNN_LSTM = 1 } mnas_rnn_kind;

/** The task encoder of Eq. (4)-(6) (opaque): structure and shapes, weights in a parameter set. */
typedef struct mnas_task_encoder mnas_task_encoder;

/** A task encoder for pairs of x_features and y_features values; NULL on failure. */
MNAS_API mnas_task_encoder *mnas_task_encoder_create(mnas_ctx *ctx, int64_t x_features, int64_t y_features,
                                                     int64_t f_dim, int64_t z_dim, mnas_rnn_kind kind);
/** Free a task encoder. NULL is a no-op. */
MNAS_API void mnas_task_encoder_free(mnas_task_encoder *e);
/** Size of the task representation z. */
MNAS_API int64_t mnas_task_encoder_z_dim(const mnas_task_encoder *e);
/** Parameters named prefix + "f.w", "f.b", "enc.*", "dec.*". Returns the
 * first index or -1. */
MNAS_API int mnas_task_encoder_add_params(const mnas_task_encoder *e, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors the encoder adds. */
MNAS_API size_t mnas_task_encoder_num_params(const mnas_task_encoder *e);
/** Scale the embedding's input: F = ReLU(f.w (s [x, y]) + f.b), with f.w
 * initialised s times wider, U[+-1 / (s sqrt(x_features + y_features))], so
 * that at initialisation F has the distribution it has with s = 1. Adam
 * moves every weight by about its step size, so a unit of F moves by about
 * that times the sum of its inputs: with many inputs (flattened images) a
 * single update can switch every ReLU of F off for every task. With s =
 * 1 / sqrt(fan-in) the same steps move it sqrt(fan-in) times less
 * (docs/encoder.md "Input scale"). s in (0, 1] (default 1: the paper's);
 * set it before mnas_task_encoder_add_params. MNAS_E_INVALID otherwise. */
MNAS_API mnas_status mnas_task_encoder_set_input_scale(mnas_task_encoder *e, double s);
/** Encode the support set x [K, x_features], y [K, y_features]; perm is a
 * permutation of 0..K-1 (the feeding order), or NULL for 0..K-1. *z gets
 * the [1, z_dim] representation and *recon (may be NULL) the scalar L_r,
 * both on tape and differentiable. */
MNAS_API mnas_status mnas_task_encoder_forward(const mnas_task_encoder *e, mnas_tape *tape, mnas_tensor *x,
                                               mnas_tensor *y, mnas_tensor *const *w, const int64_t *perm,
                                               mnas_tensor **z, mnas_tensor **recon);

/* ---- controller -------------------------------------------------------------------
 *
 * The task-aware architecture controller of M-NAS: an MLP from z to
 * [edges, ops] logits (Linear(z_dim -> hidden) - ReLU - Linear(hidden ->
 * edges*ops)), softmax per edge. */
/** The controller (opaque): an MLP from z to the architecture weights alpha. */
typedef struct mnas_controller mnas_controller;

/** A controller from z [1, z_dim] to alpha [edges, ops]; NULL on failure. */
MNAS_API mnas_controller *mnas_controller_create(mnas_ctx *ctx, int64_t z_dim, int64_t hidden, int64_t edges,
                                                 int64_t ops);
/** Free a controller. NULL is a no-op. */
MNAS_API void mnas_controller_free(mnas_controller *c);
/** Append the controller's parameters (named prefix + ...) to p; returns the first index or -1. */
MNAS_API int mnas_controller_add_params(const mnas_controller *c, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors the controller adds. */
MNAS_API size_t mnas_controller_num_params(const mnas_controller *c);
/** alpha [edges, ops] (rows sum to 1) from z [1, z_dim]: softmax(logits / T)
 * per edge, T the controller's temperature (1 unless set). */
MNAS_API mnas_tensor *mnas_controller_forward(const mnas_controller *c, mnas_tape *tape, mnas_tensor *z,
                                              mnas_tensor *const *w);
/** Set the softmax temperature T of mnas_controller_forward (default 1, the
 * paper's; below 1 sharpens alpha towards one op per edge, above 1 flattens
 * it). T must be finite and in [1e-3, 1e3], else MNAS_E_INVALID and nothing
 * changes. Not thread-safe against a running forward: set it between
 * passes (e.g. from a training callback, for an annealing schedule). */
MNAS_API mnas_status mnas_controller_set_temperature(mnas_controller *c, double temperature);
/** The controller's temperature (1 for NULL). */
MNAS_API double mnas_controller_temperature(const mnas_controller *c);

/* ---- modulator (Eq. (7)) ---------------------------------------------------------
 *
 * tau = sigmoid(FC(z)) scales the meta-weights: w_i = tau_i * w. Element
 * mode has one tau per meta-weight element; channel mode one per output
 * row (the first axis) of each weight tensor, broadcast over the rest. The
 * FC's bias starts at bias_init (sigmoid(bias_init) is the initial scale;
 * e.g. 3 gives 0.95), its weight at U[-1/sqrt(z_dim), 1/sqrt(z_dim)]. */
/** Granularity of the modulation tau: one factor per element or per output channel. */
typedef enum mnas_modulation { MNAS_MODULATE_ELEMENT = 0, MNAS_MODULATE_CHANNEL = 1 } mnas_modulation;

/** The squashing function f of tau = f(u), u = FC(z) (docs/meta.md,
 * "Modulator forms"). SIGMOID is the paper's (tau in (0, 1)); TWO_SIGMOID
 * is 2 sigmoid(u) and ONE_PLUS_TANH 1 + tanh(u) (both in (0, 2), tau = 1 at
 * u = 0, so a modulator_bias of 0 starts at the identity; they can scale a
 * weight up as well as down). FILM is affine: w_i = gamma_i * w + beta_i with
 * gamma = sigmoid(u_gamma) (the paper's tau) on every target and a shift
 * beta = k (u_beta - bias_init), k = sigmoid'(bias_init), on the targets of
 * at most one dimension (biases, batch-norm parameters), one per element;
 * the FC then has one output more per such element (u = [u_gamma | u_beta]).
 * Select the form before mnas_modulator_add_params. */
typedef enum mnas_modulator_form {
    MNAS_MODULATOR_SIGMOID = 0,       /**< sigmoid(u), the paper's: tau in (0, 1) */
    MNAS_MODULATOR_TWO_SIGMOID = 1,   /**< 2 sigmoid(u): tau in (0, 2) */
    MNAS_MODULATOR_ONE_PLUS_TANH = 2, /**< 1 + tanh(u): tau in (0, 2) */
    MNAS_MODULATOR_FILM = 3           /**< sigmoid(u_gamma) * w + beta, beta on 1-D targets (FiLM-style) */
} mnas_modulator_form;

/** The modulator of Eq. (7) (opaque): tau = sigmoid(FC(z)) scales the meta-weights. */
typedef struct mnas_modulator mnas_modulator;

/** Modulates n tensors of the given shapes (the meta-weights, in order). */
MNAS_API mnas_modulator *mnas_modulator_create(mnas_ctx *ctx, int64_t z_dim, size_t n, mnas_tensor *const *targets,
                                               mnas_modulation mode, double bias_init);
/** Free a modulator. NULL is a no-op. */
MNAS_API void mnas_modulator_free(mnas_modulator *m);
/** Select the form of f (default MNAS_MODULATOR_SIGMOID); MNAS_E_INVALID for an unknown form.
 * MNAS_MODULATOR_FILM changes the FC's output count, so call it before
 * mnas_modulator_add_params (forward refuses parameters of another shape). */
MNAS_API mnas_status mnas_modulator_set_form(mnas_modulator *m, mnas_modulator_form form);
/** Append the modulator's parameters (named prefix + ...) to p; returns the first index or -1. */
MNAS_API int mnas_modulator_add_params(const mnas_modulator *m, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors the modulator adds. */
MNAS_API size_t mnas_modulator_num_params(const mnas_modulator *m);
/** out[i] = tau_i * targets[i] for the n tensors given (shapes as created). */
MNAS_API mnas_status mnas_modulator_forward(const mnas_modulator *m, mnas_tape *tape, mnas_tensor *z,
                                            mnas_tensor *const *w, mnas_tensor *const *targets, mnas_tensor **out);

/* ---- meta-learners ---------------------------------------------------------- */

/** The meta-learning methods of the paper. */
typedef enum mnas_method {
    MNAS_METHOD_MAML = 0,
    MNAS_METHOD_MNAS = 1,
    MNAS_METHOD_MNAS_SHARED = 2,
    MNAS_METHOD_MNAS_NM = 3
} mnas_method;

/** Name of a method ("MAML", "M-NAS", ...), or "unknown" if out of range. */
MNAS_API const char *mnas_method_name(mnas_method method);

/** Learned inner step sizes (Meta-SGD, issue 17; docs/meta.md "Learned
 * inner rates"): the inner update becomes w <- w - r (.) g with r = inner_lr
 * exp(rho), rho a meta-parameter (0 at the start, so r starts at inner_lr)
 * trained by the outer Adam (group 0, outer_lr) with everything else. The
 * log form keeps r positive and makes an Adam step change r by a fraction
 * of itself, whatever inner_lr's scale. */
typedef enum mnas_inner_lr_mode {
    MNAS_INNER_LR_FIXED = 0,      /**< one fixed rate inner_lr (the paper's, the default) */
    MNAS_INNER_LR_PER_TENSOR = 1, /**< one learned rate per network weight tensor */
    MNAS_INNER_LR_PER_ELEMENT = 2 /**< one learned rate per network weight element (Meta-SGD) */
} mnas_inner_lr_mode;

/** Name of an inner-rate mode ("fixed", "per-tensor", "per-element"), or "unknown". */
MNAS_API const char *mnas_inner_lr_mode_name(mnas_inner_lr_mode mode);

/** Options of mnas_learner_create; initialise with MNAS_LEARNER_OPTIONS_INIT. */
typedef struct mnas_learner_options {
    /** sizeof(mnas_learner_options), set by the _INIT macro. */
    size_t struct_size;
    /** The method (default MNAS_METHOD_MAML). */
    mnas_method method;
    int meta_batch; /**< tasks per meta-update (default 25) */
    int inner_steps; /**< default 5 */
    double inner_lr; /**< default 0.001 (toy regression; the paper uses 0.01 for images) */
    double outer_lr; /**< Adam, default 0.001 */
    /** default MNAS_INNER_SECOND_ORDER */
    mnas_inner_mode inner_mode;
    int threads; /**< worker threads, 1..256 (default 1) */
    uint64_t seed; /**< initialisation and every random choice */
    double clip_norm; /**< > 0: clip the meta-gradient's norm (default 0: off) */
    int hidden; /**< width of the baseline MLP (default 50) */
    int layers; /**< Linear layers of the baseline MLP (default 5) */
    int in_features; /**< default 1 */
    int out_features; /**< default 1 */
    /** M-NAS, M-NAS-Shared, M-NAS-NM (Eq. (9)) */
    double arch_lr; /**< Adam step of the controller / shared alpha (default 1e-4) */
    double beta; /**< weight of the reconstruction loss L_r (default 0.01) */
    double path_dropout; /**< probability of dropping each alpha entry while training (default 0.1) */
    int nodes; /**< intermediate nodes of the cell (default 3) */
    int z_dim; /**< task representation size (default 32) */
    int f_dim; /**< pair embedding size F (default 32) */
    int controller_hidden; /**< default 64 */
    mnas_rnn_kind encoder; /**< default MNAS_RNN_GRU */
    mnas_modulation modulation; /**< default MNAS_MODULATE_ELEMENT */
    double modulator_bias; /**< initial FC bias of the modulator (default 3: tau ~ 0.95) */
    /** Few-shot image classification (N-way): classes > 0 selects it. Tasks
     * then hold images x [n, in_channels, image_size, image_size] and labels
     * y [n, 1] (class indices 0..classes-1 stored as reals); the loss is the
     * cross-entropy. MAML uses the paper's 4-block conv network (filters per
     * block), the M-NAS variants the DARTS supernet (stem, one normal and one
     * reduction cell of `channels` channels, `nodes` nodes: DARTS uses 4),
     * and the encoder reads the flattened image with the one-hot label. The
     * regression fields hidden, layers, in_features and out_features are
     * then unused. */
    int classes; /**< 0: regression with the MSE (default) */
    int in_channels; /**< default 1 */
    int image_size; /**< height = width (default 28) */
    int filters; /**< conv MAML baseline, per block (default 32) */
    int channels; /**< conv supernet C (default 16) */
    /** Squashing function of the modulator (docs/meta.md "Modulator forms"); default
     * MNAS_MODULATOR_SIGMOID, the paper's Eq. (7). */
    mnas_modulator_form modulator_form;
    /** Sampled mixed edges (beyond the paper, as GDAS does; M-NAS variants
     * only): 0 evaluates every op of every edge (the paper's supernet, the
     * default). k >= 1: while training, each task draws k ops per edge by
     * Gumbel top-k over the edge's alpha (from the task's random stream, so
     * results do not depend on the number of threads); the forward uses only
     * those ops, with their alpha renormalised over the k chosen (one-hot
     * for k = 1), and the gradient reaches alpha as if it were the soft one
     * (straight-through). Evaluation uses the k largest alpha entries,
     * renormalised, without noise. k = the number of ops is the full
     * supernet. 0..number of ops of the search space (8 for DARTS, 3 for the
     * MLP space). See docs/images.md. */
    int64_t sample_ops;
    /** Appended in 0.2. Stride of the conv supernet's stem
     * (mnas_supernet_set_stem_stride): 1 (default), 2 or 4; M-NAS variants on
     * images only (1 for MAML and regression). 4 brings 84 x 84 inputs to
     * 21 x 21 before the cells, which is what makes the paper's image scale
     * fit in memory (docs/images.md). */
    int stem_stride;
    /** Appended in 0.2 (issue 17). Learned inner rates (docs/meta.md "Learned
     * inner rates"), for every method: MNAS_INNER_LR_FIXED (default) steps
     * by inner_lr; PER_TENSOR and PER_ELEMENT add meta-parameters rho named
     * "lr." + the weight's name ([1] or the weight's shape), initialised at
     * 0, and step by inner_lr exp(rho) in training, evaluation and
     * prediction alike. The
     * rates step the network's weights (after the modulator for M-NAS and
     * M-NAS-Shared). inner_mode MNAS_INNER_RECOMPUTE is refused with them. */
    mnas_inner_lr_mode inner_lr_mode;
    /** Appended in 0.2 (issue 17). A bound on the learned inner rates: 0
     * (default) leaves them unbounded (rate = inner_lr exp(rho)); a value
     * above inner_lr bounds them smoothly, rate = inner_lr exp(b tanh(rho / b))
     * with b = log(inner_lr_max / inner_lr), so every rate stays in
     * (inner_lr^2 / inner_lr_max, inner_lr_max) and equals inner_lr at
     * rho = 0, with the unbounded form's slope there. Needs inner_lr_mode
     * PER_TENSOR or PER_ELEMENT; any other value is refused
     * (docs/meta.md "Learned inner rates"). */
    double inner_lr_max;
    /** Appended in 0.2 (issue 17). M-NAS variants: the task encoder's input
     * scale (mnas_task_encoder_set_input_scale): 0 (default) leaves it at 1,
     * the paper's; a value in (0, 1] scales the embedding's input and widens
     * its initialisation to match. For images, whose flattened pixels are
     * thousands of inputs, 1 / sqrt(in_channels image_size^2 + classes) keeps
     * Adam from switching the embedding off in a few meta-updates
     * (docs/images.md "The Table-2 run"). */
    double encoder_input_scale;
} mnas_learner_options;

/** Defaults of mnas_learner_options (the paper's toy-regression settings). */
#define MNAS_LEARNER_OPTIONS_INIT                                                                          \
    { sizeof(mnas_learner_options), MNAS_METHOD_MAML, 25, 5, 0.001, 0.001, MNAS_INNER_SECOND_ORDER, 1, 0u,  \
      0.0, 50, 5, 1, 1, 1e-4, 0.01, 0.1, 3, 32, 32, 64, MNAS_RNN_GRU, MNAS_MODULATE_ELEMENT, 3.0, 0, 1, 28,  \
      32, 16, MNAS_MODULATOR_SIGMOID, 0, 1, MNAS_INNER_LR_FIXED, 0.0, 0.0 }

/** A meta-learner (opaque): one of the paper's methods with its parameters and optimisers. */
typedef struct mnas_learner mnas_learner;

/** A learner with the given options (NULL: defaults); NULL on failure. */
MNAS_API mnas_learner *mnas_learner_create(mnas_ctx *ctx, const mnas_learner_options *opts);
/** Free a learner. NULL is a no-op. */
MNAS_API void mnas_learner_free(mnas_learner *l);

/** The meta-parameters (owned by the learner). */
MNAS_API mnas_params *mnas_learner_params(const mnas_learner *l);
/** Number of meta-updates made so far. */
MNAS_API int64_t mnas_learner_iteration(const mnas_learner *l);

/** Change the Adam step sizes from the next meta-update on (also from
 * inside a progress callback), for schedules such as a decay at the end of
 * training: outer_lr for the meta-weights,
 * encoder and modulator, arch_lr for the controller or the shared alpha
 * (MAML has none: pass any valid value). The optimiser's moments are kept.
 * Both must be finite and in [0, 1e6], else MNAS_E_INVALID and nothing
 * changes. The rates become the learner's options: checkpoints record the
 * rates in force, and mnas_learner_checkpoint_options returns them. */
MNAS_API mnas_status mnas_learner_set_lr(mnas_learner *l, double outer_lr, double arch_lr);
/** Set the temperature T of the architecture weights while searching:
 * alpha = softmax(logits / T) per edge, for the controller's logits (M-NAS,
 * M-NAS-NM) and the shared logits (M-NAS-Shared). Default 1 (the paper's);
 * call it between meta-updates for an annealing schedule (mnas_demo
 * --alpha-temperature, docs/meta.md). The genotype is derived from the
 * alpha at the temperature in force. Checkpoints record it. T must be finite
 * and in [1e-3, 1e3], else MNAS_E_INVALID; MAML (no alpha) gives
 * MNAS_E_STATE; nothing changes on error. */
MNAS_API mnas_status mnas_learner_set_alpha_temperature(mnas_learner *l, double temperature);
/** The temperature in force (1 for NULL or MAML). */
MNAS_API double mnas_learner_alpha_temperature(const mnas_learner *l);

/** One meta-update on n tasks (n >= 1): the mean over tasks of the query
 * loss after adaptation. *loss (may be NULL) receives that mean. On failure
 * (bad task, non-finite loss or gradient) nothing changes. */
MNAS_API mnas_status mnas_learner_step(mnas_learner *l, const mnas_task *const *tasks, size_t n, double *loss);

/** The per-task meta-objective of Eq. (9) (Eq. (3) for MAML) as training
 * computes it: the query loss after adaptation plus beta * L_r, with the
 * per-task random choices (support order, path dropout) of stream. With
 * want_grad != 0 the parameters' gradient buffers are overwritten with its
 * gradient. For checking and debugging; training calls the same code. */
MNAS_API mnas_status mnas_learner_task_objective(mnas_learner *l, const mnas_task *task, uint64_t stream,
                                                 double *objective, int want_grad);

/** Where training tasks come from: task number index (0, 1, ...) of a
 * stream. Called from worker threads, so it must be thread-safe; the
 * learner frees the tasks. */
typedef mnas_task *(*mnas_task_source)(void *user, uint64_t index);

/** Progress: called on the calling thread after every meta-update; return
 * nonzero to stop early. */
typedef int (*mnas_progress_fn)(void *user, int64_t iteration, int64_t total, double loss);

/** iterations meta-updates; iteration i uses tasks i*meta_batch to
 * (i+1)*meta_batch - 1 of the source, counted from the learner's current
 * iteration, so training resumed later continues the same stream. */
MNAS_API mnas_status mnas_learner_train(mnas_learner *l, mnas_task_source source, void *source_user,
                                        int64_t iterations, mnas_progress_fn progress, void *progress_user);

/** Query losses of every task of set (the MSE, or the cross-entropy of a
 * classification learner), before (loss_before[i], with the meta-weights)
 * and after adaptation (loss_after[i]); steps < 0 uses the training
 * inner_steps. Either output may be NULL. Runs on the worker pool. */
MNAS_API mnas_status mnas_learner_evaluate(mnas_learner *l, const mnas_task_set *set, int steps,
                                           double *loss_before, double *loss_after);
/** Classification accuracy (fraction of query images whose largest logit is
 * their label) of every task of set, before and after adaptation; the same
 * adaptation as mnas_learner_evaluate. Classification learners only
 * (classes > 0): MNAS_E_STATE otherwise. Either output may be NULL. */
MNAS_API mnas_status mnas_learner_evaluate_accuracy(mnas_learner *l, const mnas_task_set *set, int steps,
                                                    double *acc_before, double *acc_after);

/** Enter the architecture-evaluation phase (paper, "Architectures
 * Evaluation"). M-NAS-Shared fixes the genotype derived from its shared
 * alpha; with reinit != 0 the meta-weights (and encoder, modulator) are drawn
 * afresh, as the paper retrains the searched model. M-NAS and M-NAS-NM
 * discretise the controller's alpha per task with a straight-through
 * estimator: the forward uses the derived genotype's one-hot alpha, the
 * backward treats it as the soft alpha, so the controller keeps learning.
 * MAML has no architecture: MNAS_E_STATE. */
MNAS_API mnas_status mnas_learner_discretize(mnas_learner *l, int reinit);
/** 1 if the learner's architecture has been discretised (STE fine-tuning), else 0 (also for NULL). */
MNAS_API int mnas_learner_is_discrete(const mnas_learner *l);
/** The genotype the learner uses for task: M-NAS and M-NAS-NM derive it
 * from the controller's alpha for the task's support set, M-NAS-Shared from
 * its shared alpha. NULL for MAML. The caller frees it. */
MNAS_API mnas_genotype *mnas_learner_genotype(mnas_learner *l, const mnas_task *task);
/** The task representation z (Eq. (4)-(5)) the learner computes for task's
 * support set, as doubles into z[0..z_dim-1] (the support order drawn as
 * in evaluation); *z_dim (may be NULL) receives z_dim. MNAS_E_STATE for
 * MAML (no encoder), MNAS_E_INVALID when cap < z_dim. For maps of tasks
 * (the paper's Figure 6, see mnas_tsne). */
MNAS_API mnas_status mnas_learner_task_embedding(mnas_learner *l, const mnas_task *task, double *z, size_t cap,
                                                 size_t *z_dim);

/** Adapt to task's support set, then predict at n inputs x[0..n-1] (one
 * feature each; the model's outputs go to y, n * out_features values). */
MNAS_API mnas_status mnas_learner_adapt_predict(mnas_learner *l, const mnas_task *task, int steps,
                                                size_t n, const mnas_real *x, mnas_real *y);

/* ---- distribution over processes (docs/distributed.md) ---------------------- */

/** The exchange of a distributed learner (see mnas_distribution).
 * Data-parallel meta-training with any engine: process `rank` of `nprocs`
 * computes the tasks mnas_learner_task_range gives it (with its own worker
 * threads), and `allgather` makes every process hold every task's results
 * (per-task gradients, losses, modulator rows, statuses), which each then
 * sums in task order and applies the same update. The parameters are
 * therefore bit-identical for any number of processes and threads.
 * allgather(user, data, unit_bytes, offsets): data holds units of
 * unit_bytes bytes; this process filled units offsets[rank] ..
 * offsets[rank + 1] - 1; on return every process must hold all units
 * 0 .. offsets[nprocs] - 1 (in place). Every process makes the same
 * sequence of calls. A non-zero status (with a message set through
 * mnas_ctx_set_error) fails the learner call. libmnas_mpi (mnas/mpi.h)
 * binds it to MPI. Evaluation is split the same way. */
typedef mnas_status (*mnas_allgather_fn)(void *user, void *data, size_t unit_bytes, const size_t *offsets);

/** How a learner's work is split over processes (mnas_learner_set_distribution). */
typedef struct mnas_distribution {
    size_t struct_size;          /**< sizeof(mnas_distribution) */
    int rank;                    /**< 0 .. nprocs - 1 */
    int nprocs;                  /**< 1 .. 65536 */
    mnas_allgather_fn allgather; /**< required when nprocs > 1 */
    void *user;                  /**< passed to allgather */
} mnas_distribution;

/** Defaults of mnas_distribution: this process alone. */
#define MNAS_DISTRIBUTION_INIT { sizeof(mnas_distribution), 0, 1, NULL, NULL }

/** Distribute l's meta-training and evaluation (NULL: this process alone,
 * the default). The struct is copied. */
MNAS_API mnas_status mnas_learner_set_distribution(mnas_learner *l, const mnas_distribution *dist);
/** The tasks first .. end - 1 of a batch of n that this process computes:
 * [n r / p, n (r + 1) / p). */
MNAS_API mnas_status mnas_learner_task_range(const mnas_learner *l, size_t n, size_t *first, size_t *end);
/** This process's rank (0 without distribution). */
MNAS_API int mnas_learner_rank(const mnas_learner *l);

/* ---- the learner over a user's search space (docs/meta.md) ------------------ */

/** A learner of the M-NAS family (M-NAS, M-NAS-Shared, M-NAS-NM) whose
 * one-shot model is a supernet over the caller's search space instead of
 * the preset's (mnas_search_space_mlp for regression, mnas_search_space_darts
 * when opts->classes > 0): an MLP supernet of opts->nodes nodes and width
 * opts->hidden, or a conv supernet (normal + reduction cell) of
 * opts->channels channels. Everything else is the built-in path, which
 * mnas_learner_create takes with the preset's space: the task encoder, the
 * controller (path dropout, sampled edges) or the shared alpha, the
 * modulator, the worker pool (same seed, same bits for any number of
 * threads), mnas_learner_discretize (straight-through), mnas_learner_genotype
 * per task, checkpoints and exact resume. The space's ops may be custom
 * (mnas_search_space_add_op); their callbacks run on the learner's worker
 * threads, several at once on different tapes, so they must be thread-safe,
 * and an op returning the wrong shape fails the call with the op's name in
 * the message. The space must belong to ctx, outlive the learner and not
 * change while the learner lives. A checkpoint records the space's op names
 * and loads only into a learner over a space of the same ops.
 * MNAS_E_INVALID (NULL returned, message on ctx) for a NULL space, MAML,
 * or a space the supernet cannot be built from (no ops, an op's parameters
 * declared wrongly). */
MNAS_API mnas_learner *mnas_learner_create_with_space(mnas_ctx *ctx, const mnas_learner_options *opts,
                                                      const mnas_search_space *space);
/** The search space of l's supernet (the caller's, or the preset's built-in
 * one, owned by l); NULL for MAML or a NULL l. */
MNAS_API const mnas_search_space *mnas_learner_search_space(const mnas_learner *l);

/* ---- the learner over a user's network (MAML) --------------------------------- */

/** Add a user network's parameters to p (mnas_params_add, group 0), in the
 * order its forward expects them; MNAS_OK, or a status with a message set
 * through mnas_ctx_set_error. Called once, by the learner's create. */
typedef mnas_status (*mnas_network_params_fn)(void *user, mnas_params *p);
/** A user network's output for inputs x with weights w (its parameters in
 * the order added, or the fast weights an inner step made from them):
 * [n, out_features] for regression, [n, classes] logits for classification
 * (x as the built-in networks get it: [n, in_features], or images
 * [n, in_channels, image_size, image_size]). Built from differentiable
 * ops, so that second-order MAML works; called from the learner's worker
 * threads, several at once (each on its own tape), so it must not share
 * mutable state. NULL on failure (with the tape's error set). */
typedef mnas_tensor *(*mnas_network_forward_fn)(void *user, mnas_tape *tape, mnas_tensor *x,
                                                mnas_tensor *const *w);

/** A MAML learner (opts->method must be MNAS_METHOD_MAML) whose network is
 * the caller's: params adds its parameters to the learner's set (they are
 * then initialised from opts->seed like the built-in networks'), forward
 * computes it. The rest is the built-in MAML path: inner-loop modes, the
 * worker pool (same seed, same bits for any number of threads), evaluation,
 * checkpoints and exact resume. opts->hidden, layers and filters are not
 * used. A forward result of the wrong shape fails the call with the
 * shapes in the message. user is passed to both callbacks and must outlive
 * the learner. NULL (message on ctx) for missing callbacks, another method,
 * or a params callback that fails or adds nothing. */
MNAS_API mnas_learner *mnas_learner_create_with_network(mnas_ctx *ctx, const mnas_learner_options *opts,
                                                        mnas_network_params_fn params,
                                                        mnas_network_forward_fn forward, void *user);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_META_H */
