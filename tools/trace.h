/*
 * trace.h — attention traces on disk: the Q, K, V of every layer of one sequence.
 *
 * Format (version 1), little-endian, no padding:
 *
 *   offset  size  field
 *        0     4  magic "SKVT"
 *        4     4  u32 version = 1
 *        8     4  u32 layers      1..1024
 *       12     4  u32 q_heads     1..1024, a multiple of kv_heads
 *       16     4  u32 kv_heads    1..1024
 *       20     4  u32 head_dim    1..1024
 *       24     8  u64 n_tokens    >= 1
 *       32     4  u32 dtype       0 = float32 (the only one so far)
 *       36     4  u32 reserved    0
 *       40     4  u32 crc32c of bytes [0, 40)
 *       44        layer 0, layer 1, ..., layer layers-1; each is
 *                   Q [n_tokens][q_heads][head_dim]  float32
 *                   K [n_tokens][kv_heads][head_dim] float32
 *                   V [n_tokens][kv_heads][head_dim] float32
 *
 * The file is exactly 44 + layers * n_tokens * (q_heads + 2 kv_heads) * head_dim * 4 bytes.
 * Readers check magic, version, checksum, every shape bound and the exact file size before
 * allocating anything; a short file is SKV_ERR_TRUNCATED, a bad magic / checksum / shape or
 * a longer file is SKV_ERR_CORRUPT, another version SKV_ERR_VERSION, another dtype
 * SKV_ERR_UNSUPPORTED. Layers are read one at a time so memory stays one layer.
 *
 * Writers write to PATH.tmp and rename to PATH when the last layer is closed, so a trace at
 * PATH is always complete.
 */
#ifndef SUBKV_TRACE_H
#define SUBKV_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

#define TRACE_MAGIC "SKVT"
#define TRACE_VERSION 1u
#define TRACE_HEADER_BYTES 44u
#define TRACE_MAX_DIM 1024u /* bound on layers, heads and head_dim */

typedef struct trace_shape {
    uint32_t layers, q_heads, kv_heads, head_dim;
    uint64_t n_tokens;
} trace_shape;

/* Floats of Q, K (= V) of one layer: n * q_heads * d and n * kv_heads * d. */
size_t trace_q_floats(const trace_shape *s);
size_t trace_kv_floats(const trace_shape *s);

/* Check a shape against the format's bounds (SKV_ERR_SHAPE when outside). */
subkv_status trace_shape_check(const trace_shape *s, skv_err *err);

/* Encode the 44-byte header of a shape (checksum included). */
void trace_header_encode(const trace_shape *s, uint8_t hdr[TRACE_HEADER_BYTES]);

/*
 * Decode and validate a header read from a file of file_size bytes: magic, version,
 * checksum, dtype, reserved, shape bounds, and that file_size equals the size the shape
 * implies (computed without overflow).
 */
subkv_status trace_header_decode(const uint8_t hdr[TRACE_HEADER_BYTES], uint64_t file_size,
                                 trace_shape *out, skv_err *err);

/* ---- writer --------------------------------------------------------------------------- */

typedef struct trace_writer trace_writer;

/* Start a trace at path (written as path.tmp until closed). */
subkv_status trace_writer_open(const char *path, const trace_shape *shape, trace_writer **out,
                               skv_err *err);
/* Write layer `layer`, which must be the next one (0, 1, ...): Q, K, V as in the format. */
subkv_status trace_writer_write_layer(trace_writer *w, uint32_t layer, const float *Q,
                                      const float *K, const float *V, skv_err *err);
/* Finish: every layer must have been written; flushes, renames path.tmp to path, frees w.
 * On any failure (or w with layers missing) the temporary file is removed. */
subkv_status trace_writer_close(trace_writer *w, skv_err *err);
/* Abandon a trace: remove the temporary file and free w (NULL is fine). */
void trace_writer_abort(trace_writer *w);

/* ---- reader --------------------------------------------------------------------------- */

typedef struct trace_reader trace_reader;

/* Open and validate a trace (header and file size); nothing of the layers is read yet. */
subkv_status trace_reader_open(const char *path, trace_reader **out, skv_err *err);
const trace_shape *trace_reader_shape(const trace_reader *r);
/* Read layer l into Q [n][q_heads][d], K and V [n][kv_heads][d] (any may be NULL: skipped).
 * A file that changed since open fails with SKV_ERR_TRUNCATED or SKV_ERR_IO. */
subkv_status trace_read_layer(trace_reader *r, uint32_t l, float *Q, float *K, float *V,
                              skv_err *err);
void trace_reader_close(trace_reader *r);

#endif /* SUBKV_TRACE_H */
