/* The task encoder, the controller and the modulator of M-NAS (float
 * library): shapes and parameters, what z depends on (the task, not the
 * order of its pairs once averaged over permutations), the reconstruction
 * loss going down under Adam, alpha's rows being distributions, tau * w
 * against a hand computation, and bad input refused with a message. The
 * gradients are checked against finite differences in test_f64_encoder.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

#define MAXZ 64

static mnas_ctx *new_ctx(uint64_t seed)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = seed;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    return ctx;
}

static void random_perm(mnas_rng *r, int64_t *p, int64_t k)
{
    for (int64_t i = 0; i < k; i++) p[i] = i;
    for (int64_t i = k - 1; i > 0; i--) {
        int64_t j = (int64_t)mnas_rng_below(r, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

/* Rows perm[0], perm[1], ... of t (2-D) as a new persistent tensor. */
static mnas_tensor *permuted_rows(mnas_ctx *ctx, mnas_tensor *t, const int64_t *perm)
{
    int64_t s[4];
    ck_assert_int_eq(mnas_tensor_shape(t, s), MNAS_OK);
    mnas_tensor *o = mnas_tensor_zeros(ctx, 2, s);
    ck_assert_ptr_nonnull(o);
    for (int64_t j = 0; j < s[0]; j++)
        memcpy(mnas_tensor_data(o) + j * s[1], mnas_tensor_data(t) + perm[j] * s[1], (size_t)s[1] * sizeof(mnas_real));
    return o;
}

typedef struct {
    mnas_ctx *ctx;
    mnas_task_encoder *e;
    mnas_params *p;
    mnas_tape *tp;
    int64_t zd;
} enc_fx;

static void enc_init(enc_fx *f, uint64_t seed, mnas_rnn_kind kind, int64_t xf, int64_t yf, int64_t fd, int64_t zd)
{
    f->ctx = new_ctx(seed);
    f->e = mnas_task_encoder_create(f->ctx, xf, yf, fd, zd, kind);
    ck_assert_msg(f->e != NULL, "%s", mnas_ctx_last_error(f->ctx));
    f->p = mnas_params_create(f->ctx);
    ck_assert_int_eq(mnas_task_encoder_add_params(f->e, f->p, "te.", 0), 0);
    ck_assert_int_eq(mnas_tape_create(f->ctx, &f->tp), MNAS_OK);
    f->zd = zd;
}

static void enc_free(enc_fx *f)
{
    mnas_tape_free(f->tp);
    mnas_params_free(f->p);
    mnas_task_encoder_free(f->e);
    mnas_ctx_free(f->ctx);
}

/* z (as doubles) and L_r of one encoding, on a fresh recording. */
static void encode(enc_fx *f, mnas_tensor *x, mnas_tensor *y, const int64_t *perm, double *z, double *rec)
{
    mnas_tape_reset(f->tp);
    mnas_tensor *zt = NULL, *rt = NULL;
    mnas_status st = mnas_task_encoder_forward(f->e, f->tp, x, y, mnas_params_tensors(f->p), perm, &zt,
                                               rec ? &rt : NULL);
    ck_assert_msg(st == MNAS_OK, "%s", mnas_tape_last_error(f->tp));
    ck_assert_int_eq(mnas_tensor_size(zt), f->zd);
    for (int64_t i = 0; i < f->zd; i++) z[i] = mnas_tensor_data(zt)[i];
    if (rec) *rec = mnas_tensor_item(rt);
}

/* The mean of z over n random feeding orders. */
static void perm_mean_z(enc_fx *f, mnas_rng *r, mnas_tensor *x, mnas_tensor *y, int n, double *mean, double *sd_max)
{
    int64_t k = mnas_tensor_dim(x, 0), perm[64];
    double z[MAXZ], s2[MAXZ] = { 0 };
    for (int64_t i = 0; i < f->zd; i++) mean[i] = 0;
    for (int t = 0; t < n; t++) {
        random_perm(r, perm, k);
        encode(f, x, y, perm, z, NULL);
        for (int64_t i = 0; i < f->zd; i++) {
            mean[i] += z[i] / n;
            s2[i] += z[i] * z[i] / n;
        }
    }
    *sd_max = 0;
    for (int64_t i = 0; i < f->zd; i++) *sd_max = fmax(*sd_max, sqrt(fmax(s2[i] - mean[i] * mean[i], 0.0)));
}

static double max_abs_diff(const double *a, const double *b, int64_t n)
{
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* ---- encoder ------------------------------------------------------------ */

START_TEST(encoder_parameters_and_shapes)
{
    for (int kind = MNAS_RNN_GRU; kind <= MNAS_RNN_LSTM; kind++) {
        enc_fx f;
        enc_init(&f, 1, (mnas_rnn_kind)kind, 2, 1, 5, 6);
        const int64_t G = kind == MNAS_RNN_LSTM ? 4 : 3;
        ck_assert_uint_eq(mnas_task_encoder_num_params(f.e), 10);
        ck_assert_uint_eq(mnas_params_count(f.p), 10);
        ck_assert_int_eq(mnas_task_encoder_z_dim(f.e), 6);
        static const char *const names[10] = { "te.f.w",     "te.f.b",     "te.enc.w_ih", "te.enc.w_hh",
                                               "te.enc.b_ih", "te.enc.b_hh", "te.dec.w_ih", "te.dec.w_hh",
                                               "te.dec.b_ih", "te.dec.b_hh" };
        const int64_t want[10][2] = { { 5, 3 },     { 5, 0 },     { G * 6, 5 }, { G * 6, 6 }, { G * 6, 0 },
                                      { G * 6, 0 }, { G * 5, 6 }, { G * 5, 5 }, { G * 5, 0 }, { G * 5, 0 } };
        for (size_t i = 0; i < 10; i++) {
            ck_assert_str_eq(mnas_params_name(f.p, i), names[i]);
            mnas_tensor *t = mnas_params_get(f.p, i);
            ck_assert_int_eq(mnas_tensor_ndim(t), want[i][1] ? 2 : 1);
            ck_assert_int_eq(mnas_tensor_dim(t, 0), want[i][0]);
            if (want[i][1]) ck_assert_int_eq(mnas_tensor_dim(t, 1), want[i][1]);
            /* PyTorch's init: U[-1/sqrt(H), 1/sqrt(H)], H the layer's hidden
             * size (fan-in for F). */
            double bound = 1.0 / sqrt(i < 2 ? 3.0 : i < 6 ? 6.0 : 5.0), mx = 0;
            for (int64_t j = 0; j < mnas_tensor_size(t); j++) mx = fmax(mx, fabs(mnas_tensor_data(t)[j]));
            ck_assert_msg(mx <= bound && mx > 0.3 * bound, "%s: max |w| %g, bound %g", names[i], mx, bound);
        }
        /* Adding again clashes by name and leaves the set as it was. */
        ck_assert_int_eq(mnas_task_encoder_add_params(f.e, f.p, "te.", 0), -1);
        ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "te.f.w"));
        ck_assert_uint_eq(mnas_params_count(f.p), 10);
        ck_assert_int_eq(mnas_task_encoder_add_params(f.e, f.p, "other.", 1), 10);

        int64_t sx[2] = { 7, 2 }, sy[2] = { 7, 1 };
        mnas_tensor *x = mnas_tensor_randn(f.ctx, 2, sx, 0, 1), *y = mnas_tensor_randn(f.ctx, 2, sy, 0, 1);
        mnas_tensor *z = NULL, *rec = NULL;
        ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, x, y, mnas_params_tensors(f.p), NULL, &z, &rec),
                         MNAS_OK);
        ck_assert_int_eq(mnas_tensor_ndim(z), 2);
        ck_assert_int_eq(mnas_tensor_dim(z, 0), 1);
        ck_assert_int_eq(mnas_tensor_dim(z, 1), 6);
        ck_assert_int_eq(mnas_tensor_size(rec), 1);
        ck_assert(mnas_tensor_requires_grad(z) && mnas_tensor_requires_grad(rec));
        double r = mnas_tensor_item(rec);
        ck_assert(isfinite(r) && r >= 0);
        /* z is a mean of RNN states: every component inside (-1, 1). */
        for (int i = 0; i < 6; i++) ck_assert(fabs(mnas_tensor_data(z)[i]) < 1);
        /* recon may be NULL; z does not change. */
        double zv[6];
        for (int i = 0; i < 6; i++) zv[i] = mnas_tensor_data(z)[i];
        mnas_tensor *z2 = NULL;
        ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, x, y, mnas_params_tensors(f.p), NULL, &z2, NULL),
                         MNAS_OK);
        for (int i = 0; i < 6; i++) ck_assert(mnas_tensor_data(z2)[i] == zv[i]);
        /* One support pair works too, and a 3-D x is read as rows of features. */
        int64_t s1x[2] = { 1, 2 }, s1y[2] = { 1, 1 }, s3x[3] = { 7, 1, 2 };
        mnas_tensor *x1 = mnas_tensor_randn(f.ctx, 2, s1x, 0, 1), *y1 = mnas_tensor_randn(f.ctx, 2, s1y, 0, 1);
        ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, x1, y1, mnas_params_tensors(f.p), NULL, &z2, &rec),
                         MNAS_OK);
        ck_assert(isfinite(mnas_tensor_item(rec)) && mnas_tensor_item(rec) >= 0);
        ck_assert_int_eq(mnas_tensor_reshape(x, 3, s3x), MNAS_OK);
        ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, x, y, mnas_params_tensors(f.p), NULL, &z2, NULL),
                         MNAS_OK);
        for (int i = 0; i < 6; i++) ck_assert(mnas_tensor_data(z2)[i] == zv[i]);
        mnas_tensor_free(x1);
        mnas_tensor_free(y1);
        mnas_tensor_free(x);
        mnas_tensor_free(y);
        enc_free(&f);
    }
}
END_TEST

/* z tells tasks apart, and its mean over random feeding orders does not
 * depend on the order the support pairs are stored in.
 *
 * Tolerance: a permutation-averaged z is a Monte-Carlo estimate of the mean
 * over all K! orders, which is exactly invariant; two independent estimates
 * of n orders each differ by about sd * sqrt(2/n), sd the spread of z over
 * single orders. The test allows 5 * sd * sqrt(2/n) with the largest sd it
 * measures per component. Measured (K = 10, f_dim 16, z_dim 8, seed 5,
 * n = 64): sd <= 0.037, so the tolerance is 0.033 (GRU) / 0.030 (LSTM);
 * the averaged z of the task and of its shuffled copy differ by 0.0044
 * (GRU) / 0.0080 (LSTM) in the worst component; two tasks (sinusoid vs
 * linear) by 0.20 / 0.14, required > 3 * tolerance. A single fixed order
 * of the shuffled task moves z by 0.046 / 0.042, which is why the encoder
 * is averaged over permutations (or fed a fresh random order each
 * meta-iteration); the averaged difference must be under half of that. */
START_TEST(z_depends_on_the_task_not_on_the_order)
{
    for (int kind = MNAS_RNN_GRU; kind <= MNAS_RNN_LSTM; kind++) {
        enc_fx f;
        enc_init(&f, 5, (mnas_rnn_kind)kind, 1, 1, 16, 8);
        mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
        mnas_task *ta = mnas_regression_task(f.ctx, &ro, 3, 0, MNAS_FAMILY_SINUSOID);
        mnas_task *tb = mnas_regression_task(f.ctx, &ro, 3, 1, MNAS_FAMILY_LINEAR);
        ck_assert(ta && tb);
        mnas_tensor *xa = mnas_task_support_x(ta), *ya = mnas_task_support_y(ta);
        mnas_tensor *xb = mnas_task_support_x(tb), *yb = mnas_task_support_y(tb);
        const int64_t K = mnas_tensor_dim(xa, 0);
        ck_assert_int_eq(K, 10);

        mnas_rng *r = mnas_rng_create(f.ctx, 11, (uint64_t)kind);
        int64_t sigma[10];
        random_perm(r, sigma, K);
        mnas_tensor *xs = permuted_rows(f.ctx, xa, sigma), *ys = permuted_rows(f.ctx, ya, sigma);

        const int n = 64;
        double ma[MAXZ], ms[MAXZ], mb[MAXZ], sda, sds, sdb;
        perm_mean_z(&f, r, xa, ya, n, ma, &sda);
        perm_mean_z(&f, r, xs, ys, n, ms, &sds);
        perm_mean_z(&f, r, xb, yb, n, mb, &sdb);
        double tol = 5.0 * fmax(sda, sds) * sqrt(2.0 / n);
        double d_order = max_abs_diff(ma, ms, f.zd), d_task = max_abs_diff(ma, mb, f.zd);
        ck_assert_msg(sda > 1e-4, "z does not depend on the order at all (sd %g): the test would prove nothing", sda);
        ck_assert_msg(d_order <= tol, "kind %d: averaged z of the shuffled task differs by %g (tolerance %g)", kind,
                      d_order, tol);
        ck_assert_msg(d_task > 3 * tol, "kind %d: two tasks' averaged z differ by only %g (tolerance %g)", kind,
                      d_task, tol);

        /* Single fixed orders: z of the two tasks also differ clearly. */
        double za[MAXZ], zb[MAXZ];
        encode(&f, xa, ya, NULL, za, NULL);
        encode(&f, xb, yb, NULL, zb, NULL);
        ck_assert_msg(max_abs_diff(za, zb, f.zd) > 0.05, "kind %d: |z_a - z_b| = %g", kind,
                      max_abs_diff(za, zb, f.zd));
        /* One fixed order is not invariant; averaging removes most of it. */
        double zs1[MAXZ];
        encode(&f, xs, ys, NULL, zs1, NULL);
        double d_single = max_abs_diff(za, zs1, f.zd);
        ck_assert_msg(d_order < 0.5 * d_single, "kind %d: averaged %g vs single-order %g", kind, d_order, d_single);

        mnas_rng_free(r);
        mnas_tensor_free(xs);
        mnas_tensor_free(ys);
        mnas_task_free(ta);
        mnas_task_free(tb);
        enc_free(&f);
    }
}
END_TEST

/* Feeding in the order perm is the same computation as feeding the rows
 * pre-permuted in order: bit for bit, z and L_r. */
START_TEST(perm_equals_prepermuted_data_bitwise)
{
    for (int kind = MNAS_RNN_GRU; kind <= MNAS_RNN_LSTM; kind++) {
        enc_fx f;
        enc_init(&f, 8, (mnas_rnn_kind)kind, 2, 3, 7, 5);
        int64_t sx[2] = { 9, 2 }, sy[2] = { 9, 3 };
        mnas_tensor *x = mnas_tensor_randn(f.ctx, 2, sx, 0, 2), *y = mnas_tensor_randn(f.ctx, 2, sy, 0, 2);
        const int64_t perm[9] = { 4, 0, 8, 2, 7, 1, 6, 3, 5 };
        mnas_tensor *xp = permuted_rows(f.ctx, x, perm), *yp = permuted_rows(f.ctx, y, perm);
        double z1[MAXZ], z2[MAXZ], z3[MAXZ], r1, r2, r3;
        encode(&f, x, y, perm, z1, &r1);
        encode(&f, xp, yp, NULL, z2, &r2);
        ck_assert(memcmp(z1, z2, (size_t)f.zd * sizeof *z1) == 0);
        ck_assert(r1 == r2);
        /* and perm NULL is the identity order */
        const int64_t id[9] = { 0, 1, 2, 3, 4, 5, 6, 7, 8 };
        encode(&f, x, y, id, z1, &r1);
        encode(&f, x, y, NULL, z3, &r3);
        ck_assert(memcmp(z1, z3, (size_t)f.zd * sizeof *z1) == 0);
        ck_assert(r1 == r3);
        /* ... which is not the permuted one: the order matters for one pass. */
        ck_assert(max_abs_diff(z2, z3, f.zd) > 1e-4);
        mnas_tensor_free(x);
        mnas_tensor_free(y);
        mnas_tensor_free(xp);
        mnas_tensor_free(yp);
        enc_free(&f);
    }
}
END_TEST

/* Adam on L_r alone (mean over 4 regression tasks) for 50 steps. Measured
 * (seed 5, lr 0.01): GRU 229 -> 3.9, LSTM 195 -> 4.3 training every encoder
 * weight; with F frozen (only the RNNs learn, so the loss cannot go down by
 * shrinking the embeddings) GRU 229 -> 70, LSTM 195 -> 77. The decoder's
 * states lie in (-1, 1) while the ReLU embeddings of targets up to ~10 do
 * not, hence the floor in the frozen case. */
static void train_recon(mnas_rnn_kind kind, int freeze_f, double want_ratio)
{
    enc_fx f;
    enc_init(&f, 5, kind, 1, 1, 16, 8);
    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.lr = 0.01;
    mnas_optim *o = mnas_optim_create(f.p, &oo);
    ck_assert_ptr_nonnull(o);
    mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
    mnas_task *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = mnas_regression_task(f.ctx, &ro, 3, (uint64_t)i, -1);
        ck_assert_ptr_nonnull(t[i]);
    }
    size_t np = mnas_params_count(f.p);
    double first = 0, last = 0;
    for (int s = 0; s <= 50; s++) {
        double total = 0;
        mnas_params_zero_grad(f.p);
        for (int i = 0; i < 4; i++) {
            mnas_tape_reset(f.tp);
            mnas_tensor *z, *rec, *g[10];
            ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, mnas_task_support_x(t[i]), mnas_task_support_y(t[i]),
                                                       mnas_params_tensors(f.p), NULL, &z, &rec),
                             MNAS_OK);
            double r = mnas_tensor_item(rec);
            ck_assert(isfinite(r) && r >= 0);
            total += r / 4;
            ck_assert_int_eq(mnas_grad(f.tp, rec, np, mnas_params_tensors(f.p), g, 0), MNAS_OK);
            if (freeze_f) g[0] = g[1] = NULL; /* f.w, f.b keep their values */
            ck_assert_int_eq(mnas_params_accumulate_grad(f.p, g, 0.25), MNAS_OK);
        }
        if (s == 0) first = total;
        last = total;
        if (s < 50) ck_assert_int_eq(mnas_optim_step(o), MNAS_OK);
    }
    ck_assert_msg(last < want_ratio * first, "kind %d, freeze %d: L_r %g -> %g", (int)kind, freeze_f, first, last);
    for (int i = 0; i < 4; i++) mnas_task_free(t[i]);
    mnas_optim_free(o);
    enc_free(&f);
}

START_TEST(recon_loss_decreases_under_adam)
{
    train_recon(MNAS_RNN_GRU, 0, 0.1);
    train_recon(MNAS_RNN_LSTM, 0, 0.1);
    train_recon(MNAS_RNN_GRU, 1, 0.5);
    train_recon(MNAS_RNN_LSTM, 1, 0.5);
}
END_TEST

/* ---- a reference implementation, in double ----------------------------------
 * Eq. (4)-(6) written out with loops, PyTorch's GRU/LSTM conventions
 * (gates r, z, n / i, f, g, o), from the parameter set's values. */

static double sig(double v) { return 1.0 / (1.0 + exp(-v)); }

/* One step of a cell of hidden size H with input size I; h, c updated. */
static void ref_cell(int lstm, int64_t H, int64_t I, const double *x, double *h, double *c, const mnas_real *wi,
                     const mnas_real *wh, const mnas_real *bi, const mnas_real *bh)
{
    int64_t G = lstm ? 4 : 3;
    double gi[4 * MAXZ], gh[4 * MAXZ];
    for (int64_t r = 0; r < G * H; r++) {
        gi[r] = bi[r];
        gh[r] = bh[r];
        for (int64_t k = 0; k < I; k++) gi[r] += (double)wi[r * I + k] * x[k];
        for (int64_t k = 0; k < H; k++) gh[r] += (double)wh[r * H + k] * h[k];
    }
    for (int64_t k = 0; k < H; k++) {
        if (lstm) {
            double i = sig(gi[k] + gh[k]), f = sig(gi[H + k] + gh[H + k]);
            double g = tanh(gi[2 * H + k] + gh[2 * H + k]), o = sig(gi[3 * H + k] + gh[3 * H + k]);
            c[k] = f * c[k] + i * g;
            h[k] = o * tanh(c[k]);
        } else {
            double r = sig(gi[k] + gh[k]), u = sig(gi[H + k] + gh[H + k]);
            double n = tanh(gi[2 * H + k] + r * gh[2 * H + k]);
            h[k] = (1 - u) * n + u * h[k];
        }
    }
}

static void ref_encode(const mnas_params *p, int lstm, int64_t xf, int64_t yf, int64_t fd, int64_t zd, mnas_tensor *x,
                       mnas_tensor *y, int64_t K, double *z, double *rec)
{
    const mnas_real *w[10];
    for (size_t i = 0; i < 10; i++) w[i] = mnas_tensor_data(mnas_params_get(p, i));
    double *F = calloc((size_t)(K * fd), sizeof *F), *Z = calloc((size_t)(K * zd), sizeof *Z);
    ck_assert(F && Z);
    double h[MAXZ] = { 0 }, c[MAXZ] = { 0 };
    for (int64_t k = 0; k < zd; k++) z[k] = 0;
    for (int64_t j = 0; j < K; j++) {
        for (int64_t r = 0; r < fd; r++) {
            double a = w[1][r];
            for (int64_t k = 0; k < xf; k++) a += (double)w[0][r * (xf + yf) + k] * mnas_tensor_data(x)[j * xf + k];
            for (int64_t k = 0; k < yf; k++)
                a += (double)w[0][r * (xf + yf) + xf + k] * mnas_tensor_data(y)[j * yf + k];
            F[j * fd + r] = a > 0 ? a : 0;
        }
        ref_cell(lstm, zd, fd, F + j * fd, h, c, w[2], w[3], w[4], w[5]);
        for (int64_t k = 0; k < zd; k++) {
            Z[j * zd + k] = h[k];
            z[k] += h[k] / (double)K;
        }
    }
    double d[MAXZ] = { 0 }, cd[MAXZ] = { 0 };
    *rec = 0;
    for (int64_t j = K - 1; j >= 0; j--) {
        ref_cell(lstm, fd, zd, Z + j * zd, d, cd, w[6], w[7], w[8], w[9]);
        for (int64_t k = 0; k < fd; k++) *rec += (d[k] - F[j * fd + k]) * (d[k] - F[j * fd + k]);
    }
    free(F);
    free(Z);
}

/* The library against the reference: a regular support set (GRU, LSTM),
 * and one longer than mnas_concat joins at once (4200 > 4096 rows: the
 * states are joined in blocks). Float against double: measured differences
 * <= 3.3e-8 in z and <= 2.8e-8 relative in L_r; allowed 1e-6 for both
 * (a few float roundings per step, and the RNNs contract, so errors do not
 * grow with K). */
START_TEST(encoder_matches_reference)
{
    static const int64_t Ks[3] = { 10, 10, 4200 };
    for (int t = 0; t < 3; t++) {
        int lstm = t == 1;
        const int64_t xf = 2, yf = 1, fd = t == 2 ? 3 : 6, zd = t == 2 ? 2 : 5, K = Ks[t];
        enc_fx f;
        enc_init(&f, 12 + (uint64_t)t, lstm ? MNAS_RNN_LSTM : MNAS_RNN_GRU, xf, yf, fd, zd);
        int64_t sx[2] = { K, xf }, sy[2] = { K, yf };
        mnas_tensor *x = mnas_tensor_randn(f.ctx, 2, sx, 0, 1.5), *y = mnas_tensor_randn(f.ctx, 2, sy, 0, 1.5);
        double z[MAXZ], r, zr[MAXZ], rr;
        encode(&f, x, y, NULL, z, &r);
        ref_encode(f.p, lstm, xf, yf, fd, zd, x, y, K, zr, &rr);
        double dz = max_abs_diff(z, zr, zd), dr = fabs(r - rr) / rr;
        ck_assert_msg(dz <= 1e-6 && dr <= 1e-6, "case %d: |dz| %g, rel. dL_r %g", t, dz, dr);
        mnas_tensor_free(x);
        mnas_tensor_free(y);
        enc_free(&f);
    }
}
END_TEST

static void expect_fail(enc_fx *f, mnas_status want, mnas_status got, const char *needle)
{
    ck_assert_msg(got == want, "status %d, expected %d (%s)", (int)got, (int)want, mnas_tape_last_error(f->tp));
    const char *msg = mnas_tape_last_error(f->tp);
    ck_assert_msg(strstr(msg, "mnas_task_encoder_forward") && strstr(msg, needle), "message \"%s\" lacks \"%s\"",
                  msg, needle);
    mnas_tape_reset(f->tp);
}

START_TEST(encoder_bad_input)
{
    enc_fx f;
    enc_init(&f, 3, MNAS_RNN_LSTM, 1, 1, 4, 3);
    int64_t sx[2] = { 4, 1 }, s5[2] = { 5, 1 }, s42[2] = { 4, 2 };
    mnas_tensor *x = mnas_tensor_randn(f.ctx, 2, sx, 0, 1), *y = mnas_tensor_randn(f.ctx, 2, sx, 0, 1);
    mnas_tensor *y5 = mnas_tensor_randn(f.ctx, 2, s5, 0, 1), *x42 = mnas_tensor_randn(f.ctx, 2, s42, 0, 1);
    mnas_tensor *const *w = mnas_params_tensors(f.p);
    mnas_tensor *sentinel = x, *z = sentinel, *rec = sentinel;

    const int64_t dup[4] = { 0, 1, 1, 3 }, out_of_range[4] = { 0, 1, 2, 4 }, neg[4] = { 0, -1, 2, 3 };
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, w, dup, &z, &rec), "repeats 1");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, w, out_of_range, &z, &rec),
                "outside [0, 4)");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, w, neg, &z, &rec), "perm[1] = -1");
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x, y5, w, NULL, &z, &rec), "4 rows but y has 5");
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x42, y, w, NULL, &z, &rec), "features");
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x, x42, w, NULL, &z, &rec), "features");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, NULL, y, w, NULL, &z, &rec), "x is NULL");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, NULL, NULL, &z, &rec),
                "weights are NULL");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, w, NULL, NULL, &rec), "z");
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(NULL, f.tp, x, y, w, NULL, &z, &rec), "NULL");

    /* Wrong weights: another encoder's (GRU: 3 gates, not 4), a transposed
     * matrix, a missing entry. */
    mnas_task_encoder *gru = mnas_task_encoder_create(f.ctx, 1, 1, 4, 3, MNAS_RNN_GRU);
    mnas_params *pg = mnas_params_create(f.ctx);
    ck_assert_int_ge(mnas_task_encoder_add_params(gru, pg, "", 0), 0);
    expect_fail(&f, MNAS_E_SHAPE,
                mnas_task_encoder_forward(f.e, f.tp, x, y, mnas_params_tensors(pg), NULL, &z, &rec), "enc.w_ih");
    mnas_tensor *wt[10];
    for (int k = 0; k < 10; k++) wt[k] = w[k];
    int64_t tr[2] = { 4, 12 }; /* enc.w_hh is [12, 3]: same count as [3, 12], not [4, 12] */
    mnas_tensor *bad = mnas_tensor_zeros(f.ctx, 2, tr);
    wt[3] = bad;
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x, y, wt, NULL, &z, &rec), "enc.w_hh");
    int64_t tr2[2] = { 3, 12 };
    mnas_tensor *bad2 = mnas_tensor_zeros(f.ctx, 2, tr2);
    wt[3] = bad2;
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x, y, wt, NULL, &z, &rec), "[3, 12]");
    wt[3] = NULL;
    expect_fail(&f, MNAS_E_INVALID, mnas_task_encoder_forward(f.e, f.tp, x, y, wt, NULL, &z, &rec), "weight");
    /* A bias given as a column would broadcast wrongly: refused. */
    int64_t col[2] = { 12, 1 };
    mnas_tensor *bcol = mnas_tensor_zeros(f.ctx, 2, col);
    wt[3] = w[3];
    wt[5] = bcol;
    expect_fail(&f, MNAS_E_SHAPE, mnas_task_encoder_forward(f.e, f.tp, x, y, wt, NULL, &z, &rec), "enc.b_hh");
    /* NaN in the support set */
    mnas_tensor_data(y)[2] = NAN;
    expect_fail(&f, MNAS_E_NUMERIC, mnas_task_encoder_forward(f.e, f.tp, x, y, w, NULL, &z, &rec), "NaN");
    mnas_tensor_data(y)[2] = 0.5f;
    /* A stale tape tensor */
    mnas_tensor *tx = mnas_tape_tensor(f.tp, 2, sx, mnas_tensor_data(x));
    mnas_tape_reset(f.tp);
    ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, tx, y, w, NULL, &z, &rec), MNAS_E_STALE);
    mnas_tape_reset(f.tp);
    /* Nothing was written on failure. */
    ck_assert_ptr_eq(z, sentinel);
    ck_assert_ptr_eq(rec, sentinel);
    /* Still works afterwards. */
    ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, x, y, w, NULL, &z, &rec), MNAS_OK);
    ck_assert_int_eq(mnas_task_encoder_forward(f.e, NULL, x, y, w, NULL, &z, &rec), MNAS_E_INVALID);

    /* Constructors and parameter sets. */
    ck_assert_ptr_null(mnas_task_encoder_create(f.ctx, 0, 1, 4, 3, MNAS_RNN_GRU));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "x_features"));
    ck_assert_ptr_null(mnas_task_encoder_create(f.ctx, 1, 1, 65537, 3, MNAS_RNN_GRU));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "f_dim"));
    ck_assert_ptr_null(mnas_task_encoder_create(f.ctx, 1, 1, 4, -3, MNAS_RNN_GRU));
    ck_assert_ptr_null(mnas_task_encoder_create(f.ctx, 1, 1, 4, 3, (mnas_rnn_kind)7));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(f.ctx), "kind"));
    ck_assert_ptr_null(mnas_task_encoder_create(NULL, 1, 1, 4, 3, MNAS_RNN_GRU));
    ck_assert_int_eq(mnas_task_encoder_add_params(f.e, NULL, "", 0), -1);
    ck_assert_int_eq(mnas_task_encoder_add_params(NULL, f.p, "", 0), -1);
    size_t before = mnas_params_count(f.p);
    ck_assert_int_eq(mnas_task_encoder_add_params(f.e, f.p, "g.", 99), -1); /* bad group */
    ck_assert_uint_eq(mnas_params_count(f.p), before);
    ck_assert_uint_eq(mnas_task_encoder_num_params(NULL), 0);
    ck_assert_int_eq(mnas_task_encoder_z_dim(NULL), 0);
    mnas_task_encoder_free(NULL);

    mnas_tensor_free(bad);
    mnas_tensor_free(bad2);
    mnas_tensor_free(bcol);
    mnas_params_free(pg);
    mnas_task_encoder_free(gru);
    mnas_tensor_free(x);
    mnas_tensor_free(y);
    mnas_tensor_free(y5);
    mnas_tensor_free(x42);
    enc_free(&f);
}
END_TEST

/* ---- controller ----------------------------------------------------------- */

START_TEST(controller_alpha_is_a_distribution_per_edge)
{
    mnas_ctx *ctx = new_ctx(21);
    const int64_t E = 5, O = 3, ZD = 6;
    mnas_controller *c = mnas_controller_create(ctx, ZD, 16, E, O);
    ck_assert_ptr_nonnull(c);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_controller_add_params(c, p, "ctl.", 1), 0);
    ck_assert_uint_eq(mnas_controller_num_params(c), 4);
    ck_assert_str_eq(mnas_params_name(p, 0), "ctl.l0.w");
    ck_assert_str_eq(mnas_params_name(p, 3), "ctl.l1.b");
    ck_assert_int_eq(mnas_params_group(p, 2), 1);
    ck_assert_int_eq(mnas_tensor_dim(mnas_params_get(p, 2), 0), E * O);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    int64_t zs[2] = { 1, ZD };
    mnas_tensor *z1 = mnas_tensor_randn(ctx, 2, zs, 0, 0.5), *z2 = mnas_tensor_randn(ctx, 2, zs, 0, 0.5);

    mnas_real a1[15], a2[15];
    for (int round = 0; round < 2; round++) {
        mnas_tape_reset(tp);
        mnas_tensor *al1 = mnas_controller_forward(c, tp, z1, mnas_params_tensors(p));
        mnas_tensor *al2 = mnas_controller_forward(c, tp, z2, mnas_params_tensors(p));
        ck_assert_msg(al1 && al2, "%s", mnas_tape_last_error(tp));
        ck_assert_int_eq(mnas_tensor_ndim(al1), 2);
        ck_assert_int_eq(mnas_tensor_dim(al1, 0), E);
        ck_assert_int_eq(mnas_tensor_dim(al1, 1), O);
        ck_assert(mnas_tensor_requires_grad(al1));
        memcpy(a1, mnas_tensor_data(al1), sizeof a1);
        memcpy(a2, mnas_tensor_data(al2), sizeof a2);
        double dz = 0;
        for (int e = 0; e < E; e++) {
            double s1 = 0, s2 = 0;
            for (int o = 0; o < O; o++) {
                s1 += a1[e * O + o];
                s2 += a2[e * O + o];
                ck_assert(a1[e * O + o] > 0 && a2[e * O + o] > 0);
                dz = fmax(dz, fabs(a1[e * O + o] - a2[e * O + o]));
                /* Near uniform at init: the last layer is U[-1e-3, 1e-3]. */
                if (round == 0) ck_assert_msg(fabs(a1[e * O + o] - 1.0 / O) < 1e-2, "alpha %g", a1[e * O + o]);
            }
            ck_assert(fabs(s1 - 1) < 1e-6 && fabs(s2 - 1) < 1e-6);
        }
        /* Different z give different alpha: barely at init (the last layer
         * is tiny but not zero), clearly once the last layer has grown. */
        if (round == 0) {
            ck_assert_msg(dz > 1e-7, "alpha does not depend on z at init (%g)", dz);
            mnas_rng *r = mnas_rng_create(ctx, 3, 0);
            mnas_real *w1 = mnas_tensor_data(mnas_params_get(p, 2));
            for (int64_t i = 0; i < mnas_tensor_size(mnas_params_get(p, 2)); i++)
                w1[i] = (mnas_real)(2 * mnas_rng_uniform(r) - 1);
            mnas_rng_free(r);
        } else {
            ck_assert_msg(dz > 1e-2, "alpha hardly depends on z (%g)", dz);
            /* and alpha = softmax_rows(W1 relu(W0 z + b0) + b1), by hand */
            const mnas_real *W0 = mnas_tensor_data(mnas_params_get(p, 0)), *b0 = mnas_tensor_data(mnas_params_get(p, 1));
            const mnas_real *W1 = mnas_tensor_data(mnas_params_get(p, 2)), *b1 = mnas_tensor_data(mnas_params_get(p, 3));
            double hid[16], lg[15];
            for (int k = 0; k < 16; k++) {
                double a = b0[k];
                for (int q = 0; q < ZD; q++) a += (double)W0[k * ZD + q] * mnas_tensor_data(z1)[q];
                hid[k] = a > 0 ? a : 0;
            }
            for (int k = 0; k < E * O; k++) {
                lg[k] = b1[k];
                for (int q = 0; q < 16; q++) lg[k] += (double)W1[k * 16 + q] * hid[q];
            }
            for (int e = 0; e < E; e++) {
                double den = 0;
                for (int o = 0; o < O; o++) den += exp(lg[e * O + o]);
                for (int o = 0; o < O; o++)
                    ck_assert_msg(fabs(a1[e * O + o] - exp(lg[e * O + o]) / den) < 1e-6, "alpha[%d][%d] %g vs %g", e, o,
                                  a1[e * O + o], exp(lg[e * O + o]) / den);
            }
            /* At temperature T: softmax_rows(logits / T); T = 0.25 sharpens
             * (the largest weight of each edge grows), T = 1 again gives the
             * same bits as never setting it. */
            ck_assert_double_eq(mnas_controller_temperature(c), 1);
            ck_assert_int_eq(mnas_controller_set_temperature(c, 0.25), MNAS_OK);
            ck_assert_double_eq(mnas_controller_temperature(c), 0.25);
            mnas_tensor *at = mnas_controller_forward(c, tp, z1, mnas_params_tensors(p));
            ck_assert_msg(at != NULL, "%s", mnas_tape_last_error(tp));
            for (int e = 0; e < E; e++) {
                double den = 0, mx1 = 0, mxt = 0;
                for (int o = 0; o < O; o++) den += exp(lg[e * O + o] / 0.25);
                for (int o = 0; o < O; o++) {
                    double want = exp(lg[e * O + o] / 0.25) / den, got = mnas_tensor_data(at)[e * O + o];
                    ck_assert_msg(fabs(got - want) < 1e-5, "T 0.25: alpha[%d][%d] %g vs %g", e, o, got, want);
                    mx1 = fmax(mx1, a1[e * O + o]);
                    mxt = fmax(mxt, got);
                }
                ck_assert_msg(mxt > mx1, "T 0.25 sharpens edge %d: max %g vs %g at T 1", e, mxt, mx1);
            }
            ck_assert_int_eq(mnas_controller_set_temperature(c, 1), MNAS_OK);
            mnas_tensor *a1b = mnas_controller_forward(c, tp, z1, mnas_params_tensors(p));
            ck_assert(a1b && memcmp(mnas_tensor_data(a1b), a1, sizeof a1) == 0);
            /* bad temperatures are refused, naming the value; nothing changes */
            const double bad_t[] = { 0, -1, 1e-4, 2e3, NAN, INFINITY };
            for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++) {
                ck_assert_int_eq(mnas_controller_set_temperature(c, bad_t[i]), MNAS_E_INVALID);
                ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mnas_controller_set_temperature: temperature"));
                ck_assert_double_eq(mnas_controller_temperature(c), 1);
            }
            ck_assert_int_eq(mnas_controller_set_temperature(NULL, 1), MNAS_E_INVALID);
            ck_assert_double_eq(mnas_controller_temperature(NULL), 1);
        }
    }

    /* bad input */
    int64_t zbad[2] = { 1, ZD + 1 }, zrow[1] = { ZD };
    mnas_tensor *zb = mnas_tensor_zeros(ctx, 2, zbad), *z1d = mnas_tensor_zeros(ctx, 1, zrow);
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_controller_forward(c, tp, zb, mnas_params_tensors(p)));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "mnas_controller_forward: z is [1, 7]"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_controller_forward(c, tp, z1d, mnas_params_tensors(p)));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_controller_forward(c, tp, z1, NULL));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "weights are NULL"));
    mnas_tape_reset(tp);
    mnas_controller *c2 = mnas_controller_create(ctx, ZD, 16, E, O + 1);
    mnas_params *p2 = mnas_params_create(ctx);
    ck_assert_int_ge(mnas_controller_add_params(c2, p2, "", 0), 0);
    ck_assert_ptr_null(mnas_controller_forward(c, tp, z1, mnas_params_tensors(p2)));
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "l1.w"));
    mnas_tape_reset(tp);
    ck_assert_ptr_null(mnas_controller_forward(NULL, tp, z1, mnas_params_tensors(p)));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_INVALID);
    ck_assert_ptr_null(mnas_controller_forward(c, NULL, z1, mnas_params_tensors(p)));
    ck_assert_int_eq(mnas_controller_add_params(c, p, "ctl.", 1), -1); /* clash */
    ck_assert_uint_eq(mnas_params_count(p), 4);
    ck_assert_ptr_null(mnas_controller_create(ctx, 0, 16, E, O));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "z_dim"));
    ck_assert_ptr_null(mnas_controller_create(ctx, ZD, 16, 65536, 65536));
    ck_assert_ptr_null(mnas_controller_create(ctx, ZD, 70000, E, O));
    mnas_controller_free(NULL);

    mnas_params_free(p2);
    mnas_controller_free(c2);
    mnas_tensor_free(zb);
    mnas_tensor_free(z1d);
    mnas_tensor_free(z1);
    mnas_tensor_free(z2);
    mnas_tape_free(tp);
    mnas_params_free(p);
    mnas_controller_free(c);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- modulator ------------------------------------------------------------ */

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* out[i] = tau-slice * targets[i] checked element by element against
 * sigmoid(W z + b) computed here in double. */
static void check_modulation(mnas_modulation mode)
{
    mnas_ctx *ctx = new_ctx(31 + (uint64_t)mode);
    const int64_t ZD = 4;
    int64_t s0[2] = { 4, 3 }, s1[1] = { 4 }, s2[4] = { 3, 2, 2, 2 }, zs[2] = { 1, ZD };
    mnas_tensor *tg[4] = { mnas_tensor_randn(ctx, 2, s0, 0, 1), mnas_tensor_randn(ctx, 1, s1, 0, 1),
                           mnas_tensor_randn(ctx, 4, s2, 0, 1), mnas_tensor_randn(ctx, 0, NULL, 0, 1) };
    mnas_modulator *m = mnas_modulator_create(ctx, ZD, 4, tg, mode, 3.0);
    ck_assert_msg(m != NULL, "%s", mnas_ctx_last_error(ctx));
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_modulator_add_params(m, p, "mod.", 0), 0);
    ck_assert_uint_eq(mnas_modulator_num_params(m), 2);
    ck_assert_str_eq(mnas_params_name(p, 0), "mod.fc.w");
    ck_assert_str_eq(mnas_params_name(p, 1), "mod.fc.b");
    const int64_t total = mode == MNAS_MODULATE_ELEMENT ? 12 + 4 + 24 + 1 : 4 + 4 + 3 + 1;
    mnas_tensor *W = mnas_params_get(p, 0), *b = mnas_params_get(p, 1);
    ck_assert_int_eq(mnas_tensor_dim(W, 0), total);
    ck_assert_int_eq(mnas_tensor_dim(W, 1), ZD);
    ck_assert_int_eq(mnas_tensor_size(b), total);
    for (int64_t i = 0; i < total; i++) ck_assert(mnas_tensor_data(b)[i] == (mnas_real)3.0);
    for (int64_t i = 0; i < total * ZD; i++) ck_assert(fabs(mnas_tensor_data(W)[i]) <= 0.5); /* 1/sqrt(4) */
    /* A trained-looking bias, so the check is not only about 3. */
    for (int64_t i = 0; i < total; i++) mnas_tensor_data(b)[i] = (mnas_real)(0.3 * (double)(i % 7) - 0.9);

    mnas_tensor *z = mnas_tensor_randn(ctx, 2, zs, 0, 1);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *out[4] = { NULL, NULL, NULL, NULL };
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), tg, out), MNAS_OK);
    double tau[64];
    for (int64_t r = 0; r < total; r++) {
        double a = mnas_tensor_data(b)[r];
        for (int64_t k = 0; k < ZD; k++) a += (double)mnas_tensor_data(W)[r * ZD + k] * mnas_tensor_data(z)[k];
        tau[r] = sigm(a);
    }
    int64_t off = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(mnas_tensor_ndim(out[i]), mnas_tensor_ndim(tg[i]));
        ck_assert_int_eq(mnas_tensor_size(out[i]), mnas_tensor_size(tg[i]));
        int64_t n = mnas_tensor_size(tg[i]);
        int64_t rows = mnas_tensor_ndim(tg[i]) > 0 ? mnas_tensor_dim(tg[i], 0) : 1, per_row = n / rows;
        for (int64_t j = 0; j < n; j++) {
            double t = mode == MNAS_MODULATE_ELEMENT ? tau[off + j] : tau[off + j / per_row];
            double want = t * mnas_tensor_data(tg[i])[j], got = mnas_tensor_data(out[i])[j];
            ck_assert_msg(fabs(got - want) <= 1e-6 * (1 + fabs(want)), "target %d element %lld: %g vs %g", i,
                          (long long)j, got, want);
        }
        off += mode == MNAS_MODULATE_ELEMENT ? n : rows;
    }
    ck_assert_int_eq(off, total);

    /* Wrong target shapes are refused, and nothing is written. */
    int64_t sw[2] = { 3, 4 };
    mnas_tensor *wrong = mnas_tensor_zeros(ctx, 2, sw);
    mnas_tensor *tg2[4] = { wrong, tg[1], tg[2], tg[3] };
    mnas_tensor *o2[4] = { NULL, NULL, NULL, NULL };
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), tg2, o2), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "mnas_modulator_forward: target 0 is [3, 4]"));
    ck_assert_ptr_null(o2[0]);
    tg2[0] = tg[0];
    tg2[3] = tg[1];
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), tg2, o2), MNAS_E_SHAPE);
    tg2[3] = NULL;
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), tg2, o2), MNAS_E_INVALID);
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), NULL, o2), MNAS_E_INVALID);
    int64_t zb[2] = { 2, ZD };
    mnas_tensor *z2 = mnas_tensor_zeros(ctx, 2, zb);
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z2, mnas_params_tensors(p), tg, o2), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "z is [2, 4]"));
    mnas_tensor *wb[2] = { b, b };
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, wb, tg, o2), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "FC weight"));
    wb[0] = W;
    wb[1] = W;
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, wb, tg, o2), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "FC bias"));
    mnas_tape_reset(tp);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, NULL, tg, o2), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), tg, NULL), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_modulator_forward(NULL, tp, z, mnas_params_tensors(p), tg, o2), MNAS_E_INVALID);
    ck_assert_int_eq(mnas_modulator_forward(m, NULL, z, mnas_params_tensors(p), tg, o2), MNAS_E_INVALID);
    for (int i = 0; i < 4; i++) ck_assert_ptr_null(o2[i]);

    mnas_tensor_free(wrong);
    mnas_tensor_free(z2);
    mnas_tensor_free(z);
    mnas_tape_free(tp);
    mnas_params_free(p);
    mnas_modulator_free(m);
    for (int i = 0; i < 4; i++) mnas_tensor_free(tg[i]);
    mnas_ctx_free(ctx);
}

START_TEST(modulator_element_mode) { check_modulation(MNAS_MODULATE_ELEMENT); }
END_TEST

START_TEST(modulator_channel_mode) { check_modulation(MNAS_MODULATE_CHANNEL); }
END_TEST

/* At init with bias_init 3, tau = sigmoid(3 + W z): exactly sigmoid(3) =
 * 0.9526 for z = 0. For the z an initial encoder gives 10 regression tasks
 * (components in (-1, 1); W ~ U[-1/sqrt(z_dim), 1/sqrt(z_dim)]) measured:
 * element mode tau in [0.878, 0.981], mean 0.9511, sd 0.011; channel mode
 * [0.901, 0.980], mean 0.9510, sd 0.011. Required: mean within 0.01 of
 * 0.95, sd < 0.02, every tau in (0.85, 0.99). */
START_TEST(modulator_initial_scale)
{
    for (int mode = MNAS_MODULATE_ELEMENT; mode <= MNAS_MODULATE_CHANNEL; mode++) {
        enc_fx f;
        enc_init(&f, 41, MNAS_RNN_GRU, 1, 1, 16, 8);
        int64_t s0[2] = { 40, 1 }, s1[2] = { 40, 40 }, s2[1] = { 40 };
        mnas_tensor *tg[3] = { mnas_tensor_randn(f.ctx, 2, s0, 0, 1), mnas_tensor_randn(f.ctx, 2, s1, 0, 1),
                               mnas_tensor_randn(f.ctx, 1, s2, 0, 1) };
        mnas_modulator *m = mnas_modulator_create(f.ctx, 8, 3, tg, (mnas_modulation)mode, 3.0);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(mnas_modulator_add_params(m, f.p, "mod.", 0), 10);
        mnas_tensor *const *w = mnas_params_tensors(f.p);
        int64_t zs[2] = { 1, 8 };
        mnas_tensor *z0 = mnas_tensor_zeros(f.ctx, 2, zs);
        mnas_tensor *out[3];
        ck_assert_int_eq(mnas_modulator_forward(m, f.tp, z0, w + 10, tg, out), MNAS_OK);
        for (int i = 0; i < 3; i++)
            for (int64_t j = 0; j < mnas_tensor_size(tg[i]); j++) {
                double t = mnas_tensor_data(tg[i])[j];
                ck_assert(fabs(mnas_tensor_data(out[i])[j] - sigm(3.0) * t) <= 1e-6 * (1 + fabs(t)));
            }
        mnas_regression_options ro = MNAS_REGRESSION_OPTIONS_INIT;
        double lo = 1, hi = 0, sum = 0, sum2 = 0;
        int64_t cnt = 0;
        for (int k = 0; k < 10; k++) {
            mnas_task *t = mnas_regression_task(f.ctx, &ro, 9, (uint64_t)k, -1);
            mnas_tape_reset(f.tp);
            mnas_tensor *z;
            ck_assert_int_eq(mnas_task_encoder_forward(f.e, f.tp, mnas_task_support_x(t), mnas_task_support_y(t), w,
                                                       NULL, &z, NULL),
                             MNAS_OK);
            ck_assert_int_eq(mnas_modulator_forward(m, f.tp, z, w + 10, tg, out), MNAS_OK);
            for (int i = 0; i < 3; i++)
                for (int64_t j = 0; j < mnas_tensor_size(tg[i]); j++) {
                    double tv = mnas_tensor_data(tg[i])[j];
                    if (fabs(tv) < 1e-3) continue;
                    double s = mnas_tensor_data(out[i])[j] / tv;
                    lo = fmin(lo, s);
                    hi = fmax(hi, s);
                    sum += s;
                    sum2 += s * s;
                    cnt++;
                }
            mnas_task_free(t);
        }
        double mean = sum / (double)cnt, sd = sqrt(fmax(sum2 / (double)cnt - mean * mean, 0.0));
        ck_assert_msg(lo > 0.85 && hi < 0.99 && fabs(mean - 0.95) < 0.01 && sd < 0.02,
                      "mode %d: tau in [%g, %g], mean %g, sd %g", mode, lo, hi, mean, sd);
        mnas_tensor_free(z0);
        mnas_modulator_free(m);
        for (int i = 0; i < 3; i++) mnas_tensor_free(tg[i]);
        enc_free(&f);
    }
}
END_TEST

START_TEST(modulator_bad_construction)
{
    mnas_ctx *ctx = new_ctx(1);
    int64_t s[2] = { 2, 3 };
    mnas_tensor *t = mnas_tensor_zeros(ctx, 2, s);
    mnas_tensor *ts[2] = { t, NULL };
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 2, ts, MNAS_MODULATE_ELEMENT, 3.0));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "target 1"));
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 0, ts, MNAS_MODULATE_ELEMENT, 3.0));
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 1, NULL, MNAS_MODULATE_ELEMENT, 3.0));
    ck_assert_ptr_null(mnas_modulator_create(ctx, 0, 1, ts, MNAS_MODULATE_ELEMENT, 3.0));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "z_dim"));
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 1, ts, (mnas_modulation)9, 3.0));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "mode"));
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 1, ts, MNAS_MODULATE_CHANNEL, NAN));
    ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "bias_init"));
    ck_assert_ptr_null(mnas_modulator_create(NULL, 4, 1, ts, MNAS_MODULATE_CHANNEL, 3.0));
    /* A tape tensor made stale by a reset. */
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *tt = mnas_tape_tensor(tp, 2, s, NULL);
    mnas_tape_reset(tp);
    ts[0] = tt;
    ck_assert_ptr_null(mnas_modulator_create(ctx, 4, 1, ts, MNAS_MODULATE_CHANNEL, 3.0));
    /* The targets' shapes are copied: the modulator outlives them. */
    ts[0] = t;
    mnas_modulator *m = mnas_modulator_create(ctx, 4, 1, ts, MNAS_MODULATE_CHANNEL, 0.0);
    ck_assert_ptr_nonnull(m);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_modulator_add_params(m, p, NULL, 0), 0);
    ck_assert_int_eq(mnas_modulator_add_params(m, p, NULL, 0), -1);
    ck_assert_int_eq(mnas_modulator_add_params(m, NULL, "", 0), -1);
    ck_assert_uint_eq(mnas_params_count(p), 2);
    ck_assert_int_eq(mnas_tensor_dim(mnas_params_get(p, 0), 0), 2); /* channel mode: one per row */
    mnas_tensor_free(t);
    int64_t zs[2] = { 1, 4 };
    mnas_tensor *z = mnas_tensor_zeros(ctx, 2, zs), *t2 = mnas_tensor_randn(ctx, 2, s, 0, 1), *out;
    ck_assert_int_eq(mnas_modulator_forward(m, tp, z, mnas_params_tensors(p), &t2, &out), MNAS_OK);
    for (int j = 0; j < 6; j++) ck_assert(fabs(mnas_tensor_data(out)[j] - 0.5 * mnas_tensor_data(t2)[j]) < 1e-7);
    mnas_modulator_free(NULL);
    ck_assert_uint_eq(mnas_modulator_num_params(NULL), 0);
    mnas_tensor_free(z);
    mnas_tensor_free(t2);
    mnas_params_free(p);
    mnas_modulator_free(m);
    mnas_tape_free(tp);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("encoder");
    TCase *te = tcase_create("task_encoder");
    tcase_set_timeout(te, 600);
    tcase_add_test(te, encoder_parameters_and_shapes);
    tcase_add_test(te, z_depends_on_the_task_not_on_the_order);
    tcase_add_test(te, perm_equals_prepermuted_data_bitwise);
    tcase_add_test(te, recon_loss_decreases_under_adam);
    tcase_add_test(te, encoder_bad_input);
    tcase_add_test(te, encoder_matches_reference);
    suite_add_tcase(s, te);
    TCase *tc = tcase_create("controller");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, controller_alpha_is_a_distribution_per_edge);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("modulator");
    tcase_set_timeout(tm, 600);
    tcase_add_test(tm, modulator_element_mode);
    tcase_add_test(tm, modulator_channel_mode);
    tcase_add_test(tm, modulator_initial_scale);
    tcase_add_test(tm, modulator_bad_construction);
    suite_add_tcase(s, tm);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
