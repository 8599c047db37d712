/* bench_conv_space — time of one forward and one forward + backward pass of
 * the conv supernet (DARTS space, one normal + one reduction cell) and of
 * the conv MAML baseline on a 5-way 1-shot support batch: 5 images of
 * 1x28x28.
 *
 *   supernet, soft alpha: every op of every edge runs (the search);
 *   supernet, one-hot alpha: only the chosen ops (a decoded genotype);
 *   supernet, second order: one inner SGD step recorded with create_graph,
 *     then the gradient of the loss at the fast weights w.r.t. the
 *     meta-weights and alpha (one step of Eq. (8)-(9));
 *   MAML conv net (32 filters): first order and the same second-order step.
 *
 * Gradients are taken w.r.t. every weight (and alpha for the supernet); the
 * tape is reset after every pass. Each case runs for at least --seconds
 * (default 1) after one warm-up pass; the mean and the best pass are
 * printed, with the tape's node count and arena size.
 *
 * Options: --channels C (default 16), --seconds S, --help. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_conv_space: %s failed: %s\n", what, mnas_ctx_last_error(ctx));
    exit(1);
}

typedef struct {
    const mnas_supernet *net;
    const mnas_convnet *cnet;
    mnas_params *p;
    mnas_tensor *x, *alpha; /* alpha: persistent logits */
    int onehot;             /* use the derived genotype's one-hot alpha */
    mnas_real *oh;
    int mode; /* 0 forward, 1 forward + backward, 2 second order */
} bench_case;

static const int32_t labels[5] = { 0, 1, 2, 3, 4 };

static mnas_tensor *logits(const bench_case *b, mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *a)
{
    return b->net ? mnas_supernet_forward(b->net, tp, b->x, w, a) : mnas_convnet_forward(b->cnet, tp, b->x, w);
}

static void one_pass(const bench_case *b, mnas_tape *tp)
{
    size_t n = mnas_params_count(b->p);
    mnas_tensor *const *w = mnas_params_tensors(b->p);
    mnas_tensor *a = NULL;
    if (b->net) {
        if (b->onehot) {
            int64_t s[2] = { mnas_tensor_dim(b->alpha, 0), mnas_tensor_dim(b->alpha, 1) };
            a = mnas_tape_tensor(tp, 2, s, b->oh);
        } else {
            a = mnas_softmax(tp, b->alpha);
        }
    }
    mnas_tensor *loss = mnas_cross_entropy(tp, logits(b, tp, w, a), 5, labels);
    if (!loss) die("forward");
    if (b->mode == 0) return;
    mnas_tensor *in[2048], *g[2048];
    if (n + 1 > 2048) die("too many parameters");
    memcpy(in, w, n * sizeof *in);
    size_t ni = n;
    if (b->net && !b->onehot) in[ni++] = b->alpha;
    if (b->mode == 1) {
        if (mnas_grad(tp, loss, ni, in, g, 0) != MNAS_OK) die("backward");
        return;
    }
    /* one inner step w' = w - 0.01 grad, recorded, then d loss(w') / d (w, alpha) */
    if (mnas_grad(tp, loss, n, in, g, 1) != MNAS_OK) die("inner gradient");
    mnas_tensor *fw[2048];
    for (size_t k = 0; k < n; k++) fw[k] = mnas_axpy(tp, -0.01, g[k], in[k]);
    mnas_tensor *l2 = mnas_cross_entropy(tp, logits(b, tp, fw, a), 5, labels);
    if (!l2 || mnas_grad(tp, l2, ni, in, g, 0) != MNAS_OK) die("meta-gradient");
}

static void run(const char *name, const bench_case *b, double seconds)
{
    mnas_tape *tp;
    if (mnas_tape_create(ctx, &tp) != MNAS_OK) die("mnas_tape_create");
    one_pass(b, tp); /* warm-up */
    size_t nodes = mnas_tape_num_nodes(tp), bytes = mnas_tape_bytes_reserved(tp);
    mnas_tape_reset(tp);
    double best = 1e30, total = 0;
    int reps = 0;
    double t_end = now() + seconds;
    while (reps < 3 || now() < t_end) {
        double t0 = now();
        one_pass(b, tp);
        double dt = now() - t0;
        mnas_tape_reset(tp);
        total += dt;
        if (dt < best) best = dt;
        reps++;
    }
    printf("%-44s %9.2f ms mean %9.2f ms best  (%d runs, %zu tape nodes, %.1f MB arena)\n", name,
           1e3 * total / reps, 1e3 * best, reps, nodes, (double)bytes / (1 << 20));
    mnas_tape_free(tp);
}

int main(int argc, char **argv)
{
    int64_t C = 16;
    double seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--channels") && i + 1 < argc) {
            C = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            printf("usage: bench_conv_space [--channels C] [--seconds S]\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 1;
    if (mnas_ctx_create(&ctx, &o) != MNAS_OK) return 1;
    mnas_search_space *sp = mnas_search_space_darts(ctx);
    mnas_supernet *net = sp ? mnas_supernet_create_conv(sp, 1, C, 4, 5) : NULL;
    if (!net) die("mnas_supernet_create_conv");
    mnas_params *p = mnas_params_create(ctx);
    if (mnas_supernet_add_params(net, p, "net.", 0) < 0) die("mnas_supernet_add_params");
    int64_t xs[4] = { 5, 1, 28, 28 }, as[2] = { (int64_t)mnas_supernet_alpha_rows(net), 8 };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, xs, 0, 1);
    mnas_tensor *alpha = mnas_tensor_randn(ctx, 2, as, 0, 1e-3);
    mnas_tensor_set_requires_grad(alpha, 1);
    mnas_genotype *g = mnas_genotype_derive_supernet(net, alpha);
    mnas_real *oh = malloc((size_t)(as[0] * as[1]) * sizeof *oh);
    if (!g || !oh || mnas_genotype_onehot_supernet(g, net, oh) != MNAS_OK) die("one-hot alpha");
    printf("conv supernet: C = %lld, 4 nodes, %zu weight tensors, %lld weights; x = 5 x 1 x 28 x 28\n",
           (long long)C, mnas_params_count(p), (long long)mnas_params_numel(p));

    bench_case b = { net, NULL, p, x, alpha, 0, oh, 0 };
    run("supernet forward, soft alpha", &b, seconds);
    b.mode = 1;
    run("supernet forward+backward, soft alpha", &b, seconds);
    b.onehot = 1;
    b.mode = 0;
    run("supernet forward, one-hot alpha", &b, seconds);
    b.mode = 1;
    run("supernet forward+backward, one-hot alpha", &b, seconds);
    b.onehot = 0;
    b.mode = 2;
    run("supernet 1 inner step, 2nd order, soft alpha", &b, seconds);

    mnas_convnet *cn = mnas_convnet_create(ctx, 1, 28, 28, 32, 5);
    mnas_params *cp = mnas_params_create(ctx);
    if (!cn || mnas_convnet_add_params(cn, cp, "", 0) < 0) die("mnas_convnet_create");
    printf("MAML conv net: 32 filters, %lld weights\n", (long long)mnas_params_numel(cp));
    bench_case c = { NULL, cn, cp, x, NULL, 0, NULL, 0 };
    run("MAML net forward", &c, seconds);
    c.mode = 1;
    run("MAML net forward+backward", &c, seconds);
    c.mode = 2;
    run("MAML net 1 inner step, 2nd order", &c, seconds);

    free(oh);
    mnas_genotype_free(g);
    mnas_params_free(cp);
    mnas_convnet_free(cn);
    mnas_tensor_free(x);
    mnas_tensor_free(alpha);
    mnas_params_free(p);
    mnas_supernet_free(net);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
    return 0;
}
