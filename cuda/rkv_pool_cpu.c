/* rkv_pool_cpu.c — refreshkv's GPU token scores in a build without nvcc: says so. */
#include "skv_check.h"
#include "skv_cuda.h"

subkv_status skv_cuda_rkv_pool(skv_cuda_ctx *c, const skv_cuda_pool_job *jobs, int njobs, int d,
                               int g, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)");
}
