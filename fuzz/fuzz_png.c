/* libFuzzer harness of the PNG decoder of the image datasets (libpng with
 * the library's limits and error handling), then the conversion to 1 or 3
 * channels with resizing, as the folder loader does. The first input byte
 * picks a mode: odd values fix every chunk's CRC first, so mutations of
 * headers and image data get past libpng's CRC check. */
#include "fuzz_common.h"

#include "data/image_internal.h"
#include "io/checkpoint_internal.h" /* mnas__crc32: PNG uses the same CRC-32 */

static void fix_chunk_crcs(uint8_t *b, size_t n)
{
    size_t pos = 8;
    while (pos + 12 <= n) {
        uint32_t len = (uint32_t)b[pos] << 24 | (uint32_t)b[pos + 1] << 16 | (uint32_t)b[pos + 2] << 8 | b[pos + 3];
        if (len > n - pos - 12) break;
        uint32_t crc = mnas__crc32(0, b + pos + 4, 4 + (size_t)len);
        uint8_t *c = b + pos + 8 + len;
        c[0] = (uint8_t)(crc >> 24);
        c[1] = (uint8_t)(crc >> 16);
        c[2] = (uint8_t)(crc >> 8);
        c[3] = (uint8_t)crc;
        pos += 12 + (size_t)len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    mnas_ctx *ctx = fuzz_ctx();
    mnas__png_image png = { 0 };
    if (size < 1) return 0;
    int mode = input[0];
    size--;
    uint8_t *data = malloc(size ? size : 1);
    if (!data) return 0;
    memcpy(data, input + 1, size);
    if (mode & 1) fix_chunk_crcs(data, size);
    if (mnas__png_decode(ctx, "fuzz", "input.png", data, size, &png) != MNAS_OK) {
        fuzz_expect_message(ctx);
        free(data);
        return 0;
    }
    if (png.c < 1 || png.c > 4 || png.h < 1 || png.w < 1 || (png.enc != MNAS__ENC_U8 && png.enc != MNAS__ENC_U16))
        abort();
    float *src = malloc(sizeof(float) * (size_t)png.c * (size_t)png.h * (size_t)png.w);
    if (!src) {
        mnas__free(ctx, png.data);
        free(data);
        return 0;
    }
    mnas__image_samples_to_float(png.data, png.c, png.h, png.w, png.enc, NULL, src);
    mnas__raw_image raw = { src, png.c, png.h, png.w };
    /* Convert to a small size, both channel counts, each resize rule. */
    for (int channels = 1; channels <= 3; channels += 2) {
        int h = 1 + (int)(size % 7), w = 1 + (int)(size % 5);
        if (raw.h / h > MNAS_IMAGE_MAX_DOWNSCALE || raw.w / w > MNAS_IMAGE_MAX_DOWNSCALE) continue;
        size_t ns = mnas__image_scratch_floats(&raw, channels, h, w);
        float *out = malloc(sizeof(float) * (size_t)(channels * h * w));
        float *scratch = malloc(sizeof(float) * (ns ? ns : 1));
        if (out && scratch) {
            mnas__image_convert(&raw, channels, MNAS_ALPHA_WHITE, MNAS_RESIZE_AREA, h, w, out, scratch);
            for (int i = 0; i < channels * h * w; i++)
                if (!(out[i] >= 0.0f && out[i] <= 1.0f)) abort();
        }
        free(out);
        free(scratch);
    }
    free(src);
    mnas__free(ctx, png.data);
    free(data);
    return 0;
}
