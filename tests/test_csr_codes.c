/*
 * test_csr_codes.c — csr appends coded elsewhere (skv_csr_code_inputs, skv_csr_append_codes,
 * cache/csr.c), as the GPU worker codes them: the rows the append would code, coded here by
 * skv_mp_encode as csr_encode does, then handed back, leave the sketch byte for byte (its
 * checkpoint) as a plain skv_sketch_append of the same tokens. Many random appends of 1..300
 * tokens, sinks and windows 0 and > 0, f16 / bf16 / f32 storage, d 64 and 128, post- and
 * pre-rotary keys; and the bad inputs refused with nothing changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "csr_ref.h"

/* The codes of rows kin/vin[m][d] as csr_encode forms them: key s atoms, value halves
 * ceil(s/2) and floor(s/2), into idx/coef rows of 2 s. */
static void code_rows(const skv_sketch *s, const float *kin, const float *vin, size_t m,
                      uint16_t *idx, uint16_t *coef) {
    skv_csr_parts p;
    skv_err err = {0};
    TU_OK(skv_csr_parts_from(s, 0, &p, &err), &err);
    const int d = skv_sketch_config(s)->head_dim, h = d / 2, sp = p.sparsity, s0 = (sp + 1) / 2;
    for (size_t j = 0; j < m; j++) {
        uint16_t *ix = idx + j * 2 * sp, *cf = coef + j * 2 * sp;
        const float *k = kin + j * d, *v = vin + j * d;
        skv_mp_encode(p.dk, p.atoms, d, k, sp, ix, cf, NULL);
        skv_mp_encode(p.dv0, p.atoms, h, v, s0, ix + sp, cf + sp, NULL);
        skv_mp_encode(p.dv1, p.atoms, h, v + h, sp / 2, ix + sp + s0, cf + sp + s0, NULL);
    }
}

typedef struct codes_case {
    int d, sinks, window, s;
    skv_dtype dt;
    int pre; /* pre-rotary keys (rope_base 10000) */
} codes_case;

static void run_case(const codes_case *cc, int appends) {
    char name[96];
    snprintf(name, sizeof name, "csr codes d%d sinks%d window%d s%d %s%s", cc->d, cc->sinks,
             cc->window, cc->s, skv_dtype_name(cc->dt), cc->pre ? " pre" : "");
    synth_rng r;
    tu_rng_for(&r, name);
    const int d = cc->d;
    skv_dict *dict =
        csr_ref_dict(&r, d, 64, 1, 1, cc->pre ? SKV_KEYS_PRE_ROTARY : SKV_KEYS_POST_ROTARY);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, d);
    c.dict = dict, c.sparsity = cc->s, c.sinks = cc->sinks, c.window = cc->window, c.dtype = cc->dt;
    if (cc->pre) c.rope_base = 10000.0f;
    skv_sketch *plain = tu_create(&c), *given = tu_create(&c);
    enum { MAXN = 300 };
    float *K = NULL, *V = NULL;
    float *kin = tu_malloc((size_t)MAXN * d * sizeof(float));
    float *vin = tu_malloc((size_t)MAXN * d * sizeof(float));
    uint16_t *idx = tu_malloc((size_t)MAXN * 2 * cc->s * sizeof(uint16_t));
    uint16_t *coef = tu_malloc((size_t)MAXN * 2 * cc->s * sizeof(uint16_t));
    skv_err err = {0};
    size_t coded = 0;
    for (int a = 0; a < appends; a++) {
        /* mostly short appends (decode steps), now and then a long one (a prefill chunk) */
        const size_t n = a % 5 == 4 ? tu_rand_range(&r, 1, MAXN) : tu_rand_range(&r, 1, 8);
        tu_make_random_kv(&r, n, d, &K, &V);
        size_t m = 0, m2 = 0;
        TU_OK(skv_csr_code_inputs(given, K, V, n, NULL, NULL, &m, &err), &err);
        TU_OK(skv_csr_code_inputs(given, K, V, n, kin, vin, &m2, &err), &err);
        assert_int_equal(m, m2);
        assert_true(m <= n);
        code_rows(given, kin, vin, m, idx, coef);
        if (m && a % 7 == 3) { /* a wrong count or a bad code changes nothing */
            skv_buf before = tu_save(given);
            assert_int_equal(skv_csr_append_codes(given, K, V, n, d, idx, coef, m + 1, &err),
                             SKV_ERR_INVALID_ARG);
            const uint16_t keep = idx[0];
            idx[0] = 64; /* = atoms: out of range */
            assert_int_equal(skv_csr_append_codes(given, K, V, n, d, idx, coef, m, &err),
                             SKV_ERR_INVALID_ARG);
            idx[0] = keep;
            const uint16_t kc = coef[1];
            coef[1] = 0x7e00u; /* NaN */
            assert_int_equal(skv_csr_append_codes(given, K, V, n, d, idx, coef, m, &err),
                             SKV_ERR_INVALID_ARG);
            coef[1] = kc;
            const float k0 = K[0];
            K[0] = NAN;
            assert_int_equal(skv_csr_append_codes(given, K, V, n, d, idx, coef, m, &err),
                             SKV_ERR_NONFINITE);
            K[0] = k0;
            skv_buf after = tu_save(given);
            assert_true(tu_bufs_equal(&before, &after));
            skv_buf_free(&before), skv_buf_free(&after);
        }
        TU_OK(skv_csr_append_codes(given, K, V, n, d, idx, coef, m, &err), &err);
        tu_append(plain, K, V, n, d);
        coded += m;
        free(K), free(V);
        K = V = NULL;
        skv_buf bp = tu_save(plain), bg = tu_save(given);
        if (!tu_bufs_equal(&bp, &bg))
            fail_msg("%s: append %d of %zu tokens (%zu coded): checkpoints differ", name, a, n, m);
        skv_buf_free(&bp), skv_buf_free(&bg);
    }
    /* the rows really were coded: everything past the exact part */
    skv_stats st;
    skv_sketch_stats(given, &st);
    assert_int_equal(coded, st.tokens_seen - st.tokens_held);
    assert_true(coded > 0);
    skv_sketch_destroy(plain), skv_sketch_destroy(given);
    skv_dict_free(dict);
    free(kin), free(vin), free(idx), free(coef);
}

static void test_csr_codes_given_equal_plain_append(void **state) {
    (void)state;
    const codes_case cases[] = {
        {64, 0, 0, 8, SKV_DTYPE_F16, 0},   {64, 4, 16, 8, SKV_DTYPE_F16, 0},
        {64, 0, 32, 3, SKV_DTYPE_BF16, 0}, {64, 5, 0, 5, SKV_DTYPE_BF16, 0},
        {128, 4, 64, 8, SKV_DTYPE_F16, 0}, {128, 0, 0, 16, SKV_DTYPE_BF16, 0},
        {128, 2, 7, 4, SKV_DTYPE_BF16, 0}, {128, 3, 0, 6, SKV_DTYPE_F16, 0},
        {64, 4, 16, 8, SKV_DTYPE_F32, 0},  {64, 4, 16, 8, SKV_DTYPE_F16, 1},
        {128, 0, 0, 8, SKV_DTYPE_BF16, 1}, {128, 2, 300, 8, SKV_DTYPE_F16, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 40);
}

static void test_csr_codes_refuses_other_policies(void **state) {
    (void)state;
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, 64);
    skv_sketch *s = tu_create(&c);
    float K[64] = {0}, V[64] = {0};
    uint16_t ix[16] = {0}, cf[16] = {0};
    size_t m = 0;
    skv_err err = {0};
    assert_int_equal(skv_csr_code_inputs(s, K, V, 1, NULL, NULL, &m, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_csr_append_codes(s, K, V, 1, 64, ix, cf, 0, &err), SKV_ERR_INVALID_ARG);
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.tokens_seen, 0);
    skv_sketch_destroy(s);
}

int main(void) {
    tu_suite_begin("test_csr_codes");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr_codes_given_equal_plain_append),
        cmocka_unit_test(test_csr_codes_refuses_other_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
