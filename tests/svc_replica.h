/*
 * svc_replica.h — one service sequence recomputed in-process with the cache library, the way
 * the service is specified to compute it (coordinator/shard_map.h, coordinator/coord_ops.c):
 *
 *  - sketch (layer l, kv head h, shard r) has config skv_shard_item_config(cfg, seq, l, h, r,
 *    shards); token t of a layer belongs to shard skv_shard_of_token(t, block, shards);
 *  - an append hands each sketch the tokens of the chunk that are its own, in token order,
 *    in one skv_sketch_append call;
 *  - a step appends the token to its shard's sketch, attends the g query rows of head h on
 *    every shard, and for q head h*g+j takes shard 0's partial j, merges shards 1, 2, ... in
 *    order (skv_partial_merge) and writes skv_partial_output;
 *  - refreshkv with decide = layer (skv_shard_layer_rule): one skv_layer_rule per layer sees
 *    every append (n tokens) and, at each step, all the layer's query heads; when it says
 *    "full", every sketch of the layer (all heads, all shards) gets skv_sketch_refresh before
 *    its attend, and the rule commits after the step.
 *
 * The service must answer bit for bit what this computes. Header-only; no global state.
 */
#ifndef SUBKV_SVC_REPLICA_H
#define SUBKV_SVC_REPLICA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shard_map.h"
#include "subkv.h"
#include "subkv_client.h"

typedef struct svc_replica {
    skv_model_shape sh;
    skv_config cfg;
    uint64_t seq;
    uint32_t shards, block;
    skv_sketch **sk;  /* [layer][kv head][shard] */
    uint64_t *tokens; /* per layer */
    float *kbuf, *vbuf;
    size_t buf_rows;
    skv_partial *part, *acc; /* g partials each */
    skv_layer_rule *rule;    /* per layer, refreshkv decide = layer only (else NULL) */
    float *rule_q;           /* [layer][head_dim] */
} svc_replica;

static inline skv_sketch **svc_replica_at(svc_replica *r, uint32_t l, uint32_t h, uint32_t s) {
    return &r->sk[((size_t)l * r->sh.kv_heads + h) * r->shards + s];
}

static inline void svc_replica_free(svc_replica *r) {
    if (r->sk)
        for (size_t i = 0; i < (size_t)r->sh.layers * r->sh.kv_heads * r->shards; i++)
            skv_sketch_destroy(r->sk[i]);
    free(r->sk);
    free(r->tokens);
    free(r->kbuf);
    free(r->vbuf);
    free(r->part);
    free(r->acc);
    free(r->rule);
    free(r->rule_q);
    memset(r, 0, sizeof *r);
}

/* shards 0 or 1: no context sharding; block 0: the service's default (4096). */
static inline subkv_status svc_replica_init(svc_replica *r, const skv_model_shape *sh,
                                            const skv_config *cfg, uint64_t seq, uint32_t shards,
                                            uint32_t block, skv_err *err) {
    memset(r, 0, sizeof *r);
    r->sh = *sh;
    r->cfg = *cfg;
    r->seq = seq;
    r->shards = shards ? shards : 1;
    r->block = block ? block : 4096;
    const size_t n = (size_t)sh->layers * sh->kv_heads * r->shards;
    const uint32_t g = sh->q_heads / sh->kv_heads;
    r->sk = calloc(n, sizeof *r->sk);
    r->tokens = calloc(sh->layers, sizeof *r->tokens);
    r->part = malloc(g * skv_partial_stride((int)sh->head_dim));
    r->acc = malloc(g * skv_partial_stride((int)sh->head_dim));
    if (skv_shard_layer_rule(cfg)) {
        r->rule = calloc(sh->layers, sizeof *r->rule);
        r->rule_q = calloc((size_t)sh->layers * sh->head_dim, sizeof *r->rule_q);
    }
    if (!r->sk || !r->tokens || !r->part || !r->acc ||
        (skv_shard_layer_rule(cfg) && (!r->rule || !r->rule_q))) {
        svc_replica_free(r);
        if (err) err->code = SKV_ERR_NOMEM, snprintf(err->msg, sizeof err->msg, "replica");
        return SKV_ERR_NOMEM;
    }
    for (uint32_t l = 0; l < sh->layers; l++)
        for (uint32_t h = 0; h < sh->kv_heads; h++)
            for (uint32_t s = 0; s < r->shards; s++) {
                skv_config c;
                skv_shard_item_config(cfg, seq, l, h, s, r->shards, &c);
                subkv_status st = skv_sketch_create(&c, svc_replica_at(r, l, h, s), err);
                if (st != SKV_OK) {
                    svc_replica_free(r);
                    return st;
                }
            }
    return SKV_OK;
}

static inline subkv_status svc_replica_grow(svc_replica *r, size_t rows, skv_err *err) {
    if (rows <= r->buf_rows) return SKV_OK;
    const size_t bytes = rows * r->sh.head_dim * sizeof(float);
    float *k = realloc(r->kbuf, bytes), *v = k ? realloc(r->vbuf, bytes) : NULL;
    if (k) r->kbuf = k;
    if (!k || !v) {
        if (err) err->code = SKV_ERR_NOMEM, snprintf(err->msg, sizeof err->msg, "replica buf");
        return SKV_ERR_NOMEM;
    }
    r->vbuf = v;
    r->buf_rows = rows;
    return SKV_OK;
}

/* A prefill chunk of one layer: K, V [n][kv_heads][head_dim], as skv_client_append. */
static inline subkv_status svc_replica_append(svc_replica *r, uint32_t layer, size_t n,
                                              const float *K, const float *V, skv_err *err) {
    const size_t d = r->sh.head_dim, kv = r->sh.kv_heads;
    subkv_status st = svc_replica_grow(r, n, err);
    if (st != SKV_OK) return st;
    const uint64_t t0 = r->tokens[layer];
    for (uint32_t h = 0; h < kv; h++)
        for (uint32_t s = 0; s < r->shards; s++) {
            size_t cnt = 0;
            for (size_t i = 0; i < n; i++) {
                if (skv_shard_of_token(t0 + i, r->block, r->shards) != s) continue;
                memcpy(r->kbuf + cnt * d, K + (i * kv + h) * d, d * sizeof(float));
                memcpy(r->vbuf + cnt * d, V + (i * kv + h) * d, d * sizeof(float));
                cnt++;
            }
            if (!cnt) continue;
            st = skv_sketch_append(*svc_replica_at(r, layer, h, s), r->kbuf, r->vbuf, cnt, (int)d,
                                   err);
            if (st != SKV_OK) return st;
        }
    r->tokens[layer] += n;
    if (r->rule) skv_layer_rule_appended(&r->rule[layer], n);
    return SKV_OK;
}

/* One sequence's decode step: q [q_heads][d], k, v [kv_heads][d] -> out [q_heads][d]. */
static inline subkv_status svc_replica_step(svc_replica *r, uint32_t layer, const float *q,
                                            const float *k, const float *v, float *out,
                                            skv_err *err) {
    const int d = (int)r->sh.head_dim;
    const uint32_t kv = r->sh.kv_heads, g = r->sh.q_heads / kv;
    const uint32_t s_new = skv_shard_of_token(r->tokens[layer], r->block, r->shards);
    float *qref = r->rule ? r->rule_q + (size_t)layer * (size_t)d : NULL;
    const int full = r->rule && skv_layer_rule_check(&r->rule[layer], qref, r->cfg.stride,
                                                     r->cfg.threshold, q, (int)r->sh.q_heads, d);
    for (uint32_t h = 0; h < kv; h++) {
        for (uint32_t s = 0; full && s < r->shards; s++) {
            subkv_status st = skv_sketch_refresh(*svc_replica_at(r, layer, h, s), err);
            if (st != SKV_OK) return st;
        }
        subkv_status st = skv_sketch_append(*svc_replica_at(r, layer, h, s_new), k + (size_t)h * d,
                                            v + (size_t)h * d, 1, d, err);
        if (st != SKV_OK) return st;
        for (uint32_t s = 0; s < r->shards; s++) {
            st = skv_sketch_attend(*svc_replica_at(r, layer, h, s), q + (size_t)h * g * d, (int)g,
                                   d, s == 0 ? r->acc : r->part, err);
            if (st != SKV_OK) return st;
            if (s > 0)
                for (uint32_t j = 0; j < g; j++)
                    skv_partial_merge(skv_partial_at(r->acc, d, j), skv_partial_at(r->part, d, j),
                                      d);
        }
        for (uint32_t j = 0; j < g; j++)
            skv_partial_output(skv_partial_at(r->acc, d, j), d, out + ((size_t)h * g + j) * d);
    }
    r->tokens[layer]++;
    if (r->rule) {
        skv_layer_rule_appended(&r->rule[layer], 1);
        skv_layer_rule_commit(&r->rule[layer], qref, r->cfg.stride, full, q, (int)r->sh.q_heads, d,
                              r->tokens[layer]);
    }
    return SKV_OK;
}

#endif /* SUBKV_SVC_REPLICA_H */
