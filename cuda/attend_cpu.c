/*
 * attend_cpu.c — the GPU attend API in a build without nvcc: every call says so.
 * (Compiled only when nvcc is absent; cuda/attend.cu is the real one.)
 */
#include "skv_check.h"
#include "skv_cuda.h"

#define NO_CUDA(err) skv_set_error((err), SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)")

subkv_status skv_cuda_ctx_create(skv_cuda_ctx **out, skv_err *err) {
    *out = NULL;
    return NO_CUDA(err);
}
void skv_cuda_ctx_destroy(skv_cuda_ctx *c) { (void)c; }
subkv_status skv_cuda_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d, int g,
                             skv_dtype dtype, uint64_t chunk, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)dtype, (void)chunk;
    return NO_CUDA(err);
}
subkv_status skv_cuda_sync(skv_cuda_ctx *c, skv_err *err) {
    (void)c;
    return NO_CUDA(err);
}
subkv_status skv_cuda_time_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d,
                                  int g, skv_dtype dtype, uint64_t chunk, int warmup, int iters,
                                  float *median_ms, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)dtype, (void)chunk, (void)warmup;
    (void)iters, (void)median_ms;
    return NO_CUDA(err);
}
subkv_status skv_cuda_copy_bandwidth(skv_cuda_ctx *c, size_t bytes, double *gbps, skv_err *err) {
    (void)c, (void)bytes, (void)gbps;
    return NO_CUDA(err);
}
subkv_status skv_cuda_malloc(void **p, size_t bytes, skv_err *err) {
    (void)bytes;
    *p = NULL;
    return NO_CUDA(err);
}
void skv_cuda_free(void *p) { (void)p; }
subkv_status skv_cuda_upload(void *dst, const void *src, size_t bytes, skv_err *err) {
    (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_download(void *dst, const void *src, size_t bytes, skv_err *err) {
    (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_fill_random(void *p, size_t n, skv_dtype dtype, uint64_t seed, float scale,
                                  skv_err *err) {
    (void)p, (void)n, (void)dtype, (void)seed, (void)scale;
    return NO_CUDA(err);
}
subkv_status skv_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, skv_err *err) {
    *free_bytes = *total_bytes = 0;
    return NO_CUDA(err);
}
subkv_status skv_cuda_copy(void *dst, const void *src, size_t bytes, skv_err *err) {
    (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_host_alloc(void **p, size_t bytes, skv_err *err) {
    (void)bytes;
    *p = NULL;
    return NO_CUDA(err);
}
void skv_cuda_host_free(void *p) { (void)p; }
subkv_status skv_cuda_upload_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                   skv_err *err) {
    (void)c, (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_download_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                     skv_err *err) {
    (void)c, (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_memset_async(skv_cuda_ctx *c, void *p, int value, size_t bytes,
                                   skv_err *err) {
    (void)c, (void)p, (void)value, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_pool_reserve(skv_cuda_ctx *c, size_t bytes, skv_err *err) {
    (void)c, (void)bytes;
    return NO_CUDA(err);
}
subkv_status skv_cuda_pool_alloc(skv_cuda_ctx *c, void **p, size_t bytes, skv_err *err) {
    (void)c, (void)bytes;
    *p = NULL;
    return NO_CUDA(err);
}
void skv_cuda_pool_free(skv_cuda_ctx *c, void *p) { (void)c, (void)p; }
size_t skv_cuda_pool_reserved(const skv_cuda_ctx *c) {
    (void)c;
    return 0;
}
void *skv_cuda_ctx_stream(skv_cuda_ctx *c) {
    (void)c;
    return NULL;
}
subkv_status skv_cuda_copy_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                 skv_err *err) {
    (void)c, (void)dst, (void)src, (void)bytes;
    return NO_CUDA(err);
}
