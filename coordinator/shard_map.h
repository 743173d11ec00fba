/*
 * shard_map.h — where each sketch lives. Pure functions, no MPI: the coordinator, the
 * workers and the tests (which recompute the same shards in-process) share them.
 *
 * A sequence's sketches are (layer, kv_head, shard) for shard < shards (context shards;
 * 1 = none). Flattened as f = (layer * kv_heads + kv_head) * shards + shard, the sketch
 * lives on worker rank 1 + (f + seq_id) mod nworkers: heads spread round-robin, a head's
 * context shards land on consecutive (distinct, when shards <= nworkers) workers, and
 * sequences start at different workers. With the coordinator's --local-worker, rank 0 owns a
 * shard too: the same rule over the nworkers + 1 owners 0..nworkers, sketch f on rank
 * (f + seq_id) mod (nworkers + 1) (skv_shard_owner_of). Token t of a layer goes to context shard
 * (t / block) mod shards: blocks of `block` tokens dealt round-robin.
 */
#ifndef SUBKV_SHARD_MAP_H
#define SUBKV_SHARD_MAP_H

#include <stdint.h>

#include "subkv.h"

/* MPI rank (1..nworkers) owning sketch (seq, layer, kv_head, shard). */
int skv_shard_owner(int nworkers, uint64_t seq_id, uint32_t layer, uint32_t kv_head,
                    uint32_t kv_heads, uint32_t shard, uint32_t shards);

/* The same rule over `owners` ranks first..first + owners - 1: rank first + (f + seq_id) mod
 * owners. skv_shard_owner(n, ...) is skv_shard_owner_of(1, n, ...); the coordinator with a
 * local worker uses skv_shard_owner_of(0, nworkers + 1, ...). owners >= 1. */
int skv_shard_owner_of(int first, int owners, uint64_t seq_id, uint32_t layer, uint32_t kv_head,
                       uint32_t kv_heads, uint32_t shard, uint32_t shards);

/* Context shard of token index t. */
static inline uint32_t skv_shard_of_token(uint64_t t, uint32_t block, uint32_t shards) {
    return shards <= 1 ? 0u : (uint32_t)((t / block) % shards);
}

/* The config of one sketch: base with the RNG key (seq, layer, head) filled in; context
 * shards of a head get distinct keys (head = kv_head * shards + shard). A refreshkv base
 * with decide = layer gets threshold -1: the coordinator decides for the whole layer
 * (skv_shard_layer_rule) and the sketch never decides alone. */
void skv_shard_item_config(const skv_config *base, uint64_t seq_id, uint32_t layer,
                           uint32_t kv_head, uint32_t shard, uint32_t shards, skv_config *out);

/* Does the coordinator run the per-layer refresh rule (skv_layer_rule) for this sequence? */
static inline int skv_shard_layer_rule(const skv_config *base) {
    return base->policy == SKV_POLICY_REFRESHKV && base->decide == SKV_DECIDE_LAYER;
}

/* The rule above in one line, for `subkv stats`; skv_shard_rule_for(1): with the local
 * worker on rank 0 (skv_shard_rule_for(0) == skv_shard_rule()). */
const char *skv_shard_rule(void);
const char *skv_shard_rule_for(int local_worker);

#endif /* SUBKV_SHARD_MAP_H */
