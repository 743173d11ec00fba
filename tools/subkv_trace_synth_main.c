/*
 * subkv-trace-synth — write a synthetic attention trace (format: tools/trace.h).
 *
 * Each (layer, kv head) is one synth stream (drifting key clusters visited in topic phases,
 * heavy-tailed values, as in subkv-demo). The query of token t for each query head of the
 * group is aimed at the cluster of a uniformly drawn earlier token j <= t (the stream's
 * current center of that cluster, plus noise): the kind of look-back a real model does.
 * Memory: one layer of Q, K, V plus one cluster index per token.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csr_dict.h"
#include "policy_eval.h"
#include "synth.h"
#include "trace.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv-trace-synth OUT [--layers L] [--q-heads H] [--kv-heads KV] [--d D]\n"
            "                         [--n N] [--seed S] [--rope-base B]\n"
            "Writes a synthetic trace (Q, K, V of every layer, float32; format in\n"
            "tools/trace.h) to OUT. Keys come from drifting clusters visited in topic phases;\n"
            "each query aims at the cluster of a random earlier token.\n"
            "--rope-base B > 0 applies RoPE of base B (adjacent pairs) to every query and key\n"
            "at its token index, like a rotary model's post-rotary Q and K.\n"
            "Defaults: --layers 2 --q-heads 8 --kv-heads 2 --d 64 --n 4096 --seed 1, no rope.\n");
}

/* Parse an unsigned decimal option value; -1 on junk. */
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !end || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Generate layer `layer` into Q, K, V ([n][heads][d]); cl is scratch of n ints. */
static int synth_layer(const trace_shape *sh, uint32_t layer, uint64_t seed, float *Q, float *K,
                       float *V, int *cl, float *kbuf, float *vbuf) {
    const size_t d = sh->head_dim, n = (size_t)sh->n_tokens;
    const uint32_t g = sh->q_heads / sh->kv_heads;
    for (uint32_t kh = 0; kh < sh->kv_heads; kh++) {
        synth_stream_cfg cfg = eval_workload(
            (int)d, 32, 2048, 0.002f, seed ^ (0x9e3779b97f4a7c15ull * (1 + layer * 4099ull + kh)));
        synth_stream *st = synth_stream_create(&cfg);
        if (!st) return -1;
        synth_rng rng;
        synth_rng_seed(&rng, cfg.seed ^ 0xa5a5a5a5u);
        for (size_t t = 0; t < n; t++) {
            synth_stream_next(st, kbuf, vbuf, 1);
            cl[t] = synth_stream_last_cluster(st);
            memcpy(K + (t * sh->kv_heads + kh) * d, kbuf, d * sizeof(float));
            memcpy(V + (t * sh->kv_heads + kh) * d, vbuf, d * sizeof(float));
            for (uint32_t h = 0; h < g; h++) {
                size_t j = (size_t)(synth_rng_uniform(&rng) * (double)(t + 1));
                if (j > t) j = t;
                float *q = Q + (t * sh->q_heads + kh * g + h) * d;
                synth_stream_query(st, cl[j], 1.0f, 0.3f, q);
            }
        }
        synth_stream_destroy(st);
    }
    return 0;
}

int main(int argc, char **argv) {
    trace_shape sh = {.layers = 2, .q_heads = 8, .kv_heads = 2, .head_dim = 64, .n_tokens = 4096};
    uint64_t seed = 1;
    double rope = 0.0;
    const char *out = NULL;
    int rc = 1, lib_err = 0;
    float *Q = NULL, *K = NULL, *V = NULL, *kb = NULL, *vb = NULL;
    int *cl = NULL;
    trace_writer *w = NULL;
    skv_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x = 0;
        uint32_t *dst = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--rope-base")) {
            char *end = NULL;
            rope = v ? strtod(v, &end) : 0.0;
            if (!v || *end || !(rope >= 1.0) || rope > 1e12) {
                fprintf(stderr, "subkv-trace-synth: --rope-base needs a number >= 1\n");
                return 2;
            }
            i++;
            continue;
        } else if (!strcmp(a, "--layers")) {
            dst = &sh.layers;
        } else if (!strcmp(a, "--q-heads")) {
            dst = &sh.q_heads;
        } else if (!strcmp(a, "--kv-heads")) {
            dst = &sh.kv_heads;
        } else if (!strcmp(a, "--d")) {
            dst = &sh.head_dim;
        } else if (!strcmp(a, "--n") || !strcmp(a, "--seed")) {
            if (parse_u64(v, &x) != 0) {
                fprintf(stderr, "subkv-trace-synth: %s needs a non-negative integer\n", a);
                return 2;
            }
            *(!strcmp(a, "--n") ? &sh.n_tokens : &seed) = x;
            i++;
            continue;
        } else if (a[0] == '-' || out) {
            fprintf(stderr, "subkv-trace-synth: unknown option or extra argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            out = a;
            continue;
        }
        if (parse_u64(v, &x) != 0 || x > UINT32_MAX) {
            fprintf(stderr, "subkv-trace-synth: %s needs a non-negative integer\n", a);
            return 2;
        }
        *dst = (uint32_t)x;
        i++;
    }
    if (!out) {
        fprintf(stderr, "subkv-trace-synth: missing OUT path\n");
        usage(stderr);
        return 2;
    }
    if (trace_shape_check(&sh, &err) != SKV_OK) {
        fprintf(stderr, "subkv-trace-synth: %s\n", err.msg);
        return 2;
    }
    size_t qn = trace_q_floats(&sh), kn = trace_kv_floats(&sh);
    Q = malloc(qn * sizeof *Q);
    K = malloc(kn * sizeof *K);
    V = malloc(kn * sizeof *V);
    kb = malloc(sh.head_dim * sizeof *kb);
    vb = malloc(sh.head_dim * sizeof *vb);
    cl = malloc((size_t)sh.n_tokens * sizeof *cl);
    if (!Q || !K || !V || !kb || !vb || !cl) {
        fprintf(stderr, "subkv-trace-synth: out of memory for one layer (%zu floats)\n",
                qn + 2 * kn);
        goto cleanup;
    }
    if (trace_writer_open(out, &sh, &w, &err) != SKV_OK) {
        lib_err = 1;
        goto cleanup;
    }
    for (uint32_t l = 0; l < sh.layers; l++) {
        if (synth_layer(&sh, l, seed, Q, K, V, cl, kb, vb) != 0) {
            fprintf(stderr, "subkv-trace-synth: could not create a synth stream\n");
            goto cleanup;
        }
        for (size_t t = 0; t < (size_t)sh.n_tokens && rope > 0.0; t++) {
            for (uint32_t h = 0; h < sh.q_heads; h++)
                skv_rope_apply(Q + (t * sh.q_heads + h) * sh.head_dim, (int)sh.head_dim, t, rope,
                               1.0);
            for (uint32_t h = 0; h < sh.kv_heads; h++)
                skv_rope_apply(K + (t * sh.kv_heads + h) * sh.head_dim, (int)sh.head_dim, t, rope,
                               1.0);
        }
        if (trace_writer_write_layer(w, l, Q, K, V, &err) != SKV_OK) {
            lib_err = 1;
            goto cleanup;
        }
    }
    subkv_status st = trace_writer_close(w, &err);
    w = NULL;
    if (st != SKV_OK) {
        lib_err = 1;
        goto cleanup;
    }
    printf("wrote %s: %u layers x %u q heads x %u kv heads x d %u, %" PRIu64 " tokens\n", out,
           sh.layers, sh.q_heads, sh.kv_heads, sh.head_dim, sh.n_tokens);
    rc = 0;
cleanup:
    if (lib_err)
        fprintf(stderr, "subkv-trace-synth: %s: %s\n", subkv_status_name(err.code), err.msg);
    trace_writer_abort(w);
    free(Q);
    free(K);
    free(V);
    free(kb);
    free(vb);
    free(cl);
    return rc;
}
