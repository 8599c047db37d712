/* Hostile input with valid handles: huge and negative shapes whose sizes
 * overflow, out-of-range dimensions and options, oversized texts, and
 * checkpoints whose records claim impossible sizes. Each must fail with a
 * status and a message, never crash or allocate absurd amounts. (NULL and
 * out-of-range arguments to every public function: test_hostile_api,
 * generated from the headers.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mnas/mnas.h>

static mnas_ctx *new_ctx(void)
{
    mnas_ctx *ctx;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    return ctx;
}

static void expect_message(mnas_ctx *ctx)
{
    ck_assert_msg(mnas_ctx_last_error(ctx)[0] != '\0', "no message");
    mnas_ctx_clear_error(ctx);
}

static const int64_t bad_shapes[][4] = {
    { INT64_MAX, 2, 1, 1 },
    { (int64_t)1 << 40, (int64_t)1 << 40, 1, 1 },
    { (int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31, 7 },
    { -1, 4, 1, 1 },
    { 3, INT64_MIN, 1, 1 },
    { (int64_t)1 << 62, 4, 1, 1 },
};
#define N_BAD (sizeof bad_shapes / sizeof bad_shapes[0])

START_TEST(huge_and_negative_shapes)
{
    mnas_ctx *ctx = new_ctx();
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_params *p = mnas_params_create(ctx);
    static mnas_real data[16];
    for (size_t i = 0; i < N_BAD; i++) {
        int nd = i == 2 ? 4 : 2;
        ck_assert_ptr_null(mnas_tensor_zeros(ctx, nd, bad_shapes[i]));
        expect_message(ctx);
        ck_assert_ptr_null(mnas_tensor_from_data(ctx, nd, bad_shapes[i], data));
        expect_message(ctx);
        ck_assert_ptr_null(mnas_tensor_randn(ctx, nd, bad_shapes[i], 0, 1));
        expect_message(ctx);
        ck_assert_int_lt(mnas_params_add(p, "w", nd, bad_shapes[i], MNAS_INIT_ZEROS, 0, 0), 0);
        expect_message(ctx);
        ck_assert_ptr_null(mnas_tape_tensor(tp, nd, bad_shapes[i], NULL));
        ck_assert_int_ne(mnas_tape_status(tp), MNAS_OK);
        mnas_tape_reset(tp);
        mnas_tape_clear_error(tp);
    }
    int64_t ok[2] = { 2, 3 };
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, 5, ok));
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, -1, ok));
    ck_assert_ptr_null(mnas_tensor_zeros(ctx, INT32_MAX, ok));
    /* Reshape of a valid tensor to an overflowing or mismatched shape. */
    mnas_tensor *t = mnas_tensor_zeros(ctx, 2, ok);
    ck_assert_int_ne(mnas_tensor_reshape(t, 2, bad_shapes[0]), MNAS_OK);
    ck_assert_int_ne(mnas_tensor_reshape(t, 2, bad_shapes[3]), MNAS_OK);
    int64_t six[1] = { 7 };
    ck_assert_int_ne(mnas_tensor_reshape(t, 1, six), MNAS_OK);
    ck_assert_int_eq(mnas_tensor_size(t), 6);
    /* Ops on it with absurd arguments. */
    ck_assert_ptr_null(mnas_reshape(tp, t, 2, bad_shapes[1]));
    mnas_tape_reset(tp);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_slice(tp, t, 1, 2, INT64_MAX));
    mnas_tape_reset(tp);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_sum_axis(tp, t, 7, 0));
    mnas_tape_reset(tp);
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_broadcast_to(tp, t, 2, bad_shapes[0]));
    mnas_tape_reset(tp);
    mnas_tensor_free(t);
    /* Modules with absurd sizes. */
    int64_t dims[3] = { 1, INT64_MAX, 1 };
    ck_assert_ptr_null(mnas_mlp_create(ctx, 2, dims, 0));
    expect_message(ctx);
    dims[1] = -5;
    ck_assert_ptr_null(mnas_mlp_create(ctx, 2, dims, 0));
    ck_assert_ptr_null(mnas_mlp_create(ctx, 100000, dims, 0));
    ck_assert_ptr_null(mnas_task_encoder_create(ctx, 1, 1, INT64_MAX, 4, MNAS_RNN_GRU));
    ck_assert_ptr_null(mnas_controller_create(ctx, 4, 4, INT64_MAX, INT64_MAX));
    mnas_params_free(p);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(out_of_range_options)
{
    mnas_ctx *ctx = new_ctx();
    /* Every int option of the learner at INT_MIN, -1 and INT_MAX, every
     * double at NaN, -Inf and 1e300: creation fails with a message. */
    static const size_t int_fields[] = {
        offsetof(mnas_learner_options, meta_batch),  offsetof(mnas_learner_options, inner_steps),
        offsetof(mnas_learner_options, threads),     offsetof(mnas_learner_options, hidden),
        offsetof(mnas_learner_options, layers),      offsetof(mnas_learner_options, in_features),
        offsetof(mnas_learner_options, out_features), offsetof(mnas_learner_options, nodes),
        offsetof(mnas_learner_options, z_dim),       offsetof(mnas_learner_options, f_dim),
        offsetof(mnas_learner_options, controller_hidden), offsetof(mnas_learner_options, method),
        offsetof(mnas_learner_options, inner_mode),  offsetof(mnas_learner_options, encoder),
        offsetof(mnas_learner_options, modulation),
    };
    static const size_t real_fields[] = {
        offsetof(mnas_learner_options, inner_lr), offsetof(mnas_learner_options, outer_lr),
        offsetof(mnas_learner_options, clip_norm), offsetof(mnas_learner_options, arch_lr),
        offsetof(mnas_learner_options, beta),     offsetof(mnas_learner_options, path_dropout),
        offsetof(mnas_learner_options, modulator_bias),
    };
    const int ivals[3] = { INT32_MIN, -1, INT32_MAX };
    const double rvals[3] = { NAN, -INFINITY, 1e300 };
    for (size_t f = 0; f < sizeof int_fields / sizeof int_fields[0]; f++)
        for (int k = 0; k < 3; k++) {
            mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
            o.method = MNAS_METHOD_MNAS;
            memcpy((char *)&o + int_fields[f], &ivals[k], sizeof(int));
            mnas_learner *l = mnas_learner_create(ctx, &o);
            ck_assert_msg(l == NULL, "option at offset %zu = %d accepted", int_fields[f], ivals[k]);
            expect_message(ctx);
        }
    for (size_t f = 0; f < sizeof real_fields / sizeof real_fields[0]; f++)
        for (int k = 0; k < 3; k++) {
            mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
            o.method = MNAS_METHOD_MNAS;
            memcpy((char *)&o + real_fields[f], &rvals[k], sizeof(double));
            mnas_learner *l = mnas_learner_create(ctx, &o);
            ck_assert_msg(l == NULL, "option at offset %zu = %g accepted", real_fields[f], rvals[k]);
            expect_message(ctx);
        }
    mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
    o.struct_size = 0;
    ck_assert_ptr_null(mnas_learner_create(ctx, &o));
    o.struct_size = SIZE_MAX;
    ck_assert_ptr_null(mnas_learner_create(ctx, &o));
    /* Regression tasks with absurd sizes. */
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    ro.k_shot = INT32_MAX;
    ck_assert_ptr_null(mnas_regression_task(ctx, &ro, 1, 0, -1));
    ro.k_shot = -3;
    ck_assert_ptr_null(mnas_regression_task(ctx, &ro, 1, 0, -1));
    ro = (mnas_regression_options)MNAS_REGRESSION_OPTIONS_INIT;
    ck_assert_ptr_null(mnas_regression_task(ctx, &ro, 1, 0, 99));
    ck_assert_ptr_null(mnas_regression_test_set(ctx, &ro, 1, SIZE_MAX));
    /* Optimiser options. */
    mnas_params *p = mnas_params_create(ctx);
    int64_t s[1] = { 3 };
    ck_assert_int_ge(mnas_params_add(p, "w", 1, s, MNAS_INIT_ZEROS, 0, 0), 0);
    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.beta2 = 1.0;
    ck_assert_ptr_null(mnas_optim_create(p, &oo));
    oo = (mnas_optim_options)MNAS_OPTIM_OPTIONS_INIT;
    oo.lr = NAN;
    ck_assert_ptr_null(mnas_optim_create(p, &oo));
    oo = (mnas_optim_options)MNAS_OPTIM_OPTIONS_INIT;
    oo.kind = (mnas_optim_kind)7;
    ck_assert_ptr_null(mnas_optim_create(p, &oo));
    ck_assert_int_lt(mnas_params_add(p, "v", 1, s, (mnas_init)42, 0, 0), 0);
    ck_assert_int_lt(mnas_params_add(p, "v", 1, s, MNAS_INIT_ZEROS, 0, 99), 0);
    ck_assert_int_lt(mnas_params_add(p, "bad name", 1, s, MNAS_INIT_ZEROS, 0, 0), 0);
    mnas_params_free(p);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(oversized_and_malformed_texts)
{
    mnas_ctx *ctx = new_ctx();
    mnas_search_space *sp = mnas_search_space_mlp(ctx);
    size_t n = (size_t)1 << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = "linear@0,skip@1;"[i % 16];
    big[n] = '\0';
    ck_assert_ptr_null(mnas_genotype_parse(ctx, sp, big));
    expect_message(ctx);
    memset(big, 'x', n);
    ck_assert_ptr_null(mnas_genotype_parse(ctx, sp, big));
    expect_message(ctx);
    const char *bad[] = { "", ";", "linear@", "linear@-1,skip@0", "linear@99999999999999999999,skip@0",
                          "linear@0,skip@1;linear@0", "\xff\xfe", "linear@0,,skip@1", "none@0,none@1",
                          "linear@0 skip@1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(mnas_genotype_parse(ctx, sp, bad[i]) == NULL, "\"%s\" parsed", bad[i]);
        expect_message(ctx);
    }
    free(big);
    mnas_search_space_free(sp);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- checkpoints whose records lie about their sizes ----------------------------- */

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put(uint8_t *b, size_t *pos, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) b[(*pos)++] = (uint8_t)(v >> (8 * i));
}

/* A file with one record of the given dims and claimed payload size
 * (actual payload: `have` bytes), every CRC valid. */
static size_t craft(uint8_t *b, int ndim, const uint64_t *dims, uint64_t claimed, size_t have)
{
    size_t pos = 0;
    memcpy(b, "MNASCKPT", 8);
    pos = 8;
    put(b, &pos, 1, 4);
    put(b, &pos, 0x0A0B0C0D, 4);
    put(b, &pos, 1, 4);
    put(b, &pos, 0, 4);
    size_t size_at = pos;
    put(b, &pos, 0, 8);
    size_t start = pos;
    put(b, &pos, 4, 2);
    memcpy(b + pos, "kind", 4);
    pos += 4;
    b[pos++] = 1; /* f32 */
    b[pos++] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++) put(b, &pos, dims[d], 8);
    put(b, &pos, claimed, 8);
    memset(b + pos, 0, have);
    pos += have;
    put(b, &pos, crc32_ref(b + start, pos - start), 4);
    memcpy(b + pos, "MEND", 4);
    pos += 4;
    size_t total = pos + 4;
    size_t sp = size_at;
    put(b, &sp, total, 8);
    put(b, &pos, crc32_ref(b, pos), 4);
    return pos;
}

START_TEST(checkpoint_records_with_impossible_sizes)
{
    mnas_ctx *ctx = new_ctx();
    mnas_params *p = mnas_params_create(ctx);
    int64_t s[1] = { 2 };
    ck_assert_int_ge(mnas_params_add(p, "w", 1, s, MNAS_INIT_ZEROS, 0, 0), 0);
    char path[128];
    snprintf(path, sizeof path, "/tmp/mnas-hostile-%ld.ckpt", (long)getpid());
    static uint8_t buf[4096];
    struct {
        int ndim;
        uint64_t dims[4];
        uint64_t claimed;
        const char *needle;
    } cases[] = {
        { 2, { (uint64_t)1 << 61, 4 }, 0, "do not match" },               /* count * 4 bytes overflows */
        { 1, { UINT64_MAX }, UINT64_MAX, "overflow" },                     /* dimension beyond int64 */
        { 4, { 1u << 16, 1u << 16, 1u << 16, 1u << 16 }, 0, "overflow" }, /* product overflows */
        { 1, { 1000 }, 4000, "runs past" },                                /* claims more than it has */
        { 1, { 2 }, 8, NULL },                                             /* fine size, not a params file */
        { 5, { 1, 1, 1, 1 }, 4, "dimensions" },                            /* too many dimensions */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = craft(buf, cases[i].ndim, cases[i].dims, cases[i].claimed, i == 4 ? 8 : 4);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        fwrite(buf, 1, len, f);
        fclose(f);
        mnas_status st = mnas_params_load(p, path);
        ck_assert_msg(st == MNAS_E_FORMAT, "case %zu: status %d (%s)", i, st, mnas_ctx_last_error(ctx));
        if (cases[i].needle)
            ck_assert_msg(strstr(mnas_ctx_last_error(ctx), cases[i].needle) != NULL, "case %zu: \"%s\"", i,
                          mnas_ctx_last_error(ctx));
    }
    unlink(path);
    mnas_params_free(p);
    mnas_ctx_free(ctx);
}
END_TEST

static void chunk(uint8_t *b, size_t *pos, const char *type, const uint8_t *data, uint32_t n)
{
    for (int i = 3; i >= 0; i--) b[(*pos)++] = (uint8_t)(n >> (8 * i));
    size_t start = *pos;
    memcpy(b + *pos, type, 4);
    *pos += 4;
    if (n) memcpy(b + *pos, data, n);
    *pos += n;
    uint32_t c = crc32_ref(b + start, 4 + (size_t)n);
    for (int i = 3; i >= 0; i--) b[(*pos)++] = (uint8_t)(c >> (8 * i));
}

/* A 100-byte PNG whose header claims 60000 x 60000 RGBA pixels is refused
 * before the decoder sizes its buffers from it (found by fuzz_png). */
START_TEST(png_header_claiming_huge_image)
{
    mnas_ctx *ctx = new_ctx();
    char dir[128], cls[160], file[192];
    snprintf(dir, sizeof dir, "/tmp/mnas-hostile-png-%ld", (long)getpid());
    snprintf(cls, sizeof cls, "%s/a", dir);
    snprintf(file, sizeof file, "%s/x.png", cls);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(mkdir(cls, 0700), 0);
    uint8_t b[256];
    size_t pos = 8;
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    const uint8_t ihdr[13] = { 0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 6, 0, 0, 0 };
    chunk(b, &pos, "IHDR", ihdr, 13);
    const uint8_t idat[11] = { 0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0 };
    chunk(b, &pos, "IDAT", idat, 10);
    chunk(b, &pos, "IEND", NULL, 0);
    FILE *f = fopen(file, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(b, 1, pos, f);
    fclose(f);
    ck_assert_ptr_null(mnas_image_dataset_load_folder(ctx, dir, NULL));
    ck_assert_msg(strstr(mnas_ctx_last_error(ctx), "more than") != NULL, "%s", mnas_ctx_last_error(ctx));
    unlink(file);
    rmdir(cls);
    rmdir(dir);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile_input");
    TCase *tc = tcase_create("valid_handles");
    tcase_add_test(tc, huge_and_negative_shapes);
    tcase_add_test(tc, out_of_range_options);
    tcase_add_test(tc, oversized_and_malformed_texts);
    tcase_add_test(tc, checkpoint_records_with_impossible_sizes);
    tcase_add_test(tc, png_header_claiming_huge_image);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
