/*
 * test_serialize.c — checkpoint format: a round trip restores identical future behaviour
 * for every policy and dtype; truncated, corrupted, foreign and future-version buffers
 * are refused with the right code and never crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

enum { HEADER_BYTES = 24, VERSION_OFFSET = 4 };

typedef struct policy_case {
    const char *name;
    skv_policy_id policy;
    skv_values_mode values;
} policy_case;

static const policy_case CASES[] = {
    {"exact", SKV_POLICY_EXACT, SKV_VALUES_L2},
    {"sinkwin", SKV_POLICY_SINKWIN, SKV_VALUES_L2},
    {"h2o", SKV_POLICY_H2O, SKV_VALUES_L2},
    {"subgen-l2", SKV_POLICY_SUBGEN, SKV_VALUES_L2},
    {"subgen-cluster", SKV_POLICY_SUBGEN, SKV_VALUES_CLUSTER},
    {"refreshkv", SKV_POLICY_REFRESHKV, SKV_VALUES_L2},
};
#define NCASES (sizeof CASES / sizeof CASES[0])
static const skv_dtype DTYPES[] = {SKV_DTYPE_F32, SKV_DTYPE_F16, SKV_DTYPE_BF16};

/* Small parameters so every structure fills up, evicts, and (subgen) merges clusters. */
static skv_config case_config(const policy_case *pc, int d, skv_dtype dt, uint64_t seed) {
    skv_config c;
    skv_config_default(&c, pc->policy, d);
    c.dtype = dt;
    c.values = pc->values;
    c.seed = seed;
    switch (pc->policy) {
    case SKV_POLICY_SINKWIN: c.sinks = 2, c.window = 8; break;
    case SKV_POLICY_H2O: c.heavy = 8, c.window = 4; break;
    case SKV_POLICY_SUBGEN:
        c.sinks = 2, c.window = 8, c.samples = 4, c.value_slots = 16, c.max_clusters = 8;
        break;
    case SKV_POLICY_REFRESHKV: c.partial_tokens = 8, c.stride = 3; break;
    default: break;
    }
    return c;
}

/* A sketch with n random tokens, appended in chunks, and one attend (h2o scores). */
static skv_sketch *case_sketch(synth_rng *r, const policy_case *pc, int d, skv_dtype dt, size_t n) {
    skv_config c = case_config(pc, d, dt, synth_rng_u64(r));
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(r, n, d, &K, &V);
    tu_append_chunked(s, K, V, n, d, 37);
    float Q[2 * 64];
    synth_fill_normal(r, Q, (size_t)2 * d, 1.0f);
    skv_partial *p = tu_partials_new(2, d);
    tu_attend(s, Q, 2, d, p);
    free(p), free(K), free(V);
    return s;
}

static skv_sketch *load_ok(const skv_buf *b) {
    skv_sketch *s = NULL;
    skv_err err = {0};
    size_t used = 0;
    TU_OK(skv_sketch_load(b->data, b->len, &s, &used, &err), &err);
    assert_non_null(s);
    assert_int_equal(used, b->len);
    return s;
}

static void assert_same_stats(const skv_sketch *a, const skv_sketch *b) {
    skv_stats x, y;
    skv_sketch_stats(a, &x);
    skv_sketch_stats(b, &y);
    assert_int_equal(x.tokens_seen, y.tokens_seen);
    assert_int_equal(x.tokens_held, y.tokens_held);
    assert_int_equal(x.clusters, y.clusters);
    assert_int_equal(x.cluster_samples, y.cluster_samples);
    assert_int_equal(x.value_slots_filled, y.value_slots_filled);
    assert_int_equal(x.merges, y.merges);
    assert_true(memcmp(&x.delta, &y.delta, sizeof x.delta) == 0);
    assert_true(memcmp(&x.value_mass, &y.value_mass, sizeof x.value_mass) == 0);
}

/* Field by field: struct padding is not part of the contract. */
static void assert_same_config(const skv_config *x, const skv_config *y) {
    assert_int_equal(x->policy, y->policy);
    assert_int_equal(x->head_dim, y->head_dim);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->values, y->values);
    assert_int_equal(x->budget_bytes, y->budget_bytes);
    assert_int_equal(x->max_tokens, y->max_tokens);
    assert_int_equal(x->sinks, y->sinks);
    assert_int_equal(x->window, y->window);
    assert_int_equal(x->heavy, y->heavy);
    assert_int_equal(x->samples, y->samples);
    assert_int_equal(x->value_slots, y->value_slots);
    assert_int_equal(x->max_clusters, y->max_clusters);
    assert_true(memcmp(&x->delta, &y->delta, sizeof x->delta) == 0);
    assert_int_equal(x->seed, y->seed);
    assert_int_equal(x->seq_id, y->seq_id);
    assert_int_equal(x->layer, y->layer);
    assert_int_equal(x->head, y->head);
}

static void test_serialize_round_trip_preserves_future_behaviour(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 32, g = 3;
    size_t pb = (size_t)g * skv_partial_stride(d);
    for (size_t ci = 0; ci < NCASES; ci++)
        for (size_t di = 0; di < 3; di++) {
            const policy_case *pc = &CASES[ci];
            skv_sketch *a = case_sketch(&r, pc, d, DTYPES[di], tu_rand_range(&r, 1, 400));
            skv_buf saved = tu_save(a);
            skv_sketch *b = load_ok(&saved);
            assert_same_stats(a, b);
            assert_same_config(skv_sketch_config(a), skv_sketch_config(b));

            /* Save of the restored sketch is the same bytes. */
            skv_buf again = tu_save(b);
            assert_true(tu_bufs_equal(&saved, &again));
            skv_buf_free(&again);

            float Q[3 * 32];
            skv_partial *pa = tu_partials_new(g, d), *pbp = tu_partials_new(g, d);
            float *K, *V;
            tu_make_random_kv(&r, 60, d, &K, &V);
            for (int step = 0; step < 3; step++) {
                synth_fill_normal(&r, Q, (size_t)g * d, 1.0f);
                tu_attend(a, Q, g, d, pa);
                tu_attend(b, Q, g, d, pbp);
                if (memcmp(pa, pbp, pb) != 0)
                    fail_msg("%s/%s: restored sketch attends differently at step %d", pc->name,
                             skv_dtype_name(DTYPES[di]), step);
                /* identical future: appends (evictions, reservoir coins, merges) too */
                tu_append(a, K + step * 20 * d, V + step * 20 * d, 20, d);
                tu_append(b, K + step * 20 * d, V + step * 20 * d, 20, d);
            }
            tu_attend(a, Q, g, d, pa);
            tu_attend(b, Q, g, d, pbp);
            assert_memory_equal(pa, pbp, pb);
            assert_same_stats(a, b);
            skv_buf sa = tu_save(a), sb = tu_save(b);
            assert_true(tu_bufs_equal(&sa, &sb));
            skv_buf_free(&sa), skv_buf_free(&sb), skv_buf_free(&saved);
            free(pa), free(pbp), free(K), free(V);
            skv_sketch_destroy(a), skv_sketch_destroy(b);
        }
}

static void test_serialize_concatenated_sketches_load_in_sequence(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int d = 16;
    skv_buf buf = {0};
    skv_err err = {0};
    skv_sketch *orig[NCASES];
    for (size_t ci = 0; ci < NCASES; ci++) {
        orig[ci] = case_sketch(&r, &CASES[ci], d, SKV_DTYPE_F16, 100);
        TU_OK(skv_sketch_save(orig[ci], &buf, &err), &err); /* appends to buf */
    }
    size_t pos = 0;
    for (size_t ci = 0; ci < NCASES; ci++) {
        skv_sketch *s = NULL;
        size_t used = 0;
        TU_OK(skv_sketch_load(buf.data + pos, buf.len - pos, &s, &used, &err), &err);
        assert_true(used > HEADER_BYTES);
        assert_int_equal(skv_sketch_config(s)->policy, CASES[ci].policy);
        skv_buf one = tu_save(orig[ci]);
        assert_int_equal(one.len, used);
        assert_memory_equal(one.data, buf.data + pos, used);
        pos += used;
        skv_buf_free(&one);
        skv_sketch_destroy(s);
        skv_sketch_destroy(orig[ci]);
    }
    assert_int_equal(pos, buf.len);
    skv_buf_free(&buf);
}

/* Loads data[len]; the call must fail with one of the allowed codes, set err. */
static subkv_status load_must_fail(const uint8_t *data, size_t len, const char *what,
                                   size_t where) {
    skv_sketch *s = NULL;
    skv_err err = {0};
    size_t used = 0;
    subkv_status st = skv_sketch_load(data, len, &s, &used, &err);
    if (st == SKV_OK) {
        skv_sketch_destroy(s);
        fail_msg("%s at %zu: load accepted a damaged buffer", what, where);
    }
    assert_int_equal(err.code, st);
    assert_true(err.msg[0] != '\0');
    return st;
}

static void test_serialize_truncated_buffers_fail_cleanly(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++)
        for (size_t di = 0; di < 3; di++) {
            /* small: every prefix; large: a sample of prefixes */
            int small = di == 0;
            skv_sketch *s =
                case_sketch(&r, &CASES[ci], small ? 4 : 32, DTYPES[di], small ? 20 : 300);
            skv_buf b = tu_save(s);
            size_t tries = small ? b.len : 200;
            for (size_t t = 0; t < tries; t++) {
                size_t len = small ? t : tu_rand_range(&r, 0, b.len - 1);
                /* a private copy of exactly len bytes so any over-read is caught by ASan */
                uint8_t *cut = tu_malloc(len);
                memcpy(cut, b.data, len);
                subkv_status st = load_must_fail(cut, len, CASES[ci].name, len);
                if (st != SKV_ERR_TRUNCATED && st != SKV_ERR_CORRUPT)
                    fail_msg("%s prefix %zu/%zu: %s, want TRUNCATED or CORRUPT", CASES[ci].name,
                             len, b.len, subkv_status_name(st));
                free(cut);
            }
            skv_buf_free(&b);
            skv_sketch_destroy(s);
        }
}

static void test_serialize_any_single_byte_flip_is_detected(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++)
        for (size_t di = 0; di < 3; di++) {
            skv_sketch *s = case_sketch(&r, &CASES[ci], 8, DTYPES[di], 40);
            skv_buf b = tu_save(s);
            uint8_t *copy = tu_malloc(b.len);
            for (size_t pos = 0; pos < b.len; pos++) {
                memcpy(copy, b.data, b.len);
                copy[pos] ^= (uint8_t)tu_rand_range(&r, 1, 255);
                subkv_status st = load_must_fail(copy, b.len, CASES[ci].name, pos);
                /* crc32c catches every single-byte error in the body */
                if (pos >= HEADER_BYTES && st != SKV_ERR_CORRUPT)
                    fail_msg("%s body flip at %zu: %s, want CORRUPT", CASES[ci].name, pos,
                             subkv_status_name(st));
                if (pos < 4 && st != SKV_ERR_CORRUPT)
                    fail_msg("%s magic flip: %s, want CORRUPT", CASES[ci].name,
                             subkv_status_name(st));
            }
            free(copy);
            skv_buf_free(&b);
            skv_sketch_destroy(s);
        }
}

static void test_serialize_bad_magic_is_corrupt(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_sketch *s = case_sketch(&r, &CASES[0], 8, SKV_DTYPE_F32, 10);
    skv_buf b = tu_save(s);
    assert_memory_equal(b.data, "SKVS", 4);
    memcpy(b.data, "GGUF", 4);
    assert_int_equal(load_must_fail(b.data, b.len, "magic", 0), SKV_ERR_CORRUPT);
    skv_buf_free(&b);
    skv_sketch_destroy(s);
}

static void test_serialize_future_version_is_refused(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++) {
        skv_sketch *s = case_sketch(&r, &CASES[ci], 8, SKV_DTYPE_F32, 30);
        skv_buf b = tu_save(s);
        uint32_t v;
        memcpy(&v, b.data + VERSION_OFFSET, 4); /* little-endian host */
        assert_true(v >= 1);
        for (uint32_t bump = 1; bump <= 2; bump++) {
            uint32_t nv = v + bump * (bump == 1 ? 1u : 1000u);
            memcpy(b.data + VERSION_OFFSET, &nv, 4);
            assert_int_equal(load_must_fail(b.data, b.len, "version", nv), SKV_ERR_VERSION);
        }
        skv_buf_free(&b);
        skv_sketch_destroy(s);
    }
}

/* A checkpoint's few bytes can ask for a big sketch: the bounded load refuses it before
 * allocating, and loads it when the limit allows. */
static void test_serialize_bounded_load_refuses_oversized_sketch(void **state) {
    (void)state;
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SUBGEN, 64);
    c.budget_bytes = 4u << 20;
    skv_sketch *s = tu_create(&c);
    skv_buf b = {0};
    skv_err err;
    TU_OK(skv_sketch_save(s, &b, &err), &err);
    skv_sketch *t = NULL;
    assert_int_equal(skv_sketch_load_bounded(b.data, b.len, 1u << 20, &t, NULL, &err),
                     SKV_ERR_BUDGET);
    assert_null(t);
    assert_true(strstr(err.msg, "limit") != NULL);
    TU_OK(skv_sketch_load_bounded(b.data, b.len, skv_sketch_bytes(s), &t, NULL, &err), &err);
    assert_int_equal(skv_sketch_bytes(t), skv_sketch_bytes(s));
    skv_sketch_destroy(t);
    skv_sketch_destroy(s);
    skv_buf_free(&b);
}

int main(void) {
    tu_suite_begin("test_serialize");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serialize_bounded_load_refuses_oversized_sketch),
        cmocka_unit_test(test_serialize_round_trip_preserves_future_behaviour),
        cmocka_unit_test(test_serialize_concatenated_sketches_load_in_sequence),
        cmocka_unit_test(test_serialize_truncated_buffers_fail_cleanly),
        cmocka_unit_test(test_serialize_any_single_byte_flip_is_detected),
        cmocka_unit_test(test_serialize_bad_magic_is_corrupt),
        cmocka_unit_test(test_serialize_future_version_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
