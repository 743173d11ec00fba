/*
 * llama.h — a llama-architecture forward pass in C over a GGUF model (SmolLM2-135M and the
 * like), whose attention over the stored context goes through subkv's policy contract.
 *
 * Model. Weights are dequantised to float32 at load (135M parameters: 0.54 GB) so prefill is
 * matrix-matrix products (CBLAS sgemm) and decode matrix-vector (sgemv). Per layer:
 *   h = RMSNorm(x) * attn_norm;  q = Wq h, k = Wk h, v = Wv h     (GQA: n_head q, n_head_kv kv)
 *   rotary on q, k, "NORM" style: adjacent pairs (x[2i], x[2i+1]) turn by pos * base^(-2i/d)
 *     (llama.cpp's converter permuted Wq / Wk rows so that this equals HF's rotate_half)
 *   x += Wo attention(q, K, V);  h = RMSNorm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * Wup h)
 *   logits = E RMSNorm(x) * output_norm  (E = token_embd: tied output, when no output.weight)
 * RMSNorm(x) = x / sqrt(mean(x^2) + eps).
 *
 * Attention. Every (layer, kv head) of a session is one sketch behind an attention backend
 * (llama_attn): `local` keeps skv_sketch objects in-process, `service` keeps them in a running
 * subkv service (libsubkv). Prefill appends the chunk's post-rotary K, V to each sketch; the
 * chunk's own causal attention is computed exactly in the prefill (and merged, by the partial
 * rule, with the sketch's answer for the context stored before the chunk, if any). Each decode
 * step appends the token's K, V and attends its query heads through the backend.
 */
#ifndef SUBKV_LLAMA_H
#define SUBKV_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "subkv.h"

typedef struct llama_hparams {
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
} llama_hparams;

typedef struct llama_model llama_model;

/* Load a llama GGUF: checks the architecture, every hyper-parameter and every tensor's shape
 * and type (errors name the key or tensor), dequantises the weights. *out: llama_model_free. */
subkv_status llama_model_load(const char *path, llama_model **out, skv_err *err);
void llama_model_free(llama_model *m);
const llama_hparams *llama_model_hparams(const llama_model *m);
/* The GGUF the model came from (its metadata: tokenizer, chat template), open until free. */
const gguf_file *llama_model_gguf(const llama_model *m);

/* ---- attention backends ---------------------------------------------------------------- */

typedef struct llama_attn llama_attn;

/* The backend contract. Tensors are float32, row-major: K, V [n][n_head_kv][head_dim],
 * Q and out [n][n_head][head_dim]; query head j belongs to kv head j / (n_head / n_head_kv). */
typedef struct llama_attn_ops {
    const char *name;
    /* Append n >= 1 tokens' K, V of one layer to its sketches. */
    subkv_status (*append)(llama_attn *a, uint32_t layer, size_t n, const float *K, const float *V,
                           skv_err *err);
    /* Decode step of one layer: append one token's K, V, then attend its Q; out = o / l. */
    subkv_status (*step)(llama_attn *a, uint32_t layer, const float *Q, const float *K,
                         const float *V, float *out, skv_err *err);
    /* Optional (NULL when the backend cannot return partials): partials [n][n_head] at stride
     * skv_partial_stride(head_dim) of n queries against the context stored so far. */
    subkv_status (*attend_partials)(llama_attn *a, uint32_t layer, size_t n, const float *Q,
                                    skv_partial *out, skv_err *err);
    /* Bytes the sketches hold now: local, this session's; service, every sequence the service
     * holds (its stats reply); 0 when unknown. */
    size_t (*bytes)(llama_attn *a);
    void (*destroy)(llama_attn *a);
} llama_attn_ops;

struct llama_attn {
    const llama_attn_ops *ops;
};

/*
 * In-process sketches: one per (layer, kv head), created from `policy` (its head_dim is set
 * from hp; seed/layer/head are filled per sketch from policy->seed). Errors of
 * skv_sketch_create (a budget too small: SKV_ERR_BUDGET) come back as they are.
 */
/* One sketch per (layer, kv head) of hp from policy (head_dim, layer and head filled in) into
 * sk[layer * n_head_kv + head]. Stops at the first error, leaving the sketches made so far in
 * sk for the caller's cleanup. */
subkv_status llama_sketches_create(const llama_hparams *hp, const skv_config *policy,
                                   skv_sketch **sk, skv_err *err);

subkv_status llama_attn_local_create(const llama_hparams *hp, const skv_config *policy,
                                     llama_attn **out, skv_err *err);
/* A sequence in the subkv service at addr (token: shared secret or NULL), dropped at destroy. */
subkv_status llama_attn_service_create(const llama_hparams *hp, const skv_config *policy,
                                       const char *addr, const char *token, llama_attn **out,
                                       skv_err *err);
/* "local" or "service" by name (addr/token used by service only). */
subkv_status llama_attn_create(const char *kind, const llama_hparams *hp, const skv_config *policy,
                               const char *addr, const char *token, llama_attn **out, skv_err *err);
void llama_attn_destroy(llama_attn *a);

/* ---- sessions: one sequence being processed --------------------------------------------- */

typedef struct llama_session llama_session;

/* Called by a forward pass once per layer with that layer's post-rotary Q [n][n_head][d],
 * K and V [n][n_head_kv][d] of the tokens processed (trace writers); non-zero aborts. */
typedef int (*llama_qkv_hook)(void *ctx, uint32_t layer, size_t n, const float *Q, const float *K,
                              const float *V);

/* A session over a model (borrowed) and a backend (borrowed, fresh: no tokens stored). */
subkv_status llama_session_create(const llama_model *m, llama_attn *attn, llama_session **out,
                                  skv_err *err);
void llama_session_destroy(llama_session *s);
void llama_session_set_hook(llama_session *s, llama_qkv_hook hook, void *ctx);
/* Tokens processed so far (the next token's position). */
uint64_t llama_session_pos(const llama_session *s);
/*
 * Continue a sequence whose first pos tokens did not go through this session: the caller put
 * their post-rotary K, V into the (fresh) backend through its ops->append, e.g. copied from
 * another session's prefill by its Q/K/V hook (the eval runs one exact prefill, then decodes
 * the tail through each policy). The next token is at position pos. Only on a session that has
 * processed nothing yet (else SKV_ERR_INVALID_ARG).
 */
subkv_status llama_session_resume(llama_session *s, uint64_t pos, skv_err *err);

/*
 * Prefill n >= 1 tokens (ids < n_vocab, else SKV_ERR_INVALID_ARG) at the next positions.
 * logits (may be NULL): [n_vocab] of the last token, or [n][n_vocab] of every token when
 * all_logits. A failure part-way leaves the session unusable (destroy it).
 */
subkv_status llama_prefill(llama_session *s, const int32_t *tokens, size_t n, float *logits,
                           int all_logits, skv_err *err);
/* One decode step: token at the next position, attention through the backend's step. */
subkv_status llama_decode(llama_session *s, int32_t token, float *logits, skv_err *err);

/* Index of the largest logit (greedy; n >= 1). */
int32_t llama_argmax(const float *logits, uint32_t n);
/* -log softmax(logits)[target], in double (n >= 1, target < n). */
double llama_nll(const float *logits, uint32_t n, int32_t target);

#endif /* SUBKV_LLAMA_H */
