/*
 * exact.c — every token, exact attention: the baseline all estimates are held against.
 * Rows grow geometrically (x1.5, at least 1024) and never past max_tokens, so with a
 * budget bytes() stays within it; an append past max_tokens fails and stores nothing.
 */
#include "skv_internal.h"

typedef struct exact_impl {
    size_t n;
    skv_rows k, v;
} exact_impl;

static size_t exact_fixed_bytes(void) { return skv_sketch_base_bytes() + sizeof(exact_impl); }

static subkv_status exact_resolve(skv_config *cfg, skv_err *err) {
    if (cfg->budget_bytes) {
        const size_t row = 2 * skv_rows_bytes(cfg->dtype, cfg->head_dim, 1);
        if (cfg->budget_bytes < exact_fixed_bytes() + row)
            return skv_set_error(err, SKV_ERR_BUDGET, "budget %zu B cannot hold one token (%zu B)",
                                 cfg->budget_bytes, exact_fixed_bytes() + row);
        cfg->max_tokens = (cfg->budget_bytes - exact_fixed_bytes()) / row;
    }
    return SKV_OK;
}

static size_t exact_token_bytes(const skv_config *cfg) {
    return 2 * skv_rows_bytes(cfg->dtype, cfg->head_dim, 1);
}

static size_t exact_create_bytes(const skv_config *cfg) {
    (void)cfg;
    return exact_fixed_bytes();
}

static subkv_status exact_init(skv_sketch *s, skv_err *err) {
    exact_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate exact state");
    s->impl = im;
    im->k = (skv_rows){s->cfg.dtype, s->cfg.head_dim, 0, NULL};
    im->v = im->k;
    return SKV_OK;
}

static void exact_fini(skv_sketch *s) {
    exact_impl *im = s->impl;
    if (!im) return;
    skv_sketch_rows_free(s, &im->k);
    skv_sketch_rows_free(s, &im->v);
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

/* Make room for `need` rows in both stores; all or nothing. */
static subkv_status exact_reserve(skv_sketch *s, exact_impl *im, size_t need, skv_err *err) {
    if (need <= im->k.cap) return SKV_OK;
    size_t cap = im->k.cap + im->k.cap / 2;
    if (cap < 1024) cap = 1024;
    if (cap < need) cap = need;
    if (s->cfg.max_tokens && cap > s->cfg.max_tokens) cap = (size_t)s->cfg.max_tokens;
    const size_t old_b = skv_rows_bytes(im->k.dtype, im->k.d, im->k.cap);
    const size_t new_b = skv_rows_bytes(im->k.dtype, im->k.d, cap);
    void *nk = skv_sketch_realloc(s, im->k.data, old_b, new_b);
    if (!nk) return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow keys to %zu rows", cap);
    im->k.data = nk;
    void *nv = skv_sketch_realloc(s, im->v.data, old_b, new_b);
    if (!nv) { /* all or nothing: give the key store its old size back */
        if (old_b == 0) {
            skv_sketch_free(s, nk, new_b);
            im->k.data = NULL;
        } else {
            void *back = skv_sketch_realloc(s, nk, new_b, old_b);
            /* glibc never fails a shrink; if one did, the larger block stays and
             * heap_bytes keeps counting it, an over-report rather than a leak */
            if (back) im->k.data = back;
        }
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow values to %zu rows", cap);
    }
    im->v.data = nv;
    im->k.cap = im->v.cap = cap;
    return SKV_OK;
}

static subkv_status exact_append(skv_sketch *s, const float *K, const float *V, size_t n,
                                 skv_err *err) {
    exact_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    if (s->cfg.max_tokens && n > s->cfg.max_tokens - im->n)
        return skv_set_error(err, SKV_ERR_BUDGET,
                             "append of %zu tokens exceeds the budget: %zu of %llu held", n, im->n,
                             (unsigned long long)s->cfg.max_tokens);
    SKV_CHECK(exact_reserve(s, im, im->n + n, err));
    for (size_t i = 0; i < n; i++) {
        skv_rows_put(&im->k, im->n + i, K + i * (size_t)d);
        skv_rows_put(&im->v, im->n + i, V + i * (size_t)d);
    }
    im->n += n;
    return SKV_OK;
}

static void exact_segments(const skv_sketch *s, skv_seg_sink *sink) {
    const exact_impl *im = s->impl;
    sink->rows(sink, &im->k, &im->v, 0, im->n, NULL, 1.0, NULL, 1.0);
}

static void exact_stats(const skv_sketch *s, skv_stats *st) {
    const exact_impl *im = s->impl;
    st->tokens_held = im->n;
}

static void exact_save(const skv_sketch *s, skv_writer *w) {
    const exact_impl *im = s->impl;
    skv_w_u64(w, im->n);
    skv_w_rows(w, &im->k, im->n);
    skv_w_rows(w, &im->v, im->n);
}

static subkv_status exact_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    exact_impl *im = s->impl;
    uint64_t n = skv_r_u64(r);
    const size_t row = skv_rows_row_bytes(&im->k);
    if (r->failed || n != s->tokens_seen || (s->cfg.max_tokens && n > s->cfg.max_tokens) ||
        n > (r->len - r->pos) / (2 * row))
        return skv_set_error(err, SKV_ERR_CORRUPT, "token count inconsistent with the body");
    SKV_CHECK(exact_reserve(s, im, (size_t)n, err));
    im->n = (size_t)n;
    if (!skv_r_rows(r, &im->k, im->n) || !skv_r_rows(r, &im->v, im->n))
        return skv_set_error(err, SKV_ERR_CORRUPT, "rows cut short");
    if (!skv_rows_finite(&im->k, im->n) || !skv_rows_finite(&im->v, im->n))
        return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite stored key or value");
    return SKV_OK;
}

const skv_policy_ops skv_policy_exact_ops = {
    .id = SKV_POLICY_EXACT,
    .resolve = exact_resolve,
    .create_bytes = exact_create_bytes,
    .token_bytes = exact_token_bytes,
    .init = exact_init,
    .fini = exact_fini,
    .append = exact_append,
    .segments = exact_segments,
    .stats = exact_stats,
    .save = exact_save,
    .load = exact_load,
};
