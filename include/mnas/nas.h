/** @file
 * @brief libmnas — nas layer: search spaces (op registries), mixed ops, supernet
 * cells, genotypes and the stand-alone child networks they decode to.
 *
 * A cell has 2 input states and n_nodes intermediate nodes. Node j (0-based)
 * sums one mixed edge from every earlier state: the two inputs and nodes
 * 0..j-1. Edges are numbered node by node: node j's edges are
 * 2j + j(j-1)/2 + i for input state i = 0 .. j+1 (state 0 and 1 are the
 * cell's inputs, state k >= 2 is node k-2). A mixed edge computes
 * sum_o alpha[e, o] * op_o(x); alpha is an [edges, ops] tensor of weights
 * (after the softmax) given to every forward, so one supernet serves
 * per-task architectures (M-NAS), a shared one (M-NAS-Shared) and one-hot
 * decoded ones. The MLP cell's output is the mean of its intermediate
 * nodes; a conv cell (DARTS) preprocesses its two inputs to C channels and
 * outputs the channel concatenation of its nodes. The conv supernet has a
 * normal and a reduction cell and takes one stacked alpha of
 * [2 * edges, ops]: rows 0..edges-1 for the normal cell, then the reduction
 * cell's (docs/nas.md). */
#ifndef MNAS_NAS_H
#define MNAS_NAS_H

#include <mnas/autodiff.h>
#include <mnas/core.h>
#include <mnas/nn.h>
#include <mnas/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- search spaces ------------------------------------------------------ */

/** A search space: a registry of candidate ops (opaque). */
typedef struct mnas_search_space mnas_search_space;
/** The parameter declarations of one op on one edge (opaque), filled by an op's params callback. */
typedef struct mnas_param_decl mnas_param_decl;

/** Most parameters one op may declare. */
#define MNAS_OP_MAX_PARAMS 8
/** Longest op name, in bytes. */
#define MNAS_OP_NAME_MAX 31

/** Declare the parameters an op needs on an edge of the given width (features
 * or channels): call mnas_param_decl_add once per parameter, in the order
 * the forward expects them. */
typedef mnas_status (*mnas_op_declare_fn)(void *user, int64_t width, mnas_param_decl *decl);
/** The op on one edge: x in, same width out (stride 2 halves spatial size in
 * a conv reduction cell; MLP ops see stride 1). params holds the declared
 * parameters (or the fast weights made from them). Built from
 * differentiable ops, so every derivative order works. */
typedef mnas_tensor *(*mnas_op_forward_fn)(void *user, mnas_tape *tape, mnas_tensor *x, mnas_tensor *const *params,
                                           int stride);

/** suffix: 1..15 characters [A-Za-z0-9_], unique within the op. */
MNAS_API mnas_status mnas_param_decl_add(mnas_param_decl *decl, const char *suffix, int ndim, const int64_t *shape,
                                         mnas_init init, double arg);
/** The stride (1 or 2) of the edges the op is being declared for: a
 * reduction cell declares every op once per stride, so an op may need
 * parameters at stride 2 only (DARTS's skip_connect: factorized reduce). */
MNAS_API int mnas_param_decl_stride(const mnas_param_decl *decl);

/** An empty search space (register ops into it); NULL on failure. */
MNAS_API mnas_search_space *mnas_search_space_create(mnas_ctx *ctx);
/** Free a search space. NULL is a no-op. */
MNAS_API void mnas_search_space_free(mnas_search_space *space);
/** Register an op. name: 1..31 characters [A-Za-z0-9_], unique. is_zero marks
 * the "no connection" op (it needs no forward: it contributes nothing and is
 * never chosen when deriving a genotype); otherwise forward is required and
 * declare may be NULL for ops without parameters. user is passed back to
 * the callbacks and must outlive the space. Returns the op's index or -1. */
MNAS_API int mnas_search_space_add_op(mnas_search_space *space, const char *name, int is_zero,
                                      mnas_op_declare_fn declare, mnas_op_forward_fn forward, void *user);
/** Number of registered ops. */
MNAS_API size_t mnas_search_space_num_ops(const mnas_search_space *space);
/** Name of op number op, or NULL if out of range. */
MNAS_API const char *mnas_search_space_op_name(const mnas_search_space *space, size_t op);
/** Index of the op called name, or -1. */
MNAS_API int mnas_search_space_find_op(const mnas_search_space *space, const char *name);
/** 1 if op is the zero op (no contribution), 0 if not, -1 if out of range. */
MNAS_API int mnas_search_space_op_is_zero(const mnas_search_space *space, size_t op);

/** The paper's MLP space: "linear" (Linear-ReLU-BN, BN with batch statistics),
 * "skip" (identity) and "zero". */
MNAS_API mnas_search_space *mnas_search_space_mlp(mnas_ctx *ctx);
/** The DARTS conv space, in this order: none, max_pool_3x3, avg_pool_3x3,
 * skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5 (on
 * [N, C, H, W] states, width = C; stride 2 halves H and W, rounding up;
 * every BN uses batch statistics and has no affine parameters; see
 * docs/nas.md). skip_connect at stride 2 is the factorized reduce and
 * needs an even C. */
MNAS_API mnas_search_space *mnas_search_space_darts(mnas_ctx *ctx);

/** One op on its own, outside a cell: its parameters for an edge of width
 * at stride (1 or 2), added to p named prefix + suffix (returns the index
 * of the first, or the set's count when the op has none; -1 on error), how
 * many there are (-1 on error), and its forward. */
MNAS_API int mnas_search_space_add_op_params(const mnas_search_space *space, size_t op, int64_t width, int stride,
                                             mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors op needs on an edge of this width and stride, or -1. */
MNAS_API int mnas_search_space_op_num_params(const mnas_search_space *space, size_t op, int64_t width, int stride);
/** Run op on x with its parameters (in declaration order); a tape tensor, or NULL on failure. */
MNAS_API mnas_tensor *mnas_search_space_op_forward(const mnas_search_space *space, size_t op, mnas_tape *tape,
                                                   mnas_tensor *x, mnas_tensor *const *params, int stride);

/* ---- cells and supernets -------------------------------------------------- */

/** A supernet cell (opaque): nodes joined by mixed edges over a search space. */
typedef struct mnas_cell mnas_cell;

/** An MLP cell of width features per state. The space must outlive it. */
MNAS_API mnas_cell *mnas_cell_create_mlp(const mnas_search_space *space, int n_nodes, int64_t width);
/** A DARTS conv cell of C = channels per state: inputs s0 [N, c_prev_prev,
 * H0, W0] and s1 [N, c_prev, H, W], each preprocessed to C channels
 * (ReLU - 1x1 conv - BN; for s0 the factorized reduce instead when
 * reduction_prev, which needs an even C and H0, W0 that halve to H, W);
 * output [N, n_nodes * C, H', W'] with H' = H, or ceil(H/2) in a reduction
 * cell, whose edges from the two inputs have stride 2. */
MNAS_API mnas_cell *mnas_cell_create_conv(const mnas_search_space *space, int n_nodes, int64_t c_prev_prev,
                                          int64_t c_prev, int64_t channels, int reduction, int reduction_prev);
/** Free a cell. NULL is a no-op. */
MNAS_API void mnas_cell_free(mnas_cell *cell);
/** Number of intermediate nodes. */
MNAS_API int mnas_cell_num_nodes(const mnas_cell *cell);
/** Number of mixed edges (rows of alpha). */
MNAS_API size_t mnas_cell_num_edges(const mnas_cell *cell);
/** The search space of the cell. */
MNAS_API const mnas_search_space *mnas_cell_space(const mnas_cell *cell);
/** 1 for a conv cell, 0 for an MLP cell; 1 for a reduction cell. */
MNAS_API int mnas_cell_is_conv(const mnas_cell *cell);
/** 1 for a reduction cell, 0 for a normal one (or NULL). */
MNAS_API int mnas_cell_is_reduction(const mnas_cell *cell);
/** Features (MLP) or channels (conv: n_nodes * C) of the cell's output. */
MNAS_API int64_t mnas_cell_out_width(const mnas_cell *cell);
/** Edge number of (node j, input state i), or -1. */
MNAS_API int mnas_cell_edge(const mnas_cell *cell, int node, int input);
/** Add every edge's every op's parameters to p, named
 * prefix + "e<edge>.<op>.<suffix>" (a conv cell's preprocessing comes
 * first: "pre0.w" or, after a reduction, "pre0.w1" and "pre0.w2"; then
 * "pre1.w"). Returns the first index or -1. */
MNAS_API int mnas_cell_add_params(const mnas_cell *cell, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors the cell needs. */
MNAS_API size_t mnas_cell_num_params(const mnas_cell *cell);
/** The cell on input states s0, s1; w holds mnas_cell_num_params tensors in
 * parameter order; alpha is [edges, ops]. Ops whose alpha entry is exactly
 * 0 are skipped when alpha needs no gradient (a decoded architecture costs
 * only its chosen ops). */
MNAS_API mnas_tensor *mnas_cell_forward(const mnas_cell *cell, mnas_tape *tape, mnas_tensor *s0, mnas_tensor *s1,
                                        mnas_tensor *const *w, mnas_tensor *alpha);

/** The paper's toy supernet: stem Linear(in -> width) + ReLU feeding both
 * cell inputs, one MLP cell, head Linear(width -> out). */
typedef struct mnas_supernet mnas_supernet;

/** An MLP supernet: stem, one cell of n_nodes nodes over width features, head; NULL on failure. */
MNAS_API mnas_supernet *mnas_supernet_create_mlp(const mnas_search_space *space, int64_t in_features, int64_t width,
                                                 int n_nodes, int64_t out_features);
/** Free a supernet. NULL is a no-op. */
MNAS_API void mnas_supernet_free(mnas_supernet *net);
/** The (first) cell of the supernet. */
MNAS_API const mnas_cell *mnas_supernet_cell(const mnas_supernet *net);
/** Parameters: "stem.w", "stem.b", the cell's ("cell.e<k>.<op>.<suffix>"),
 * "head.w", "head.b" (prefix prepended). */
MNAS_API int mnas_supernet_add_params(const mnas_supernet *net, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors of the supernet. */
MNAS_API size_t mnas_supernet_num_params(const mnas_supernet *net);
/** Forward of x with weights w and architecture weights alpha; a tape tensor, or NULL on failure. */
MNAS_API mnas_tensor *mnas_supernet_forward(const mnas_supernet *net, mnas_tape *tape, mnas_tensor *x,
                                            mnas_tensor *const *w, mnas_tensor *alpha);

/** The paper's conv supernet (DARTS with one normal and one reduction cell):
 * stem 3x3 conv (in_channels -> 3C, no bias) - BN, a normal cell of C
 * channels, a reduction cell of 2C channels, global average pooling, head
 * Linear(2C * n_nodes -> n_classes). x is [N, in_channels, H, W], any
 * H, W >= 1; the output is [N, n_classes] logits. mnas_supernet_forward
 * takes the stacked alpha [2 * edges, ops]: rows 0..edges-1 weigh the
 * normal cell, rows edges..2*edges-1 the reduction cell. Parameters:
 * "stem.w", "stem.bn_g", "stem.bn_b", "normal.<cell's>", "reduce.<cell's>",
 * "head.w", "head.b". */
MNAS_API mnas_supernet *mnas_supernet_create_conv(const mnas_search_space *space, int64_t in_channels,
                                                  int64_t channels, int n_nodes, int64_t n_classes);
/** 1 for the conv supernet, 0 for the MLP one. */
MNAS_API int mnas_supernet_is_conv(const mnas_supernet *net);
/** Appended in 0.2. The stride of the conv supernet's stem (default 1, the
 * layout above): 2 makes the stem conv stride 2 (padding 1), 4 adds a 2x2
 * average pooling of stride 2 after its BN, so the cells run on
 * ceil(H/2) or floor(ceil(H/2)/2) pixels a side, as DARTS's ImageNet
 * network reduces its input in the stem. No parameter changes shape.
 * MNAS_E_INVALID (nothing changed) for an MLP supernet or a stride other
 * than 1, 2 or 4. Child networks of the supernet (mnas_child_create) use
 * its stem, so they follow it. */
MNAS_API mnas_status mnas_supernet_set_stem_stride(mnas_supernet *net, int stride);
/** The conv supernet's stem stride (1, 2 or 4); 0 for NULL or an MLP supernet. */
MNAS_API int mnas_supernet_stem_stride(const mnas_supernet *net);
/** Number of cells (MLP 1, conv 2) and cell k (the conv one: 0 normal,
 * 1 reduction); mnas_supernet_cell is cell 0. */
MNAS_API int mnas_supernet_num_cells(const mnas_supernet *net);
/** Cell k of the supernet, or NULL if out of range. */
MNAS_API const mnas_cell *mnas_supernet_cell_at(const mnas_supernet *net, int k);
/** Rows of the alpha the forward takes: the sum of the cells' edges. */
MNAS_API size_t mnas_supernet_alpha_rows(const mnas_supernet *net);

/* ---- genotypes ------------------------------------------------------------ */

/** A discrete cell: for every node, 2 (input state, op) pairs; or a pair of
 * them (normal, reduce) for the conv supernet. A genotype refers to its
 * search space, which must outlive it. The single-cell accessors
 * (num_nodes, input, op) read the normal cell of a pair. */
typedef struct mnas_genotype mnas_genotype;

/** Per node the 2 strongest incoming edges (edge strength: its largest
 * non-zero-op weight), each with its strongest non-zero op. alpha is
 * [edges, ops] for cell. Ties go to the lower index. */
MNAS_API mnas_genotype *mnas_genotype_derive(const mnas_cell *cell, const mnas_tensor *alpha);
/** The genotype of a supernet's alpha ([alpha_rows, ops]): one cell for the
 * MLP supernet, a (normal, reduce) pair for the conv one. */
MNAS_API mnas_genotype *mnas_genotype_derive_supernet(const mnas_supernet *net, const mnas_tensor *alpha);
/** A pair from two single-cell genotypes of one space and node count, and
 * a copy of part k (0 normal, 1 reduce) of a pair as a single cell. */
MNAS_API mnas_genotype *mnas_genotype_make_pair(const mnas_genotype *normal, const mnas_genotype *reduce);
/** Part k of a genotype (one per cell kind), or NULL if out of range. */
MNAS_API mnas_genotype *mnas_genotype_part(const mnas_genotype *g, int k);
/** 1 for a single cell, 2 for a pair; -1 for NULL. */
MNAS_API int mnas_genotype_num_cells(const mnas_genotype *g);
/** Text form: nodes separated by ';', each "op@input,op@input" with input
 * the state index (0, 1: cell inputs; k >= 2: node k-2), e.g.
 * "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3". Whitespace around
 * tokens is ignored. A pair reads "normal: <cell> | reduce: <cell>".
 * Parsing validates op names against space and inputs against the node; a
 * malformed string fails with MNAS_E_FORMAT and a message saying where. */
MNAS_API mnas_genotype *mnas_genotype_parse(mnas_ctx *ctx, const mnas_search_space *space, const char *text);
/** Free a genotype. NULL is a no-op. */
MNAS_API void mnas_genotype_free(mnas_genotype *g);
/** A copy of a genotype, or NULL on failure. */
MNAS_API mnas_genotype *mnas_genotype_copy(const mnas_genotype *g);
/** Number of intermediate nodes of the genotype. */
MNAS_API int mnas_genotype_num_nodes(const mnas_genotype *g);
/** Pair k (0 or 1) of node j: its input state and op index; -1 on bad index. */
MNAS_API int mnas_genotype_input(const mnas_genotype *g, int node, int k);
/** Op index of input k (0 or 1) of node, or -1 if out of range. */
MNAS_API int mnas_genotype_op(const mnas_genotype *g, int node, int k);
/** 1 if equal as cells (each node's two pairs compared as a set; a pair
 * equals only a pair), 0 if not. */
MNAS_API int mnas_genotype_equal(const mnas_genotype *a, const mnas_genotype *b);
/** Writes the text form into buf (capacity cap, always NUL-terminated when
 * cap > 0); returns the length the full text needs (excluding the NUL), so
 * a call with cap 0 sizes the buffer. -1 on error. */
MNAS_API int64_t mnas_genotype_to_string(const mnas_genotype *g, char *buf, size_t cap);
/** Graphviz DOT of the cell (inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output
 * c_{k}), same buffer convention; a pair draws two clusters. */
MNAS_API int64_t mnas_genotype_to_dot(const mnas_genotype *g, const char *title, char *buf, size_t cap);
/** Fill alpha_out ([edges, ops] of cell, row-major) with the one-hot weights
 * of the genotype: 1 at each chosen (edge, op), 0 elsewhere. A pair uses
 * its reduce part for a reduction cell, its normal part otherwise. */
MNAS_API mnas_status mnas_genotype_onehot(const mnas_genotype *g, const mnas_cell *cell, mnas_real *alpha_out);
/** The same for a supernet's whole alpha ([alpha_rows, ops]); the conv
 * supernet needs a pair, the MLP one a single cell. */
MNAS_API mnas_status mnas_genotype_onehot_supernet(const mnas_genotype *g, const mnas_supernet *net,
                                                   mnas_real *alpha_out);

/* ---- child networks -------------------------------------------------------- */

/** A stand-alone network decoded from a genotype: the supernet's stem and
 * head (and a conv cell's preprocessing), and per node only its two chosen
 * ops; a conv supernet needs a pair genotype. The supernet must outlive
 * the child. Its parameters carry the same
 * names as the supernet's corresponding ones, so values can be copied over
 * by name (mnas_params_copy_matching), and then its forward equals the
 * supernet's forward under the genotype's one-hot alpha. */
typedef struct mnas_child mnas_child;

/** The stand-alone child network of a supernet and a genotype; NULL on failure. */
MNAS_API mnas_child *mnas_child_create(const mnas_supernet *net, const mnas_genotype *g);
/** Free a child network. NULL is a no-op. */
MNAS_API void mnas_child_free(mnas_child *c);
/** Append the child's parameters (named prefix + ...) to p; returns the first index or -1. */
MNAS_API int mnas_child_add_params(const mnas_child *c, mnas_params *p, const char *prefix, int group);
/** Number of parameter tensors of the child. */
MNAS_API size_t mnas_child_num_params(const mnas_child *c);
/** Forward of x with weights w; a tape tensor, or NULL on failure. */
MNAS_API mnas_tensor *mnas_child_forward(const mnas_child *c, mnas_tape *tape, mnas_tensor *x, mnas_tensor *const *w);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_NAS_H */
