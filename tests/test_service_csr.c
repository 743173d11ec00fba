/*
 * test_service_csr.c — the csr policy through the real service (mpirun: coordinator + 2
 * workers): workers load the dictionary file named by dict_path at create, answer bit for bit
 * what the in-process replica computes (also context-sharded), restore csr sketches from a
 * checkpoint, and refuse a create whose dictionary cannot be read without losing anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "csr_dict.h"
#include "shard_map.h"
#include "subkv_client.h"
#include "svc_check.h"
#include "svc_harness.h"
#include "svc_replica.h"

enum { NSEQ = 2, PREFILL = 150, STEPS = 6 };

static float *rand_floats(synth_rng *r, size_t n) {
    float *x = tu_malloc(n * sizeof *x);
    synth_fill_normal(r, x, n, 1.0f);
    return x;
}

/* STEPS decode steps of every layer for both sequences, on the service and on the replicas. */
static void steps(skv_client *c, const skv_model_shape *sh, const uint64_t *ids, svc_replica *rep,
                  synth_rng *rng, const char *what) {
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Q = rand_floats(rng, NSEQ * qn), *K = rand_floats(rng, NSEQ * kn);
    float *V = rand_floats(rng, NSEQ * kn), *out = tu_malloc(NSEQ * qn * sizeof(float));
    float *want = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    for (int t = 0; t < STEPS; t++)
        for (uint32_t l = 0; l < sh->layers; l++) {
            synth_fill_normal(rng, Q, NSEQ * qn, 1.0f);
            synth_fill_normal(rng, K, NSEQ * kn, 1.0f);
            synth_fill_normal(rng, V, NSEQ * kn, 1.0f);
            SVC_OK(skv_client_step(c, sh, l, NSEQ, ids, Q, K, V, out, &err), &err);
            for (int i = 0; i < NSEQ; i++) {
                SVC_OK(svc_replica_step(&rep[i], l, Q + i * qn, K + i * kn, V + i * kn, want, &err),
                       &err);
                svc_assert_bits_equal(out + i * qn, want, qn, what);
            }
        }
    free(Q), free(K), free(V), free(out), free(want);
}

static void test_service_csr_equals_replica_and_restores(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const skv_model_shape sh = {2, 4, 2, 32};
    char path[128], dir[128];
    snprintf(path, sizeof path, "/tmp/subkv-test-csr-%d.skvd", (int)getpid());
    snprintf(dir, sizeof dir, "/tmp/subkv-test-csr-ckpt-%d", (int)getpid());
    svc_rm_rf(dir);
    skv_err err = {0};
    skv_dict *dict = NULL;
    TU_OK(skv_dict_new(32, 48, 2, 1, &dict, &err), &err);
    synth_fill_normal(&rng, dict->data, 2 * 2 * 48 * 32, 1.0f);
    TU_OK(skv_dict_finish(dict, &err), &err);
    TU_OK(skv_dict_save_file(dict, path, &err), &err);

    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_CSR, 32);
    cfg.sparsity = 6;
    cfg.window = 20;
    cfg.sinks = 2;
    snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", path);
    skv_config local = cfg; /* the replicas use the same set, loaded in-process */
    local.dict = dict;
    const uint32_t shards[NSEQ] = {1, 2};

    svc_job *a = &f->job[0];
    assert_int_equal(svc_job_start(a, 2, NULL, NULL), 0);
    skv_client *c = svc_connect(a);
    uint64_t ids[NSEQ];
    svc_replica rep[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        SVC_OK(skv_client_create_sequence(c, &sh, &cfg, shards[i], 64, &ids[i], &err), &err);
        SVC_OK(svc_replica_init(&rep[i], &sh, &local, ids[i], shards[i], 64, &err), &err);
    }
    const size_t kn = (size_t)sh.kv_heads * sh.head_dim;
    for (uint32_t l = 0; l < sh.layers; l++)
        for (int i = 0; i < NSEQ; i++) {
            float *K = rand_floats(&rng, PREFILL * kn), *V = rand_floats(&rng, PREFILL * kn);
            SVC_OK(skv_client_append(c, &sh, ids[i], l, PREFILL, K, V, &err), &err);
            SVC_OK(svc_replica_append(&rep[i], l, PREFILL, K, V, &err), &err);
            free(K), free(V);
        }
    steps(c, &sh, ids, rep, &rng, "csr service vs replica");

    /* a dictionary the workers cannot read: the create fails, nothing else changes */
    uint64_t bytes0, nseq0, bytes1, nseq1, bad_id = 0;
    svc_stats_numbers(c, &bytes0, &nseq0);
    skv_config bad = cfg;
    snprintf(bad.dict_path, sizeof bad.dict_path, "%s.missing", path);
    assert_int_not_equal(skv_client_create_sequence(c, &sh, &bad, 1, 0, &bad_id, &err), SKV_OK);
    assert_non_null(strstr(err.msg, "missing"));
    svc_stats_numbers(c, &bytes1, &nseq1);
    assert_int_equal(nseq1, nseq0);
    assert_int_equal(bytes1, bytes0);

    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(a), 0);

    /* a restored job goes on exactly as the replicas do */
    const char *restore[] = {"--restore", dir, NULL};
    svc_job *b = &f->job[1];
    assert_int_equal(svc_job_start(b, 2, restore, NULL), 0);
    c = svc_connect(b);
    svc_stats_numbers(c, &bytes1, &nseq1);
    assert_int_equal(nseq1, nseq0);
    assert_int_equal(bytes1, bytes0);
    steps(c, &sh, ids, rep, &rng, "restored csr service vs replica");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(b), 0);

    for (int i = 0; i < NSEQ; i++) svc_replica_free(&rep[i]);
    svc_rm_rf(dir);
    unlink(path);
    skv_dict_free(dict);
}

int main(void) {
    tu_suite_begin("test_service_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_service_csr_equals_replica_and_restores,
                                        svc_fixture_setup, svc_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
