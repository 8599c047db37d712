/* Genotypes as text: the compact form ("op@input,op@input;..." per node, a
 * pair as "normal: ... | reduce: ..."), its validating parser with messages
 * that point at the offending character, and Graphviz DOT. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nas/genotype_internal.h"

static const char *const cell_label[2] = { "normal", "reduce" };

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
        mnas__geno_sort_node(pairs[p->node]);
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
    mnas_genotype *g = mnas__geno_alloc(ctx, space, n_nodes[0], n_cells, fn);
    if (g)
        for (int c = 0; c < n_cells; c++)
            memcpy(g->pair + (size_t)c * (size_t)n_nodes[0], pairs[c], (size_t)n_nodes[0] * sizeof pairs[0][0]);
    return g;
}

