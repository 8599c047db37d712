/* Unit tests of the PNG figures (io layer): where lines and points land,
 * clipping to the panel, NaN breaking lines, texts and legends, the font,
 * bad arguments, allocation failures, and the PNG file itself, read back by
 * a small decoder of our own (chunks and CRCs, zlib/inflate, row filters),
 * since the tests link only libmnas. */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mnas/mnas.h>

/* ------------------------------------------------------------ helpers */

static mnas_ctx *new_ctx(void)
{
    mnas_ctx *ctx = NULL;
    ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    return ctx;
}

/* Per-pixel checks call into Check only when they fail: every ck_assert
 * costs a message through Check's pipe, which is slow under valgrind. */
#define CHECK_FAST(cond, ...)                   \
    do {                                        \
        if (!(cond)) ck_abort_msg(__VA_ARGS__); \
    } while (0)

static uint32_t pixel(const mnas_figure *f, int x, int y)
{
    const uint8_t *rgb = NULL;
    int w = 0, h = 0;
    mnas_status st = mnas_figure_pixels(f, &rgb, &w, &h);
    CHECK_FAST(st == MNAS_OK && x >= 0 && x < w && y >= 0 && y < h, "pixel (%d, %d) is not in the figure", x, y);
    const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3u;
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

static int is_gray(uint32_t c) { return ((c >> 16) & 0xFF) == ((c >> 8) & 0xFF) && ((c >> 8) & 0xFF) == (c & 0xFF); }
/* Every channel below half: frame, ticks and text (colours like 0x00AA00 are not). */
static int is_dark(uint32_t c) { return ((c >> 16) & 0xFF) < 0x80 && ((c >> 8) & 0xFF) < 0x80 && (c & 0xFF) < 0x80; }
/* A pixel tinted towards pure red (what a red line blended on gray gives). */
static int is_reddish(uint32_t c) { return ((c >> 16) & 0xFF) > ((c >> 8) & 0xFF) + 8; }

static void to_pixel(const mnas_figure *f, int panel, double x, double y, int *px, int *py)
{
    double fx, fy;
    ck_assert_int_eq(mnas_figure_data_to_pixel(f, panel, x, y, &fx, &fy), MNAS_OK);
    *px = (int)lround(fx);
    *py = (int)lround(fy);
}

typedef struct area {
    int x0, y0, x1, y1;
} area;

static area plot_area(const mnas_figure *f, int panel)
{
    area a;
    ck_assert_int_eq(mnas_figure_plot_area(f, panel, &a.x0, &a.y0, &a.x1, &a.y1), MNAS_OK);
    return a;
}

static void assert_msg(mnas_ctx *ctx, const char *needle)
{
    const char *m = mnas_ctx_last_error(ctx);
    ck_assert_msg(strstr(m, needle) != NULL, "message '%s' lacks '%s'", m, needle);
}

static uint8_t *snapshot(const mnas_figure *f, size_t *bytes)
{
    const uint8_t *rgb;
    int w, h;
    ck_assert_int_eq(mnas_figure_pixels(f, &rgb, &w, &h), MNAS_OK);
    *bytes = (size_t)w * (size_t)h * 3u;
    uint8_t *copy = malloc(*bytes);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, rgb, *bytes);
    return copy;
}

static int same_pixels(const mnas_figure *f, const uint8_t *snap, size_t bytes)
{
    const uint8_t *rgb;
    ck_assert_int_eq(mnas_figure_pixels(f, &rgb, NULL, NULL), MNAS_OK);
    return memcmp(rgb, snap, bytes) == 0;
}

/* A fresh directory for files; removed by the tests that make it. */
static char *temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *d = malloc(strlen(base) + 32);
    ck_assert_ptr_nonnull(d);
    sprintf(d, "%s/mnas_plot_XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static char *join(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    ck_assert_ptr_nonnull(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* -------------------------------------------------- a tiny PNG reader */

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t adler32_of(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

typedef struct bitin {
    const uint8_t *p;
    size_t n, pos;
    uint32_t buf;
    int cnt;
    int err;
} bitin;

static unsigned getbits(bitin *b, int need)
{
    uint32_t v = b->buf;
    while (b->cnt < need) {
        if (b->pos >= b->n) {
            b->err = 1;
            return 0;
        }
        v |= (uint32_t)b->p[b->pos++] << b->cnt;
        b->cnt += 8;
    }
    b->buf = need == 32 ? 0 : v >> need;
    b->cnt -= need;
    return v & ((1u << need) - 1u);
}

/* Canonical Huffman code: how many codes of each length, symbols by code. */
typedef struct huff {
    short count[16];
    short sym[320];
} huff;

static int huff_build(huff *h, const uint8_t *len, int n)
{
    short offs[16];
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++) h->count[len[i]]++;
    int left = 1;
    for (int l = 1; l < 16; l++) {
        left = left * 2 - h->count[l];
        if (left < 0) return -1; /* over-subscribed */
    }
    offs[1] = 0;
    for (int l = 1; l < 15; l++) offs[l + 1] = (short)(offs[l] + h->count[l]);
    for (int i = 0; i < n; i++)
        if (len[i]) h->sym[offs[len[i]]++] = (short)i;
    return 0;
}

static int huff_decode(bitin *b, const huff *h)
{
    int code = 0, first = 0, index = 0;
    for (int l = 1; l < 16; l++) {
        code |= (int)getbits(b, 1);
        if (b->err) return -1;
        int c = h->count[l];
        if (code - first < c) return h->sym[index + code - first];
        index += c;
        first = (first + c) << 1;
        code <<= 1;
    }
    return -1;
}

static const short len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27,
                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const short len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                    2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const short dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
                                    6145, 8193, 12289, 16385, 24577};
static const short dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6,
                                     6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Raw DEFLATE (RFC 1951) into out; the decompressed size, or -1. */
static long inflate_raw(bitin *b, uint8_t *out, size_t cap)
{
    size_t o = 0;
    unsigned last;
    do {
        last = getbits(b, 1);
        unsigned type = getbits(b, 2);
        if (b->err) return -1;
        if (type == 0) {
            b->buf = 0; /* the rest of the current byte */
            b->cnt = 0;
            if (b->pos + 4 > b->n) return -1;
            unsigned len = b->p[b->pos] | (unsigned)b->p[b->pos + 1] << 8;
            unsigned nlen = b->p[b->pos + 2] | (unsigned)b->p[b->pos + 3] << 8;
            b->pos += 4;
            if ((len ^ 0xFFFFu) != nlen || b->pos + len > b->n || o + len > cap) return -1;
            memcpy(out + o, b->p + b->pos, len);
            b->pos += len;
            o += len;
            continue;
        }
        if (type == 3) return -1;
        huff lit, dist;
        uint8_t lens[320];
        if (type == 1) {
            int i = 0;
            for (; i < 144; i++) lens[i] = 8;
            for (; i < 256; i++) lens[i] = 9;
            for (; i < 280; i++) lens[i] = 7;
            for (; i < 288; i++) lens[i] = 8;
            huff_build(&lit, lens, 288);
            for (i = 0; i < 30; i++) lens[i] = 5;
            huff_build(&dist, lens, 30);
        } else {
            static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
            int hlit = (int)getbits(b, 5) + 257, hdist = (int)getbits(b, 5) + 1, hclen = (int)getbits(b, 4) + 4;
            if (b->err || hlit > 286 || hdist > 30) return -1;
            uint8_t cl[19] = {0};
            for (int i = 0; i < hclen; i++) cl[order[i]] = (uint8_t)getbits(b, 3);
            huff clh;
            if (huff_build(&clh, cl, 19) < 0) return -1;
            int i = 0;
            while (i < hlit + hdist) {
                int s = huff_decode(b, &clh);
                if (s < 0) return -1;
                if (s < 16) {
                    lens[i++] = (uint8_t)s;
                    continue;
                }
                int rep, val = 0;
                if (s == 16) {
                    if (i == 0) return -1;
                    val = lens[i - 1];
                    rep = 3 + (int)getbits(b, 2);
                } else if (s == 17) {
                    rep = 3 + (int)getbits(b, 3);
                } else {
                    rep = 11 + (int)getbits(b, 7);
                }
                if (b->err || i + rep > hlit + hdist) return -1;
                while (rep--) lens[i++] = (uint8_t)val;
            }
            if (lens[256] == 0) return -1; /* no end-of-block code */
            if (huff_build(&lit, lens, hlit) < 0 || huff_build(&dist, lens + hlit, hdist) < 0) return -1;
        }
        for (;;) {
            int s = huff_decode(b, &lit);
            if (s < 0) return -1;
            if (s < 256) {
                if (o >= cap) return -1;
                out[o++] = (uint8_t)s;
            } else if (s == 256) {
                break;
            } else {
                s -= 257;
                if (s >= 29) return -1;
                size_t len = (size_t)len_base[s] + getbits(b, len_extra[s]);
                int ds = huff_decode(b, &dist);
                if (ds < 0 || ds >= 30) return -1;
                size_t d = (size_t)dist_base[ds] + getbits(b, dist_extra[ds]);
                if (b->err || d > o || o + len > cap) return -1;
                for (size_t k = 0; k < len; k++, o++) out[o] = out[o - d];
            }
        }
    } while (!last);
    return (long)o;
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/* Read an 8-bit RGB PNG, checking everything on the way; returns the pixels
 * (malloc'd) and their size. */
static uint8_t *read_png(const char *path, int *w_out, int *h_out)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    ck_assert(size > 8);
    rewind(fp);
    uint8_t *file = malloc((size_t)size);
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(fread(file, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);

    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    ck_assert_msg(memcmp(file, sig, 8) == 0, "bad PNG signature");
    size_t pos = 8, idat_len = 0;
    uint8_t *idat = malloc((size_t)size);
    ck_assert_ptr_nonnull(idat);
    int w = 0, h = 0, nchunks = 0, seen_end = 0;
    while (pos < (size_t)size) {
        ck_assert_msg(!seen_end, "data after IEND");
        ck_assert(pos + 12 <= (size_t)size);
        uint32_t len = be32(file + pos);
        ck_assert(len <= (size_t)size - pos - 12);
        const uint8_t *type = file + pos + 4, *data = file + pos + 8;
        uint32_t crc = be32(data + len);
        ck_assert_msg(crc == crc32_of(type, len + 4u), "bad CRC on chunk %.4s", (const char *)type);
        if (nchunks == 0) ck_assert_msg(memcmp(type, "IHDR", 4) == 0, "first chunk is not IHDR");
        if (memcmp(type, "IHDR", 4) == 0) {
            ck_assert_uint_eq(len, 13);
            w = (int)be32(data);
            h = (int)be32(data + 4);
            ck_assert_int_eq(data[8], 8);  /* bit depth */
            ck_assert_int_eq(data[9], 2);  /* colour type: RGB */
            ck_assert_int_eq(data[10], 0); /* deflate */
            ck_assert_int_eq(data[11], 0); /* adaptive filtering */
            ck_assert_int_eq(data[12], 0); /* not interlaced */
        } else if (memcmp(type, "IDAT", 4) == 0) {
            memcpy(idat + idat_len, data, len);
            idat_len += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ck_assert_uint_eq(len, 0);
            seen_end = 1;
        } else {
            ck_assert_msg(type[0] & 0x20, "unknown critical chunk %.4s", (const char *)type);
        }
        pos += 12u + len;
        nchunks++;
    }
    ck_assert_msg(seen_end, "no IEND chunk");
    ck_assert(w > 0 && h > 0 && idat_len > 6);

    /* zlib stream: header, deflate data, Adler-32 of the raw bytes */
    ck_assert_int_eq(idat[0] & 0x0F, 8);
    ck_assert_int_eq((idat[0] * 256 + idat[1]) % 31, 0);
    ck_assert_int_eq(idat[1] & 0x20, 0);
    size_t stride = (size_t)w * 3u, raw_len = (size_t)h * (stride + 1u);
    uint8_t *raw = malloc(raw_len);
    ck_assert_ptr_nonnull(raw);
    bitin b = {idat + 2, idat_len - 6, 0, 0, 0, 0};
    long got = inflate_raw(&b, raw, raw_len);
    ck_assert_msg(got == (long)raw_len, "inflate gave %ld bytes, expected %zu", got, raw_len);
    ck_assert_uint_eq(be32(idat + idat_len - 4), adler32_of(raw, raw_len));

    uint8_t *rgb = malloc((size_t)h * stride);
    ck_assert_ptr_nonnull(rgb);
    for (int y = 0; y < h; y++) {
        const uint8_t *in = raw + (size_t)y * (stride + 1u);
        uint8_t *row = rgb + (size_t)y * stride;
        const uint8_t *up = y ? row - stride : NULL;
        int filter = in[0];
        ck_assert_msg(filter <= 4, "bad filter %d on row %d", filter, y);
        for (size_t i = 0; i < stride; i++) {
            int a = i >= 3 ? row[i - 3] : 0, u = up ? up[i] : 0, c = (up && i >= 3) ? up[i - 3] : 0;
            int pred = 0;
            switch (filter) {
            case 1: pred = a; break;
            case 2: pred = u; break;
            case 3: pred = (a + u) / 2; break;
            case 4: pred = paeth(a, u, c); break;
            default: pred = 0; break;
            }
            row[i] = (uint8_t)(in[1 + i] + pred);
        }
    }
    free(raw);
    free(idat);
    free(file);
    *w_out = w;
    *h_out = h;
    return rgb;
}

/* ------------------------------------------------------------- tests */

START_TEST(create_bad_sizes)
{
    mnas_ctx *ctx = new_ctx();
    struct {
        int w, h, r, c;
        const char *needle;
    } bad[] = {
        {63, 100, 1, 1, "width and height"},   {100, 63, 1, 1, "width and height"},
        {8193, 100, 1, 1, "width and height"}, {100, 8193, 1, 1, "width and height"},
        {-5, 100, 1, 1, "width and height"},   {100, 100, 0, 1, "rows and cols"},
        {100, 100, 1, 0, "rows and cols"},     {100, 100, 9, 1, "rows and cols"},
        {100, 100, 1, 9, "rows and cols"},     {100, 100, -1, 2, "rows and cols"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_ptr_null(mnas_figure_create(ctx, bad[i].w, bad[i].h, bad[i].r, bad[i].c));
        assert_msg(ctx, "invalid argument");
        assert_msg(ctx, bad[i].needle);
    }
    ck_assert_ptr_null(mnas_figure_create(NULL, 100, 100, 1, 1));
    /* the limits themselves are fine */
    mnas_figure *f = mnas_figure_create(ctx, 64, 64, 8, 8);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(mnas_figure_panels(f), 64);
    mnas_figure_free(f);
    f = mnas_figure_create(ctx, 8192, 64, 1, 1);
    ck_assert_ptr_nonnull(f);
    mnas_figure_free(f);
    mnas_figure_free(NULL);
    ck_assert_int_eq(mnas_figure_panels(NULL), -1);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(blank_figure_is_white_with_frames)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 320, 240, 2, 2);
    ck_assert_ptr_nonnull(f);
    const uint8_t *rgb;
    int w, h;
    ck_assert_int_eq(mnas_figure_pixels(f, &rgb, &w, &h), MNAS_OK);
    ck_assert_int_eq(w, 320);
    ck_assert_int_eq(h, 240);
    for (int p = 0; p < 4; p++) {
        area a = plot_area(f, p);
        /* each frame lies inside its quarter of the figure */
        ck_assert(a.x0 >= (p % 2) * 160 && a.x1 < (p % 2 + 1) * 160);
        ck_assert(a.y0 >= (p / 2) * 120 && a.y1 < (p / 2 + 1) * 120);
        ck_assert(a.x1 - a.x0 > 24 && a.y1 - a.y0 > 24);
        /* frame pixels are dark, the figure is gray-scale only */
        ck_assert(is_dark(pixel(f, (a.x0 + a.x1) / 2, a.y0)));
        ck_assert(is_dark(pixel(f, a.x0, (a.y0 + a.y1) / 2)));
    }
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        CHECK_FAST(rgb[3 * i] == rgb[3 * i + 1] && rgb[3 * i + 1] == rgb[3 * i + 2], "pixel %zu is coloured", i);
    ck_assert_uint_eq(pixel(f, 0, 0), 0xFFFFFFu);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(mapping_matches_frame)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 240, 200, 1, 1);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, -5, 5, -2, 6), MNAS_OK);
    area a = plot_area(f, 0);
    double px, py;
    ck_assert_int_eq(mnas_figure_data_to_pixel(f, 0, -5, 6, &px, &py), MNAS_OK);
    ck_assert_double_eq_tol(px, a.x0, 1e-9);
    ck_assert_double_eq_tol(py, a.y0, 1e-9);
    ck_assert_int_eq(mnas_figure_data_to_pixel(f, 0, 5, -2, &px, &py), MNAS_OK);
    ck_assert_double_eq_tol(px, a.x1, 1e-9);
    ck_assert_double_eq_tol(py, a.y1, 1e-9);
    ck_assert_int_eq(mnas_figure_data_to_pixel(f, 0, 0, 2, &px, &py), MNAS_OK);
    ck_assert_double_eq_tol(px, (a.x0 + a.x1) / 2.0, 1e-9);
    ck_assert_double_eq_tol(py, (a.y0 + a.y1) / 2.0, 1e-9);
    double r[4];
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert(r[0] == -5 && r[1] == 5 && r[2] == -2 && r[3] == 6);

    /* tick marks hang below the frame at round, evenly spaced x values */
    double ticks[32];
    int nt = 0;
    for (int x = a.x0; x <= a.x1 && nt < 32; x++)
        if (is_dark(pixel(f, x, a.y1 + 2))) {
            ticks[nt++] = -5 + (x - a.x0) * 10.0 / (a.x1 - a.x0);
            while (x < a.x1 && is_dark(pixel(f, x + 1, a.y1 + 2))) x++;
        }
    ck_assert_int_ge(nt, 3);
    double step = ticks[1] - ticks[0], tol = 1.0 * 10.0 / (a.x1 - a.x0);
    for (int i = 0; i < nt; i++) {
        ck_assert_double_eq_tol(ticks[i], round(ticks[i]), tol);
        if (i) ck_assert_double_eq_tol(ticks[i] - ticks[i - 1], step, 2 * tol);
    }
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(line_colour_along_path)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 240, 200, 1, 1);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 10, 0, 10), MNAS_OK);
    const uint32_t red = 0xFF0000u, blue = 0x0000FFu;
    double x[2] = {1, 9}, y[2] = {1, 9};
    ck_assert_int_eq(mnas_figure_line(f, 0, x, y, 2, red, 3.0, NULL), MNAS_OK);
    double hx[3] = {0.5, 5, 9.5}, hy[3] = {8, 8, 8};
    ck_assert_int_eq(mnas_figure_line(f, 0, hx, hy, 3, blue, 3.0, NULL), MNAS_OK);

    for (int k = 1; k < 20; k++) {
        double t = 1 + 8.0 * k / 20.0;
        if (fabs(t - 8) < 1) continue; /* the blue line crosses there */
        int px, py;
        to_pixel(f, 0, t, t, &px, &py);
        ck_assert_msg(pixel(f, px, py) == red, "pixel (%d,%d) on the red line is %06x", px, py,
                      (unsigned)pixel(f, px, py));
        /* about 7 pixels across the line (it rises to the right on screen,
         * so (+1, +1) is across it): untouched by a 3-pixel line */
        ck_assert(!is_reddish(pixel(f, px + 5, py + 5)));
        ck_assert(!is_reddish(pixel(f, px - 5, py - 5)));
    }
    for (double t = 0.6; t < 9.5; t += 0.45) {
        int px, py;
        if (fabs(t - 8) < 1) continue;
        to_pixel(f, 0, t, 8, &px, &py);
        ck_assert_uint_eq(pixel(f, px, py), blue);
        ck_assert(is_gray(pixel(f, px, py - 4)));
        ck_assert(is_gray(pixel(f, px, py + 4)));
    }

    /* the amount of red is the length of the line times its width */
    area a = plot_area(f, 0);
    int x0, y0, x1, y1;
    to_pixel(f, 0, 1, 1, &x0, &y0);
    to_pixel(f, 0, 9, 9, &x1, &y1);
    double len = hypot(x1 - x0, y1 - y0);
    long red_px = 0;
    for (int yy = a.y0; yy <= a.y1; yy++)
        for (int xx = a.x0; xx <= a.x1; xx++) {
            uint32_t c = pixel(f, xx, yy);
            red_px += c == red;
        }
    ck_assert_msg(red_px > (long)(len * 2.0 * 0.8) && red_px < (long)((len + 4) * 5.0), "%ld red pixels for length %.1f",
                  red_px, len);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(lines_and_points_clipped_to_panel)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 320, 260, 2, 2);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 1, 0, 1), MNAS_OK);
    double x[3] = {-100, 0.5, 100}, y[3] = {-300, 0.5, 300};
    ck_assert_int_eq(mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, 6.0, NULL), MNAS_OK);
    double bx[2] = {-1e6, 1e6}, by[2] = {0.9, 0.9}; /* far beyond both sides */
    ck_assert_int_eq(mnas_figure_line(f, 0, bx, by, 2, 0xFF0000u, 6.0, NULL), MNAS_OK);
    double px[3] = {0.99, 0.0, 2.0}, py[3] = {0.5, 0.0, 2.0};
    ck_assert_int_eq(mnas_figure_points(f, 0, px, py, 3, 0xFF0000u, 12.0, NULL), MNAS_OK);

    area a = plot_area(f, 0);
    const uint8_t *rgb;
    int w, h;
    ck_assert_int_eq(mnas_figure_pixels(f, &rgb, &w, &h), MNAS_OK);
    long inside = 0;
    for (int yy = 0; yy < h; yy++)
        for (int xx = 0; xx < w; xx++) {
            uint32_t c = pixel(f, xx, yy);
            int in = xx > a.x0 && xx < a.x1 && yy > a.y0 && yy < a.y1;
            if (in)
                inside += c == 0xFF0000u;
            else
                CHECK_FAST(is_gray(c), "pixel (%d,%d) outside the plot area is %06x", xx, yy, (unsigned)c);
        }
    ck_assert_int_gt(inside, 100);
    /* the horizontal line reaches both sides of the frame */
    int lx, ly;
    to_pixel(f, 0, 0.5, 0.9, &lx, &ly);
    ck_assert_uint_eq(pixel(f, a.x0 + 1, ly), 0xFF0000u);
    ck_assert_uint_eq(pixel(f, a.x1 - 1, ly), 0xFF0000u);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(points_at_their_pixels)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 240, 200, 1, 1);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 10, 0, 10), MNAS_OK);
    const uint32_t green = 0x00AA00u;
    double x[3] = {2, 7, 5}, y[3] = {3, 8, 5};
    ck_assert_int_eq(mnas_figure_points(f, 0, x, y, 3, green, 3.0, NULL), MNAS_OK);
    for (int i = 0; i < 3; i++) {
        double fx, fy;
        ck_assert_int_eq(mnas_figure_data_to_pixel(f, 0, x[i], y[i], &fx, &fy), MNAS_OK);
        int cx = (int)lround(fx), cy = (int)lround(fy);
        ck_assert_uint_eq(pixel(f, cx, cy), green);
        ck_assert_uint_eq(pixel(f, cx + 1, cy), green);
        ck_assert_uint_eq(pixel(f, cx, cy - 1), green);
        ck_assert_uint_eq(pixel(f, cx - 1, cy + 1), green);
        ck_assert(is_gray(pixel(f, cx + 5, cy)));
        ck_assert(is_gray(pixel(f, cx, cy + 5)));
        ck_assert(is_gray(pixel(f, cx + 4, cy + 4)));
        long n = 0;
        for (int dy = -6; dy <= 6; dy++)
            for (int dx = -6; dx <= 6; dx++) n += !is_gray(pixel(f, cx + dx, cy + dy));
        /* a disc of radius 3 plus its anti-aliased rim */
        ck_assert_msg(n >= 25 && n <= 52, "%ld tinted pixels around point %d", n, i);
    }
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(nan_breaks_the_line)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 240, 200, 1, 1);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 10, 0, 10), MNAS_OK);
    double x[5] = {1, 3, 5, 7, 9}, y[5] = {5, 5, NAN, 5, 5};
    ck_assert_int_eq(mnas_figure_line(f, 0, x, y, 5, 0xFF0000u, 3.0, NULL), MNAS_OK);
    double x2[5] = {1, 3, INFINITY, 7, 9}, y2[5] = {2, 2, 2, 2, 2};
    ck_assert_int_eq(mnas_figure_line(f, 0, x2, y2, 5, 0xFF0000u, 3.0, NULL), MNAS_OK);
    double levels[2] = {5, 2};
    for (int l = 0; l < 2; l++) {
        int px, py;
        to_pixel(f, 0, 2, levels[l], &px, &py);
        ck_assert_uint_eq(pixel(f, px, py), 0xFF0000u);
        to_pixel(f, 0, 8, levels[l], &px, &py);
        ck_assert_uint_eq(pixel(f, px, py), 0xFF0000u);
        for (double t = 3.6; t <= 6.4; t += 0.2) {
            to_pixel(f, 0, t, levels[l], &px, &py);
            ck_assert_msg(is_gray(pixel(f, px, py)), "segment next to the NaN drawn at x=%g", t);
        }
    }
    /* all non-finite, huge values, a single point: no crash, nothing drawn */
    size_t before;
    uint8_t *snap = snapshot(f, &before);
    double nx[3] = {NAN, NAN, INFINITY}, ny[3] = {NAN, -INFINITY, 1};
    ck_assert_int_eq(mnas_figure_line(f, 0, nx, ny, 3, 0x00FF00u, 2.0, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_figure_points(f, 0, nx, ny, 3, 0x00FF00u, 2.0, NULL), MNAS_OK);
    double one = 5;
    ck_assert_int_eq(mnas_figure_line(f, 0, &one, &one, 1, 0x00FF00u, 2.0, NULL), MNAS_OK);
    ck_assert(same_pixels(f, snap, before));
    free(snap);
    double hx[3] = {1, 2, 3}, hy[3] = {DBL_MAX, 1e200, -DBL_MAX};
    ck_assert_int_eq(mnas_figure_line(f, 0, hx, hy, 3, 0x00FF00u, 2.0, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_figure_points(f, 0, hx, hy, 3, 0x00FF00u, 2.0, NULL), MNAS_OK);

    /* automatic ranges ignore what they cannot show */
    mnas_figure *g = mnas_figure_create(ctx, 200, 160, 1, 1);
    double gx[4] = {0, NAN, 10, 5}, gy[4] = {-2, 100, 2, INFINITY};
    ck_assert_int_eq(mnas_figure_line(g, 0, gx, gy, 4, 0xFF0000u, 2.0, NULL), MNAS_OK);
    double r[4];
    ck_assert_int_eq(mnas_figure_panel_get_range(g, 0, r), MNAS_OK);
    ck_assert_double_eq_tol(r[0], -0.5, 1e-12);
    ck_assert_double_eq_tol(r[1], 10.5, 1e-12);
    /* y = 100 has x = NaN but still counts for y (the x axis is not fixed) */
    ck_assert_double_eq_tol(r[2], -2 - 5.1, 1e-12);
    ck_assert_double_eq_tol(r[3], 100 + 5.1, 1e-12);
    mnas_figure_free(g);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(auto_and_fixed_ranges)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 200, 160, 1, 1);
    double r[4];
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert(r[0] == 0 && r[1] == 1 && r[2] == 0 && r[3] == 1); /* no data */
    double x[11], y[11];
    for (int i = 0; i <= 10; i++) {
        x[i] = i;
        y[i] = 2.0 * i;
    }
    ck_assert_int_eq(mnas_figure_line(f, 0, x, y, 11, 0x0000FFu, 1.0, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert_double_eq_tol(r[0], -0.5, 1e-12);
    ck_assert_double_eq_tol(r[1], 10.5, 1e-12);
    ck_assert_double_eq_tol(r[2], -1.0, 1e-12);
    ck_assert_double_eq_tol(r[3], 21.0, 1e-12);
    /* fixed x, automatic y: only points inside the x range count */
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 5, NAN, NAN), MNAS_OK);
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert(r[0] == 0 && r[1] == 5);
    ck_assert_double_eq_tol(r[2], -0.5, 1e-12);
    ck_assert_double_eq_tol(r[3], 10.5, 1e-12);
    /* back to automatic */
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, NAN, NAN, NAN, NAN), MNAS_OK);
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert_double_eq_tol(r[1], 10.5, 1e-12);
    /* constant data gets a non-empty range around it */
    ck_assert_int_eq(mnas_figure_panel_clear(f, 0), MNAS_OK);
    double c[2] = {3, 3};
    ck_assert_int_eq(mnas_figure_points(f, 0, c, c, 2, 0x0000FFu, 2.0, NULL), MNAS_OK);
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 0, r), MNAS_OK);
    ck_assert(r[0] < 3 && r[1] > 3 && r[2] < 3 && r[3] > 3);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(bad_arguments_change_nothing)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 200, 160, 2, 2);
    double x[3] = {0, 1, 2}, y[3] = {1, 0, 1}, r[4];
    ck_assert_int_eq(mnas_figure_line(f, 1, x, y, 3, 0x123456u, 2.0, "kept"), MNAS_OK);
    size_t bytes;
    uint8_t *snap = snapshot(f, &bytes);
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 1, r), MNAS_OK);
    double before[4] = {r[0], r[1], r[2], r[3]};

#define BAD(call, needle)                                                                 \
    do {                                                                                  \
        mnas_ctx_clear_error(ctx);                                                        \
        ck_assert_int_eq((call), MNAS_E_INVALID);                                         \
        assert_msg(ctx, needle);                                                          \
        ck_assert_msg(same_pixels(f, snap, bytes), "%s changed the figure", #call);       \
    } while (0)

    BAD(mnas_figure_line(f, 4, x, y, 3, 0xFF0000u, 2.0, NULL), "panel 4");
    BAD(mnas_figure_line(f, -1, x, y, 3, 0xFF0000u, 2.0, NULL), "panel -1");
    BAD(mnas_figure_line(f, 0, NULL, y, 3, 0xFF0000u, 2.0, NULL), "x is NULL");
    BAD(mnas_figure_line(f, 0, x, NULL, 3, 0xFF0000u, 2.0, NULL), "y is NULL");
    BAD(mnas_figure_line(f, 0, x, y, 0, 0xFF0000u, 2.0, NULL), "n is 0");
    BAD(mnas_figure_line(f, 0, x, y, 3, 0x1000000u, 2.0, NULL), "colour");
    BAD(mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, 0.0, NULL), "width_px");
    BAD(mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, NAN, NULL), "width_px");
    BAD(mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, 65.0, NULL), "width_px");
    BAD(mnas_figure_points(f, 0, x, y, 3, 0xFF0000u, -1.0, NULL), "radius_px");
    BAD(mnas_figure_points(f, 9, x, y, 3, 0xFF0000u, 1.0, NULL), "panel 9");
    BAD(mnas_figure_points(f, 0, x, y, 0, 0xFF0000u, 1.0, NULL), "n is 0");
    BAD(mnas_figure_panel_range(f, 1, 1, 1, 0, 1), "x range");
    BAD(mnas_figure_panel_range(f, 1, 2, 1, 0, 1), "x range");
    BAD(mnas_figure_panel_range(f, 1, 0, 1, 0, INFINITY), "y range");
    BAD(mnas_figure_panel_range(f, 1, 0, 1, NAN, 1), "y range");
    BAD(mnas_figure_panel_range(f, 1, -DBL_MAX, DBL_MAX, 0, 1), "finite span");
    BAD(mnas_figure_panel_range(f, 7, 0, 1, 0, 1), "panel 7");
    BAD(mnas_figure_title(f, 4, "t"), "panel 4");
    BAD(mnas_figure_axis_labels(f, -2, "x", "y"), "panel -2");
    BAD(mnas_figure_legend(f, 1, 6), "position 6");
    BAD(mnas_figure_legend(f, 1, -1), "position -1");
    BAD(mnas_figure_text_scale(f, 5), "scale 5");
    BAD(mnas_figure_panel_clear(f, 4), "panel 4");
    BAD(mnas_figure_panel_get_range(f, 1, NULL), "range is NULL");
    BAD(mnas_figure_panel_get_range(f, 4, r), "panel 4");
    BAD(mnas_figure_plot_area(f, 0, NULL, NULL, NULL, NULL), "NULL");
    BAD(mnas_figure_data_to_pixel(f, 0, 0, 0, NULL, NULL), "NULL");
    BAD(mnas_figure_pixels(f, NULL, NULL, NULL), "rgb is NULL");
    BAD(mnas_figure_save_png(f, NULL), "path is NULL");
    BAD(mnas_figure_save_png(f, ""), "path is empty");
#undef BAD
    /* a NULL figure: an error, and no message since there is no context */
    mnas_ctx_clear_error(ctx);
    const uint8_t *rgb;
    ck_assert_int_eq(mnas_figure_line(NULL, 0, x, y, 3, 0, 1.0, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_figure_points(NULL, 0, x, y, 3, 0, 1.0, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_figure_title(NULL, 0, "t"), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_figure_panel_range(NULL, 0, 0, 1, 0, 1), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_figure_pixels(NULL, &rgb, NULL, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_figure_save_png(NULL, "x.png"), MNAS_E_INVALID);
    ck_assert_str_eq(mnas_ctx_last_error(ctx), "");

    /* the figure still works, with its old content */
    ck_assert_int_eq(mnas_figure_panel_get_range(f, 1, r), MNAS_OK);
    ck_assert(memcmp(r, before, sizeof before) == 0);
    ck_assert_int_eq(mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, 2.0, NULL), MNAS_OK);
    ck_assert(!same_pixels(f, snap, bytes));
    free(snap);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

/* Count pixels that are not gray in a rectangle. */
static long coloured_in(const mnas_figure *f, int x0, int y0, int x1, int y1)
{
    long n = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) n += !is_gray(pixel(f, x, y));
    return n;
}

static long dark_in(const mnas_figure *f, int x0, int y0, int x1, int y1)
{
    long n = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) n += is_dark(pixel(f, x, y));
    return n;
}

START_TEST(titles_labels_and_legend)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 240, 200, 1, 1);
    area a = plot_area(f, 0);
    /* the title band: above the frame, less the top y tick label's overhang */
    int band = a.y0 - 6;
    ck_assert_int_eq(dark_in(f, 0, 0, 239, band), 0);
    ck_assert_int_eq(mnas_figure_title(f, 0, "Sinusoid"), MNAS_OK);
    ck_assert_int_gt(dark_in(f, 0, 0, 239, band), 20);
    ck_assert_int_eq(mnas_figure_title(f, 0, NULL), MNAS_OK);
    ck_assert_int_eq(dark_in(f, 0, 0, 239, band), 0);

    /* x label below the tick labels, y label left of them */
    long below = dark_in(f, a.x0, a.y1 + 20, a.x1, 199), left = dark_in(f, 0, a.y0, 14, a.y1);
    ck_assert_int_eq(mnas_figure_axis_labels(f, 0, "x", "y value"), MNAS_OK);
    ck_assert_int_gt(dark_in(f, a.x0, a.y1 + 20, a.x1, 199), below);
    ck_assert_int_gt(dark_in(f, 0, a.y0, 14, a.y1), left + 20);

    /* data in the upper right only: the automatic legend goes upper left */
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 10, 0, 10), MNAS_OK);
    double x[2] = {8.5, 9.5}, y[2] = {9, 8.5};
    int mx = (a.x0 + a.x1) / 2, my = (a.y0 + a.y1) / 2;
    ck_assert_int_eq(mnas_figure_points(f, 0, x, y, 2, 0x00AA00u, 3.0, NULL), MNAS_OK);
    ck_assert_int_eq(coloured_in(f, a.x0, a.y0, mx, my), 0);
    ck_assert_int_eq(mnas_figure_panel_clear(f, 0), MNAS_OK);
    ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 10, 0, 10), MNAS_OK);
    ck_assert_int_eq(mnas_figure_points(f, 0, x, y, 2, 0x00AA00u, 3.0, "support"), MNAS_OK);
    long ul = coloured_in(f, a.x0, a.y0, mx, my);
    ck_assert_int_gt(ul, 5);                                /* the legend's marker */
    ck_assert_int_gt(dark_in(f, a.x0, a.y0, mx, my), 20);   /* and its text */
    ck_assert_int_eq(mnas_figure_legend(f, 0, MNAS_LEGEND_LOWER_LEFT), MNAS_OK);
    ck_assert_int_eq(coloured_in(f, a.x0, a.y0, mx, my), 0);
    ck_assert_int_gt(coloured_in(f, a.x0, my, mx, a.y1), 5);
    ck_assert_int_eq(mnas_figure_legend(f, 0, MNAS_LEGEND_NONE), MNAS_OK);
    ck_assert_int_eq(coloured_in(f, a.x0, my, mx, a.y1), 0);
    ck_assert_int_eq(dark_in(f, a.x0 + 1, a.y0 + 1, a.x1 - 1, a.y1 - 1), 0);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(font_glyphs_distinct)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 128, 96, 1, 1);
    area a = plot_area(f, 0);
    const int w = 128, rows = a.y0 - 5; /* the title band, above the top y tick label */
    size_t band = (size_t)w * (size_t)rows;
    uint8_t *seen = calloc(96 * band, 1);
    ck_assert_ptr_nonnull(seen);
    for (int c = 32; c <= 127; c++) {
        char text[2] = {(char)c, 0};
        ck_assert_int_eq(mnas_figure_title(f, 0, text), MNAS_OK);
        uint8_t *bits = seen + (size_t)(c - 32) * band;
        long ink = 0;
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < w; x++) ink += bits[(size_t)y * (size_t)w + (size_t)x] = (uint8_t)is_dark(pixel(f, x, y));
        if (c == 32) {
            ck_assert_int_eq(ink, 0);
            continue;
        }
        ck_assert_msg(ink >= 2 && ink <= 30, "glyph %d has %ld pixels", c, ink);
        for (int d = 33; d < c; d++)
            CHECK_FAST(memcmp(bits, seen + (size_t)(d - 32) * band, band) != 0, "glyphs %d and %d are the same", c, d);
    }
    /* bytes outside printable ASCII show the box (127 is the first of them) */
    ck_assert_int_eq(mnas_figure_title(f, 0, "\x80"), MNAS_OK);
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < w; x++)
            CHECK_FAST(is_dark(pixel(f, x, y)) == seen[95 * band + (size_t)y * (size_t)w + (size_t)x],
                       "byte 0x80 does not show the box at (%d, %d)", x, y);
    free(seen);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(text_scale_and_tiny_panels)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = mnas_figure_create(ctx, 600, 500, 1, 1);
    area a1 = plot_area(f, 0);
    ck_assert_int_eq(mnas_figure_text_scale(f, 1), MNAS_OK);
    area s1 = plot_area(f, 0);
    ck_assert_int_eq(mnas_figure_text_scale(f, 3), MNAS_OK);
    area s3 = plot_area(f, 0);
    ck_assert(s3.x0 > s1.x0 && s3.y1 < s1.y1);      /* bigger text, wider margins */
    ck_assert(a1.x0 > s1.x0);                      /* 500 pixels: automatic scale above 1 */
    mnas_figure_free(f);

    /* 64 panels of 8x8 pixels: no room for text, data still clipped to each */
    f = mnas_figure_create(ctx, 64, 64, 8, 8);
    double x[2] = {-1, 2}, y[2] = {-1, 2};
    for (int p = 0; p < 64; p++) {
        ck_assert_int_eq(mnas_figure_panel_range(f, p, 0, 1, 0, 1), MNAS_OK);
        ck_assert_int_eq(mnas_figure_line(f, p, x, y, 2, 0xFF0000u, 1.5, "a label"), MNAS_OK);
        ck_assert_int_eq(mnas_figure_title(f, p, "title"), MNAS_OK);
    }
    for (int p = 0; p < 64; p++) {
        area a = plot_area(f, p);
        ck_assert(a.x0 >= (p % 8) * 8 && a.x1 < (p % 8 + 1) * 8 && a.x1 - a.x0 >= 2);
        ck_assert(!is_gray(pixel(f, (a.x0 + a.x1 + 1) / 2, (a.y0 + a.y1) / 2)));
        for (int yy = 0; yy < 64; yy++)
            for (int xx = (p % 8) * 8; xx < (p % 8 + 1) * 8; xx++) {
                int in = xx > a.x0 && xx < a.x1 && yy > a.y0 && yy < a.y1;
                int row = yy / 8 == p / 8;
                if (row && !in) CHECK_FAST(is_gray(pixel(f, xx, yy)), "pixel (%d,%d) outside panel %d", xx, yy, p);
            }
    }
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(palette)
{
    ck_assert_uint_eq(mnas_figure_color(0), mnas_figure_color(7));
    for (unsigned i = 0; i < 7; i++) {
        ck_assert_uint_le(mnas_figure_color(i), 0xFFFFFFu);
        for (unsigned j = 0; j < i; j++) ck_assert_uint_ne(mnas_figure_color(i), mnas_figure_color(j));
    }
}
END_TEST

static mnas_figure *sample_figure(mnas_ctx *ctx)
{
    mnas_figure *f = mnas_figure_create(ctx, 180, 140, 1, 2);
    ck_assert_ptr_nonnull(f);
    double x[41], y[41];
    for (int i = 0; i <= 40; i++) {
        x[i] = -5 + 0.25 * i;
        y[i] = 2 * sin(x[i]);
    }
    for (int p = 0; p < 2; p++) {
        ck_assert_int_eq(mnas_figure_panel_range(f, p, -5, 5, NAN, NAN), MNAS_OK);
        ck_assert_int_eq(mnas_figure_line(f, p, x, y, 41, mnas_figure_color((unsigned)p), 2.0, "truth"), MNAS_OK);
        ck_assert_int_eq(mnas_figure_points(f, p, x, y, 5, 0x000000u, 2.5, "support"), MNAS_OK);
        ck_assert_int_eq(mnas_figure_title(f, p, p ? "linear" : "sinusoid"), MNAS_OK);
    }
    return f;
}

START_TEST(png_round_trip)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = sample_figure(ctx);
    char *dir = temp_dir();
    char *path = join(dir, "figure.png"), *tmp = join(dir, "figure.png.tmp");
    for (int pass = 0; pass < 2; pass++) { /* the second pass replaces the file */
        ck_assert_int_eq(mnas_figure_save_png(f, path), MNAS_OK);
        ck_assert(!exists(tmp));
        int w, h;
        uint8_t *back = read_png(path, &w, &h);
        const uint8_t *rgb;
        int fw, fh;
        ck_assert_int_eq(mnas_figure_pixels(f, &rgb, &fw, &fh), MNAS_OK);
        ck_assert_int_eq(w, fw);
        ck_assert_int_eq(h, fh);
        ck_assert_msg(memcmp(back, rgb, (size_t)w * (size_t)h * 3u) == 0, "pixels differ after reading back");
        free(back);
        double x[2] = {-4, 4}, y[2] = {-1, 1};
        ck_assert_int_eq(mnas_figure_line(f, 1, x, y, 2, 0xFF00FFu, 4.0, "new"), MNAS_OK);
    }
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(path);
    free(tmp);
    free(dir);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(png_unwritable_paths)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = sample_figure(ctx);
    char *dir = temp_dir();

    /* a directory that does not exist */
    char *missing = join(dir, "no/such/dir/figure.png");
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_figure_save_png(f, missing), MNAS_E_IO);
    assert_msg(ctx, "input/output error");
    assert_msg(ctx, "no/such/dir/figure.png.tmp");
    assert_msg(ctx, "No such file");
    ck_assert(!exists(missing));

    /* the target is a directory: writing works, the rename fails, and the
     * temporary file is gone */
    char *sub = join(dir, "sub"), *sub_tmp = join(dir, "sub.tmp");
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_figure_save_png(f, sub), MNAS_E_IO);
    assert_msg(ctx, "cannot rename");
    ck_assert(!exists(sub_tmp));
    struct stat st;
    ck_assert_int_eq(stat(sub, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));

    /* an existing file stays as it was when the new one cannot be written */
    char *keep = join(dir, "keep.png"), *keep_tmp = join(dir, "keep.png.tmp");
    FILE *fp = fopen(keep, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("old contents", fp);
    fclose(fp);
    ck_assert_int_eq(mkdir(keep_tmp, 0700), 0); /* blocks the temporary file */
    mnas_ctx_clear_error(ctx);
    ck_assert_int_eq(mnas_figure_save_png(f, keep), MNAS_E_IO);
    assert_msg(ctx, "cannot create");
    char buf[64] = {0};
    fp = fopen(keep, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fread(buf, 1, sizeof buf - 1, fp), strlen("old contents"));
    fclose(fp);
    ck_assert_str_eq(buf, "old contents");
    ck_assert_int_eq(rmdir(keep_tmp), 0);

    /* a read-only directory (root writes anyway, so only checked for others) */
    char *ro = join(dir, "ro"), *ro_file = join(ro, "figure.png"), *ro_tmp = join(ro, "figure.png.tmp");
    ck_assert_int_eq(mkdir(ro, 0500), 0);
    if (access(ro, W_OK) != 0) {
        mnas_ctx_clear_error(ctx);
        ck_assert_int_eq(mnas_figure_save_png(f, ro_file), MNAS_E_IO);
        assert_msg(ctx, "Permission denied");
        ck_assert(!exists(ro_file) && !exists(ro_tmp));
    }

    /* the figure is unharmed and can still be saved */
    ck_assert_int_eq(mnas_figure_save_png(f, keep), MNAS_OK);
    int w, h;
    uint8_t *back = read_png(keep, &w, &h);
    ck_assert_int_eq(w, 180);
    ck_assert_int_eq(h, 140);
    free(back);

    unlink(ro_file);
    ck_assert_int_eq(rmdir(ro), 0);
    ck_assert_int_eq(unlink(keep), 0);
    ck_assert_int_eq(rmdir(sub), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(ro);
    free(ro_file);
    free(ro_tmp);
    free(keep);
    free(keep_tmp);
    free(sub);
    free(sub_tmp);
    free(missing);
    free(dir);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------- allocation failures */

typedef struct counting {
    long allocs, frees, fail_after;
} counting;

typedef union header {
    max_align_t align;
    size_t size;
} header;

static void *count_alloc(void *user, size_t size)
{
    counting *c = user;
    if (c->fail_after >= 0 && c->allocs >= c->fail_after) return NULL;
    header *h = malloc(sizeof *h + size);
    if (!h) return NULL;
    c->allocs++;
    return h + 1;
}

static void count_free(void *user, void *p)
{
    counting *c = user;
    c->frees++;
    free((header *)p - 1);
}

/* Figures go through the same atomic writer as checkpoints (io/atomic_file.c):
 * a crash before the rename leaves the old file and a complete temporary. */
START_TEST(png_shares_the_atomic_writer)
{
    mnas_ctx *ctx = new_ctx();
    mnas_figure *f = sample_figure(ctx);
    char *dir = temp_dir();
    char *keep = join(dir, "keep.png"), *keep_tmp = join(dir, "keep.png.tmp");
    FILE *fp = fopen(keep, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("old contents", fp);
    fclose(fp);
    setenv("MNAS_CHECKPOINT_TEST_CRASH", "before-rename", 1);
    mnas_ctx_clear_error(ctx);
    mnas_status st = mnas_figure_save_png(f, keep);
    unsetenv("MNAS_CHECKPOINT_TEST_CRASH");
    ck_assert_int_eq(st, MNAS_E_IO);
    assert_msg(ctx, "simulated crash");
    char buf[64] = {0};
    fp = fopen(keep, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fread(buf, 1, sizeof buf - 1, fp), strlen("old contents"));
    fclose(fp);
    int w, h;
    uint8_t *back = read_png(keep_tmp, &w, &h);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(w, 180);
    ck_assert_int_eq(h, 140);
    free(back);
    unlink(keep_tmp);
    /* and without the simulated crash the new figure replaces the old file */
    ck_assert_int_eq(mnas_figure_save_png(f, keep), MNAS_OK);
    ck_assert(!exists(keep_tmp));
    back = read_png(keep, &w, &h);
    ck_assert_ptr_nonnull(back);
    free(back);
    unlink(keep);
    rmdir(dir);
    free(keep);
    free(keep_tmp);
    free(dir);
    mnas_figure_free(f);
    mnas_ctx_free(ctx);
}
END_TEST

START_TEST(allocation_failures)
{
    char *dir = temp_dir();
    char *path = join(dir, "f.png"), *tmp = join(dir, "f.png.tmp");
    int finished = 0;
    for (long k = 0; k < 200 && !finished; k++) {
        counting c = {0, 0, k};
        mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
        o.alloc = count_alloc;
        o.free = count_free;
        o.alloc_user = &c;
        mnas_ctx *ctx = NULL;
        c.fail_after = -1;
        ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
        c.fail_after = c.allocs + k;
        mnas_figure *f = mnas_figure_create(ctx, 96, 80, 1, 1);
        if (!f) {
            assert_msg(ctx, "out of memory");
        } else {
            double x[3] = {0, 1, 2}, y[3] = {2, 0, 1};
            mnas_status st = MNAS_OK;
            for (int i = 0; i < 6 && st == MNAS_OK; i++)
                st = mnas_figure_line(f, 0, x, y, 3, 0xFF0000u, 2.0, i % 2 ? "lab" : NULL);
            if (st == MNAS_OK) st = mnas_figure_title(f, 0, "title");
            if (st == MNAS_OK) st = mnas_figure_axis_labels(f, 0, "x", "y");
            if (st == MNAS_OK) {
                st = mnas_figure_save_png(f, path);
                ck_assert(!exists(tmp));
                if (st == MNAS_OK) {
                    finished = 1;
                    ck_assert_int_eq(unlink(path), 0);
                } else {
                    ck_assert(!exists(path));
                }
            }
            if (st != MNAS_OK) {
                ck_assert_int_eq(st, MNAS_E_NOMEM);
                assert_msg(ctx, "out of memory");
                /* still usable */
                const uint8_t *rgb;
                ck_assert_int_eq(mnas_figure_pixels(f, &rgb, NULL, NULL), MNAS_OK);
                ck_assert_int_eq(mnas_figure_panel_range(f, 0, 0, 1, 0, 1), MNAS_OK);
            }
            mnas_figure_free(f);
        }
        mnas_ctx_free(ctx);
        ck_assert_int_eq(c.allocs, c.frees);
    }
    ck_assert_msg(finished, "never got through with 200 allocations");
    ck_assert_int_eq(rmdir(dir), 0);
    free(path);
    free(tmp);
    free(dir);
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *plot_suite(void)
{
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("figure");
    tcase_add_test(tc, create_bad_sizes);
    tcase_add_test(tc, blank_figure_is_white_with_frames);
    tcase_add_test(tc, mapping_matches_frame);
    tcase_add_test(tc, palette);
    tcase_add_test(tc, auto_and_fixed_ranges);
    tcase_add_test(tc, bad_arguments_change_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("drawing");
    tcase_add_test(tc, line_colour_along_path);
    tcase_add_test(tc, lines_and_points_clipped_to_panel);
    tcase_add_test(tc, points_at_their_pixels);
    tcase_add_test(tc, nan_breaks_the_line);
    tcase_add_test(tc, titles_labels_and_legend);
    tcase_add_test(tc, font_glyphs_distinct);
    tcase_add_test(tc, text_scale_and_tiny_panels);
    suite_add_tcase(s, tc);

    tc = tcase_create("png");
    tcase_add_test(tc, png_round_trip);
    tcase_add_test(tc, png_unwritable_paths);
    tcase_add_test(tc, png_shares_the_atomic_writer);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(plot_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
