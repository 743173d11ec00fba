/*
 * test_validation.c — every bad input is refused with its own status code and a message,
 * and a refused call leaves the sketch exactly as it was (same saved bytes, same future
 * outputs), for every policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

enum { D = 16, G = 3, NTOK = 60 };

typedef struct policy_case {
    skv_policy_id policy;
    skv_values_mode values;
} policy_case;
static const policy_case CASES[] = {
    {SKV_POLICY_EXACT, SKV_VALUES_L2},       {SKV_POLICY_SINKWIN, SKV_VALUES_L2},
    {SKV_POLICY_H2O, SKV_VALUES_L2},         {SKV_POLICY_SUBGEN, SKV_VALUES_L2},
    {SKV_POLICY_SUBGEN, SKV_VALUES_CLUSTER}, {SKV_POLICY_REFRESHKV, SKV_VALUES_L2},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* A sketch under test with its snapshot; every failed call is checked against it. */
typedef struct fixture {
    skv_sketch *s;
    skv_buf before;
    float K[NTOK * D], V[NTOK * D], Q[G * D];
    const char *policy;
} fixture;

static void fixture_init(fixture *f, synth_rng *r, const policy_case *pc) {
    skv_config c;
    skv_config_default(&c, pc->policy, D);
    c.values = pc->values;
    c.seed = synth_rng_u64(r);
    if (pc->policy == SKV_POLICY_SINKWIN || pc->policy == SKV_POLICY_SUBGEN)
        c.sinks = 2, c.window = 8;
    if (pc->policy == SKV_POLICY_H2O) c.heavy = 8, c.window = 4;
    if (pc->policy == SKV_POLICY_REFRESHKV) c.partial_tokens = 8, c.stride = 3;
    f->s = tu_create(&c);
    f->policy = skv_policy_name(pc->policy);
    synth_fill_normal(r, f->K, NTOK * D, 1.0f);
    synth_fill_normal(r, f->V, NTOK * D, 1.0f);
    synth_fill_normal(r, f->Q, G * D, 1.0f);
    tu_append(f->s, f->K, f->V, NTOK, D);
    skv_partial *p = tu_partials_new(G, D);
    tu_attend(f->s, f->Q, G, D, p);
    free(p);
    f->before = tu_save(f->s);
}

/* The call returned `st`; it must be `want`, with err filled, and the sketch untouched. */
static void expect_refused(fixture *f, subkv_status st, const skv_err *err, subkv_status want,
                           const char *what) {
    if (st != want)
        fail_msg("%s/%s: got %s, want %s", f->policy, what, subkv_status_name(st),
                 subkv_status_name(want));
    assert_int_equal(err->code, st);
    if (err->msg[0] == '\0') fail_msg("%s/%s: empty error message", f->policy, what);
    assert_non_null(memchr(err->msg, '\0', sizeof err->msg));
    skv_buf after = tu_save(f->s);
    if (!tu_bufs_equal(&f->before, &after))
        fail_msg("%s/%s: a refused call changed the sketch", f->policy, what);
    skv_buf_free(&after);
}

/* Future outputs equal those of a twin restored from the snapshot. */
static void fixture_finish(fixture *f) {
    skv_sketch *twin = NULL;
    skv_err err = {0};
    TU_OK(skv_sketch_load(f->before.data, f->before.len, &twin, NULL, &err), &err);
    skv_partial *pa = tu_partials_new(G, D), *pb = tu_partials_new(G, D);
    tu_attend(f->s, f->Q, G, D, pa);
    tu_attend(twin, f->Q, G, D, pb);
    assert_memory_equal(pa, pb, G * skv_partial_stride(D));
    tu_append(f->s, f->K, f->V, 5, D);
    tu_append(twin, f->K, f->V, 5, D);
    tu_attend(f->s, f->Q, G, D, pa);
    tu_attend(twin, f->Q, G, D, pb);
    assert_memory_equal(pa, pb, G * skv_partial_stride(D));
    free(pa), free(pb);
    skv_sketch_destroy(twin);
    skv_sketch_destroy(f->s);
    skv_buf_free(&f->before);
}

static void test_validation_wrong_head_dim_is_shape_error(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++) {
        fixture f;
        fixture_init(&f, &r, &CASES[ci]);
        skv_err err = {0};
        skv_partial *p = tu_partials_new(G, D + 1);
        expect_refused(&f, skv_sketch_append(f.s, f.K, f.V, 2, D + 1, &err), &err, SKV_ERR_SHAPE,
                       "append d+1");
        expect_refused(&f, skv_sketch_append(f.s, f.K, f.V, 2, D - 1, &err), &err, SKV_ERR_SHAPE,
                       "append d-1");
        expect_refused(&f, skv_sketch_attend(f.s, f.Q, G, D - 1, p, &err), &err, SKV_ERR_SHAPE,
                       "attend d-1");
        expect_refused(&f, skv_sketch_attend(f.s, f.Q, 1, D + 1, p, &err), &err, SKV_ERR_SHAPE,
                       "attend d+1");
        free(p);
        fixture_finish(&f);
    }
}

static void test_validation_zero_tokens_is_empty_error(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++) {
        fixture f;
        fixture_init(&f, &r, &CASES[ci]);
        skv_err err = {0};
        expect_refused(&f, skv_sketch_append(f.s, f.K, f.V, 0, D, &err), &err, SKV_ERR_EMPTY,
                       "append n=0");
        fixture_finish(&f);
    }
}

static void test_validation_nonfinite_anywhere_in_k_v_or_q_is_refused(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (size_t ci = 0; ci < NCASES; ci++) {
        fixture f;
        fixture_init(&f, &r, &CASES[ci]);
        skv_err err = {0};
        for (int which = 0; which < 3; which++) {
            /* the poisoned value sits at a random place, often late in the batch, so a
             * half-applied batch would show in the snapshot */
            size_t n = 10;
            float K[10 * D], V[10 * D], Q[G * D];
            memcpy(K, f.K, sizeof K);
            memcpy(V, f.V, sizeof V);
            memcpy(Q, f.Q, sizeof Q);
            size_t at = tu_rand_range(&r, 0, n * D - 1);
            float x = bad[which];
            K[at] = x;
            expect_refused(&f, skv_sketch_append(f.s, K, V, n, D, &err), &err, SKV_ERR_NONFINITE,
                           "non-finite K");
            K[at] = f.K[at];
            V[at] = x;
            expect_refused(&f, skv_sketch_append(f.s, K, V, n, D, &err), &err, SKV_ERR_NONFINITE,
                           "non-finite V");
            size_t qa = tu_rand_range(&r, 0, G * D - 1);
            Q[qa] = x;
            skv_partial *p = tu_partials_new(G, D);
            expect_refused(&f, skv_sketch_attend(f.s, Q, G, D, p, &err), &err, SKV_ERR_NONFINITE,
                           "non-finite Q");
            free(p);
        }
        fixture_finish(&f);
    }
}

static void test_validation_null_arguments_are_invalid(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (size_t ci = 0; ci < NCASES; ci++) {
        fixture f;
        fixture_init(&f, &r, &CASES[ci]);
        skv_err err = {0};
        skv_partial *p = tu_partials_new(G, D);
        expect_refused(&f, skv_sketch_append(f.s, NULL, f.V, 1, D, &err), &err, SKV_ERR_INVALID_ARG,
                       "append K=NULL");
        expect_refused(&f, skv_sketch_append(f.s, f.K, NULL, 1, D, &err), &err, SKV_ERR_INVALID_ARG,
                       "append V=NULL");
        expect_refused(&f, skv_sketch_attend(f.s, NULL, G, D, p, &err), &err, SKV_ERR_INVALID_ARG,
                       "attend Q=NULL");
        expect_refused(&f, skv_sketch_attend(f.s, f.Q, G, D, NULL, &err), &err, SKV_ERR_INVALID_ARG,
                       "attend out=NULL");
        expect_refused(&f, skv_sketch_attend(f.s, f.Q, 0, D, p, &err), &err, SKV_ERR_INVALID_ARG,
                       "attend g=0");
        expect_refused(&f, skv_sketch_attend(f.s, f.Q, -2, D, p, &err), &err, SKV_ERR_INVALID_ARG,
                       "attend g<0");
        expect_refused(&f, skv_sketch_save(f.s, NULL, &err), &err, SKV_ERR_INVALID_ARG,
                       "save out=NULL");
        /* errors are reported through the return value even without an skv_err */
        assert_int_equal(skv_sketch_append(f.s, NULL, f.V, 1, D, NULL), SKV_ERR_INVALID_ARG);
        assert_int_equal(skv_sketch_append(f.s, f.K, f.V, 0, D, NULL), SKV_ERR_EMPTY);
        free(p);
        fixture_finish(&f);
    }
    /* calls without a sketch */
    skv_err err = {0};
    float K[D] = {1}, Q[D] = {1};
    skv_partial *p = tu_partials_new(1, D);
    skv_buf b = {0};
    skv_sketch *out = NULL;
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, D);
    assert_int_equal(skv_sketch_append(NULL, K, K, 1, D, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(err.code, SKV_ERR_INVALID_ARG);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(skv_sketch_attend(NULL, Q, 1, D, p, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_sketch_save(NULL, &b, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(b.len, 0);
    assert_int_equal(skv_sketch_create(NULL, &out, &err), SKV_ERR_INVALID_ARG);
    assert_null(out);
    assert_int_equal(skv_sketch_create(&c, NULL, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_sketch_load(NULL, 100, &out, NULL, &err), SKV_ERR_INVALID_ARG);
    assert_null(out);
    uint8_t junk[32] = {'S', 'K', 'V', 'S'};
    assert_int_equal(skv_sketch_load(junk, sizeof junk, NULL, NULL, &err), SKV_ERR_INVALID_ARG);
    assert_true(err.msg[0] != '\0');
    free(p);
}

static void test_validation_budget_below_fixed_parts_fails_at_create(void **state) {
    (void)state;
    const size_t budgets[] = {1, 64, 256};
    for (size_t ci = 0; ci < NCASES; ci++)
        for (size_t bi = 0; bi < 3; bi++) {
            skv_config c;
            skv_config_default(&c, CASES[ci].policy, 128);
            c.values = CASES[ci].values;
            c.budget_bytes = budgets[bi];
            skv_sketch *s = NULL;
            skv_err err = {0};
            subkv_status st = skv_sketch_create(&c, &s, &err);
            if (st != SKV_ERR_BUDGET)
                fail_msg("%s budget %zu: %s, want SKV_ERR_BUDGET",
                         skv_policy_name(CASES[ci].policy), budgets[bi], subkv_status_name(st));
            assert_null(s);
            assert_int_equal(err.code, SKV_ERR_BUDGET);
            assert_true(err.msg[0] != '\0');
        }
}

static void test_validation_bad_config_is_refused(void **state) {
    (void)state;
    skv_sketch *s = NULL;
    skv_err err = {0};
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SUBGEN, D);
    c.window = -1;
    assert_int_equal(skv_sketch_create(&c, &s, &err), SKV_ERR_INVALID_ARG);
    assert_true(err.msg[0] != '\0');
    skv_config_default(&c, SKV_POLICY_SUBGEN, D);
    c.delta = NAN;
    assert_int_equal(skv_sketch_create(&c, &s, &err), SKV_ERR_INVALID_ARG);
    skv_config_default(&c, SKV_POLICY_EXACT, D);
    c.head_dim = 0;
    subkv_status st = skv_sketch_create(&c, &s, &err);
    assert_true(st == SKV_ERR_SHAPE || st == SKV_ERR_INVALID_ARG);
    skv_config_default(&c, SKV_POLICY_EXACT, D);
    c.policy = (skv_policy_id)77;
    st = skv_sketch_create(&c, &s, &err);
    assert_true(st == SKV_ERR_UNSUPPORTED || st == SKV_ERR_INVALID_ARG);
    skv_config_default(&c, SKV_POLICY_EXACT, D);
    c.dtype = (skv_dtype)9;
    st = skv_sketch_create(&c, &s, &err);
    assert_true(st == SKV_ERR_UNSUPPORTED || st == SKV_ERR_INVALID_ARG);
    assert_null(s);
}

static void test_validation_distinct_failures_have_distinct_codes(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    fixture f;
    fixture_init(&f, &r, &CASES[3]);
    subkv_status got[6];
    int n = 0;
    float K[D * 2];
    memcpy(K, f.K, sizeof K);
    K[D + 3] = NAN;
    got[n++] = skv_sketch_append(f.s, f.K, f.V, 1, D + 1, NULL); /* shape      */
    got[n++] = skv_sketch_append(f.s, f.K, f.V, 0, D, NULL);     /* empty      */
    got[n++] = skv_sketch_append(f.s, K, f.V, 2, D, NULL);       /* non-finite */
    got[n++] = skv_sketch_append(f.s, NULL, f.V, 1, D, NULL);    /* null       */
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SUBGEN, D);
    c.budget_bytes = 8;
    skv_sketch *s = NULL;
    got[n++] = skv_sketch_create(&c, &s, NULL); /* budget */
    uint8_t junk[64];
    memset(junk, 0xA5, sizeof junk);
    got[n++] = skv_sketch_load(junk, sizeof junk, &s, NULL, NULL); /* corrupt */
    for (int i = 0; i < n; i++) {
        assert_int_not_equal(got[i], SKV_OK);
        for (int j = 0; j < i; j++)
            if (got[i] == got[j])
                fail_msg("failures %d and %d share the code %s", i, j, subkv_status_name(got[i]));
    }
    fixture_finish(&f);
}

static void test_validation_status_names_are_distinct_and_stable(void **state) {
    (void)state;
    for (int i = 0; i < SKV_STATUS_COUNT; i++) {
        const char *a = subkv_status_name((subkv_status)i);
        assert_non_null(a);
        assert_true(strncmp(a, "SKV_", 4) == 0);
        for (int j = 0; j < i; j++)
            if (strcmp(a, subkv_status_name((subkv_status)j)) == 0)
                fail_msg("codes %d and %d share the name %s", i, j, a);
    }
    assert_string_equal(subkv_status_name(SKV_OK), "SKV_OK");
    assert_string_equal(subkv_status_name(SKV_ERR_SHAPE), "SKV_ERR_SHAPE");
    assert_non_null(subkv_status_name((subkv_status)999));
    assert_non_null(subkv_status_name((subkv_status)-1));
}

static void test_validation_enum_names_round_trip_and_unknown_parse_fails(void **state) {
    (void)state;
    for (int p = 0; p < SKV_POLICY_COUNT; p++) /* every id is built in: no gaps */
        assert_int_equal(skv_policy_parse(skv_policy_name((skv_policy_id)p)), p);
    assert_string_equal(skv_policy_name(SKV_POLICY_REFRESHKV), "refreshkv");
    assert_string_equal(skv_policy_name(SKV_POLICY_CSR), "csr");
    assert_string_equal(skv_policy_name(SKV_POLICY_COUNT), "unknown");
    for (int t = SKV_DTYPE_F32; t <= SKV_DTYPE_BF16; t++)
        assert_int_equal(skv_dtype_parse(skv_dtype_name((skv_dtype)t)), t);
    for (int v = SKV_VALUES_L2; v <= SKV_VALUES_CLUSTER; v++)
        assert_int_equal(skv_values_parse(skv_values_name((skv_values_mode)v)), v);
    assert_string_equal(skv_policy_name(SKV_POLICY_SUBGEN), "subgen");
    assert_string_equal(skv_dtype_name(SKV_DTYPE_BF16), "bf16");
    assert_string_equal(skv_values_name(SKV_VALUES_CLUSTER), "cluster");
    assert_int_equal(skv_policy_parse("quest"), -1);
    assert_int_equal(skv_dtype_parse("f8"), -1);
    assert_int_equal(skv_values_parse(""), -1);
    assert_int_equal(skv_dtype_size(SKV_DTYPE_F32), 4);
    assert_int_equal(skv_dtype_size(SKV_DTYPE_F16), 2);
    assert_int_equal(skv_dtype_size(SKV_DTYPE_BF16), 2);
}

int main(void) {
    tu_suite_begin("test_validation");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_wrong_head_dim_is_shape_error),
        cmocka_unit_test(test_validation_zero_tokens_is_empty_error),
        cmocka_unit_test(test_validation_nonfinite_anywhere_in_k_v_or_q_is_refused),
        cmocka_unit_test(test_validation_null_arguments_are_invalid),
        cmocka_unit_test(test_validation_budget_below_fixed_parts_fails_at_create),
        cmocka_unit_test(test_validation_bad_config_is_refused),
        cmocka_unit_test(test_validation_distinct_failures_have_distinct_codes),
        cmocka_unit_test(test_validation_status_names_are_distinct_and_stable),
        cmocka_unit_test(test_validation_enum_names_round_trip_and_unknown_parse_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
