/*
 * sketch_table.h — a worker's sketches, keyed by (sequence, layer, kv head, context shard).
 * Open addressing with linear probing; grows at 1/2 load. Owns the sketches it holds.
 */
#ifndef SUBKV_SKETCH_TABLE_H
#define SUBKV_SKETCH_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

typedef struct skv_item_key {
    uint64_t seq;
    uint32_t layer, head, shard;
} skv_item_key;

struct skv_mirror; /* worker/gpu_attend.h: the sketch's entries on the GPU, if any */

typedef struct skv_table_entry {
    skv_item_key key;
    skv_sketch *sketch; /* NULL: empty slot */
    struct skv_mirror *mirror;
} skv_table_entry;

typedef struct skv_table {
    skv_table_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} skv_table;

void skv_table_init(skv_table *t);
/* Destroy every sketch and the table. */
void skv_table_free(skv_table *t);
skv_sketch *skv_table_find(const skv_table *t, const skv_item_key *k);
/* The entry of k (sketch and mirror), or NULL. Valid until the table changes. */
skv_table_entry *skv_table_find_entry(const skv_table *t, const skv_item_key *k);
/* Insert a new key (must be absent); the table takes the sketch. SKV_ERR_NOMEM on growth
 * failure (the sketch is then not taken). */
subkv_status skv_table_insert(skv_table *t, const skv_item_key *k, skv_sketch *s, skv_err *err);
/* Remove (and destroy) one key; returns 1 if it was there. */
int skv_table_remove(skv_table *t, const skv_item_key *k);
/* Remove every sketch of sequence seq; returns how many. */
size_t skv_table_drop_seq(skv_table *t, uint64_t seq);
/* Sum of skv_sketch_bytes over the table. */
size_t skv_table_bytes(const skv_table *t);

/*
 * A worker's checkpoint: "SKVW" | u32 version | u32 rank | u32 nworkers | u64 count |
 * count x (u64 seq | u32 layer | u32 head | u32 shard | u64 len | sketch (skv_sketch_save))
 * | u32 crc32c of everything before it. Little-endian.
 */
subkv_status skv_table_save(const skv_table *t, int rank, int nworkers, skv_buf *out, skv_err *err);
/* Parse a checkpoint written by rank `rank` of a job of `nworkers` workers into a new
 * table *out (initialised here), its sketches together reserving at most max_bytes
 * (SIZE_MAX: no limit), checked before each allocation. csr sketches find their dictionary
 * sets by name in `dicts` (loaded on first use; NULL: a csr entry fails). Any damage fails
 * with an error and leaves *out empty. */
struct skv_dicts;
subkv_status skv_table_load(const unsigned char *data, size_t len, int rank, int nworkers,
                            size_t max_bytes, struct skv_dicts *dicts, skv_table *out,
                            skv_err *err);

#endif /* SUBKV_SKETCH_TABLE_H */
