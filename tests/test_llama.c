/*
 * test_llama.c — the llama forward pass (tools/llama.h).
 *
 * On a tiny random llama GGUF written by the test (2 layers, GQA 4/2, head_dim 8, weights in
 * f32, f16, q8_0 and q4_1): every position's logits equal a float64 reference forward pass
 * written independently here (adjacent-pair rotary, causal softmax attention, SwiGLU).
 * On the real model (data/SmolLM2-135M-Instruct.Q4_1.gguf, which `make test` fetches; skipped,
 * saying why, only when it is absent because the download failed):
 *  - exact attention through local sketches and through a real service (mpirun job) give
 *    bit-identical logits over a prefill and decode steps;
 *  - a prefill of N tokens then a decode step equals a prefill of N + 1 (last logits, 1e-4
 *    relative), and a prefill in two chunks (the second merging the stored context's partials)
 *    equals one prefill;
 *  - sinkwin, h2o and subgen with a budget that holds every token give exact's logits;
 *  - a session resumed over K, V captured by the hook from another's prefill and appended
 *    straight into its backend (llama_session_resume) decodes bit-identically to it;
 *  - the GGUF's tokenizer (when this build has tools/bpe.h) encodes as Hugging Face's
 *    tokenizer for the same GGUF does (ids recorded from transformers 5.23).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <unistd.h>

#include "gguf_build.h"
#include "llama.h"
#include "llama_tok.h"
#include "svc_harness.h"
#include "test_util.h"
/* after test_util.h: its typedef `suite` would shadow a parameter name there */
#include "model_suite.h"

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1.0));
}

/* A fresh session over m with policy cfg in the given backend; returns logits of the run:
 * prefill tokens[0..pre) then decode tokens[pre..n) one by one, the last step's logits (or the
 * prefill's when pre == n) into out[n_vocab]. */
static void run_tokens(const llama_model *m, llama_attn *a, const int32_t *tokens, size_t pre,
                       size_t n, float *out) {
    llama_session *s = NULL;
    skv_err err = {0};
    TU_OK(llama_session_create(m, a, &s, &err), &err);
    TU_OK(llama_prefill(s, tokens, pre, out, 0, &err), &err);
    for (size_t t = pre; t < n; t++) TU_OK(llama_decode(s, tokens[t], out, &err), &err);
    assert_int_equal(llama_session_pos(s), n);
    llama_session_destroy(s);
}

static llama_attn *local_attn(const llama_model *m, skv_policy_id p, size_t budget) {
    skv_config c;
    skv_config_default(&c, p, (int)llama_model_hparams(m)->head_dim);
    c.budget_bytes = budget;
    c.seed = 7;
    llama_attn *a = NULL;
    skv_err err = {0};
    TU_OK(llama_attn_local_create(llama_model_hparams(m), &c, &a, &err), &err);
    return a;
}

static void random_tokens(synth_rng *r, int32_t *t, size_t n, uint32_t vocab) {
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(synth_rng_u64(r) % vocab);
}

/* ---- tiny random model against a float64 reference ------------------------------------- */

enum { TL = 2, TE = 32, TH = 4, THKV = 2, TD = 8, TF = 64, TV = 40, TN = 11 };

typedef struct tiny {
    float emb[TV][TE], onorm[TE];
    float anorm[TL][TE], fnorm[TL][TE], wq[TL][TE][TE], wk[TL][THKV * TD][TE],
        wv[TL][THKV * TD][TE], wo[TL][TE][TE], wg[TL][TF][TE], wu[TL][TF][TE], wd[TL][TE][TF];
} tiny;

/* Quantise x[n] to q8_0 blocks in place of the float values (x gets the dequantised values). */
static void q8_round(float *x, size_t n, uint8_t *blocks) {
    for (size_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const uint16_t dh = skv_f32_to_f16(amax / 127.0f);
        const float d = skv_f16_to_f32(dh);
        uint8_t *o = blocks + 34 * b;
        memcpy(o, &dh, 2);
        for (int j = 0; j < 32; j++) {
            const long q = lroundf(d > 0 ? x[b * 32 + j] / d : 0.0f);
            o[2 + j] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
            x[b * 32 + j] = d * (float)(int8_t)o[2 + j];
        }
    }
}

/* The same for q4_1: d = (max - min) / 15, m = min. */
static void q41_round(float *x, size_t n, uint8_t *blocks) {
    for (size_t b = 0; b < n / 32; b++) {
        float lo = x[b * 32], hi = x[b * 32];
        for (int j = 1; j < 32; j++) lo = fminf(lo, x[b * 32 + j]), hi = fmaxf(hi, x[b * 32 + j]);
        const uint16_t dh = skv_f32_to_f16((hi - lo) / 15.0f), mh = skv_f32_to_f16(lo);
        const float d = skv_f16_to_f32(dh), m = skv_f16_to_f32(mh);
        uint8_t *o = blocks + 20 * b;
        memcpy(o, &dh, 2);
        memcpy(o + 2, &mh, 2);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) {
            long v = lroundf(d > 0 ? (x[b * 32 + j] - m) / d : 0.0f);
            q[j] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
            x[b * 32 + j] = d * (float)q[j] + m;
        }
        for (int j = 0; j < 16; j++) o[4 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}

/* Write the tiny model (token_embd q8_0, attn_q q4_1, ffn_up f16, the rest f32) to an image;
 * t gets the values the file really holds. */
static skv_buf tiny_image(synth_rng *r, tiny *t) {
    synth_fill_normal(r, &t->emb[0][0], sizeof(tiny) / sizeof(float), 0.3f);
    for (int i = 0; i < TE; i++) t->onorm[i] = 1.0f + 0.1f * (float)synth_rng_normal(r);
    for (int l = 0; l < TL; l++)
        for (int i = 0; i < TE; i++) {
            t->anorm[l][i] = 1.0f + 0.1f * (float)synth_rng_normal(r);
            t->fnorm[l][i] = 1.0f + 0.1f * (float)synth_rng_normal(r);
        }
    gguf_builder b;
    gguf_build_init(&b, 32);
    const uint32_t u[] = {TL, TE, TF, TH, THKV, 128};
    const float base = 10000.0f, eps = 1e-5f;
    gguf_build_string(&b, "general.architecture", "llama");
    gguf_build_scalar(&b, "llama.block_count", GGUF_TYPE_UINT32, &u[0]);
    gguf_build_scalar(&b, "llama.embedding_length", GGUF_TYPE_UINT32, &u[1]);
    gguf_build_scalar(&b, "llama.feed_forward_length", GGUF_TYPE_UINT32, &u[2]);
    gguf_build_scalar(&b, "llama.attention.head_count", GGUF_TYPE_UINT32, &u[3]);
    gguf_build_scalar(&b, "llama.attention.head_count_kv", GGUF_TYPE_UINT32, &u[4]);
    gguf_build_scalar(&b, "llama.context_length", GGUF_TYPE_UINT32, &u[5]);
    gguf_build_scalar(&b, "llama.rope.freq_base", GGUF_TYPE_FLOAT32, &base);
    gguf_build_scalar(&b, "llama.attention.layer_norm_rms_epsilon", GGUF_TYPE_FLOAT32, &eps);
    static uint8_t q8[TV * TE / 32 * 34], q41[TL][TE * TE / 32 * 20];
    static uint16_t h16[TL][TF * TE];
    q8_round(&t->emb[0][0], TV * TE, q8);
    gguf_build_tensor(&b, "token_embd.weight", 2, (uint64_t[]){TE, TV}, GGML_Q8_0, q8, sizeof q8);
    gguf_build_tensor(&b, "output_norm.weight", 1, (uint64_t[]){TE}, GGML_F32, t->onorm,
                      sizeof t->onorm);
    for (int l = 0; l < TL; l++) {
        char nm[64];
#define PUT(suffix, a, bb, type, data, bytes)                                                      \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                  \
    gguf_build_tensor(&b, nm, (bb) > 1 ? 2 : 1, (uint64_t[]){a, bb}, type, data, bytes)
        q41_round(&t->wq[l][0][0], TE * TE, q41[l]);
        for (int i = 0; i < TF * TE; i++) {
            h16[l][i] = skv_f32_to_f16((&t->wu[l][0][0])[i]);
            (&t->wu[l][0][0])[i] = skv_f16_to_f32(h16[l][i]);
        }
        PUT("attn_norm.weight", TE, 1, GGML_F32, t->anorm[l], sizeof t->anorm[l]);
        PUT("ffn_norm.weight", TE, 1, GGML_F32, t->fnorm[l], sizeof t->fnorm[l]);
        PUT("attn_q.weight", TE, TE, GGML_Q4_1, q41[l], sizeof q41[l]);
        PUT("attn_k.weight", TE, THKV * TD, GGML_F32, t->wk[l], sizeof t->wk[l]);
        PUT("attn_v.weight", TE, THKV * TD, GGML_F32, t->wv[l], sizeof t->wv[l]);
        PUT("attn_output.weight", TE, TE, GGML_F32, t->wo[l], sizeof t->wo[l]);
        PUT("ffn_gate.weight", TE, TF, GGML_F32, t->wg[l], sizeof t->wg[l]);
        PUT("ffn_up.weight", TE, TF, GGML_F16, h16[l], sizeof h16[l]);
        PUT("ffn_down.weight", TF, TE, GGML_F32, t->wd[l], sizeof t->wd[l]);
#undef PUT
    }
    skv_buf img = {0};
    skv_err err = {0};
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    return img;
}

static void ref_rmsnorm(const double *x, const float *w, double *out) {
    double ss = 0.0;
    for (int i = 0; i < TE; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / TE + 1e-5);
    for (int i = 0; i < TE; i++) out[i] = x[i] * r * w[i];
}

static void ref_matvec(const float *W, const double *x, int out, int in, double *y) {
    for (int o = 0; o < out; o++) {
        double s = 0.0;
        for (int i = 0; i < in; i++) s += (double)W[o * in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rope(double *v, int heads, int pos) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < TD / 2; i++) {
            const double a = pos * pow(10000.0, -2.0 * i / TD);
            double *p = v + h * TD + 2 * i, x0 = p[0], x1 = p[1];
            p[0] = x0 * cos(a) - x1 * sin(a);
            p[1] = x0 * sin(a) + x1 * cos(a);
        }
}

/* logits[TN][TV] of every position, in float64. */
static void ref_forward(const tiny *t, const int32_t *tok, double *logits) {
    static double x[TN][TE], h[TE], q[TN][TE], k[TN][THKV * TD], v[TN][THKV * TD], att[TE], g[TF],
        uu[TF], o[TE];
    for (int p = 0; p < TN; p++)
        for (int i = 0; i < TE; i++) x[p][i] = t->emb[tok[p]][i];
    for (int l = 0; l < TL; l++) {
        for (int p = 0; p < TN; p++) {
            ref_rmsnorm(x[p], t->anorm[l], h);
            ref_matvec(&t->wq[l][0][0], h, TE, TE, q[p]);
            ref_matvec(&t->wk[l][0][0], h, THKV * TD, TE, k[p]);
            ref_matvec(&t->wv[l][0][0], h, THKV * TD, TE, v[p]);
            ref_rope(q[p], TH, p);
            ref_rope(k[p], THKV, p);
        }
        for (int p = 0; p < TN; p++) {
            for (int j = 0; j < TH; j++) {
                const int kh = j / (TH / THKV);
                double s[TN], m = -INFINITY, z = 0.0;
                for (int c = 0; c <= p; c++) {
                    s[c] = 0.0;
                    for (int i = 0; i < TD; i++) s[c] += q[p][j * TD + i] * k[c][kh * TD + i];
                    s[c] /= sqrt((double)TD);
                    m = fmax(m, s[c]);
                }
                for (int i = 0; i < TD; i++) att[j * TD + i] = 0.0;
                for (int c = 0; c <= p; c++) {
                    const double w = exp(s[c] - m);
                    z += w;
                    for (int i = 0; i < TD; i++) att[j * TD + i] += w * v[c][kh * TD + i];
                }
                for (int i = 0; i < TD; i++) att[j * TD + i] /= z;
            }
            ref_matvec(&t->wo[l][0][0], att, TE, TE, o);
            for (int i = 0; i < TE; i++) x[p][i] += o[i];
            ref_rmsnorm(x[p], t->fnorm[l], h);
            ref_matvec(&t->wg[l][0][0], h, TF, TE, g);
            ref_matvec(&t->wu[l][0][0], h, TF, TE, uu);
            for (int i = 0; i < TF; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * uu[i];
            ref_matvec(&t->wd[l][0][0], g, TE, TF, o);
            for (int i = 0; i < TE; i++) x[p][i] += o[i];
        }
    }
    for (int p = 0; p < TN; p++) {
        ref_rmsnorm(x[p], t->onorm, h);
        ref_matvec(&t->emb[0][0], h, TV, TE, logits + p * TV);
    }
}

static void test_llama_tiny_model_matches_float64_reference(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    tiny *t = tu_malloc(sizeof *t);
    skv_buf img = tiny_image(&r, t);
    char path[] = "/tmp/skv_llama_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img.data, img.len), (ssize_t)img.len);
    close(fd);
    llama_model *m = NULL;
    skv_err err = {0};
    TU_OK(llama_model_load(path, &m, &err), &err);
    unlink(path);
    const llama_hparams *hp = llama_model_hparams(m);
    assert_int_equal(hp->n_vocab, TV);
    assert_int_equal(hp->head_dim, TD);
    int32_t tok[TN];
    random_tokens(&r, tok, TN, TV);
    static double ref[TN * TV];
    ref_forward(t, tok, ref);
    float got[TN * TV];
    /* every position from one prefill, and the last through prefill + decode steps */
    llama_attn *a = local_attn(m, SKV_POLICY_EXACT, 0);
    llama_session *s = NULL;
    TU_OK(llama_session_create(m, a, &s, &err), &err);
    TU_OK(llama_prefill(s, tok, TN, got, 1, &err), &err);
    for (int p = 0; p < TN; p++) {
        double num = 0, den = 0;
        for (int i = 0; i < TV; i++) {
            num += (got[p * TV + i] - ref[p * TV + i]) * (got[p * TV + i] - ref[p * TV + i]);
            den += ref[p * TV + i] * ref[p * TV + i];
        }
        if (sqrt(num / den) > 1e-4) fail_msg("position %d: rel error %.3e", p, sqrt(num / den));
    }
    llama_session_destroy(s);
    llama_attn_destroy(a);
    a = local_attn(m, SKV_POLICY_EXACT, 0);
    run_tokens(m, a, tok, 3, TN, got);
    double num = 0, den = 0;
    for (int i = 0; i < TV; i++) {
        const double e = got[i] - ref[(TN - 1) * TV + i];
        num += e * e, den += ref[(TN - 1) * TV + i] * ref[(TN - 1) * TV + i];
    }
    assert_true(sqrt(num / den) <= 1e-4);
    /* a token outside the vocabulary is refused */
    llama_attn_destroy(a);
    a = local_attn(m, SKV_POLICY_EXACT, 0);
    TU_OK(llama_session_create(m, a, &s, &err), &err);
    const int32_t bad = TV;
    assert_int_equal(llama_prefill(s, &bad, 1, got, 0, &err), SKV_ERR_INVALID_ARG);
    llama_session_destroy(s);
    llama_attn_destroy(a);
    llama_model_free(m);
    skv_buf_free(&img);
    free(t);
}

static void test_llama_rejects_other_architectures_and_missing_tensors(void **state) {
    (void)state;
    gguf_builder b;
    gguf_build_init(&b, 32);
    gguf_build_string(&b, "general.architecture", "gpt2");
    skv_buf img = {0};
    skv_err err = {0};
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    char path[] = "/tmp/skv_llama_XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, img.data, img.len), (ssize_t)img.len);
    close(fd);
    llama_model *m = NULL;
    assert_int_equal(llama_model_load(path, &m, &err), SKV_ERR_UNSUPPORTED);
    assert_null(m);
    skv_buf_free(&img);
    /* the tiny model without its last tensor */
    synth_rng r;
    tu_rng_for(&r, __func__);
    tiny *t = tu_malloc(sizeof *t);
    img = tiny_image(&r, t);
    gguf_file *g = NULL;
    TU_OK(gguf_open_memory(img.data, img.len, &g, &err), &err);
    assert_non_null(gguf_find_tensor(g, "blk.1.ffn_down.weight"));
    gguf_close(g);
    /* rename the tensor in place: same length, so every offset stays valid */
    uint8_t *hit = NULL;
    for (size_t i = 0; !hit && i + 14 <= img.len; i++)
        if (!memcmp(img.data + i, "blk.1.ffn_down", 14)) hit = img.data + i;
    assert_non_null(hit);
    memcpy(hit, "blk.1.ffn_dowX", 14);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, img.data, img.len), (ssize_t)img.len);
    close(fd);
    assert_int_equal(llama_model_load(path, &m, &err), SKV_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "blk.1.ffn_down.weight"));
    unlink(path);
    skv_buf_free(&img);
    free(t);
}

/* ---- the real model -------------------------------------------------------------------- */

static void test_llama_local_and_service_exact_are_identical(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const llama_hparams *hp = llama_model_hparams(su->real);
    enum { N = 24, PRE = 19 };
    int32_t tok[N];
    random_tokens(&r, tok, N, hp->n_vocab);
    float *lo = tu_malloc(hp->n_vocab * sizeof(float)),
          *sv = tu_malloc(hp->n_vocab * sizeof(float));
    llama_attn *a = local_attn(su->real, SKV_POLICY_EXACT, 0);
    run_tokens(su->real, a, tok, PRE, N, lo);
    llama_attn_destroy(a);

    svc_fixture *fx = NULL;
    assert_int_equal(svc_fixture_setup((void **)&fx), 0);
    if (svc_job_start(&fx->job[0], 2, NULL, NULL) != 0) {
        svc_fixture_teardown((void **)&fx);
        fail_msg("could not start the service");
    }
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, (int)hp->head_dim);
    c.seed = 7;
    skv_err err = {0};
    subkv_status st = llama_attn_service_create(hp, &c, fx->job[0].addr, NULL, &a, &err);
    if (st == SKV_OK) {
        run_tokens(su->real, a, tok, PRE, N, sv);
        llama_attn_destroy(a);
    }
    const int stop = svc_job_stop(&fx->job[0]);
    svc_fixture_teardown((void **)&fx);
    TU_OK(st, &err);
    assert_int_equal(stop, 0);
    const double d = rel_diff(sv, lo, hp->n_vocab);
    printf("# local vs service: relative difference %.3e\n", d);
    assert_memory_equal(sv, lo, hp->n_vocab * sizeof(float));
    free(lo);
    free(sv);
}

static void test_llama_decode_step_equals_longer_prefill(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const llama_hparams *hp = llama_model_hparams(su->real);
    const size_t N = tu_rand_range(&r, 20, 150);
    int32_t *tok = tu_malloc((N + 1) * sizeof *tok);
    random_tokens(&r, tok, N + 1, hp->n_vocab);
    float *a1 = tu_malloc(hp->n_vocab * sizeof(float)),
          *a2 = tu_malloc(hp->n_vocab * sizeof(float));
    llama_attn *a = local_attn(su->real, SKV_POLICY_EXACT, 0);
    run_tokens(su->real, a, tok, N, N + 1, a1); /* prefill N, decode 1 */
    llama_attn_destroy(a);
    a = local_attn(su->real, SKV_POLICY_EXACT, 0);
    run_tokens(su->real, a, tok, N + 1, N + 1, a2); /* prefill N + 1 */
    llama_attn_destroy(a);
    double d = rel_diff(a1, a2, hp->n_vocab);
    printf("# N = %zu: decode vs prefill relative difference %.3e\n", N, d);
    assert_true(d <= 1e-4);
    /* two prefill chunks: the second attends the stored context through the partials */
    a = local_attn(su->real, SKV_POLICY_EXACT, 0);
    llama_session *s = NULL;
    skv_err err = {0};
    TU_OK(llama_session_create(su->real, a, &s, &err), &err);
    const size_t cut = N / 2;
    TU_OK(llama_prefill(s, tok, cut, NULL, 0, &err), &err);
    TU_OK(llama_prefill(s, tok + cut, N + 1 - cut, a1, 0, &err), &err);
    llama_session_destroy(s);
    llama_attn_destroy(a);
    d = rel_diff(a1, a2, hp->n_vocab);
    printf("# two chunks (%zu + %zu) vs one prefill: relative difference %.3e\n", cut, N + 1 - cut,
           d);
    assert_true(d <= 1e-4);
    free(a1);
    free(a2);
    free(tok);
}

/* What a Q/K/V hook saw of one prefill: K, V per layer. */
typedef struct kv_capture {
    float *K[64], *V[64];
    size_t row;
} kv_capture;

static int capture_kv(void *ctx, uint32_t layer, size_t n, const float *Q, const float *K,
                      const float *V) {
    kv_capture *c = ctx;
    (void)Q;
    if (layer >= 64) return -1;
    c->K[layer] = malloc(n * c->row * sizeof(float));
    c->V[layer] = malloc(n * c->row * sizeof(float));
    if (!c->K[layer] || !c->V[layer]) return -1;
    memcpy(c->K[layer], K, n * c->row * sizeof(float));
    memcpy(c->V[layer], V, n * c->row * sizeof(float));
    return 0;
}

/* A session resumed over K, V appended straight into its backend (what subkv-eval does with
 * one exact prefill per window) decodes bit-identically to the session that prefilled them;
 * resume refuses a session that has already processed tokens. */
static void test_llama_resume_after_captured_prefix_equals_prefill(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const llama_hparams *hp = llama_model_hparams(su->real);
    const size_t N = tu_rand_range(&r, 20, 150), steps = 3;
    int32_t *tok = tu_malloc((N + steps) * sizeof *tok);
    random_tokens(&r, tok, N + steps, hp->n_vocab);
    float *a1 = tu_malloc(hp->n_vocab * sizeof(float)),
          *a2 = tu_malloc(hp->n_vocab * sizeof(float));
    kv_capture cap = {.row = (size_t)hp->n_head_kv * hp->head_dim};
    skv_err err = {0};
    llama_attn *a = local_attn(su->real, SKV_POLICY_EXACT, 0), *b = NULL;
    llama_session *s = NULL, *t = NULL;
    TU_OK(llama_session_create(su->real, a, &s, &err), &err);
    llama_session_set_hook(s, capture_kv, &cap);
    TU_OK(llama_prefill(s, tok, N, NULL, 0, &err), &err);
    llama_session_set_hook(s, NULL, NULL);
    assert_int_equal(llama_session_resume(s, N, &err), SKV_ERR_INVALID_ARG);
    b = local_attn(su->real, SKV_POLICY_EXACT, 0);
    for (uint32_t l = 0; l < hp->n_layer; l++)
        TU_OK(b->ops->append(b, l, N, cap.K[l], cap.V[l], &err), &err);
    TU_OK(llama_session_create(su->real, b, &t, &err), &err);
    TU_OK(llama_session_resume(t, N, &err), &err);
    assert_int_equal(llama_session_pos(t), N);
    for (size_t k = 0; k < steps; k++) {
        TU_OK(llama_decode(s, tok[N + k], a1, &err), &err);
        TU_OK(llama_decode(t, tok[N + k], a2, &err), &err);
        assert_memory_equal(a1, a2, hp->n_vocab * sizeof(float));
    }
    llama_session_destroy(s);
    llama_session_destroy(t);
    llama_attn_destroy(a);
    llama_attn_destroy(b);
    for (uint32_t l = 0; l < hp->n_layer && l < 64; l++) free(cap.K[l]), free(cap.V[l]);
    free(a1);
    free(a2);
    free(tok);
}

static void test_llama_budget_that_holds_everything_matches_exact(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const llama_hparams *hp = llama_model_hparams(su->real);
    enum { N = 48, PRE = 40 }; /* fewer than subgen's sinks + window: all held exactly */
    int32_t tok[N];
    random_tokens(&r, tok, N, hp->n_vocab);
    float *ex = tu_malloc(hp->n_vocab * sizeof(float)),
          *got = tu_malloc(hp->n_vocab * sizeof(float));
    llama_attn *a = local_attn(su->real, SKV_POLICY_EXACT, 0);
    run_tokens(su->real, a, tok, PRE, N, ex);
    llama_attn_destroy(a);
    const skv_policy_id pols[] = {SKV_POLICY_SINKWIN, SKV_POLICY_H2O, SKV_POLICY_SUBGEN};
    for (size_t i = 0; i < 3; i++) {
        /* 256 KiB per head at f32, d 64: room for hundreds of tokens, far more than N */
        a = local_attn(su->real, pols[i], 256 << 10);
        run_tokens(su->real, a, tok, PRE, N, got);
        llama_attn_destroy(a);
        const double d = rel_diff(got, ex, hp->n_vocab);
        printf("# %s with a budget holding every token vs exact: %.3e\n", skv_policy_name(pols[i]),
               d);
        if (d > 1e-5) fail_msg("%s differs from exact by %.3e", skv_policy_name(pols[i]), d);
    }
    free(ex);
    free(got);
}

static void test_llama_gguf_tokenizer_matches_hugging_face(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    if (!llama_tok_available()) {
        printf("# skipped: this build has no tokenizer (tools/bpe.h not in the tree yet)\n");
        skip();
    }
    static const struct {
        const char *text;
        int32_t ids[24];
        size_t n;
    } cases[] = {
        {"The capital of France is", {504, 3575, 282, 4649, 314}, 5},
        {"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
         {1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198},
         16},
        {"  na\xc3\xafve caf\xc3\xa9, 12345 d\xc3\xa9j\xc3\xa0-vu!\n\tTabs",
         {216,   15486, 46494, 37366, 28,  216, 33, 34,  35,  36, 37,
          32564, 90,    16739, 29,    102, 101, 17, 198, 197, 68, 7366},
         22},
    };
    llama_tok *tok = NULL;
    skv_err err = {0};
    TU_OK(llama_tok_open(llama_model_gguf(su->real), &tok, &err), &err);
    assert_int_equal(llama_tok_eos(tok), 2);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t *ids = NULL;
        size_t n = 0;
        TU_OK(llama_tok_encode(tok, cases[c].text, strlen(cases[c].text), 1, 1, &ids, &n, &err),
              &err);
        assert_int_equal(n, cases[c].n);
        assert_memory_equal(ids, cases[c].ids, n * sizeof *ids);
        free(ids);
    }
    llama_tok_free(tok);
}

int main(void) {
    tu_suite_begin("llama");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_tiny_model_matches_float64_reference),
        cmocka_unit_test(test_llama_rejects_other_architectures_and_missing_tensors),
        cmocka_unit_test(test_llama_local_and_service_exact_are_identical),
        cmocka_unit_test(test_llama_decode_step_equals_longer_prefill),
        cmocka_unit_test(test_llama_budget_that_holds_everything_matches_exact),
        cmocka_unit_test(test_llama_gguf_tokenizer_matches_hugging_face),
        cmocka_unit_test(test_llama_resume_after_captured_prefix_equals_prefill),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
