/*
 * attend.cu — the batched weighted-entry attend (skv_cuda.h), flash-decoding style.
 *
 * Kernel 1 (attend_chunk): grid (chunks, jobs), 128 threads. A block takes `chunk` entries
 * of one job and all g queries of its GQA group, so each key and value row is read once
 * for the whole group. A row is read by D/8 lanes, 16 bytes (8 halves) each; a warp thus
 * covers 32/(D/8) rows at a time, and the block's 4 warps form NG "row groups" that stride
 * through the chunk. Each row group keeps, per query, the online-softmax state (m, l, and
 * its lanes' 8 dims of o) in registers; the scores are reduced across the row's lanes with
 * xor-shuffles. At the end the row groups' states are combined through shared memory and
 * the chunk's partial {m, l, o[D]} per query is written to scratch.
 * Kernel 2 (merge_chunks): one block per job merges its chunks' partials by the
 * log-sum-exp rule (the same algebra as skv_partial_merge) into job.out.
 *
 * Bytes per entry: 2 * D * 2 (keys + values) + 8 with weights; flops per entry and query:
 * about 4 D plus two exponentials, so at g <= 8 the kernel is bound by memory bandwidth.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "skv_check.h"
#include "skv_cuda.h"
#include "skv_cuda_internal.cuh"

namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ void to_float8(const uint4 &u, float *f, const __half *) {
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __half22float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

__device__ __forceinline__ void to_float8(const uint4 &u, float *f, const __nv_bfloat16 *) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __bfloat1622float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

template <int D, int G, typename T>
__global__ void __launch_bounds__(kThreads)
    attend_chunk(const skv_cuda_job *__restrict__ jobs, uint64_t chunk, float *__restrict__ scratch,
                 int max_chunks) {
    constexpr int LPR = D / 8;                /* lanes per row */
    constexpr int RPW = 32 / LPR;             /* rows per warp */
    constexpr int NG = (kThreads / 32) * RPW; /* row groups per block */
    constexpr int PS = D + 2;                 /* partial stride */
    __shared__ float s_m[NG][G], s_l[NG][G];
    __shared__ float s_o[NG][G][D];

    const skv_cuda_job job = jobs[blockIdx.y];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int sub = lane / LPR, li = lane % LPR, grp = warp * RPW + sub; /* row group */
    const uint64_t t0 = (uint64_t)blockIdx.x * chunk;
    const uint64_t n = job.dn ? min(job.n, *job.dn) : job.n; /* live entries */
    const uint64_t t1 = min(n, t0 + chunk);
    const uint64_t tv = job.nv ? job.nv : UINT64_MAX; /* rows from tv on have no value */

    float q[G][8], m[G], l[G], o[G][8];
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        const float4 *qp = reinterpret_cast<const float4 *>(job.q + gi * D + li * 8);
        float4 x = qp[0], y = qp[1];
        q[gi][0] = x.x, q[gi][1] = x.y, q[gi][2] = x.z, q[gi][3] = x.w;
        q[gi][4] = y.x, q[gi][5] = y.y, q[gi][6] = y.z, q[gi][7] = y.w;
        m[gi] = -INFINITY;
        l[gi] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) o[gi][e] = 0.0f;
    }
    const T *K = static_cast<const T *>(job.k), *V = static_cast<const T *>(job.v);
    /* Whole warps iterate together (the shuffles need every lane); rows past t1 only skip.
     * The next row's key, value and weights are loaded before this row's math, so two rows
     * of loads per thread are in flight (a software pipeline of depth 2). */
    auto load = [&](uint64_t t, uint4 &kr, uint4 &vr, float &a, float &b) {
        if (t < t1) {
            kr = *reinterpret_cast<const uint4 *>(K + t * D + li * 8);
            vr = t < tv ? *reinterpret_cast<const uint4 *>(V + t * D + li * 8)
                        : make_uint4(0, 0, 0, 0);
            a = job.a ? job.a[t] : 1.0f;
            b = job.b ? job.b[t] : 1.0f;
        } else {
            kr = vr = make_uint4(0, 0, 0, 0);
            a = b = 0.0f;
        }
    };
    uint64_t base = t0 + (uint64_t)warp * RPW;
    uint4 kr, vr;
    float a, b;
    load(base + sub, kr, vr, a, b);
    for (; base < t1; base += NG) {
        const uint64_t t = base + sub;
        const bool valid = t < t1;
        uint4 kn, vn;
        float an, bn;
        load(t + NG, kn, vn, an, bn);
        float kf[8], vf[8];
        to_float8(kr, kf, K);
        float s[G];
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            float acc = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++) acc = fmaf(q[gi][e], kf[e], acc);
#pragma unroll
            for (int off = LPR / 2; off > 0; off >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, off);
            s[gi] = acc;
        }
        /* job.s is the same for the whole block: a uniform branch, free when off */
        if (job.s != nullptr && valid && li == 0) {
#pragma unroll
            for (int gi = 0; gi < G; gi++) job.s[(uint64_t)gi * job.n + t] = s[gi];
        }
        if (valid) {
            to_float8(vr, vf, V);
#pragma unroll
            for (int gi = 0; gi < G; gi++) {
                const float mn = fmaxf(m[gi], s[gi]);
                const float alpha = __expf(m[gi] - mn), p = __expf(s[gi] - mn);
                l[gi] = fmaf(l[gi], alpha, a * p);
                const float bp = b * p;
#pragma unroll
                for (int e = 0; e < 8; e++) o[gi][e] = fmaf(o[gi][e], alpha, bp * vf[e]);
                m[gi] = mn;
            }
        }
        kr = kn, vr = vn, a = an, b = bn;
    }
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        if (li == 0) s_m[grp][gi] = m[gi], s_l[grp][gi] = l[gi];
#pragma unroll
        for (int e = 0; e < 8; e++) s_o[grp][gi][li * 8 + e] = o[gi][e];
    }
    __syncthreads();
    float *out = scratch + ((size_t)blockIdx.y * max_chunks + blockIdx.x) * G * PS;
    for (int idx = threadIdx.x; idx < G * (D + 2); idx += kThreads) {
        const int gi = idx / (D + 2), c = idx % (D + 2);
        float M = -INFINITY;
#pragma unroll
        for (int r = 0; r < NG; r++) M = fmaxf(M, s_m[r][gi]);
        float acc = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int r = 0; r < NG; r++) {
                const float w = s_m[r][gi] == -INFINITY ? 0.0f : __expf(s_m[r][gi] - M);
                acc += w * (c == 1 ? s_l[r][gi] : c >= 2 ? s_o[r][gi][c - 2] : 0.0f);
            }
        }
        out[gi * PS + c] = c == 0 ? M : acc;
    }
}

/*
 * One block per job: merge its chunks' partials (log-sum-exp) into job.out. First each warp
 * takes a query and finds the largest chunk maximum M (lanes stride over the chunks, then a
 * shuffle reduction); then each thread owns an output coordinate and sums its chunks'
 * e^(m_k - M)-weighted values, four chunks per iteration so several loads are in flight
 * (consecutive threads read consecutive floats of a chunk's partial).
 */
template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    merge_chunks(const skv_cuda_job *__restrict__ jobs, uint64_t chunk,
                 const float *__restrict__ scratch, int max_chunks) {
    constexpr int PS = D + 2;
    __shared__ float s_M[G];
    const skv_cuda_job job = jobs[blockIdx.x];
    const int nchunks = (int)((job.n + chunk - 1) / chunk);
    const float *base = scratch + (size_t)blockIdx.x * max_chunks * G * PS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int gi = warp; gi < G; gi += kThreads / 32) {
        float M = -INFINITY;
        for (int k = lane; k < nchunks; k += 32) M = fmaxf(M, base[(size_t)k * G * PS + gi * PS]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        if (lane == 0) s_M[gi] = M;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * PS; idx += kThreads) {
        const int gi = idx / PS, c = idx % PS;
        const float M = s_M[gi];
        float acc = 0.0f;
        if (c > 0 && M != -INFINITY) {
            const float *col = base + gi * PS;
            int k = 0;
            for (; k + 4 <= nchunks; k += 4) {
                float mk[4], vk[4];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    mk[u] = col[(size_t)(k + u) * G * PS];
                    vk[u] = col[(size_t)(k + u) * G * PS + c];
                }
#pragma unroll
                for (int u = 0; u < 4; u++)
                    if (mk[u] != -INFINITY) acc += __expf(mk[u] - M) * vk[u];
            }
            for (; k < nchunks; k++) {
                const float mk = col[(size_t)k * G * PS];
                if (mk != -INFINITY) acc += __expf(mk - M) * col[(size_t)k * G * PS + c];
            }
        }
        job.out[gi * PS + c] = c == 0 ? M : acc;
    }
}

/* splitmix64 of (seed, i) -> a sum of four uniforms, centred: roughly normal, std 1. */
__global__ void fill_random(void *p, size_t n, int dtype, uint64_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        float u = 0.0f;
        for (int k = 0; k < 4; k++) u += (float)((z >> (16 * k)) & 0xffffu) * (1.0f / 65536.0f);
        const float x = (u - 2.0f) * 1.7320508f * scale; /* var of the sum: 4/12 */
        if (dtype == SKV_DTYPE_F16)
            static_cast<__half *>(p)[i] = __float2half(x);
        else if (dtype == SKV_DTYPE_BF16)
            static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16(x);
        else
            static_cast<float *>(p)[i] = x;
    }
}

/* The staged job array and the scratch of one launch. */
struct launch_args {
    cudaStream_t stream;
    const skv_cuda_job *djobs;
    float *scratch;
};

template <int D, int G, typename T>
cudaError_t launch(const launch_args &a, int njobs, uint64_t chunk, int max_chunks) {
    attend_chunk<D, G, T>
        <<<dim3(max_chunks, njobs), kThreads, 0, a.stream>>>(a.djobs, chunk, a.scratch, max_chunks);
    merge_chunks<D, G><<<njobs, kThreads, 0, a.stream>>>(a.djobs, chunk, a.scratch, max_chunks);
    return cudaGetLastError();
}

template <int D, typename T>
cudaError_t launch_g(const launch_args &a, int g, int njobs, uint64_t chunk, int max_chunks) {
    switch (g) {
    case 1: return launch<D, 1, T>(a, njobs, chunk, max_chunks);
    case 2: return launch<D, 2, T>(a, njobs, chunk, max_chunks);
    case 3: return launch<D, 3, T>(a, njobs, chunk, max_chunks); /* e.g. SmolLM2: 9 q / 3 kv */
    case 4: return launch<D, 4, T>(a, njobs, chunk, max_chunks);
    case 8: return launch<D, 8, T>(a, njobs, chunk, max_chunks);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" {

subkv_status skv_cuda_ctx_create(skv_cuda_ctx **out, skv_err *err) {
    *out = nullptr;
    skv_cuda_ctx *c = static_cast<skv_cuda_ctx *>(calloc(1, sizeof(skv_cuda_ctx)));
    if (!c) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a CUDA context");
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&c->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    for (int k = 0; k < SKV_STAGES && e == cudaSuccess; k++)
        e = cudaEventCreateWithFlags(&c->stage[k].copied, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        skv_cuda_ctx_destroy(c); /* destroys what was created: the rest is still zero */
        return skv_set_error(err, SKV_ERR_DEVICE, "CUDA context: %s", cudaGetErrorString(e));
    }
    /* tuning knobs, read once */
    const char *abps = getenv("SUBKV_ATTEND_BLOCKS_PER_SM"),
               *cbps = getenv("SUBKV_CSR_BLOCKS_PER_SM");
    c->attend_blocks_per_sm = abps && atoi(abps) > 0 ? atoi(abps) : 4;
    c->csr_blocks_per_sm = cbps && atoi(cbps) > 0 ? atoi(cbps) : 4;
    c->csr_smem_set = 48 << 10; /* every kernel may use 48 KiB without opting in */
    *out = c;
    return SKV_OK;
}

void skv_cuda_ctx_destroy(skv_cuda_ctx *c) {
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int k = 0; k < SKV_STAGES; k++) {
        cudaFree(c->stage[k].dev);
        cudaFreeHost(c->stage[k].host);
        if (c->stage[k].copied) cudaEventDestroy(c->stage[k].copied);
    }
    cudaFree(c->scratch);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->pool) cudaMemPoolDestroy(c->pool);
    free(c);
}

void *skv_cuda_ctx_stream(skv_cuda_ctx *c) { return c->stream; }

subkv_status skv_cuda_pool_reserve(skv_cuda_ctx *c, size_t bytes, skv_err *err) {
    if (!c->pool) {
        int dev = 0;
        SKV_CUDA_CHECK(cudaGetDevice(&dev), err);
        cudaMemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = dev;
        SKV_CUDA_CHECK(cudaMemPoolCreate(&c->pool, &props), err);
        uint64_t keep = UINT64_MAX; /* freed blocks stay in the pool, never back to the OS */
        SKV_CUDA_CHECK(cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &keep),
                       err);
    }
    if (bytes <= c->pool_reserved) return SKV_OK;
    /* one allocation of the full size, freed at once: the pool keeps the memory mapped */
    void *p = nullptr;
    cudaError_t e = cudaMallocFromPoolAsync(&p, bytes, c->pool, c->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot reserve %zu B of device memory: %s", bytes,
                             cudaGetErrorString(e));
    }
    SKV_CUDA_CHECK(cudaFreeAsync(p, c->stream), err);
    SKV_CUDA_CHECK(cudaStreamSynchronize(c->stream), err);
    c->pool_reserved = bytes;
    return SKV_OK;
}

subkv_status skv_cuda_pool_alloc(skv_cuda_ctx *c, void **p, size_t bytes, skv_err *err) {
    *p = nullptr;
    if (!c->pool) SKV_CHECK(skv_cuda_pool_reserve(c, 0, err));
    cudaError_t e = cudaMallocFromPoolAsync(p, bytes ? bytes : 1, c->pool, c->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = nullptr;
        return skv_set_error(err, SKV_ERR_NOMEM, "device pool: %zu B: %s", bytes,
                             cudaGetErrorString(e));
    }
    return SKV_OK;
}

void skv_cuda_pool_free(skv_cuda_ctx *c, void *p) {
    if (p) cudaFreeAsync(p, c->stream);
}

size_t skv_cuda_pool_reserved(const skv_cuda_ctx *c) { return c->pool_reserved; }

subkv_status skv_cuda_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d, int g,
                             skv_dtype dtype, uint64_t chunk, skv_err *err) {
    if (!c || !jobs || njobs < 1) return skv_set_error(err, SKV_ERR_INVALID_ARG, "no jobs");
    if (d != 64 && d != 128)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU attend supports head_dim 64 and 128, not %d", d);
    if (g != 1 && g != 2 && g != 3 && g != 4 && g != 8)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU attend supports groups of 1, 2, 3, 4, 8, not %d", g);
    if (dtype != SKV_DTYPE_F16 && dtype != SKV_DTYPE_BF16)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU attend stores keys and values as f16 or bf16");
    uint64_t total = 0, maxn = 1;
    for (int j = 0; j < njobs; j++) total += jobs[j].n, maxn = std::max(maxn, jobs[j].n);
    if (chunk == 0) { /* blocks_per_sm blocks per multiprocessor, chunks of 128..16384 entries */
        uint64_t want = (uint64_t)c->sms * (uint64_t)c->attend_blocks_per_sm;
        chunk = (total + want - 1) / want;
        chunk = std::min<uint64_t>(16384, std::max<uint64_t>(128, (chunk + 63) / 64 * 64));
    }
    const uint64_t mc = (maxn + chunk - 1) / chunk;
    if (mc > 65535u * 1024u) return skv_set_error(err, SKV_ERR_INVALID_ARG, "too many chunks");
    const int max_chunks = (int)mc;
    const size_t need = (size_t)njobs * max_chunks * g * (d + 2);
    launch_args a = {c->stream, nullptr, nullptr};
    SKV_CHECK(skv_cuda_scratch(c, need * sizeof(float), (void **)&a.scratch, err));
    void *djobs = nullptr;
    SKV_CHECK(skv_cuda_stage_jobs(c, SKV_STAGE_ATTEND, jobs, (size_t)njobs * sizeof(skv_cuda_job),
                                  &djobs, err));
    a.djobs = static_cast<const skv_cuda_job *>(djobs);
    cudaError_t e;
    if (dtype == SKV_DTYPE_F16)
        e = d == 64 ? launch_g<64, __half>(a, g, njobs, chunk, max_chunks)
                    : launch_g<128, __half>(a, g, njobs, chunk, max_chunks);
    else
        e = d == 64 ? launch_g<64, __nv_bfloat16>(a, g, njobs, chunk, max_chunks)
                    : launch_g<128, __nv_bfloat16>(a, g, njobs, chunk, max_chunks);
    if (e != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "attend launch: %s", cudaGetErrorString(e));
    return SKV_OK;
}

subkv_status skv_cuda_sync(skv_cuda_ctx *c, skv_err *err) {
    SKV_CUDA_CHECK(cudaStreamSynchronize(c->stream), err);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    return SKV_OK;
}

subkv_status skv_cuda_time_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d,
                                  int g, skv_dtype dtype, uint64_t chunk, int warmup, int iters,
                                  float *median_ms, skv_err *err) {
    return skv_cuda_time_median(c, warmup, iters, median_ms, err, [&] {
        return skv_cuda_attend(c, jobs, njobs, d, g, dtype, chunk, err);
    });
}

subkv_status skv_cuda_copy_bandwidth(skv_cuda_ctx *c, size_t bytes, double *gbps, skv_err *err) {
    void *a = nullptr, *b = nullptr;
    SKV_CUDA_CHECK(cudaMalloc(&a, bytes), err);
    cudaError_t e = cudaMalloc(&b, bytes);
    if (e != cudaSuccess) {
        cudaFree(a);
        return skv_set_error(err, SKV_ERR_DEVICE, "copy buffer: %s", cudaGetErrorString(e));
    }
    cudaMemsetAsync(a, 1, bytes, c->stream);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<float> ms(10);
    for (int i = 0; i < 12; i++) {
        cudaEventRecord(e0, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        cudaEventRecord(e1, c->stream);
        cudaEventSynchronize(e1);
        if (i >= 2) cudaEventElapsedTime(&ms[i - 2], e0, e1);
    }
    std::sort(ms.begin(), ms.end());
    e = cudaGetLastError();
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (e != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "copy: %s", cudaGetErrorString(e));
    *gbps = 2.0 * (double)bytes / (ms[5] * 1e-3) / 1e9;
    return SKV_OK;
}

subkv_status skv_cuda_fill_random(void *p, size_t n, skv_dtype dtype, uint64_t seed, float scale,
                                  skv_err *err) {
    fill_random<<<1024, 256>>>(p, n, (int)dtype, seed, scale);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    SKV_CUDA_CHECK(cudaDeviceSynchronize(), err);
    return SKV_OK;
}

subkv_status skv_cuda_malloc(void **p, size_t bytes, skv_err *err) {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        *p = nullptr;
        return skv_set_error(err, SKV_ERR_NOMEM, "cudaMalloc of %zu bytes: %s", bytes,
                             cudaGetErrorString(e));
    }
    return SKV_OK;
}

subkv_status skv_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, skv_err *err) {
    SKV_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes), err);
    return SKV_OK;
}

void skv_cuda_free(void *p) { cudaFree(p); }

/*
 * The plain copies wait for the whole device before and after. cudaMemcpy runs on the
 * legacy default stream, which the contexts' non-blocking streams do not order against: it
 * neither waits for a kernel still reading or writing the buffer, nor, for a pageable
 * upload, waits for its own DMA to land ("returns once the pageable buffer has been copied
 * to the staging memory", CUDA's API synchronization behavior). A kernel queued on a
 * context's stream right after a plain upload could read the tail of the buffer before it
 * arrived: the likely cause of one test_cuda_subgen_append_equals_cpu failure on an H100
 * (not reproduced). The hot paths queue their copies on the context's stream instead
 * (skv_cuda_upload_async and friends).
 */
static cudaError_t plain_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaMemcpy(dst, src, bytes, kind);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    return e;
}

subkv_status skv_cuda_upload(void *dst, const void *src, size_t bytes, skv_err *err) {
    SKV_CUDA_CHECK(plain_copy(dst, src, bytes, cudaMemcpyHostToDevice), err);
    return SKV_OK;
}

subkv_status skv_cuda_download(void *dst, const void *src, size_t bytes, skv_err *err) {
    SKV_CUDA_CHECK(plain_copy(dst, src, bytes, cudaMemcpyDeviceToHost), err);
    return SKV_OK;
}

subkv_status skv_cuda_host_alloc(void **p, size_t bytes, skv_err *err) {
    cudaError_t e = cudaMallocHost(p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = nullptr;
        return skv_set_error(err, SKV_ERR_NOMEM, "cudaMallocHost of %zu bytes: %s", bytes,
                             cudaGetErrorString(e));
    }
    return SKV_OK;
}

void skv_cuda_host_free(void *p) { cudaFreeHost(p); }

subkv_status skv_cuda_upload_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                   skv_err *err) {
    SKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), err);
    return SKV_OK;
}

subkv_status skv_cuda_download_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                     skv_err *err) {
    SKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), err);
    return SKV_OK;
}

subkv_status skv_cuda_copy_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                 skv_err *err) {
    SKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), err);
    return SKV_OK;
}

subkv_status skv_cuda_memset_async(skv_cuda_ctx *c, void *p, int value, size_t bytes,
                                   skv_err *err) {
    SKV_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, c->stream), err);
    return SKV_OK;
}

subkv_status skv_cuda_copy(void *dst, const void *src, size_t bytes, skv_err *err) {
    SKV_CUDA_CHECK(plain_copy(dst, src, bytes, cudaMemcpyDeviceToDevice), err);
    return SKV_OK;
}

} /* extern "C" */
