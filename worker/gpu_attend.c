/* gpu_attend.c — see gpu_attend.h. */
#include "gpu_attend.h"
#include "gpu_refresh.h"
#include "gpu_csr.h"

#include <math.h>
#include <stdlib.h>

struct skv_mirror {
    skv_cuda_ctx *ctx; /* whose pool the buffers come from */
    /* mirrored sketches (exact, sinkwin) */
    void *k, *v;
    float *a, *b;
    size_t n, cap;    /* entries uploaded, rows allocated */
    uint64_t version; /* tokens_seen + full_steps of the sketch when uploaded */
    skv_dtype dtype;
    /* resident sketches (subgen): the device image; stale = the CPU shadow is behind it */
    skv_dsub *dsub;
    int stale;
    struct skv_rkv_mirror *full; /* refreshkv, full_mem = device: its full store (gpu_refresh.c) */
    /* refreshkv: the partial cache's ring as last uploaded (skv_rkv_ring_view counters) */
    uint64_t pushes, layout;
    int ring_ok;
    skv_csr_mirror *csr; /* csr: codes and exact rows (worker/gpu_csr.c) */
};

void skv_mirror_free(skv_mirror *m) {
    if (!m) return;
    skv_cuda_pool_free(m->ctx, m->k);
    skv_cuda_pool_free(m->ctx, m->v);
    skv_cuda_pool_free(m->ctx, m->a);
    skv_cuda_pool_free(m->ctx, m->b);
    skv_dsub_destroy(m->ctx, m->dsub);
    skv_rkv_mirror_free(m->ctx, m->full);
    skv_gpu_csr_mirror_free(m->ctx, m->csr);
    free(m);
}

subkv_status skv_gpu_init(skv_gpu *g, size_t reserve, skv_err *err) {
    memset(g, 0, sizeof *g);
    SKV_CHECK(skv_cuda_ctx_create(&g->ctx, err));
    subkv_status st = skv_cuda_pool_reserve(g->ctx, reserve, err);
    if (st != SKV_OK) {
        skv_cuda_ctx_destroy(g->ctx);
        g->ctx = NULL;
    }
    return st;
}

void skv_gpu_fini(skv_gpu *g) {
    skv_gpu_refresh_fini(g);
    if (g->ctx) {
        skv_cuda_pool_free(g->ctx, g->dq);
        skv_cuda_pool_free(g->ctx, g->dout);
        skv_cuda_pool_free(g->ctx, g->dkv);
        skv_gpu_csr_fini(g);
    }
    skv_cuda_ctx_destroy(g->ctx);
    free(g->hq);
    free(g->jobs);
    free(g->ops);
    free(g->op_src);
    skv_entries_free(&g->e);
    skv_cuda_host_free(g->stage);
    memset(g, 0, sizeof *g);
}

size_t skv_gpu_reserved(const skv_gpu *g) { return g->ctx ? skv_cuda_pool_reserved(g->ctx) : 0; }

int skv_gpu_resident(const skv_sketch *s) { return skv_dsub_eligible(s); }

int skv_gpu_eligible(skv_gpu *gpu, const skv_sketch *s, int g) {
    const skv_config *c = skv_sketch_config(s);
    /* h2o's attend updates eviction scores over every entry: all CPU. refreshkv runs its
     * full steps on the CPU (skv_sketch_attend_begin) and its partial steps here; with
     * full_mem = device its full steps too (gpu_refresh.c). csr attends its codes
     * (post-rotary ones only: gpu_csr.h). */
    return c->policy != SKV_POLICY_H2O &&
           (c->dtype == SKV_DTYPE_F16 || c->dtype == SKV_DTYPE_BF16) &&
           (c->head_dim == 64 || c->head_dim == 128) &&
           (g == 1 || g == 2 || g == 3 || g == 4 || g == 8) &&
           (c->policy != SKV_POLICY_CSR || skv_gpu_csr_eligible(gpu, s));
}

/* Grow a pooled device buffer to `bytes`, keeping its first `keep` bytes (stream-ordered). */
static subkv_status dev_grow(skv_cuda_ctx *c, void **p, size_t keep, size_t bytes, skv_err *err) {
    void *n = NULL;
    SKV_CHECK(skv_cuda_pool_alloc(c, &n, bytes, err));
    if (keep && *p) {
        subkv_status st = skv_cuda_copy_async(c, n, *p, keep, err);
        if (st != SKV_OK) {
            skv_cuda_pool_free(c, n);
            return st;
        }
    }
    skv_cuda_pool_free(c, *p);
    *p = n;
    return SKV_OK;
}

static subkv_status dev_buf(skv_cuda_ctx *c, float **p, size_t *cap, size_t need, skv_err *err) {
    if (need <= *cap) return SKV_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    SKV_CHECK(dev_grow(c, (void **)p, 0, n * sizeof(float), err));
    *cap = n;
    return SKV_OK;
}

/*
 * Room for `bytes` more in the pinned staging arena of this request. Copies already queued
 * read from the arena, so it only grows after the stream has drained (rare once warm); it
 * restarts empty after each request's sync.
 */
static subkv_status stage_take(skv_gpu *g, size_t bytes, void **at, skv_err *err) {
    bytes = (bytes + 255) & ~(size_t)255;
    if (g->stage_used + bytes > g->stage_cap) {
        SKV_CHECK(skv_cuda_sync(g->ctx, err));
        size_t cap = g->stage_cap ? g->stage_cap : (1u << 20);
        while (cap < bytes) cap *= 2;
        if (cap > g->stage_cap) {
            void *p = NULL;
            SKV_CHECK(skv_cuda_host_alloc(&p, cap, err));
            skv_cuda_host_free(g->stage); /* drained: nothing reads it any more */
            g->stage = p;
            g->stage_cap = cap;
        }
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

static subkv_status mirror_get(skv_gpu *g, skv_table_entry *te, skv_err *err) {
    if (te->mirror) return SKV_OK;
    skv_mirror *m = calloc(1, sizeof *m);
    if (!m) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a GPU mirror");
    m->ctx = g->ctx;
    m->dtype = skv_sketch_config(te->sketch)->dtype;
    if (skv_gpu_resident(te->sketch)) { /* its state moves to the device, as it is now */
        subkv_status st = skv_dsub_create(g->ctx, te->sketch, &m->dsub, err);
        if (st != SKV_OK) {
            free(m);
            return st;
        }
    }
    te->mirror = m;
    return SKV_OK;
}

/* Queue the upload of rows [first, first + n) of k and v (row bytes rb) to the same rows of
 * the mirror. */
static subkv_status upload_rows(skv_gpu *g, skv_mirror *m, const skv_rows *k, const skv_rows *v,
                                size_t first, size_t n, size_t rb, skv_err *err) {
    if (!n) return SKV_OK;
    SKV_CHECK(stage_upload(g, (char *)m->k + first * rb, (const char *)k->data + first * rb, n * rb,
                           err));
    return stage_upload(g, (char *)m->v + first * rb, (const char *)v->data + first * rb, n * rb,
                        err);
}

/* The ring mirror's rows: once, the ring's fixed capacity. */
static subkv_status ring_room(skv_gpu *g, skv_mirror *m, size_t pcap, size_t rb, skv_err *err) {
    if (m->cap >= pcap) return SKV_OK;
    m->ring_ok = 0;
    SKV_CHECK(dev_grow(g->ctx, &m->k, 0, pcap * rb, err));
    SKV_CHECK(dev_grow(g->ctx, &m->v, 0, pcap * rb, err));
    m->cap = pcap;
    return SKV_OK;
}

/*
 * refreshkv's partial cache, mirrored in its ring's physical order (attention over a set of
 * rows does not depend on their order): after partial steps only the rows pushed since the
 * last upload travel — one per decode step and sketch — instead of all K rows each step; a
 * selection (or a load) rearranges the ring and uploads it whole.
 */
static subkv_status mirror_ring(skv_gpu *g, skv_table_entry *te, skv_err *err) {
    skv_mirror *m = te->mirror;
    skv_rkv_ring_view r;
    skv_rkv_ring(te->sketch, &r);
    const skv_config *c = skv_sketch_config(te->sketch);
    const size_t rb = (size_t)c->head_dim * skv_dtype_size(c->dtype);
    SKV_CHECK(ring_room(g, m, r.pcap, rb, err));
    const uint64_t delta = r.pushes - m->pushes;
    if (!m->ring_ok || m->layout != r.layout || delta >= r.pcap) {
        /* the whole ring from the host rows: a deferred install (skv_rkv_apply_indices) is
         * copied in first; after a device selection the mirror is current (the gather) and
         * only pushed rows travel below, which are never pending */
        skv_rkv_materialize(te->sketch);
        SKV_CHECK(upload_rows(g, m, r.k, r.v, 0, r.pn, rb, err));
    } else if (delta) { /* rows next - delta .. next - 1, wrapping at pcap */
        const size_t first = (r.next + r.pcap - (size_t)delta) % r.pcap;
        const size_t n1 = first + (size_t)delta <= r.pcap ? (size_t)delta : r.pcap - first;
        SKV_CHECK(upload_rows(g, m, r.k, r.v, first, n1, rb, err));
        SKV_CHECK(upload_rows(g, m, r.k, r.v, 0, (size_t)delta - n1, rb, err));
    }
    m->n = r.pn;
    m->pushes = r.pushes;
    m->layout = r.layout;
    m->ring_ok = 1;
    return SKV_OK;
}

/* Bring a mirrored sketch's entries on the device up to date. */
static subkv_status mirror_refresh(skv_gpu *g, skv_table_entry *te, skv_err *err) {
    SKV_CHECK(mirror_get(g, te, err));
    skv_mirror *m = te->mirror;
    if (m->dsub) return SKV_OK; /* resident: the image is the state */
    if (skv_sketch_config(te->sketch)->policy == SKV_POLICY_REFRESHKV)
        return mirror_ring(g, te, err);
    if (skv_sketch_config(te->sketch)->policy == SKV_POLICY_CSR) /* eligible: codes on the GPU */
        return skv_gpu_csr_refresh(g, te->sketch, &m->csr, err);
    skv_stats st;
    skv_sketch_stats(te->sketch, &st);
    const skv_config *c = skv_sketch_config(te->sketch);
    /* entries change only with tokens_seen or (refreshkv) a full step; both only grow, so
     * their sum changes whenever either does */
    const uint64_t version = st.tokens_seen + st.full_steps;
    if (m->cap && m->version == version) return SKV_OK;
    /* an exact cache only grows: upload its new tail; anything else changes in place */
    const size_t first = c->policy == SKV_POLICY_EXACT ? m->n : 0;
    SKV_CHECK(skv_sketch_entries_from(te->sketch, &g->e, first, err));
    const size_t total = first + g->e.n, rb = (size_t)c->head_dim * skv_dtype_size(c->dtype);
    const int weighted = c->policy != SKV_POLICY_EXACT && c->policy != SKV_POLICY_SINKWIN;
    if (total > m->cap || !m->cap) {
        size_t cap = m->cap ? m->cap : 1024;
        while (cap < total) cap += cap / 2;
        SKV_CHECK(dev_grow(g->ctx, &m->k, first * rb, cap * rb, err));
        SKV_CHECK(dev_grow(g->ctx, &m->v, first * rb, cap * rb, err));
        if (weighted) {
            SKV_CHECK(dev_grow(g->ctx, (void **)&m->a, 0, cap * sizeof(float), err));
            SKV_CHECK(dev_grow(g->ctx, (void **)&m->b, 0, cap * sizeof(float), err));
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

subkv_status skv_gpu_append(skv_gpu *g, skv_table_entry *te, const float *K, const float *V,
                            size_t n, skv_err *err) {
    if (n > UINT32_MAX) return skv_set_error(err, SKV_ERR_INVALID_ARG, "too many tokens");
    SKV_CHECK(mirror_get(g, te, err));
    skv_mirror *m = te->mirror;
    if (!m->dsub) return skv_set_error(err, SKV_ERR_INTERNAL, "sketch is not GPU-resident");
    SKV_CHECK(skv_grow((void **)&g->ops, &g->ops_cap, g->nops + 1, sizeof *g->ops, err));
    SKV_CHECK(
        skv_grow((void **)&g->op_src, &g->op_src_cap, 2 * (g->nops + 1), sizeof *g->op_src, err));
    const size_t d = (size_t)skv_dsub_descriptor(m->dsub)->d;
    /* k and v hold offsets into the request's K/V buffer until skv_gpu_flush places it */
    g->ops[g->nops] = (skv_dsub_op){.desc = *skv_dsub_descriptor(m->dsub),
                                    .k = (const float *)(uintptr_t)g->kv_floats,
                                    .v = (const float *)(uintptr_t)(g->kv_floats + n * d),
                                    .n = (uint32_t)n};
    g->op_src[2 * g->nops] = K;
    g->op_src[2 * g->nops + 1] = V;
    g->nops++;
    g->kv_floats += 2 * n * d;
    m->stale = 1;
    return SKV_OK;
}

void skv_gpu_discard(skv_gpu *g) {
    g->nops = 0;
    g->kv_floats = 0;
}

subkv_status skv_gpu_launch_appends(skv_gpu *g, skv_err *err) {
    if (!g->nops) return SKV_OK;
    SKV_CHECK(dev_buf(g->ctx, &g->dkv, &g->dkv_cap, g->kv_floats, err));
    for (size_t i = 0; i < g->nops; i++) {
        skv_dsub_op *op = &g->ops[i];
        const size_t off_k = (size_t)(uintptr_t)op->k, off_v = (size_t)(uintptr_t)op->v;
        const size_t bytes = (size_t)op->n * (size_t)op->desc.d * sizeof(float);
        SKV_CHECK(stage_upload(g, g->dkv + off_k, g->op_src[2 * i], bytes, err));
        SKV_CHECK(stage_upload(g, g->dkv + off_v, g->op_src[2 * i + 1], bytes, err));
        op->k = g->dkv + off_k;
        op->v = g->dkv + off_v;
    }
    subkv_status st = skv_dsub_launch(g->ctx, g->ops, (int)g->nops, err);
    skv_gpu_discard(g); /* launched (or failed): the queue is empty */
    return st;
}

static subkv_status attend_items(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                                 skv_err *err) {
    const size_t qn = (size_t)group * d, on = (size_t)group * (d + 2);
    SKV_CHECK(skv_grow((void **)&g->hq, &g->hq_cap, n * (qn > on ? qn : on), sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&g->jobs, &g->jobs_cap, n, sizeof(skv_cuda_job), err));
    SKV_CHECK(dev_buf(g->ctx, &g->dq, &g->dq_cap, n * qn, err));
    SKV_CHECK(dev_buf(g->ctx, &g->dout, &g->dout_cap, n * on, err));
    const float scale = 1.0f / sqrtf((float)d); /* as skv_sketch_attend scales */
    for (size_t i = 0; i < n; i++) {
        if (!items[i].full) /* a refreshkv full step reads its full-store mirror instead */
            SKV_CHECK(mirror_refresh(g, items[i].entry, err));
        for (size_t j = 0; j < qn; j++) g->hq[i * qn + j] = items[i].q[j] * scale;
    }
    SKV_CHECK(stage_upload(g, g->dq, g->hq, n * qn * sizeof(float), err));
    for (int dt = SKV_DTYPE_F16; dt <= SKV_DTYPE_BF16; dt++) { /* one launch per storage type */
        size_t nj = 0;
        for (size_t i = 0; i < n; i++) {
            if ((int)skv_sketch_config(items[i].entry->sketch)->dtype != dt) continue;
            const skv_mirror *m = items[i].entry->mirror;
            skv_cuda_job job = {0};
            if (items[i].full)
                job = items[i].job;
            else
                job = (skv_cuda_job){.k = m->k, .v = m->v, .a = m->a, .b = m->b, .n = m->n};
            if (!items[i].full && m->dsub) skv_dsub_job(m->dsub, &job);
            if (!items[i].full && m->csr) skv_gpu_csr_exact_job(m->csr, &job);
            job.q = g->dq + i * qn;
            job.out = g->dout + i * on;
            g->jobs[nj++] = job;
        }
        if (nj)
            SKV_CHECK(skv_cuda_attend(g->ctx, g->jobs, (int)nj, d, group, (skv_dtype)dt, 0, err));
    }
    SKV_CHECK(skv_gpu_refresh_launch(g, items, n, d, group, g->dout, on, err));
    SKV_CHECK(skv_gpu_csr_launch(g, items, n, d, group, err)); /* csr items' coded parts */
    SKV_CHECK(skv_cuda_sync(g->ctx, err));
    SKV_CHECK(skv_cuda_download(g->hq, g->dout, n * on * sizeof(float), err));
    for (size_t i = 0; i < n; i++) memcpy(items[i].out, g->hq + i * on, on * sizeof(float));
    skv_gpu_csr_merge(g, items, d, group);
    return skv_gpu_refresh_apply(g, items, n, group, err);
}

subkv_status skv_gpu_finish(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                            skv_err *err) {
    subkv_status st = n ? attend_items(g, items, n, d, group, err) : skv_cuda_sync(g->ctx, err);
    if (st == SKV_OK) g->stage_used = 0; /* drained */
    return st;
}

subkv_status skv_gpu_stage_upload(skv_gpu *g, void *dst, const void *host, size_t bytes,
                                  skv_err *err) {
    return stage_upload(g, dst, host, bytes, err);
}

subkv_status skv_gpu_dev_grow(skv_cuda_ctx *c, void **p, size_t keep, size_t bytes, skv_err *err) {
    return dev_grow(c, p, keep, bytes, err);
}

subkv_status skv_gpu_mirror_full(skv_gpu *g, skv_table_entry *te, struct skv_rkv_mirror ***slot,
                                 skv_err *err) {
    SKV_CHECK(mirror_get(g, te, err));
    *slot = &te->mirror->full;
    return SKV_OK;
}

subkv_status skv_gpu_mirror_csr(skv_gpu *g, skv_table_entry *te, skv_csr_mirror ***slot,
                                skv_err *err) {
    SKV_CHECK(mirror_get(g, te, err));
    *slot = &te->mirror->csr;
    return SKV_OK;
}

subkv_status skv_gpu_ring_target(skv_gpu *g, skv_table_entry *te, void **k, void **v,
                                 skv_err *err) {
    SKV_CHECK(mirror_get(g, te, err));
    skv_mirror *m = te->mirror;
    skv_rkv_ring_view r;
    skv_rkv_ring(te->sketch, &r);
    const skv_config *c = skv_sketch_config(te->sketch);
    SKV_CHECK(ring_room(g, m, r.pcap, (size_t)c->head_dim * skv_dtype_size(c->dtype), err));
    m->ring_ok = 0; /* being rewritten: a full upload next, unless skv_gpu_ring_current */
    *k = m->k;
    *v = m->v;
    return SKV_OK;
}

void skv_gpu_ring_current(skv_table_entry *te) {
    skv_mirror *m = te->mirror;
    skv_rkv_ring_view r;
    skv_rkv_ring(te->sketch, &r);
    m->n = r.pn;
    m->pushes = r.pushes;
    m->layout = r.layout;
    m->ring_ok = 1;
}

subkv_status skv_gpu_pull(skv_gpu *g, skv_table_entry *te, skv_err *err) {
    skv_mirror *m = te->mirror;
    if (!m || !m->dsub || !m->stale) return SKV_OK;
    SKV_CHECK(skv_dsub_pull(g->ctx, m->dsub, te->sketch, err));
    m->stale = 0;
    return SKV_OK;
}

skv_csr_mirror *skv_mirror_csr(const skv_mirror *m) { return m ? m->csr : NULL; }
