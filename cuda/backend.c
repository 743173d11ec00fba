/*
 * backend.c — backend-independent helpers for skv_backend.h (compiled in every build).
 */
#include "skv_backend.h"

#include <stdio.h>

void skv_backend_describe(const skv_backend_info *info, char *buf, size_t n) {
    if (buf == NULL || n == 0) return;
    if (info == NULL) {
        snprintf(buf, n, "unknown (no backend info)");
        return;
    }
    if (info->kind == SKV_BACKEND_CUDA) {
        double gib = (double)info->mem_bytes / (1024.0 * 1024.0 * 1024.0);
        snprintf(buf, n, "cuda:%d (%s, %.1f GiB, sm_%d%d)", info->device, info->name, gib,
                 info->cc_major, info->cc_minor);
    } else if (info->reason[0] != '\0') {
        snprintf(buf, n, "cpu (fallback: %s)", info->reason);
    } else {
        snprintf(buf, n, "cpu");
    }
}
