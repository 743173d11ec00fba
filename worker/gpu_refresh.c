/* gpu_refresh.c — see gpu_refresh.h. */
#include "gpu_refresh.h"

#include <stdlib.h>
#include <string.h>

/* Uploads of the full store go through the staging arena in pieces of at most this much, so
 * a long prefill neither pins gigabytes nor waits: the arena recycles when full. */
enum { RKV_UPLOAD_PIECE = 16 << 20 };

struct skv_rkv_mirror {
    void *k, *v;   /* device: cap rows each, rows [0, n) equal to the host store's */
    size_t n, cap; /* rows uploaded, rows allocated */
};

struct skv_rkv_gpu {
    void **scratch; /* device buffers of this request's full steps (scores, pooled) */
    size_t nscratch, scratch_cap;
    float *host; /* pinned: the request's pooled scores, downloaded */
    size_t host_cap;
    skv_cuda_pool_job *pj;
    size_t pj_cap;
    /* the selection on the device (the default): its jobs, and the downloaded tokens and
     * scores of this request's full steps (pinned), min(K, n) per full step in item order */
    skv_cuda_topk_job *tj;
    size_t tj_cap;
    uint32_t *hidx;
    float *hsc;
    size_t sel_cap;
    int cpu_select; /* skv_gpu_refresh_cpu_select: download pooled, select on the CPU */
};

void skv_rkv_mirror_free(skv_cuda_ctx *c, skv_rkv_mirror *f) {
    if (!f) return;
    skv_cuda_pool_free(c, f->k);
    skv_cuda_pool_free(c, f->v);
    free(f);
}

int skv_gpu_refresh_device(const skv_sketch *s, int g) {
    const skv_config *c = skv_sketch_config(s);
    return c->policy == SKV_POLICY_REFRESHKV && c->full_store == SKV_FULL_EXACT &&
           c->full_mem == SKV_FULL_MEM_DEVICE && skv_gpu_eligible(NULL, s, g);
}

static subkv_status rkv_state(skv_gpu *g, skv_err *err) {
    if (g->rkv) return SKV_OK;
    g->rkv = calloc(1, sizeof *g->rkv);
    return g->rkv ? SKV_OK : skv_set_error(err, SKV_ERR_NOMEM, "no memory for refreshkv state");
}

/* A pooled device buffer for this request only (returned by skv_gpu_refresh_end). */
static subkv_status scratch_alloc(skv_gpu *g, size_t bytes, float **p, skv_err *err) {
    struct skv_rkv_gpu *r = g->rkv;
    SKV_CHECK(
        skv_grow((void **)&r->scratch, &r->scratch_cap, r->nscratch + 1, sizeof(void *), err));
    void *d = NULL;
    SKV_CHECK(skv_cuda_pool_alloc(g->ctx, &d, bytes, err));
    r->scratch[r->nscratch++] = d;
    *p = d;
    return SKV_OK;
}

/* Bring te's full-store mirror up to the host store: upload the rows flushed since the last
 * time (the store only grows; anything else means a different store: start over). */
static subkv_status mirror_sync(skv_gpu *g, skv_table_entry *te, skv_rkv_mirror **out,
                                skv_err *err) {
    skv_rkv_mirror **slot = NULL;
    SKV_CHECK(skv_gpu_mirror_full(g, te, &slot, err));
    if (!*slot && !(*slot = calloc(1, sizeof **slot)))
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a full-store mirror");
    skv_rkv_mirror *f = *slot;
    const skv_rows *k = NULL, *v = NULL;
    size_t n = 0;
    skv_rkv_full_rows(te->sketch, &k, &v, &n);
    const skv_config *c = skv_sketch_config(te->sketch);
    const size_t rb = (size_t)c->head_dim * skv_dtype_size(c->dtype);
    if (n < f->n) f->n = 0;
    if (n > f->cap) { /* x1.5 like the host store; the uploaded rows are kept */
        size_t cap = f->cap ? f->cap : 1024;
        while (cap < n) cap += cap / 2;
        SKV_CHECK(skv_gpu_dev_grow(g->ctx, &f->k, f->n * rb, cap * rb, err));
        SKV_CHECK(skv_gpu_dev_grow(g->ctx, &f->v, f->n * rb, cap * rb, err));
        f->cap = cap;
    }
    const size_t piece = RKV_UPLOAD_PIECE / rb > 0 ? RKV_UPLOAD_PIECE / rb : 1;
    for (size_t r0 = f->n; r0 < n; r0 += piece) {
        const size_t rows = n - r0 < piece ? n - r0 : piece;
        SKV_CHECK(skv_gpu_stage_upload(g, (char *)f->k + r0 * rb, (const char *)k->data + r0 * rb,
                                       rows * rb, err));
        SKV_CHECK(skv_gpu_stage_upload(g, (char *)f->v + r0 * rb, (const char *)v->data + r0 * rb,
                                       rows * rb, err));
        f->n = r0 + rows; /* a failure later leaves the mirror honest about what it holds */
    }
    *out = f;
    return SKV_OK;
}

subkv_status skv_gpu_refresh_begin(skv_gpu *g, skv_gpu_item *it, int group, skv_err *err) {
    skv_sketch *s = it->entry->sketch;
    it->full = 0;
    it->dpool = it->hpool = NULL;
    SKV_CHECK(skv_sketch_check_attend(s, it->q, group, skv_sketch_config(s)->head_dim, err));
    int full = 0;
    SKV_CHECK(skv_rkv_plan(s, it->q, group, &full, err));
    if (!full) return SKV_OK;
    SKV_CHECK(rkv_state(g, err));
    skv_rkv_mirror *f = NULL;
    SKV_CHECK(mirror_sync(g, it->entry, &f, err));
    float *ds = NULL, *dp = NULL;
    SKV_CHECK(scratch_alloc(g, (size_t)group * f->n * sizeof(float), &ds, err));
    SKV_CHECK(scratch_alloc(g, f->n * sizeof(float), &dp, err));
    it->job = (skv_cuda_job){.k = f->k, .v = f->v, .n = f->n, .s = ds};
    it->dpool = dp;
    it->full = 1;
    return SKV_OK;
}

subkv_status skv_gpu_refresh_cpu_select(skv_gpu *g, int on, skv_err *err) {
    SKV_CHECK(rkv_state(g, err));
    g->rkv->cpu_select = on;
    return SKV_OK;
}

/* The tokens a full step of item it selects: min(K, its store's rows). */
static size_t sel_count(const skv_gpu_item *it) {
    skv_rkv_ring_view v;
    skv_rkv_ring(it->entry->sketch, &v);
    return it->job.n < v.pcap ? (size_t)it->job.n : v.pcap;
}

/* Grow a pinned host buffer (nothing queued reads or writes it: the last request synced). */
static subkv_status host_grow(void **p, size_t *cap, size_t need, size_t elem, skv_err *err) {
    if (need <= *cap) return SKV_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    void *q = NULL;
    SKV_CHECK(skv_cuda_host_alloc(&q, c * elem, err));
    skv_cuda_host_free(*p);
    *p = q;
    *cap = c;
    return SKV_OK;
}

/* The device selection: top K of each full step's pooled scores, the partial-cache mirror
 * gathered from the full-store mirror, and the K tokens and scores downloaded for the host's
 * copy (skv_gpu_refresh_apply). */
static subkv_status select_launch(skv_gpu *g, skv_gpu_item *items, size_t n, size_t nj,
                                  skv_err *err) {
    struct skv_rkv_gpu *r = g->rkv;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].full) total += sel_count(&items[i]);
    size_t cap = r->sel_cap;
    SKV_CHECK(host_grow((void **)&r->hidx, &cap, total, sizeof(uint32_t), err));
    cap = r->sel_cap;
    SKV_CHECK(host_grow((void **)&r->hsc, &cap, total, sizeof(float), err));
    r->sel_cap = cap;
    SKV_CHECK(skv_grow((void **)&r->tj, &r->tj_cap, nj, sizeof *r->tj, err));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        skv_gpu_item *it = &items[i];
        if (!it->full) continue;
        const size_t m = sel_count(it);
        const skv_config *c = skv_sketch_config(it->entry->sketch);
        void *pk = NULL, *pv = NULL;
        SKV_CHECK(skv_gpu_ring_target(g, it->entry, &pk, &pv, err));
        float *sel = NULL; /* m tokens then m scores */
        SKV_CHECK(scratch_alloc(g, 2 * m * sizeof(float), &sel, err));
        skv_cuda_topk_job *tj = &r->tj[k++];
        *tj = (skv_cuda_topk_job){.pooled = it->dpool,
                                  .n = it->job.n,
                                  .k = (uint32_t)m,
                                  .row_bytes =
                                      (uint32_t)((size_t)c->head_dim * skv_dtype_size(c->dtype)),
                                  .idx = (uint32_t *)(void *)sel, /* the index half */
                                  .score = sel + m,
                                  .fk = it->job.k,
                                  .fv = it->job.v,
                                  .pk = pk,
                                  .pv = pv};
    }
    SKV_CHECK(skv_cuda_rkv_topk(g->ctx, r->tj, (int)nj, err));
    size_t at = 0;
    for (size_t i = 0; i < nj; i++) {
        const skv_cuda_topk_job *t = &r->tj[i];
        if (!t->k) continue;
        SKV_CHECK(
            skv_cuda_download_async(g->ctx, r->hidx + at, t->idx, t->k * sizeof(uint32_t), err));
        SKV_CHECK(
            skv_cuda_download_async(g->ctx, r->hsc + at, t->score, t->k * sizeof(float), err));
        at += t->k;
    }
    return SKV_OK;
}

subkv_status skv_gpu_refresh_launch(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                                    const float *dout, size_t on, skv_err *err) {
    size_t total = 0, nj = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].full) total += items[i].job.n, nj++;
    if (!nj) return SKV_OK;
    struct skv_rkv_gpu *r = g->rkv; /* made by the begin that set a full item */
    if (r->cpu_select &&
        total > r->host_cap) { /* nothing queued uses it: the last request synced */
        size_t cap = r->host_cap ? r->host_cap : 4096;
        while (cap < total) cap *= 2;
        void *p = NULL;
        SKV_CHECK(skv_cuda_host_alloc(&p, cap * sizeof(float), err));
        skv_cuda_host_free(r->host);
        r->host = p;
        r->host_cap = cap;
    }
    SKV_CHECK(skv_grow((void **)&r->pj, &r->pj_cap, nj, sizeof *r->pj, err));
    size_t at = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        skv_gpu_item *it = &items[i];
        if (!it->full) continue;
        r->pj[k++] = (skv_cuda_pool_job){.s = it->job.s,
                                         .part = dout + i * on,
                                         .pooled = it->dpool,
                                         .n = it->job.n,
                                         .pool = skv_sketch_config(it->entry->sketch)->pool_kernel};
        /* NULL with the device selection, or when every n is 0 */
        it->hpool = r->cpu_select && r->host ? r->host + at : NULL;
        at += it->job.n;
    }
    SKV_CHECK(skv_cuda_rkv_pool(g->ctx, r->pj, (int)nj, d, group, err));
    if (!r->cpu_select) return select_launch(g, items, n, nj, err);
    for (size_t i = 0; i < n; i++)
        if (items[i].full && items[i].job.n)
            SKV_CHECK(skv_cuda_download_async(g->ctx, items[i].hpool, items[i].dpool,
                                              items[i].job.n * sizeof(float), err));
    return SKV_OK;
}

subkv_status skv_gpu_refresh_apply(skv_gpu *g, skv_gpu_item *items, size_t n, int group,
                                   skv_err *err) {
    if (g->rkv && !g->rkv->cpu_select) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            skv_gpu_item *it = &items[i];
            if (!it->full) continue;
            const size_t m = sel_count(it);
            SKV_CHECK(skv_rkv_apply_indices(it->entry->sketch, it->q, group,
                                            m ? g->rkv->hidx + at : NULL,
                                            m ? g->rkv->hsc + at : NULL, m, err));
            skv_gpu_ring_current(it->entry); /* the gather left the mirror as the host ring */
            at += m;
        }
        return SKV_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i].full)
            SKV_CHECK(skv_rkv_apply(items[i].entry->sketch, items[i].q, group, items[i].hpool,
                                    items[i].job.n, err));
    return SKV_OK;
}

void skv_gpu_refresh_end(skv_gpu *g) {
    struct skv_rkv_gpu *r = g->rkv;
    if (!r) return;
    for (size_t i = 0; i < r->nscratch; i++) skv_cuda_pool_free(g->ctx, r->scratch[i]);
    r->nscratch = 0;
}

void skv_gpu_refresh_fini(skv_gpu *g) {
    struct skv_rkv_gpu *r = g->rkv;
    if (!r) return;
    skv_gpu_refresh_end(g);
    free(r->scratch);
    skv_cuda_host_free(r->host);
    skv_cuda_host_free(r->hidx);
    skv_cuda_host_free(r->hsc);
    free(r->pj);
    free(r->tj);
    free(r);
    g->rkv = NULL;
}
