/*
 * nccl_ops_cpu.c — skv_nccl_ops.h in a build without nvcc: every call says so (the real
 * one is cuda/nccl_ops.cu). Compiled only when nvcc is absent.
 */
#include "skv_check.h"
#include "skv_nccl_ops.h"

#include <stdio.h>

#define NO_CUDA(err) skv_set_error((err), SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)")

int skv_nccl_ops_available(char *why, size_t n) {
    if (why && n) snprintf(why, n, "built without CUDA (no nvcc)");
    return 0;
}

subkv_status skv_nccl_bcast(void *nccl_comm, void *buf, size_t bytes, void *stream, skv_err *err) {
    (void)nccl_comm, (void)buf, (void)bytes, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_nccl_gatherv(void *nccl_comm, const float *send, float *recv, const size_t *counts,
                              const size_t *displs, void *stream, skv_err *err) {
    (void)nccl_comm, (void)send, (void)recv, (void)counts, (void)displs, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_mpi_bcast_dev(MPI_Comm comm, void *buf, size_t bytes, void *host,
                               size_t host_bytes, void *stream, skv_err *err) {
    (void)comm, (void)buf, (void)bytes, (void)host, (void)host_bytes, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_mpi_gatherv_dev(MPI_Comm comm, const float *send, float *recv,
                                 const size_t *counts, const size_t *displs, void *host,
                                 size_t host_bytes, void *stream, skv_err *err) {
    (void)comm, (void)send, (void)recv, (void)counts, (void)displs, (void)host;
    (void)host_bytes, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_merge_partial_sets(const float *in, int nsets, size_t set_stride,
                                         size_t nparts, int d, float *out, void *stream,
                                         skv_err *err) {
    (void)in, (void)nsets, (void)set_stride, (void)nparts, (void)d, (void)out, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_fill_random_at(void *p, size_t n, skv_dtype dtype, uint64_t seed,
                                     uint64_t first, float scale, skv_err *err) {
    (void)p, (void)n, (void)dtype, (void)seed, (void)first, (void)scale;
    return NO_CUDA(err);
}

subkv_status skv_cuda_fill_weights_at(float *p, size_t n, uint64_t seed, uint64_t first,
                                      skv_err *err) {
    (void)p, (void)n, (void)seed, (void)first;
    return NO_CUDA(err);
}

subkv_status skv_cuda_device_count(int *count, skv_err *err) {
    *count = 0;
    return NO_CUDA(err);
}

subkv_status skv_cuda_stream_sync(void *stream, skv_err *err) {
    (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_events_create(skv_cuda_events **out, int n, skv_err *err) {
    (void)n;
    *out = NULL;
    return NO_CUDA(err);
}

void skv_cuda_events_destroy(skv_cuda_events *e) { (void)e; }

subkv_status skv_cuda_events_record(skv_cuda_events *e, int i, void *stream, skv_err *err) {
    (void)e, (void)i, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_events_record_in_graph(skv_cuda_events *e, int i, void *stream,
                                             skv_err *err) {
    (void)e, (void)i, (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_events_elapsed(skv_cuda_events *e, int i, int j, float *ms, skv_err *err) {
    (void)e, (void)i, (void)j, (void)ms;
    return NO_CUDA(err);
}

subkv_status skv_cuda_capture_begin(void *stream, skv_err *err) {
    (void)stream;
    return NO_CUDA(err);
}

subkv_status skv_cuda_capture_end(void *stream, int ok, void **exec, skv_err *err) {
    (void)stream, (void)ok;
    *exec = NULL;
    return NO_CUDA(err);
}

subkv_status skv_cuda_graph_launch(void *exec, void *stream, skv_err *err) {
    (void)exec, (void)stream;
    return NO_CUDA(err);
}

void skv_cuda_graph_destroy(void *exec) { (void)exec; }
