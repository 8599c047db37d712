/* Private autodiff, for lib/autodiff's own files: the tape's layout, the
 * recorded node, and the helpers the op files share. Code outside
 * lib/autodiff that defines ops uses the narrower autodiff/opkit.h. */
#ifndef MNAS_AUTODIFF_INTERNAL_H
#define MNAS_AUTODIFF_INTERNAL_H

#include <mnas/autodiff.h>

#include "autodiff/opkit.h"
#include "core/core_internal.h"
#include "kernels/kernels.h"
#include "tensor/tensor_internal.h"

#define MNAS_TAPE_MAGIC 0x6d6e5450u /* "mnTP" */

typedef enum mnas_opcode {
    OP_LEAF = 0,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MASK_MUL,
    OP_AXPY, OP_MIX, OP_MIX_DALPHA, OP_NEG, OP_SCALE, OP_ADD_SCALAR, OP_RELU, OP_SIGMOID, OP_TANH, OP_EXP, OP_LOG, OP_SQRT,
    OP_POW, OP_SQUARE,
    OP_MATMUL, OP_LINEAR, OP_TRANSPOSE,
    OP_SUM, OP_SUM_TO, OP_BROADCAST_TO, OP_RESHAPE, OP_CONCAT, OP_SLICE, OP_PAD_AXIS,
    OP_GATHER_ROWS, OP_SCATTER_ROWS,
    OP_SOFTMAX, OP_LOG_SOFTMAX, OP_BATCH_NORM, OP_BN_DX, OP_BN_DGAMMA,
    OP_CUSTOM,
    OP_UNFOLD, OP_FOLD, OP_CONV2D, OP_CONV2D_DX, OP_CONV2D_DW,
    OP_AVG_POOL, OP_AVG_POOL_ADJ, OP_POOL_GATHER, OP_POOL_SCATTER,
    OP_BN_RELU, OP_RELU_GRAD,
    OP_COUNT
} mnas_opcode;

struct mnas_node {
    mnas_tensor *out;
    mnas_tensor **in;          /* nin inputs (values the backward rule reads) */
    struct mnas_node **inode;  /* their nodes; NULL where no gradient flows */
    uint32_t index;            /* creation order = a topological order */
    uint16_t op;
    uint16_t nin;
    double p;                  /* scalar attribute (scale, exponent, ...) */
    int64_t a[4];              /* integer attributes (axis, start, flags) */
    const int64_t *idx;        /* row indices (gather/scatter), in the arena */
    size_t nidx;
    const mnas__custom_op *custom; /* OP_CUSTOM only */
    void *state;                   /* OP_CUSTOM only, in the arena */
    mnas_tensor *in_buf[3];
    struct mnas_node *inode_buf[3];
};

struct mnas_tape {
    uint32_t epoch; /* tensors compare their creation epoch with this */
    uint32_t magic;
    mnas_ctx *ctx;
    mnas_arena data;   /* tensor data and backward scratch */
    mnas_arena nodemem; /* the nodes, packed apart from the data: the
                           backward pass walks them in reverse */
    mnas_arena hdr[2]; /* tensor headers, alternating by epoch parity so a
                          handle from the previous recording is still seen
                          as stale after a reset */
    int no_grad;       /* depth of no-grad scopes */
    mnas_node **nodes; /* nodes by index (kept across resets) */
    size_t nnodes, nodes_cap;
    /* persistent leaf tensor -> its leaf node, open addressing (arena) */
    const mnas_tensor **leaf_keys;
    mnas_node **leaf_vals;
    size_t leaf_cap, leaf_count;
    mnas_status status;
    char msg[MNAS_MSG_MAX];
    struct mnas_tape *aux; /* scratch tape for recomputation, made on demand */
    /* While an unrecorded backward pass runs: the data blocks of the
     * gradients it has consumed, for the tensors it makes next (NULL
     * otherwise; backward.c). */
    struct mnas_recycler *recycle;
    /* mnas__relu_shared's last result: relu_y = relu(relu_x), both made by
     * this tape in epoch relu_epoch under no-grad depth relu_no_grad. */
    const mnas_tensor *relu_x;
    mnas_tensor *relu_y;
    uint32_t relu_epoch;
    int relu_no_grad;
};






/* A consumed gradient's data block of n elements for a new tensor of n
 * elements, when an unrecorded backward pass has one (NULL otherwise). */
mnas_real *mnas__recycled_block(mnas_tape *tp, int64_t n);

/* Does an op with these inputs get recorded? */
int mnas__should_record(mnas_tape *tp, size_t n, mnas_tensor *const *ins);
/* Record op producing out from ins. Returns the node (also stored in
 * out->node), or NULL on allocation failure (error set). Only call when
 * mnas__should_record said yes. */
mnas_node *mnas__record(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t n,
                        mnas_tensor *const *ins);
/* Record op if needed and return out (NULL on failure). *node_out (may be
 * NULL) receives the node or NULL when nothing was recorded. */
mnas_tensor *mnas__finish(mnas_tape *tp, const char *fn, int op, mnas_tensor *out, size_t n,
                          mnas_tensor *const *ins, mnas_node **node_out);
/* The node of x on this tape without creating one (NULL if none). */
mnas_node *mnas__find_node(mnas_tape *tp, const mnas_tensor *x);

/* g * step(x), step 1 where x > 0, NaN where x is NaN, else 0 (relu's
 * rule, in one pass); recorded with x as a constant. */
mnas_tensor *mnas__relu_grad(mnas_tape *tp, mnas_tensor *g, mnas_tensor *x);

/* Padded 4-D shape of t. */
static inline void mnas__pad4(const mnas_tensor *t, int64_t s[4])
{
    int k = 4 - t->ndim;
    for (int i = 0; i < 4; i++) s[i] = i < k ? 1 : t->shape[i - k];
}
static inline void mnas__pad4s(int ndim, const int64_t *shape, int64_t s[4])
{
    int k = 4 - ndim;
    for (int i = 0; i < 4; i++) s[i] = i < k ? 1 : shape[i - k];
}

/* Backward: the vector-Jacobian product of node for output gradient g; adds
 * each input's contribution through accumulate(). It routes the node to its
 * family's rules, which sit at the end of that family's ops_*.c file. */
mnas_status mnas__vjp(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
mnas_status mnas__vjp_elementwise(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
mnas_status mnas__vjp_linalg(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
mnas_status mnas__vjp_shape(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
mnas_status mnas__vjp_nn(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
mnas_status mnas__vjp_conv(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc);
/* The error of a family's rule that does not know node's op. */
mnas_status mnas__bw_no_rule(mnas_tape *tp, const mnas_node *node);
/* The alpha-gradient of mnas_mix as an op of its own: a tensor shaped like
 * like with like.flat[idx_k] += <g, ys[k]>. */
mnas_tensor *mnas__mix_dalpha(mnas_tape *tp, const mnas_tensor *like, mnas_tensor *g, size_t n,
                              mnas_tensor *const *ys, const int64_t *idx);
/* The gradient of input k of node accumulated so far in this pass (NULL if
 * none yet), and replacing it (checkpoint.c, which continues the sum on its
 * scratch tape in the order an unsegmented pass would add the terms). g must
 * be a tensor of this tape that nothing else holds; only for passes that do
 * not record (mnas__bw_create_graph 0). */
mnas_tensor *mnas__bw_current(const mnas_backward_ctx *bc, const mnas_node *node, int k);
void mnas__bw_replace(mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *g);
/* Not recorded only: add g into the [start, start + len) block along axis of
 * input k's gradient in place (slice's rule). */
mnas_status mnas__bw_accumulate_slice(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k, mnas_tensor *g,
                                      int axis, int64_t start);
/* mnas__bw_accumulate for a contribution that the rule has just made
 * (a new tensor, not a view, pass-through or reshape of another) and hands
 * to no other slot or op: in a pass that does not record, the slot may then
 * keep it and add the other terms into it (no new tensor per sum). The
 * bits are those of mnas__bw_accumulate. */
mnas_status mnas__bw_accumulate_new(mnas_tape *tp, mnas_backward_ctx *bc, mnas_node *node, int k,
                                    mnas_tensor *contribution);
/* Inside a rule with tp, n and bc in scope: does input k want a gradient;
 * add expr to its gradient (expr is only evaluated when wanted). ACC_NEW:
 * expr is a new tensor that nothing else holds (mnas__bw_accumulate_new). */
#define MNAS__WANT(k) mnas__bw_wants(bc, n, (k))
#define MNAS__ACC_WITH(fn, k, expr)                         \
    do {                                                    \
        if (MNAS__WANT(k)) {                                \
            mnas_status st_ = fn(tp, bc, n, (k), (expr));   \
            if (st_ != MNAS_OK) return st_;                 \
        }                                                   \
    } while (0)
#define MNAS__ACC(k, expr) MNAS__ACC_WITH(mnas__bw_accumulate, k, expr)
#define MNAS__ACC_NEW(k, expr) MNAS__ACC_WITH(mnas__bw_accumulate_new, k, expr)

#endif /* MNAS_AUTODIFF_INTERNAL_H */
