/* csr_dict.c — see csr_dict.h. */
#include "csr_dict.h"

#include <float.h>
#include <stdlib.h>

#include "fileio.h"
#include "skv_internal.h"

enum { DICT_VERSION = 1, DICT_BODY_FIXED = 24 };
static const uint8_t dict_magic[4] = {'S', 'K', 'V', 'D'};

/* floats of one group: keys N*d + two value halves N*d/2 */
static size_t group_floats(const skv_dict *dict) { return 2 * (size_t)dict->atoms * dict->d; }

static subkv_status check_shape(int d, int atoms, int groups, int lpg, skv_err *err) {
    if (d < 2 || d > SKV_MAX_HEAD_DIM || d % 2 != 0)
        return skv_set_error(err, SKV_ERR_SHAPE, "dictionary head_dim %d: must be even, 2..%d", d,
                             SKV_MAX_HEAD_DIM);
    if (atoms < 1 || atoms > SKV_DICT_MAX_ATOMS)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "dictionary atoms %d outside [1, %d]", atoms,
                             SKV_DICT_MAX_ATOMS);
    if (groups < 1 || groups > SKV_DICT_MAX_GROUPS || lpg < 1 || lpg > SKV_DICT_MAX_GROUPS)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "dictionary groups %d / layers per group %d outside [1, %d]", groups,
                             lpg, SKV_DICT_MAX_GROUPS);
    return SKV_OK;
}

subkv_status skv_dict_new(int d, int atoms, int groups, int layers_per_group, skv_dict **out,
                          skv_err *err) {
    if (!out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL out");
    *out = NULL;
    SKV_CHECK(check_shape(d, atoms, groups, layers_per_group, err));
    skv_dict *dict = calloc(1, sizeof *dict);
    if (!dict) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate a dictionary");
    dict->d = d;
    dict->atoms = atoms;
    dict->groups = groups;
    dict->layers_per_group = layers_per_group;
    dict->data = calloc((size_t)groups * group_floats(dict), sizeof(float));
    if (!dict->data) {
        free(dict);
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate %d x %d atoms x %d groups", atoms,
                             d, groups);
    }
    *out = dict;
    return SKV_OK;
}

void skv_dict_free(skv_dict *dict) {
    if (!dict) return;
    free(dict->data);
    free(dict);
}

float *skv_dict_keys(const skv_dict *dict, int g) {
    return dict->data + (size_t)g * group_floats(dict);
}

float *skv_dict_values(const skv_dict *dict, int g, int half) {
    const size_t n = (size_t)dict->atoms * (size_t)dict->d;
    return skv_dict_keys(dict, g) + n + (size_t)half * (n / 2);
}

int skv_dict_group_of(const skv_dict *dict, uint32_t layer) {
    const uint32_t g = layer / (uint32_t)dict->layers_per_group;
    return g < (uint32_t)dict->groups ? (int)g : -1;
}

/* ---- serialization --------------------------------------------------------------------- */

static void write_body(const skv_dict *dict, skv_writer *w) {
    const uint32_t hdr[6] = {(uint32_t)dict->d,         (uint32_t)dict->atoms,
                             (uint32_t)dict->groups,    (uint32_t)dict->layers_per_group,
                             (uint32_t)dict->key_space, 0u};
    for (int i = 0; i < 6; i++) skv_w_u32(w, hdr[i]);
    skv_w_bytes(w, dict->data, (size_t)dict->groups * group_floats(dict) * sizeof(float));
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Every atom finite and of unit norm within tol (after finish or as loaded). */
static bool atoms_ok(const skv_dict *dict, double tol) {
    const size_t rows[3] = {(size_t)dict->atoms, (size_t)dict->atoms, (size_t)dict->atoms};
    for (int g = 0; g < dict->groups; g++)
        for (int t = 0; t < 3; t++) {
            const int dim = t == 0 ? dict->d : dict->d / 2;
            const float *a = t == 0 ? skv_dict_keys(dict, g) : skv_dict_values(dict, g, t - 1);
            for (size_t i = 0; i < rows[t]; i++) {
                double nn = 0.0;
                for (int j = 0; j < dim; j++) {
                    const float x = a[i * (size_t)dim + (size_t)j];
                    if (!isfinite(x)) return false;
                    nn += (double)x * x;
                }
                if (!(fabs(sqrt(nn) - 1.0) <= tol)) return false;
            }
        }
    return true;
}

subkv_status skv_dict_finish(skv_dict *dict, skv_err *err) {
    if (!dict) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL dictionary");
    for (int g = 0; g < dict->groups; g++)
        for (int t = 0; t < 3; t++) {
            const int dim = t == 0 ? dict->d : dict->d / 2;
            float *a = t == 0 ? skv_dict_keys(dict, g) : skv_dict_values(dict, g, t - 1);
            for (int i = 0; i < dict->atoms; i++) {
                float *row = a + (size_t)i * (size_t)dim;
                double nn = 0.0;
                for (int j = 0; j < dim; j++) nn += (double)row[j] * row[j];
                if (!(nn > 0.0) || !isfinite(nn))
                    return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                         "atom %d of table %d, group %d is zero or non-finite", i,
                                         t, g);
                const double inv = 1.0 / sqrt(nn);
                for (int j = 0; j < dim; j++) row[j] = (float)(row[j] * inv);
            }
        }
    skv_buf b = {0};
    skv_writer w = {&b, false};
    write_body(dict, &w);
    if (w.failed) {
        skv_buf_free(&b);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory to fingerprint the dictionary");
    }
    dict->fingerprint = fnv1a64(b.data, b.len);
    skv_buf_free(&b);
    return SKV_OK;
}

subkv_status skv_dict_save(const skv_dict *dict, skv_buf *out, skv_err *err) {
    if (!dict || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL dictionary or buffer");
    const size_t start = out->len;
    skv_writer w = {out, false};
    uint8_t header[SKV_DICT_HEADER_BYTES] = {0};
    skv_w_bytes(&w, header, sizeof header);
    const size_t body = out->len;
    write_body(dict, &w);
    if (w.failed) {
        out->len = start;
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow the dictionary buffer");
    }
    const uint64_t body_len = out->len - body;
    const uint32_t version = DICT_VERSION, crc = skv_crc32c(out->data + body, body_len);
    uint8_t *h = out->data + start;
    memcpy(h, dict_magic, 4);
    memcpy(h + 4, &version, 4);
    memcpy(h + 8, &body_len, 8);
    memcpy(h + 16, &crc, 4);
    return SKV_OK;
}

subkv_status skv_dict_load(const void *data, size_t len, skv_dict **out, skv_err *err) {
    if (!data || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL data or out");
    *out = NULL;
    const uint8_t *p = data;
    if (len < SKV_DICT_HEADER_BYTES)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "%zu bytes, a dictionary header needs %d", len,
                             SKV_DICT_HEADER_BYTES);
    if (memcmp(p, dict_magic, 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "bad magic: not a subkv dictionary");
    uint32_t version, crc;
    uint64_t body_len;
    memcpy(&version, p + 4, 4);
    memcpy(&body_len, p + 8, 8);
    memcpy(&crc, p + 16, 4);
    if (version != DICT_VERSION)
        return skv_set_error(err, SKV_ERR_VERSION, "dictionary version %u, this build reads %d",
                             version, DICT_VERSION);
    if (body_len > len - SKV_DICT_HEADER_BYTES)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "dictionary body of %llu bytes, %zu present",
                             (unsigned long long)body_len, len - SKV_DICT_HEADER_BYTES);
    if (body_len != len - SKV_DICT_HEADER_BYTES)
        return skv_set_error(err, SKV_ERR_CORRUPT, "%zu bytes after a dictionary of %llu",
                             len - SKV_DICT_HEADER_BYTES - (size_t)body_len,
                             (unsigned long long)body_len);
    const uint8_t *b = p + SKV_DICT_HEADER_BYTES;
    if (skv_crc32c(b, body_len) != crc)
        return skv_set_error(err, SKV_ERR_CORRUPT, "dictionary checksum mismatch");
    skv_reader r = {b, (size_t)body_len, 0, false};
    uint32_t f[6];
    for (int i = 0; i < 6; i++) f[i] = skv_r_u32(&r);
    if (r.failed) return skv_set_error(err, SKV_ERR_CORRUPT, "dictionary body too short");
    skv_err inner;
    if (f[0] > SKV_MAX_HEAD_DIM || f[1] > SKV_DICT_MAX_ATOMS || f[2] > SKV_DICT_MAX_GROUPS ||
        f[3] > SKV_DICT_MAX_GROUPS ||
        check_shape((int)f[0], (int)f[1], (int)f[2], (int)f[3], &inner) != SKV_OK)
        return skv_set_error(err, SKV_ERR_CORRUPT, "dictionary shape rejected (%u x %u x %u)", f[0],
                             f[1], f[2]);
    if (f[4] > SKV_KEYS_PRE_ROTARY || f[5] != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "dictionary key space %u / reserved %u", f[4],
                             f[5]);
    /* the body length must be exactly what the shape implies: checked before allocating */
    const uint64_t floats = (uint64_t)f[2] * 2u * f[1] * f[0];
    if (body_len != DICT_BODY_FIXED + floats * 4u)
        return skv_set_error(
            err, SKV_ERR_CORRUPT, "dictionary body of %llu bytes, shape needs %llu",
            (unsigned long long)body_len, (unsigned long long)(DICT_BODY_FIXED + floats * 4u));
    skv_dict *dict = NULL;
    SKV_CHECK(skv_dict_new((int)f[0], (int)f[1], (int)f[2], (int)f[3], &dict, err));
    dict->key_space = (skv_key_space)f[4];
    skv_r_bytes(&r, dict->data, (size_t)floats * sizeof(float));
    if (r.failed || !atoms_ok(dict, 1e-3)) {
        skv_dict_free(dict);
        return skv_set_error(err, SKV_ERR_CORRUPT, "dictionary atoms not finite unit vectors");
    }
    dict->fingerprint = fnv1a64(b, (size_t)body_len);
    *out = dict;
    return SKV_OK;
}

subkv_status skv_dict_save_file(const skv_dict *dict, const char *path, skv_err *err) {
    skv_buf b = {0};
    SKV_CHECK(skv_dict_save(dict, &b, err));
    subkv_status st = skv_file_write_atomic(path, b.data, b.len, err);
    skv_buf_free(&b);
    return st;
}

subkv_status skv_dict_load_file(const char *path, skv_dict **out, skv_err *err) {
    if (!path || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL path or out");
    unsigned char *data = NULL;
    size_t len = 0;
    SKV_CHECK(skv_file_read(path, (size_t)1 << 32, &data, &len, err));
    subkv_status st = skv_dict_load(data, len, out, err);
    free(data);
    return st;
}

/* ---- matching pursuit -------------------------------------------------------------------- */

static inline float dot8(const float *a, const float *b, int n) {
    float lane[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) lane[k] += a[j + k] * b[j + k];
    for (; j < n; j++) lane[0] += a[j] * b[j];
    float acc = 0.0f;
    for (int k = 0; k < 8; k++) acc += lane[k];
    return acc;
}

void skv_mp_encode(const float *atoms, int n, int dim, const float *x, int s, uint16_t *idx,
                   uint16_t *coef, float *resid) {
    float r[SKV_MAX_HEAD_DIM];
    memcpy(r, x, (size_t)dim * sizeof(float));
    for (int step = 0; step < s; step++) {
        if (resid) resid[step] = sqrtf(dot8(r, r, dim));
        int best = 0;
        float bc = dot8(atoms, r, dim), ba = fabsf(bc);
        for (int i = 1; i < n; i++) {
            const float c = dot8(atoms + (size_t)i * (size_t)dim, r, dim);
            if (fabsf(c) > ba) best = i, bc = c, ba = fabsf(c);
        }
        /* saturate instead of rounding to Inf: a smaller coefficient of the same sign still
         * lowers the residual */
        const float cl = bc > 65504.0f ? 65504.0f : bc < -65504.0f ? -65504.0f : bc;
        const uint16_t h = skv_f32_to_f16(cl);
        const float q = skv_f16_to_f32(h);
        const float *a = atoms + (size_t)best * (size_t)dim;
        for (int j = 0; j < dim; j++) r[j] -= q * a[j];
        idx[step] = (uint16_t)best;
        coef[step] = h;
    }
    if (resid) resid[s] = sqrtf(dot8(r, r, dim));
}

float skv_mp_coef(uint16_t coef) { return skv_f16_to_f32(coef); }

void skv_mp_decode(const float *atoms, int dim, const uint16_t *idx, const uint16_t *coef, int s,
                   float *out) {
    memset(out, 0, (size_t)dim * sizeof(float));
    for (int i = 0; i < s; i++) {
        const float q = skv_f16_to_f32(coef[i]);
        const float *a = atoms + (size_t)idx[i] * (size_t)dim;
        for (int j = 0; j < dim; j++) out[j] += q * a[j];
    }
}

void skv_rope_apply(float *x, int d, uint64_t pos, double base, double sign) {
    for (int i = 0; i < d / 2; i++) {
        const double a = sign * (double)pos * pow(base, -2.0 * i / d), c = cos(a), sn = sin(a);
        const double x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = (float)(x0 * c - x1 * sn);
        x[2 * i + 1] = (float)(x0 * sn + x1 * c);
    }
}

/* ---- registry ------------------------------------------------------------------------------ */

typedef struct dict_entry {
    char *name;
    skv_dict *dict;
} dict_entry;

struct skv_dicts {
    dict_entry *e;
    size_t n, cap;
};

subkv_status skv_dicts_new(skv_dicts **out, skv_err *err) {
    if (!out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL out");
    *out = calloc(1, sizeof **out);
    if (!*out) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate a dictionary registry");
    return SKV_OK;
}

void skv_dicts_free(skv_dicts *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++) {
        free(reg->e[i].name);
        skv_dict_free(reg->e[i].dict);
    }
    free(reg->e);
    free(reg);
}

static skv_dict *dicts_find(const skv_dicts *reg, const char *name) {
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->e[i].name, name) == 0) return reg->e[i].dict;
    return NULL;
}

subkv_status skv_dicts_add(skv_dicts *reg, const char *name, skv_dict *dict, skv_err *err) {
    subkv_status st = SKV_OK;
    if (!reg || !name || !dict || !name[0] || strlen(name) >= SKV_DICT_PATH_MAX) {
        st = skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL registry or dictionary, or bad name");
        goto fail;
    }
    if (dicts_find(reg, name)) {
        st = skv_set_error(err, SKV_ERR_INVALID_ARG, "dictionary '%s' already registered", name);
        goto fail;
    }
    SKV_CHECK_GOTO(skv_grow((void **)&reg->e, &reg->cap, reg->n + 1, sizeof *reg->e, err), st,
                   fail);
    char *copy = malloc(strlen(name) + 1);
    if (!copy) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "no memory for a dictionary name");
        goto fail;
    }
    memcpy(copy, name, strlen(name) + 1);
    reg->e[reg->n++] = (dict_entry){copy, dict};
    return SKV_OK;
fail:
    skv_dict_free(dict);
    return st;
}

subkv_status skv_dicts_get(skv_dicts *reg, const char *name, const skv_dict **out, skv_err *err) {
    if (!reg || !name || !out)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL registry, name or out");
    *out = dicts_find(reg, name);
    if (*out) return SKV_OK;
    if (!name[0]) return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr needs a dictionary path");
    skv_dict *dict = NULL;
    SKV_CHECK(skv_dict_load_file(name, &dict, err));
    SKV_CHECK(skv_dicts_add(reg, name, dict, err));
    *out = dict;
    return SKV_OK;
}

int skv_config_needs_dict(const skv_config *cfg) {
    return cfg->policy == SKV_POLICY_CSR ||
           (cfg->policy == SKV_POLICY_REFRESHKV && cfg->full_store == SKV_FULL_CSR);
}

subkv_status skv_config_bind_dict(skv_config *cfg, skv_dicts *reg, skv_err *err) {
    if (!cfg) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL config");
    if (!skv_config_needs_dict(cfg) || cfg->dict) return SKV_OK;
    if (!reg) return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr config without a registry");
    if (memchr(cfg->dict_path, '\0', sizeof cfg->dict_path) == NULL)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "dict_path not terminated");
    const skv_dict *d = NULL;
    SKV_CHECK(skv_dicts_get(reg, cfg->dict_path, &d, err));
    cfg->dict = d;
    return SKV_OK;
}
