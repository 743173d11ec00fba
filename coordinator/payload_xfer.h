/*
 * payload_xfer.h — how the op payloads move when they do not go through plain MPI
 * messages: the transfer protocol of the NCCL data path (coord.c, worker_serve.c). Headers
 * always travel on MPI; with a transfer, the float payloads travel through it:
 *   coordinator: headers to every worker, then skv_xfer_send of all their payloads (one
 *                group, not waited for); for each reply header announcing n partials,
 *                skv_xfer_recv(worker, n); at the end of the op, skv_xfer_wait;
 *   worker:      header, then skv_xfer_recv(0, payload); after handling, the reply header,
 *                then skv_xfer_send of the partials and skv_xfer_wait.
 * Two implementations behind one interface:
 *   SKV_PATH_NCCL:     NCCL point-to-point on the GPUs (cuda/skv_nccl_xfer.h);
 *   SKV_PATH_XFER_MPI: the same calls and the same ordering rule (a receive waits for
 *                      everything this rank sent before it, as on NCCL's one stream) over MPI
 *                      messages of tag SKV_TAG_XFER: the protocol's bookkeeping tested on
 *                      machines without GPUs (subkv-coordinator --data-path mpi-xfer).
 * Also skv_mpi_wait, the polled MPI request wait that the emulation, the coordinator and the
 * workers share (their back-off: cache/skv_poll.h).
 */
#ifndef SUBKV_PAYLOAD_XFER_H
#define SUBKV_PAYLOAD_XFER_H

#include <mpi.h>

#include "data_path_mpi.h"
#include "skv_nccl_xfer.h"
#include "skv_poll.h"
#include "subkv.h"

enum { SKV_TAG_XFER = 3 }; /* beside SKV_TAG_HEADER (1) and SKV_TAG_PAYLOAD (2) */

typedef struct skv_xfer skv_xfer;

/*
 * The transfer for the agreed path dp (from skv_data_path_start on comm): *out NULL when
 * the payloads go as plain MPI messages (SKV_PATH_MPI). For NCCL it runs on the current
 * CUDA device over dp->nccl (which stays dp's; set NULL if a failure aborts it). Errors:
 * SKV_ERR_DEVICE (CUDA), SKV_ERR_UNSUPPORTED (built without NCCL), SKV_ERR_NOMEM.
 */
subkv_status skv_xfer_start(MPI_Comm comm, skv_data_path *dp, skv_xfer **out, skv_err *err);

/* Wait for what is pending (bounded by poll; NULL: unbounded), free (NULL: nothing). */
void skv_xfer_free(skv_xfer *x, skv_xfer_poll poll, void *ctx);

/* Stage parts[0, n) (the caller may reuse its buffers at once) and start sending them, each
 * to its peer; not waited for. Only with nothing pending (after skv_xfer_wait). */
subkv_status skv_xfer_send(skv_xfer *x, const skv_xfer_part *parts, int n, skv_err *err);

/* Receive n floats from peer into dst, after everything this rank sent before completed;
 * waits (poll says whether to keep waiting). */
subkv_status skv_xfer_recv(skv_xfer *x, int peer, float *dst, size_t n, skv_xfer_poll poll,
                           void *ctx, skv_err *err);

/* Has everything started completed? *done 1 or 0, without waiting (errors as a wait's). */
subkv_status skv_xfer_test(skv_xfer *x, int *done, skv_err *err);

/* Wait until everything started has completed. A failure or a give-up leaves the transfer
 * broken: every later call fails (the job is over: a worker loss). */
subkv_status skv_xfer_wait(skv_xfer *x, skv_xfer_poll poll, void *ctx, skv_err *err);

/* Complete reqs[0, n) in order by MPI_Test polling, pausing between polls as kind says
 * (skv_poll.h); poll (NULL: wait unbounded) says whether to keep waiting. 0 when all are
 * done, -1 on an MPI error, -2 once poll said stop (the rest stay pending). The one MPI wait
 * of the coordinator and the workers (headers, replies, the mpi-xfer emulation). */
int skv_mpi_wait(MPI_Request *reqs, size_t n, skv_xfer_poll poll, void *ctx, skv_poll_kind kind);

#endif /* SUBKV_PAYLOAD_XFER_H */
