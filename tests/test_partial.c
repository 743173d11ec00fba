/*
 * test_partial.c — the partial-merge rule (DESIGN.md section 2): partials over disjoint
 * token sets merge exactly, in any order and any split, and the empty partial is the
 * identity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#define MERGE_TOL 1e-6
#define REF_TOL 1e-5

/* Exact-policy partials of g heads over tokens [lo, hi). */
static skv_partial *partials_over(const float *K, const float *V, size_t lo, size_t hi,
                                  const float *Q, int g, int d) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    skv_sketch *s = tu_create(&c);
    tu_append(s, K + lo * (size_t)d, V + lo * (size_t)d, hi - lo, d);
    skv_partial *p = tu_partials_new(g, d);
    tu_attend(s, Q, g, d, p);
    skv_sketch_destroy(s);
    return p;
}

static void merge_all(skv_partial *dst, const skv_partial *src, int g, int d) {
    for (int h = 0; h < g; h++)
        skv_partial_merge(skv_partial_at(dst, d, (size_t)h),
                          skv_partial_at((void *)src, d, (size_t)h), d);
}

static void test_partial_merge_of_random_three_way_split_equals_unsplit(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int dims[] = {8, 64, 128};
    for (int trial = 0; trial < 12; trial++) {
        int d = dims[trial % 3];
        int g = 1 + (int)tu_rand_range(&r, 0, 3);
        size_t n = tu_rand_range(&r, 3, 3000);
        size_t a = tu_rand_range(&r, 1, n - 2);
        size_t b = tu_rand_range(&r, a + 1, n - 1);
        float *K, *V;
        tu_make_random_kv(&r, n, d, &K, &V);
        float *Q = tu_malloc((size_t)g * d * sizeof(float));
        synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);

        skv_partial *whole = partials_over(K, V, 0, n, Q, g, d);
        skv_partial *merged = partials_over(K, V, 0, a, Q, g, d);
        skv_partial *p1 = partials_over(K, V, a, b, Q, g, d);
        skv_partial *p2 = partials_over(K, V, b, n, Q, g, d);
        merge_all(merged, p1, g, d);
        merge_all(merged, p2, g, d);

        float *ow = tu_malloc((size_t)d * sizeof(float));
        float *om = tu_malloc((size_t)d * sizeof(float));
        double *ref = tu_malloc((size_t)d * sizeof(double));
        for (int h = 0; h < g; h++) {
            skv_partial *pw = skv_partial_at(whole, d, (size_t)h);
            skv_partial *pm = skv_partial_at(merged, d, (size_t)h);
            skv_partial_output(pw, d, ow);
            skv_partial_output(pm, d, om);
            double e = tu_rel_error_ff(om, ow, d);
            if (!(e <= MERGE_TOL))
                fail_msg("merged vs unsplit rel err %.3e (n=%zu a=%zu b=%zu d=%d head=%d)", e, n, a,
                         b, d, h);
            /* The normalizers agree too: l e^m of the merge is the unsplit one. */
            double logl_w = log((double)pw->l) + pw->m;
            double logl_m = log((double)pm->l) + pm->m;
            assert_true(fabs(logl_w - logl_m) <= MERGE_TOL * (1.0 + fabs(logl_w)));
            double logz = synth_ref_attention(Q + (size_t)h * d, K, V, n, d, ref);
            TU_ASSERT_REL_CLOSE(om, ref, d, REF_TOL, "merged vs float64 ref, n=%zu d=%d", n, d);
            assert_true(fabs(logl_m - logz) <= 1e-5 * (1.0 + fabs(logz)));
        }
        free(ow), free(om), free(ref);
        free(whole), free(merged), free(p1), free(p2);
        free(K), free(V), free(Q);
    }
}

static void test_partial_merge_with_empty_is_identity(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, g = 2;
    size_t n = tu_rand_range(&r, 1, 500);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    float Q[2 * 32];
    synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
    skv_partial *p = partials_over(K, V, 0, n, Q, g, d);
    size_t bytes = (size_t)g * skv_partial_stride(d);

    /* p (+) empty == p, bit for bit. */
    skv_partial *left = tu_malloc(bytes);
    memcpy(left, p, bytes);
    skv_partial *empty = tu_partials_new(g, d);
    merge_all(left, empty, g, d);
    assert_memory_equal(left, p, bytes);

    /* empty (+) p == p, bit for bit. */
    skv_partial *right = tu_partials_new(g, d);
    merge_all(right, p, g, d);
    assert_memory_equal(right, p, bytes);

    /* empty (+) empty stays empty and outputs zeros. */
    skv_partial *e2 = tu_partials_new(g, d);
    merge_all(e2, empty, g, d);
    skv_partial *e0 = skv_partial_at(e2, d, 0);
    assert_true(isinf(e0->m) && e0->m < 0);
    assert_true(e0->l == 0.0f);
    float out[32];
    for (int j = 0; j < d; j++) out[j] = 1.0f;
    skv_partial_output(e0, d, out);
    for (int j = 0; j < d; j++) assert_true(out[j] == 0.0f);
    free(left), free(right), free(empty), free(e2), free(p), free(K), free(V);
}

static void test_partial_merge_is_order_independent(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 64, g = 1;
    enum { PARTS = 4 };
    size_t n = tu_rand_range(&r, 40, 4000);
    size_t cut[PARTS + 1] = {0};
    cut[PARTS] = n;
    /* Random strictly increasing cut points. */
    for (int i = 1; i < PARTS; i++)
        cut[i] = tu_rand_range(&r, cut[i - 1] + 1, n - (size_t)(PARTS - i));
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    float Q[64];
    synth_fill_normal(&r, Q, (size_t)d, 1.5f);
    skv_partial *parts[PARTS];
    for (int i = 0; i < PARTS; i++) parts[i] = partials_over(K, V, cut[i], cut[i + 1], Q, g, d);

    float base[64], out[64];
    /* Every permutation of 4 parts, merged left to right. */
    int perm[PARTS] = {0, 1, 2, 3};
    int first = 1, count = 0;
    for (;;) {
        skv_partial *acc = tu_partials_new(g, d);
        for (int i = 0; i < PARTS; i++) skv_partial_merge(acc, parts[perm[i]], d);
        skv_partial_output(acc, d, first ? base : out);
        if (!first) {
            double e = tu_rel_error_ff(out, base, d);
            if (!(e <= MERGE_TOL))
                fail_msg("order %d%d%d%d differs from 0123 by %.3e", perm[0], perm[1], perm[2],
                         perm[3], e);
        }
        first = 0;
        count++;
        free(acc);
        /* next permutation (lexicographic) */
        int i = PARTS - 2;
        while (i >= 0 && perm[i] > perm[i + 1]) i--;
        if (i < 0) break;
        int j = PARTS - 1;
        while (perm[j] < perm[i]) j--;
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        for (int lo = i + 1, hi = PARTS - 1; lo < hi; lo++, hi--)
            t = perm[lo], perm[lo] = perm[hi], perm[hi] = t;
    }
    assert_int_equal(count, 24);

    /* A tree ((0+1)+(2+3)) equals the chain too. */
    skv_partial *l = tu_partials_new(g, d), *rr = tu_partials_new(g, d);
    skv_partial_merge(l, parts[0], d);
    skv_partial_merge(l, parts[1], d);
    skv_partial_merge(rr, parts[2], d);
    skv_partial_merge(rr, parts[3], d);
    skv_partial_merge(l, rr, d);
    skv_partial_output(l, d, out);
    assert_true(tu_rel_error_ff(out, base, d) <= MERGE_TOL);
    free(l), free(rr);
    for (int i = 0; i < PARTS; i++) free(parts[i]);
    free(K), free(V);
}

/* Scores of several hundred overflow e^x in float32; the carried max must absorb them,
 * including when the two halves' maxima are far apart. */
static void test_partial_merge_handles_scores_beyond_float_exp_range(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 16;
    size_t n = 200, a = 100;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    /* Second half's keys are 10x larger: scores ~ N(0, 60^2), the max well past the
     * float32 exp limit (~88), and far above the first half's max. */
    for (size_t i = a * (size_t)d; i < n * (size_t)d; i++) K[i] *= 10.0f;
    float Q[16];
    synth_fill_normal(&r, Q, (size_t)d, 6.0f);
    skv_partial *p = partials_over(K, V, 0, a, Q, 1, d);
    skv_partial *p2 = partials_over(K, V, a, n, Q, 1, d);
    skv_partial_merge(p, p2, d);
    float out[16];
    double ref[16];
    skv_partial_output(p, d, out);
    assert_true(tu_all_finite(out, (size_t)d));
    assert_true(isfinite(p->m) && isfinite(p->l) && p->l > 0.0f);
    synth_ref_attention(Q, K, V, n, d, ref);
    /* float32 scores of size ~100 carry absolute rounding ~1e-5, hence 1e-4 here. */
    TU_ASSERT_REL_CLOSE(out, ref, d, 1e-4, "large scores");
    free(p), free(p2), free(K), free(V);
}

int main(void) {
    tu_suite_begin("test_partial");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partial_merge_of_random_three_way_split_equals_unsplit),
        cmocka_unit_test(test_partial_merge_with_empty_is_identity),
        cmocka_unit_test(test_partial_merge_is_order_independent),
        cmocka_unit_test(test_partial_merge_handles_scores_beyond_float_exp_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
