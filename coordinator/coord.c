/*
 * coord.c — the coordinator's state, the sequence table, and the dispatch of one op to the
 * workers it concerns: op headers on MPI; the float payloads (K/V/Q out, partials back) on
 * MPI, staged through host memory (the device machine's Open MPI is not CUDA-aware), or on
 * NCCL point-to-point when the job agreed on it at create (data_path_mpi.h,
 * payload_xfer.h). With --local-worker, rank 0's own job runs in-process (worker.h) while
 * the other workers work on theirs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_internal.h"
#include "shard_map.h"
#include "skv_poll.h"

/* ---- sequences (sorted by id: ids only grow, so adding appends) ------------------------- */

coord_seq *coord_seq_find(skv_coord *c, uint64_t id) {
    size_t lo = 0, hi = c->nseq;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->seqs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nseq && c->seqs[lo].id == id ? &c->seqs[lo] : NULL;
}

subkv_status coord_seq_alloc(coord_seq *s, skv_err *err) {
    s->tokens = calloc(s->layers, sizeof *s->tokens);
    s->rule = NULL;
    s->rule_q = NULL;
    if (s->tokens && skv_shard_layer_rule(&s->cfg)) {
        s->rule = calloc(s->layers, sizeof *s->rule);
        s->rule_q = calloc((size_t)s->layers * s->head_dim, sizeof *s->rule_q);
    }
    if (!s->tokens || (skv_shard_layer_rule(&s->cfg) && (!s->rule || !s->rule_q))) {
        coord_seq_free(s);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a %u-layer sequence", s->layers);
    }
    return SKV_OK;
}

void coord_seq_free(coord_seq *s) {
    free(s->tokens);
    free(s->rule);
    free(s->rule_q);
    s->tokens = NULL;
    s->rule = NULL;
    s->rule_q = NULL;
}

subkv_status coord_seq_add(skv_coord *c, const coord_seq *s, skv_err *err) {
    if (c->nseq && c->seqs[c->nseq - 1].id >= s->id)
        return skv_set_error(err, SKV_ERR_INTERNAL, "sequence ids must increase");
    SKV_CHECK(skv_grow((void **)&c->seqs, &c->cap_seq, c->nseq + 1, sizeof *c->seqs, err));
    c->seqs[c->nseq++] = *s;
    return SKV_OK;
}

void coord_seq_remove(skv_coord *c, uint64_t id) {
    coord_seq *s = coord_seq_find(c, id);
    if (!s) return;
    coord_seq_free(s);
    size_t i = (size_t)(s - c->seqs);
    memmove(&c->seqs[i], &c->seqs[i + 1], (c->nseq - i - 1) * sizeof *s);
    c->nseq--;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

void coord_jobs_reset(skv_coord *c) {
    for (int r = coord_first_owner(c); r <= c->nworkers; r++) {
        coord_job *j = &c->jobs[r];
        j->active = 0;
        j->n = j->nfl = j->nout = 0;
        j->status = 0;
        j->msg[0] = '\0';
        if (j->reply) {
            subkv__worker_reply__free_unpacked(j->reply, NULL);
            j->reply = NULL;
        }
    }
}

void coord_jobs_all(skv_coord *c) {
    for (int r = coord_first_owner(c); r <= c->nworkers; r++) c->jobs[r].active = 1;
}

Subkv__WorkItem *coord_job_item(skv_coord *c, int rank, skv_err *err) {
    coord_job *j = &c->jobs[rank];
    size_t cap = j->cap;
    if (skv_grow((void **)&j->items, &cap, j->n + 1, sizeof *j->items, err) != SKV_OK) return NULL;
    if (skv_grow((void **)&j->ptrs, &j->cap, j->n + 1, sizeof *j->ptrs, err) != SKV_OK) return NULL;
    j->active = 1;
    Subkv__WorkItem *it = &j->items[j->n++];
    subkv__work_item__init(it);
    return it;
}

float *coord_job_payload(skv_coord *c, int rank, size_t n, skv_err *err) {
    coord_job *j = &c->jobs[rank];
    if (skv_grow((void **)&j->payload, &j->cap_fl, j->nfl + n, sizeof(float), err) != SKV_OK)
        return NULL;
    float *p = j->payload + j->nfl;
    j->nfl += n;
    return p;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Declare rank r lost: remember one message naming it and what it held; every later op
 * fails with it. */
static subkv_status worker_lost(skv_coord *c, int r, const char *why, skv_err *err) {
    if (!c->lost) {
        c->lost = 1;
        coord_describe_lost(c, r, why, c->lost_msg, sizeof c->lost_msg);
        fprintf(stderr, "subkv-coordinator: %s\n", c->lost_msg);
    }
    return skv_set_error(err, SKV_ERR_WORKER_LOST, "%s", c->lost_msg);
}

/* Has process pid (on this host) exited? Gone from /proc, or a zombie its parent has not
 * reaped yet (the MPI runtime's daemon is about to tear the job down). */
static int pid_dead(pid_t pid) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    const size_t got = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[got] = '\0';
    const char *rp = strrchr(line, ')'); /* the command name may hold spaces */
    return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

const char *skv_coord_check_workers(skv_coord *c) {
    skv_err e;
    for (int r = 1; r <= c->nworkers && !c->lost; r++)
        if (c->wpid && c->wpid[r] > 0 && pid_dead(c->wpid[r]))
            (void)worker_lost(c, r, "its process exited", &e);
    return skv_coord_lost(c);
}

static int before_deadline(void *t_end) { return skv_now_s() <= *(const double *)t_end; }

/* Wait for req until t_end; 0 done, -1 MPI error, -2 deadline. */
static int wait_one(MPI_Request *req, double t_end) {
    return skv_mpi_wait(req, 1, before_deadline, &t_end, SKV_POLL_OP);
}

static const char *op_name(Subkv__WorkerOpCode op) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&subkv__worker_op_code__descriptor, (int)op);
    return v ? v->name : "op";
}

/* While a transfer with rank peer is pending: keep waiting until the op's deadline,
 * unless the peer's process is seen gone. */
typedef struct xfer_wait_ctx {
    skv_coord *c;
    int peer; /* 0: any (the sends to every worker) */
    double t_end;
    double next_pid_check;
} xfer_wait_ctx;

static int xfer_keep_waiting(void *p) {
    xfer_wait_ctx *w = p;
    const double t = skv_now_s();
    if (t > w->t_end) return 0;
    if (t < w->next_pid_check) return 1;
    w->next_pid_check = t + 0.01;
    for (int r = w->peer ? w->peer : 1; r <= (w->peer ? w->peer : w->c->nworkers); r++)
        if (w->c->wpid && w->c->wpid[r] > 0 && pid_dead(w->c->wpid[r])) return 0;
    return 1;
}

/* Receive rank r's reply (its header has arrived) and, on MPI, its partials. With a
 * transfer (the NCCL path) the partials are due later (*due: how many floats): they are
 * received once the op's payload sends completed (xfer_partials), since a receive runs only
 * after them on NCCL's one stream: posted now, a worker that never took its payload would
 * stall it, and the wait would blame the wrong worker. */
static subkv_status gather_one(skv_coord *c, int r, const MPI_Status *ms, double t_end, size_t *due,
                               skv_err *err) {
    *due = 0;
    coord_job *j = &c->jobs[r];
    int len = 0;
    char why[256];
    MPI_Get_count(ms, MPI_BYTE, &len);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (!buf) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for worker %d's reply", r);
    /* the message is there (probed): this receive completes at once */
    if (MPI_Recv(buf, len, MPI_BYTE, r, SKV_TAG_HEADER, c->comm, MPI_STATUS_IGNORE) !=
        MPI_SUCCESS) {
        free(buf);
        return worker_lost(c, r, "MPI error receiving its reply", err);
    }
    j->reply = subkv__worker_reply__unpack(NULL, (size_t)len, buf);
    free(buf);
    if (!j->reply) return worker_lost(c, r, "undecodable reply", err);
    j->status = j->reply->status;
    snprintf(j->msg, sizeof j->msg, "%s", j->reply->message ? j->reply->message : "");
    const size_t nout = (size_t)j->reply->payload_floats;
    j->nout = 0;
    if (nout) {
        if (nout > (size_t)INT32_MAX) return worker_lost(c, r, "reply of impossible size", err);
        SKV_CHECK(skv_grow((void **)&j->out, &j->cap_out, nout, sizeof(float), err));
        if (c->xfer) {
            *due = nout;
            return SKV_OK;
        } else {
            MPI_Request rq;
            if (MPI_Irecv(j->out, (int)nout, MPI_FLOAT, r, SKV_TAG_PAYLOAD, c->comm, &rq) !=
                MPI_SUCCESS)
                return worker_lost(c, r, "MPI error receiving its partials", err);
            int w = wait_one(&rq, t_end);
            if (w != 0) {
                snprintf(why, sizeof why, "%s",
                         w == -1 ? "MPI error receiving its partials"
                                 : "its partials missed the deadline");
                return worker_lost(c, r, why, err);
            }
        }
    }
    j->nout = nout;
    return SKV_OK;
}

/* Rank r's partials, due over the transfer (gather_one), now that the sends are done. */
static subkv_status xfer_partials(skv_coord *c, int r, size_t nout, double t_end, skv_err *err) {
    coord_job *j = &c->jobs[r];
    xfer_wait_ctx w = {c, r, t_end, 0.0};
    skv_err e;
    char why[256];
    if (skv_xfer_recv(c->xfer, r, j->out, nout, xfer_keep_waiting, &w, &e) != SKV_OK) {
        snprintf(why, sizeof why, "%s receive of its partials failed: %.200s",
                 skv_data_path_name(c->dp.path), e.msg);
        return worker_lost(c, r, why, err);
    }
    j->nout = nout;
    return SKV_OK;
}

/* The WorkerOp of rank r's job (pointing into the job and x; wp holds x's policy). */
static void fill_op(skv_coord *c, int r, Subkv__WorkerOpCode opcode, const coord_op_extra *x,
                    skv_wire_policy *wp, Subkv__WorkerOp *op) {
    coord_job *j = &c->jobs[r];
    for (size_t i = 0; i < j->n; i++) j->ptrs[i] = &j->items[i];
    subkv__worker_op__init(op);
    op->op = opcode;
    op->head_dim = x ? x->head_dim : 0;
    op->n_items = j->n;
    op->items = j->ptrs;
    op->payload_floats = j->nfl;
    op->nworkers = (uint32_t)c->nworkers;
    if (x && x->policy) op->policy = &wp->msg;
    if (x) op->shards = x->shards;
    if (x && x->path) op->path = (char *)x->path;
}

/* Rank 0's job, in-process: the same op the workers get, its reply and partials kept as a
 * worker's would be (a reply message for WOP_STATS). Only an allocation can fail here;
 * the op's own failure is the job's status. */
static subkv_status run_local(skv_coord *c, Subkv__WorkerOpCode opcode, const coord_op_extra *x,
                              skv_wire_policy *wp, skv_err *err) {
    coord_job *j = &c->jobs[0];
    Subkv__WorkerOp op;
    fill_op(c, 0, opcode, x, wp, &op);
    skv_worker_result res;
    skv_err e = {SKV_OK, ""};
    j->status = (int)skv_worker_handle(c->worker, &op, j->payload, j->nfl, &res, &e);
    snprintf(j->msg, sizeof j->msg, "%s", j->status == SKV_OK ? "" : e.msg);
    j->active = 3; /* answered */
    j->nout = 0;
    if (res.nout) {
        SKV_CHECK(skv_grow((void **)&j->out, &j->cap_out, res.nout, sizeof(float), err));
        memcpy(j->out, res.out, res.nout * sizeof(float));
        j->nout = res.nout;
    }
    if (res.stats) { /* kept as an unpacked reply, as a remote worker's (coord_handle.c) */
        Subkv__WorkerReply rep = SUBKV__WORKER_REPLY__INIT;
        rep.stats = res.stats;
        rep.message = (char *)"";
        const size_t len = subkv__worker_reply__get_packed_size(&rep);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the local stats");
        subkv__worker_reply__pack(&rep, buf);
        j->reply = subkv__worker_reply__unpack(NULL, len, buf);
        free(buf);
        if (!j->reply) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the local stats");
    }
    return SKV_OK;
}

subkv_status coord_dispatch(skv_coord *c, Subkv__WorkerOpCode opcode, const coord_op_extra *x,
                            int *ok_any, skv_err *err) {
    const int nw = c->nworkers;
    if (ok_any) *ok_any = 0;
    if (c->lost) return skv_set_error(err, SKV_ERR_WORKER_LOST, "%s", c->lost_msg);
    SKV_CHECK(
        skv_grow((void **)&c->reqs, &c->reqs_cap, (size_t)(2 * nw) + 1, sizeof *c->reqs, err));
    SKV_CHECK(skv_grow((void **)&c->parts, &c->parts_cap, (size_t)nw + 1, sizeof *c->parts, err));
    MPI_Request *reqs = c->reqs; /* [2 (r - 1)]: header to r, [2 (r - 1) + 1]: payload */
    for (int i = 0; i < 2 * nw; i++) reqs[i] = MPI_REQUEST_NULL;
    int nreq = 0, nparts = 0;
    subkv_status st = SKV_OK;
    skv_wire_policy wp;
    if (x && x->policy) skv_wire_policy_from_config(&wp, x->policy);
    int deadline_ms = c->opts.deadline_ms > 0 ? c->opts.deadline_ms : SKV_COORD_DEFAULT_DEADLINE_MS;
    if ((opcode == SUBKV__WORKER_OP_CODE__WOP_CHECKPOINT ||
         opcode == SUBKV__WORKER_OP_CODE__WOP_RESTORE) &&
        deadline_ms < SKV_COORD_IO_DEADLINE_MS)
        deadline_ms = SKV_COORD_IO_DEADLINE_MS;
    const double t_end = skv_now_s() + 1e-3 * deadline_ms;
    for (int r = 1; r <= nw && st == SKV_OK; r++) {
        coord_job *j = &c->jobs[r];
        if (!j->active) continue;
        if (j->nfl > (size_t)INT32_MAX) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG,
                               "request too large: %zu floats for worker %d (split it)", j->nfl, r);
            break;
        }
        Subkv__WorkerOp op;
        fill_op(c, r, opcode, x, &wp, &op);
        size_t len = subkv__worker_op__get_packed_size(&op);
        if (len > (size_t)INT32_MAX) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG, "op header too large (%zu B)", len);
            break;
        }
        st = skv_grow((void **)&j->hdr, &j->hdr_cap, len + 1, 1, err);
        if (st != SKV_OK) break;
        subkv__worker_op__pack(&op, j->hdr);
        MPI_Request *rq = &reqs[2 * (r - 1)];
        if (MPI_Isend(j->hdr, (int)len, MPI_BYTE, r, SKV_TAG_HEADER, c->comm, &rq[0]) !=
                MPI_SUCCESS ||
            (j->nfl && !c->xfer &&
             MPI_Isend(j->payload, (int)j->nfl, MPI_FLOAT, r, SKV_TAG_PAYLOAD, c->comm, &rq[1]) !=
                 MPI_SUCCESS)) {
            st = worker_lost(c, r, "MPI error sending it an op", err);
        } else {
            nreq++;
            j->active = 2; /* sent: a reply will come */
            if (j->nfl && c->xfer) c->parts[nparts++] = (skv_xfer_part){r, j->payload, j->nfl};
        }
    }
    char why[256];
    /* the transfer: every payload of the op in one group, after the headers announcing them */
    if (nparts) {
        skv_err e;
        if (skv_xfer_send(c->xfer, c->parts, nparts, &e) != SKV_OK) {
            snprintf(why, sizeof why, "%s send of its op's payload failed: %.200s",
                     skv_data_path_name(c->dp.path), e.msg);
            st = worker_lost(c, c->parts[0].peer, why, err);
        }
    }
    const int local_active = c->local && c->jobs[0].active && !c->lost;
    if (st != SKV_OK && nreq == 0) return st; /* nothing left this rank: fails cleanly */
    /* rank 0's own part while the workers compute theirs */
    int ok = 0, pending = 0;
    subkv_status first = st;
    if (local_active && st == SKV_OK) {
        first = run_local(c, opcode, x, &wp, err);
        if (first == SKV_OK && c->jobs[0].status == SKV_OK)
            ok = 1;
        else if (first == SKV_OK)
            first = skv_set_error(err, (subkv_status)c->jobs[0].status, "worker 0 (local): %s",
                                  c->jobs[0].msg);
    }
    /* gather: poll every worker that got a header until each has answered (one reply and
     * its partials) or the deadline passes */
    for (int r = 1; r <= nw; r++) pending += c->jobs[r].active == 2;
    const double t0 = skv_now_s();
    double next_pid_check = t0 + 0.01;
    /* [r]: partials still due over the transfer (jobs answered, active 4) */
    size_t *due = NULL;
    if (c->xfer && !(due = calloc((size_t)nw + 1, sizeof *due)))
        first = worker_lost(c, 1, "no memory to track the replies", err);
    int sends_done = nparts == 0;
    while ((pending > 0 || !sends_done) && !c->lost) {
        int progressed = 0;
        for (int r = 1; r <= nw && !c->lost; r++) {
            coord_job *j = &c->jobs[r];
            if (j->active != 2) continue;
            int flag = 0;
            MPI_Status ms;
            if (MPI_Iprobe(r, SKV_TAG_HEADER, c->comm, &flag, &ms) != MPI_SUCCESS) {
                first = worker_lost(c, r, "MPI error waiting for its reply", err);
                break;
            }
            if (!flag) continue;
            progressed = 1;
            pending--;
            j->active = 3; /* answered */
            size_t nd = 0;
            subkv_status g = gather_one(c, r, &ms, t_end, &nd, err);
            if (g == SKV_OK && nd) {
                due[r] = nd;
                j->active = 4; /* its partials come once the sends are done */
                continue;
            }
            if (g != SKV_OK) {
                if (first == SKV_OK || g == SKV_ERR_WORKER_LOST) first = g;
                continue;
            }
            if (j->status == SKV_OK)
                ok = 1;
            else if (first == SKV_OK)
                first = skv_set_error(err, (subkv_status)j->status, "worker %d: %s", r, j->msg);
        }
        if (!sends_done && !c->lost) { /* the payload sends: done once every worker took its */
            skv_err e;
            if (skv_xfer_test(c->xfer, &sends_done, &e) != SKV_OK) {
                snprintf(why, sizeof why, "%s send of its payload failed: %.180s",
                         skv_data_path_name(c->dp.path), e.msg);
                first = worker_lost(c, c->parts[0].peer, why, err);
                break;
            }
            progressed |= sends_done;
        }
        for (int r = 1; r <= nw && sends_done && !c->lost; r++) {
            coord_job *j = &c->jobs[r];
            if (j->active != 4) continue;
            progressed = 1;
            j->active = 3;
            subkv_status g = xfer_partials(c, r, due[r], t_end, err);
            if (g != SKV_OK)
                first = g;
            else if (j->status == SKV_OK)
                ok = 1;
            else if (first == SKV_OK)
                first = skv_set_error(err, (subkv_status)j->status, "worker %d: %s", r, j->msg);
        }
        if (progressed || c->lost || (pending == 0 && sends_done)) continue;
        const double t = skv_now_s();
        if (t > next_pid_check) { /* a worker of this host that died is lost at once */
            next_pid_check = t + 0.01;
            for (int r = 1; r <= nw && !c->lost; r++)
                if (c->jobs[r].active == 2 && c->wpid && c->wpid[r] > 0 && pid_dead(c->wpid[r]))
                    first = worker_lost(c, r, "its process exited", err);
            if (c->lost) break;
        }
        if (t > t_end) { /* the first worker that never answered; else one never fed */
            int late = 0;
            for (int r = 1; r <= nw && !late; r++)
                if (c->jobs[r].active == 2) late = r;
            for (int i = 0; i < nparts && !late; i++)
                if (c->jobs[c->parts[i].peer].active != 4) late = c->parts[i].peer;
            if (late && c->jobs[late].active == 2)
                snprintf(why, sizeof why, "no reply to %s within %d ms", op_name(opcode),
                         deadline_ms);
            else
                snprintf(why, sizeof why, "its payload of %s not taken within %d ms",
                         op_name(opcode), deadline_ms);
            first = worker_lost(c, late ? late : 1, why, err);
            break;
        }
        skv_poll_pause(SKV_POLL_OP, t - t0);
    }
    /* the sends: done once the replies are in; a lost worker's may never complete (the job
     * is over then, so they are left to MPI_Abort) */
    for (int i = 0; i < 2 * nw && !c->lost; i++)
        if (wait_one(&reqs[i], t_end) != 0)
            first = worker_lost(c, i / 2 + 1, "the op sent to it did not complete", err);
    free(due);
    if (ok_any) *ok_any = ok;
    return c->lost ? skv_set_error(err, SKV_ERR_WORKER_LOST, "%s", c->lost_msg) : first;
}

const char *skv_coord_lost(const skv_coord *c) { return c && c->lost ? c->lost_msg : NULL; }

/* ---- lifecycle ---------------------------------------------------------------------------- */

subkv_status skv_coord_create(MPI_Comm comm, const skv_coord_opts *opts, skv_coord **out,
                              skv_err *err) {
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank != 0) return skv_set_error(err, SKV_ERR_INVALID_ARG, "the coordinator must be rank 0");
    const int local = opts && opts->local_worker;
    if (size < 2 && !local)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "no workers: start with mpirun -np 1 subkv-coordinator : -np N "
                             "subkv-worker (or give the coordinator --local-worker)");
    /* Errors come back as codes (a dead worker must not take rank 0 down with it before the
     * clients hear why); every wait on a worker is nonblocking against a deadline. */
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    /* Collective with the workers' node split (worker_serve.c): they number themselves per
     * node to pick GPUs by local rank. Without a local worker the coordinator takes part
     * without joining a group; with one it joins, as node-local rank 0 (key 0), so it takes
     * GPU 0 of its node and the workers of its node the GPUs after it. */
    MPI_Comm node = MPI_COMM_NULL;
    int local_rank = 0;
    MPI_Comm_split_type(comm, local ? MPI_COMM_TYPE_SHARED : MPI_UNDEFINED, 0, MPI_INFO_NULL,
                        &node);
    if (node != MPI_COMM_NULL) {
        MPI_Comm_rank(node, &local_rank);
        MPI_Comm_free(&node);
    }
    skv_coord *c = calloc(1, sizeof *c);
    if (!c) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the coordinator");
    c->comm = comm;
    c->nworkers = size - 1;
    c->local = local;
    c->next_id = 1;
    if (opts) c->opts = *opts;
    c->jobs = calloc((size_t)size, sizeof *c->jobs);
    if (!c->jobs) {
        free(c);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d jobs", size);
    }
    subkv_status st = SKV_OK;
    if (local) {
        const skv_worker_opts wo = {.budget_bytes = c->opts.local_budget_bytes,
                                    .backend = (skv_worker_backend)c->opts.local_backend,
                                    .gpu_reserve_bytes = c->opts.local_gpu_reserve_bytes,
                                    .verbose = c->opts.verbose};
        st = skv_worker_new(0, c->nworkers, local_rank, &wo, &c->worker, err);
        if (st != SKV_OK) { /* the caller aborts the job: the workers wait in a collective */
            free(c->jobs);
            free(c);
            return st;
        }
        fprintf(stderr, "subkv-coordinator: local worker on rank 0: %s\n",
                skv_worker_backend_name(c->worker));
    }
    /* Collective with the workers' report (worker_serve.c, once their backend is settled):
     * rank 0 reports its local worker's GPU, or the CPU; NCCL needs every rank on a GPU of
     * its own (data_path.h), so without a local worker this settles on MPI, and says so. */
    const int dev = c->worker ? skv_worker_device(c->worker) : -1;
    st = skv_data_path_start(comm, dev >= 0 ? SKV_RANK_CUDA : SKV_RANK_CPU, dev,
                             c->opts.data_path == SKV_COORD_PATH_MPI        ? SKV_WANT_MPI
                             : c->opts.data_path == SKV_COORD_PATH_XFER_MPI ? SKV_WANT_XFER_MPI
                                                                            : SKV_WANT_AUTO,
                             &c->dp, err);
    if (st == SKV_OK) st = skv_xfer_start(comm, &c->dp, &c->xfer, err);
    if (st != SKV_OK) {
        skv_data_path_stop(&c->dp);
        skv_worker_free(c->worker);
        free(c->jobs);
        free(c);
        return st;
    }
    /* Collective with the workers' (worker_serve.c): who the coordinator is, so a worker on this
     * host can tell when it is gone (then nobody will ever send it another op). */
    skv_coord_ident id = {(int64_t)getpid(), 0};
    char host[MPI_MAX_PROCESSOR_NAME + 1] = "";
    int hlen = 0;
    if (MPI_Get_processor_name(host, &hlen) == MPI_SUCCESS && hlen >= 0 &&
        hlen <= MPI_MAX_PROCESSOR_NAME)
        host[hlen] = '\0';
    id.host_hash = skv_host_hash(host);
    /* ... and who the workers are: the pids of those on this host are watched while waiting */
    skv_coord_ident *all = calloc((size_t)size, sizeof *all);
    c->wpid = calloc((size_t)size, sizeof *c->wpid);
    if (!all || !c->wpid || MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm) != MPI_SUCCESS ||
        MPI_Gather(&id, (int)sizeof id, MPI_BYTE, all, (int)sizeof id, MPI_BYTE, 0, comm) !=
            MPI_SUCCESS) {
        free(all);
        skv_xfer_free(c->xfer, NULL, NULL);
        skv_data_path_stop(&c->dp);
        skv_worker_free(c->worker);
        free(c->wpid);
        free(c->jobs);
        free(c);
        return skv_set_error(err, SKV_ERR_IO, "start-up exchange of process identities failed");
    }
    for (int r = 1; r < size; r++)
        c->wpid[r] = all[r].host_hash == id.host_hash ? (pid_t)all[r].pid : 0;
    free(all);
    if (c->opts.verbose || c->local) /* the path matters to whoever asked for a local worker */
        fprintf(stderr, "subkv-coordinator: data path %s (%s)\n", skv_data_path_name(c->dp.path),
                c->dp.why);
    *out = c;
    return SKV_OK;
}

int skv_coord_workers(const skv_coord *c) { return c->nworkers; }

void skv_coord_destroy(skv_coord *c) {
    if (!c) return;
    skv_err err;
    coord_jobs_reset(c);
    coord_jobs_all(c);
    if (!c->lost &&
        coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_SHUTDOWN, NULL, NULL, &err) != SKV_OK)
        fprintf(stderr, "subkv-coordinator: worker shutdown: %s\n", err.msg);
    coord_jobs_reset(c);
    skv_xfer_free(c->xfer, NULL, NULL); /* nothing pending: every dispatch waited */
    skv_data_path_stop(&c->dp);         /* the workers drop theirs after their shutdown reply */
    skv_worker_free(c->worker);
    for (int r = 0; r <= c->nworkers; r++) {
        coord_job *j = &c->jobs[r];
        free(j->items);
        free(j->ptrs);
        free(j->payload);
        free(j->out);
        free(j->hdr);
    }
    for (size_t i = 0; i < c->nseq; i++) coord_seq_free(&c->seqs[i]);
    free(c->seqs);
    free(c->jobs);
    free(c->tq);
    free(c->tk);
    free(c->tv);
    free(c->outbuf);
    free(c->pmerge);
    free(c->loc);
    free(c->reqs);
    free(c->parts);
    free(c->owners);
    free(c->wpid);
    free(c);
}
