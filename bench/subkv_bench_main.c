/*
 * subkv-bench — benchmarks that verify what they time. Each prints '#' header lines and a
 * fixed-width table, and writes CSV.
 *
 *   subkv-bench sketch   every policy at n = 4K, 32K, 256K, 1M tokens (d = 128, synthetic
 *                        drifting clusters with topic shifts and heavy-tailed values):
 *                        bytes held, append ns/token, attend us/query, error vs exact;
 *                        refreshkv's full-step fraction and bytes read per step, and the
 *                        paper's equal-time comparison: h2o and sinkwin holding what
 *                        refreshkv reads per step on average.
 *   subkv-bench refresh  refreshkv's refresh decision per GQA group vs per layer
 *                        (bench/refresh.c).
 *   subkv-bench gpu      the GPU attend (bench/gpu.c): exact vs copy bandwidth, SubGen's
 *                        attend at 8x/16x/64x less memory, accuracy at equal memory.
 *   subkv-bench gpu-csr  the CSR attend over codes vs exact (bench/gpu_csr.c; also in gpu).
 *   subkv-bench gpu-refresh  refreshkv's steps on the GPU vs exact, equal-time comparison
 *                        (bench/gpu_refresh.c; also in gpu).
 *   subkv-bench multigpu the decode step's attention over several GPUs, NCCL vs MPI data path
 *                        (bench/multigpu.c; run under mpirun, one rank per GPU).
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
        "                          [--queries Q] [--group G] [--seed S] [--drift X] [--persist P]\n"
        "                          [--csv FILE] [--policy ...] [refreshkv knobs]\n"
        "Defaults: --n 4096,32768,262144,1048576 --d 128 --budget 524288 --dtype f16\n"
        "          --queries 8 --group 4 --drift 0.0003 --persist 0 --csv build/bench-sketch.csv\n"
        "--drift: random-walk std per token and coordinate of every key-cluster center.\n"
        "--persist: probability a query group aims at the previous group's cluster (each query\n"
        "group is one decode step; 0.9 gives topics of about 10 steps).\n"
        "Budget is per KV head for sinkwin, h2o and subgen, and sizes refreshkv's partial cache\n"
        "(its full store is host memory on top); exact holds everything. With refreshkv in the\n"
        "run, h2o@eq-read and sinkwin@eq-read hold what refreshkv reads per step (equal time\n"
        "for a bandwidth-bound decode, the paper's comparison); sinkwin@eq-read-sg and\n"
        "subgen@eq-read-sg what refreshkv-subgen reads. refreshkv-subgen (full_store=subgen):\n"
        "the budget bounds the whole sketch (half partial cache, half SubGen store).\n");
    eval_cli_usage(f, 1);
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

/*
 * The equal-time rows: for each refreshkv entry that ran, other policies again with a budget
 * equal to the bytes that entry read per step on average (partial steps and its amortized
 * full steps), so each reads as much per decode step: h2o and sinkwin for refreshkv (the
 * paper's comparison), sinkwin and subgen-cluster for refreshkv-subgen. Appended to res
 * (cfgs/labels have room); rows that do not fit are left out.
 */
static int bench_equal_read(const eval_opts *o, skv_config *cfgs, const char **labels,
                            eval_result *res, int *np) {
    const int n0 = *np;
    for (int r = 0; r < n0; r++) {
        if (cfgs[r].policy != SKV_POLICY_REFRESHKV || res[r].status != SKV_OK) continue;
        const int sub = cfgs[r].full_store == SKV_FULL_SUBGEN;
        static const char *const names[2][2] = {{"h2o@eq-read", "sinkwin@eq-read"},
                                                {"sinkwin@eq-read-sg", "subgen@eq-read-sg"}};
        const skv_policy_id pol[2][2] = {{SKV_POLICY_H2O, SKV_POLICY_SINKWIN},
                                         {SKV_POLICY_SINKWIN, SKV_POLICY_SUBGEN}};
        const int base = *np;
        if (base + 2 > EVAL_MAX_LINEUP) break;
        for (int i = 0; i < 2; i++) {
            skv_config_default(&cfgs[base + i], pol[sub][i], cfgs[r].head_dim);
            cfgs[base + i].dtype = cfgs[r].dtype;
            cfgs[base + i].seed = cfgs[r].seed;
            cfgs[base + i].budget_bytes = (size_t)res[r].read_step;
            if (pol[sub][i] == SKV_POLICY_SUBGEN) cfgs[base + i].values = SKV_VALUES_CLUSTER;
            labels[base + i] = names[sub][i];
        }
        if (eval_run(o, cfgs + base, labels + base, 2, res + base) != 0) return -1;
        *np = base + 2;
    }
    return 0;
}

static int bench_sketch(int argc, char **argv) {
    size_t ns[16] = {4096, 32768, 262144, 1048576};
    int nn = 4, d = 128, queries = 8, group = 4;
    size_t budget = 512 * 1024;
    skv_dtype dtype = SKV_DTYPE_F16;
    uint64_t seed = 7;
    float drift = 0.0003f;
    double persist = 0.0;
    const char *csv = "build/bench-sketch.csv";
    eval_cli ecli;
    eval_cli_init(&ecli);
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
        const int eo = eval_cli_option(&ecli, a, v);
        if (eo < 0) {
            fprintf(stderr, "subkv-bench: bad value '%s' for %s\n", v, a);
            return 2;
        }
        if (eo > 0) continue;
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
        else if (!strcmp(a, "--persist"))
            persist = atof(v);
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
    if (d < 1 || d > 1024 || queries < 1 || group < 1 || group > 64 ||
        !(persist >= 0.0 && persist <= 1.0)) {
        fprintf(stderr, "subkv-bench: need 1 <= d <= 1024, queries >= 1, 1 <= group <= 64, "
                        "0 <= persist <= 1\n");
        return 2;
    }
    FILE *fc = fopen(csv, "w");
    if (!fc) {
        perror(csv);
        return 1;
    }
    printf("# subkv-bench sketch: CPU reference policies, d=%d, storage %s, budget %zu B/head, "
           "%d queries x %d heads, query persistence %g\n",
           d, skv_dtype_name(dtype), budget, queries, group, persist);
    printf("# workload: 64 clusters drifting %g/token/coordinate, topic phases of 4 clusters x "
           "8192 tokens, Pareto value norms (alpha 4); error = mean ||out - exact|| / ||exact|| "
           "(float64 exact)\n",
           drift);
    int rc = 0;
    for (int k = 0; k < nn; k++) {
        eval_opts o = {.n = ns[k],
                       .queries = queries,
                       .group = group,
                       .observe_every = 64,
                       .progress = 1,
                       .query_persist = persist};
        o.data = eval_workload(d, 64, 8192, drift, seed);
        skv_config cfgs[EVAL_MAX_LINEUP];
        const char *labels[EVAL_MAX_LINEUP];
        int np = eval_standard_lineup(d, dtype, budget, seed, cfgs, labels);
        np = eval_cli_apply(&ecli, cfgs, labels, np);
        if (np == 0) {
            fprintf(stderr, "subkv-bench: --policy '%s' matches nothing\n", ecli.policies);
            fclose(fc);
            return 2;
        }
        eval_result res[EVAL_MAX_LINEUP];
        if (eval_run(&o, cfgs, labels, np, res) != 0) {
            fprintf(stderr, "subkv-bench: out of memory at n=%zu\n", ns[k]);
            rc = 1;
            break;
        }
        if (bench_equal_read(&o, cfgs, labels, res, &np) != 0) {
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
    if (!strcmp(argv[1], "refresh")) return bench_refresh(argc - 2, argv + 2);
    if (!strcmp(argv[1], "gpu-csr")) return bench_gpu_csr(argc - 2, argv + 2);
    if (!strcmp(argv[1], "gpu-refresh")) return bench_gpu_refresh(argc - 2, argv + 2);
    if (!strcmp(argv[1], "multigpu")) return bench_multigpu(argc - 2, argv + 2);
    fprintf(stderr,
            "subkv-bench: unknown benchmark '%s' (known: sketch, gpu, gpu-csr, gpu-refresh, "
            "refresh, multigpu)\n",
            argv[1]);
    return 2;
}
