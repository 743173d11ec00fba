/*
 * csr_ref.h — what the GPU worker computes for a post-rotary csr sketch, in float64 on the
 * CPU (header-only, static; include after test_util.h): the attend over the exact rows as
 * stored (sinks, then the window ring, in the sketch's dtype) and the coded rows decoded in
 * float32 without the storage rounding of the sketch's own attend (the code kernel never
 * forms rows), as one partial per query. Also: random unit rows and dictionaries, orthonormal
 * ones (s = d codes exactly), and the
 * rows-vs-rows output comparison the csr tests share.
 */
#ifndef SUBKV_CSR_REF_H
#define SUBKV_CSR_REF_H

#include "csr_dict.h"
#include "skv_internal.h"

/* Rows [n][dim] of unit vectors drawn uniformly on the sphere (normal draws, normalised). */
static inline void csr_ref_unit_rows(synth_rng *r, float *a, int n, int dim) {
    for (int i = 0; i < n; i++) {
        float *row = a + (size_t)i * dim;
        double nn = 0.0;
        do {
            synth_fill_normal(r, row, (size_t)dim, 1.0f);
            nn = 0.0;
            for (int j = 0; j < dim; j++) nn += (double)row[j] * row[j];
        } while (nn < 1e-6);
        for (int j = 0; j < dim; j++) row[j] = (float)(row[j] / sqrt(nn));
    }
}

/* A finished set of random unit atoms: `groups` groups of layers_per_group layers. */
static inline skv_dict *csr_ref_dict(synth_rng *r, int d, int atoms, int groups, int lpg,
                                     skv_key_space ks) {
    skv_dict *dict = NULL;
    skv_err err = {0};
    TU_OK(skv_dict_new(d, atoms, groups, lpg, &dict, &err), &err);
    dict->key_space = ks;
    for (int g = 0; g < groups; g++) {
        csr_ref_unit_rows(r, skv_dict_keys(dict, g), atoms, d);
        csr_ref_unit_rows(r, skv_dict_values(dict, g, 0), atoms, d / 2);
        csr_ref_unit_rows(r, skv_dict_values(dict, g, 1), atoms, d / 2);
    }
    TU_OK(skv_dict_finish(dict, &err), &err);
    return dict;
}

/* A random orthonormal basis q[dim][dim] (Gram-Schmidt in double, twice for stability). */
static inline void csr_ref_orthonormal(synth_rng *r, float *q, int dim) {
    double *b = tu_malloc((size_t)dim * dim * sizeof *b);
    for (size_t i = 0; i < (size_t)dim * dim; i++) b[i] = synth_rng_normal(r);
    for (int i = 0; i < dim; i++)
        for (int pass = 0; pass < 2; pass++) {
            double *bi = b + (size_t)i * dim;
            for (int j = 0; j < i; j++) {
                const double *bj = b + (size_t)j * dim;
                double c = 0.0;
                for (int k = 0; k < dim; k++) c += bi[k] * bj[k];
                for (int k = 0; k < dim; k++) bi[k] -= c * bj[k];
            }
            double nn = 0.0;
            for (int k = 0; k < dim; k++) nn += bi[k] * bi[k];
            for (int k = 0; k < dim; k++) bi[k] /= sqrt(nn);
        }
    for (size_t i = 0; i < (size_t)dim * dim; i++) q[i] = (float)b[i];
    free(b);
}

/* A finished set of N = d atoms (one group, one layer) with which s = d recovers every vector:
 * an orthonormal key basis; each value half an orthonormal basis of d/2 and its negation. */
static inline skv_dict *csr_ref_orthonormal_dict(synth_rng *r, int d, skv_key_space ks) {
    const int h = d / 2;
    skv_dict *dict = NULL;
    skv_err err = {0};
    TU_OK(skv_dict_new(d, d, 1, 1, &dict, &err), &err);
    dict->key_space = ks;
    csr_ref_orthonormal(r, skv_dict_keys(dict, 0), d);
    for (int p = 0; p < 2; p++) {
        float *v = skv_dict_values(dict, 0, p);
        csr_ref_orthonormal(r, v, h);
        for (int i = 0; i < h * h; i++) v[h * h + i] = -v[i];
    }
    TU_OK(skv_dict_finish(dict, &err), &err);
    return dict;
}

/* Online float64 softmax state of one query. */
typedef struct csr_ref_acc {
    double m, l, o[SKV_MAX_HEAD_DIM];
} csr_ref_acc;

static inline void csr_ref_add(csr_ref_acc *a, const float *qs, const float *k, const float *v,
                               int d) {
    double sc = 0.0;
    for (int c = 0; c < d; c++) sc += (double)qs[c] * k[c];
    if (sc > a->m) { /* rescale what came before to the new maximum */
        const double r = a->m == -INFINITY ? 0.0 : exp(a->m - sc);
        a->l *= r;
        for (int c = 0; c < d; c++) a->o[c] *= r;
        a->m = sc;
    }
    const double e = exp(sc - a->m);
    a->l += e;
    for (int c = 0; c < d; c++) a->o[c] += e * v[c];
}

/* The g partials (unscaled queries Q[g][d], as skv_sketch_attend takes them) of csr sketch s
 * as the GPU worker forms them: exact rows (+) decoded codes. */
static inline void csr_ref_partials(const skv_sketch *s, const float *Q, int g, skv_partial *out) {
    const skv_config *c = skv_sketch_config(s);
    const int d = c->head_dim, h = d / 2;
    skv_csr_parts p;
    skv_err err = {0};
    TU_OK(skv_csr_parts_from(s, 0, &p, &err), &err);
    assert_true(p.rope_base == 0.0f);
    const int sp = p.sparsity, s0 = (sp + 1) / 2, s1 = sp / 2;
    float qs[SKV_MAX_HEAD_DIM], k[SKV_MAX_HEAD_DIM], v[SKV_MAX_HEAD_DIM];
    csr_ref_acc *a = tu_malloc(sizeof *a);
    for (int hq = 0; hq < g; hq++) {
        for (int j = 0; j < d; j++) qs[j] = Q[(size_t)hq * d + j] / sqrtf((float)d);
        a->m = -INFINITY, a->l = 0.0;
        for (int j = 0; j < d; j++) a->o[j] = 0.0;
        for (size_t i = 0; i < p.sw->nsinks; i++) {
            skv_rows_get(&p.sw->sk, i, k), skv_rows_get(&p.sw->sv, i, v);
            csr_ref_add(a, qs, k, v, d);
        }
        for (size_t i = 0; i < p.sw->wfill; i++) {
            skv_rows_get(&p.sw->wk, i, k), skv_rows_get(&p.sw->wv, i, v);
            csr_ref_add(a, qs, k, v, d);
        }
        for (size_t t = 0; t < p.n; t++) {
            const uint16_t *ix = p.idx + t * 2 * sp, *cf = p.coef + t * 2 * sp;
            skv_mp_decode(p.dk, d, ix, cf, sp, k);
            skv_mp_decode(p.dv0, h, ix + sp, cf + sp, s0, v);
            skv_mp_decode(p.dv1, h, ix + sp + s0, cf + sp + s0, s1, v + h);
            csr_ref_add(a, qs, k, v, d);
        }
        skv_partial *o = skv_partial_at(out, d, (size_t)hq);
        o->m = (float)a->m;
        o->l = (float)a->l;
        for (int j = 0; j < d; j++) o->o[j] = (float)a->o[j];
    }
    free(a);
}

/* ||out(a) - out(b)|| / ||out(b)|| of two partials' outputs (d floats each). */
static inline double csr_ref_rel(const skv_partial *a, const skv_partial *b, int d) {
    float x[SKV_MAX_HEAD_DIM], y[SKV_MAX_HEAD_DIM];
    skv_partial_output(a, d, x);
    skv_partial_output(b, d, y);
    double num = 0.0, den = 0.0;
    for (int j = 0; j < d; j++) {
        if (!isfinite(x[j])) return INFINITY;
        num += (x[j] - (double)y[j]) * (x[j] - (double)y[j]);
        den += (double)y[j] * y[j];
    }
    return sqrt(num / (den > 0.0 ? den : 1.0));
}

#endif /* SUBKV_CSR_REF_H */
