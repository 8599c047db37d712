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
} mnas__record;

typedef struct {
    mnas_ctx *ctx;
    mnas__record *rec;
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
const mnas__record *mnas__ckpt_find(const mnas__ckpt *c, const char *name);

/* Load a parsed learner / parameter-set checkpoint: validates everything
 * against the object first, then commits (no failure after the first
 * change). Used by the public loaders and the fuzz harnesses. */
mnas_status mnas__learner_load_parsed(mnas_learner *l, const mnas__ckpt *c, const char *what);
mnas_status mnas__params_load_parsed(mnas_params *p, const mnas__ckpt *c, const char *what);

#endif /* MNAS_CHECKPOINT_INTERNAL_H */
