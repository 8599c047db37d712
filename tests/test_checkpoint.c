/* Checkpoints: round trips, exact resume (in this process and in a new
 * one), atomic saves surviving a crash before the rename, every corruption
 * class (truncation at every length, every flipped byte, wrong magic,
 * version, byte order, kind, options), and the divergence guard.
 *
 * The new-process resume re-executes this program with
 * "--resume-child <checkpoint> <iterations> <threads> <out>": the child loads
 * the checkpoint into a fresh learner, trains on and saves the result. */
#include <check.h>
#include <math.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mnas/mnas.h>

extern char **environ;

static const char *self_path;
static char tmpdir[256];

static void make_tmpdir(void)
{
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mnas-ckpt-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static void tmp_path(char *buf, size_t cap, const char *name)
{
    make_tmpdir();
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

/* ---- fixtures ----------------------------------------------------------- */

typedef struct {
    mnas_ctx *ctx;
    mnas_regression_options ro;
    uint64_t seed;
    int64_t nan_from; /* tasks from this index on have a NaN query target (-1: never) */
} src_data;

static mnas_task *src(void *user, uint64_t index)
{
    src_data *s = user;
    mnas_task *t = mnas_regression_task(s->ctx, &s->ro, s->seed, index, -1);
    if (t && s->nan_from >= 0 && (int64_t)index >= s->nan_from) mnas_tensor_data(mnas_task_query_y(t))[0] = NAN;
    return t;
}

static mnas_learner_options tiny(mnas_method m, int threads)
{
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.method = m;
    o.seed = 8;
    o.meta_batch = 4;
    o.inner_steps = 2;
    o.hidden = 8;
    o.layers = 3;
    o.z_dim = 4;
    o.f_dim = 4;
    o.controller_hidden = 6;
    o.threads = threads;
    o.inner_lr = 0.01;
    o.outer_lr = 0.01;
    return o;
}

static mnas_ctx *new_ctx(void)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    return ctx;
}

/* All parameter values, flattened. */
static size_t flatten(const mnas_learner *l, mnas_real *out, size_t cap)
{
    mnas_params *p = mnas_learner_params(l);
    size_t k = 0;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *t = mnas_params_get(p, i);
        ck_assert_uint_le(k + (size_t)mnas_tensor_size(t), cap);
        memcpy(out + k, mnas_tensor_data(t), (size_t)mnas_tensor_size(t) * sizeof *out);
        k += (size_t)mnas_tensor_size(t);
    }
    return k;
}

#define CAP 200000

static int same_params(const mnas_learner *a, const mnas_learner *b)
{
    static mnas_real x[CAP], y[CAP];
    size_t na = flatten(a, x, CAP), nb = flatten(b, y, CAP);
    return na == nb && memcmp(x, y, na * sizeof *x) == 0;
}

/* Train phase-aware: M-NAS variants enter the evaluation phase at `switch_at`. */
static void train_to(mnas_learner *l, src_data *sd, int64_t target, int64_t switch_at)
{
    mnas_ctx *ctx = sd->ctx;
    while (mnas_learner_iteration(l) < target) {
        if (switch_at >= 0 && !mnas_learner_is_discrete(l) && mnas_learner_iteration(l) == switch_at)
            ck_assert_msg(mnas_learner_discretize(l, 0) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        ck_assert_msg(mnas_learner_train(l, src, sd, 1, NULL, NULL) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    }
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* The test's own CRC-32 (bitwise), to re-seal deliberately altered files. */
static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void reseal(uint8_t *buf, size_t len)
{
    uint32_t c = crc32_ref(buf, len - 4);
    for (int i = 0; i < 4; i++) buf[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* ---- round trip and exact resume ------------------------------------------ */

START_TEST(crc_matches_reference)
{
    /* The stored whole-file CRC is the standard CRC-32 (check value of
     * "123456789" is 0xCBF43926 for the reference implementation). */
    ck_assert_uint_eq(crc32_ref((const uint8_t *)"123456789", 9), 0xCBF43926u);
    mnas_ctx *ctx = new_ctx();
    mnas_learner_options o = tiny(MNAS_METHOD_MAML, 1);
    mnas_learner *l = mnas_learner_create(ctx, &o);
    char path[512];
    tmp_path(path, sizeof path, "crc.ckpt");
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    size_t len;
    uint8_t *buf = read_all(path, &len);
    uint32_t stored = (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 | (uint32_t)buf[len - 2] << 16 |
                      (uint32_t)buf[len - 1] << 24;
    ck_assert_uint_eq(stored, crc32_ref(buf, len - 4));
    ck_assert(memcmp(buf, "MNASCKPT", 8) == 0);
    free(buf);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

static const mnas_method methods[4] = { MNAS_METHOD_MAML, MNAS_METHOD_MNAS, MNAS_METHOD_MNAS_SHARED,
                                        MNAS_METHOD_MNAS_NM };

/* N straight vs N/2, save, load into a fresh learner (fresh context, other
 * thread count), N/2 more: identical bits. M-NAS variants switch to the
 * evaluation phase before the save, so the phase and the fixed alpha are
 * carried too. */
START_TEST(exact_resume_in_process)
{
    mnas_method m = methods[_i % 4];
    int threads_a = 1 + (_i / 4) % 2, threads_b = 3 - threads_a;
    const int64_t N = 6, half = 3, sw = m == MNAS_METHOD_MAML ? -1 : 2;
    mnas_ctx *ctx = new_ctx();
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    mnas_learner_options o = tiny(m, threads_a);
    mnas_learner *straight = mnas_learner_create(ctx, &o);
    ck_assert_ptr_nonnull(straight);
    train_to(straight, &sd, N, sw);

    mnas_learner *first = mnas_learner_create(ctx, &o);
    train_to(first, &sd, half, sw);
    char path[512];
    tmp_path(path, sizeof path, "resume.ckpt");
    ck_assert_msg(mnas_learner_save(first, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));

    mnas_ctx *ctx2 = new_ctx();
    mnas_learner_options o2 = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_msg(mnas_learner_checkpoint_options(ctx2, path, &o2) == MNAS_OK, "%s", mnas_ctx_last_error(ctx2));
    ck_assert_int_eq(o2.method, m);
    ck_assert_int_eq(o2.hidden, o.hidden);
    o2.threads = threads_b;
    mnas_learner *second = mnas_learner_create(ctx2, &o2);
    ck_assert_ptr_nonnull(second);
    ck_assert_msg(mnas_learner_load(second, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx2));
    ck_assert_int_eq(mnas_learner_iteration(second), half);
    ck_assert_int_eq(mnas_learner_is_discrete(second), mnas_learner_is_discrete(first));
    ck_assert(same_params(first, second));
    src_data sd2 = { ctx2, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    train_to(second, &sd2, N, sw);
    ck_assert_msg(same_params(straight, second), "%s: resumed run differs from the straight one",
                  mnas_method_name(m));
    mnas_learner_free(second);
    mnas_ctx_free(ctx2);
    mnas_learner_free(first);
    mnas_learner_free(straight);
    mnas_ctx_free(ctx);
}
END_TEST

/* Learned inner rates (issue 17), per element for every method: the rates
 * are saved ("param:lr.*" records and config.inner_lr_mode), a run resumed
 * from a checkpoint on 2 threads ends bit-identical to a straight run on 1
 * thread, and a learner of another inner_lr_mode refuses the file, naming
 * the option. */
START_TEST(learned_rates_saved_and_resumed)
{
    mnas_method m = methods[_i];
    const int64_t N = 4, half = 2, sw = m == MNAS_METHOD_MAML ? -1 : 3;
    mnas_ctx *ctx = new_ctx();
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    mnas_learner_options o = tiny(m, 1);
    o.inner_lr_mode = MNAS_INNER_LR_PER_ELEMENT;
    /* odd loops: rates bounded by inner_lr_max (saved, and a learner with
     * another bound refuses the file) */
    if (_i % 2) o.inner_lr_max = 5 * o.inner_lr;
    mnas_learner *straight = mnas_learner_create(ctx, &o), *first = mnas_learner_create(ctx, &o);
    ck_assert_msg(straight && first, "%s", mnas_ctx_last_error(ctx));
    train_to(straight, &sd, N, sw);
    train_to(first, &sd, half, sw);
    char path[512];
    tmp_path(path, sizeof path, "rates.ckpt");
    ck_assert_msg(mnas_learner_save(first, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    size_t len;
    uint8_t *buf = read_all(path, &len);
    const char *rec = "param:lr.net.";
    int found = 0;
    for (size_t i = 0; i + strlen(rec) <= len && !found; i++) found = !memcmp(buf + i, rec, strlen(rec));
    free(buf);
    ck_assert_msg(found, "no learned-rate record in the checkpoint");

    mnas_ctx *ctx2 = new_ctx();
    mnas_learner_options o2 = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_msg(mnas_learner_checkpoint_options(ctx2, path, &o2) == MNAS_OK, "%s", mnas_ctx_last_error(ctx2));
    ck_assert_int_eq(o2.inner_lr_mode, MNAS_INNER_LR_PER_ELEMENT);
    ck_assert(o2.inner_lr_max == o.inner_lr_max);
    o2.threads = 2;
    mnas_learner *second = mnas_learner_create(ctx2, &o2);
    ck_assert_ptr_nonnull(second);
    ck_assert_msg(mnas_learner_load(second, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx2));
    ck_assert(same_params(first, second));
    src_data sd2 = { ctx2, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    train_to(second, &sd2, N, sw);
    ck_assert_msg(same_params(straight, second), "%s: resumed run with learned rates differs", mnas_method_name(m));
    /* another mode or bound refuses the file by name, and changes nothing */
    for (int k = 0; k < 3; k++) {
        mnas_learner_options ob = o;
        ob.inner_lr_mode = k == 2 ? o.inner_lr_mode : k ? MNAS_INNER_LR_PER_TENSOR : MNAS_INNER_LR_FIXED;
        ob.inner_lr_max = k < 2 ? 0 : o.inner_lr_max > 0 ? 0 : 3 * o.inner_lr;
        mnas_learner *other = mnas_learner_create(ctx2, &ob), *fresh = mnas_learner_create(ctx2, &ob);
        ck_assert_msg(other && fresh, "%s", mnas_ctx_last_error(ctx2));
        ck_assert_int_eq(mnas_learner_load(other, path), MNAS_E_MISMATCH);
        ck_assert_msg(strstr(mnas_ctx_last_error(ctx2), k < 2 ? "inner_lr_mode = per-element" : "inner_lr_max") != NULL,
                      "%s", mnas_ctx_last_error(ctx2));
        ck_assert(same_params(other, fresh));
        mnas_learner_free(other);
        mnas_learner_free(fresh);
    }
    mnas_learner_free(second);
    mnas_ctx_free(ctx2);
    mnas_learner_free(first);
    mnas_learner_free(straight);
    mnas_ctx_free(ctx);
}
END_TEST

/* The child half of exact_resume_new_process. */
static int resume_child(const char *ckpt, long iterations, int threads, const char *out)
{
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 3;
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    int rc = 4;
    mnas_learner *l = NULL;
    if (mnas_learner_checkpoint_options(ctx, ckpt, &o) != MNAS_OK) goto done;
    o.threads = threads;
    l = mnas_learner_create(ctx, &o);
    if (!l || mnas_learner_load(l, ckpt) != MNAS_OK) goto done;
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    if (mnas_learner_train(l, src, &sd, iterations - mnas_learner_iteration(l), NULL, NULL) != MNAS_OK) goto done;
    if (mnas_learner_save(l, out) != MNAS_OK) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "resume child: %s\n", mnas_ctx_last_error(ctx));
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
    return rc;
}

START_TEST(exact_resume_new_process)
{
    mnas_method m = _i < 2 ? MNAS_METHOD_MAML : MNAS_METHOD_MNAS;
    int threads = 1 + _i % 2;
    const int64_t N = 6;
    mnas_ctx *ctx = new_ctx();
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    mnas_learner_options o = tiny(m, threads);
    mnas_learner *straight = mnas_learner_create(ctx, &o);
    train_to(straight, &sd, N, -1);
    mnas_learner *first = mnas_learner_create(ctx, &o);
    train_to(first, &sd, N / 2, -1);
    char ck[512], out[512], n_s[32], t_s[32];
    tmp_path(ck, sizeof ck, "child-in.ckpt");
    tmp_path(out, sizeof out, "child-out.ckpt");
    ck_assert_int_eq(mnas_learner_save(first, ck), MNAS_OK);
    snprintf(n_s, sizeof n_s, "%lld", (long long)N);
    snprintf(t_s, sizeof t_s, "%d", 3 - threads);
    char *argv[] = { (char *)self_path, "--resume-child", ck, n_s, t_s, out, NULL };
    pid_t pid;
    ck_assert_int_eq(posix_spawn(&pid, self_path, NULL, NULL, argv, environ), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the resumed process failed (status %d)", status);
    /* Load the child's result into `first` and compare with the straight run. */
    ck_assert_msg(mnas_learner_load(first, out) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_learner_iteration(first), N);
    ck_assert_msg(same_params(straight, first), "the resumed process's parameters differ from the straight run");
    mnas_learner_free(first);
    mnas_learner_free(straight);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(params_round_trip_and_mismatch)
{
    mnas_ctx *ctx = new_ctx();
    mnas_params *a = mnas_params_create(ctx), *b = mnas_params_create(ctx), *c = mnas_params_create(ctx);
    int64_t s1[2] = { 3, 4 }, s2[1] = { 5 }, s3[1] = { 6 };
    ck_assert_int_ge(mnas_params_add(a, "w", 2, s1, MNAS_INIT_NORMAL, 1, 0), 0);
    ck_assert_int_ge(mnas_params_add(a, "b", 1, s2, MNAS_INIT_NORMAL, 1, 0), 0);
    ck_assert_int_ge(mnas_params_add(b, "b", 1, s2, MNAS_INIT_ZEROS, 0, 0), 0); /* other order */
    ck_assert_int_ge(mnas_params_add(b, "w", 2, s1, MNAS_INIT_ZEROS, 0, 0), 0);
    ck_assert_int_ge(mnas_params_add(c, "w", 2, s1, MNAS_INIT_ZEROS, 0, 0), 0);
    ck_assert_int_ge(mnas_params_add(c, "b", 1, s3, MNAS_INIT_ZEROS, 0, 0), 0); /* wrong shape */
    char path[512];
    tmp_path(path, sizeof path, "params.ckpt");
    ck_assert_int_eq(mnas_params_save(a, path), MNAS_OK);
    ck_assert_int_eq(mnas_params_load(b, path), MNAS_OK);
    for (size_t i = 0; i < 2; i++) {
        mnas_tensor *x = mnas_params_get(a, i), *y = mnas_params_get(b, (size_t)mnas_params_find(b, mnas_params_name(a, i)));
        ck_assert(memcmp(mnas_tensor_data(x), mnas_tensor_data(y), (size_t)mnas_tensor_size(x) * sizeof(mnas_real)) == 0);
    }
    ck_assert_int_eq(mnas_params_load(c, path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "param:b"));
    for (int64_t k = 0; k < 12; k++) ck_assert(mnas_tensor_data(mnas_params_get(c, 0))[k] == 0);
    /* Non-finite values are refused on load. */
    mnas_tensor_data(mnas_params_get(a, 1))[2] = INFINITY;
    ck_assert_int_eq(mnas_params_save(a, path), MNAS_OK);
    ck_assert_int_eq(mnas_params_load(b, path), MNAS_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "non-finite"));
    /* A parameter-set file is not a learner checkpoint. */
    mnas_learner_options o = tiny(MNAS_METHOD_MAML, 1);
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_int_eq(mnas_learner_load(l, path), MNAS_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "not a learner checkpoint"));
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    ck_assert_int_eq(mnas_params_load(b, path), MNAS_E_FORMAT);
    /* NULLs and bad paths. */
    ck_assert_int_eq(mnas_params_save(NULL, path), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_save(a, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_params_load(a, ""), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_save(NULL, path), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_load(NULL, path), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_load(l, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_load(l, "/nonexistent/dir/x.ckpt"), MNAS_E_IO);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "/nonexistent/dir/x.ckpt"));
    ck_assert_int_eq(mnas_learner_load(l, tmpdir), MNAS_E_IO); /* a folder */
    char fifo[512];
    tmp_path(fifo, sizeof fifo, "fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(mnas_learner_load(l, fifo), MNAS_E_IO); /* neither blocks nor reads */
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "not a regular file"));
    unlink(fifo);
    ck_assert_int_eq(mnas_learner_save(l, "/nonexistent/dir/x.ckpt"), MNAS_E_IO);
    mnas_learner_options oo = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(NULL, path, &oo), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_checkpoint_options(ctx, path, NULL), MNAS_E_INVALID);
    oo.struct_size = 0;
    ck_assert_int_eq(mnas_learner_checkpoint_options(ctx, path, &oo), MNAS_E_INVALID);
    mnas_learner_free(l);
    mnas_params_free(a);
    mnas_params_free(b);
    mnas_params_free(c);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- optimiser checkpoints ------------------------------------------------ */

static void set_i64_record(uint8_t *buf, size_t len, const char *name, int64_t v);

/* Element 0 of the one-dimensional f32 record `name` set to v, the record's
 * CRC and the file's made valid again (docs/checkpoints.md). */
static void set_f32_vector_head(uint8_t *buf, size_t len, const char *name, float v)
{
    size_t n = strlen(name);
    for (size_t i = 2; i + n + 18 <= len; i++) {
        if (memcmp(buf + i, name, n) != 0 || buf[i - 2] != (uint8_t)n || buf[i - 1] != 0) continue;
        uint8_t *rec = buf + i - 2, *p = buf + i + n;
        ck_assert_int_eq(p[0], 1); /* f32 */
        ck_assert_int_eq(p[1], 1); /* one dimension */
        uint64_t bytes = 0;
        for (int k = 0; k < 8; k++) bytes |= (uint64_t)p[10 + k] << (8 * k);
        ck_assert_uint_le((size_t)(p + 18 + bytes + 4 - buf), len);
        memcpy(p + 18, &v, 4); /* after type, ndim, the dimension and the payload size */
        uint32_t c = crc32_ref(rec, (size_t)(p + 18 + bytes - rec));
        for (int k = 0; k < 4; k++) p[18 + bytes + k] = (uint8_t)(c >> (8 * k));
        reseal(buf, len);
        return;
    }
    ck_abort_msg("record %s not found", name);
}

/* A set {w: 3x4, b: <nb>} (b named bname), values from seed. */
static mnas_params *optim_set(mnas_ctx *ctx, const char *bname, int64_t nb, uint64_t seed)
{
    mnas_params *p = mnas_params_create(ctx);
    int64_t s1[2] = { 3, 4 }, s2[1] = { nb };
    ck_assert_int_ge(mnas_params_add(p, "w", 2, s1, MNAS_INIT_NORMAL, 1, 0), 0);
    ck_assert_int_ge(mnas_params_add(p, bname, 1, s2, MNAS_INIT_NORMAL, 1, 0), 0);
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *t = mnas_params_get(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(t); j++)
            mnas_tensor_data(t)[j] = (mnas_real)sin(0.7 * (double)(seed + 13 * i + (uint64_t)j));
    }
    return p;
}

/* Steps of a loss whose gradient depends on the weights (each w towards
 * cos(j) with a non-linear term), so the path depends on every moment. */
static void optim_train(mnas_params *p, mnas_optim *o, int steps)
{
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < mnas_params_count(p); i++) {
            mnas_tensor *t = mnas_params_get(p, i);
            mnas_real *w = mnas_tensor_data(t), *g = mnas_tensor_data(mnas_params_grad(p, i));
            for (int64_t j = 0; j < mnas_tensor_size(t); j++)
                g[j] = (mnas_real)(w[j] - cos((double)j) + 0.3 * sin(3.0 * w[j]));
        }
        ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
    }
}

static mnas_optim *optim_of(mnas_params *p, mnas_optim_kind kind)
{
    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.kind = kind;
    oo.lr = 0.05;
    oo.momentum = 0.9;
    mnas_optim *o = mnas_optim_create(p, &oo);
    ck_assert_ptr_nonnull(o);
    return o;
}

static int same_values(mnas_params *a, mnas_params *b)
{
    if (mnas_params_count(a) != mnas_params_count(b)) return 0;
    for (size_t i = 0; i < mnas_params_count(a); i++) {
        mnas_tensor *x = mnas_params_get(a, i), *y = mnas_params_get(b, i);
        if (mnas_tensor_size(x) != mnas_tensor_size(y) ||
            memcmp(mnas_tensor_data(x), mnas_tensor_data(y), (size_t)mnas_tensor_size(x) * sizeof(mnas_real)))
            return 0;
    }
    return 1;
}

/* Loop 0 SGD with momentum, 1 Adam: N steps, save parameters and
 * optimiser, M more; against a fresh set and optimiser loading both and
 * training M: bit-identical. */
START_TEST(optim_exact_resume)
{
    mnas_optim_kind kind = _i ? MNAS_OPTIM_ADAM : MNAS_OPTIM_SGD;
    mnas_ctx *ctx = new_ctx();
    char pp[512], op[512];
    tmp_path(pp, sizeof pp, "optim_resume.params");
    tmp_path(op, sizeof op, "optim_resume.optim");
    mnas_params *a = optim_set(ctx, "b", 5, 1);
    mnas_optim *oa = optim_of(a, kind);
    optim_train(a, oa, 3);
    ck_assert_msg(mnas_params_save(a, pp) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_msg(mnas_optim_save(oa, op) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    optim_train(a, oa, 4);
    mnas_params *b = optim_set(ctx, "b", 5, 99); /* other values */
    mnas_optim *ob = optim_of(b, kind);
    optim_train(b, ob, 2); /* other moments and step count, all overwritten */
    ck_assert_int_eq(mnas_params_load(b, pp), MNAS_OK);
    ck_assert_msg(mnas_optim_load(ob, op) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
    ck_assert_int_eq(mnas_optim_steps(ob), 3);
    optim_train(b, ob, 4);
    ck_assert_int_eq(mnas_optim_steps(ob), 7);
    ck_assert_msg(same_values(a, b), "the resumed optimiser's parameters differ from the straight run");
    /* Without the optimiser's state (fresh moments, step 0) the run differs:
     * the state is what carries it. */
    mnas_params *c = optim_set(ctx, "b", 5, 1);
    mnas_optim *oc = optim_of(c, kind);
    ck_assert_int_eq(mnas_params_load(c, pp), MNAS_OK);
    optim_train(c, oc, 4);
    ck_assert(!same_values(a, c));
    mnas_optim_free(oa);
    mnas_optim_free(ob);
    mnas_optim_free(oc);
    mnas_params_free(a);
    mnas_params_free(b);
    mnas_params_free(c);
    mnas_ctx_free(ctx);
}
END_TEST

/* Load of path into o must fail with want (0: any failure), the message
 * holding needle, and o's state must be unchanged (its saved bytes equal
 * ref's). */
static void optim_expect_fail(mnas_ctx *ctx, mnas_optim *o, const char *path, mnas_status want, const char *needle,
                              const uint8_t *ref, size_t ref_len)
{
    mnas_status st = mnas_optim_load(o, path);
    const char *msg = mnas_ctx_last_error(ctx);
    ck_assert_msg(want ? st == want : st != MNAS_OK, "status %d, expected %d (%s)", st, want, msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "message \"%s\" lacks \"%s\"", msg, needle);
    char again[512];
    tmp_path(again, sizeof again, "optim_after_failure");
    ck_assert_int_eq(mnas_optim_save(o, again), MNAS_OK);
    size_t n;
    uint8_t *now = read_all(again, &n);
    ck_assert_msg(n == ref_len && memcmp(now, ref, n) == 0, "the optimiser changed after a refused load");
    free(now);
}

START_TEST(optim_refusals)
{
    mnas_ctx *ctx = new_ctx();
    char path[512], bad[512], mine[512];
    tmp_path(path, sizeof path, "optim.ckpt");
    tmp_path(bad, sizeof bad, "optim_bad.ckpt");
    tmp_path(mine, sizeof mine, "optim_mine.ckpt");
    mnas_params *a = optim_set(ctx, "b", 5, 1);
    mnas_optim *sgd = optim_of(a, MNAS_OPTIM_SGD);
    optim_train(a, sgd, 2);
    ck_assert_int_eq(mnas_optim_save(sgd, path), MNAS_OK);
    /* The victim: an Adam optimiser over a like set, with state of its own. */
    mnas_params *b = optim_set(ctx, "b", 5, 2);
    mnas_optim *adam = optim_of(b, MNAS_OPTIM_ADAM);
    optim_train(b, adam, 3);
    ck_assert_int_eq(mnas_optim_save(adam, mine), MNAS_OK);
    size_t ref_len;
    uint8_t *ref = read_all(mine, &ref_len);
    optim_expect_fail(ctx, adam, path, MNAS_E_MISMATCH, "optimiser kind", ref, ref_len);
    /* Adam's own file, loaded into Adam optimisers over other sets. */
    mnas_params *c = optim_set(ctx, "b", 6, 3), *d = optim_set(ctx, "bias", 5, 4);
    mnas_params *e = mnas_params_create(ctx);
    int64_t s1[2] = { 3, 4 };
    ck_assert_int_ge(mnas_params_add(e, "w", 2, s1, MNAS_INIT_NORMAL, 1, 0), 0);
    mnas_optim *oc = optim_of(c, MNAS_OPTIM_ADAM), *od = optim_of(d, MNAS_OPTIM_ADAM), *oe = optim_of(e, MNAS_OPTIM_ADAM);
    char ref2[512];
    tmp_path(ref2, sizeof ref2, "optim_ref2.ckpt");
    struct { mnas_optim *o; mnas_status st; const char *needle; } cases[3] = {
        { oc, MNAS_E_MISMATCH, "optim.m:b" },  /* shape 6 against 5 */
        { od, MNAS_E_FORMAT, "optim.m:bias" }, /* no such record */
        { oe, MNAS_E_MISMATCH, "2 parameters" },
    };
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(mnas_optim_save(cases[k].o, ref2), MNAS_OK);
        size_t n2;
        uint8_t *r2 = read_all(ref2, &n2);
        optim_expect_fail(ctx, cases[k].o, mine, cases[k].st, cases[k].needle, r2, n2);
        free(r2);
    }
    /* Truncated at a spread of lengths, damaged bytes, wrong magic. */
    for (size_t n = 0; n < ref_len; n += 1 + n / 4) {
        write_all(bad, ref, n);
        optim_expect_fail(ctx, adam, bad, MNAS_E_FORMAT, "truncated", ref, ref_len);
    }
    uint8_t *buf = malloc(ref_len);
    for (size_t i = 8; i < ref_len; i += 5) {
        memcpy(buf, ref, ref_len);
        buf[i] ^= 0x10;
        write_all(bad, buf, ref_len);
        optim_expect_fail(ctx, adam, bad, 0, "", ref, ref_len);
    }
    memcpy(buf, ref, ref_len);
    buf[0] = 'X';
    reseal(buf, ref_len);
    write_all(bad, buf, ref_len);
    optim_expect_fail(ctx, adam, bad, MNAS_E_FORMAT, "magic", ref, ref_len);
    /* Well-formed files with values that cannot be: a negative second
     * moment, a negative step count, another parameter count. */
    memcpy(buf, ref, ref_len);
    set_f32_vector_head(buf, ref_len, "optim.v:b", -1.0f);
    write_all(bad, buf, ref_len);
    optim_expect_fail(ctx, adam, bad, MNAS_E_FORMAT, "negative second moment", ref, ref_len);
    memcpy(buf, ref, ref_len);
    set_i64_record(buf, ref_len, "optim.steps", -1);
    write_all(bad, buf, ref_len);
    optim_expect_fail(ctx, adam, bad, MNAS_E_FORMAT, "optimiser steps -1", ref, ref_len);
    memcpy(buf, ref, ref_len);
    set_i64_record(buf, ref_len, "params.count", 3);
    write_all(bad, buf, ref_len);
    optim_expect_fail(ctx, adam, bad, MNAS_E_MISMATCH, "3 parameters", ref, ref_len);
    /* A non-finite moment. */
    memcpy(buf, ref, ref_len);
    set_f32_vector_head(buf, ref_len, "optim.m:b", NAN);
    write_all(bad, buf, ref_len);
    optim_expect_fail(ctx, adam, bad, MNAS_E_NUMERIC, "non-finite", ref, ref_len);
    free(buf);
    /* Other kinds of checkpoint, either way round. */
    char pp[512];
    tmp_path(pp, sizeof pp, "optim_params.ckpt");
    ck_assert_int_eq(mnas_params_save(b, pp), MNAS_OK);
    optim_expect_fail(ctx, adam, pp, MNAS_E_FORMAT, "not an optimiser checkpoint", ref, ref_len);
    ck_assert_int_eq(mnas_params_load(b, mine), MNAS_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "not a parameter-set checkpoint"));
    /* NULLs and bad paths. */
    ck_assert_int_eq(mnas_optim_save(NULL, path), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_save(adam, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_save(adam, ""), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_load(NULL, path), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_load(adam, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_optim_save(adam, "/nonexistent/dir/o.ckpt"), MNAS_E_IO);
    optim_expect_fail(ctx, adam, "/nonexistent/dir/o.ckpt", MNAS_E_IO, "/nonexistent/dir/o.ckpt", ref, ref_len);
    /* After all that, the good file still loads. */
    ck_assert_int_eq(mnas_optim_load(sgd, path), MNAS_OK);
    ck_assert_int_eq(mnas_optim_steps(sgd), 2);
    free(ref);
    mnas_optim_free(sgd);
    mnas_optim_free(adam);
    mnas_optim_free(oc);
    mnas_optim_free(od);
    mnas_optim_free(oe);
    mnas_params_free(a);
    mnas_params_free(b);
    mnas_params_free(c);
    mnas_params_free(d);
    mnas_params_free(e);
    mnas_ctx_free(ctx);
}
END_TEST

/* The modulator form (appended option, issue 17) is saved, read back by
 * mnas_learner_checkpoint_options, and a learner of another form refuses
 * the file. Loop 1 is FiLM (its FC has the shifts' outputs too), trained a
 * few meta-updates first so the round trip carries learned values. */
START_TEST(modulator_form_is_saved)
{
    mnas_ctx *ctx = new_ctx();
    mnas_learner_options o = tiny(MNAS_METHOD_MNAS, 1);
    const mnas_modulator_form form = _i ? MNAS_MODULATOR_FILM : MNAS_MODULATOR_ONE_PLUS_TANH;
    o.modulator_form = form;
    mnas_learner *l = mnas_learner_create(ctx, &o);
    ck_assert_ptr_nonnull(l);
    if (form == MNAS_MODULATOR_FILM) {
        src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 5, -1 };
        train_to(l, &sd, 3, -1);
    }
    char path[512];
    tmp_path(path, sizeof path, "form.ckpt");
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(ctx, path, &r), MNAS_OK);
    ck_assert_int_eq(r.modulator_form, form);
    mnas_learner *same = mnas_learner_create(ctx, &r);
    ck_assert_int_eq(mnas_learner_load(same, path), MNAS_OK);
    ck_assert(same_params(same, l));
    ck_assert_int_eq(mnas_learner_iteration(same), mnas_learner_iteration(l));
    o.modulator_form = MNAS_MODULATOR_SIGMOID;
    mnas_learner *other = mnas_learner_create(ctx, &o);
    ck_assert_int_eq(mnas_learner_load(other, path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "modulator_form"));
    /* A caller built before the field existed: its shorter struct is filled
     * up to its own size and no further. */
    mnas_learner_options shorter = MNAS_LEARNER_OPTIONS_INIT;
    shorter.modulator_form = (mnas_modulator_form)77;
    shorter.struct_size = offsetof(mnas_learner_options, modulator_form);
    ck_assert_int_eq(mnas_learner_checkpoint_options(ctx, path, &shorter), MNAS_OK);
    ck_assert_int_eq((int)shorter.modulator_form, 77);
    ck_assert_int_eq(shorter.method, MNAS_METHOD_MNAS);
    mnas_learner_free(other);
    mnas_learner_free(same);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

/* The alpha temperature (mnas_learner_set_alpha_temperature) is state: a
 * checkpoint restores it, and the resumed run continues bit for bit like
 * one that was never interrupted; a learner loaded from a checkpoint at
 * T = 1 goes back to 1. */
START_TEST(alpha_temperature_is_saved)
{
    mnas_ctx *ctx = new_ctx();
    mnas_learner_options o = tiny(_i ? MNAS_METHOD_MNAS_SHARED : MNAS_METHOD_MNAS, 1);
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 5, -1 };
    mnas_learner *l = mnas_learner_create(ctx, &o), *ref = mnas_learner_create(ctx, &o);
    mnas_learner *res = mnas_learner_create(ctx, &o), *plain = mnas_learner_create(ctx, &o);
    ck_assert(l && ref && res && plain);
    ck_assert_int_eq(mnas_learner_set_alpha_temperature(l, 0.5), MNAS_OK);
    ck_assert_int_eq(mnas_learner_set_alpha_temperature(ref, 0.5), MNAS_OK);
    train_to(l, &sd, 2, -1);
    char path[512], path1[512];
    tmp_path(path, sizeof path, "temp.ckpt");
    tmp_path(path1, sizeof path1, "temp1.ckpt");
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    ck_assert_double_eq(mnas_learner_alpha_temperature(res), 1);
    ck_assert_int_eq(mnas_learner_load(res, path), MNAS_OK);
    ck_assert_double_eq(mnas_learner_alpha_temperature(res), 0.5);
    train_to(res, &sd, 4, -1);
    train_to(ref, &sd, 4, -1);
    ck_assert_msg(same_params(res, ref), "resumed at T 0.5 differs from the uninterrupted run");
    /* the same two meta-updates at T = 1 train differently */
    train_to(plain, &sd, 4, -1);
    ck_assert_msg(!same_params(plain, ref), "T 0.5 trains like T 1");
    ck_assert_int_eq(mnas_learner_save(plain, path1), MNAS_OK);
    ck_assert_int_eq(mnas_learner_load(res, path1), MNAS_OK);
    ck_assert_double_eq(mnas_learner_alpha_temperature(res), 1);
    mnas_learner_free(plain);
    mnas_learner_free(res);
    mnas_learner_free(ref);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- atomic saves ------------------------------------------------------------- */

START_TEST(crash_before_rename_keeps_old_checkpoint)
{
    mnas_ctx *ctx = new_ctx();
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    mnas_learner_options o = tiny(MNAS_METHOD_MAML, 1);
    mnas_learner *l = mnas_learner_create(ctx, &o), *ref = mnas_learner_create(ctx, &o);
    train_to(l, &sd, 1, -1);
    char path[512], tmp[600];
    tmp_path(path, sizeof path, "atomic.ckpt");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_load(ref, path), MNAS_OK);
    size_t len_old;
    uint8_t *old = read_all(path, &len_old);
    train_to(l, &sd, 2, -1);
    setenv("MNAS_CHECKPOINT_TEST_CRASH", "before-rename", 1);
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_E_IO);
    unsetenv("MNAS_CHECKPOINT_TEST_CRASH");
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "simulated crash"));
    /* The complete new file sits at the temporary name; the old one is intact. */
    struct stat sb;
    ck_assert_int_eq(stat(tmp, &sb), 0);
    size_t len_now;
    uint8_t *now = read_all(path, &len_now);
    ck_assert_uint_eq(len_now, len_old);
    ck_assert(memcmp(now, old, len_old) == 0);
    mnas_learner *back = mnas_learner_create(ctx, &o);
    ck_assert_int_eq(mnas_learner_load(back, path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_iteration(back), 1);
    ck_assert(same_params(back, ref));
    /* The next save replaces the stale temporary file and the checkpoint. */
    ck_assert_int_eq(mnas_learner_save(l, path), MNAS_OK);
    ck_assert_int_ne(stat(tmp, &sb), 0);
    ck_assert_int_eq(mnas_learner_load(back, path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_iteration(back), 2);
    ck_assert(same_params(back, l));
    free(old);
    free(now);
    mnas_learner_free(back);
    mnas_learner_free(ref);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- corruption ------------------------------------------------------------------ */

typedef struct {
    mnas_ctx *ctx;
    mnas_learner *l;
    mnas_learner_options o;
    uint8_t *good;
    size_t len;
    char path[512], bad[512];
    mnas_real *snap;
    size_t nsnap;
} corrupt_fx;

static void cf_init(corrupt_fx *f, mnas_method m)
{
    memset(f, 0, sizeof *f);
    f->ctx = new_ctx();
    f->o = tiny(m, 1);
    if (m == MNAS_METHOD_MAML) {
        f->o.hidden = 3; /* small file: every byte is flipped once */
        f->o.layers = 2;
    }
    src_data sd = { f->ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    mnas_learner *src_l = mnas_learner_create(f->ctx, &f->o);
    train_to(src_l, &sd, 2, m == MNAS_METHOD_MAML ? -1 : 1);
    tmp_path(f->path, sizeof f->path, "good.ckpt");
    tmp_path(f->bad, sizeof f->bad, "bad.ckpt");
    ck_assert_int_eq(mnas_learner_save(src_l, f->path), MNAS_OK);
    mnas_learner_free(src_l);
    f->good = read_all(f->path, &f->len);
    /* The learner being loaded into has its own, different state (one
     * iteration, not discrete). */
    f->l = mnas_learner_create(f->ctx, &f->o);
    train_to(f->l, &sd, 1, -1);
    f->snap = malloc(CAP * sizeof *f->snap);
    f->nsnap = flatten(f->l, f->snap, CAP);
}

static void cf_free(corrupt_fx *f)
{
    free(f->snap);
    free(f->good);
    mnas_learner_free(f->l);
    mnas_ctx_free(f->ctx);
}

/* Loading buf must fail with status want (0: any failure) and a message
 * containing needle (if any), leaving the learner as it was. */
static void cf_expect_fail(corrupt_fx *f, const uint8_t *buf, size_t len, mnas_status want, const char *needle,
                           const char *what)
{
    write_all(f->bad, buf, len);
    mnas_ctx_clear_error(f->ctx);
    uint64_t rng_before[MNAS_RNG_STATE_WORDS], rng_after[MNAS_RNG_STATE_WORDS];
    mnas_rng_get_state(mnas_ctx_rng(f->ctx), rng_before);
    mnas_status st = mnas_learner_load(f->l, f->bad);
    ck_assert_msg(st != MNAS_OK, "%s: a damaged file loaded", what);
    if (want) ck_assert_msg(st == want, "%s: status %d, expected %d (%s)", what, st, want, mnas_ctx_last_error(f->ctx));
    const char *msg = mnas_ctx_last_error(f->ctx);
    ck_assert_msg(msg[0] != '\0', "%s: no message", what);
    if (needle) ck_assert_msg(strstr(msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, msg, needle);
    ck_assert_int_eq(mnas_learner_iteration(f->l), 1);
    ck_assert_int_eq(mnas_learner_is_discrete(f->l), 0);
    static mnas_real now[CAP];
    size_t n = flatten(f->l, now, CAP);
    ck_assert_msg(n == f->nsnap && memcmp(now, f->snap, n * sizeof *now) == 0, "%s: the learner changed", what);
    mnas_rng_get_state(mnas_ctx_rng(f->ctx), rng_after);
    ck_assert(memcmp(rng_before, rng_after, sizeof rng_before) == 0);
}

START_TEST(truncation_at_every_length)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MAML);
    char what[64];
    for (size_t n = 0; n < f.len; n++) {
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", n, f.len);
        cf_expect_fail(&f, f.good, n, MNAS_E_FORMAT, "truncated", what);
    }
    /* And the good file still loads into the same learner. */
    ck_assert_int_eq(mnas_learner_load(f.l, f.path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_iteration(f.l), 2);
    cf_free(&f);
}
END_TEST

START_TEST(every_flipped_byte_is_detected)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MAML);
    uint8_t *buf = malloc(f.len);
    char what[64];
    for (size_t i = 0; i < f.len; i++) {
        memcpy(buf, f.good, f.len);
        buf[i] ^= (uint8_t)(1u << (i % 8));
        snprintf(what, sizeof what, "bit %zu of byte %zu flipped", i % 8, i);
        cf_expect_fail(&f, buf, f.len, 0, NULL, what);
    }
    /* Whole-byte damage at a spread of offsets too. */
    for (size_t i = 0; i < f.len; i += 7) {
        memcpy(buf, f.good, f.len);
        buf[i] = (uint8_t)~buf[i];
        snprintf(what, sizeof what, "byte %zu inverted", i);
        cf_expect_fail(&f, buf, f.len, 0, NULL, what);
    }
    free(buf);
    cf_free(&f);
}
END_TEST

START_TEST(foreign_and_mismatched_files)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MNAS_SHARED);
    uint8_t *buf = malloc(f.len + 16);
    /* Wrong magic. */
    memcpy(buf, f.good, f.len);
    memcpy(buf, "PK\x03\x04", 4);
    cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "bad magic", "wrong magic");
    /* Another format version, CRC re-sealed so the version check speaks. */
    memcpy(buf, f.good, f.len);
    buf[8] = 2;
    reseal(buf, f.len);
    cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "format version 2", "version 2");
    memcpy(buf, f.good, f.len);
    buf[8] = 0;
    cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "format version 0", "version 0");
    /* Big-endian writer: the marker's bytes reversed. */
    memcpy(buf, f.good, f.len);
    for (int i = 0; i < 4; i++) buf[12 + i] = f.good[15 - i];
    cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "byte order", "byte order");
    /* Trailing garbage. */
    memcpy(buf, f.good, f.len);
    memset(buf + f.len, 0, 16);
    cf_expect_fail(&f, buf, f.len + 16, MNAS_E_FORMAT, "trailing", "trailing bytes");
    /* Empty file and a text file. */
    cf_expect_fail(&f, (const uint8_t *)"", 0, MNAS_E_FORMAT, "truncated", "empty");
    const char *text = "this is not a checkpoint, it is a long enough text file to pass the size check";
    cf_expect_fail(&f, (const uint8_t *)text, strlen(text), MNAS_E_FORMAT, "bad magic", "text");
    free(buf);
    /* A learner with other options: the message names the option (the
     * Adam rates are state, not options: learning_rates_are_state). */
    mnas_learner_options o2 = f.o;
    o2.inner_lr = 0.02;
    mnas_learner *other = mnas_learner_create(f.ctx, &o2);
    ck_assert_int_eq(mnas_learner_load(other, f.path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "inner_lr"));
    mnas_learner_free(other);
    o2 = f.o;
    o2.method = MNAS_METHOD_MNAS;
    other = mnas_learner_create(f.ctx, &o2);
    ck_assert_int_eq(mnas_learner_load(other, f.path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "method"));
    mnas_learner_free(other);
    o2 = f.o;
    o2.seed = 9;
    other = mnas_learner_create(f.ctx, &o2);
    ck_assert_int_eq(mnas_learner_load(other, f.path), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "seed"));
    mnas_learner_free(other);
    /* threads may differ. */
    o2 = f.o;
    o2.threads = 2;
    other = mnas_learner_create(f.ctx, &o2);
    ck_assert_int_eq(mnas_learner_load(other, f.path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_is_discrete(other), 1);
    mnas_learner_free(other);
    /* The good file loads: discrete phase with its fixed alpha. */
    ck_assert_int_eq(mnas_learner_load(f.l, f.path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_is_discrete(f.l), 1);
    cf_free(&f);
}
END_TEST

/* mnas_learner_set_lr: bad rates are refused and change nothing; rate 0
 * freezes the parameters; the rates in force are checkpoint state, so a
 * learner created with other rates loads the file, takes its rates and
 * continues bit for bit, and mnas_learner_checkpoint_options reports them. */
START_TEST(learning_rates_are_state)
{
    static const mnas_method methods[] = { MNAS_METHOD_MNAS, MNAS_METHOD_MAML };
    static mnas_real before[CAP], after[CAP];
    for (int mi = 0; mi < 2; mi++) {
        mnas_ctx *ctx = new_ctx();
        src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 8, -1 };
        mnas_learner_options o = tiny(methods[mi], 1);
        mnas_learner *a = mnas_learner_create(ctx, &o), *b = mnas_learner_create(ctx, &o);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq(mnas_learner_set_lr(NULL, 0.1, 0.1), MNAS_E_INVALID);
        static const double bad[][2] = { { NAN, 1e-4 }, { 0.01, -1 }, { INFINITY, 0 }, { 2e6, 0 }, { 0.01, NAN } };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            ck_assert_int_eq(mnas_learner_set_lr(a, bad[i][0], bad[i][1]), MNAS_E_INVALID);
            ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_learner_set_lr"));
        }
        train_to(a, &sd, 2, -1);
        train_to(b, &sd, 2, -1);
        ck_assert_msg(same_params(a, b), "a refused rate changed the learner");
        /* Rate 0: the step counts but moves nothing. */
        ck_assert_int_eq(mnas_learner_set_lr(a, 0, 0), MNAS_OK);
        size_t n = flatten(a, before, CAP);
        train_to(a, &sd, 3, -1);
        ck_assert_uint_eq(flatten(a, after, CAP), n);
        ck_assert_int_eq(memcmp(before, after, n * sizeof *before), 0);
        ck_assert_int_eq(mnas_learner_iteration(a), 3);
        /* Other rates, saved; a learner made with the original rates loads
         * the file and follows a exactly. */
        ck_assert_int_eq(mnas_learner_set_lr(a, 0.003, 2e-5), MNAS_OK);
        char path[512];
        tmp_path(path, sizeof path, "rates.ckpt");
        ck_assert_msg(mnas_learner_save(a, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
        ck_assert_int_eq(mnas_learner_checkpoint_options(ctx, path, &r), MNAS_OK);
        ck_assert(r.outer_lr == 0.003 && r.arch_lr == 2e-5);
        mnas_learner *c = mnas_learner_create(ctx, &o), *d = mnas_learner_create(ctx, &o);
        ck_assert_msg(mnas_learner_load(c, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        ck_assert_msg(mnas_learner_load(d, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        ck_assert_int_eq(mnas_learner_set_lr(d, o.outer_lr, o.arch_lr), MNAS_OK);
        train_to(a, &sd, 5, -1);
        train_to(c, &sd, 5, -1);
        train_to(d, &sd, 5, -1);
        ck_assert_msg(same_params(a, c), "the loaded learner did not continue with the checkpoint's rates");
        ck_assert_msg(!same_params(a, d), "the rates made no difference");
        mnas_learner_free(a);
        mnas_learner_free(b);
        mnas_learner_free(c);
        mnas_learner_free(d);
        remove(path);
        mnas_ctx_free(ctx);
    }
}
END_TEST

/* Rewrite the scalar f64 record `name` of a checkpoint image to v, with its
 * record CRC and the file's CRC made valid again (docs/checkpoints.md). */
static void set_f64_record(uint8_t *buf, size_t len, const char *name, double v)
{
    size_t n = strlen(name);
    for (size_t i = 2; i + n + 22 <= len; i++) {
        if (memcmp(buf + i, name, n) != 0 || buf[i - 2] != (uint8_t)n || buf[i - 1] != 0) continue;
        uint8_t *rec = buf + i - 2, *p = buf + i + n;
        ck_assert_int_eq(p[0], 2); /* f64 */
        ck_assert_int_eq(p[1], 0); /* scalar */
        memcpy(p + 10, &v, 8);     /* after type, ndim and the payload size */
        uint32_t c = crc32_ref(rec, (size_t)(p + 18 - rec));
        for (int k = 0; k < 4; k++) p[18 + k] = (uint8_t)(c >> (8 * k));
        reseal(buf, len);
        return;
    }
    ck_abort_msg("record %s not found", name);
}

/* As set_f64_record, for an i64 scalar record. */
static void set_i64_record(uint8_t *buf, size_t len, const char *name, int64_t v)
{
    size_t n = strlen(name);
    for (size_t i = 2; i + n + 22 <= len; i++) {
        if (memcmp(buf + i, name, n) != 0 || buf[i - 2] != (uint8_t)n || buf[i - 1] != 0) continue;
        uint8_t *rec = buf + i - 2, *p = buf + i + n;
        ck_assert_int_eq(p[0], 3); /* i64 */
        ck_assert_int_eq(p[1], 0); /* scalar */
        memcpy(p + 10, &v, 8);
        uint32_t c = crc32_ref(rec, (size_t)(p + 18 - rec));
        for (int k = 0; k < 4; k++) p[18 + k] = (uint8_t)(c >> (8 * k));
        reseal(buf, len);
        return;
    }
    ck_abort_msg("record %s not found", name);
}

/* Give a scalar record another name of the same length (an unknown record to
 * the reader, as a record a later version adds is to an older one), with
 * the record's and the file's CRC made good. */
static void rename_record(uint8_t *buf, size_t len, const char *name, const char *to)
{
    size_t n = strlen(name);
    ck_assert_uint_eq(strlen(to), n);
    for (size_t i = 2; i + n + 22 <= len; i++) {
        if (memcmp(buf + i, name, n) != 0 || buf[i - 2] != (uint8_t)n || buf[i - 1] != 0) continue;
        uint8_t *rec = buf + i - 2, *p = buf + i + n;
        ck_assert_int_eq(p[1], 0); /* scalar: 8 payload bytes, then the CRC */
        memcpy(buf + i, to, n);
        uint32_t c = crc32_ref(rec, (size_t)(p + 18 - rec));
        for (int k = 0; k < 4; k++) p[18 + k] = (uint8_t)(c >> (8 * k));
        reseal(buf, len);
        return;
    }
    ck_abort_msg("record %s not found", name);
}

/* A file from before config.modulator_form, config.sample_ops and
 * config.stem_stride existed (simulated by renaming those records out of the
 * reader's sight) loads with their defaults, the paper's sigmoid, the full
 * supernet and stem stride 1, into a learner with the defaults, and is
 * refused by one with other values. */
START_TEST(older_files_without_the_appended_options_load)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MNAS);
    uint8_t *buf = malloc(f.len);
    /* absurd values of those records (resealed) are refused, naming them */
    static const char *const names[] = { "config.modulator_form", "config.sample_ops", "config.stem_stride",
                                         "config.inner_lr_mode" };
    const int64_t bad[] = { -1, 4, 65, INT64_MAX }; /* 4: one past the last form, MNAS_MODULATOR_FILM */
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            if ((k == 1 || k == 2) && bad[i] == 4) continue; /* a valid sample_ops and stem_stride */
            memcpy(buf, f.good, f.len);
            set_i64_record(buf, f.len, names[k], bad[i]);
            cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, names[k] + 7, names[k]);
        }
    /* the bound on learned rates and the encoder's input scale: negative,
     * NaN, infinite or absurd */
    const double bad_max[] = { -1e-3, NAN, INFINITY, 1e7 };
    for (size_t i = 0; i < sizeof bad_max / sizeof bad_max[0]; i++) {
        memcpy(buf, f.good, f.len);
        set_f64_record(buf, f.len, "config.inner_lr_max", bad_max[i]);
        cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "inner_lr_max", "config.inner_lr_max");
        memcpy(buf, f.good, f.len);
        set_f64_record(buf, f.len, "config.encoder_input_scale", bad_max[i]);
        cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "encoder_input_scale", "config.encoder_input_scale");
    }
    memcpy(buf, f.good, f.len);
    rename_record(buf, f.len, "config.inner_lr_max", "config.xnner_lr_max");
    rename_record(buf, f.len, "config.encoder_input_scale", "config.xncoder_input_scale");
    rename_record(buf, f.len, "config.sample_ops", "config.xample_ops");
    rename_record(buf, f.len, "config.stem_stride", "config.xtem_stride");
    rename_record(buf, f.len, "config.inner_lr_mode", "config.xnner_lr_mode");
    write_all(f.bad, buf, f.len);
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    r.modulator_form = MNAS_MODULATOR_TWO_SIGMOID;
    r.sample_ops = 3;
    r.stem_stride = 4;
    r.inner_lr_mode = MNAS_INNER_LR_PER_ELEMENT;
    r.inner_lr_max = 7;
    r.encoder_input_scale = 0.5;
    ck_assert_msg(mnas_learner_checkpoint_options(f.ctx, f.bad, &r) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert(r.inner_lr_max == 0);        /* an older file: unbounded */
    ck_assert(r.encoder_input_scale == 0); /* and unscaled */
    ck_assert_int_eq(r.modulator_form, MNAS_MODULATOR_SIGMOID);
    ck_assert_int_eq(r.sample_ops, 0);
    ck_assert_int_eq(r.stem_stride, 1);
    ck_assert_int_eq(r.inner_lr_mode, MNAS_INNER_LR_FIXED); /* an older file: the fixed rate */
    ck_assert_msg(mnas_learner_load(f.l, f.bad) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_learner_options o = r;
    o.sample_ops = 1;
    mnas_learner *k1 = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(k1);
    ck_assert_int_eq(mnas_learner_load(k1, f.bad), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "sample_ops"));
    mnas_learner_free(k1);
    o = r;
    o.inner_lr_mode = MNAS_INNER_LR_PER_TENSOR;
    k1 = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(k1);
    ck_assert_int_eq(mnas_learner_load(k1, f.bad), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "inner_lr_mode"));
    mnas_learner_free(k1);
    o = r;
    o.encoder_input_scale = 0.25; /* same shapes, another encoder: refused by name */
    k1 = mnas_learner_create(f.ctx, &o);
    ck_assert_ptr_nonnull(k1);
    ck_assert_int_eq(mnas_learner_load(k1, f.bad), MNAS_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "encoder_input_scale"));
    mnas_learner_free(k1);
    free(buf);
    cf_free(&f);
}
END_TEST

/* state.alpha_temperature: a resealed file with a zero, negative, tiny,
 * huge, NaN or infinite temperature is refused naming it, the learner and
 * its temperature untouched; MAML's file must say 1; a file without the
 * record (older than it) loads as T = 1; a valid other value loads. */
START_TEST(alpha_temperature_record_is_validated)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MNAS);
    uint8_t *buf = malloc(f.len);
    ck_assert_int_eq(mnas_learner_set_alpha_temperature(f.l, 0.5), MNAS_OK);
    const double bad[] = { 0, -1, 1e-4, 2e3, NAN, INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(buf, f.good, f.len);
        set_f64_record(buf, f.len, "state.alpha_temperature", bad[i]);
        cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "state.alpha_temperature", "state.alpha_temperature");
        ck_assert_double_eq(mnas_learner_alpha_temperature(f.l), 0.5);
    }
    memcpy(buf, f.good, f.len);
    set_f64_record(buf, f.len, "state.alpha_temperature", 0.7);
    write_all(f.bad, buf, f.len);
    ck_assert_msg(mnas_learner_load(f.l, f.bad) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_double_eq(mnas_learner_alpha_temperature(f.l), 0.7);
    memcpy(buf, f.good, f.len);
    rename_record(buf, f.len, "state.alpha_temperature", "state.xlpha_temperature");
    write_all(f.bad, buf, f.len);
    ck_assert_msg(mnas_learner_load(f.l, f.bad) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    ck_assert_double_eq(mnas_learner_alpha_temperature(f.l), 1);
    free(buf);
    cf_free(&f);

    cf_init(&f, MNAS_METHOD_MAML);
    buf = malloc(f.len);
    memcpy(buf, f.good, f.len);
    set_f64_record(buf, f.len, "state.alpha_temperature", 0.5);
    cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, "1 for MAML", "MAML with a temperature");
    free(buf);
    cf_free(&f);
}
END_TEST

/* The rates a file holds are validated like the rest before anything is
 * restored: a resealed file with a negative, NaN, infinite or huge rate is
 * refused, naming the rate; a valid other rate loads. */
START_TEST(invalid_rates_in_a_file_are_refused)
{
    corrupt_fx f;
    cf_init(&f, MNAS_METHOD_MNAS);
    uint8_t *buf = malloc(f.len);
    static const char *const names[] = { "config.outer_lr", "config.arch_lr" };
    const double bad[] = { -1e-3, NAN, INFINITY, 1e7 };
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            memcpy(buf, f.good, f.len);
            set_f64_record(buf, f.len, names[k], bad[i]);
            cf_expect_fail(&f, buf, f.len, MNAS_E_FORMAT, names[k] + 7, names[k]);
        }
    memcpy(buf, f.good, f.len);
    set_f64_record(buf, f.len, "config.outer_lr", 0.25);
    write_all(f.bad, buf, f.len);
    ck_assert_msg(mnas_learner_load(f.l, f.bad) == MNAS_OK, "%s", mnas_ctx_last_error(f.ctx));
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    ck_assert_int_eq(mnas_learner_checkpoint_options(f.ctx, f.bad, &r), MNAS_OK);
    ck_assert(r.outer_lr == 0.25);
    free(buf);
    cf_free(&f);
}
END_TEST

/* ---- divergence guard ------------------------------------------------------------- */

START_TEST(divergence_stops_and_keeps_last_good)
{
    mnas_ctx *ctx = new_ctx();
    mnas_learner_options o = tiny(MNAS_METHOD_MAML, 1 + _i);
    /* Tasks of iteration 5 on (index >= 5 * meta_batch) carry a NaN. */
    src_data sd = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, 5 * 4 };
    mnas_learner *l = mnas_learner_create(ctx, &o), *ref = mnas_learner_create(ctx, &o);
    char path[512];
    tmp_path(path, sizeof path, "guard.ckpt");
    mnas_status st = mnas_learner_train_checkpointed(l, src, &sd, 10, path, 2, NULL, NULL);
    ck_assert_int_eq(st, MNAS_E_NUMERIC);
    const char *msg = mnas_ctx_last_error(ctx);
    ck_assert_msg(strstr(msg, "iteration 5") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "iteration 4") != NULL, "%s", msg);
    /* The learner is at its last good state: five clean iterations. */
    ck_assert_int_eq(mnas_learner_iteration(l), 5);
    src_data clean = { ctx, MNAS_REGRESSION_OPTIONS_INIT, 4, -1 };
    train_to(ref, &clean, 5, -1);
    ck_assert(same_params(l, ref));
    /* The checkpoint on disk is the last one saved (iteration 4) and loads. */
    mnas_learner *back = mnas_learner_create(ctx, &o);
    ck_assert_int_eq(mnas_learner_load(back, path), MNAS_OK);
    ck_assert_int_eq(mnas_learner_iteration(back), 4);
    mnas_learner *ref4 = mnas_learner_create(ctx, &o);
    train_to(ref4, &clean, 4, -1);
    ck_assert(same_params(back, ref4));
    /* Training on from the checkpoint with clean tasks matches a straight run. */
    ck_assert_int_eq(mnas_learner_train_checkpointed(back, src, &clean, 2, path, 0, NULL, NULL), MNAS_OK);
    train_to(ref4, &clean, 6, -1);
    ck_assert(same_params(back, ref4));
    ck_assert_int_eq(mnas_learner_train_checkpointed(NULL, src, &clean, 1, path, 0, NULL, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_train_checkpointed(back, NULL, &clean, 1, path, 0, NULL, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_train_checkpointed(back, src, &clean, -1, path, 0, NULL, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_learner_train_checkpointed(back, src, &clean, 1, path, -2, NULL, NULL), MNAS_E_INVALID);
    mnas_learner_free(ref4);
    mnas_learner_free(back);
    mnas_learner_free(ref);
    mnas_learner_free(l);
    mnas_ctx_free(ctx);
}
END_TEST

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 6 && !strcmp(argv[1], "--resume-child"))
        return resume_child(argv[2], strtol(argv[3], NULL, 10), (int)strtol(argv[4], NULL, 10), argv[5]);
    char abs[4096];
    char cwd[2048];
    if (self_path[0] != '/' && getcwd(cwd, sizeof cwd)) {
        snprintf(abs, sizeof abs, "%s/%s", cwd, argv[0]);
        self_path = abs;
    }
    int slow = getenv("MNAS_TEST_UNDER_VALGRIND") != NULL;
    make_tmpdir(); /* here, so that forked tests share it and it is removed below */
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("format");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, crc_matches_reference);
    tcase_add_test(tc, params_round_trip_and_mismatch);
    tcase_add_loop_test(tc, optim_exact_resume, 0, 2);
    tcase_add_test(tc, optim_refusals);
    tcase_add_loop_test(tc, modulator_form_is_saved, 0, 2);
    tcase_add_loop_test(tc, alpha_temperature_is_saved, 0, 2);
    tcase_add_test(tc, crash_before_rename_keeps_old_checkpoint);
    tcase_add_test(tc, truncation_at_every_length);
    tcase_add_test(tc, every_flipped_byte_is_detected);
    tcase_add_test(tc, foreign_and_mismatched_files);
    tcase_add_test(tc, learning_rates_are_state);
    tcase_add_test(tc, invalid_rates_in_a_file_are_refused);
    tcase_add_test(tc, older_files_without_the_appended_options_load);
    tcase_add_test(tc, alpha_temperature_record_is_validated);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("resume");
    tcase_set_timeout(tr, 600);
    tcase_add_loop_test(tr, exact_resume_in_process, 0, slow ? 4 : 8);
    tcase_add_loop_test(tr, exact_resume_new_process, 0, slow ? 1 : 4);
    tcase_add_loop_test(tr, divergence_stops_and_keeps_last_good, 0, 2);
    tcase_add_loop_test(tr, learned_rates_saved_and_resumed, 0, slow ? 2 : 4);
    suite_add_tcase(s, tr);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    return failed == 0 ? 0 : 1;
}
