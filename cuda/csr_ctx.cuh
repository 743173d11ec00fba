/*
 * csr_ctx.cuh — the CSR CUDA context (skv_csr_cuda.h) as csr_attend.cu and csr_encode.cu
 * both see it: one stream, the staged job arrays of each launch kind, the attend's scratch.
 */
#ifndef SUBKV_CSR_CTX_CUH
#define SUBKV_CSR_CTX_CUH

#include <cuda_runtime.h>

#include "skv_csr_cuda.h"

namespace skv_csr {

constexpr int kThreads = 256; /* every CSR kernel's block */
constexpr int kWarps = kThreads / 32;

struct ctx_impl {
    cudaStream_t stream;
    skv_csr_cuda_job *djobs; /* device copy of the attend's job array */
    skv_csr_cuda_job *hjobs; /* pinned staging of it: the copy is truly asynchronous */
    cudaEvent_t jobs_copied; /* the last copy out of hjobs has completed */
    int jobs_cap;
    skv_csr_cuda_enc_job *ejobs_d; /* the same for the encoder's job array */
    skv_csr_cuda_enc_job *ejobs_h;
    cudaEvent_t ejobs_copied;
    int ejobs_cap;
    float *scratch; /* attend: P, chunk partials, tile outputs */
    size_t scratch_cap;
    int sms;
    int smem_optin;    /* largest dynamic shared memory a block may opt into */
    int smem_set;      /* what csr_chunk has been opted into so far */
    int blocks_per_sm; /* split-K target: SUBKV_CSR_BLOCKS_PER_SM, default 4 */
};

} // namespace skv_csr

struct skv_csr_cuda_ctx : skv_csr::ctx_impl {};

#endif /* SUBKV_CSR_CTX_CUH */
