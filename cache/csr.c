/*
 * csr.c — Cache Sparse Representation (arXiv 2412.11741): every token that leaves the exact
 * window is stored as sparse codes over a learned dictionary (cache/csr_dict.h).
 *
 * A key k in R^d becomes s pairs (u16 atom index, f16 coefficient) by matching pursuit over
 * the N key atoms of its layer's group; a value becomes s/2 pairs for channels [0, d/2) and
 * s/2 for [d/2, d) over the two value tables (the paper codes value halves separately; an odd
 * s gives the first half the extra atom, so d = 64 has 1.5 bits at s = 3). So a
 * token costs 2 * s * 4 = 8 s bytes, 32 s / d bits per element: CSR-16/8/6/4 at d = 128 are
 * 4 / 2 / 1.5 / 1 bit. The first `sinks` and the last `window` tokens stay exact (skv_sinkwin).
 *
 * Attention runs over the reconstructions k^ = sum c_i a_i, v^ likewise (float32 sums,
 * stored in the config's dtype like every other row). How CSR plugs into the weighted-entry
 * view: `segments` decodes the codes in blocks of at most 8192 floats per K and V on the stack
 * and hands each block to the sink as all-ones entries. The generic CPU attend thus decodes on
 * the fly (64 KiB of scratch, nothing kept). The GPU worker does not decode: it mirrors the
 * codes and the exact rows append-only (skv_csr_parts_from, worker/gpu_csr.c) and the code
 * kernel (cuda/csr_attend.cu) forms the scores and outputs from indices and coefficients,
 * reproducing csr_decode below in float32 (without the storage rounding of the rows here);
 * this file is its reference. Pre-rotary codes stay on the CPU attend there. The GPU worker
 * also codes the tokens on the device: skv_csr_code_inputs lists the rows an append codes
 * (the ones it pushes out of the window, not the ones it brings), cuda/csr_encode.cu codes
 * them bit for bit as csr_encode would, and skv_csr_append_codes appends with those codes.
 *
 * Memory: bytes() counts the sinks, the window and the code arrays (grown x1.5 like exact's
 * rows, never past max_tokens); the dictionary is shared by every sketch of the process and
 * counted nowhere (it is the caller's). With budget_bytes, the window and sinks are taken as
 * given and max_tokens (coded tokens) is derived: (budget - fixed) / (8 s).
 *
 * Keys, post- or pre-rotary. With rope_base = 0 keys are coded as given (post-rotary keys, a
 * post-rotary dictionary). The paper codes keys before rotary: rotary turns a key's channel
 * pairs by position-dependent angles, so post-rotary keys of one direction are spread over all
 * phases, which a fixed dictionary must cover atom by atom. With rope_base > 0 (and a set
 * trained on pre-rotary keys, key_space = 1) the client still sends post-rotary keys; the
 * sketch undoes the rotation R(p) at the token's position p before coding and applies it to
 * the decoded key: k^ = R(p) D c, so attention sees post-rotary keys either way. The position
 * of coded row i is known without storing it: codes are in token order after the sinks, so
 * p = sinks + i in the sketch's stream (the sequence position when the head is not context
 * sharded; a shard's stream positions differ from the sequence's, which keeps the result exact
 * but codes with the wrong phase: a sharded pre-rotary csr needs the positions on the wire).
 * Values have no rotary and are coded as given either way.
 */
#include <math.h>

#include "csr_dict.h"
#include "skv_internal.h"

typedef struct csr_impl {
    skv_sinkwin sw;
    const float *dk;    /* key atoms [N][d] of this layer's group (borrowed)      */
    const float *dv[2]; /* value atoms [N][d/2] of each half (borrowed)          */
    int atoms, s;
    double *inv_freq; /* rope_base > 0: base^(-2i/d) for each channel pair i, else NULL */
    uint64_t fingerprint;
    size_t n, cap;  /* coded tokens, rows allocated                              */
    uint16_t *idx;  /* [cap][2s]: s key indices, ceil(s/2) + floor(s/2) value ones */
    uint16_t *coef; /* [cap][2s]: the float16 coefficients, same layout           */
} csr_impl;

static size_t csr_token_bytes(const skv_config *cfg) { return 8 * (size_t)cfg->sparsity; }

static size_t rope_bytes(const skv_config *cfg) {
    return cfg->rope_base > 0.0f ? (size_t)cfg->head_dim / 2 * sizeof(double) : 0;
}

static size_t csr_fixed_bytes(const skv_config *cfg) {
    return skv_sketch_base_bytes() + sizeof(csr_impl) + rope_bytes(cfg) +
           skv_sinkwin_bytes(cfg->dtype, cfg->head_dim, cfg->sinks, cfg->window);
}

static subkv_status csr_resolve(skv_config *cfg, skv_err *err) {
    const int d = cfg->head_dim;
    if (d % 2 != 0)
        return skv_set_error(err, SKV_ERR_SHAPE,
                             "csr needs an even head_dim (value halves), got %d", d);
    if (cfg->sparsity < 2 || cfg->sparsity > d)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr sparsity %d outside [2, head_dim = %d]",
                             cfg->sparsity, d);
    if (cfg->atoms < 0 || cfg->atoms > SKV_DICT_MAX_ATOMS)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr atoms %d outside [0, %d]", cfg->atoms,
                             SKV_DICT_MAX_ATOMS);
    if (memchr(cfg->dict_path, '\0', sizeof cfg->dict_path) == NULL)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr dict_path not terminated");
    if (!isfinite(cfg->rope_base) || cfg->rope_base < 0.0f ||
        (cfg->rope_base > 0.0f && cfg->rope_base < 1.0f))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr rope_base %g: 0 or finite >= 1",
                             (double)cfg->rope_base);
    if (cfg->dict) {
        const skv_dict *dc = cfg->dict;
        if (dc->d != d)
            return skv_set_error(err, SKV_ERR_SHAPE, "dictionary head_dim %d, sketch has %d", dc->d,
                                 d);
        if (cfg->atoms && cfg->atoms != dc->atoms)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "csr atoms %d, dictionary has %d",
                                 cfg->atoms, dc->atoms);
        if (skv_dict_group_of(dc, cfg->layer) < 0)
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "dictionary covers layers 0..%d, sketch is layer %u",
                                 dc->groups * dc->layers_per_group - 1, cfg->layer);
        const bool pre = cfg->rope_base > 0.0f;
        if (pre != (dc->key_space == SKV_KEYS_PRE_ROTARY))
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "rope_base %g codes %s-rotary keys, the dictionary is %s-rotary",
                                 (double)cfg->rope_base, pre ? "pre" : "post",
                                 dc->key_space == SKV_KEYS_PRE_ROTARY ? "pre" : "post");
        cfg->atoms = dc->atoms;
    }
    if (cfg->budget_bytes) {
        const size_t fixed = csr_fixed_bytes(cfg), tok = csr_token_bytes(cfg);
        if (cfg->budget_bytes < fixed + tok)
            return skv_set_error(err, SKV_ERR_BUDGET,
                                 "budget %zu B cannot hold %d sinks, a window of %d and one coded "
                                 "token (%zu B)",
                                 cfg->budget_bytes, cfg->sinks, cfg->window, fixed + tok);
        cfg->max_tokens = (cfg->budget_bytes - fixed) / tok;
    }
    return SKV_OK;
}

static size_t csr_create_bytes(const skv_config *cfg) { return csr_fixed_bytes(cfg); }

static subkv_status csr_init(skv_sketch *s, skv_err *err) {
    const skv_config *c = &s->cfg;
    if (!c->dict)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "csr needs a dictionary: set cfg.dict (skv_config_bind_dict binds "
                             "dict_path '%s')",
                             c->dict_path);
    csr_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate csr state");
    s->impl = im;
    const int g = skv_dict_group_of(c->dict, c->layer);
    im->dk = skv_dict_keys(c->dict, g);
    im->dv[0] = skv_dict_values(c->dict, g, 0);
    im->dv[1] = skv_dict_values(c->dict, g, 1);
    im->atoms = c->dict->atoms;
    im->s = c->sparsity;
    im->fingerprint = c->dict->fingerprint;
    if (c->rope_base > 0.0f) {
        im->inv_freq = skv_sketch_alloc(s, rope_bytes(c));
        if (!im->inv_freq) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate rope table");
        for (int i = 0; i < c->head_dim / 2; i++)
            im->inv_freq[i] = pow((double)c->rope_base, -2.0 * i / c->head_dim);
    }
    return skv_sinkwin_init(s, &im->sw, c->sinks, c->window, err);
}

static size_t codes_bytes(const csr_impl *im, size_t rows) {
    return rows * 2 * (size_t)im->s * sizeof(uint16_t);
}

static void csr_fini(skv_sketch *s) {
    csr_impl *im = s->impl;
    if (!im) return;
    skv_sinkwin_fini(s, &im->sw);
    skv_sketch_free(s, im->idx, codes_bytes(im, im->cap));
    skv_sketch_free(s, im->coef, codes_bytes(im, im->cap));
    skv_sketch_free(s, im->inv_freq, rope_bytes(&s->cfg));
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

/* Room for `need` coded rows in both arrays; all or nothing (as exact_reserve). */
static subkv_status csr_reserve(skv_sketch *s, csr_impl *im, size_t need, skv_err *err) {
    if (need <= im->cap) return SKV_OK;
    size_t cap = im->cap + im->cap / 2;
    if (cap < 1024) cap = 1024;
    if (cap < need) cap = need;
    if (s->cfg.max_tokens && cap > s->cfg.max_tokens) cap = (size_t)s->cfg.max_tokens;
    const size_t old_b = codes_bytes(im, im->cap), new_b = codes_bytes(im, cap);
    void *ni = skv_sketch_realloc(s, im->idx, old_b, new_b);
    if (!ni) return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow csr codes to %zu rows", cap);
    im->idx = ni;
    void *nc = skv_sketch_realloc(s, im->coef, old_b, new_b);
    if (!nc) {
        if (old_b == 0) {
            skv_sketch_free(s, ni, new_b);
            im->idx = NULL;
        } else {
            void *back = skv_sketch_realloc(s, ni, new_b, old_b);
            if (back) im->idx = back; /* else the larger block stays, counted */
        }
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow csr coefficients to %zu rows", cap);
    }
    im->coef = nc;
    im->cap = cap;
    return SKV_OK;
}

/* x <- R(p)^sign x: RoPE on channel pairs (2i, 2i+1) by angle sign * p * inv_freq[i]
 * (angles in double: p * inv_freq reaches 1e5 rad at long context). */
static void rope_rotate(const double *inv_freq, int d, uint64_t p, double sign, float *x) {
    for (int i = 0; i < d / 2; i++) {
        const double a = sign * (double)p * inv_freq[i], c = cos(a), sn = sin(a);
        const double x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = (float)(x0 * c - x1 * sn);
        x[2 * i + 1] = (float)(x0 * sn + x1 * c);
    }
}

/* Stream position of coded row `row`: codes follow the sinks in token order. */
static uint64_t row_pos(const csr_impl *im, size_t row) { return (uint64_t)im->sw.sinks + row; }

/* Atoms of value half 0 and 1: ceil(s/2) and floor(s/2). */
static int half_atoms(int s, int half) { return half == 0 ? (s + 1) / 2 : s / 2; }

/* Code one token into row `row`: key with s atoms, the value halves with ceil/floor(s/2). */
static void csr_encode(csr_impl *im, int d, const float *k, const float *v, size_t row) {
    const int s = im->s, h = d / 2;
    uint16_t *ix = im->idx + row * 2 * (size_t)s, *cf = im->coef + row * 2 * (size_t)s;
    float kp[SKV_MAX_HEAD_DIM];
    if (im->inv_freq) { /* code the pre-rotary key */
        memcpy(kp, k, (size_t)d * sizeof(float));
        rope_rotate(im->inv_freq, d, row_pos(im, row), -1.0, kp);
        k = kp;
    }
    skv_mp_encode(im->dk, im->atoms, d, k, s, ix, cf, NULL);
    const int s0 = half_atoms(s, 0), s1 = half_atoms(s, 1);
    skv_mp_encode(im->dv[0], im->atoms, h, v, s0, ix + s, cf + s, NULL);
    skv_mp_encode(im->dv[1], im->atoms, h, v + h, s1, ix + s + s0, cf + s + s0, NULL);
}

/* The reconstruction of coded row `row`: k[d], v[d] (float32; v NULL: the key alone). */
static void csr_decode(const csr_impl *im, int d, size_t row, float *k, float *v) {
    const int s = im->s, h = d / 2;
    const uint16_t *ix = im->idx + row * 2 * (size_t)s, *cf = im->coef + row * 2 * (size_t)s;
    skv_mp_decode(im->dk, d, ix, cf, s, k);
    if (im->inv_freq) rope_rotate(im->inv_freq, d, row_pos(im, row), 1.0, k);
    if (!v) return; /* the key alone */
    const int s0 = half_atoms(s, 0), s1 = half_atoms(s, 1);
    skv_mp_decode(im->dv[0], h, ix + s, cf + s, s0, v);
    skv_mp_decode(im->dv[1], h, ix + s + s0, cf + s + s0, s1, v + h);
}

/* Coded tokens after an append of n: every token is held, exact or coded, so the codes hold
 * what the sinks and the window cannot. */
static uint64_t coded_after(const skv_sketch *s, const csr_impl *im, size_t n) {
    const uint64_t total = s->tokens_seen + n, exact = (uint64_t)im->sw.sinks + im->sw.window;
    return total > exact ? total - exact : 0;
}

/* The append: each token that leaves the exact part is coded here, or (idx, coef not NULL)
 * takes the next of the given code rows. */
static subkv_status csr_push(skv_sketch *s, const float *K, const float *V, size_t n,
                             const uint16_t *idx, const uint16_t *coef, skv_err *err) {
    csr_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    const uint64_t coded = coded_after(s, im, n);
    if (s->cfg.max_tokens && coded > s->cfg.max_tokens)
        return skv_set_error(err, SKV_ERR_BUDGET,
                             "append of %zu tokens exceeds the budget: %zu of %llu coded tokens "
                             "held",
                             n, im->n, (unsigned long long)s->cfg.max_tokens);
    SKV_CHECK(csr_reserve(s, im, (size_t)coded, err));
    const size_t row = 2 * (size_t)im->s, first = im->n;
    float kd[SKV_MAX_HEAD_DIM], vd[SKV_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        if (!skv_sinkwin_push(&im->sw, K + i * (size_t)d, V + i * (size_t)d, kd, vd)) continue;
        if (idx) {
            const size_t j = im->n - first;
            memcpy(im->idx + im->n * row, idx + j * row, row * sizeof(uint16_t));
            memcpy(im->coef + im->n * row, coef + j * row, row * sizeof(uint16_t));
            im->n++;
        } else {
            csr_encode(im, d, kd, vd, im->n++);
        }
    }
    return SKV_OK;
}

static subkv_status csr_append(skv_sketch *s, const float *K, const float *V, size_t n,
                               skv_err *err) {
    return csr_push(s, K, V, n, NULL, NULL, err);
}

subkv_status skv_csr_code_inputs(const skv_sketch *s, const float *K, const float *V, size_t n,
                                 float *kin, float *vin, size_t *m, skv_err *err) {
    if (!s || s->ops != &skv_policy_csr_ops || !s->impl || !m)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_csr_code_inputs: not a csr sketch");
    const csr_impl *im = s->impl;
    const skv_sinkwin *sw = &im->sw;
    const uint64_t coded = coded_after(s, im, n);
    *m = coded > im->n ? (size_t)(coded - im->n) : 0;
    if (!kin || !vin || !*m) return SKV_OK;
    const int d = s->cfg.head_dim;
    /* the tokens that reach the window (or, without one, the codes) come after the free sinks */
    const size_t to_sinks =
        sw->nsinks < (size_t)sw->sinks
            ? ((size_t)sw->sinks - sw->nsinks < n ? (size_t)sw->sinks - sw->nsinks : n)
            : 0;
    /* the window pushes out the oldest of [its wfill rows oldest first, the new tokens]: the
     * first *m of that queue; a new token is read back as its window row was stored */
    const size_t oldest =
        sw->window ? (sw->whead + (size_t)sw->window - sw->wfill) % (size_t)sw->window : 0;
    float kb[SKV_MAX_HEAD_DIM], vb[SKV_MAX_HEAD_DIM]; /* one row of the dtype, each */
    skv_rows tk = {s->cfg.dtype, d, 1, kb}, tv = {s->cfg.dtype, d, 1, vb};
    for (size_t j = 0; j < *m; j++) {
        float *k = kin + j * (size_t)d, *v = vin + j * (size_t)d;
        if (sw->window && j < sw->wfill) {
            const size_t slot = (oldest + j) % (size_t)sw->window;
            skv_rows_get(&sw->wk, slot, k);
            skv_rows_get(&sw->wv, slot, v);
        } else {
            const size_t t = to_sinks + (sw->window ? j - sw->wfill : j);
            const float *kt = K + t * (size_t)d, *vt = V + t * (size_t)d;
            if (sw->window) { /* through the window: stored in the dtype, read back */
                skv_rows_put(&tk, 0, kt), skv_rows_get(&tk, 0, k);
                skv_rows_put(&tv, 0, vt), skv_rows_get(&tv, 0, v);
            } else { /* passes straight through as given */
                memcpy(k, kt, (size_t)d * sizeof(float));
                memcpy(v, vt, (size_t)d * sizeof(float));
            }
        }
        if (im->inv_freq) rope_rotate(im->inv_freq, d, row_pos(im, im->n + j), -1.0, k);
    }
    return SKV_OK;
}

subkv_status skv_csr_append_codes(skv_sketch *s, const float *K, const float *V, size_t n, int d,
                                  const uint16_t *idx, const uint16_t *coef, size_t m,
                                  skv_err *err) {
    if (!s || s->ops != &skv_policy_csr_ops || !s->impl)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_csr_append_codes: not a csr sketch");
    SKV_CHECK(skv_sketch_check_append(s, K, V, n, d, err));
    const csr_impl *im = s->impl;
    size_t want = 0;
    SKV_CHECK(skv_csr_code_inputs(s, K, V, n, NULL, NULL, &want, err));
    if (m != want)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "skv_csr_append_codes: %zu code rows given, the append codes %zu", m,
                             want);
    if (m && (!idx || !coef))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_csr_append_codes: NULL codes");
    for (size_t i = 0; i < m * 2 * (size_t)im->s; i++) {
        if (idx[i] >= (uint32_t)im->atoms)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "code %zu: atom index %u >= %d atoms", i,
                                 idx[i], im->atoms);
        if ((coef[i] & 0x7c00u) == 0x7c00u)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "code %zu: non-finite coefficient", i);
    }
    SKV_CHECK(csr_push(s, K, V, n, m ? idx : NULL, m ? coef : NULL, err));
    s->tokens_seen += n;
    return SKV_OK;
}

static void csr_segments(const skv_sketch *s, skv_seg_sink *sink) {
    enum { BLOCK_FLOATS = 8192 };
    const csr_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    skv_sinkwin_segments(&im->sw, sink);
    float kb[BLOCK_FLOATS], vb[BLOCK_FLOATS], k[SKV_MAX_HEAD_DIM], v[SKV_MAX_HEAD_DIM];
    const size_t rows = BLOCK_FLOATS / (size_t)d; /* >= 8: d <= 1024 */
    skv_rows K = {s->cfg.dtype, d, rows, kb}, V = {s->cfg.dtype, d, rows, vb};
    for (size_t start = 0; start < im->n; start += rows) {
        const size_t m = im->n - start < rows ? im->n - start : rows;
        for (size_t i = 0; i < m; i++) {
            csr_decode(im, d, start + i, k, v);
            skv_rows_put(&K, i, k);
            skv_rows_put(&V, i, v);
        }
        sink->rows(sink, &K, &V, 0, m, NULL, 1.0, NULL, 1.0);
    }
}

void skv_csr_token(const skv_sketch *s, uint64_t t, float *k, float *v) {
    const csr_impl *im = s->impl;
    const skv_sinkwin *sw = &im->sw;
    if (t < sw->nsinks) {
        skv_rows_get(&sw->sk, (size_t)t, k);
        if (v) skv_rows_get(&sw->sv, (size_t)t, v);
        return;
    }
    t -= sw->nsinks;
    if (t < im->n) { /* coded row t holds token sinks + t (codes start when the sinks are full) */
        csr_decode(im, s->cfg.head_dim, (size_t)t, k, v);
        return;
    }
    const size_t win = (size_t)sw->window, j = (size_t)(t - im->n);
    const size_t slot = (sw->whead + win - sw->wfill + j) % win; /* j-th oldest of the window */
    skv_rows_get(&sw->wk, slot, k);
    if (v) skv_rows_get(&sw->wv, slot, v);
}

uint64_t skv_csr_read_bytes(const skv_sketch *s) {
    const csr_impl *im = s->impl;
    const uint64_t exact = (uint64_t)im->sw.nsinks + im->sw.wfill;
    return exact * 2 * skv_rows_bytes(s->cfg.dtype, s->cfg.head_dim, 1) +
           (uint64_t)im->n * csr_token_bytes(&s->cfg);
}

static void csr_stats(const skv_sketch *s, skv_stats *st) {
    const csr_impl *im = s->impl;
    st->tokens_held = im->sw.nsinks + im->sw.wfill; /* exact; tokens_seen - this are coded */
}

static void csr_save(const skv_sketch *s, skv_writer *w) {
    const csr_impl *im = s->impl;
    skv_sinkwin_save(&im->sw, w);
    skv_w_u64(w, im->n);
    skv_w_u64(w, im->fingerprint);
    skv_w_bytes(w, im->idx, codes_bytes(im, im->n));
    skv_w_bytes(w, im->coef, codes_bytes(im, im->n));
}

static subkv_status csr_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    csr_impl *im = s->impl;
    SKV_CHECK(skv_sinkwin_load(&im->sw, r, err));
    const uint64_t n = skv_r_u64(r), fp = skv_r_u64(r);
    if (r->failed) return skv_set_error(err, SKV_ERR_CORRUPT, "csr header cut short");
    if (fp != im->fingerprint)
        return skv_set_error(err, SKV_ERR_CORRUPT, "coded with dictionary %016llx, '%s' is %016llx",
                             (unsigned long long)fp, s->cfg.dict_path,
                             (unsigned long long)im->fingerprint);
    const uint64_t exact = im->sw.nsinks + im->sw.wfill;
    if (exact > s->tokens_seen || n != s->tokens_seen - exact ||
        (s->cfg.max_tokens && n > s->cfg.max_tokens) ||
        n > (r->len - r->pos) / (2 * codes_bytes(im, 1)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "coded token count inconsistent with the body");
    SKV_CHECK(csr_reserve(s, im, (size_t)n, err));
    im->n = (size_t)n;
    if (!skv_r_bytes(r, im->idx, codes_bytes(im, im->n)) ||
        !skv_r_bytes(r, im->coef, codes_bytes(im, im->n)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "csr codes cut short");
    for (size_t i = 0; i < im->n * 2 * (size_t)im->s; i++) {
        if (im->idx[i] >= (uint32_t)im->atoms)
            return skv_set_error(err, SKV_ERR_CORRUPT, "atom index %u >= %d atoms", im->idx[i],
                                 im->atoms);
        if ((im->coef[i] & 0x7c00u) == 0x7c00u)
            return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite coefficient");
    }
    return SKV_OK;
}

subkv_status skv_csr_codes(const skv_sketch *s, const uint16_t **idx, const uint16_t **coef,
                           size_t *n, skv_err *err) {
    if (!s || s->ops != &skv_policy_csr_ops || !s->impl)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_csr_codes: not a csr sketch");
    const csr_impl *im = s->impl;
    *idx = im->idx;
    *coef = im->coef;
    *n = im->n;
    return SKV_OK;
}

subkv_status skv_csr_parts_from(const skv_sketch *s, size_t first, skv_csr_parts *out,
                                skv_err *err) {
    if (!s || s->ops != &skv_policy_csr_ops || !s->impl)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_csr_parts_from: not a csr sketch");
    const csr_impl *im = s->impl;
    if (first > im->n)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "skv_csr_parts_from: row %zu past the %zu coded rows", first, im->n);
    const size_t row = 2 * (size_t)im->s;
    *out = (skv_csr_parts){.sw = &im->sw,
                           .idx = im->idx ? im->idx + first * row : NULL,
                           .coef = im->coef ? im->coef + first * row : NULL,
                           .first = first,
                           .n = im->n,
                           .sparsity = im->s,
                           .atoms = im->atoms,
                           .group = skv_dict_group_of(s->cfg.dict, s->cfg.layer),
                           .dk = im->dk,
                           .dv0 = im->dv[0],
                           .dv1 = im->dv[1],
                           .rope_base = s->cfg.rope_base};
    return SKV_OK;
}

const skv_policy_ops skv_policy_csr_ops = {
    .id = SKV_POLICY_CSR,
    .resolve = csr_resolve,
    .create_bytes = csr_create_bytes,
    .token_bytes = csr_token_bytes,
    .init = csr_init,
    .fini = csr_fini,
    .append = csr_append,
    .segments = csr_segments,
    .stats = csr_stats,
    .save = csr_save,
    .load = csr_load,
};
