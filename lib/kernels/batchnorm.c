/* Batch normalisation with batch statistics: the fused forward, and the
 * fused backward used when the backward pass is not recorded. Layout:
 * x is [outer, C, inner] (2-D [N, F]: inner 1; NCHW: outer N, inner H*W);
 * statistics are per C over outer*inner values, biased variance. [N, F]
 * moments are summed in double; NCHW sums run in the working precision in
 * 16 fixed lanes (dbeta in double lanes). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vec8.h"

/* [N, F] inputs (inner 1): walk rows in memory order with one accumulator
 * per feature, which the compiler vectorises. */
enum { ROW_MAX = 512 }; /* per-channel scratch on the stack: keep it small for embedders' threads */

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
 * takes its derivative as the K_STEP mask does (NaN where y is NaN): the fused
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

/* [outer, C, inner] inputs with inner > 1 (NCHW): a channel's values are
 * `outer` runs of `inner` contiguous values. Everything runs in the working
 * precision, 8 values to a vector (GNU vector extension; GCC does not
 * vectorise reductions by itself without reassociating them). A channel's
 * sums go to 16 lanes, element i of a run to lane i mod 16 (the tail of a
 * run too), folded in a fixed order at the end, so the bits depend on the
 * shape alone: not on the call, the thread count or the instruction set
 * (lane-wise operations are the same IEEE operations in the same order,
 * and contraction into FMA is off). */
enum { LANES = 16 };

/* relu_of lane-wise: z where z > 0 or z is NaN, else +0. */
INL v8r relu8(v8r z) { return bits_and(z, (z > 0) | (z != z)); }


/* 16 lanes: lane j < 8 is lo[j], lane j >= 8 is hi[j - 8]. */
typedef struct {
    v8r lo, hi;
} lanes;


INL void lanes_clear(lanes *s) { memset(s, 0, sizeof *s); }

/* The lanes as an array, for a run's tail or the fold, and back. */
INL void lanes_out(real t[LANES], const lanes *s)
{
    memcpy(t, &s->lo, sizeof s->lo);
    memcpy(t + 8, &s->hi, sizeof s->hi);
}

INL void lanes_in(lanes *s, const real t[LANES])
{
    memcpy(&s->lo, t, sizeof s->lo);
    memcpy(&s->hi, t + 8, sizeof s->hi);
}

INL real fold16(const lanes *s)
{
    real t[LANES];
    lanes_out(t, s);
    for (int w = 1; w < LANES; w *= 2) /* pairwise: ((t0 + t1) + (t2 + t3)) + ... */
        for (int j = 0; j < LANES; j += 2 * w) t[j] += t[j + w];
    return t[0];
}

/* One run of n values into the lanes: VEC(i) gives the vector of terms
 * for elements i .. i + 7, ONE(i) the term for element i. The full blocks
 * of 16 go to both halves; a block of 8 left over goes to lanes 0-7 (its
 * elements are 0-7 mod 16); the rest, one at a time, to lane i mod 16. */
#define RUN_LANES(S, n, VEC, ONE)                                          \
    do {                                                                   \
        int64_t i_ = 0;                                                    \
        for (; i_ + 16 <= (n); i_ += 16) {                                 \
            (S).lo += VEC(i_);                                             \
            (S).hi += VEC(i_ + 8);                                         \
        }                                                                  \
        if (i_ + 8 <= (n)) {                                               \
            (S).lo += VEC(i_);                                             \
            i_ += 8;                                                       \
        }                                                                  \
        if (i_ < (n)) {                                                    \
            real t_[LANES];                                                \
            lanes_out(t_, &(S));                                           \
            for (; i_ < (n); i_++) t_[i_ & (LANES - 1)] += ONE(i_);        \
            lanes_in(&(S), t_);                                            \
        }                                                                  \
    } while (0)

/* Mean and 1/sqrt(var + eps) of channel c (two passes: the mean, then the
 * squared deviations from it); m is the channel's count. */
INL void channel_moments(int64_t outer, int64_t C, int64_t inner, const real *x, int64_t c, double eps, real *mu,
                         real *r)
{
    const double m = (double)(outer * inner);
    lanes s, v;
    lanes_clear(&s);
    lanes_clear(&v);
    for (int64_t o = 0; o < outer; o++) {
        const real *p = x + (o * C + c) * inner;
#define V(i) ld8(p + (i))
#define S1(i) p[i]
        RUN_LANES(s, inner, V, S1);
#undef V
#undef S1
    }
    const real mean = (real)((double)fold16(&s) / m);
    for (int64_t o = 0; o < outer; o++) {
        const real *p = x + (o * C + c) * inner;
#define V(i) ((ld8(p + (i)) - mean) * (ld8(p + (i)) - mean))
#define S1(i) ((p[i] - mean) * (p[i] - mean))
        RUN_LANES(v, inner, V, S1);
#undef V
#undef S1
    }
    *mu = mean;
    *r = (real)(1.0 / sqrt((double)fold16(&v) / m + eps));
}

/* dbeta's sum runs in 16 double lanes (the same assignment as above).
 * The recorded backward forms dbeta with mnas_sum_to, which sums in double
 * in another order. Both double sums are far closer to the exact sum than
 * half a float ulp, so they round to the same float unless the exact sum
 * lies within that error of a rounding boundary; float lanes differ in
 * the last bit at once. The memory-saving inner loops, whose first pass is
 * unrecorded, rely on that agreement for their bits. */
typedef double v4d __attribute__((vector_size(4 * sizeof(double))));
typedef real v4r __attribute__((vector_size(4 * sizeof(real))));

/* 16 double lanes as four 4-wide vectors: GCC converts 4 floats to 4
 * doubles in one instruction, but splits wider conversions into scalars. */
typedef struct {
    v4d q[4];
} dlanes;

/* d += v, the 8 values of v to lanes at (0 - 7 or 8 - 15) */
INL void dlanes_add(v4d *d, v8r v)
{
    v4r a, b;
    memcpy(&a, &v, sizeof a);
    memcpy(&b, (const char *)&v + sizeof a, sizeof b);
    d[0] += __builtin_convertvector(a, v4d);
    d[1] += __builtin_convertvector(b, v4d);
}

INL double fold16d(const dlanes *s)
{
    double t[LANES];
    memcpy(t, s->q, sizeof t);
    return mnas__k_fold16(t);
}

/* The backward's sums over one run, in one pass: s += G, t += G xh with
 * xh = (x - mu) r, and d += G in double lanes when want_d, where G is g, or
 * g * step(y) when masked. masked and want_d are constants at every call,
 * so each combination inlines to a loop of its own. */
INL void run_sums(lanes *s, lanes *t, dlanes *d, const real *x, const real *g, const real *y, int64_t n, real mu,
                  real r, const int masked, const int want_d)
{
    v8r s0 = s->lo, s1 = s->hi, t0 = t->lo, t1 = t->hi;
    dlanes dd = *d;
    int64_t i = 0;
#define G8(k) (masked ? mask8(ld8(g + (k)), ld8(y + (k))) : ld8(g + (k)))
    for (; i + 16 <= n; i += 16) {
        v8r ga = G8(i), gb = G8(i + 8);
        s0 += ga;
        s1 += gb;
        t0 += ga * ((ld8(x + i) - mu) * r);
        t1 += gb * ((ld8(x + i + 8) - mu) * r);
        if (want_d) {
            dlanes_add(dd.q, ga);
            dlanes_add(dd.q + 2, gb);
        }
    }
    if (i + 8 <= n) {
        v8r ga = G8(i);
        s0 += ga;
        t0 += ga * ((ld8(x + i) - mu) * r);
        if (want_d) dlanes_add(dd.q, ga);
        i += 8;
    }
#undef G8
    s->lo = s0, s->hi = s1, t->lo = t0, t->hi = t1, *d = dd;
    if (i == n) return;
    real ts[LANES], tt[LANES];
    double td[LANES];
    lanes_out(ts, s);
    lanes_out(tt, t);
    memcpy(td, d->q, sizeof td);
    for (; i < n; i++) {
        real G = masked ? mask1(g[i], y[i]) : g[i];
        ts[i & (LANES - 1)] += G;
        tt[i & (LANES - 1)] += G * ((x[i] - mu) * r);
        if (want_d) td[i & (LANES - 1)] += (double)G;
    }
    lanes_in(s, ts);
    lanes_in(t, tt);
    memcpy(d->q, td, sizeof td);
}

/* A channel's sums over its runs, from zero: s = sum G, t = sum G xh and,
 * when want_d, d = sum G in double lanes (see run_sums; y may be NULL). */
INL void channel_sums(int64_t outer, int64_t C, int64_t inner, int64_t c, const real *x, const real *g, const real *y,
                      real mu, real r, int want_d, lanes *s, lanes *t, dlanes *d)
{
    lanes_clear(s);
    lanes_clear(t);
    memset(d, 0, sizeof *d);
    for (int64_t o = 0; o < outer; o++) {
        int64_t at = (o * C + c) * inner;
        if (y && want_d) run_sums(s, t, d, x + at, g + at, y + at, inner, mu, r, 1, 1);
        else if (y) run_sums(s, t, d, x + at, g + at, y + at, inner, mu, r, 1, 0);
        else if (want_d) run_sums(s, t, d, x + at, g + at, NULL, inner, mu, r, 0, 1);
        else run_sums(s, t, d, x + at, g + at, NULL, inner, mu, r, 0, 0);
    }
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
        real mu, r;
        channel_moments(outer, C, inner, x, c, eps, &mu, &r);
        mean[c] = mu;
        rstd[c] = r;
        const real k = r * (gamma ? gamma[c] : 1), bk = beta ? beta[c] : 0;
        for (int64_t o = 0; o < outer; o++) {
            const real *restrict p = x + (o * C + c) * inner;
            real *restrict q = y + (o * C + c) * inner;
            int64_t i = 0;
            if (relu) {
                for (; i + 8 <= inner; i += 8) st8(q + i, relu8((ld8(p + i) - mu) * k + bk));
                for (; i < inner; i++) q[i] = relu_of((p[i] - mu) * k + bk);
            } else {
                for (; i + 8 <= inner; i += 8) st8(q + i, (ld8(p + i) - mu) * k + bk);
                for (; i < inner; i++) q[i] = (p[i] - mu) * k + bk;
            }
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
    const real inv = (real)(1.0 / (double)(outer * inner));
    for (int64_t c = 0; c < C; c++) {
        const real mu = mean[c], r = rstd[c];
        lanes sl, sxl;
        dlanes sd;
        channel_sums(outer, C, inner, c, x, g, y, mu, r, dbeta != NULL, &sl, &sxl, &sd);
        const real sg = fold16(&sl), sgx = fold16(&sxl);
        if (dbeta) dbeta[c] = (real)fold16d(&sd);
        if (dgamma) dgamma[c] = sgx;
        if (!dx) continue;
        /* dx = gamma rstd (G - mean(G) - xh mean(G xh)) */
        const real a = sg * inv, b = sgx * inv, k = (gamma ? gamma[c] : 1) * r;
        for (int64_t o = 0; o < outer; o++) {
            int64_t at = (o * C + c) * inner;
            const real *restrict p = x + at, *restrict q = g + at;
            real *restrict d = dx + at;
            int64_t i = 0;
            if (y) {
                const real *restrict yq = y + at;
                for (; i + 8 <= inner; i += 8)
                    st8(d + i, k * ((mask8(ld8(q + i), ld8(yq + i)) - a) - ((ld8(p + i) - mu) * r) * b));
                for (; i < inner; i++) d[i] = k * ((mask1(q[i], yq[i]) - a) - ((p[i] - mu) * r) * b);
            } else {
                for (; i + 8 <= inner; i += 8) st8(d + i, k * ((ld8(q + i) - a) - ((ld8(p + i) - mu) * r) * b));
                for (; i < inner; i++) d[i] = k * ((q[i] - a) - ((p[i] - mu) * r) * b);
            }
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
    for (int64_t c = 0; c < C; c++) channel_moments(outer, C, inner, x, c, eps, mean + c, rstd + c);
}

/* The derivatives of S = <u, dx> + <vg, dgamma> with respect to x, g and
 * gamma, where dx and dgamma are batch-norm's backward outputs for upstream
 * gradient g (so second derivatives of batch-norm). Per channel, with
 * xh = (x - mean) r, a = mean(g), b = mean(g xh), ub = mean(u),
 * ux = mean(u xh), D = sum u (g - a - xh b):
 *   dS/dg = gamma r (u - ub - xh ux) + vg xh
 *   dS/dgamma = r D
 *   dS/dx = -gamma r^2 (xh D / m + b (u - ub - xh ux) + ux (g - a - xh b))
 *           + vg r (g - a - xh b)
 * D is summed in a pass of its own, after a and b, rather than expanded
 * into sums of the first pass: the expansion cancels. The element pass uses
 * the expanded per-channel coefficients of bn_double_backward_rows. */
MNAS_CLONES
void mnas__k_bn_double_backward(int64_t outer, int64_t C, int64_t inner, const real *x, const real *g,
                                const real *gamma, const real *mean, const real *rstd, const real *u, const real *vg,
                                real *ddx, real *ddg, real *dgam)
{
    if (inner == 1 && C <= ROW_MAX) {
        bn_double_backward_rows(outer, C, x, g, gamma, mean, rstd, u, vg, ddx, ddg, dgam);
        return;
    }
    const real inv = (real)(1.0 / (double)(outer * inner));
    for (int64_t c = 0; c < C; c++) {
        const real mu = mean[c], r = rstd[c], gk = gamma ? gamma[c] : 1, v = vg ? vg[c] : 0;
        lanes al, bl, ul, uxl, Dl;
        dlanes unused;
        channel_sums(outer, C, inner, c, x, g, NULL, mu, r, 0, &al, &bl, &unused);
        if (u) channel_sums(outer, C, inner, c, x, u, NULL, mu, r, 0, &ul, &uxl, &unused);
        else {
            lanes_clear(&ul);
            lanes_clear(&uxl);
        }
        lanes_clear(&Dl);
        const real a = fold16(&al) * inv, b = fold16(&bl) * inv, ub = fold16(&ul) * inv, ux = fold16(&uxl) * inv;
        if (u)
            for (int64_t o = 0; o < outer; o++) {
                const real *p = x + (o * C + c) * inner, *q = g + (o * C + c) * inner, *w = u + (o * C + c) * inner;
#define V(i) (ld8(w + (i)) * ((ld8(q + (i)) - a) - ((ld8(p + (i)) - mu) * r) * b))
#define S1(i) (w[i] * ((q[i] - a) - ((p[i] - mu) * r) * b))
                RUN_LANES(Dl, inner, V, S1);
#undef V
#undef S1
            }
        const real D = fold16(&Dl);
        if (dgam) dgam[c] = u ? r * D : 0;
        if (!ddx && !ddg) continue;
        const real k2 = gk * r * r;
        const real A1 = -k2 * b, A2 = -k2 * ux + v * r, A3 = -k2 * (D * inv - 2 * b * ux) - v * r * b,
                   A4 = k2 * (b * ub + ux * a) - v * r * a;
        const real B1 = gk * r, B2 = v - gk * r * ux, B3 = -gk * r * ub;
        for (int64_t o = 0; o < outer; o++) {
            int64_t at = (o * C + c) * inner;
            const real *restrict p = x + at, *restrict q = g + at, *restrict w = u ? u + at : NULL;
            if (ddx) {
                real *restrict d = ddx + at;
                int64_t i = 0;
                if (w) {
                    for (; i + 8 <= inner; i += 8)
                        st8(d + i, A1 * ld8(w + i) + A2 * ld8(q + i) + A3 * ((ld8(p + i) - mu) * r) + A4);
                    for (; i < inner; i++) d[i] = A1 * w[i] + A2 * q[i] + A3 * ((p[i] - mu) * r) + A4;
                } else {
                    for (; i + 8 <= inner; i += 8) st8(d + i, A2 * ld8(q + i) + A3 * ((ld8(p + i) - mu) * r) + A4);
                    for (; i < inner; i++) d[i] = A2 * q[i] + A3 * ((p[i] - mu) * r) + A4;
                }
            }
            if (ddg) {
                real *restrict d = ddg + at;
                int64_t i = 0;
                if (w) {
                    for (; i + 8 <= inner; i += 8) st8(d + i, B1 * ld8(w + i) + B2 * ((ld8(p + i) - mu) * r) + B3);
                    for (; i < inner; i++) d[i] = B1 * w[i] + B2 * ((p[i] - mu) * r) + B3;
                } else {
                    for (; i + 8 <= inner; i += 8) st8(d + i, B2 * ((ld8(p + i) - mu) * r) + B3);
                    for (; i < inner; i++) d[i] = B2 * ((p[i] - mu) * r) + B3;
                }
            }
        }
    }
}
