/* rkv_topk_cpu.c — refreshkv's GPU top-K in a build without nvcc: says so. */
#include "skv_check.h"
#include "skv_cuda.h"

subkv_status skv_cuda_rkv_topk(skv_cuda_ctx *c, const skv_cuda_topk_job *jobs, int njobs,
                               skv_err *err) {
    (void)c, (void)jobs, (void)njobs;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)");
}
