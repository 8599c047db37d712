/* Convolution and pooling in the float32 library, as users link it:
 * forward values and first-order gradients against naive direct loops
 * written here, unfold/fold adjointness, the average pool's divisor at the
 * borders, and bad input of every kind (status and message). */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

static mnas_ctx *ctx;
static mnas_tape *tp;

static void setup(void)
{
    mnas_ctx_options o = MNAS_CTX_OPTIONS_INIT;
    o.seed = 4242;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &o), MNAS_OK);
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
}

static void teardown(void)
{
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}

static mnas_tensor *randn(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = { a, b, c, d };
    mnas_tensor *t = mnas_tensor_randn(ctx, ndim, s, 0, 1);
    ck_assert_ptr_nonnull(t);
    return t;
}

static const mnas_real *D(mnas_tensor *t)
{
    const mnas_real *d = mnas_tensor_cdata(t);
    ck_assert_ptr_nonnull(d);
    return d;
}

static void assert_shape(mnas_tensor *t, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mnas_tensor_ndim(t), ndim);
    int64_t s[4], want[4] = { a, b, c, d };
    ck_assert_int_eq(mnas_tensor_shape(t, s), MNAS_OK);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(s[i], want[i]);
}

/* |got - want| <= tol * (1 + |want|) for every element. (One assertion
 * for the first element that fails: Check logs every assertion it makes,
 * which costs more than the comparisons on the larger images.) */
static void assert_close(const char *what, const mnas_real *got, const double *want, int64_t n, double tol)
{
    int64_t i = 0;
    while (i < n && fabs((double)got[i] - want[i]) <= tol * (1 + fabs(want[i]))) i++;
    if (i < n)
        ck_assert_msg(0, "%s[%lld]: %g vs %g", what, (long long)i, (double)got[i], want[i]);
}

/* ---- naive reference loops (double) --------------------------------------- */

typedef struct {
    int64_t N, C, H, W, O, kh, kw;
    int s, p, d, groups, bias;
} conv_cfg;

static int64_t out_extent(int64_t n, int64_t k, int s, int p, int d) { return (n + 2 * p - d * (k - 1) - 1) / s + 1; }

/* x at (n, c, h, w) or 0 in the padding. */
static double at(const mnas_real *x, const conv_cfg *c, int64_t n, int64_t ch, int64_t h, int64_t w)
{
    if (h < 0 || h >= c->H || w < 0 || w >= c->W) return 0;
    return x[((n * c->C + ch) * c->H + h) * c->W + w];
}

static void ref_conv(const conv_cfg *c, const mnas_real *x, const mnas_real *w, const mnas_real *b, double *y)
{
    int64_t OH = out_extent(c->H, c->kh, c->s, c->p, c->d), OW = out_extent(c->W, c->kw, c->s, c->p, c->d);
    int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = b ? b[o] : 0;
                    int64_t grp = o / Og;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++)
                                s += w[((o * Cg + ci) * c->kh + i) * c->kw + j] *
                                     at(x, c, n, grp * Cg + ci, oh * c->s - c->p + i * c->d,
                                        ow * c->s - c->p + j * c->d);
                    y[((n * c->O + o) * OH + oh) * OW + ow] = s;
                }
}

/* dx and dw of <r, conv(x, w)>, by the same loops. */
static void ref_conv_grads(const conv_cfg *c, const mnas_real *x, const mnas_real *w, const mnas_real *r, double *dx,
                           double *dw)
{
    int64_t OH = out_extent(c->H, c->kh, c->s, c->p, c->d), OW = out_extent(c->W, c->kw, c->s, c->p, c->d);
    int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
    memset(dx, 0, (size_t)(c->N * c->C * c->H * c->W) * sizeof *dx);
    memset(dw, 0, (size_t)(c->O * Cg * c->kh * c->kw) * sizeof *dw);
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double g = r[((n * c->O + o) * OH + oh) * OW + ow];
                    int64_t grp = o / Og;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++) {
                                int64_t h = oh * c->s - c->p + i * c->d, ww = ow * c->s - c->p + j * c->d;
                                int64_t widx = ((o * Cg + ci) * c->kh + i) * c->kw + j;
                                if (h < 0 || h >= c->H || ww < 0 || ww >= c->W) continue;
                                int64_t xidx = ((n * c->C + grp * Cg + ci) * c->H + h) * c->W + ww;
                                dw[widx] += g * x[xidx];
                                dx[xidx] += g * w[widx];
                            }
                }
}

static const conv_cfg conv_cfgs[] = {
    /* N  C  H  W  O kh kw  s  p  d  g  bias */
    { 2, 3, 5, 5, 4, 3, 3, 1, 0, 1, 1, 1 },
    { 2, 3, 6, 5, 4, 3, 3, 2, 1, 1, 1, 1 },
    { 1, 2, 4, 5, 3, 3, 3, 1, 2, 1, 1, 0 },
    { 2, 2, 7, 6, 3, 3, 3, 1, 2, 2, 1, 1 },
    { 2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 2, 1 },
    { 2, 4, 9, 8, 4, 3, 2, 2, 1, 1, 2, 0 },
    { 2, 3, 5, 6, 3, 3, 3, 1, 1, 1, 3, 1 },  /* depthwise */
    { 2, 3, 7, 7, 3, 3, 3, 2, 2, 2, 3, 0 },  /* depthwise, stride 2, dilation 2 */
    { 1, 5, 9, 9, 5, 5, 5, 1, 2, 1, 5, 1 },  /* depthwise 5x5 */
    { 1, 4, 8, 9, 4, 5, 5, 1, 4, 2, 4, 0 },  /* depthwise 5x5 dilation 2 (dil_conv_5x5) */
    { 2, 4, 3, 3, 5, 1, 1, 1, 0, 1, 1, 1 },  /* 1x1 */
    { 2, 4, 3, 2, 4, 1, 1, 1, 0, 1, 2, 0 },  /* 1x1 grouped */
    { 1, 3, 5, 5, 2, 1, 1, 2, 0, 1, 1, 1 },  /* 1x1 stride 2 */
    { 2, 2, 4, 6, 3, 2, 3, 1, 1, 1, 1, 1 },  /* non-square kernel and image */
    { 1, 2, 4, 4, 4, 3, 3, 1, 1, 1, 2, 1 },  /* groups == C, O == 2C */
    { 3, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, 1 }, /* big enough for BLIS */
    { 2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 16, 0 }, /* depthwise, more channels */
    { 1, 1, 1, 1, 2, 1, 1, 1, 0, 1, 1, 1 },  /* 1x1 image */
    { 1, 2, 3, 3, 2, 3, 3, 1, 0, 1, 1, 1 },  /* kernel == image: 1x1 output */
    { 1, 2, 5, 5, 2, 3, 3, 1, 38, 40, 2, 1 }, /* depthwise, stride 1, padded plane too big: direct loops */
    { 2, 3, 6, 7, 3, 3, 3, 1, 0, 1, 3, 1 },  /* depthwise, stride 1, no padding */
    { 1, 2, 6, 5, 2, 2, 3, 1, 1, 2, 2, 1 },  /* depthwise 2x3, dilation 2, stride 1 */
    /* groups 1, stride 1: the direct (no im2col) kernels, unless padding passes d (k - 1) */
    { 1, 1, 7, 9, 1, 3, 3, 1, 1, 1, 1, 1 },  /* one channel in and out */
    { 2, 32, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1 },   /* the conv net's 7 x 7 layer: under 8 x 8, direct */
    /* 3 x 3, stride 1, pad 1, 8 x 8 or more, 8 or more channels: Winograd */
    { 2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1 }, /* the conv net's 14 x 14 layer */
    { 2, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1 },     /* the smallest image and channel count */
    { 3, 9, 9, 11, 12, 3, 3, 1, 1, 1, 1, 0 },   /* odd sizes (the last tile half outside), C != O */
    { 9, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1 }, /* chunks of whole images, the last one short */
    { 2, 8, 64, 66, 8, 3, 3, 1, 1, 1, 1, 1 },   /* chunks that split an image */
    { 1, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1 },   /* filter planes larger than the tile buffers */
    { 1, 3, 9, 8, 2, 5, 3, 1, 2, 2, 1, 0 },  /* 5x3 kernel, dilation 2 */
    { 1, 40, 5, 4, 3, 3, 3, 1, 1, 1, 1, 1 }, /* many channels, tiny image */
    { 1, 3, 9, 7, 5, 3, 3, 1, 3, 1, 1, 1 },  /* padding past the kernel: im2col */
    /* depthwise, stride 2: the phase planes (odd and even sizes, wider than a vector, dilation 2) */
    { 2, 3, 8, 8, 3, 3, 3, 2, 1, 1, 3, 1 },    /* sep_conv_3x3 in a reduction cell */
    { 1, 4, 21, 19, 4, 3, 3, 2, 1, 1, 4, 0 },  /* odd sizes */
    { 2, 2, 28, 28, 2, 5, 5, 2, 2, 1, 2, 1 },  /* sep_conv_5x5 */
    { 1, 3, 11, 14, 3, 3, 3, 2, 2, 2, 3, 0 },  /* dil_conv_3x3: phase (0, 0) alone */
    { 2, 2, 21, 21, 2, 5, 5, 2, 4, 2, 2, 1 },  /* dil_conv_5x5 */
    { 1, 2, 40, 37, 2, 3, 2, 2, 0, 1, 2, 1 },  /* no padding, non-square kernel */
    { 1, 2, 5, 6, 2, 3, 3, 2, 3, 3, 2, 1 },   /* padding past the kernel's reach */
    { 1, 2, 2, 1, 2, 3, 3, 2, 1, 1, 2, 0 },   /* tiny image */
};
#define NCONV ((int)(sizeof conv_cfgs / sizeof conv_cfgs[0]))

START_TEST(conv2d_matches_direct_loops)
{
    const conv_cfg *c = &conv_cfgs[_i];
    mnas_tensor *x = randn(4, c->N, c->C, c->H, c->W), *w = randn(4, c->O, c->C / c->groups, c->kh, c->kw);
    mnas_tensor *b = c->bias ? randn(1, c->O, 1, 1, 1) : NULL;
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor_set_requires_grad(w, 1);
    if (b) mnas_tensor_set_requires_grad(b, 1);
    mnas_tensor *y = mnas_conv2d(tp, x, w, b, c->s, c->p, c->d, c->groups);
    ck_assert_msg(y != NULL, "config %d: %s", _i, mnas_tape_last_error(tp));
    int64_t OH = out_extent(c->H, c->kh, c->s, c->p, c->d), OW = out_extent(c->W, c->kw, c->s, c->p, c->d);
    assert_shape(y, 4, c->N, c->O, OH, OW);
    int64_t ny = mnas_tensor_size(y), nx = mnas_tensor_size(x), nw = mnas_tensor_size(w);
    double *want = malloc((size_t)ny * sizeof *want), *dx = malloc((size_t)nx * sizeof *dx),
           *dw = malloc((size_t)nw * sizeof *dw);
    ck_assert(want && dx && dw);
    ref_conv(c, D(x), D(w), b ? D(b) : NULL, want);
    /* float rounding grows like the square root of the longest sum (taps
     * for y and dx, batch positions for dw) */
    double len = (double)(c->C / c->groups * c->kh * c->kw);
    if ((double)(c->N * OH * OW) > len) len = (double)(c->N * OH * OW);
    double tol = 1e-5 * (len > 64 ? sqrt(len / 64) : 1);
    assert_close("y", D(y), want, ny, tol);

    /* First-order gradients of <r, y> through the float kernels. */
    int64_t ys[4];
    mnas_tensor_shape(y, ys);
    mnas_tensor *r = mnas_tensor_randn(ctx, 4, ys, 0, 1);
    mnas_tensor *loss = mnas_sum(tp, mnas_mul(tp, y, r));
    mnas_tensor *ins[3] = { x, w, b }, *gr[3];
    ck_assert_int_eq(mnas_grad(tp, loss, b ? 3 : 2, ins, gr, 0), MNAS_OK);
    ref_conv_grads(c, D(x), D(w), D(r), dx, dw);
    assert_close("dx", D(gr[0]), dx, nx, tol);
    assert_close("dw", D(gr[1]), dw, nw, tol);
    if (b) {
        const mnas_real *rd = D(r), *db = D(gr[2]);
        for (int64_t o = 0; o < c->O; o++) {
            double s = 0;
            for (int64_t n = 0; n < c->N; n++)
                for (int64_t l = 0; l < OH * OW; l++) s += rd[(n * c->O + o) * OH * OW + l];
            ck_assert_msg(fabs(db[o] - s) <= 1e-5 * (1 + fabs(s)), "db[%lld]", (long long)o);
        }
    }
    free(want);
    free(dx);
    free(dw);
    mnas_tensor_free(r);
    mnas_tensor_free(x);
    mnas_tensor_free(w);
    mnas_tensor_free(b);
}
END_TEST

/* unfold against its definition, and <fold(c), x> == <c, unfold(x)>. */
START_TEST(unfold_fold_adjoint)
{
    const conv_cfg *c = &conv_cfgs[_i];
    mnas_tensor *x = randn(4, c->N, c->C, c->H, c->W);
    mnas_tensor *u = mnas_unfold(tp, x, (int)c->kh, (int)c->kw, c->s, c->p, c->d);
    ck_assert_msg(u != NULL, "%s", mnas_tape_last_error(tp));
    int64_t OH = out_extent(c->H, c->kh, c->s, c->p, c->d), OW = out_extent(c->W, c->kw, c->s, c->p, c->d);
    int64_t R = c->C * c->kh * c->kw, L = OH * OW;
    assert_shape(u, 3, c->N, R, L, 1);
    const mnas_real *xd = D(x), *ud = D(u);
    int64_t bad = -1; /* the first wrong element (one assertion: see assert_close) */
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t i = 0; i < c->kh; i++)
                for (int64_t j = 0; j < c->kw; j++)
                    for (int64_t oh = 0; oh < OH; oh++)
                        for (int64_t ow = 0; ow < OW; ow++) {
                            double want = at(xd, c, n, ch, oh * c->s - c->p + i * c->d, ow * c->s - c->p + j * c->d);
                            int64_t row = (ch * c->kh + i) * c->kw + j, at_u = (n * R + row) * L + oh * OW + ow;
                            if (bad < 0 && ud[at_u] != (mnas_real)want) bad = at_u;
                        }
    ck_assert_msg(bad < 0, "unfold[%lld] is wrong", (long long)bad);
    mnas_tensor *cols = randn(3, c->N, R, L, 1);
    mnas_tensor *f = mnas_fold(tp, cols, c->C, c->H, c->W, (int)c->kh, (int)c->kw, c->s, c->p, c->d);
    ck_assert_msg(f != NULL, "%s", mnas_tape_last_error(tp));
    assert_shape(f, 4, c->N, c->C, c->H, c->W);
    double lhs = 0, rhs = 0, mag = 0;
    const mnas_real *fd = D(f), *cd = D(cols);
    for (int64_t k = 0; k < mnas_tensor_size(x); k++) {
        lhs += (double)fd[k] * xd[k];
        mag += fabs((double)fd[k] * xd[k]);
    }
    for (int64_t k = 0; k < mnas_tensor_size(cols); k++) rhs += (double)cd[k] * ud[k];
    ck_assert_msg(fabs(lhs - rhs) <= 1e-5 * (1 + mag), "<fold(c), x> = %g but <c, unfold(x)> = %g", lhs, rhs);
    mnas_tensor_free(x);
    mnas_tensor_free(cols);
}
END_TEST

/* ---- pooling --------------------------------------------------------- */

typedef struct {
    int64_t N, C, H, W;
    int k, s, p;
} pool_cfg;

static const pool_cfg pool_cfgs[] = {
    { 2, 2, 5, 5, 3, 1, 1 }, { 2, 2, 6, 5, 2, 2, 0 }, { 1, 3, 7, 6, 3, 2, 1 },
    { 1, 1, 4, 4, 2, 1, 1 }, { 2, 3, 8, 8, 3, 2, 1 }, { 1, 2, 1, 1, 1, 1, 0 },
    { 1, 1, 3, 7, 3, 3, 2 }, { 2, 2, 9, 9, 5, 2, 2 },
    /* 2 x 2 stride 2 (its own loop on AVX-512): 16-wide blocks and tails */
    { 1, 2, 9, 37, 2, 2, 0 }, { 2, 3, 28, 28, 2, 2, 0 }, { 1, 1, 3, 65, 2, 2, 0 },
};
#define NPOOL ((int)(sizeof pool_cfgs / sizeof pool_cfgs[0]))

START_TEST(pools_match_direct_loops)
{
    const pool_cfg *c = &pool_cfgs[_i];
    mnas_tensor *x = randn(4, c->N, c->C, c->H, c->W);
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor *mx = mnas_max_pool2d(tp, x, c->k, c->s, c->p);
    mnas_tensor *av = mnas_avg_pool2d(tp, x, c->k, c->s, c->p);
    ck_assert_msg(mx && av, "%s", mnas_tape_last_error(tp));
    int64_t OH = (c->H + 2 * c->p - c->k) / c->s + 1, OW = (c->W + 2 * c->p - c->k) / c->s + 1;
    assert_shape(mx, 4, c->N, c->C, OH, OW);
    assert_shape(av, 4, c->N, c->C, OH, OW);
    int64_t nx = mnas_tensor_size(x);
    double *dmax = calloc((size_t)nx, sizeof *dmax), *davg = calloc((size_t)nx, sizeof *davg);
    ck_assert(dmax && davg);
    int64_t ys[4] = { c->N, c->C, OH, OW };
    mnas_tensor *r = mnas_tensor_randn(ctx, 4, ys, 0, 1);
    const mnas_real *X = D(x), *Rr = D(r);
    for (int64_t nc = 0; nc < c->N * c->C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double best = -INFINITY, sum = 0;
                int64_t cnt = 0, arg = -1;
                for (int i = 0; i < c->k; i++)
                    for (int j = 0; j < c->k; j++) {
                        int64_t h = oh * c->s - c->p + i, w = ow * c->s - c->p + j;
                        if (h < 0 || h >= c->H || w < 0 || w >= c->W) continue;
                        int64_t k = (nc * c->H + h) * c->W + w;
                        if (X[k] > best) {
                            best = X[k];
                            arg = k;
                        }
                        sum += X[k];
                        cnt++;
                    }
                ck_assert(cnt > 0);
                int64_t o = (nc * OH + oh) * OW + ow;
                ck_assert(D(mx)[o] == (mnas_real)best);
                ck_assert_msg(fabs(D(av)[o] - sum / (double)cnt) <= 1e-5, "avg %g vs %g", (double)D(av)[o],
                              sum / (double)cnt);
                dmax[arg] += Rr[o];
                for (int i = 0; i < c->k; i++)
                    for (int j = 0; j < c->k; j++) {
                        int64_t h = oh * c->s - c->p + i, w = ow * c->s - c->p + j;
                        if (h >= 0 && h < c->H && w >= 0 && w < c->W)
                            davg[(nc * c->H + h) * c->W + w] += Rr[o] / (double)cnt;
                    }
            }
    mnas_tensor *g[1];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_mul(tp, mx, r)), 1, &x, g, 0), MNAS_OK);
    assert_close("max-pool dx", D(g[0]), dmax, nx, 1e-6);
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_mul(tp, av, r)), 1, &x, g, 0), MNAS_OK);
    assert_close("avg-pool dx", D(g[0]), davg, nx, 1e-5);
    free(dmax);
    free(davg);
    mnas_tensor_free(r);
    mnas_tensor_free(x);
}
END_TEST

START_TEST(avg_pool_excludes_padding)
{
    /* 1..9 in a 3x3 image, 3x3 windows, stride 1, padding 1: the corner
     * window holds 4 real cells, the edge window 6, the centre 9. */
    int64_t s[4] = { 1, 1, 3, 3 };
    mnas_real v[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 4, s, v);
    mnas_tensor *y = mnas_avg_pool2d(tp, x, 3, 1, 1);
    ck_assert_ptr_nonnull(y);
    ck_assert_float_eq_tol(D(y)[0], (1 + 2 + 4 + 5) / 4.0, 1e-6);
    ck_assert_float_eq_tol(D(y)[1], (1 + 2 + 3 + 4 + 5 + 6) / 6.0, 1e-6);
    ck_assert_float_eq_tol(D(y)[4], 5.0, 1e-6);
    ck_assert_float_eq_tol(D(y)[8], (5 + 6 + 8 + 9) / 4.0, 1e-6);
    /* A constant image stays constant (count_include_pad would shrink the borders). */
    int64_t s2[4] = { 2, 3, 5, 4 };
    mnas_tensor *ones = mnas_tensor_zeros(ctx, 4, s2);
    for (int64_t i = 0; i < mnas_tensor_size(ones); i++) mnas_tensor_data(ones)[i] = 2.5f;
    mnas_tensor *a = mnas_avg_pool2d(tp, ones, 3, 2, 1);
    ck_assert_ptr_nonnull(a);
    for (int64_t i = 0; i < mnas_tensor_size(a); i++) ck_assert_float_eq_tol(D(a)[i], 2.5, 1e-6);
    /* Max-pool: padding never wins, even over negative values. */
    for (int64_t i = 0; i < mnas_tensor_size(ones); i++) mnas_tensor_data(ones)[i] = -3.0f;
    mnas_tensor *m = mnas_max_pool2d(tp, ones, 3, 1, 1);
    ck_assert_ptr_nonnull(m);
    for (int64_t i = 0; i < mnas_tensor_size(m); i++) ck_assert_float_eq(D(m)[i], -3.0f);
    mnas_tensor_free(ones);
    mnas_tensor_free(x);
}
END_TEST

/* -inf everywhere still routes each gradient to one cell of its window (the
 * first), and a NaN propagates to every window that holds it. */
START_TEST(max_pool_special_values)
{
    int64_t s[4] = { 1, 1, 3, 3 };
    mnas_real v[9];
    for (int i = 0; i < 9; i++) v[i] = -INFINITY;
    mnas_tensor *x = mnas_tensor_from_data(ctx, 4, s, v);
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor *y = mnas_max_pool2d(tp, x, 2, 1, 0);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 4; i++) ck_assert(isinf(D(y)[i]) && D(y)[i] < 0);
    mnas_tensor *g[1];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, y), 1, &x, g, 0), MNAS_OK);
    /* windows start at (0,0), (0,1), (1,0), (1,1): their first cells */
    const mnas_real want[9] = { 1, 1, 0, 1, 1, 0, 0, 0, 0 };
    for (int i = 0; i < 9; i++) ck_assert_float_eq(D(g[0])[i], want[i]);
    mnas_tensor_data(x)[4] = NAN;
    mnas_tensor_data(x)[0] = 1;
    y = mnas_max_pool2d(tp, x, 2, 1, 0);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < 4; i++) ck_assert(isnan(D(y)[i]));
    mnas_tensor_free(x);
}
END_TEST

/* The 2 x 2, stride 2 pool (its own one-pass loop): first maximum on ties,
 * -inf windows, a NaN wins wherever it sits in the window. */
START_TEST(max_pool_2x2_special_values)
{
    int64_t s[4] = { 1, 1, 4, 4 };
    const mnas_real I = INFINITY, Q = NAN;
    mnas_real v[16] = { 1, 1, -I, -I, 1, 0, -I, -I, Q, 2, 3, 3, 5, 2, 3, Q };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 4, s, v);
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor *y = mnas_max_pool2d(tp, x, 2, 2, 0);
    ck_assert_ptr_nonnull(y);
    ck_assert(D(y)[0] == 1 && isinf(D(y)[1]) && D(y)[1] < 0 && isnan(D(y)[2]) && isnan(D(y)[3]));
    mnas_tensor *g[1];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, y), 1, &x, g, 0), MNAS_OK);
    const mnas_real want[16] = { 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1 };
    for (int i = 0; i < 16; i++) ck_assert_msg(D(g[0])[i] == want[i], "dx[%d] = %g", i, (double)D(g[0])[i]);
    mnas_tensor_free(x);
}
END_TEST

/* Pools over many ties, -inf regions and NaNs, against the rule written
 * out: the max takes the first cell inside its window, then a cell that is
 * larger, or NaN over a number; the average sums the cells inside in
 * row-major order from +0 and divides by their count. Both compared bit for
 * bit (the 3 x 3 windows of stride 1 and 2 run on padded planes). */
static const pool_cfg special_cfgs[] = {
    { 1, 2, 9, 37, 3, 1, 1 }, { 2, 3, 28, 28, 3, 2, 1 }, { 1, 1, 21, 19, 3, 2, 1 }, { 1, 2, 20, 20, 5, 1, 2 },
    { 1, 1, 7, 33, 2, 1, 1 }, { 1, 1, 1, 1, 3, 1, 1 },   { 1, 1, 3, 3, 3, 2, 1 },   { 1, 2, 12, 11, 3, 2, 0 },
};
#define NSPECIAL ((int)(sizeof special_cfgs / sizeof special_cfgs[0]))

static int same_bits(mnas_real a, mnas_real b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

START_TEST(pools_special_values_exact)
{
    const pool_cfg *c = &special_cfgs[_i];
    int64_t xs[4] = { c->N, c->C, c->H, c->W }, nx = c->N * c->C * c->H * c->W;
    mnas_tensor *x = mnas_tensor_zeros(ctx, 4, xs);
    mnas_real *X = mnas_tensor_data(x);
    for (int64_t k = 0; k < nx; k++) {
        int64_t h = k / c->W % c->H, w = k % c->W;
        X[k] = (mnas_real)((k * 7) % 5) - 2; /* many ties, -0 and +0 among them */
        if (X[k] == 0 && k % 2) X[k] = -X[k];
        if (h < 4 && w < 4) X[k] = -INFINITY; /* whole windows of -inf at the corner */
        if (k % 23 == 11) X[k] = NAN;
    }
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor *mx = mnas_max_pool2d(tp, x, c->k, c->s, c->p), *av = mnas_avg_pool2d(tp, x, c->k, c->s, c->p);
    ck_assert_msg(mx && av, "%s", mnas_tape_last_error(tp));
    int64_t OH = (c->H + 2 * c->p - c->k) / c->s + 1, OW = (c->W + 2 * c->p - c->k) / c->s + 1;
    int64_t ys[4] = { c->N, c->C, OH, OW }, ny = c->N * c->C * OH * OW;
    /* distinct powers of two per output: the gradient's cell sums are exact */
    mnas_tensor *r = mnas_tensor_zeros(ctx, 4, ys);
    for (int64_t o = 0; o < ny; o++) mnas_tensor_data(r)[o] = (mnas_real)ldexp(1.0, (int)(o % 40) - 20);
    mnas_real *want_dx = calloc((size_t)nx, sizeof *want_dx);
    ck_assert_ptr_nonnull(want_dx);
    for (int64_t nc = 0; nc < c->N * c->C; nc++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                mnas_real best = 0, sum = 0;
                int64_t arg = -1, cnt = 0;
                for (int i = 0; i < c->k; i++)
                    for (int j = 0; j < c->k; j++) {
                        int64_t h = oh * c->s - c->p + i, w = ow * c->s - c->p + j;
                        if (h < 0 || h >= c->H || w < 0 || w >= c->W) continue;
                        int64_t k = (nc * c->H + h) * c->W + w;
                        mnas_real v = X[k];
                        if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
                            best = v;
                            arg = k;
                        }
                        sum += v;
                        cnt++;
                    }
                int64_t o = (nc * OH + oh) * OW + ow;
                ck_assert_msg(same_bits(D(mx)[o], best), "max[%lld] = %g, want %g", (long long)o, (double)D(mx)[o],
                              (double)best);
                mnas_real mean = sum / (mnas_real)cnt;
                ck_assert_msg(same_bits(D(av)[o], mean), "avg[%lld] = %g, want %g", (long long)o, (double)D(av)[o],
                              (double)mean);
                want_dx[arg] += D(r)[o];
            }
    mnas_tensor *g[1];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, mnas_mul(tp, mx, r)), 1, &x, g, 0), MNAS_OK);
    for (int64_t k = 0; k < nx; k++)
        ck_assert_msg(D(g[0])[k] == want_dx[k], "max-pool dx[%lld] = %g, want %g", (long long)k, (double)D(g[0])[k],
                      (double)want_dx[k]);
    free(want_dx);
    mnas_tensor_free(r);
    mnas_tensor_free(x);
}
END_TEST

/* Padding and dilation of 2^30 with a 1 x 1 image pass the geometry
 * checks (one output cell, the centre tap): the direct kernels' padded
 * planes would have 2^62 cells, so they must step aside, not overflow. */
START_TEST(conv2d_huge_padding_and_dilation)
{
    mnas_tensor *x = randn(4, 1, 2, 1, 1), *w = randn(4, 3, 2, 3, 3);
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor_set_requires_grad(w, 1);
    mnas_tensor *y = mnas_conv2d(tp, x, w, NULL, 1, 1 << 30, 1 << 30, 1);
    ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
    assert_shape(y, 4, 1, 3, 1, 1);
    for (int o = 0; o < 3; o++) {
        double want = (double)D(w)[(o * 2 + 0) * 9 + 4] * D(x)[0] + (double)D(w)[(o * 2 + 1) * 9 + 4] * D(x)[1];
        ck_assert_msg(fabs(D(y)[o] - want) <= 1e-5 * (1 + fabs(want)), "y[%d] = %g, want %g", o, (double)D(y)[o], want);
    }
    mnas_tensor *ins[2] = { x, w }, *g[2];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, y), 2, ins, g, 0), MNAS_OK);
    for (int c = 0; c < 2; c++) {
        double want = 0;
        for (int o = 0; o < 3; o++) want += D(w)[(o * 2 + c) * 9 + 4];
        ck_assert(fabs(D(g[0])[c] - want) <= 1e-5 * (1 + fabs(want)));
    }
    for (int k = 0; k < 54; k++) ck_assert(D(g[1])[k] == (k % 9 == 4 ? D(x)[(k / 9) % 2] : 0));
    /* The same as a depthwise convolution with stride 2: the phase planes
     * would be 2^60 cells, so they step aside too. */
    mnas_tensor *wd = randn(4, 2, 1, 3, 3);
    mnas_tensor_set_requires_grad(wd, 1);
    mnas_tensor *yd = mnas_conv2d(tp, x, wd, NULL, 2, 1 << 30, 1 << 30, 2);
    ck_assert_msg(yd != NULL, "%s", mnas_tape_last_error(tp));
    assert_shape(yd, 4, 1, 2, 1, 1);
    for (int c = 0; c < 2; c++) ck_assert(D(yd)[c] == D(wd)[c * 9 + 4] * D(x)[c]);
    mnas_tensor *insd[2] = { x, wd }, *gd[2];
    ck_assert_int_eq(mnas_grad(tp, mnas_sum(tp, yd), 2, insd, gd, 0), MNAS_OK);
    for (int c = 0; c < 2; c++) ck_assert(D(gd[0])[c] == D(wd)[c * 9 + 4]);
    for (int k = 0; k < 18; k++) ck_assert(D(gd[1])[k] == (k % 9 == 4 ? D(x)[k / 9] : 0));
    mnas_tensor_free(wd);
    mnas_tensor_free(x);
    mnas_tensor_free(w);
}
END_TEST

START_TEST(global_avg_pool_values)
{
    mnas_tensor *x = randn(4, 2, 3, 4, 5);
    mnas_tensor *y = mnas_global_avg_pool(tp, x);
    assert_shape(y, 2, 2, 3, 1, 1);
    for (int64_t nc = 0; nc < 6; nc++) {
        double s = 0;
        for (int64_t k = 0; k < 20; k++) s += D(x)[nc * 20 + k];
        ck_assert_float_eq_tol(D(y)[nc], s / 20, 1e-5);
    }
    mnas_tensor_free(x);
}
END_TEST

/* A training step of a small conv net (second-order, as the inner loop
 * does) reaches a steady state: after a reset the tape's arenas are reused
 * and nothing more is reserved. */
START_TEST(steady_state_memory)
{
    mnas_tensor *x = randn(4, 4, 3, 10, 10), *w1 = randn(4, 8, 3, 3, 3), *dw = randn(4, 8, 1, 3, 3),
                *pw = randn(4, 8, 8, 1, 1), *b = randn(1, 8, 1, 1, 1);
    mnas_tensor *p[4] = { w1, dw, pw, b };
    for (int k = 0; k < 4; k++) mnas_tensor_set_requires_grad(p[k], 1);
    size_t reserved[5];
    for (int it = 0; it < 5; it++) {
        mnas_tape_reset(tp);
        mnas_tensor *h = mnas_relu(tp, mnas_conv2d(tp, x, w1, b, 1, 1, 1, 1));
        h = mnas_conv2d(tp, mnas_conv2d(tp, h, dw, NULL, 2, 2, 2, 8), pw, NULL, 1, 0, 1, 1);
        h = mnas_avg_pool2d(tp, mnas_max_pool2d(tp, h, 3, 1, 1), 3, 2, 1);
        mnas_tensor *loss = mnas_mean(tp, mnas_square(tp, mnas_global_avg_pool(tp, h)));
        mnas_tensor *g[4];
        ck_assert_int_eq(mnas_grad(tp, loss, 4, p, g, 1), MNAS_OK);
        mnas_tensor *gn = mnas_sum(tp, mnas_square(tp, g[0]));
        for (int k = 1; k < 4; k++) gn = mnas_add(tp, gn, mnas_sum(tp, mnas_square(tp, g[k])));
        mnas_tensor *gg[4];
        ck_assert_int_eq(mnas_grad(tp, gn, 4, p, gg, 0), MNAS_OK);
        reserved[it] = mnas_tape_bytes_reserved(tp);
    }
    ck_assert_uint_eq(reserved[2], reserved[4]);
    for (int k = 0; k < 4; k++) mnas_tensor_free(p[k]);
    mnas_tensor_free(x);
}
END_TEST

/* A convolution's kernel scratch lives for the call only: sixteen recorded
 * Winograd convolutions of x [4, 16, 16, 16] keep their outputs (64 KiB
 * each, 1 MiB in all) but not their scratch (about 0.6 MiB each, 9 MiB if
 * kept), so the recording reserves a few MiB at most. */
START_TEST(kernel_scratch_is_given_back)
{
    mnas_tensor *x = randn(4, 4, 16, 16, 16), *w = randn(4, 16, 16, 3, 3);
    mnas_tensor_set_requires_grad(w, 1);
    mnas_tensor *h[17] = { x };
    for (int k = 1; k <= 16; k++) {
        h[k] = mnas_conv2d(tp, h[k - 1], w, NULL, 1, 1, 1, 1);
        ck_assert_msg(h[k] != NULL, "%s", mnas_tape_last_error(tp));
    }
    size_t reserved = mnas_tape_bytes_reserved(tp);
    ck_assert_msg(reserved < ((size_t)4 << 20), "16 convolutions reserve %zu bytes", reserved);
    /* every output is intact: the same convolution of its input, computed
     * again now, has the same bits (no later scratch overwrote it) */
    int64_t n = mnas_tensor_size(x);
    for (int k = 1; k <= 16; k++) {
        mnas_tensor *again = mnas_conv2d(tp, h[k - 1], w, NULL, 1, 1, 1, 1);
        ck_assert_ptr_nonnull(again);
        ck_assert_msg(memcmp(D(again), D(h[k]), (size_t)n * sizeof(mnas_real)) == 0, "output %d changed", k);
    }
    mnas_tensor_free(x);
    mnas_tensor_free(w);
}
END_TEST

/* Gradient sums in a pass that does not record: a rule's new tensor may
 * take in the other terms of its slot, but a term that another slot also
 * holds (the incoming gradient that an add passes to both its inputs)
 * must stay as it is. x feeds an add with z (pass-through terms), two
 * convolutions, a ReLU, both pools, batch-norm and a mix; _i = 0 records
 * the add last (its terms reach x's slot first), _i = 1 first (they come
 * after the rules' new tensors). The unrecorded gradients must have the
 * bits of the recorded pass, which sums every term into a new tensor, and
 * z's gradient must be exactly q, the term the add handed on. Then the
 * same comparison one order up: the gradient of |dL/dw|^2, through the
 * rules of the recorded backward ops (conv dx/dw, relu's rule, batch-norm's
 * dx), unrecorded against recorded. */
static mnas_tensor *shared_terms_loss(mnas_tensor *x, mnas_tensor *z, mnas_tensor *w, mnas_tensor *dw,
                                      mnas_tensor *q, mnas_tensor *alpha, int add_last)
{
    mnas_tensor *added = NULL;
    if (!add_last) added = mnas_sum(tp, mnas_mul(tp, mnas_add(tp, x, z), q));
    mnas_tensor *a = mnas_conv2d(tp, x, w, NULL, 1, 1, 1, 1);
    mnas_tensor *b = mnas_conv2d(tp, mnas_relu(tp, x), dw, NULL, 1, 1, 1, 3);
    mnas_tensor *c = mnas_max_pool2d(tp, x, 3, 1, 1), *d = mnas_avg_pool2d(tp, x, 3, 1, 1);
    mnas_tensor *e = mnas_batch_norm(tp, x, NULL, NULL, 1e-5);
    mnas_tensor *ys[5] = { a, b, c, d, e };
    int64_t idx[5] = { 0, 1, 2, 3, 4 };
    mnas_tensor *m = mnas_mix(tp, alpha, 5, ys, idx);
    mnas_tensor *loss = mnas_sum(tp, mnas_square(tp, mnas_add(tp, m, mnas_relu(tp, a))));
    if (add_last) added = mnas_sum(tp, mnas_mul(tp, mnas_add(tp, x, z), q));
    return mnas_add(tp, loss, added);
}

/* The gradients of y with respect to p[0..n-1] from an unrecorded pass
 * (g0) and a recorded one (g1), which must have the same bits; grew (may
 * be NULL) receives the bytes the tape reserved for the unrecorded pass. */
static void grads_both_ways(mnas_tensor *y, size_t n, mnas_tensor *const *p, mnas_tensor **g0, mnas_tensor **g1,
                            const char *what, size_t *grew)
{
    ck_assert_ptr_nonnull(y);
    size_t before = mnas_tape_bytes_reserved(tp);
    ck_assert_int_eq(mnas_grad(tp, y, n, p, g0, 0), MNAS_OK);
    if (grew) *grew = mnas_tape_bytes_reserved(tp) - before;
    ck_assert_int_eq(mnas_grad(tp, y, n, p, g1, 1), MNAS_OK);
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(memcmp(D(g0[k]), D(g1[k]), (size_t)mnas_tensor_size(p[k]) * sizeof(mnas_real)) == 0,
                      "%s, gradient %zu: unrecorded and recorded bits differ", what, k);
}

START_TEST(gradient_sums_keep_shared_terms)
{
    mnas_tensor *x = randn(4, 2, 3, 6, 6), *z = randn(4, 2, 3, 6, 6), *q = randn(4, 2, 3, 6, 6);
    mnas_tensor *w = randn(4, 3, 3, 3, 3), *dw = randn(4, 3, 1, 3, 3), *alpha = randn(1, 5, 1, 1, 1);
    mnas_tensor *p[5] = { x, z, w, dw, alpha };
    for (int k = 0; k < 5; k++) mnas_tensor_set_requires_grad(p[k], 1);
    int64_t n = mnas_tensor_size(x);
    mnas_tensor *loss = shared_terms_loss(x, z, w, dw, q, alpha, _i);
    ck_assert_msg(loss != NULL, "%s", mnas_tape_last_error(tp));
    mnas_tensor *g0[5], *g1[5];
    grads_both_ways(loss, 5, p, g0, g1, "first order", NULL);
    ck_assert_msg(memcmp(D(g0[1]), D(q), (size_t)n * sizeof(mnas_real)) == 0, "z's gradient is not q");
    /* one order up, through the recorded backward's own rules */
    mnas_tensor *gw = mnas_add(tp, mnas_sum(tp, mnas_square(tp, g1[2])), mnas_sum(tp, mnas_square(tp, g1[3])));
    mnas_tensor *h0[5], *h1[5];
    grads_both_ways(gw, 5, p, h0, h1, "second order", NULL);
    for (int k = 0; k < 5; k++) mnas_tensor_free(p[k]);
    mnas_tensor_free(q);
}
END_TEST

/* An unrecorded pass hands the blocks of the gradients it has consumed to
 * the tensors it makes next: through a chain of 40 convolution + ReLU
 * layers on [4, 16, 32, 32] (20 MiB of activations), the backward pass
 * must add only a few blocks of 256 KiB to the tape (keeping every block
 * would add another 20 MiB, and a new arena chunk). Reshape views and an
 * add, which hand their incoming gradient on to another slot, sit in the
 * chain: a block still held there must not be reused, so the gradients
 * must have the bits of the recorded pass, which reuses nothing. */
static mnas_tensor *chain_loss(mnas_tensor *x, mnas_tensor *w, mnas_tensor *skip)
{
    mnas_tensor *h = x;
    int64_t flat[2] = { 4, 16 * 32 * 32 }, img[4] = { 4, 16, 32, 32 };
    for (int k = 0; k < 40; k++) {
        h = mnas_relu(tp, mnas_conv2d(tp, h, w, NULL, 1, 1, 1, 1));
        if (k % 8 == 3) h = mnas_reshape(tp, mnas_reshape(tp, h, 2, flat), 4, img);
        if (k % 8 == 5) h = mnas_add(tp, h, skip);
    }
    return mnas_mean(tp, mnas_square(tp, h));
}

START_TEST(unrecorded_pass_reuses_gradient_blocks)
{
    /* weights of std 0.12 (about sqrt(2 / fan-in)) keep 40 layers finite */
    int64_t ws[4] = { 16, 16, 3, 3 };
    mnas_tensor *x = randn(4, 4, 16, 32, 32), *skip = randn(4, 4, 16, 32, 32);
    mnas_tensor *w = mnas_tensor_randn(ctx, 4, ws, 0, 0.12);
    ck_assert_ptr_nonnull(w);
    mnas_tensor *p[3] = { x, skip, w };
    for (int k = 0; k < 3; k++) mnas_tensor_set_requires_grad(p[k], 1);
    mnas_tensor *loss = chain_loss(x, w, skip);
    ck_assert_msg(loss != NULL, "%s", mnas_tape_last_error(tp));
    mnas_tensor *g0[3], *g1[3];
    size_t grew;
    grads_both_ways(loss, 3, p, g0, g1, "chain", &grew);
    ck_assert_msg(grew < ((size_t)4 << 20), "the unrecorded pass reserved %zu more bytes", grew);
    for (int k = 0; k < 3; k++) {
        int64_t n = mnas_tensor_size(p[k]), nonzero = 0;
        for (int64_t i = 0; i < n; i++) {
            ck_assert_msg(isfinite(D(g0[k])[i]), "gradient %d is not finite at %lld", k, (long long)i);
            nonzero += D(g0[k])[i] != 0;
        }
        ck_assert_msg(nonzero > n / 4, "gradient %d: only %lld of %lld entries are nonzero", k, (long long)nonzero,
                      (long long)n);
    }
    for (int k = 0; k < 3; k++) mnas_tensor_free(p[k]);
}
END_TEST

/* ---- bad input ------------------------------------------------------- */

static void expect_error(mnas_tensor *r, mnas_status st, const char *needle)
{
    ck_assert_ptr_null(r);
    ck_assert_int_eq(mnas_tape_status(tp), st);
    ck_assert_msg(strstr(mnas_tape_last_error(tp), needle) != NULL, "message '%s' lacks '%s'",
                  mnas_tape_last_error(tp), needle);
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), needle));
    mnas_tape_clear_error(tp);
}

START_TEST(conv2d_bad_input)
{
    mnas_tensor *x = randn(4, 2, 4, 6, 6), *w = randn(4, 8, 2, 3, 3), *b = randn(1, 8, 1, 1, 1);
    mnas_tensor *x3 = randn(3, 4, 6, 6, 1), *w3 = randn(3, 8, 2, 3, 1), *b2 = randn(2, 1, 8, 1, 1);
    mnas_tensor *b5 = randn(1, 5, 1, 1, 1);
    ck_assert_ptr_nonnull(mnas_conv2d(tp, x, w, b, 1, 1, 1, 2)); /* valid */
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_OK);
    expect_error(mnas_conv2d(tp, NULL, w, b, 1, 1, 1, 2), MNAS_E_INVALID, "mnas_conv2d: x is NULL");
    expect_error(mnas_conv2d(tp, x, NULL, b, 1, 1, 1, 2), MNAS_E_INVALID, "w is NULL");
    expect_error(mnas_conv2d(tp, x3, w, b, 1, 1, 1, 2), MNAS_E_SHAPE, "x must be 4-D");
    expect_error(mnas_conv2d(tp, x, w3, b, 1, 1, 1, 2), MNAS_E_SHAPE, "w must be 4-D");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 1, 1), MNAS_E_SHAPE, "channel mismatch");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 1, 0), MNAS_E_INVALID, "groups 0 must be positive");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 1, -2), MNAS_E_INVALID, "groups -2 must be positive");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 1, 3), MNAS_E_SHAPE, "groups 3 must divide");
    expect_error(mnas_conv2d(tp, x, w, b5, 1, 1, 1, 2), MNAS_E_SHAPE, "b must be [8]");
    expect_error(mnas_conv2d(tp, x, w, b2, 1, 1, 1, 2), MNAS_E_SHAPE, "b must be [8]");
    expect_error(mnas_conv2d(tp, x, w, b, 0, 1, 1, 2), MNAS_E_INVALID, "stride 0 must be positive");
    expect_error(mnas_conv2d(tp, x, w, b, -1, 1, 1, 2), MNAS_E_INVALID, "stride -1 must be positive");
    expect_error(mnas_conv2d(tp, x, w, b, 1, -1, 1, 2), MNAS_E_INVALID, "padding -1 must not be negative");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 0, 2), MNAS_E_INVALID, "dilation 0 must be positive");
    /* 3x3 with dilation 4 spans 9 cells; the padded input has 8. */
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, 4, 2), MNAS_E_SHAPE, "output size is not positive");
    expect_error(mnas_conv2d(tp, x, w, b, 1, 1, INT_MAX, 2), MNAS_E_SHAPE, "output size is not positive");
    /* The output of a huge padding would have more than 2^40 elements. */
    expect_error(mnas_conv2d(tp, x, w, b, 1, INT_MAX, 1, 2), MNAS_E_SHAPE, "2^40");
    /* An error on the tape: a NULL input returns NULL quietly. */
    mnas_tensor *bad = mnas_conv2d(tp, x3, w, b, 1, 1, 1, 2);
    ck_assert_ptr_null(mnas_conv2d(tp, bad, w, b, 1, 1, 1, 2));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "x must be 4-D"));
    mnas_tape_clear_error(tp);
    ck_assert_ptr_null(mnas_conv2d(NULL, x, w, b, 1, 1, 1, 2));
    mnas_tensor_free(x);
    mnas_tensor_free(w);
    mnas_tensor_free(b);
    mnas_tensor_free(x3);
    mnas_tensor_free(w3);
    mnas_tensor_free(b2);
    mnas_tensor_free(b5);
}
END_TEST

START_TEST(unfold_fold_bad_input)
{
    mnas_tensor *x = randn(4, 1, 2, 4, 4), *x2 = randn(2, 4, 4, 1, 1), *cols = randn(3, 1, 18, 16, 1);
    ck_assert_ptr_nonnull(mnas_unfold(tp, x, 3, 3, 1, 1, 1));
    ck_assert_ptr_nonnull(mnas_fold(tp, cols, 2, 4, 4, 3, 3, 1, 1, 1));
    expect_error(mnas_unfold(tp, NULL, 3, 3, 1, 1, 1), MNAS_E_INVALID, "mnas_unfold: x is NULL");
    expect_error(mnas_unfold(tp, x2, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "x must be 4-D");
    expect_error(mnas_unfold(tp, x, 0, 3, 1, 1, 1), MNAS_E_INVALID, "kernel 0 x 3 must be positive");
    expect_error(mnas_unfold(tp, x, 3, -1, 1, 1, 1), MNAS_E_INVALID, "kernel 3 x -1 must be positive");
    expect_error(mnas_unfold(tp, x, 3, 3, 0, 1, 1), MNAS_E_INVALID, "stride 0");
    expect_error(mnas_unfold(tp, x, 3, 3, 1, -2, 1), MNAS_E_INVALID, "padding -2");
    expect_error(mnas_unfold(tp, x, 3, 3, 1, 1, -1), MNAS_E_INVALID, "dilation -1");
    expect_error(mnas_unfold(tp, x, 7, 3, 1, 1, 1), MNAS_E_SHAPE, "output size is not positive");
    expect_error(mnas_unfold(tp, x, INT_MAX, INT_MAX, 1, 1, 1), MNAS_E_SHAPE, "output size is not positive");
    expect_error(mnas_unfold(tp, x, 1, 1, 1, 1 << 20, 1), MNAS_E_SHAPE, "2^40");
    expect_error(mnas_fold(tp, NULL, 2, 4, 4, 3, 3, 1, 1, 1), MNAS_E_INVALID, "mnas_fold: cols is NULL");
    expect_error(mnas_fold(tp, x, 2, 4, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "cols must be 3-D");
    expect_error(mnas_fold(tp, cols, 3, 4, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "cols is [1, 18, 16]");
    expect_error(mnas_fold(tp, cols, 2, 5, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "OH = 5");
    expect_error(mnas_fold(tp, cols, 0, 4, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "not a valid shape");
    expect_error(mnas_fold(tp, cols, 2, -4, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "not a valid shape");
    expect_error(mnas_fold(tp, cols, (int64_t)1 << 40, 1 << 20, 4, 3, 3, 1, 1, 1), MNAS_E_SHAPE, "not a valid shape");
    expect_error(mnas_fold(tp, cols, 2, 4, 4, 3, 3, 0, 1, 1), MNAS_E_INVALID, "stride 0");
    expect_error(mnas_fold(tp, cols, 2, 2, 2, 3, 3, 1, 0, 1), MNAS_E_SHAPE, "output size is not positive");
    mnas_tensor_free(x);
    mnas_tensor_free(x2);
    mnas_tensor_free(cols);
}
END_TEST

START_TEST(pool_bad_input)
{
    mnas_tensor *x = randn(4, 1, 2, 4, 4), *x2 = randn(2, 4, 4, 1, 1);
    expect_error(mnas_max_pool2d(tp, NULL, 3, 1, 1), MNAS_E_INVALID, "mnas_max_pool2d: x is NULL");
    expect_error(mnas_avg_pool2d(tp, NULL, 3, 1, 1), MNAS_E_INVALID, "mnas_avg_pool2d: x is NULL");
    expect_error(mnas_global_avg_pool(tp, NULL), MNAS_E_INVALID, "mnas_global_avg_pool: x is NULL");
    expect_error(mnas_max_pool2d(tp, x2, 3, 1, 1), MNAS_E_SHAPE, "x must be 4-D");
    expect_error(mnas_avg_pool2d(tp, x2, 3, 1, 1), MNAS_E_SHAPE, "x must be 4-D");
    expect_error(mnas_global_avg_pool(tp, x2), MNAS_E_SHAPE, "x must be 4-D");
    expect_error(mnas_max_pool2d(tp, x, 0, 1, 0), MNAS_E_INVALID, "kernel 0 x 0 must be positive");
    expect_error(mnas_avg_pool2d(tp, x, -3, 1, 0), MNAS_E_INVALID, "kernel -3 x -3 must be positive");
    expect_error(mnas_max_pool2d(tp, x, 3, 0, 1), MNAS_E_INVALID, "stride 0");
    expect_error(mnas_avg_pool2d(tp, x, 3, 1, -1), MNAS_E_INVALID, "padding -1");
    expect_error(mnas_max_pool2d(tp, x, 2, 1, 2), MNAS_E_INVALID, "padding 2 must be smaller than the kernel 2");
    expect_error(mnas_avg_pool2d(tp, x, 3, 1, 3), MNAS_E_INVALID, "padding 3 must be smaller than the kernel 3");
    expect_error(mnas_max_pool2d(tp, x, 5, 1, 0), MNAS_E_SHAPE, "output size is not positive");
    expect_error(mnas_avg_pool2d(tp, x, 5, 2, 0), MNAS_E_SHAPE, "output size is not positive");
    ck_assert_ptr_null(mnas_max_pool2d(NULL, x, 3, 1, 1));
    ck_assert_ptr_null(mnas_avg_pool2d(NULL, x, 3, 1, 1));
    ck_assert_ptr_null(mnas_global_avg_pool(NULL, x));
    ck_assert_ptr_null(mnas_unfold(NULL, x, 3, 3, 1, 1, 1));
    mnas_tensor_free(x);
    mnas_tensor_free(x2);
}
END_TEST

/* Tensors from a reset tape are refused (stale), not read. */
START_TEST(stale_inputs_refused)
{
    mnas_tensor *x = randn(4, 1, 2, 4, 4), *w = randn(4, 2, 2, 3, 3);
    mnas_tensor *h = mnas_max_pool2d(tp, x, 2, 2, 0);
    ck_assert_ptr_nonnull(h);
    mnas_tape_reset(tp);
    expect_error(mnas_conv2d(tp, h, w, NULL, 1, 1, 1, 1), MNAS_E_STALE, "reset or freed");
    expect_error(mnas_avg_pool2d(tp, h, 2, 2, 0), MNAS_E_STALE, "reset or freed");
    mnas_tensor_free(x);
    mnas_tensor_free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *fw = tcase_create("values");
    tcase_add_checked_fixture(fw, setup, teardown);
    tcase_set_timeout(fw, 300);
    tcase_add_loop_test(fw, conv2d_matches_direct_loops, 0, NCONV);
    tcase_add_loop_test(fw, unfold_fold_adjoint, 0, NCONV);
    tcase_add_loop_test(fw, pools_match_direct_loops, 0, NPOOL);
    tcase_add_test(fw, avg_pool_excludes_padding);
    tcase_add_test(fw, max_pool_special_values);
    tcase_add_test(fw, max_pool_2x2_special_values);
    tcase_add_loop_test(fw, pools_special_values_exact, 0, NSPECIAL);
    tcase_add_test(fw, conv2d_huge_padding_and_dilation);
    tcase_add_test(fw, global_avg_pool_values);
    tcase_add_test(fw, steady_state_memory);
    tcase_add_test(fw, kernel_scratch_is_given_back);
    tcase_add_loop_test(fw, gradient_sums_keep_shared_terms, 0, 2);
    tcase_add_test(fw, unrecorded_pass_reuses_gradient_blocks);
    suite_add_tcase(s, fw);
    TCase *bad = tcase_create("bad_input");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, conv2d_bad_input);
    tcase_add_test(bad, unfold_fold_bad_input);
    tcase_add_test(bad, pool_bad_input);
    tcase_add_test(bad, stale_inputs_refused);
    suite_add_tcase(s, bad);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
