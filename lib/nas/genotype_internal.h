/* Private genotype header: the genotype's layout, shared by genotype.c
 * (derive, pairs, equality, one-hot alpha) and genotype_text.c (text form,
 * parser, Graphviz DOT). */
#ifndef MNAS_GENOTYPE_INTERNAL_H
#define MNAS_GENOTYPE_INTERNAL_H

#include "core/core_internal.h"
#include "nas/nas_internal.h"

#include <mnas/nas.h>

/* More nodes than any cell has; bounds the parser's work on hostile text. */
#define GENO_MAX_NODES 64

typedef struct {
    int input; /* state index: 0, 1 cell inputs; k >= 2 node k-2 */
    int op;    /* op index in the genotype's space */
} geno_pair;

struct mnas_genotype {
    mnas_ctx *ctx;
    const mnas_search_space *space;
    int n_nodes;
    int n_cells;         /* 1, or 2 for a (normal, reduce) pair */
    geno_pair pair[][2]; /* [n_cells * n_nodes][2], each node's pairs sorted by input */
};

/* A zeroed genotype of n_cells cells of n_nodes nodes (context allocation;
 * NULL with fn's message when out of memory). */
mnas_genotype *mnas__geno_alloc(mnas_ctx *ctx, const mnas_search_space *space, int n_nodes, int n_cells,
                                const char *fn);
/* A node's two pairs in order of their inputs. */
void mnas__geno_sort_node(geno_pair p[2]);

/* The name of op (in the genotype's space), "?" if out of range. */
static inline const char *op_name(const mnas_genotype *g, int op)
{
    const char *s = mnas_search_space_op_name(g->space, (size_t)op);
    return s ? s : "?";
}

#endif /* MNAS_GENOTYPE_INTERNAL_H */
