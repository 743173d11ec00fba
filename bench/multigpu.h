/*
 * multigpu.h — what bench/multigpu.c (set-up, check, report) and bench/multigpu_step.c (the
 * timed step on either path) share: one rank's state of `subkv-bench multigpu`.
 */
#ifndef SUBKV_BENCH_MULTIGPU_H
#define SUBKV_BENCH_MULTIGPU_H

#include <mpi.h>

#include "mgpu_plan.h"
#include "skv_cuda.h"
#include "skv_nccl_ops.h"

/* Medians of one path's timed steps (ms). Under --graphs the parts come from event-record
 * nodes inside the graphs; NaN where the device cannot time those. */
typedef struct mgpu_times {
    double step, bcast, attend, gather, merge;
} mgpu_times;

typedef struct mgpu_run {
    const mgpu_opts *o;
    mgpu_plan p;
    mgpu_share sh; /* this rank's */
    int rank, nranks;
    MPI_Comm comm;
    void *nccl;        /* the NCCL communicator (NULL when only the MPI path runs) */
    skv_cuda_ctx *ctx; /* the main context: its stream carries every step */
    void *stream;      /* ctx's cudaStream_t */
    void *K, *V;       /* this rank's rows, [layer set][local job][local row][d] */
    float *w;          /* their weights (subgen), else NULL */
    float *q;          /* every layer's queries [layer][job][group][d] (rank 0 fills) */
    float *send;       /* this rank's partials [layer][local job][part_floats] */
    float *gbuf;       /* rank 0, context sharding: the N gathered sets */
    float *res;        /* rank 0: the step's result, layers * J * part_floats */
    void *host;        /* pinned staging of the MPI path */
    size_t host_bytes;
    size_t *counts[2], *displs[2]; /* gather sizes per rank: [0] one layer, [1] all layers */
    skv_cuda_job *jobs;            /* [layer][local job] over this rank's rows */
    int iters;                     /* per step: layers, or 1 with --layer-batch */
    skv_cuda_events *ev;           /* 5 per iteration + step start/end */
    skv_cuda_ctx **gctx;           /* --graphs: one context per iteration (see step.c) */
    void **gexec;                  /* --graphs: the instantiated graphs */
    int capturing;                 /* events are recorded as graph nodes (during a capture) */
} mgpu_run;

/* Fail-fast after set-up (a peer may wait in a collective): print and MPI_Abort. */
void mgpu_die(const mgpu_run *r, subkv_status st, const skv_err *err, const char *what);

/* Fill rank 0's query buffer with fresh random queries (stream id, never zeros) scaled
 * by 1/sqrt(d). Only rank 0 calls it; synchronous. */
void mgpu_fill_queries(mgpu_run *r, uint64_t stream_id);

/* One step on `path` (MGPU_PATH_NCCL or _MPI); on return every rank's stream is idle and,
 * on rank 0, r->res holds the step's result and *t (when not NULL) its timings. */
void mgpu_step(mgpu_run *r, int path, int use_graphs, mgpu_times *t);

/* --graphs: capture every iteration into a graph of its own context (NCCL path). */
void mgpu_graphs_build(mgpu_run *r);
void mgpu_graphs_free(mgpu_run *r);

/* Warm-up and timed steps on `path`; medians into *t (rank 0). */
void mgpu_time_path(mgpu_run *r, int path, mgpu_times *t);

#endif /* SUBKV_BENCH_MULTIGPU_H */
