/*
 * skv_wire.h — conversions between the wire schema (subkv.proto) and the sketch library's
 * types, shared by client, coordinator and worker. (This is the one place where proto/
 * reaches into cache/: the policy configuration and the f16 decoding are cache's.)
 */
#ifndef SUBKV_WIRE_H
#define SUBKV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"
#include "subkv.pb-c.h"

/* MPI tags of the coordinator <-> worker protocol. */
enum { SKV_TAG_HEADER = 1, SKV_TAG_PAYLOAD = 2 };

/* The coordinator's identity, MPI_Bcast from rank 0 once at start-up (16 bytes, raw): a
 * worker on the coordinator's host polls for its pid, so it exits once the coordinator is
 * gone instead of waiting forever for the next op. */
typedef struct skv_coord_ident {
    int64_t pid;
    uint64_t host_hash; /* skv_host_hash(MPI_Get_processor_name) */
} skv_coord_ident;

/*
 * Holder for a PolicyConfig built from a skv_config: the message and every wrapper it
 * points to live inside, so nothing is allocated. Valid while the holder lives.
 */
typedef struct skv_wire_policy {
    Subkv__PolicyConfig msg;
    Subkv__OptInt ints[11]; /* 0-8 every policy's; csr: 9 sparsity, 10 atoms */
    Subkv__OptFloat delta;
    Subkv__OptInt rkv_ints[3]; /* refreshkv: partial_tokens, stride, pool_kernel */
    Subkv__OptFloat threshold;
    Subkv__OptFloat rope_base; /* csr */
    char policy[16], dtype[8], values[8], decide[8], full_store[8], full_mem[8];
    char dict_path[SKV_DICT_PATH_MAX];
} skv_wire_policy;

/* Fill w from cfg with every field its policy reads set (the receiver reproduces cfg
 * exactly); refreshkv's and csr's own fields travel only for that policy. */
void skv_wire_policy_from_config(skv_wire_policy *w, const skv_config *cfg);

/* Config from a PolicyConfig: defaults of the named policy at head_dim, then every field
 * present overrides. Unknown names -> SKV_ERR_UNSUPPORTED; out-of-range values ->
 * SKV_ERR_INVALID_ARG (the caller still resolves the config). */
subkv_status skv_wire_config_from_policy(const Subkv__PolicyConfig *p, int head_dim,
                                         skv_config *cfg, skv_err *err);

/* Check a tensor's dims and byte size against shape, without touching its data: call it
 * before allocating anything sized by the shape. */
subkv_status skv_wire_tensor_check(const Subkv__Tensor *t, const uint32_t *shape, int ndims,
                                   const char *what, skv_err *err);

/*
 * Decode a tensor that must have exactly the dims shape[0..ndims) into float32 out
 * (count = product of dims). F16 is converted; the byte size must match the shape.
 * what names the tensor in error messages. Non-finite values -> SKV_ERR_NONFINITE.
 */
subkv_status skv_wire_tensor_read(const Subkv__Tensor *t, const uint32_t *shape, int ndims,
                                  float *out, const char *what, skv_err *err);

/* Point t at float32 data with the given dims (no copy). */
void skv_wire_tensor_view(Subkv__Tensor *t, uint32_t *dims, int ndims, const float *data);

#endif /* SUBKV_WIRE_H */
