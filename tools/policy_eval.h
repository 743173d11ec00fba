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
    double query_persist;  /* probability a query group keeps the previous group's  */
                           /* target cluster (0: every group aims at a fresh one)   */
} eval_opts;

typedef struct eval_result {
    char label[48];
    size_t bytes;     /* skv_sketch_bytes at the end                          */
    double append_ns; /* per token                                            */
    double attend_us; /* per query group                                      */
    double err_mean;  /* mean over query heads of ||out - ref|| / ||ref||     */
    double err_max;
    double full_frac; /* refreshkv: full steps / attends; -1 for other policies */
    double read_step; /* key + value bytes one attend reads: refreshkv's mean over its
                       * attends; other policies read all they hold (bytes)   */
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

/* The labels the evaluation tools know, each a policy and the settings that make it that
 * label (the library's defaults for the rest). `coded`: the label needs a CSR dictionary. */
typedef struct eval_label {
    const char *name;
    skv_policy_id policy;
    skv_values_mode values; /* explicit: the library's default (cluster) is not subgen-l2's */
    skv_full_store full_store;
    int coded;
} eval_label;
enum { EVAL_N_LABELS = 9 };
/* exact, sinkwin, h2o, subgen-l2, subgen-cluster, refreshkv, refreshkv-subgen, csr,
 * refreshkv-csr: in this order (the line-ups list them so) */
extern const eval_label eval_labels[EVAL_N_LABELS];

/* Room the callers of eval_standard_lineup reserve. */
enum { EVAL_MAX_LINEUP = 12 }; /* the line-up, more policies, and bench rows */

/* The standard line-up at one budget: exact, sinkwin, h2o, subgen (l2), subgen (cluster),
 * refreshkv (the budget sizes its partial cache: equal device memory; its full store is
 * host memory on top), refreshkv-subgen (full_store = subgen, values = cluster: the budget
 * bounds the whole sketch, half partial cache, half SubGen store). Writes at most EVAL_MAX_LINEUP
 * configs/labels; returns how many. */
int eval_standard_lineup(int d, skv_dtype dtype, size_t budget, uint64_t seed, skv_config *cfgs,
                         const char **labels);

/*
 * Options shared by the tools that run the line-up (subkv-bench sketch, subkv-demo):
 *   --policy NAME[,NAME...]   keep only these entries (a label such as subgen-l2, or a
 *                             policy name such as subgen or refreshkv)
 *   --partial-tokens K --stride S --threshold T --pool-kernel P   refreshkv's knobs
 *                             (--partial-tokens overrides what the budget derives)
 *   --decide layer|group      refreshkv in the service: who decides a full step
 */
typedef struct eval_cli {
    char policies[256];                      /* "" = all */
    int partial_tokens, stride, pool_kernel; /* 0 = the policy's default / derived */
    float threshold;                         /* NAN = default */
    int decide;                              /* -1 = default (layer), else skv_decide_mode */
} eval_cli;
void eval_cli_init(eval_cli *c);
/* 1: `opt val` was one of these options (consumed), 0: not one of them, -1: bad value. */
int eval_cli_option(eval_cli *c, const char *opt, const char *val);
/* Usage lines of these options (lineup = 0: only the refreshkv knobs). */
void eval_cli_usage(FILE *f, int lineup);
/* Apply the refreshkv knobs to cfg (a no-op for other policies). */
void eval_cli_knobs(const eval_cli *c, skv_config *cfg);
/* Filter cfgs/labels[np] in place by --policy and apply the knobs; returns the new count
 * (0 when no entry matches). */
int eval_cli_apply(const eval_cli *c, skv_config *cfgs, const char **labels, int np);

/* Fixed-width table (with a '#' header) and optional CSV rows (header when `header`). */
void eval_print_table(FILE *f, size_t n, const eval_result *r, int npol);
void eval_write_csv(FILE *f, size_t n, const eval_result *r, int npol, int header);

#endif /* SUBKV_POLICY_EVAL_H */
