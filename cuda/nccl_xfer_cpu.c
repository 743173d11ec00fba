/*
 * nccl_xfer_cpu.c — skv_nccl_xfer for builds without NCCL: the stand-in for nccl_xfer.cu.
 * Without NCCL no job ever agrees on the NCCL path (skv_nccl_init fails on every rank), so
 * nothing calls these beyond skv_nccl_xfer_new, which says why.
 */
#ifdef SUBKV_HAVE_NCCL
#error "nccl_xfer_cpu.c is the no-NCCL fallback; with SUBKV_HAVE_NCCL build nccl_xfer.cu instead"
#endif

#include "skv_nccl_xfer.h"

#include "skv_check.h"

subkv_status skv_nccl_xfer_new(void **comm_slot, skv_nccl_xfer **out, skv_err *err) {
    (void)comm_slot;
    if (out) *out = NULL;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL: no NCCL transfers");
}

void skv_nccl_xfer_free(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx) {
    (void)x, (void)poll, (void)ctx;
}

subkv_status skv_nccl_xfer_send(skv_nccl_xfer *x, const skv_xfer_part *parts, int nparts,
                                skv_err *err) {
    (void)x, (void)parts, (void)nparts;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL: no NCCL transfers");
}

subkv_status skv_nccl_xfer_recv(skv_nccl_xfer *x, int peer, float *dst, size_t n,
                                skv_xfer_poll poll, void *ctx, skv_err *err) {
    (void)x, (void)peer, (void)dst, (void)n, (void)poll, (void)ctx;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL: no NCCL transfers");
}

subkv_status skv_nccl_xfer_test(skv_nccl_xfer *x, int *done, skv_err *err) {
    (void)x;
    if (done) *done = 0;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL: no NCCL transfers");
}

subkv_status skv_nccl_xfer_wait(skv_nccl_xfer *x, skv_xfer_poll poll, void *ctx, skv_err *err) {
    (void)x, (void)poll, (void)ctx;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "built without NCCL: no NCCL transfers");
}
