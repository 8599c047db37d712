/* Genotypes: derivation from alpha against hand-built cases and a brute-force
 * reference, the text form (print/parse round trips, canonical printing,
 * every class of malformed text refused with a message saying where), set
 * equality, Graphviz DOT, the snprintf-style buffer convention and the
 * one-hot alpha a genotype decodes to. Runs on the MLP space and on a
 * 4-op space registered here (zero op in the middle). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_search_space *mlp_space; /* linear, skip, zero */
static mnas_search_space *cus_space; /* pool, none (zero), linear, skip */
static mnas_cell *mlp_cell;          /* 3 nodes: 9 edges */
static mnas_cell *cus_cell;          /* 4 nodes: 14 edges */
static int L, S, Z;                  /* indices in mlp_space */

enum { CP = 0, CN = 1, CL = 2, CS = 3 }; /* indices in cus_space */

static mnas_tensor *ident(void *user, mnas_tape *tape, mnas_tensor *x, mnas_tensor *const *params, int stride)
{
    (void)user;
    (void)tape;
    (void)params;
    (void)stride;
    return x;
}

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 7;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    mlp_space = mnas_search_space_mlp(ctx);
    ck_assert_msg(mlp_space != NULL, "%s", mnas_ctx_last_error(ctx));
    L = mnas_search_space_find_op(mlp_space, "linear");
    S = mnas_search_space_find_op(mlp_space, "skip");
    Z = mnas_search_space_find_op(mlp_space, "zero");
    ck_assert(L >= 0 && S >= 0 && Z >= 0);
    ck_assert_int_eq((int)mnas_search_space_num_ops(mlp_space), 3);
    ck_assert(mnas_search_space_op_is_zero(mlp_space, (size_t)Z));

    cus_space = mnas_search_space_create(ctx);
    ck_assert_ptr_nonnull(cus_space);
    ck_assert_int_eq(mnas_search_space_add_op(cus_space, "pool", 0, NULL, ident, NULL), CP);
    ck_assert_int_eq(mnas_search_space_add_op(cus_space, "none", 1, NULL, NULL, NULL), CN);
    ck_assert_int_eq(mnas_search_space_add_op(cus_space, "linear", 0, NULL, ident, NULL), CL);
    ck_assert_int_eq(mnas_search_space_add_op(cus_space, "skip", 0, NULL, ident, NULL), CS);

    mlp_cell = mnas_cell_create_mlp(mlp_space, 3, 8);
    ck_assert_msg(mlp_cell != NULL, "%s", mnas_ctx_last_error(ctx));
    cus_cell = mnas_cell_create_mlp(cus_space, 4, 8);
    ck_assert_msg(cus_cell != NULL, "%s", mnas_ctx_last_error(ctx));
}

/* Objects a failing assertion would otherwise leak (valgrind runs without
 * fork), freed here. */
#define KEEP_MAX 16
static mnas_genotype *kept[KEEP_MAX];
static mnas_tensor *kept_t[KEEP_MAX];

static mnas_genotype *keep(mnas_genotype *g)
{
    for (int i = 0; i < KEEP_MAX; i++)
        if (!kept[i]) return kept[i] = g;
    ck_abort_msg("keep: full");
    return NULL;
}

static mnas_tensor *keep_t(mnas_tensor *t)
{
    for (int i = 0; i < KEEP_MAX; i++)
        if (!kept_t[i]) return kept_t[i] = t;
    ck_abort_msg("keep_t: full");
    return NULL;
}

static void release(void)
{
    for (int i = 0; i < KEEP_MAX; i++) {
        mnas_genotype_free(kept[i]);
        mnas_tensor_free(kept_t[i]);
        kept[i] = NULL;
        kept_t[i] = NULL;
    }
}

static void teardown(void)
{
    release();
    mnas_cell_free(cus_cell);
    mnas_cell_free(mlp_cell);
    mnas_search_space_free(cus_space);
    mnas_search_space_free(mlp_space);
    mnas_ctx_free(ctx);
}

/* ---- helpers ------------------------------------------------------------- */

static const char *text_of(const mnas_genotype *g)
{
    static char buf[8192];
    int64_t n = mnas_genotype_to_string(g, buf, sizeof buf);
    ck_assert(n >= 0 && n < (int64_t)sizeof buf);
    ck_assert_int_eq((int64_t)strlen(buf), n);
    return buf;
}

/* Parse from an exactly sized heap copy, so that a read past the
 * terminator shows under valgrind and ASan. */
static mnas_genotype *parse_exact(const mnas_search_space *space, const char *s)
{
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, s, n + 1);
    mnas_ctx_clear_error(ctx);
    mnas_genotype *g = mnas_genotype_parse(ctx, space, copy);
    free(copy);
    return g;
}

static mnas_genotype *parse_ok(const mnas_search_space *space, const char *s)
{
    mnas_genotype *g = parse_exact(space, s);
    ck_assert_msg(g != NULL, "parse(\"%s\") failed: %s", s, mnas_ctx_last_error(ctx));
    return keep(g);
}

/* The last failure on ctx had this status and its message contains needle. */
static void expect_error(mnas_status st, const char *needle)
{
    const char *msg = mnas_ctx_last_error(ctx);
    const char *prefix = mnas_status_str(st);
    ck_assert_msg(strncmp(msg, prefix, strlen(prefix)) == 0 && msg[strlen(prefix)] == ':',
                  "expected status \"%s\", message is \"%s\"", prefix, msg);
    if (needle) ck_assert_msg(strstr(msg, needle) != NULL, "message \"%s\" lacks \"%s\"", msg, needle);
}

static mnas_tensor *alpha_of(const mnas_cell *cell, const mnas_real *data)
{
    int64_t shape[2] = { (int64_t)mnas_cell_num_edges(cell),
                         (int64_t)mnas_search_space_num_ops(mnas_cell_space(cell)) };
    mnas_tensor *t = data ? mnas_tensor_from_data(ctx, 2, shape, data) : mnas_tensor_zeros(ctx, 2, shape);
    ck_assert_ptr_nonnull(t);
    return keep_t(t);
}

static int edge_no(int j, int i) { return 2 * j + j * (j - 1) / 2 + i; }

/* Brute-force derivation, written independently of the library's: the
 * strength of every incoming edge, then the first maximum, then the first
 * maximum of the rest. Writes inputs and ops of node j, sorted by input. */
static void reference_derive(const mnas_search_space *sp, int n_ops, const mnas_real *a, int j, int in[2],
                             int op[2])
{
    double str[80];
    int best_op[80];
    for (int i = 0; i < j + 2; i++) {
        const mnas_real *row = a + (size_t)edge_no(j, i) * (size_t)n_ops;
        double s = -INFINITY;
        int b = -1;
        for (int o = 0; o < n_ops; o++)
            if (!mnas_search_space_op_is_zero(sp, (size_t)o) && (b < 0 || row[o] > s)) {
                s = row[o];
                b = o;
            }
        str[i] = s;
        best_op[i] = b;
    }
    int first = 0;
    for (int i = 1; i < j + 2; i++)
        if (str[i] > str[first]) first = i;
    int second = first == 0 ? 1 : 0;
    for (int i = 0; i < j + 2; i++)
        if (i != first && str[i] > str[second]) second = i;
    int lo = first < second ? first : second, hi = first < second ? second : first;
    in[0] = lo;
    in[1] = hi;
    op[0] = best_op[lo];
    op[1] = best_op[hi];
}

/* ---- cell layout assumed by the genotype code ------------------------------ */

START_TEST(edge_numbering)
{
    const mnas_cell *cells[2] = { mlp_cell, cus_cell };
    for (int c = 0; c < 2; c++) {
        int n = mnas_cell_num_nodes(cells[c]);
        ck_assert_int_eq((int)mnas_cell_num_edges(cells[c]), 2 * n + n * (n - 1) / 2);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < j + 2; i++) ck_assert_int_eq(mnas_cell_edge(cells[c], j, i), edge_no(j, i));
    }
}
END_TEST

/* ---- derive ------------------------------------------------------------------ */

START_TEST(derive_mlp_by_hand)
{
    mnas_real a[9 * 3] = { 0 };
#define A(e, o) a[(e) * 3 + (o)]
    /* node 0: both inputs, each with its best non-zero op */
    A(0, L) = 0.2f, A(0, S) = 0.7f, A(0, Z) = 0.1f;
    A(1, L) = 0.6f, A(1, S) = 0.3f, A(1, Z) = 0.1f;
    /* node 1: edge from input 0 is zero-dominant, its strength is 0.05 */
    A(2, L) = 0.05f, A(2, S) = 0.05f, A(2, Z) = 0.9f;
    A(3, L) = 0.4f, A(3, S) = 0.1f, A(3, Z) = 0.5f;
    A(4, L) = 0.2f, A(4, S) = 0.3f, A(4, Z) = 0.5f;
    /* node 2: 0.6 on input 3, then a tie at 0.5 between inputs 1 and 2 */
    A(5, L) = 0.1f, A(5, Z) = 0.9f;
    A(6, S) = 0.5f;
    A(7, L) = 0.5f;
    A(8, L) = 0.6f, A(8, S) = 0.4f;
    mnas_genotype *g = keep(mnas_genotype_derive(mlp_cell, alpha_of(mlp_cell, a)));
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
    ck_assert_str_eq(text_of(g), "skip@0,linear@1;linear@1,skip@2;skip@1,linear@3");
    ck_assert_int_eq(mnas_genotype_input(g, 1, 0), 1);
    ck_assert_int_eq(mnas_genotype_op(g, 1, 0), L);
    ck_assert_int_eq(mnas_genotype_input(g, 1, 1), 2);
    ck_assert_int_eq(mnas_genotype_op(g, 1, 1), S);

    /* every weight equal: inputs 0 and 1, the lower-index non-zero op */
    for (int i = 0; i < 27; i++) a[i] = 1.0f / 3;
    mnas_genotype *h = keep(mnas_genotype_derive(mlp_cell, alpha_of(mlp_cell, a)));
    ck_assert_ptr_nonnull(h);
    const char *tie = L < S ? "linear" : "skip";
    char want[128];
    snprintf(want, sizeof want, "%s@0,%s@1;%s@0,%s@1;%s@0,%s@1", tie, tie, tie, tie, tie, tie);
    ck_assert_str_eq(text_of(h), want);
#undef A
}
END_TEST

START_TEST(derive_custom_by_hand)
{
    mnas_real a[14 * 4] = { 0 };
#define A(e, o) a[(e) * 4 + (o)]
    /* node 0: pool/linear tie -> pool (index 0); none (zero) ignored */
    A(0, CP) = 0.2f, A(0, CN) = 0.9f, A(0, CL) = 0.2f, A(0, CS) = 0.1f;
    A(1, CS) = 0.8f, A(1, CN) = 0.95f;
    /* node 1: input 0 has only -inf on its non-zero ops */
    A(2, CP) = -INFINITY, A(2, CN) = 5.0f, A(2, CL) = -INFINITY, A(2, CS) = -INFINITY;
    A(3, CL) = 1.0f;
    A(4, CS) = 1.0f;
    /* node 2: 0.3 on inputs 0 and 2, input 1 is zero-dominant, input 3 0.29 */
    A(5, CL) = 0.3f;
    A(6, CN) = 1.0f, A(6, CP) = 0.01f;
    A(7, CS) = 0.3f;
    A(8, CP) = 0.29f;
    /* node 3: negative weights (logits): -0.25 on input 4, -0.5 on input 2 */
    for (int e = 9; e < 14; e++)
        for (int o = 0; o < 4; o++) A(e, o) = -5.0f;
    A(9, CP) = -1.0f, A(10, CP) = -2.0f, A(11, CL) = -0.5f, A(12, CP) = -3.0f, A(13, CS) = -0.25f;
    A(13, CN) = 10.0f;
    mnas_genotype *g = keep(mnas_genotype_derive(cus_cell, alpha_of(cus_cell, a)));
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
    ck_assert_str_eq(text_of(g), "pool@0,skip@1;linear@1,skip@2;linear@0,skip@2;linear@2,skip@4");
#undef A
}
END_TEST

START_TEST(derive_matches_reference)
{
    const mnas_cell *cells[2] = { mlp_cell, cus_cell };
    for (int c = 0; c < 2; c++) {
        const mnas_search_space *sp = mnas_cell_space(cells[c]);
        int n = mnas_cell_num_nodes(cells[c]);
        int n_ops = (int)mnas_search_space_num_ops(sp);
        int64_t shape[2] = { (int64_t)mnas_cell_num_edges(cells[c]), n_ops };
        for (int seed = 0; seed < 150; seed++) {
            mnas_ctx_seed(ctx, (uint64_t)seed);
            mnas_tensor *t = mnas_tensor_rand(ctx, 2, shape, 0.0, 1.0);
            ck_assert_ptr_nonnull(t);
            mnas_real *d = mnas_tensor_data(t);
            /* every other seed: values on a coarse grid, so ties are common */
            if (seed % 2)
                for (int64_t i = 0; i < shape[0] * shape[1]; i++) d[i] = floorf((float)d[i] * 3.0f) / 3.0f;
            mnas_genotype *g = mnas_genotype_derive(cells[c], t);
            ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
            ck_assert_int_eq(mnas_genotype_num_nodes(g), n);
            for (int j = 0; j < n; j++) {
                int in[2], op[2];
                reference_derive(sp, n_ops, d, j, in, op);
                for (int k = 0; k < 2; k++) {
                    ck_assert_int_eq(mnas_genotype_input(g, j, k), in[k]);
                    ck_assert_int_eq(mnas_genotype_op(g, j, k), op[k]);
                }
            }
            /* round trip through the text form */
            char buf[512];
            int64_t len = mnas_genotype_to_string(g, NULL, 0);
            ck_assert(len > 0 && len < (int64_t)sizeof buf);
            ck_assert_int_eq(mnas_genotype_to_string(g, buf, sizeof buf), len);
            mnas_genotype *h = parse_exact(sp, buf);
            ck_assert_msg(h != NULL, "%s: %s", buf, mnas_ctx_last_error(ctx));
            ck_assert(mnas_genotype_equal(g, h));
            ck_assert(mnas_genotype_equal(h, g));
            ck_assert_str_eq(text_of(h), buf);
            mnas_genotype_free(h);
            mnas_genotype_free(g);
            mnas_tensor_free(t);
        }
    }
}
END_TEST

START_TEST(derive_rejects_bad_alpha)
{
    int64_t bad[][3] = { { 2, 9, 2 }, { 2, 8, 3 }, { 2, 3, 9 }, { 2, 10, 3 }, { 1, 27, 0 }, { 3, 1, 9 } };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        int64_t shape[3] = { bad[c][1], bad[c][2], 3 };
        int ndim = (int)bad[c][0];
        if (ndim == 3) shape[0] = 1, shape[1] = 9, shape[2] = 3;
        mnas_tensor *t = keep_t(mnas_tensor_zeros(ctx, ndim, shape));
        ck_assert_ptr_nonnull(t);
        mnas_ctx_clear_error(ctx);
        ck_assert_ptr_null(mnas_genotype_derive(mlp_cell, t));
        expect_error(MNAS_E_SHAPE, "[9, 3]");
    }
    /* the MLP cell's alpha does not fit the custom cell */
    mnas_tensor *a = alpha_of(mlp_cell, NULL);
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_derive(cus_cell, a));
    expect_error(MNAS_E_SHAPE, "[14, 4]");

    /* NaN anywhere, also under a zero op */
    mnas_real *d = mnas_tensor_data(a);
    d[4 * 3 + Z] = NAN;
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_derive(mlp_cell, a));
    expect_error(MNAS_E_NUMERIC, "alpha[4, ");
    d[4 * 3 + Z] = 0;
    d[7 * 3 + L] = NAN;
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_derive(mlp_cell, a));
    expect_error(MNAS_E_NUMERIC, "NaN");
    d[7 * 3 + L] = 0;

    /* NULL arguments */
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_derive(NULL, a));
    expect_error(MNAS_E_INVALID, "cell");
    ck_assert_ptr_null(mnas_genotype_derive(mlp_cell, NULL));
    expect_error(MNAS_E_INVALID, "alpha is NULL");

    /* a stale tape tensor */
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    int64_t shape[2] = { 9, 3 };
    mnas_tensor *tt = mnas_tape_tensor(tp, 2, shape, NULL);
    ck_assert_ptr_nonnull(tt);
    mnas_genotype *g = mnas_genotype_derive(mlp_cell, tt); /* live: fine */
    ck_assert_ptr_nonnull(g);
    mnas_genotype_free(g);
    mnas_tape_reset(tp);
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_derive(mlp_cell, tt));
    expect_error(MNAS_E_STALE, NULL);
    mnas_tape_free(tp);
}
END_TEST

START_TEST(derive_all_zero_space)
{
    mnas_search_space *sp = mnas_search_space_create(ctx);
    ck_assert_ptr_nonnull(sp);
    ck_assert_int_eq(mnas_search_space_add_op(sp, "none", 1, NULL, NULL, NULL), 0);
    ck_assert_int_eq(mnas_search_space_add_op(sp, "zero", 1, NULL, NULL, NULL), 1);
    mnas_cell *cell = mnas_cell_create_mlp(sp, 2, 4);
    /* Whether a cell of only zero ops can exist is the cell's business; if
     * it can, deriving from it must be refused. */
    if (cell) {
        int64_t shape[2] = { 5, 2 };
        mnas_tensor *t = keep_t(mnas_tensor_zeros(ctx, 2, shape));
        mnas_ctx_clear_error(ctx);
        mnas_genotype *g = mnas_genotype_derive(cell, t);
        mnas_genotype_free(g);
        mnas_cell_free(cell);
        mnas_search_space_free(sp);
        ck_assert_ptr_null(g);
        expect_error(MNAS_E_INVALID, "zero");
    } else {
        mnas_search_space_free(sp);
    }
}
END_TEST

/* ---- text form ------------------------------------------------------------- */

START_TEST(parse_hand_written)
{
    static const struct {
        const char *in, *canonical;
        int nodes;
    } cases[] = {
        { "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3", "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3", 3 },
        { "skip@1,linear@0", "linear@0,skip@1", 1 },
        { " linear @ 0 ,\tskip@1 ;\n skip @2 , linear@ 0 \r\n", "linear@0,skip@1;linear@0,skip@2", 2 },
        { "linear@1,linear@0;skip@2,skip@1", "linear@0,linear@1;skip@1,skip@2", 2 },
        { "linear@007,skip@00", "skip@0,linear@7", -1 }, /* 7 is out of range for node 0 */
        { "linear@01,skip@00", "skip@0,linear@1", 1 },
        { "skip@4,linear@3;linear@0,skip@1", NULL, -1 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mnas_genotype *g = parse_exact(mlp_space, cases[c].in);
        if (cases[c].nodes < 0) {
            ck_assert_msg(g == NULL, "\"%s\" parsed", cases[c].in);
            expect_error(MNAS_E_FORMAT, "out of range");
            continue;
        }
        ck_assert_msg(g != NULL, "%s: %s", cases[c].in, mnas_ctx_last_error(ctx));
        keep(g);
        ck_assert_int_eq(mnas_genotype_num_nodes(g), cases[c].nodes);
        ck_assert_str_eq(text_of(g), cases[c].canonical);
        mnas_genotype *h = parse_ok(mlp_space, cases[c].canonical);
        ck_assert(mnas_genotype_equal(g, h));
        ck_assert_str_eq(text_of(h), cases[c].canonical);
        release();
    }

    /* 64 nodes is the limit, and it round-trips */
    size_t cap = 64 * 20;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    s[0] = '\0';
    for (int j = 0; j < 64; j++) {
        char node[32];
        snprintf(node, sizeof node, "%sskip@%d,linear@%d", j ? ";" : "", j % 2, j + 1);
        strcat(s, node);
    }
    mnas_genotype *g = parse_exact(mlp_space, s);
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
    keep(g);
    ck_assert_int_eq(mnas_genotype_num_nodes(g), 64);
    ck_assert_int_eq(mnas_genotype_input(g, 63, 1), 64);
    char *back = malloc(cap);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(mnas_genotype_to_string(g, back, cap), (int64_t)strlen(s));
    ck_assert_str_eq(back, s);
    free(back);
    free(s);
}
END_TEST

START_TEST(parse_random_round_trip)
{
    mnas_rng *rng = mnas_rng_create(ctx, 99, 0);
    ck_assert_ptr_nonnull(rng);
    const mnas_search_space *spaces[2] = { mlp_space, cus_space };
    static const char *const names[2][3] = { { "linear", "skip", "linear" }, { "pool", "linear", "skip" } };
    for (int it = 0; it < 300; it++) {
        int sp = it % 2;
        int n = 1 + (int)mnas_rng_below(rng, 8);
        char s[1024] = "";
        for (int j = 0; j < n; j++) {
            int a = (int)mnas_rng_below(rng, (uint64_t)j + 2);
            int b = (int)mnas_rng_below(rng, (uint64_t)j + 1);
            if (b >= a) b++;
            char node[80];
            snprintf(node, sizeof node, "%s%s@%d,%s@%d", j ? ";" : "", names[sp][mnas_rng_below(rng, 3)], a,
                     names[sp][mnas_rng_below(rng, 3)], b);
            strcat(s, node);
        }
        mnas_genotype *g = parse_exact(spaces[sp], s);
        ck_assert_msg(g != NULL, "%s: %s", s, mnas_ctx_last_error(ctx));
        ck_assert_int_eq(mnas_genotype_num_nodes(g), n);
        /* canonical: pairs sorted by input, and reparsing gives the same */
        char t[1024];
        ck_assert_int_eq(mnas_genotype_to_string(g, t, sizeof t), (int64_t)strlen(t));
        for (int j = 0; j < n; j++) ck_assert_int_lt(mnas_genotype_input(g, j, 0), mnas_genotype_input(g, j, 1));
        mnas_genotype *h = parse_exact(spaces[sp], t);
        ck_assert_ptr_nonnull(h);
        ck_assert(mnas_genotype_equal(g, h));
        ck_assert_str_eq(text_of(h), t);
        /* and one-hot -> derive gives it back when it fits the cell */
        const mnas_cell *cell = sp ? cus_cell : mlp_cell;
        if (n == mnas_cell_num_nodes(cell)) {
            size_t ne = mnas_cell_num_edges(cell), no = mnas_search_space_num_ops(spaces[sp]);
            int64_t shape[2] = { (int64_t)ne, (int64_t)no };
            mnas_tensor *al = mnas_tensor_zeros(ctx, 2, shape);
            ck_assert_int_eq(mnas_genotype_onehot(g, cell, mnas_tensor_data(al)), MNAS_OK);
            mnas_genotype *d = mnas_genotype_derive(cell, al);
            ck_assert_ptr_nonnull(d);
            ck_assert(mnas_genotype_equal(g, d));
            mnas_genotype_free(d);
            mnas_tensor_free(al);
        }
        mnas_genotype_free(h);
        mnas_genotype_free(g);
    }
    mnas_rng_free(rng);
}
END_TEST

static const struct {
    const char *text;
    int node;        /* "node %d" in the message */
    long offset;     /* "offset %ld" in the message */
    const char *why; /* and this */
} malformed[] = {
    { "", 0, 0, "empty" },
    { "  \t ", 0, 4, "empty" },
    { "linear@0,skip@1;", 1, 16, "trailing" },
    { "linear@0,skip@1 ; ", 1, 18, "trailing" },
    { "linear@0,", 0, 9, "expected an op name" },
    { "linear@0,skip@1,", 0, 15, "third" },
    { "linear@0", 0, 8, "found 1" },
    { "linear@0;skip@1,linear@0", 0, 8, "found 1" },
    { "linear@0,skip@1;linear@0,skip@1;linear@0", 2, 40, "found 1" },
    { "linear@0,skip@1,skip@2", 0, 15, "third" },
    { "linear@0,skip@0", 0, 14, "appears twice" },
    { "linear@0,skip@1;skip@2, linear@2", 1, 31, "appears twice" },
    { "foo@0,skip@1", 0, 0, "unknown op 'foo'" },
    { "Linear@0,skip@1", 0, 0, "unknown op 'Linear'" },
    { "linear@0,zero@1", 0, 9, "zero op" },
    { "linear@2,skip@1", 0, 7, "out of range 0..1" },
    { "linear@0,skip@1;linear@0,skip@4", 1, 30, "out of range 0..2" },
    { "linear@0,skip@1;linear@3,skip@1", 1, 23, "out of range 0..2" },
    { "linear@-1,skip@1", 0, 7, "decimal integer" },
    { "linear@+1,skip@0", 0, 7, "decimal integer" },
    { "linear@99999999999999999999999999999999,skip@1", 0, 7, "out of range" },
    { "linear@2147483648,skip@1", 0, 7, "out of range" },
    { "linear,skip@1", 0, 6, "expected '@'" },
    { "linear x@0,skip@1", 0, 7, "expected '@'" },
    { "linear@,skip@1", 0, 7, "decimal integer" },
    { "linear@", 0, 7, "the end of the text" },
    { "@0,skip@1", 0, 0, "expected an op name" },
    { "linear@0,,skip@1", 0, 9, "expected an op name" },
    { ";linear@0,skip@1", 0, 0, "expected an op name" },
    { "linear@0,skip@1;;linear@0,skip@2", 1, 16, "expected an op name" },
    { "linear@0,skip@1 x", 0, 16, "expected ';' or the end" },
    { "linear@0 1,skip@1", 0, 9, "expected ','" },
    { "linear@0x1,skip@1", 0, 8, "expected ','" },
    { "linear@1.0,skip@0", 0, 8, "expected ','" },
    { "linear@0,skip@1\x01", 0, 15, "byte 0x01" },
    { "l\xc3\xafnear@0,skip@1", 0, 1, "byte 0xc3" },
    { "lin-ear@0,skip@1", 0, 3, "'-' in op name" },
    { "abcdefghijklmnopqrstuvwxyz_01234@0,skip@1", 0, 0, "longer than 31" },
    { "linear@0,skip@1;skip@0,abcdefghijklmnopqrstuvwxyz_ABCDEF@1", 1, 23, "longer than 31" },
};

START_TEST(parse_rejects_malformed)
{
    for (size_t c = 0; c < sizeof malformed / sizeof malformed[0]; c++) {
        mnas_genotype *g = parse_exact(mlp_space, malformed[c].text);
        ck_assert_msg(g == NULL, "case %zu \"%s\" parsed as \"%s\"", c, malformed[c].text, text_of(keep(g)));
        char want[64];
        expect_error(MNAS_E_FORMAT, malformed[c].why);
        snprintf(want, sizeof want, "node %d,", malformed[c].node);
        expect_error(MNAS_E_FORMAT, want);
        snprintf(want, sizeof want, "offset %ld)", malformed[c].offset);
        expect_error(MNAS_E_FORMAT, want);
    }
}
END_TEST

START_TEST(parse_rejects_long_input)
{
    /* a 5000-character op name, then 65 nodes */
    size_t n = 5000;
    char *s = malloc(n + 16);
    ck_assert_ptr_nonnull(s);
    memset(s, 'a', n);
    strcpy(s + n, "@0,skip@1");
    ck_assert_ptr_null(parse_exact(mlp_space, s));
    expect_error(MNAS_E_FORMAT, "5000 characters is longer than 31");
    free(s);

    s = malloc(65 * 16 + 1);
    ck_assert_ptr_nonnull(s);
    s[0] = '\0';
    for (int j = 0; j < 65; j++) strcat(s, j ? ";linear@0,skip@1" : "linear@0,skip@1");
    ck_assert_ptr_null(parse_exact(mlp_space, s));
    expect_error(MNAS_E_FORMAT, "more than 64 nodes");
    expect_error(MNAS_E_FORMAT, "node 64,");
    expect_error(MNAS_E_FORMAT, "offset 1024)");
    free(s);

    /* the bad op lands in the 4-op space too */
    ck_assert_ptr_null(parse_exact(cus_space, "pool@0,none@1"));
    expect_error(MNAS_E_FORMAT, "'none' is a zero op");
    ck_assert_ptr_null(parse_exact(cus_space, "pool@0,zero@1"));
    expect_error(MNAS_E_FORMAT, "unknown op 'zero'");
}
END_TEST

START_TEST(parse_null_arguments)
{
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_parse(ctx, NULL, "linear@0,skip@1"));
    expect_error(MNAS_E_INVALID, "space");
    mnas_ctx_clear_error(ctx);
    ck_assert_ptr_null(mnas_genotype_parse(ctx, mlp_space, NULL));
    expect_error(MNAS_E_INVALID, "text");
    ck_assert_ptr_null(mnas_genotype_parse(NULL, mlp_space, "linear@0,skip@1"));
}
END_TEST

/* ---- equality, getters, copies ------------------------------------------------ */

/* "op@in,op@in;..." from arrays */
static void build(char *s, size_t cap, int n, const char *ops[][2], int in[][2])
{
    size_t len = 0;
    s[0] = '\0';
    for (int j = 0; j < n; j++)
        len += (size_t)snprintf(s + len, cap - len, "%s%s@%d,%s@%d", j ? ";" : "", ops[j][0], in[j][0], ops[j][1],
                                in[j][1]);
    ck_assert_uint_lt(len, cap);
}

START_TEST(equal_is_a_set_comparison)
{
    mnas_genotype *a = parse_ok(mlp_space, "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3");
    mnas_genotype *b = parse_ok(mlp_space, "skip@1,linear@0;linear@2,skip@0;skip@3,linear@1");
    ck_assert(mnas_genotype_equal(a, a));
    ck_assert(mnas_genotype_equal(a, b));
    ck_assert(mnas_genotype_equal(b, a));
    ck_assert(!mnas_genotype_equal(a, NULL));
    ck_assert(!mnas_genotype_equal(NULL, a));
    ck_assert(!mnas_genotype_equal(NULL, NULL));
    /* same pairs on different nodes do not match */
    mnas_genotype *c = parse_ok(mlp_space, "linear@0,skip@1;linear@0,skip@1");
    mnas_genotype *d = parse_ok(mlp_space, "linear@0,skip@1;linear@0,skip@2");
    ck_assert(!mnas_genotype_equal(c, d));
    /* prefix: fewer nodes */
    mnas_genotype *e = parse_ok(mlp_space, "linear@0,skip@1;skip@0,linear@2");
    ck_assert(!mnas_genotype_equal(a, e));
    ck_assert(!mnas_genotype_equal(e, a));
    /* the op swapped between the two pairs of a node */
    mnas_genotype *f = parse_ok(mlp_space, "skip@0,linear@1;skip@0,linear@2;linear@1,skip@3");
    ck_assert(!mnas_genotype_equal(a, f));
}
END_TEST

START_TEST(equal_detects_every_single_change)
{
    const mnas_search_space *spaces[2] = { mlp_space, cus_space };
    static const char *const opset[2][3] = { { "linear", "skip", NULL }, { "pool", "linear", "skip" } };
    static const char *ops[4][2] = { { "linear", "skip" }, { "skip", "linear" }, { "linear", "skip" },
                                     { "skip", "skip" } };
    static int in[4][2] = { { 0, 1 }, { 0, 2 }, { 1, 3 }, { 2, 4 } };
    for (int sp = 0; sp < 2; sp++) {
        char s[256];
        build(s, sizeof s, 4, ops, in);
        mnas_genotype *base = parse_ok(spaces[sp], s);
        int changes = 0;
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++) {
                /* every other op in this pair */
                for (int o = 0; o < 3 && opset[sp][o]; o++) {
                    if (strcmp(opset[sp][o], ops[j][k]) == 0) continue;
                    const char *ops2[4][2];
                    memcpy(ops2, ops, sizeof ops2);
                    ops2[j][k] = opset[sp][o];
                    build(s, sizeof s, 4, ops2, in);
                    mnas_genotype *g = parse_exact(spaces[sp], s);
                    ck_assert_msg(g != NULL, "%s: %s", s, mnas_ctx_last_error(ctx));
                    int eq = mnas_genotype_equal(base, g) || mnas_genotype_equal(g, base);
                    mnas_genotype_free(g);
                    ck_assert_msg(!eq, "%s equals the base", s);
                    changes++;
                }
                /* every other valid input state in this pair */
                for (int v = 0; v <= j + 1; v++) {
                    if (v == in[j][0] || v == in[j][1]) continue;
                    int in2[4][2];
                    memcpy(in2, in, sizeof in2);
                    in2[j][k] = v;
                    build(s, sizeof s, 4, ops, in2);
                    mnas_genotype *g = parse_exact(spaces[sp], s);
                    ck_assert_msg(g != NULL, "%s: %s", s, mnas_ctx_last_error(ctx));
                    int eq = mnas_genotype_equal(base, g) || mnas_genotype_equal(g, base);
                    mnas_genotype_free(g);
                    ck_assert_msg(!eq, "%s equals the base", s);
                    changes++;
                }
            }
        /* ops: 8 pairs x (1 or 2 alternatives); inputs: nodes 1..3 have 1, 2, 3 spare states per pair */
        ck_assert_int_eq(changes, 8 * (sp ? 2 : 1) + 2 * (0 + 1 + 2 + 3));
    }
}
END_TEST

START_TEST(equal_across_spaces_compares_names)
{
    /* linear and skip have different indices in the two spaces */
    ck_assert_int_ne(L, CL);
    mnas_genotype *a = parse_ok(mlp_space, "linear@0,skip@1;skip@0,linear@2");
    mnas_genotype *b = parse_ok(cus_space, "skip@1,linear@0;linear@2,skip@0");
    ck_assert(mnas_genotype_equal(a, b));
    ck_assert(mnas_genotype_equal(b, a));
    mnas_genotype *c = parse_ok(cus_space, "pool@0,skip@1;skip@0,linear@2");
    ck_assert(!mnas_genotype_equal(a, c));
    ck_assert(!mnas_genotype_equal(c, a));
    /* a second instance of the MLP space */
    mnas_search_space *other = mnas_search_space_mlp(ctx);
    ck_assert_ptr_nonnull(other);
    mnas_genotype *d = mnas_genotype_parse(ctx, other, "linear@0,skip@1;skip@0,linear@2");
    ck_assert_ptr_nonnull(d);
    int eq = mnas_genotype_equal(a, d);
    mnas_genotype_free(d);
    mnas_search_space_free(other);
    ck_assert(eq);
}
END_TEST

START_TEST(getters_and_copy)
{
    mnas_genotype *g = parse_ok(mlp_space, "skip@1,linear@0;skip@0,linear@2;linear@1,skip@3");
    ck_assert_int_eq(mnas_genotype_num_nodes(g), 3);
    const int want_in[3][2] = { { 0, 1 }, { 0, 2 }, { 1, 3 } };
    const int want_op[3][2] = { { L, S }, { S, L }, { L, S } };
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(mnas_genotype_input(g, j, k), want_in[j][k]);
            ck_assert_int_eq(mnas_genotype_op(g, j, k), want_op[j][k]);
        }
    ck_assert_int_eq(mnas_genotype_input(g, -1, 0), -1);
    ck_assert_int_eq(mnas_genotype_input(g, 3, 0), -1);
    ck_assert_int_eq(mnas_genotype_input(g, 0, 2), -1);
    ck_assert_int_eq(mnas_genotype_input(g, 0, -1), -1);
    ck_assert_int_eq(mnas_genotype_op(g, 3, 1), -1);
    ck_assert_int_eq(mnas_genotype_op(g, 1, 2), -1);
    ck_assert_int_eq(mnas_genotype_input(NULL, 0, 0), -1);
    ck_assert_int_eq(mnas_genotype_op(NULL, 0, 0), -1);
    ck_assert_int_eq(mnas_genotype_num_nodes(NULL), -1);

    mnas_genotype *c = mnas_genotype_copy(g);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c, g);
    ck_assert(mnas_genotype_equal(c, g));
    char before[128];
    snprintf(before, sizeof before, "%s", text_of(g));
    release(); /* frees g */
    ck_assert_str_eq(text_of(c), before);
    mnas_genotype_free(c);
    mnas_genotype_free(NULL);
    ck_assert_ptr_null(mnas_genotype_copy(NULL));
}
END_TEST

/* ---- output buffers and DOT --------------------------------------------------- */

typedef int64_t (*render_fn)(const mnas_genotype *g, char *buf, size_t cap);
static const char *dot_title;
static int64_t render_string(const mnas_genotype *g, char *buf, size_t cap) { return mnas_genotype_to_string(g, buf, cap); }
static int64_t render_dot(const mnas_genotype *g, char *buf, size_t cap)
{
    return mnas_genotype_to_dot(g, dot_title, buf, cap);
}

static void check_buffer_convention(const mnas_genotype *g, render_fn f)
{
    int64_t n = f(g, NULL, 0);
    ck_assert_int_gt(n, 0);
    size_t size = (size_t)n + 16;
    char *full = malloc(size), *buf = malloc(size);
    ck_assert(full && buf);
    ck_assert_int_eq(f(g, full, (size_t)n + 1), n);
    ck_assert_int_eq((int64_t)strlen(full), n);
    size_t caps[] = { 1, 2, 3, (size_t)n / 2, (size_t)n, (size_t)n + 1, (size_t)n + 2 };
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        size_t cap = caps[c];
        memset(buf, '#', size);
        ck_assert_int_eq(f(g, buf, cap), n);
        size_t kept_len = cap - 1 < (size_t)n ? cap - 1 : (size_t)n;
        ck_assert_int_eq(buf[kept_len], '\0');
        ck_assert(memcmp(buf, full, kept_len) == 0);
        for (size_t i = cap; i < size; i++) ck_assert_int_eq(buf[i], '#');
    }
    /* cap 0 with a real buffer writes nothing */
    memset(buf, '#', size);
    ck_assert_int_eq(f(g, buf, 0), n);
    ck_assert_int_eq(buf[0], '#');
    /* a NULL buffer with a capacity is refused */
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(f(g, NULL, 8), -1);
    expect_error(MNAS_E_INVALID, "buf");
    ck_assert_int_eq(f(NULL, buf, size), -1);
    free(full);
    free(buf);
}

START_TEST(buffer_convention)
{
    mnas_genotype *g = parse_ok(cus_space, "pool@0,skip@1;linear@1,skip@2;linear@0,skip@2;linear@2,skip@4");
    check_buffer_convention(g, render_string);
    dot_title = NULL;
    check_buffer_convention(g, render_dot);
    dot_title = "a \"title\"";
    check_buffer_convention(g, render_dot);
}
END_TEST

/* Braces balance outside quoted strings, strings close, escapes are whole. */
static int dot_well_formed(const char *s)
{
    int depth = 0, in_str = 0;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\') {
                if (!s[1]) return 0;
                s++;
            } else if (*s == '"') {
                in_str = 0;
            }
        } else if (*s == '"') {
            in_str = 1;
        } else if (*s == '{') {
            depth++;
        } else if (*s == '}') {
            if (--depth < 0) return 0;
        }
    }
    return depth == 0 && !in_str;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

START_TEST(dot_output)
{
    mnas_genotype *g = parse_ok(mlp_space, "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3");
    char buf[4096];
    int64_t n = mnas_genotype_to_dot(g, NULL, buf, sizeof buf);
    ck_assert(n > 0 && n < (int64_t)sizeof buf);
    ck_assert_int_eq((int64_t)strlen(buf), n);
    ck_assert(strncmp(buf, "digraph", 7) == 0);
    ck_assert(dot_well_formed(buf));
    ck_assert_ptr_nonnull(strstr(buf, "rankdir=LR;"));
    ck_assert_ptr_null(strstr(buf, "label=\"\""));
    ck_assert_int_eq(count(buf, "  label="), 0);
    static const char *const lines[] = {
        "\n  \"c_{k-2}\" [", "\n  \"c_{k-1}\" [", "\n  \"0\" [", "\n  \"1\" [", "\n  \"2\" [", "\n  \"c_{k}\" [",
        "\"c_{k-2}\" -> \"0\" [label=\"linear\"];", "\"c_{k-1}\" -> \"0\" [label=\"skip\"];",
        "\"c_{k-2}\" -> \"1\" [label=\"skip\"];", "\"0\" -> \"1\" [label=\"linear\"];",
        "\"c_{k-1}\" -> \"2\" [label=\"linear\"];", "\"1\" -> \"2\" [label=\"skip\"];",
        "\"0\" -> \"c_{k}\";", "\"1\" -> \"c_{k}\";", "\"2\" -> \"c_{k}\";",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(count(buf, lines[i]) == 1, "\"%s\" not once in:\n%s", lines[i], buf);
    ck_assert_int_eq(count(buf, " -> "), 3 * 2 + 3);
    ck_assert_ptr_null(strstr(buf, "\"3\""));

    /* a title, with characters that need escaping */
    n = mnas_genotype_to_dot(g, "cell \"A\" \\ x\ny", buf, sizeof buf);
    ck_assert(n > 0 && n < (int64_t)sizeof buf);
    ck_assert(dot_well_formed(buf));
    ck_assert_msg(strstr(buf, "label=\"cell \\\"A\\\" \\\\ x\\ny\";") != NULL, "%s", buf);
    ck_assert_int_eq(count(buf, "\n"), count(buf, ";\n") + 2); /* only "{\n" and "}\n" end without ';' */
}
END_TEST

/* ---- one-hot ------------------------------------------------------------------ */

START_TEST(onehot_rows)
{
    const mnas_cell *cells[2] = { mlp_cell, cus_cell };
    const char *texts[2] = { "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3",
                             "pool@0,skip@1;linear@1,skip@2;linear@0,skip@2;skip@2,pool@4" };
    for (int c = 0; c < 2; c++) {
        const mnas_search_space *sp = mnas_cell_space(cells[c]);
        mnas_genotype *g = parse_ok(sp, texts[c]);
        int n = mnas_genotype_num_nodes(g);
        size_t ne = mnas_cell_num_edges(cells[c]), no = mnas_search_space_num_ops(sp);
        mnas_real a[14 * 4];
        for (size_t i = 0; i < ne * no; i++) a[i] = 7;
        ck_assert_int_eq(mnas_genotype_onehot(g, cells[c], a), MNAS_OK);
        int ones = 0;
        for (size_t i = 0; i < ne * no; i++) {
            ck_assert(a[i] == 0 || a[i] == 1);
            ones += a[i] == 1;
        }
        ck_assert_int_eq(ones, 2 * n);
        for (int j = 0; j < n; j++) {
            int node_ones = 0;
            for (int i = 0; i < j + 2; i++) {
                int e = edge_no(j, i), row_ones = 0;
                for (size_t o = 0; o < no; o++) row_ones += a[(size_t)e * no + o] == 1;
                ck_assert_int_le(row_ones, 1);
                node_ones += row_ones;
            }
            ck_assert_int_eq(node_ones, 2);
            for (int k = 0; k < 2; k++) {
                int e = edge_no(j, mnas_genotype_input(g, j, k));
                ck_assert(a[(size_t)e * no + (size_t)mnas_genotype_op(g, j, k)] == 1);
            }
        }
    }
}
END_TEST

START_TEST(onehot_maps_names_and_refuses_misfits)
{
    mnas_real a[9 * 3];
    /* a genotype of the 4-op space on the MLP cell: mapped by name */
    mnas_genotype *g = parse_ok(cus_space, "linear@0,skip@1;skip@0,linear@2;linear@1,skip@3");
    ck_assert_int_eq(mnas_genotype_onehot(g, mlp_cell, a), MNAS_OK);
    ck_assert(a[0 * 3 + L] == 1 && a[1 * 3 + S] == 1 && a[2 * 3 + S] == 1 && a[4 * 3 + L] == 1 &&
              a[6 * 3 + L] == 1 && a[8 * 3 + S] == 1);
    mnas_real sum = 0;
    for (int i = 0; i < 27; i++) sum += a[i];
    ck_assert(sum == 6);

    /* failures leave the output alone */
    for (int i = 0; i < 27; i++) a[i] = 7;
    mnas_genotype *p = parse_ok(cus_space, "linear@0,skip@1;skip@0,pool@2;linear@1,skip@3");
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_genotype_onehot(p, mlp_cell, a), MNAS_E_INVALID);
    expect_error(MNAS_E_INVALID, "'pool'");
    mnas_genotype *two = parse_ok(mlp_space, "linear@0,skip@1;skip@0,linear@2");
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_genotype_onehot(two, mlp_cell, a), MNAS_E_SHAPE);
    expect_error(MNAS_E_SHAPE, "2 nodes");
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_genotype_onehot(two, NULL, a), MNAS_E_INVALID);
    expect_error(MNAS_E_INVALID, "cell");
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_genotype_onehot(g, mlp_cell, NULL), MNAS_E_INVALID);
    expect_error(MNAS_E_INVALID, "alpha_out");
    ck_assert_int_eq(mnas_genotype_onehot(NULL, mlp_cell, a), MNAS_E_INVALID);
    for (int i = 0; i < 27; i++) ck_assert(a[i] == 7);
}
END_TEST

static Suite *genotype_suite(void)
{
    Suite *s = suite_create("genotype");
    TCase *tc = tcase_create("genotype");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, edge_numbering);
    tcase_add_test(tc, derive_mlp_by_hand);
    tcase_add_test(tc, derive_custom_by_hand);
    tcase_add_test(tc, derive_matches_reference);
    tcase_add_test(tc, derive_rejects_bad_alpha);
    tcase_add_test(tc, derive_all_zero_space);
    tcase_add_test(tc, parse_hand_written);
    tcase_add_test(tc, parse_random_round_trip);
    tcase_add_test(tc, parse_rejects_malformed);
    tcase_add_test(tc, parse_rejects_long_input);
    tcase_add_test(tc, parse_null_arguments);
    tcase_add_test(tc, equal_is_a_set_comparison);
    tcase_add_test(tc, equal_detects_every_single_change);
    tcase_add_test(tc, equal_across_spaces_compares_names);
    tcase_add_test(tc, getters_and_copy);
    tcase_add_test(tc, buffer_convention);
    tcase_add_test(tc, dot_output);
    tcase_add_test(tc, onehot_rows);
    tcase_add_test(tc, onehot_maps_names_and_refuses_misfits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(genotype_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
