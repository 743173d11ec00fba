/*
 * subkv-eval — issue 5's evaluation of the policies on the real model (the engine of `make
 * eval`; bench/eval.sh prepares the Debian texts and draws the plots).
 *
 *   subkv-eval --texts LIST --words /usr/share/dict/words --out build/eval [options]
 *
 * For each policy (exact; sinkwin, h2o, subgen-l2, subgen-cluster, refreshkv, refreshkv-subgen
 * (refreshkv with a subgen full store), csr and refreshkv-csr (refreshkv with a csr full store;
 * both with --csr-dict) at 1/F of exact memory for
 * every F of --fractions; the budget of a (layer, kv head) sketch is exact's bytes for the
 * sequence's length at --dtype, divided by F):
 *  - perplexity over the last --tail tokens of windows of each --windows length, cut from the
 *    concatenated texts of LIST (one file per line);
 *  - passkey and LongEval-lines retrieval accuracy at each --depths;
 *  - per-layer relative attention-output error (vs float64 exact over the same Q, K, V) over
 *    the last --err-queries decode steps of every window, and SubGen's clusters per layer;
 *  - the key + value bytes read per decode step per (layer, kv head) sketch (eval_attn_read;
 *    the summary's read/step: as a fraction of exact's) and refreshkv's fraction of decode
 *    steps that were full steps (RefreshKV's quality vs bytes read, issue 6).
 * Cost: each window or prompt is prefilled ONCE exactly (the head of a sequence is exact
 * attention in every policy); its K, V per layer are captured by the forward pass's hook and
 * appended into each policy's fresh sketches; only the tail (window tail, or question +
 * answer) is decoded through each policy (llama_session_resume).
 * csr keeps its default sinks (0) and window (128) and derives max_tokens coded tokens from
 * the budget (cache/csr.c); its sparsity s is chosen per sequence as the largest of {8, 4, 3,
 * 2} whose budget holds every token of the sequence (eval_csr_sparsity), and its label says
 * it ("csr/s4"); with none, csr is skipped for that sequence with the reason printed.
 * refreshkv-csr likewise: its budget is split (cache/refreshkv_csr.c: half to the partial
 * cache, the rest to the csr store, whose sinks 4 and window 64 are refreshkv's defaults) and
 * s is the largest of {8, 4, 3, 2} whose store holds the sequence ("refreshkv-csr/s2").
 * Writes OUT/eval.csv (every measurement), summary.{txt,csv,md}, layers.{csv,md},
 * depths.md; prints the summary.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval_attn.h"
#include "eval_docs.h"
#include "eval_opts.h"
#include "eval_report.h"
#include "eval_text.h"
#include "llama_cli.h"
#include "llama_tok.h"
#include "policy_eval.h"
#include "subkv_cli.h"

enum { MAX_RUNS = 64 };

typedef struct run_cfg {
    char label[24];
    unsigned frac;
    skv_config cfg; /* budget filled per sequence length */
} run_cfg;

typedef struct ctx {
    const opts *o;
    llama_model *model;
    const llama_hparams *hp;
    llama_tok *tok;
    skv_dicts *dicts; /* csr's dictionary, loaded once */
    run_cfg runs[MAX_RUNS];
    int n_runs;
    eval_rows rows;
    float *logits;
    double t0;
} ctx;

static int wanted(const opts *o, const char *label) {
    if (!o->policies[0]) return 1;
    const size_t n = strlen(label);
    for (const char *p = o->policies; *p;) {
        const char *e = strchr(p, ',');
        const size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, label, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* The line-up: exact, then each policy at each fraction; subgen once per (window, samples)
 * of --subgen-window x --subgen-samples (labelled "subgen-l2/w256t4" when either is given);
 * csr only with --csr-dict (its dictionary loaded and bound here). -1: the dictionary does
 * not load or fit the model. */
static int lineup(ctx *c) {
    const opts *o = c->o;
    const int nw = o->n_sg_window ? o->n_sg_window : 1, ns = o->n_sg_samples ? o->n_sg_samples : 1;
    for (int i = 0; i < EVAL_N_LABELS; i++) {
        const eval_label *l = &eval_labels[i];
        const int sub = l->policy == SKV_POLICY_SUBGEN, nv = sub ? nw * ns : 1;
        const int exact = l->policy == SKV_POLICY_EXACT;
        if (l->coded && wanted(o, l->name) && !o->csr_dict) {
            fprintf(stderr, "subkv-eval: %s skipped: no --csr-dict FILE (make csr-dicts)\n",
                    l->name);
            continue;
        }
        for (int v = 0; v < nv; v++)
            for (int f = 0; f < (exact ? 1 : o->n_frac); f++) {
                if (!wanted(o, l->name) || c->n_runs == MAX_RUNS) continue;
                run_cfg *r = &c->runs[c->n_runs++];
                snprintf(r->label, sizeof r->label, "%s", l->name);
                r->frac = exact ? 1 : o->fracs[f];
                skv_config_default(&r->cfg, l->policy, (int)c->hp->head_dim);
                r->cfg.dtype = (skv_dtype)o->dtype;
                r->cfg.seed = o->seed;
                r->cfg.values = l->values;
                r->cfg.full_store = l->full_store;
                if (l->coded) {
                    memcpy(r->cfg.dict_path, o->csr_dict, strlen(o->csr_dict) + 1);
                    r->cfg.rope_base = o->csr_rope_base;
                    if (lcli_dict_load(&c->dicts, c->hp, &r->cfg, 1) != 0) return -1;
                }
                if (!sub || (!o->n_sg_window && !o->n_sg_samples)) continue;
                if (o->n_sg_window) r->cfg.window = o->sg_window[v / ns];
                if (o->n_sg_samples) r->cfg.samples = o->sg_samples[v % ns];
                snprintf(r->label, sizeof r->label, "%s/w%dt%d", l->name, r->cfg.window,
                         r->cfg.samples);
            }
    }
    return 0;
}

static void progress(ctx *c, const char *fmt, const char *what, double v) {
    fprintf(stderr, "[%7.1f s] ", (cli_now_ms() - c->t0) / 1e3);
    fprintf(stderr, fmt, what, v);
    fputc('\n', stderr);
}

/* Prefill ids[n] exactly (a backend that stores nothing; the hook captures K, V and the
 * observed queries into pre); logits of the last token into c->logits. */
static int prefill_exact(ctx *c, const int32_t *ids, size_t n, eval_prefix *pre) {
    skv_err err = {0};
    if (eval_prefix_init(pre, c->hp, n, c->o->observe) != 0) {
        fprintf(stderr, "subkv-eval: no memory for a %zu-token prefix\n", n);
        return -1;
    }
    llama_attn *null = eval_attn_null();
    llama_session *s = NULL;
    int rc = -1;
    if (!null || llama_session_create(c->model, null, &s, &err) != SKV_OK) {
        cli_fail("session", &err);
        goto done;
    }
    llama_session_set_hook(s, eval_prefix_hook, pre);
    if (llama_prefill(s, ids, n, c->logits, 0, &err) != SKV_OK) {
        cli_fail("prefill", &err);
        goto done;
    }
    pre->n = n;
    rc = 0;
done:
    llama_session_destroy(s);
    llama_attn_destroy(null);
    return rc;
}

/* What one policy run measured. */
typedef struct run_out {
    double nll_sum;  /* ppl: over the forced tokens after the first        */
    char answer[64]; /* retrieval: the greedy continuation                  */
    size_t budget, held, partial;
    double read, full; /* eval_attn_read: bytes read per step and sketch, full-step fraction */
    char label[24];    /* the run's label; csr's says its sparsity ("csr/s4") */
} run_out;

/*
 * One policy over a captured prefix: decode forced[n_forced] teacher-forced (ppl: NLL of
 * forced[k+1] after forced[k]; the first forced token's NLL comes from the exact prefill),
 * then, with gen > 0, up to gen greedy tokens (stopping after a number). Per-layer errors and
 * SubGen stats go into c->rows under task `attn` when ppl. Returns 0, 1 when the budget is
 * below the policy's fixed parts (nothing measured), -1 on failure.
 */
static int run_policy(ctx *c, const run_cfg *r, const eval_prefix *pre, uint64_t seq_len,
                      const int32_t *forced, size_t n_forced, int gen, int ppl, run_out *out) {
    const llama_hparams *hp = c->hp;
    skv_config cfg = r->cfg;
    cfg.budget_bytes =
        r->frac > 1 ? eval_budget_bytes((int)hp->head_dim, cfg.dtype, seq_len, r->frac) : 0;
    memset(out, 0, sizeof *out);
    out->budget = cfg.budget_bytes;
    snprintf(out->label, sizeof out->label, "%s", r->label);
    if (skv_config_needs_dict(&cfg) && cfg.budget_bytes) { /* csr, refreshkv-csr */
        /* every token of the sequence, the generated ones included, must fit the codes */
        cfg.sparsity = eval_csr_sparsity(&cfg, cfg.budget_bytes, seq_len + (uint64_t)gen);
        if (!cfg.sparsity) {
            fprintf(stderr,
                    "subkv-eval: %s 1/%u skipped: %zu B hold no sparsity of {8,4,3,2} for %llu "
                    "tokens beside a window of %d\n",
                    r->label, r->frac, cfg.budget_bytes, (unsigned long long)(seq_len + gen),
                    cfg.window);
            return 1;
        }
        snprintf(out->label, sizeof out->label, "%.16s/s%d", r->label, cfg.sparsity);
    }
    eval_attn *ea = NULL;
    llama_session *s = NULL;
    skv_err err = {0};
    int rc = -1;
    const size_t steps = n_forced + (size_t)gen;
    const size_t from =
        ppl && n_forced > c->o->err_queries ? n_forced - 1 - c->o->err_queries : (size_t)-1;
    if (eval_attn_create(hp, &cfg, steps + 1, from, &ea, &err) != SKV_OK ||
        eval_attn_load_prefix(ea, pre, &err) != SKV_OK ||
        llama_session_create(c->model, eval_attn_base(ea), &s, &err) != SKV_OK ||
        llama_session_resume(s, pre->n, &err) != SKV_OK) {
        fprintf(stderr, "subkv-eval: %s 1/%u: ", r->label, r->frac);
        cli_fail(err.code == SKV_ERR_BUDGET ? "skipped" : "set-up", &err);
        if (err.code == SKV_ERR_BUDGET) rc = 1; /* a budget below the policy's fixed parts */
        goto done;
    }
    const size_t last = ppl ? n_forced - 1 : n_forced;
    for (size_t k = 0; k < last; k++) {
        if (llama_decode(s, forced[k], c->logits, &err) != SKV_OK) {
            cli_fail("decode", &err);
            goto done;
        }
        if (ppl) out->nll_sum += llama_nll(c->logits, hp->n_vocab, forced[k + 1]);
    }
    size_t alen = 0;
    for (int g = 0; g < gen; g++) {
        const int32_t t = llama_argmax(c->logits, hp->n_vocab);
        if (t == llama_tok_eos(c->tok)) break;
        char buf[64] = {0};
        FILE *m = fmemopen(buf, sizeof buf - 1, "w");
        if (m) {
            lcli_write_token(llama_model_gguf(c->model), t, m);
            fclose(m);
        }
        int stop = 0;
        for (size_t i = 0; buf[i] && alen + 1 < sizeof out->answer; i++) {
            const int digit = buf[i] >= '0' && buf[i] <= '9';
            int seen = 0;
            for (size_t j = 0; j < alen; j++)
                seen |= out->answer[j] >= '0' && out->answer[j] <= '9';
            if (seen && !digit) stop = 1;
            out->answer[alen++] = buf[i];
        }
        if (stop || g + 1 == gen) break;
        if (llama_decode(s, t, c->logits, &err) != SKV_OK) {
            cli_fail("decode", &err);
            goto done;
        }
    }
    out->held = eval_attn_bytes(ea, &out->partial);
    out->read = eval_attn_read(ea, &out->full);
    if (ppl) {
        for (uint32_t l = 0; l < hp->n_layer; l++) {
            eval_row row = {.item = (int)l,
                            .frac = r->frac,
                            .budget = out->budget,
                            .held = out->held,
                            .partial = out->partial,
                            .weight = 1.0,
                            .read = out->read,
                            .full = out->full};
            snprintf(row.task, sizeof row.task, "attn");
            snprintf(row.label, sizeof row.label, "%s", out->label);
            row.value = eval_attn_layer_err(ea, l);
            if (row.value >= 0.0 && eval_rows_add(&c->rows, &row) != 0) goto done;
            snprintf(row.task, sizeof row.task, "normerr");
            row.value = eval_attn_layer_norm_err(ea, l);
            if (row.value >= 0.0 && eval_rows_add(&c->rows, &row) != 0) goto done;
            if (strcmp(r->label, "subgen-l2") != 0) continue;
            /* Clusterability: the clusters SubGen opened and the radius it had to grow to,
             * relative to the layer's mean key norm (large: the keys do not cluster). */
            double cl, mg, dl, ff, norm = 0.0;
            eval_attn_layer_stats(ea, l, &cl, &mg, &dl, &ff);
            for (size_t i = 0; i < pre->n * hp->n_head_kv; i++) {
                double s2 = 0.0;
                for (uint32_t j = 0; j < hp->head_dim; j++) {
                    const double x = pre->K[l][i * hp->head_dim + j];
                    s2 += x * x;
                }
                norm += sqrt(s2);
            }
            norm /= (double)(pre->n * hp->n_head_kv);
            snprintf(row.label, sizeof row.label, "subgen-stats");
            snprintf(row.task, sizeof row.task, "clusters");
            row.value = cl;
            if (eval_rows_add(&c->rows, &row) != 0) goto done;
            snprintf(row.task, sizeof row.task, "delta");
            row.value = norm > 0.0 ? dl / norm : 0.0;
            if (eval_rows_add(&c->rows, &row) != 0) goto done;
        }
    }
    rc = 0;
done:
    llama_session_destroy(s);
    eval_attn_destroy(ea);
    return rc;
}

static int add_row(ctx *c, const char *task, int item, const run_cfg *r, const run_out *ro,
                   double value, double weight) {
    eval_row row = {.item = item,
                    .frac = r->frac,
                    .budget = ro->budget,
                    .held = ro->held,
                    .partial = ro->partial,
                    .value = value,
                    .weight = weight,
                    .read = ro->read,
                    .full = ro->full};
    snprintf(row.task, sizeof row.task, "%s", task);
    snprintf(row.label, sizeof row.label, "%s", ro->label);
    return eval_rows_add(&c->rows, &row);
}

static int eval_ppl(ctx *c, const eval_docs *d, FILE *windows_f) {
    int w = 0;
    for (int g = 0; g < c->o->n_win; g++)
        for (uint64_t k = 0; k < c->o->win_count[g]; k++, w++) {
            const uint64_t L = c->o->win_len[g], T = c->o->tail;
            char used[512], task[16];
            int32_t *ids = eval_window_ids(d, w, L, used, sizeof used);
            if (!ids)
                return fprintf(stderr, "subkv-eval: texts too short for %llu tokens\n",
                               (unsigned long long)L),
                       -1;
            snprintf(task, sizeof task, "ppl%llu", (unsigned long long)L);
            fprintf(windows_f, "%s window %d: %s\n", task, w, used);
            eval_prefix pre;
            progress(c, "%s: exact prefill of %.0f tokens", task, (double)(L - T));
            if (prefill_exact(c, ids, L - T, &pre) != 0) return free(ids), -1;
            const double nll0 = llama_nll(c->logits, c->hp->n_vocab, ids[L - T]);
            for (int r = 0; r < c->n_runs; r++) {
                run_out ro;
                const int st = run_policy(c, &c->runs[r], &pre, L, ids + (L - T), T, 0, 1, &ro);
                if (st == 1) continue;
                if (st != 0 || add_row(c, task, w, &c->runs[r], &ro,
                                       (nll0 + ro.nll_sum) / (double)T, (double)T) != 0) {
                    eval_prefix_free(&pre, c->hp);
                    free(ids);
                    return -1;
                }
                char what[96];
                snprintf(what, sizeof what, "%s window %d %s 1/%u", task, w, ro.label,
                         c->runs[r].frac);
                progress(c, "%s: ppl %.3f", what, exp((nll0 + ro.nll_sum) / (double)T));
            }
            eval_prefix_free(&pre, c->hp);
            free(ids);
        }
    return 0;
}

/* One retrieval prompt through every policy: exact prefill of the context, question forced. */
static int eval_prompt_run(ctx *c, const char *task, const eval_prompt *p) {
    int32_t *ctx_ids = NULL, *q_ids = NULL;
    size_t nc = 0, nq = 0;
    skv_err err = {0};
    int rc = -1;
    eval_prefix pre = {0};
    if (llama_tok_encode(c->tok, p->context, strlen(p->context), 0, 1, &ctx_ids, &nc, &err) !=
            SKV_OK ||
        llama_tok_encode(c->tok, p->question, strlen(p->question), 0, 0, &q_ids, &nq, &err) !=
            SKV_OK) {
        cli_fail("tokenize", &err);
        goto done;
    }
    char what[64];
    snprintf(what, sizeof what, "%s depth %.2f", task, p->depth);
    progress(c, "%s: exact prefill of %.0f tokens", what, (double)nc);
    if (prefill_exact(c, ctx_ids, nc, &pre) != 0) goto done;
    for (int r = 0; r < c->n_runs; r++) {
        run_out ro;
        const int st = run_policy(c, &c->runs[r], &pre, nc + nq, q_ids, nq, 8, 0, &ro);
        if (st == 1) continue;
        if (st != 0) goto done;
        const int ok = eval_answer_match(ro.answer, p->answer);
        if (add_row(c, task, (int)lround(p->depth * 100), &c->runs[r], &ro, ok, 1.0) != 0)
            goto done;
        for (char *ch = ro.answer; *ch; ch++) /* one line per answer in the log */
            if (*ch == '\n' || *ch == '\r') *ch = ' ';
        fprintf(stderr, "           %-16s 1/%-3u want %s got '%s'%s\n", ro.label, c->runs[r].frac,
                p->answer, ro.answer, ok ? "" : "  (wrong)");
    }
    rc = 0;
done:
    if (pre.K) eval_prefix_free(&pre, c->hp);
    free(ctx_ids);
    free(q_ids);
    return rc;
}

static int eval_retrieval(ctx *c, const eval_docs *d) {
    if (c->o->passkey_tokens) {
        /* Filler: the last text, sized by its characters per token. */
        const size_t last = (size_t)d->n - 1;
        const double cpt = (double)d->text_last_len / (double)(d->n_ids[last] ? d->n_ids[last] : 1);
        const size_t chars = (size_t)(cpt * (double)c->o->passkey_tokens);
        for (int i = 0; i < c->o->n_depth; i++) {
            eval_prompt p;
            const unsigned key =
                10000u + (unsigned)((c->o->seed * 7919u + (unsigned)i * 104729u) % 90000u);
            if (eval_passkey_prompt(d->text_last, d->text_last_len, chars, c->o->depths[i], key,
                                    &p) != 0)
                return fprintf(stderr, "subkv-eval: passkey prompt\n"), -1;
            const int rc = eval_prompt_run(c, "passkey", &p);
            eval_prompt_free(&p);
            if (rc != 0) return -1;
        }
    }
    if (c->o->lines) {
        char *buf = NULL, **words = NULL;
        size_t nw = 0;
        if (eval_load_words(c->o->words, &buf, &words, &nw) != 0)
            return fprintf(stderr, "subkv-eval: no words in %s (Debian: wamerican)\n", c->o->words),
                   -1;
        int rc = 0;
        for (int i = 0; i < c->o->n_line_depth && rc == 0; i++) {
            eval_prompt p;
            if (eval_lines_prompt((const char *const *)words, nw, (size_t)c->o->lines,
                                  c->o->line_depths[i], c->o->seed * 1000 + (uint64_t)i, &p) != 0) {
                rc = -1;
                break;
            }
            rc = eval_prompt_run(c, "lines", &p);
            eval_prompt_free(&p);
        }
        free(words);
        free(buf);
        if (rc != 0) return -1;
    }
    return 0;
}

static int write_out(ctx *c, const char *name, int what, int fmt) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", c->o->out, name);
    FILE *f = fopen(path, "w");
    if (!f) return fprintf(stderr, "subkv-eval: cannot write %s\n", path), -1;
    if (what == 0) eval_rows_csv(f, &c->rows);
    if (what == 1) eval_summary(f, &c->rows, fmt);
    if (what == 2)
        eval_layers(f, &c->rows, c->o->n_frac > 1 ? c->o->fracs[1] : c->o->fracs[0], fmt);
    if (what == 3) {
        fputs("Passkey accuracy per depth:\n\n", f);
        eval_depths(f, &c->rows, "passkey", fmt);
        fputs("\nLongEval lines accuracy per depth:\n\n", f);
        eval_depths(f, &c->rows, "lines", fmt);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    opts o;
    const int pa = eval_opts_parse(argc, argv, &o);
    if (pa) return pa == 1 ? 0 : 2;
    ctx c = {.o = &o};
    eval_docs d = {0};
    FILE *wf = NULL;
    int rc = 1;
    skv_err err = {0};
    c.t0 = cli_now_ms();
    if (llama_model_load(o.model, &c.model, &err) != SKV_OK) {
        cli_fail(o.model, &err);
        goto done;
    }
    c.hp = llama_model_hparams(c.model);
    if (llama_tok_open(llama_model_gguf(c.model), &c.tok, &err) != SKV_OK) {
        cli_fail("tokenizer", &err);
        goto done;
    }
    c.logits = malloc(c.hp->n_vocab * sizeof(float));
    if (lineup(&c) != 0) goto done;
    if (!c.logits || c.n_runs == 0 || eval_docs_load(o.texts, c.tok, &d) != 0) goto done;
    char path[1024];
    snprintf(path, sizeof path, "%s/windows.txt", o.out);
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) { /* one level: --out's parent must exist */
        fprintf(stderr, "subkv-eval: cannot create %s: %s\n", o.out, strerror(errno));
        goto done;
    }
    if (!(wf = fopen(path, "w"))) {
        fprintf(stderr, "subkv-eval: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    fprintf(stderr, "subkv-eval: %d policy runs, %d texts, dtype %s\n", c.n_runs, d.n,
            skv_dtype_name((skv_dtype)o.dtype));
    if (eval_ppl(&c, &d, wf) != 0 || eval_retrieval(&c, &d) != 0) goto done;
    if (write_out(&c, "eval.csv", 0, 1) || write_out(&c, "summary.txt", 1, 0) ||
        write_out(&c, "summary.csv", 1, 1) || write_out(&c, "summary.md", 1, 2) ||
        write_out(&c, "layers.csv", 2, 1) || write_out(&c, "layers.md", 2, 2) ||
        write_out(&c, "depths.md", 3, 2))
        goto done;
    eval_summary(stdout, &c.rows, 0);
    printf("# per layer at 1/%u:\n", o.n_frac > 1 ? o.fracs[1] : o.fracs[0]);
    eval_layers(stdout, &c.rows, o.n_frac > 1 ? o.fracs[1] : o.fracs[0], 0);
    printf("# wall %.1f s\n", (cli_now_ms() - c.t0) / 1e3);
    rc = 0;
done:
    if (wf) fclose(wf);
    eval_docs_free(&d);
    free(c.logits);
    eval_rows_free(&c.rows);
    llama_tok_free(c.tok);
    llama_model_free(c.model);
    skv_dicts_free(c.dicts); /* after every sketch that borrowed its sets */
    return rc;
}
