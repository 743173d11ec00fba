/* status.c — status codes, enum names, error messages. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "skv_internal.h"

const char *subkv_status_name(subkv_status s) {
    static const char *const names[SKV_STATUS_COUNT] = {
        [SKV_OK] = "SKV_OK",
        [SKV_ERR_INVALID_ARG] = "SKV_ERR_INVALID_ARG",
        [SKV_ERR_SHAPE] = "SKV_ERR_SHAPE",
        [SKV_ERR_EMPTY] = "SKV_ERR_EMPTY",
        [SKV_ERR_NONFINITE] = "SKV_ERR_NONFINITE",
        [SKV_ERR_BUDGET] = "SKV_ERR_BUDGET",
        [SKV_ERR_NOMEM] = "SKV_ERR_NOMEM",
        [SKV_ERR_CORRUPT] = "SKV_ERR_CORRUPT",
        [SKV_ERR_TRUNCATED] = "SKV_ERR_TRUNCATED",
        [SKV_ERR_VERSION] = "SKV_ERR_VERSION",
        [SKV_ERR_UNSUPPORTED] = "SKV_ERR_UNSUPPORTED",
        [SKV_ERR_NOT_FOUND] = "SKV_ERR_NOT_FOUND",
        [SKV_ERR_IO] = "SKV_ERR_IO",
        [SKV_ERR_PROTOCOL] = "SKV_ERR_PROTOCOL",
        [SKV_ERR_INTERNAL] = "SKV_ERR_INTERNAL",
        [SKV_ERR_DEVICE] = "SKV_ERR_DEVICE",
        [SKV_ERR_AUTH] = "SKV_ERR_AUTH",
        [SKV_ERR_WORKER_LOST] = "SKV_ERR_WORKER_LOST",
        [SKV_ERR_LIMIT] = "SKV_ERR_LIMIT",
    };
    if ((unsigned)s >= SKV_STATUS_COUNT) return "SKV_ERR_UNKNOWN";
    return names[s];
}

subkv_status skv_set_error(skv_err *err, subkv_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int parse_name(const char *name, const char *const *names, int count) {
    if (!name) return -1;
    for (int i = 0; i < count; i++) /* a table may have gaps (ids not built in) */
        if (names[i] && strcmp(name, names[i]) == 0) return i;
    return -1;
}

/* one line per policy (designated: helpers add theirs in parallel; gaps read "unknown") */
// clang-format off
static const char *const policy_names[SKV_POLICY_COUNT] = {
    [SKV_POLICY_EXACT] = "exact",
    [SKV_POLICY_SINKWIN] = "sinkwin",
    [SKV_POLICY_H2O] = "h2o",
    [SKV_POLICY_SUBGEN] = "subgen",
    [SKV_POLICY_REFRESHKV] = "refreshkv",
    [SKV_POLICY_CSR] = "csr",
};
// clang-format on
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const values_names[] = {"l2", "cluster"};
static const char *const decide_names[] = {"layer", "group"};
static const char *const full_store_names[] = {"exact", "subgen", "csr"};
static const char *const full_mem_names[] = {"host", "device"};

const char *skv_policy_name(skv_policy_id p) {
    return (unsigned)p < SKV_POLICY_COUNT && policy_names[p] ? policy_names[p] : "unknown";
}
int skv_policy_parse(const char *name) { return parse_name(name, policy_names, SKV_POLICY_COUNT); }
const char *skv_dtype_name(skv_dtype t) { return (unsigned)t < 3 ? dtype_names[t] : "unknown"; }
int skv_dtype_parse(const char *name) { return parse_name(name, dtype_names, 3); }
size_t skv_dtype_size(skv_dtype t) { return t == SKV_DTYPE_F32 ? 4 : 2; }
const char *skv_values_name(skv_values_mode v) {
    return (unsigned)v < 2 ? values_names[v] : "unknown";
}
int skv_values_parse(const char *name) { return parse_name(name, values_names, 2); }
const char *skv_decide_name(skv_decide_mode m) {
    return (unsigned)m < 2 ? decide_names[m] : "unknown";
}
int skv_decide_parse(const char *name) { return parse_name(name, decide_names, 2); }
const char *skv_full_store_name(skv_full_store f) {
    return (unsigned)f < 3 ? full_store_names[f] : "unknown";
}
int skv_full_store_parse(const char *name) { return parse_name(name, full_store_names, 3); }
const char *skv_full_mem_name(skv_full_mem m) {
    return (unsigned)m < 2 ? full_mem_names[m] : "unknown";
}
int skv_full_mem_parse(const char *name) { return parse_name(name, full_mem_names, 2); }
