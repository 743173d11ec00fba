/*
 * subkv-eval-trace — the per-layer attention error of every policy on an attention trace
 * (tools/trace.h, written by subkv-trace): the first n - Q tokens of each layer go into fresh
 * sketches (h2o observing every --observe-th query, as in subkv-eval), then each of the last Q
 * tokens is appended and its query heads attended; the output is compared with float64 exact
 * attention over every token so far. Unlike subkv-eval's in-run measurement, every layer sees
 * the exact model's Q, K, V (no error carried from earlier layers).
 *
 *   subkv-trace text.txt -o w.skvt --window 4096 && subkv-eval-trace w.skvt
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_attn.h"
#include "eval_text.h"
#include "policy_eval.h"
#include "subkv_cli.h"
#include "trace.h"

enum { MAX_F = 8, MAX_COLS = 64 };

static void usage(FILE *f) {
    fprintf(f, "usage: subkv-eval-trace TRACE [options]\n"
               "Per-layer relative attention-output error of each policy at 1/F of exact memory.\n"
               "  --queries Q         last tokens whose attention is measured (default 16)\n"
               "  --fractions F[,F]   memory fractions 1/F (default 4,8,16)\n"
               "  --dtype T           K/V storage and budget dtype (default f16)\n"
               "  --observe K         h2o: prefix queries observed every K tokens (16; 0 off)\n"
               "  --csv FILE          rows layer,label,fraction,budget_bytes,err,normerr\n");
}

typedef struct col {
    char label[32];
    unsigned frac;
    size_t budget;
    double *err, *nerr; /* [layer] */
} col;

int main(int argc, char **argv) {
    const char *path = NULL, *csv = NULL;
    uint64_t queries = 16, observe = 16;
    unsigned fracs[MAX_F] = {4, 8, 16};
    int nf = 3, dtype = SKV_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (a[0] != '-' && !path) {
            path = a;
            continue;
        }
        if (!v) goto bad;
        i++;
        if (!strcmp(a, "--queries")) {
            if (cli_parse_size(v, &queries) || queries < 1) goto bad;
        } else if (!strcmp(a, "--observe")) {
            if (cli_parse_size(v, &observe)) goto bad;
        } else if (!strcmp(a, "--dtype")) {
            if ((dtype = skv_dtype_parse(v)) < 0) goto bad;
        } else if (!strcmp(a, "--csv")) {
            csv = v;
        } else if (!strcmp(a, "--fractions")) {
            nf = 0;
            for (const char *p = v; *p && nf < MAX_F;) {
                char *end = NULL;
                const unsigned long f = strtoul(p, &end, 10);
                if (end == p || f < 2 || (*end && *end != ',')) goto bad;
                fracs[nf++] = (unsigned)f;
                p = *end ? end + 1 : end;
            }
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "subkv-eval-trace: bad or unknown argument '%s'\n", a);
        usage(stderr);
        return 2;
    }
    if (!path) return usage(stderr), 2;
    skv_err err = {0};
    trace_reader *tr = NULL;
    float **Q = NULL, **K = NULL, **V = NULL;
    col cols[MAX_COLS];
    int nc = 0, rc = 1;
    eval_prefix pre = {0};
    llama_hparams hp = {0};
    memset(cols, 0, sizeof cols);
    if (trace_reader_open(path, &tr, &err) != SKV_OK) {
        cli_fail(path, &err);
        return 1;
    }
    const trace_shape *sh = trace_reader_shape(tr);
    hp.n_layer = sh->layers, hp.n_head = sh->q_heads, hp.n_head_kv = sh->kv_heads;
    hp.head_dim = sh->head_dim, hp.n_embd = sh->q_heads * sh->head_dim;
    if (sh->n_tokens <= queries) {
        fprintf(stderr, "subkv-eval-trace: %llu tokens: need more than --queries\n",
                (unsigned long long)sh->n_tokens);
        goto done;
    }
    const size_t n = (size_t)sh->n_tokens, np = n - (size_t)queries;
    const size_t qrow = (size_t)sh->q_heads * sh->head_dim,
                 kvrow = (size_t)sh->kv_heads * sh->head_dim;
    Q = calloc(hp.n_layer, sizeof *Q);
    K = calloc(hp.n_layer, sizeof *K);
    V = calloc(hp.n_layer, sizeof *V);
    if (!Q || !K || !V || eval_prefix_init(&pre, &hp, np, observe) != 0) goto nomem;
    for (uint32_t l = 0; l < hp.n_layer; l++) {
        Q[l] = malloc(n * qrow * sizeof(float));
        K[l] = malloc(n * kvrow * sizeof(float));
        V[l] = malloc(n * kvrow * sizeof(float));
        if (!Q[l] || !K[l] || !V[l]) goto nomem;
        if (trace_read_layer(tr, l, Q[l], K[l], V[l], &err) != SKV_OK) {
            cli_fail(path, &err);
            goto done;
        }
        eval_prefix_hook(&pre, l, np, Q[l], K[l], V[l]);
    }
    pre.n = np;
    for (int f = 0; f < nf; f++) {
        skv_config cfgs[EVAL_MAX_LINEUP];
        const char *labels[EVAL_MAX_LINEUP];
        const size_t budget = eval_budget_bytes((int)hp.head_dim, (skv_dtype)dtype, n, fracs[f]);
        const int np2 =
            eval_standard_lineup((int)hp.head_dim, (skv_dtype)dtype, budget, 1, cfgs, labels);
        for (int p = f == 0 ? 0 : 1; p < np2 && nc < MAX_COLS; p++) {
            col *c = &cols[nc];
            snprintf(c->label, sizeof c->label, "%s", labels[p]);
            c->frac = p == 0 ? 1 : fracs[f];
            c->budget = cfgs[p].budget_bytes;
            c->err = calloc(hp.n_layer, sizeof *c->err);
            c->nerr = calloc(hp.n_layer, sizeof *c->nerr);
            if (!c->err || !c->nerr) goto nomem;
            nc++;
            eval_attn *ea = NULL;
            float *out = malloc(qrow * sizeof(float));
            err = (skv_err){0}; /* a skipped policy before must not fail this one */
            if (!out || eval_attn_create(&hp, &cfgs[p], (size_t)queries, 0, &ea, &err) != SKV_OK ||
                eval_attn_load_prefix(ea, &pre, &err) != SKV_OK) {
                free(out);
                eval_attn_destroy(ea);
                fprintf(stderr, "subkv-eval-trace: %s 1/%u: %s: %s\n", c->label, c->frac,
                        subkv_status_name(err.code), err.msg);
                for (uint32_t l = 0; l < hp.n_layer; l++) c->err[l] = c->nerr[l] = NAN;
                continue;
            }
            llama_attn *b = eval_attn_base(ea);
            for (size_t t = np; t < n && err.code == SKV_OK; t++)
                for (uint32_t l = 0; l < hp.n_layer; l++)
                    if (b->ops->step(b, l, Q[l] + t * qrow, K[l] + t * kvrow, V[l] + t * kvrow, out,
                                     &err) != SKV_OK)
                        break;
            for (uint32_t l = 0; l < hp.n_layer; l++) {
                c->err[l] = err.code == SKV_OK ? eval_attn_layer_err(ea, l) : NAN;
                c->nerr[l] = err.code == SKV_OK ? eval_attn_layer_norm_err(ea, l) : NAN;
            }
            free(out);
            eval_attn_destroy(ea);
            if (err.code != SKV_OK) {
                cli_fail(c->label, &err);
                goto done;
            }
            fprintf(stderr, "subkv-eval-trace: %s 1/%u done\n", c->label, c->frac);
        }
    }
    printf("# %s: %zu tokens, last %llu queries; relative attention-output error per layer\n", path,
           n, (unsigned long long)queries);
    printf("# layer");
    for (int c = 0; c < nc; c++) {
        char h[48];
        snprintf(h, sizeof h, cols[c].frac > 1 ? "%s@1/%u" : "%s", cols[c].label, cols[c].frac);
        printf(" %20s", h);
    }
    printf("\n");
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t l = 0; l <= hp.n_layer; l++) {
            if (pass == 0 && l == hp.n_layer) continue;
            if (pass == 1 && l < hp.n_layer) continue;
            printf(pass ? "   mean" : "%7u", l);
            for (int c = 0; c < nc; c++) {
                double v = 0.0;
                if (pass) {
                    for (uint32_t k = 0; k < hp.n_layer; k++) v += cols[c].err[k];
                    v /= hp.n_layer;
                } else {
                    v = cols[c].err[l];
                }
                printf(" %20.4f", v);
            }
            printf("\n");
        }
    if (csv) {
        FILE *cf = fopen(csv, "w");
        if (!cf) {
            fprintf(stderr, "subkv-eval-trace: cannot write %s\n", csv);
            goto done;
        }
        fprintf(cf, "layer,label,fraction,budget_bytes,err,normerr\n");
        for (int c = 0; c < nc; c++)
            for (uint32_t l = 0; l < hp.n_layer; l++)
                fprintf(cf, "%u,%s,%u,%zu,%.6g,%.6g\n", l, cols[c].label, cols[c].frac,
                        cols[c].budget, cols[c].err[l], cols[c].nerr[l]);
        if (fclose(cf) != 0) goto done;
    }
    rc = 0;
    goto done;
nomem:
    fprintf(stderr, "subkv-eval-trace: out of memory for %llu tokens\n",
            (unsigned long long)sh->n_tokens);
done:
    for (int c = 0; c < nc; c++) free(cols[c].err), free(cols[c].nerr);
    if (pre.K) eval_prefix_free(&pre, &hp);
    for (uint32_t l = 0; l < hp.n_layer; l++) {
        if (Q) free(Q[l]);
        if (K) free(K[l]);
        if (V) free(V[l]);
    }
    free(Q), free(K), free(V);
    trace_reader_close(tr);
    return rc;
}
