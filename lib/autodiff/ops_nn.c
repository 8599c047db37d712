/* Neural-network ops: softmax family, losses and batch normalisation. The
 * losses and batch-norm are compositions of recorded ops, so their
 * derivatives of every order come from the primitives' rules. */
#include <math.h>
#include <string.h>

#include "autodiff/autodiff_internal.h"

static mnas_tensor *softmax_like(mnas_tape *tp, const char *fn, int op, mnas_tensor *x)
{
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (x->ndim < 1) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x is a scalar (needs a last axis)", fn);
        return NULL;
    }
    mnas_tensor *out = mnas__tape_new(tp, fn, x->ndim, x->shape);
    if (!out) return NULL;
    int64_t cols = x->shape[x->ndim - 1];
    if (op == OP_SOFTMAX)
        mnas__k_softmax(x->size / cols, cols, x->data, out->data);
    else
        mnas__k_log_softmax(x->size / cols, cols, x->data, out->data);
    return mnas__finish(tp, fn, op, out, 1, &x, NULL);
}

mnas_tensor *mnas_softmax(mnas_tape *tp, mnas_tensor *x) { return softmax_like(tp, "mnas_softmax", OP_SOFTMAX, x); }
mnas_tensor *mnas_log_softmax(mnas_tape *tp, mnas_tensor *x)
{
    return softmax_like(tp, "mnas_log_softmax", OP_LOG_SOFTMAX, x);
}

mnas_tensor *mnas_cross_entropy(mnas_tape *tp, mnas_tensor *logits, size_t n, const int32_t *labels)
{
    const char *fn = "mnas_cross_entropy";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "logits", logits)) return NULL;
    if (logits->ndim != 2) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: logits must be [N, C] (got %d-D)", fn, logits->ndim);
        return NULL;
    }
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (!labels || n != (size_t)N) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: %zu labels for %lld rows of logits", fn, labels ? n : 0,
                         (long long)N);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C) {
            mnas__tape_error(tp, MNAS_E_INVALID, "%s: label %d at row %zu is outside [0, %lld)", fn, (int)labels[i],
                             i, (long long)C);
            return NULL;
        }
    /* -1/N at each row's label: the loss is the masked sum of log-softmax. */
    mnas_tensor *pick = mnas__tape_new(tp, fn, 2, logits->shape);
    if (!pick) return NULL;
    memset(pick->data, 0, (size_t)pick->size * sizeof(mnas_real));
    for (size_t i = 0; i < n; i++) pick->data[(int64_t)i * C + labels[i]] = (mnas_real)(-1.0 / (double)N);
    return mnas_sum(tp, mnas_mask_mul(tp, mnas_log_softmax(tp, logits), pick));
}

mnas_tensor *mnas_mse(mnas_tape *tp, mnas_tensor *pred, mnas_tensor *target)
{
    const char *fn = "mnas_mse";
    if (!mnas__tape_ok(tp)) return NULL;
    if (!mnas__input_ok(tp, fn, "pred", pred) || !mnas__input_ok(tp, fn, "target", target)) return NULL;
    if (!mnas__same_shape(pred, target)) {
        char a[MNAS_SHAPE_BUF], b[MNAS_SHAPE_BUF];
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: pred is %s but target is %s", fn,
                         mnas__shape_str(a, sizeof a, pred->ndim, pred->shape),
                         mnas__shape_str(b, sizeof b, target->ndim, target->shape));
        return NULL;
    }
    return mnas_mean(tp, mnas_square(tp, mnas_sub(tp, pred, target)));
}

mnas_tensor *mnas_batch_norm(mnas_tape *tp, mnas_tensor *x, mnas_tensor *gamma, mnas_tensor *beta, double eps)
{
    const char *fn = "mnas_batch_norm";
    if (!mnas__tape_ok(tp) || !mnas__input_ok(tp, fn, "x", x)) return NULL;
    if (gamma && !mnas__input_ok(tp, fn, "gamma", gamma)) return NULL;
    if (beta && !mnas__input_ok(tp, fn, "beta", beta)) return NULL;
    if (!(eps > 0) || !isfinite(eps)) {
        mnas__tape_error(tp, MNAS_E_INVALID, "%s: eps %g must be positive and finite", fn, eps);
        return NULL;
    }
    int64_t s[4];
    int nd = x->ndim;
    int64_t feat;
    if (nd == 2) {
        feat = x->shape[1];
        s[0] = 1;
        s[1] = feat;
    } else if (nd == 4) {
        feat = x->shape[1];
        s[0] = 1;
        s[1] = feat;
        s[2] = 1;
        s[3] = 1;
    } else {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: x must be [N, F] or [N, C, H, W] (got %d-D)", fn, nd);
        return NULL;
    }
    if ((gamma && gamma->size != feat) || (beta && beta->size != feat)) {
        mnas__tape_error(tp, MNAS_E_SHAPE, "%s: gamma and beta need %lld elements (got %lld and %lld)", fn,
                         (long long)feat, (long long)(gamma ? gamma->size : feat),
                         (long long)(beta ? beta->size : feat));
        return NULL;
    }
    double inv_m = (double)feat / (double)x->size;
    mnas_tensor *mu = mnas_scale(tp, mnas_sum_to(tp, x, nd, s), inv_m);
    mnas_tensor *xc = mnas_sub(tp, x, mu);
    mnas_tensor *var = mnas_scale(tp, mnas_sum_to(tp, mnas_square(tp, xc), nd, s), inv_m);
    mnas_tensor *rstd = mnas_pow(tp, mnas_add_scalar(tp, var, eps), -0.5);
    mnas_tensor *y = mnas_mul(tp, xc, rstd);
    if (gamma) y = mnas_mul(tp, y, mnas_reshape(tp, gamma, nd, s));
    if (beta) y = mnas_add(tp, y, mnas_reshape(tp, beta, nd, s));
    return y;
}
