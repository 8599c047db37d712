/* Search spaces, cells, the toy supernet and child networks: registering an
 * op of one's own, the mixed-edge arithmetic, pruning under a decoded
 * alpha, and the child network equal to the supernet under one-hot alpha. */
#include <check.h>
#include <math.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_tape *tp;

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 31;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
}

static void teardown(void)
{
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}

/* An op defined here: scaled tanh, y = s * tanh(x), one parameter s [1]. */
static int declare_calls;
static mnas_status stanh_declare(void *user, int64_t width, mnas_param_decl *d)
{
    (void)width;
    declare_calls += *(int *)user;
    int64_t one[1] = { 1 };
    return mnas_param_decl_add(d, "s", 1, one, MNAS_INIT_CONSTANT, 0.5);
}

static mnas_tensor *stanh_forward(void *user, mnas_tape *t, mnas_tensor *x, mnas_tensor *const *w, int stride)
{
    (void)user;
    (void)stride;
    return mnas_mul(t, mnas_tanh(t, x), w[0]);
}

START_TEST(register_own_op)
{
    mnas_search_space *s = mnas_search_space_create(ctx);
    int one = 1;
    ck_assert_int_eq(mnas_search_space_add_op(s, "stanh", 0, stanh_declare, stanh_forward, &one), 0);
    ck_assert_int_eq(mnas_search_space_add_op(s, "none", 1, NULL, NULL, NULL), 1);
    /* bad registrations */
    ck_assert_int_eq(mnas_search_space_add_op(s, "stanh", 0, NULL, stanh_forward, NULL), -1);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "exists"));
    ck_assert_int_eq(mnas_search_space_add_op(s, "bad name", 0, NULL, stanh_forward, NULL), -1);
    ck_assert_int_eq(mnas_search_space_add_op(s, "", 0, NULL, stanh_forward, NULL), -1);
    ck_assert_int_eq(mnas_search_space_add_op(s, "noforward", 0, NULL, NULL, NULL), -1);
    ck_assert_uint_eq(mnas_search_space_num_ops(s), 2);
    ck_assert_int_eq(mnas_search_space_find_op(s, "none"), 1);
    ck_assert_int_eq(mnas_search_space_op_is_zero(s, 1), 1);

    declare_calls = 0;
    mnas_cell *cell = mnas_cell_create_mlp(s, 2, 4);
    ck_assert_ptr_nonnull(cell);
    ck_assert_int_eq(declare_calls, 1); /* declared once per op, not per edge */
    ck_assert_uint_eq(mnas_cell_num_edges(cell), 5);
    ck_assert_uint_eq(mnas_cell_num_params(cell), 5); /* one s per edge */
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_cell_add_params(cell, p, "c.", 0), 0);
    ck_assert_int_eq(mnas_params_find(p, "c.e3.stanh.s"), 3);
    /* forward: node0 = a0 t(s0) + a1 t(s1) (edges 0, 1); node1 = edges 2..4;
     * out = mean of the nodes, with every s = 0.5 */
    int64_t xs[2] = { 3, 4 }, as[2] = { 5, 2 };
    mnas_tensor *x0 = mnas_tensor_randn(ctx, 2, xs, 0, 1), *x1 = mnas_tensor_randn(ctx, 2, xs, 0, 1);
    mnas_real av[10] = { 0.3, 0.7, 0.6, 0.4, 1.2, 0.1, -0.5, 9, 2.0, 5 };
    mnas_tensor *alpha = mnas_tape_tensor(tp, 2, as, av);
    mnas_tensor *y = mnas_cell_forward(cell, tp, x0, x1, mnas_params_tensors(p), alpha);
    ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
    for (int i = 0; i < 12; i++) {
        double t0 = 0.5 * tanh(mnas_tensor_data(x0)[i]), t1 = 0.5 * tanh(mnas_tensor_data(x1)[i]);
        double n0 = 0.3 * t0 + 0.6 * t1;
        double n1 = 1.2 * t0 - 0.5 * t1 + 2.0 * 0.5 * tanh(n0);
        ck_assert_msg(fabs(mnas_tensor_data(y)[i] - (n0 + n1) / 2) < 1e-5, "%g vs %g", mnas_tensor_data(y)[i],
                      (n0 + n1) / 2);
    }
    /* its parameters get gradients through the cell */
    mnas_tensor *g[5];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, y), 5, mnas_params_tensors(p), g, 0), MNAS_OK);
    for (int e = 0; e < 5; e++) ck_assert(fabs(mnas_tensor_data(g[e])[0]) > 1e-6);
    /* wrong alpha shape / weights */
    ck_assert_ptr_null(mnas_cell_forward(cell, tp, x0, x1, mnas_params_tensors(p), x0));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tensor_free(x0);
    mnas_tensor_free(x1);
    mnas_params_free(p);
    mnas_cell_free(cell);
    mnas_search_space_free(s);
}
END_TEST

/* Ops of the user's that return the wrong shape: blamed on the op, by name,
 * where it returns (not on a later op that reads its output). */
static mnas_tensor *widen_forward(void *user, mnas_tape *t, mnas_tensor *x, mnas_tensor *const *w, int stride)
{
    (void)user, (void)w, (void)stride;
    mnas_tensor *two[2] = { x, x };
    return mnas_concat(t, 2, two, 1);
}

static mnas_tensor *nostride_forward(void *user, mnas_tape *t, mnas_tensor *x, mnas_tensor *const *w, int stride)
{
    (void)user, (void)w, (void)stride;
    return mnas_tanh(t, x); /* ignores stride 2 */
}

START_TEST(custom_op_shape_checked_where_it_returns)
{
    mnas_search_space *s = mnas_search_space_create(ctx);
    ck_assert_int_eq(mnas_search_space_add_op(s, "widen", 0, NULL, widen_forward, NULL), 0);
    ck_assert_int_eq(mnas_search_space_add_op(s, "nostride", 0, NULL, nostride_forward, NULL), 1);
    int64_t xs[2] = { 3, 4 }, as[2] = { 2, 2 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 2, xs, 0, 1);
    /* directly */
    ck_assert_ptr_null(mnas_search_space_op_forward(s, 0, tp, x, NULL, 1));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    const char *msg = mnas_tape_last_error(tp);
    ck_assert_msg(strstr(msg, "mnas_search_space_op_forward") && strstr(msg, "\"widen\"") && strstr(msg, "[3, 8]") &&
                      strstr(msg, "[3, 4]"),
                  "%s", msg);
    mnas_tape_reset(tp);
    /* stride 2 on a conv state [1, 2, 5, 6] needs [1, 2, 3, 3] */
    int64_t cs[4] = { 1, 2, 5, 6 };
    mnas_tensor *c = mnas_tensor_randn(ctx, 4, cs, 0, 1);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(s, 1, tp, c, NULL, 1));
    ck_assert_ptr_null(mnas_search_space_op_forward(s, 1, tp, c, NULL, 2));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    msg = mnas_tape_last_error(tp);
    ck_assert_msg(strstr(msg, "\"nostride\"") && strstr(msg, "stride 2") && strstr(msg, "[1, 2, 3, 3]"), "%s", msg);
    mnas_tape_reset(tp);
    /* inside a cell: the cell's call names the op */
    mnas_cell *cell = mnas_cell_create_mlp(s, 1, 4);
    ck_assert_ptr_nonnull(cell);
    mnas_real av[4] = { 0.5, 0.5, 0.5, 0.5 };
    mnas_tensor *alpha = mnas_tape_tensor(tp, 2, as, av);
    mnas_tensor *none[1] = { NULL }; /* the ops have no parameters */
    ck_assert_ptr_null(mnas_cell_forward(cell, tp, x, x, none, alpha));
    ck_assert_msg(mnas_tape_status(tp) == MNAS_E_SHAPE, "%s", mnas_tape_last_error(tp));
    msg = mnas_tape_last_error(tp);
    ck_assert_msg(strstr(msg, "mnas_cell_forward") && strstr(msg, "\"widen\""), "%s", msg);
    /* the objects stay usable: a good call afterwards works */
    mnas_tape_reset(tp);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(s, 1, tp, x, NULL, 1));
    mnas_cell_free(cell);
    mnas_tensor_free(c);
    mnas_tensor_free(x);
    mnas_search_space_free(s);
}
END_TEST

START_TEST(mlp_space_and_supernet_layout)
{
    mnas_search_space *s = mnas_search_space_mlp(ctx);
    ck_assert_uint_eq(mnas_search_space_num_ops(s), 3);
    ck_assert_str_eq(mnas_search_space_op_name(s, 0), "linear");
    ck_assert_str_eq(mnas_search_space_op_name(s, 1), "skip");
    ck_assert_int_eq(mnas_search_space_op_is_zero(s, 2), 1);
    mnas_supernet *net = mnas_supernet_create_mlp(s, 1, 50, 3, 1);
    ck_assert_ptr_nonnull(net);
    const mnas_cell *cell = mnas_supernet_cell(net);
    ck_assert_uint_eq(mnas_cell_num_edges(cell), 9); /* the paper's toy: 2 + 3 + 4 */
    ck_assert_int_eq(mnas_cell_edge(cell, 2, 3), 8);
    ck_assert_int_eq(mnas_cell_edge(cell, 2, 4), -1);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_supernet_add_params(net, p, "", 0), 0);
    ck_assert_uint_eq(mnas_params_count(p), mnas_supernet_num_params(net));
    ck_assert_uint_eq(mnas_params_count(p), 4 + 9 * 4);
    ck_assert_int_eq(mnas_params_numel(p), 100 + 9 * (2500 + 50 + 100) + 51);
    ck_assert_int_ge(mnas_params_find(p, "cell.e8.linear.bn_g"), 0);
    ck_assert_int_eq(mnas_supernet_add_params(net, p, "", 0), -1); /* names taken: refused, set unchanged */
    ck_assert_uint_eq(mnas_params_count(p), 40);
    /* bad constructions */
    ck_assert_ptr_null(mnas_cell_create_mlp(s, 0, 8));
    ck_assert_ptr_null(mnas_cell_create_mlp(s, 3, 0));
    ck_assert_ptr_null(mnas_supernet_create_mlp(s, 0, 8, 3, 1));
    mnas_params_free(p);
    mnas_supernet_free(net);
    mnas_search_space_free(s);
}
END_TEST

/* The decoded child equals the supernet under the genotype's one-hot alpha,
 * bit for bit, and pruning (alpha without gradient) changes nothing. */
START_TEST(child_equals_supernet_under_onehot)
{
    mnas_search_space *s = mnas_search_space_mlp(ctx);
    mnas_supernet *net = mnas_supernet_create_mlp(s, 1, 16, 3, 1);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_supernet_add_params(net, p, "net.", 0), 0);
    const mnas_cell *cell = mnas_supernet_cell(net);
    int64_t xs[2] = { 10, 1 }, as[2] = { 9, 3 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 2, xs, 0, 2);
    for (int trial = 0; trial < 20; trial++) {
        mnas_tape_reset(tp);
        mnas_tensor *logits = mnas_tensor_randn(ctx, 2, as, 0, 1);
        mnas_genotype *g = mnas_genotype_derive(cell, logits);
        ck_assert_ptr_nonnull(g);
        mnas_real oh[27];
        ck_assert_int_eq(mnas_genotype_onehot(g, cell, oh), MNAS_OK);
        mnas_tensor *a = mnas_tape_tensor(tp, 2, as, oh);
        mnas_tensor *ys = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), a);
        ck_assert_ptr_nonnull(ys);
        /* the same alpha requiring a gradient: every op computed, same value */
        mnas_tensor *ag = mnas_tape_tensor(tp, 2, as, oh);
        mnas_tensor_set_requires_grad(ag, 1);
        mnas_tensor *yg = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), ag);
        ck_assert(memcmp(mnas_tensor_data(ys), mnas_tensor_data(yg), 10 * sizeof(mnas_real)) == 0);
        /* the child, with values copied over by name */
        mnas_child *c = mnas_child_create(net, g);
        ck_assert_ptr_nonnull(c);
        mnas_params *cp = mnas_params_create(ctx);
        ck_assert_int_eq(mnas_child_add_params(c, cp, "net.", 0), 0);
        ck_assert_uint_eq(mnas_params_count(cp), mnas_child_num_params(c));
        ck_assert_int_eq(mnas_params_copy_matching(cp, p), (int)mnas_params_count(cp));
        mnas_tensor *yc = mnas_child_forward(c, tp, x, mnas_params_tensors(cp));
        ck_assert_msg(yc != NULL, "%s", mnas_tape_last_error(tp));
        ck_assert_msg(memcmp(mnas_tensor_data(ys), mnas_tensor_data(yc), 10 * sizeof(mnas_real)) == 0,
                      "trial %d: child differs from the supernet", trial);
        /* and a different genotype's child differs (the test can fail) */
        mnas_params_free(cp);
        mnas_child_free(c);
        mnas_genotype_free(g);
        mnas_tensor_free(logits);
    }
    /* a genotype of another node count does not decode to this supernet */
    mnas_genotype *two = mnas_genotype_parse(ctx, s, "linear@0,skip@1;skip@0,linear@2");
    ck_assert_ptr_nonnull(two);
    ck_assert_ptr_null(mnas_child_create(net, two));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "nodes"));
    ck_assert_ptr_null(mnas_child_create(net, NULL));
    mnas_genotype_free(two);
    mnas_tensor_free(x);
    mnas_params_free(p);
    mnas_supernet_free(net);
    mnas_search_space_free(s);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("nas");
    TCase *tc = tcase_create("nas");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, register_own_op);
    tcase_add_test(tc, custom_op_shape_checked_where_it_returns);
    tcase_add_test(tc, mlp_space_and_supernet_layout);
    tcase_add_test(tc, child_equals_supernet_under_onehot);
    suite_add_tcase(su, tc);
    SRunner *r = srunner_create(su);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
