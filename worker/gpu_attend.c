/* gpu_attend.c — see gpu_attend.h. */
#include "gpu_attend.h"

#include <math.h>
#include <stdlib.h>

struct skv_mirror {
    void *k, *v;
    float *a, *b;
    size_t n, cap;    /* entries uploaded, rows allocated */
    uint64_t version; /* tokens_seen + full_steps of the sketch when uploaded */
    skv_dtype dtype;
};

void skv_mirror_free(skv_mirror *m) {
    if (!m) return;
    skv_cuda_free(m->k);
    skv_cuda_free(m->v);
    skv_cuda_free(m->a);
    skv_cuda_free(m->b);
    free(m);
}

subkv_status skv_gpu_init(skv_gpu *g, skv_err *err) {
    memset(g, 0, sizeof *g);
    return skv_cuda_ctx_create(&g->ctx, err);
}

void skv_gpu_fini(skv_gpu *g) {
    skv_cuda_ctx_destroy(g->ctx);
    skv_cuda_free(g->dq);
    skv_cuda_free(g->dout);
    free(g->hq);
    free(g->jobs);
    skv_entries_free(&g->e);
    skv_cuda_host_free(g->stage);
    memset(g, 0, sizeof *g);
}

int skv_gpu_eligible(const skv_sketch *s, int g) {
    const skv_config *c = skv_sketch_config(s);
    /* h2o's attend updates eviction scores over every entry: all CPU. refreshkv runs its
     * full steps on the CPU (skv_sketch_attend_begin) and its partial steps here. */
    return c->policy != SKV_POLICY_H2O &&
           (c->dtype == SKV_DTYPE_F16 || c->dtype == SKV_DTYPE_BF16) &&
           (c->head_dim == 64 || c->head_dim == 128) && (g == 1 || g == 2 || g == 4 || g == 8);
}

/* Grow a device buffer, keeping its first `keep` bytes. */
static subkv_status dev_grow(void **p, size_t keep, size_t bytes, skv_err *err) {
    void *n = NULL;
    SKV_CHECK(skv_cuda_malloc(&n, bytes, err));
    if (keep && *p) {
        subkv_status st = skv_cuda_copy(n, *p, keep, err);
        if (st != SKV_OK) {
            skv_cuda_free(n);
            return st;
        }
    }
    skv_cuda_free(*p);
    *p = n;
    return SKV_OK;
}

static subkv_status dev_buf(float **p, size_t *cap, size_t need, skv_err *err) {
    if (need <= *cap) return SKV_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    SKV_CHECK(dev_grow((void **)p, 0, c * sizeof(float), err));
    *cap = c;
    return SKV_OK;
}

/*
 * Room for `bytes` more in the pinned staging arena of this request. Copies already queued
 * read from the arena, so it only grows after the stream has drained (rare once warm).
 */
static subkv_status stage_take(skv_gpu *g, size_t bytes, void **at, skv_err *err) {
    bytes = (bytes + 255) & ~(size_t)255;
    if (g->stage_used + bytes > g->stage_cap) {
        SKV_CHECK(skv_cuda_sync(g->ctx, err));
        size_t cap = g->stage_cap ? g->stage_cap : (1u << 20);
        while (cap < g->stage_used + bytes) cap *= 2;
        void *p = NULL;
        SKV_CHECK(skv_cuda_host_alloc(&p, cap, err));
        skv_cuda_host_free(g->stage); /* drained: nothing reads it any more */
        g->stage = p;
        g->stage_cap = cap;
        g->stage_used = 0; /* earlier copies are done: the arena restarts */
    }
    *at = (char *)g->stage + g->stage_used;
    g->stage_used += bytes;
    return SKV_OK;
}

/* Queue an upload of host[bytes] to dst through the staging arena. */
static subkv_status stage_upload(skv_gpu *g, void *dst, const void *host, size_t bytes,
                                 skv_err *err) {
    void *at;
    SKV_CHECK(stage_take(g, bytes, &at, err));
    memcpy(at, host, bytes);
    return skv_cuda_upload_async(g->ctx, dst, at, bytes, err);
}

/* Bring an entry's mirror up to date with its sketch. */
static subkv_status mirror_refresh(skv_gpu *g, skv_table_entry *te, skv_err *err) {
    skv_stats st;
    skv_sketch_stats(te->sketch, &st);
    const skv_config *c = skv_sketch_config(te->sketch);
    skv_mirror *m = te->mirror;
    /* entries change only with tokens_seen or (refreshkv) a full step; both only grow, so
     * their sum changes whenever either does */
    const uint64_t version = st.tokens_seen + st.full_steps;
    if (m && m->version == version) return SKV_OK;
    if (!m) {
        m = te->mirror = calloc(1, sizeof *m);
        if (!m) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a GPU mirror");
        m->dtype = c->dtype;
    }
    /* an exact cache only grows: upload its new tail; anything else changes in place */
    const size_t first = c->policy == SKV_POLICY_EXACT ? m->n : 0;
    SKV_CHECK(skv_sketch_entries_from(te->sketch, &g->e, first, err));
    const size_t total = first + g->e.n, rb = (size_t)c->head_dim * skv_dtype_size(c->dtype);
    const int weighted = c->policy == SKV_POLICY_SUBGEN;
    if (total > m->cap) {
        size_t cap = m->cap ? m->cap : 1024;
        while (cap < total) cap += cap / 2;
        SKV_CHECK(dev_grow(&m->k, first * rb, cap * rb, err));
        SKV_CHECK(dev_grow(&m->v, first * rb, cap * rb, err));
        if (weighted) {
            SKV_CHECK(dev_grow((void **)&m->a, 0, cap * sizeof(float), err));
            SKV_CHECK(dev_grow((void **)&m->b, 0, cap * sizeof(float), err));
        }
        m->cap = cap;
    }
    if (g->e.n) { /* queued on the stream: no host round trip until the request's sync */
        SKV_CHECK(stage_upload(g, (char *)m->k + first * rb, g->e.k, g->e.n * rb, err));
        SKV_CHECK(stage_upload(g, (char *)m->v + first * rb, g->e.v, g->e.n * rb, err));
        if (weighted) {
            SKV_CHECK(stage_upload(g, m->a, g->e.a, g->e.n * sizeof(float), err));
            SKV_CHECK(stage_upload(g, m->b, g->e.b, g->e.n * sizeof(float), err));
        }
    }
    m->n = total;
    m->version = version;
    return SKV_OK;
}

subkv_status skv_gpu_attend(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                            skv_err *err) {
    if (n == 0) return SKV_OK;
    const size_t qn = (size_t)group * d, on = (size_t)group * (d + 2);
    SKV_CHECK(skv_grow((void **)&g->hq, &g->hq_cap, n * qn, sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&g->jobs, &g->jobs_cap, n, sizeof(skv_cuda_job), err));
    SKV_CHECK(dev_buf(&g->dq, &g->dq_cap, n * qn, err));
    SKV_CHECK(dev_buf(&g->dout, &g->dout_cap, n * on, err));
    const float scale = 1.0f / sqrtf((float)d); /* as skv_sketch_attend scales */
    g->stage_used = 0;
    for (size_t i = 0; i < n; i++) {
        SKV_CHECK(mirror_refresh(g, items[i].entry, err));
        for (size_t j = 0; j < qn; j++) g->hq[i * qn + j] = items[i].q[j] * scale;
    }
    SKV_CHECK(stage_upload(g, g->dq, g->hq, n * qn * sizeof(float), err));
    for (int dt = SKV_DTYPE_F16; dt <= SKV_DTYPE_BF16; dt++) { /* one launch per storage type */
        size_t nj = 0;
        for (size_t i = 0; i < n; i++) {
            const skv_mirror *m = items[i].entry->mirror;
            if ((int)m->dtype != dt) continue;
            g->jobs[nj++] =
                (skv_cuda_job){m->k, m->v, m->a, m->b, m->n, g->dq + i * qn, g->dout + i * on};
        }
        if (nj)
            SKV_CHECK(skv_cuda_attend(g->ctx, g->jobs, (int)nj, d, group, (skv_dtype)dt, 0, err));
    }
    SKV_CHECK(skv_cuda_sync(g->ctx, err));
    /* the query staging, grown if need be, takes the partials back */
    SKV_CHECK(skv_grow((void **)&g->hq, &g->hq_cap, n * on, sizeof(float), err));
    SKV_CHECK(skv_cuda_download(g->hq, g->dout, n * on * sizeof(float), err));
    for (size_t i = 0; i < n; i++) memcpy(items[i].out, g->hq + i * on, on * sizeof(float));
    return SKV_OK;
}
