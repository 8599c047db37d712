/* Meta-training throughput on the paper's toy regression (meta-batch 25, 5
 * second-order inner steps): MAML on the 5-layer Linear-ReLU-BN network and
 * M-NAS, M-NAS-Shared, M-NAS-NM on the one-cell supernet; tasks per second
 * with 1 and 2 threads and peak resident memory, each measured in a fresh
 * child process. Then the tape memory of one MAML task as the number of
 * inner steps grows, second order against recompute.
 *
 * --images: few-shot image classification instead, 5-way 1-shot with 5
 * queries per class on 28 x 28 grey images (a synthetic dataset made in
 * the process), meta-batch 4, 5 second-order steps with inner lr 0.01:
 * MAML's 4-block conv network (32 filters) and the M-NAS variants on the
 * DARTS supernet (one normal + one reduction cell, 4 nodes, 8 channels).
 *
 * --paper: the paper's image scale instead (implies --images): 84 x 84
 * RGB, C = 16, 4 nodes, 5-way 1-shot, 15 queries per class, meta-batch 4;
 * the child's address space is capped at 16 GiB (--mem-limit G to change),
 * so a run that does not fit fails with an out-of-memory status instead of
 * swapping the machine.
 * The M-NAS variants' supernet reduces the images in its stem by 4
 * (stem_stride 4: 84 -> 21 pixels a side), which --stem-stride 1 undoes.
 * --sample-ops K: the learner option sample_ops (K ops per mixed edge).
 * --stem-stride S: the learner option stem_stride (1, 2 or 4; M-NAS variants).
 * --recompute: only the memory-saving inner mode (MNAS_INNER_RECOMPUTE).
 * --recompute-cells: only MNAS_INNER_RECOMPUTE_CELLS (recompute, and the
 * supernet's cells checkpointed in the query pass).
 * Each line also gives seconds per meta-update and the peak RSS
 * (getrusage ru_maxrss).
 *
 * --seconds S: time each run for S seconds (default 3; --quick: 0.3).
 * --threads N: only the N-thread runs (1 or 2), e.g. to run two builds
 * side by side, one per core, so both see the same machine.
 *
 * Built with libmnas_mpi and run under mpirun (docs/distributed.md): the
 * meta-batch is split over the ranks, every run is made in-process (no
 * child), rank 0 prints the job's throughput, and its CPU figure sums all
 * ranks' CPU time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mnas/mnas.h>
#ifdef MNAS_WITH_MPI
#include <mnas/mpi.h>
static mnas_mpi *mpi; /* set when run under mpirun */
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    mnas_ctx *ctx;
    mnas_regression_options ro;
    mnas_image_dataset *ds;       /* --images */
    mnas_fewshot_sampler *sampler;
} src_data;

static int images;        /* --images */
static int paper;         /* --paper: 84x84 RGB, C = 16, 15 queries */
static int64_t sample_ops; /* --sample-ops K */
static int stem_stride = -1; /* --stem-stride S; -1: 4 with --paper, else 1 */
static double mem_limit_gib = 16;
static int img_size(void) { return paper ? 84 : 28; }
static int img_channels(void) { return paper ? 3 : 1; }

static mnas_task *source(void *user, uint64_t index)
{
    src_data *s = user;
    if (s->sampler) return mnas_fewshot_task(s->ctx, s->sampler, 1, index);
    return mnas_regression_task(s->ctx, &s->ro, 1, index, -1);
}

/* 20 classes of 28 x 28 grey (--paper: 84 x 84 RGB) images (a pattern per
 * class plus noise). */
static int make_images(src_data *sd)
{
    enum { CLASSES = 20, PER = 20 };
    const int PX = img_channels() * img_size() * img_size();
    size_t counts[CLASSES];
    mnas_real *data = malloc(sizeof(mnas_real) * CLASSES * PER * PX);
    mnas_rng *r = mnas_rng_create(sd->ctx, 1, 0);
    if (!data || !r) {
        free(data);
        mnas_rng_free(r);
        return 0;
    }
    for (int c = 0; c < CLASSES; c++) {
        counts[c] = PER;
        for (int i = 0; i < PER; i++)
            for (int p = 0; p < PX; p++)
                data[((size_t)c * PER + (size_t)i) * PX + (size_t)p] =
                    (mnas_real)((double)((p * (c + 3)) % 17) / 17.0 + 0.2 * mnas_rng_uniform(r));
    }
    mnas_rng_free(r);
    sd->ds = mnas_image_dataset_create(sd->ctx, CLASSES, counts, NULL, img_channels(), img_size(), img_size(), data);
    free(data);
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.query = paper ? 15 : 5;
    const mnas_image_dataset *dss[1] = { sd->ds };
    sd->sampler = sd->ds ? mnas_fewshot_sampler_create(sd->ctx, dss, 1, &fo) : NULL;
    return sd->sampler != NULL;
}

static int die(mnas_ctx *ctx)
{
    fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
    return 1;
}

/* Runs in a child: warm up, then time meta-updates for about `seconds`. */
static mnas_method bench_method;

static int throughput(int threads, mnas_inner_mode mode, double seconds)
{
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = bench_method;
    o.threads = threads;
    o.inner_mode = mode;
    o.seed = 1;
    o.sample_ops = sample_ops;
    if (bench_method != MNAS_METHOD_MAML) o.stem_stride = stem_stride > 0 ? stem_stride : paper ? 4 : 1;
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, NULL, NULL };
    int step = 10;
    if (images) {
        o.classes = 5;
        o.image_size = img_size();
        o.in_channels = img_channels();
        o.channels = paper ? 16 : 8;
        o.nodes = 4;
        o.meta_batch = 4;
        o.inner_lr = 0.01;
        step = 1;
        if (!make_images(&sd)) return die(ctx);
        if (paper) {
            struct rlimit rl;
            rl.rlim_cur = rl.rlim_max = (rlim_t)(mem_limit_gib * 1073741824.0);
            setrlimit(RLIMIT_AS, &rl);
        }
    }
    mnas_learner *l = mnas_learner_create(ctx, &o);
    if (!l) return die(ctx);
    int ranks = 1;
#ifdef MNAS_WITH_MPI
    if (mpi) {
        if (mnas_mpi_distribute(mpi, l) != MNAS_OK) return die(ctx);
        ranks = mnas_mpi_size(mpi);
    }
#endif
    if (mnas_learner_train(l, source, &sd, step, NULL, NULL) != MNAS_OK) return die(ctx);
    int64_t iters = 0;
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    double cpu0 = (double)ru0.ru_utime.tv_sec + 1e-6 * (double)ru0.ru_utime.tv_usec + (double)ru0.ru_stime.tv_sec +
                  1e-6 * (double)ru0.ru_stime.tv_usec;
    double t0 = now(), t;
    do {
        if (mnas_learner_train(l, source, &sd, step, NULL, NULL) != MNAS_OK) return die(ctx);
        iters += step;
        t = now() - t0;
        int more = t < seconds;
#ifdef MNAS_WITH_MPI
        if (mpi) MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD); /* rank 0's clock decides */
#endif
        if (!more) break;
    } while (1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* Tasks per second of CPU time (all threads): with 1 thread this stays
     * meaningful on a loaded machine, where wall-clock throughput does not. */
    double cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
                 1e-6 * (double)ru.ru_stime.tv_usec - cpu0;
    uint64_t gathers = 0, bytes = 0;
    double comm = 0;
#ifdef MNAS_WITH_MPI
    if (mpi) {
        double all = 0;
        MPI_Reduce(&cpu, &all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        cpu = all;
        mnas_mpi_stats(mpi, &gathers, &bytes, &comm);
    }
#endif
    char label[64];
    snprintf(label, sizeof label, "%s, 5 steps%s%s", mnas_method_name(o.method),
             mode == MNAS_INNER_RECOMPUTE         ? ", recompute"
             : mode == MNAS_INNER_RECOMPUTE_CELLS ? ", recompute cells"
                                                  : ", second order", sample_ops ? ", sampled" : "");
    if (sample_ops) snprintf(label + strlen(label), sizeof label - strlen(label), " k=%lld", (long long)sample_ops);
    printf("%-32s %d thread%s  %8.*f tasks/s  %7.2f s/meta-update  (%lld meta-updates in %.2f s; %6.*f tasks per "
           "CPU-second)  peak RSS %.1f MiB\n",
           label, threads, threads > 1 ? "s" : " ", images ? 2 : 0, (double)iters * o.meta_batch / t,
           t / (double)iters, (long long)iters, t, images ? 2 : 0, (double)iters * o.meta_batch / cpu,
           ru.ru_maxrss / 1024.0);
    if (ranks > 1)
        printf("  %d ranks: %llu allgathers, %.0f bytes received per meta-update by rank 0, %.3f s in allgathers "
               "(waits included)\n",
               ranks, (unsigned long long)gathers, (double)bytes / (double)(iters + step), comm);
    fflush(stdout);
    mnas_learner_free(l);
    mnas_fewshot_sampler_free(sd.sampler);
    mnas_image_dataset_free(sd.ds);
    mnas_ctx_free(ctx);
    return 0;
}

/* Tape memory of one task's meta-gradient as the inner steps grow. */
typedef struct {
    mnas_mlp *mlp;
    mnas_tensor *x, *y;
} sup;

static mnas_tensor *sup_loss(mnas_tape *tp, mnas_tensor *const *w, mnas_tensor *const *extra, void *user)
{
    (void)extra;
    sup *s = user;
    return mnas_mse(tp, mnas_mlp_forward(s->mlp, tp, s->x, w), s->y);
}

static int memory_sweep(void)
{
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    int64_t dims[6] = { 1, 50, 50, 50, 50, 1 };
    mnas_mlp *mlp = mnas_mlp_create(ctx, 5, dims, 0);
    mnas_params *p = mnas_params_create(ctx);
    if (!mlp || !p || mnas_mlp_add_params(mlp, p, "", 0) < 0) return die(ctx);
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    mnas_task *t = mnas_regression_task(ctx, &ro, 1, 0, -1);
    if (!t) return die(ctx);
    sup s = { mlp, mnas_task_support_x(t), mnas_task_support_y(t) };
    size_t P = mnas_params_count(p);
    printf("\ntape memory of one task's meta-gradient (arena bytes reserved, MiB)\n");
    printf("%6s %14s %14s\n", "steps", "second order", "recompute");
    static const int steps[] = { 1, 5, 10, 20, 40 };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        double mib[2];
        for (int m = 0; m < 2; m++) {
            mnas_tape *tp;
            if (mnas_tape_create(ctx, &tp) != MNAS_OK) return die(ctx);
            mnas_inner_options io = MNAS_INNER_OPTIONS_INIT;
            io.steps = steps[k];
            io.mode = m ? MNAS_INNER_RECOMPUTE : MNAS_INNER_SECOND_ORDER;
            mnas_tensor *fast[32], *g[32];
            mnas_tensor *const *W = mnas_params_tensors(p);
            if (mnas_inner_loop(tp, sup_loss, &s, P, W, 0, NULL, &io, fast) != MNAS_OK) return die(ctx);
            mnas_tensor *q = mnas_mse(tp, mnas_mlp_forward(mlp, tp, mnas_task_query_x(t), fast), mnas_task_query_y(t));
            if (!q || mnas_grad(tp, q, P, W, g, 0) != MNAS_OK) return die(ctx);
            mib[m] = mnas_tape_bytes_reserved(tp) / 1048576.0;
            mnas_tape_free(tp);
        }
        printf("%6d %14.2f %14.2f\n", steps[k], mib[0], mib[1]);
    }
    mnas_task_free(t);
    mnas_params_free(p);
    mnas_mlp_free(mlp);
    mnas_ctx_free(ctx);
    return 0;
}

static int in_child(int (*fn)(int, mnas_inner_mode, double), int threads, mnas_inner_mode mode, double seconds)
{
    fflush(stdout);
#ifdef MNAS_WITH_MPI
    if (mpi) return fn(threads, mode, seconds); /* no fork under MPI */
#endif
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) _exit(fn(threads, mode, seconds));
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return 1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    double seconds = 3.0;
    int only = -1, threads = 0, recompute_only = 0, cells_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            seconds = 0.3;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
            if (!(seconds > 0 && seconds <= 3600)) {
                fprintf(stderr, "--seconds: 0 < s <= 3600\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > 2) {
                fprintf(stderr, "--threads: 1 or 2\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--images")) {
            images = 1;
        } else if (!strcmp(argv[i], "--paper")) {
            images = paper = 1;
        } else if (!strcmp(argv[i], "--recompute")) {
            recompute_only = 1;
        } else if (!strcmp(argv[i], "--recompute-cells")) {
            recompute_only = cells_only = 1;
        } else if (!strcmp(argv[i], "--sample-ops") && i + 1 < argc) {
            sample_ops = atoll(argv[++i]);
            if (sample_ops < 0 || sample_ops > 8) {
                fprintf(stderr, "--sample-ops: 0..8\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--stem-stride") && i + 1 < argc) {
            stem_stride = atoi(argv[++i]);
            if (stem_stride != 1 && stem_stride != 2 && stem_stride != 4) {
                fprintf(stderr, "--stem-stride: 1, 2 or 4\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--mem-limit") && i + 1 < argc) {
            mem_limit_gib = atof(argv[++i]);
            if (!(mem_limit_gib >= 1 && mem_limit_gib <= 1024)) {
                fprintf(stderr, "--mem-limit: 1..1024 GiB\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--method") && i + 1 < argc) {
            const char *m = argv[++i];
            only = !strcmp(m, "maml") ? MNAS_METHOD_MAML
                   : !strcmp(m, "mnas") ? MNAS_METHOD_MNAS
                   : !strcmp(m, "mnas-shared") ? MNAS_METHOD_MNAS_SHARED
                   : !strcmp(m, "mnas-nm") ? MNAS_METHOD_MNAS_NM
                                           : -2;
            if (only == -2) {
                fprintf(stderr, "unknown method %s\n", m);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_learner [--quick] [--seconds S] [--threads 1|2] [--images] [--paper] "
                            "[--sample-ops K] [--stem-stride S] [--recompute] [--recompute-cells] [--mem-limit GIB] "
                            "[--method maml|mnas|mnas-shared|mnas-nm]\n");
            return 2;
        }
    }
#ifdef MNAS_WITH_MPI
    mnas_ctx *mctx = NULL;
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        if (mnas_ctx_create(&mctx, NULL) != MNAS_OK || !(mpi = mnas_mpi_create(mctx, &argc, &argv, MPI_COMM_WORLD)))
            return mctx ? die(mctx) : 1;
        if (mnas_mpi_rank(mpi) != 0 && !freopen("/dev/null", "w", stdout)) return 1;
        if (!threads) threads = 1; /* the recompute runs and the memory sweep are one-process figures */
    }
#endif
    if (paper)
        printf("libmnas %s, meta-training on 5-way 1-shot image tasks (84x84 RGB, C = 16, 15 queries per class, "
               "meta-batch 4; the M-NAS supernet's stem at stride %d)\n",
               mnas_version_string(), stem_stride > 0 ? stem_stride : 4);
    else if (images)
        printf("libmnas %s, meta-training on 5-way 1-shot image tasks (28x28, 5 queries per class, meta-batch 4)\n",
               mnas_version_string());
    else
        printf("libmnas %s, meta-training on toy regression (meta-batch 25, 10 shots)\n", mnas_version_string());
    int rc = 0;
    static const mnas_method all[4] = { MNAS_METHOD_MAML, MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED, MNAS_METHOD_MNAS_NM };
    for (int k = 0; k < 4; k++) {
        if (only >= 0 && (int)all[k] != only) continue;
        bench_method = all[k];
        if (sample_ops && all[k] == MNAS_METHOD_MAML) continue; /* no mixed edges */
        mnas_inner_mode mode = cells_only       ? MNAS_INNER_RECOMPUTE_CELLS
                               : recompute_only ? MNAS_INNER_RECOMPUTE
                                                : MNAS_INNER_SECOND_ORDER;
        if (threads != 2) rc |= in_child(throughput, 1, mode, seconds);
        if (threads != 1) rc |= in_child(throughput, 2, mode, seconds);
        if (threads || recompute_only) continue; /* just the asked-for runs */
        if (all[k] == MNAS_METHOD_MAML && !images) rc |= in_child(throughput, 1, MNAS_INNER_RECOMPUTE, seconds);
        /* The supernet's second-order tape is large on images: the
         * memory-saving mode, for comparison. */
        if (all[k] == MNAS_METHOD_MNAS && images) rc |= in_child(throughput, 1, MNAS_INNER_RECOMPUTE, seconds);
    }
    if (!images && !threads && (only < 0 || only == MNAS_METHOD_MAML)) rc |= memory_sweep();
#ifdef MNAS_WITH_MPI
    mnas_mpi_free(mpi);
    mnas_ctx_free(mctx);
#endif
    return rc;
}
