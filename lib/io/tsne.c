/* t-SNE (van der Maaten & Hinton, 2008), exact O(n²) form: a 2-D map of
 * task embeddings for the paper's Figure 6. Serial and in a fixed order, so
 * a seed gives the same map on every machine with the same libm. */
#include <math.h>
#include <string.h>

#include "core/core_internal.h"
#include <mnas/io.h>

#define TSNE_MAX_POINTS 8192 /* the O(n²) matrices: 2 x 512 MiB of doubles */
#define EXAGGERATION 12.0
#define EXAGGERATED_ITERS 250
#define MOMENTUM_SWITCH 250

/* Row i of the conditional affinities P(j|i) = exp(-beta d_ij) / sum, with
 * beta found by bisection so that the row's entropy is log(perplexity). */
static void conditional_row(const double *d, size_t n, size_t i, double log_perp, double *p)
{
    double beta = 1.0, lo = 0.0, hi = INFINITY;
    /* Subtracting the smallest distance keeps exp() away from underflow
     * for points far from everything; it cancels in the normalisation. */
    double dmin = INFINITY;
    for (size_t j = 0; j < n; j++)
        if (j != i && d[j] < dmin) dmin = d[j];
    for (int it = 0; it < 200; it++) {
        double sum = 0.0, dot = 0.0;
        for (size_t j = 0; j < n; j++) {
            p[j] = j == i ? 0.0 : exp(-beta * (d[j] - dmin));
            sum += p[j];
            dot += p[j] * (d[j] - dmin);
        }
        /* H = log(sum) + beta <d> (natural log) */
        double h = log(sum) + beta * dot / sum;
        for (size_t j = 0; j < n; j++) p[j] /= sum;
        double diff = h - log_perp;
        if (fabs(diff) < 1e-10) break;
        if (diff > 0) { /* too flat: sharpen */
            lo = beta;
            beta = isinf(hi) ? beta * 2.0 : 0.5 * (beta + hi);
        } else {
            hi = beta;
            beta = 0.5 * (beta + lo);
        }
    }
}

mnas_status mnas_tsne(mnas_ctx *ctx, const double *x, size_t n, size_t dim, double perplexity, int iterations,
                      uint64_t seed, double *y)
{
    const char *fn = "mnas_tsne";
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    if (!x || !y) return mnas__error(ctx, MNAS_E_INVALID, "%s: x or y is NULL", fn);
    if (n < 4 || n > TSNE_MAX_POINTS)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: %zu points (4..%d)", fn, n, TSNE_MAX_POINTS);
    if (dim < 1 || dim > 65536) return mnas__error(ctx, MNAS_E_INVALID, "%s: dimension %zu (1..65536)", fn, dim);
    if (!(perplexity >= 1.0) || !(perplexity <= (double)(n - 1) / 3.0))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: perplexity %g (1..(n - 1) / 3 = %g)", fn, perplexity,
                           (double)(n - 1) / 3.0);
    if (iterations < 1 || iterations > 100000)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: iterations %d (1..100000)", fn, iterations);
    for (size_t k = 0; k < n * dim; k++)
        if (!isfinite(x[k]))
            return mnas__error(ctx, MNAS_E_NUMERIC, "%s: x[%zu][%zu] is not finite", fn, k / dim, k % dim);

    double *P = mnas__calloc(ctx, n * n, sizeof(double));
    double *Q = mnas__calloc(ctx, n * n, sizeof(double)); /* distances first, then the kernel 1/(1+|yi-yj|^2) */
    double *state = mnas__calloc(ctx, 6 * n, sizeof(double));
    mnas_rng *r = mnas_rng_create(ctx, seed, 0x75e);
    mnas_status st = MNAS_OK;
    if (!P || !Q || !state || !r) {
        st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate for %zu points", fn, n);
        goto done;
    }
    double *Y = y, *grad = state, *vel = state + 2 * n, *gain = state + 4 * n;

    /* Input affinities: squared distances, scaled so that the bisection
     * starts near the right beta whatever the data's units. */
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double s = 0.0;
            for (size_t k = 0; k < dim; k++) {
                double t = x[i * dim + k] - x[j * dim + k];
                s += t * t;
            }
            Q[i * n + j] = Q[j * n + i] = s;
            mean += s;
        }
    mean /= 0.5 * (double)n * (double)(n - 1);
    if (!(mean > 0)) mean = 1.0; /* all points equal: any map is right */
    for (size_t k = 0; k < n * n; k++) Q[k] /= mean;
    double log_perp = log(perplexity);
    for (size_t i = 0; i < n; i++) conditional_row(Q + i * n, n, i, log_perp, P + i * n);
    /* Symmetrise: p_ij = (p_j|i + p_i|j) / 2n, floored against log(0). */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double v = (P[i * n + j] + P[j * n + i]) / (2.0 * (double)n);
            if (v < 1e-12) v = 1e-12;
            P[i * n + j] = P[j * n + i] = v;
        }

    for (size_t k = 0; k < 2 * n; k++) {
        Y[k] = 1e-4 * mnas_rng_normal(r);
        vel[k] = 0.0;
        gain[k] = 1.0;
    }
    const double lr = (double)n / EXAGGERATION > 50.0 ? (double)n / EXAGGERATION : 50.0;
    for (int it = 0; it < iterations; it++) {
        double exag = it < EXAGGERATED_ITERS ? EXAGGERATION : 1.0;
        double momentum = it < MOMENTUM_SWITCH ? 0.5 : 0.8;
        double qsum = 0.0;
        for (size_t i = 0; i < n; i++) {
            Q[i * n + i] = 0.0;
            for (size_t j = i + 1; j < n; j++) {
                double dx = Y[2 * i] - Y[2 * j], dy = Y[2 * i + 1] - Y[2 * j + 1];
                double k = 1.0 / (1.0 + dx * dx + dy * dy);
                Q[i * n + j] = Q[j * n + i] = k;
                qsum += 2.0 * k;
            }
        }
        /* dC/dy_i = 4 sum_j (p_ij - q_ij) k_ij (y_i - y_j), q_ij = k_ij / qsum */
        for (size_t i = 0; i < n; i++) {
            double gx = 0.0, gy = 0.0;
            for (size_t j = 0; j < n; j++) {
                if (j == i) continue;
                double k = Q[i * n + j];
                double m = (exag * P[i * n + j] - k / qsum) * k;
                gx += m * (Y[2 * i] - Y[2 * j]);
                gy += m * (Y[2 * i + 1] - Y[2 * j + 1]);
            }
            grad[2 * i] = 4.0 * gx;
            grad[2 * i + 1] = 4.0 * gy;
        }
        /* Per-coordinate gains (Jacobs' delta-bar-delta), as the original. */
        for (size_t k = 0; k < 2 * n; k++) {
            gain[k] = (grad[k] > 0) != (vel[k] > 0) ? gain[k] + 0.2 : gain[k] * 0.8;
            if (gain[k] < 0.01) gain[k] = 0.01;
            vel[k] = momentum * vel[k] - lr * gain[k] * grad[k];
            Y[k] += vel[k];
        }
        /* Keep the map centred. */
        double cx = 0.0, cy = 0.0;
        for (size_t i = 0; i < n; i++) {
            cx += Y[2 * i];
            cy += Y[2 * i + 1];
        }
        cx /= (double)n;
        cy /= (double)n;
        for (size_t i = 0; i < n; i++) {
            Y[2 * i] -= cx;
            Y[2 * i + 1] -= cy;
        }
    }
    for (size_t k = 0; k < 2 * n; k++)
        if (!isfinite(Y[k])) {
            st = mnas__error(ctx, MNAS_E_NUMERIC, "%s: the map diverged (point %zu)", fn, k / 2);
            memset(Y, 0, 2 * n * sizeof(double));
            break;
        }
done:
    mnas_rng_free(r);
    mnas__free(ctx, state);
    mnas__free(ctx, Q);
    mnas__free(ctx, P);
    return st;
}
