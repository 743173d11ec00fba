/* gpu_common.c — what the GPU benchmarks (bench/gpu*.c) share: see bench.h. */
#include <stdio.h>
#include <time.h>

#include "bench.h"
#include "skv_backend.h"

int bench_fail(subkv_status st, const skv_err *err, const char *what) {
    if (st == SKV_OK) return 0;
    fprintf(stderr, "subkv-bench gpu: %s: %s: %s\n", what, subkv_status_name(st), err->msg);
    return 1;
}

double bench_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int bench_gpu_open(const char *cmd, skv_cuda_ctx **ctx, char *desc, size_t desc_len) {
    skv_backend_info bi;
    skv_backend_select(0, &bi);
    skv_backend_describe(&bi, desc, desc_len);
    *ctx = NULL;
    if (bi.kind != SKV_BACKEND_CUDA) {
        fprintf(stderr, "subkv-bench %s: needs a GPU; backend is %s\n", cmd, desc);
        return 1;
    }
    skv_err err;
    return bench_fail(skv_cuda_ctx_create(ctx, &err), &err, "context");
}
