/*
 * gpu_csr.h — csr sketches on a GPU worker (worker/gpu_csr.c): the attend reads the CODES on
 * the device (cuda/skv_csr_cuda.h), never decoded rows.
 *
 * Per sketch (a skv_csr_mirror, hung on its skv_mirror):
 *   - the coded rows, append-only: each refresh uploads the codes of the tokens coded since
 *     the last one (8 s bytes a token), so device memory and PCIe traffic follow the codes;
 *   - the exact part (sinks + window ring) as exact rows in the sketch's dtype, laid out as
 *     the host keeps them (sinks at rows [0, sinks), ring slot j at row sinks + j); a refresh
 *     uploads only the sink rows and ring slots written since (skv_sinkwin_changed).
 * Per worker (skv_gpu_csr, on skv_gpu): the dictionaries, float32 atoms of one layer group
 * each, uploaded once per (set, group) and shared by every sketch that codes over them
 * (keyed by the skv_dict pointer, its fingerprint and the group; freed with the skv_gpu).
 *
 * A request's attend: the exact parts join the request's skv_cuda_attend launch (as jobs
 * of all-ones entries); the coded parts go out as one skv_csr_cuda_attend launch per
 * (sparsity, atoms) (one in practice), whose partials are downloaded with the request's one
 * sync and merged on the host into each item's exact partial (skv_partial_merge).
 *
 * Eligible: post-rotary codes (rope_base 0), head_dim 64/128, f16/bf16 (skv_gpu_eligible's
 * rules), at most SKV_CSR_CUDA_MAX_ATOMS atoms. Pre-rotary csr (rope_base > 0) is not: the
 * code kernel has no per-position rotation, so those sketches attend on the worker's CPU
 * (the sketch's own attend, decoding on the fly), which the worker's log says once.
 *
 * Coding on the GPU. The worker codes the new tokens of every eligible csr
 * sketch on the device, batched over the request (automatic: whenever a request has at
 * least one eligible csr append that codes a token; a short one costs one launch and one
 * sync, a step of 2048 sketches saves ~0.4 s of single-thread matching pursuit). csr codes
 * a token when it leaves the window, so an append's job is the rows it pushes out
 * (skv_csr_code_inputs: old window rows as stored, or its own tokens once they pass
 * through). skv_gpu_csr_append queues it: the mirror is brought up to date, the rows are
 * gathered on the host. skv_gpu_csr_launch_codes uploads every queued row at once and runs
 * one skv_csr_cuda_encode per (head_dim, sparsity, atoms), which writes each sketch's codes
 * straight into its mirror's code rows (no upload of them later) and a second copy into
 * one staging buffer, downloaded (async, pinned) in one piece. skv_gpu_csr_finish_codes
 * syncs and appends the tokens to each CPU sketch with those codes (skv_csr_append_codes:
 * the state a plain append gives, bit for bit, since the GPU codes equal skv_mp_encode's),
 * so the CPU sketch stays authoritative (checkpoints, CPU attends) and is whole before
 * anything reads it. A failed request leaves the queued sketches unappended. Sketches
 * whose attend stays on the CPU (pre-rotary: their keys are turned back by R(-p) on the
 * host before the upload; f32 storage) are coded the same way, into the staging only.
 */
#ifndef SUBKV_GPU_CSR_H
#define SUBKV_GPU_CSR_H

#include "gpu_attend.h"

typedef struct skv_csr_mirror skv_csr_mirror;

/* Can a csr sketch attend through its codes on the GPU? (0 for pre-rotary codes, logged to
 * stderr the first time on this gpu; gpu may be NULL: no log.) */
int skv_gpu_csr_eligible(skv_gpu *gpu, const skv_sketch *s);

/* Bring *m (created on first use) up to date with csr sketch s: new codes, changed exact
 * rows, the dictionary on first use. Uploads are queued on the context's stream. */
subkv_status skv_gpu_csr_refresh(skv_gpu *g, const skv_sketch *s, skv_csr_mirror **m, skv_err *err);
/* Does the worker code this sketch's appends on the GPU? Every csr sketch of head_dim 64 or
 * 128: those skv_gpu_eligible takes into their mirrors, the others (pre-rotary keys, f32
 * storage), whose attend stays on the CPU, through the staging only. */
int skv_gpu_csr_codes_here(skv_gpu *gpu, const skv_sketch *s);
/* Queue the append of n tokens (host K then V rows of d, valid until the finish) to the csr
 * sketch of te (skv_gpu_csr_codes_here) with its coding on the GPU. Checks the append as
 * skv_sketch_append does; an append that codes nothing is done on the CPU at once. The same
 * sketch queued twice: the first is launched and finished before the second is queued. */
subkv_status skv_gpu_csr_append(skv_gpu *g, skv_table_entry *te, const float *K, const float *V,
                                size_t n, skv_err *err);
/* Launch the queued codings (no wait; no-op when none or already launched). */
subkv_status skv_gpu_csr_launch_codes(skv_gpu *g, skv_err *err);
/* Launch if needed, sync, and append each queued append to its CPU sketch with its codes;
 * the queue is empty after (also on failure: the appends not done are dropped). */
subkv_status skv_gpu_csr_finish_codes(skv_gpu *g, skv_err *err);
/* Drop the queued codings (the request failed); their sketches stay unappended. */
void skv_gpu_csr_discard_codes(skv_gpu *g);

/* The exact part as an attend job's entries (k, v, n; all-ones weights). */
void skv_gpu_csr_exact_job(const skv_csr_mirror *m, skv_cuda_job *job);

/* Queue the coded attends of the csr items among items[n] (queries pre-scaled at g->dq +
 * i * group * d) and the download of their partials. After the exact attends, before the
 * request's sync. */
subkv_status skv_gpu_csr_launch(skv_gpu *g, const skv_gpu_item *items, size_t n, int d, int group,
                                skv_err *err);
/* After the sync, with each item's exact partials in items[i].out: merge the coded ones. */
void skv_gpu_csr_merge(skv_gpu *g, skv_gpu_item *items, int d, int group);

/* A mirror's numbers (tests, benchmarks): device bytes it holds (codes and exact rows; the
 * shared dictionary not counted), bytes uploaded to it so far, its rows. */
typedef struct skv_gpu_csr_stats {
    size_t device_bytes;
    uint64_t uploaded_bytes;
    size_t codes, exact;
    uint64_t gpu_coded;                 /* tokens coded on the GPU (skv_gpu_csr_append) so far */
    const uint16_t *dev_idx, *dev_coef; /* device: its code rows [0, codes) (tests compare) */
} skv_gpu_csr_stats;
void skv_gpu_csr_mirror_stats(const skv_csr_mirror *m, skv_gpu_csr_stats *st);
/* Device bytes of the dictionaries uploaded so far. */
size_t skv_gpu_csr_dict_bytes(const skv_gpu *g);

void skv_gpu_csr_mirror_free(skv_cuda_ctx *c, skv_csr_mirror *m);
/* Free the worker's csr state (dictionaries, buffers); before the context goes. */
void skv_gpu_csr_fini(skv_gpu *g);

#endif /* SUBKV_GPU_CSR_H */
