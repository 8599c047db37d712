/* Checkpoints: the record container (docs/checkpoints.md) as a writer, a
 * validating parser and record checks shared with the learner's checkpoints
 * (lib/meta/learner_checkpoint.c), atomic writes (io/atomic_file.c), and
 * parameter-set checkpoints. */
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
#include "nn/nn_internal.h"
#include "tensor/tensor_internal.h"


/* ---- little-endian helpers ------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t mnas__ckpt_get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

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
double mnas__ckpt_rec_real(const mnas__ckpt_record *r, uint64_t i)
{
    if (r->dtype == MNAS__DT_F32) {
        uint32_t b = get_u32(r->data + 4 * i);
        float f;
        memcpy(&f, &b, 4);
        return (double)f;
    }
    uint64_t b = mnas__ckpt_get_u64(r->data + 8 * i);
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* ---- writer ---------------------------------------------------------------- */

static uint8_t *w_reserve(mnas__ckpt_writer *w, size_t n)
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
void mnas__ckpt_w_record(mnas__ckpt_writer *w, const char *name, int dtype, int ndim, const int64_t *dims,
                         const void *src)
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

void mnas__ckpt_w_i64(mnas__ckpt_writer *w, const char *name, int64_t v)
{
    mnas__ckpt_w_record(w, name, MNAS__DT_I64, 0, NULL, &v);
}
void mnas__ckpt_w_f64(mnas__ckpt_writer *w, const char *name, double v)
{
    mnas__ckpt_w_record(w, name, MNAS__DT_F64, 0, NULL, &v);
}
void mnas__ckpt_w_u64(mnas__ckpt_writer *w, const char *name, uint64_t v)
{
    mnas__ckpt_w_record(w, name, MNAS__DT_U64, 0, NULL, &v);
}
static void w_str(mnas__ckpt_writer *w, const char *name, const char *s)
{
    int64_t n = (int64_t)strlen(s);
    mnas__ckpt_w_record(w, name, MNAS__DT_U8, 1, &n, s);
}

void mnas__ckpt_w_begin(mnas__ckpt_writer *w, mnas_ctx *ctx, const char *kind)
{
    memset(w, 0, sizeof *w);
    w->ctx = ctx;
    w_reserve(w, MNAS__CKPT_HEADER);
    w_str(w, "kind", kind);
    mnas__ckpt_w_i64(w, "library.version", mnas_version_number());
}

/* Header and trailer around the records; the buffer is then the file. */
void mnas__ckpt_w_finish(mnas__ckpt_writer *w)
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

/* The header and trailer of buf[0..len): magic, byte order, version,
 * size, end marker, flags and a record count that can fit. */
static mnas_status parse_frame(mnas_ctx *ctx, const char *what, const uint8_t *buf, size_t len,
                               uint32_t *count_out, uint32_t *version_out)
{
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
    uint32_t version = *version_out = get_u32(buf + 8);
    if (version != MNAS__CKPT_VERSION)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: format version %u; this library reads version %u", what,
                           (unsigned)version, (unsigned)MNAS__CKPT_VERSION);
    uint64_t size = mnas__ckpt_get_u64(buf + 24);
    if (size != len)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %s: the file has %zu bytes, its header says %llu", what,
                           size > len ? "truncated" : "trailing bytes or corrupt header", len,
                           (unsigned long long)size);
    const uint8_t *t = buf + len - MNAS__CKPT_TRAILER;
    if (memcmp(t, MNAS__CKPT_END, 4) != 0)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: end marker missing (corrupt)", what);
    uint32_t count = *count_out = get_u32(buf + 16), flags = get_u32(buf + 20);
    if (flags != 0) return mnas__error(ctx, MNAS_E_FORMAT, "%s: unknown header flags 0x%08x", what, (unsigned)flags);
    if (count == 0 || count > MNAS__CKPT_MAX_RECORDS)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %u records (1..%u)", what, (unsigned)count,
                           (unsigned)MNAS__CKPT_MAX_RECORDS);
    /* Every record takes at least 2 + 1 + 2 + 8 + 4 bytes. */
    if ((uint64_t)count * 17u > len - MNAS__CKPT_HEADER - MNAS__CKPT_TRAILER)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: %u records cannot fit in %zu bytes", what, (unsigned)count, len);
    return MNAS_OK;
}

/* Record i at buf[*pos..end) into r (its data points into buf); *pos moves
 * past it. Checks its name, type, shape, payload size and CRC. */
static mnas_status parse_record(mnas_ctx *ctx, const char *what, const uint8_t *buf, size_t end, size_t *pos_io,
                                uint32_t i, mnas__ckpt_record *r)
{
    size_t pos = *pos_io, start = pos;
    if (end - pos < 2)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record %u starts past the end of the data", what, (unsigned)i);
    size_t nlen = (size_t)buf[pos] | (size_t)buf[pos + 1] << 8;
    pos += 2;
    if (nlen == 0 || nlen > MNAS__CKPT_NAME_MAX || end - pos < nlen + 2 || !name_printable(buf + pos, nlen))
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record %u has a bad name (length %zu)", what, (unsigned)i, nlen);
    memcpy(r->name, buf + pos, nlen);
    r->name[nlen] = '\0';
    pos += nlen;
    r->dtype = buf[pos];
    r->ndim = buf[pos + 1];
    pos += 2;
    size_t es = dtype_size(r->dtype);
    if (!es || r->ndim > MNAS_MAX_DIMS)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": unknown type %d or %d dimensions (0..%d)", what,
                           r->name, r->dtype, r->ndim, MNAS_MAX_DIMS);
    if (end - pos < 8 * (size_t)r->ndim + 8)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": shape runs past the end of the data", what,
                           r->name);
    uint64_t cnt = 1;
    for (int d = 0; d < r->ndim; d++, pos += 8) {
        uint64_t v = mnas__ckpt_get_u64(buf + pos);
        if (v > (uint64_t)INT64_MAX || (v && cnt > UINT64_MAX / v))
            return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": dimension %d is %llu (overflow)", what,
                               r->name, d, (unsigned long long)v);
        r->dims[d] = (int64_t)v;
        cnt *= v;
    }
    uint64_t bytes = mnas__ckpt_get_u64(buf + pos);
    pos += 8;
    if (cnt > UINT64_MAX / es || cnt * es != bytes)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\": %llu payload bytes do not match its %s shape",
                           what, r->name, (unsigned long long)bytes, dtype_name(r->dtype));
    if (bytes > end - pos || end - pos - (size_t)bytes < 4)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" (%llu bytes) runs past the end of the data", what,
                           r->name, (unsigned long long)bytes);
    r->count = cnt;
    r->data = buf + pos;
    r->bytes = (size_t)bytes;
    pos += (size_t)bytes;
    uint32_t want = get_u32(buf + pos), got = mnas__crc32(0, buf + start, pos - start);
    pos += 4;
    if (want != got)
        return mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" is corrupt (CRC-32 0x%08x, stored 0x%08x)", what,
                           r->name, (unsigned)got, (unsigned)want);
    *pos_io = pos;
    return MNAS_OK;
}

mnas_status mnas__ckpt_parse(mnas_ctx *ctx, const char *what, const uint8_t *buf, size_t len, mnas__ckpt *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = ctx;
    uint32_t count = 0, version = 0;
    mnas_status st = parse_frame(ctx, what, buf, len, &count, &version);
    if (st != MNAS_OK) return st;
    mnas__ckpt_record *rec = mnas__calloc(ctx, count, sizeof *rec);
    if (!rec)
        return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate the index of %u records", what, (unsigned)count);
    size_t pos = MNAS__CKPT_HEADER, end = len - MNAS__CKPT_TRAILER;
    for (uint32_t i = 0; i < count && st == MNAS_OK; i++) {
        st = parse_record(ctx, what, buf, end, &pos, i, &rec[i]);
        for (uint32_t k = 0; k < i && st == MNAS_OK; k++)
            if (!strcmp(rec[k].name, rec[i].name))
                st = mnas__error(ctx, MNAS_E_FORMAT, "%s: record \"%s\" appears twice", what, rec[i].name);
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

const mnas__ckpt_record *mnas__ckpt_find(const mnas__ckpt *c, const char *name)
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
    if (fd < 0)
        return mnas__error(ctx, MNAS_E_IO, "%s: cannot open '%s': %s", fn, path,
                           mnas__errno_text(errno, why, sizeof why));
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

mnas_status mnas__ckpt_need(const mnas__ckpt *c, const char *what, const char *name, int dtype, int ndim,
                        const int64_t *dims, const mnas__ckpt_record **out)
{
    const mnas__ckpt_record *r = mnas__ckpt_find(c, name);
    *out = NULL;
    if (!r) return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: record \"%s\" is missing", what, name);
    int ok_type =
        r->dtype == dtype || (dtype == MNAS__DT_REAL && (r->dtype == MNAS__DT_F32 || r->dtype == MNAS__DT_F64));
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

mnas_status mnas__ckpt_need_i64(const mnas__ckpt *c, const char *what, const char *name, int64_t *v)
{
    const mnas__ckpt_record *r;
    mnas_status st = mnas__ckpt_need(c, what, name, MNAS__DT_I64, 0, NULL, &r);
    if (st == MNAS_OK) *v = (int64_t)mnas__ckpt_get_u64(r->data);
    return st;
}

mnas_status mnas__ckpt_need_f64(const mnas__ckpt *c, const char *what, const char *name, double *v)
{
    const mnas__ckpt_record *r;
    mnas_status st = mnas__ckpt_need(c, what, name, MNAS__DT_F64, 0, NULL, &r);
    if (st == MNAS_OK) *v = mnas__ckpt_rec_real(r, 0);
    return st;
}

mnas_status mnas__ckpt_need_kind(const mnas__ckpt *c, const char *what, const char *kind)
{
    const mnas__ckpt_record *r = mnas__ckpt_find(c, "kind");
    size_t n = strlen(kind);
    if (!r || r->dtype != MNAS__DT_U8 || r->ndim != 1 || r->bytes != n || memcmp(r->data, kind, n) != 0)
        return mnas__error(c->ctx, MNAS_E_FORMAT, "%s: not %s checkpoint", what,
                           !strcmp(kind, MNAS__CKPT_KIND_LEARNER)  ? "a learner"
                           : !strcmp(kind, MNAS__CKPT_KIND_OPTIM) ? "an optimiser"
                                                                  : "a parameter-set");
    return MNAS_OK;
}

/* A real-valued record of tensor t's shape, checked finite. */
mnas_status mnas__ckpt_need_tensor(const mnas__ckpt *c, const char *what, const char *name, const mnas_tensor *t,
                               const mnas__ckpt_record **out)
{
    mnas_status st = mnas__ckpt_need(c, what, name, MNAS__DT_REAL, t->ndim, t->shape, out);
    if (st != MNAS_OK) return st;
    for (uint64_t i = 0; i < (*out)->count; i++) {
        double v = mnas__ckpt_rec_real(*out, i);
        if (!isfinite(v) || fabs(v) > (sizeof(mnas_real) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308))
            return mnas__error(c->ctx, MNAS_E_NUMERIC, "%s: record \"%s\" has a non-finite value at element %llu", what,
                               name, (unsigned long long)i);
    }
    return MNAS_OK;
}

void mnas__ckpt_copy_real(mnas_real *dst, const mnas__ckpt_record *r)
{
    for (uint64_t i = 0; i < r->count; i++) dst[i] = (mnas_real)mnas__ckpt_rec_real(r, i);
}
void mnas__ckpt_param_rec_name(char *buf, size_t cap, const char *prefix, const char *name)
{
    snprintf(buf, cap, "%s:%s", prefix, name);
}

/* Read and parse path; *buf must be freed after *c is released. */
mnas_status mnas__ckpt_open(mnas_ctx *ctx, const char *fn, const char *path, uint8_t **buf, mnas__ckpt *c)
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
mnas_status mnas__ckpt_load_file(mnas_ctx *ctx, const char *fn, const char *path,
                             mnas_status (*apply)(void *obj, const mnas__ckpt *c, const char *what), void *obj)
{
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    uint8_t *buf;
    mnas__ckpt c;
    mnas_status st = mnas__ckpt_open(ctx, fn, path, &buf, &c);
    if (st != MNAS_OK) return st;
    char what[160];
    snprintf(what, sizeof what, "%s: '%s'", fn, path);
    st = apply(obj, &c, what);
    mnas__ckpt_release(&c);
    mnas__free(ctx, buf);
    return st;
}

mnas_status mnas__ckpt_w_save(mnas__ckpt_writer *w, const char *fn, const char *path)
{
    mnas__ckpt_w_finish(w);
    mnas_status st = w->st;
    if (st != MNAS_OK) st = mnas__error(w->ctx, st, "%s: cannot allocate the checkpoint of '%s'", fn, path);
    else st = mnas__atomic_write_buf(w->ctx, fn, path, w->buf, w->len);
    mnas__free(w->ctx, w->buf);
    w->buf = NULL;
    return st;
}

/* ---- parameter-set checkpoints ---------------------------------------------------- */

void mnas__ckpt_w_param(mnas__ckpt_writer *w, const mnas_params *p, size_t i)
{
    char name[MNAS__CKPT_NAME_MAX + 1];
    const mnas_tensor *t = mnas_params_get(p, i);
    mnas__ckpt_param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
    mnas__ckpt_w_record(w, name, MNAS__DT_REAL, t->ndim, t->shape, t->data);
}

mnas_status mnas__ckpt_need_param(const mnas__ckpt *c, const char *what, const mnas_params *p, size_t i)
{
    char name[MNAS__CKPT_NAME_MAX + 1];
    const mnas__ckpt_record *r;
    mnas__ckpt_param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
    return mnas__ckpt_need_tensor(c, what, name, mnas_params_get(p, i), &r);
}

void mnas__ckpt_copy_param(const mnas__ckpt *c, mnas_params *p, size_t i)
{
    char name[MNAS__CKPT_NAME_MAX + 1];
    mnas__ckpt_param_rec_name(name, sizeof name, "param", mnas_params_name(p, i));
    mnas__ckpt_copy_real(mnas_params_get(p, i)->data, mnas__ckpt_find(c, name));
}

mnas_status mnas_params_save(const mnas_params *p, const char *path)
{
    const char *fn = "mnas_params_save";
    if (!p) return MNAS_E_INVALID;
    mnas_ctx *ctx = mnas__params_ctx(p);
    if (!path || !*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL or empty", fn);
    mnas__ckpt_writer w;
    mnas__ckpt_w_begin(&w, ctx, MNAS__CKPT_KIND_PARAMS);
    mnas__ckpt_w_i64(&w, "params.count", (int64_t)mnas_params_count(p));
    for (size_t i = 0; i < mnas_params_count(p); i++) mnas__ckpt_w_param(&w, p, i);
    return mnas__ckpt_w_save(&w, fn, path);
}

mnas_status mnas__params_load_parsed(mnas_params *p, const mnas__ckpt *c, const char *what)
{
    mnas_status st = mnas__ckpt_need_kind(c, what, MNAS__CKPT_KIND_PARAMS);
    if (st != MNAS_OK) return st;
    int64_t count;
    if ((st = mnas__ckpt_need_i64(c, what, "params.count", &count)) != MNAS_OK) return st;
    if (count != (int64_t)mnas_params_count(p))
        return mnas__error(c->ctx, MNAS_E_MISMATCH, "%s: %lld parameters, the set has %zu", what, (long long)count,
                           mnas_params_count(p));
    for (size_t i = 0; i < mnas_params_count(p); i++)
        if ((st = mnas__ckpt_need_param(c, what, p, i)) != MNAS_OK) return st;
    for (size_t i = 0; i < mnas_params_count(p); i++) mnas__ckpt_copy_param(c, p, i);
    return MNAS_OK;
}

static mnas_status apply_params(void *obj, const mnas__ckpt *c, const char *what)
{
    return mnas__params_load_parsed(obj, c, what);
}

mnas_status mnas_params_load(mnas_params *p, const char *path)
{
    if (!p) return MNAS_E_INVALID;
    return mnas__ckpt_load_file(mnas__params_ctx(p), "mnas_params_load", path, apply_params, p);
}
