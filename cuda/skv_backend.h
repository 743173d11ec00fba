/*
 * skv_backend.h — which compute backend this process uses: a CUDA device or the CPU.
 *
 * The probe is a pure function of (local_rank, the machine, how we were built): no global
 * mutable state. A worker calls skv_backend_select once at start-up with its node-local
 * rank and keeps the result; everything GPU-side then runs on out->device.
 *
 * Built with nvcc (SUBKV_HAVE_CUDA=1): cuda/backend_cuda.cu, CUDA runtime.
 * Built without nvcc:                  cuda/backend_cpu.c, always reports the CPU.
 */
#ifndef SUBKV_SKV_BACKEND_H
#define SUBKV_SKV_BACKEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SKV_BACKEND_CPU = 0, SKV_BACKEND_CUDA = 1 } skv_backend_kind;

typedef struct {
    skv_backend_kind kind;
    int device;                   /* CUDA device ordinal in use; -1 on the CPU         */
    int device_count;             /* CUDA devices visible to this process (0 if none)  */
    char name[128];               /* device name ("NVIDIA H100 80GB HBM3") or "cpu"    */
    char reason[160];             /* CPU only: why we fell back; "" on CUDA            */
    unsigned long long mem_bytes; /* CUDA only: total device memory in bytes; else 0   */
    int cc_major, cc_minor;       /* CUDA only: compute capability; else 0             */
} skv_backend_info;

/*
 * Picks the backend for a process with node-local rank `local_rank` (>= 0; negative is
 * treated as 0). With CUDA compiled in and at least one usable device, selects device
 * local_rank % device_count, makes it current for the calling thread (cudaSetDevice) and
 * initialises its context. Otherwise (built without CUDA, no device or driver, a device
 * older than the sm_90 the kernels are built for, or any runtime error) fills a CPU
 * description and says why in out->reason. Never fails over a missing GPU: returns 0
 * whenever `out` is filled; -1 only when `out` is NULL.
 */
int skv_backend_select(int local_rank, skv_backend_info *out);

/*
 * One-line human description into buf (always NUL-terminated when n > 0), e.g.
 *   "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90)"
 *   "cpu (fallback: no CUDA device: no CUDA-capable device is detected)"
 */
void skv_backend_describe(const skv_backend_info *info, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_SKV_BACKEND_H */
