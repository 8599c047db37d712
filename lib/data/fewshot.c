/* N-way K-shot classification tasks drawn from one image dataset or a
 * mixture of them (the paper's "Multi-datasets"), as a pure function of
 * (seed, index); fixed test sets; classification accuracy. */
#include <math.h>
#include <string.h>

#include "data/image_internal.h"
#include "tensor/tensor_internal.h"

#define MNAS_FEWSHOT_MAGIC 0x6d6e4653u /* "mnFS" */
#define FEWSHOT_MAX 100000
#define TEST_SET_MAX 100000000u

struct mnas_fewshot_sampler {
    uint32_t magic;
    mnas_ctx *ctx;
    int way, shot, query;
    size_t n_datasets;
    const mnas_image_dataset **datasets;
    size_t **eligible;   /* per dataset: classes with >= shot + query images */
    size_t *n_eligible;
    size_t scratch;      /* size_t slots a task needs for its draws */
};

static int sampler_ok(const mnas_fewshot_sampler *s) { return s && s->magic == MNAS_FEWSHOT_MAGIC; }

void mnas_fewshot_sampler_free(mnas_fewshot_sampler *s)
{
    if (!sampler_ok(s)) return;
    mnas_ctx *ctx = s->ctx;
    if (s->eligible)
        for (size_t i = 0; i < s->n_datasets; i++) mnas__free(ctx, s->eligible[i]);
    mnas__free(ctx, s->eligible);
    mnas__free(ctx, s->n_eligible);
    mnas__free(ctx, s->datasets);
    s->magic = 0;
    mnas__free(ctx, s);
}

mnas_fewshot_sampler *mnas_fewshot_sampler_create(mnas_ctx *ctx, const mnas_image_dataset *const *datasets,
                                                  size_t n_datasets, const mnas_fewshot_options *opts)
{
    static const char fn[] = "mnas_fewshot_sampler_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size != sizeof o) {
            mnas__error(ctx, MNAS_E_INVALID,
                        "%s: options struct_size is %zu, this library knows %zu (initialise with "
                        "MNAS_FEWSHOT_OPTIONS_INIT)",
                        fn, opts->struct_size, sizeof o);
            return NULL;
        }
        o = *opts;
    }
    if (o.way < 1 || o.way > FEWSHOT_MAX || o.shot < 1 || o.shot > FEWSHOT_MAX || o.query < 1 ||
        o.query > FEWSHOT_MAX) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: way %d, shot %d, query %d must each be in 1..%d", fn, o.way, o.shot,
                    o.query, FEWSHOT_MAX);
        return NULL;
    }
    if (!datasets || n_datasets == 0 || n_datasets > 65536) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %s", fn, !datasets ? "datasets is NULL" : "n_datasets must be in 1..65536");
        return NULL;
    }
    for (size_t i = 0; i < n_datasets; i++) {
        const mnas_image_dataset *d = datasets[i];
        if (!mnas__image_dataset_ok(d)) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: datasets[%zu] is not a valid image dataset", fn, i);
            return NULL;
        }
        if (d->ctx != ctx) {
            mnas__error(ctx, MNAS_E_MISMATCH, "%s: datasets[%zu] belongs to another context", fn, i);
            return NULL;
        }
        const mnas_image_dataset *d0 = datasets[0];
        if (d->channels != d0->channels || d->height != d0->height || d->width != d0->width) {
            mnas__error(ctx, MNAS_E_SHAPE, "%s: datasets[%zu] has images [%d, %d, %d] but datasets[0] [%d, %d, %d]", fn,
                        i, d->channels, d->height, d->width, d0->channels, d0->height, d0->width);
            return NULL;
        }
    }
    mnas_fewshot_sampler *s = mnas__calloc(ctx, 1, sizeof *s);
    if (!s) goto nomem;
    s->magic = MNAS_FEWSHOT_MAGIC;
    s->ctx = ctx;
    s->way = o.way;
    s->shot = o.shot;
    s->query = o.query;
    s->n_datasets = n_datasets;
    s->datasets = mnas__calloc(ctx, n_datasets, sizeof *s->datasets);
    s->eligible = mnas__calloc(ctx, n_datasets, sizeof *s->eligible);
    s->n_eligible = mnas__calloc(ctx, n_datasets, sizeof *s->n_eligible);
    if (!s->datasets || !s->eligible || !s->n_eligible) goto nomem;
    const size_t need = (size_t)o.shot + (size_t)o.query;
    size_t scratch = (size_t)o.way * need;
    for (size_t i = 0; i < n_datasets; i++) {
        const mnas_image_dataset *d = datasets[i];
        s->datasets[i] = d;
        s->eligible[i] = mnas__alloc(ctx, d->n_classes * sizeof(size_t));
        if (!s->eligible[i]) goto nomem;
        size_t k = 0;
        for (size_t c = 0; c < d->n_classes; c++) {
            if (d->class_count[c] < need) continue;
            s->eligible[i][k++] = c;
            if (d->class_count[c] > scratch) scratch = d->class_count[c];
        }
        s->n_eligible[i] = k;
        if (k < (size_t)o.way) {
            mnas__error(ctx, MNAS_E_INVALID,
                        "%s: datasets[%zu] has %zu classes with at least shot + query = %zu images; a %d-way task "
                        "needs %d",
                        fn, i, k, need, o.way, o.way);
            mnas_fewshot_sampler_free(s);
            return NULL;
        }
        if (k > scratch) scratch = k;
    }
    s->scratch = scratch;
    return s;
nomem:
    mnas_fewshot_sampler_free(s);
    mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory", fn);
    return NULL;
}

size_t mnas_fewshot_sampler_num_datasets(const mnas_fewshot_sampler *s)
{
    return sampler_ok(s) ? s->n_datasets : 0;
}

mnas_status mnas_fewshot_sampler_sizes(const mnas_fewshot_sampler *s, int *way, int *shot, int *query)
{
    if (!sampler_ok(s)) return MNAS_E_INVALID;
    if (way) *way = s->way;
    if (shot) *shot = s->shot;
    if (query) *query = s->query;
    return MNAS_OK;
}

static void swap_sz(size_t *a, size_t i, size_t j)
{
    size_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Fisher-Yates shuffle of a[0..n), i from n-1 down to 1. */
static void shuffle(mnas_rng *rng, size_t *a, size_t n)
{
    for (size_t i = n; i-- > 1;) swap_sz(a, i, (size_t)mnas_rng_below(rng, (uint64_t)i + 1));
}

/* Rows of one set: image (store index) and label per row, permuted by
 * perm, converted into x [rows, C, H, W] and y [rows, 1]; only the images
 * drawn are converted, through this task's own buffer tmp (per + work
 * floats), so threads drawing tasks share nothing they write. */
static void fill(const mnas_image_dataset *d, const size_t *img, const size_t *lab, const size_t *perm, size_t rows,
                 mnas_tensor *x, mnas_tensor *y, float *tmp)
{
    const size_t per = mnas__image_floats(d);
    mnas_real *xd = mnas_tensor_data(x), *yd = mnas_tensor_data(y);
    for (size_t r = 0; r < rows; r++) {
        mnas__image_get(d->store, img[perm[r]], tmp, tmp + per);
        for (size_t k = 0; k < per; k++) xd[r * per + k] = (mnas_real)tmp[k];
        yd[r] = (mnas_real)lab[perm[r]];
    }
}

static mnas_task *draw_task(mnas_ctx *ctx, const mnas_fewshot_sampler *s, uint64_t seed, uint64_t index,
                            const char *fn)
{
    const size_t N = (size_t)s->way, K = (size_t)s->shot, Q = (size_t)s->query;
    /* scratch | chosen[N] | support img, lab, perm [N K each] | query img, lab, perm [N Q each] */
    size_t slots = s->scratch + N + 3 * N * K + 3 * N * Q;
    size_t *buf = mnas__alloc(ctx, slots * sizeof *buf);
    mnas_rng *rng = mnas_rng_create(ctx, seed, index);
    mnas_task *task = NULL;
    float *tmp = NULL;
    if (!buf || !rng) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    size_t *scratch = buf, *chosen = scratch + s->scratch;
    size_t *s_img = chosen + N, *s_lab = s_img + N * K, *s_perm = s_lab + N * K;
    size_t *q_img = s_perm + N * K, *q_lab = q_img + N * Q, *q_perm = q_lab + N * Q;

    /* 1. the dataset */
    const size_t di = (size_t)mnas_rng_below(rng, s->n_datasets);
    const mnas_image_dataset *d = s->datasets[di];
    /* 2. N distinct classes: partial Fisher-Yates over the eligible list */
    const size_t E = s->n_eligible[di];
    memcpy(scratch, s->eligible[di], E * sizeof *scratch);
    for (size_t i = 0; i < N; i++) {
        swap_sz(scratch, i, i + (size_t)mnas_rng_below(rng, (uint64_t)(E - i)));
        chosen[i] = scratch[i];
    }
    /* 3. per class (label = draw order), K + Q distinct images */
    for (size_t i = 0; i < N; i++) {
        const size_t m = d->class_count[chosen[i]], base = d->class_start[chosen[i]];
        for (size_t k = 0; k < m; k++) scratch[k] = k;
        for (size_t k = 0; k < K + Q; k++) {
            swap_sz(scratch, k, k + (size_t)mnas_rng_below(rng, (uint64_t)(m - k)));
            if (k < K) {
                s_img[i * K + k] = base + scratch[k];
                s_lab[i * K + k] = i;
            } else {
                q_img[i * Q + k - K] = base + scratch[k];
                q_lab[i * Q + k - K] = i;
            }
        }
    }
    /* 4. row order: a shuffle of the support rows, then of the query rows */
    for (size_t r = 0; r < N * K; r++) s_perm[r] = r;
    shuffle(rng, s_perm, N * K);
    for (size_t r = 0; r < N * Q; r++) q_perm[r] = r;
    shuffle(rng, q_perm, N * Q);

    task = mnas__task_new(ctx, fn);
    if (!task) goto done;
    const int64_t sx[4] = { (int64_t)(N * K), d->channels, d->height, d->width };
    const int64_t qx[4] = { (int64_t)(N * Q), d->channels, d->height, d->width };
    const int64_t sy[2] = { (int64_t)(N * K), 1 }, qy[2] = { (int64_t)(N * Q), 1 };
    task->support_x = mnas_tensor_zeros(ctx, 4, sx);
    task->support_y = mnas_tensor_zeros(ctx, 2, sy);
    task->query_x = mnas_tensor_zeros(ctx, 4, qx);
    task->query_y = mnas_tensor_zeros(ctx, 2, qy);
    if (!task->support_x || !task->support_y || !task->query_x || !task->query_y) {
        mnas__task_destroy(task);
        task = NULL;
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the task's tensors", fn);
        goto done;
    }
    tmp = mnas__alloc(ctx, sizeof(float) * (mnas__image_floats(d) + d->store->work));
    if (!tmp) {
        mnas__task_destroy(task);
        task = NULL;
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the task's conversion buffer", fn);
        goto done;
    }
    fill(d, s_img, s_lab, s_perm, N * K, task->support_x, task->support_y, tmp);
    fill(d, q_img, q_lab, q_perm, N * Q, task->query_x, task->query_y, tmp);
    task->family = (int)di;
done:
    mnas_rng_free(rng);
    mnas__free(ctx, tmp);
    mnas__free(ctx, buf);
    return task;
}

mnas_task *mnas_fewshot_task(mnas_ctx *ctx, const mnas_fewshot_sampler *sampler, uint64_t seed, uint64_t index)
{
    static const char fn[] = "mnas_fewshot_task";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!sampler_ok(sampler)) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: sampler is %s", fn, sampler ? "not a valid sampler" : "NULL");
        return NULL;
    }
    if (sampler->ctx != ctx) {
        mnas__error(ctx, MNAS_E_MISMATCH, "%s: the sampler belongs to another context", fn);
        return NULL;
    }
    return draw_task(ctx, sampler, seed, index, fn);
}

mnas_task_set *mnas_fewshot_test_set(mnas_ctx *ctx, const mnas_fewshot_sampler *sampler, uint64_t seed,
                                     size_t n_tasks)
{
    static const char fn[] = "mnas_fewshot_test_set";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!sampler_ok(sampler) || sampler->ctx != ctx) {
        mnas__error(ctx, sampler_ok(sampler) ? MNAS_E_MISMATCH : MNAS_E_INVALID, "%s: sampler is %s", fn,
                    sampler_ok(sampler) ? "from another context" : "not a valid sampler");
        return NULL;
    }
    if (n_tasks == 0 || n_tasks > TEST_SET_MAX) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: n_tasks %zu is outside 1..%u", fn, n_tasks, TEST_SET_MAX);
        return NULL;
    }
    mnas_task_set *set = mnas__task_set_new(ctx, fn);
    if (!set) return NULL;
    if (mnas__task_set_reserve(set, n_tasks, fn) != MNAS_OK) {
        mnas_task_set_free(set);
        return NULL;
    }
    for (size_t i = 0; i < n_tasks; i++) {
        mnas_task *t = draw_task(ctx, sampler, seed, (uint64_t)i, fn);
        if (!t || mnas_task_set_add(set, t) != MNAS_OK) {
            mnas_task_set_free(set);
            return NULL;
        }
    }
    return set;
}

mnas_status mnas_accuracy(const mnas_tensor *logits, const mnas_tensor *labels, double *accuracy)
{
    static const char fn[] = "mnas_accuracy";
    mnas_status st = mnas__tensor_check(logits, fn, "logits");
    if (st != MNAS_OK) return st;
    st = mnas__tensor_check(labels, fn, "labels");
    if (st != MNAS_OK) return st;
    mnas_ctx *ctx = logits->ctx;
    if (!accuracy) return mnas__error(ctx, MNAS_E_INVALID, "%s: accuracy is NULL", fn);
    if (logits->ndim != 2 || labels->ndim != 2 || labels->shape[1] != 1 || labels->shape[0] != logits->shape[0]) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        return mnas__error(ctx, MNAS_E_SHAPE, "%s: logits %s and labels %s must be [n, classes] and [n, 1]", fn,
                           mnas__shape_str(a, sizeof a, logits->ndim, logits->shape),
                           mnas__shape_str(b, sizeof b, labels->ndim, labels->shape));
    }
    const int64_t n = logits->shape[0], k = logits->shape[1];
    int64_t right = 0;
    for (int64_t r = 0; r < n; r++) {
        double lab = (double)labels->data[r];
        if (!(lab >= 0.0 && lab < (double)k && lab == floor(lab)))
            return mnas__error(ctx, MNAS_E_INVALID, "%s: label %g of row %lld is not a class index in 0..%lld", fn, lab,
                               (long long)r, (long long)(k - 1));
        const mnas_real *row = logits->data + r * k;
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (row[j] > row[best]) best = j;
        if (isnan((double)row[best]))
            return mnas__error(ctx, MNAS_E_NUMERIC, "%s: row %lld of logits holds NaN", fn, (long long)r);
        right += best == (int64_t)lab;
    }
    *accuracy = (double)right / (double)n;
    return MNAS_OK;
}
