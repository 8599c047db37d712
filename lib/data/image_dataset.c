/* Image datasets: the container (classes of [C, H, W] images with names)
 * and its shared pixel store, the accessors, datasets from caller pixels,
 * class subsets and the train/val/test class splits (which share the
 * store). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/image_internal.h"

char *mnas__strdup(mnas_ctx *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mnas__alloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- the pixel store ----------------------------------------------------- */

static void store_release(mnas__image_store *st)
{
    if (!st) return;
    if (atomic_fetch_sub(&st->refs, 1) != 1) return;
    mnas_ctx *ctx = st->ctx;
    if (st->own_each && st->recs)
        for (size_t i = 0; i < st->n; i++) mnas__free(ctx, (void *)st->recs[i].data);
    mnas__free(ctx, st->blob);
    mnas__free(ctx, st->recs);
    mnas__free(ctx, st);
}

size_t mnas__image_rec_bytes(const mnas__image_rec *r)
{
    return (size_t)r->c * (size_t)r->h * (size_t)r->w * (size_t)r->enc;
}

int mnas__image_keep_raw(int src_c, int h, int w, int enc, int C, int H, int W)
{
    const uint64_t raw = (uint64_t)src_c * (uint64_t)h * (uint64_t)w * (uint64_t)enc;
    const uint64_t conv = (uint64_t)C * (uint64_t)H * (uint64_t)W * sizeof(float);
    return raw <= conv;
}

void mnas__image_store_finish(mnas__image_store *s)
{
    size_t work = 0, bytes = 0;
    for (size_t i = 0; i < s->n; i++) {
        const mnas__image_rec *r = &s->recs[i];
        bytes += mnas__image_rec_bytes(r);
        if (r->enc == MNAS__ENC_F32) continue;
        const mnas__raw_image raw = { NULL, r->c, r->h, r->w };
        size_t need = (size_t)r->c * (size_t)r->h * (size_t)r->w +
                      mnas__image_scratch_floats(&raw, s->channels, s->height, s->width);
        if (need > work) work = need;
    }
    s->work = work;
    s->bytes = bytes;
}

void mnas__image_get(const mnas__image_store *s, size_t k, float *out, float *work)
{
    const mnas__image_rec *r = &s->recs[k];
    if (r->enc == MNAS__ENC_F32) {
        memcpy(out, r->data, sizeof(float) * (size_t)s->channels * (size_t)s->height * (size_t)s->width);
        return;
    }
    /* The loaders' conversion, on the samples as they were decoded. */
    mnas__raw_image raw = { work, r->c, r->h, r->w };
    mnas__image_samples_to_float(r->data, r->c, r->h, r->w, r->enc, s->u8, work);
    mnas__image_convert(&raw, s->channels, s->alpha, s->resize, s->height, s->width, out,
                        work + (size_t)r->c * (size_t)r->h * (size_t)r->w);
}

/* A dataset with its class tables and no store. */
static mnas_image_dataset *dataset_new(mnas_ctx *ctx, size_t n_classes, size_t n_images, int c, int h, int w)
{
    mnas_image_dataset *d = mnas__calloc(ctx, 1, sizeof *d);
    if (!d) return NULL;
    d->magic = MNAS_IMAGE_DATASET_MAGIC;
    d->ctx = ctx;
    d->channels = c;
    d->height = h;
    d->width = w;
    d->n_classes = n_classes;
    d->n_images = n_images;
    d->class_start = mnas__calloc(ctx, n_classes ? n_classes : 1, sizeof *d->class_start);
    d->class_count = mnas__calloc(ctx, n_classes ? n_classes : 1, sizeof *d->class_count);
    d->names = mnas__calloc(ctx, n_classes ? n_classes : 1, sizeof *d->names);
    if (!d->class_start || !d->class_count || !d->names) {
        mnas_image_dataset_free(d);
        return NULL;
    }
    return d;
}

mnas_image_dataset *mnas__image_dataset_alloc(mnas_ctx *ctx, const char *fn, size_t n_classes,
                                              size_t n_images, int c, int h, int w, int alpha, int resize)
{
    size_t recs;
    if (!mnas__mul_ok(n_images ? n_images : 1, sizeof(mnas__image_rec), &recs)) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: %zu images do not fit in memory", fn, n_images);
        return NULL;
    }
    mnas_image_dataset *d = dataset_new(ctx, n_classes, n_images, c, h, w);
    mnas__image_store *st = d ? mnas__calloc(ctx, 1, sizeof *st) : NULL;
    if (st) {
        st->ctx = ctx;
        atomic_init(&st->refs, 1);
        st->n = n_images;
        st->channels = c;
        st->height = h;
        st->width = w;
        st->alpha = alpha;
        st->resize = resize;
        mnas__image_u8_table(st->u8);
        d->store = st;
        st->recs = mnas__calloc(ctx, n_images ? n_images : 1, sizeof *st->recs);
    }
    if (!st || !st->recs) {
        mnas_image_dataset_free(d);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a dataset of %zu images of [%d, %d, %d]", fn, n_images,
                    c, h, w);
        return NULL;
    }
    return d;
}

void mnas_image_dataset_free(mnas_image_dataset *ds)
{
    if (!mnas__image_dataset_ok(ds)) return;
    mnas_ctx *ctx = ds->ctx;
    if (ds->names)
        for (size_t i = 0; i < ds->n_classes; i++) mnas__free(ctx, ds->names[i]);
    mnas__free(ctx, ds->names);
    mnas__free(ctx, ds->class_start);
    mnas__free(ctx, ds->class_count);
    store_release(ds->store);
    ds->magic = 0;
    mnas__free(ctx, ds);
}

mnas_status mnas__image_read_options(mnas_ctx *ctx, const char *fn, const mnas_image_load_options *opts,
                                     mnas_image_load_options *o)
{
    const mnas_image_load_options defaults = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    *o = defaults;
    if (opts) {
        if (opts->struct_size != sizeof *opts)
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: options struct_size is %zu, this library knows %zu "
                               "(initialise with MNAS_IMAGE_LOAD_OPTIONS_INIT)",
                               fn, opts->struct_size, sizeof *opts);
        *o = *opts;
    }
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: channels %d is not 0 (as the images), 1 or 3", fn, o->channels);
    if ((o->height == 0) != (o->width == 0) || o->height < 0 || o->width < 0 || o->height > MNAS_IMAGE_MAX_SIDE ||
        o->width > MNAS_IMAGE_MAX_SIDE)
        return mnas__error(ctx, MNAS_E_INVALID,
                           "%s: height %d and width %d must both be 0 (keep sizes) or both in 1..%d", fn, o->height,
                           o->width, MNAS_IMAGE_MAX_SIDE);
    if (o->resize != MNAS_RESIZE_AREA && o->resize != MNAS_RESIZE_BILINEAR)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: resize %d is not a mnas_image_resize", fn, o->resize);
    if (o->alpha != MNAS_ALPHA_WHITE && o->alpha != MNAS_ALPHA_DROP)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: alpha %d is not a mnas_image_alpha", fn, o->alpha);
    return MNAS_OK;
}

mnas_status mnas__read_file(mnas_ctx *ctx, const char *fn, const char *path, unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mnas__error(ctx, MNAS_E_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = mnas__alloc(ctx, cap);
    if (!buf) {
        fclose(f);
        return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a buffer for %s", fn, path);
    }
    for (;;) {
        if (n == cap) {
            if (cap > SIZE_MAX / 2) break;
            unsigned char *nb = mnas__alloc(ctx, cap * 2);
            if (!nb) {
                mnas__free(ctx, buf);
                fclose(f);
                return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes to read %s", fn, cap * 2, path);
            }
            memcpy(nb, buf, n);
            mnas__free(ctx, buf);
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        mnas__free(ctx, buf);
        return mnas__error(ctx, MNAS_E_IO, "%s: error reading %s", fn, path);
    }
    *data = buf;
    *len = n;
    return MNAS_OK;
}

/* ---- accessors --------------------------------------------------------- */

size_t mnas_image_dataset_num_classes(const mnas_image_dataset *ds)
{
    return mnas__image_dataset_ok(ds) ? ds->n_classes : 0;
}

size_t mnas_image_dataset_num_images(const mnas_image_dataset *ds)
{
    return mnas__image_dataset_ok(ds) ? ds->n_images : 0;
}

size_t mnas_image_dataset_class_size(const mnas_image_dataset *ds, size_t cls)
{
    if (!mnas__image_dataset_ok(ds) || cls >= ds->n_classes) return 0;
    return ds->class_count[cls];
}

const char *mnas_image_dataset_class_name(const mnas_image_dataset *ds, size_t cls)
{
    if (!mnas__image_dataset_ok(ds) || cls >= ds->n_classes) return NULL;
    return ds->names[cls];
}

int64_t mnas_image_dataset_find_class(const mnas_image_dataset *ds, const char *name)
{
    if (!mnas__image_dataset_ok(ds) || !name) return -1;
    for (size_t i = 0; i < ds->n_classes; i++)
        if (strcmp(ds->names[i], name) == 0) return (int64_t)i;
    return -1;
}

mnas_status mnas_image_dataset_shape(const mnas_image_dataset *ds, int64_t shape[3])
{
    if (!mnas__image_dataset_ok(ds)) return MNAS_E_INVALID;
    if (!shape) return mnas__error(ds->ctx, MNAS_E_INVALID, "mnas_image_dataset_shape: shape is NULL");
    shape[0] = ds->channels;
    shape[1] = ds->height;
    shape[2] = ds->width;
    return MNAS_OK;
}

mnas_status mnas_image_dataset_copy_image(const mnas_image_dataset *ds, size_t cls, size_t i, mnas_real *out,
                                          size_t out_len)
{
    static const char fn[] = "mnas_image_dataset_copy_image";
    if (!mnas__image_dataset_ok(ds)) return MNAS_E_INVALID;
    if (cls >= ds->n_classes)
        return mnas__error(ds->ctx, MNAS_E_INVALID, "%s: class %zu is out of range (%zu classes)", fn, cls,
                           ds->n_classes);
    if (i >= ds->class_count[cls])
        return mnas__error(ds->ctx, MNAS_E_INVALID, "%s: image %zu is out of range (class %zu has %zu)", fn, i, cls,
                           ds->class_count[cls]);
    size_t per = mnas__image_floats(ds);
    if (!out) return mnas__error(ds->ctx, MNAS_E_INVALID, "%s: out is NULL", fn);
    if (out_len < per)
        return mnas__error(ds->ctx, MNAS_E_SHAPE, "%s: out holds %zu values, an image has %zu", fn, out_len, per);
    const mnas__image_store *st = ds->store;
    float *tmp = mnas__alloc(ds->ctx, sizeof(float) * (per + st->work));
    if (!tmp) return mnas__error(ds->ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu floats of work space", fn, per + st->work);
    mnas__image_get(st, ds->class_start[cls] + i, tmp, tmp + per);
    for (size_t k = 0; k < per; k++) out[k] = (mnas_real)tmp[k];
    mnas__free(ds->ctx, tmp);
    return MNAS_OK;
}

int mnas_image_dataset_from_cache(const mnas_image_dataset *ds)
{
    return mnas__image_dataset_ok(ds) ? ds->from_cache : 0;
}

/* ---- datasets from caller pixels, subsets ------------------------------- */

mnas_image_dataset *mnas_image_dataset_create(mnas_ctx *ctx, size_t n_classes, const size_t *counts,
                                              const char *const *names, int channels, int height, int width,
                                              const mnas_real *data)
{
    static const char fn[] = "mnas_image_dataset_create";
    if (!mnas__ctx_ok(ctx)) return NULL;
    if (n_classes == 0 || n_classes > MNAS_IMAGE_MAX_CLASSES) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: n_classes %zu is outside 1..%u", fn, n_classes, MNAS_IMAGE_MAX_CLASSES);
        return NULL;
    }
    if (!counts || !data) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: %s is NULL", fn, counts ? "data" : "counts");
        return NULL;
    }
    if ((channels != 1 && channels != 3) || height < 1 || width < 1 || height > MNAS_IMAGE_MAX_SIDE ||
        width > MNAS_IMAGE_MAX_SIDE) {
        mnas__error(ctx, MNAS_E_INVALID, "%s: image shape [%d, %d, %d] needs 1 or 3 channels and sides in 1..%d", fn,
                    channels, height, width, MNAS_IMAGE_MAX_SIDE);
        return NULL;
    }
    size_t total = 0;
    for (size_t c = 0; c < n_classes; c++) {
        if (counts[c] == 0) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: class %zu has no images", fn, c);
            return NULL;
        }
        if (counts[c] > SIZE_MAX - total) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: the image counts overflow", fn);
            return NULL;
        }
        total += counts[c];
    }
    for (size_t c = 0; names && c < n_classes; c++)
        if (!names[c]) {
            mnas__error(ctx, MNAS_E_INVALID, "%s: names[%zu] is NULL", fn, c);
            return NULL;
        }
    size_t per = (size_t)channels * (size_t)height * (size_t)width, all, bytes;
    if (!mnas__mul_ok(per, total, &all) || !mnas__mul_ok(all, sizeof(float), &bytes)) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: %zu images of [%d, %d, %d] do not fit in memory", fn, total, channels,
                    height, width);
        return NULL;
    }
    for (size_t k = 0; k < all; k++)
        if (!isfinite((double)data[k])) {
            mnas__error(ctx, MNAS_E_NUMERIC, "%s: data holds a non-finite value at element %zu", fn, k);
            return NULL;
        }
    /* Caller pixels are kept as float at their shape (MNAS__ENC_F32). */
    mnas_image_dataset *d =
        mnas__image_dataset_alloc(ctx, fn, n_classes, total, channels, height, width, MNAS_ALPHA_WHITE, MNAS_RESIZE_AREA);
    if (!d) return NULL;
    float *px = mnas__alloc(ctx, bytes);
    if (!px) {
        mnas_image_dataset_free(d);
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes of pixels", fn, bytes);
        return NULL;
    }
    d->store->blob = px;
    for (size_t k = 0; k < all; k++) px[k] = (float)data[k];
    for (size_t i = 0; i < total; i++) {
        mnas__image_rec *r = &d->store->recs[i];
        r->data = px + i * per;
        r->c = (uint8_t)channels;
        r->h = height;
        r->w = width;
        r->enc = MNAS__ENC_F32;
    }
    mnas__image_store_finish(d->store);
    size_t start = 0;
    for (size_t c = 0; c < n_classes; c++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", c);
        d->names[c] = mnas__strdup(ctx, names ? names[c] : num);
        if (!d->names[c]) {
            mnas_image_dataset_free(d);
            mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot copy the class names", fn);
            return NULL;
        }
        d->class_start[c] = start;
        d->class_count[c] = counts[c];
        start += counts[c];
    }
    return d;
}

/* The classes of ds listed in classes[0..n), sharing ds's store. */
static mnas_image_dataset *subset(const mnas_image_dataset *ds, const size_t *classes, size_t n, const char *fn)
{
    mnas_ctx *ctx = ds->ctx;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += ds->class_count[classes[i]];
    mnas_image_dataset *d = dataset_new(ctx, n, total, ds->channels, ds->height, ds->width);
    if (!d) {
        mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a dataset of %zu classes", fn, n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t c = classes[i];
        d->names[i] = mnas__strdup(ctx, ds->names[c]);
        if (!d->names[i]) {
            mnas_image_dataset_free(d);
            mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot copy the class names", fn);
            return NULL;
        }
        d->class_start[i] = ds->class_start[c];
        d->class_count[i] = ds->class_count[c];
    }
    atomic_fetch_add(&ds->store->refs, 1);
    d->store = ds->store;
    return d;
}

mnas_image_dataset *mnas_image_dataset_subset(const mnas_image_dataset *ds, const size_t *classes, size_t n)
{
    static const char fn[] = "mnas_image_dataset_subset";
    if (!mnas__image_dataset_ok(ds)) return NULL;
    if (n == 0 || !classes) {
        mnas__error(ds->ctx, MNAS_E_INVALID, "%s: %s", fn, n == 0 ? "no classes asked for" : "classes is NULL");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (classes[i] >= ds->n_classes) {
            mnas__error(ds->ctx, MNAS_E_INVALID, "%s: classes[%zu] = %zu is out of range (%zu classes)", fn, i,
                        classes[i], ds->n_classes);
            return NULL;
        }
    return subset(ds, classes, n, fn);
}

/* ---- splits ------------------------------------------------------------- */

static const char k_split[] = "mnas_image_dataset_split";

/* Read a class-list file into which[] (set = 0, 1, 2); -1 entries are unused. */
static mnas_status read_list(const mnas_image_dataset *ds, const char *path, int set, int *which)
{
    static const char *const set_name[3] = { "train", "val", "test" };
    mnas_ctx *ctx = ds->ctx;
    unsigned char *buf;
    size_t len;
    mnas_status st = mnas__read_file(ctx, k_split, path, &buf, &len);
    if (st != MNAS_OK) return st;
    size_t pos = 0, line = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && buf[end] != '\n') end++;
        line++;
        size_t a = pos, b = end;
        while (a < b && (buf[a] == ' ' || buf[a] == '\t')) a++;
        while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r')) b--;
        pos = end + 1;
        if (a == b || buf[a] == '#') continue;
        char name[1024];
        if (b - a >= sizeof name) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s line %zu: class name longer than %zu bytes", k_split, path,
                             line, sizeof name - 1);
            break;
        }
        memcpy(name, buf + a, b - a);
        name[b - a] = '\0';
        int64_t c = mnas_image_dataset_find_class(ds, name);
        if (c < 0) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s line %zu: unknown class \"%s\"", k_split, path, line, name);
            break;
        }
        if (which[c] >= 0) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %s line %zu: class \"%s\" is already in the %s list", k_split,
                             path, line, name, set_name[which[c]]);
            break;
        }
        which[c] = set;
    }
    mnas__free(ctx, buf);
    return st;
}

mnas_status mnas_image_dataset_split(const mnas_image_dataset *ds, const mnas_image_split_options *opts,
                                     mnas_image_dataset **train, mnas_image_dataset **val, mnas_image_dataset **test)
{
    static const char *const set_name[3] = { "train", "val", "test" };
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (test) *test = NULL;
    if (!mnas__image_dataset_ok(ds)) return MNAS_E_INVALID;
    mnas_ctx *ctx = ds->ctx;
    mnas_image_split_options o = MNAS_IMAGE_SPLIT_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size != sizeof o)
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: options struct_size is %zu, this library knows %zu "
                               "(initialise with MNAS_IMAGE_SPLIT_OPTIONS_INIT)",
                               k_split, opts->struct_size, sizeof o);
        o = *opts;
    }
    mnas_image_dataset **out[3] = { train, val, test };
    const char *lists[3] = { o.train_list, o.val_list, o.test_list };
    const int use_lists = lists[0] || lists[1] || lists[2];
    if (!train && !val && !test) return mnas__error(ctx, MNAS_E_INVALID, "%s: no output asked for", k_split);
    const size_t n = ds->n_classes;
    int *which = mnas__alloc(ctx, n * sizeof *which);
    size_t *idx = mnas__alloc(ctx, n * sizeof *idx);
    mnas_status st = MNAS_OK;
    if (!which || !idx) {
        st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu class indices", k_split, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) which[i] = -1;
    if (use_lists) {
        for (int s = 0; s < 3 && st == MNAS_OK; s++) {
            if (out[s] && !lists[s]) {
                st = mnas__error(ctx, MNAS_E_INVALID, "%s: a %s set is asked for but %s_list is NULL", k_split,
                                 set_name[s], set_name[s]);
                break;
            }
            if (lists[s]) st = read_list(ds, lists[s], s, which);
        }
    } else {
        if (!(o.train_fraction >= 0.0 && o.val_fraction >= 0.0 && o.train_fraction + o.val_fraction <= 1.0)) {
            st = mnas__error(ctx, MNAS_E_INVALID,
                             "%s: train_fraction %g and val_fraction %g must be >= 0 with a sum <= 1", k_split,
                             o.train_fraction, o.val_fraction);
            goto done;
        }
        size_t n_train = (size_t)floor(o.train_fraction * (double)n + 0.5);
        size_t n_val = (size_t)floor(o.val_fraction * (double)n + 0.5);
        if (n_train > n) n_train = n;
        if (n_val > n - n_train) n_val = n - n_train;
        mnas_rng *rng = mnas_rng_create(ctx, o.seed, 0);
        if (!rng) {
            st = MNAS_E_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n; i++) idx[i] = i;
        for (size_t i = n; i-- > 1;) {
            size_t j = (size_t)mnas_rng_below(rng, (uint64_t)i + 1);
            size_t t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        mnas_rng_free(rng);
        for (size_t i = 0; i < n; i++) which[idx[i]] = i < n_train ? 0 : i < n_train + n_val ? 1 : 2;
    }
    if (st != MNAS_OK) goto done;
    for (int s = 0; s < 3; s++) {
        if (!out[s]) continue;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (which[i] == s) idx[k++] = i;
        if (k == 0) {
            st = mnas__error(ctx, MNAS_E_INVALID, "%s: the %s set would have no classes (%zu classes in all)", k_split,
                             set_name[s], n);
            break;
        }
        *out[s] = subset(ds, idx, k, k_split);
        if (!*out[s]) {
            st = MNAS_E_NOMEM;
            break;
        }
    }
    if (st != MNAS_OK)
        for (int s = 0; s < 3; s++)
            if (out[s]) {
                mnas_image_dataset_free(*out[s]);
                *out[s] = NULL;
            }
done:
    mnas__free(ctx, which);
    mnas__free(ctx, idx);
    return st;
}
