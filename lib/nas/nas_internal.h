/* Private nas layer: the op registry's entries, declared parameters, and
 * the cell layout shared by cells, supernets and child networks. */
#ifndef MNAS_NAS_INTERNAL_H
#define MNAS_NAS_INTERNAL_H

#include <mnas/nas.h>

#include "autodiff/autodiff_internal.h"
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

struct mnas_cell {
    mnas_ctx *ctx;
    const mnas_search_space *space;
    int n_nodes;
    int64_t width;
    size_t n_edges, n_ops;
    mnas_param_decl *decl; /* [n_ops]: each op's parameters at this width */
    size_t *off;           /* [n_edges * n_ops]: first parameter of (edge, op) */
    size_t n_params;
};

struct mnas_supernet {
    mnas_ctx *ctx;
    mnas_cell *cell;
    int64_t in, width, out;
};

/* Stem/head Linear parameters "prefix part.w", "prefix part.b"; and their check. */
int mnas__add_stem_head(mnas_params *p, const char *prefix, const char *part, int64_t in, int64_t out, int group);
int mnas__check_linear(mnas_tape *tp, const char *fn, mnas_tensor *const *w, int64_t in, int64_t out);

/* Declare op's parameters at width into decl (zeroed first). */
mnas_status mnas__op_declare(const mnas_search_space *space, size_t op, int64_t width, mnas_param_decl *decl);
/* Add the declared parameters of (edge, op) named prefix + "e<edge>.<op>.<suffix>". */
int mnas__add_op_params(mnas_params *p, const char *prefix, int edge, const char *op, const mnas_param_decl *d,
                        int group);
/* Check that w[0..d->n) have the declared element counts. */
int mnas__check_op_weights(mnas_tape *tp, const char *fn, const mnas_param_decl *d, mnas_tensor *const *w);

#endif /* MNAS_NAS_INTERNAL_H */
