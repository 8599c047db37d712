/* Parameter sets: ordered, named persistent tensors with gradient buffers,
 * initialisers and parameter groups. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <float.h>

#include "kernels/kernels.h"
#include "nn/nn_internal.h"

#include "tensor/tensor_internal.h"

#define NAME_MAX_LEN 63
#define MAX_GROUPS 16

typedef struct {
    char name[NAME_MAX_LEN + 1];
    mnas_tensor *value;
    mnas_tensor *grad;
    mnas_init init;
    double arg;
    int group;
} param;

struct mnas_params {
    mnas_ctx *ctx;
    param *items;
    mnas_tensor **values; /* parallel array for mnas_params_tensors */
    size_t n, cap;
};

mnas_ctx *mnas__params_ctx(const mnas_params *p) { return p ? p->ctx : NULL; }

void mnas__params_truncate(mnas_params *p, size_t count)
{
    while (p && p->n > count) {
        p->n--;
        mnas_tensor_free(p->items[p->n].value);
        mnas_tensor_free(p->items[p->n].grad);
        p->values[p->n] = NULL;
    }
}

mnas_params *mnas_params_create(mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_params *p = mnas__calloc(ctx, 1, sizeof *p);
    if (!p) {
        mnas__error(ctx, MNAS_E_NOMEM, "mnas_params_create: cannot allocate the set");
        return NULL;
    }
    p->ctx = ctx;
    return p;
}

void mnas_params_free(mnas_params *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        mnas_tensor_free(p->items[i].value);
        mnas_tensor_free(p->items[i].grad);
    }
    mnas__free(p->ctx, p->items);
    mnas__free(p->ctx, p->values);
    mnas__free(p->ctx, p);
}

static void fill(mnas_tensor *t, mnas_init init, double arg, mnas_rng *rng)
{
    mnas_real *d = t->data;
    double bound = init == MNAS_INIT_FAN_IN ? 1.0 / sqrt(arg) : arg;
    for (int64_t i = 0; i < t->size; i++) {
        switch (init) {
        case MNAS_INIT_ZEROS: d[i] = 0; break;
        case MNAS_INIT_ONES: d[i] = 1; break;
        case MNAS_INIT_CONSTANT: d[i] = (mnas_real)arg; break;
        case MNAS_INIT_FAN_IN:
        case MNAS_INIT_UNIFORM: d[i] = (mnas_real)(bound * (2.0 * mnas_rng_uniform(rng) - 1.0)); break;
        case MNAS_INIT_NORMAL: d[i] = (mnas_real)(arg * mnas_rng_normal(rng)); break;
        }
    }
}

static int name_ok(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++)
        if (name[n] < 0x21 || name[n] > 0x7e || n >= NAME_MAX_LEN) return 0;
    return n > 0;
}

int mnas_params_add(mnas_params *p, const char *name, int ndim, const int64_t *shape, mnas_init init,
                    double arg, int group)
{
    const char *fn = "mnas_params_add";
    if (!p) return -1;
    mnas_ctx *ctx = p->ctx;
    if (!name || !name_ok(name)) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: name must be 1..%d printable characters without spaces", fn,
                    NAME_MAX_LEN);
        return -1;
    }
    if (mnas_params_find(p, name) >= 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: a parameter called \"%s\" exists already", fn, name);
        return -1;
    }
    if ((int)init < MNAS_INIT_ZEROS || (int)init > MNAS_INIT_CONSTANT) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: unknown initialiser %d for \"%s\"", fn, (int)init, name);
        return -1;
    }
    if (!isfinite(arg) || (init == MNAS_INIT_FAN_IN && !(arg >= 1)) ||
        ((init == MNAS_INIT_UNIFORM || init == MNAS_INIT_NORMAL) && arg < 0) || fabs(arg) > (double)FLT_MAX ||
        (init == MNAS_INIT_NORMAL && arg > (double)FLT_MAX / 64)) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: initialiser argument %g is not valid for \"%s\"", fn, arg, name);
        return -1;
    }
    if (group < 0 || group >= MAX_GROUPS) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: group %d is outside 0..%d", fn, group, MAX_GROUPS - 1);
        return -1;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        param *items = mnas__calloc(ctx, cap, sizeof *items);
        mnas_tensor **values = mnas__calloc(ctx, cap, sizeof *values);
        if (!items || !values) {
            mnas__free(ctx, items);
            mnas__free(ctx, values);
            mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot grow the set", fn);
            return -1;
        }
        if (p->n) {
            memcpy(items, p->items, p->n * sizeof *items);
            memcpy(values, p->values, p->n * sizeof *values);
        }
        mnas__free(ctx, p->items);
        mnas__free(ctx, p->values);
        p->items = items;
        p->values = values;
        p->cap = cap;
    }
    mnas_tensor *v = mnas_tensor_zeros(ctx, ndim, shape);
    mnas_tensor *g = v ? mnas_tensor_zeros(ctx, ndim, shape) : NULL;
    if (!v || !g) {
        mnas_tensor_free(v);
        return -1; /* message set by mnas_tensor_zeros */
    }
    mnas_tensor_set_requires_grad(v, 1);
    fill(v, init, arg, mnas_ctx_rng(ctx));
    param *it = &p->items[p->n];
    memset(it, 0, sizeof *it);
    strcpy(it->name, name);
    it->value = v;
    it->grad = g;
    it->init = init;
    it->arg = arg;
    it->group = group;
    p->values[p->n] = v;
    return (int)p->n++;
}

mnas_status mnas_params_init(mnas_params *p, mnas_rng *rng)
{
    if (!p) return MNAS_E_INVALID;
    if (!rng) rng = mnas_ctx_rng(p->ctx);
    for (size_t i = 0; i < p->n; i++) fill(p->items[i].value, p->items[i].init, p->items[i].arg, rng);
    return MNAS_OK;
}

size_t mnas_params_count(const mnas_params *p) { return p ? p->n : 0; }

int64_t mnas_params_numel(const mnas_params *p)
{
    int64_t n = 0;
    for (size_t i = 0; p && i < p->n; i++) n += p->items[i].value->size;
    return n;
}

mnas_tensor *const *mnas_params_tensors(const mnas_params *p) { return p ? p->values : NULL; }
mnas_tensor *mnas_params_get(const mnas_params *p, size_t i) { return p && i < p->n ? p->items[i].value : NULL; }
mnas_tensor *mnas_params_grad(const mnas_params *p, size_t i) { return p && i < p->n ? p->items[i].grad : NULL; }
const char *mnas_params_name(const mnas_params *p, size_t i) { return p && i < p->n ? p->items[i].name : NULL; }
int mnas_params_group(const mnas_params *p, size_t i) { return p && i < p->n ? p->items[i].group : -1; }

int mnas_params_find(const mnas_params *p, const char *name)
{
    if (!p || !name) return -1;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0) return (int)i;
    return -1;
}

void mnas_params_zero_grad(mnas_params *p)
{
    for (size_t i = 0; p && i < p->n; i++)
        memset(p->items[i].grad->data, 0, (size_t)p->items[i].grad->size * sizeof(mnas_real));
}

mnas_status mnas_params_accumulate_grad(mnas_params *p, mnas_tensor *const *g, double scale)
{
    const char *fn = "mnas_params_accumulate_grad";
    if (!p) return MNAS_E_INVALID;
    if (!g) return mnas__error(p->ctx, MNAS_E_INVALID, "%s: gradients are NULL", fn);
    if (!isfinite(scale)) return mnas__error(p->ctx, MNAS_E_INVALID, "%s: scale %g is not finite", fn, scale);
    /* Validate everything first so a failure changes nothing. */
    for (size_t i = 0; i < p->n; i++) {
        if (!g[i]) continue;
        mnas_status st = mnas__tensor_check(g[i], fn, "a gradient");
        if (st != MNAS_OK) return mnas__error(p->ctx, st, "%s: gradient %zu is not a valid tensor", fn, i);
        if (g[i]->size != p->items[i].grad->size)
            return mnas__error(p->ctx, MNAS_E_SHAPE, "%s: gradient %zu (\"%s\") has %lld elements, not %lld", fn, i,
                               p->items[i].name, (long long)g[i]->size, (long long)p->items[i].grad->size);
        for (int64_t j = 0; j < g[i]->size; j++)
            if (!isfinite(g[i]->data[j]))
                return mnas__error(p->ctx, MNAS_E_NUMERIC, "%s: gradient of \"%s\" has a non-finite element at %lld",
                                   fn, p->items[i].name, (long long)j);
    }
    mnas_real s = (mnas_real)scale;
    for (size_t i = 0; i < p->n; i++) {
        if (!g[i]) continue;
        mnas_real *d = p->items[i].grad->data;
        const mnas_real *src = g[i]->data;
        for (int64_t j = 0; j < g[i]->size; j++) d[j] += s * src[j];
    }
    return MNAS_OK;
}

mnas_status mnas_params_copy_values(mnas_params *dst, const mnas_params *src)
{
    const char *fn = "mnas_params_copy_values";
    if (!dst || !src) return MNAS_E_INVALID;
    if (dst->n != src->n)
        return mnas__error(dst->ctx, MNAS_E_SHAPE, "%s: %zu parameters into %zu", fn, src->n, dst->n);
    for (size_t i = 0; i < dst->n; i++)
        if (strcmp(dst->items[i].name, src->items[i].name) != 0 ||
            !mnas__same_shape(dst->items[i].value, src->items[i].value))
            return mnas__error(dst->ctx, MNAS_E_SHAPE, "%s: parameter %zu differs (\"%s\" vs \"%s\" or its shape)", fn,
                               i, dst->items[i].name, src->items[i].name);
    for (size_t i = 0; i < dst->n; i++)
        memcpy(dst->items[i].value->data, src->items[i].value->data,
               (size_t)src->items[i].value->size * sizeof(mnas_real));
    return MNAS_OK;
}

int mnas__params_add_module(mnas_params *p, mnas_ctx *ctx, const char *fn, const char *prefix, size_t n,
                            const mnas__pspec *spec, int group)
{
    if (!p) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the parameter set is NULL", fn);
        return -1;
    }
    if (!prefix) prefix = "";
    if (strlen(prefix) > 40) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: prefix longer than 40 characters", fn);
        return -1;
    }
    char name[96];
    for (size_t k = 0; k < n; k++) {
        snprintf(name, sizeof name, "%s%s", prefix, spec[k].name);
        if (mnas_params_find(p, name) >= 0) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: the set already has a parameter \"%s\"", fn, name);
            return -1;
        }
    }
    size_t first = mnas_params_count(p);
    for (size_t k = 0; k < n; k++) {
        snprintf(name, sizeof name, "%s%s", prefix, spec[k].name);
        if (mnas_params_add(p, name, spec[k].ndim, spec[k].shape, spec[k].init, spec[k].arg, group) < 0) {
            mnas__params_truncate(p, first); /* leave the set as it was */
            return -1;
        }
    }
    return (int)first;
}

int mnas_params_copy_matching(mnas_params *dst, const mnas_params *src)
{
    if (!dst || !src) return -1;
    int copied = 0;
    for (size_t i = 0; i < src->n; i++) {
        int j = mnas_params_find(dst, src->items[i].name);
        if (j < 0 || !mnas__same_shape(dst->items[j].value, src->items[i].value)) continue;
        memcpy(dst->items[j].value->data, src->items[i].value->data,
               (size_t)src->items[i].value->size * sizeof(mnas_real));
        copied++;
    }
    return copied;
}

double mnas_params_grad_norm(const mnas_params *p)
{
    double s = 0;
    for (size_t i = 0; p && i < p->n; i++) {
        const mnas_real *d = p->items[i].grad->data;
        s += mnas__k_dot(p->items[i].grad->size, d, d);
    }
    return sqrt(s);
}
