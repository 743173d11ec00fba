/*
 * test_service_csr.c — the csr policy through the real service (mpirun: coordinator + 2
 * workers): workers load the dictionary file named by dict_path at create, answer bit for bit
 * what the in-process replica computes (also context-sharded), restore csr sketches from a
 * checkpoint, and refuse a create whose dictionary cannot be read without losing anything;
 * on GPU workers (skipped without a GPU) csr attends its codes there and matches the replica
 * within the GPU's rounding. The same for refreshkv with a csr full store. The prefill and step
 * loops are tests/svc_steps.h's.
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
#include "svc_steps.h"

enum { NSEQ = 2, PREFILL = 150, STEPS = 6 };

/* The service vs the replicas for a config coded with a dictionary (csr, or refreshkv with a
 * csr full store): `policy` picks which. */
static void coded_service_case(svc_fixture *f, skv_policy_id policy, const char *name) {
    synth_rng rng;
    tu_rng_for(&rng, name);
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
    skv_config_default(&cfg, policy, 32);
    cfg.sparsity = 6;
    cfg.window = 20;
    cfg.sinks = 2;
    if (policy == SKV_POLICY_REFRESHKV) /* a full step every other attend, a few in STEPS */
        cfg.full_store = SKV_FULL_CSR, cfg.partial_tokens = 24, cfg.stride = 2,
        cfg.threshold = 1.0f;
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
    svc_prefill_both(c, &sh, NSEQ, ids, rep, &rng, PREFILL);
    svc_steps_vs_replicas(c, &sh, NSEQ, ids, rep, NULL, &rng, STEPS, 1.0f, 0.0,
                          "csr service vs replica");

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
    svc_steps_vs_replicas(c, &sh, NSEQ, ids, rep, NULL, &rng, STEPS, 1.0f, 0.0,
                          "restored csr service vs replica");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(b), 0);

    for (int i = 0; i < NSEQ; i++) svc_replica_free(&rep[i]);
    svc_rm_rf(dir);
    unlink(path);
    skv_dict_free(dict);
}

static void test_service_csr_equals_replica_and_restores(void **state) {
    coded_service_case(*state, SKV_POLICY_CSR, __func__);
}

/* refreshkv with a csr full store: workers bind the store's dictionary from dict_path, answer
 * like the replica (full steps on the CPU), checkpoint and restore the store's codes. */
static void test_service_refreshkv_csr_equals_replica_and_restores(void **state) {
    coded_service_case(*state, SKV_POLICY_REFRESHKV, __func__);
}

/*
 * Workers with --backend cuda attend csr over its codes on the GPU (worker/gpu_csr.c): post-
 * rotary f16 sequences, one head-sharded and one context-sharded, answer like the CPU
 * replica within 5e-3 relative (float32 GPU math over unrounded decoded rows vs the CPU's
 * rows rounded to f16) step after step, the codes and window uploaded append-only. Skipped
 * without a GPU, saying why.
 */
static void coded_gpu_case(svc_fixture *f, skv_policy_id policy, const char *name) {
    svc_need_gpus(1);
    synth_rng rng;
    tu_rng_for(&rng, name);
    const skv_model_shape sh = {2, 8, 2, 64};
    char path[128];
    snprintf(path, sizeof path, "/tmp/subkv-test-csr-gpu-%d.skvd", (int)getpid());
    skv_err err = {0};
    skv_dict *dict = NULL;
    TU_OK(skv_dict_new(64, 128, 2, 1, &dict, &err), &err);
    synth_fill_normal(&rng, dict->data, 2 * 2 * 128 * 64, 1.0f);
    TU_OK(skv_dict_finish(dict, &err), &err);
    TU_OK(skv_dict_save_file(dict, path, &err), &err);
    skv_config cfg;
    skv_config_default(&cfg, policy, 64);
    cfg.sparsity = 8, cfg.window = 24, cfg.sinks = 4, cfg.dtype = SKV_DTYPE_F16;
    if (policy == SKV_POLICY_REFRESHKV)
        cfg.full_store = SKV_FULL_CSR, cfg.partial_tokens = 40, cfg.stride = 3,
        cfg.threshold = 1.0f;
    snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", path);
    skv_config local = cfg;
    local.dict = dict;
    const char *wargs[] = {"--backend", "cuda", NULL};
    assert_int_equal(svc_job_start(&f->job[0], 2, NULL, wargs), 0);
    skv_client *c = svc_connect(&f->job[0]);
    const uint32_t shards[NSEQ] = {1, 2};
    uint64_t ids[NSEQ];
    svc_replica rep[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        SVC_OK(skv_client_create_sequence(c, &sh, &cfg, shards[i], 64, &ids[i], &err), &err);
        SVC_OK(svc_replica_init(&rep[i], &sh, &local, ids[i], shards[i], 64, &err), &err);
    }
    svc_prefill_both(c, &sh, NSEQ, ids, rep, &rng, 300);
    const double worst = svc_steps_vs_replicas(c, &sh, NSEQ, ids, rep, NULL, &rng, 3 * STEPS, 1.5f,
                                               5e-3, "coded policy on GPU workers vs replica");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(&f->job[0]), 0);
    printf("# %s gpu service: worst relative error vs the CPU replica %.2e\n",
           skv_policy_name(policy), worst);
    for (int i = 0; i < NSEQ; i++) svc_replica_free(&rep[i]);
    unlink(path);
    skv_dict_free(dict);
}

static void test_service_csr_gpu_matches_replica(void **state) {
    coded_gpu_case(*state, SKV_POLICY_CSR, __func__);
}

/* refreshkv with a csr store on GPU workers: partial steps attend the partial cache's ring on
 * the device, full steps run on the CPU over the store (never the exact-store device path:
 * gpu_refresh.c serves full_store = exact only). */
static void test_service_refreshkv_csr_gpu_matches_replica(void **state) {
    coded_gpu_case(*state, SKV_POLICY_REFRESHKV, __func__);
}

int main(void) {
    tu_suite_begin("test_service_csr");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_service_csr_equals_replica_and_restores,
                                        svc_fixture_setup, svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_service_refreshkv_csr_equals_replica_and_restores,
                                        svc_fixture_setup, svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_service_csr_gpu_matches_replica, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_service_refreshkv_csr_gpu_matches_replica,
                                        svc_fixture_setup, svc_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
