/*
 * gguf.c — GGUF parsing and validation over one memory image (see gguf.h). Every read goes
 * through a cursor that checks the bytes remaining first; sizes are computed in uint64 with
 * explicit overflow checks; array counts are bounded by the image size before allocation.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "skv_check.h"

typedef struct cursor {
    const uint8_t *p;
    uint64_t pos, size;
} cursor;

static uint64_t cur_left(const cursor *c) { return c->size - c->pos; }

static subkv_status cur_take(cursor *c, uint64_t n, const uint8_t **out, const char *what,
                             skv_err *err) {
    *out = c->p + c->pos; /* set either way: callers read it only on SKV_OK */
    if (n > cur_left(c))
        return skv_set_error(err, SKV_ERR_TRUNCATED,
                             "gguf: %s needs %llu bytes at offset %llu, file has %llu left", what,
                             (unsigned long long)n, (unsigned long long)c->pos,
                             (unsigned long long)cur_left(c));
    c->pos += n;
    return SKV_OK;
}

static subkv_status cur_u32(cursor *c, uint32_t *v, const char *what, skv_err *err) {
    const uint8_t *b;
    SKV_CHECK(cur_take(c, 4, &b, what, err));
    memcpy(v, b, 4);
    return SKV_OK;
}

static subkv_status cur_u64(cursor *c, uint64_t *v, const char *what, skv_err *err) {
    const uint8_t *b;
    SKV_CHECK(cur_take(c, 8, &b, what, err));
    memcpy(v, b, 8);
    return SKV_OK;
}

static subkv_status cur_str(cursor *c, gguf_str *s, const char *what, skv_err *err) {
    const uint8_t *b;
    SKV_CHECK(cur_u64(c, &s->len, what, err));
    SKV_CHECK(cur_take(c, s->len, &b, what, err));
    s->ptr = (const char *)b;
    return SKV_OK;
}

/* Bytes of one scalar of a fixed-size type; 0 for string/array/unknown. */
static uint64_t scalar_bytes(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t t) {
    static const char *const names[GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                       "i32", "f32", "bool", "string", "array",
                                                       "u64", "i64", "f64"};
    return t < GGUF_TYPE_COUNT ? names[t] : "?";
}

int gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* One metadata value of type t at the cursor; fills kv's value fields. */
static subkv_status read_value(cursor *c, gguf_kv *kv, skv_err *err) {
    const uint8_t *b;
    if (kv->type == GGUF_TYPE_STRING) {
        gguf_str s;
        kv->value = c->p + c->pos;
        return cur_str(c, &s, "string value", err);
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        uint64_t n = scalar_bytes(kv->type);
        if (n == 0)
            return skv_set_error(err, SKV_ERR_UNSUPPORTED, "gguf: key '%.*s' has unknown type %u",
                                 (int)(kv->key.len > 64 ? 64 : kv->key.len), kv->key.ptr,
                                 (unsigned)kv->type);
        SKV_CHECK(cur_take(c, n, &b, "scalar value", err));
        kv->value = b;
        return SKV_OK;
    }
    uint32_t et;
    SKV_CHECK(cur_u32(c, &et, "array type", err));
    SKV_CHECK(cur_u64(c, &kv->arr_n, "array count", err));
    kv->arr_type = (gguf_type)et;
    kv->value = c->p + c->pos;
    if (et == GGUF_TYPE_STRING) {
        /* Each string takes at least its 8-byte length: bounds the index before allocating. */
        if (kv->arr_n > cur_left(c) / 8)
            return skv_set_error(err, SKV_ERR_TRUNCATED,
                                 "gguf: string array of %llu elements cannot fit in %llu bytes",
                                 (unsigned long long)kv->arr_n, (unsigned long long)cur_left(c));
        uint64_t *off = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof *off);
        if (!off) return skv_set_error(err, SKV_ERR_NOMEM, "gguf: string array index");
        kv->str_off = off;
        const uint64_t start = c->pos;
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            gguf_str s;
            off[i] = c->pos - start;
            SKV_CHECK(cur_str(c, &s, "array string", err));
        }
        return SKV_OK;
    }
    const uint64_t eb = scalar_bytes(et);
    if (eb == 0)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "gguf: array of type %u (%s) not supported (nested or unknown)",
                             (unsigned)et, gguf_type_name(et));
    if (kv->arr_n > cur_left(c) / eb)
        return skv_set_error(
            err, SKV_ERR_TRUNCATED, "gguf: array of %llu x %llu bytes exceeds the %llu bytes left",
            (unsigned long long)kv->arr_n, (unsigned long long)eb, (unsigned long long)cur_left(c));
    return cur_take(c, kv->arr_n * eb, &b, "array", err);
}

/* Sort helpers for the duplicate check (O(n log n) however many names a file claims). */
static int str_cmp(const gguf_str *a, const gguf_str *b) {
    uint64_t n = a->len < b->len ? a->len : b->len;
    int r = n ? memcmp(a->ptr, b->ptr, n) : 0;
    if (r) return r;
    return (a->len > b->len) - (a->len < b->len);
}
static int ptr_str_cmp(const void *a, const void *b) {
    return str_cmp(*(const gguf_str *const *)a, *(const gguf_str *const *)b);
}

static subkv_status check_unique(const gguf_str *first, size_t stride, uint64_t n, const char *what,
                                 skv_err *err) {
    if (n < 2) return SKV_OK;
    const gguf_str **v = malloc(n * sizeof *v);
    if (!v) return skv_set_error(err, SKV_ERR_NOMEM, "gguf: %s name index", what);
    for (uint64_t i = 0; i < n; i++) v[i] = (const gguf_str *)((const char *)first + i * stride);
    qsort(v, n, sizeof *v, ptr_str_cmp);
    subkv_status st = SKV_OK;
    for (uint64_t i = 1; i < n && st == SKV_OK; i++)
        if (str_cmp(v[i - 1], v[i]) == 0)
            st = skv_set_error(err, SKV_ERR_CORRUPT, "gguf: duplicate %s name '%.*s'", what,
                               (int)(v[i]->len > 64 ? 64 : v[i]->len), v[i]->ptr);
    free(v);
    return st;
}

uint32_t ggml_block_elems(uint32_t type);
uint32_t ggml_block_bytes(uint32_t type);

static subkv_status read_tensor_info(cursor *c, gguf_tensor *t, uint32_t alignment, skv_err *err) {
    SKV_CHECK(cur_str(c, &t->name, "tensor name", err));
    const int nl = (int)(t->name.len > 64 ? 64 : t->name.len);
    SKV_CHECK(cur_u32(c, &t->n_dims, "tensor n_dims", err));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: tensor '%.*s' has %u dimensions (1..%d)",
                             nl, t->name.ptr, (unsigned)t->n_dims, GGUF_MAX_DIMS);
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++)
        SKV_CHECK(cur_u64(c, &t->ne[i], "tensor dimension", err));
    SKV_CHECK(cur_u32(c, &t->type, "tensor type", err));
    SKV_CHECK(cur_u64(c, &t->offset, "tensor offset", err));
    const uint64_t be = ggml_block_elems(t->type), bb = ggml_block_bytes(t->type);
    if (be == 0)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "gguf: tensor '%.*s' has unknown type %u",
                             nl, t->name.ptr, (unsigned)t->type);
    if (t->ne[0] % be != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT,
                             "gguf: tensor '%.*s' row of %llu elements is not whole %llu-blocks",
                             nl, t->name.ptr, (unsigned long long)t->ne[0], (unsigned long long)be);
    /* nbytes = ne0/be * bb * ne1 * ne2 * ne3, refusing overflow (and ggml's int64 limit). */
    uint64_t nb = t->ne[0] / be * bb;
    if (t->ne[0] > (uint64_t)INT64_MAX || (t->ne[0] && nb / bb != t->ne[0] / be)) goto overflow;
    for (int i = 1; i < GGUF_MAX_DIMS; i++) {
        if (t->ne[i] > (uint64_t)INT64_MAX) goto overflow;
        if (t->ne[i] && nb > UINT64_MAX / t->ne[i]) goto overflow;
        nb *= t->ne[i];
    }
    t->nbytes = nb;
    if (t->offset % alignment != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT,
                             "gguf: tensor '%.*s' offset %llu is not a multiple of %u", nl,
                             t->name.ptr, (unsigned long long)t->offset, (unsigned)alignment);
    return SKV_OK;
overflow:
    return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: tensor '%.*s' size overflows", nl,
                         t->name.ptr);
}

static void free_parts(gguf_file *f) {
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free((void *)f->kv[i].str_off);
    free(f->kv);
    free(f->tensors);
}

static subkv_status parse(gguf_file *f, skv_err *err) {
    cursor c = {.p = f->base, .pos = 0, .size = f->size};
    const uint8_t *magic;
    SKV_CHECK(cur_take(&c, 4, &magic, "magic", err));
    if (memcmp(magic, "GGUF", 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: bad magic (not a GGUF file)");
    SKV_CHECK(cur_u32(&c, &f->version, "version", err));
    if (f->version != 2 && f->version != 3)
        return skv_set_error(err, SKV_ERR_VERSION, "gguf: version %u not supported (2 or 3)",
                             (unsigned)f->version);
    SKV_CHECK(cur_u64(&c, &f->n_tensors, "tensor count", err));
    SKV_CHECK(cur_u64(&c, &f->n_kv, "metadata count", err));
    /* A key-value takes >= 13 bytes (key length, type, 1-byte value), a tensor info >= 32. */
    if (f->n_kv > cur_left(&c) / 13 || f->n_tensors > cur_left(&c) / 32)
        return skv_set_error(
            err, SKV_ERR_TRUNCATED,
            "gguf: %llu metadata entries and %llu tensors cannot fit in %llu bytes",
            (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors,
            (unsigned long long)f->size);
    const uint64_t n_kv = f->n_kv;
    f->n_kv = 0; /* counts what free_parts must release */
    f->kv = calloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return skv_set_error(err, SKV_ERR_NOMEM, "gguf: tables");
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        f->n_kv = i + 1;
        uint32_t t;
        SKV_CHECK(cur_str(&c, &kv->key, "metadata key", err));
        SKV_CHECK(cur_u32(&c, &t, "metadata type", err));
        kv->type = (gguf_type)t;
        SKV_CHECK(read_value(&c, kv, err));
    }
    SKV_CHECK(check_unique(&f->kv[0].key, sizeof(gguf_kv), f->n_kv, "metadata", err));
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (gguf_find_kv(f, "general.alignment")) {
        SKV_CHECK(gguf_get_u32(f, "general.alignment", &f->alignment, err));
        if (f->alignment == 0 || (f->alignment & (f->alignment - 1)) != 0)
            return skv_set_error(err, SKV_ERR_CORRUPT,
                                 "gguf: general.alignment %u is not a power of two",
                                 (unsigned)f->alignment);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        SKV_CHECK(read_tensor_info(&c, &f->tensors[i], f->alignment, err));
    SKV_CHECK(check_unique(&f->tensors[0].name, sizeof(gguf_tensor), f->n_tensors, "tensor", err));
    /* The data section starts at the next multiple of the alignment (pos <= size < 2^63). */
    const uint64_t data = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->n_tensors > 0 && data > f->size)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "gguf: data section starts past the end");
    f->data_offset = data;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const uint64_t room = f->size - data;
        if (t->offset > room || t->nbytes > room - t->offset)
            return skv_set_error(err, SKV_ERR_TRUNCATED,
                                 "gguf: tensor '%.*s' (%llu bytes at %llu) ends past the file",
                                 (int)(t->name.len > 64 ? 64 : t->name.len), t->name.ptr,
                                 (unsigned long long)t->nbytes, (unsigned long long)t->offset);
        t->data = f->base + data + t->offset;
    }
    return SKV_OK;
}

subkv_status gguf_open_memory(const void *data, size_t len, gguf_file **out, skv_err *err) {
    if (!out || (!data && len)) return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: NULL arg");
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return skv_set_error(err, SKV_ERR_NOMEM, "gguf: file struct");
    f->base = data;
    f->size = len;
    subkv_status st = parse(f, err);
    if (st != SKV_OK) {
        free_parts(f);
        free(f);
        return st;
    }
    *out = f;
    return SKV_OK;
}

subkv_status gguf_open(const char *path, gguf_file **out, skv_err *err) {
    if (!path || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: NULL arg");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return skv_set_error(err, SKV_ERR_IO, "gguf: cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return skv_set_error(err, SKV_ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return skv_set_error(err, SKV_ERR_TRUNCATED, "gguf: %s has %lld bytes, less than a header",
                             path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return skv_set_error(err, SKV_ERR_IO, "gguf: cannot mmap %s", path);
    subkv_status st = gguf_open_memory(map, (size_t)sb.st_size, out, err);
    if (st != SKV_OK) {
        munmap(map, (size_t)sb.st_size);
        return st;
    }
    (*out)->map = map;
    return SKV_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    free_parts(f);
    if (f->map) munmap(f->map, f->size);
    free(f);
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

subkv_status gguf_tensor_expect(const gguf_file *f, const char *name, uint64_t type_mask,
                                uint32_t n_dims, const uint64_t *ne, const gguf_tensor **out,
                                skv_err *err) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return skv_set_error(err, SKV_ERR_NOT_FOUND, "gguf: no tensor '%s'", name);
    for (uint32_t i = 0; i < GGUF_MAX_DIMS; i++) {
        const uint64_t want = i < n_dims ? ne[i] : 1;
        if (t->ne[i] != want)
            return skv_set_error(
                err, SKV_ERR_SHAPE,
                "gguf: tensor '%s' is [%llu,%llu,%llu,%llu]; dim %u should be %llu", name,
                (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], i,
                (unsigned long long)want);
    }
    if (type_mask && (t->type >= 64 || !(type_mask >> t->type & 1)))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "gguf: tensor '%s' has type %s (%u)", name,
                             ggml_type_name(t->type), (unsigned)t->type);
    *out = t;
    return SKV_OK;
}
