/* bench_images — memory and time of image datasets at a requested size:
 * load IDX files and/or class folders, split each into train/val/test
 * classes, then draw N-way K-shot tasks from the train splits (one dataset
 * per task) and report tasks/s, CPU time and peak RSS.
 *
 *   bench_images --idx DIR [--folder DIR] [--size 84] [--channels 3]
 *                [--tasks 200] [--way 5] [--shot 1] [--query 15]
 *
 * --idx DIR reads DIR/train-images-idx3-ubyte(.gz) with its labels and, when
 * present, DIR/t10k-... (Fashion-MNIST's layout: both files, all 70 000
 * images). Only the task draws are timed (wall: CLOCK_MONOTONIC, CPU:
 * CLOCK_PROCESS_CPUTIME_ID); the printed checksum (FNV-1a over the bits of
 * every pixel of every task drawn, as double, outside the timing) lets two
 * builds be compared for identical tasks. Peak RSS is getrusage's
 * ru_maxrss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_images: %s failed: %s\n", what, mnas_ctx_last_error(ctx));
    exit(1);
}

/* DIR/name or DIR/name.gz, whichever exists (NULL: neither). */
static char *find_file(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 8;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) {
        snprintf(p, n, "%s/%s.gz", dir, name);
        f = fopen(p, "rb");
    }
    if (!f) {
        free(p);
        return NULL;
    }
    fclose(f);
    return p;
}

/* FNV-1a over the 64-bit patterns of the values (as double), outside the
 * timed part. */
static uint64_t hash_tensor(uint64_t h, const mnas_tensor *t)
{
    const mnas_real *d = mnas_tensor_cdata(t);
    size_t n = (size_t)mnas_tensor_size(t);
    for (size_t i = 0; i < n; i++) {
        double v = (double)d[i];
        uint64_t b;
        memcpy(&b, &v, sizeof b);
        h = (h ^ b) * 0x100000001b3ull;
    }
    return h;
}

int main(int argc, char **argv)
{
    const char *idx = NULL, *folders[8];
    int n_folders = 0, size = 84, channels = 3, tasks = 200, way = 5, shot = 1, query = 15;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            printf("usage: bench_images [--idx DIR] [--folder DIR]... [--size S] [--channels C] [--tasks N]\n"
                   "                    [--way N] [--shot K] [--query Q]\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_images: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--idx")) idx = v;
        else if (!strcmp(a, "--folder") && n_folders < 8) folders[n_folders++] = v;
        else if (!strcmp(a, "--size")) size = atoi(v);
        else if (!strcmp(a, "--channels")) channels = atoi(v);
        else if (!strcmp(a, "--tasks")) tasks = atoi(v);
        else if (!strcmp(a, "--way")) way = atoi(v);
        else if (!strcmp(a, "--shot")) shot = atoi(v);
        else if (!strcmp(a, "--query")) query = atoi(v);
        else {
            fprintf(stderr, "bench_images: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!idx && n_folders == 0) {
        fprintf(stderr, "bench_images: give --idx DIR and/or --folder DIR\n");
        return 2;
    }
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 1;
    mnas_image_load_options lo = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    lo.channels = channels;
    lo.height = lo.width = size;
    mnas_image_dataset *all[16];
    int n_all = 0;
    double t0 = now(), c0 = cpu_seconds();
    if (idx) {
        static const char *const pairs[2][2] = { { "train-images-idx3-ubyte", "train-labels-idx1-ubyte" },
                                                 { "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" } };
        for (int k = 0; k < 2; k++) {
            char *im = find_file(idx, pairs[k][0]), *lb = find_file(idx, pairs[k][1]);
            if (im && lb) {
                all[n_all] = mnas_image_dataset_load_idx(ctx, im, lb, &lo);
                if (!all[n_all]) die("mnas_image_dataset_load_idx");
                n_all++;
            }
            free(im);
            free(lb);
        }
        if (n_all == 0) {
            fprintf(stderr, "bench_images: no IDX files in %s\n", idx);
            return 1;
        }
    }
    for (int k = 0; k < n_folders; k++) {
        all[n_all] = mnas_image_dataset_load_folder(ctx, folders[k], &lo);
        if (!all[n_all]) die("mnas_image_dataset_load_folder");
        n_all++;
    }
    size_t images = 0;
    for (int k = 0; k < n_all; k++) images += mnas_image_dataset_num_images(all[k]);
    double t_load = now() - t0, c_load = cpu_seconds() - c0;
    printf("loaded %zu images in %d datasets at %dx%dx%d: %.2f s wall, %.2f s CPU, peak RSS %.0f MiB\n", images,
           n_all, channels, size, size, t_load, c_load, peak_mib());
    /* split every dataset: half the classes train, the rest test */
    mnas_image_split_options so = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
    so.train_fraction = 0.5;
    so.val_fraction = 0.0;
    mnas_image_dataset *train[16], *test[16];
    t0 = now();
    for (int k = 0; k < n_all; k++)
        if (mnas_image_dataset_split(all[k], &so, &train[k], NULL, &test[k]) != MNAS_OK)
            die("mnas_image_dataset_split");
    printf("split: %.3f s wall, peak RSS %.0f MiB\n", now() - t0, peak_mib());
    mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
    fo.way = way;
    fo.shot = shot;
    fo.query = query;
    mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, (const mnas_image_dataset *const *)train,
                                                          (size_t)n_all, &fo);
    if (!s) die("mnas_fewshot_sampler_create");
    uint64_t h = 0xcbf29ce484222325ull;
    double wall = 0.0, cpu = 0.0;
    for (int i = 0; i < tasks; i++) {
        t0 = now();
        c0 = cpu_seconds();
        mnas_task *t = mnas_fewshot_task(ctx, s, 42, (uint64_t)i);
        if (!t) die("mnas_fewshot_task");
        wall += now() - t0;
        cpu += cpu_seconds() - c0;
        h = hash_tensor(h, mnas_task_support_x(t));
        h = hash_tensor(h, mnas_task_query_x(t));
        mnas_task_free(t);
    }
    printf("%d tasks (%d-way %d-shot %d-query): %.2f s wall, %.2f s CPU: %.1f tasks/s wall, %.1f tasks per "
           "CPU-second; checksum %016llx\n",
           tasks, way, shot, query, wall, cpu, (double)tasks / wall, (double)tasks / cpu, (unsigned long long)h);
    printf("peak RSS %.0f MiB\n", peak_mib());
    mnas_fewshot_sampler_free(s);
    for (int k = 0; k < n_all; k++) {
        mnas_image_dataset_free(train[k]);
        mnas_image_dataset_free(test[k]);
        mnas_image_dataset_free(all[k]);
    }
    mnas_ctx_free(ctx);
    return 0;
}
