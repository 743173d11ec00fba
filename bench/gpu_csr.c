/*
 * gpu_csr.c — the CSR attend on the GPU (cuda/skv_csr_cuda.h) against the exact attend at the
 * same context, Llama-3-8B-like shapes (8 kv heads x 4 query heads, d = 128, one layer):
 * part of `subkv-bench gpu`, or alone as `subkv-bench gpu-csr`.
 *
 * For each context and batch: the exact attend over float16 K and V (4 d bytes a token),
 * then the CSR attend over codes of s = 8 and 16 (8 s bytes a token) with N = 1024 and
 * 4096 atoms (one dictionary group of 8 N d bytes, float32). Codes, atoms and queries are
 * random (device-side fills): the timing does not depend on what the codes say. Columns:
 * time per step (median of 20 launches), bytes a step must read (codes + dictionary vs
 * keys + values; scratch traffic not counted), the effective bandwidth (those bytes / time)
 * and the speed-up over exact. Then the GPU encoding of one decode step's new tokens
 * (skv_csr_cuda_encode) against the CPU's skv_mp_encode.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "csr_dict.h"
#include "skv_csr_cuda.h"
#include "skv_cuda.h"
#include "synth.h"

#define KVH 8
#define GQ 4
#define HD 128

/* Exact attend of njobs jobs of n tokens: median ms (K, V allocated and freed here). */
static int time_exact(skv_cuda_ctx *ctx, size_t njobs, size_t n, float *q, float *out, float *ms) {
    skv_err err;
    void *K = NULL, *V = NULL;
    const size_t row = HD * 2, bytes = njobs * n * row;
    skv_cuda_job *jobs = calloc(njobs, sizeof *jobs);
    int rc =
        !jobs || bench_fail(skv_cuda_malloc(&K, bytes, &err), &err, "exact K") ||
        bench_fail(skv_cuda_malloc(&V, bytes, &err), &err, "exact V") ||
        bench_fail(skv_cuda_fill_random(K, bytes / 2, SKV_DTYPE_F16, 1, 1.0f, &err), &err, "K") ||
        bench_fail(skv_cuda_fill_random(V, bytes / 2, SKV_DTYPE_F16, 2, 1.0f, &err), &err, "V");
    for (size_t k = 0; !rc && k < njobs; k++)
        jobs[k] = (skv_cuda_job){.k = (const char *)K + k * n * row,
                                 .v = (const char *)V + k * n * row,
                                 .n = n,
                                 .q = q + k * GQ * HD,
                                 .out = out + k * GQ * (HD + 2)};
    if (!rc)
        rc = bench_fail(
            skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, 3, 20, ms, &err),
            &err, "exact attend");
    skv_cuda_free(K), skv_cuda_free(V);
    free(jobs);
    return rc;
}

/* CSR attend of njobs jobs of n coded tokens at sparsity s over `atoms` atoms: median ms. */
static int time_csr(skv_cuda_ctx *cc, size_t njobs, size_t n, int s, int atoms, const float *q,
                    float *out, float *ms) {
    skv_err err;
    uint16_t *idx = NULL, *coef = NULL;
    float *dk = NULL, *dv = NULL;
    const size_t codes = njobs * n * 2 * (size_t)s, ab = (size_t)atoms * HD;
    skv_csr_cuda_job *jobs = calloc(njobs, sizeof *jobs);
    /* unit-ish atoms (N(0, 1/d) entries) and coefficients of a unit key's size */
    int rc =
        !jobs || bench_fail(skv_cuda_malloc((void **)&idx, codes * 2, &err), &err, "idx") ||
        bench_fail(skv_cuda_malloc((void **)&coef, codes * 2, &err), &err, "coef") ||
        bench_fail(skv_cuda_malloc((void **)&dk, ab * 4, &err), &err, "dk") ||
        bench_fail(skv_cuda_malloc((void **)&dv, ab * 4, &err), &err, "dv") ||
        bench_fail(skv_csr_cuda_fill_random_codes(idx, coef, njobs * n, s, atoms, 7, 1.0f, &err),
                   &err, "codes") ||
        bench_fail(skv_cuda_fill_random(dk, ab, SKV_DTYPE_F32, 8, 0.088f, &err), &err, "dk") ||
        bench_fail(skv_cuda_fill_random(dv, ab, SKV_DTYPE_F32, 9, 0.088f, &err), &err, "dv");
    for (size_t k = 0; !rc && k < njobs; k++)
        jobs[k] = (skv_csr_cuda_job){idx + k * n * 2 * (size_t)s,
                                     coef + k * n * 2 * (size_t)s,
                                     n,
                                     dk,
                                     dv,
                                     dv + ab / 2,
                                     q + k * GQ * HD,
                                     out + k * GQ * (HD + 2)};
    if (!rc)
        rc = bench_fail(
            skv_csr_cuda_time_attend(cc, jobs, (int)njobs, HD, GQ, s, atoms, 0, 3, 20, ms, &err),
            &err, "csr attend");
    skv_cuda_free(idx), skv_cuda_free(coef), skv_cuda_free(dk), skv_cuda_free(dv);
    free(jobs);
    return rc;
}

/*
 * Encoding one decode step's new tokens: LAYERS layers, each its own dictionary, each a job of
 * KVH x batch new tokens (one per kv head and sequence: the caller packs the tokens that share
 * a dictionary). GPU: median wall time of launch + sync over 10 steps. CPU: skv_mp_encode of
 * the same token shapes, single thread, per token (times the step's token count).
 */
static int encode_row(skv_cuda_ctx *cc, size_t batch, int s, int atoms, FILE *csv) {
    enum { LAYERS = 32 };
    skv_err err;
    const size_t n = KVH * batch, ab = (size_t)atoms * HD;
    float *dict = NULL, *kv = NULL;
    uint16_t *codes = NULL;
    int rc =
        bench_fail(skv_cuda_malloc((void **)&dict, LAYERS * ab * 2 * 4, &err), &err, "dicts") ||
        bench_fail(skv_cuda_malloc((void **)&kv, LAYERS * n * HD * 2 * 4, &err), &err, "kv") ||
        bench_fail(skv_cuda_malloc((void **)&codes, LAYERS * n * 2 * (size_t)s * 2 * 2, &err), &err,
                   "codes") ||
        bench_fail(skv_cuda_fill_random(dict, LAYERS * ab * 2, SKV_DTYPE_F32, 11, 0.088f, &err),
                   &err, "dicts") ||
        bench_fail(skv_cuda_fill_random(kv, LAYERS * n * HD * 2, SKV_DTYPE_F32, 12, 1.0f, &err),
                   &err, "kv");
    skv_csr_cuda_enc_job jobs[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        const float *D = dict + (size_t)l * ab * 2;
        uint16_t *ci = codes + (size_t)l * n * 2 * s * 2;
        jobs[l] = (skv_csr_cuda_enc_job){kv + (size_t)l * n * HD * 2,
                                         kv + (size_t)l * n * HD * 2 + n * HD,
                                         n,
                                         D,
                                         D + ab,
                                         D + ab + ab / 2,
                                         ci,
                                         ci + n * 2 * s,
                                         NULL,
                                         NULL};
    }
    double t[10];
    for (int i = 0; !rc && i < 12; i++) {
        const double t0 = bench_now_s();
        rc =
            bench_fail(skv_csr_cuda_encode(cc, jobs, LAYERS, HD, s, atoms, &err), &err, "encode") ||
            bench_fail(skv_cuda_sync(cc, &err), &err, "encode sync");
        if (i >= 2) t[i - 2] = bench_now_s() - t0;
    }
    /* the CPU's per-token cost on the same shapes (host atoms and tokens, 64 tokens) */
    float *hd = malloc(ab * 2 * sizeof(float)), x[HD];
    uint16_t ix[2 * HD], cf[2 * HD];
    double cpu_tok = 0;
    if (!rc && hd) {
        synth_rng r;
        synth_rng_seed(&r, 13);
        synth_fill_normal(&r, hd, ab * 2, 0.088f);
        const double c0 = bench_now_s();
        for (int k = 0; k < 64; k++) {
            synth_fill_normal(&r, x, HD, 1.0f);
            skv_mp_encode(hd, atoms, HD, x, s, ix, cf, NULL);
            skv_mp_encode(hd + ab, atoms, HD / 2, x, (s + 1) / 2, ix + s, cf + s, NULL);
            skv_mp_encode(hd + ab + ab / 2, atoms, HD / 2, x + HD / 2, s / 2, ix + s + (s + 1) / 2,
                          cf + s + (s + 1) / 2, NULL);
        }
        cpu_tok = (bench_now_s() - c0) / 64;
    }
    if (!rc) {
        for (int i = 1; i < 10; i++) /* insertion sort: the median of 10 */
            for (int k = i; k > 0 && t[k] < t[k - 1]; k--) {
                const double tmp = t[k];
                t[k] = t[k - 1], t[k - 1] = tmp;
            }
        const double gpu = t[5], tokens = (double)LAYERS * n;
        printf("  %5zu %6.0f %3d %5d | %10.3f %10.3f %8.1f\n", batch, tokens, s, atoms, gpu * 1e3,
               cpu_tok * tokens * 1e3, cpu_tok * tokens / gpu);
        if (csv)
            fprintf(csv, "csr_encode,%zu,%d,%d,%.6f,%.6f\n", batch, s, atoms, gpu,
                    cpu_tok * tokens);
    }
    free(hd);
    skv_cuda_free(dict), skv_cuda_free(kv), skv_cuda_free(codes);
    return rc;
}

int bench_gpu_csr_table(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches,
                        int nb, FILE *csv) {
    skv_err err;
    skv_cuda_ctx *cc = ctx; /* the CSR calls share the attend's context */
    size_t maxjobs = 1;
    for (int j = 0; j < nb; j++)
        if (batches[j] * KVH > maxjobs) maxjobs = batches[j] * KVH;
    float *q = NULL, *out = NULL;
    int rc = bench_fail(skv_cuda_malloc((void **)&q, maxjobs * GQ * HD * 4, &err), &err, "q") ||
             bench_fail(skv_cuda_malloc((void **)&out, maxjobs * GQ * (HD + 2) * 4, &err), &err,
                        "out") ||
             bench_fail(skv_cuda_fill_random(q, maxjobs * GQ * HD, SKV_DTYPE_F32, 3, 0.09f, &err),
                        &err, "q");
    printf("# CSR attend (codes: 8 s B/token + 8 N d B of atoms) vs exact (f16 K + V: 4 d "
           "B/token); d %d, %d kv heads x %d q heads; median of 20 launches\n",
           HD, KVH, GQ);
    printf("# %-8s %5s %3s %5s | %9s %9s %7s | %10s %10s %7s | %9s\n", "context", "batch", "s",
           "atoms", "exact_ms", "csr_ms", "x", "exact_MB", "csr_MB", "bytes/", "csr_GB/s");
    static const int sps[2] = {8, 16}, nat[2] = {1024, 4096};
    for (int i = 0; !rc && i < nc; i++)
        for (int j = 0; !rc && j < nb; j++) {
            const size_t n = ctxs[i], njobs = batches[j] * KVH;
            float ems = 0;
            rc = time_exact(ctx, njobs, n, q, out, &ems);
            const double ebytes = (double)njobs * n * 4 * HD;
            for (int si = 0; !rc && si < 2; si++)
                for (int ai = 0; !rc && ai < 2; ai++) {
                    float cms = 0;
                    rc = time_csr(cc, njobs, n, sps[si], nat[ai], q, out, &cms);
                    if (rc) break;
                    const double cbytes =
                        (double)njobs * n * 8 * sps[si] + 8.0 * nat[ai] * HD; /* one group */
                    printf("  %-8zu %5zu %3d %5d | %9.4f %9.4f %7.2f | %10.1f %10.1f %7.1f | "
                           "%9.1f\n",
                           n, batches[j], sps[si], nat[ai], ems, cms, ems / cms, ebytes / 1e6,
                           cbytes / 1e6, ebytes / cbytes, cbytes / (cms * 1e-3) / 1e9);
                    if (csv)
                        fprintf(csv, "csr,%zu,%zu,%d,%d,%.5f,%.5f,%.0f,%.0f\n", n, batches[j],
                                sps[si], nat[ai], ems, cms, ebytes, cbytes);
                    fflush(stdout);
                }
        }
    if (!rc)
        printf("# CSR encoding of one decode step's new tokens on the GPU (32 layers, one "
               "dictionary each; launch + sync, median of 10) vs skv_mp_encode on one CPU "
               "thread\n# %5s %6s %3s %5s | %10s %10s %8s\n",
               "batch", "tokens", "s", "atoms", "gpu_ms", "cpu_ms", "x");
    for (int j = 0; !rc && j < nb; j++)
        for (int si = 0; !rc && si < 2; si++)
            for (int ai = 0; !rc && ai < 2; ai++)
                rc = encode_row(cc, batches[j], sps[si], nat[ai], csv);
    skv_cuda_free(q), skv_cuda_free(out);
    return rc;
}

static const char usage[] =
    "usage: subkv-bench gpu-csr [--contexts N,...] [--batches B,...] [--worker-context N] "
    "[--worker-batch B] [--csv FILE]\n"
    "Defaults: --contexts 32K,128K --batches 1,8 --worker-context 4096 --worker-batch 1 --csv "
    "build/bench-gpu-csr.csv\n"
    "The CSR attend (s = 8, 16; N = 1024, 4096 atoms) vs the exact attend, the GPU encoder, "
    "then the worker-level csr step (8 x B sketches), coding on the CPU and on the GPU "
    "(--worker-context 0 skips it; its CPU prefill codes 8 x B x N tokens).\n";

int bench_gpu_csr(int argc, char **argv) {
    bench_gpu_opts o = {.ctxs = {32768, 131072},
                        .batches = {1, 8},
                        .nc = 2,
                        .nb = 2,
                        .csv = "build/bench-gpu-csr.csv"};
    size_t wctx = 4096, wbatch = 1;
    const bench_size_opt extra[] = {{"--worker-context", &wctx}, {"--worker-batch", &wbatch}};
    const int stop = bench_gpu_start("gpu-csr", usage, argc, argv, &o, extra, 2);
    if (stop >= 0) return stop;
    if (wbatch < 1 || wbatch > 4096) {
        fprintf(stderr, "subkv-bench gpu-csr: --worker-batch %zu outside [1, 4096]\n", wbatch);
        skv_cuda_ctx_destroy(o.ctx);
        return 2;
    }
    skv_cuda_ctx *ctx = o.ctx;
    printf("# subkv-bench gpu-csr on %s\n", o.desc);
    FILE *csv = fopen(o.csv, "w");
    int rc = bench_gpu_csr_table(ctx, o.ctxs, o.nc, o.batches, o.nb, csv);
    if (!rc && wctx) rc = bench_gpu_csr_worker(wctx, wbatch, csv);
    if (csv) fclose(csv);
    skv_cuda_ctx_destroy(ctx);
    return rc;
}
