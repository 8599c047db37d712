/* Class-folder datasets (MiniImagenet / Omniglot layout): listing the
 * folders in byte order, decoding every PNG, and the decoded cache keyed by
 * the listing (names, sizes, modification times) and the options. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/image_internal.h"

static const char k_fn[] = "mnas_image_dataset_load_folder";

typedef struct file_entry {
    char *name;
    uint64_t size;
    int64_t mtime_s;
    int64_t mtime_ns;
} file_entry;

typedef struct class_entry {
    char *name;
    file_entry *files;
    size_t n, cap;
} class_entry;

typedef struct listing {
    mnas_ctx *ctx;
    class_entry *classes;
    size_t n, cap;
} listing;

/* Room for one more element in a growable array (the hooks have no realloc). */
static int grow(mnas_ctx *ctx, void **items, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return 1;
    size_t nc = *cap ? *cap * 2 : 16, bytes;
    if (!mnas__mul_ok(nc, elem, &bytes)) return 0;
    void *p = mnas__alloc(ctx, bytes);
    if (!p) return 0;
    if (n) memcpy(p, *items, n * elem);
    mnas__free(ctx, *items);
    *items = p;
    *cap = nc;
    return 1;
}

static void listing_free(listing *l)
{
    for (size_t c = 0; c < l->n; c++) {
        for (size_t i = 0; i < l->classes[c].n; i++) mnas__free(l->ctx, l->classes[c].files[i].name);
        mnas__free(l->ctx, l->classes[c].files);
        mnas__free(l->ctx, l->classes[c].name);
    }
    mnas__free(l->ctx, l->classes);
}

static char *join(mnas_ctx *ctx, const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = mnas__alloc(ctx, na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static int cmp_class(const void *a, const void *b)
{
    return strcmp(((const class_entry *)a)->name, ((const class_entry *)b)->name);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const file_entry *)a)->name, ((const file_entry *)b)->name);
}

#define NOMEM() mnas__error(ctx, MNAS_E_NOMEM, "%s: out of memory listing %s", k_fn, root)

/* Every non-hidden sub-folder of root is a class; every non-hidden regular
 * file inside one an image. */
static mnas_status list_folder(mnas_ctx *ctx, const char *root, listing *l)
{
    DIR *dir = opendir(root);
    if (!dir) return mnas__error(ctx, MNAS_E_IO, "%s: cannot open the folder %s: %s", k_fn, root, strerror(errno));
    mnas_status st = MNAS_OK;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = join(ctx, root, e->d_name);
        if (!p) {
            st = NOMEM();
            break;
        }
        struct stat sb;
        int is_dir = stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
        mnas__free(ctx, p);
        if (!is_dir) continue;
        if (!grow(ctx, (void **)&l->classes, &l->cap, l->n, sizeof *l->classes)) {
            st = NOMEM();
            break;
        }
        class_entry *c = &l->classes[l->n];
        memset(c, 0, sizeof *c);
        c->name = mnas__strdup(ctx, e->d_name);
        if (!c->name) {
            st = NOMEM();
            break;
        }
        l->n++;
    }
    closedir(dir);
    if (st != MNAS_OK) return st;
    if (l->n == 0)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %s has no class sub-folders", k_fn, root);
    qsort(l->classes, l->n, sizeof *l->classes, cmp_class);
    for (size_t k = 0; k < l->n && st == MNAS_OK; k++) {
        class_entry *c = &l->classes[k];
        char *cdir = join(ctx, root, c->name);
        if (!cdir) return NOMEM();
        DIR *d = opendir(cdir);
        if (!d) {
            st = mnas__error(ctx, MNAS_E_IO, "%s: cannot open the class folder %s: %s", k_fn, cdir, strerror(errno));
            mnas__free(ctx, cdir);
            break;
        }
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char *p = join(ctx, cdir, e->d_name);
            if (!p) {
                st = NOMEM();
                break;
            }
            struct stat sb;
            int ok = stat(p, &sb) == 0;
            mnas__free(ctx, p);
            if (!ok || !S_ISREG(sb.st_mode)) continue;
            if (!grow(ctx, (void **)&c->files, &c->cap, c->n, sizeof *c->files)) {
                st = NOMEM();
                break;
            }
            file_entry *f = &c->files[c->n];
            f->name = mnas__strdup(ctx, e->d_name);
            if (!f->name) {
                st = NOMEM();
                break;
            }
            f->size = (uint64_t)sb.st_size;
            f->mtime_s = (int64_t)sb.st_mtim.tv_sec;
            f->mtime_ns = (int64_t)sb.st_mtim.tv_nsec;
            c->n++;
        }
        closedir(d);
        if (st == MNAS_OK && c->n == 0)
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: the class folder %s is empty (no image files)", k_fn, cdir);
        mnas__free(ctx, cdir);
        if (st == MNAS_OK) qsort(c->files, c->n, sizeof *c->files, cmp_file);
    }
    return st;
}

static uint64_t hash_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    return mnas__fnv1a(h, b, 8);
}

/* The cache key: everything that decides the decoded pixels. */
static uint64_t listing_key(const listing *l, const mnas_image_load_options *o)
{
    uint64_t h = mnas__fnv1a(MNAS_FNV_OFFSET, "mnas-image-cache-2", 18);
    const int64_t opt[5] = { o->channels, o->height, o->width, o->resize, o->alpha };
    for (int i = 0; i < 5; i++) h = hash_u64(h, (uint64_t)opt[i]);
    h = hash_u64(h, l->n);
    for (size_t c = 0; c < l->n; c++) {
        h = mnas__fnv1a(h, l->classes[c].name, strlen(l->classes[c].name) + 1);
        h = hash_u64(h, l->classes[c].n);
        for (size_t i = 0; i < l->classes[c].n; i++) {
            const file_entry *f = &l->classes[c].files[i];
            h = mnas__fnv1a(h, f->name, strlen(f->name) + 1);
            h = hash_u64(h, f->size);
            h = hash_u64(h, (uint64_t)f->mtime_s);
            h = hash_u64(h, (uint64_t)f->mtime_ns);
        }
    }
    return h;
}

/* Read and decode one file; on failure the message names it. */
static mnas_status decode_file(mnas_ctx *ctx, const char *path, mnas__png_image *raw)
{
    unsigned char *buf;
    size_t len;
    mnas_status st = mnas__read_file(ctx, k_fn, path, &buf, &len);
    if (st != MNAS_OK) return st;
    st = mnas__png_decode(ctx, k_fn, path, buf, len, raw);
    mnas__free(ctx, buf);
    return st;
}

static mnas_image_dataset *decode_all(mnas_ctx *ctx, const char *root, const listing *l,
                                      const mnas_image_load_options *o)
{
    size_t total = 0;
    for (size_t c = 0; c < l->n; c++) total += l->classes[c].n;
    mnas_image_dataset *ds = NULL;
    float *scratch = NULL;
    size_t scratch_cap = 0;
    const size_t f32 = sizeof(float);
    int channels = o->channels, h = o->height, w = o->width;
    size_t img = 0;
    mnas_status st = MNAS_OK;
    for (size_t c = 0; c < l->n && st == MNAS_OK; c++) {
        char *cdir = join(ctx, root, l->classes[c].name);
        if (!cdir) {
            st = NOMEM();
            break;
        }
        for (size_t i = 0; i < l->classes[c].n && st == MNAS_OK; i++) {
            char *path = join(ctx, cdir, l->classes[c].files[i].name);
            if (!path) {
                st = NOMEM();
                break;
            }
            mnas__png_image raw;
            st = decode_file(ctx, path, &raw);
            if (st == MNAS_OK && !ds) {
                /* The first image fixes what the options leave open. */
                if (channels == 0) channels = raw.c >= 3 ? 3 : 1;
                if (h == 0) {
                    h = raw.h;
                    w = raw.w;
                }
                ds = mnas__image_dataset_alloc(ctx, k_fn, l->n, total, channels, h, w, o->alpha, o->resize);
                if (!ds) st = MNAS_E_NOMEM;
                else ds->store->own_each = 1;
            }
            if (st == MNAS_OK && o->height == 0 && (raw.h != h || raw.w != w))
                st = mnas__error(ctx, MNAS_E_SHAPE,
                                 "%s: %s is %dx%d (width x height) but the first image is %dx%d; "
                                 "set height and width to resize",
                                 k_fn, path, raw.w, raw.h, w, h);
            if (st == MNAS_OK && (raw.w > MNAS_IMAGE_MAX_DOWNSCALE * w || raw.h > MNAS_IMAGE_MAX_DOWNSCALE * h))
                st = mnas__error(ctx, MNAS_E_UNSUPPORTED, "%s: %s (%dx%d) would shrink by more than %dx", k_fn, path,
                                 raw.w, raw.h, MNAS_IMAGE_MAX_DOWNSCALE);
            /* Kept as decoded (converted when read) unless its samples
             * outweigh the converted floats: then converted now. */
            const int keep = st == MNAS_OK && mnas__image_keep_raw(raw.c, raw.h, raw.w, raw.enc, channels, h, w);
            float *conv = NULL;
            if (st == MNAS_OK && !keep) {
                const mnas__raw_image fr = { NULL, raw.c, raw.h, raw.w };
                size_t plane = (size_t)raw.c * (size_t)raw.h * (size_t)raw.w;
                size_t need = plane + mnas__image_scratch_floats(&fr, channels, h, w);
                if (need > scratch_cap) {
                    mnas__free(ctx, scratch);
                    scratch = mnas__alloc(ctx, need * f32);
                    scratch_cap = scratch ? need : 0;
                }
                conv = scratch ? mnas__alloc(ctx, mnas__image_floats(ds) * f32) : NULL;
                if (!conv) {
                    st = NOMEM();
                } else {
                    mnas__raw_image fl = { scratch, raw.c, raw.h, raw.w };
                    mnas__image_samples_to_float(raw.data, raw.c, raw.h, raw.w, raw.enc, NULL, scratch);
                    mnas__image_convert(&fl, channels, o->alpha, o->resize, h, w, conv, scratch + plane);
                }
            }
            if (st == MNAS_OK) {
                mnas__image_rec *r = &ds->store->recs[img];
                if (keep) {
                    r->data = raw.data;
                    raw.data = NULL;
                    r->c = (uint8_t)raw.c;
                    r->h = raw.h;
                    r->w = raw.w;
                    r->enc = (uint8_t)raw.enc;
                } else {
                    mnas__free(ctx, raw.data);
                    raw.data = NULL;
                    r->data = conv;
                    r->c = (uint8_t)channels;
                    r->h = h;
                    r->w = w;
                    r->enc = MNAS__ENC_F32;
                }
                img++;
            }
            mnas__free(ctx, raw.data);
            mnas__free(ctx, path);
        }
        mnas__free(ctx, cdir);
        if (st == MNAS_OK) {
            ds->names[c] = mnas__strdup(ctx, l->classes[c].name);
            if (!ds->names[c]) st = NOMEM();
            ds->class_count[c] = l->classes[c].n;
            ds->class_start[c] = img - l->classes[c].n;
        }
    }
    mnas__free(ctx, scratch);
    if (st != MNAS_OK) {
        mnas_image_dataset_free(ds);
        return NULL;
    }
    mnas__image_store_finish(ds->store);
    return ds;
}

mnas_image_dataset *mnas_image_dataset_load_folder(mnas_ctx *ctx, const char *path,
                                                   const mnas_image_load_options *opts)
{
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (!path) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL", k_fn);
        return NULL;
    }
    mnas_image_load_options o;
    if (mnas__image_read_options(ctx, k_fn, opts, &o) != MNAS_OK) return NULL;
    listing l = { ctx, NULL, 0, 0 };
    const char *root = path;
    mnas_image_dataset *ds = NULL;
    if (list_folder(ctx, root, &l) == MNAS_OK) {
        uint64_t key = listing_key(&l, &o);
        if (o.cache_path) ds = mnas__image_cache_read(ctx, o.cache_path, key, o.height == 0);
        if (ds) {
            ds->from_cache = 1;
        } else {
            ds = decode_all(ctx, root, &l, &o);
            if (ds && o.cache_path) (void)mnas__image_cache_write(ctx, o.cache_path, key, ds);
        }
    }
    listing_free(&l);
    return ds;
}
