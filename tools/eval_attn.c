/*
 * eval_attn.c — subkv-eval's measuring attention backend (see eval_attn.h).
 */
#include "eval_attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_text.h"
#include "skv_check.h"
#include "skv_internal.h"

struct eval_attn {
    llama_attn base;
    llama_hparams hp;
    skv_policy_id policy;
    skv_sketch **sk;        /* [layer][kv head] */
    const eval_prefix *pre; /* the loaded prefix (borrowed) */
    size_t max_tail, err_from;
    size_t *steps;              /* [layer]: decode steps seen */
    float *tk, *tv;             /* [layer][max_tail][kv][d]: the tail's own K, V */
    double *err_sum, *norm_sum; /* [layer]: error sums */
    size_t *err_n;              /* [layer] */
    float *kb, *vb;             /* scratch: one head's rows */
    size_t kb_cap;
    double *scores; /* scratch of the float64 reference */
    size_t scores_cap;
    skv_partial *parts; /* [n_head] */
    /* bytes read by the decode steps' attends (eval_attn_read): sums over every (layer, kv
     * head) sketch and step; read_n counts those attends */
    double read_sum, full_sum;
    uint64_t read_n;
};

static void gather_head(const float *X, size_t n, uint32_t kv, uint32_t d, uint32_t h, float *out) {
    for (size_t t = 0; t < n; t++) memcpy(out + t * d, X + (t * kv + h) * d, d * sizeof(float));
}

static subkv_status append_rows(eval_attn *a, uint32_t layer, size_t n, const float *K,
                                const float *V, skv_err *err) {
    const uint32_t kv = a->hp.n_head_kv, d = a->hp.head_dim;
    if (n > a->kb_cap) {
        float *kb = realloc(a->kb, n * d * sizeof(float));
        if (kb) a->kb = kb;
        float *vb = realloc(a->vb, n * d * sizeof(float));
        if (vb) a->vb = vb;
        if (!kb || !vb) return skv_set_error(err, SKV_ERR_NOMEM, "eval attn: %zu tokens", n);
        a->kb_cap = n;
    }
    for (uint32_t h = 0; h < kv; h++) {
        gather_head(K, n, kv, d, h, a->kb);
        gather_head(V, n, kv, d, h, a->vb);
        SKV_CHECK(skv_sketch_append(a->sk[(size_t)layer * kv + h], a->kb, a->vb, n, (int)d, err));
    }
    return SKV_OK;
}

/* Attend the n_head query heads Q of one token; partials into a->parts. */
static subkv_status attend_all(eval_attn *a, uint32_t layer, const float *Q, skv_err *err) {
    const uint32_t kv = a->hp.n_head_kv, d = a->hp.head_dim, G = a->hp.n_head / kv;
    for (uint32_t h = 0; h < kv; h++)
        SKV_CHECK(skv_sketch_attend(a->sk[(size_t)layer * kv + h], Q + (size_t)h * G * d, (int)G,
                                    (int)d, skv_partial_at(a->parts, (int)d, (size_t)h * G), err));
    return SKV_OK;
}

/* Counts the key and value rows of a sketch's entries (the rows skv_sketch_entries exports,
 * without copying them): an entry with no value row (subgen l2's cluster samples, which only
 * the normalizer reads) counts its key alone, as the CPU attend reads it. */
typedef struct read_sink {
    skv_seg_sink base;
    uint64_t rows;
} read_sink;

static void read_rows(skv_seg_sink *sink, const skv_rows *K, const skv_rows *V, size_t start,
                      size_t count, const float *a_w, double a, const float *b_w, double b) {
    (void)K, (void)start, (void)a_w, (void)a, (void)b_w, (void)b;
    ((read_sink *)sink)->rows += count * (V ? 2u : 1u);
}

/*
 * Key + value bytes one attend of sketch sk reads, as it is now (after the step's append and
 * attend): what the attend's kernel must bring from memory, not counting the query, the
 * output, per-entry weights or metadata.
 *  - exact, sinkwin, h2o, subgen: the rows of its entries (read_sink), at the storage dtype;
 *  - csr: its exact rows (sinks + window, keys and values) plus its codes, 8 s bytes per
 *    coded token (2 s u16 atom indices, 2 s f16 coefficients); the dictionary is shared by
 *    every sketch of a layer group and, like its bytes in skv_sketch_bytes, not counted;
 *  - refreshkv is not counted here: its own skv_stats.bytes_read (cache/refreshkv.c) counts
 *    what each attend reads, K partial rows or the whole full store (see eval_attn_read).
 */
static uint64_t entry_read_bytes(const skv_sketch *sk) {
    const skv_config *c = skv_sketch_config(sk);
    const uint64_t row = skv_rows_bytes(c->dtype, c->head_dim, 1);
    if (c->policy == SKV_POLICY_CSR) {
        skv_stats st;
        skv_sketch_stats(sk, &st);
        return st.tokens_held * 2 * row + (st.tokens_seen - st.tokens_held) * 8u * c->sparsity;
    }
    read_sink sink = {.base = {read_rows}};
    sk->ops->segments(sk, &sink.base);
    return sink.rows * row;
}

/* Sum over layer l's sketches of refreshkv's counters: bytes read (full 0) or full steps. */
static uint64_t rkv_counter(const eval_attn *a, uint32_t l, int full) {
    uint64_t s = 0;
    for (uint32_t h = 0; h < a->hp.n_head_kv; h++) {
        skv_stats st;
        skv_sketch_stats(a->sk[(size_t)l * a->hp.n_head_kv + h], &st);
        s += full ? st.full_steps : st.bytes_read;
    }
    return s;
}

/* One decode step's attend of layer l: the bytes its sketches read, into the sums. */
static subkv_status attend_step(eval_attn *a, uint32_t l, const float *Q, skv_err *err) {
    const uint32_t kv = a->hp.n_head_kv;
    if (a->policy == SKV_POLICY_REFRESHKV) {
        const uint64_t b0 = rkv_counter(a, l, 0), f0 = rkv_counter(a, l, 1);
        SKV_CHECK(attend_all(a, l, Q, err));
        a->read_sum += (double)(rkv_counter(a, l, 0) - b0);
        a->full_sum += (double)(rkv_counter(a, l, 1) - f0);
    } else {
        SKV_CHECK(attend_all(a, l, Q, err));
        for (uint32_t h = 0; h < kv; h++)
            a->read_sum += (double)entry_read_bytes(a->sk[(size_t)l * kv + h]);
    }
    a->read_n += kv;
    return SKV_OK;
}

static subkv_status ev_append(llama_attn *base, uint32_t layer, size_t n, const float *K,
                              const float *V, skv_err *err) {
    (void)base;
    (void)layer;
    (void)n;
    (void)K;
    (void)V;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                         "eval attn: prefill goes through eval_attn_load_prefix");
}

/* Error of this step's outputs against float64 exact attention over prefix + tail rows. */
static subkv_status measure(eval_attn *a, uint32_t layer, size_t step, const float *Q,
                            const float *out, skv_err *err) {
    const uint32_t kv = a->hp.n_head_kv, d = a->hp.head_dim, H = a->hp.n_head, G = H / kv;
    const size_t row = (size_t)kv * d, n = a->pre->n + step + 1;
    if (n > a->scores_cap) {
        double *sc = realloc(a->scores, n * sizeof(double));
        if (!sc) return skv_set_error(err, SKV_ERR_NOMEM, "eval attn: reference scores");
        a->scores = sc;
        a->scores_cap = n;
    }
    const size_t tail_off = (size_t)layer * a->max_tail * row, seg[2] = {a->pre->n, step + 1};
    for (uint32_t j = 0; j < H; j++) {
        const size_t h = (size_t)(j / G) * d;
        const float *K[2] = {a->pre->K[layer] + h, a->tk + tail_off + h};
        const float *V[2] = {a->pre->V[layer] + h, a->tv + tail_off + h};
        a->err_sum[layer] += eval_attn_rel_err(Q + (size_t)j * d, K, V, seg, row, (int)d,
                                               out + (size_t)j * d, a->scores);
        const skv_partial *p = skv_partial_at(a->parts, (int)d, j);
        const double est = p->l > 0.0f ? (double)p->m + log((double)p->l) : -INFINITY;
        a->norm_sum[layer] += fabs(est - eval_logsumexp(a->scores, seg[0] + seg[1]));
        a->err_n[layer]++;
    }
    return SKV_OK;
}

static subkv_status ev_step(llama_attn *base, uint32_t layer, const float *Q, const float *K,
                            const float *V, float *out, skv_err *err) {
    eval_attn *a = (eval_attn *)base;
    const uint32_t d = a->hp.head_dim, H = a->hp.n_head;
    const size_t row = (size_t)a->hp.n_head_kv * d;
    if (layer >= a->hp.n_layer || !a->pre)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "eval attn: layer %u / no prefix", layer);
    const size_t step = a->steps[layer];
    if (step >= a->max_tail)
        return skv_set_error(err, SKV_ERR_BUDGET, "eval attn: more than %zu decode steps",
                             a->max_tail);
    const size_t off = ((size_t)layer * a->max_tail + step) * row;
    memcpy(a->tk + off, K, row * sizeof(float));
    memcpy(a->tv + off, V, row * sizeof(float));
    SKV_CHECK(append_rows(a, layer, 1, K, V, err));
    SKV_CHECK(attend_step(a, layer, Q, err));
    for (uint32_t j = 0; j < H; j++)
        skv_partial_output(skv_partial_at(a->parts, (int)d, j), (int)d, out + (size_t)j * d);
    a->steps[layer]++;
    if (step >= a->err_from) SKV_CHECK(measure(a, layer, step, Q, out, err));
    return SKV_OK;
}

size_t eval_attn_bytes(const eval_attn *a, size_t *partial) {
    size_t b = 0, p = 0;
    for (size_t i = 0; i < (size_t)a->hp.n_layer * a->hp.n_head_kv; i++) {
        skv_stats st;
        skv_sketch_stats(a->sk[i], &st);
        b += st.bytes;
        p += a->policy == SKV_POLICY_REFRESHKV ? st.partial_bytes : st.bytes;
    }
    if (partial) *partial = p;
    return b;
}

double eval_attn_read(const eval_attn *a, double *full_frac) {
    const double n = (double)a->read_n;
    if (full_frac) *full_frac = a->policy == SKV_POLICY_REFRESHKV && n > 0 ? a->full_sum / n : NAN;
    return n > 0 ? a->read_sum / n : NAN;
}

static size_t ev_bytes(llama_attn *base) { return eval_attn_bytes((eval_attn *)base, NULL); }

void eval_attn_destroy(eval_attn *a) {
    if (!a) return;
    if (a->sk)
        for (size_t i = 0; i < (size_t)a->hp.n_layer * a->hp.n_head_kv; i++)
            skv_sketch_destroy(a->sk[i]);
    free(a->sk);
    free(a->steps);
    free(a->tk);
    free(a->tv);
    free(a->err_sum);
    free(a->norm_sum);
    free(a->err_n);
    free(a->kb);
    free(a->vb);
    free(a->scores);
    free(a->parts);
    free(a);
}

static void ev_destroy(llama_attn *base) { eval_attn_destroy((eval_attn *)base); }

/* No attend_partials: a prefill after the prefix is not part of the evaluation. */
static const llama_attn_ops EVAL_OPS = {"eval", ev_append, ev_step, NULL, ev_bytes, ev_destroy};

subkv_status eval_attn_create(const llama_hparams *hp, const skv_config *policy, size_t max_tail,
                              size_t err_from, eval_attn **out, skv_err *err) {
    if (!hp || !policy || !out || max_tail == 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "eval attn: NULL arg or max_tail 0");
    *out = NULL;
    eval_attn *a = calloc(1, sizeof *a);
    if (!a) return skv_set_error(err, SKV_ERR_NOMEM, "eval attn");
    a->base.ops = &EVAL_OPS;
    a->hp = *hp;
    a->policy = policy->policy;
    a->max_tail = max_tail;
    a->err_from = err_from;
    const size_t nsk = (size_t)hp->n_layer * hp->n_head_kv,
                 row = (size_t)hp->n_head_kv * hp->head_dim;
    a->sk = calloc(nsk, sizeof *a->sk);
    a->steps = calloc(hp->n_layer, sizeof *a->steps);
    a->err_sum = calloc(hp->n_layer, sizeof *a->err_sum);
    a->norm_sum = calloc(hp->n_layer, sizeof *a->norm_sum);
    a->err_n = calloc(hp->n_layer, sizeof *a->err_n);
    a->tk = malloc((size_t)hp->n_layer * max_tail * row * sizeof(float));
    a->tv = malloc((size_t)hp->n_layer * max_tail * row * sizeof(float));
    a->parts = malloc(hp->n_head * skv_partial_stride((int)hp->head_dim));
    subkv_status st = SKV_OK;
    if (!a->sk || !a->steps || !a->err_sum || !a->norm_sum || !a->err_n || !a->tk || !a->tv ||
        !a->parts) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "eval attn: %zu sketches", nsk);
        goto fail;
    }
    SKV_CHECK_GOTO(llama_sketches_create(hp, policy, a->sk, err), st, fail);
    *out = a;
    return SKV_OK;
fail:
    eval_attn_destroy(a);
    return st;
}

llama_attn *eval_attn_base(eval_attn *a) { return &a->base; }

subkv_status eval_attn_load_prefix(eval_attn *a, const eval_prefix *pre, skv_err *err) {
    if (!a || !pre || pre->n == 0) return skv_set_error(err, SKV_ERR_INVALID_ARG, "eval: prefix");
    const size_t row = (size_t)a->hp.n_head_kv * a->hp.head_dim,
                 E = (size_t)a->hp.n_head * a->hp.head_dim;
    const int observe = a->policy == SKV_POLICY_H2O && pre->Qobs && pre->observe > 0;
    for (uint32_t l = 0; l < a->hp.n_layer; l++) {
        if (!observe) {
            SKV_CHECK(append_rows(a, l, pre->n, pre->K[l], pre->V[l], err));
            continue;
        }
        for (size_t t0 = 0, i = 0; t0 < pre->n; t0 += pre->observe, i++) {
            const size_t n = pre->n - t0 < pre->observe ? pre->n - t0 : pre->observe;
            SKV_CHECK(append_rows(a, l, n, pre->K[l] + t0 * row, pre->V[l] + t0 * row, err));
            if (n == pre->observe) SKV_CHECK(attend_all(a, l, pre->Qobs[l] + i * E, err));
        }
    }
    a->pre = pre;
    return SKV_OK;
}

double eval_attn_layer_err(const eval_attn *a, uint32_t l) {
    return a->err_n[l] ? a->err_sum[l] / (double)a->err_n[l] : -1.0;
}

double eval_attn_layer_norm_err(const eval_attn *a, uint32_t l) {
    return a->err_n[l] ? a->norm_sum[l] / (double)a->err_n[l] : -1.0;
}

void eval_attn_layer_stats(const eval_attn *a, uint32_t l, double *clusters, double *merges,
                           double *delta, double *full_frac) {
    double c = 0, m = 0, dl = 0, ff = 0;
    const uint32_t kv = a->hp.n_head_kv;
    for (uint32_t h = 0; h < kv; h++) {
        skv_stats st;
        skv_sketch_stats(a->sk[(size_t)l * kv + h], &st);
        c += st.clusters;
        m += st.merges;
        dl += st.delta;
        ff += st.attends ? (double)st.full_steps / (double)st.attends : 0.0;
    }
    *clusters = c / kv;
    *merges = m / kv;
    *delta = dl / kv;
    *full_frac = ff / kv;
}

int eval_prefix_init(eval_prefix *pre, const llama_hparams *hp, size_t n, size_t observe) {
    memset(pre, 0, sizeof *pre);
    const size_t row = (size_t)hp->n_head_kv * hp->head_dim, E = (size_t)hp->n_head * hp->head_dim;
    pre->cap = n;
    pre->observe = observe;
    pre->kv_row = row;
    pre->q_row = E;
    pre->K = calloc(hp->n_layer, sizeof *pre->K);
    pre->V = calloc(hp->n_layer, sizeof *pre->V);
    if (observe) pre->Qobs = calloc(hp->n_layer, sizeof *pre->Qobs);
    if (!pre->K || !pre->V || (observe && !pre->Qobs)) return eval_prefix_free(pre, hp), -1;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        pre->K[l] = malloc(n * row * sizeof(float));
        pre->V[l] = malloc(n * row * sizeof(float));
        if (observe) pre->Qobs[l] = malloc((n / observe + 1) * E * sizeof(float));
        if (!pre->K[l] || !pre->V[l] || (observe && !pre->Qobs[l]))
            return eval_prefix_free(pre, hp), -1;
    }
    return 0;
}

void eval_prefix_free(eval_prefix *pre, const llama_hparams *hp) {
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (pre->K) free(pre->K[l]);
        if (pre->V) free(pre->V[l]);
        if (pre->Qobs) free(pre->Qobs[l]);
    }
    free(pre->K);
    free(pre->V);
    free(pre->Qobs);
    pre->K = pre->V = pre->Qobs = NULL;
}

/* The hook sees one prefill of n <= cap tokens at positions 0..n-1 (the caller sets pre->n). */
int eval_prefix_hook(void *ctx, uint32_t layer, size_t n, const float *Q, const float *K,
                     const float *V) {
    eval_prefix *pre = ctx;
    if (n > pre->cap) return -1;
    memcpy(pre->K[layer], K, n * pre->kv_row * sizeof(float));
    memcpy(pre->V[layer], V, n * pre->kv_row * sizeof(float));
    if (pre->Qobs)
        for (size_t t = pre->observe - 1, i = 0; t < n; t += pre->observe, i++)
            memcpy(pre->Qobs[layer] + i * pre->q_row, Q + t * pre->q_row,
                   pre->q_row * sizeof(float));
    return 0;
}

/* ---- the null backend of the exact prefill ---------------------------------------------- */

static subkv_status null_append(llama_attn *a, uint32_t layer, size_t n, const float *K,
                                const float *V, skv_err *err) {
    (void)a;
    (void)layer;
    (void)n;
    (void)K;
    (void)V;
    (void)err;
    return SKV_OK;
}

static subkv_status null_step(llama_attn *a, uint32_t layer, const float *Q, const float *K,
                              const float *V, float *out, skv_err *err) {
    (void)a;
    (void)Q;
    (void)K;
    (void)V;
    (void)out;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                         "eval: the prefill backend stores nothing "
                         "(layer %u)",
                         layer);
}

static size_t null_bytes(llama_attn *a) {
    (void)a;
    return 0;
}

static void null_destroy(llama_attn *a) { free(a); }

static const llama_attn_ops NULL_OPS = {"null", null_append, null_step,
                                        NULL,   null_bytes,  null_destroy};

llama_attn *eval_attn_null(void) {
    llama_attn *a = malloc(sizeof *a);
    if (a) a->ops = &NULL_OPS;
    return a;
}
