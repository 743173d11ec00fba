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

/*
 * Holder for a PolicyConfig built from a skv_config: the message and every wrapper it
 * points to live inside, so nothing is allocated. Valid while the holder lives.
 */
typedef struct skv_wire_policy {
    Subkv__PolicyConfig msg;
    Subkv__OptInt ints[11];
    Subkv__OptFloat delta;
    Subkv__OptInt rkv_ints[3]; /* refreshkv: partial_tokens, stride, pool_kernel */
    Subkv__OptFloat threshold;
    char policy[16], dtype[8], values[8], decide[8], full_store[8];
} skv_wire_policy;

/* Fill w from cfg with every field set (the receiver reproduces cfg exactly). */
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
