/* The decoded-image cache of class-folder datasets: one binary file per
 * dataset holding the store's compact records (samples as decoded, or
 * floats where those were kept), written atomically (temp file + rename)
 * and checked on reading (magic, version, listing key, sizes, CRC-32);
 * anything that does not check out is ignored, so the images are decoded
 * again. Format in docs/data.md. */
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/image_internal.h"

#define CACHE_MAGIC "MNASIMGC"
/* 2: compact records (version 1 held every image as float at the dataset's
 * shape; such files are refused as "another cache version") */
#define CACHE_VERSION 2u
#define NAME_MAX_LEN 4096u

typedef struct stream {
    FILE *f;
    uLong crc;
    int bad;
} stream;

static void put(stream *s, const void *p, size_t n)
{
    if (s->bad) return;
    const unsigned char *b = p;
    while (n) { /* crc32 takes uInt lengths */
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        s->crc = crc32(s->crc, b, k);
        if (fwrite(b, 1, k, s->f) != k) s->bad = 1;
        b += k;
        n -= k;
    }
}

static void get(stream *s, void *p, size_t n)
{
    if (s->bad) return;
    unsigned char *b = p;
    while (n) {
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        if (fread(b, 1, k, s->f) != k) {
            s->bad = 1;
            return;
        }
        s->crc = crc32(s->crc, b, k);
        b += k;
        n -= k;
    }
}

static void put_u64(stream *s, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    put(s, b, 8);
}

static uint64_t get_u64(stream *s)
{
    unsigned char b[8] = { 0 };
    get(s, b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static int little_endian(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* float32 little-endian: as is on little-endian hosts, byte-swapped otherwise. */
static void swap_floats(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4], t;
        memcpy(b, &p[i], 4);
        t = b[0], b[0] = b[3], b[3] = t;
        t = b[1], b[1] = b[2], b[2] = t;
        memcpy(&p[i], b, 4);
    }
}

static void put_floats(stream *s, float *p, size_t n)
{
    if (little_endian()) {
        put(s, p, n * sizeof *p);
        return;
    }
    swap_floats(p, n);
    put(s, p, n * sizeof *p);
    swap_floats(p, n);
}

/* One record's descriptor in the file: c | enc << 8 | h << 16 | w << 40. */
static uint64_t rec_word(const mnas__image_rec *r)
{
    return (uint64_t)r->c | (uint64_t)r->enc << 8 | (uint64_t)(uint32_t)r->h << 16 | (uint64_t)(uint32_t)r->w << 40;
}

/* Is the record plausible for a dataset of [C, H, W] (keep_size: every
 * source image has that size)? */
static int rec_ok(const mnas__image_rec *r, int C, int H, int W, int keep_size)
{
    if (r->enc == MNAS__ENC_F32) return r->c == C && r->h == H && r->w == W;
    if (r->enc != MNAS__ENC_U8 && r->enc != MNAS__ENC_U16) return 0;
    if (r->c < 1 || r->c > 4 || r->h < 1 || r->w < 1 || r->h > MNAS_IMAGE_MAX_SIDE || r->w > MNAS_IMAGE_MAX_SIDE)
        return 0;
    if ((uint64_t)r->h * (uint64_t)r->w > MNAS_IMAGE_MAX_PIXELS) return 0;
    if (r->h > MNAS_IMAGE_MAX_DOWNSCALE * H || r->w > MNAS_IMAGE_MAX_DOWNSCALE * W) return 0;
    if (keep_size && (r->h != H || r->w != W)) return 0;
    return 1;
}

static size_t round4(size_t n) { return (n + 3) & ~(size_t)3; }

mnas_image_dataset *mnas__image_cache_read(mnas_ctx *ctx, const char *path, uint64_t key, int keep_size)
{
    static const char fn[] = "mnas_image_dataset_load_folder (cache)";
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat sb;
    const uint64_t file_size = fstat(fileno(f), &sb) == 0 ? (uint64_t)sb.st_size : 0;
    stream s = { f, crc32(0L, Z_NULL, 0), 0 };
    char magic[8];
    get(&s, magic, 8);
    uint64_t version = get_u64(&s), k = get_u64(&s);
    uint64_t c = get_u64(&s), h = get_u64(&s), w = get_u64(&s);
    uint64_t n_classes = get_u64(&s), n_images = get_u64(&s);
    uint64_t alpha = get_u64(&s), resize = get_u64(&s);
    mnas_image_dataset *ds = NULL;
    const char *why = NULL;
    if (s.bad || memcmp(magic, CACHE_MAGIC, 8) != 0) why = "no cache magic";
    else if (version != CACHE_VERSION) why = "another cache version";
    else if (k != key) why = "the folder or the options changed";
    else if ((c != 1 && c != 3) || h < 1 || w < 1 || h > MNAS_IMAGE_MAX_SIDE || w > MNAS_IMAGE_MAX_SIDE ||
             n_classes < 1 || n_classes > MNAS_IMAGE_MAX_CLASSES || n_images < n_classes ||
             n_images > file_size / 8 || (alpha != MNAS_ALPHA_WHITE && alpha != MNAS_ALPHA_DROP) ||
             (resize != MNAS_RESIZE_AREA && resize != MNAS_RESIZE_BILINEAR))
        why = "implausible sizes";
    if (!why) {
        ds = mnas__image_dataset_alloc(ctx, fn, (size_t)n_classes, (size_t)n_images, (int)c, (int)h, (int)w,
                                       (int)alpha, (int)resize);
        if (!ds) why = "out of memory";
    }
    size_t start = 0;
    for (size_t i = 0; !why && i < (size_t)n_classes; i++) {
        uint64_t count = get_u64(&s), len = get_u64(&s);
        if (s.bad || count == 0 || count > n_images - start || len == 0 || len > NAME_MAX_LEN) {
            why = "corrupt class table";
            break;
        }
        ds->names[i] = mnas__alloc(ctx, (size_t)len + 1);
        if (!ds->names[i]) {
            why = "out of memory";
            break;
        }
        get(&s, ds->names[i], (size_t)len);
        ds->names[i][len] = '\0';
        ds->class_start[i] = start;
        ds->class_count[i] = (size_t)count;
        start += (size_t)count;
    }
    if (!why && start != n_images) why = "corrupt class table";
    /* The record table, then the samples: their total must be what is left
     * of the file (checked before allocating it). */
    mnas__image_store *st = ds ? ds->store : NULL;
    uint64_t payload = 0, room = 0;
    for (size_t i = 0; !why && i < (size_t)n_images; i++) {
        uint64_t v = get_u64(&s);
        mnas__image_rec *r = &st->recs[i];
        r->c = (uint8_t)(v & 0xff);
        r->enc = (uint8_t)(v >> 8 & 0xff);
        r->h = (int32_t)(v >> 16 & 0xffffff);
        r->w = (int32_t)(v >> 40 & 0xffffff);
        if (s.bad || rec_word(r) != v || !rec_ok(r, (int)c, (int)h, (int)w, keep_size)) {
            why = s.bad ? "the file is truncated" : "corrupt image table";
            break;
        }
        payload += mnas__image_rec_bytes(r);
        room += round4(mnas__image_rec_bytes(r));
        if (payload > file_size) why = "the file is truncated";
    }
    if (!why) {
        long pos = ftell(f);
        uint64_t left = pos >= 0 && (uint64_t)pos <= file_size ? file_size - (uint64_t)pos : 0;
        if (payload + 4 > left) why = "the file is truncated";
        else if (payload + 4 < left) why = "trailing bytes";
        else if (room > SIZE_MAX) why = "implausible sizes";
    }
    if (!why) {
        st->blob = mnas__alloc(ctx, room ? (size_t)room : 1);
        if (!st->blob) why = "out of memory";
    }
    if (!why) {
        /* every record 4-byte aligned in the blob (floats) */
        unsigned char *b = st->blob;
        for (size_t i = 0; i < (size_t)n_images; i++) {
            mnas__image_rec *r = &st->recs[i];
            size_t n = mnas__image_rec_bytes(r);
            get(&s, b, n);
            if (r->enc == MNAS__ENC_F32 && !little_endian()) swap_floats((float *)(void *)b, n / sizeof(float));
            r->data = b;
            b += round4(n);
        }
        uLong crc = s.crc;
        unsigned char tail[4];
        if (s.bad || fread(tail, 1, 4, f) != 4) why = "the file is truncated";
        else if (((uLong)tail[0] | (uLong)tail[1] << 8 | (uLong)tail[2] << 16 | (uLong)tail[3] << 24) != crc)
            why = "CRC mismatch";
        else if (fgetc(f) != EOF) why = "trailing bytes";
    }
    fclose(f);
    if (why) {
        mnas_image_dataset_free(ds);
        char msg[MNAS_MSG_MAX];
        snprintf(msg, sizeof msg, "mnas_image_dataset_load_folder: ignoring the cache %s (%s); decoding the images",
                 path, why);
        mnas_ctx_log(ctx, MNAS_LOG_INFO, msg);
        return NULL;
    }
    mnas__image_store_finish(st);
    return ds;
}

mnas_status mnas__image_cache_write(mnas_ctx *ctx, const char *path, uint64_t key, const mnas_image_dataset *ds)
{
    size_t n = strlen(path);
    char *tmp = mnas__alloc(ctx, n + 8);
    char msg[MNAS_MSG_MAX];
    if (!tmp) return MNAS_E_NOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        snprintf(msg, sizeof msg, "mnas_image_dataset_load_folder: cannot create a cache file next to %s", path);
        mnas_ctx_log(ctx, MNAS_LOG_WARN, msg);
        mnas__free(ctx, tmp);
        return MNAS_E_IO;
    }
    stream s = { f, crc32(0L, Z_NULL, 0), 0 };
    put(&s, CACHE_MAGIC, 8);
    put_u64(&s, CACHE_VERSION);
    put_u64(&s, key);
    put_u64(&s, (uint64_t)ds->channels);
    put_u64(&s, (uint64_t)ds->height);
    put_u64(&s, (uint64_t)ds->width);
    put_u64(&s, ds->n_classes);
    put_u64(&s, ds->n_images);
    put_u64(&s, (uint64_t)ds->store->alpha);
    put_u64(&s, (uint64_t)ds->store->resize);
    for (size_t i = 0; i < ds->n_classes; i++) {
        size_t len = strlen(ds->names[i]);
        put_u64(&s, ds->class_count[i]);
        put_u64(&s, len);
        put(&s, ds->names[i], len);
    }
    /* a dataset as loaded: its classes cover the store in order */
    const mnas__image_store *st = ds->store;
    for (size_t i = 0; i < st->n; i++) put_u64(&s, rec_word(&st->recs[i]));
    for (size_t i = 0; i < st->n; i++) {
        const mnas__image_rec *r = &st->recs[i];
        if (r->enc == MNAS__ENC_F32) put_floats(&s, (float *)(uintptr_t)r->data, mnas__image_rec_bytes(r) / sizeof(float));
        else put(&s, r->data, mnas__image_rec_bytes(r));
    }
    uLong crc = s.crc;
    unsigned char tail[4] = { (unsigned char)crc, (unsigned char)(crc >> 8), (unsigned char)(crc >> 16),
                              (unsigned char)(crc >> 24) };
    put(&s, tail, 4);
    int bad = s.bad || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad = (fclose(f) != 0) || bad;
    if (!bad && rename(tmp, path) != 0) bad = 1;
    if (bad) {
        unlink(tmp);
        snprintf(msg, sizeof msg, "mnas_image_dataset_load_folder: cannot write the cache %s", path);
        mnas_ctx_log(ctx, MNAS_LOG_WARN, msg);
    }
    mnas__free(ctx, tmp);
    return bad ? MNAS_E_IO : MNAS_OK;
}
