/*
 * nccl_boot.cu — skv_nccl_init / skv_nccl_destroy with NCCL (built only with nvcc and
 * nccl.h + libnccl; see skv_nccl.h). The MPI calls are plain C calls into Open MPI.
 *
 * Every step's outcome is shared before the next collective step, so a rank that fails
 * never leaves the others waiting: rank 0 broadcasts the id together with whether making it
 * worked, and after ncclCommInitRank an MPI_Allreduce tells every rank whether all joined.
 * (A rank that dies inside ncclCommInitRank itself still stalls the others' bootstrap:
 * NCCL's limit, not ours.)
 */
#define OMPI_SKIP_MPICXX 1 /* C bindings only: no libmpi_cxx from a C++ translation unit */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

#include "skv_check.h"
#include "skv_nccl.h"

/* What rank 0 broadcasts: the id, or why it could not make one. */
typedef struct nccl_boot_msg {
    ncclUniqueId id;
    int ok;
    char why[160];
} nccl_boot_msg;

static subkv_status make_id(ncclUniqueId *id, skv_err *err) {
    SKV_NCCL_CHECK(ncclGetUniqueId(id), err);
    return SKV_OK;
}

static subkv_status join(ncclComm_t *comm, int nranks, const ncclUniqueId *id, int rank,
                         skv_err *err) {
    SKV_NCCL_CHECK(ncclCommInitRank(comm, nranks, *id, rank), err);
    return SKV_OK;
}

extern "C" subkv_status skv_nccl_init(MPI_Comm comm, void **nccl_comm_out, skv_err *err) {
    if (!nccl_comm_out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "nccl_comm_out is NULL");
    *nccl_comm_out = NULL;
    int rank = 0, size = 0;
    SKV_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    SKV_MPI_CHECK(MPI_Comm_size(comm, &size), err);

    nccl_boot_msg msg;
    memset(&msg, 0, sizeof msg);
    if (rank == 0) {
        skv_err e = {SKV_OK, ""};
        msg.ok = make_id(&msg.id, &e) == SKV_OK;
        if (!msg.ok) snprintf(msg.why, sizeof msg.why, "%s", e.msg);
    }
    SKV_MPI_CHECK(MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, comm), err);
    if (!msg.ok) return skv_set_error(err, SKV_ERR_DEVICE, "rank 0: %s", msg.why);

    ncclComm_t nc = NULL;
    skv_err je = {SKV_OK, ""};
    int joined = join(&nc, size, &msg.id, rank, &je) == SKV_OK, all = 0;
    if (MPI_Allreduce(&joined, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) {
        if (joined) ncclCommAbort(nc);
        return skv_set_error(err, SKV_ERR_IO, "MPI_Allreduce after ncclCommInitRank failed");
    }
    if (!all) {
        if (joined) ncclCommAbort(nc); /* a peer is missing: do not wait for it */
        if (!joined) return skv_set_error(err, SKV_ERR_DEVICE, "rank %d: %s", rank, je.msg);
        return skv_set_error(err, SKV_ERR_DEVICE, "ncclCommInitRank failed on another rank");
    }
    *nccl_comm_out = (void *)nc;
    return SKV_OK;
}

extern "C" void skv_nccl_destroy(void *nccl_comm) {
    if (nccl_comm) ncclCommDestroy((ncclComm_t)nccl_comm);
}
