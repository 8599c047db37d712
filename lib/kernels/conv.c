/* Convolution loops: im2col / col2im, convolution as one GEMM per image and
 * group, the direct convolution (groups 1, stride 1, no im2col) and direct
 * loops for depthwise convolution. The 3 x 3 same-size convolution with 8
 * or more channels goes to Winograd (winograd.c). Pooling is in pool.c. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vec8.h"

/* The outputs o in [0, n_out) whose input coordinate o * s + off lies in
 * [0, n_in), as [*lo, *hi). Every other output of that kernel tap reads
 * padding. */
void mnas__k_tap_span(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / s + 1;
    if (a > n_out) a = n_out;
    if (b > n_out) b = n_out;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* 1x1 kernel, stride 1, no padding: an image already is its column matrix. */
static int pointwise(const mnas_kconv *g)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

int mnas__k_conv_depthwise(const mnas_kconv *g) { return g->groups == g->C && g->O == g->C; }

/* The flat loops (stride 1 and 2 below) take kernels of up to FLAT_TAPS
 * cells; the direct loops the rest. */
enum { FLAT_TAPS = 64 };

static int flat_taps_ok(const mnas_kconv *g)
{
    int64_t k;
    return !__builtin_mul_overflow(g->kh, g->kw, &k) && k <= FLAT_TAPS;
}

/* Depthwise with stride 1 runs on zero-padded planes of width Wp = W + 2p:
 * every kernel tap is then one constant offset into the padded plane, and
 * each tap's work is a single flat, vectorisable loop over OH rows of Wp
 * columns (the d (kw - 1) columns past OW of each row are computed and
 * dropped). Scratch: the padded plane, then the Wp-wide rows of the output
 * or of g (after up to one plane of zeros in the transposed pass): at most
 * three planes. Skipped when padding or dilation would make a plane much
 * larger than the image (the direct loops need no scratch). */
static int64_t flat_size(const mnas_kconv *g)
{
    if (g->stride != 1 || !flat_taps_ok(g)) return 0;
    int64_t Hp = g->H + 2 * g->pad, Wp = g->W + 2 * g->pad, a;
    if (__builtin_mul_overflow(Hp, Wp, &a) || a > 4 * (g->H * g->W + g->OH * g->OW) + 4096) return 0;
    return 3 * a;
}

static int64_t flat_scratch(const mnas_kconv *g) { return mnas__k_conv_depthwise(g) ? flat_size(g) : 0; }

static int64_t direct_scratch(const mnas_kconv *g);
static int64_t phase_size(const mnas_kconv *g);
static int64_t phase_scratch(const mnas_kconv *g) { return mnas__k_conv_depthwise(g) ? phase_size(g) : 0; }

int64_t mnas__k_conv_scratch(const mnas_kconv *g)
{
    if (mnas__k_conv_depthwise(g)) return g->stride == 2 ? phase_scratch(g) : flat_scratch(g);
    if (pointwise(g)) return 0;
    int64_t d = mnas__k_wino_scratch(g);
    if (d) return d;
    d = direct_scratch(g);
    if (d) return d;
    return g->C * g->kh * g->kw * g->OH * g->OW;
}

/* n copies of v (zeros by memset). */
static void fill_n(real *p, int64_t n, real v)
{
    if (v == 0 && !signbit(v)) {
        memset(p, 0, (size_t)n * sizeof(real));
        return;
    }
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

/* The padded plane: rows of Wp with p cells of fill (zero for the
 * convolutions and average pooling, -inf for max pooling) around x's H x W. */
static void pad_plane(const mnas_kconv *g, const real *x, real fill, real *xp)
{
    const int64_t Wp = g->W + 2 * g->pad, p = g->pad;
    fill_n(xp, p * Wp + p, fill);
    for (int64_t h = 0; h < g->H; h++) {
        real *r = xp + (h + p) * Wp + p;
        memcpy(r, x + h * g->W, (size_t)g->W * sizeof(real));
        /* right border of this row and left border of the next */
        fill_n(r + g->W, 2 * p, fill);
    }
    int64_t done = (g->H + p) * Wp + p, total = (g->H + 2 * p) * Wp;
    if (total > done) fill_n(xp + done, total - done, fill);
}

MNAS_CLONES
void mnas__k_unfold(const mnas_kconv *g, const real *x, real *cols)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, L = OH * OW;
    real *row = cols;
    for (int64_t c = 0; c < g->C; c++) {
        const real *xc = x + c * H * W;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t offh = i * g->dil - g->pad, h0, h1;
            mnas__k_tap_span(offh, s, H, OH, &h0, &h1);
            for (int64_t j = 0; j < g->kw; j++, row += L) {
                int64_t offw = j * g->dil - g->pad, w0, w1;
                mnas__k_tap_span(offw, s, W, OW, &w0, &w1);
                memset(row, 0, (size_t)(h0 * OW) * sizeof(real));
                for (int64_t oh = h0; oh < h1; oh++) {
                    real *r = row + oh * OW;
                    const real *xr = xc + (oh * s + offh) * W;
                    for (int64_t ow = 0; ow < w0; ow++) r[ow] = 0;
                    if (s == 1) {
                        memcpy(r + w0, xr + (w0 + offw), (size_t)(w1 - w0) * sizeof(real));
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) r[ow] = xr[ow * s + offw];
                    }
                    for (int64_t ow = w1; ow < OW; ow++) r[ow] = 0;
                }
                memset(row + h1 * OW, 0, (size_t)((OH - h1) * OW) * sizeof(real));
            }
        }
    }
}

MNAS_CLONES
void mnas__k_fold_add(const mnas_kconv *g, const real *cols, real *x)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, L = OH * OW;
    const real *row = cols;
    for (int64_t c = 0; c < g->C; c++) {
        real *xc = x + c * H * W;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t offh = i * g->dil - g->pad, h0, h1;
            mnas__k_tap_span(offh, s, H, OH, &h0, &h1);
            for (int64_t j = 0; j < g->kw; j++, row += L) {
                int64_t offw = j * g->dil - g->pad, w0, w1;
                mnas__k_tap_span(offw, s, W, OW, &w0, &w1);
                for (int64_t oh = h0; oh < h1; oh++) {
                    const real *r = row + oh * OW;
                    real *xr = xc + (oh * s + offh) * W;
                    if (s == 1) {
                        for (int64_t ow = w0; ow < w1; ow++) xr[ow + offw] += r[ow];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) xr[ow * s + offw] += r[ow];
                    }
                }
            }
        }
    }
}

/* ---- depthwise: one kh x kw filter per channel, direct loops ------------ */

MNAS_CLONES
static void dw_forward(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, C = g->C;
    const int64_t L = OH * OW, kk = g->kh * g->kw;
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        const real *xp = x + nc * H * W, *wc = w + c * kk;
        real *yp = y + nc * L;
        real b0 = b ? b[c] : 0;
        for (int64_t o = 0; o < L; o++) yp[o] = b0;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t offh = i * g->dil - g->pad, h0, h1;
            mnas__k_tap_span(offh, s, H, OH, &h0, &h1);
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t offw = j * g->dil - g->pad, w0, w1;
                mnas__k_tap_span(offw, s, W, OW, &w0, &w1);
                real wv = wc[i * g->kw + j];
                for (int64_t oh = h0; oh < h1; oh++) {
                    const real *xr = xp + (oh * s + offh) * W;
                    real *yr = yp + oh * OW;
                    if (s == 1) {
                        for (int64_t ow = w0; ow < w1; ow++) yr[ow] += wv * xr[ow + offw];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) yr[ow] += wv * xr[ow * s + offw];
                    }
                }
            }
        }
    }
}

MNAS_CLONES
static void dw_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, C = g->C;
    const int64_t L = OH * OW, kk = g->kh * g->kw;
    memset(dx, 0, (size_t)(g->N * C * H * W) * sizeof(real));
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        const real *gp = gy + nc * L, *wc = w + c * kk;
        real *dp = dx + nc * H * W;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t offh = i * g->dil - g->pad, h0, h1;
            mnas__k_tap_span(offh, s, H, OH, &h0, &h1);
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t offw = j * g->dil - g->pad, w0, w1;
                mnas__k_tap_span(offw, s, W, OW, &w0, &w1);
                real wv = wc[i * g->kw + j];
                for (int64_t oh = h0; oh < h1; oh++) {
                    const real *gr = gp + oh * OW;
                    real *dr = dp + (oh * s + offh) * W;
                    if (s == 1) {
                        for (int64_t ow = w0; ow < w1; ow++) dr[ow + offw] += wv * gr[ow];
                    } else {
                        for (int64_t ow = w0; ow < w1; ow++) dr[ow * s + offw] += wv * gr[ow];
                    }
                }
            }
        }
    }
}

/* sum_k a[k] b[k * sb] in 8 fixed lanes (vectorisable, same bits everywhere). */
MNAS_CLONES
static real dot_lanes(int64_t n, const real *a, const real *b, int64_t sb)
{
    real acc[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    int64_t k = 0;
    if (sb == 1)
        for (; k + 8 <= n; k += 8)
            for (int q = 0; q < 8; q++) acc[q] += a[k + q] * b[k + q];
    for (; k < n; k++) acc[0] += a[k] * b[k * sb];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* out[t] += dot_lanes(n, a, b[t], 1) for the K <= 8 taps t < K, in one pass
 * over a: each tap's sum runs in the same eight lanes in the same order
 * (lane q of the vector is acc[q] of dot_lanes), so the same bits as K
 * calls, without dot_lanes' single chain of dependent additions. */
static inline __attribute__((always_inline)) void dot_taps_k(int K, int64_t n, const real *a, const real *const *b,
                                                             real *out)
{
    v8r acc[8];
    for (int t = 0; t < K; t++) acc[t] = (v8r){ 0 };
    int64_t o = 0;
    for (; o + 8 <= n; o += 8) {
        v8r av = ld8(a + o);
        for (int t = 0; t < K; t++) acc[t] += av * ld8(b[t] + o);
    }
    for (int t = 0; t < K; t++) {
        real l[8];
        memcpy(l, &acc[t], sizeof l);
        for (int64_t k = o; k < n; k++) l[0] += a[k] * b[t][k];
        out[t] += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
}

/* out[t] += the dot product of a with b[t], t < k, eight taps per pass. */
MNAS_CLONES
static void dot_taps(int64_t n, const real *a, int64_t k, const real *const *b, real *out)
{
    for (int64_t t = 0; t < k; t += 8) {
        switch (k - t < 8 ? k - t : 8) {
        case 1: dot_taps_k(1, n, a, b + t, out + t); break;
        case 2: dot_taps_k(2, n, a, b + t, out + t); break;
        case 3: dot_taps_k(3, n, a, b + t, out + t); break;
        case 4: dot_taps_k(4, n, a, b + t, out + t); break;
        case 5: dot_taps_k(5, n, a, b + t, out + t); break;
        case 6: dot_taps_k(6, n, a, b + t, out + t); break;
        case 7: dot_taps_k(7, n, a, b + t, out + t); break;
        default: dot_taps_k(8, n, a, b + t, out + t); break;
        }
    }
}

static void dw_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, C = g->C;
    const int64_t L = OH * OW, kk = g->kh * g->kw;
    memset(dw, 0, (size_t)(C * kk) * sizeof(real));
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        const real *xp = x + nc * H * W, *gp = gy + nc * L;
        real *wc = dw + c * kk;
        for (int64_t i = 0; i < g->kh; i++) {
            int64_t offh = i * g->dil - g->pad, h0, h1;
            mnas__k_tap_span(offh, s, H, OH, &h0, &h1);
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t offw = j * g->dil - g->pad, w0, w1;
                mnas__k_tap_span(offw, s, W, OW, &w0, &w1);
                real acc = 0;
                for (int64_t oh = h0; oh < h1; oh++) {
                    const real *xr = xp + ((oh * s + offh) * W + w0 * s + offw);
                    acc += dot_lanes(w1 - w0, gp + oh * OW + w0, xr, s);
                }
                wc[i * g->kw + j] += acc;
            }
        }
    }
}

/* d[o] = ((d[o] + w[0] s0[o]) + w[1] s1[o]) + w[2] s2[o] for o < n, with
 * cnt (1 to 3) taps: the flat loops below add their taps three at a time
 * (one load and store of d per group), still one after the other in tap
 * order. Inlined into each caller's clones. */
static inline __attribute__((always_inline)) void taps_add(real *restrict d, int64_t n, int cnt, const real *w,
                                                           const real *s0, const real *s1, const real *s2)
{
    real wa = w[0];
    if (cnt >= 3) {
        real wb = w[1], wc = w[2];
        for (int64_t o = 0; o < n; o++) d[o] = ((d[o] + wa * s0[o]) + wb * s1[o]) + wc * s2[o];
    } else if (cnt == 2) {
        real wb = w[1];
        for (int64_t o = 0; o < n; o++) d[o] = (d[o] + wa * s0[o]) + wb * s1[o];
    } else {
        for (int64_t o = 0; o < n; o++) d[o] += wa * s0[o];
    }
}

/* d[o] += w[0] s[0][o] + ... + w[k-1] s[k-1][o], one tap after the other in
 * order, three per pass over d. */
static inline __attribute__((always_inline)) void taps_all(real *restrict d, int64_t n, int64_t k, const real *w,
                                                           const real *const *s)
{
    for (int64_t t = 0; t < k; t += 3) {
        int cnt = k - t < 3 ? (int)(k - t) : 3;
        taps_add(d, n, cnt, w + t, s[t], s[t + (cnt > 1)], s[t + cnt - 1]);
    }
}

/* Each kernel cell's offset into the plane the flat loops read: the padded
 * plane of row width Wr (stride 1), or the phases of a values each (stride
 * 2; the phase's start included). Made once per call. */
static void tap_table(const mnas_kconv *g, int64_t Wr, int64_t a, int64_t *off)
{
    int64_t t = 0;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            int64_t di = i * g->dil, dj = j * g->dil;
            off[t++] = g->stride == 1 ? di * Wr + dj : ((di & 1) * 2 + (dj & 1)) * a + (di >> 1) * Wr + (dj >> 1);
        }
}

MNAS_CLONES
static void flat_forward(const mnas_kconv *g, const real *x, const real *w, int64_t ws, const real *b, real *y,
                         real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, C = g->C;
    const int64_t Wp = W + 2 * g->pad, kk = g->kh * g->kw, n = (OH - 1) * Wp + OW;
    real *xp = scratch, *yb = scratch + (H + 2 * g->pad) * Wp;
    int64_t off[FLAT_TAPS];
    const real *src[FLAT_TAPS];
    tap_table(g, Wp, 0, off);
    for (int64_t t = 0; t < kk; t++) src[t] = xp + off[t];
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        pad_plane(g, x + nc * H * W, 0, xp);
        real b0 = b ? b[c] : 0;
        for (int64_t o = 0; o < n; o++) yb[o] = b0;
        taps_all(yb, n, kk, w + c * ws, src);
        real *yp = y + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) memcpy(yp + oh * OW, yb + oh * Wp, (size_t)OW * sizeof(real));
    }
}

/* The Wp-wide rows of g's plane, zero past column OW. */
static void widen_plane(const mnas_kconv *g, const real *gp, int64_t Wp, real *gb)
{
    const int64_t OW = g->OW;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        memcpy(gb + oh * Wp, gp + oh * OW, (size_t)OW * sizeof(real));
        if (oh + 1 < g->OH) memset(gb + oh * Wp + OW, 0, (size_t)(Wp - OW) * sizeof(real));
    }
}

/* The transposed pass as a gather, so taps combine like the forward's:
 * dp[q] = sum_t w_t gx[q - off_t] over the padded plane, where gx is g's
 * Wp-wide rows after lead = max off_t zeros (and zeros after). Each cell
 * still receives its taps in order. */
MNAS_CLONES
static void flat_dx(const mnas_kconv *g, const real *gy, const real *w, int64_t ws, real *dx, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, C = g->C, d = g->dil, p = g->pad;
    const int64_t Wp = W + 2 * p, Hp = H + 2 * p, kk = g->kh * g->kw, n = (OH - 1) * Wp + OW;
    const int64_t lead = (g->kh - 1) * d * Wp + (g->kw - 1) * d;
    const int64_t q0 = p * Wp + p, q1 = (p + H - 1) * Wp + p + W; /* the cells kept */
    real *dp = scratch, *gx = scratch + Hp * Wp;
    int64_t off[FLAT_TAPS];
    const real *src[FLAT_TAPS];
    tap_table(g, Wp, 0, off);
    for (int64_t t = 0; t < kk; t++) src[t] = gx + lead + q0 - off[t];
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        memset(gx, 0, (size_t)lead * sizeof(real));
        widen_plane(g, gy + nc * OH * OW, Wp, gx + lead);
        memset(gx + lead + n, 0, (size_t)(Hp * Wp - n) * sizeof(real));
        for (int64_t q = q0; q < q1; q++) dp[q] = 0;
        taps_all(dp + q0, q1 - q0, kk, w + c * ws, src);
        real *xo = dx + nc * H * W;
        for (int64_t h = 0; h < H; h++) memcpy(xo + h * W, dp + (h + p) * Wp + p, (size_t)W * sizeof(real));
    }
}

static void flat_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, C = g->C;
    const int64_t Wp = W + 2 * g->pad, kk = g->kh * g->kw, n = (OH - 1) * Wp + OW;
    real *xp = scratch, *gb = scratch + (H + 2 * g->pad) * Wp;
    int64_t off[FLAT_TAPS];
    const real *src[FLAT_TAPS];
    tap_table(g, Wp, 0, off);
    for (int64_t t = 0; t < kk; t++) src[t] = xp + off[t];
    memset(dw, 0, (size_t)(C * kk) * sizeof(real));
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        pad_plane(g, x + nc * H * W, 0, xp);
        widen_plane(g, gy + nc * OH * OW, Wp, gb);
        dot_taps(n, gb, kk, src, dw + c * kk);
    }
}

/* ---- depthwise with stride 2: phase planes ------------------------------
 * A stride-2 tap reads every other column of every other row, which the
 * loops above cannot take as one flat run. So the zero-padded plane (Hp x
 * Wp, rounded up to even sizes) is split into its four phases
 * P[a][b][u][v] = xpad[2u + a][2v + b], each Hq x Wq (Hq = ceil(Hp / 2),
 * Wq = ceil(Wp / 2)). Tap (i, j) of output (oh, ow) reads phase
 * (id mod 2, jd mod 2) at (oh + floor(id / 2), ow + floor(jd / 2)): on
 * Wq-wide output rows every tap is again one constant offset into one phase
 * and one flat loop, taps added in order as the stride-1 loops do. Only the
 * phases some tap reads are made (dilation 2 reads phase (0, 0) alone).
 *
 * The transposed pass is a gather into the four phases of the padded input
 * gradient: cell (2u + a, 2v + b) receives the taps of phase (a, b), in tap
 * order, from g's Wq-wide rows after lead zeros, at (u - floor(id / 2),
 * v - floor(jd / 2)). A tap whose output is out of range reads a zero: a
 * column past OW (Wq - floor((kw - 1) d / 2) >= OW, so a row's wrap lands
 * there), the lead before the first row, or the zeros after the last. The
 * weight gradient is one flat dot product per tap and image. */

/* Scratch: the four phases, then a buffer of lead + Hq Wq values (the
 * output's Wq-wide rows, or g's after lead zeros); 0 when the phases would
 * be much larger than the image (the direct loops then run). */
static int64_t phase_size(const mnas_kconv *g)
{
    if (g->stride != 2 || !flat_taps_ok(g)) return 0;
    int64_t Hq = (g->H + 2 * g->pad + 1) / 2, Wq = (g->W + 2 * g->pad + 1) / 2, a;
    if (__builtin_mul_overflow(Hq, Wq, &a) || a > g->H * g->W + g->OH * g->OW + 1024) return 0;
    int64_t lead = ((g->kh - 1) * g->dil / 2) * Wq + (g->kw - 1) * g->dil / 2;
    return 5 * a + lead;
}

/* The phases some kernel cell reads, as bits 1 << phase. */
static unsigned phases_read(const mnas_kconv *g)
{
    unsigned m = 0;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) m |= 1u << ((i * g->dil & 1) * 2 + (j * g->dil & 1));
    return m;
}

/* The phases in mask of one image's plane x. */
MNAS_CLONES
static void phase_split(const mnas_kconv *g, const real *x, int64_t Hq, int64_t Wq, unsigned mask, real fill, real *P)
{
    const int64_t H = g->H, W = g->W, p = g->pad, a = Hq * Wq;
    for (int ph = 0; ph < 4; ph++) {
        if (!(mask >> ph & 1)) continue;
        int64_t ra = ph >> 1, cb = ph & 1;
        /* columns v with 0 <= 2v + cb - p < W */
        int64_t v0 = p > cb ? (p - cb + 1) / 2 : 0, v1 = (W - 1 + p - cb) / 2 + 1;
        if (v1 > Wq) v1 = Wq;
        if (v0 > v1) v0 = v1;
        for (int64_t u = 0; u < Hq; u++) {
            real *q = P + ph * a + u * Wq;
            int64_t h = 2 * u + ra - p;
            if (h < 0 || h >= H) {
                fill_n(q, Wq, fill);
                continue;
            }
            const real *xr = x + h * W + cb - p;
            for (int64_t v = 0; v < v0; v++) q[v] = fill;
            for (int64_t v = v0; v < v1; v++) q[v] = xr[2 * v];
            for (int64_t v = v1; v < Wq; v++) q[v] = fill;
        }
    }
}

/* A call's phase geometry (n: outputs over Wq-wide rows), and each tap's
 * source in the phases at P. */
typedef struct {
    int64_t Hq, Wq, a, n;
    unsigned mask;
} phase_geo;

static phase_geo phase_taps(const mnas_kconv *g, const real *P, const real **src)
{
    phase_geo q;
    q.Hq = (g->H + 2 * g->pad + 1) / 2;
    q.Wq = (g->W + 2 * g->pad + 1) / 2;
    q.a = q.Hq * q.Wq;
    q.n = (g->OH - 1) * q.Wq + g->OW;
    q.mask = phases_read(g);
    int64_t off[FLAT_TAPS];
    tap_table(g, q.Wq, q.a, off);
    for (int64_t t = 0; t < g->kh * g->kw; t++) src[t] = P + off[t];
    return q;
}

MNAS_CLONES
static void phase_forward(const mnas_kconv *g, const real *x, const real *w, int64_t ws, const real *b, real *y,
                          real *scratch)
{
    const int64_t OH = g->OH, OW = g->OW, C = g->C, kk = g->kh * g->kw;
    const real *src[FLAT_TAPS];
    const phase_geo q = phase_taps(g, scratch, src);
    const int64_t Wq = q.Wq, n = q.n;
    real *P = scratch, *yb = scratch + 4 * q.a;
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        phase_split(g, x + nc * g->H * g->W, q.Hq, Wq, q.mask, 0, P);
        real b0 = b ? b[c] : 0;
        for (int64_t o = 0; o < n; o++) yb[o] = b0;
        taps_all(yb, n, kk, w + c * ws, src);
        real *yp = y + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) memcpy(yp + oh * OW, yb + oh * Wq, (size_t)OW * sizeof(real));
    }
}

MNAS_CLONES
static void phase_dx(const mnas_kconv *g, const real *gy, const real *w, int64_t ws, real *dx, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, C = g->C, p = g->pad, kk = g->kh * g->kw;
    const int64_t Hq = (H + 2 * p + 1) / 2, Wq = (W + 2 * p + 1) / 2, a = Hq * Wq;
    const int64_t n = (OH - 1) * Wq + OW, lead = ((g->kh - 1) * g->dil / 2) * Wq + (g->kw - 1) * g->dil / 2;
    real *Q = scratch, *gx = scratch + 4 * a;
    /* each phase's taps in order: their numbers and where they read gx */
    int64_t off[FLAT_TAPS], tap[FLAT_TAPS], start[5] = { 0 };
    const real *src[FLAT_TAPS];
    tap_table(g, Wq, a, off);
    for (int ph = 0, m = 0; ph < 4; ph++) {
        for (int64_t t = 0; t < kk; t++)
            if (off[t] / a == ph) {
                tap[m] = t;
                src[m++] = gx + lead - (off[t] - ph * a);
            }
        start[ph + 1] = m;
    }
    /* dx's column c is padded column c + p: even columns of dx come from
     * phase e of its row, odd ones from the other, both at shift h0 */
    const int64_t e = p & 1, h0 = (p + 1) >> 1, half = W / 2;
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        const real *wc = w + nc % C * ws;
        memset(gx, 0, (size_t)lead * sizeof(real));
        widen_plane(g, gy + nc * OH * OW, Wq, gx + lead);
        memset(gx + lead + n, 0, (size_t)(a - n) * sizeof(real));
        for (int ph = 0; ph < 4; ph++) {
            real *q = Q + ph * a, wv[FLAT_TAPS];
            for (int64_t u = 0; u < a; u++) q[u] = 0;
            for (int64_t m = start[ph]; m < start[ph + 1]; m++) wv[m - start[ph]] = wc[tap[m]];
            taps_all(q, a, start[ph + 1] - start[ph], wv, src + start[ph]);
        }
        real *dp = dx + nc * H * W;
        for (int64_t h = 0; h < H; h++) {
            int64_t r = h + p;
            const real *row = Q + (r & 1) * 2 * a + (r >> 1) * Wq;
            /* column 2m: padded 2m + p, phase e at m + p / 2; column 2m + 1:
             * phase 1 - e at m + (p + 1) / 2 */
            const real *ev = row + e * a + p / 2, *od = row + (1 - e) * a + h0;
            real *dr = dp + h * W;
            for (int64_t m = 0; m < half; m++) {
                dr[2 * m] = ev[m];
                dr[2 * m + 1] = od[m];
            }
            if (W & 1) dr[W - 1] = ev[half];
        }
    }
}

static void phase_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch)
{
    const int64_t OH = g->OH, OW = g->OW, C = g->C, kk = g->kh * g->kw;
    const real *src[FLAT_TAPS];
    const phase_geo q = phase_taps(g, scratch, src);
    real *P = scratch, *gb = scratch + 4 * q.a;
    memset(dw, 0, (size_t)(C * kk) * sizeof(real));
    for (int64_t nc = 0; nc < g->N * C; nc++) {
        int64_t c = nc % C;
        phase_split(g, x + nc * g->H * g->W, q.Hq, q.Wq, q.mask, 0, P);
        widen_plane(g, gy + nc * OH * OW, q.Wq, gb);
        dot_taps(q.n, gb, kk, src, dw + c * kk);
    }
}

/* ---- pooling windows on the same planes ---------------------------------
 * Average pooling is a depthwise convolution with unit weights, divided by
 * each window's count of cells inside the image; its adjoint is the
 * transposed pass with unit weights. The padding cells the flat loops add
 * are zeros, and the skipping loops of pool.c start their sums at +0, so
 * they never hold -0 and x + 0 = x: the same bits. Max pooling runs the
 * same taps over planes padded with -inf (pool.c calls these for stride 1
 * and 2, dilation 1). */

int64_t mnas__k_window_scratch(const mnas_kconv *g)
{
    if (g->dil != 1 || g->kh * g->kw > FLAT_TAPS || (g->stride != 1 && g->stride != 2)) return 0;
    int64_t n = g->stride == 1 ? flat_size(g) : phase_size(g);
    /* and the max's tap numbers, one plane */
    int64_t a = g->stride == 1 ? (g->H + 2 * g->pad) * (g->W + 2 * g->pad)
                               : ((g->H + 2 * g->pad + 1) / 2) * ((g->W + 2 * g->pad + 1) / 2);
    return n ? n + a : 0;
}

void mnas__k_window_sum(const mnas_kconv *g, const real *x, real *y, real *scratch)
{
    real ones[FLAT_TAPS];
    for (int t = 0; t < FLAT_TAPS; t++) ones[t] = 1;
    if (g->stride == 1)
        flat_forward(g, x, ones, 0, NULL, y, scratch);
    else
        phase_forward(g, x, ones, 0, NULL, y, scratch);
}

void mnas__k_window_sum_adj(const mnas_kconv *g, const real *gy, real *dx, real *scratch)
{
    real ones[FLAT_TAPS];
    for (int t = 0; t < FLAT_TAPS; t++) ones[t] = 1;
    if (g->stride == 1)
        flat_dx(g, gy, ones, 0, dx, scratch);
    else
        phase_dx(g, gy, ones, 0, dx, scratch);
}

/* yb[o] = the first maximum over the taps of src, and at[o] its tap
 * number (as a real, so that both selects have one vector width): tap t
 * replaces the best so far when larger, or when it is NaN and the best is
 * not, the rule of pool.c's loops. */
MNAS_CLONES
static void window_max_taps(int64_t n, int64_t kk, const real *const *src, real *restrict yb, real *restrict at)
{
    const real *s0 = src[0];
    for (int64_t o = 0; o < n; o++) {
        yb[o] = s0[o];
        at[o] = 0;
    }
    for (int64_t t = 1; t < kk; t++) {
        const real *st = src[t];
        const real tt = (real)t;
        const v8r t8 = { tt, tt, tt, tt, tt, tt, tt, tt };
        int64_t o = 0;
        for (; o + 8 <= n; o += 8) {
            v8r v = ld8(st + o), b = ld8(yb + o);
            v8i take = (v > b) | ((v != v) & (b == b));
            st8(yb + o, blend8(take, v, b));
            st8(at + o, blend8(take, t8, ld8(at + o)));
        }
        for (; o < n; o++) {
            real v = st[o], b = yb[o];
            int take = (v > b) | ((v != v) & (b == b));
            yb[o] = take ? v : b;
            at[o] = take ? tt : at[o];
        }
    }
}

void mnas__k_window_max(const mnas_kconv *g, const real *x, real *y, int64_t *idx, real *scratch)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride, p = g->pad, kk = g->kh * g->kw;
    const int64_t Wr = s == 1 ? W + 2 * p : (W + 2 * p + 1) / 2;
    const int64_t a = s == 1 ? (H + 2 * p) * Wr : ((H + 2 * p + 1) / 2) * Wr;
    const int64_t n = (OH - 1) * Wr + OW;
    real *planes = scratch, *yb = scratch + (s == 1 ? a : 4 * a), *at = yb + a;
    const real *src[FLAT_TAPS];
    int64_t off[FLAT_TAPS]; /* tap t's cell from the window's top-left corner in x */
    int64_t tab[FLAT_TAPS];
    tap_table(g, Wr, a, tab);
    for (int64_t t = 0; t < kk; t++) {
        src[t] = planes + tab[t];
        off[t] = (t / g->kw) * W + t % g->kw;
    }
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        if (s == 1)
            pad_plane(g, x + nc * H * W, -INFINITY, planes);
        else
            phase_split(g, x + nc * H * W, (H + 2 * p + 1) / 2, Wr, phases_read(g), -INFINITY, planes);
        window_max_taps(n, kk, src, yb, at);
        real *yp = y + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) memcpy(yp + oh * OW, yb + oh * Wr, (size_t)OW * sizeof(real));
        if (!idx) continue;
        int64_t *ip = idx + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t o = oh * Wr + ow, corner = nc * H * W + (oh * s - p) * W + (ow * s - p);
                if (yb[o] == -INFINITY) {
                    /* every cell of the window is -inf (or padding, which
                     * the first tap may be): the first cell inside wins */
                    int64_t i = oh * s - p < 0 ? p - oh * s : 0, j = ow * s - p < 0 ? p - ow * s : 0;
                    ip[oh * OW + ow] = corner + i * W + j;
                } else {
                    ip[oh * OW + ow] = corner + off[(int64_t)at[o]];
                }
            }
    }
}

/* ---- direct convolution: groups 1, stride 1, no im2col ------------------
 * On zero-padded planes of width Wp every kernel tap (c, i, j) is one
 * constant offset, so the convolution of an image is a product whose B rows
 * are shifted views of the padded input (mnas__k_gemm_rows): y over Wp-wide
 * output rows (the columns past OW are computed and dropped) = w [O, C kh
 * kw] times those rows. The padded planes are C (H + 2p) (W + 2p) values,
 * not the C kh kw OH OW of the column matrix, and nothing is zero-filled
 * per tap. The transposed pass is the same product over g padded by
 * d (k - 1) - p with the flipped, transposed kernel (hence p <= d (k - 1)),
 * and the weight gradient is g's Wp-wide rows times the shifted views
 * transposed (mnas__k_gemm_nt_rows), summed over the batch in image order. */

static int64_t offs_reals(int64_t n) { return (n * (int64_t)sizeof(int64_t) + (int64_t)sizeof(real) - 1) / (int64_t)sizeof(real); }

/* Elements of scratch the three direct kernels need (the largest), or 0
 * when the direct loops do not apply. */
static int64_t direct_scratch(const mnas_kconv *g)
{
    if (g->groups != 1 || g->stride != 1 || pointwise(g) || mnas__k_conv_depthwise(g)) return 0;
    const int64_t d = g->dil, p = g->pad, kk = g->kh * g->kw;
    if (p > d * (g->kh - 1) || p > d * (g->kw - 1)) return 0;
    /* Not when padding or dilation make the planes much larger than the
     * column matrix and the images would be (a 1-channel input's planes
     * are larger than its columns, and still cheap). Every product is
     * checked: huge padding with a huge dilation passes the geometry
     * checks with a small output. */
    int64_t lim, t0, t1, t2;
    if (__builtin_mul_overflow(g->C * kk, g->OH * g->OW, &t0) || __builtin_mul_overflow(g->C + g->O, g->H * g->W, &t1) ||
        __builtin_add_overflow(t0, t1, &t2) || t2 > ((int64_t)1 << 40) || g->C * g->O > ((int64_t)1 << 30))
        return 0;
    lim = 2 * t2 + 65536;
    if (g->H + 2 * p > lim || g->W + 2 * p > lim || g->H + d * (g->kh - 1) > lim || g->W + d * (g->kw - 1) > lim)
        return 0;
    const int64_t Hp = g->H + 2 * p, Wp = g->W + 2 * p;
    const int64_t Hg = g->H + d * (g->kh - 1), Wg = g->W + d * (g->kw - 1);
    int64_t a, b, c, e;
    if (__builtin_mul_overflow(Hp, Wp, &a) || __builtin_mul_overflow(a, g->C, &a) ||
        __builtin_mul_overflow(g->O * g->OH, Wp, &b) || __builtin_mul_overflow(Hg, Wg, &c) ||
        __builtin_mul_overflow(c, g->O, &c) || __builtin_mul_overflow(g->C * g->H, Wg, &e) || a > lim || b > lim ||
        c > lim || e > lim)
        return 0;
    int64_t fw = offs_reals(g->C * kk) + a + b;                       /* forward and weights */
    int64_t tx = offs_reals(g->O * kk) + g->C * g->O * kk + c + e;    /* transposed */
    int64_t n = fw > tx ? fw : tx;
    return n > lim ? 0 : n;
}

/* xp [h + 2 ph, w + 2 pw] = x [h, w] with zero borders. */
static void pad_copy(const real *x, int64_t h, int64_t w, int64_t ph, int64_t pw, real *xp)
{
    const int64_t Wp = w + 2 * pw;
    memset(xp, 0, (size_t)(ph * Wp + pw) * sizeof(real));
    for (int64_t r = 0; r < h; r++) {
        real *o = xp + (r + ph) * Wp + pw;
        memcpy(o, x + r * w, (size_t)w * sizeof(real));
        memset(o + w, 0, (size_t)(2 * pw) * sizeof(real)); /* right border, next row's left */
    }
    int64_t done = (h + ph) * Wp + pw, total = (h + 2 * ph) * Wp;
    if (total > done) memset(xp + done, 0, (size_t)(total - done) * sizeof(real));
}

/* Offsets of the taps (c, i, j), c < nc, into nc padded planes of hp x wp. */
static void tap_offsets(const mnas_kconv *g, int64_t nc, int64_t hp, int64_t wp, int64_t *off)
{
    for (int64_t c = 0, k = 0; c < nc; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) off[k++] = c * hp * wp + i * g->dil * wp + j * g->dil;
}

static void direct_forward(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y, real *scratch)
{
    const int64_t C = g->C, O = g->O, H = g->H, W = g->W, OH = g->OH, OW = g->OW, p = g->pad;
    const int64_t Hp = H + 2 * p, Wp = W + 2 * p, K = C * g->kh * g->kw, n = (OH - 1) * Wp + OW;
    int64_t *off = (int64_t *)(void *)scratch;
    real *xp = scratch + offs_reals(K), *yw = xp + C * Hp * Wp;
    tap_offsets(g, C, Hp, Wp, off);
    for (int64_t im = 0; im < g->N; im++) {
        for (int64_t c = 0; c < C; c++) pad_copy(x + (im * C + c) * H * W, H, W, p, p, xp + c * Hp * Wp);
        mnas__k_gemm_rows(O, n, K, w, K, xp, off, yw, OH * Wp);
        real *yn = y + im * O * OH * OW;
        for (int64_t o = 0; o < O; o++) {
            real b0 = b ? b[o] : 0;
            for (int64_t oh = 0; oh < OH; oh++) {
                const real *src = yw + o * OH * Wp + oh * Wp;
                real *dst = yn + (o * OH + oh) * OW;
                if (b)
                    for (int64_t ow = 0; ow < OW; ow++) dst[ow] = src[ow] + b0;
                else
                    memcpy(dst, src, (size_t)OW * sizeof(real));
            }
        }
    }
}

static void direct_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx, real *scratch)
{
    const int64_t C = g->C, O = g->O, H = g->H, W = g->W, OH = g->OH, OW = g->OW, d = g->dil;
    const int64_t kh = g->kh, kw = g->kw, kk = kh * kw, K = O * kk;
    const int64_t ph = d * (kh - 1) - g->pad, pw = d * (kw - 1) - g->pad;
    const int64_t Hg = OH + 2 * ph, Wg = OW + 2 * pw, n = (H - 1) * Wg + W;
    int64_t *off = (int64_t *)(void *)scratch;
    real *wt = scratch + offs_reals(K), *gp = wt + C * K, *xw = gp + O * Hg * Wg;
    tap_offsets(g, O, Hg, Wg, off);
    /* wt [C, O kh kw]: the kernel flipped in both axes, channels swapped */
    for (int64_t c = 0; c < C; c++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    wt[c * K + o * kk + i * kw + j] = w[((o * C + c) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
    for (int64_t im = 0; im < g->N; im++) {
        for (int64_t o = 0; o < O; o++) pad_copy(gy + (im * O + o) * OH * OW, OH, OW, ph, pw, gp + o * Hg * Wg);
        mnas__k_gemm_rows(C, n, K, wt, K, gp, off, xw, H * Wg);
        real *dn = dx + im * C * H * W;
        for (int64_t c = 0; c < C; c++)
            for (int64_t h = 0; h < H; h++)
                memcpy(dn + (c * H + h) * W, xw + c * H * Wg + h * Wg, (size_t)W * sizeof(real));
    }
}

static void direct_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch)
{
    const int64_t C = g->C, O = g->O, H = g->H, W = g->W, OH = g->OH, OW = g->OW, p = g->pad;
    const int64_t Hp = H + 2 * p, Wp = W + 2 * p, K = C * g->kh * g->kw, n = (OH - 1) * Wp + OW;
    int64_t *off = (int64_t *)(void *)scratch;
    real *xp = scratch + offs_reals(K), *gw = xp + C * Hp * Wp;
    tap_offsets(g, C, Hp, Wp, off);
    for (int64_t im = 0; im < g->N; im++) {
        for (int64_t c = 0; c < C; c++) pad_copy(x + (im * C + c) * H * W, H, W, p, p, xp + c * Hp * Wp);
        /* g's Wp-wide rows, zero past column OW (so the dropped columns add nothing) */
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++) {
                real *r = gw + o * OH * Wp + oh * Wp;
                memcpy(r, gy + ((im * O + o) * OH + oh) * OW, (size_t)OW * sizeof(real));
                memset(r + OW, 0, (size_t)(Wp - OW) * sizeof(real));
            }
        mnas__k_gemm_nt_rows(O, K, n, gw, OH * Wp, xp, off, im ? 1 : 0, dw, K);
    }
}

/* ---- general (grouped) convolution: im2col + one GEMM per image and group */

void mnas__k_conv2d(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y, real *scratch)
{
    if (mnas__k_conv_depthwise(g)) {
        if (flat_scratch(g))
            flat_forward(g, x, w, g->kh * g->kw, b, y, scratch);
        else if (phase_scratch(g))
            phase_forward(g, x, w, g->kh * g->kw, b, y, scratch);
        else
            dw_forward(g, x, w, b, y);
        return;
    }
    if (mnas__k_wino_scratch(g)) {
        mnas__k_wino_forward(g, x, w, b, y, scratch);
        return;
    }
    if (direct_scratch(g)) {
        direct_forward(g, x, w, b, y, scratch);
        return;
    }
    const int64_t L = g->OH * g->OW, G = g->groups, Og = g->O / G;
    const int64_t Ck = g->C / G * g->kh * g->kw, HW = g->H * g->W;
    int pw = pointwise(g);
    for (int64_t n = 0; n < g->N; n++) {
        const real *cols = x + n * g->C * HW;
        if (!pw) {
            mnas__k_unfold(g, cols, scratch);
            cols = scratch;
        }
        real *yn = y + n * g->O * L;
        if (b)
            for (int64_t o = 0; o < g->O; o++)
                for (int64_t l = 0; l < L; l++) yn[o * L + l] = b[o];
        for (int64_t k = 0; k < G; k++)
            mnas__k_gemm(0, 0, Og, L, Ck, 1, w + k * Og * Ck, Ck, cols + k * Ck * L, L, b ? 1 : 0,
                         yn + k * Og * L, L);
    }
}

void mnas__k_conv2d_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx, real *scratch)
{
    if (mnas__k_conv_depthwise(g)) {
        if (flat_scratch(g))
            flat_dx(g, gy, w, g->kh * g->kw, dx, scratch);
        else if (phase_scratch(g))
            phase_dx(g, gy, w, g->kh * g->kw, dx, scratch);
        else
            dw_dx(g, gy, w, dx);
        return;
    }
    if (mnas__k_wino_scratch(g)) {
        mnas__k_wino_dx(g, gy, w, dx, scratch);
        return;
    }
    if (direct_scratch(g)) {
        direct_dx(g, gy, w, dx, scratch);
        return;
    }
    const int64_t L = g->OH * g->OW, G = g->groups, Og = g->O / G;
    const int64_t Ck = g->C / G * g->kh * g->kw, HW = g->H * g->W;
    int pw = pointwise(g);
    for (int64_t n = 0; n < g->N; n++) {
        real *dxn = dx + n * g->C * HW;
        real *cols = pw ? dxn : scratch;
        const real *gn = gy + n * g->O * L;
        for (int64_t k = 0; k < G; k++)
            mnas__k_gemm(1, 0, Ck, L, Og, 1, w + k * Og * Ck, Ck, gn + k * Og * L, L, 0, cols + k * Ck * L, L);
        if (!pw) {
            memset(dxn, 0, (size_t)(g->C * HW) * sizeof(real));
            mnas__k_fold_add(g, cols, dxn);
        }
    }
}

void mnas__k_conv2d_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch)
{
    if (mnas__k_conv_depthwise(g)) {
        if (flat_scratch(g))
            flat_dw(g, x, gy, dw, scratch);
        else if (phase_scratch(g))
            phase_dw(g, x, gy, dw, scratch);
        else
            dw_dw(g, x, gy, dw);
        return;
    }
    if (mnas__k_wino_scratch(g)) {
        mnas__k_wino_dw(g, x, gy, dw, scratch);
        return;
    }
    if (direct_scratch(g)) {
        direct_dw(g, x, gy, dw, scratch);
        return;
    }
    const int64_t L = g->OH * g->OW, G = g->groups, Og = g->O / G;
    const int64_t Ck = g->C / G * g->kh * g->kw, HW = g->H * g->W;
    int pw = pointwise(g);
    for (int64_t n = 0; n < g->N; n++) {
        const real *cols = x + n * g->C * HW;
        if (!pw) {
            mnas__k_unfold(g, cols, scratch);
            cols = scratch;
        }
        const real *gn = gy + n * g->O * L;
        for (int64_t k = 0; k < G; k++)
            mnas__k_gemm(0, 1, Og, Ck, L, 1, gn + k * Og * L, L, cols + k * Ck * L, L, n ? 1 : 0, dw + k * Og * Ck,
                         Ck);
    }
}
