/*
 * rkv_pool.cu — refreshkv's token scores on the GPU (skv_cuda_rkv_pool in skv_cuda.h), the
 * step after a full-step attend that wrote each token's raw scores (skv_cuda_job.s):
 *   prob[t]   = max over the g heads h of e^(s_h(t) - m_h) / l_h   (m, l: the job's partials)
 *   pooled[t] = max of prob[j] over |j - t| <= pool / 2, j in [0, n)
 * One block takes TILE tokens of one job: it computes prob for the tile and its halo (pool/2
 * tokens each side, -inf outside [0, n)) into shared memory, then each thread max-pools one
 * token. Reads g floats per token (plus the halo), writes one: small next to the attend.
 * Jobs travel by value in the kernel's parameters, kBatch per launch.
 */
#include <cfloat>

#include "skv_check.h"
#include "skv_cuda.h"

namespace {

constexpr int kTile = 256;    /* tokens per block = threads per block */
constexpr int kMaxHalf = 511; /* pool_kernel <= 1023 (refreshkv's RKV_MAX_POOL) */
constexpr int kBatch = 16;    /* jobs per launch */
constexpr int kMaxG = 8;

struct pool_batch {
    skv_cuda_pool_job j[kBatch];
};

__global__ void __launch_bounds__(kTile) rkv_pool_kernel(pool_batch b, int d, int g) {
    __shared__ float prob[kTile + 2 * kMaxHalf];
    const skv_cuda_pool_job job = b.j[blockIdx.y];
    const uint64_t n = job.n, t0 = (uint64_t)blockIdx.x * kTile;
    if (t0 >= n) return; /* the whole block: before any barrier */
    const int half = job.pool / 2;
    float m[kMaxG], l[kMaxG];
    for (int h = 0; h < g; h++) {
        m[h] = job.part[(size_t)h * (d + 2)];
        l[h] = job.part[(size_t)h * (d + 2) + 1];
    }
    /* the tile [t0, t0 + kTile) and its halo: shared index i is token t0 - half + i */
    for (int i = threadIdx.x; i < kTile + 2 * half; i += kTile) {
        const int64_t t = (int64_t)t0 - half + i;
        float p = -INFINITY;
        if (t >= 0 && (uint64_t)t < n)
            for (int h = 0; h < g; h++)
                p = fmaxf(p, expf(job.s[(uint64_t)h * n + (uint64_t)t] - m[h]) / l[h]);
        prob[i] = p;
    }
    __syncthreads();
    const uint64_t t = t0 + threadIdx.x;
    if (t >= n) return;
    float best = -INFINITY;
    for (int j = 0; j <= 2 * half; j++) best = fmaxf(best, prob[threadIdx.x + j]);
    job.pooled[t] = best;
}

} // namespace

extern "C" subkv_status skv_cuda_rkv_pool(skv_cuda_ctx *c, const skv_cuda_pool_job *jobs, int njobs,
                                          int d, int g, skv_err *err) {
    if (!c || (njobs > 0 && !jobs) || njobs < 0 || d < 1 || g < 1 || g > kMaxG)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv pool: %d jobs, d %d, g %d", njobs, d,
                             g);
    cudaStream_t st = static_cast<cudaStream_t>(skv_cuda_ctx_stream(c));
    for (int at = 0; at < njobs;) {
        pool_batch b = {};
        int nb = 0;
        uint64_t tiles = 0;
        for (; at < njobs && nb < kBatch; at++) {
            const skv_cuda_pool_job &j = jobs[at];
            if (j.pool < 1 || j.pool % 2 == 0 || j.pool > 2 * kMaxHalf + 1)
                return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv pool kernel %d", j.pool);
            if (j.n == 0) continue;
            if (!j.s || !j.part || !j.pooled)
                return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv pool: NULL buffer");
            b.j[nb++] = j;
            const uint64_t jt = (j.n + kTile - 1) / kTile;
            if (jt > tiles) tiles = jt;
        }
        if (!nb) continue;
        if (tiles > 0x7fffffffull)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv pool: too many tokens");
        rkv_pool_kernel<<<dim3((unsigned)tiles, (unsigned)nb), kTile, 0, st>>>(b, d, g);
        SKV_CUDA_CHECK(cudaGetLastError(), err);
    }
    return SKV_OK;
}
