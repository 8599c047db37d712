/* Reverse mode: mnas_grad walks the recorded nodes from y back to the inputs
 * and applies each op's backward rule, which lives beside the op's forward
 * in its family's ops_*.c file. The rules are written with the
 * differentiable ops themselves, so with create_graph the backward pass is
 * recorded too and can be differentiated again. */
#include <string.h>

#include "autodiff/autodiff_internal.h"

/* Consumed gradients' data blocks, by size: an unrecorded pass hands a
 * node's gradient block to the tensors it makes next once the node's rule
 * has run, if the slot owned it and the rule did not pass it on (see
 * mnas_grad). Each free block holds its list link. */
enum { RECYCLE_BUCKETS = 64 };
typedef struct free_block {
    struct free_block *next;
    size_t bytes;
} free_block;
_Static_assert(sizeof(free_block) <= MNAS_ALIGN, "a free block holds its link");
struct mnas_recycler {
    free_block *bucket[RECYCLE_BUCKETS];
};

static size_t block_bytes(int64_t n)
{
    return ((size_t)n * sizeof(mnas_real) + MNAS_ALIGN - 1) & ~(size_t)(MNAS_ALIGN - 1);
}

static free_block **bucket_of(struct mnas_recycler *r, size_t bytes)
{
    return &r->bucket[(bytes / MNAS_ALIGN) % RECYCLE_BUCKETS];
}

mnas_real *mnas__recycled_block(mnas_tape *tp, int64_t n)
{
    if (n <= 0) return NULL;
    size_t bytes = block_bytes(n);
    for (free_block **p = bucket_of(tp->recycle, bytes); *p; p = &(*p)->next)
        if ((*p)->bytes == bytes) {
            free_block *b = *p;
            *p = b->next;
            return (mnas_real *)(void *)b;
        }
    return NULL;
}

static void recycle_block(struct mnas_recycler *r, mnas_tensor *t)
{
    if (t->size <= 0) return;
    size_t bytes = block_bytes(t->size); /* >= MNAS_ALIGN: room for the link */
    free_block *b = (free_block *)(void *)t->data, **head = bucket_of(r, bytes);
    b->bytes = bytes;
    b->next = *head;
    *head = b;
}

struct mnas_backward_ctx {
    unsigned char *needed; /* per node index: lies on a path to an input (2: is one) */
    mnas_tensor **grad;    /* accumulated gradient per node index */
    unsigned char *owned;  /* grad[i] is a sum this pass made, or a rule's new tensor: may add in place */
    int in_place;          /* not recording (create_graph off) */
    uint32_t top;          /* index of y's node */
    const mnas_tensor *cur; /* the gradient the running rule consumes ... */
    int passed;             /* ... and whether it stored cur (or a view of it) in a slot */
};

/* Does t share memory with the gradient the running rule consumes? (As
 * addresses: the two may lie in different allocations.) */
static void note_passed(mnas_backward_ctx *bc, const mnas_tensor *t)
{
    const mnas_tensor *g = bc->cur;
    if (!g) return;
    uintptr_t t0 = (uintptr_t)t->data, g0 = (uintptr_t)g->data;
    uintptr_t t1 = t0 + (uintptr_t)t->size * sizeof(mnas_real), g1 = g0 + (uintptr_t)g->size * sizeof(mnas_real);
    if (t0 < g1 && g0 < t1) bc->passed = 1;
}

int mnas__bw_create_graph(const mnas_backward_ctx *bc) { return !bc->in_place; }

int mnas__bw_wants(mnas_backward_ctx *bc, mnas_node *node, int k)
{
    mnas_node *in = node->inode[k];
    return in && in->index <= bc->top && bc->needed[in->index];
}

mnas_tensor *mnas__bw_current(const mnas_backward_ctx *bc, const mnas_node *node, int k)
{
    return bc->grad[node->inode[k]->index];
}

void mnas__bw_replace(mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *g)
{
    note_passed(bc, g);
    bc->grad[node->inode[k]->index] = g;
    bc->owned[node->inode[k]->index] = 1;
}

/* fresh: c is a tensor the rule has just made and hands to this slot
 * alone (see mnas__bw_accumulate_new). */
static mnas_status accumulate(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *c,
                              int fresh)
{
    if (!c) return tp->status ? tp->status : MNAS_E_INTERNAL;
    mnas_node *in = node->inode[k];
    mnas_tensor *prev = bc->grad[in->index];
    if (!prev) {
        note_passed(bc, c);
        bc->grad[in->index] = c;
        bc->owned[in->index] = (unsigned char)(fresh && bc->in_place);
        return MNAS_OK;
    }
    if (bc->in_place && bc->owned[in->index] && mnas__same_shape(prev, c)) {
        /* Nothing records this pass and no other slot holds this sum, so
         * it can grow in place instead of costing a new tensor per term. */
        mnas__k_add_scaled(prev->size, 1, c->data, prev->data); /* prev + 1 * c: the same bits as prev + c */
        return MNAS_OK;
    }
    if (bc->in_place && fresh && mnas__same_shape(prev, c)) {
        /* prev may be held elsewhere, but c is this slot's alone: the sum
         * goes into c, with the operands in mnas_add's order. */
        mnas__k_add_into(c->size, prev->data, c->data);
        bc->grad[in->index] = c;
        bc->owned[in->index] = 1;
        return MNAS_OK;
    }
    mnas_tensor *sum = mnas_add(tp, prev, c);
    if (!sum) return tp->status ? tp->status : MNAS_E_INTERNAL;
    bc->grad[in->index] = sum;
    bc->owned[in->index] = 1;
    return MNAS_OK;
}

mnas_status mnas__bw_accumulate(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *c)
{
    return accumulate(tp, bc, node, k, c, 0);
}

mnas_status mnas__bw_accumulate_new(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *c)
{
    return accumulate(tp, bc, node, k, c, 1);
}

/* Not recorded: add g into the [start, start + len) block along axis of input
 * k's gradient, in place, instead of padding g to the input's full shape
 * first — a tensor sliced into many pieces (the modulator's tau) would
 * otherwise cost a full-size tensor per piece. */
mnas_status mnas__bw_accumulate_slice(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *g,
                                      int axis, int64_t start)
{
    mnas_node *in = node->inode[k];
    mnas_tensor *x = node->in[k];
    mnas_tensor *acc = bc->grad[in->index];
    if (!acc || !bc->owned[in->index] || !mnas__same_shape(acc, x)) {
        mnas_tensor *fresh = mnas__tape_new_like(tp, "mnas_slice backward", x);
        if (!fresh) return tp->status;
        if (acc && mnas__same_shape(acc, x))
            memcpy(fresh->data, acc->data, (size_t)x->size * sizeof(mnas_real));
        else
            memset(fresh->data, 0, (size_t)x->size * sizeof(mnas_real));
        if (acc && !mnas__same_shape(acc, x)) {
            /* cannot happen: gradients have their input's shape */
            return mnas__tape_error(tp, MNAS_E_INTERNAL, "mnas_grad: gradient shape mismatch");
        }
        bc->grad[in->index] = acc = fresh;
        bc->owned[in->index] = 1;
    }
    int64_t outer = 1, inner = 1, e = x->shape[axis], len = g->shape[axis];
    for (int i = 0; i < axis; i++) outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) inner *= x->shape[i];
    for (int64_t o = 0; o < outer; o++)
        mnas__k_add_scaled(len * inner, 1, g->data + o * len * inner, acc->data + (o * e + start) * inner);
    return MNAS_OK;
}

mnas_status mnas__bw_no_rule(mnas_tape *tp, const mnas_node *n)
{
    return mnas__tape_error(tp, MNAS_E_INTERNAL, "mnas_grad: no backward rule for op %d", (int)n->op);
}

/* Every op's rule lives beside its forward, at the end of its family's
 * ops_*.c file; this switch only routes a node to that family. */
mnas_status mnas__vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    switch ((mnas_opcode)n->op) {
    case OP_LEAF: return MNAS_OK;
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MASK_MUL: case OP_AXPY: case OP_MIX:
    case OP_MIX_DALPHA: case OP_NEG: case OP_SCALE: case OP_ADD_SCALAR: case OP_RELU: case OP_SIGMOID:
    case OP_TANH: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_POW: case OP_SQUARE: case OP_RELU_GRAD:
        return mnas__vjp_elementwise(tp, n, g, bc);
    case OP_MATMUL: case OP_LINEAR: case OP_TRANSPOSE: return mnas__vjp_linalg(tp, n, g, bc);
    case OP_SUM: case OP_SUM_TO: case OP_BROADCAST_TO: case OP_RESHAPE: case OP_CONCAT: case OP_SLICE:
    case OP_PAD_AXIS: case OP_GATHER_ROWS: case OP_SCATTER_ROWS:
        return mnas__vjp_shape(tp, n, g, bc);
    case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_BATCH_NORM: case OP_BN_DX: case OP_BN_DGAMMA: case OP_BN_RELU:
        return mnas__vjp_nn(tp, n, g, bc);
    case OP_UNFOLD: case OP_FOLD: case OP_CONV2D: case OP_CONV2D_DX: case OP_CONV2D_DW: case OP_AVG_POOL:
    case OP_AVG_POOL_ADJ: case OP_POOL_GATHER: case OP_POOL_SCATTER:
        return mnas__vjp_conv(tp, n, g, bc);
    case OP_CUSTOM: return n->custom->vjp(tp, n, g, bc, n->state);
    case OP_COUNT: break;
    }
    return mnas__bw_no_rule(tp, n);
}

static mnas_tensor *filled(mnas_tape *tp, const mnas_tensor *like, mnas_real v)
{
    mnas_tensor *t = mnas__tape_new(tp, "mnas_grad", like->ndim, like->shape);
    if (t)
        for (int64_t i = 0; i < t->size; i++) t->data[i] = v;
    return t;
}

mnas_status mnas_grad(mnas_tape *tp, mnas_tensor *y, size_t n, mnas_tensor *const *inputs, mnas_tensor **grads,
                      int create_graph)
{
    const char *fn = "mnas_grad";
    if (!mnas__tape_ok(tp)) return MNAS_E_INVALID;
    if (n > 0 && (!inputs || !grads)) return mnas__tape_error(tp, MNAS_E_INVALID, "%s: inputs or grads is NULL", fn);
    for (size_t i = 0; i < n; i++) grads[i] = NULL;
    if (!mnas__input_ok(tp, fn, "y", y)) return tp->status ? tp->status : MNAS_E_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!mnas__input_ok(tp, fn, "an input", inputs[i])) return tp->status ? tp->status : MNAS_E_INVALID;
    if (y->size != 1) {
        char s[MNAS_SHAPE_BUF];
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: y must be a scalar (one element), got shape %s", fn,
                                mnas__shape_str(s, sizeof s, y->ndim, y->shape));
    }
    mnas_node *top = mnas__find_node(tp, y);
    mnas_status st = MNAS_OK;
    int saved = tp->no_grad;
    if (top) {
        uint32_t T = top->index;
        mnas_backward_ctx bc;
        bc.top = T;
        bc.needed = mnas__tape_scratch(tp, fn, (size_t)T + 1);
        bc.grad = mnas__tape_scratch(tp, fn, ((size_t)T + 1) * sizeof *bc.grad);
        bc.owned = mnas__tape_scratch(tp, fn, (size_t)T + 1);
        bc.in_place = !create_graph;
        bc.cur = NULL;
        bc.passed = 0;
        struct mnas_recycler *rec = create_graph ? NULL : mnas__tape_scratch(tp, fn, sizeof *rec);
        if (!bc.needed || !bc.grad || !bc.owned || (!create_graph && !rec)) return tp->status;
        if (rec) memset(rec, 0, sizeof *rec);
        memset(bc.needed, 0, (size_t)T + 1);
        memset(bc.owned, 0, (size_t)T + 1);
        memset(bc.grad, 0, ((size_t)T + 1) * sizeof *bc.grad);
        uint32_t lo = T;
        for (size_t i = 0; i < n; i++) {
            mnas_node *in = mnas__find_node(tp, inputs[i]);
            if (in && in->index <= T) {
                bc.needed[in->index] = 2; /* its gradient is returned: never recycled */
                if (in->index < lo) lo = in->index;
            }
        }
        /* Forward sweep: a node is needed if it depends on a needed node.
         * Nothing before the earliest input can be. */
        for (uint32_t i = lo; i <= T; i++) {
            if (bc.needed[i]) continue;
            mnas_node *nd = tp->nodes[i];
            for (int k = 0; k < nd->nin; k++)
                if (nd->inode[k] && bc.needed[nd->inode[k]->index]) {
                    bc.needed[i] = 1;
                    break;
                }
        }
        if (bc.needed[T]) {
            tp->no_grad = create_graph ? 0 : 1;
            bc.grad[T] = filled(tp, y, 1);
            if (!bc.grad[T]) st = tp->status;
            struct mnas_recycler *outer = tp->recycle;
            tp->recycle = rec ? rec : outer;
            for (uint32_t i = T + 1; st == MNAS_OK && i-- > lo;) {
                mnas_node *nd = tp->nodes[i];
                mnas_tensor *g = bc.grad[i];
                if (!bc.needed[i] || !g || nd->op == OP_LEAF) continue;
                bc.cur = g;
                bc.passed = 0;
                st = mnas__vjp(tp, nd, g, &bc);
                bc.cur = NULL;
                /* Unrecorded, node i's gradient is dead once its rule has
                 * run, unless another slot holds it now or it is returned. */
                if (st == MNAS_OK && rec && bc.owned[i] && !bc.passed && bc.needed[i] == 1 && g->block_data &&
                    g->tape == tp && g->epoch == tp->epoch) {
                    recycle_block(rec, g);
                    bc.grad[i] = NULL;
                }
            }
            tp->recycle = outer;
            tp->no_grad = saved;
            for (size_t i = 0; st == MNAS_OK && i < n; i++) {
                mnas_node *in = mnas__find_node(tp, inputs[i]);
                if (in && in->index <= T) grads[i] = bc.grad[in->index];
            }
        }
    }
    for (size_t i = 0; st == MNAS_OK && i < n; i++) {
        if (!grads[i]) {
            grads[i] = filled(tp, inputs[i], 0);
            if (!grads[i]) st = tp->status;
        } else if (grads[i] == inputs[i] || !mnas__same_shape(grads[i], inputs[i])) {
            /* y == input: d y/d y is 1; give a distinct tensor of the input's shape. */
            mnas_tensor *r = mnas_reshape(tp, grads[i], inputs[i]->ndim, inputs[i]->shape);
            if (!r) st = tp->status;
            grads[i] = r;
        }
    }
    if (st != MNAS_OK)
        for (size_t i = 0; i < n; i++) grads[i] = NULL;
    return st;
}
