/*
 * svc_seqs.h — a small set of service sequences with their in-process replicas
 * (svc_replica.h), shared by the fault, durability and limit suites (header-only):
 *
 *   svc_seqs_create(&s, client, n, rng)        create n sequences (subgen, h2o, exact, ...),
 *                                              prefill each layer, replicas in step
 *   svc_seqs_steps(&s, client, k, rng, apply)  k decode steps of every layer; apply != 0 also
 *                                              steps the replicas (else only the service)
 *   svc_seqs_check(&s, client, rng, what)      one step of every layer: the service answers
 *                                              bit for bit as the replicas
 *   svc_seqs_copy_replicas(&dst, &src)         replicas as they stand now (a second expected
 *                                              state: saved to and loaded from a buffer)
 * Include after <cmocka.h>, test_util.h, svc_check.h and svc_replica.h.
 */
#ifndef SUBKV_SVC_SEQS_H
#define SUBKV_SVC_SEQS_H

#include "svc_check.h"
#include "svc_replica.h"

enum { SVC_SEQS_MAX = 4, SVC_SEQS_PREFILL = 120 };

typedef struct svc_seqs {
    skv_model_shape sh;
    int n;
    uint64_t ids[SVC_SEQS_MAX];
    skv_config cfg[SVC_SEQS_MAX];
    uint32_t shards[SVC_SEQS_MAX];
    svc_replica rep[SVC_SEQS_MAX];
    uint64_t tokens; /* tokens of every layer as the replicas hold them */
} svc_seqs;

static inline float *svc_seqs_rand(synth_rng *r, size_t n) {
    float *x = tu_malloc(n * sizeof(float));
    synth_fill_normal(r, x, n, 1.0f);
    return x;
}

static inline void svc_seqs_create(svc_seqs *s, skv_client *c, int n, synth_rng *rng) {
    memset(s, 0, sizeof *s);
    s->sh = (skv_model_shape){2, 4, 2, 16};
    s->n = n;
    const skv_policy_id pol[SVC_SEQS_MAX] = {SKV_POLICY_SUBGEN, SKV_POLICY_H2O, SKV_POLICY_EXACT,
                                             SKV_POLICY_SINKWIN};
    const uint32_t shards[SVC_SEQS_MAX] = {2, 1, 3, 1};
    skv_err err = {0};
    const size_t kn = (size_t)s->sh.kv_heads * s->sh.head_dim;
    for (int i = 0; i < n; i++) {
        skv_config *cfg = &s->cfg[i];
        skv_config_default(cfg, pol[i], (int)s->sh.head_dim);
        if (pol[i] == SKV_POLICY_SUBGEN)
            cfg->sinks = 4, cfg->window = 16, cfg->samples = 4, cfg->budget_bytes = 8192;
        if (pol[i] == SKV_POLICY_H2O) cfg->heavy = 16, cfg->window = 16;
        if (pol[i] == SKV_POLICY_SINKWIN) cfg->sinks = 4, cfg->window = 32;
        cfg->seed = synth_rng_u64(rng) >> 1;
        s->shards[i] = shards[i];
        SVC_OK(skv_client_create_sequence(c, &s->sh, cfg, shards[i], 32, &s->ids[i], &err), &err);
        SVC_OK(svc_replica_init(&s->rep[i], &s->sh, cfg, s->ids[i], shards[i], 32, &err), &err);
        for (uint32_t l = 0; l < s->sh.layers; l++) {
            float *K = svc_seqs_rand(rng, SVC_SEQS_PREFILL * kn);
            float *V = svc_seqs_rand(rng, SVC_SEQS_PREFILL * kn);
            SVC_OK(skv_client_append(c, &s->sh, s->ids[i], l, SVC_SEQS_PREFILL, K, V, &err), &err);
            SVC_OK(svc_replica_append(&s->rep[i], l, SVC_SEQS_PREFILL, K, V, &err), &err);
            free(K), free(V);
        }
    }
    s->tokens = SVC_SEQS_PREFILL;
}

/* k steps of every layer, all sequences in one batch. Returns the first failing status (the
 * service's error in *err) or SKV_OK; apply: step the replicas too (only on success). */
static inline subkv_status svc_seqs_steps(svc_seqs *s, skv_client *c, int k, synth_rng *rng,
                                          int apply, skv_err *err) {
    const size_t B = (size_t)s->n, qn = (size_t)s->sh.q_heads * s->sh.head_dim,
                 kn = (size_t)s->sh.kv_heads * s->sh.head_dim;
    float *Q = tu_malloc(B * qn * sizeof(float)), *K = tu_malloc(B * kn * sizeof(float));
    float *V = tu_malloc(B * kn * sizeof(float)), *out = tu_malloc(B * qn * sizeof(float));
    float *want = tu_malloc(qn * sizeof(float));
    subkv_status st = SKV_OK;
    for (int t = 0; t < k && st == SKV_OK; t++) {
        for (uint32_t l = 0; l < s->sh.layers && st == SKV_OK; l++) {
            synth_fill_normal(rng, Q, B * qn, 1.0f);
            synth_fill_normal(rng, K, B * kn, 1.0f);
            synth_fill_normal(rng, V, B * kn, 1.0f);
            st = skv_client_step(c, &s->sh, l, B, s->ids, Q, K, V, out, err);
            for (size_t b = 0; b < B && st == SKV_OK && apply; b++)
                SVC_OK(
                    svc_replica_step(&s->rep[b], l, Q + b * qn, K + b * kn, V + b * kn, want, err),
                    err);
        }
        if (st == SKV_OK && apply) s->tokens++;
    }
    free(Q), free(K), free(V), free(out), free(want);
    return st;
}

/* One step of every layer; the service's outputs equal the replicas' bit for bit, and its
 * stats count exactly the replicas' tokens. */
static inline void svc_seqs_check(svc_seqs *s, skv_client *c, synth_rng *rng, const char *what) {
    for (int i = 0; i < s->n; i++) {
        const long long got = svc_stats_tokens_layer0(c, s->ids[i]);
        if (got != (long long)s->tokens)
            fail_msg("%s: sequence %llu holds %lld tokens per stats, expected %llu", what,
                     (unsigned long long)s->ids[i], got, (unsigned long long)s->tokens);
    }
    const size_t B = (size_t)s->n, qn = (size_t)s->sh.q_heads * s->sh.head_dim,
                 kn = (size_t)s->sh.kv_heads * s->sh.head_dim;
    float *Q = svc_seqs_rand(rng, B * qn), *K = svc_seqs_rand(rng, B * kn);
    float *V = svc_seqs_rand(rng, B * kn), *out = tu_malloc(B * qn * sizeof(float));
    float *want = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    for (uint32_t l = 0; l < s->sh.layers; l++) {
        SVC_OK(skv_client_step(c, &s->sh, l, B, s->ids, Q, K, V, out, &err), &err);
        for (size_t b = 0; b < B; b++) {
            SVC_OK(svc_replica_step(&s->rep[b], l, Q + b * qn, K + b * kn, V + b * kn, want, &err),
                   &err);
            svc_assert_bits_equal(out + b * qn, want, qn, what);
        }
    }
    s->tokens++;
    free(Q), free(K), free(V), free(out), free(want);
}

/* dst := src with replicas of their own (every sketch saved and loaded). */
static inline void svc_seqs_copy_replicas(svc_seqs *dst, const svc_seqs *src) {
    *dst = *src;
    skv_err err = {0};
    for (int i = 0; i < src->n; i++) {
        svc_replica *r = &dst->rep[i];
        const svc_replica *o = &src->rep[i];
        SVC_OK(svc_replica_init(r, &o->sh, &o->cfg, o->seq, o->shards, o->block, &err), &err);
        memcpy(r->tokens, o->tokens, o->sh.layers * sizeof *r->tokens);
        const size_t nsk = (size_t)o->sh.layers * o->sh.kv_heads * o->shards;
        for (size_t k = 0; k < nsk; k++) {
            skv_buf b = {0};
            size_t used = 0;
            SVC_OK(skv_sketch_save(o->sk[k], &b, &err), &err);
            skv_sketch_destroy(r->sk[k]);
            r->sk[k] = NULL;
            SVC_OK(skv_sketch_load(b.data, b.len, &r->sk[k], &used, &err), &err);
            skv_buf_free(&b);
        }
    }
}

static inline void svc_seqs_free(svc_seqs *s) {
    for (int i = 0; i < s->n; i++) svc_replica_free(&s->rep[i]);
}

#endif /* SUBKV_SVC_SEQS_H */
