/* Winograd F(2x2, 3x3) for the 3 x 3 convolution with stride 1, padding 1,
 * dilation 1 and groups 1 (the conv net's layers): each 2 x 2 block of
 * outputs (a tile) is
 *
 *     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 *
 * for the 4 x 4 input patch d under it and each 3 x 3 filter g, with
 *
 *     Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 *     G  = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],
 *     Aᵀ = [1 1 1 0; 0 1 -1 -1].
 *
 * Summed over input channels, the 16 positions ξ of the transformed tile
 * are 16 independent products M[ξ] (O x T) = U[ξ] (O x C) · V[ξ] (C x T)
 * over the T tiles: 16 · O · C multiplications per tile instead of the
 * direct 36 · O · C, so 2.25 times fewer. The transforms are additions (and
 * exact halvings of the weights), a few per value.
 *
 * The input gradient of this convolution is the same convolution of gy
 * with the kernel flipped and its channels swapped, so it runs through the
 * same loops. The weight gradient is the adjoint of the tile formula,
 *
 *     ∂g = Gᵀ [ Σ_tiles (A ∂Y Aᵀ) ⊙ (Bᵀ d B) ] G,
 *
 * whose sum over the tiles is again 16 products, P[ξ] (O x C) = Z[ξ] (O x
 * T) · V[ξ]ᵀ.
 *
 * Layout: a row of TW tiles is stored as TW + 1 columns, so that every
 * transform is one flat loop over the rows of a whole image (tile k of the
 * row pairs with input columns 2k .. 2k + 3 of the zero-padded rows, and
 * the extra column is what falls off the row's end). The extra column's
 * products are computed and dropped; its Z is zero, so it adds nothing to
 * the weight gradient. Tiles are taken in chunks of whole tile rows (V
 * and M of a chunk about WINO_CACHE values, so they stay in the L2 cache,
 * and whole images when they fit); the
 * chunking depends on the geometry only, so every result sums in the same
 * order on every call and in every thread. Results differ from the direct
 * loops' in the last bits (a different, equally exact, arithmetic).
 *
 * Every transform is built from a few one-dimensional steps, each a flat
 * loop over whole planes with restrict-qualified streams (so the compiler
 * vectorises them without alias checks): G along one axis (3 -> 4 values),
 * Gᵀ (4 -> 3), Bᵀ (4 -> 4), Aᵀ (4 -> 2), A (2 -> 4), and the split of a
 * row into its even and odd columns and back. */
#include <string.h>

#include "kernels/kernels.h"

enum { WINO_MIN_CHANNELS = 8, WINO_MIN_SIZE = 8, WINO_CACHE = 262144 };

typedef struct {
    int64_t TH, TW; /* tiles per image, down and across */
    int64_t TS;     /* columns per tile row: TW + 1 */
    int64_t Wb;     /* a zero-padded input row: 2 TS */
    int64_t R;      /* tile rows per chunk */
    int64_t Tc;     /* columns per chunk: R TS */
    int64_t rows;   /* the row buffers: 8 R Wb + 16 */
    int64_t su;     /* the stride of the 16 planes of U or P (O C values) */
    int64_t sc, so; /* the stride of the 16 planes of a chunk's C or O channels (C Tc, O Tc) */
} wino_geom;

/* The distance between consecutive planes of n values: n rounded up to 16
 * values (64 bytes), and an odd number of those. A multiple of 4 KiB would
 * put the same element of all 16 planes in one set of the L1 cache (8
 * ways), and the transforms read or write 16 planes at once. */
static int64_t plane_stride(int64_t n)
{
    int64_t s = (n + 15) / 16 * 16;
    return (s / 16) % 2 ? s : s + 16;
}

/* The geometry and the scratch size, or 0 when Winograd does not apply (or
 * its scratch would overflow). Scratch: U (or P), 16 planes of O C; then
 * either V and M (or Z), 16 planes of C Tc and 16 of O Tc, and the row
 * buffers; or the filters' 9 tap planes and 12 half-transformed planes of
 * O C. */
static int64_t wino_plan(const mnas_kconv *g, wino_geom *q)
{
    if (g->groups != 1 || g->kh != 3 || g->kw != 3 || g->stride != 1 || g->pad != 1 || g->dil != 1) return 0;
    if (g->C < WINO_MIN_CHANNELS || g->O < WINO_MIN_CHANNELS || g->OH != g->H || g->OW != g->W) return 0;
    /* smaller images waste too much of their tiles (measured, 32
     * channels: 7 x 7 level with the direct loops, 3 x 3 1.5 times slower;
     * docs/images.md) */
    if (g->H < WINO_MIN_SIZE || g->W < WINO_MIN_SIZE) return 0;
    if (g->C > ((int64_t)1 << 20) || g->O > ((int64_t)1 << 20) || g->H > ((int64_t)1 << 30) ||
        g->W > ((int64_t)1 << 30))
        return 0;
    q->TH = (g->H + 1) / 2;
    q->TW = (g->W + 1) / 2;
    q->TS = q->TW + 1;
    q->Wb = 2 * q->TS;
    /* V and M of a chunk: 16 (C + O) Tc values, kept to about WINO_CACHE */
    int64_t cols = WINO_CACHE / (16 * (g->C + g->O));
    if (cols < 32) cols = 32;
    q->R = q->TS >= cols ? 1 : cols / q->TS;
    if (q->R > q->TH) q->R = q->R / q->TH * q->TH; /* whole images when they fit */
    int64_t rows;
    if (__builtin_mul_overflow(g->N, q->TH, &rows)) return 0;
    if (q->R > rows) q->R = rows;
    q->Tc = q->R * q->TS;
    int64_t oc, ct, ot, r, n;
    if (__builtin_mul_overflow(g->C, g->O, &oc) || __builtin_mul_overflow(g->C, q->Tc, &ct) ||
        __builtin_mul_overflow(g->O, q->Tc, &ot) || __builtin_mul_overflow(8 * q->R, q->Wb, &r) ||
        __builtin_add_overflow(r, 16, &q->rows) || oc > ((int64_t)1 << 40) || ct > ((int64_t)1 << 40) ||
        ot > ((int64_t)1 << 40))
        return 0;
    q->su = plane_stride(oc);
    q->sc = plane_stride(ct);
    q->so = plane_stride(ot);
    n = 16 * (q->sc + q->so);
    if (__builtin_add_overflow(n, q->rows, &n)) return 0;
    if (n < 21 * q->su) n = 21 * q->su;
    if (__builtin_add_overflow(n, 16 * q->su, &n) || n > ((int64_t)1 << 42)) return 0;
    return n;
}

int64_t mnas__k_wino_scratch(const mnas_kconv *g)
{
    wino_geom q;
    return wino_plan(g, &q);
}

/* ---- one-dimensional steps over n positions --------------------------- */

/* G: (a, b, c) -> (a, ½ (a + b + c), ½ (a - b + c), c) */
MNAS_CLONES
static void step_g(int64_t n, const real *restrict a, const real *restrict b, const real *restrict c,
                   real *restrict u0, real *restrict u1, real *restrict u2, real *restrict u3)
{
    const real h = (real)0.5;
    for (int64_t k = 0; k < n; k++) {
        u0[k] = a[k];
        u1[k] = h * ((a[k] + b[k]) + c[k]);
        u2[k] = h * ((a[k] - b[k]) + c[k]);
        u3[k] = c[k];
    }
}

/* Gᵀ: (p0, p1, p2, p3) -> (p0 + ½ (p1 + p2), ½ (p1 - p2), ½ (p1 + p2) + p3) */
MNAS_CLONES
static void step_gt(int64_t n, const real *restrict p0, const real *restrict p1, const real *restrict p2,
                    const real *restrict p3, real *restrict d0, real *restrict d1, real *restrict d2)
{
    const real h = (real)0.5;
    for (int64_t k = 0; k < n; k++) {
        d0[k] = p0[k] + h * (p1[k] + p2[k]);
        d1[k] = h * (p1[k] - p2[k]);
        d2[k] = h * (p1[k] + p2[k]) + p3[k];
    }
}

/* Bᵀ: (a, b, c, d) -> (a - c, b + c, c - b, b - d), the input at a[k + s]
 * (and b, c, d alike) for output k: s = 0 down the columns, and the even
 * and odd columns of a row (a, c = even at k and k + 1; b, d = odd) along
 * it. */
MNAS_CLONES
static void step_bt(int64_t n, const real *restrict a, const real *restrict b, const real *restrict c,
                    const real *restrict d, real *restrict v0, real *restrict v1, real *restrict v2,
                    real *restrict v3)
{
    for (int64_t k = 0; k < n; k++) {
        v0[k] = a[k] - c[k];
        v1[k] = b[k] + c[k];
        v2[k] = c[k] - b[k];
        v3[k] = b[k] - d[k];
    }
}

/* Aᵀ: (a, b, c, d) -> (a + b + c, b - c - d) */
MNAS_CLONES
static void step_at(int64_t n, const real *restrict a, const real *restrict b, const real *restrict c,
                    const real *restrict d, real *restrict s, real *restrict t)
{
    for (int64_t k = 0; k < n; k++) {
        s[k] = (a[k] + b[k]) + c[k];
        t[k] = (b[k] - c[k]) - d[k];
    }
}

/* A: (p, q) -> (p, p + q, p - q, -q) */
MNAS_CLONES
static void step_a(int64_t n, const real *restrict p, const real *restrict q, real *restrict z0, real *restrict z1,
                   real *restrict z2, real *restrict z3)
{
    for (int64_t k = 0; k < n; k++) {
        z0[k] = p[k];
        z1[k] = p[k] + q[k];
        z2[k] = p[k] - q[k];
        z3[k] = -q[k];
    }
}

/* e[k] = x[2k], o[k] = x[2k + 1]; and back. */
MNAS_CLONES
static void split2(int64_t n, const real *restrict x, real *restrict e, real *restrict o)
{
    for (int64_t k = 0; k < n; k++) {
        e[k] = x[2 * k];
        o[k] = x[2 * k + 1];
    }
}

MNAS_CLONES
static void merge2(int64_t n, const real *restrict e, const real *restrict o, real *restrict x)
{
    for (int64_t k = 0; k < n; k++) {
        x[2 * k] = e[k];
        x[2 * k + 1] = o[k];
    }
}

/* ---- the transforms ----------------------------------------------------- */

/* U[ξ] (Co x Ci) of the forward (flip 0: the filter from c to o is w[o, c])
 * or of the input gradient (flip 1: the filter from o to c is w[o, c]
 * turned by 180 degrees), for w [O, C, 3, 3]: U = G f Gᵀ, on 9 planes of
 * taps and 12 half-transformed planes of O C in t. */
static void weights_transform(const real *w, int64_t O, int64_t C, int flip, int64_t sp, real *t, real *U)
{
    const int64_t n = O * C;
    real *a = t + 9 * sp;
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++) {
            const real *f = w + (o * C + c) * 9;
            int64_t k = flip ? c * O + o : o * C + c;
            for (int q = 0; q < 9; q++) t[q * sp + k] = f[flip ? 8 - q : q];
        }
    /* down the columns: a[4 j + i] = (G f)[i][j] */
    for (int j = 0; j < 3; j++)
        step_g(n, t + j * sp, t + (3 + j) * sp, t + (6 + j) * sp, a + (4 * j) * sp, a + (4 * j + 1) * sp,
               a + (4 * j + 2) * sp, a + (4 * j + 3) * sp);
    /* along the rows: U[4 i + j] = (G f Gᵀ)[i][j] */
    for (int i = 0; i < 4; i++)
        step_g(n, a + i * sp, a + (4 + i) * sp, a + (8 + i) * sp, U + (4 * i) * sp, U + (4 * i + 1) * sp,
               U + (4 * i + 2) * sp, U + (4 * i + 3) * sp);
}

/* dw [n, 3, 3] = Gᵀ P G for the n filters of P[ξ] (planes of n), through
 * 12 half-transformed planes and 9 tap planes in t. */
static void weights_untransform(int64_t n, int64_t sp, const real *P, real *t, real *dw)
{
    real *d = t + 12 * sp;
    /* down the columns: t[3 l + i] = (Gᵀ P)[i][l] */
    for (int l = 0; l < 4; l++)
        step_gt(n, P + l * sp, P + (4 + l) * sp, P + (8 + l) * sp, P + (12 + l) * sp, t + (3 * l) * sp,
                t + (3 * l + 1) * sp, t + (3 * l + 2) * sp);
    /* along the rows: d[3 i + j] = (Gᵀ P G)[i][j] */
    for (int i = 0; i < 3; i++)
        step_gt(n, t + i * sp, t + (3 + i) * sp, t + (6 + i) * sp, t + (9 + i) * sp, d + (3 * i) * sp,
                d + (3 * i + 1) * sp, d + (3 * i + 2) * sp);
    for (int64_t k = 0; k < n; k++)
        for (int q = 0; q < 9; q++) dw[k * 9 + q] = d[q * sp + k];
}

/* Row h of an H x W plane (zeros when h is outside) as the even and odd
 * columns of its zero-padded copy (a zero on the left, zeros after): e[m]
 * = x[h, 2m - 1], o[m] = x[h, 2m], TS values each. */
static void split_row(const real *xc, int64_t H, int64_t W, int64_t h, int64_t TS, real *e, real *o)
{
    int64_t k = 0;
    if (h >= 0 && h < H) {
        const real *x = xc + h * W;
        k = W / 2;
        split2(k, x, o, e + 1);
        if (W % 2) o[k] = x[W - 1];
    }
    e[0] = 0;
    for (int64_t m = k + 1; m < TS; m++) e[m] = 0;
    for (int64_t m = k + (h >= 0 && h < H ? W % 2 : 0); m < TS; m++) o[m] = 0;
}

/* Bᵀ d B for tile rows th0 .. th0 + nr - 1 of one H x W plane xc: v[ξ * vs
 * + r TS + k] for tile k of row th0 + r (k = TW is the extra column). The
 * zero-padded rows 2 th0 .. 2 (th0 + nr) + 1 are first laid out by the
 * parity of their row and column (four planes of nr + 1 rows of TS), so
 * that both passes are flat: tile row r reads padded rows 2r .. 2r + 3,
 * that is even and odd rows r and r + 1. t: the row buffers. */
static void input_rows(const real *xc, int64_t H, int64_t W, int64_t th0, int64_t nr, const wino_geom *q, real *t,
                       real *v, int64_t vs)
{
    const int64_t TS = q->TS, L = nr * TS, len = L + TS + 1;
    /* planes: [row parity][column parity], then Bᵀ d (columns split) */
    real *ee = t, *eo = ee + len, *oe = eo + len, *oo = oe + len, *d = oo + len;
    for (int64_t r = 0; r <= nr; r++) {
        int64_t h = 2 * (th0 + r) - 1; /* padded row 2 (th0 + r) */
        split_row(xc, H, W, h, TS, ee + r * TS, eo + r * TS);
        split_row(xc, H, W, h + 1, TS, oe + r * TS, oo + r * TS);
    }
    /* down the columns: d[2 i] and d[2 i + 1], the even and odd columns of
     * row i of Bᵀ d (one zero past the end for the last tile's k + 1) */
    real *de[4], *dd[4];
    for (int i = 0; i < 4; i++) {
        de[i] = d + (2 * i) * (L + 1);
        dd[i] = d + (2 * i + 1) * (L + 1);
        de[i][L] = dd[i][L] = 0;
    }
    step_bt(L, ee, oe, ee + TS, oe + TS, de[0], de[1], de[2], de[3]);
    step_bt(L, eo, oo, eo + TS, oo + TS, dd[0], dd[1], dd[2], dd[3]);
    /* then along the rows: tile k reads columns 2k .. 2k + 3 */
    for (int i = 0; i < 4; i++)
        step_bt(L, de[i], dd[i], de[i] + 1, dd[i] + 1, v + (4 * i) * vs, v + (4 * i + 1) * vs, v + (4 * i + 2) * vs,
                v + (4 * i + 3) * vs);
}

/* Aᵀ m A for tile rows th0 .. th0 + nr - 1 (m[ξ * ms + r TS + k]): output
 * rows 2 th and 2 th + 1 (those below OH) of one OH x OW plane yo, plus
 * bias. t: the row buffers. */
static void output_rows(const real *m, int64_t ms, int64_t th0, int64_t nr, const wino_geom *q, int64_t OH,
                        int64_t OW, real bias, real *t, real *yo)
{
    const int64_t Wb = q->Wb, L = nr * q->TS;
    real *s = t, *y = t + 8 * L, *rows = t + 12 * L;
    /* down the columns: s[j] = (Aᵀ m)[0][j], s[4 + j] = (Aᵀ m)[1][j] */
    for (int j = 0; j < 4; j++)
        step_at(L, m + j * ms, m + (4 + j) * ms, m + (8 + j) * ms, m + (12 + j) * ms, s + j * L, s + (4 + j) * L);
    /* along the rows, then the two columns of each tile side by side */
    for (int a = 0; a < 2; a++) {
        real *sa = s + 4 * a * L;
        step_at(L, sa, sa + L, sa + 2 * L, sa + 3 * L, y, y + L);
        merge2(L, y, y + L, rows + a * 2 * L);
    }
    for (int64_t r = 0; r < nr; r++) {
        int64_t oh = 2 * (th0 + r);
        const real *a = rows + r * Wb, *b = rows + 2 * L + r * Wb;
        real *o0 = yo + oh * OW;
        for (int64_t k = 0; k < OW; k++) o0[k] = a[k] + bias;
        if (oh + 1 < OH)
            for (int64_t k = 0; k < OW; k++) o0[OW + k] = b[k] + bias;
    }
}

/* A ∂Y Aᵀ for tile rows th0 .. th0 + nr - 1 of one OH x OW gradient plane
 * gc (zero past its edges): z[ξ * zs + r TS + k]. t: the row buffers. */
static void grad_rows(const real *gc, int64_t OH, int64_t OW, int64_t th0, int64_t nr, const wino_geom *q, real *t,
                      real *z, int64_t zs)
{
    const int64_t Wb = q->Wb, L = nr * q->TS;
    real *g0 = t, *g1 = t + nr * Wb, *h = t + 4 * L, *r = t + 8 * L;
    for (int64_t i = 0; i < nr; i++) {
        int64_t oh = 2 * (th0 + i);
        real *a = g0 + i * Wb, *b = g1 + i * Wb;
        memcpy(a, gc + oh * OW, (size_t)OW * sizeof(real));
        if (oh + 1 < OH)
            memcpy(b, gc + (oh + 1) * OW, (size_t)OW * sizeof(real));
        else
            memset(b, 0, (size_t)OW * sizeof(real));
        for (int64_t k = OW; k < Wb; k++) a[k] = b[k] = 0;
    }
    /* h: even and odd columns of the two rows of each tile */
    split2(L, g0, h, h + L);
    split2(L, g1, h + 2 * L, h + 3 * L);
    /* down the columns: r[i] = (A ∂Y)[i][0], r[4 + i] = (A ∂Y)[i][1] */
    step_a(L, h, h + 2 * L, r, r + L, r + 2 * L, r + 3 * L);
    step_a(L, h + L, h + 3 * L, r + 4 * L, r + 5 * L, r + 6 * L, r + 7 * L);
    /* along the rows */
    for (int i = 0; i < 4; i++)
        step_a(L, r + i * L, r + (4 + i) * L, z + (4 * i) * zs, z + (4 * i + 1) * zs, z + (4 * i + 2) * zs,
               z + (4 * i + 3) * zs);
}

/* The pieces of a chunk: tile rows r0 .. r0 + nr - 1 (of N TH) split by
 * image. Returns the rows of the piece starting at chunk row k. */
static int64_t piece(const wino_geom *q, int64_t r0, int64_t k, int64_t nr, int64_t *n, int64_t *th)
{
    *n = (r0 + k) / q->TH;
    *th = (r0 + k) % q->TH;
    int64_t left = q->TH - *th;
    return left < nr - k ? left : nr - k;
}

/* y [N, Co, H, W] = the 3 x 3 convolution (padding 1) of x [N, Ci, H, W]
 * whose transformed filters are U[ξ] (Co x Ci), plus b (may be NULL). The
 * 16 planes of U are q->su apart, those of V (Ci channels) sv and those of
 * M (Co channels) sm. */
static void wino_apply(const wino_geom *q, int64_t N, int64_t Ci, int64_t Co, int64_t H, int64_t W, const real *x,
                       const real *U, int64_t sv, int64_t sm, const real *b, real *y, real *scratch)
{
    const int64_t R = q->R, Tc = q->Tc, TS = q->TS, rows = N * q->TH, su = q->su;
    real *V = scratch, *M = V + 16 * sv, *t = M + 16 * sm;
    for (int64_t r0 = 0; r0 < rows; r0 += R) {
        const int64_t nr = rows - r0 < R ? rows - r0 : R, nt = nr * TS;
        for (int64_t k = 0, n, th, len; k < nr; k += len) {
            len = piece(q, r0, k, nr, &n, &th);
            for (int64_t c = 0; c < Ci; c++)
                input_rows(x + (n * Ci + c) * H * W, H, W, th, len, q, t, V + c * Tc + k * TS, sv);
        }
        for (int xi = 0; xi < 16; xi++)
            mnas__k_gemm(0, 0, Co, nt, Ci, 1, U + xi * su, Ci, V + xi * sv, Tc, 0, M + xi * sm, Tc);
        for (int64_t k = 0, n, th, len; k < nr; k += len) {
            len = piece(q, r0, k, nr, &n, &th);
            for (int64_t o = 0; o < Co; o++)
                output_rows(M + o * Tc + k * TS, sm, th, len, q, H, W, b ? b[o] : 0, t, y + (n * Co + o) * H * W);
        }
    }
}

void mnas__k_wino_forward(const mnas_kconv *g, const real *x, const real *w, const real *b, real *y, real *scratch)
{
    wino_geom q;
    wino_plan(g, &q);
    real *U = scratch, *rest = scratch + 16 * q.su;
    weights_transform(w, g->O, g->C, 0, q.su, rest, U); /* its planes go where V and M will be */
    wino_apply(&q, g->N, g->C, g->O, g->H, g->W, x, U, q.sc, q.so, b, y, rest);
}

void mnas__k_wino_dx(const mnas_kconv *g, const real *gy, const real *w, real *dx, real *scratch)
{
    wino_geom q;
    wino_plan(g, &q);
    real *U = scratch, *rest = scratch + 16 * q.su;
    weights_transform(w, g->O, g->C, 1, q.su, rest, U);
    wino_apply(&q, g->N, g->O, g->C, g->H, g->W, gy, U, q.so, q.sc, NULL, dx, rest);
}

void mnas__k_wino_dw(const mnas_kconv *g, const real *x, const real *gy, real *dw, real *scratch)
{
    wino_geom q;
    wino_plan(g, &q);
    const int64_t C = g->C, O = g->O, H = g->H, W = g->W;
    const int64_t R = q.R, Tc = q.Tc, TS = q.TS, rows = g->N * q.TH;
    real *P = scratch, *V = P + 16 * q.su, *Z = V + 16 * q.sc, *t = Z + 16 * q.so;
    for (int64_t r0 = 0; r0 < rows; r0 += R) {
        const int64_t nr = rows - r0 < R ? rows - r0 : R, nt = nr * TS;
        for (int64_t k = 0, n, th, len; k < nr; k += len) {
            len = piece(&q, r0, k, nr, &n, &th);
            for (int64_t c = 0; c < C; c++)
                input_rows(x + (n * C + c) * H * W, H, W, th, len, &q, t, V + c * Tc + k * TS, q.sc);
            for (int64_t o = 0; o < O; o++)
                grad_rows(gy + (n * O + o) * H * W, H, W, th, len, &q, t, Z + o * Tc + k * TS, q.so);
        }
        for (int xi = 0; xi < 16; xi++)
            mnas__k_gemm(0, 1, O, C, nt, 1, Z + xi * q.so, Tc, V + xi * q.sc, Tc, r0 ? 1 : 0, P + xi * q.su, C);
    }
    weights_untransform(O * C, q.su, P, V, dw); /* V's place is free now */
}
