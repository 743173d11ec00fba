/*
 * gpu_attend.h — the worker's GPU side. Two kinds of sketches live there:
 *   - resident: SubGen sketches (f16/bf16, head_dim 64 or 128) keep their state on the
 *     device (cuda/skv_dsub.h): appends run there, batched over the request, and the
 *     attend reads the device image directly. The CPU sketch is a shadow, brought up to
 *     date (skv_gpu_pull) only before something reads it on the host: a checkpoint, a CPU
 *     attend of a group size the kernel lacks.
 *   - mirrored: exact and sinkwin stay authoritative on the CPU; a mirror of their entries
 *     lives on the device (an exact cache uploads only the rows appended since the last step;
 *     sinkwin re-uploads its window). csr mirrors its codes and exact rows append-only and
 *     attends the codes directly; its new tokens are coded on the device, batched over the
 *     request, and the codes go back to the CPU sketch before the attends (worker/gpu_csr.h).
 * Every device buffer comes from the context's stream-ordered pool (reserved at start-up),
 * uploads are queued from a pinned arena, appends then attends go out as one launch each per
 * request, and the request syncs once at its end. h2o and float32 storage stay on the CPU.
 *   refreshkv: the worker first runs skv_sketch_attend_begin on the CPU (its decision, and a
 *   full step over the host-side full store); only partial steps come here, attending the
 *   partial cache's mirror. With full_mem = device the decision still runs on the CPU but a
 *   full step comes here too, over a device mirror of the full store (worker/gpu_refresh.h).
 */
#ifndef SUBKV_GPU_ATTEND_H
#define SUBKV_GPU_ATTEND_H

#include <stddef.h>

#include "sketch_table.h"
#include "skv_cuda.h"
#include "skv_dsub.h"
#include "skv_internal.h"

typedef struct skv_mirror skv_mirror;
void skv_mirror_free(skv_mirror *m);
struct skv_rkv_gpu; /* gpu_refresh.c's per-request scratch */
struct skv_rkv_mirror;
struct skv_csr_mirror;
typedef struct skv_gpu_csr skv_gpu_csr; /* worker/gpu_csr.h */

typedef struct skv_gpu {
    skv_cuda_ctx *ctx;
    float *dq, *dout; /* device: queries and partials of one request */
    size_t dq_cap, dout_cap;
    float *dkv; /* device: the keys and values of one request's GPU appends */
    size_t dkv_cap;
    float *hq; /* host: scaled queries */
    size_t hq_cap;
    skv_cuda_job *jobs;
    size_t jobs_cap;
    skv_dsub_op *ops; /* queued GPU appends of this request */
    size_t nops, ops_cap;
    const float **op_src; /* their host keys (values follow) */
    size_t op_src_cap, kv_floats;
    skv_entries e; /* host export of one sketch's entries */
    void *stage;   /* pinned arena the request's uploads are queued from */
    size_t stage_cap, stage_used;
    struct skv_rkv_gpu *rkv; /* refreshkv full steps on the device (gpu_refresh.c), or NULL */
    skv_gpu_csr *csr;        /* csr sketches' dictionaries and coded attends (worker/gpu_csr.c) */
    int csr_cpu_said;        /* the log has said that pre-rotary csr attends on the CPU */
} skv_gpu;

/* Set up on the current device, reserving `reserve` bytes of device memory for the pool
 * (0: grow on demand); SKV_ERR_UNSUPPORTED / SKV_ERR_DEVICE / SKV_ERR_NOMEM. */
subkv_status skv_gpu_init(skv_gpu *g, size_t reserve, skv_err *err);
void skv_gpu_fini(skv_gpu *g);

/* Can the GPU answer g queries of this sketch exactly like the CPU contract requires?
 * (gpu: where a csr refusal is logged once; may be NULL.) */
int skv_gpu_eligible(skv_gpu *gpu, const skv_sketch *s, int g);
/* Does this sketch keep its state on the GPU (appends go through skv_gpu_append)? */
int skv_gpu_resident(const skv_sketch *s);

/* Queue the append of n tokens (host rows K then V, n*d floats each) to a resident sketch;
 * it runs with the request's other appends in skv_gpu_flush. */
subkv_status skv_gpu_append(skv_gpu *g, skv_table_entry *te, const float *K, const float *V,
                            size_t n, skv_err *err);

/* One attend the GPU should run: the sketch's table entry, its g unscaled query rows, and
 * where its g partials go (host). */
typedef struct skv_gpu_item {
    skv_table_entry *entry;
    const float *q;
    float *out;
    /* refreshkv full step on the device (set by skv_gpu_refresh_begin; zero otherwise): the
     * job over the full-store mirror with its score output (q and out filled in at launch),
     * the device pooled scores, and where they are downloaded (with the CPU selection only:
     * skv_gpu_refresh_cpu_select) */
    int full;
    skv_cuda_job job;
    float *dpool, *hpool;
} skv_gpu_item;

/* Launch the queued appends (one kernel for all; no wait). Before any attend that may
 * read the sketches they change. */
subkv_status skv_gpu_launch_appends(skv_gpu *g, skv_err *err);
/* Drop the queued appends unlaunched (the request failed before its GPU work). */
void skv_gpu_discard(skv_gpu *g);

/*
 * Attend the items (every item has the same d and group; n may be 0) in one launch per
 * storage type, then wait for the device: the request's one sync. Inputs were validated
 * before anything was queued, so what fails here is the device itself (SKV_ERR_DEVICE,
 * SKV_ERR_NOMEM).
 */
subkv_status skv_gpu_finish(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                            skv_err *err);

/* Bring the CPU shadow of a resident sketch up to date (no-op for the others). */
subkv_status skv_gpu_pull(skv_gpu *g, skv_table_entry *te, skv_err *err);

/* For the worker's other GPU files (gpu_refresh.c, gpu_csr.c): queue an upload of host[bytes] to
 * device dst through the request's pinned staging arena; grow pooled buffer *p to `bytes`, keeping
 * its first `keep` (stream-ordered); the slot of the refreshkv full-store mirror of te (made on
 * first use). */
subkv_status skv_gpu_stage_upload(skv_gpu *g, void *dst, const void *host, size_t bytes,
                                  skv_err *err);
subkv_status skv_gpu_dev_grow(skv_cuda_ctx *c, void **p, size_t keep, size_t bytes, skv_err *err);
subkv_status skv_gpu_mirror_full(skv_gpu *g, skv_table_entry *te, struct skv_rkv_mirror ***slot,
                                 skv_err *err);
/* The slot of te's csr mirror (gpu_csr.c; the mirror made on first use there). */
subkv_status skv_gpu_mirror_csr(skv_gpu *g, skv_table_entry *te, struct skv_csr_mirror ***slot,
                                skv_err *err);

/* For gpu_refresh.c's device-side re-selection: the device rows (pcap each) of te's partial-
 * cache mirror, marked stale (a full upload at the next partial step) until
 * skv_gpu_ring_current says they hold the sketch's ring as it is now (after a selection:
 * physical row i = logical row i). */
subkv_status skv_gpu_ring_target(skv_gpu *g, skv_table_entry *te, void **k, void **v, skv_err *err);
void skv_gpu_ring_current(skv_table_entry *te);

/* Device bytes the pool holds reserved. */
size_t skv_gpu_reserved(const skv_gpu *g);

/* A mirror's csr part (NULL for other policies or none yet). */
struct skv_csr_mirror *skv_mirror_csr(const skv_mirror *m);

#endif /* SUBKV_GPU_ATTEND_H */
