/*
 * test_eval.c — the model-free pieces of subkv-eval (tools/eval_text.h, eval_attn.h,
 * eval_report.h): memory fraction -> budget, the retrieval prompts and their answer checker,
 * the word-list filter, the float64 reference error, the measuring backend against a float64
 * reference on fresh random K, V, Q, and the summary's perplexity arithmetic (bytes read
 * per decode step: test_eval_read.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

#include "eval_attn.h"
#include "eval_docs.h"
#include "eval_report.h"
#include "eval_text.h"
#include "policy_eval.h"
#include "test_util.h"

/* Budget = exact's bytes for L tokens / F: an exact sketch given the F = 1 budget holds exactly
 * L tokens; sinkwin and h2o at 1/F hold about L / F tokens, never more bytes than the budget. */
static void test_eval_budget_is_exact_bytes_over_fraction(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int it = 0; it < 20; it++) {
        const uint64_t L = tu_rand_range(&r, 256, 16384);
        const int d = (int)tu_rand_range(&r, 8, 128);
        const skv_dtype dt = it % 2 ? SKV_DTYPE_F16 : SKV_DTYPE_F32;
        const unsigned F = (unsigned)tu_rand_range(&r, 2, 16);
        skv_config c, res;
        skv_err err = {0};
        skv_config_default(&c, SKV_POLICY_EXACT, d);
        c.dtype = dt;
        c.budget_bytes = eval_budget_bytes(d, dt, L, 1);
        TU_OK(skv_config_resolve(&c, &res, &err), &err);
        assert_int_equal(res.max_tokens, L);
        const size_t b = eval_budget_bytes(d, dt, L, F);
        assert_true(b <= c.budget_bytes / F && b + 1 >= c.budget_bytes / F);
        const size_t row = 2 * (size_t)d * skv_dtype_size(dt);
        skv_config_default(&c, SKV_POLICY_SINKWIN, d);
        c.dtype = dt;
        c.budget_bytes = b;
        if (skv_config_resolve(&c, &res, &err) == SKV_OK) {
            const double held = res.sinks + res.window;
            assert_true(held <= (double)L / F + 1.0);
            assert_true(held * row <= (double)b);
        }
    }
    assert_int_equal(eval_budget_bytes(64, SKV_DTYPE_F16, 4096, 0), 0);
}

/* csr's sparsity at 1/F: the chosen s of {8, 4, 3, 2} holds every one of L tokens (the
 * codes' 8 s bytes a token past the window plus the fixed part fit the budget, and the
 * sketch's token cap covers L), no larger candidate does, and 0 means not even s = 2 does. */
static void test_eval_csr_sparsity_is_largest_that_holds_the_sequence(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    static const int cand[4] = {8, 4, 3, 2};
    int seen[9] = {0};
    for (int it = 0; it < 200; it++) {
        const uint64_t L = tu_rand_range(&r, 256, 16384);
        const int d = 2 * (int)tu_rand_range(&r, 4, 64);
        const skv_dtype dt = it % 2 ? SKV_DTYPE_F16 : SKV_DTYPE_F32;
        const unsigned F = (unsigned)tu_rand_range(&r, 2, 16);
        const size_t b = eval_budget_bytes(d, dt, L, F);
        skv_config c, res;
        skv_err err = {0};
        skv_config_default(&c, SKV_POLICY_CSR, d);
        c.dtype = dt;
        if (it % 3 == 0) c.window = (int)tu_rand_range(&r, 1, 256);
        const int s = eval_csr_sparsity(&c, b, L);
        seen[s]++;
        for (int i = 0; i < 4; i++) {
            skv_config t = c;
            t.budget_bytes = b;
            t.sparsity = cand[i];
            const int fits =
                skv_config_resolve(&t, &res, &err) == SKV_OK && skv_config_token_cap(&res) >= L;
            if (cand[i] > s) assert_false(fits); /* no larger s (or none at all) fits */
            if (cand[i] != s) continue;
            assert_true(fits);
            assert_true(skv_config_max_bytes(&res) <= b);
            /* the arithmetic of cache/csr.c: 8 s bytes per coded token past the window */
            const uint64_t coded = L > (uint64_t)(c.sinks + c.window) ? L - c.sinks - c.window : 0;
            assert_true(8 * (uint64_t)s * coded <= b);
        }
    }
    assert_true(seen[0] > 0 && seen[8] > 0); /* both ends of the rule were exercised */
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, 64);
    /* budget 0 derives no cap: the rule picks none (subkv-eval applies it under a budget) */
    assert_int_equal(eval_csr_sparsity(&c, 0, 4096), 0);
}

static const char FILLER[] = "The quick brown fox jumps over the lazy dog.\n"
                             "Debian is a free operating system.\n"
                             "Manual pages describe commands.\n";

static void test_eval_passkey_needle_sits_at_its_depth(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    size_t prev = 0;
    const size_t chars = tu_rand_range(&r, 2000, 4000);
    for (int i = 0; i <= 10; i++) {
        eval_prompt p;
        const unsigned key = (unsigned)tu_rand_range(&r, 10000, 99999);
        assert_int_equal(eval_passkey_prompt(FILLER, sizeof FILLER - 1, chars, i / 10.0, key, &p),
                         0);
        char want[16];
        snprintf(want, sizeof want, "%05u", key);
        assert_string_equal(p.answer, want);
        char needle[64];
        snprintf(needle, sizeof needle, "The pass key is %s.", want);
        const char *at = strstr(p.context, needle);
        assert_non_null(at);
        assert_null(strstr(at + 1, needle)); /* once */
        assert_int_equal(at[-1], '\n');      /* on a line of its own */
        const size_t pos = (size_t)(at - p.context), len = strlen(p.context);
        /* Within a filler line of depth * length (plus the header). */
        const double rel = (double)pos / (double)len;
        assert_true(fabs(rel - i / 10.0) < 0.1);
        if (i > 0) assert_true(pos >= prev);
        prev = pos;
        assert_non_null(strstr(p.question, "pass key"));
        assert_true(len > chars / 2);
        eval_prompt_free(&p);
    }
    eval_prompt p;
    assert_int_equal(eval_passkey_prompt(FILLER, sizeof FILLER - 1, 100, 1.5, 1, &p), -1);
    assert_int_equal(eval_passkey_prompt(FILLER, 0, 100, 0.5, 1, &p), -1);
}

static void test_eval_lines_prompt_asks_the_line_at_depth(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const char *const words[] = {"apple", "bread", "cloud", "delta", "ember", "frost", "grape"};
    for (int it = 0; it < 20; it++) {
        const size_t n = tu_rand_range(&r, 1, 40);
        const double depth = (double)tu_rand_range(&r, 0, 100) / 100.0;
        const uint64_t seed = synth_rng_u64(&r);
        eval_prompt p, q;
        assert_int_equal(eval_lines_prompt(words, 7, n, depth, seed, &p), 0);
        assert_int_equal(eval_lines_prompt(words, 7, n, depth, seed, &q), 0);
        assert_string_equal(p.context, q.context); /* deterministic in the seed */
        eval_prompt_free(&q);
        /* Walk the lines: the asked one is number round(depth * (n - 1)). */
        const size_t ask = (size_t)llround(depth * (double)(n - 1));
        const char *s = strstr(p.context, "record start:\n\n");
        assert_non_null(s);
        s += strlen("record start:\n\n");
        size_t k = 0;
        char asked[64] = {0};
        for (; s && *s; k++) {
            char w1[16], w2[16];
            unsigned v = 0;
            assert_int_equal(
                sscanf(s, "line %15[a-z]-%15[a-z]: REGISTER_CONTENT is <%u>", w1, w2, &v), 3);
            assert_true(v >= 1 && v <= 50000);
            if (k == ask) {
                char vs[16];
                snprintf(vs, sizeof vs, "%u", v);
                assert_string_equal(vs, p.answer);
                snprintf(asked, sizeof asked, "line %s-%s?", w1, w2);
            }
            s = strchr(s, '\n');
            if (s) s++;
        }
        assert_int_equal(k, n);
        assert_non_null(strstr(p.question, asked));
        eval_prompt_free(&p);
    }
    eval_prompt p;
    assert_int_equal(eval_lines_prompt(words, 1, 5, 0.5, 1, &p), -1);
    assert_int_equal(eval_lines_prompt(words, 7, 0, 0.5, 1, &p), -1);
}

static void test_eval_answer_match_wants_the_first_number_exactly(void **state) {
    (void)state;
    assert_true(eval_answer_match(" 48213.\n", "48213"));
    assert_true(eval_answer_match("48213", "48213"));
    assert_true(eval_answer_match("12>", "12"));
    assert_true(eval_answer_match(" is 07001 ok", "07001"));
    assert_false(eval_answer_match(" 482130", "48213"));
    assert_false(eval_answer_match(" 4821.", "48213"));
    assert_false(eval_answer_match(" 12 48213", "48213")); /* the first number counts */
    assert_false(eval_answer_match("no digits", "48213"));
    assert_false(eval_answer_match("", "1"));
    assert_false(eval_answer_match("1", ""));
}

static void test_eval_load_words_keeps_short_lowercase_words(void **state) {
    (void)state;
    char path[] = "/tmp/test_eval_wordsXXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "apple\nA\nBob's\nab\nzebra\nextraordinary\ncat\nnaïve\ntwo words\nword";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    char *buf = NULL, **w = NULL;
    size_t n = 0;
    assert_int_equal(eval_load_words(path, &buf, &w, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(w[0], "apple");
    assert_string_equal(w[1], "zebra");
    assert_string_equal(w[2], "cat");
    assert_string_equal(w[3], "word");
    free(w);
    free(buf);
    unlink(path);
    assert_int_equal(eval_load_words("/nonexistent/words", &buf, &w, &n), -1);
}

/* Single-precision attention over rows [n][stride] (what a correct backend returns). */
static void attn_f32(const float *q, const float *K, const float *V, size_t n, size_t stride, int d,
                     float *out) {
    float m = -INFINITY, *s = tu_malloc(n * sizeof(float)), l = 0.0f;
    for (size_t t = 0; t < n; t++) {
        float x = 0.0f;
        for (int c = 0; c < d; c++) x += q[c] * K[t * stride + (size_t)c];
        s[t] = x / sqrtf((float)d);
        m = s[t] > m ? s[t] : m;
    }
    for (int c = 0; c < d; c++) out[c] = 0.0f;
    for (size_t t = 0; t < n; t++) {
        const float p = expf(s[t] - m);
        l += p;
        for (int c = 0; c < d; c++) out[c] += p * V[t * stride + (size_t)c];
    }
    for (int c = 0; c < d; c++) out[c] /= l;
    free(s);
}

static void test_eval_rel_err_is_zero_for_exact_and_one_for_zeros(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int it = 0; it < 10; it++) {
        const int d = (int)tu_rand_range(&r, 4, 64);
        const size_t n = tu_rand_range(&r, 2, 300), cut = tu_rand_range(&r, 0, n);
        float *K, *V, *q = tu_malloc((size_t)d * sizeof(float)), *out = tu_malloc(d * 4u);
        tu_make_random_kv(&r, n, d, &K, &V);
        synth_fill_normal(&r, q, (size_t)d, 1.0f);
        attn_f32(q, K, V, n, (size_t)d, d, out);
        double *sc = tu_malloc(n * sizeof(double));
        const float *Ks[2] = {K, K + cut * (size_t)d}, *Vs[2] = {V, V + cut * (size_t)d};
        const size_t segs[2] = {cut, n - cut};
        const double e = eval_attn_rel_err(q, Ks, Vs, segs, (size_t)d, d, out, sc);
        assert_true(e < 1e-4);
        double lz = -INFINITY; /* the log normalizer directly, term by term */
        for (size_t t = 0; t < n; t++) {
            double dot = 0.0;
            for (int c = 0; c < d; c++) dot += (double)q[c] * K[t * (size_t)d + (size_t)c];
            const double x = dot / sqrt((double)d), hi = x > lz ? x : lz, lo = x > lz ? lz : x;
            lz = hi + log1p(exp(lo - hi));
        }
        assert_true(fabs(eval_logsumexp(sc, n) - lz) < 1e-9);
        for (int c = 0; c < d; c++) out[c] = 0.0f;
        assert_true(fabs(eval_attn_rel_err(q, Ks, Vs, segs, (size_t)d, d, out, sc) - 1.0) < 1e-12);
        out[0] = 1e3f; /* far off: error well above 1 */
        assert_true(eval_attn_rel_err(q, Ks, Vs, segs, (size_t)d, d, out, sc) > 1.0);
        free(K), free(V), free(q), free(out), free(sc);
    }
}

/* The measuring backend: the prefix captured through the hook, then decode steps. Its outputs
 * for exact (and for h2o holding every token, its prefix observed) equal float32 attention
 * over prefix + tail; the per-layer error it reports for sinkwin equals the error computed
 * here from its outputs. */
static void test_eval_backend_steps_and_measures(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    llama_hparams hp = {0};
    hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2, hp.head_dim = 8, hp.n_embd = 32;
    const size_t n = tu_rand_range(&r, 40, 120), steps = 5, row = 16, E = 32;
    const size_t tot = n + steps;
    float *Q = tu_malloc(tot * E * sizeof(float)), *K[2], *V[2];
    synth_fill_normal(&r, Q, tot * E, 1.0f);
    eval_prefix pre;
    assert_int_equal(eval_prefix_init(&pre, &hp, n, 8), 0);
    for (uint32_t l = 0; l < 2; l++) {
        K[l] = tu_malloc(tot * row * sizeof(float));
        V[l] = tu_malloc(tot * row * sizeof(float));
        synth_fill_normal(&r, K[l], tot * row, 1.0f);
        synth_fill_normal(&r, V[l], tot * row, 1.0f);
        assert_int_equal(eval_prefix_hook(&pre, l, n, Q, K[l], V[l]), 0);
    }
    pre.n = n;
    assert_int_equal(eval_prefix_hook(&pre, 0, n + 1, Q, K[0], V[0]), -1); /* over capacity */
    const skv_policy_id pols[3] = {SKV_POLICY_EXACT, SKV_POLICY_H2O, SKV_POLICY_SINKWIN};
    for (int pi = 0; pi < 3; pi++) {
        skv_config cfg;
        skv_config_default(&cfg, pols[pi], 8);
        cfg.dtype = SKV_DTYPE_F32;
        if (pols[pi] == SKV_POLICY_H2O) cfg.heavy = (int)tot, cfg.window = 4;
        if (pols[pi] == SKV_POLICY_SINKWIN) cfg.sinks = 2, cfg.window = 8;
        eval_attn *ea = NULL;
        skv_err err = {0};
        TU_OK(eval_attn_create(&hp, &cfg, steps, 2, &ea, &err), &err);
        TU_OK(eval_attn_load_prefix(ea, &pre, &err), &err);
        llama_attn *b = eval_attn_base(ea);
        double mine[2] = {0}, cnt[2] = {0};
        for (size_t s = 0; s < steps; s++)
            for (uint32_t l = 0; l < 2; l++) {
                const size_t t = n + s;
                float out[32];
                TU_OK(b->ops->step(b, l, Q + t * E, K[l] + t * row, V[l] + t * row, out, &err),
                      &err);
                double sc[256];
                for (uint32_t j = 0; j < 4; j++) {
                    const size_t h = (j / 2) * 8;
                    const float *Ks[2] = {K[l] + h, NULL}, *Vs[2] = {V[l] + h, NULL};
                    const size_t segs[2] = {t + 1, 0};
                    const double e =
                        eval_attn_rel_err(Q + t * E + j * 8, Ks, Vs, segs, row, 8, out + j * 8, sc);
                    if (pols[pi] != SKV_POLICY_SINKWIN) assert_true(e < 1e-5);
                    if (s >= 2) mine[l] += e, cnt[l] += 1;
                }
            }
        for (uint32_t l = 0; l < 2; l++) {
            assert_true(fabs(eval_attn_layer_err(ea, l) - mine[l] / cnt[l]) < 1e-9);
            /* sinkwin drops tokens: its normalizer is too small; the others hold every token */
            if (pols[pi] == SKV_POLICY_SINKWIN) {
                assert_true(mine[l] / cnt[l] > 1e-3);
                assert_true(eval_attn_layer_norm_err(ea, l) > 1e-3);
            } else {
                assert_true(eval_attn_layer_norm_err(ea, l) < 1e-5);
            }
        }
        float out[32];
        assert_int_equal(b->ops->step(b, 0, Q, K[0], V[0], out, &err), SKV_ERR_BUDGET); /* > max */
        size_t part = 0;
        assert_true(eval_attn_bytes(ea, &part) > 0 && part > 0);
        eval_attn_destroy(ea);
    }
    eval_prefix_free(&pre, &hp);
    for (int l = 0; l < 2; l++) free(K[l]), free(V[l]);
    free(Q);
}

/* The summary's perplexity is exp of the token-weighted mean NLL, and its change is against
 * exact's. */
static void test_eval_summary_perplexity_arithmetic(void **state) {
    (void)state;
    eval_rows rs = {0};
    eval_row a = {.task = "ppl64", .label = "exact", .frac = 1, .value = 2.0, .weight = 10};
    eval_row b = {.task = "ppl64", .label = "exact", .frac = 1, .value = 3.0, .weight = 30};
    eval_row c = {
        .task = "ppl64", .label = "sinkwin", .frac = 8, .budget = 99, .value = 3.0, .weight = 40};
    assert_int_equal(eval_rows_add(&rs, &a), 0);
    assert_int_equal(eval_rows_add(&rs, &b), 0);
    assert_int_equal(eval_rows_add(&rs, &c), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    eval_summary(f, &rs, 1);
    fclose(f);
    char want[128];
    snprintf(want, sizeof want, "exact,1,-,%.3f,+0.00", exp(2.75));
    assert_non_null(strstr(buf, want));
    snprintf(want, sizeof want, "sinkwin,1/8,99,%.3f,%+.2f", exp(3.0), 100.0 * (exp(0.25) - 1.0));
    assert_non_null(strstr(buf, want));
    free(buf);
    eval_rows_free(&rs);
}

/* The standard line-up's labels name the estimator each subgen config runs (the library's
 * default changed to values=cluster once and subgen-l2 silently became a second cluster run). */
static void test_eval_lineup_labels_name_their_estimator(void **state) {
    (void)state;
    skv_config cfgs[EVAL_MAX_LINEUP];
    const char *labels[EVAL_MAX_LINEUP];
    const int n = eval_standard_lineup(64, SKV_DTYPE_F16, 65536, 1, cfgs, labels);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(labels[i], "subgen-l2")) {
            assert_int_equal(cfgs[i].policy, SKV_POLICY_SUBGEN);
            assert_int_equal(cfgs[i].values, SKV_VALUES_L2);
            seen |= 1;
        }
        if (!strcmp(labels[i], "subgen-cluster")) {
            assert_int_equal(cfgs[i].policy, SKV_POLICY_SUBGEN);
            assert_int_equal(cfgs[i].values, SKV_VALUES_CLUSTER);
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
}

/* Windows concatenate documents w, w+1, ... cyclically and name them. */
static void test_eval_windows_concatenate_documents(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    eval_docs d = {0};
    d.n = 3;
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "dir/doc%d.txt", i);
        d.names[i] = tu_malloc(strlen(name) + 1);
        strcpy(d.names[i], name);
        d.n_ids[i] = tu_rand_range(&r, 5, 50);
        d.ids[i] = tu_malloc(d.n_ids[i] * sizeof(int32_t));
        for (size_t t = 0; t < d.n_ids[i]; t++) d.ids[i][t] = i * 1000 + (int32_t)t;
        total += d.n_ids[i];
    }
    for (int w = 0; w < 4; w++) {
        const uint64_t L = tu_rand_range(&r, 1, 2 * total);
        char used[256];
        int32_t *ids = eval_window_ids(&d, w, L, used, sizeof used);
        assert_non_null(ids);
        size_t k = 0;
        for (int j = 0; k < L; j++) {
            const int doc = (w + j) % 3;
            char want[32];
            snprintf(want, sizeof want, "doc%d.txt", doc);
            assert_non_null(strstr(used, want));
            for (size_t t = 0; t < d.n_ids[doc] && k < L; t++, k++)
                assert_int_equal(ids[k], doc * 1000 + (int32_t)t);
        }
        free(ids);
    }
    char used[64];
    assert_null(eval_window_ids(&d, 0, 4 * total + 1, used, sizeof used)); /* texts too short */
    eval_docs_free(&d);
    assert_int_equal(eval_docs_load("/nonexistent/list", NULL, &d), -1);
}

int main(void) {
    tu_suite_begin("eval");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_budget_is_exact_bytes_over_fraction),
        cmocka_unit_test(test_eval_csr_sparsity_is_largest_that_holds_the_sequence),
        cmocka_unit_test(test_eval_passkey_needle_sits_at_its_depth),
        cmocka_unit_test(test_eval_lines_prompt_asks_the_line_at_depth),
        cmocka_unit_test(test_eval_answer_match_wants_the_first_number_exactly),
        cmocka_unit_test(test_eval_load_words_keeps_short_lowercase_words),
        cmocka_unit_test(test_eval_rel_err_is_zero_for_exact_and_one_for_zeros),
        cmocka_unit_test(test_eval_backend_steps_and_measures),
        cmocka_unit_test(test_eval_summary_perplexity_arithmetic),
        cmocka_unit_test(test_eval_windows_concatenate_documents),
        cmocka_unit_test(test_eval_lineup_labels_name_their_estimator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
