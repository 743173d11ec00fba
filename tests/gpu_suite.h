/*
 * gpu_suite.h — what the GPU conformance suites share (header-only, static): the probe that
 * decides whether they run (a CUDA device, else every test skips with the reason printed),
 * NEED_GPU, and device buffers for test inputs. Include after test_util.h.
 */
#ifndef SUBKV_GPU_SUITE_H
#define SUBKV_GPU_SUITE_H

#include <stdio.h>

#include "skv_backend.h"
#include "skv_cuda.h"

static char g_gpu_reason[256]; /* why the suite skips */
static int g_gpu_on;           /* set by a suite's setup once its context exists */

/* 1 when this process has a CUDA device (printed as "# SUITE: running on ..."), else 0 with
 * the reason kept for NEED_GPU. */
static inline int gpu_suite_probe(const char *suite_name) {
    skv_backend_info bi;
    skv_backend_select(0, &bi);
    if (bi.kind != SKV_BACKEND_CUDA) {
        snprintf(g_gpu_reason, sizeof g_gpu_reason, "no GPU: %s", bi.reason);
        return 0;
    }
    char desc[256];
    skv_backend_describe(&bi, desc, sizeof desc);
    printf("# %s: running on %s\n", suite_name, desc);
    return 1;
}

#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!g_gpu_on) {                                                                           \
            printf("# skipped: %s\n", g_gpu_reason);                                               \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* bytes of device memory (at least 16), holding src when given. */
static inline void *upload(const void *src, size_t bytes) {
    void *p = NULL;
    skv_err err;
    TU_OK(skv_cuda_malloc(&p, bytes ? bytes : 16, &err), &err);
    if (src && bytes) TU_OK(skv_cuda_upload(p, src, bytes, &err), &err);
    return p;
}

#endif /* SUBKV_GPU_SUITE_H */
