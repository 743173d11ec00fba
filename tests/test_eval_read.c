/*
 * test_eval_read.c — subkv-eval's bytes read per decode step (tools/eval_attn.h
 * eval_attn_read) against the bytes each policy's attend must read, derived here from the
 * policy's parameters or its sketches' stats on fresh random K, V, Q, and refreshkv's
 * full-step fraction; the summary's read/step and full_steps_% columns and eval.csv's
 * read_bytes_step, full_step_frac (tools/eval_report.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "csr_dict.h"
#include "eval_attn.h"
#include "eval_report.h"
#include "test_util.h"

/* A random prefix + tail of a model of 2 layers, 4 query / 2 kv heads of d 8, captured like
 * subkv-eval captures a window (no h2o observation). */
typedef struct fx {
    llama_hparams hp;
    size_t n, steps, tot;
    float *Q, *K[2], *V[2];
    eval_prefix pre;
} fx;

enum { FX_D = 8, FX_ROW = 16, FX_E = 32 };

static void fx_init(fx *f, synth_rng *r, size_t n, size_t steps) {
    memset(f, 0, sizeof *f);
    f->hp.n_layer = 2, f->hp.n_head = 4, f->hp.n_head_kv = 2, f->hp.head_dim = FX_D;
    f->hp.n_embd = FX_E;
    f->n = n, f->steps = steps, f->tot = n + steps;
    f->Q = tu_malloc(f->tot * FX_E * sizeof(float));
    synth_fill_normal(r, f->Q, f->tot * FX_E, 1.0f);
    assert_int_equal(eval_prefix_init(&f->pre, &f->hp, n, 0), 0);
    for (uint32_t l = 0; l < 2; l++) {
        f->K[l] = tu_malloc(f->tot * FX_ROW * sizeof(float));
        f->V[l] = tu_malloc(f->tot * FX_ROW * sizeof(float));
        synth_fill_normal(r, f->K[l], f->tot * FX_ROW, 1.0f);
        synth_fill_normal(r, f->V[l], f->tot * FX_ROW, 1.0f);
        assert_int_equal(eval_prefix_hook(&f->pre, l, n, f->Q, f->K[l], f->V[l]), 0);
    }
    f->pre.n = n;
}

static void fx_free(fx *f) {
    eval_prefix_free(&f->pre, &f->hp);
    for (int l = 0; l < 2; l++) free(f->K[l]), free(f->V[l]);
    free(f->Q);
}

/* The measuring backend over the prefix and every tail step; *full: its full-step fraction.
 * Returns its mean bytes read per step and sketch. */
static double fx_backend_read(fx *f, const skv_config *cfg, double *full) {
    eval_attn *ea = NULL;
    skv_err err = {0};
    TU_OK(eval_attn_create(&f->hp, cfg, f->steps, 0, &ea, &err), &err);
    TU_OK(eval_attn_load_prefix(ea, &f->pre, &err), &err);
    assert_true(isnan(eval_attn_read(ea, NULL))); /* no decode step yet */
    llama_attn *b = eval_attn_base(ea);
    for (size_t s = 0; s < f->steps; s++)
        for (uint32_t l = 0; l < 2; l++) {
            const size_t t = f->n + s;
            float out[FX_E];
            TU_OK(b->ops->step(b, l, f->Q + t * FX_E, f->K[l] + t * FX_ROW, f->V[l] + t * FX_ROW,
                               out, &err),
                  &err);
        }
    const double rd = eval_attn_read(ea, full);
    eval_attn_destroy(ea);
    return rd;
}

/* The same sketches driven here, one (layer, kv head) at a time, with the bytes of each step
 * derived from their stats: 2 rows per exactly held token, subgen's cluster samples 2 rows
 * each with values=cluster and 1 (the key) with l2, whose value slots read 2 rows each. */
static double fx_mirror_read(fx *f, const skv_config *cfg, int *clusters) {
    skv_sketch *sk[4];
    skv_err err = {0};
    TU_OK(llama_sketches_create(&f->hp, cfg, sk, &err), &err);
    const double rb = FX_D * (double)skv_dtype_size(cfg->dtype);
    float *k = tu_malloc(f->tot * FX_D * sizeof(float)), *v = tu_malloc(f->tot * FX_D * 4u);
    skv_partial *out = tu_partials_new(2, FX_D);
    double sum = 0.0;
    *clusters = 0;
    for (uint32_t l = 0; l < 2; l++)
        for (uint32_t h = 0; h < 2; h++) {
            skv_sketch *s = sk[l * 2 + h];
            for (size_t t = 0; t < f->tot; t++) {
                memcpy(k + t * FX_D, f->K[l] + t * FX_ROW + h * FX_D, FX_D * sizeof(float));
                memcpy(v + t * FX_D, f->V[l] + t * FX_ROW + h * FX_D, FX_D * sizeof(float));
            }
            TU_OK(skv_sketch_append(s, k, v, f->n, FX_D, &err), &err);
            for (size_t t = f->n; t < f->tot; t++) {
                TU_OK(skv_sketch_append(s, k + t * FX_D, v + t * FX_D, 1, FX_D, &err), &err);
                TU_OK(skv_sketch_attend(s, f->Q + t * FX_E + h * 2 * FX_D, 2, FX_D, out, &err),
                      &err);
                skv_stats st;
                skv_sketch_stats(s, &st);
                double rows = 2.0 * (double)st.tokens_held;
                if (cfg->policy == SKV_POLICY_SUBGEN)
                    rows += st.cluster_samples * (cfg->values == SKV_VALUES_CLUSTER ? 2.0 : 1.0) +
                            2.0 * st.value_slots_filled;
                sum += rows * rb;
                if (t + 1 == f->tot) *clusters += st.clusters;
            }
            skv_sketch_destroy(s);
        }
    free(k), free(v), free(out);
    return sum / (4.0 * (double)f->steps);
}

/* Bytes read per decode step: exact reads every token so far, sinkwin its sinks + window,
 * subgen its exact rows plus its samples (keys only for l2's clusters) and slots, csr its
 * exact rows plus its codes; refreshkv
 * with threshold 1, stride 1 is a full step every step (exact's bytes, full fraction 1); with
 * threshold -1 only the first step is full (the whole store), then K partial rows a step. */
static void test_eval_backend_bytes_read_per_step(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int it = 0; it < 3; it++) {
        fx f;
        const size_t n = tu_rand_range(&r, 150, 300), steps = tu_rand_range(&r, 4, 12);
        fx_init(&f, &r, n, steps);
        const skv_dtype dt = it % 2 ? SKV_DTYPE_F16 : SKV_DTYPE_F32;
        const double rb = FX_D * (double)skv_dtype_size(dt);
        skv_config c;
        double full = 0.0, want = 0.0;
        skv_config_default(&c, SKV_POLICY_EXACT, FX_D);
        c.dtype = dt;
        for (size_t s = 0; s < steps; s++) want += (double)(n + s + 1) * 2.0 * rb;
        want /= (double)steps;
        const double exact = fx_backend_read(&f, &c, &full);
        assert_true(fabs(exact - want) < 1e-9 * want);
        assert_true(isnan(full)); /* not refreshkv */

        skv_config_default(&c, SKV_POLICY_SINKWIN, FX_D);
        c.dtype = dt;
        c.sinks = (int)tu_rand_range(&r, 0, 4), c.window = (int)tu_rand_range(&r, 4, 32);
        const double sw = fx_backend_read(&f, &c, NULL);
        assert_true(fabs(sw - (c.sinks + c.window) * 2.0 * rb) < 1e-9);

        for (int vals = 0; vals < 2; vals++) {
            skv_config_default(&c, SKV_POLICY_SUBGEN, FX_D);
            c.dtype = dt;
            c.window = 16, c.samples = 3, c.max_clusters = 8;
            c.values = vals ? SKV_VALUES_CLUSTER : SKV_VALUES_L2;
            c.value_slots = vals ? 0 : 8;
            int clusters = 0;
            const double sg = fx_backend_read(&f, &c, NULL);
            const double m = fx_mirror_read(&f, &c, &clusters);
            assert_true(clusters > 0); /* the samples were counted, not just the window */
            assert_true(fabs(sg - m) < 1e-9 * m);
            assert_true(sg > (c.sinks + c.window) * 2.0 * rb && sg < exact);
        }

        /* csr reads its exact rows and 8 s bytes of codes per coded token */
        skv_dict *dict = NULL;
        skv_err err = {0};
        TU_OK(skv_dict_new(FX_D, 16, 1, 2, &dict, &err), &err);
        for (int t = 0; t < 3; t++) {
            float *a = t ? skv_dict_values(dict, 0, t - 1) : skv_dict_keys(dict, 0);
            const int dim = t ? FX_D / 2 : FX_D;
            for (int i = 0; i < 16; i++) { /* random unit atoms */
                float *row = a + (size_t)i * (size_t)dim, nn = 0.0f;
                synth_fill_normal(&r, row, (size_t)dim, 1.0f);
                for (int j = 0; j < dim; j++) nn += row[j] * row[j];
                for (int j = 0; j < dim; j++) row[j] /= sqrtf(nn);
            }
        }
        TU_OK(skv_dict_finish(dict, &err), &err);
        skv_config_default(&c, SKV_POLICY_CSR, FX_D);
        c.dtype = dt;
        c.dict = dict;
        c.sparsity = (int)tu_rand_range(&r, 2, FX_D);
        c.sinks = (int)tu_rand_range(&r, 0, 4), c.window = (int)tu_rand_range(&r, 4, 32);
        want = 0.0;
        for (size_t s = 0; s < steps; s++)
            want += (c.sinks + c.window) * 2.0 * rb +
                    (double)(n + s + 1 - (size_t)(c.sinks + c.window)) * 8.0 * c.sparsity;
        want /= (double)steps;
        assert_true(fabs(fx_backend_read(&f, &c, &full) - want) < 1e-9 * want);
        assert_true(isnan(full));
        skv_dict_free(dict);

        skv_config_default(&c, SKV_POLICY_REFRESHKV, FX_D);
        c.dtype = dt;
        c.threshold = 1.0f, c.stride = 1;
        assert_true(fabs(fx_backend_read(&f, &c, &full) - exact) < 1e-9 * exact);
        assert_true(full == 1.0);
        const size_t K = tu_rand_range(&r, 4, 64);
        c.threshold = -1.0f, c.partial_tokens = (int)K;
        want = ((double)(n + 1) + (double)(steps - 1) * (double)K) * 2.0 * rb / (double)steps;
        assert_true(fabs(fx_backend_read(&f, &c, &full) - want) < 1e-9 * want);
        assert_true(fabs(full - 1.0 / (double)steps) < 1e-12);
        c.threshold = 0.9f, c.stride = 2; /* its own rule: between the two */
        const double mid = fx_backend_read(&f, &c, &full);
        assert_true(mid >= want * (1 - 1e-9) && mid <= exact * (1 + 1e-9));
        assert_true(full >= 1.0 / (double)steps && full <= 1.0);
        fx_free(&f);
    }
}

/* A summary row of value 2 (passkey: correct) with its read bytes and full-step fraction. */
static eval_row rrow(const char *task, int item, const char *label, unsigned frac, double weight,
                     double read, double full) {
    eval_row r = {.item = item, .frac = frac, .value = 2, .weight = weight, .read = read};
    snprintf(r.task, sizeof r.task, "%s", task);
    snprintf(r.label, sizeof r.label, "%s", label);
    if (!strcmp(task, "passkey")) r.value = 1;
    r.full = full;
    return r;
}

/* The summary: read/step is the run's bytes over exact's on the same windows (a window exact
 * did not run is left out), full_steps_% the token-weighted mean of refreshkv's fractions;
 * eval.csv carries both (empty when not measured). */
static void test_eval_summary_read_per_step(void **state) {
    (void)state;
    eval_rows rs = {0};
    const eval_row rows[] = {
        rrow("ppl64", 0, "exact", 1, 10, 1000, NAN),
        rrow("ppl64", 1, "exact", 1, 30, 3000, NAN),
        rrow("ppl64", 0, "sinkwin", 8, 10, 100, NAN),
        rrow("ppl64", 1, "sinkwin", 8, 30, 300, NAN),
        rrow("ppl64", 2, "sinkwin", 8, 30, 99999, NAN), /* exact has no window 2: left out */
        rrow("ppl64", 0, "refreshkv", 8, 10, 500, 0.25),
        rrow("ppl64", 1, "refreshkv", 8, 30, 1000, 0.5),
        rrow("passkey", 50, "refreshkv", 8, 1, 1e9, 1.0), /* not a ppl row: not in read/step */
        rrow("ppl64", 2, "h2o", 8, 1, 50, NAN),
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(eval_rows_add(&rs, &rows[i]), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    eval_summary(f, &rs, 1);
    fclose(f);
    /* columns: ..., ppl64, dppl64_%, passkey_acc, attn_err, read/step, full_steps_% */
    assert_non_null(strstr(buf, ",passkey_acc,attn_err,read/step,full_steps_%\n"));
    assert_non_null(strstr(buf, "\nexact,1,-,7.389,+0.00,-,-,1.0000,-\n"));
    assert_non_null(strstr(buf, "\nsinkwin,1/8,0,7.389,+0.00,-,-,0.1000,-\n"));
    /* (500 + 1000) / (1000 + 3000); (10 * 0.25 + 30 * 0.5) / 40 */
    assert_non_null(strstr(buf, "\nrefreshkv,1/8,0,7.389,+0.00,1.00,-,0.3750,43.8\n"));
    assert_non_null(strstr(buf, "\nh2o,1/8,0,7.389,+0.00,-,-,-,-\n"));
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    eval_rows_csv(f, &rs);
    fclose(f);
    assert_non_null(strstr(buf, ",value,weight,read_bytes_step,full_step_frac\n"));
    assert_non_null(strstr(buf, "\nppl64,0,exact,1,0,0,0,2,10,1000,\n"));
    assert_non_null(strstr(buf, "\nppl64,1,refreshkv,8,0,0,0,2,30,1000,0.5\n"));
    free(buf);
    eval_rows_free(&rs);
}

int main(void) {
    tu_suite_begin("eval_read");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_backend_bytes_read_per_step),
        cmocka_unit_test(test_eval_summary_read_per_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
