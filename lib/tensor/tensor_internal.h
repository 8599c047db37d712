/* Private tensor layout and the helpers every layer above uses to validate
 * and describe tensors. */
#ifndef MNAS_TENSOR_INTERNAL_H
#define MNAS_TENSOR_INTERNAL_H

#include <mnas/tensor.h>

#include "core/core_internal.h"

#define MNAS_TENSOR_MAGIC 0x6d6e5454u /* "mnTT" */
#define MNAS_TENSOR_DEAD 0xdeadbeefu

struct mnas_node;
struct mnas_tape;

struct mnas_tensor {
    uint32_t magic;
    uint32_t epoch;               /* owner's epoch at creation (tape tensors) */
    const uint32_t *owner_epoch;  /* the owning tape's epoch; NULL if persistent */
    mnas_ctx *ctx;
    struct mnas_tape *tape;       /* owning tape, NULL if persistent */
    mnas_real *data;
    int64_t shape[MNAS_MAX_DIMS];
    int64_t size;
    int ndim;
    unsigned char requires_grad;
    unsigned char owns_data;      /* persistent (freed by mnas_tensor_free); 0 on tapes */
    unsigned char wraps_data;     /* persistent over the caller's buffer (mnas_tensor_wrap):
                                     free releases the header only */
    unsigned char block_data;     /* tape tensor whose data is a block of its own
                                     (mnas__tape_new), not a view into another's */
    struct mnas_node *node;       /* producer on the tape, or leaf node */
};

/* Is t a live tensor (right magic, not stale)? */
static inline int mnas__tensor_live(const mnas_tensor *t)
{
    if (!t || t->magic != MNAS_TENSOR_MAGIC) return 0;
    if (t->owner_epoch && *t->owner_epoch != t->epoch) return 0;
    return 1;
}

/* Validate t for function fn; on failure record why on ctx (if known) and
 * return the status. */
mnas_status mnas__tensor_check(const mnas_tensor *t, const char *fn, const char *arg);

/* Validate a shape (0..4 dims, every extent >= 1, count fits memory) and
 * compute its element count. */
mnas_status mnas__shape_check(mnas_ctx *ctx, const char *fn, int ndim, const int64_t *shape,
                              int64_t *size);

/* "[2, 3, 4]" into buf. */
const char *mnas__shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);
#define MNAS_SHAPE_BUF 64

/* Fill header fields (not magic/ownership). */
void mnas__tensor_set_shape(mnas_tensor *t, int ndim, const int64_t *shape, int64_t size);

static inline int mnas__same_shape(const mnas_tensor *a, const mnas_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

#endif /* MNAS_TENSOR_INTERNAL_H */
