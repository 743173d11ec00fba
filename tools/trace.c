/*
 * trace.c — attention trace writer and reader (format in trace.h).
 *
 * Floats are written as host float32; the build refuses big-endian hosts rather than
 * writing a file other machines would misread.
 */
#include "trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "skv_check.h"
#include "skv_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "trace files are little-endian float32; add byte swapping for this host"
#endif

enum { CRC_OFFSET = 40 };

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Floats of Q of one layer. Assumes a checked shape. */
size_t trace_q_floats(const trace_shape *s) {
    return (size_t)s->n_tokens * s->q_heads * s->head_dim;
}

/* Floats of K (and of V) of one layer. Assumes a checked shape. */
size_t trace_kv_floats(const trace_shape *s) {
    return (size_t)s->n_tokens * s->kv_heads * s->head_dim;
}

/*
 * Bytes of one layer and of the whole file, or 0 when they overflow u64 / size_t (so a
 * layer could not even be allocated).
 */
static uint64_t layer_bytes(const trace_shape *s) {
    uint64_t per_token = ((uint64_t)s->q_heads + 2u * (uint64_t)s->kv_heads) * s->head_dim * 4u;
    if (s->n_tokens > UINT64_MAX / per_token) return 0;
    uint64_t b = s->n_tokens * per_token;
    if (b > (uint64_t)SIZE_MAX / 2) return 0;
    return b;
}

static uint64_t file_bytes(const trace_shape *s) {
    uint64_t lb = layer_bytes(s);
    if (lb == 0 || lb > (UINT64_MAX - TRACE_HEADER_BYTES) / s->layers) return 0;
    return TRACE_HEADER_BYTES + lb * s->layers;
}

/* Shape bounds: every dim in [1, 1024], q_heads % kv_heads == 0, n >= 1, sizes fit. */
subkv_status trace_shape_check(const trace_shape *s, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace shape is NULL");
    if (s->layers < 1 || s->layers > TRACE_MAX_DIM || s->q_heads < 1 ||
        s->q_heads > TRACE_MAX_DIM || s->kv_heads < 1 || s->kv_heads > TRACE_MAX_DIM ||
        s->head_dim < 1 || s->head_dim > TRACE_MAX_DIM)
        return skv_set_error(err, SKV_ERR_SHAPE,
                             "trace shape %u layers x %u q heads x %u kv heads x d %u: each must "
                             "be in [1, %u]",
                             s->layers, s->q_heads, s->kv_heads, s->head_dim, TRACE_MAX_DIM);
    if (s->q_heads % s->kv_heads)
        return skv_set_error(err, SKV_ERR_SHAPE, "q_heads %u is not a multiple of kv_heads %u",
                             s->q_heads, s->kv_heads);
    if (s->n_tokens < 1) return skv_set_error(err, SKV_ERR_SHAPE, "trace has 0 tokens");
    if (file_bytes(s) == 0)
        return skv_set_error(err, SKV_ERR_SHAPE, "trace of %llu tokens is too large",
                             (unsigned long long)s->n_tokens);
    return SKV_OK;
}

/* Encode the header of s (checksum over bytes [0, 40)). */
void trace_header_encode(const trace_shape *s, uint8_t hdr[TRACE_HEADER_BYTES]) {
    memcpy(hdr, TRACE_MAGIC, 4);
    put_u32(hdr + 4, TRACE_VERSION);
    put_u32(hdr + 8, s->layers);
    put_u32(hdr + 12, s->q_heads);
    put_u32(hdr + 16, s->kv_heads);
    put_u32(hdr + 20, s->head_dim);
    put_u64(hdr + 24, s->n_tokens);
    put_u32(hdr + 32, 0); /* dtype f32 */
    put_u32(hdr + 36, 0); /* reserved  */
    put_u32(hdr + CRC_OFFSET, skv_crc32c(hdr, CRC_OFFSET));
}

/* Validate a header against the file's size; fills *out on success. */
subkv_status trace_header_decode(const uint8_t hdr[TRACE_HEADER_BYTES], uint64_t file_size,
                                 trace_shape *out, skv_err *err) {
    if (memcmp(hdr, TRACE_MAGIC, 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "not a subkv trace (bad magic)");
    uint32_t version = get_u32(hdr + 4);
    if (version != TRACE_VERSION)
        return skv_set_error(err, SKV_ERR_VERSION, "trace version %u, this build reads %u", version,
                             TRACE_VERSION);
    if (skv_crc32c(hdr, CRC_OFFSET) != get_u32(hdr + CRC_OFFSET))
        return skv_set_error(err, SKV_ERR_CORRUPT, "trace header checksum mismatch");
    uint32_t dtype = get_u32(hdr + 32), reserved = get_u32(hdr + 36);
    if (dtype != 0)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "trace dtype %u (only 0 = f32)", dtype);
    if (reserved != 0) return skv_set_error(err, SKV_ERR_CORRUPT, "trace reserved field != 0");
    trace_shape s = {get_u32(hdr + 8), get_u32(hdr + 12), get_u32(hdr + 16), get_u32(hdr + 20),
                     get_u64(hdr + 24)};
    skv_err serr;
    if (trace_shape_check(&s, &serr) != SKV_OK)
        return skv_set_error(err, SKV_ERR_CORRUPT, "%s", serr.msg);
    uint64_t want = file_bytes(&s);
    if (file_size < want)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "trace is %llu bytes, its shape needs %llu",
                             (unsigned long long)file_size, (unsigned long long)want);
    if (file_size > want)
        return skv_set_error(err, SKV_ERR_CORRUPT,
                             "trace is %llu bytes, its shape needs %llu (trailing bytes)",
                             (unsigned long long)file_size, (unsigned long long)want);
    *out = s;
    return SKV_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

struct trace_writer {
    FILE *f;
    char *path, *tmp;
    trace_shape shape;
    uint32_t next_layer;
};

/* Write n bytes or fail with SKV_ERR_IO. */
static subkv_status write_all(FILE *f, const void *p, size_t n, const char *path, skv_err *err) {
    if (n && fwrite(p, 1, n, f) != n)
        return skv_set_error(err, SKV_ERR_IO, "write %s: %s", path, strerror(errno));
    return SKV_OK;
}

/* Free a writer's memory (the file must already be closed or abandoned). */
static void writer_free(trace_writer *w) {
    free(w->path);
    free(w->tmp);
    free(w);
}

/* Create path.tmp and write the header. */
subkv_status trace_writer_open(const char *path, const trace_shape *shape, trace_writer **out,
                               skv_err *err) {
    subkv_status st = SKV_OK;
    trace_writer *w = NULL;
    if (!path || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace_writer_open: NULL");
    *out = NULL;
    SKV_CHECK(trace_shape_check(shape, err));
    size_t pl = strlen(path);
    w = calloc(1, sizeof *w);
    if (!w || !(w->path = malloc(pl + 1)) || !(w->tmp = malloc(pl + 5))) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "trace_writer_open: out of memory");
        goto cleanup;
    }
    memcpy(w->path, path, pl + 1);
    memcpy(w->tmp, path, pl);
    memcpy(w->tmp + pl, ".tmp", 5);
    w->shape = *shape;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        st = skv_set_error(err, SKV_ERR_IO, "create %s: %s", w->tmp, strerror(errno));
        goto cleanup;
    }
    uint8_t hdr[TRACE_HEADER_BYTES];
    trace_header_encode(shape, hdr);
    SKV_CHECK_GOTO(write_all(w->f, hdr, sizeof hdr, w->tmp, err), st, cleanup);
    *out = w;
    w = NULL;
cleanup:
    if (w) {
        if (w->f) {
            fclose(w->f);
            remove(w->tmp);
        }
        writer_free(w);
    }
    return st;
}

/* Append the next layer's Q, K, V. */
subkv_status trace_writer_write_layer(trace_writer *w, uint32_t layer, const float *Q,
                                      const float *K, const float *V, skv_err *err) {
    if (!w || !Q || !K || !V)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace_writer_write_layer: NULL");
    if (layer != w->next_layer || layer >= w->shape.layers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "trace layers go in order: expected %u (of %u), got %u", w->next_layer,
                             w->shape.layers, layer);
    size_t qb = trace_q_floats(&w->shape) * sizeof(float);
    size_t kb = trace_kv_floats(&w->shape) * sizeof(float);
    SKV_CHECK(write_all(w->f, Q, qb, w->tmp, err));
    SKV_CHECK(write_all(w->f, K, kb, w->tmp, err));
    SKV_CHECK(write_all(w->f, V, kb, w->tmp, err));
    w->next_layer++;
    return SKV_OK;
}

/* Close, check completeness, rename into place. */
subkv_status trace_writer_close(trace_writer *w, skv_err *err) {
    subkv_status st = SKV_OK;
    if (!w) return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace_writer_close: NULL");
    if (w->next_layer != w->shape.layers) {
        st = skv_set_error(err, SKV_ERR_INVALID_ARG, "trace closed after %u of %u layers",
                           w->next_layer, w->shape.layers);
        goto cleanup;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        st = skv_set_error(err, SKV_ERR_IO, "close %s: %s", w->tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(w->tmp, w->path) != 0) {
        st =
            skv_set_error(err, SKV_ERR_IO, "rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
        goto cleanup;
    }
cleanup:
    if (st != SKV_OK) {
        if (w->f) fclose(w->f);
        remove(w->tmp);
    }
    writer_free(w);
    return st;
}

/* Abandon: close and remove the temporary file. */
void trace_writer_abort(trace_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------------------------ */

struct trace_reader {
    FILE *f;
    trace_shape shape;
    char path[256];
};

/* Open, stat, read and validate the header. */
subkv_status trace_reader_open(const char *path, trace_reader **out, skv_err *err) {
    subkv_status st = SKV_OK;
    trace_reader *r = NULL;
    if (!path || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace_reader_open: NULL");
    *out = NULL;
    r = calloc(1, sizeof *r);
    if (!r) return skv_set_error(err, SKV_ERR_NOMEM, "trace_reader_open: out of memory");
    snprintf(r->path, sizeof r->path, "%s", path);
    r->f = fopen(path, "rb");
    if (!r->f) {
        st = skv_set_error(err, SKV_ERR_IO, "open %s: %s", path, strerror(errno));
        goto cleanup;
    }
    struct stat sb;
    if (fstat(fileno(r->f), &sb) != 0) {
        st = skv_set_error(err, SKV_ERR_IO, "stat %s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = skv_set_error(err, SKV_ERR_IO, "%s is not a regular file", path);
        goto cleanup;
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint8_t hdr[TRACE_HEADER_BYTES];
    if (size < TRACE_HEADER_BYTES) {
        st = skv_set_error(err, SKV_ERR_TRUNCATED, "%s: %llu bytes, shorter than a trace header",
                           path, (unsigned long long)size);
        goto cleanup;
    }
    if (fread(hdr, 1, sizeof hdr, r->f) != sizeof hdr) {
        st = skv_set_error(err, SKV_ERR_TRUNCATED, "%s: header read failed", path);
        goto cleanup;
    }
    SKV_CHECK_GOTO(trace_header_decode(hdr, size, &r->shape, err), st, cleanup);
    *out = r;
    r = NULL;
cleanup:
    trace_reader_close(r);
    return st;
}

const trace_shape *trace_reader_shape(const trace_reader *r) { return &r->shape; }

/* Read `count` floats at offset into dst (or skip when dst is NULL). */
static subkv_status read_at(trace_reader *r, uint64_t offset, float *dst, size_t count,
                            skv_err *err) {
    if (!dst) return SKV_OK;
    if (offset > (uint64_t)INT64_MAX || fseeko(r->f, (off_t)offset, SEEK_SET) != 0)
        return skv_set_error(err, SKV_ERR_IO, "seek %s: %s", r->path, strerror(errno));
    size_t got = fread(dst, sizeof(float), count, r->f);
    if (got != count) {
        if (ferror(r->f))
            return skv_set_error(err, SKV_ERR_IO, "read %s: %s", r->path, strerror(errno));
        return skv_set_error(err, SKV_ERR_TRUNCATED, "%s ended early (file changed?)", r->path);
    }
    return SKV_OK;
}

/* Read one layer's Q, K, V. */
subkv_status trace_read_layer(trace_reader *r, uint32_t l, float *Q, float *K, float *V,
                              skv_err *err) {
    if (!r) return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace_read_layer: NULL reader");
    if (l >= r->shape.layers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "trace layer %u >= layers %u", l,
                             r->shape.layers);
    size_t qn = trace_q_floats(&r->shape), kn = trace_kv_floats(&r->shape);
    uint64_t base = TRACE_HEADER_BYTES + (uint64_t)l * layer_bytes(&r->shape);
    SKV_CHECK(read_at(r, base, Q, qn, err));
    SKV_CHECK(read_at(r, base + qn * sizeof(float), K, kn, err));
    SKV_CHECK(read_at(r, base + (qn + kn) * sizeof(float), V, kn, err));
    return SKV_OK;
}

/* Close the file and free the reader (NULL is fine). */
void trace_reader_close(trace_reader *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    free(r);
}
