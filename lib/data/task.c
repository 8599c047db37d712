/* Few-shot tasks: a support and a query set held as persistent tensors, with
 * the family id and, for sampled tasks, the parameters of the true function. */
#include <math.h>
#include <string.h>

#include "data/data_internal.h"
#include "tensor/tensor_internal.h"

mnas_task *mnas__task_new(mnas_ctx *ctx, const char *fn)
{
    mnas_task *t = mnas__alloc(ctx, sizeof *t);
    if (!t) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a task", fn);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->magic = MNAS_TASK_MAGIC;
    t->family = -1;
    t->ctx = ctx;
    return t;
}

void mnas__task_destroy(mnas_task *task)
{
    if (!mnas__task_ok(task)) return;
    mnas_tensor_free(task->support_x);
    mnas_tensor_free(task->support_y);
    mnas_tensor_free(task->query_x);
    mnas_tensor_free(task->query_y);
    task->magic = 0;
    mnas__free(task->ctx, task);
}

void mnas_task_free(mnas_task *task)
{
    /* A task inside a set is the set's to free (like a tape tensor is the
     * tape's): ignoring the call avoids a double free later. */
    if (!mnas__task_ok(task) || task->owner) return;
    mnas__task_destroy(task);
}

/* ---- mnas_task_create ------------------------------------------------- */

static const char *const k_create = "mnas_task_create";

/* Is t a live tensor of ctx? */
static mnas_status check_handle(mnas_ctx *ctx, const mnas_tensor *t, const char *name)
{
    if (!t) return mnas__error(ctx, MNAS_E_INVALID, "%s: %s is NULL", k_create, name);
    if (t->magic != MNAS_TENSOR_MAGIC)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: %s is not a valid tensor", k_create, name);
    if (!mnas__tensor_live(t))
        return mnas__error(ctx, MNAS_E_STALE, "%s: %s belongs to a tape recording that was reset or freed",
                           k_create, name);
    if (t->ctx != ctx)
        return mnas__error(ctx, MNAS_E_MISMATCH, "%s: %s belongs to another context", k_create, name);
    return MNAS_OK;
}

/* Same extents on every axis but the first (the row axis)? */
static int same_trailing(const mnas_tensor *a, const mnas_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 1; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static mnas_status check_shapes(mnas_ctx *ctx, const mnas_tensor *const t[4], const char *const name[4])
{
    char b1[MNAS_SHAPE_BUF], b2[MNAS_SHAPE_BUF];
    for (int i = 0; i < 4; i++)
        if (t[i]->ndim < 2)
            return mnas__error(ctx, MNAS_E_SHAPE, "%s: %s is %s; it needs a row axis and at least one more",
                               k_create, name[i], mnas__shape_str(b1, sizeof b1, t[i]->ndim, t[i]->shape));
    /* x and y of one set pair up row by row. */
    for (int i = 0; i < 4; i += 2)
        if (t[i]->shape[0] != t[i + 1]->shape[0])
            return mnas__error(ctx, MNAS_E_SHAPE, "%s: %s has %lld rows but %s has %lld", k_create, name[i],
                               (long long)t[i]->shape[0], name[i + 1], (long long)t[i + 1]->shape[0]);
    /* Support and query feed the same network: same feature and output shapes. */
    for (int i = 0; i < 2; i++)
        if (!same_trailing(t[i], t[i + 2]))
            return mnas__error(ctx, MNAS_E_SHAPE, "%s: %s is %s but %s is %s (the shapes after the row axis differ)",
                               k_create, name[i], mnas__shape_str(b1, sizeof b1, t[i]->ndim, t[i]->shape),
                               name[i + 2], mnas__shape_str(b2, sizeof b2, t[i + 2]->ndim, t[i + 2]->shape));
    return MNAS_OK;
}

static mnas_status check_finite(mnas_ctx *ctx, const mnas_tensor *t, const char *name)
{
    for (int64_t i = 0; i < t->size; i++)
        if (!isfinite((double)t->data[i]))
            return mnas__error(ctx, MNAS_E_NUMERIC, "%s: %s holds %s at element %lld", k_create, name,
                               isnan((double)t->data[i]) ? "NaN" : "Inf", (long long)i);
    return MNAS_OK;
}

mnas_task *mnas_task_create(mnas_ctx *ctx, const mnas_tensor *support_x, const mnas_tensor *support_y,
                            const mnas_tensor *query_x, const mnas_tensor *query_y, int family)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    const mnas_tensor *const t[4] = { support_x, support_y, query_x, query_y };
    const char *const name[4] = { "support_x", "support_y", "query_x", "query_y" };
    for (int i = 0; i < 4; i++)
        if (check_handle(ctx, t[i], name[i]) != MNAS_OK) return NULL;
    if (check_shapes(ctx, t, name) != MNAS_OK) return NULL;
    for (int i = 0; i < 4; i++)
        if (check_finite(ctx, t[i], name[i]) != MNAS_OK) return NULL;
    if (family < -1) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: family %d is neither an id (>= 0) nor -1 (unknown)", k_create,
                    family);
        return NULL;
    }

    mnas_task *task = mnas__task_new(ctx, k_create);
    if (!task) return NULL;
    mnas_tensor **dst[4] = { &task->support_x, &task->support_y, &task->query_x, &task->query_y };
    for (int i = 0; i < 4; i++) {
        *dst[i] = mnas_tensor_copy(t[i]);
        if (!*dst[i]) {
            mnas__task_destroy(task);
            mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot copy %s", k_create, name[i]);
            return NULL;
        }
    }
    task->family = family;
    return task;
}

/* ---- queries ------------------------------------------------------------ */

mnas_tensor *mnas_task_support_x(const mnas_task *task) { return mnas__task_ok(task) ? task->support_x : NULL; }
mnas_tensor *mnas_task_support_y(const mnas_task *task) { return mnas__task_ok(task) ? task->support_y : NULL; }
mnas_tensor *mnas_task_query_x(const mnas_task *task) { return mnas__task_ok(task) ? task->query_x : NULL; }
mnas_tensor *mnas_task_query_y(const mnas_task *task) { return mnas__task_ok(task) ? task->query_y : NULL; }

int mnas_task_family(const mnas_task *task) { return mnas__task_ok(task) ? task->family : -1; }

int mnas_task_params(const mnas_task *task, double out[8])
{
    if (!mnas__task_ok(task)) return MNAS_E_INVALID;
    if (!out) return mnas__error(task->ctx, MNAS_E_INVALID, "mnas_task_params: out is NULL");
    for (int i = 0; i < task->n_params; i++) out[i] = task->params[i];
    return task->n_params;
}
