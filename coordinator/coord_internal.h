/*
 * coord_internal.h — the coordinator's state, shared by its source files only.
 */
#ifndef SUBKV_COORD_INTERNAL_H
#define SUBKV_COORD_INTERNAL_H

#include <sys/types.h>

#include "coord.h"
#include "shard_map.h"
#include "data_path_mpi.h"
#include "skv_check.h"
#include "skv_internal.h"
#include "payload_xfer.h"
#include "skv_wire.h"
#include "worker.h"

/* Limits a request is checked against before anything is allocated for it. */
enum {
    COORD_MAX_LAYERS = 4096,
    COORD_MAX_HEADS = 1024,
    COORD_MAX_GROUP = 64,
    COORD_MAX_SHARDS = 64,
    COORD_MAX_BATCH = 4096,
    COORD_DEFAULT_BLOCK = 4096,
};

typedef struct coord_seq {
    uint64_t id;
    uint32_t layers, q_heads, kv_heads, head_dim, shards, block;
    skv_config cfg;      /* as the client asked (the workers resolve it) */
    uint64_t max_tokens; /* resolved cap of each exact sketch (0: none), checked up front */
    uint64_t *tokens;    /* tokens appended, per layer */
    int broken;          /* a multi-worker op failed halfway: the sketches disagree */
    uint64_t owner;      /* the client that created it (limits); 0 after a restore */
    /* refreshkv with decide = layer (skv_shard_layer_rule): the paper's per-layer refresh
     * decision, one per layer (NULL otherwise); rule_q holds each layer's reference mean
     * query [layers][head_dim]. Checkpointed with the table (coord_ckpt.c). */
    skv_layer_rule *rule;
    float *rule_q;
} coord_seq;

/* What one client holds, for its limits (skv_coord_opts). */
typedef struct coord_owner {
    uint64_t client;
    uint64_t seqs;  /* live sequences it created */
    uint64_t bytes; /* float32 K/V bytes stored in them */
} coord_owner;

/* One worker's part of an op: its items, their payload, its reply and partials. */
typedef struct coord_job {
    int active;
    Subkv__WorkItem *items;
    Subkv__WorkItem **ptrs;
    size_t n, cap;
    float *payload;
    size_t nfl, cap_fl;
    float *out;
    size_t nout, cap_out;
    uint8_t *hdr;
    size_t hdr_cap;
    int status;
    char msg[200];
    Subkv__WorkerReply *reply; /* kept for WOP_STATS */
} coord_job;

struct skv_coord {
    MPI_Comm comm;
    int nworkers;
    skv_data_path dp; /* MPI or NCCL, agreed with the workers at create (data_path_mpi.h) */
    skv_coord_opts opts;
    coord_seq *seqs; /* sorted by id */
    size_t nseq, cap_seq;
    uint64_t next_id;
    coord_job *jobs; /* indexed by rank; jobs[0]: the local worker's (unused without it) */
    float *tq, *tk, *tv;
    size_t tq_cap, tk_cap, tv_cap;
    float *outbuf; /* attention outputs of a request, [B][q_heads][d] */
    size_t out_cap;
    float *pmerge; /* one group's partials while they merge */
    size_t pmerge_cap;
    struct coord_loc *loc; /* where each (seq, kv head, shard)'s partials come back */
    size_t loc_cap;
    MPI_Request *reqs; /* one op's sends */
    size_t reqs_cap;
    skv_xfer_part *parts; /* one op's payloads when they go over NCCL */
    size_t parts_cap;
    int local;           /* 1: rank 0 owns a shard (opts.local_worker), handled by `worker` */
    skv_worker *worker;  /* the local worker, or NULL */
    skv_xfer *xfer;      /* the payloads' transfer on the NCCL path (payload_xfer.h), else NULL */
    coord_owner *owners; /* sorted by client */
    size_t nowners, cap_owners;
    uint64_t client; /* the client of the request being handled */
    int ckpt_count;  /* checkpoints attempted (the fault hook counts them) */
    pid_t *wpid;     /* [rank]: the worker's pid when on this host, else 0 */
    int lost;        /* a worker died or missed its deadline: the job cannot continue */
    char lost_msg[200];
};

/* The lowest rank that owns sketches: 0 with the local worker, else 1. */
static inline int coord_first_owner(const skv_coord *c) { return c->local ? 0 : 1; }

/* The rank owning sketch (seq, layer, kv_head, shard) (shard_map.h). */
static inline int coord_owner_rank(const skv_coord *c, uint64_t seq, uint32_t layer,
                                   uint32_t kv_head, uint32_t kv_heads, uint32_t shard,
                                   uint32_t shards) {
    return skv_shard_owner_of(coord_first_owner(c), c->nworkers + c->local, seq, layer, kv_head,
                              kv_heads, shard, shards);
}

/* Bytes of float32 K/V one token of s stores (all kv heads). */
static inline uint64_t coord_seq_token_bytes(const coord_seq *s) {
    return (uint64_t)s->kv_heads * s->head_dim * 2u * sizeof(float);
}

/* The owner record of client (created when create != 0; NULL when absent / no memory). */
coord_owner *coord_owner_get(skv_coord *c, uint64_t client, int create);
/* Would client storing `bytes` more (and `seqs` more sequences) exceed its limits? */
subkv_status coord_limit_check(skv_coord *c, uint64_t client, uint64_t seqs, uint64_t bytes,
                               skv_err *err);
/* Charge (or, negative, release) a client's usage. */
void coord_owner_charge(skv_coord *c, uint64_t client, int64_t seqs, int64_t bytes);

/* One line naming lost rank r, why, and the sketches the shard map gave it. */
void coord_describe_lost(const skv_coord *c, int r, const char *why, char *out, size_t n);

/* Die by SIGKILL when opts.fault names `point` for checkpoint number c->ckpt_count. */
void coord_fault(const skv_coord *c, const char *point);

typedef struct coord_loc {
    int rank;
    size_t offset; /* floats into that job's out */
} coord_loc;

coord_seq *coord_seq_find(skv_coord *c, uint64_t id);
/* Allocate s's per-layer state (tokens; the layer rule's where s needs one), zeroed. */
subkv_status coord_seq_alloc(coord_seq *s, skv_err *err);
/* Free what coord_seq_alloc allocated (NULL-safe; the record itself stays). */
void coord_seq_free(coord_seq *s);
/* Insert (the table takes s->tokens); ids must increase. */
subkv_status coord_seq_add(skv_coord *c, const coord_seq *s, skv_err *err);
void coord_seq_remove(skv_coord *c, uint64_t id);

/* Start an op: every job inactive and empty. */
void coord_jobs_reset(skv_coord *c);
/* Add an item to rank's job; returns it (NULL: no memory). */
Subkv__WorkItem *coord_job_item(skv_coord *c, int rank, skv_err *err);
/* Reserve n payload floats at the end of rank's job; returns where to write them. */
float *coord_job_payload(skv_coord *c, int rank, size_t n, skv_err *err);
/* Mark every worker's job active (ops that concern all workers). */
void coord_jobs_all(skv_coord *c);

/* Extra fields of a WorkerOp beyond the code, items and payload. */
typedef struct coord_op_extra {
    uint32_t head_dim;
    const skv_config *policy; /* WOP_CREATE */
    uint32_t shards;          /* WOP_CREATE */
    const char *path;         /* WOP_CHECKPOINT / WOP_RESTORE */
} coord_op_extra;

/*
 * Send the op to every active job's worker, gather every reply (and its partials into
 * job->out). With the local worker, rank 0's job runs in-process between the sends and the
 * gather (its failure is an op failure, never a worker loss). Payloads go as MPI messages,
 * or through c->xfer on the NCCL path (payload_xfer.h): all sends in one group, each
 * worker's partials received once the sends completed. Returns SKV_OK when every worker succeeded,
 * else the first failure (rank order) with "worker R: message". *ok_any (optional) tells whether
 * some workers succeeded, so callers can detect a half-applied op. Every wait is nonblocking
 * (MPI_Test / MPI_Iprobe polling) against the op's deadline: a worker that dies (an MPI error) or
 * does not answer in time is declared lost (skv_coord_lost), and this and every later op fail with
 * SKV_ERR_WORKER_LOST naming its rank and the sketches it held.
 */
subkv_status coord_dispatch(skv_coord *c, Subkv__WorkerOpCode op, const coord_op_extra *x,
                            int *ok_any, skv_err *err);

/* Request handlers (coord_ops.c): validate fully, then dispatch. */
subkv_status coord_h_create(skv_coord *c, const Subkv__CreateSequence *m, uint64_t *id_out,
                            skv_err *err);
subkv_status coord_h_drop(skv_coord *c, uint64_t id, skv_err *err);
subkv_status coord_h_append(skv_coord *c, const Subkv__Append *m, skv_err *err);
/* Step (is_step: k, v appended first) or attend of one layer for B sequences; on success
 * c->outbuf holds [B][q_heads][d] and dims its shape. */
subkv_status coord_h_tokens(skv_coord *c, uint32_t layer, size_t B, const uint64_t *ids,
                            const Subkv__Tensor *tq, const Subkv__Tensor *tk,
                            const Subkv__Tensor *tv, int is_step, uint32_t dims[3], skv_err *err);

/* Checkpoint files (coord_ckpt.c): skv_coord_checkpoint. */

#endif /* SUBKV_COORD_INTERNAL_H */
