/* Elementwise kernels: broadcasting binary ops and unary maps. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/vec8.h"

/* libm's function for the working precision: RF(exp) is exp or expf. */
#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
#define RF(fn) fn
#else
#define RF(fn) fn##f
#endif

static void strides_of(const int64_t s[4], int64_t st[4])
{
    st[3] = 1;
    for (int d = 2; d >= 0; d--) st[d] = st[d + 1] * s[d + 1];
}

#define BIN_LOOP(EXPR)                                                                            \
    do {                                                                                          \
        if (flat) {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                     \
                real x = a[i], y = b[i];                                                          \
                out[i] = (EXPR);                                                                  \
            }                                                                                     \
        } else if (bscalar) {                                                                     \
            real y = b[0];                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                     \
                real x = a[i];                                                                    \
                out[i] = (EXPR);                                                                  \
            }                                                                                     \
        } else if (ascalar) {                                                                     \
            real x = a[0];                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                     \
                real y = b[i];                                                                    \
                out[i] = (EXPR);                                                                  \
            }                                                                                     \
        } else {                                                                                  \
            int64_t o = 0;                                                                        \
            for (int64_t i0 = 0; i0 < os[0]; i0++)                                                \
                for (int64_t i1 = 0; i1 < os[1]; i1++)                                            \
                    for (int64_t i2 = 0; i2 < os[2]; i2++) {                                      \
                        const real *pa = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];                \
                        const real *pb = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];                \
                        real *po = out + o;                                                       \
                        if (sa[3] && sb[3]) {                                                     \
                            for (int64_t i3 = 0; i3 < os[3]; i3++) {                              \
                                real x = pa[i3], y = pb[i3];                                      \
                                po[i3] = (EXPR);                                                  \
                            }                                                                     \
                        } else if (sa[3]) {                                                       \
                            real y = pb[0];                                                       \
                            for (int64_t i3 = 0; i3 < os[3]; i3++) {                              \
                                real x = pa[i3];                                                  \
                                po[i3] = (EXPR);                                                  \
                            }                                                                     \
                        } else if (sb[3]) {                                                       \
                            real x = pa[0];                                                       \
                            for (int64_t i3 = 0; i3 < os[3]; i3++) {                              \
                                real y = pb[i3];                                                  \
                                po[i3] = (EXPR);                                                  \
                            }                                                                     \
                        } else {                                                                  \
                            real x = pa[0], y = pb[0];                                            \
                            for (int64_t i3 = 0; i3 < os[3]; i3++) po[i3] = (EXPR);               \
                        }                                                                         \
                        o += os[3];                                                               \
                    }                                                                             \
        }                                                                                         \
    } while (0)

MNAS_CLONES
void mnas__k_binary(mnas_kbinop op, real *out, const int64_t os[4], const real *a, const int64_t as[4],
                    const real *b, const int64_t bs[4])
{
    int64_t n = os[0] * os[1] * os[2] * os[3];
    int flat = 1, ascalar = 1, bscalar = 1;
    for (int d = 0; d < 4; d++) {
        if (as[d] != os[d] || bs[d] != os[d]) flat = 0;
        if (as[d] != 1) ascalar = 0;
        if (bs[d] != 1) bscalar = 0;
    }
    if (ascalar && bscalar) flat = 1;
    /* Broadcast axes get stride 0. */
    int64_t sa[4], sb[4];
    strides_of(as, sa);
    strides_of(bs, sb);
    for (int d = 0; d < 4; d++) {
        if (as[d] == 1) sa[d] = 0;
        if (bs[d] == 1) sb[d] = 0;
    }
    switch (op) {
    case K_ADD: BIN_LOOP(x + y); break;
    case K_SUB: BIN_LOOP(x - y); break;
    case K_MUL: BIN_LOOP(x * y); break;
    case K_DIV: BIN_LOOP(x / y); break;
    }
}

MNAS_CLONES
void mnas__k_binary_flat(mnas_kbinop op, int64_t n, real *restrict out, const real *restrict a,
                         const real *restrict b)
{
    switch (op) {
    case K_ADD: for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i]; break;
    case K_SUB: for (int64_t i = 0; i < n; i++) out[i] = a[i] - b[i]; break;
    case K_MUL: for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i]; break;
    case K_DIV: for (int64_t i = 0; i < n; i++) out[i] = a[i] / b[i]; break;
    }
}

MNAS_CLONES
void mnas__k_relu_grad(int64_t n, const real *g, const real *x, real *out)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) st8(out + i, mask8(ld8(g + i), ld8(x + i)));
    for (; i < n; i++) out[i] = mask1(g[i], x[i]);
}

MNAS_CLONES
void mnas__k_adam(int64_t n, real *restrict w, const real *restrict g, real *restrict m, real *restrict v, double c,
                  double b1, double b2, double step, double c2, double eps)
{
    /* In the working precision, so that the loop vectorises (the square
     * root included: the kernels are built with -fno-math-errno); v >= 0. */
    const real rc = (real)c, rb1 = (real)b1, rb1c = (real)(1 - b1), rb2 = (real)b2, rb2c = (real)(1 - b2);
    const real rstep = (real)step, rinv_c2 = (real)(1 / c2), reps = (real)eps;
    for (int64_t j = 0; j < n; j++) {
        real gj = rc * g[j];
        real mj = rb1 * m[j] + rb1c * gj;
        real vj = rb2 * v[j] + rb2c * (gj * gj);
        m[j] = mj;
        v[j] = vj;
        w[j] = w[j] - rstep * mj / (RF(sqrt)(vj * rinv_c2) + reps);
    }
}

MNAS_CLONES
void mnas__k_add_scaled(int64_t n, real alpha, const real *restrict x, real *restrict y)
{
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

MNAS_CLONES
void mnas__k_add_into(int64_t n, const real *restrict a, real *restrict y)
{
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + y[i];
}

MNAS_CLONES
void mnas__k_axpy(int64_t n, real alpha, const real *restrict x, const real *restrict y0, real *restrict y)
{
    for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i] + y0[i];
}

MNAS_CLONES
void mnas__k_modulate_backward(int64_t n, const real *restrict g, const real *restrict w, const real *restrict tau,
                               real *restrict du, real *restrict dw)
{
    for (int64_t i = 0; i < n; i++) du[i] = g[i] * w[i] * (tau[i] * (1 - tau[i]));
    if (dw)
        for (int64_t i = 0; i < n; i++) dw[i] = g[i] * tau[i];
}

#if !(defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE)
/* The logistic function on 8 floats at once (GNU vectors: one AVX register,
 * two SSE ones), because libm's expf is a call per element and the
 * modulator applies a sigmoid to every meta-weight of every task.
 * e = exp(-|v|): -|v| = k ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor
 * polynomial to degree 7 (truncation below 6e-9 relative), times 2^k built
 * in the exponent bits; 0 below -87 (where expf is subnormal). Then
 * 1 / (1 + e) for v >= 0, e / (1 + e) otherwise; NaN stays NaN. Lanes are
 * independent, so a value's result does not depend on its neighbours.
 * Measured against double-precision exp over [-100, 100]: within 2e-7
 * relative (about 2 ulp). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t s8i __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) void sigmoid8(const float *x, float *y, size_t n)
{
    v8f v = { 0 };
    memcpy(&v, x, n * sizeof(float));
    const v8f log2e = { 1.44269504f, 1.44269504f, 1.44269504f, 1.44269504f,
                        1.44269504f, 1.44269504f, 1.44269504f, 1.44269504f };
    v8f t = (v8f)((s8i)v | (s8i){ INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN,
                                  INT32_MIN }); /* -|v| */
    s8i tiny = t < -87.0f;
    v8f tc = (v8f)((tiny & (s8i)(v8f){ -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f, -87.0f }) |
                   (~tiny & (s8i)t));
    s8i k = __builtin_convertvector(tc * log2e - 0.5f, s8i); /* rounds: tc * log2e <= 0 */
    v8f kf = __builtin_convertvector(k, v8f);
    v8f r = (tc - kf * 0.693145752f) - kf * 1.42860677e-6f;
    v8f p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    v8f e = p * (v8f)((k + 127) << 23);
    e = (v8f)(~tiny & (s8i)e);
    v8f a = 1.0f / (1.0f + e), b = e * a;
    s8i pos = v >= 0.0f, nan = v != v;
    s8i s = (pos & (s8i)a) | (~pos & (s8i)b);
    v8f out = (v8f)((nan & (s8i)v) | (~nan & s));
    memcpy(y, &out, n * sizeof(float));
}

/* Inlined into each clone of mnas__k_unary, so it is compiled for AVX2 there. */
static inline __attribute__((always_inline)) void sigmoid_float(int64_t n, const float *x, float *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) sigmoid8(x + i, y + i, 8);
    if (i < n) sigmoid8(x + i, y + i, (size_t)(n - i));
}
#endif

MNAS_CLONES
void mnas__k_unary(mnas_kunop op, int64_t n, const real *x, real *y, double p)
{
    real rp = (real)p;
    switch (op) {
    case K_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case K_SCALE: for (int64_t i = 0; i < n; i++) y[i] = rp * x[i]; break;
    case K_ADDC: for (int64_t i = 0; i < n; i++) y[i] = x[i] + rp; break;
    /* NaN propagates (x != x): relu(NaN) = NaN and its derivative is NaN. */
    case K_RELU: for (int64_t i = 0; i < n; i++) y[i] = (x[i] > 0 || x[i] != x[i]) ? x[i] : 0; break;
    case K_STEP: for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? 1 : (x[i] != x[i] ? x[i] : 0); break;
    case K_SIGMOID:
#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
        /* Split by sign so exp never overflows. */
        for (int64_t i = 0; i < n; i++) {
            real v = x[i];
            if (v >= 0) {
                real e = RF(exp)(-v);
                y[i] = 1 / (1 + e);
            } else {
                real e = RF(exp)(v);
                y[i] = e / (1 + e);
            }
        }
#else
        sigmoid_float(n, x, y);
#endif
        break;
    case K_TANH: for (int64_t i = 0; i < n; i++) y[i] = RF(tanh)(x[i]); break;
    case K_EXP: for (int64_t i = 0; i < n; i++) y[i] = RF(exp)(x[i]); break;
    case K_LOG: for (int64_t i = 0; i < n; i++) y[i] = RF(log)(x[i]); break;
    case K_SQRT: for (int64_t i = 0; i < n; i++) y[i] = RF(sqrt)(x[i]); break;
    case K_SQUARE: for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case K_POW:
        if (p == 1.0) {
            for (int64_t i = 0; i < n; i++) y[i] = x[i];
        } else if (p == 2.0) {
            for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
        } else if (p == 0.0) {
            for (int64_t i = 0; i < n; i++) y[i] = 1;
        } else if (p == -1.0) {
            for (int64_t i = 0; i < n; i++) y[i] = 1 / x[i];
        } else if (p == 0.5) {
            for (int64_t i = 0; i < n; i++) y[i] = RF(sqrt)(x[i]);
        } else if (p == -0.5) {
            for (int64_t i = 0; i < n; i++) y[i] = 1 / RF(sqrt)(x[i]);
        } else if (p == -1.5) {
            for (int64_t i = 0; i < n; i++) y[i] = 1 / (x[i] * RF(sqrt)(x[i]));
        } else {
            for (int64_t i = 0; i < n; i++) y[i] = RF(pow)(x[i], rp);
        }
        break;
    }
}
