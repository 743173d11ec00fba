/* gguf_build.c — in-memory GGUF v3 writer (see gguf_build.h). */
#include <string.h>

#include "gguf_build.h"

static uint64_t fixed_bytes(gguf_type t) {
    static const uint8_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_TYPE_COUNT ? sz[t] : 0;
}

static void put_str(skv_writer *w, const char *s) {
    const uint64_t n = strlen(s);
    skv_w_u64(w, n);
    skv_w_bytes(w, s, n);
}

void gguf_build_init(gguf_builder *b, uint32_t alignment) {
    memset(b, 0, sizeof *b);
    b->wm.buf = &b->meta;
    b->wi.buf = &b->info;
    b->wd.buf = &b->data;
    b->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    if (b->alignment != GGUF_DEFAULT_ALIGNMENT)
        gguf_build_scalar(b, "general.alignment", GGUF_TYPE_UINT32, &b->alignment);
}

void gguf_build_scalar(gguf_builder *b, const char *key, gguf_type t, const void *value) {
    put_str(&b->wm, key);
    skv_w_u32(&b->wm, (uint32_t)t);
    skv_w_bytes(&b->wm, value, fixed_bytes(t));
    b->n_kv++;
}

void gguf_build_string(gguf_builder *b, const char *key, const char *s) {
    put_str(&b->wm, key);
    skv_w_u32(&b->wm, GGUF_TYPE_STRING);
    put_str(&b->wm, s);
    b->n_kv++;
}

void gguf_build_array(gguf_builder *b, const char *key, gguf_type t, const void *elems,
                      uint64_t n) {
    put_str(&b->wm, key);
    skv_w_u32(&b->wm, GGUF_TYPE_ARRAY);
    skv_w_u32(&b->wm, (uint32_t)t);
    skv_w_u64(&b->wm, n);
    skv_w_bytes(&b->wm, elems, n * fixed_bytes(t));
    b->n_kv++;
}

void gguf_build_str_array(gguf_builder *b, const char *key, const char *const *s, uint64_t n) {
    put_str(&b->wm, key);
    skv_w_u32(&b->wm, GGUF_TYPE_ARRAY);
    skv_w_u32(&b->wm, GGUF_TYPE_STRING);
    skv_w_u64(&b->wm, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b->wm, s[i]);
    b->n_kv++;
}

static void pad_to(skv_writer *w, uint64_t alignment) {
    static const uint8_t zeros[256];
    uint64_t pad = (alignment - w->buf->len % alignment) % alignment;
    while (pad > 0) {
        uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
        skv_w_bytes(w, zeros, k);
        pad -= k;
    }
}

void gguf_build_tensor(gguf_builder *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                       uint32_t type, const void *data, uint64_t nbytes) {
    pad_to(&b->wd, b->alignment);
    put_str(&b->wi, name);
    skv_w_u32(&b->wi, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) skv_w_u64(&b->wi, ne[i]);
    skv_w_u32(&b->wi, type);
    skv_w_u64(&b->wi, b->data.len);
    skv_w_bytes(&b->wd, data, nbytes);
    b->n_tensors++;
}

subkv_status gguf_build_finish(gguf_builder *b, skv_buf *out, skv_err *err) {
    skv_writer w = {.buf = out};
    const size_t start = out->len;
    skv_w_bytes(&w, "GGUF", 4);
    skv_w_u32(&w, 3);
    skv_w_u64(&w, b->n_tensors);
    skv_w_u64(&w, b->n_kv);
    skv_w_bytes(&w, b->meta.data, b->meta.len);
    skv_w_bytes(&w, b->info.data, b->info.len);
    if (b->n_tensors) {
        /* the data section is aligned relative to the image's start */
        uint64_t pad = (b->alignment - (out->len - start) % b->alignment) % b->alignment;
        static const uint8_t zeros[256];
        while (pad > 0) {
            uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
            skv_w_bytes(&w, zeros, k);
            pad -= k;
        }
        skv_w_bytes(&w, b->data.data, b->data.len);
    }
    const int failed = w.failed || b->wm.failed || b->wi.failed || b->wd.failed;
    skv_buf_free(&b->meta);
    skv_buf_free(&b->info);
    skv_buf_free(&b->data);
    if (failed) return skv_set_error(err, SKV_ERR_NOMEM, "gguf_build: out of memory");
    return SKV_OK;
}
