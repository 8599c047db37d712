/* Worked example of nas.h: the DARTS search space, the conv supernet (stem
 * at stride 2) run on a batch of images with architecture weights alpha,
 * the gradient reaching alpha, the genotype derived from alpha in its text
 * form and parsed back, and the child network of that genotype, which gives
 * the supernet's output when alpha is the genotype's one-hot. Exits 0 when
 * every check holds. */
#include <math.h>
#include <stdio.h>

#include <mnas/mnas.h>

int main(void)
{
    mnas_ctx *ctx = NULL;
    mnas_ctx_options co = MNAS_CTX_OPTIONS_INIT;
    co.seed = 3;
    if (mnas_ctx_create(&ctx, &co) != MNAS_OK) return 1;
    int bad = 0;

    mnas_search_space *space = mnas_search_space_darts(ctx);
    size_t ops = mnas_search_space_num_ops(space);
    printf("DARTS space, %zu ops:", ops);
    for (size_t k = 0; k < ops; k++) printf(" %s", mnas_search_space_op_name(space, k));
    printf("\n");

    /* 1 input channel, C = 4, 2 nodes per cell, 3 classes; cells on 6 x 6 */
    mnas_supernet *net = mnas_supernet_create_conv(space, 1, 4, 2, 3);
    mnas_params *w = mnas_params_create(ctx);
    if (!net || !w || mnas_supernet_set_stem_stride(net, 2) != MNAS_OK || mnas_supernet_add_params(net, w, "", 0) < 0) {
        fprintf(stderr, "setup: %s\n", mnas_ctx_last_error(ctx));
        return 1;
    }
    const int64_t xs[4] = { 2, 1, 12, 12 }, as[2] = { (int64_t)mnas_supernet_alpha_rows(net), (int64_t)ops };
    mnas_tensor *x = mnas_tensor_randn(ctx, 4, xs, 0.0, 1.0);
    mnas_tensor *alpha = mnas_tensor_randn(ctx, 2, as, 0.0, 1.0);
    mnas_tensor_set_requires_grad(alpha, 1);

    /* supernet forward with softmax(alpha) per edge, and d sum(logits^2) / d alpha */
    mnas_tape *tape = NULL;
    mnas_tape_create(ctx, &tape);
    mnas_tensor *logits = mnas_supernet_forward(net, tape, x, mnas_params_tensors(w), mnas_softmax(tape, alpha));
    mnas_tensor *g = NULL;
    if (!logits || mnas_grad(tape, mnas_sum(tape, mnas_square(tape, logits)), 1, &alpha, &g, 0) != MNAS_OK) {
        fprintf(stderr, "forward/grad: %s\n", mnas_tape_last_error(tape));
        return 1;
    }
    printf("%lld params tensors, logits [%lld, %lld], alpha [%lld, %lld]\n", (long long)mnas_params_count(w),
           (long long)mnas_tensor_dim(logits, 0), (long long)mnas_tensor_dim(logits, 1), (long long)as[0],
           (long long)as[1]);
    double gnorm = 0;
    for (int64_t i = 0; i < mnas_tensor_size(g); i++) gnorm += mnas_tensor_cdata(g)[i] * mnas_tensor_cdata(g)[i];
    bad |= !(gnorm > 0 && isfinite(gnorm)) || mnas_tensor_dim(logits, 1) != 3;

    /* the genotype: per node the 2 strongest edges and their strongest op */
    mnas_genotype *geno = mnas_genotype_derive_supernet(net, alpha);
    char text[512];
    bad |= !geno || mnas_genotype_to_string(geno, text, sizeof text) < 0;
    printf("genotype: %s\n", bad ? "?" : text);
    mnas_genotype *parsed = bad ? NULL : mnas_genotype_parse(ctx, space, text);
    bad |= !parsed || !mnas_genotype_equal(geno, parsed);

    /* its child network, on the supernet's weights (same names), against
     * the supernet under the genotype's one-hot alpha */
    mnas_child *child = mnas_child_create(net, geno);
    mnas_params *cw = mnas_params_create(ctx);
    mnas_tensor *onehot = mnas_tensor_zeros(ctx, 2, as);
    bad |= !child || !cw || mnas_child_add_params(child, cw, "", 0) < 0 || !onehot;
    if (!bad) {
        printf("child network: %lld of the supernet's %lld parameter tensors\n", (long long)mnas_params_count(cw),
               (long long)mnas_params_count(w));
        mnas_params_copy_matching(cw, w);
        bad |= mnas_genotype_onehot_supernet(geno, net, mnas_tensor_data(onehot)) != MNAS_OK;
        mnas_tensor *yc = mnas_child_forward(child, tape, x, mnas_params_tensors(cw));
        mnas_tensor *ys = mnas_supernet_forward(net, tape, x, mnas_params_tensors(w), onehot);
        double diff = yc && ys ? 0 : INFINITY;
        for (int64_t i = 0; yc && ys && i < mnas_tensor_size(yc); i++)
            diff = fmax(diff, fabs(mnas_tensor_cdata(yc)[i] - mnas_tensor_cdata(ys)[i]));
        printf("child vs supernet under one-hot alpha: max difference %.2g\n", diff);
        bad |= !(diff < 1e-4);
    }

    mnas_tensor_free(onehot);
    mnas_params_free(cw);
    mnas_child_free(child);
    mnas_genotype_free(parsed);
    mnas_genotype_free(geno);
    mnas_tape_free(tape);
    mnas_tensor_free(alpha);
    mnas_tensor_free(x);
    mnas_params_free(w);
    mnas_supernet_free(net);
    mnas_search_space_free(space);
    mnas_ctx_free(ctx);
    return bad;
}
