/** @file
 * @brief libmnas — nn layer: parameter sets, modules used functionally, and the
 * SGD and Adam optimisers.
 *
 * Modules hold structure and shapes only. Their weights live in a parameter
 * set, and every forward takes the weights to use as an array of tensors in
 * the module's parameter order: the parameter set's own tensors
 * (mnas_params_tensors), or the tape tensors an inner SGD step produced from
 * them. That is what MAML and M-NAS need: one network, many weight sets. */
#ifndef MNAS_NN_H
#define MNAS_NN_H

#include <mnas/autodiff.h>
#include <mnas/core.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameter sets ---------------------------------------------------- */

/** An ordered set of named parameters with gradient buffers (opaque). */
typedef struct mnas_params mnas_params;

/** How a parameter is (re)initialised by mnas_params_init. */
typedef enum mnas_init {
    MNAS_INIT_ZEROS = 0,
    MNAS_INIT_ONES = 1,
    MNAS_INIT_FAN_IN = 2, /**< U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's linear default) */
    MNAS_INIT_UNIFORM = 3, /**< U[-scale, scale] */
    MNAS_INIT_NORMAL = 4, /**< N(0, scale^2) */
    MNAS_INIT_CONSTANT = 5 /**< every element = scale */
} mnas_init;

/** An empty parameter set; NULL on failure. */
MNAS_API mnas_params *mnas_params_create(mnas_ctx *ctx);
/** Frees the set with its tensors and gradient buffers. NULL is a no-op. */
MNAS_API void mnas_params_free(mnas_params *p);

/** Append a parameter: a persistent tensor that requires a gradient, with a
 * gradient buffer of the same shape. Names are unique, 1..63 printable
 * characters. arg is fan_in for MNAS_INIT_FAN_IN, the scale or value for the
 * others. group (0..15) selects the optimiser's learning rate. Returns the
 * new index, or -1 on failure (message on the context). The tensor is
 * initialised from the context RNG. */
MNAS_API int mnas_params_add(mnas_params *p, const char *name, int ndim, const int64_t *shape,
                             mnas_init init, double arg, int group);
/** Re-draw every parameter from its initialiser with rng (the context RNG if NULL). */
MNAS_API mnas_status mnas_params_init(mnas_params *p, mnas_rng *rng);

/** Number of parameters in the set. */
MNAS_API size_t mnas_params_count(const mnas_params *p);
/** Total number of elements over all parameters. */
MNAS_API int64_t mnas_params_numel(const mnas_params *p);
/** The parameter tensors in order (count entries; valid until the set
 * changes or is freed). */
MNAS_API mnas_tensor *const *mnas_params_tensors(const mnas_params *p);
/** Parameter tensor i, or NULL if out of range. */
MNAS_API mnas_tensor *mnas_params_get(const mnas_params *p, size_t i);
/** Gradient buffer of parameter i, or NULL if out of range. */
MNAS_API mnas_tensor *mnas_params_grad(const mnas_params *p, size_t i);
/** Name of parameter i, or NULL if out of range. */
MNAS_API const char *mnas_params_name(const mnas_params *p, size_t i);
/** Optimiser group of parameter i, or -1 if out of range. */
MNAS_API int mnas_params_group(const mnas_params *p, size_t i);
/** Index of the parameter called name, or -1. */
MNAS_API int mnas_params_find(const mnas_params *p, const char *name);

/** Set every gradient buffer to zero. */
MNAS_API void mnas_params_zero_grad(mnas_params *p);
/** grad_i += scale * g[i] for i in [0, count); g[i] may be NULL (skipped).
 * Non-finite values are refused (MNAS_E_NUMERIC) before anything changes. */
MNAS_API mnas_status mnas_params_accumulate_grad(mnas_params *p, mnas_tensor *const *g, double scale);
/** Copy values (and nothing else) from src, which must have the same names
 * and shapes in the same order. */
MNAS_API mnas_status mnas_params_copy_values(mnas_params *dst, const mnas_params *src);
/** Copy the values of every parameter of src whose name and shape match one
 * of dst (by name, any order); returns how many were copied, or -1. */
MNAS_API int mnas_params_copy_matching(mnas_params *dst, const mnas_params *src);
/** Square root of the sum of squares of all gradient buffers. */
MNAS_API double mnas_params_grad_norm(const mnas_params *p);

/* ---- optimisers ---------------------------------------------------------- */

/** An optimiser over a parameter set (opaque), with its state. */
typedef struct mnas_optim mnas_optim;

/** The optimisers. */
typedef enum mnas_optim_kind { MNAS_OPTIM_SGD = 0, MNAS_OPTIM_ADAM = 1 } mnas_optim_kind;

/** Options of mnas_optim_create; initialise with MNAS_OPTIM_OPTIONS_INIT. */
typedef struct mnas_optim_options {
    /** sizeof(mnas_optim_options), set by the _INIT macro. */
    size_t struct_size;
    /** SGD or Adam (default Adam). */
    mnas_optim_kind kind;
    double lr; /**< learning rate of every group not set below */
    double momentum; /**< SGD only, 0..1 (default 0) */
    /** Adam decay rates of the first (beta1) and second (beta2) moments (defaults 0.9, 0.999). */
    double beta1, beta2; /**< Adam (defaults 0.9, 0.999) */
    double eps; /**< Adam (default 1e-8) */
    double clip_norm; /**< > 0: scale gradients so their global norm is at most this */
} mnas_optim_options;

/** Defaults: Adam, rate 1e-3, betas 0.9 and 0.999, eps 1e-8, no clipping. */
#define MNAS_OPTIM_OPTIONS_INIT \
    { sizeof(mnas_optim_options), MNAS_OPTIM_ADAM, 1e-3, 0.0, 0.9, 0.999, 1e-8, 0.0 }

/** An optimiser over every parameter of p (which must outlive it). */
MNAS_API mnas_optim *mnas_optim_create(mnas_params *p, const mnas_optim_options *opts);
/** Free an optimiser. NULL is a no-op. */
MNAS_API void mnas_optim_free(mnas_optim *o);
/** Learning rate of one parameter group (0..15); lr >= 0 and finite. */
MNAS_API mnas_status mnas_optim_set_group_lr(mnas_optim *o, int group, double lr);
/** One update from the gradient buffers. A non-finite gradient fails with
 * MNAS_E_NUMERIC and changes nothing. */
MNAS_API mnas_status mnas_optim_step(mnas_optim *o);
/** Number of updates made. */
MNAS_API int64_t mnas_optim_steps(const mnas_optim *o);

/* ---- modules ------------------------------------------------------------ */

/** A multi-layer perceptron: n_layers Linear layers from dims[0] inputs to
 * dims[n_layers] outputs. Every layer but the last is followed by ReLU and
 * then batch-norm with batch statistics (the paper's Linear-ReLU-BN block);
 * MNAS_MLP_NO_BN drops the batch-norm. Parameters per hidden layer: weight
 * [out, in] (fan-in init), bias [out] (fan-in init), BN scale [out] (ones),
 * BN shift [out] (zeros); the last layer has weight and bias only. */
typedef struct mnas_mlp mnas_mlp;

enum { MNAS_MLP_NO_BN = 1 };

/** An MLP of n_layers Linear layers with dims[0..n_layers] features (flags: MNAS_MLP_*); NULL on failure. */
MNAS_API mnas_mlp *mnas_mlp_create(mnas_ctx *ctx, int n_layers, const int64_t *dims, unsigned flags);
/** Free an MLP. NULL is a no-op. */
MNAS_API void mnas_mlp_free(mnas_mlp *m);
/** Add the MLP's parameters to p, named prefix + "l<i>.w", "l<i>.b",
 * "l<i>.bn_g", "l<i>.bn_b", in group group. Returns the index of the first
 * one, or -1. */
MNAS_API int mnas_mlp_add_params(const mnas_mlp *m, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors of the MLP. */
MNAS_API size_t mnas_mlp_num_params(const mnas_mlp *m);
/** y = MLP(x; w) for x [N, dims[0]]; w holds mnas_mlp_num_params tensors in
 * parameter order. */
MNAS_API mnas_tensor *mnas_mlp_forward(const mnas_mlp *m, mnas_tape *tape, mnas_tensor *x,
                                       mnas_tensor *const *w);

/** The paper's MAML baseline for images (Finn et al. 2017): 4 blocks of 3x3
 * conv (padding 1, with bias) - BN (batch statistics) - ReLU - 2x2 max-pool
 * (stride 2), then Linear to n_classes. x is [N, in_channels, height,
 * width]; height and width must be >= 16 (four halvings, rounding down, leave
 * >= 1 pixel); the head reads filters * (height/16) * (width/16) features.
 * filters 0 means 32 (MiniImagenet's choice; Omniglot's is 64).
 * Parameters: "b<i>.w" [filters, c_in, 3, 3], "b<i>.b", "b<i>.bn_g",
 * "b<i>.bn_b" [filters] for i = 0..3, then "head.w", "head.b". */
typedef struct mnas_convnet mnas_convnet;

/** The 4-block conv network of the MAML baseline for images of in_channels x height x width; NULL on failure. */
MNAS_API mnas_convnet *mnas_convnet_create(mnas_ctx *ctx, int64_t in_channels, int64_t height, int64_t width,
                                           int64_t filters, int64_t n_classes);
/** Free a conv network. NULL is a no-op. */
MNAS_API void mnas_convnet_free(mnas_convnet *net);
/** Append the network's parameters (named prefix + ...) to p; returns the first index or -1. */
MNAS_API int mnas_convnet_add_params(const mnas_convnet *net, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors of the conv network. */
MNAS_API size_t mnas_convnet_num_params(const mnas_convnet *net);
/** The number of filters per block (32 when created with 0). */
MNAS_API int64_t mnas_convnet_filters(const mnas_convnet *net);
/** Logits [N, n_classes] for x [N, in_channels, height, width]; w holds
 * mnas_convnet_num_params tensors in parameter order. */
MNAS_API mnas_tensor *mnas_convnet_forward(const mnas_convnet *net, mnas_tape *tape, mnas_tensor *x,
                                           mnas_tensor *const *w);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_NN_H */
