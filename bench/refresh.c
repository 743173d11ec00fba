/*
 * refresh.c — `subkv-bench refresh`: RefreshKV's refresh decision per GQA group (what each
 * sketch does alone, cache/refreshkv.c) against the paper's per-layer decision (the mean
 * query of all the layer's heads: skv_layer_rule, as the service's coordinator runs it for
 * decide=layer, applied through skv_sketch_refresh), on one synthetic
 * layer of H kv groups x g query heads. Each group has its own keys (its own stream) and
 * its own query topic (a key cluster); a topic lasts a geometric number of steps (the
 * probability it continues is --persist). Two regimes: every group changes topic on its
 * own ("independent"), or all groups at the same steps ("shared", a layer-wide shift).
 * Per rule: fraction of attends that were full steps, mean relative error of the outputs
 * against float64 exact attention, bytes read per attend. Verifies what it reports: the
 * error is measured, the fractions come from the sketches' own counters.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "policy_eval.h"

enum { RB_H = 8, RB_G = 4, RB_CLUSTERS = 16 };

typedef struct rb_opts {
    size_t n;
    int d, steps, stride, k;
    double persist;
    float threshold;
    uint64_t seed;
} rb_opts;

typedef struct rb_row {
    double full_frac, err, read_step;
} rb_row;

/* One regime under one rule (layer = 0: each group decides; 1: the layer decides). */
static int rb_run(const rb_opts *o, int shared, int layer, rb_row *row) {
    const int d = o->d;
    const size_t qn = (size_t)RB_H * RB_G * (size_t)d;
    synth_stream *st[RB_H] = {0};
    skv_sketch *sk[RB_H] = {0};
    float *K[RB_H] = {0}, *V[RB_H] = {0};
    float *Q = malloc(qn * sizeof(float)), *out = malloc((size_t)d * sizeof(float));
    float *lref = malloc((size_t)d * sizeof(float));
    double *ref = malloc((size_t)d * sizeof(double));
    skv_partial *p = malloc(RB_G * skv_partial_stride(d));
    int rc = -1, topic[RB_H];
    skv_err err;
    if (!Q || !out || !lref || !ref || !p) goto done;
    for (int h = 0; h < RB_H; h++) {
        synth_stream_cfg sc =
            eval_workload(d, RB_CLUSTERS, (uint32_t)(o->n / 4), 0.0f, o->seed * 131 + (uint64_t)h);
        st[h] = synth_stream_create(&sc);
        K[h] = malloc(o->n * (size_t)d * sizeof(float));
        V[h] = malloc(o->n * (size_t)d * sizeof(float));
        if (!st[h] || !K[h] || !V[h]) goto done;
        synth_stream_next(st[h], K[h], V[h], o->n);
        skv_config c;
        skv_config_default(&c, SKV_POLICY_REFRESHKV, d);
        c.partial_tokens = o->k;
        c.stride = o->stride;
        c.threshold = layer ? -1.0f : o->threshold; /* layer rule: sketches never decide */
        c.head = (uint32_t)h;
        if (skv_sketch_create(&c, &sk[h], &err) != SKV_OK ||
            skv_sketch_append(sk[h], K[h], V[h], o->n, d, &err) != SKV_OK) {
            fprintf(stderr, "subkv-bench refresh: %s\n", err.msg);
            goto done;
        }
    }
    synth_rng rng;
    synth_rng_seed(&rng, o->seed ^ (shared ? 0x5a5a : 0xa5a5));
    double err_sum = 0.0;
    skv_layer_rule rule = {0};
    skv_layer_rule_appended(&rule, o->n); /* the prefill: the first attend is a full step */
    for (int t = 0; t < o->steps; t++) {
        const int shift = t == 0 || synth_rng_uniform(&rng) >= o->persist;
        for (int h = 0; h < RB_H; h++) {
            const int moves = shared ? shift : (t == 0 || synth_rng_uniform(&rng) >= o->persist);
            if (moves) topic[h] = (int)(synth_rng_uniform(&rng) * RB_CLUSTERS);
            for (int j = 0; j < RB_G; j++)
                synth_stream_query(st[h], topic[h], 1.0f, 0.3f, Q + ((size_t)h * RB_G + j) * d);
        }
        /* the paper's rule, as the service's coordinator runs it (skv_layer_rule) */
        const int full =
            layer && skv_layer_rule_check(&rule, lref, o->stride, o->threshold, Q, RB_H * RB_G, d);
        for (int h = 0; full && h < RB_H; h++) skv_sketch_refresh(sk[h], &err);
        for (int h = 0; h < RB_H; h++) {
            if (skv_sketch_attend(sk[h], Q + (size_t)h * RB_G * d, RB_G, d, p, &err) != SKV_OK) {
                fprintf(stderr, "subkv-bench refresh: %s\n", err.msg);
                goto done;
            }
            for (int j = 0; j < RB_G; j++) {
                skv_partial_output(skv_partial_at(p, d, (size_t)j), d, out);
                synth_ref_attention(Q + ((size_t)h * RB_G + j) * d, K[h], V[h], o->n, d, ref);
                err_sum += synth_rel_error(out, ref, d);
            }
        }
        if (layer) skv_layer_rule_commit(&rule, lref, o->stride, full, Q, RB_H * RB_G, d, o->n);
    }
    uint64_t attends = 0, full = 0, bytes = 0;
    for (int h = 0; h < RB_H; h++) {
        skv_stats s;
        skv_sketch_stats(sk[h], &s);
        attends += s.attends, full += s.full_steps, bytes += s.bytes_read;
    }
    row->full_frac = (double)full / (double)attends;
    row->read_step = (double)bytes / (double)attends;
    row->err = err_sum / ((double)o->steps * RB_H * RB_G);
    rc = 0;
done:
    for (int h = 0; h < RB_H; h++) {
        skv_sketch_destroy(sk[h]);
        synth_stream_destroy(st[h]);
        free(K[h]), free(V[h]);
    }
    free(Q), free(out), free(lref), free(ref), free(p);
    return rc;
}

static void rb_usage(FILE *f) {
    fprintf(f, "usage: subkv-bench refresh [--n N] [--d D] [--steps T] [--k K] [--stride S]\n"
               "                           [--threshold X] [--persist P] [--seed S]\n"
               "RefreshKV's refresh decision per GQA group (each sketch alone, as implemented)\n"
               "vs per layer (the paper: mean query of all the layer's heads, applied with\n"
               "skv_sketch_refresh) on one layer of 8 kv groups x 4 query heads, each group with\n"
               "its own keys and query topic; topics change per group (independent) or for the\n"
               "whole layer at once (shared). Defaults: --n 8192 --d 64 --steps 120 --k 256\n"
               "--stride 10 --threshold 0.9 --persist 0.9 --seed 7.\n");
}

int bench_refresh(int argc, char **argv) {
    rb_opts o = {.n = 8192,
                 .d = 64,
                 .steps = 120,
                 .stride = 10,
                 .k = 256,
                 .persist = 0.9,
                 .threshold = 0.9f,
                 .seed = 7};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            rb_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "subkv-bench refresh: option '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--n"))
            o.n = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--d"))
            o.d = atoi(v);
        else if (!strcmp(a, "--steps"))
            o.steps = atoi(v);
        else if (!strcmp(a, "--k"))
            o.k = atoi(v);
        else if (!strcmp(a, "--stride"))
            o.stride = atoi(v);
        else if (!strcmp(a, "--threshold"))
            o.threshold = strtof(v, NULL);
        else if (!strcmp(a, "--persist"))
            o.persist = atof(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 0);
        else {
            fprintf(stderr, "subkv-bench refresh: unknown option '%s'\n", a);
            rb_usage(stderr);
            return 2;
        }
    }
    if (o.n < 16 || o.d < 1 || o.d > 1024 || o.steps < 1 || o.k < 1 || o.stride < 1 ||
        !(o.threshold >= -1.0f && o.threshold <= 1.0f) || !(o.persist >= 0 && o.persist <= 1)) {
        fprintf(stderr, "subkv-bench refresh: need n >= 16, 1 <= d <= 1024, steps, k, stride "
                        ">= 1, threshold in [-1, 1], persist in [0, 1]\n");
        return 2;
    }
    printf("# subkv-bench refresh: one layer of %d kv groups x %d q heads, d=%d, %zu tokens per "
           "group (16 key clusters), K=%d, stride %d, threshold %g, topic persistence %g, %d "
           "steps\n",
           RB_H, RB_G, o.d, o.n, o.k, o.stride, (double)o.threshold, o.persist, o.steps);
    printf("# %-12s %-8s %10s %10s %12s\n", "topics", "decides", "full_frac", "err_mean",
           "read_B/step");
    for (int shared = 0; shared < 2; shared++)
        for (int layer = 0; layer < 2; layer++) {
            rb_row r;
            if (rb_run(&o, shared, layer, &r) != 0) return 1;
            printf("  %-12s %-8s %10.3f %10.4f %12.0f\n", shared ? "shared" : "independent",
                   layer ? "layer" : "group", r.full_frac, r.err, r.read_step);
            fflush(stdout);
        }
    return 0;
}
