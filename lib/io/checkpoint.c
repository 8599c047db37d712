/* Checkpoints: the record container (docs/checkpoints.md), atomic writes
 * (io/atomic_file.c), fully validating loads of learners and parameter sets, and training with
 * periodic checkpoints and a divergence guard. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/checkpoint_internal.h"
#include "meta/meta_internal.h"
#include "nn/nn_internal.h"
#include "tensor/tensor_internal.h"

#define KIND_LEARNER "mnas.learner"
#define KIND_PARAMS "mnas.params"

/* ---- little-endian helpers ------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static size_t dtype_size(int dt)
{
    switch (dt) {
    case MNAS__DT_F32: return 4;
    case MNAS__DT_F64:
    case MNAS__DT_I64:
    case MNAS__DT_U64: return 8;
    case MNAS__DT_U8: return 1;
    }
    return 0;
}

static const char *dtype_name(int dt)
{
    switch (dt) {
    case MNAS__DT_F32: return "f32";
    case MNAS__DT_F64: return "f64";
    case MNAS__DT_I64: return "i64";
    case MNAS__DT_U64: return "u64";
    case MNAS__DT_U8: return "u8";
    }
    return "?";
}

/* Element i of a float record as double. */
static double rec_real(const mnas__record *r, uint64_t i)
{
    if (r->dtype == MNAS__DT_F32) {
        uint32_t b = get_u32(r->data + 4 * i);
        float f;
        memcpy(&f, &b, 4);
        return (double)f;
    }
    uint64_t b = get_u64(r->data + 8 * i);
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
    mnas_ctx *ctx;
    uint8_t *buf;
    size_t len, cap;
    uint32_t count;
    mnas_status st;
} writer;

static uint8_t *w_reserve(writer *w, size_t n)
{
    if (w->st != MNAS_OK) return NULL;
    if (n > SIZE_MAX - w->len) {
        w->st = MNAS_E_NOMEM;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) {
            if (cap > SIZE_MAX / 2) {
                cap = w->len + n;
                break;
            }
            cap *= 2;
        }
        uint8_t *nb = mnas__alloc(w->ctx, cap);
        if (!nb) {
            w->st = MNAS_E_NOMEM;
            return NULL;
        }
        if (w->len) memcpy(nb, w->buf, w->len);
        mnas__free(w->ctx, w->buf);
        w->buf = nb;
        w->cap = cap;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

/* Append a record; src holds count elements in host order (count from
 * dims; ndim 0 is a scalar). Floats of the build's real type are passed
 * with dtype MNAS__DT_F32 / F64 as sizeof(mnas_real) says. */
static void w_record(writer *w, const char *name, int dtype, int ndim, const int64_t *dims, const void *src)
{
    size_t nlen = strlen(name), es = dtype_size(dtype);
    uint64_t count = 1;
    for (int d = 0; d < ndim; d++) count *= (uint64_t)dims[d];
    size_t bytes = (size_t)count * es;
    size_t start = w->len;
    uint8_t *p = w_reserve(w, 2 + nlen + 2 + 8 * (size_t)ndim + 8);
    if (!p) return;
    p[0] = (uint8_t)nlen;
    p[1] = (uint8_t)(nlen >> 8);
    memcpy(p + 2, name, nlen);
    p += 2 + nlen;
    p[0] = (uint8_t)dtype;
    p[1] = (uint8_t)ndim;
    p += 2;
    for (int d = 0; d < ndim; d++, p += 8) put_u64(p, (uint64_t)dims[d]);
    put_u64(p, (uint64_t)bytes);
    uint8_t *q = w_reserve(w, bytes);
    if (!q) return;
    const uint8_t *s = src;
    for (uint64_t i = 0; i < count; i++) {
        if (es == 8) {
            uint64_t v;
            memcpy(&v, s + 8 * i, 8);
            put_u64(q + 8 * i, v);
        } else if (es == 4) {
            uint32_t v;
            memcpy(&v, s + 4 * i, 4);
            put_u32(q + 4 * i, v);
        } else {
            q[i] = s[i];
        }
    }
    uint32_t crc = mnas__crc32(0, w->buf + start, w->len - start);
    uint8_t *c = w_reserve(w, 4);
    if (!c) return;
    put_u32(c, crc);
    w->count++;
}

#define REAL_DT (sizeof(mnas_real) == 8 ? MNAS__DT_F64 : MNAS__DT_F32)

static void w_i64(writer *w, const char *name, int64_t v) { w_record(w, name, MNAS__DT_I64, 0, NULL, &v); }
static void w_f64(writer *w, const char *name, double v) { w_record(w, name, MNAS__DT_F64, 0, NULL, &v); }
static void w_u64(writer *w, const char *name, uint64_t v) { w_record(w, name, MNAS__DT_U64, 0, NULL, &v); }
static void w_str(writer *w, const char *name, const char *s)
{
    int64_t n = (int64_t)strlen(s);
    w_record(w, name, MNAS__DT_U8, 1, &n, s);
}

static void w_begin(writer *w, mnas_ctx *ctx, const char *kind)
{
    memset(w, 0, sizeof *w);
    w->ctx = ctx;
    w_reserve(w, MNAS__CKPT_HEADER);
    w_str(w, "kind", kind);
    w_i64(w, "library.version", mnas_version_number());
}

/* Header and trailer around the records; the buffer is then the file. */
static void w_finish(writer *w)
{
    uint8_t *t = w_reserve(w, MNAS__CKPT_TRAILER);
    if (!t) return;
    uint8_t *h = w->buf;
    memcpy(h, MNAS__CKPT_MAGIC, 8);
    put_u32(h + 8, MNAS__CKPT_VERSION);
    put_u32(h + 12, MNAS__CKPT_ENDIAN);
    put_u32(h + 16, w->count);
    put_u32(h + 20, 0); /* flags, reserved */
    put_u64(h + 24, (uint64_t)w->len);
    t = w->buf + w->len - MNAS__CKPT_TRAILER;
    memcpy(t, MNAS__CKPT_END, 4);
    put_u32(t + 4, mnas__crc32(0, w->buf, w->len - 4));
}

/* ---- parser ----------------------------------------------------------------- */

static int name_printable(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return 0;
    return n > 0;
}

mnas_status mnas__ckpt_parse(mnas_ctx *ctx, const char *what, const uint8_t *buf, size_t len, mnas__ckpt *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = ctx;
    if (!buf || len < MNAS__CKPT_HEADER + MNAS__CKPT_TRAILER)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: truncated: %zu bytes, a checkpoint has at least %u", what, len,
                           MNAS__CKPT_HEADER + MNAS__CKPT_TRAILER);
    if (memcmp(buf, MNAS__CKPT_MAGIC, 8) != 0)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: not a libmnas checkpoint (bad magic)", what);
    uint32_t endian = get_u32(buf + 12);
    if (endian != MNAS__CKPT_ENDIAN)
        return mnas__error(ctx, MNAS_E_FORMAT,
                           "%s: foreign byte order or corrupt header (endianness marker 0x%08x, expected 0x%08x)", what,
                           (unsigned)endian, (unsigned)MNAS__CKPT_ENDIAN);
    uint32_t version = get_u32(buf + 8);
    if (version != MNAS__CKPT_VERSION)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: format version %u; this library reads version %u", what,
                           (unsigned)version, (unsigned)MNAS__CKPT_VERSION);
    uint64_t size = get_u64(buf + 24);
    if (size != len)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: the file has %zu bytes, its header says %llu", what,
                           size > len ? "truncated" : "trailing bytes or corrupt header", len, (unsigned long long)size);
    const uint8_t *t = buf + len - MNAS__CKPT_TRAILER;
    if (memcmp(t, MNAS__CKPT_END, 4) != 0) return mnas__error(ctx, MNAS_E_FORMAT, "%s: end marker missing (corrupt)", what);
    uint32_t count = get_u32(buf + 16), flags = get_u32(buf + 20);
    if (flags != 0) return mnas__error(ctx, MNAS_E_FORMAT, "%s: unknown header flags 0x%08x", what, (unsigned)flags);
    if (count == 0 || count > MNAS__CKPT_MAX_RECORDS)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %u records (1..%u)", what, (unsigned)count,
                           (unsigned)MNAS__CKPT_MAX_RECORDS);
    /* Every record takes at least 2 + 1 + 2 + 8 + 4 bytes. */
    if ((uint64_t)count * 17u > len - MNAS__CKPT_HEADER - MNAS__CKPT_TRAILER)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %u records cannot fit in %zu bytes", what, (unsigned)count, len);
    mnas__record *rec = mnas__calloc(ctx, count, sizeof *rec);
    if (!rec) return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the index of %u records", what, (unsigned)count);
    size_t pos = MNAS__CKPT_HEADER, end = len - MNAS__CKPT_TRAILER;
    mnas_status st = MNAS_OK;
    for (uint32_t i = 0; i < count && st == MNAS_OK; i++) {
        mnas__record *r = &rec[i];
        size_t start = pos;
        if (end - pos < 2) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record %u starts past the end of the data", what, (unsigned)i);
            break;
        }
        size_t nlen = (size_t)buf[pos] | (size_t)buf[pos + 1] << 8;
        pos += 2;
        if (nlen == 0 || nlen > MNAS__CKPT_NAME_MAX || end - pos < nlen + 2 || !name_printable(buf + pos, nlen)) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record %u has a bad name (length %zu)", what, (unsigned)i, nlen);
            break;
        }
        memcpy(r->name, buf + pos, nlen);
        r->name[nlen] = '\0';
        pos += nlen;
        r->dtype = buf[pos];
        r->ndim = buf[pos + 1];
        pos += 2;
        size_t es = dtype_size(r->dtype);
        if (!es || r->ndim > MNAS_MAX_DIMS) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": unknown type %d or %d dimensions (0..%d)", what,
                             r->name, r->dtype, r->ndim, MNAS_MAX_DIMS);
            break;
        }
        if (end - pos < 8 * (size_t)r->ndim + 8) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": shape runs past the end of the data", what,
                             r->name);
            break;
        }
        uint64_t cnt = 1;
        for (int d = 0; d < r->ndim; d++, pos += 8) {
            uint64_t v = get_u64(buf + pos);
            if (v > (uint64_t)INT64_MAX || (v && cnt > UINT64_MAX / v)) {
                st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": dimension %d is %llu (overflow)", what, r->name,
                                 d, (unsigned long long)v);
                break;
            }
            r->dims[d] = (int64_t)v;
            cnt *= v;
        }
        if (st != MNAS_OK) break;
        uint64_t bytes = get_u64(buf + pos);
        pos += 8;
        if (cnt > UINT64_MAX / es || cnt * es != bytes) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": %llu payload bytes do not match its %s shape", what,
                             r->name, (unsigned long long)bytes, dtype_name(r->dtype));
            break;
        }
        if (bytes > end - pos || end - pos - (size_t)bytes < 4) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" (%llu bytes) runs past the end of the data", what,
                             r->name, (unsigned long long)bytes);
            break;
        }
        r->count = cnt;
        r->data = buf + pos;
        r->bytes = (size_t)bytes;
        pos += (size_t)bytes;
        uint32_t want = get_u32(buf + pos), got = mnas__crc32(0, buf + start, pos - start);
        pos += 4;
        if (want != got) {
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" is corrupt (CRC-32 0x%08x, stored 0x%08x)", what,
                             r->name, (unsigned)got, (unsigned)want);
            break;
        }
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp(rec[k].name, r->name)) {
                st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" appears twice", what, r->name);
                break;
            }
    }
    if (st == MNAS_OK && pos != end)
        st = mnas__error(ctx, MNAS_E_FORMAT, "%s: %zu unexpected bytes after the last record", what, end - pos);
    if (st == MNAS_OK) {
        uint32_t want = get_u32(buf + len - 4), got = mnas__crc32(0, buf, len - 4);
        if (want != got)
            st = mnas__error(ctx, MNAS_E_FORMAT, "%s: the file is corrupt (CRC-32 0x%08x, stored 0x%08x)", what,
                             (unsigned)got, (unsigned)want);
    }
    if (st != MNAS_OK) {
        mnas__free(ctx, rec);
        return st;
    }
    out->rec = rec;
    out->n = count;
    out->version = version;
    return MNAS_OK;
}

void mnas__ckpt_release(mnas__ckpt *c)
{
    if (c && c->rec) mnas__free(c->ctx, c->rec);
    if (c) c->rec = NULL;
}

const mnas__record *mnas__ckpt_find(const mnas__ckpt *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->rec[i].name, name)) return &c->rec[i];
    return NULL;
}

/* Read a whole file into a context allocation. */
static mnas_status read_file(mnas_ctx *ctx, const char *fn, const char *path, uint8_t **out, size_t *len)
{
    char why[128];
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO at path must not block the open; regular files ignore it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return mnas__error(ctx, MNAS_E_IO, "%s: cannot open '%s': %s", fn, path, mnas__errno_text(errno, why, sizeof why));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mnas__error(ctx, MNAS_E_IO, "%s: '%s' is not a regular file", fn, path);
    }
    if ((uint64_t)sb.st_size > MNAS__CKPT_MAX_BYTES || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: '%s' is %lld bytes, more than a checkpoint may be", fn, path,
                           (long long)sb.st_size);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = mnas__alloc(ctx, n ? n : 1);
    if (!buf) {
        close(fd);
        return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu bytes for '%s'", fn, n, path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        mnas__free(ctx, buf);
        return mnas__error(ctx, MNAS_E_IO, "%s: cannot read '%s' (it changed while being read?)", fn, path);
    }
    *out = buf;
    *len = n;
    return MNAS_OK;
}

/* ---- record checks -------------------------------------------------------------- */

static mnas_status need(const mnas__ckpt *c, const char *what, const char *name, int dtype, int ndim,
                        const int64_t *dims, const mnas__record **out)
{
    const mnas__record *r = mnas__ckpt_find(c, name);
    *out = NULL;
    if (!r) return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: record \"%s\" is missing", what, name);
    int ok_type = r->dtype == dtype || (dtype == REAL_DT && (r->dtype == MNAS__DT_F32 || r->dtype == MNAS__DT_F64));
    if (!ok_type)
        return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: record \"%s\" has type %s, expected %s", what, name,
                           dtype_name(r->dtype), dtype_name(dtype));
    int same = r->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = r->dims[d] == dims[d];
    if (!same) {
        char got[96] = "", exp[96] = "";
        for (int d = 0; d < r->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)r->dims[d]);
        for (int d = 0; d < ndim; d++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", d ? ", " : "", (long long)dims[d]);
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: record \"%s\" has shape [%s], expected [%s]", what, name, got,
                           exp);
    }
    *out = r;
    return MNAS_OK;
}

static mnas_status need_i64(const mnas__ckpt *c, const char *what, const char *name, int64_t *v)
{
    const mnas__record *r;
    mnas_status st = need(c, what, name, MNAS__DT_I64, 0, NULL, &r);
    if (st == MNAS_OK) *v = (int64_t)get_u64(r->data);
    return st;
}

static mnas_status need_f64(const mnas__ckpt *c, const char *what, const char *name, double *v)
{
    const mnas__record *r;
    mnas_status st = need(c, what, name, MNAS__DT_F64, 0, NULL, &r);
    if (st == MNAS_OK) *v = rec_real(r, 0);
    return st;
}

static mnas_status need_kind(const mnas__ckpt *c, const char *what, const char *kind)
{
    const mnas__record *r = mnas__ckpt_find(c, "kind");
    size_t n = strlen(kind);
    if (!r || r->dtype != MNAS__DT_U8 || r->ndim != 1 || r->bytes != n || memcmp(r->data, kind, n) != 0)
        return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: not a %s checkpoint", what,
                           !strcmp(kind, KIND_LEARNER) ? "learner" : "parameter-set");
    return MNAS_OK;
}

/* A real-valued record of tensor t's shape, checked finite. */
static mnas_status need_tensor(const mnas__ckpt *c, const char *what, const char *name, const mnas_tensor *t,
                               const mnas__record **out)
{
    mnas_status st = need(c, what, name, REAL_DT, t->ndim, t->shape, out);
    if (st != MNAS_OK) return st;
    for (uint64_t i = 0; i < (*out)->count; i++) {
        double v = rec_real(*out, i);
        if (!isfinite(v) || fabs(v) > (sizeof(mnas_real) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308))
            return mnas__error(c->ctx, MNAS_E_NUMERIC, "%s: record \"%s\" has a non-finite value at element %llu", what,
                               name, (unsigned long long)i);
    }
    return MNAS_OK;
}

static void copy_real(mnas_real *dst, const mnas__record *r)
{
    for (uint64_t i = 0; i < r->count; i++) dst[i] = (mnas_real)rec_real(r, i);
}

/* ---- the learner's options ---------------------------------------------------- */

typedef struct {
    const char *name;
    int is_real;
    size_t offset;
} opt_field;

#define OF_I(f) { "config." #f, 0, offsetof(mnas_learner_options, f) }
#define OF_R(f) { "config." #f, 1, offsetof(mnas_learner_options, f) }

/* Every option but threads (which never changes results); seed is stored as
 * its bit pattern in an i64. Enums are stored as i64 too. */
static const opt_field opt_fields[] = {
    OF_I(method),    OF_I(meta_batch), OF_I(inner_steps),   OF_R(inner_lr),   OF_R(outer_lr),
    OF_I(inner_mode), OF_R(clip_norm), OF_I(hidden),        OF_I(layers),     OF_I(in_features),
    OF_I(out_features), OF_R(arch_lr), OF_R(beta),          OF_R(path_dropout), OF_I(nodes),
    OF_I(z_dim),     OF_I(f_dim),      OF_I(controller_hidden), OF_I(encoder), OF_I(modulation),
    OF_R(modulator_bias), OF_I(classes), OF_I(in_channels), OF_I(image_size), OF_I(filters),
    OF_I(channels),
};
#define N_OPT_FIELDS (sizeof opt_fields / sizeof opt_fields[0])

/* Enum-typed fields are int-sized in C11 on every ABI libmnas supports. */
static int64_t opt_get_i(const mnas_learner_options *o, size_t off)
{
    int v;
    memcpy(&v, (const char *)o + off, sizeof v);
    return v;
}

static void w_options(writer *w, const mnas_learner_options *o)
{
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        if (f->is_real) {
            double v;
            memcpy(&v, (const char *)o + f->offset, sizeof v);
            w_f64(w, f->name, v);
        } else {
            w_i64(w, f->name, opt_get_i(o, f->offset));
        }
    }
    w_u64(w, "config.seed", o->seed);
    w_i64(w, "config.threads", o->threads);
    w_i64(w, "config.modulator_form", (int64_t)o->modulator_form);
    w_i64(w, "config.sample_ops", o->sample_ops);
}

/* Read the options of a checkpoint into o (threads included). */
static mnas_status read_options(const mnas__ckpt *c, const char *what, mnas_learner_options *o)
{
    mnas_learner_options r = MNAS_LEARNER_OPTIONS_INIT;
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        mnas_status st;
        if (f->is_real) {
            double v;
            if ((st = need_f64(c, what, f->name, &v)) != MNAS_OK) return st;
            memcpy((char *)&r + f->offset, &v, sizeof v);
        } else {
            int64_t v;
            if ((st = need_i64(c, what, f->name, &v)) != MNAS_OK) return st;
            if (v < INT32_MIN || v > INT32_MAX)
                return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: %s is %lld (out of range)", what, f->name, (long long)v);
            int iv = (int)v;
            memcpy((char *)&r + f->offset, &iv, sizeof iv);
        }
    }
    const mnas__record *s;
    mnas_status st = need(c, what, "config.seed", MNAS__DT_U64, 0, NULL, &s);
    if (st != MNAS_OK) return st;
    r.seed = get_u64(s->data);
    int64_t th;
    if ((st = need_i64(c, what, "config.threads", &th)) != MNAS_OK) return st;
    r.threads = th >= 1 && th <= 256 ? (int)th : 1;
    /* Appended after the first format (issue 17): an older file has no
     * record and gets the default. */
    if (mnas__ckpt_find(c, "config.modulator_form")) {
        if ((st = need_i64(c, what, "config.modulator_form", &th)) != MNAS_OK) return st;
        if (th < MNAS_MODULATOR_SIGMOID || th > MNAS_MODULATOR_FILM)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.modulator_form is %lld (unknown form)", what,
                               (long long)th);
        r.modulator_form = (mnas_modulator_form)th;
    }
    /* Absent from checkpoints written before the option existed: 0. */
    if (mnas__ckpt_find(c, "config.sample_ops")) {
        if ((st = need_i64(c, what, "config.sample_ops", &r.sample_ops)) != MNAS_OK) return st;
        /* The learner checks it against its search space; here only a bound
         * no space reaches (a cell runs at most 64 ops per edge). */
        if (r.sample_ops < 0 || r.sample_ops > 64)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: config.sample_ops is %lld (out of range)", what,
                               (long long)r.sample_ops);
    }
    *o = r;
    return MNAS_OK;
}

/* ---- learner checkpoints --------------------------------------------------------- */

static void param_rec_name(char *buf, size_t cap, const char *prefix, const char *name)
{
    snprintf(buf, cap, "%s:%s", prefix, name);
}

mnas_status mnas_learner_save(const mnas_learner *l, const char *path)
{
    const char *fn = "mnas_learner_save";
    if (!l) return MNAS_E_INVALID;
    mnas_ctx *ctx = mnas__learner_ctx(l);
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    const mnas_params *p = mnas_learner_params(l);
    mnas_optim_kind kind;
    int64_t steps;
    size_t n;
    mnas_real *const *m, *const *v;
    mnas__optim_state(mnas__learner_optim(l), &kind, &steps, &n, &m, &v);
    const mnas_real *fixed;
    size_t edges, ops;
    int discrete = mnas__learner_phase(l, &fixed, &edges, &ops);
    writer w;
    w_begin(&w, ctx, KIND_LEARNER);
    w_options(&w, mnas__learner_options(l));
    w_i64(&w, "state.iteration", mnas_learner_iteration(l));
    w_i64(&w, "state.discrete", discrete);
    if (fixed) {
        int64_t sh[2] = { (int64_t)edges, (int64_t)ops };
        w_record(&w, "state.fixed_alpha", REAL_DT, 2, sh, fixed);
    }
    uint64_t rs[MNAS_RNG_STATE_WORDS];
    mnas_rng_get_state(mnas_ctx_rng(ctx), rs);
    int64_t rn = MNAS_RNG_STATE_WORDS;
    w_record(&w, "rng.ctx", MNAS__DT_U64, 1, &rn, rs);
    w_i64(&w, "optim.kind", (int64_t)kind);
    w_i64(&w, "optim.steps", steps);
    w_i64(&w, "params.count", (int64_t)mnas_params_count(p));
    char name[MNAS__CKPT_NAME_MAX + 1];
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        w_record(&w, name, REAL_DT, t->ndim, t->shape, t->data);
        param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
        w_record(&w, name, REAL_DT, t->ndim, t->shape, m[i]);
        if (v && v[i]) {
            param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
            w_record(&w, name, REAL_DT, t->ndim, t->shape, v[i]);
        }
    }
    w_finish(&w);
    mnas_status st = w.st;
    if (st != MNAS_OK) st = mnas__error(ctx, st, "%s: cannot allocate the checkpoint of '%s'", fn, path);
    else st = mnas__atomic_write_buf(ctx, fn, path, w.buf, w.len);
    mnas__free(ctx, w.buf);
    return st;
}

/* The checkpoint's options must equal the learner's, except the Adam rates
 * (mnas_learner_set_lr changes them during training): those are state, and
 * *lr receives them (outer, arch), checked finite and in [0, 1e6]. */
static mnas_status compare_options(const mnas__ckpt *c, const char *what, const mnas_learner_options *mine,
                                   double lr[2])
{
    mnas_learner_options f;
    mnas_status st = read_options(c, what, &f);
    if (st != MNAS_OK) return st;
    lr[0] = f.outer_lr;
    lr[1] = f.arch_lr;
    for (int k = 0; k < 2; k++)
        if (!isfinite(lr[k]) || lr[k] < 0 || lr[k] > 1e6)
            return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: %s = %g is not a valid learning rate", what,
                               k ? "arch_lr" : "outer_lr", lr[k]);
    for (size_t i = 0; i < N_OPT_FIELDS; i++) {
        const opt_field *o = &opt_fields[i];
        if (o->offset == offsetof(mnas_learner_options, outer_lr) ||
            o->offset == offsetof(mnas_learner_options, arch_lr))
            continue;
        if (o->is_real) {
            double a, b;
            memcpy(&a, (const char *)&f + o->offset, sizeof a);
            memcpy(&b, (const char *)mine + o->offset, sizeof b);
            if (memcmp(&a, &b, sizeof a) != 0)
                return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with %s = %.17g, this learner has %.17g", what,
                                   o->name + 7, a, b);
        } else {
            int64_t a = opt_get_i(&f, o->offset), b = opt_get_i(mine, o->offset);
            if (a != b)
                return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with %s = %lld, this learner has %lld", what,
                                   o->name + 7, (long long)a, (long long)b);
        }
    }
    if (f.seed != mine->seed)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with seed = %llu, this learner has %llu", what,
                           (unsigned long long)f.seed, (unsigned long long)mine->seed);
    if (f.modulator_form != mine->modulator_form)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with modulator_form = %d, this learner has %d", what,
                           (int)f.modulator_form, (int)mine->modulator_form);
    if (f.sample_ops != mine->sample_ops)
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: written with sample_ops = %lld, this learner has %lld", what,
                           (long long)f.sample_ops, (long long)mine->sample_ops);
    return MNAS_OK;
}

mnas_status mnas__learner_load_parsed(mnas_learner *l, const mnas__ckpt *c, const char *what)
{
    mnas_ctx *ctx = mnas__learner_ctx(l);
    mnas_status st = need_kind(c, what, KIND_LEARNER);
    if (st != MNAS_OK) return st;
    double lr[2];
    if ((st = compare_options(c, what, mnas__learner_options(l), lr)) != MNAS_OK) return st;
    int64_t iteration, discrete, okind, steps, count;
    if ((st = need_i64(c, what, "state.iteration", &iteration)) != MNAS_OK ||
        (st = need_i64(c, what, "state.discrete", &discrete)) != MNAS_OK ||
        (st = need_i64(c, what, "optim.kind", &okind)) != MNAS_OK ||
        (st = need_i64(c, what, "optim.steps", &steps)) != MNAS_OK ||
        (st = need_i64(c, what, "params.count", &count)) != MNAS_OK)
        return st;
    if (iteration < 0 || steps < 0 || steps > iteration)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: iteration %lld / optimiser steps %lld are not valid", what,
                           (long long)iteration, (long long)steps);
    const mnas_real *cur_fixed;
    size_t edges, ops;
    (void)mnas__learner_phase(l, &cur_fixed, &edges, &ops);
    (void)cur_fixed;
    int is_maml = mnas__learner_options(l)->method == MNAS_METHOD_MAML;
    if (discrete != 0 && discrete != 1)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: state.discrete is %lld (0 or 1)", what, (long long)discrete);
    if (discrete && is_maml)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: a MAML learner cannot be in the discrete phase", what);
    int want_fixed = discrete && mnas__learner_has_shared_alpha(l);
    const mnas__record *fa = mnas__ckpt_find(c, "state.fixed_alpha");
    if (!want_fixed && fa)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: unexpected record \"state.fixed_alpha\"", what);
    if (want_fixed) {
        int64_t sh[2] = { (int64_t)edges, (int64_t)ops };
        if ((st = need(c, what, "state.fixed_alpha", REAL_DT, 2, sh, &fa)) != MNAS_OK) return st;
        for (uint64_t i = 0; i < fa->count; i++) {
            double v = rec_real(fa, i);
            if (v != 0.0 && v != 1.0)
                return mnas__error(ctx, MNAS_E_FORMAT, "%s: state.fixed_alpha is not one-hot (element %llu is %g)",
                                   what, (unsigned long long)i, v);
        }
    }
    const mnas__record *rr;
    int64_t rn = MNAS_RNG_STATE_WORDS;
    if ((st = need(c, what, "rng.ctx", MNAS__DT_U64, 1, &rn, &rr)) != MNAS_OK) return st;
    uint64_t rs[MNAS_RNG_STATE_WORDS];
    for (int i = 0; i < MNAS_RNG_STATE_WORDS; i++) rs[i] = get_u64(rr->data + 8 * i);
    if (!(rs[0] | rs[1] | rs[2] | rs[3]) || rs[4] > 1)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: rng.ctx is not a valid generator state", what);
    {
        double spare;
        memcpy(&spare, &rs[5], sizeof spare);
        if (rs[4] && !isfinite(spare))
            return mnas__error(ctx, MNAS_E_FORMAT, "%s: rng.ctx is not a valid generator state", what);
    }
    mnas_params *p = mnas_learner_params(l);
    mnas_optim_kind kind;
    int64_t cur_steps;
    size_t n;
    mnas_real *const *m, *const *v;
    mnas__optim_state(mnas__learner_optim(l), &kind, &cur_steps, &n, &m, &v);
    if (okind != (int64_t)kind)
        return mnas__error(ctx, MNAS_E_MISMATCH, "%s: optimiser kind %lld, this learner's is %d", what, (long long)okind,
                           (int)kind);
    if (count != (int64_t)mnas_params_count(p))
        return mnas__error(ctx, MNAS_E_MISMATCH, "%s: %lld parameters, this learner has %zu", what, (long long)count,
                           mnas_params_count(p));
    /* Validate every tensor before changing anything. */
    char name[MNAS__CKPT_NAME_MAX + 1];
    const mnas__record *r;
    for (size_t i = 0; i < n; i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        if ((st = need_tensor(c, what, name, t, &r)) != MNAS_OK) return st;
        param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
        if ((st = need_tensor(c, what, name, t, &r)) != MNAS_OK) return st;
        if (v && v[i]) {
            param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
            if ((st = need_tensor(c, what, name, t, &r)) != MNAS_OK) return st;
            for (uint64_t k = 0; k < r->count; k++)
                if (rec_real(r, k) < 0)
                    return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" has a negative second moment", what,
                                       name);
        }
    }
    mnas_real *fixed = NULL;
    if (want_fixed) {
        fixed = mnas__calloc(ctx, (size_t)fa->count, sizeof *fixed);
        if (!fixed) return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the fixed alpha", what);
        copy_real(fixed, fa);
    }
    /* Commit: nothing below can fail. */
    for (size_t i = 0; i < n; i++) {
        mnas_tensor *t = mnas_params_get(p, i);
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        copy_real(t->data, mnas__ckpt_find(c, name));
        param_rec_name(name, sizeof name, "optim.m", mnas_params_name(p, i));
        copy_real(m[i], mnas__ckpt_find(c, name));
        if (v && v[i]) {
            param_rec_name(name, sizeof name, "optim.v", mnas_params_name(p, i));
            copy_real(v[i], mnas__ckpt_find(c, name));
        }
    }
    mnas_params_zero_grad(p);
    mnas__optim_set_steps(mnas__learner_optim(l), steps);
    mnas__learner_restore(l, iteration, (int)discrete, fixed);
    (void)mnas_learner_set_lr(l, lr[0], lr[1]); /* validated above */
    (void)mnas_rng_set_state(mnas_ctx_rng(ctx), rs);
    return MNAS_OK;
}

/* Read and parse path; *buf must be freed after *c is released. */
static mnas_status open_ckpt(mnas_ctx *ctx, const char *fn, const char *path, uint8_t **buf, mnas__ckpt *c)
{
    size_t len;
    mnas_status st = read_file(ctx, fn, path, buf, &len);
    if (st != MNAS_OK) return st;
    char what[160];
    snprintf(what, sizeof what, "%s: '%s'", fn, path);
    st = mnas__ckpt_parse(ctx, what, *buf, len, c);
    if (st != MNAS_OK) {
        mnas__free(ctx, *buf);
        *buf = NULL;
    }
    return st;
}

/* Read and check the file at path, then hand it to apply (which validates
 * its contents before changing obj). */
static mnas_status load_file(mnas_ctx *ctx, const char *fn, const char *path,
                             mnas_status (*apply)(void *obj, const mnas__ckpt *c, const char *what), void *obj)
{
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    uint8_t *buf;
    mnas__ckpt c;
    mnas_status st = open_ckpt(ctx, fn, path, &buf, &c);
    if (st != MNAS_OK) return st;
    char what[160];
    snprintf(what, sizeof what, "%s: '%s'", fn, path);
    st = apply(obj, &c, what);
    mnas__ckpt_release(&c);
    mnas__free(ctx, buf);
    return st;
}

static mnas_status apply_learner(void *obj, const mnas__ckpt *c, const char *what)
{
    return mnas__learner_load_parsed(obj, c, what);
}

mnas_status mnas_learner_load(mnas_learner *l, const char *path)
{
    if (!l) return MNAS_E_INVALID;
    return load_file(mnas__learner_ctx(l), "mnas_learner_load", path, apply_learner, l);
}

mnas_status mnas_learner_checkpoint_options(mnas_ctx *ctx, const char *path, mnas_learner_options *opts)
{
    const char *fn = "mnas_learner_checkpoint_options";
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    if (!path || !*path || !opts)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: path and opts must not be NULL", fn);
    if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof *opts)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: opts->struct_size %zu is not valid (use MNAS_LEARNER_OPTIONS_INIT)",
                           fn, opts->struct_size);
    uint8_t *buf;
    mnas__ckpt c;
    mnas_status st = open_ckpt(ctx, fn, path, &buf, &c);
    if (st != MNAS_OK) return st;
    char what[160];
    snprintf(what, sizeof what, "%s: '%s'", fn, path);
    mnas_learner_options o;
    st = need_kind(&c, what, KIND_LEARNER);
    if (st == MNAS_OK) st = read_options(&c, what, &o);
    mnas__ckpt_release(&c);
    mnas__free(ctx, buf);
    if (st != MNAS_OK) return st;
    size_t keep = opts->struct_size;
    memcpy(opts, &o, keep < sizeof o ? keep : sizeof o);
    opts->struct_size = keep;
    return MNAS_OK;
}

/* ---- parameter-set checkpoints ---------------------------------------------------- */

mnas_status mnas_params_save(const mnas_params *p, const char *path)
{
    const char *fn = "mnas_params_save";
    if (!p) return MNAS_E_INVALID;
    mnas_ctx *ctx = mnas__params_ctx(p);
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    writer w;
    w_begin(&w, ctx, KIND_PARAMS);
    w_i64(&w, "params.count", (int64_t)mnas_params_count(p));
    char name[MNAS__CKPT_NAME_MAX + 1];
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        w_record(&w, name, REAL_DT, t->ndim, t->shape, t->data);
    }
    w_finish(&w);
    mnas_status st = w.st;
    if (st != MNAS_OK) st = mnas__error(ctx, st, "%s: cannot allocate the checkpoint of '%s'", fn, path);
    else st = mnas__atomic_write_buf(ctx, fn, path, w.buf, w.len);
    mnas__free(ctx, w.buf);
    return st;
}

mnas_status mnas__params_load_parsed(mnas_params *p, const mnas__ckpt *c, const char *what)
{
    mnas_status st = need_kind(c, what, KIND_PARAMS);
    if (st != MNAS_OK) return st;
    int64_t count;
    if ((st = need_i64(c, what, "params.count", &count)) != MNAS_OK) return st;
    if (count != (int64_t)mnas_params_count(p))
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: %lld parameters, the set has %zu", what, (long long)count,
                           mnas_params_count(p));
    char name[MNAS__CKPT_NAME_MAX + 1];
    const mnas__record *r;
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        if ((st = need_tensor(c, what, name, mnas_params_get(p, i), &r)) != MNAS_OK) return st;
    }
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
        copy_real(mnas_params_get(p, i)->data, mnas__ckpt_find(c, name));
    }
    return MNAS_OK;
}

static mnas_status apply_params(void *obj, const mnas__ckpt *c, const char *what)
{
    return mnas__params_load_parsed(obj, c, what);
}

mnas_status mnas_params_load(mnas_params *p, const char *path)
{
    if (!p) return MNAS_E_INVALID;
    return load_file(mnas__params_ctx(p), "mnas_params_load", path, apply_params, p);
}

/* ---- training with checkpoints and a divergence guard ------------------------------ */

static int keep_loss(void *user, int64_t it, int64_t total, double loss)
{
    (void)it;
    (void)total;
    *(double *)user = loss;
    return 0;
}

static int params_finite(const mnas_params *p, size_t *bad)
{
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        const mnas_tensor *t = mnas_params_get(p, i);
        for (int64_t k = 0; k < t->size; k++)
            if (!isfinite(t->data[k])) {
                *bad = i;
                return 0;
            }
    }
    return 1;
}

mnas_status mnas_learner_train_checkpointed(mnas_learner *l, mnas_task_source source, void *source_user,
                                            int64_t iterations, const char *path, int64_t every,
                                            mnas_progress_fn progress, void *progress_user)
{
    const char *fn = "mnas_learner_train_checkpointed";
    if (!l) return MNAS_E_INVALID;
    mnas_ctx *ctx = mnas__learner_ctx(l);
    if (!source || !path || !*path)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: source and path must not be NULL", fn);
    if (iterations < 0 || every < 0)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: iterations %lld and every %lld must be >= 0", fn,
                           (long long)iterations, (long long)every);
    /* Distributed (mnas_learner_set_distribution), every process holds the
     * same state and rank 0 alone writes. */
    int writer = mnas_learner_rank(l) == 0;
    mnas_status st = writer ? mnas_learner_save(l, path) : MNAS_OK;
    if (st != MNAS_OK) return st;
    int64_t saved = mnas_learner_iteration(l);
    for (int64_t it = 0; it < iterations; it++) {
        int64_t at = mnas_learner_iteration(l);
        double loss = NAN;
        st = mnas_learner_train(l, source, source_user, 1, keep_loss, &loss);
        if (st != MNAS_OK) {
            char msg[MNAS_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", mnas_ctx_last_error(ctx));
            if (st == MNAS_E_NUMERIC)
                return mnas__error(ctx, st,
                                   "%s: diverged at iteration %lld (%s); the learner stays at its last good state "
                                   "(iteration %lld) and '%s' keeps the checkpoint of iteration %lld",
                                   fn, (long long)at, msg, (long long)mnas_learner_iteration(l), path, (long long)saved);
            return mnas__error(ctx, st, "%s: iteration %lld: %s", fn, (long long)at, msg);
        }
        size_t bad;
        if (!params_finite(mnas_learner_params(l), &bad)) {
            char pname[96];
            snprintf(pname, sizeof pname, "%s", mnas_params_name(mnas_learner_params(l), bad));
            mnas_status lst = mnas_learner_load(l, path);
            return mnas__error(ctx, MNAS_E_NUMERIC,
                               "%s: diverged at iteration %lld (parameter \"%s\" is no longer finite); %s '%s' "
                               "(iteration %lld)",
                               fn, (long long)at, pname,
                               lst == MNAS_OK ? "the learner was restored from" : "could not restore the learner from",
                               path, (long long)saved);
        }
        int last = it + 1 == iterations;
        if (last || (every > 0 && (it + 1) % every == 0)) {
            if (writer && (st = mnas_learner_save(l, path)) != MNAS_OK) return st;
            saved = mnas_learner_iteration(l);
        }
        if (progress && progress(progress_user, it + 1, iterations, loss)) {
            if (writer && !last && saved != mnas_learner_iteration(l) && (st = mnas_learner_save(l, path)) != MNAS_OK)
                return st;
            break;
        }
    }
    return MNAS_OK;
}
