/* Worked example of nn.h and io.h: an MLP used functionally (its weights
 * live in a parameter set, the forward takes them as inputs), fitted to
 * y = sin(x) with Adam, saved to a checkpoint and loaded into a second
 * parameter set that then gives the same loss bit for bit, and the fit drawn
 * into a PNG. Exits 0 when the loss fell and the round trip is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <mnas/mnas.h>

enum { N = 24 };

/* The MSE of the MLP with weights p on (x, y); -1 on failure. */
static double loss_of(mnas_ctx *ctx, const mnas_mlp *mlp, mnas_params *p, mnas_tensor *x, mnas_tensor *y, int train)
{
    mnas_tape *tape = NULL;
    if (mnas_tape_create(ctx, &tape) != MNAS_OK) return -1;
    mnas_tensor *loss = mnas_mse(tape, mnas_mlp_forward(mlp, tape, x, mnas_params_tensors(p)), y);
    double value = loss ? mnas_tensor_cdata(loss)[0] : -1;
    if (loss && train) {
        /* d loss / d w for every parameter, into the gradient buffers */
        size_t n = mnas_params_count(p);
        mnas_tensor **g = calloc(n, sizeof *g);
        if (!g || mnas_grad(tape, loss, n, mnas_params_tensors(p), g, 0) != MNAS_OK) value = -1;
        mnas_params_zero_grad(p);
        if (value >= 0 && mnas_params_accumulate_grad(p, g, 1.0) != MNAS_OK) value = -1;
        free(g);
    }
    if (!loss) fprintf(stderr, "forward: %s\n", mnas_tape_last_error(tape));
    mnas_tape_free(tape);
    return value;
}

int main(void)
{
    mnas_ctx *ctx = NULL;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 7;
    if (mnas_ctx_create(&ctx, &co) != MNAS_OK) return 1;

    mnas_real xs[N], ys[N];
    for (int i = 0; i < N; i++) {
        xs[i] = (mnas_real)(-3.0 + 6.0 * i / (N - 1));
        ys[i] = (mnas_real)sin(xs[i]);
    }
    const int64_t shape[2] = { N, 1 };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 2, shape, xs), *y = mnas_tensor_from_data(ctx, 2, shape, ys);

    /* 1 -> 32 -> 32 -> 1, ReLU between the layers, no batch-norm */
    const int64_t dims[4] = { 1, 32, 32, 1 };
    mnas_mlp *mlp = mnas_mlp_create(ctx, 3, dims, MNAS_MLP_NO_BN);
    mnas_params *p = mnas_params_create(ctx), *q = mnas_params_create(ctx);
    if (!x || !y || !mlp || !p || !q || mnas_mlp_add_params(mlp, p, "net.", 0) < 0 ||
        mnas_mlp_add_params(mlp, q, "net.", 0) < 0) {
        fprintf(stderr, "setup: %s\n", mnas_ctx_last_error(ctx));
        return 1;
    }

    mnas_optim_options oo = MNAS_OPTIM_OPTIONS_INIT;
    oo.lr = 0.01;
    mnas_optim *adam = mnas_optim_create(p, &oo);
    double first = loss_of(ctx, mlp, p, x, y, 0), last = first;
    for (int step = 0; step < 400 && last >= 0; step++) {
        last = loss_of(ctx, mlp, p, x, y, 1);
        if (last >= 0 && mnas_optim_step(adam) != MNAS_OK) last = -1;
    }
    last = last >= 0 ? loss_of(ctx, mlp, p, x, y, 0) : -1;
    printf("MSE %.4f before, %.5f after %lld Adam steps\n", first, last, (long long)mnas_optim_steps(adam));
    int bad = !(last >= 0 && last < 0.1 * first);

    /* Save, load into the second set (same names and shapes), compare. */
    char path[64];
    snprintf(path, sizeof path, "train_and_save.ckpt");
    if (mnas_params_save(p, path) != MNAS_OK || mnas_params_load(q, path) != MNAS_OK) {
        fprintf(stderr, "checkpoint: %s\n", mnas_ctx_last_error(ctx));
        bad = 1;
    }
    double reloaded = loss_of(ctx, mlp, q, x, y, 0);
    printf("loaded from %s: MSE %.5f (%s)\n", path, reloaded, reloaded == last ? "identical" : "DIFFERENT");
    bad |= reloaded != last;
    remove(path);

    /* The data and the fit, as a PNG. */
    mnas_tape *tape = NULL;
    mnas_tape_create(ctx, &tape);
    mnas_tensor *pred = mnas_mlp_forward(mlp, tape, x, mnas_params_tensors(q));
    double px[N], py[N], pf[N];
    for (int i = 0; i < N && pred; i++) {
        px[i] = xs[i];
        py[i] = ys[i];
        pf[i] = mnas_tensor_cdata(pred)[i];
    }
    mnas_figure *fig = mnas_figure_create(ctx, 480, 320, 1, 1);
    snprintf(path, sizeof path, "train_and_save.png");
    bad |= !pred || !fig || mnas_figure_points(fig, 0, px, py, N, mnas_figure_color(0), 3, "sin(x)") != MNAS_OK ||
           mnas_figure_line(fig, 0, px, pf, N, mnas_figure_color(1), 2, "MLP") != MNAS_OK ||
           mnas_figure_save_png(fig, path) != MNAS_OK;
    printf("figure: %s\n", bad ? mnas_ctx_last_error(ctx) : "written");
    remove(path);

    mnas_figure_free(fig);
    mnas_tape_free(tape);
    mnas_optim_free(adam);
    mnas_params_free(q);
    mnas_params_free(p);
    mnas_mlp_free(mlp);
    mnas_tensor_free(x);
    mnas_tensor_free(y);
    mnas_ctx_free(ctx);
    return bad;
}
