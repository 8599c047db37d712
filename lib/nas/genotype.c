/* Genotypes: the discrete cell read off a supernet's alpha (per node the two
 * strongest incoming edges with their strongest non-zero op), its text form
 * and parser, Graphviz DOT, and the one-hot alpha it decodes back to; a
 * (normal, reduce) pair of them for the conv supernet. */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

static const char *const cell_label[2] = { "normal", "reduce" };

static mnas_genotype *geno_alloc(mnas_ctx *ctx, const mnas_search_space *space, int n_nodes, int n_cells,
                                 const char *fn)
{
    size_t size = sizeof(mnas_genotype) + (size_t)(n_cells * n_nodes) * sizeof(geno_pair[2]);
    mnas_genotype *g = mnas__alloc(ctx, size);
    if (!g) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a genotype of %d nodes", fn, n_nodes);
        return NULL;
    }
    memset(g, 0, size);
    g->ctx = ctx;
    g->space = space;
    g->n_nodes = n_nodes;
    g->n_cells = n_cells;
    return g;
}

static void sort_node(geno_pair p[2])
{
    if (p[1].input < p[0].input) {
        geno_pair t = p[0];
        p[0] = p[1];
        p[1] = t;
    }
}

/* ---- derive --------------------------------------------------------------- */

/* Check alpha (rows x ops of space) for derivation. */
static int derive_alpha_ok(mnas_ctx *ctx, const char *fn, const mnas_tensor *alpha, size_t rows, size_t n_ops,
                           const mnas_search_space *space)
{
    if (!alpha) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: alpha is NULL", fn);
        return 0;
    }
    if (mnas__tensor_check(alpha, fn, "alpha") != MNAS_OK) return 0;
    if (alpha->ctx != ctx) {
        mnas__error(ctx, MNAS_E_MISMATCH, "%s: alpha and the cell come from different contexts", fn);
        return 0;
    }
    if (alpha->ndim != 2 || alpha->shape[0] != (int64_t)rows || alpha->shape[1] != (int64_t)n_ops) {
        char got[MNAS_SHAPE_BUF];
        mnas__error(ctx, MNAS_E_SHAPE, "%s: alpha must be [edges, ops] = [%zu, %zu] for this %s, got %s", fn, rows,
                    n_ops, strcmp(fn, "mnas_genotype_derive") ? "supernet" : "cell",
                    mnas__shape_str(got, sizeof got, alpha->ndim, alpha->shape));
        return 0;
    }
    size_t n_live = 0;
    for (size_t o = 0; o < n_ops; o++) n_live += !mnas_search_space_op_is_zero(space, o);
    if (n_live == 0) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: every op of the space is a zero op, so no edge can be chosen", fn);
        return 0;
    }
    const mnas_real *a = alpha->data;
    for (size_t i = 0; i < rows * n_ops; i++)
        if (isnan(a[i])) {
            mnas__error(ctx, MNAS_E_NUMERIC, "%s: alpha[%zu, %zu] is NaN", fn, i / n_ops, i % n_ops);
            return 0;
        }
    return 1;
}

static int cell_usable(mnas_ctx *ctx, const char *fn, const mnas_cell *cell)
{
    const mnas_search_space *space = mnas_cell_space(cell);
    int n_nodes = mnas_cell_num_nodes(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    if (!space || n_nodes < 1 || n_nodes > GENO_MAX_NODES || n_edges < 2) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: the cell is not usable (%d nodes, %zu edges)", fn, n_nodes, n_edges);
        return 0;
    }
    return 1;
}

/* One cell's nodes from its rows a of alpha. */
static int derive_cell(mnas_ctx *ctx, const char *fn, const mnas_cell *cell, const mnas_real *a, geno_pair (*out)[2])
{
    const mnas_search_space *space = mnas_cell_space(cell);
    int n_nodes = mnas_cell_num_nodes(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    size_t n_ops = mnas_search_space_num_ops(space);
    for (int j = 0; j < n_nodes; j++) {
        /* Best and second-best input by edge strength; strict '>' keeps the
         * lower input index on ties, as inputs are visited in order. */
        geno_pair best[2] = { { -1, -1 }, { -1, -1 } };
        mnas_real strength[2] = { 0, 0 };
        for (int i = 0; i < j + 2; i++) {
            int e = mnas_cell_edge(cell, j, i);
            if (e < 0 || (size_t)e >= n_edges) {
                mnas__error(ctx, MNAS_E_INTERNAL, "%s: edge of node %d, input %d is %d, outside 0..%zu", fn, j, i,
                            e, n_edges - 1);
                return 0;
            }
            const mnas_real *row = a + (size_t)e * n_ops;
            int op = -1;
            mnas_real s = 0;
            for (size_t o = 0; o < n_ops; o++) {
                if (mnas_search_space_op_is_zero(space, o)) continue;
                if (op < 0 || row[o] > s) {
                    op = (int)o;
                    s = row[o];
                }
            }
            if (best[0].input < 0 || s > strength[0]) {
                best[1] = best[0];
                strength[1] = strength[0];
                best[0] = (geno_pair){ i, op };
                strength[0] = s;
            } else if (best[1].input < 0 || s > strength[1]) {
                best[1] = (geno_pair){ i, op };
                strength[1] = s;
            }
        }
        out[j][0] = best[0];
        out[j][1] = best[1];
        sort_node(out[j]);
    }
    return 1;
}

mnas_genotype *mnas_genotype_derive(const mnas_cell *cell, const mnas_tensor *alpha)
{
    const char *fn = "mnas_genotype_derive";
    if (!cell) {
        if (mnas__tensor_live(alpha)) mnas__error(alpha->ctx, MNAS_E_INVALID, "%s: cell is NULL", fn);
        return NULL;
    }
    mnas_ctx *ctx = cell->ctx;
    if (!alpha) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: alpha is NULL", fn);
        return NULL;
    }
    if (!cell_usable(ctx, fn, cell)) return NULL;
    const mnas_search_space *space = mnas_cell_space(cell);
    if (!derive_alpha_ok(ctx, fn, alpha, mnas_cell_num_edges(cell), mnas_search_space_num_ops(space), space))
        return NULL;
    mnas_genotype *g = geno_alloc(ctx, space, mnas_cell_num_nodes(cell), 1, fn);
    if (g && !derive_cell(ctx, fn, cell, alpha->data, g->pair)) {
        mnas_genotype_free(g);
        return NULL;
    }
    return g;
}

mnas_genotype *mnas_genotype_derive_supernet(const mnas_supernet *net, const mnas_tensor *alpha)
{
    const char *fn = "mnas_genotype_derive_supernet";
    if (!net) {
        if (mnas__tensor_live(alpha)) mnas__error(alpha->ctx, MNAS_E_INVALID, "%s: net is NULL", fn);
        return NULL;
    }
    mnas_ctx *ctx = net->ctx;
    int n_cells = mnas_supernet_num_cells(net);
    for (int k = 0; k < n_cells; k++)
        if (!cell_usable(ctx, fn, mnas_supernet_cell_at(net, k))) return NULL;
    const mnas_cell *c0 = mnas_supernet_cell_at(net, 0);
    const mnas_search_space *space = mnas_cell_space(c0);
    if (!derive_alpha_ok(ctx, fn, alpha, mnas_supernet_alpha_rows(net), mnas_search_space_num_ops(space), space))
        return NULL;
    int n_nodes = mnas_cell_num_nodes(c0);
    mnas_genotype *g = geno_alloc(ctx, space, n_nodes, n_cells, fn);
    if (!g) return NULL;
    const mnas_real *a = alpha->data;
    for (int k = 0; k < n_cells; k++) {
        const mnas_cell *c = mnas_supernet_cell_at(net, k);
        if (!derive_cell(ctx, fn, c, a, g->pair + (size_t)k * (size_t)n_nodes)) {
            mnas_genotype_free(g);
            return NULL;
        }
        a += mnas_cell_num_edges(c) * mnas_search_space_num_ops(space);
    }
    return g;
}

/* ---- small things ---------------------------------------------------------- */

void mnas_genotype_free(mnas_genotype *g)
{
    if (g) mnas__free(g->ctx, g);
}

mnas_genotype *mnas_genotype_copy(const mnas_genotype *g)
{
    if (!g) return NULL;
    mnas_genotype *c = geno_alloc(g->ctx, g->space, g->n_nodes, g->n_cells, "mnas_genotype_copy");
    if (c) memcpy(c->pair, g->pair, (size_t)(g->n_cells * g->n_nodes) * sizeof g->pair[0]);
    return c;
}

int mnas_genotype_num_nodes(const mnas_genotype *g) { return g ? g->n_nodes : -1; }
int mnas_genotype_num_cells(const mnas_genotype *g) { return g ? g->n_cells : -1; }

mnas_genotype *mnas_genotype_make_pair(const mnas_genotype *normal, const mnas_genotype *reduce)
{
    const char *fn = "mnas_genotype_make_pair";
    if (!normal || !reduce) {
        const mnas_genotype *some = normal ? normal : reduce;
        if (some) mnas__error(some->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, normal ? "reduce" : "normal");
        return NULL;
    }
    if (normal->n_cells != 1 || reduce->n_cells != 1) {
        mnas__error(normal->ctx, MNAS_E_INVALID, "%s: both parts must be single cells", fn);
        return NULL;
    }
    if (normal->space != reduce->space || normal->n_nodes != reduce->n_nodes) {
        mnas__error(normal->ctx, MNAS_E_INVALID, "%s: the parts must share a search space and node count (%d, %d)",
                    fn, normal->n_nodes, reduce->n_nodes);
        return NULL;
    }
    mnas_genotype *g = geno_alloc(normal->ctx, normal->space, normal->n_nodes, 2, fn);
    if (!g) return NULL;
    memcpy(g->pair, normal->pair, (size_t)normal->n_nodes * sizeof g->pair[0]);
    memcpy(g->pair + normal->n_nodes, reduce->pair, (size_t)normal->n_nodes * sizeof g->pair[0]);
    return g;
}

mnas_genotype *mnas_genotype_part(const mnas_genotype *g, int k)
{
    const char *fn = "mnas_genotype_part";
    if (!g) return NULL;
    if (k < 0 || k >= g->n_cells) {
        mnas__error(g->ctx, MNAS_E_INVALID, "%s: part %d of a genotype of %d cell%s", fn, k, g->n_cells,
                    g->n_cells == 1 ? "" : "s");
        return NULL;
    }
    mnas_genotype *c = geno_alloc(g->ctx, g->space, g->n_nodes, 1, fn);
    if (c) memcpy(c->pair, g->pair + (size_t)k * (size_t)g->n_nodes, (size_t)g->n_nodes * sizeof g->pair[0]);
    return c;
}

static const geno_pair *pair_at(const mnas_genotype *g, int node, int k)
{
    if (!g || node < 0 || node >= g->n_nodes || k < 0 || k > 1) return NULL;
    return &g->pair[node][k];
}

int mnas_genotype_input(const mnas_genotype *g, int node, int k)
{
    const geno_pair *p = pair_at(g, node, k);
    return p ? p->input : -1;
}

int mnas_genotype_op(const mnas_genotype *g, int node, int k)
{
    const geno_pair *p = pair_at(g, node, k);
    return p ? p->op : -1;
}

static int same_pair(const mnas_genotype *a, const geno_pair *p, const mnas_genotype *b, const geno_pair *q)
{
    if (p->input != q->input) return 0;
    if (a->space == b->space) return p->op == q->op;
    const char *na = mnas_search_space_op_name(a->space, (size_t)p->op);
    const char *nb = mnas_search_space_op_name(b->space, (size_t)q->op);
    return na && nb && strcmp(na, nb) == 0;
}

int mnas_genotype_equal(const mnas_genotype *a, const mnas_genotype *b)
{
    if (!a || !b) return 0;
    if (a->n_nodes != b->n_nodes || a->n_cells != b->n_cells) return 0;
    for (int j = 0; j < a->n_cells * a->n_nodes; j++) {
        const geno_pair *p = a->pair[j], *q = b->pair[j];
        int straight = same_pair(a, &p[0], b, &q[0]) && same_pair(a, &p[1], b, &q[1]);
        int crossed = same_pair(a, &p[0], b, &q[1]) && same_pair(a, &p[1], b, &q[0]);
        if (!straight && !crossed) return 0;
    }
    return 1;
}

/* ---- text out: snprintf-style writer ------------------------------------- */

typedef struct {
    char *buf;
    size_t cap;
    size_t len; /* length the full text needs so far */
} writer;

static void put_mem(writer *w, const char *s, size_t n)
{
    if (w->cap > 0 && w->len < w->cap - 1) {
        size_t room = w->cap - 1 - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void put(writer *w, const char *s) { put_mem(w, s, strlen(s)); }

static void putf_int(writer *w, int v)
{
    char tmp[16];
    int n = snprintf(tmp, sizeof tmp, "%d", v);
    put_mem(w, tmp, (size_t)n);
}

static int64_t finish(writer *w)
{
    if (w->cap > 0) w->buf[w->len < w->cap ? w->len : w->cap - 1] = '\0';
    return (int64_t)w->len;
}

static int check_out(const mnas_genotype *g, char *buf, size_t cap, const char *fn)
{
    if (!g) return 0;
    if (!buf && cap > 0) {
        mnas__error(g->ctx, MNAS_E_INVALID, "%s: buf is NULL but cap is %zu", fn, cap);
        return 0;
    }
    return 1;
}

static const char *op_name(const mnas_genotype *g, int op)
{
    const char *s = mnas_search_space_op_name(g->space, (size_t)op);
    return s ? s : "?";
}

static void put_cell(writer *w, const mnas_genotype *g, const geno_pair (*pair)[2])
{
    for (int j = 0; j < g->n_nodes; j++) {
        if (j > 0) put(w, ";");
        for (int k = 0; k < 2; k++) {
            if (k > 0) put(w, ",");
            put(w, op_name(g, pair[j][k].op));
            put(w, "@");
            putf_int(w, pair[j][k].input);
        }
    }
}

int64_t mnas_genotype_to_string(const mnas_genotype *g, char *buf, size_t cap)
{
    if (!check_out(g, buf, cap, "mnas_genotype_to_string")) return -1;
    writer w = { buf, cap, 0 };
    if (g->n_cells == 1) {
        put_cell(&w, g, g->pair);
    } else {
        for (int c = 0; c < 2; c++) {
            put(&w, c ? " | reduce: " : "normal: ");
            put_cell(&w, g, g->pair + (size_t)c * (size_t)g->n_nodes);
        }
    }
    return finish(&w);
}

/* A state's DOT id: "c_{k-2}", "c_{k-1}", "<node>", "c_{k}" (input -1),
 * prefixed "<cell>:" inside a pair's clusters. */
static void put_state_in(writer *w, const char *cell, int input)
{
    put(w, "\"");
    if (cell) {
        put(w, cell);
        put(w, ":");
    }
    if (input == 0) {
        put(w, "c_{k-2}");
    } else if (input == 1) {
        put(w, "c_{k-1}");
    } else if (input < 0) {
        put(w, "c_{k}");
    } else {
        putf_int(w, input - 2);
    }
    put(w, "\"");
}


/* A DOT string literal's contents: quotes and backslashes escaped, line
 * breaks as DOT's centred-line escape, other control bytes as spaces. */
static void put_escaped(writer *w, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            put_mem(w, e, 2);
        } else if (c == '\n') {
            put(w, "\\n");
        } else if (c < 0x20 || c == 0x7f) {
            put(w, " ");
        } else {
            put_mem(w, (const char *)&c, 1);
        }
    }
}

/* The nodes and edges of one cell; inside a pair's cluster (cell != NULL)
 * ids are prefixed and labels give the plain names. */
static void put_dot_cell(writer *w, const mnas_genotype *g, const geno_pair (*pair)[2], const char *cell,
                         const char *indent)
{
    static const char *const colour[3] = { "darkseagreen2", "lightblue", "palegoldenrod" };
    for (int s = 0; s < g->n_nodes + 3; s++) {
        /* c_{k-2}, c_{k-1}, the nodes, then c_{k} */
        int input = s < g->n_nodes + 2 ? s : -1;
        put(w, indent);
        put_state_in(w, cell, input);
        put(w, " [");
        if (cell) {
            put(w, "label=\"");
            if (input == 0) put(w, "c_{k-2}");
            else if (input == 1) put(w, "c_{k-1}");
            else if (input < 0) put(w, "c_{k}");
            else putf_int(w, input - 2);
            put(w, "\", ");
        }
        put(w, "fillcolor=");
        put(w, colour[input < 0 ? 2 : input < 2 ? 0 : 1]);
        put(w, "];\n");
    }
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < 2; k++) {
            put(w, indent);
            put_state_in(w, cell, pair[j][k].input);
            put(w, " -> ");
            put_state_in(w, cell, j + 2);
            put(w, " [label=\"");
            put_escaped(w, op_name(g, pair[j][k].op));
            put(w, "\"];\n");
        }
    for (int j = 0; j < g->n_nodes; j++) {
        put(w, indent);
        put_state_in(w, cell, j + 2);
        put(w, " -> ");
        put_state_in(w, cell, -1);
        put(w, ";\n");
    }
}

int64_t mnas_genotype_to_dot(const mnas_genotype *g, const char *title, char *buf, size_t cap)
{
    if (!check_out(g, buf, cap, "mnas_genotype_to_dot")) return -1;
    writer w = { buf, cap, 0 };
    put(&w, g->n_cells == 1 ? "digraph cell {\n" : "digraph genotype {\n");
    if (title) {
        put(&w, "  label=\"");
        put_escaped(&w, title);
        put(&w, "\";\n  labelloc=t;\n");
    }
    put(&w, "  rankdir=LR;\n");
    put(&w, "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    put(&w, "  edge [fontname=\"Helvetica\"];\n");
    if (g->n_cells == 1) {
        put_dot_cell(&w, g, g->pair, NULL, "  ");
    } else {
        for (int c = 0; c < 2; c++) {
            put(&w, "  subgraph cluster_");
            put(&w, cell_label[c]);
            put(&w, " {\n    label=\"");
            put(&w, cell_label[c]);
            put(&w, " cell\";\n");
            put_dot_cell(&w, g, g->pair + (size_t)c * (size_t)g->n_nodes, cell_label[c], "    ");
            put(&w, "  }\n");
        }
    }
    put(&w, "}\n");
    return finish(&w);
}

/* ---- text in ---------------------------------------------------------------- */

typedef struct {
    mnas_ctx *ctx;
    const mnas_search_space *space;
    const char *text;
    size_t pos;
    int node, k;      /* where the parser is, for messages */
    size_t input_at;  /* offset of the last input state read */
    const char *cell; /* "normal" or "reduce" in a pair, else NULL */
    char end;         /* what ends the current cell: '\0', or '|' after a pair's normal cell */
} parser;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void skip_ws(parser *p)
{
    while (is_ws(p->text[p->pos])) p->pos++;
}

/* What the parser sees at the current position, for messages. */
static const char *describe(const parser *p, char tmp[16])
{
    unsigned char c = (unsigned char)p->text[p->pos];
    if (c == '\0') return "the end of the text";
    if (c >= 0x21 && c < 0x7f)
        snprintf(tmp, 16, "'%c'", (char)c);
    else
        snprintf(tmp, 16, "byte 0x%02x", (unsigned)c);
    return tmp;
}

static mnas_status fail(parser *p, size_t at, const char *fmt, ...) MNAS_PRINTF(3, 4);

static mnas_status fail(parser *p, size_t at, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->cell)
        return mnas__error(p->ctx, MNAS_E_FORMAT, "mnas_genotype_parse: %s cell, node %d, pair %d (offset %zu): %s",
                           p->cell, p->node, p->k, at, what);
    return mnas__error(p->ctx, MNAS_E_FORMAT, "mnas_genotype_parse: node %d, pair %d (offset %zu): %s", p->node,
                       p->k, at, what);
}

static mnas_status parse_pair(parser *p, geno_pair *out)
{
    char tmp[16];
    skip_ws(p);
    size_t start = p->pos;
    while (is_name_char(p->text[p->pos])) p->pos++;
    size_t len = p->pos - start;
    if (len == 0) return fail(p, start, "expected an op name, found %s", describe(p, tmp));
    if (len > MNAS_OP_NAME_MAX)
        return fail(p, start, "op name of %zu characters is longer than %d", len, MNAS_OP_NAME_MAX);
    char next = p->text[p->pos];
    if (!is_ws(next) && next != '@' && next != ',' && next != ';' && next != '\0' && !(p->end && next == p->end))
        return fail(p, p->pos, "unexpected %s in op name", describe(p, tmp));
    char name[MNAS_OP_NAME_MAX + 1];
    memcpy(name, p->text + start, len);
    name[len] = '\0';
    int op = mnas_search_space_find_op(p->space, name);
    if (op < 0) return fail(p, start, "unknown op '%s'", name);
    if (mnas_search_space_op_is_zero(p->space, (size_t)op))
        return fail(p, start, "op '%s' is a zero op, which a genotype never chooses", name);

    skip_ws(p);
    if (p->text[p->pos] != '@')
        return fail(p, p->pos, "expected '@' after op name '%s', found %s", name, describe(p, tmp));
    p->pos++;
    skip_ws(p);
    start = p->pos;
    if (!(p->text[p->pos] >= '0' && p->text[p->pos] <= '9'))
        return fail(p, start, "expected an input state (a decimal integer) after '@', found %s", describe(p, tmp));
    long v = 0;
    int huge = 0;
    while (p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
        if (v <= 1000000L)
            v = v * 10 + (p->text[p->pos] - '0');
        else
            huge = 1;
        p->pos++;
    }
    int max = p->node + 1;
    if (huge || v > max) {
        size_t nd = p->pos - start;
        return fail(p, start, "input state %.*s%s is out of range 0..%d", (int)(nd > 20 ? 20 : nd), p->text + start,
                    nd > 20 ? "..." : "", max);
    }
    p->input_at = start;
    out->input = (int)v;
    out->op = op;
    return MNAS_OK;
}

/* One cell's nodes, up to p->end; returns the node count or -1. */
static int parse_cell(parser *p, geno_pair (*pairs)[2])
{
    const char *text = p->text;
    char tmp[16];
    p->node = 0;
    p->k = 0;
    skip_ws(p);
    if (text[p->pos] == '\0' || (p->end && text[p->pos] == p->end)) {
        fail(p, p->pos, p->cell ? "the cell is empty" : "the text is empty");
        return -1;
    }
    for (;;) {
        if (p->node >= GENO_MAX_NODES) {
            fail(p, p->pos, "more than %d nodes", GENO_MAX_NODES);
            return -1;
        }
        for (p->k = 0; p->k < 2; p->k++) {
            if (parse_pair(p, &pairs[p->node][p->k]) != MNAS_OK) return -1;
            skip_ws(p);
            char c = text[p->pos];
            int at_end = c == '\0' || (p->end && c == p->end);
            if (p->k == 0 && c != ',') {
                if (c == ';' || at_end)
                    fail(p, p->pos, "a node needs 2 pairs, found 1");
                else
                    fail(p, p->pos, "expected ',' after the first pair, found %s", describe(p, tmp));
                return -1;
            }
            if (p->k == 1 && c != ';' && !at_end) {
                if (c == ',')
                    fail(p, p->pos, "a node has exactly 2 pairs, found a third");
                else if (c == '|' && !p->cell)
                    fail(p, p->pos, "found '|' in a single cell (a pair starts with 'normal:')");
                else
                    fail(p, p->pos, "expected ';' or the end after the second pair, found %s", describe(p, tmp));
                return -1;
            }
            if (p->k == 0) p->pos++; /* the ',' */
        }
        p->k = 1;
        if (pairs[p->node][0].input == pairs[p->node][1].input) {
            fail(p, p->input_at, "input state %d appears twice", pairs[p->node][0].input);
            return -1;
        }
        sort_node(pairs[p->node]);
        p->node++;
        if (text[p->pos] == '\0' || (p->end && text[p->pos] == p->end)) break;
        p->pos++; /* the ';' */
        p->k = 0;
        skip_ws(p);
        if (text[p->pos] == '\0' || (p->end && text[p->pos] == p->end)) {
            fail(p, p->pos, "expected a node after ';' (trailing separator)");
            return -1;
        }
    }
    return p->node;
}

/* If a label "name:" starts at the current position, its length; else 0. */
static size_t label_at(const parser *p)
{
    size_t i = p->pos;
    while (is_name_char(p->text[i])) i++;
    size_t n = i - p->pos;
    while (is_ws(p->text[i])) i++;
    return n > 0 && p->text[i] == ':' ? n : 0;
}

/* Expect the label want (then ':') at the current position. */
static int expect_label(parser *p, const char *want)
{
    size_t n = label_at(p);
    if (n != strlen(want) || strncmp(p->text + p->pos, want, n) != 0) {
        char tmp[16];
        const char *saved = p->cell;
        p->cell = want;
        p->node = 0;
        p->k = 0;
        if (n)
            fail(p, p->pos, "expected the label '%s:', found '%.*s:'", want, (int)(n > 31 ? 31 : n), p->text + p->pos);
        else
            fail(p, p->pos, "expected the label '%s:', found %s", want, describe(p, tmp));
        p->cell = saved;
        return 0;
    }
    p->pos += n;
    skip_ws(p);
    p->pos++; /* the ':' */
    return 1;
}

mnas_genotype *mnas_genotype_parse(mnas_ctx *ctx, const mnas_search_space *space, const char *text)
{
    const char *fn = "mnas_genotype_parse";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!space || !text) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, !space ? "space" : "text");
        return NULL;
    }
    parser p = { ctx, space, text, 0, 0, 0, 0, NULL, '\0' };
    geno_pair pairs[2][GENO_MAX_NODES][2];
    skip_ws(&p);
    int n_cells = 1, n_nodes[2] = { 0, 0 };
    if (label_at(&p)) {
        /* "normal: <cell> | reduce: <cell>" */
        n_cells = 2;
        for (int c = 0; c < 2; c++) {
            if (!expect_label(&p, cell_label[c])) return NULL;
            p.cell = cell_label[c];
            p.end = c == 0 ? '|' : '\0';
            n_nodes[c] = parse_cell(&p, pairs[c]);
            if (n_nodes[c] < 0) return NULL;
            if (c == 0) {
                if (text[p.pos] != '|') {
                    fail(&p, p.pos, "expected '| reduce: <cell>' after the normal cell, found the end of the text");
                    return NULL;
                }
                p.pos++;
                skip_ws(&p);
            }
        }
        if (n_nodes[0] != n_nodes[1]) {
            mnas__error(ctx, MNAS_E_FORMAT, "%s: the normal cell has %d nodes, the reduce cell %d: they must match", fn,
                        n_nodes[0], n_nodes[1]);
            return NULL;
        }
    } else {
        n_nodes[0] = parse_cell(&p, pairs[0]);
        if (n_nodes[0] < 0) return NULL;
    }
    mnas_genotype *g = geno_alloc(ctx, space, n_nodes[0], n_cells, fn);
    if (g)
        for (int c = 0; c < n_cells; c++)
            memcpy(g->pair + (size_t)c * (size_t)n_nodes[0], pairs[c], (size_t)n_nodes[0] * sizeof pairs[0][0]);
    return g;
}

/* ---- one-hot alpha ---------------------------------------------------------- */

/* Resolve one cell's chosen (edge, op) into flat indices of its alpha rows,
 * so that a failure can leave the output as it was. */
static mnas_status onehot_resolve(const mnas_genotype *g, const geno_pair (*pair)[2], const mnas_cell *cell,
                                  const char *fn, size_t hot[][2])
{
    const mnas_search_space *space = mnas_cell_space(cell);
    size_t n_edges = mnas_cell_num_edges(cell);
    size_t n_ops = space ? mnas_search_space_num_ops(space) : 0;
    if (!space || n_ops == 0)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the cell has no usable search space", fn);
    if (mnas_cell_num_nodes(cell) != g->n_nodes)
        return mnas__error(g->ctx, MNAS_E_SHAPE, "%s: the genotype has %d nodes, the cell %d", fn, g->n_nodes,
                           mnas_cell_num_nodes(cell));
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < 2; k++) {
            const geno_pair *pr = &pair[j][k];
            const char *name = op_name(g, pr->op);
            int op = g->space == space ? pr->op : mnas_search_space_find_op(space, name);
            if (op < 0 || (size_t)op >= n_ops)
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: node %d's op '%s' is not in the cell's space", fn, j,
                                   name);
            if (mnas_search_space_op_is_zero(space, (size_t)op))
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: node %d's op '%s' is a zero op in the cell's space",
                                   fn, j, name);
            int e = mnas_cell_edge(cell, j, pr->input);
            if (e < 0 || (size_t)e >= n_edges)
                return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the cell has no edge for node %d, input %d", fn, j,
                                   pr->input);
            hot[j][k] = (size_t)e * n_ops + (size_t)op;
        }
    return MNAS_OK;
}

mnas_status mnas_genotype_onehot(const mnas_genotype *g, const mnas_cell *cell, mnas_real *alpha_out)
{
    const char *fn = "mnas_genotype_onehot";
    if (!g) return MNAS_E_INVALID;
    if (!cell || !alpha_out)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, !cell ? "cell" : "alpha_out");
    /* A pair gives a reduction cell its reduce part. */
    int part = g->n_cells == 2 && mnas_cell_is_reduction(cell) ? 1 : 0;
    size_t hot[GENO_MAX_NODES][2];
    mnas_status st = onehot_resolve(g, g->pair + (size_t)part * (size_t)g->n_nodes, cell, fn, hot);
    if (st != MNAS_OK) return st;
    size_t n = mnas_cell_num_edges(cell) * mnas_search_space_num_ops(mnas_cell_space(cell));
    for (size_t i = 0; i < n; i++) alpha_out[i] = 0;
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < 2; k++) alpha_out[hot[j][k]] = 1;
    return MNAS_OK;
}

mnas_status mnas_genotype_onehot_supernet(const mnas_genotype *g, const mnas_supernet *net, mnas_real *alpha_out)
{
    const char *fn = "mnas_genotype_onehot_supernet";
    if (!g) return MNAS_E_INVALID;
    if (!net || !alpha_out)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, !net ? "net" : "alpha_out");
    int n_cells = mnas_supernet_num_cells(net);
    if (g->n_cells != n_cells)
        return mnas__error(g->ctx, MNAS_E_INVALID, "%s: the supernet has %d cell%s, the genotype %d", fn, n_cells,
                           n_cells == 1 ? "" : "s", g->n_cells);
    size_t hot[2][GENO_MAX_NODES][2];
    size_t row_off[2] = { 0, 0 };
    for (int c = 0; c < n_cells; c++) {
        const mnas_cell *cell = mnas_supernet_cell_at(net, c);
        mnas_status st = onehot_resolve(g, g->pair + (size_t)c * (size_t)g->n_nodes, cell, fn, hot[c]);
        if (st != MNAS_OK) return st;
        if (c + 1 < n_cells)
            row_off[c + 1] = row_off[c] + mnas_cell_num_edges(cell) * mnas_search_space_num_ops(mnas_cell_space(cell));
    }
    const mnas_cell *c0 = mnas_supernet_cell_at(net, 0);
    size_t n = mnas_supernet_alpha_rows(net) * mnas_search_space_num_ops(mnas_cell_space(c0));
    for (size_t i = 0; i < n; i++) alpha_out[i] = 0;
    for (int c = 0; c < n_cells; c++)
        for (int j = 0; j < g->n_nodes; j++)
            for (int k = 0; k < 2; k++) alpha_out[row_off[c] + hot[c][j][k]] = 1;
    return MNAS_OK;
}
