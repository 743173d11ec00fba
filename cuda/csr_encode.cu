/*
 * csr_encode.cu — matching pursuit of new tokens on the GPU (skv_csr_cuda_encode), batched:
 * one block codes kEncT tokens of one job for one part (key, value half 0 or half 1), so
 * each step reads the part's atom table once for kEncT tokens instead of once per token.
 *
 * Block layout: lane = token of the block's tile, warp = one of kWarps interleaved slices
 * of each atom tile. Per step: the residuals R[kEncT][dim] are in shared memory (rows padded
 * by one float: the lanes of a warp read different tokens' rows without bank conflicts);
 * atom tiles of kEncA rows are staged in shared memory and every thread scores its token
 * against its warp's atoms of the tile, keeping the largest |c| (atoms visited in increasing
 * order, strict >, so the lowest index wins ties); warp 0 then takes the best over the
 * warps (ties: lowest index), saturates c to +-65504, rounds it to float16 and writes the
 * pair, and all threads subtract the rounded coefficient times the atom from R.
 *
 * Bit-exact with skv_mp_encode (cache/csr_dict.c): the correlation is its dot8 (8 lane
 * accumulators over j, j + 8, ..., then summed lane 0..7) with __fmul_rn/__fadd_rn so nvcc
 * does not fuse them (gcc at -std=c11 does not contract either), and the residual update is
 * r - q a, unfused. dim (64 or 128, or half of it) is a multiple of 8.
 */
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "skv_check.h"
#include "skv_csr_cuda.h"
#include "skv_cuda_internal.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kEncT = 32; /* tokens per block: one per lane */
constexpr int kEncA = 32; /* atoms per shared-memory tile */
constexpr int kMaxD = 128;

__global__ void __launch_bounds__(kThreads)
    csr_encode(const skv_csr_cuda_enc_job *__restrict__ jobs, int d, int s, int atoms) {
    __shared__ float sR[kEncT][kMaxD + 1];
    __shared__ float sA[kEncA][kMaxD];
    __shared__ float s_abs[kWarps][kEncT], s_c[kWarps][kEncT];
    __shared__ int s_i[kWarps][kEncT];
    __shared__ float s_q[kEncT];
    __shared__ int s_best[kEncT];
    const int part = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const skv_csr_cuda_enc_job job = jobs[blockIdx.z];
    const uint64_t t0 = (uint64_t)blockIdx.x * kEncT;
    if (t0 >= job.n) return; /* block-uniform */
    const int nt = (int)min((uint64_t)kEncT, job.n - t0);
    const int h = d / 2, dim = part ? h : d, s0 = (s + 1) / 2;
    const int steps = part == 0 ? s : part == 1 ? s0 : s / 2;
    const int col = part == 0 ? 0 : part == 1 ? s : s + s0; /* first pair of this part */
    const float *tab = part == 0 ? job.dk : part == 1 ? job.dv0 : job.dv1;
    const float *src = (part == 0 ? job.k : job.v) + (part == 2 ? h : 0);
    for (int i = tid; i < kEncT * dim; i += kThreads) {
        const int tk = i / dim, c = i % dim;
        sR[tk][c] = tk < nt ? src[(t0 + (uint64_t)tk) * (uint64_t)d + c] : 0.0f;
    }
    const size_t row2s = 2 * (size_t)s;
    for (int step = 0; step < steps; step++) {
        float ba = -1.0f, bc = 0.0f; /* |c| >= 0 > -1: the first atom seen is taken */
        int bi = INT_MAX;
        for (int a0 = 0; a0 < atoms; a0 += kEncA) {
            const int na = min(kEncA, atoms - a0);
            __syncthreads(); /* R is updated and the last tile is consumed */
            const float *tile = tab + (size_t)a0 * dim;
            for (int i = tid; i < na * dim; i += kThreads) sA[i / dim][i % dim] = tile[i];
            __syncthreads();
            for (int al = warp; al < na; al += kWarps) {
                float ln[8];
#pragma unroll
                for (int k = 0; k < 8; k++) ln[k] = 0.0f;
                for (int j = 0; j < dim; j += 8)
#pragma unroll
                    for (int k = 0; k < 8; k++)
                        ln[k] = __fadd_rn(ln[k], __fmul_rn(sA[al][j + k], sR[lane][j + k]));
                float c = 0.0f;
#pragma unroll
                for (int k = 0; k < 8; k++) c = __fadd_rn(c, ln[k]);
                if (fabsf(c) > ba) ba = fabsf(c), bc = c, bi = a0 + al;
            }
        }
        s_abs[warp][lane] = ba, s_c[warp][lane] = bc, s_i[warp][lane] = bi;
        __syncthreads();
        if (warp == 0) {
            float A = s_abs[0][lane], C = s_c[0][lane];
            int I = s_i[0][lane];
            for (int w = 1; w < kWarps; w++) {
                const float aw = s_abs[w][lane];
                if (aw > A || (aw == A && s_i[w][lane] < I))
                    A = aw, C = s_c[w][lane], I = s_i[w][lane];
            }
            if (I >= atoms) I = 0, C = 0.0f; /* unreachable (atoms >= 1): keeps the index valid */
            const float cl = fminf(65504.0f, fmaxf(-65504.0f, C));
            const __half hq = __float2half_rn(cl);
            s_q[lane] = __half2float(hq);
            s_best[lane] = I;
            if (lane < nt) {
                const size_t at = (t0 + (uint64_t)lane) * row2s + (size_t)(col + step);
                job.idx[at] = (uint16_t)I;
                job.coef[at] = __half_as_ushort(hq);
                if (job.idx2) { /* the optional second copy (both or neither: checked) */
                    job.idx2[at] = (uint16_t)I;
                    job.coef2[at] = __half_as_ushort(hq);
                }
            }
        }
        __syncthreads();
        for (int i = tid; i < kEncT * dim; i += kThreads) {
            const int tk = i / dim, c = i % dim;
            const float *a = tab + (size_t)s_best[tk] * dim;
            sR[tk][c] = __fsub_rn(sR[tk][c], __fmul_rn(s_q[tk], a[c]));
        }
    }
}

} // namespace

extern "C" subkv_status skv_csr_cuda_encode(skv_cuda_ctx *c, const skv_csr_cuda_enc_job *jobs,
                                            int njobs, int d, int s, int atoms, skv_err *err) {
    if (!c || !jobs || njobs < 1 || njobs > 65535)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR encode: %d jobs (1..65535)", njobs);
    if (d != 64 && d != 128)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "GPU CSR encode supports head_dim 64 and 128, not %d", d);
    if (s < 2 || s > d)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR encode: sparsity %d outside [2, %d]", s,
                             d);
    if (atoms < 1 || atoms > 65536)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR encode: %d atoms (1..65536)", atoms);
    uint64_t maxn = 0;
    for (int j = 0; j < njobs; j++) {
        const skv_csr_cuda_enc_job *jb = &jobs[j];
        if (jb->n && (!jb->k || !jb->v || !jb->dk || !jb->dv0 || !jb->dv1 || !jb->idx || !jb->coef))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR encode: job %d has a NULL array",
                                 j);
        if (!jb->idx2 != !jb->coef2)
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "CSR encode: job %d has one of idx2, coef2 (both or neither)", j);
        maxn = std::max(maxn, jb->n);
    }
    const uint64_t blocks = (maxn + kEncT - 1) / kEncT;
    if (blocks > (uint64_t)INT_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "CSR encode: %llu tokens in one job",
                             (unsigned long long)maxn);
    if (blocks == 0) return SKV_OK; /* nothing to code */
    void *dj = nullptr;
    SKV_CHECK(skv_cuda_stage_jobs(c, SKV_STAGE_CSR_ENCODE, jobs,
                                  (size_t)njobs * sizeof(skv_csr_cuda_enc_job), &dj, err));
    csr_encode<<<dim3((unsigned)blocks, 3, njobs), kThreads, 0, c->stream>>>(
        static_cast<const skv_csr_cuda_enc_job *>(dj), d, s, atoms);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "CSR encode launch: %s", cudaGetErrorString(e));
    return SKV_OK;
}
