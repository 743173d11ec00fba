/*
 * payload_xfer.c — skv_xfer (payload_xfer.h): NCCL through cuda/skv_nccl_xfer.h, or the
 * same protocol over MPI messages (SKV_PATH_XFER_MPI) for tests without GPUs.
 */
#include "payload_xfer.h"

#include <stdlib.h>
#include <string.h>

#include "skv_check.h"
#include "skv_internal.h"
#include "skv_poll.h"

struct skv_xfer {
    skv_nccl_xfer *nccl; /* the NCCL path; NULL on SKV_PATH_XFER_MPI */
    MPI_Comm comm;
    float *stage; /* the MPI emulation's staging of one send */
    size_t stage_cap;
    MPI_Request *reqs; /* its sends in flight */
    size_t nreq, reqs_cap;
    int broken;
};

subkv_status skv_xfer_start(MPI_Comm comm, skv_data_path *dp, skv_xfer **out, skv_err *err) {
    *out = NULL;
    if (dp->path != SKV_PATH_NCCL && dp->path != SKV_PATH_XFER_MPI) return SKV_OK;
    skv_xfer *x = calloc(1, sizeof *x);
    if (!x) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the payload transfer");
    x->comm = comm;
    if (dp->path == SKV_PATH_NCCL) {
        subkv_status st = skv_nccl_xfer_new(&dp->nccl, &x->nccl, err);
        if (st != SKV_OK) {
            free(x);
            return st;
        }
    }
    *out = x;
    return SKV_OK;
}

int skv_mpi_wait(MPI_Request *reqs, size_t n, skv_xfer_poll poll, void *ctx, skv_poll_kind kind) {
    const double t0 = skv_now_s();
    for (size_t i = 0; i < n;) {
        int done = 0;
        if (MPI_Test(&reqs[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return -1;
        if (done) {
            i++;
            continue;
        }
        if (poll && !poll(ctx)) return -2;
        skv_poll_pause(kind, skv_now_s() - t0);
    }
    return 0;
}

/* Complete reqs[0, n) by MPI_Test polling; give up when poll says so. */
static subkv_status mpi_wait(skv_xfer *x, MPI_Request *reqs, size_t n, skv_xfer_poll poll,
                             void *ctx, skv_err *err) {
    const int r = skv_mpi_wait(reqs, n, poll, ctx, SKV_POLL_OP);
    if (r == 0) return SKV_OK;
    x->broken = 1;
    return r == -1 ? skv_set_error(err, SKV_ERR_IO, "MPI error in a payload transfer")
                   : skv_set_error(err, SKV_ERR_IO,
                                   "payload transfer abandoned (peer lost or deadline passed)");
}

subkv_status skv_xfer_test(skv_xfer *x, int *done, skv_err *err) {
    *done = 0;
    if (x->nccl) return skv_nccl_xfer_test(x->nccl, done, err);
    if (x->broken) return skv_set_error(err, SKV_ERR_IO, "payload transfer broken earlier");
    int all = 1;
    if (x->nreq && MPI_Testall((int)x->nreq, x->reqs, &all, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
        x->broken = 1;
        return skv_set_error(err, SKV_ERR_IO, "MPI error in a payload transfer");
    }
    if (all) x->nreq = 0;
    *done = all;
    return SKV_OK;
}

subkv_status skv_xfer_wait(skv_xfer *x, skv_xfer_poll poll, void *ctx, skv_err *err) {
    if (x->nccl) return skv_nccl_xfer_wait(x->nccl, poll, ctx, err);
    if (x->broken) return skv_set_error(err, SKV_ERR_IO, "payload transfer broken earlier");
    SKV_CHECK(mpi_wait(x, x->reqs, x->nreq, poll, ctx, err));
    x->nreq = 0;
    return SKV_OK;
}

subkv_status skv_xfer_send(skv_xfer *x, const skv_xfer_part *parts, int n, skv_err *err) {
    if (x->nccl) return skv_nccl_xfer_send(x->nccl, parts, n, err);
    if (x->broken) return skv_set_error(err, SKV_ERR_IO, "payload transfer broken earlier");
    if (x->nreq) /* as on NCCL: the staging is in use until the wait */
        return skv_set_error(err, SKV_ERR_INTERNAL, "payload send while a transfer is pending");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (parts[i].n > (size_t)INT32_MAX)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "payload of %zu floats", parts[i].n);
        total += parts[i].n;
    }
    SKV_CHECK(skv_grow((void **)&x->stage, &x->stage_cap, total ? total : 1, sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&x->reqs, &x->reqs_cap, (size_t)n + 1, sizeof *x->reqs, err));
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (!parts[i].n) continue;
        memcpy(x->stage + off, parts[i].src, parts[i].n * sizeof(float));
        if (MPI_Isend(x->stage + off, (int)parts[i].n, MPI_FLOAT, parts[i].peer, SKV_TAG_XFER,
                      x->comm, &x->reqs[x->nreq]) != MPI_SUCCESS) {
            x->broken = 1;
            return skv_set_error(err, SKV_ERR_IO, "MPI error sending a payload to rank %d",
                                 parts[i].peer);
        }
        x->nreq++;
        off += parts[i].n;
    }
    return SKV_OK;
}

subkv_status skv_xfer_recv(skv_xfer *x, int peer, float *dst, size_t n, skv_xfer_poll poll,
                           void *ctx, skv_err *err) {
    if (x->nccl) return skv_nccl_xfer_recv(x->nccl, peer, dst, n, poll, ctx, err);
    if (x->broken) return skv_set_error(err, SKV_ERR_IO, "payload transfer broken earlier");
    if (n == 0) return SKV_OK;
    if (n > (size_t)INT32_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "payload of %zu floats", n);
    /* NCCL's one stream: the receive runs after every send enqueued before it */
    SKV_CHECK(skv_xfer_wait(x, poll, ctx, err));
    MPI_Request rq;
    if (MPI_Irecv(dst, (int)n, MPI_FLOAT, peer, SKV_TAG_XFER, x->comm, &rq) != MPI_SUCCESS) {
        x->broken = 1;
        return skv_set_error(err, SKV_ERR_IO, "MPI error receiving a payload from rank %d", peer);
    }
    return mpi_wait(x, &rq, 1, poll, ctx, err);
}

void skv_xfer_free(skv_xfer *x, skv_xfer_poll poll, void *ctx) {
    if (!x) return;
    skv_err e;
    if (x->nccl)
        skv_nccl_xfer_free(x->nccl, poll, ctx);
    else if (x->nreq && !x->broken)
        (void)skv_xfer_wait(x, poll, ctx, &e);
    if (!(x->broken && x->nreq)) { /* else MPI may still read them: the job is over */
        free(x->stage);
        free(x->reqs);
    }
    free(x);
}
