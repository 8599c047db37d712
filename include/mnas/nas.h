/* libmnas — nas layer: search spaces (op registries), mixed ops, supernet
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
 * nodes. */
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

typedef struct mnas_search_space mnas_search_space;
typedef struct mnas_param_decl mnas_param_decl;

#define MNAS_OP_MAX_PARAMS 8
#define MNAS_OP_NAME_MAX 31

/* Declare the parameters an op needs on an edge of the given width (features
 * or channels): call mnas_param_decl_add once per parameter, in the order
 * the forward expects them. */
typedef mnas_status (*mnas_op_declare_fn)(void *user, int64_t width, mnas_param_decl *decl);
/* The op on one edge: x in, same width out (stride 2 halves spatial size in
 * a conv reduction cell; MLP ops see stride 1). params holds the declared
 * parameters (or the fast weights made from them). Built from
 * differentiable ops, so every derivative order works. */
typedef mnas_tensor *(*mnas_op_forward_fn)(void *user, mnas_tape *tape, mnas_tensor *x, mnas_tensor *const *params,
                                           int stride);

/* suffix: 1..15 characters [A-Za-z0-9_], unique within the op. */
MNAS_API mnas_status mnas_param_decl_add(mnas_param_decl *decl, const char *suffix, int ndim, const int64_t *shape,
                                         mnas_init init, double arg);

MNAS_API mnas_search_space *mnas_search_space_create(mnas_ctx *ctx);
MNAS_API void mnas_search_space_free(mnas_search_space *space);
/* Register an op. name: 1..31 characters [A-Za-z0-9_], unique. is_zero marks
 * the "no connection" op (it needs no forward: it contributes nothing and is
 * never chosen when deriving a genotype); otherwise forward is required and
 * declare may be NULL for ops without parameters. user is passed back to
 * the callbacks and must outlive the space. Returns the op's index or -1. */
MNAS_API int mnas_search_space_add_op(mnas_search_space *space, const char *name, int is_zero,
                                      mnas_op_declare_fn declare, mnas_op_forward_fn forward, void *user);
MNAS_API size_t mnas_search_space_num_ops(const mnas_search_space *space);
MNAS_API const char *mnas_search_space_op_name(const mnas_search_space *space, size_t op);
MNAS_API int mnas_search_space_find_op(const mnas_search_space *space, const char *name);
MNAS_API int mnas_search_space_op_is_zero(const mnas_search_space *space, size_t op);

/* The paper's MLP space: "linear" (Linear-ReLU-BN, BN with batch statistics),
 * "skip" (identity) and "zero". */
MNAS_API mnas_search_space *mnas_search_space_mlp(mnas_ctx *ctx);

/* ---- cells and supernets -------------------------------------------------- */

typedef struct mnas_cell mnas_cell;

/* An MLP cell of width features per state. The space must outlive it. */
MNAS_API mnas_cell *mnas_cell_create_mlp(const mnas_search_space *space, int n_nodes, int64_t width);
MNAS_API void mnas_cell_free(mnas_cell *cell);
MNAS_API int mnas_cell_num_nodes(const mnas_cell *cell);
MNAS_API size_t mnas_cell_num_edges(const mnas_cell *cell);
MNAS_API const mnas_search_space *mnas_cell_space(const mnas_cell *cell);
/* Edge number of (node j, input state i), or -1. */
MNAS_API int mnas_cell_edge(const mnas_cell *cell, int node, int input);
/* Add every edge's every op's parameters to p, named
 * prefix + "e<edge>.<op>.<suffix>". Returns the first index or -1. */
MNAS_API int mnas_cell_add_params(const mnas_cell *cell, mnas_params *p, const char *prefix, int group);
MNAS_API size_t mnas_cell_num_params(const mnas_cell *cell);
/* The cell on input states s0, s1; w holds mnas_cell_num_params tensors in
 * parameter order; alpha is [edges, ops]. Ops whose alpha entry is exactly
 * 0 are skipped when alpha needs no gradient (a decoded architecture costs
 * only its chosen ops). */
MNAS_API mnas_tensor *mnas_cell_forward(const mnas_cell *cell, mnas_tape *tape, mnas_tensor *s0, mnas_tensor *s1,
                                        mnas_tensor *const *w, mnas_tensor *alpha);

/* The paper's toy supernet: stem Linear(in -> width) + ReLU feeding both
 * cell inputs, one MLP cell, head Linear(width -> out). */
typedef struct mnas_supernet mnas_supernet;

MNAS_API mnas_supernet *mnas_supernet_create_mlp(const mnas_search_space *space, int64_t in_features, int64_t width,
                                                 int n_nodes, int64_t out_features);
MNAS_API void mnas_supernet_free(mnas_supernet *net);
MNAS_API const mnas_cell *mnas_supernet_cell(const mnas_supernet *net);
/* Parameters: "stem.w", "stem.b", the cell's ("cell.e<k>.<op>.<suffix>"),
 * "head.w", "head.b" (prefix prepended). */
MNAS_API int mnas_supernet_add_params(const mnas_supernet *net, mnas_params *p, const char *prefix, int group);
MNAS_API size_t mnas_supernet_num_params(const mnas_supernet *net);
MNAS_API mnas_tensor *mnas_supernet_forward(const mnas_supernet *net, mnas_tape *tape, mnas_tensor *x,
                                            mnas_tensor *const *w, mnas_tensor *alpha);

/* ---- genotypes ------------------------------------------------------------ */

/* A discrete cell: for every node, 2 (input state, op) pairs. A genotype
 * refers to its search space, which must outlive it. */
typedef struct mnas_genotype mnas_genotype;

/* Per node the 2 strongest incoming edges (edge strength: its largest
 * non-zero-op weight), each with its strongest non-zero op. alpha is
 * [edges, ops] for cell. Ties go to the lower index. */
MNAS_API mnas_genotype *mnas_genotype_derive(const mnas_cell *cell, const mnas_tensor *alpha);
/* Text form: nodes separated by ';', each "op@input,op@input" with input
 * the state index (0, 1: cell inputs; k >= 2: node k-2), e.g.
 * "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3". Whitespace around
 * tokens is ignored. Parsing validates op names against space and inputs
 * against the node; a malformed string fails with MNAS_E_FORMAT and a
 * message saying where. */
MNAS_API mnas_genotype *mnas_genotype_parse(mnas_ctx *ctx, const mnas_search_space *space, const char *text);
MNAS_API void mnas_genotype_free(mnas_genotype *g);
MNAS_API mnas_genotype *mnas_genotype_copy(const mnas_genotype *g);
MNAS_API int mnas_genotype_num_nodes(const mnas_genotype *g);
/* Pair k (0 or 1) of node j: its input state and op index; -1 on bad index. */
MNAS_API int mnas_genotype_input(const mnas_genotype *g, int node, int k);
MNAS_API int mnas_genotype_op(const mnas_genotype *g, int node, int k);
/* 1 if equal as cells (each node's two pairs compared as a set), 0 if not. */
MNAS_API int mnas_genotype_equal(const mnas_genotype *a, const mnas_genotype *b);
/* Writes the text form into buf (capacity cap, always NUL-terminated when
 * cap > 0); returns the length the full text needs (excluding the NUL), so
 * a call with cap 0 sizes the buffer. -1 on error. */
MNAS_API int64_t mnas_genotype_to_string(const mnas_genotype *g, char *buf, size_t cap);
/* Graphviz DOT of the cell (inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output
 * c_{k}), same buffer convention. */
MNAS_API int64_t mnas_genotype_to_dot(const mnas_genotype *g, const char *title, char *buf, size_t cap);
/* Fill alpha_out ([edges, ops] of cell, row-major) with the one-hot weights
 * of the genotype: 1 at each chosen (edge, op), 0 elsewhere. */
MNAS_API mnas_status mnas_genotype_onehot(const mnas_genotype *g, const mnas_cell *cell, mnas_real *alpha_out);

/* ---- child networks -------------------------------------------------------- */

/* A stand-alone network decoded from a genotype: the supernet's stem and
 * head, and per node only its two chosen ops. Its parameters carry the same
 * names as the supernet's corresponding ones, so values can be copied over
 * by name (mnas_params_copy_matching), and then its forward equals the
 * supernet's forward under the genotype's one-hot alpha. */
typedef struct mnas_child mnas_child;

MNAS_API mnas_child *mnas_child_create(const mnas_supernet *net, const mnas_genotype *g);
MNAS_API void mnas_child_free(mnas_child *c);
MNAS_API int mnas_child_add_params(const mnas_child *c, mnas_params *p, const char *prefix, int group);
MNAS_API size_t mnas_child_num_params(const mnas_child *c);
MNAS_API mnas_tensor *mnas_child_forward(const mnas_child *c, mnas_tape *tape, mnas_tensor *x, mnas_tensor *const *w);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_NAS_H */
