/*
 * subkv-llama-bench — speed of the C llama runner on this machine: model load, batched prefill
 * and one-token decode (exact attention, in-process), and the choice behind the weights' format:
 * a decode step's matrix-vector products over float32 weights dequantised at load (CBLAS sgemv,
 * what the runner does) against the same products dequantising the GGUF's q4_1 / q8_0 rows on
 * the fly (plain C: per 32-block, d * sum(q x) + m * sum(x)). Best of --reps runs each; every
 * row of the on-the-fly product is checked against sgemv (max relative difference printed).
 *
 *   subkv-llama-bench [--model PATH] [--prompt 512] [--decode 64] [--reps 3]
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "llama_internal.h"
#include "skv_internal.h"
#include "subkv_cli.h"
#include "synth.h"

static void usage(FILE *f) {
    fprintf(f, "usage: subkv-llama-bench [--model PATH] [--prompt N] [--decode M] [--reps R]\n"
               "Load, prefill N random tokens (default 512), decode M (64), best of R (3); then\n"
               "one decode step's weight products: f32 sgemv vs on-the-fly q4_1/q8_0 rows.\n");
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return skv_f16_to_f32(h);
}

/* y[rows] = W x for a q4_1 or q8_0 matrix of rows x cols (cols a multiple of 32). */
static void quant_matvec(const gguf_tensor *t, const float *x, float *y) {
    const uint64_t cols = t->ne[0], rows = t->ne[1], nb = cols / 32;
    const uint64_t bb = ggml_block_bytes(t->type);
    float xs[4096 / 32]; /* per-block sums of x (q4_1's m term) */
    for (uint64_t b = 0; b < nb; b++) {
        float s = 0.0f;
        for (int j = 0; j < 32; j++) s += x[b * 32 + j];
        xs[b] = s;
    }
    for (uint64_t r = 0; r < rows; r++) {
        const uint8_t *p = t->data + r * nb * bb;
        float acc = 0.0f;
        for (uint64_t b = 0; b < nb; b++, p += bb) {
            const float *xb = x + b * 32;
            float s = 0.0f;
            if (t->type == GGML_Q4_1) {
                for (int j = 0; j < 16; j++)
                    s += (float)(p[4 + j] & 15) * xb[j] + (float)(p[4 + j] >> 4) * xb[j + 16];
                acc += half_at(p) * s + half_at(p + 2) * xs[b];
            } else {
                for (int j = 0; j < 32; j++) s += (float)(int8_t)p[2 + j] * xb[j];
                acc += half_at(p) * s;
            }
        }
        y[r] = acc;
    }
}

typedef struct mat {
    const float *f32;
    const gguf_tensor *q;
} mat;

int main(int argc, char **argv) {
    lcli_opts o;
    lcli_defaults(&o);
    uint64_t prompt = 512, decode = 64, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = lcli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        uint64_t *dst = !strcmp(a, "--prompt")   ? &prompt
                        : !strcmp(a, "--decode") ? &decode
                        : !strcmp(a, "--reps")   ? &reps
                                                 : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!dst || i + 1 >= argc || cli_parse_size(argv[++i], dst) || *dst == 0) {
            usage(stderr);
            return 2;
        }
    }
    lcli_run run = {0};
    double t0 = cli_now_ms();
    if (lcli_open(&o, &run) != 0) return 1;
    const double load_ms = cli_now_ms() - t0;
    const llama_model *m = run.model;
    const llama_hparams *hp = &m->hp;
    int rc = 1;
    int32_t *tok = malloc((prompt + decode) * sizeof *tok);
    float *logits = malloc(hp->n_vocab * sizeof(float));
    float *x = malloc(hp->n_ff * sizeof(float)), *y1 = malloc(hp->n_ff * sizeof(float)),
          *y2 = malloc(hp->n_ff * sizeof(float));
    mat *mats = calloc((size_t)hp->n_layer * 7, sizeof *mats);
    if (!tok || !logits || !x || !y1 || !y2 || !mats) goto done;
    synth_rng rng;
    synth_rng_seed(&rng, 1);
    for (uint64_t i = 0; i < prompt + decode; i++)
        tok[i] = (int32_t)(synth_rng_u64(&rng) % hp->n_vocab);
    double best_pre = INFINITY, best_dec = INFINITY;
    skv_err err = {0};
    for (uint64_t r = 0; r < reps; r++) {
        if (r > 0 && lcli_reset(&o, &run) != 0) goto done;
        t0 = cli_now_ms();
        if (llama_prefill(run.sess, tok, prompt, logits, 0, &err) != SKV_OK) {
            cli_fail("prefill", &err);
            goto done;
        }
        const double t1 = cli_now_ms();
        for (uint64_t k = 0; k < decode; k++)
            if (llama_decode(run.sess, tok[prompt + k], logits, &err) != SKV_OK) {
                cli_fail("decode", &err);
                goto done;
            }
        best_pre = fmin(best_pre, t1 - t0);
        best_dec = fmin(best_dec, cli_now_ms() - t1);
    }
    printf("# model %s: %u layers, embd %u, ffn %u, vocab %u; load + dequantise %.0f ms\n", o.model,
           hp->n_layer, hp->n_embd, hp->n_ff, hp->n_vocab, load_ms);
    printf("prefill %llu tokens: %.1f ms (%.1f tokens/s); decode %llu tokens after it: %.1f ms "
           "(%.1f tokens/s)  [best of %llu]\n",
           (unsigned long long)prompt, best_pre, (double)prompt / (best_pre / 1e3),
           (unsigned long long)decode, best_dec, (double)decode / (best_dec / 1e3),
           (unsigned long long)reps);

    /* One decode step's weight products, both ways. */
    static const char *const names[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                         "ffn_gate", "ffn_up", "ffn_down"};
    size_t nm = 0;
    double f32_bytes = 0, q_bytes = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        const float *f[7] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        for (int k = 0; k < 7; k++) {
            char nmbuf[64];
            snprintf(nmbuf, sizeof nmbuf, "blk.%u.%s.weight", l, names[k]);
            const gguf_tensor *t = gguf_find_tensor(m->gguf, nmbuf);
            if (!t || (t->type != GGML_Q4_1 && t->type != GGML_Q8_0) || t->ne[0] > 4096) {
                fprintf(stderr, "subkv-llama-bench: %s is not q4_1/q8_0; no comparison\n", nmbuf);
                rc = 0;
                goto done;
            }
            mats[nm++] = (mat){f[k], t};
            f32_bytes += (double)t->ne[0] * t->ne[1] * 4;
            q_bytes += (double)t->nbytes;
        }
    }
    synth_fill_normal(&rng, x, hp->n_ff, 1.0f);
    double best_f = INFINITY, best_q = INFINITY, worst = 0.0;
    for (uint64_t r = 0; r < reps; r++) {
        t0 = cli_now_ms();
        for (size_t i = 0; i < nm; i++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mats[i].q->ne[1], (int)mats[i].q->ne[0],
                        1.0f, mats[i].f32, (int)mats[i].q->ne[0], x, 1, 0.0f, y1, 1);
        best_f = fmin(best_f, cli_now_ms() - t0);
        t0 = cli_now_ms();
        for (size_t i = 0; i < nm; i++) quant_matvec(mats[i].q, x, y2);
        best_q = fmin(best_q, cli_now_ms() - t0);
    }
    for (size_t i = 0; i < nm; i++) { /* the two agree */
        const int rows = (int)mats[i].q->ne[1], cols = (int)mats[i].q->ne[0];
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, mats[i].f32, cols, x, 1, 0.0f,
                    y1, 1);
        quant_matvec(mats[i].q, x, y2);
        double num = 0, den = 0;
        for (int k = 0; k < rows; k++)
            num += (y1[k] - y2[k]) * (double)(y1[k] - y2[k]), den += (double)y1[k] * y1[k];
        worst = fmax(worst, sqrt(num / den));
    }
    printf("decode weight products (%zu matrices): f32 sgemv %.2f ms (%.1f GB/s of %.0f MB); "
           "q4_1/q8_0 on the fly %.2f ms (%.1f GB/s of %.0f MB); max rel diff %.1e\n",
           nm, best_f, f32_bytes / (best_f * 1e6), f32_bytes / 1e6, best_q,
           q_bytes / (best_q * 1e6), q_bytes / 1e6, worst);
    rc = 0;
done:
    free(tok);
    free(logits);
    free(x);
    free(y1);
    free(y2);
    free(mats);
    lcli_close(&run);
    return rc;
}
