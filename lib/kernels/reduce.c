/* Reductions, broadcasting copies, softmax rows, transposes and axis copies. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

double mnas__k_sum(int64_t n, const real *x)
{
    /* Four partial sums: faster, and still a fixed order. */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

MNAS_CLONES
double mnas__k_dot(int64_t n, const real *a, const real *b)
{
    /* Eight partial sums in double (they vectorise), folded in a fixed
     * order: the same bits on every call. */
    double s[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int q = 0; q < 8; q++) s[q] += (double)a[i + q] * (double)b[i + q];
    for (; i < n; i++) s[0] += (double)a[i] * (double)b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* The cells of y that sum whole planes of x: the last two axes reduced. */
static int sums_planes(const int64_t xs[4], const int64_t ys[4])
{
    return ys[2] == 1 && ys[3] == 1 && xs[2] * xs[3] > 1;
}

int64_t mnas__k_sum_to_scratch(const int64_t xs[4], const int64_t ys[4])
{
    int64_t ny = ys[0] * ys[1] * ys[2] * ys[3];
    return sums_planes(xs, ys) && ny > 1 ? 16 * ny : ny;
}

/* acc[16 cell + i mod 16] += p[i] for the n values of one plane. */
MNAS_CLONES
static void plane_lanes(int64_t n, const real *p, double *acc)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += (double)p[i + l];
    for (; i < n; i++) acc[i & 15] += (double)p[i];
}

MNAS_CLONES
void mnas__k_sum_to(const real *x, const int64_t xs[4], real *y, const int64_t ys[4], double *acc)
{
    int64_t ny = ys[0] * ys[1] * ys[2] * ys[3];
    int64_t nx = xs[0] * xs[1] * xs[2] * xs[3];
    if (ny == 1) {
        y[0] = (real)mnas__k_sum(nx, x);
        return;
    }
    int64_t st[4];
    st[3] = 1;
    for (int d = 2; d >= 0; d--) st[d] = st[d + 1] * ys[d + 1];
    for (int d = 0; d < 4; d++)
        if (ys[d] == 1) st[d] = 0;
    const int64_t W = xs[3];
    if (sums_planes(xs, ys)) {
        const int64_t n = xs[2] * W;
        memset(acc, 0, (size_t)(16 * ny) * sizeof(double));
        for (int64_t i0 = 0; i0 < xs[0]; i0++)
            for (int64_t i1 = 0; i1 < xs[1]; i1++)
                plane_lanes(n, x + (i0 * xs[1] + i1) * n, acc + 16 * (i0 * st[0] + i1 * st[1]));
        for (int64_t i = 0; i < ny; i++) y[i] = (real)mnas__k_fold16(acc + 16 * i);
        return;
    }
    memset(acc, 0, (size_t)ny * sizeof(double));
    const real *p = x;
    for (int64_t i0 = 0; i0 < xs[0]; i0++)
        for (int64_t i1 = 0; i1 < xs[1]; i1++)
            for (int64_t i2 = 0; i2 < xs[2]; i2++) {
                double *a = acc + i0 * st[0] + i1 * st[1] + i2 * st[2];
                if (st[3]) {
                    for (int64_t i3 = 0; i3 < W; i3++) a[i3] += p[i3];
                } else {
                    double s = 0;
                    for (int64_t i3 = 0; i3 < W; i3++) s += p[i3];
                    a[0] += s;
                }
                p += W;
            }
    for (int64_t i = 0; i < ny; i++) y[i] = (real)acc[i];
}

MNAS_CLONES
void mnas__k_broadcast(const real *x, const int64_t xs[4], real *y, const int64_t ys[4])
{
    int64_t st[4];
    st[3] = 1;
    for (int d = 2; d >= 0; d--) st[d] = st[d + 1] * xs[d + 1];
    for (int d = 0; d < 4; d++)
        if (xs[d] == 1) st[d] = 0;
    real *q = y;
    for (int64_t i0 = 0; i0 < ys[0]; i0++)
        for (int64_t i1 = 0; i1 < ys[1]; i1++)
            for (int64_t i2 = 0; i2 < ys[2]; i2++) {
                const real *p = x + i0 * st[0] + i1 * st[1] + i2 * st[2];
                if (st[3]) {
                    memcpy(q, p, (size_t)ys[3] * sizeof(real));
                } else {
                    real v = p[0];
                    for (int64_t i3 = 0; i3 < ys[3]; i3++) q[i3] = v;
                }
                q += ys[3];
            }
}

#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
#define RF(fn) fn
#else
#define RF(fn) fn##f
#endif

void mnas__k_softmax(int64_t rows, int64_t cols, const real *x, real *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const real *xr = x + r * cols;
        real *yr = y + r * cols;
        real m = xr[0];
        for (int64_t c = 1; c < cols; c++) m = xr[c] > m ? xr[c] : m;
        double s = 0;
        for (int64_t c = 0; c < cols; c++) {
            yr[c] = RF(exp)(xr[c] - m);
            s += yr[c];
        }
        real inv = (real)(1.0 / s);
        for (int64_t c = 0; c < cols; c++) yr[c] *= inv;
    }
}

void mnas__k_log_softmax(int64_t rows, int64_t cols, const real *x, real *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const real *xr = x + r * cols;
        real *yr = y + r * cols;
        real m = xr[0];
        for (int64_t c = 1; c < cols; c++) m = xr[c] > m ? xr[c] : m;
        double s = 0;
        for (int64_t c = 0; c < cols; c++) s += exp((double)(xr[c] - m));
        /* (x - m) - log s, not x - (m + log s): the shifted form is exact
         * for the largest entry, so a log-probability near 0 (log s small
         * next to m) is kept instead of being rounded away with m. */
        real ls = (real)log(s);
        for (int64_t c = 0; c < cols; c++) yr[c] = (xr[c] - m) - ls;
    }
}

void mnas__k_transpose(int64_t batch, int64_t rows, int64_t cols, const real *x, real *y)
{
    for (int64_t b = 0; b < batch; b++) {
        const real *xb = x + b * rows * cols;
        real *yb = y + b * rows * cols;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) yb[j * rows + i] = xb[i * cols + j];
    }
}

void mnas__k_copy_axis(int64_t outer, int64_t inner, const real *src, int64_t src_ext,
                       int64_t src_off, real *dst, int64_t dst_ext, int64_t dst_off, int64_t len)
{
    size_t bytes = (size_t)(len * inner) * sizeof(real);
    for (int64_t o = 0; o < outer; o++)
        memcpy(dst + (o * dst_ext + dst_off) * inner, src + (o * src_ext + src_off) * inner, bytes);
}
