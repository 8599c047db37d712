/* The atomic file writer shared by checkpoints and PNG figures, and the
 * CRC-32 of both formats (one copy, so their durability cannot drift). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core_internal.h"
#include "io/atomic_file.h"

/* Half-byte table of the reflected polynomial 0xEDB88320. */
static const uint32_t crc_nibble[16] = { 0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                         0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                         0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu };

uint32_t mnas__crc32(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

const char *mnas__errno_text(int e, char *buf, size_t cap)
{
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "error %d", e);
    return buf;
}

/* Sync the folder holding path (its entry for the renamed file). Best
 * effort: some file systems cannot open or sync a folder. */
static void sync_folder(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash == path) slash[1] = '\0';
    else if (slash) *slash = '\0';
    int dfd = open(slash ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

mnas_status mnas__atomic_write(mnas_ctx *ctx, const char *fn, const char *path, mnas__atomic_fill_fn fill,
                               void *user)
{
    if (!path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is NULL", fn);
    if (!*path) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is empty", fn);
    size_t plen = strlen(path);
    if (plen > 4096) return mnas__error(ctx, MNAS_E_INVALID, "%s: path is longer than 4096 bytes", fn);
    char *tmp = mnas__alloc(ctx, plen + 5);
    if (!tmp) return mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate a file name", fn);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    char why[128];
    /* O_NOFOLLOW: never write through a link someone left at the temporary name */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) {
        mnas_status st = mnas__error(ctx, MNAS_E_IO, "%s: cannot create '%s': %s", fn, tmp,
                                     mnas__errno_text(errno, why, sizeof why));
        mnas__free(ctx, tmp);
        return st;
    }
    mnas_status st = fill(user, ctx, fn, tmp, fd);
    /* EINVAL/EROFS: the file cannot be synced (special file systems); the data is written */
    if (st == MNAS_OK && fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        st = mnas__error(ctx, MNAS_E_IO, "%s: cannot flush '%s' to disk: %s", fn, tmp,
                         mnas__errno_text(errno, why, sizeof why));
    if (close(fd) != 0 && st == MNAS_OK)
        st = mnas__error(ctx, MNAS_E_IO, "%s: cannot close '%s': %s", fn, tmp,
                         mnas__errno_text(errno, why, sizeof why));
    if (st == MNAS_OK) {
        const char *crash = getenv("MNAS_CHECKPOINT_TEST_CRASH");
        if (crash && !strcmp(crash, "before-rename")) {
            st = mnas__error(ctx, MNAS_E_IO, "%s: simulated crash before renaming '%s' (MNAS_CHECKPOINT_TEST_CRASH)",
                             fn, tmp);
            mnas__free(ctx, tmp);
            return st; /* the temporary file stays, as after a real crash */
        }
    }
    if (st == MNAS_OK && rename(tmp, path) != 0)
        st = mnas__error(ctx, MNAS_E_IO, "%s: cannot rename '%s' to '%s': %s", fn, tmp, path,
                         mnas__errno_text(errno, why, sizeof why));
    if (st != MNAS_OK) unlink(tmp);
    else sync_folder(tmp);
    mnas__free(ctx, tmp);
    return st;
}

typedef struct {
    const uint8_t *buf;
    size_t len;
} buf_job;

static mnas_status fill_buf(void *user, mnas_ctx *ctx, const char *fn, const char *tmp, int fd)
{
    const buf_job *j = user;
    char why[128];
    for (size_t off = 0; off < j->len;) {
        ssize_t n = write(fd, j->buf + off, j->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return mnas__error(ctx, MNAS_E_IO, "%s: cannot write '%s': %s", fn, tmp,
                               n < 0 ? mnas__errno_text(errno, why, sizeof why) : "no progress");
        off += (size_t)n;
    }
    return MNAS_OK;
}

mnas_status mnas__atomic_write_buf(mnas_ctx *ctx, const char *fn, const char *path, const void *buf, size_t len)
{
    buf_job j = { buf, len };
    return mnas__atomic_write(ctx, fn, path, fill_buf, &j);
}
