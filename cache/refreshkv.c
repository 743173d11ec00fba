/*
 * refreshkv.c — RefreshKV (Xu, Goyal, Choi 2024, arXiv 2411.05787): keep every token in a
 * full store where memory is cheap, answer most decode steps from a small partial cache of
 * K tokens, and refresh that cache from a full-attention step when the queries have moved.
 *
 * Stores of one sketch (one (sequence, layer, kv-head)):
 *  - full store (host memory in the service): every token, in order, grown geometrically
 *    like the exact cache; bounded only by max_tokens. With it, the scratch of a full step
 *    (two floats per token). With full_mem = device a GPU worker also keeps an append-only
 *    device mirror of it and runs full steps there (worker/gpu_refresh.c, through
 *    skv_rkv_plan / skv_rkv_apply_indices: the top-K too runs on the device); this host store
 *    stays the authoritative copy. A device selection's partial rows are copied from it into
 *    the host partial cache lazily, when something reads them (refreshkv_impl.h's plo, phi).
 *  - partial cache (device side): K = partial_tokens rows kept in ascending score order, as
 *    a ring (logical row i is physical (head + i) mod K, so logical 0 is the lowest score).
 *  - queue (device side): tokens appended since the last flush, at most S = stride; it is
 *    flushed into the full store by a full step, or when it is full (a plain copy, as the
 *    service would batch device -> host transfers).
 *
 * Mapping the paper onto the contract (append(K, V, n), attend(Q, g)):
 *  - "prefill" is the first attend after appends with no selection yet: until then appends
 *    go straight to the full store. That attend is a full step.
 *  - a "step" is an attend; the service's decode op is append-then-attend.
 *  - full step: flush the queue; exact attention of each of the g queries over the full
 *    store (the output, so a full step equals exact); each token's score is the largest
 *    softmax probability it got from the g query heads (GQA: max over the group), max-pooled
 *    along tokens with a window of pool_kernel (7: +-3 tokens, SnapKV's clustering); the
 *    partial cache becomes the top K by pooled score (ties: the later token), ascending.
 *  - partial step: attention over the partial cache only (no side effect but counters, so
 *    the GPU can run it over skv_sketch_entries).
 *  - an append of n > 1 tokens after the selection is a new prefill chunk (a decode step
 *    appends one): its tokens are stored as below and the next attend is a full step, so a
 *    long new prompt is scored instead of flushing the selection out by recency.
 *  - append after the selection: the token joins the queue and the partial cache, evicting
 *    the lowest-score entry when K are held. Its score is 1 + its token index: above every
 *    attention probability (<= 1) and above every earlier new token. The paper grows the
 *    partial cache with each new token; a fixed K keeps device memory bounded, so here a
 *    new token displaces the weakest selected token, and new tokens form a recency window
 *    that a full step re-scores like any other token.
 *  - the decision: every S attends since the last check (or full step), cosine similarity
 *    between the mean query of the group now and at the last full step; below threshold ->
 *    full step. threshold >= 1 makes every check a full step (the paper's fixed stride S;
 *    with S = 1 every attend is exact).
 *
 * Who decides: a lone sketch decides from its own group's mean query (the contract gives
 * it no other query); the paper's per-layer rule runs above the sketches (skv_layer_rule,
 * cache/layer_rule.c, where the two are compared), in the service by default.
 *
 * full_store = subgen: the full store is a SubGen sketch (cache/refreshkv_sub.c): bounded
 * memory, full steps answer with its estimate, re-selection among the rows it keeps with
 * values; no queue (tokens go straight into it).
 *
 * full_store = csr: the full store is a csr sketch (cache/refreshkv_csr.c): every token, as
 * 8 s bytes of codes once it leaves the store's exact sinks and window; full steps answer with
 * attention over its reconstructions and re-select among all tokens by position, as the exact
 * store does; no queue either.
 *
 * Files: this one (config, appends, the decision, checkpoints), refreshkv_full.c (the full
 * store, the full step, pooling, selection), refreshkv_sub.c (a SubGen full store),
 * refreshkv_csr.c (a csr full store).
 *
 * Bytes read per attend (skv_stats.bytes_read): a partial step reads its K rows of keys and
 * values, a full step every flushed row of the full store (keys and values once: a fused
 * implementation scores and accumulates in one pass; this reference reads keys twice).
 */
#include "refreshkv_impl.h"

enum { RKV_MAX_STRIDE = 1 << 16, RKV_MAX_POOL = 1023 };

static bool rkv_sub(const skv_config *c) { return c->full_store == SKV_FULL_SUBGEN; }
static bool rkv_csr(const skv_config *c) { return c->full_store == SKV_FULL_CSR; }
/* A SubGen or csr store: bounded, kept with the sketch, fed directly (no queue, no flush). */
static bool rkv_bounded(const skv_config *c) { return c->full_store != SKV_FULL_EXACT; }
/* Device-side bytes besides the partial rows: struct, state, queue (none with a SubGen or
 * csr store: tokens go straight into it). */
static size_t rkv_fixed_bytes(const skv_config *c) {
    return skv_sketch_base_bytes() + sizeof(rkv_impl) + (size_t)c->head_dim * sizeof(float) +
           (rkv_bounded(c) ? 0 : 2 * (size_t)c->stride * rkv_row_bytes(c));
}
/* Per partial-cache token: key, value, score, position; a SubGen store's candidate and
 * permutation slots, a csr store's selection scratch (heap entry, old row, permutation). */
static size_t rkv_partial_row_bytes(const skv_config *c) {
    size_t extra = 0;
    if (rkv_sub(c)) extra = sizeof(skv_rkv_cand) + sizeof(uint32_t);
    if (rkv_csr(c))
        extra = sizeof(double) + sizeof(uint64_t) + sizeof(skv_rkv_pos_row) + sizeof(uint32_t);
    return 2 * rkv_row_bytes(c) + sizeof(double) + sizeof(uint64_t) + extra;
}
/* Per full-store token: key, value and two floats of scratch. */
static size_t rkv_full_row_bytes(const skv_config *c) {
    return 2 * rkv_row_bytes(c) + 2 * sizeof(float);
}
/* What each held token adds beyond create_bytes: a full-store row (a SubGen store: nothing,
 * the sketch is bounded at create; a csr store: a coded token's 8 s bytes, max_tokens of them
 * at most). */
static size_t rkv_token_bytes(const skv_config *c) {
    if (rkv_csr(c)) return 8 * (size_t)c->sparsity;
    return rkv_sub(c) ? 0 : rkv_full_row_bytes(c);
}

static subkv_status rkv_resolve(skv_config *cfg, skv_err *err) {
    if (cfg->stride < 1 || cfg->stride > RKV_MAX_STRIDE)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "refreshkv stride %d outside [1, %d]",
                             cfg->stride, RKV_MAX_STRIDE);
    if (!(cfg->threshold >= -1.0f && cfg->threshold <= 1.0f))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "refreshkv threshold %g outside [-1, 1]",
                             (double)cfg->threshold);
    if (cfg->pool_kernel < 1 || cfg->pool_kernel > RKV_MAX_POOL || cfg->pool_kernel % 2 == 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "refreshkv pool_kernel %d must be odd, in [1, %d]", cfg->pool_kernel,
                             RKV_MAX_POOL);
    /* A SubGen or csr store is bounded and small, kept with the sketch: a device mirror of it
     * would buy nothing, so asking for one is an error rather than a silent no-op. */
    if (rkv_bounded(cfg) && cfg->full_mem == SKV_FULL_MEM_DEVICE)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "refreshkv full_mem=device needs full_store=exact (a %s store "
                             "stays with the sketch)",
                             skv_full_store_name(cfg->full_store));
    if (rkv_sub(cfg)) {
        SKV_CHECK(skv_rkv_sub_split(cfg, rkv_fixed_bytes(cfg), rkv_partial_row_bytes(cfg), err));
    } else if (rkv_csr(cfg)) {
        SKV_CHECK(rkv_csr_split(cfg, rkv_fixed_bytes(cfg), rkv_partial_row_bytes(cfg), err));
    } else if (cfg->budget_bytes) { /* the budget sizes the device side: K from what is left */
        const size_t fixed = rkv_fixed_bytes(cfg), row = rkv_partial_row_bytes(cfg);
        if (cfg->budget_bytes < fixed + row)
            return skv_set_error(err, SKV_ERR_BUDGET,
                                 "budget %zu B cannot hold the queue and one partial token (%zu B)",
                                 cfg->budget_bytes, fixed + row);
        size_t k = (cfg->budget_bytes - fixed) / row;
        cfg->partial_tokens = k > (size_t)INT32_MAX ? INT32_MAX : (int)k;
    }
    if (cfg->partial_tokens < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "refreshkv needs partial_tokens >= 1");
    return SKV_OK;
}

static size_t rkv_create_bytes(const skv_config *cfg) {
    size_t store = 0;
    skv_config sc;
    if (rkv_sub(cfg) && skv_rkv_sub_resolve(cfg, 0, &sc, &store, NULL) != SKV_OK) return SIZE_MAX;
    if (rkv_csr(cfg)) { /* the csr store as created: struct, sinks, window, rope table */
        rkv_csr_config(cfg, 0, &sc);
        store = skv_policy_csr_ops.create_bytes(&sc);
    }
    return rkv_fixed_bytes(cfg) + (size_t)cfg->partial_tokens * rkv_partial_row_bytes(cfg) + store;
}

/* Count the store's heap (SubGen or csr) in this sketch's (after anything that may change
 * it). */
static void rkv_store_sync(skv_sketch *s, rkv_impl *im) {
    const skv_sketch *store = im->sub ? im->sub : im->csr;
    const size_t now = store ? skv_sketch_bytes(store) : 0;
    s->heap_bytes = s->heap_bytes - im->store_bytes + now;
    im->store_bytes = now;
}

/* Create the SubGen store (and its candidate scratch) from the resolved config. */
static subkv_status rkv_sub_init(skv_sketch *s, rkv_impl *im, skv_err *err) {
    skv_config c;
    skv_rkv_sub_config(&s->cfg, 0, &c); /* the resolved fields already hold the split */
    SKV_CHECK(skv_sketch_create(&c, &im->sub, err));
    rkv_store_sync(s, im);
    im->ccap = skv_rkv_sub_max_cands(skv_sketch_config(im->sub)) + im->pcap;
    im->cand = skv_sketch_alloc(s, im->ccap * sizeof *im->cand);
    im->perm = skv_sketch_alloc(s, im->pcap * sizeof *im->perm);
    if (!im->cand || !im->perm)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate %zu candidates", im->ccap);
    return SKV_OK;
}

/* Create the csr store (the resolved config holds its fields) and the selection scratch. */
static subkv_status rkv_csr_init(skv_sketch *s, rkv_impl *im, skv_err *err) {
    skv_config c;
    rkv_csr_config(&s->cfg, 0, &c);
    SKV_CHECK(skv_sketch_create(&c, &im->csr, err));
    rkv_store_sync(s, im);
    im->sel_score = skv_sketch_alloc(s, im->pcap * sizeof *im->sel_score);
    im->sel_pos = skv_sketch_alloc(s, im->pcap * sizeof *im->sel_pos);
    im->sel_old = skv_sketch_alloc(s, im->pcap * sizeof *im->sel_old);
    im->perm = skv_sketch_alloc(s, im->pcap * sizeof *im->perm);
    if (!im->sel_score || !im->sel_pos || !im->sel_old || !im->perm)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate a selection of %zu", im->pcap);
    return SKV_OK;
}

static subkv_status rkv_init(skv_sketch *s, skv_err *err) {
    const skv_config *c = &s->cfg;
    if (rkv_csr(c) && !c->dict) /* as csr alone: nothing to code with */
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "refreshkv full_store=csr needs a dictionary: set cfg.dict "
                             "(skv_config_bind_dict binds dict_path '%s')",
                             c->dict_path);
    rkv_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate refreshkv state");
    s->impl = im;
    im->fk = (skv_rows){c->dtype, c->head_dim, 0, NULL};
    im->fv = im->fk;
    im->pcap = (size_t)c->partial_tokens;
    im->qcap = rkv_bounded(c) ? 0 : (size_t)c->stride;
    SKV_CHECK(skv_sketch_rows(s, &im->pk, c->dtype, c->head_dim, im->pcap, err));
    SKV_CHECK(skv_sketch_rows(s, &im->pv, c->dtype, c->head_dim, im->pcap, err));
    SKV_CHECK(skv_sketch_rows(s, &im->qk, c->dtype, c->head_dim, im->qcap, err));
    SKV_CHECK(skv_sketch_rows(s, &im->qv, c->dtype, c->head_dim, im->qcap, err));
    im->pscore = skv_sketch_alloc(s, im->pcap * sizeof(double));
    im->ppos = skv_sketch_alloc(s, im->pcap * sizeof(uint64_t));
    im->qref = skv_sketch_alloc(s, (size_t)c->head_dim * sizeof(float));
    if (!im->pscore || !im->ppos || !im->qref)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate refreshkv partial cache");
    if (rkv_sub(c)) SKV_CHECK(rkv_sub_init(s, im, err));
    if (rkv_csr(c)) SKV_CHECK(rkv_csr_init(s, im, err));
    return SKV_OK;
}

static void rkv_fini(skv_sketch *s) {
    rkv_impl *im = s->impl;
    if (!im) return;
    rkv_full_free(s, im);
    skv_sketch_destroy(im->sub);
    skv_sketch_destroy(im->csr);
    im->sub = im->csr = NULL;
    rkv_store_sync(s, im);
    skv_sketch_free(s, im->sel_score, im->pcap * sizeof *im->sel_score);
    skv_sketch_free(s, im->sel_pos, im->pcap * sizeof *im->sel_pos);
    skv_sketch_free(s, im->sel_old, im->pcap * sizeof *im->sel_old);
    skv_sketch_free(s, im->cand, im->ccap * sizeof *im->cand);
    skv_sketch_free(s, im->perm, im->pcap * sizeof *im->perm);
    skv_sketch_rows_free(s, &im->pk);
    skv_sketch_rows_free(s, &im->pv);
    skv_sketch_rows_free(s, &im->qk);
    skv_sketch_rows_free(s, &im->qv);
    skv_sketch_free(s, im->pscore, im->pcap * sizeof(double));
    skv_sketch_free(s, im->ppos, im->pcap * sizeof(uint64_t));
    skv_sketch_free(s, im->qref, (size_t)s->cfg.head_dim * sizeof(float));
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

/* Put a token on top of the partial cache (its score is the highest), evicting the lowest
 * when full: the evicted row is the ring's head, which the new token then occupies. */
static void rkv_partial_push(rkv_impl *im, const float *k, const float *v, double score,
                             uint64_t pos) {
    size_t row;
    if (im->pn < im->pcap) {
        row = (im->phead + im->pn) % im->pcap;
        im->pn++;
    } else {
        row = im->phead;
        im->phead = (im->phead + 1) % im->pcap;
    }
    if (im->plo < im->phi && row == im->plo) { /* a pending row, written now: no longer due */
        im->plo++;
        if (im->plo == im->phi) im->plo = im->phi = 0;
    }
    skv_rows_put(&im->pk, row, k);
    skv_rows_put(&im->pv, row, v);
    im->pscore[row] = score;
    im->ppos[row] = pos;
    im->pushes++;
}

/* A bounded store (SubGen or csr): every token into it, then on top of the partial cache:
 * before the first selection too, so that the first full step also chooses among the last
 * K tokens. A refusal by the store changes nothing. */
static subkv_status rkv_store_append(skv_sketch *s, rkv_impl *im, skv_sketch *store, const float *K,
                                     const float *V, size_t n, skv_err *err) {
    const int d = s->cfg.head_dim;
    SKV_CHECK(skv_sketch_append(store, K, V, n, d, err));
    rkv_store_sync(s, im);
    for (size_t i = 0; i < n; i++) {
        const uint64_t t = s->tokens_seen + i;
        rkv_partial_push(im, K + i * (size_t)d, V + i * (size_t)d, 1.0 + (double)t, t);
    }
    if (im->selected && n > 1) im->forced = 1;
    return SKV_OK;
}

static subkv_status rkv_append(skv_sketch *s, const float *K, const float *V, size_t n,
                               skv_err *err) {
    rkv_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    /* the csr store's own max_tokens caps its coded tokens */
    if (im->csr) return rkv_store_append(s, im, im->csr, K, V, n, err);
    if (s->cfg.max_tokens && n > s->cfg.max_tokens - s->tokens_seen)
        return skv_set_error(
            err, SKV_ERR_BUDGET, "append of %zu tokens exceeds max_tokens: %llu of %llu held", n,
            (unsigned long long)s->tokens_seen, (unsigned long long)s->cfg.max_tokens);
    if (im->sub) return rkv_store_append(s, im, im->sub, K, V, n, err);
    if (!im->selected) { /* prefill: straight into the full store */
        SKV_CHECK(rkv_full_reserve(s, im, im->nfull + n, err));
        for (size_t i = 0; i < n; i++) {
            skv_rows_put(&im->fk, im->nfull + i, K + i * (size_t)d);
            skv_rows_put(&im->fv, im->nfull + i, V + i * (size_t)d);
        }
        im->nfull += n;
        return SKV_OK;
    }
    /* every flush this append may trigger has its room before anything changes */
    SKV_CHECK(rkv_full_reserve(s, im, im->nfull + im->nq + n, err));
    for (size_t i = 0; i < n; i++) {
        const float *k = K + i * (size_t)d, *v = V + i * (size_t)d;
        const uint64_t t = s->tokens_seen + i;
        if (im->nq == im->qcap) rkv_flush(im);
        skv_rows_put(&im->qk, im->nq, k);
        skv_rows_put(&im->qv, im->nq, v);
        im->nq++;
        rkv_partial_push(im, k, v, 1.0 + (double)t, t);
    }
    if (n > 1) im->forced = 1;
    return SKV_OK;
}

void rkv_segments(const skv_sketch *s, skv_seg_sink *sink) {
    rkv_impl *im = s->impl;
    /* the sinks (the CPU attend, skv_sketch_entries) read the host rows */
    rkv_materialize(im);
    if (im->pn < im->pcap || im->phead == 0) { /* not wrapped: rows [0, pn) */
        sink->rows(sink, &im->pk, &im->pv, 0, im->pn, NULL, 1.0, NULL, 1.0);
        return;
    }
    sink->rows(sink, &im->pk, &im->pv, im->phead, im->pcap - im->phead, NULL, 1.0, NULL, 1.0);
    sink->rows(sink, &im->pk, &im->pv, 0, im->phead, NULL, 1.0, NULL, 1.0);
}

/* Cosine similarity of the group's mean query with the reference (scale-free, so the
 * unscaled queries serve). A zero vector on either side counts as dissimilar. */
static double rkv_similarity(const float *Q, int g, int d, const float *ref) {
    double dot = 0.0, nq = 0.0, nr = 0.0;
    for (int j = 0; j < d; j++) {
        double m = 0.0;
        for (int h = 0; h < g; h++) m += Q[(size_t)h * (size_t)d + (size_t)j];
        m /= g;
        dot += m * ref[j];
        nq += m * m;
        nr += (double)ref[j] * ref[j];
    }
    return nq > 0.0 && nr > 0.0 ? dot / sqrt(nq * nr) : 0.0;
}

subkv_status skv_rkv_plan(skv_sketch *s, const float *Q, int g, int *full, skv_err *err) {
    if (!s || s->cfg.policy != SKV_POLICY_REFRESHKV)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "plan needs a refreshkv sketch");
    rkv_impl *im = s->impl;
    bool f = !im->selected || im->forced;
    uint64_t since = im->since_check;
    if (!f && ++since >= (uint64_t)s->cfg.stride) { /* a check */
        since = 0;
        f = s->cfg.threshold >= 1.0f ||
            rkv_similarity(Q, g, s->cfg.head_dim, im->qref) < (double)s->cfg.threshold;
    }
    if (f) { /* the host store takes the queue: it stays the authoritative copy (a device
              * mirror only ever uploads rows flushed here; checkpoints save the host store) */
        if (!rkv_bounded(&s->cfg)) {
            SKV_CHECK(rkv_full_reserve(s, im, im->nfull + im->nq, err));
            rkv_flush(im);
        }
        *full = 1;
        return SKV_OK; /* counted by the full step itself, once done */
    }
    im->since_check = since;
    im->bytes_read += (uint64_t)im->pn * 2 * rkv_row_bytes(&s->cfg);
    im->attends++;
    *full = 0;
    return SKV_OK;
}

static subkv_status rkv_attend_begin(skv_sketch *s, const float *Q, int g, skv_partial *out,
                                     int *done, skv_err *err) {
    int full = 0;
    SKV_CHECK(skv_rkv_plan(s, Q, g, &full, err));
    if (full) SKV_CHECK(rkv_full_step(s, s->impl, Q, g, out, err));
    *done = full;
    return SKV_OK;
}

static void rkv_refresh(skv_sketch *s) {
    rkv_impl *im = s->impl;
    im->forced = 1;
}

static void rkv_stats(const skv_sketch *s, skv_stats *st) {
    const rkv_impl *im = s->impl;
    st->tokens_held = im->pn;
    st->attends = im->attends;
    st->full_steps = im->full_steps;
    st->bytes_read = im->bytes_read;
    if (im->sub)
        st->full_bytes = im->store_bytes + im->ccap * sizeof *im->cand;
    else if (im->csr) /* the store and a full step's selection scratch */
        st->full_bytes = im->store_bytes + im->pcap * (sizeof *im->sel_score + sizeof *im->sel_pos +
                                                       sizeof *im->sel_old);
    else
        st->full_bytes = im->fcap * rkv_full_row_bytes(&s->cfg);
    st->partial_bytes = s->heap_bytes - st->full_bytes;
}

static void rkv_save(const skv_sketch *s, skv_writer *w) {
    rkv_impl *im = s->impl;
    rkv_materialize(im); /* a checkpoint holds the partial rows themselves */
    skv_w_u32(w, im->selected);
    skv_w_u32(w, im->forced);
    skv_w_u64(w, im->since_check);
    skv_w_u64(w, im->attends);
    skv_w_u64(w, im->full_steps);
    skv_w_u64(w, im->bytes_read);
    skv_w_u64(w, im->nfull);
    skv_w_rows(w, &im->fk, im->nfull);
    skv_w_rows(w, &im->fv, im->nfull);
    skv_w_u64(w, im->nq);
    skv_w_rows(w, &im->qk, im->nq);
    skv_w_rows(w, &im->qv, im->nq);
    skv_w_u64(w, im->pn);
    skv_w_u64(w, im->phead);
    skv_w_rows(w, &im->pk, im->pn); /* physical order: pn < pcap implies phead == 0 */
    skv_w_rows(w, &im->pv, im->pn);
    skv_w_bytes(w, im->pscore, im->pn * sizeof(double));
    skv_w_bytes(w, im->ppos, im->pn * sizeof(uint64_t));
    for (int j = 0; j < s->cfg.head_dim; j++) skv_w_f32(w, im->qref[j]);
    if (im->sub) { /* the SubGen store, in its own checksummed frame */
        skv_err e;
        if (!w->failed && skv_sketch_save(im->sub, w->buf, &e) != SKV_OK) w->failed = true;
    }
    /* the csr store's body inline: its config is this one's, its dictionary this one's (by
     * dict_path and fingerprint, which its body carries and its load checks) */
    if (im->csr) skv_policy_csr_ops.save(im->csr, w);
}

/* Replace the store made at init by the saved one (same config, same tokens). */
static subkv_status rkv_sub_load(skv_sketch *s, rkv_impl *im, skv_reader *r, skv_err *err) {
    skv_sketch *sub = NULL;
    SKV_CHECK(skv_rkv_sub_load(r, im->sub, s->tokens_seen, &sub, err));
    skv_sketch_destroy(im->sub);
    im->sub = sub;
    rkv_store_sync(s, im);
    return SKV_OK;
}

/* Every invariant attend and append rely on, checked on the loaded state. */
static bool rkv_consistent(const skv_sketch *s, const rkv_impl *im) {
    if (im->selected > 1 || im->forced > 1 || im->since_check >= (uint64_t)s->cfg.stride ||
        im->full_steps > im->attends ||
        im->nfull + im->nq != (rkv_bounded(&s->cfg) ? 0 : s->tokens_seen))
        return false;
    if (!im->selected && (im->nq || (im->pn && !rkv_bounded(&s->cfg)) || im->since_check))
        return false;
    if (im->pn < im->pcap && im->phead != 0) return false;
    for (size_t i = 0; i < im->pn; i++) {
        const size_t r = (im->phead + i) % im->pcap,
                     prev = (im->phead + i + im->pcap - 1) % im->pcap;
        if (!isfinite(im->pscore[r]) || im->pscore[r] < 0.0 || im->ppos[r] >= s->tokens_seen)
            return false;
        if (i > 0 && im->pscore[r] < im->pscore[prev]) return false;
    }
    for (int j = 0; j < s->cfg.head_dim; j++)
        if (!isfinite(im->qref[j])) return false;
    return true;
}

static subkv_status rkv_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    rkv_impl *im = s->impl;
    im->selected = skv_r_u32(r);
    im->forced = skv_r_u32(r);
    im->since_check = skv_r_u64(r);
    im->attends = skv_r_u64(r);
    im->full_steps = skv_r_u64(r);
    im->bytes_read = skv_r_u64(r);
    const uint64_t nfull = skv_r_u64(r);
    const size_t row = rkv_row_bytes(&s->cfg);
    /* before allocating: the rows must be in the body (a few bytes cannot ask for gigabytes) */
    if (r->failed || nfull > s->tokens_seen || nfull > (r->len - r->pos) / (2 * row) ||
        (s->cfg.max_tokens && s->tokens_seen > s->cfg.max_tokens))
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv full store inconsistent");
    SKV_CHECK(rkv_full_reserve(s, im, (size_t)nfull, err));
    im->nfull = (size_t)nfull;
    if (!skv_r_rows(r, &im->fk, im->nfull) || !skv_r_rows(r, &im->fv, im->nfull))
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv full store cut short");
    const uint64_t nq = skv_r_u64(r);
    if (r->failed || nq > im->qcap)
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv queue inconsistent");
    im->nq = (size_t)nq;
    if (!skv_r_rows(r, &im->qk, im->nq) || !skv_r_rows(r, &im->qv, im->nq))
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv queue cut short");
    const uint64_t pn = skv_r_u64(r), phead = skv_r_u64(r);
    if (r->failed || pn > im->pcap || phead >= im->pcap)
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv partial cache inconsistent");
    im->pn = (size_t)pn;
    im->phead = (size_t)phead;
    im->layout++;
    if (!skv_r_rows(r, &im->pk, im->pn) || !skv_r_rows(r, &im->pv, im->pn) ||
        !skv_r_bytes(r, im->pscore, im->pn * sizeof(double)) ||
        !skv_r_bytes(r, im->ppos, im->pn * sizeof(uint64_t)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv partial cache cut short");
    for (int j = 0; j < s->cfg.head_dim; j++) im->qref[j] = skv_r_f32(r);
    if (r->failed) return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv state cut short");
    if (im->sub) SKV_CHECK(rkv_sub_load(s, im, r, err));
    if (im->csr) { /* the store made at init takes the saved body (csr_load checks it all) */
        im->csr->tokens_seen = s->tokens_seen;
        const subkv_status st = skv_policy_csr_ops.load(im->csr, r, err);
        rkv_store_sync(s, im);
        SKV_CHECK(st);
    }
    if (!skv_rows_finite(&im->fk, im->nfull) || !skv_rows_finite(&im->fv, im->nfull) ||
        !skv_rows_finite(&im->qk, im->nq) || !skv_rows_finite(&im->qv, im->nq) ||
        !skv_rows_finite(&im->pk, im->pn) || !skv_rows_finite(&im->pv, im->pn))
        return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite stored key or value");
    if (!rkv_consistent(s, im))
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv state violates its invariants");
    return SKV_OK;
}

const skv_policy_ops skv_policy_refreshkv_ops = {
    .id = SKV_POLICY_REFRESHKV,
    .resolve = rkv_resolve,
    .create_bytes = rkv_create_bytes,
    .token_bytes = rkv_token_bytes,
    .init = rkv_init,
    .fini = rkv_fini,
    .append = rkv_append,
    .segments = rkv_segments,
    .attend_begin = rkv_attend_begin,
    .refresh = rkv_refresh,
    .stats = rkv_stats,
    .save = rkv_save,
    .load = rkv_load,
};
