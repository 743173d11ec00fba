/*
 * backend_cpu.c — skv_backend_select for builds without nvcc: always the CPU.
 *
 * The Makefile compiles the cuda/ files named *_cpu.c only when nvcc is absent; each is the CPU
 * stand-in for a .cu file of the same stem (backend_cpu.c <-> backend_cuda.cu).
 */
#ifdef SUBKV_HAVE_CUDA
#error "backend_cpu.c is the no-CUDA fallback; with SUBKV_HAVE_CUDA build backend_cuda.cu instead"
#endif

#include "skv_backend.h"

#include <stdio.h>
#include <string.h>

int skv_backend_select(int local_rank, skv_backend_info *out) {
    (void)local_rank;
    if (out == NULL) return -1;
    memset(out, 0, sizeof *out);
    out->kind = SKV_BACKEND_CPU;
    out->device = -1;
    out->device_count = 0;
    snprintf(out->name, sizeof out->name, "cpu");
    snprintf(out->reason, sizeof out->reason, "built without CUDA");
    return 0;
}
