/*
 * test_subgen.c — the SubGen sketch (DESIGN.md section 3): clustering of clusterable keys,
 * unbiased normalizer and numerator estimates, error that shrinks with the sample sizes,
 * exactness when the window covers everything, determinism, and bounded memory on
 * unclusterable input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

/* ---- workloads ----------------------------------------------------------------------- */

/*
 * n tokens from `m` clusters (synth_stream). Values get a per-cluster offset of
 * per-coordinate std `value_offset`, so an output aimed at one cluster has a norm of the
 * order of its values instead of averaging to ~0.
 */
typedef struct workload {
    int d, m;
    size_t n;
    float *K, *V;
    int *cluster; /* cluster of each token */
    synth_stream *st;
} workload;

static void workload_make(workload *w, uint64_t seed, int d, int m, size_t n, float center_norm,
                          float spread, float value_offset, float value_tail) {
    synth_stream_cfg sc = {.d = d,
                           .clusters = m,
                           .center_norm = center_norm,
                           .spread = spread,
                           .drift = 0.0f,
                           .value_tail = value_tail,
                           .uniform = 0,
                           .seed = seed};
    w->d = d, w->m = m, w->n = n;
    w->st = synth_stream_create(&sc);
    assert_non_null(w->st);
    w->K = tu_malloc(n * (size_t)d * sizeof(float));
    w->V = tu_malloc(n * (size_t)d * sizeof(float));
    w->cluster = tu_malloc(n * sizeof(int));
    synth_rng r;
    synth_rng_seed(&r, seed ^ 0x5eedull);
    float *offs = tu_malloc((size_t)m * d * sizeof(float));
    synth_fill_normal(&r, offs, (size_t)m * d, value_offset);
    for (size_t i = 0; i < n; i++) {
        synth_stream_next(w->st, w->K + i * d, w->V + i * d, 1);
        int c = synth_stream_last_cluster(w->st);
        assert_true(c >= 0 && c < m);
        w->cluster[i] = c;
        for (int j = 0; j < d; j++) w->V[i * d + j] += offs[(size_t)c * d + j];
    }
    free(offs);
}

static void workload_free(workload *w) {
    synth_stream_destroy(w->st);
    free(w->K), free(w->V), free(w->cluster);
}

/* A subgen config where every token goes through the sketch (no sinks, no window). */
static skv_config subgen_cfg(int d, skv_values_mode vm, int t, int s, float delta, uint64_t seed) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SUBGEN, d);
    c.values = vm;
    c.sinks = 0;
    c.window = 0;
    c.samples = t;
    c.value_slots = s;
    c.max_clusters = 1024;
    c.delta = delta;
    c.seed = seed;
    return c;
}

static skv_sketch *subgen_over(const skv_config *c, const workload *w, size_t chunk) {
    skv_sketch *s = tu_create(c);
    const skv_config *rc = skv_sketch_config(s);
    assert_int_equal(rc->sinks, c->sinks);
    assert_int_equal(rc->window, c->window);
    tu_append_chunked(s, w->K, w->V, w->n, w->d, chunk);
    return s;
}

/* ---- a) clustering -------------------------------------------------------------------- */

static void test_subgen_clusterable_keys_open_exactly_m_clusters(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, m = 8;
    size_t n = 4000;
    /* centers of norm 8 in d = 32 are ~11.3 apart; keys lie ~1.4 from their center and
     * ~2.0 from each other, so delta = 4 joins a cluster and separates clusters. */
    workload w;
    workload_make(&w, synth_rng_u64(&r), d, m, n, 8.0f, 0.25f, 1.0f, 0.0f);
    for (skv_values_mode vm = SKV_VALUES_L2; vm <= SKV_VALUES_CLUSTER; vm++) {
        skv_config c = subgen_cfg(d, vm, 8, 64, 4.0f, synth_rng_u64(&r));
        skv_sketch *s = tu_create(&c);
        int visited[8] = {0}, nvisited = 0;
        for (size_t i = 0; i < n; i += 100) {
            tu_append(s, w.K + i * d, w.V + i * d, 100, d);
            for (size_t t = i; t < i + 100; t++)
                if (!visited[w.cluster[t]]) visited[w.cluster[t]] = 1, nvisited++;
            skv_stats st;
            skv_sketch_stats(s, &st);
            assert_true(st.clusters <= m);
            assert_int_equal(st.clusters, nvisited);
            assert_int_equal(st.merges, 0);
            assert_true(st.cluster_samples <= st.clusters * 8);
        }
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(nvisited, m);
        assert_int_equal(st.clusters, m);
        assert_int_equal(st.tokens_seen, n);
        assert_int_equal(st.tokens_held, 0);
        /* every cluster has hundreds of members, so every reservoir slot is filled */
        assert_int_equal(st.cluster_samples, m * 8);
        skv_sketch_destroy(s);
    }
    workload_free(&w);
}

/* ---- b) unbiased estimates --------------------------------------------------------------- */

typedef struct running {
    double sum, sumsq;
    int n;
} running;
static void running_add(running *a, double x) { a->sum += x, a->sumsq += x * x, a->n++; }
static double running_mean(const running *a) { return a->sum / a->n; }
static double running_std(const running *a) {
    double mu = running_mean(a);
    double var = (a->sumsq - a->n * mu * mu) / (a->n - 1);
    return var > 0.0 ? sqrt(var) : 0.0;
}

/* |mean - want| within 4 standard errors (+ slack); and a non-degenerate estimator. */
static void assert_unbiased(const running *a, double want, double slack, const char *what) {
    double mean = running_mean(a), sd = running_std(a);
    double tol = 4.0 * sd / sqrt((double)a->n) + slack;
    printf("#   %-34s mean %.5f want %.5f (std %.4f, tol %.4f)\n", what, mean, want, sd, tol);
    if (!(fabs(mean - want) <= tol))
        fail_msg("%s biased: mean %.6f vs %.6f (tol %.6f)", what, mean, want, tol);
    if (!(sd > 1e-4)) fail_msg("%s is not random (std %.3e): the test could not fail", what, sd);
}

/*
 * Same data, many sketch seeds. With sinks = window = 0 every token is estimated:
 *   l e^m   estimates tau(q) = sum_i e^{<q,k_i>/sqrt d}
 *   o e^m   estimates N(q)   = sum_i e^{<q,k_i>/sqrt d} v_i
 * Both are divided by the true tau (ratios near 1), so the checks are scale-free.
 */
static void check_unbiased(skv_values_mode vm, const char *tag) {
    synth_rng r;
    tu_rng_for(&r, tag);
    int d = 16, m = 4, nseeds = 400;
    size_t n = 1500;
    workload w;
    workload_make(&w, synth_rng_u64(&r), d, m, n, 6.0f, 0.5f, 1.0f, 0.0f);
    float q[16];
    synth_stream_query(w.st, (int)tu_rand_range(&r, 0, (size_t)m - 1), 0.5f, 0.3f, q);
    double ref[16];
    double logz = synth_ref_attention(q, w.K, w.V, n, d, ref);
    /* Two fixed directions for the numerator: the true output's, and a random one. */
    double u1[16], u2[16], n1 = 0.0, n2 = 0.0;
    for (int j = 0; j < d; j++) {
        u1[j] = ref[j], u2[j] = synth_rng_normal(&r);
        n1 += u1[j] * u1[j], n2 += u2[j] * u2[j];
    }
    double want1 = 0.0, want2 = 0.0;
    for (int j = 0; j < d; j++) {
        u1[j] /= sqrt(n1), u2[j] /= sqrt(n2);
        want1 += ref[j] * u1[j], want2 += ref[j] * u2[j];
    }
    running tau = {0}, num1 = {0}, num2 = {0};
    uint64_t seed0 = synth_rng_u64(&r);
    skv_partial *p = tu_partials_new(1, d);
    for (int k = 0; k < nseeds; k++) {
        skv_config c = subgen_cfg(d, vm, 4, 32, 4.5f, seed0 + (uint64_t)k);
        skv_sketch *s = subgen_over(&c, &w, 500);
        tu_attend(s, q, 1, d, p);
        assert_true(p->l > 0.0f && isfinite(p->m));
        running_add(&tau, exp(log((double)p->l) + p->m - logz));
        double scale = exp((double)p->m - logz), dot1 = 0.0, dot2 = 0.0;
        for (int j = 0; j < d; j++)
            dot1 += p->o[j] * scale * u1[j], dot2 += p->o[j] * scale * u2[j];
        running_add(&num1, dot1);
        running_add(&num2, dot2);
        skv_sketch_destroy(s);
    }
    printf("# %s (n=%zu, %d seeds):\n", tag, n, nseeds);
    assert_unbiased(&tau, 1.0, 1e-3, "normalizer l e^m / tau");
    assert_unbiased(&num1, want1, 1e-3 * fabs(want1), "numerator along output / tau");
    assert_unbiased(&num2, want2, 1e-3 * (fabs(want2) + fabs(want1)),
                    "numerator along random dir / tau");
    free(p);
    workload_free(&w);
}

static void test_subgen_l2_normalizer_and_numerator_are_unbiased(void **state) {
    (void)state;
    check_unbiased(SKV_VALUES_L2, "test_subgen_l2_normalizer_and_numerator_are_unbiased");
}

static void test_subgen_cluster_normalizer_and_numerator_are_unbiased(void **state) {
    (void)state;
    check_unbiased(SKV_VALUES_CLUSTER, "test_subgen_cluster_normalizer_and_numerator_are_unbiased");
}

/* ---- c) error shrinks with samples ------------------------------------------------------ */

static void check_error_shrinks(skv_values_mode vm, const char *tag) {
    synth_rng r;
    tu_rng_for(&r, tag);
    int d = 32, m = 8, nworkloads = 4;
    size_t n = 4000;
    const int ts[3] = {2, 8, 32}, ss[3] = {32, 128, 512};
    double err[3] = {0, 0, 0};
    int count = 0;
    for (int wl = 0; wl < nworkloads; wl++) {
        workload w;
        workload_make(&w, synth_rng_u64(&r), d, m, n, 8.0f, 0.25f, 1.0f, 0.0f);
        float Q[8 * 32];
        double ref[8 * 32];
        for (int c = 0; c < m; c++) {
            synth_stream_query(w.st, c, 0.3f, 0.1f, Q + c * d);
            synth_ref_attention(Q + c * d, w.K, w.V, n, d, ref + c * d);
        }
        for (int k = 0; k < 3; k++) {
            skv_config cfg = subgen_cfg(d, vm, ts[k], ss[k], 4.0f, synth_rng_u64(&r));
            skv_sketch *s = subgen_over(&cfg, &w, 1000);
            float out[8 * 32];
            /* the m queries as one GQA group of g = m heads */
            tu_attend_output(s, Q, m, d, out);
            for (int c = 0; c < m; c++) err[k] += synth_rel_error(out + c * d, ref + c * d, d);
            skv_sketch_destroy(s);
        }
        count += m;
        workload_free(&w);
    }
    for (int k = 0; k < 3; k++) err[k] /= count;
    printf("# %s: mean rel err (t,s)=(2,32) %.4f  (8,128) %.4f  (32,512) %.4f\n", tag, err[0],
           err[1], err[2]);
    assert_true(isfinite(err[0]) && isfinite(err[2]));
    if (!(err[2] * 2.5 <= err[0]))
        fail_msg("%s: error did not shrink 2.5x with 16x samples: %.4f -> %.4f", tag, err[0],
                 err[2]);
    assert_true(err[1] < err[0]);
    assert_true(err[2] < err[1]);
}

static void test_subgen_l2_error_shrinks_with_samples(void **state) {
    (void)state;
    check_error_shrinks(SKV_VALUES_L2, "test_subgen_l2_error_shrinks_with_samples");
}

static void test_subgen_cluster_error_shrinks_with_samples(void **state) {
    (void)state;
    check_error_shrinks(SKV_VALUES_CLUSTER, "test_subgen_cluster_error_shrinks_with_samples");
}

/* ---- d) exact when the window covers everything ------------------------------------------ */

static void test_subgen_window_covering_everything_equals_exact(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 64, g = 4;
    for (skv_values_mode vm = SKV_VALUES_L2; vm <= SKV_VALUES_CLUSTER; vm++) {
        size_t n = tu_rand_range(&r, 1, 1500);
        float *K, *V;
        tu_make_random_kv(&r, n, d, &K, &V);
        skv_config c;
        skv_config_default(&c, SKV_POLICY_SUBGEN, d);
        c.values = vm;
        c.sinks = (int)tu_rand_range(&r, 0, 8);
        c.window = (int)(n + tu_rand_range(&r, 0, 20));
        c.seed = synth_rng_u64(&r);
        skv_sketch *s = tu_create(&c);
        tu_append_chunked(s, K, V, n, d, tu_rand_range(&r, 1, n));
        float Q[4 * 64], out[4 * 64];
        double ref[64];
        synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
        tu_attend_output(s, Q, g, d, out);
        for (int h = 0; h < g; h++) {
            synth_ref_attention(Q + h * d, K, V, n, d, ref);
            TU_ASSERT_REL_CLOSE(out + h * d, ref, d, 1e-5, "values=%s n=%zu head %d",
                                skv_values_name(vm), n, h);
        }
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(st.tokens_held, n);
        assert_int_equal(st.clusters, 0);
        free(K), free(V);
        skv_sketch_destroy(s);
    }
}

/* ---- e) determinism ------------------------------------------------------------------- */

static void test_subgen_same_seed_same_data_gives_identical_partials(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, m = 8, g = 4;
    workload w;
    workload_make(&w, synth_rng_u64(&r), d, m, 3000, 8.0f, 0.25f, 1.0f, 0.0f);
    float Q[4 * 32];
    synth_fill_normal(&r, Q, (size_t)g * d, 0.3f);
    size_t pb = (size_t)g * skv_partial_stride(d);
    for (skv_values_mode vm = SKV_VALUES_L2; vm <= SKV_VALUES_CLUSTER; vm++) {
        uint64_t seed = synth_rng_u64(&r);
        skv_config c = subgen_cfg(d, vm, 4, 32, 4.0f, seed);
        c.sinks = 2, c.window = 16;
        skv_sketch *a = subgen_over(&c, &w, 1000);
        skv_sketch *b = subgen_over(&c, &w, 1000);
        skv_partial *pa = tu_partials_new(g, d), *pb_ = tu_partials_new(g, d);
        tu_attend(a, Q, g, d, pa);
        tu_attend(b, Q, g, d, pb_);
        assert_memory_equal(pa, pb_, pb);
        skv_buf ba = tu_save(a), bb = tu_save(b);
        assert_true(tu_bufs_equal(&ba, &bb));
        skv_buf_free(&ba), skv_buf_free(&bb);

        /* A different seed draws different reservoirs. */
        c.seed = seed + 1;
        skv_sketch *o = subgen_over(&c, &w, 1000);
        tu_attend(o, Q, g, d, pb_);
        assert_memory_not_equal(pa, pb_, pb);
        skv_sketch_destroy(a), skv_sketch_destroy(b), skv_sketch_destroy(o);
        free(pa), free(pb_);
    }
    workload_free(&w);
}

/* Counter-based coins keyed by token index: ingest order is fixed, so chunking of the
 * appends must not change the state (DESIGN.md: parallel ingest equals sequential). */
static void test_subgen_chunked_append_equals_token_by_token(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 16, m = 6;
    size_t n = 1200;
    workload w;
    workload_make(&w, synth_rng_u64(&r), d, m, n, 8.0f, 0.25f, 1.0f, 0.0f);
    float q[16];
    synth_fill_normal(&r, q, (size_t)d, 0.3f);
    for (skv_values_mode vm = SKV_VALUES_L2; vm <= SKV_VALUES_CLUSTER; vm++) {
        skv_config c = subgen_cfg(d, vm, 4, 32, 4.0f, synth_rng_u64(&r));
        c.sinks = 3, c.window = 10;
        skv_sketch *one = subgen_over(&c, &w, 1);
        skv_sketch *big = subgen_over(&c, &w, n);
        skv_sketch *odd = subgen_over(&c, &w, tu_rand_range(&r, 2, 300));
        skv_partial *p1 = tu_partials_new(1, d), *p2 = tu_partials_new(1, d),
                    *p3 = tu_partials_new(1, d);
        tu_attend(one, q, 1, d, p1);
        tu_attend(big, q, 1, d, p2);
        tu_attend(odd, q, 1, d, p3);
        assert_memory_equal(p1, p2, skv_partial_stride(d));
        assert_memory_equal(p1, p3, skv_partial_stride(d));
        skv_sketch_destroy(one), skv_sketch_destroy(big), skv_sketch_destroy(odd);
        free(p1), free(p2), free(p3);
    }
    workload_free(&w);
}

/* ---- f) bounded memory -------------------------------------------------------------- */

static void test_subgen_memory_stays_within_budget_on_unclusterable_input(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 128;
    const size_t total = (size_t)1 << 20, chunk = 4096;
    synth_stream_cfg sc = {.d = d,
                           .clusters = 1,
                           .center_norm = 0.0f,
                           .spread = 1.0f,
                           .uniform = 1,
                           .seed = synth_rng_u64(&r)};
    synth_stream *st = synth_stream_create(&sc);
    assert_non_null(st);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SUBGEN, d);
    c.dtype = SKV_DTYPE_F16;
    c.budget_bytes = 256 * 1024;
    /* defaults for sinks, window and t; the budget derives max_clusters and s */
    c.seed = synth_rng_u64(&r);
    skv_sketch *s = tu_create(&c);
    const skv_config *rc = skv_sketch_config(s);
    printf("# budget 256 KiB at d=128 f16 resolved to sinks=%d window=%d t=%d s=%d "
           "max_clusters=%d\n",
           rc->sinks, rc->window, rc->samples, rc->value_slots, rc->max_clusters);
    assert_true(rc->max_clusters >= 1 && rc->samples >= 1);
    float *K = tu_malloc(chunk * d * sizeof(float)), *V = tu_malloc(chunk * d * sizeof(float));
    float q[128], out[128];
    assert_true(skv_sketch_bytes(s) <= c.budget_bytes);
    for (size_t i = 0; i < total; i += chunk) {
        synth_stream_next(st, K, V, chunk);
        tu_append(s, K, V, chunk, d);
        skv_stats sts;
        skv_sketch_stats(s, &sts);
        size_t bytes = skv_sketch_bytes(s);
        if (bytes > c.budget_bytes)
            fail_msg("%zu bytes > budget %zu after %zu tokens", bytes, c.budget_bytes, i + chunk);
        assert_int_equal(sts.bytes, bytes);
        assert_true(sts.clusters >= 1 && sts.clusters <= rc->max_clusters);
        if ((i / chunk) % 32 == 31) {
            synth_fill_normal(&r, q, (size_t)d, 1.0f);
            tu_attend_output(s, q, 1, d, out);
            assert_true(tu_all_finite(out, (size_t)d));
        }
    }
    skv_stats sts;
    skv_sketch_stats(s, &sts);
    printf("# after %zu tokens: %zu bytes, %d clusters, %d merges, delta %.3f\n", total, sts.bytes,
           sts.clusters, sts.merges, (double)sts.delta);
    assert_int_equal(sts.tokens_seen, total);
    /* unclusterable input must have forced the radius to grow */
    assert_true(sts.merges >= 1);
    synth_fill_normal(&r, q, (size_t)d, 1.0f);
    tu_attend_output(s, q, 1, d, out);
    assert_true(tu_all_finite(out, (size_t)d));
    free(K), free(V);
    synth_stream_destroy(st);
    skv_sketch_destroy(s);
}

/* ---- g) heavy tails ----------------------------------------------------------------- */

static void test_subgen_heavy_tailed_values_give_finite_outputs(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, m = 8, g = 8;
    const float tails[2] = {1.0f, 2.0f};
    for (int ti = 0; ti < 2; ti++) {
        workload w;
        workload_make(&w, synth_rng_u64(&r), d, m, 5000, 8.0f, 0.25f, 0.0f, tails[ti]);
        float Q[8 * 32], out[8 * 32];
        for (int c = 0; c < g; c++) synth_stream_query(w.st, c, 0.3f, 0.1f, Q + c * d);
        for (skv_values_mode vm = SKV_VALUES_L2; vm <= SKV_VALUES_CLUSTER; vm++) {
            skv_config c = subgen_cfg(d, vm, 8, 128, 4.0f, synth_rng_u64(&r));
            c.sinks = 4, c.window = 32;
            skv_sketch *s = subgen_over(&c, &w, 777);
            tu_attend_output(s, Q, g, d, out);
            if (!tu_all_finite(out, (size_t)g * d))
                fail_msg("non-finite output, values=%s tail=%.1f", skv_values_name(vm),
                         (double)tails[ti]);
            skv_stats st;
            skv_sketch_stats(s, &st);
            assert_true(isfinite(st.value_mass));
            skv_sketch_destroy(s);
        }
        workload_free(&w);
    }
}

int main(void) {
    tu_suite_begin("test_subgen");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subgen_clusterable_keys_open_exactly_m_clusters),
        cmocka_unit_test(test_subgen_l2_normalizer_and_numerator_are_unbiased),
        cmocka_unit_test(test_subgen_cluster_normalizer_and_numerator_are_unbiased),
        cmocka_unit_test(test_subgen_l2_error_shrinks_with_samples),
        cmocka_unit_test(test_subgen_cluster_error_shrinks_with_samples),
        cmocka_unit_test(test_subgen_window_covering_everything_equals_exact),
        cmocka_unit_test(test_subgen_same_seed_same_data_gives_identical_partials),
        cmocka_unit_test(test_subgen_chunked_append_equals_token_by_token),
        cmocka_unit_test(test_subgen_memory_stays_within_budget_on_unclusterable_input),
        cmocka_unit_test(test_subgen_heavy_tailed_values_give_finite_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
