/*
 * fuzz_table_load.c — libFuzzer harness for skv_table_load (worker/sketch_table.h), as rank 1
 * of a 2-worker job.
 *
 * Each input is tried as given and with its checksums repaired: every entry's sketch crc32c
 * (where the entry's sketch header fits) and then the trailing crc32c of the checkpoint, so
 * the fuzzer reaches the entry parser and the sketch loaders. A successful load must save
 * (skv_table_save) and reload to a table of the same count and bytes; a failed one must
 * leave the table empty. The table is always freed (LeakSanitizer checks).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sketch_table.h"
#include "skv_internal.h"

enum { RANK = 1, NWORKERS = 2, TABLE_HEADER = 24, ENTRY_HEADER = 28, SKETCH_HEADER = 24 };
/* The worker passes its budget: a checkpoint reserving more is refused before allocating. */
#define FUZZ_LOAD_LIMIT ((size_t)64 << 20)

/* A checkpoint's config sizes the sketch's pools before its body is read (sketch_new), so a
 * small input may ask for gigabytes. Allocations over 256 MiB fail (NULL) instead of tripping
 * libFuzzer's malloc limit: what is checked is that the loader handles that failure
 * (SKV_ERR_NOMEM), without crashing or leaking. (Reported to the lead as a finding.) */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=256";
}

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_table_load: " __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static void try_load(const uint8_t *data, size_t size) {
    skv_table t;
    skv_err e;
    if (skv_table_load(data, size, RANK, NWORKERS, FUZZ_LOAD_LIMIT, NULL, &t, &e) != SKV_OK) {
        if (t.count != 0 || t.cap != 0 || t.slots) FUZZ_FAIL("failed load left a non-empty table");
        skv_table_free(&t);
        return;
    }
    skv_buf a = {0};
    if (skv_table_save(&t, RANK, NWORKERS, &a, &e) != SKV_OK) FUZZ_FAIL("save: %s", e.msg);
    skv_table t2;
    if (skv_table_load(a.data, a.len, RANK, NWORKERS, FUZZ_LOAD_LIMIT, NULL, &t2, &e) != SKV_OK)
        FUZZ_FAIL("reload of a saved table: %s", e.msg);
    if (t2.count != t.count || skv_table_bytes(&t2) != skv_table_bytes(&t))
        FUZZ_FAIL("reload: %zu sketches / %zu bytes, saved %zu / %zu", t2.count,
                  skv_table_bytes(&t2), t.count, skv_table_bytes(&t));
    skv_buf_free(&a);
    skv_table_free(&t2);
    skv_table_free(&t);
}

/* Rewrite each entry's sketch checksum (over the body its header announces, where it fits)
 * and the checkpoint's trailing checksum. */
static void repair(uint8_t *p, size_t size) {
    const size_t end = size - 4;
    size_t pos = TABLE_HEADER;
    while (pos + ENTRY_HEADER <= end) {
        uint64_t blob;
        memcpy(&blob, p + pos + 20, 8);
        pos += ENTRY_HEADER;
        if (blob > end - pos) break;
        if (blob >= SKETCH_HEADER) {
            uint64_t body;
            memcpy(&body, p + pos + 12, 8);
            if (body <= blob - SKETCH_HEADER) {
                const uint32_t crc = skv_crc32c(p + pos + SKETCH_HEADER, (size_t)body);
                memcpy(p + pos + 20, &crc, 4);
            }
        }
        pos += (size_t)blob;
    }
    const uint32_t crc = skv_crc32c(p, end);
    memcpy(p + end, &crc, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    if (size < TABLE_HEADER + 4) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    repair(copy, size);
    if (memcmp(copy, data, size) != 0) try_load(copy, size);
    free(copy);
    return 0;
}
