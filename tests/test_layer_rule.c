/*
 * test_layer_rule.c — RefreshKV's per-layer refresh decision (skv_layer_rule, subkv.h):
 *
 *  1. in process: driving a threshold -1 sketch with the rule over its own group's queries
 *     gives the same full steps and the same bits as a sketch that decides alone (the rule
 *     is the sketch's rule, lifted to the layer);
 *  2. the service: a refreshkv sequence with decide = layer runs its full steps on the same
 *     steps for every kv head of a layer, answers bit for bit as the in-process replica
 *     (tests/svc_replica.h, which applies the rule the same way), and keeps doing so after
 *     a checkpoint is restored into a fresh job (the rule's state travels with the
 *     coordinator's table); a decide = group sequence fed the same queries refreshes its
 *     heads at different steps, so the layer test could fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

#include "test_util.h"

#include "shard_map.h"
#include "subkv_client.h"
#include "svc_harness.h"
#include "svc_check.h"
#include "svc_replica.h"

/* Queries that sit on a topic (q = topic + 0.3 noise) and jump to a new random topic with
 * probability `move` per step: topic [n][d] is updated in place, Q [n * per][d] written. */
static void topic_queries(synth_rng *r, float *topic, int n, int per, int d, const double *move,
                          float *Q) {
    for (int t = 0; t < n; t++) {
        if (synth_rng_uniform(r) < move[t])
            synth_fill_normal(r, topic + (size_t)t * d, (size_t)d, 1.0f);
        for (int j = 0; j < per; j++) {
            float *q = Q + ((size_t)t * per + j) * d;
            synth_fill_normal(r, q, (size_t)d, 0.3f);
            for (int i = 0; i < d; i++) q[i] += topic[(size_t)t * d + i];
        }
    }
}

/* ---- 1. the rule equals the sketch's own ------------------------------------------------- */

static void test_layer_rule_equals_sketch_rule_on_one_group(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    enum { D = 32, G = 4, N0 = 300, STEPS = 60 };
    skv_config ca, cb;
    skv_config_default(&ca, SKV_POLICY_REFRESHKV, D);
    ca.partial_tokens = 48, ca.stride = 3, ca.threshold = 0.8f;
    cb = ca;
    cb.threshold = -1.0f; /* decides nothing alone: the rule tells it */
    skv_err err = {0};
    skv_sketch *a = NULL, *b = NULL;
    assert_int_equal(skv_sketch_create(&ca, &a, &err), SKV_OK);
    assert_int_equal(skv_sketch_create(&cb, &b, &err), SKV_OK);
    float *K = tu_malloc((size_t)N0 * D * sizeof(float)), *V = tu_malloc((size_t)N0 * D * 4);
    synth_fill_normal(&rng, K, (size_t)N0 * D, 1.0f);
    synth_fill_normal(&rng, V, (size_t)N0 * D, 1.0f);
    assert_int_equal(skv_sketch_append(a, K, V, N0, D, &err), SKV_OK);
    assert_int_equal(skv_sketch_append(b, K, V, N0, D, &err), SKV_OK);
    skv_layer_rule rule = {0};
    float qref[D] = {0}, topic[D], Q[G * D];
    const double move = 0.2;
    synth_fill_normal(&rng, topic, D, 1.0f);
    skv_partial *pa = tu_malloc(G * skv_partial_stride(D)),
                *pb = tu_malloc(G * skv_partial_stride(D));
    uint64_t checks_fired = 0;
    for (int t = 0; t < STEPS; t++) {
        /* a decode token each step; a prefill chunk of 5 at step 30 */
        const size_t n = t == 30 ? 5 : 1;
        synth_fill_normal(&rng, K, n * D, 1.0f);
        synth_fill_normal(&rng, V, n * D, 1.0f);
        assert_int_equal(skv_sketch_append(a, K, V, n, D, &err), SKV_OK);
        assert_int_equal(skv_sketch_append(b, K, V, n, D, &err), SKV_OK);
        skv_layer_rule_appended(&rule, n);
        topic_queries(&rng, topic, 1, G, D, &move, Q);
        const int forced = !rule.primed || rule.pending;
        const int full = skv_layer_rule_check(&rule, qref, cb.stride, ca.threshold, Q, G, D);
        checks_fired += full && !forced;
        if (full) assert_int_equal(skv_sketch_refresh(b, &err), SKV_OK);
        assert_int_equal(skv_sketch_attend(a, Q, G, D, pa, &err), SKV_OK);
        assert_int_equal(skv_sketch_attend(b, Q, G, D, pb, &err), SKV_OK);
        skv_layer_rule_commit(&rule, qref, cb.stride, full, Q, G, D, N0 + (uint64_t)t + 1);
        assert_true(skv_layer_rule_valid(&rule, qref, cb.stride, D));
        skv_stats sa, sb;
        skv_sketch_stats(a, &sa);
        skv_sketch_stats(b, &sb);
        if (sa.full_steps != sb.full_steps)
            fail_msg("step %d: the sketch's own rule ran %llu full steps, the layer rule %llu", t,
                     (unsigned long long)sa.full_steps, (unsigned long long)sb.full_steps);
        if (memcmp(pa, pb, G * skv_partial_stride(D)) != 0)
            fail_msg("step %d: partials differ between the two deciders", t);
    }
    skv_stats s;
    skv_sketch_stats(b, &s);
    /* the checks both fired and passed: neither every step nor only the forced ones */
    assert_true(checks_fired > 0);
    assert_true(s.full_steps < s.attends / 2);
    printf("# layer rule on one group: %llu full steps of %llu attends (%llu from checks), "
           "identical to the sketch's own\n",
           (unsigned long long)s.full_steps, (unsigned long long)s.attends,
           (unsigned long long)checks_fired);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
    free(K), free(V), free(pa), free(pb);
}

static void test_layer_rule_valid_rejects_bad_state(void **state) {
    (void)state;
    float q[4] = {1, 2, 3, 4};
    skv_layer_rule r = {.since_check = 2, .primed = 1, .pending = 0};
    assert_true(skv_layer_rule_valid(&r, q, 3, 4));
    r.since_check = 3; /* a counter at the stride would have been a check */
    assert_false(skv_layer_rule_valid(&r, q, 3, 4));
    r.since_check = 0, r.primed = 2;
    assert_false(skv_layer_rule_valid(&r, q, 3, 4));
    r.primed = 1, q[2] = NAN;
    assert_false(skv_layer_rule_valid(&r, q, 3, 4));
}

/* ---- 2. the service ---------------------------------------------------------------------- */

enum { SL_PREFILL = 300, SL_STEPS = 40, SL_CKPT = 20 };

typedef struct sl_seq {
    uint64_t id;
    svc_replica rep;
    uint64_t *last; /* per (layer, kv head): full_steps of its replica sketch after the step */
} sl_seq;

/* One step of layer l for both sequences (same inputs); compares with the replicas and
 * returns, per sequence, whether the layer's kv heads ran their full steps together. */
static void sl_step(skv_client *c, const skv_model_shape *sh, sl_seq *s, uint32_t l, const float *Q,
                    const float *K, const float *V, int together[2], const char *what) {
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Qb = tu_malloc(2 * qn * sizeof(float)), *Kb = tu_malloc(2 * kn * sizeof(float));
    float *Vb = tu_malloc(2 * kn * sizeof(float)), *out = tu_malloc(2 * qn * sizeof(float));
    float *want = tu_malloc(qn * sizeof(float));
    for (int b = 0; b < 2; b++) {
        memcpy(Qb + b * qn, Q, qn * sizeof(float));
        memcpy(Kb + b * kn, K, kn * sizeof(float));
        memcpy(Vb + b * kn, V, kn * sizeof(float));
    }
    const uint64_t ids[2] = {s[0].id, s[1].id};
    skv_err err = {0};
    SVC_OK(skv_client_step(c, sh, l, 2, ids, Qb, Kb, Vb, out, &err), &err);
    for (int b = 0; b < 2; b++) {
        SVC_OK(svc_replica_step(&s[b].rep, l, Q, K, V, want, &err), &err);
        char wb[160];
        snprintf(wb, sizeof wb, "%s, decide=%s", what, b ? "group" : "layer");
        svc_assert_bits_equal(out + b * qn, want, qn, wb);
        int moved = -1; /* did head h run a full step this step? all heads alike? */
        together[b] = 1;
        for (uint32_t h = 0; h < sh->kv_heads; h++) {
            skv_stats st;
            skv_sketch_stats(*svc_replica_at(&s[b].rep, l, h, 0), &st);
            uint64_t *last = &s[b].last[(size_t)l * sh->kv_heads + h];
            const int full = st.full_steps != *last;
            *last = st.full_steps;
            if (moved >= 0 && full != moved) together[b] = 0;
            moved = full;
        }
    }
    free(Qb), free(Kb), free(Vb), free(out), free(want);
}

static void test_service_layer_rule_refreshes_layer_together_and_restores(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/subkv-test-layer-rule-%d", (int)getpid());
    svc_rm_rf(dir);
    const skv_model_shape sh = {2, 8, 4, 32};
    const uint32_t d = sh.head_dim, kv = sh.kv_heads, qh = sh.q_heads, g = qh / kv;
    skv_config cfg[2];
    skv_config_default(&cfg[0], SKV_POLICY_REFRESHKV, (int)d);
    cfg[0].partial_tokens = 40, cfg[0].stride = 2, cfg[0].threshold = 0.8f;
    cfg[0].seed = synth_rng_u64(&rng) >> 1;
    cfg[1] = cfg[0];
    cfg[0].decide = SKV_DECIDE_LAYER;
    cfg[1].decide = SKV_DECIDE_GROUP;
    skv_err err = {0};
    svc_job *a = &f->job[0];
    assert_int_equal(svc_job_start(a, 3, NULL, NULL), 0);
    skv_client *c = svc_connect(a);
    sl_seq s[2];
    memset(s, 0, sizeof s);
    for (int b = 0; b < 2; b++) {
        SVC_OK(skv_client_create_sequence(c, &sh, &cfg[b], 1, 0, &s[b].id, &err), &err);
        SVC_OK(svc_replica_init(&s[b].rep, &sh, &cfg[b], s[b].id, 1, 0, &err), &err);
        s[b].last = calloc((size_t)sh.layers * kv, sizeof *s[b].last);
        assert_non_null(s[b].last);
    }
    /* prefill in two chunks per layer */
    for (uint32_t l = 0; l < sh.layers; l++)
        for (int ch = 0; ch < 2; ch++) {
            const size_t n = SL_PREFILL / 2;
            float *K = tu_malloc(n * kv * d * 4), *V = tu_malloc(n * kv * d * 4);
            synth_fill_normal(&rng, K, n * kv * d, 1.0f);
            synth_fill_normal(&rng, V, n * kv * d, 1.0f);
            for (int b = 0; b < 2; b++) {
                SVC_OK(skv_client_append(c, &sh, s[b].id, l, n, K, V, &err), &err);
                SVC_OK(svc_replica_append(&s[b].rep, l, n, K, V, &err), &err);
            }
            free(K), free(V);
        }
    /* decode: per (layer, group) a query topic; group 0's never moves, the others' jump
     * with probability 0.4 per step, so per-group decisions differ between heads */
    float *topic = tu_malloc((size_t)sh.layers * kv * d * sizeof(float));
    synth_fill_normal(&rng, topic, (size_t)sh.layers * kv * d, 1.0f);
    double move[8] = {0.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4};
    float *Q = tu_malloc((size_t)qh * d * sizeof(float)), *K = tu_malloc((size_t)kv * d * 4);
    float *V = tu_malloc((size_t)kv * d * 4);
    int apart[2] = {0, 0}; /* steps on which a layer's heads did not all agree */
    for (int t = 0; t < SL_STEPS; t++) {
        if (t == SL_CKPT) { /* checkpoint, stop, restore into a fresh job, go on */
            SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
            skv_client_close(c);
            assert_int_equal(svc_job_stop(a), 0);
            const char *restore[] = {"--restore", dir, NULL};
            a = &f->job[1];
            assert_int_equal(svc_job_start(a, 3, restore, NULL), 0);
            c = svc_connect(a);
        }
        for (uint32_t l = 0; l < sh.layers; l++) {
            topic_queries(&rng, topic + (size_t)l * kv * d, (int)kv, (int)g, (int)d, move, Q);
            synth_fill_normal(&rng, K, (size_t)kv * d, 1.0f);
            synth_fill_normal(&rng, V, (size_t)kv * d, 1.0f);
            char what[96];
            snprintf(what, sizeof what, "step %d layer %u%s", t, l,
                     t >= SL_CKPT ? " (restored job)" : "");
            int together[2];
            sl_step(c, &sh, s, l, Q, K, V, together, what);
            if (!together[0]) fail_msg("%s: decide=layer heads ran full steps apart", what);
            apart[1] += !together[1];
        }
    }
    uint64_t full[2] = {0, 0}, att[2] = {0, 0};
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; i < (size_t)sh.layers * kv; i++) {
            skv_stats st;
            skv_sketch_stats(s[b].rep.sk[i], &st);
            full[b] += st.full_steps, att[b] += st.attends;
        }
    /* the layer rule both fired and held back: more than the forced first step, fewer than
     * every step; and the group rule split heads apart on some step */
    assert_true(full[0] > (uint64_t)sh.layers * kv);
    assert_true(full[0] < att[0]);
    assert_true(apart[1] > 0);
    printf("# service layer rule: decide=layer %llu/%llu full steps, heads always together; "
           "decide=group %llu/%llu, heads apart on %d layer steps; bit-identical to the "
           "replica, across a restore\n",
           (unsigned long long)full[0], (unsigned long long)att[0], (unsigned long long)full[1],
           (unsigned long long)att[1], apart[1]);
    for (int b = 0; b < 2; b++) SVC_OK(skv_client_drop_sequence(c, s[b].id, &err), &err);
    uint64_t total, nseq;
    svc_stats_numbers(c, &total, &nseq);
    assert_int_equal(nseq, 0);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(a), 0);
    svc_rm_rf(dir);
    for (int b = 0; b < 2; b++) {
        svc_replica_free(&s[b].rep);
        free(s[b].last);
    }
    free(topic), free(Q), free(K), free(V);
}

int main(void) {
    tu_suite_begin("layer_rule");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_rule_equals_sketch_rule_on_one_group),
        cmocka_unit_test(test_layer_rule_valid_rejects_bad_state),
        cmocka_unit_test_setup_teardown(
            test_service_layer_rule_refreshes_layer_together_and_restores, svc_fixture_setup,
            svc_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
