/* Private data layer: the layout of tasks and task sets, shared by the task,
 * regression and task-set files. */
#ifndef MNAS_DATA_INTERNAL_H
#define MNAS_DATA_INTERNAL_H

#include <mnas/data.h>

#include "core/core_internal.h"

#define MNAS_TASK_MAGIC 0x6d6e544bu     /* "mnTK" */
#define MNAS_TASK_SET_MAGIC 0x6d6e5453u /* "mnTS" */
#define MNAS_TASK_MAX_PARAMS 8

struct mnas_task {
    uint32_t magic;
    int family;       /* family or dataset id, -1 when unknown */
    mnas_ctx *ctx;
    mnas_tensor *support_x;
    mnas_tensor *support_y;
    mnas_tensor *query_x;
    mnas_tensor *query_y;
    int n_params;     /* 0: no known true function (caller-made task) */
    double params[MNAS_TASK_MAX_PARAMS];
    const struct mnas_task_set *owner; /* the set that will free the task, or NULL */
};

struct mnas_task_set {
    uint32_t magic;
    mnas_ctx *ctx;
    mnas_task **items;
    size_t size;
    size_t cap;
};

static inline int mnas__task_ok(const mnas_task *t) { return t && t->magic == MNAS_TASK_MAGIC; }
static inline int mnas__task_set_ok(const mnas_task_set *s)
{
    return s && s->magic == MNAS_TASK_SET_MAGIC;
}

/* A task with no tensors yet (all fields zero, family -1); NULL with a message
 * naming fn when the allocator fails. */
mnas_task *mnas__task_new(mnas_ctx *ctx, const char *fn);
/* Free a task and its tensors, whoever owns it. */
void mnas__task_destroy(mnas_task *task);

/* An empty set, and room for at least n tasks; messages name fn. */
mnas_task_set *mnas__task_set_new(mnas_ctx *ctx, const char *fn);
mnas_status mnas__task_set_reserve(mnas_task_set *set, size_t n, const char *fn);

#endif /* MNAS_DATA_INTERNAL_H */
