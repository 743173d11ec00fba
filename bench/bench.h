/* bench.h — what the subkv-bench subcommands share. */
#ifndef SUBKV_BENCH_H
#define SUBKV_BENCH_H

#include <stddef.h>
#include <stdio.h>

#include "skv_cuda.h"

/* bench/gpu_common.c. 0 when st is SKV_OK; else prints "subkv-bench gpu: what: status:
 * message" to stderr and returns 1 (so checks chain with ||). */
int bench_fail(subkv_status st, const skv_err *err, const char *what);
/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);
/* The GPU benchmarks' start: 0 with a context on device 0 and its description in desc;
 * 1 (saying why on stderr, as "subkv-bench CMD: needs a GPU; ...") without a GPU. */
int bench_gpu_open(const char *cmd, skv_cuda_ctx **ctx, char *desc, size_t desc_len);

/* "4096,32K,1M" into out[max] (K and M are powers of 1024); the count, or -1 when malformed. */
int bench_parse_sizes(const char *s, size_t *out, int max);

/* bench/refresh.c: `subkv-bench refresh` (refreshkv's per-group vs per-layer decision) */
int bench_refresh(int argc, char **argv);

/* bench/gpu.c: `subkv-bench gpu` */
int bench_gpu(int argc, char **argv);

/* bench/gpu_append.c: SubGen's append on the device vs the CPU, one table (part of `gpu`). */
int bench_gpu_append(skv_cuda_ctx *ctx, const size_t *batches, int nb, size_t context,
                     size_t prefill, FILE *csv);
/* bench/gpu_csr.c: the CSR attend vs the exact attend, one table (part of `gpu`, or alone as
 * `subkv-bench gpu-csr`); 0 on success. */
int bench_gpu_csr_table(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches,
                        int nb, FILE *csv);
int bench_gpu_csr(int argc, char **argv);
/* bench/gpu_refresh.c: refreshkv's partial and full steps on the GPU vs exact, and the mean
 * step at full-step fractions 5/10/20% (part of `gpu`, or alone as `subkv-bench gpu-refresh`);
 * 0 on success. */
int bench_gpu_refresh_table(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches,
                            int nb, FILE *csv);
int bench_gpu_refresh(int argc, char **argv);
/* bench/multigpu.c: `subkv-bench multigpu` (under mpirun, one rank per GPU; issue 8) */
int bench_multigpu(int argc, char **argv);
/* bench/gpu_csr_worker.c: the worker-level csr step (codes upload + attend through
 * worker/gpu_csr.c) at `context` tokens, 8 x batch sketches, the new tokens coded on the CPU
 * and then on the GPU; one table (part of gpu-csr). */
int bench_gpu_csr_worker(size_t context, size_t batch, FILE *csv);

#endif /* SUBKV_BENCH_H */
