/* libmnas — data layer: few-shot tasks and the samplers that make them.
 *
 * A task is a support set (for adaptation) and a query set (for evaluation
 * and the meta-gradient), as persistent tensors, plus metadata. Samplers are
 * deterministic: the task drawn for (seed, index) is always the same, so a
 * meta-batch gives identical tasks whichever thread draws them. */
#ifndef MNAS_DATA_H
#define MNAS_DATA_H

#include <mnas/core.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mnas_task mnas_task;

/* A task from caller data. x tensors are [n, features] (or [n, C, H, W]),
 * y tensors [n, outputs]; the task keeps its own copies. family is the
 * task's family or dataset id (>= 0), or -1 when unknown. */
MNAS_API mnas_task *mnas_task_create(mnas_ctx *ctx, const mnas_tensor *support_x,
                                     const mnas_tensor *support_y, const mnas_tensor *query_x,
                                     const mnas_tensor *query_y, int family);
MNAS_API void mnas_task_free(mnas_task *task);

/* The task's tensors (owned by the task; valid until mnas_task_free). */
MNAS_API mnas_tensor *mnas_task_support_x(const mnas_task *task);
MNAS_API mnas_tensor *mnas_task_support_y(const mnas_task *task);
MNAS_API mnas_tensor *mnas_task_query_x(const mnas_task *task);
MNAS_API mnas_tensor *mnas_task_query_y(const mnas_task *task);
MNAS_API int mnas_task_family(const mnas_task *task);
/* Family-specific parameters (for plotting the true function): up to 8
 * doubles; returns how many the task has (0 for caller-made tasks). */
MNAS_API int mnas_task_params(const mnas_task *task, double out[8]);

/* ---- toy regression (the paper's four families) ----------------------
 *
 * Families, drawn uniformly per task:
 *   0 sinusoid   y = a sin(w x) + b,  a ~ U[0.1, 5], w ~ U[0.8, 1.2], b ~ U[0, 2 pi]
 *   1 linear     y = a x + b,         a, b ~ U[-3, 3]
 *   2 quadratic  y = a x^2 + b x + c, a ~ U[-0.2, 0.2], b ~ U[-2, 2], c ~ U[-3, 3]
 *   3 harmonics  y = a1 sin(w x + b1) + a2 sin(2 w x + b2),
 *                a1, a2 ~ U[0.1, 5], b1, b2 ~ U[0, 2 pi], w ~ U[0.8, 1.2]
 * Inputs: u ~ U[-4, 4] per task, then every support and query x ~ N(u, 2)
 * (variance 2). Support and query sets have k_shot and k_query points. */
#define MNAS_REGRESSION_FAMILIES 4

typedef enum mnas_regression_family {
    MNAS_FAMILY_SINUSOID = 0,
    MNAS_FAMILY_LINEAR = 1,
    MNAS_FAMILY_QUADRATIC = 2,
    MNAS_FAMILY_HARMONICS = 3
} mnas_regression_family;

MNAS_API const char *mnas_regression_family_name(int family);

typedef struct mnas_regression_options {
    size_t struct_size;
    int k_shot;          /* support points per task (default 10) */
    int k_query;         /* query points per task (default 10) */
    unsigned families;   /* bit mask of families to draw from (default 0xF: all) */
} mnas_regression_options;

#define MNAS_REGRESSION_OPTIONS_INIT { sizeof(mnas_regression_options), 10, 10, 0xFu }

/* The task number index of the stream seed: a pure function of (seed,
 * index, options). family < 0 draws the family uniformly from the mask;
 * family >= 0 forces it. */
MNAS_API mnas_task *mnas_regression_task(mnas_ctx *ctx, const mnas_regression_options *opts,
                                         uint64_t seed, uint64_t index, int family);

/* The true function of a regression task at x (NaN if the task has no
 * known function). */
MNAS_API double mnas_regression_eval(const mnas_task *task, double x);

/* ---- task sets -------------------------------------------------------- */

typedef struct mnas_task_set mnas_task_set;

/* A fixed test set: n_per_family tasks of every family in the mask, from
 * its own seed (family-major order: all of family 0, then 1, ...). */
MNAS_API mnas_task_set *mnas_regression_test_set(mnas_ctx *ctx, const mnas_regression_options *opts,
                                                 uint64_t seed, size_t n_per_family);
MNAS_API mnas_task_set *mnas_task_set_create(mnas_ctx *ctx);
/* The set takes ownership of task (also on failure, when it frees it). */
MNAS_API mnas_status mnas_task_set_add(mnas_task_set *set, mnas_task *task);
MNAS_API size_t mnas_task_set_size(const mnas_task_set *set);
MNAS_API const mnas_task *mnas_task_set_get(const mnas_task_set *set, size_t i);
MNAS_API void mnas_task_set_free(mnas_task_set *set);

/* ---- statistics -------------------------------------------------------- */

/* Mean and 95 % confidence half-width (1.96 * sample sd / sqrt(n)) of n
 * values; n = 1 gives ci 0. Non-finite values make the result NaN. */
MNAS_API mnas_status mnas_mean_ci95(const double *values, size_t n, double *mean, double *ci95);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_DATA_H */
