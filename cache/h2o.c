/*
 * h2o.c — Heavy-Hitter Oracle (Zhang et al., 2023): at most H + R tokens held. attend()
 * adds to every held token the softmax probability it received (summed over the query
 * heads of the group). append() into a full cache first evicts, among the held tokens
 * that are not among the R most recent (the new token counted as the most recent), the
 * one with the lowest accumulated score (ties: the oldest), then stores the new token
 * with score 0.
 */
#include "skv_internal.h"

typedef struct h2o_impl {
    size_t cap; /* H + R */
    size_t n;   /* rows held */
    skv_rows k, v;
    double *score; /* accumulated attention, per row */
    uint64_t *pos; /* token index, per row */
} h2o_impl;

static size_t h2o_fixed_bytes(void) { return skv_sketch_base_bytes() + sizeof(h2o_impl); }
static size_t h2o_row_bytes(const skv_config *cfg) {
    return 2 * skv_rows_bytes(cfg->dtype, cfg->head_dim, 1) + sizeof(double) + sizeof(uint64_t);
}

static subkv_status h2o_resolve(skv_config *cfg, skv_err *err) {
    if (cfg->budget_bytes) { /* half heavy hitters, half recent, as the paper's default */
        const size_t row = h2o_row_bytes(cfg);
        if (cfg->budget_bytes < h2o_fixed_bytes() + 2 * row)
            return skv_set_error(err, SKV_ERR_BUDGET,
                                 "budget %zu B cannot hold one heavy and one recent token (%zu B)",
                                 cfg->budget_bytes, h2o_fixed_bytes() + 2 * row);
        size_t c = (cfg->budget_bytes - h2o_fixed_bytes()) / row;
        if (c > (size_t)INT32_MAX) c = INT32_MAX;
        cfg->heavy = (int)(c / 2);
        cfg->window = (int)(c - c / 2);
    }
    if (cfg->heavy + (int64_t)cfg->window < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "h2o needs heavy + window >= 1");
    return SKV_OK;
}

static size_t h2o_create_bytes(const skv_config *cfg) {
    return h2o_fixed_bytes() + ((size_t)cfg->heavy + (size_t)cfg->window) * h2o_row_bytes(cfg);
}

static subkv_status h2o_init(skv_sketch *s, skv_err *err) {
    h2o_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate h2o state");
    s->impl = im;
    im->cap = (size_t)s->cfg.heavy + (size_t)s->cfg.window;
    SKV_CHECK(skv_sketch_rows(s, &im->k, s->cfg.dtype, s->cfg.head_dim, im->cap, err));
    SKV_CHECK(skv_sketch_rows(s, &im->v, s->cfg.dtype, s->cfg.head_dim, im->cap, err));
    im->score = skv_sketch_alloc(s, im->cap * sizeof(double));
    im->pos = skv_sketch_alloc(s, im->cap * sizeof(uint64_t));
    if (!im->score || !im->pos)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate h2o scores");
    return SKV_OK;
}

static void h2o_fini(skv_sketch *s) {
    h2o_impl *im = s->impl;
    if (!im) return;
    skv_sketch_rows_free(s, &im->k);
    skv_sketch_rows_free(s, &im->v);
    skv_sketch_free(s, im->score, im->cap * sizeof(double));
    skv_sketch_free(s, im->pos, im->cap * sizeof(uint64_t));
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

/*
 * Row to evict before token t is stored: lowest score among the rows outside the R most
 * recent tokens counting t itself (positions >= t + 1 - R are protected); ties: oldest.
 * At most R - 1 held rows are protected, so a full cache of H + R >= 1 rows always has
 * a victim.
 */
static size_t h2o_victim(const h2o_impl *im, uint64_t t, uint64_t recent) {
    const uint64_t recent_from = t + 1 > recent ? t + 1 - recent : 0;
    size_t best = im->n;
    for (size_t i = 0; i < im->n; i++) {
        if (im->pos[i] >= recent_from) continue;
        if (best == im->n || im->score[i] < im->score[best] ||
            (im->score[i] == im->score[best] && im->pos[i] < im->pos[best]))
            best = i;
    }
    return best;
}

static subkv_status h2o_append(skv_sketch *s, const float *K, const float *V, size_t n,
                               skv_err *err) {
    h2o_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    for (size_t i = 0; i < n; i++) {
        const uint64_t t = s->tokens_seen + i; /* index of the token being stored */
        size_t row = im->n;
        if (im->n == im->cap) {
            row = h2o_victim(im, t, (uint64_t)s->cfg.window);
            if (row == im->n) /* cannot happen, see h2o_victim */
                return skv_set_error(err, SKV_ERR_INTERNAL, "h2o found no token to evict");
        } else {
            im->n++;
        }
        skv_rows_put(&im->k, row, K + i * (size_t)d);
        skv_rows_put(&im->v, row, V + i * (size_t)d);
        im->score[row] = 0.0;
        im->pos[row] = t;
    }
    return SKV_OK;
}

static void h2o_segments(const skv_sketch *s, skv_seg_sink *sink) {
    const h2o_impl *im = s->impl;
    sink->rows(sink, &im->k, &im->v, 0, im->n, NULL, 1.0, NULL, 1.0);
}

static subkv_status h2o_attend(skv_sketch *s, const float *qs, skv_partial *out, skv_err *err) {
    (void)err;
    h2o_impl *im = s->impl;
    skv_attend_segments(s, qs, out);
    if (out->l <= 0.0f) return SKV_OK;
    /* second pass: each token's probability joins its score */
    for (size_t i = 0; i < im->n; i++)
        im->score[i] += exp((double)skv_rows_dot(&im->k, i, qs) - (double)out->m) / (double)out->l;
    return SKV_OK;
}

static void h2o_stats(const skv_sketch *s, skv_stats *st) {
    const h2o_impl *im = s->impl;
    st->tokens_held = im->n;
}

static void h2o_save(const skv_sketch *s, skv_writer *w) {
    const h2o_impl *im = s->impl;
    skv_w_u64(w, im->n);
    skv_w_rows(w, &im->k, im->n);
    skv_w_rows(w, &im->v, im->n);
    skv_w_bytes(w, im->score, im->n * sizeof(double));
    skv_w_bytes(w, im->pos, im->n * sizeof(uint64_t));
}

static subkv_status h2o_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    h2o_impl *im = s->impl;
    uint64_t n = skv_r_u64(r);
    if (r->failed || n > im->cap || n > s->tokens_seen)
        return skv_set_error(err, SKV_ERR_CORRUPT, "h2o row count inconsistent");
    im->n = (size_t)n;
    if (!skv_r_rows(r, &im->k, im->n) || !skv_r_rows(r, &im->v, im->n) ||
        !skv_r_bytes(r, im->score, im->n * sizeof(double)) ||
        !skv_r_bytes(r, im->pos, im->n * sizeof(uint64_t)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "h2o rows cut short");
    if (!skv_rows_finite(&im->k, im->n) || !skv_rows_finite(&im->v, im->n))
        return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite stored key or value");
    for (size_t i = 0; i < im->n; i++)
        if (!isfinite(im->score[i]) || im->score[i] < 0.0 || im->pos[i] >= s->tokens_seen)
            return skv_set_error(err, SKV_ERR_CORRUPT, "h2o score or position out of range");
    return SKV_OK;
}

const skv_policy_ops skv_policy_h2o_ops = {
    .id = SKV_POLICY_H2O,
    .resolve = h2o_resolve,
    .create_bytes = h2o_create_bytes,
    .init = h2o_init,
    .fini = h2o_fini,
    .append = h2o_append,
    .segments = h2o_segments,
    .attend = h2o_attend,
    .stats = h2o_stats,
    .save = h2o_save,
    .load = h2o_load,
};
