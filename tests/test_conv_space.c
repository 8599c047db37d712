/* The DARTS conv search space, conv cells and supernet, genotype pairs and
 * conv child networks, and the conv MAML baseline: registry order, shapes
 * at stride 1 and 2, parameter layouts, the (normal, reduce) text form, the
 * child equal to the supernet under one-hot alpha, and bad input. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_tape *tp;
static mnas_search_space *sp;

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 17;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    sp = mnas_search_space_darts(ctx);
    ck_assert_ptr_nonnull(sp);
}

static void teardown(void)
{
    mnas_search_space_free(sp);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}

static const char *const darts_ops[8] = { "none",         "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                          "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5" };

static void assert_shape(const mnas_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mnas_tensor_ndim(t), 4);
    int64_t want[4] = { a, b, c, d };
    for (int i = 0; i < 4; i++)
        ck_assert_msg(mnas_tensor_dim(t, i) == want[i], "dim %d is %lld, want %lld", i, (long long)mnas_tensor_dim(t, i),
                      (long long)want[i]);
}

START_TEST(registry_in_order)
{
    ck_assert_uint_eq(mnas_search_space_num_ops(sp), 8);
    for (size_t o = 0; o < 8; o++) {
        ck_assert_str_eq(mnas_search_space_op_name(sp, o), darts_ops[o]);
        ck_assert_int_eq(mnas_search_space_op_is_zero(sp, o), o == 0);
        ck_assert_int_eq(mnas_search_space_find_op(sp, darts_ops[o]), (int)o);
    }
    /* parameters per op at C = 4: none and pools have none, skip only at stride 2 */
    const int n1[8] = { 0, 0, 0, 0, 4, 4, 2, 2 }, n2[8] = { 0, 0, 0, 2, 4, 4, 2, 2 };
    for (size_t o = 0; o < 8; o++) {
        ck_assert_int_eq(mnas_search_space_op_num_params(sp, o, 4, 1), n1[o]);
        ck_assert_int_eq(mnas_search_space_op_num_params(sp, o, 4, 2), n2[o]);
    }
    ck_assert_int_eq(mnas_search_space_op_num_params(sp, 3, 5, 2), -1); /* odd width, factorized reduce */
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "even"));
    ck_assert_int_eq(mnas_search_space_op_num_params(sp, 3, 5, 1), 0);
    ck_assert_int_eq(mnas_search_space_op_num_params(sp, 8, 4, 1), -1);
    ck_assert_int_eq(mnas_search_space_op_num_params(sp, 4, 4, 3), -1);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "stride"));
}
END_TEST

/* Every op keeps H x W at stride 1 and halves it (rounding up) at stride 2,
 * on even and odd sizes. */
START_TEST(op_shapes)
{
    const int64_t sizes[2] = { 6, 7 };
    for (int si = 0; si < 2; si++)
        for (size_t o = 1; o < 8; o++)
            for (int stride = 1; stride <= 2; stride++) {
                mnas_tape_reset(tp);
                int64_t H = sizes[si], xs[4] = { 2, 4, H, H };
                mnas_tensor *x = mnas_tape_tensor(tp, 4, xs, NULL);
                mnas_real *d = mnas_tensor_data(x);
                for (int i = 0; i < 2 * 4 * H * H; i++) d[i] = sin(0.37 * i);
                mnas_params *p = mnas_params_create(ctx);
                ck_assert_int_ge(mnas_search_space_add_op_params(sp, o, 4, stride, p, "op.", 0), 0);
                mnas_tensor *y = mnas_search_space_op_forward(sp, o, tp, x, mnas_params_tensors(p), stride);
                ck_assert_msg(y != NULL, "%s: %s", darts_ops[o], mnas_tape_last_error(tp));
                int64_t Ho = stride == 1 ? H : (H + 1) / 2;
                assert_shape(y, 2, 4, Ho, Ho);
                for (int64_t i = 0; i < mnas_tensor_size(y); i++) ck_assert(isfinite(mnas_tensor_data(y)[i]));
                mnas_params_free(p);
            }
    /* the zero op has no forward; a 2-D input is refused */
    int64_t xs[4] = { 2, 4, 6, 6 }, fs[2] = { 2, 4 };
    mnas_tensor *x = mnas_tape_tensor(tp, 4, xs, NULL);
    ck_assert_ptr_null(mnas_search_space_op_forward(sp, 0, tp, x, NULL, 1));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "zero op"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_search_space_op_forward(sp, 1, tp, mnas_tape_tensor(tp, 2, fs, NULL), NULL, 1));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_reset(tp);
    /* weights of the wrong op */
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_search_space_add_op_params(sp, 6, 4, 1, p, "", 0), 0);
    x = mnas_tape_tensor(tp, 4, xs, NULL);
    ck_assert_ptr_null(mnas_search_space_op_forward(sp, 4, tp, x, mnas_params_tensors(p), 1));
    ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
    mnas_params_free(p);
}
END_TEST

/* The conv ops of an edge share the ReLU of its input: a second conv op on
 * the same recorded state adds one node fewer than the first, a new state
 * or a new recording gets its own ReLU, a persistent input is never shared,
 * and the shared graph's gradient is the sum of the separate ones. */
START_TEST(conv_ops_share_input_relu)
{
    const int dil3 = 6, dil5 = 7, sep3 = 4;
    int64_t xs[4] = { 2, 4, 6, 6 };
    mnas_real buf[2 * 4 * 6 * 6];
    for (int i = 0; i < 2 * 4 * 36; i++) buf[i] = sin(0.37 * i + 0.1);
    mnas_tensor *leaf = mnas_tensor_from_data(ctx, 4, xs, buf);
    ck_assert_ptr_nonnull(leaf);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(leaf, 1), MNAS_OK);
    mnas_params *p = mnas_params_create(ctx);
    int i3 = mnas_search_space_add_op_params(sp, dil3, 4, 1, p, "a.", 0);
    int i5 = mnas_search_space_add_op_params(sp, dil5, 4, 1, p, "b.", 0);
    int is = mnas_search_space_add_op_params(sp, sep3, 4, 1, p, "c.", 0);
    ck_assert(i3 >= 0 && i5 >= 0 && is >= 0);
    mnas_tensor *const *w = mnas_params_tensors(p);

    mnas_tape_reset(tp);
    mnas_tensor *x = mnas_scale(tp, leaf, 1.0);
    size_t n0 = mnas_tape_num_nodes(tp);
    mnas_tensor *a = mnas_search_space_op_forward(sp, dil3, tp, x, w + i3, 1);
    size_t n1 = mnas_tape_num_nodes(tp);
    mnas_tensor *b = mnas_search_space_op_forward(sp, dil5, tp, x, w + i5, 1);
    size_t n2 = mnas_tape_num_nodes(tp);
    ck_assert(a && b);
    ck_assert_uint_eq(n2 - n1, n1 - n0 - 1);
    /* sep_conv shares its first ReLU, not its second one */
    mnas_tensor *c = mnas_search_space_op_forward(sp, sep3, tp, x, w + is, 1);
    size_t n3 = mnas_tape_num_nodes(tp);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(n3 - n2, 2 * (n1 - n0) - 1);
    /* another state: its own ReLU (dil3's weights are now known leaves,
     * so a full dil_conv adds the first call's nodes less its 2 leaves) */
    mnas_tensor *x2 = mnas_scale(tp, leaf, 2.0);
    size_t m0 = mnas_tape_num_nodes(tp);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(sp, dil3, tp, x2, w + i3, 1));
    size_t m1 = mnas_tape_num_nodes(tp);
    ck_assert_uint_eq(m1 - m0, n1 - n0 - 2);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(sp, dil3, tp, x2, w + i3, 1));
    ck_assert_uint_eq(mnas_tape_num_nodes(tp) - m1, m1 - m0 - 1);
    /* the shared graph's gradient: the three ops' own gradients summed */
    mnas_tensor *y = mnas_add(tp, mnas_add(tp, mnas_sum(tp, a), mnas_sum(tp, b)), mnas_sum(tp, c));
    mnas_tensor *g = NULL;
    ck_assert_int_eq(mnas_grad(tp, y, 1, &leaf, &g, 0), MNAS_OK);
    double *shared = malloc(sizeof(double) * 2 * 4 * 36), *sep = calloc(2 * 4 * 36, sizeof(double));
    ck_assert(shared && sep);
    for (int i = 0; i < 2 * 4 * 36; i++) shared[i] = mnas_tensor_data(g)[i];
    const int ops[3] = { dil3, dil5, sep3 }, at[3] = { i3, i5, is };
    for (int k = 0; k < 3; k++) {
        mnas_tape_reset(tp);
        mnas_tensor *xk = mnas_scale(tp, leaf, 1.0);
        mnas_tensor *yk = mnas_sum(tp, mnas_search_space_op_forward(sp, ops[k], tp, xk, w + at[k], 1));
        mnas_tensor *gk = NULL;
        ck_assert_int_eq(mnas_grad(tp, yk, 1, &leaf, &gk, 0), MNAS_OK);
        for (int i = 0; i < 2 * 4 * 36; i++) sep[i] += mnas_tensor_data(gk)[i];
    }
    double worst = 0, scale = 1e-3;
    for (int i = 0; i < 2 * 4 * 36; i++) {
        if (fabs(sep[i]) > scale) scale = fabs(sep[i]);
        if (fabs(shared[i] - sep[i]) > worst) worst = fabs(shared[i] - sep[i]);
    }
    ck_assert_msg(worst <= 1e-4 * scale, "shared-ReLU gradient differs by %g (scale %g)", worst, scale);
    /* a new recording does not reuse the old ReLU */
    mnas_tape_reset(tp);
    x = mnas_scale(tp, leaf, 1.0);
    size_t r0 = mnas_tape_num_nodes(tp);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(sp, dil3, tp, x, w + i3, 1));
    ck_assert_uint_eq(mnas_tape_num_nodes(tp) - r0, n1 - n0);
    /* a persistent input (which the caller may rewrite) is never shared */
    mnas_tape_reset(tp);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(sp, dil3, tp, leaf, w + i3, 1));
    size_t q1 = mnas_tape_num_nodes(tp);
    ck_assert_ptr_nonnull(mnas_search_space_op_forward(sp, dil3, tp, leaf, w + i3, 1));
    ck_assert_uint_eq(mnas_tape_num_nodes(tp) - q1, m1 - m0);
    free(shared);
    free(sep);
    mnas_params_free(p);
    mnas_tensor_free(leaf);
}
END_TEST

/* Normal cells keep H x W, reduction cells halve it; the output
 * concatenates the nodes; after a reduction, s0 is twice s1's size. */
START_TEST(cell_shapes_and_params)
{
    mnas_cell *nc = mnas_cell_create_conv(sp, 4, 6, 5, 4, 0, 0);
    mnas_cell *rc = mnas_cell_create_conv(sp, 4, 6, 5, 4, 1, 0);
    mnas_cell *ac = mnas_cell_create_conv(sp, 4, 6, 5, 4, 0, 1); /* after a reduction */
    ck_assert_ptr_nonnull(nc);
    ck_assert_ptr_nonnull(rc);
    ck_assert_ptr_nonnull(ac);
    ck_assert_int_eq(mnas_cell_is_conv(nc), 1);
    ck_assert_int_eq(mnas_cell_is_reduction(nc), 0);
    ck_assert_int_eq(mnas_cell_is_reduction(rc), 1);
    ck_assert_int_eq(mnas_cell_out_width(nc), 16);
    ck_assert_uint_eq(mnas_cell_num_edges(nc), 14);
    /* per edge: skip 0 (2 at stride 2), sep 4 + 4, dil 2 + 2 = 12 */
    ck_assert_uint_eq(mnas_cell_num_params(nc), 2 + 14 * 12);
    ck_assert_uint_eq(mnas_cell_num_params(rc), 2 + 14 * 12 + 8 * 2); /* 8 edges from the inputs */
    ck_assert_uint_eq(mnas_cell_num_params(ac), 3 + 14 * 12);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_cell_add_params(rc, p, "r.", 0), 0);
    ck_assert_uint_eq(mnas_params_count(p), mnas_cell_num_params(rc));
    ck_assert_str_eq(mnas_params_name(p, 0), "r.pre0.w");
    ck_assert_str_eq(mnas_params_name(p, 1), "r.pre1.w");
    ck_assert_int_ge(mnas_params_find(p, "r.e1.skip_connect.fr_w2"), 0);
    ck_assert_int_lt(mnas_params_find(p, "r.e4.skip_connect.fr_w1"), 0); /* node 1, input 2: stride 1 */
    ck_assert_int_ge(mnas_params_find(p, "r.e13.dil_conv_5x5.pw1"), 0);
    mnas_params *pa = mnas_params_create(ctx), *pn = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_cell_add_params(ac, pa, "a.", 0), 0);
    ck_assert_str_eq(mnas_params_name(pa, 0), "a.pre0.w1");
    ck_assert_str_eq(mnas_params_name(pa, 1), "a.pre0.w2");
    ck_assert_int_eq(mnas_cell_add_params(nc, pn, "n.", 0), 0);

    int64_t s0s[4] = { 2, 6, 6, 6 }, s1s[4] = { 2, 5, 6, 6 }, s1h[4] = { 2, 5, 3, 3 }, as[2] = { 14, 8 };
    mnas_tensor *s0 = mnas_tensor_randn(ctx, 4, s0s, 0, 1), *s1 = mnas_tensor_randn(ctx, 4, s1s, 0, 1);
    mnas_tensor *s1_half = mnas_tensor_randn(ctx, 4, s1h, 0, 1);
    mnas_tensor *alpha = mnas_tensor_rand(ctx, 2, as, 0, 1);
    assert_shape(mnas_cell_forward(nc, tp, s0, s1, mnas_params_tensors(pn), alpha), 2, 16, 6, 6);
    assert_shape(mnas_cell_forward(rc, tp, s0, s1, mnas_params_tensors(p), alpha), 2, 16, 3, 3);
    mnas_tensor *ya = mnas_cell_forward(ac, tp, s0, s1_half, mnas_params_tensors(pa), alpha);
    ck_assert_msg(ya != NULL, "%s", mnas_tape_last_error(tp));
    assert_shape(ya, 2, 16, 3, 3);

    /* bad input: wrong channels, spatial mismatch, wrong alpha, NULLs */
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, s1, s0, mnas_params_tensors(pn), alpha));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "[N, 6, H0, W0]"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, s0, s1_half, mnas_params_tensors(pn), alpha));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "must match"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(ac, tp, s0, s1, mnas_params_tensors(pa), alpha));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "halving"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, s0, s1, mnas_params_tensors(pn), s0));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, s0, s1, mnas_params_tensors(p), alpha)); /* another cell's weights */
    ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, NULL, s1, mnas_params_tensors(pn), alpha));
    ck_assert_ptr_null(mnas_cell_forward(nc, tp, s0, s1, NULL, alpha));
    mnas_tape_reset(tp);
    /* bad constructions */
    ck_assert_ptr_null(mnas_cell_create_conv(sp, 4, 6, 5, 5, 1, 0)); /* odd C in a reduction cell */
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "even width"));
    mnas_cell *odd = mnas_cell_create_conv(sp, 4, 6, 5, 5, 0, 0); /* fine in a normal cell */
    ck_assert_ptr_nonnull(odd);
    mnas_cell_free(odd);
    ck_assert_ptr_null(mnas_cell_create_conv(sp, 4, 6, 5, 5, 0, 1)); /* odd C after a reduction */
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "even C"));
    ck_assert_ptr_null(mnas_cell_create_conv(sp, 0, 6, 5, 4, 0, 0));
    ck_assert_ptr_null(mnas_cell_create_conv(sp, 4, 0, 5, 4, 0, 0));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "input channels"));
    ck_assert_ptr_null(mnas_cell_create_conv(NULL, 4, 6, 5, 4, 0, 0));

    mnas_tensor_free(s0);
    mnas_tensor_free(s1);
    mnas_tensor_free(s1_half);
    mnas_tensor_free(alpha);
    mnas_params_free(p);
    mnas_params_free(pa);
    mnas_params_free(pn);
    mnas_cell_free(nc);
    mnas_cell_free(rc);
    mnas_cell_free(ac);
}
END_TEST

START_TEST(supernet_layout)
{
    mnas_supernet *net = mnas_supernet_create_conv(sp, 1, 16, 4, 5);
    ck_assert_ptr_nonnull(net);
    ck_assert_int_eq(mnas_supernet_is_conv(net), 1);
    ck_assert_int_eq(mnas_supernet_num_cells(net), 2);
    ck_assert_uint_eq(mnas_supernet_alpha_rows(net), 28);
    const mnas_cell *nc = mnas_supernet_cell_at(net, 0), *rc = mnas_supernet_cell_at(net, 1);
    ck_assert_ptr_eq(mnas_supernet_cell(net), nc);
    ck_assert_ptr_null(mnas_supernet_cell_at(net, 2));
    ck_assert_int_eq(mnas_cell_is_reduction(nc), 0);
    ck_assert_int_eq(mnas_cell_is_reduction(rc), 1);
    ck_assert_int_eq(mnas_cell_out_width(rc), 4 * 32);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_supernet_add_params(net, p, "net.", 0), 0);
    ck_assert_uint_eq(mnas_params_count(p), mnas_supernet_num_params(net));
    ck_assert_uint_eq(mnas_params_count(p), 3 + 2 + 14 * 12 + 2 + 14 * 12 + 8 * 2 + 2);
    ck_assert_str_eq(mnas_params_name(p, 0), "net.stem.w");
    ck_assert_str_eq(mnas_params_name(p, 3), "net.normal.pre0.w");
    ck_assert_str_eq(mnas_params_name(p, mnas_params_count(p) - 1), "net.head.b");
    /* element count: stem 48*9 + 2*48; normal pre 2*16*48, edges 14*(sep3 800 +
     * sep5 1312 + dil3 400 + dil5 656); reduce pre 32*48 + 32*64, edges
     * 14*(2624 + 3648 + 1312 + 1824) + 8*(2*16*32); head 5*128 + 5 */
    int64_t want = 48 * 9 + 96 + 2 * 16 * 48 + 14 * 3168 + 32 * 48 + 32 * 64 + 14 * 9408 + 8 * 1024 + 645;
    ck_assert_int_eq(mnas_params_numel(p), want);
    mnas_params *q = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_supernet_add_params(net, q, NULL, 0), 0);
    ck_assert_int_eq(mnas_params_numel(q), want);
    mnas_params_free(q);

    /* a 5-way 1-shot batch */
    int64_t xs[4] = { 5, 1, 28, 28 }, as[2] = { 28, 8 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    mnas_tensor *alpha = mnas_tensor_rand(ctx, 2, as, 0, 1);
    mnas_tensor *y = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), alpha);
    ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
    ck_assert_int_eq(mnas_tensor_ndim(y), 2);
    ck_assert_int_eq(mnas_tensor_dim(y, 0), 5);
    ck_assert_int_eq(mnas_tensor_dim(y, 1), 5);
    /* alpha of one cell only, wrong input channels, NULL weights */
    int64_t as1[2] = { 14, 8 }, xs3[4] = { 5, 3, 28, 28 };
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), mnas_tape_tensor(tp, 2, as1, NULL)));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "[28, 8]"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_supernet_forward(net, tp, mnas_tape_tensor(tp, 4, xs3, NULL), mnas_params_tensors(p), alpha));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "[N, 1, H, W]"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_supernet_forward(net, tp, x, NULL, alpha));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_INVALID);
    mnas_tape_reset(tp);
    /* bad constructions */
    ck_assert_ptr_null(mnas_supernet_create_conv(sp, 0, 16, 4, 5));
    ck_assert_ptr_null(mnas_supernet_create_conv(sp, 1, 0, 4, 5));
    ck_assert_ptr_null(mnas_supernet_create_conv(sp, 1, 16, 0, 5));
    ck_assert_ptr_null(mnas_supernet_create_conv(sp, 1, 16, 4, 0));
    ck_assert_ptr_null(mnas_supernet_create_conv(NULL, 1, 16, 4, 5));
    /* the MLP supernet answers the queries too */
    mnas_search_space *ms = mnas_search_space_mlp(ctx);
    mnas_supernet *mn = mnas_supernet_create_mlp(ms, 1, 8, 3, 1);
    ck_assert_int_eq(mnas_supernet_is_conv(mn), 0);
    ck_assert_int_eq(mnas_supernet_num_cells(mn), 1);
    ck_assert_uint_eq(mnas_supernet_alpha_rows(mn), 9);
    ck_assert_int_eq(mnas_cell_is_conv(mnas_supernet_cell(mn)), 0);
    mnas_supernet_free(mn);
    mnas_search_space_free(ms);
    mnas_tensor_free(x);
    mnas_tensor_free(alpha);
    mnas_params_free(p);
    mnas_supernet_free(net);
}
END_TEST

static char *to_string(const mnas_genotype *g)
{
    int64_t n = mnas_genotype_to_string(g, NULL, 0);
    ck_assert_int_ge(n, 0);
    char *s = malloc((size_t)n + 1);
    ck_assert_int_eq(mnas_genotype_to_string(g, s, (size_t)n + 1), n);
    return s;
}

/* derive -> print -> parse -> print over random alpha; one-hot -> derive. */
START_TEST(genotype_pair_round_trip)
{
    mnas_supernet *net = mnas_supernet_create_conv(sp, 1, 4, 4, 5);
    size_t rows = mnas_supernet_alpha_rows(net);
    int64_t as[2] = { (int64_t)rows, 8 };
    for (int trial = 0; trial < 50; trial++) {
        mnas_tensor *a = mnas_tensor_randn(ctx, 2, as, 0, 1);
        mnas_genotype *g = mnas_genotype_derive_supernet(net, a);
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(mnas_genotype_num_cells(g), 2);
        ck_assert_int_eq(mnas_genotype_num_nodes(g), 4);
        char *s = to_string(g);
        ck_assert_msg(strncmp(s, "normal: ", 8) == 0 && strstr(s, " | reduce: "), "%s", s);
        mnas_genotype *h = mnas_genotype_parse(ctx, sp, s);
        ck_assert_msg(h != NULL, "%s: %s", s, mnas_ctx_last_error(ctx));
        ck_assert_int_eq(mnas_genotype_equal(g, h), 1);
        char *s2 = to_string(h);
        ck_assert_str_eq(s, s2);
        /* the parts are the cells derived one by one */
        mnas_genotype *n0 = mnas_genotype_part(g, 0), *r0 = mnas_genotype_part(g, 1);
        mnas_tensor *an = mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 14, 8 });
        mnas_tensor *ar = mnas_tensor_zeros(ctx, 2, (int64_t[2]){ 14, 8 });
        memcpy(mnas_tensor_data(an), mnas_tensor_data(a), 14 * 8 * sizeof(mnas_real));
        memcpy(mnas_tensor_data(ar), mnas_tensor_data(a) + 14 * 8, 14 * 8 * sizeof(mnas_real));
        mnas_genotype *dn = mnas_genotype_derive(mnas_supernet_cell_at(net, 0), an);
        mnas_genotype *dr = mnas_genotype_derive(mnas_supernet_cell_at(net, 1), ar);
        ck_assert_int_eq(mnas_genotype_equal(n0, dn), 1);
        ck_assert_int_eq(mnas_genotype_equal(r0, dr), 1);
        mnas_genotype *pr = mnas_genotype_make_pair(dn, dr);
        ck_assert_int_eq(mnas_genotype_equal(pr, g), 1);
        ck_assert_int_eq(mnas_genotype_equal(n0, g), 0); /* a single cell never equals a pair */
        /* one-hot of the pair derives back to it; the cell-wise one-hot agrees */
        mnas_real oh[28 * 8], ohr[14 * 8];
        ck_assert_int_eq(mnas_genotype_onehot_supernet(g, net, oh), MNAS_OK);
        ck_assert_int_eq(mnas_genotype_onehot(g, mnas_supernet_cell_at(net, 1), ohr), MNAS_OK);
        ck_assert(memcmp(oh + 14 * 8, ohr, sizeof ohr) == 0);
        mnas_tensor *ta = mnas_tensor_from_data(ctx, 2, as, oh);
        mnas_genotype *back = mnas_genotype_derive_supernet(net, ta);
        ck_assert_int_eq(mnas_genotype_equal(back, g), 1);
        free(s);
        free(s2);
        mnas_genotype_free(g);
        mnas_genotype_free(h);
        mnas_genotype_free(n0);
        mnas_genotype_free(r0);
        mnas_genotype_free(dn);
        mnas_genotype_free(dr);
        mnas_genotype_free(pr);
        mnas_genotype_free(back);
        mnas_tensor_free(a);
        mnas_tensor_free(an);
        mnas_tensor_free(ar);
        mnas_tensor_free(ta);
    }
    /* whitespace is free; the canonical form is fixed */
    mnas_genotype *g = mnas_genotype_parse(
        ctx, sp, "  normal :sep_conv_3x3@1, skip_connect@0 ; dil_conv_5x5@2,max_pool_3x3@0|reduce:  avg_pool_3x3@0,"
                 "sep_conv_5x5@1;skip_connect@1,dil_conv_3x3@2 ");
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
    char *s = to_string(g);
    ck_assert_str_eq(s, "normal: skip_connect@0,sep_conv_3x3@1;max_pool_3x3@0,dil_conv_5x5@2 | reduce: "
                        "avg_pool_3x3@0,sep_conv_5x5@1;skip_connect@1,dil_conv_3x3@2");
    free(s);
    /* DOT: two clusters with prefixed ids */
    int64_t n = mnas_genotype_to_dot(g, "pair", NULL, 0);
    char *dot = malloc((size_t)n + 1);
    mnas_genotype_to_dot(g, "pair", dot, (size_t)n + 1);
    ck_assert_ptr_nonnull(strstr(dot, "subgraph cluster_normal {"));
    ck_assert_ptr_nonnull(strstr(dot, "subgraph cluster_reduce {"));
    ck_assert_ptr_nonnull(strstr(dot, "\"reduce:c_{k-1}\" -> \"reduce:0\" [label=\"sep_conv_5x5\"];"));
    ck_assert_ptr_nonnull(strstr(dot, "\"normal:1\" -> \"normal:c_{k}\";"));
    ck_assert_ptr_nonnull(strstr(dot, "\"normal:0\" [label=\"0\", fillcolor=lightblue];"));
    free(dot);
    /* a 2-node pair does not fit the 4-node supernet; a single cell neither */
    mnas_real oh[28 * 8];
    ck_assert_int_eq(mnas_genotype_onehot_supernet(g, net, oh), MNAS_E_SHAPE);
    mnas_genotype *one = mnas_genotype_part(g, 0);
    ck_assert_int_eq(mnas_genotype_onehot_supernet(one, net, oh), MNAS_E_INVALID);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "2 cells"));
    ck_assert_ptr_null(mnas_child_create(net, one));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "pair"));
    ck_assert_ptr_null(mnas_genotype_part(g, 2));
    ck_assert_ptr_null(mnas_genotype_make_pair(g, one)); /* a pair is not a part */
    ck_assert_ptr_null(mnas_genotype_make_pair(one, NULL));
    ck_assert_int_eq(mnas_genotype_num_cells(NULL), -1);
    mnas_genotype_free(one);
    mnas_genotype_free(g);
    mnas_supernet_free(net);
}
END_TEST

START_TEST(genotype_pair_malformed)
{
    static const struct {
        const char *text, *msg;
    } bad[] = {
        { "normal: skip_connect@0,sep_conv_3x3@1", "expected '| reduce: <cell>'" },
        { "normal: skip_connect@0,sep_conv_3x3@1 |", "reduce cell, node 0, pair 0 (offset 39): expected the label 'reduce:'" },
        { "normal: skip_connect@0,sep_conv_3x3@1 | normal: skip_connect@0,sep_conv_3x3@1",
          "expected the label 'reduce:', found 'normal:'" },
        { "reduce: skip_connect@0,sep_conv_3x3@1 | normal: skip_connect@0,sep_conv_3x3@1",
          "expected the label 'normal:'" },
        { "normal: | reduce: skip_connect@0,sep_conv_3x3@1", "normal cell, node 0, pair 0 (offset 8): the cell is empty" },
        { "normal: skip_connect@0,sep_conv_3x3@1; | reduce: skip_connect@0,sep_conv_3x3@1", "trailing separator" },
        { "normal: skip_connect@0 | reduce: skip_connect@0,sep_conv_3x3@1", "a node needs 2 pairs, found 1" },
        { "normal: skip_connect@0,sep_conv_3x3@1 | reduce: skip_connect@0,sep_conv_3x3@1;skip_connect@0,none@2",
          "zero op" },
        { "normal: skip_connect@0,sep_conv_3x3@1 | reduce: skip_connect@0,sep_conv_3x3@1;skip_connect@0,max_pool_3x3@2",
          "the normal cell has 1 nodes, the reduce cell 2" },
        { "normal: skip_connect@0,sep_conv_3x3@3 | reduce: skip_connect@0,sep_conv_3x3@1",
          "normal cell, node 0, pair 1 (offset 36): input state 3 is out of range 0..1" },
        { "normal: skip_connect@0,sep_conv_3x3@1 | reduce: skip_connect@0,conv_7x7@1",
          "reduce cell, node 0, pair 1 (offset 63): unknown op 'conv_7x7'" },
        { "normal: skip_connect@0,sep_conv_3x3@1 | reduce: skip_connect@0,sep_conv_3x3@1 | x", "found '|'" },
        { "skip_connect@0,sep_conv_3x3@1 | skip_connect@0,sep_conv_3x3@1", "found '|' in a single cell" },
        { "normal skip_connect@0,sep_conv_3x3@1", "unknown op 'normal'" },
        { "normal:: skip_connect@0,sep_conv_3x3@1 | reduce: skip_connect@0,sep_conv_3x3@1", "expected an op name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mnas_genotype *g = mnas_genotype_parse(ctx, sp, bad[i].text);
        ck_assert_msg(g == NULL, "accepted: %s", bad[i].text);
        const char *m = mnas_ctx_last_error(ctx);
        ck_assert_msg(strstr(m, "malformed data: mnas_genotype_parse: ") == m, "%s", m);
        ck_assert_msg(strstr(m, bad[i].msg) != NULL, "'%s' gave '%s', wanted '%s'", bad[i].text, m, bad[i].msg);
    }
    /* a single cell of the DARTS space still parses */
    mnas_genotype *g = mnas_genotype_parse(ctx, sp, "sep_conv_3x3@0,skip_connect@1;dil_conv_3x3@2,avg_pool_3x3@1");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(mnas_genotype_num_cells(g), 1);
    mnas_genotype_free(g);
}
END_TEST

/* The child equals the supernet under the pair's one-hot alpha. */
START_TEST(child_equals_supernet)
{
    mnas_supernet *net = mnas_supernet_create_conv(sp, 2, 4, 3, 5);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_supernet_add_params(net, p, "net.", 0), 0);
    size_t rows = mnas_supernet_alpha_rows(net);
    int64_t xs[4] = { 4, 2, 9, 9 }, as[2] = { (int64_t)rows, 8 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    double worst = 0;
    for (int trial = 0; trial < 12; trial++) {
        mnas_tape_reset(tp);
        mnas_tensor *logits = mnas_tensor_randn(ctx, 2, as, 0, 1);
        mnas_genotype *g = mnas_genotype_derive_supernet(net, logits);
        ck_assert_ptr_nonnull(g);
        mnas_real oh[2 * 9 * 8];
        ck_assert_int_eq(mnas_genotype_onehot_supernet(g, net, oh), MNAS_OK);
        mnas_tensor *a = mnas_tape_tensor(tp, 2, as, oh);
        mnas_tensor *ys = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), a);
        ck_assert_msg(ys != NULL, "%s", mnas_tape_last_error(tp));
        /* alpha requiring a gradient: every op computed, same values */
        mnas_tensor *ag = mnas_tape_tensor(tp, 2, as, oh);
        mnas_tensor_set_requires_grad(ag, 1);
        mnas_tensor *yg = mnas_supernet_forward(net, tp, x, mnas_params_tensors(p), ag);
        ck_assert(memcmp(mnas_tensor_data(ys), mnas_tensor_data(yg), 20 * sizeof(mnas_real)) == 0);
        mnas_child *c = mnas_child_create(net, g);
        ck_assert_msg(c != NULL, "%s", mnas_ctx_last_error(ctx));
        mnas_params *cp = mnas_params_create(ctx);
        ck_assert_int_eq(mnas_child_add_params(c, cp, "net.", 0), 0);
        ck_assert_uint_eq(mnas_params_count(cp), mnas_child_num_params(c));
        ck_assert_int_eq(mnas_params_copy_matching(cp, p), (int)mnas_params_count(cp));
        mnas_tensor *yc = mnas_child_forward(c, tp, x, mnas_params_tensors(cp));
        ck_assert_msg(yc != NULL, "%s", mnas_tape_last_error(tp));
        for (int i = 0; i < 20; i++) {
            double d = fabs(mnas_tensor_data(ys)[i] - mnas_tensor_data(yc)[i]);
            if (d > worst) worst = d;
        }
        /* its gradient flows to every one of its parameters' graph */
        mnas_tensor *gr[128];
        ck_assert_uint_le(mnas_params_count(cp), 128);
        ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_square(tp, yc)), mnas_params_count(cp),
                                   mnas_params_tensors(cp), gr, 0),
                         MNAS_OK);
        mnas_params_free(cp);
        mnas_child_free(c);
        mnas_genotype_free(g);
        mnas_tensor_free(logits);
    }
    /* measured: bit for bit (same ops, same order; mnas_mix under one-hot
     * adds 1*y0 + 1*y1 exactly as the child adds y0 + y1) */
    ck_assert_msg(worst == 0, "child and supernet differ by %g", worst);
    mnas_tensor_free(x);
    mnas_params_free(p);
    mnas_supernet_free(net);
}
END_TEST

START_TEST(convnet_baseline)
{
    mnas_convnet *m = mnas_convnet_create(ctx, 1, 28, 28, 0, 5);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(mnas_convnet_filters(m), 32);
    ck_assert_uint_eq(mnas_convnet_num_params(m), 18);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_convnet_add_params(m, p, "maml.", 0), 0);
    ck_assert_str_eq(mnas_params_name(p, 0), "maml.b0.w");
    ck_assert_str_eq(mnas_params_name(p, 15), "maml.b3.bn_b");
    ck_assert_str_eq(mnas_params_name(p, 16), "maml.head.w");
    /* 28 -> 14 -> 7 -> 3 -> 1: head reads 32 features */
    int64_t want = (32 * 9 + 32 * 3) + 3 * (32 * 32 * 9 + 32 * 3) + 5 * 32 + 5;
    ck_assert_int_eq(mnas_params_numel(p), want);
    ck_assert_int_eq(mnas_convnet_add_params(m, p, "maml.", 0), -1); /* names taken */
    ck_assert_uint_eq(mnas_params_count(p), 18);
    int64_t xs[4] = { 5, 1, 28, 28 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    mnas_tensor *y = mnas_convnet_forward(m, tp, x, mnas_params_tensors(p));
    ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
    ck_assert_int_eq(mnas_tensor_dim(y, 0), 5);
    ck_assert_int_eq(mnas_tensor_dim(y, 1), 5);
    int32_t labels[5] = { 0, 1, 2, 3, 4 };
    mnas_tensor *loss = mnas_cross_entropy(tp, y, 5, labels);
    mnas_tensor *g[18];
    ck_assert_int_eq(mnas_grad(tp, loss, 18, mnas_params_tensors(p), g, 0), MNAS_OK);
    ck_assert(fabs(mnas_tensor_data(g[16])[0]) > 0);
    /* MiniImagenet's 84x84x3 with 32 filters: 5x5x32 = 800 head features */
    mnas_convnet *mi = mnas_convnet_create(ctx, 3, 84, 84, 32, 5);
    mnas_params *pm = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_convnet_add_params(mi, pm, NULL, 0), 0);
    ck_assert_int_eq(mnas_tensor_dim(mnas_params_get(pm, 16), 1), 800);
    ck_assert_int_eq(mnas_params_numel(pm), (32 * 27 + 96) + 3 * (32 * 32 * 9 + 96) + 5 * 800 + 5);
    /* bad input */
    mnas_tape_reset(tp);
    int64_t xb[4] = { 5, 3, 28, 28 };
    ck_assert_ptr_null(mnas_convnet_forward(m, tp, mnas_tape_tensor(tp, 4, xb, NULL), mnas_params_tensors(p)));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "[N, 1, 28, 28]"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_convnet_forward(m, tp, x, mnas_params_tensors(pm)));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_convnet_forward(m, tp, x, NULL));
    ck_assert_ptr_null(mnas_convnet_create(ctx, 1, 15, 28, 32, 5));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "16"));
    ck_assert_ptr_null(mnas_convnet_create(ctx, 0, 28, 28, 32, 5));
    ck_assert_ptr_null(mnas_convnet_create(ctx, 1, 28, 28, -1, 5));
    ck_assert_ptr_null(mnas_convnet_create(ctx, 1, 28, 28, 32, 0));
    ck_assert_ptr_null(mnas_convnet_create(NULL, 1, 28, 28, 32, 5));
    mnas_convnet_free(NULL);
    mnas_tensor_free(x);
    mnas_params_free(p);
    mnas_params_free(pm);
    mnas_convnet_free(m);
    mnas_convnet_free(mi);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("conv_space");
    TCase *tc = tcase_create("conv_space");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, registry_in_order);
    tcase_add_test(tc, op_shapes);
    tcase_add_test(tc, conv_ops_share_input_relu);
    tcase_add_test(tc, cell_shapes_and_params);
    tcase_add_test(tc, supernet_layout);
    tcase_add_test(tc, genotype_pair_round_trip);
    tcase_add_test(tc, genotype_pair_malformed);
    tcase_add_test(tc, child_equals_supernet);
    tcase_add_test(tc, convnet_baseline);
    suite_add_tcase(su, tc);
    SRunner *r = srunner_create(su);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
