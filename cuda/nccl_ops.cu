/*
 * nccl_ops.cu — the multi-GPU transfer primitives, the context-shard merge and the stream
 * helpers of skv_nccl_ops.h. The NCCL calls are compiled only with nccl.h + libnccl
 * (SUBKV_HAVE_NCCL); without them they return SKV_ERR_UNSUPPORTED and the rest (the MPI
 * staging, the kernels) still works. The MPI calls are plain C calls into Open MPI.
 */
#define OMPI_SKIP_MPICXX 1 /* C bindings only: no libmpi_cxx from a C++ translation unit */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cuda_runtime.h>
#ifdef SUBKV_HAVE_NCCL
#include <nccl.h>
#endif
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "skv_check.h"
#include "skv_cuda.h"
#include "skv_nccl_ops.h"

namespace {

/*
 * One block per partial (grid-stride), one thread per coordinate c of its d + 2 floats:
 * each thread folds the sets in order exactly as skv_partial_merge does (the running max m
 * is recomputed by every thread of the partial: the same few floats, no shared state):
 *   m' = max(m, m_k), x' = x e^(m - m') + x_k e^(m_k - m')   for x = l and every o[j].
 * __fmul_rn/__fadd_rn keep nvcc from contracting into FMAs, so the arithmetic is the host
 * mirror's (mgpu_merge_host) up to expf's last bit.
 */
__global__ void merge_sets(const float *__restrict__ in, int nsets, size_t stride, size_t nparts,
                           int d, float *__restrict__ out) {
    const size_t ps = (size_t)d + 2;
    for (size_t i = blockIdx.x; i < nparts; i += gridDim.x)
        for (int c = threadIdx.x; c < d + 2; c += blockDim.x) {
            float m = -INFINITY, acc = 0.0f;
            for (int k = 0; k < nsets; k++) {
                const float *src = in + (size_t)k * stride + i * ps;
                const float sm = src[0];
                if (sm == -INFINITY) continue; /* an empty set: nothing to add */
                if (m == -INFINITY) {
                    m = sm, acc = src[c];
                    continue;
                }
                const float M = m > sm ? m : sm;
                const float c1 = expf(m - M), c2 = expf(sm - M);
                acc = __fadd_rn(__fmul_rn(acc, c1), __fmul_rn(src[c], c2));
                m = M;
            }
            out[i * ps + c] = c == 0 ? m : acc;
        }
}

__global__ void abs_plus_one(float *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        p[i] = 1.0f + fabsf(p[i]);
}

cudaStream_t S(void *stream) { return static_cast<cudaStream_t>(stream); }

} // namespace

struct skv_cuda_events {
    int n;
    cudaEvent_t ev[1]; /* n of them */
};

extern "C" {

int skv_nccl_ops_available(char *why, size_t n) {
#ifdef SUBKV_HAVE_NCCL
    if (why && n) why[0] = '\0';
    return 1;
#else
    if (why && n) snprintf(why, n, "built without NCCL (no nccl.h/libnccl beside CUDA)");
    return 0;
#endif
}

/* ---- NCCL ---- */

#ifdef SUBKV_HAVE_NCCL
subkv_status skv_nccl_bcast(void *nccl_comm, void *buf, size_t bytes, void *stream, skv_err *err) {
    if (!nccl_comm) return skv_set_error(err, SKV_ERR_INVALID_ARG, "no NCCL communicator");
    SKV_NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclChar, 0, (ncclComm_t)nccl_comm, S(stream)),
                   err);
    return SKV_OK;
}

subkv_status skv_nccl_gatherv(void *nccl_comm, const float *send, float *recv, const size_t *counts,
                              const size_t *displs, void *stream, skv_err *err) {
    if (!nccl_comm) return skv_set_error(err, SKV_ERR_INVALID_ARG, "no NCCL communicator");
    ncclComm_t comm = (ncclComm_t)nccl_comm;
    int rank = 0, n = 0;
    SKV_NCCL_CHECK(ncclCommUserRank(comm, &rank), err);
    SKV_NCCL_CHECK(ncclCommCount(comm, &n), err);
    if (rank == 0 && counts[0])
        SKV_CUDA_CHECK(cudaMemcpyAsync(recv + displs[0], send, counts[0] * sizeof(float),
                                       cudaMemcpyDeviceToDevice, S(stream)),
                       err);
    /* One group: rank 0 posts every receive at once, so the senders proceed in any order.
     * ncclGroupEnd runs even when a call inside failed (a group must be closed). */
    ncclResult_t first = ncclSuccess;
    SKV_NCCL_CHECK(ncclGroupStart(), err);
    if (rank == 0) {
        for (int r = 1; r < n && first == ncclSuccess; r++)
            if (counts[r])
                first = ncclRecv(recv + displs[r], counts[r], ncclFloat, r, comm, S(stream));
    } else if (counts[rank]) {
        first = ncclSend(send, counts[rank], ncclFloat, 0, comm, S(stream));
    }
    const ncclResult_t end = ncclGroupEnd();
    SKV_NCCL_CHECK(first, err);
    SKV_NCCL_CHECK(end, err);
    return SKV_OK;
}
#else
subkv_status skv_nccl_bcast(void *nccl_comm, void *buf, size_t bytes, void *stream, skv_err *err) {
    (void)nccl_comm, (void)buf, (void)bytes, (void)stream;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL");
}
subkv_status skv_nccl_gatherv(void *nccl_comm, const float *send, float *recv, const size_t *counts,
                              const size_t *displs, void *stream, skv_err *err) {
    (void)nccl_comm, (void)send, (void)recv, (void)counts, (void)displs, (void)stream;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL");
}
#endif

/* ---- MPI staged through pinned host memory ---- */

subkv_status skv_mpi_bcast_dev(MPI_Comm comm, void *buf, size_t bytes, void *host,
                               size_t host_bytes, void *stream, skv_err *err) {
    if (bytes > (size_t)INT_MAX || bytes > host_bytes)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "MPI broadcast of %zu B: over INT_MAX or the %zu B staging", bytes,
                             host_bytes);
    int rank = 0;
    SKV_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    if (rank == 0) {
        SKV_CUDA_CHECK(cudaMemcpyAsync(host, buf, bytes, cudaMemcpyDeviceToHost, S(stream)), err);
        SKV_CUDA_CHECK(cudaStreamSynchronize(S(stream)), err);
    }
    SKV_MPI_CHECK(MPI_Bcast(host, (int)bytes, MPI_BYTE, 0, comm), err);
    if (rank != 0) {
        SKV_CUDA_CHECK(cudaMemcpyAsync(buf, host, bytes, cudaMemcpyHostToDevice, S(stream)), err);
        SKV_CUDA_CHECK(cudaStreamSynchronize(S(stream)), err); /* the staging is free again */
    }
    return SKV_OK;
}

subkv_status skv_mpi_gatherv_dev(MPI_Comm comm, const float *send, float *recv,
                                 const size_t *counts, const size_t *displs, void *host,
                                 size_t host_bytes, void *stream, skv_err *err) {
    int rank = 0, n = 0;
    SKV_MPI_CHECK(MPI_Comm_rank(comm, &rank), err);
    SKV_MPI_CHECK(MPI_Comm_size(comm, &n), err);
    /* Every rank checks every size (the arrays are the same everywhere), so all agree on
     * refusing before any of them enters the collective. */
    size_t need = 0;
    for (int r = 0; r < n; r++) {
        if (counts[r] > (size_t)INT_MAX || displs[r] > (size_t)INT_MAX)
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "MPI gather: rank %d's %zu floats at %zu exceed an int", r,
                                 counts[r], displs[r]);
        const size_t end =
            rank == 0 ? (r ? displs[r] + counts[r] : 0) : (r == rank ? counts[r] : 0);
        if (end > need) need = end;
    }
    if (need * sizeof(float) > host_bytes)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "MPI gather needs %zu B of staging, has %zu B", need * sizeof(float),
                             host_bytes);
    float *h = static_cast<float *>(host);
    if (rank != 0) {
        const int cnt = (int)counts[rank];
        if (cnt) {
            SKV_CUDA_CHECK(cudaMemcpyAsync(h, send, counts[rank] * sizeof(float),
                                           cudaMemcpyDeviceToHost, S(stream)),
                           err);
            SKV_CUDA_CHECK(cudaStreamSynchronize(S(stream)), err);
        }
        SKV_MPI_CHECK(MPI_Gatherv(h, cnt, MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, comm), err);
        return SKV_OK;
    }
    int *ic = static_cast<int *>(malloc(2 * (size_t)n * sizeof(int)));
    if (!ic) return skv_set_error(err, SKV_ERR_NOMEM, "MPI gather: no memory for %d counts", n);
    int *id = ic + n;
    for (int r = 0; r < n; r++) ic[r] = (int)counts[r], id[r] = (int)displs[r];
    ic[0] = 0; /* rank 0's own block goes device to device below, not through the host */
    subkv_status st = SKV_OK;
    if (counts[0] && cudaMemcpyAsync(recv + displs[0], send, counts[0] * sizeof(float),
                                     cudaMemcpyDeviceToDevice, S(stream)) != cudaSuccess)
        st = skv_set_error(err, SKV_ERR_DEVICE, "MPI gather: rank 0's own block: %s",
                           cudaGetErrorString(cudaGetLastError()));
    /* rank 0 enters the collective even after a failed copy: the others are already in it */
    const int me = MPI_Gatherv(MPI_IN_PLACE, 0, MPI_FLOAT, h, ic, id, MPI_FLOAT, 0, comm);
    free(ic);
    if (st != SKV_OK) return st;
    SKV_MPI_CHECK(me, err);
    for (int r = 1; r < n; r++)
        if (counts[r])
            SKV_CUDA_CHECK(cudaMemcpyAsync(recv + displs[r], h + displs[r],
                                           counts[r] * sizeof(float), cudaMemcpyHostToDevice,
                                           S(stream)),
                           err);
    SKV_CUDA_CHECK(cudaStreamSynchronize(S(stream)), err);
    return SKV_OK;
}

/* ---- kernels ---- */

subkv_status skv_cuda_merge_partial_sets(const float *in, int nsets, size_t set_stride,
                                         size_t nparts, int d, float *out, void *stream,
                                         skv_err *err) {
    if (nsets < 1 || d < 1 || (nparts && (!in || !out)))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "merge: %d sets, d %d", nsets, d);
    if (nparts == 0) return SKV_OK;
    const unsigned blocks = (unsigned)(nparts < 65535 * 16 ? nparts : 65535 * 16);
    merge_sets<<<blocks, 128, 0, S(stream)>>>(in, nsets, set_stride, nparts, d, out);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    return SKV_OK;
}

subkv_status skv_cuda_fill_random_at(void *p, size_t n, skv_dtype dtype, uint64_t seed,
                                     uint64_t first, float scale, skv_err *err) {
    /* fill_random (attend.cu) hashes z = seed + phi * (i + 1), phi = 0x9e3779b97f4a7c15:
     * starting at index `first` is the same stream with seed + phi * first (mod 2^64). */
    return skv_cuda_fill_random(p, n, dtype, seed + 0x9e3779b97f4a7c15ull * first, scale, err);
}

subkv_status skv_cuda_fill_weights_at(float *p, size_t n, uint64_t seed, uint64_t first,
                                      skv_err *err) {
    SKV_CHECK(skv_cuda_fill_random_at(p, n, SKV_DTYPE_F32, seed, first, 1.0f, err));
    abs_plus_one<<<1024, 256>>>(p, n);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    SKV_CUDA_CHECK(cudaDeviceSynchronize(), err);
    return SKV_OK;
}

/* ---- streams, events, graphs ---- */

subkv_status skv_cuda_device_count(int *count, skv_err *err) {
    *count = 0;
    SKV_CUDA_CHECK(cudaGetDeviceCount(count), err);
    return SKV_OK;
}

subkv_status skv_cuda_stream_sync(void *stream, skv_err *err) {
    SKV_CUDA_CHECK(cudaStreamSynchronize(S(stream)), err);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    return SKV_OK;
}

subkv_status skv_cuda_events_create(skv_cuda_events **out, int n, skv_err *err) {
    *out = nullptr;
    if (n < 1) return skv_set_error(err, SKV_ERR_INVALID_ARG, "no events");
    skv_cuda_events *e = static_cast<skv_cuda_events *>(
        calloc(1, sizeof(skv_cuda_events) + (size_t)(n - 1) * sizeof(cudaEvent_t)));
    if (!e) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d events", n);
    for (int i = 0; i < n; i++) {
        cudaError_t ce = cudaEventCreate(&e->ev[i]);
        if (ce != cudaSuccess) {
            skv_cuda_events_destroy(e);
            return skv_set_error(err, SKV_ERR_DEVICE, "cudaEventCreate: %s",
                                 cudaGetErrorString(ce));
        }
        e->n = i + 1;
    }
    *out = e;
    return SKV_OK;
}

void skv_cuda_events_destroy(skv_cuda_events *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) cudaEventDestroy(e->ev[i]);
    free(e);
}

subkv_status skv_cuda_events_record(skv_cuda_events *e, int i, void *stream, skv_err *err) {
    if (i < 0 || i >= e->n) return skv_set_error(err, SKV_ERR_INVALID_ARG, "event %d", i);
    SKV_CUDA_CHECK(cudaEventRecord(e->ev[i], S(stream)), err);
    return SKV_OK;
}

subkv_status skv_cuda_events_record_in_graph(skv_cuda_events *e, int i, void *stream,
                                             skv_err *err) {
    if (i < 0 || i >= e->n) return skv_set_error(err, SKV_ERR_INVALID_ARG, "event %d", i);
    SKV_CUDA_CHECK(cudaEventRecordWithFlags(e->ev[i], S(stream), cudaEventRecordExternal), err);
    return SKV_OK;
}

subkv_status skv_cuda_events_elapsed(skv_cuda_events *e, int i, int j, float *ms, skv_err *err) {
    if (i < 0 || j < 0 || i >= e->n || j >= e->n)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "events %d, %d", i, j);
    SKV_CUDA_CHECK(cudaEventSynchronize(e->ev[j]), err);
    SKV_CUDA_CHECK(cudaEventElapsedTime(ms, e->ev[i], e->ev[j]), err);
    return SKV_OK;
}

subkv_status skv_cuda_capture_begin(void *stream, skv_err *err) {
    SKV_CUDA_CHECK(cudaStreamBeginCapture(S(stream), cudaStreamCaptureModeRelaxed), err);
    return SKV_OK;
}

subkv_status skv_cuda_capture_end(void *stream, int ok, void **exec, skv_err *err) {
    *exec = nullptr;
    cudaGraph_t g = nullptr;
    cudaError_t ce = cudaStreamEndCapture(S(stream), &g);
    if (!ok || ce != cudaSuccess || !g) {
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError();
        if (!ok) return SKV_OK;
        return skv_set_error(err, SKV_ERR_DEVICE, "cudaStreamEndCapture: %s%s",
                             cudaGetErrorString(ce), g ? "" : " (the capture was invalidated)");
    }
    cudaGraphExec_t x = nullptr;
    ce = cudaGraphInstantiateWithFlags(&x, g, 0);
    cudaGraphDestroy(g);
    if (ce != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "cudaGraphInstantiate: %s",
                             cudaGetErrorString(ce));
    *exec = x;
    return SKV_OK;
}

subkv_status skv_cuda_graph_launch(void *exec, void *stream, skv_err *err) {
    SKV_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), S(stream)), err);
    return SKV_OK;
}

void skv_cuda_graph_destroy(void *exec) {
    if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

} /* extern "C" */
