/* Summary statistics for reporting results: the mean and the half-width of
 * its 95 % confidence interval (the paper's "± CI" columns). */
#include <math.h>

#include "data/data_internal.h"

/* s + c += x, Neumaier's variant of Kahan summation: c collects the low
 * bits that s cannot hold. */
static void add_compensated(double *s, double *c, double x)
{
    double t = *s + x;
    if (fabs(*s) >= fabs(x)) *c += (*s - t) + x;
    else *c += (x - t) + *s;
    *s = t;
}

mnas_status mnas_mean_ci95(const double *values, size_t n, double *mean, double *ci95)
{
    if (!values || !mean || !ci95 || n == 0) return MNAS_E_INVALID;

    double big = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(values[i])) {
            *mean = NAN;
            *ci95 = NAN;
            return MNAS_E_NUMERIC;
        }
        if (fabs(values[i]) > big) big = fabs(values[i]);
    }
    if (big == 0.0) {
        *mean = 0.0;
        *ci95 = 0.0;
        return MNAS_OK;
    }
    /* Scale by a power of two (exact) so that |v| <= 1: neither the sum nor
     * the squares can overflow, whatever finite values come in. */
    int e;
    (void)frexp(big, &e);

    /* Two passes: the mean, then the sum of squared deviations with the
     * correction of Chan, Golub and LeVeque (the deviations' own sum), which
     * keeps its accuracy when the spread is small next to the mean. Every sum
     * is compensated (Neumaier), so the error does not grow with n. */
    double sum = 0.0, sum_c = 0.0;
    for (size_t i = 0; i < n; i++) add_compensated(&sum, &sum_c, ldexp(values[i], -e));
    const double m0 = (sum + sum_c) / (double)n;
    double ss = 0.0, ss_c = 0.0, dev = 0.0, dev_c = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = ldexp(values[i], -e) - m0;
        add_compensated(&ss, &ss_c, d * d);
        add_compensated(&dev, &dev_c, d);
    }
    ss += ss_c;
    dev += dev_c;
    const double m = m0 + dev / (double)n; /* the rounding left in m0, put back */
    double ci = 0.0;
    if (n > 1) {
        double var = (ss - dev * dev / (double)n) / (double)(n - 1);
        if (var < 0.0) var = 0.0;
        ci = 1.96 * sqrt(var) / sqrt((double)n);
    }
    *mean = ldexp(m, e);
    *ci95 = ldexp(ci, e);
    return MNAS_OK;
}
