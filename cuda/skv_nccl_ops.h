/*
 * skv_nccl_ops.h — moving a decode step's tensors between the GPUs of an MPI job (one rank
 * per GPU; DESIGN.md section 4), by two transports with one contract:
 *   NCCL  device to device, queued on a CUDA stream: ncclBroadcast for the queries, a
 *         grouped ncclSend/ncclRecv gather of every rank's partials to rank 0;
 *   MPI   staged through page-locked host memory (cudaMemcpyAsync D2H, MPI_Bcast /
 *         MPI_Gatherv, H2D): the path for an Open MPI that is not CUDA-aware. Blocking: on
 *         return the data has arrived and the staging buffer is free again.
 * plus the merge of context shards on rank 0's GPU (N partial sets -> one, by the
 * log-sum-exp rule of skv_partial_merge), a fill of random data at a global index (so
 * every rank regenerates its shard of one virtual array), and the stream, event and CUDA
 * graph helpers that bench/multigpu.c (plain C, no CUDA headers) needs.
 *
 * Streams are cudaStream_t passed as void *; NCCL communicators come from skv_nccl_init.
 * Sizes and offsets of partials are in floats. Built with nvcc: cuda/nccl_ops.cu (its NCCL
 * calls only with nccl.h + libnccl, else they return SKV_ERR_UNSUPPORTED); without nvcc:
 * cuda/nccl_ops_cpu.c, every call SKV_ERR_UNSUPPORTED.
 */
#ifndef SUBKV_SKV_NCCL_OPS_H
#define SUBKV_SKV_NCCL_OPS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build has CUDA and NCCL (every call below can work); else 0 with why[n]
 * ("built without CUDA (no nvcc)", "built without NCCL"). */
int skv_nccl_ops_available(char *why, size_t n);

/* ---- NCCL (queued on stream; every rank of the communicator calls, in the same order) ---- */

/* Broadcast `bytes` at device buf from rank 0 to the same buffer on every rank. */
subkv_status skv_nccl_bcast(void *nccl_comm, void *buf, size_t bytes, void *stream, skv_err *err);

/*
 * Gather: rank r's counts[r] floats at device `send` land at rank 0's device recv +
 * displs[r]. counts and displs are host arrays of nranks entries, the same on every rank;
 * recv is used on rank 0 only. Rank 0's own block is a device copy on the stream; zero
 * counts send nothing (on both sides).
 */
subkv_status skv_nccl_gatherv(void *nccl_comm, const float *send, float *recv, const size_t *counts,
                              const size_t *displs, void *stream, skv_err *err);

/* ---- MPI staged through pinned host memory (blocking; collective over comm) ---- */

/* The same broadcast; host: page-locked staging of at least `bytes`. */
subkv_status skv_mpi_bcast_dev(MPI_Comm comm, void *buf, size_t bytes, void *host,
                               size_t host_bytes, void *stream, skv_err *err);

/* The same gather; host: page-locked staging of at least counts[rank] floats (rank 0:
 * max(displs[r] + counts[r]) floats). Counts and displacements must fit an int
 * (SKV_ERR_INVALID_ARG otherwise). */
subkv_status skv_mpi_gatherv_dev(MPI_Comm comm, const float *send, float *recv,
                                 const size_t *counts, const size_t *displs, void *host,
                                 size_t host_bytes, void *stream, skv_err *err);

/* ---- kernels ---- */

/*
 * out[i] = in[0][i] (+) ... (+) in[nsets-1][i], i in [0, nparts): partials {m, l, o[d]} of
 * d + 2 floats, set k at in + k * set_stride floats, folded in set order by
 * skv_partial_merge's rule (empty sets, m = -inf, merge as nothing). Device pointers;
 * queued on stream. Host mirror: mgpu_merge_host (tools/mgpu_plan.h).
 */
subkv_status skv_cuda_merge_partial_sets(const float *in, int nsets, size_t set_stride,
                                         size_t nparts, int d, float *out, void *stream,
                                         skv_err *err);

/* skv_cuda_fill_random's values with indices [first, first + n) into p[0..n): a shard of
 * the array that skv_cuda_fill_random(seed) would fill from index 0. Synchronous. */
subkv_status skv_cuda_fill_random_at(void *p, size_t n, skv_dtype dtype, uint64_t seed,
                                     uint64_t first, float scale, skv_err *err);
/* Weights for weighted rows: 1 + |x| for the values x of skv_cuda_fill_random_at (f32,
 * scale 1): positive, in [1, about 4.5], like SubGen's counts. Synchronous. */
subkv_status skv_cuda_fill_weights_at(float *p, size_t n, uint64_t seed, uint64_t first,
                                      skv_err *err);

/* ---- streams, events, graphs (for C callers without CUDA headers) ---- */

subkv_status skv_cuda_device_count(int *count, skv_err *err);
subkv_status skv_cuda_stream_sync(void *stream, skv_err *err);

typedef struct skv_cuda_events skv_cuda_events;
/* n timing events. */
subkv_status skv_cuda_events_create(skv_cuda_events **out, int n, skv_err *err);
void skv_cuda_events_destroy(skv_cuda_events *e);
subkv_status skv_cuda_events_record(skv_cuda_events *e, int i, void *stream, skv_err *err);
/* The same inside a stream capture: the record becomes a node of the graph
 * (cudaEventRecordExternal), so every replay records event i again. */
subkv_status skv_cuda_events_record_in_graph(skv_cuda_events *e, int i, void *stream, skv_err *err);
/* Milliseconds from event i to event j (waits for j). */
subkv_status skv_cuda_events_elapsed(skv_cuda_events *e, int i, int j, float *ms, skv_err *err);

/* Begin capturing stream into a CUDA graph (relaxed mode: NCCL's P2P calls and the attend's
 * host-side bookkeeping are allowed during the capture). */
subkv_status skv_cuda_capture_begin(void *stream, skv_err *err);
/* End the capture; ok != 0: instantiate it into *exec (a cudaGraphExec_t); ok == 0 (the
 * caller failed mid-capture): discard it, *exec = NULL. */
subkv_status skv_cuda_capture_end(void *stream, int ok, void **exec, skv_err *err);
subkv_status skv_cuda_graph_launch(void *exec, void *stream, skv_err *err);
void skv_cuda_graph_destroy(void *exec);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_SKV_NCCL_OPS_H */
