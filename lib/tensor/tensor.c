/* Persistent tensors: creation, copies, shape queries and data access. Tape
 * tensors share the layout and the queries; the tape creates them. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/tensor_internal.h"

const char *mnas__shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

mnas_status mnas__shape_check(mnas_ctx *ctx, const char *fn, int ndim, const int64_t *shape,
                              int64_t *size)
{
    if (ndim < 0 || ndim > MNAS_MAX_DIMS)
        return mnas__error(ctx, MNAS_E_SHAPE, "%s: ndim %d is outside 0..%d", fn, ndim, MNAS_MAX_DIMS);
    if (ndim > 0 && !shape) return mnas__error(ctx, MNAS_E_INVALID, "%s: shape is NULL", fn);
    /* Cap the element count so byte counts fit comfortably in size_t and int64_t. */
    const int64_t limit = (int64_t)1 << 40;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return mnas__error(ctx, MNAS_E_SHAPE, "%s: extent %lld of axis %d is not positive", fn,
                               (long long)shape[i], i);
        if (shape[i] > limit || __builtin_mul_overflow(n, shape[i], &n) || n > limit)
            return mnas__error(ctx, MNAS_E_SHAPE, "%s: shape has more than 2^40 elements", fn);
    }
    if ((uint64_t)n > SIZE_MAX / sizeof(mnas_real))
        return mnas__error(ctx, MNAS_E_SHAPE, "%s: shape too large for this platform", fn);
    *size = n;
    return MNAS_OK;
}

mnas_status mnas__tensor_check(const mnas_tensor *t, const char *fn, const char *arg)
{
    if (!t) return MNAS_E_INVALID; /* caller reports: it knows the context */
    if (t->magic != MNAS_TENSOR_MAGIC) return MNAS_E_INVALID;
    if (t->owner_epoch && *t->owner_epoch != t->epoch)
        return mnas__error(t->ctx, MNAS_E_STALE,
                           "%s: %s belongs to a tape recording that was reset or freed", fn, arg);
    return MNAS_OK;
}

void mnas__tensor_set_shape(mnas_tensor *t, int ndim, const int64_t *shape, int64_t size)
{
    t->ndim = ndim;
    for (int i = 0; i < MNAS_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->size = size;
}

/* A persistent tensor of this shape: its own (aligned) data, or, with wrap
 * non-NULL, the caller's memory, which is never freed (mnas_tensor_wrap). */
static mnas_tensor *persistent_new(mnas_ctx *ctx, const char *fn, int ndim, const int64_t *shape, mnas_real *wrap)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    int64_t size;
    if (mnas__shape_check(ctx, fn, ndim, shape, &size) != MNAS_OK) return NULL;
    mnas_tensor *t = mnas__alloc(ctx, sizeof *t);
    if (!t) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a tensor header", fn);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->data = wrap ? wrap : mnas__alloc_aligned(ctx, (size_t)size * sizeof(mnas_real));
    if (!t->data) {
        mnas__free(ctx, t);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %lld elements", fn, (long long)size);
        return NULL;
    }
    t->magic = MNAS_TENSOR_MAGIC;
    t->ctx = ctx;
    t->owns_data = 1;
    t->wraps_data = wrap != NULL;
    mnas__tensor_set_shape(t, ndim, shape, size);
    __atomic_add_fetch(&ctx->live_tensors, 1, __ATOMIC_RELAXED);
    return t;
}

mnas_tensor *mnas_tensor_zeros(mnas_ctx *ctx, int ndim, const int64_t *shape)
{
    mnas_tensor *t = persistent_new(ctx, "mnas_tensor_zeros", ndim, shape, NULL);
    if (t) memset(t->data, 0, (size_t)t->size * sizeof(mnas_real));
    return t;
}

mnas_tensor *mnas_tensor_from_data(mnas_ctx *ctx, int ndim, const int64_t *shape,
                                   const mnas_real *data)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!data) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_from_data: data is NULL");
        return NULL;
    }
    mnas_tensor *t = persistent_new(ctx, "mnas_tensor_from_data", ndim, shape, NULL);
    if (t) memcpy(t->data, data, (size_t)t->size * sizeof(mnas_real));
    return t;
}

mnas_tensor *mnas_tensor_wrap(mnas_ctx *ctx, int ndim, const int64_t *shape, mnas_real *data)
{
    static const char fn[] = "mnas_tensor_wrap";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!data) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: data is NULL", fn);
        return NULL;
    }
    /* Element alignment only: every kernel reads and writes tensor data with
     * unaligned (loadu/storeu) vector accesses, since tape views and BLIS
     * operands start anywhere, so MNAS_ALIGN is a speed habit, not a need. */
    if ((uintptr_t)data % _Alignof(mnas_real) != 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: data %p is not aligned to %zu bytes (the alignment of mnas_real)",
                    fn, (void *)data, (size_t)_Alignof(mnas_real));
        return NULL;
    }
    return persistent_new(ctx, fn, ndim, shape, data);
}

static int bad_param(double x) { return !isfinite(x); }

#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
#define REAL_BIG DBL_MAX
#define NEXT_DOWN(v) nextafter((v), -INFINITY)
#else
#define REAL_BIG ((double)FLT_MAX)
#define NEXT_DOWN(v) nextafterf((v), -INFINITY)
#endif

mnas_tensor *mnas_tensor_randn_rng(mnas_ctx *ctx, mnas_rng *rng, int ndim, const int64_t *shape,
                                   double mean, double std)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!rng) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_randn: rng is NULL");
        return NULL;
    }
    if (bad_param(mean) || bad_param(std) || std < 0) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_randn: mean %g, std %g: need finite, std >= 0",
                    mean, std);
        return NULL;
    }
    if (fabs(mean) + 40.0 * std > REAL_BIG) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_randn: mean %g, std %g overflow the element type", mean, std);
        return NULL;
    }
    mnas_tensor *t = persistent_new(ctx, "mnas_tensor_randn", ndim, shape, NULL);
    if (t)
        for (int64_t i = 0; i < t->size; i++) t->data[i] = (mnas_real)(mean + std * mnas_rng_normal(rng));
    return t;
}

mnas_tensor *mnas_tensor_rand_rng(mnas_ctx *ctx, mnas_rng *rng, int ndim, const int64_t *shape,
                                  double lo, double hi)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!rng) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_rand: rng is NULL");
        return NULL;
    }
    if (bad_param(lo) || bad_param(hi) || hi < lo) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_rand: range [%g, %g) is not finite and ordered",
                    lo, hi);
        return NULL;
    }
    if (fabs(lo) > REAL_BIG || fabs(hi) > REAL_BIG) {
        mnas__error(ctx, MNAS_E_INVALID, "mnas_tensor_rand: range [%g, %g) exceeds the element type", lo, hi);
        return NULL;
    }
    mnas_tensor *t = persistent_new(ctx, "mnas_tensor_rand", ndim, shape, NULL);
    if (t)
        for (int64_t i = 0; i < t->size; i++) {
            mnas_real v = (mnas_real)(lo + (hi - lo) * mnas_rng_uniform(rng));
            /* Rounding to mnas_real can reach hi itself: keep [lo, hi). */
            while (hi > lo && (double)v >= hi) v = NEXT_DOWN(v);
            t->data[i] = v;
        }
    return t;
}

mnas_tensor *mnas_tensor_randn(mnas_ctx *ctx, int ndim, const int64_t *shape, double mean, double std)
{
    return mnas_tensor_randn_rng(ctx, mnas_ctx_rng(ctx), ndim, shape, mean, std);
}

mnas_tensor *mnas_tensor_rand(mnas_ctx *ctx, int ndim, const int64_t *shape, double lo, double hi)
{
    return mnas_tensor_rand_rng(ctx, mnas_ctx_rng(ctx), ndim, shape, lo, hi);
}

mnas_tensor *mnas_tensor_copy(const mnas_tensor *src)
{
    if (mnas__tensor_check(src, "mnas_tensor_copy", "the source") != MNAS_OK) return NULL;
    mnas_tensor *t = persistent_new(src->ctx, "mnas_tensor_copy", src->ndim, src->shape, NULL);
    if (t) memcpy(t->data, src->data, (size_t)src->size * sizeof(mnas_real));
    return t;
}

mnas_status mnas_tensor_assign(mnas_tensor *dst, const mnas_tensor *src)
{
    mnas_status st;
    if ((st = mnas__tensor_check(dst, "mnas_tensor_assign", "dst")) != MNAS_OK) return st;
    if ((st = mnas__tensor_check(src, "mnas_tensor_assign", "src")) != MNAS_OK)
        return mnas__error(dst->ctx, st, "mnas_tensor_assign: src is not a valid tensor");
    if (dst->size != src->size)
        return mnas__error(dst->ctx, MNAS_E_SHAPE, "mnas_tensor_assign: %lld elements into %lld",
                           (long long)src->size, (long long)dst->size);
    if (dst != src) memmove(dst->data, src->data, (size_t)src->size * sizeof(mnas_real));
    return MNAS_OK;
}

void mnas_tensor_free(mnas_tensor *t)
{
    if (!t || t->magic != MNAS_TENSOR_MAGIC || !t->owns_data) return;
    mnas_ctx *ctx = t->ctx;
    t->magic = MNAS_TENSOR_DEAD;
    __atomic_sub_fetch(&ctx->live_tensors, 1, __ATOMIC_RELAXED);
    if (!t->wraps_data) mnas__free_aligned(ctx, t->data);
    t->data = NULL;
    mnas__free(ctx, t);
}

mnas_status mnas_tensor_reshape(mnas_tensor *t, int ndim, const int64_t *shape)
{
    mnas_status st = mnas__tensor_check(t, "mnas_tensor_reshape", "the tensor");
    if (st != MNAS_OK) return st;
    if (!t->owns_data)
        return mnas__error(t->ctx, MNAS_E_STATE,
                           "mnas_tensor_reshape: tape tensors are reshaped with mnas_reshape");
    int64_t size;
    if ((st = mnas__shape_check(t->ctx, "mnas_tensor_reshape", ndim, shape, &size)) != MNAS_OK) return st;
    if (size != t->size) {
        char b[MNAS_SHAPE_BUF];
        return mnas__error(t->ctx, MNAS_E_SHAPE, "mnas_tensor_reshape: %s has %lld elements, the tensor %lld",
                           mnas__shape_str(b, sizeof b, ndim, shape), (long long)size, (long long)t->size);
    }
    mnas__tensor_set_shape(t, ndim, shape, size);
    return MNAS_OK;
}

int mnas_tensor_ndim(const mnas_tensor *t) { return mnas__tensor_live(t) ? t->ndim : -1; }

int64_t mnas_tensor_dim(const mnas_tensor *t, int axis)
{
    if (!mnas__tensor_live(t)) return 0;
    if (axis < 0) axis += t->ndim;
    if (axis < 0 || axis >= t->ndim) return 0;
    return t->shape[axis];
}

int64_t mnas_tensor_size(const mnas_tensor *t) { return mnas__tensor_live(t) ? t->size : 0; }

mnas_status mnas_tensor_shape(const mnas_tensor *t, int64_t shape[MNAS_MAX_DIMS])
{
    mnas_status st = mnas__tensor_check(t, "mnas_tensor_shape", "the tensor");
    if (st != MNAS_OK) return st;
    if (!shape) return mnas__error(t->ctx, MNAS_E_INVALID, "mnas_tensor_shape: shape is NULL");
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return MNAS_OK;
}

mnas_real *mnas_tensor_data(mnas_tensor *t)
{
    return mnas__tensor_check(t, "mnas_tensor_data", "the tensor") == MNAS_OK ? t->data : NULL;
}

const mnas_real *mnas_tensor_cdata(const mnas_tensor *t)
{
    return mnas__tensor_check(t, "mnas_tensor_cdata", "the tensor") == MNAS_OK ? t->data : NULL;
}

double mnas_tensor_item(const mnas_tensor *t)
{
    if (mnas__tensor_check(t, "mnas_tensor_item", "the tensor") != MNAS_OK) return NAN;
    if (t->size != 1) {
        mnas__error(t->ctx, MNAS_E_SHAPE, "mnas_tensor_item: tensor has %lld elements, not 1",
                    (long long)t->size);
        return NAN;
    }
    return (double)t->data[0];
}

mnas_ctx *mnas_tensor_ctx(const mnas_tensor *t) { return mnas__tensor_live(t) ? t->ctx : NULL; }

int mnas_tensor_is_tape_owned(const mnas_tensor *t)
{
    if (!mnas__tensor_live(t)) return -1;
    return t->tape != NULL;
}

int mnas_tensor_is_valid(const mnas_tensor *t) { return mnas__tensor_live(t); }

mnas_status mnas_tensor_set_requires_grad(mnas_tensor *t, int requires_grad)
{
    mnas_status st = mnas__tensor_check(t, "mnas_tensor_set_requires_grad", "the tensor");
    if (st != MNAS_OK) return st;
    if (t->node && !requires_grad)
        return mnas__error(t->ctx, MNAS_E_STATE,
                           "mnas_tensor_set_requires_grad: the tensor is the result of a recorded op; "
                           "use mnas_detach");
    t->requires_grad = requires_grad ? 1 : 0;
    return MNAS_OK;
}

int mnas_tensor_requires_grad(const mnas_tensor *t)
{
    return mnas__tensor_live(t) ? t->requires_grad : 0;
}
