/*
 * test_entries.c — a sketch's flat entry list (what the GPU backend uploads) answers every
 * query like the sketch itself, for every policy and storage type.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "skv_internal.h"
#include "test_util.h"

static void test_entries_attend_equals_sketch_attend_for_every_policy(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 48;
    const size_t n = 3000;
    synth_stream_cfg sc = {.d = d,
                           .clusters = 6,
                           .center_norm = 6.0f,
                           .spread = 0.3f,
                           .value_mean = 4.0f,
                           .value_tail = 0.3f,
                           .seed = synth_rng_u64(&r)};
    synth_stream *st = synth_stream_create(&sc);
    assert_non_null(st);
    float *K = tu_malloc(n * d * sizeof(float)), *V = tu_malloc(n * d * sizeof(float));
    synth_stream_next(st, K, V, n);
    const skv_policy_id pols[6] = {SKV_POLICY_EXACT,  SKV_POLICY_SINKWIN, SKV_POLICY_H2O,
                                   SKV_POLICY_SUBGEN, SKV_POLICY_SUBGEN,  SKV_POLICY_REFRESHKV};
    skv_entries e = {0};
    for (int dt = 0; dt < 3; dt++)
        for (int p = 0; p < 6; p++) {
            skv_config c;
            skv_config_default(&c, pols[p], d);
            c.dtype = (skv_dtype)dt;
            c.seed = synth_rng_u64(&r);
            if (p >= 1) c.budget_bytes = 64 << 10;
            if (p == 4) c.values = SKV_VALUES_CLUSTER;
            if (p == 5) c.threshold = -1.0f; /* after the prefill, only partial steps */
            skv_sketch *s = tu_create(&c);
            tu_append_chunked(s, K, V, n, d, 777);
            skv_err err;
            if (p == 5) { /* refreshkv: the prefill attend selects the partial cache */
                float q0[48];
                synth_stream_query(st, 5, 1.0f, 0.3f, q0);
                skv_partial *p0 = tu_partials_new(1, d);
                tu_attend(s, q0, 1, d, p0);
                free(p0);
            }
            TU_OK(skv_sketch_entries(s, &e, &err), &err);
            skv_stats sts;
            skv_sketch_stats(s, &sts);
            assert_true(e.n >= sts.tokens_held && e.n > 0);
            for (int qi = 0; qi < 4; qi++) {
                float q[48], qs[48], want[48], got[48];
                synth_stream_query(st, qi, 1.0f, 0.3f, q);
                for (int j = 0; j < d; j++) qs[j] = q[j] / sqrtf((float)d);
                skv_partial *pe = tu_partials_new(1, d), *ps = tu_partials_new(1, d);
                skv_entries_attend(&e, qs, pe);
                tu_attend(s, q, 1, d, ps);
                skv_partial_output(pe, d, got);
                skv_partial_output(ps, d, want);
                double num = 0, den = 0;
                for (int j = 0; j < d; j++) {
                    num += (got[j] - want[j]) * (double)(got[j] - want[j]);
                    den += (double)want[j] * want[j];
                }
                if (!(sqrt(num) <= 1e-5 * sqrt(den)))
                    fail_msg("policy %d dtype %d query %d: entries differ by %g relative", p, dt,
                             qi, sqrt(num / den));
                free(pe);
                free(ps);
            }
            skv_sketch_destroy(s);
        }
    skv_entries_free(&e);
    synth_stream_destroy(st);
    free(K);
    free(V);
}

int main(void) {
    tu_suite_begin("test_entries");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_attend_equals_sketch_attend_for_every_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
