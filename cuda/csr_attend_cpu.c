/*
 * csr_attend_cpu.c — the GPU CSR attend API in a build without nvcc: every call says so.
 * (Compiled only when nvcc is absent; cuda/csr_attend.cu is the real one.)
 */
#include "skv_check.h"
#include "skv_csr_cuda.h"

#define NO_CUDA(err) skv_set_error((err), SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)")

subkv_status skv_csr_cuda_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs, int d,
                                 int g, int s, int atoms, float rope_base, uint64_t chunk,
                                 skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)s, (void)atoms, (void)rope_base;
    (void)chunk;
    return NO_CUDA(err);
}
subkv_status skv_csr_cuda_time_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs,
                                      int d, int g, int s, int atoms, uint64_t chunk, int warmup,
                                      int iters, float *median_ms, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)s, (void)atoms, (void)chunk;
    (void)warmup, (void)iters, (void)median_ms;
    return NO_CUDA(err);
}
subkv_status skv_csr_cuda_fill_random_codes(uint16_t *idx, uint16_t *coef, size_t rows, int s,
                                            int atoms, uint64_t seed, float scale, skv_err *err) {
    (void)idx, (void)coef, (void)rows, (void)s, (void)atoms, (void)seed, (void)scale;
    return NO_CUDA(err);
}
subkv_status skv_csr_cuda_encode(skv_cuda_ctx *c, const skv_csr_cuda_enc_job *jobs, int njobs,
                                 int d, int s, int atoms, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)s, (void)atoms;
    return NO_CUDA(err);
}
