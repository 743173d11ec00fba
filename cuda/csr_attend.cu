/*
 * csr_attend.cu — the attend of CSR codes on the GPU (skv_csr_cuda.h): indices and
 * coefficients are read, never decoded rows.
 *
 * Four kernels on the context's stream, all 256 threads per block:
 *  1. csr_p      grid (atom tiles, jobs): P[job][q][a] = <q, Dk[a]> for the tile's 128 atoms,
 *                a warp per atom (lanes over the d channels, shuffle sum), every query of the
 *                job at once so each key atom is read once per job.
 *  2. csr_chunk  grid (chunks * g, jobs), one query per block (the g blocks of one chunk are
 *                neighbours in blockIdx.x, so the codes they share come from L2): P[q][0..N)
 *                and W[2][N] in shared memory. The chunk's tokens go in tiles of kTile:
 *                pass 1 scores each token, s_t = sum_i c_ti P[a_ti] (thread per token), into
 *                shared memory and finds the tile maximum; the running maximum M becomes
 *                max(M, tile max) and, when it grew, W and l are rescaled by e^(M_old - M)
 *                (the online-softmax rule applied per tile, not per token); pass 2 adds
 *                p = e^(s_t - M) to l and p c_ti to W[half][a_ti] for every value pair
 *                (shared-memory atomics). The chunk's partial {M, l, W[2N]} goes to scratch.
 *  3. csr_values grid (atom tiles, jobs): merges the chunks' W over the tile's atoms by the
 *                log-sum-exp rule (weights e^(m_b - M), M the job's maximum per query) and
 *                multiplies them by the value atoms: o_tile[q][c] = sum_a W[h][a] Dv_h[a][c'].
 *  4. csr_final  grid (jobs): m = max m_b, l = sum e^(m_b - m) l_b, o = sum of the tiles,
 *                written as g partials {m, l, o[d]} to job.out.
 * Empty jobs (n = 0) get m = -inf, l = 0, o = 0 from kernel 4 alone.
 *
 * Every index is bounded: tokens by job.n, atoms by `atoms` (an index >= atoms contributes
 * nothing), channels by d; scratch offsets are size_t. Math is float32 with __expf, like
 * attend.cu.
 */
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "skv_check.h"
#include "skv_csr_cuda.h"
#include "skv_cuda_internal.cuh"

namespace {

constexpr int kThreads = 256; /* every CSR kernel's block */
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 1024;    /* tokens scored per pass of csr_chunk */
constexpr int kAtomTile = 128; /* atoms per block of csr_p and csr_values */
constexpr int kMaxG = 8;
constexpr int kMaxD = 128;

__device__ __forceinline__ float coef_f32(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
}

/* Block-wide max (is_max) or sum of v; every thread gets the result. red: kWarps floats. */
__device__ float block_reduce(float v, float *red, bool is_max) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float o = __shfl_xor_sync(0xffffffffu, v, off);
        v = is_max ? fmaxf(v, o) : v + o;
    }
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = red[0];
#pragma unroll
    for (int w = 1; w < kWarps; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    __syncthreads(); /* everyone has read red before it is written again */
    return r;
}

/* 1. P[job][gi][a] = <q_gi, Dk[a]> for the block's atom tile. */
__global__ void __launch_bounds__(kThreads) csr_p(const skv_csr_cuda_job *__restrict__ jobs, int d,
                                                  int g, int atoms, float *__restrict__ P) {
    __shared__ float sq[kMaxG * kMaxD];
    const int j = blockIdx.y;
    const skv_csr_cuda_job job = jobs[j];
    if (job.n == 0) return; /* nothing reads P of an empty job */
    for (int i = threadIdx.x; i < g * d; i += kThreads) sq[i] = job.q[i];
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int a_end = min(atoms, (int)(blockIdx.x + 1) * kAtomTile);
    /* a depends on the warp only: whole warps iterate together, as the shuffles need */
    for (int a = (int)blockIdx.x * kAtomTile + warp; a < a_end; a += kWarps) {
        const float *row = job.dk + (size_t)a * d;
        float acc[kMaxG];
#pragma unroll
        for (int gi = 0; gi < kMaxG; gi++) acc[gi] = 0.0f;
        for (int c = lane; c < d; c += 32) {
            const float x = row[c];
#pragma unroll
            for (int gi = 0; gi < kMaxG; gi++)
                if (gi < g) acc[gi] = fmaf(x, sq[gi * d + c], acc[gi]);
        }
#pragma unroll
        for (int gi = 0; gi < kMaxG; gi++) {
            if (gi >= g) break;
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                acc[gi] += __shfl_xor_sync(0xffffffffu, acc[gi], off);
        }
        if (lane == 0)
            for (int gi = 0; gi < g; gi++) P[((size_t)j * g + gi) * atoms + a] = acc[gi];
    }
}

/* 2. One chunk of one job for one query: partial {M, l, W[2][atoms]} into part. */
__global__ void __launch_bounds__(kThreads)
    csr_chunk(const skv_csr_cuda_job *__restrict__ jobs, int g, int s, int atoms, uint64_t chunk,
              int max_chunks, const float *__restrict__ P, float *__restrict__ part) {
    extern __shared__ float smem[];
    float *sP = smem;           /* [atoms]        */
    float *sW = sP + atoms;     /* [2][atoms]     */
    float *sc = sW + 2 * atoms; /* [kTile] scores */
    float *red = sc + kTile;    /* [kWarps]       */
    const int j = blockIdx.y;
    const int gi = (int)(blockIdx.x % (unsigned)g), ci = (int)(blockIdx.x / (unsigned)g);
    const skv_csr_cuda_job job = jobs[j];
    const uint64_t t0 = (uint64_t)ci * chunk;
    if (t0 >= job.n) return; /* past this job's end: the merge never reads this chunk */
    const uint64_t t1 = min(job.n, t0 + chunk);
    const float *Pj = P + ((size_t)j * g + gi) * atoms;
    for (int a = threadIdx.x; a < atoms; a += kThreads) sP[a] = Pj[a];
    for (int a = threadIdx.x; a < 2 * atoms; a += kThreads) sW[a] = 0.0f;
    __syncthreads();
    const int s2 = 2 * s, s0 = (s + 1) / 2; /* value half 0 has ceil(s/2) pairs */
    const unsigned na = (unsigned)atoms;
    float M = -INFINITY, lsum = 0.0f; /* M is the same in every thread */
    for (uint64_t tb = t0; tb < t1; tb += kTile) {
        const int cnt = (int)min((uint64_t)kTile, t1 - tb);
        float tmax = -INFINITY;
        for (int i = threadIdx.x; i < cnt; i += kThreads) {
            const size_t row = (size_t)(tb + (uint64_t)i) * (size_t)s2;
            float acc = 0.0f;
            for (int k = 0; k < s; k++) {
                const unsigned a = job.idx[row + k];
                const float cf = coef_f32(job.coef[row + k]);
                if (a < na) acc = fmaf(cf, sP[a], acc);
            }
            sc[i] = acc;
            tmax = fmaxf(tmax, acc);
        }
        const float Mn = fmaxf(M, block_reduce(tmax, red, true));
        if (Mn > M && M != -INFINITY) { /* block-uniform: rescale what the earlier tiles added */
            const float r = __expf(M - Mn);
            for (int a = threadIdx.x; a < 2 * atoms; a += kThreads) sW[a] *= r;
            lsum *= r;
        }
        M = Mn;
        __syncthreads(); /* the rescale is done before this tile's adds */
        for (int i = threadIdx.x; i < cnt; i += kThreads) {
            const size_t row = (size_t)(tb + (uint64_t)i) * (size_t)s2;
            const float p = __expf(sc[i] - M); /* sc[i] was written by this same thread */
            lsum += p;
            for (int k = s; k < s2; k++) {
                const unsigned a = job.idx[row + k];
                const float cf = coef_f32(job.coef[row + k]);
                const int h = k - s < s0 ? 0 : atoms;
                if (a < na) atomicAdd(&sW[h + (int)a], p * cf);
            }
        }
        __syncthreads(); /* the adds are done before the next tile's rescale */
    }
    const float L = block_reduce(lsum, red, false);
    float *out = part + (((size_t)j * max_chunks + ci) * g + gi) * (2 + 2 * (size_t)atoms);
    if (threadIdx.x == 0) out[0] = M, out[1] = L;
    for (int a = threadIdx.x; a < 2 * atoms; a += kThreads) out[2 + a] = sW[a];
}

/* The job's maximum over its chunks per query into sM[g] (warp gi takes query gi). */
__device__ void job_max(const float *base, int nch, int g, size_t ps, float *sM) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int gi = warp; gi < g; gi += kWarps) {
        float M = -INFINITY;
        for (int k = lane; k < nch; k += 32) M = fmaxf(M, base[((size_t)k * g + gi) * ps]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        if (lane == 0) sM[gi] = M;
    }
}

/* 3. Merge the chunks' W over the block's atom tile, times the value atoms. */
__global__ void __launch_bounds__(kThreads)
    csr_values(const skv_csr_cuda_job *__restrict__ jobs, int d, int g, int atoms, uint64_t chunk,
               int max_chunks, const float *__restrict__ part, int ntiles,
               float *__restrict__ opart) {
    __shared__ float sM[kMaxG];
    __shared__ float sWt[kMaxG][2][kAtomTile];
    __shared__ float sred[kMaxG][kThreads];
    const int j = blockIdx.y, tid = threadIdx.x;
    const skv_csr_cuda_job job = jobs[j];
    const int nch = (int)((job.n + chunk - 1) / chunk);
    if (nch == 0) return; /* csr_final writes the empty partials without reading opart */
    const size_t ps = 2 + 2 * (size_t)atoms;
    const float *base = part + (size_t)j * max_chunks * g * ps;
    job_max(base, nch, g, ps, sM);
    __syncthreads();
    const int a0 = (int)blockIdx.x * kAtomTile;
    for (int slot = tid; slot < g * 2 * kAtomTile; slot += kThreads) {
        const int gi = slot / (2 * kAtomTile), r = slot % (2 * kAtomTile);
        const int h = r / kAtomTile, al = r % kAtomTile, a = a0 + al;
        const float M = sM[gi];
        float acc = 0.0f;
        if (a < atoms && M != -INFINITY)
            for (int k = 0; k < nch; k++) {
                const float *pk = base + ((size_t)k * g + gi) * ps;
                const float mk = pk[0];
                if (mk != -INFINITY) acc += __expf(mk - M) * pk[2 + (size_t)h * atoms + a];
            }
        sWt[gi][h][al] = acc;
    }
    __syncthreads();
    /* thread -> output channel c (of half h, column cc of that half's atoms) and one of
     * `parts` interleaved slices of the tile's atoms; consecutive threads read consecutive
     * floats of an atom row */
    const int parts = kThreads / d, c = tid % d, pt = tid / d, hd = d / 2;
    const int h = c / hd, cc = c % hd;
    const float *Dv = h ? job.dv1 : job.dv0;
    float acc[kMaxG];
#pragma unroll
    for (int gi = 0; gi < kMaxG; gi++) acc[gi] = 0.0f;
    for (int al = pt; al < kAtomTile && a0 + al < atoms; al += parts) {
        const float v = Dv[(size_t)(a0 + al) * hd + cc];
#pragma unroll
        for (int gi = 0; gi < kMaxG; gi++)
            if (gi < g) acc[gi] = fmaf(sWt[gi][h][al], v, acc[gi]);
    }
    for (int gi = 0; gi < g; gi++) sred[gi][tid] = acc[gi];
    __syncthreads();
    if (tid < d)
        for (int gi = 0; gi < g; gi++) {
            float o = 0.0f;
            for (int p = 0; p < parts; p++) o += sred[gi][p * d + tid];
            opart[(((size_t)j * ntiles + blockIdx.x) * g + gi) * d + tid] = o;
        }
}

/* 4. The job's g partials {m, l, o[d]}. */
__global__ void __launch_bounds__(kThreads)
    csr_final(const skv_csr_cuda_job *__restrict__ jobs, int d, int g, int atoms, uint64_t chunk,
              int max_chunks, const float *__restrict__ part, int ntiles,
              const float *__restrict__ opart) {
    __shared__ float sM[kMaxG], sL[kMaxG];
    const int j = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const skv_csr_cuda_job job = jobs[j];
    const int nch = (int)((job.n + chunk - 1) / chunk);
    const size_t ps = 2 + 2 * (size_t)atoms;
    const float *base = part + (size_t)j * max_chunks * g * ps;
    job_max(base, nch, g, ps, sM);
    __syncthreads();
    for (int gi = warp; gi < g; gi += kWarps) {
        const float M = sM[gi];
        float L = 0.0f;
        for (int k = lane; k < nch; k += 32) {
            const float mk = base[((size_t)k * g + gi) * ps];
            if (mk != -INFINITY && M != -INFINITY)
                L += __expf(mk - M) * base[((size_t)k * g + gi) * ps + 1];
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
        if (lane == 0) sL[gi] = L;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < g * (d + 2); idx += kThreads) {
        const int gi = idx / (d + 2), c = idx % (d + 2);
        float v;
        if (c == 0)
            v = nch ? sM[gi] : -INFINITY;
        else if (c == 1)
            v = nch ? sL[gi] : 0.0f;
        else {
            v = 0.0f;
            if (nch)
                for (int t = 0; t < ntiles; t++)
                    v += opart[(((size_t)j * ntiles + t) * g + gi) * d + (c - 2)];
        }
        job.out[idx] = v;
    }
}

/* splitmix64 of (seed, i): indices uniform in [0, atoms), coefficients a centred sum of four
 * uniforms (std 1) times scale, as float16. */
__global__ void fill_codes(uint16_t *idx, uint16_t *coef, size_t n, int atoms, uint64_t seed,
                           float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        float u = 0.0f;
        for (int k = 0; k < 4; k++) u += (float)((z >> (16 * k)) & 0xffffu) * (1.0f / 65536.0f);
        coef[i] = __half_as_ushort(__float2half((u - 2.0f) * 1.7320508f * scale));
        idx[i] = (uint16_t)((z >> 32) % (uint64_t)atoms);
    }
}

size_t chunk_smem(int atoms) { return sizeof(float) * (3 * (size_t)atoms + kTile + kWarps); }

} // namespace

extern "C" {

subkv_status skv_csr_cuda_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs, int d,
                                 int g, int s, int atoms, float rope_base, uint64_t chunk,
                                 skv_err *err) {
    if (!c || !jobs || njobs < 1 || njobs > 65535)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: %d jobs (1..65535)", njobs);
    if (!(rope_base >= 0.0f)) /* negative or NaN */
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: rope_base %g",
                             (double)rope_base);
    if (rope_base > 0.0f)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR attend supports post-rotary codes only (rope_base 0); "
                             "pre-rotary codes (rope_base %g) need the CPU attend",
                             (double)rope_base);
    if (d != 64 && d != 128)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR attend supports head_dim 64 and 128, not %d", d);
    if (g < 1 || g > kMaxG)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR attend supports groups of 1..%d queries, not %d", kMaxG, g);
    if (s < 2 || s > d)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: sparsity %d outside [2, %d]", s,
                             d);
    if (atoms < 1 || atoms > SKV_CSR_CUDA_MAX_ATOMS ||
        chunk_smem(atoms) > (size_t)std::max(c->smem_optin, 48 << 10))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR attend supports 1..%d atoms (%zu B of shared memory, the "
                             "device allows %d), not %d",
                             SKV_CSR_CUDA_MAX_ATOMS, chunk_smem(atoms), c->smem_optin, atoms);
    uint64_t total = 0, maxn = 0;
    for (int j = 0; j < njobs; j++) {
        const skv_csr_cuda_job *jb = &jobs[j];
        if (!jb->q || !jb->out ||
            (jb->n && (!jb->idx || !jb->coef || !jb->dk || !jb->dv0 || !jb->dv1)))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: job %d has a NULL array",
                                 j);
        if (jb->n > (1ull << 40))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: job %d has %llu tokens", j,
                                 (unsigned long long)jb->n);
        total += jb->n, maxn = std::max(maxn, jb->n);
    }
    if (chunk == 0) { /* blocks_per_sm blocks per multiprocessor over all queries */
        const uint64_t want = (uint64_t)c->sms * (uint64_t)c->csr_blocks_per_sm;
        chunk = (total * (uint64_t)g + want - 1) / want;
        /* at least a tile, and enough tokens that the codes outweigh the block's P and W
         * traffic (about 20 N bytes against 8 s bytes a token) */
        chunk = std::max<uint64_t>(chunk, std::max<uint64_t>(kTile, 4ull * atoms / s));
        chunk = (chunk + kTile - 1) / kTile * kTile;
    }
    chunk = std::min<uint64_t>(chunk, 1ull << 40); /* n + chunk cannot overflow below */
    const uint64_t mc = std::max<uint64_t>(1, (maxn + chunk - 1) / chunk);
    if (mc * (uint64_t)g > (uint64_t)INT_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: too many chunks (%llu)",
                             (unsigned long long)mc);
    const int max_chunks = (int)mc, ntiles = (atoms + kAtomTile - 1) / kAtomTile;
    const size_t nP = (size_t)njobs * g * atoms;
    const size_t nPart = (size_t)njobs * max_chunks * g * (2 + 2 * (size_t)atoms);
    const size_t nO = (size_t)njobs * ntiles * g * d;
    const size_t need = nP + nPart + nO;
    const size_t smem = chunk_smem(atoms);
    if (smem > (size_t)c->csr_smem_set) {
        SKV_CUDA_CHECK(
            cudaFuncSetAttribute(csr_chunk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
            err);
        c->csr_smem_set = (int)smem;
    }
    float *P = nullptr;
    SKV_CHECK(skv_cuda_scratch(c, need * sizeof(float), (void **)&P, err));
    void *dj = nullptr;
    SKV_CHECK(skv_cuda_stage_jobs(c, SKV_STAGE_CSR_ATTEND, jobs,
                                  (size_t)njobs * sizeof(skv_csr_cuda_job), &dj, err));
    const skv_csr_cuda_job *djobs = static_cast<const skv_csr_cuda_job *>(dj);
    float *part = P + nP, *opart = part + nPart;
    csr_p<<<dim3(ntiles, njobs), kThreads, 0, c->stream>>>(djobs, d, g, atoms, P);
    csr_chunk<<<dim3(max_chunks * g, njobs), kThreads, smem, c->stream>>>(djobs, g, s, atoms, chunk,
                                                                          max_chunks, P, part);
    csr_values<<<dim3(ntiles, njobs), kThreads, 0, c->stream>>>(djobs, d, g, atoms, chunk,
                                                                max_chunks, part, ntiles, opart);
    csr_final<<<njobs, kThreads, 0, c->stream>>>(djobs, d, g, atoms, chunk, max_chunks, part,
                                                 ntiles, opart);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "CSR attend launch: %s", cudaGetErrorString(e));
    return SKV_OK;
}

subkv_status skv_csr_cuda_time_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs,
                                      int d, int g, int s, int atoms, uint64_t chunk, int warmup,
                                      int iters, float *median_ms, skv_err *err) {
    return skv_cuda_time_median(c, warmup, iters, median_ms, err, [&] {
        return skv_csr_cuda_attend(c, jobs, njobs, d, g, s, atoms, 0.0f, chunk, err);
    });
}

subkv_status skv_csr_cuda_fill_random_codes(uint16_t *idx, uint16_t *coef, size_t rows, int s,
                                            int atoms, uint64_t seed, float scale, skv_err *err) {
    if (!idx || !coef || s < 1 || atoms < 1 || atoms > 65536)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "fill_random_codes: bad arguments");
    fill_codes<<<1024, 256>>>(idx, coef, rows * 2 * (size_t)s, atoms, seed, scale);
    SKV_CUDA_CHECK(cudaGetLastError(), err);
    SKV_CUDA_CHECK(cudaDeviceSynchronize(), err);
    return SKV_OK;
}

} /* extern "C" */
