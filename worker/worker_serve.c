/*
 * worker_serve.c — subkv-worker's MPI loop (skv_worker_serve, worker.h) around the op
 * handler (worker.c): wait for an op header from rank 0, receive its payload, handle it,
 * send the reply header and the partials. Headers always travel on MPI; the float payloads
 * on MPI, or on NCCL when the job agreed on it at start-up (data_path_mpi.h,
 * payload_xfer.h).
 */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_path_mpi.h"
#include "skv_check.h"
#include "skv_internal.h"
#include "skv_poll.h"
#include "payload_xfer.h"
#include "skv_wire.h"

typedef struct serve {
    MPI_Comm comm;
    int rank;
    skv_worker *w;
    uint8_t *hdr;
    size_t hdr_cap;
    float *in;
    size_t in_cap;    /* floats */
    skv_data_path dp; /* MPI or NCCL, agreed with the coordinator at start-up */
    skv_xfer *xfer;   /* the payloads' transfer on the NCCL path (payload_xfer.h), else NULL */
    pid_t coord_pid;  /* the coordinator's pid when it runs on this host, else 0 */
    double next_alive_check;
} serve;

/* Is the coordinator still there? Only answerable on its host (its pid); elsewhere the MPI
 * runtime has to tear the job down. Checked at most once a second. */
static int coordinator_alive(serve *s) {
    if (s->coord_pid <= 0) return 1;
    const double t = skv_now_s();
    if (t < s->next_alive_check) return 1;
    s->next_alive_check = t + 1.0;
    return !(kill(s->coord_pid, 0) != 0 && errno == ESRCH);
}

static int alive_poll(void *ctx) { return coordinator_alive(ctx); }

/* Complete req by MPI_Test polling; -1 on an MPI error or once the coordinator is gone. */
static int wait_req(serve *s, MPI_Request *req) {
    return skv_mpi_wait(req, 1, alive_poll, s, SKV_POLL_IDLE) == 0 ? 0 : -1;
}

/* Wait for the next op header: 0 with *ms, -1 on an MPI error or a vanished coordinator. */
static int wait_header(serve *s, MPI_Status *ms) {
    const double t0 = skv_now_s();
    for (;;) {
        int flag = 0;
        if (MPI_Iprobe(0, SKV_TAG_HEADER, s->comm, &flag, ms) != MPI_SUCCESS) return -1;
        if (flag) return 0;
        if (!coordinator_alive(s)) return -1;
        skv_poll_pause(SKV_POLL_IDLE, skv_now_s() - t0);
    }
}

/* The op's payload of nin floats into s->in, over the agreed path; 0 or -1 (link lost). */
static int recv_payload(serve *s, size_t nin) {
    skv_err err;
    if (skv_grow((void **)&s->in, &s->in_cap, nin, sizeof(float), &err) != SKV_OK) return -1;
    if (s->xfer) {
        if (skv_xfer_recv(s->xfer, 0, s->in, nin, alive_poll, s, &err) == SKV_OK) return 0;
        fprintf(stderr, "subkv-worker %d: payload receive (%s): %s\n", s->rank,
                skv_data_path_name(s->dp.path), err.msg);
        return -1;
    }
    MPI_Request rq = MPI_REQUEST_NULL;
    if (MPI_Irecv(s->in, (int)nin, MPI_FLOAT, 0, SKV_TAG_PAYLOAD, s->comm, &rq) != MPI_SUCCESS)
        return -1;
    return wait_req(s, &rq);
}

static int send_reply(serve *s, subkv_status st, const skv_err *err, const float *out, size_t nout,
                      Subkv__WorkerStats *ws) {
    Subkv__WorkerReply r = SUBKV__WORKER_REPLY__INIT;
    r.status = (int32_t)st;
    r.message = st == SKV_OK ? (char *)"" : (char *)err->msg;
    r.payload_floats = nout;
    r.stats = ws;
    size_t len = subkv__worker_reply__get_packed_size(&r);
    skv_err e2;
    if (skv_grow((void **)&s->hdr, &s->hdr_cap, len + 1, 1, &e2) != SKV_OK) return -1;
    subkv__worker_reply__pack(&r, s->hdr);
    MPI_Request rq;
    if (MPI_Isend(s->hdr, (int)len, MPI_BYTE, 0, SKV_TAG_HEADER, s->comm, &rq) != MPI_SUCCESS ||
        wait_req(s, &rq) != 0)
        return -1;
    if (!nout) return 0;
    if (s->xfer) { /* the coordinator posts its receive once it has read the header */
        skv_xfer_part part = {0, out, nout};
        if (skv_xfer_send(s->xfer, &part, 1, &e2) == SKV_OK &&
            skv_xfer_wait(s->xfer, alive_poll, s, &e2) == SKV_OK)
            return 0;
        fprintf(stderr, "subkv-worker %d: partials send (%s): %s\n", s->rank,
                skv_data_path_name(s->dp.path), e2.msg);
        return -1;
    }
    if (MPI_Isend(out, (int)nout, MPI_FLOAT, 0, SKV_TAG_PAYLOAD, s->comm, &rq) != MPI_SUCCESS ||
        wait_req(s, &rq) != 0)
        return -1;
    return 0;
}

/* Start-up collectives, in the order skv_coord_create makes them: the node split, the
 * data path, the identities. 0, or -1 with a message on stderr. */
static int start(serve *s, const skv_worker_opts *opts, int nworkers) {
    /* the GPU by node-local rank among the ranks of this node that join the split: the
     * workers, and the coordinator too when it runs a local worker (skv_coord_create) */
    MPI_Comm node;
    int local_rank = s->rank - 1;
    if (MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, s->rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &local_rank);
        MPI_Comm_free(&node);
    }
    skv_err err = {0};
    if (skv_worker_new(s->rank, nworkers, local_rank, opts, &s->w, &err) != SKV_OK) {
        fprintf(stderr, "subkv-worker %d: %s\n", s->rank, err.msg);
        return -1; /* the coordinator's collectives then fail or wait: it aborts the job */
    }
    if (opts->verbose)
        fprintf(stderr, "subkv-worker %d: backend %s\n", s->rank, skv_worker_backend_name(s->w));
    /* Collective with skv_coord_create's: report the device actually in use (after every
     * fallback), learn the data path everyone takes. */
    const int dev = skv_worker_device(s->w);
    if (skv_data_path_start(s->comm, dev >= 0 ? SKV_RANK_CUDA : SKV_RANK_CPU, dev, SKV_WANT_AUTO,
                            &s->dp, &err) != SKV_OK) {
        fprintf(stderr, "subkv-worker %d: data path exchange: %s\n", s->rank, err.msg);
        return -1;
    }
    if (skv_xfer_start(s->comm, &s->dp, &s->xfer, &err) != SKV_OK) {
        /* the coordinator would send payloads this rank cannot receive: end the job */
        fprintf(stderr, "subkv-worker %d: payload transfers (%s): %s\n", s->rank,
                skv_data_path_name(s->dp.path), err.msg);
        MPI_Abort(s->comm, 1);
    }
    if (opts->verbose)
        fprintf(stderr, "subkv-worker %d: data path %s (%s)\n", s->rank,
                skv_data_path_name(s->dp.path), s->dp.why);
    /* Collective with skv_coord_create's: the coordinator's pid, watched when on this host */
    skv_coord_ident ident = {0, 0}, mine = {(int64_t)getpid(), 0};
    char host[MPI_MAX_PROCESSOR_NAME + 1] = "";
    int hlen = 0;
    if (MPI_Get_processor_name(host, &hlen) == MPI_SUCCESS && hlen >= 0 &&
        hlen <= MPI_MAX_PROCESSOR_NAME)
        host[hlen] = '\0';
    mine.host_hash = skv_host_hash(host);
    if (MPI_Bcast(&ident, (int)sizeof ident, MPI_BYTE, 0, s->comm) != MPI_SUCCESS ||
        MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, NULL, (int)sizeof mine, MPI_BYTE, 0,
                   s->comm) != MPI_SUCCESS) {
        fprintf(stderr, "subkv-worker %d: MPI_Bcast of the coordinator's identity failed\n",
                s->rank);
        return -1;
    }
    if (ident.host_hash == mine.host_hash) s->coord_pid = (pid_t)ident.pid;
    return 0;
}

int skv_worker_serve(MPI_Comm comm, const skv_worker_opts *opts) {
    serve s = {.comm = comm};
    /* errors come back as codes: a lost coordinator ends the loop with a message */
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    int size = 0;
    MPI_Comm_rank(comm, &s.rank);
    MPI_Comm_size(comm, &size);
    int rc = 1;
    if (start(&s, opts, size - 1) != 0) goto out;
    for (;;) {
        MPI_Status ms;
        int len = 0;
        if (wait_header(&s, &ms) != 0) break;
        MPI_Get_count(&ms, MPI_BYTE, &len);
        skv_err err = {0};
        if (skv_grow((void **)&s.hdr, &s.hdr_cap, (size_t)len + 1, 1, &err) != SKV_OK) break;
        if (MPI_Recv(s.hdr, len, MPI_BYTE, 0, SKV_TAG_HEADER, comm, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
            break;
        Subkv__WorkerOp *op = subkv__worker_op__unpack(NULL, (size_t)len, s.hdr);
        if (!op) { /* the coordinator sends no payload after a header it could not build */
            skv_set_error(&err, SKV_ERR_PROTOCOL, "worker %d: undecodable op header", s.rank);
            if (send_reply(&s, SKV_ERR_PROTOCOL, &err, NULL, 0, NULL) != 0) break;
            continue;
        }
        const size_t nin = (size_t)op->payload_floats;
        /* the coordinator never sends more than INT32_MAX floats to one worker */
        if (nin && (nin > (size_t)INT32_MAX || recv_payload(&s, nin) != 0)) {
            subkv__worker_op__free_unpacked(op, NULL);
            break;
        }
        skv_worker_result res;
        subkv_status st = skv_worker_handle(s.w, op, s.in, nin, &res, &err);
        subkv__worker_op__free_unpacked(op, NULL);
        if (send_reply(&s, st, &err, res.out, res.nout, res.stats) != 0) break;
        if (res.shutdown) {
            rc = 0;
            break;
        }
    }
    s.next_alive_check = 0.0; /* look now, for the message */
    if (rc != 0)
        fprintf(stderr, "subkv-worker %d: lost the coordinator (%s); exiting\n", s.rank,
                coordinator_alive(&s) ? "MPI error" : "its process is gone");
out:
    skv_xfer_free(s.xfer, alive_poll, &s);
    skv_data_path_stop(&s.dp);
    skv_worker_free(s.w);
    free(s.hdr);
    free(s.in);
    return rc;
}
