/*
 * worker.h — subkv-worker: owns one device (the CPU backend for now) and a shard of
 * sketches; serves the coordinator's WorkerOps (proto/subkv.proto) until WOP_SHUTDOWN.
 */
#ifndef SUBKV_WORKER_H
#define SUBKV_WORKER_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "subkv.h"
#include "subkv.pb-c.h"

typedef enum skv_worker_backend {
    SKV_WORKER_AUTO = 0, /* the GPU of this node-local rank when there is one, else the CPU */
    SKV_WORKER_CPU = 1,  /* the CPU reference only */
    SKV_WORKER_CUDA = 2, /* the GPU, or fail at start */
} skv_worker_backend;

typedef struct skv_worker_opts {
    size_t budget_bytes; /* sum of sketch bytes this worker may hold; 0 = unlimited */
    skv_worker_backend backend;
    size_t gpu_reserve_bytes; /* device memory reserved at start for the GPU pool; 0: on demand */
    int verbose;
    /* Test hook (env SUBKV_FAULT "ckpt-worker-partial:N"): on the Nth checkpoint write half
     * of this worker's file, then die by SIGKILL. NULL: never. */
    const char *fault;
} skv_worker_opts;

/*
 * The op handler without MPI: one worker's sketch table, device and buffers. subkv-worker
 * drives it from its MPI loop (skv_worker_serve); the coordinator's --local-worker drives
 * one in-process on rank 0 (coord.c), so rank 0 owns a shard like any worker.
 */
typedef struct skv_worker skv_worker;

/*
 * A handler for rank `rank` of a job of `nworkers` remote workers (checkpoint files are
 * named and checked by both). The backend follows opts->backend; auto and cuda take the GPU
 * of node-local rank `local_rank` (skv_backend_select) when there is one, else the CPU,
 * saying so on stderr (cuda) or in skv_worker_backend_name. Fails only on no memory.
 */
subkv_status skv_worker_new(int rank, int nworkers, int local_rank, const skv_worker_opts *opts,
                            skv_worker **out, skv_err *err);

/* What one op produced; valid until the next skv_worker_handle or skv_worker_free. */
typedef struct skv_worker_result {
    const float *out;          /* partials [items with queries][group][head_dim + 2] */
    size_t nout;               /* floats at out (0 unless the op succeeded with queries) */
    Subkv__WorkerStats *stats; /* WOP_STATS: this worker's numbers, else NULL */
    int shutdown;              /* WOP_SHUTDOWN: the caller stops serving */
} skv_worker_result;

/*
 * Handle one op whose payload (the items' K, V and Q floats in item order) is in[0, nin).
 * Returns its status (err says why); a failed op leaves every sketch as it was. *res is
 * always filled (empty on failure).
 */
subkv_status skv_worker_handle(skv_worker *w, const Subkv__WorkerOp *op, const float *in,
                               size_t nin, skv_worker_result *res, skv_err *err);

/* "cuda:0 (NVIDIA H200, ...)" or "cpu (...)": the backend in use, after every fallback. */
const char *skv_worker_backend_name(const skv_worker *w);

/* The CUDA device ordinal the worker's GPU path uses, or -1 when it runs on the CPU. */
int skv_worker_device(const skv_worker *w);

/* Free everything (NULL: nothing). */
void skv_worker_free(skv_worker *w);

/*
 * Serve rank 0 of comm until it sends WOP_SHUTDOWN. Returns 0 after a clean shutdown,
 * non-zero when the coordinator link failed: an MPI error (errors return on comm), or the
 * coordinator's process gone from this host (checked about once a second while waiting, so
 * a worker never waits forever for a dead coordinator). Every request gets a reply; a
 * failed request leaves every sketch as it was.
 */
int skv_worker_serve(MPI_Comm comm, const skv_worker_opts *opts);

#endif /* SUBKV_WORKER_H */
