/*
 * skv_cuda_internal.cuh — the CUDA context (skv_cuda.h) as the backend's .cu files see it:
 * one stream, the pinned-staged job array of each launch kind, one scratch buffer, the
 * device pool, and the helpers attend.cu, csr_attend.cu and csr_encode.cu launch through.
 *
 * Everything is ordered on the one stream: an attend, a CSR attend and a CSR encode queued
 * back to back run in that order, so they may share the scratch (each launch's kernels are
 * done with it before the next launch's start). Job arrays are staged per kind: the staging
 * of one kind waits only for that kind's previous copy, never for the other kinds'.
 */
#ifndef SUBKV_CUDA_INTERNAL_CUH
#define SUBKV_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "skv_check.h"
#include "skv_cuda.h"

/* The job arrays a launch stages, one slot each. */
enum skv_cuda_stage_kind {
    SKV_STAGE_ATTEND,
    SKV_STAGE_CSR_ATTEND,
    SKV_STAGE_CSR_ENCODE,
    SKV_STAGES
};

/* A job array's pinned host staging and its device copy, grown together. */
struct skv_cuda_stage {
    void *dev;          /* device copy the kernels read */
    void *host;         /* pinned: the copy out of it is truly asynchronous */
    cudaEvent_t copied; /* the last copy out of host has completed (created with the context) */
    size_t cap;         /* bytes of each */
};

struct skv_cuda_ctx {
    cudaStream_t stream;
    int sms;
    int smem_optin; /* largest dynamic shared memory a block may opt into */
    skv_cuda_stage stage[SKV_STAGES];
    void *scratch; /* shared by every launch kind: chunk partials, CSR P / W / tile outputs */
    size_t scratch_cap;
    int attend_blocks_per_sm; /* split-K target: SUBKV_ATTEND_BLOCKS_PER_SM, default 4 */
    int csr_blocks_per_sm;    /* the CSR attend's: SUBKV_CSR_BLOCKS_PER_SM, default 4 */
    int csr_smem_set;         /* dynamic shared memory csr_chunk has been opted into */
    cudaMemPool_t pool;       /* skv_cuda_pool_*: created by the first reserve */
    size_t pool_reserved;
};

/*
 * Copy jobs[bytes] to the device through the kind's pinned staging, queued on the stream;
 * *dev is the device copy, valid for kernels queued after this on the stream. Growing the
 * staging waits for the stream (nothing may still read the old arrays); otherwise only the
 * previous copy of this kind is waited for, before its staging is overwritten.
 */
static inline subkv_status skv_cuda_stage_jobs(skv_cuda_ctx *c, skv_cuda_stage_kind kind,
                                               const void *jobs, size_t bytes, void **dev,
                                               skv_err *err) {
    skv_cuda_stage *st = &c->stage[kind];
    if (bytes > st->cap) {
        SKV_CUDA_CHECK(cudaStreamSynchronize(c->stream), err);
        cudaFree(st->dev);
        cudaFreeHost(st->host);
        st->dev = nullptr;
        st->host = nullptr;
        st->cap = 0;
        SKV_CUDA_CHECK(cudaMalloc(&st->dev, bytes), err);
        SKV_CUDA_CHECK(cudaMallocHost(&st->host, bytes), err);
        st->cap = bytes;
    }
    SKV_CUDA_CHECK(cudaEventSynchronize(st->copied), err);
    memcpy(st->host, jobs, bytes);
    SKV_CUDA_CHECK(cudaMemcpyAsync(st->dev, st->host, bytes, cudaMemcpyHostToDevice, c->stream),
                   err);
    SKV_CUDA_CHECK(cudaEventRecord(st->copied, c->stream), err);
    *dev = st->dev;
    return SKV_OK;
}

/* The shared scratch, at least `bytes` (grown after the stream drains: a launch queued
 * earlier may still use the old buffer). SKV_ERR_NOMEM when the device is full. */
static inline subkv_status skv_cuda_scratch(skv_cuda_ctx *c, size_t bytes, void **p, skv_err *err) {
    if (bytes > c->scratch_cap) {
        SKV_CUDA_CHECK(cudaStreamSynchronize(c->stream), err);
        cudaFree(c->scratch);
        c->scratch = nullptr;
        c->scratch_cap = 0;
        const cudaError_t e = cudaMalloc(&c->scratch, bytes);
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
            c->scratch = nullptr;
            return skv_set_error(err, SKV_ERR_NOMEM, "GPU scratch of %zu B: %s", bytes,
                                 cudaGetErrorString(e));
        }
        c->scratch_cap = bytes;
    }
    *p = c->scratch;
    return SKV_OK;
}

/* Median milliseconds (device events) of `iters` calls of launch() (a subkv_status()
 * callable that queues work on c's stream) after `warmup` untimed ones; the stream is
 * drained before returning. */
template <typename F>
subkv_status skv_cuda_time_median(skv_cuda_ctx *c, int warmup, int iters, float *median_ms,
                                  skv_err *err, F launch) {
    if (iters < 1) return skv_set_error(err, SKV_ERR_INVALID_ARG, "timing: iters %d", iters);
    for (int i = 0; i < warmup; i++) SKV_CHECK(launch());
    cudaEvent_t e0, e1;
    SKV_CUDA_CHECK(cudaEventCreate(&e0), err);
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return skv_set_error(err, SKV_ERR_DEVICE, "timing: cannot create an event");
    }
    std::vector<float> ms((size_t)iters);
    subkv_status st = SKV_OK;
    for (int i = 0; i < iters && st == SKV_OK; i++) {
        cudaEventRecord(e0, c->stream);
        st = launch();
        cudaEventRecord(e1, c->stream);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms[i], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (st != SKV_OK) return st;
    SKV_CUDA_CHECK(cudaStreamSynchronize(c->stream), err);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    std::sort(ms.begin(), ms.end());
    *median_ms = ms[(size_t)iters / 2];
    return SKV_OK;
}

#endif /* SUBKV_CUDA_INTERNAL_CUH */
