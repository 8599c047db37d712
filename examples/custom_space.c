/* A search space of one's own through the learner: register an op
 * ("lin_tanh", tanh(x W^T + b)), build a space with it, an identity and the
 * zero op, meta-train M-NAS and M-NAS-Shared over it on the toy regression
 * with mnas_learner_create_with_space, print the genotypes the learners
 * find, and resume from a checkpoint (checked bit for bit against training
 * without a pause). */
#include "example_util.h"

/* lin_tanh: W [width, width] (fan-in init) and b [width]. */
static mnas_status lin_tanh_declare(void *user, int64_t width, mnas_param_decl *d)
{
    (void)user;
    int64_t w[2] = { width, width }, b[1] = { width };
    mnas_status st = mnas_param_decl_add(d, "w", 2, w, MNAS_INIT_FAN_IN, (double)width);
    return st != MNAS_OK ? st : mnas_param_decl_add(d, "b", 1, b, MNAS_INIT_ZEROS, 0);
}

/* Runs on the learner's worker threads: no state but its arguments. */
static mnas_tensor *lin_tanh_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)stride;
    return mnas_tanh(tp, mnas_linear(tp, x, p[0], p[1]));
}

static mnas_tensor *identity_forward(void *user, mnas_tape *tp, mnas_tensor *x, mnas_tensor *const *p, int stride)
{
    (void)user, (void)tp, (void)p, (void)stride;
    return x;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: custom_space [options]\n"
               "  --iterations N     meta-updates per method (default 40); training pauses at N/2,\n"
               "                     saves a checkpoint, and a new learner resumes from it\n"
               "  --meta-batch N     tasks per meta-update (default 8)\n"
               "  --threads N        worker threads (default 2)\n"
               "  --seed N           seed (default 1)\n"
               "  --checkpoint PATH  the checkpoint file (default custom_space.ckpt)\n"
               "  --version          print the program's and the library's version\n"
               "  --help, -h         this text\n"
               "Results go to stdout, progress to stderr.\n");
}

static int same_params(const mnas_learner *a, const mnas_learner *b)
{
    const mnas_params *p = mnas_learner_params(a), *q = mnas_learner_params(b);
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *s = mnas_params_get(p, i), *t = mnas_params_get(q, i);
        if (memcmp(mnas_tensor_cdata(s), mnas_tensor_cdata(t), (size_t)mnas_tensor_size(s) * sizeof(mnas_real)))
            return 0;
    }
    return 1;
}

static void print_genotype(const char *label, mnas_genotype *g)
{
    char buf[512];
    if (g && mnas_genotype_to_string(g, buf, sizeof buf) >= 0) printf("  %-22s %s\n", label, buf);
    mnas_genotype_free(g);
}

/* Train one method over space: k updates with a checkpoint, then the rest
 * twice, by the same learner and by a fresh one loaded from the file. */
static int run(mnas_ctx *ctx, const mnas_search_space *space, mnas_learner_options o, long long iters,
               const char *path, ex_source *src, const mnas_task_set *test)
{
    int ok = 0;
    long long k = iters / 2;
    mnas_learner *a = mnas_learner_create_with_space(ctx, &o, space), *b = NULL;
    if (!a) return 0;
    fprintf(stderr, "%s: %lld meta-updates, checkpoint at %lld\n", mnas_method_name(o.method), iters, k);
    if (mnas_learner_train_checkpointed(a, ex_regression_source, src, k, path, 0, NULL, NULL) != MNAS_OK) goto done;
    if (!(b = mnas_learner_create_with_space(ctx, &o, space)) || mnas_learner_load(b, path) != MNAS_OK) goto done;
    if (mnas_learner_train(a, ex_regression_source, src, iters - k, NULL, NULL) != MNAS_OK ||
        mnas_learner_train(b, ex_regression_source, src, iters - k, NULL, NULL) != MNAS_OK)
        goto done;
    size_t n = mnas_task_set_size(test);
    double *before = calloc(n, sizeof *before), *after = calloc(n, sizeof *after), mb = 0, ma = 0;
    if (before && after && mnas_learner_evaluate(b, test, -1, before, after) == MNAS_OK) {
        for (size_t j = 0; j < n; j++) mb += before[j] / (double)n, ma += after[j] / (double)n;
        printf("%s over [", mnas_method_name(o.method));
        for (size_t op = 0; op < mnas_search_space_num_ops(space); op++)
            printf("%s%s", op ? " " : "", mnas_search_space_op_name(space, op));
        printf("], %lld meta-updates: query MSE %.4f before, %.4f after adaptation (%zu tasks)\n", iters, mb, ma, n);
        printf("  resumed at %lld from %s: parameters %s\n", k, path,
               same_params(a, b) ? "bit-identical to training without a pause" : "DIFFER");
        ok = same_params(a, b);
        if (o.method == MNAS_METHOD_MNAS_SHARED) {
            print_genotype("shared genotype:", mnas_learner_genotype(b, NULL));
        } else {
            for (size_t j = 0; j < n && j < 3; j++) {
                char label[40];
                snprintf(label, sizeof label, "genotype of task %zu:", j);
                print_genotype(label, mnas_learner_genotype(b, mnas_task_set_get(test, j)));
            }
        }
    }
    free(before);
    free(after);
done:
    if (!ok) fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
    mnas_learner_free(b);
    mnas_learner_free(a);
    return ok;
}

int main(int argc, char **argv)
{
    long long iters = 40;
    const char *path = "custom_space.ckpt";
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.meta_batch = 8;
    o.threads = 2;
    o.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, end = ex_option_start("custom_space", a, v, usage);
        if (end >= 0) return end;
        if (!strcmp(a, "--iterations")) {
            ok = ex_int(v, a, 2, 1000000, &iters);
        } else if (!strcmp(a, "--checkpoint")) {
            path = v;
        } else if (strcmp(a, "--meta-batch") && strcmp(a, "--threads") && strcmp(a, "--seed")) {
            return ex_unknown_option(a, usage);
        } else {
            ex_learner_option(a, v, &o, &ok); /* the three learner options this example takes */
        }
        if (!ok) return 2;
        i++;
    }
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    int rc = 1;
    mnas_search_space *space = mnas_search_space_create(ctx);
    mnas_task_set *test = NULL;
    if (!space || mnas_search_space_add_op(space, "lin_tanh", 0, lin_tanh_declare, lin_tanh_forward, NULL) < 0 ||
        mnas_search_space_add_op(space, "identity", 0, NULL, identity_forward, NULL) < 0 ||
        mnas_search_space_add_op(space, "zero", 1, NULL, NULL, NULL) < 0)
        goto out;
    ex_source src = { ctx, MNAS_REGRESSION_OPTIONS_INIT, o.seed };
    if (!(test = mnas_regression_test_set(ctx, &src.ro, 1000003, 5))) goto out;
    o.hidden = 32;
    o.inner_lr = 0.01;
    const mnas_method methods[2] = { MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED };
    rc = 0;
    for (int m = 0; m < 2 && rc == 0; m++) {
        o.method = methods[m];
        if (!run(ctx, space, o, iters, path, &src, test)) rc = 1;
    }
out:
    if (rc && !test) fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
    mnas_task_set_free(test);
    mnas_search_space_free(space);
    mnas_ctx_free(ctx);
    return rc;
}
