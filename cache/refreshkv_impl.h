/*
 * refreshkv_impl.h — the state of a refreshkv sketch, shared by cache/refreshkv.c (config,
 * appends, the decision, checkpoints) and cache/refreshkv_full.c (the full store, the full
 * step, pooling and selection). Private to those two files; see refreshkv.c's header comment
 * for what each store is.
 */
#ifndef SUBKV_REFRESHKV_IMPL_H
#define SUBKV_REFRESHKV_IMPL_H

#include "skv_internal.h"

typedef struct skv_rkv_pos_row skv_rkv_pos_row;

typedef struct rkv_impl {
    /* full store (host) and the scratch of a full step */
    size_t nfull, fcap;
    skv_rows fk, fv;
    float *fprob; /* per token: largest probability over the group's heads */
    float *fpool; /* per token: the dot products, then the pooled score */
    /* queue (device): tokens not yet in the full store */
    size_t nq, qcap;
    skv_rows qk, qv;
    /* partial cache (device): ring of pcap rows, ascending score from phead */
    size_t pcap, pn, phead;
    skv_rows pk, pv;
    double *pscore;
    uint64_t *ppos;
    /* A deferred install (skv_rkv_apply_indices: the rows of a device selection are already
     * on the device, so the host copy waits until something reads the host rows). Invariant:
     *  - rows [plo, phi) of pk, pv are pending: their bytes are stale, and row r's key and
     *    value are row ppos[r] of fk, fv (an exact store holds token t at row t; the store is
     *    append-only, so those rows stay put and unchanged); every other row of the ring's
     *    [0, pn) holds its own bytes;
     *  - plo <= phi <= pn, and plo < phi implies phead == plo; an empty range is plo = phi = 0;
     *    never with a SubGen store.
     * Why one range suffices: apply_indices leaves phead = 0, pn = k and rows [0, k) pending;
     * a push writes row pn while pn < pcap (not pending), then row phead, which is plo while
     * the range is not empty: each such push shrinks it from below, and everything else that
     * moves phead (rkv_select, a load, apply_indices) rewrites or re-marks every row. Every
     * reader of the host rows (rkv_segments: the CPU attend and skv_sketch_entries; the save;
     * the GPU worker's whole-ring upload, through skv_rkv_materialize) copies them in first;
     * rkv_select and a load write every row, a push its own. */
    size_t plo, phi;
    uint64_t materialized; /* rows rkv_materialize copied in (not saved): tests, benchmarks */
    /* for a device mirror of the ring (skv_rkv_ring; not saved): rows pushed so far, and a
     * count of wholesale rearrangements (selections, loads) */
    uint64_t pushes, layout;
    /* decision state */
    float *qref; /* d: the group's mean query at the last full step */
    uint32_t selected;
    uint32_t forced; /* skv_sketch_refresh: the next attend is a full step */
    uint64_t since_check, attends, full_steps, bytes_read;
    /* full_store = subgen (refreshkv_sub.c): the store, and the candidates of a full step */
    skv_sketch *sub;
    size_t store_bytes; /* sub's (or csr's) heap, counted in this sketch's heap_bytes */
    skv_rkv_cand *cand;
    size_t ccap;
    uint32_t *perm; /* pcap: where each partial row goes at a re-selection (subgen, csr) */
    /* full_store = csr (refreshkv_csr.c): the store, and a full step's selection scratch
     * (pcap each): the top-K heap, then the old partial rows sorted by position */
    skv_sketch *csr;
    double *sel_score;
    uint64_t *sel_pos;
    skv_rkv_pos_row *sel_old;
} rkv_impl;

/* A partial-cache row and the token it holds (refreshkv_csr.c's placement). */
struct skv_rkv_pos_row {
    uint64_t pos;
    uint32_t row;
};

static inline size_t rkv_row_bytes(const skv_config *c) {
    return skv_rows_bytes(c->dtype, c->head_dim, 1);
}

/* refreshkv_full.c */
void rkv_full_free(skv_sketch *s, rkv_impl *im);
/* Room for `need` tokens in the full store; all or nothing. */
subkv_status rkv_full_reserve(skv_sketch *s, rkv_impl *im, size_t need, skv_err *err);
/* Move the queue into the full store (room reserved by the caller). */
void rkv_flush(rkv_impl *im);
/* A full step over the store the sketch has (exact: flush, attention, scores, selection;
 * subgen: refreshkv_sub.c's), answering out[g]. */
subkv_status rkv_full_step(skv_sketch *s, rkv_impl *im, const float *Q, int g, skv_partial *out,
                           skv_err *err);
/* Copy the pending rows of a deferred install in from the full store (see rkv_impl); no-op
 * when none. Called from const readers too: it changes no observable state, and a sketch is
 * never used by two threads at once (subkv.h). */
void rkv_materialize(rkv_impl *im);
/* refreshkv.c: the partial cache's rows as segments (ring order, ascending score). */
void rkv_segments(const skv_sketch *s, skv_seg_sink *sink);
/* After a full step that read `bytes` of its store: the reference query, the flags, the
 * counters. */
void rkv_full_done(skv_sketch *s, rkv_impl *im, const float *Q, int g, uint64_t bytes);
/* The top-K heap of rkv_select, fed one (score, token) at a time: *n of cap held (min-heap on
 * (score, token): a later token beats an earlier one of equal score); then sorted ascending. */
void rkv_top_offer(double *sc, uint64_t *ps, size_t *n, size_t cap, double v, uint64_t t);
void rkv_top_sort(double *sc, uint64_t *ps, size_t n, size_t cap);

/* refreshkv_csr.c: a csr full store */
/* The store's config from refreshkv config p, with that budget (0: max_tokens as given). */
void rkv_csr_config(const skv_config *p, size_t budget, skv_config *c);
/* Resolve the store's fields of cfg and, with a budget, split it (K from half, less the fixed
 * state; the store from the rest): partial_tokens, max_tokens (coded tokens) and atoms are
 * written back. fixed = refreshkv's state bytes, row = bytes per partial-cache token. */
subkv_status rkv_csr_split(skv_config *cfg, size_t fixed, size_t row, skv_err *err);
/* A full step over the csr store (see refreshkv_csr.c), answering out[g]. */
subkv_status rkv_csr_full_step(skv_sketch *s, rkv_impl *im, const float *Q, int g, skv_partial *out,
                               skv_err *err);

#endif /* SUBKV_REFRESHKV_IMPL_H */
