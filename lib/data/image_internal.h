/* Private image layer: the dataset layout shared by the PNG, IDX, cache,
 * split and sampler files, and the decoding helpers they share. */
#ifndef MNAS_IMAGE_INTERNAL_H
#define MNAS_IMAGE_INTERNAL_H

#include "data/data_internal.h"

#define MNAS_IMAGE_DATASET_MAGIC 0x6d6e4944u /* "mnID" */
#define MNAS_IMAGE_MAX_SIDE 65536
/* Most pixels of one decoded image (e.g. 8192 x 4096): the decoder's
 * buffers are sized from the header before any image data is read, so
 * without this a 100-byte PNG claiming 65536 x 65536 pixels asks for tens
 * of gigabytes (found by fuzz_png). */
#define MNAS_IMAGE_MAX_PIXELS ((uint64_t)1 << 25)
#define MNAS_IMAGE_MAX_CLASSES 10000000u

struct mnas_image_dataset {
    uint32_t magic;
    mnas_ctx *ctx;
    int channels, height, width;
    size_t n_classes;
    size_t n_images;
    size_t *class_start;  /* [n_classes] first image of each class */
    size_t *class_count;  /* [n_classes] */
    char **names;         /* [n_classes], NUL-terminated */
    float *pixels;        /* [n_images, C, H, W] */
    int from_cache;
};

static inline int mnas__image_dataset_ok(const mnas_image_dataset *d)
{
    return d && d->magic == MNAS_IMAGE_DATASET_MAGIC;
}

static inline size_t mnas__image_floats(const mnas_image_dataset *d)
{
    return (size_t)d->channels * (size_t)d->height * (size_t)d->width;
}

/* An empty dataset with room for n_classes classes and n_images images of
 * [c, h, w] (names unset); NULL with a message naming fn. */
mnas_image_dataset *mnas__image_dataset_alloc(mnas_ctx *ctx, const char *fn, size_t n_classes,
                                              size_t n_images, int c, int h, int w);
/* Copy of a string through the context allocator. */
char *mnas__strdup(mnas_ctx *ctx, const char *s);

/* Validated load options (NULL: defaults). */
mnas_status mnas__image_read_options(mnas_ctx *ctx, const char *fn, const mnas_image_load_options *opts,
                                     mnas_image_load_options *o);

/* A decoded source image: float [src_c, h, w] in [0, 1] where src_c is 1
 * (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA). */
typedef struct mnas__raw_image {
    float *data;
    int c, h, w;
} mnas__raw_image;

/* Convert raw to channels (1 or 3) with the alpha rule, resizing to
 * [h, w] with the resize rule, into out [channels, h, w]. scratch must hold
 * at least mnas__image_scratch_floats(...) floats. */
size_t mnas__image_scratch_floats(const mnas__raw_image *raw, int channels, int h, int w);
/* Downscaling by more than this factor per axis is refused (the filter's
 * taps are bounded). */
#define MNAS_IMAGE_MAX_DOWNSCALE 1000
void mnas__image_convert(const mnas__raw_image *raw, int channels, int alpha, int resize, int h, int w,
                         float *out, float *scratch);

/* Read a whole file through the context allocator. */
mnas_status mnas__read_file(mnas_ctx *ctx, const char *fn, const char *path, unsigned char **data, size_t *len);

/* Decode one PNG held in memory; name is used in messages. */
mnas_status mnas__png_decode(mnas_ctx *ctx, const char *fn, const char *name, const unsigned char *buf, size_t len,
                             mnas__raw_image *out);

/* ---- the decoded cache (image_cache.c) -------------------------------- */

/* Try to read the cache at path for the listing key; NULL (no message kept)
 * when it is missing, stale or corrupt. */
mnas_image_dataset *mnas__image_cache_read(mnas_ctx *ctx, const char *path, uint64_t key);
/* Write ds to path atomically (temp file + rename); failure is logged, not fatal. */
mnas_status mnas__image_cache_write(mnas_ctx *ctx, const char *path, uint64_t key, const mnas_image_dataset *ds);

/* FNV-1a, 64 bits. */
static inline uint64_t mnas__fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define MNAS_FNV_OFFSET 0xcbf29ce484222325ull

#endif /* MNAS_IMAGE_INTERNAL_H */
