/*
 * fuzz_dict_load.c — libFuzzer harness for skv_dict_load (cache/csr_dict.h), the parser of
 * CSR dictionary files.
 *
 * Each input is tried as given and with the header's body_len and crc32c rewritten to cover
 * the rest of the input (so the fuzzer reaches the shape and atom checks). On a successful
 * load it checks:
 *   - save(load(x)) equals x (one encoding per set) and reloads to the same fingerprint;
 *   - every atom is a finite unit vector, and matching pursuit over each table of each group
 *     gives indices in range and a finite reconstruction.
 * Any violation aborts. Build and run: make fuzz; seeds: build/fuzz/fuzz-seeds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csr_dict.h"
#include "skv_internal.h"

const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=256";
}

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_dict_load: " __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static void check_codes(const skv_dict *dict) {
    float x[SKV_MAX_HEAD_DIM], rec[SKV_MAX_HEAD_DIM];
    uint16_t idx[4], coef[4];
    for (int g = 0; g < dict->groups && g < 4; g++)
        for (int t = 0; t < 3; t++) {
            const int dim = t == 0 ? dict->d : dict->d / 2;
            const float *a = t == 0 ? skv_dict_keys(dict, g) : skv_dict_values(dict, g, t - 1);
            for (int j = 0; j < dim; j++) x[j] = cosf(0.61f * (float)j + (float)g);
            skv_mp_encode(a, dict->atoms, dim, x, 4, idx, coef, NULL);
            for (int k = 0; k < 4; k++)
                if (idx[k] >= dict->atoms) FUZZ_FAIL("index %u of %d atoms", idx[k], dict->atoms);
            skv_mp_decode(a, dim, idx, coef, 4, rec);
            for (int j = 0; j < dim; j++)
                if (!isfinite(rec[j])) FUZZ_FAIL("non-finite reconstruction");
        }
}

static void try_load(const uint8_t *data, size_t size) {
    skv_dict *dict = NULL;
    skv_err e;
    if (skv_dict_load(data, size, &dict, &e) != SKV_OK) {
        if (dict) FUZZ_FAIL("failed load returned a dictionary");
        return;
    }
    skv_buf b = {0};
    if (skv_dict_save(dict, &b, &e) != SKV_OK) FUZZ_FAIL("save of a loaded set: %s", e.msg);
    if (b.len != size || memcmp(b.data, data, size) != 0)
        FUZZ_FAIL("save(load(x)) differs from x (%zu vs %zu bytes)", b.len, size);
    skv_dict *again = NULL;
    if (skv_dict_load(b.data, b.len, &again, &e) != SKV_OK) FUZZ_FAIL("reload: %s", e.msg);
    if (again->fingerprint != dict->fingerprint) FUZZ_FAIL("fingerprint changed on reload");
    check_codes(dict);
    skv_buf_free(&b);
    skv_dict_free(again);
    skv_dict_free(dict);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    if (size < SKV_DICT_HEADER_BYTES) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    const uint64_t body_len = size - SKV_DICT_HEADER_BYTES;
    const uint32_t crc = skv_crc32c(copy + SKV_DICT_HEADER_BYTES, body_len);
    memcpy(copy + 8, &body_len, 8);
    memcpy(copy + 16, &crc, 4);
    if (memcmp(copy, data, size) != 0) try_load(copy, size);
    free(copy);
    return 0;
}
