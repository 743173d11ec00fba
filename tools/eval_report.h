/*
 * eval_report.h — subkv-eval's results: raw rows, the summary table (printed, CSV, markdown)
 * and the per-layer table.
 */
#ifndef SUBKV_EVAL_REPORT_H
#define SUBKV_EVAL_REPORT_H

#include <stddef.h>
#include <stdio.h>

/* One measurement. task: "ppl<L>" (value: mean NLL of one window's tail, weight: tokens),
 * "passkey" / "lines" (value 1 correct, 0 not; item: depth in percent), "attn" (value: mean
 * relative attention-output error of layer `item` in one window, weight 1), "clusters" /
 * "normerr" (mean |log(estimated / exact softmax normalizer)| of layer `item`), "clusters" /
 * "delta" (subgen's mean clusters / final delta over mean key norm of layer `item`). */
typedef struct eval_row {
    char task[16];
    int item;
    char label[24];
    unsigned frac; /* 1/frac of exact memory; 1 for exact */
    size_t budget, held, partial;
    double value, weight;
    /* the run's mean key + value bytes read per decode step per (layer, kv head) sketch
     * (eval_attn_read; 0: not measured) and refreshkv's fraction of full steps (NAN: other
     * policies) */
    double read, full;
} eval_row;

typedef struct eval_rows {
    eval_row *r;
    size_t n, cap;
} eval_rows;

/* Append a row (copied); 0 or -1 (no memory). */
int eval_rows_add(eval_rows *rs, const eval_row *row);
void eval_rows_free(eval_rows *rs);
/* Every row, with a header; read and full are the last two columns (read_bytes_step,
 * full_step_frac; empty when not measured). */
void eval_rows_csv(FILE *f, const eval_rows *rs);

/*
 * The summary: one line per (label, fraction) in first-seen order: perplexity per ppl task
 * (exp of the token-weighted mean NLL), its change vs exact in percent, retrieval accuracy
 * per task, mean attention error over layers and windows, the budget of the first ppl task,
 * "read/step": bytes read per decode step as a fraction of exact's (the sum of the run's
 * read over its ppl rows / the sum of exact's over the same windows, task and item; "-"
 * without them), and "full_steps_%" (refreshkv: the token-weighted mean of full over its ppl
 * rows, in percent; "-" for other policies). fmt 0: fixed-width text, 1: CSV, 2: markdown.
 */
void eval_summary(FILE *f, const eval_rows *rs, int fmt);
/* Per-layer table at fraction frac: attention error per label, subgen runs' mean
 * |log normalizer error| ("normerr" rows), subgen's clusters and delta ratio. fmt as above. */
void eval_layers(FILE *f, const eval_rows *rs, unsigned frac, int fmt);
/* Retrieval accuracy per depth (rows) and label@fraction (columns) of one task. */
void eval_depths(FILE *f, const eval_rows *rs, const char *task, int fmt);

#endif /* SUBKV_EVAL_REPORT_H */
