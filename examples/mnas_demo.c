/* The M-NAS demo: the paper's toy regression (four heterogeneous function
 * families, 10 shots) with M-NAS, M-NAS-Shared, M-NAS-NM and MAML composed
 * from libmnas's handles. Each M-NAS variant searches (task encoder ->
 * controller -> alpha over a one-cell supernet, modulated meta-weights, 5
 * second-order inner steps, Eq. (9)), then enters the architecture-
 * evaluation phase and trains on; MAML trains the 5-layer baseline. Prints
 * the Table-1 layout for all requested methods, the genotypes found, and
 * writes a Figure-3-style PNG and the genotypes as Graphviz DOT (PNG too if
 * `dot` is installed). */
#include <sys/stat.h>
#include <sys/wait.h>

#include "example_util.h"

#define MAX_METHODS 4
#define GRID 161

/* "--train-families sinusoid,harmonics": the named families as a bit mask
 * (bit f = mnas_regression_family f); "all" is every family. */
static int parse_families(const char *arg, const char *name, unsigned *mask)
{
    unsigned m = 0;
    const char *p = arg;
    if (!strcmp(arg, "all")) {
        *mask = (1u << MNAS_REGRESSION_FAMILIES) - 1;
        return 1;
    }
    for (;;) {
        size_t len = strcspn(p, ",");
        int f = 0;
        while (f < MNAS_REGRESSION_FAMILIES &&
               (strlen(mnas_regression_family_name(f)) != len || strncmp(p, mnas_regression_family_name(f), len)))
            f++;
        if (f == MNAS_REGRESSION_FAMILIES) {
            fprintf(stderr, "error: %s: unknown family \"%.*s\" (sinusoid, linear, quadratic, harmonics or all)\n",
                    name, (int)len, p);
            return 0;
        }
        m |= 1u << f;
        if (!p[len]) break;
        p += len + 1;
    }
    *mask = m;
    return 1;
}

/* Whether the option opt stands anywhere on the command line (an explicit
 * option wins over a preset's value, wherever the preset stands). */
static int given(int argc, char **argv, const char *opt)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], opt)) return 1;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mnas_demo [options]\n"
            "  --method M          mnas | mnas-shared | mnas-nm | maml | all (default all; repeatable)\n"
            "  --iterations N      search meta-updates of each M-NAS variant (default 1500)\n"
            "  --eval-iterations N architecture-evaluation meta-updates after the search (default 500)\n"
            "  --maml-iterations N MAML meta-updates (default 8000)\n"
            "  --eval-reinit 0|1   1: the evaluation phase starts from freshly drawn weights (encoder,\n"
            "                      modulator, network), as the paper retrains the searched model;\n"
            "                      0 (default): it continues from the search's weights\n"
            "  --preset P          paper (default: the paper's settings); validated: the rates and\n"
            "                      budgets chosen on validation tasks (docs/meta.md \"The validated\n"
            "                      preset\"): outer lr 0.01 (M-NAS-Shared 0.005, MAML 0.004),\n"
            "                      --lr-decay 0.3, 1600 + 400 M-NAS and 10000 MAML meta-updates,\n"
            "                      MAML with per-element learned inner rates; validated-long:\n"
            "                      the same with 4 times the meta-updates and MAML's rate 0.002\n"
            "                      (chosen on validation at that length); validated-wide: validated\n"
            "                      with the M-NAS variants' cell twice as wide (--mnas-hidden 100;\n"
            "                      MAML keeps 50, its better width); validated-adapt: validated-wide\n"
            "                      with the M-NAS variants adapting each validation and test task\n"
            "                      with 500 SGD steps (--mnas-eval-steps 500; MAML keeps its 5);\n"
            "                      options given anywhere on the line override it\n"
            "  --maml-outer-lr X   MAML's Adam step size (default: --outer-lr)\n"
            "  --mnas-shared-outer-lr X, --mnas-nm-outer-lr X\n"
            "                      M-NAS-Shared's, M-NAS-NM's Adam step size (default: --outer-lr)\n"
            "  --maml-inner-lr-mode M  MAML's inner rates (default: --inner-lr-mode)\n"
            "  --lr-decay F        in the last fraction F of each training phase (MAML's training, the\n"
            "                      search, the evaluation phase) the Adam step sizes fall to 0 along a\n"
            "                      half cosine (default 0: constant)\n");
    fprintf(f,
            "  --meta-batch N      tasks per meta-update (default 25)\n"
            "  --inner-steps N     SGD steps of adaptation (default 5)\n"
            "  --inner-lr X        adaptation step size (default 0.001, the paper's)\n"
            "  --outer-lr X        Adam step size of weights, encoder, modulator (default 0.001)\n"
            "  --arch-lr X         Adam step size of controller / shared alpha (default 1e-4)\n"
            "  --path-dropout P    probability of dropping each alpha entry while searching (default 0.1)\n"
            "  --alpha-temperature T0[:T1]  M-NAS variants: alpha = softmax(logits / T) while searching,\n"
            "                      T falling geometrically from T0 to T1 over the search (default 1,\n"
            "                      the paper's; T1 defaults to T0)\n"
            EX_MODEL_USAGE);
    /* two strings: one would pass the 4095 characters C compilers must accept */
    fprintf(f,
            "  --mnas-hidden N     the M-NAS variants' cell width apart from MAML's (default: --hidden)\n"
            "  --threads N         worker threads (default 2)\n"
            "  --seed N            seed (default 1)\n"
            "  --test-tasks N      test tasks per family (default 1000, as the paper); 0: no test\n"
            "                      evaluation, table or figures (for tuning on validation tasks)\n"
            "  --val-tasks N       validation tasks per family (default 0: none), drawn apart from\n"
            "                      the training and test tasks; prints a validation table to choose\n"
            "                      settings on (scripts/sweep.py), so test tasks are used once\n"
            "  --eval-steps N      adaptation steps on a validation or test task (default: --inner-steps)\n"
            "  --mnas-eval-steps N the M-NAS variants' --eval-steps apart from MAML's (default: --eval-steps)\n"
            "  --train-families F1,F2,...  train on these families only (sinusoid, linear, quadratic,\n"
            "                      harmonics; default all); validation and test tasks keep all four\n"
            "  --out DIR           where figures and DOT files go (default mnas-demo-out)\n"
            EX_CKPT_USAGE
            "                      (one file per method: PATH.mnas, PATH.mnas-shared, PATH.mnas-nm, PATH.maml;\n"
            "                      --iterations, --eval-iterations and --maml-iterations stay the totals)\n"
            "  --version           print the program's and the library's version\n"
            "  --help, -h          this text\n"
            "Results go to stdout, progress to stderr. A method that fails (a diverged run, say) gets a\n"
            "row naming the failure, the others still run, and the exit status is 1.\n");
}

enum { METHOD_MNAS, METHOD_SHARED, METHOD_NM, METHOD_MAML }; /* indices into known[] */
/* The validated preset's outer rates of M-NAS-Shared and M-NAS-NM (docs/meta.md). */
#define SHARED_LR_VALIDATED 0.005
#define NM_LR_VALIDATED 0.01
/* validated-wide: the M-NAS variants' cell width (docs/meta.md, "Table 1
 * with the wider cell"). */
#define WIDE_HIDDEN_VALIDATED 100
/* validated-adapt: the M-NAS variants' adaptation steps on a validation or
 * test task (docs/meta.md, "Adaptation steps at evaluation"). */
#define ADAPT_EVAL_STEPS_VALIDATED 500

static const struct {
    const char *flag;
    mnas_method method;
    uint32_t colour;
} known[MAX_METHODS] = {
    { "mnas", MNAS_METHOD_MNAS, 0xd62728 },
    { "mnas-shared", MNAS_METHOD_MNAS_SHARED, 0x1f77b4 },
    { "mnas-nm", MNAS_METHOD_MNAS_NM, 0x2ca02c },
    { "maml", MNAS_METHOD_MAML, 0xff7f0e },
};

typedef struct {
    int k;                          /* index into known[] */
    double mean[5], ci[5];          /* after adaptation, per family + averaged */
    double mean_b[5], ci_b[5];      /* before adaptation */
    double mean_v[5], ci_v[5];      /* validation tasks, after adaptation */
    double pred[MNAS_REGRESSION_FAMILIES][GRID];
    char genotype[512];             /* the shared or most frequent one */
    int distinct;                   /* distinct genotypes over the test tasks */
    double seconds;
    char error[256];                /* non-empty: the method failed (the row says why) */
} result;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The paper's Table-1 layout, of the test (or validation) results. */
static void print_table(const char *title, long long tasks, const result *res, int nres, int validation)
{
    printf("\n%s: query MSE +- 95%% CI after adaptation, %lld %s tasks per family\n", title, tasks,
           validation ? "validation" : "test");
    printf("%-13s %-6s", "Model", "Archs.");
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++) printf(" %-16s", mnas_regression_family_name(f));
    printf(" %-16s %8s\n", "Averaged", "train s");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        const double *mean = validation ? r->mean_v : r->mean, *ci = validation ? r->ci_v : r->ci;
        printf("%-13s %-6s", mnas_method_name(known[r->k].method),
               known[r->k].method == MNAS_METHOD_MAML ? "5 FCs" : "Cell");
        if (r->error[0]) {
            printf(" failed: %s\n", r->error);
            continue;
        }
        for (int f = 0; f <= MNAS_REGRESSION_FAMILIES; f++) printf(" %7.3f +- %-5.3f", mean[f], ci[f]);
        printf(" %8.1f\n", r->seconds);
    }
}

/* Distinct genotypes over the test set and the most frequent one. */
static int tally_genotypes(mnas_learner *l, const mnas_task_set *test, result *r)
{
    size_t n = mnas_task_set_size(test);
    char **s = calloc(n, sizeof *s);
    if (!s) return 0;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        mnas_genotype *g = mnas_learner_genotype(l, mnas_task_set_get(test, i));
        int64_t len = g ? mnas_genotype_to_string(g, NULL, 0) : -1;
        s[i] = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!s[i]) ok = 0;
        else mnas_genotype_to_string(g, s[i], (size_t)len + 1);
        mnas_genotype_free(g);
    }
    if (ok) {
        qsort(s, n, sizeof *s, cmp_str);
        int distinct = 0, best = 0;
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && !strcmp(s[i], s[j])) j++;
            distinct++;
            if ((int)(j - i) > best) {
                best = (int)(j - i);
                snprintf(r->genotype, sizeof r->genotype, "%s", s[i]);
            }
            i = j;
        }
        r->distinct = distinct;
    }
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
    return ok;
}

static void write_dot(mnas_ctx *ctx, const char *dir, const char *flag, const char *text, const char *title)
{
    if (ex_rank != 0) return; /* rank 0 writes the files */
    mnas_search_space *space = mnas_search_space_mlp(ctx);
    mnas_genotype *g = space ? mnas_genotype_parse(ctx, space, text) : NULL;
    int64_t len = g ? mnas_genotype_to_dot(g, title, NULL, 0) : -1;
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    char path[1024], png[1024];
    snprintf(path, sizeof path, "%s/genotype-%s.dot", dir, flag);
    snprintf(png, sizeof png, "%s/genotype-%s.png", dir, flag);
    FILE *f = buf ? fopen(path, "w") : NULL;
    if (f) {
        mnas_genotype_to_dot(g, title, buf, (size_t)len + 1);
        fputs(buf, f);
        fclose(f);
        printf("  wrote %s", path);
        /* Graphviz, if installed: run it without a shell. */
        pid_t pid = fork();
        if (pid == 0) {
            freopen("/dev/null", "w", stderr);
            execlp("dot", "dot", "-Tpng", "-o", png, path, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            printf(" and %s", png);
        printf("\n");
    }
    free(buf);
    mnas_genotype_free(g);
    mnas_search_space_free(space);
}

static int write_figure(mnas_ctx *ctx, const char *dir, const mnas_task_set *test, const result *res, int nres,
                        const int *fig_task);

/* The adapted model's curve over the grid. Batch-norm always uses batch
 * statistics (as in the paper), so a batch of grid points would be
 * normalised by the grid's own statistics, far from the task's data. Each
 * grid point is predicted in a batch with the task's query inputs repeated
 * 50 times, so the statistics are essentially those of the task's data. */
#define CTX_COPIES 50
static mnas_status predict_curve(mnas_learner *l, const mnas_task *t, int steps, const mnas_real *gx, double *out)
{
    mnas_tensor *qx = mnas_task_query_x(t);
    int64_t q = mnas_tensor_dim(qx, 0);
    size_t n = (size_t)(q * CTX_COPIES + 1);
    mnas_real *xs = malloc(n * sizeof *xs), *ys = malloc(n * sizeof *ys);
    mnas_status st = xs && ys ? MNAS_OK : MNAS_E_NOMEM;
    for (int64_t c = 0; st == MNAS_OK && c < CTX_COPIES; c++) memcpy(xs + c * q, mnas_tensor_data(qx), (size_t)q * sizeof *xs);
    for (int i = 0; st == MNAS_OK && i < GRID; i++) {
        xs[n - 1] = gx[i];
        st = mnas_learner_adapt_predict(l, t, steps, n, xs, ys);
        out[i] = ys[n - 1];
    }
    free(xs);
    free(ys);
    return st;
}

int main(int argc, char **argv)
{
    mnas_learner_options base = MNAS_LEARNER_OPTIONS_INIT;
    base.threads = 2;
    base.seed = 1;
    long long iterations = 1500, eval_iterations = 500, maml_iterations = 8000, test_tasks = 1000, val_tasks = 0;
    /* Each method's outer rate, indexed as known[] (M-NAS's is --outer-lr);
     * < 0: the same as --outer-lr. */
    double method_lr[MAX_METHODS] = { -1, -1, -1, -1 };
    int maml_lr_mode = -1;     /* < 0: the same as --inner-lr-mode */
    int eval_reinit = 0;       /* --eval-reinit: fresh weights for the evaluation phase */
    double lr_decay = 0;
    double temp0 = 0, temp1 = 0; /* --alpha-temperature; 0: not set (1, the library's) */
    const char *out = "mnas-demo-out";
    long long eval_steps = -1;      /* --eval-steps; < 0: the training's inner steps */
    long long mnas_eval_steps = -1; /* the M-NAS variants' --eval-steps; < 0: the same as MAML's */
    unsigned train_families = 0xF; /* --train-families: the training tasks' families (bit mask) */
    ex_ckpt ck = { NULL, 0, NULL };
    int want[MAX_METHODS] = { 0 }, any = 0;
    /* --preset first, wherever it stands (the last one if several), so that
     * every other option overrides it. "validated": the settings the validation sweeps chose
     * (docs/meta.md), each method at its best measured rate and at about
     * equal CPU time per method. */
    const char *preset = "paper"; /* the last --preset wins */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--preset")) preset = argv[i + 1];
    int long_preset = !strcmp(preset, "validated-long"), adapt_preset = !strcmp(preset, "validated-adapt");
    int wide_preset = !strcmp(preset, "validated-wide") || adapt_preset;
    int mnas_hidden = 0; /* the M-NAS variants' --hidden; 0: the same as MAML's */
    if (!strcmp(preset, "validated") || long_preset || wide_preset) {
        base.outer_lr = 0.01;
        method_lr[METHOD_SHARED] = SHARED_LR_VALIDATED;
        method_lr[METHOD_NM] = NM_LR_VALIDATED;
        method_lr[METHOD_MAML] = 0.004;
        lr_decay = 0.3;
        iterations = 1600;
        eval_iterations = 400;
        maml_iterations = 10000;
        maml_lr_mode = MNAS_INNER_LR_PER_ELEMENT;
    }
    if (wide_preset) { /* the wider cell, chosen on validation (docs/meta.md) */
        /* an explicit --hidden sets every method's width */
        mnas_hidden = given(argc, argv, "--hidden") ? 0 : WIDE_HIDDEN_VALIDATED;
    }
    if (adapt_preset) { /* more adaptation steps at evaluation, chosen on validation (docs/meta.md) */
        /* an explicit --eval-steps sets every method's */
        mnas_eval_steps = given(argc, argv, "--eval-steps") ? -1 : ADAPT_EVAL_STEPS_VALIDATED;
    }
    if (long_preset) { /* four times the budgets; MAML's rate re-chosen at that length */
        iterations *= 4;
        eval_iterations *= 4;
        maml_iterations *= 4;
        method_lr[METHOD_MAML] = 0.002;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, end = ex_option_start("mnas_demo", a, v, usage);
        if (end >= 0) return end;
        if (ex_learner_option(a, v, &base, &ok) || ex_checkpoint_option(a, v, &ck, &ok)) {
            /* handled */
        } else if (!strcmp(a, "--preset")) {
            ok = !strcmp(v, "paper") || !strcmp(v, "validated") || !strcmp(v, "validated-long") ||
                 !strcmp(v, "validated-wide") || !strcmp(v, "validated-adapt"); /* applied above */
            if (!ok)
                fprintf(stderr,
                        "error: --preset %s: paper, validated, validated-long, validated-wide or validated-adapt\n", v);
        } else if (!strcmp(a, "--mnas-hidden")) {
            long long h = 0;
            ok = ex_int(v, a, 1, 4096, &h);
            mnas_hidden = (int)h;
        } else if (!strcmp(a, "--eval-reinit")) {
            long long r = 0;
            ok = ex_int(v, a, 0, 1, &r);
            eval_reinit = (int)r;
        } else if (!strcmp(a, "--maml-inner-lr-mode")) {
            mnas_inner_lr_mode m = MNAS_INNER_LR_FIXED;
            ok = ex_inner_lr_mode(v, a, &m);
            if (ok) maml_lr_mode = (int)m;
        } else if (!strcmp(a, "--method")) {
            int found = 0;
            for (int k = 0; k < MAX_METHODS; k++)
                if (!strcmp(v, "all") || !strcmp(v, known[k].flag)) {
                    want[k] = 1;
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "error: unknown method \"%s\" (mnas, mnas-shared, mnas-nm, maml, all)\n", v);
                return 2;
            }
            any = 1;
        } else if (!strcmp(a, "--iterations")) {
            ok = ex_int(v, a, 0, 100000000, &iterations);
        } else if (!strcmp(a, "--eval-iterations")) {
            ok = ex_int(v, a, 0, 100000000, &eval_iterations);
        } else if (!strcmp(a, "--maml-iterations")) {
            ok = ex_int(v, a, 0, 100000000, &maml_iterations);
        } else if (!strcmp(a, "--maml-outer-lr")) {
            ok = ex_double(v, a, 0, 100, &method_lr[METHOD_MAML]);
        } else if (!strcmp(a, "--mnas-shared-outer-lr")) {
            ok = ex_double(v, a, 0, 100, &method_lr[METHOD_SHARED]);
        } else if (!strcmp(a, "--mnas-nm-outer-lr")) {
            ok = ex_double(v, a, 0, 100, &method_lr[METHOD_NM]);
        } else if (!strcmp(a, "--lr-decay")) {
            ok = ex_double(v, a, 0, 1, &lr_decay);
        } else if (!strcmp(a, "--alpha-temperature")) {
            ok = ex_temperatures(v, a, &temp0, &temp1);
        } else if (!strcmp(a, "--test-tasks")) {
            ok = ex_int(v, a, 0, 1000000, &test_tasks);
        } else if (!strcmp(a, "--val-tasks")) {
            ok = ex_int(v, a, 0, 1000000, &val_tasks);
        } else if (!strcmp(a, "--eval-steps")) {
            ok = ex_int(v, a, 0, 1000, &eval_steps);
        } else if (!strcmp(a, "--mnas-eval-steps")) {
            ok = ex_int(v, a, 0, 1000, &mnas_eval_steps);
        } else if (!strcmp(a, "--train-families")) {
            ok = parse_families(v, a, &train_families);
        } else if (!strcmp(a, "--out")) {
            out = v;
        } else {
            return ex_unknown_option(a, usage);
        }
        if (!ok) return 2;
        i++;
    }
    if (!any)
        for (int k = 0; k < MAX_METHODS; k++) want[k] = 1;
    /* A run that fails before writing anything to the output folder removes
     * it again if it made it (rmdir: only if still empty). */
    int made_out = mkdir(out, 0777) == 0;
    if (!made_out && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }

    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    int rc = 1, nres = 0, failed = 0;
    if (!ex_mpi_join(ctx, &argc, &argv)) {
        mnas_ctx_free(ctx);
        return 1;
    }
    static result res[MAX_METHODS];
    double *before = NULL, *after = NULL;
    ex_source src = { ctx, MNAS_REGRESSION_OPTIONS_INIT, base.seed };
    /* Test and validation tasks come from streams of their own, apart from
     * the training stream (seed, index) and from each other. They always
     * hold all four families; --train-families narrows the training tasks
     * only (src.ro is set below, after the sets are drawn). */
    mnas_task_set *test = NULL, *val = NULL;
    if (test_tasks && !(test = mnas_regression_test_set(ctx, &src.ro, base.seed + 1000003, (size_t)test_tasks)))
        goto fail;
    if (val_tasks && !(val = mnas_regression_test_set(ctx, &src.ro, base.seed + 2000029, (size_t)val_tasks)))
        goto fail;
    src.ro.families = train_families;
    size_t n = test ? mnas_task_set_size(test) : 0, nv = val ? mnas_task_set_size(val) : 0;
    before = malloc((n > nv ? n : nv) * sizeof *before + 1);
    after = malloc((n > nv ? n : nv) * sizeof *after + 1);
    if (!before || !after) goto fail;
    /* The figure shows the first test task of every family. */
    int fig_task[MNAS_REGRESSION_FAMILIES];
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++) fig_task[f] = f * (int)test_tasks;
    double grid[GRID];
    mnas_real gx[GRID];
    for (int i = 0; i < GRID; i++) grid[i] = -5.0 + 10.0 * i / (GRID - 1), gx[i] = (mnas_real)grid[i];

    for (int k = 0; k < MAX_METHODS; k++)
        if (method_lr[k] < 0) method_lr[k] = base.outer_lr;
    if (mnas_eval_steps < 0) mnas_eval_steps = eval_steps;
    /* The header's optional notes; each fits (at most ~200 characters). */
    char temp_note[256] = "";
    size_t len = 0;
    if (temp0 > 0) len += (size_t)snprintf(temp_note, sizeof temp_note, ", alpha temperature %g -> %g", temp0, temp1);
    if (mnas_eval_steps >= 0)
        len += (size_t)snprintf(temp_note + len, sizeof temp_note - len,
                                ", adaptation steps in evaluation %lld (M-NAS variants), %lld (MAML)", mnas_eval_steps,
                                eval_steps >= 0 ? eval_steps : base.inner_steps);
    if (train_families != (1u << MNAS_REGRESSION_FAMILIES) - 1) {
        len += (size_t)snprintf(temp_note + len, sizeof temp_note - len, ", training on");
        for (int f = 0; f < MNAS_REGRESSION_FAMILIES && len < sizeof temp_note; f++)
            if (train_families >> f & 1)
                len += (size_t)snprintf(temp_note + len, sizeof temp_note - len, " %s", mnas_regression_family_name(f));
    }
    printf("libmnas %s: toy regression, %d-shot, meta-batch %d, inner %d x %g (%s%s%s), outer lr %g "
           "(M-NAS-Shared %g, M-NAS-NM %g, MAML %g), "
           "arch lr %g, lr decay %g%s, %d threads, seed %llu, %lld test and %lld validation tasks per family; "
           "meta-updates %lld + %lld (M-NAS variants), %lld (MAML); width %d (M-NAS variants), %d (MAML)\n",
           mnas_version_string(), src.ro.k_shot, base.meta_batch, base.inner_steps, base.inner_lr,
           mnas_inner_lr_mode_name(base.inner_lr_mode), maml_lr_mode >= 0 ? "; MAML " : "",
           maml_lr_mode >= 0 ? mnas_inner_lr_mode_name((mnas_inner_lr_mode)maml_lr_mode) : "", base.outer_lr,
           method_lr[METHOD_SHARED], method_lr[METHOD_NM], method_lr[METHOD_MAML], base.arch_lr, lr_decay, temp_note,
           base.threads, (unsigned long long)base.seed, test_tasks, val_tasks, iterations, eval_iterations, maml_iterations,
           mnas_hidden > 0 ? mnas_hidden : base.hidden, base.hidden);
    for (int k = 0; k < MAX_METHODS; k++) {
        if (!want[k]) continue;
        result *r = &res[nres];
        memset(r, 0, sizeof *r);
        r->k = k;
        mnas_learner_options o = base;
        o.method = known[k].method;
        o.outer_lr = method_lr[k];
        if (o.method != MNAS_METHOD_MAML && mnas_hidden > 0) o.hidden = mnas_hidden;
        if (o.method == MNAS_METHOD_MAML && maml_lr_mode >= 0) {
            o.inner_lr_mode = (mnas_inner_lr_mode)maml_lr_mode;
            if (o.inner_lr_mode == MNAS_INNER_LR_FIXED) o.inner_lr_max = 0; /* a bound is for learned rates */
        }
        char save_buf[1024], resume_buf[1024];
        const char *save = ex_ckpt_path(ck.save, known[k].flag, save_buf, sizeof save_buf);
        const char *resume = ex_ckpt_path(ck.resume, known[k].flag, resume_buf, sizeof resume_buf);
        if (resume && access(resume, F_OK) != 0) {
            printf("%s: no checkpoint %s, starting afresh\n", mnas_method_name(o.method), resume);
            resume = NULL;
        }
        if (resume && !ex_resume_options(ctx, resume, &o)) goto fail;
        mnas_learner *l = mnas_learner_create(ctx, &o);
        if (!l) goto fail;
        if (ex_mpi_distribute(l) != MNAS_OK) goto fail_l;
        if (resume) {
            if (mnas_learner_load(l, resume) != MNAS_OK) goto fail_l;
            printf("%s: resumed from %s at iteration %lld%s\n", mnas_method_name(o.method), resume,
                   (long long)mnas_learner_iteration(l), mnas_learner_is_discrete(l) ? " (evaluation phase)" : "");
        }
        double t0 = ex_now();
        int is_maml = o.method == MNAS_METHOD_MAML;
        const int steps = (int)(is_maml ? eval_steps : mnas_eval_steps); /* evaluation's; < 0: training's */
        char label[64];
        snprintf(label, sizeof label, "%s %s", mnas_method_name(o.method), is_maml ? "meta-train" : "search");
        ex_progress pr;
        long long its = is_maml ? maml_iterations : iterations;
        /* Iteration counts are totals: a resumed run trains what is left. */
        long long done = (long long)mnas_learner_iteration(l);
        long long todo = mnas_learner_is_discrete(l) ? 0 : (its > done ? its - done : 0);
        ex_progress_init(&pr, label, todo, o.meta_batch);
        /* The schedule's rates are the command line's (a checkpoint holds
         * the decayed rate it was written at). */
        ex_schedule sch = { l, method_lr[k], base.arch_lr, lr_decay,
                            0, its, ex_progress_cb, &pr, is_maml ? 0 : temp0, temp1, its };
        int sched = lr_decay > 0 || sch.temp0 > 0;
        mnas_progress_fn cb = sched ? ex_schedule_cb : ex_progress_cb;
        void *cb_user = sched ? (void *)&sch : (void *)&pr;
        if (todo && sched && ex_schedule_apply(&sch) != MNAS_OK) goto fail_l;
        if (todo && ex_train(l, ex_regression_source, &src, todo, save, ck.every, cb, cb_user) != MNAS_OK)
            goto fail_l;
        if (!is_maml) {
            if (!mnas_learner_is_discrete(l) && mnas_learner_discretize(l, eval_reinit) != MNAS_OK) goto fail_l;
            done = (long long)mnas_learner_iteration(l);
            long long etodo = its + eval_iterations > done ? its + eval_iterations - done : 0;
            snprintf(label, sizeof label, "%s evaluation phase", mnas_method_name(o.method));
            ex_progress_init(&pr, label, etodo, o.meta_batch);
            sch.begin = its;
            sch.end = its + eval_iterations;
            if (etodo && sched && ex_schedule_apply(&sch) != MNAS_OK) goto fail_l;
            if (etodo && ex_train(l, ex_regression_source, &src, etodo, save, ck.every, cb, cb_user) != MNAS_OK)
                goto fail_l;
            if (save && !etodo && ex_rank == 0 && mnas_learner_save(l, save) != MNAS_OK) goto fail_l;
            if (test && !tally_genotypes(l, test, r)) goto fail_l;
        }
        r->seconds = ex_now() - t0;
        if (val) {
            if (mnas_learner_evaluate(l, val, steps, NULL, after) != MNAS_OK) goto fail_l;
            ex_family_stats(val, after, r->mean_v, r->ci_v);
        }
        if (!test) {
            mnas_learner_free(l);
            nres++;
            continue;
        }
        if (mnas_learner_evaluate(l, test, steps, before, after) != MNAS_OK) goto fail_l;
        ex_family_stats(test, after, r->mean, r->ci);
        ex_family_stats(test, before, r->mean_b, r->ci_b);
        for (int f = 0; f < MNAS_REGRESSION_FAMILIES; f++)
            if (predict_curve(l, mnas_task_set_get(test, (size_t)fig_task[f]), steps, gx, r->pred[f]) != MNAS_OK) goto fail_l;
        if (!is_maml) {
            /* Figure 6: do tasks of one family get nearby representations? */
            char path[1100], title[96];
            snprintf(path, sizeof path, "%s/figure6-%s.png", out, known[k].flag);
            snprintf(title, sizeof title, "%s: task representations z (t-SNE)", mnas_method_name(o.method));
            if (!ex_figure6(ctx, l, test, MNAS_REGRESSION_FAMILIES, 150, mnas_regression_family_name, title, path))
                goto fail_l;
            printf("  wrote %s (Figure 6: t-SNE of z over %d test tasks per family)\n", path,
                   test_tasks < 150 ? (int)test_tasks : 150);
        }
        mnas_learner_free(l);
        nres++;
        continue;
    fail_l:
        /* One method failing (a diverged run, say) does not cost the
         * others their rows: its row says why, and the exit status is 1. */
        snprintf(r->error, sizeof r->error, "%s", mnas_ctx_last_error(ctx));
        fprintf(stderr, "error: %s: %s\n", mnas_method_name(o.method), r->error);
        mnas_learner_free(l);
        nres++;
        failed++;
    }

    if (val) print_table("Validation", val_tasks, res, nres, 1);
    if (!test) {
        rc = failed ? 1 : 0;
        goto done;
    }
    print_table("Table 1", test_tasks, res, nres, 0);
    printf("\nBefore adaptation (averaged): ");
    for (int i = 0; i < nres; i++)
        if (res[i].error[0])
            printf("%s failed%s", mnas_method_name(known[res[i].k].method), i + 1 < nres ? ", " : "\n");
        else
            printf("%s %.3f +- %.3f%s", mnas_method_name(known[res[i].k].method), res[i].mean_b[4], res[i].ci_b[4],
                   i + 1 < nres ? ", " : "\n");
    printf("\nGenotypes (op@input per node; inputs 0, 1 = cell inputs, k >= 2 = node k-2):\n");
    for (int i = 0; i < nres; i++) {
        const result *r = &res[i];
        if (known[r->k].method == MNAS_METHOD_MAML || r->error[0]) continue;
        if (known[r->k].method == MNAS_METHOD_MNAS_SHARED)
            printf("  %-13s shared: %s\n", mnas_method_name(known[r->k].method), r->genotype);
        else
            printf("  %-13s %d distinct over the test tasks; most frequent: %s\n", mnas_method_name(known[r->k].method),
                   r->distinct, r->genotype);
        char title[128];
        snprintf(title, sizeof title, "%s (toy regression)", mnas_method_name(known[r->k].method));
        write_dot(ctx, out, known[r->k].flag, r->genotype, title);
    }
    if (write_figure(ctx, out, test, res, nres, fig_task) != 0) goto fail;
    if (failed) fprintf(stderr, "error: %d method%s failed (see %s)\n", failed, failed > 1 ? "s" : "",
                        failed > 1 ? "their rows" : "its row");
    rc = failed ? 1 : 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", mnas_ctx_last_error(ctx));
done:
    free(before);
    free(after);
    mnas_task_set_free(test);
    mnas_task_set_free(val);
    ex_mpi_leave();
    mnas_ctx_free(ctx);
    if (rc && made_out && ex_rank == 0) (void)rmdir(out); /* only if still empty */
    return rc;
}

static int write_figure(mnas_ctx *ctx, const char *dir, const mnas_task_set *test, const result *res, int nres,
                        const int *fig_task)
{
    if (ex_rank != 0) return 0; /* rank 0 writes the files */
    mnas_figure *fig = mnas_figure_create(ctx, 1200, 900, 2, 2);
    if (!fig) return 1;
    double gx[GRID], gt[GRID];
    for (int i = 0; i < GRID; i++) gx[i] = -5.0 + 10.0 * i / (GRID - 1);
    int ok = 1;
    for (int f = 0; f < MNAS_REGRESSION_FAMILIES && ok; f++) {
        const mnas_task *t = mnas_task_set_get(test, (size_t)fig_task[f]);
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < GRID; i++) {
            gt[i] = mnas_regression_eval(t, gx[i]);
            lo = fmin(lo, gt[i]);
            hi = fmax(hi, gt[i]);
        }
        /* The y range follows the true function (with room), so one wild
         * prediction does not flatten the panel. */
        double pad = 0.25 * (hi - lo) + 0.5;
        ok &= mnas_figure_panel_range(fig, f, -5, 5, lo - pad, hi + pad) == MNAS_OK;
        char title[64];
        snprintf(title, sizeof title, "%s", mnas_regression_family_name(f));
        ok &= mnas_figure_title(fig, f, title) == MNAS_OK;
        ok &= mnas_figure_axis_labels(fig, f, "x", "y") == MNAS_OK;
        ok &= mnas_figure_line(fig, f, gx, gt, GRID, 0x000000, 2.5, "true function") == MNAS_OK;
        for (int r = 0; r < nres && ok; r++)
            if (!res[r].error[0])
                ok &= mnas_figure_line(fig, f, gx, res[r].pred[f], GRID, known[res[r].k].colour, 2.0,
                                       mnas_method_name(known[res[r].k].method)) == MNAS_OK;
        mnas_tensor *sx = mnas_task_support_x(t), *sy = mnas_task_support_y(t);
        int64_t k = mnas_tensor_dim(sx, 0);
        double px[4096], py[4096];
        for (int64_t i = 0; i < k && i < 4096; i++) {
            px[i] = mnas_tensor_data(sx)[i];
            py[i] = mnas_tensor_data(sy)[i];
        }
        ok &= mnas_figure_points(fig, f, px, py, (size_t)(k < 4096 ? k : 4096), 0x000000, 5.0, "support") == MNAS_OK;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/figure3.png", dir);
    if (ok && mnas_figure_save_png(fig, path) == MNAS_OK)
        printf("  wrote %s (Figure 3: adapted predictions on one test task per family)\n", path);
    else
        ok = 0;
    mnas_figure_free(fig);
    return ok ? 0 : 1;
}
