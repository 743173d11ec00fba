/*
 * test_gpu_csr_host.c — the GPU worker's csr path (worker/gpu_csr.c + gpu_attend.c) with the
 * CUDA calls emulated on the host (tests/cuda_emu.h), so its host side (which rows and codes
 * go where, job offsets, the split into exact and coded parts, the merge, the coding of new
 * tokens on the "device" and their return to the CPU sketch) is checked on any machine. The
 * cases are tests/gpu_csr_case.h's, as tests/test_gpu_csr.c runs them on a GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "cuda_emu.h"

/* A request of the case: one exact attend (one dtype) and one CSR attend per (sparsity,
 * atoms) kind (two), whatever the number of csr items. */
#define GPU_CSR_CASE_STEP_HOOK(gpu)                                                                \
    do {                                                                                           \
        assert_int_equal((gpu)->ctx->launches, 3);                                                 \
        (gpu)->ctx->launches = 0;                                                                  \
    } while (0)
#include "gpu_csr_case.h"

/* ---- the cases --------------------------------------------------------------------------- */

static void test_gpu_csr_host_d64(void **state) {
    (void)state;
    worker_case(64, 1, SKV_DTYPE_F16, 0);
    worker_case(64, 3, SKV_DTYPE_BF16, 0);
    worker_case(64, 4, SKV_DTYPE_F16, 0);
}

static void test_gpu_csr_host_d128(void **state) {
    (void)state;
    worker_case(128, 4, SKV_DTYPE_BF16, 0);
    worker_case(128, 3, SKV_DTYPE_F16, 0);
}

/* The appends coded by the (emulated) GPU encode: the sketches equal their CPU-coded twins
 * byte for byte, the device codes equal the CPU's, the attends match. */
static void test_gpu_csr_host_gpu_coded(void **state) {
    (void)state;
    worker_case(64, 1, SKV_DTYPE_F16, 1);
    worker_case(64, 3, SKV_DTYPE_BF16, 1);
    worker_case(128, 4, SKV_DTYPE_BF16, 1);
    worker_case(128, 1, SKV_DTYPE_F16, 1);
    const uint64_t before = g_emu_encoded;
    unmirrored_case(128, SKV_DTYPE_F16, 10000.0f);
    unmirrored_case(64, SKV_DTYPE_F32, 0.0f);
    assert_true(g_emu_encoded > before); /* through the encode */
}

int main(void) {
    tu_suite_begin("test_gpu_csr_host");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_csr_host_d64),
        cmocka_unit_test(test_gpu_csr_host_d128),
        cmocka_unit_test(test_gpu_csr_host_gpu_coded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
