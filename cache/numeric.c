/*
 * numeric.c — half conversions, typed row stores, the weighted-entry accumulator and
 * the partial algebra. Scores are float dot products (8 lanes); softmax sums and the
 * output accumulate in double on the CPU.
 */
#include <float.h>

#include "skv_internal.h"

/* ---- float16 <-> float32, round to nearest even ---------------------------------------- */

uint16_t skv_f32_to_f16(float f) { return skv_hd_f32_to_f16(f); }

float skv_f16_to_f32(uint16_t h) { return skv_hd_f16_to_f32(h); }

/* ---- row stores ---------------------------------------------------------------------- */

void skv_rows_put(skv_rows *r, size_t i, const float *x) {
    const int d = r->d;
    switch (r->dtype) {
    case SKV_DTYPE_F32:
        memcpy((float *)r->data + i * (size_t)d, x, (size_t)d * sizeof(float));
        break;
    case SKV_DTYPE_F16: {
        uint16_t *p = (uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) p[j] = skv_f32_to_f16(x[j]);
        break;
    }
    case SKV_DTYPE_BF16: {
        uint16_t *p = (uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) p[j] = skv_f32_to_bf16(x[j]);
        break;
    }
    }
}

void skv_rows_get(const skv_rows *r, size_t i, float *x) {
    const int d = r->d;
    switch (r->dtype) {
    case SKV_DTYPE_F32:
        memcpy(x, (const float *)r->data + i * (size_t)d, (size_t)d * sizeof(float));
        break;
    case SKV_DTYPE_F16: {
        const uint16_t *p = (const uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) x[j] = skv_f16_to_f32(p[j]);
        break;
    }
    case SKV_DTYPE_BF16: {
        const uint16_t *p = (const uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) x[j] = skv_bf16_to_f32(p[j]);
        break;
    }
    }
}

void skv_rows_copy(skv_rows *dst, size_t i, const skv_rows *src, size_t j) {
    size_t rb = skv_rows_row_bytes(src);
    memcpy((char *)dst->data + i * rb, (const char *)src->data + j * rb, rb);
}

#define SKV_LANES 8
#define SKV_DOT_BODY(LOAD)                                                                         \
    do {                                                                                           \
        float lane[SKV_LANES] = {0};                                                               \
        int j = 0;                                                                                 \
        for (; j + SKV_LANES <= d; j += SKV_LANES)                                                 \
            for (int k = 0; k < SKV_LANES; k++) lane[k] += LOAD(p[j + k]) * q[j + k];              \
        for (; j < d; j++) lane[0] += LOAD(p[j]) * q[j];                                           \
        float acc = 0.0f;                                                                          \
        for (int k = 0; k < SKV_LANES; k++) acc += lane[k];                                        \
        out[i] = acc;                                                                              \
    } while (0)
#define SKV_LOAD_F32(x) (x)

void skv_rows_dot_block(const skv_rows *r, size_t start, size_t count, const float *q, float *out) {
    const int d = r->d;
    switch (r->dtype) {
    case SKV_DTYPE_F32:
        for (size_t i = 0; i < count; i++) {
            const float *p = (const float *)r->data + (start + i) * (size_t)d;
            SKV_DOT_BODY(SKV_LOAD_F32);
        }
        break;
    case SKV_DTYPE_F16:
        for (size_t i = 0; i < count; i++) {
            const uint16_t *p = (const uint16_t *)r->data + (start + i) * (size_t)d;
            SKV_DOT_BODY(skv_f16_to_f32);
        }
        break;
    case SKV_DTYPE_BF16:
        for (size_t i = 0; i < count; i++) {
            const uint16_t *p = (const uint16_t *)r->data + (start + i) * (size_t)d;
            SKV_DOT_BODY(skv_bf16_to_f32);
        }
        break;
    }
}

float skv_rows_dot(const skv_rows *r, size_t i, const float *q) {
    float s;
    skv_rows_dot_block(r, i, 1, q, &s);
    return s;
}

void skv_rows_axpy(const skv_rows *r, size_t i, double w, double *acc) {
    const int d = r->d;
    switch (r->dtype) {
    case SKV_DTYPE_F32: {
        const float *p = (const float *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) acc[j] += w * p[j];
        break;
    }
    case SKV_DTYPE_F16: {
        const uint16_t *p = (const uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) acc[j] += w * skv_f16_to_f32(p[j]);
        break;
    }
    case SKV_DTYPE_BF16: {
        const uint16_t *p = (const uint16_t *)r->data + i * (size_t)d;
        for (int j = 0; j < d; j++) acc[j] += w * skv_bf16_to_f32(p[j]);
        break;
    }
    }
}

bool skv_rows_finite(const skv_rows *r, size_t nrows) {
    float x[1];
    const size_t total = nrows * (size_t)r->d;
    for (size_t e = 0; e < total; e++) {
        switch (r->dtype) {
        case SKV_DTYPE_F32: x[0] = ((const float *)r->data)[e]; break;
        case SKV_DTYPE_F16: x[0] = skv_f16_to_f32(((const uint16_t *)r->data)[e]); break;
        case SKV_DTYPE_BF16: x[0] = skv_bf16_to_f32(((const uint16_t *)r->data)[e]); break;
        }
        if (!isfinite(x[0])) return false;
    }
    return true;
}

/* ---- accumulator --------------------------------------------------------------------- */

void skv_acc_init(skv_acc *acc, int d, double *o_storage) {
    acc->d = d;
    acc->m = -INFINITY;
    acc->l = 0.0;
    acc->o = o_storage;
    for (int j = 0; j < d; j++) acc->o[j] = 0.0;
}

enum { SKV_ACC_BLOCK = 128 };

void skv_acc_add_rows(skv_acc *acc, const float *q, const skv_rows *K, const skv_rows *V,
                      size_t start, size_t count, const float *a_w, double a, const float *b_w,
                      double b) {
    float score[SKV_ACC_BLOCK];
    const int d = acc->d;
    for (size_t blk = 0; blk < count; blk += SKV_ACC_BLOCK) {
        size_t nb = count - blk < SKV_ACC_BLOCK ? count - blk : SKV_ACC_BLOCK;
        double bm = -INFINITY;
        skv_rows_dot_block(K, start + blk, nb, q, score);
        for (size_t i = 0; i < nb; i++)
            if (score[i] > bm) bm = score[i];
        if (bm > acc->m) { /* rescale what we have to the new maximum */
            double c = exp(acc->m - bm);
            acc->l *= c;
            for (int j = 0; j < d; j++) acc->o[j] *= c;
            acc->m = bm;
        }
        for (size_t i = 0; i < nb; i++) {
            size_t row = start + blk + i;
            double e = exp((double)score[i] - acc->m);
            double ai = a_w ? a * a_w[row] : a;
            double bi = b_w ? b * b_w[row] : b;
            acc->l += ai * e;
            if (V && bi != 0.0) skv_rows_axpy(V, row, bi * e, acc->o);
        }
    }
}

void skv_acc_finish(const skv_acc *acc, skv_partial *out) {
    const int d = acc->d;
    if (acc->m == -INFINITY) {
        skv_partial_init(out, d);
        return;
    }
    float mf = (float)acc->m;
    double c = exp(acc->m - (double)mf); /* re-express relative to the float max */
    out->m = mf;
    out->l = (float)(acc->l * c);
    for (int j = 0; j < d; j++) out->o[j] = (float)(acc->o[j] * c);
}

/* ---- partials ------------------------------------------------------------------------ */

void skv_partial_init(skv_partial *p, int d) {
    p->m = -INFINITY;
    p->l = 0.0f;
    for (int j = 0; j < d; j++) p->o[j] = 0.0f;
}

void skv_partial_merge(skv_partial *dst, const skv_partial *src, int d) {
    if (src->m == -INFINITY) return;
    if (dst->m == -INFINITY) {
        memcpy(dst, src, skv_partial_stride(d));
        return;
    }
    float m = dst->m > src->m ? dst->m : src->m;
    float c1 = expf(dst->m - m), c2 = expf(src->m - m);
    dst->l = dst->l * c1 + src->l * c2;
    for (int j = 0; j < d; j++) dst->o[j] = dst->o[j] * c1 + src->o[j] * c2;
    dst->m = m;
}

void skv_partial_output(const skv_partial *p, int d, float *out) {
    if (!(p->l > 0.0f)) {
        for (int j = 0; j < d; j++) out[j] = 0.0f;
        return;
    }
    /* In double: l may be subnormal. A ratio beyond float range (an estimate whose
     * normalizer underflowed against its numerator) saturates rather than becoming Inf. */
    const double inv = 1.0 / (double)p->l;
    for (int j = 0; j < d; j++) {
        double x = (double)p->o[j] * inv;
        out[j] = x > FLT_MAX ? FLT_MAX : x < -FLT_MAX ? -FLT_MAX : (float)x;
    }
}
