/*
 * mgpu_plan.h — the host-side bookkeeping of `subkv-bench multigpu` (bench/multigpu.c):
 * its options, how a step's work is split over the ranks (one GPU each), where every
 * rank's partials land in rank 0's gather buffer, which rows of the virtual full data each
 * rank regenerates, the bytes each rank holds, and the host mirror of the GPU merge kernel.
 * Pure C (no MPI, no CUDA), so the CPU test suite (tests/test_multigpu.c) holds it to
 * account.
 *
 * The workload: `layers` layers, each attending for `batch` sequences x `kv_heads` KV heads
 * = J jobs (job j = sequence j / kv_heads, kv head j % kv_heads), each job one GQA group of
 * `group` query heads over `entries` rows of d keys and values (exact: the context; subgenF:
 * context / F weighted rows, SubGen's memory at 1/F). Partials {m, l, o[d]} are (d + 2)
 * floats per query head (skv_partial), so one job's partials are group * (d + 2) floats.
 *
 * Sharding over N ranks:
 *   head     rank r owns jobs [j0, j0 + nj) (contiguous, mgpu_split of J) with all their
 *            rows; its partials are final. J % N != 0: the first J % N ranks get one job
 *            more; J < N: the last N - J ranks own nothing (they still join every
 *            collective, with empty messages).
 *   context  rank r owns rows [t0, t0 + nt) (mgpu_split of entries) of every job; rank 0
 *            merges the N partial sets per job by the log-sum-exp rule. entries < N: the
 *            last ranks own no rows and send empty partials (m = -inf), which merge as
 *            nothing.
 * Data: element e of global row R (= ((ls * J) + job) * entries + token, ls = layer %
 * distinct) is the (R * d + e)-th value of a counter-hash stream (skv_cuda_fill_random_at),
 * so any rank, or rank 0 alone for the 1-GPU reference, regenerates any shard bit for bit.
 */
#ifndef SUBKV_MGPU_PLAN_H
#define SUBKV_MGPU_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "skv_cuda.h"
#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { MGPU_SHARD_HEAD = 0, MGPU_SHARD_CONTEXT = 1 };
enum { MGPU_PATH_NCCL = 1, MGPU_PATH_MPI = 2, MGPU_PATH_BOTH = 3 };
enum { MGPU_WEAK_NONE = 0, MGPU_WEAK_CONTEXT = 1, MGPU_WEAK_BATCH = 2 };

/* --check keeps the whole data (all layers' distinct K/V, weights) on rank 0's GPU for the
 * 1-GPU reference: at most this many bytes (4 GiB: --context 32K at the default shape is
 * 1 GiB). */
#define MGPU_CHECK_MAX_BYTES ((size_t)4 << 30)

typedef struct mgpu_opts {
    int layers, kv_heads, group, d;
    skv_dtype dtype;         /* f16 or bf16 */
    size_t batch, context;   /* before weak scaling */
    int subgen_f;            /* 1: exact; F > 1: subgenF, context / F weighted rows a job */
    int shard, path, weak;   /* MGPU_SHARD_*, MGPU_PATH_*, MGPU_WEAK_* */
    int steps, warmup;       /* timed steps (median), untimed ones before */
    int layer_batch, graphs; /* one bcast/attend/gather per step; CUDA graphs (NCCL only) */
    int check;               /* compare paths and the 1-GPU reference after timing */
    int distinct_layers;     /* K/V sets; layer l reads set l % distinct_layers */
    uint64_t chunk, seed;    /* attend split-K chunk (0: auto); data and query seed */
    const char *csv;         /* append rows here (NULL: none) */
} mgpu_opts;

/* The defaults: 32 layers x 8 kv heads x 4 query heads, d 128, f16, batch 8, context 512K,
 * exact, head sharding, path both, 10 steps after 2 warm-up, distinct layers 1, seed 1. */
void mgpu_opts_default(mgpu_opts *o);
void mgpu_usage(FILE *f);

/*
 * Parse argv[0..argc) (the words after `multigpu`) over the defaults already in *o.
 * Returns 0 when parsed, 1 for --help (the caller prints mgpu_usage and exits 0), 2 for a
 * bad or conflicting option with one line in why[whylen]: unknown option or value, a
 * missing value, --graphs with a path other than nccl, --check whose 1-GPU reference
 * (mgpu_reference_bytes at one GPU) exceeds MGPU_CHECK_MAX_BYTES.
 */
int mgpu_opts_parse(mgpu_opts *o, int argc, char **argv, char *why, size_t whylen);

typedef struct mgpu_plan {
    int nranks, layers, distinct, group, d, shard;
    size_t batch, context; /* after weak scaling */
    uint64_t jobs;         /* batch * kv_heads */
    uint64_t entries;      /* rows a job: context / subgen_f */
    size_t part_floats;    /* floats of one job's partials: group * (d + 2) */
    int weighted;          /* subgen: rows carry weights a = b */
    int esize;             /* bytes per K/V element (2) */
} mgpu_plan;

/* The plan of o on nranks ranks (weak scaling applied). 0, or 2 with why: no rows a job
 * (context < F), --check whose data outgrows MGPU_CHECK_MAX_BYTES at this size. */
int mgpu_plan_make(const mgpu_opts *o, int nranks, mgpu_plan *p, char *why, size_t whylen);

/* Part r of n items split over `parts`: [*lo, *hi). The first n % parts parts get one item
 * more, so sizes differ by at most one and the parts tile [0, n) in order. */
void mgpu_split(uint64_t n, int parts, int r, uint64_t *lo, uint64_t *hi);

/* Rank r's share: jobs [j0, j0 + nj), rows [t0, t0 + nt) of each of them. */
typedef struct mgpu_share {
    uint64_t j0, nj, t0, nt;
} mgpu_share;
mgpu_share mgpu_share_of(const mgpu_plan *p, int r);

/* Floats rank r sends to rank 0 for `layers` layers of one step (1: a per-layer gather;
 * p->layers: --layer-batch): nj * layers * part_floats. */
size_t mgpu_send_floats(const mgpu_plan *p, int r, int layers);
/* Where rank r's message starts in rank 0's receive buffer (floats). Head sharding: j0 *
 * layers * part_floats (per layer: straight into job order); context: r * J * layers *
 * part_floats (N sets of the full result, merged afterwards). */
size_t mgpu_recv_displ(const mgpu_plan *p, int r, int layers);
/* Floats of rank 0's receive buffer: J * layers * part_floats (head), N times that
 * (context). */
size_t mgpu_recv_floats(const mgpu_plan *p, int layers);
/* Offset (floats) of (layer, job)'s partials in rank 0's step result (layers * J *
 * part_floats): canonical [layer][job] except for head sharding with --layer-batch, where
 * the gather leaves it rank-blocked [rank][layer][local job]. */
size_t mgpu_result_offset(const mgpu_plan *p, int layer_batch, int layer, uint64_t job);

/* Global row of (layer set ls, job, token) in the virtual full data. */
uint64_t mgpu_global_row(const mgpu_plan *p, int ls, uint64_t job, uint64_t token);
/* Rank-local row of (ls, local job i, local token t): [ls][i][t] over the share. */
uint64_t mgpu_local_row(const mgpu_plan *p, const mgpu_share *s, int ls, uint64_t i, uint64_t t);
/* Rows rank r holds: distinct * nj * nt. */
uint64_t mgpu_rank_rows(const mgpu_plan *p, int r);
/* Device bytes of rank r's K, V and weights: rows * (2 d esize + (weighted ? 4 : 0)). */
size_t mgpu_rank_bytes(const mgpu_plan *p, int r);
/* Bytes of the whole data on one GPU (the --check reference). */
size_t mgpu_reference_bytes(const mgpu_plan *p);

/*
 * The attend jobs of layers [l0, l1) on a rank with share s, in [layer][local job] order
 * (jobs[(l - l0) * nj + i]): keys K + local_row(l % distinct, i, 0) * d elements, values
 * likewise, weights w (rows, or NULL), queries q + (l * J + j0 + i) * group * d floats (the
 * broadcast holds every layer's queries), partials out + ((l - l0) * nj + i) * part_floats.
 * Returns the job count (l1 - l0) * nj.
 */
int mgpu_build_jobs(const mgpu_plan *p, const mgpu_share *s, int l0, int l1, const void *K,
                    const void *V, const float *w, const float *q, float *out, skv_cuda_job *jobs);

/*
 * Host mirror of the GPU merge (skv_cuda_merge_partial_sets): out[i] = in[0][i] (+)
 * in[1][i] (+) ... (+) in[nsets-1][i] for partials i in [0, nparts), folded in set order by
 * skv_partial_merge's rule; set k starts at in + k * set_stride floats, partials are d + 2
 * floats apart.
 */
void mgpu_merge_host(const float *in, int nsets, size_t set_stride, size_t nparts, int d,
                     float *out);

/* Short policy label: "exact" or "subgenF". */
void mgpu_policy_name(int subgen_f, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_MGPU_PLAN_H */
