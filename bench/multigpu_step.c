/*
 * multigpu_step.c — one decode step of `subkv-bench multigpu` on the NCCL or the MPI path,
 * its timing, and its CUDA-graph form.
 *
 * A step is `iters` iterations (one per layer, or one for all layers with --layer-batch),
 * each: broadcast the queries from rank 0 -> every rank attends over its rows -> gather the
 * partials to rank 0 -> (context sharding) rank 0 merges the N sets. Five events per
 * iteration on rank 0's stream time the parts; two more the whole step. Events time
 * rank 0's stream as it runs, idle gaps included, so on the MPI path (host staging, blocking
 * MPI calls between the copies) they still measure rank 0's wall time of each part.
 *
 * --graphs: skv_cuda_attend copies the job array from a pinned host array of its context
 * and may grow its scratch, so one context cannot serve several captured graphs. Each
 * iteration gets a context of its own (gctx[it]), warmed by one ordinary iteration (which
 * sizes its arrays and is a first P2P exchange outside any capture, as NCCL asks), then
 * captured on that context's stream in relaxed mode; its graph is replayed on the main
 * stream every step. The queries are refilled in place before each step, so every replay
 * broadcasts fresh ones. The part events are captured too, as event-record nodes
 * (cudaEventRecordExternal), so a replay times its parts like an ordinary iteration.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "multigpu.h"

/* call names `&err_`, the skv_err this macro declares for it */
#define OK_OR_DIE(call, r, what)                                                                   \
    do {                                                                                           \
        skv_err err_ = {SKV_OK, ""};                                                               \
        subkv_status st_ = (call);                                                                 \
        if (st_ != SKV_OK) mgpu_die((r), st_, &err_, (what));                                      \
    } while (0)

void mgpu_die(const mgpu_run *r, subkv_status st, const skv_err *err, const char *what) {
    fprintf(stderr, "subkv-bench multigpu: rank %d: %s: %s: %s\n", r->rank, what,
            subkv_status_name(st), err->msg);
    fflush(stderr);
    MPI_Abort(r->comm, 1);
    exit(1); /* not reached */
}

static void rec(mgpu_run *r, skv_cuda_events *ev, int i, void *stream) {
    if (ev && r->capturing)
        OK_OR_DIE(skv_cuda_events_record_in_graph(ev, i, stream, &err_), r, "event in graph");
    else if (ev)
        OK_OR_DIE(skv_cuda_events_record(ev, i, stream, &err_), r, "event");
}

void mgpu_fill_queries(mgpu_run *r, uint64_t stream_id) {
    const size_t n = (size_t)r->p.layers * r->p.jobs * (size_t)r->p.group * (size_t)r->p.d;
    /* splitmix-style mix of (seed, id): distinct seeds do not give shifted copies of one
     * stream (fill_random's streams are seed + phi * index) */
    uint64_t z = r->o->seed * 0x9e3779b97f4a7c15ull + (stream_id + 1) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 31)) * 0x94d049bb133111ebull;
    OK_OR_DIE(
        skv_cuda_fill_random(r->q, n, SKV_DTYPE_F32, z ^ (z >> 29), 1.0f / sqrtf(r->p.d), &err_), r,
        "queries");
}

/* One iteration `it` on ctx/stream (ev: NULL during a capture). */
static void iteration(mgpu_run *r, int path, int it, skv_cuda_ctx *ctx, void *stream,
                      skv_cuda_events *ev) {
    const mgpu_plan *p = &r->p;
    const int lb = r->o->layer_batch, nl = lb ? p->layers : 1, l0 = lb ? 0 : it;
    const size_t pf = p->part_floats, nj = (size_t)r->sh.nj;
    const size_t qf = p->jobs * (size_t)p->group * (size_t)p->d; /* one layer's queries */
    float *q = r->q + (size_t)l0 * qf, *send = r->send + (size_t)l0 * nj * pf;
    float *recv = NULL;
    if (r->rank == 0)
        recv =
            p->shard == MGPU_SHARD_HEAD ? r->res + (lb ? 0 : (size_t)l0 * p->jobs * pf) : r->gbuf;
    const int base = 5 * it;
    rec(r, ev, base, stream);
    if (path == MGPU_PATH_NCCL)
        OK_OR_DIE(skv_nccl_bcast(r->nccl, q, (size_t)nl * qf * sizeof(float), stream, &err_), r,
                  "NCCL broadcast");
    else
        OK_OR_DIE(skv_mpi_bcast_dev(r->comm, q, (size_t)nl * qf * sizeof(float), r->host,
                                    r->host_bytes, stream, &err_),
                  r, "MPI broadcast");
    rec(r, ev, base + 1, stream);
    if (nj) /* a rank without jobs (head sharding, J < N) only joins the collectives */
        OK_OR_DIE(skv_cuda_attend(ctx, r->jobs + (size_t)l0 * nj, (int)((size_t)nl * nj), p->d,
                                  p->group, r->o->dtype, r->o->chunk, &err_),
                  r, "attend");
    rec(r, ev, base + 2, stream);
    if (path == MGPU_PATH_NCCL)
        OK_OR_DIE(
            skv_nccl_gatherv(r->nccl, send, recv, r->counts[lb], r->displs[lb], stream, &err_), r,
            "NCCL gather");
    else
        OK_OR_DIE(skv_mpi_gatherv_dev(r->comm, send, recv, r->counts[lb], r->displs[lb], r->host,
                                      r->host_bytes, stream, &err_),
                  r, "MPI gather");
    rec(r, ev, base + 3, stream);
    if (r->rank == 0 && p->shard == MGPU_SHARD_CONTEXT) {
        const size_t set = (size_t)nl * p->jobs * pf;
        OK_OR_DIE(skv_cuda_merge_partial_sets(r->gbuf, p->nranks, set,
                                              (size_t)nl * p->jobs * (size_t)p->group, p->d,
                                              r->res + (size_t)l0 * p->jobs * pf, stream, &err_),
                  r, "merge");
    }
    rec(r, ev, base + 4, stream);
}

/* ms from event i to j; inside graphs (soft) a failure reads NaN instead of aborting. */
static double elapsed(mgpu_run *r, int i, int j, int soft) {
    float ms = 0;
    skv_err err = {SKV_OK, ""};
    const subkv_status st = skv_cuda_events_elapsed(r->ev, i, j, &ms, &err);
    if (st == SKV_OK) return ms;
    if (!soft) mgpu_die(r, st, &err, "elapsed");
    return NAN;
}

void mgpu_step(mgpu_run *r, int path, int use_graphs, mgpu_times *t) {
    const int t0 = 5 * r->iters, t1 = t0 + 1;
    rec(r, r->ev, t0, r->stream);
    for (int it = 0; it < r->iters; it++)
        if (use_graphs)
            OK_OR_DIE(skv_cuda_graph_launch(r->gexec[it], r->stream, &err_), r, "graph launch");
        else
            iteration(r, path, it, r->ctx, r->stream, r->ev);
    rec(r, r->ev, t1, r->stream);
    OK_OR_DIE(skv_cuda_stream_sync(r->stream, &err_), r, "step");
    if (!t || r->rank != 0) return;
    t->step = elapsed(r, t0, t1, 0);
    t->bcast = t->attend = t->gather = t->merge = 0;
    for (int it = 0; it < r->iters; it++) {
        t->bcast += elapsed(r, 5 * it, 5 * it + 1, use_graphs);
        t->attend += elapsed(r, 5 * it + 1, 5 * it + 2, use_graphs);
        t->gather += elapsed(r, 5 * it + 2, 5 * it + 3, use_graphs);
        t->merge += elapsed(r, 5 * it + 3, 5 * it + 4, use_graphs);
    }
}

void mgpu_graphs_build(mgpu_run *r) {
    r->gctx = calloc((size_t)r->iters, sizeof *r->gctx);
    r->gexec = calloc((size_t)r->iters, sizeof *r->gexec);
    if (!r->gctx || !r->gexec) {
        const skv_err e = {SKV_ERR_NOMEM, "no memory for the graph tables"};
        mgpu_die(r, SKV_ERR_NOMEM, &e, "graphs");
    }
    for (int it = 0; it < r->iters; it++) {
        OK_OR_DIE(skv_cuda_ctx_create(&r->gctx[it], &err_), r, "graph context");
        void *s = skv_cuda_ctx_stream(r->gctx[it]);
        iteration(r, MGPU_PATH_NCCL, it, r->gctx[it], s, NULL); /* warm: sizes, first P2P */
        OK_OR_DIE(skv_cuda_stream_sync(s, &err_), r, "graph warm-up");
        MPI_Barrier(r->comm);
        OK_OR_DIE(skv_cuda_capture_begin(s, &err_), r, "capture");
        r->capturing = 1; /* the part events become nodes of the graph */
        iteration(r, MGPU_PATH_NCCL, it, r->gctx[it], s, r->ev);
        r->capturing = 0;
        OK_OR_DIE(skv_cuda_capture_end(s, 1, &r->gexec[it], &err_), r, "capture end");
    }
    MPI_Barrier(r->comm);
}

void mgpu_graphs_free(mgpu_run *r) {
    for (int it = 0; r->gexec && it < r->iters; it++) skv_cuda_graph_destroy(r->gexec[it]);
    for (int it = 0; r->gctx && it < r->iters; it++) skv_cuda_ctx_destroy(r->gctx[it]);
    free(r->gexec), free(r->gctx);
    r->gexec = NULL, r->gctx = NULL;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void mgpu_time_path(mgpu_run *r, int path, mgpu_times *t) {
    const int n = r->o->steps, graphs = r->o->graphs && path == MGPU_PATH_NCCL;
    double *v = calloc((size_t)5 * (size_t)n, sizeof *v);
    if (!v) {
        const skv_err e = {SKV_ERR_NOMEM, "no memory for the timing table"};
        mgpu_die(r, SKV_ERR_NOMEM, &e, "timing");
    }
    for (int s = 0; s < r->o->warmup; s++) {
        if (r->rank == 0) mgpu_fill_queries(r, 1000 + (uint64_t)s);
        MPI_Barrier(r->comm);
        mgpu_step(r, path, 0, NULL);
    }
    if (graphs) mgpu_graphs_build(r);
    for (int s = 0; s < n; s++) {
        /* fresh queries every step, made before the step starts (not timed); the barrier
         * starts every rank's step together */
        if (r->rank == 0) mgpu_fill_queries(r, 2000 + (uint64_t)s);
        MPI_Barrier(r->comm);
        mgpu_times x;
        mgpu_step(r, path, graphs, &x);
        if (r->rank == 0) {
            v[s] = x.step, v[n + s] = x.bcast, v[2 * n + s] = x.attend;
            v[3 * n + s] = x.gather, v[4 * n + s] = x.merge;
        }
    }
    t->step = median(v, n);
    t->bcast = median(v + n, n);
    t->attend = median(v + 2 * n, n);
    t->gather = median(v + 3 * n, n);
    t->merge = median(v + 4 * n, n);
    free(v);
}
