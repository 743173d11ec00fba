/*
 * gguf_meta.c — typed access to GGUF metadata (see gguf.h). Values were bounds-checked by the
 * parser, so these only check types and ranges; reads use memcpy (the image is unaligned).
 */
#include <math.h>
#include <string.h>

#include "gguf.h"
#include "skv_check.h"

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

static int is_int_type(uint32_t t) {
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64 ||
           t == GGUF_TYPE_BOOL;
}

/* The integer at p of type t (an integer type) as a sign and magnitude: *neg, *mag. */
static void read_int(uint32_t t, const uint8_t *p, int *neg, uint64_t *mag) {
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 1;
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_BOOL: u = p[0], is_signed = 0; break;
    case GGUF_TYPE_INT8: s = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        u = v, is_signed = 0;
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        s = v;
        break;
    }
    case GGUF_TYPE_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        u = v, is_signed = 0;
        break;
    }
    case GGUF_TYPE_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        s = v;
        break;
    }
    case GGUF_TYPE_UINT64: memcpy(&u, p, 8), is_signed = 0; break;
    default: memcpy(&s, p, 8); break; /* INT64 */
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0;
        *mag = u;
    }
}

static subkv_status find_typed(const gguf_file *f, const char *key, const gguf_kv **out,
                               skv_err *err) {
    if (!f || !key || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: NULL arg");
    *out = gguf_find_kv(f, key);
    if (!*out) return skv_set_error(err, SKV_ERR_NOT_FOUND, "gguf: no metadata key '%s'", key);
    return SKV_OK;
}

static subkv_status wrong_type(skv_err *err, const char *key, uint32_t got, const char *want) {
    return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: key '%s' is %s, expected %s", key,
                         gguf_type_name(got), want);
}

/* An integer value in [lo, hi] (as i64 range plus an unsigned ceiling). */
static subkv_status get_int(const gguf_file *f, const char *key, int allow_neg, uint64_t max_mag,
                            int *neg, uint64_t *mag, skv_err *err) {
    const gguf_kv *kv;
    SKV_CHECK(find_typed(f, key, &kv, err));
    if (!is_int_type(kv->type)) return wrong_type(err, key, kv->type, "an integer");
    read_int(kv->type, kv->value, neg, mag);
    if ((*neg && !allow_neg) || (!*neg && *mag > max_mag) ||
        (*neg && *mag > (uint64_t)INT64_MAX + 1))
        return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: key '%s' value %s%llu out of range", key,
                             *neg ? "-" : "", (unsigned long long)*mag);
    return SKV_OK;
}

subkv_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, skv_err *err) {
    int neg;
    uint64_t mag;
    SKV_CHECK(get_int(f, key, 0, UINT32_MAX, &neg, &mag, err));
    *out = (uint32_t)mag;
    return SKV_OK;
}

subkv_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, skv_err *err) {
    int neg;
    uint64_t mag;
    SKV_CHECK(get_int(f, key, 0, UINT64_MAX, &neg, &mag, err));
    *out = mag;
    return SKV_OK;
}

subkv_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, skv_err *err) {
    int neg;
    uint64_t mag;
    SKV_CHECK(get_int(f, key, 1, INT64_MAX, &neg, &mag, err));
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return SKV_OK;
}

subkv_status gguf_get_f64(const gguf_file *f, const char *key, double *out, skv_err *err) {
    const gguf_kv *kv;
    SKV_CHECK(find_typed(f, key, &kv, err));
    if (kv->type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, kv->value, 4);
        *out = v;
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        memcpy(out, kv->value, 8);
    } else {
        return wrong_type(err, key, kv->type, "f32 or f64");
    }
    return SKV_OK;
}

subkv_status gguf_get_f32(const gguf_file *f, const char *key, float *out, skv_err *err) {
    double v;
    SKV_CHECK(gguf_get_f64(f, key, &v, err));
    if (isfinite(v) && fabs(v) > 3.4028234663852886e38)
        return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: key '%s' beyond float range", key);
    *out = (float)v;
    return SKV_OK;
}

subkv_status gguf_get_bool(const gguf_file *f, const char *key, int *out, skv_err *err) {
    const gguf_kv *kv;
    SKV_CHECK(find_typed(f, key, &kv, err));
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(err, key, kv->type, "bool");
    *out = kv->value[0] != 0;
    return SKV_OK;
}

static gguf_str str_at(const uint8_t *p) {
    gguf_str s;
    memcpy(&s.len, p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

subkv_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, skv_err *err) {
    const gguf_kv *kv;
    SKV_CHECK(find_typed(f, key, &kv, err));
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(err, key, kv->type, "string");
    *out = str_at(kv->value);
    return SKV_OK;
}

subkv_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type *elem_type, uint64_t *n,
                          skv_err *err) {
    const gguf_kv *kv;
    SKV_CHECK(find_typed(f, key, &kv, err));
    if (kv->type != GGUF_TYPE_ARRAY) return wrong_type(err, key, kv->type, "array");
    if (elem_type) *elem_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return SKV_OK;
}

static subkv_status arr_check(const gguf_kv *kv, uint64_t i, skv_err *err) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: not an array entry");
    if (i >= kv->arr_n)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: index %llu of a %llu-array '%.*s'",
                             (unsigned long long)i, (unsigned long long)kv->arr_n,
                             (int)(kv->key.len > 64 ? 64 : kv->key.len), kv->key.ptr);
    return SKV_OK;
}

static subkv_status arr_wrong(const gguf_kv *kv, skv_err *err, const char *want) {
    return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: array '%.*s' holds %s, expected %s",
                         (int)(kv->key.len > 64 ? 64 : kv->key.len), kv->key.ptr,
                         gguf_type_name(kv->arr_type), want);
}

subkv_status gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_str *out, skv_err *err) {
    SKV_CHECK(arr_check(kv, i, err));
    if (kv->arr_type != GGUF_TYPE_STRING) return arr_wrong(kv, err, "strings");
    *out = str_at(kv->value + kv->str_off[i]);
    return SKV_OK;
}

subkv_status gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out, skv_err *err) {
    SKV_CHECK(arr_check(kv, i, err));
    if (!is_int_type(kv->arr_type)) return arr_wrong(kv, err, "integers");
    int neg;
    uint64_t mag;
    static const uint8_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    read_int(kv->arr_type, kv->value + i * sz[kv->arr_type], &neg, &mag);
    if (!neg && mag > (uint64_t)INT64_MAX)
        return skv_set_error(err, SKV_ERR_CORRUPT, "gguf: array element %llu beyond i64",
                             (unsigned long long)i);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return SKV_OK;
}

subkv_status gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out, skv_err *err) {
    SKV_CHECK(arr_check(kv, i, err));
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, kv->value + i * 4, 4);
        *out = v;
    } else if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        memcpy(out, kv->value + i * 8, 8);
    } else {
        return arr_wrong(kv, err, "floats");
    }
    return SKV_OK;
}
