/*
 * nccl_xfer.cu — skv_nccl_xfer with NCCL (see skv_nccl_xfer.h). Built only with nvcc and
 * nccl.h + libnccl. One stream; buffers only grow, and only while the stream is idle (a
 * cudaFree or cudaFreeHost would otherwise wait on a peer that may never come).
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skv_check.h"
#include "skv_nccl_xfer.h"
#include "skv_poll.h"

struct skv_nccl_xfer {
    void **comm_slot; /* the owner's ncclComm_t; NULL once aborted */
    cudaStream_t stream;
    int device;
    float *hsend, *dsend; /* pinned staging and device buffer of the sends */
    size_t send_cap;      /* floats */
    float *hrecv, *drecv; /* the same for receives */
    size_t recv_cap;
    int pending; /* something enqueued that no wait has seen complete */
};

static ncclComm_t comm_of(const skv_nccl_xfer *x) {
    return x->comm_slot ? (ncclComm_t)*x->comm_slot : NULL;
}

/* The communicator is unusable (a failed or abandoned transfer): abort it, so nothing of
 * it waits on a peer any more, and tell the owner it is gone. */
static subkv_status fail(skv_nccl_xfer *x, skv_err *err, const char *fmt, const char *what) {
    ncclComm_t c = comm_of(x);
    if (c) ncclCommAbort(c);
    if (x->comm_slot) *x->comm_slot = NULL;
    x->pending = 0;
    return skv_set_error(err, SKV_ERR_DEVICE, fmt, what);
}

extern "C" subkv_status skv_nccl_xfer_test(skv_nccl_xfer *x, int *done, skv_err *err) {
    *done = 0;
    if (!comm_of(x)) return skv_set_error(err, SKV_ERR_DEVICE, "NCCL communicator was aborted");
    if (!x->pending) {
        *done = 1;
        return SKV_OK;
    }
    cudaError_t ce = cudaStreamQuery(x->stream);
    if (ce == cudaSuccess) {
        x->pending = 0;
        *done = 1;
        return SKV_OK;
    }
    if (ce != cudaErrorNotReady) {
        (void)cudaGetLastError(); /* clear it: the error is reported here */
        return fail(x, err, "NCCL transfer stream failed: %s", cudaGetErrorString(ce));
    }
    ncclResult_t ar = ncclSuccess;
    if (ncclCommGetAsyncError(comm_of(x), &ar) != ncclSuccess ||
        (ar != ncclSuccess && ar != ncclInProgress))
        return fail(x, err, "NCCL transfer failed: %s", ncclGetErrorString(ar));
    return SKV_OK;
}

extern "C" subkv_status skv_nccl_xfer_wait(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx,
                                           skv_err *err) {
    const double t0 = skv_now_s();
    for (;;) {
        int done = 0;
        SKV_CHECK(skv_nccl_xfer_test(x, &done, err));
        if (done) return SKV_OK;
        if (poll && !poll(ctx))
            return fail(x, err, "NCCL transfer %s", "abandoned (peer lost or deadline passed)");
        skv_poll_pause(SKV_POLL_OP, skv_now_s() - t0);
    }
}

/* Grow a pinned + device pair to n floats (the stream is idle: checked by the callers). */
static subkv_status grow(float **h, float **d, size_t *cap, size_t n, skv_err *err) {
    if (n <= *cap) return SKV_OK;
    size_t want = *cap ? *cap : 4096;
    while (want < n) want *= 2;
    if (*h) cudaFreeHost(*h);
    if (*d) cudaFree(*d);
    *h = NULL, *d = NULL, *cap = 0;
    SKV_CUDA_CHECK(cudaMallocHost((void **)h, want * sizeof(float)), err);
    SKV_CUDA_CHECK(cudaMalloc((void **)d, want * sizeof(float)), err);
    *cap = want;
    return SKV_OK;
}

extern "C" subkv_status skv_nccl_xfer_new(void **comm_slot, skv_nccl_xfer **out, skv_err *err) {
    *out = NULL;
    if (!comm_slot || !*comm_slot)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "no NCCL communicator to transfer over");
    skv_nccl_xfer *x = (skv_nccl_xfer *)calloc(1, sizeof *x);
    if (!x) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the NCCL transfer state");
    x->comm_slot = comm_slot;
    cudaError_t ce = cudaGetDevice(&x->device);
    if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        free(x);
        return skv_set_error(err, SKV_ERR_DEVICE, "NCCL transfer stream: %s",
                             cudaGetErrorString(ce));
    }
    *out = x;
    return SKV_OK;
}

extern "C" void skv_nccl_xfer_free(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx) {
    if (!x) return;
    skv_err e;
    if (x->pending && comm_of(x)) (void)skv_nccl_xfer_wait(x, poll, ctx, &e);
    if (!x->pending) { /* an aborted communicator's kernels are gone too */
        if (x->hsend) cudaFreeHost(x->hsend);
        if (x->dsend) cudaFree(x->dsend);
        if (x->hrecv) cudaFreeHost(x->hrecv);
        if (x->drecv) cudaFree(x->drecv);
        cudaStreamDestroy(x->stream);
    }
    free(x);
}

extern "C" subkv_status skv_nccl_xfer_send(skv_nccl_xfer *x, const skv_xfer_part *parts, int nparts,
                                           skv_err *err) {
    if (!comm_of(x)) return skv_set_error(err, SKV_ERR_DEVICE, "NCCL communicator was aborted");
    if (x->pending)
        return skv_set_error(err, SKV_ERR_INTERNAL, "NCCL send while a transfer is pending");
    size_t total = 0;
    for (int i = 0; i < nparts; i++) total += parts[i].n;
    if (total == 0) return SKV_OK;
    SKV_CHECK(grow(&x->hsend, &x->dsend, &x->send_cap, total, err));
    size_t off = 0;
    for (int i = 0; i < nparts; i++) { /* staged whole: one upload below */
        if (parts[i].n) memcpy(x->hsend + off, parts[i].src, parts[i].n * sizeof(float));
        off += parts[i].n;
    }
    x->pending = 1;
    cudaError_t ce = cudaMemcpyAsync(x->dsend, x->hsend, total * sizeof(float),
                                     cudaMemcpyHostToDevice, x->stream);
    if (ce != cudaSuccess) return fail(x, err, "NCCL send staging: %s", cudaGetErrorString(ce));
    ncclResult_t nr = ncclGroupStart();
    off = 0;
    for (int i = 0; i < nparts && nr == ncclSuccess; i++) {
        if (parts[i].n)
            nr = ncclSend(x->dsend + off, parts[i].n, ncclFloat, parts[i].peer, comm_of(x),
                          x->stream);
        off += parts[i].n;
    }
    ncclResult_t ge = ncclGroupEnd(); /* always closes the group, even after a failed call */
    if (nr == ncclSuccess) nr = ge;
    if (nr != ncclSuccess && nr != ncclInProgress)
        return fail(x, err, "ncclSend: %s", ncclGetErrorString(nr));
    return SKV_OK;
}

extern "C" subkv_status skv_nccl_xfer_recv(skv_nccl_xfer *x, int peer, float *dst, size_t n,
                                           skv_xfer_poll poll, void *ctx, skv_err *err) {
    if (!comm_of(x)) return skv_set_error(err, SKV_ERR_DEVICE, "NCCL communicator was aborted");
    if (n == 0) return SKV_OK;
    if (n > x->recv_cap) { /* growing frees the old buffers: only with the stream idle */
        SKV_CHECK(skv_nccl_xfer_wait(x, poll, ctx, err));
        SKV_CHECK(grow(&x->hrecv, &x->drecv, &x->recv_cap, n, err));
    }
    x->pending = 1;
    ncclResult_t nr = ncclRecv(x->drecv, n, ncclFloat, peer, comm_of(x), x->stream);
    if (nr != ncclSuccess && nr != ncclInProgress)
        return fail(x, err, "ncclRecv: %s", ncclGetErrorString(nr));
    cudaError_t ce =
        cudaMemcpyAsync(x->hrecv, x->drecv, n * sizeof(float), cudaMemcpyDeviceToHost, x->stream);
    if (ce != cudaSuccess) return fail(x, err, "NCCL receive staging: %s", cudaGetErrorString(ce));
    SKV_CHECK(skv_nccl_xfer_wait(x, poll, ctx, err));
    memcpy(dst, x->hrecv, n * sizeof(float));
    return SKV_OK;
}
