/* gpu_csr.c — csr sketches on a GPU worker: see gpu_csr.h. */
#include "gpu_csr.h"

#include <stdio.h>
#include <stdlib.h>

#include "csr_dict.h"
#include "skv_csr_cuda.h"

/* One dictionary group on the device: keys [N][d], then value halves [N][d/2] each. */
typedef struct gpu_dict {
    const skv_dict *dict;
    uint64_t fingerprint; /* with the pointer: a set freed and another loaded at its address
                           * is not taken for it */
    int group;
    float *dev;
    size_t bytes;
} gpu_dict;

/* One queued append coded on the GPU (skv_gpu_csr_append). */
typedef struct code_op {
    skv_sketch *sketch;
    skv_csr_mirror *m;           /* its mirror, or NULL: a sketch that attends on the CPU */
    const float *dk, *dv0, *dv1; /* the device dictionary group it codes over */
    int s, atoms;
    const float *K, *V; /* the append's tokens (the caller's, until the finish) */
    size_t n, d;
    size_t rows;     /* tokens it codes */
    size_t first;    /* coded rows of the sketch (and the mirror) before it */
    size_t in_off;   /* its coding inputs: rows of keys at hin + in_off, then the values */
    size_t code_off; /* its codes in the staging (u16s): rows of indices, then coefficients */
} code_op;

struct skv_gpu_csr {
    gpu_dict *dicts;
    size_t ndicts, dicts_cap;
    /* one request's GPU coding: the queue, its inputs (host, then device) and its codes
     * (device staging, then its pinned download) */
    code_op *ops;
    size_t nops, ops_cap;
    int launched;
    float *hin;
    size_t hin_cap, hin_used; /* floats */
    float *din;
    size_t din_cap; /* bytes */
    uint16_t *dcodes, *hcodes;
    size_t dcodes_cap, hcodes_cap, codes_used; /* bytes, bytes, u16s */
    skv_csr_cuda_enc_job *ejobs;
    size_t ejobs_cap;
    /* one request's coded attends: the items that have one, their jobs and partials */
    size_t *item;
    size_t nitems, item_cap;
    skv_csr_cuda_job *jobs;
    size_t jobs_cap;
    float *dout; /* device: nitems x group partials */
    size_t dout_cap;
    float *hout; /* pinned host: their download */
    size_t hout_cap;
};

struct skv_csr_mirror {
    skv_cuda_ctx *ctx;
    const float *dk, *dv0, *dv1; /* the shared dictionary group (owned by skv_gpu_csr) */
    int s, atoms;
    uint16_t *idx, *coef; /* coded rows [0, ncodes) of 2 s pairs */
    size_t ncodes, codes_cap;
    void *ek, *ev;      /* exact rows: sink i at row i, ring slot j at row sinks + j */
    size_t erows, rb;   /* rows allocated (sinks + window), bytes a row */
    size_t nexact;      /* nsinks + wfill: contiguous (the window fills after the sinks) */
    uint64_t seen;      /* the sketch's tokens_seen at the last refresh */
    int synced;         /* something was uploaded: seen is meaningful */
    uint64_t uploaded;  /* bytes queued for upload so far (codes and exact rows) */
    int queued;         /* an append of this sketch waits in the GPU coding queue */
    uint64_t gpu_coded; /* tokens coded on the GPU so far */
};

int skv_gpu_csr_eligible(skv_gpu *gpu, const skv_sketch *s) {
    const skv_config *c = skv_sketch_config(s);
    if (c->rope_base > 0.0f) {
        /* Pre-rotary codes: a key is R(p) D c, a rotation per position that the P-lookup
         * kernel cannot apply, so the sketch's own CPU attend (decoding on the fly) answers. */
        if (gpu && !gpu->csr_cpu_said) {
            fprintf(stderr,
                    "subkv-worker: csr with pre-rotary codes (rope_base %g) attends on the CPU: "
                    "the GPU kernel reads post-rotary codes only\n",
                    (double)c->rope_base);
            gpu->csr_cpu_said = 1;
        }
        return 0;
    }
    return c->dict && c->dict->atoms <= SKV_CSR_CUDA_MAX_ATOMS;
}

static subkv_status csr_state(skv_gpu *g, skv_err *err) {
    if (g->csr) return SKV_OK;
    g->csr = calloc(1, sizeof *g->csr);
    return g->csr ? SKV_OK : skv_set_error(err, SKV_ERR_NOMEM, "no memory for the GPU csr state");
}

/* The device copy of p's dictionary group, uploaded on first use. */
static subkv_status dict_get(skv_gpu *g, const skv_dict *dict, const skv_csr_parts *p,
                             const float **dev, skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    for (size_t i = 0; i < gc->ndicts; i++) {
        const gpu_dict *e = &gc->dicts[i];
        if (e->dict == dict && e->fingerprint == dict->fingerprint && e->group == p->group) {
            *dev = e->dev;
            return SKV_OK;
        }
    }
    SKV_CHECK(
        skv_grow((void **)&gc->dicts, &gc->dicts_cap, gc->ndicts + 1, sizeof *gc->dicts, err));
    const size_t kf = (size_t)p->atoms * (size_t)dict->d, hf = kf / 2; /* floats */
    gpu_dict e = {dict, dict->fingerprint, p->group, NULL, 2 * kf * sizeof(float)};
    SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&e.dev, 0, e.bytes, err));
    subkv_status st = skv_gpu_stage_upload(g, e.dev, p->dk, kf * sizeof(float), err);
    if (st == SKV_OK) st = skv_gpu_stage_upload(g, e.dev + kf, p->dv0, hf * sizeof(float), err);
    if (st == SKV_OK)
        st = skv_gpu_stage_upload(g, e.dev + kf + hf, p->dv1, hf * sizeof(float), err);
    if (st != SKV_OK) {
        skv_cuda_pool_free(g->ctx, e.dev);
        return st;
    }
    gc->dicts[gc->ndicts++] = e;
    *dev = e.dev;
    return SKV_OK;
}

/* A new mirror for s: its dictionary on the device, room for the exact rows. */
static subkv_status mirror_new(skv_gpu *g, const skv_sketch *s, const skv_csr_parts *p,
                               skv_csr_mirror **out, skv_err *err) {
    const skv_config *c = skv_sketch_config(s);
    const float *dev = NULL;
    SKV_CHECK(dict_get(g, c->dict, p, &dev, err));
    skv_csr_mirror *m = calloc(1, sizeof *m);
    if (!m) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a GPU csr mirror");
    const size_t kf = (size_t)p->atoms * (size_t)c->head_dim;
    *m = (skv_csr_mirror){.ctx = g->ctx,
                          .dk = dev,
                          .dv0 = dev + kf,
                          .dv1 = dev + kf + kf / 2,
                          .s = p->sparsity,
                          .atoms = p->atoms,
                          .erows = (size_t)c->sinks + (size_t)c->window,
                          .rb = (size_t)c->head_dim * skv_dtype_size(c->dtype)};
    subkv_status st = skv_gpu_dev_grow(g->ctx, &m->ek, 0, m->erows * m->rb, err);
    if (st == SKV_OK) st = skv_gpu_dev_grow(g->ctx, &m->ev, 0, m->erows * m->rb, err);
    if (st != SKV_OK) {
        skv_gpu_csr_mirror_free(g->ctx, m);
        return st;
    }
    *out = m;
    return SKV_OK;
}

/* Queue the upload of exact rows [first, first + count) of host rows src (row bytes rb) to
 * device rows [at, at + count) of both K and V. */
static subkv_status put_rows(skv_gpu *g, skv_csr_mirror *m, const skv_sinkwin *sw, int window,
                             size_t first, size_t count, size_t at, skv_err *err) {
    if (!count) return SKV_OK;
    const skv_rows *k = window ? &sw->wk : &sw->sk, *v = window ? &sw->wv : &sw->sv;
    SKV_CHECK(skv_gpu_stage_upload(g, (char *)m->ek + at * m->rb,
                                   (const char *)k->data + first * m->rb, count * m->rb, err));
    SKV_CHECK(skv_gpu_stage_upload(g, (char *)m->ev + at * m->rb,
                                   (const char *)v->data + first * m->rb, count * m->rb, err));
    m->uploaded += 2 * count * m->rb;
    return SKV_OK;
}

/* Room for `need` code rows in m's device arrays (its ncodes rows kept). */
static subkv_status codes_room(skv_gpu *g, skv_csr_mirror *m, size_t need, skv_err *err) {
    if (need <= m->codes_cap) return SKV_OK;
    const size_t row = 2 * (size_t)m->s * sizeof(uint16_t);
    size_t cap = m->codes_cap ? m->codes_cap : 1024;
    while (cap < need) cap += cap / 2;
    SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&m->idx, m->ncodes * row, cap * row, err));
    SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&m->coef, m->ncodes * row, cap * row, err));
    m->codes_cap = cap;
    return SKV_OK;
}

subkv_status skv_gpu_csr_refresh(skv_gpu *g, const skv_sketch *s, skv_csr_mirror **mp,
                                 skv_err *err) {
    SKV_CHECK(csr_state(g, err));
    skv_stats st;
    skv_sketch_stats(s, &st);
    skv_csr_mirror *m = *mp;
    if (m && m->synced && m->seen == st.tokens_seen) return SKV_OK; /* nothing new */
    skv_csr_parts p;
    /* codes only grow (a restored sketch is a new table entry, with a new mirror) */
    SKV_CHECK(skv_csr_parts_from(s, m ? m->ncodes : 0, &p, err));
    if (!m) {
        SKV_CHECK(mirror_new(g, s, &p, mp, err));
        m = *mp;
    }
    /* the codes of the tokens coded since the last refresh: 8 s bytes each */
    const size_t row = 2 * (size_t)m->s * sizeof(uint16_t), add = p.n - p.first;
    if (add) {
        SKV_CHECK(codes_room(g, m, p.n, err));
        SKV_CHECK(skv_gpu_stage_upload(g, (char *)m->idx + p.first * row, p.idx, add * row, err));
        SKV_CHECK(skv_gpu_stage_upload(g, (char *)m->coef + p.first * row, p.coef, add * row, err));
        m->ncodes = p.n;
        m->uploaded += 2 * add * row;
    }
    /* the exact rows written since: new sinks, the ring slots the new window tokens took */
    const skv_sinkwin *sw = p.sw;
    size_t s0 = 0, w[2][2];
    const int nw = skv_sinkwin_changed(sw, m->synced ? m->seen : 0, st.tokens_seen, &s0, w);
    SKV_CHECK(put_rows(g, m, sw, 0, s0, sw->nsinks - s0, s0, err));
    for (int i = 0; i < nw; i++)
        SKV_CHECK(put_rows(g, m, sw, 1, w[i][0], w[i][1], (size_t)sw->sinks + w[i][0], err));
    m->nexact = sw->nsinks + sw->wfill;
    m->seen = st.tokens_seen;
    m->synced = 1;
    return SKV_OK;
}

/* ---- coding on the GPU (gpu_csr.h) -------------------------------------------------------- */

int skv_gpu_csr_codes_here(skv_gpu *gpu, const skv_sketch *s) {
    (void)gpu;
    const skv_config *c = skv_sketch_config(s);
    /* the encode's shapes (atoms <= 65536 always); any dtype and pre-rotary keys too, as
     * skv_csr_code_inputs hands over the rows exactly as csr would code them */
    return c->policy == SKV_POLICY_CSR && c->dict && (c->head_dim == 64 || c->head_dim == 128);
}

subkv_status skv_gpu_csr_append(skv_gpu *g, skv_table_entry *te, const float *K, const float *V,
                                size_t n, skv_err *err) {
    skv_sketch *s = te->sketch;
    const skv_config *c = skv_sketch_config(s);
    const int d = c->head_dim, mirrored = skv_gpu_eligible(g, s, 1);
    SKV_CHECK(csr_state(g, err));
    skv_gpu_csr *gc = g->csr;
    skv_csr_mirror **slot = NULL;
    int again = gc->launched; /* queued already: its earlier append lands first */
    if (mirrored) {
        SKV_CHECK(skv_gpu_mirror_csr(g, te, &slot, err));
        again = again || (*slot && (*slot)->queued);
    } else { /* no mirror to mark: look (a request's appends are distinct sketches) */
        for (size_t k = 0; k < gc->nops && !again; k++) again = gc->ops[k].sketch == s;
    }
    if (again) SKV_CHECK(skv_gpu_csr_finish_codes(g, err));
    SKV_CHECK(skv_sketch_check_append(s, K, V, n, d, err)); /* bad input fails before queuing */
    size_t rows = 0;
    SKV_CHECK(skv_csr_code_inputs(s, K, V, n, NULL, NULL, &rows, err));
    if (!rows) return skv_sketch_append(s, K, V, n, d, err); /* nothing leaves the window */
    code_op op = {.sketch = s, .K = K, .V = V, .n = n, .d = (size_t)d, .rows = rows};
    if (mirrored) { /* the codes go straight into the mirror's rows past ncodes */
        SKV_CHECK(skv_gpu_csr_refresh(g, s, slot, err)); /* the mirror holds every code so far */
        op.m = *slot;
        SKV_CHECK(codes_room(g, op.m, op.m->ncodes + rows, err));
        op.dk = op.m->dk, op.dv0 = op.m->dv0, op.dv1 = op.m->dv1;
        op.s = op.m->s, op.atoms = op.m->atoms, op.first = op.m->ncodes;
    } else { /* only into the staging: the sketch attends on the CPU */
        skv_csr_parts p;
        const float *dev = NULL;
        SKV_CHECK(skv_csr_parts_from(s, 0, &p, err));
        SKV_CHECK(dict_get(g, c->dict, &p, &dev, err));
        const size_t kf = (size_t)p.atoms * (size_t)d;
        op.dk = dev, op.dv0 = dev + kf, op.dv1 = dev + kf + kf / 2;
        op.s = p.sparsity, op.atoms = p.atoms, op.first = p.n;
    }
    const size_t row = 2 * (size_t)op.s, in_need = gc->hin_used + 2 * rows * (size_t)d;
    SKV_CHECK(skv_grow((void **)&gc->hin, &gc->hin_cap, in_need, sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&gc->ops, &gc->ops_cap, gc->nops + 1, sizeof *gc->ops, err));
    float *kin = gc->hin + gc->hin_used;
    size_t got = 0;
    SKV_CHECK(skv_csr_code_inputs(s, K, V, n, kin, kin + rows * (size_t)d, &got, err));
    op.in_off = gc->hin_used;
    op.code_off = gc->codes_used;
    gc->ops[gc->nops++] = op;
    gc->hin_used = in_need;
    gc->codes_used += 2 * rows * row;
    if (op.m) op.m->queued = 1;
    return SKV_OK;
}

/* One encode launch (or more, past the grid limit) for the queued ops of op k0's (d, s,
 * atoms), k0 being the first of them. */
static subkv_status encode_kind(skv_gpu *g, size_t k0, skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    const code_op *o0 = &gc->ops[k0];
    const int s = o0->s, atoms = o0->atoms, d = (int)o0->d;
    int nj = 0;
    for (size_t k = k0; k < gc->nops; k++) {
        const code_op *o = &gc->ops[k];
        if (o->d != o0->d || o->s != s || o->atoms != atoms) continue;
        const size_t row = 2 * (size_t)s;
        const float *in = gc->din + o->in_off;
        uint16_t *staged = gc->dcodes + o->code_off;
        skv_csr_cuda_enc_job j = {.k = in,
                                  .v = in + o->rows * o->d,
                                  .n = o->rows,
                                  .dk = o->dk,
                                  .dv0 = o->dv0,
                                  .dv1 = o->dv1,
                                  .idx = staged,
                                  .coef = staged + o->rows * row};
        if (o->m) { /* into the mirror's rows, the staging as the second copy */
            j.idx2 = j.idx, j.coef2 = j.coef;
            j.idx = o->m->idx + o->first * row, j.coef = o->m->coef + o->first * row;
        }
        gc->ejobs[nj++] = j;
        if (nj == 65535) { /* the launch's grid limit */
            SKV_CHECK(skv_csr_cuda_encode(g->ctx, gc->ejobs, nj, d, s, atoms, err));
            nj = 0;
        }
    }
    if (nj) SKV_CHECK(skv_csr_cuda_encode(g->ctx, gc->ejobs, nj, d, s, atoms, err));
    return SKV_OK;
}

subkv_status skv_gpu_csr_launch_codes(skv_gpu *g, skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    if (!gc || !gc->nops || gc->launched) return SKV_OK;
    const size_t inb = gc->hin_used * sizeof(float), cb = gc->codes_used * sizeof(uint16_t);
    if (inb > gc->din_cap) {
        SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&gc->din, 0, 2 * inb, err));
        gc->din_cap = 2 * inb;
    }
    if (cb > gc->dcodes_cap) {
        SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&gc->dcodes, 0, 2 * cb, err));
        gc->dcodes_cap = 2 * cb;
    }
    if (cb > gc->hcodes_cap) {
        SKV_CHECK(skv_cuda_sync(g->ctx, err)); /* no download may still write the old one */
        void *p = NULL;
        SKV_CHECK(skv_cuda_host_alloc(&p, 2 * cb, err));
        skv_cuda_host_free(gc->hcodes);
        gc->hcodes = p;
        gc->hcodes_cap = 2 * cb;
    }
    SKV_CHECK(skv_grow((void **)&gc->ejobs, &gc->ejobs_cap, gc->nops < 65535 ? gc->nops : 65535,
                       sizeof *gc->ejobs, err));
    SKV_CHECK(skv_gpu_stage_upload(g, gc->din, gc->hin, inb, err)); /* every row at once */
    /* one launch per (d, s, atoms) among the ops: in practice one */
    for (size_t k = 0; k < gc->nops; k++) {
        const code_op *o = &gc->ops[k];
        int seen = 0;
        for (size_t j = 0; j < k && !seen; j++) {
            const code_op *p = &gc->ops[j];
            seen = p->d == o->d && p->s == o->s && p->atoms == o->atoms;
        }
        if (!seen) SKV_CHECK(encode_kind(g, k, err));
    }
    SKV_CHECK(skv_cuda_download_async(g->ctx, gc->hcodes, gc->dcodes, cb, err));
    gc->launched = 1;
    return SKV_OK;
}

void skv_gpu_csr_discard_codes(skv_gpu *g) {
    skv_gpu_csr *gc = g->csr;
    if (!gc) return;
    for (size_t k = 0; k < gc->nops; k++)
        if (gc->ops[k].m) gc->ops[k].m->queued = 0;
    gc->nops = gc->hin_used = gc->codes_used = 0;
    gc->launched = 0;
}

subkv_status skv_gpu_csr_finish_codes(skv_gpu *g, skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    if (!gc || !gc->nops) return SKV_OK;
    subkv_status st = skv_gpu_csr_launch_codes(g, err);
    if (st == SKV_OK) st = skv_cuda_sync(g->ctx, err);
    for (size_t k = 0; k < gc->nops && st == SKV_OK; k++) {
        code_op *o = &gc->ops[k];
        const uint16_t *ix = gc->hcodes + o->code_off;
        const size_t row = 2 * (size_t)o->s;
        st = skv_csr_append_codes(o->sketch, o->K, o->V, o->n, (int)o->d, ix, ix + o->rows * row,
                                  o->rows, err);
        if (st == SKV_OK && o->m) { /* the encode wrote these rows of the mirror: no upload */
            o->m->ncodes = o->first + o->rows;
            o->m->gpu_coded += o->rows;
        }
    }
    skv_gpu_csr_discard_codes(g); /* done, or failed: the rest stay unappended */
    return st;
}

void skv_gpu_csr_exact_job(const skv_csr_mirror *m, skv_cuda_job *job) {
    job->k = m->ek;
    job->v = m->ev;
    job->a = job->b = NULL;
    job->n = m->nexact;
}

/* Launch the coded attends of the collected items whose codes have s pairs over `atoms`. */
static subkv_status launch_kind(skv_gpu *g, const skv_gpu_item *items, int d, int group, int s,
                                int atoms, skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    const size_t qn = (size_t)group * d, on = (size_t)group * (d + 2);
    size_t nj = 0;
    for (size_t k = 0; k < gc->nitems; k++) {
        const skv_csr_mirror *m = skv_mirror_csr(items[gc->item[k]].entry->mirror);
        if (m->s != s || m->atoms != atoms) continue;
        gc->jobs[nj++] = (skv_csr_cuda_job){.idx = m->idx,
                                            .coef = m->coef,
                                            .n = m->ncodes,
                                            .dk = m->dk,
                                            .dv0 = m->dv0,
                                            .dv1 = m->dv1,
                                            .q = g->dq + gc->item[k] * qn,
                                            .out = gc->dout + k * on};
        if (nj == 65535) { /* the launch's grid limit */
            SKV_CHECK(
                skv_csr_cuda_attend(g->ctx, gc->jobs, (int)nj, d, group, s, atoms, 0.0f, 0, err));
            nj = 0;
        }
    }
    if (nj)
        SKV_CHECK(skv_csr_cuda_attend(g->ctx, gc->jobs, (int)nj, d, group, s, atoms, 0.0f, 0, err));
    return SKV_OK;
}

subkv_status skv_gpu_csr_launch(skv_gpu *g, const skv_gpu_item *items, size_t n, int d, int group,
                                skv_err *err) {
    skv_gpu_csr *gc = g->csr;
    if (!gc) return SKV_OK; /* no csr sketch was ever refreshed here */
    gc->nitems = 0;
    for (size_t i = 0; i < n; i++) {
        const skv_csr_mirror *m = skv_mirror_csr(items[i].entry->mirror);
        if (!m || !m->ncodes) continue; /* nothing coded: the exact partial is the answer */
        SKV_CHECK(
            skv_grow((void **)&gc->item, &gc->item_cap, gc->nitems + 1, sizeof *gc->item, err));
        gc->item[gc->nitems++] = i;
    }
    if (!gc->nitems) return SKV_OK;
    const size_t on = (size_t)group * (d + 2), outb = gc->nitems * on * sizeof(float);
    SKV_CHECK(skv_grow((void **)&gc->jobs, &gc->jobs_cap, gc->nitems, sizeof *gc->jobs, err));
    if (outb > gc->dout_cap) {
        SKV_CHECK(skv_gpu_dev_grow(g->ctx, (void **)&gc->dout, 0, 2 * outb, err));
        gc->dout_cap = 2 * outb;
    }
    if (outb > gc->hout_cap) {
        SKV_CHECK(skv_cuda_sync(g->ctx, err)); /* no download may still write the old one */
        void *p = NULL;
        SKV_CHECK(skv_cuda_host_alloc(&p, 2 * outb, err));
        skv_cuda_host_free(gc->hout);
        gc->hout = p;
        gc->hout_cap = 2 * outb;
    }
    /* one launch per (sparsity, atoms) among the items: in practice one */
    for (size_t k = 0; k < gc->nitems; k++) {
        const skv_csr_mirror *m = skv_mirror_csr(items[gc->item[k]].entry->mirror);
        int seen = 0;
        for (size_t j = 0; j < k && !seen; j++) {
            const skv_csr_mirror *o = skv_mirror_csr(items[gc->item[j]].entry->mirror);
            seen = o->s == m->s && o->atoms == m->atoms;
        }
        if (!seen) SKV_CHECK(launch_kind(g, items, d, group, m->s, m->atoms, err));
    }
    return skv_cuda_download_async(g->ctx, gc->hout, gc->dout, outb, err);
}

void skv_gpu_csr_merge(skv_gpu *g, skv_gpu_item *items, int d, int group) {
    skv_gpu_csr *gc = g->csr;
    if (!gc) return;
    const size_t on = (size_t)group * (d + 2);
    for (size_t k = 0; k < gc->nitems; k++)
        for (int h = 0; h < group; h++)
            skv_partial_merge(skv_partial_at(items[gc->item[k]].out, d, (size_t)h),
                              skv_partial_at(gc->hout + k * on, d, (size_t)h), d);
    gc->nitems = 0;
}

void skv_gpu_csr_mirror_stats(const skv_csr_mirror *m, skv_gpu_csr_stats *st) {
    *st = (skv_gpu_csr_stats){0};
    if (!m) return;
    st->device_bytes =
        2 * m->codes_cap * 2 * (size_t)m->s * sizeof(uint16_t) + 2 * m->erows * m->rb;
    st->uploaded_bytes = m->uploaded;
    st->codes = m->ncodes;
    st->exact = m->nexact;
    st->gpu_coded = m->gpu_coded;
    st->dev_idx = m->idx;
    st->dev_coef = m->coef;
}

size_t skv_gpu_csr_dict_bytes(const skv_gpu *g) {
    size_t b = 0;
    for (size_t i = 0; g->csr && i < g->csr->ndicts; i++) b += g->csr->dicts[i].bytes;
    return b;
}

void skv_gpu_csr_mirror_free(skv_cuda_ctx *c, skv_csr_mirror *m) {
    if (!m) return;
    skv_cuda_pool_free(c, m->idx);
    skv_cuda_pool_free(c, m->coef);
    skv_cuda_pool_free(c, m->ek);
    skv_cuda_pool_free(c, m->ev);
    free(m);
}

void skv_gpu_csr_fini(skv_gpu *g) {
    skv_gpu_csr *gc = g->csr;
    if (!gc) return;
    for (size_t i = 0; i < gc->ndicts; i++) skv_cuda_pool_free(g->ctx, gc->dicts[i].dev);
    skv_cuda_pool_free(g->ctx, gc->dout);
    skv_cuda_pool_free(g->ctx, gc->din);
    skv_cuda_pool_free(g->ctx, gc->dcodes);
    skv_cuda_sync(g->ctx, &(skv_err){0}); /* the last downloads are done with hout, hcodes */
    skv_cuda_host_free(gc->hout);
    skv_cuda_host_free(gc->hcodes);
    free(gc->ops);
    free(gc->hin);
    free(gc->ejobs);
    free(gc->dicts);
    free(gc->item);
    free(gc->jobs);
    free(gc);
    g->csr = NULL;
}
