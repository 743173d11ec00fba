/*
 * worker.h — subkv-worker: owns one device (the CPU backend for now) and a shard of
 * sketches; serves the coordinator's WorkerOps (proto/subkv.proto) until WOP_SHUTDOWN.
 */
#ifndef SUBKV_WORKER_H
#define SUBKV_WORKER_H

#include <mpi.h>
#include <stddef.h>

typedef struct skv_worker_opts {
    size_t budget_bytes; /* sum of sketch bytes this worker may hold; 0 = unlimited */
    int verbose;
} skv_worker_opts;

/*
 * Serve rank 0 of comm until it sends WOP_SHUTDOWN. Returns 0 after a clean shutdown,
 * non-zero when the coordinator link failed. Every request gets a reply; a failed
 * request leaves every sketch as it was.
 */
int skv_worker_serve(MPI_Comm comm, const skv_worker_opts *opts);

#endif /* SUBKV_WORKER_H */
