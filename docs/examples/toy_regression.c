/* Worked example of data.h and meta.h: MAML on the paper's toy regression
 * for a few meta-updates, then the query MSE of a small test set before and
 * after the 5 inner SGD steps. Exits 0 when adaptation helps. */
#include <stdio.h>

#include <mnas/mnas.h>

/* Training tasks: number index of the stream with seed 1 (thread-safe: a
 * pure function of its arguments). */
static mnas_task *source(void *user, uint64_t index)
{
    return mnas_regression_task(user, NULL, 1, index, -1);
}

int main(void)
{
    mnas_ctx *ctx = NULL;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;

    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = MNAS_METHOD_MAML;
    o.meta_batch = 4;
    o.inner_lr = 0.01;
    o.hidden = 20;
    o.layers = 3;
    o.seed = 7;
    mnas_learner *l = mnas_learner_create(ctx, &o);
    mnas_task_set *test = mnas_regression_test_set(ctx, NULL, 99, 5); /* 5 per family */
    if (!l || !test) {
        fprintf(stderr, "setup: %s\n", mnas_ctx_last_error(ctx));
        return 1;
    }
    if (mnas_learner_train(l, source, ctx, 20, NULL, NULL) != MNAS_OK) {
        fprintf(stderr, "train: %s\n", mnas_ctx_last_error(ctx));
        return 1;
    }
    size_t n = mnas_task_set_size(test);
    double before[20], after[20], mb = 0, ma = 0;
    if (n > 20 || mnas_learner_evaluate(l, test, -1, before, after) != MNAS_OK) return 1;
    for (size_t i = 0; i < n; i++) {
        mb += before[i] / (double)n;
        ma += after[i] / (double)n;
    }
    printf("%s after %lld meta-updates: query MSE %.3f before, %.3f after adaptation\n",
           mnas_method_name(o.method), (long long)mnas_learner_iteration(l), mb, ma);
    mnas_task_set_free(test);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
    return ma < mb ? 0 : 1;
}
