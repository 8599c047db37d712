/* Batch normalisation with batch statistics: the fused forward, and the
 * fused backward used when the backward pass is not recorded. Layout:
 * x is [outer, C, inner] (2-D [N, F]: inner 1; NCHW: outer N, inner H*W);
 * statistics are per C over outer*inner values, biased variance. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* [N, F] inputs (inner 1): walk rows in memory order with one accumulator
 * per feature, which the compiler vectorises. */
enum { ROW_MAX = 512, MASK_CHUNK = 256 }; /* per-channel scratch on the stack: keep it small for embedders' threads */

/* Per-feature mean and 1/sqrt(var + eps) of [N, C] rows, in double. */
static inline void row_moments(int64_t N, int64_t C, const real *x, double eps, double *s, double *r)
{
    double v[ROW_MAX];
    for (int64_t c = 0; c < C; c++) s[c] = v[c] = 0;
    for (int64_t o = 0; o < N; o++)
        for (int64_t c = 0; c < C; c++) s[c] += x[o * C + c];
    for (int64_t c = 0; c < C; c++) s[c] /= (double)N;
    for (int64_t o = 0; o < N; o++)
        for (int64_t c = 0; c < C; c++) {
            double d = (double)x[o * C + c] - s[c];
            v[c] += d * d;
        }
    for (int64_t c = 0; c < C; c++) r[c] = 1.0 / sqrt(v[c] / (double)N + eps);
}

/* relu as mnas_relu computes it (NaN passes through); masked_row below
 * takes its derivative as mnas__step does (NaN where y is NaN): the fused
 * batch-norm + ReLU op keeps the bits of the two separate ops. */
static inline real relu_of(real z) { return (z > 0 || z != z) ? z : 0; }

MNAS_CLONES
static void bn_forward_rows(int64_t N, int64_t C, const real *x, const real *gamma, const real *beta, double eps,
                            int relu, real *y, real *mean, real *rstd)
{
    double s[ROW_MAX], r[ROW_MAX], a[ROW_MAX], b[ROW_MAX];
    row_moments(N, C, x, eps, s, r);
    for (int64_t c = 0; c < C; c++) {
        mean[c] = (real)s[c];
        rstd[c] = (real)r[c];
        a[c] = r[c] * (gamma ? (double)gamma[c] : 1.0);
        b[c] = beta ? (double)beta[c] : 0.0;
    }
    for (int64_t o = 0; o < N; o++)
        for (int64_t c = 0; c < C; c++) y[o * C + c] = (real)(((double)x[o * C + c] - s[c]) * a[c] + b[c]);
    if (relu)
        for (int64_t i = 0; i < N * C; i++) y[i] = relu_of(y[i]);
}

/* g, or g * step(y) in buf when y is given (the fused ReLU's mask, the
 * same product as mnas_mask_mul's). */
static inline const real *masked_row(real *restrict buf, const real *restrict g, const real *restrict y, int64_t n)
{
    if (!y) return g;
    /* two plain loops, as mnas__k_unary's step and the binary product: the
     * compiler vectorises these, not the fused select */
    for (int64_t i = 0; i < n; i++) buf[i] = y[i] > 0 ? 1 : (y[i] != y[i] ? y[i] : 0);
    for (int64_t i = 0; i < n; i++) buf[i] = g[i] * buf[i];
    return buf;
}

/* The [N, F] backward and double backward run in the working precision
 * (float in the library, double in the test build), which vectorises
 * twice as wide as double: their sums run over the N rows of a few-shot
 * batch, and mean and rstd come from the forward's double moments. */
MNAS_CLONES
static void bn_backward_rows(int64_t N, int64_t C, const real *x, const real *g, const real *y, const real *gamma,
                             const real *mean, const real *rstd, real *dx, real *dgamma, real *dbeta)
{
    real sg[ROW_MAX], sgx[ROW_MAX], k[ROW_MAX], gm[ROW_MAX];
    for (int64_t c = 0; c < C; c++) sg[c] = sgx[c] = 0;
    for (int64_t o = 0; o < N; o++) {
        const real *xo = x + o * C, *go = masked_row(gm, g + o * C, y ? y + o * C : NULL, C);
        for (int64_t c = 0; c < C; c++) {
            sg[c] += go[c];
            sgx[c] += go[c] * ((xo[c] - mean[c]) * rstd[c]);
        }
    }
    const real inv = (real)(1.0 / (double)N);
    for (int64_t c = 0; c < C; c++) {
        if (dbeta) dbeta[c] = sg[c];
        if (dgamma) dgamma[c] = sgx[c];
        k[c] = (gamma ? gamma[c] : 1) * rstd[c];
        sg[c] *= inv;
        sgx[c] *= inv;
    }
    if (!dx) return;
    for (int64_t o = 0; o < N; o++) {
        const real *xo = x + o * C, *go = masked_row(gm, g + o * C, y ? y + o * C : NULL, C);
        real *d = dx + o * C;
        for (int64_t c = 0; c < C; c++) d[c] = k[c] * (go[c] - sg[c] - ((xo[c] - mean[c]) * rstd[c]) * sgx[c]);
    }
}

/* [outer, C, inner] inputs with inner > 1 (NCHW): a channel's values are
 * `outer` runs of `inner` contiguous values. Its sums go to 8 double lanes
 * (element i of a run to lane i mod 8, the tail of a run to lane 0), which
 * vectorise, folded in a fixed order: the same bits on every call. */
#define INL static inline __attribute__((always_inline))

INL double fold8(const double s[8]) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }

/* The 8 lanes as two 4-wide vectors (GNU vector extension): GCC does not
 * vectorise the lane arrays by itself. Lane-wise operations are the same
 * IEEE operations in the same order, so the bits are those of scalar
 * lanes. */
#if defined(__GNUC__) && !defined(__clang__)
/* the helpers are always inlined: no vector crosses a real call */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef double v4d __attribute__((vector_size(4 * sizeof(double))));
typedef real v4r __attribute__((vector_size(4 * sizeof(real))));

INL v4d load4(const real *p)
{
    v4r t;
    memcpy(&t, p, sizeof t);
    return __builtin_convertvector(t, v4d);
}

#define LANES_IN(S, s) v4d S##0, S##1; memcpy(&S##0, (s), sizeof S##0); memcpy(&S##1, (s) + 4, sizeof S##1)
#define LANES_OUT(S, s) memcpy((s), &S##0, sizeof S##0); memcpy((s) + 4, &S##1, sizeof S##1)

INL void lanes_sum(double s[8], const real *p, int64_t n)
{
    int64_t i = 0;
    LANES_IN(S, s);
    for (; i + 8 <= n; i += 8) {
        S0 += load4(p + i);
        S1 += load4(p + i + 4);
    }
    LANES_OUT(S, s);
    for (; i < n; i++) s[0] += (double)p[i];
}

INL void lanes_sqdev(double s[8], const real *p, int64_t n, double mu)
{
    int64_t i = 0;
    LANES_IN(S, s);
    for (; i + 8 <= n; i += 8) {
        v4d d0 = load4(p + i) - mu, d1 = load4(p + i + 4) - mu;
        S0 += d0 * d0;
        S1 += d1 * d1;
    }
    LANES_OUT(S, s);
    for (; i < n; i++) {
        double d = (double)p[i] - mu;
        s[0] += d * d;
    }
}

/* s += g, t += g * xh with xh = (x - mu) r */
INL void lanes_g_gxh(double s[8], double t[8], const real *x, const real *g, int64_t n, double mu, double r)
{
    int64_t i = 0;
    LANES_IN(S, s);
    LANES_IN(T, t);
    for (; i + 8 <= n; i += 8) {
        v4d g0 = load4(g + i), g1 = load4(g + i + 4);
        S0 += g0;
        S1 += g1;
        T0 += g0 * ((load4(x + i) - mu) * r);
        T1 += g1 * ((load4(x + i + 4) - mu) * r);
    }
    LANES_OUT(S, s);
    LANES_OUT(T, t);
    for (; i < n; i++) {
        s[0] += (double)g[i];
        t[0] += (double)g[i] * (((double)x[i] - mu) * r);
    }
}

/* s += u (g - a - xh b) */
INL void lanes_D(double s[8], const real *x, const real *g, const real *u, int64_t n, double mu, double r, double a,
                 double b)
{
    int64_t i = 0;
    LANES_IN(S, s);
    for (; i + 8 <= n; i += 8) {
        v4d h0 = (load4(x + i) - mu) * r, h1 = (load4(x + i + 4) - mu) * r;
        S0 += load4(u + i) * ((load4(g + i) - a) - h0 * b);
        S1 += load4(u + i + 4) * ((load4(g + i + 4) - a) - h1 * b);
    }
    LANES_OUT(S, s);
    for (; i < n; i++) {
        double xh = ((double)x[i] - mu) * r;
        s[0] += (double)u[i] * ((double)g[i] - a - xh * b);
    }
}

/* Mean and 1/sqrt(var + eps) of channel c. */
INL void channel_moments(int64_t outer, int64_t C, int64_t inner, const real *x, int64_t c, double eps, double *mu,
                         double *r)
{
    double s[8] = { 0, 0, 0, 0, 0, 0, 0, 0 }, v[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    const double m = (double)(outer * inner);
    for (int64_t o = 0; o < outer; o++) lanes_sum(s, x + (o * C + c) * inner, inner);
    *mu = fold8(s) / m;
    for (int64_t o = 0; o < outer; o++) lanes_sqdev(v, x + (o * C + c) * inner, inner, *mu);
    *r = 1.0 / sqrt(fold8(v) / m + eps);
}

MNAS_CLONES
void mnas__k_bn_forward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *gamma, const real *beta,
                        double eps, int relu, real *y, real *mean, real *rstd)
{
    if (inner == 1 && C <= ROW_MAX) {
        bn_forward_rows(outer, C, x, gamma, beta, eps, relu, y, mean, rstd);
        return;
    }
    for (int64_t c = 0; c < C; c++) {
        double mu, r;
        channel_moments(outer, C, inner, x, c, eps, &mu, &r);
        mean[c] = (real)mu;
        rstd[c] = (real)r;
        double gk = gamma ? (double)gamma[c] : 1.0, bk = beta ? (double)beta[c] : 0.0;
        for (int64_t o = 0; o < outer; o++) {
            const real *p = x + (o * C + c) * inner;
            real *q = y + (o * C + c) * inner;
            for (int64_t i = 0; i < inner; i++) q[i] = (real)(((double)p[i] - mu) * r * gk + bk);
            if (relu)
                for (int64_t i = 0; i < inner; i++) q[i] = relu_of(q[i]);
        }
    }
}

MNAS_CLONES
void mnas__k_bn_backward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *g, const real *y,
                         const real *gamma, const real *mean, const real *rstd, real *dx, real *dgamma, real *dbeta)
{
    if (inner == 1 && C <= ROW_MAX) {
        bn_backward_rows(outer, C, x, g, y, gamma, mean, rstd, dx, dgamma, dbeta);
        return;
    }
    double m = (double)(outer * inner);
    real gm[MASK_CHUNK];
    for (int64_t c = 0; c < C; c++) {
        double mu = mean[c], r = rstd[c];
        double sgl[8] = { 0, 0, 0, 0, 0, 0, 0, 0 }, sgxl[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
        for (int64_t o = 0; o < outer; o++) {
            int64_t at = (o * C + c) * inner;
            if (!y) {
                lanes_g_gxh(sgl, sgxl, x + at, g + at, inner, mu, r);
                continue;
            }
            /* Masked in chunks of a multiple of 8 values: every value
             * lands in the lane it would have in one call over the run. */
            for (int64_t i = 0; i < inner; i += MASK_CHUNK) {
                int64_t len = inner - i < MASK_CHUNK ? inner - i : MASK_CHUNK;
                lanes_g_gxh(sgl, sgxl, x + at + i, masked_row(gm, g + at + i, y + at + i, len), len, mu, r);
            }
        }
        double sg = fold8(sgl), sgx = fold8(sgxl);
        if (dbeta) dbeta[c] = (real)sg;
        if (dgamma) dgamma[c] = (real)sgx;
        if (!dx) continue;
        /* dx = gamma * rstd * (g - mean(g) - xhat * mean(g * xhat)) */
        double gk = gamma ? (double)gamma[c] : 1.0;
        double a = sg / m, b = sgx / m, k = gk * r;
        for (int64_t o = 0; o < outer; o++) {
            const real *p = x + (o * C + c) * inner, *q = g + (o * C + c) * inner;
            real *d = dx + (o * C + c) * inner;
            if (y) {
                const real *yq = y + (o * C + c) * inner;
                for (int64_t i0 = 0; i0 < inner; i0 += MASK_CHUNK) {
                    int64_t len = inner - i0 < MASK_CHUNK ? inner - i0 : MASK_CHUNK;
                    const real *qm = masked_row(gm, q + i0, yq + i0, len);
                    for (int64_t i = 0; i < len; i++) {
                        double xh = ((double)p[i0 + i] - mu) * r;
                        d[i0 + i] = (real)(k * ((double)qm[i] - a - xh * b));
                    }
                }
                continue;
            }
            for (int64_t i = 0; i < inner; i++) {
                double xh = ((double)p[i] - mu) * r;
                d[i] = (real)(k * ((double)q[i] - a - xh * b));
            }
        }
    }
}

MNAS_CLONES
static void bn_stats_rows(int64_t N, int64_t C, const real *x, double eps, real *mean, real *rstd)
{
    double s[ROW_MAX], r[ROW_MAX];
    row_moments(N, C, x, eps, s, r);
    for (int64_t c = 0; c < C; c++) {
        mean[c] = (real)s[c];
        rstd[c] = (real)r[c];
    }
}

/* Row-major version of the double backward below for [N, F] inputs, in
 * the working precision (see bn_backward_rows); every loop over the
 * features is branch-free so it vectorises. */
MNAS_CLONES
static void bn_double_backward_rows(int64_t N, int64_t C, const real *x, const real *g, const real *gamma,
                                    const real *mean, const real *rstd, const real *u, const real *vg, real *ddx,
                                    real *ddg, real *dgam)
{
    real a[ROW_MAX], b[ROW_MAX], ub[ROW_MAX], ux[ROW_MAX], D[ROW_MAX];
    const real inv = (real)(1.0 / (double)N), m = (real)N;
    for (int64_t c = 0; c < C; c++) a[c] = b[c] = ub[c] = ux[c] = D[c] = 0;
    for (int64_t o = 0; o < N; o++) {
        const real *xo = x + o * C, *go = g + o * C;
        for (int64_t c = 0; c < C; c++) {
            real xh = (xo[c] - mean[c]) * rstd[c];
            a[c] += go[c];
            b[c] += go[c] * xh;
        }
    }
    for (int64_t c = 0; c < C; c++) {
        a[c] *= inv;
        b[c] *= inv;
    }
    if (u) {
        for (int64_t o = 0; o < N; o++) {
            const real *xo = x + o * C, *uo = u + o * C;
            for (int64_t c = 0; c < C; c++) {
                ub[c] += uo[c];
                ux[c] += uo[c] * ((xo[c] - mean[c]) * rstd[c]);
            }
        }
        for (int64_t c = 0; c < C; c++) {
            ub[c] *= inv;
            ux[c] *= inv;
        }
        for (int64_t o = 0; o < N; o++) {
            const real *xo = x + o * C, *go = g + o * C, *uo = u + o * C;
            for (int64_t c = 0; c < C; c++) {
                real xh = (xo[c] - mean[c]) * rstd[c];
                D[c] += uo[c] * (go[c] - a[c] - xh * b[c]);
            }
        }
    }
    if (dgam)
        for (int64_t c = 0; c < C; c++) dgam[c] = rstd[c] * D[c];
    /* Per channel, ddx = A1 u + A2 g + A3 xh + A4 and ddg = B1 u + B2 xh + B3
     * (the formulas below, expanded), so the element loop is a few
     * multiply-adds. */
    real A1[ROW_MAX], A2[ROW_MAX], A3[ROW_MAX], A4[ROW_MAX], B1[ROW_MAX], B2[ROW_MAX], B3[ROW_MAX];
    for (int64_t c = 0; c < C; c++) {
        real r = rstd[c], gk = gamma ? gamma[c] : 1, v = vg ? vg[c] : 0;
        real k2 = gk * r * r;
        A1[c] = -k2 * b[c];
        A2[c] = -k2 * ux[c] + v * r;
        A3[c] = -k2 * (D[c] / m - 2 * b[c] * ux[c]) - v * r * b[c];
        A4[c] = k2 * (b[c] * ub[c] + ux[c] * a[c]) - v * r * a[c];
        B1[c] = gk * r;
        B2[c] = v - gk * r * ux[c];
        B3[c] = -gk * r * ub[c];
    }
    for (int64_t o = 0; o < N; o++) {
        const real *xo = x + o * C, *go = g + o * C, *uo = u ? u + o * C : NULL;
        if (ddx) {
            real *d = ddx + o * C;
            if (uo)
                for (int64_t c = 0; c < C; c++)
                    d[c] = A1[c] * uo[c] + A2[c] * go[c] + A3[c] * ((xo[c] - mean[c]) * rstd[c]) + A4[c];
            else
                for (int64_t c = 0; c < C; c++) d[c] = A2[c] * go[c] + A3[c] * ((xo[c] - mean[c]) * rstd[c]) + A4[c];
        }
        if (ddg) {
            real *d = ddg + o * C;
            if (uo)
                for (int64_t c = 0; c < C; c++) d[c] = B1[c] * uo[c] + B2[c] * ((xo[c] - mean[c]) * rstd[c]) + B3[c];
            else
                for (int64_t c = 0; c < C; c++) d[c] = B2[c] * ((xo[c] - mean[c]) * rstd[c]) + B3[c];
        }
    }
}

MNAS_CLONES
void mnas__k_bn_stats(int64_t outer, int64_t C, int64_t inner, const real *x, double eps, real *mean, real *rstd)
{
    if (inner == 1 && C <= ROW_MAX) {
        bn_stats_rows(outer, C, x, eps, mean, rstd);
        return;
    }
    for (int64_t c = 0; c < C; c++) {
        double mu, r;
        channel_moments(outer, C, inner, x, c, eps, &mu, &r);
        mean[c] = (real)mu;
        rstd[c] = (real)r;
    }
}

/* The derivatives of S = <u, dx> + <vg, dgamma> with respect to x, g and
 * gamma, where dx and dgamma are batch-norm's backward outputs for upstream
 * gradient g (so second derivatives of batch-norm). Per channel, with
 * xh = (x - mean) r, a = mean(g), b = mean(g xh), ub = mean(u),
 * ux = mean(u xh), D = sum u (g - a - xh b):
 *   dS/dg = gamma r (u - ub - xh ux) + vg xh
 *   dS/dgamma = r D
 *   dS/dx = -gamma r^2 (xh D / m + b (u - ub - xh ux) + ux (g - a - xh b))
 *           + vg r (g - a - xh b)                                         */
MNAS_CLONES
void mnas__k_bn_double_backward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *g,
                                const real *gamma, const real *mean, const real *rstd, const real *u, const real *vg,
                                real *ddx, real *ddg, real *dgam)
{
    if (inner == 1 && C <= ROW_MAX) {
        bn_double_backward_rows(outer, C, x, g, gamma, mean, rstd, u, vg, ddx, ddg, dgam);
        return;
    }
    double m = (double)(outer * inner);
    for (int64_t c = 0; c < C; c++) {
        double mu = mean[c], r = rstd[c], gk = gamma ? (double)gamma[c] : 1.0, v = vg ? (double)vg[c] : 0.0;
        double al[8] = { 0, 0, 0, 0, 0, 0, 0, 0 }, bl[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
        double ul[8] = { 0, 0, 0, 0, 0, 0, 0, 0 }, uxl[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
        double Dl[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
        for (int64_t o = 0; o < outer; o++) {
            int64_t k0 = (o * C + c) * inner;
            lanes_g_gxh(al, bl, x + k0, g + k0, inner, mu, r);
            if (u) lanes_g_gxh(ul, uxl, x + k0, u + k0, inner, mu, r);
        }
        double a = fold8(al) / m, b = fold8(bl) / m, ub = fold8(ul) / m, ux = fold8(uxl) / m;
        if (u)
            for (int64_t o = 0; o < outer; o++) {
                int64_t k0 = (o * C + c) * inner;
                lanes_D(Dl, x + k0, g + k0, u + k0, inner, mu, r, a, b);
            }
        double D = fold8(Dl);
        if (dgam) dgam[c] = (real)(u ? r * D : 0.0);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t k = (o * C + c) * inner + i;
                double xh = ((double)x[k] - mu) * r;
                double gc = (double)g[k] - a - xh * b;
                double uc = u ? (double)u[k] - ub - xh * ux : 0.0;
                if (ddg) ddg[k] = (real)(gk * r * uc + v * xh);
                if (ddx) ddx[k] = (real)(-gk * r * r * (xh * D / m + b * uc + ux * gc) + v * r * gc);
            }
    }
}
