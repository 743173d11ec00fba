/*
 * worker.h — subkv-worker: owns one device (the CPU backend for now) and a shard of
 * sketches; serves the coordinator's WorkerOps (proto/subkv.proto) until WOP_SHUTDOWN.
 */
#ifndef SUBKV_WORKER_H
#define SUBKV_WORKER_H

#include <mpi.h>
#include <stddef.h>

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
 * Serve rank 0 of comm until it sends WOP_SHUTDOWN. Returns 0 after a clean shutdown,
 * non-zero when the coordinator link failed: an MPI error (errors return on comm), or the
 * coordinator's process gone from this host (checked about once a second while waiting, so
 * a worker never waits forever for a dead coordinator). Every request gets a reply; a
 * failed request leaves every sketch as it was.
 */
int skv_worker_serve(MPI_Comm comm, const skv_worker_opts *opts);

#endif /* SUBKV_WORKER_H */
