/*
 * cuda_emu.h — the CUDA calls of cuda/skv_cuda.h and cuda/skv_csr_cuda.h emulated on the host,
 * for tests of the GPU worker's host side on any machine (tests/test_gpu_csr_host.c,
 * tests/test_gpu_csr_worker_host.c). Include once per test binary, after test_util.h: it
 * DEFINES (not declares) those functions, so the linker takes these instead of the
 * library's (no member of it that defines them is pulled in).
 *
 * "Device" memory is host memory, filled with 0xff bytes (NaN as f16, bf16 and f32) when
 * allocated so that a row or code the worker forgot to upload poisons the answer; copies are
 * immediate (the stream order is then trivially kept); the two attends are float64
 * references with the kernels' contracts (argument checks, partials {m, l, o}, empty jobs,
 * out-of-range atom indices add nothing); the encode is skv_mp_encode per token (the
 * kernel's codes are bit-identical to it: tests/test_cuda_csr.c). The context counts the
 * attend and encode launches, g_emu_encoded the tokens encoded.
 */
#ifndef SUBKV_CUDA_EMU_H
#define SUBKV_CUDA_EMU_H

#include "csr_dict.h"
#include "csr_ref.h"
#include "skv_csr_cuda.h"
#include "skv_cuda.h"

/* Tokens the emulated encode has coded (every context): a test's proof that the GPU path
 * coded them. */
static uint64_t g_emu_encoded;

struct skv_cuda_ctx {
    int launches; /* attends launched (exact and CSR) */
    int encodes;  /* CSR encodes launched */
};

#define EMU_NONE(err) skv_set_error((err), SKV_ERR_UNSUPPORTED, "not in the host emulation")

subkv_status skv_cuda_ctx_create(skv_cuda_ctx **out, skv_err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? SKV_OK : skv_set_error(err, SKV_ERR_NOMEM, "emulated context");
}
void skv_cuda_ctx_destroy(skv_cuda_ctx *c) { free(c); }
void *skv_cuda_ctx_stream(skv_cuda_ctx *c) { return c; }
subkv_status skv_cuda_sync(skv_cuda_ctx *c, skv_err *err) {
    (void)c, (void)err;
    return SKV_OK;
}
subkv_status skv_cuda_malloc(void **p, size_t bytes, skv_err *err) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return skv_set_error(err, SKV_ERR_NOMEM, "emulated malloc");
    memset(*p, 0xff, bytes);
    return SKV_OK;
}
void skv_cuda_free(void *p) { free(p); }
subkv_status skv_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, skv_err *err) {
    (void)err;
    *free_bytes = *total_bytes = (size_t)1 << 30;
    return SKV_OK;
}
subkv_status skv_cuda_pool_reserve(skv_cuda_ctx *c, size_t bytes, skv_err *err) {
    (void)c, (void)bytes, (void)err;
    return SKV_OK;
}
subkv_status skv_cuda_pool_alloc(skv_cuda_ctx *c, void **p, size_t bytes, skv_err *err) {
    (void)c;
    return skv_cuda_malloc(p, bytes, err);
}
void skv_cuda_pool_free(skv_cuda_ctx *c, void *p) { (void)c, free(p); }
size_t skv_cuda_pool_reserved(const skv_cuda_ctx *c) { return (void)c, 0; }
subkv_status skv_cuda_host_alloc(void **p, size_t bytes, skv_err *err) {
    return skv_cuda_malloc(p, bytes, err);
}
void skv_cuda_host_free(void *p) { free(p); }
static subkv_status emu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
    return SKV_OK;
}
subkv_status skv_cuda_upload(void *dst, const void *src, size_t bytes, skv_err *err) {
    return (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_download(void *dst, const void *src, size_t bytes, skv_err *err) {
    return (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_copy(void *dst, const void *src, size_t bytes, skv_err *err) {
    return (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_upload_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                   skv_err *err) {
    return (void)c, (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_download_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                     skv_err *err) {
    return (void)c, (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_copy_async(skv_cuda_ctx *c, void *dst, const void *src, size_t bytes,
                                 skv_err *err) {
    return (void)c, (void)err, emu_copy(dst, src, bytes);
}
subkv_status skv_cuda_memset_async(skv_cuda_ctx *c, void *p, int value, size_t bytes,
                                   skv_err *err) {
    (void)c, (void)err;
    memset(p, value, bytes);
    return SKV_OK;
}
subkv_status skv_cuda_fill_random(void *p, size_t n, skv_dtype dtype, uint64_t seed, float scale,
                                  skv_err *err) {
    (void)p, (void)n, (void)dtype, (void)seed, (void)scale;
    return EMU_NONE(err);
}
subkv_status skv_cuda_copy_bandwidth(skv_cuda_ctx *c, size_t bytes, double *gbps, skv_err *err) {
    (void)c, (void)bytes, (void)gbps;
    return EMU_NONE(err);
}
subkv_status skv_cuda_time_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d,
                                  int g, skv_dtype dtype, uint64_t chunk, int warmup, int iters,
                                  float *median_ms, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)dtype, (void)chunk, (void)warmup;
    (void)iters, (void)median_ms;
    return EMU_NONE(err);
}

/* One query's partial into out (d + 2 floats). */
static void emu_finish(const csr_ref_acc *a, int d, float *out) {
    out[0] = (float)a->m;
    out[1] = (float)a->l;
    for (int j = 0; j < d; j++) out[2 + j] = (float)a->o[j];
}

subkv_status skv_cuda_attend(skv_cuda_ctx *c, const skv_cuda_job *jobs, int njobs, int d, int g,
                             skv_dtype dtype, uint64_t chunk, skv_err *err) {
    (void)chunk;
    if (!c || !jobs || njobs < 1) return skv_set_error(err, SKV_ERR_INVALID_ARG, "no jobs");
    if ((d != 64 && d != 128) || (g != 1 && g != 2 && g != 3 && g != 4 && g != 8) ||
        (dtype != SKV_DTYPE_F16 && dtype != SKV_DTYPE_BF16))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "emulated attend: d %d g %d", d, g);
    c->launches++;
    csr_ref_acc *a = tu_malloc(sizeof *a);
    float k[128], v[128];
    for (int j = 0; j < njobs; j++) {
        const skv_cuda_job *jb = &jobs[j];
        const uint64_t n = jb->dn && *jb->dn < jb->n ? *jb->dn : jb->n;
        const skv_rows K = {dtype, d, n, (void *)jb->k}, V = {dtype, d, n, (void *)jb->v};
        for (int h = 0; h < g; h++) {
            a->m = -INFINITY, a->l = 0.0;
            for (int i = 0; i < d; i++) a->o[i] = 0.0;
            for (uint64_t t = 0; t < n; t++) {
                assert_true(!jb->a && !jb->b && !jb->nv); /* csr and exact: all-ones entries */
                skv_rows_get(&K, t, k), skv_rows_get(&V, t, v);
                csr_ref_add(a, jb->q + (size_t)h * d, k, v, d);
            }
            emu_finish(a, d, jb->out + (size_t)h * (d + 2));
        }
    }
    free(a);
    return SKV_OK;
}

/* k = sum of the in-range pairs' c a over table tab of rows of dim (float32, as decoded). */
static void emu_decode(const float *tab, int dim, int atoms, const uint16_t *ix, const uint16_t *cf,
                       int np, float *x) {
    for (int c = 0; c < dim; c++) x[c] = 0.0f;
    for (int i = 0; i < np; i++)
        if (ix[i] < atoms)
            for (int c = 0; c < dim; c++)
                x[c] += skv_f16_to_f32(cf[i]) * tab[(size_t)ix[i] * dim + c];
}

subkv_status skv_csr_cuda_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs, int d,
                                 int g, int s, int atoms, float rope_base, uint64_t chunk,
                                 skv_err *err) {
    (void)chunk;
    if (!c || !jobs || njobs < 1 || njobs > 65535)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "emulated CSR attend: %d jobs", njobs);
    if (rope_base != 0.0f || (d != 64 && d != 128) || g < 1 || g > 8 || s < 2 || s > d ||
        atoms < 1 || atoms > SKV_CSR_CUDA_MAX_ATOMS)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "emulated CSR attend: bad shape");
    c->launches++;
    const int h = d / 2, s0 = (s + 1) / 2, s1 = s / 2;
    csr_ref_acc *a = tu_malloc(sizeof *a);
    float k[128], v[128];
    for (int j = 0; j < njobs; j++) {
        const skv_csr_cuda_job *jb = &jobs[j];
        if (!jb->q || !jb->out ||
            (jb->n && (!jb->idx || !jb->coef || !jb->dk || !jb->dv0 || !jb->dv1)))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "emulated CSR attend: NULL array");
        for (int hq = 0; hq < g; hq++) {
            a->m = -INFINITY, a->l = 0.0;
            for (int i = 0; i < d; i++) a->o[i] = 0.0;
            for (uint64_t t = 0; t < jb->n; t++) {
                const uint16_t *ix = jb->idx + t * 2 * s, *cf = jb->coef + t * 2 * s;
                emu_decode(jb->dk, d, atoms, ix, cf, s, k);
                emu_decode(jb->dv0, h, atoms, ix + s, cf + s, s0, v);
                emu_decode(jb->dv1, h, atoms, ix + s + s0, cf + s + s0, s1, v + h);
                csr_ref_add(a, jb->q + (size_t)hq * d, k, v, d);
            }
            emu_finish(a, d, jb->out + (size_t)hq * (d + 2));
        }
    }
    free(a);
    return SKV_OK;
}

subkv_status skv_csr_cuda_time_attend(skv_cuda_ctx *c, const skv_csr_cuda_job *jobs, int njobs,
                                      int d, int g, int s, int atoms, uint64_t chunk, int warmup,
                                      int iters, float *median_ms, skv_err *err) {
    (void)c, (void)jobs, (void)njobs, (void)d, (void)g, (void)s, (void)atoms, (void)chunk;
    (void)warmup, (void)iters, (void)median_ms;
    return EMU_NONE(err);
}
subkv_status skv_csr_cuda_fill_random_codes(uint16_t *idx, uint16_t *coef, size_t rows, int s,
                                            int atoms, uint64_t seed, float scale, skv_err *err) {
    (void)idx, (void)coef, (void)rows, (void)s, (void)atoms, (void)seed, (void)scale;
    return EMU_NONE(err);
}
/* The encode as its contract says: skv_mp_encode of each token (the kernel's codes are
 * bit-identical to it, tests/test_cuda_csr.c), into idx/coef and the optional second copy. */
subkv_status skv_csr_cuda_encode(skv_cuda_ctx *c, const skv_csr_cuda_enc_job *jobs, int njobs,
                                 int d, int s, int atoms, skv_err *err) {
    if (!c || !jobs || njobs < 1 || njobs > 65535)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "emulated CSR encode: %d jobs", njobs);
    if ((d != 64 && d != 128) || s < 2 || s > d || atoms < 1 || atoms > 65536)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "emulated CSR encode: bad shape");
    for (int j = 0; j < njobs; j++) {
        const skv_csr_cuda_enc_job *jb = &jobs[j];
        if (jb->n && (!jb->k || !jb->v || !jb->dk || !jb->dv0 || !jb->dv1 || !jb->idx || !jb->coef))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "emulated CSR encode: NULL array");
        if (!jb->idx2 != !jb->coef2)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "emulated CSR encode: idx2 xor coef2");
    }
    c->encodes++;
    const int h = d / 2, s0 = (s + 1) / 2, row = 2 * s;
    for (int j = 0; j < njobs; j++) {
        const skv_csr_cuda_enc_job *jb = &jobs[j];
        g_emu_encoded += jb->n;
        for (uint64_t t = 0; t < jb->n; t++) {
            const float *k = jb->k + t * d, *v = jb->v + t * d;
            uint16_t *ix = jb->idx + t * row, *cf = jb->coef + t * row;
            skv_mp_encode(jb->dk, atoms, d, k, s, ix, cf, NULL);
            skv_mp_encode(jb->dv0, atoms, h, v, s0, ix + s, cf + s, NULL);
            skv_mp_encode(jb->dv1, atoms, h, v + h, s / 2, ix + s + s0, cf + s + s0, NULL);
            if (jb->idx2) {
                memcpy(jb->idx2 + t * row, ix, (size_t)row * sizeof(uint16_t));
                memcpy(jb->coef2 + t * row, cf, (size_t)row * sizeof(uint16_t));
            }
        }
    }
    return SKV_OK;
}

#endif /* SUBKV_CUDA_EMU_H */
