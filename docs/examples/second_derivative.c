/* Worked example of core.h, tensor.h and autodiff.h: the first and second
 * derivatives of y = sum(x^3) through mnas_grad with create_graph, and an
 * error read back from the context. Exits 0 when every value is right. */
#include <math.h>
#include <stdio.h>

#include <mnas/mnas.h>

int main(void)
{
    mnas_ctx *ctx = NULL;
    mnas_ctx_options opts = MNAS_CTX_OPTIONS_INIT;
    opts.seed = 42;
    if (mnas_ctx_create(&ctx, &opts) != MNAS_OK) return 1;

    /* a persistent leaf that requires a gradient */
    const int64_t shape[1] = { 3 };
    const mnas_real values[3] = { 1.0f, 2.0f, -0.5f };
    mnas_tensor *x = mnas_tensor_from_data(ctx, 1, shape, values);
    mnas_tensor_set_requires_grad(x, 1);

    mnas_tape *tape = NULL;
    mnas_tape_create(ctx, &tape);
    mnas_tensor *y = mnas_sum(tape, mnas_mul(tape, mnas_square(tape, x), x)); /* sum(x^3) */

    /* dy/dx = 3x^2, recorded (create_graph) so it can be differentiated again */
    mnas_tensor *g = NULL;
    mnas_status st = mnas_grad(tape, y, 1, &x, &g, 1);
    /* d/dx sum(dy/dx) = 6x */
    mnas_tensor *h = NULL;
    if (st == MNAS_OK) st = mnas_grad(tape, mnas_sum(tape, g), 1, &x, &h, 0);
    if (st != MNAS_OK) {
        fprintf(stderr, "mnas_grad: %s\n", mnas_ctx_last_error(ctx));
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        double v = values[i];
        bad |= fabs(mnas_tensor_cdata(g)[i] - 3 * v * v) > 1e-5;
        bad |= fabs(mnas_tensor_cdata(h)[i] - 6 * v) > 1e-5;
        printf("x = %5.2f  dy/dx = %6.3f  d2y/dx2 = %6.3f\n", v, mnas_tensor_cdata(g)[i], mnas_tensor_cdata(h)[i]);
    }

    /* bad input: a status and a message on the context, never a crash */
    const int64_t other[1] = { 4 };
    mnas_tensor *z = mnas_tensor_zeros(ctx, 1, other);
    mnas_tensor *sum = mnas_add(tape, x, z); /* shapes 3 and 4 do not broadcast */
    bad |= sum != NULL;
    printf("error as expected: %s\n", mnas_tape_last_error(tape));

    mnas_tape_free(tape); /* frees y, g, h with it */
    mnas_tensor_free(z);
    mnas_tensor_free(x);
    mnas_ctx_free(ctx);
    return bad;
}
