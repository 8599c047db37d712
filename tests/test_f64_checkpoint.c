/* Checkpointed segments (lib/autodiff/checkpoint.c, what
 * MNAS_INNER_RECOMPUTE_CELLS makes of each supernet cell), in double
 * precision: the gradient through a segment equals the unsegmented one bit
 * for bit and central finite differences, with an input given twice, inputs
 * whose gradients already hold terms from outside the segment and an input
 * the segment never reads; a recorded (second-order) pass through a segment
 * is refused with a message and leaves the tape usable; an error inside the
 * segment reaches the caller with its message; without gradients the
 * segment is a plain call. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mnas.h>

#include "autodiff/autodiff_internal.h" /* the tape's scratch tape (aux) */
#include "autodiff/checkpoint.h"

_Static_assert(sizeof(mnas_real) == sizeof(double), "this test needs the double build");

enum { NIN = 7 };

/* ins: x, x again, w [3, 2, 3, 3], gamma [3], beta [3], alpha [2], unused.
 * mix(alpha, BN(conv(relu(x), w)), conv(tanh(x), w)): [2, 3, 5, 5]. */
static mnas_tensor *segment(mnas_tape *tp, mnas_tensor *const *ins, const void *user)
{
    const int *bad = user;
    mnas_tensor *a = mnas_batch_norm(tp, mnas_conv2d(tp, mnas_relu(tp, ins[0]), ins[2], NULL, 1, 1, 1, 1), ins[3],
                                     ins[4], 1e-5);
    /* bad: a weight of the wrong shape, to fail inside the segment */
    mnas_tensor *b = mnas_conv2d(tp, mnas_tanh(tp, ins[1]), *bad ? ins[3] : ins[2], NULL, 1, 1, 1, 1);
    mnas_tensor *ys[2] = { a, b };
    int64_t idx[2] = { 0, 1 };
    return a && b ? mnas_mix(tp, ins[5], 2, ys, idx) : NULL;
}

typedef struct {
    mnas_ctx *ctx;
    mnas_tensor *x0, *w, *g, *b, *alpha, *unused, *c;
} fixture;

static mnas_tensor *rnd(mnas_ctx *ctx, int ndim, const int64_t *shape, double lo, double hi)
{
    mnas_tensor *t = mnas_tensor_rand(ctx, ndim, shape, lo, hi);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mnas_tensor_set_requires_grad(t, 1), MNAS_OK);
    return t;
}

static void fx_init(fixture *f)
{
    ck_assert_int_eq(mnas_ctx_create(&f->ctx, NULL), MNAS_OK);
    int64_t xs[4] = { 2, 2, 5, 5 }, ws[4] = { 3, 2, 3, 3 }, cs[1] = { 3 }, as[1] = { 2 }, ys[4] = { 2, 3, 5, 5 };
    f->x0 = rnd(f->ctx, 4, xs, -1, 1);
    f->w = rnd(f->ctx, 4, ws, -0.5, 0.5);
    f->g = rnd(f->ctx, 1, cs, 0.5, 1.5);
    f->b = rnd(f->ctx, 1, cs, -0.5, 0.5);
    f->alpha = rnd(f->ctx, 1, as, 0.2, 1);
    f->unused = rnd(f->ctx, 1, as, -1, 1);
    f->c = mnas_tensor_rand(f->ctx, 4, ys, -1, 1);
    ck_assert_ptr_nonnull(f->c);
}

static void fx_free(fixture *f)
{
    mnas_tensor *t[7] = { f->x0, f->w, f->g, f->b, f->alpha, f->unused, f->c };
    for (int i = 0; i < 7; i++) mnas_tensor_free(t[i]);
    mnas_ctx_free(f->ctx);
}

/* L = <y, c> + sum(y^2) / 2 + sum(x^2) + sum(alpha^2) with y = seg(x, x, w,
 * g, b, alpha, unused) and x = 1.5 x0 (a tape tensor): the gradient
 * reaching the segment (c + y) depends on its inputs. The squares of x and
 * alpha come after the segment, so the backward pass reaches them first:
 * x's and alpha's gradients hold terms when it reaches the segment. */
static mnas_tensor *objective(fixture *f, mnas_tape *tp, int checkpoint, int bad)
{
    mnas_tensor *x = mnas_scale(tp, f->x0, 1.5);
    mnas_tensor *ins[NIN] = { x, x, f->w, f->g, f->b, f->alpha, f->unused };
    mnas_tensor *y = checkpoint ? mnas__checkpoint(tp, "test segment", segment, &bad, sizeof bad, NIN, ins)
                                : segment(tp, ins, &bad);
    if (!y) return NULL;
    mnas_tensor *L = mnas_sum(tp, mnas_mul(tp, y, f->c));
    L = mnas_add(tp, L, mnas_scale(tp, mnas_sum(tp, mnas_square(tp, y)), 0.5));
    L = mnas_add(tp, L, mnas_sum(tp, mnas_square(tp, x)));
    return mnas_add(tp, L, mnas_sum(tp, mnas_square(tp, f->alpha)));
}

START_TEST(gradient_matches_unsegmented_and_finite_differences)
{
    fixture f;
    fx_init(&f);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(f.ctx, &tp), MNAS_OK);
    mnas_tensor *wrt[6] = { f.x0, f.w, f.g, f.b, f.alpha, f.unused };
    mnas_real *ref[6];
    double L[2];
    for (int k = 0; k < 2; k++) {
        mnas_tape_reset(tp);
        mnas_tensor *y = objective(&f, tp, k, 0), *gr[6];
        ck_assert_msg(y != NULL, "%s", mnas_tape_last_error(tp));
        L[k] = mnas_tensor_data(y)[0];
        ck_assert_msg(mnas_grad(tp, y, 6, wrt, gr, 0) == MNAS_OK, "%s", mnas_tape_last_error(tp));
        for (int i = 0; i < 6; i++) {
            size_t n = (size_t)mnas_tensor_size(gr[i]);
            if (k == 0) {
                ref[i] = malloc(n * sizeof(mnas_real));
                ck_assert_ptr_nonnull(ref[i]);
                memcpy(ref[i], mnas_tensor_data(gr[i]), n * sizeof(mnas_real));
            } else {
                ck_assert_msg(memcmp(ref[i], mnas_tensor_data(gr[i]), n * sizeof(mnas_real)) == 0,
                              "input %d: the segmented gradient differs", i);
            }
        }
    }
    ck_assert(L[0] == L[1]);
    /* the unread input's gradient is 0, the others not */
    for (int i = 0; i < 6; i++) {
        double m = 0;
        for (int64_t q = 0; q < mnas_tensor_size(wrt[i]); q++) m = fmax(m, fabs(ref[i][q]));
        if (i == 5)
            ck_assert(m == 0);
        else
            ck_assert(m > 1e-3);
    }
    /* central differences of the segmented objective, every element */
    size_t checked = 0;
    for (int i = 0; i < 5; i++) {
        mnas_real *d = mnas_tensor_data(wrt[i]);
        for (int64_t q = 0; q < mnas_tensor_size(wrt[i]); q++) {
            double v = d[q], h = 1e-6, fp, fm;
            d[q] = v + h;
            mnas_tape_reset(tp);
            fp = mnas_tensor_data(objective(&f, tp, 1, 0))[0];
            d[q] = v - h;
            mnas_tape_reset(tp);
            fm = mnas_tensor_data(objective(&f, tp, 1, 0))[0];
            d[q] = v;
            double num = (fp - fm) / (2 * h);
            ck_assert_msg(fabs(ref[i][q] - num) <= 1e-6 + 1e-5 * fabs(num), "input %d [%lld]: %.10g vs %.10g", i,
                          (long long)q, (double)ref[i][q], num);
            checked++;
        }
    }
    ck_assert_uint_gt(checked, 150);
    for (int i = 0; i < 6; i++) free(ref[i]);
    mnas_tape_free(tp);
    fx_free(&f);
}
END_TEST

START_TEST(recorded_pass_is_refused)
{
    fixture f;
    fx_init(&f);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(f.ctx, &tp), MNAS_OK);
    mnas_tensor *y = objective(&f, tp, 1, 0), *gr[1];
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mnas_grad(tp, y, 1, &f.w, gr, 1), MNAS_E_UNSUPPORTED);
    ck_assert_ptr_null(gr[0]);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "checkpointed segment"));
    /* the tape and the parameters stay usable */
    mnas_tape_reset(tp);
    y = objective(&f, tp, 1, 0);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(mnas_grad(tp, y, 1, &f.w, gr, 0), MNAS_OK);
    ck_assert(isfinite(mnas_tensor_data(gr[0])[0]));
    mnas_tape_free(tp);
    fx_free(&f);
}
END_TEST

START_TEST(error_inside_reaches_the_caller)
{
    fixture f;
    fx_init(&f);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(f.ctx, &tp), MNAS_OK);
    ck_assert_ptr_null(objective(&f, tp, 1, 1));
    ck_assert_int_eq(mnas_tape_status(tp), MNAS_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(mnas_tape_last_error(tp), "conv2d"));
    mnas_tape_reset(tp);
    ck_assert_ptr_nonnull(objective(&f, tp, 1, 0));
    mnas_tape_free(tp);
    fx_free(&f);
}
END_TEST

/* No input needs a gradient: f runs on the tape itself, same values. */
START_TEST(without_gradients_a_plain_call)
{
    fixture f;
    fx_init(&f);
    mnas_tape *tp;
    ck_assert_int_eq(mnas_tape_create(f.ctx, &tp), MNAS_OK);
    mnas_tensor *y[2];
    for (int k = 0; k < 2; k++) {
        mnas_tape_no_grad_begin(tp);
        y[k] = objective(&f, tp, k, 0);
        mnas_tape_no_grad_end(tp);
        ck_assert_ptr_nonnull(y[k]);
    }
    ck_assert(mnas_tensor_data(y[0])[0] == mnas_tensor_data(y[1])[0]);
    ck_assert_ptr_null(tp->aux); /* the scratch tape was never needed */
    mnas_tape_free(tp);
    fx_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checkpoint_f64");
    TCase *tc = tcase_create("segment");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gradient_matches_unsegmented_and_finite_differences);
    tcase_add_test(tc, recorded_pass_is_refused);
    tcase_add_test(tc, error_inside_reaches_the_caller);
    tcase_add_test(tc, without_gradients_a_plain_call);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? 0 : 1;
}
