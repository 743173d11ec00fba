/*
 * test_h2o.c — heavy hitters + recent window, against hand-computed cases and a float64
 * model of the contract:
 *   - at most H + R tokens are held;
 *   - attend adds, to every held token, its softmax probability summed over the g heads;
 *   - appending a token while H + R are held first evicts, among the held tokens that are
 *     not among the R most recent, the lowest accumulated score (ties: the oldest); the
 *     new token starts with score 0. The new token counts as one of the R most recent
 *     (cache/h2o.c), so R - 1 held tokens are protected and after the append the cache
 *     is exactly the R most recent tokens plus H heavy hitters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

static skv_sketch *h2o_new(int d, int heavy, int window) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_H2O, d);
    c.heavy = heavy;
    c.window = window;
    skv_sketch *s = tu_create(&c);
    assert_int_equal(skv_sketch_config(s)->heavy, heavy);
    assert_int_equal(skv_sketch_config(s)->window, window);
    return s;
}

/* ---- the float64 model ------------------------------------------------------------- */

typedef struct h2o_model {
    int d, cap, recent;
    const float *K, *V; /* all tokens ever appended, by index */
    int held;
    size_t *idx;   /* held token indices in arrival order */
    double *score; /* their accumulated scores */
} h2o_model;

static void model_init(h2o_model *m, int d, int heavy, int window, const float *K, const float *V) {
    m->d = d, m->cap = heavy + window, m->recent = window, m->K = K, m->V = V, m->held = 0;
    m->idx = tu_malloc((size_t)m->cap * sizeof(size_t));
    m->score = tu_malloc((size_t)m->cap * sizeof(double));
}

static void model_free(h2o_model *m) { free(m->idx), free(m->score); }

/* Returns the evicted token index, or (size_t)-1 when nothing was evicted. */
static size_t model_append(h2o_model *m, size_t tok) {
    size_t evicted = (size_t)-1;
    if (m->held == m->cap) {
        /* the last R - 1 held tokens are protected (the new one is the R-th recent) */
        int protected_ = m->recent > 0 ? m->recent - 1 : 0;
        int best = 0;
        for (int i = 1; i < m->held - protected_; i++)
            if (m->score[i] < m->score[best]) /* strict: ties keep the oldest */
                best = i;
        evicted = m->idx[best];
        for (int i = best; i + 1 < m->held; i++)
            m->idx[i] = m->idx[i + 1], m->score[i] = m->score[i + 1];
        m->held--;
    }
    m->idx[m->held] = tok;
    m->score[m->held] = 0.0;
    m->held++;
    return evicted;
}

/* Attend g heads: out[g][d] in double, scores accumulated. */
static void model_attend(h2o_model *m, const float *Q, int g, double *out) {
    int d = m->d;
    double *p = tu_malloc((size_t)m->held * sizeof(double));
    for (int h = 0; h < g; h++) {
        const float *q = Q + (size_t)h * d;
        double mx = -INFINITY, z = 0.0;
        for (int i = 0; i < m->held; i++) {
            const float *k = m->K + m->idx[i] * d;
            double s = 0.0;
            for (int j = 0; j < d; j++) s += (double)q[j] * k[j];
            p[i] = s / sqrt((double)d);
            if (p[i] > mx) mx = p[i];
        }
        for (int i = 0; i < m->held; i++) z += (p[i] = exp(p[i] - mx));
        double *o = out + (size_t)h * d;
        for (int j = 0; j < d; j++) o[j] = 0.0;
        for (int i = 0; i < m->held; i++) {
            p[i] /= z;
            m->score[i] += p[i];
            const float *v = m->V + m->idx[i] * d;
            for (int j = 0; j < d; j++) o[j] += p[i] * v[j];
        }
    }
    free(p);
}

/* Attend both, compare every head within tol. */
static void check_against_model(skv_sketch *s, h2o_model *m, const float *Q, int g, double tol) {
    int d = m->d;
    float *out = tu_malloc((size_t)g * d * sizeof(float));
    double *want = tu_malloc((size_t)g * d * sizeof(double));
    tu_attend_output(s, Q, g, d, out);
    model_attend(m, Q, g, want);
    for (int h = 0; h < g; h++)
        TU_ASSERT_REL_CLOSE(out + (size_t)h * d, want + (size_t)h * d, d, tol, "head %d", h);
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_held, (uint64_t)m->held);
    free(out), free(want);
}

/* ---- hand-computed cases (d = 2) ---------------------------------------------------- */

static void test_h2o_evicts_lower_score_token_not_the_older_one(void **state) {
    (void)state;
    /* H = 2, R = 1. q0 = (1, 0) favours t0 = (2, 0) and shuns t1 = (-2, 0). */
    const float K[4][2] = {{2, 0}, {-2, 0}, {0, 1}, {0, -1}};
    const float V[4][2] = {{1, 0}, {0, 1}, {-1, 2}, {3, -1}};
    const float q0[2] = {1, 0}, q1[2] = {-1, 0.5f};
    skv_sketch *s = h2o_new(2, 2, 1);
    tu_append(s, &K[0][0], &V[0][0], 3, 2); /* fills H + R = 3 */
    float out[2];
    tu_attend_output(s, q0, 1, 2, out);
    /* Scores: t0 = e^{sqrt2}/Z, t1 = e^{-sqrt2}/Z, t2 = 1/Z. Appending t3 (R = 1: only
     * t3 itself is protected) must evict t1, the lowest, although t0 is older. */
    tu_append(s, K[3], V[3], 1, 2);
    tu_attend_output(s, q1, 1, 2, out);
    /* softmax of q1 over {t0, t2, t3}: scores -2/sqrt2, 0.5/sqrt2, -0.5/sqrt2 */
    const double r2 = sqrt(2.0);
    double e0 = exp(-2.0 / r2), e2 = exp(0.5 / r2), e3 = exp(-0.5 / r2);
    double z = e0 + e2 + e3;
    double want[2] = {(e0 * 1 + e2 * -1 + e3 * 3) / z, (e0 * 0 + e2 * 2 + e3 * -1) / z};
    TU_ASSERT_REL_CLOSE(out, want, 2, 1e-6, "survivors {t0, t2, t3}");
    /* FIFO would have kept {t1, t2, t3}; q1 loves t1 so that answer is far away. */
    double fifo[2];
    synth_ref_attention(q1, &K[1][0], &V[1][0], 3, 2, fifo);
    assert_true(synth_rel_error(out, fifo, 2) > 0.1);
    skv_sketch_destroy(s);
}

static void test_h2o_ties_at_zero_score_evict_the_oldest(void **state) {
    (void)state;
    /* No attend before the fourth token: every score is 0, so t0 goes. */
    const float K[4][2] = {{3, 0}, {0, 1}, {1, 1}, {-1, 0}};
    const float V[4][2] = {{5, 5}, {0, 1}, {-1, 2}, {3, -1}};
    const float q[2] = {1, 0.25f};
    skv_sketch *s = h2o_new(2, 2, 1);
    for (int i = 0; i < 4; i++) tu_append(s, K[i], V[i], 1, 2);
    float out[2];
    double want[2];
    tu_attend_output(s, q, 1, 2, out);
    synth_ref_attention(q, &K[1][0], &V[1][0], 3, 2, want); /* {t1, t2, t3} */
    TU_ASSERT_REL_CLOSE(out, want, 2, 1e-6, "ties evict t0");
    skv_sketch_destroy(s);
}

static void test_h2o_recent_window_protects_low_score_tokens(void **state) {
    (void)state;
    /* H = 1, R = 2. After q0, scores rank t0 > t1 > t2, and t2 is the most recent held
     * token: appending t3 protects t2 (with t3 the two most recent) and evicts t1, the
     * lowest of the candidates {t0, t1}. Evicting the global lowest would drop t2. */
    const float K[4][2] = {{3, 0}, {0, 0.5f}, {-3, 0}, {0, -1}};
    const float V[4][2] = {{1, 1}, {-2, 1}, {0, -1}, {2, 3}};
    const float q0[2] = {2, 0}, q1[2] = {0.5f, -1};
    skv_sketch *s = h2o_new(2, 1, 2);
    tu_append(s, &K[0][0], &V[0][0], 3, 2);
    float out[2];
    tu_attend_output(s, q0, 1, 2, out);
    tu_append(s, K[3], V[3], 1, 2);
    tu_attend_output(s, q1, 1, 2, out);
    /* softmax of q1 over {t0, t2, t3}: scores 1.5, -1.5, 1 (over sqrt 2) */
    const double r2 = sqrt(2.0);
    double e0 = exp(1.5 / r2), e2 = exp(-1.5 / r2), e3 = exp(1.0 / r2), z = e0 + e2 + e3;
    double want[2] = {(e0 * 1 + e2 * 0 + e3 * 2) / z, (e0 * 1 + e2 * -1 + e3 * 3) / z};
    TU_ASSERT_REL_CLOSE(out, want, 2, 1e-6, "t1 evicted, t2 protected");
    /* the alternatives {t0, t1, t3} (global lowest) and {t1, t2, t3} (FIFO) differ */
    const float Ka[3][2] = {{3, 0}, {0, 0.5f}, {0, -1}}, Va[3][2] = {{1, 1}, {-2, 1}, {2, 3}};
    double alt[2];
    synth_ref_attention(q1, &Ka[0][0], &Va[0][0], 3, 2, alt);
    assert_true(synth_rel_error(out, alt, 2) > 0.05);
    synth_ref_attention(q1, &K[1][0], &V[1][0], 3, 2, alt);
    assert_true(synth_rel_error(out, alt, 2) > 0.05);
    skv_sketch_destroy(s);
}

static void test_h2o_scores_sum_over_all_query_heads(void **state) {
    (void)state;
    /* H = 2, R = 2, g = 2: appending t4 protects t3 and picks among {t0, t1, t2}.
     * Head 0 prefers t0 over t1, head 1 prefers t1 much more strongly: summed, t0 has
     * the lowest score and is evicted (head 0 alone would evict t1). */
    const float K[5][2] = {{1, 0}, {0, 1}, {1, 1}, {-1, -1}, {0.5f, -0.5f}};
    const float V[5][2] = {{1, 2}, {-1, 0}, {2, 2}, {0, -3}, {3, 1}};
    const float Q[2][2] = {{2, 0}, {0, 4}};
    h2o_model m;
    model_init(&m, 2, 2, 2, &K[0][0], &V[0][0]);
    skv_sketch *s = h2o_new(2, 2, 2);
    tu_append(s, &K[0][0], &V[0][0], 4, 2);
    for (size_t i = 0; i < 4; i++) model_append(&m, i);
    /* head 0 alone ranks t0 above t1 ... */
    h2o_model head0;
    model_init(&head0, 2, 2, 2, &K[0][0], &V[0][0]);
    for (size_t i = 0; i < 4; i++) model_append(&head0, i);
    double scratch[2];
    model_attend(&head0, &Q[0][0], 1, scratch);
    assert_true(head0.score[0] > head0.score[1]);
    assert_int_equal(model_append(&head0, 4), 1);
    /* ... the two-head sum ranks t1 (and t2) above t0 */
    check_against_model(s, &m, &Q[0][0], 2, 1e-6);
    assert_true(m.score[1] > m.score[0] && m.score[2] > m.score[0]);
    tu_append(s, K[4], V[4], 1, 2);
    assert_int_equal(model_append(&m, 4), 0);
    const float q[2] = {1.5f, -0.5f};
    check_against_model(s, &m, q, 1, 1e-6);
    model_free(&m);
    model_free(&head0);
    skv_sketch_destroy(s);
}

/* ---- random streams against the model ------------------------------------------------ */

static void test_h2o_matches_float64_model_on_random_streams(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int trial = 0; trial < 6; trial++) {
        int d = trial % 2 ? 16 : 8;
        int H = (int)tu_rand_range(&r, 1, 24), R = (int)tu_rand_range(&r, 1, 24);
        int g = (int)tu_rand_range(&r, 1, 4);
        size_t n = tu_rand_range(&r, 200, 800);
        float *K, *V;
        tu_make_random_kv(&r, n, d, &K, &V);
        float *Q = tu_malloc((size_t)g * d * sizeof(float));
        h2o_model m;
        model_init(&m, d, H, R, K, V);
        skv_sketch *s = h2o_new(d, H, R);
        size_t evictions = 0;
        for (size_t i = 0; i < n;) {
            size_t b = tu_rand_range(&r, 1, 4);
            if (b > n - i) b = n - i;
            tu_append(s, K + i * d, V + i * d, b, d);
            for (size_t t = i; t < i + b; t++) evictions += model_append(&m, t) != (size_t)-1;
            i += b;
            synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
            check_against_model(s, &m, Q, g, 1e-5);
        }
        assert_true(evictions == n - (size_t)(H + R));
        assert_true(m.held == H + R);
        model_free(&m);
        free(K), free(V), free(Q);
        skv_sketch_destroy(s);
    }
}

static void test_h2o_never_holds_more_than_heavy_plus_window(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, H = 16, R = 8;
    size_t n = 5000;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    skv_sketch *s = h2o_new(d, H, R);
    size_t bytes_full = 0;
    float q[32], out[32];
    for (size_t i = 0; i < n; i += 50) {
        tu_append(s, K + i * d, V + i * d, 50, d);
        synth_fill_normal(&r, q, (size_t)d, 1.0f);
        tu_attend_output(s, q, 1, d, out);
        assert_true(tu_all_finite(out, (size_t)d));
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(st.tokens_held,
                         (uint64_t)(i + 50 < (size_t)(H + R) ? i + 50 : (size_t)(H + R)));
        assert_int_equal(st.tokens_seen, i + 50);
        if (bytes_full == 0) bytes_full = skv_sketch_bytes(s);
        assert_int_equal(skv_sketch_bytes(s), bytes_full);
    }
    free(K), free(V);
    skv_sketch_destroy(s);
}

int main(void) {
    tu_suite_begin("test_h2o");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2o_evicts_lower_score_token_not_the_older_one),
        cmocka_unit_test(test_h2o_ties_at_zero_score_evict_the_oldest),
        cmocka_unit_test(test_h2o_recent_window_protects_low_score_tokens),
        cmocka_unit_test(test_h2o_scores_sum_over_all_query_heads),
        cmocka_unit_test(test_h2o_matches_float64_model_on_random_streams),
        cmocka_unit_test(test_h2o_never_holds_more_than_heavy_plus_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
