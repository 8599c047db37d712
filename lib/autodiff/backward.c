/* Reverse mode: mnas_grad walks the recorded nodes from y back to the inputs
 * and applies each op's backward rule. The rules are written with the
 * differentiable ops themselves, so with create_graph the backward pass is
 * recorded too and can be differentiated again. */
#include <string.h>

#include "autodiff/autodiff_internal.h"

struct mnas_backward_ctx {
    unsigned char *needed; /* per node index: lies on a path to an input */
    mnas_tensor **grad;    /* accumulated gradient per node index */
    unsigned char *owned;  /* grad[i] is a sum this pass made: may add in place */
    int in_place;          /* not recording (create_graph off) */
    uint32_t top;          /* index of y's node */
};

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
    bc->grad[node->inode[k]->index] = g;
    bc->owned[node->inode[k]->index] = 1;
}

mnas_status mnas__bw_accumulate(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *c)
{
    if (!c) return tp->status ? tp->status : MNAS_E_INTERNAL;
    mnas_node *in = node->inode[k];
    mnas_tensor *prev = bc->grad[in->index];
    if (!prev) {
        bc->grad[in->index] = c;
        return MNAS_OK;
    }
    if (bc->in_place && bc->owned[in->index] && mnas__same_shape(prev, c)) {
        /* Nothing records this pass and no other slot holds this sum, so
         * it can grow in place instead of costing a new tensor per term. */
        mnas__k_add_scaled(prev->size, 1, c->data, prev->data); /* prev + 1 * c: the same bits as prev + c */
        return MNAS_OK;
    }
    mnas_tensor *sum = mnas_add(tp, prev, c);
    if (!sum) return tp->status ? tp->status : MNAS_E_INTERNAL;
    bc->grad[in->index] = sum;
    bc->owned[in->index] = 1;
    return MNAS_OK;
}

/* Not recorded: add g into the [start, start + len) block along axis of input
 * k's gradient, in place, instead of padding g to the input's full shape
 * first — a tensor sliced into many pieces (the modulator's tau) would
 * otherwise cost a full-size tensor per piece. */
static mnas_status accumulate_slice(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *g,
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

/* Reduce a broadcast gradient back to the shape of input k. */
static mnas_tensor *unbroadcast(mnas_tape *tp, mnas_tensor *g, const mnas_tensor *like)
{
    if (!g) return NULL;
    if (mnas__same_shape(g, like)) return g;
    return mnas_sum_to(tp, g, like->ndim, like->shape);
}

/* mix: y = sum_k a[idx_k] y_k, so dy_k = a[idx_k] g and da[idx_k] += <g, y_k>. */
static mnas_status mix_vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *alpha = n->in[0];
    size_t K = n->nidx;
    int want_a = mnas__bw_wants(bc, n, 0);
    mnas_status st;
    if (!mnas__bw_create_graph(bc)) {
        for (size_t k = 0; k < K; k++)
            if (mnas__bw_wants(bc, n, (int)k + 1)) {
                mnas_tensor *dy = mnas__tape_new_like(tp, "mnas_mix backward", g);
                if (!dy) return tp->status;
                mnas__k_unary(K_SCALE, g->size, g->data, dy->data, (double)alpha->data[n->idx[k]]);
                if ((st = mnas__bw_accumulate(tp, bc, n, (int)k + 1, dy)) != MNAS_OK) return st;
            }
        if (want_a) {
            mnas_tensor *da = mnas__tape_new_like(tp, "mnas_mix backward", alpha);
            if (!da) return tp->status;
            memset(da->data, 0, (size_t)da->size * sizeof(mnas_real));
            for (size_t k = 0; k < K; k++) {
                double s = mnas__k_dot(g->size, g->data, n->in[k + 1]->data);
                da->data[n->idx[k]] += (mnas_real)s;
            }
            if ((st = mnas__bw_accumulate(tp, bc, n, 0, da)) != MNAS_OK) return st;
        }
        return MNAS_OK;
    }
    /* Recorded: dy_k is a one-term mix, da a mix_dalpha; both have rules. */
    for (size_t k = 0; k < K; k++)
        if (mnas__bw_wants(bc, n, (int)k + 1)) {
            mnas_tensor *dy = mnas_mix(tp, alpha, 1, &g, &n->idx[k]);
            if (!dy || (st = mnas__bw_accumulate(tp, bc, n, (int)k + 1, dy)) != MNAS_OK) return tp->status;
        }
    if (want_a) {
        mnas_tensor *da = mnas__mix_dalpha(tp, alpha, g, K, n->in + 1, n->idx);
        if (!da || (st = mnas__bw_accumulate(tp, bc, n, 0, da)) != MNAS_OK) return tp->status;
    }
    return MNAS_OK;
}

#define WANT(k) mnas__bw_wants(bc, n, (k))
/* Add expr to input k's gradient; expr is only evaluated when wanted. */
#define ACC(k, expr)                                                      \
    do {                                                                  \
        if (WANT(k)) {                                                    \
            mnas_status st_ = mnas__bw_accumulate(tp, bc, n, (k), (expr)); \
            if (st_ != MNAS_OK) return st_;                               \
        }                                                                 \
    } while (0)

mnas_status mnas__vjp(mnas_tape *tp, mnas_node *n, mnas_tensor *g, mnas_backward_ctx *bc)
{
    mnas_tensor *x = n->in[0], *y = n->out;
    mnas_tensor *b = n->nin > 1 ? n->in[1] : NULL;
    switch ((mnas_opcode)n->op) {
    case OP_LEAF: return MNAS_OK;
    case OP_ADD:
        if (WANT(0)) ACC(0, unbroadcast(tp, g, x));
        if (WANT(1)) ACC(1, unbroadcast(tp, g, b));
        return MNAS_OK;
    case OP_SUB:
        if (WANT(0)) ACC(0, unbroadcast(tp, g, x));
        if (WANT(1)) ACC(1, unbroadcast(tp, mnas_neg(tp, g), b));
        return MNAS_OK;
    case OP_MUL:
        if (WANT(0)) ACC(0, unbroadcast(tp, mnas_mul(tp, g, b), x));
        if (WANT(1)) ACC(1, unbroadcast(tp, mnas_mul(tp, g, x), b));
        return MNAS_OK;
    case OP_MASK_MUL:
        if (WANT(0)) ACC(0, unbroadcast(tp, mnas_mask_mul(tp, g, b), x));
        return MNAS_OK;
    case OP_DIV:
        if (WANT(0)) ACC(0, unbroadcast(tp, mnas_div(tp, g, b), x));
        if (WANT(1)) ACC(1, unbroadcast(tp, mnas_neg(tp, mnas_mul(tp, g, mnas_div(tp, y, b))), b));
        return MNAS_OK;
    case OP_AXPY: /* alpha x + y */
        ACC(0, mnas_scale(tp, g, n->p));
        ACC(1, g);
        return MNAS_OK;
    case OP_MIX: return mix_vjp(tp, n, g, bc);
    case OP_MIX_DALPHA: { /* da[idx_k] = <g, y_k>: d/dg = mix(v, ys), d/dy_k = v[idx_k] g */
        size_t K = n->nidx;
        ACC(0, mnas_mix(tp, g, K, n->in + 1, n->idx));
        for (size_t k = 0; k < K; k++) ACC((int)k + 1, mnas_mix(tp, g, 1, &n->in[0], &n->idx[k]));
        return MNAS_OK;
    }
    case OP_NEG: ACC(0, mnas_neg(tp, g)); return MNAS_OK;
    case OP_SCALE: ACC(0, mnas_scale(tp, g, n->p)); return MNAS_OK;
    case OP_ADD_SCALAR: ACC(0, g); return MNAS_OK;
    case OP_RELU: {
        mnas_tensor *mask = mnas__step(tp, x);
        if (!mask) return tp->status;
        ACC(0, mnas_mask_mul(tp, g, mask));
        return MNAS_OK;
    }
    case OP_SIGMOID: /* g * y * (1 - y) */
        ACC(0, mnas_mul(tp, g, mnas_mul(tp, y, mnas_add_scalar(tp, mnas_neg(tp, y), 1.0))));
        return MNAS_OK;
    case OP_TANH: /* g * (1 - y^2) */
        ACC(0, mnas_mul(tp, g, mnas_add_scalar(tp, mnas_neg(tp, mnas_square(tp, y)), 1.0)));
        return MNAS_OK;
    case OP_EXP: ACC(0, mnas_mul(tp, g, y)); return MNAS_OK;
    case OP_LOG: ACC(0, mnas_div(tp, g, x)); return MNAS_OK;
    case OP_SQRT: ACC(0, mnas_div(tp, mnas_scale(tp, g, 0.5), y)); return MNAS_OK;
    case OP_SQUARE: ACC(0, mnas_mul(tp, g, mnas_scale(tp, x, 2.0))); return MNAS_OK;
    case OP_POW:
        if (n->p == 0.0) return MNAS_OK; /* constant */
        if (n->p == 1.0) {
            ACC(0, g);
        } else {
            ACC(0, mnas_mul(tp, g, mnas_scale(tp, mnas_pow(tp, x, n->p - 1.0), n->p)));
        }
        return MNAS_OK;
    case OP_MATMUL: {
        int ta = (int)n->a[0], tb = (int)n->a[1];
        /* C = op(A) op(B); dop(A) = g op(B)^T, dop(B) = op(A)^T g. */
        if (WANT(0)) ACC(0, ta ? mnas_matmul(tp, b, g, tb, 1) : mnas_matmul(tp, g, b, 0, !tb));
        if (WANT(1)) ACC(1, tb ? mnas_matmul(tp, g, x, 1, ta) : mnas_matmul(tp, x, g, !ta, 0));
        return MNAS_OK;
    }
    case OP_LINEAR: /* y = x W^T + b */
        if (WANT(0)) ACC(0, mnas_matmul(tp, g, b, 0, 0));
        if (WANT(1)) ACC(1, mnas_matmul(tp, g, x, 1, 0));
        if (n->nin > 2 && WANT(2)) {
            mnas_tensor *bias = n->in[2];
            int64_t row[2] = { 1, g->shape[1] };
            mnas_tensor *s = mnas_sum_to(tp, g, 2, row);
            ACC(2, s ? mnas_reshape(tp, s, bias->ndim, bias->shape) : NULL);
        }
        return MNAS_OK;
    case OP_TRANSPOSE: ACC(0, mnas_transpose(tp, g)); return MNAS_OK;
    case OP_SUM: ACC(0, mnas_broadcast_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_SUM_TO: ACC(0, mnas_broadcast_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_BROADCAST_TO: ACC(0, mnas_sum_to(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_RESHAPE: ACC(0, mnas_reshape(tp, g, x->ndim, x->shape)); return MNAS_OK;
    case OP_CONCAT: {
        int axis = (int)n->a[0];
        int64_t off = 0;
        for (int k = 0; k < n->nin; k++) {
            int64_t e = n->in[k]->shape[axis];
            if (WANT(k)) ACC(k, mnas_slice(tp, g, axis, off, e));
            off += e;
        }
        return MNAS_OK;
    }
    case OP_SLICE:
        if (bc->in_place && WANT(0)) return accumulate_slice(tp, bc, n, 0, g, (int)n->a[0], n->a[1]);
        ACC(0, mnas_pad_axis(tp, g, (int)n->a[0], n->a[1], x->shape[n->a[0]]));
        return MNAS_OK;
    case OP_PAD_AXIS: ACC(0, mnas_slice(tp, g, (int)n->a[0], n->a[1], x->shape[n->a[0]])); return MNAS_OK;
    case OP_GATHER_ROWS: ACC(0, mnas_scatter_add_rows(tp, g, n->nidx, n->idx, x->shape[0])); return MNAS_OK;
    case OP_SCATTER_ROWS: ACC(0, mnas_gather_rows(tp, g, n->nidx, n->idx)); return MNAS_OK;
    case OP_SOFTMAX: { /* y * (g - sum(g*y, last)) */
        int64_t s[4];
        memcpy(s, y->shape, sizeof s);
        s[y->ndim - 1] = 1;
        mnas_tensor *dot = mnas_sum_to(tp, mnas_mul(tp, g, y), y->ndim, s);
        ACC(0, mnas_mul(tp, y, mnas_sub(tp, g, dot)));
        return MNAS_OK;
    }
    case OP_LOG_SOFTMAX: { /* g - exp(y) * sum(g, last) */
        int64_t s[4];
        memcpy(s, y->shape, sizeof s);
        s[y->ndim - 1] = 1;
        mnas_tensor *gs = mnas_sum_to(tp, g, y->ndim, s);
        ACC(0, mnas_sub(tp, g, mnas_mul(tp, mnas_exp(tp, y), gs)));
        return MNAS_OK;
    }
    case OP_BATCH_NORM: return mnas__bn_vjp(tp, n, g, bc);
    case OP_BN_DX: return mnas__bnb_vjp(tp, n, g, bc);
    case OP_BN_DGAMMA: return mnas__bng_vjp(tp, n, g, bc);
    case OP_CUSTOM: return n->custom->vjp(tp, n, g, bc, n->state);
    case OP_UNFOLD:
    case OP_FOLD:
    case OP_CONV2D:
    case OP_CONV2D_DX:
    case OP_CONV2D_DW:
    case OP_AVG_POOL:
    case OP_AVG_POOL_ADJ:
    case OP_POOL_GATHER:
    case OP_POOL_SCATTER: return mnas__conv_vjp(tp, n, g, bc);
    case OP_COUNT: break;
    }
    return mnas__tape_error(tp, MNAS_E_INTERNAL, "mnas_grad: no backward rule for op %d", (int)n->op);
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
        if (!bc.needed || !bc.grad || !bc.owned) return tp->status;
        memset(bc.needed, 0, (size_t)T + 1);
        memset(bc.owned, 0, (size_t)T + 1);
        memset(bc.grad, 0, ((size_t)T + 1) * sizeof *bc.grad);
        uint32_t lo = T;
        for (size_t i = 0; i < n; i++) {
            mnas_node *in = mnas__find_node(tp, inputs[i]);
            if (in && in->index <= T) {
                bc.needed[in->index] = 1;
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
            for (uint32_t i = T + 1; st == MNAS_OK && i-- > lo;) {
                mnas_node *nd = tp->nodes[i];
                if (!bc.needed[i] || !bc.grad[i] || nd->op == OP_LEAF) continue;
                st = mnas__vjp(tp, nd, bc.grad[i], &bc);
            }
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
