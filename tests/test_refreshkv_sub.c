/*
 * test_refreshkv_sub.c — RefreshKV whose full store is a SubGen sketch (full_store = subgen,
 * cache/refreshkv_sub.c), against float64 exact attention on fresh clustered streams:
 *   - the error of full steps and of the partial steps between them falls as the budget
 *     (which sizes the SubGen store and the partial cache) grows, down to the floor the
 *     store's samples per cluster set;
 *   - bytes() never exceeds the budget, whatever the context length, and the worker's
 *     reservation (skv_config_max_bytes) is finite and within it;
 *   - a full step's output is the SubGen store's estimate, and the partial cache then holds
 *     min(K, candidates) distinct rows among the store's rows with values and the rows it
 *     held before (re-placed in place);
 *   - checkpoints round-trip bit for bit (the store inside); a damaged store is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy_eval.h"
#include "skv_internal.h"
#include "test_util.h"

enum { D = 64, G = 4, CL = 32 };

static skv_config sub_cfg(size_t budget, skv_values_mode values, uint64_t seed) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, D);
    c.full_store = SKV_FULL_SUBGEN;
    c.values = values;
    c.budget_bytes = budget;
    c.stride = 4;
    c.threshold = 0.9f;
    c.seed = seed;
    return c;
}

/* Mean relative error (vs float64 exact over all n tokens) of the attends of s with the
 * query groups Qs[steps][G][D]; full_err / part_err split it by the kind of step (from the
 * sketch's full-step counter), NAN where there was none of a kind. */
static void run_error(skv_sketch *s, const float *Qs, int steps, const float *K, const float *V,
                      size_t n, double *full_err, double *part_err) {
    float out[D];
    double ref[D];
    skv_partial *p = tu_malloc(G * skv_partial_stride(D));
    skv_err err;
    double fe = 0, pe = 0;
    int nf = 0, np = 0;
    for (int t = 0; t < steps; t++) {
        const float *Q = Qs + (size_t)t * G * D;
        skv_stats a, b;
        skv_sketch_stats(s, &a);
        TU_OK(skv_sketch_attend(s, Q, G, D, p, &err), &err);
        skv_sketch_stats(s, &b);
        double e = 0;
        for (int j = 0; j < G; j++) {
            skv_partial_output(skv_partial_at(p, D, (size_t)j), D, out);
            synth_ref_attention(Q + j * D, K, V, n, D, ref);
            e += synth_rel_error(out, ref, D) / G;
        }
        if (b.full_steps != a.full_steps)
            fe += e, nf++;
        else
            pe += e, np++;
    }
    *full_err = nf ? fe / nf : NAN;
    *part_err = np ? pe / np : NAN;
    free(p);
}

static void test_refreshkv_sub_error_falls_with_budget(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    enum { STEPS = 64 };
    const size_t n = 8192;
    const size_t budgets[3] = {128 * 1024, 512 * 1024, 2048 * 1024};
    synth_stream_cfg sc = eval_workload(D, CL, 0, 0.0f, synth_rng_u64(&rng));
    sc.value_tail = 0.0f; /* light-tailed values: the comparison is about the store's size */
    synth_stream *st = synth_stream_create(&sc);
    assert_non_null(st);
    float *K = tu_malloc(n * D * sizeof(float)), *V = tu_malloc(n * D * sizeof(float));
    synth_stream_next(st, K, V, n);
    /* the same query groups for every budget: a topic (a key cluster) lasting ~4 steps */
    float *Qs = tu_malloc((size_t)STEPS * G * D * sizeof(float));
    int topic = 0;
    for (int t = 0; t < STEPS; t++) {
        if (t == 0 || synth_rng_uniform(&rng) < 0.25) topic = (int)(synth_rng_uniform(&rng) * CL);
        for (int j = 0; j < G; j++)
            synth_stream_query(st, topic, 1.0f, 0.3f, Qs + ((size_t)t * G + j) * D);
    }
    double fe[3], pe[3], unused;
    for (int b = 0; b < 3; b++) {
        const uint64_t seed = synth_rng_u64(&rng) >> 1;
        for (int every = 0; every < 2; every++) { /* every = 1: each attend a full step */
            skv_config c = sub_cfg(budgets[b], SKV_VALUES_CLUSTER, seed);
            if (every) c.stride = 1, c.threshold = 1.0f;
            skv_sketch *s = NULL;
            skv_err err;
            TU_OK(skv_sketch_create(&c, &s, &err), &err);
            for (size_t i = 0; i < n; i += 1024) /* prefill chunks */
                TU_OK(skv_sketch_append(s, K + i * D, V + i * D, 1024, D, &err), &err);
            run_error(s, Qs, STEPS, K, V, n, every ? &fe[b] : &unused, every ? &unused : &pe[b]);
            skv_stats ss;
            skv_sketch_stats(s, &ss);
            assert_true(skv_sketch_bytes(s) <= budgets[b]);
            if (!every) {
                assert_true(ss.full_steps > 1 && ss.full_steps < ss.attends);
                printf("# budget %7zu B: K=%d, store %zu B, %llu/%llu full steps, ", budgets[b],
                       skv_sketch_config(s)->partial_tokens, ss.full_bytes,
                       (unsigned long long)ss.full_steps, (unsigned long long)ss.attends);
            }
            skv_sketch_destroy(s);
        }
        printf("err of full steps %.4f, of partial steps %.4f\n", fe[b], pe[b]);
    }
    /* The store's error falls steeply once it can hold more clusters than the keys have
     * (32), then levels off at the estimator's floor for this workload (t = 8 samples per
     * cluster average each cluster's value noise; measured ~0.35-0.39 at 512 KB and 2 MB):
     * the largest budget must keep the gain, within that noise, not add to it. */
    for (int k = 0; k < 2; k++) {
        const double *e = k ? pe : fe;
        const char *what = k ? "partial-step" : "full-step";
        if (!(e[1] < 0.75 * e[0]))
            fail_msg("%s error did not fall: %.4f at %zu B, %.4f at %zu B", what, e[0], budgets[0],
                     e[1], budgets[1]);
        if (!(e[2] < 0.75 * e[0] && e[2] < 1.25 * e[1]))
            fail_msg("%s error at %zu B (%.4f) lost the gain (%.4f at %zu B, %.4f at %zu B)", what,
                     budgets[2], e[2], e[0], budgets[0], e[1], budgets[1]);
    }
    synth_stream_destroy(st);
    free(K), free(V), free(Qs);
}

static void test_refreshkv_sub_bytes_bounded_by_budget(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const size_t budget = 96 * 1024;
    for (int mode = 0; mode < 2; mode++) {
        skv_config c = sub_cfg(budget, mode ? SKV_VALUES_CLUSTER : SKV_VALUES_L2, 7);
        skv_config rc;
        skv_err err;
        TU_OK(skv_config_resolve(&c, &rc, &err), &err);
        const size_t reserve = skv_config_max_bytes(&rc);
        assert_true(reserve <= budget); /* a worker can reserve it: no max_tokens needed */
        skv_sketch *s = NULL;
        TU_OK(skv_sketch_create(&c, &s, &err), &err);
        assert_int_equal(skv_sketch_bytes(s), reserve); /* all of it at create, never more */
        float K[256 * D], V[256 * D], Q[G * D];
        skv_partial *p = tu_malloc(G * skv_partial_stride(D));
        for (int r = 0; r < 40; r++) { /* 40 x 256 tokens, attends between */
            synth_fill_normal(&rng, K, 256 * D, 1.0f);
            synth_fill_normal(&rng, V, 256 * D, 1.0f + (float)r);
            TU_OK(skv_sketch_append(s, K, V, r % 2 ? 1 : 256, D, &err), &err);
            synth_fill_normal(&rng, Q, G * D, 1.0f);
            TU_OK(skv_sketch_attend(s, Q, G, D, p, &err), &err);
            if (skv_sketch_bytes(s) != reserve)
                fail_msg("%s: bytes %zu after round %d, reserved %zu (budget %zu)",
                         skv_values_name(rc.values), skv_sketch_bytes(s), r, reserve, budget);
        }
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(st.full_bytes + st.partial_bytes, st.bytes);
        assert_true(st.tokens_held <= (uint64_t)rc.partial_tokens);
        skv_sketch_destroy(s);
        free(p);
    }
    /* too small a budget is refused with the budget's code, nothing made */
    skv_config c = sub_cfg(2048, SKV_VALUES_CLUSTER, 7);
    skv_sketch *s = NULL;
    skv_err err;
    assert_int_equal(skv_sketch_create(&c, &s, &err), SKV_ERR_BUDGET);
    assert_null(s);
}

/* A full step answers with the store's estimate; the partial cache then holds distinct rows
 * among the store's rows with values and the tokens the partial cache held (the last K). */
static void test_refreshkv_sub_full_step_is_store_estimate(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    skv_config c = sub_cfg(0, SKV_VALUES_CLUSTER, synth_rng_u64(&rng) >> 1);
    c.partial_tokens = 24, c.max_clusters = 16, c.samples = 4, c.window = 16;
    skv_sketch *s = NULL;
    skv_err err;
    TU_OK(skv_sketch_create(&c, &s, &err), &err);
    const size_t n = 2000;
    float *K = tu_malloc(n * D * sizeof(float)), *V = tu_malloc(n * D * sizeof(float));
    synth_fill_normal(&rng, K, n * D, 1.0f);
    synth_fill_normal(&rng, V, n * D, 1.0f);
    TU_OK(skv_sketch_append(s, K, V, n, D, &err), &err);
    /* the same SubGen sketch, alone */
    skv_config gc;
    skv_config_default(&gc, SKV_POLICY_SUBGEN, D);
    gc.values = c.values, gc.sinks = c.sinks, gc.window = c.window, gc.samples = c.samples;
    gc.max_clusters = c.max_clusters, gc.seed = c.seed;
    skv_sketch *g = NULL;
    TU_OK(skv_sketch_create(&gc, &g, &err), &err);
    TU_OK(skv_sketch_append(g, K, V, n, D, &err), &err);
    float Q[G * D];
    synth_fill_normal(&rng, Q, G * D, 1.0f);
    skv_partial *p = tu_malloc(G * skv_partial_stride(D)),
                *pg = tu_malloc(G * skv_partial_stride(D));
    TU_OK(skv_sketch_attend(s, Q, G, D, p, &err), &err); /* the first attend: a full step */
    TU_OK(skv_sketch_attend(g, Q, G, D, pg, &err), &err);
    assert_memory_equal(p, pg, G * skv_partial_stride(D));
    skv_entries ep = {0}, eg = {0};
    TU_OK(skv_sketch_entries(s, &ep, &err), &err);
    TU_OK(skv_sketch_entries(g, &eg, &err), &err);
    assert_int_equal(ep.n, 24);
    const size_t rb = D * sizeof(float);
    for (size_t i = 0; i < ep.n; i++) {
        int found = 0;
        for (size_t j = 0; j < eg.n && !found; j++)
            found = eg.b[j] != 0.0f && !memcmp((char *)ep.k + i * rb, (char *)eg.k + j * rb, rb) &&
                    !memcmp((char *)ep.v + i * rb, (char *)eg.v + j * rb, rb);
        for (size_t j = n - 24; j < n && !found; j++) /* the last K tokens, pushed in prefill */
            found = !memcmp((char *)ep.k + i * rb, K + j * D, rb) &&
                    !memcmp((char *)ep.v + i * rb, V + j * D, rb);
        if (!found) fail_msg("partial row %zu is neither a stored row nor a last-K token", i);
        for (size_t j = 0; j < i; j++)
            if (!memcmp((char *)ep.k + i * rb, (char *)ep.k + j * rb, rb))
                fail_msg("partial rows %zu and %zu are the same token", j, i);
    }
    skv_entries_free(&ep), skv_entries_free(&eg);
    /* decode steps push new tokens on top; then a forced full step re-selects among the
     * store's rows with values and the partial cache's own rows (moved in place) */
    float *nk = tu_malloc(40 * D * sizeof(float)), *nv = tu_malloc(40 * D * sizeof(float));
    synth_fill_normal(&rng, nk, 40 * D, 1.0f);
    synth_fill_normal(&rng, nv, 40 * D, 1.0f);
    for (int t = 0; t < 40; t++) {
        TU_OK(skv_sketch_append(s, nk + t * D, nv + t * D, 1, D, &err), &err);
        TU_OK(skv_sketch_append(g, nk + t * D, nv + t * D, 1, D, &err), &err);
    }
    skv_entries before = {0};
    TU_OK(skv_sketch_entries(s, &before, &err), &err);
    TU_OK(skv_sketch_refresh(s, &err), &err);
    synth_fill_normal(&rng, Q, G * D, 1.0f);
    TU_OK(skv_sketch_attend(s, Q, G, D, p, &err), &err);
    TU_OK(skv_sketch_attend(g, Q, G, D, pg, &err), &err);
    assert_memory_equal(p, pg, G * skv_partial_stride(D));
    TU_OK(skv_sketch_entries(s, &ep, &err), &err);
    TU_OK(skv_sketch_entries(g, &eg, &err), &err);
    size_t distinct = 0; /* candidates: store rows with values, then the old partial rows */
    const size_t nc = eg.n + before.n;
    for (size_t i = 0; i < nc; i++) {
        const int st_i = i < eg.n;
        const skv_entries *ei = st_i ? &eg : &before;
        const size_t ri = st_i ? i : i - eg.n;
        if (st_i && eg.b[ri] == 0.0f) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) {
            const int st_j = j < eg.n;
            const skv_entries *ej = st_j ? &eg : &before;
            const size_t rj = st_j ? j : j - eg.n;
            if (st_j && eg.b[rj] == 0.0f) continue;
            seen = !memcmp((char *)ei->k + ri * rb, (char *)ej->k + rj * rb, rb);
        }
        distinct += !seen;
    }
    assert_int_equal(ep.n, distinct < 24 ? distinct : 24);
    for (size_t i = 0; i < ep.n; i++) {
        int found = 0;
        for (size_t j = 0; j < eg.n && !found; j++)
            found = eg.b[j] != 0.0f && !memcmp((char *)ep.k + i * rb, (char *)eg.k + j * rb, rb) &&
                    !memcmp((char *)ep.v + i * rb, (char *)eg.v + j * rb, rb);
        for (size_t j = 0; j < before.n && !found; j++)
            found = !memcmp((char *)ep.k + i * rb, (char *)before.k + j * rb, rb) &&
                    !memcmp((char *)ep.v + i * rb, (char *)before.v + j * rb, rb);
        if (!found) fail_msg("after re-selection, partial row %zu is no candidate", i);
        for (size_t j = 0; j < i; j++)
            if (!memcmp((char *)ep.k + i * rb, (char *)ep.k + j * rb, rb))
                fail_msg("after re-selection, partial rows %zu and %zu are one token", j, i);
    }
    skv_buf buf = {0}; /* the loader checks the ascending-score invariant */
    skv_sketch *back = NULL;
    TU_OK(skv_sketch_save(s, &buf, &err), &err);
    TU_OK(skv_sketch_load(buf.data, buf.len, &back, NULL, &err), &err);
    skv_sketch_destroy(back);
    skv_buf_free(&buf);
    skv_entries_free(&ep), skv_entries_free(&eg), skv_entries_free(&before);
    free(nk), free(nv);
    skv_sketch_destroy(s), skv_sketch_destroy(g);
    free(K), free(V), free(p), free(pg);
}

static void test_refreshkv_sub_checkpoint_round_trip(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    skv_config c = sub_cfg(64 * 1024, SKV_VALUES_L2, synth_rng_u64(&rng) >> 1);
    c.dtype = SKV_DTYPE_F16;
    skv_sketch *a = NULL, *b = NULL;
    skv_err err;
    TU_OK(skv_sketch_create(&c, &a, &err), &err);
    float K[300 * D], V[300 * D], Q[G * D];
    synth_fill_normal(&rng, K, 300 * D, 1.0f);
    synth_fill_normal(&rng, V, 300 * D, 1.0f);
    TU_OK(skv_sketch_append(a, K, V, 300, D, &err), &err);
    skv_partial *pa = tu_malloc(G * skv_partial_stride(D)),
                *pb = tu_malloc(G * skv_partial_stride(D));
    for (int t = 0; t < 7; t++) {
        synth_fill_normal(&rng, K, D, 1.0f), synth_fill_normal(&rng, V, D, 1.0f);
        synth_fill_normal(&rng, Q, G * D, 1.0f);
        TU_OK(skv_sketch_append(a, K, V, 1, D, &err), &err);
        TU_OK(skv_sketch_attend(a, Q, G, D, pa, &err), &err);
    }
    skv_buf buf = {0};
    TU_OK(skv_sketch_save(a, &buf, &err), &err);
    TU_OK(skv_sketch_load(buf.data, buf.len, &b, NULL, &err), &err);
    assert_int_equal(skv_sketch_bytes(a), skv_sketch_bytes(b));
    for (int t = 0; t < 30; t++) { /* both go on alike, full steps included */
        synth_fill_normal(&rng, K, 3 * D, 1.0f), synth_fill_normal(&rng, V, 3 * D, 1.0f);
        synth_fill_normal(&rng, Q, G * D, 1.0f);
        const size_t nt = t % 10 == 9 ? 3 : 1;
        TU_OK(skv_sketch_append(a, K, V, nt, D, &err), &err);
        TU_OK(skv_sketch_append(b, K, V, nt, D, &err), &err);
        TU_OK(skv_sketch_attend(a, Q, G, D, pa, &err), &err);
        TU_OK(skv_sketch_attend(b, Q, G, D, pb, &err), &err);
        assert_memory_equal(pa, pb, G * skv_partial_stride(D));
    }
    skv_stats sa, sb;
    skv_sketch_stats(a, &sa), skv_sketch_stats(b, &sb);
    assert_int_equal(sa.full_steps, sb.full_steps);
    assert_true(sa.full_steps > 1);
    /* a flipped byte inside the embedded store (its own checksum) or a cut is refused */
    skv_sketch *bad = NULL;
    buf.data[buf.len - 40] ^= 0x5a;
    assert_int_not_equal(skv_sketch_load(buf.data, buf.len, &bad, NULL, &err), SKV_OK);
    assert_null(bad);
    buf.data[buf.len - 40] ^= 0x5a;
    assert_int_not_equal(skv_sketch_load(buf.data, buf.len - 8, &bad, NULL, &err), SKV_OK);
    assert_null(bad);
    skv_buf_free(&buf);
    skv_sketch_destroy(a), skv_sketch_destroy(b);
    free(pa), free(pb);
}

int main(void) {
    tu_suite_begin("refreshkv_sub");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refreshkv_sub_error_falls_with_budget),
        cmocka_unit_test(test_refreshkv_sub_bytes_bounded_by_budget),
        cmocka_unit_test(test_refreshkv_sub_full_step_is_store_estimate),
        cmocka_unit_test(test_refreshkv_sub_checkpoint_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
