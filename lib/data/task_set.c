/* Task sets: a growable, owning array of tasks (fixed test sets, or any list
 * of tasks a caller builds), with its memory from the context's hooks. */
#include <string.h>

#include "data/data_internal.h"

mnas_task_set *mnas__task_set_new(mnas_ctx *ctx, const char *fn)
{
    mnas_task_set *set = mnas__alloc(ctx, sizeof *set);
    if (!set) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a task set", fn);
        return NULL;
    }
    memset(set, 0, sizeof *set);
    set->magic = MNAS_TASK_SET_MAGIC;
    set->ctx = ctx;
    return set;
}

mnas_status mnas__task_set_reserve(mnas_task_set *set, size_t n, const char *fn)
{
    if (n <= set->cap) return MNAS_OK;
    size_t bytes;
    if (!mnas__mul_ok(n, sizeof *set->items, &bytes))
        return mnas__error(set->ctx, MNAS_E_NOMEM, "%s: room for %zu tasks does not fit in memory", fn, n);
    mnas_task **items = mnas__alloc(set->ctx, bytes);
    if (!items)
        return mnas__error(set->ctx, MNAS_E_NOMEM, "%s: cannot allocate room for %zu tasks", fn, n);
    /* The hooks have no realloc: copy, then give the old block back. */
    if (set->size) memcpy(items, set->items, set->size * sizeof *items);
    mnas__free(set->ctx, set->items);
    set->items = items;
    set->cap = n;
    return MNAS_OK;
}

mnas_task_set *mnas_task_set_create(mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    return mnas__task_set_new(ctx, "mnas_task_set_create");
}

mnas_status mnas_task_set_add(mnas_task_set *set, mnas_task *task)
{
    static const char fn[] = "mnas_task_set_add";
    if (!mnas__task_set_ok(set)) {
        /* The set takes ownership even when the call fails. */
        if (mnas__task_ok(task)) {
            mnas_ctx *ctx = task->ctx;
            mnas_task_free(task);
            return mnas__error(ctx, MNAS_E_INVALID, "%s: set is %s", fn, set ? "not a valid task set" : "NULL");
        }
        return MNAS_E_INVALID;
    }
    if (!task) return mnas__error(set->ctx, MNAS_E_INVALID, "%s: task is NULL", fn);
    if (!mnas__task_ok(task)) return mnas__error(set->ctx, MNAS_E_INVALID, "%s: task is not a valid task", fn);
    if (task->owner)
        /* Not freed: it belongs to a set, which frees it. */
        return mnas__error(set->ctx, MNAS_E_STATE, "%s: the task already belongs to %s", fn,
                           task->owner == set ? "this set" : "another set");
    if (task->ctx != set->ctx) {
        mnas__task_destroy(task);
        return mnas__error(set->ctx, MNAS_E_MISMATCH, "%s: the task belongs to another context (it was freed)",
                           fn);
    }
    if (set->size == set->cap) {
        size_t cap = set->cap ? set->cap : 8;
        if (set->cap) {
            if (cap > SIZE_MAX / 2) cap = SIZE_MAX; /* reserve reports it */
            else cap *= 2;
        }
        mnas_status st = mnas__task_set_reserve(set, cap, fn);
        if (st != MNAS_OK) {
            mnas__task_destroy(task);
            return st;
        }
    }
    task->owner = set;
    set->items[set->size++] = task;
    return MNAS_OK;
}

size_t mnas_task_set_size(const mnas_task_set *set) { return mnas__task_set_ok(set) ? set->size : 0; }

const mnas_task *mnas_task_set_get(const mnas_task_set *set, size_t i)
{
    if (!mnas__task_set_ok(set)) return NULL;
    if (i >= set->size) {
        mnas__error(set->ctx, MNAS_E_INVALID, "mnas_task_set_get: index %zu is out of range (the set has %zu tasks)",
                    i, set->size);
        return NULL;
    }
    return set->items[i];
}

void mnas_task_set_free(mnas_task_set *set)
{
    if (!mnas__task_set_ok(set)) return;
    for (size_t i = 0; i < set->size; i++) mnas__task_destroy(set->items[i]);
    mnas__free(set->ctx, set->items);
    set->magic = 0;
    mnas__free(set->ctx, set);
}
