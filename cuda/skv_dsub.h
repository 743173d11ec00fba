/*
 * skv_dsub.h — SubGen sketches resident on the GPU (issue 4): the device image of a sketch,
 * the batched append kernel that updates it in place, and the copies between it and the
 * CPU sketch (cache/subgen.c) that checkpoints and stats read.
 *
 * The append is the CPU algorithm, run on the device with the same arithmetic: keys and
 * values round to f16/bf16 through cache/skv_hd.h, distances are float with eight lanes
 * summed in double as in subgen.c, and every coin is the same Philox draw, so after the
 * same tokens the device image and the CPU sketch hold the same bits (tests/test_cuda.c
 * checks exactly that, through skv_sketch_save). One thread block per sketch walks its new
 * tokens in order; its 128 threads split the nearest-center search, the reservoir coins
 * and the row stores. Decode steps append one token per sketch, so a request's batch of
 * sketches is the parallelism.
 *
 * Image layout (one pooled allocation): a header, then
 *   K rows: [S sinks | W window | s value slots | m*t cluster samples]
 *   V rows: [S sinks | W window | s value slots | m*t cluster samples if values=cluster]
 *   weights a, b for every K row, cluster centers (f32), counts (u64), 1/||v||^2 per slot.
 * The live entries are always a prefix of the rows (sinks fill first, then the window, and
 * only then are tokens sketched), so the attend kernel reads min(capacity, hdr.n_entries)
 * rows (skv_cuda_job.dn) and value rows only below the cluster samples when values=l2
 * (skv_cuda_job.nv): no host round trip between an append and the attend that follows.
 */
#ifndef SUBKV_DSUB_H
#define SUBKV_DSUB_H

#include <stddef.h>
#include <stdint.h>

#include "skv_cuda.h"
#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The header at the start of a device image (device memory). */
typedef struct skv_dsub_hdr {
    uint64_t tokens_seen, nsinks, wfill, whead;
    uint64_t n_entries; /* live rows for the attend: a prefix */
    double mu;          /* values=l2: sum of ||v||^2 of sketched tokens */
    float delta;
    uint32_t merges;
    int32_t nclusters;
    int32_t slots_full;
} skv_dsub_hdr;

/* Where one sketch's image lives and its fixed parameters (a kernel argument). */
typedef struct skv_dsub_desc {
    skv_dsub_hdr *hdr;
    void *krows, *vrows; /* f16/bf16 rows, layout above */
    float *a, *b;        /* weights of the K rows */
    float *centers;      /* m x d */
    uint64_t *count;     /* m */
    float *inv_norm;     /* s */
    uint32_t k0, k1;     /* Philox key of (seed, sequence, layer, head) */
    int32_t S, W, m, t, s, cluster_values, d, dtype;
} skv_dsub_desc;

/* One sketch's share of a batched append: n new tokens, rows of d floats in device memory. */
typedef struct skv_dsub_op {
    skv_dsub_desc desc;
    const float *k, *v;
    uint32_t n;
} skv_dsub_op;

/* Launch the append of ops[nops] (host array) on the context's stream; returns once queued.
 * The kernel also refreshes each image's weights and n_entries (n = 0 does only that). */
subkv_status skv_dsub_launch(skv_cuda_ctx *c, const skv_dsub_op *ops, int nops, skv_err *err);

/* ---- host side (cuda/dsub.c) ---------------------------------------------------------- */

typedef struct skv_sketch skv_sketch;
typedef struct skv_dsub skv_dsub;

/* Can this sketch live on the device? (subgen, f16/bf16; the attend needs d 64 or 128) */
int skv_dsub_eligible(const skv_sketch *s);

/* Allocate an image from the context's pool and upload the state of `s` (a subgen sketch,
 * possibly non-empty: a restore) into it. Synchronous. */
subkv_status skv_dsub_create(skv_cuda_ctx *c, const skv_sketch *s, skv_dsub **out, skv_err *err);
void skv_dsub_destroy(skv_cuda_ctx *c, skv_dsub *d);

/* Device bytes of the image. */
size_t skv_dsub_bytes(const skv_dsub *d);
const skv_dsub_desc *skv_dsub_descriptor(const skv_dsub *d);

/* The attend job reading the image (q and out left for the caller). */
void skv_dsub_job(const skv_dsub *d, skv_cuda_job *job);

/* Copy the image back into the CPU sketch `s` (same config), synchronously: afterwards
 * skv_sketch_save / stats / attend of `s` see exactly the device state. */
subkv_status skv_dsub_pull(skv_cuda_ctx *c, const skv_dsub *d, skv_sketch *s, skv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* SUBKV_DSUB_H */
