/* Max and average pooling (dilation 1) with their adjoints, and the
 * gather / scatter of max-pool's argmax; split from conv.c, whose tap
 * spans (mnas__k_tap_span) they share. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---- pooling (dilation 1) ----------------------------------------------
 * Tap by tap like the depthwise loops: for window cell (i, j), a contiguous
 * run of output row op= input row. Each output still sees its window's
 * cells in row-major order, so the first maximum wins a tie. */

/* Non-padding cells of each output's window (the same for every plane). */
static void window_counts(const mnas_kconv *g, real *cnt)
{
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t a = oh * g->stride - g->pad, b = a + g->kh;
        int64_t rows = (b > g->H ? g->H : b) - (a < 0 ? 0 : a);
        for (int64_t ow = 0; ow < g->OW; ow++) {
            int64_t c = ow * g->stride - g->pad, d = c + g->kw;
            cnt[oh * g->OW + ow] = (real)(rows * ((d > g->W ? g->W : d) - (c < 0 ? 0 : c)));
        }
    }
}

/* Average pooling's: the window counts and g / count of one plane, then
 * the windows' planes (mnas__k_window_scratch; none when those loops do not
 * apply). */
int64_t mnas__k_pool_scratch(const mnas_kconv *g) { return 2 * g->OH * g->OW + mnas__k_window_scratch(g); }

/* Window cell (i, j): its offsets from an output's top-left input, and the
 * output rows [h0, h1) and columns [w0, w1) for which it lies inside the
 * input. The loops of every pooling kernel below go tap by tap. */
typedef struct {
    int64_t offh, offw, h0, h1, w0, w1;
} pool_tap;

static inline pool_tap tap_at(const mnas_kconv *g, int64_t i, int64_t j)
{
    pool_tap t;
    t.offh = i - g->pad;
    t.offw = j - g->pad;
    mnas__k_tap_span(t.offh, g->stride, g->H, g->OH, &t.h0, &t.h1);
    mnas__k_tap_span(t.offw, g->stride, g->W, g->OW, &t.w0, &t.w1);
    return t;
}

/* The conv net's 2 x 2 pool with stride 2 and no padding (every window
 * full), on AVX-512: 16 outputs at a time, the even and odd cells of each
 * row pair split by permutes, and each window's four cells compared in the
 * same order and by the same rule as the general loops below (a NaN wins
 * over numbers, the first maximum wins a tie), so the same values and
 * argmax. The general loops make four passes over the outputs and their
 * argmax; GCC keeps a scalar version's selects as branches. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !(defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE)
#define MNAS_POOL512 1
#include <immintrin.h>

__attribute__((target("avx512f,avx512vl"))) static void max_pool_2x2_512(const mnas_kconv *g, const float *x,
                                                                         float *y, int64_t *idx)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i c1 = _mm512_set1_epi32(1), cW = _mm512_set1_epi32((int)W), cW1 = _mm512_set1_epi32((int)W + 1);
    const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
#define TAKE(v, b) \
    (_mm512_cmp_ps_mask(v, b, _CMP_GT_OQ) | (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(b, b, _CMP_ORD_Q)))
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        const float *xp = x + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
            float *yr = y + (nc * OH + oh) * OW;
            for (int64_t k0 = 0; k0 < OW; k0 += 16) {
                int64_t m = OW - k0 < 16 ? OW - k0 : 16, nin = 2 * m;
                __mmask16 mo = (__mmask16)(m == 16 ? 0xFFFFu : (1u << m) - 1u);
                __mmask16 lo = (__mmask16)(nin >= 16 ? 0xFFFFu : (1u << nin) - 1u);
                __mmask16 hi = (__mmask16)(nin >= 32 ? 0xFFFFu : nin > 16 ? (1u << (nin - 16)) - 1u : 0u);
                __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * k0), a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * k0 + 16);
                __m512 c0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * k0), c1v = _mm512_maskz_loadu_ps(hi, r1 + 2 * k0 + 16);
                __m512 b = _mm512_permutex2var_ps(a0, ev, a1), v = _mm512_permutex2var_ps(a0, od, a1);
                __m512i at = _mm512_setzero_si512();
                __mmask16 t = TAKE(v, b);
                b = _mm512_mask_mov_ps(b, t, v);
                at = _mm512_mask_mov_epi32(at, t, c1);
                v = _mm512_permutex2var_ps(c0, ev, c1v);
                t = TAKE(v, b);
                b = _mm512_mask_mov_ps(b, t, v);
                at = _mm512_mask_mov_epi32(at, t, cW);
                v = _mm512_permutex2var_ps(c0, od, c1v);
                t = TAKE(v, b);
                b = _mm512_mask_mov_ps(b, t, v);
                at = _mm512_mask_mov_epi32(at, t, cW1);
                _mm512_mask_storeu_ps(yr + k0, mo, b);
                if (idx) {
                    int64_t *ir = idx + (nc * OH + oh) * OW + k0;
                    __m512i base = _mm512_add_epi64(_mm512_set1_epi64(nc * H * W + 2 * oh * W + 2 * k0), lane2);
                    __m512i plo = _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at)));
                    __m512i phi = _mm512_add_epi64(_mm512_add_epi64(base, _mm512_set1_epi64(16)),
                                                   _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(at, 1)));
                    _mm512_mask_storeu_epi64(ir, (__mmask8)(mo & 0xFF), plo);
                    _mm512_mask_storeu_epi64(ir + 8, (__mmask8)(mo >> 8), phi);
                }
            }
        }
    }
#undef TAKE
}
#endif

/* Does the 2 x 2, stride-2 loop above run (it needs no scratch)? */
static int max_pool_2x2_runs(const mnas_kconv *g)
{
#ifdef MNAS_POOL512
    return g->kh == 2 && g->kw == 2 && g->stride == 2 && g->pad == 0 && g->W < INT32_MAX &&
           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
    (void)g;
    return 0;
#endif
}

int64_t mnas__k_max_pool_scratch(const mnas_kconv *g) { return max_pool_2x2_runs(g) ? 0 : mnas__k_window_scratch(g); }

MNAS_CLONES
void mnas__k_max_pool(const mnas_kconv *g, const real *x, real *y, int64_t *idx, real *scratch)
{
#ifdef MNAS_POOL512
    if (max_pool_2x2_runs(g)) {
        max_pool_2x2_512(g, x, y, idx);
        return;
    }
#endif
    if (scratch && mnas__k_window_scratch(g)) {
        mnas__k_window_max(g, x, y, idx, scratch);
        return;
    }
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, L = OH * OW;
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        const real *xp = x + nc * H * W;
        real *yp = y + nc * L;
        int64_t *ip = idx ? idx + nc * L : NULL;
        for (int64_t o = 0; o < L; o++) yp[o] = -INFINITY;
        if (ip)
            for (int64_t o = 0; o < L; o++) ip[o] = -1;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const pool_tap t = tap_at(g, i, j);
                const int64_t offh = t.offh, offw = t.offw, w0 = t.w0, w1 = t.w1;
                for (int64_t oh = t.h0; oh < t.h1; oh++) {
                    int64_t row = (oh * s + offh) * W;
                    const real *xr = xp + row;
                    real *yr = yp + oh * OW;
                    if (!ip) {
                        /* A NaN wins over numbers, so it propagates. */
                        /* branch-free, so it vectorises: v != v is isnan */
                        if (s == 1) {
                            for (int64_t ow = w0; ow < w1; ow++) {
                                real v = xr[ow + offw], b = yr[ow];
                                yr[ow] = (v > b) | ((v != v) & (b == b)) ? v : b;
                            }
                        } else {
                            for (int64_t ow = w0; ow < w1; ow++) {
                                real v = xr[ow * s + offw], b = yr[ow];
                                yr[ow] = (v > b) | ((v != v) & (b == b)) ? v : b;
                            }
                        }
                    } else {
                        int64_t *ir = ip + oh * OW, base = nc * H * W + row + offw;
                        if (s == 1) {
                            for (int64_t ow = w0; ow < w1; ow++) {
                                real v = xr[ow + offw], b = yr[ow];
                                int take = (v > b) | (ir[ow] < 0) | ((v != v) & (b == b));
                                yr[ow] = take ? v : b;
                                ir[ow] = take ? base + ow : ir[ow];
                            }
                        } else {
                            for (int64_t ow = w0; ow < w1; ow++) {
                                real v = xr[ow * s + offw], b = yr[ow];
                                int take = (v > b) | (ir[ow] < 0) | ((v != v) & (b == b));
                                yr[ow] = take ? v : b;
                                ir[ow] = take ? base + ow * s : ir[ow];
                            }
                        }
                    }
                }
            }
    }
}

MNAS_CLONES
void mnas__k_avg_pool(const mnas_kconv *g, const real *x, real *y, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, L = OH * OW;
    real *cnt = scratch;
    window_counts(g, cnt);
    if (mnas__k_window_scratch(g)) {
        mnas__k_window_sum(g, x, y, scratch + 2 * L);
        for (int64_t nc = 0; nc < g->N * g->C; nc++)
            for (int64_t o = 0; o < L; o++) y[nc * L + o] /= cnt[o];
        return;
    }
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        const real *xp = x + nc * H * W;
        real *yp = y + nc * L;
        for (int64_t o = 0; o < L; o++) yp[o] = 0;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const pool_tap t = tap_at(g, i, j);
                const int64_t offh = t.offh, offw = t.offw, w0 = t.w0, w1 = t.w1;
                for (int64_t oh = t.h0; oh < t.h1; oh++) {
                    const real *xr = xp + (oh * s + offh) * W;
                    real *yr = yp + oh * OW;
                    if (s == 1) {
                        for (int64_t ow = w0; ow < w1; ow++) yr[ow] += xr[ow + offw];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) yr[ow] += xr[ow * s + offw];
                    }
                }
            }
        for (int64_t o = 0; o < L; o++) yp[o] /= cnt[o];
    }
}

MNAS_CLONES
void mnas__k_avg_pool_adj(const mnas_kconv *g, const real *gy, real *dx, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, L = OH * OW;
    real *cnt = scratch, *v = scratch + L;
    window_counts(g, cnt);
    if (mnas__k_window_scratch(g)) {
        /* plane by plane, g / count of the plane in v */
        mnas_kconv one = *g;
        one.N = one.C = one.O = one.groups = 1;
        for (int64_t nc = 0; nc < g->N * g->C; nc++) {
            for (int64_t o = 0; o < L; o++) v[o] = gy[nc * L + o] / cnt[o];
            mnas__k_window_sum_adj(&one, v, dx + nc * H * W, scratch + 2 * L);
        }
        return;
    }
    memset(dx, 0, (size_t)(g->N * g->C * H * W) * sizeof(real));
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        real *dp = dx + nc * H * W;
        const real *gp = gy + nc * L;
        for (int64_t o = 0; o < L; o++) v[o] = gp[o] / cnt[o];
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const pool_tap t = tap_at(g, i, j);
                const int64_t offh = t.offh, offw = t.offw, w0 = t.w0, w1 = t.w1;
                for (int64_t oh = t.h0; oh < t.h1; oh++) {
                    const real *vr = v + oh * OW;
                    real *dr = dp + (oh * s + offh) * W;
                    if (s == 1) {
                        for (int64_t ow = w0; ow < w1; ow++) dr[ow + offw] += vr[ow];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) dr[ow * s + offw] += vr[ow];
                    }
                }
            }
    }
}

void mnas__k_gather_at(int64_t n, const int64_t *idx, const real *x, real *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[idx[i]];
}

void mnas__k_scatter_at(int64_t planes, int64_t n, const int64_t *idx, const real *y, int64_t nx, real *x)
{
    /* Plane by plane (planes divides n and nx; plane p's values land in
     * plane p): each plane is zeroed right before its values are added, so
     * it is still in cache, instead of one pass zeroing the whole tensor
     * and a second pass returning to it. The additions per cell are those
     * of the whole-tensor loop, in the same order. */
    if (planes < 1 || n % planes || nx % planes) planes = 1;
    int64_t pn = n / planes, px = nx / planes;
    for (int64_t p = 0; p < planes; p++) {
        memset(x + p * px, 0, (size_t)px * sizeof(real));
        const int64_t *ip = idx + p * pn;
        const real *yp = y + p * pn;
        for (int64_t i = 0; i < pn; i++) x[ip[i]] += yp[i];
    }
}
