/*
 * test_refreshkv_plan.c — RefreshKV's attend in parts, as a GPU worker runs it (skv_rkv_plan,
 * skv_rkv_apply: cache/refreshkv.c, refreshkv_full.c), and the full_mem parameter. On the CPU,
 * so CI without a GPU checks them:
 *   - plan + apply fed the CPU full step's own pooled scores leave a sketch bit-identical
 *     (checkpoint bytes) to its twin attended whole, step after step, full and partial;
 *   - a planned full step that is never applied (a failed device step) stays due and is not
 *     counted; apply refuses a wrong score count or another policy, changing nothing;
 *   - skv_rkv_maxpool equals a brute-force window maximum;
 *   - full_mem: names, resolve (device with a subgen store refused), checkpoint and wire
 *     round trips, --full-mem on the model programs' command line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "llama_cli.h"
#include "skv_internal.h"
#include "skv_wire.h"
#include "test_util.h"

static skv_config rkv_cfg(int d, int k, int stride, float threshold, skv_dtype dt) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, d);
    c.partial_tokens = k;
    c.stride = stride;
    c.threshold = threshold;
    c.dtype = dt;
    return c;
}

static void assert_same_state(const skv_sketch *a, const skv_sketch *b, const char *what) {
    skv_buf x = tu_save(a), y = tu_save(b);
    if (!tu_bufs_equal(&x, &y)) fail_msg("%s: the two sketches differ", what);
    skv_buf_free(&x);
    skv_buf_free(&y);
}

static uint64_t full_steps(const skv_sketch *s) {
    skv_stats st;
    skv_sketch_stats(s, &st);
    return st.full_steps;
}

static void plan_apply_run(skv_dtype dt, int g, const char *name) {
    synth_rng r;
    tu_rng_for(&r, name);
    enum { D = 32, PREFILL = 300, STEPS = 60 };
    const skv_config c = rkv_cfg(D, 24, 3, 0.97f, dt);
    skv_sketch *a = tu_create(&c), *b = tu_create(&c);
    float *K, *V;
    tu_make_random_kv(&r, PREFILL + 8 * STEPS, D, &K, &V);
    tu_append(a, K, V, PREFILL, D);
    tu_append(b, K, V, PREFILL, D);
    size_t at = PREFILL;
    float *Q = tu_malloc((size_t)g * D * sizeof(float)), *base = tu_malloc(D * sizeof(float));
    synth_fill_normal(&r, base, D, 1.0f);
    skv_partial *out = tu_partials_new(g, D);
    int nfull = 0, npartial = 0;
    for (int step = 0; step < STEPS; step++) {
        /* queries near a slowly drifting direction: checks pass and fail */
        for (int j = 0; j < D; j++) base[j] += 0.25f * (float)synth_rng_normal(&r);
        for (int h = 0; h < g; h++)
            for (int j = 0; j < D; j++) Q[h * D + j] = base[j] + 0.2f * (float)synth_rng_normal(&r);
        const size_t n = step % 17 == 5 ? 5 : 1; /* a multi-token append forces a full step */
        tu_append(a, K + at * D, V + at * D, n, D);
        tu_append(b, K + at * D, V + at * D, n, D);
        at += n;
        if (step == 30) {
            skv_err e;
            TU_OK(skv_sketch_refresh(a, &e), &e);
            TU_OK(skv_sketch_refresh(b, &e), &e);
        }
        const uint64_t before = full_steps(a);
        tu_attend(a, Q, g, D, out);
        const int a_full = full_steps(a) != before;
        int full = -1;
        skv_err err;
        TU_OK(skv_rkv_plan(b, Q, g, &full, &err), &err);
        if (full != a_full)
            fail_msg("%s step %d: plan says %d, attend did %d", name, step, full, a_full);
        if (full) {
            const float *pooled = NULL;
            size_t np = 0;
            skv_rkv_scores(a, &pooled, &np);
            const skv_rows *fk, *fv;
            size_t nb = 0;
            skv_rkv_full_rows(b, &fk, &fv, &nb);
            assert_int_equal(np, nb);
            assert_int_equal(nb, at); /* the plan flushed the queue: every token is there */
            TU_OK(skv_rkv_apply(b, Q, g, pooled, np, &err), &err);
            nfull++;
        } else {
            npartial++;
        }
        assert_same_state(a, b, name);
    }
    assert_true(nfull >= 3 && npartial >= 10); /* both kinds ran */
    printf("# %s: %d full, %d partial steps, twins bit-identical\n", name, nfull, npartial);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
    free(K), free(V), free(Q), free(base), free(out);
}

static void test_plan_apply_equals_attend(void **state) {
    (void)state;
    plan_apply_run(SKV_DTYPE_F32, 1, "plan-apply f32 g1");
    plan_apply_run(SKV_DTYPE_F16, 4, "plan-apply f16 g4");
    plan_apply_run(SKV_DTYPE_BF16, 2, "plan-apply bf16 g2");
}

static void test_unapplied_full_step_stays_due(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { D = 16, N = 100, G = 2 };
    const skv_config c = rkv_cfg(D, 8, 1000, -1.0f, SKV_DTYPE_F32);
    skv_sketch *s = tu_create(&c);
    float *K, *V, Q[G * D];
    tu_make_random_kv(&r, N, D, &K, &V);
    synth_fill_normal(&r, Q, G * D, 1.0f);
    tu_append(s, K, V, N, D);
    skv_err err;
    int full = -1;
    TU_OK(skv_rkv_plan(s, Q, G, &full, &err), &err);
    assert_int_equal(full, 1); /* the prefill */
    skv_stats st;
    skv_sketch_stats(s, &st);
    assert_int_equal(st.attends, 0);
    assert_int_equal(st.full_steps, 0);
    /* the device step "failed": nothing applied; the next plan is a full step again */
    TU_OK(skv_rkv_plan(s, Q, G, &full, &err), &err);
    assert_int_equal(full, 1);
    /* apply refuses a wrong count and changes nothing */
    float *pooled = tu_malloc((N + 1) * sizeof(float));
    for (size_t i = 0; i <= N; i++) pooled[i] = (float)synth_rng_uniform(&r);
    skv_buf before = tu_save(s);
    assert_int_equal(skv_rkv_apply(s, Q, G, pooled, N + 1, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_rkv_apply(s, Q, G, pooled, N - 1, &err), SKV_ERR_INVALID_ARG);
    skv_buf after = tu_save(s);
    assert_true(tu_bufs_equal(&before, &after));
    skv_buf_free(&before);
    skv_buf_free(&after);
    TU_OK(skv_rkv_apply(s, Q, G, pooled, N, &err), &err);
    skv_sketch_stats(s, &st);
    assert_int_equal(st.attends, 1);
    assert_int_equal(st.full_steps, 1);
    /* the partial cache is the top 8 by the given scores, ascending */
    uint64_t pos[8];
    double sc[8];
    assert_int_equal(skv_rkv_partial(s, pos, sc), 8);
    for (int i = 0; i < 8; i++) {
        assert_true(sc[i] == (double)pooled[pos[i]]);
        if (i) assert_true(sc[i] >= sc[i - 1]);
        size_t above = 0; /* exactly 7 - i tokens score higher */
        for (size_t t = 0; t < N; t++) above += pooled[t] > pooled[pos[i]];
        assert_int_equal(above, 7 - i);
    }
    TU_OK(skv_rkv_plan(s, Q, G, &full, &err), &err);
    assert_int_equal(full, 0); /* selected; stride 1000, threshold -1: no check fires */
    /* another policy, another store */
    skv_config ec;
    skv_config_default(&ec, SKV_POLICY_EXACT, D);
    skv_sketch *e = tu_create(&ec);
    assert_int_equal(skv_rkv_apply(e, Q, G, pooled, 0, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_rkv_plan(e, Q, G, &full, &err), SKV_ERR_INVALID_ARG);
    skv_config sc2 = rkv_cfg(D, 8, 4, 0.9f, SKV_DTYPE_F32);
    sc2.full_store = SKV_FULL_SUBGEN;
    skv_sketch *sub = tu_create(&sc2);
    assert_int_equal(skv_rkv_apply(sub, Q, G, pooled, 0, &err), SKV_ERR_INVALID_ARG);
    skv_sketch_destroy(sub);
    skv_sketch_destroy(e);
    skv_sketch_destroy(s);
    free(K), free(V), free(pooled);
}

static void test_maxpool_matches_brute_force(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const size_t ns[] = {1, 2, 5, 100, 1031};
    const int pools[] = {1, 3, 7, 1023};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof pools / sizeof pools[0]; b++) {
            const size_t n = ns[a];
            const int pool = pools[b];
            float *p = tu_malloc(n * sizeof(float)), *got = tu_malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) p[i] = (float)synth_rng_uniform(&r) + 1e-3f;
            skv_rkv_maxpool(p, n, pool, got);
            for (size_t t = 0; t < n; t++) {
                float m = -1.0f;
                for (size_t j = 0; j < n; j++) {
                    const size_t dist = j > t ? j - t : t - j;
                    if (dist <= (size_t)pool / 2 && p[j] > m) m = p[j];
                }
                if (got[t] != m)
                    fail_msg("n %zu pool %d token %zu: %g, want %g", n, pool, t, got[t], m);
            }
            free(p), free(got);
        }
}

static void test_full_mem_names_and_resolve(void **state) {
    (void)state;
    assert_int_equal(skv_full_mem_parse("host"), SKV_FULL_MEM_HOST);
    assert_int_equal(skv_full_mem_parse("device"), SKV_FULL_MEM_DEVICE);
    assert_int_equal(skv_full_mem_parse("disk"), -1);
    assert_string_equal(skv_full_mem_name(SKV_FULL_MEM_DEVICE), "device");
    assert_string_equal(skv_full_mem_name((skv_full_mem)7), "unknown");
    skv_config c = rkv_cfg(64, 32, 4, 0.9f, SKV_DTYPE_F16), out;
    assert_int_equal(c.full_mem, SKV_FULL_MEM_HOST); /* the default */
    skv_err err;
    c.full_mem = SKV_FULL_MEM_DEVICE;
    TU_OK(skv_config_resolve(&c, &out, &err), &err);
    assert_int_equal(out.full_mem, SKV_FULL_MEM_DEVICE);
    c.full_store = SKV_FULL_SUBGEN; /* a subgen store has no device mirror: refused */
    assert_int_equal(skv_config_resolve(&c, &out, &err), SKV_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "full_store=exact"));
    c.full_mem = SKV_FULL_MEM_HOST;
    TU_OK(skv_config_resolve(&c, &out, &err), &err);
    c.full_store = SKV_FULL_EXACT;
    c.full_mem = (skv_full_mem)2;
    assert_int_equal(skv_config_resolve(&c, &out, &err), SKV_ERR_INVALID_ARG);
    skv_sketch *s = NULL;
    assert_int_equal(skv_sketch_create(&c, &s, &err), SKV_ERR_INVALID_ARG);
    assert_null(s);
}

static void test_full_mem_checkpoint_round_trip(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { D = 64, N = 50 };
    for (int m = 0; m < 2; m++) {
        skv_config c = rkv_cfg(D, 16, 4, 0.9f, SKV_DTYPE_F16);
        c.full_mem = (skv_full_mem)m;
        skv_sketch *s = tu_create(&c);
        float *K, *V, Q[D];
        tu_make_random_kv(&r, N, D, &K, &V);
        synth_fill_normal(&r, Q, D, 1.0f);
        tu_append(s, K, V, N, D);
        skv_partial *p = tu_partials_new(1, D);
        tu_attend(s, Q, 1, D, p);
        skv_buf b = tu_save(s);
        skv_sketch *back = NULL;
        size_t used = 0;
        skv_err err;
        TU_OK(skv_sketch_load(b.data, b.len, &back, &used, &err), &err);
        assert_int_equal(skv_sketch_config(back)->full_mem, m);
        assert_int_equal(skv_sketch_config(back)->full_store, SKV_FULL_EXACT);
        skv_buf b2 = tu_save(back);
        assert_true(tu_bufs_equal(&b, &b2));
        skv_buf_free(&b), skv_buf_free(&b2);
        skv_sketch_destroy(s), skv_sketch_destroy(back);
        free(K), free(V), free(p);
    }
}

static void test_full_mem_wire_and_cli(void **state) {
    (void)state;
    skv_config c = rkv_cfg(64, 16, 4, 0.9f, SKV_DTYPE_F16), back;
    c.full_mem = SKV_FULL_MEM_DEVICE;
    skv_wire_policy w;
    skv_wire_policy_from_config(&w, &c);
    /* through the packed bytes, as it travels */
    const size_t len = subkv__policy_config__get_packed_size(&w.msg);
    uint8_t *buf = tu_malloc(len);
    subkv__policy_config__pack(&w.msg, buf);
    Subkv__PolicyConfig *pc = subkv__policy_config__unpack(NULL, len, buf);
    assert_non_null(pc);
    assert_string_equal(pc->full_mem, "device");
    skv_err err;
    TU_OK(skv_wire_config_from_policy(pc, 64, &back, &err), &err);
    assert_int_equal(back.full_mem, SKV_FULL_MEM_DEVICE);
    subkv__policy_config__free_unpacked(pc, NULL);
    free(buf);
    /* an unknown name is refused; the field means nothing to another policy */
    Subkv__PolicyConfig bad = w.msg;
    bad.full_mem = (char *)"disk";
    assert_int_equal(skv_wire_config_from_policy(&bad, 64, &back, &err), SKV_ERR_UNSUPPORTED);
    bad.policy = (char *)"exact";
    TU_OK(skv_wire_config_from_policy(&bad, 64, &back, &err), &err);
    assert_int_equal(back.full_mem, SKV_FULL_MEM_HOST);
    /* the model programs' --full-mem */
    lcli_opts o;
    lcli_defaults(&o);
    char *argv[] = {"prog", "--policy", "refreshkv", "--full-mem", "device", NULL};
    for (int i = 1; i < 5; i++) assert_int_equal(lcli_parse_common(&o, 5, argv, &i), 1);
    assert_int_equal(lcli_policy(&o, &c), 0);
    assert_int_equal(c.full_mem, SKV_FULL_MEM_DEVICE);
    lcli_defaults(&o);
    char *on_exact[] = {"prog", "--full-mem", "device", NULL};
    int i = 1;
    assert_int_equal(lcli_parse_common(&o, 3, on_exact, &i), 1);
    assert_int_equal(lcli_policy(&o, &c), -1); /* exact has no full store to place */
    lcli_defaults(&o);
    char *badv[] = {"prog", "--full-mem", "disk", NULL};
    i = 1;
    assert_int_equal(lcli_parse_common(&o, 3, badv, &i), -1);
}

/* skv_rkv_ring, what the GPU worker's partial-cache mirror relies on: the rows pushed since
 * a mirror's last look are rows next - delta .. next - 1 (mod pcap) and hold exactly the
 * appended tokens; a selection changes `layout`; pushes past pcap wrap. */
static void test_ring_view_names_the_pushed_rows(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { D = 16, K = 5, PREFILL = 40, N = 13 };
    const skv_config c = rkv_cfg(D, K, 1000, 0.0f, SKV_DTYPE_F32); /* never a check */
    skv_sketch *s = tu_create(&c);
    float *Kr, *Vr;
    tu_make_random_kv(&r, PREFILL + N, D, &Kr, &Vr);
    tu_append(s, Kr, Vr, PREFILL, D);
    skv_rkv_ring_view v0, v;
    skv_rkv_ring(s, &v0);
    assert_int_equal(v0.pn, 0); /* exact store: nothing selected yet, nothing pushed */
    assert_int_equal(v0.pushes, 0);
    float q[D];
    synth_fill_normal(&r, q, D, 1.0f);
    skv_partial *out = tu_partials_new(1, D);
    tu_attend(s, q, 1, D, out); /* the first attend is a full step: a selection */
    skv_rkv_ring(s, &v);
    assert_int_equal(v.pn, K);
    assert_true(v.layout != v0.layout);
    for (int t = 0; t < N; t++) {
        skv_rkv_ring_view before;
        skv_rkv_ring(s, &before);
        tu_append(s, Kr + (size_t)(PREFILL + t) * D, Vr + (size_t)(PREFILL + t) * D, 1, D);
        tu_attend(s, q, 1, D, out); /* partial step */
        skv_rkv_ring(s, &v);
        assert_int_equal(v.pushes - before.pushes, 1);
        assert_true(v.layout == before.layout);
        const size_t row = (v.next + v.pcap - 1) % v.pcap;
        const float *kr = (const float *)v.k->data + row * D,
                    *vr = (const float *)v.v->data + row * D;
        for (int j = 0; j < D; j++) {
            assert_true(kr[j] == Kr[(size_t)(PREFILL + t) * D + j]);
            assert_true(vr[j] == Vr[(size_t)(PREFILL + t) * D + j]);
        }
    }
    /* after N > K pushes the last K rows of the ring are the last K tokens */
    for (int i = 0; i < K; i++) {
        const size_t row = (v.next + v.pcap - 1 - (size_t)i) % v.pcap;
        assert_true(((const float *)v.k->data)[row * D] == Kr[(size_t)(PREFILL + N - 1 - i) * D]);
    }
    skv_err err;
    TU_OK(skv_sketch_refresh(s, &err), &err);
    tu_attend(s, q, 1, D, out); /* forced full step: a new selection */
    skv_rkv_ring_view after;
    skv_rkv_ring(s, &after);
    assert_true(after.layout != v.layout);
    free(out), free(Kr), free(Vr);
    skv_sketch_destroy(s);
}

int main(void) {
    tu_suite_begin("test_refreshkv_plan");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_apply_equals_attend),
        cmocka_unit_test(test_unapplied_full_step_stays_due),
        cmocka_unit_test(test_maxpool_matches_brute_force),
        cmocka_unit_test(test_full_mem_names_and_resolve),
        cmocka_unit_test(test_full_mem_checkpoint_round_trip),
        cmocka_unit_test(test_full_mem_wire_and_cli),
        cmocka_unit_test(test_ring_view_names_the_pushed_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
