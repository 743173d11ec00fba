/*
 * test_csr.c — CSR (sparse codes over a learned dictionary): matching pursuit, the policy,
 * its checkpoints, the dictionary file and the trainer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <unistd.h>

#include "test_util.h"

#include "csr_dict.h"
#include "dict_train.h"
#include "skv_internal.h" /* skv_crc32c, skv_entries */
#include "csr_ref.h"

/* A finished set of random unit atoms (post-rotary, skv_dict_new's default). */
static skv_dict *random_dict(synth_rng *r, int d, int atoms, int groups, int lpg) {
    return csr_ref_dict(r, d, atoms, groups, lpg, SKV_KEYS_POST_ROTARY);
}

static skv_config csr_config(const skv_dict *dict, int s, int sinks, int window) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, dict->d);
    c.sparsity = s;
    c.sinks = sinks;
    c.window = window;
    c.dict = dict;
    return c;
}

/* Vectors that are sparse in a hidden dictionary: k atoms with N(0, scale^2) weights plus
 * N(0, noise^2) per coordinate. */
static void sparse_rows(synth_rng *r, const float *atoms, int N, int dim, int k, float scale,
                        float noise, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * (size_t)dim;
        synth_fill_normal(r, row, (size_t)dim, noise);
        for (int t = 0; t < k; t++) {
            const float *a = atoms + (size_t)(synth_rng_u64(r) % (uint64_t)N) * dim;
            const float c = (float)synth_rng_normal(r) * scale;
            for (int j = 0; j < dim; j++) row[j] += c * a[j];
        }
    }
}

/* K, V sparse in dict's group 0 (values per half). */
static void sparse_kv(synth_rng *r, const skv_dict *dict, int k, float scale, size_t n, float *K,
                      float *V) {
    const int d = dict->d, h = d / 2;
    float *half = tu_malloc(n * (size_t)h * sizeof *half);
    sparse_rows(r, skv_dict_keys(dict, 0), dict->atoms, d, k, scale, 0.01f, K, n);
    for (int p = 0; p < 2; p++) {
        sparse_rows(r, skv_dict_values(dict, 0, p), dict->atoms, h, k / 2, 1.0f, 0.01f, half, n);
        for (size_t i = 0; i < n; i++)
            memcpy(V + i * (size_t)d + (size_t)p * h, half + i * (size_t)h, (size_t)h * 4);
    }
    free(half);
}

/* ---- matching pursuit ------------------------------------------------------------------- */

static void test_csr_mp_residual_never_increases(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { DIM = 48, N = 96, S = 40 };
    float *atoms = tu_malloc((size_t)N * DIM * sizeof *atoms), x[DIM], rec[DIM], resid[S + 1];
    uint16_t idx[S], coef[S];
    csr_ref_unit_rows(&r, atoms, N, DIM);
    for (int trial = 0; trial < 50; trial++) {
        synth_fill_normal(&r, x, DIM, (float)(0.01 + 30.0 * synth_rng_uniform(&r)));
        skv_mp_encode(atoms, N, DIM, x, S, idx, coef, resid);
        for (int k = 0; k < S; k++) {
            assert_true(idx[k] < N);
            if (!(resid[k + 1] <= resid[k] * (1.0f + 1e-5f) + 1e-6f))
                fail_msg("trial %d step %d: residual %g -> %g", trial, k, resid[k], resid[k + 1]);
        }
        assert_true(resid[S] < 0.5f * resid[0]); /* and it does go down */
        /* the reported residual is what the stored code leaves */
        skv_mp_decode(atoms, DIM, idx, coef, S, rec);
        double e = 0.0;
        for (int j = 0; j < DIM; j++) e += ((double)x[j] - rec[j]) * ((double)x[j] - rec[j]);
        assert_true(fabs(sqrt(e) - resid[S]) <= 1e-4 * resid[0] + 1e-6);
    }
    free(atoms);
}

/* s = d over an orthonormal basis: every coordinate is recovered, up to the float16 rounding
 * of the coefficients (relative 2^-11 each). Value halves need N = d atoms of dimension d/2:
 * an orthonormal basis of the half and its negation. */
static void orthonormal_case(synth_rng *r0, int pre) {
    synth_rng r = *r0;
    const int d = 32;
    const size_t n = 300;
    skv_err err = {0};
    skv_dict *dict =
        csr_ref_orthonormal_dict(&r, d, pre ? SKV_KEYS_PRE_ROTARY : SKV_KEYS_POST_ROTARY);
    skv_config c = csr_config(dict, d, 0, 0);
    c.rope_base = pre ? 10000.0f : 0.0f; /* pre: coded unrotated, decoded rotated back */
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    tu_append_chunked(s, K, V, n, d, 37);
    skv_entries e = {0};
    TU_OK(skv_sketch_entries(s, &e, &err), &err);
    assert_int_equal(e.n, n);
    for (size_t i = 0; i < n; i++) {
        const float *kh = (const float *)e.k + i * d, *vh = (const float *)e.v + i * d;
        assert_true(tu_rel_error_ff(kh, K + i * d, d) <= 1e-3);
        assert_true(tu_rel_error_ff(vh, V + i * d, d) <= 1e-3);
    }
    float q[4 * 32], out[4 * 32];
    double ref[32];
    synth_fill_normal(&r, q, 4 * 32, 1.0f);
    tu_attend_output(s, q, 4, d, out);
    for (int g = 0; g < 4; g++) {
        synth_ref_attention(q + g * d, K, V, n, d, ref);
        TU_ASSERT_REL_CLOSE(out + g * d, ref, d, 2e-3, "head %d, pre-rotary %d", g, pre);
    }
    skv_entries_free(&e);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
    free(K), free(V);
}

static void test_csr_orthonormal_dictionary_with_s_equal_d_reconstructs_exactly(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    orthonormal_case(&r, 0);
    orthonormal_case(&r, 1);
}

/* RoPE on adjacent pairs, the test's own copy of the rule in csr.c (subkv.h, rope_base). */
static void ref_rope(float *x, int d, double pos, double base, double sign) {
    for (int i = 0; i < d / 2; i++) {
        const double a = sign * pos * pow(base, -2.0 * i / d);
        const double x0 = x[2 * i], x1 = x[2 * i + 1];
        x[2 * i] = (float)(x0 * cos(a) - x1 * sin(a));
        x[2 * i + 1] = (float)(x0 * sin(a) + x1 * cos(a));
    }
}

/* Pre-rotary coding: token t's key is un-rotated by R(t), coded, decoded and rotated back;
 * the sketch equals float64 attention over exactly that, and a post-rotary set (or the other
 * way round) is refused. */
static void test_csr_pre_rotary_codes_unrotated_keys(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, N = 40, S = 6, sinks = 2, W = 7;
    const size_t n = 130;
    const double base = 500.0;
    skv_dict *dict = random_dict(&r, d, N, 1, 1), *post = random_dict(&r, d, N, 1, 1);
    skv_err err = {0};
    dict->key_space = SKV_KEYS_PRE_ROTARY;
    TU_OK(skv_dict_finish(dict, &err), &err);
    skv_config c = csr_config(dict, S, sinks, W);
    c.rope_base = (float)base;
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    tu_append_chunked(s, K, V, n, d, 11);
    float *Kh = tu_malloc(n * d * sizeof *Kh);
    memcpy(Kh, K, n * d * sizeof *K);
    uint16_t idx[16], coef[16];
    for (size_t t = sinks; t < n - W; t++) {
        float kp[16];
        memcpy(kp, K + t * d, sizeof kp);
        ref_rope(kp, d, (double)t, base, -1.0);
        skv_mp_encode(skv_dict_keys(dict, 0), N, d, kp, S, idx, coef, NULL);
        skv_mp_decode(skv_dict_keys(dict, 0), d, idx, coef, S, Kh + t * d);
        ref_rope(Kh + t * d, d, (double)t, base, 1.0);
    }
    float Q[3 * 16], out[3 * 16], *Vh = tu_malloc(n * d * sizeof *Vh);
    memcpy(Vh, V, n * d * sizeof *V);
    for (size_t t = sinks; t < n - W; t++)
        for (int p = 0; p < 2; p++) {
            const float *A = skv_dict_values(dict, 0, p);
            skv_mp_encode(A, N, d / 2, V + t * d + p * d / 2, S / 2, idx, coef, NULL);
            skv_mp_decode(A, d / 2, idx, coef, S / 2, Vh + t * d + p * d / 2);
        }
    double ref[16];
    synth_fill_normal(&r, Q, 3 * 16, 2.0f);
    tu_attend_output(s, Q, 3, d, out);
    for (int g = 0; g < 3; g++) {
        synth_ref_attention(Q + g * d, Kh, Vh, n, d, ref);
        TU_ASSERT_REL_CLOSE(out + g * d, ref, d, 1e-4, "head %d", g);
    }
    skv_sketch *x = NULL;
    c.dict = post; /* a post-rotary set with rope_base > 0 */
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    c.dict = dict, c.rope_base = 0.0f; /* a pre-rotary set without rope */
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    c.rope_base = 0.5f;
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    c.rope_base = NAN;
    assert_int_equal(skv_sketch_create(&c, &x, &err), SKV_ERR_INVALID_ARG);
    assert_null(x);
    free(K), free(V), free(Kh), free(Vh);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
    skv_dict_free(post);
}

/* ---- the policy ---------------------------------------------------------------------------- */

static void test_csr_attention_error_falls_as_sparsity_grows(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 32, N = 64, G = 8;
    const size_t n = 600;
    skv_dict *dict = random_dict(&r, d, N, 1, 1);
    float *K = tu_malloc(n * d * sizeof *K), *V = tu_malloc(n * d * sizeof *V);
    sparse_kv(&r, dict, 8, 1.5f, n, K, V);
    float Q[8 * 32], out[8 * 32];
    double ref[32];
    synth_fill_normal(&r, Q, (size_t)G * d, 1.0f);
    const int ss[4] = {2, 4, 8, 16};
    double err_s[4];
    for (int t = 0; t < 4; t++) {
        skv_config c = csr_config(dict, ss[t], 0, 0);
        skv_sketch *s = tu_create(&c);
        tu_append(s, K, V, n, d);
        tu_attend_output(s, Q, G, d, out);
        err_s[t] = 0.0;
        for (int g = 0; g < G; g++) {
            synth_ref_attention(Q + g * d, K, V, n, d, ref);
            err_s[t] += synth_rel_error(out + g * d, ref, d) / G;
        }
        print_message("# s = %2d: mean relative attention error %.4f\n", ss[t], err_s[t]);
        skv_sketch_destroy(s);
    }
    for (int t = 1; t < 4; t++) assert_true(err_s[t] < err_s[t - 1]);
    assert_true(err_s[3] < 0.25 * err_s[0]);
    free(K), free(V);
    skv_dict_free(dict);
}

/* Sinks and window exact, every other token exactly its MP reconstruction: the sketch equals
 * float64 attention over that mixture, for chunked appends. */
static void test_csr_window_tokens_exact_and_older_tokens_decoded(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16, N = 40, S = 5, sinks = 3, W = 20; /* odd: value halves get 3 + 2 */
    const size_t n = 150;
    skv_dict *dict = random_dict(&r, d, N, 1, 1);
    skv_config c = csr_config(dict, S, sinks, W);
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, n, d, &K, &V);
    for (size_t i = 0; i < n;) {
        size_t m = tu_rand_range(&r, 1, 23);
        if (m > n - i) m = n - i;
        tu_append(s, K + i * d, V + i * d, m, d);
        i += m;
    }
    float *Kh = tu_malloc(n * d * sizeof *Kh), *Vh = tu_malloc(n * d * sizeof *Vh);
    memcpy(Kh, K, n * d * sizeof *K);
    memcpy(Vh, V, n * d * sizeof *V);
    uint16_t idx[16], coef[16];
    for (size_t i = sinks; i < n - W; i++) {
        skv_mp_encode(skv_dict_keys(dict, 0), N, d, K + i * d, S, idx, coef, NULL);
        skv_mp_decode(skv_dict_keys(dict, 0), d, idx, coef, S, Kh + i * d);
        for (int p = 0; p < 2; p++) {
            const float *A = skv_dict_values(dict, 0, p);
            const int sp = p == 0 ? (S + 1) / 2 : S / 2;
            skv_mp_encode(A, N, d / 2, V + i * d + p * d / 2, sp, idx, coef, NULL);
            skv_mp_decode(A, d / 2, idx, coef, sp, Vh + i * d + p * d / 2);
        }
    }
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_held, sinks + W);
    float Q[4 * 16], out[4 * 16];
    double ref[16], truth[16];
    synth_fill_normal(&r, Q, 4 * 16, 2.0f);
    tu_attend_output(s, Q, 4, d, out);
    for (int g = 0; g < 4; g++) {
        synth_ref_attention(Q + g * d, Kh, Vh, n, d, ref);
        TU_ASSERT_REL_CLOSE(out + g * d, ref, d, 1e-5, "head %d", g);
        synth_ref_attention(Q + g * d, K, V, n, d, truth); /* and coding did change it */
        assert_true(synth_rel_error(out + g * d, truth, d) > 1e-3);
    }
    free(K), free(V), free(Kh), free(Vh);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
}

static void test_csr_budget_derives_capacity_and_refuses_past_it(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16;
    skv_dict *dict = random_dict(&r, d, 32, 1, 1);
    skv_config c = csr_config(dict, 4, 2, 8), rc;
    skv_err err = {0};
    c.budget_bytes = 4000;
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    assert_true(rc.max_tokens > 0);
    assert_true(skv_config_max_bytes(&rc) <= c.budget_bytes);
    skv_sketch *s = tu_create(&c);
    const size_t n = 2 + 8 + (size_t)rc.max_tokens;
    assert_int_equal(skv_config_token_cap(&rc), n); /* what the service checks up front */
    float *K, *V;
    tu_make_random_kv(&r, n + 1, d, &K, &V);
    tu_append_chunked(s, K, V, n, d, 7);
    assert_int_equal(skv_sketch_bytes(s), skv_config_max_bytes(&rc));
    skv_buf before = tu_save(s);
    assert_int_equal(skv_sketch_append(s, K + n * d, V + n * d, 1, d, &err), SKV_ERR_BUDGET);
    skv_buf after = tu_save(s);
    assert_true(tu_bufs_equal(&before, &after));
    c.budget_bytes = 100;
    assert_int_equal(skv_config_resolve(&c, &rc, &err), SKV_ERR_BUDGET);
    skv_buf_free(&before), skv_buf_free(&after);
    free(K), free(V);
    skv_sketch_destroy(s);
    skv_dict_free(dict);
}

static void test_csr_rejects_bad_parameters(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = random_dict(&r, 16, 32, 2, 3); /* layers 0..5 */
    skv_dict *other = random_dict(&r, 8, 32, 1, 1);
    skv_config c, rc;
    skv_err err = {0};
    skv_sketch *s = NULL;
    struct {
        int sparsity, atoms, layer;
        const skv_dict *dict;
        subkv_status want;
    } cases[] = {
        {1, 0, 0, dict, SKV_ERR_INVALID_ARG},  {0, 0, 0, dict, SKV_ERR_INVALID_ARG},
        {18, 0, 0, dict, SKV_ERR_INVALID_ARG}, {-2, 0, 0, dict, SKV_ERR_INVALID_ARG},
        {4, 31, 0, dict, SKV_ERR_INVALID_ARG}, {4, -1, 0, dict, SKV_ERR_INVALID_ARG},
        {4, 0, 6, dict, SKV_ERR_INVALID_ARG},  {4, 0, 0, other, SKV_ERR_SHAPE},
        {4, 0, 0, NULL, SKV_ERR_INVALID_ARG}, /* create needs a dictionary */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c = csr_config(dict, cases[i].sparsity, 0, 4);
        c.atoms = cases[i].atoms;
        c.layer = (uint32_t)cases[i].layer;
        c.dict = cases[i].dict;
        subkv_status got = skv_sketch_create(&c, &s, &err);
        if (got != cases[i].want) fail_msg("case %zu: %s (%s)", i, subkv_status_name(got), err.msg);
        assert_null(s);
    }
    c = csr_config(dict, 4, 0, 4);
    c.head_dim = 15;
    assert_int_equal(skv_config_resolve(&c, &rc, &err), SKV_ERR_SHAPE);
    c = csr_config(dict, 4, 0, 4);
    c.dict = NULL; /* resolve alone works without the dictionary (a coordinator sizing) */
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    c = csr_config(dict, 4, 0, 4);
    c.layer = 5;
    TU_OK(skv_config_resolve(&c, &rc, &err), &err);
    assert_int_equal(rc.atoms, 32);
    skv_dict_free(dict);
    skv_dict_free(other);
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static void test_csr_save_load_is_bit_identical_and_needs_its_dictionary(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int d = 16;
    skv_dicts *reg = NULL, *wrong = NULL;
    skv_err err = {0};
    TU_OK(skv_dicts_new(&reg, &err), &err);
    TU_OK(skv_dicts_new(&wrong, &err), &err);
    skv_dict *dict = random_dict(&r, d, 48, 2, 1);
    dict->key_space = SKV_KEYS_PRE_ROTARY; /* and the config tail carries rope_base */
    TU_OK(skv_dict_finish(dict, &err), &err);
    TU_OK(skv_dicts_add(reg, "test-dict", dict, &err), &err);
    skv_dict *other = random_dict(&r, d, 48, 2, 1);
    other->key_space = SKV_KEYS_PRE_ROTARY;
    TU_OK(skv_dict_finish(other, &err), &err);
    TU_OK(skv_dicts_add(wrong, "test-dict", other, &err), &err);
    skv_config c = csr_config(dict, 6, 2, 10);
    c.rope_base = 10000.0f;
    c.dict = NULL;
    snprintf(c.dict_path, sizeof c.dict_path, "test-dict");
    c.layer = 1;
    c.dtype = SKV_DTYPE_F16;
    TU_OK(skv_config_bind_dict(&c, reg, &err), &err);
    assert_ptr_equal(c.dict, dict);
    skv_sketch *s = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, 200, d, &K, &V);
    tu_append_chunked(s, K, V, 120, d, 13);
    skv_buf a = tu_save(s);
    skv_sketch *t = NULL;
    size_t used = 0;
    TU_OK(skv_sketch_load_dicts(a.data, a.len, SIZE_MAX, reg, &t, &used, &err), &err);
    assert_int_equal(used, a.len);
    skv_buf b = tu_save(t);
    assert_true(tu_bufs_equal(&a, &b));
    float Q[2 * 16];
    synth_fill_normal(&r, Q, 2 * 16, 1.0f);
    skv_partial *p1 = tu_partials_new(2, d), *p2 = tu_partials_new(2, d);
    tu_attend(s, Q, 2, d, p1);
    tu_attend(t, Q, 2, d, p2);
    assert_memory_equal(p1, p2, 2 * skv_partial_stride(d));
    tu_append(s, K + 120 * d, V + 120 * d, 80, d); /* they go on alike */
    tu_append(t, K + 120 * d, V + 120 * d, 80, d);
    skv_buf a2 = tu_save(s), b2 = tu_save(t);
    assert_true(tu_bufs_equal(&a2, &b2));
    skv_sketch *x = NULL;
    assert_int_equal(skv_sketch_load(a.data, a.len, &x, NULL, &err), SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_sketch_load_dicts(a.data, a.len, SIZE_MAX, wrong, &x, NULL, &err),
                     SKV_ERR_CORRUPT);
    assert_null(x);
    skv_buf_free(&a), skv_buf_free(&b), skv_buf_free(&a2), skv_buf_free(&b2);
    free(p1), free(p2), free(K), free(V);
    skv_sketch_destroy(s);
    skv_sketch_destroy(t);
    skv_dicts_free(reg);
    skv_dicts_free(wrong);
}

/* ---- the dictionary file ------------------------------------------------------------------- */

static void test_csr_dictionary_file_round_trips_and_rejects_corruption(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    skv_dict *dict = random_dict(&r, 8, 12, 3, 2);
    skv_err err = {0};
    skv_buf b = {0};
    TU_OK(skv_dict_save(dict, &b, &err), &err);
    char path[128];
    snprintf(path, sizeof path, "/tmp/test_csr_%ld.skvd", (long)getpid());
    TU_OK(skv_dict_save_file(dict, path, &err), &err);
    skv_dict *back = NULL;
    TU_OK(skv_dict_load_file(path, &back, &err), &err);
    unlink(path);
    assert_int_equal(back->d, 8);
    assert_int_equal(back->atoms, 12);
    assert_int_equal(back->groups, 3);
    assert_int_equal(back->layers_per_group, 2);
    assert_true(back->fingerprint == dict->fingerprint);
    assert_memory_equal(back->data, dict->data, 3 * 2 * 12 * 8 * sizeof(float));
    skv_dict_free(back);
    for (size_t len = 0; len < b.len; len += len < 64 ? 1 : 97) { /* every prefix is refused */
        subkv_status st = skv_dict_load(b.data, len, &back, &err);
        if (st != SKV_ERR_TRUNCATED && st != SKV_ERR_CORRUPT)
            fail_msg("prefix of %zu bytes: %s", len, subkv_status_name(st));
        assert_null(back);
    }
    for (int t = 0; t < 400; t++) { /* any single flipped bit is refused */
        const size_t pos = t < 160 ? (size_t)t / 8 : tu_rand_range(&r, 0, b.len - 1);
        const uint8_t bit = (uint8_t)(1u << (t < 160 ? t % 8 : (int)(synth_rng_u64(&r) % 8)));
        b.data[pos] ^= bit;
        subkv_status st = skv_dict_load(b.data, b.len, &back, &err);
        if (st == SKV_OK) fail_msg("flip of bit %u at byte %zu accepted", bit, pos);
        assert_null(back);
        b.data[pos] ^= bit;
    }
    /* a consistent checksum over a non-unit atom is still refused */
    float x0;
    memcpy(&x0, b.data + SKV_DICT_HEADER_BYTES + 24, 4); /* first float of the first atom */
    x0 += x0 >= 0.0f ? 0.5f : -0.5f; /* away from zero: the norm grows (x0 + 0.5 could be -x0) */
    memcpy(b.data + SKV_DICT_HEADER_BYTES + 24, &x0, 4);
    const uint32_t crc = skv_crc32c(b.data + SKV_DICT_HEADER_BYTES, b.len - SKV_DICT_HEADER_BYTES);
    memcpy(b.data + 16, &crc, 4);
    assert_int_equal(skv_dict_load(b.data, b.len, &back, &err), SKV_ERR_CORRUPT);
    b.data[4] = 9; /* another version */
    assert_int_equal(skv_dict_load(b.data, b.len, &back, &err), SKV_ERR_VERSION);
    skv_buf_free(&b);
    skv_dict_free(dict);
}

/* ---- the trainer --------------------------------------------------------------------------- */

static void test_csr_trainer_improves_on_its_init_and_on_random_atoms(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int dim = 16, N = 32, s = 3;
    const size_t n = 3000;
    float *hidden = tu_malloc((size_t)N * dim * sizeof *hidden);
    float *X = tu_malloc(n * dim * sizeof *X), *A = tu_malloc((size_t)N * dim * sizeof *A);
    float *rnd = tu_malloc((size_t)N * dim * sizeof *rnd);
    csr_ref_unit_rows(&r, hidden, N, dim);
    csr_ref_unit_rows(&r, rnd, N, dim);
    sparse_rows(&r, hidden, N, dim, s, 1.0f, 0.01f, X, n);
    dict_train_opts o;
    dict_train_defaults(&o);
    o.atoms = N;
    o.iters = 6;
    o.seed = synth_rng_u64(&r);
    dict_train_report rep;
    skv_err err = {0};
    TU_OK(dict_train_table(X, n, dim, s, &o, A, &rep, &err), &err);
    const double e_rand = dict_code_error(rnd, N, dim, X, n, s);
    print_message("# trainer: random %.4f, init %.4f, trained %.4f, coherence %.3f\n", e_rand,
                  rep.init_error, rep.final_error, rep.max_coherence);
    assert_true(rep.final_error < rep.init_error);
    assert_true(rep.final_error < 0.8 * e_rand);
    assert_true(fabs(dict_code_error(A, N, dim, X, n, s) - rep.final_error) < 1e-9);
    for (int i = 0; i < N; i++) { /* unit atoms */
        double nn = 0.0;
        for (int j = 0; j < dim; j++) nn += (double)A[i * dim + j] * A[i * dim + j];
        assert_true(fabs(nn - 1.0) < 1e-4);
    }
    /* reproducible: the same seed trains the same atoms bit for bit; another seed, other atoms */
    float *again = tu_malloc((size_t)N * dim * sizeof *again);
    TU_OK(dict_train_table(X, n, dim, s, &o, again, &rep, &err), &err);
    assert_memory_equal(A, again, (size_t)N * dim * sizeof *A);
    o.seed ^= 0x9e3779b97f4a7c15ull;
    TU_OK(dict_train_table(X, n, dim, s, &o, again, &rep, &err), &err);
    assert_memory_not_equal(A, again, (size_t)N * dim * sizeof *A);
    free(again);
    o.atoms = (int)n + 1; /* more atoms than samples */
    assert_int_equal(dict_train_table(X, n, dim, s, &o, A, &rep, &err), SKV_ERR_INVALID_ARG);
    free(hidden), free(X), free(A), free(rnd);
}

int main(void) {
    tu_suite_begin("test_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr_mp_residual_never_increases),
        cmocka_unit_test(test_csr_orthonormal_dictionary_with_s_equal_d_reconstructs_exactly),
        cmocka_unit_test(test_csr_attention_error_falls_as_sparsity_grows),
        cmocka_unit_test(test_csr_window_tokens_exact_and_older_tokens_decoded),
        cmocka_unit_test(test_csr_pre_rotary_codes_unrotated_keys),
        cmocka_unit_test(test_csr_budget_derives_capacity_and_refuses_past_it),
        cmocka_unit_test(test_csr_rejects_bad_parameters),
        cmocka_unit_test(test_csr_save_load_is_bit_identical_and_needs_its_dictionary),
        cmocka_unit_test(test_csr_dictionary_file_round_trips_and_rejects_corruption),
        cmocka_unit_test(test_csr_trainer_improves_on_its_init_and_on_random_atoms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
