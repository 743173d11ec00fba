/*
 * test_refreshkv_topk.c — refreshkv's selection made elsewhere (a GPU's top-K) and installed
 * with skv_rkv_apply_indices (cache/refreshkv_full.c), on the CPU so CI checks it:
 *   - skv_rkv_topk (the host reference the GPU kernel is tested against) equals a brute-force
 *     count of the tokens above each selected one, ties (the later token wins) and -0 = +0
 *     included, and the order skv_rkv_apply leaves in the partial cache;
 *   - apply_indices(topk(pooled)) leaves a sketch bit-identical (checkpoint bytes, ring view)
 *     to apply(pooled), over random n, K and quantised scores, full steps after partial pushes
 *     too;
 *   - apply_indices refuses a wrong count, a token outside the store, a duplicate, a wrong
 *     order, a -0/+0 tie with the later token first, a NaN, another policy — changing
 *     nothing.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "skv_internal.h"
#include "test_util.h"

enum { D = 16, G = 2 };

/* Fresh scores with ties: `levels` distinct values in [0, 1) (0: continuous), some -0. */
static void quantised_scores(synth_rng *r, float *p, size_t n, int levels) {
    for (size_t i = 0; i < n; i++) {
        const double u = synth_rng_uniform(r);
        p[i] = levels ? (float)(floor(u * levels) / levels) : (float)u;
        if (p[i] == 0.0f && synth_rng_u64(r) % 2) p[i] = -0.0f;
    }
}

/* (a, i) above (b, j) in the selection's order: score, then the later token; -0 == +0. */
static int above(float a, size_t i, float b, size_t j) { return a > b || (a == b && i > j); }

static void test_topk_matches_brute_force(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const size_t ns[] = {0, 1, 2, 7, 64, 65, 1000, 4097};
    const size_t ks[] = {1, 2, 16, 64, 1000, 5000};
    const int levels[] = {0, 3, 50};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
            for (size_t c = 0; c < sizeof levels / sizeof *levels; c++) {
                const size_t n = ns[a], k = ks[b];
                float *p = tu_malloc(n * sizeof(float)), *sc = tu_malloc(k * sizeof(float));
                uint32_t *idx = tu_malloc(k * sizeof(uint32_t));
                quantised_scores(&r, p, n, levels[c]);
                size_t got = 99;
                skv_err err;
                TU_OK(skv_rkv_topk(p, n, k, idx, sc, &got, &err), &err);
                const size_t m = k < n ? k : n;
                assert_int_equal(got, m);
                for (size_t i = 0; i < m; i++) {
                    assert_true(idx[i] < n);
                    assert_memory_equal(&sc[i], &p[idx[i]], sizeof(float));
                    if (i) assert_true(above(sc[i], idx[i], sc[i - 1], idx[i - 1]));
                    size_t higher = 0; /* exactly m - 1 - i tokens rank above it */
                    for (size_t t = 0; t < n; t++) higher += above(p[t], t, sc[i], idx[i]);
                    assert_int_equal(higher, m - 1 - i);
                }
                free(p), free(sc), free(idx);
            }
    float nan_in[3] = {0.5f, NAN, 0.25f}, s3[3];
    uint32_t i3[3];
    size_t got = 0;
    skv_err err;
    assert_int_equal(skv_rkv_topk(nan_in, 3, 2, i3, s3, &got, &err), SKV_ERR_INVALID_ARG);
}

static skv_config rkv_cfg(int k) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, D);
    c.partial_tokens = k;
    c.stride = 1000; /* full steps only when asked (skv_sketch_refresh, prefill chunks) */
    c.threshold = -1.0f;
    c.dtype = SKV_DTYPE_F16;
    return c;
}

static void assert_twins(const skv_sketch *a, const skv_sketch *b, const char *what) {
    skv_buf x = tu_save(a), y = tu_save(b);
    if (!tu_bufs_equal(&x, &y)) fail_msg("%s: the two sketches differ", what);
    skv_buf_free(&x);
    skv_buf_free(&y);
    skv_rkv_ring_view va, vb;
    skv_rkv_ring(a, &va);
    skv_rkv_ring(b, &vb);
    assert_int_equal(va.pn, vb.pn);
    assert_int_equal(va.next, vb.next);
    assert_int_equal(va.pushes, vb.pushes);
    assert_int_equal(va.layout, vb.layout);
}

/* Plan a full step on both; a takes apply(pooled), b apply_indices(topk(pooled)). */
static void full_step_both(synth_rng *r, skv_sketch *a, skv_sketch *b, const float *Q, int levels,
                           const char *what) {
    skv_err err;
    int fa = -1, fb = -1;
    TU_OK(skv_rkv_plan(a, Q, G, &fa, &err), &err);
    TU_OK(skv_rkv_plan(b, Q, G, &fb, &err), &err);
    assert_int_equal(fa, 1);
    assert_int_equal(fb, 1);
    const skv_rows *fk, *fv;
    size_t n = 0;
    skv_rkv_full_rows(b, &fk, &fv, &n);
    const size_t k = (size_t)skv_sketch_config(b)->partial_tokens;
    float *p = tu_malloc(n * sizeof(float)), *sc = tu_malloc(k * sizeof(float));
    uint32_t *idx = tu_malloc(k * sizeof(uint32_t));
    quantised_scores(r, p, n, levels);
    size_t got = 0;
    TU_OK(skv_rkv_apply(a, Q, G, p, n, &err), &err);
    TU_OK(skv_rkv_topk(p, n, k, idx, sc, &got, &err), &err);
    TU_OK(skv_rkv_apply_indices(b, Q, G, idx, sc, got, &err), &err);
    assert_twins(a, b, what);
    free(p), free(sc), free(idx);
}

static void twins_run(synth_rng *r, size_t n, int k, int levels) {
    char what[96];
    snprintf(what, sizeof what, "n %zu, K %d, levels %d", n, k, levels);
    const skv_config c = rkv_cfg(k);
    skv_sketch *a = tu_create(&c), *b = tu_create(&c);
    float *K, *V, Q[G * D];
    tu_make_random_kv(r, n + 8, D, &K, &V);
    synth_fill_normal(r, Q, G * D, 1.0f);
    tu_append(a, K, V, n, D);
    tu_append(b, K, V, n, D);
    full_step_both(r, a, b, Q, levels, what); /* the prefill */
    skv_partial *out = tu_partials_new(G, D);
    for (size_t i = 0; i < 5; i++) { /* decode steps: pushes into the partial cache */
        tu_append(a, K + (n + i) * D, V + (n + i) * D, 1, D);
        tu_append(b, K + (n + i) * D, V + (n + i) * D, 1, D);
        tu_attend(a, Q, G, D, out);
        tu_attend(b, Q, G, D, out);
    }
    assert_twins(a, b, what);
    skv_err err;
    TU_OK(skv_sketch_refresh(a, &err), &err);
    TU_OK(skv_sketch_refresh(b, &err), &err);
    synth_fill_normal(r, Q, G * D, 1.0f);
    full_step_both(r, a, b, Q, levels, what); /* a re-selection over n + 5 tokens */
    free(K), free(V), free(out);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
}

static void test_apply_indices_equals_apply(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int ks[] = {1, 16, 100};
    const int levels[] = {0, 2, 7, 200};
    int runs = 0;
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++) {
        const int k = ks[a];
        const size_t ns[] = {1,
                             7,
                             (size_t)k > 1 ? (size_t)k - 1 : 2,
                             (size_t)k,
                             (size_t)k + 1,
                             tu_rand_range(&r, 2, 2000)};
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof levels / sizeof *levels; c++, runs++)
                twins_run(&r, ns[b], k, levels[c]);
    }
    printf("# %d twin runs bit-identical\n", runs);
}

static void test_apply_indices_refuses_bad_selections(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { N = 50, KP = 8 };
    const skv_config c = rkv_cfg(KP);
    skv_sketch *s = tu_create(&c);
    float *K, *V, Q[G * D], p[N], sc[KP];
    uint32_t idx[KP];
    tu_make_random_kv(&r, N, D, &K, &V);
    synth_fill_normal(&r, Q, G * D, 1.0f);
    tu_append(s, K, V, N, D);
    skv_err err;
    int full = 0;
    TU_OK(skv_rkv_plan(s, Q, G, &full, &err), &err);
    assert_int_equal(full, 1);
    quantised_scores(&r, p, N, 0);
    size_t got = 0;
    TU_OK(skv_rkv_topk(p, N, KP, idx, sc, &got, &err), &err);
    skv_buf before = tu_save(s);
    uint32_t bi[KP];
    float bs[KP];
    for (int cas = 0; cas < 7; cas++) {
        memcpy(bi, idx, sizeof bi);
        memcpy(bs, sc, sizeof bs);
        size_t k = KP;
        switch (cas) {
        case 0: k = KP - 1; break;                   /* fewer than K */
        case 1: bi[3] = N; break;                    /* outside the store */
        case 2: bi[5] = bi[4], bs[5] = bs[4]; break; /* a duplicate */
        case 3: bs[2] = bs[6] + 1.0f; break;         /* out of order */
        case 4: bs[0] = NAN; break;
        case 5: /* a tie (-0 == +0) with the later token first */
            bs[0] = -0.0f, bs[1] = 0.0f;
            bi[0] = idx[0] > idx[1] ? idx[0] : idx[1], bi[1] = idx[0] > idx[1] ? idx[1] : idx[0];
            break;
        default: k = KP + 1; break;
        }
        assert_int_equal(skv_rkv_apply_indices(s, Q, G, bi, bs, k, &err), SKV_ERR_INVALID_ARG);
        skv_buf now = tu_save(s);
        assert_true(tu_bufs_equal(&before, &now));
        skv_buf_free(&now);
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, 0); /* still due */
    TU_OK(skv_rkv_apply_indices(s, Q, G, idx, sc, KP, &err), &err);
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, 1);
    skv_config ec;
    skv_config_default(&ec, SKV_POLICY_EXACT, D);
    skv_sketch *e = tu_create(&ec);
    assert_int_equal(skv_rkv_apply_indices(e, Q, G, idx, sc, 0, &err), SKV_ERR_INVALID_ARG);
    skv_sketch_destroy(e);
    skv_buf_free(&before);
    skv_sketch_destroy(s);
    free(K), free(V);
}

int main(void) {
    tu_suite_begin("test_refreshkv_topk");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_brute_force),
        cmocka_unit_test(test_apply_indices_equals_apply),
        cmocka_unit_test(test_apply_indices_refuses_bad_selections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
