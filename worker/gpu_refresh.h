/*
 * gpu_refresh.h — refreshkv's full store and full steps on a GPU worker (full_mem = device).
 *
 * The host full store stays authoritative (checkpoints save it; cache/refreshkv_full.c); the
 * device keeps an append-only mirror of it per sketch, uploading only the rows flushed since
 * the last upload (pooled device memory, through the request's pinned staging arena). The
 * decision stays on the CPU (skv_rkv_plan). A full step's attention over the mirror runs in
 * the request's one batched attend launch (skv_cuda_attend) beside the partial steps, with
 * its raw scores written as the keys are read (skv_cuda_job.s); then skv_cuda_rkv_pool turns
 * them into pooled token scores; skv_cuda_rkv_topk selects the top K of each on the device
 * and gathers the new partial cache from the full-store mirror straight into the partial
 * cache's mirror (gpu_attend.c's ring, physical = logical after a selection), and only the K
 * tokens and their scores are downloaded (pinned, asynchronous): after the request's one sync
 * the host copy installs that selection (skv_rkv_apply_indices, bit-identical to a CPU
 * selection) and the ring mirror is marked current, so nothing is uploaded back. That install
 * is lazy: it records the K tokens and scores, and the host partial rows are copied from the
 * host full store only when something reads them (a checkpoint, a CPU attend, a whole-ring
 * upload): the partial steps that follow upload only their pushed rows, so the step path
 * never pays the K-row copy (2 GB at 1M tokens x 64 sketches, K = n/16).
 * skv_gpu_refresh_cpu_select switches to the older path (benchmarks, tests): the pooled scores
 * downloaded, the selection on the CPU (skv_rkv_apply), the ring re-uploaded whole.
 *
 * Sequence per request (worker.c's op_tokens, gpu_attend.c's skv_gpu_finish):
 *   skv_gpu_refresh_begin per item  -> the decision; a full step syncs the mirror, fills the
 *                                      item's job and scratch
 *   skv_gpu_refresh_launch          -> after the attend launch: pool, top-K + gather kernels,
 *                                      downloads of the selections
 *   skv_gpu_refresh_apply           -> after the sync: the host copies take the selections
 *   skv_gpu_refresh_end             -> the request's device scratch back to the pool (always)
 */
#ifndef SUBKV_GPU_REFRESH_H
#define SUBKV_GPU_REFRESH_H

#include "gpu_attend.h"

typedef struct skv_rkv_mirror skv_rkv_mirror;
void skv_rkv_mirror_free(skv_cuda_ctx *c, skv_rkv_mirror *f);

/* Does sketch s run its full steps on this GPU worker (refreshkv, exact store, full_mem device,
 * and skv_gpu_eligible(NULL, s, g))? */
int skv_gpu_refresh_device(const skv_sketch *s, int g);

/* Decide item `it` (entry, q, out set; g queries): a partial step leaves it->full = 0 (attend
 * the partial cache's mirror as usual); a full step brings the full-store mirror up to date
 * and sets it->full, it->job (the mirror, score output) and it->dpool. Validates the queries
 * (skv_sketch_attend's checks). */
subkv_status skv_gpu_refresh_begin(skv_gpu *g, skv_gpu_item *it, int group, skv_err *err);

/* After the attend launch that wrote items' partials at dout (stride `on` floats per item):
 * queue the pool kernels of the full-step items and the downloads of their pooled scores. */
subkv_status skv_gpu_refresh_launch(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                                    const float *dout, size_t on, skv_err *err);

/* After the request's sync: each full-step item's host copy takes its downloaded selection
 * (or, with the CPU selection, selects from its downloaded scores). */
subkv_status skv_gpu_refresh_apply(skv_gpu *g, skv_gpu_item *items, size_t n, int group,
                                   skv_err *err);

/* on = 1: select on the CPU from downloaded pooled scores (the path before the device top-K;
 * for benchmarks and tests); 0 (the default): on the device. Between requests only. */
subkv_status skv_gpu_refresh_cpu_select(skv_gpu *g, int on, skv_err *err);

/* Return the request's device scratch to the pool (stream-ordered: safe while queued work
 * still reads it). Call once per request, whether it succeeded or not. */
void skv_gpu_refresh_end(skv_gpu *g);
/* Free what skv_gpu_refresh_* keeps in g (skv_gpu_fini calls it). */
void skv_gpu_refresh_fini(skv_gpu *g);

#endif /* SUBKV_GPU_REFRESH_H */
