/* gpu_common.c — what the GPU benchmarks (bench/gpu*.c) share: see bench.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* 0 with a context on device 0 and its description in desc; else 1, saying why. */
static int gpu_open(const char *cmd, skv_cuda_ctx **ctx, char *desc, size_t desc_len) {
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

int bench_gpu_start(const char *cmd, const char *usage, int argc, char **argv, bench_gpu_opts *o,
                    const bench_size_opt *extra, int nextra) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "subkv-bench %s: %s needs a value\n", cmd, a);
            return 2;
        }
        i++;
        int known = 1;
        if (!strcmp(a, "--contexts"))
            o->nc = bench_parse_sizes(v, o->ctxs, 8);
        else if (!strcmp(a, "--batches"))
            o->nb = bench_parse_sizes(v, o->batches, 8);
        else if (!strcmp(a, "--csv"))
            o->csv = v;
        else {
            known = 0;
            for (int k = 0; k < nextra && !known; k++)
                if (!strcmp(a, extra[k].flag)) {
                    *extra[k].value = strtoull(v, NULL, 0);
                    known = 1;
                }
        }
        if (!known || o->nc < 1 || o->nb < 1) {
            fprintf(stderr, "subkv-bench %s: bad option %s %s\n", cmd, a, v);
            return 2;
        }
    }
    return gpu_open(cmd, &o->ctx, o->desc, sizeof o->desc) ? 1 : -1;
}
