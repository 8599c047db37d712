/* Private io helper: the one atomic file writer (temporary file, fsync,
 * rename, folder fsync) and the CRC-32 that checkpoints and PNG share. */
#ifndef MNAS_ATOMIC_FILE_H
#define MNAS_ATOMIC_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <mnas/core.h>

/* CRC-32 (IEEE 802.3, the polynomial of zlib and PNG) of n bytes,
 * continuing from crc (0 to start). */
uint32_t mnas__crc32(uint32_t crc, const void *data, size_t n);

/* Writes the whole content to fd. On failure it returns a status and has
 * set the context's message (tmp names the file being written). */
typedef mnas_status (*mnas__atomic_fill_fn)(void *user, mnas_ctx *ctx, const char *fn, const char *tmp, int fd);

/* Replace path atomically: fill "<path>.tmp" (created fresh, never through
 * a symbolic link), fsync it, rename it over path, then fsync the folder so
 * the rename itself survives a power cut. On failure path is untouched and
 * the temporary file removed. fn names the public function in messages.
 * MNAS_CHECKPOINT_TEST_CRASH=before-rename (tests only) stops after the
 * temporary file is complete, as a crash there would, and leaves it. */
mnas_status mnas__atomic_write(mnas_ctx *ctx, const char *fn, const char *path, mnas__atomic_fill_fn fill,
                               void *user);

/* mnas__atomic_write of one buffer. */
mnas_status mnas__atomic_write_buf(mnas_ctx *ctx, const char *fn, const char *path, const void *buf, size_t len);

/* strerror_r into buf, "error N" when that fails. */
const char *mnas__errno_text(int e, char *buf, size_t cap);

#endif /* MNAS_ATOMIC_FILE_H */
