/*
 * gguf.h — a reader of GGUF files (the format of llama.cpp / ggml models), versions 2 and 3.
 *
 * Layout (little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { string key | u32 type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (u32, default 32) | tensor data
 * where string = u64 len | bytes (no NUL) and an array value = u32 elem_type | u64 n | elems.
 * Tensor offsets are relative to the start of the data section and aligned.
 *
 * The reader works on one memory image (an mmap of the file, or a caller's buffer) and never
 * reads outside it: every count, length and offset is checked against the bytes that remain,
 * in 64-bit arithmetic that cannot overflow, before it is used, and counts are bounded by the
 * image size before anything is allocated. Bad input fails with SKV_ERR_TRUNCATED (ends
 * early), SKV_ERR_CORRUPT (bad magic, impossible value, duplicate name, data outside the
 * file), SKV_ERR_VERSION or SKV_ERR_UNSUPPORTED (nested arrays, unknown type ids).
 *
 * Strings point into the image (not NUL-terminated): they live as long as the gguf_file.
 */
#ifndef SUBKV_GGUF_H
#define SUBKV_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

/* Metadata value types. */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* Tensor element types (ggml_type ids) that this reader dequantises. Other ggml ids with a
 * known block layout are accepted (their size is checked) but not dequantised. */
typedef enum ggml_dtype {
    GGML_F32 = 0,
    GGML_F16 = 1,
    GGML_Q4_0 = 2,
    GGML_Q4_1 = 3,
    GGML_Q8_0 = 8,
    GGML_BF16 = 30,
} ggml_dtype;

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4

typedef struct gguf_str {
    const char *ptr; /* into the image; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    gguf_type arr_type;      /* arrays: element type                                   */
    uint64_t arr_n;          /* arrays: element count                                  */
    const uint8_t *value;    /* the value (arrays: the first element) in the image     */
    const uint64_t *str_off; /* string arrays: offset of element i from `value`        */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused are 1 */
    uint32_t type;              /* ggml type id                                          */
    uint64_t offset;            /* in the data section                                    */
    uint64_t nbytes;
    const uint8_t *data; /* validated: [data, data + nbytes) lies inside the image */
} gguf_tensor;

typedef struct gguf_file {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t data_offset; /* start of the data section in the image */
    const uint8_t *base;
    size_t size;
    void *map; /* the mmap to release, or NULL for a caller's buffer */
} gguf_file;

/* Open and validate a file through a read-only mmap. *out is freed with gguf_close. */
subkv_status gguf_open(const char *path, gguf_file **out, skv_err *err);
/* The same over data[len], which the caller keeps alive (and unchanged) until gguf_close. */
subkv_status gguf_open_memory(const void *data, size_t len, gguf_file **out, skv_err *err);
void gguf_close(gguf_file *f);

/* 1 when s equals the C string c. */
int gguf_str_eq(gguf_str s, const char *c);
/* Name of a metadata type ("u32", "string", ...); "?" when unknown. */
const char *gguf_type_name(uint32_t t);

/* The entry of a key, or NULL. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);

/*
 * Typed getters. A missing key is SKV_ERR_NOT_FOUND, a value of another type (or out of the
 * target's range) SKV_ERR_CORRUPT, each with the key in the message. Integer getters take
 * any integer type whose value fits; gguf_get_f32 takes f32 or f64.
 */
subkv_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, skv_err *err);
subkv_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, skv_err *err);
subkv_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, skv_err *err);
subkv_status gguf_get_f32(const gguf_file *f, const char *key, float *out, skv_err *err);
subkv_status gguf_get_f64(const gguf_file *f, const char *key, double *out, skv_err *err);
subkv_status gguf_get_bool(const gguf_file *f, const char *key, int *out, skv_err *err);
subkv_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, skv_err *err);
/* An array: its element type and count. */
subkv_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type *elem_type, uint64_t *n,
                          skv_err *err);

/* Element i of an array entry (i < kv->arr_n, else SKV_ERR_INVALID_ARG): a string, an integer
 * (any integer element type; i64 takes all but u64 values above INT64_MAX) or a float (f32
 * or f64). Another element type is SKV_ERR_CORRUPT. */
subkv_status gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_str *out, skv_err *err);
subkv_status gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out, skv_err *err);
subkv_status gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out, skv_err *err);

/* The tensor of a name, or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/*
 * The tensor `name`, checked: SKV_ERR_NOT_FOUND when missing; SKV_ERR_SHAPE when its
 * dimensions differ from ne[n_dims] (unlisted dimensions must be 1); SKV_ERR_UNSUPPORTED when
 * `type_mask` (bit t for ggml type t; 0: any) excludes its type.
 */
subkv_status gguf_tensor_expect(const gguf_file *f, const char *name, uint64_t type_mask,
                                uint32_t n_dims, const uint64_t *ne, const gguf_tensor **out,
                                skv_err *err);

/* ---- ggml types ---------------------------------------------------------------------- */

/* Elements per block and bytes per block of a ggml type; 0 for an unknown id. */
uint32_t ggml_block_elems(uint32_t type);
uint32_t ggml_block_bytes(uint32_t type);
/* Short name ("q4_1"); "?" when unknown. */
const char *ggml_type_name(uint32_t type);
/* 1 when gguf_dequant handles the type. */
int ggml_can_dequant(uint32_t type);

/*
 * Dequantise n elements (a multiple of the type's block size) of type `type` at src (which
 * must hold n / block_elems * block_bytes bytes) into dst[n] (ggml's block layouts:
 *   q8_0: f16 d, i8 q[32]            x = d q
 *   q4_0: f16 d, u8 qs[16]           x[j] = d (lo(qs[j]) - 8), x[j+16] = d (hi(qs[j]) - 8)
 *   q4_1: f16 d, f16 m, u8 qs[16]    x[j] = d lo(qs[j]) + m,   x[j+16] = d hi(qs[j]) + m).
 * SKV_ERR_UNSUPPORTED for another type, SKV_ERR_INVALID_ARG for a partial block.
 */
subkv_status gguf_dequant(uint32_t type, const void *src, uint64_t n, float *dst, skv_err *err);

#endif /* SUBKV_GGUF_H */
