/* Shared helpers of the example programs: option parsing, a progress line,
 * timing, and the paper's Table-1 layout. Header-only, static inline
 * functions (an example uses what it needs without unused-function warnings). */
#ifndef MNAS_EXAMPLE_UTIL_H
#define MNAS_EXAMPLE_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mnas/mnas.h>
#ifdef MNAS_WITH_MPI
#include <mnas/mpi.h>
#endif

/* ---- mpirun (docs/distributed.md) ------------------------------------------
 * Built with libmnas_mpi and started by mpirun, every process meta-trains
 * its share of each meta-batch and of each evaluation (the results are
 * bit-identical to one process); rank 0 alone prints and writes files, the
 * other ranks' stdout and stderr go to /dev/null (a failure during training
 * or evaluation is agreed on, so rank 0 reports it too). Started without
 * mpirun, or built without MPI, nothing changes. */
static int ex_rank; /* this process's rank; 0 outside mpirun */
#ifdef MNAS_WITH_MPI
static mnas_mpi *ex_mpi;
#endif

/* Join the mpirun job if there is one; 0 (message printed) on failure. */
static inline int ex_mpi_join(mnas_ctx *ctx, int *argc, char ***argv)
{
#ifdef MNAS_WITH_MPI
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return 1;
    if (!(ex_mpi = mnas_mpi_create(ctx, argc, argv, MPI_COMM_WORLD))) {
        fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
        return 0;
    }
    ex_rank = mnas_mpi_rank(ex_mpi);
    if (ex_rank != 0 && (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))) return 0;
#else
    (void)ctx, (void)argc, (void)argv;
#endif
    return 1;
}

/* The number of processes of the job (1 outside mpirun). */
static inline int ex_mpi_size(void)
{
#ifdef MNAS_WITH_MPI
    if (ex_mpi) return mnas_mpi_size(ex_mpi);
#endif
    return 1;
}

/* Share l's meta-training and evaluation among the job's processes. */
static inline mnas_status ex_mpi_distribute(mnas_learner *l)
{
#ifdef MNAS_WITH_MPI
    if (ex_mpi) {
        mnas_status st = mnas_mpi_distribute(ex_mpi, l);
        if (st == MNAS_OK) fprintf(stderr, "(meta-training and evaluation shared by %d processes)\n", ex_mpi_size());
        return st;
    }
#endif
    (void)l;
    return MNAS_OK;
}

/* Leave the job (after every learner is freed). */
static inline void ex_mpi_leave(void)
{
#ifdef MNAS_WITH_MPI
    mnas_mpi_free(ex_mpi);
    ex_mpi = NULL;
#endif
}

/* --version: the program and the library it runs on, on stdout. */
static inline int ex_version(const char *prog)
{
    printf("%s (libmnas %s, headers %s)\n", prog, mnas_version_string(), MNAS_VERSION_STRING);
    return 0;
}

static inline double ex_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Parse "--name value" into a long long / double within [lo, hi]. */
static inline int ex_int(const char *arg, const char *name, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || *end || end == arg || v < lo || v > hi) {
        fprintf(stderr, "error: %s expects an integer in [%lld, %lld], got \"%s\"\n", name, lo, hi, arg);
        return 0;
    }
    *out = v;
    return 1;
}

static inline int ex_double(const char *arg, const char *name, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || *end || end == arg || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "error: %s expects a number in [%g, %g], got \"%s\"\n", name, lo, hi, arg);
        return 0;
    }
    *out = v;
    return 1;
}

/* The start of every example's option loop, for argument a with value v
 * (NULL when a is the last argument): -h / --help prints usage on stdout,
 * --version the versions, and an option without its value is an error
 * (usage on stderr). Returns -1 when a is none of these (parse it, with v),
 * else the status main returns. */
static inline int ex_option_start(const char *prog, const char *a, const char *v, void (*usage)(FILE *))
{
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a, "--version")) return ex_version(prog);
    if (!v) {
        fprintf(stderr, "error: unknown option or missing value: %s\n", a);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* An option the example does not know: the message and usage on stderr;
 * returns main's status. */
static inline int ex_unknown_option(const char *a, void (*usage)(FILE *))
{
    fprintf(stderr, "error: unknown option %s\n", a);
    usage(stderr);
    return 2;
}

/* "--name value" into an int field within [lo, hi]; 0 (message printed)
 * when out of range. */
static inline int ex_int_field(const char *arg, const char *name, long long lo, long long hi, int *out)
{
    long long n;
    if (!ex_int(arg, name, lo, hi, &n)) return 0;
    *out = (int)n;
    return 1;
}

/* An inner-rate mode by name (fixed, per-tensor, per-element) for option
 * `name`; 0 with a message when v is none of them. */
static inline int ex_inner_lr_mode(const char *v, const char *name, mnas_inner_lr_mode *out)
{
    for (int k = 0; k < 3; k++)
        if (!strcmp(v, mnas_inner_lr_mode_name((mnas_inner_lr_mode)k))) {
            *out = (mnas_inner_lr_mode)k;
            return 1;
        }
    fprintf(stderr, "error: %s %s: fixed, per-tensor or per-element\n", name, v);
    return 0;
}

/* The learner options both examples accept: returns 1 and sets *ok when
 * option a (with value v) is one of them, 0 when it is not. */
static inline int ex_learner_option(const char *a, const char *v, mnas_learner_options *o, int *ok)
{
    long long n = 0;
    if (!strcmp(a, "--meta-batch")) {
        *ok = ex_int_field(v, a, 1, 100000, &o->meta_batch);
    } else if (!strcmp(a, "--inner-steps")) {
        *ok = ex_int_field(v, a, 0, 1000, &o->inner_steps);
    } else if (!strcmp(a, "--inner-lr")) {
        *ok = ex_double(v, a, 0, 100, &o->inner_lr);
    } else if (!strcmp(a, "--outer-lr")) {
        *ok = ex_double(v, a, 0, 100, &o->outer_lr);
    } else if (!strcmp(a, "--arch-lr")) {
        *ok = ex_double(v, a, 0, 100, &o->arch_lr);
    } else if (!strcmp(a, "--path-dropout")) {
        *ok = ex_double(v, a, 0, 0.95, &o->path_dropout);
    } else if (!strcmp(a, "--threads")) {
        *ok = ex_int_field(v, a, 1, 256, &o->threads);
    } else if (!strcmp(a, "--seed")) {
        *ok = ex_int(v, a, 0, INT64_MAX, &n);
        o->seed = (uint64_t)n;
    } else if (!strcmp(a, "--clip-norm")) {
        *ok = ex_double(v, a, 0, 1e9, &o->clip_norm);
    } else if (!strcmp(a, "--beta")) {
        *ok = ex_double(v, a, 0, 1e6, &o->beta);
    } else if (!strcmp(a, "--modulator-bias")) {
        *ok = ex_double(v, a, -100, 100, &o->modulator_bias);
    } else if (!strcmp(a, "--hidden")) {
        *ok = ex_int_field(v, a, 1, 4096, &o->hidden);
    } else if (!strcmp(a, "--nodes") || !strcmp(a, "--z-dim") || !strcmp(a, "--f-dim") ||
               !strcmp(a, "--controller-hidden")) {
        int *f = a[2] == 'n' ? &o->nodes : a[2] == 'z' ? &o->z_dim : a[2] == 'f' ? &o->f_dim : &o->controller_hidden;
        *ok = ex_int_field(v, a, 1, 4096, f);
    } else if (!strcmp(a, "--encoder")) {
        *ok = !strcmp(v, "gru") || !strcmp(v, "lstm");
        if (*ok) o->encoder = !strcmp(v, "gru") ? MNAS_RNN_GRU : MNAS_RNN_LSTM;
        else fprintf(stderr, "error: --encoder %s: gru or lstm\n", v);
    } else if (!strcmp(a, "--modulation")) {
        *ok = !strcmp(v, "element") || !strcmp(v, "channel");
        if (*ok) o->modulation = !strcmp(v, "element") ? MNAS_MODULATE_ELEMENT : MNAS_MODULATE_CHANNEL;
        else fprintf(stderr, "error: --modulation %s: element or channel\n", v);
    } else if (!strcmp(a, "--modulator-form")) {
        static const char *const forms[4] = { "sigmoid", "two-sigmoid", "one-plus-tanh", "film" };
        *ok = 0;
        for (int k = 0; k < 4; k++)
            if (!strcmp(v, forms[k])) {
                o->modulator_form = (mnas_modulator_form)k;
                *ok = 1;
            }
        if (!*ok) fprintf(stderr, "error: --modulator-form %s: sigmoid, two-sigmoid, one-plus-tanh or film\n", v);
    } else if (!strcmp(a, "--inner-lr-mode")) {
        *ok = ex_inner_lr_mode(v, a, &o->inner_lr_mode);
    } else if (!strcmp(a, "--inner-lr-max")) {
        *ok = ex_double(v, a, 0, 1e6, &o->inner_lr_max);
    } else if (!strcmp(a, "--encoder-input-scale")) {
        *ok = ex_double(v, a, 0, 1, &o->encoder_input_scale);
    } else {
        return 0;
    }
    return 1;
}

/* The usage lines of the learner options above that every example takes
 * beyond its own list. */
#define EX_MODEL_USAGE                                                                                       \
    "  --nodes N           intermediate nodes of the searched cell (default 3; images 4)\n"                  \
    "  --hidden N          regression only: units of the searched cell's nodes and of MAML's MLP layers\n"  \
    "                      (default 50)\n"                                                                     \
    "  --z-dim N, --f-dim N, --controller-hidden N\n"                                                        \
    "                      task representation, pair embedding and controller sizes (32, 32, 64)\n"         \
    "  --encoder gru|lstm  the task encoder's RNN (default gru)\n"                                           \
    "  --modulation element|channel  one tau per weight or per output unit (default element)\n"             \
    "  --modulator-bias X  initial bias of the modulator's FC (default 3: tau ~ 0.95)\n"                   \
    "  --modulator-form F  tau = sigmoid(u) (default, the paper's), two-sigmoid: 2 sigmoid(u),\n"        \
    "                      one-plus-tanh: 1 + tanh(u) (both tau = 1 at u = 0: use --modulator-bias 0)\n" \
    "                      or film: sigmoid(u) w + beta, a shift on biases and batch-norm parameters\n" \
    "  --inner-lr-mode M   fixed (default, the paper's), per-tensor or per-element: learned inner\n"     \
    "                      step sizes (Meta-SGD): --inner-lr * exp(rho), rho trained with the rest\n"     \
    "  --inner-lr-max X    bound the learned rates smoothly below X (> --inner-lr; default 0: none)\n"    \
    "  --encoder-input-scale S  the task encoder reads S [x, y] (0 < S <= 1; default 0: unscaled);\n"   \
    "                      for images 1/sqrt(pixels + classes) keeps its embedding alive\n"          \
    "  --beta X            weight of the reconstruction loss L_r (default 0.01)\n"                          \
    "  --clip-norm X       clip the meta-gradient's norm at X (default 0: off)\n"

/* Checkpoint options both examples accept: --save PATH, --save-every N,
 * --resume PATH. */
typedef struct {
    const char *save;   /* NULL: no checkpoints */
    long long every;    /* iterations between checkpoints (0: start and end only) */
    const char *resume; /* NULL: start afresh */
} ex_ckpt;

#define EX_CKPT_USAGE                                                                                  \
    "  --save PATH         write a checkpoint (atomically) at the start, every --save-every\n"          \
    "                      iterations and at the end; training stops on NaN/Inf, keeping the last one\n" \
    "  --save-every N      iterations between checkpoints (default 0: start and end only)\n"           \
    "  --resume PATH       continue from a checkpoint (its options replace the learner options;\n"     \
    "                      --iterations stays the total, so the remainder is trained)\n"

static inline int ex_checkpoint_option(const char *a, const char *v, ex_ckpt *c, int *ok)
{
    if (!strcmp(a, "--save")) {
        c->save = v;
    } else if (!strcmp(a, "--resume")) {
        c->resume = v;
    } else if (!strcmp(a, "--save-every")) {
        *ok = ex_int(v, a, 0, INT64_MAX, &c->every);
    } else {
        return 0;
    }
    return 1;
}

/* path with ".suffix" appended (suffix NULL: path itself). */
static inline const char *ex_ckpt_path(const char *path, const char *suffix, char *buf, size_t cap)
{
    if (!path || !suffix) return path;
    snprintf(buf, cap, "%s.%s", path, suffix);
    return buf;
}

/* Options of the learner to resume: the checkpoint's, with threads from o.
 * Returns 0 on failure with the message on the context (the caller prints
 * it, once). */
static inline int ex_resume_options(mnas_ctx *ctx, const char *path, mnas_learner_options *o)
{
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    if (mnas_learner_checkpoint_options(ctx, path, &r) != MNAS_OK) return 0;
    r.threads = o->threads;
    *o = r;
    return 1;
}

/* Train n more iterations, with checkpoints at save (if not NULL). */
static inline mnas_status ex_train(mnas_learner *l, mnas_task_source source, void *user, long long n, const char *save,
                            long long every, mnas_progress_fn progress, void *progress_user)
{
    if (save) return mnas_learner_train_checkpointed(l, source, user, n, save, every, progress, progress_user);
    return mnas_learner_train(l, source, user, n, progress, progress_user);
}

static inline void ex_hms(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* Progress on stderr, so stdout holds the results alone: a rewritten line
 * on a terminal, periodic plain lines otherwise. */
typedef struct {
    const char *label;
    double start;
    int tty;
    int64_t every;
    int tasks_per_iter;
    double loss_avg;
} ex_progress;

static inline void ex_progress_init(ex_progress *p, const char *label, int64_t total, int tasks_per_iter)
{
    p->label = label;
    p->start = ex_now();
    p->tty = isatty(STDERR_FILENO);
    p->every = total / 20 > 0 ? total / 20 : 1;
    p->tasks_per_iter = tasks_per_iter;
    p->loss_avg = NAN;
}

static inline int ex_progress_cb(void *user, int64_t it, int64_t total, double loss)
{
    ex_progress *p = user;
    p->loss_avg = isnan(p->loss_avg) ? loss : 0.95 * p->loss_avg + 0.05 * loss;
    double el = ex_now() - p->start;
    double eta = el / (double)it * (double)(total - it);
    char e[32], r[32];
    ex_hms(eta, e, sizeof e);
    ex_hms(el, r, sizeof r);
    double tps = (double)it * p->tasks_per_iter / (el > 0 ? el : 1e-9);
    if (p->tty) {
        fprintf(stderr, "\r%s: iteration %lld/%lld  loss %.4f  %.0f tasks/s  elapsed %s  ETA %s   ", p->label, (long long)it,
               (long long)total, p->loss_avg, tps, r, e);
        if (it == total) fprintf(stderr, "\n");
        fflush(stderr);
    } else if (it % p->every == 0 || it == total) {
        fprintf(stderr, "%s: iteration %lld/%lld  loss %.4f  %.0f tasks/s  elapsed %s  ETA %s\n", p->label, (long long)it,
               (long long)total, p->loss_avg, tps, r, e);
        fflush(stderr);
    }
    return 0;
}

/* A learning-rate schedule over one training phase, iterations [begin, end)
 * of the learner's counter: the rates stay at outer / arch until the last
 * `decay` fraction of the phase, then fall to 0 along a half cosine. The
 * rate of the update after `done` updates is a function of `done` alone, so
 * a resumed run continues the same schedule. With temp0 > 0 it also sets
 * the architecture weights' temperature (not for MAML): temp0 at update 0,
 * falling geometrically to temp1 at update temp_len and staying there.
 * Wraps a progress callback. */
typedef struct {
    mnas_learner *l;
    double outer, arch, decay;
    long long begin, end;
    mnas_progress_fn inner;
    void *inner_user;
    double temp0, temp1;
    long long temp_len;
} ex_schedule;

static inline mnas_status ex_schedule_apply(const ex_schedule *s)
{
    long long done = (long long)mnas_learner_iteration(s->l);
    long long len = s->end - s->begin, d0 = s->end - (long long)(s->decay * (double)len + 0.5);
    double f = 1;
    if (done >= d0 && s->end > d0) {
        double u = (double)(done - d0) / (double)(s->end - d0);
        f = u >= 1 ? 0 : 0.5 * (1 + cos(3.14159265358979323846 * u));
    }
    if (s->temp0 > 0) {
        double u = s->temp_len > 0 && done < s->temp_len ? (double)done / (double)s->temp_len : 1;
        mnas_status st = mnas_learner_set_alpha_temperature(s->l, s->temp0 * pow(s->temp1 / s->temp0, u));
        if (st != MNAS_OK) return st;
    }
    return mnas_learner_set_lr(s->l, s->outer * f, s->arch * f);
}

/* "T0" or "T0:T1" (each in [1e-3, 1e3]) into *t0, *t1 (T1 = T0 when absent);
 * 0 with a message naming the option on bad input. */
static inline int ex_temperatures(const char *v, const char *opt, double *t0, double *t1)
{
    char *end;
    double a = strtod(v, &end), b = a;
    if (end != v && *end == ':') {
        const char *w = end + 1;
        b = strtod(w, &end);
        if (end == w) end = (char *)v; /* force the error below */
    }
    if (end == v || *end || !(a >= 1e-3 && a <= 1e3) || !(b >= 1e-3 && b <= 1e3)) {
        fprintf(stderr, "error: %s %s: T0 or T0:T1 expected, each in [0.001, 1000]\n", opt, v);
        return 0;
    }
    *t0 = a;
    *t1 = b;
    return 1;
}

static inline int ex_schedule_cb(void *user, int64_t it, int64_t total, double loss)
{
    const ex_schedule *s = user;
    if (ex_schedule_apply(s) != MNAS_OK) return 1;
    return s->inner ? s->inner(s->inner_user, it, total, loss) : 0;
}

/* Per-family mean and CI of values[i] for the tasks of set; [4] is the
 * average over all tasks (equal-sized families: the mean of the family means). */
static inline void ex_family_stats(const mnas_task_set *set, const double *values, double mean[5], double ci[5])
{
    size_t n = mnas_task_set_size(set);
    double *buf = malloc(n * sizeof *buf);
    for (int f = 0; f <= MNAS_REGRESSION_FAMILIES; f++) {
        size_t k = 0;
        for (size_t i = 0; i < n && buf; i++)
            if (f == MNAS_REGRESSION_FAMILIES || mnas_task_family(mnas_task_set_get(set, i)) == f) buf[k++] = values[i];
        mean[f] = ci[f] = NAN;
        if (k) mnas_mean_ci95(buf, k, &mean[f], &ci[f]);
    }
    free(buf);
}

/* Training tasks: task index of the toy-regression stream of seed. */
typedef struct {
    mnas_ctx *ctx;
    mnas_regression_options ro;
    uint64_t seed;
} ex_source;

static inline mnas_task *ex_regression_source(void *user, uint64_t index)
{
    ex_source *s = user;
    return mnas_regression_task(s->ctx, &s->ro, s->seed, index, -1);
}


/* How well the representations z (m rows of dim) separate the groups g:
 * the share of tasks whose nearest neighbour in z (Euclidean, ties to the
 * first) belongs to the same group, and that share expected for the same
 * group sizes drawn at random, sum_g n_g (n_g - 1) / (m (m - 1)). */
static inline void ex_nn_same_group(const double *z, const int *g, size_t m, size_t dim, int groups, double *same,
                                    double *chance)
{
    size_t hits = 0;
    for (size_t i = 0; i < m; i++) {
        double best = INFINITY;
        size_t bj = i;
        for (size_t j = 0; j < m; j++) {
            if (j == i) continue;
            double d = 0;
            for (size_t k = 0; k < dim; k++) d += (z[i * dim + k] - z[j * dim + k]) * (z[i * dim + k] - z[j * dim + k]);
            if (d < best) best = d, bj = j;
        }
        hits += bj != i && g[bj] == g[i];
    }
    double c = 0;
    for (int h = 0; h < groups; h++) {
        size_t n = 0;
        for (size_t i = 0; i < m; i++) n += g[i] == h;
        c += (double)n * (double)(n ? n - 1 : 0);
    }
    *same = m > 1 ? (double)hits / (double)m : 0;
    *chance = m > 1 ? c / ((double)m * (double)(m - 1)) : 0;
}

/* The paper's Figure 6: a t-SNE map of the task representations z of up to
 * per_group tasks of each group (family or dataset) of set, one colour per
 * group, written to path. name(g) labels group g. Prints, on success, how
 * well z separates the groups (ex_nn_same_group). Returns 1 on success. */
static inline int ex_figure6(mnas_ctx *ctx, mnas_learner *l, const mnas_task_set *set, int groups, int per_group,
                             const char *(*name)(int), const char *title, const char *path)
{
    if (ex_rank != 0) return 1; /* rank 0 writes the figure */
    size_t n = mnas_task_set_size(set), m = 0, dim = 0;
    int *taken = calloc((size_t)groups, sizeof *taken);
    size_t *pick = malloc(n * sizeof *pick);
    double *z = NULL, *y = NULL, *px = NULL, *py = NULL;
    int ok = taken && pick;
    for (size_t i = 0; ok && i < n; i++) {
        int g = mnas_task_family(mnas_task_set_get(set, i));
        if (g >= 0 && g < groups && taken[g] < per_group) {
            taken[g]++;
            pick[m++] = i;
        }
    }
    ok = ok && m >= 4;
    for (size_t i = 0; ok && i < m; i++) {
        size_t d;
        double tmp[4096];
        ok = mnas_learner_task_embedding(l, mnas_task_set_get(set, pick[i]), tmp, 4096, &d) == MNAS_OK;
        if (ok && !z) {
            dim = d;
            ok = (z = malloc(m * d * sizeof *z)) != NULL;
        }
        if (ok) memcpy(z + i * dim, tmp, dim * sizeof *z);
    }
    ok = ok && (y = malloc(2 * m * sizeof *y)) && (px = malloc(m * sizeof *px)) && (py = malloc(m * sizeof *py));
    double perp = (double)(m - 1) / 3.0 < 30.0 ? (double)(m - 1) / 3.0 : 30.0;
    ok = ok && mnas_tsne(ctx, z, m, dim, perp, 1000, 1, y) == MNAS_OK;
    mnas_figure *fig = ok ? mnas_figure_create(ctx, 900, 800, 1, 1) : NULL;
    ok = fig != NULL;
    double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
    for (size_t i = 0; ok && i < 2 * m; i++) {
        if (y[i] < lo[i % 2]) lo[i % 2] = y[i];
        if (y[i] > hi[i % 2]) hi[i % 2] = y[i];
    }
    if (ok) {
        double padx = 0.05 * (hi[0] - lo[0]) + 1e-9, pady = 0.05 * (hi[1] - lo[1]) + 1e-9;
        ok = mnas_figure_panel_range(fig, 0, lo[0] - padx, hi[0] + padx, lo[1] - pady, hi[1] + pady) == MNAS_OK &&
             mnas_figure_title(fig, 0, title) == MNAS_OK &&
             mnas_figure_axis_labels(fig, 0, "t-SNE 1", "t-SNE 2") == MNAS_OK;
    }
    for (int g = 0; ok && g < groups; g++) {
        size_t k = 0;
        for (size_t i = 0; i < m; i++)
            if (mnas_task_family(mnas_task_set_get(set, pick[i])) == g) {
                px[k] = y[2 * i];
                py[k++] = y[2 * i + 1];
            }
        if (k) ok = mnas_figure_points(fig, 0, px, py, k, mnas_figure_color((unsigned)g), 3.5, name(g)) == MNAS_OK;
    }
    ok = ok && mnas_figure_legend(fig, 0, 0) == MNAS_OK && mnas_figure_save_png(fig, path) == MNAS_OK;
    int *grp = ok ? malloc(m * sizeof *grp) : NULL;
    if (grp) {
        for (size_t i = 0; i < m; i++) grp[i] = mnas_task_family(mnas_task_set_get(set, pick[i]));
        double same, chance, spread = 0;
        ex_nn_same_group(z, grp, m, dim, groups, &same, &chance);
        /* RMS distance of z to its mean over the tasks: 0 when the encoder
         * gives every task the same representation */
        for (size_t k = 0; k < dim; k++) {
            double mu = 0;
            for (size_t i = 0; i < m; i++) mu += z[i * dim + k] / (double)m;
            for (size_t i = 0; i < m; i++) spread += (z[i * dim + k] - mu) * (z[i * dim + k] - mu) / (double)m;
        }
        printf("  figure 6: z's nearest neighbour is of the same group for %.1f %% of %zu tasks (chance %.1f %%); "
               "z's spread (RMS distance to its mean) %.3g\n",
               100 * same, m, 100 * chance, sqrt(spread));
        free(grp);
    }
    mnas_figure_free(fig);
    free(taken);
    free(pick);
    free(z);
    free(y);
    free(px);
    free(py);
    return ok;
}

#endif /* MNAS_EXAMPLE_UTIL_H */
