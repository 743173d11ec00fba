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
 * and the speed-up over exact.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "skv_backend.h"
#include "skv_csr_cuda.h"
#include "skv_cuda.h"

#define KVH 8
#define GQ 4
#define HD 128

static int fail(subkv_status st, const skv_err *err, const char *what) {
    if (st == SKV_OK) return 0;
    fprintf(stderr, "subkv-bench gpu csr: %s: %s: %s\n", what, subkv_status_name(st), err->msg);
    return 1;
}

/* Exact attend of njobs jobs of n tokens: median ms (K, V allocated and freed here). */
static int time_exact(skv_cuda_ctx *ctx, size_t njobs, size_t n, float *q, float *out, float *ms) {
    skv_err err;
    void *K = NULL, *V = NULL;
    const size_t row = HD * 2, bytes = njobs * n * row;
    skv_cuda_job *jobs = calloc(njobs, sizeof *jobs);
    int rc = !jobs || fail(skv_cuda_malloc(&K, bytes, &err), &err, "exact K") ||
             fail(skv_cuda_malloc(&V, bytes, &err), &err, "exact V") ||
             fail(skv_cuda_fill_random(K, bytes / 2, SKV_DTYPE_F16, 1, 1.0f, &err), &err, "K") ||
             fail(skv_cuda_fill_random(V, bytes / 2, SKV_DTYPE_F16, 2, 1.0f, &err), &err, "V");
    for (size_t k = 0; !rc && k < njobs; k++)
        jobs[k] = (skv_cuda_job){(const char *)K + k * n * row,
                                 (const char *)V + k * n * row,
                                 NULL,
                                 NULL,
                                 n,
                                 q + k * GQ * HD,
                                 out + k * GQ * (HD + 2)};
    if (!rc)
        rc = fail(
            skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, 3, 20, ms, &err),
            &err, "exact attend");
    skv_cuda_free(K), skv_cuda_free(V);
    free(jobs);
    return rc;
}

/* CSR attend of njobs jobs of n coded tokens at sparsity s over `atoms` atoms: median ms. */
static int time_csr(skv_csr_cuda_ctx *cc, size_t njobs, size_t n, int s, int atoms, const float *q,
                    float *out, float *ms) {
    skv_err err;
    uint16_t *idx = NULL, *coef = NULL;
    float *dk = NULL, *dv = NULL;
    const size_t codes = njobs * n * 2 * (size_t)s, ab = (size_t)atoms * HD;
    skv_csr_cuda_job *jobs = calloc(njobs, sizeof *jobs);
    /* unit-ish atoms (N(0, 1/d) entries) and coefficients of a unit key's size */
    int rc = !jobs || fail(skv_cuda_malloc((void **)&idx, codes * 2, &err), &err, "idx") ||
             fail(skv_cuda_malloc((void **)&coef, codes * 2, &err), &err, "coef") ||
             fail(skv_cuda_malloc((void **)&dk, ab * 4, &err), &err, "dk") ||
             fail(skv_cuda_malloc((void **)&dv, ab * 4, &err), &err, "dv") ||
             fail(skv_csr_cuda_fill_random_codes(idx, coef, njobs * n, s, atoms, 7, 1.0f, &err),
                  &err, "codes") ||
             fail(skv_cuda_fill_random(dk, ab, SKV_DTYPE_F32, 8, 0.088f, &err), &err, "dk") ||
             fail(skv_cuda_fill_random(dv, ab, SKV_DTYPE_F32, 9, 0.088f, &err), &err, "dv");
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
        rc = fail(
            skv_csr_cuda_time_attend(cc, jobs, (int)njobs, HD, GQ, s, atoms, 0, 3, 20, ms, &err),
            &err, "csr attend");
    skv_cuda_free(idx), skv_cuda_free(coef), skv_cuda_free(dk), skv_cuda_free(dv);
    free(jobs);
    return rc;
}

int bench_gpu_csr_table(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches,
                        int nb, FILE *csv) {
    skv_err err;
    skv_csr_cuda_ctx *cc = NULL;
    if (fail(skv_csr_cuda_ctx_create(&cc, &err), &err, "CSR context")) return 1;
    size_t maxjobs = 1;
    for (int j = 0; j < nb; j++)
        if (batches[j] * KVH > maxjobs) maxjobs = batches[j] * KVH;
    float *q = NULL, *out = NULL;
    int rc =
        fail(skv_cuda_malloc((void **)&q, maxjobs * GQ * HD * 4, &err), &err, "q") ||
        fail(skv_cuda_malloc((void **)&out, maxjobs * GQ * (HD + 2) * 4, &err), &err, "out") ||
        fail(skv_cuda_fill_random(q, maxjobs * GQ * HD, SKV_DTYPE_F32, 3, 0.09f, &err), &err, "q");
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
    skv_cuda_free(q), skv_cuda_free(out);
    skv_csr_cuda_ctx_destroy(cc);
    return rc;
}

int bench_gpu_csr(int argc, char **argv) {
    size_t ctxs[8] = {32768, 131072}, batches[8] = {1, 8};
    int nc = 2, nb = 2;
    const char *csvp = "build/bench-gpu-csr.csv";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: subkv-bench gpu-csr [--contexts N,...] [--batches B,...] [--csv FILE]\n"
                   "Defaults: --contexts 32K,128K --batches 1,8 --csv build/bench-gpu-csr.csv\n"
                   "The CSR attend (s = 8, 16; N = 1024, 4096 atoms) vs the exact attend.\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "subkv-bench gpu-csr: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--contexts"))
            nc = bench_parse_sizes(v, ctxs, 8);
        else if (!strcmp(a, "--batches"))
            nb = bench_parse_sizes(v, batches, 8);
        else if (!strcmp(a, "--csv"))
            csvp = v;
        else
            nc = -1;
        if (nc < 1 || nb < 1) {
            fprintf(stderr, "subkv-bench gpu-csr: bad option %s %s\n", a, v);
            return 2;
        }
    }
    skv_backend_info bi;
    char desc[256];
    skv_backend_select(0, &bi);
    skv_backend_describe(&bi, desc, sizeof desc);
    if (bi.kind != SKV_BACKEND_CUDA) {
        fprintf(stderr, "subkv-bench gpu-csr: needs a GPU; backend is %s\n", desc);
        return 1;
    }
    skv_cuda_ctx *ctx = NULL;
    skv_err err;
    if (fail(skv_cuda_ctx_create(&ctx, &err), &err, "context")) return 1;
    printf("# subkv-bench gpu-csr on %s\n", desc);
    FILE *csv = fopen(csvp, "w");
    const int rc = bench_gpu_csr_table(ctx, ctxs, nc, batches, nb, csv);
    if (csv) fclose(csv);
    skv_cuda_ctx_destroy(ctx);
    return rc;
}
