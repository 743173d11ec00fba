/*
 * subkv_client.h — libsubkv, the C client of the subkv service.
 *
 * A client holds one connection to a coordinator (TCP "HOST:PORT", default
 * 127.0.0.1:7439, or "unix:PATH"). Calls are synchronous: each sends one request frame
 * and waits for its reply. A client must not be used by two threads at once; open one
 * per thread. Every call returns a subkv_status; on failure `err` (may be NULL) carries
 * the code and the coordinator's or the library's message. A failed request changes
 * nothing on the service (see the service's error contract in README).
 *
 * Tensors are float32, row-major, little-endian:
 *   K, V of an append:      [n][kv_heads][head_dim]
 *   Q of a step or attend:  [B][q_heads][head_dim]; K, V of a step: [B][kv_heads][head_dim]
 *   out of a step / attend: [B][q_heads][head_dim]
 */
#ifndef SUBKV_CLIENT_H
#define SUBKV_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SKV_DEFAULT_ADDR "127.0.0.1:7439"

typedef struct skv_client skv_client;

typedef struct skv_model_shape {
    uint32_t layers, q_heads, kv_heads, head_dim;
} skv_model_shape;

/* Connect. token: the shared auth token, or NULL. */
subkv_status skv_client_connect(const char *addr, const char *token, skv_client **out,
                                skv_err *err);
void skv_client_close(skv_client *c);

/*
 * Create a sequence whose every (layer, kv head) holds a sketch of `policy` (policy->head_dim
 * must equal shape->head_dim; budget_bytes is per sketch). context_shards > 1 spreads each
 * head's tokens over that many workers in blocks of shard_block tokens (0: 4096).
 * *seq_id receives the new sequence's id.
 */
subkv_status skv_client_create_sequence(skv_client *c, const skv_model_shape *shape,
                                        const skv_config *policy, uint32_t context_shards,
                                        uint32_t shard_block, uint64_t *seq_id, skv_err *err);
subkv_status skv_client_drop_sequence(skv_client *c, uint64_t seq_id, skv_err *err);

/*
 * The tensor calls take the model shape the sequences were created with (it sizes the
 * tensors; the coordinator checks it against each sequence and fails with SKV_ERR_SHAPE).
 */

/* Prefill: append n tokens of one layer. */
subkv_status skv_client_append(skv_client *c, const skv_model_shape *shape, uint64_t seq_id,
                               uint32_t layer, size_t n, const float *K, const float *V,
                               skv_err *err);

/* Decode step of one layer for B sequences: append each one's token, attend its query. */
subkv_status skv_client_step(skv_client *c, const skv_model_shape *shape, uint32_t layer, size_t B,
                             const uint64_t *seq_ids, const float *Q, const float *K,
                             const float *V, float *out, skv_err *err);

/* Attend without appending. */
subkv_status skv_client_attend(skv_client *c, const skv_model_shape *shape, uint32_t layer,
                               size_t B, const uint64_t *seq_ids, const float *Q, float *out,
                               skv_err *err);

/* A human-readable report (workers, data path, shard map, sequences, bytes per policy) into
 * text[len]; truncated to fit, always NUL-terminated. */
subkv_status skv_client_stats(skv_client *c, char *text, size_t len, skv_err *err);

/* The same stats reply, reduced to numbers: bytes held by all workers together (every
 * sequence) and the worker count (workers may be NULL). */
subkv_status skv_client_stats_bytes(skv_client *c, uint64_t *total_bytes, uint32_t *workers,
                                    skv_err *err);

/* Ask every worker to write its sketches under dir (created if missing) atomically. */
subkv_status skv_client_checkpoint(skv_client *c, const char *dir, skv_err *err);

/* Ask the coordinator to finish in-flight work, stop the workers and exit. */
subkv_status skv_client_shutdown(skv_client *c, skv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* SUBKV_CLIENT_H */
