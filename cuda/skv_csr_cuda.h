/*
 * skv_csr_cuda.h — the GPU attend of CSR codes (cache/csr.c), reading atom indices and
 * coefficients instead of decoded rows.
 *
 * A job is the coded part of one csr sketch (one KV head of one sequence): n rows of 2s
 * (u16 atom index, f16 coefficient) pairs in csr's layout (s key pairs, then ceil(s/2) pairs
 * over value half 0 and floor(s/2) over value half 1), the dictionary tables of its layer
 * group (float32, unit atoms: keys [N][d], value halves [N][d/2]) and its g pre-scaled
 * queries. With k_t = sum_i c_ti Dk[a_ti] the score is linear in the codes:
 *   P[a] = <q, Dk[a]>               (one GEMV per job and query: N d multiplies)
 *   s_t  = sum_i c_ti P[a_ti]        (s lookups per token instead of d multiplies)
 * and so is the value side: o = sum_t e^(s_t - m) v_t = sum_a W[a] Dv[a] with
 *   W[a] = sum over value pairs (t, i) with a_ti = a of e^(s_t - m) c_ti,
 * kept per value half. So a token costs 8 s bytes of codes (exact: 4 d bytes of f16 K + V)
 * and the dictionary (8 N d bytes per group) is read once per job from L2.
 * The result is the job's g mergeable partials {m, l, o[d]} (skv_partial, stride d + 2
 * floats, the layout of skv_cuda_job.out): m = max s_t, l = sum e^(s_t - m),
 * o = sum e^(s_t - m) v^_t, the same as the CPU attend over csr's decoded rows. The worker
 * merges them with the exact sinks/window partial (skv_partial_merge).
 *
 * Kernels (cuda/csr_attend.cu): P per (atom tile, job); split-K over tokens, one query per
 * block, P and W in shared memory, online softmax tile by tile (W rescaled when the running
 * maximum grows); per (atom tile, job) the chunks' W merged by log-sum-exp and multiplied
 * by the value atoms; a last kernel sums the tiles into job.out.
 *
 * Supported: post-rotary codes (rope_base 0), head_dim 64 or 128, g in 1..8, sparsity
 * 2..head_dim, atoms 1..SKV_CSR_CUDA_MAX_ATOMS (shared memory: 12 N bytes per block).
 * Pre-rotary codes (rope_base > 0) are SKV_ERR_UNSUPPORTED for now (they need the token
 * positions and a rotation per key inside the score, which the P lookup cannot express).
 * Every call takes the attend's context (skv_cuda.h): its stream, so a CSR attend queued
 * after an exact attend (or a CSR encode) runs after it, its scratch and its job staging
 * (cuda/skv_cuda_internal.cuh); skv_cuda_sync waits for all of them. The same context also
 * codes new tokens on the GPU (skv_csr_cuda_encode, below).
 * Without nvcc every call returns SKV_ERR_UNSUPPORTED (cuda/csr_attend_cpu.c).
 */
#ifndef SUBKV_CSR_CUDA_H
#define SUBKV_CSR_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "skv_cuda.h"
#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SKV_CSR_CUDA_MAX_ATOMS = 16384 };

typedef struct skv_csr_cuda_job {
    const uint16_t *idx;  /* device: n rows of 2s atom indices (< atoms), csr's layout */
    const uint16_t *coef; /* device: n rows of 2s float16 coefficients, same layout    */
    uint64_t n;           /* coded tokens (0 gives empty partials)                     */
    const float *dk;      /* device: key atoms [atoms][d]                              */
    const float *dv0;     /* device: value half 0 atoms [atoms][d/2]                   */
    const float *dv1;     /* device: value half 1 atoms [atoms][d/2]                   */
    const float *q;       /* device: g rows of d floats, already scaled by 1/sqrt(d)   */
    float *out;           /* device: g partials of d + 2 floats ({m, l, o[d]})         */
} skv_csr_cuda_job;

/*
 * Enqueue the attend of jobs[njobs] (host array; all jobs share d, g, s and atoms) on the
 * context's stream. chunk: coded tokens per thread block (0: chosen to fill the device).
 * rope_base > 0 (pre-rotary codes): SKV_ERR_UNSUPPORTED. Indices >= atoms (which csr_load
 * refuses) add nothing instead of reading out of bounds. Returns once launched.
 */
subkv_status skv_csr_cuda_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs, int d,
                                 int g, int s, int atoms, float rope_base, uint64_t chunk,
                                 skv_err *err);

/* Median milliseconds of `iters` back-to-back skv_csr_cuda_attend calls (device events),
 * after `warmup` untimed ones. */
subkv_status skv_csr_cuda_time_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs,
                                      int d, int g, int s, int atoms, uint64_t chunk, int warmup,
                                      int iters, float *median_ms, skv_err *err);

/*
 * Matching-pursuit encoding of new tokens on the GPU (cuda/csr_encode.cu), batched over the
 * tokens of every job: job j's n keys and values (post-rotary, float32 rows of d) are coded
 * over its dictionary into n rows of 2s pairs in csr's layout, the work skv_mp_encode does
 * per token in cache/csr.c (key: s atoms over Dk; value halves: ceil(s/2) and floor(s/2)
 * atoms over Dv0, Dv1). The arithmetic repeats skv_mp_encode's float for float (its 8-lane
 * dot products, unfused multiplies and adds, round-to-nearest-even float16 with saturation,
 * the lowest index on ties), so the codes equal the CPU's bit for bit. A job may ask for a
 * second copy of its codes (idx2, coef2: the same layout), so that a caller coding straight
 * into per-sketch device arrays also gets every job's codes in one staging buffer to download
 * at once (worker/gpu_csr.c).
 */
typedef struct skv_csr_cuda_enc_job {
    const float *k, *v;     /* device: n rows of d floats each                       */
    uint64_t n;             /* tokens to code (0: nothing)                           */
    const float *dk;        /* device: key atoms [atoms][d]                          */
    const float *dv0;       /* device: value half 0 atoms [atoms][d/2]               */
    const float *dv1;       /* device: value half 1 atoms [atoms][d/2]               */
    uint16_t *idx, *coef;   /* device out: n rows of 2s indices / float16 coefficients */
    uint16_t *idx2, *coef2; /* device out, optional (both or neither): the same again */
} skv_csr_cuda_enc_job;

/* Enqueue the encoding of jobs[njobs] (host array; all share d in {64, 128}, s in [2, d],
 * atoms in [1, 65536]) on the context's stream. Returns once launched. */
subkv_status skv_csr_cuda_encode(skv_cuda_ctx *c, const skv_csr_cuda_enc_job *jobs, int njobs,
                                 int d, int s, int atoms, skv_err *err);

/* Benchmarks: fill rows x 2s codes at device idx/coef with atom indices uniform in
 * [0, atoms) and float16 coefficients ~ N(0, scale^2)-like, from a counter hash of
 * (seed, index). */
subkv_status skv_csr_cuda_fill_random_codes(uint16_t *idx, uint16_t *coef, size_t rows, int s,
                                            int atoms, uint64_t seed, float scale, skv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* SUBKV_CSR_CUDA_H */
