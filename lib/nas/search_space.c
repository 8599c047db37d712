/* Search spaces: registries of named candidate ops with their parameter
 * declarations and forwards; the paper's MLP space (linear, skip, zero). */
#include <stdio.h>
#include <string.h>

#include "nas/nas_internal.h"

static int ident_ok(const char *s, size_t max)
{
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= max) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return n > 0;
}

mnas_status mnas_param_decl_add(mnas_param_decl *d, const char *suffix, int ndim, const int64_t *shape,
                                mnas_init init, double arg)
{
    if (!d) return MNAS_E_INVALID;
    const char *fn = "mnas_param_decl_add";
    if (d->n >= MNAS_OP_MAX_PARAMS) {
        d->failed = 1;
        return mnas__error(d->ctx, MNAS_E_INVALID, "%s: an op has at most %d parameters", fn, MNAS_OP_MAX_PARAMS);
    }
    if (!ident_ok(suffix, 15)) {
        d->failed = 1;
        return mnas__error(d->ctx, MNAS_E_INVALID, "%s: suffix must be 1..15 characters [A-Za-z0-9_]", fn);
    }
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->p[i].suffix, suffix)) {
            d->failed = 1;
            return mnas__error(d->ctx, MNAS_E_INVALID, "%s: suffix \"%s\" declared twice", fn, suffix);
        }
    int64_t size;
    if (mnas__shape_check(d->ctx, fn, ndim, shape, &size) != MNAS_OK) {
        d->failed = 1;
        return MNAS_E_SHAPE;
    }
    mnas__param_spec *p = &d->p[d->n++];
    memset(p, 0, sizeof *p);
    strcpy(p->suffix, suffix);
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
    p->init = init;
    p->arg = arg;
    return MNAS_OK;
}

mnas_search_space *mnas_search_space_create(mnas_ctx *ctx)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_search_space *s = mnas__calloc(ctx, 1, sizeof *s);
    if (!s) mnas__error(ctx, MNAS_E_NOMEM, "mnas_search_space_create: cannot allocate");
    if (s) s->ctx = ctx;
    return s;
}

void mnas_search_space_free(mnas_search_space *s)
{
    if (!s) return;
    mnas__free(s->ctx, s->ops);
    mnas__free(s->ctx, s);
}

int mnas_search_space_add_op(mnas_search_space *s, const char *name, int is_zero, mnas_op_declare_fn declare,
                             mnas_op_forward_fn forward, void *user)
{
    const char *fn = "mnas_search_space_add_op";
    if (!s) return -1;
    if (!ident_ok(name, MNAS_OP_NAME_MAX)) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: op name must be 1..%d characters [A-Za-z0-9_]", fn, MNAS_OP_NAME_MAX);
        return -1;
    }
    if (mnas_search_space_find_op(s, name) >= 0) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: an op called \"%s\" exists already", fn, name);
        return -1;
    }
    if (!is_zero && !forward) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: op \"%s\" needs a forward", fn, name);
        return -1;
    }
    if (s->n >= 64) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: a space holds at most 64 ops", fn);
        return -1;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        mnas__op_entry *ops = mnas__calloc(s->ctx, cap, sizeof *ops);
        if (!ops) {
            mnas__error(s->ctx, MNAS_E_NOMEM, "%s: cannot grow the registry", fn);
            return -1;
        }
        if (s->n) memcpy(ops, s->ops, s->n * sizeof *ops);
        mnas__free(s->ctx, s->ops);
        s->ops = ops;
        s->cap = cap;
    }
    mnas__op_entry *e = &s->ops[s->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->is_zero = is_zero ? 1 : 0;
    e->declare = is_zero ? NULL : declare;
    e->forward = is_zero ? NULL : forward;
    e->user = user;
    return (int)s->n++;
}

size_t mnas_search_space_num_ops(const mnas_search_space *s) { return s ? s->n : 0; }
const char *mnas_search_space_op_name(const mnas_search_space *s, size_t op) { return s && op < s->n ? s->ops[op].name : NULL; }
int mnas_search_space_op_is_zero(const mnas_search_space *s, size_t op) { return s && op < s->n ? s->ops[op].is_zero : -1; }

int mnas_search_space_find_op(const mnas_search_space *s, const char *name)
{
    if (!s || !name) return -1;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->ops[i].name, name)) return (int)i;
    return -1;
}

int mnas_param_decl_stride(const mnas_param_decl *d) { return d ? d->stride : 0; }

mnas_status mnas__op_declare(const mnas_search_space *s, size_t op, int64_t width, int stride, mnas_param_decl *d)
{
    memset(d, 0, sizeof *d);
    d->ctx = s->ctx;
    d->stride = stride;
    const mnas__op_entry *e = &s->ops[op];
    if (!e->declare) return MNAS_OK;
    mnas_status st = e->declare(e->user, width, d);
    if (st == MNAS_OK && d->failed) st = MNAS_E_INVALID;
    if (st != MNAS_OK)
        return mnas__error(s->ctx, st, "op \"%s\": declaring its parameters failed: %s", e->name,
                           mnas_ctx_last_error(s->ctx));
    return MNAS_OK;
}

int mnas__add_op_params(mnas_params *p, const char *prefix, int edge, const char *op, const mnas_param_decl *d,
                        int group)
{
    char name[96];
    int first = -1;
    for (int i = 0; i < d->n; i++) {
        snprintf(name, sizeof name, "%se%d.%s.%s", prefix, edge, op, d->p[i].suffix);
        int k = mnas_params_add(p, name, d->p[i].ndim, d->p[i].shape, d->p[i].init, d->p[i].arg, group);
        if (k < 0) return -1;
        if (first < 0) first = k;
    }
    return first < 0 ? 0 : first;
}

int mnas__check_op_weights(mnas_tape *tp, const char *fn, const mnas_param_decl *d, mnas_tensor *const *w)
{
    for (int i = 0; i < d->n; i++) {
        if (!mnas__input_ok(tp, fn, "an op weight", w[i])) return 0;
        int64_t want = 1;
        for (int k = 0; k < d->p[i].ndim; k++) want *= d->p[i].shape[k];
        if (w[i]->size != want) {
            mnas__tape_error(tp, MNAS_E_SHAPE, "%s: weight \"%s\" has %lld elements, the op declares %lld", fn,
                             d->p[i].suffix, (long long)w[i]->size, (long long)want);
            return 0;
        }
    }
    return 1;
}

/* ---- one op on its own ------------------------------------------------- */

static int op_args_ok(const mnas_search_space *s, size_t op, int64_t width, int stride, const char *fn)
{
    if (op >= s->n) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: op %zu out of range (%zu ops)", fn, op, s->n);
        return 0;
    }
    if (width < 1 || width > 65536) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: width %lld (1..65536)", fn, (long long)width);
        return 0;
    }
    if (stride != 1 && stride != 2) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: stride %d (1 or 2)", fn, stride);
        return 0;
    }
    return 1;
}

int mnas_search_space_op_num_params(const mnas_search_space *s, size_t op, int64_t width, int stride)
{
    if (!s || !op_args_ok(s, op, width, stride, "mnas_search_space_op_num_params")) return -1;
    mnas_param_decl d;
    if (mnas__op_declare(s, op, width, stride, &d) != MNAS_OK) return -1;
    return d.n;
}

int mnas_search_space_add_op_params(const mnas_search_space *s, size_t op, int64_t width, int stride, mnas_params *p,
                                    const char *prefix, int group)
{
    const char *fn = "mnas_search_space_add_op_params";
    if (!s) return -1;
    if (!p) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: the parameter set is NULL", fn);
        return -1;
    }
    if (!op_args_ok(s, op, width, stride, fn)) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) > 40) {
        mnas__error(s->ctx, MNAS_E_INVALID, "%s: prefix longer than 40 characters", fn);
        return -1;
    }
    mnas_param_decl d;
    if (mnas__op_declare(s, op, width, stride, &d) != MNAS_OK) return -1;
    size_t first = mnas_params_count(p);
    char name[96];
    for (int i = 0; i < d.n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, d.p[i].suffix);
        if (mnas_params_add(p, name, d.p[i].ndim, d.p[i].shape, d.p[i].init, d.p[i].arg, group) < 0) {
            mnas__params_truncate(p, first);
            return -1;
        }
    }
    return (int)first;
}

mnas_tensor *mnas_search_space_op_forward(const mnas_search_space *s, size_t op, mnas_tape *tp, mnas_tensor *x,
                                          mnas_tensor *const *w, int stride)
{
    const char *fn = "mnas_search_space_op_forward";
    if (!s || !mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (op >= s->n || s->ops[op].is_zero) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: op %zu is %s", fn, op,
                         op >= s->n ? "out of range" : "a zero op, which has no forward");
        return NULL;
    }
    if (stride != 1 && stride != 2) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: stride %d (1 or 2)", fn, stride);
        return NULL;
    }
    if (x->ndim < 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must be [N, width, ...]", fn);
        return NULL;
    }
    mnas_param_decl d;
    if (mnas__op_declare(s, op, x->shape[1], stride, &d) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %s", fn, mnas_ctx_last_error(s->ctx));
        return NULL;
    }
    if (d.n > 0 && !w) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: weights are NULL", fn);
        return NULL;
    }
    if (!mnas__check_op_weights(tp, fn, &d, w)) return NULL;
    return mnas__op_call(&s->ops[op], tp, fn, x, w, stride);
}

mnas_tensor *mnas__op_call(const mnas__op_entry *op, mnas_tape *tp, const char *fn, mnas_tensor *x,
                           mnas_tensor *const *w, int stride)
{
    mnas_tensor *y = op->forward(op->user, tp, x, w, stride);
    if (!y) {
        if (!mnas_tape_status(tp)) mnas__tape_error(tp, MNAS_E_INVALID, "%s: op \"%s\" failed", fn, op->name);
        return NULL;
    }
    int ok = y->ndim == x->ndim && y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1];
    for (int d = 2; ok && d < x->ndim; d++) ok = y->shape[d] == (stride == 2 ? (x->shape[d] + 1) / 2 : x->shape[d]);
    if (!ok) {
        char got[96] = "", want[96] = ""; /* a scalar (ndim 0) writes nothing */
        size_t n = 0, m = 0;
        for (int d = 0; d < y->ndim && d < 8; d++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", d ? ", " : "", (long long)y->shape[d]);
        for (int d = 0; d < x->ndim; d++) {
            int64_t v = d < 2 || stride == 1 ? x->shape[d] : (x->shape[d] + 1) / 2;
            m += (size_t)snprintf(want + m, sizeof want - m, "%s%lld", d ? ", " : "", (long long)v);
        }
        mnas__tape_error(tp, MNAS_E_SHAPE,
                         "%s: op \"%s\" returned a tensor of shape [%s]; the edge (stride %d) needs [%s]", fn,
                         op->name, got, stride, want);
        return NULL;
    }
    return y;
}

/* ---- the MLP space ------------------------------------------------------- */

static mnas_status linear_declare(void *user, int64_t C, mnas_param_decl *d)
{
    (void)user;
    int64_t w[2] = { C, C }, b[1] = { C };
    mnas_status st = mnas_param_decl_add(d, "w", 2, w, MNAS_INIT_FAN_IN, (double)C);
    if (st == MNAS_OK) st = mnas_param_decl_add(d, "b", 1, b, MNAS_INIT_FAN_IN, (double)C);
    if (st == MNAS_OK) st = mnas_param_decl_add(d, "bn_g", 1, b, MNAS_INIT_ONES, 0);
    if (st == MNAS_OK) st = mnas_param_decl_add(d, "bn_b", 1, b, MNAS_INIT_ZEROS, 0);
    return st;
}

/* Linear-ReLU-BN, batch statistics always (the paper). */
static mnas_tensor *linear_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int stride)
{
    (void)user;
    (void)stride;
    return mnas_batch_norm(tp, mnas_relu(tp, mnas_linear(tp, x, w[0], w[1])), w[2], w[3], 1e-5);
}

static mnas_tensor *skip_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w, int stride)
{
    (void)user;
    (void)tp;
    (void)w;
    (void)stride;
    return x;
}

mnas_search_space *mnas_search_space_mlp(mnas_ctx *ctx)
{
    mnas_search_space *s = mnas_search_space_create(ctx);
    if (!s) return NULL;
    if (mnas_search_space_add_op(s, "linear", 0, linear_declare, linear_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "skip", 0, NULL, skip_forward, NULL) < 0 ||
        mnas_search_space_add_op(s, "zero", 1, NULL, NULL, NULL) < 0) {
        mnas_search_space_free(s);
        return NULL;
    }
    return s;
}
