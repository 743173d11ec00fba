/*
 * subkv-demo — stream a synthetic long context through every policy and print what each
 * holds and how far its attention output is from exact float64 attention.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_eval.h"
#include "skv_backend.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: subkv-demo [--n TOKENS] [--d HEAD_DIM] [--budget BYTES] [--dtype f32|f16|bf16]\n"
           "                  [--seed N] [--policy ...] [refreshkv knobs]\n"
           "Streams a synthetic long context (drifting key clusters, heavy-tailed values)\n"
           "through exact, sinkwin, h2o, subgen and refreshkv at one memory budget per head\n"
           "(refreshkv: its partial cache; its full store is host memory on top), then\n"
           "prints bytes held, speed, and relative error against float64 exact attention.\n"
           "Defaults: --n 32768 --d 128 --budget 262144 --dtype f16.\n");
    eval_cli_usage(f, 1);
}

int main(int argc, char **argv) {
    size_t n = 32768, budget = 256 * 1024;
    int d = 128;
    skv_dtype dtype = SKV_DTYPE_F16;
    uint64_t seed = 42;
    eval_cli ecli;
    eval_cli_init(&ecli);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const int eo = eval_cli_option(&ecli, a, v);
        if (eo < 0) {
            fprintf(stderr, "subkv-demo: bad or missing value for '%s'\n", a);
            return 2;
        }
        if (eo > 0) {
            i++;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (v && !strcmp(a, "--n")) {
            n = strtoull(v, NULL, 0), i++;
        } else if (v && !strcmp(a, "--d")) {
            d = atoi(v), i++;
        } else if (v && !strcmp(a, "--budget")) {
            budget = strtoull(v, NULL, 0), i++;
        } else if (v && !strcmp(a, "--seed")) {
            seed = strtoull(v, NULL, 0), i++;
        } else if (v && !strcmp(a, "--dtype")) {
            int t = skv_dtype_parse(v);
            if (t < 0) {
                fprintf(stderr, "subkv-demo: unknown dtype '%s' (f32, f16, bf16)\n", v);
                return 2;
            }
            dtype = (skv_dtype)t, i++;
        } else {
            fprintf(stderr, "subkv-demo: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (n < 1 || d < 1 || d > 1024) {
        fprintf(stderr, "subkv-demo: need --n >= 1 and 1 <= --d <= 1024\n");
        return 2;
    }
    skv_backend_info bi;
    char desc[256];
    skv_backend_select(0, &bi);
    skv_backend_describe(&bi, desc, sizeof desc);
    printf("# subkv demo: backend %s (policies run on the CPU reference in this demo)\n", desc);
    printf("# n=%zu tokens, d=%d, storage %s, budget %zu B per head (exact: unbounded)\n", n, d,
           skv_dtype_name(dtype), budget);

    eval_opts o = {.n = n, .queries = 16, .group = 4, .observe_every = 64, .progress = 1};
    o.data = eval_workload(d, 32, 2048, 0.002f, seed);
    skv_config cfgs[EVAL_MAX_LINEUP];
    const char *labels[EVAL_MAX_LINEUP];
    int np = eval_standard_lineup(d, dtype, budget, seed, cfgs, labels);
    np = eval_cli_apply(&ecli, cfgs, labels, np);
    if (np == 0) {
        fprintf(stderr, "subkv-demo: --policy '%s' matches nothing\n", ecli.policies);
        return 2;
    }
    eval_result res[EVAL_MAX_LINEUP];
    if (eval_run(&o, cfgs, labels, np, res) != 0) {
        fprintf(stderr, "subkv-demo: out of memory for %zu tokens\n", n);
        return 1;
    }
    eval_print_table(stdout, n, res, np);
    for (int p = 0; p < np; p++)
        if (res[p].status != SKV_OK) return 1;
    return 0;
}
