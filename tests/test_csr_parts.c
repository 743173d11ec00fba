/*
 * test_csr_parts.c — what the GPU worker's csr mirror (worker/gpu_csr.c) reads from a csr
 * sketch, checked on the CPU: skv_csr_parts_from (codes from a row on, the exact part, the
 * dictionary group) and skv_sinkwin_changed (which exact rows an append wrote). A host copy
 * kept up to date exactly as the worker's device mirror is (only the new codes and the
 * changed sink rows / ring slots copied after each append) must equal the sketch's rows,
 * and its attend (tests/csr_ref.h) must equal the sketch's own within the storage rounding
 * of the decoded rows. Plus the worker's eligibility rule for csr (skv_gpu_eligible).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "csr_ref.h"
#include "gpu_attend.h"

/* The host copy: rows as the device mirror lays them out, codes append-only. */
typedef struct host_mirror {
    unsigned char *ek, *ev; /* (sinks + window) rows of rb bytes */
    uint16_t *idx, *coef;   /* codes, max_coded rows */
    size_t ncodes;
    uint64_t seen;
} host_mirror;

typedef struct parts_case {
    int d, s, sinks, window;
    skv_dtype dtype;
} parts_case;

static void mirror_case(parts_case pc) {
    char name[96];
    snprintf(name, sizeof name, "parts d%d s%d sinks%d window%d dt%d", pc.d, pc.s, pc.sinks,
             pc.window, (int)pc.dtype);
    synth_rng r;
    tu_rng_for(&r, name);
    const int d = pc.d, N = 96, G = 3;
    skv_dict *dict = csr_ref_dict(&r, d, N, 2, 2, SKV_KEYS_POST_ROTARY);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, d);
    c.sparsity = pc.s, c.sinks = pc.sinks, c.window = pc.window, c.dtype = pc.dtype;
    c.dict = dict;
    c.layer = 3; /* group 1 of 2 groups of 2 layers */
    skv_sketch *s = tu_create(&c);
    const size_t rb = (size_t)d * skv_dtype_size(pc.dtype), row = 2 * (size_t)pc.s;
    const size_t erows = (size_t)pc.sinks + (size_t)pc.window, total = 400;
    host_mirror m = {.ek = tu_malloc(erows * rb + 1),
                     .ev = tu_malloc(erows * rb + 1),
                     .idx = tu_malloc(total * row * 2),
                     .coef = tu_malloc(total * row * 2)};
    float *K, *V, Q[G * 128];
    tu_make_random_kv(&r, total, d, &K, &V);
    skv_partial *want = tu_partials_new(G, d), *got = tu_partials_new(G, d);
    skv_err err = {0};
    double worst = 0.0;
    for (size_t fed = 0; fed < total;) {
        size_t add = tu_rand_range(&r, 1, fed < 40 ? 3 : 2 * (size_t)pc.window + 5);
        if (add > total - fed) add = total - fed;
        tu_append(s, K + fed * d, V + fed * d, add, d);
        fed += add;
        /* the worker's refresh, on the host */
        skv_csr_parts p;
        TU_OK(skv_csr_parts_from(s, m.ncodes, &p, &err), &err);
        assert_int_equal(p.first, m.ncodes);
        assert_int_equal(p.group, 1);
        assert_ptr_equal(p.dk, skv_dict_keys(dict, 1));
        assert_ptr_equal(p.dv1, skv_dict_values(dict, 1, 1));
        if (p.n > p.first) { /* (no code arrays before the first coded token) */
            memcpy(m.idx + m.ncodes * row, p.idx, (p.n - p.first) * row * 2);
            memcpy(m.coef + m.ncodes * row, p.coef, (p.n - p.first) * row * 2);
        }
        m.ncodes = p.n;
        size_t s0 = 99, w[2][2];
        const int nw = skv_sinkwin_changed(p.sw, m.seen, fed, &s0, w);
        assert_true(s0 <= p.sw->nsinks && nw >= 0 && nw <= 2);
        size_t copied = p.sw->nsinks - s0;
        if (copied) {
            memcpy(m.ek + s0 * rb, (char *)p.sw->sk.data + s0 * rb, copied * rb);
            memcpy(m.ev + s0 * rb, (char *)p.sw->sv.data + s0 * rb, copied * rb);
        }
        for (int i = 0; i < nw; i++) {
            assert_true(w[i][0] + w[i][1] <= (size_t)pc.window && w[i][1] > 0);
            const size_t at = (size_t)pc.sinks + w[i][0];
            memcpy(m.ek + at * rb, (char *)p.sw->wk.data + w[i][0] * rb, w[i][1] * rb);
            memcpy(m.ev + at * rb, (char *)p.sw->wv.data + w[i][0] * rb, w[i][1] * rb);
            copied += w[i][1];
        }
        /* append-only: never more exact rows than tokens appended (the window's turnover) */
        assert_true(copied <= (m.seen == 0 ? p.sw->nsinks + p.sw->wfill : add));
        m.seen = fed;
        /* the copy is the sketch: rows [0, nsinks + wfill) contiguous, codes equal */
        assert_true(p.sw->wfill == 0 || p.sw->nsinks == (size_t)pc.sinks);
        if (p.sw->nsinks) {
            assert_memory_equal(m.ek, p.sw->sk.data, p.sw->nsinks * rb);
            assert_memory_equal(m.ev, p.sw->sv.data, p.sw->nsinks * rb);
        }
        if (p.sw->wfill) {
            assert_memory_equal(m.ek + (size_t)pc.sinks * rb, p.sw->wk.data, p.sw->wfill * rb);
            assert_memory_equal(m.ev + (size_t)pc.sinks * rb, p.sw->wv.data, p.sw->wfill * rb);
        }
        const uint16_t *ai = NULL, *ac = NULL;
        size_t an = 0;
        TU_OK(skv_csr_codes(s, &ai, &ac, &an, &err), &err);
        assert_int_equal(an, m.ncodes);
        if (an) {
            assert_memory_equal(m.idx, ai, an * row * 2);
            assert_memory_equal(m.coef, ac, an * row * 2);
        }
        /* what the worker attends equals the sketch's attend, up to the rounding of the
         * decoded rows to the storage dtype that only the CPU attend does */
        synth_fill_normal(&r, Q, (size_t)G * d, 1.5f);
        tu_attend(s, Q, G, d, want);
        csr_ref_partials(s, Q, G, got);
        for (int h = 0; h < G; h++) {
            const double e = csr_ref_rel(skv_partial_at(got, d, (size_t)h),
                                         skv_partial_at(want, d, (size_t)h), d);
            worst = e > worst ? e : worst;
            if (!(e <= (pc.dtype == SKV_DTYPE_BF16 ? 2e-2 : 3e-3)))
                fail_msg("%s after %zu tokens head %d: rel err %g", name, fed, h, e);
        }
    }
    printf("# %s: worker decomposition vs the sketch's attend: worst rel err %.2e\n", name, worst);
    skv_csr_parts p;
    assert_int_equal(skv_csr_parts_from(s, m.ncodes + 1, &p, &err), SKV_ERR_INVALID_ARG);
    free(m.ek), free(m.ev), free(m.idx), free(m.coef), free(K), free(V), free(want), free(got);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
}

static void test_csr_parts_keep_an_append_only_copy_equal(void **state) {
    (void)state;
    mirror_case((parts_case){64, 8, 4, 16, SKV_DTYPE_F16});
    mirror_case((parts_case){128, 3, 0, 9, SKV_DTYPE_BF16});
    mirror_case((parts_case){64, 5, 3, 0, SKV_DTYPE_F16}); /* no window: sinks, then codes */
    mirror_case((parts_case){128, 16, 1, 1, SKV_DTYPE_F16});
}

/* skv_sinkwin_changed on a sinkwin sketch's window directly: a copy of unknown age (before
 * 0, or now < before) gets every held row; a ring that wrapped reports two ranges. */
static void test_sinkwin_changed_ranges(void **state) {
    (void)state;
    skv_sinkwin sw = {.sinks = 2, .window = 5, .nsinks = 2, .wfill = 5, .whead = 3};
    size_t s0 = 9, w[2][2];
    assert_int_equal(skv_sinkwin_changed(&sw, 0, 40, &s0, w), 2); /* everything */
    assert_int_equal(s0, 0);
    assert_int_equal(w[0][0], 3), assert_int_equal(w[0][1], 2);
    assert_int_equal(w[1][0], 0), assert_int_equal(w[1][1], 3);
    assert_int_equal(skv_sinkwin_changed(&sw, 40, 30, &s0, w), 2); /* unknown age */
    assert_int_equal(skv_sinkwin_changed(&sw, 38, 40, &s0, w), 1); /* slots 1, 2 */
    assert_int_equal(s0, 2);
    assert_int_equal(w[0][0], 1), assert_int_equal(w[0][1], 2);
    assert_int_equal(skv_sinkwin_changed(&sw, 36, 40, &s0, w), 2); /* slots 4, 0, 1, 2 */
    assert_int_equal(w[0][0], 4), assert_int_equal(w[0][1], 1);
    assert_int_equal(w[1][0], 0), assert_int_equal(w[1][1], 3);
    assert_int_equal(skv_sinkwin_changed(&sw, 40, 40, &s0, w), 0); /* nothing new */
    skv_sinkwin young = {.sinks = 4, .window = 5, .nsinks = 3, .wfill = 0, .whead = 0};
    assert_int_equal(skv_sinkwin_changed(&young, 1, 3, &s0, w), 0); /* sink rows 1, 2 only */
    assert_int_equal(s0, 1);
    skv_sinkwin filling = {.sinks = 1, .window = 6, .nsinks = 1, .wfill = 4, .whead = 4};
    assert_int_equal(skv_sinkwin_changed(&filling, 1, 5, &s0, w), 1); /* the first 4 slots */
    assert_int_equal(s0, 1);
    assert_int_equal(w[0][0], 0), assert_int_equal(w[0][1], 4);
}

/* Wrong policy or row: refused. Pre-rotary codes report their base; the worker keeps those
 * (and f32 storage, other head dims) off the GPU code path. */
static void test_csr_parts_refusals_and_gpu_eligibility(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_SINKWIN, 64);
    skv_sketch *sw = tu_create(&c);
    skv_csr_parts p;
    skv_err err = {0};
    assert_int_equal(skv_csr_parts_from(sw, 0, &p, &err), SKV_ERR_INVALID_ARG);
    skv_sketch_destroy(sw);
    skv_dict *post = csr_ref_dict(&r, 64, 32, 1, 1, SKV_KEYS_POST_ROTARY);
    skv_dict *pre = csr_ref_dict(&r, 64, 32, 1, 1, SKV_KEYS_PRE_ROTARY);
    skv_config_default(&c, SKV_POLICY_CSR, 64);
    c.dtype = SKV_DTYPE_F16, c.sparsity = 4, c.dict = post;
    skv_sketch *a = tu_create(&c);
    assert_true(skv_gpu_eligible(NULL, a, 3));
    assert_false(skv_gpu_eligible(NULL, a, 5)); /* the exact part's kernel has no g = 5 */
    c.rope_base = 10000.0f, c.dict = pre;
    skv_sketch *b = tu_create(&c);
    TU_OK(skv_csr_parts_from(b, 0, &p, &err), &err);
    assert_true(p.rope_base == 10000.0f);
    assert_int_equal(p.n, 0);
    assert_false(skv_gpu_eligible(NULL, b, 3));
    c.rope_base = 0.0f, c.dict = post, c.dtype = SKV_DTYPE_F32;
    skv_sketch *f = tu_create(&c);
    assert_false(skv_gpu_eligible(NULL, f, 3));
    skv_sketch_destroy(a), skv_sketch_destroy(b), skv_sketch_destroy(f);
    skv_dict_free(post), skv_dict_free(pre);
}

int main(void) {
    tu_suite_begin("test_csr_parts");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr_parts_keep_an_append_only_copy_equal),
        cmocka_unit_test(test_sinkwin_changed_ranges),
        cmocka_unit_test(test_csr_parts_refusals_and_gpu_eligibility),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
