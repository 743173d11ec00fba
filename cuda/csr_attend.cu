/*
 * csr_attend.cu — the attend of CSR codes on the GPU (skv_csr_cuda.h): indices and
 * coefficients are read, never decoded rows.
 *
 * Four kernels on the context's stream, all 256 threads per block:
 *  1. csr_p      grid (atom tiles, jobs): P[job][q][a] = <q, Dk[a]> for the tile's 128 atoms,
 *                a warp per atom (lanes over the d channels, shuffle sum), every query of the
 *                job at once so each key atom is read once per job.
 *  2. csr_chunk  grid (chunks * query blocks, jobs): a block takes a chunk of one job's
 *                tokens for gb of its g queries (all g unless shared memory cannot hold
 *                their P[gb][N], W[gb][2][N] and tile scores), so each token's codes are read
 *                once per job, not once per query. The chunk's tokens go in tiles of kTile,
 *                kTPT tokens per thread: pass 1 loads each token's code row (for the usual
 *                sparsities 2, 3, 4, 6, 8, 16 as 16/8/4-byte words kept in registers; any
 *                other s, or unaligned code arrays, reads u16 by u16), scores it for every
 *                query, s_t = sum_i c_ti P[a_ti], into shared memory and finds the tile
 *                maxima; the running maximum M of each query becomes max(M, tile max) and,
 *                when it grew, that query's W and l are rescaled by e^(M_old - M) (the
 *                online-softmax rule applied per tile, not per token); pass 2 adds
 *                p = e^(s_t - M) to l and p c_ti to W[half][a_ti] for every value pair from
 *                the registers (shared-memory integer atomics on a fixed-point W: see the
 *                kernel). The chunk's partial {M, l, W[2N]} per query goes to scratch.
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
constexpr int kTile = 512;             /* tokens scored per pass of csr_chunk */
constexpr int kTPT = kTile / kThreads; /* tokens per thread per tile */
constexpr int kAtomTile = 128;         /* atoms per block of csr_p and csr_values */
constexpr int kMaxG = 8;
constexpr int kMaxD = 128;

__device__ __forceinline__ float coef_f32(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
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

/* A code row's 2s u16 indices (or coefficients) as the kernel reads them. S > 0: the row
 * is s = S u32 words loaded with 16-, 8- or 4-byte loads (the host checks the alignment)
 * and kept in registers; u16 k of the row is half of word k / 2. S = 0: any s, each u16
 * read from memory when used. */
template <int S> struct code_row {
    uint32_t wi[S], wc[S];
    __device__ __forceinline__ static void load_words(const uint16_t *base, uint64_t t,
                                                      uint32_t (&w)[S]) {
        const uint32_t *p = reinterpret_cast<const uint32_t *>(base + (size_t)t * 2 * S);
        if constexpr (S % 4 == 0) {
#pragma unroll
            for (int i = 0; i < S / 4; i++) {
                const uint4 v = __ldg(reinterpret_cast<const uint4 *>(p) + i);
                w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
            }
        } else if constexpr (S % 2 == 0) {
#pragma unroll
            for (int i = 0; i < S / 2; i++) {
                const uint2 v = __ldg(reinterpret_cast<const uint2 *>(p) + i);
                w[2 * i] = v.x, w[2 * i + 1] = v.y;
            }
        } else {
#pragma unroll
            for (int i = 0; i < S; i++) w[i] = __ldg(p + i);
        }
    }
    __device__ __forceinline__ void load(const skv_csr_cuda_job &job, uint64_t t, int) {
        load_words(job.idx, t, wi);
        load_words(job.coef, t, wc);
    }
    __device__ __forceinline__ unsigned idx(int k) const {
        return (wi[k >> 1] >> ((k & 1) * 16)) & 0xffffu;
    }
    __device__ __forceinline__ float coef(int k) const {
        return coef_f32((uint16_t)((wc[k >> 1] >> ((k & 1) * 16)) & 0xffffu));
    }
};

template <> struct code_row<0> {
    const uint16_t *pi, *pc;
    __device__ __forceinline__ void load(const skv_csr_cuda_job &job, uint64_t t, int s) {
        pi = job.idx + (size_t)t * 2 * (size_t)s;
        pc = job.coef + (size_t)t * 2 * (size_t)s;
    }
    __device__ __forceinline__ unsigned idx(int k) const { return __ldg(pi + k); }
    __device__ __forceinline__ float coef(int k) const { return coef_f32(__ldg(pc + k)); }
};

/* Block-wide max (is_max) or sum of v[0..gn) (gn <= kMaxG), in place in every thread.
 * red: kWarps * kMaxG floats. */
__device__ void block_reduce_g(float (&v)[kMaxG], int gn, float *red, bool is_max) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int qi = 0; qi < kMaxG; qi++) {
        if (qi >= gn) break;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float o = __shfl_xor_sync(0xffffffffu, v[qi], off);
            v[qi] = is_max ? fmaxf(v[qi], o) : v[qi] + o;
        }
        if (lane == 0) red[warp * kMaxG + qi] = v[qi];
    }
    __syncthreads();
#pragma unroll
    for (int qi = 0; qi < kMaxG; qi++) {
        if (qi >= gn) break;
        float r = red[qi];
#pragma unroll
        for (int w = 1; w < kWarps; w++)
            r = is_max ? fmaxf(r, red[w * kMaxG + qi]) : r + red[w * kMaxG + qi];
        v[qi] = r;
    }
    __syncthreads(); /* everyone has read red before it is written again */
}

/* Scale W of query rows [qi] by e (in place, non-atomic: the block is between passes). */
__device__ __forceinline__ void w_scale(int *w, int n, float f) {
    for (int a = threadIdx.x; a < n; a += kThreads) w[a] = __float2int_rn((float)w[a] * f);
}

/*
 * 2. One chunk of one job for the queries [g0, g0 + gn) of query block qb: partials
 * {M, l, W[2][atoms]} per query into part. A block takes as many of the job's queries as
 * shared memory holds (gb, chosen by the host; usually all g), so each token's codes are
 * read once for all of them, kTPT tokens per thread per tile, each token's code row kept in
 * registers between the two passes (S > 0).
 *
 * W is accumulated in 32-bit fixed point: float atomicAdd on shared memory is a
 * compare-and-swap loop on sm_90 (ATOMS.CAST.SPIN: latency-serialised), integer atomicAdd
 * a single ATOMS.ADD. Query q's W holds round(w 2^e_q). Before a tile's adds the block
 * knows an upper bound of every |W| it can reach, T_q = (T_q so far) + U_q with
 * U_q = sum over the tile of p_t sum_k |c_tk| (a block sum; it bounds any atom's share),
 * and lowers e_q (shifting W right) until T_q 2^e_q < 2^30, so no sum can overflow. The
 * rounding error is at most 2^-(e_q + 1) per add, about T_q 2^-31: relative to the chunk's
 * mass, a few parts in 10^9 — float32's own accumulation is no better. The online-softmax
 * rescale multiplies W and T_q by e^(M_old - M).
 */
template <int S>
__global__ void __launch_bounds__(kThreads)
    csr_chunk(const skv_csr_cuda_job *__restrict__ jobs, int g, int gb, int s_rt, int atoms,
              uint64_t chunk, int max_chunks, const float *__restrict__ P,
              float *__restrict__ part) {
    extern __shared__ float smem[];
    float *sP = smem;                                   /* [gb][atoms]     */
    int *sW = reinterpret_cast<int *>(sP + gb * atoms); /* [gb][2][atoms]  */
    float *sc = sP + 3 * gb * atoms;                    /* [gb][kTile]     */
    float *red = sc + gb * kTile;                       /* [kWarps][kMaxG] */
    const int s = S ? S : s_rt; /* a constant when S > 0: the code loops unroll */
    const int j = blockIdx.y, nqb = (g + gb - 1) / gb;
    const int qb = (int)(blockIdx.x % (unsigned)nqb), ci = (int)(blockIdx.x / (unsigned)nqb);
    const int g0 = qb * gb, gn = min(gb, g - g0);
    const skv_csr_cuda_job job = jobs[j];
    const uint64_t t0 = (uint64_t)ci * chunk;
    if (t0 >= job.n) return; /* past this job's end: the merge never reads this chunk */
    const uint64_t t1 = min(job.n, t0 + chunk);
    for (int i = threadIdx.x; i < gn * atoms; i += kThreads)
        sP[i] = P[((size_t)j * g + g0) * atoms + i];
    for (int i = threadIdx.x; i < 2 * gn * atoms; i += kThreads) sW[i] = 0;
    __syncthreads();
    const int s0 = (s + 1) / 2; /* value half 0 has ceil(s/2) pairs */
    const unsigned na = (unsigned)atoms;
    /* per query, the same in every thread: running maximum, bound of |W|, fixed-point
     * exponent; lsum is this thread's share of l */
    float M[kMaxG], T[kMaxG], lsum[kMaxG];
    int e[kMaxG];
#pragma unroll
    for (int qi = 0; qi < kMaxG; qi++) M[qi] = -INFINITY, T[qi] = 0.0f, lsum[qi] = 0.0f, e[qi] = 60;
    for (uint64_t tb = t0; tb < t1; tb += kTile) {
        const int cnt = (int)min((uint64_t)kTile, t1 - tb);
        code_row<S> rows[kTPT];
        float tmax[kMaxG];
#pragma unroll
        for (int qi = 0; qi < kMaxG; qi++) tmax[qi] = -INFINITY;
            /* pass 1: scores s_t = sum_k c_tk P[a_tk] of every query, into sc */
#pragma unroll
        for (int r = 0; r < kTPT; r++) {
            const int i = threadIdx.x + r * kThreads;
            if (i >= cnt) break;
            rows[r].load(job, tb + (uint64_t)i, s);
            float acc[kMaxG];
#pragma unroll
            for (int qi = 0; qi < kMaxG; qi++) acc[qi] = 0.0f;
#pragma unroll
            for (int k = 0; k < s; k++) {
                const unsigned a = rows[r].idx(k);
                const float cf = rows[r].coef(k);
                if (a < na) {
#pragma unroll
                    for (int qi = 0; qi < kMaxG; qi++)
                        if (qi < gn) acc[qi] = fmaf(cf, sP[qi * atoms + (int)a], acc[qi]);
                }
            }
#pragma unroll
            for (int qi = 0; qi < kMaxG; qi++)
                if (qi < gn) {
                    sc[qi * kTile + i] = acc[qi];
                    tmax[qi] = fmaxf(tmax[qi], acc[qi]);
                }
        }
        block_reduce_g(tmax, gn, red, true);
#pragma unroll
        for (int qi = 0; qi < kMaxG; qi++) {
            if (qi >= gn) break;
            const float Mn = fmaxf(M[qi], tmax[qi]);
            if (Mn > M[qi] && M[qi] != -INFINITY) { /* block-uniform: rescale earlier tiles */
                const float f = __expf(M[qi] - Mn);
                w_scale(sW + qi * 2 * atoms, 2 * atoms, f);
                lsum[qi] *= f;
                T[qi] *= f;
            }
            M[qi] = Mn;
        }
        /* pass 2a: p = e^(s_t - M) (kept), into l, and this tile's mass bound U */
        float p[kTPT][kMaxG], U[kMaxG];
#pragma unroll
        for (int qi = 0; qi < kMaxG; qi++) U[qi] = 0.0f;
#pragma unroll
        for (int r = 0; r < kTPT; r++) {
            const int i = threadIdx.x + r * kThreads;
            float cabs = 0.0f;
            if (i < cnt) {
#pragma unroll
                for (int k = s; k < 2 * s; k++) cabs += fabsf(rows[r].coef(k));
            }
#pragma unroll
            for (int qi = 0; qi < kMaxG; qi++) {
                p[r][qi] = 0.0f;
                if (qi < gn && i < cnt) { /* sc[.][i] was written by this same thread */
                    p[r][qi] = __expf(sc[qi * kTile + i] - M[qi]);
                    lsum[qi] += p[r][qi];
                    U[qi] = fmaf(p[r][qi], cabs, U[qi]);
                }
            }
        }
        block_reduce_g(U, gn, red, false);
        float sc2[kMaxG]; /* 2^e per query */
#pragma unroll
        for (int qi = 0; qi < kMaxG; qi++) {
            sc2[qi] = 0.0f;
            if (qi >= gn) continue;
            T[qi] += U[qi];
            int en = e[qi];
            while (en > -60 && ldexpf(T[qi], en) >= 1073741824.0f) en--; /* 2^30 */
            if (en < e[qi]) { /* block-uniform: shift W right, rounding */
                const int sh = e[qi] - en;
                int *w = sW + qi * 2 * atoms;
                for (int a = threadIdx.x; a < 2 * atoms; a += kThreads)
                    w[a] = sh >= 31 ? 0 : (int)(((long long)w[a] + (1ll << (sh - 1))) >> sh);
                e[qi] = en;
            }
            sc2[qi] = ldexpf(1.0f, e[qi]);
        }
        __syncthreads(); /* rescales and shifts are done before the adds */
        /* pass 2b: round(p c_tk 2^e) into W[half][a_tk] for the value pairs (registers) */
#pragma unroll
        for (int r = 0; r < kTPT; r++) {
            const int i = threadIdx.x + r * kThreads;
            if (i >= cnt) break;
#pragma unroll
            for (int k = s; k < 2 * s; k++) {
                const unsigned a = rows[r].idx(k);
                const float cf = rows[r].coef(k);
                const int h = k - s < s0 ? 0 : atoms;
                if (a < na) {
#pragma unroll
                    for (int qi = 0; qi < kMaxG; qi++)
                        if (qi < gn)
                            atomicAdd(&sW[qi * 2 * atoms + h + (int)a],
                                      __float2int_rn(p[r][qi] * cf * sc2[qi]));
                }
            }
        }
        __syncthreads(); /* the adds are done before the next tile's rescale and scores */
    }
    block_reduce_g(lsum, gn, red, false);
#pragma unroll
    for (int qi = 0; qi < kMaxG; qi++) {
        if (qi >= gn) break;
        const float inv = ldexpf(1.0f, -e[qi]);
        float *out = part + (((size_t)j * max_chunks + ci) * g + g0 + qi) * (2 + 2 * (size_t)atoms);
        if (threadIdx.x == 0) out[0] = M[qi], out[1] = lsum[qi];
        for (int a = threadIdx.x; a < 2 * atoms; a += kThreads)
            out[2 + a] = (float)sW[qi * 2 * atoms + a] * inv;
    }
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

/* Shared memory of csr_chunk for gb queries per block. */
size_t chunk_smem(int atoms, int gb) {
    return sizeof(float) * ((size_t)gb * (3 * (size_t)atoms + kTile) + (size_t)kWarps * kMaxG);
}

/* Every csr_chunk instance: the sparsities with a register-row variant, and S = 0 (any). */
constexpr int kVecS[] = {2, 3, 4, 6, 8, 16};
using chunk_fn = void (*)(const skv_csr_cuda_job *, int, int, int, int, uint64_t, int,
                          const float *, float *);
chunk_fn chunk_kernel(int s, bool aligned) {
    if (aligned) switch (s) {
        case 2: return csr_chunk<2>;
        case 3: return csr_chunk<3>;
        case 4: return csr_chunk<4>;
        case 6: return csr_chunk<6>;
        case 8: return csr_chunk<8>;
        case 16: return csr_chunk<16>;
        default: break;
        }
    return csr_chunk<0>;
}

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
    const size_t smem_max = (size_t)std::max(c->smem_optin, 48 << 10);
    if (atoms < 1 || atoms > SKV_CSR_CUDA_MAX_ATOMS || chunk_smem(atoms, 1) > smem_max)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR attend supports 1..%d atoms (%zu B of shared memory, the "
                             "device allows %zu), not %d",
                             SKV_CSR_CUDA_MAX_ATOMS, chunk_smem(atoms, 1), smem_max, atoms);
    /* queries per chunk block: all g when shared memory holds their P and W (N <= 2048 at
     * g 4 on sm_90), fewer otherwise */
    int gb = g;
    while (gb > 1 && chunk_smem(atoms, gb) > smem_max) gb--;
    const int nqb = (g + gb - 1) / gb;
    uint64_t total = 0, maxn = 0;
    bool aligned = true; /* the register-row variants load 16, 8 or 4 bytes at once */
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
        aligned = aligned && ((uintptr_t)jb->idx | (uintptr_t)jb->coef) % 16 == 0;
    }
    if (chunk == 0) { /* blocks_per_sm blocks per multiprocessor over all query blocks */
        const uint64_t want = (uint64_t)c->sms * (uint64_t)c->csr_blocks_per_sm;
        chunk = (total * (uint64_t)nqb + want - 1) / want;
        /* at least a tile, and enough tokens that the codes (8 s bytes a token) outweigh the
         * block's P and W traffic (about 20 gb N bytes) */
        chunk = std::max<uint64_t>(chunk, std::max<uint64_t>(kTile, 2ull * atoms * gb / s));
        chunk = (chunk + kTile - 1) / kTile * kTile;
    }
    chunk = std::min<uint64_t>(chunk, 1ull << 40); /* n + chunk cannot overflow below */
    const uint64_t mc = std::max<uint64_t>(1, (maxn + chunk - 1) / chunk);
    if (mc * (uint64_t)nqb > (uint64_t)INT_MAX || mc * (uint64_t)g > (uint64_t)INT_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR attend: too many chunks (%llu)",
                             (unsigned long long)mc);
    const int max_chunks = (int)mc, ntiles = (atoms + kAtomTile - 1) / kAtomTile;
    const size_t nP = (size_t)njobs * g * atoms;
    const size_t nPart = (size_t)njobs * max_chunks * g * (2 + 2 * (size_t)atoms);
    const size_t nO = (size_t)njobs * ntiles * g * d;
    const size_t need = nP + nPart + nO;
    const size_t smem = chunk_smem(atoms, gb);
    if (smem > (size_t)c->csr_smem_set) { /* every instance opted in at once: one int tracks it */
        SKV_CUDA_CHECK(cudaFuncSetAttribute(csr_chunk<0>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                       err);
        for (int vs : kVecS)
            SKV_CUDA_CHECK(cudaFuncSetAttribute(chunk_kernel(vs, true),
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)smem),
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
    chunk_kernel(s, aligned)<<<dim3(max_chunks * nqb, njobs), kThreads, smem, c->stream>>>(
        djobs, g, gb, s, atoms, chunk, max_chunks, P, part);
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
