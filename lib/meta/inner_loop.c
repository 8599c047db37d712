/* The inner loop: SGD steps on a task's support loss producing fast weights
 * (Eq. (2) of the paper; Eq. (8) for the modulated weights of M-NAS), in
 * three modes: second order, first order, and second order with
 * recomputation (memory independent of the number of steps). */
#include <math.h>
#include <string.h>

#include <mnas/meta.h>

#include "autodiff/opkit.h"

static mnas_status call_loss(mnas_tape *tp, mnas_tape *on, mnas_loss_fn loss, void *user, mnas_tensor *const *w,
                             mnas_tensor *const *extra, int step, mnas_tensor **out)
{
    const char *fn = "mnas_inner_loop";
    mnas_tensor *L = loss(on, w, extra, user);
    if (!L) {
        mnas_status st = mnas_tape_status(on) ? mnas_tape_status(on) : MNAS_E_INVALID;
        if (on != tp) return mnas__tape_error(tp, st, "%s: the loss failed at step %d: %s", fn, step, mnas_tape_last_error(on));
        if (!mnas_tape_status(tp)) mnas__tape_error(tp, st, "%s: the loss returned NULL at step %d", fn, step);
        return mnas_tape_status(tp);
    }
    if (!mnas__tensor_live(L) || L->size != 1)
        return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: the loss at step %d is not a scalar", fn, step);
    if (!isfinite(L->data[0]))
        return mnas__tape_error(tp, MNAS_E_NUMERIC, "%s: the support loss is %g at step %d", fn, (double)L->data[0],
                                step);
    *out = L;
    return MNAS_OK;
}

/* ---- recompute mode ---------------------------------------------------- */

typedef struct {
    mnas_loss_fn loss;
    void *user;
    size_t n, ne;
    int steps;
    double lr;
    int64_t total;        /* elements over all weights */
    int64_t *off;         /* [n + 1] offsets into a flat weight vector */
    mnas_tensor **w0;     /* shapes of the weights */
    mnas_tensor **extra;  /* the extra inputs (main-tape or persistent) */
    mnas_real *ckpt;      /* [steps][total]: the weights entering each step */
} recompute_state;

/* Leaves on the scratch tape holding the weights of one step. */
static int make_leaves(mnas_tape *aux, const recompute_state *s, const mnas_real *flat, mnas_tensor **w)
{
    for (size_t i = 0; i < s->n; i++) {
        w[i] = mnas_tape_tensor(aux, s->w0[i]->ndim, s->w0[i]->shape, flat + s->off[i]);
        if (!w[i] || mnas_tensor_set_requires_grad(w[i], 1) != MNAS_OK) return 0;
    }
    return 1;
}

static int copy_extra(mnas_tape *aux, const recompute_state *s, const int *grad_of, mnas_tensor **e)
{
    for (size_t j = 0; j < s->ne; j++) {
        e[j] = mnas_tape_tensor(aux, s->extra[j]->ndim, s->extra[j]->shape, s->extra[j]->data);
        if (!e[j]) return 0;
        if (grad_of && grad_of[j] && mnas_tensor_set_requires_grad(e[j], 1) != MNAS_OK) return 0;
    }
    return 1;
}

static mnas_status recompute_vjp(mnas_tape *tp, mnas_node *node, mnas_tensor *g, mnas_backward_ctx *bc, void *state)
{
    const char *fn = "mnas_inner_loop (recompute)";
    recompute_state *s = state;
    if (mnas__bw_create_graph(bc))
        return mnas__tape_error(tp, MNAS_E_UNSUPPORTED,
                                "%s: a meta-gradient through recomputed steps cannot itself be differentiated; "
                                "use MNAS_INNER_SECOND_ORDER",
                                fn);
    size_t n = s->n, ne = s->ne;
    mnas_tape *aux = mnas__tape_aux(tp);
    mnas_real *abar = mnas__tape_scratch(tp, fn, (size_t)s->total * sizeof(mnas_real));
    mnas_real **ebar = mnas__tape_scratch(tp, fn, (ne + 1) * sizeof *ebar);
    int *want_e = mnas__tape_scratch(tp, fn, (ne + 1) * sizeof *want_e);
    mnas_tensor **w = mnas__tape_scratch(tp, fn, (n + ne + 1) * sizeof *w);
    /* gr, then room for the grad call's inputs (ins below) */
    mnas_tensor **gr = mnas__tape_scratch(tp, fn, 2 * (n + ne + 1) * sizeof *gr);
    if (!aux || !abar || !ebar || !want_e || !w || !gr) return mnas_tape_status(tp);
    memcpy(abar, g->data, (size_t)s->total * sizeof(mnas_real));
    for (size_t j = 0; j < ne; j++) {
        want_e[j] = mnas__bw_wants(bc, node, (int)(n + j));
        ebar[j] = NULL;
        if (want_e[j]) {
            ebar[j] = mnas__tape_scratch(tp, fn, (size_t)s->extra[j]->size * sizeof(mnas_real));
            if (!ebar[j]) return mnas_tape_status(tp);
            memset(ebar[j], 0, (size_t)s->extra[j]->size * sizeof(mnas_real));
        }
    }
    /* Walk the steps backwards: with a = dJ/dw_{t+1} and s = <grad_w L(w_t), a>,
     * dJ/dw_t = a - lr * ds/dw_t and dJ/de gains -lr * ds/de. */
    for (int t = s->steps - 1; t >= 0; t--) {
        mnas_tape_reset(aux);
        mnas_tensor **e = w + n;
        if (!make_leaves(aux, s, s->ckpt + (size_t)t * (size_t)s->total, w) || !copy_extra(aux, s, want_e, e))
            return mnas__tape_error(tp, mnas_tape_status(aux) ? mnas_tape_status(aux) : MNAS_E_NOMEM, "%s: %s", fn, mnas_tape_last_error(aux));
        mnas_tensor *L;
        mnas_status st = call_loss(tp, aux, s->loss, s->user, w, ne ? e : NULL, t, &L);
        if (st != MNAS_OK) return st;
        if ((st = mnas_grad(aux, L, n, w, gr, 1)) != MNAS_OK)
            return mnas__tape_error(tp, st, "%s: step %d: %s", fn, t, mnas_tape_last_error(aux));
        mnas_tensor *dot = NULL;
        for (size_t i = 0; i < n; i++) {
            mnas_tensor *a = mnas_tape_tensor(aux, s->w0[i]->ndim, s->w0[i]->shape, abar + s->off[i]);
            mnas_tensor *term = mnas_sum(aux, mnas_mul(aux, gr[i], a));
            dot = dot ? mnas_add(aux, dot, term) : term;
        }
        /* Gradients with respect to the weights and the extras we need. */
        mnas_tensor **ins = gr + n + ne + 1; /* scratch, past gr's n + ne entries */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) ins[k++] = w[i];
        for (size_t j = 0; j < ne; j++)
            if (want_e[j]) ins[k++] = e[j];
        if (!dot) return mnas__tape_error(tp, mnas_tape_status(aux) ? mnas_tape_status(aux) : MNAS_E_INTERNAL, "%s: %s", fn, mnas_tape_last_error(aux));
        if ((st = mnas_grad(aux, dot, k, ins, gr, 0)) != MNAS_OK)
            return mnas__tape_error(tp, st, "%s: step %d: %s", fn, t, mnas_tape_last_error(aux));
        for (size_t i = 0; i < n; i++) {
            mnas_real *a = abar + s->off[i];
            const mnas_real *h = gr[i]->data;
            for (int64_t q = 0; q < gr[i]->size; q++) a[q] = (mnas_real)(a[q] - s->lr * h[q]);
        }
        k = n;
        for (size_t j = 0; j < ne; j++)
            if (want_e[j]) {
                const mnas_real *h = gr[k++]->data;
                for (int64_t q = 0; q < s->extra[j]->size; q++) ebar[j][q] = (mnas_real)(ebar[j][q] - s->lr * h[q]);
            }
    }
    mnas_tape_reset(aux);
    for (size_t i = 0; i < n; i++)
        if (mnas__bw_wants(bc, node, (int)i)) {
            mnas_tensor *c = mnas_tape_tensor(tp, s->w0[i]->ndim, s->w0[i]->shape, abar + s->off[i]);
            mnas_status st = mnas__bw_accumulate(tp, bc, node, (int)i, c);
            if (st != MNAS_OK) return st;
        }
    for (size_t j = 0; j < ne; j++)
        if (want_e[j]) {
            mnas_tensor *c = mnas_tape_tensor(tp, s->extra[j]->ndim, s->extra[j]->shape, ebar[j]);
            mnas_status st = mnas__bw_accumulate(tp, bc, node, (int)(n + j), c);
            if (st != MNAS_OK) return st;
        }
    return MNAS_OK;
}

static const mnas__custom_op recompute_op = { "inner_loop_recompute", recompute_vjp };

static mnas_status recompute_forward(mnas_tape *tp, mnas_loss_fn loss, void *user, size_t n, mnas_tensor *const *w0,
                                     size_t ne, mnas_tensor *const *extra, int steps, double lr, mnas_tensor **w_out)
{
    const char *fn = "mnas_inner_loop";
    recompute_state *s = mnas__tape_scratch(tp, fn, sizeof *s);
    if (!s) return mnas_tape_status(tp);
    memset(s, 0, sizeof *s);
    s->loss = loss;
    s->user = user;
    s->n = n;
    s->ne = ne;
    s->steps = steps;
    s->lr = lr;
    s->off = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *s->off);
    s->w0 = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *s->w0);
    s->extra = mnas__tape_scratch(tp, fn, (ne + 1) * sizeof *s->extra);
    if (!s->off || !s->w0 || !s->extra) return mnas_tape_status(tp);
    s->off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        s->w0[i] = w0[i];
        s->off[i + 1] = s->off[i] + w0[i]->size;
    }
    for (size_t j = 0; j < ne; j++) s->extra[j] = extra[j];
    s->total = s->off[n];
    s->ckpt = mnas__tape_scratch(tp, fn, (size_t)(steps > 0 ? steps : 1) * (size_t)s->total * sizeof(mnas_real));
    int64_t flat_shape[1] = { s->total };
    mnas_tensor *flat = mnas__tape_new(tp, fn, 1, flat_shape);
    mnas_tape *aux = mnas__tape_aux(tp);
    mnas_tensor **w = mnas__tape_scratch(tp, fn, (n + ne + 1) * sizeof *w);
    mnas_tensor **gr = mnas__tape_scratch(tp, fn, (n + 1) * sizeof *gr);
    if (!s->ckpt || !flat || !aux || !w || !gr) return mnas_tape_status(tp);
    mnas_real *cur = flat->data;
    for (size_t i = 0; i < n; i++) memcpy(cur + s->off[i], w0[i]->data, (size_t)w0[i]->size * sizeof(mnas_real));
    for (int t = 0; t < steps; t++) {
        memcpy(s->ckpt + (size_t)t * (size_t)s->total, cur, (size_t)s->total * sizeof(mnas_real));
        mnas_tape_reset(aux);
        if (!make_leaves(aux, s, cur, w) || !copy_extra(aux, s, NULL, w + n))
            return mnas__tape_error(tp, mnas_tape_status(aux) ? mnas_tape_status(aux) : MNAS_E_NOMEM, "%s: %s", fn, mnas_tape_last_error(aux));
        mnas_tensor *L;
        mnas_status st = call_loss(tp, aux, loss, user, w, ne ? w + n : NULL, t, &L);
        if (st != MNAS_OK) return st;
        if ((st = mnas_grad(aux, L, n, w, gr, 0)) != MNAS_OK)
            return mnas__tape_error(tp, st, "%s: step %d: %s", fn, t, mnas_tape_last_error(aux));
        /* The step mnas_axpy takes in the other modes, rounded the same way
         * (alpha in mnas_real, product and sum each rounded), so every mode
         * computes bit-identical fast weights. */
        const mnas_real alpha = (mnas_real)-lr;
        for (size_t i = 0; i < n; i++) {
            mnas_real *c = cur + s->off[i];
            const mnas_real *h = gr[i]->data;
            for (int64_t q = 0; q < gr[i]->size; q++) c[q] = alpha * h[q] + c[q];
        }
    }
    mnas_tape_reset(aux);
    /* One node stands for all the steps; the weights are slices of it. */
    mnas_tensor **ins = mnas__tape_scratch(tp, fn, (n + ne) * sizeof *ins);
    if (!ins) return mnas_tape_status(tp);
    for (size_t i = 0; i < n; i++) ins[i] = w0[i];
    for (size_t j = 0; j < ne; j++) ins[n + j] = extra[j];
    if (!mnas__record_op(tp, fn, &recompute_op, s, flat, n + ne, ins)) return mnas_tape_status(tp);
    for (size_t i = 0; i < n; i++) {
        mnas_tensor *piece = mnas_slice(tp, flat, 0, s->off[i], w0[i]->size);
        w_out[i] = mnas_reshape(tp, piece, w0[i]->ndim, w0[i]->shape);
        if (!w_out[i]) return mnas_tape_status(tp);
    }
    return MNAS_OK;
}

/* ---- the public entry --------------------------------------------------- */

mnas_status mnas_inner_loop(mnas_tape *tp, mnas_loss_fn loss, void *user, size_t n, mnas_tensor *const *w0, size_t ne,
                            mnas_tensor *const *extra, const mnas_inner_options *opts, mnas_tensor **w_out)
{
    const char *fn = "mnas_inner_loop";
    if (!mnas__tape_ok(tp)) return MNAS_E_INVALID;
    mnas_inner_options o = MNAS_INNER_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(size_t) || opts->struct_size > 4 * sizeof o)
            return mnas__tape_error(tp, MNAS_E_INVALID, "%s: options struct_size %zu is not valid", fn, opts->struct_size);
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
    }
    if (!loss || !w0 || !w_out || n == 0 || (ne > 0 && !extra))
        return mnas__tape_error(tp, MNAS_E_INVALID, "%s: need a loss, weights and room for the result", fn);
    if (o.steps < 0 || o.steps > 1000)
        return mnas__tape_error(tp, MNAS_E_INVALID, "%s: %d steps (0..1000)", fn, o.steps);
    if (!isfinite(o.lr) || o.lr < 0)
        return mnas__tape_error(tp, MNAS_E_INVALID, "%s: learning rate %g must be finite and >= 0", fn, o.lr);
    if (o.mode != MNAS_INNER_SECOND_ORDER && o.mode != MNAS_INNER_FIRST_ORDER && o.mode != MNAS_INNER_RECOMPUTE &&
        o.mode != MNAS_INNER_RECOMPUTE_CELLS)
        return mnas__tape_error(tp, MNAS_E_INVALID, "%s: unknown mode %d", fn, (int)o.mode);
    for (size_t i = 0; i < n; i++)
        if (!mnas__input_ok(tp, fn, "a weight", w0[i])) return mnas_tape_status(tp);
    for (size_t j = 0; j < ne; j++)
        if (!mnas__input_ok(tp, fn, "an extra input", extra[j])) return mnas_tape_status(tp);
    if (o.rates) {
        if (o.mode == MNAS_INNER_RECOMPUTE || o.mode == MNAS_INNER_RECOMPUTE_CELLS)
            return mnas__tape_error(tp, MNAS_E_UNSUPPORTED,
                                    "%s: learned rates (opts->rates) need mode second or first order, not recompute", fn);
        for (size_t i = 0; i < n; i++) {
            mnas_tensor *r = o.rates[i];
            if (!mnas__input_ok(tp, fn, "a rate", r)) return mnas_tape_status(tp);
            int same = r->ndim == w0[i]->ndim;
            for (int d = 0; same && d < r->ndim; d++) same = r->shape[d] == w0[i]->shape[d];
            if (!same && !(r->ndim == 1 && r->shape[0] == 1))
                return mnas__tape_error(tp, MNAS_E_SHAPE, "%s: rates[%zu] must have shape [1] or weight %zu's shape",
                                        fn, i, i);
        }
    }
    for (size_t i = 0; i < n; i++) w_out[i] = NULL;

    if (o.mode == MNAS_INNER_RECOMPUTE || o.mode == MNAS_INNER_RECOMPUTE_CELLS) return recompute_forward(tp, loss, user, n, w0, ne, extra, o.steps, o.lr, w_out);

    mnas_tensor **w = mnas__tape_scratch(tp, fn, n * sizeof *w);
    mnas_tensor **g = mnas__tape_scratch(tp, fn, n * sizeof *g);
    if (!w || !g) return mnas_tape_status(tp);
    memcpy(w, w0, n * sizeof *w);
    int create_graph = o.mode == MNAS_INNER_SECOND_ORDER;
    for (int t = 0; t < o.steps; t++) {
        mnas_tensor *L;
        mnas_status st = call_loss(tp, tp, loss, user, w, ne ? extra : NULL, t, &L);
        if (st != MNAS_OK) return st;
        if ((st = mnas_grad(tp, L, n, w, g, create_graph)) != MNAS_OK) return st;
        for (size_t i = 0; i < n; i++) {
            /* Meta-SGD: w - r (.) g, a rate of shape [1] broadcast. */
            w[i] = o.rates ? mnas_sub(tp, w[i], mnas_mul(tp, o.rates[i], g[i])) : mnas_axpy(tp, -o.lr, g[i], w[i]);
            if (!w[i]) return mnas_tape_status(tp);
        }
    }
    memcpy(w_out, w, n * sizeof *w);
    return MNAS_OK;
}
