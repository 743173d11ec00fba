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
           c->full_mem == SKV_FULL_MEM_DEVICE && skv_gpu_eligible(s, g);
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

subkv_status skv_gpu_refresh_launch(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                                    const float *dout, size_t on, skv_err *err) {
    size_t total = 0, nj = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].full) total += items[i].job.n, nj++;
    if (!nj) return SKV_OK;
    struct skv_rkv_gpu *r = g->rkv; /* made by the begin that set a full item */
    if (total > r->host_cap) {      /* no download into it is queued: the last request synced */
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
        it->hpool = r->host ? r->host + at : NULL; /* NULL only when every n is 0 */
        at += it->job.n;
    }
    SKV_CHECK(skv_cuda_rkv_pool(g->ctx, r->pj, (int)nj, d, group, err));
    for (size_t i = 0; i < n; i++)
        if (items[i].full && items[i].job.n)
            SKV_CHECK(skv_cuda_download_async(g->ctx, items[i].hpool, items[i].dpool,
                                              items[i].job.n * sizeof(float), err));
    return SKV_OK;
}

subkv_status skv_gpu_refresh_apply(skv_gpu *g, skv_gpu_item *items, size_t n, int group,
                                   skv_err *err) {
    (void)g;
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
    free(r->pj);
    free(r);
    g->rkv = NULL;
}
