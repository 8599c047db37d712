/* libmnas_mpi: data-parallel meta-training across processes and machines
 * with MPI (docs/distributed.md). An add-on beside libmnas: it binds the
 * core's engine-neutral hook (mnas_learner_set_distribution) to
 * MPI_Allgatherv, so each rank meta-trains its share of every meta-batch
 * and all ranks apply the same, bit-identical update. */
#ifndef MNAS_MPI_H
#define MNAS_MPI_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include <mnas/mnas.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mnas_mpi mnas_mpi;

/* Bind to the processes of comm (duplicated; MPI_COMM_WORLD for a whole
 * mpirun job). Initialises MPI (MPI_THREAD_FUNNELED: the learner calls MPI
 * from the thread that calls it) when it is not yet, and then finalises it
 * in mnas_mpi_free. argc / argv may be NULL. NULL on failure, with the
 * message on ctx. */
MNAS_API mnas_mpi *mnas_mpi_create(mnas_ctx *ctx, int *argc, char ***argv, MPI_Comm comm);
/* NULL is a no-op. Free every learner distributed through m first (or
 * give them mnas_learner_set_distribution(l, NULL)). */
MNAS_API void mnas_mpi_free(mnas_mpi *m);
MNAS_API int mnas_mpi_rank(const mnas_mpi *m);
MNAS_API int mnas_mpi_size(const mnas_mpi *m);

/* Distribute l's meta-training and evaluation over m's ranks. */
MNAS_API mnas_status mnas_mpi_distribute(mnas_mpi *m, mnas_learner *l);

/* Agree on a status: every rank passes its own and receives the same one,
 * MNAS_OK only if all were MNAS_OK (else the most negative code). With
 * *failed_rank (may be NULL) the lowest rank that failed, or -1. */
MNAS_API mnas_status mnas_mpi_agree(mnas_mpi *m, mnas_status mine, int *failed_rank);

/* Communication so far: allgather calls, bytes this rank received, and
 * wall-clock seconds spent in them. */
MNAS_API mnas_status mnas_mpi_stats(const mnas_mpi *m, uint64_t *calls, uint64_t *bytes, double *seconds);

#ifdef __cplusplus
}
#endif

#endif /* MNAS_MPI_H */
