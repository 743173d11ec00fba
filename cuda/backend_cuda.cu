/*
 * backend_cuda.cu — skv_backend_select with the CUDA runtime (built only when nvcc is found).
 *
 * Every CUDA error is caught here and turned into a CPU fallback with a reason; nothing
 * aborts, and no state outlives the call except the device made current for this thread.
 */
#include "skv_backend.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

/* The oldest compute capability our fatbinary runs on: sm_90 SASS plus compute_90 PTX
 * (JIT-compiled for newer GPUs). Keep in step with NVCC_ARCH in the Makefile. */
#define SKV_MIN_CC 90

static void skv_backend_cpu_fallback(skv_backend_info *out, int device_count, const char *why,
                                     const char *detail) {
    out->kind = SKV_BACKEND_CPU;
    out->device = -1;
    out->device_count = device_count;
    out->mem_bytes = 0;
    out->cc_major = 0;
    out->cc_minor = 0;
    snprintf(out->name, sizeof out->name, "cpu");
    if (detail != NULL)
        snprintf(out->reason, sizeof out->reason, "%s: %s", why, detail);
    else
        snprintf(out->reason, sizeof out->reason, "%s", why);
}

extern "C" int skv_backend_select(int local_rank, skv_backend_info *out) {
    if (out == NULL) return -1;
    memset(out, 0, sizeof *out);
    if (local_rank < 0) local_rank = 0;

    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError(); /* reset the last-error slot so later calls start clean */
        skv_backend_cpu_fallback(out, 0, "no CUDA device", cudaGetErrorString(rc));
        return 0;
    }
    if (count <= 0) {
        skv_backend_cpu_fallback(out, 0, "no CUDA device", "device count is 0");
        return 0;
    }

    int dev = local_rank % count;
    cudaDeviceProp prop;
    rc = cudaGetDeviceProperties(&prop, dev);
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        char why[64];
        snprintf(why, sizeof why, "cudaGetDeviceProperties(%d) failed", dev);
        skv_backend_cpu_fallback(out, count, why, cudaGetErrorString(rc));
        return 0;
    }
    if (prop.major * 10 + prop.minor < SKV_MIN_CC) {
        char detail[96];
        snprintf(detail, sizeof detail, "device %d is sm_%d%d, this build needs sm_%d or newer",
                 dev, prop.major, prop.minor, SKV_MIN_CC);
        skv_backend_cpu_fallback(out, count, "unsupported CUDA device", detail);
        return 0;
    }
    rc = cudaSetDevice(dev);
    if (rc == cudaSuccess)
        rc = cudaFree(0); /* force context creation now, so a broken device shows up here */
    if (rc != cudaSuccess) {
        (void)cudaGetLastError();
        char why[64];
        snprintf(why, sizeof why, "cannot use CUDA device %d", dev);
        skv_backend_cpu_fallback(out, count, why, cudaGetErrorString(rc));
        return 0;
    }

    out->kind = SKV_BACKEND_CUDA;
    out->device = dev;
    out->device_count = count;
    /* prop.name is 256 bytes; device names are far shorter, but bound the copy explicitly. */
    snprintf(out->name, sizeof out->name, "%.*s", (int)sizeof out->name - 1, prop.name);
    out->reason[0] = '\0';
    out->mem_bytes = (unsigned long long)prop.totalGlobalMem;
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    return 0;
}
