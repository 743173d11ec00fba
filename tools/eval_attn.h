/*
 * eval_attn.h — the attention backend of subkv-eval: one skv_sketch per (layer, kv head) like
 * llama_attn_local, plus what an evaluation needs:
 *  - the prefix (the head of a window, prefilled once with exact attention) goes into fresh
 *    sketches from K, V captured by a Q/K/V hook (eval_attn_load_prefix), so each policy
 *    decodes only the tail (llama_session_resume);
 *  - h2o's scores can observe the prefix: its K, V are appended in chunks of `observe` tokens,
 *    each chunk followed by an attend of the captured queries of the chunk's last token (the
 *    heavy hitters H2O keeps are those the prefill's queries attended to);
 *  - from decode step `err_from` on, every step's output of every query head is compared with
 *    float64 exact attention over the full K, V (captured prefix + the tail's own tokens):
 *    mean relative error per layer (eval_attn_layer_err).
 */
#ifndef SUBKV_EVAL_ATTN_H
#define SUBKV_EVAL_ATTN_H

#include "llama.h"

typedef struct eval_attn eval_attn;

/* Captured prefix of one window: per layer K, V [n][n_head_kv][d] and, for every observe-th
 * token (positions observe-1, 2*observe-1, ...), Q [n / observe][n_head][d] (NULL: no
 * observation). Owned by the caller; must outlive the backends loaded from it. */
typedef struct eval_prefix {
    size_t n, observe, cap;
    size_t kv_row, q_row;   /* floats per token: n_head_kv * d, n_head * d */
    float **K, **V, **Qobs; /* [n_layer] */
} eval_prefix;

/* A fresh backend for `policy` (head_dim and layer/head filled per sketch); max_tail: most
 * decode steps it will see; err_from: first decode step whose error is measured. */
subkv_status eval_attn_create(const llama_hparams *hp, const skv_config *policy, size_t max_tail,
                              size_t err_from, eval_attn **out, skv_err *err);
/* The llama_attn view of it (for llama_session_create). */
llama_attn *eval_attn_base(eval_attn *a);
/* Append the captured prefix (with h2o observation when pre->Qobs) to every sketch. */
subkv_status eval_attn_load_prefix(eval_attn *a, const eval_prefix *pre, skv_err *err);
/* Mean relative error of layer l over the measured steps and query heads (-1: none). */
double eval_attn_layer_err(const eval_attn *a, uint32_t l);
/* Mean |log(normalizer estimate / exact normalizer)| of layer l over the same queries: the
 * error of the softmax denominator alone (the partial's l e^m vs sum_i e^{q.k_i/sqrt(d)}). */
double eval_attn_layer_norm_err(const eval_attn *a, uint32_t l);
/* Bytes all sketches hold; *partial: refreshkv's partial-cache bytes (else all bytes). */
size_t eval_attn_bytes(const eval_attn *a, size_t *partial);
/*
 * Mean key + value bytes one (layer, kv head) sketch's attend read per decode step, over every
 * decode step so far (NAN: none; h2o's observation attends of the prefix are not decode
 * steps). refreshkv: its own count (skv_stats.bytes_read: K partial-cache rows on a partial
 * step, every row of the full store on a full step; the first decode step is always a full
 * step, the selection a service's prefill would make); the others: the rows of their entries
 * (csr: its codes and exact rows). *full_frac (optional): refreshkv's fraction of decode
 * steps that were full steps (NAN for other policies).
 */
double eval_attn_read(const eval_attn *a, double *full_frac);
/* Mean over kv heads of layer l's sketch stats (clusters, merges, delta, refreshkv steps). */
void eval_attn_layer_stats(const eval_attn *a, uint32_t l, double *clusters, double *merges,
                           double *delta, double *full_frac);
void eval_attn_destroy(eval_attn *a);

/* Capture into pre from a llama_qkv_hook (ctx = eval_prefix, allocated by eval_prefix_init). */
int eval_prefix_hook(void *ctx, uint32_t layer, size_t n, const float *Q, const float *K,
                     const float *V);
/* Room for n tokens of hp's layers; observe 0: no queries kept. 0 or -1 (no memory). */
int eval_prefix_init(eval_prefix *pre, const llama_hparams *hp, size_t n, size_t observe);
void eval_prefix_free(eval_prefix *pre, const llama_hparams *hp);

/* A backend that stores nothing (append is a no-op, step fails): the exact prefill of a
 * window, whose K, V the hook captures. */
llama_attn *eval_attn_null(void);

#endif /* SUBKV_EVAL_ATTN_H */
