/* Unit tests of the image datasets and few-shot tasks: PNG class folders of
 * every colour type and bit depth (fixtures written with libpng here), IDX
 * files plain and gzip (written by hand, compressed with zlib), the error
 * messages of broken files, resizing, the decoded cache, class splits, the
 * N-way K-shot sampler (determinism, balance, mixtures, threads) and
 * accuracy. */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <mnas/mnas.h>

/* ------------------------------------------------------------ helpers */

/* Atomic counts: the library allocates from its worker threads too (the
 * byte store's tests run the sampler on 2 threads), and plain increments
 * from two threads lose counts. */
typedef struct counting_alloc {
    atomic_long allocs, frees;
} counting_alloc;

static void *count_alloc(void *user, size_t size)
{
    atomic_fetch_add(&((counting_alloc *)user)->allocs, 1);
    return malloc(size);
}

static void count_free(void *user, void *p)
{
    atomic_fetch_add(&((counting_alloc *)user)->frees, 1);
    free(p);
}

static mnas_ctx *new_ctx(counting_alloc *c)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    if (c) {
        atomic_init(&c->allocs, 0);
        atomic_init(&c->frees, 0);
        o.alloc = count_alloc;
        o.free = count_free;
        o.alloc_user = c;
    }
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    return ctx;
}

/* Every block given back (the context itself included). */
static void free_ctx_check(mnas_ctx *ctx, counting_alloc *c)
{
    mnas_ctx_free(ctx);
    if (c) ck_assert_int_eq(atomic_load(&c->allocs), atomic_load(&c->frees));
}

static char g_tmp[256];

static void make_tmp(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mnas_test_images_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tmp(void) { nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static const char *tmp_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", g_tmp, rel);
    return buf;
}

static void mkdir_rel(const char *rel)
{
    char p[512];
    ck_assert_int_eq(mkdir(tmp_path(p, sizeof p, rel), 0755), 0);
}

static void write_bytes(const char *rel, const void *data, size_t n)
{
    char p[512];
    FILE *f = fopen(tmp_path(p, sizeof p, rel), "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static size_t file_size(const char *rel)
{
    char p[512];
    struct stat sb;
    ck_assert_int_eq(stat(tmp_path(p, sizeof p, rel), &sb), 0);
    return (size_t)sb.st_size;
}

static void truncate_rel(const char *rel, size_t n)
{
    char p[512];
    ck_assert_int_eq(truncate(tmp_path(p, sizeof p, rel), (off_t)n), 0);
}

/* A PNG of any colour type and depth: samples interleaved per pixel, each
 * in 0..2^depth-1 (palette: indices); plte/trns for palette images. */
typedef struct png_spec {
    int w, h, color_type, depth;
    const uint16_t *samples;
    const png_color *plte;
    int n_plte;
    const png_byte *trns;
    int n_trns;
} png_spec;

static int spec_channels(int color_type)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; /* palette */
    }
}

static void write_png(const char *rel, const png_spec *s)
{
    char p[512];
    FILE *f = fopen(tmp_path(p, sizeof p, rel), "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(png && info);
    if (setjmp(png_jmpbuf(png))) ck_abort_msg("libpng failed writing %s", rel);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->plte) png_set_PLTE(png, info, s->plte, s->n_plte);
    if (s->trns) png_set_tRNS(png, info, s->trns, s->n_trns, NULL);
    png_write_info(png, info);
    const int c = spec_channels(s->color_type);
    const size_t rowbytes = ((size_t)s->w * (size_t)c * (size_t)s->depth + 7) / 8;
    png_bytep row = calloc(1, rowbytes);
    for (int y = 0; y < s->h; y++) {
        memset(row, 0, rowbytes);
        for (int x = 0; x < s->w; x++)
            for (int k = 0; k < c; k++) {
                unsigned v = s->samples[((size_t)y * s->w + x) * c + k];
                size_t bit = ((size_t)x * c + k) * (size_t)s->depth;
                if (s->depth == 16) {
                    row[bit / 8] = (png_byte)(v >> 8);
                    row[bit / 8 + 1] = (png_byte)v;
                } else if (s->depth == 8) {
                    row[bit / 8] = (png_byte)v;
                } else {
                    int shift = 8 - s->depth - (int)(bit % 8); /* most significant bits first */
                    row[bit / 8] |= (png_byte)(v << shift);
                }
            }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

/* A w x h 8-bit grey PNG with value v everywhere. */
static void write_grey(const char *rel, int w, int h, unsigned v)
{
    uint16_t *s = malloc(sizeof *s * (size_t)w * h);
    for (int i = 0; i < w * h; i++) s[i] = (uint16_t)((v + (unsigned)i) & 255u);
    png_spec spec = { w, h, PNG_COLOR_TYPE_GRAY, 8, s, NULL, 0, NULL, 0 };
    write_png(rel, &spec);
    free(s);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

#define ASSERT_MSG(ctx, needle)                                                                                   \
    ck_assert_msg(contains(mnas_ctx_last_error(ctx), needle), "message \"%s\" lacks \"%s\"", mnas_ctx_last_error(ctx), \
                  needle)

static mnas_image_dataset *load(mnas_ctx *ctx, const char *rel, const mnas_image_load_options *o)
{
    char p[512];
    return mnas_image_dataset_load_folder(ctx, tmp_path(p, sizeof p, rel), o);
}

/* --------------------------------------------------- PNG colour types */

typedef struct png_case {
    int color_type, depth, with_trns;
} png_case;

static const png_case k_cases[] = {
    { PNG_COLOR_TYPE_GRAY, 1, 0 },       { PNG_COLOR_TYPE_GRAY, 2, 0 },       { PNG_COLOR_TYPE_GRAY, 4, 0 },
    { PNG_COLOR_TYPE_GRAY, 8, 0 },       { PNG_COLOR_TYPE_GRAY, 16, 0 },      { PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0 },
    { PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0 }, { PNG_COLOR_TYPE_RGB, 8, 0 },       { PNG_COLOR_TYPE_RGB, 16, 0 },
    { PNG_COLOR_TYPE_RGB_ALPHA, 8, 0 },  { PNG_COLOR_TYPE_RGB_ALPHA, 16, 0 }, { PNG_COLOR_TYPE_PALETTE, 1, 0 },
    { PNG_COLOR_TYPE_PALETTE, 2, 0 },    { PNG_COLOR_TYPE_PALETTE, 4, 0 },    { PNG_COLOR_TYPE_PALETTE, 8, 0 },
    { PNG_COLOR_TYPE_PALETTE, 8, 1 },    { PNG_COLOR_TYPE_PALETTE, 4, 1 },
};
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

#define PW 5
#define PH 3

/* Reference RGBA in [0, 1] of pixel p for a case (the file's samples). */
static void case_samples(const png_case *pc, uint16_t *samples, png_color *plte, png_byte *trns, double rgba[][4])
{
    const int c = spec_channels(pc->color_type);
    const unsigned maxv = (1u << pc->depth) - 1u;
    const int n_plte = pc->color_type == PNG_COLOR_TYPE_PALETTE ? (int)maxv + 1 : 0;
    for (int i = 0; i < n_plte; i++) {
        plte[i].red = (png_byte)(37 * i + 11);
        plte[i].green = (png_byte)(255 - 19 * i);
        plte[i].blue = (png_byte)(91 * i + 3);
        trns[i] = (png_byte)(i % 2 ? 255 - 40 * (i % 5) : 128);
    }
    for (int p = 0; p < PW * PH; p++) {
        for (int k = 0; k < c; k++) samples[p * c + k] = (uint16_t)(((unsigned)p * 7919u + (unsigned)k * 104729u) % (maxv + 1u));
        double *o = rgba[p];
        if (pc->color_type == PNG_COLOR_TYPE_PALETTE) {
            int i = samples[p];
            o[0] = plte[i].red / 255.0;
            o[1] = plte[i].green / 255.0;
            o[2] = plte[i].blue / 255.0;
            o[3] = pc->with_trns ? trns[i] / 255.0 : 1.0;
        } else {
            double v[4];
            for (int k = 0; k < c; k++) v[k] = samples[p * c + k] / (double)maxv;
            int colour = c >= 3;
            o[0] = v[0];
            o[1] = colour ? v[1] : v[0];
            o[2] = colour ? v[2] : v[0];
            o[3] = (c == 2 || c == 4) ? v[c - 1] : 1.0;
        }
    }
}

START_TEST(png_every_colour_type_and_depth)
{
    const png_case *pc = &k_cases[_i];
    make_tmp();
    mkdir_rel("ds");
    mkdir_rel("ds/a");
    uint16_t samples[PW * PH * 4];
    png_color plte[256];
    png_byte trns[256];
    double rgba[PW * PH][4];
    case_samples(pc, samples, plte, trns, rgba);
    int n_plte = pc->color_type == PNG_COLOR_TYPE_PALETTE ? 1 << pc->depth : 0;
    png_spec spec = { PW, PH, pc->color_type, pc->depth, samples, n_plte ? plte : NULL, n_plte,
                      pc->with_trns ? trns : NULL, pc->with_trns ? n_plte : 0 };
    write_png("ds/a/img.png", &spec);

    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    const int colour = pc->color_type & PNG_COLOR_MASK_COLOR;
    for (int channels = 0; channels <= 3; channels++) {
        if (channels == 2) continue;
        for (int alpha = 0; alpha < 2; alpha++) {
            mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
            o.channels = channels;
            o.alpha = alpha;
            mnas_image_dataset *ds = load(ctx, "ds", &o);
            ck_assert_msg(ds != NULL, "case %d: %s", _i, mnas_ctx_last_error(ctx));
            int64_t shape[3];
            ck_assert_int_eq(mnas_image_dataset_shape(ds, shape), MNAS_OK);
            const int want_c = channels ? channels : (colour ? 3 : 1);
            ck_assert_int_eq(shape[0], want_c);
            ck_assert_int_eq(shape[1], PH);
            ck_assert_int_eq(shape[2], PW);
            ck_assert_uint_eq(mnas_image_dataset_num_classes(ds), 1);
            ck_assert_str_eq(mnas_image_dataset_class_name(ds, 0), "a");
            float img[3 * PW * PH];
            ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 0, img, 3 * PW * PH), MNAS_OK);
            for (int p = 0; p < PW * PH; p++) {
                double v[3];
                for (int k = 0; k < 3; k++)
                    v[k] = alpha == MNAS_ALPHA_WHITE ? rgba[p][3] * rgba[p][k] + (1.0 - rgba[p][3]) : rgba[p][k];
                for (int k = 0; k < want_c; k++) {
                    double want = want_c == 3 ? v[k] : (colour ? 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2] : v[0]);
                    ck_assert_msg(fabs(img[k * PW * PH + p] - want) < 1e-5,
                                  "case %d (type %d depth %d) channels %d alpha %d pixel %d ch %d: %g != %g", _i,
                                  pc->color_type, pc->depth, channels, alpha, p, k, img[k * PW * PH + p], want);
                }
            }
            ck_assert_int_eq(mnas_image_dataset_from_cache(ds), 0);
            mnas_image_dataset_free(ds);
        }
    }
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

START_TEST(png_interlaced)
{
    /* Adam7 through png_set_interlace_handling */
    make_tmp();
    mkdir_rel("ds");
    mkdir_rel("ds/a");
    char p[512];
    FILE *f = fopen(tmp_path(p, sizeof p, "ds/a/i.png"), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, 9, 7, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_byte data[7][9];
    png_bytep rows[7];
    for (int y = 0; y < 7; y++) {
        for (int x = 0; x < 9; x++) data[y][x] = (png_byte)(y * 30 + x);
        rows[y] = data[y];
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    mnas_ctx *ctx = new_ctx(NULL);
    mnas_image_dataset *ds = load(ctx, "ds", NULL);
    ck_assert_msg(ds != NULL, "%s", mnas_ctx_last_error(ctx));
    float img[63];
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 0, img, 63), MNAS_OK);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 9; x++) ck_assert_float_eq_tol(img[y * 9 + x], (y * 30 + x) / 255.0f, 1e-6f);
    mnas_image_dataset_free(ds);
    mnas_ctx_free(ctx);
    remove_tmp();
}
END_TEST

/* Three classes, written out of order, with hidden files and a top-level
 * plain file that must be skipped. */
static void make_three_classes(void)
{
    mkdir_rel("ds");
    const char *cls[3] = { "zeta", "Alpha", "beta" };
    for (int c = 0; c < 3; c++) {
        char rel[128];
        snprintf(rel, sizeof rel, "ds/%s", cls[c]);
        mkdir_rel(rel);
        for (int i = 0; i < 4 + c; i++) {
            snprintf(rel, sizeof rel, "ds/%s/img_%02d.png", cls[c], 9 - i);
            write_grey(rel, 6, 4, (unsigned)(c * 60 + (9 - i)));
        }
    }
    write_bytes("ds/README.txt", "not a class\n", 12);
    write_bytes("ds/beta/.hidden", "x", 1);
}

START_TEST(folder_order_and_accessors)
{
    make_tmp();
    make_three_classes();
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = load(ctx, "ds", NULL);
    ck_assert_msg(ds != NULL, "%s", mnas_ctx_last_error(ctx));
    ck_assert_uint_eq(mnas_image_dataset_num_classes(ds), 3);
    ck_assert_uint_eq(mnas_image_dataset_num_images(ds), 4 + 5 + 6);
    /* byte order: uppercase first */
    ck_assert_str_eq(mnas_image_dataset_class_name(ds, 0), "Alpha");
    ck_assert_str_eq(mnas_image_dataset_class_name(ds, 1), "beta");
    ck_assert_str_eq(mnas_image_dataset_class_name(ds, 2), "zeta");
    ck_assert_ptr_null(mnas_image_dataset_class_name(ds, 3));
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 0), 5);
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 1), 6);
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 2), 4);
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 3), 0);
    ck_assert_int_eq(mnas_image_dataset_find_class(ds, "beta"), 1);
    ck_assert_int_eq(mnas_image_dataset_find_class(ds, "gamma"), -1);
    /* files sorted by name: img_05 .. img_09 for Alpha (c = 1, i = 0..4) */
    float img[24];
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 0, img, 24), MNAS_OK);
    ck_assert_float_eq_tol(img[0], (60 + 5) / 255.0f, 1e-6f);
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 4, img, 24), MNAS_OK);
    ck_assert_float_eq_tol(img[0], (60 + 9) / 255.0f, 1e-6f);
    ck_assert_float_eq_tol(img[1], (60 + 10) / 255.0f, 1e-6f);
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 5, img, 24), MNAS_E_INVALID);
    ASSERT_MSG(ctx, "out of range");
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 0, 0, img, 23), MNAS_E_SHAPE);
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 3, 0, img, 24), MNAS_E_INVALID);
    mnas_image_dataset_free(ds);
    mnas_image_dataset_free(NULL);
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* ------------------------------------------------------ broken inputs */

START_TEST(folder_errors)
{
    make_tmp();
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    char p[512];

    /* missing folder */
    ck_assert_ptr_null(load(ctx, "nope", NULL));
    ck_assert(contains(mnas_ctx_last_error(ctx), "cannot open the folder"));
    ck_assert(contains(mnas_ctx_last_error(ctx), "nope"));

    /* no class folders */
    mkdir_rel("flat");
    write_grey("flat/a.png", 4, 4, 0);
    ck_assert_ptr_null(load(ctx, "flat", NULL));
    ASSERT_MSG(ctx, "no class sub-folders");

    /* empty class folder */
    mkdir_rel("empty");
    mkdir_rel("empty/a");
    mkdir_rel("empty/b");
    write_grey("empty/a/x.png", 4, 4, 0);
    ck_assert_ptr_null(load(ctx, "empty", NULL));
    ASSERT_MSG(ctx, "empty");
    ASSERT_MSG(ctx, "empty/b");
    ck_assert(contains(mnas_ctx_last_error(ctx), "malformed data"));

    /* a file that is not a PNG */
    mkdir_rel("text");
    mkdir_rel("text/a");
    write_grey("text/a/1.png", 4, 4, 0);
    write_bytes("text/a/2.png", "hello, world, this is text\n", 27);
    ck_assert_ptr_null(load(ctx, "text", NULL));
    ASSERT_MSG(ctx, "is not a PNG file");
    ASSERT_MSG(ctx, "text/a/2.png");
    write_bytes("text/a/2.png", "\x89PN", 3);
    ck_assert_ptr_null(load(ctx, "text", NULL));
    ASSERT_MSG(ctx, "shorter than the PNG signature");

    /* truncated PNGs: in the header, in the image data */
    mkdir_rel("trunc");
    mkdir_rel("trunc/a");
    write_grey("trunc/a/1.png", 32, 32, 7);
    size_t n = file_size("trunc/a/1.png");
    size_t cuts[3] = { 12, 40, n - 20 };
    for (int i = 0; i < 3; i++) {
        write_grey("trunc/a/1.png", 32, 32, 7);
        truncate_rel("trunc/a/1.png", cuts[i]);
        ck_assert_ptr_null(load(ctx, "trunc", NULL));
        ASSERT_MSG(ctx, "truncated");
        ASSERT_MSG(ctx, "trunc/a/1.png");
        ck_assert_msg(mnas_ctx_last_error(ctx)[0] == 'm', "%s", mnas_ctx_last_error(ctx)); /* malformed data: */
    }
    /* a corrupt chunk (CRC error) */
    write_grey("trunc/a/1.png", 32, 32, 7);
    {
        FILE *f = fopen(tmp_path(p, sizeof p, "trunc/a/1.png"), "r+b");
        fseek(f, 60, SEEK_SET);
        fputc(0x55, f);
        fclose(f);
    }
    ck_assert_ptr_null(load(ctx, "trunc", NULL));
    ASSERT_MSG(ctx, "corrupt");

    /* sizes that differ without a resize; fine with one */
    mkdir_rel("sizes");
    mkdir_rel("sizes/a");
    mkdir_rel("sizes/b");
    write_grey("sizes/a/1.png", 8, 6, 0);
    write_grey("sizes/b/1.png", 7, 6, 0);
    ck_assert_ptr_null(load(ctx, "sizes", NULL));
    ASSERT_MSG(ctx, "7x6");
    ASSERT_MSG(ctx, "8x6");
    ASSERT_MSG(ctx, "sizes/b/1.png");
    ck_assert_str_eq(mnas_status_str(MNAS_E_SHAPE), "shape mismatch");
    ck_assert(contains(mnas_ctx_last_error(ctx), "shape mismatch"));
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.height = 4;
    o.width = 4;
    mnas_image_dataset *ds = load(ctx, "sizes", &o);
    ck_assert_ptr_nonnull(ds);
    mnas_image_dataset_free(ds);

    /* bad options */
    o.height = 0;
    ck_assert_ptr_null(load(ctx, "sizes", &o));
    ASSERT_MSG(ctx, "height");
    o = (mnas_image_load_options)MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.channels = 2;
    ck_assert_ptr_null(load(ctx, "sizes", &o));
    ASSERT_MSG(ctx, "channels 2");
    o = (mnas_image_load_options)MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.struct_size = 8;
    ck_assert_ptr_null(load(ctx, "sizes", &o));
    ASSERT_MSG(ctx, "struct_size");
    o = (mnas_image_load_options)MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.resize = 7;
    ck_assert_ptr_null(load(ctx, "sizes", &o));
    ASSERT_MSG(ctx, "resize 7");
    ck_assert_ptr_null(mnas_image_dataset_load_folder(ctx, NULL, NULL));
    ck_assert_ptr_null(mnas_image_dataset_load_folder(NULL, "x", NULL));

    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* ------------------------------------------------------------- resize */

static void one_image(const char *rel, int w, int h, const uint16_t *px)
{
    png_spec spec = { w, h, PNG_COLOR_TYPE_GRAY, 8, px, NULL, 0, NULL, 0 };
    write_png(rel, &spec);
}

START_TEST(resize_area_and_bilinear)
{
    make_tmp();
    mkdir_rel("r");
    mkdir_rel("r/a");
    /* 4x4: 2x2 blocks of constant values, so area to 2x2 is exact */
    const uint16_t px[16] = { 0, 0, 100, 100, 0, 0, 100, 100, 200, 200, 50, 50, 200, 200, 50, 50 };
    one_image("r/a/x.png", 4, 4, px);
    mnas_ctx *ctx = new_ctx(NULL);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.height = o.width = 2;
    mnas_image_dataset *ds = load(ctx, "r", &o);
    ck_assert_ptr_nonnull(ds);
    float img[64];
    mnas_image_dataset_copy_image(ds, 0, 0, img, 64);
    const float want[4] = { 0, 100 / 255.0f, 200 / 255.0f, 50 / 255.0f };
    for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(img[i], want[i], 1e-6f);
    mnas_image_dataset_free(ds);

    /* area to 1x1: the mean */
    o.height = o.width = 1;
    ds = load(ctx, "r", &o);
    mnas_image_dataset_copy_image(ds, 0, 0, img, 64);
    ck_assert_float_eq_tol(img[0], 87.5f / 255.0f, 1e-6f);
    mnas_image_dataset_free(ds);

    /* area 4 -> 3: each output covers 4/3 source pixels */
    o.height = 4;
    o.width = 3;
    ds = load(ctx, "r", &o);
    mnas_image_dataset_copy_image(ds, 0, 0, img, 64);
    ck_assert_float_eq_tol(img[0], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(img[1], 50.0f / 255.0f, 1e-5f); /* [4/3, 8/3): 2/3 of 0, 2/3 of 100 */
    ck_assert_float_eq_tol(img[2], 100.0f / 255.0f, 1e-5f);
    mnas_image_dataset_free(ds);

    /* bilinear 4 -> 8 upsampling: half-pixel centres; edge pixels clamp */
    o.resize = MNAS_RESIZE_BILINEAR;
    o.height = 4;
    o.width = 8;
    ds = load(ctx, "r", &o);
    mnas_image_dataset_copy_image(ds, 0, 0, img, 64);
    ck_assert_float_eq_tol(img[0], 0.0f, 1e-6f);             /* src -0.25 -> clamped to 0 */
    ck_assert_float_eq_tol(img[3], 100 / 255.0f * 0.25f, 1e-5f); /* src 1.25 between 0 and 100 */
    ck_assert_float_eq_tol(img[7], 100 / 255.0f, 1e-6f);
    mnas_image_dataset_free(ds);

    /* bilinear downscale of a constant image is constant */
    const uint16_t flat[16] = { 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77 };
    one_image("r/a/x.png", 4, 4, flat);
    o.height = 3;
    o.width = 3;
    ds = load(ctx, "r", &o);
    mnas_image_dataset_copy_image(ds, 0, 0, img, 64);
    for (int i = 0; i < 9; i++) ck_assert_float_eq_tol(img[i], 77 / 255.0f, 1e-6f);
    mnas_image_dataset_free(ds);
    mnas_ctx_free(ctx);
    remove_tmp();
}
END_TEST

/* ---------------------------------------------------------------- IDX */

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

#define IDX_N 30
#define IDX_R 5
#define IDX_C 4

/* images: pixel value = (i * 3 + k) & 255; labels: i % 3 (0..2), plus 7 for
 * the last image */
static size_t make_idx_images(unsigned char *buf, uint32_t n_header)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 3;
    put_be32(buf + 4, n_header);
    put_be32(buf + 8, IDX_R);
    put_be32(buf + 12, IDX_C);
    for (int i = 0; i < IDX_N; i++)
        for (int k = 0; k < IDX_R * IDX_C; k++) buf[16 + i * IDX_R * IDX_C + k] = (unsigned char)((i * 3 + k) & 255);
    return 16 + IDX_N * IDX_R * IDX_C;
}

static size_t make_idx_labels(unsigned char *buf, uint32_t n)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = 1;
    put_be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++) buf[8 + i] = (unsigned char)(i + 1 == IDX_N ? 7 : i % 3);
    return 8 + n;
}

static void write_gz(const char *rel, const void *data, size_t n)
{
    char p[512];
    gzFile g = gzopen(tmp_path(p, sizeof p, rel), "wb9");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

static mnas_image_dataset *load_idx(mnas_ctx *ctx, const char *img, const char *lab, const mnas_image_load_options *o)
{
    char a[512], b[512];
    return mnas_image_dataset_load_idx(ctx, tmp_path(a, sizeof a, img), tmp_path(b, sizeof b, lab), o);
}

static void check_idx_dataset(mnas_ctx *ctx, mnas_image_dataset *ds)
{
    ck_assert_msg(ds != NULL, "%s", mnas_ctx_last_error(ctx));
    ck_assert_uint_eq(mnas_image_dataset_num_classes(ds), 4);
    ck_assert_uint_eq(mnas_image_dataset_num_images(ds), IDX_N);
    ck_assert_str_eq(mnas_image_dataset_class_name(ds, 0), "0");
    ck_assert_str_eq(mnas_image_dataset_class_name(ds, 3), "7");
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 0), 10);
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 2), 9);
    ck_assert_uint_eq(mnas_image_dataset_class_size(ds, 3), 1);
    int64_t shape[3];
    mnas_image_dataset_shape(ds, shape);
    ck_assert_int_eq(shape[0], 1);
    ck_assert_int_eq(shape[1], IDX_R);
    ck_assert_int_eq(shape[2], IDX_C);
    float img[IDX_R * IDX_C];
    /* class "1", image 2 = file image 7 */
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 1, 2, img, IDX_R * IDX_C), MNAS_OK);
    for (int k = 0; k < IDX_R * IDX_C; k++) ck_assert_float_eq_tol(img[k], ((7 * 3 + k) & 255) / 255.0f, 1e-7f);
    ck_assert_int_eq(mnas_image_dataset_copy_image(ds, 3, 0, img, IDX_R * IDX_C), MNAS_OK);
    ck_assert_float_eq_tol(img[0], ((29 * 3) & 255) / 255.0f, 1e-7f);
}

START_TEST(idx_plain_and_gzip)
{
    make_tmp();
    static unsigned char img[16 + IDX_N * IDX_R * IDX_C], lab[8 + IDX_N];
    size_t ni = make_idx_images(img, IDX_N), nl = make_idx_labels(lab, IDX_N);
    write_bytes("img.idx", img, ni);
    write_bytes("lab.idx", lab, nl);
    write_gz("img.idx.gz", img, ni);
    write_gz("lab.idx.gz", lab, nl);
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = load_idx(ctx, "img.idx", "lab.idx", NULL);
    check_idx_dataset(ctx, ds);
    mnas_image_dataset_free(ds);
    ds = load_idx(ctx, "img.idx.gz", "lab.idx.gz", NULL);
    check_idx_dataset(ctx, ds);
    mnas_image_dataset_free(ds);
    ds = load_idx(ctx, "img.idx.gz", "lab.idx", NULL);
    check_idx_dataset(ctx, ds);
    mnas_image_dataset_free(ds);
    /* resized and as RGB */
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.channels = 3;
    o.height = 10;
    o.width = 8;
    ds = load_idx(ctx, "img.idx.gz", "lab.idx.gz", &o);
    ck_assert_ptr_nonnull(ds);
    int64_t shape[3];
    mnas_image_dataset_shape(ds, shape);
    ck_assert_int_eq(shape[0], 3);
    ck_assert_int_eq(shape[1], 10);
    ck_assert_int_eq(shape[2], 8);
    mnas_image_dataset_free(ds);
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

START_TEST(idx_errors)
{
    make_tmp();
    static unsigned char img[16 + IDX_N * IDX_R * IDX_C + 8], lab[8 + IDX_N];
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    size_t ni = make_idx_images(img, IDX_N), nl = make_idx_labels(lab, IDX_N);
    write_bytes("lab.idx", lab, nl);

    /* wrong magic */
    img[0] = 1;
    write_bytes("bad.idx", img, ni);
    ck_assert_ptr_null(load_idx(ctx, "bad.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "wrong magic");
    ASSERT_MSG(ctx, "bad.idx");
    img[0] = 0;
    /* wrong data type */
    img[2] = 0x0D;
    write_bytes("bad.idx", img, ni);
    ck_assert_ptr_null(load_idx(ctx, "bad.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "not unsigned byte");
    img[2] = 0x08;
    /* images and labels swapped: dimension count */
    ck_assert_ptr_null(load_idx(ctx, "lab.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "dimensions");
    /* header count larger than the data */
    make_idx_images(img, IDX_N + 1);
    write_bytes("bad.idx", img, ni);
    ck_assert_ptr_null(load_idx(ctx, "bad.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "size mismatch");
    /* trailing bytes */
    make_idx_images(img, IDX_N);
    write_bytes("bad.idx", img, ni + 3);
    ck_assert_ptr_null(load_idx(ctx, "bad.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "size mismatch");
    /* a short header */
    write_bytes("bad.idx", img, 10);
    ck_assert_ptr_null(load_idx(ctx, "bad.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "truncated IDX header");
    /* label/image count mismatch */
    write_bytes("img.idx", img, ni);
    size_t nl2 = make_idx_labels(lab, IDX_N - 1);
    write_bytes("lab2.idx", lab, nl2);
    ck_assert_ptr_null(load_idx(ctx, "img.idx", "lab2.idx", NULL));
    ASSERT_MSG(ctx, "count mismatch");
    ASSERT_MSG(ctx, "30 images");
    ASSERT_MSG(ctx, "29 labels");
    /* truncated gzip, at several points */
    write_gz("img.idx.gz", img, ni);
    size_t gz = file_size("img.idx.gz");
    size_t cuts[3] = { gz - 4, gz / 2, 12 };
    for (int i = 0; i < 3; i++) {
        write_gz("img.idx.gz", img, ni);
        truncate_rel("img.idx.gz", cuts[i]);
        ck_assert_ptr_null(load_idx(ctx, "img.idx.gz", "lab.idx", NULL));
        ASSERT_MSG(ctx, "gzip");
        ASSERT_MSG(ctx, "img.idx.gz");
    }
    /* corrupt gzip data */
    write_gz("img.idx.gz", img, ni);
    {
        char p[512];
        FILE *f = fopen(tmp_path(p, sizeof p, "img.idx.gz"), "r+b");
        fseek(f, 14, SEEK_SET);
        for (int i = 0; i < 8; i++) fputc(0xff, f);
        fclose(f);
    }
    ck_assert_ptr_null(load_idx(ctx, "img.idx.gz", "lab.idx", NULL));
    ASSERT_MSG(ctx, "gzip");
    /* missing file */
    ck_assert_ptr_null(load_idx(ctx, "none.idx", "lab.idx", NULL));
    ASSERT_MSG(ctx, "cannot open");
    ck_assert_ptr_null(mnas_image_dataset_load_idx(ctx, NULL, "x", NULL));
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* -------------------------------------------------------------- cache */

START_TEST(cache_hit_stale_and_corrupt)
{
    make_tmp();
    make_three_classes();
    char cache[512], p[512];
    tmp_path(cache, sizeof cache, "cache.bin");
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.cache_path = cache;
    o.height = 3;
    o.width = 5;
    mnas_image_dataset *a = load(ctx, "ds", &o);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(mnas_image_dataset_from_cache(a), 0);
    ck_assert_int_eq(access(cache, F_OK), 0);
    /* the second load reads the cache: same classes, same pixels */
    mnas_image_dataset *b = load(ctx, "ds", &o);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 1);
    ck_assert_uint_eq(mnas_image_dataset_num_classes(b), 3);
    for (size_t c = 0; c < 3; c++) {
        ck_assert_str_eq(mnas_image_dataset_class_name(a, c), mnas_image_dataset_class_name(b, c));
        ck_assert_uint_eq(mnas_image_dataset_class_size(a, c), mnas_image_dataset_class_size(b, c));
        for (size_t i = 0; i < mnas_image_dataset_class_size(a, c); i++) {
            float x[15], y[15];
            mnas_image_dataset_copy_image(a, c, i, x, 15);
            mnas_image_dataset_copy_image(b, c, i, y, 15);
            ck_assert_mem_eq(x, y, sizeof x);
        }
    }
    mnas_image_dataset_free(b);
    /* other options: another key, so decoded again */
    o.height = 4;
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
    mnas_image_dataset_free(b);
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 1);
    mnas_image_dataset_free(b);
    /* a corrupt byte in the pixels: ignored, rebuilt, then used */
    size_t n = file_size("cache.bin");
    FILE *f = fopen(cache, "r+b");
    fseek(f, (long)(n - 10), SEEK_SET);
    fputc(0x3f, f);
    fclose(f);
    b = load(ctx, "ds", &o);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
    mnas_image_dataset_free(b);
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 1);
    mnas_image_dataset_free(b);
    /* truncated, and garbage */
    truncate_rel("cache.bin", n / 2);
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
    mnas_image_dataset_free(b);
    write_bytes("cache.bin", "garbage", 7);
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
    mnas_image_dataset_free(b);
    /* a changed file (new size): stale */
    write_grey("ds/beta/img_09.png", 6, 4, 3);
    write_grey("ds/beta/img_00.png", 6, 4, 3);
    b = load(ctx, "ds", &o);
    ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
    ck_assert_uint_eq(mnas_image_dataset_class_size(b, 1), 7);
    mnas_image_dataset_free(b);
    /* an unwritable cache place is not an error */
    o.cache_path = tmp_path(p, sizeof p, "no/such/dir/cache.bin");
    b = load(ctx, "ds", &o);
    ck_assert_ptr_nonnull(b);
    mnas_image_dataset_free(b);
    mnas_image_dataset_free(a);
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* -------------------------------------------------------------- splits */

/* A dataset of n classes from caller pixels: image j of class c has every
 * pixel c * 1000 + j (and pixel 1 = tag). */
static mnas_image_dataset *synthetic(mnas_ctx *ctx, size_t n_classes, size_t per_class, float tag)
{
    const int C = 1, H = 2, W = 3;
    size_t *counts = calloc(n_classes, sizeof *counts);
    char **names = calloc(n_classes, sizeof *names);
    ck_assert(counts && names);
    size_t total = 0;
    for (size_t c = 0; c < n_classes; c++) {
        counts[c] = per_class + (c % 3);
        total += counts[c];
        names[c] = calloc(1, 32);
        snprintf(names[c], 32, "class%03u", (unsigned)c);
    }
    float *data = calloc(total * (size_t)(C * H * W), sizeof *data);
    ck_assert_ptr_nonnull(data);
    size_t k = 0;
    for (size_t c = 0; c < n_classes; c++)
        for (size_t j = 0; j < counts[c]; j++)
            for (int q = 0; q < C * H * W; q++) data[k++] = q == 1 ? tag : (float)(c * 1000 + j);
    mnas_image_dataset *ds = mnas_image_dataset_create(ctx, n_classes, counts, (const char *const *)names, C, H, W, data);
    for (size_t c = 0; c < n_classes; c++) free(names[c]);
    free(names);
    free(counts);
    free(data);
    ck_assert_msg(ds != NULL, "%s", mnas_ctx_last_error(ctx));
    return ds;
}

static void class_names(const mnas_image_dataset *ds, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t c = 0; c < mnas_image_dataset_num_classes(ds); c++) {
        strncat(out, mnas_image_dataset_class_name(ds, c), cap - strlen(out) - 1);
        strncat(out, ",", cap - strlen(out) - 1);
    }
}

START_TEST(split_by_fraction)
{
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = synthetic(ctx, 20, 4, 0.0f);
    mnas_image_split_options o = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
    o.seed = 7;
    mnas_image_dataset *tr, *va, *te, *tr2, *va2, *te2;
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, &va, &te), MNAS_OK);
    ck_assert_uint_eq(mnas_image_dataset_num_classes(tr), 13); /* round(12.8) */
    ck_assert_uint_eq(mnas_image_dataset_num_classes(va), 3);  /* round(3.2) */
    ck_assert_uint_eq(mnas_image_dataset_num_classes(te), 4);
    /* disjoint, covering, each in the dataset's order */
    int seen[20] = { 0 };
    mnas_image_dataset *sets[3] = { tr, va, te };
    for (int s = 0; s < 3; s++) {
        int64_t prev = -1;
        for (size_t c = 0; c < mnas_image_dataset_num_classes(sets[s]); c++) {
            int64_t k = mnas_image_dataset_find_class(ds, mnas_image_dataset_class_name(sets[s], c));
            ck_assert_int_ge(k, 0);
            ck_assert_int_gt(k, prev);
            prev = k;
            seen[k]++;
            ck_assert_uint_eq(mnas_image_dataset_class_size(sets[s], c), mnas_image_dataset_class_size(ds, (size_t)k));
            float a[6], b[6];
            mnas_image_dataset_copy_image(sets[s], c, 1, a, 6);
            mnas_image_dataset_copy_image(ds, (size_t)k, 1, b, 6);
            ck_assert_mem_eq(a, b, sizeof a);
        }
    }
    for (int k = 0; k < 20; k++) ck_assert_int_eq(seen[k], 1);
    /* same seed, same split */
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr2, &va2, &te2), MNAS_OK);
    char n1[1024], n2[1024];
    class_names(tr, n1, sizeof n1);
    class_names(tr2, n2, sizeof n2);
    ck_assert_str_eq(n1, n2);
    class_names(te, n1, sizeof n1);
    class_names(te2, n2, sizeof n2);
    ck_assert_str_eq(n1, n2);
    mnas_image_dataset_free(tr2);
    mnas_image_dataset_free(va2);
    mnas_image_dataset_free(te2);
    /* other seeds, other splits */
    int differ = 0;
    class_names(tr, n1, sizeof n1);
    for (uint64_t seed = 100; seed < 105; seed++) {
        o.seed = seed;
        ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr2, NULL, NULL), MNAS_OK);
        class_names(tr2, n2, sizeof n2);
        differ += strcmp(n1, n2) != 0;
        mnas_image_dataset_free(tr2);
    }
    ck_assert_int_ge(differ, 4);
    /* bad requests leave every output NULL */
    o.train_fraction = 0.9;
    o.val_fraction = 0.2;
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr2, &va2, &te2), MNAS_E_INVALID);
    ck_assert(tr2 == NULL && va2 == NULL && te2 == NULL);
    ASSERT_MSG(ctx, "train_fraction");
    o.train_fraction = 1.0;
    o.val_fraction = 0.0;
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr2, &va2, NULL), MNAS_E_INVALID);
    ASSERT_MSG(ctx, "val set would have no classes");
    ck_assert(tr2 == NULL && va2 == NULL);
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, NULL, NULL, NULL), MNAS_E_INVALID);
    mnas_image_dataset_free(tr);
    mnas_image_dataset_free(va);
    mnas_image_dataset_free(te);
    mnas_image_dataset_free(ds);
    free_ctx_check(ctx, &ca);
}
END_TEST

START_TEST(split_by_lists)
{
    make_tmp();
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = synthetic(ctx, 6, 2, 0.0f);
    const char train[] = "# training classes\nclass004\n\nclass001  \r\nclass000\n";
    const char test[] = "class005\nclass002";
    write_bytes("train.txt", train, sizeof train - 1);
    write_bytes("test.txt", test, sizeof test - 1);
    char a[512], b[512];
    mnas_image_split_options o = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
    o.train_list = tmp_path(a, sizeof a, "train.txt");
    o.test_list = tmp_path(b, sizeof b, "test.txt");
    mnas_image_dataset *tr, *va, *te;
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, NULL, &te), MNAS_OK);
    char names[256];
    class_names(tr, names, sizeof names);
    ck_assert_str_eq(names, "class000,class001,class004,");
    class_names(te, names, sizeof names);
    ck_assert_str_eq(names, "class002,class005,");
    mnas_image_dataset_free(tr);
    mnas_image_dataset_free(te);
    /* a set asked for without its list */
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, &va, &te), MNAS_E_INVALID);
    ASSERT_MSG(ctx, "val_list");
    /* unknown and repeated names */
    write_bytes("test.txt", "class005\nclass009\n", 18);
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, NULL, &te), MNAS_E_FORMAT);
    ASSERT_MSG(ctx, "unknown class \"class009\"");
    ASSERT_MSG(ctx, "line 2");
    ck_assert(tr == NULL && te == NULL);
    write_bytes("test.txt", "class001\n", 9);
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, NULL, &te), MNAS_E_FORMAT);
    ASSERT_MSG(ctx, "already in the train list");
    o.test_list = tmp_path(b, sizeof b, "missing.txt");
    ck_assert_int_eq(mnas_image_dataset_split(ds, &o, &tr, NULL, &te), MNAS_E_IO);
    mnas_image_dataset_free(ds);
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

START_TEST(create_and_subset)
{
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = synthetic(ctx, 5, 3, 0.0f);
    size_t pick[2] = { 4, 1 };
    mnas_image_dataset *s = mnas_image_dataset_subset(ds, pick, 2);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(mnas_image_dataset_class_name(s, 0), "class004");
    ck_assert_str_eq(mnas_image_dataset_class_name(s, 1), "class001");
    float x[6];
    mnas_image_dataset_copy_image(s, 0, 2, x, 6);
    ck_assert_float_eq(x[0], 4002.0f);
    mnas_image_dataset_free(s);
    pick[0] = 5;
    ck_assert_ptr_null(mnas_image_dataset_subset(ds, pick, 2));
    ASSERT_MSG(ctx, "out of range");
    /* bad caller data */
    size_t counts[2] = { 1, 0 };
    float data[12] = { 0 };
    ck_assert_ptr_null(mnas_image_dataset_create(ctx, 2, counts, NULL, 1, 2, 3, data));
    ASSERT_MSG(ctx, "class 1 has no images");
    counts[1] = 1;
    data[7] = NAN;
    ck_assert_ptr_null(mnas_image_dataset_create(ctx, 2, counts, NULL, 1, 2, 3, data));
    ASSERT_MSG(ctx, "non-finite");
    data[7] = 0;
    ck_assert_ptr_null(mnas_image_dataset_create(ctx, 2, counts, NULL, 2, 2, 3, data));
    mnas_image_dataset *d2 = mnas_image_dataset_create(ctx, 2, counts, NULL, 1, 2, 3, data);
    ck_assert_str_eq(mnas_image_dataset_class_name(d2, 1), "1");
    mnas_image_dataset_free(d2);
    mnas_image_dataset_free(ds);
    free_ctx_check(ctx, &ca);
}
END_TEST

/* ------------------------------------------------------------ sampler */

/* Decode the synthetic image of row r: (class, index, tag). */
static void row_id(const mnas_tensor *x, int64_t r, long *cls, long *img, float *tag)
{
    const mnas_real *d = mnas_tensor_cdata(x);
    long v = lroundf(d[r * 6]);
    *cls = v / 1000;
    *img = v % 1000;
    *tag = d[r * 6 + 1];
}

static uint64_t task_hash(const mnas_task *t)
{
    const mnas_tensor *ts[4] = { mnas_task_support_x(t), mnas_task_support_y(t), mnas_task_query_x(t),
                                 mnas_task_query_y(t) };
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 4; i++) {
        const unsigned char *b = (const unsigned char *)mnas_tensor_cdata(ts[i]);
        size_t n = (size_t)mnas_tensor_size(ts[i]) * sizeof(mnas_real);
        for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 1099511628211ull;
    }
    return h ^ (uint64_t)mnas_task_family(t);
}

START_TEST(sampler_tasks)
{
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_dataset *ds = synthetic(ctx, 12, 6, 0.0f);
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    o.way = 5;
    o.shot = 2;
    o.query = 3;
    const mnas_image_dataset *list[1] = { ds };
    mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, list, 1, &o);
    ck_assert_msg(s != NULL, "%s", mnas_ctx_last_error(ctx));
    int way, shot, query;
    ck_assert_int_eq(mnas_fewshot_sampler_sizes(s, &way, &shot, &query), MNAS_OK);
    ck_assert(way == 5 && shot == 2 && query == 3);
    ck_assert_uint_eq(mnas_fewshot_sampler_num_datasets(s), 1);
    int class_used[12] = { 0 };
    for (uint64_t index = 0; index < 40; index++) {
        mnas_task *t = mnas_fewshot_task(ctx, s, 42, index);
        ck_assert_msg(t != NULL, "%s", mnas_ctx_last_error(ctx));
        mnas_task *again = mnas_fewshot_task(ctx, s, 42, index);
        ck_assert_uint_eq(task_hash(t), task_hash(again));
        mnas_task_free(again);
        mnas_task *other = mnas_fewshot_task(ctx, s, 43, index);
        ck_assert_uint_ne(task_hash(t), task_hash(other));
        mnas_task_free(other);
        ck_assert_int_eq(mnas_task_family(t), 0);
        const mnas_tensor *sx = mnas_task_support_x(t), *sy = mnas_task_support_y(t);
        const mnas_tensor *qx = mnas_task_query_x(t), *qy = mnas_task_query_y(t);
        int64_t shape[4];
        mnas_tensor_shape(sx, shape);
        ck_assert(mnas_tensor_ndim(sx) == 4 && shape[0] == 10 && shape[1] == 1 && shape[2] == 2 && shape[3] == 3);
        ck_assert(mnas_tensor_dim(qx, 0) == 15 && mnas_tensor_ndim(qy) == 2 && mnas_tensor_dim(qy, 1) == 1);
        ck_assert(mnas_tensor_dim(sy, 0) == 10 && mnas_tensor_dim(sy, 1) == 1);
        long label_class[5];
        for (int l = 0; l < 5; l++) label_class[l] = -1;
        int per_label_s[5] = { 0 }, per_label_q[5] = { 0 };
        long imgs[5][5];
        int n_imgs[5] = { 0 };
        int sorted_support = 1;
        for (int set = 0; set < 2; set++) {
            const mnas_tensor *x = set ? qx : sx, *y = set ? qy : sy;
            for (int64_t r = 0; r < mnas_tensor_dim(x, 0); r++) {
                long cls, img;
                float tag;
                row_id(x, r, &cls, &img, &tag);
                float lab = mnas_tensor_cdata(y)[r];
                ck_assert(lab == floorf(lab) && lab >= 0 && lab < 5);
                int l = (int)lab;
                if (label_class[l] < 0) label_class[l] = cls;
                ck_assert_int_eq(label_class[l], cls); /* one class per label */
                if (set) per_label_q[l]++;
                else per_label_s[l]++;
                if (!set && r > 0 && mnas_tensor_cdata(y)[r - 1] > lab) sorted_support = 0;
                for (int k = 0; k < n_imgs[l]; k++) ck_assert_int_ne(imgs[l][k], img); /* distinct images */
                imgs[l][n_imgs[l]++] = img;
            }
        }
        for (int l = 0; l < 5; l++) {
            ck_assert_int_eq(per_label_s[l], 2);
            ck_assert_int_eq(per_label_q[l], 3);
            for (int m = 0; m < l; m++) ck_assert_int_ne(label_class[l], label_class[m]); /* distinct classes */
            class_used[label_class[l]]++;
        }
        (void)sorted_support;
        mnas_task_free(t);
    }
    for (int c = 0; c < 12; c++) ck_assert_int_gt(class_used[c], 0);
    /* a fixed test set: tasks 0..n-1 of its seed */
    mnas_task_set *set = mnas_fewshot_test_set(ctx, s, 99, 7);
    ck_assert_uint_eq(mnas_task_set_size(set), 7);
    mnas_task *t3 = mnas_fewshot_task(ctx, s, 99, 3);
    ck_assert_uint_eq(task_hash(mnas_task_set_get(set, 3)), task_hash(t3));
    mnas_task_free(t3);
    mnas_task_set_free(set);
    ck_assert_ptr_null(mnas_fewshot_test_set(ctx, s, 99, 0));
    mnas_fewshot_sampler_free(s);

    /* not enough classes with shot + query images */
    o.way = 13;
    ck_assert_ptr_null(mnas_fewshot_sampler_create(ctx, list, 1, &o));
    ASSERT_MSG(ctx, "13-way");
    o.way = 5;
    o.query = 50;
    ck_assert_ptr_null(mnas_fewshot_sampler_create(ctx, list, 1, &o));
    ASSERT_MSG(ctx, "0 classes with at least");
    o.query = 0;
    ck_assert_ptr_null(mnas_fewshot_sampler_create(ctx, list, 1, &o));
    ASSERT_MSG(ctx, "query 0");
    ck_assert_ptr_null(mnas_fewshot_sampler_create(ctx, NULL, 1, NULL));
    ck_assert_ptr_null(mnas_fewshot_task(ctx, NULL, 1, 1));
    mnas_fewshot_sampler_free(NULL);
    mnas_image_dataset_free(ds);
    free_ctx_check(ctx, &ca);
}
END_TEST

START_TEST(sampler_mixture)
{
    mnas_ctx *ctx = new_ctx(NULL);
    mnas_image_dataset *a = synthetic(ctx, 6, 5, 0.0f);
    mnas_image_dataset *b = synthetic(ctx, 9, 5, 1.0f);
    const mnas_image_dataset *list[2] = { a, b };
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    o.way = 3;
    o.shot = 1;
    o.query = 2;
    mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, list, 2, &o);
    ck_assert_ptr_nonnull(s);
    int count[2] = { 0, 0 };
    for (uint64_t i = 0; i < 200; i++) {
        mnas_task *t = mnas_fewshot_task(ctx, s, 5, i);
        int fam = mnas_task_family(t);
        ck_assert(fam == 0 || fam == 1);
        count[fam]++;
        for (int64_t r = 0; r < 3; r++) {
            long cls, img;
            float tag;
            row_id(mnas_task_support_x(t), r, &cls, &img, &tag);
            ck_assert_float_eq(tag, (float)fam); /* every row from the task's dataset */
        }
        mnas_task_free(t);
    }
    ck_assert_int_gt(count[0], 70);
    ck_assert_int_gt(count[1], 70);
    mnas_fewshot_sampler_free(s);
    /* shapes must agree */
    size_t counts[5] = { 3, 3, 3, 3, 3 };
    float data[15 * 12] = { 0 };
    mnas_image_dataset *c = mnas_image_dataset_create(ctx, 5, counts, NULL, 1, 3, 4, data);
    const mnas_image_dataset *bad[2] = { a, c };
    ck_assert_ptr_null(mnas_fewshot_sampler_create(ctx, bad, 2, &o));
    ASSERT_MSG(ctx, "datasets[1] has images [1, 3, 4]");
    mnas_image_dataset_free(c);
    mnas_image_dataset_free(a);
    mnas_image_dataset_free(b);
    mnas_ctx_free(ctx);
}
END_TEST

typedef struct thread_job {
    mnas_ctx *ctx;
    const mnas_fewshot_sampler *s;
    uint64_t first;
    uint64_t hash[24];
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    for (uint64_t i = 0; i < 24; i++) {
        uint64_t index = (j->first + i) % 24; /* each thread in another order */
        mnas_task *t = mnas_fewshot_task(j->ctx, j->s, 11, index);
        j->hash[index] = t ? task_hash(t) : 0;
        mnas_task_free(t);
    }
    return NULL;
}

START_TEST(sampler_threads)
{
    mnas_ctx *ctx = new_ctx(NULL);
    mnas_image_dataset *a = synthetic(ctx, 10, 8, 0.0f);
    mnas_image_dataset *b = synthetic(ctx, 7, 8, 1.0f);
    const mnas_image_dataset *list[2] = { a, b };
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    o.way = 4;
    o.shot = 3;
    o.query = 4;
    mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, list, 2, &o);
    uint64_t ref[24];
    for (uint64_t i = 0; i < 24; i++) {
        mnas_task *t = mnas_fewshot_task(ctx, s, 11, i);
        ref[i] = task_hash(t);
        mnas_task_free(t);
    }
    pthread_t th[4];
    thread_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k].ctx = ctx;
        jobs[k].s = s;
        jobs[k].first = (uint64_t)k * 5;
        ck_assert_int_eq(pthread_create(&th[k], NULL, thread_main, &jobs[k]), 0);
    }
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 24; i++) ck_assert_uint_eq(jobs[k].hash[i], ref[i]);
    mnas_fewshot_sampler_free(s);
    mnas_image_dataset_free(a);
    mnas_image_dataset_free(b);
    mnas_ctx_free(ctx);
}
END_TEST

/* A sampler over PNG folders end to end. */
START_TEST(sampler_over_folder)
{
    make_tmp();
    make_three_classes();
    mnas_ctx *ctx = new_ctx(NULL);
    mnas_image_dataset *ds = load(ctx, "ds", NULL);
    const mnas_image_dataset *list[1] = { ds };
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    o.way = 3;
    o.shot = 1;
    o.query = 3;
    mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, list, 1, &o);
    ck_assert_ptr_nonnull(s);
    mnas_task *t = mnas_fewshot_task(ctx, s, 1, 0);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_x(t), 2), 4);
    ck_assert_int_eq(mnas_tensor_dim(mnas_task_support_x(t), 3), 6);
    mnas_task_free(t);
    mnas_fewshot_sampler_free(s);
    mnas_image_dataset_free(ds);
    mnas_ctx_free(ctx);
    remove_tmp();
}
END_TEST


/* --------------------------------------------------------- pixel store */

/* Loaded datasets keep decoded samples and convert an image when it is
 * read; caller pixels and images whose samples outweigh their floats are
 * kept as float (docs/data.md, "Memory"). These tests hold the two paths
 * to each other and to the API's promises: same floats, shared splits,
 * the compact cache. */

/* Every image of a and b equal bit for bit. */
static void same_images(const mnas_image_dataset *a, const mnas_image_dataset *b)
{
    int64_t sa[3], sb[3];
    ck_assert_int_eq(mnas_image_dataset_shape(a, sa), MNAS_OK);
    ck_assert_int_eq(mnas_image_dataset_shape(b, sb), MNAS_OK);
    ck_assert_mem_eq(sa, sb, sizeof sa);
    const size_t per = (size_t)(sa[0] * sa[1] * sa[2]);
    mnas_real *x = malloc(per * sizeof *x), *y = malloc(per * sizeof *y);
    ck_assert(x && y);
    ck_assert_uint_eq(mnas_image_dataset_num_classes(a), mnas_image_dataset_num_classes(b));
    for (size_t c = 0; c < mnas_image_dataset_num_classes(a); c++) {
        ck_assert_uint_eq(mnas_image_dataset_class_size(a, c), mnas_image_dataset_class_size(b, c));
        for (size_t i = 0; i < mnas_image_dataset_class_size(a, c); i++) {
            ck_assert_int_eq(mnas_image_dataset_copy_image(a, c, i, x, per), MNAS_OK);
            ck_assert_int_eq(mnas_image_dataset_copy_image(b, c, i, y, per), MNAS_OK);
            ck_assert_mem_eq(x, y, per * sizeof *x);
        }
    }
    free(x);
    free(y);
}

/* The eager form of ds: every image converted (copy_image) into caller
 * pixels, i.e. a float store, as every dataset was held before. */
static mnas_image_dataset *eager_copy(mnas_ctx *ctx, const mnas_image_dataset *ds)
{
    int64_t sh[3];
    ck_assert_int_eq(mnas_image_dataset_shape(ds, sh), MNAS_OK);
    const size_t per = (size_t)(sh[0] * sh[1] * sh[2]), n = mnas_image_dataset_num_images(ds);
    const size_t nc = mnas_image_dataset_num_classes(ds);
    mnas_real *data = malloc(per * n * sizeof *data);
    size_t *counts = malloc(nc * sizeof *counts);
    const char **names = malloc(nc * sizeof *names);
    ck_assert(data && counts && names);
    size_t k = 0;
    for (size_t c = 0; c < nc; c++) {
        counts[c] = mnas_image_dataset_class_size(ds, c);
        names[c] = mnas_image_dataset_class_name(ds, c);
        for (size_t i = 0; i < counts[c]; i++, k++)
            ck_assert_int_eq(mnas_image_dataset_copy_image(ds, c, i, data + k * per, per), MNAS_OK);
    }
    mnas_image_dataset *e = mnas_image_dataset_create(ctx, nc, counts, names, (int)sh[0], (int)sh[1], (int)sh[2], data);
    ck_assert_msg(e != NULL, "%s", mnas_ctx_last_error(ctx));
    free(data);
    free(counts);
    free(names);
    return e;
}

/* Tasks of a sampler over ds and over its eager copy: identical tensors. */
static void same_tasks(mnas_ctx *ctx, const mnas_image_dataset *ds, const mnas_image_dataset *eager, int way)
{
    mnas_fewshot_options o = MNAS_FEWSHOT_OPTIONS_INIT;
    o.way = way;
    o.shot = 1;
    o.query = 3;
    mnas_fewshot_sampler *a = mnas_fewshot_sampler_create(ctx, &ds, 1, &o);
    mnas_fewshot_sampler *b = mnas_fewshot_sampler_create(ctx, &eager, 1, &o);
    ck_assert_msg(a && b, "%s", mnas_ctx_last_error(ctx));
    for (uint64_t i = 0; i < 8; i++) {
        mnas_task *ta = mnas_fewshot_task(ctx, a, 5, i), *tb = mnas_fewshot_task(ctx, b, 5, i);
        ck_assert(ta && tb);
        const mnas_tensor *xa[2] = { mnas_task_support_x(ta), mnas_task_query_x(ta) };
        const mnas_tensor *xb[2] = { mnas_task_support_x(tb), mnas_task_query_x(tb) };
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(mnas_tensor_size(xa[k]), mnas_tensor_size(xb[k]));
            ck_assert_mem_eq(mnas_tensor_cdata(xa[k]), mnas_tensor_cdata(xb[k]),
                             (size_t)mnas_tensor_size(xa[k]) * sizeof(mnas_real));
        }
        ck_assert_uint_eq(task_hash(ta), task_hash(tb));
        mnas_task_free(ta);
        mnas_task_free(tb);
    }
    mnas_fewshot_sampler_free(a);
    mnas_fewshot_sampler_free(b);
}

/* IDX and PNG datasets, kept as bytes (upscaled, to RGB) and converted at
 * load (shrunk): copy_image, the sampler and a float store all agree, and
 * threads drawing from the byte store get the tasks drawn alone. */
START_TEST(store_tasks_equal_float_store)
{
    make_tmp();
    static unsigned char img[16 + IDX_N * IDX_R * IDX_C], lab[8 + IDX_N];
    write_gz("img.idx.gz", img, make_idx_images(img, IDX_N));
    write_bytes("lab.idx", lab, make_idx_labels(lab, IDX_N));
    make_three_classes();
    counting_alloc ca;
    mnas_ctx *ctx = new_ctx(&ca);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    /* {channels, height, width, resize}: bytes kept, then converted at load */
    const int cfg[4][4] = { { 3, 10, 8, MNAS_RESIZE_AREA },
                            { 1, 7, 3, MNAS_RESIZE_BILINEAR },
                            { 1, 2, 2, MNAS_RESIZE_AREA },
                            { 3, 1, 2, MNAS_RESIZE_BILINEAR } };
    for (int k = 0; k < 4; k++) {
        o.channels = cfg[k][0];
        o.height = cfg[k][1];
        o.width = cfg[k][2];
        o.resize = cfg[k][3];
        mnas_image_dataset *sets[2] = { load_idx(ctx, "img.idx.gz", "lab.idx", &o), load(ctx, "ds", &o) };
        for (int d = 0; d < 2; d++) {
            ck_assert_msg(sets[d] != NULL, "%s", mnas_ctx_last_error(ctx));
            mnas_image_dataset *e = eager_copy(ctx, sets[d]);
            same_images(sets[d], e);
            same_tasks(ctx, sets[d], e, 3);
            mnas_image_dataset_free(e);
        }
        /* threads on the byte store (IDX; 3 classes have >= 4 images) */
        mnas_fewshot_options fo = MNAS_FEWSHOT_OPTIONS_INIT;
        fo.way = 3;
        fo.shot = 1;
        fo.query = 3;
        const mnas_image_dataset *list[2] = { sets[0], sets[1] };
        mnas_fewshot_sampler *s = mnas_fewshot_sampler_create(ctx, list, 1, &fo);
        ck_assert_ptr_nonnull(s);
        uint64_t ref[24];
        for (uint64_t i = 0; i < 24; i++) {
            mnas_task *t = mnas_fewshot_task(ctx, s, 11, i);
            ref[i] = task_hash(t);
            mnas_task_free(t);
        }
        pthread_t th[2];
        thread_job jobs[2];
        for (int t = 0; t < 2; t++) {
            jobs[t].ctx = ctx;
            jobs[t].s = s;
            jobs[t].first = (uint64_t)t * 7;
            ck_assert_int_eq(pthread_create(&th[t], NULL, thread_main, &jobs[t]), 0);
        }
        for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < 24; i++) ck_assert_uint_eq(jobs[t].hash[i], ref[i]);
        mnas_fewshot_sampler_free(s);
        mnas_image_dataset_free(sets[0]);
        mnas_image_dataset_free(sets[1]);
    }
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* Allocator hooks that also keep the bytes live (a size header per block). */
typedef struct byte_alloc {
    long allocs, frees;
    size_t bytes;
} byte_alloc;

#define HEAD 16 /* keeps malloc's alignment */

static void *byte_alloc_fn(void *user, size_t size)
{
    byte_alloc *b = user;
    unsigned char *p = malloc(size + HEAD);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    b->allocs++;
    b->bytes += size;
    return p + HEAD;
}

static void byte_free_fn(void *user, void *q)
{
    byte_alloc *b = user;
    unsigned char *p = (unsigned char *)q - HEAD;
    size_t size;
    memcpy(&size, p, sizeof size);
    b->frees++;
    b->bytes -= size;
    free(p);
}

/* Splits and subsets share the pixels: they allocate a few class tables,
 * not the images; freeing the parent first leaves them valid. */
START_TEST(store_split_shares_pixels)
{
    make_tmp();
    static unsigned char img[16 + IDX_N * IDX_R * IDX_C], lab[8 + IDX_N];
    write_bytes("img.idx", img, make_idx_images(img, IDX_N));
    write_bytes("lab.idx", lab, make_idx_labels(lab, IDX_N));
    byte_alloc ba = { 0, 0, 0 };
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.alloc = byte_alloc_fn;
    co.free = byte_free_fn;
    co.alloc_user = &ba;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.channels = 3;
    o.height = 40;
    o.width = 32;
    const size_t per = 3 * 40 * 32, as_float = IDX_N * per * sizeof(float);
    size_t before = ba.bytes;
    mnas_image_dataset *ds = load_idx(ctx, "img.idx", "lab.idx", &o);
    ck_assert_ptr_nonnull(ds);
    /* the load holds bytes: far less than the floats it stands for */
    ck_assert_msg(ba.bytes - before < as_float / 16, "the load holds %zu bytes (floats: %zu)", ba.bytes - before,
                  as_float);
    mnas_image_dataset *e = eager_copy(ctx, ds);
    mnas_image_split_options so = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
    so.train_fraction = 0.5;
    so.val_fraction = 0.25;
    mnas_image_dataset *tr = NULL, *va = NULL, *te = NULL;
    before = ba.bytes;
    ck_assert_int_eq(mnas_image_dataset_split(ds, &so, &tr, &va, &te), MNAS_OK);
    const size_t pick[2] = { 2, 0 };
    mnas_image_dataset *sub = mnas_image_dataset_subset(ds, pick, 2);
    ck_assert_ptr_nonnull(sub);
    ck_assert_msg(ba.bytes - before < 2048, "split and subset hold %zu bytes", ba.bytes - before);
    /* the same split of the eager copy, for the expected pixels */
    mnas_image_dataset *etr = NULL, *eva = NULL, *ete = NULL;
    ck_assert_int_eq(mnas_image_dataset_split(e, &so, &etr, &eva, &ete), MNAS_OK);
    mnas_image_dataset *esub = mnas_image_dataset_subset(e, pick, 2);
    /* parent first, then a subset of a split, then the rest in another order */
    mnas_image_dataset_free(ds);
    mnas_image_dataset *sub2 = mnas_image_dataset_subset(tr, pick + 1, 1);
    mnas_image_dataset *esub2 = mnas_image_dataset_subset(etr, pick + 1, 1);
    ck_assert(sub2 && esub2);
    same_images(tr, etr);
    same_images(va, eva);
    same_images(te, ete);
    same_images(sub, esub);
    mnas_image_dataset_free(tr);
    same_images(sub2, esub2);
    same_tasks(ctx, sub, esub, 2);
    mnas_image_dataset_free(sub);
    mnas_image_dataset_free(te);
    same_images(va, eva);
    mnas_image_dataset_free(sub2);
    mnas_image_dataset_free(va);
    mnas_image_dataset *eds[6] = { e, etr, eva, ete, esub, esub2 };
    for (int i = 0; i < 6; i++) mnas_image_dataset_free(eds[i]);
    mnas_ctx_free(ctx);
    ck_assert_int_eq(ba.allocs, ba.frees);
    remove_tmp();
}
END_TEST

static void keep_log(void *user, mnas_log_level level, const char *message)
{
    (void)level;
    char *buf = user;
    strncat(buf, message, 4095 - strlen(buf));
    strncat(buf, "\n", 4095 - strlen(buf));
}

static uint64_t read_u64_at(const char *path, long at)
{
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    ck_assert_uint_eq(fread(b, 1, 8, f), 8);
    fclose(f);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void write_u64_at(const char *path, long at, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(b, 1, 8, f), 8);
    fclose(f);
}

/* The cache holds the compact records (version 2): a version-1 file is
 * refused by its version and rewritten; a damaged record table, a file
 * cut anywhere or with a byte more is refused, and the images decoded
 * again are right. */
START_TEST(store_cache_format)
{
    make_tmp();
    make_three_classes();
    char cache[512], log[4096] = "";
    tmp_path(cache, sizeof cache, "cache.bin");
    counting_alloc ca;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.alloc = count_alloc;
    co.free = count_free;
    co.alloc_user = &ca;
    memset(&ca, 0, sizeof ca);
    co.log = keep_log;
    co.log_user = log;
    co.log_level = MNAS_LOG_INFO;
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    /* 3 x 5 grey from 6 x 4 grey: bytes kept; 1 x 1 RGB: floats kept */
    const int hw[2][3] = { { 1, 3, 5 }, { 3, 1, 1 } };
    for (int k = 0; k < 2; k++) {
        o.channels = hw[k][0];
        o.height = hw[k][1];
        o.width = hw[k][2];
        o.cache_path = NULL;
        mnas_image_dataset *ref = load(ctx, "ds", &o);
        ck_assert_ptr_nonnull(ref);
        remove(cache);
        o.cache_path = cache;
        mnas_image_dataset *b = load(ctx, "ds", &o);
        ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
        mnas_image_dataset_free(b);
        ck_assert_uint_eq(read_u64_at(cache, 8), 2); /* the version */
        b = load(ctx, "ds", &o);
        ck_assert_int_eq(mnas_image_dataset_from_cache(b), 1);
        same_images(ref, b);
        mnas_image_dataset_free(b);
        /* header 10 words, classes "Alpha", "beta", "zeta" (2 words + name
         * each), then a word per image (15), the samples, a CRC-32 */
        const long recs = 80 + 16 * 3 + 5 + 4 + 4;
        const size_t n = file_size("cache.bin");
        /* 6 x 4 bytes per image, or 3 floats */
        ck_assert_uint_eq(n, (size_t)recs + 15 * 8 + 15 * (k == 0 ? 24 : 12) + 4);
        const uint64_t word = read_u64_at(cache, recs);
        ck_assert_uint_eq(word & 0xff, k == 0 ? 1 : 3);         /* samples per pixel */
        ck_assert_uint_eq(word >> 8 & 0xff, k == 0 ? 1 : 4);    /* encoding */
        /* version 1: refused by its version, rewritten as 2 */
        write_u64_at(cache, 8, 1);
        log[0] = '\0';
        b = load(ctx, "ds", &o);
        ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
        ck_assert_msg(contains(log, "another cache version"), "log: %s", log);
        same_images(ref, b);
        mnas_image_dataset_free(b);
        ck_assert_uint_eq(read_u64_at(cache, 8), 2);
        /* an encoding that does not exist (3) */
        write_u64_at(cache, recs, (word & ~(uint64_t)0xff00) | (uint64_t)3 << 8);
        log[0] = '\0';
        b = load(ctx, "ds", &o);
        ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
        ck_assert_msg(contains(log, "corrupt image table"), "log: %s", log);
        same_images(ref, b);
        mnas_image_dataset_free(b);
        /* cut in the header, class table, record table, samples, CRC */
        const size_t cuts[6] = { 40, 100, (size_t)recs + 12, (size_t)recs + 15 * 8 + 3, n - 2, n - 4 };
        for (int c = 0; c < 6; c++) {
            b = load(ctx, "ds", &o); /* rewrites a whole cache */
            mnas_image_dataset_free(b);
            ck_assert_uint_eq(file_size("cache.bin"), n);
            truncate_rel("cache.bin", cuts[c]);
            b = load(ctx, "ds", &o);
            ck_assert_ptr_nonnull(b);
            ck_assert_msg(mnas_image_dataset_from_cache(b) == 0, "cut at %zu was read", cuts[c]);
            same_images(ref, b);
            mnas_image_dataset_free(b);
        }
        /* a byte more */
        FILE *f = fopen(cache, "ab");
        fputc(0, f);
        fclose(f);
        log[0] = '\0';
        b = load(ctx, "ds", &o);
        ck_assert_int_eq(mnas_image_dataset_from_cache(b), 0);
        ck_assert_msg(contains(log, "trailing bytes"), "log: %s", log);
        mnas_image_dataset_free(b);
        mnas_image_dataset_free(ref);
    }
    free_ctx_check(ctx, &ca);
    remove_tmp();
}
END_TEST

/* ----------------------------------------------------------- accuracy */

START_TEST(accuracy_values)
{
    mnas_ctx *ctx = new_ctx(NULL);
    const float logits[12] = { 1, 2, 0, /* 1 */ 5, 5, 1, /* 0 (first of ties) */ 0, 0, 3, /* 2 */ 9, 1, 1 /* 0 */ };
    const float labels[4] = { 1, 1, 2, 2 };
    int64_t ls[2] = { 4, 3 }, ys[2] = { 4, 1 };
    mnas_tensor *l = mnas_tensor_from_data(ctx, 2, ls, logits);
    mnas_tensor *y = mnas_tensor_from_data(ctx, 2, ys, labels);
    double acc = -1;
    ck_assert_int_eq(mnas_accuracy(l, y, &acc), MNAS_OK);
    ck_assert_double_eq(acc, 0.5);
    mnas_tensor_data(y)[0] = 3;
    ck_assert_int_eq(mnas_accuracy(l, y, &acc), MNAS_E_INVALID);
    ASSERT_MSG(ctx, "label 3");
    int64_t bs[2] = { 3, 1 };
    mnas_tensor *y3 = mnas_tensor_zeros(ctx, 2, bs);
    ck_assert_int_eq(mnas_accuracy(l, y3, &acc), MNAS_E_SHAPE);
    ck_assert_int_eq(mnas_accuracy(l, NULL, &acc), MNAS_E_INVALID);
    mnas_tensor_free(l);
    mnas_tensor_free(y);
    mnas_tensor_free(y3);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- throughput (report) */

START_TEST(throughput_report)
{
    /* Not a pass/fail test: prints decode rates when MNAS_TEST_THROUGHPUT is set. */
    if (!getenv("MNAS_TEST_THROUGHPUT")) return;
    make_tmp();
    mkdir_rel("tp");
    const int classes = 20, per = 50;
    for (int c = 0; c < classes; c++) {
        char rel[64];
        snprintf(rel, sizeof rel, "tp/c%02d", c);
        mkdir_rel(rel);
        for (int i = 0; i < per; i++) {
            snprintf(rel, sizeof rel, "tp/c%02d/%03d.png", c, i);
            uint16_t px[84 * 84 * 3];
            for (int k = 0; k < 84 * 84 * 3; k++) px[k] = (uint16_t)((k * 31 + i * 7 + c) & 255);
            png_spec spec = { 84, 84, PNG_COLOR_TYPE_RGB, 8, px, NULL, 0, NULL, 0 };
            write_png(rel, &spec);
        }
    }
    mnas_ctx *ctx = new_ctx(NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mnas_image_dataset *ds = load(ctx, "tp", NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("PNG 84x84 RGB: %d images in %.3f s = %.0f images/s\n", classes * per, sec, classes * per / sec);
    mnas_image_dataset_free(ds);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    o.height = o.width = 28;
    o.channels = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ds = load(ctx, "tp", &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("PNG 84x84 RGB -> 28x28 grey (area): %.0f images/s\n", classes * per / sec);
    mnas_image_dataset_free(ds);
    mnas_ctx_free(ctx);
    remove_tmp();
}
END_TEST

static Suite *images_suite(void)
{
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("png");
    tcase_add_loop_test(tc, png_every_colour_type_and_depth, 0, N_CASES);
    tcase_add_test(tc, png_interlaced);
    tcase_add_test(tc, folder_order_and_accessors);
    tcase_add_test(tc, folder_errors);
    tcase_add_test(tc, resize_area_and_bilinear);
    suite_add_tcase(s, tc);
    tc = tcase_create("idx");
    tcase_add_test(tc, idx_plain_and_gzip);
    tcase_add_test(tc, idx_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("cache");
    tcase_add_test(tc, cache_hit_stale_and_corrupt);
    suite_add_tcase(s, tc);
    tc = tcase_create("split");
    tcase_add_test(tc, split_by_fraction);
    tcase_add_test(tc, split_by_lists);
    tcase_add_test(tc, create_and_subset);
    suite_add_tcase(s, tc);
    tc = tcase_create("sampler");
    tcase_add_test(tc, sampler_tasks);
    tcase_add_test(tc, sampler_mixture);
    tcase_add_test(tc, sampler_threads);
    tcase_add_test(tc, sampler_over_folder);
    tcase_add_test(tc, accuracy_values);
    tcase_add_test(tc, throughput_report);
    suite_add_tcase(s, tc);
    tc = tcase_create("store");
    tcase_add_test(tc, store_tasks_equal_float_store);
    tcase_add_test(tc, store_split_shares_pixels);
    tcase_add_test(tc, store_cache_format);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(images_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
