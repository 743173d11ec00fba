/*
 * test_cuda_csr.c — conformance of the GPU CSR attend (cuda/skv_csr_cuda.h), which reads atom
 * indices and coefficients, against the CPU. For each case a random unit-norm dictionary
 * is drawn, several csr sketches (4 sinks, a window of 16) are built on the CPU from fresh
 * clustered tokens (0, 1, 130, 2000 and 4100 coded tokens), their codes (skv_csr_codes) and
 * the dictionary are uploaded, and one launch attends every job. Two checks per query:
 *   - the kernel's partial of the coded tokens against a float64 attend over the rows
 *     csr's decoder gives (skv_mp_decode per key and value half): m, l and o / l within
 *     1e-3 relative;
 *   - that partial merged (skv_partial_merge) with a float64 partial of the exact sinks and
 *     window equals the CPU sketch's own attend (skv_sketch_attend) within 1e-3.
 * Outputs are poisoned with NaN before every launch. Chunkings: automatic, 100 tokens (many
 * blocks per job), 1031 and 5000 (several tiles per block: the running-maximum rescale).
 * Without a GPU every test is skipped with the reason printed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csr_dict.h"
#include "skv_backend.h"
#include "skv_csr_cuda.h"
#include "skv_cuda.h"
#include "skv_internal.h"
#include "test_util.h"
#include "csr_ref.h"
#include "gpu_suite.h"

/* A finished one-group set of random unit atoms. */
static skv_dict *random_dict(synth_rng *r, int d, int atoms) {
    return csr_ref_dict(r, d, atoms, 1, 1, SKV_KEYS_POST_ROTARY);
}

/* Float64 partial of one pre-scaled query over rows K, V [n][d] into p (m, l, o). */
static void ref_partial(const float *K, const float *V, size_t n, int d, const float *qs,
                        skv_partial *p) {
    double m = -INFINITY, l = 0.0;
    double *o = tu_malloc((size_t)d * sizeof *o);
    for (int c = 0; c < d; c++) o[c] = 0.0;
    for (size_t t = 0; t < n; t++) {
        double sc = 0.0;
        for (int c = 0; c < d; c++) sc += (double)qs[c] * K[t * d + c];
        if (sc > m) { /* rescale what came before to the new maximum */
            const double r = m == -INFINITY ? 0.0 : exp(m - sc);
            l *= r;
            for (int c = 0; c < d; c++) o[c] *= r;
            m = sc;
        }
        const double e = exp(sc - m);
        l += e;
        for (int c = 0; c < d; c++) o[c] += e * V[t * d + c];
    }
    p->m = (float)m;
    p->l = (float)l;
    for (int c = 0; c < d; c++) p->o[c] = (float)o[c];
    free(o);
}

/* ||a - b|| <= tol ||b|| over d floats, or fail with what. */
static void expect_close(const float *a, const float *b, int d, double tol, const char *what) {
    double num = 0, den = 0;
    for (int i = 0; i < d; i++) {
        if (!isfinite(a[i])) fail_msg("%s: output %d is %g", what, i, (double)a[i]);
        num += (a[i] - b[i]) * (double)(a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    if (!(sqrt(num) <= tol * sqrt(den))) fail_msg("%s: rel err %g", what, sqrt(num / den));
}

typedef struct csr_case {
    int d, g, s, atoms;
    int misalign; /* codes start 2 bytes into their buffers: the kernel's u16-by-u16 path */
} csr_case;

enum { J = 5, SINKS = 4, WINDOW = 16 };

static void conformance(csr_case cs) {
    char name[96];
    snprintf(name, sizeof name, "csr d%d g%d s%d N%d%s", cs.d, cs.g, cs.s, cs.atoms,
             cs.misalign ? " misaligned" : "");
    synth_rng r;
    tu_rng_for(&r, name);
    const int d = cs.d, g = cs.g, h = d / 2, s = cs.s, s0 = (s + 1) / 2, s1 = s / 2;
    const size_t ns[J] = {1, 130, 2000, 0, 4100}; /* coded tokens per job */
    skv_dict *dict = random_dict(&r, d, cs.atoms);
    const size_t ab = (size_t)cs.atoms * d * sizeof(float);
    float *dk = NULL, *dv0 = NULL, *dv1 = NULL;
    if (g_ctx) {
        dk = upload(skv_dict_keys(dict, 0), ab);
        dv0 = upload(skv_dict_values(dict, 0, 0), ab / 2);
        dv1 = upload(skv_dict_values(dict, 0, 1), ab / 2);
    }
    const size_t ps = skv_partial_stride(d);
    skv_csr_cuda_job jobs[J];
    void *dbuf[J][4];
    skv_partial *ref_coded = tu_malloc((size_t)J * g * ps),
                *ref_exact = tu_malloc((size_t)J * g * ps),
                *ref_all = tu_malloc((size_t)J * g * ps);
    float *q = tu_malloc((size_t)g * d * sizeof(float)),
          *qs = tu_malloc((size_t)g * d * sizeof(float));
    skv_partial *merged = tu_malloc(ps);
    float *got = tu_malloc((size_t)d * sizeof(float)), *want = tu_malloc((size_t)d * sizeof(float));
    for (int j = 0; j < J; j++) {
        skv_config c;
        skv_config_default(&c, SKV_POLICY_CSR, d);
        c.sparsity = s;
        c.sinks = SINKS;
        c.window = WINDOW;
        c.dict = dict;
        c.dtype = SKV_DTYPE_F32; /* the CPU attend then sees csr's float32 reconstructions */
        skv_sketch *sk = tu_create(&c);
        const size_t total = ns[j] ? ns[j] + SINKS + WINDOW : 10;
        synth_stream_cfg sc = {.d = d,
                               .clusters = 8,
                               .center_norm = 5.0f,
                               .spread = 0.35f,
                               .value_mean = 4.0f,
                               .value_tail = 0.3f,
                               .seed = synth_rng_u64(&r)};
        synth_stream *st = synth_stream_create(&sc);
        float *K = tu_malloc(total * d * sizeof(float)), *V = tu_malloc(total * d * sizeof(float));
        synth_stream_next(st, K, V, total);
        skv_err err;
        TU_OK(skv_sketch_append(sk, K, V, total, d, &err), &err);
        for (int hq = 0; hq < g; hq++) synth_stream_query(st, hq % 8, 1.0f, 0.3f, q + hq * d);
        for (int i = 0; i < g * d; i++) qs[i] = q[i] / sqrtf((float)d);
        const uint16_t *idx = NULL, *coef = NULL;
        size_t n = 0;
        TU_OK(skv_csr_codes(sk, &idx, &coef, &n, &err), &err);
        assert_int_equal(n, ns[j]);
        /* csr's decoder on the CPU: the rows the kernel must attend without forming them */
        float *Kd = tu_malloc((n + 1) * d * sizeof(float)),
              *Vd = tu_malloc((n + 1) * d * sizeof(float));
        for (size_t t = 0; t < n; t++) {
            const uint16_t *ix = idx + t * 2 * s, *cf = coef + t * 2 * s;
            skv_mp_decode(skv_dict_keys(dict, 0), d, ix, cf, s, Kd + t * d);
            skv_mp_decode(skv_dict_values(dict, 0, 0), h, ix + s, cf + s, s0, Vd + t * d);
            skv_mp_decode(skv_dict_values(dict, 0, 1), h, ix + s + s0, cf + s + s0, s1,
                          Vd + t * d + h);
        }
        /* the exact part: the first SINKS tokens and the last WINDOW (all of them when none
         * was coded) */
        const size_t nw = total - SINKS < WINDOW ? total - SINKS : WINDOW, ne = SINKS + nw;
        float *Ke = tu_malloc(ne * d * sizeof(float)), *Ve = tu_malloc(ne * d * sizeof(float));
        memcpy(Ke, K, (size_t)SINKS * d * sizeof(float));
        memcpy(Ve, V, (size_t)SINKS * d * sizeof(float));
        memcpy(Ke + SINKS * d, K + (total - nw) * d, nw * d * sizeof(float));
        memcpy(Ve + SINKS * d, V + (total - nw) * d, nw * d * sizeof(float));
        for (int hq = 0; hq < g; hq++) {
            const size_t at = (size_t)j * g + hq;
            ref_partial(Kd, Vd, n, d, qs + hq * d, skv_partial_at(ref_coded, d, at));
            ref_partial(Ke, Ve, ne, d, qs + hq * d, skv_partial_at(ref_exact, d, at));
        }
        TU_OK(skv_sketch_attend(sk, q, g, d, skv_partial_at(ref_all, d, (size_t)j * g), &err),
              &err);
        /* the references agree before the GPU is asked: the coded rows in float64 (+) the exact
         * part is the CPU sketch's own attend (which decodes the same codes in float32) */
        for (int hq = 0; hq < g; hq++) {
            const size_t at = (size_t)j * g + hq;
            memcpy(merged, skv_partial_at(ref_exact, d, at), ps);
            skv_partial_merge(merged, skv_partial_at(ref_coded, d, at), d);
            skv_partial_output(merged, d, got);
            skv_partial_output(skv_partial_at(ref_all, d, at), d, want);
            expect_close(got, want, d, 1e-4, "CPU references");
        }
        if (g_ctx) {
            const size_t cb = n * 2 * (size_t)s * sizeof(uint16_t);
            const size_t off = cs.misalign ? sizeof(uint16_t) : 0;
            dbuf[j][0] = upload(NULL, cb + off);
            dbuf[j][1] = upload(NULL, cb + off);
            skv_err uerr;
            TU_OK(skv_cuda_upload((char *)dbuf[j][0] + off, idx, cb, &uerr), &uerr);
            TU_OK(skv_cuda_upload((char *)dbuf[j][1] + off, coef, cb, &uerr), &uerr);
            dbuf[j][2] = upload(qs, (size_t)g * d * sizeof(float));
            dbuf[j][3] = upload(NULL, (size_t)g * ps);
            jobs[j] = (skv_csr_cuda_job){(uint16_t *)((char *)dbuf[j][0] + off),
                                         (uint16_t *)((char *)dbuf[j][1] + off),
                                         n,
                                         dk,
                                         dv0,
                                         dv1,
                                         dbuf[j][2],
                                         dbuf[j][3]};
        }
        skv_sketch_destroy(sk);
        synth_stream_destroy(st);
        free(K), free(V), free(Kd), free(Vd), free(Ke), free(Ve);
    }
    const uint64_t chunks[4] = {0, 100, 1031, 5000};
    skv_partial *part = tu_malloc((size_t)g * ps);
    for (int ci = 0; g_ctx && ci < 4; ci++) {
        skv_err err;
        for (int j = 0; j < J; j++) { /* poison: every output must be written */
            float *pf = (float *)part;
            for (size_t i = 0; i < (size_t)g * (d + 2); i++) pf[i] = NAN;
            TU_OK(skv_cuda_upload(jobs[j].out, part, (size_t)g * ps, &err), &err);
        }
        TU_OK(skv_csr_cuda_attend(g_ctx, jobs, J, d, g, s, cs.atoms, 0.0f, chunks[ci], &err), &err);
        TU_OK(skv_cuda_sync(g_ctx, &err), &err);
        for (int j = 0; j < J; j++) {
            TU_OK(skv_cuda_download(part, jobs[j].out, (size_t)g * ps, &err), &err);
            for (int hq = 0; hq < g; hq++) {
                char what[192];
                snprintf(what, sizeof what, "%s job %d (n=%zu) head %d chunk %llu", name, j, ns[j],
                         hq, (unsigned long long)chunks[ci]);
                const skv_partial *p = skv_partial_at(part, d, (size_t)hq);
                const skv_partial *rc = skv_partial_at(ref_coded, d, (size_t)j * g + hq);
                if (ns[j] == 0) {
                    if (!(p->m == -INFINITY && p->l == 0.0f)) fail_msg("%s: not empty", what);
                    for (int i = 0; i < d; i++) assert_true(p->o[i] == 0.0f);
                } else {
                    if (!(isfinite(p->m) && p->l > 0.0f))
                        fail_msg("%s: m %g l %g", what, p->m, p->l);
                    if (!(fabsf(p->m - rc->m) <= 1e-3f * (1.0f + fabsf(rc->m))))
                        fail_msg("%s: m %g, want %g", what, p->m, rc->m);
                    const double l = p->l * exp((double)p->m - rc->m);
                    if (!(fabs(l - rc->l) <= 1e-3 * rc->l))
                        fail_msg("%s: l %g, want %g", what, l, rc->l);
                    skv_partial_output(p, d, got);
                    skv_partial_output(rc, d, want);
                    expect_close(got, want, d, 1e-3, what);
                }
                /* the worker's merge: coded part (+) exact sinks/window = the sketch's attend */
                memcpy(merged, skv_partial_at(ref_exact, d, (size_t)j * g + hq), ps);
                skv_partial_merge(merged, p, d);
                skv_partial_output(merged, d, got);
                skv_partial_output(skv_partial_at(ref_all, d, (size_t)j * g + hq), d, want);
                strncat(what, " merged", sizeof what - strlen(what) - 1);
                expect_close(got, want, d, 1e-3, what);
            }
        }
    }
    if (g_ctx) {
        for (int j = 0; j < J; j++)
            for (int b = 0; b < 4; b++) skv_cuda_free(dbuf[j][b]);
        skv_cuda_free(dk), skv_cuda_free(dv0), skv_cuda_free(dv1);
    }
    skv_dict_free(dict);
    free(ref_coded), free(ref_exact), free(ref_all), free(q), free(qs);
    free(part), free(merged), free(got), free(want);
}

/* The CPU references are built and cross-checked with or without a GPU; the GPU part is
 * skipped (with the reason printed) when there is none. */
static void test_cuda_csr_d128_matches_cpu(void **state) {
    (void)state;
    conformance((csr_case){.d = 128, .g = 4, .s = 8, .atoms = 1024});
    conformance((csr_case){.d = 128, .g = 3, .s = 2, .atoms = 4096}); /* > 48 KiB shared */
    conformance((csr_case){.d = 128, .g = 1, .s = 3, .atoms = 700});
    conformance((csr_case){.d = 128, .g = 4, .s = 16, .atoms = 512});
    conformance((csr_case){.d = 128, .g = 2, .s = 6, .atoms = 1000});
    conformance((csr_case){.d = 128, .g = 4, .s = 8, .atoms = 256, .misalign = 1});
    /* 8 queries of 4096 atoms do not fit one block's shared memory: query blocks */
    conformance((csr_case){.d = 128, .g = 8, .s = 4, .atoms = 4096});
    conformance((csr_case){.d = 128, .g = 3, .s = 5, .atoms = 300}); /* no register variant */
    NEED_GPU();
}

static void test_cuda_csr_d64_matches_cpu(void **state) {
    (void)state;
    conformance((csr_case){.d = 64, .g = 1, .s = 3, .atoms = 300}); /* not a multiple of tiles */
    conformance((csr_case){.d = 64, .g = 8, .s = 8, .atoms = 512});
    conformance((csr_case){.d = 64, .g = 2, .s = 2, .atoms = 128});
    NEED_GPU();
}

/* Arbitrary codes (not from matching pursuit), 1 in 9 indices out of range: the kernel must
 * skip those pairs (the contract for indices csr_load would refuse) and attend the rest. */
static void test_cuda_csr_skips_bad_indices(void **state) {
    (void)state;
    NEED_GPU();
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { D = 128, G = 2, S = 3, N = 200, T = 3000 };
    const int h = D / 2, s0 = (S + 1) / 2;
    skv_dict *dict = random_dict(&r, D, N);
    uint16_t *idx = tu_malloc((size_t)T * 2 * S * sizeof *idx),
             *coef = tu_malloc((size_t)T * 2 * S * sizeof *coef);
    float *Kd = tu_malloc((size_t)T * D * sizeof(float)),
          *Vd = tu_malloc((size_t)T * D * sizeof(float));
    float qs[G * D];
    synth_fill_normal(&r, qs, G * D, 0.3f);
    for (size_t t = 0; t < T; t++) {
        uint16_t *ix = idx + t * 2 * S, *cf = coef + t * 2 * S, gi[2 * S], gc[2 * S];
        for (int k = 0; k < 2 * S; k++) {
            const int bad = synth_rng_u64(&r) % 9 == 0;
            ix[k] = (uint16_t)(bad ? N + synth_rng_u64(&r) % 1000 : synth_rng_u64(&r) % N);
            cf[k] = skv_f32_to_f16((float)(4.0 * synth_rng_uniform(&r) - 2.0));
        }
        /* the reference decodes the in-range pairs of the key and of each value half */
        const int lo[3] = {0, S, S + s0}, hi[3] = {S, S + s0, 2 * S}, dim[3] = {D, h, h};
        const float *tab[3] = {skv_dict_keys(dict, 0), skv_dict_values(dict, 0, 0),
                               skv_dict_values(dict, 0, 1)};
        float *dst[3] = {Kd + t * D, Vd + t * D, Vd + t * D + h};
        for (int part = 0; part < 3; part++) {
            int m = 0;
            for (int k = lo[part]; k < hi[part]; k++)
                if (ix[k] < N) gi[m] = ix[k], gc[m] = cf[k], m++;
            skv_mp_decode(tab[part], dim[part], gi, gc, m, dst[part]);
        }
    }
    const size_t ps = skv_partial_stride(D), ab = (size_t)N * D * sizeof(float);
    skv_partial *ref = tu_malloc(G * ps), *part = tu_malloc(G * ps);
    for (int hq = 0; hq < G; hq++)
        ref_partial(Kd, Vd, T, D, qs + hq * D, skv_partial_at(ref, D, hq));
    void *di = upload(idx, (size_t)T * 2 * S * 2), *dc = upload(coef, (size_t)T * 2 * S * 2),
         *dq = upload(qs, sizeof qs), *dout = upload(NULL, G * ps);
    float *dk = upload(skv_dict_keys(dict, 0), ab),
          *dv0 = upload(skv_dict_values(dict, 0, 0), ab / 2),
          *dv1 = upload(skv_dict_values(dict, 0, 1), ab / 2);
    skv_csr_cuda_job job = {di, dc, T, dk, dv0, dv1, dq, dout};
    skv_err err;
    for (size_t i = 0; i < G * (D + 2); i++) ((float *)part)[i] = NAN;
    TU_OK(skv_cuda_upload(dout, part, G * ps, &err), &err);
    TU_OK(skv_csr_cuda_attend(g_ctx, &job, 1, D, G, S, N, 0.0f, 512, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    TU_OK(skv_cuda_download(part, dout, G * ps, &err), &err);
    float got[D], want[D];
    for (int hq = 0; hq < G; hq++) {
        skv_partial_output(skv_partial_at(part, D, hq), D, got);
        skv_partial_output(skv_partial_at(ref, D, hq), D, want);
        expect_close(got, want, D, 1e-3, "bad indices skipped");
    }
    skv_cuda_free(di), skv_cuda_free(dc), skv_cuda_free(dq), skv_cuda_free(dout);
    skv_cuda_free(dk), skv_cuda_free(dv0), skv_cuda_free(dv1);
    skv_dict_free(dict);
    free(idx), free(coef), free(Kd), free(Vd), free(ref), free(part);
}

/* GPU matching pursuit of new tokens (skv_csr_cuda_encode) gives csr's codes bit for bit:
 * each job's tokens go into a csr sketch without sinks or window (every token coded on the
 * CPU by csr_encode) and through the GPU encoder; idx and coef must be equal. */
static void encode_case(int d, int s, int atoms) {
    char name[64];
    snprintf(name, sizeof name, "encode d%d s%d N%d", d, s, atoms);
    synth_rng r;
    tu_rng_for(&r, name);
    enum { EJ = 4 };
    const size_t ns[EJ] = {1, 33, 0, 700};
    skv_dict *dict = random_dict(&r, d, atoms);
    const size_t ab = (size_t)atoms * d * sizeof(float);
    float *dk = upload(skv_dict_keys(dict, 0), ab),
          *dv0 = upload(skv_dict_values(dict, 0, 0), ab / 2),
          *dv1 = upload(skv_dict_values(dict, 0, 1), ab / 2);
    skv_csr_cuda_enc_job jobs[EJ];
    uint16_t *want_i[EJ], *want_c[EJ];
    skv_err err;
    for (int j = 0; j < EJ; j++) {
        const size_t n = ns[j], cb = n * 2 * (size_t)s * sizeof(uint16_t);
        synth_stream_cfg sc = {.d = d,
                               .clusters = 8,
                               .center_norm = 5.0f,
                               .spread = 0.35f,
                               .value_mean = 4.0f,
                               .value_tail = 0.3f,
                               .seed = synth_rng_u64(&r)};
        synth_stream *st = synth_stream_create(&sc);
        float *K = tu_malloc((n + 1) * d * sizeof(float)),
              *V = tu_malloc((n + 1) * d * sizeof(float));
        synth_stream_next(st, K, V, n);
        want_i[j] = tu_malloc(cb + 2), want_c[j] = tu_malloc(cb + 2);
        if (n) {
            skv_config c;
            skv_config_default(&c, SKV_POLICY_CSR, d);
            c.sparsity = s, c.sinks = 0, c.window = 0, c.dict = dict;
            skv_sketch *sk = tu_create(&c);
            TU_OK(skv_sketch_append(sk, K, V, n, d, &err), &err);
            const uint16_t *idx = NULL, *coef = NULL;
            size_t got_n = 0;
            TU_OK(skv_csr_codes(sk, &idx, &coef, &got_n, &err), &err);
            assert_int_equal(got_n, n);
            memcpy(want_i[j], idx, cb), memcpy(want_c[j], coef, cb);
            skv_sketch_destroy(sk);
        }
        jobs[j] = (skv_csr_cuda_enc_job){upload(K, n * d * sizeof(float)),
                                         upload(V, n * d * sizeof(float)),
                                         n,
                                         dk,
                                         dv0,
                                         dv1,
                                         upload(NULL, cb),
                                         upload(NULL, cb),
                                         j % 2 ? upload(NULL, cb) : NULL, /* a second copy */
                                         j % 2 ? upload(NULL, cb) : NULL};
        synth_stream_destroy(st);
        free(K), free(V);
    }
    TU_OK(skv_csr_cuda_encode(g_ctx, jobs, EJ, d, s, atoms, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    for (int j = 0; j < EJ; j++) {
        const size_t n = ns[j], cb = n * 2 * (size_t)s * sizeof(uint16_t);
        uint16_t *gi = tu_malloc(cb + 2), *gc = tu_malloc(cb + 2);
        if (n) {
            TU_OK(skv_cuda_download(gi, jobs[j].idx, cb, &err), &err);
            TU_OK(skv_cuda_download(gc, jobs[j].coef, cb, &err), &err);
        }
        size_t diff = 0, first = 0;
        for (size_t i = 0; i < n * 2 * (size_t)s; i++)
            if (gi[i] != want_i[j][i] || gc[i] != want_c[j][i])
                if (diff++ == 0) first = i;
        if (jobs[j].idx2) { /* the second copy equals the first */
            uint16_t *g2 = tu_malloc(cb + 2);
            TU_OK(skv_cuda_download(g2, jobs[j].idx2, cb, &err), &err);
            assert_memory_equal(g2, gi, cb);
            TU_OK(skv_cuda_download(g2, jobs[j].coef2, cb, &err), &err);
            assert_memory_equal(g2, gc, cb);
            free(g2);
            skv_cuda_free(jobs[j].idx2), skv_cuda_free(jobs[j].coef2);
        }
        if (diff)
            fail_msg("%s job %d (n=%zu): %zu of %zu pairs differ, first at token %zu pair %zu: "
                     "GPU (%u, %04x), CPU (%u, %04x)",
                     name, j, n, diff, n * 2 * (size_t)s, first / (2 * (size_t)s),
                     first % (2 * (size_t)s), gi[first], gc[first], want_i[j][first],
                     want_c[j][first]);
        free(gi), free(gc), free(want_i[j]), free(want_c[j]);
        skv_cuda_free((void *)jobs[j].k), skv_cuda_free((void *)jobs[j].v);
        skv_cuda_free(jobs[j].idx), skv_cuda_free(jobs[j].coef);
    }
    skv_cuda_free(dk), skv_cuda_free(dv0), skv_cuda_free(dv1);
    skv_dict_free(dict);
}

static void test_cuda_csr_encode_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    encode_case(128, 8, 1024);
    encode_case(64, 3, 300);
    encode_case(128, 2, 77);
    encode_case(64, 16, 4096);
}

static void test_cuda_csr_rejects_unsupported(void **state) {
    (void)state;
    NEED_GPU();
    float *dq = upload(NULL, 8 * 128 * sizeof(float)),
          *dout = upload(NULL, 8 * 130 * sizeof(float));
    skv_csr_cuda_job job = {.n = 0, .q = dq, .out = dout};
    skv_err err;
    /* the valid empty job first: the rejections below are about their one bad argument */
    TU_OK(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 8, 1024, 0.0f, 0, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 8, 1024, 10000.0f, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "pre-rotary"));
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 96, 4, 8, 1024, 0.0f, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 9, 8, 1024, 0.0f, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_int_equal(
        skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 8, SKV_CSR_CUDA_MAX_ATOMS + 1, 0.0f, 0, &err),
        SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 1, 1024, 0.0f, 0, &err),
                     SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 8, 1024, -1.0f, 0, &err),
                     SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 0, 128, 4, 8, 1024, 0.0f, 0, &err),
                     SKV_ERR_INVALID_ARG);
    job.n = 5; /* tokens without codes or a dictionary */
    assert_int_equal(skv_csr_cuda_attend(g_ctx, &job, 1, 128, 4, 8, 1024, 0.0f, 0, &err),
                     SKV_ERR_INVALID_ARG);
    skv_cuda_free(dq), skv_cuda_free(dout);
}

int main(void) {
    tu_suite_begin("test_cuda_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_csr_d128_matches_cpu),
        cmocka_unit_test(test_cuda_csr_d64_matches_cpu),
        cmocka_unit_test(test_cuda_csr_skips_bad_indices),
        cmocka_unit_test(test_cuda_csr_encode_matches_cpu),
        cmocka_unit_test(test_cuda_csr_rejects_unsupported),
    };
    return cmocka_run_group_tests(tests, gpu_suite_setup, gpu_suite_teardown);
}
