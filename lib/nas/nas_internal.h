/* Private nas layer: the op registry's entries, declared parameters, and
 * the cell layout shared by cells, supernets and child networks. */
#ifndef MNAS_NAS_INTERNAL_H
#define MNAS_NAS_INTERNAL_H

#include <mnas/nas.h>

#include "autodiff/opkit.h"
#include "nn/nn_internal.h"

typedef struct {
    char suffix[16];
    int ndim;
    int64_t shape[MNAS_MAX_DIMS];
    mnas_init init;
    double arg;
} mnas__param_spec;

struct mnas_param_decl {
    mnas_ctx *ctx;
    int stride; /* of the edges being declared for */
    int n;
    int failed;
    mnas__param_spec p[MNAS_OP_MAX_PARAMS];
};

typedef struct {
    char name[MNAS_OP_NAME_MAX + 1];
    int is_zero;
    mnas_op_declare_fn declare;
    mnas_op_forward_fn forward;
    void *user;
} mnas__op_entry;

struct mnas_search_space {
    mnas_ctx *ctx;
    mnas__op_entry *ops;
    size_t n, cap;
};

enum { MNAS__CELL_MLP = 0, MNAS__CELL_CONV = 1 };

struct mnas_cell {
    mnas_ctx *ctx;
    const mnas_search_space *space;
    int kind; /* MNAS__CELL_* */
    int n_nodes;
    int64_t width; /* features (MLP) or channels C per state (conv) */
    int reduction, reduction_prev;
    int64_t c_pp, c_p; /* conv: channels of the inputs s0, s1 */
    size_t n_edges, n_ops;
    mnas_param_decl *decl; /* [2 * n_ops]: each op's parameters at this width, stride 1 then stride 2 */
    size_t *off;           /* [n_edges * n_ops]: first parameter of (edge, op) */
    size_t n_pre;          /* conv preprocessing parameters, first in order */
    size_t n_params;
};

struct mnas_supernet {
    mnas_ctx *ctx;
    int kind;           /* MNAS__CELL_* */
    mnas_cell *cell[2]; /* MLP: cell[0]; conv: normal, reduction */
    int n_cells;
    int64_t in, width, out; /* conv: in channels, C, classes */
    int64_t stem_c;         /* conv: stem channels (3C) */
    int stem_stride;        /* conv: 1, 2 (stride-2 conv) or 4 (and a 2x2 average pool) */
};

/* Input state of edge e, and the stride of its ops (2 on a reduction
 * cell's edges from its inputs). */
int mnas__edge_input(const mnas_cell *c, size_t e);
int mnas__edge_stride(const mnas_cell *c, size_t e);
/* The declaration of op o on edge e. */
const mnas_param_decl *mnas__edge_decl(const mnas_cell *c, size_t e, size_t o);
/* A conv cell's preprocessed inputs; w is the cell's weights. */
int mnas__cell_preprocess(const mnas_cell *c, mnas_tape *tp, const char *fn, mnas_tensor *s0, mnas_tensor *s1,
                          mnas_tensor *const *w, mnas_tensor **p0, mnas_tensor **p1);
/* The cell on alpha rows row0 .. row0 + edges - 1 of alpha (validated by
 * the caller); the public forward is this with row0 = 0, skip_zero = 0.
 * Ops whose alpha value is exactly 0 are not evaluated when alpha needs no
 * gradient, or always with skip_zero (their alpha entries then get no
 * gradient from this cell). */
mnas_tensor *mnas__cell_forward_rows(const mnas_cell *c, mnas_tape *tp, const char *fn, mnas_tensor *s0,
                                     mnas_tensor *s1, mnas_tensor *const *w, mnas_tensor *alpha, size_t row0,
                                     int skip_zero);
/* mnas_supernet_forward with the cells' skip_zero; with checkpoint, each
 * cell is a checkpointed segment (autodiff/checkpoint.h): the tape keeps
 * the cells' inputs and outputs, and the backward pass recomputes their
 * interiors (same values and gradients; first order only). */
mnas_tensor *mnas__supernet_forward(const mnas_supernet *n, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w,
                                    mnas_tensor *alpha, int skip_zero, int checkpoint);
/* Add a cell's parameters (no prefix length check). */
int mnas__cell_add_params(const mnas_cell *c, mnas_params *p, const char *prefix, int group);
/* The DARTS pieces shared by ops and cells: ReLU - conv(1x1) - BN and the
 * factorized reduce (ReLU, two 1x1 stride-2 convs, the second on x shifted
 * by one pixel, concat, BN); BN without affine parameters. */
mnas_tensor *mnas__relu_conv_bn(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w);
mnas_tensor *mnas__factorized_reduce(mnas_tape *tp, mnas_tensor *x, mnas_tensor *w1, mnas_tensor *w2);
/* Conv supernet stem: conv3x3 - BN (params w, g, b) and its check. */
mnas_tensor *mnas__conv_stem(const mnas_supernet *n, mnas_tape *tp, const char *fn, mnas_tensor *x,
                             mnas_tensor *const *w);
int mnas__add_conv_stem(mnas_params *p, const char *prefix, int64_t in, int64_t out, int group);

/* Stem/head Linear parameters "prefix part.w", "prefix part.b"; and their check. */
int mnas__add_stem_head(mnas_params *p, const char *prefix, const char *part, int64_t in, int64_t out, int group);
int mnas__check_linear(mnas_tape *tp, const char *fn, mnas_tensor *const *w, int64_t in, int64_t out);

/* Declare op's parameters at width and stride into decl (zeroed first). */
mnas_status mnas__op_declare(const mnas_search_space *space, size_t op, int64_t width, int stride,
                             mnas_param_decl *decl);
/* Add the declared parameters of (edge, op) named prefix + "e<edge>.<op>.<suffix>". */
int mnas__add_op_params(mnas_params *p, const char *prefix, int edge, const char *op, const mnas_param_decl *d,
                        int group);
/* Check that w[0..d->n) have the declared element counts. */
int mnas__check_op_weights(mnas_tape *tp, const char *fn, const mnas_param_decl *d, mnas_tensor *const *w);
/* Run op's forward on x and check what it returns where it returns: a
 * tensor of x's batch and width (the same spatial size at stride 1, ceil of
 * half at stride 2 for conv states), else NULL with MNAS_E_SHAPE (or the
 * op's own error) on the tape, naming the op and fn. */
mnas_tensor *mnas__op_call(const mnas__op_entry *op, mnas_tape *tp, const char *fn, mnas_tensor *x,
                           mnas_tensor *const *w, int stride);

#endif /* MNAS_NAS_INTERNAL_H */
