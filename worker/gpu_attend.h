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
 *     attends the codes directly (worker/gpu_csr.h).
 * Every device buffer comes from the context's stream-ordered pool (reserved at start-up),
 * uploads are queued from a pinned arena, appends then attends go out as one launch each per
 * request, and the request syncs once at its end. h2o and float32 storage stay on the CPU.
 *   refreshkv: the worker first runs skv_sketch_attend_begin on the CPU (its decision, and a
 *   full step over the host-side full store); only partial steps come here, attending the
 *   partial cache's mirror.
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
    skv_gpu_csr *csr; /* csr sketches' dictionaries and coded attends (worker/gpu_csr.c) */
    int csr_cpu_said; /* the log has said that pre-rotary csr attends on the CPU */
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

/* Device bytes the pool holds reserved. */
size_t skv_gpu_reserved(const skv_gpu *g);

/* For the worker's other GPU files (gpu_csr.c). Grow a pooled device buffer to `bytes`,
 * keeping its first `keep` bytes (stream-ordered); queue an upload of host[bytes] to dst
 * through the request's pinned staging arena. */
subkv_status skv_gpu_dev_grow(skv_cuda_ctx *c, void **p, size_t keep, size_t bytes, skv_err *err);
subkv_status skv_gpu_stage_upload(skv_gpu *g, void *dst, const void *host, size_t bytes,
                                  skv_err *err);
/* A mirror's csr part (NULL for other policies or none yet). */
struct skv_csr_mirror *skv_mirror_csr(const skv_mirror *m);

#endif /* SUBKV_GPU_ATTEND_H */
