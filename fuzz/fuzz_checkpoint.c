/* libFuzzer harness of the checkpoint reader: the container parser, then
 * the learner and parameter-set loaders. The first input byte picks a mode:
 * odd values re-seal the CRCs (every record's and the file's) and the size
 * field before parsing, so mutations reach the semantic checks behind the
 * CRCs instead of all dying there. */
#include "fuzz_common.h"

#include "io/checkpoint_internal.h"

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Best-effort walk over the records, fixing each CRC; then the size and
 * the file CRC. */
static void reseal(uint8_t *b, size_t len)
{
    if (len < MNAS__CKPT_HEADER + MNAS__CKPT_TRAILER) return;
    for (int i = 0; i < 8; i++) b[24 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    size_t pos = MNAS__CKPT_HEADER, end = len - MNAS__CKPT_TRAILER;
    uint32_t count = rd32(b + 16);
    for (uint32_t r = 0; r < count && r < 4096; r++) {
        size_t start = pos;
        if (end - pos < 4) break;
        size_t nlen = (size_t)b[pos] | (size_t)b[pos + 1] << 8;
        pos += 2;
        if (end - pos < nlen + 2) break;
        pos += nlen;
        int ndim = b[pos + 1];
        pos += 2;
        if (ndim > 4 || end - pos < 8 * (size_t)ndim + 8) break;
        pos += 8 * (size_t)ndim;
        uint64_t bytes = rd64(b + pos);
        pos += 8;
        if (bytes > end - pos || end - pos - (size_t)bytes < 4) break;
        pos += (size_t)bytes;
        wr32(b + pos, mnas__crc32(0, b + start, pos - start));
        pos += 4;
    }
    memcpy(b + len - 8, MNAS__CKPT_END, 4);
    wr32(b + len - 4, mnas__crc32(0, b, len - 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mnas_learner *maml, *shared;
    static mnas_params *params;
    static mnas_optim *optim;
    mnas_ctx *ctx = fuzz_ctx();
    if (!maml) {
        /* The learners of the seed corpus (fuzz/make_corpus.c). */
        mnas_learner_options o = MNAS_LEARNER_OPTIONS_INIT;
        o.seed = 8;
        o.meta_batch = 2;
        o.inner_steps = 1;
        o.hidden = 3;
        o.layers = 2;
        o.threads = 1;
        maml = mnas_learner_create(ctx, &o);
        o.method = MNAS_METHOD_MNAS_SHARED;
        o.z_dim = 2;
        o.f_dim = 2;
        o.nodes = 1;
        shared = mnas_learner_create(ctx, &o);
        params = mnas_params_create(ctx);
        int64_t s1[2] = { 2, 3 }, s2[1] = { 2 };
        if (!maml || !shared || !params || mnas_params_add(params, "w", 2, s1, MNAS_INIT_ZEROS, 0, 0) < 0 ||
            mnas_params_add(params, "b", 1, s2, MNAS_INIT_ZEROS, 0, 0) < 0 || !(optim = mnas_optim_create(params, NULL)))
            abort();
    }
    if (size < 1) return 0;
    int mode = data[0];
    data++;
    size--;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (mode & 1) reseal(buf, size);
    mnas__ckpt c;
    mnas_status st = mnas__ckpt_parse(ctx, "fuzz", buf, size, &c);
    if (st != MNAS_OK) {
        fuzz_expect_message(ctx);
    } else {
        mnas_learner *targets[2] = { maml, shared };
        for (int i = 0; i < 2; i++)
            if (mnas__learner_load_parsed(targets[i], &c, "fuzz") != MNAS_OK) fuzz_expect_message(ctx);
        if (mnas__params_load_parsed(params, &c, "fuzz") != MNAS_OK) fuzz_expect_message(ctx);
        if (mnas__optim_load_parsed(optim, &c, "fuzz") != MNAS_OK) fuzz_expect_message(ctx);
        mnas__ckpt_release(&c);
    }
    free(buf);
    return 0;
}
