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

/* The start the GPU benchmarks share: the command line (--contexts N,... and --batches B,...,
 * at most 8 sizes each; --csv FILE; size options of their own, bench_size_opt: flag, where its
 * value goes), then a CUDA context on device 0. */
typedef struct bench_gpu_opts {
    size_t ctxs[8], batches[8];
    int nc, nb; /* how many of ctxs, batches */
    const char *csv;
    skv_cuda_ctx *ctx; /* set by bench_gpu_start; the caller destroys it */
    char desc[256];    /* the device, in words */
} bench_gpu_opts;
typedef struct bench_size_opt {
    const char *flag;
    size_t *value;
} bench_size_opt;
/* bench/gpu_common.c. Parses argv[0, argc) of `subkv-bench CMD` into o (holding the defaults
 * on entry) and extra[0, nextra), then opens the GPU (o->ctx, o->desc). -1 to go on; else the
 * exit status: 0 after --help or -h (usage printed to stdout), 2 on a missing value or a bad
 * option, 1 without a GPU ("subkv-bench CMD: needs a GPU; ...") or a context (on stderr). */
int bench_gpu_start(const char *cmd, const char *usage, int argc, char **argv, bench_gpu_opts *o,
                    const bench_size_opt *extra, int nextra);

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
