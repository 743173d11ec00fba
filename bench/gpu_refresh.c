/*
 * gpu_refresh.c — refreshkv's steps on the GPU (full_mem = device; worker/gpu_refresh.h) at
 * the GPU table's shapes (8 kv heads x 4 query heads, d = 128, float16, one layer): part of
 * `subkv-bench gpu`, or alone as `subkv-bench gpu-refresh`.
 *
 * For each context n and batch B (B x 8 jobs) and a partial cache of K = n/16 and n/8 rows
 * (1/16 and 1/8 of exact's memory):
 *   exact_ms    the exact attend over n rows (median of 20 launches, device events);
 *   partial_ms  the attend over K rows (a partial step's kernel; the worker's partial-cache
 *               mirror also re-uploads K rows when the cache changed: see upload_ms);
 *   attn_s_ms   the exact attend with the per-token score output on (skv_cuda_job.s);
 *   full_ms     what the worker does for a full step, wall clock, median of 5:
 *                 gpu_ms    attend with scores + pool kernel + download of the pooled
 *                           scores to pinned memory + sync,
 *                 select_ms the CPU selection of every job (skv_rkv_apply on a host sketch
 *                           holding n tokens: top-K of n, K rows copied),
 *                 upload_ms the new partial caches (B x 8 x K rows of keys and values) to
 *                           the device from pinned memory;
 *               (the CPU-selection path, kept for comparison: skv_gpu_refresh_cpu_select);
 *   dfull_ms    the worker's full step with the selection on the device (its default),
 *               wall clock, median of 5:
 *                 dgpu_ms   attend with scores + pool + top-K and gather of the new partial
 *                           caches into their device rows (skv_cuda_rkv_topk) + download of
 *                           the K tokens and scores per job + sync,
 *                 inst_ms   the host copies taking those selections (skv_rkv_apply_indices:
 *                           a lazy install, the K tokens and scores recorded per job, no row
 *                           copied); no upload;
 *               and, off the step path, mat_ms: copying those K rows per job from the host
 *               full store into the host partial caches (skv_rkv_materialize), what a later
 *               checkpoint or CPU read of every sketch pays once (the install's cost before
 *               it was lazy);
 *   mean_f      the mean step time at a full-step fraction f of 5%, 10%, 20%:
 *               f dfull_ms + (1 - f) partial_ms, its speed-up over exact (x, > 1 is faster),
 *               the same speed-up with the CPU-selection full_ms (xc), and the bytes it reads
 *               per step as a fraction of exact's (f + (1 - f) K/n): the paper's equal-time
 *               comparison on this device.
 * Keys, values and queries are device-side random fills (the timing does not depend on them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "skv_backend.h"
#include "skv_cuda.h"
#include "skv_internal.h"
#include "synth.h"

#define KVH 8
#define GQ 4
#define HD 128
#define ROW (HD * 2) /* bytes of one f16 key (or value) row */

static int fail(subkv_status st, const skv_err *err, const char *what) {
    if (st == SKV_OK) return 0;
    fprintf(stderr, "subkv-bench gpu refresh: %s: %s: %s\n", what, subkv_status_name(st), err->msg);
    return 1;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return x[n / 2];
}

/* A host refreshkv sketch holding n random tokens, partial cache k: the CPU selection runs on
 * it (the same code the worker runs after a GPU full step). */
static skv_sketch *host_sketch(size_t n, size_t k) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, HD);
    c.dtype = SKV_DTYPE_F16;
    c.partial_tokens = (int)k;
    c.full_mem = SKV_FULL_MEM_DEVICE;
    skv_sketch *s = NULL;
    skv_err err;
    if (fail(skv_sketch_create(&c, &s, &err), &err, "host sketch")) return NULL;
    enum { CH = 16384 };
    float *K = malloc((size_t)CH * HD * sizeof(float)),
          *V = malloc((size_t)CH * HD * sizeof(float));
    synth_rng r;
    synth_rng_seed(&r, 17);
    int bad = !K || !V;
    for (size_t at = 0; !bad && at < n; at += CH) {
        const size_t m = n - at < CH ? n - at : CH;
        synth_fill_normal(&r, K, m * HD, 1.0f);
        synth_fill_normal(&r, V, m * HD, 1.0f);
        bad = fail(skv_sketch_append(s, K, V, m, HD, &err), &err, "host append");
    }
    free(K), free(V);
    if (bad) {
        skv_sketch_destroy(s);
        return NULL;
    }
    return s;
}

typedef struct rkv_bufs {
    void *K, *V, *pk; /* device: jobs x n rows each; the partial caches' upload target */
    float *q, *out, *s, *pool;
    float *hpool;   /* pinned: jobs x n pooled scores */
    void *hpc;      /* pinned: one job's partial cache (keys then values), the upload source */
    uint32_t *sel;  /* device: jobs x kmax selected tokens, then jobs x kmax scores */
    uint32_t *hsel; /* pinned: the same, downloaded */
} rkv_bufs;

static void bufs_free(rkv_bufs *b) {
    skv_cuda_free(b->K), skv_cuda_free(b->V), skv_cuda_free(b->pk), skv_cuda_free(b->q);
    skv_cuda_free(b->out), skv_cuda_free(b->s), skv_cuda_free(b->pool), skv_cuda_free(b->sel);
    skv_cuda_host_free(b->hpool), skv_cuda_host_free(b->hpc), skv_cuda_host_free(b->hsel);
    memset(b, 0, sizeof *b);
}

static int bufs_alloc(rkv_bufs *b, size_t jobs, size_t n, size_t kmax) {
    skv_err err;
    memset(b, 0, sizeof *b);
    if (skv_cuda_malloc(&b->K, jobs * n * ROW, &err) != SKV_OK ||
        skv_cuda_malloc(&b->V, jobs * n * ROW, &err) != SKV_OK ||
        skv_cuda_malloc(&b->pk, jobs * kmax * ROW * 2, &err) != SKV_OK ||
        skv_cuda_malloc((void **)&b->q, jobs * GQ * HD * 4, &err) != SKV_OK ||
        skv_cuda_malloc((void **)&b->out, jobs * GQ * (HD + 2) * 4, &err) != SKV_OK ||
        skv_cuda_malloc((void **)&b->s, jobs * GQ * n * 4, &err) != SKV_OK ||
        skv_cuda_malloc((void **)&b->pool, jobs * n * 4, &err) != SKV_OK ||
        skv_cuda_host_alloc((void **)&b->hpool, jobs * n * 4, &err) != SKV_OK ||
        skv_cuda_host_alloc(&b->hpc, kmax * ROW * 2, &err) != SKV_OK ||
        skv_cuda_malloc((void **)&b->sel, jobs * kmax * 8, &err) != SKV_OK ||
        skv_cuda_host_alloc((void **)&b->hsel, jobs * kmax * 8, &err) != SKV_OK) {
        bufs_free(b);
        return 1;
    }
    memset(b->hpc, 0x3c, kmax * ROW * 2); /* f16 1.0-ish bytes: any finite rows do */
    if (fail(skv_cuda_fill_random(b->K, jobs * n * HD, SKV_DTYPE_F16, 21, 1.0f, &err), &err,
             "fill K") ||
        fail(skv_cuda_fill_random(b->V, jobs * n * HD, SKV_DTYPE_F16, 22, 1.0f, &err), &err,
             "fill V") ||
        fail(skv_cuda_fill_random(b->q, jobs * GQ * HD, SKV_DTYPE_F32, 23, 0.09f, &err), &err,
             "fill q")) {
        bufs_free(b);
        return 1;
    }
    return 0;
}

/* Jobs over the first m rows of each job's n; scores on or off. */
static void make_jobs(skv_cuda_job *jobs, const rkv_bufs *b, size_t njobs, size_t n, size_t m,
                      int scores) {
    for (size_t j = 0; j < njobs; j++)
        jobs[j] = (skv_cuda_job){.k = (const char *)b->K + j * n * ROW,
                                 .v = (const char *)b->V + j * n * ROW,
                                 .n = m,
                                 .q = b->q + j * GQ * HD,
                                 .out = b->out + j * GQ * (HD + 2),
                                 .s = scores ? b->s + j * GQ * m : NULL};
}

enum { FULL_ITERS = 5 };

/* The worker's full step, timed in its three parts (medians over FULL_ITERS + 1 warm-up). */
static int time_full(skv_cuda_ctx *ctx, const rkv_bufs *b, skv_cuda_job *jobs,
                     skv_cuda_pool_job *pj, size_t njobs, size_t n, size_t k, skv_sketch *host,
                     const float *hq, double out[4]) {
    skv_err err;
    make_jobs(jobs, b, njobs, n, n, 1);
    for (size_t j = 0; j < njobs; j++)
        pj[j] = (skv_cuda_pool_job){
            .s = jobs[j].s, .part = jobs[j].out, .pooled = b->pool + j * n, .n = n, .pool = 7};
    double g[FULL_ITERS], sel[FULL_ITERS], up[FULL_ITERS], tot[FULL_ITERS];
    for (int it = -1; it < FULL_ITERS; it++) {
        const double t0 = now_ms();
        if (fail(skv_cuda_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, &err), &err,
                 "attend") ||
            fail(skv_cuda_rkv_pool(ctx, pj, (int)njobs, HD, GQ, &err), &err, "pool") ||
            fail(skv_cuda_download_async(ctx, b->hpool, b->pool, njobs * n * 4, &err), &err,
                 "download") ||
            fail(skv_cuda_sync(ctx, &err), &err, "sync"))
            return 1;
        const double t1 = now_ms();
        for (size_t j = 0; j < njobs; j++)
            if (fail(skv_rkv_apply(host, hq, GQ, b->hpool + j * n, n, &err), &err, "select"))
                return 1;
        const double t2 = now_ms();
        for (size_t j = 0; j < njobs; j++)
            if (fail(skv_cuda_upload_async(ctx, (char *)b->pk + j * k * ROW * 2, b->hpc,
                                           k * ROW * 2, &err),
                     &err, "partial upload"))
                return 1;
        if (fail(skv_cuda_sync(ctx, &err), &err, "sync")) return 1;
        const double t3 = now_ms();
        if (it < 0) continue;
        g[it] = t1 - t0, sel[it] = t2 - t1, up[it] = t3 - t2, tot[it] = t3 - t0;
    }
    out[0] = median(g, FULL_ITERS), out[1] = median(sel, FULL_ITERS);
    out[2] = median(up, FULL_ITERS), out[3] = median(tot, FULL_ITERS);
    return 0;
}

/* The figures count only if the device selected what the CPU would: the first and the last
 * job's tokens and scores against skv_rkv_topk of their pooled scores (still on the device). */
static int check_selection(const rkv_bufs *b, const uint32_t *hidx, const float *hsc, size_t njobs,
                           size_t n, size_t k) {
    float *p = malloc(n * sizeof(float)), *sc = malloc(k * sizeof(float));
    uint32_t *idx = malloc(k * sizeof(uint32_t));
    skv_err err;
    int rc = !p || !sc || !idx;
    if (rc) fprintf(stderr, "subkv-bench gpu refresh: no memory for the selection check\n");
    for (size_t j = 0; !rc && j<njobs; j += njobs - 1> 0 ? njobs - 1 : 1) {
        size_t got = 0;
        rc = fail(skv_cuda_download(p, b->pool + j * n, n * sizeof(float), &err), &err,
                  "download pooled") ||
             fail(skv_rkv_topk(p, n, k, idx, sc, &got, &err), &err, "host top-k");
        if (!rc && (got != k || memcmp(idx, hidx + j * k, k * sizeof(uint32_t)) != 0 ||
                    memcmp(sc, hsc + j * k, k * sizeof(float)) != 0)) {
            fprintf(stderr,
                    "subkv-bench gpu refresh: job %zu: the device top-%zu of %zu differs "
                    "from the CPU's\n",
                    j, k, n);
            rc = 1;
        }
    }
    free(p), free(sc), free(idx);
    return rc;
}

/* The worker's full step with the device selection (medians over FULL_ITERS + 1 warm-up):
 * out[0] the GPU part (attend, pool, top-K + gather, downloads of the selections, sync),
 * out[1] the host copies taking them (lazy installs), out[2] the total, out[3] the deferred
 * row copies of those installs (each job's materialised right after its install; not in the
 * total: a step does not pay them). */
static int time_full_device(skv_cuda_ctx *ctx, const rkv_bufs *b, skv_cuda_job *jobs,
                            skv_cuda_pool_job *pj, skv_cuda_topk_job *tj, size_t njobs, size_t n,
                            size_t k, skv_sketch *host, const float *hq, double out[4]) {
    skv_err err;
    make_jobs(jobs, b, njobs, n, n, 1);
    uint32_t *didx = b->sel, *hidx = b->hsel;
    /* the score half of the same buffers (4-byte floats after the 4-byte indices) */
    float *dsc = (float *)(void *)(b->sel + njobs * k),
          *hsc = (float *)(void *)(b->hsel + njobs * k);
    for (size_t j = 0; j < njobs; j++) {
        pj[j] = (skv_cuda_pool_job){
            .s = jobs[j].s, .part = jobs[j].out, .pooled = b->pool + j * n, .n = n, .pool = 7};
        tj[j] = (skv_cuda_topk_job){.pooled = b->pool + j * n,
                                    .n = n,
                                    .k = (uint32_t)k,
                                    .row_bytes = ROW,
                                    .idx = didx + j * k,
                                    .score = dsc + j * k,
                                    .fk = jobs[j].k,
                                    .fv = jobs[j].v,
                                    .pk = (char *)b->pk + j * k * ROW * 2,
                                    .pv = (char *)b->pk + j * k * ROW * 2 + k * ROW};
    }
    double g[FULL_ITERS], ins[FULL_ITERS], tot[FULL_ITERS], mat[FULL_ITERS];
    for (int it = -1; it < FULL_ITERS; it++) {
        const double t0 = now_ms();
        if (fail(skv_cuda_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, &err), &err,
                 "attend") ||
            fail(skv_cuda_rkv_pool(ctx, pj, (int)njobs, HD, GQ, &err), &err, "pool") ||
            fail(skv_cuda_rkv_topk(ctx, tj, (int)njobs, &err), &err, "top-k") ||
            fail(skv_cuda_download_async(ctx, hidx, didx, njobs * k * 4, &err), &err,
                 "download tokens") ||
            fail(skv_cuda_download_async(ctx, hsc, dsc, njobs * k * 4, &err), &err,
                 "download scores") ||
            fail(skv_cuda_sync(ctx, &err), &err, "sync"))
            return 1;
        const double t1 = now_ms();
        double in = 0.0, ma = 0.0;
        for (size_t j = 0; j < njobs; j++) { /* one host sketch stands for every job's */
            const double a = now_ms();
            if (fail(skv_rkv_apply_indices(host, hq, GQ, hidx + j * k, hsc + j * k, k, &err), &err,
                     "install"))
                return 1;
            const double b2 = now_ms();
            skv_rkv_materialize(host);
            in += b2 - a, ma += now_ms() - b2;
        }
        if (it < 0) continue;
        g[it] = t1 - t0, ins[it] = in, tot[it] = t1 - t0 + in, mat[it] = ma;
    }
    out[0] = median(g, FULL_ITERS), out[1] = median(ins, FULL_ITERS);
    out[2] = median(tot, FULL_ITERS), out[3] = median(mat, FULL_ITERS);
    return check_selection(b, hidx, hsc, njobs, n, k);
}

int bench_gpu_refresh_table(skv_cuda_ctx *ctx, const size_t *ctxs, int nc, const size_t *batches,
                            int nb, FILE *csv) {
    const double fr[3] = {0.05, 0.10, 0.20};
    float hq[GQ * HD];
    synth_rng r;
    synth_rng_seed(&r, 29);
    synth_fill_normal(&r, hq, GQ * HD, 1.0f);
    printf("# refreshkv on the GPU (full_mem=device): partial cache K = n/16, n/8; CPU-selection "
           "full step = attend with scores + pool + download (gpu) + CPU selection (select) + "
           "partial cache upload (upload); device-selection full step = attend with scores + "
           "pool + top-K + gather + download of the selections (dgpu) + lazy host installs "
           "(inst: tokens and scores only); mat = the deferred host row copies, paid once by a "
           "later checkpoint or CPU read, not per step; wall clock, median of %d; mean_f = f "
           "dfull + (1-f) partial, x = exact / mean_f, xc = the same with the CPU-selection "
           "full, rd = bytes read per step / exact's\n",
           FULL_ITERS);
    printf("# %-8s %5s %4s %9s %9s %9s %8s %9s %9s %9s %8s %8s %9s %8s | %8s %5s %5s %5s | %8s %5s "
           "%5s %5s | %8s %5s %5s %5s\n",
           "context", "batch", "K", "exact_ms", "part_ms", "attn_s_ms", "gpu_ms", "select_ms",
           "upload_ms", "full_ms", "dgpu_ms", "inst_ms", "dfull_ms", "mat_ms", "mean5", "x", "xc",
           "rd", "mean10", "x", "xc", "rd", "mean20", "x", "xc", "rd");
    for (int i = 0; i < nc; i++) {
        const size_t n = ctxs[i];
        if (n < 16) continue;
        skv_sketch *host[2] = {host_sketch(n, n / 16), host_sketch(n, n / 8)};
        if (!host[0] || !host[1]) {
            skv_sketch_destroy(host[0]), skv_sketch_destroy(host[1]);
            return 1;
        }
        for (int j = 0; j < nb; j++) {
            const size_t njobs = batches[j] * KVH;
            rkv_bufs b;
            if (bufs_alloc(&b, njobs, n, n / 8)) {
                printf("  %-8zu %5zu  does not fit on the device\n", n, batches[j]);
                continue;
            }
            skv_cuda_job *jobs = calloc(njobs, sizeof *jobs);
            skv_cuda_pool_job *pj = calloc(njobs, sizeof *pj);
            skv_cuda_topk_job *tj = calloc(njobs, sizeof *tj);
            skv_err err;
            float exact_ms = 0, attn_s_ms = 0;
            int rc = !jobs || !pj || !tj;
            if (!rc) {
                make_jobs(jobs, &b, njobs, n, n, 0);
                rc = fail(skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, 3,
                                               20, &exact_ms, &err),
                          &err, "exact");
            }
            if (!rc) {
                make_jobs(jobs, &b, njobs, n, n, 1);
                rc = fail(skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, 3,
                                               20, &attn_s_ms, &err),
                          &err, "attend with scores");
            }
            for (int v = 0; v < 2 && !rc; v++) {
                const size_t k = n / (v ? 8 : 16);
                float part_ms = 0;
                double full[4], dfull[4];
                make_jobs(jobs, &b, njobs, n, k, 0);
                rc = fail(skv_cuda_time_attend(ctx, jobs, (int)njobs, HD, GQ, SKV_DTYPE_F16, 0, 3,
                                               20, &part_ms, &err),
                          &err, "partial") ||
                     time_full(ctx, &b, jobs, pj, njobs, n, k, host[v], hq, full) ||
                     time_full_device(ctx, &b, jobs, pj, tj, njobs, n, k, host[v], hq, dfull);
                if (rc) break;
                printf("  %-8zu %5zu %4s %9.4f %9.4f %9.4f %8.3f %9.3f %9.3f %9.3f %8.3f %8.3f "
                       "%9.3f %8.3f",
                       n, batches[j], v ? "n/8" : "n/16", exact_ms, part_ms, attn_s_ms, full[0],
                       full[1], full[2], full[3], dfull[0], dfull[1], dfull[2], dfull[3]);
                if (csv)
                    fprintf(csv,
                            "refresh,%zu,%zu,%zu,%.5f,%.5f,%.5f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,"
                            "%.4f,%.4f",
                            n, batches[j], k, exact_ms, part_ms, attn_s_ms, full[0], full[1],
                            full[2], full[3], dfull[0], dfull[1], dfull[2], dfull[3]);
                for (int f = 0; f < 3; f++) {
                    const double mean = fr[f] * dfull[2] + (1 - fr[f]) * part_ms;
                    const double meanc = fr[f] * full[3] + (1 - fr[f]) * part_ms;
                    const double rd = fr[f] + (1 - fr[f]) * (double)k / (double)n;
                    printf(" | %8.3f %5.2f %5.2f %5.3f", mean, exact_ms / mean, exact_ms / meanc,
                           rd);
                    if (csv)
                        fprintf(csv, ",%.4f,%.4f,%.4f,%.4f", mean, exact_ms / mean,
                                exact_ms / meanc, rd);
                }
                printf("\n");
                if (csv) fprintf(csv, "\n");
                fflush(stdout);
            }
            free(jobs), free(pj), free(tj);
            bufs_free(&b);
            if (rc) {
                skv_sketch_destroy(host[0]), skv_sketch_destroy(host[1]);
                return 1;
            }
        }
        skv_sketch_destroy(host[0]), skv_sketch_destroy(host[1]);
    }
    return 0;
}

static const char usage[] =
    "usage: subkv-bench gpu-refresh [--contexts N,...] [--batches B,...] [--csv FILE]\n"
    "Defaults: --contexts 32K,128K,512K,1M --batches 1,8 --csv build/bench-gpu-refresh.csv\n";

int bench_gpu_refresh(int argc, char **argv) {
    bench_gpu_opts o = {.ctxs = {32768, 131072, 524288, 1048576},
                        .batches = {1, 8},
                        .nc = 4,
                        .nb = 2,
                        .csv = "build/bench-gpu-refresh.csv"};
    const int stop = bench_gpu_start("gpu-refresh", usage, argc, argv, &o, NULL, 0);
    if (stop >= 0) return stop;
    skv_cuda_ctx *ctx = o.ctx;
    FILE *csv = fopen(o.csv, "w");
    printf("# subkv-bench gpu-refresh on %s: %d kv heads x %d q heads, d %d, f16, one layer\n",
           o.desc, KVH, GQ, HD);
    const int rc = bench_gpu_refresh_table(ctx, o.ctxs, o.nc, o.batches, o.nb, csv);
    if (csv) fclose(csv);
    skv_cuda_ctx_destroy(ctx);
    return rc;
}
