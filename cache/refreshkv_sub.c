/*
 * refreshkv_sub.c — RefreshKV whose full store is a SubGen sketch (full_store = subgen; the
 * combination issue 6 asks to try). refreshkv.c owns the policy; this file holds what the
 * SubGen store changes: the store's configuration and budget split, and its full step.
 *
 * Full step over a SubGen store. The output is the SubGen estimate of attention over every
 * token seen (its sinks and window exact, the rest estimated), so a full step is no longer
 * exact; a partial step is still plain attention over the K selected rows. Re-selection
 * can only pick tokens the store holds with their values: the candidates are the rows the
 * SubGen sketch lists with a value — sinks, window, and either the cluster samples
 * (values = cluster: each keeps (k, v)) or the l2 value slots (values = l2: the cluster
 * samples there are keys only) — and the rows of the partial cache itself, which the
 * sketch holds exactly too: tokens that entered it as new tokens and have since left the
 * store's window, or were selected before, can stay when they still score (without them a
 * store that holds few rows with values would leave most of the K slots empty: 100 of 463
 * at 4K tokens in subkv-bench sketch). New tokens enter the partial cache from the first
 * append on (the exact store's prefill skips it), so the first full step, too, chooses
 * among the last K tokens besides the store's rows. Each candidate's score is, as in the
 * exact store, the largest attention probability it gets from the group's heads, e^(s - m) / l with
 * m, l the estimate's own (so a candidate is weighed against the estimated whole context, not only
 * the other candidates). No max-pooling: the candidates are not a contiguous run of tokens (samples
 * and slots carry no positions), so a window along them means nothing. One token can sit in several
 * places (a cluster's t samples, a value slot and the window); its copies have the same key, value
 * and score, so the selection keeps the first of a run of equal scores whose rows are
 * byte-identical and skips the rest.
 *
 * Memory: the SubGen store's size is fixed at create (its value_slots / max_clusters as
 * subgen's own budget derives them), so the whole sketch is bounded: with budget_bytes,
 * half the budget (less the fixed state) sizes the partial cache (K) and the rest the
 * store, candidate scratch included, and skv_sketch_bytes() never exceeds the budget.
 */
#include <stdlib.h>

#include "skv_internal.h"

/* The SubGen store's configuration from the refreshkv one (its subgen fields and RNG key). */
void skv_rkv_sub_config(const skv_config *p, size_t budget, skv_config *c) {
    skv_config_default(c, SKV_POLICY_SUBGEN, p->head_dim);
    c->dtype = p->dtype;
    c->values = p->values;
    c->sinks = p->sinks;
    c->window = p->window;
    c->samples = p->samples;
    c->value_slots = p->value_slots;
    c->max_clusters = p->max_clusters;
    c->delta = p->delta;
    c->seed = p->seed;
    c->seq_id = p->seq_id;
    c->layer = p->layer;
    c->head = p->head;
    c->budget_bytes = budget;
}

/* The SubGen store's resolved config and what it costs (store + candidate scratch). */
subkv_status skv_rkv_sub_resolve(const skv_config *cfg, size_t budget, skv_config *sc, size_t *cost,
                                 skv_err *err) {
    skv_config c;
    skv_rkv_sub_config(cfg, budget, &c);
    SKV_CHECK(skv_config_resolve(&c, sc, err));
    *cost =
        skv_policy_subgen_ops.create_bytes(sc) + skv_rkv_sub_max_cands(sc) * sizeof(skv_rkv_cand);
    return SKV_OK;
}

/* A bounded store's budget (budget_bytes > 0): half (less the fixed state) derives the
 * partial cache's K (at least 1), written to cfg; *rest = what is left for the store. */
subkv_status skv_rkv_split_partial(skv_config *cfg, size_t fixed, size_t row, size_t *rest,
                                   skv_err *err) {
    if (cfg->budget_bytes < fixed + row)
        return skv_set_error(err, SKV_ERR_BUDGET,
                             "budget %zu B cannot hold the state and one partial token (%zu B)",
                             cfg->budget_bytes, fixed + row);
    size_t k = (cfg->budget_bytes / 2 > fixed ? cfg->budget_bytes / 2 - fixed : 0) / row;
    if (k < 1) k = 1;
    cfg->partial_tokens = k > (size_t)INT32_MAX ? INT32_MAX : (int)k;
    *rest = cfg->budget_bytes - fixed - (size_t)cfg->partial_tokens * row;
    return SKV_OK;
}

/* full_store = subgen with a budget: half (less the fixed state) to the partial cache, the
 * rest to the store and its candidate scratch (the scratch is taken out of the store's
 * budget, shrinking it until both fit). The derived subgen fields are written back. */
subkv_status skv_rkv_sub_split(skv_config *cfg, size_t fixed, size_t row, skv_err *err) {
    skv_config sc;
    size_t cost = 0;
    if (cfg->budget_bytes) {
        size_t rest = 0;
        SKV_CHECK(skv_rkv_split_partial(cfg, fixed, row, &rest, err));
        size_t sub_budget = rest;
        for (int tries = 0;; tries++) {
            SKV_CHECK(skv_rkv_sub_resolve(cfg, sub_budget, &sc, &cost, err));
            if (cost <= rest) break;
            if (tries == 4 || cost - rest >= sub_budget)
                return skv_set_error(err, SKV_ERR_BUDGET,
                                     "budget %zu B: the SubGen store and its candidates need %zu B "
                                     "of the %zu B left",
                                     cfg->budget_bytes, cost, rest);
            sub_budget -= cost - rest;
        }
    } else {
        SKV_CHECK(skv_rkv_sub_resolve(cfg, 0, &sc, &cost, err));
    }
    cfg->value_slots = sc.value_slots;
    cfg->max_clusters = sc.max_clusters;
    return SKV_OK;
}

subkv_status skv_rkv_sub_load(skv_reader *r, const skv_sketch *expect, uint64_t tokens_seen,
                              skv_sketch **out, skv_err *err) {
    skv_sketch *sub = NULL;
    size_t used = 0;
    skv_err inner;
    const size_t bytes = skv_sketch_bytes(expect);
    if (skv_sketch_load_bounded(r->p + r->pos, r->len - r->pos, bytes, &sub, &used, &inner) !=
        SKV_OK)
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv SubGen store: %s", inner.msg);
    r->pos += used;
    const skv_config *a = skv_sketch_config(sub), *b = skv_sketch_config(expect);
    skv_stats st;
    skv_sketch_stats(sub, &st);
    if (a->policy != b->policy || a->dtype != b->dtype || a->values != b->values ||
        a->sinks != b->sinks || a->window != b->window || a->samples != b->samples ||
        a->value_slots != b->value_slots || a->max_clusters != b->max_clusters ||
        a->seed != b->seed || a->seq_id != b->seq_id || a->layer != b->layer ||
        a->head != b->head || skv_sketch_bytes(sub) != bytes || st.tokens_seen != tokens_seen) {
        skv_sketch_destroy(sub);
        return skv_set_error(err, SKV_ERR_CORRUPT, "refreshkv SubGen store does not match");
    }
    *out = sub;
    return SKV_OK;
}

size_t skv_rkv_sub_max_cands(const skv_config *c) {
    size_t n = (size_t)c->sinks + (size_t)c->window;
    if (c->values == SKV_VALUES_CLUSTER)
        n += (size_t)c->max_clusters * (size_t)c->samples;
    else
        n += (size_t)c->value_slots;
    return n;
}

typedef struct cand_sink {
    skv_seg_sink base;
    const float *qs; /* g scaled queries */
    int g, d;
    const skv_partial *est; /* the estimate's partials, one per head */
    skv_rkv_cand *cand;
    size_t n, cap;
    float *dots; /* scratch: one segment's dot products */
    size_t rows_read, value_rows_read;
} cand_sink;

static void cand_rows(skv_seg_sink *sink, const skv_rows *K, const skv_rows *V, size_t start,
                      size_t count, const float *a_w, double a, const float *b_w, double b) {
    (void)a_w, (void)a, (void)b_w, (void)b;
    cand_sink *s = (cand_sink *)sink;
    s->rows_read += count;
    if (!V) return; /* keys only: no value to keep exactly */
    s->value_rows_read += count;
    for (size_t i0 = 0; i0 < count; i0 += SKV_RKV_DOT_BLOCK) {
        const size_t nb = count - i0 < SKV_RKV_DOT_BLOCK ? count - i0 : SKV_RKV_DOT_BLOCK;
        float best[SKV_RKV_DOT_BLOCK];
        for (int h = 0; h < s->g; h++) {
            const skv_partial *p = skv_partial_at((skv_partial *)s->est, s->d, (size_t)h);
            skv_rows_dot_block(K, start + i0, nb, s->qs + (size_t)h * (size_t)s->d, s->dots);
            for (size_t i = 0; i < nb; i++) {
                const float pr =
                    p->l > 0.0f ? (float)(exp((double)s->dots[i] - (double)p->m) / p->l) : 0.0f;
                if (h == 0 || pr > best[i]) best[i] = pr;
            }
        }
        for (size_t i = 0; i < nb && s->n < s->cap; i++, s->n++)
            s->cand[s->n] =
                (skv_rkv_cand){K, V, (uint32_t)(start + i0 + i), (uint32_t)s->n, best[i]};
    }
}

/* Descending score; ties in listing order (deterministic: qsort is not stable). */
static int cand_cmp(const void *x, const void *y) {
    const skv_rkv_cand *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static bool cand_same(const skv_rkv_cand *a, const skv_rkv_cand *b) {
    const size_t rb = skv_rows_row_bytes(a->k);
    return memcmp((const char *)a->k->data + a->row * rb, (const char *)b->k->data + b->row * rb,
                  rb) == 0 &&
           memcmp((const char *)a->v->data + a->row * rb, (const char *)b->v->data + b->row * rb,
                  rb) == 0;
}

subkv_status skv_rkv_sub_full_step(skv_sketch *sub, const skv_sketch *owner,
                                   void (*owner_rows)(const skv_sketch *, skv_seg_sink *),
                                   const float *Q, int g, skv_partial *out, skv_rkv_cand *cand,
                                   size_t cap, size_t keep, size_t *n_out, uint64_t *rows_read,
                                   skv_err *err) {
    const int d = sub->cfg.head_dim;
    SKV_CHECK(skv_sketch_attend(sub, Q, g, d, out, err)); /* the estimate is the output */
    float dots[SKV_RKV_DOT_BLOCK];
    float *qbuf = malloc((size_t)g * (size_t)d * sizeof(float)); /* a full step, not the hot path */
    if (!qbuf) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d scaled queries", g);
    const float scale = 1.0f / sqrtf((float)d);
    for (size_t i = 0; i < (size_t)g * (size_t)d; i++) qbuf[i] = Q[i] * scale;
    cand_sink sink = {.base = {cand_rows},
                      .qs = qbuf,
                      .g = g,
                      .d = d,
                      .est = out,
                      .cand = cand,
                      .cap = cap,
                      .dots = dots};
    sub->ops->segments(sub, &sink.base);
    const size_t store_rows = sink.rows_read + sink.value_rows_read;
    owner_rows(owner, &sink.base); /* the partial cache's rows compete too (already read) */
    free(qbuf);
    qsort(cand, sink.n, sizeof *cand, cand_cmp);
    /* keep the best `keep` distinct rows, compacted to the front in descending order */
    size_t kept = 0, run = 0; /* run: first kept index of the current equal-score run */
    for (size_t i = 0; i < sink.n && kept < keep; i++) {
        if (kept && cand[kept - 1].score != cand[i].score) run = kept;
        bool dup = false;
        for (size_t j = run; j < kept && !dup; j++) dup = cand_same(&cand[j], &cand[i]);
        if (!dup) cand[kept++] = cand[i];
    }
    *n_out = kept;
    *rows_read = store_rows;
    return SKV_OK;
}

/* Raw row i of r. */
static unsigned char *sub_row(const skv_rows *r, size_t i) {
    return (unsigned char *)r->data + i * skv_rows_row_bytes(r);
}

/* The kept candidates (descending in cand[0, n)) become partial rows 0..n-1, ascending,
 * scores capped at 1 (positions unknown: 0). Those that are partial rows already move
 * along permutation cycles through two row buffers (no second cache: a chain saves the row
 * it is about to overwrite when that row still has somewhere to go); the store's rows are
 * copied in after. */
void skv_rkv_sub_place(skv_rows *pk, skv_rows *pv, double *pscore, uint64_t *ppos, uint32_t *perm,
                       size_t pcap, const skv_rkv_cand *cand, size_t n) {
    uint32_t *dest = perm;
    for (size_t r = 0; r < pcap; r++) dest[r] = SKV_RKV_NO_ROW;
    for (size_t k = 0; k < n; k++)
        if (cand[k].k == pk) dest[cand[k].row] = (uint32_t)(n - 1 - k);
    skv_rkv_move_rows(pk, pv, dest, pcap);
    for (size_t k = 0; k < n; k++) {
        const skv_rkv_cand *c = &cand[k];
        const size_t i = n - 1 - k;
        if (c->k != pk) {
            skv_rows_copy(pk, i, c->k, c->row);
            skv_rows_copy(pv, i, c->v, c->row);
        }
        pscore[i] = c->score < 1.0f ? (double)c->score : 1.0;
        ppos[i] = 0; /* unknown: samples and value slots carry no positions */
    }
}

void skv_rkv_move_rows(skv_rows *pk, skv_rows *pv, uint32_t *dest, size_t pcap) {
    const uint32_t none = SKV_RKV_NO_ROW;
    for (size_t r = 0; r < pcap; r++)
        if (dest[r] == r) dest[r] = none; /* stays where it is */
    const size_t rb = skv_rows_row_bytes(pk);
    unsigned char buf[2][2 * SKV_MAX_HEAD_DIM * sizeof(float)];
    for (size_t r = 0; r < pcap; r++) {
        if (dest[r] == none) continue;
        int cur = 0;
        memcpy(buf[cur], sub_row(pk, r), rb);
        memcpy(buf[cur] + rb, sub_row(pv, r), rb);
        uint32_t d = dest[r];
        dest[r] = none;
        for (;;) {
            const uint32_t next = dest[d];
            if (next != none) { /* row d must move on: keep it before overwriting */
                memcpy(buf[1 - cur], sub_row(pk, d), rb);
                memcpy(buf[1 - cur] + rb, sub_row(pv, d), rb);
                dest[d] = none;
            }
            memcpy(sub_row(pk, d), buf[cur], rb);
            memcpy(sub_row(pv, d), buf[cur] + rb, rb);
            if (next == none) break;
            cur = 1 - cur;
            d = next;
        }
    }
}
