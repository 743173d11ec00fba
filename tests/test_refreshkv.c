/*
 * test_refreshkv.c — RefreshKV (cache/refreshkv.c) against float64 models of its contract:
 *   - the first attend (prefill) and every full step are exact attention over all tokens;
 *     with stride 1 and threshold 1 every attend is a full step, so the policy equals exact;
 *   - after a full step the partial cache holds the top K tokens by max-pooled (kernel 7)
 *     probability, maximum over the group's heads, in ascending score order;
 *   - an append evicts the lowest-score entry and puts the new token on top;
 *   - a partial step is attention over exactly the listed entries;
 *   - the refresh rule follows the queries (few full steps when they repeat, many when they
 *     drift), and the error of partial steps falls as K grows;
 *   - checkpoints round-trip bit for bit; bad parameters and corrupt input are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "skv_internal.h"
#include "test_util.h"

static skv_config rkv_cfg(int d, int k, int stride, float threshold) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, d);
    c.partial_tokens = k;
    c.stride = stride;
    c.threshold = threshold;
    return c;
}

/* float64 attention of q over the tokens idx[m] of K, V. */
static void ref_subset(const float *q, const float *K, const float *V, const size_t *idx, size_t m,
                       int d, double *out) {
    float *k = tu_malloc(m * (size_t)d * sizeof(float)),
          *v = tu_malloc(m * (size_t)d * sizeof(float));
    for (size_t i = 0; i < m; i++) {
        memcpy(k + i * (size_t)d, K + idx[i] * (size_t)d, (size_t)d * sizeof(float));
        memcpy(v + i * (size_t)d, V + idx[i] * (size_t)d, (size_t)d * sizeof(float));
    }
    synth_ref_attention(q, k, v, m, d, out);
    free(k), free(v);
}

/* The token index of every entry of s, by matching its (float32) key rows against K[n]. */
static size_t *entry_tokens(const skv_sketch *s, const float *K, size_t n, int d, size_t *m) {
    skv_entries e = {0};
    skv_err err;
    TU_OK(skv_sketch_entries(s, &e, &err), &err);
    size_t *idx = tu_malloc((e.n ? e.n : 1) * sizeof(size_t));
    for (size_t i = 0; i < e.n; i++) {
        const float *row = (const float *)e.k + i * (size_t)d;
        size_t t = n;
        for (size_t j = 0; j < n && t == n; j++)
            if (memcmp(row, K + j * (size_t)d, (size_t)d * sizeof(float)) == 0) t = j;
        if (t == n) fail_msg("entry %zu matches no appended key", i);
        idx[i] = t;
    }
    *m = e.n;
    skv_entries_free(&e);
    return idx;
}

/* Model scores: max over the g heads of the softmax probability, max-pooled +-3 tokens. */
static double *model_pooled(const float *Q, int g, const float *K, size_t n, int d) {
    double *p = tu_malloc(n * sizeof(double)), *pool = tu_malloc(n * sizeof(double));
    double *s = tu_malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) p[i] = 0.0;
    for (int h = 0; h < g; h++) {
        double m = -INFINITY, l = 0.0;
        for (size_t i = 0; i < n; i++) {
            double x = 0.0;
            for (int j = 0; j < d; j++)
                x += (double)Q[(size_t)h * d + j] * K[i * (size_t)d + (size_t)j];
            s[i] = x / sqrt((double)d);
            if (s[i] > m) m = s[i];
        }
        for (size_t i = 0; i < n; i++) l += exp(s[i] - m);
        for (size_t i = 0; i < n; i++) {
            double pr = exp(s[i] - m) / l;
            if (pr > p[i]) p[i] = pr;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pool[i] = 0.0;
        for (size_t j = i >= 3 ? i - 3 : 0; j <= i + 3 && j < n; j++)
            if (p[j] > pool[i]) pool[i] = p[j];
    }
    free(p), free(s);
    return pool;
}

static void random_queries(synth_rng *r, float *Q, int g, int d) {
    synth_fill_normal(r, Q, (size_t)g * d, 1.0f);
}

static void test_refreshkv_always_full_equals_exact(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 32, g = 4, steps = 40;
    const size_t n0 = 600, n = n0 + steps;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    for (size_t i = 0; i < n * d; i++) K[i] *= 2.0f; /* peaked attention */
    skv_config c = rkv_cfg(d, 16, 1, 1.0f);
    skv_sketch *s = tu_create(&c);
    tu_append_chunked(s, K, V, n0, d, 256);
    float Q[4 * 32], out[4 * 32];
    double ref[32];
    for (int t = 0; t <= steps; t++) {
        if (t > 0) tu_append(s, K + (n0 + t - 1) * d, V + (n0 + t - 1) * d, 1, d);
        random_queries(&r, Q, g, d);
        tu_attend_output(s, Q, g, d, out);
        for (int h = 0; h < g; h++) {
            synth_ref_attention(Q + h * d, K, V, n0 + (size_t)t, d, ref);
            TU_ASSERT_REL_CLOSE(out + h * d, ref, d, 1e-5, "step %d head %d", t, h);
        }
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.attends, steps + 1);
    assert_int_equal(st.full_steps, steps + 1);
    assert_int_equal(st.tokens_held, 16);
    skv_sketch_destroy(s);
    free(K), free(V);
}

static void test_refreshkv_partial_cache_is_top_k_in_ascending_order(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 24, g = 2;
    const size_t n = 900;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    for (int k = 1; k <= 64; k *= 4) {
        skv_config c = rkv_cfg(d, k, 10, 0.9f);
        skv_sketch *s = tu_create(&c);
        tu_append_chunked(s, K, V, n, d, 300);
        assert_int_equal(skv_sketch_config(s)->pool_kernel, 7);
        float Q[2 * 24];
        random_queries(&r, Q, g, d);
        float out[2 * 24];
        tu_attend_output(s, Q, g, d, out);
        size_t m;
        size_t *idx = entry_tokens(s, K, n, d, &m);
        assert_int_equal(m, (size_t)k);
        double *pool = model_pooled(Q, g, K, n, d);
        bool *chosen = tu_malloc(n * sizeof(bool));
        memset(chosen, 0, n * sizeof(bool));
        double lo = INFINITY;
        for (size_t i = 0; i < m; i++) {
            assert_false(chosen[idx[i]]); /* distinct tokens */
            chosen[idx[i]] = true;
            if (i > 0 && pool[idx[i]] < pool[idx[i - 1]] * (1 - 1e-5))
                fail_msg("K=%d: entry %zu score %g below entry %zu score %g", k, i, pool[idx[i]],
                         i - 1, pool[idx[i - 1]]);
            if (pool[idx[i]] < lo) lo = pool[idx[i]];
        }
        for (size_t j = 0; j < n; j++)
            if (!chosen[j] && pool[j] > lo * (1 + 1e-5))
                fail_msg("K=%d: token %zu (score %g) left out, kept minimum %g", k, j, pool[j], lo);
        free(idx), free(pool), free(chosen);
        skv_sketch_destroy(s);
    }
    free(K), free(V);
}

static void test_refreshkv_append_evicts_lowest_and_partial_step_attends_entries(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, g = 2, k = 12, extra = 30;
    const size_t n0 = 400, n = n0 + extra;
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    skv_config c = rkv_cfg(d, k, 1000, -1.0f); /* never refresh after the prefill */
    skv_sketch *s = tu_create(&c);
    tu_append(s, K, V, n0, d);
    float Q[2 * 16], out[2 * 16];
    double ref[16];
    random_queries(&r, Q, g, d);
    tu_attend_output(s, Q, g, d, out);
    size_t m0;
    size_t *before = entry_tokens(s, K, n, d, &m0);
    assert_int_equal(m0, (size_t)k);
    for (int t = 0; t < extra; t++) {
        tu_append(s, K + (n0 + t) * d, V + (n0 + t) * d, 1, d);
        size_t m;
        size_t *now = entry_tokens(s, K, n, d, &m);
        assert_int_equal(m, (size_t)k);
        /* the t + 1 weakest selected tokens are gone, the new ones on top, oldest first */
        for (size_t i = 0; i < (size_t)k; i++) {
            size_t want = i + (size_t)t + 1 < (size_t)k ? before[i + (size_t)t + 1]
                                                        : n0 + (size_t)t + 1 + i - (size_t)k;
            assert_int_equal(now[i], want);
        }
        random_queries(&r, Q, g, d);
        tu_attend_output(s, Q, g, d, out);
        for (int h = 0; h < g; h++) {
            ref_subset(Q + h * d, K, V, now, m, d, ref);
            TU_ASSERT_REL_CLOSE(out + h * d, ref, d, 1e-5, "step %d head %d", t, h);
        }
        free(now);
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, 1);
    assert_int_equal(st.attends, extra + 1);
    /* bytes read: the prefill's n0 rows, then k rows per partial step (keys and values) */
    assert_int_equal(st.bytes_read, (n0 + (size_t)extra * k) * 2 * d * sizeof(float));
    free(before);
    skv_sketch_destroy(s);
    free(K), free(V);
}

/* Full-step fraction over `steps` decode steps with the given query process. */
static double full_fraction(synth_rng *r, int drift, int steps) {
    const int d = 32, g = 4;
    const size_t n0 = 500;
    float *K, *V;
    tu_make_random_kv(r, n0 + (size_t)steps, d, &K, &V);
    skv_config c = rkv_cfg(d, 32, 1, 0.9f);
    skv_sketch *s = tu_create(&c);
    tu_append(s, K, V, n0, d);
    float base[4 * 32], Q[4 * 32], out[4 * 32];
    random_queries(r, base, g, d);
    for (int t = 0; t < steps; t++) {
        if (t) tu_append(s, K + (n0 + t) * d, V + (n0 + t) * d, 1, d);
        if (drift) /* each step a fresh query: cosine with the reference near 0 */
            random_queries(r, Q, g, d);
        else { /* the same query plus 5% noise: cosine near 1 */
            synth_fill_normal(r, Q, (size_t)g * d, 0.05f);
            for (int i = 0; i < g * d; i++) Q[i] += base[i];
        }
        tu_attend_output(s, Q, g, d, out);
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.attends, (uint64_t)steps);
    skv_sketch_destroy(s);
    free(K), free(V);
    return (double)st.full_steps / (double)st.attends;
}

static void test_refreshkv_full_steps_follow_query_drift(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const double repeat = full_fraction(&r, 0, 100), drift = full_fraction(&r, 1, 100);
    printf("# full-step fraction: repeated queries %.2f, drifting %.2f\n", repeat, drift);
    assert_true(repeat <= 0.02); /* only the prefill */
    assert_true(drift >= 0.95);
}

static void test_refreshkv_error_falls_as_k_grows(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 32, g = 2, steps = 24;
    const size_t n = 4096;
    synth_stream_cfg sc = {.d = d,
                           .clusters = 16,
                           .center_norm = 6.0f,
                           .spread = 0.4f,
                           .value_mean = 4.0f,
                           .value_tail = 0.25f,
                           .seed = synth_rng_u64(&r)};
    synth_stream *st = synth_stream_create(&sc);
    float *K = tu_malloc(n * d * sizeof(float)), *V = tu_malloc(n * d * sizeof(float));
    synth_stream_next(st, K, V, n);
    float *Q = tu_malloc((size_t)(steps + 1) * g * d * sizeof(float));
    for (int t = 0; t <= steps; t++) /* each step aimed at a random cluster */
        for (int h = 0; h < g; h++)
            synth_stream_query(st, (int)(synth_rng_uniform(&r) * 16), 1.0f, 0.3f,
                               Q + ((size_t)t * g + h) * d);
    const int ks[3] = {64, 512, 2048};
    double errs[3];
    float out[2 * 32];
    double ref[32];
    for (int ki = 0; ki < 3; ki++) {
        skv_config c = rkv_cfg(d, ks[ki], 1000, 0.9f);
        skv_sketch *s = tu_create(&c);
        tu_append(s, K, V, n, d);
        errs[ki] = 0.0;
        for (int t = 0; t <= steps; t++) {
            tu_attend_output(s, Q + (size_t)t * g * d, g, d, out);
            for (int h = 0; h < g && t > 0; h++) {
                synth_ref_attention(Q + ((size_t)t * g + h) * d, K, V, n, d, ref);
                errs[ki] += synth_rel_error(out + h * d, ref, d) / (steps * g);
            }
        }
        skv_sketch_destroy(s);
    }
    printf("# partial-step error: K=64 %.4f, K=512 %.4f, K=2048 %.4f\n", errs[0], errs[1], errs[2]);
    assert_true(errs[1] < errs[0]);
    assert_true(errs[2] < errs[1]);
    synth_stream_destroy(st);
    free(K), free(V), free(Q);
}

static void test_refreshkv_save_load_is_bit_identical(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, g = 2;
    float *K, *V;
    tu_make_random_kv(&r, 700, d, &K, &V);
    for (int dt = 0; dt < 3; dt++) {
        skv_config c = rkv_cfg(d, 20, 4, 0.5f);
        c.dtype = (skv_dtype)dt;
        skv_sketch *a = tu_create(&c);
        tu_append(a, K, V, 500, d);
        float Q[2 * 16], oa[2 * 16], ob[2 * 16];
        for (int t = 0; t < 37; t++) { /* wraps the ring, leaves a part-full queue */
            tu_append(a, K + (500 + t) * d, V + (500 + t) * d, 1, d);
            random_queries(&r, Q, g, d);
            tu_attend_output(a, Q, g, d, oa);
        }
        skv_buf b1 = tu_save(a);
        skv_sketch *b = NULL;
        skv_err err;
        size_t used = 0;
        TU_OK(skv_sketch_load(b1.data, b1.len, &b, &used, &err), &err);
        assert_int_equal(used, b1.len);
        skv_buf b2 = tu_save(b);
        assert_true(tu_bufs_equal(&b1, &b2));
        for (int t = 37; t < 80; t++) { /* the same future: outputs equal bit for bit */
            tu_append(a, K + (500 + t) * d, V + (500 + t) * d, 1, d);
            tu_append(b, K + (500 + t) * d, V + (500 + t) * d, 1, d);
            random_queries(&r, Q, g, d);
            tu_attend_output(a, Q, g, d, oa);
            tu_attend_output(b, Q, g, d, ob);
            assert_memory_equal(oa, ob, sizeof oa);
        }
        skv_buf b3 = tu_save(a), b4 = tu_save(b);
        assert_true(tu_bufs_equal(&b3, &b4));
        /* any flipped body byte is caught by the checksum */
        b1.data[b1.len / 2] ^= 0x40;
        skv_sketch *bad = NULL;
        assert_int_equal(skv_sketch_load(b1.data, b1.len, &bad, NULL, &err), SKV_ERR_CORRUPT);
        assert_null(bad);
        skv_buf_free(&b1), skv_buf_free(&b2), skv_buf_free(&b3), skv_buf_free(&b4);
        skv_sketch_destroy(a);
        skv_sketch_destroy(b);
    }
    free(K), free(V);
}

static void test_refreshkv_bad_params_rejected(void **state) {
    (void)state;
    const struct {
        int k, stride, pool;
        float thr;
        subkv_status want;
    } bad[] = {{0, 10, 7, 0.9f, SKV_ERR_INVALID_ARG},  {-3, 10, 7, 0.9f, SKV_ERR_INVALID_ARG},
               {16, 0, 7, 0.9f, SKV_ERR_INVALID_ARG},  {16, 1 << 17, 7, 0.9f, SKV_ERR_INVALID_ARG},
               {16, 10, 0, 0.9f, SKV_ERR_INVALID_ARG}, {16, 10, 4, 0.9f, SKV_ERR_INVALID_ARG},
               {16, 10, 7, 1.5f, SKV_ERR_INVALID_ARG}, {16, 10, 7, -1.01f, SKV_ERR_INVALID_ARG},
               {16, 10, 7, NAN, SKV_ERR_INVALID_ARG},  {16, 10, 7, INFINITY, SKV_ERR_INVALID_ARG}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        skv_config c = rkv_cfg(16, bad[i].k, bad[i].stride, bad[i].thr);
        c.pool_kernel = bad[i].pool;
        skv_sketch *s = NULL;
        skv_err err = {0};
        assert_int_equal(skv_sketch_create(&c, &s, &err), bad[i].want);
        assert_null(s);
        assert_true(strlen(err.msg) > 0);
    }
    /* a budget sizes K from what the queue and state leave; too small fails */
    skv_config c = rkv_cfg(64, 1, 10, 0.9f);
    c.budget_bytes = 64 << 10;
    skv_sketch *s = tu_create(&c);
    const int k = skv_sketch_config(s)->partial_tokens;
    assert_true(k > 64 && k < 128);
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_true(st.partial_bytes <= c.budget_bytes);
    assert_true(st.partial_bytes + (64 * 2 * 4 + 16) > c.budget_bytes); /* K is the largest fit */
    skv_sketch_destroy(s);
    c.budget_bytes = 2048;
    skv_err err;
    assert_int_equal(skv_sketch_create(&c, &s, &err), SKV_ERR_BUDGET);
    /* max_tokens caps the full store: the append past it fails and stores nothing */
    c = rkv_cfg(8, 4, 2, 0.9f);
    c.max_tokens = 10;
    s = tu_create(&c);
    assert_int_equal(skv_config_max_bytes(skv_sketch_config(s)) < SIZE_MAX, 1);
    assert_int_equal(skv_config_token_cap(skv_sketch_config(s)), 10); /* what the service checks */
    synth_rng r;
    tu_rng_for(&r, __func__);
    float *K, *V;
    tu_make_random_kv(&r, 11, 8, &K, &V);
    tu_append(s, K, V, 10, 8);
    assert_int_equal(skv_sketch_append(s, K, V, 1, 8, &err), SKV_ERR_BUDGET);
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_seen, 10);
    assert_true(st.bytes <= skv_config_max_bytes(skv_sketch_config(s)));
    skv_sketch_destroy(s);
    c.max_tokens = 0;
    assert_int_equal(skv_config_max_bytes(&c), SIZE_MAX);
    free(K), free(V);
}

/* The GPU path's split: a partial step leaves the answer to the entries, a full step is
 * answered on the CPU; both give what skv_sketch_attend gives. */
static void test_refreshkv_attend_begin_splits_full_and_partial_steps(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, g = 4;
    float *K, *V;
    tu_make_random_kv(&r, 330, d, &K, &V);
    skv_config c = rkv_cfg(d, 24, 3, 1.0f); /* full steps at attends 1, 4, 7, ... */
    skv_sketch *a = tu_create(&c), *b = tu_create(&c);
    tu_append(a, K, V, 300, d);
    tu_append(b, K, V, 300, d);
    skv_partial *pa = tu_partials_new(g, d), *pb = tu_partials_new(g, d);
    skv_entries e = {0};
    float Q[4 * 16], qs[16], oa[16], ob[16];
    for (int t = 0; t < 30; t++) {
        if (t) {
            tu_append(a, K + (300 + t) * d, V + (300 + t) * d, 1, d);
            tu_append(b, K + (300 + t) * d, V + (300 + t) * d, 1, d);
        }
        random_queries(&r, Q, g, d);
        tu_attend(a, Q, g, d, pa);
        int done = -1;
        skv_err err;
        TU_OK(skv_sketch_attend_begin(b, Q, g, d, pb, &done, &err), &err);
        assert_int_equal(done, t % 3 == 0);
        if (!done) {
            TU_OK(skv_sketch_entries(b, &e, &err), &err);
            assert_int_equal(e.n, 24);
            for (int h = 0; h < g; h++) {
                for (int j = 0; j < d; j++) qs[j] = Q[h * d + j] / sqrtf((float)d);
                skv_entries_attend(&e, qs, skv_partial_at(pb, d, (size_t)h));
            }
        }
        for (int h = 0; h < g; h++) {
            skv_partial_output(skv_partial_at(pa, d, (size_t)h), d, oa);
            skv_partial_output(skv_partial_at(pb, d, (size_t)h), d, ob);
            assert_true(tu_rel_error_ff(ob, oa, d) <= 1e-6);
        }
    }
    skv_stats sa, sb;
    skv_sketch_stats(a, &sa);
    skv_sketch_stats(b, &sb);
    assert_int_equal(sa.full_steps, 10);
    assert_int_equal(sb.full_steps, 10);
    assert_int_equal(sa.bytes_read, sb.bytes_read);
    skv_entries_free(&e);
    free(pa), free(pb);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
    free(K), free(V);
}

/* skv_sketch_refresh: the next attend is a full step, whatever the rule says; the request
 * survives a checkpoint; policies without refresh refuse it. A prefill chunk (an append of
 * more than one token) after the selection requests a full step too. */
static void test_refreshkv_refresh_request_forces_a_full_step(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, g = 2;
    float *K, *V;
    tu_make_random_kv(&r, 200, d, &K, &V);
    skv_config c = rkv_cfg(d, 8, 1, -1.0f); /* checks every attend, never refreshes alone */
    skv_sketch *s = tu_create(&c);
    tu_append(s, K, V, 200, d);
    float Q[2 * 16], out[2 * 16];
    double ref[16];
    skv_err err;
    for (int t = 0; t < 6; t++) {
        random_queries(&r, Q, g, d);
        if (t == 3) {
            TU_OK(skv_sketch_refresh(s, &err), &err);
            skv_buf b = tu_save(s); /* the request travels with the checkpoint */
            skv_sketch *l = NULL;
            TU_OK(skv_sketch_load(b.data, b.len, &l, NULL, &err), &err);
            skv_sketch_destroy(s);
            s = l;
            skv_buf_free(&b);
        }
        tu_attend_output(s, Q, g, d, out);
        skv_stats st;
        skv_sketch_stats(s, &st);
        assert_int_equal(st.full_steps, t < 3 ? 1 : 2);
        if (t == 3) /* the forced step is exact */
            for (int h = 0; h < g; h++) {
                synth_ref_attention(Q + h * d, K, V, 200, d, ref);
                TU_ASSERT_REL_CLOSE(out + h * d, ref, d, 1e-5, "forced step head %d", h);
            }
    }
    /* a prefill chunk (more than one token in one append) makes the next attend full */
    tu_append(s, K, V, 1, d);
    tu_attend_output(s, Q, g, d, out);
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, 2);
    tu_append(s, K, V, 40, d);
    tu_attend_output(s, Q, g, d, out);
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, 3);
    skv_sketch_destroy(s);
    skv_config e;
    skv_config_default(&e, SKV_POLICY_EXACT, d);
    s = tu_create(&e);
    assert_int_equal(skv_sketch_refresh(s, &err), SKV_ERR_UNSUPPORTED);
    skv_sketch_destroy(s);
    free(K), free(V);
}

int main(void) {
    tu_suite_begin("test_refreshkv");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refreshkv_always_full_equals_exact),
        cmocka_unit_test(test_refreshkv_partial_cache_is_top_k_in_ascending_order),
        cmocka_unit_test(test_refreshkv_append_evicts_lowest_and_partial_step_attends_entries),
        cmocka_unit_test(test_refreshkv_full_steps_follow_query_drift),
        cmocka_unit_test(test_refreshkv_error_falls_as_k_grows),
        cmocka_unit_test(test_refreshkv_save_load_is_bit_identical),
        cmocka_unit_test(test_refreshkv_bad_params_rejected),
        cmocka_unit_test(test_refreshkv_attend_begin_splits_full_and_partial_steps),
        cmocka_unit_test(test_refreshkv_refresh_request_forces_a_full_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
