/*
 * skv_cuda.h — the GPU attend: one batched launch computes, for every job (one KV head of
 * one sequence: a device-resident entry list and its g pre-scaled queries), the mergeable
 * partials {m, l, o[d]} of the weighted-entry attend (DESIGN.md section 3):
 *   m = max <q,k>,  l = sum a e^(<q,k>-m),  o = sum b e^(<q,k>-m) v.
 * exact, sinkwin and h2o are the all-ones case (a = b = NULL); SubGen uploads its entries
 * (skv_sketch_entries) with their weights. Long lists are split over thread blocks
 * (flash-decoding split-K) and merged by a second kernel. Keys and values are float16 or
 * bfloat16, read 16 bytes per thread; math is float32.
 *
 * Built by nvcc when present (cuda/attend.cu); without nvcc every call returns
 * SKV_ERR_UNSUPPORTED (cuda/attend_cpu.c). Supported: head_dim 64 or 128, g in {1, 2, 3, 4, 8}.
 */
#ifndef SUBKV_CUDA_H
#define SUBKV_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct skv_cuda_job {
    const void *k, *v;  /* device: n rows of d elements (f16 or bf16) each */
    const float *a, *b; /* device: n weights each, or NULL for all ones */
    uint64_t n;         /* entries (0 gives empty partials) */
    const float *q;     /* device: g rows of d floats, already scaled by 1/sqrt(d) */
    float *out;         /* device: g partials of d + 2 floats ({m, l, o[d]}) */
    /* Optional (zero = off). dn: device count of live entries, read by the kernel, so a
     * sketch the GPU itself updates (cuda/skv_dsub.h) needs no host round trip; the job
     * reads min(n, *dn) entries and n only sizes the grid. nv: entries [0, nv) have value
     * rows; past nv there are none (their b must be 0) and v is not read. */
    const uint64_t *dn;
    uint64_t nv;
    /* Optional (NULL = off): the raw scores. s[h * n + t] = <q_h, k_t> (q pre-scaled, so the
     * softmax logit) for every live entry t, written by the attend as it reads the keys (no
     * second pass over them); g * n floats, entries past the live count left as they were.
     * refreshkv's GPU full step scores tokens from these (skv_cuda_rkv_pool). */
    float *s;
} skv_cuda_job;

typedef struct skv_cuda_ctx skv_cuda_ctx;

/* One refreshkv token scoring (skv_cuda_rkv_pool): s = an attend job's score output (g rows of
 * n), part = that job's out (g partials {m, l, o[d]}), pooled = n floats out; pool = the
 * sketch's pool_kernel (odd, <= 1023). */
typedef struct skv_cuda_pool_job {
    const float *s, *part;
    float *pooled;
    uint64_t n;
    int pool;
} skv_cuda_pool_job;

/* One refreshkv top-K selection and partial-cache rebuild (skv_cuda_rkv_topk). pooled = n
 * token scores (device, n < 2^32); the m = min(k, n) best by (score, token) descending (the
 * later token wins a tie, -0 = +0; a NaN ranks lowest) go out ascending: idx[m] their tokens,
 * score[m] (or NULL) their scores. With fk (then fv, pk, pv too): row i of pk, pv = row idx[i]
 * of fk, fv (row_bytes each: the partial cache rebuilt from the full store's mirror). */
typedef struct skv_cuda_topk_job {
    const float *pooled;
    uint64_t n;
    uint32_t k, row_bytes;
    uint32_t *idx;
    float *score;
    const void *fk, *fv;
    void *pk, *pv;
} skv_cuda_topk_job;

/* A context on the current device: a stream and scratch that grows once and is reused. */
subkv_status skv_cuda_ctx_create(skv_cuda_ctx **out, skv_err *err);
void skv_cuda_ctx_destroy(skv_cuda_ctx *c);

/*
 * Enqueue the attend of jobs[njobs] (host array) on the context's stream. chunk: entries per
 * thread block (0: chosen to fill the device). Returns once launched; skv_cuda_sync waits.
 */
subkv_status skv_cuda_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d, int g,
                             skv_dtype dtype, uint64_t chunk, skv_err *err);
subkv_status skv_cuda_sync(skv_cuda_ctx *c, skv_err *err);

/*
 * Enqueue refreshkv's token scores for jobs[njobs] (host array), after the attend that wrote
 * their s and part: prob[t] = max over the g heads of e^(s[h n + t] - m_h) / l_h, then
 * pooled[t] = max of prob over |j - t| <= pool / 2 (cache/refreshkv_full.c's CPU step does
 * the same). d = the head dim of the partials; g in [1, 8]; n = 0 jobs are skipped.
 * SKV_ERR_INVALID_ARG for a bad shape, SKV_ERR_DEVICE for a launch failure.
 */
subkv_status skv_cuda_rkv_pool(skv_cuda_ctx *c, const skv_cuda_pool_job *jobs, int njobs, int d,
                               int g, skv_err *err);

/*
 * Enqueue the top-K selections of jobs[njobs] (host array) on the context's stream: a radix
 * select on the 64-bit keys (score bits, token) — one histogram pass per byte, stopping
 * early once the boundary bucket is taken whole — a compaction of the m keys at or above the
 * boundary, a segmented sort of them (CUB) and the gather. Device scratch comes from the
 * context's pool, released stream-ordered. Exactly skv_rkv_topk's selection and order
 * (cache/skv_internal.h). SKV_ERR_INVALID_ARG for a bad job (NULL buffer, n >= 2^32, row_bytes
 * 0 with a gather), SKV_ERR_NOMEM, SKV_ERR_DEVICE.
 */
subkv_status skv_cuda_rkv_topk(skv_cuda_ctx *c, const skv_cuda_topk_job *jobs, int njobs,
                               skv_err *err);

/* Median milliseconds of `iters` back-to-back skv_cuda_attend calls (device events), after
 * `warmup` untimed ones. */
subkv_status skv_cuda_time_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d,
                                  int g, skv_dtype dtype, uint64_t chunk, int warmup, int iters,
                                  float *median_ms, skv_err *err);

/* Device-to-device copy bandwidth over `bytes` (counting bytes read + written), GB/s. */
subkv_status skv_cuda_copy_bandwidth(skv_cuda_ctx *c, size_t bytes, double *gbps, skv_err *err);

/* Fill n elements of dtype (f16, bf16 or f32) at device p with N(0, scale^2)-like values
 * from a counter hash of (seed, index): fast random inputs for benchmarks, never zeros. */
subkv_status skv_cuda_fill_random(void *p, size_t n, skv_dtype dtype, uint64_t seed, float scale,
                                  skv_err *err);

/* Plain device memory helpers (tests, benchmarks, the worker's pools). The copies are
 * synchronous with respect to the host and to every stream of the device: they wait for all
 * queued work first and return once the bytes are in place (so a kernel queued next on any
 * context's stream sees them); hot paths use the _async copies on a context's stream. */
subkv_status skv_cuda_malloc(void **p, size_t bytes, skv_err *err);
void skv_cuda_free(void *p);
subkv_status skv_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, skv_err *err);
subkv_status skv_cuda_upload(void *dst, const void *src, size_t bytes, skv_err *err);
subkv_status skv_cuda_download(void *dst, const void *src, size_t bytes, skv_err *err);
subkv_status skv_cuda_copy(void *dst, const void *src, size_t bytes, skv_err *err);

/*
 * The context's device memory pool (CUDA's stream-ordered allocator): reserve `bytes` once
 * at start-up, keep them (release threshold: never), then allocate and free on the
 * context's stream without a cudaMalloc or a device-wide sync. Allocation fails with
 * SKV_ERR_NOMEM when the device is full.
 */
subkv_status skv_cuda_pool_reserve(skv_cuda_ctx *c, size_t bytes, skv_err *err);
subkv_status skv_cuda_pool_alloc(skv_cuda_ctx *c, void **p, size_t bytes, skv_err *err);
void skv_cuda_pool_free(skv_cuda_ctx *c, void *p);
/* Bytes the pool holds reserved (for stats). */
size_t skv_cuda_pool_reserved(const skv_cuda_ctx *c);
/* The context's cudaStream_t, for the other .cu files of the backend. */
void *skv_cuda_ctx_stream(skv_cuda_ctx *c);

/* Page-locked host memory (for asynchronous copies) and copies queued on the context's
 * stream: src must stay untouched until skv_cuda_sync. */
subkv_status skv_cuda_host_alloc(void **p, size_t bytes, skv_err *err);
void skv_cuda_host_free(void *p);
subkv_status skv_cuda_upload_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                   skv_err *err);
/* Queue a device -> host copy (dst pinned for it to be asynchronous). */
subkv_status skv_cuda_download_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                     skv_err *err);
/* Queue a device -> device copy on the context's stream. */
subkv_status skv_cuda_copy_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                 skv_err *err);
/* Queue a memset of device memory on the context's stream. */
subkv_status skv_cuda_memset_async(skv_cuda_ctx *c, void *p, int value, size_t bytes, skv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* SUBKV_CUDA_H */
