/* The paper's toy regression: four function families, a deterministic task
 * sampler keyed by (seed, index), the true functions, and fixed test sets. */
#include <math.h>
#include <string.h>

#include "data/data_internal.h"

#define TWO_PI 6.28318530717958647692528676655900577
#define K_MAX 1000000
#define N_PER_FAMILY_MAX 10000000u
#define ALL_FAMILIES ((1u << MNAS_REGRESSION_FAMILIES) - 1u)

/* Each family's parameters, in the order they are drawn and returned by
 * mnas_task_params (the order of data.h), with their uniform ranges. */
typedef struct family_spec {
    const char *name;
    int n_params;
    double lo[5], hi[5];
} family_spec;

static const family_spec k_families[MNAS_REGRESSION_FAMILIES] = {
    /* a sin(w x) + b: a, w, b */
    { "sinusoid", 3, { 0.1, 0.8, 0.0 }, { 5.0, 1.2, TWO_PI } },
    /* a x + b: a, b */
    { "linear", 2, { -3.0, -3.0 }, { 3.0, 3.0 } },
    /* a x^2 + b x + c: a, b, c */
    { "quadratic", 3, { -0.2, -2.0, -3.0 }, { 0.2, 2.0, 3.0 } },
    /* a1 sin(w x + b1) + a2 sin(2 w x + b2): a1, a2, b1, b2, w */
    { "harmonics", 5, { 0.1, 0.1, 0.0, 0.0, 0.8 }, { 5.0, 5.0, TWO_PI, TWO_PI, 1.2 } },
};

const char *mnas_regression_family_name(int family)
{
    if (family < 0 || family >= MNAS_REGRESSION_FAMILIES) return "unknown";
    return k_families[family].name;
}

/* The true function, in double, written out so that the order of operations
 * (and so the rounding) is fixed. */
static double family_eval(int family, const double *p, double x)
{
    switch (family) {
    case MNAS_FAMILY_SINUSOID: return p[0] * sin(p[1] * x) + p[2];
    case MNAS_FAMILY_LINEAR: return p[0] * x + p[1];
    case MNAS_FAMILY_QUADRATIC: return p[0] * x * x + p[1] * x + p[2];
    case MNAS_FAMILY_HARMONICS: return p[0] * sin(p[4] * x + p[2]) + p[1] * sin(2.0 * p[4] * x + p[3]);
    default: return NAN;
    }
}

double mnas_regression_eval(const mnas_task *task, double x)
{
    if (!mnas__task_ok(task) || task->n_params == 0) return NAN;
    return family_eval(task->family, task->params, x);
}

static int popcount4(unsigned mask)
{
    int n = 0;
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++) n += (int)((mask >> f) & 1u);
    return n;
}

/* Copy and validate the caller's options (NULL: the defaults). */
static mnas_status read_options(mnas_ctx *ctx, const char *fn, const mnas_regression_options *opts,
                                mnas_regression_options *o)
{
    const mnas_regression_options defaults = MNAS_REGRESSION_OPTIONS_INIT;
    *o = defaults;
    if (opts) {
        /* This is the first version of the struct: a smaller size comes from
         * no release, a larger one from a newer header whose extra fields this
         * library could not honour. Later versions accept every older size. */
        if (opts->struct_size != sizeof(mnas_regression_options))
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: options struct_size is %zu, this library knows %zu "
                               "(initialise with MNAS_REGRESSION_OPTIONS_INIT)",
                               fn, opts->struct_size, sizeof(mnas_regression_options));
        memcpy(o, opts, sizeof *o);
    }
    if (o->k_shot < 1 || o->k_shot > K_MAX)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: k_shot %d is outside 1..%d", fn, o->k_shot, K_MAX);
    if (o->k_query < 1 || o->k_query > K_MAX)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: k_query %d is outside 1..%d", fn, o->k_query, K_MAX);
    if (o->families == 0 || (o->families & ~ALL_FAMILIES) != 0)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: families mask 0x%x is empty or has bits beyond 0x%x", fn,
                           o->families, ALL_FAMILIES);
    return MNAS_OK;
}

/* Draw task (seed, index) from validated options. The order of the draws is
 * part of the contract (docs/data.md), so that a task can be rebuilt from
 * its seed anywhere, with a fresh generator mnas_rng_create(ctx, seed, index):
 *   1. if family < 0: k = mnas_rng_below(rng, popcount(mask)) and the family
 *      is the k-th set bit of the mask, counting from bit 0 (a forced family
 *      draws nothing);
 *   2. the family's parameters in the order of data.h, each
 *      lo + (hi - lo) * mnas_rng_uniform(rng);
 *   3. u = -4 + 8 * mnas_rng_uniform(rng);
 *   4. the k_shot support inputs, then the k_query query inputs, each
 *      u + sqrt(2) * mnas_rng_normal(rng), rounded to mnas_real; y = f(x) is
 *      computed in double from the rounded x, then rounded to mnas_real. */
static mnas_task *sample_task(mnas_ctx *ctx, const mnas_regression_options *o, uint64_t seed,
                              uint64_t index, int family, const char *fn)
{
    mnas_rng *rng = mnas_rng_create(ctx, seed, index);
    if (!rng) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a random number generator", fn);
        return NULL;
    }
    mnas_task *task = mnas__task_new(ctx, fn);
    if (!task) {
        mnas_rng_free(rng);
        return NULL;
    }

    if (family < 0) { /* 1 */
        uint64_t k = mnas_rng_below(rng, (uint64_t)popcount4(o->families));
        for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++)
            if ((o->families >> f) & 1u) {
                if (k == 0) {
                    family = f;
                    break;
                }
                k--;
            }
    }
    const family_spec *spec = &k_families[family];
    task->family = family;
    task->n_params = spec->n_params;
    for (int i = 0; i < spec->n_params; i++) /* 2 */
        task->params[i] = spec->lo[i] + (spec->hi[i] - spec->lo[i]) * mnas_rng_uniform(rng);
    const double u = -4.0 + 8.0 * mnas_rng_uniform(rng); /* 3 */

    const int64_t shape_s[2] = { o->k_shot, 1 };
    const int64_t shape_q[2] = { o->k_query, 1 };
    task->support_x = mnas_tensor_zeros(ctx, 2, shape_s);
    task->support_y = mnas_tensor_zeros(ctx, 2, shape_s);
    task->query_x = mnas_tensor_zeros(ctx, 2, shape_q);
    task->query_y = mnas_tensor_zeros(ctx, 2, shape_q);
    if (!task->support_x || !task->support_y || !task->query_x || !task->query_y) {
        mnas__task_destroy(task);
        mnas_rng_free(rng);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the task's tensors", fn);
        return NULL;
    }

    const double sd = sqrt(2.0); /* variance 2 */
    mnas_tensor *const xs[2] = { task->support_x, task->query_x };
    mnas_tensor *const ys[2] = { task->support_y, task->query_y };
    for (int s = 0; s < 2; s++) { /* 4: support, then query */
        mnas_real *x = mnas_tensor_data(xs[s]);
        mnas_real *y = mnas_tensor_data(ys[s]);
        const int64_t n = mnas_tensor_size(xs[s]);
        for (int64_t i = 0; i < n; i++) {
            x[i] = (mnas_real)(u + sd * mnas_rng_normal(rng));
            /* From the stored x, so every stored pair lies on the true curve. */
            y[i] = (mnas_real)family_eval(family, task->params, (double)x[i]);
        }
    }
    mnas_rng_free(rng);
    return task;
}

mnas_task *mnas_regression_task(mnas_ctx *ctx, const mnas_regression_options *opts, uint64_t seed,
                                uint64_t index, int family)
{
    static const char fn[] = "mnas_regression_task";
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_regression_options o;
    if (read_options(ctx, fn, opts, &o) != MNAS_OK) return NULL;
    if (family >= MNAS_REGRESSION_FAMILIES) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: family %d is not one of 0..%d", fn, family,
                    MNAS_REGRESSION_FAMILIES - 1);
        return NULL;
    }
    if (family >= 0 && !((o.families >> family) & 1u)) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: family %d (%s) is not in the families mask 0x%x", fn, family,
                    k_families[family].name, o.families);
        return NULL;
    }
    return sample_task(ctx, &o, seed, index, family, fn);
}

/* Family-major: task i of family f is task f * n_per_family + i of the seed,
 * with the family forced, so a family's tasks do not depend on which other
 * families are in the mask. */
mnas_task_set *mnas_regression_test_set(mnas_ctx *ctx, const mnas_regression_options *opts, uint64_t seed,
                                        size_t n_per_family)
{
    static const char fn[] = "mnas_regression_test_set";
    if (!mnas__ctx_ok(ctx)) return NULL;
    mnas_regression_options o;
    if (read_options(ctx, fn, opts, &o) != MNAS_OK) return NULL;
    if (n_per_family == 0 || n_per_family > N_PER_FAMILY_MAX) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: n_per_family %zu is outside 1..%u", fn, n_per_family,
                    N_PER_FAMILY_MAX);
        return NULL;
    }
    mnas_task_set *set = mnas__task_set_new(ctx, fn);
    if (!set) return NULL;
    if (mnas__task_set_reserve(set, n_per_family * (size_t)popcount4(o.families), fn) != MNAS_OK) {
        mnas_task_set_free(set);
        return NULL;
    }
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++) {
        if (!((o.families >> f) & 1u)) continue;
        for (size_t i = 0; i < n_per_family; i++) {
            uint64_t index = (uint64_t)f * (uint64_t)n_per_family + (uint64_t)i;
            mnas_task *task = sample_task(ctx, &o, seed, index, f, fn);
            /* The room is reserved, so add cannot fail; it frees the task if it does. */
            if (!task || mnas_task_set_add(set, task) != MNAS_OK) {
                mnas_task_set_free(set);
                return NULL;
            }
        }
    }
    return set;
}
