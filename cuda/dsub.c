/* dsub.c — host side of the device-resident SubGen sketches (skv_dsub.h). */
#include <stdlib.h>

#include "skv_dsub.h"
#include "skv_internal.h"

struct skv_dsub {
    void *base; /* one pooled allocation */
    size_t bytes;
    size_t off_k, off_v, off_a, off_b, off_c, off_n, off_i; /* byte offsets in the image */
    uint64_t krows, vrows;                                  /* rows of K and of V */
    skv_dsub_desc desc;
};

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

int skv_dsub_eligible(const skv_sketch *s) {
    const skv_config *c = skv_sketch_config(s);
    return c->policy == SKV_POLICY_SUBGEN &&
           (c->dtype == SKV_DTYPE_F16 || c->dtype == SKV_DTYPE_BF16) &&
           (c->head_dim == 64 || c->head_dim == 128);
}

size_t skv_dsub_bytes(const skv_dsub *d) { return d->bytes; }
const skv_dsub_desc *skv_dsub_descriptor(const skv_dsub *d) { return &d->desc; }

/* Sizes and offsets of the image of a sketch with config c. */
static void layout(skv_dsub *g, const skv_config *c, const skv_subgen_impl *im) {
    const size_t d = (size_t)c->head_dim, rb = d * 2;
    const uint64_t exact = (uint64_t)c->sinks + (uint64_t)c->window;
    const uint64_t samples = (uint64_t)im->mcap * (uint64_t)im->t;
    g->krows = exact + (uint64_t)im->s + samples;
    g->vrows = exact + (uint64_t)im->s + (im->cluster_values ? samples : 0);
    size_t o = align256(sizeof(skv_dsub_hdr));
    g->off_k = o, o = align256(o + g->krows * rb);
    g->off_v = o, o = align256(o + g->vrows * rb);
    g->off_a = o, o = align256(o + g->krows * sizeof(float));
    g->off_b = o, o = align256(o + g->krows * sizeof(float));
    g->off_c = o, o = align256(o + (size_t)im->mcap * d * sizeof(float));
    g->off_n = o, o = align256(o + (size_t)im->mcap * sizeof(uint64_t));
    g->off_i = o, o = align256(o + (size_t)im->s * sizeof(float));
    g->bytes = o;
}

static void fill_desc(skv_dsub *g, const skv_config *c, const skv_subgen_impl *im) {
    char *b = g->base;
    g->desc = (skv_dsub_desc){
        .hdr = (skv_dsub_hdr *)(void *)b,
        .krows = b + g->off_k,
        .vrows = b + g->off_v,
        .a = (float *)(void *)(b + g->off_a),
        .b = (float *)(void *)(b + g->off_b),
        .centers = (float *)(void *)(b + g->off_c),
        .count = (uint64_t *)(void *)(b + g->off_n),
        .inv_norm = (float *)(void *)(b + g->off_i),
        .k0 = im->key.k0,
        .k1 = im->key.k1,
        .S = c->sinks,
        .W = c->window,
        .m = im->mcap,
        .t = im->t,
        .s = im->s,
        .cluster_values = im->cluster_values,
        .d = c->head_dim,
        .dtype = (int32_t)c->dtype,
    };
}

/* Copy rows [0, n) of r into the image at row `at` of the region starting at off. */
static void put_rows(char *img, size_t off, uint64_t at, const skv_rows *r, size_t n) {
    const size_t rb = skv_rows_row_bytes(r);
    if (n) memcpy(img + off + at * rb, r->data, n * rb);
}
static void get_rows(const char *img, size_t off, uint64_t at, skv_rows *r, size_t n) {
    const size_t rb = skv_rows_row_bytes(r);
    if (n) memcpy(r->data, img + off + at * rb, n * rb);
}

subkv_status skv_dsub_create(skv_cuda_ctx *c, const skv_sketch *s, skv_dsub **out, skv_err *err) {
    *out = NULL;
    if (!skv_dsub_eligible(s))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "only f16/bf16 subgen sketches of head_dim 64 or 128 live on the GPU");
    const skv_config *cfg = skv_sketch_config(s);
    const skv_subgen_impl *im = s->impl;
    skv_dsub *g = calloc(1, sizeof *g);
    char *img = NULL;
    if (!g) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a GPU sketch");
    layout(g, cfg, im);
    subkv_status st = skv_cuda_pool_alloc(c, &g->base, g->bytes, err);
    if (st != SKV_OK) goto fail;
    fill_desc(g, cfg, im);
    /* the image on the host: zeros (unused rows score 0 with weight 0), then the state */
    img = calloc(1, g->bytes);
    if (!img) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "no memory to stage a GPU sketch");
        goto fail;
    }
    const skv_sinkwin *sw = &im->sw;
    const uint64_t exact = (uint64_t)cfg->sinks + (uint64_t)cfg->window;
    const size_t nsamp = (size_t)im->nclusters * (size_t)im->t;
    skv_dsub_hdr h = {.tokens_seen = s->tokens_seen,
                      .nsinks = sw->nsinks,
                      .wfill = sw->wfill,
                      .whead = sw->whead,
                      .mu = im->mu,
                      .delta = im->delta,
                      .merges = im->merges,
                      .nclusters = im->nclusters,
                      .slots_full = im->slots_full};
    memcpy(img, &h, sizeof h);
    put_rows(img, g->off_k, 0, &sw->sk, sw->nsinks);
    put_rows(img, g->off_v, 0, &sw->sv, sw->nsinks);
    put_rows(img, g->off_k, (uint64_t)cfg->sinks, &sw->wk, sw->wfill);
    put_rows(img, g->off_v, (uint64_t)cfg->sinks, &sw->wv, sw->wfill);
    if (im->slots_full) {
        put_rows(img, g->off_k, exact, &im->lk, (size_t)im->s);
        put_rows(img, g->off_v, exact, &im->lv, (size_t)im->s);
        memcpy(img + g->off_i, im->inv_norm, (size_t)im->s * sizeof(float));
    }
    put_rows(img, g->off_k, exact + (uint64_t)im->s, &im->ck, nsamp);
    if (im->cluster_values) put_rows(img, g->off_v, exact + (uint64_t)im->s, &im->cv, nsamp);
    memcpy(img + g->off_c, im->centers, (size_t)im->nclusters * (size_t)cfg->head_dim * 4);
    memcpy(img + g->off_n, im->count, (size_t)im->nclusters * sizeof(uint64_t));
    float *a = (float *)(void *)(img + g->off_a), *b = (float *)(void *)(img + g->off_b);
    for (uint64_t r = 0; r < exact; r++) a[r] = b[r] = 1.0f; /* sinks and window: exact */
    st = skv_cuda_upload_async(c, g->base, img, g->bytes, err);
    if (st == SKV_OK) { /* an append of nothing: the kernel writes the weights and n_entries */
        skv_dsub_op op = {.desc = g->desc, .k = NULL, .v = NULL, .n = 0};
        st = skv_dsub_launch(c, &op, 1, err);
    }
    if (st == SKV_OK) st = skv_cuda_sync(c, err); /* img is pageable: copied by now anyway */
    if (st != SKV_OK) goto fail;
    free(img);
    *out = g;
    return SKV_OK;
fail:
    free(img);
    skv_dsub_destroy(c, g);
    return st;
}

void skv_dsub_destroy(skv_cuda_ctx *c, skv_dsub *d) {
    if (!d) return;
    skv_cuda_pool_free(c, d->base);
    free(d);
}

void skv_dsub_job(const skv_dsub *d, skv_cuda_job *job) {
    job->k = d->desc.krows;
    job->v = d->desc.vrows;
    job->a = d->desc.a;
    job->b = d->desc.b;
    job->n = d->krows;
    job->dn = &d->desc.hdr->n_entries;
    job->nv = d->vrows; /* with values=l2 the cluster samples have no value rows */
}

subkv_status skv_dsub_pull(skv_cuda_ctx *c, const skv_dsub *d, skv_sketch *s, skv_err *err) {
    const skv_config *cfg = skv_sketch_config(s);
    skv_subgen_impl *im = s->impl;
    if (cfg->policy != SKV_POLICY_SUBGEN || im->mcap != d->desc.m || im->t != d->desc.t ||
        im->s != d->desc.s || cfg->head_dim != d->desc.d)
        return skv_set_error(err, SKV_ERR_INTERNAL, "GPU sketch and CPU sketch disagree in shape");
    char *img = malloc(d->bytes);
    if (!img) return skv_set_error(err, SKV_ERR_NOMEM, "no memory to fetch a GPU sketch");
    subkv_status st = skv_cuda_sync(c, err); /* appends queued before this are done */
    if (st == SKV_OK) st = skv_cuda_download(img, d->base, d->bytes, err);
    if (st != SKV_OK) {
        free(img);
        return st;
    }
    skv_dsub_hdr h;
    memcpy(&h, img, sizeof h);
    skv_sinkwin *sw = &im->sw;
    const uint64_t exact = (uint64_t)cfg->sinks + (uint64_t)cfg->window;
    if (h.nsinks > (uint64_t)cfg->sinks || h.wfill > (uint64_t)cfg->window || h.nclusters < 0 ||
        h.nclusters > im->mcap) {
        free(img);
        return skv_set_error(err, SKV_ERR_INTERNAL, "GPU sketch header out of range");
    }
    s->tokens_seen = h.tokens_seen;
    sw->nsinks = h.nsinks;
    sw->wfill = h.wfill;
    sw->whead = h.whead;
    im->mu = h.mu;
    im->delta = h.delta;
    im->merges = h.merges;
    im->nclusters = h.nclusters;
    im->slots_full = h.slots_full != 0;
    const size_t nsamp = (size_t)im->nclusters * (size_t)im->t;
    get_rows(img, d->off_k, 0, &sw->sk, sw->nsinks);
    get_rows(img, d->off_v, 0, &sw->sv, sw->nsinks);
    get_rows(img, d->off_k, (uint64_t)cfg->sinks, &sw->wk, sw->wfill);
    get_rows(img, d->off_v, (uint64_t)cfg->sinks, &sw->wv, sw->wfill);
    if (im->slots_full) {
        get_rows(img, d->off_k, exact, &im->lk, (size_t)im->s);
        get_rows(img, d->off_v, exact, &im->lv, (size_t)im->s);
        memcpy(im->inv_norm, img + d->off_i, (size_t)im->s * sizeof(float));
    }
    get_rows(img, d->off_k, exact + (uint64_t)im->s, &im->ck, nsamp);
    if (im->cluster_values) get_rows(img, d->off_v, exact + (uint64_t)im->s, &im->cv, nsamp);
    memcpy(im->centers, img + d->off_c, (size_t)im->nclusters * (size_t)cfg->head_dim * 4);
    memcpy(im->count, img + d->off_n, (size_t)im->nclusters * sizeof(uint64_t));
    free(img);
    return SKV_OK;
}
