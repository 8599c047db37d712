/* The MPI tests' program, run under mpirun (mpi/CMakeLists.txt):
 *   reference FILE    one process, no distribution: the parameter hash
 *                     after 20 meta-updates of the four methods, toy and
 *                     images, one line each, to FILE
 *   bitexact FILE     distributed over the job's ranks, 1 and 2 worker
 *                     threads: every rank's hashes must equal FILE's
 *   resume1 CKPT      train 10 updates with checkpoints (rank 0 writes)
 *   resume2 CKPT FILE load CKPT, train 10 more: must equal FILE's M-NAS hash
 *   failures          a missing task and a NaN task on the last rank: every
 *                     rank returns the same error, parameters unchanged
 *   killed CKPT       checkpoint every update; the last rank kills itself
 *                     at update 3 (the job must end, not hang)
 *   checkpoint CKPT   CKPT loads into a fresh learner
 *   commbench         time MPI_Allgatherv (in place) of 4 KiB .. 16 MiB:
 *                     latency and seconds per byte, for docs/distributed.md
 * Exit status 0 when every check holds. */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mnas/mpi.h>

#include "dist_workload.h"

enum { UPDATES = 20 };

static int fails;
#define CHECK(c, ...)                                                              \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            fails++;                                                               \
        }                                                                          \
    } while (0)

static int rank;

typedef struct {
    dw_data d;
    int64_t missing, nan_task;
    int kill_at;
} src_data;

static mnas_task *src(void *user, uint64_t index)
{
    src_data *s = user;
    if ((int64_t)index == s->missing) return NULL;
    mnas_task *t = dw_source(&s->d, index);
    if (t && (int64_t)index == s->nan_task) mnas_tensor_data(mnas_task_query_x(t))[0] = NAN;
    return t;
}

static int kill_progress(void *user, int64_t it, int64_t total, double loss)
{
    (void)total;
    (void)loss;
    src_data *s = user;
    if (s->kill_at > 0 && it == s->kill_at) raise(SIGKILL);
    return 0;
}

/* Train a fresh learner for `updates`, distributed over m unless NULL. */
static mnas_status train(mnas_ctx *ctx, mnas_mpi *m, mnas_method meth, int images, int threads, int updates,
                         uint64_t *hash, const char *ckpt, src_data *s)
{
    mnas_learner_options o = dw_options(meth, images, threads);
    mnas_learner *l = mnas_learner_create(ctx, &o);
    if (!l) return MNAS_E_INVALID;
    mnas_status st = m ? mnas_mpi_distribute(m, l) : MNAS_OK;
    if (st == MNAS_OK && dw_init(&s->d, ctx, images, o.image_size) != 0) st = MNAS_E_INVALID;
    if (st == MNAS_OK && ckpt) {
        if (access(ckpt, F_OK) == 0) st = mnas_learner_load(l, ckpt);
        if (st == MNAS_OK)
            st = mnas_learner_train_checkpointed(l, src, s, updates, ckpt, 1, kill_progress, s);
    } else if (st == MNAS_OK) {
        st = mnas_learner_train(l, src, s, updates, NULL, NULL);
    }
    *hash = dw_hash(l);
    mnas_learner_free(l);
    dw_free(&s->d);
    return st;
}

static int read_ref(const char *path, uint64_t ref[8])
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (n < 8 && fscanf(f, "%" SCNx64, &ref[n]) == 1) n++;
    fclose(f);
    return n == 8 ? 0 : -1;
}

int main(int argc, char **argv)
{
    mnas_ctx *ctx;
    if (mnas_ctx_create(&ctx, NULL) != MNAS_OK) return 2;
    mnas_mpi *m = mnas_mpi_create(ctx, &argc, &argv, MPI_COMM_WORLD);
    if (!m) {
        fprintf(stderr, "%s\n", mnas_ctx_last_error(ctx));
        return 2;
    }
    rank = mnas_mpi_rank(m);
    int np = mnas_mpi_size(m);
    const char *mode = argc > 1 ? argv[1] : "", *path = argc > 2 ? argv[2] : "";
    uint64_t ref[8], h;
    src_data s = { .missing = -1, .nan_task = -1 };
    if (!strcmp(mode, "reference")) {
        FILE *f = rank == 0 ? fopen(path, "w") : NULL;
        CHECK(rank != 0 || f, "cannot write %s", path);
        for (int k = 0; k < 8; k++) {
            mnas_status st = train(ctx, NULL, dw_methods[k % 4], k >= 4, 1, UPDATES, &h, NULL, &s);
            CHECK(st == MNAS_OK, "reference %d: %s", k, mnas_ctx_last_error(ctx));
            if (f) fprintf(f, "%016" PRIx64 "\n", h);
        }
        if (f) fclose(f);
    } else if (!strcmp(mode, "bitexact")) {
        CHECK(read_ref(path, ref) == 0, "cannot read %s", path);
        for (int threads = 1; threads <= 2; threads++)
            for (int k = 0; k < 8; k++) {
                mnas_status st = train(ctx, m, dw_methods[k % 4], k >= 4, threads, UPDATES, &h, NULL, &s);
                CHECK(st == MNAS_OK, "%s: %s", mnas_method_name(dw_methods[k % 4]), mnas_ctx_last_error(ctx));
                CHECK(h == ref[k], "%s %s, %d ranks x %d threads: hash %016" PRIx64 " != %016" PRIx64,
                      mnas_method_name(dw_methods[k % 4]), k >= 4 ? "images" : "toy", np, threads, h, ref[k]);
            }
        uint64_t calls, bytes;
        double sec;
        mnas_mpi_stats(m, &calls, &bytes, &sec);
        CHECK(np == 1 || (calls > 0 && bytes > 0), "no communication (%" PRIu64 " calls)", calls);
        if (rank == 0)
            printf("%d ranks: %" PRIu64 " allgathers, %" PRIu64 " bytes received by rank 0, %.3f s in them\n", np,
                   calls, bytes, sec);
    } else if (!strcmp(mode, "resume1")) {
        remove(path); /* rank 0 writes it; nobody loads it in this phase */
        MPI_Barrier(MPI_COMM_WORLD);
        CHECK(train(ctx, m, MNAS_METHOD_MNAS, 0, 1, UPDATES / 2, &h, path, &s) == MNAS_OK, "%s",
              mnas_ctx_last_error(ctx));
    } else if (!strcmp(mode, "resume2")) {
        CHECK(argc > 3 && read_ref(argv[3], ref) == 0, "cannot read the reference");
        CHECK(train(ctx, m, MNAS_METHOD_MNAS, 0, 2, UPDATES / 2, &h, path, &s) == MNAS_OK, "%s",
              mnas_ctx_last_error(ctx));
        CHECK(h == ref[1], "resumed M-NAS: hash %016" PRIx64 " != %016" PRIx64, h, ref[1]);
    } else if (!strcmp(mode, "failures")) {
        /* Task 13 (task 3 of update 2) is the last rank's for np <= 5. */
        for (int kind = 0; kind < 2; kind++) {
            s.missing = kind == 0 ? 13 : -1;
            s.nan_task = kind == 1 ? 13 : -1;
            uint64_t h_ok;
            src_data s2 = { .missing = -1, .nan_task = -1 };
            mnas_status st = train(ctx, m, MNAS_METHOD_MNAS, 0, 1, 2, &h_ok, NULL, &s2);
            CHECK(st == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
            st = train(ctx, m, MNAS_METHOD_MNAS, 0, 1, 5, &h, NULL, &s);
            mnas_status want = kind == 0 ? MNAS_E_INVALID : MNAS_E_NUMERIC;
            CHECK(st == want, "kind %d: status %d (%s), want %d", kind, (int)st, mnas_ctx_last_error(ctx), (int)want);
            CHECK(strstr(mnas_ctx_last_error(ctx), "task 3") != NULL, "message '%s' names no task",
                  mnas_ctx_last_error(ctx));
            CHECK(h == h_ok, "kind %d: the failed update changed the parameters", kind);
            int who = 0;
            CHECK(mnas_mpi_agree(m, st, &who) == want && who == 0, "ranks disagree on the failure");
        }
        int who = 0;
        CHECK(mnas_mpi_agree(m, rank == np - 1 ? MNAS_E_IO : MNAS_OK, &who) == MNAS_E_IO && who == np - 1,
              "agree: %d", who);
        CHECK(mnas_mpi_agree(m, MNAS_OK, &who) == MNAS_OK && who == -1, "agree on ok");
        CHECK(mnas_mpi_distribute(m, NULL) == MNAS_E_INVALID, "NULL learner accepted");
        CHECK(mnas_mpi_distribute(NULL, NULL) == MNAS_E_INVALID && mnas_mpi_rank(NULL) == -1 &&
                  mnas_mpi_stats(NULL, NULL, NULL, NULL) == MNAS_E_INVALID,
              "NULL handle accepted");
    } else if (!strcmp(mode, "killed")) {
        remove(path);
        MPI_Barrier(MPI_COMM_WORLD);
        s.kill_at = rank == np - 1 ? 3 : 0;
        mnas_status st = train(ctx, m, MNAS_METHOD_MAML, 0, 1, 1000, &h, path, &s);
        CHECK(0, "the run went on without its killed rank (status %d)", (int)st);
    } else if (!strcmp(mode, "checkpoint")) {
        mnas_learner_options o = dw_options(MNAS_METHOD_MAML, 0, 1);
        mnas_learner *l = mnas_learner_create(ctx, &o);
        CHECK(l && mnas_learner_load(l, path) == MNAS_OK, "%s", mnas_ctx_last_error(ctx));
        CHECK(l && mnas_learner_iteration(l) >= 1, "the checkpoint holds no update");
        if (rank == 0 && l) printf("checkpoint at iteration %lld\n", (long long)mnas_learner_iteration(l));
        mnas_learner_free(l);
    } else if (!strcmp(mode, "commbench")) {
        for (size_t total = 4096; total <= ((size_t)16 << 20); total *= 4) {
            char *buf = calloc(total, 1);
            int *cnt = calloc((size_t)np, sizeof *cnt), *dsp = calloc((size_t)np, sizeof *dsp);
            CHECK(buf && cnt && dsp, "out of memory");
            if (!buf || !cnt || !dsp) break;
            for (int r = 0; r < np; r++) {
                dsp[r] = (int)(total * (size_t)r / (size_t)np);
                cnt[r] = (int)(total * (size_t)(r + 1) / (size_t)np) - dsp[r];
            }
            int reps = total < ((size_t)1 << 20) ? 200 : 20;
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            for (int k = 0; k < reps; k++)
                MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, cnt, dsp, MPI_BYTE, MPI_COMM_WORLD);
            double t = (MPI_Wtime() - t0) / reps;
            if (rank == 0) printf("allgather %9zu bytes over %d ranks: %10.1f us  (%.3g s per byte)\n", total, np, 1e6 * t, t / (double)total);
            free(buf);
            free(cnt);
            free(dsp);
        }
    } else {
        CHECK(0, "unknown mode '%s'", mode);
    }
    int any = 0;
    MPI_Allreduce(&fails, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    mnas_mpi_free(m);
    mnas_ctx_free(ctx);
    return any ? 1 : 0;
}
