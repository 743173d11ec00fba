/*
 * test_gpu_csr.c — the GPU worker's csr path (worker/gpu_csr.c) on the GPU against the CPU:
 * the cases of tests/gpu_csr_case.h (appends between steps, codes and exact rows uploaded
 * append-only, shared dictionaries, two launch kinds, an exact sketch in the same request)
 * at d 64 and 128, g 1, 3, 4, f16 and bf16, with the appends coded on the CPU and (the
 * worker's default for these sketches) on the GPU. tests/test_gpu_csr_host.c runs the same cases
 * with the CUDA calls emulated on the host. Without a GPU every test is skipped with the
 * reason printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "gpu_suite.h"
#include "gpu_csr_case.h"

static int gpu_setup(void **state) {
    (void)state;
    if (!gpu_suite_probe("test_gpu_csr")) return 0;
    skv_gpu probe; /* the worker's GPU side must come up; each case makes its own */
    skv_err err;
    if (skv_gpu_init(&probe, 0, &err) != SKV_OK) {
        snprintf(g_gpu_reason, sizeof g_gpu_reason, "worker GPU init: %s", err.msg);
        return -1;
    }
    skv_gpu_fini(&probe);
    g_gpu_on = 1;
    return 0;
}

static void test_gpu_csr_d64_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    worker_case(64, 1, SKV_DTYPE_F16, 0);
    worker_case(64, 3, SKV_DTYPE_BF16, 0);
    worker_case(64, 4, SKV_DTYPE_F16, 0);
}

static void test_gpu_csr_d128_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    worker_case(128, 4, SKV_DTYPE_BF16, 0);
    worker_case(128, 3, SKV_DTYPE_F16, 0);
    worker_case(128, 1, SKV_DTYPE_F16, 0);
}

/* The worker's coding on the GPU (skv_gpu_csr_append, cuda/csr_encode.cu): each GPU-coded
 * sketch equals its CPU-coded twin bit for bit (checkpoint bytes) after every step, its
 * mirror's codes equal the CPU's, and its attend matches as above; so do sketches coded on
 * the GPU but attended on the CPU (pre-rotary, f32). */
static void test_gpu_csr_gpu_coded_equals_cpu_coded(void **state) {
    (void)state;
    NEED_GPU();
    worker_case(64, 1, SKV_DTYPE_F16, 1);
    worker_case(64, 4, SKV_DTYPE_BF16, 1);
    worker_case(128, 4, SKV_DTYPE_BF16, 1);
    worker_case(128, 3, SKV_DTYPE_F16, 1);
    unmirrored_case(128, SKV_DTYPE_F16, 10000.0f);
    unmirrored_case(64, SKV_DTYPE_F32, 0.0f);
}

int main(void) {
    tu_suite_begin("test_gpu_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_csr_d64_matches_cpu),
        cmocka_unit_test(test_gpu_csr_d128_matches_cpu),
        cmocka_unit_test(test_gpu_csr_gpu_coded_equals_cpu_coded),
    };
    return cmocka_run_group_tests(tests, gpu_setup, NULL);
}
