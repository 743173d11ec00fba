/*
 * skv_nccl_xfer.h — the service's float payloads over NCCL point-to-point (issue 8): op
 * inputs coordinator -> worker, partials worker -> coordinator. The small protobuf headers
 * stay on MPI (coord.c, worker_serve.c); these calls move only the floats, through device
 * buffers staged from pinned host memory on one stream of the rank's current device:
 *   send: host floats -> pinned staging -> one H2D upload -> ncclSend per peer (one group)
 *   recv: ncclRecv into a device buffer -> D2H into pinned staging -> the caller's host buffer
 * (the op handlers and the CPU-authoritative sketches read host memory anyway).
 *
 * Matching: NCCL pairs a peer's sends and receives in the order they are issued, so both
 * sides issue them in op order (the coordinator: payload to r, then r's partials; the
 * worker: the payload, then its partials). Every wait polls the stream and the
 * communicator's async error, and asks the caller's poll function whether to keep waiting
 * (a deadline, a peer's pid): a failure or a give-up aborts the communicator (ncclCommAbort:
 * nothing is left hanging in it) and sets *comm_slot to NULL, so the data path's owner does
 * not destroy it again; every later call then fails at once with SKV_ERR_DEVICE.
 *
 * Built with nvcc and NCCL (SUBKV_HAVE_NCCL=1): cuda/nccl_xfer.cu.
 * Otherwise:                                   cuda/nccl_xfer_cpu.c (SKV_ERR_UNSUPPORTED).
 */
#ifndef SUBKV_SKV_NCCL_XFER_H
#define SUBKV_SKV_NCCL_XFER_H

#include <stddef.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct skv_nccl_xfer skv_nccl_xfer;

/* Polled while a transfer is pending: non-zero to keep waiting, 0 to give up. */
typedef int (*skv_xfer_poll)(void *ctx);

/* One peer's part of a send. */
typedef struct skv_xfer_part {
    int peer;         /* rank in the communicator (equal to the MPI rank) */
    const float *src; /* host floats; copied into staging before the call returns */
    size_t n;         /* floats (0: nothing for this peer) */
} skv_xfer_part;

/* A transfer state on the current CUDA device for the communicator at *comm_slot (from
 * skv_nccl_init, left owned by the caller). Fails with SKV_ERR_UNSUPPORTED without NCCL,
 * SKV_ERR_DEVICE on a CUDA error, SKV_ERR_INVALID_ARG when *comm_slot is NULL. */
subkv_status skv_nccl_xfer_new(void **comm_slot, skv_nccl_xfer **out, skv_err *err);

/* Wait for what is pending (bounded by poll), then free the stream and buffers (NULL:
 * nothing). The communicator stays the caller's. */
void skv_nccl_xfer_free(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx);

/* Enqueue the sends of parts[0, nparts) and return without waiting for them; the host data
 * is staged first, so the caller may reuse it. Call skv_nccl_xfer_wait before the next
 * send. */
subkv_status skv_nccl_xfer_send(skv_nccl_xfer *x, const skv_xfer_part *parts, int nparts,
                                skv_err *err);

/* Receive n floats from peer into dst (host), waiting for them (and for everything enqueued
 * before, on the one stream). */
subkv_status skv_nccl_xfer_recv(skv_nccl_xfer *x, int peer, float *dst, size_t n,
                                skv_xfer_poll poll, void *ctx, skv_err *err);

/* Has everything enqueued completed? *done 1 or 0, without waiting; an error (the stream's
 * or the communicator's) aborts as a failed wait does. */
subkv_status skv_nccl_xfer_test(skv_nccl_xfer *x, int *done, skv_err *err);

/* Wait until everything enqueued has completed. */
subkv_status skv_nccl_xfer_wait(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx, skv_err *err);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_SKV_NCCL_XFER_H */
