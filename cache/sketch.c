/*
 * sketch.c — the policy-independent half of the contract: configuration defaults,
 * validation of every input before anything changes, dispatch to the policy vtable,
 * heap accounting for bytes(), and the checkpoint frame around a policy's body.
 */
#include <stdlib.h>

#include "csr_dict.h"
#include "skv_internal.h"

enum { SKV_FORMAT_VERSION = 1, SKV_HEADER_BYTES = 24 };
static const uint8_t skv_magic[4] = {'S', 'K', 'V', 'S'};

static const skv_policy_ops *policy_ops(skv_policy_id id) {
    switch (id) {
    case SKV_POLICY_EXACT: return &skv_policy_exact_ops;
    case SKV_POLICY_SINKWIN: return &skv_policy_sinkwin_ops;
    case SKV_POLICY_H2O: return &skv_policy_h2o_ops;
    case SKV_POLICY_SUBGEN: return &skv_policy_subgen_ops;
    case SKV_POLICY_REFRESHKV: return &skv_policy_refreshkv_ops;
    case SKV_POLICY_CSR: return &skv_policy_csr_ops;
    default: return NULL;
    }
}

void skv_config_default(skv_config *cfg, skv_policy_id policy, int head_dim) {
    memset(cfg, 0, sizeof *cfg);
    cfg->policy = policy;
    cfg->head_dim = head_dim;
    cfg->dtype = SKV_DTYPE_F32;
    cfg->values = SKV_VALUES_CLUSTER; /* the stratified estimator: see subkv.h */
    switch (policy) {
    case SKV_POLICY_SINKWIN:
        cfg->sinks = 4;
        cfg->window = 1024;
        break;
    case SKV_POLICY_H2O:
        cfg->heavy = 512;
        cfg->window = 512;
        break;
    case SKV_POLICY_SUBGEN:
        cfg->sinks = 4;
        cfg->window = 64;
        cfg->samples = 8;
        cfg->value_slots = 256;
        cfg->max_clusters = 256;
        break;
    case SKV_POLICY_REFRESHKV:
        cfg->partial_tokens = 256;
        cfg->stride = 10;
        cfg->threshold = 0.9f;
        cfg->pool_kernel = 7;
        /* a SubGen full store (full_store = subgen) takes subgen's defaults */
        cfg->sinks = 4;
        cfg->window = 64;
        cfg->samples = 8;
        cfg->value_slots = 256;
        cfg->max_clusters = 256;
        cfg->sparsity = 8; /* a csr full store (full_store = csr) takes csr's sparsity */
        break;
    case SKV_POLICY_CSR:
        cfg->window = 128;
        cfg->sparsity = 8;
        break;
    default: break;
    }
}

size_t skv_sketch_base_bytes(void) { return sizeof(skv_sketch); }

void *skv_sketch_alloc(skv_sketch *s, size_t bytes) {
    if (bytes == 0) return NULL;
    void *p = calloc(1, bytes);
    if (p) s->heap_bytes += bytes;
    return p;
}

void skv_sketch_free(skv_sketch *s, void *p, size_t bytes) {
    if (!p) return;
    free(p);
    s->heap_bytes -= bytes;
}

void *skv_sketch_realloc(skv_sketch *s, void *p, size_t old_bytes, size_t new_bytes) {
    void *np = realloc(p, new_bytes);
    if (!np) return NULL;
    s->heap_bytes = s->heap_bytes - old_bytes + new_bytes;
    return np;
}

subkv_status skv_sketch_rows(skv_sketch *s, skv_rows *r, skv_dtype dt, int d, size_t cap,
                             skv_err *err) {
    r->dtype = dt;
    r->d = d;
    r->cap = cap;
    r->data = NULL;
    size_t bytes = skv_rows_bytes(dt, d, cap);
    if (bytes == 0) return SKV_OK;
    r->data = skv_sketch_alloc(s, bytes);
    if (!r->data)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate %zu bytes for %zu rows", bytes,
                             cap);
    return SKV_OK;
}

void skv_sketch_rows_free(skv_sketch *s, skv_rows *r) {
    skv_sketch_free(s, r->data, skv_rows_bytes(r->dtype, r->d, r->cap));
    r->data = NULL;
    r->cap = 0;
}

/* Checks shared by every policy; then the policy resolves its own parameters. */
static subkv_status resolve_config(skv_config *cfg, const skv_policy_ops **ops, skv_err *err) {
    *ops = policy_ops(cfg->policy);
    if (!*ops)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown policy %d", (int)cfg->policy);
    if (cfg->head_dim < 1 || cfg->head_dim > SKV_MAX_HEAD_DIM)
        return skv_set_error(err, SKV_ERR_SHAPE, "head_dim %d outside [1, %d]", cfg->head_dim,
                             SKV_MAX_HEAD_DIM);
    if ((unsigned)cfg->dtype > SKV_DTYPE_BF16)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown dtype %d", (int)cfg->dtype);
    if ((unsigned)cfg->values > SKV_VALUES_CLUSTER)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "unknown values mode %d", (int)cfg->values);
    if ((unsigned)cfg->full_store > SKV_FULL_CSR)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "unknown full store %d",
                             (int)cfg->full_store);
    if ((unsigned)cfg->full_mem > SKV_FULL_MEM_DEVICE)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "unknown full_mem %d", (int)cfg->full_mem);
    if ((unsigned)cfg->decide > SKV_DECIDE_GROUP)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "unknown decide mode %d", (int)cfg->decide);
    if (cfg->sinks < 0 || cfg->window < 0 || cfg->heavy < 0 || cfg->samples < 0 ||
        cfg->value_slots < 0 || cfg->max_clusters < 0 || cfg->partial_tokens < 0 ||
        cfg->stride < 0 || cfg->pool_kernel < 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "negative size parameter");
    if (!isfinite(cfg->delta) || cfg->delta < 0.0f)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "delta must be finite and >= 0");
    if (!isfinite(cfg->threshold))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "threshold must be finite");
    if (cfg->budget_bytes && cfg->budget_bytes < skv_sketch_base_bytes())
        return skv_set_error(err, SKV_ERR_BUDGET, "budget %zu B below the sketch header (%zu B)",
                             cfg->budget_bytes, skv_sketch_base_bytes());
    return (*ops)->resolve(cfg, err);
}

subkv_status skv_config_resolve(const skv_config *in, skv_config *out, skv_err *err) {
    if (!in || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL config");
    skv_config c = *in;
    const skv_policy_ops *ops;
    SKV_CHECK(resolve_config(&c, &ops, err));
    *out = c;
    return SKV_OK;
}

size_t skv_config_max_bytes(const skv_config *c) {
    const skv_policy_ops *ops = policy_ops(c->policy);
    if (!ops) return SIZE_MAX;
    if (!ops->token_bytes) return ops->create_bytes(c);
    const size_t row = ops->token_bytes(c);
    if (!row) return ops->create_bytes(c); /* bounded at create (refreshkv's SubGen store) */
    if (!c->max_tokens) return SIZE_MAX;
    if (c->max_tokens > (SIZE_MAX - ops->create_bytes(c)) / row) return SIZE_MAX;
    return ops->create_bytes(c) + (size_t)c->max_tokens * row;
}

uint64_t skv_config_token_cap(const skv_config *c) {
    if (!c->max_tokens) return 0;
    if (c->policy == SKV_POLICY_REFRESHKV && c->full_store != SKV_FULL_CSR) return c->max_tokens;
    if (c->policy == SKV_POLICY_EXACT) return c->max_tokens;
    /* csr, and refreshkv's csr store: the codes' cap plus what stays exact */
    if (c->policy == SKV_POLICY_CSR || c->policy == SKV_POLICY_REFRESHKV)
        return c->max_tokens + (uint64_t)c->sinks + (uint64_t)c->window;
    return 0;
}

static subkv_status sketch_new(const skv_config *cfg, skv_sketch **out, skv_err *err) {
    skv_config c = *cfg;
    const skv_policy_ops *ops;
    SKV_CHECK(resolve_config(&c, &ops, err));
    skv_sketch *s = calloc(1, sizeof *s);
    if (!s) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate a sketch");
    s->cfg = c;
    s->ops = ops;
    s->heap_bytes = sizeof *s;
    subkv_status st = ops->init(s, err);
    if (st != SKV_OK) {
        ops->fini(s);
        free(s);
        return st;
    }
    *out = s;
    return SKV_OK;
}

subkv_status skv_sketch_create(const skv_config *cfg, skv_sketch **out, skv_err *err) {
    if (!cfg || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL config or out");
    *out = NULL;
    return sketch_new(cfg, out, err);
}

void skv_sketch_destroy(skv_sketch *s) {
    if (!s) return;
    s->ops->fini(s);
    free(s);
}

static subkv_status check_finite(const float *x, size_t count, const char *what, skv_err *err) {
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return skv_set_error(err, SKV_ERR_NONFINITE, "%s[%zu] is %s", what, i,
                                 isnan(x[i]) ? "NaN" : "Inf");
    return SKV_OK;
}

subkv_status skv_sketch_check_append(const skv_sketch *s, const float *K, const float *V, size_t n,
                                     int d, skv_err *err) {
    if (!s || !K || !V) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL sketch, K or V");
    if (n == 0) return skv_set_error(err, SKV_ERR_EMPTY, "append of 0 tokens");
    if (d != s->cfg.head_dim)
        return skv_set_error(err, SKV_ERR_SHAPE, "head_dim %d, sketch has %d", d, s->cfg.head_dim);
    if (n > SIZE_MAX / (size_t)d / sizeof(float))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "n = %zu tokens overflows", n);
    SKV_CHECK(check_finite(K, n * (size_t)d, "K", err));
    return check_finite(V, n * (size_t)d, "V", err);
}

subkv_status skv_sketch_append(skv_sketch *s, const float *K, const float *V, size_t n, int d,
                               skv_err *err) {
    SKV_CHECK(skv_sketch_check_append(s, K, V, n, d, err));
    SKV_CHECK(s->ops->append(s, K, V, n, err));
    s->tokens_seen += n;
    return SKV_OK;
}

static subkv_status check_attend(const skv_sketch *s, const float *Q, int g, int d,
                                 const skv_partial *out, skv_err *err) {
    enum { MAX_GROUP = 64 };
    if (!s || !Q || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL sketch, Q or out");
    if (g < 1 || g > MAX_GROUP)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "group of %d query heads outside [1, %d]", g,
                             MAX_GROUP);
    if (d != s->cfg.head_dim)
        return skv_set_error(err, SKV_ERR_SHAPE, "head_dim %d, sketch has %d", d, s->cfg.head_dim);
    return check_finite(Q, (size_t)g * (size_t)d, "Q", err);
}

subkv_status skv_sketch_check_attend(const skv_sketch *s, const float *Q, int g, int d,
                                     skv_err *err) {
    const skv_partial dummy = {0.0f, 0.0f};
    return check_attend(s, Q, g, d, &dummy, err);
}

/* The CPU work of an attend: the policy's group hook, else a side-effecting per-head
 * attend (h2o) runs whole here; else nothing, the entries answer. */
static subkv_status attend_begin(skv_sketch *s, const float *Q, int g, int d, skv_partial *out,
                                 int *done, skv_err *err) {
    *done = 0;
    if (s->ops->attend_begin) return s->ops->attend_begin(s, Q, g, out, done, err);
    if (!s->ops->attend) return SKV_OK;
    float qs[SKV_MAX_HEAD_DIM];
    const float scale = 1.0f / sqrtf((float)d);
    for (int i = 0; i < g; i++) {
        for (int j = 0; j < d; j++) qs[j] = Q[(size_t)i * (size_t)d + (size_t)j] * scale;
        SKV_CHECK(s->ops->attend(s, qs, skv_partial_at(out, d, (size_t)i), err));
    }
    *done = 1;
    return SKV_OK;
}

subkv_status skv_sketch_attend_begin(skv_sketch *s, const float *Q, int g, int d, skv_partial *out,
                                     int *done, skv_err *err) {
    if (!done) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL done");
    *done = 0;
    SKV_CHECK(check_attend(s, Q, g, d, out, err));
    return attend_begin(s, Q, g, d, out, done, err);
}

subkv_status skv_sketch_attend(skv_sketch *s, const float *Q, int g, int d, skv_partial *out,
                               skv_err *err) {
    SKV_CHECK(check_attend(s, Q, g, d, out, err));
    int done = 0;
    SKV_CHECK(attend_begin(s, Q, g, d, out, &done, err));
    if (done) return SKV_OK;
    float qs[SKV_MAX_HEAD_DIM];
    const float scale = 1.0f / sqrtf((float)d);
    for (int i = 0; i < g; i++) {
        for (int j = 0; j < d; j++) qs[j] = Q[(size_t)i * (size_t)d + (size_t)j] * scale;
        skv_attend_segments(s, qs, skv_partial_at(out, d, (size_t)i));
    }
    return SKV_OK;
}

subkv_status skv_sketch_refresh(skv_sketch *s, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL sketch");
    if (!s->ops->refresh)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "policy %s has no refresh",
                             skv_policy_name(s->cfg.policy));
    s->ops->refresh(s);
    return SKV_OK;
}

size_t skv_sketch_bytes(const skv_sketch *s) { return s ? s->heap_bytes : 0; }

void skv_sketch_stats(const skv_sketch *s, skv_stats *out) {
    memset(out, 0, sizeof *out);
    if (!s) return;
    out->tokens_seen = s->tokens_seen;
    out->bytes = s->heap_bytes;
    s->ops->stats(s, out);
}

const skv_config *skv_sketch_config(const skv_sketch *s) { return s ? &s->cfg : NULL; }

/* ---- checkpoint frame ----------------------------------------------------------------- */

static void write_config(skv_writer *w, const skv_config *c) {
    skv_w_u32(w, (uint32_t)c->policy);
    skv_w_u32(w, (uint32_t)c->head_dim);
    skv_w_u32(w, (uint32_t)c->dtype);
    skv_w_u32(w, (uint32_t)c->values);
    skv_w_u64(w, (uint64_t)c->budget_bytes);
    skv_w_u64(w, c->max_tokens);
    const int32_t ints[6] = {c->sinks,   c->window,      c->heavy,
                             c->samples, c->value_slots, c->max_clusters};
    for (int i = 0; i < 6; i++) skv_w_u32(w, (uint32_t)ints[i]);
    skv_w_f32(w, c->delta);
    skv_w_u64(w, c->seed);
    skv_w_u64(w, c->seq_id);
    skv_w_u32(w, c->layer);
    skv_w_u32(w, c->head);
    /* fields of newer policies follow only for them: older policies' bytes stay as in v1 */
    if (c->policy == SKV_POLICY_REFRESHKV) {
        skv_w_u32(w, (uint32_t)c->partial_tokens);
        skv_w_u32(w, (uint32_t)c->stride);
        skv_w_f32(w, c->threshold);
        skv_w_u32(w, (uint32_t)c->pool_kernel);
        /* full_mem rides in the full store's word (bits 8..15): checkpoints written before
         * it existed read as host, the default */
        skv_w_u32(w, (uint32_t)c->full_store | (uint32_t)c->full_mem << 8);
    }
    /* csr's fields, also for refreshkv's csr store (only then: other refreshkv bytes as before) */
    if (skv_config_needs_dict(c)) {
        const size_t plen = strnlen(c->dict_path, SKV_DICT_PATH_MAX - 1);
        skv_w_u32(w, (uint32_t)c->sparsity);
        skv_w_u32(w, (uint32_t)c->atoms);
        skv_w_f32(w, c->rope_base);
        skv_w_u32(w, (uint32_t)plen);
        skv_w_bytes(w, c->dict_path, plen);
    }
}

static void read_config(skv_reader *r, skv_config *c) {
    memset(c, 0, sizeof *c);
    c->policy = (skv_policy_id)skv_r_u32(r);
    c->head_dim = (int)skv_r_u32(r);
    c->dtype = (skv_dtype)skv_r_u32(r);
    c->values = (skv_values_mode)skv_r_u32(r);
    c->budget_bytes = (size_t)skv_r_u64(r);
    c->max_tokens = skv_r_u64(r);
    int *ints[6] = {&c->sinks,   &c->window,      &c->heavy,
                    &c->samples, &c->value_slots, &c->max_clusters};
    for (int i = 0; i < 6; i++) *ints[i] = (int32_t)skv_r_u32(r);
    c->delta = skv_r_f32(r);
    c->seed = skv_r_u64(r);
    c->seq_id = skv_r_u64(r);
    c->layer = skv_r_u32(r);
    c->head = skv_r_u32(r);
    if (c->policy == SKV_POLICY_REFRESHKV) {
        c->partial_tokens = (int32_t)skv_r_u32(r);
        c->stride = (int32_t)skv_r_u32(r);
        c->threshold = skv_r_f32(r);
        c->pool_kernel = (int32_t)skv_r_u32(r);
        const uint32_t fs = skv_r_u32(r);
        c->full_store = (skv_full_store)(fs & 0xffu);
        c->full_mem = (skv_full_mem)(fs >> 8);
    }
    if (skv_config_needs_dict(c)) {
        c->sparsity = (int32_t)skv_r_u32(r);
        c->atoms = (int32_t)skv_r_u32(r);
        c->rope_base = skv_r_f32(r);
        const uint32_t plen = skv_r_u32(r);
        if (plen >= SKV_DICT_PATH_MAX)
            r->failed = true;
        else
            skv_r_bytes(r, c->dict_path, plen);
    }
}

/* Field-wise equality through the serialized form (struct padding is not compared). */
static bool config_equal(const skv_config *a, const skv_config *b) {
    skv_buf ba = {0}, bb = {0};
    skv_writer wa = {&ba, false}, wb = {&bb, false};
    write_config(&wa, a);
    write_config(&wb, b);
    bool eq = !wa.failed && !wb.failed && ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0;
    skv_buf_free(&ba);
    skv_buf_free(&bb);
    return eq;
}

subkv_status skv_sketch_save(const skv_sketch *s, skv_buf *out, skv_err *err) {
    if (!s || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL sketch or buffer");
    const size_t start = out->len;
    skv_writer w = {out, false};
    uint8_t header[SKV_HEADER_BYTES] = {0};
    skv_w_bytes(&w, header, sizeof header); /* filled in below */
    const size_t body = out->len;
    write_config(&w, &s->cfg);
    skv_w_u64(&w, s->tokens_seen);
    s->ops->save(s, &w);
    if (w.failed) {
        out->len = start;
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow the checkpoint buffer");
    }
    const uint64_t body_len = out->len - body;
    const uint32_t version = SKV_FORMAT_VERSION, policy = (uint32_t)s->cfg.policy;
    const uint32_t crc = skv_crc32c(out->data + body, body_len);
    uint8_t *h = out->data + start;
    memcpy(h, skv_magic, 4);
    memcpy(h + 4, &version, 4);
    memcpy(h + 8, &policy, 4);
    memcpy(h + 12, &body_len, 8);
    memcpy(h + 20, &crc, 4);
    return SKV_OK;
}

subkv_status skv_sketch_load(const void *data, size_t len, skv_sketch **out, size_t *used,
                             skv_err *err) {
    return skv_sketch_load_bounded(data, len, SIZE_MAX, out, used, err);
}

subkv_status skv_sketch_load_bounded(const void *data, size_t len, size_t max_bytes,
                                     skv_sketch **out, size_t *used, skv_err *err) {
    return skv_sketch_load_dicts(data, len, max_bytes, NULL, out, used, err);
}

subkv_status skv_sketch_load_dicts(const void *data, size_t len, size_t max_bytes,
                                   struct skv_dicts *dicts, skv_sketch **out, size_t *used,
                                   skv_err *err) {
    if (!data || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL data or out");
    *out = NULL;
    const uint8_t *p = data;
    if (len < SKV_HEADER_BYTES)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "%zu bytes, a header needs %d", len,
                             SKV_HEADER_BYTES);
    if (memcmp(p, skv_magic, 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "bad magic: not a subkv sketch");
    uint32_t version, policy, crc;
    uint64_t body_len;
    memcpy(&version, p + 4, 4);
    memcpy(&policy, p + 8, 4);
    memcpy(&body_len, p + 12, 8);
    memcpy(&crc, p + 20, 4);
    if (version != SKV_FORMAT_VERSION)
        return skv_set_error(err, SKV_ERR_VERSION, "format version %u, this build reads %d",
                             version, SKV_FORMAT_VERSION);
    if (policy >= SKV_POLICY_COUNT)
        return skv_set_error(err, SKV_ERR_CORRUPT, "unknown policy id %u", policy);
    if (body_len > len - SKV_HEADER_BYTES)
        return skv_set_error(err, SKV_ERR_TRUNCATED, "body of %llu bytes, %zu present",
                             (unsigned long long)body_len, len - SKV_HEADER_BYTES);
    if (skv_crc32c(p + SKV_HEADER_BYTES, body_len) != crc)
        return skv_set_error(err, SKV_ERR_CORRUPT, "checksum mismatch");

    skv_reader r = {p + SKV_HEADER_BYTES, (size_t)body_len, 0, false};
    skv_config cfg;
    read_config(&r, &cfg);
    uint64_t tokens_seen = skv_r_u64(&r);
    if (r.failed) return skv_set_error(err, SKV_ERR_CORRUPT, "body too short for its config");
    if ((uint32_t)cfg.policy != policy)
        return skv_set_error(err, SKV_ERR_CORRUPT, "header and body disagree on the policy");
    if (skv_config_needs_dict(&cfg)) { /* bind the dictionary it was coded with, by name */
        if (!dicts)
            return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                                 "a %s checkpoint needs a dictionary registry "
                                 "(skv_sketch_load_dicts)",
                                 cfg.policy == SKV_POLICY_CSR ? "csr" : "refreshkv csr-store");
        SKV_CHECK(skv_config_bind_dict(&cfg, dicts, err));
    }
    skv_sketch *s = NULL;
    skv_err inner;
    skv_config rc;
    subkv_status st = skv_config_resolve(&cfg, &rc, &inner);
    if (st != SKV_OK)
        return skv_set_error(err, SKV_ERR_CORRUPT, "stored config rejected: %s", inner.msg);
    /* before allocating what the config asks for (a few bytes can ask for gigabytes); an
     * unbounded exact cache allocates only the rows its body carries, checked in its load */
    const size_t need = skv_config_max_bytes(&rc);
    if (need != SIZE_MAX && need > max_bytes)
        return skv_set_error(err, SKV_ERR_BUDGET,
                             "stored sketch reserves %zu bytes, the limit is %zu", need, max_bytes);
    st = sketch_new(&cfg, &s, &inner);
    if (st != SKV_OK)
        return skv_set_error(err, st == SKV_ERR_NOMEM ? st : SKV_ERR_CORRUPT,
                             "stored config rejected: %s", inner.msg);
    if (!config_equal(&s->cfg, &cfg)) {
        skv_sketch_destroy(s);
        return skv_set_error(err, SKV_ERR_CORRUPT, "stored config is not a resolved config");
    }
    s->tokens_seen = tokens_seen;
    st = s->ops->load(s, &r, err);
    if (st == SKV_OK && (r.failed || r.pos != r.len))
        st = skv_set_error(err, SKV_ERR_CORRUPT, "body length does not match its contents");
    if (st != SKV_OK) {
        skv_sketch_destroy(s);
        return st;
    }
    if (used) *used = SKV_HEADER_BYTES + (size_t)body_len;
    *out = s;
    return SKV_OK;
}
