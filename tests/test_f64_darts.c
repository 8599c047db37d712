/* Finite-difference checks, in double precision, of the DARTS conv search
 * space: each op as a whole (stride 1 and 2) with respect to its input and
 * parameters, a small conv cell with respect to alpha and every weight
 * (normal, reduction, and after a reduction), the conv supernet with
 * respect to its input and stacked alpha, and the conv MAML baseline;
 * orders 1 to 3 (the gradient, the gradient of v·grad, the gradient of
 * w·grad(v·grad)), each with the last pass recorded and not; cells and
 * whole networks to order 2.
 * Linked with the double build of the library (mnas_f64).
 *
 * Under valgrind (MNAS_TEST_UNDER_VALGRIND) and the sanitizers
 * (MNAS_TEST_SANITIZED) the cells are checked with respect to alpha only
 * and order 3 is left to the plain run: the full check takes ~20 s
 * natively, ~3 min under ASan and hours under valgrind, and the trimmed
 * one still runs every op's forward and backward code.
 *
 * Outputs y are reduced to a scalar by f = Σ w1⊙y + Σ w2⊙y² with fixed
 * random weights, so that no second derivative is trivially zero. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

#define MAXIN 256

/* What a check runs: fills y from the inputs (x first, then weights, and
 * for cells alpha last). */
typedef struct harness harness;
struct harness {
    mnas_tensor *(*run)(const harness *h, mnas_tape *tp, mnas_tensor *const *in);
    const mnas_search_space *space;
    size_t op;
    int stride;
    const mnas_cell *cell;
    const mnas_convnet *net;
    size_t n_w; /* weights after x */
    mnas_tensor *w1, *w2;
    const mnas_params *shapes; /* cells: the parameters the flat weights stand for */
    mnas_tensor *const *fixed; /* cells under valgrind: s0, s1, flat weights, not checked */
    const mnas_supernet *snet;
};

static mnas_tensor *reduce_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    const harness *h = user;
    mnas_tensor *y = h->run(h, tp, in);
    if (!y) return NULL;
    mnas_tensor *a = mnas_sum(tp, mnas_mul(tp, y, h->w1));
    mnas_tensor *b = mnas_sum(tp, mnas_mul(tp, mnas_square(tp, y), h->w2));
    return mnas_add(tp, a, b);
}

/* Values replaced by their ranks spaced 0.05 apart (same order): no max-pool
 * window has a near tie that a finite-difference step could flip. */
/* The trimmed check of an instrumented run (valgrind or the sanitizers). */
static int trimmed(void) { return getenv("MNAS_TEST_UNDER_VALGRIND") != NULL || getenv("MNAS_TEST_SANITIZED") != NULL; }

static void make_distinct(mnas_real *d, int64_t n)
{
    int64_t *ix = malloc((size_t)n * sizeof *ix);
    ck_assert_ptr_nonnull(ix);
    for (int64_t i = 0; i < n; i++) ix[i] = i;
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = i; j > 0 && d[ix[j - 1]] > d[ix[j]]; j--) {
            int64_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    for (int64_t r = 0; r < n; r++) d[ix[r]] = 0.05 * (double)(r - n / 2);
    free(ix);
}

/* Build the harness's weights w1, w2 from one forward, then check. */
/* mode = (order - 1) * 2 + record_last: orders 1-3, the last pass recorded or not. */
static void check(mnas_ctx *ctx, harness *h, size_t n, mnas_tensor *const *in, int mode, const char *what)
{
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *y = h->run(h, tp, in);
    ck_assert_msg(y != NULL, "%s: forward failed: %s", what, mnas_tape_last_error(tp));
    int64_t ys[4];
    ck_assert_int_eq(mnas_tensor_shape(y, ys), MNAS_OK);
    h->w1 = mnas_tensor_randn(ctx, mnas_tensor_ndim(y), ys, 0.0, 1.0);
    h->w2 = mnas_tensor_randn(ctx, mnas_tensor_ndim(y), ys, 0.0, 0.5);
    mnas_tape_free(tp);
    if (mode >= 4 && trimmed()) {
        mnas_tensor_free(h->w1);
        mnas_tensor_free(h->w2);
        return;
    }
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    int order = 1 + mode / 2;
    o.order = order;
    o.record_last = mode % 2;
    double worst = -1;
    mnas_status st = mnas_gradcheck(ctx, reduce_fn, h, n, in, &o, &worst);
    ck_assert_msg(st == MNAS_OK, "%s, order %d%s: %s", what, order, mode % 2 ? ", last pass recorded" : "",
                  mnas_ctx_last_error(ctx));
    ck_assert(worst >= 0.0 && worst <= 1.0);
    mnas_tensor_free(h->w1);
    mnas_tensor_free(h->w2);
}

static mnas_ctx *new_ctx(uint64_t seed)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_ctx_seed(ctx, seed);
    return ctx;
}

/* ---- each op as a whole ---------------------------------------------------- */

static mnas_tensor *run_op(const harness *h, mnas_tape *tp, mnas_tensor *const *in)
{
    return mnas_search_space_op_forward(h->space, h->op, tp, in[0], in + 1, h->stride);
}

/* loop index i: op 1..7, stride 1 or 2 */
static void op_case(int i, int mode)
{
    size_t op = 1 + (size_t)(i / 2);
    int stride = 1 + i % 2;
    mnas_ctx *ctx = new_ctx(7000u + (uint64_t)i);
    mnas_search_space *sp = mnas_search_space_darts(ctx);
    int64_t xs[4] = { 2, 4, 6, 6 };
    mnas_tensor *in[1 + MNAS_OP_MAX_PARAMS];
    in[0] = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    if (op == 1) make_distinct(mnas_tensor_data(in[0]), mnas_tensor_size(in[0])); /* max_pool_3x3 */
    ck_assert_int_eq(mnas_tensor_set_requires_grad(in[0], 1), MNAS_OK);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_search_space_add_op_params(sp, op, 4, stride, p, "", 0), 0);
    size_t n_w = mnas_params_count(p);
    for (size_t k = 0; k < n_w; k++) in[1 + k] = mnas_params_get(p, k);
    harness h = { run_op, sp, op, stride, NULL, NULL, n_w, NULL, NULL, NULL, NULL, NULL };
    char what[64];
    snprintf(what, sizeof what, "%s at stride %d", mnas_search_space_op_name(sp, op), stride);
    check(ctx, &h, 1 + n_w, in, mode, what);
    mnas_tensor_free(in[0]);
    mnas_params_free(p);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
}

START_TEST(op_all_modes) { op_case(_i / 6, _i % 6); }
END_TEST

/* ---- a small cell ------------------------------------------------------------ */

/* mnas_gradcheck takes at most 64 inputs: the cell's weights travel as one
 * flat tensor, cut back into the parameters' shapes on the tape. */
static mnas_tensor *run_cell(const harness *h, mnas_tape *tp, mnas_tensor *const *in)
{
    /* in: s0, s1, the flat weights, alpha (softmaxed per row, as the controller does);
     * under valgrind only alpha */
    mnas_tensor *all[4];
    if (h->fixed) {
        memcpy(all, h->fixed, 3 * sizeof *all);
        all[3] = in[0];
        in = all;
    }
    mnas_tensor *w[MAXIN];
    int64_t off = 0;
    for (size_t k = 0; k < h->n_w; k++) {
        const mnas_tensor *t = mnas_params_get(h->shapes, k);
        int64_t shape[4];
        mnas_tensor_shape(t, shape);
        w[k] = mnas_reshape(tp, mnas_slice(tp, in[2], 0, off, mnas_tensor_size(t)), mnas_tensor_ndim(t), shape);
        off += mnas_tensor_size(t);
    }
    mnas_tensor *alpha = mnas_softmax(tp, in[3]);
    return mnas_cell_forward(h->cell, tp, in[0], in[1], w, alpha);
}

/* loop index: 0 normal, 1 reduction, 2 normal after a reduction */
static void cell_case(int i, int mode)
{
    mnas_ctx *ctx = new_ctx(8000u + (uint64_t)i);
    mnas_search_space *sp = mnas_search_space_darts(ctx);
    /* 2 nodes keep the check quick: 5 edges, all 7 non-zero ops on each */
    mnas_cell *cell = mnas_cell_create_conv(sp, 2, 3, 5, 4, i == 1, i == 2);
    ck_assert_msg(cell != NULL, "%s", mnas_ctx_last_error(ctx));
    int64_t s0s[4] = { 2, 3, i == 2 ? 12 : 6, i == 2 ? 12 : 6 }, s1s[4] = { 2, 5, 6, 6 }, as[2] = { 5, 8 };
    mnas_tensor *in[4];
    in[0] = mnas_tensor_randn(ctx, 4, s0s, 0, 1);
    in[1] = mnas_tensor_randn(ctx, 4, s1s, 0, 1);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_cell_add_params(cell, p, "", 0), 0);
    size_t n_w = mnas_params_count(p);
    ck_assert_uint_le(n_w, MAXIN);
    int64_t total[1] = { mnas_params_numel(p) }, off = 0;
    in[2] = mnas_tensor_zeros(ctx, 1, total);
    for (size_t k = 0; k < n_w; k++) {
        const mnas_tensor *t = mnas_params_get(p, k);
        memcpy(mnas_tensor_data(in[2]) + off, mnas_tensor_cdata(t), (size_t)mnas_tensor_size(t) * sizeof(mnas_real));
        off += mnas_tensor_size(t);
    }
    in[3] = mnas_tensor_randn(ctx, 2, as, 0, 1);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    harness h = { run_cell, sp, 0, 1, cell, NULL, n_w, NULL, NULL, p, NULL, NULL };
    static const char *const kind[3] = { "normal cell", "reduction cell", "cell after a reduction" };
    if (trimmed()) {
        h.fixed = in;
        check(ctx, &h, 1, in + 3, mode, kind[i]);
    } else {
        check(ctx, &h, 4, in, mode, kind[i]);
    }
    for (int k = 0; k < 4; k++) mnas_tensor_free(in[k]);
    mnas_params_free(p);
    mnas_cell_free(cell);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
}

/* Orders 1 and 2, the last pass recorded or not: order 3 of every piece is
 * checked by the op cases, and a cell's order-3 quantity has higher
 * derivatives (batch-norm on small batches) large enough that the central
 * difference's truncation error reaches the tolerance. */
START_TEST(cell_orders_1_2) { cell_case(_i / 4, _i % 4); }
END_TEST

/* ---- the conv supernet and its stacked alpha ---------------------------------- */

static mnas_tensor *run_supernet(const harness *h, mnas_tape *tp, mnas_tensor *const *in)
{
    /* in: x, alpha [2 * edges, ops] (softmaxed per row); weights fixed */
    return mnas_supernet_forward(h->snet, tp, in[0], mnas_params_tensors(h->shapes), mnas_softmax(tp, in[1]));
}

/* Both cells read their rows of one alpha: the reduction cell's rows start
 * at the normal cell's edge count. stride: the stem's (1, 2 or 4). */
static void supernet_case(int mode, int stride)
{
    mnas_ctx *ctx = new_ctx(9500u);
    mnas_search_space *sp = mnas_search_space_darts(ctx);
    mnas_supernet *net = mnas_supernet_create_conv(sp, 1, 2, 2, 3);
    ck_assert_ptr_nonnull(net);
    ck_assert_int_eq(mnas_supernet_set_stem_stride(net, stride), MNAS_OK);
    ck_assert_int_eq(mnas_supernet_stem_stride(net), stride);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_supernet_add_params(net, p, "", 0), 0);
    int64_t side = stride == 1 ? 6 : 9; /* 9: odd sides through the strided stem and the pooling */
    int64_t xs[4] = { 2, 1, side, side }, as[2] = { (int64_t)mnas_supernet_alpha_rows(net), 8 };
    ck_assert_int_eq(as[0], 10);
    mnas_tensor *in[2] = { mnas_tensor_randn(ctx, 4, xs, 0, 1), mnas_tensor_randn(ctx, 2, as, 0, 1) };
    for (int k = 0; k < 2; k++) ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    harness h = { run_supernet, sp, 0, 1, NULL, NULL, 0, NULL, NULL, p, NULL, NULL };
    h.snet = net;
    char what[64];
    snprintf(what, sizeof what, "conv supernet, stem stride %d (x, stacked alpha)", stride);
    check(ctx, &h, 2, in, mode, what);
    for (int k = 0; k < 2; k++) mnas_tensor_free(in[k]);
    mnas_params_free(p);
    mnas_supernet_free(net);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
}

/* The whole supernet at orders 1 and 2, each with the last pass recorded or
 * not (order 3 of every piece is covered by the op and cell cases). */
START_TEST(supernet_orders_1_2)
{
    int stride = (int[]){ 1, 2, 4 }[_i / 4];
    /* trimmed: the strided stems at order 2, last pass recorded, only */
    if (stride != 1 && _i % 4 != 3 && trimmed()) return;
    supernet_case(_i % 4, stride);
}
END_TEST

/* The stem stride is refused on an MLP supernet and for values other than
 * 1, 2, 4, leaving the supernet as it was. */
START_TEST(stem_stride_refusals)
{
    mnas_ctx *ctx = new_ctx(1u);
    mnas_search_space *sp = mnas_search_space_darts(ctx), *mlp = mnas_search_space_mlp(ctx);
    mnas_supernet *net = mnas_supernet_create_conv(sp, 1, 2, 2, 3), *m = mnas_supernet_create_mlp(mlp, 1, 4, 2, 1);
    ck_assert(net && m);
    ck_assert_int_eq(mnas_supernet_set_stem_stride(net, 2), MNAS_OK);
    for (int bad = -1; bad <= 8; bad++) {
        if (bad == 1 || bad == 2 || bad == 4) continue;
        ck_assert_int_eq(mnas_supernet_set_stem_stride(net, bad), MNAS_E_INVALID);
        ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "stride"));
        ck_assert_int_eq(mnas_supernet_stem_stride(net), 2);
    }
    ck_assert_int_eq(mnas_supernet_set_stem_stride(m, 2), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "MLP"));
    ck_assert_int_eq(mnas_supernet_stem_stride(m), 0);
    ck_assert_int_eq(mnas_supernet_stem_stride(NULL), 0);
    ck_assert_int_eq(mnas_supernet_set_stem_stride(NULL, 2), MNAS_E_INVALID);
    mnas_supernet_free(net);
    mnas_supernet_free(m);
    mnas_search_space_free(sp);
    mnas_search_space_free(mlp);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- the conv MAML baseline -------------------------------------------------- */

static mnas_tensor *run_convnet(const harness *h, mnas_tape *tp, mnas_tensor *const *in)
{
    return mnas_convnet_forward(h->net, tp, in[0], in + 1);
}

static void convnet_case(int mode)
{
    mnas_ctx *ctx = new_ctx(9000u);
    mnas_convnet *net = mnas_convnet_create(ctx, 1, 16, 16, 3, 3);
    ck_assert_ptr_nonnull(net);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_convnet_add_params(net, p, "", 0), 0);
    mnas_tensor *in[1 + 18];
    int64_t xs[4] = { 3, 1, 16, 16 };
    in[0] = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(in[0], 1), MNAS_OK);
    for (size_t k = 0; k < 18; k++) in[1 + k] = mnas_params_get(p, k);
    harness h = { run_convnet, NULL, 0, 1, NULL, net, 18, NULL, NULL, NULL, NULL, NULL };
    check(ctx, &h, 19, in, mode, "conv MAML net");
    mnas_tensor_free(in[0]);
    mnas_params_free(p);
    mnas_convnet_free(net);
    mnas_ctx_free(ctx);
}

START_TEST(convnet_orders_1_2) { convnet_case(_i); }
END_TEST

int main(void)
{
    Suite *s = suite_create("darts_f64");
    TCase *ops = tcase_create("ops");
    tcase_set_timeout(ops, 600);
    tcase_add_loop_test(ops, op_all_modes, 0, 14 * 6);
    suite_add_tcase(s, ops);
    TCase *cells = tcase_create("cells");
    tcase_set_timeout(cells, 600);
    tcase_add_loop_test(cells, cell_orders_1_2, 0, 3 * 4);
    suite_add_tcase(s, cells);
    TCase *nets = tcase_create("networks");
    tcase_set_timeout(nets, 600);
    tcase_add_loop_test(nets, supernet_orders_1_2, 0, 3 * 4);
    tcase_add_test(nets, stem_stride_refusals);
    tcase_add_loop_test(nets, convnet_orders_1_2, 0, 4);
    suite_add_tcase(s, nets);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
