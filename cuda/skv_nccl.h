/*
 * skv_nccl.h — NCCL communicator bootstrap over MPI (DESIGN.md section 4): rank 0 of comm
 * makes the unique id (ncclGetUniqueId), MPI_Bcast hands it to every rank, and each rank
 * joins with ncclCommInitRank on its current CUDA device (the one skv_backend_select made
 * current). Called only when skv_data_path_choose picked NCCL (every rank on a GPU of its
 * own).
 *
 * Built with nvcc and nccl.h/libnccl (SUBKV_HAVE_NCCL=1): cuda/nccl_boot.cu.
 * Otherwise:                                         cuda/nccl_boot_cpu.c (SKV_ERR_UNSUPPORTED).
 */
#ifndef SUBKV_SKV_NCCL_H
#define SUBKV_SKV_NCCL_H

#include <mpi.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Collective over comm: every rank must call it at the same point. On success
 * *nccl_comm_out holds this rank's ncclComm_t (as void *, so callers need no nccl.h), of
 * comm's size, with rank numbers equal to comm's. The outcome is agreed: when any rank
 * fails, every rank returns an error (SKV_ERR_DEVICE; SKV_ERR_IO for MPI itself), with
 * *nccl_comm_out NULL and nothing left to free. Without NCCL compiled in: every rank
 * returns SKV_ERR_UNSUPPORTED at once (no communication).
 */
subkv_status skv_nccl_init(MPI_Comm comm, void **nccl_comm_out, skv_err *err);

/* Destroy a communicator from skv_nccl_init (NULL: nothing). */
void skv_nccl_destroy(void *nccl_comm);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_SKV_NCCL_H */
