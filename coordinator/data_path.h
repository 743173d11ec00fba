/*
 * data_path.h — which transport carries tensors between the coordinator and the workers:
 * MPI (host memory, works everywhere) or NCCL (GPU to GPU). Pure C: the decision is a
 * function of what every rank reported at start-up (its host and its device), so it is
 * unit-tested without MPI or a GPU; the MPI exchange that collects those reports lives in
 * data_path_mpi.c.
 *
 * NCCL needs every rank of the communicator, the coordinator (rank 0) included, on a CUDA
 * device of its own: it refuses two ranks on one GPU (ncclInvalidUsage, "Duplicate GPU
 * detected"), and a CPU-only rank cannot join at all. Anything else takes the MPI path.
 */
#ifndef SUBKV_DATA_PATH_H
#define SUBKV_DATA_PATH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SKV_PATH_XFER_MPI is never chosen: only asked for (subkv-coordinator --data-path
 * mpi-xfer), it runs the NCCL path's transfer protocol over MPI (payload_xfer.h), so its
 * bookkeeping is tested without GPUs. */
enum { SKV_PATH_MPI = 0, SKV_PATH_NCCL = 1, SKV_PATH_XFER_MPI = 2 };

enum { SKV_RANK_CPU = 0, SKV_RANK_CUDA = 1 };

/* What one rank runs on, as it reports it at start-up (16 bytes, no padding: it travels
 * through MPI_Gather as bytes between ranks of one build). */
typedef struct skv_rank_device {
    uint64_t host_hash; /* skv_host_hash(hostname): equal on ranks of one host */
    int kind;           /* SKV_RANK_CPU (0) or SKV_RANK_CUDA (1) */
    int device;         /* CUDA device ordinal in use; -1 on the CPU */
} skv_rank_device;

/* FNV-1a (64-bit) of a host name; NULL hashes like "". */
uint64_t skv_host_hash(const char *hostname);

/*
 * Choose the data path for ranks[0..n) (ranks[0] is the coordinator). Returns SKV_PATH_NCCL
 * only when n >= 2, every rank is a CUDA rank with a device ordinal >= 0, and no two ranks
 * share (host_hash, device); otherwise SKV_PATH_MPI. why[whylen] (optional) gets one line
 * naming the rule that decided, e.g. "rank 0 (the coordinator) has no GPU",
 * "ranks 1 and 2 share GPU 0 of one host", "every rank on a GPU of its own (3 ranks)".
 */
int skv_data_path_choose(const skv_rank_device *ranks, int n, char *why, size_t whylen);

/* "mpi", "nccl" or "mpi-xfer" (anything else reads "mpi"). */
const char *skv_data_path_name(int path);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_DATA_PATH_H */
