/* IDX datasets (MNIST, Fashion-MNIST): unsigned-byte image and label files,
 * plain or gzip-compressed (inflated with zlib through the context's
 * allocator), validated against their headers. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "data/image_internal.h"

static const char k_fn[] = "mnas_image_dataset_load_idx";

static voidpf z_alloc(voidpf user, uInt n, uInt size)
{
    return mnas__calloc((mnas_ctx *)user, n, size);
}

static void z_free(voidpf user, voidpf p) { mnas__free((mnas_ctx *)user, p); }

/* Inflate a gzip file held in memory; *out replaces nothing on failure. */
static mnas_status gunzip(mnas_ctx *ctx, const char *path, const unsigned char *in, size_t in_len,
                          unsigned char **out, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_alloc;
    z.zfree = z_free;
    z.opaque = ctx;
    if (inflateInit2(&z, 15 + 16) != Z_OK) /* gzip wrapper only */
        return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot start zlib for %s", k_fn, path);
    size_t cap = in_len * 4 + 1024, n = 0;
    unsigned char *buf = mnas__alloc(ctx, cap);
    mnas_status st = MNAS_OK;
    if (!buf) st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes for %s", k_fn, cap, path);
    size_t in_pos = 0;
    int r = Z_OK;
    while (st == MNAS_OK) {
        if (n == cap) {
            size_t nc = cap * 2;
            unsigned char *nb = nc > cap ? mnas__alloc(ctx, nc) : NULL;
            if (!nb) {
                st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes to inflate %s", k_fn, nc, path);
                break;
            }
            memcpy(nb, buf, n);
            mnas__free(ctx, buf);
            buf = nb;
            cap = nc;
        }
        size_t in_avail = in_len - in_pos, out_avail = cap - n;
        z.next_in = (Bytef *)(uintptr_t)(in + in_pos);
        z.avail_in = in_avail > 0x40000000u ? 0x40000000u : (uInt)in_avail;
        z.next_out = buf + n;
        z.avail_out = out_avail > 0x40000000u ? 0x40000000u : (uInt)out_avail;
        uInt ai = z.avail_in, ao = z.avail_out;
        r = inflate(&z, Z_NO_FLUSH);
        in_pos += ai - z.avail_in;
        n += ao - z.avail_out;
        if (r == Z_STREAM_END) {
            if (in_pos != in_len) {
                /* Concatenated gzip members are valid gzip: go on with the next one. */
                if (inflateReset(&z) != Z_OK) st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: zlib reset failed", k_fn, path);
                continue;
            }
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            st = mnas__error(ctx, r == Z_MEM_ERROR ? MNAS_E_NOMEM : MNAS_E_FORMAT, "%s: %s is a corrupt gzip file: %s",
                             k_fn, path, z.msg ? z.msg : "inflate failed");
            break;
        }
        /* All input used, room left, no end of stream: the file stops early. */
        if (in_pos == in_len && z.avail_out != 0) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s is a truncated gzip file (the stream ends early)", k_fn, path);
            break;
        }
    }
    inflateEnd(&z);
    if (st != MNAS_OK) {
        mnas__free(ctx, buf);
        return st;
    }
    *out = buf;
    *out_len = n;
    return MNAS_OK;
}

/* Read an IDX file (gunzipped if it starts with the gzip magic) and check
 * its header: unsigned bytes, ndim dims, the file exactly as long as the
 * header says. */
static mnas_status read_idx(mnas_ctx *ctx, const char *path, int ndim, const char *what, unsigned char **data,
                            uint32_t dims[3])
{
    unsigned char *raw;
    size_t len;
    mnas_status st = mnas__read_file(ctx, k_fn, path, &raw, &len);
    if (st != MNAS_OK) return st;
    if (len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        unsigned char *plain = NULL;
        size_t plen = 0;
        st = gunzip(ctx, path, raw, len, &plain, &plen);
        mnas__free(ctx, raw);
        if (st != MNAS_OK) return st;
        raw = plain;
        len = plen;
    }
    size_t head = 4 + 4 * (size_t)ndim;
    if (len < 4 || raw[0] != 0 || raw[1] != 0) {
        st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s is not an IDX file (wrong magic: it must start with two zero bytes)",
                         k_fn, path);
    } else if (raw[2] != 0x08) {
        st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: IDX data type 0x%02x is not unsigned byte (0x08)", k_fn, path,
                         raw[2]);
    } else if (raw[3] != ndim) {
        st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: IDX magic says %d dimensions; %s files have %d", k_fn, path,
                         raw[3], what, ndim);
    } else if (len < head) {
        st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: truncated IDX header (%zu bytes)", k_fn, path, len);
    } else {
        uint64_t expect = 1;
        for (int i = 0; i < ndim; i++) {
            const unsigned char *b = raw + 4 + 4 * i;
            dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            expect *= dims[i];
            if (expect > ((uint64_t)1 << 40)) break;
        }
        if (expect + head != (uint64_t)len)
            st = mnas__error(ctx, MNAS_E_FORMAT,
                             "%s: %s: size mismatch: the IDX header says %llu data bytes, the file has %zu", k_fn, path,
                             (unsigned long long)expect, len - head);
    }
    if (st != MNAS_OK) {
        mnas__free(ctx, raw);
        return st;
    }
    *data = raw;
    return MNAS_OK;
}

mnas_image_dataset *mnas_image_dataset_load_idx(mnas_ctx *ctx, const char *images_path, const char *labels_path,
                                                const mnas_image_load_options *opts)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!images_path || !labels_path) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %s is NULL", k_fn, images_path ? "labels_path" : "images_path");
        return NULL;
    }
    mnas_image_load_options o;
    if (mnas__image_read_options(ctx, k_fn, opts, &o) != MNAS_OK) return NULL;
    unsigned char *img = NULL, *lab = NULL;
    uint32_t idim[3] = { 0 }, ldim[3] = { 0 };
    mnas_image_dataset *ds = NULL;
    float *scratch = NULL, *src = NULL;
    if (read_idx(ctx, images_path, 3, "image", &img, idim) != MNAS_OK) goto done;
    if (read_idx(ctx, labels_path, 1, "label", &lab, ldim) != MNAS_OK) goto done;
    if (idim[0] != ldim[0]) {
        mnas__error(ctx, MNAS_E_FORMAT, "%s: label/image count mismatch: %s has %u images but %s has %u labels", k_fn,
                    images_path, idim[0], labels_path, ldim[0]);
        goto done;
    }
    if (idim[0] == 0 || idim[1] == 0 || idim[2] == 0 || idim[1] > MNAS_IMAGE_MAX_SIDE || idim[2] > MNAS_IMAGE_MAX_SIDE) {
        mnas__error(ctx, MNAS_E_FORMAT, "%s: %s holds %u images of %ux%u: nothing to load or too large", k_fn,
                    images_path, idim[0], idim[1], idim[2]);
        goto done;
    }
    const int rows = (int)idim[1], cols = (int)idim[2];
    const int h = o.height ? o.height : rows, w = o.width ? o.width : cols;
    const int channels = o.channels ? o.channels : 1;
    if (rows > MNAS_IMAGE_MAX_DOWNSCALE * h || cols > MNAS_IMAGE_MAX_DOWNSCALE * w) {
        mnas__error(ctx, MNAS_E_UNSUPPORTED, "%s: images would shrink by more than %dx", k_fn, MNAS_IMAGE_MAX_DOWNSCALE);
        goto done;
    }
    const unsigned char *labels = lab + 8, *pixels = img + 16;
    /* Labels are bytes (< 256): count per value, classes = values present. */
    size_t count[256] = { 0 }, start[256], cls_of[256];
    for (uint32_t i = 0; i < idim[0]; i++) count[labels[i]]++;
    size_t n_classes = 0;
    for (int v = 0; v < 256; v++)
        if (count[v]) cls_of[v] = n_classes++;
    ds = mnas__image_dataset_alloc(ctx, k_fn, n_classes, idim[0], channels, h, w, o.alpha, o.resize);
    if (!ds) goto done;
    size_t s = 0;
    for (int v = 0; v < 256; v++) {
        if (!count[v]) continue;
        char name[16];
        snprintf(name, sizeof name, "%d", v);
        size_t c = cls_of[v];
        ds->names[c] = mnas__strdup(ctx, name);
        if (!ds->names[c]) {
            mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory", k_fn);
            mnas_image_dataset_free(ds);
            ds = NULL;
            goto done;
        }
        ds->class_start[c] = start[v] = s;
        ds->class_count[c] = count[v];
        s += count[v];
    }
    /* The images are kept as bytes, in class order, in one block of their
     * exact size (converted when read); only when their bytes outweigh the
     * converted floats are they converted now, into one float block. */
    mnas__image_store *st = ds->store;
    const size_t plane = (size_t)rows * (size_t)cols, per = mnas__image_floats(ds);
    const int keep = mnas__image_keep_raw(1, rows, cols, MNAS__ENC_U8, channels, h, w);
    float *conv = NULL;
    if (!keep) {
        mnas__raw_image raw = { NULL, 1, rows, cols };
        src = mnas__alloc(ctx, sizeof(float) * plane);
        scratch = mnas__alloc(ctx, sizeof(float) * mnas__image_scratch_floats(&raw, channels, h, w));
        conv = src && scratch && per <= SIZE_MAX / sizeof(float) / idim[0]
                   ? mnas__alloc(ctx, sizeof(float) * per * idim[0])
                   : NULL;
        if (!conv) {
            mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory", k_fn);
            mnas_image_dataset_free(ds);
            ds = NULL;
            goto done;
        }
        st->blob = conv;
    } else {
        st->blob = mnas__alloc(ctx, plane * idim[0]);
        if (!st->blob) {
            mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes of pixels", k_fn, plane * idim[0]);
            mnas_image_dataset_free(ds);
            ds = NULL;
            goto done;
        }
    }
    for (uint32_t i = 0; i < idim[0]; i++) {
        const unsigned char *p = pixels + (size_t)i * plane;
        size_t slot = start[labels[i]]++; /* file order within a class */
        mnas__image_rec *r = &st->recs[slot];
        if (keep) {
            unsigned char *dst = (unsigned char *)st->blob + slot * plane;
            memcpy(dst, p, plane);
            r->data = dst;
            r->c = 1;
            r->h = rows;
            r->w = cols;
            r->enc = MNAS__ENC_U8;
        } else {
            mnas__raw_image raw = { src, 1, rows, cols };
            mnas__image_samples_to_float(p, 1, rows, cols, MNAS__ENC_U8, NULL, src);
            mnas__image_convert(&raw, channels, o.alpha, o.resize, h, w, conv + slot * per, scratch);
            r->data = conv + slot * per;
            r->c = (uint8_t)channels;
            r->h = h;
            r->w = w;
            r->enc = MNAS__ENC_F32;
        }
    }
    mnas__image_store_finish(st);
done:
    mnas__free(ctx, img);
    mnas__free(ctx, lab);
    mnas__free(ctx, src);
    mnas__free(ctx, scratch);
    return ds;
}
