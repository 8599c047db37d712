/* Finite-difference checks, in double precision, of the task encoder, the
 * controller and the modulator: orders 1 to 3 (the gradient, the gradient
 * of v·grad — a Hessian-vector product through the recorded backward pass —
 * and the gradient of w·grad(v·grad)), each with the last pass recorded and
 * not, with respect to every weight and input that M-NAS differentiates. Linked with the double build of the library (mnas_f64).
 *
 * Outputs y are reduced to scalars by f = Σ w1⊙y + Σ w2⊙y² with fixed random
 * weights (as in test_f64_gradcheck.c), so no gradient is trivially constant
 * (the rows of alpha sum to 1) and second derivatives of linear maps are
 * not zero. Tolerances are the double build's defaults (step 1e-6,
 * |analytic - numeric| <= 1e-6 + 1e-5 |numeric|); the ReLUs of F and of the
 * controller would need a pre-activation within 1e-6 of zero to break a
 * check, which the fixed seeds avoid (every check reports its worst ratio,
 * and the test asserts <= 1). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <mnas/mnas.h>

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

static mnas_ctx *new_ctx(uint64_t seed)
{
    mnas_ctx *ctx;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = seed;
    ck_assert_int_eq(mnas_ctx_create(&ctx, &co), MNAS_OK);
    return ctx;
}

/* Σ w1⊙y + Σ w2⊙y² */
static mnas_tensor *reduce(mnas_tape *tp, mnas_tensor *y, mnas_tensor *w1, mnas_tensor *w2)
{
    return mnas_add(tp, mnas_sum(tp, mnas_mul(tp, y, w1)), mnas_sum(tp, mnas_mul(tp, mnas_square(tp, y), w2)));
}

/* Reduction weights of a shape. */
static void make_reducers(mnas_ctx *ctx, int ndim, const int64_t *shape, mnas_tensor **w1, mnas_tensor **w2)
{
    *w1 = mnas_tensor_randn(ctx, ndim, shape, 0.0, 1.0);
    *w2 = mnas_tensor_randn(ctx, ndim, shape, 0.0, 0.5);
    ck_assert(*w1 && *w2);
}

static void run_check(mnas_ctx *ctx, mnas_gradcheck_fn f, void *user, size_t n, mnas_tensor *const *in,
                      const char *what)
{
    /* Orders 1 to 3, the last pass recorded or not (order 3 natively only). */
    int modes = getenv("MNAS_TEST_UNDER_VALGRIND") ? 4 : 6;
    for (int mode = 0; mode < modes; mode++) {
        mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
        int order = 1 + mode / 2;
        o.order = order;
        o.record_last = mode % 2;
        double worst = -1;
        mnas_status st = mnas_gradcheck(ctx, f, user, n, in, &o, &worst);
        ck_assert_msg(st == MNAS_OK, "%s, order %d%s: %s", what, order, mode % 2 ? " (recorded)" : "",
                      mnas_ctx_last_error(ctx));
        ck_assert_msg(worst >= 0.0 && worst <= 1.0, "%s, order %d: worst %g", what, order, worst);
    }
}

/* ---- task encoder ---------------------------------------------------------- */

typedef struct {
    mnas_task_encoder *e;
    mnas_tensor *x, *y, *w1, *w2;
    const int64_t *perm;
    int recon; /* check L_r instead of z */
} enc_case;

static mnas_tensor *enc_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    enc_case *c = user;
    mnas_tensor *z = NULL, *rec = NULL;
    if (mnas_task_encoder_forward(c->e, tp, c->x, c->y, in, c->perm, &z, c->recon ? &rec : NULL) != MNAS_OK)
        return NULL;
    return c->recon ? rec : reduce(tp, z, c->w1, c->w2);
}

static void check_encoder(mnas_rnn_kind kind, double scale)
{
    mnas_ctx *ctx = new_ctx(100 + (uint64_t)kind);
    const int64_t K = 3, XF = 2, YF = 1, FD = 3, ZD = 4;
    mnas_task_encoder *e = mnas_task_encoder_create(ctx, XF, YF, FD, ZD, kind);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(mnas_task_encoder_set_input_scale(e, scale), MNAS_OK);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_task_encoder_add_params(e, p, "", 0), 0);
    /* Weights larger than the init (U[-1, 1]) so that the gates are not all
     * near 1/2 and the second derivatives are substantial. */
    mnas_rng *r = mnas_rng_create(ctx, 7, (uint64_t)kind);
    ck_assert_int_eq(mnas_params_init(p, r), MNAS_OK);
    for (size_t i = 0; i < mnas_params_count(p); i++) {
        mnas_tensor *t = mnas_params_get(p, i);
        for (int64_t j = 0; j < mnas_tensor_size(t); j++) mnas_tensor_data(t)[j] *= 1.6;
    }
    mnas_rng_free(r);
    int64_t sx[2] = { K, XF }, sy[2] = { K, YF }, sz[2] = { 1, ZD };
    enc_case c = { e, mnas_tensor_randn(ctx, 2, sx, 0, 1), mnas_tensor_randn(ctx, 2, sy, 0, 1), NULL, NULL, NULL, 0 };
    make_reducers(ctx, 2, sz, &c.w1, &c.w2);
    static const int64_t perm[3] = { 2, 0, 1 };
    c.perm = perm;

    /* Every ReLU input of F away from the kink (the checks would be
     * meaningless otherwise). */
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *xy[2] = { c.x, c.y };
    mnas_tensor *pre = mnas_linear(tp, mnas_scale(tp, mnas_concat(tp, 2, xy, 1), scale), mnas_params_get(p, 0),
                                   mnas_params_get(p, 1));
    ck_assert_ptr_nonnull(pre);
    int active = 0;
    for (int64_t j = 0; j < mnas_tensor_size(pre); j++) {
        ck_assert(fabs(mnas_tensor_data(pre)[j]) > 1e-3);
        active += mnas_tensor_data(pre)[j] > 0;
    }
    ck_assert_int_gt(active, 2);
    mnas_tape_free(tp);

    mnas_tensor *const *w = mnas_params_tensors(p);
    size_t n = mnas_params_count(p);
    c.recon = 0;
    run_check(ctx, enc_fn, &c, n, w, kind == MNAS_RNN_GRU ? "GRU encoder z" : "LSTM encoder z");
    c.recon = 1;
    run_check(ctx, enc_fn, &c, n, w, kind == MNAS_RNN_GRU ? "GRU encoder L_r" : "LSTM encoder L_r");
    /* Identity order too (no gather). */
    c.perm = NULL;
    run_check(ctx, enc_fn, &c, n, w, kind == MNAS_RNN_GRU ? "GRU encoder L_r, perm NULL" : "LSTM L_r, perm NULL");

    mnas_tensor_free(c.x);
    mnas_tensor_free(c.y);
    mnas_tensor_free(c.w1);
    mnas_tensor_free(c.w2);
    mnas_params_free(p);
    mnas_task_encoder_free(e);
    mnas_ctx_free(ctx);
}

START_TEST(encoder_gru_gradients) { check_encoder(MNAS_RNN_GRU, 1); }
END_TEST

START_TEST(encoder_lstm_gradients) { check_encoder(MNAS_RNN_LSTM, 1); }
END_TEST

/* mnas_task_encoder_set_input_scale: gradients through the scaled input
 * (orders as above); z of an encoder with scale s and f.w / s equals z of
 * the unscaled encoder with f.w; the initialisation of f.w is 1 / s wider
 * (f.b's is not); bad scales refused, the encoder unchanged. */
START_TEST(encoder_input_scale)
{
    check_encoder(MNAS_RNN_GRU, 0.3);
    mnas_ctx *ctx = new_ctx(5);
    const int64_t K = 4, XF = 50, YF = 3;
    mnas_task_encoder *a = mnas_task_encoder_create(ctx, XF, YF, 6, 5, MNAS_RNN_LSTM),
                      *b = mnas_task_encoder_create(ctx, XF, YF, 6, 5, MNAS_RNN_LSTM);
    ck_assert(a && b);
    const double s = 0.125; /* a power of 2: f.w / s is exact */
    ck_assert_int_eq(mnas_task_encoder_set_input_scale(b, s), MNAS_OK);
    static const double bad[4] = { 0, -0.5, 1.5, NAN };
    for (int k = 0; k < 4; k++) {
        mnas_ctx_clear_error(ctx);
        ck_assert_int_eq(mnas_task_encoder_set_input_scale(b, bad[k]), MNAS_E_INVALID);
        ck_assert_ptr_nonnull(strstr(mnas_ctx_last_error(ctx), "scale"));
    }
    mnas_params *pa = mnas_params_create(ctx), *pb = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_task_encoder_add_params(a, pa, "", 0), 0);
    ck_assert_int_eq(mnas_task_encoder_add_params(b, pb, "", 0), 0);
    mnas_rng *r = mnas_rng_create(ctx, 3, 0);
    ck_assert_int_eq(mnas_params_init(pb, r), MNAS_OK);
    mnas_rng_free(r);
    /* the bounds of the initialisation */
    const double fan = (double)(XF + YF), wb = 1 / (s * sqrt(fan)), bb = 1 / sqrt(fan);
    double mw = 0, mb = 0;
    mnas_tensor *fw = mnas_params_get(pb, 0), *fb = mnas_params_get(pb, 1);
    for (int64_t j = 0; j < mnas_tensor_size(fw); j++) mw = fmax(mw, fabs(mnas_tensor_data(fw)[j]));
    for (int64_t j = 0; j < mnas_tensor_size(fb); j++) mb = fmax(mb, fabs(mnas_tensor_data(fb)[j]));
    ck_assert_msg(mw <= wb && mw > 0.9 * wb, "f.w: largest |w| %g, bound %g", mw, wb);
    ck_assert_msg(mb <= bb && mb > 0.5 * bb, "f.b: largest |b| %g, bound %g", mb, bb);
    /* a gets b's weights with f.w multiplied by s: the same z */
    for (size_t i = 0; i < mnas_params_count(pb); i++) {
        mnas_tensor *src = mnas_params_get(pb, i);
        mnas_tensor *dst = mnas_params_get(pa, i);
        for (int64_t j = 0; j < mnas_tensor_size(src); j++)
            mnas_tensor_data(dst)[j] = mnas_tensor_data(src)[j] * (i == 0 ? s : 1);
    }
    int64_t sx[2] = { K, XF }, sy[2] = { K, YF };
    mnas_tensor *x = mnas_tensor_rand(ctx, 2, sx, 0, 1), *y = mnas_tensor_rand(ctx, 2, sy, 0, 1);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *za, *zb, *ra, *rb;
    ck_assert_int_eq(mnas_task_encoder_forward(a, tp, x, y, mnas_params_tensors(pa), NULL, &za, &ra), MNAS_OK);
    ck_assert_int_eq(mnas_task_encoder_forward(b, tp, x, y, mnas_params_tensors(pb), NULL, &zb, &rb), MNAS_OK);
    double spread = 0;
    for (int64_t j = 0; j < mnas_tensor_size(za); j++) {
        ck_assert_msg(fabs(mnas_tensor_data(za)[j] - mnas_tensor_data(zb)[j]) <= 1e-12, "z[%lld]: %.17g vs %.17g",
                      (long long)j, mnas_tensor_data(za)[j], mnas_tensor_data(zb)[j]);
        spread += fabs(mnas_tensor_data(za)[j]);
    }
    ck_assert(spread > 1e-3); /* z is not trivially 0 */
    ck_assert(fabs(mnas_tensor_data(ra)[0] - mnas_tensor_data(rb)[0]) <= 1e-12 * fabs(mnas_tensor_data(ra)[0]) + 1e-15);
    mnas_tape_free(tp);
    mnas_tensor_free(x);
    mnas_tensor_free(y);
    mnas_params_free(pa);
    mnas_params_free(pb);
    mnas_task_encoder_free(a);
    mnas_task_encoder_free(b);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- controller -------------------------------------------------------------- */

typedef struct {
    mnas_controller *c;
    mnas_tensor *w1, *w2;
} ctrl_case;

/* in[0..3]: the controller's weights, in[4]: z */
static mnas_tensor *ctrl_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    ctrl_case *c = user;
    return reduce(tp, mnas_controller_forward(c->c, tp, in[4], in), c->w1, c->w2);
}

START_TEST(controller_gradients)
{
    mnas_ctx *ctx = new_ctx(200);
    const int64_t ZD = 4, HID = 5, E = 3, O = 4;
    ctrl_case c = { mnas_controller_create(ctx, ZD, HID, E, O), NULL, NULL };
    ck_assert_ptr_nonnull(c.c);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_controller_add_params(c.c, p, "", 0), 0);
    /* The last layer starts at U[-1e-3, 1e-3]; make it O(1) so that the
     * softmax is far from uniform and every term matters. */
    mnas_tensor *w1 = mnas_params_get(p, 2), *b1 = mnas_params_get(p, 3);
    mnas_rng *r = mnas_rng_create(ctx, 3, 0);
    for (int64_t j = 0; j < mnas_tensor_size(w1); j++) mnas_tensor_data(w1)[j] = 2 * mnas_rng_uniform(r) - 1;
    for (int64_t j = 0; j < mnas_tensor_size(b1); j++) mnas_tensor_data(b1)[j] = mnas_rng_uniform(r) - 0.5;
    mnas_rng_free(r);
    int64_t sz[2] = { 1, ZD }, sa[2] = { E, O };
    mnas_tensor *z = mnas_tensor_randn(ctx, 2, sz, 0, 1);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(z, 1), MNAS_OK);
    make_reducers(ctx, 2, sa, &c.w1, &c.w2);

    /* hidden pre-activations away from the ReLU kink */
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    mnas_tensor *pre = mnas_linear(tp, z, mnas_params_get(p, 0), mnas_params_get(p, 1));
    int active = 0;
    for (int64_t j = 0; j < HID; j++) {
        ck_assert(fabs(mnas_tensor_data(pre)[j]) > 1e-3);
        active += mnas_tensor_data(pre)[j] > 0;
    }
    ck_assert_int_gt(active, 1);
    mnas_tape_free(tp);

    mnas_tensor *in[5];
    for (int k = 0; k < 4; k++) in[k] = mnas_params_get(p, (size_t)k);
    in[4] = z;
    run_check(ctx, ctrl_fn, &c, 5, in, "controller alpha");
    /* alpha = softmax(logits / T): the temperature's scaling is on the tape,
     * first and second order, for a sharpening and a flattening T. */
    ck_assert_int_eq(mnas_controller_set_temperature(c.c, 0.4), MNAS_OK);
    run_check(ctx, ctrl_fn, &c, 5, in, "controller alpha, temperature 0.4");
    ck_assert_int_eq(mnas_controller_set_temperature(c.c, 2.5), MNAS_OK);
    run_check(ctx, ctrl_fn, &c, 5, in, "controller alpha, temperature 2.5");

    mnas_tensor_free(z);
    mnas_tensor_free(c.w1);
    mnas_tensor_free(c.w2);
    mnas_params_free(p);
    mnas_controller_free(c.c);
    mnas_ctx_free(ctx);
}
END_TEST

/* ---- modulator ----------------------------------------------------------------- */

enum { NT = 3 };

typedef struct {
    mnas_modulator *m;
    mnas_tensor *w1[NT], *w2[NT];
} mod_case;

/* in[0..1]: FC weight and bias, in[2]: z, in[3..5]: the targets */
static mnas_tensor *mod_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    mod_case *c = user;
    mnas_tensor *out[NT];
    if (mnas_modulator_forward(c->m, tp, in[2], in, in + 3, out) != MNAS_OK) return NULL;
    mnas_tensor *f = reduce(tp, out[0], c->w1[0], c->w2[0]);
    for (int i = 1; i < NT; i++) f = mnas_add(tp, f, reduce(tp, out[i], c->w1[i], c->w2[i]));
    return f;
}

static void check_modulator(mnas_modulation mode, mnas_modulator_form form)
{
    mnas_ctx *ctx = new_ctx(300 + (uint64_t)mode);
    const int64_t ZD = 3;
    int ndim[NT] = { 2, 1, 4 };
    int64_t shapes[NT][4] = { { 3, 2 }, { 3 }, { 2, 1, 2, 2 } };
    mnas_tensor *in[3 + NT];
    for (int i = 0; i < NT; i++) {
        in[3 + i] = mnas_tensor_randn(ctx, ndim[i], shapes[i], 0, 1);
        ck_assert_ptr_nonnull(in[3 + i]);
    }
    mod_case c;
    c.m = mnas_modulator_create(ctx, ZD, NT, in + 3, mode, 3.0);
    ck_assert_ptr_nonnull(c.m);
    ck_assert_int_eq(mnas_modulator_set_form(c.m, form), MNAS_OK);
    mnas_params *p = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_modulator_add_params(c.m, p, "", 0), 0);
    /* A bias around 0 (sigmoid at its most curved) instead of 3. */
    mnas_tensor *b = mnas_params_get(p, 1);
    for (int64_t j = 0; j < mnas_tensor_size(b); j++) mnas_tensor_data(b)[j] = 0.4 * (double)(j % 5) - 0.8;
    int64_t sz[2] = { 1, ZD };
    in[0] = mnas_params_get(p, 0);
    in[1] = b;
    in[2] = mnas_tensor_randn(ctx, 2, sz, 0, 1);
    for (int k = 2; k < 3 + NT; k++) ck_assert_int_eq(mnas_tensor_set_requires_grad(in[k], 1), MNAS_OK);
    for (int i = 0; i < NT; i++) make_reducers(ctx, ndim[i], shapes[i], &c.w1[i], &c.w2[i]);

    static const char *const forms[4] = { "sigmoid", "2 sigmoid", "1 + tanh", "FiLM" };
    char what[64];
    snprintf(what, sizeof what, "modulator (%s, %s)", mode == MNAS_MODULATE_ELEMENT ? "element" : "channel",
             forms[form]);
    run_check(ctx, mod_fn, &c, 3 + NT, in, what);

    for (int i = 0; i < NT; i++) {
        mnas_tensor_free(c.w1[i]);
        mnas_tensor_free(c.w2[i]);
        mnas_tensor_free(in[3 + i]);
    }
    mnas_tensor_free(in[2]);
    mnas_params_free(p);
    mnas_modulator_free(c.m);
    mnas_ctx_free(ctx);
}

START_TEST(modulator_element_gradients) { check_modulator(MNAS_MODULATE_ELEMENT, MNAS_MODULATOR_SIGMOID); }
END_TEST

START_TEST(modulator_channel_gradients) { check_modulator(MNAS_MODULATE_CHANNEL, MNAS_MODULATOR_SIGMOID); }
END_TEST

/* The other forms (issue 17): 2 sigmoid, 1 + tanh and FiLM (target 1 is
 * one-dimensional, so it gets a shift beta), element and channel. */
START_TEST(modulator_form_gradients)
{
    static const mnas_modulator_form forms[3] = { MNAS_MODULATOR_TWO_SIGMOID, MNAS_MODULATOR_ONE_PLUS_TANH,
                                                  MNAS_MODULATOR_FILM };
    check_modulator(_i % 2 ? MNAS_MODULATE_CHANNEL : MNAS_MODULATE_ELEMENT, forms[_i / 2]);
}
END_TEST

/* ---- the chain M-NAS differentiates: z -> alpha and z -> tau ⊙ w --------------
 * One scalar from alpha and the modulated weights, through z, with respect to
 * the encoder's weights: the encoder's gradients arrive through both heads. */

typedef struct {
    mnas_task_encoder *e;
    mnas_controller *c;
    mnas_modulator *m;
    mnas_tensor *x, *y, *target, *wa1, *wa2, *wm1, *wm2;
    size_t ne;
    mnas_tensor *const *wc, *const *wmod;
} chain_case;

static mnas_tensor *chain_fn(mnas_tape *tp, mnas_tensor *const *in, void *user)
{
    chain_case *c = user;
    static const int64_t perm[3] = { 1, 2, 0 };
    mnas_tensor *z, *rec, *out;
    if (mnas_task_encoder_forward(c->e, tp, c->x, c->y, in, perm, &z, &rec) != MNAS_OK) return NULL;
    mnas_tensor *alpha = mnas_controller_forward(c->c, tp, z, c->wc);
    if (mnas_modulator_forward(c->m, tp, z, c->wmod, &c->target, &out) != MNAS_OK) return NULL;
    mnas_tensor *f = mnas_add(tp, reduce(tp, alpha, c->wa1, c->wa2), reduce(tp, out, c->wm1, c->wm2));
    return mnas_add(tp, f, mnas_scale(tp, rec, 0.01)); /* + beta L_r */
}

START_TEST(encoder_through_controller_and_modulator)
{
    mnas_ctx *ctx = new_ctx(400);
    chain_case c;
    memset(&c, 0, sizeof c);
    c.e = mnas_task_encoder_create(ctx, 1, 1, 3, 4, MNAS_RNN_GRU);
    c.c = mnas_controller_create(ctx, 4, 4, 2, 3);
    int64_t st[2] = { 2, 2 }, sz[2] = { 3, 1 }, sa[2] = { 2, 3 };
    c.target = mnas_tensor_randn(ctx, 2, st, 0, 1);
    c.m = mnas_modulator_create(ctx, 4, 1, &c.target, MNAS_MODULATE_ELEMENT, 0.5);
    ck_assert(c.e && c.c && c.m);
    mnas_params *pe = mnas_params_create(ctx), *pc = mnas_params_create(ctx), *pm = mnas_params_create(ctx);
    ck_assert_int_eq(mnas_task_encoder_add_params(c.e, pe, "", 0), 0);
    ck_assert_int_eq(mnas_controller_add_params(c.c, pc, "", 0), 0);
    ck_assert_int_eq(mnas_modulator_add_params(c.m, pm, "", 0), 0);
    mnas_tensor *l1 = mnas_params_get(pc, 2);
    for (int64_t j = 0; j < mnas_tensor_size(l1); j++) mnas_tensor_data(l1)[j] = 0.3 * (double)(j % 7) - 0.9;
    c.wc = mnas_params_tensors(pc);
    c.wmod = mnas_params_tensors(pm);
    c.x = mnas_tensor_randn(ctx, 2, sz, 0, 1.5);
    c.y = mnas_tensor_randn(ctx, 2, sz, 0, 1.5);
    make_reducers(ctx, 2, sa, &c.wa1, &c.wa2);
    make_reducers(ctx, 2, st, &c.wm1, &c.wm2);
    run_check(ctx, chain_fn, &c, mnas_params_count(pe), mnas_params_tensors(pe), "encoder -> controller, modulator");
    mnas_tensor *fr[7] = { c.x, c.y, c.target, c.wa1, c.wa2, c.wm1, c.wm2 };
    for (int i = 0; i < 7; i++) mnas_tensor_free(fr[i]);
    mnas_params_free(pe);
    mnas_params_free(pc);
    mnas_params_free(pm);
    mnas_task_encoder_free(c.e);
    mnas_controller_free(c.c);
    mnas_modulator_free(c.m);
    mnas_ctx_free(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("f64_encoder");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, encoder_gru_gradients);
    tcase_add_test(tc, encoder_lstm_gradients);
    tcase_add_test(tc, encoder_input_scale);
    tcase_add_test(tc, controller_gradients);
    tcase_add_test(tc, modulator_element_gradients);
    tcase_add_test(tc, modulator_channel_gradients);
    tcase_add_loop_test(tc, modulator_form_gradients, 0, 6);
    tcase_add_test(tc, encoder_through_controller_and_modulator);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
