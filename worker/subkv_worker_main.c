/*
 * subkv-worker — one rank > 0 of the subkv MPI job. Usually started by deploy/subkv-launch:
 *   mpirun -np 1 subkv-coordinator ... : -np N subkv-worker [--budget BYTES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv-worker [--budget BYTES] [--backend auto|cpu|cuda] [--gpu-reserve BYTES]\n"
            "                    [--verbose]\n"
            "A rank > 0 of the subkv MPI job (rank 0 is subkv-coordinator). It holds the\n"
            "sketches the shard map gives it and serves the coordinator's ops.\n"
            "  --budget BYTES  most sketch memory this worker may hold (0: unlimited);\n"
            "                  suffixes K, M, G accepted\n"
            "  --backend B     auto (default): attend on this node-local rank's GPU when\n"
            "                  there is one (the coordinator counts as node-local rank 0\n"
            "                  when it runs --local-worker); cpu: the CPU reference only;\n"
            "                  cuda: the GPU\n"
            "  --gpu-reserve BYTES  device memory the GPU pool reserves at start (default:\n"
            "                  --budget; 0: grows on demand, never returned)\n");
}

static int parse_bytes(const char *s, size_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s) return -1;
    switch (*end) {
    case 'K':
    case 'k': v <<= 10, end++; break;
    case 'M':
    case 'm': v <<= 20, end++; break;
    case 'G':
    case 'g': v <<= 30, end++; break;
    default: break;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end) return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv) {
    skv_worker_opts o = {.fault = getenv("SUBKV_FAULT")};
    int reserve_set = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--verbose")) {
            o.verbose = 1;
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            if (!strcmp(b, "auto"))
                o.backend = SKV_WORKER_AUTO;
            else if (!strcmp(b, "cpu"))
                o.backend = SKV_WORKER_CPU;
            else if (!strcmp(b, "cuda"))
                o.backend = SKV_WORKER_CUDA;
            else {
                fprintf(stderr, "subkv-worker: --backend must be auto, cpu or cuda\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--budget") && i + 1 < argc) {
            if (parse_bytes(argv[++i], &o.budget_bytes) != 0) {
                fprintf(stderr, "subkv-worker: bad --budget '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--gpu-reserve") && i + 1 < argc) {
            if (parse_bytes(argv[++i], &o.gpu_reserve_bytes) != 0) {
                fprintf(stderr, "subkv-worker: bad --gpu-reserve '%s'\n", argv[i]);
                return 2;
            }
            reserve_set = 1;
        } else {
            fprintf(stderr, "subkv-worker: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!reserve_set) o.gpu_reserve_bytes = o.budget_bytes;
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        fprintf(stderr, "subkv-worker: started as rank 0; rank 0 must be subkv-coordinator "
                        "(mpirun -np 1 subkv-coordinator : -np N subkv-worker)\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int rc = skv_worker_serve(MPI_COMM_WORLD, &o);
    MPI_Finalize();
    return rc;
}
