/* Decoding PNG files through libpng into 8- or 16-bit samples, samples to
 * float [0, 1], and the
 * conversions every loader shares: channels (grey <-> RGB, alpha) and
 * resizing (area or bilinear, separable). */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "data/image_internal.h"

/* ---- libpng plumbing: memory source, errors, the context allocator ---- */

typedef struct png_job {
    mnas_ctx *ctx;
    const unsigned char *buf;
    size_t len, pos;
    char message[256];
    jmp_buf jump;
    /* Allocated between setjmp and a possible longjmp: kept here (reached
     * through a pointer) so that the cleanup sees their current values. */
    unsigned char *pixels;
    png_bytep *rows;
} png_job;

static void job_read(png_structp png, png_bytep data, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (n > job->len - job->pos) png_error(png, "the file is truncated (it ends inside the image data)");
    memcpy(data, job->buf + job->pos, n);
    job->pos += n;
}

static void job_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    snprintf(job->message, sizeof job->message, "%s", msg);
    longjmp(job->jump, 1);
}

static void job_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign (e.g. an unknown ancillary chunk): nothing to report */
}

static png_voidp job_malloc(png_structp png, png_alloc_size_t size)
{
    png_job *job = png_get_mem_ptr(png);
    return mnas__alloc(job->ctx, size);
}

static void job_free(png_structp png, png_voidp p)
{
    png_job *job = png_get_mem_ptr(png);
    mnas__free(job->ctx, p);
}

/* The body that may longjmp out; everything it allocates hangs off job. */
static int decode_body(png_job *job, png_structp png, png_infop info, mnas__png_image *out)
{
    if (setjmp(job->jump)) return -1;
    png_set_read_fn(png, job, job_read);
    png_set_user_limits(png, MNAS_IMAGE_MAX_SIDE, MNAS_IMAGE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    /* Everything becomes 8 or 16 bits per sample, grey / grey+alpha / RGB /
     * RGBA: palettes expand to RGB, a tRNS chunk to an alpha channel. */
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    int passes = png_set_interlace_handling(png);
    (void)passes;
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    int bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if (c < 1 || c > 4 || rowbytes != (size_t)w * (size_t)c * (size_t)bytes) png_error(png, "unexpected row layout");
    if ((uint64_t)w * h > MNAS_IMAGE_MAX_PIXELS) {
        snprintf(job->message, sizeof job->message, "%ux%u pixels is more than the %llu pixels libmnas decodes",
                 (unsigned)w, (unsigned)h, (unsigned long long)MNAS_IMAGE_MAX_PIXELS);
        return -3;
    }
    job->pixels = mnas__alloc(job->ctx, rowbytes * h);
    job->rows = mnas__alloc(job->ctx, sizeof *job->rows * h);
    if (!job->pixels || !job->rows) {
        snprintf(job->message, sizeof job->message, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
        return -2;
    }
    for (png_uint_32 y = 0; y < h; y++) job->rows[y] = job->pixels + (size_t)y * rowbytes;
    png_read_image(png, job->rows);
    png_read_end(png, NULL);
    /* kept as libpng gives them: interleaved [h, w, c], big-endian 16-bit */
    out->data = job->pixels;
    job->pixels = NULL;
    out->enc = bytes == 2 ? MNAS__ENC_U16 : MNAS__ENC_U8;
    out->c = c;
    out->h = (int)h;
    out->w = (int)w;
    return 0;
}

mnas_status mnas__png_decode(mnas_ctx *ctx, const char *fn, const char *name, const unsigned char *buf, size_t len,
                             mnas__png_image *out)
{
    memset(out, 0, sizeof *out);
    if (len < 8 || png_sig_cmp(buf, 0, 8) != 0)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %s is not a PNG file (%s)", fn, name,
                           len < 8 ? "shorter than the PNG signature" : "no PNG signature");
    png_job *job = mnas__calloc(ctx, 1, sizeof *job);
    if (!job) return mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory decoding %s", fn, name);
    job->ctx = ctx;
    job->buf = buf;
    job->len = len;
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, job, job_error, job_warning, job, job_malloc,
                                               job_free);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    mnas_status st = MNAS_OK;
    if (!png || !info) {
        st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot create a libpng reader for %s", fn, name);
    } else {
        int r = decode_body(job, png, info, out);
        if (r == -1)
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s is a corrupt or truncated PNG: %s", fn, name, job->message);
        else if (r == -2)
            st = mnas__error(ctx, MNAS_E_NOMEM, "%s: %s: %s", fn, name, job->message);
        else if (r == -3)
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: %s", fn, name, job->message);
    }
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    mnas__free(ctx, job->pixels);
    mnas__free(ctx, job->rows);
    mnas__free(ctx, job);
    return st;
}

void mnas__image_u8_table(float table[256])
{
    for (int v = 0; v < 256; v++) table[v] = (float)v / 255.0f;
}

void mnas__image_samples_to_float(const void *data, int c, int h, int w, int enc, const float *u8, float *out)
{
    const unsigned char *b = data;
    const size_t plane = (size_t)w * (size_t)h;
    if (enc == MNAS__ENC_U8 && u8) {
        for (size_t p = 0; p < plane; p++)
            for (int k = 0; k < c; k++) out[(size_t)k * plane + p] = u8[b[p * (size_t)c + (size_t)k]];
        return;
    }
    for (size_t p = 0; p < plane; p++)
        for (int k = 0; k < c; k++) {
            const unsigned char *s = b + (p * (size_t)c + (size_t)k) * (size_t)enc;
            float v = enc == MNAS__ENC_U16 ? (float)((s[0] << 8) | s[1]) / 65535.0f : (float)s[0] / 255.0f;
            out[(size_t)k * plane + p] = v;
        }
}

/* ---- channel conversion and resizing ------------------------------------ */

/* Weights of output o along an axis of n_in -> n_out samples; taps gets
 * (index, weight) pairs, returns how many. */
static int axis_taps(int mode, int n_in, int n_out, int o, int *index, float *weight)
{
    if (n_in == n_out) {
        index[0] = o;
        weight[0] = 1.0f;
        return 1;
    }
    const double scale = (double)n_in / (double)n_out;
    if (mode == MNAS_RESIZE_BILINEAR) {
        double s = ((double)o + 0.5) * scale - 0.5; /* half-pixel centres */
        if (s < 0.0) s = 0.0;
        if (s > (double)(n_in - 1)) s = (double)(n_in - 1);
        int i0 = (int)s;
        int i1 = i0 + 1 < n_in ? i0 + 1 : i0;
        double f = s - (double)i0;
        index[0] = i0;
        weight[0] = (float)(1.0 - f);
        if (i1 == i0 || f == 0.0) return 1;
        index[1] = i1;
        weight[1] = (float)f;
        return 2;
    }
    /* Area: the output sample covers [o * scale, (o + 1) * scale) of the
     * source axis; each source sample weighs by its overlap. */
    double a = (double)o * scale, b = (double)(o + 1) * scale;
    int i = (int)a, k = 0;
    for (; i < n_in && (double)i < b; i++) {
        double lo = a > (double)i ? a : (double)i;
        double hi = b < (double)(i + 1) ? b : (double)(i + 1);
        if (hi <= lo) continue;
        index[k] = i;
        weight[k] = (float)((hi - lo) / scale);
        k++;
    }
    return k;
}

static int max_taps(int n_in, int n_out) { return n_in / n_out + 3; }

size_t mnas__image_scratch_floats(const mnas__raw_image *raw, int channels, int h, int w)
{
    /* channel-converted source [channels, raw h, raw w] + the horizontal pass [channels, raw h, w] */
    (void)h;
    return (size_t)channels * (size_t)raw->h * ((size_t)raw->w + (size_t)w);
}

void mnas__image_convert(const mnas__raw_image *raw, int channels, int alpha, int resize, int h, int w, float *out,
                         float *scratch)
{
    const size_t plane = (size_t)raw->h * (size_t)raw->w;
    const float *src = raw->data;
    float *conv = scratch;
    const int has_alpha = raw->c == 2 || raw->c == 4;
    const int colour = raw->c >= 3;
    /* A grey source made RGB has three equal planes: one is computed (the
     * same operations on the same values) and copied, bit for bit. */
    const int replicate = channels == 3 && !colour;
    const int cc = replicate ? 1 : channels;
    const float *a = has_alpha ? src + (size_t)(raw->c - 1) * plane : NULL;
    /* A grey source whose alpha is not applied is its own converted plane. */
    const int as_is = !colour && cc == 1 && !(a && alpha == MNAS_ALPHA_WHITE);
    if (as_is) conv = (float *)(uintptr_t)src;
    for (size_t p = 0; p < plane && !as_is; p++) {
        float v[3];
        if (colour) {
            v[0] = src[p];
            v[1] = src[plane + p];
            v[2] = src[2 * plane + p];
        } else {
            v[0] = v[1] = v[2] = src[p];
        }
        if (a && alpha == MNAS_ALPHA_WHITE)
            for (int k = 0; k < 3; k++) v[k] = a[p] * v[k] + (1.0f - a[p]);
        if (cc == 1) {
            /* ITU-R BT.601 luma on the stored (gamma-encoded) values */
            conv[p] = colour ? 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2] : v[0];
        } else {
            for (int k = 0; k < 3; k++) conv[(size_t)k * plane + p] = v[k];
        }
    }
    const size_t out_plane = (size_t)h * (size_t)w;
    if (raw->h == h && raw->w == w) {
        memcpy(out, conv, sizeof(float) * (size_t)cc * plane);
    } else {
        /* Horizontal pass into tmp [cc, raw h, w], then vertical into out. */
        float *tmp = scratch + (size_t)cc * plane;
        int idx[1024];
        float wt[1024];
        for (int ox = 0; ox < w; ox++) {
            int n = 0;
            if (max_taps(raw->w, w) <= 1024) n = axis_taps(resize, raw->w, w, ox, idx, wt);
            for (int c = 0; c < cc; c++)
                for (int y = 0; y < raw->h; y++) {
                    const float *row = conv + ((size_t)c * raw->h + (size_t)y) * raw->w;
                    float s = 0.0f;
                    for (int k = 0; k < n; k++) s += wt[k] * row[idx[k]];
                    tmp[((size_t)c * raw->h + (size_t)y) * w + ox] = s;
                }
        }
        for (int oy = 0; oy < h; oy++) {
            int n = 0;
            if (max_taps(raw->h, h) <= 1024) n = axis_taps(resize, raw->h, h, oy, idx, wt);
            for (int c = 0; c < cc; c++)
                for (int x = 0; x < w; x++) {
                    float s = 0.0f;
                    for (int k = 0; k < n; k++) s += wt[k] * tmp[((size_t)c * raw->h + (size_t)idx[k]) * w + x];
                    if (s < 0.0f) s = 0.0f;
                    if (s > 1.0f) s = 1.0f;
                    out[((size_t)c * h + (size_t)oy) * w + x] = s;
                }
        }
    }
    if (replicate) {
        memcpy(out + out_plane, out, sizeof(float) * out_plane);
        memcpy(out + 2 * out_plane, out, sizeof(float) * out_plane);
    }
}
