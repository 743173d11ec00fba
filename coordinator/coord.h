/*
 * coord.h — libsubkv-coord: the coordinator engine, embeddable in any rank 0.
 *
 * It holds the sequence table and the shard map, turns each client request into one
 * batched WorkerOp per worker that owns a touched sketch (proto/subkv.proto), sends them
 * over MPI, gathers the partials and merges them (skv_partial_merge, in context-shard
 * order). subkv-coordinator is this library plus a socket server; an inference engine
 * already running under mpirun can call skv_coord_handle directly from its rank 0.
 */
#ifndef SUBKV_COORD_H
#define SUBKV_COORD_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

typedef struct skv_coord skv_coord;

typedef struct skv_coord_opts {
    int verbose;
    /* Most milliseconds an op waits for every worker's reply before the worker that has not
     * answered is declared lost (0: SKV_COORD_DEFAULT_DEADLINE_MS). Checkpoint and restore
     * wait at least SKV_COORD_IO_DEADLINE_MS. */
    int deadline_ms;
    /* Per client (one connection): live sequences it created, and bytes of float32 K/V it
     * has stored in them (tokens x kv_heads x head_dim x 8). 0: the defaults below. */
    uint64_t max_seqs_per_client, max_bytes_per_client;
    /* Live sequences of all clients together (0: SKV_COORD_DEFAULT_MAX_SEQS). */
    uint64_t max_seqs;
    /* Test hook (env SUBKV_FAULT, e.g. "ckpt-before-current:2"): die by SIGKILL at that point
     * of the Nth checkpoint, to prove an interrupted checkpoint loses nothing. NULL: never. */
    const char *fault;
    /* --local-worker: rank 0 also owns a shard of sketches, handled in-process (worker.h's
     * skv_worker) on the GPU of node-local rank 0 (or the CPU, saying so); the shard map
     * then spans ranks 0..workers (shard_map.h). 0: rank 0 only coordinates (the default). */
    int local_worker;
    /* The local worker's options, as subkv-worker's: backend (skv_worker_backend: 0 auto,
     * 1 cpu, 2 cuda), memory budget and GPU pool reserve in bytes (0: unlimited / on demand). */
    int local_backend;
    size_t local_budget_bytes, local_gpu_reserve_bytes;
    /* SKV_COORD_PATH_AUTO: NCCL where every rank is on a GPU of its own (data_path.h), else
     * MPI; SKV_COORD_PATH_MPI: MPI always (to compare the two on one launch);
     * SKV_COORD_PATH_XFER_MPI: the NCCL path's transfer protocol over MPI (tests without
     * GPUs; payload_xfer.h). */
    int data_path;
} skv_coord_opts;

enum { SKV_COORD_PATH_AUTO = 0, SKV_COORD_PATH_MPI = 1, SKV_COORD_PATH_XFER_MPI = 2 };

#define SKV_COORD_DEFAULT_DEADLINE_MS 30000
#define SKV_COORD_IO_DEADLINE_MS 120000
#define SKV_COORD_DEFAULT_MAX_SEQS 65536ull
#define SKV_COORD_DEFAULT_SEQS_PER_CLIENT 1024ull
#define SKV_COORD_DEFAULT_BYTES_PER_CLIENT (16ull << 30)

/* Create the engine on comm, where this process is rank 0 and ranks 1.. are workers (none
 * needed with opts->local_worker). */
subkv_status skv_coord_create(MPI_Comm comm, const skv_coord_opts *opts, skv_coord **out,
                              skv_err *err);

typedef enum skv_handle_result {
    SKV_HANDLE_REPLY = 0,    /* send the reply, keep the connection */
    SKV_HANDLE_CLOSE = 1,    /* send the reply, then close the connection (garbage in) */
    SKV_HANDLE_SHUTDOWN = 2, /* send the reply, then shut the service down */
} skv_handle_result;

/*
 * Handle one packed Request (req[len]); appends the packed Reply to *reply (always one,
 * with a status code and message, even for bytes that do not parse). token: the shared
 * auth token requests must carry, or NULL for none.
 */
skv_handle_result skv_coord_handle(skv_coord *c, const uint8_t *req, size_t len, const char *token,
                                   skv_buf *reply);

/* The same for client `client` (a connection number > 0 from the server; 0: the embedding
 * process): sequences it creates, and the K/V bytes stored in them, count against its
 * limits (skv_coord_opts), refused with SKV_ERR_LIMIT before anything changes. */
skv_handle_result skv_coord_handle_client(skv_coord *c, uint64_t client, const uint8_t *req,
                                          size_t len, const char *token, skv_buf *reply);

/* NULL while every worker answers; once one died or missed its deadline, the message that
 * names it and what it held. From then on every request fails with SKV_ERR_WORKER_LOST and
 * the job cannot continue: answer the clients, then MPI_Abort (a dead rank's MPI job cannot
 * finalize); deploy/subkv-launch --restart brings the job back from the last checkpoint. */
const char *skv_coord_lost(const skv_coord *c);

/* Look at the workers that run on this host (their pids, learned at start-up): one whose
 * process has exited is lost now. Returns skv_coord_lost(c). Cheap (a /proc read per
 * worker): the server calls it when idle and when told to stop, since the MPI runtime's
 * teardown after a rank's death starts with SIGTERM to every other rank. */
const char *skv_coord_check_workers(skv_coord *c);

/* Write a checkpoint generation under dir (what a client's checkpoint request does). */
subkv_status skv_coord_checkpoint(skv_coord *c, const char *dir, skv_err *err);

/* Load the sequence table from the checkpoint under dir and have every worker load its
 * sketches from it. Fails (nothing changed) when the job size differs. */
subkv_status skv_coord_restore(skv_coord *c, const char *dir, skv_err *err);

/* Number of worker ranks (1..N; the local worker on rank 0 not counted). */
int skv_coord_workers(const skv_coord *c);

/* Send WOP_SHUTDOWN to every worker, wait for their replies (skipped once a worker is
 * lost), free everything. */
void skv_coord_destroy(skv_coord *c);

#endif /* SUBKV_COORD_H */
