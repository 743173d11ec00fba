/*
 * gpu_append.c — `subkv-bench gpu` part 3: SubGen's append on the device (cuda/skv_dsub.h)
 * against the CPU append, side by side in one run. Llama-3-8B-like shapes: one decode step
 * appends one token to every (layer, kv head, sequence) sketch: 32 x 8 x batch sketches,
 * float16, d = 128, at a budget of 1/16 of exact at --append-context tokens. Each sketch is
 * first filled with --append-prefill tokens (one launch, tokens sequential per sketch) of
 * the standard clustered workload (tools/policy_eval.h: 64 drifting clusters, topic phases;
 * every sketch takes the same tokens, its own coins), then:
 *   - prefill: tokens per second of that launch;
 *   - step: median time of one launch appending one token to every sketch;
 *   - cpu_step: the CPU append of the same token to the same number of CPU sketches
 *     (single thread, batch 1 only; larger batches scale linearly on the CPU);
 *   - check: sketch 0 copied back must save to the same bytes as its CPU twin.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "skv_dsub.h"
#include "policy_eval.h"
#include "skv_internal.h"
#include "synth.h"

#define LAYERS 32
#define KVH 8
#define HD 128

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void config_for(skv_config *c, size_t context, uint32_t layer, uint32_t head, uint64_t seq) {
    skv_config_default(c, SKV_POLICY_SUBGEN, HD);
    c->dtype = SKV_DTYPE_F16;
    c->values = SKV_VALUES_L2; /* the l2 slots: the costlier append (one coin per slot) */
    c->budget_bytes = context * HD * 2 * 2 / 16;
    c->seed = 7;
    c->seq_id = seq;
    c->layer = layer;
    c->head = head;
}

/* One batch size: returns 0, prints one table row. */
static int one_batch(skv_cuda_ctx *ctx, size_t batch, size_t context, size_t prefill,
                     const float *dK, const float *dV, const float *hK, const float *hV,
                     FILE *csv) {
    const size_t n = LAYERS * KVH * batch;
    skv_err err;
    skv_dsub **dev = calloc(n, sizeof *dev);
    skv_dsub_op *ops = calloc(n, sizeof *ops);
    skv_sketch *proto = NULL, *twin = NULL;
    int rc = 1;
    if (!dev || !ops) goto done;
    size_t dev_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        skv_config c;
        config_for(&c, context, (uint32_t)(i / KVH % LAYERS), (uint32_t)(i % KVH),
                   i / (KVH * LAYERS));
        if (bench_fail(skv_sketch_create(&c, &proto, &err), &err, "create") ||
            bench_fail(skv_dsub_create(ctx, proto, &dev[i], &err), &err, "device create"))
            goto done;
        dev_bytes += skv_dsub_bytes(dev[i]);
        if (i == 0) {
            twin = proto; /* sketch 0's CPU twin, for the check */
        } else {
            skv_sketch_destroy(proto);
        }
        proto = NULL;
        ops[i] = (skv_dsub_op){
            .desc = *skv_dsub_descriptor(dev[i]), .k = dK, .v = dV, .n = (uint32_t)prefill};
    }
    double t0 = bench_now_s();
    if (bench_fail(skv_dsub_launch(ctx, ops, (int)n, &err), &err, "prefill") ||
        bench_fail(skv_cuda_sync(ctx, &err), &err, "prefill sync"))
        goto done;
    const double prefill_s = bench_now_s() - t0;
    enum { ITERS = 21 };
    double ms[ITERS];
    for (int it = 0; it < ITERS; it++) {
        for (size_t i = 0; i < n; i++) {
            ops[i].k = dK + (prefill + (size_t)it) * HD;
            ops[i].v = dV + (prefill + (size_t)it) * HD;
            ops[i].n = 1;
        }
        t0 = bench_now_s();
        if (bench_fail(skv_dsub_launch(ctx, ops, (int)n, &err), &err, "step") ||
            bench_fail(skv_cuda_sync(ctx, &err), &err, "step sync"))
            goto done;
        ms[it] = (bench_now_s() - t0) * 1e3;
    }
    qsort(ms, ITERS, sizeof ms[0], cmp_double);
    /* the check: sketch 0 on the CPU, same tokens, same bytes */
    if (bench_fail(skv_sketch_append(twin, hK, hV, prefill + ITERS, HD, &err), &err, "cpu append"))
        goto done;
    skv_config c0;
    config_for(&c0, context, 0, 0, 0);
    if (bench_fail(skv_sketch_create(&c0, &proto, &err), &err, "create") ||
        bench_fail(skv_dsub_pull(ctx, dev[0], proto, &err), &err, "pull"))
        goto done;
    skv_buf a = {0}, b = {0};
    int same = skv_sketch_save(twin, &a, &err) == SKV_OK &&
               skv_sketch_save(proto, &b, &err) == SKV_OK && a.len == b.len &&
               memcmp(a.data, b.data, a.len) == 0;
    free(a.data), free(b.data);
    skv_stats stats;
    skv_sketch_stats(twin, &stats);
    /* the CPU side of the comparison: one token into n CPU sketches (batch 1 only) */
    double cpu_ms = NAN;
    if (batch == 1) {
        skv_sketch **cs = calloc(n, sizeof *cs);
        if (!cs) goto done;
        for (size_t i = 0; i < n && rc; i++) {
            skv_config c;
            config_for(&c, context, (uint32_t)(i / KVH % LAYERS), (uint32_t)(i % KVH), 0);
            if (skv_sketch_create(&c, &cs[i], &err) != SKV_OK ||
                skv_sketch_append(cs[i], hK, hV, prefill, HD, &err) != SKV_OK)
                break;
        }
        t0 = bench_now_s();
        for (size_t i = 0; i < n && cs[i]; i++)
            (void)skv_sketch_append(cs[i], hK + prefill * HD, hV + prefill * HD, 1, HD, &err);
        cpu_ms = (bench_now_s() - t0) * 1e3;
        for (size_t i = 0; i < n; i++) skv_sketch_destroy(cs[i]);
        free(cs);
    }
    printf("  %5zu %7zu %9.2f %10.1f %10.3f %10.3f %10.2f %8d %6s\n", batch, n,
           (double)dev_bytes / (1 << 20), (double)(n * prefill) / prefill_s / 1e6, ms[ITERS / 2],
           ms[ITERS - 1], cpu_ms, stats.clusters, same ? "equal" : "DIFFER");
    if (csv)
        fprintf(csv, "append,%zu,%zu,%zu,%.4f,%.4f,%.4f,%.4f,%d,%d\n", batch, n, dev_bytes,
                (double)(n * prefill) / prefill_s, ms[ITERS / 2], ms[ITERS - 1], cpu_ms,
                stats.clusters, same);
    rc = same ? 0 : 1;
    if (!same) fprintf(stderr, "subkv-bench gpu append: the device state differs from the CPU\n");
done:
    for (size_t i = 0; dev && i < n; i++) skv_dsub_destroy(ctx, dev[i]);
    skv_sketch_destroy(proto);
    skv_sketch_destroy(twin);
    free(dev), free(ops);
    return rc;
}

int bench_gpu_append(skv_cuda_ctx *ctx, const size_t *batches, int nb, size_t context,
                     size_t prefill, FILE *csv) {
    enum { EXTRA = 32 };
    const size_t rows = prefill + EXTRA;
    skv_err err;
    float *dK = NULL, *dV = NULL;
    float *hK = malloc(rows * HD * sizeof(float)), *hV = malloc(rows * HD * sizeof(float));
    int rc = 1;
    synth_stream_cfg sc = eval_workload(HD, 64, 8192, 0.0003f, 11);
    synth_stream *st = synth_stream_create(&sc);
    if (!hK || !hV || !st) goto done;
    synth_stream_next(st, hK, hV, rows);
    synth_stream_destroy(st);
    if (bench_fail(skv_cuda_malloc((void **)&dK, rows * HD * sizeof(float), &err), &err, "K") ||
        bench_fail(skv_cuda_malloc((void **)&dV, rows * HD * sizeof(float), &err), &err, "V") ||
        bench_fail(skv_cuda_upload(dK, hK, rows * HD * sizeof(float), &err), &err, "upload") ||
        bench_fail(skv_cuda_upload(dV, hV, rows * HD * sizeof(float), &err), &err, "upload"))
        goto done;
    skv_config c0, c;
    config_for(&c0, context, 0, 0, 0);
    if (bench_fail(skv_config_resolve(&c0, &c, &err), &err, "config")) goto done;
    printf("# GPU append (SubGen l2, f16, d %d, budget %zu B = 1/16 of exact at %zu tokens: %d "
           "clusters x %d samples, %d value slots, window %d); %zu clustered tokens prefilled per "
           "sketch, then 21 one-token steps (median, max); cpu_step: one thread\n",
           HD, c.budget_bytes, context, c.max_clusters, c.samples, c.value_slots, c.window,
           prefill);
    printf("# %5s %7s %9s %10s %10s %10s %10s %8s %6s\n", "batch", "sketches", "dev_MiB",
           "prefill_Mtok/s", "step_ms", "step_max", "cpu_step_ms", "clusters", "check");
    rc = 0;
    for (int i = 0; i < nb && !rc; i++)
        rc = one_batch(ctx, batches[i], context, prefill, dK, dV, hK, hV, csv);
done:
    skv_cuda_free(dK), skv_cuda_free(dV);
    free(hK), free(hV);
    return rc;
}
