/*
 * dict_eval.c — `subkv-dict eval`: a dictionary set measured on a trace (see dict_train.h).
 *
 * Per sparsity s, over every (layer, kv head) of the trace: a csr sketch (no sinks, exact
 * window W) takes all n tokens; then
 *  - key / value error: mean over the coded tokens of ||x - x^|| / ||x|| (x^ the decoded rows
 *    the sketch attends over, read back through skv_sketch_entries);
 *  - attention error: ||o - o*|| / ||o*|| for the queries of the last Q tokens of every query
 *    head of the group, o* float64 exact attention over all n true tokens (the sketch holds
 *    all n too: the last queries see a few later tokens, the same for both sides);
 *  - sinkwin at the same bytes as the csr sketch (4 sinks, window from the budget), the
 *    baseline csr has to beat at equal memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csr_dict.h"
#include "dict_train.h"
#include "skv_internal.h" /* skv_entries */
#include "synth.h"
#include "trace.h"

typedef struct eval_acc {
    double key, val, attn, attn_max, sw, enc_s;
    size_t nk, nq, tokens, bytes, heads;
} eval_acc;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rel_ff(const float *a, const float *b, int d) {
    double num = 0.0, den = 0.0;
    for (int j = 0; j < d; j++) {
        const double e = (double)a[j] - b[j];
        num += e * e;
        den += (double)b[j] * b[j];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Attend one query head; the output o/l into out[d]. */
static subkv_status attend1(skv_sketch *s, const float *q, int d, skv_partial *p, float *out,
                            skv_err *err) {
    SKV_CHECK(skv_sketch_attend(s, q, 1, d, p, err));
    skv_partial_output(p, d, out);
    return SKV_OK;
}

/* One (layer, kv head): Kh, Vh [n][d]; Qg [n][g][d] the group's queries. */
static subkv_status eval_head(const skv_dict *dict, uint32_t layer, int s, int window, int queries,
                              double rope_base, const float *Kh, const float *Vh, const float *Qg,
                              size_t n, int d, int g, eval_acc *acc, skv_err *err) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, d);
    c.sparsity = s;
    c.window = window;
    c.dict = dict;
    c.layer = layer;
    c.rope_base = (float)rope_base;
    skv_sketch *sk = NULL, *sw = NULL;
    skv_entries e = {0};
    skv_partial *p = malloc(skv_partial_stride(d));
    float *out = malloc((size_t)d * sizeof *out);
    double *ref = malloc((size_t)d * sizeof *ref);
    subkv_status st = SKV_OK;
    if (!p || !out || !ref) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "eval scratch");
        goto done;
    }
    SKV_CHECK_GOTO(skv_sketch_create(&c, &sk, err), st, done);
    const double t0 = now_s();
    SKV_CHECK_GOTO(skv_sketch_append(sk, Kh, Vh, n, d, err), st, done);
    acc->enc_s += now_s() - t0;
    acc->tokens += n;
    acc->bytes += skv_sketch_bytes(sk);
    acc->heads++;
    SKV_CHECK_GOTO(skv_sketch_entries(sk, &e, err), st, done);
    const size_t exact = n < (size_t)window ? n : (size_t)window, coded = n - exact;
    for (size_t i = 0; i < coded; i++) { /* entries: the window ring, then codes in order */
        acc->key += rel_ff((const float *)e.k + (exact + i) * d, Kh + i * d, d);
        acc->val += rel_ff((const float *)e.v + (exact + i) * d, Vh + i * d, d);
        acc->nk++;
    }
    skv_config b;
    skv_config_default(&b, SKV_POLICY_SINKWIN, d);
    b.budget_bytes = skv_sketch_bytes(sk);
    SKV_CHECK_GOTO(skv_sketch_create(&b, &sw, err), st, done);
    SKV_CHECK_GOTO(skv_sketch_append(sw, Kh, Vh, n, d, err), st, done);
    const size_t q0 = n > (size_t)queries ? n - (size_t)queries : 0;
    for (size_t t = q0; t < n; t++)
        for (int h = 0; h < g; h++) {
            const float *q = Qg + (t * (size_t)g + (size_t)h) * d;
            synth_ref_attention(q, Kh, Vh, n, d, ref);
            SKV_CHECK_GOTO(attend1(sk, q, d, p, out, err), st, done);
            const double ea = synth_rel_error(out, ref, d);
            acc->attn += ea;
            if (ea > acc->attn_max) acc->attn_max = ea;
            SKV_CHECK_GOTO(attend1(sw, q, d, p, out, err), st, done);
            acc->sw += synth_rel_error(out, ref, d);
            acc->nq++;
        }
done:
    skv_entries_free(&e);
    skv_sketch_destroy(sk);
    skv_sketch_destroy(sw);
    free(p), free(out), free(ref);
    return st;
}

int dict_eval(const char *dict_path, const char *trace_path, const int *ss, int nss, int window,
              int queries, double rope_base) {
    skv_err err = {0};
    skv_dict *dict = NULL;
    trace_reader *rd = NULL;
    float *Q = NULL, *K = NULL, *V = NULL, *Kh = NULL, *Vh = NULL, *Qg = NULL;
    int rc = 1;
    if (skv_dict_load_file(dict_path, &dict, &err) != SKV_OK ||
        trace_reader_open(trace_path, &rd, &err) != SKV_OK) {
        fprintf(stderr, "subkv-dict eval: %s: %s\n", subkv_status_name(err.code), err.msg);
        goto done;
    }
    const trace_shape *sh = trace_reader_shape(rd);
    const int d = (int)sh->head_dim, kvh = (int)sh->kv_heads, g = (int)(sh->q_heads / kvh);
    const size_t n = (size_t)sh->n_tokens;
    if (d != dict->d || sh->layers > (uint32_t)(dict->groups * dict->layers_per_group)) {
        fprintf(stderr, "subkv-dict eval: trace has d %d and %u layers, dictionary d %d and %d\n",
                d, sh->layers, dict->d, dict->groups * dict->layers_per_group);
        goto done;
    }
    Q = malloc(trace_q_floats(sh) * 4), K = malloc(trace_kv_floats(sh) * 4);
    V = malloc(trace_kv_floats(sh) * 4), Kh = malloc(n * d * 4), Vh = malloc(n * d * 4);
    Qg = malloc(n * (size_t)g * d * 4);
    if (!Q || !K || !V || !Kh || !Vh || !Qg) {
        fprintf(stderr, "subkv-dict eval: no memory for a layer\n");
        goto done;
    }
    printf("# dict %s (%d atoms, fingerprint %016llx) on %s: %u layers x %d kv heads, n %zu, "
           "d %d, window %d, %d queries per q head, keys %s-rotary\n",
           dict_path, dict->atoms, (unsigned long long)dict->fingerprint, trace_path, sh->layers,
           kvh, n, d, window, queries, rope_base > 0.0 ? "pre" : "post");
    printf("# %4s %6s %10s %10s %10s %10s %12s %12s %12s\n", "s", "bits", "key_err", "value_err",
           "attn_err", "attn_max", "sinkwin_err", "bytes/head", "encode_us");
    for (int si = 0; si < nss; si++) {
        eval_acc acc = {0};
        size_t bytes = 0;
        if (ss[si] > d) {
            fprintf(stderr, "subkv-dict eval: sparsity %d must be <= %d\n", ss[si], d);
            goto done;
        }
        for (uint32_t l = 0; l < sh->layers; l++) {
            if (trace_read_layer(rd, l, Q, K, V, &err) != SKV_OK) {
                fprintf(stderr, "subkv-dict eval: %s\n", err.msg);
                goto done;
            }
            for (int h = 0; h < kvh; h++) {
                for (size_t t = 0; t < n; t++) {
                    memcpy(Kh + t * d, K + (t * kvh + h) * (size_t)d, (size_t)d * 4);
                    memcpy(Vh + t * d, V + (t * kvh + h) * (size_t)d, (size_t)d * 4);
                    memcpy(Qg + t * (size_t)g * d, Q + (t * sh->q_heads + (size_t)h * g) * d,
                           (size_t)g * d * 4);
                }
                if (eval_head(dict, l, ss[si], window, queries, rope_base, Kh, Vh, Qg, n, d, g,
                              &acc, &err) != SKV_OK) {
                    fprintf(stderr, "subkv-dict eval: %s: %s\n", subkv_status_name(err.code),
                            err.msg);
                    goto done;
                }
            }
        }
        bytes = acc.heads ? acc.bytes / acc.heads : 0;
        printf("  %4d %6.2f %10.4f %10.4f %10.4f %10.4f %12.4f %12zu %12.1f\n", ss[si],
               32.0 * ss[si] / d, acc.nk ? acc.key / acc.nk : 0.0, acc.nk ? acc.val / acc.nk : 0.0,
               acc.nq ? acc.attn / acc.nq : 0.0, acc.attn_max, acc.nq ? acc.sw / acc.nq : 0.0,
               bytes, acc.tokens ? 1e6 * acc.enc_s / acc.tokens : 0.0);
        fflush(stdout);
    }
    rc = 0;
done:
    trace_reader_close(rd);
    skv_dict_free(dict);
    free(Q), free(K), free(V), free(Kh), free(Vh), free(Qg);
    return rc;
}
