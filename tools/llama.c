/*
 * llama.c — the forward pass (see llama.h for the math). Prefill runs every projection as one
 * sgemm over the chunk's tokens and the chunk's causal attention as blocked sgemms per head;
 * decode runs sgemv and sends attention to the backend's step.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llama_internal.h"
#include "skv_check.h"

enum { QBLOCK = 128 }; /* query rows per block of the in-chunk attention */

struct llama_session {
    const llama_model *m;
    llama_attn *attn;
    uint64_t pos;
    llama_qkv_hook hook;
    void *hook_ctx;
    float *inv_freq; /* [d/2]: base^(-2i/d) */
    size_t cap;      /* tokens the scratch below holds */
    float *x, *h, *q, *k, *v, *att, *g, *u, *scores, *ctxp;
};

subkv_status llama_session_create(const llama_model *m, llama_attn *attn, llama_session **out,
                                  skv_err *err) {
    if (!m || !attn || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: NULL arg");
    llama_session *s = calloc(1, sizeof *s);
    if (!s) return skv_set_error(err, SKV_ERR_NOMEM, "llama: session");
    s->m = m;
    s->attn = attn;
    const uint32_t d = m->hp.head_dim;
    s->inv_freq = malloc(d / 2 * sizeof(float));
    if (!s->inv_freq) {
        free(s);
        return skv_set_error(err, SKV_ERR_NOMEM, "llama: rotary table");
    }
    /* As HF computes it: 1 / base^(2i/d) rounded to float. */
    for (uint32_t i = 0; i < d / 2; i++)
        s->inv_freq[i] = (float)(1.0 / pow((double)m->hp.rope_base, (double)(2 * i) / d));
    *out = s;
    return SKV_OK;
}

static void free_scratch(llama_session *s) {
    float **bufs[] = {&s->x,   &s->h, &s->q, &s->k,      &s->v,
                      &s->att, &s->g, &s->u, &s->scores, &s->ctxp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    s->cap = 0;
}

void llama_session_destroy(llama_session *s) {
    if (!s) return;
    free_scratch(s);
    free(s->inv_freq);
    free(s);
}

void llama_session_set_hook(llama_session *s, llama_qkv_hook hook, void *ctx) {
    s->hook = hook;
    s->hook_ctx = ctx;
}

uint64_t llama_session_pos(const llama_session *s) { return s->pos; }

subkv_status llama_session_resume(llama_session *s, uint64_t pos, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: NULL session");
    if (s->pos != 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "llama: resume on a session already at position %llu",
                             (unsigned long long)s->pos);
    s->pos = pos;
    return SKV_OK;
}

/* Scratch for n tokens (kept between calls: decode allocates nothing after the first step). */
static subkv_status ensure_scratch(llama_session *s, size_t n, skv_err *err) {
    if (n <= s->cap) return SKV_OK;
    free_scratch(s);
    const llama_hparams *hp = &s->m->hp;
    const size_t E = hp->n_embd, KV = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const size_t ctxp = n * hp->n_head * skv_partial_stride((int)hp->head_dim) / sizeof(float);
    s->x = malloc(n * E * sizeof(float));
    s->h = malloc(n * E * sizeof(float));
    s->q = malloc(n * E * sizeof(float));
    s->att = malloc(n * E * sizeof(float));
    s->k = malloc(n * KV * sizeof(float));
    s->v = malloc(n * KV * sizeof(float));
    s->g = malloc(n * F * sizeof(float));
    s->u = malloc(n * F * sizeof(float));
    s->scores = malloc((size_t)QBLOCK * n * sizeof(float));
    s->ctxp = malloc(ctxp * sizeof(float));
    if (!s->x || !s->h || !s->q || !s->att || !s->k || !s->v || !s->g || !s->u || !s->scores ||
        !s->ctxp) {
        free_scratch(s);
        return skv_set_error(err, SKV_ERR_NOMEM, "llama: scratch for %zu tokens", n);
    }
    s->cap = n;
    return SKV_OK;
}

/* y[n][out] = x[n][in] W^T (+ y when accumulate); W is [out][in]. */
static void linear(const float *x, size_t n, const float *W, size_t in, size_t out, float *y,
                   int accumulate) {
    const float beta = accumulate ? 1.0f : 0.0f;
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, W, (int)in, x, 1, beta, y,
                    1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x,
                    (int)in, W, (int)in, beta, y, (int)out);
}

/* out = x / sqrt(mean(x^2) + eps) * w, per token. */
static void rmsnorm(const float *x, size_t n, size_t E, const float *w, float eps, float *out) {
    for (size_t t = 0; t < n; t++) {
        const float *xt = x + t * E;
        double ss = 0.0;
        for (size_t i = 0; i < E; i++) ss += (double)xt[i] * xt[i];
        const float r = (float)(1.0 / sqrt(ss / (double)E + (double)eps));
        for (size_t i = 0; i < E; i++) out[t * E + i] = xt[i] * r * w[i];
    }
}

/* Rotary on heads [n][heads][d] at positions pos0 + t: adjacent pairs (2i, 2i+1). */
static void rope(float *x, size_t n, uint32_t heads, uint32_t d, uint64_t pos0,
                 const float *inv_freq) {
    for (size_t t = 0; t < n; t++) {
        const float p = (float)(pos0 + t);
        for (uint32_t i = 0; i < d / 2; i++) {
            const float a = p * inv_freq[i]; /* float, like HF's position x inv_freq */
            const float c = (float)cos((double)a), sn = (float)sin((double)a);
            for (uint32_t h = 0; h < heads; h++) {
                float *r = x + (t * heads + h) * d + 2 * i;
                const float x0 = r[0], x1 = r[1];
                r[0] = x0 * c - x1 * sn;
                r[1] = x0 * sn + x1 * c;
            }
        }
    }
}

/*
 * Causal attention of the chunk's n queries over the chunk's own keys, exact, per head in
 * blocks of QBLOCK query rows: S = Q K^T / sqrt(d) (sgemm), row softmax with the causal mask,
 * O = P V (sgemm). With ctx (the backend's partials of the stored context, [n][n_head]) the
 * chunk's partial {m, l, o} is merged with the context's before normalising.
 */
static void chunk_attention(llama_session *s, size_t n, const skv_partial *ctx) {
    const llama_hparams *hp = &s->m->hp;
    const uint32_t d = hp->head_dim, H = hp->n_head, G = hp->n_head / hp->n_head_kv;
    const size_t ldq = (size_t)H * d, ldk = (size_t)hp->n_head_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    float tmp[2 + 1024];
    skv_partial *part = (skv_partial *)tmp;
    for (uint32_t j = 0; j < H; j++) {
        const float *K = s->k + (size_t)(j / G) * d, *V = s->v + (size_t)(j / G) * d;
        for (size_t i0 = 0; i0 < n; i0 += QBLOCK) {
            const size_t rows = n - i0 < QBLOCK ? n - i0 : QBLOCK, cols = i0 + rows;
            float *S = s->scores;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)d,
                        scale, s->q + i0 * ldq + (size_t)j * d, (int)ldq, K, (int)ldk, 0.0f, S,
                        (int)cols);
            float ms[QBLOCK], ls[QBLOCK];
            for (size_t r = 0; r < rows; r++) {
                float *row = S + r * cols;
                const size_t upto = i0 + r + 1; /* causal: keys 0..i0+r */
                float m = row[0];
                for (size_t c = 1; c < upto; c++) m = row[c] > m ? row[c] : m;
                double l = 0.0;
                for (size_t c = 0; c < upto; c++) {
                    row[c] = expf(row[c] - m);
                    l += row[c];
                }
                for (size_t c = upto; c < cols; c++) row[c] = 0.0f;
                ms[r] = m;
                ls[r] = (float)l;
            }
            float *O = s->att + i0 * ldq + (size_t)j * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)d, (int)cols,
                        1.0f, S, (int)cols, V, (int)ldk, 0.0f, O, (int)ldq);
            for (size_t r = 0; r < rows; r++) {
                float *o = O + r * ldq;
                if (!ctx) {
                    const float inv = 1.0f / ls[r];
                    for (uint32_t c = 0; c < d; c++) o[c] *= inv;
                    continue;
                }
                part->m = ms[r];
                part->l = ls[r];
                memcpy(part->o, o, d * sizeof(float));
                skv_partial_merge(part, skv_partial_at((void *)ctx, (int)d, (i0 + r) * H + j),
                                  (int)d);
                skv_partial_output(part, (int)d, o);
            }
        }
    }
}

/* Attention of the n tokens now in s->q/k/v at positions pos..pos+n-1, into s->att. */
static subkv_status attention(llama_session *s, uint32_t layer, size_t n, int decode,
                              skv_err *err) {
    llama_attn *a = s->attn;
    if (decode) return a->ops->step(a, layer, s->q, s->k, s->v, s->att, err);
    skv_partial *ctx = NULL;
    if (s->pos > 0) {
        if (!a->ops->attend_partials) { /* backend without partials: token by token */
            const llama_hparams *hp = &s->m->hp;
            const size_t E = hp->n_embd, KV = (size_t)hp->n_head_kv * hp->head_dim;
            for (size_t t = 0; t < n; t++)
                SKV_CHECK(a->ops->step(a, layer, s->q + t * E, s->k + t * KV, s->v + t * KV,
                                       s->att + t * E, err));
            return SKV_OK;
        }
        ctx = (skv_partial *)s->ctxp;
        SKV_CHECK(a->ops->attend_partials(a, layer, n, s->q, ctx, err));
    }
    chunk_attention(s, n, ctx);
    return a->ops->append(a, layer, n, s->k, s->v, err);
}

static subkv_status forward(llama_session *s, const int32_t *tokens, size_t n, int decode,
                            float *logits, int all_logits, skv_err *err) {
    const llama_model *m = s->m;
    const llama_hparams *hp = &m->hp;
    if (!tokens || n == 0) return skv_set_error(err, SKV_ERR_EMPTY, "llama: no tokens");
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: token %d outside [0, %u)",
                                 (int)tokens[t], hp->n_vocab);
    SKV_CHECK(ensure_scratch(s, n, err));
    const size_t E = hp->n_embd, F = hp->n_ff, d = hp->head_dim;
    const size_t KV = (size_t)hp->n_head_kv * d;
    for (size_t t = 0; t < n; t++)
        memcpy(s->x + t * E, m->tok_embd + (size_t)tokens[t] * E, E * sizeof(float));
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        rmsnorm(s->x, n, E, L->attn_norm, hp->rms_eps, s->h);
        linear(s->h, n, L->wq, E, E, s->q, 0);
        linear(s->h, n, L->wk, E, KV, s->k, 0);
        linear(s->h, n, L->wv, E, KV, s->v, 0);
        rope(s->q, n, hp->n_head, hp->head_dim, s->pos, s->inv_freq);
        rope(s->k, n, hp->n_head_kv, hp->head_dim, s->pos, s->inv_freq);
        if (s->hook && s->hook(s->hook_ctx, l, n, s->q, s->k, s->v) != 0)
            return skv_set_error(err, SKV_ERR_IO, "llama: the Q/K/V hook failed at layer %u", l);
        SKV_CHECK(attention(s, l, n, decode, err));
        linear(s->att, n, L->wo, E, E, s->x, 1);
        rmsnorm(s->x, n, E, L->ffn_norm, hp->rms_eps, s->h);
        linear(s->h, n, L->w_gate, E, F, s->g, 0);
        linear(s->h, n, L->w_up, E, F, s->u, 0);
        for (size_t i = 0; i < n * F; i++) { /* SwiGLU: silu(g) * u */
            const float g = s->g[i];
            s->g[i] = g / (1.0f + expf(-g)) * s->u[i];
        }
        linear(s->g, n, L->w_down, F, E, s->x, 1);
    }
    s->pos += n;
    if (!logits) return SKV_OK;
    const size_t first = all_logits ? 0 : n - 1, rows = n - first;
    rmsnorm(s->x + first * E, rows, E, m->out_norm, hp->rms_eps, s->h);
    linear(s->h, rows, m->output, E, hp->n_vocab, logits, 0);
    return SKV_OK;
}

subkv_status llama_prefill(llama_session *s, const int32_t *tokens, size_t n, float *logits,
                           int all_logits, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: NULL session");
    return forward(s, tokens, n, 0, logits, all_logits, err);
}

subkv_status llama_decode(llama_session *s, int32_t token, float *logits, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: NULL session");
    return forward(s, &token, 1, 1, logits, 0, err);
}

int32_t llama_argmax(const float *logits, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

double llama_nll(const float *logits, uint32_t n, int32_t target) {
    float m = logits[0];
    for (uint32_t i = 1; i < n; i++) m = logits[i] > m ? logits[i] : m;
    double z = exp((double)logits[0] - m); /* >= e^(min - max) > 0; 1 at the max */
    for (uint32_t i = 1; i < n; i++) z += exp((double)logits[i] - m);
    return log(z) + m - (double)logits[target];
}
