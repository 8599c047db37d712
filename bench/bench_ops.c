/* bench_ops — cost of small recorded ops and of the linear layer, compared
 * with plain C loops and raw BLIS on the same shapes.
 *
 *   1. mnas_add of two persistent 10x50 tensors that require gradients, on a
 *      tape reset every 1000 ops: ns per recorded op (with and without the
 *      amortised reset), ns per reset, ns per op in a no-grad scope, and a
 *      plain C loop adding 500 floats for comparison.
 *   2. mnas_linear forward (x [N, I], W [O, I], b [O]) at 10x50x50 and at
 *      1024x1024x1024, recorded and in a no-grad scope, in GFLOP/s
 *      (2*N*I*O flops), against raw bli_sgemm (x·Wᵀ, beta = 0, preallocated
 *      C) alone, followed by a bias loop, and with the library's own method
 *      (bias rows copied into C, then beta = 1).
 *   3. forward + backward: y = linear(x, W, b); loss = sum(y);
 *      mnas_grad(loss, {x, W, b}) with the tape reset after every iteration
 *      (one training step; also with a long tape), counted as 3 GEMMs of
 *      2*N*I*O flops, against raw BLIS doing the same 3 GEMMs alone and with
 *      the same extra loops (bias, sum, ones, bias gradient).
 *
 *   4. convolution and pooling on a DARTS-sized batch [5, 16, 28, 28]:
 *      conv2d 3x3 (16 -> 16, pad 1; Winograd), the same with dilation 2
 *      (direct), 1x1 (16 -> 16), depthwise 3x3 and depthwise 5x5 with
 *      dilation 2 (direct loops), each
 *      forward in a no-grad scope and forward + backward (gradients of
 *      sum(y) with respect to x, w, b); GFLOP/s count 2*N*O*OH*OW*(C/groups)
 *      *kh*kw flops per pass, three passes for forward + backward. Also a
 *      plain direct-loop 3x3 convolution for comparison, and max / average
 *      pooling 3x3 (stride 1, pad 1) forward and forward + backward, in
 *      input elements per second; then the conv net's 3x3 layers (32 -> 32
 *      at 14 x 14 on 5 and 25 images, Winograd; at 7 x 7, direct), whose
 *      GFLOP/s are those of the direct arithmetic (Winograd does 2.25 times
 *      fewer multiplications); last, batch-norm with gamma and beta on the
 *      conv net's shapes: forward (no-grad), forward + backward, and forward
 *      + recorded backward + its gradient (second order).
 *
 * Before timing a shape, libmnas's values and gradients are checked against
 * the raw BLIS results.
 *
 * Method: warm up and calibrate the repetition count so one run lasts about
 * 0.3 s (--quick: 0.01 s), then take the best (minimum) of 5 runs; times come
 * from clock_gettime(CLOCK_MONOTONIC). BLIS is pinned to one thread, as the
 * library does.
 *
 * Options:
 *   --quick      short runs (smoke test)
 *   --large N    edge of the large linear shape (default 1024)
 *   --only-add   only the small-op benchmark (for profilers)
 *   --no-large   skip the large linear shape
 *   --only-conv  only the convolution, pooling and batch-norm benchmarks (4.)
 *   --help
 */
#include <blis.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mnas/mnas.h>

/* ------------------------------------------------------------------ setup */

static mnas_ctx *g_ctx;        /* for error messages */
static double g_target = 0.3;  /* seconds per measured run */
static int g_runs = 5;         /* measured runs; the best is kept */

#define SMALL_N 10
#define SMALL_F 50
#define OPS_PER_RESET 1000

static void die_ctx(const char *what)
{
    fprintf(stderr, "bench_ops: %s failed: %s\n", what,
            g_ctx ? mnas_ctx_last_error(g_ctx) : "(no context)");
    exit(1);
}

static void die_tape(mnas_tape *tape, const char *what)
{
    fprintf(stderr, "bench_ops: %s failed: tape: %s (%s); context: %s\n", what,
            mnas_tape_last_error(tape), mnas_status_str(mnas_tape_status(tape)),
            g_ctx ? mnas_ctx_last_error(g_ctx) : "(no context)");
    exit(1);
}

static void die_msg(const char *msg)
{
    fprintf(stderr, "bench_ops: %s\n", msg);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die_msg("clock_gettime(CLOCK_MONOTONIC) failed");
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Keep the compiler from merging or dropping repeated pure loops. */
#if defined(__GNUC__)
#define CLOBBER() __asm__ __volatile__("" ::: "memory")
#define NOINLINE __attribute__((noinline))
#else
#define CLOBBER() ((void)0)
#define NOINLINE
#endif

/* 64-byte aligned, with 256 bytes of slack after the end: BLIS 0.9's
 * Haswell "sup" kernels read a few elements past the end of an operand
 * (flame/blis#635, #824), which memcheck reports on exactly-sized buffers.
 * libmnas's own buffers (arena chunks, over-allocated aligned blocks) have
 * such slack already. */
static float *falloc(size_t n)
{
    size_t bytes = n * sizeof(float) + 256;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) die_msg("out of memory");
    return p;
}

static mnas_tensor *param(int ndim, const int64_t *shape, int requires_grad)
{
    mnas_tensor *t = mnas_tensor_rand(g_ctx, ndim, shape, -1.0, 1.0);
    if (!t) die_ctx("mnas_tensor_rand");
    if (mnas_tensor_set_requires_grad(t, requires_grad) != MNAS_OK) die_ctx("mnas_tensor_set_requires_grad");
    return t;
}

static void check_tape(mnas_tape *tape, const char *what)
{
    if (mnas_tape_status(tape) != MNAS_OK) die_tape(tape, what);
}

/* -------------------------------------------------------------- harness */

/* Runs `reps` units of work; returns 0, or exits on failure. */
typedef void (*bench_fn)(void *state, long reps);
/* Called after each measured run with its repetition count and duration. */
typedef void (*run_fn)(void *state, long reps, double seconds);

static double time_call(bench_fn fn, void *st, long reps)
{
    double t0 = now();
    fn(st, reps);
    return now() - t0;
}

/* Best seconds per unit over g_runs runs of about g_target seconds each. */
static double bench_best(bench_fn fn, void *st, run_fn on_run, long *reps_out)
{
    /* Warm up (caches, page faults, arena growth) and calibrate. */
    long reps = 1;
    double t = time_call(fn, st, reps);
    while (t < g_target / 8 && reps < LONG_MAX / 4) {
        double scale = t > 0 ? (g_target / 4) / t : 16;
        if (scale > 16) scale = 16;
        if (scale < 2) scale = 2;
        reps = (long)((double)reps * scale);
        t = time_call(fn, st, reps);
    }
    double want = ceil((double)reps * g_target / (t > 0 ? t : 1e-9));
    reps = want < 1 ? 1 : (want > (double)(LONG_MAX / 2) ? LONG_MAX / 2 : (long)want);
    double best = INFINITY;
    for (int r = 0; r < g_runs; r++) {
        double s = time_call(fn, st, reps);
        if (on_run) on_run(st, reps, s);
        if (s / (double)reps < best) best = s / (double)reps;
    }
    if (reps_out) *reps_out = reps;
    return best;
}

/* --------------------------------------------------- 1. small recorded op */

typedef struct {
    mnas_tape *tape;
    mnas_tensor *a, *b;
    int recording;
    /* accumulated over one call of add_blocks */
    double op_s, reset_s;
    /* best of the measured runs */
    double best_op_ns, best_reset_ns;
} add_state;

/* One unit: OPS_PER_RESET adds, then a tape reset. */
static void add_blocks(void *vs, long blocks)
{
    add_state *s = vs;
    s->op_s = s->reset_s = 0;
    for (long k = 0; k < blocks; k++) {
        double t0 = now();
        for (int i = 0; i < OPS_PER_RESET; i++) {
            mnas_tensor *c = mnas_add(s->tape, s->a, s->b);
            if (!c) die_tape(s->tape, "mnas_add");
        }
        double t1 = now();
        size_t nodes = mnas_tape_num_nodes(s->tape);
        /* recorded: one node per add plus one leaf node for each of a, b */
        if (nodes != (s->recording ? (size_t)OPS_PER_RESET + 2 : 0)) {
            fprintf(stderr, "bench_ops: tape holds %zu nodes after %d adds (recording %d)\n", nodes,
                    OPS_PER_RESET, s->recording);
            exit(1);
        }
        double t2 = now();
        mnas_tape_reset(s->tape);
        double t3 = now();
        s->op_s += t1 - t0;
        s->reset_s += t3 - t2;
    }
}

static void add_on_run(void *vs, long blocks, double seconds)
{
    (void)seconds;
    add_state *s = vs;
    double op = 1e9 * s->op_s / ((double)blocks * OPS_PER_RESET);
    double rs = 1e9 * s->reset_s / (double)blocks;
    if (op < s->best_op_ns) s->best_op_ns = op;
    if (rs < s->best_reset_ns) s->best_reset_ns = rs;
}

/* A plain loop; built at -O2 GCC 12 keeps it scalar (its "very cheap"
 * vectoriser cost model), as it did mnas__k_binary's loops while the kernels
 * were built at -O2. */
NOINLINE static void plain_add(float *restrict out, const float *restrict a, const float *restrict b, int n)
{
    for (int i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* The same with explicit 16-byte vectors (baseline SSE2 on x86-64, no
 * -march flags): what a vectorised kernel would cost. */
#if defined(__GNUC__)
typedef float v4sf __attribute__((vector_size(16)));
static inline v4sf v4_load(const float *p)
{
    v4sf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, v4sf v) { memcpy(p, &v, sizeof v); }
NOINLINE static void plain_add_vec(float *restrict out, const float *restrict a, const float *restrict b, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        v4sf x0 = v4_load(a + i) + v4_load(b + i);
        v4sf x1 = v4_load(a + i + 4) + v4_load(b + i + 4);
        v4sf x2 = v4_load(a + i + 8) + v4_load(b + i + 8);
        v4sf x3 = v4_load(a + i + 12) + v4_load(b + i + 12);
        v4_store(out + i, x0);
        v4_store(out + i + 4, x1);
        v4_store(out + i + 8, x2);
        v4_store(out + i + 12, x3);
    }
    for (; i + 4 <= n; i += 4) v4_store(out + i, v4_load(a + i) + v4_load(b + i));
    for (; i < n; i++) out[i] = a[i] + b[i];
}
#else
#define plain_add_vec plain_add
#endif

typedef struct {
    float *a, *b, *out;
    size_t out_len; /* elements in out; a rotating buffer if > n */
    int n;
    int vec;
    size_t pos;
} plain_state;

static void plain_reps(void *vs, long reps)
{
    plain_state *s = vs;
    for (long r = 0; r < reps; r++) {
        if (s->pos + (size_t)s->n > s->out_len) s->pos = 0;
        if (s->vec)
            plain_add_vec(s->out + s->pos, s->a, s->b, s->n);
        else
            plain_add(s->out + s->pos, s->a, s->b, s->n);
        s->pos += ((size_t)s->n + 15) & ~(size_t)15; /* next 64-byte boundary */
        CLOBBER();
    }
}

static void bench_small_add(void)
{
    const int64_t shape[2] = { SMALL_N, SMALL_F };
    const int n = SMALL_N * SMALL_F;
    mnas_tensor *a = param(2, shape, 1), *b = param(2, shape, 1);
    mnas_tape *tape;
    if (mnas_tape_create(g_ctx, &tape) != MNAS_OK) die_ctx("mnas_tape_create");

    printf("== 1. small op: mnas_add of two persistent %dx%d tensors requiring gradients, "
           "tape reset every %d ops\n", SMALL_N, SMALL_F, OPS_PER_RESET);

    add_state rec = { tape, a, b, 1, 0, 0, INFINITY, INFINITY };
    double per_block = bench_best(add_blocks, &rec, add_on_run, NULL);
    check_tape(tape, "recorded adds");
    size_t bytes_reserved = mnas_tape_bytes_reserved(tape);

    mnas_tape_no_grad_begin(tape);
    add_state ng = { tape, a, b, 0, 0, 0, INFINITY, INFINITY };
    double per_block_ng = bench_best(add_blocks, &ng, add_on_run, NULL);
    mnas_tape_no_grad_end(tape);
    check_tape(tape, "no-grad adds");

    /* The kernel alone: 500 float adds into a hot buffer, and into a
     * rotating buffer as large as the tape's data for 1000 ops (2 MB), which
     * is what the arena's fresh memory costs. */
    float *pa = falloc((size_t)n), *pb = falloc((size_t)n);
    memcpy(pa, mnas_tensor_cdata(a), (size_t)n * sizeof(float));
    memcpy(pb, mnas_tensor_cdata(b), (size_t)n * sizeof(float));
    size_t rot_len = (size_t)OPS_PER_RESET * (((size_t)n + 15) & ~(size_t)15);
    float *hot = falloc((size_t)n), *rot = falloc(rot_len);
    memset(rot, 0, rot_len * sizeof(float));
    plain_state ph = { pa, pb, hot, (size_t)n, n, 0, 0 };
    double plain_hot = bench_best(plain_reps, &ph, NULL, NULL);
    plain_state pr = { pa, pb, rot, rot_len, n, 0, 0 };
    double plain_rot = bench_best(plain_reps, &pr, NULL, NULL);
    plain_state pvh = { pa, pb, hot, (size_t)n, n, 1, 0 };
    double vec_hot = bench_best(plain_reps, &pvh, NULL, NULL);
    plain_state pvr = { pa, pb, rot, rot_len, n, 1, 0 };
    double vec_rot = bench_best(plain_reps, &pvr, NULL, NULL);
    if (memcmp(hot, rot, (size_t)n * sizeof(float)) != 0) die_msg("plain loops disagree");

    printf("mnas_add recorded, excluding reset:            %8.1f ns/op\n", rec.best_op_ns);
    printf("mnas_add recorded, including amortised reset:  %8.1f ns/op\n", 1e9 * per_block / OPS_PER_RESET);
    printf("mnas_tape_reset after %d recorded adds:      %8.1f ns/reset (%.3f ns/op amortised)\n",
           OPS_PER_RESET, rec.best_reset_ns, rec.best_reset_ns / OPS_PER_RESET);
    printf("mnas_add in a no-grad scope, excluding reset:  %8.1f ns/op\n", ng.best_op_ns);
    printf("mnas_add in a no-grad scope, incl. reset:      %8.1f ns/op\n", 1e9 * per_block_ng / OPS_PER_RESET);
    printf("mnas_tape_reset after %d no-grad adds:       %8.1f ns/reset\n", OPS_PER_RESET, ng.best_reset_ns);
    printf("plain C loop, %d float adds, scalar, hot output buffer:        %8.1f ns/op\n", n, 1e9 * plain_hot);
    printf("plain C loop, %d float adds, scalar, 2 MB rotating output:     %8.1f ns/op\n", n, 1e9 * plain_rot);
    printf("plain C loop, %d float adds, SSE vectors, hot output buffer:   %8.1f ns/op\n", n, 1e9 * vec_hot);
    printf("plain C loop, %d float adds, SSE vectors, 2 MB rotating output:%8.1f ns/op\n", n, 1e9 * vec_rot);
    printf("recording overhead (recorded - no-grad):       %8.1f ns/op\n", rec.best_op_ns - ng.best_op_ns);
    printf("tape bytes reserved for %d recorded adds:    %zu bytes\n", OPS_PER_RESET, bytes_reserved);
    printf("target < 200 ns per small recorded op:         %s (%.1f ns/op incl. reset)\n",
           1e9 * per_block / OPS_PER_RESET < 200 ? "met" : "NOT met", 1e9 * per_block / OPS_PER_RESET);

    free(pa);
    free(pb);
    free(hot);
    free(rot);
    mnas_tape_free(tape);
    mnas_tensor_free(a);
    mnas_tensor_free(b);
}

/* ------------------------------------------------------- raw BLIS helpers */

/* C[N, O] = X[N, I] · W[O, I]ᵀ (+ beta C). */
static void raw_gemm_xwt(int64_t N, int64_t I, int64_t O, float *x, float *w, float beta, float *c)
{
    float one = 1.0f;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)N, (dim_t)O, (dim_t)I, &one, x, (inc_t)I, 1, w,
              (inc_t)I, 1, &beta, c, (inc_t)O, 1);
}

/* dX[N, I] = G[N, O] · W[O, I] */
static void raw_gemm_gw(int64_t N, int64_t I, int64_t O, float *g, float *w, float *dx)
{
    float one = 1.0f, zero = 0.0f;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)N, (dim_t)I, (dim_t)O, &one, g, (inc_t)O, 1, w,
              (inc_t)I, 1, &zero, dx, (inc_t)I, 1);
}

/* dW[O, I] = G[N, O]ᵀ · X[N, I] */
static void raw_gemm_gtx(int64_t N, int64_t I, int64_t O, float *g, float *x, float *dw)
{
    float one = 1.0f, zero = 0.0f;
    bli_sgemm(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)O, (dim_t)I, (dim_t)N, &one, g, (inc_t)O, 1, x,
              (inc_t)I, 1, &zero, dw, (inc_t)I, 1);
}

typedef struct {
    int64_t N, I, O;
    float *x, *w, *b, *c;        /* forward */
    float *g, *dx, *dw, *db;     /* backward */
    int extra;                   /* bias add, sum, ones fill, bias gradient */
    int bias_beta1;              /* forward: bias rows copied into C, then beta = 1 */
    double sink;
} raw_state;

static void raw_forward(void *vs, long reps)
{
    raw_state *s = vs;
    for (long r = 0; r < reps; r++) {
        if (s->bias_beta1) {
            for (int64_t i = 0; i < s->N; i++) memcpy(s->c + i * s->O, s->b, (size_t)s->O * sizeof(float));
            raw_gemm_xwt(s->N, s->I, s->O, s->x, s->w, 1.0f, s->c);
            CLOBBER();
            continue;
        }
        raw_gemm_xwt(s->N, s->I, s->O, s->x, s->w, 0.0f, s->c);
        if (s->extra)
            for (int64_t i = 0; i < s->N; i++) {
                float *row = s->c + i * s->O;
                for (int64_t j = 0; j < s->O; j++) row[j] += s->b[j];
            }
        CLOBBER();
    }
}

static void raw_fwd_bwd(void *vs, long reps)
{
    raw_state *s = vs;
    const int64_t N = s->N, I = s->I, O = s->O;
    for (long r = 0; r < reps; r++) {
        raw_gemm_xwt(N, I, O, s->x, s->w, 0.0f, s->c);
        if (s->extra) {
            double sum = 0;
            for (int64_t i = 0; i < N; i++) {
                float *row = s->c + i * O;
                for (int64_t j = 0; j < O; j++) row[j] += s->b[j];
            }
            for (int64_t k = 0; k < N * O; k++) sum += s->c[k];
            s->sink += sum;
            for (int64_t k = 0; k < N * O; k++) s->g[k] = 1.0f; /* d sum / d y */
        }
        raw_gemm_gw(N, I, O, s->g, s->w, s->dx);
        raw_gemm_gtx(N, I, O, s->g, s->x, s->dw);
        if (s->extra) {
            for (int64_t j = 0; j < O; j++) s->db[j] = 0;
            for (int64_t i = 0; i < N; i++)
                for (int64_t j = 0; j < O; j++) s->db[j] += s->g[i * O + j];
        }
        CLOBBER();
    }
}

/* ------------------------------------------------------ libmnas linear */

typedef struct {
    mnas_tape *tape;
    mnas_tensor *x, *w, *b;
    long per_reset, since;
} lin_state;

static void lin_forward(void *vs, long reps)
{
    lin_state *s = vs;
    for (long r = 0; r < reps; r++) {
        mnas_tensor *y = mnas_linear(s->tape, s->x, s->w, s->b);
        if (!y) die_tape(s->tape, "mnas_linear");
        if (++s->since >= s->per_reset) {
            mnas_tape_reset(s->tape);
            s->since = 0;
        }
    }
}

static void lin_fwd_bwd(void *vs, long reps)
{
    lin_state *s = vs;
    mnas_tensor *ins[3] = { s->x, s->w, s->b }, *grads[3];
    for (long r = 0; r < reps; r++) {
        mnas_tensor *y = mnas_linear(s->tape, s->x, s->w, s->b);
        if (!y) die_tape(s->tape, "mnas_linear");
        mnas_tensor *loss = mnas_sum(s->tape, y);
        if (!loss) die_tape(s->tape, "mnas_sum");
        if (mnas_grad(s->tape, loss, 3, ins, grads, 0) != MNAS_OK) die_tape(s->tape, "mnas_grad");
        if (++s->since >= s->per_reset) {
            mnas_tape_reset(s->tape);
            s->since = 0;
        }
    }
}

static double max_rel_diff(const float *got, const float *want, int64_t n)
{
    double md = 0, mw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > md) md = d;
        if (fabs((double)want[i]) > mw) mw = fabs((double)want[i]);
    }
    return md / (mw > 0 ? mw : 1);
}

static void expect_close(const char *what, const float *got, const float *want, int64_t n)
{
    double e = max_rel_diff(got, want, n);
    if (!(e <= 1e-4)) {
        fprintf(stderr, "bench_ops: %s differs from raw BLIS (max rel. error %g)\n", what, e);
        exit(1);
    }
}

/* libmnas and raw BLIS must compute the same thing before they are timed. */
static void verify(mnas_tape *tape, lin_state *ls, raw_state *rs)
{
    const int64_t N = rs->N, I = rs->I, O = rs->O;
    mnas_tape_reset(tape);
    mnas_tensor *y = mnas_linear(tape, ls->x, ls->w, ls->b);
    mnas_tensor *loss = y ? mnas_sum(tape, y) : NULL;
    mnas_tensor *ins[3] = { ls->x, ls->w, ls->b }, *grads[3];
    if (!loss) die_tape(tape, "mnas_linear / mnas_sum (check)");
    if (mnas_grad(tape, loss, 3, ins, grads, 0) != MNAS_OK) die_tape(tape, "mnas_grad (check)");
    rs->extra = 1;
    raw_fwd_bwd(rs, 1);
    expect_close("linear forward", mnas_tensor_cdata(y), rs->c, N * O);
    expect_close("d loss / d x", mnas_tensor_cdata(grads[0]), rs->dx, N * I);
    expect_close("d loss / d W", mnas_tensor_cdata(grads[1]), rs->dw, O * I);
    expect_close("d loss / d b", mnas_tensor_cdata(grads[2]), rs->db, O);
    mnas_tape_reset(tape);
}

static void bench_linear_shape(int64_t N, int64_t I, int64_t O)
{
    const int64_t xs[2] = { N, I }, ws[2] = { O, I }, bs[1] = { O };
    mnas_tensor *x = param(2, xs, 1), *w = param(2, ws, 1), *b = param(1, bs, 1);
    mnas_tape *tape;
    if (mnas_tape_create(g_ctx, &tape) != MNAS_OK) die_ctx("mnas_tape_create");

    raw_state rs;
    memset(&rs, 0, sizeof rs);
    rs.N = N;
    rs.I = I;
    rs.O = O;
    rs.x = falloc((size_t)(N * I));
    rs.w = falloc((size_t)(O * I));
    rs.b = falloc((size_t)O);
    rs.c = falloc((size_t)(N * O));
    rs.g = falloc((size_t)(N * O));
    rs.dx = falloc((size_t)(N * I));
    rs.dw = falloc((size_t)(O * I));
    rs.db = falloc((size_t)O);
    memcpy(rs.x, mnas_tensor_cdata(x), (size_t)(N * I) * sizeof(float));
    memcpy(rs.w, mnas_tensor_cdata(w), (size_t)(O * I) * sizeof(float));
    memcpy(rs.b, mnas_tensor_cdata(b), (size_t)O * sizeof(float));
    for (int64_t k = 0; k < N * O; k++) rs.g[k] = 1.0f;

    /* Reset the tape once its output data reaches about 4 MB. */
    long fwd_reset = (long)((4 << 20) / (N * O * (int64_t)sizeof(float)));
    if (fwd_reset < 1) fwd_reset = 1;
    if (fwd_reset > OPS_PER_RESET) fwd_reset = OPS_PER_RESET;
    /* fwd+bwd: y, ones, dx, dW, db and scratch per iteration; the main
     * figure resets the tape after every iteration (one training step). */
    int64_t fb_bytes = (2 * N * O + N * I + O * I + 2 * O) * (int64_t)sizeof(float) + 1024;
    long fb_window = (long)((4 << 20) / fb_bytes);
    if (fb_window < 1) fb_window = 1;

    lin_state ls = { tape, x, w, b, fwd_reset, 0 };
    verify(tape, &ls, &rs);

    const double flop = 2.0 * (double)N * (double)I * (double)O;
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)N, (long long)I, (long long)O);

    printf("-- linear forward at N x I x O = %s (x [%lld, %lld], W [%lld, %lld], b [%lld]); "
           "%.0f flop/call, tape reset every %ld calls\n",
           shape, (long long)N, (long long)I, (long long)O, (long long)I, (long long)O, flop, fwd_reset);

    ls.since = 0;
    double t_rec = bench_best(lin_forward, &ls, NULL, NULL);
    check_tape(tape, "mnas_linear (recorded)");
    mnas_tape_reset(tape);
    ls.since = 0;
    mnas_tape_no_grad_begin(tape);
    double t_ng = bench_best(lin_forward, &ls, NULL, NULL);
    mnas_tape_no_grad_end(tape);
    check_tape(tape, "mnas_linear (no-grad)");
    mnas_tape_reset(tape);

    rs.extra = 0;
    double t_raw = bench_best(raw_forward, &rs, NULL, NULL);
    rs.extra = 1;
    double t_rawb = bench_best(raw_forward, &rs, NULL, NULL);
    rs.extra = 0;
    rs.bias_beta1 = 1;
    double t_rawc = bench_best(raw_forward, &rs, NULL, NULL);
    rs.bias_beta1 = 0;

    printf("mnas_linear %s, recorded:         %9.2f GFLOP/s  %10.3f us/call\n", shape, flop / t_rec * 1e-9,
           t_rec * 1e6);
    printf("mnas_linear %s, no-grad scope:    %9.2f GFLOP/s  %10.3f us/call\n", shape, flop / t_ng * 1e-9,
           t_ng * 1e6);
    printf("raw bli_sgemm %s (beta=0):        %9.2f GFLOP/s  %10.3f us/call\n", shape, flop / t_raw * 1e-9,
           t_raw * 1e6);
    printf("raw bli_sgemm %s + bias loop:     %9.2f GFLOP/s  %10.3f us/call\n", shape, flop / t_rawb * 1e-9,
           t_rawb * 1e6);
    printf("raw bias rows memcpy + bli_sgemm beta=1 %s (libmnas's method): %9.2f GFLOP/s  %10.3f us/call\n",
           shape, flop / t_rawc * 1e-9, t_rawc * 1e6);
    printf("ratio libmnas/raw time %s: recorded %.2fx, no-grad %.2fx vs sgemm alone; "
           "recorded %.2fx, no-grad %.2fx vs sgemm + bias loop; recorded %.2fx, no-grad %.2fx vs "
           "bias copy + sgemm beta=1\n",
           shape, t_rec / t_raw, t_ng / t_raw, t_rec / t_rawb, t_ng / t_rawb, t_rec / t_rawc, t_ng / t_rawc);
    if (flop < 1e7) /* at large shapes the difference is below the noise */
        printf("libmnas wrapper overhead %s (recorded - raw bias copy + sgemm beta=1): %.1f ns/call\n", shape,
               (t_rec - t_rawc) * 1e9);
    printf("target linear forward within 1.5x of raw BLIS %s: %s (recorded %.2fx vs sgemm alone)\n", shape,
           t_rec / t_raw <= 1.5 ? "met" : "NOT met", t_rec / t_raw);

    /* ---- 3. forward + backward */
    const double flop3 = 3 * flop;
    printf("-- linear forward+backward at %s: y = linear(x, W, b); loss = sum(y); "
           "mnas_grad(loss, {x, W, b}); %.0f flop (3 GEMMs), tape reset every iteration\n",
           shape, flop3);
    ls.per_reset = 1;
    ls.since = 0;
    mnas_tape_reset(tape);
    double t_fb = bench_best(lin_fwd_bwd, &ls, NULL, NULL);
    check_tape(tape, "forward+backward");
    double t_fbw = t_fb;
    if (fb_window > 1) {
        ls.per_reset = fb_window;
        ls.since = 0;
        mnas_tape_reset(tape);
        t_fbw = bench_best(lin_fwd_bwd, &ls, NULL, NULL);
        check_tape(tape, "forward+backward (long tape)");
    }
    mnas_tape_reset(tape);
    rs.extra = 0;
    double t_fb_raw = bench_best(raw_fwd_bwd, &rs, NULL, NULL);
    rs.extra = 1;
    double t_fb_rawx = bench_best(raw_fwd_bwd, &rs, NULL, NULL);

    printf("libmnas fwd+bwd %s:                %9.2f GFLOP/s  %10.3f us/iter\n", shape, flop3 / t_fb * 1e-9,
           t_fb * 1e6);
    if (fb_window > 1)
        printf("libmnas fwd+bwd %s, tape reset every %ld iterations: %9.2f GFLOP/s  %10.3f us/iter\n", shape,
               fb_window, flop3 / t_fbw * 1e-9, t_fbw * 1e6);
    printf("raw BLIS 3 GEMMs %s:               %9.2f GFLOP/s  %10.3f us/iter\n", shape, flop3 / t_fb_raw * 1e-9,
           t_fb_raw * 1e6);
    printf("raw BLIS 3 GEMMs + bias, sum, ones, bias grad %s: %9.2f GFLOP/s  %10.3f us/iter\n", shape,
           flop3 / t_fb_rawx * 1e-9, t_fb_rawx * 1e6);
    printf("ratio libmnas/raw time fwd+bwd %s: %.2fx vs 3 GEMMs, %.2fx vs 3 GEMMs + extra loops\n", shape,
           t_fb / t_fb_raw, t_fb / t_fb_rawx);

    mnas_tape_free(tape);
    mnas_tensor_free(x);
    mnas_tensor_free(w);
    mnas_tensor_free(b);
    free(rs.x);
    free(rs.w);
    free(rs.b);
    free(rs.c);
    free(rs.g);
    free(rs.dx);
    free(rs.dw);
    free(rs.db);
}

/* Fixed cost of one bli_sgemm call, for the analysis of small shapes. */
static void raw_tiny(void *vs, long reps)
{
    float *m = vs, one = 1.0f, zero = 0.0f;
    for (long r = 0; r < reps; r++) {
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, 1, 1, 1, &one, m, 1, 1, m + 16, 1, 1, &zero, m + 32, 1, 1);
        CLOBBER();
    }
}

/* ------------------------------------------------- 4. convolution, pooling */

enum { K_CONV, K_MAXPOOL, K_AVGPOOL };

typedef struct {
    mnas_tape *tape;
    mnas_tensor *x, *w, *b;
    int kind, stride, pad, dil, groups, backward;
} conv_state;

static void conv_reps(void *vs, long reps)
{
    conv_state *s = vs;
    for (long r = 0; r < reps; r++) {
        if (!s->backward) mnas_tape_no_grad_begin(s->tape);
        mnas_tensor *y;
        if (s->kind == K_CONV)
            y = mnas_conv2d(s->tape, s->x, s->w, s->b, s->stride, s->pad, s->dil, s->groups);
        else if (s->kind == K_MAXPOOL)
            y = mnas_max_pool2d(s->tape, s->x, 3, 1, 1);
        else
            y = mnas_avg_pool2d(s->tape, s->x, 3, 1, 1);
        if (!s->backward) mnas_tape_no_grad_end(s->tape);
        if (!y) die_tape(s->tape, "conv forward");
        if (s->backward) {
            mnas_tensor *ins[3] = { s->x, s->w, s->b }, *g[3];
            size_t n = s->kind == K_CONV ? (s->b ? 3 : 2) : 1;
            if (mnas_grad(s->tape, mnas_sum(s->tape, y), n, ins, g, 0) != MNAS_OK) die_tape(s->tape, "conv backward");
        }
        CLOBBER();
        mnas_tape_reset(s->tape);
    }
}

/* The textbook 7-deep loop nest, for scale (no padding checks hoisted). */
typedef struct {
    const float *x, *w;
    float *y;
    int64_t N, C, H, W, O, k, pad;
} naive_state;

NOINLINE static void naive_conv(void *vs, long reps)
{
    naive_state *s = vs;
    for (long r = 0; r < reps; r++) {
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t o = 0; o < s->O; o++)
                for (int64_t oh = 0; oh < s->H; oh++)
                    for (int64_t ow = 0; ow < s->W; ow++) {
                        float acc = 0;
                        for (int64_t c = 0; c < s->C; c++)
                            for (int64_t i = 0; i < s->k; i++)
                                for (int64_t j = 0; j < s->k; j++) {
                                    int64_t h = oh - s->pad + i, w = ow - s->pad + j;
                                    if (h >= 0 && h < s->H && w >= 0 && w < s->W)
                                        acc += s->w[((o * s->C + c) * s->k + i) * s->k + j] *
                                               s->x[((n * s->C + c) * s->H + h) * s->W + w];
                                }
                        s->y[((n * s->O + o) * s->H + oh) * s->W + ow] = acc;
                    }
        CLOBBER();
    }
}

static void bench_conv_strided(const char *name, int64_t N, int64_t C, int64_t H, int64_t O, int64_t Cg, int k,
                               int stride, int pad, int dil, int groups)
{
    const int64_t W = H;
    int64_t xs[4] = { N, C, H, W }, ws[4] = { O, Cg, k, k }, bs[1] = { O };
    conv_state s = { NULL, param(4, xs, 1), param(4, ws, 1), param(1, bs, 1), K_CONV, stride, pad, dil, groups, 0 };
    if (mnas_tape_create(g_ctx, &s.tape) != MNAS_OK) die_ctx("mnas_tape_create");
    int64_t OH = (H + 2 * pad - dil * (k - 1) - 1) / stride + 1, OW = (W + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    double flops = 2.0 * (double)(N * O * OH * OW * Cg * k * k);
    double t_f = bench_best(conv_reps, &s, NULL, NULL);
    s.backward = 1;
    double t_fb = bench_best(conv_reps, &s, NULL, NULL);
    printf("%-34s fwd %9.1f us %6.2f GFLOP/s | fwd+bwd %9.1f us %6.2f GFLOP/s\n", name, t_f * 1e6,
           flops / t_f * 1e-9, t_fb * 1e6, 3 * flops / t_fb * 1e-9);
    mnas_tape_free(s.tape);
    mnas_tensor_free(s.x);
    mnas_tensor_free(s.w);
    mnas_tensor_free(s.b);
}

static void bench_conv_shape(const char *name, int64_t N, int64_t C, int64_t H, int64_t O, int64_t Cg, int k, int pad,
                             int dil, int groups)
{
    bench_conv_strided(name, N, C, H, O, Cg, k, 1, pad, dil, groups);
}

static void bench_conv_case(const char *name, int64_t O, int64_t Cg, int k, int pad, int dil, int groups)
{
    bench_conv_shape(name, 5, 16, 28, O, Cg, k, pad, dil, groups);
}

static void bench_pool_case(const char *name, int kind)
{
    int64_t xs[4] = { 5, 16, 28, 28 };
    conv_state s = { NULL, param(4, xs, 1), NULL, NULL, kind, 1, 1, 1, 1, 0 };
    if (mnas_tape_create(g_ctx, &s.tape) != MNAS_OK) die_ctx("mnas_tape_create");
    double n = (double)mnas_tensor_size(s.x);
    double t_f = bench_best(conv_reps, &s, NULL, NULL);
    s.backward = 1;
    double t_fb = bench_best(conv_reps, &s, NULL, NULL);
    printf("%-34s fwd %9.1f us %6.0f Melem/s | fwd+bwd %9.1f us %6.0f Melem/s\n", name, t_f * 1e6, n / t_f * 1e-6,
           t_fb * 1e6, n / t_fb * 1e-6);
    mnas_tape_free(s.tape);
    mnas_tensor_free(s.x);
}

static void bench_conv(void)
{
    printf("== 4. convolution and pooling, x [5, 16, 28, 28] (same padding)\n");
    bench_conv_case("conv2d 3x3 16->16 (Winograd)", 16, 16, 3, 1, 1, 1);
    bench_conv_case("conv2d 1x1 16->16 (GEMM)", 16, 16, 1, 0, 1, 1);
    bench_conv_case("depthwise 3x3 (direct)", 16, 1, 3, 1, 1, 16);
    bench_conv_case("depthwise 5x5 dilation 2 (direct)", 16, 1, 5, 4, 2, 16);
    bench_conv_strided("depthwise 3x3 stride 2 (phases)", 5, 16, 28, 16, 1, 3, 2, 1, 1, 16);
    bench_conv_strided("depthwise 5x5 dil 2 stride 2 (phases)", 5, 16, 28, 16, 1, 5, 2, 4, 2, 16);
    bench_conv_case("conv2d 3x3 groups 4 (im2col+GEMM)", 16, 4, 3, 1, 1, 4);
    bench_conv_case("conv2d 3x3 16->16 dil 2 (direct)", 16, 16, 3, 2, 2, 1);
    {
        const int64_t N = 5, C = 16, H = 28, W = 28, O = 16;
        float *x = falloc((size_t)(N * C * H * W)), *w = falloc((size_t)(O * C * 9));
        float *y = falloc((size_t)(N * O * H * W));
        for (int64_t i = 0; i < N * C * H * W; i++) x[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
        for (int64_t i = 0; i < O * C * 9; i++) w[i] = (float)((i * 104729) % 200) / 100.0f - 1.0f;
        naive_state ns = { x, w, y, N, C, H, W, O, 3, 1 };
        double t = bench_best(naive_conv, &ns, NULL, NULL);
        double flops = 2.0 * (double)(N * O * H * W * C * 9);
        printf("%-34s fwd %9.1f us %6.2f GFLOP/s\n", "plain loops conv 3x3 16->16", t * 1e6, flops / t * 1e-9);
        free(x);
        free(w);
        free(y);
    }
    bench_pool_case("max_pool2d 3x3 stride 1 pad 1", K_MAXPOOL);
    bench_pool_case("avg_pool2d 3x3 stride 1 pad 1", K_AVGPOOL);
    printf("== 4b. the conv net's 3x3 layers (32 filters; support 5 images, queries 25)\n");
    bench_conv_shape("[5, 32, 14, 14] (Winograd)", 5, 32, 14, 32, 32, 3, 1, 1, 1);
    bench_conv_shape("[25, 32, 14, 14] (Winograd)", 25, 32, 14, 32, 32, 3, 1, 1, 1);
    bench_conv_shape("[5, 32, 7, 7] (direct)", 5, 32, 7, 32, 32, 3, 1, 1, 1);
    bench_conv_shape("[25, 32, 7, 7] (direct)", 25, 32, 7, 32, 32, 3, 1, 1, 1);
    bench_conv_shape("[25, 32, 3, 3] (direct)", 25, 32, 3, 32, 32, 3, 1, 1, 1);
    bench_conv_shape("[5, 1, 28, 28] -> 32 (direct)", 5, 1, 28, 32, 1, 3, 1, 1, 1);
    bench_conv_shape("[25, 1, 28, 28] -> 32 (direct)", 25, 1, 28, 32, 1, 3, 1, 1, 1);
}

/* Batch-norm over NCHW, with gamma and beta (the conv net's blocks, whose
 * fused batch-norm + ReLU op is private, run the same kernels with the
 * ReLU's mask): the forward alone; forward and backward; and forward, a
 * recorded backward and the gradient of that (the second derivatives of the
 * inner loop). */
typedef struct {
    mnas_tape *tape;
    mnas_tensor *x, *gamma, *beta;
    int order; /* 0 forward, 1 and backward, 2 and the backward's backward */
} bn_state;

static void bn_reps(void *vs, long reps)
{
    bn_state *s = vs;
    for (long r = 0; r < reps; r++) {
        if (!s->order) mnas_tape_no_grad_begin(s->tape);
        mnas_tensor *y = mnas_batch_norm(s->tape, s->x, s->gamma, s->beta, 1e-5);
        if (!s->order) mnas_tape_no_grad_end(s->tape);
        if (!y) die_tape(s->tape, "batch_norm forward");
        if (s->order) {
            mnas_tensor *ins[3] = { s->x, s->gamma, s->beta }, *g[3];
            /* loss sum(y^2): an upstream gradient that depends on x */
            mnas_tensor *loss = mnas_sum(s->tape, mnas_square(s->tape, y));
            if (mnas_grad(s->tape, loss, 3, ins, g, s->order == 2) != MNAS_OK) die_tape(s->tape, "batch_norm backward");
            if (s->order == 2) {
                mnas_tensor *h[3], *l2 = mnas_sum(s->tape, mnas_square(s->tape, g[0]));
                if (mnas_grad(s->tape, l2, 3, ins, h, 0) != MNAS_OK) die_tape(s->tape, "batch_norm second order");
            }
        }
        CLOBBER();
        mnas_tape_reset(s->tape);
    }
}

static void bench_bn_shape(int64_t N, int64_t C, int64_t H)
{
    int64_t xs[4] = { N, C, H, H }, cs[1] = { C };
    bn_state s = { NULL, param(4, xs, 1), param(1, cs, 1), param(1, cs, 1), 0 };
    if (mnas_tape_create(g_ctx, &s.tape) != MNAS_OK) die_ctx("mnas_tape_create");
    double t[3], n = (double)mnas_tensor_size(s.x);
    for (s.order = 0; s.order < 3; s.order++) t[s.order] = bench_best(bn_reps, &s, NULL, NULL);
    char name[64];
    snprintf(name, sizeof name, "[%lld, %lld, %lld, %lld]", (long long)N, (long long)C, (long long)H, (long long)H);
    printf("%-22s fwd %8.1f us %5.2f ns/elem | +bwd %8.1f us | +2nd order %8.1f us\n", name, t[0] * 1e6,
           t[0] / n * 1e9, t[1] * 1e6, t[2] * 1e6);
    mnas_tape_free(s.tape);
    mnas_tensor_free(s.x);
    mnas_tensor_free(s.gamma);
    mnas_tensor_free(s.beta);
}

static void bench_bn(void)
{
    printf("== 4c. batch-norm, the conv net's shapes (32 channels; support 5 images, queries 25)\n");
    const int64_t hw[3] = { 28, 14, 7 };
    for (int i = 0; i < 3; i++) {
        bench_bn_shape(5, 32, hw[i]);
        bench_bn_shape(25, 32, hw[i]);
    }
}

/* A channel's sum, mnas_sum_to [N, C, H, W] -> [1, C, 1, 1]: the conv
 * bias gradient and the recorded batch-norm dbeta. */
typedef struct {
    mnas_tape *tape;
    mnas_tensor *x;
} sum_to_state;

static void sum_to_reps(void *vs, long reps)
{
    sum_to_state *s = vs;
    int64_t to[4] = { 1, mnas_tensor_dim(s->x, 1), 1, 1 };
    for (long r = 0; r < reps; r++) {
        if (!mnas_sum_to(s->tape, s->x, 4, to)) die_tape(s->tape, "sum_to");
        CLOBBER();
        mnas_tape_reset(s->tape);
    }
}

static void bench_channel_sums(void)
{
    printf("== 4d. a channel's sum, mnas_sum_to to [1, C, 1, 1] (bias gradient, recorded dbeta)\n");
    const int64_t sh[4][2] = { { 5, 28 }, { 25, 28 }, { 25, 14 }, { 25, 7 } };
    for (int i = 0; i < 4; i++) {
        int64_t xs[4] = { sh[i][0], 32, sh[i][1], sh[i][1] };
        sum_to_state s = { NULL, param(4, xs, 0) };
        if (mnas_tape_create(g_ctx, &s.tape) != MNAS_OK) die_ctx("mnas_tape_create");
        double t = bench_best(sum_to_reps, &s, NULL, NULL), n = (double)mnas_tensor_size(s.x);
        printf("[%lld, 32, %lld, %lld]        %8.1f us %5.3f ns/elem\n", (long long)xs[0], (long long)xs[2],
               (long long)xs[3], t * 1e6, t / n * 1e9);
        mnas_tape_free(s.tape);
        mnas_tensor_free(s.x);
    }
}

/* -------------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_ops [--quick] [--large N] [--only-add] [--no-large] [--only-conv]\n"
               "  --quick     short runs (smoke test)\n"
               "  --large N   edge of the large linear shape (default 1024)\n"
               "  --only-add  run the small-op benchmark (1.) only, e.g. under a profiler\n"
               "  --no-large  skip the large linear shape\n"
               "  --only-conv run the convolution, pooling and batch-norm benchmarks (4.) only\n");
}

int main(int argc, char **argv)
{
    long large = 1024;
    int only_add = 0, no_large = 0, only_conv = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            g_target = 0.01;
        } else if (strcmp(argv[i], "--large") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            large = strtol(argv[++i], &end, 10);
            if (errno || *end || large < 1 || large > 16384) {
                fprintf(stderr, "bench_ops: --large needs an integer in 1..16384\n");
                return 1;
            }
        } else if (strcmp(argv[i], "--only-add") == 0) {
            only_add = 1;
        } else if (strcmp(argv[i], "--no-large") == 0) {
            no_large = 1;
        } else if (strcmp(argv[i], "--only-conv") == 0) {
            only_conv = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 1;
        }
    }

    mnas_ctx_options opts = MNAS_CTX_OPTIONS_INIT;
    opts.seed = 12345u;
    mnas_status st = mnas_ctx_create(&g_ctx, &opts);
    if (st != MNAS_OK) {
        fprintf(stderr, "bench_ops: mnas_ctx_create failed: %s\n", mnas_status_str(st));
        return 1;
    }
    bli_thread_set_num_threads(1); /* as libmnas does */

    printf("bench_ops: libmnas %s, BLIS %s (%s), %s runs of ~%.2f s, best of %d\n", mnas_version_string(),
           bli_info_get_version_str(), bli_arch_string(bli_arch_query_id()), g_target < 0.3 ? "quick" : "full",
           g_target, g_runs);

    if (only_conv) {
        bench_conv();
        bench_bn();
        bench_channel_sums();
        mnas_ctx_free(g_ctx);
        return 0;
    }

    bench_small_add();

    if (!only_add) {
        printf("== 2./3. linear layer (flops: 2*N*I*O per GEMM)\n");
        float tiny[48] = { 0 };
        double t_tiny = bench_best(raw_tiny, tiny, NULL, NULL);
        printf("raw bli_sgemm 1x1x1 (fixed call overhead):      %8.1f ns/call\n", t_tiny * 1e9);
        bench_linear_shape(SMALL_N, SMALL_F, SMALL_F);
        if (!no_large) bench_linear_shape(large, large, large);
        bench_conv();
        bench_bn();
        bench_channel_sums();
    }

    mnas_ctx_free(g_ctx);
    return 0;
}
