/*
 * fuzz_sketch_load.c — libFuzzer harness for skv_sketch_load (cache/subkv.h).
 *
 * CSR checkpoints resolve their dictionary through a registry holding the harness's one
 * set (tests/fuzz_dict.h) under the name the seed uses.
 * Each input is tried twice: as given, and with the header's body_len and crc32c rewritten to
 * cover the rest of the input, so the fuzzer reaches the policy loaders instead of stopping
 * at the checksum. On a successful load it checks:
 *   - save(load(x)) reloads, consumes exactly what was saved, and saves to the same bytes;
 *   - save(load(x)) equals the bytes load consumed (one encoding per sketch);
 *   - attend with a fixed query of the sketch's head_dim succeeds and gives finite outputs.
 * Any violation aborts (libFuzzer keeps the input as a crash reproducer).
 * Build and run: make fuzz (Makefile); seeds: build/fuzz/fuzz-seeds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_dict.h"
#include "skv_internal.h"
#include "subkv.h"

enum { HEADER = 24, GROUP = 4 };

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
        fprintf(stderr, "fuzz_sketch_load: " __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static void check_attend(skv_sketch *s) {
    const int d = skv_sketch_config(s)->head_dim;
    float *q = malloc((size_t)GROUP * d * sizeof *q);
    skv_partial *p = malloc(GROUP * skv_partial_stride(d));
    float *out = malloc((size_t)d * sizeof *out);
    if (!q || !p || !out) FUZZ_FAIL("out of memory for d = %d", d);
    for (int i = 0; i < GROUP * d; i++) q[i] = sinf(0.37f * (float)i + 0.1f);
    skv_err e;
    if (skv_sketch_attend(s, q, GROUP, d, p, &e) != SKV_OK)
        FUZZ_FAIL("attend of a loaded sketch failed: %s", e.msg);
    for (int h = 0; h < GROUP; h++) {
        skv_partial_output(skv_partial_at(p, d, (size_t)h), d, out);
        for (int j = 0; j < d; j++)
            if (!isfinite(out[j])) FUZZ_FAIL("non-finite output (head %d, coordinate %d)", h, j);
    }
    free(q);
    free(p);
    free(out);
}

static void try_load(const uint8_t *data, size_t size, skv_dicts *reg) {
    skv_sketch *s = NULL;
    size_t used = 0;
    skv_err e;
    if (skv_sketch_load_dicts(data, size, SIZE_MAX, reg, &s, &used, &e) != SKV_OK) {
        if (s) FUZZ_FAIL("failed load returned a sketch");
        return;
    }
    if (used < HEADER || used > size) FUZZ_FAIL("used = %zu of %zu bytes", used, size);

    skv_buf a = {0}, b = {0};
    if (skv_sketch_save(s, &a, &e) != SKV_OK) FUZZ_FAIL("save of a loaded sketch: %s", e.msg);
    skv_sketch *s2 = NULL;
    size_t used2 = 0;
    if (skv_sketch_load_dicts(a.data, a.len, SIZE_MAX, reg, &s2, &used2, &e) != SKV_OK)
        FUZZ_FAIL("reload of a saved sketch: %s", e.msg);
    if (used2 != a.len) FUZZ_FAIL("reload used %zu of %zu bytes", used2, a.len);
    if (skv_sketch_save(s2, &b, &e) != SKV_OK) FUZZ_FAIL("second save: %s", e.msg);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        FUZZ_FAIL("save(load(save(load(x)))) differs from save(load(x)) (%zu vs %zu bytes)", a.len,
                  b.len);
    if (a.len != used || memcmp(a.data, data, used) != 0)
        FUZZ_FAIL("save(load(x)) differs from the %zu bytes load accepted (%zu bytes)", used,
                  a.len);
    if (skv_sketch_bytes(s) == 0) FUZZ_FAIL("a loaded sketch reports 0 bytes");

    check_attend(s);
    skv_buf_free(&a);
    skv_buf_free(&b);
    skv_sketch_destroy(s);
    skv_sketch_destroy(s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    skv_dicts *reg = fuzz_dicts_make();
    if (!reg) FUZZ_FAIL("cannot build the dictionary registry");
    try_load(data, size, reg);
    if (size < HEADER) {
        skv_dicts_free(reg);
        return 0;
    }
    /* The same input with a consistent body_len and checksum. */
    uint8_t *copy = malloc(size);
    if (!copy) {
        skv_dicts_free(reg);
        return 0;
    }
    memcpy(copy, data, size);
    const uint64_t body_len = size - HEADER;
    const uint32_t crc = skv_crc32c(copy + HEADER, size - HEADER);
    memcpy(copy + 12, &body_len, 8);
    memcpy(copy + 20, &crc, 4);
    if (memcmp(copy, data, size) != 0) try_load(copy, size, reg);
    free(copy);
    skv_dicts_free(reg);
    return 0;
}
