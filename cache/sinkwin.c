/*
 * sinkwin.c — exact sinks + sliding window: the StreamingLLM policy, and the exact parts
 * SubGen keeps beside its sketch. The window is a ring of W rows; the first S tokens
 * ever seen are the sinks.
 */
#include "skv_internal.h"

size_t skv_sinkwin_bytes(skv_dtype dt, int d, int sinks, int window) {
    return 2 * skv_rows_bytes(dt, d, (size_t)sinks) + 2 * skv_rows_bytes(dt, d, (size_t)window);
}

subkv_status skv_sinkwin_init(skv_sketch *s, skv_sinkwin *sw, int sinks, int window, skv_err *err) {
    const skv_dtype dt = s->cfg.dtype;
    const int d = s->cfg.head_dim;
    memset(sw, 0, sizeof *sw);
    sw->sinks = sinks;
    sw->window = window;
    SKV_CHECK(skv_sketch_rows(s, &sw->sk, dt, d, (size_t)sinks, err));
    SKV_CHECK(skv_sketch_rows(s, &sw->sv, dt, d, (size_t)sinks, err));
    SKV_CHECK(skv_sketch_rows(s, &sw->wk, dt, d, (size_t)window, err));
    SKV_CHECK(skv_sketch_rows(s, &sw->wv, dt, d, (size_t)window, err));
    return SKV_OK;
}

void skv_sinkwin_fini(skv_sketch *s, skv_sinkwin *sw) {
    skv_sketch_rows_free(s, &sw->sk);
    skv_sketch_rows_free(s, &sw->sv);
    skv_sketch_rows_free(s, &sw->wk);
    skv_sketch_rows_free(s, &sw->wv);
}

bool skv_sinkwin_push(skv_sinkwin *sw, const float *k, const float *v, float *k_out, float *v_out) {
    if (sw->nsinks < (size_t)sw->sinks) {
        skv_rows_put(&sw->sk, sw->nsinks, k);
        skv_rows_put(&sw->sv, sw->nsinks, v);
        sw->nsinks++;
        return false;
    }
    if (sw->window == 0) { /* nothing kept exactly: the token passes straight through */
        memcpy(k_out, k, (size_t)sw->wk.d * sizeof(float));
        memcpy(v_out, v, (size_t)sw->wv.d * sizeof(float));
        return true;
    }
    bool evicted = false;
    if (sw->wfill == (size_t)sw->window) { /* the oldest leaves the window */
        skv_rows_get(&sw->wk, sw->whead, k_out);
        skv_rows_get(&sw->wv, sw->whead, v_out);
        evicted = true;
    } else {
        sw->wfill++;
    }
    skv_rows_put(&sw->wk, sw->whead, k);
    skv_rows_put(&sw->wv, sw->whead, v);
    sw->whead = (sw->whead + 1) % (size_t)sw->window;
    return evicted;
}

void skv_sinkwin_segments(const skv_sinkwin *sw, skv_seg_sink *sink) {
    sink->rows(sink, &sw->sk, &sw->sv, 0, sw->nsinks, NULL, 1.0, NULL, 1.0);
    sink->rows(sink, &sw->wk, &sw->wv, 0, sw->wfill, NULL, 1.0, NULL, 1.0);
}

int skv_sinkwin_changed(const skv_sinkwin *sw, uint64_t before, uint64_t now, size_t *s0,
                        size_t w[2][2]) {
    const bool all = before == 0 || now < before;
    /* sink row i holds token i: tokens [before, now) wrote rows [before, nsinks) */
    *s0 = all ? 0 : before < (uint64_t)sw->nsinks ? (size_t)before : sw->nsinks;
    /* the window's tokens come after the sinks, one ring slot each, in push order: the last
     * k of them are the k slots before whead (at most the wfill slots in use) */
    const uint64_t sinks = (uint64_t)sw->sinks;
    const uint64_t wb = before > sinks ? before - sinks : 0, wn = now > sinks ? now - sinks : 0;
    size_t k = all ? sw->wfill : (size_t)(wn - wb < (uint64_t)sw->wfill ? wn - wb : sw->wfill);
    if (k == 0) return 0;
    const size_t win = (size_t)sw->window, start = (sw->whead + win - k) % win;
    w[0][0] = start;
    w[0][1] = k < win - start ? k : win - start;
    if (w[0][1] == k) return 1;
    w[1][0] = 0;
    w[1][1] = k - w[0][1];
    return 2;
}

void skv_sinkwin_save(const skv_sinkwin *sw, skv_writer *w) {
    skv_w_u64(w, sw->nsinks);
    skv_w_u64(w, sw->wfill);
    skv_w_u64(w, sw->whead);
    skv_w_rows(w, &sw->sk, sw->nsinks);
    skv_w_rows(w, &sw->sv, sw->nsinks);
    skv_w_rows(w, &sw->wk, sw->wfill);
    skv_w_rows(w, &sw->wv, sw->wfill);
}

subkv_status skv_sinkwin_load(skv_sinkwin *sw, skv_reader *r, skv_err *err) {
    uint64_t nsinks = skv_r_u64(r), wfill = skv_r_u64(r), whead = skv_r_u64(r);
    if (r->failed) return skv_set_error(err, SKV_ERR_CORRUPT, "window header cut short");
    const bool head_ok = sw->window == 0 ? whead == 0
                                         : (whead < (uint64_t)sw->window &&
                                            (wfill == (uint64_t)sw->window || whead == wfill));
    if (nsinks > (uint64_t)sw->sinks || wfill > (uint64_t)sw->window || !head_ok ||
        (wfill > 0 && nsinks < (uint64_t)sw->sinks))
        return skv_set_error(err, SKV_ERR_CORRUPT, "inconsistent sink/window fill");
    sw->nsinks = (size_t)nsinks;
    sw->wfill = (size_t)wfill;
    sw->whead = (size_t)whead;
    if (!skv_r_rows(r, &sw->sk, sw->nsinks) || !skv_r_rows(r, &sw->sv, sw->nsinks) ||
        !skv_r_rows(r, &sw->wk, sw->wfill) || !skv_r_rows(r, &sw->wv, sw->wfill))
        return skv_set_error(err, SKV_ERR_CORRUPT, "sink/window rows cut short");
    if (!skv_rows_finite(&sw->sk, sw->nsinks) || !skv_rows_finite(&sw->sv, sw->nsinks) ||
        !skv_rows_finite(&sw->wk, sw->wfill) || !skv_rows_finite(&sw->wv, sw->wfill))
        return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite stored key or value");
    return SKV_OK;
}

/* ---- the sinkwin policy --------------------------------------------------------------- */

typedef struct sinkwin_impl {
    skv_sinkwin sw;
} sinkwin_impl;

static subkv_status sinkwin_resolve(skv_config *cfg, skv_err *err) {
    if (cfg->budget_bytes) {
        const size_t fixed = skv_sketch_base_bytes() + sizeof(sinkwin_impl) +
                             skv_sinkwin_bytes(cfg->dtype, cfg->head_dim, cfg->sinks, 0);
        const size_t row = 2 * skv_rows_bytes(cfg->dtype, cfg->head_dim, 1);
        if (cfg->budget_bytes < fixed + row)
            return skv_set_error(err, SKV_ERR_BUDGET,
                                 "budget %zu B cannot hold %d sinks and one window token (%zu B)",
                                 cfg->budget_bytes, cfg->sinks, fixed + row);
        size_t w = (cfg->budget_bytes - fixed) / row;
        cfg->window = w > (size_t)INT32_MAX ? INT32_MAX : (int)w;
    }
    if (cfg->sinks + (int64_t)cfg->window < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "sinkwin needs sinks + window >= 1");
    return SKV_OK;
}

static size_t sinkwin_create_bytes(const skv_config *cfg) {
    return skv_sketch_base_bytes() + sizeof(sinkwin_impl) +
           skv_sinkwin_bytes(cfg->dtype, cfg->head_dim, cfg->sinks, cfg->window);
}

static subkv_status sinkwin_init(skv_sketch *s, skv_err *err) {
    sinkwin_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate sinkwin state");
    s->impl = im;
    return skv_sinkwin_init(s, &im->sw, s->cfg.sinks, s->cfg.window, err);
}

static void sinkwin_fini(skv_sketch *s) {
    sinkwin_impl *im = s->impl;
    if (!im) return;
    skv_sinkwin_fini(s, &im->sw);
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

static subkv_status sinkwin_append(skv_sketch *s, const float *K, const float *V, size_t n,
                                   skv_err *err) {
    (void)err;
    sinkwin_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    float kd[SKV_MAX_HEAD_DIM], vd[SKV_MAX_HEAD_DIM]; /* evicted token: dropped */
    for (size_t i = 0; i < n; i++)
        (void)skv_sinkwin_push(&im->sw, K + i * (size_t)d, V + i * (size_t)d, kd, vd);
    return SKV_OK;
}

static void sinkwin_segments(const skv_sketch *s, skv_seg_sink *sink) {
    const sinkwin_impl *im = s->impl;
    skv_sinkwin_segments(&im->sw, sink);
}

static void sinkwin_stats(const skv_sketch *s, skv_stats *st) {
    const sinkwin_impl *im = s->impl;
    st->tokens_held = im->sw.nsinks + im->sw.wfill;
}

static void sinkwin_save(const skv_sketch *s, skv_writer *w) {
    const sinkwin_impl *im = s->impl;
    skv_sinkwin_save(&im->sw, w);
}

static subkv_status sinkwin_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    sinkwin_impl *im = s->impl;
    SKV_CHECK(skv_sinkwin_load(&im->sw, r, err));
    if (im->sw.nsinks + im->sw.wfill > s->tokens_seen)
        return skv_set_error(err, SKV_ERR_CORRUPT, "holds more tokens than it has seen");
    return SKV_OK;
}

const skv_policy_ops skv_policy_sinkwin_ops = {
    .id = SKV_POLICY_SINKWIN,
    .resolve = sinkwin_resolve,
    .create_bytes = sinkwin_create_bytes,
    .init = sinkwin_init,
    .fini = sinkwin_fini,
    .append = sinkwin_append,
    .segments = sinkwin_segments,
    .stats = sinkwin_stats,
    .save = sinkwin_save,
    .load = sinkwin_load,
};
