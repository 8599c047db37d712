#include <check.h>
#include <mnas/mnas.h>
START_TEST(smoke)
{
    mnas_ctx *ctx; ck_assert_int_eq(mnas_ctx_create(&ctx, NULL), MNAS_OK);
    mnas_tape *tp; ck_assert_int_eq(mnas_tape_create(ctx, &tp), MNAS_OK);
    int64_t s[2] = {3, 4};
    mnas_tensor *x = mnas_tensor_randn(ctx, 2, s, 0, 1);
    mnas_tensor_set_requires_grad(x, 1);
    mnas_tensor *y = mnas_sum(tp, mnas_square(tp, x));
    mnas_tensor *g;
    ck_assert_int_eq(mnas_grad(tp, y, 1, &x, &g, 0), MNAS_OK);
    for (int i = 0; i < 12; i++) ck_assert_float_eq_tol(mnas_tensor_data(g)[i], 2*mnas_tensor_data(x)[i], 1e-6);
    mnas_tensor_free(x); mnas_tape_free(tp); mnas_ctx_free(ctx);
}
END_TEST
int main(void){ Suite *s = suite_create("smoke"); TCase *tc = tcase_create("smoke"); tcase_add_test(tc, smoke); suite_add_tcase(s, tc);
 SRunner *r = srunner_create(s); srunner_run_all(r, CK_NORMAL); int f = srunner_ntests_failed(r); srunner_free(r); return f != 0; }
