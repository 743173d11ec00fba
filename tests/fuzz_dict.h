/*
 * fuzz_dict.h — the one small CSR dictionary set the fuzz harnesses and their seeds share
 * (header-only): fuzz_seeds.c codes its csr seed checkpoint with it, fuzz_sketch_load.c
 * registers it under the same name, so the seed's dict_path and fingerprint resolve.
 */
#ifndef SUBKV_FUZZ_DICT_H
#define SUBKV_FUZZ_DICT_H

#include <math.h>

#include "csr_dict.h"

#define FUZZ_DICT_NAME "fuzz-dict"
enum { FUZZ_DICT_D = 4, FUZZ_DICT_ATOMS = 8, FUZZ_DICT_LAYERS = 4 };

/* Deterministic atoms (not orthogonal), finished; NULL on allocation failure. */
static inline skv_dict *fuzz_dict_make(void) {
    skv_dict *dict = NULL;
    if (skv_dict_new(FUZZ_DICT_D, FUZZ_DICT_ATOMS, 1, FUZZ_DICT_LAYERS, &dict, NULL) != SKV_OK)
        return NULL;
    const size_t n = 2 * (size_t)FUZZ_DICT_ATOMS * FUZZ_DICT_D;
    for (size_t i = 0; i < n; i++) dict->data[i] = sinf(1.7f * (float)i + 0.3f);
    if (skv_dict_finish(dict, NULL) != SKV_OK) {
        skv_dict_free(dict);
        return NULL;
    }
    return dict;
}

/* A registry holding that set under FUZZ_DICT_NAME; NULL on failure. */
static inline skv_dicts *fuzz_dicts_make(void) {
    skv_dicts *reg = NULL;
    if (skv_dicts_new(&reg, NULL) != SKV_OK) return NULL;
    skv_dict *dict = fuzz_dict_make();
    if (!dict || skv_dicts_add(reg, FUZZ_DICT_NAME, dict, NULL) != SKV_OK) {
        skv_dicts_free(reg);
        return NULL;
    }
    return reg;
}

#endif /* SUBKV_FUZZ_DICT_H */
