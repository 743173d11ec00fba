/*
 * gpu_attend.h — the worker's GPU attend. Each sketch the GPU can serve keeps a mirror of
 * its weighted entries in device memory (an exact cache uploads only the rows appended since
 * the last step; other policies, whose entries change in place, re-upload theirs, at most
 * their budget); every attend of a request then runs in one batched launch per storage type
 * (cuda/skv_cuda.h). The CPU sketch stays the authority (appends, checkpoints); h2o, float32
 * storage and unsupported shapes attend on the CPU. refreshkv: the worker first runs
 * skv_sketch_attend_begin on the CPU (its decision, and a full step over the host-side full
 * store); only partial steps come here, attending the partial cache's mirror.
 */
#ifndef SUBKV_GPU_ATTEND_H
#define SUBKV_GPU_ATTEND_H

#include <stddef.h>

#include "sketch_table.h"
#include "skv_cuda.h"
#include "skv_internal.h"

typedef struct skv_mirror skv_mirror;
void skv_mirror_free(skv_mirror *m);

typedef struct skv_gpu {
    skv_cuda_ctx *ctx;
    float *dq, *dout; /* device: queries and partials of one request */
    size_t dq_cap, dout_cap;
    float *hq; /* host: scaled queries */
    size_t hq_cap;
    skv_cuda_job *jobs;
    size_t jobs_cap;
    skv_entries e; /* host export of one sketch's entries */
    void *stage;   /* pinned arena the request's uploads are queued from */
    size_t stage_cap, stage_used;
} skv_gpu;

/* Set up on the current device; SKV_ERR_UNSUPPORTED / SKV_ERR_DEVICE when there is none. */
subkv_status skv_gpu_init(skv_gpu *g, skv_err *err);
void skv_gpu_fini(skv_gpu *g);

/* Can the GPU answer g queries of this sketch exactly like the CPU contract requires? */
int skv_gpu_eligible(const skv_sketch *s, int g);

/* One attend the GPU should run: the sketch's table entry, its g unscaled query rows, and
 * where its g partials go (host). */
typedef struct skv_gpu_item {
    skv_table_entry *entry;
    const float *q;
    float *out;
} skv_gpu_item;

/* Refresh the items' mirrors and attend them all (every item has the same d and g). */
subkv_status skv_gpu_attend(skv_gpu *g, skv_gpu_item *items, size_t n, int d, int group,
                            skv_err *err);

#endif /* SUBKV_GPU_ATTEND_H */
