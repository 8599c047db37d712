/* libFuzzer harness of the IDX reader (plain and gzip): the input is split
 * into an images file and a labels file (the first two bytes give the
 * split point), written to memory files and loaded as a dataset. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

static int mem_file(const uint8_t *data, size_t n, char *path, size_t cap)
{
    int fd = memfd_create("mnas-fuzz", MFD_CLOEXEC);
    if (fd < 0) abort();
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mnas_ctx *ctx = fuzz_ctx();
    if (size < 2) return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (split > size) split %= size + 1;
    char ipath[64], lpath[64];
    int fi = mem_file(data, split, ipath, sizeof ipath);
    int fl = mem_file(data + split, size - split, lpath, sizeof lpath);
    mnas_image_load_options o = MNAS_IMAGE_LOAD_OPTIONS_INIT;
    mnas_image_dataset *ds = mnas_image_dataset_load_idx(ctx, ipath, lpath, &o);
    if (!ds) {
        fuzz_expect_message(ctx);
    } else {
        int64_t shape[3];
        if (mnas_image_dataset_shape(ds, shape) != MNAS_OK) abort();
        size_t total = 0;
        for (size_t c = 0; c < mnas_image_dataset_num_classes(ds); c++) total += mnas_image_dataset_class_size(ds, c);
        if (total != mnas_image_dataset_num_images(ds)) abort();
        mnas_image_dataset_free(ds);
    }
    close(fi);
    close(fl);
    return 0;
}
