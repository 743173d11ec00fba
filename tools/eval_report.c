/*
 * eval_report.c — subkv-eval's tables (see eval_report.h). Small quadratic scans over the
 * rows: an evaluation has a few thousand of them.
 */
#include "eval_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eval_rows_add(eval_rows *rs, const eval_row *row) {
    if (rs->n == rs->cap) {
        const size_t cap = rs->cap ? rs->cap * 2 : 256;
        eval_row *r = realloc(rs->r, cap * sizeof *r);
        if (!r) return -1;
        rs->r = r;
        rs->cap = cap;
    }
    rs->r[rs->n++] = *row;
    return 0;
}

void eval_rows_free(eval_rows *rs) {
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

void eval_rows_csv(FILE *f, const eval_rows *rs) {
    fprintf(f, "task,item,label,fraction,budget_bytes,held_bytes,partial_bytes,value,weight,"
               "read_bytes_step,full_step_frac\n");
    for (size_t i = 0; i < rs->n; i++) {
        const eval_row *r = &rs->r[i];
        fprintf(f, "%s,%d,%s,%u,%zu,%zu,%zu,%.6g,%.6g,", r->task, r->item, r->label, r->frac,
                r->budget, r->held, r->partial, r->value, r->weight);
        if (r->read > 0.0) fprintf(f, "%.10g", r->read);
        fputc(',', f);
        if (!isnan(r->full)) fprintf(f, "%.6g", r->full);
        fputc('\n', f);
    }
}

typedef struct key {
    const char *label;
    unsigned frac;
} key;

/* Distinct values of one kind, first-seen order. */
static size_t distinct_keys(const eval_rows *rs, key *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        size_t j = 0;
        while (j < n && !(out[j].frac == rs->r[i].frac && !strcmp(out[j].label, rs->r[i].label)))
            j++;
        if (j == n && n < cap) out[n++] = (key){rs->r[i].label, rs->r[i].frac};
    }
    return n;
}

static size_t distinct_tasks(const eval_rows *rs, const char *prefix, const char **out,
                             size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (strncmp(rs->r[i].task, prefix, strlen(prefix)) != 0) continue;
        size_t j = 0;
        while (j < n && strcmp(out[j], rs->r[i].task)) j++;
        if (j == n && n < cap) out[n++] = rs->r[i].task;
    }
    return n;
}

/* Weighted mean of value over rows matching (task, label, frac, item or any when item < 0);
 * NAN when none. *budget: the first match's. */
static double mean_of(const eval_rows *rs, const char *task, const key *k, int item,
                      size_t *budget) {
    double s = 0.0, w = 0.0;
    for (size_t i = 0; i < rs->n; i++) {
        const eval_row *r = &rs->r[i];
        if (strcmp(r->task, task) || strcmp(r->label, k->label) || r->frac != k->frac) continue;
        if (item >= 0 && r->item != item) continue;
        if (budget && w == 0.0) *budget = r->budget;
        s += r->value * r->weight;
        w += r->weight;
    }
    return w > 0.0 ? s / w : NAN;
}

/* Bytes read per step of key k over its rows of the ppl tasks, as a fraction of exact's on
 * the same (task, item) (NAN: no such pairs); *full: the token-weighted mean full-step
 * fraction over those rows (NAN: none measured). */
static double read_frac(const eval_rows *rs, const key *k, double *full) {
    double mine = 0.0, ex = 0.0, fs = 0.0, fw = 0.0;
    for (size_t i = 0; i < rs->n; i++) {
        const eval_row *r = &rs->r[i];
        if (strncmp(r->task, "ppl", 3) || strcmp(r->label, k->label) || r->frac != k->frac)
            continue;
        if (!isnan(r->full)) fs += r->full * r->weight, fw += r->weight;
        if (!(r->read > 0.0)) continue;
        for (size_t j = 0; j < rs->n; j++) {
            const eval_row *e = &rs->r[j];
            if (strcmp(e->label, "exact") || e->frac != 1 || strcmp(e->task, r->task) ||
                e->item != r->item || !(e->read > 0.0))
                continue;
            mine += r->read;
            ex += e->read;
            break;
        }
    }
    *full = fw > 0.0 ? fs / fw : NAN;
    return ex > 0.0 ? mine / ex : NAN;
}

static const char *sep(int fmt) { return fmt == 1 ? "," : fmt == 2 ? " | " : " "; }

static void cell(FILE *f, int fmt, int first, int width, const char *text) {
    if (!first) fputs(sep(fmt), f);
    if (fmt == 0)
        fprintf(f, "%*s", width, text);
    else
        fputs(text, f);
}

static void row_begin(FILE *f, int fmt) {
    if (fmt == 2) fputs("| ", f);
}
static void row_end(FILE *f, int fmt) { fputs(fmt == 2 ? " |\n" : "\n", f); }
static void md_rule(FILE *f, int fmt, int cols) {
    if (fmt != 2) return;
    fputs("|", f);
    for (int c = 0; c < cols; c++) fputs("---|", f);
    fputs("\n", f);
}

static void num(char *b, size_t n, double v, const char *f) {
    if (isnan(v))
        snprintf(b, n, "-");
    else
        snprintf(b, n, f, v);
}

void eval_summary(FILE *f, const eval_rows *rs, int fmt) {
    key keys[64];
    const char *ppl[8], *ret[4];
    const size_t nk = distinct_keys(rs, keys, 64);
    const size_t np = distinct_tasks(rs, "ppl", ppl, 8);
    size_t nr = distinct_tasks(rs, "passkey", ret, 4);
    nr += distinct_tasks(rs, "lines", ret + nr, 4 - nr);
    char b[64];
    row_begin(f, fmt);
    cell(f, fmt, 1, 15, fmt == 0 ? "# policy" : "policy");
    cell(f, fmt, 0, 8, "memory");
    cell(f, fmt, 0, 10, "budget_B");
    int cols = 3;
    for (size_t t = 0; t < np; t++) {
        snprintf(b, sizeof b, "%s", ppl[t]);
        cell(f, fmt, 0, 10, b);
        snprintf(b, sizeof b, "d%s_%%", ppl[t]);
        cell(f, fmt, 0, 11, b);
        cols += 2;
    }
    for (size_t t = 0; t < nr; t++, cols++) {
        snprintf(b, sizeof b, "%s_acc", ret[t]);
        cell(f, fmt, 0, 11, b);
    }
    cell(f, fmt, 0, 10, "attn_err");
    cell(f, fmt, 0, 10, "read/step");
    cell(f, fmt, 0, 13, "full_steps_%");
    row_end(f, fmt);
    md_rule(f, fmt, cols + 3);
    for (size_t i = 0; i < nk; i++) {
        const key *k = &keys[i];
        if (!strcmp(k->label, "subgen-stats")) continue;
        row_begin(f, fmt);
        cell(f, fmt, 1, 15, k->label);
        snprintf(b, sizeof b, k->frac > 1 ? "1/%u" : "1", k->frac);
        cell(f, fmt, 0, 8, b);
        size_t budget = 0;
        if (np) (void)mean_of(rs, ppl[0], k, -1, &budget);
        snprintf(b, sizeof b, "%zu", budget);
        cell(f, fmt, 0, 10, k->frac > 1 ? b : "-");
        for (size_t t = 0; t < np; t++) {
            const key ex = {"exact", 1};
            const double m = mean_of(rs, ppl[t], k, -1, NULL);
            const double me = mean_of(rs, ppl[t], &ex, -1, NULL);
            num(b, sizeof b, exp(m), "%.3f");
            cell(f, fmt, 0, 10, b);
            num(b, sizeof b, 100.0 * (exp(m - me) - 1.0), "%+.2f");
            cell(f, fmt, 0, 11, b);
        }
        for (size_t t = 0; t < nr; t++) {
            num(b, sizeof b, mean_of(rs, ret[t], k, -1, NULL), "%.2f");
            cell(f, fmt, 0, 11, b);
        }
        num(b, sizeof b, mean_of(rs, "attn", k, -1, NULL), "%.4f");
        cell(f, fmt, 0, 10, b);
        double full = NAN;
        num(b, sizeof b, read_frac(rs, k, &full), "%.4f");
        cell(f, fmt, 0, 10, b);
        num(b, sizeof b, 100.0 * full, "%.1f");
        cell(f, fmt, 0, 13, b);
        row_end(f, fmt);
    }
}

void eval_layers(FILE *f, const eval_rows *rs, unsigned frac, int fmt) {
    key keys[64], sel[16];
    const size_t nk = distinct_keys(rs, keys, 64);
    size_t ns = 0;
    for (size_t i = 0; i < nk && ns < 16; i++)
        if (keys[i].frac == frac && strcmp(keys[i].label, "subgen-stats")) sel[ns++] = keys[i];
    int maxl = -1;
    for (size_t i = 0; i < rs->n; i++)
        if (!strcmp(rs->r[i].task, "attn") && rs->r[i].item > maxl) maxl = rs->r[i].item;
    char b[64];
    row_begin(f, fmt);
    cell(f, fmt, 1, 7, fmt == 0 ? "# layer" : "layer");
    for (size_t s = 0; s < ns; s++) {
        snprintf(b, sizeof b, "%s", sel[s].label);
        cell(f, fmt, 0, 15, b);
    }
    int nz = 0; /* subgen runs: the log-normalizer error column too */
    for (size_t s = 0; s < ns; s++) {
        if (strncmp(sel[s].label, "subgen", 6) != 0) continue;
        snprintf(b, sizeof b, "%s_lnZ", sel[s].label);
        cell(f, fmt, 0, 18, b);
        nz++;
    }
    cell(f, fmt, 0, 9, "clusters");
    cell(f, fmt, 0, 11, "delta/knorm");
    row_end(f, fmt);
    md_rule(f, fmt, (int)ns + nz + 3);
    const key st = {"subgen-stats", frac};
    for (int l = 0; l <= maxl; l++) {
        row_begin(f, fmt);
        snprintf(b, sizeof b, "%d", l);
        cell(f, fmt, 1, 7, b);
        for (size_t s = 0; s < ns; s++) {
            num(b, sizeof b, mean_of(rs, "attn", &sel[s], l, NULL), "%.4f");
            cell(f, fmt, 0, 15, b);
        }
        for (size_t s = 0; s < ns; s++) {
            if (strncmp(sel[s].label, "subgen", 6) != 0) continue;
            num(b, sizeof b, mean_of(rs, "normerr", &sel[s], l, NULL), "%.3f");
            cell(f, fmt, 0, 18, b);
        }
        num(b, sizeof b, mean_of(rs, "clusters", &st, l, NULL), "%.1f");
        cell(f, fmt, 0, 9, b);
        num(b, sizeof b, mean_of(rs, "delta", &st, l, NULL), "%.3f");
        cell(f, fmt, 0, 11, b);
        row_end(f, fmt);
    }
}

void eval_depths(FILE *f, const eval_rows *rs, const char *task, int fmt) {
    key keys[64];
    const size_t nk = distinct_keys(rs, keys, 64);
    int depths[32];
    size_t nd = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (strcmp(rs->r[i].task, task)) continue;
        size_t j = 0;
        while (j < nd && depths[j] != rs->r[i].item) j++;
        if (j == nd && nd < 32) depths[nd++] = rs->r[i].item;
    }
    if (nd == 0) return;
    char b[64];
    row_begin(f, fmt);
    cell(f, fmt, 1, 7, fmt == 0 ? "# depth" : "depth");
    int cols = 1;
    for (size_t i = 0; i < nk; i++) {
        if (!strcmp(keys[i].label, "subgen-stats")) continue;
        snprintf(b, sizeof b, keys[i].frac > 1 ? "%s@1/%u" : "%s", keys[i].label, keys[i].frac);
        cell(f, fmt, 0, 20, b);
        cols++;
    }
    row_end(f, fmt);
    md_rule(f, fmt, cols);
    for (size_t d = 0; d < nd; d++) {
        row_begin(f, fmt);
        snprintf(b, sizeof b, "%d%%", depths[d]);
        cell(f, fmt, 1, 7, b);
        for (size_t i = 0; i < nk; i++) {
            if (!strcmp(keys[i].label, "subgen-stats")) continue;
            num(b, sizeof b, mean_of(rs, task, &keys[i], depths[d], NULL), "%.2f");
            cell(f, fmt, 0, 20, b);
        }
        row_end(f, fmt);
    }
}
