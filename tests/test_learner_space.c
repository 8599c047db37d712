/* The learner over a user's search space (mnas_learner_create_with_space):
 * custom ops meta-train through M-NAS, M-NAS-Shared and M-NAS-NM with the
 * same bits for 1 and 2 threads and across a checkpoint (search and the
 * straight-through phase), on regression (MLP cells) and few-shot images
 * (conv normal and reduction cells); a preset's space passed in is the preset, bit for
 * bit; bad spaces, a misbehaving op and a checkpoint of other ops are
 * refused with a message naming the problem. A user's network for MAML
 * (mnas_learner_create_with_network): the same bits for 1 and 2 threads
 * and across a resume, second and first order; bad callbacks refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* lin_tanh: tanh(x W^T + b). */
static mnas_status lin_tanh_declare(void *user, int64_t width, mnas_param_decl *d)
{
    (void)user;
    int64_t w[2] = { width, width }, b[1] = { width };
    mnas_status st = mnas_param_decl_add(d, "w", 2, w, MNAS_INIT_FAN_IN, (double)width);
    return st != MNAS_OK ? st : mnas_param_decl_add(d, "b", 1, b, MNAS_INIT_ZEROS, 0);
}

static mnas_tensor *lin_tanh_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)stride;
    return mnas_tanh(tp, mnas_linear(tp, x, p[0], p[1]));
}

/* half: x / 2, no parameters. */
static mnas_tensor *half_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)p, (void)stride;
    return mnas_scale(tp, x, 0.5);
}

/* A broken op: a scalar instead of x's shape. */
static mnas_tensor *broken_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)p, (void)stride;
    return mnas_sum(tp, x);
}

static mnas_search_space *make_space(mnas_ctx *ctx, const char *second)
{
    mnas_search_space *s = mnas_search_space_create(ctx);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(mnas_search_space_add_op(s, "lin_tanh", 0, lin_tanh_declare, lin_tanh_forward, NULL), 0);
    ck_assert_int_eq(mnas_search_space_add_op(s, second, 0, NULL, half_forward, NULL), 1);
    ck_assert_int_eq(mnas_search_space_add_op(s, "zero", 1, NULL, NULL, NULL), 2);
    return s;
}

static mnas_learner_options small_options(mnas_method m, int threads)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.meta_batch = 3;
    o.inner_steps = 2;
    o.inner_lr = 0.01;
    o.hidden = 8;
    o.nodes = 2;
    o.z_dim = 8;
    o.f_dim = 8;
    o.controller_hidden = 8;
    o.threads = threads;
    o.seed = 7;
    o.path_dropout = 0.2;
    return o;
}

typedef struct {
    mnas_ctx *ctx;
} source_data;

static mnas_task *source(void *user, uint64_t index)
{
    source_data *d = user;
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    return mnas_regression_task(d->ctx, &ro, 11, index, -1);
}

static void train(mnas_learner *l, source_data *d, int64_t n, mnas_ctx *ctx)
{
    ck_assert_msg(mnas_learner_train(l, source, d, n, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
}

static void assert_same(const mnas_learner *a, const mnas_learner *b)
{
    const mnas_params *p = mnas_learner_params(a), *q = mnas_learner_params(b);
    ck_assert_uint_eq(mnas_params_count(p), mnas_params_count(q));
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *s = mnas_params_get(p, i), *t = mnas_params_get(q, i);
        ck_assert_msg(
            !memcmp(mnas_tensor_cdata(s), mnas_tensor_cdata(t), (size_t)mnas_tensor_size(s) * sizeof(mnas_real)),
            "parameter %s differs", mnas_params_name(p, i));
    }
    ck_assert_int_eq(mnas_learner_iteration(a), mnas_learner_iteration(b));
}

static const mnas_method methods[3] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM };

/* Search 3 updates, discretise, 2 more: with 1 thread straight through, and
 * with 2 threads paused after the 4th (a checkpoint) and resumed by a new
 * learner. */
START_TEST(custom_space_threads_and_resume)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_search_space *s = make_space(ctx, "half");
    source_data d = { ctx };
    mnas_learner_options o1 = small_options(methods[_i], 1), o2 = small_options(methods[_i], 2);
    mnas_learner *a = mnas_learner_create_with_space(ctx, &o1, s);
    mnas_learner *b = mnas_learner_create_with_space(ctx, &o2, s);
    mnas_learner *c = mnas_learner_create_with_space(ctx, &o2, s);
    ck_assert_msg(a && b && c, "%s", mnas_ctx_last_error(ctx));
    ck_assert_ptr_eq(mnas_learner_search_space(a), s);
    train(a, &d, 3, ctx);
    ck_assert_int_eq(mnas_learner_discretize(a, 0), MNAS_OK);
    train(a, &d, 2, ctx);
    train(b, &d, 3, ctx);
    ck_assert_int_eq(mnas_learner_discretize(b, 0), MNAS_OK);
    train(b, &d, 1, ctx);
    char path[64];
    snprintf(path, sizeof path, "learner_space_%d_%d.ckpt", (int)getpid(), _i);
    ck_assert_msg(mnas_learner_save(b, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_learner_load(c, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert(mnas_learner_is_discrete(c));
    train(c, &d, 1, ctx);
    assert_same(a, c);
    /* The genotypes agree too (per task, or the shared one). */
    mnas_task *t = source(&d, 1000);
    ck_assert_ptr_nonnull(t);
    mnas_genotype *ga = mnas_learner_genotype(a, t), *gc = mnas_learner_genotype(c, t);
    ck_assert_msg(ga && gc, "%s", mnas_ctx_last_error(ctx));
    ck_assert(mnas_genotype_equal(ga, gc));
    char buf[256];
    ck_assert_int_gt(mnas_genotype_to_string(ga, buf, sizeof buf), 0);
    ck_assert(strstr(buf, "lin_tanh") || strstr(buf, "half"));
    mnas_genotype_free(ga);
    mnas_genotype_free(gc);
    mnas_task_free(t);
    unlink(path);
    mnas_learner_free(a);
    mnas_learner_free(b);
    mnas_learner_free(c);
    mnas_search_space_free(s);
    mnas_ctx_free(ctx);
}
END_TEST

/* The preset's own space passed in gives the preset, bit for bit. */
START_TEST(preset_space_is_the_preset)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_search_space *mlp = mnas_search_space_mlp(ctx);
    source_data d = { ctx };
    mnas_learner_options o = small_options(methods[_i], 2);
    mnas_learner *a = mnas_learner_create(ctx, &o), *b = mnas_learner_create_with_space(ctx, &o, mlp);
    ck_assert_msg(a && b, "%s", mnas_ctx_last_error(ctx));
    train(a, &d, 2, ctx);
    train(b, &d, 2, ctx);
    assert_same(a, b);
    mnas_learner_free(a);
    mnas_learner_free(b);
    mnas_search_space_free(mlp);
    mnas_ctx_free(ctx);
}
END_TEST

static void expect_create_error(mnas_ctx *ctx, const mnas_learner_options *o, const mnas_search_space *s,
                                const char *needle)
{
    mnas_learner *l = mnas_learner_create_with_space(ctx, o, s);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), needle), "expected \"%s\" in: %s", needle,
                  mnas_ctx_last_error(ctx));
}

START_TEST(bad_input_is_refused)
{
    mnas_ctx *ctx, *other;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_ctx_create(&other, NULL), MNAS_OK);
    mnas_learner_options o = small_options(MNAS_METHOD_MNAS, 1);
    mnas_search_space *s = make_space(ctx, "half"), *foreign = make_space(other, "half");
    mnas_search_space *empty = mnas_search_space_create(ctx);
    ck_assert_ptr_null(mnas_learner_create_with_space(NULL, &o, s));
    expect_create_error(ctx, &o, NULL, "space is NULL");
    expect_create_error(ctx, &o, foreign, "another context");
    expect_create_error(ctx, &o, empty, "no ops");
    mnas_learner_options maml = small_options(MNAS_METHOD_MAML, 1);
    expect_create_error(ctx, &maml, s, "MAML");
    o.sample_ops = 4;
    expect_create_error(ctx, &o, s, "sample_ops");
    o.sample_ops = 0;
    ck_assert_ptr_null(mnas_learner_search_space(NULL));
    mnas_learner *m = mnas_learner_create(ctx, &maml);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(mnas_learner_search_space(m));
    mnas_learner_free(m);

    /* An op returning the wrong shape fails the step, naming the op, and
     * leaves the parameters as they were. */
    mnas_search_space *bad = mnas_search_space_create(ctx);
    ck_assert_int_eq(mnas_search_space_add_op(bad, "broken", 0, NULL, broken_forward, NULL), 0);
    ck_assert_int_eq(mnas_search_space_add_op(bad, "half", 0, NULL, half_forward, NULL), 1);
    mnas_learner *l = mnas_learner_create_with_space(ctx, &o, bad);
    ck_assert_msg(l != NULL, "%s", mnas_ctx_last_error(ctx));
    mnas_tensor *before = mnas_tensor_copy(mnas_params_get(mnas_learner_params(l), 0));
    source_data d = { ctx };
    ck_assert_int_ne(mnas_learner_train(l, source, &d, 1, NULL, NULL), MNAS_OK);
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "broken"), "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_learner_iteration(l), 0);
    const mnas_tensor *after = mnas_params_get(mnas_learner_params(l), 0);
    ck_assert(!memcmp(mnas_tensor_cdata(before), mnas_tensor_cdata(after),
                      (size_t)mnas_tensor_size(after) * sizeof(mnas_real)));
    mnas_tensor_free(before);
    mnas_learner_free(l);

    /* A checkpoint over other ops (same shapes, other names) is refused. */
    mnas_search_space *renamed = make_space(ctx, "halved");
    mnas_learner *x = mnas_learner_create_with_space(ctx, &o, s), *y = mnas_learner_create_with_space(ctx, &o, renamed);
    ck_assert(x && y);
    char path[64];
    snprintf(path, sizeof path, "learner_space_bad_%d.ckpt", (int)getpid());
    ck_assert_int_eq(mnas_learner_save(x, path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_load(y, path), MNAS_E_MISMATCH);
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "lin_tanh half zero"), "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_learner_load(x, path), MNAS_OK);
    unlink(path);
    mnas_learner_free(x);
    mnas_learner_free(y);
    mnas_search_space_free(renamed);
    mnas_search_space_free(bad);
    mnas_search_space_free(empty);
    mnas_search_space_free(foreign);
    mnas_search_space_free(s);
    mnas_ctx_free(other);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- a conv space of one's own (few-shot images) ---------------------------- */

/* conv1: a 1x1 convolution [C, C, 1, 1] at the edge's stride; avg3: 3x3
 * average pooling; both halve the size at stride 2, rounding up. */
static mnas_status conv1_declare(void *user, int64_t width, mnas_param_decl *d)
{
    (void)user;
    int64_t w[4] = { width, width, 1, 1 };
    return mnas_param_decl_add(d, "w", 4, w, MNAS_INIT_FAN_IN, (double)width);
}

static mnas_tensor *conv1_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user;
    return mnas_conv2d(tp, mnas_relu(tp, x), p[0], NULL, stride, 0, 1, 1);
}

static mnas_tensor *avg3_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)p;
    return mnas_avg_pool2d(tp, x, 3, stride, 1);
}

typedef struct {
    mnas_ctx *ctx;
    mnas_image_dataset *ds;
    mnas_fewshot_sampler *sampler;
} images;

/* 6 classes of 8 x 8 grey images: a fixed pattern per class plus noise. */
static void images_init(images *f, mnas_ctx *ctx)
{
    enum { CLASSES = 6, PER = 3, PX = 64 };
    size_t counts[CLASSES];
    mnas_real *data = malloc(CLASSES * PER * PX * sizeof *data);
    mnas_rng *r = mnas_rng_create(ctx, 5, 0);
    ck_assert(data && r);
    for (size_t c = 0; c < CLASSES; c++) {
        counts[c] = PER;
        for (size_t i = 0; i < PER * PX; i++)
            data[c * PER * PX + i] =
                (mnas_real)((c * 5 + (i % PX) * 3) % 4) * 0.25f + (mnas_real)(0.2 * (mnas_rng_uniform(r) - 0.5));
    }
    mnas_rng_free(r);
    f->ctx = ctx;
    f->ds = mnas_image_dataset_create(ctx, CLASSES, counts, NULL, 1, 8, 8, data);
    free(data);
    ck_assert_ptr_nonnull(f->ds);
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.way = 3;
    fo.shot = 1;
    fo.query = 2;
    const mnas_image_dataset *dss[1] = { f->ds };
    f->sampler = mnas_fewshot_sampler_create(ctx, dss, 1, &fo);
    ck_assert_ptr_nonnull(f->sampler);
}

static mnas_task *image_source(void *user, uint64_t index)
{
    images *f = user;
    return mnas_fewshot_task(f->ctx, f->sampler, 17, index);
}

/* M-NAS and M-NAS-Shared over a conv space with a custom op (normal and
 * reduction cell): 1 thread straight through = 2 threads with a resume. */
START_TEST(conv_space_threads_and_resume)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    images f;
    images_init(&f, ctx);
    mnas_search_space *s = mnas_search_space_create(ctx);
    ck_assert_int_eq(mnas_search_space_add_op(s, "conv1", 0, conv1_declare, conv1_forward, NULL), 0);
    ck_assert_int_eq(mnas_search_space_add_op(s, "avg3", 0, NULL, avg3_forward, NULL), 1);
    ck_assert_int_eq(mnas_search_space_add_op(s, "none", 1, NULL, NULL, NULL), 2);
    mnas_learner_options o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = small_options(methods[_i], k + 1);
        o[k].classes = 3;
        o[k].in_channels = 1;
        o[k].image_size = 8;
        o[k].channels = 4;
        o[k].inner_lr = 0.1;
    }
    mnas_learner *a = mnas_learner_create_with_space(ctx, &o[0], s);
    mnas_learner *b = mnas_learner_create_with_space(ctx, &o[1], s);
    mnas_learner *c = mnas_learner_create_with_space(ctx, &o[1], s);
    ck_assert_msg(a && b && c, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_learner_train(a, image_source, &f, 3, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_learner_train(b, image_source, &f, 2, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    char path[64];
    snprintf(path, sizeof path, "learner_conv_%d_%d.ckpt", (int)getpid(), _i);
    ck_assert_int_eq(mnas_learner_save(b, path), MNAS_OK);
    ck_assert_msg(mnas_learner_load(c, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_learner_train(c, image_source, &f, 1, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    assert_same(a, c);
    mnas_task *t = image_source(&f, 999);
    mnas_genotype *g = mnas_learner_genotype(c, t);
    ck_assert_msg(g != NULL, "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_genotype_num_cells(g), 2); /* normal and reduce */
    mnas_genotype_free(g);
    mnas_task_free(t);
    unlink(path);
    mnas_learner_free(a);
    mnas_learner_free(b);
    mnas_learner_free(c);
    mnas_search_space_free(s);
    mnas_fewshot_sampler_free(f.sampler);
    mnas_image_dataset_free(f.ds);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- a user's network for MAML --------------------------------------------- */

/* tanh MLP 1 -> 12 -> 1; *user != 0 makes forward return the hidden layer
 * (the wrong shape). */
static mnas_status net_params(void *user, mnas_params *p)
{
    (void)user;
    int64_t w1[2] = { 12, 1 }, b1[1] = { 12 }, w2[2] = { 1, 12 }, b2[1] = { 1 };
    if (mnas_params_add(p, "net.w1", 2, w1, MNAS_INIT_FAN_IN, 1, 0) < 0 ||
        mnas_params_add(p, "net.b1", 1, b1, MNAS_INIT_FAN_IN, 1, 0) < 0 ||
        mnas_params_add(p, "net.w2", 2, w2, MNAS_INIT_FAN_IN, 12, 0) < 0 ||
        mnas_params_add(p, "net.b2", 1, b2, MNAS_INIT_ZEROS, 0, 0) < 0)
        return MNAS_E_INVALID;
    return MNAS_OK;
}

static mnas_tensor *net_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *w)
{
    mnas_tensor *h = mnas_tanh(tp, mnas_linear(tp, x, w[0], w[1]));
    return *(const int *)user ? h : mnas_linear(tp, h, w[2], w[3]);
}

static mnas_status failing_params(void *user, mnas_params *p)
{
    (void)p;
    return mnas_ctx_set_error(user, MNAS_E_INVALID, "no room for the network");
}

START_TEST(user_network_threads_and_resume)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    source_data d = { ctx };
    int good = 0;
    mnas_learner_options o1 = small_options(MNAS_METHOD_MAML, 1), o2 = small_options(MNAS_METHOD_MAML, 2);
    o1.path_dropout = o2.path_dropout = 0;
    o1.inner_mode = o2.inner_mode = _i == 0 ? MNAS_INNER_SECOND_ORDER : MNAS_INNER_FIRST_ORDER;
    mnas_learner *a = mnas_learner_create_with_network(ctx, &o1, net_params, net_forward, &good);
    mnas_learner *b = mnas_learner_create_with_network(ctx, &o2, net_params, net_forward, &good);
    mnas_learner *c = mnas_learner_create_with_network(ctx, &o2, net_params, net_forward, &good);
    ck_assert_msg(a && b && c, "%s", mnas_ctx_last_error(ctx));
    ck_assert_uint_eq(mnas_params_count(mnas_learner_params(a)), 4);
    ck_assert_ptr_null(mnas_learner_search_space(a));
    train(a, &d, 4, ctx);
    train(b, &d, 2, ctx);
    char path[64];
    snprintf(path, sizeof path, "learner_net_%d_%d.ckpt", (int)getpid(), _i);
    ck_assert_msg(mnas_learner_save(b, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_learner_load(c, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    train(c, &d, 2, ctx);
    assert_same(a, c);
    /* Training moved the network, and adaptation helps on a new task. */
    mnas_task_set *set = mnas_task_set_create(ctx);
    ck_assert_int_eq(mnas_task_set_add(set, source(&d, 5000)), MNAS_OK);
    double before, after;
    ck_assert_msg(mnas_learner_evaluate(c, set, 5, &before, &after) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert(isfinite(before) && isfinite(after));
    mnas_task_set_free(set);
    unlink(path);
    mnas_learner_free(a);
    mnas_learner_free(b);
    mnas_learner_free(c);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(user_network_bad_input)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    int good = 0, bad = 1;
    mnas_learner_options o = small_options(MNAS_METHOD_MAML, 1);
    ck_assert_ptr_null(mnas_learner_create_with_network(NULL, &o, net_params, net_forward, &good));
    ck_assert_ptr_null(mnas_learner_create_with_network(ctx, &o, NULL, net_forward, &good));
    ck_assert(strstr(mnas_ctx_last_error(ctx), "callbacks"));
    ck_assert_ptr_null(mnas_learner_create_with_network(ctx, &o, net_params, NULL, &good));
    ck_assert_ptr_null(mnas_learner_create_with_network(ctx, &o, failing_params, net_forward, ctx));
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "no room for the network"), "%s", mnas_ctx_last_error(ctx));
    mnas_learner_options m = small_options(MNAS_METHOD_MNAS, 1);
    ck_assert_ptr_null(mnas_learner_create_with_network(ctx, &m, net_params, net_forward, &good));
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "for MAML"), "%s", mnas_ctx_last_error(ctx));
    mnas_learner *l = mnas_learner_create_with_network(ctx, &o, net_params, net_forward, &bad);
    ck_assert_ptr_nonnull(l);
    source_data d = { ctx };
    ck_assert_int_eq(mnas_learner_train(l, source, &d, 1, NULL, NULL), MNAS_E_SHAPE);
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "[10, 12]; expected [10, 1]"), "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_learner_iteration(l), 0);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    int slow = getenv("MNAS_TEST_UNDER_VALGRIND") != NULL;
    Suite *s = suite_create("learner_space");
    TCase *tc = tcase_create("learner_space");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, custom_space_threads_and_resume, 0, 3);
    tcase_add_loop_test(tc, preset_space_is_the_preset, 0, slow ? 1 : 3);
    tcase_add_test(tc, bad_input_is_refused);
    tcase_add_loop_test(tc, conv_space_threads_and_resume, 0, slow ? 1 : 2);
    tcase_add_loop_test(tc, user_network_threads_and_resume, 0, 2);
    tcase_add_test(tc, user_network_bad_input);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
