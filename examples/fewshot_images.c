/* Few-shot image classification (the paper's Tables 2 and 3): N-way K-shot
 * tasks from one or several image datasets (PNG class folders or IDX files;
 * several datasets = one dataset per task, the paper's "Multi-datasets"),
 * meta-trained with MAML's 4-block conv network or with the M-NAS variants
 * on the DARTS supernet (one normal + one reduction cell), then evaluated
 * on tasks of held-out classes: accuracy +- 95 % CI per dataset and
 * averaged (Table-2 layout), and the searched normal/reduction genotypes
 * (text and Graphviz DOT).
 *
 *   fewshot_images --dataset build/datasets/glyphs \
 *                  --dataset build/datasets/fashion-mnist --method all
 *
 * A dataset folder holding train-images-idx3-ubyte[.gz] and
 * train-labels-idx1-ubyte[.gz] is read as IDX, any other folder as PNG
 * class folders. Classes are split into train / val / test by fraction
 * (--train-fraction, --val-fraction, --split-seed); training draws from the
 * train classes, evaluation from the test classes. */
#include <sys/stat.h>

#include "example_util.h"

#define MAX_DATASETS 8

typedef struct {
    const char *path;
    char name[64];
    mnas_image_dataset *all, *train, *test;
    mnas_fewshot_sampler *test_sampler;
    mnas_task_set *test_set;
} dataset;

typedef struct {
    mnas_ctx *ctx;
    mnas_fewshot_sampler *sampler;
    uint64_t seed;
} image_source;

static mnas_task *image_task(void *user, uint64_t index)
{
    image_source *s = user;
    return mnas_fewshot_task(s->ctx, s->sampler, s->seed, index);
}

static int file_exists(const char *dir, const char *name, char *out, size_t cap)
{
    struct stat st;
    snprintf(out, cap, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0) return 1;
    snprintf(out, cap, "%s/%s", dir, name);
    return stat(out, &st) == 0;
}

static int load_dataset(mnas_ctx *ctx, dataset *d, int size, int channels, const char *out_dir)
{
    char img[4096], lab[4096], cache[4096];
    const char *base = strrchr(d->path, '/');
    base = base && base[1] ? base + 1 : d->path;
    snprintf(d->name, sizeof d->name, "%s", base);
    mnas_image_load_options lo = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    lo.channels = channels;
    lo.height = lo.width = size;
    if (file_exists(d->path, "train-images-idx3-ubyte", img, sizeof img) &&
        file_exists(d->path, "train-labels-idx1-ubyte", lab, sizeof lab)) {
        d->all = mnas_image_dataset_load_idx(ctx, img, lab, &lo);
    } else {
        snprintf(cache, sizeof cache, "%s/cache-%s-%dx%dx%d.bin", out_dir, d->name, channels, size, size);
        lo.cache_path = cache;
        d->all = mnas_image_dataset_load_folder(ctx, d->path, &lo);
    }
    if (!d->all) {
        fprintf(stderr, "error: dataset %s: %s\n", d->path, mnas_ctx_last_error(ctx));
        return 0;
    }
    return 1;
}

typedef struct {
    mnas_method method;
    double mean[MAX_DATASETS + 1], ci[MAX_DATASETS + 1];
    double train_seconds;
    int64_t iterations;
} result;

/* Train until the iteration or time budget is spent. */
typedef struct {
    ex_progress p;
    double deadline;
    double last; /* time of the last progress line */
} timed_progress;

static int timed_cb(void *user, int64_t it, int64_t total, double loss)
{
    timed_progress *t = user;
    if (t->deadline <= 0) {
        ex_progress_cb(&t->p, it, total, loss);
        return 0;
    }
    /* A time budget: report the time left instead of an ETA. */
    ex_progress *p = &t->p;
    p->loss_avg = isnan(p->loss_avg) ? loss : 0.95 * p->loss_avg + 0.05 * loss;
    double nowt = ex_now(), el = nowt - p->start;
    int done = nowt > t->deadline;
    if (done || p->tty || nowt - t->last >= 10) {
        t->last = nowt;
        char e[32], r[32];
        ex_hms(el, e, sizeof e);
        ex_hms(done ? 0 : t->deadline - nowt, r, sizeof r);
        fprintf(stderr, "%s%s: iteration %lld  loss %.4f  %.1f tasks/s  elapsed %s  left %s%s", p->tty ? "\r" : "", p->label,
               (long long)it, p->loss_avg, (double)it * p->tasks_per_iter / (el > 0 ? el : 1e-9), e, r,
               p->tty && !done ? "   " : "\n");
        fflush(stderr);
    }
    return done;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fewshot_images --dataset DIR [--dataset DIR ...] [options]\n"
            "  --dataset DIR         a dataset: class folders of PNG images or IDX files (repeatable, up to 8;\n"
            "                        several datasets: one drawn per task, the paper's Multi-datasets)\n"
            "  --method M            mnas | mnas-shared | mnas-nm | maml | all (default maml and mnas; repeatable)\n"
            "  --way N               classes per task (default 5)\n"
            "  --shot K              support images per class (default 1)\n"
            "  --query Q             query images per class (default 15)\n"
            "  --image-size S        images are resized to S x S (default 28)\n"
            "  --channels C          1 (grey) or 3 (RGB) (default 1)\n"
            "  --iterations N        meta-updates of each method (default 1000)\n"
            "  --minutes M           time budget per method instead of --iterations (default 0: none)\n"
            "  --eval-iterations N   architecture-evaluation meta-updates after an M-NAS search (default 0)\n"
            "  --eval-tasks N        test tasks per dataset (default 600)\n"
            "  --eval-steps N        adaptation steps on a test task (default 10)\n"
            "  --supernet-channels C channels of the DARTS supernet cells (default 8)\n"
            "  --nodes N             intermediate nodes per cell (default 4, as DARTS)\n"
            "  --sample-ops K        M-NAS variants: ops per mixed edge drawn per task (Gumbel top-k, straight-through;\n"
            "                        default 0: every op, the paper's supernet; docs/images.md)\n"
            "  --stem-stride S       M-NAS variants: the supernet's stem reduces the images by S (1, 2 or 4; default 1;\n"
            "                        4 fits 84x84 in memory, docs/images.md)\n"
            "  --filters N           filters per block of MAML's 4-block conv network (default 32)\n"
            "  --first-order         first-order inner loop (no second derivatives)\n"
            "  --recompute-cells     second order, saving memory: inner steps recomputed in the backward pass and\n"
            "                        the supernet's cells checkpointed (same results; for 84x84, docs/images.md)\n"
            "  --train-fraction F    fraction of each dataset's classes used for training (default 0.64)\n"
            "  --val-fraction F      fraction held out for validation (default 0.16); the rest is the test split\n"
            "  --split-seed N        seed of the class split (default 1)\n"
            "  --out DIR             where genotype DOT files go (default fewshot-out; created when training starts)\n"
            "  --meta-batch N        tasks per meta-update (default 4)\n"
            "  --inner-steps N       adaptation SGD steps (default 5)\n"
            "  --inner-lr X          adaptation step size (default 0.01, the paper's for images)\n"
            "  --outer-lr X          Adam step size of the weights (default 0.001)\n"
            "  --arch-lr X           Adam step size of controller / shared alpha (default 1e-4)\n"
            "  --path-dropout P      probability of dropping each alpha entry while searching (default 0.1)\n"
            "  --threads N           worker threads (default 2)\n"
            "  --seed N              seed (default 1)\n");
    /* two strings: each within the 4095 characters C99 compilers must accept */
    fprintf(f,
            "M-NAS model options:\n"
            EX_MODEL_USAGE
            EX_CKPT_USAGE
            "                        (with several methods, each has its own file: PATH.<method>)\n"
            "  --version             print the program's and the library's version\n"
            "  --help, -h            this text\n"
            "Results go to stdout, progress to stderr.\n");
}

static void write_text(const char *path, const char *text)
{
    if (ex_rank != 0) return; /* rank 0 writes the files */
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "warning: cannot write %s\n", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* Figure 6 by dataset: the test tasks of every dataset (up to 100 each),
 * copied into one set with the dataset index as the family, then
 * ex_figure6 (t-SNE of the task embeddings z, one colour per dataset). */
static const char *fig6_names[MAX_DATASETS];
static const char *fig6_name(int k) { return k >= 0 && k < MAX_DATASETS ? fig6_names[k] : "?"; }

static void figure6_by_dataset(mnas_ctx *ctx, mnas_learner *l, mnas_method m, dataset *ds, int nds,
                               const char *out_dir)
{
    mnas_task_set *set = mnas_task_set_create(ctx);
    int ok = set != NULL;
    for (int k = 0; ok && k < nds; k++) {
        fig6_names[k] = ds[k].name;
        size_t n = mnas_task_set_size(ds[k].test_set);
        for (size_t i = 0; ok && i < n && i < 100; i++) {
            const mnas_task *t = mnas_task_set_get(ds[k].test_set, i);
            mnas_task *c = mnas_task_create(ctx, mnas_task_support_x(t), mnas_task_support_y(t),
                                            mnas_task_query_x(t), mnas_task_query_y(t), k);
            ok = c && mnas_task_set_add(set, c) == MNAS_OK;
        }
    }
    char path[4096], title[96];
    snprintf(path, sizeof path, "%s/figure6-%s.png", out_dir, m == MNAS_METHOD_MNAS_SHARED ? "mnas-shared"
                                                             : m == MNAS_METHOD_MNAS_NM   ? "mnas-nm"
                                                                                          : "mnas");
    snprintf(title, sizeof title, "%s: z by dataset (t-SNE)", mnas_method_name(m));
    if (ok && ex_figure6(ctx, l, set, nds, 100, fig6_name, title, path))
        printf("  wrote %s (Figure 6: t-SNE of z, up to 100 test tasks per dataset)\n", path);
    else
        fprintf(stderr, "warning: figure 6: %s\n", mnas_ctx_last_error(ctx));
    mnas_task_set_free(set);
}

/* Print the genotype of the first test task of each dataset (the shared
 * one for M-NAS-Shared) and write it as DOT. */
static void report_genotypes(mnas_ctx *ctx, mnas_learner *l, mnas_method m, dataset *ds, int nds, const char *out_dir)
{
    char *buf = malloc(1 << 16);
    if (!buf) return;
    for (int k = 0; k < nds; k++) {
        mnas_genotype *g = mnas_learner_genotype(l, mnas_task_set_get(ds[k].test_set, 0));
        if (!g) {
            fprintf(stderr, "warning: genotype: %s\n", mnas_ctx_last_error(ctx));
            continue;
        }
        if (mnas_genotype_to_string(g, buf, 1 << 16) >= 0)
            printf("  %-12s genotype (%s): %s\n", mnas_method_name(m),
                   m == MNAS_METHOD_MNAS_SHARED ? "shared" : ds[k].name, buf);
        char title[128], path[4096];
        snprintf(title, sizeof title, "%s, %s", mnas_method_name(m), ds[k].name);
        if (mnas_genotype_to_dot(g, title, buf, 1 << 16) >= 0) {
            snprintf(path, sizeof path, "%s/genotype-%s-%s.dot", out_dir, mnas_method_name(m), ds[k].name);
            write_text(path, buf);
        }
        mnas_genotype_free(g);
        if (m == MNAS_METHOD_MNAS_SHARED) break;
    }
    free(buf);
}

int main(int argc, char **argv)
{
    mnas_learner_options base = MNAS_LEARNER_OPTIONS_INIT;
    base.meta_batch = 4;
    base.inner_lr = 0.01; /* the paper's inner learning rate for images */
    base.threads = 2;
    base.seed = 1;
    base.nodes = 4; /* DARTS */
    base.channels = 8;
    base.classes = 5;
    base.image_size = 28;
    const char *paths[MAX_DATASETS];
    int nds = 0, methods[4] = { 0, 0, 0, 0 }, any_method = 0;
    mnas_inner_mode inner_mode = MNAS_INNER_SECOND_ORDER; /* --first-order, --recompute-cells */
    long long way = 5, shot = 1, query = 15, size = 28, channels = 1, iterations = 1000, eval_iterations = 0;
    long long eval_tasks = 600, eval_steps = 10, split_seed = 1, n;
    double minutes = 0, train_fraction = 0.64, val_fraction = 0.16;
    const char *out_dir = "fewshot-out";
    ex_ckpt ck = { NULL, 0, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, end;
        if (!strcmp(a, "--first-order") || !strcmp(a, "--recompute-cells")) {
            inner_mode = !strcmp(a, "--first-order") ? MNAS_INNER_FIRST_ORDER : MNAS_INNER_RECOMPUTE_CELLS;
            continue;
        }
        if ((end = ex_option_start("fewshot_images", a, v, usage)) >= 0) return end;
        i++;
        if (ex_learner_option(a, v, &base, &ok) || ex_checkpoint_option(a, v, &ck, &ok)) {
        } else if (!strcmp(a, "--dataset")) {
            if (nds == MAX_DATASETS) {
                fprintf(stderr, "error: at most %d datasets\n", MAX_DATASETS);
                return 2;
            }
            paths[nds++] = v;
        } else if (!strcmp(a, "--method")) {
            int k = !strcmp(v, "maml") ? 0 : !strcmp(v, "mnas") ? 1 : !strcmp(v, "mnas-shared") ? 2
                    : !strcmp(v, "mnas-nm") ? 3 : !strcmp(v, "all") ? 4 : -1;
            if (k < 0) {
                fprintf(stderr, "error: unknown method %s\n", v);
                return usage(stderr), 2;
            }
            for (int m = 0; m < 4; m++)
                if (k == 4 || k == m) methods[m] = 1;
            any_method = 1;
        } else if (!strcmp(a, "--way")) {
            ok = ex_int(v, a, 2, 100, &way);
        } else if (!strcmp(a, "--shot")) {
            ok = ex_int(v, a, 1, 100, &shot);
        } else if (!strcmp(a, "--query")) {
            ok = ex_int(v, a, 1, 100, &query);
        } else if (!strcmp(a, "--image-size")) {
            ok = ex_int(v, a, 4, 256, &size);
        } else if (!strcmp(a, "--channels")) {
            ok = ex_int(v, a, 1, 3, &channels) && (channels == 1 || channels == 3);
            if (!ok) fprintf(stderr, "error: --channels is 1 or 3\n");
        } else if (!strcmp(a, "--iterations")) {
            ok = ex_int(v, a, 0, 100000000, &iterations);
        } else if (!strcmp(a, "--minutes")) {
            ok = ex_double(v, a, 0, 100000, &minutes);
        } else if (!strcmp(a, "--eval-iterations")) {
            ok = ex_int(v, a, 0, 100000000, &eval_iterations);
        } else if (!strcmp(a, "--eval-tasks")) {
            ok = ex_int(v, a, 2, 1000000, &eval_tasks);
        } else if (!strcmp(a, "--eval-steps")) {
            ok = ex_int(v, a, 0, 1000, &eval_steps);
        } else if (!strcmp(a, "--supernet-channels")) {
            ok = ex_int_field(v, a, 2, 1024, &base.channels);
        } else if (!strcmp(a, "--nodes")) {
            ok = ex_int_field(v, a, 1, 8, &base.nodes);
        } else if (!strcmp(a, "--sample-ops")) { /* k ops per mixed edge (docs/images.md); 0: all */
            ok = ex_int(v, a, 0, 8, &n);
            base.sample_ops = n;
        } else if (!strcmp(a, "--stem-stride")) {
            ok = ex_int(v, a, 1, 4, &n) && (n != 3 || (fprintf(stderr, "error: --stem-stride: 1, 2 or 4\n"), 0));
            base.stem_stride = (int)n;
        } else if (!strcmp(a, "--filters")) {
            ok = ex_int_field(v, a, 1, 1024, &base.filters);
        } else if (!strcmp(a, "--train-fraction")) {
            ok = ex_double(v, a, 0, 1, &train_fraction);
        } else if (!strcmp(a, "--val-fraction")) {
            ok = ex_double(v, a, 0, 1, &val_fraction);
        } else if (!strcmp(a, "--split-seed")) {
            ok = ex_int(v, a, 0, INT64_MAX, &split_seed);
        } else if (!strcmp(a, "--out")) {
            out_dir = v;
        } else {
            return ex_unknown_option(a, usage);
        }
        if (!ok) return 2;
    }
    if (!nds) {
        fprintf(stderr, "error: give at least one --dataset (see docs/data.md: sh scripts/bootstrap.sh datasets)\n");
        return usage(stderr), 2;
    }
    if (!any_method) methods[0] = methods[1] = 1;
    if (train_fraction + val_fraction >= 1) {
        fprintf(stderr, "error: --train-fraction + --val-fraction must leave classes for the test split\n");
        return 2;
    }
    base.classes = (int)way;
    base.in_channels = (int)channels;
    base.image_size = (int)size;
    base.inner_mode = inner_mode;

    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    if (!ex_mpi_join(ctx, &argc, &argv)) {
        mnas_ctx_free(ctx);
        return 1;
    }
    if (minutes > 0 && ex_mpi_size() > 1) {
        /* Each process has its own clock: they could stop after different
         * numbers of meta-updates. */
        fprintf(stderr, "error: --minutes is not available under mpirun; give --iterations\n");
        ex_mpi_leave();
        mnas_ctx_free(ctx);
        return 2;
    }
    dataset ds[MAX_DATASETS];
    memset(ds, 0, sizeof ds);
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.way = (int)way;
    fo.shot = (int)shot;
    fo.query = (int)query;
    const mnas_image_dataset *train_sets[MAX_DATASETS];
    int rc = 1;
    /* The output folder (the decoded-image caches, the DOT files). A run that
     * fails before writing anything there removes it again if it made it. */
    int made_out = mkdir(out_dir, 0777) == 0;
    mnas_fewshot_sampler *train_sampler = NULL;
    result res[4];
    int nres = 0;
    double t_load = ex_now();
    for (int k = 0; k < nds; k++) {
        ds[k].path = paths[k];
        if (!load_dataset(ctx, &ds[k], (int)size, (int)channels, out_dir)) goto done;
        mnas_image_split_options so = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
        so.train_fraction = train_fraction;
        so.val_fraction = val_fraction;
        so.seed = (uint64_t)split_seed;
        if (mnas_image_dataset_split(ds[k].all, &so, &ds[k].train, NULL, &ds[k].test) != MNAS_OK) {
            fprintf(stderr, "error: splitting %s: %s\n", ds[k].path, mnas_ctx_last_error(ctx));
            goto done;
        }
        train_sets[k] = ds[k].train;
        ds[k].test_sampler = mnas_fewshot_sampler_create(ctx, (const mnas_image_dataset *const *)&ds[k].test, 1, &fo);
        ds[k].test_set = ds[k].test_sampler ? mnas_fewshot_test_set(ctx, ds[k].test_sampler, 0x7e57, (size_t)eval_tasks)
                                            : NULL;
        if (!ds[k].test_set) {
            fprintf(stderr, "error: test tasks of %s: %s\n", ds[k].path, mnas_ctx_last_error(ctx));
            goto done;
        }
        printf("dataset %-14s %5zu classes (%zu train, %zu test), %zu images%s\n", ds[k].name,
               mnas_image_dataset_num_classes(ds[k].all), mnas_image_dataset_num_classes(ds[k].train),
               mnas_image_dataset_num_classes(ds[k].test), mnas_image_dataset_num_images(ds[k].all),
               mnas_image_dataset_from_cache(ds[k].all) ? " (decoded cache)" : "");
    }
    printf("loaded in %.1f s; %lld-way %lld-shot, %lld queries per class, %lldx%lld images, %lld channel(s)\n",
           ex_now() - t_load, way, shot, query, size, size, channels);
    train_sampler = mnas_fewshot_sampler_create(ctx, train_sets, (size_t)nds, &fo);
    if (!train_sampler) {
        fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
        goto done;
    }
    for (int m = 0; m < 4; m++) {
        if (!methods[m]) continue;
        static const mnas_method order[4] = { MNAS_METHOD_MAML, MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED,
                                              MNAS_METHOD_MNAS_NM };
        static const char *const flag[4] = { "maml", "mnas", "mnas-shared", "mnas-nm" };
        mnas_learner_options o = base;
        o.method = order[m];
        if (o.method == MNAS_METHOD_MAML) {
            o.sample_ops = 0; /* no mixed edges */
            o.stem_stride = 1; /* its own conv network */
        }
        int several = methods[0] + methods[1] + methods[2] + methods[3] > 1;
        char save_buf[4096], resume_buf[4096];
        const char *save = ex_ckpt_path(ck.save, several ? flag[m] : NULL, save_buf, sizeof save_buf);
        const char *resume = ex_ckpt_path(ck.resume, several ? flag[m] : NULL, resume_buf, sizeof resume_buf);
        if (resume && access(resume, F_OK) != 0) {
            printf("%s: no checkpoint %s, starting afresh\n", mnas_method_name(o.method), resume);
            resume = NULL;
        }
        if (resume && !ex_resume_options(ctx, resume, &o)) {
            fprintf(stderr, "error: resuming %s: %s\n", mnas_method_name(o.method), mnas_ctx_last_error(ctx));
            goto done;
        }
        mnas_learner *l = mnas_learner_create(ctx, &o);
        if (!l || ex_mpi_distribute(l) != MNAS_OK) {
            fprintf(stderr, "error: %s: %s\n", mnas_method_name(o.method), mnas_ctx_last_error(ctx));
            mnas_learner_free(l);
            goto done;
        }
        if (resume && mnas_learner_load(l, resume) != MNAS_OK) {
            fprintf(stderr, "error: resuming %s: %s\n", mnas_method_name(o.method), mnas_ctx_last_error(ctx));
            mnas_learner_free(l);
            goto done;
        }
        if (resume)
            printf("%s: resumed from %s at iteration %lld\n", mnas_method_name(o.method), resume,
                   (long long)mnas_learner_iteration(l));
        printf("\n%s: %lld meta-parameters, meta-batch %d, %d inner steps (%s), inner lr %g\n",
               mnas_method_name(o.method), (long long)mnas_params_numel(mnas_learner_params(l)), o.meta_batch,
               o.inner_steps,
               inner_mode == MNAS_INNER_FIRST_ORDER       ? "first order"
               : inner_mode == MNAS_INNER_RECOMPUTE_CELLS ? "second order, cells recomputed"
                                                          : "second order",
               o.inner_lr);
        image_source src = { ctx, train_sampler, o.seed ^ 0x5eed };
        timed_progress tp;
        /* --iterations is a total: a resumed run trains what is left. */
        int64_t total = minutes > 0 ? 100000000 : iterations - mnas_learner_iteration(l);
        if (total < 0) total = 0;
        ex_progress_init(&tp.p, mnas_method_name(o.method), total, o.meta_batch);
        tp.last = 0;
        double t0 = ex_now();
        tp.deadline = minutes > 0 ? t0 + 60 * minutes : 0;
        mnas_status st = total ? ex_train(l, image_task, &src, total, save, ck.every, timed_cb, &tp) : MNAS_OK;
        if (st == MNAS_OK && eval_iterations > 0 && o.method != MNAS_METHOD_MAML) {
            /* The architecture-evaluation phase (paper, "Architectures Evaluation"). */
            if (!mnas_learner_is_discrete(l)) st = mnas_learner_discretize(l, 0);
            ex_progress_init(&tp.p, "  discrete", eval_iterations, o.meta_batch);
            tp.deadline = 0;
            if (st == MNAS_OK) st = ex_train(l, image_task, &src, eval_iterations, save, ck.every, timed_cb, &tp);
        }
        if (st != MNAS_OK) {
            fprintf(stderr, "error: training %s: %s\n", mnas_method_name(o.method), mnas_ctx_last_error(ctx));
            mnas_learner_free(l);
            goto done;
        }
        result *r = &res[nres++];
        r->method = o.method;
        r->train_seconds = ex_now() - t0;
        r->iterations = mnas_learner_iteration(l);
        printf("%s: %lld meta-updates in %.1f s\n", mnas_method_name(o.method), (long long)r->iterations,
               r->train_seconds);
        double *acc = malloc((size_t)eval_tasks * sizeof *acc), *all = malloc((size_t)(eval_tasks * nds) * sizeof *all);
        for (int k = 0; k < nds && acc && all; k++) {
            if (mnas_learner_evaluate_accuracy(l, ds[k].test_set, (int)eval_steps, NULL, acc) != MNAS_OK) {
                fprintf(stderr, "error: evaluating on %s: %s\n", ds[k].name, mnas_ctx_last_error(ctx));
                free(acc);
                free(all);
                mnas_learner_free(l);
                goto done;
            }
            mnas_mean_ci95(acc, (size_t)eval_tasks, &r->mean[k], &r->ci[k]);
            memcpy(all + k * eval_tasks, acc, (size_t)eval_tasks * sizeof *acc);
        }
        if (acc && all) mnas_mean_ci95(all, (size_t)(eval_tasks * nds), &r->mean[nds], &r->ci[nds]);
        free(acc);
        free(all);
        if (o.method != MNAS_METHOD_MAML) report_genotypes(ctx, l, o.method, ds, nds, out_dir);
        if (o.method != MNAS_METHOD_MAML) figure6_by_dataset(ctx, l, o.method, ds, nds, out_dir);
        mnas_learner_free(l);
    }
    /* Table-2 layout: accuracy (%) +- 95 % CI over the test tasks. */
    printf("\n%lld-way %lld-shot accuracy (%%) +- 95%% CI over %lld test tasks per dataset (%lld adaptation steps)\n",
           way, shot, eval_tasks, eval_steps);
    printf("| Model | ");
    for (int k = 0; k < nds; k++) printf("%s | ", ds[k].name);
    printf("Averaged | meta-updates | training time |\n| --- | ");
    for (int k = 0; k <= nds; k++) printf("--- | ");
    printf("--- | --- |\n");
    for (int i = 0; i < nres; i++) {
        char t[32];
        ex_hms(res[i].train_seconds, t, sizeof t);
        printf("| %s | ", mnas_method_name(res[i].method));
        for (int k = 0; k <= nds; k++) printf("%.2f +- %.2f | ", 100 * res[i].mean[k], 100 * res[i].ci[k]);
        printf("%lld | %s |\n", (long long)res[i].iterations, t);
    }
    printf("genotype DOT files are in %s/\n", out_dir);
    rc = 0;
done:
    mnas_fewshot_sampler_free(train_sampler);
    for (int k = 0; k < nds; k++) {
        mnas_task_set_free(ds[k].test_set);
        mnas_fewshot_sampler_free(ds[k].test_sampler);
        mnas_image_dataset_free(ds[k].test);
        mnas_image_dataset_free(ds[k].train);
        mnas_image_dataset_free(ds[k].all);
    }
    ex_mpi_leave();
    mnas_ctx_free(ctx);
    if (rc && made_out && ex_rank == 0) (void)rmdir(out_dir); /* only if still empty */
    return rc;
}
