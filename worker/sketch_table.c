/* sketch_table.c — see sketch_table.h. */
#include "sketch_table.h"

#include <stdlib.h>
#include <string.h>

#include "gpu_attend.h"
#include "skv_check.h"

static uint64_t key_hash(const skv_item_key *k) {
    uint64_t h = k->seq * 0x9e3779b97f4a7c15ull;
    h ^= ((uint64_t)k->layer << 40) ^ ((uint64_t)k->head << 20) ^ k->shard;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static int key_eq(const skv_item_key *a, const skv_item_key *b) {
    return a->seq == b->seq && a->layer == b->layer && a->head == b->head && a->shard == b->shard;
}

void skv_table_init(skv_table *t) { memset(t, 0, sizeof *t); }

void skv_table_free(skv_table *t) {
    for (size_t i = 0; i < t->cap; i++) {
        skv_sketch_destroy(t->slots[i].sketch);
        skv_mirror_free(t->slots[i].mirror);
    }
    free(t->slots);
    skv_table_init(t);
}

static size_t probe(const skv_table *t, const skv_item_key *k) {
    size_t i = (size_t)key_hash(k) & (t->cap - 1);
    while (t->slots[i].sketch && !key_eq(&t->slots[i].key, k)) i = (i + 1) & (t->cap - 1);
    return i;
}

skv_sketch *skv_table_find(const skv_table *t, const skv_item_key *k) {
    if (t->cap == 0) return NULL;
    return t->slots[probe(t, k)].sketch;
}

skv_table_entry *skv_table_find_entry(const skv_table *t, const skv_item_key *k) {
    if (t->cap == 0) return NULL;
    skv_table_entry *e = &t->slots[probe(t, k)];
    return e->sketch ? e : NULL;
}

static subkv_status rehash(skv_table *t, size_t cap, skv_err *err) {
    skv_table_entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return skv_set_error(err, SKV_ERR_NOMEM, "sketch table of %zu slots", cap);
    skv_table old = *t;
    t->slots = slots;
    t->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].sketch) t->slots[probe(t, &old.slots[i].key)] = old.slots[i];
    free(old.slots);
    return SKV_OK;
}

subkv_status skv_table_insert(skv_table *t, const skv_item_key *k, skv_sketch *s, skv_err *err) {
    if (2 * (t->count + 1) > t->cap) SKV_CHECK(rehash(t, t->cap ? 2 * t->cap : 64, err));
    size_t i = probe(t, k);
    if (t->slots[i].sketch) return skv_set_error(err, SKV_ERR_INTERNAL, "duplicate sketch key");
    t->slots[i].key = *k;
    t->slots[i].sketch = s;
    t->slots[i].mirror = NULL;
    t->count++;
    return SKV_OK;
}

/* Backward-shift deletion keeps every probe chain intact without tombstones. */
static void remove_at(skv_table *t, size_t i) {
    skv_sketch_destroy(t->slots[i].sketch);
    skv_mirror_free(t->slots[i].mirror);
    t->slots[i].sketch = NULL;
    t->slots[i].mirror = NULL;
    t->count--;
    size_t j = i;
    for (;;) {
        j = (j + 1) & (t->cap - 1);
        if (!t->slots[j].sketch) return;
        size_t home = (size_t)key_hash(&t->slots[j].key) & (t->cap - 1);
        /* j's entry may move to i when its home is not cyclically within (i, j] */
        int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            t->slots[i] = t->slots[j];
            t->slots[j].sketch = NULL;
            t->slots[j].mirror = NULL;
            i = j;
        }
    }
}

int skv_table_remove(skv_table *t, const skv_item_key *k) {
    if (t->cap == 0) return 0;
    size_t i = probe(t, k);
    if (!t->slots[i].sketch) return 0;
    remove_at(t, i);
    return 1;
}

size_t skv_table_drop_seq(skv_table *t, uint64_t seq) {
    size_t n = 0;
    for (size_t i = 0; i < t->cap;) {
        if (t->slots[i].sketch && t->slots[i].key.seq == seq) {
            remove_at(t, i); /* an entry may shift into i: look at i again */
            n++;
        } else {
            i++;
        }
    }
    return n;
}

size_t skv_table_bytes(const skv_table *t) {
    size_t b = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].sketch) b += skv_sketch_bytes(t->slots[i].sketch);
    return b;
}
