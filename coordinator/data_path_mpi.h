/*
 * data_path_mpi.h — the start-up exchange that settles the data path (data_path.h) on every
 * rank of the service's communicator, and the NCCL communicator when NCCL wins.
 */
#ifndef SUBKV_DATA_PATH_MPI_H
#define SUBKV_DATA_PATH_MPI_H

#include <mpi.h>

#include "data_path.h"
#include "subkv.h"

enum { SKV_DATA_PATH_WHY = 192 };

/* What rank 0 asks for (the coordinator's --data-path). */
enum { SKV_WANT_AUTO = 0, SKV_WANT_MPI = 1, SKV_WANT_XFER_MPI = 2 };

typedef struct skv_data_path {
    int path;                    /* SKV_PATH_*: the same on every rank */
    char why[SKV_DATA_PATH_WHY]; /* the deciding rule (rank 0's words, broadcast to all) */
    void *nccl;                  /* this rank's ncclComm_t when path is NCCL, else NULL */
} skv_data_path;

/*
 * Collective over comm, at the same point on every rank (after the node split, once the
 * rank's backend is settled): each rank reports {skv_host_hash(MPI_Get_processor_name),
 * kind, device} through one MPI_Gather to rank 0, rank 0 runs skv_data_path_choose and
 * MPI_Bcasts the decision and its reason. When the decision is NCCL, every rank then joins
 * the communicator (skv_nccl_init); if that fails anywhere, every rank falls back to MPI
 * and why says so. kind: SKV_RANK_CPU or SKV_RANK_CUDA; device: the ordinal, or -1.
 * want counts on rank 0 only (the coordinator's --data-path; the other ranks pass
 * SKV_WANT_AUTO): SKV_WANT_MPI keeps MPI even where NCCL is possible, SKV_WANT_XFER_MPI
 * takes SKV_PATH_XFER_MPI (the NCCL protocol over MPI, for tests), and why says so.
 * Returns SKV_ERR_IO when MPI itself failed, SKV_ERR_NOMEM when rank 0 cannot hold the
 * reports (it then leaves the others in the gather: its caller aborts the job, as
 * subkv-coordinator does on any start-up failure); *out says MPI in both cases.
 */
subkv_status skv_data_path_start(MPI_Comm comm, int kind, int device, int want, skv_data_path *out,
                                 skv_err *err);

/* Release what skv_data_path_start made (the NCCL communicator); *dp says MPI after. */
void skv_data_path_stop(skv_data_path *dp);

#endif /* SUBKV_DATA_PATH_MPI_H */
