/*
 * gguf_build.h — write small GGUF v3 images in memory: the tests and the fuzz seeds make
 * their own model-shaped files with it (and a tool could write converted weights).
 *
 *   gguf_builder b; gguf_build_init(&b, 32);
 *   gguf_build_scalar(&b, "llama.block_count", GGUF_TYPE_UINT32, &(uint32_t){2});
 *   gguf_build_tensor(&b, "w", 2, (uint64_t[]){32, 4}, GGML_Q8_0, bytes, nbytes);
 *   skv_buf img = {0}; gguf_build_finish(&b, &img, &err); ... skv_buf_free(&img);
 *
 * Appends never fail on their own: an allocation failure is remembered and reported by
 * gguf_build_finish (SKV_ERR_NOMEM), which also frees the builder.
 */
#ifndef SUBKV_GGUF_BUILD_H
#define SUBKV_GGUF_BUILD_H

#include "gguf.h"
#include "skv_internal.h"

typedef struct gguf_builder {
    skv_buf meta, info, data;
    skv_writer wm, wi, wd;
    uint64_t n_kv, n_tensors;
    uint32_t alignment;
} gguf_builder;

/* alignment: a power of two; anything but 32 is also written as general.alignment. */
void gguf_build_init(gguf_builder *b, uint32_t alignment);
/* A fixed-size scalar (u8 .. f64, bool) read from value. */
void gguf_build_scalar(gguf_builder *b, const char *key, gguf_type t, const void *value);
void gguf_build_string(gguf_builder *b, const char *key, const char *s);
/* An array of n fixed-size elements of type t, or of n strings. */
void gguf_build_array(gguf_builder *b, const char *key, gguf_type t, const void *elems, uint64_t n);
void gguf_build_str_array(gguf_builder *b, const char *key, const char *const *s, uint64_t n);
/* A tensor of ne[n_dims] elements of ggml type `type`; data holds its nbytes bytes. */
void gguf_build_tensor(gguf_builder *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                       uint32_t type, const void *data, uint64_t nbytes);
/* Assemble the image into *out (appended) and free the builder's buffers. */
subkv_status gguf_build_finish(gguf_builder *b, skv_buf *out, skv_err *err);

#endif /* SUBKV_GGUF_BUILD_H */
