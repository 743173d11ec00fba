/*
 * test_llama_cli.c — the model programs' policy options (tools/llama_cli.h).
 *
 * Without the model: every refreshkv and csr knob lands in the sketch configuration; a knob of
 * another policy, csr without --dict and bad values are refused.
 * On the real model (data/SmolLM2-135M-Instruct.Q4_1.gguf; skipped, saying why, only when it
 * is absent), through the options as a program gets them (lcli_parse_common + lcli_reset):
 *  - csr with an orthonormal dictionary (the standard basis) at s = head_dim codes every key
 *    and value exactly up to float16 coefficients, so its logits equal exact's within 1e-3
 *    relative (measured 5e-5); at s = 8 its logits are finite and differ from exact's (the codes
 *    are used); a post-rotary dictionary with --rope-base, or one of another head_dim, is refused;
 *  - refreshkv with threshold 1 and stride 1 (a full step every decode step, over the exact
 *    full store) gives exact's logits within 1e-5.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <unistd.h>

#include "csr_dict.h"
#include "llama.h"
#include "llama_cli.h"
#include "svc_harness.h"
#include "test_util.h"
/* after test_util.h: its typedef `suite` would shadow a parameter name there */
#include "model_suite.h"

/* Parse a NULL-terminated option list as a program would: 0, or -1 at the first refusal. */
static int parse(lcli_opts *o, const char *const *args) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "prog";
    for (; *args; args++) argv[argc++] = (char *)*args;
    lcli_defaults(o);
    for (int i = 1; i < argc; i++) {
        const int r = lcli_parse_common(o, argc, argv, &i);
        if (r < 0) return -1;
        assert_int_equal(r, 1); /* every option given here is a common one */
    }
    return 0;
}

static void test_llama_cli_policy_knobs(void **state) {
    (void)state;
    lcli_opts o;
    skv_config c;
    const char *rkv[] = {
        "--policy",    "refreshkv", "--partial-tokens", "32",     "--stride", "3",
        "--threshold", "0.5",       "--full-store",     "subgen", "--decide", "group",
        "--sinks",     "2",         "--sketch-window",  "16",     NULL};
    assert_int_equal(parse(&o, rkv), 0);
    assert_int_equal(lcli_policy(&o, &c), 0);
    assert_int_equal(c.policy, SKV_POLICY_REFRESHKV);
    assert_int_equal(c.partial_tokens, 32);
    assert_int_equal(c.stride, 3);
    assert_true(c.threshold == 0.5f);
    assert_int_equal(c.full_store, SKV_FULL_SUBGEN);
    assert_int_equal(c.decide, SKV_DECIDE_GROUP);
    assert_int_equal(c.sinks, 2);
    assert_int_equal(c.window, 16);
    const char *csr[] = {"--policy",   "csr", "--dict",      "some/dict.skvd",
                         "--sparsity", "6",   "--rope-base", "1e5",
                         "--atoms",    "512", NULL};
    assert_int_equal(parse(&o, csr), 0);
    assert_int_equal(lcli_policy(&o, &c), 0);
    assert_int_equal(c.policy, SKV_POLICY_CSR);
    assert_int_equal(c.sparsity, 6);
    assert_int_equal(c.atoms, 512);
    assert_true(c.rope_base == 100000.0f);
    assert_string_equal(c.dict_path, "some/dict.skvd");
    assert_null(c.dict); /* bound by lcli_open / lcli_reset */
    const char *rkv_csr[] = {"--policy",   "refreshkv", "--full-store", "csr", "--dict", "d.skvd",
                             "--sparsity", "3",         "--rope-base",  "1e5", NULL};
    assert_int_equal(parse(&o, rkv_csr), 0);
    assert_int_equal(lcli_policy(&o, &c), 0);
    assert_int_equal(c.policy, SKV_POLICY_REFRESHKV);
    assert_int_equal(c.full_store, SKV_FULL_CSR);
    assert_int_equal(c.sparsity, 3);
    assert_true(c.rope_base == 100000.0f);
    assert_string_equal(c.dict_path, "d.skvd");
    /* refusals */
    const char *rkv_csr_no_dict[] = {"--policy", "refreshkv", "--full-store", "csr", NULL};
    assert_int_equal(parse(&o, rkv_csr_no_dict), 0);
    assert_int_equal(lcli_policy(&o, &c), -1);
    const char *csr_knob_on_exact_store[] = {"--policy", "refreshkv", "--sparsity", "4", NULL};
    assert_int_equal(parse(&o, csr_knob_on_exact_store), 0);
    assert_int_equal(lcli_policy(&o, &c), -1);
    const char *no_dict[] = {"--policy", "csr", "--sparsity", "4", NULL};
    assert_int_equal(parse(&o, no_dict), 0);
    assert_int_equal(lcli_policy(&o, &c), -1);
    const char *wrong_policy[] = {"--policy", "sinkwin", "--sparsity", "4", NULL};
    assert_int_equal(parse(&o, wrong_policy), 0);
    assert_int_equal(lcli_policy(&o, &c), -1);
    const char *rkv_on_csr[] = {"--policy", "csr", "--dict", "x", "--stride", "2", NULL};
    assert_int_equal(parse(&o, rkv_on_csr), 0);
    assert_int_equal(lcli_policy(&o, &c), -1);
    const char *bad[][3] = {{"--threshold", "1.5", NULL},   {"--sparsity", "1", NULL},
                            {"--full-store", "disk", NULL}, {"--stride", "0", NULL},
                            {"--rope-base", "-1", NULL},    {"--dict", "", NULL},
                            {"--sketch-window", "x", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {bad[i][0], bad[i][1], NULL};
        if (parse(&o, args) != -1) fail_msg("%s %s accepted", bad[i][0], bad[i][1]);
    }
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1.0));
}

/* A run over the suite's model (borrowed: lcli_reset opens backend + session, binding any
 * dictionary), prefill tokens[0..pre) then decode the rest; last logits into out. -1 when
 * the options are refused at open. */
static int run_opts(suite *su, const char *const *args, const int32_t *tok, size_t pre, size_t n,
                    float *out) {
    lcli_opts o;
    assert_int_equal(parse(&o, args), 0);
    lcli_run r = {.model = su->real};
    int rc = lcli_reset(&o, &r);
    skv_err err = {0};
    if (rc == 0) {
        TU_OK(llama_prefill(r.sess, tok, pre, out, 0, &err), &err);
        for (size_t t = pre; t < n; t++) TU_OK(llama_decode(r.sess, tok[t], out, &err), &err);
    }
    r.model = NULL; /* the suite's */
    lcli_close(&r);
    return rc;
}

/* A dictionary set of the standard basis (keys [64][64]; value halves [64][32]: the basis of
 * 32 dimensions twice) for every layer, of `space`, written to a temporary file `path`. */
static void basis_dict(int d, uint32_t layers, skv_key_space space, char *path) {
    skv_dict *dict = NULL;
    skv_err err = {0};
    TU_OK(skv_dict_new(d, d, 1, (int)layers, &dict, &err), &err);
    dict->key_space = space;
    float *k = skv_dict_keys(dict, 0), *v0 = skv_dict_values(dict, 0, 0),
          *v1 = skv_dict_values(dict, 0, 1);
    for (int a = 0; a < d; a++) {
        k[a * d + a] = 1.0f;
        v0[a * (d / 2) + a % (d / 2)] = 1.0f;
        v1[a * (d / 2) + a % (d / 2)] = 1.0f;
    }
    TU_OK(skv_dict_finish(dict, &err), &err);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    TU_OK(skv_dict_save_file(dict, path, &err), &err);
    skv_dict_free(dict);
}

static void test_llama_cli_csr_and_refreshkv_on_the_model(void **state) {
    suite *su = *state;
    NEED_MODEL(su);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const llama_hparams *hp = llama_model_hparams(su->real);
    enum { N = 40, PRE = 30 };
    int32_t tok[N];
    for (size_t i = 0; i < N; i++) tok[i] = (int32_t)(synth_rng_u64(&r) % hp->n_vocab);
    float *ex = tu_malloc(hp->n_vocab * sizeof(float)),
          *got = tu_malloc(hp->n_vocab * sizeof(float));
    const char *exact[] = {"--policy", "exact", NULL};
    assert_int_equal(run_opts(su, exact, tok, PRE, N, ex), 0);

    char post[] = "/tmp/skv_cli_dict_XXXXXX", pre[] = "/tmp/skv_cli_dict_XXXXXX";
    basis_dict((int)hp->head_dim, hp->n_layer, SKV_KEYS_POST_ROTARY, post);
    basis_dict((int)hp->head_dim, hp->n_layer, SKV_KEYS_PRE_ROTARY, pre);
    char sfull[16];
    snprintf(sfull, sizeof sfull, "%u", hp->head_dim);
    /* window 4 of 40 tokens: nearly all the context is coded */
    const char *full_post[] = {"--policy",        "csr", "--dict", post, "--sparsity", sfull,
                               "--sketch-window", "4",   NULL};
    const char *full_pre[] = {
        "--policy",        "csr", "--dict",      pre,      "--sparsity", sfull,
        "--sketch-window", "4",   "--rope-base", "100000", NULL};
    const char *const *full[] = {full_post, full_pre};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run_opts(su, full[i], tok, PRE, N, got), 0);
        const double d = rel_diff(got, ex, hp->n_vocab);
        printf("# csr %s-rotary, basis dictionary, s = %u vs exact: %.3e\n", i ? "pre" : "post",
               hp->head_dim, d);
        if (!(d <= 1e-3)) fail_msg("csr at s = head_dim differs from exact by %.3e", d);
    }
    const char *s8[] = {"--policy",        "csr", "--dict", post, "--sparsity", "8",
                        "--sketch-window", "4",   NULL};
    assert_int_equal(run_opts(su, s8, tok, PRE, N, got), 0);
    for (uint32_t i = 0; i < hp->n_vocab; i++)
        if (!isfinite(got[i])) fail_msg("csr s = 8: logit %u is %g", i, (double)got[i]);
    const double d8 = rel_diff(got, ex, hp->n_vocab);
    printf("# csr post-rotary, basis dictionary, s = 8 vs exact: %.3e\n", d8);
    assert_true(d8 > 1e-4);
    /* a post-rotary dictionary coding pre-rotary keys, and the reverse, are refused */
    const char *mismatch[] = {"--policy", "csr", "--dict", post, "--rope-base", "100000", NULL};
    assert_int_equal(run_opts(su, mismatch, tok, PRE, N, got), -1);
    const char *mismatch2[] = {"--policy", "csr", "--dict", pre, NULL};
    assert_int_equal(run_opts(su, mismatch2, tok, PRE, N, got), -1);
    /* a dictionary of another head_dim */
    char small[] = "/tmp/skv_cli_dict_XXXXXX";
    basis_dict(32, hp->n_layer, SKV_KEYS_POST_ROTARY, small);
    const char *wrong_d[] = {"--policy", "csr", "--dict", small, NULL};
    assert_int_equal(run_opts(su, wrong_d, tok, PRE, N, got), -1);
    unlink(post);
    unlink(pre);
    unlink(small);

    /* refreshkv, a full step at every decode step over the exact full store: exact */
    const char *rkv[] = {"--policy", "refreshkv",        "--stride", "1", "--threshold",
                         "1",        "--partial-tokens", "8",        NULL};
    assert_int_equal(run_opts(su, rkv, tok, PRE, N, got), 0);
    const double dr = rel_diff(got, ex, hp->n_vocab);
    printf("# refreshkv threshold 1 stride 1 vs exact: %.3e\n", dr);
    if (!(dr <= 1e-5)) fail_msg("refreshkv full steps differ from exact by %.3e", dr);
    free(ex);
    free(got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_cli_policy_knobs),
        cmocka_unit_test(test_llama_cli_csr_and_refreshkv_on_the_model),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
