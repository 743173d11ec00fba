/* skv_wire.c — see skv_wire.h. */
#include "skv_wire.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "csr_dict.h"
#include "skv_internal.h"

enum { W_BUDGET, W_MAXTOK, W_SINKS, W_WINDOW, W_HEAVY, W_SAMPLES, W_SLOTS, W_CLUSTERS, W_SEED };

void skv_wire_policy_from_config(skv_wire_policy *w, const skv_config *cfg) {
    subkv__policy_config__init(&w->msg);
    for (int i = 0; i < 11; i++) subkv__opt_int__init(&w->ints[i]);
    subkv__opt_float__init(&w->delta);
    snprintf(w->policy, sizeof w->policy, "%s", skv_policy_name(cfg->policy));
    snprintf(w->dtype, sizeof w->dtype, "%s", skv_dtype_name(cfg->dtype));
    snprintf(w->values, sizeof w->values, "%s", skv_values_name(cfg->values));
    w->msg.policy = w->policy;
    w->msg.dtype = w->dtype;
    w->msg.values = w->values;
    const int64_t v[9] = {(int64_t)cfg->budget_bytes,
                          (int64_t)cfg->max_tokens,
                          cfg->sinks,
                          cfg->window,
                          cfg->heavy,
                          cfg->samples,
                          cfg->value_slots,
                          cfg->max_clusters,
                          (int64_t)cfg->seed};
    Subkv__OptInt **dst[9] = {&w->msg.budget_bytes, &w->msg.max_tokens,   &w->msg.sinks,
                              &w->msg.window,       &w->msg.heavy,        &w->msg.samples,
                              &w->msg.value_slots,  &w->msg.max_clusters, &w->msg.seed};
    for (int i = 0; i < 9; i++) {
        w->ints[i].v = v[i];
        *dst[i] = &w->ints[i];
    }
    w->delta.v = cfg->delta;
    w->msg.delta = &w->delta;
    if (cfg->policy == SKV_POLICY_REFRESHKV) { /* others' messages stay as they were */
        const int rv[3] = {cfg->partial_tokens, cfg->stride, cfg->pool_kernel};
        Subkv__OptInt **rdst[3] = {&w->msg.partial_tokens, &w->msg.stride, &w->msg.pool_kernel};
        for (int i = 0; i < 3; i++) {
            subkv__opt_int__init(&w->rkv_ints[i]);
            w->rkv_ints[i].v = rv[i];
            *rdst[i] = &w->rkv_ints[i];
        }
        subkv__opt_float__init(&w->threshold);
        w->threshold.v = cfg->threshold;
        w->msg.threshold = &w->threshold;
        snprintf(w->decide, sizeof w->decide, "%s", skv_decide_name(cfg->decide));
        w->msg.decide = w->decide;
        snprintf(w->full_store, sizeof w->full_store, "%s", skv_full_store_name(cfg->full_store));
        w->msg.full_store = w->full_store;
        snprintf(w->full_mem, sizeof w->full_mem, "%s", skv_full_mem_name(cfg->full_mem));
        w->msg.full_mem = w->full_mem;
    }
    if (skv_config_needs_dict(cfg)) { /* likewise: fields 18-21 only for csr (and a refreshkv
                                       * csr store) */
        w->ints[9].v = cfg->sparsity;
        w->ints[10].v = cfg->atoms;
        w->msg.sparsity = &w->ints[9];
        w->msg.atoms = &w->ints[10];
        subkv__opt_float__init(&w->rope_base);
        w->rope_base.v = cfg->rope_base;
        w->msg.rope_base = &w->rope_base;
        snprintf(w->dict_path, sizeof w->dict_path, "%s", cfg->dict_path);
        w->msg.dict_path = w->dict_path;
    }
}

static subkv_status int_field(const Subkv__OptInt *o, int *dst, const char *name, skv_err *err) {
    if (!o) return SKV_OK;
    if (o->v < 0 || o->v > INT32_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "policy field %s = %lld out of range", name,
                             (long long)o->v);
    *dst = (int)o->v;
    return SKV_OK;
}

subkv_status skv_wire_config_from_policy(const Subkv__PolicyConfig *p, int head_dim,
                                         skv_config *cfg, skv_err *err) {
    if (!p) return skv_set_error(err, SKV_ERR_INVALID_ARG, "missing policy");
    int pol = skv_policy_parse(p->policy && p->policy[0] ? p->policy : "exact");
    if (pol < 0) return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown policy '%s'", p->policy);
    skv_config_default(cfg, (skv_policy_id)pol, head_dim);
    if (p->dtype && p->dtype[0]) {
        int t = skv_dtype_parse(p->dtype);
        if (t < 0) return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown dtype '%s'", p->dtype);
        cfg->dtype = (skv_dtype)t;
    }
    if (p->values && p->values[0]) {
        int v = skv_values_parse(p->values);
        if (v < 0)
            return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown values mode '%s'", p->values);
        cfg->values = (skv_values_mode)v;
    }
    if (p->budget_bytes) {
        if (p->budget_bytes->v < 0)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "negative budget_bytes");
        cfg->budget_bytes = (size_t)p->budget_bytes->v;
    }
    if (p->max_tokens) {
        if (p->max_tokens->v < 0)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "negative max_tokens");
        cfg->max_tokens = (uint64_t)p->max_tokens->v;
    }
    SKV_CHECK(int_field(p->sinks, &cfg->sinks, "sinks", err));
    SKV_CHECK(int_field(p->window, &cfg->window, "window", err));
    SKV_CHECK(int_field(p->heavy, &cfg->heavy, "heavy", err));
    SKV_CHECK(int_field(p->samples, &cfg->samples, "samples", err));
    SKV_CHECK(int_field(p->value_slots, &cfg->value_slots, "value_slots", err));
    SKV_CHECK(int_field(p->max_clusters, &cfg->max_clusters, "max_clusters", err));
    if (p->delta) {
        if (!isfinite(p->delta->v) || p->delta->v < 0.0f)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "delta must be finite and >= 0");
        cfg->delta = p->delta->v;
    }
    if (p->seed) cfg->seed = (uint64_t)p->seed->v;
    /* Policy-specific fields count only for their policy (the sender writes them only
     * there): a refreshkv field in a csr config, say, is ignored, so a config and its wire
     * form always say the same. */
    if (cfg->policy == SKV_POLICY_REFRESHKV) {
        SKV_CHECK(int_field(p->partial_tokens, &cfg->partial_tokens, "partial_tokens", err));
        SKV_CHECK(int_field(p->stride, &cfg->stride, "stride", err));
        SKV_CHECK(int_field(p->pool_kernel, &cfg->pool_kernel, "pool_kernel", err));
        if (p->threshold) {
            if (!isfinite(p->threshold->v))
                return skv_set_error(err, SKV_ERR_INVALID_ARG, "threshold must be finite");
            cfg->threshold = p->threshold->v;
        }
        if (p->decide && p->decide[0]) {
            int m = skv_decide_parse(p->decide);
            if (m < 0)
                return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown decide mode '%s'",
                                     p->decide);
            cfg->decide = (skv_decide_mode)m;
        }
        if (p->full_store && p->full_store[0]) {
            int f = skv_full_store_parse(p->full_store);
            if (f < 0)
                return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown full store '%s'",
                                     p->full_store);
            cfg->full_store = (skv_full_store)f;
        }
        if (p->full_mem && p->full_mem[0]) {
            int f = skv_full_mem_parse(p->full_mem);
            if (f < 0)
                return skv_set_error(err, SKV_ERR_UNSUPPORTED, "unknown full_mem '%s'",
                                     p->full_mem);
            cfg->full_mem = (skv_full_mem)f;
        }
    }
    if (skv_config_needs_dict(cfg)) { /* after full_store: refreshkv's csr store too */
        SKV_CHECK(int_field(p->sparsity, &cfg->sparsity, "sparsity", err));
        SKV_CHECK(int_field(p->atoms, &cfg->atoms, "atoms", err));
        if (p->rope_base) {
            if (!isfinite(p->rope_base->v) || p->rope_base->v < 0.0f)
                return skv_set_error(err, SKV_ERR_INVALID_ARG, "rope_base must be finite and >= 0");
            cfg->rope_base = p->rope_base->v;
        }
        if (p->dict_path && p->dict_path[0]) {
            if (strlen(p->dict_path) >= sizeof cfg->dict_path)
                return skv_set_error(err, SKV_ERR_INVALID_ARG, "dict_path longer than %d bytes",
                                     SKV_DICT_PATH_MAX - 1);
            snprintf(cfg->dict_path, sizeof cfg->dict_path, "%s", p->dict_path);
        }
    }
    return SKV_OK;
}

subkv_status skv_wire_tensor_check(const Subkv__Tensor *t, const uint32_t *shape, int ndims,
                                   const char *what, skv_err *err) {
    if (!t) return skv_set_error(err, SKV_ERR_SHAPE, "tensor %s missing", what);
    if ((int)t->n_shape != ndims)
        return skv_set_error(err, SKV_ERR_SHAPE, "tensor %s has %zu dims, expected %d", what,
                             t->n_shape, ndims);
    size_t count = 1;
    for (int i = 0; i < ndims; i++) {
        if (t->shape[i] != shape[i])
            return skv_set_error(err, SKV_ERR_SHAPE, "tensor %s dim %d is %u, expected %u", what, i,
                                 t->shape[i], shape[i]);
        if (shape[i] && count > SIZE_MAX / 4 / shape[i])
            return skv_set_error(err, SKV_ERR_SHAPE, "tensor %s shape overflows", what);
        count *= shape[i];
    }
    if (t->dtype != SUBKV__DTYPE__DTYPE_F16 && t->dtype != SUBKV__DTYPE__DTYPE_F32)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "tensor %s: unknown dtype %d", what,
                             (int)t->dtype);
    size_t esize = t->dtype == SUBKV__DTYPE__DTYPE_F16 ? 2 : 4;
    if (t->data.len != count * esize)
        return skv_set_error(err, SKV_ERR_SHAPE, "tensor %s holds %zu bytes, shape needs %zu", what,
                             t->data.len, count * esize);
    return SKV_OK;
}

subkv_status skv_wire_tensor_read(const Subkv__Tensor *t, const uint32_t *shape, int ndims,
                                  float *out, const char *what, skv_err *err) {
    SKV_CHECK(skv_wire_tensor_check(t, shape, ndims, what, err));
    size_t count = 1;
    for (int i = 0; i < ndims; i++) count *= shape[i];
    const size_t esize = t->dtype == SUBKV__DTYPE__DTYPE_F16 ? 2 : 4;
    if (count == 0) return SKV_OK; /* a zero-sized tensor: nothing to copy (data may be NULL) */
    if (esize == 4) {
        memcpy(out, t->data.data, count * 4);
    } else {
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, t->data.data + 2 * i, 2);
            out[i] = skv_f16_to_f32(h);
        }
    }
    for (size_t i = 0; i < count; i++)
        if (!isfinite(out[i]))
            return skv_set_error(err, SKV_ERR_NONFINITE, "tensor %s[%zu] is %s", what, i,
                                 isnan(out[i]) ? "NaN" : "Inf");
    return SKV_OK;
}

void skv_wire_tensor_view(Subkv__Tensor *t, uint32_t *dims, int ndims, const float *data) {
    subkv__tensor__init(t);
    size_t count = 1;
    for (int i = 0; i < ndims; i++) count *= dims[i];
    t->n_shape = (size_t)ndims;
    t->shape = dims;
    t->dtype = SUBKV__DTYPE__DTYPE_F32;
    t->data.len = count * sizeof(float);
    t->data.data = (uint8_t *)(uintptr_t)data;
}
