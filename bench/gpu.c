/*
 * gpu.c — `subkv-bench gpu`: the GPU attend on Llama-3-8B-like shapes (8 kv heads x 4
 * query heads, d = 128, float16), one layer, side by side in one run:
 *   - the device's copy bandwidth (bytes read + written), the ceiling for a decode step;
 *   - exact decode attention at each context and batch: time per step, achieved bandwidth
 *     and its fraction of the copy bandwidth;
 *   - SubGen's attend at entry lists 8x, 16x, 64x smaller than exact (its memory at those
 *     budgets) on the same data: time and speed-up over exact;
 *   - accuracy: one head of clustered synthetic data at --err-context tokens, SubGen (l2 and
 *     cluster) built on the CPU at those budgets, attended on the GPU, against the GPU's
 *     exact attend of the same keys and values (relative error of the outputs);
 *   - the CSR attend over codes (bench/gpu_csr.c) vs exact at 32K and 128K, batch 1 and 8;
 *   - refreshkv's partial and full steps with full_mem = device (bench/gpu_refresh.c) at the
 *     table's contexts, batch 1 and 8: the mean step at 5/10/20% full steps vs exact;
 *   - SubGen's append on the device vs the CPU (bench/gpu_append.c).
 * Prints '#' headers and a table; CSV to --csv. Without a GPU it says so and exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skv_cuda.h"
#include "skv_internal.h"
#include "bench.h"
#include "policy_eval.h"
#include "synth.h"

#define KVH 8
#define GQ 4
#define HD 128

/* Exact and subgen-sized attends over one big K/V allocation: timing table rows. */
static int time_shapes(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches, int nb,
                       double copy_gbps, FILE *csv) {
    skv_err err;
    size_t freeb = 0, maxbytes = 0;
    for (int i = 0; i < nc; i++)
        for (int j = 0; j < nb; j++) {
            size_t b = batches[j] * KVH * ctxs[i] * HD * 2 * 2;
            if (b > maxbytes) maxbytes = b;
        }
    /* allocate the largest set that fits in 80% of what the device has free */
    size_t dev_free = 0, dev_total = 0;
    if (bench_fail(skv_cuda_mem_info(&dev_free, &dev_total, &err), &err, "memory info")) return 1;
    size_t cap = maxbytes < dev_free / 10 * 8 ? maxbytes : dev_free / 10 * 8;
    void *K = NULL, *V = NULL;
    for (;;) {
        if (skv_cuda_malloc(&K, cap / 2, &err) == SKV_OK &&
            skv_cuda_malloc(&V, cap / 2, &err) == SKV_OK)
            break;
        skv_cuda_free(K);
        K = NULL;
        cap = cap / 4 * 3;
        if (cap < (64u << 20)) return bench_fail(SKV_ERR_NOMEM, &err, "no device memory for K/V");
    }
    freeb = cap;
    const size_t elems = cap / 4;
    if (bench_fail(skv_cuda_fill_random(K, elems, SKV_DTYPE_F16, 1, 1.0f, &err), &err, "fill K") ||
        bench_fail(skv_cuda_fill_random(V, elems, SKV_DTYPE_F16, 2, 1.0f, &err), &err, "fill V"))
        return 1;
    const size_t maxjobs = 32 * KVH;
    float *q = NULL, *out = NULL, *w = NULL;
    const size_t wn = elems / HD; /* weights for the largest entry list */
    if (bench_fail(skv_cuda_malloc((void **)&q, maxjobs * GQ * HD * sizeof(float), &err), &err,
                   "q") ||
        bench_fail(skv_cuda_malloc((void **)&out, maxjobs * GQ * (HD + 2) * sizeof(float), &err),
                   &err, "out") ||
        bench_fail(skv_cuda_malloc((void **)&w, wn * sizeof(float), &err), &err, "weights") ||
        bench_fail(skv_cuda_fill_random(q, maxjobs * GQ * HD, SKV_DTYPE_F32, 3, 0.09f, &err), &err,
                   "q") ||
        bench_fail(skv_cuda_fill_random(w, wn, SKV_DTYPE_F32, 4, 0.2f, &err), &err, "w"))
        return 1;
    skv_cuda_job *jobs = calloc(maxjobs, sizeof *jobs);
    printf("# %-8s %5s %6s %10s %9s %8s | %9s %7s %9s %7s %9s %7s\n", "context", "batch", "jobs",
           "exact_ms", "GB/s", "of_copy", "sg8x_ms", "x", "sg16x_ms", "x", "sg64x_ms", "x");
    for (int i = 0; i < nc; i++)
        for (int j = 0; j < nb; j++) {
            const size_t n = ctxs[i], njobs = batches[j] * KVH, row = HD * 2;
            if (njobs * n * row > freeb / 2) {
                printf("  %-8zu %5zu %6zu  does not fit in the %zu GiB allocated\n", n, batches[j],
                       njobs, freeb >> 30);
                continue;
            }
            float ms[4];
            const size_t div[4] = {1, 8, 16, 64};
            for (int v = 0; v < 4; v++) {
                const size_t ne = n / div[v];
                for (size_t k = 0; k < njobs; k++) {
                    const char *kb = (const char *)K + k * ne * row;
                    const char *vb = (const char *)V + k * ne * row;
                    jobs[k] = (skv_cuda_job){.k = kb,
                                             .v = vb,
                                             .a = v ? w : NULL,
                                             .b = v ? w : NULL,
                                             .n = ne,
                                             .q = q + k * GQ * HD,
                                             .out = out + k * GQ * (HD + 2)};
                }
                if (bench_fail(skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0,
                                                    3, 20, &ms[v], &err),
                               &err, "attend"))
                    return 1;
            }
            const double bytes = (double)njobs * n * row * 2, gbps = bytes / (ms[0] * 1e-3) / 1e9;
            printf("  %-8zu %5zu %6zu %10.4f %9.1f %8.3f | %9.4f %7.1f %9.4f %7.1f %9.4f %7.1f\n",
                   n, batches[j], njobs, ms[0], gbps, gbps / copy_gbps, ms[1], ms[0] / ms[1], ms[2],
                   ms[0] / ms[2], ms[3], ms[0] / ms[3]);
            if (csv)
                fprintf(csv, "time,%zu,%zu,%.5f,%.1f,%.4f,%.5f,%.5f,%.5f\n", n, batches[j], ms[0],
                        gbps, gbps / copy_gbps, ms[1], ms[2], ms[3]);
            fflush(stdout);
        }
    free(jobs);
    skv_cuda_free(K), skv_cuda_free(V), skv_cuda_free(q), skv_cuda_free(out), skv_cuda_free(w);
    return 0;
}

/* GPU attend of one sketch's entries for GQ queries; outputs o/l into out[GQ][HD]. */
static int gpu_entries(skv_cuda_ctx *ctx, const skv_entries *e, const float *qs, int weighted,
                       float *outp) {
    skv_err err;
    void *k = NULL, *v = NULL, *q = NULL, *o = NULL;
    float *a = NULL, *b = NULL;
    const size_t rb = e->n * HD * 2;
    float part[GQ * (HD + 2)];
    int rc = bench_fail(skv_cuda_malloc(&k, rb, &err), &err, "k") ||
             bench_fail(skv_cuda_malloc(&v, rb, &err), &err, "v") ||
             bench_fail(skv_cuda_malloc(&q, GQ * HD * 4, &err), &err, "q") ||
             bench_fail(skv_cuda_malloc(&o, sizeof part, &err), &err, "o") ||
             bench_fail(skv_cuda_upload(k, e->k, rb, &err), &err, "k") ||
             bench_fail(skv_cuda_upload(v, e->v, rb, &err), &err, "v") ||
             bench_fail(skv_cuda_upload(q, qs, GQ * HD * 4, &err), &err, "q");
    if (!rc && weighted)
        rc = bench_fail(skv_cuda_malloc((void **)&a, e->n * 4, &err), &err, "a") ||
             bench_fail(skv_cuda_malloc((void **)&b, e->n * 4, &err), &err, "b") ||
             bench_fail(skv_cuda_upload(a, e->a, e->n * 4, &err), &err, "a") ||
             bench_fail(skv_cuda_upload(b, e->b, e->n * 4, &err), &err, "b");
    skv_cuda_job job = {.k = k, .v = v, .a = a, .b = b, .n = e->n, .q = q, .out = o};
    if (!rc)
        rc = bench_fail(skv_cuda_attend(ctx, &job, 1, HD, GQ, SKV_DTYPE_F16, 0, &err), &err,
                        "attend") ||
             bench_fail(skv_cuda_sync(ctx, &err), &err, "sync") ||
             bench_fail(skv_cuda_download(part, o, sizeof part, &err), &err, "download");
    for (int h = 0; !rc && h < GQ; h++)
        skv_partial_output((const skv_partial *)(part + h * (HD + 2)), HD, outp + h * HD);
    skv_cuda_free(k), skv_cuda_free(v), skv_cuda_free(q), skv_cuda_free(o);
    skv_cuda_free(a), skv_cuda_free(b);
    return rc;
}

static double rel(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (double)(a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Accuracy at equal memory on one head of clustered data (SubGen sketches built on the CPU). */
static int accuracy(skv_cuda_ctx *ctx, size_t n, FILE *csv) {
    synth_stream_cfg sc = eval_workload(HD, 64, 8192, 0.0003f, 11);
    synth_stream *st = synth_stream_create(&sc);
    float *K = malloc(n * HD * sizeof(float)), *V = malloc(n * HD * sizeof(float));
    int *cl = malloc(n * sizeof(int));
    if (!st || !K || !V || !cl) return 1;
    for (size_t t = 0; t < n; t++) {
        synth_stream_next(st, K + t * HD, V + t * HD, 1);
        cl[t] = synth_stream_last_cluster(st);
    }
    enum { NQ = 8 };
    float qs[NQ][GQ * HD], ref[NQ][GQ * HD], got[GQ * HD];
    synth_rng r;
    synth_rng_seed(&r, 5);
    skv_err err;
    skv_entries e = {0};
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, HD);
    c.dtype = SKV_DTYPE_F16;
    skv_sketch *ex = NULL;
    if (bench_fail(skv_sketch_create(&c, &ex, &err), &err, "exact") ||
        bench_fail(skv_sketch_append(ex, K, V, n, HD, &err), &err, "exact append") ||
        bench_fail(skv_sketch_entries(ex, &e, &err), &err, "entries"))
        return 1;
    const size_t exact_bytes = skv_sketch_bytes(ex);
    for (int i = 0; i < NQ; i++) {
        const int target = cl[(size_t)(synth_rng_uniform(&r) * (double)n)];
        for (int h = 0; h < GQ; h++) {
            synth_stream_query(st, target, 1.0f, 0.3f, qs[i] + h * HD);
            for (int j = 0; j < HD; j++) qs[i][h * HD + j] /= sqrtf((float)HD);
        }
        if (gpu_entries(ctx, &e, qs[i], 0, ref[i])) return 1;
    }
    skv_sketch_destroy(ex);
    printf("# accuracy: one head, %zu clustered tokens (64 drifting clusters, topic phases), %d "
           "query groups x %d heads; exact holds %zu B (f16)\n",
           n, NQ, GQ, exact_bytes);
    printf("# %-15s %6s %10s %12s %10s %10s\n", "policy", "memory", "bytes", "append_ns",
           "err_mean", "err_max");
    const size_t div[3] = {8, 16, 64};
    const char *names[3] = {"subgen-l2", "subgen-cluster", "sinkwin"};
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < 3; k++) {
            skv_config_default(&c, p == 2 ? SKV_POLICY_SINKWIN : SKV_POLICY_SUBGEN, HD);
            c.dtype = SKV_DTYPE_F16;
            c.values = p == 1 ? SKV_VALUES_CLUSTER : SKV_VALUES_L2;
            c.budget_bytes = exact_bytes / div[k];
            skv_sketch *s = NULL;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (bench_fail(skv_sketch_create(&c, &s, &err), &err, "create") ||
                bench_fail(skv_sketch_append(s, K, V, n, HD, &err), &err, "append"))
                return 1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            const double ns =
                ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                (double)n;
            if (bench_fail(skv_sketch_entries(s, &e, &err), &err, "entries")) return 1;
            double sum = 0, mx = 0;
            for (int i = 0; i < NQ; i++) {
                if (gpu_entries(ctx, &e, qs[i], p < 2, got)) return 1;
                for (int h = 0; h < GQ; h++) {
                    double x = rel(got + h * HD, ref[i] + h * HD, HD);
                    sum += x;
                    if (x > mx) mx = x;
                }
            }
            printf("  %-15s %5zux %10zu %12.1f %10.4f %10.4f\n", names[p], div[k],
                   skv_sketch_bytes(s), ns, sum / (NQ * GQ), mx);
            if (csv)
                fprintf(csv, "accuracy,%s,%zu,%zu,%.1f,%.5f,%.5f\n", names[p], div[k],
                        skv_sketch_bytes(s), ns, sum / (NQ * GQ), mx);
            skv_sketch_destroy(s);
        }
    skv_entries_free(&e);
    synth_stream_destroy(st);
    free(K), free(V), free(cl);
    return 0;
}

static const char usage[] =
    "usage: subkv-bench gpu [--contexts N,...] [--batches B,...] [--err-context N] "
    "[--append-context N] [--append-prefill N] [--csv FILE]\nDefaults: --contexts "
    "32K,128K,512K,1M --batches 1,8,32 --err-context 128K --append-context 32K "
    "--append-prefill 4096 --csv build/bench-gpu.csv\n";

int bench_gpu(int argc, char **argv) {
    bench_gpu_opts o = {.ctxs = {32768, 131072, 524288, 1048576},
                        .batches = {1, 8, 32},
                        .nc = 4,
                        .nb = 3,
                        .csv = "build/bench-gpu.csv"};
    size_t err_ctx = 131072, app_ctx = 32768, app_prefill = 4096;
    const bench_size_opt extra[] = {{"--err-context", &err_ctx},
                                    {"--append-context", &app_ctx},
                                    {"--append-prefill", &app_prefill}};
    const int stop = bench_gpu_start("gpu", usage, argc, argv, &o, extra, 3);
    if (stop >= 0) return stop;
    skv_cuda_ctx *ctx = o.ctx;
    skv_err err;
    double copy = 0;
    if (bench_fail(skv_cuda_copy_bandwidth(ctx, (size_t)2 << 30, &copy, &err), &err, "copy")) {
        skv_cuda_ctx_destroy(ctx);
        return 1;
    }
    FILE *csv = fopen(o.csv, "w");
    printf("# subkv-bench gpu on %s: %d kv heads x %d q heads, d %d, f16, one layer\n", o.desc, KVH,
           GQ, HD);
    printf("# device-to-device copy: %.1f GB/s (read + written); times are medians of 20 "
           "launches (device events); sgNx = SubGen attend over N-times fewer (weighted) entries\n",
           copy);
    int rc = time_shapes(ctx, o.ctxs, o.nc, o.batches, o.nb, copy, csv);
    const size_t csr_ctxs[2] = {32768, 131072}, csr_batches[2] = {1, 8};
    if (!rc) rc = bench_gpu_csr_table(ctx, csr_ctxs, 2, csr_batches, 2, csv);
    if (!rc) rc = bench_gpu_refresh_table(ctx, o.ctxs, o.nc, csr_batches, 2, csv);
    if (!rc) rc = accuracy(ctx, err_ctx, csv);
    if (!rc) rc = bench_gpu_append(ctx, o.batches, o.nb, app_ctx, app_prefill, csv);
    if (csv) fclose(csv);
    skv_cuda_ctx_destroy(ctx);
    return rc;
}
