/* Finite-difference gradient checking of orders 1 to 3 (gradients,
 * Hessian-vector products, and the gradient of w·(H v)), with every
 * difference taken in double. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autodiff/autodiff_internal.h"

#if defined(MNAS_REAL_IS_DOUBLE) && MNAS_REAL_IS_DOUBLE
/* Double build: truncation error ~eps^2 |f'''| ~ 1e-12, rounding error
 * ~1e-16 |f| / eps ~ 1e-10 |f|; the tolerances sit well above both and far
 * below any real mistake in a backward rule. */
#define DEF_EPS 1e-6
#define DEF_ATOL 1e-6
#define DEF_RTOL 1e-5
#else
/* float32: rounding of f (~6e-8 |f| per op) divided by 2 eps dominates. */
#define DEF_EPS 1e-2
#define DEF_ATOL 1e-2
#define DEF_RTOL 5e-2
#endif

typedef struct {
    mnas_ctx *ctx;
    mnas_tape *tp;
    mnas_gradcheck_fn f;
    void *user;
    size_t n;
    mnas_tensor *const *inputs;
    mnas_tensor **v; /* directions for orders 2 and 3 (persistent) */
    mnas_tensor **w; /* second directions for order 3 (persistent) */
    int order;
    int record_last; /* the differentiated pass itself is recorded */
} gc_state;

/* *h = sum_k <dir_k, grad_k y>, with the gradient recorded. */
static mnas_status directional(gc_state *s, mnas_tensor *y, mnas_tensor *const *dir, const char *what,
                               mnas_tensor **h)
{
    mnas_tape *tp = s->tp;
    mnas_tensor *grads[64];
    mnas_status st = mnas_grad(tp, y, s->n, s->inputs, grads, 1);
    if (st != MNAS_OK) return mnas__error(s->ctx, st, "mnas_gradcheck: %s grad failed: %s", what, tp->msg);
    *h = NULL;
    for (size_t k = 0; k < s->n; k++) {
        mnas_tensor *term = mnas_sum(tp, mnas_mul(tp, grads[k], dir[k]));
        *h = *h ? mnas_add(tp, *h, term) : term;
    }
    if (!*h)
        return mnas__error(s->ctx, tp->status ? tp->status : MNAS_E_INTERNAL,
                           "mnas_gradcheck: building the %s product failed: %s", what, tp->msg);
    return MNAS_OK;
}

/* Value of the checked scalar at the current inputs: f for order 1,
 * h = sum_k <v_k, grad_k f> for order 2, sum_k <w_k, grad_k h> for order 3.
 * Optionally its gradient into g (concatenated doubles). */
static mnas_status evaluate(gc_state *s, double *value, double *g)
{
    mnas_tape *tp = s->tp;
    mnas_tape_reset(tp);
    mnas_tensor *y = s->f(tp, s->inputs, s->user);
    if (!y) return mnas__error(s->ctx, tp->status ? tp->status : MNAS_E_INVALID,
                               "mnas_gradcheck: the function failed: %s", tp->msg);
    if (y->size != 1) return mnas__error(s->ctx, MNAS_E_SHAPE, "mnas_gradcheck: the function is not scalar");
    mnas_tensor *target = y;
    mnas_tensor *grads[64];
    mnas_status st;
    if (s->order >= 2 && (st = directional(s, target, s->v, "first-order", &target)) != MNAS_OK) return st;
    if (s->order == 3 && (st = directional(s, target, s->w, "second-order", &target)) != MNAS_OK) return st;
    *value = (double)target->data[0];
    if (!g) return MNAS_OK;
    if ((st = mnas_grad(tp, target, s->n, s->inputs, grads, s->record_last)) != MNAS_OK)
        return mnas__error(s->ctx, st, "mnas_gradcheck: grad failed: %s", tp->msg);
    size_t off = 0;
    for (size_t k = 0; k < s->n; k++) {
        for (int64_t j = 0; j < grads[k]->size; j++) g[off + (size_t)j] = (double)grads[k]->data[j];
        off += (size_t)grads[k]->size;
    }
    return MNAS_OK;
}

mnas_status mnas_gradcheck(mnas_ctx *ctx, mnas_gradcheck_fn f, void *user, size_t n, mnas_tensor *const *inputs,
                           const mnas_gradcheck_options *opts, double *max_err)
{
    const char *fn = "mnas_gradcheck";
    if (max_err) *max_err = INFINITY;
    if (!mnas__ctx_ok(ctx)) return MNAS_E_INVALID;
    if (!f || !inputs || n == 0) return mnas__error(ctx, MNAS_E_INVALID, "%s: need a function and inputs", fn);
    if (n > 64) return mnas__error(ctx, MNAS_E_INVALID, "%s: at most 64 inputs (got %zu)", fn, n);
    mnas_gradcheck_options o = MNAS_GRADCHECK_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof o)
            return mnas__error(ctx, MNAS_E_INVALID, "%s: options struct_size %zu is not valid", fn, opts->struct_size);
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    }
    if (o.order < 1 || o.order > 3) return mnas__error(ctx, MNAS_E_INVALID, "%s: order %d (1, 2 or 3)", fn, o.order);
    if (o.record_last != 0 && o.record_last != 1)
        return mnas__error(ctx, MNAS_E_INVALID, "%s: record_last %d (0 or 1)", fn, o.record_last);
    if (o.eps == 0) o.eps = DEF_EPS;
    if (o.atol == 0) o.atol = DEF_ATOL;
    if (o.rtol == 0) o.rtol = DEF_RTOL;
    if (!(o.eps > 0) || !(o.atol > 0) || !(o.rtol >= 0) || !isfinite(o.eps) || !isfinite(o.atol) || !isfinite(o.rtol))
        return mnas__error(ctx, MNAS_E_INVALID, "%s: eps, atol, rtol must be positive and finite", fn);
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        const mnas_tensor *t = inputs[k];
        if (!t || t->magic != MNAS_TENSOR_MAGIC || t->tape || !t->requires_grad)
            return mnas__error(ctx, MNAS_E_INVALID,
                               "%s: input %zu must be a persistent tensor that requires a gradient", fn, k);
        if (t->ctx != ctx) return mnas__error(ctx, MNAS_E_MISMATCH, "%s: input %zu is from another context", fn, k);
        total += (size_t)t->size;
    }

    gc_state s = { ctx, NULL, f, user, n, inputs, NULL, NULL, o.order, o.record_last };
    mnas_status st = mnas_tape_create(ctx, &s.tp);
    if (st != MNAS_OK) return st;
    double *analytic = mnas__calloc(ctx, total, sizeof(double));
    mnas_tensor *vbuf[128] = { 0 };
    if (!analytic) {
        st = mnas__error(ctx, MNAS_E_NOMEM, "%s: cannot allocate %zu doubles", fn, total);
        goto done;
    }
    if (o.order >= 2) {
        /* v and then w, drawn from one stream: w does not change v. */
        mnas_rng *r = mnas_rng_create(ctx, o.seed, 0x9c);
        if (!r) {
            st = MNAS_E_NOMEM;
            goto done;
        }
        size_t ndir = o.order == 3 ? 2 * n : n;
        for (size_t k = 0; k < ndir; k++) {
            const mnas_tensor *in = inputs[k % n];
            vbuf[k] = mnas_tensor_randn_rng(ctx, r, in->ndim, in->shape, 0.0, 1.0);
            if (!vbuf[k]) {
                mnas_rng_free(r);
                st = MNAS_E_NOMEM;
                goto done;
            }
        }
        mnas_rng_free(r);
        s.v = vbuf;
        if (o.order == 3) s.w = vbuf + n;
    }
    double f0;
    if ((st = evaluate(&s, &f0, analytic)) != MNAS_OK) goto done;

    double worst = 0;
    size_t off = 0;
    for (size_t k = 0; k < n && st == MNAS_OK; k++) {
        mnas_tensor *t = inputs[k];
        for (int64_t j = 0; j < t->size; j++) {
            mnas_real v0 = t->data[j];
            mnas_real vp = (mnas_real)((double)v0 + o.eps), vm = (mnas_real)((double)v0 - o.eps);
            double fp, fm;
            t->data[j] = vp;
            st = evaluate(&s, &fp, NULL);
            t->data[j] = vm;
            if (st == MNAS_OK) st = evaluate(&s, &fm, NULL);
            t->data[j] = v0;
            if (st != MNAS_OK) break;
            /* Divide by the step actually taken after rounding to mnas_real. */
            double numeric = (fp - fm) / ((double)vp - (double)vm);
            double a = analytic[off + (size_t)j];
            double err = fabs(a - numeric) / (o.atol + o.rtol * fabs(numeric));
            if (!(err <= worst)) worst = err; /* NaN propagates as failure */
            if (!(err <= 1.0)) {
                st = mnas__error(ctx, MNAS_E_NUMERIC,
                                 "%s: order %d, input %zu element %lld: analytic %.9g, numeric %.9g "
                                 "(|diff| %.3g > atol %.3g + rtol %.3g * |numeric|)",
                                 fn, o.order, k, (long long)j, a, numeric, fabs(a - numeric), o.atol, o.rtol);
                break;
            }
        }
        off += (size_t)t->size;
    }
    if (max_err) *max_err = worst;
done:
    for (size_t k = 0; k < 2 * n; k++) mnas_tensor_free(vbuf[k]);
    mnas__free(ctx, analytic);
    mnas_tape_free(s.tp);
    return st;
}
