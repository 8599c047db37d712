/* libFuzzer harness of the PNG decoder of the image datasets (libpng with
 * the library's limits and error handling), then the conversion to 1 or 3
 * channels with resizing, as the folder loader does. */
#include "fuzz_common.h"

#include "data/image_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mnas_ctx *ctx = fuzz_ctx();
    mnas__raw_image raw = { 0 };
    if (mnas__png_decode(ctx, "fuzz", "input.png", data, size, &raw) != MNAS_OK) {
        fuzz_expect_message(ctx);
        return 0;
    }
    if (raw.c < 1 || raw.c > 4 || raw.h < 1 || raw.w < 1) abort();
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
    mnas__free(ctx, raw.data);
    return 0;
}
