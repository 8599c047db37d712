/* Private checkpoint layer: the container format (docs/checkpoints.md) as a
 * writer of records and a validating parser, shared by the learner and
 * parameter-set checkpoints and by the fuzz harnesses. */
#ifndef MNAS_CHECKPOINT_INTERNAL_H
#define MNAS_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <mnas/io.h>

#include "core/core_internal.h"
#include "io/atomic_file.h" /* mnas__crc32 */

#define MNAS__CKPT_MAGIC "MNASCKPT"
#define MNAS__CKPT_END "MEND"
#define MNAS__CKPT_VERSION 1u
#define MNAS__CKPT_ENDIAN 0x0A0B0C0Du
#define MNAS__CKPT_HEADER 32u
#define MNAS__CKPT_TRAILER 8u
#define MNAS__CKPT_NAME_MAX 255u
#define MNAS__CKPT_MAX_RECORDS 100000u
/* Files larger than this are refused before reading (1 TiB). */
#define MNAS__CKPT_MAX_BYTES ((uint64_t)1 << 40)

/* Record element types (values are part of the file format). */
enum {
    MNAS__DT_F32 = 1,
    MNAS__DT_F64 = 2,
    MNAS__DT_I64 = 3,
    MNAS__DT_U64 = 4,
    MNAS__DT_U8 = 5
};

/* One record of a parsed file; data points into the parsed buffer
 * (little-endian, unaligned). */
typedef struct {
    char name[MNAS__CKPT_NAME_MAX + 1];
    int dtype;
    int ndim;
    int64_t dims[MNAS_MAX_DIMS];
    uint64_t count; /* elements */
    const uint8_t *data;
    size_t bytes;
} mnas__ckpt_record;

typedef struct {
    mnas_ctx *ctx;
    mnas__ckpt_record *rec;
    size_t n;
    uint32_t version;
} mnas__ckpt;


/* Validate buf[0..len) completely (header, every record's bounds, shape and
 * CRC, the trailer and the whole-file CRC) and index its records. what
 * names the source in messages (a path). Records point into buf, which must
 * outlive out. On failure nothing is allocated and the message says what
 * is wrong (MNAS_E_FORMAT). */
mnas_status mnas__ckpt_parse(mnas_ctx *ctx, const char *what, const uint8_t *buf, size_t len, mnas__ckpt *out);
void mnas__ckpt_release(mnas__ckpt *c);
/* The record called name, or NULL. */
const mnas__ckpt_record *mnas__ckpt_find(const mnas__ckpt *c, const char *name);

#define MNAS__CKPT_KIND_LEARNER "mnas.learner"
#define MNAS__CKPT_KIND_PARAMS "mnas.params"
#define MNAS__CKPT_KIND_OPTIM "mnas.optim"
/* The record type of the build's real numbers. */
#define MNAS__DT_REAL (sizeof(mnas_real) == 8 ? MNAS__DT_F64 : MNAS__DT_F32)

/* ---- writing: records into a growing buffer, then header and trailer ---- */

typedef struct {
    mnas_ctx *ctx;
    uint8_t *buf;
    size_t len, cap;
    uint32_t count;
    mnas_status st; /* the first failure (allocation); later calls do nothing */
} mnas__ckpt_writer;

/* Start a file of the given kind (MNAS__CKPT_KIND_*). */
void mnas__ckpt_w_begin(mnas__ckpt_writer *w, mnas_ctx *ctx, const char *kind);
/* Append a record; src holds the elements in host order (count from dims;
 * ndim 0 is a scalar); reals are passed with dtype MNAS__DT_REAL. */
void mnas__ckpt_w_record(mnas__ckpt_writer *w, const char *name, int dtype, int ndim, const int64_t *dims,
                         const void *src);
void mnas__ckpt_w_i64(mnas__ckpt_writer *w, const char *name, int64_t v);
void mnas__ckpt_w_f64(mnas__ckpt_writer *w, const char *name, double v);
void mnas__ckpt_w_u64(mnas__ckpt_writer *w, const char *name, uint64_t v);
/* Header and trailer around the records; w->buf[0..len) is then the file
 * (the caller writes it with mnas__atomic_write_buf and frees w->buf). */
void mnas__ckpt_w_finish(mnas__ckpt_writer *w);
/* Finish w, write it atomically to path and free its buffer (fn names the
 * public function in messages). */
mnas_status mnas__ckpt_w_save(mnas__ckpt_writer *w, const char *fn, const char *path);
/* "prefix:name", the record name of a parameter (or of its optimiser state). */
void mnas__ckpt_param_rec_name(char *buf, size_t cap, const char *prefix, const char *name);

/* ---- reading: checked access to the records of a parsed file ---- */

/* Little-endian u64 at p (record data is unaligned). */
uint64_t mnas__ckpt_get_u64(const uint8_t *p);
/* Element i of a real record as double. */
double mnas__ckpt_rec_real(const mnas__ckpt_record *r, uint64_t i);
void mnas__ckpt_copy_real(mnas_real *dst, const mnas__ckpt_record *r);
/* The record called name, of the given type and shape (MNAS_E_FORMAT or
 * MNAS_E_MISMATCH naming the record otherwise); MNAS__DT_REAL accepts f32
 * and f64. */
mnas_status mnas__ckpt_need(const mnas__ckpt *c, const char *what, const char *name, int dtype, int ndim,
                            const int64_t *dims, const mnas__ckpt_record **out);
mnas_status mnas__ckpt_need_i64(const mnas__ckpt *c, const char *what, const char *name, int64_t *v);
mnas_status mnas__ckpt_need_f64(const mnas__ckpt *c, const char *what, const char *name, double *v);
/* The file's "kind" record is kind (MNAS__CKPT_KIND_*). */
mnas_status mnas__ckpt_need_kind(const mnas__ckpt *c, const char *what, const char *kind);
/* A real record of tensor t's shape, every value finite. */
mnas_status mnas__ckpt_need_tensor(const mnas__ckpt *c, const char *what, const char *name, const mnas_tensor *t,
                                   const mnas__ckpt_record **out);
/* Read and parse path; *buf must be freed after *c is released. fn names
 * the caller in messages. */
mnas_status mnas__ckpt_open(mnas_ctx *ctx, const char *fn, const char *path, uint8_t **buf, mnas__ckpt *c);
/* Read and check the file at path, then hand it to apply (which validates
 * its contents before changing obj). */
mnas_status mnas__ckpt_load_file(mnas_ctx *ctx, const char *fn, const char *path,
                                 mnas_status (*apply)(void *obj, const mnas__ckpt *c, const char *what), void *obj);

/* Load a parsed learner (lib/meta/learner_checkpoint.c) / parameter-set checkpoint: validates everything
 * against the object first, then commits (no failure after the first
 * change). Used by the public loaders and the fuzz harnesses. */
mnas_status mnas__learner_load_parsed(mnas_learner *l, const mnas__ckpt *c, const char *what);
mnas_status mnas__params_load_parsed(mnas_params *p, const mnas__ckpt *c, const char *what);
mnas_status mnas__optim_load_parsed(mnas_optim *o, const mnas__ckpt *c, const char *what);

/* Parameter i's values as record "param:<name>": written, checked (present,
 * of its shape, finite), copied in. Shared by parameter-set and learner
 * checkpoints. */
void mnas__ckpt_w_param(mnas__ckpt_writer *w, const mnas_params *p, size_t i);
mnas_status mnas__ckpt_need_param(const mnas__ckpt *c, const char *what, const mnas_params *p, size_t i);
void mnas__ckpt_copy_param(const mnas__ckpt *c, mnas_params *p, size_t i);

/* ---- optimiser state records (optim_checkpoint.c), shared by learner and
 * optimiser checkpoints ---- */

/* "optim.kind" and "optim.steps". */
void mnas__ckpt_w_optim_head(mnas__ckpt_writer *w, const mnas_optim *o);
/* "optim.m:<name>" (and Adam's "optim.v:<name>") of o's parameter i. */
void mnas__ckpt_w_optim_moments(mnas__ckpt_writer *w, const mnas_optim *o, size_t i);
/* The head records: present, steps >= 0 (into *steps), the kind o's. */
mnas_status mnas__ckpt_need_optim_head(const mnas__ckpt *c, const char *what, const mnas_optim *o, int64_t *steps);
/* Parameter i's moment records: present, of its shape, finite, second
 * moments >= 0. */
mnas_status mnas__ckpt_need_optim_moments(const mnas__ckpt *c, const char *what, const mnas_optim *o, size_t i);
/* Copy the records mnas__ckpt_need_optim_moments checked into o. */
void mnas__ckpt_copy_optim_moments(const mnas__ckpt *c, mnas_optim *o, size_t i);

#endif /* MNAS_CHECKPOINT_INTERNAL_H */
