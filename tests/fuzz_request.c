/*
 * fuzz_request.c — libFuzzer harness for what the coordinator parses from a client frame,
 * without MPI: subkv__request__unpack (generated protobuf-c), then per body
 *   create                skv_wire_config_from_policy + skv_config_resolve, and the invariants
 *                         that a parsed config survives skv_wire_policy_from_config and back
 *                         unchanged and that resolving a resolved config changes nothing
 *                         (skv_sketch_load relies on it);
 *   append / step / attend  skv_wire_tensor_check against the shape the request implies
 *                         (B = number of seq_ids for step/attend), then skv_wire_tensor_read
 *                         into a buffer sized from the checked shape. A passing check means
 *                         count * element size == the bytes sent, so the buffer is at most
 *                         2x the input (f16 -> f32) and nothing is sized by a claim alone.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skv_internal.h"
#include "skv_wire.h"
#include "subkv.pb-c.h"

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_request: " __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static int config_same(const skv_config *a, const skv_config *b) {
    return a->policy == b->policy && a->head_dim == b->head_dim && a->dtype == b->dtype &&
           a->values == b->values && a->budget_bytes == b->budget_bytes &&
           a->max_tokens == b->max_tokens && a->sinks == b->sinks && a->window == b->window &&
           a->heavy == b->heavy && a->samples == b->samples && a->value_slots == b->value_slots &&
           a->max_clusters == b->max_clusters &&
           memcmp(&a->delta, &b->delta, sizeof a->delta) == 0 && a->seed == b->seed &&
           a->seq_id == b->seq_id && a->layer == b->layer && a->head == b->head &&
           a->sparsity == b->sparsity && a->atoms == b->atoms && a->full_store == b->full_store &&
           a->full_mem == b->full_mem &&
           memcmp(&a->rope_base, &b->rope_base, sizeof a->rope_base) == 0 &&
           strcmp(a->dict_path, b->dict_path) == 0;
}

static void fuzz_create(const Subkv__CreateSequence *m) {
    /* The coordinator rejects a missing or out-of-range shape before parsing the policy. */
    if (!m->shape || m->shape->head_dim < 1 || m->shape->head_dim > SKV_MAX_HEAD_DIM) return;
    const int d = (int)m->shape->head_dim;
    skv_config cfg, back, res, res2;
    skv_err e;
    if (skv_wire_config_from_policy(m->policy, d, &cfg, &e) != SKV_OK) return;

    skv_wire_policy w;
    skv_wire_policy_from_config(&w, &cfg);
    if (skv_wire_config_from_policy(&w.msg, d, &back, &e) != SKV_OK)
        FUZZ_FAIL("a config's own PolicyConfig is rejected: %s", e.msg);
    if (!config_same(&cfg, &back)) FUZZ_FAIL("config -> PolicyConfig -> config changed it");

    if (skv_config_resolve(&cfg, &res, &e) != SKV_OK) return;
    if (skv_config_resolve(&res, &res2, &e) != SKV_OK)
        FUZZ_FAIL("a resolved config does not resolve: %s", e.msg);
    if (!config_same(&res, &res2)) FUZZ_FAIL("resolving a resolved config changed it");
    (void)skv_config_max_bytes(&res);
}

/* Check t against dims; when it passes, read it into a buffer of exactly its element count. */
static void fuzz_tensor(const Subkv__Tensor *t, const uint32_t dims[3], const char *what) {
    skv_err e;
    if (skv_wire_tensor_check(t, dims, 3, what, &e) != SKV_OK) return;
    const size_t count = (size_t)dims[0] * dims[1] * dims[2];
    const size_t esize = t->dtype == SUBKV__DTYPE__DTYPE_F16 ? 2 : 4;
    if (count * esize != t->data.len)
        FUZZ_FAIL("check passed %zu elements for %zu bytes", count, t->data.len);
    float *out = malloc(count ? count * sizeof *out : 1);
    if (!out) return;
    if (skv_wire_tensor_read(t, dims, 3, out, what, &e) == SKV_OK)
        for (size_t i = 0; i < count; i++)
            if (!isfinite(out[i])) FUZZ_FAIL("read returned a non-finite element %zu", i);
    free(out);
}

/* The shape the coordinator would expect, taken from the tensor's own claim where the
 * sequence would supply it (no sequence state here), with B from the request. */
static int dims_of(const Subkv__Tensor *t, uint32_t B, uint32_t dims[3]) {
    if (!t || t->n_shape != 3) return 0;
    dims[0] = B;
    dims[1] = t->shape[1];
    dims[2] = t->shape[2];
    /* The coordinator's expected dims are never 0 (n, B >= 1 are checked first; heads and
     * head_dim come from a validated sequence). skv_wire_tensor_read with a 0 dim passes
     * memcpy a NULL source (UB; reported to the lead), so stay within what it is called with. */
    return dims[0] && dims[1] && dims[2];
}

static void fuzz_tokens(const Subkv__Tensor *q, const Subkv__Tensor *k, const Subkv__Tensor *v,
                        size_t nseq) {
    if (nseq == 0 || nseq > UINT32_MAX) return;
    uint32_t qd[3], kd[3];
    if (!dims_of(q, (uint32_t)nseq, qd)) return;
    fuzz_tensor(q, qd, "q");
    if (dims_of(k, (uint32_t)nseq, kd)) {
        kd[2] = qd[2]; /* k and v share q's head_dim */
        fuzz_tensor(k, kd, "k");
        fuzz_tensor(v, kd, "v");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Subkv__Request *m = subkv__request__unpack(NULL, size, data);
    if (!m) return 0;
    switch (m->body_case) {
    case SUBKV__REQUEST__BODY_CREATE:
        if (m->create) fuzz_create(m->create);
        break;
    case SUBKV__REQUEST__BODY_APPEND:
        if (m->append && m->append->k && m->append->k->n_shape == 3) {
            uint32_t dims[3];
            if (!dims_of(m->append->k, m->append->k->shape[0], dims)) break;
            fuzz_tensor(m->append->k, dims, "k");
            fuzz_tensor(m->append->v, dims, "v");
        }
        break;
    case SUBKV__REQUEST__BODY_STEP:
        if (m->step) fuzz_tokens(m->step->q, m->step->k, m->step->v, m->step->n_seq_ids);
        break;
    case SUBKV__REQUEST__BODY_ATTEND:
        if (m->attend) fuzz_tokens(m->attend->q, NULL, NULL, m->attend->n_seq_ids);
        break;
    default: break;
    }
    /* A message that unpacked must pack again to a buffer no larger than its size bound. */
    const size_t need = subkv__request__get_packed_size(m);
    uint8_t *buf = malloc(need ? need : 1);
    if (buf) {
        if (subkv__request__pack(m, buf) != need) FUZZ_FAIL("pack size disagrees with its bound");
        free(buf);
    }
    subkv__request__free_unpacked(m, NULL);
    return 0;
}
