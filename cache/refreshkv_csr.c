/*
 * refreshkv_csr.c — RefreshKV whose full store is a csr sketch (full_store = csr; issue 6's
 * "refreshkv whose full store is ... CSR codes instead of the full cache"). refreshkv.c owns
 * the policy; this file holds what the csr store changes: its configuration and budget split,
 * and its full step.
 *
 * The store is an ordinary csr sketch (cache/csr.c) made from this config's csr fields
 * (sparsity, atoms, rope_base, dict_path / dict) and its sinks and window (refreshkv's
 * defaults: 4 and 64, SubGen's; csr alone defaults to 0 and 128). Every token goes into it,
 * coded as it leaves the store's window, and on top of the partial cache (from the first
 * append, as with a SubGen store).
 *
 * Full step. The output is the csr sketch's own attend: exact over its sinks and window,
 * over the reconstructions of the codes elsewhere (equal to exact attention when the codes
 * reconstruct exactly). Scores as the exact store forms them, over the same rows: each token's
 * largest probability over the group's heads, e^(s - m) / l with the output's own m, l (capped
 * at 1: the output accumulates in double, the dot products here in float, so a lone dominant
 * token can come out a hair above 1, where new tokens' 1 + index must stay above), max-pooled
 * along positions with pool_kernel — csr tokens are contiguous with known positions, unlike
 * SubGen's samples. Pooling and the top-K run as one streaming pass in position order (a
 * ring of pool_kernel probabilities, a heap of K), so the step needs no per-token scratch and
 * memory stays 8 s bytes per coded token.
 *
 * The new partial cache's rows: a selected token that is in the partial cache already keeps
 * its row there (exact: it entered as a new token or was copied exactly from the store's
 * sinks or window) — re-fetching it from the store would replace an exact row by its
 * reconstruction once the token has left the store's window; every other selected token gets
 * the row the store gives (the stored row for a sink or window token, else its decoded
 * reconstruction, stored in the config's dtype as csr's attend stores it). Kept rows move
 * in place along permutation cycles (skv_rkv_move_rows), then the rest are filled.
 *
 * Bytes read by a full step: the store's exact rows and codes once (skv_csr_read_bytes),
 * as a fused kernel would read them; this reference decodes the codes twice (attend, scores).
 *
 * Memory: bounded by the codes' cap. With budget_bytes, as with a SubGen store: half (less
 * the fixed state) derives K, the rest is the csr store's own budget, from which csr derives
 * max_tokens (coded tokens; sinks and window not counted), so skv_sketch_bytes() never
 * exceeds the budget. Without a budget, max_tokens caps the coded tokens as in csr (0: no
 * cap; the codes grow x1.5 like csr's).
 */
#include <stdlib.h>

#include "refreshkv_impl.h"

void rkv_csr_config(const skv_config *p, size_t budget, skv_config *c) {
    skv_config_default(c, SKV_POLICY_CSR, p->head_dim);
    c->dtype = p->dtype;
    c->sinks = p->sinks;
    c->window = p->window;
    c->sparsity = p->sparsity;
    c->atoms = p->atoms;
    c->rope_base = p->rope_base;
    memcpy(c->dict_path, p->dict_path, sizeof c->dict_path);
    c->dict = p->dict;
    c->seed = p->seed;
    c->seq_id = p->seq_id;
    c->layer = p->layer;
    c->head = p->head;
    c->max_tokens = budget ? 0 : p->max_tokens;
    c->budget_bytes = budget;
}

subkv_status rkv_csr_split(skv_config *cfg, size_t fixed, size_t row, skv_err *err) {
    skv_config c, sc;
    skv_err inner = {0};
    size_t rest = 0;
    if (cfg->budget_bytes) SKV_CHECK(skv_rkv_split_partial(cfg, fixed, row, &rest, err));
    rkv_csr_config(cfg, rest, &c);
    if (cfg->budget_bytes && rest < skv_sketch_base_bytes())
        return skv_set_error(err, SKV_ERR_BUDGET,
                             "budget %zu B leaves %zu B for the csr store after %d partial tokens",
                             cfg->budget_bytes, rest, cfg->partial_tokens);
    const subkv_status st = skv_config_resolve(&c, &sc, &inner);
    if (st != SKV_OK) return skv_set_error(err, st, "refreshkv csr store: %s", inner.msg);
    cfg->max_tokens = sc.max_tokens;
    cfg->atoms = sc.atoms;
    return SKV_OK;
}

/* Streaming max-pool (window pool, odd) and top-K over tokens in position order. */
typedef struct csr_pool {
    float ring[1024]; /* the last `pool` probabilities: token t at t % pool (pool <= 1023) */
    size_t pool, half;
    uint64_t n; /* tokens in all */
    rkv_impl *im;
    size_t kept; /* heap fill */
} csr_pool;

/* Token i's pooled score (every probability of [i - half, min(i + half, n - 1)] is in the
 * ring), offered to the top-K heap. */
static void pool_emit(csr_pool *p, uint64_t i) {
    const uint64_t lo = i > p->half ? i - p->half : 0,
                   hi = i + p->half < p->n ? i + p->half : p->n - 1;
    float m = p->ring[lo % p->pool];
    for (uint64_t j = lo + 1; j <= hi; j++)
        if (p->ring[j % p->pool] > m) m = p->ring[j % p->pool];
    rkv_top_offer(p->im->sel_score, p->im->sel_pos, &p->kept, p->im->pcap, (double)m, i);
}

static int pos_row_cmp(const void *a, const void *b) {
    const uint64_t x = ((const skv_rkv_pos_row *)a)->pos, y = ((const skv_rkv_pos_row *)b)->pos;
    return (x > y) - (x < y);
}

/* The old partial row holding token pos (sorted[n] by position), or SKV_RKV_NO_ROW. */
static uint32_t old_row(const skv_rkv_pos_row *sorted, size_t n, uint64_t pos) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid].pos < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo].pos == pos ? sorted[lo].row : SKV_RKV_NO_ROW;
}

/* The partial cache becomes the m selected tokens (sel_pos, sel_score ascending): kept rows
 * move, the others come from the store (see the header comment). */
static void csr_place(rkv_impl *im, size_t m) {
    /* the old rows in use are physical rows [0, pn) (pn < pcap implies phead == 0) */
    for (size_t r = 0; r < im->pn; r++)
        im->sel_old[r] = (skv_rkv_pos_row){im->ppos[r], (uint32_t)r};
    qsort(im->sel_old, im->pn, sizeof *im->sel_old, pos_row_cmp);
    for (size_t r = 0; r < im->pcap; r++) im->perm[r] = SKV_RKV_NO_ROW;
    for (size_t i = 0; i < m; i++) {
        const uint32_t r = old_row(im->sel_old, im->pn, im->sel_pos[i]);
        if (r != SKV_RKV_NO_ROW) im->perm[r] = (uint32_t)i;
    }
    /* the lookups are done: sel_old[i].row now says whether selected token i had a row */
    for (size_t i = 0; i < m; i++) im->sel_old[i].row = SKV_RKV_NO_ROW;
    for (size_t r = 0; r < im->pn; r++)
        if (im->perm[r] != SKV_RKV_NO_ROW) im->sel_old[im->perm[r]].row = (uint32_t)r;
    skv_rkv_move_rows(&im->pk, &im->pv, im->perm, im->pcap);
    float k[SKV_MAX_HEAD_DIM], v[SKV_MAX_HEAD_DIM];
    for (size_t i = 0; i < m; i++) {
        if (im->sel_old[i].row == SKV_RKV_NO_ROW) {
            skv_csr_token(im->csr, im->sel_pos[i], k, v);
            skv_rows_put(&im->pk, i, k);
            skv_rows_put(&im->pv, i, v);
        }
        im->pscore[i] = im->sel_score[i];
        im->ppos[i] = im->sel_pos[i];
    }
    im->pn = m;
    im->phead = 0;
    im->layout++;
}

subkv_status rkv_csr_full_step(skv_sketch *s, rkv_impl *im, const float *Q, int g, skv_partial *out,
                               skv_err *err) {
    enum { BLOCK_FLOATS = 8192 };
    const int d = s->cfg.head_dim;
    SKV_CHECK(skv_sketch_attend(im->csr, Q, g, d, out, err)); /* the estimate is the output */
    const uint64_t n = s->tokens_seen;
    csr_pool p = {.pool = (size_t)s->cfg.pool_kernel,
                  .half = (size_t)s->cfg.pool_kernel / 2,
                  .n = n,
                  .im = im};
    /* keys in blocks, in position order, stored in the dtype as the attend saw them */
    float kb[BLOCK_FLOATS], k[SKV_MAX_HEAD_DIM], qs[SKV_MAX_HEAD_DIM];
    float dots[SKV_RKV_DOT_BLOCK], best[SKV_RKV_DOT_BLOCK];
    size_t rows = BLOCK_FLOATS / (size_t)d; /* f32 at most: 4 d bytes a row */
    if (rows > SKV_RKV_DOT_BLOCK) rows = SKV_RKV_DOT_BLOCK;
    skv_rows K = {s->cfg.dtype, d, rows, kb};
    const float scale = 1.0f / sqrtf((float)d);
    for (uint64_t t0 = 0; t0 < n; t0 += rows) {
        const size_t nb = n - t0 < rows ? (size_t)(n - t0) : rows;
        for (size_t i = 0; i < nb; i++) {
            skv_csr_token(im->csr, t0 + i, k, NULL);
            skv_rows_put(&K, i, k);
        }
        for (int h = 0; h < g; h++) {
            const skv_partial *ph = skv_partial_at(out, d, (size_t)h);
            for (int j = 0; j < d; j++) qs[j] = Q[(size_t)h * (size_t)d + (size_t)j] * scale;
            skv_rows_dot_block(&K, 0, nb, qs, dots);
            for (size_t i = 0; i < nb; i++) {
                float pr =
                    ph->l > 0.0f ? (float)(exp((double)dots[i] - (double)ph->m) / ph->l) : 0.0f;
                if (pr > 1.0f) pr = 1.0f;
                if (h == 0 || pr > best[i]) best[i] = pr;
            }
        }
        for (size_t i = 0; i < nb; i++) {
            const uint64_t t = t0 + i;
            p.ring[t % p.pool] = best[i];
            if (t >= p.half) pool_emit(&p, t - p.half);
        }
    }
    for (uint64_t i = n > p.half ? n - p.half : 0; i < n; i++) pool_emit(&p, i);
    rkv_top_sort(im->sel_score, im->sel_pos, p.kept, im->pcap);
    csr_place(im, p.kept);
    rkv_full_done(s, im, Q, g, skv_csr_read_bytes(im->csr));
    return SKV_OK;
}
