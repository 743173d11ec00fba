/*
 * test_sinkwin.c — StreamingLLM: the first S tokens and the last W tokens, exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

static skv_sketch *sinkwin_new(int d, int sinks, int window, skv_dtype dt) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SINKWIN, d);
    c.sinks = sinks;
    c.window = window;
    c.dtype = dt;
    skv_sketch *s = tu_create(&c);
    assert_int_equal(skv_sketch_config(s)->sinks, sinks);
    assert_int_equal(skv_sketch_config(s)->window, window);
    return s;
}

/*
 * d = 2, S = 1, W = 2, five tokens: the survivors are {t0} (sink) and {t3, t4}
 * (window). t1 and t2 have the largest scores, so any policy that kept them would
 * produce a visibly different output.
 */
static const float HAND_K[5][2] = {{1, 0}, {3, 0}, {2, 1}, {0, 1}, {-1, 0.5f}};
static const float HAND_V[5][2] = {{1, -1}, {5, 2}, {-3, 4}, {2, 2}, {0, -2}};
static const float HAND_Q[2][2] = {{1, 0.5f}, {-0.5f, 2}};

static void hand_expected(int h, double out[2]) {
    /* scores <q, k_i> / sqrt(2) for i in {0, 3, 4}, written out */
    const double r2 = sqrt(2.0);
    double s0, s3, s4;
    if (h == 0) {
        s0 = (1.0 * 1 + 0.5 * 0) / r2;    /*  1.0  / sqrt 2 */
        s3 = (1.0 * 0 + 0.5 * 1) / r2;    /*  0.5  / sqrt 2 */
        s4 = (1.0 * -1 + 0.5 * 0.5) / r2; /* -0.75 / sqrt 2 */
    } else {
        s0 = (-0.5 * 1 + 2.0 * 0) / r2;    /* -0.5  / sqrt 2 */
        s3 = (-0.5 * 0 + 2.0 * 1) / r2;    /*  2.0  / sqrt 2 */
        s4 = (-0.5 * -1 + 2.0 * 0.5) / r2; /* 1.5  / sqrt 2 */
    }
    double e0 = exp(s0), e3 = exp(s3), e4 = exp(s4);
    double z = e0 + e3 + e4;
    out[0] = (e0 * 1 + e3 * 2 + e4 * 0) / z;
    out[1] = (e0 * -1 + e3 * 2 + e4 * -2) / z;
}

static void check_hand_case(skv_sketch *s) {
    float out[2 * 2];
    tu_attend_output(s, &HAND_Q[0][0], 2, 2, out);
    for (int h = 0; h < 2; h++) {
        double want[2];
        hand_expected(h, want);
        TU_ASSERT_REL_CLOSE(out + 2 * h, want, 2, 1e-6, "head %d", h);
        /* and it is NOT the full softmax over all five tokens */
        double full[2];
        synth_ref_attention(&HAND_Q[h][0], &HAND_K[0][0], &HAND_V[0][0], 5, 2, full);
        assert_true(synth_rel_error(out + 2 * h, full, 2) > 1e-2);
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_seen, 5);
    assert_int_equal(st.tokens_held, 3);
}

static void test_sinkwin_keeps_sink_and_last_window_tokens_one_at_a_time(void **state) {
    (void)state;
    skv_sketch *s = sinkwin_new(2, 1, 2, SKV_DTYPE_F32);
    for (int i = 0; i < 5; i++) tu_append(s, HAND_K[i], HAND_V[i], 1, 2);
    check_hand_case(s);
    skv_sketch_destroy(s);
}

static void test_sinkwin_keeps_sink_and_last_window_tokens_in_one_batch(void **state) {
    (void)state;
    skv_sketch *s = sinkwin_new(2, 1, 2, SKV_DTYPE_F32);
    tu_append(s, &HAND_K[0][0], &HAND_V[0][0], 5, 2);
    check_hand_case(s);
    skv_sketch_destroy(s);
}

static void test_sinkwin_holds_sinks_plus_window_after_many_tokens(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 16;
    int S = (int)tu_rand_range(&r, 1, 8), W = (int)tu_rand_range(&r, 1, 64);
    size_t n = tu_rand_range(&r, 500, 3000);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    skv_sketch *s = sinkwin_new(d, S, W, SKV_DTYPE_F32);
    size_t bytes0 = 0;
    for (size_t i = 0; i < n;) {
        size_t m = tu_rand_range(&r, 1, 97);
        if (m > n - i) m = n - i;
        tu_append(s, K + i * d, V + i * d, m, d);
        i += m;
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(st.tokens_seen, i);
        assert_int_equal(st.tokens_held, i < (size_t)(S + W) ? i : (size_t)(S + W));
        /* memory stops growing once sinks and window are full */
        if (i >= (size_t)(S + W)) {
            if (bytes0 == 0) bytes0 = skv_sketch_bytes(s);
            assert_int_equal(skv_sketch_bytes(s), bytes0);
        }
    }
    /* Output: softmax over tokens [0, S) and [n - W, n), assembled as a reference. */
    float *Kh = tu_malloc((size_t)(S + W) * d * sizeof(float));
    float *Vh = tu_malloc((size_t)(S + W) * d * sizeof(float));
    memcpy(Kh, K, (size_t)S * d * sizeof(float));
    memcpy(Vh, V, (size_t)S * d * sizeof(float));
    memcpy(Kh + (size_t)S * d, K + (n - W) * d, (size_t)W * d * sizeof(float));
    memcpy(Vh + (size_t)S * d, V + (n - W) * d, (size_t)W * d * sizeof(float));
    float q[16], out[16];
    double ref[16];
    synth_fill_normal(&r, q, (size_t)d, 1.0f);
    tu_attend_output(s, q, 1, d, out);
    synth_ref_attention(q, Kh, Vh, (size_t)(S + W), d, ref);
    TU_ASSERT_REL_CLOSE(out, ref, d, 1e-5, "S=%d W=%d n=%zu", S, W, n);
    free(Kh), free(Vh), free(K), free(V);
    skv_sketch_destroy(s);
}

static void test_sinkwin_with_window_covering_everything_equals_exact(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 64, g = 4;
    size_t n = tu_rand_range(&r, 1, 2000);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    skv_sketch *s = sinkwin_new(d, 4, (int)(n + tu_rand_range(&r, 0, 50)), SKV_DTYPE_F32);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, d);
    skv_sketch *e = tu_create(&c);
    tu_append_chunked(s, K, V, n, d, tu_rand_range(&r, 1, n));
    tu_append(e, K, V, n, d);
    float *Q = tu_malloc((size_t)g * d * sizeof(float));
    float *os = tu_malloc((size_t)g * d * sizeof(float));
    float *oe = tu_malloc((size_t)g * d * sizeof(float));
    double ref[64];
    synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
    tu_attend_output(s, Q, g, d, os);
    tu_attend_output(e, Q, g, d, oe);
    for (int h = 0; h < g; h++) {
        synth_ref_attention(Q + h * d, K, V, n, d, ref);
        TU_ASSERT_REL_CLOSE(os + h * d, ref, d, 1e-5, "n=%zu head %d", n, h);
        assert_true(tu_rel_error_ff(os + h * d, oe + h * d, d) <= 1e-5);
    }
    free(Q), free(os), free(oe), free(K), free(V);
    skv_sketch_destroy(s);
    skv_sketch_destroy(e);
}

int main(void) {
    tu_suite_begin("test_sinkwin");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sinkwin_keeps_sink_and_last_window_tokens_one_at_a_time),
        cmocka_unit_test(test_sinkwin_keeps_sink_and_last_window_tokens_in_one_batch),
        cmocka_unit_test(test_sinkwin_holds_sinks_plus_window_after_many_tokens),
        cmocka_unit_test(test_sinkwin_with_window_covering_everything_equals_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
