/*
 * gpu_suite.h — what the GPU conformance suites share (header-only, static): the probe that
 * decides whether they run (a CUDA device, else every test skips with the reason printed),
 * NEED_GPU, the group setup and teardown of the suites that hold one CUDA context (g_ctx),
 * and device buffers for test inputs. Include after test_util.h.
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

static skv_cuda_ctx *g_ctx; /* the suite's context: set by gpu_suite_setup when a GPU is there */

/* CMocka group setup: with a GPU, a CUDA context in g_ctx and the tests run; without one, 0
 * and every test skips (NEED_GPU). A context that cannot be made fails the group, saying why.
 * The suite is named by tu_suite_begin. */
static inline int gpu_suite_setup(void **state) {
    (void)state;
    if (!gpu_suite_probe(tu_suite_name)) return 0;
    skv_err err;
    if (skv_cuda_ctx_create(&g_ctx, &err) != SKV_OK) {
        snprintf(g_gpu_reason, sizeof g_gpu_reason, "CUDA context: %s", err.msg);
        printf("# %s: %s\n", tu_suite_name, g_gpu_reason);
        return -1;
    }
    g_gpu_on = 1;
    return 0;
}

/* CMocka group teardown of gpu_suite_setup (nothing to do without a GPU). */
static inline int gpu_suite_teardown(void **state) {
    (void)state;
    skv_cuda_ctx_destroy(g_ctx);
    g_ctx = NULL;
    return 0;
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
