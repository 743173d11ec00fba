/*
 * fuzz_gguf.c — libFuzzer harness for the GGUF reader (tools/gguf.h).
 *
 * The input is parsed in place from an exactly-sized heap copy (ASan flags any read past it).
 * A file that opens must keep every tensor inside the image; then every metadata entry is
 * read through the typed getters (each array element too, for the first 64) and the first
 * blocks of every dequantisable tensor are dequantised, all of which must succeed or fail
 * with a code, never crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_gguf: " __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static void walk(const gguf_file *f) {
    skv_err e;
    char key[128];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 100 ? kv->key.len : 100),
                 kv->key.ptr);
        uint64_t u;
        int64_t s;
        double d;
        int b;
        gguf_str str;
        (void)gguf_get_u64(f, key, &u, &e);
        (void)gguf_get_i64(f, key, &s, &e);
        (void)gguf_get_f64(f, key, &d, &e);
        (void)gguf_get_bool(f, key, &b, &e);
        if (gguf_get_str(f, key, &str, &e) == SKV_OK && str.len && str.ptr[str.len - 1] == 0x7f)
            (void)str; /* touches the last byte */
        if (kv->type != GGUF_TYPE_ARRAY) continue;
        for (uint64_t j = 0; j < kv->arr_n && j < 64; j++) {
            if (gguf_arr_str(kv, j, &str, &e) == SKV_OK && str.len)
                if (str.ptr[str.len - 1] == 0x7f) (void)str;
            (void)gguf_arr_i64(kv, j, &s, &e);
            (void)gguf_arr_f64(kv, j, &d, &e);
        }
        if (gguf_arr_i64(kv, kv->arr_n, &s, &e) == SKV_OK) FUZZ_FAIL("read past an array");
    }
    float buf[256];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->data < f->base || t->nbytes > f->size ||
            (uint64_t)(t->data - f->base) > f->size - t->nbytes)
            FUZZ_FAIL("tensor %llu outside the image", (unsigned long long)i);
        const uint64_t be = ggml_block_elems(t->type), bb = ggml_block_bytes(t->type);
        if (!ggml_can_dequant(t->type) || be == 0) continue;
        uint64_t blocks = t->nbytes / bb;
        if (blocks * be > 256) blocks = 256 / be;
        if (gguf_dequant(t->type, t->data, blocks * be, buf, &e) != SKV_OK)
            FUZZ_FAIL("dequant of a validated tensor: %s", e.msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    gguf_file *f = NULL;
    skv_err e;
    if (gguf_open_memory(copy, size, &f, &e) == SKV_OK) {
        walk(f);
        gguf_close(f);
    } else if (f) {
        FUZZ_FAIL("failed open returned a file");
    }
    free(copy);
    return 0;
}
