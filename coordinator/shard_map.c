/* shard_map.c — see shard_map.h. */
#include "shard_map.h"

int skv_shard_owner_of(int first, int owners, uint64_t seq_id, uint32_t layer, uint32_t kv_head,
                       uint32_t kv_heads, uint32_t shard, uint32_t shards) {
    const uint64_t f = ((uint64_t)layer * kv_heads + kv_head) * shards + shard;
    return first + (int)((f + seq_id) % (uint64_t)owners);
}

int skv_shard_owner(int nworkers, uint64_t seq_id, uint32_t layer, uint32_t kv_head,
                    uint32_t kv_heads, uint32_t shard, uint32_t shards) {
    return skv_shard_owner_of(1, nworkers, seq_id, layer, kv_head, kv_heads, shard, shards);
}

void skv_shard_item_config(const skv_config *base, uint64_t seq_id, uint32_t layer,
                           uint32_t kv_head, uint32_t shard, uint32_t shards, skv_config *out) {
    *out = *base;
    out->seq_id = seq_id;
    out->layer = layer;
    out->head = kv_head * (shards ? shards : 1u) + shard;
    if (skv_shard_layer_rule(base)) out->threshold = -1.0f;
}

const char *skv_shard_rule_for(int local_worker) {
    if (!local_worker) return skv_shard_rule();
    return "sketch (seq, layer, kv_head, shard) -> rank ((layer*kv_heads + kv_head)*shards + "
           "shard + seq) mod workers, ranks 0..workers-1 (rank 0: the coordinator's local "
           "worker); token t -> shard (t / block) mod shards";
}

const char *skv_shard_rule(void) {
    return "sketch (seq, layer, kv_head, shard) -> worker 1 + ((layer*kv_heads + kv_head)*shards "
           "+ shard + seq) mod workers; token t -> shard (t / block) mod shards";
}
