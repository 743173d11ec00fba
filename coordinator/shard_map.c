/* shard_map.c — see shard_map.h. */
#include "shard_map.h"

int skv_shard_owner(int nworkers, uint64_t seq_id, uint32_t layer, uint32_t kv_head,
                    uint32_t kv_heads, uint32_t shard, uint32_t shards) {
    const uint64_t f = ((uint64_t)layer * kv_heads + kv_head) * shards + shard;
    return 1 + (int)((f + seq_id) % (uint64_t)nworkers);
}

void skv_shard_item_config(const skv_config *base, uint64_t seq_id, uint32_t layer,
                           uint32_t kv_head, uint32_t shard, uint32_t shards, skv_config *out) {
    *out = *base;
    out->seq_id = seq_id;
    out->layer = layer;
    out->head = kv_head * (shards ? shards : 1u) + shard;
    if (skv_shard_layer_rule(base)) out->threshold = -1.0f;
}

const char *skv_shard_rule(void) {
    return "sketch (seq, layer, kv_head, shard) -> worker 1 + ((layer*kv_heads + kv_head)*shards "
           "+ shard + seq) mod workers; token t -> shard (t / block) mod shards";
}
