/** @file
 * @brief libmnas — data layer: few-shot tasks and the samplers that make them.
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

/** A few-shot task (opaque): support and query sets and a family index. */
typedef struct mnas_task mnas_task;

/** A task from caller data. x tensors are [n, features] (or [n, C, H, W]),
 * y tensors [n, outputs]; the task keeps its own copies. family is the
 * task's family or dataset id (>= 0), or -1 when unknown. */
MNAS_API mnas_task *mnas_task_create(mnas_ctx *ctx, const mnas_tensor *support_x,
                                     const mnas_tensor *support_y, const mnas_tensor *query_x,
                                     const mnas_tensor *query_y, int family);
/** Free a task and its tensors. NULL is a no-op. */
MNAS_API void mnas_task_free(mnas_task *task);

/** The task's tensors (owned by the task; valid until mnas_task_free). */
MNAS_API mnas_tensor *mnas_task_support_x(const mnas_task *task);
/** Support targets [k_shot, y_features] (owned by the task). */
MNAS_API mnas_tensor *mnas_task_support_y(const mnas_task *task);
/** Query inputs [k_query, x_features] (owned by the task). */
MNAS_API mnas_tensor *mnas_task_query_x(const mnas_task *task);
/** Query targets [k_query, y_features] (owned by the task). */
MNAS_API mnas_tensor *mnas_task_query_y(const mnas_task *task);
/** The task's family (regression) or dataset index (images). */
MNAS_API int mnas_task_family(const mnas_task *task);
/** Family-specific parameters (for plotting the true function): up to 8
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
/** Number of toy-regression families. */
#define MNAS_REGRESSION_FAMILIES 4

/** The toy-regression families (values are bit positions of mnas_regression_options.families). */
typedef enum mnas_regression_family {
    MNAS_FAMILY_SINUSOID = 0,
    MNAS_FAMILY_LINEAR = 1,
    MNAS_FAMILY_QUADRATIC = 2,
    MNAS_FAMILY_HARMONICS = 3
} mnas_regression_family;

/** Name of a family ("sinusoid", ...), or "unknown" if out of range. */
MNAS_API const char *mnas_regression_family_name(int family);

/** Options of the toy-regression tasks; initialise with MNAS_REGRESSION_OPTIONS_INIT. */
typedef struct mnas_regression_options {
    /** sizeof(mnas_regression_options), set by the _INIT macro. */
    size_t struct_size;
    int k_shot; /**< support points per task (default 10) */
    int k_query; /**< query points per task (default 10) */
    unsigned families; /**< bit mask of families to draw from (default 0xF: all) */
} mnas_regression_options;

/** Defaults: 10 support and 10 query points, all four families. */
#define MNAS_REGRESSION_OPTIONS_INIT { sizeof(mnas_regression_options), 10, 10, 0xFu }

/** The task number index of the stream seed: a pure function of (seed,
 * index, options). family < 0 draws the family uniformly from the mask;
 * family >= 0 forces it. */
MNAS_API mnas_task *mnas_regression_task(mnas_ctx *ctx, const mnas_regression_options *opts,
                                         uint64_t seed, uint64_t index, int family);

/** The true function of a regression task at x (NaN if the task has no
 * known function). */
MNAS_API double mnas_regression_eval(const mnas_task *task, double x);

/* ---- task sets -------------------------------------------------------- */

/** An ordered set of tasks (opaque). */
typedef struct mnas_task_set mnas_task_set;

/** A fixed test set: n_per_family tasks of every family in the mask, from
 * its own seed (family-major order: all of family 0, then 1, ...). */
MNAS_API mnas_task_set *mnas_regression_test_set(mnas_ctx *ctx, const mnas_regression_options *opts,
                                                 uint64_t seed, size_t n_per_family);
/** Create an empty task set. */
MNAS_API mnas_task_set *mnas_task_set_create(mnas_ctx *ctx);
/** The set takes ownership of task (also on failure, when it frees it). */
MNAS_API mnas_status mnas_task_set_add(mnas_task_set *set, mnas_task *task);
/** Number of tasks in the set. */
MNAS_API size_t mnas_task_set_size(const mnas_task_set *set);
/** Task i of the set (owned by the set), or NULL if out of range. */
MNAS_API const mnas_task *mnas_task_set_get(const mnas_task_set *set, size_t i);
/** Free a set and its tasks. NULL is a no-op. */
MNAS_API void mnas_task_set_free(mnas_task_set *set);

/* ---- image datasets (few-shot classification) --------------------------
 *
 * An image dataset presents every image as float32 [C, H, W] with values in
 * [0, 1], grouped by class; classes have names. Loaded images are held
 * compactly: the decoded samples (a byte, or two for 16-bit PNG, per
 * sample) at their source size and channel count, converted (channels,
 * resize, scaling) only when an image is read (mnas_image_dataset_copy_image,
 * the few-shot sampler); an image whose samples would take more room than
 * its floats, and every image of mnas_image_dataset_create, is held as
 * float. The values read are the same either way, bit for bit. Subsets and
 * splits share their parent's pixels (no copy); any of them may be freed
 * first. Datasets are immutable once loaded, so several threads may read
 * one at a time (samplers do). docs/data.md describes the layouts,
 * conversions, resizing, memory and the cache. */

/** Decoded images of several classes (opaque). */
typedef struct mnas_image_dataset mnas_image_dataset;

/** How images are resized when a size is asked for. */
typedef enum mnas_image_resize {
    MNAS_RESIZE_AREA = 0, /**< box filter: each output pixel averages the source area it covers */
    MNAS_RESIZE_BILINEAR = 1 /**< bilinear on pixel centres (half-pixel convention), edges clamped */
} mnas_image_resize;

/** What happens to an alpha channel. */
typedef enum mnas_image_alpha {
    MNAS_ALPHA_WHITE = 0, /**< composite on white: v = a * v + (1 - a) */
    MNAS_ALPHA_DROP = 1 /**< ignore the alpha channel */
} mnas_image_alpha;

/** Options of the image loaders; initialise with MNAS_IMAGE_LOAD_OPTIONS_INIT. */
typedef struct mnas_image_load_options {
    /** sizeof(mnas_image_load_options), set by the _INIT macro. */
    size_t struct_size;
    int channels; /**< 1 (grey) or 3 (RGB); 0: those of the first image (default) */
    /** Output height (with width): both > 0 resize, both 0 keep sizes. */
    int height, width; /**< both > 0: resize every image; both 0: keep sizes (all must agree) */
    int resize; /**< mnas_image_resize (default MNAS_RESIZE_AREA) */
    int alpha; /**< mnas_image_alpha (default MNAS_ALPHA_WHITE) */
    const char *cache_path; /**< decoded cache file for class folders, or NULL (default) */
} mnas_image_load_options;

/** Defaults: channels and size of the first image, area resize, alpha on white, no cache. */
#define MNAS_IMAGE_LOAD_OPTIONS_INIT \
    { sizeof(mnas_image_load_options), 0, 0, 0, MNAS_RESIZE_AREA, MNAS_ALPHA_WHITE, NULL }

/** Class folders: `path/<class>/<image>.png` (MiniImagenet, Omniglot). Every
 * sub-folder of path is a class and every regular file inside it an image
 * (names starting with '.' are skipped, and so are plain files directly in
 * path); classes and files are taken in byte order of their names. PNG of
 * every colour type and bit depth is read through libpng. With
 * opts->cache_path, the decoded images are kept in that file and read from
 * it on a later load of the same listing with the same options. */
MNAS_API mnas_image_dataset *mnas_image_dataset_load_folder(mnas_ctx *ctx, const char *path,
                                                            const mnas_image_load_options *opts);
/** IDX files (MNIST, Fashion-MNIST): unsigned-byte images [n, rows, cols] and
 * labels [n], each plain or gzip-compressed. Classes are the label values
 * present, in increasing order, named by their decimal value. cache_path
 * is not used. The images are kept as bytes (rows * cols per image, e.g.
 * 55 MB for Fashion-MNIST's 70 000) whatever size is asked for, unless the
 * floats of the asked size are smaller. */
MNAS_API mnas_image_dataset *mnas_image_dataset_load_idx(mnas_ctx *ctx, const char *images_path,
                                                         const char *labels_path,
                                                         const mnas_image_load_options *opts);
/** A dataset from caller pixels: n_classes classes with counts[c] images
 * each, data = every image [C, H, W] in class order; names may be NULL
 * ("0", "1", ...). Values must be finite. The pixels are copied and held as
 * float32 (4 * C * H * W bytes per image). */
MNAS_API mnas_image_dataset *mnas_image_dataset_create(mnas_ctx *ctx, size_t n_classes,
                                                       const size_t *counts,
                                                       const char *const *names, int channels,
                                                       int height, int width, const mnas_real *data);
/** Free a dataset. NULL is a no-op. */
MNAS_API void mnas_image_dataset_free(mnas_image_dataset *ds);

/** Number of classes in the dataset. */
MNAS_API size_t mnas_image_dataset_num_classes(const mnas_image_dataset *ds);
/** Number of images over all classes. */
MNAS_API size_t mnas_image_dataset_num_images(const mnas_image_dataset *ds);
/** Images of class cls (0 if cls is out of range). */
MNAS_API size_t mnas_image_dataset_class_size(const mnas_image_dataset *ds, size_t cls);
/** NULL if cls is out of range; valid until the dataset is freed. */
MNAS_API const char *mnas_image_dataset_class_name(const mnas_image_dataset *ds, size_t cls);
/** The class index of a name, or -1. */
MNAS_API int64_t mnas_image_dataset_find_class(const mnas_image_dataset *ds, const char *name);
/** shape = { C, H, W }. */
MNAS_API mnas_status mnas_image_dataset_shape(const mnas_image_dataset *ds, int64_t shape[3]);
/** Copy image i of class cls into out (room for C * H * W values), converting
 * it from its stored samples when it is held compactly (work space comes from
 * the context's allocator: MNAS_E_NOMEM is possible). */
MNAS_API mnas_status mnas_image_dataset_copy_image(const mnas_image_dataset *ds, size_t cls, size_t i,
                                                   mnas_real *out, size_t out_len);
/** 1 if the dataset was read from its decoded cache, 0 if it was decoded. */
MNAS_API int mnas_image_dataset_from_cache(const mnas_image_dataset *ds);
/** A new dataset of the classes classes[0..n) (in that order). It shares
 * ds's pixels (only class tables and names are allocated); ds may be freed
 * before it. */
MNAS_API mnas_image_dataset *mnas_image_dataset_subset(const mnas_image_dataset *ds,
                                                       const size_t *classes, size_t n);

/** Class splits. With list files (any of the three paths set), each set holds
 * the classes named in its file (one name per line; blank lines and lines
 * starting with '#' are skipped; an unknown or repeated name is an error).
 * Otherwise the classes are split by fraction: a Fisher-Yates shuffle of the
 * class indices with mnas_rng_create(ctx, seed, 0) (i from n-1 down to 1,
 * j = mnas_rng_below(rng, i + 1)), then the first round(train_fraction * n)
 * shuffled classes go to train, the next round(val_fraction * n) to val,
 * the rest to test; each set keeps the dataset's class order. */
typedef struct mnas_image_split_options {
    /** sizeof(mnas_image_split_options), set by the _INIT macro. */
    size_t struct_size;
    double train_fraction; /**< default 0.64 (MiniImagenet's 64/16/20 classes) */
    double val_fraction; /**< default 0.16 */
    uint64_t seed; /**< default 0 */
    const char *train_list; /**< class-list files, or NULL (default) */
    /** Class-list file of the validation set, or NULL (default). */
    const char *val_list;
    /** Class-list file of the test set, or NULL (default). */
    const char *test_list;
} mnas_image_split_options;

/** Defaults: 64/16/20 % of the classes, seed 0, no class lists. */
#define MNAS_IMAGE_SPLIT_OPTIONS_INIT \
    { sizeof(mnas_image_split_options), 0.64, 0.16, 0u, NULL, NULL, NULL }

/** Any of train, val, test may be NULL (that set is not made); a set that is
 * asked for must get at least one class. On failure all outputs are NULL.
 * The sets share ds's pixels (as mnas_image_dataset_subset does); the four
 * datasets may be freed in any order. */
MNAS_API mnas_status mnas_image_dataset_split(const mnas_image_dataset *ds,
                                              const mnas_image_split_options *opts,
                                              mnas_image_dataset **train, mnas_image_dataset **val,
                                              mnas_image_dataset **test);

/* ---- N-way K-shot tasks --------------------------------------------------
 *
 * A sampler over one dataset, or a mixture (the paper's "Multi-datasets":
 * one dataset drawn uniformly per task; all must have the same image
 * shape). Task (seed, index) is a pure function of its arguments: support x
 * [way * shot, C, H, W], query x [way * query, C, H, W], y [n, 1] holding
 * the class index 0..way-1 as a float, family = the dataset's index in the
 * mixture. Draw order (docs/data.md), with rng = mnas_rng_create(ctx, seed,
 * index): the dataset; way distinct classes among the dataset's classes
 * with at least shot + query images (label = draw order); per class, shot +
 * query distinct images (the first shot are support); then a shuffle of
 * the support rows and one of the query rows. The sampler only reads the
 * datasets, which must outlive it; tasks may be drawn from several threads
 * at once. */
/** A sampler of N-way K-shot tasks over one or several datasets (opaque). */
typedef struct mnas_fewshot_sampler mnas_fewshot_sampler;

/** Task sizes of a few-shot sampler; initialise with MNAS_FEWSHOT_OPTIONS_INIT. */
typedef struct mnas_fewshot_options {
    /** sizeof(mnas_fewshot_options), set by the _INIT macro. */
    size_t struct_size;
    int way; /**< classes per task, N (default 5) */
    int shot; /**< support images per class, K (default 1) */
    int query; /**< query images per class, Q (default 15) */
} mnas_fewshot_options;

/** Defaults: 5-way 1-shot with 15 queries per class. */
#define MNAS_FEWSHOT_OPTIONS_INIT { sizeof(mnas_fewshot_options), 5, 1, 15 }

/** A sampler over n_datasets datasets (which must outlive it); NULL on failure. */
MNAS_API mnas_fewshot_sampler *mnas_fewshot_sampler_create(mnas_ctx *ctx,
                                                           const mnas_image_dataset *const *datasets,
                                                           size_t n_datasets,
                                                           const mnas_fewshot_options *opts);
/** Free a sampler. NULL is a no-op. */
MNAS_API void mnas_fewshot_sampler_free(mnas_fewshot_sampler *sampler);
/** Number of datasets the sampler mixes. */
MNAS_API size_t mnas_fewshot_sampler_num_datasets(const mnas_fewshot_sampler *sampler);
/** way, shot, query of the sampler (any pointer may be NULL). */
MNAS_API mnas_status mnas_fewshot_sampler_sizes(const mnas_fewshot_sampler *sampler, int *way,
                                                int *shot, int *query);
/** Task (seed, index) of the sampler, a pure function of its arguments; NULL on failure. */
MNAS_API mnas_task *mnas_fewshot_task(mnas_ctx *ctx, const mnas_fewshot_sampler *sampler,
                                      uint64_t seed, uint64_t index);
/** A fixed test set: tasks 0..n_tasks-1 of the stream seed. */
MNAS_API mnas_task_set *mnas_fewshot_test_set(mnas_ctx *ctx, const mnas_fewshot_sampler *sampler,
                                              uint64_t seed, size_t n_tasks);
/** Fraction of rows of logits [n, classes] whose arg-max (first on ties)
 * equals labels [n, 1] (class indices stored as floats, as in the y tensors
 * of few-shot tasks). */
MNAS_API mnas_status mnas_accuracy(const mnas_tensor *logits, const mnas_tensor *labels,
                                   double *accuracy);

/* ---- statistics -------------------------------------------------------- */

/** Mean and 95 % confidence half-width (1.96 * sample sd / sqrt(n)) of n
 * values; n = 1 gives ci 0. Non-finite values make the result NaN. */
MNAS_API mnas_status mnas_mean_ci95(const double *values, size_t n, double *mean, double *ci95);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_DATA_H */
