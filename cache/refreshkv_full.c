/*
 * refreshkv_full.c — RefreshKV's full store and full step (see refreshkv.c's header comment):
 * growing the host store, flushing the queue into it, exact attention over it, the token
 * scores (largest probability over the GQA group, max-pooled along tokens) and the top-K
 * re-selection of the partial cache; and the same step in parts (skv_rkv_apply and friends,
 * skv_internal.h) for a worker that computes the attention and scores on a GPU.
 */
#include "refreshkv_impl.h"

#include <stdlib.h>

void rkv_full_free(skv_sketch *s, rkv_impl *im) {
    skv_sketch_rows_free(s, &im->fk);
    skv_sketch_rows_free(s, &im->fv);
    skv_sketch_free(s, im->fprob, im->fcap * sizeof(float));
    skv_sketch_free(s, im->fpool, im->fcap * sizeof(float));
    im->fprob = im->fpool = NULL;
    im->fcap = 0;
}

/* Room for `need` tokens in the full store (x1.5, at least 1024, at most max_tokens); all or
 * nothing: new blocks are allocated first, the old ones freed only when all succeeded. */
subkv_status rkv_full_reserve(skv_sketch *s, rkv_impl *im, size_t need, skv_err *err) {
    if (need <= im->fcap) return SKV_OK;
    size_t cap = im->fcap + im->fcap / 2;
    if (cap < 1024) cap = 1024;
    if (cap < need) cap = need;
    if (s->cfg.max_tokens && cap > s->cfg.max_tokens) cap = (size_t)s->cfg.max_tokens;
    const skv_dtype dt = s->cfg.dtype;
    const int d = s->cfg.head_dim;
    const size_t rb = skv_rows_bytes(dt, d, cap), fb = cap * sizeof(float);
    void *k = skv_sketch_alloc(s, rb), *v = skv_sketch_alloc(s, rb);
    float *p = skv_sketch_alloc(s, fb), *q = skv_sketch_alloc(s, fb);
    if (!k || !v || !p || !q) {
        skv_sketch_free(s, k, rb);
        skv_sketch_free(s, v, rb);
        skv_sketch_free(s, p, fb);
        skv_sketch_free(s, q, fb);
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot grow the full store to %zu tokens", cap);
    }
    if (im->nfull) {
        memcpy(k, im->fk.data, skv_rows_bytes(dt, d, im->nfull));
        memcpy(v, im->fv.data, skv_rows_bytes(dt, d, im->nfull));
    }
    rkv_full_free(s, im);
    im->fk = (skv_rows){dt, d, cap, k};
    im->fv = (skv_rows){dt, d, cap, v};
    im->fprob = p;
    im->fpool = q;
    im->fcap = cap;
    return SKV_OK;
}

void rkv_flush(rkv_impl *im) {
    for (size_t i = 0; i < im->nq; i++) {
        skv_rows_copy(&im->fk, im->nfull + i, &im->qk, i);
        skv_rows_copy(&im->fv, im->nfull + i, &im->qv, i);
    }
    im->nfull += im->nq;
    im->nq = 0;
}

/* Min-heap order on (score, position): the root is the weakest of the kept tokens; a
 * later token beats an earlier one of equal score. */
static bool rkv_less(const double *sc, const uint64_t *ps, size_t a, size_t b) {
    return sc[a] < sc[b] || (sc[a] == sc[b] && ps[a] < ps[b]);
}

static void rkv_sift_down(double *sc, uint64_t *ps, size_t i, size_t n) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && rkv_less(sc, ps, l, m)) m = l;
        if (l + 1 < n && rkv_less(sc, ps, l + 1, m)) m = l + 1;
        if (m == i) return;
        double ts = sc[i];
        uint64_t tp = ps[i];
        sc[i] = sc[m], ps[i] = ps[m], sc[m] = ts, ps[m] = tp;
        i = m;
    }
}

void rkv_top_offer(double *sc, uint64_t *ps, size_t *n, size_t cap, double v, uint64_t t) {
    if (*n < cap) { /* fill, then heapify once full */
        sc[*n] = v, ps[*n] = t, (*n)++;
        if (*n == cap)
            for (size_t j = cap / 2; j-- > 0;) rkv_sift_down(sc, ps, j, cap);
    } else if (v >= sc[0]) { /* >=: the later token wins a tie */
        sc[0] = v, ps[0] = t;
        rkv_sift_down(sc, ps, 0, cap);
    }
}

void rkv_top_sort(double *sc, uint64_t *ps, size_t n, size_t cap) {
    if (n < cap)
        for (size_t j = n / 2; j-- > 0;) rkv_sift_down(sc, ps, j, n);
    /* heap sort: repeatedly move the minimum to the end gives descending; reverse after */
    for (size_t end = n; end > 1; end--) {
        double ts = sc[0];
        uint64_t tp = ps[0];
        sc[0] = sc[end - 1], ps[0] = ps[end - 1], sc[end - 1] = ts, ps[end - 1] = tp;
        rkv_sift_down(sc, ps, 0, end - 1);
    }
    for (size_t i = 0, j = n ? n - 1 : 0; i < j; i++, j--) {
        double ts = sc[i];
        uint64_t tp = ps[i];
        sc[i] = sc[j], ps[i] = ps[j], sc[j] = ts, ps[j] = tp;
    }
}

/* Partial cache := the top pcap tokens of the full store by score[nfull], ascending. */
static void rkv_select(rkv_impl *im, const float *score) {
    double *sc = im->pscore;
    uint64_t *ps = im->ppos;
    size_t n = 0;
    for (size_t i = 0; i < im->nfull; i++) rkv_top_offer(sc, ps, &n, im->pcap, score[i], i);
    rkv_top_sort(sc, ps, n, im->pcap);
    for (size_t i = 0; i < n; i++) {
        skv_rows_copy(&im->pk, i, &im->fk, (size_t)ps[i]);
        skv_rows_copy(&im->pv, i, &im->fv, (size_t)ps[i]);
    }
    im->pn = n;
    im->phead = 0;
    im->plo = im->phi = 0; /* every row written: nothing pending */
    im->layout++;
}

void rkv_materialize(rkv_impl *im) {
    for (size_t r = im->plo; r < im->phi; r++) {
        skv_rows_copy(&im->pk, r, &im->fk, (size_t)im->ppos[r]);
        skv_rows_copy(&im->pv, r, &im->fv, (size_t)im->ppos[r]);
    }
    im->materialized += im->phi - im->plo;
    im->plo = im->phi = 0;
}

/* After a full step: the reference query, the flags and the counters (the attend too: a
 * planned full step counts only once it is done, so a failed one stays due). */
void rkv_full_done(skv_sketch *s, rkv_impl *im, const float *Q, int g, uint64_t bytes) {
    const int d = s->cfg.head_dim;
    for (int j = 0; j < d; j++) {
        double m = 0.0;
        for (int h = 0; h < g; h++) m += Q[(size_t)h * (size_t)d + (size_t)j];
        im->qref[j] = (float)(m / g);
    }
    im->selected = s->tokens_seen > 0; /* an attend before any token selects nothing */
    im->forced = 0;
    im->since_check = 0;
    im->full_steps++;
    im->attends++;
    im->bytes_read += bytes;
}

/* A full step over the SubGen store (refreshkv_sub.c): its estimate answers; the partial
 * cache becomes the best candidates, ascending. Scores are capped at 1 (an estimated
 * normalizer can be below a single entry's weight), so new tokens (1 + index) stay above. */
static subkv_status rkv_sub_full_step(skv_sketch *s, rkv_impl *im, const float *Q, int g,
                                      skv_partial *out, skv_err *err) {
    size_t n = 0;
    uint64_t rows = 0;
    SKV_CHECK(skv_rkv_sub_full_step(im->sub, s, rkv_segments, Q, g, out, im->cand, im->ccap,
                                    im->pcap, &n, &rows, err));
    skv_rkv_sub_place(&im->pk, &im->pv, im->pscore, im->ppos, im->perm, im->pcap, im->cand, n);
    im->pn = n;
    im->phead = 0;
    im->layout++;
    rkv_full_done(s, im, Q, g, rows * rkv_row_bytes(&s->cfg));
    return SKV_OK;
}

void skv_rkv_maxpool(const float *prob, size_t n, int pool, float *pooled) {
    const size_t half = (size_t)pool / 2;
    for (size_t i = 0; i < n; i++) {
        const size_t lo = i > half ? i - half : 0, hi = i + half < n ? i + half : n - 1;
        float m = prob[lo];
        for (size_t j = lo + 1; j <= hi; j++)
            if (prob[j] > m) m = prob[j];
        pooled[i] = m;
    }
}

/* A full step (the queue already flushed by skv_rkv_plan): exact attention of every head over
 * the full store, token scores, re-selection. */
subkv_status rkv_full_step(skv_sketch *s, rkv_impl *im, const float *Q, int g, skv_partial *out,
                           skv_err *err) {
    if (im->sub) return rkv_sub_full_step(s, im, Q, g, out, err);
    if (im->csr) return rkv_csr_full_step(s, im, Q, g, out, err);
    const int d = s->cfg.head_dim;
    const size_t n = im->nfull;
    float qs[SKV_MAX_HEAD_DIM];
    double o[SKV_MAX_HEAD_DIM];
    const float scale = 1.0f / sqrtf((float)d);
    for (int h = 0; h < g; h++) {
        for (int j = 0; j < d; j++) qs[j] = Q[(size_t)h * (size_t)d + (size_t)j] * scale;
        skv_partial *p = skv_partial_at(out, d, (size_t)h);
        skv_acc acc;
        skv_acc_init(&acc, d, o);
        skv_acc_add_rows(&acc, qs, &im->fk, &im->fv, 0, n, NULL, 1.0, NULL, 1.0);
        skv_acc_finish(&acc, p);
        if (n == 0) continue;
        /* probabilities e^(s - m) / l with the same dot products; max over the heads */
        skv_rows_dot_block(&im->fk, 0, n, qs, im->fpool);
        for (size_t i = 0; i < n; i++) {
            const float pr = (float)(exp((double)im->fpool[i] - (double)p->m) / (double)p->l);
            if (h == 0 || pr > im->fprob[i]) im->fprob[i] = pr;
        }
    }
    /* max-pool along tokens, window pool_kernel centred on each token */
    skv_rkv_maxpool(im->fprob, n, s->cfg.pool_kernel, im->fpool);
    rkv_select(im, im->fpool);
    rkv_full_done(s, im, Q, g, (uint64_t)n * 2 * rkv_row_bytes(&s->cfg));
    return SKV_OK;
}

void skv_rkv_full_rows(const skv_sketch *s, const skv_rows **k, const skv_rows **v, size_t *n) {
    const rkv_impl *im = s->impl;
    *k = &im->fk;
    *v = &im->fv;
    *n = im->nfull;
}

subkv_status skv_rkv_apply(skv_sketch *s, const float *Q, int g, const float *pooled, size_t n,
                           skv_err *err) {
    if (!s || s->cfg.policy != SKV_POLICY_REFRESHKV || s->cfg.full_store != SKV_FULL_EXACT)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "apply needs a refreshkv exact store");
    rkv_impl *im = s->impl;
    if (n != im->nfull || im->nq)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "apply of %zu scores to a full store of %zu rows (+%zu queued)", n,
                             im->nfull, im->nq);
    rkv_select(im, pooled);
    rkv_full_done(s, im, Q, g, (uint64_t)n * 2 * rkv_row_bytes(&s->cfg));
    return SKV_OK;
}

/* The selection's key: descending key order is descending (score, position), so the later
 * token wins a tie as in rkv_select. Scores are compared as floats (rkv_select's doubles hold
 * them exactly): the sign-magnitude bits flipped into an unsigned order, -0 taken as +0. */
static uint64_t rkv_key(float score, uint32_t pos) {
    uint32_t b;
    memcpy(&b, &score, sizeof b);
    if (b == 0x80000000u) b = 0;
    b = (b & 0x80000000u) ? ~b : b | 0x80000000u;
    return (uint64_t)b << 32 | pos;
}

static int rkv_key_cmp(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

subkv_status skv_rkv_topk(const float *pooled, size_t n, size_t k, uint32_t *idx, float *score,
                          size_t *got, skv_err *err) {
    if (n > UINT32_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "top-k of %zu scores (at most 2^32 - 1)", n);
    for (size_t i = 0; i < n; i++)
        if (isnan(pooled[i]))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "top-k: score %zu is NaN", i);
    uint64_t *key = malloc((n ? n : 1) * sizeof *key);
    if (!key) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu top-k keys", n);
    for (size_t i = 0; i < n; i++) key[i] = rkv_key(pooled[i], (uint32_t)i);
    qsort(key, n, sizeof *key, rkv_key_cmp);
    const size_t m = k < n ? k : n;
    for (size_t i = 0; i < m; i++) { /* the last m keys, ascending */
        idx[i] = (uint32_t)key[n - m + i];
        score[i] = pooled[idx[i]];
    }
    *got = m;
    free(key);
    return SKV_OK;
}

subkv_status skv_rkv_apply_indices(skv_sketch *s, const float *Q, int g, const uint32_t *idx,
                                   const float *score, size_t k, skv_err *err) {
    if (!s || s->cfg.policy != SKV_POLICY_REFRESHKV || s->cfg.full_store != SKV_FULL_EXACT)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "apply needs a refreshkv exact store");
    rkv_impl *im = s->impl;
    const size_t want = im->nfull < im->pcap ? im->nfull : im->pcap;
    if (im->nq || k != want || (k && (!idx || !score)))
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "apply of a selection of %zu tokens where %zu are due (%zu rows, "
                             "%zu queued)",
                             k, want, im->nfull, im->nq);
    /* checked whole before anything changes: positions in the store, strictly ascending
     * (score, token) (so distinct tokens in the partial cache's order). Compared as floats, the
     * order of rkv_key for non-NaN scores (-0 == +0) at half its cost: with the rows deferred,
     * this pass is most of the install. */
    for (size_t i = 0; i < k; i++) {
        if (idx[i] >= im->nfull || isnan(score[i]))
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "selection entry %zu: token %u, score %g (store of %zu rows)", i,
                                 idx[i], (double)score[i], im->nfull);
        if (i && !(score[i] > score[i - 1] || (score[i] == score[i - 1] && idx[i] > idx[i - 1])))
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "selection entry %zu is not above entry %zu in (score, token)", i,
                                 i - 1);
    }
    /* the rows themselves are installed lazily (rkv_impl's plo, phi): the caller's device
     * already holds them, and copying K rows per sketch from the host store would cost the
     * step more than the device part (2 GB of memcpy at 1M tokens x 64 sketches, K = n/16) */
    for (size_t i = 0; i < k; i++) {
        im->pscore[i] = (double)score[i]; /* what rkv_select keeps of pooled[idx[i]] */
        im->ppos[i] = idx[i];
    }
    im->pn = k;
    im->phead = 0;
    im->plo = 0;
    im->phi = k;
    im->layout++;
    rkv_full_done(s, im, Q, g, (uint64_t)im->nfull * 2 * rkv_row_bytes(&s->cfg));
    return SKV_OK;
}

void skv_rkv_scores(const skv_sketch *s, const float **pooled, size_t *n) {
    const rkv_impl *im = s->impl;
    *pooled = im->fpool;
    *n = im->nfull;
}

size_t skv_rkv_partial(const skv_sketch *s, uint64_t *pos, double *score) {
    const rkv_impl *im = s->impl;
    for (size_t i = 0; i < im->pn; i++) {
        const size_t r = (im->phead + i) % im->pcap;
        pos[i] = im->ppos[r];
        score[i] = im->pscore[r];
    }
    return im->pn;
}

void skv_rkv_materialize(skv_sketch *s) {
    if (s && s->cfg.policy == SKV_POLICY_REFRESHKV) rkv_materialize(s->impl);
}

void skv_rkv_ring(const skv_sketch *s, skv_rkv_ring_view *out) {
    const rkv_impl *im = s->impl;
    out->pend_lo = im->plo;
    out->pend_hi = im->phi;
    out->materialized = im->materialized;
    out->k = &im->pk;
    out->v = &im->pv;
    out->pn = im->pn;
    out->pcap = im->pcap;
    out->next = im->pn < im->pcap ? (im->phead + im->pn) % im->pcap : im->phead;
    out->pushes = im->pushes;
    out->layout = im->layout;
}
