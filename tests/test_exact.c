/*
 * test_exact.c — the exact policy equals naive float64 softmax attention, loses only
 * storage rounding with half-precision storage, and enforces its token and byte budgets
 * without changing what it holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

/* Build an exact sketch over K,V (random chunking) and return the max relative error of
 * its g outputs against the float64 reference over the unrounded float32 K,V. */
static double exact_max_error(synth_rng *r, const float *K, const float *V, size_t n, int d, int g,
                              skv_dtype dt) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    c.dtype = dt;
    skv_sketch *s = tu_create(&c);
    tu_append_chunked(s, K, V, n, d, tu_rand_range(r, 1, n));
    float *Q = tu_malloc((size_t)g * d * sizeof(float));
    synth_fill_normal(r, Q, (size_t)g * d, 1.0f);
    float *out = tu_malloc((size_t)g * d * sizeof(float));
    double *ref = tu_malloc((size_t)d * sizeof(double));
    tu_attend_output(s, Q, g, d, out);
    double worst = 0.0;
    for (int h = 0; h < g; h++) {
        synth_ref_attention(Q + (size_t)h * d, K, V, n, d, ref);
        double e = synth_rel_error(out + (size_t)h * d, ref, d);
        if (!(e <= worst)) /* also catches NaN */
            worst = isnan(e) ? INFINITY : e;
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_seen, n);
    assert_int_equal(st.tokens_held, n);
    assert_int_equal(st.bytes, skv_sketch_bytes(s));
    free(Q), free(out), free(ref);
    skv_sketch_destroy(s);
    return worst;
}

static void test_exact_f32_matches_float64_reference(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const size_t ns[] = {1, 7, 100, 1000, 5000};
    const int ds[] = {16, 64, 128};
    const int gs[] = {1, 4};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            float *K, *V;
            tu_make_random_kv(&r, ns[i], ds[j], &K, &V);
            for (size_t k = 0; k < 2; k++) {
                double e = exact_max_error(&r, K, V, ns[i], ds[j], gs[k], SKV_DTYPE_F32);
                if (!(e <= 1e-5))
                    fail_msg("f32 rel err %.3e at n=%zu d=%d g=%d", e, ns[i], ds[j], gs[k]);
            }
            free(K), free(V);
        }
}

static void test_exact_half_storage_error_is_rounding_sized(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const size_t ns[] = {1, 100, 5000};
    const int ds[] = {16, 128};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 2; j++) {
            float *K, *V;
            tu_make_random_kv(&r, ns[i], ds[j], &K, &V);
            double e16 = exact_max_error(&r, K, V, ns[i], ds[j], 4, SKV_DTYPE_F16);
            double eb16 = exact_max_error(&r, K, V, ns[i], ds[j], 4, SKV_DTYPE_BF16);
            if (!(e16 < 2e-3)) fail_msg("f16 rel err %.3e at n=%zu d=%d", e16, ns[i], ds[j]);
            if (!(eb16 < 2e-2)) fail_msg("bf16 rel err %.3e at n=%zu d=%d", eb16, ns[i], ds[j]);
            /* Storage really is rounded: bf16 (8-bit mantissa) is coarser than f16. */
            assert_true(eb16 > e16);
            assert_true(e16 > 0.0);
            free(K), free(V);
        }
}

static void test_exact_append_past_max_tokens_fails_and_changes_nothing(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, g = 3;
    size_t cap = tu_rand_range(&r, 5, 200);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    c.max_tokens = cap;
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, cap + 10, d, &K, &V);
    size_t first = cap - 2;
    tu_append(s, K, V, first, d);

    float Q[3 * 32];
    synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
    size_t pbytes = (size_t)g * skv_partial_stride(d);
    skv_partial *before = tu_partials_new(g, d), *after = tu_partials_new(g, d);
    tu_attend(s, Q, g, d, before);

    /* 3 more would end one past the cap: nothing of the batch may be stored. */
    skv_err err = {0};
    assert_int_equal(skv_sketch_append(s, K + first * d, V + first * d, 3, d, &err),
                     SKV_ERR_BUDGET);
    assert_int_equal(err.code, SKV_ERR_BUDGET);
    assert_true(err.msg[0] != '\0');
    tu_attend(s, Q, g, d, after);
    assert_memory_equal(before, after, pbytes);
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_seen, first);
    assert_int_equal(st.tokens_held, first);

    /* Exactly up to the cap is fine; one more is not. */
    tu_append(s, K + first * d, V + first * d, 2, d);
    tu_attend(s, Q, g, d, before);
    assert_int_equal(skv_sketch_append(s, K + cap * d, V + cap * d, 1, d, &err), SKV_ERR_BUDGET);
    tu_attend(s, Q, g, d, after);
    assert_memory_equal(before, after, pbytes);
    double ref[32];
    synth_ref_attention(Q, K, V, cap, d, ref);
    float out[32];
    skv_partial_output(after, d, out);
    TU_ASSERT_REL_CLOSE(out, ref, d, 1e-5, "after failed append at cap %zu", cap);
    free(before), free(after), free(K), free(V);
    skv_sketch_destroy(s);
}

static void test_exact_byte_budget_is_never_exceeded(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 64;
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    c.budget_bytes = 64 * 1024;
    c.dtype = SKV_DTYPE_F16;
    skv_sketch *s = tu_create(&c);
    assert_true(skv_sketch_bytes(s) <= c.budget_bytes);
    size_t chunk = 7, total = 0;
    float *K, *V;
    tu_make_random_kv(&r, chunk, d, &K, &V);
    skv_err err = {0};
    subkv_status st = SKV_OK;
    for (int it = 0; it < 10000 && st == SKV_OK; it++) {
        st = skv_sketch_append(s, K, V, chunk, d, &err);
        if (st == SKV_OK) total += chunk;
        assert_true(skv_sketch_bytes(s) <= c.budget_bytes);
    }
    /* 64 KiB of f16 rows of 64 holds a few hundred tokens, then refuses. */
    assert_int_equal(st, SKV_ERR_BUDGET);
    assert_true(total >= 100);
    skv_stats sts;
    skv_sketch_stats(s, &sts);
    assert_int_equal(sts.tokens_held, total);
    free(K), free(V);
    skv_sketch_destroy(s);
}

/* skv_config_max_bytes bounds what a sketch ever holds: an exact cache filled to its cap
 * stays within it, a fixed-size policy holds exactly it, an unbounded exact has none. */
static void test_max_bytes_bounds_every_policy(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 24;
    const size_t n = 700;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    skv_config c, rc;
    skv_err err;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    assert_true(skv_config_max_bytes(&rc) == SIZE_MAX);
    c.max_tokens = n;
    c.dtype = SKV_DTYPE_F16;
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    skv_sketch *s = tu_create(&c);
    for (size_t i = 0; i < n; i += 100)
        TU_OK(skv_sketch_append(s, K + i * d, V + i * d, 100, d, &err), &err);
    assert_true(skv_sketch_bytes(s) <= skv_config_max_bytes(&rc));
    assert_true(skv_sketch_bytes(s) >= n * 2 * d * 2);
    skv_sketch_destroy(s);
    for (int p = SKV_POLICY_SINKWIN; p < SKV_POLICY_COUNT; p++) {
        if (p == SKV_POLICY_CSR) continue; /* it needs a dictionary: tests/test_csr.c */
        skv_config_default(&c, (skv_policy_id)p, d);
        c.budget_bytes = 20000;
        /* refreshkv's budget bounds its partial cache; max_tokens bounds its full store */
        const int rkv = p == SKV_POLICY_REFRESHKV;
        if (rkv) c.max_tokens = n;
        TU_OK(skv_config_resolve(&c, &rc, &err), &err);
        s = tu_create(&c);
        TU_OK(skv_sketch_append(s, K, V, n, d, &err), &err);
        skv_stats st;
        skv_sketch_stats(s, &st);
        if (rkv) {
            assert_true(skv_sketch_bytes(s) <= skv_config_max_bytes(&rc));
            assert_true(st.partial_bytes <= c.budget_bytes);
        } else {
            assert_int_equal(skv_sketch_bytes(s), skv_config_max_bytes(&rc));
            assert_true(skv_sketch_bytes(s) <= c.budget_bytes);
        }
        skv_sketch_destroy(s);
    }
    free(K);
    free(V);
}

int main(void) {
    tu_suite_begin("test_exact");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_f32_matches_float64_reference),
        cmocka_unit_test(test_exact_half_storage_error_is_rounding_sized),
        cmocka_unit_test(test_exact_append_past_max_tokens_fails_and_changes_nothing),
        cmocka_unit_test(test_exact_byte_budget_is_never_exceeded),
        cmocka_unit_test(test_max_bytes_bounds_every_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
