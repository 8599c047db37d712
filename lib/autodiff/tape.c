/* The tape: arenas for tape-owned tensors, the list of recorded nodes, leaf
 * nodes for persistent parameters, no-grad scopes and error state. */
#include <stdio.h>
#include <string.h>

#include "autodiff/autodiff_internal.h"

mnas_status mnas__tape_error(mnas_tape *tp, mnas_status st, const char *fmt, ...)
{
    char buf[MNAS_MSG_MAX];
    va_list ap;
    int n = snprintf(buf, sizeof buf, "%s: ", mnas_status_str(st));
    if (n < 0) n = 0;
    va_start(ap, fmt);
    if ((size_t)n < sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (tp->status == MNAS_OK) tp->status = st;
    snprintf(tp->msg, sizeof tp->msg, "%s", buf);
    mnas__set_message(tp->ctx, buf);
    return st;
}

int mnas__tape_ok(mnas_tape *tp) { return tp && tp->magic == MNAS_TAPE_MAGIC; }

mnas_status mnas_tape_create(mnas_ctx *ctx, mnas_tape **out)
{
    if (!out) return mnas__error(ctx, MNAS_E_INVALID, "mnas_tape_create: out is NULL");
    *out = NULL;
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    mnas_tape *tp = mnas__alloc(ctx, sizeof *tp);
    if (!tp) return mnas__error(ctx, MNAS_E_NOMEM, "mnas_tape_create: cannot allocate the tape");
    memset(tp, 0, sizeof *tp);
    tp->magic = MNAS_TAPE_MAGIC;
    tp->ctx = ctx;
    tp->epoch = 1;
    mnas__arena_init(&tp->data, ctx, (size_t)1 << 20);
    mnas__arena_init(&tp->nodemem, ctx, (size_t)64 << 10);
    mnas__arena_init(&tp->hdr[0], ctx, (size_t)64 << 10);
    mnas__arena_init(&tp->hdr[1], ctx, (size_t)64 << 10);
    mnas__k_gemm_init();
    *out = tp;
    return MNAS_OK;
}

void mnas_tape_free(mnas_tape *tp)
{
    if (!mnas__tape_ok(tp)) return;
    mnas_ctx *ctx = tp->ctx;
    tp->magic = 0;
    tp->epoch++; /* best effort: handles into freed memory are not checkable */
    mnas__arena_release(&tp->data);
    mnas__arena_release(&tp->nodemem);
    mnas__arena_release(&tp->hdr[0]);
    mnas__arena_release(&tp->hdr[1]);
    mnas__free(ctx, tp->nodes);
    mnas_tape_free(tp->aux);
    mnas__free(ctx, tp);
}

mnas_tape *mnas__tape_aux(mnas_tape *tp)
{
    if (!tp->aux && mnas_tape_create(tp->ctx, &tp->aux) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "cannot create the scratch tape");
        return NULL;
    }
    return tp->aux;
}

void mnas_tape_reset(mnas_tape *tp)
{
    if (!mnas__tape_ok(tp)) return;
    tp->epoch++;
    if (tp->epoch == 0) tp->epoch = 2; /* skip 0, keep the parity alternating */
    mnas__arena_reset(&tp->data);
    mnas__arena_reset(&tp->nodemem);
    mnas__arena_reset(&tp->hdr[tp->epoch & 1]);
    tp->nnodes = 0;
    tp->leaf_keys = NULL;
    tp->leaf_vals = NULL;
    tp->leaf_cap = tp->leaf_count = 0;
    tp->status = MNAS_OK;
    tp->msg[0] = '\0';
}

mnas_ctx *mnas_tape_ctx(const mnas_tape *tp) { return tp && tp->magic == MNAS_TAPE_MAGIC ? tp->ctx : NULL; }

const char *mnas_tape_last_error(const mnas_tape *tp)
{
    if (!tp || tp->magic != MNAS_TAPE_MAGIC) return "invalid tape";
    return tp->msg;
}

mnas_status mnas_tape_status(const mnas_tape *tp)
{
    if (!tp || tp->magic != MNAS_TAPE_MAGIC) return MNAS_E_INVALID;
    return tp->status;
}

void mnas_tape_clear_error(mnas_tape *tp)
{
    if (!mnas__tape_ok(tp)) return;
    tp->status = MNAS_OK;
    tp->msg[0] = '\0';
}

size_t mnas_tape_num_nodes(const mnas_tape *tp) { return tp && tp->magic == MNAS_TAPE_MAGIC ? tp->nnodes : 0; }

size_t mnas_tape_bytes_reserved(const mnas_tape *tp)
{
    if (!tp || tp->magic != MNAS_TAPE_MAGIC) return 0;
    return tp->data.reserved + tp->nodemem.reserved + tp->hdr[0].reserved + tp->hdr[1].reserved +
           tp->nodes_cap * sizeof(mnas_node *) + mnas_tape_bytes_reserved(tp->aux);
}

void mnas_tape_no_grad_begin(mnas_tape *tp)
{
    if (mnas__tape_ok(tp)) tp->no_grad++;
}

void mnas_tape_no_grad_end(mnas_tape *tp)
{
    if (!mnas__tape_ok(tp)) return;
    if (tp->no_grad > 0)
        tp->no_grad--;
    else
        mnas__tape_error(tp, MNAS_E_STATE, "mnas_tape_no_grad_end: no no-grad scope is open");
}

int mnas_tape_is_recording(const mnas_tape *tp)
{
    return tp && tp->magic == MNAS_TAPE_MAGIC && tp->no_grad == 0;
}

int mnas__input_ok(mnas_tape *tp, const char *fn, const char *arg, mnas_tensor *x)
{
    if (!x) {
        if (tp->status == MNAS_OK) mnas__tape_error(tp, MNAS_E_INVALID, "%s: %s is NULL", fn, arg);
        return 0;
    }
    if (x->magic != MNAS_TENSOR_MAGIC) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: %s is not a tensor (freed or garbage)", fn, arg);
        return 0;
    }
    if (x->owner_epoch && *x->owner_epoch != x->epoch) {
        mnas__tape_error(tp, MNAS_E_STALE, "%s: %s belongs to a tape recording that was reset or freed", fn,
                         arg);
        return 0;
    }
    if (x->ctx != tp->ctx) {
        mnas__tape_error(tp, MNAS_E_MISMATCH, "%s: %s comes from another context", fn, arg);
        return 0;
    }
    if (x->tape && x->tape != tp) {
        mnas__tape_error(tp, MNAS_E_MISMATCH, "%s: %s is owned by another tape (copy it first)", fn, arg);
        return 0;
    }
    return 1;
}

static mnas_tensor *new_header(mnas_tape *tp, const char *fn)
{
    mnas_tensor *t = mnas__arena_alloc(&tp->hdr[tp->epoch & 1], sizeof *t);
    if (!t) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot allocate a tensor header", fn);
        return NULL;
    }
    t->magic = MNAS_TENSOR_MAGIC;
    t->epoch = tp->epoch;
    t->owner_epoch = &tp->epoch;
    t->ctx = tp->ctx;
    t->tape = tp;
    t->requires_grad = 0;
    t->owns_data = 0;
    t->block_data = 0;
    t->node = NULL;
    return t;
}

/* A data block of n elements: a consumed gradient's during an unrecorded
 * backward pass, else a new one from the arena. */
static mnas_real *data_block(mnas_tape *tp, int64_t n)
{
    mnas_real *p = tp->recycle ? mnas__recycled_block(tp, n) : NULL;
    return p ? p : mnas__arena_alloc(&tp->data, (size_t)n * sizeof(mnas_real));
}

mnas_tensor *mnas__tape_new(mnas_tape *tp, const char *fn, int ndim, const int64_t *shape)
{
    int64_t size;
    if (mnas__shape_check(tp->ctx, fn, ndim, shape, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: invalid result shape", fn);
        return NULL;
    }
    mnas_tensor *t = new_header(tp, fn);
    if (!t) return NULL;
    t->data = data_block(tp, size);
    if (!t->data) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot allocate %lld elements", fn, (long long)size);
        return NULL;
    }
    t->block_data = 1;
    mnas__tensor_set_shape(t, ndim, shape, size);
    return t;
}

mnas_tensor *mnas__tape_new_like(mnas_tape *tp, const char *fn, const mnas_tensor *x)
{
    mnas_tensor *t = new_header(tp, fn);
    if (!t) return NULL;
    t->data = data_block(tp, x->size);
    if (!t->data) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot allocate %lld elements", fn, (long long)x->size);
        return NULL;
    }
    t->block_data = 1;
    t->ndim = x->ndim;
    memcpy(t->shape, x->shape, sizeof t->shape);
    t->size = x->size;
    return t;
}

mnas_tensor *mnas__tape_view(mnas_tape *tp, const char *fn, mnas_tensor *x, int ndim, const int64_t *shape)
{
    mnas_tensor *t = new_header(tp, fn);
    if (!t) return NULL;
    t->data = x->data;
    mnas__tensor_set_shape(t, ndim, shape, x->size);
    return t;
}

void *mnas__tape_scratch(mnas_tape *tp, const char *fn, size_t bytes)
{
    void *p = mnas__arena_alloc(&tp->data, bytes);
    if (!p) mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes of scratch", fn, bytes);
    return p;
}

void *mnas__tape_scratch_begin(mnas_tape *tp, const char *fn, size_t bytes, mnas_arena_mark *m)
{
    *m = mnas__arena_mark(&tp->data);
    return mnas__tape_scratch(tp, fn, bytes);
}

void mnas__tape_scratch_end(mnas_tape *tp, mnas_arena_mark m) { mnas__arena_rewind(&tp->data, m); }

mnas_tensor *mnas_tape_tensor(mnas_tape *tp, int ndim, const int64_t *shape, const mnas_real *data)
{
    if (!mnas__tape_ok(tp)) return NULL;
    int64_t size;
    if (mnas__shape_check(tp->ctx, "mnas_tape_tensor", ndim, shape, &size) != MNAS_OK) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "mnas_tape_tensor: %s", mnas_ctx_last_error(tp->ctx));
        return NULL;
    }
    mnas_tensor *t = mnas__tape_new(tp, "mnas_tape_tensor", ndim, shape);
    if (!t) return NULL;
    if (data)
        memcpy(t->data, data, (size_t)size * sizeof(mnas_real));
    else
        memset(t->data, 0, (size_t)size * sizeof(mnas_real));
    return t;
}

mnas_tensor *mnas_detach(mnas_tape *tp, mnas_tensor *x)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, "mnas_detach", "x", x)) return NULL;
    return mnas__tape_view(tp, "mnas_detach", x, x->ndim, x->shape);
}

/* ---- leaf map and recording ------------------------------------------ */

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static mnas_node *leaf_lookup(mnas_tape *tp, const mnas_tensor *x)
{
    if (!tp->leaf_cap) return NULL;
    size_t i = ptr_hash(x, tp->leaf_cap);
    while (tp->leaf_keys[i]) {
        if (tp->leaf_keys[i] == x) return tp->leaf_vals[i];
        i = (i + 1) & (tp->leaf_cap - 1);
    }
    return NULL;
}

static int leaf_insert(mnas_tape *tp, const char *fn, const mnas_tensor *x, mnas_node *n)
{
    if ((tp->leaf_count + 1) * 2 > tp->leaf_cap) {
        size_t cap = tp->leaf_cap ? tp->leaf_cap * 2 : 64;
        const mnas_tensor **k = mnas__tape_scratch(tp, fn, cap * sizeof *k);
        mnas_node **v = mnas__tape_scratch(tp, fn, cap * sizeof *v);
        if (!k || !v) return 0;
        memset(k, 0, cap * sizeof *k);
        for (size_t i = 0; i < tp->leaf_cap; i++) {
            if (!tp->leaf_keys[i]) continue;
            size_t j = ptr_hash(tp->leaf_keys[i], cap);
            while (k[j]) j = (j + 1) & (cap - 1);
            k[j] = tp->leaf_keys[i];
            v[j] = tp->leaf_vals[i];
        }
        tp->leaf_keys = k;
        tp->leaf_vals = v;
        tp->leaf_cap = cap;
    }
    size_t i = ptr_hash(x, tp->leaf_cap);
    while (tp->leaf_keys[i]) i = (i + 1) & (tp->leaf_cap - 1);
    tp->leaf_keys[i] = x;
    tp->leaf_vals[i] = n;
    tp->leaf_count++;
    return 1;
}

static mnas_node *new_node(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t nin)
{
    if (tp->nnodes >= UINT32_MAX) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "%s: more than 2^32 recorded ops", fn);
        return NULL;
    }
    if (tp->nnodes == tp->nodes_cap) {
        size_t cap = tp->nodes_cap ? tp->nodes_cap * 2 : 1024;
        mnas_node **nn = mnas__calloc(tp->ctx, cap, sizeof *nn);
        if (!nn) {
            mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot grow the node list to %zu", fn, cap);
            return NULL;
        }
        if (tp->nnodes) memcpy(nn, tp->nodes, tp->nnodes * sizeof *nn);
        mnas__free(tp->ctx, tp->nodes);
        tp->nodes = nn;
        tp->nodes_cap = cap;
    }
    mnas_node *n = mnas__arena_alloc(&tp->nodemem, sizeof *n);
    if (!n) {
        mnas__tape_error(tp, MNAS_E_NOMEM, "%s: cannot allocate a node", fn);
        return NULL;
    }
    memset(n, 0, sizeof *n);
    if (nin <= 3) {
        n->in = n->in_buf;
        n->inode = n->inode_buf;
    } else {
        n->in = mnas__tape_scratch(tp, fn, nin * sizeof *n->in);
        n->inode = mnas__tape_scratch(tp, fn, nin * sizeof *n->inode);
        if (!n->in || !n->inode) return NULL;
    }
    n->op = (uint16_t)op;
    n->nin = (uint16_t)nin;
    n->out = out;
    n->index = (uint32_t)tp->nnodes;
    tp->nodes[tp->nnodes++] = n;
    return n;
}

mnas_node *mnas__find_node(mnas_tape *tp, const mnas_tensor *x)
{
    if (x->tape == tp) return x->node;
    if (!x->tape) return leaf_lookup(tp, x);
    return NULL;
}

/* The node through which gradient reaches x, made on first use. */
static mnas_node *node_of(mnas_tape *tp, const char *fn, mnas_tensor *x)
{
    if (!x->requires_grad) return NULL;
    mnas_node *n = mnas__find_node(tp, x);
    if (n) return n;
    n = new_node(tp, fn, OP_LEAF, x, 0);
    if (!n) return NULL;
    if (x->tape == tp) {
        x->node = n;
    } else if (!leaf_insert(tp, fn, x, n)) {
        return NULL;
    }
    return n;
}

int mnas__should_record(mnas_tape *tp, size_t n, mnas_tensor *const *ins)
{
    if (tp->no_grad) return 0;
    for (size_t i = 0; i < n; i++)
        if (ins[i] && ins[i]->requires_grad) return 1;
    return 0;
}

mnas_node *mnas__record(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t n,
                        mnas_tensor *const *ins)
{
    /* Leaf nodes first, so they get lower indices than the op. */
    mnas_node *leaf[3] = { NULL, NULL, NULL };
    mnas_node **leaves = leaf;
    if (n > 3) {
        leaves = mnas__tape_scratch(tp, fn, n * sizeof *leaves);
        if (!leaves) return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        leaves[i] = NULL;
        if (ins[i] && ins[i]->requires_grad) {
            leaves[i] = node_of(tp, fn, ins[i]);
            if (!leaves[i]) return NULL;
        }
    }
    mnas_node *node = new_node(tp, fn, op, out, n);
    if (!node) return NULL;
    for (size_t i = 0; i < n; i++) {
        node->in[i] = ins[i];
        node->inode[i] = leaves[i];
    }
    out->node = node;
    out->requires_grad = 1;
    return node;
}

mnas_tensor *mnas__finish(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t n,
                          mnas_tensor *const *ins, mnas_node **node_out)
{
    mnas_node *node = NULL;
    if (mnas__should_record(tp, n, ins)) {
        node = mnas__record(tp, fn, op, out, n, ins);
        if (!node) return NULL;
    }
    if (node_out) *node_out = node;
    return out;
}

mnas_tensor *mnas__record_op(mnas_tape *tp, const char *fn, const mnas__custom_op *op, void *state,
                             mnas_tensor *out, size_t n, mnas_tensor *const *ins)
{
    mnas_node *node;
    if (!mnas__finish(tp, fn, OP_CUSTOM, out, n, ins, &node)) return NULL;
    if (node) {
        node->custom = op;
        node->state = state;
    }
    return out;
}

mnas_tensor *mnas__op_input(const mnas_node *node, int k) { return node->in[k]; }
