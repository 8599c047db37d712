/* Small meta-training workloads (toy regression or few-shot images, any of
 * the four methods) and a hash of a learner's parameters, shared by the
 * distribution tests: the in-process one (tests/test_distribution.c) and
 * the MPI ones (mpi/tests/). Header only, no Check. */
#ifndef MNAS_TEST_DIST_WORKLOAD_H
#define MNAS_TEST_DIST_WORKLOAD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

typedef struct {
    mnas_ctx *ctx;
    int images;
    mnas_regression_options ro;
    mnas_image_dataset *ds;
    mnas_fewshot_sampler *sampler;
} dw_data;

static const mnas_method dw_methods[4] = { MNAS_METHOD_MAML, MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED,
                                           MNAS_METHOD_MNAS_NM };

/* 5 tasks per meta-update: 1, 2 and 3 processes split it unevenly. */
static inline mnas_learner_options dw_options(mnas_method m, int images, int threads)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.meta_batch = 5;
    o.inner_steps = 2;
    o.inner_lr = images ? 0.1 : 0.01;
    o.outer_lr = 0.01;
    o.arch_lr = 0.01;
    o.z_dim = 8;
    o.f_dim = 8;
    o.controller_hidden = 8;
    o.threads = threads;
    o.seed = 7;
    if (images) {
        o.classes = 3;
        o.image_size = m == MNAS_METHOD_MAML ? 16 : 8;
        o.filters = 4;
        o.channels = 4;
        o.nodes = 2;
    } else {
        o.hidden = 16;
        o.layers = 3;
    }
    return o;
}

/* The tasks: 12 classes of s x s grey images (a class is a random pattern,
 * its images that pattern plus noise), 3-way 1-shot 2-query; or the toy
 * regression families. 0 on success. */
static inline int dw_init(dw_data *d, mnas_ctx *ctx, int images, int s)
{
    memset(d, 0, sizeof *d);
    d->ctx = ctx;
    d->images = images;
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    d->ro = ro;
    if (!images) return 0;
    enum { CLASSES = 12, PER = 6 };
    size_t counts[CLASSES], px = (size_t)s * (size_t)s;
    mnas_real *data = malloc(CLASSES * PER * px * sizeof *data);
    mnas_rng *r = mnas_rng_create(ctx, 5, 0);
    if (!data || !r) {
        free(data);
        mnas_rng_free(r);
        return -1;
    }
    for (size_t c = 0; c < CLASSES; c++) {
        counts[c] = PER;
        for (size_t i = 0; i < PER; i++)
            for (size_t p = 0; p < px; p++)
                data[(c * PER + i) * px + p] =
                    (mnas_real)((c * 7 + p * 3) % 5 < 2 ? 0.1 : 0.9) + (mnas_real)(0.3 * (mnas_rng_uniform(r) - 0.5));
    }
    mnas_rng_free(r);
    d->ds = mnas_image_dataset_create(ctx, CLASSES, counts, NULL, 1, s, s, data);
    free(data);
    if (!d->ds) return -1;
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.way = 3;
    fo.shot = 1;
    fo.query = 2;
    const mnas_image_dataset *dss[1] = { d->ds };
    d->sampler = mnas_fewshot_sampler_create(ctx, dss, 1, &fo);
    return d->sampler ? 0 : -1;
}

static inline void dw_free(dw_data *d)
{
    mnas_fewshot_sampler_free(d->sampler);
    mnas_image_dataset_free(d->ds);
}

static inline mnas_task *dw_source(void *user, uint64_t index)
{
    dw_data *d = user;
    if (d->images) return mnas_fewshot_task(d->ctx, d->sampler, 31, index);
    return mnas_regression_task(d->ctx, &d->ro, 11, index, -1);
}

/* FNV-1a over every parameter's bytes, in order. */
static inline uint64_t dw_hash(const mnas_learner *l)
{
    const mnas_params *p = mnas_learner_params(l);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        const unsigned char *b = (const unsigned char *)mnas_tensor_cdata(t);
        size_t n = (size_t)mnas_tensor_size(t) * sizeof(mnas_real);
        for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 1099511628211ull;
    }
    return h;
}

#endif
