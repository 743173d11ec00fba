/*
 * cli_demo.c — `subkv demo`: the main job on an embedded default workload. Streams a
 * synthetic long context (several sequences, several layers, GQA) through the running
 * service once per policy at one memory budget per sketch, then decodes with batched step
 * requests, and prints a table: bytes held, step latency p50/p99, error against float64
 * exact attention. `make demo` starts the service, runs this, and stops the service.
 *
 * Data: for each (sequence, layer, kv head) a synthetic stream (tools/synth.h) of drifting
 * key clusters visited in topic phases, values correlated with the clusters; each decode
 * query aims at the cluster of a random earlier token of its kv head (retrieval from any
 * depth), the g query heads of a group at the same cluster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_eval.h"
#include "subkv_cli.h"
#include "subkv_client.h"
#include "synth.h"

typedef struct demo_opts {
    uint64_t n, steps, seqs, budget;
} demo_opts;

typedef struct demo_data {
    skv_model_shape sh;
    size_t ntot;  /* n + steps tokens */
    float *K, *V; /* [seq][layer][kv][ntot][d]: contiguous per head (the reference reads it) */
    float *Q;     /* [seq][layer][step][q_heads][d] */
} demo_data;

static size_t head_at(const demo_data *w, size_t s, uint32_t l, uint32_t h) {
    return (((s * w->sh.layers + l) * w->sh.kv_heads + h) * w->ntot) * w->sh.head_dim;
}

static int demo_make(const demo_opts *o, demo_data *w) {
    const uint32_t d = w->sh.head_dim, kv = w->sh.kv_heads, g = w->sh.q_heads / kv;
    w->ntot = (size_t)(o->n + o->steps);
    const size_t heads = (size_t)o->seqs * w->sh.layers * kv;
    w->K = malloc(heads * w->ntot * d * sizeof(float));
    w->V = malloc(heads * w->ntot * d * sizeof(float));
    w->Q = malloc((size_t)o->seqs * w->sh.layers * o->steps * w->sh.q_heads * d * sizeof(float));
    int *cl = malloc(w->ntot * sizeof(int));
    if (!w->K || !w->V || !w->Q || !cl) {
        free(cl);
        return -1;
    }
    synth_rng r;
    synth_rng_seed(&r, 20261123);
    for (size_t s = 0; s < o->seqs; s++)
        for (uint32_t l = 0; l < w->sh.layers; l++)
            for (uint32_t h = 0; h < kv; h++) {
                synth_stream_cfg sc = eval_workload((int)d, 32, 1024, 0.0005f, synth_rng_u64(&r));
                synth_stream *st = synth_stream_create(&sc);
                if (!st) {
                    free(cl);
                    return -1;
                }
                float *K = w->K + head_at(w, s, l, h), *V = w->V + head_at(w, s, l, h);
                for (size_t t = 0; t < w->ntot; t++) {
                    synth_stream_next(st, K + t * d, V + t * d, 1);
                    cl[t] = synth_stream_last_cluster(st);
                }
                for (size_t k = 0; k < o->steps; k++) {
                    const size_t upto = (size_t)o->n + k; /* tokens before this step's */
                    const int c = cl[(size_t)(synth_rng_uniform(&r) * (double)upto)];
                    for (uint32_t j = 0; j < g; j++)
                        synth_stream_query(
                            st, c, 1.0f, 0.3f,
                            w->Q + ((((s * w->sh.layers + l) * o->steps + k) * w->sh.q_heads +
                                     h * g + j) *
                                    d));
                }
                synth_stream_destroy(st);
            }
    free(cl);
    return 0;
}

/* Interleave tokens [t0, t0+n) of (s, l) into buf[n][kv][d]. */
static void demo_gather(const demo_data *w, const float *src, size_t s, uint32_t l, size_t t0,
                        size_t n, float *buf) {
    const uint32_t d = w->sh.head_dim, kv = w->sh.kv_heads;
    for (size_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < kv; h++)
            memcpy(buf + (t * kv + h) * d, src + head_at(w, s, l, h) + (t0 + t) * d,
                   d * sizeof(float));
}

typedef struct demo_row {
    const char *label;
    uint64_t bytes;
    double p50, p99, err_mean, err_max;
} demo_row;

static int demo_policy(skv_client *c, const demo_opts *o, const demo_data *w, const skv_config *cfg,
                       demo_row *row) {
    const uint32_t d = w->sh.head_dim, kv = w->sh.kv_heads, qh = w->sh.q_heads;
    const size_t S = (size_t)o->seqs, chunk = 1024;
    uint64_t *ids = calloc(S, sizeof *ids);
    float *kb = malloc(chunk * kv * d * sizeof(float)),
          *vb = malloc(chunk * kv * d * sizeof(float));
    float *q = malloc(S * qh * d * sizeof(float)), *ks = malloc(S * kv * d * sizeof(float));
    float *vs = malloc(S * kv * d * sizeof(float)), *out = malloc(S * qh * d * sizeof(float));
    double *lat = malloc(o->steps * w->sh.layers * sizeof(double)), ref[1024];
    skv_err err = {0};
    int rc = 1;
    size_t nlat = 0, nerr = 0;
    uint64_t before = 0;
    if (!ids || !kb || !vb || !q || !ks || !vs || !out || !lat) goto done;
    if (skv_client_stats_bytes(c, &before, NULL, &err) != SKV_OK) goto fail;
    for (size_t s = 0; s < S; s++) {
        if (skv_client_create_sequence(c, &w->sh, cfg, 1, 0, &ids[s], &err) != SKV_OK) goto fail;
        for (uint32_t l = 0; l < w->sh.layers; l++)
            for (size_t t = 0; t < o->n; t += chunk) {
                size_t m = o->n - t < chunk ? (size_t)o->n - t : chunk;
                demo_gather(w, w->K, s, l, t, m, kb);
                demo_gather(w, w->V, s, l, t, m, vb);
                if (skv_client_append(c, &w->sh, ids[s], l, m, kb, vb, &err) != SKV_OK) goto fail;
            }
    }
    row->err_mean = row->err_max = 0.0;
    for (size_t k = 0; k < o->steps; k++)
        for (uint32_t l = 0; l < w->sh.layers; l++) {
            for (size_t s = 0; s < S; s++) {
                memcpy(q + s * qh * d, w->Q + (((s * w->sh.layers + l) * o->steps + k) * qh) * d,
                       (size_t)qh * d * sizeof(float));
                demo_gather(w, w->K, s, l, (size_t)o->n + k, 1, ks + s * kv * d);
                demo_gather(w, w->V, s, l, (size_t)o->n + k, 1, vs + s * kv * d);
            }
            double t0 = cli_now_ms();
            if (skv_client_step(c, &w->sh, l, S, ids, q, ks, vs, out, &err) != SKV_OK) goto fail;
            lat[nlat++] = cli_now_ms() - t0;
            for (size_t s = 0; s < S; s++)
                for (uint32_t j = 0; j < qh; j++) {
                    const uint32_t h = j / (qh / kv);
                    synth_ref_attention(q + (s * qh + j) * d, w->K + head_at(w, s, l, h),
                                        w->V + head_at(w, s, l, h), (size_t)o->n + k + 1, (int)d,
                                        ref);
                    double e = synth_rel_error(out + (s * qh + j) * d, ref, (int)d);
                    row->err_mean += e;
                    if (e > row->err_max) row->err_max = e;
                    nerr++;
                }
        }
    uint64_t after = 0;
    if (skv_client_stats_bytes(c, &after, NULL, &err) != SKV_OK) goto fail;
    row->bytes = after - before;
    row->err_mean /= (double)nerr;
    row->p50 = cli_percentile(lat, nlat, 50);
    row->p99 = cli_percentile(lat, nlat, 99);
    rc = 0;
    goto done;
fail:
    rc = cli_fail(row->label, &err);
done:
    for (size_t s = 0; s < S && ids; s++)
        if (ids[s]) (void)skv_client_drop_sequence(c, ids[s], NULL);
    free(ids), free(kb), free(vb), free(q), free(ks), free(vs), free(out), free(lat);
    return rc;
}

static void demo_usage(FILE *f) {
    fprintf(
        f,
        "usage: subkv demo [--n TOKENS] [--steps M] [--seqs S] [--budget BYTES]\n"
        "Against the running service: for each policy (exact, sinkwin, h2o, subgen l2,\n"
        "subgen cluster, refreshkv), S sequences of 4 layers x 8 query heads x 2 kv heads x d 64\n"
        "are prefilled with TOKENS synthetic tokens per layer, then decoded M steps (one\n"
        "step request per layer carries all S sequences). Prints bytes held, step latency\n"
        "p50/p99 and the error against float64 exact attention. Budget is per sketch\n"
        "(layer x kv head); f16 storage. Defaults: --n 8192 --steps 16 --seqs 4\n"
        "--budget 128K (1/16 of what exact holds at 8192 tokens).\n");
}

int cli_demo(const cli_target *t, int argc, char **argv) {
    demo_opts o = {.n = 8192, .steps = 16, .seqs = 4, .budget = 128 << 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *dst = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            demo_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--n"))
            dst = &o.n;
        else if (!strcmp(a, "--steps"))
            dst = &o.steps;
        else if (!strcmp(a, "--seqs"))
            dst = &o.seqs;
        else if (!strcmp(a, "--budget"))
            dst = &o.budget;
        if (!dst || !v || cli_parse_size(v, dst) != 0) {
            fprintf(stderr, "subkv demo: bad or incomplete option '%s'\n", a);
            demo_usage(stderr);
            return 2;
        }
        i++;
    }
    if (o.n < 1 || o.steps < 1 || o.seqs < 1 || o.seqs > 64 || o.n > (1u << 20)) {
        fprintf(stderr, "subkv demo: need 1 <= --n <= 1M, --steps >= 1, 1 <= --seqs <= 64\n");
        return 2;
    }
    demo_data w = {.sh = {4, 8, 2, 64}};
    if (demo_make(&o, &w) != 0) {
        fprintf(stderr, "subkv demo: out of memory for the workload\n");
        return 1;
    }
    skv_client *c = NULL;
    skv_err err = {0};
    int rc = 0;
    if (skv_client_connect(t->addr, t->token, &c, &err) != SKV_OK) {
        rc = cli_fail("connect", &err);
    } else {
        uint32_t workers = 0;
        uint64_t b0;
        if (skv_client_stats_bytes(c, &b0, &workers, &err) != SKV_OK) rc = cli_fail("stats", &err);
        printf("# subkv demo via %s: %u workers; %llu sequences x 4 layers x 8 q / 2 kv heads x "
               "d 64; %llu tokens prefilled, %llu decode steps; f16; budget %llu B per sketch\n",
               t->addr, workers, (unsigned long long)o.seqs, (unsigned long long)o.n,
               (unsigned long long)o.steps, (unsigned long long)o.budget);
        printf("# %-15s %12s %10s %10s %10s %10s\n", "policy", "bytes", "p50_ms", "p99_ms",
               "err_mean", "err_max");
        skv_config cfgs[EVAL_MAX_LINEUP];
        const char *labels[EVAL_MAX_LINEUP];
        int np = eval_standard_lineup(64, SKV_DTYPE_F16, (size_t)o.budget, 7, cfgs, labels);
        for (int p = 0; p < np && rc == 0; p++) {
            demo_row row = {.label = labels[p]};
            rc = demo_policy(c, &o, &w, &cfgs[p], &row);
            if (rc == 0)
                printf("  %-15s %12llu %10.3f %10.3f %10.4f %10.4f\n", row.label,
                       (unsigned long long)row.bytes, row.p50, row.p99, row.err_mean, row.err_max);
            fflush(stdout);
        }
    }
    skv_client_close(c);
    free(w.K), free(w.V), free(w.Q);
    return rc;
}
