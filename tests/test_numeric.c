/*
 * test_numeric.c — the numeric building blocks the policies and the GPU backend share:
 * Philox4x32-10 against its published known-answer vectors, coins, half conversions,
 * CRC-32C, and the weighted-entry accumulator against a float64 sum.
 */
#include <float.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "skv_internal.h"
#include "test_util.h"

/* Random123's kat_vectors for philox4x32 with 10 rounds. */
static void test_philox_matches_known_answers(void **state) {
    (void)state;
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                       {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    static const skv_rng_key key[3] = {
        {0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u}};
    static const uint32_t want[3][4] = {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
                                        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
                                        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}};
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        skv_philox4x32(ctr[i], key[i], out);
        for (int j = 0; j < 4; j++) assert_int_equal(out[j], want[i][j]);
    }
}

static void test_coins_batch_equals_single_and_are_uniform(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_rng_key key = skv_rng_make_key(synth_rng_u64(&r), 3, 5, 7);
    uint32_t batch[37];
    uint64_t token = synth_rng_u64(&r);
    skv_coins(key, token, SKV_COIN_VALUE, 37, batch);
    for (uint32_t s = 0; s < 37; s++)
        assert_int_equal(batch[s], skv_coin(key, token, s, SKV_COIN_VALUE));
    /* acceptance frequency of p = 0.3 over many tokens: within 5 sigma */
    const int n = 200000;
    int acc = 0;
    for (int t = 0; t < n; t++)
        acc += skv_coin_accept(skv_coin(key, (uint64_t)t, 1, SKV_COIN_CLUSTER), 0.3);
    double sigma = sqrt(n * 0.3 * 0.7);
    assert_true(fabs(acc - 0.3 * n) < 5 * sigma);
    /* different keys give different streams */
    skv_rng_key other = skv_rng_make_key(1, 3, 5, 8);
    int same = 0;
    for (int t = 0; t < 64; t++)
        same += skv_coin(key, (uint64_t)t, 0, 1) == skv_coin(other, (uint64_t)t, 0, 1);
    assert_true(same < 4);
}

static void test_half_conversions_round_trip_and_round_to_nearest(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = skv_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(skv_f32_to_f16(f), h);
    }
    assert_true(skv_f16_to_f32(0x3c00) == 1.0f);
    assert_true(skv_f16_to_f32(0xc000) == -2.0f);
    assert_true(skv_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(skv_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_int_equal(skv_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie: to even */
    assert_int_equal(skv_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    assert_int_equal(skv_f32_to_f16(70000.0f), 0x7c00);
    assert_true(isnan(skv_f16_to_f32(skv_f32_to_f16(NAN))));
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int i = 0; i < 100000; i++) {
        float x = (float)(synth_rng_normal(&r) * 100.0);
        float h = skv_f16_to_f32(skv_f32_to_f16(x));
        float b = skv_bf16_to_f32(skv_f32_to_bf16(x));
        assert_true(fabsf(h - x) <= fabsf(x) * ldexpf(1.0f, -11) + ldexpf(1.0f, -25));
        assert_true(fabsf(b - x) <= fabsf(x) * ldexpf(1.0f, -8));
    }
}

static void test_crc32c_check_value(void **state) {
    (void)state;
    assert_int_equal(skv_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(skv_crc32c("", 0), 0u);
}

/* The accumulator over weighted entries equals the float64 sums it stands for. */
static void test_weighted_accumulator_matches_float64(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 40;
    const size_t n = 300; /* spans several blocks */
    skv_rows K = {SKV_DTYPE_F32, d, n, tu_malloc(n * d * sizeof(float))};
    skv_rows V = {SKV_DTYPE_F32, d, n, tu_malloc(n * d * sizeof(float))};
    synth_fill_normal(&r, K.data, n * d, 1.0f);
    synth_fill_normal(&r, V.data, n * d, 1.0f);
    float *aw = tu_malloc(n * sizeof(float)), *bw = tu_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        aw[i] = (float)synth_rng_uniform(&r);
        bw[i] = (float)(synth_rng_uniform(&r) * 3.0);
    }
    float q[40];
    synth_fill_normal(&r, q, d, 1.0f);
    double o[40];
    skv_acc acc;
    skv_acc_init(&acc, d, o);
    skv_acc_add_rows(&acc, q, &K, &V, 0, 123, aw, 2.0, bw, 0.5);
    skv_acc_add_rows(&acc, q, &K, &V, 123, n - 123, aw, 2.0, bw, 0.5);
    skv_partial *p = tu_partials_new(1, d);
    skv_acc_finish(&acc, p);
    double m = -INFINITY, s[300];
    for (size_t i = 0; i < n; i++) {
        s[i] = 0;
        for (int j = 0; j < d; j++) s[i] += (double)q[j] * ((float *)K.data)[i * d + j];
        if (s[i] > m) m = s[i];
    }
    double l = 0, ref[40] = {0}, mag[40] = {0};
    for (size_t i = 0; i < n; i++) {
        double e = exp(s[i] - m);
        l += 2.0 * aw[i] * e;
        for (int j = 0; j < d; j++) {
            double term = 0.5 * bw[i] * e * ((float *)V.data)[i * d + j];
            ref[j] += term;
            mag[j] += fabs(term); /* rounding scales with the terms, not their sum */
        }
    }
    assert_true(fabs((double)p->m - m) < 1e-5);
    double scale = exp((double)p->m - m);
    assert_true(fabs(p->l * scale - l) <= 1e-5 * l);
    for (int j = 0; j < d; j++) assert_true(fabs(p->o[j] * scale - ref[j]) <= 1e-5 * mag[j]);
    free(p);
    free(K.data);
    free(V.data);
    free(aw);
    free(bw);
}

/* An estimate whose normalizer underflowed (a fuzzer found one in a loaded SubGen sketch)
 * saturates instead of producing Inf; ordinary ratios are exact, including subnormal l. */
static void test_partial_output_saturates_instead_of_overflowing(void **state) {
    (void)state;
    skv_partial *p = tu_partials_new(1, 3);
    p->m = 104.5f;
    p->l = 1.8e-44f; /* subnormal */
    p->o[0] = 0.22f, p->o[1] = -0.5f, p->o[2] = 0.0f;
    float out[3];
    skv_partial_output(p, 3, out);
    assert_true(out[0] == FLT_MAX && out[1] == -FLT_MAX && out[2] == 0.0f);
    p->l = 1e-40f; /* subnormal, ratio in range */
    p->o[0] = 1e-41f;
    skv_partial_output(p, 3, out);
    assert_true(fabs(out[0] - (double)1e-41f / (double)1e-40f) < 1e-6);
    free(p);
}

int main(void) {
    tu_suite_begin("test_numeric");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_matches_known_answers),
        cmocka_unit_test(test_coins_batch_equals_single_and_are_uniform),
        cmocka_unit_test(test_half_conversions_round_trip_and_round_to_nearest),
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_weighted_accumulator_matches_float64),
        cmocka_unit_test(test_partial_output_saturates_instead_of_overflowing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
