/* libFuzzer harness of the genotype parser: any text either parses, prints
 * back to a string that parses to an equal genotype and exports to DOT, or
 * fails with a message. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mnas_search_space *space;
    mnas_ctx *ctx = fuzz_ctx();
    if (!space && !(space = mnas_search_space_mlp(ctx))) abort();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    mnas_genotype *g = mnas_genotype_parse(ctx, space, text);
    if (!g) {
        fuzz_expect_message(ctx);
    } else {
        int64_t n = mnas_genotype_to_string(g, NULL, 0);
        if (n < 0) abort();
        char *s = malloc((size_t)n + 1);
        if (!s || mnas_genotype_to_string(g, s, (size_t)n + 1) != n) abort();
        mnas_genotype *h = mnas_genotype_parse(ctx, space, s);
        if (!h || !mnas_genotype_equal(g, h)) abort(); /* print -> parse must round-trip */
        int64_t d = mnas_genotype_to_dot(g, text, NULL, 0);
        if (d < 0) abort();
        mnas_genotype_free(h);
        free(s);
        mnas_genotype_free(g);
    }
    free(text);
    return 0;
}
