/* table_ckpt.c — a worker's sketches in one checkpoint file (format in sketch_table.h). */
#include <stdlib.h>
#include <string.h>

#include "sketch_table.h"
#include "skv_internal.h"

enum { SKVW_VERSION = 1 };

subkv_status skv_table_save(const skv_table *t, int rank, int nworkers, skv_buf *out,
                            skv_err *err) {
    skv_writer w = {out, false};
    skv_w_bytes(&w, "SKVW", 4);
    skv_w_u32(&w, SKVW_VERSION);
    skv_w_u32(&w, (uint32_t)rank);
    skv_w_u32(&w, (uint32_t)nworkers);
    skv_w_u64(&w, t->count);
    for (size_t i = 0; i < t->cap; i++) {
        const skv_table_entry *e = &t->slots[i];
        if (!e->sketch) continue;
        skv_w_u64(&w, e->key.seq);
        skv_w_u32(&w, e->key.layer);
        skv_w_u32(&w, e->key.head);
        skv_w_u32(&w, e->key.shard);
        const size_t at = out->len;
        skv_w_u64(&w, 0); /* length, patched below */
        if (w.failed) break;
        SKV_CHECK(skv_sketch_save(e->sketch, out, err));
        uint64_t blob = out->len - at - 8;
        memcpy(out->data + at, &blob, 8);
    }
    if (!w.failed) skv_w_u32(&w, skv_crc32c(out->data, out->len));
    if (w.failed) return skv_set_error(err, SKV_ERR_NOMEM, "checkpoint buffer");
    return SKV_OK;
}

subkv_status skv_table_load(const unsigned char *data, size_t len, int rank, int nworkers,
                            size_t max_bytes, struct skv_dicts *dicts, skv_table *out,
                            skv_err *err) {
    size_t reserved = 0;
    skv_table_init(out);
    if (len < 28) return skv_set_error(err, SKV_ERR_TRUNCATED, "checkpoint of %zu bytes", len);
    uint32_t crc;
    memcpy(&crc, data + len - 4, 4);
    if (memcmp(data, "SKVW", 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "not a subkv worker checkpoint");
    if (skv_crc32c(data, len - 4) != crc)
        return skv_set_error(err, SKV_ERR_CORRUPT, "checkpoint checksum mismatch");
    skv_reader r = {data + 4, len - 8, 0, false};
    uint32_t version = skv_r_u32(&r), frank = skv_r_u32(&r), fn = skv_r_u32(&r);
    uint64_t count = skv_r_u64(&r);
    if (version != SKVW_VERSION)
        return skv_set_error(err, SKV_ERR_VERSION, "checkpoint version %u", version);
    if ((int)frank != rank || (int)fn != nworkers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "checkpoint of worker %u of %u, this is worker %d of %d", frank, fn,
                             rank, nworkers);
    subkv_status st = SKV_OK;
    for (uint64_t i = 0; i < count && st == SKV_OK; i++) {
        skv_item_key k;
        k.seq = skv_r_u64(&r);
        k.layer = skv_r_u32(&r);
        k.head = skv_r_u32(&r);
        k.shard = skv_r_u32(&r);
        uint64_t blob = skv_r_u64(&r);
        if (r.failed || blob > r.len - r.pos) {
            st = skv_set_error(err, SKV_ERR_CORRUPT, "checkpoint entry %llu cut short",
                               (unsigned long long)i);
            break;
        }
        skv_sketch *s = NULL;
        size_t used = 0;
        st = skv_sketch_load_dicts(r.p + r.pos, (size_t)blob, max_bytes - reserved, dicts, &s,
                                   &used, err);
        if (st == SKV_OK) { /* what this sketch holds against the limit from now on */
            size_t r1 = skv_config_max_bytes(skv_sketch_config(s));
            reserved += r1 == SIZE_MAX ? skv_sketch_bytes(s) : r1;
            if (reserved > max_bytes) {
                skv_sketch_destroy(s);
                st = skv_set_error(err, SKV_ERR_BUDGET, "checkpoint reserves more than %zu bytes",
                                   max_bytes);
            }
        }
        if (st == SKV_OK && used != blob) {
            skv_sketch_destroy(s);
            st = skv_set_error(err, SKV_ERR_CORRUPT, "entry %llu length mismatch",
                               (unsigned long long)i);
        }
        if (st == SKV_OK && skv_table_find(out, &k)) {
            skv_sketch_destroy(s);
            st = skv_set_error(err, SKV_ERR_CORRUPT, "duplicate entry in checkpoint");
        }
        if (st == SKV_OK) {
            st = skv_table_insert(out, &k, s, err);
            if (st != SKV_OK) skv_sketch_destroy(s);
        }
        r.pos += (size_t)blob;
    }
    if (st == SKV_OK && r.pos != r.len)
        st = skv_set_error(err, SKV_ERR_CORRUPT, "trailing bytes in checkpoint");
    if (st != SKV_OK) skv_table_free(out);
    return st;
}
