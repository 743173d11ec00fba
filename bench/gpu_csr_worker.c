/*
 * gpu_csr_worker.c — the worker-level csr decode step on the GPU (worker/gpu_csr.c), part of
 * `subkv-bench gpu-csr`: 8 kv heads x batch csr sketches (d 128, f16, s 8, N 1024 atoms,
 * 4 sinks, a window of 64), each first filled with `context` random tokens on the CPU
 * (matching pursuit: this prefill takes a while), then STEPS decode steps. A step appends
 * one token to every sketch on the CPU (coding the token that leaves the window) and runs
 * skv_gpu_finish for 4 queries per sketch: the upload of the new codes and the changed
 * exact rows, one exact attend over sinks + window, one CSR attend over the codes, the sync
 * and the merge. Columns: the CPU append, skv_gpu_finish (medians), bytes uploaded per step
 * against what re-uploading every decoded row (the generic mirror) would send, and the
 * mirrors' device bytes against exact's K + V.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "csr_dict.h"
#include "gpu_csr.h"
#include "synth.h"

enum { W_KVH = 8, W_GQ = 4, W_HD = 128, W_S = 8, W_ATOMS = 1024, W_STEPS = 21 };

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One run of W_STEPS decode steps over the sketches (coding on the GPU with gpu_code):
 * medians over steps 1.. (step 0 may make the mirrors) of the append and skv_gpu_finish
 * (seconds) and the bytes uploaded per step. */
static int run_steps(skv_gpu *gpu, skv_sketch **sk, skv_table_entry *te, skv_gpu_item *items,
                     size_t ns, synth_rng *r, float *K, float *V, float *Q, int gpu_code,
                     double *app, double *fin, double *per_step) {
    double t_app[W_STEPS], t_fin[W_STEPS];
    uint64_t up0 = 0, up1 = 0;
    skv_err err = {0};
    int rc = 0;
    for (int step = 0; !rc && step < W_STEPS; step++) {
        synth_fill_normal(r, K, W_HD, 1.0f);
        synth_fill_normal(r, V, W_HD, 1.0f);
        synth_fill_normal(r, Q, ns * W_GQ * W_HD, 1.0f);
        const double t0 = bench_now_s();
        for (size_t i = 0; !rc && i < ns; i++)
            rc = gpu_code
                     ? bench_fail(skv_gpu_csr_append(gpu, &te[i], K, V, 1, &err), &err,
                                  "GPU-coded append")
                     : bench_fail(skv_sketch_append(sk[i], K, V, 1, W_HD, &err), &err, "append");
        if (!rc && gpu_code)
            rc = bench_fail(skv_gpu_csr_finish_codes(gpu, &err), &err, "GPU coding");
        const double t1 = bench_now_s();
        if (!rc) rc = bench_fail(skv_gpu_finish(gpu, items, ns, W_HD, W_GQ, &err), &err, "finish");
        t_app[step] = t1 - t0, t_fin[step] = bench_now_s() - t1;
        uint64_t up = 0;
        for (size_t i = 0; !rc && i < ns; i++) {
            skv_gpu_csr_stats st;
            skv_gpu_csr_mirror_stats(skv_mirror_csr(te[i].mirror), &st);
            up += st.uploaded_bytes;
        }
        if (step == 0) up0 = up; /* the first step may upload everything */
        up1 = up;
    }
    if (rc) return rc;
    qsort(t_app + 1, W_STEPS - 1, sizeof(double), cmp_double);
    qsort(t_fin + 1, W_STEPS - 1, sizeof(double), cmp_double);
    *app = t_app[1 + (W_STEPS - 1) / 2], *fin = t_fin[1 + (W_STEPS - 1) / 2];
    *per_step = (double)(up1 - up0) / (W_STEPS - 1);
    return 0;
}

int bench_gpu_csr_worker(size_t context, size_t batch, FILE *csv) {
    const size_t ns = W_KVH * batch, qn = W_GQ * W_HD, on = W_GQ * (W_HD + 2);
    skv_err err = {0};
    skv_gpu gpu;
    if (bench_fail(skv_gpu_init(&gpu, 0, &err), &err, "worker GPU")) return 1;
    skv_dict *dict = NULL;
    int rc = bench_fail(skv_dict_new(W_HD, W_ATOMS, 1, 1, &dict, &err), &err, "dictionary");
    synth_rng r;
    synth_rng_seed(&r, 21);
    if (!rc) { /* atoms of about unit norm: N(0, 1/d) entries */
        synth_fill_normal(&r, dict->data, (size_t)2 * W_ATOMS * W_HD, 0.088f);
        rc = bench_fail(skv_dict_finish(dict, &err), &err, "dictionary");
    }
    skv_sketch **sk = calloc(ns, sizeof *sk);
    skv_table_entry *te = calloc(ns, sizeof *te);
    skv_gpu_item *items = calloc(ns, sizeof *items);
    float *K = malloc(context * W_HD * sizeof(float)), *V = malloc(context * W_HD * sizeof(float));
    float *Q = malloc(ns * qn * sizeof(float)), *out = malloc(ns * on * sizeof(float));
    if (!rc && (!sk || !te || !items || !K || !V || !Q || !out))
        rc = bench_fail(SKV_ERR_NOMEM, &(skv_err){.msg = "host buffers"}, "worker step");
    for (size_t i = 0; !rc && i < ns; i++) {
        skv_config c;
        skv_config_default(&c, SKV_POLICY_CSR, W_HD);
        c.dtype = SKV_DTYPE_F16, c.sparsity = W_S, c.sinks = 4, c.window = 64, c.dict = dict;
        c.head = (uint32_t)i;
        synth_fill_normal(&r, K, context * W_HD, 1.0f);
        synth_fill_normal(&r, V, context * W_HD, 1.0f);
        rc = bench_fail(skv_sketch_create(&c, &sk[i], &err), &err, "csr sketch") ||
             bench_fail(skv_sketch_append(sk[i], K, V, context, W_HD, &err), &err, "prefill");
        te[i] = (skv_table_entry){.sketch = sk[i]};
        items[i] = (skv_gpu_item){.entry = &te[i], .q = Q + i * qn, .out = out + i * on};
    }
    double app[2] = {0}, fin[2] = {0}, up[2] = {0};
    for (int gc = 0; !rc && gc < 2; gc++) /* CPU coding, then GPU coding */
        rc = run_steps(&gpu, sk, te, items, ns, &r, K, V, Q, gc, &app[gc], &fin[gc], &up[gc]);
    if (!rc) {
        skv_gpu_csr_stats st;
        size_t dev = 0;
        uint64_t gpu_coded = 0;
        for (size_t i = 0; i < ns; i++) {
            skv_gpu_csr_mirror_stats(skv_mirror_csr(te[i].mirror), &st);
            dev += st.device_bytes;
            gpu_coded += st.gpu_coded;
        }
        const double tokens = (double)context + 2 * W_STEPS,
                     rows = (double)ns * tokens * 2 * W_HD * 2;
        printf("# worker-level csr step (worker/gpu_csr.c): %zu csr sketches (%d kv heads x batch "
               "%zu) of %zu tokens, d %d f16, s %d, N %d; one token appended to each (the token "
               "leaving the window coded on the CPU, then on the GPU: %llu tokens GPU-coded), "
               "then skv_gpu_finish (upload of new codes + changed exact rows, exact + CSR "
               "attend, sync, merge); medians of %d steps each\n",
               ns, W_KVH, batch, context, W_HD, W_S, W_ATOMS, (unsigned long long)gpu_coded,
               W_STEPS - 1);
        printf("# %5s %8s %6s | %9s %9s | %10s %12s | %10s %10s\n", "batch", "context", "coding",
               "append_ms", "finish_ms", "up_B/step", "decoded_B", "device_MB", "exact_MB");
        for (int gc = 0; gc < 2; gc++) {
            printf("  %5zu %8zu %6s | %9.3f %9.3f | %10.0f %12.0f | %10.2f %10.2f\n", batch,
                   context, gc ? "gpu" : "cpu", app[gc] * 1e3, fin[gc] * 1e3, up[gc], rows,
                   (double)dev / 1e6, rows / 1e6);
            if (csv)
                fprintf(csv, "%s,%zu,%zu,%.6f,%.6f,%.0f,%.0f,%zu\n",
                        gc ? "csr_worker_gpucode" : "csr_worker", batch, context, app[gc], fin[gc],
                        up[gc], rows, dev);
        }
    }
    for (size_t i = 0; te && i < ns; i++) skv_mirror_free(te[i].mirror);
    skv_gpu_fini(&gpu);
    for (size_t i = 0; sk && i < ns; i++) skv_sketch_destroy(sk[i]);
    skv_dict_free(dict);
    free(sk), free(te), free(items), free(K), free(V), free(Q), free(out);
    return rc;
}
