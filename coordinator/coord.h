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
} skv_coord_opts;

/* Create the engine on comm, where this process is rank 0 and ranks 1.. are workers. */
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

/* Load the sequence table from the checkpoint under dir and have every worker load its
 * sketches from it. Fails (nothing changed) when the job size differs. */
subkv_status skv_coord_restore(skv_coord *c, const char *dir, skv_err *err);

/* Number of workers. */
int skv_coord_workers(const skv_coord *c);

/* Send WOP_SHUTDOWN to every worker, wait for their replies, free everything. */
void skv_coord_destroy(skv_coord *c);

#endif /* SUBKV_COORD_H */
