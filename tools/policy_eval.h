/*
 * policy_eval.h — stream one synthetic long context through several policies side by side
 * and measure each against float64 exact attention: bytes held, append ns/token, attend
 * us/query, relative output error. The engine behind `subkv-demo` and
 * `subkv-bench sketch`.
 */
#ifndef SUBKV_POLICY_EVAL_H
#define SUBKV_POLICY_EVAL_H

#include <stdio.h>

#include "subkv.h"
#include "synth.h"

typedef struct eval_opts {
    size_t n;              /* context tokens                                        */
    int queries;           /* query groups asked at the end                         */
    int group;             /* query heads per group (GQA)                           */
    int observe_every;     /* h2o: one observing query per this many tokens (0: off) */
    synth_stream_cfg data; /* the synthetic workload (data.d is the head dim)       */
    int progress;          /* 1: progress lines on stderr                           */
} eval_opts;

typedef struct eval_result {
    char label[48];
    size_t bytes;     /* skv_sketch_bytes at the end                          */
    double append_ns; /* per token                                            */
    double attend_us; /* per query group                                      */
    double err_mean;  /* mean over query heads of ||out - ref|| / ||ref||     */
    double err_max;
    skv_stats stats;
    subkv_status status; /* SKV_OK, or why this policy could not run             */
    char msg[200];
} eval_result;

/*
 * Run every policy of cfgs[npol] (labels[npol] name them) on the same stream and the
 * same queries. Returns 0, or -1 when memory for the stream or references is missing.
 */
int eval_run(const eval_opts *o, const skv_config *cfgs, const char *const *labels, int npol,
             eval_result *out);

/*
 * The standard synthetic workload of the demos and benchmarks: `clusters` key clusters of
 * norm 8 (per-coordinate spread 0.4) drifting `drift` per token and coordinate, visited in
 * topic phases of 4 clusters x phase_len tokens (so most are seen only early), values
 * correlated with their cluster (mean norm 8) with Pareto norms (alpha 4).
 */
synth_stream_cfg eval_workload(int d, int clusters, uint32_t phase_len, float drift, uint64_t seed);

/* The standard line-up at one budget: exact, sinkwin, h2o, subgen (l2), subgen (cluster).
 * Writes up to 5 configs/labels; returns how many. */
int eval_standard_lineup(int d, skv_dtype dtype, size_t budget, uint64_t seed, skv_config *cfgs,
                         const char **labels);

/* Fixed-width table (with a '#' header) and optional CSV rows (header when `header`). */
void eval_print_table(FILE *f, size_t n, const eval_result *r, int npol);
void eval_write_csv(FILE *f, size_t n, const eval_result *r, int npol, int header);

#endif /* SUBKV_POLICY_EVAL_H */
