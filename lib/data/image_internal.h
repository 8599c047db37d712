/* Private image layer: the dataset layout shared by the PNG, IDX, cache,
 * split and sampler files, and the decoding helpers they share. */
#ifndef MNAS_IMAGE_INTERNAL_H
#define MNAS_IMAGE_INTERNAL_H

#include <stdatomic.h>

#include "data/data_internal.h"

#define MNAS_IMAGE_DATASET_MAGIC 0x6d6e4944u /* "mnID" */
#define MNAS_IMAGE_MAX_SIDE 65536
/* Most pixels of one decoded image (e.g. 8192 x 4096): the decoder's
 * buffers are sized from the header before any image data is read, so
 * without this a 100-byte PNG claiming 65536 x 65536 pixels asks for tens
 * of gigabytes (found by fuzz_png). */
#define MNAS_IMAGE_MAX_PIXELS ((uint64_t)1 << 25)
#define MNAS_IMAGE_MAX_CLASSES 10000000u

/* How one stored image is encoded (docs/data.md, "Memory"). Decoded files
 * keep their samples as they came (a byte or two per sample, at the source
 * size and channel count) and are converted to float at the dataset's shape
 * only when an image is read (mnas__image_get); an image whose samples would
 * take more bytes than its converted floats (a large source shrunk) is
 * converted once at load and kept as float, as are caller pixels. Either way
 * the floats read are those the conversion gives, bit for bit. */
enum {
    MNAS__ENC_U8 = 1,  /* 8-bit samples [h, w, c] interleaved, source size */
    MNAS__ENC_U16 = 2, /* 16-bit samples [h, w, c], big-endian (as PNG stores them) */
    MNAS__ENC_F32 = 4  /* float [C, H, W] at the dataset's shape, final values */
};

typedef struct mnas__image_rec {
    const void *data; /* NULL until the loader fills the slot */
    int32_t h, w;     /* source size (the dataset's for F32) */
    uint8_t c;        /* samples per pixel: 1..4 (the dataset's channels for F32) */
    uint8_t enc;      /* MNAS__ENC_* = bytes per sample */
} mnas__image_rec;

/* The pixels, shared by a dataset and every subset or split made from it
 * (reference-counted; the last dataset freed frees it). Read-only once
 * loaded, so threads may read it at the same time. */
typedef struct mnas__image_store {
    mnas_ctx *ctx;
    atomic_long refs;
    size_t n;               /* images */
    mnas__image_rec *recs;  /* [n] */
    void *blob;             /* one allocation some records point into, or NULL */
    int own_each;           /* 1: every record's data is its own allocation */
    int channels, height, width; /* the converted shape [C, H, W] */
    int alpha, resize;      /* the conversion rules */
    size_t work;            /* floats of work space mnas__image_get needs */
    size_t bytes;           /* pixel bytes held (records' data) */
    float u8[256];          /* v / 255 in float (mnas__image_u8_table) */
} mnas__image_store;

struct mnas_image_dataset {
    uint32_t magic;
    mnas_ctx *ctx;
    int channels, height, width;
    size_t n_classes;
    size_t n_images;
    size_t *class_start;  /* [n_classes] store index of each class's first image */
    size_t *class_count;  /* [n_classes] */
    char **names;         /* [n_classes], NUL-terminated */
    mnas__image_store *store; /* images of a class are contiguous in it */
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

/* An empty dataset with room for n_classes classes and a new store of
 * n_images empty records, converted to [c, h, w] with the alpha and resize
 * rules (names unset); NULL with a message naming fn. */
mnas_image_dataset *mnas__image_dataset_alloc(mnas_ctx *ctx, const char *fn, size_t n_classes,
                                              size_t n_images, int c, int h, int w, int alpha, int resize);
/* Bytes of one record's data. */
size_t mnas__image_rec_bytes(const mnas__image_rec *r);
/* Should an image of src_c x h x w samples of enc bytes be kept as it is
 * (1) or converted at load (0), for a dataset of [C, H, W]? */
int mnas__image_keep_raw(int src_c, int h, int w, int enc, int C, int H, int W);
/* After the loader has filled every record: work space and byte counts. */
void mnas__image_store_finish(mnas__image_store *s);
/* Image k of the store (a store index) as float [C, H, W] into out; work
 * holds s->work floats (may be NULL when s->work is 0). */
void mnas__image_get(const mnas__image_store *s, size_t k, float *out, float *work);
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

/* A decoded PNG: samples [h, w, c] interleaved, enc (MNAS__ENC_U8 or _U16)
 * bytes each, 16-bit ones big-endian; data from the context allocator. */
typedef struct mnas__png_image {
    unsigned char *data;
    int c, h, w, enc;
} mnas__png_image;

/* Decode one PNG held in memory; name is used in messages. */
mnas_status mnas__png_decode(mnas_ctx *ctx, const char *fn, const char *name, const unsigned char *buf, size_t len,
                             mnas__png_image *out);
/* Samples [h, w, c] of enc bytes to planar float [c, h, w] in [0, 1]
 * (v / 255 or v / 65535, in float); u8 (may be NULL) is the table of
 * mnas__image_u8_table, which gives the same values without dividing. */
void mnas__image_samples_to_float(const void *data, int c, int h, int w, int enc, const float *u8, float *out);
/* table[v] = v / 255 in float, v = 0..255. */
void mnas__image_u8_table(float table[256]);

/* ---- the decoded cache (image_cache.c) -------------------------------- */

/* Try to read the cache at path for the listing key; NULL (no message kept)
 * when it is missing, stale or corrupt. keep_size: the options keep the
 * images' size, so every source image must have the dataset's. */
mnas_image_dataset *mnas__image_cache_read(mnas_ctx *ctx, const char *path, uint64_t key, int keep_size);
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
