/* MAML on the paper's toy regression (four heterogeneous function families,
 * 10 shots): meta-train the 5-layer Linear-ReLU-BN baseline, then print the
 * query MSE +- 95 % CI per family before and after adaptation, in the layout
 * of the paper's Table 1. */
#include "example_util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: maml_regression [options]\n"
            "  --iterations N     meta-updates (default 2000)\n"
            "  --meta-batch N     tasks per meta-update (default 25)\n"
            "  --inner-steps N    SGD steps of adaptation (default 5)\n"
            "  --inner-lr X       adaptation step size (default 0.001, the paper's)\n"
            "  --outer-lr X       Adam step size (default 0.001)\n"
            "  --first-order      first-order MAML (inner gradients as constants)\n"
            "  --recompute        second order, recomputing steps (memory flat in the steps)\n"
            "  --threads N        worker threads (default 2)\n"
            "  --seed N           seed of initialisation and training tasks (default 1)\n"
            "  --test-tasks N     test tasks per family (default 1000)\n"
            "  --test-seed N      seed of the fixed test set (default 1000003)\n"
            "  --shots N          support points per task (default 10)\n"
            "  --hidden N         units of each hidden layer of the MLP (default 50)\n"
            "  --clip-norm X      clip the meta-gradient's norm at X (default 0: off)\n"
            "  --inner-lr-mode M  fixed (default), per-tensor or per-element: learned inner step sizes\n"
            "                     (Meta-SGD), inner_lr * exp(rho), rho trained with the weights\n"
            "  --inner-lr-max X   bound the learned rates smoothly below X (> --inner-lr; default 0: none)\n"
            "  (the M-NAS options of mnas_demo, --arch-lr, --path-dropout, --beta, --nodes, --z-dim,\n"
            "  --f-dim, --controller-hidden, --encoder, --modulation, --modulator-bias, --modulator-form,\n"
            "  --encoder-input-scale, are accepted and have no effect on MAML)\n"
            EX_CKPT_USAGE
            "  --version          print the program's and the library's version\n"
            "  --help, -h         this text\n"
            "Results go to stdout, progress to stderr.\n");
}

int main(int argc, char **argv)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.threads = 2;
    o.seed = 1;
    long long iterations = 2000, test_tasks = 1000, test_seed = 1000003, shots = 10;
    ex_ckpt ck = { NULL, 0, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, end;
        if (!strcmp(a, "--first-order") || !strcmp(a, "--recompute")) {
            o.inner_mode = a[2] == 'f' ? MNAS_INNER_FIRST_ORDER : MNAS_INNER_RECOMPUTE;
            continue;
        }
        if ((end = ex_option_start("maml_regression", a, v, usage)) >= 0) return end;
        if (ex_learner_option(a, v, &o, &ok) || ex_checkpoint_option(a, v, &ck, &ok)) {
            /* handled */
        } else if (!strcmp(a, "--iterations")) {
            ok = ex_int(v, a, 0, 100000000, &iterations);
        } else if (!strcmp(a, "--test-tasks")) {
            ok = ex_int(v, a, 1, 1000000, &test_tasks);
        } else if (!strcmp(a, "--test-seed")) {
            ok = ex_int(v, a, 0, INT64_MAX, &test_seed);
        } else if (!strcmp(a, "--shots")) {
            ok = ex_int(v, a, 1, 100000, &shots);
        } else {
            return ex_unknown_option(a, usage);
        }
        if (!ok) return 2;
        i++;
    }

    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    int rc = 1;
    mnas_learner *l = NULL;
    mnas_task_set *test = NULL;
    double *before = NULL, *after = NULL;
    if (!ex_mpi_join(ctx, &argc, &argv)) goto fail;
    if (ck.resume && !ex_resume_options(ctx, ck.resume, &o)) goto fail;
    ex_source src = { ctx, MNAS_REGRESSION_OPTIONS_INIT, o.seed };
    src.ro.k_shot = (int)shots;
    src.ro.k_query = (int)shots;
    l = mnas_learner_create(ctx, &o);
    test = mnas_regression_test_set(ctx, &src.ro, (uint64_t)test_seed, (size_t)test_tasks);
    if (!l || !test || ex_mpi_distribute(l) != MNAS_OK) goto fail;
    if (ck.resume) {
        if (mnas_learner_load(l, ck.resume) != MNAS_OK) goto fail;
        printf("resumed from %s at iteration %lld\n", ck.resume, (long long)mnas_learner_iteration(l));
    }
    long long todo = iterations - mnas_learner_iteration(l);
    if (todo < 0) todo = 0;
    printf("MAML on toy regression: %d-shot, %lld iterations x %d tasks, inner %d x %g (%s), %d threads, seed %llu\n",
           (int)shots, iterations, o.meta_batch, o.inner_steps, o.inner_lr,
           o.inner_mode == MNAS_INNER_FIRST_ORDER ? "first order"
           : o.inner_mode == MNAS_INNER_RECOMPUTE ? "second order, recomputed"
                                                  : "second order",
           o.threads, (unsigned long long)o.seed);
    ex_progress pr;
    ex_progress_init(&pr, "meta-train", todo, o.meta_batch);
    if (ex_train(l, ex_regression_source, &src, todo, ck.save, ck.every, ex_progress_cb, &pr) != MNAS_OK) goto fail;
    double train_s = ex_now() - pr.start;
    size_t n = mnas_task_set_size(test);
    before = malloc(n * sizeof *before);
    after = malloc(n * sizeof *after);
    if (!before || !after) goto fail;
    if (mnas_learner_evaluate(l, test, -1, before, after) != MNAS_OK) goto fail;
    double mb[5], cb[5], ma[5], ca[5];
    ex_family_stats(test, before, mb, cb);
    ex_family_stats(test, after, ma, ca);
    printf("\nQuery MSE +- 95%% CI over %lld test tasks per family (%d-shot), training took %.1f s\n", test_tasks,
           (int)shots, train_s);
    printf("%-22s %-7s", "Model", "Archs.");
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++) printf(" %-17s", mnas_regression_family_name(f));
    printf(" %-17s\n", "Averaged");
    printf("%-22s %-7s", "MAML (before adapt.)", "5 FCs");
    for (int f = 0; f <= MNAS_REGRESSION_FAMILIES; f++) printf(" %7.3f +- %-6.3f", mb[f], cb[f]);
    printf("\n%-22s %-7s", "MAML", "5 FCs");
    for (int f = 0; f <= MNAS_REGRESSION_FAMILIES; f++) printf(" %7.3f +- %-6.3f", ma[f], ca[f]);
    printf("\n");
    rc = 0;
fail:
    if (rc) fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
    free(before);
    free(after);
    mnas_task_set_free(test);
    mnas_learner_free(l);
    ex_mpi_leave();
    mnas_ctx_free(ctx);
    return rc;
}
