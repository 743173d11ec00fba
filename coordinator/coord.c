/*
 * coord.c — the coordinator's state, the sequence table, and the MPI dispatch of one op to
 * the workers it concerns. The MPI path stages everything through host memory (the device
 * machine's Open MPI is not CUDA-aware). Which path the job uses is agreed at create
 * (data_path_mpi.h); the NCCL transfers themselves arrive with the GPU backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_internal.h"
#include "shard_map.h"

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
    for (int r = 1; r <= c->nworkers; r++) {
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
    for (int r = 1; r <= c->nworkers; r++) c->jobs[r].active = 1;
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

subkv_status coord_dispatch(skv_coord *c, Subkv__WorkerOpCode opcode, const coord_op_extra *x,
                            int *ok_any, skv_err *err) {
    const int nw = c->nworkers;
    MPI_Request *reqs = calloc((size_t)(2 * nw), sizeof *reqs);
    if (!reqs) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for MPI requests");
    int nreq = 0;
    subkv_status st = SKV_OK;
    skv_wire_policy wp;
    if (x && x->policy) skv_wire_policy_from_config(&wp, x->policy);
    for (int r = 1; r <= nw && st == SKV_OK; r++) {
        coord_job *j = &c->jobs[r];
        if (!j->active) continue;
        if (j->nfl > (size_t)INT32_MAX) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG,
                               "request too large: %zu floats for worker %d (split it)", j->nfl, r);
            break;
        }
        for (size_t i = 0; i < j->n; i++) j->ptrs[i] = &j->items[i];
        Subkv__WorkerOp op = SUBKV__WORKER_OP__INIT;
        op.op = opcode;
        op.head_dim = x ? x->head_dim : 0;
        op.n_items = j->n;
        op.items = j->ptrs;
        op.payload_floats = j->nfl;
        op.nworkers = (uint32_t)nw;
        if (x && x->policy) op.policy = &wp.msg;
        if (x) op.shards = x->shards;
        if (x && x->path) op.path = (char *)x->path;
        size_t len = subkv__worker_op__get_packed_size(&op);
        if (len > (size_t)INT32_MAX) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG, "op header too large (%zu B)", len);
            break;
        }
        st = skv_grow((void **)&j->hdr, &j->hdr_cap, len + 1, 1, err);
        if (st != SKV_OK) break;
        subkv__worker_op__pack(&op, j->hdr);
        if (MPI_Isend(j->hdr, (int)len, MPI_BYTE, r, SKV_TAG_HEADER, c->comm, &reqs[nreq++]) !=
                MPI_SUCCESS ||
            (j->nfl && MPI_Isend(j->payload, (int)j->nfl, MPI_FLOAT, r, SKV_TAG_PAYLOAD, c->comm,
                                 &reqs[nreq++]) != MPI_SUCCESS))
            st = skv_set_error(err, SKV_ERR_IO, "MPI send to worker %d failed", r);
        else
            j->active = 2; /* sent: a reply will come */
    }
    if (st != SKV_OK && nreq == 0) { /* nothing left this rank: the request fails cleanly */
        free(reqs);
        return st;
    }
    /* gather: every worker that got a header answers with one reply (and its partials) */
    int ok = 0;
    subkv_status first = st;
    for (int r = 1; r <= nw && st != SKV_ERR_IO; r++) {
        coord_job *j = &c->jobs[r];
        if (j->active != 2) continue;
        MPI_Status ms;
        int len = 0;
        if (MPI_Probe(r, SKV_TAG_HEADER, c->comm, &ms) != MPI_SUCCESS) {
            st = first = skv_set_error(err, SKV_ERR_IO, "lost worker %d", r);
            break;
        }
        MPI_Get_count(&ms, MPI_BYTE, &len);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        if (!buf || MPI_Recv(buf, len, MPI_BYTE, r, SKV_TAG_HEADER, c->comm, MPI_STATUS_IGNORE) !=
                        MPI_SUCCESS) {
            free(buf);
            st = first = skv_set_error(err, SKV_ERR_IO, "reply from worker %d lost", r);
            break;
        }
        j->reply = subkv__worker_reply__unpack(NULL, (size_t)len, buf);
        free(buf);
        if (!j->reply) {
            st = first = skv_set_error(err, SKV_ERR_IO, "undecodable reply from worker %d", r);
            break;
        }
        j->status = j->reply->status;
        snprintf(j->msg, sizeof j->msg, "%s", j->reply->message ? j->reply->message : "");
        size_t nout = (size_t)j->reply->payload_floats;
        if (nout) {
            if (skv_grow((void **)&j->out, &j->cap_out, nout, sizeof(float), err) != SKV_OK ||
                MPI_Recv(j->out, (int)nout, MPI_FLOAT, r, SKV_TAG_PAYLOAD, c->comm,
                         MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                st = first = skv_set_error(err, SKV_ERR_IO, "partials from worker %d lost", r);
                break;
            }
        }
        j->nout = nout;
        if (j->status == SKV_OK)
            ok = 1;
        else if (first == SKV_OK)
            first = skv_set_error(err, (subkv_status)j->status, "worker %d: %s", r, j->msg);
    }
    MPI_Waitall(nreq, reqs, MPI_STATUSES_IGNORE);
    free(reqs);
    if (ok_any) *ok_any = ok;
    return first;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

subkv_status skv_coord_create(MPI_Comm comm, const skv_coord_opts *opts, skv_coord **out,
                              skv_err *err) {
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank != 0) return skv_set_error(err, SKV_ERR_INVALID_ARG, "the coordinator must be rank 0");
    if (size < 2)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "no workers: start with mpirun -np 1 subkv-coordinator : -np N "
                             "subkv-worker");
    /* Collective with the workers' node split (worker.c): they number themselves per node
     * to pick GPUs by local rank; the coordinator takes part without joining a group. */
    MPI_Comm none = MPI_COMM_NULL;
    MPI_Comm_split_type(comm, MPI_UNDEFINED, 0, MPI_INFO_NULL, &none);
    if (none != MPI_COMM_NULL) MPI_Comm_free(&none);
    skv_coord *c = calloc(1, sizeof *c);
    if (!c) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the coordinator");
    c->comm = comm;
    c->nworkers = size - 1;
    c->next_id = 1;
    if (opts) c->opts = *opts;
    c->jobs = calloc((size_t)size, sizeof *c->jobs);
    if (!c->jobs) {
        free(c);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d jobs", size);
    }
    /* Collective with the workers' report (worker.c, once their backend is settled): the
     * coordinator is a CPU process, so this settles on MPI today, and says so in stats. */
    subkv_status st = skv_data_path_start(comm, SKV_RANK_CPU, -1, &c->dp, err);
    if (st != SKV_OK) {
        free(c->jobs);
        free(c);
        return st;
    }
    if (c->opts.verbose)
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
    if (coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_SHUTDOWN, NULL, NULL, &err) != SKV_OK)
        fprintf(stderr, "subkv-coordinator: worker shutdown: %s\n", err.msg);
    coord_jobs_reset(c);
    skv_data_path_stop(&c->dp); /* the workers drop theirs after their shutdown reply */
    for (int r = 1; r <= c->nworkers; r++) {
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
    free(c);
}
