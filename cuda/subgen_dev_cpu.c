/* subgen_dev_cpu.c — the GPU append in a build without nvcc: says so (cuda/subgen_dev.cu). */
#include "skv_check.h"
#include "skv_dsub.h"

subkv_status skv_dsub_launch(skv_cuda_ctx *c, const skv_dsub_op *ops, int nops, skv_err *err) {
    (void)c, (void)ops, (void)nops;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without CUDA (no nvcc)");
}
