/*
 * test_refreshkv_csr.c — RefreshKV whose full store is a csr sketch (full_store = csr,
 * cache/refreshkv_csr.c), against float64 exact attention on random inputs:
 *   - with an orthonormal dictionary and sparsity = head_dim (codes reconstruct every key
 *     and value up to the float16 rounding of their coefficients) and a full step at every
 *     attend (threshold 1, stride 1), every output equals exact attention;
 *   - with a random dictionary and small s the error is finite and bounded, a partial step
 *     reads exactly the K partial rows, a full step the store's exact rows and codes, and
 *     the partial cache holds K distinct tokens: kept rows stay exact, others are the store's;
 *   - bytes() stays within a budget, whatever the length; the codes' cap is enforced;
 *   - checkpoints round-trip bit for bit (with the dictionary registry); damaged bytes,
 *     a missing registry or the wrong dictionary are refused;
 *   - no dictionary, full_mem = device: refused at create; NaN input: refused, nothing
 *     changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "csr_dict.h"
#include "skv_internal.h"
#include "csr_ref.h"

enum { D = 32, G = 3 };

static skv_config rkv_csr_cfg(const skv_dict *dict, int s, int K) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, D);
    c.full_store = SKV_FULL_CSR;
    c.sparsity = s;
    c.partial_tokens = K;
    c.sinks = 2;
    c.window = 8;
    c.dict = dict;
    return c;
}

/* Relative error of the g outputs of one attend vs float64 exact over K, V [n]. */
static double attend_err(skv_sketch *s, const float *Q, const float *K, const float *V, size_t n) {
    float out[G * D];
    double ref[D], e = 0.0;
    tu_attend_output(s, Q, G, D, out);
    for (int h = 0; h < G; h++) {
        assert_true(tu_all_finite(out + h * D, D));
        synth_ref_attention(Q + h * D, K, V, n, D, ref);
        e += synth_rel_error(out + h * D, ref, D) / G;
    }
    return e;
}

static void test_refreshkv_csr_exact_codes_every_step_full_equal_exact(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = csr_ref_orthonormal_dict(&r, D, SKV_KEYS_POST_ROTARY);
    skv_config c = rkv_csr_cfg(dict, D, 20);
    c.threshold = 1.0f, c.stride = 1; /* every attend a full step */
    skv_sketch *s = tu_create(&c);
    const size_t n0 = 300, steps = 40, n = n0 + steps;
    float *K, *V;
    tu_make_random_kv(&r, n, D, &K, &V);
    tu_append_chunked(s, K, V, n0, D, 37);
    float Q[G * D];
    double worst = 0.0;
    for (size_t t = 0; t <= steps; t++) {
        if (t) tu_append(s, K + (n0 + t - 1) * D, V + (n0 + t - 1) * D, 1, D);
        synth_fill_normal(&r, Q, G * D, 1.5f);
        const double e = attend_err(s, Q, K, V, n0 + t);
        if (e > worst) worst = e;
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_steps, steps + 1);
    assert_int_equal(st.attends, steps + 1);
    if (!(worst <= 2e-3)) fail_msg("full step off exact by %.2e", worst);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
    free(K), free(V);
}

/* The partial cache's rows (as entries) must be distinct tokens in ascending score, each
 * either the exact row of its token or, for a coded token, bit for bit the reconstruction a
 * csr sketch `ref` of the same config and tokens attends over; *exact counts the exact ones. */
static void check_partial_rows(const skv_sketch *s, const skv_sketch *ref, const float *K,
                               const float *V, size_t *exact) {
    skv_err err = {0};
    skv_entries e = {0}, re = {0};
    TU_OK(skv_sketch_entries(s, &e, &err), &err);
    TU_OK(skv_sketch_entries(ref, &re, &err), &err);
    skv_stats rs;
    skv_sketch_stats(ref, &rs);
    /* ref's entries: sinks, window ring, then coded rows in token order after the sinks */
    const uint64_t sinks = (uint64_t)skv_sketch_config(ref)->sinks,
                   coded = rs.tokens_seen - rs.tokens_held;
    uint64_t pos[64];
    double score[64];
    const size_t pn = skv_rkv_partial(s, pos, score);
    assert_int_equal(e.n, pn);
    /* entries list the ring from its head: the order skv_rkv_partial reports */
    *exact = 0;
    for (size_t i = 0; i < pn; i++) {
        for (size_t j = 0; j < i; j++)
            if (pos[i] == pos[j])
                fail_msg("partial rows %zu and %zu are token %llu", j, i,
                         (unsigned long long)pos[i]);
        if (i && score[i] < score[i - 1]) fail_msg("partial scores not ascending at %zu", i);
        const float *k = (const float *)e.k + i * D, *v = (const float *)e.v + i * D;
        if (!memcmp(k, K + pos[i] * D, D * sizeof(float)) &&
            !memcmp(v, V + pos[i] * D, D * sizeof(float))) {
            ++*exact;
            continue;
        }
        if (pos[i] < sinks || pos[i] >= sinks + coded)
            fail_msg("partial row %zu: token %llu is exact in the store, its row is not", i,
                     (unsigned long long)pos[i]);
        const size_t at = (size_t)(rs.tokens_held + pos[i] - sinks);
        if (memcmp(k, (const float *)re.k + at * D, D * sizeof(float)) ||
            memcmp(v, (const float *)re.v + at * D, D * sizeof(float)))
            fail_msg("partial row %zu (token %llu) is neither exact nor its reconstruction", i,
                     (unsigned long long)pos[i]);
    }
    skv_entries_free(&e), skv_entries_free(&re);
}

static void test_refreshkv_csr_random_codes_bounded_error_and_reads(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = csr_ref_dict(&r, D, 128, 1, 1, SKV_KEYS_POST_ROTARY);
    enum { KP = 32, S = 4 };
    skv_config c = rkv_csr_cfg(dict, S, KP);
    c.stride = 4, c.threshold = 1.0f; /* a full step every 4th attend */
    skv_sketch *s = tu_create(&c);
    skv_config cc; /* the store alone, for its reconstructions */
    skv_config_default(&cc, SKV_POLICY_CSR, D);
    cc.sparsity = S, cc.sinks = c.sinks, cc.window = c.window, cc.dict = dict;
    skv_sketch *ref = tu_create(&cc);
    const size_t n0 = 1000, steps = 40, n = n0 + steps;
    float *K, *V;
    tu_make_random_kv(&r, n, D, &K, &V);
    tu_append_chunked(s, K, V, n0, D, 250);
    tu_append(ref, K, V, n0, D);
    const uint64_t row = D * sizeof(float);
    double vmax = 0.0; /* the largest value norm: any convex mix of (reconstructed) values is
                        * within it (matching pursuit never grows a vector), so is exact's */
    for (size_t i = 0; i < n; i++) {
        double nn = 0.0;
        for (int j = 0; j < D; j++) nn += (double)V[i * D + j] * V[i * D + j];
        if (sqrt(nn) > vmax) vmax = sqrt(nn);
    }
    float Q[G * D], out[D];
    double worst = 0.0, sum = 0.0, ref_out[D];
    skv_partial *p = tu_partials_new(G, D), *pr = tu_partials_new(G, D);
    for (size_t t = 0; t <= steps; t++) {
        if (t) tu_append(s, K + (n0 + t - 1) * D, V + (n0 + t - 1) * D, 1, D);
        if (t) tu_append(ref, K + (n0 + t - 1) * D, V + (n0 + t - 1) * D, 1, D);
        skv_stats a, b;
        skv_sketch_stats(s, &a);
        synth_fill_normal(&r, Q, G * D, 1.0f);
        tu_attend(s, Q, G, D, p);
        skv_sketch_stats(s, &b);
        double e = 0.0;
        for (int h = 0; h < G; h++) {
            skv_partial_output(skv_partial_at(p, D, (size_t)h), D, out);
            assert_true(tu_all_finite(out, D));
            synth_ref_attention(Q + h * D, K, V, n0 + t, D, ref_out);
            double ad = 0.0;
            for (int j = 0; j < D; j++) ad += (out[j] - ref_out[j]) * (out[j] - ref_out[j]);
            if (!(sqrt(ad) <= 2.0 * vmax * (1.0 + 1e-3)))
                fail_msg("step %zu head %d: |out - exact| %.3f beyond 2 max|v| = %.3f", t, h,
                         sqrt(ad), 2.0 * vmax);
            e += synth_rel_error(out, ref_out, D) / G;
        }
        if (e > worst) worst = e;
        sum += e;
        if (b.full_steps != a.full_steps) { /* a full step answers with the store's attend */
            tu_attend(ref, Q, G, D, pr);
            assert_memory_equal(p, pr, G * skv_partial_stride(D));
        }
        const size_t seen = n0 + t, exact_rows = 2 + 8, coded = seen - exact_rows;
        if (b.full_steps == a.full_steps) /* partial: the K rows, keys and values */
            assert_int_equal(b.bytes_read - a.bytes_read, KP * 2 * row);
        else /* full: the store's exact rows and 8 s bytes per coded token */
            assert_int_equal(b.bytes_read - a.bytes_read, exact_rows * 2 * row + coded * 8 * S);
        size_t exact = 0;
        check_partial_rows(s, ref, K, V, &exact);
        assert_int_equal(b.tokens_held, KP);
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_true(st.full_steps > 5 && st.full_steps < st.attends);
    /* random unit atoms, 4 of 128 per 32-dim key, random keys and values: the codes are
     * coarse and exact attention over 1000 random values is a short average, so the relative
     * error is large (printed); what holds is the bound above */
    printf("# random dictionary s=%d: mean rel err %.3f, worst %.3f\n", S, sum / (steps + 1),
           worst);
    /* a new token enters the partial cache exactly and keeps that row while it stays
     * selected, also once the store holds it only as codes: token X (a large key the queries
     * then point at) followed by 12 more, so it leaves the store's window of 8 */
    const uint64_t x = n0 + steps; /* X's position: after every token so far */
    float *nk, *nv;
    tu_make_random_kv(&r, 13, D, &nk, &nv);
    for (int j = 0; j < D; j++) nk[j] *= 3.0f;
    for (int t = 0; t < 13; t++) {
        tu_append(s, nk + t * D, nv + t * D, 1, D);
        tu_append(ref, nk + t * D, nv + t * D, 1, D);
        for (int h = 0; h < G; h++)
            for (int j = 0; j < D; j++) Q[h * D + j] = nk[j] * (1.0f + 0.1f * (float)h);
        tu_attend(s, Q, G, D, p);
    }
    uint64_t pos[KP];
    double score[KP];
    const size_t pn = skv_rkv_partial(s, pos, score);
    skv_entries e = {0};
    skv_err err = {0};
    TU_OK(skv_sketch_entries(s, &e, &err), &err);
    size_t at = pn;
    for (size_t i = 0; i < pn; i++)
        if (pos[i] == x) at = i;
    if (at == pn) fail_msg("token X (%llu) was not kept", (unsigned long long)x);
    assert_memory_equal((const float *)e.k + at * D, nk, D * sizeof(float));
    assert_memory_equal((const float *)e.v + at * D, nv, D * sizeof(float));
    skv_sketch_stats(s, &st);
    assert_true(st.full_steps > 5 + 2); /* full steps after X was coded kept its exact row */
    skv_entries_free(&e);
    free(nk), free(nv), free(p), free(pr);
    skv_sketch_destroy(s), skv_sketch_destroy(ref);
    skv_dict_free(dict);
    free(K), free(V);
}

static void test_refreshkv_csr_bytes_within_budget(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = csr_ref_dict(&r, D, 64, 1, 1, SKV_KEYS_POST_ROTARY);
    skv_config c = rkv_csr_cfg(dict, 4, 0);
    c.budget_bytes = 48 * 1024;
    skv_config rc;
    skv_err err = {0};
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    assert_true(rc.partial_tokens > 1 && rc.max_tokens > 0);
    const size_t reserve = skv_config_max_bytes(&rc);
    assert_true(reserve <= c.budget_bytes); /* a worker can reserve it */
    const uint64_t cap = skv_config_token_cap(&rc);
    assert_int_equal(cap, rc.max_tokens + 2 + 8);
    skv_sketch *s = tu_create(&c);
    float *K, *V, Q[G * D];
    tu_make_random_kv(&r, (size_t)cap + 1, D, &K, &V);
    for (uint64_t t = 0; t < cap; t += 100) {
        const size_t m = cap - t < 100 ? (size_t)(cap - t) : 100;
        tu_append(s, K + t * D, V + t * D, m, D);
        synth_fill_normal(&r, Q, G * D, 1.0f);
        float out[G * D];
        tu_attend_output(s, Q, G, D, out);
        assert_true(skv_sketch_bytes(s) <= reserve);
    }
    /* one past the codes' cap: refused with the budget's code, nothing changed */
    skv_buf before = tu_save(s);
    assert_int_equal(skv_sketch_append(s, K + cap * D, V + cap * D, 1, D, &err), SKV_ERR_BUDGET);
    skv_buf after = tu_save(s);
    assert_true(tu_bufs_equal(&before, &after));
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.full_bytes + st.partial_bytes, st.bytes);
    skv_buf_free(&before), skv_buf_free(&after);
    skv_sketch_destroy(s);
    /* too small a budget: SKV_ERR_BUDGET, nothing made */
    c.budget_bytes = 2048;
    skv_sketch *x = NULL;
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_BUDGET);
    assert_null(x);
    skv_dict_free(dict);
    free(K), free(V);
}

static void test_refreshkv_csr_checkpoint_round_trip(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dicts *reg = NULL, *wrong = NULL;
    skv_err err = {0};
    TU_OK(skv_dicts_new(&reg, &err), &err);
    TU_OK(skv_dicts_new(&wrong, &err), &err);
    TU_OK(skv_dicts_add(reg, "dict-a", csr_ref_dict(&r, D, 64, 1, 1, SKV_KEYS_PRE_ROTARY), &err),
          &err);
    TU_OK(skv_dicts_add(wrong, "dict-a", csr_ref_dict(&r, D, 64, 1, 1, SKV_KEYS_PRE_ROTARY), &err),
          &err);
    skv_config c = rkv_csr_cfg(NULL, 6, 24);
    c.dtype = SKV_DTYPE_F16;
    c.rope_base = 1000.0f; /* pre-rotary codes: positions matter across the round trip */
    c.stride = 3;
    snprintf(c.dict_path, sizeof c.dict_path, "dict-a");
    TU_OK(skv_config_bind_dict(&c, reg, &err), &err);
    assert_non_null(c.dict);
    skv_sketch *a = tu_create(&c), *b = NULL;
    float *K, *V, Q[G * D];
    tu_make_random_kv(&r, 400, D, &K, &V);
    tu_append(a, K, V, 300, D);
    skv_partial *pa = tu_partials_new(G, D), *pb = tu_partials_new(G, D);
    for (int t = 0; t < 7; t++) {
        synth_fill_normal(&r, Q, G * D, 1.0f);
        tu_append(a, K + (300 + t) * D, V + (300 + t) * D, 1, D);
        tu_attend(a, Q, G, D, pa);
    }
    skv_buf buf = tu_save(a);
    TU_OK(skv_sketch_load_dicts(buf.data, buf.len, SIZE_MAX, reg, &b, NULL, &err), &err);
    assert_int_equal(skv_sketch_bytes(a), skv_sketch_bytes(b));
    skv_buf again = tu_save(b);
    assert_true(tu_bufs_equal(&buf, &again)); /* byte-identical */
    skv_buf_free(&again);
    for (int t = 7; t < 40; t++) { /* both go on alike, full steps and a prefill chunk included */
        synth_fill_normal(&r, Q, G * D, 1.0f);
        const size_t nt = t == 20 ? 3 : 1, at = 300 + (size_t)t + (t > 20 ? 2 : 0);
        tu_append(a, K + at * D, V + at * D, nt, D);
        tu_append(b, K + at * D, V + at * D, nt, D);
        tu_attend(a, Q, G, D, pa);
        tu_attend(b, Q, G, D, pb);
        assert_memory_equal(pa, pb, G * skv_partial_stride(D));
    }
    skv_stats sa, sb;
    skv_sketch_stats(a, &sa), skv_sketch_stats(b, &sb);
    assert_int_equal(sa.full_steps, sb.full_steps);
    assert_true(sa.full_steps > 3);
    /* no registry, the wrong dictionary (same name, other fingerprint), damage, a cut */
    skv_sketch *bad = NULL;
    assert_int_equal(skv_sketch_load(buf.data, buf.len, &bad, NULL, &err), SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_sketch_load_dicts(buf.data, buf.len, SIZE_MAX, wrong, &bad, NULL, &err),
                     SKV_ERR_CORRUPT);
    for (size_t at = 30; at < buf.len; at += buf.len / 23) { /* the checksum catches a flip */
        buf.data[at] ^= 0x21;
        assert_int_not_equal(
            skv_sketch_load_dicts(buf.data, buf.len, SIZE_MAX, reg, &bad, NULL, &err), SKV_OK);
        buf.data[at] ^= 0x21;
    }
    assert_int_not_equal(
        skv_sketch_load_dicts(buf.data, buf.len - 8, SIZE_MAX, reg, &bad, NULL, &err), SKV_OK);
    assert_null(bad);
    skv_buf_free(&buf);
    skv_sketch_destroy(a), skv_sketch_destroy(b);
    skv_dicts_free(reg), skv_dicts_free(wrong);
    free(pa), free(pb), free(K), free(V);
}

static void test_refreshkv_csr_refuses_bad_config_and_input(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = csr_ref_dict(&r, D, 64, 1, 1, SKV_KEYS_POST_ROTARY);
    skv_err err = {0};
    skv_sketch *x = NULL;
    /* no dictionary bound: a clear error at create (resolve alone works: a coordinator sizes
     * sketches without loading dictionaries) */
    skv_config c = rkv_csr_cfg(NULL, 4, 16);
    snprintf(c.dict_path, sizeof c.dict_path, "somewhere.skvd");
    skv_config rc;
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "dictionary"));
    assert_null(x);
    /* a device mirror of a csr store is refused, as with subgen */
    c = rkv_csr_cfg(dict, 4, 16);
    c.full_mem = SKV_FULL_MEM_DEVICE;
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "full_store=exact"));
    assert_null(x);
    /* bad csr fields, a dictionary of another head_dim */
    c = rkv_csr_cfg(dict, 1, 16);
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    c = rkv_csr_cfg(dict, 4, 16);
    c.rope_base = 100.0f; /* a post-rotary set */
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    assert_null(x);
    /* the name parses everywhere names parse */
    assert_int_equal(skv_full_store_parse("csr"), SKV_FULL_CSR);
    assert_string_equal(skv_full_store_name(SKV_FULL_CSR), "csr");
    /* NaN keys, values or queries: refused, nothing changed */
    c = rkv_csr_cfg(dict, 4, 16);
    skv_sketch *s = tu_create(&c);
    float *K, *V, Q[G * D];
    tu_make_random_kv(&r, 200, D, &K, &V);
    tu_append(s, K, V, 200, D);
    synth_fill_normal(&r, Q, G * D, 1.0f);
    skv_partial *p = tu_partials_new(G, D);
    tu_attend(s, Q, G, D, p);
    skv_buf before = tu_save(s);
    K[5 * D + 3] = NAN;
    assert_int_equal(skv_sketch_append(s, K, V, 10, D, &err), SKV_ERR_NONFINITE);
    K[5 * D + 3] = 0.0f, V[2 * D] = NAN;
    assert_int_equal(skv_sketch_append(s, K, V, 10, D, &err), SKV_ERR_NONFINITE);
    Q[D + 1] = NAN;
    assert_int_equal(skv_sketch_attend(s, Q, G, D, p, &err), SKV_ERR_NONFINITE);
    skv_buf after = tu_save(s);
    assert_true(tu_bufs_equal(&before, &after));
    skv_buf_free(&before), skv_buf_free(&after);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
    free(p), free(K), free(V);
}

int main(void) {
    tu_suite_begin("refreshkv_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refreshkv_csr_exact_codes_every_step_full_equal_exact),
        cmocka_unit_test(test_refreshkv_csr_random_codes_bounded_error_and_reads),
        cmocka_unit_test(test_refreshkv_csr_bytes_within_budget),
        cmocka_unit_test(test_refreshkv_csr_checkpoint_round_trip),
        cmocka_unit_test(test_refreshkv_csr_refuses_bad_config_and_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
