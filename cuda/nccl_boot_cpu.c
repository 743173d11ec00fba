/*
 * nccl_boot_cpu.c — skv_nccl_init for builds without NCCL (no nvcc, or no nccl.h/libnccl):
 * the stand-in for nccl_boot.cu. Without nvcc no rank reports a GPU, so NCCL is never
 * chosen; with nvcc but no NCCL it can be, and then every rank (one build) gets this error
 * at once, without communicating, and the data path stays MPI.
 */
#ifdef SUBKV_HAVE_NCCL
#error "nccl_boot_cpu.c is the no-NCCL fallback; with SUBKV_HAVE_NCCL build nccl_boot.cu instead"
#endif

#include "skv_nccl.h"

#include "skv_check.h"

subkv_status skv_nccl_init(MPI_Comm comm, void **nccl_comm_out, skv_err *err) {
    (void)comm;
    if (nccl_comm_out) *nccl_comm_out = NULL;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL");
}

void skv_nccl_destroy(void *nccl_comm) { (void)nccl_comm; }
