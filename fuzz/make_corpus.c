/* Writes the checkpoint seeds of fuzz/corpus/checkpoint: files of the
 * learners fuzz_checkpoint.c loads into (MAML; M-NAS-Shared in the
 * evaluation phase) and a parameter set, each once per harness mode (the
 * first byte: 0 = as is, 1 = re-seal CRCs). Usage: make_corpus <folder>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_task *source(void *user, uint64_t index)
{
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    ro.k_shot = 3;
    ro.k_query = 3;
    return mnas_regression_task(user, &ro, 2, index, -1);
}

static int emit(const char *dir, const char *name, const char *tmp)
{
    FILE *f = fopen(tmp, "rb");
    if (!f) return 1;
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    remove(tmp);
    for (int mode = 0; mode < 2; mode++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s-mode%d", dir, name, mode);
        FILE *o = fopen(path, "wb");
        if (!o) return 1;
        unsigned char m = (unsigned char)mode;
        fwrite(&m, 1, 1, o);
        fwrite(buf, 1, n, o);
        fclose(o);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus <folder>\n");
        return 2;
    }
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/.seed.tmp", argv[1]);
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.seed = 8;
    o.meta_batch = 2;
    o.inner_steps = 1;
    o.hidden = 3;
    o.layers = 2;
    o.threads = 1;
    mnas_learner *maml = mnas_learner_create(ctx, &o);
    o.method = MNAS_METHOD_MNAS_SHARED;
    o.z_dim = 2;
    o.f_dim = 2;
    o.nodes = 1;
    mnas_learner *shared = mnas_learner_create(ctx, &o);
    int rc = !maml || !shared;
    rc |= mnas_learner_train(maml, source, ctx, 1, NULL, NULL) != MNAS_OK;
    rc |= mnas_learner_save(maml, tmp) != MNAS_OK || emit(argv[1], "maml", tmp);
    rc |= mnas_learner_train(shared, source, ctx, 1, NULL, NULL) != MNAS_OK;
    rc |= mnas_learner_discretize(shared, 0) != MNAS_OK;
    rc |= mnas_learner_save(shared, tmp) != MNAS_OK || emit(argv[1], "mnas-shared", tmp);
    mnas_params *p = mnas_params_create(ctx);
    int64_t s1[2] = { 2, 3 }, s2[1] = { 2 };
    rc |= mnas_params_add(p, "w", 2, s1, MNAS_INIT_NORMAL, 1, 0) < 0 || mnas_params_add(p, "b", 1, s2, MNAS_INIT_NORMAL, 1, 0) < 0;
    rc |= mnas_params_save(p, tmp) != MNAS_OK || emit(argv[1], "params", tmp);
    /* An Adam optimiser's state after two steps (gradients of 0.5 everywhere). */
    mnas_optim *op = mnas_optim_create(p, NULL);
    rc |= !op;
    for (int s = 0; op && s < 2; s++) {
        for (size_t i = 0; i < mnas_params_count(p); i++) {
            mnas_tensor *g = mnas_params_grad(p, i);
            for (int64_t j = 0; j < mnas_tensor_size(g); j++) mnas_tensor_data(g)[j] = 0.5f;
        }
        rc |= mnas_optim_step(op) != MNAS_OK;
    }
    rc |= !op || mnas_optim_save(op, tmp) != MNAS_OK || emit(argv[1], "optim", tmp);
    mnas_optim_free(op);
    if (rc) fprintf(stderr, "make_corpus: %s\n", mnas_ctx_last_error(ctx));
    mnas_params_free(p);
    mnas_learner_free(maml);
    mnas_learner_free(shared);
    mnas_ctx_free(ctx);
    return rc;
}
