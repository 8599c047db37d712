/* libmnas_mpi: the core's distribution hook bound to MPI_Allgatherv (in
 * place, one contiguous datatype per unit), plus status agreement. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mnas/mpi.h>

struct mnas_mpi {
    mnas_ctx *ctx;
    MPI_Comm comm;
    int rank, size;
    int finalize; /* this object initialised MPI */
    int *counts, *displs;
    uint64_t calls, bytes;
    double seconds;
};

static mnas_status mpi_error(mnas_ctx *ctx, const char *fn, int code)
{
    char text[MPI_MAX_ERROR_STRING], msg[MPI_MAX_ERROR_STRING + 128];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", code);
    snprintf(msg, sizeof msg, "%s: %s", fn, text);
    return mnas_ctx_set_error(ctx, MNAS_E_IO, msg);
}

mnas_mpi *mnas_mpi_create(mnas_ctx *ctx, int *argc, char ***argv, MPI_Comm comm)
{
    const char *fn = "mnas_mpi_create";
    if (!ctx) return NULL;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) {
        mnas_ctx_set_error(ctx, MNAS_E_STATE, "mnas_mpi_create: MPI was already finalised");
        return NULL;
    }
    mnas_mpi *m = calloc(1, sizeof *m);
    if (!m) {
        mnas_ctx_set_error(ctx, MNAS_E_NOMEM, "mnas_mpi_create: cannot allocate");
        return NULL;
    }
    m->ctx = ctx;
    m->comm = MPI_COMM_NULL;
    if (!inited) {
        int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            mpi_error(ctx, fn, rc);
            free(m);
            return NULL;
        }
        m->finalize = 1;
    }
    if (comm == MPI_COMM_NULL) comm = MPI_COMM_WORLD;
    int rc = MPI_Comm_dup(comm, &m->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(m->comm, &m->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(m->comm, &m->size);
    if (rc != MPI_SUCCESS) {
        mpi_error(ctx, fn, rc);
        mnas_mpi_free(m);
        return NULL;
    }
    m->counts = calloc((size_t)m->size, sizeof *m->counts);
    m->displs = calloc((size_t)m->size, sizeof *m->displs);
    if (!m->counts || !m->displs) {
        mnas_ctx_set_error(ctx, MNAS_E_NOMEM, "mnas_mpi_create: cannot allocate");
        mnas_mpi_free(m);
        return NULL;
    }
    return m;
}

void mnas_mpi_free(mnas_mpi *m)
{
    if (!m) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
    if (!finalized && m->finalize) MPI_Finalize();
    free(m->counts);
    free(m->displs);
    free(m);
}

int mnas_mpi_rank(const mnas_mpi *m) { return m ? m->rank : -1; }
int mnas_mpi_size(const mnas_mpi *m) { return m ? m->size : 0; }

/* mnas_allgather_fn: units offsets[r] .. offsets[r+1]-1 come from rank r. */
static mnas_status allgather(void *user, void *data, size_t unit, const size_t *off)
{
    mnas_mpi *m = user;
    const char *fn = "mnas_mpi allgather";
    if (unit == 0 || unit > INT_MAX || off[m->size] > INT_MAX)
        return mnas_ctx_set_error(m->ctx, MNAS_E_UNSUPPORTED, "mnas_mpi allgather: units too large for MPI");
    for (int r = 0; r < m->size; r++) {
        m->counts[r] = (int)(off[r + 1] - off[r]);
        m->displs[r] = (int)off[r];
    }
    double t0 = MPI_Wtime();
    MPI_Datatype type;
    int rc = MPI_Type_contiguous((int)unit, MPI_BYTE, &type);
    if (rc != MPI_SUCCESS) return mpi_error(m->ctx, fn, rc);
    if ((rc = MPI_Type_commit(&type)) == MPI_SUCCESS)
        rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, m->counts, m->displs, type, m->comm);
    MPI_Type_free(&type);
    if (rc != MPI_SUCCESS) return mpi_error(m->ctx, fn, rc);
    m->seconds += MPI_Wtime() - t0;
    m->calls++;
    m->bytes += (uint64_t)(off[m->size] - (off[m->rank + 1] - off[m->rank])) * unit;
    return MNAS_OK;
}

mnas_status mnas_mpi_distribute(mnas_mpi *m, mnas_learner *l)
{
    if (!m) return MNAS_E_INVALID;
    if (!l) return mnas_ctx_set_error(m->ctx, MNAS_E_INVALID, "mnas_mpi_distribute: learner is NULL");
    mnas_distribution d = MNAS_DISTRIBUTION_INIT;
    d.rank = m->rank;
    d.nprocs = m->size;
    d.allgather = allgather;
    d.user = m;
    return mnas_learner_set_distribution(l, &d);
}

mnas_status mnas_mpi_agree(mnas_mpi *m, mnas_status mine, int *failed_rank)
{
    if (!m) return MNAS_E_INVALID;
    /* (status, rank) pairs: the minimum status, and the lowest failing rank. */
    int in[2] = { (int)mine, mine != MNAS_OK ? m->rank : m->size }, out[2];
    int rc = MPI_Allreduce(in, out, 2, MPI_INT, MPI_MIN, m->comm);
    if (rc != MPI_SUCCESS) return mpi_error(m->ctx, "mnas_mpi_agree", rc);
    if (failed_rank) *failed_rank = out[1] < m->size ? out[1] : -1;
    return (mnas_status)out[0];
}

mnas_status mnas_mpi_stats(const mnas_mpi *m, uint64_t *calls, uint64_t *bytes, double *seconds)
{
    if (!m) return MNAS_E_INVALID;
    if (calls) *calls = m->calls;
    if (bytes) *bytes = m->bytes;
    if (seconds) *seconds = m->seconds;
    return MNAS_OK;
}
