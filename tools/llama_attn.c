/*
 * llama_attn.c — the attention backends of a llama session (see llama.h): `local` holds one
 * skv_sketch per (layer, kv head) in-process; `service` holds the same in a running subkv
 * service through libsubkv (create_sequence / append / step, dropped at destroy).
 */
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "skv_check.h"
#include "subkv_client.h"

/* ---- local ------------------------------------------------------------------------------ */

typedef struct attn_local {
    llama_attn base;
    llama_hparams hp;
    skv_sketch **sk; /* [layer][kv head] */
    float *kb, *vb;  /* one head's K, V gathered contiguous: [n][d] (grown) */
    size_t cap;
    skv_partial *parts; /* [group] */
} attn_local;

/* Gather head h of X[n][kv][d] into out[n][d]. */
static void gather_head(const float *X, size_t n, uint32_t kv, uint32_t d, uint32_t h, float *out) {
    for (size_t t = 0; t < n; t++) memcpy(out + t * d, X + (t * kv + h) * d, d * sizeof(float));
}

static subkv_status local_append(llama_attn *a, uint32_t layer, size_t n, const float *K,
                                 const float *V, skv_err *err) {
    attn_local *s = (attn_local *)a;
    const uint32_t kv = s->hp.n_head_kv, d = s->hp.head_dim;
    if (layer >= s->hp.n_layer) return skv_set_error(err, SKV_ERR_INVALID_ARG, "layer %u", layer);
    if (n > s->cap) {
        float *kb = realloc(s->kb, n * d * sizeof(float));
        if (kb) s->kb = kb;
        float *vb = realloc(s->vb, n * d * sizeof(float));
        if (vb) s->vb = vb;
        if (!kb || !vb) return skv_set_error(err, SKV_ERR_NOMEM, "attn local: %zu tokens", n);
        s->cap = n;
    }
    for (uint32_t h = 0; h < kv; h++) {
        gather_head(K, n, kv, d, h, s->kb);
        gather_head(V, n, kv, d, h, s->vb);
        SKV_CHECK(skv_sketch_append(s->sk[(size_t)layer * kv + h], s->kb, s->vb, n, (int)d, err));
    }
    return SKV_OK;
}

static subkv_status local_partials(llama_attn *a, uint32_t layer, size_t n, const float *Q,
                                   skv_partial *out, skv_err *err) {
    attn_local *s = (attn_local *)a;
    const uint32_t kv = s->hp.n_head_kv, d = s->hp.head_dim, H = s->hp.n_head, G = H / kv;
    if (layer >= s->hp.n_layer) return skv_set_error(err, SKV_ERR_INVALID_ARG, "layer %u", layer);
    /* The G query heads of kv head h are contiguous in Q[t]: heads h*G .. h*G+G-1. */
    for (size_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < kv; h++)
            SKV_CHECK(skv_sketch_attend(s->sk[(size_t)layer * kv + h], Q + (t * H + h * G) * d,
                                        (int)G, (int)d, skv_partial_at(out, (int)d, t * H + h * G),
                                        err));
    return SKV_OK;
}

static subkv_status local_step(llama_attn *a, uint32_t layer, const float *Q, const float *K,
                               const float *V, float *out, skv_err *err) {
    attn_local *s = (attn_local *)a;
    const uint32_t d = s->hp.head_dim, H = s->hp.n_head;
    SKV_CHECK(local_append(a, layer, 1, K, V, err));
    SKV_CHECK(local_partials(a, layer, 1, Q, s->parts, err));
    for (uint32_t j = 0; j < H; j++)
        skv_partial_output(skv_partial_at(s->parts, (int)d, j), (int)d, out + (size_t)j * d);
    return SKV_OK;
}

static size_t local_bytes(llama_attn *a) {
    attn_local *s = (attn_local *)a;
    size_t b = 0;
    for (size_t i = 0; i < (size_t)s->hp.n_layer * s->hp.n_head_kv; i++)
        b += skv_sketch_bytes(s->sk[i]);
    return b;
}

static void local_destroy(llama_attn *a) {
    attn_local *s = (attn_local *)a;
    if (!s) return;
    if (s->sk)
        for (size_t i = 0; i < (size_t)s->hp.n_layer * s->hp.n_head_kv; i++)
            skv_sketch_destroy(s->sk[i]);
    free(s->sk);
    free(s->kb);
    free(s->vb);
    free(s->parts);
    free(s);
}

static const llama_attn_ops LOCAL_OPS = {"local",        local_append, local_step,
                                         local_partials, local_bytes,  local_destroy};

subkv_status llama_sketches_create(const llama_hparams *hp, const skv_config *policy,
                                   skv_sketch **sk, skv_err *err) {
    for (uint32_t l = 0; l < hp->n_layer; l++)
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            skv_config c = *policy;
            c.head_dim = (int)hp->head_dim;
            c.layer = l;
            c.head = h;
            SKV_CHECK(skv_sketch_create(&c, &sk[(size_t)l * hp->n_head_kv + h], err));
        }
    return SKV_OK;
}

subkv_status llama_attn_local_create(const llama_hparams *hp, const skv_config *policy,
                                     llama_attn **out, skv_err *err) {
    if (!hp || !policy || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL arg");
    *out = NULL;
    attn_local *s = calloc(1, sizeof *s);
    if (!s) return skv_set_error(err, SKV_ERR_NOMEM, "attn local");
    s->base.ops = &LOCAL_OPS;
    s->hp = *hp;
    const size_t nsk = (size_t)hp->n_layer * hp->n_head_kv;
    s->sk = calloc(nsk, sizeof *s->sk);
    s->parts = malloc(hp->n_head * skv_partial_stride((int)hp->head_dim));
    subkv_status st = SKV_OK;
    if (!s->sk || !s->parts) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "attn local: %zu sketches", nsk);
        goto fail;
    }
    SKV_CHECK_GOTO(llama_sketches_create(hp, policy, s->sk, err), st, fail);
    *out = &s->base;
    return SKV_OK;
fail:
    local_destroy(&s->base);
    return st;
}

/* ---- service ------------------------------------------------------------------------------ */

typedef struct attn_service {
    llama_attn base;
    skv_model_shape shape;
    skv_client *c;
    uint64_t seq;
    int have_seq;
} attn_service;

static subkv_status svc_append(llama_attn *a, uint32_t layer, size_t n, const float *K,
                               const float *V, skv_err *err) {
    attn_service *s = (attn_service *)a;
    return skv_client_append(s->c, &s->shape, s->seq, layer, n, K, V, err);
}

static subkv_status svc_step(llama_attn *a, uint32_t layer, const float *Q, const float *K,
                             const float *V, float *out, skv_err *err) {
    attn_service *s = (attn_service *)a;
    return skv_client_step(s->c, &s->shape, layer, 1, &s->seq, Q, K, V, out, err);
}

static size_t svc_bytes(llama_attn *a) {
    attn_service *s = (attn_service *)a;
    uint64_t b = 0;
    skv_err e;
    return skv_client_stats_bytes(s->c, &b, NULL, &e) == SKV_OK ? (size_t)b : 0;
}

static void svc_destroy(llama_attn *a) {
    attn_service *s = (attn_service *)a;
    if (!s) return;
    skv_err e;
    if (s->have_seq) (void)skv_client_drop_sequence(s->c, s->seq, &e);
    skv_client_close(s->c);
    free(s);
}

/* The service answers o / l, not partials: attend_partials is NULL (prefill after stored
 * context then goes token by token through step). */
static const llama_attn_ops SERVICE_OPS = {"service", svc_append, svc_step,
                                           NULL,      svc_bytes,  svc_destroy};

subkv_status llama_attn_service_create(const llama_hparams *hp, const skv_config *policy,
                                       const char *addr, const char *token, llama_attn **out,
                                       skv_err *err) {
    if (!hp || !policy || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL arg");
    *out = NULL;
    attn_service *s = calloc(1, sizeof *s);
    if (!s) return skv_set_error(err, SKV_ERR_NOMEM, "attn service");
    s->base.ops = &SERVICE_OPS;
    s->shape = (skv_model_shape){hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim};
    skv_config c = *policy;
    c.head_dim = (int)hp->head_dim;
    subkv_status st = SKV_OK;
    SKV_CHECK_GOTO(skv_client_connect(addr ? addr : SKV_DEFAULT_ADDR, token, &s->c, err), st, fail);
    SKV_CHECK_GOTO(skv_client_create_sequence(s->c, &s->shape, &c, 1, 0, &s->seq, err), st, fail);
    s->have_seq = 1;
    *out = &s->base;
    return SKV_OK;
fail:
    svc_destroy(&s->base);
    return st;
}

subkv_status llama_attn_create(const char *kind, const llama_hparams *hp, const skv_config *policy,
                               const char *addr, const char *token, llama_attn **out,
                               skv_err *err) {
    if (kind && strcmp(kind, "service") == 0)
        return llama_attn_service_create(hp, policy, addr, token, out, err);
    if (!kind || strcmp(kind, "local") == 0) return llama_attn_local_create(hp, policy, out, err);
    return skv_set_error(err, SKV_ERR_INVALID_ARG, "attention backend '%s' (local or service)",
                         kind);
}

void llama_attn_destroy(llama_attn *a) {
    if (a) a->ops->destroy(a);
}
