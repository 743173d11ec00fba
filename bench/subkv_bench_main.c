/*
 * subkv-bench — benchmarks that verify what they time. Each prints '#' header lines and a
 * fixed-width table, and writes CSV.
 *
 *   subkv-bench sketch   every policy at n = 4K, 32K, 256K, 1M tokens (d = 128, synthetic
 *                        drifting clusters with topic shifts and heavy-tailed values):
 *                        bytes held, append ns/token, attend us/query, error vs exact.
 *   subkv-bench gpu      the GPU attend (bench/gpu.c): exact vs copy bandwidth, SubGen's
 *                        attend at 8x/16x/64x less memory, accuracy at equal memory.
 *   subkv-bench gpu-csr  the CSR attend over codes vs exact (bench/gpu_csr.c; also in gpu).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy_eval.h"

#include "bench.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: subkv-bench sketch [--n N[,N...]] [--d D] [--budget BYTES] [--dtype f32|f16|bf16]\n"
        "                          [--queries Q] [--group G] [--seed S] [--drift X] [--csv FILE]\n"
        "Defaults: --n 4096,32768,262144,1048576 --d 128 --budget 524288 --dtype f16\n"
        "          --queries 8 --group 4 --drift 0.0003 --csv build/bench-sketch.csv\n"
        "--drift: random-walk std per token and coordinate of every key-cluster center.\n"
        "Budget is per KV head for sinkwin, h2o and subgen; exact holds everything.\n");
}

int bench_parse_sizes(const char *s, size_t *out, int max) {
    int k = 0;
    while (*s && k < max) {
        char *end;
        unsigned long long v = strtoull(s, &end, 0);
        if (end == s || v == 0) return -1;
        if (*end == 'K' || *end == 'k')
            v *= 1024, end++;
        else if (*end == 'M' || *end == 'm')
            v *= 1024 * 1024, end++;
        out[k++] = (size_t)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return k;
}

static int bench_sketch(int argc, char **argv) {
    size_t ns[16] = {4096, 32768, 262144, 1048576};
    int nn = 4, d = 128, queries = 8, group = 4;
    size_t budget = 512 * 1024;
    skv_dtype dtype = SKV_DTYPE_F16;
    uint64_t seed = 7;
    float drift = 0.0003f;
    const char *csv = "build/bench-sketch.csv";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "subkv-bench: option '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--n")) {
            nn = bench_parse_sizes(v, ns, 16);
            if (nn < 1) {
                fprintf(stderr, "subkv-bench: bad --n '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--d"))
            d = atoi(v);
        else if (!strcmp(a, "--budget"))
            budget = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--queries"))
            queries = atoi(v);
        else if (!strcmp(a, "--group"))
            group = atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--csv"))
            csv = v;
        else if (!strcmp(a, "--dtype")) {
            int t = skv_dtype_parse(v);
            if (t < 0) {
                fprintf(stderr, "subkv-bench: unknown dtype '%s'\n", v);
                return 2;
            }
            dtype = (skv_dtype)t;
        } else {
            fprintf(stderr, "subkv-bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (d < 1 || d > 1024 || queries < 1 || group < 1 || group > 64) {
        fprintf(stderr, "subkv-bench: need 1 <= d <= 1024, queries >= 1, 1 <= group <= 64\n");
        return 2;
    }
    FILE *fc = fopen(csv, "w");
    if (!fc) {
        perror(csv);
        return 1;
    }
    printf("# subkv-bench sketch: CPU reference policies, d=%d, storage %s, budget %zu B/head, "
           "%d queries x %d heads\n",
           d, skv_dtype_name(dtype), budget, queries, group);
    printf("# workload: 64 clusters drifting %g/token/coordinate, topic phases of 4 clusters x "
           "8192 tokens, Pareto value norms (alpha 4); error = mean ||out - exact|| / ||exact|| "
           "(float64 exact)\n",
           drift);
    int rc = 0;
    for (int k = 0; k < nn; k++) {
        eval_opts o = {
            .n = ns[k], .queries = queries, .group = group, .observe_every = 64, .progress = 1};
        o.data = eval_workload(d, 64, 8192, drift, seed);
        skv_config cfgs[5];
        const char *labels[5];
        int np = eval_standard_lineup(d, dtype, budget, seed, cfgs, labels);
        eval_result res[5];
        if (eval_run(&o, cfgs, labels, np, res) != 0) {
            fprintf(stderr, "subkv-bench: out of memory at n=%zu\n", ns[k]);
            rc = 1;
            break;
        }
        eval_print_table(stdout, ns[k], res, np);
        fflush(stdout);
        eval_write_csv(fc, ns[k], res, np, k == 0);
        for (int p = 0; p < np; p++)
            if (res[p].status != SKV_OK) rc = 1;
    }
    fclose(fc);
    printf("# csv: %s\n", csv);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "sketch")) return bench_sketch(argc - 2, argv + 2);
    if (!strcmp(argv[1], "gpu")) return bench_gpu(argc - 2, argv + 2);
    if (!strcmp(argv[1], "gpu-csr")) return bench_gpu_csr(argc - 2, argv + 2);
    fprintf(stderr, "subkv-bench: unknown benchmark '%s' (known: sketch, gpu, gpu-csr)\n", argv[1]);
    return 2;
}
