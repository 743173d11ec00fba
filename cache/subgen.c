/*
 * subgen.c — SubGen (Zandieh et al., arXiv 2402.06082) as DESIGN.md section 3 states it.
 *
 * Tokens enter the sketch when they leave the exact window (the first S tokens stay
 * as exact sinks). With scores s_i = <q, k_i> (q pre-scaled by 1/sqrt(d)):
 *
 *   normalizer tau(q) = sum_i e^{s_i}
 *     ~ sum_j (n_j / t) sum_{x in S_j} e^{<q,x>}        clusters j of radius delta,
 *                                                     t independent uniform samples S_j
 *   numerator  N(q) = sum_i e^{s_i} v_i
 *     values=l2:      ~ (mu / s) sum_{slots} e^{<q,k>} v / ||v||^2,  mu = sum ||v_i||^2,
 *                     each slot independently holding token i w.p. ||v_i||^2 / mu
 *     values=cluster: ~ sum_j (n_j / t) sum_{(x,v) in S_j} e^{<q,x>} v   (stratified)
 *
 * Both are unbiased: a uniform sample x of cluster j has E[n_j e^{<q,x>}] = sum over the
 * cluster; an l2 slot holds (k_i, v_i) w.p. ||v_i||^2/mu, so E[mu e^{s} v/||v||^2] =
 * sum_i e^{s_i} v_i. In the weighted-entry view (skv_acc) cluster samples are entries
 * with a = n_j/t (b = a with values=cluster, else 0) and l2 slots have a = 0,
 * b = mu / (s ||v||^2); the exact sinks and window have a = b = 1.
 *
 * Coins: slot r of the reservoir of cluster j takes token i when
 * coin(i, r, CLUSTER) < 1/n_j; l2 slot r takes it when coin(i, r, VALUE) < ||v_i||^2/mu,
 * with n_j and mu counted after adding token i. Each slot is a size-1 reservoir, so it
 * ends holding the last token whose coin accepted it (the GPU's parallel ingest uses
 * this as a max-reduction).
 *
 * Bounded memory: at most max_clusters clusters. A key that fits no cluster when the cap
 * is reached doubles delta and merges, greedily in cluster order, every cluster whose
 * center lies within the new delta of an earlier surviving center (streaming k-center
 * doubling). Merging reservoirs A into B keeps each slot uniform over A u B: slot r takes
 * A's sample w.p. n_A / (n_A + n_B), decided by coin(merge round, j*t + r, MERGE).
 */
#include "skv_internal.h"

typedef skv_subgen_impl subgen_impl; /* the layout is in skv_internal.h (the GPU mirrors it) */

static size_t subgen_cluster_bytes(const skv_config *c) {
    size_t row = skv_rows_bytes(c->dtype, c->head_dim, 1);
    size_t per = (size_t)c->head_dim * sizeof(float) + sizeof(uint64_t) + (size_t)c->samples * row;
    if (c->values == SKV_VALUES_CLUSTER) per += (size_t)c->samples * row;
    return per;
}
static size_t subgen_slot_bytes(const skv_config *c) {
    return 2 * skv_rows_bytes(c->dtype, c->head_dim, 1) + sizeof(float);
}
static size_t subgen_fixed_bytes(const skv_config *c) {
    return skv_sketch_base_bytes() + sizeof(subgen_impl) +
           skv_sinkwin_bytes(c->dtype, c->head_dim, c->sinks, c->window);
}

static subkv_status subgen_resolve(skv_config *cfg, skv_err *err) {
    if (cfg->samples < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "subgen needs samples (t) >= 1");
    if (cfg->values == SKV_VALUES_CLUSTER) cfg->value_slots = 0;
    if (cfg->budget_bytes) {
        const size_t fixed = subgen_fixed_bytes(cfg), cb = subgen_cluster_bytes(cfg);
        const size_t sb = subgen_slot_bytes(cfg);
        const size_t need = fixed + cb + (cfg->values == SKV_VALUES_L2 ? sb : 0);
        if (cfg->budget_bytes < need)
            return skv_set_error(err, SKV_ERR_BUDGET,
                                 "budget %zu B below the fixed parts: %d sinks + %d window "
                                 "tokens + one cluster%s need %zu B",
                                 cfg->budget_bytes, cfg->sinks, cfg->window,
                                 cfg->values == SKV_VALUES_L2 ? " + one value slot" : "", need);
        const size_t rest = cfg->budget_bytes - fixed;
        size_t m = cfg->values == SKV_VALUES_L2 ? (rest / 2) / cb : rest / cb;
        if (m < 1) m = 1;
        if (m > (1u << 20)) m = 1u << 20;
        cfg->max_clusters = (int)m;
        if (cfg->values == SKV_VALUES_L2) {
            size_t sl = (rest - m * cb) / sb;
            if (sl > (1u << 24)) sl = 1u << 24;
            cfg->value_slots = (int)sl;
        }
    }
    if (cfg->max_clusters < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "subgen needs max_clusters >= 1");
    if (cfg->values == SKV_VALUES_L2 && cfg->value_slots < 1)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "subgen values=l2 needs value_slots >= 1");
    if ((uint64_t)cfg->max_clusters * (uint64_t)cfg->samples > UINT32_MAX / 2)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "max_clusters x samples too large");
    return SKV_OK;
}

static size_t subgen_create_bytes(const skv_config *cfg) {
    return subgen_fixed_bytes(cfg) + (size_t)cfg->max_clusters * subgen_cluster_bytes(cfg) +
           (size_t)cfg->value_slots * subgen_slot_bytes(cfg);
}

static subkv_status subgen_init(skv_sketch *s, skv_err *err) {
    const skv_config *c = &s->cfg;
    subgen_impl *im = skv_sketch_alloc(s, sizeof *im);
    if (!im) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate subgen state");
    s->impl = im;
    im->key = skv_rng_make_key(c->seed, c->seq_id, c->layer, c->head);
    im->mcap = c->max_clusters;
    im->t = c->samples;
    im->s = c->value_slots;
    im->cluster_values = c->values == SKV_VALUES_CLUSTER;
    im->delta = c->delta;
    SKV_CHECK(skv_sinkwin_init(s, &im->sw, c->sinks, c->window, err));
    const size_t nsamp = (size_t)im->mcap * (size_t)im->t;
    im->centers = skv_sketch_alloc(s, (size_t)im->mcap * (size_t)c->head_dim * sizeof(float));
    im->count = skv_sketch_alloc(s, (size_t)im->mcap * sizeof(uint64_t));
    if (!im->centers || !im->count)
        return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate %d clusters", im->mcap);
    SKV_CHECK(skv_sketch_rows(s, &im->ck, c->dtype, c->head_dim, nsamp, err));
    SKV_CHECK(
        skv_sketch_rows(s, &im->cv, c->dtype, c->head_dim, im->cluster_values ? nsamp : 0, err));
    SKV_CHECK(skv_sketch_rows(s, &im->lk, c->dtype, c->head_dim, (size_t)im->s, err));
    SKV_CHECK(skv_sketch_rows(s, &im->lv, c->dtype, c->head_dim, (size_t)im->s, err));
    if (im->s) {
        im->inv_norm = skv_sketch_alloc(s, (size_t)im->s * sizeof(float));
        if (!im->inv_norm) return skv_set_error(err, SKV_ERR_NOMEM, "cannot allocate slots");
    }
    if (s->heap_bytes != subgen_create_bytes(c))
        return skv_set_error(err, SKV_ERR_INTERNAL, "subgen allocated %zu B, layout says %zu B",
                             s->heap_bytes, subgen_create_bytes(c));
    return SKV_OK;
}

static void subgen_fini(skv_sketch *s) {
    subgen_impl *im = s->impl;
    if (!im) return;
    const skv_config *c = &s->cfg;
    skv_sinkwin_fini(s, &im->sw);
    skv_sketch_free(s, im->centers, (size_t)im->mcap * (size_t)c->head_dim * sizeof(float));
    skv_sketch_free(s, im->count, (size_t)im->mcap * sizeof(uint64_t));
    skv_sketch_rows_free(s, &im->ck);
    skv_sketch_rows_free(s, &im->cv);
    skv_sketch_rows_free(s, &im->lk);
    skv_sketch_rows_free(s, &im->lv);
    skv_sketch_free(s, im->inv_norm, (size_t)im->s * sizeof(float));
    skv_sketch_free(s, im, sizeof *im);
    s->impl = NULL;
}

static double sq_dist(const float *a, const float *b, int d) {
    float lane[8] = {0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int k = 0; k < 8; k++) {
            float x = a[j + k] - b[j + k];
            lane[k] += x * x;
        }
    for (; j < d; j++) lane[0] += (a[j] - b[j]) * (a[j] - b[j]);
    double s = 0.0;
    for (int k = 0; k < 8; k++) s += lane[k];
    return s;
}

/* Nearest center within delta, or -1. Ties go to the lower index. */
static int subgen_nearest(const subgen_impl *im, const float *k, int d) {
    const double r2 = (double)im->delta * (double)im->delta;
    int best = -1;
    double best_d = INFINITY;
    for (int j = 0; j < im->nclusters; j++) {
        double dd = sq_dist(k, im->centers + (size_t)j * (size_t)d, d);
        if (dd < best_d) {
            best_d = dd;
            best = j;
        }
    }
    return best_d <= r2 ? best : -1;
}

/* Move cluster `from` to position `to` (to < from): center, count, reservoir rows. */
static void subgen_move_cluster(subgen_impl *im, int to, int from, int d) {
    memcpy(im->centers + (size_t)to * (size_t)d, im->centers + (size_t)from * (size_t)d,
           (size_t)d * sizeof(float));
    im->count[to] = im->count[from];
    for (int r = 0; r < im->t; r++) {
        size_t dst = (size_t)to * (size_t)im->t + (size_t)r;
        size_t src = (size_t)from * (size_t)im->t + (size_t)r;
        skv_rows_copy(&im->ck, dst, &im->ck, src);
        if (im->cluster_values) skv_rows_copy(&im->cv, dst, &im->cv, src);
    }
}

/* Merge cluster j's reservoir and count into cluster i (i < j), slot by slot. */
static void subgen_merge_into(subgen_impl *im, int i, int j) {
    const double p = (double)im->count[j] / ((double)im->count[i] + (double)im->count[j]);
    for (int r = 0; r < im->t; r++) {
        uint32_t slot = (uint32_t)j * (uint32_t)im->t + (uint32_t)r;
        if (!skv_coin_accept(skv_coin(im->key, im->merges, slot, SKV_COIN_MERGE), p)) continue;
        size_t dst = (size_t)i * (size_t)im->t + (size_t)r;
        size_t src = (size_t)j * (size_t)im->t + (size_t)r;
        skv_rows_copy(&im->ck, dst, &im->ck, src);
        if (im->cluster_values) skv_rows_copy(&im->cv, dst, &im->cv, src);
    }
    im->count[i] += im->count[j];
}

/* Double delta and merge clusters closer than the new delta to an earlier survivor. */
static void subgen_double_and_merge(subgen_impl *im, int d) {
    im->delta *= 2.0f;
    im->merges++;
    const double r2 = (double)im->delta * (double)im->delta;
    int survivors = 0;
    for (int j = 0; j < im->nclusters; j++) {
        const float *cj = im->centers + (size_t)j * (size_t)d;
        int into = -1;
        for (int i = 0; i < survivors && into < 0; i++)
            if (sq_dist(cj, im->centers + (size_t)i * (size_t)d, d) <= r2) into = i;
        if (into >= 0) {
            /* j's samples sit at j (>= survivors); merge them into survivor `into` */
            subgen_merge_into(im, into, j);
        } else {
            if (survivors != j) subgen_move_cluster(im, survivors, j, d);
            survivors++;
        }
    }
    im->nclusters = survivors;
}

/* Sketch token `idx` (it left the window, or there is no window). */
static void subgen_sketch_token(subgen_impl *im, uint64_t idx, const float *k, const float *v,
                                int d) {
    if (im->delta == 0.0f) { /* auto radius from the first sketched key */
        double nk = 0.0;
        for (int c = 0; c < d; c++) nk += (double)k[c] * (double)k[c];
        nk = sqrt(nk);
        im->delta = nk > 0.0 ? (float)(0.25 * nk) : 1e-6f;
    }
    int j = subgen_nearest(im, k, d);
    while (j < 0 && im->nclusters == im->mcap) {
        subgen_double_and_merge(im, d);
        j = subgen_nearest(im, k, d);
    }
    if (j < 0) { /* open a cluster: every slot takes its first key (probability 1) */
        j = im->nclusters++;
        memcpy(im->centers + (size_t)j * (size_t)d, k, (size_t)d * sizeof(float));
        im->count[j] = 1;
        for (int r = 0; r < im->t; r++) {
            skv_rows_put(&im->ck, (size_t)j * (size_t)im->t + (size_t)r, k);
            if (im->cluster_values) skv_rows_put(&im->cv, (size_t)j * (size_t)im->t + (size_t)r, v);
        }
    } else {
        im->count[j]++;
        const double p = 1.0 / (double)im->count[j];
        for (int r = 0; r < im->t; r++) {
            if (!skv_coin_accept(skv_coin(im->key, idx, (uint32_t)r, SKV_COIN_CLUSTER), p))
                continue;
            skv_rows_put(&im->ck, (size_t)j * (size_t)im->t + (size_t)r, k);
            if (im->cluster_values) skv_rows_put(&im->cv, (size_t)j * (size_t)im->t + (size_t)r, v);
        }
    }
    if (im->cluster_values) return;
    double w = 0.0;
    for (int c = 0; c < d; c++) w += (double)v[c] * (double)v[c];
    if (!(w > 0.0)) return; /* a zero value adds nothing to the numerator */
    im->mu += w;
    const double p = w / im->mu;
    uint32_t coins[4];
    for (int r = 0; r < im->s; r++) {
        if ((r & 3) == 0) {
            uint32_t ctr[4] = {(uint32_t)idx, (uint32_t)(idx >> 32), (uint32_t)r >> 2,
                               SKV_COIN_VALUE};
            skv_philox4x32(ctr, im->key, coins);
        }
        if (!skv_coin_accept(coins[r & 3], p)) continue;
        skv_rows_put(&im->lk, (size_t)r, k);
        skv_rows_put(&im->lv, (size_t)r, v);
        im->inv_norm[r] = (float)(1.0 / w);
    }
    im->slots_full = true; /* the first v != 0 has p = 1: every slot took it */
}

static subkv_status subgen_append(skv_sketch *s, const float *K, const float *V, size_t n,
                                  skv_err *err) {
    (void)err;
    subgen_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    float kd[SKV_MAX_HEAD_DIM], vd[SKV_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint64_t t = s->tokens_seen + i;
        if (skv_sinkwin_push(&im->sw, K + i * (size_t)d, V + i * (size_t)d, kd, vd))
            subgen_sketch_token(im, t - (uint64_t)im->sw.window, kd, vd, d);
    }
    return SKV_OK;
}

static void subgen_segments(const skv_sketch *s, skv_seg_sink *sink) {
    const subgen_impl *im = s->impl;
    skv_sinkwin_segments(&im->sw, sink);
    for (int j = 0; j < im->nclusters; j++) {
        const double a = (double)im->count[j] / (double)im->t;
        sink->rows(sink, &im->ck, im->cluster_values ? &im->cv : NULL, (size_t)j * (size_t)im->t,
                   (size_t)im->t, NULL, a, NULL, im->cluster_values ? a : 0.0);
    }
    if (!im->cluster_values && im->slots_full)
        sink->rows(sink, &im->lk, &im->lv, 0, (size_t)im->s, NULL, 0.0, im->inv_norm,
                   im->mu / (double)im->s);
}

static void subgen_stats(const skv_sketch *s, skv_stats *st) {
    const subgen_impl *im = s->impl;
    st->tokens_held = im->sw.nsinks + im->sw.wfill;
    st->clusters = im->nclusters;
    st->cluster_samples = im->nclusters * im->t;
    st->value_slots_filled = im->slots_full ? im->s : 0;
    st->merges = (int)im->merges;
    st->delta = im->delta;
    st->value_mass = im->mu;
}

static void subgen_save(const skv_sketch *s, skv_writer *w) {
    const subgen_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    const size_t nsamp = (size_t)im->nclusters * (size_t)im->t;
    skv_sinkwin_save(&im->sw, w);
    skv_w_u32(w, (uint32_t)im->nclusters);
    skv_w_f32(w, im->delta);
    skv_w_u32(w, im->merges);
    skv_w_bytes(w, im->centers, (size_t)im->nclusters * (size_t)d * sizeof(float));
    skv_w_bytes(w, im->count, (size_t)im->nclusters * sizeof(uint64_t));
    skv_w_rows(w, &im->ck, nsamp);
    if (im->cluster_values) skv_w_rows(w, &im->cv, nsamp);
    skv_w_f64(w, im->mu);
    skv_w_u32(w, im->slots_full ? 1u : 0u);
    if (im->slots_full) {
        skv_w_rows(w, &im->lk, (size_t)im->s);
        skv_w_rows(w, &im->lv, (size_t)im->s);
        skv_w_bytes(w, im->inv_norm, (size_t)im->s * sizeof(float));
    }
}

static subkv_status subgen_load(skv_sketch *s, skv_reader *r, skv_err *err) {
    subgen_impl *im = s->impl;
    const int d = s->cfg.head_dim;
    SKV_CHECK(skv_sinkwin_load(&im->sw, r, err));
    uint32_t nc = skv_r_u32(r);
    im->delta = skv_r_f32(r);
    im->merges = skv_r_u32(r);
    if (r->failed || nc > (uint32_t)im->mcap || !isfinite(im->delta) || im->delta < 0.0f ||
        (nc > 0 && im->delta == 0.0f))
        return skv_set_error(err, SKV_ERR_CORRUPT, "subgen cluster header inconsistent");
    im->nclusters = (int)nc;
    const size_t nsamp = (size_t)nc * (size_t)im->t;
    if (!skv_r_bytes(r, im->centers, (size_t)nc * (size_t)d * sizeof(float)) ||
        !skv_r_bytes(r, im->count, (size_t)nc * sizeof(uint64_t)) ||
        !skv_r_rows(r, &im->ck, nsamp) || (im->cluster_values && !skv_r_rows(r, &im->cv, nsamp)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "subgen clusters cut short");
    uint64_t sketched = 0;
    for (uint32_t j = 0; j < nc; j++) {
        if (im->count[j] == 0 || im->count[j] > s->tokens_seen)
            return skv_set_error(err, SKV_ERR_CORRUPT, "cluster %u has count %llu", j,
                                 (unsigned long long)im->count[j]);
        sketched += im->count[j];
    }
    if (sketched + im->sw.nsinks + im->sw.wfill != s->tokens_seen)
        return skv_set_error(err, SKV_ERR_CORRUPT, "cluster counts do not add up to the tokens");
    for (size_t e = 0; e < (size_t)nc * (size_t)d; e++)
        if (!isfinite(im->centers[e]))
            return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite cluster center");
    if (!skv_rows_finite(&im->ck, nsamp) ||
        (im->cluster_values && !skv_rows_finite(&im->cv, nsamp)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite cluster sample");
    im->mu = skv_r_f64(r);
    uint32_t full = skv_r_u32(r);
    if (r->failed || !isfinite(im->mu) || im->mu < 0.0 || full > 1 ||
        (im->cluster_values && (full || im->mu != 0.0)) || ((full == 1) != (im->mu > 0.0)))
        return skv_set_error(err, SKV_ERR_CORRUPT, "subgen value sampler inconsistent");
    im->slots_full = full == 1;
    if (im->slots_full) {
        if (!skv_r_rows(r, &im->lk, (size_t)im->s) || !skv_r_rows(r, &im->lv, (size_t)im->s) ||
            !skv_r_bytes(r, im->inv_norm, (size_t)im->s * sizeof(float)))
            return skv_set_error(err, SKV_ERR_CORRUPT, "subgen value slots cut short");
        if (!skv_rows_finite(&im->lk, (size_t)im->s) || !skv_rows_finite(&im->lv, (size_t)im->s))
            return skv_set_error(err, SKV_ERR_CORRUPT, "non-finite value slot");
        for (int q = 0; q < im->s; q++)
            if (!(im->inv_norm[q] > 0.0f) || !isfinite(im->inv_norm[q]))
                return skv_set_error(err, SKV_ERR_CORRUPT, "value slot %d has a bad norm", q);
    }
    return SKV_OK;
}

const skv_policy_ops skv_policy_subgen_ops = {
    .id = SKV_POLICY_SUBGEN,
    .resolve = subgen_resolve,
    .create_bytes = subgen_create_bytes,
    .init = subgen_init,
    .fini = subgen_fini,
    .append = subgen_append,
    .segments = subgen_segments,
    .stats = subgen_stats,
    .save = subgen_save,
    .load = subgen_load,
};
