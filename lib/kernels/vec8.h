/* Eight reals as one vector (GNU vector extension): one AVX register in
 * float, or two of them (or SSE halves in the baseline clones). Lane-wise
 * operations are the same IEEE operations as the scalar ones, so loops
 * written with these keep the bits of their scalar versions. Internal to
 * lib/kernels. */
#ifndef MNAS_KERNELS_VEC8_H
#define MNAS_KERNELS_VEC8_H

#include <string.h>

#include "kernels/kernels.h"

#define INL static inline __attribute__((always_inline))

/* the helpers are always inlined: no vector crosses a real call, so the
 * warning that such a call's ABI depends on the ISA does not apply */
#if defined(__clang__)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef real v8r __attribute__((vector_size(8 * sizeof(real))));
typedef __typeof__(*(v8r *)0 > 0) v8i; /* a comparison's result: lanes of all ones or zeros */

INL v8r ld8(const real *p)
{
    v8r t;
    memcpy(&t, p, sizeof t);
    return t;
}

INL void st8(real *p, v8r v) { memcpy(p, &v, sizeof v); }

INL v8r bits_and(v8r v, v8i m)
{
    v8i b;
    memcpy(&b, &v, sizeof b);
    b &= m;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* a where m is set, b elsewhere. */
INL v8r blend8(v8i m, v8r a, v8r b)
{
    v8i x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    x = (x & m) | (y & ~m);
    memcpy(&a, &x, sizeof a);
    return a;
}

/* g * step(y) lane-wise, step as K_STEP: 1 where y > 0, y where y is
 * NaN, else 0 (so the same product as the scalar mask1's). */
INL v8r mask8(v8r g, v8r y)
{
    const v8r one = { 1, 1, 1, 1, 1, 1, 1, 1 };
    v8r f = bits_and(one, y > 0), n = bits_and(y, y != y);
    v8i fb, nb;
    memcpy(&fb, &f, sizeof fb);
    memcpy(&nb, &n, sizeof nb);
    fb |= nb;
    memcpy(&f, &fb, sizeof f);
    return g * f;
}

INL real mask1(real g, real y) { return g * (y > 0 ? 1 : (y != y ? y : 0)); }

#endif
