/*
 * test_service.c — the subkv service end to end: real mpirun jobs (tests/svc_harness.h)
 * driven through libsubkv and, for malformed input, raw sockets.
 *
 *  1. equivalence: for 1, 2, 3 workers, head and context sharding, every policy, the
 *     service's step outputs equal bit for bit an in-process replica built from the cache
 *     library (tests/svc_replica.h); context-sharded exact equals unsharded exact (1e-6);
 *  2. bad input (one 2-worker job): each bad request fails with its status, the coordinator
 *     stays up, and a well-behaved client's sequence answers exactly as its replica before
 *     and after;
 *  3. checkpoint/restore: a restored job continues bit-identically; a job of another size
 *     refuses the checkpoint and exits non-zero;
 *  4. SIGTERM to the coordinator stops the whole job cleanly (exit 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <math.h>

#include "test_util.h"

#include "shard_map.h"
#include "skv_frame.h"
#include "skv_wire.h"
#include "subkv.pb-c.h"
#include "subkv_client.h"
#include "svc_check.h"
#include "svc_harness.h"
#include "svc_replica.h"
#include "svc_steps.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static float *rand_floats(synth_rng *r, size_t n) {
    float *x = tu_malloc(n * sizeof(float));
    synth_fill_normal(r, x, n, 1.0f);
    return x;
}

/* The policies under test, each with a fresh RNG seed; small parameters so that sinkwin and
 * h2o evict, subgen samples (its budget holds a handful of clusters and value slots) and
 * refreshkv evicts from its partial cache and refreshes it (over an exact and a SubGen full
 * store). */
enum { NPOL = 7 };
static void make_policies(synth_rng *r, int d, skv_config cfg[NPOL], const char *label[NPOL]) {
    skv_config_default(&cfg[0], SKV_POLICY_EXACT, d);
    label[0] = "exact";
    skv_config_default(&cfg[1], SKV_POLICY_SUBGEN, d);
    cfg[1].values = SKV_VALUES_L2, cfg[1].dtype = SKV_DTYPE_F16;
    cfg[1].sinks = 4, cfg[1].window = 16, cfg[1].samples = 4, cfg[1].budget_bytes = 8192;
    label[1] = "subgen-l2";
    skv_config_default(&cfg[2], SKV_POLICY_SUBGEN, d);
    cfg[2].values = SKV_VALUES_CLUSTER;
    cfg[2].sinks = 2, cfg[2].window = 16, cfg[2].samples = 3, cfg[2].budget_bytes = 10240;
    label[2] = "subgen-cluster";
    skv_config_default(&cfg[3], SKV_POLICY_SINKWIN, d);
    cfg[3].sinks = 4, cfg[3].window = 48, cfg[3].dtype = SKV_DTYPE_BF16;
    label[3] = "sinkwin";
    skv_config_default(&cfg[4], SKV_POLICY_H2O, d);
    cfg[4].heavy = 24, cfg[4].window = 24;
    label[4] = "h2o";
    skv_config_default(&cfg[5], SKV_POLICY_REFRESHKV, d);
    cfg[5].partial_tokens = 40, cfg[5].stride = 3, cfg[5].threshold = 0.95f;
    cfg[5].dtype = SKV_DTYPE_F16;
    cfg[5].full_mem = SKV_FULL_MEM_DEVICE; /* CPU workers: the same as host, bit for bit */
    label[5] = "refreshkv";
    skv_config_default(&cfg[6], SKV_POLICY_REFRESHKV, d); /* SubGen full store, bounded */
    cfg[6].full_store = SKV_FULL_SUBGEN, cfg[6].values = SKV_VALUES_CLUSTER;
    cfg[6].partial_tokens = 32, cfg[6].stride = 2, cfg[6].threshold = 0.95f;
    cfg[6].window = 16, cfg[6].samples = 3, cfg[6].max_clusters = 12;
    label[6] = "refreshkv-subgen";
    for (int i = 0; i < NPOL; i++) cfg[i].seed = synth_rng_u64(r) >> 1;
}

/* ---- 1. equivalence ------------------------------------------------------------------------ */

enum { EQ_PREFILL = 600, EQ_STEPS = 20, EQ_BLOCK = 64 };

typedef struct eq_seq {
    uint64_t id;
    char label[48];
    int is_exact;
    svc_replica rep; /* the service's computation, in-process */
    svc_replica ref; /* exact only, context-sharded: the unsharded exact sketch */
} eq_seq;

/* The coordinator is a CPU rank, so the job agreed on MPI, and stats says why (its rank 0
 * is named first whatever the workers run on). */
static void assert_data_path_mpi(skv_client *c) {
    char text[16384];
    skv_err err = {0};
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    if (!strstr(text, "\ndata path: mpi (rank 0 (the coordinator) "))
        fail_msg("stats lacks 'data path: mpi (rank 0 (the coordinator) ...)':\n%s", text);
}

static void equivalence(svc_fixture *f, int nworkers) {
    char name[64];
    snprintf(name, sizeof name, "equivalence_%d_workers", nworkers);
    synth_rng rng;
    tu_rng_for(&rng, name);
    const double t0 = svc_now();
    svc_job *job = &f->job[0];
    assert_int_equal(svc_job_start(job, nworkers, NULL, NULL), 0);
    skv_client *c = svc_connect(job);
    skv_err err = {0};
    const skv_model_shape sh = {3, 8, 2, 32};
    const uint32_t d = sh.head_dim, kv = sh.kv_heads, qh = sh.q_heads;
    const uint32_t shard_set[3] = {1, 2, 3};
    skv_config cfg[NPOL];
    const char *label[NPOL];
    make_policies(&rng, (int)d, cfg, label);

    enum { NSEQ = 3 * NPOL };
    eq_seq *seqs = calloc(NSEQ, sizeof *seqs);
    assert_non_null(seqs);
    for (int si = 0; si < 3; si++)
        for (int p = 0; p < NPOL; p++) {
            eq_seq *q = &seqs[si * NPOL + p];
            const uint32_t shards = shard_set[si], block = shards > 1 ? EQ_BLOCK : 0;
            snprintf(q->label, sizeof q->label, "%s/shards=%u", label[p], shards);
            SVC_OK(skv_client_create_sequence(c, &sh, &cfg[p], shards, block, &q->id, &err), &err);
            SVC_OK(svc_replica_init(&q->rep, &sh, &cfg[p], q->id, shards, block, &err), &err);
            q->is_exact = cfg[p].policy == SKV_POLICY_EXACT && shards > 1;
            if (q->is_exact)
                SVC_OK(svc_replica_init(&q->ref, &sh, &cfg[p], q->id, 1, 0, &err), &err);
        }
    /* prefill: each layer in three chunks of random sizes (not block-aligned) */
    for (int i = 0; i < NSEQ; i++)
        for (uint32_t l = 0; l < sh.layers; l++) {
            size_t done = 0;
            for (int ch = 0; ch < 3; ch++) {
                size_t n = ch == 2 ? EQ_PREFILL - done : tu_rand_range(&rng, 50, 250);
                float *K = rand_floats(&rng, n * kv * d), *V = rand_floats(&rng, n * kv * d);
                SVC_OK(skv_client_append(c, &sh, seqs[i].id, l, n, K, V, &err), &err);
                SVC_OK(svc_replica_append(&seqs[i].rep, l, n, K, V, &err), &err);
                if (seqs[i].is_exact)
                    SVC_OK(svc_replica_append(&seqs[i].ref, l, n, K, V, &err), &err);
                free(K);
                free(V);
                done += n;
            }
        }
    /* the subgen replicas really sample: fewer value slots / cluster samples than tokens */
    for (int i = 0; i < NSEQ; i++) {
        const skv_config *rc = skv_sketch_config(seqs[i].rep.sk[0]);
        if (rc->policy != SKV_POLICY_SUBGEN) continue;
        skv_stats s;
        skv_sketch_stats(seqs[i].rep.sk[0], &s);
        assert_true(s.tokens_held + (uint64_t)s.cluster_samples + (uint64_t)s.value_slots_filled <
                    s.tokens_seen);
        assert_true(s.merges > 0 || s.clusters == rc->max_clusters);
    }
    /* decode: every step, every layer, the sequences in random batches of 2 or 3 */
    int order[NSEQ];
    uint64_t ids[3];
    float *Q = tu_malloc(3 * qh * d * sizeof(float)), *K = tu_malloc(3 * kv * d * sizeof(float));
    float *V = tu_malloc(3 * kv * d * sizeof(float)), *out = tu_malloc(3 * qh * d * sizeof(float));
    float *want = tu_malloc(qh * d * sizeof(float)), *exact1 = tu_malloc(qh * d * sizeof(float));
    size_t nsteps = 0;
    double worst_exact = 0.0;
    for (int step = 0; step < EQ_STEPS; step++)
        for (uint32_t l = 0; l < sh.layers; l++) {
            for (int i = 0; i < NSEQ; i++) order[i] = i;
            for (int i = NSEQ - 1; i > 0; i--) {
                int j = (int)tu_rand_range(&rng, 0, (size_t)i), t = order[i];
                order[i] = order[j], order[j] = t;
            }
            for (int pos = 0; pos < NSEQ;) {
                const int rem = NSEQ - pos;
                const int B = rem <= 3 ? rem : rem == 4 ? 2 : 2 + (int)tu_rand_range(&rng, 0, 1);
                for (int b = 0; b < B; b++) ids[b] = seqs[order[pos + b]].id;
                synth_fill_normal(&rng, Q, (size_t)B * qh * d, 1.0f);
                synth_fill_normal(&rng, K, (size_t)B * kv * d, 1.0f);
                synth_fill_normal(&rng, V, (size_t)B * kv * d, 1.0f);
                SVC_OK(skv_client_step(c, &sh, l, (size_t)B, ids, Q, K, V, out, &err), &err);
                nsteps++;
                for (int b = 0; b < B; b++) {
                    eq_seq *q = &seqs[order[pos + b]];
                    const float *qb = Q + (size_t)b * qh * d, *kb = K + (size_t)b * kv * d;
                    const float *vb = V + (size_t)b * kv * d, *ob = out + (size_t)b * qh * d;
                    SVC_OK(svc_replica_step(&q->rep, l, qb, kb, vb, want, &err), &err);
                    char what[128];
                    snprintf(what, sizeof what, "%d workers, %s, step %d, layer %u", nworkers,
                             q->label, step, l);
                    svc_assert_bits_equal(ob, want, (size_t)qh * d, what);
                    if (!q->is_exact) continue;
                    SVC_OK(svc_replica_step(&q->ref, l, qb, kb, vb, exact1, &err), &err);
                    for (uint32_t h = 0; h < qh; h++) {
                        double e =
                            tu_rel_error_ff(ob + (size_t)h * d, exact1 + (size_t)h * d, (int)d);
                        if (e > worst_exact) worst_exact = e;
                        if (!(e <= 1e-6))
                            fail_msg("%s: context-sharded exact vs unsharded: rel error %.3e (q "
                                     "head %u)",
                                     what, e, h);
                    }
                }
                pos += B;
            }
        }
    /* the service counted every token; dropping everything frees every byte */
    for (int i = 0; i < NSEQ; i++)
        assert_int_equal(svc_stats_tokens_layer0(c, seqs[i].id), EQ_PREFILL + EQ_STEPS);
    uint64_t total = 0, nseq = 0;
    assert_data_path_mpi(c);
    svc_stats_numbers(c, &total, &nseq);
    assert_int_equal(nseq, NSEQ);
    assert_true(total > 0);
    for (int i = 0; i < NSEQ; i++) SVC_OK(skv_client_drop_sequence(c, seqs[i].id, &err), &err);
    svc_stats_numbers(c, &total, &nseq);
    assert_int_equal(nseq, 0);
    assert_int_equal(total, 0);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(job), 0);
    printf("# equivalence, %d worker(s): %zu step requests, 15 sequences, bit-identical; "
           "sharded exact worst rel err %.2e; %.2f s\n",
           nworkers, nsteps, worst_exact, svc_now() - t0);
    for (int i = 0; i < NSEQ; i++) {
        svc_replica_free(&seqs[i].rep);
        svc_replica_free(&seqs[i].ref);
    }
    free(seqs);
    free(Q), free(K), free(V), free(out), free(want), free(exact1);
}

static void test_service_equals_replica_1_worker(void **state) { equivalence(*state, 1); }
static void test_service_equals_replica_2_workers(void **state) { equivalence(*state, 2); }
static void test_service_equals_replica_3_workers(void **state) { equivalence(*state, 3); }

/* ---- 2. bad input -------------------------------------------------------------------------- */

#define BAD_WORKER_BUDGET (4u << 20)

typedef struct bad_state {
    svc_job job;
    skv_client *good; /* the well-behaved client */
    skv_client *bad;  /* a second libsubkv client for bad requests */
    skv_model_shape sh;
    uint64_t seq;
    svc_replica rep;
    synth_rng rng;
    uint32_t next_layer;
} bad_state;

static int bad_setup(void **state) {
    bad_state *s = calloc(1, sizeof *s);
    if (!s) return -1;
    tu_rng_for(&s->rng, "bad_input_group");
    const char *cargs[] = {"--max-frame", "1048576", NULL};
    char budget[32];
    snprintf(budget, sizeof budget, "%u", BAD_WORKER_BUDGET);
    const char *wargs[] = {"--budget", budget, NULL};
    if (svc_job_start(&s->job, 2, cargs, wargs) != 0) {
        free(s);
        return -1;
    }
    skv_err err = {0};
    s->sh = (skv_model_shape){2, 4, 2, 32};
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_SUBGEN, 32);
    cfg.sinks = 4, cfg.window = 16, cfg.samples = 4, cfg.budget_bytes = 8192;
    cfg.seed = synth_rng_u64(&s->rng) >> 1;
    if (skv_client_connect(s->job.addr, NULL, &s->good, &err) != SKV_OK ||
        skv_client_connect(s->job.addr, NULL, &s->bad, &err) != SKV_OK ||
        skv_client_create_sequence(s->good, &s->sh, &cfg, 2, 64, &s->seq, &err) != SKV_OK ||
        svc_replica_init(&s->rep, &s->sh, &cfg, s->seq, 2, 64, &err) != SKV_OK) {
        printf("bad_setup: %s\n", err.msg);
        svc_job_kill(&s->job);
        return -1;
    }
    const size_t n = 300, cnt = n * s->sh.kv_heads * s->sh.head_dim;
    for (uint32_t l = 0; l < s->sh.layers; l++) {
        float *K = rand_floats(&s->rng, cnt), *V = rand_floats(&s->rng, cnt);
        subkv_status st = skv_client_append(s->good, &s->sh, s->seq, l, n, K, V, &err);
        if (st == SKV_OK) st = svc_replica_append(&s->rep, l, n, K, V, &err);
        free(K);
        free(V);
        if (st != SKV_OK) {
            printf("bad_setup: prefill: %s\n", err.msg);
            svc_job_kill(&s->job);
            return -1;
        }
    }
    *state = s;
    return 0;
}

static int bad_teardown(void **state) {
    bad_state *s = *state;
    if (!s) return 0;
    skv_client_close(s->good);
    skv_client_close(s->bad);
    int code = svc_job_stop(&s->job);
    svc_job_cleanup(&s->job);
    svc_replica_free(&s->rep);
    free(s);
    if (code != 0) printf("bad_teardown: job exit code %d after shutdown (expected 0)\n", code);
    return code == 0 ? 0 : -1;
}

/* One step of the well-behaved client's sequence; must equal its replica bit for bit. */
static void good_step(bad_state *s, const char *when) {
    const skv_model_shape *sh = &s->sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    const uint32_t l = s->next_layer++ % sh->layers;
    float *Q = rand_floats(&s->rng, qn), *K = rand_floats(&s->rng, kn),
          *V = rand_floats(&s->rng, kn);
    float *out = tu_malloc(qn * sizeof(float)), *want = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    SVC_OK(skv_client_step(s->good, sh, l, 1, &s->seq, Q, K, V, out, &err), &err);
    SVC_OK(svc_replica_step(&s->rep, l, Q, K, V, want, &err), &err);
    svc_assert_bits_equal(out, want, qn, when);
    free(Q), free(K), free(V), free(out), free(want);
}

/* The job is still running and a fresh client gets stats. */
static void assert_alive(bad_state *s) {
    if (svc_job_exited(&s->job)) {
        svc_job_print_log(&s->job, "the job died");
        fail_msg("the subkv job exited (status 0x%x)", s->job.status);
    }
    skv_client *c = svc_connect(&s->job);
    uint64_t total, nseq;
    svc_stats_numbers(c, &total, &nseq);
    assert_true(nseq >= 1);
    skv_client_close(c);
}

static void before(bad_state *s) { good_step(s, "good client before the bad input"); }
static void after(bad_state *s) {
    good_step(s, "good client after the bad input");
    assert_alive(s);
}

static void test_bad_truncated_frame(void **state) {
    bad_state *s = *state;
    before(s);
    int fd = svc_raw_connect(&s->job);
    uint8_t buf[44];
    skv_frame_header(buf, 100);
    for (int i = 4; i < 44; i++) buf[i] = (uint8_t)synth_rng_u64(&s->rng);
    assert_int_equal(svc_raw_send(fd, buf, sizeof buf), 0);
    shutdown(fd, SHUT_WR);           /* the rest never comes */
    svc_assert_closed_by_server(fd); /* no reply to half a frame, just the close */
    close(fd);
    after(s);
}

static void test_bad_frame_over_size_limit(void **state) {
    bad_state *s = *state;
    before(s);
    int fd = svc_raw_connect(&s->job);
    uint8_t hdr[4];
    skv_frame_header(hdr, 2u << 20); /* the job runs with --max-frame 1048576 */
    assert_int_equal(svc_raw_send(fd, hdr, 4), 0);
    Subkv__Reply *rep = NULL;
    assert_int_equal(svc_raw_reply(fd, &rep), 0);
    assert_int_equal(rep->status, SKV_ERR_PROTOCOL);
    assert_non_null(strstr(rep->message, "exceeds"));
    subkv__reply__free_unpacked(rep, NULL);
    svc_assert_closed_by_server(fd);
    close(fd);
    after(s);
}

static void test_bad_garbage_bytes(void **state) {
    bad_state *s = *state;
    before(s);
    for (int round = 0; round < 4; round++) {
        int fd = svc_raw_connect(&s->job);
        const uint32_t len = (uint32_t)tu_rand_range(&s->rng, 64, 2048);
        uint8_t *buf = tu_malloc(4 + len);
        skv_frame_header(buf, len);
        for (uint32_t i = 0; i < len; i++) buf[4 + i] = (uint8_t)synth_rng_u64(&s->rng);
        assert_int_equal(svc_raw_send(fd, buf, 4 + len), 0);
        free(buf);
        Subkv__Reply *rep = NULL;
        int r = svc_raw_reply(fd, &rep);
        assert_true(r == 0 || r == 1);
        if (r == 0) {
            assert_int_not_equal(rep->status, SKV_OK);
            subkv__reply__free_unpacked(rep, NULL);
        }
        close(fd);
    }
    after(s);
}

static void test_bad_wrong_head_dim(void **state) {
    bad_state *s = *state;
    before(s);
    skv_model_shape wrong = s->sh;
    wrong.head_dim++;
    const size_t qn = (size_t)wrong.q_heads * wrong.head_dim,
                 kn = (size_t)wrong.kv_heads * wrong.head_dim;
    float *Q = rand_floats(&s->rng, qn), *K = rand_floats(&s->rng, 8 * kn);
    float *V = rand_floats(&s->rng, 8 * kn), *out = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    SVC_EXPECT(SKV_ERR_SHAPE, skv_client_step(s->bad, &wrong, 0, 1, &s->seq, Q, K, V, out, &err),
               &err);
    SVC_EXPECT(SKV_ERR_SHAPE, skv_client_attend(s->bad, &wrong, 1, 1, &s->seq, Q, out, &err), &err);
    SVC_EXPECT(SKV_ERR_SHAPE, skv_client_append(s->bad, &wrong, s->seq, 0, 8, K, V, &err), &err);
    free(Q), free(K), free(V), free(out);
    after(s);
}

static void test_bad_unknown_sequence(void **state) {
    bad_state *s = *state;
    before(s);
    const skv_model_shape *sh = &s->sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Q = rand_floats(&s->rng, 2 * qn), *K = rand_floats(&s->rng, 2 * kn);
    float *V = rand_floats(&s->rng, 2 * kn), *out = tu_malloc(2 * qn * sizeof(float));
    skv_err err = {0};
    uint64_t unknown = s->seq + 1000000 + tu_rand_range(&s->rng, 0, 1000);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_step(s->bad, sh, 0, 1, &unknown, Q, K, V, out, &err),
               &err);
    /* a batch with the good sequence and an unknown one fails whole: the good one untouched */
    uint64_t ids[2] = {s->seq, unknown};
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_step(s->bad, sh, 1, 2, ids, Q, K, V, out, &err), &err);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_attend(s->bad, sh, 0, 1, &unknown, Q, out, &err),
               &err);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_append(s->bad, sh, unknown, 0, 2, K, V, &err), &err);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_drop_sequence(s->bad, unknown, &err), &err);
    free(Q), free(K), free(V), free(out);
    after(s);
}

static void test_bad_nonfinite_inputs(void **state) {
    bad_state *s = *state;
    before(s);
    const skv_model_shape *sh = &s->sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Q = rand_floats(&s->rng, qn), *K = rand_floats(&s->rng, kn);
    float *V = rand_floats(&s->rng, kn), *out = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    const size_t iq = tu_rand_range(&s->rng, 0, qn - 1), ik = tu_rand_range(&s->rng, 0, kn - 1);
    Q[iq] = NAN;
    SVC_EXPECT(SKV_ERR_NONFINITE, skv_client_step(s->bad, sh, 0, 1, &s->seq, Q, K, V, out, &err),
               &err);
    Q[iq] = 1.0f;
    V[ik] = INFINITY;
    SVC_EXPECT(SKV_ERR_NONFINITE, skv_client_step(s->bad, sh, 1, 1, &s->seq, Q, K, V, out, &err),
               &err);
    V[ik] = 1.0f;
    K[ik] = -INFINITY;
    SVC_EXPECT(SKV_ERR_NONFINITE, skv_client_append(s->bad, sh, s->seq, 0, 1, K, V, &err), &err);
    free(Q), free(K), free(V), free(out);
    after(s);
}

static void test_bad_step_on_dropped_sequence(void **state) {
    bad_state *s = *state;
    before(s);
    const skv_model_shape *sh = &s->sh;
    skv_err err = {0};
    uint64_t total0, nseq0, total1, nseq1, id;
    svc_stats_numbers(s->bad, &total0, &nseq0);
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_EXACT, (int)sh->head_dim);
    /* the workers have a budget: an unbounded exact cache is refused (it cannot reserve) */
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_create_sequence(s->bad, sh, &cfg, 1, 0, &id, &err), &err);
    cfg.max_tokens = 64;
    SVC_OK(skv_client_create_sequence(s->bad, sh, &cfg, 1, 0, &id, &err), &err);
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Q = rand_floats(&s->rng, qn), *K = rand_floats(&s->rng, 40 * kn);
    float *V = rand_floats(&s->rng, 40 * kn), *out = tu_malloc(qn * sizeof(float));
    SVC_OK(skv_client_append(s->bad, sh, id, 0, 40, K, V, &err), &err);
    SVC_OK(skv_client_step(s->bad, sh, 0, 1, &id, Q, K, V, out, &err), &err);
    SVC_OK(skv_client_drop_sequence(s->bad, id, &err), &err);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_step(s->bad, sh, 0, 1, &id, Q, K, V, out, &err), &err);
    SVC_EXPECT(SKV_ERR_NOT_FOUND, skv_client_drop_sequence(s->bad, id, &err), &err);
    svc_stats_numbers(s->bad, &total1, &nseq1);
    assert_int_equal(total1, total0); /* the drop freed every sketch of it */
    assert_int_equal(nseq1, nseq0);
    free(Q), free(K), free(V), free(out);
    after(s);
}

/* A packed step request for the good sequence (layer 0), framed; caller frees. */
static uint8_t *good_step_frame(bad_state *s, const float *Q, const float *K, const float *V,
                                size_t *len) {
    const skv_model_shape *sh = &s->sh;
    uint32_t qs[3] = {1, sh->q_heads, sh->head_dim}, ks[3] = {1, sh->kv_heads, sh->head_dim};
    Subkv__Tensor qt, kt, vt;
    skv_wire_tensor_view(&qt, qs, 3, Q);
    skv_wire_tensor_view(&kt, ks, 3, K);
    skv_wire_tensor_view(&vt, ks, 3, V);
    Subkv__Step st = SUBKV__STEP__INIT;
    st.layer = 0, st.n_seq_ids = 1, st.seq_ids = &s->seq, st.q = &qt, st.k = &kt, st.v = &vt;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.id = 7, req.body_case = SUBKV__REQUEST__BODY_STEP, req.step = &st;
    const size_t n = subkv__request__get_packed_size(&req);
    uint8_t *buf = tu_malloc(4 + n);
    skv_frame_header(buf, (uint32_t)n);
    subkv__request__pack(&req, buf + 4);
    *len = 4 + n;
    return buf;
}

static void test_bad_client_disconnects_mid_request(void **state) {
    bad_state *s = *state;
    before(s);
    const skv_model_shape *sh = &s->sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *Q = rand_floats(&s->rng, qn), *K = rand_floats(&s->rng, kn),
          *V = rand_floats(&s->rng, kn);
    size_t len;
    uint8_t *frame = good_step_frame(s, Q, K, V, &len);
    /* half a valid step frame, then gone: nothing may happen to the sequence */
    int fd = svc_raw_connect(&s->job);
    assert_int_equal(svc_raw_send(fd, frame, len / 2), 0);
    shutdown(fd, SHUT_WR);
    svc_assert_closed_by_server(fd);
    close(fd);
    good_step(s, "good client after a half-sent step of its sequence");
    /* the whole frame, then gone before the reply: the step happens, the reply has nowhere to
     * go (no SIGPIPE may kill the coordinator); wait until stats shows it, replay it here */
    const long long tok0 = svc_stats_tokens_layer0(s->good, s->seq);
    fd = svc_raw_connect(&s->job);
    assert_int_equal(svc_raw_send(fd, frame, len), 0);
    close(fd);
    const double t_end = svc_now() + 10.0;
    while (svc_stats_tokens_layer0(s->good, s->seq) == tok0 && svc_now() < t_end) svc_sleep_ms(5);
    assert_int_equal(svc_stats_tokens_layer0(s->good, s->seq), tok0 + 1);
    float *want = tu_malloc(qn * sizeof(float));
    skv_err err = {0};
    SVC_OK(svc_replica_step(&s->rep, 0, Q, K, V, want, &err), &err);
    free(frame), free(Q), free(K), free(V), free(want);
    after(s);
}

/*
 * An exact cap hit on one context shard is refused whole, before any worker hears of it:
 * the sequence stays usable, and a batch that also holds another client's sequence
 * leaves that sequence untouched (its next step still equals its replica).
 */
static void test_bad_step_past_exact_cap_changes_nothing(void **state) {
    bad_state *s = *state;
    before(s);
    const skv_model_shape *sh = &s->sh;
    skv_err err = {0};
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_EXACT, (int)sh->head_dim);
    cfg.max_tokens = 10;
    uint64_t id;
    SVC_OK(skv_client_create_sequence(s->bad, sh, &cfg, 2, 8, &id, &err), &err);
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    float *K = rand_floats(&s->rng, 18 * kn), *V = rand_floats(&s->rng, 18 * kn);
    /* tokens 0-7 and 16-17 land on shard 0 (10, the cap), 8-15 on shard 1 */
    SVC_OK(skv_client_append(s->bad, sh, id, 0, 18, K, V, &err), &err);
    float *Q2 = rand_floats(&s->rng, 2 * qn), *K2 = rand_floats(&s->rng, 2 * kn),
          *V2 = rand_floats(&s->rng, 2 * kn), *out = tu_malloc(2 * qn * sizeof(float));
    /* token 18 goes to shard 0: over the cap */
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_step(s->bad, sh, 0, 1, &id, Q2, K2, V2, out, &err), &err);
    const uint64_t batch[2] = {s->seq, id};
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_step(s->bad, sh, 0, 2, batch, Q2, K2, V2, out, &err),
               &err);
    /* the capped sequence still answers, and its other layer still takes tokens */
    SVC_OK(skv_client_attend(s->bad, sh, 0, 1, &id, Q2, out, &err), &err);
    SVC_OK(skv_client_step(s->bad, sh, 1, 1, &id, Q2, K2, V2, out, &err), &err);
    assert_int_equal(svc_stats_tokens_layer0(s->bad, id), 18);
    SVC_OK(skv_client_drop_sequence(s->bad, id, &err), &err);
    free(K), free(V), free(Q2), free(K2), free(V2), free(out);
    after(s); /* the good sequence was in the refused batch: it must not have moved */
}

static void test_bad_create_past_worker_budget(void **state) {
    bad_state *s = *state;
    before(s);
    skv_err err = {0};
    uint64_t total0, nseq0, total1, nseq1, id = 0;
    svc_stats_numbers(s->bad, &total0, &nseq0);
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_SUBGEN, 32);
    cfg.seed = synth_rng_u64(&s->rng) >> 1;
    /* every worker over its budget: 3 sketches of 3 MiB each per worker, budget 4 MiB */
    cfg.budget_bytes = 3u << 20;
    const skv_model_shape big = {3, 2, 2, 32};
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_create_sequence(s->bad, &big, &cfg, 1, 0, &id, &err),
               &err);
    svc_stats_numbers(s->bad, &total1, &nseq1);
    assert_int_equal(total1, total0);
    assert_int_equal(nseq1, nseq0);
    /* one worker fits its part (one 2.5 MiB sketch), the other does not (two): the one that
     * created its sketch must roll back */
    cfg.budget_bytes = (5u << 20) / 2;
    const skv_model_shape half = {3, 1, 1, 32};
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_create_sequence(s->bad, &half, &cfg, 1, 0, &id, &err),
               &err);
    svc_stats_numbers(s->bad, &total1, &nseq1);
    assert_int_equal(total1, total0);
    assert_int_equal(nseq1, nseq0);
    /* context shards spread the same sketches over both workers: now it fits */
    cfg.budget_bytes = 1u << 20;
    const skv_model_shape fits = {1, 1, 1, 32};
    SVC_OK(skv_client_create_sequence(s->bad, &fits, &cfg, 2, 64, &id, &err), &err);
    svc_stats_numbers(s->bad, &total1, &nseq1);
    assert_true(total1 > total0 + (1u << 20));
    SVC_OK(skv_client_drop_sequence(s->bad, id, &err), &err);
    svc_stats_numbers(s->bad, &total1, &nseq1);
    assert_int_equal(total1, total0);
    assert_int_equal(nseq1, nseq0);
    after(s);
}

/* ---- 3. checkpoint / restore --------------------------------------------------------------- */

enum { CK_SEQS = 4, CK_STEPS = 8 };

typedef struct ck_run {
    skv_model_shape sh;
    uint64_t ids[CK_SEQS];
    float *Q, *K,
        *V;     /* [CK_STEPS][layers][CK_SEQS][...] inputs of the steps after the checkpoint */
    float *out; /* outputs of job A */
} ck_run;

static void ck_steps(skv_client *c, const ck_run *r, float *out) {
    const skv_model_shape *sh = &r->sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    skv_err err = {0};
    for (int st = 0; st < CK_STEPS; st++)
        for (uint32_t l = 0; l < sh->layers; l++) {
            const size_t at = (size_t)st * sh->layers + l;
            SVC_OK(skv_client_step(c, sh, l, CK_SEQS, r->ids, r->Q + at * CK_SEQS * qn,
                                   r->K + at * CK_SEQS * kn, r->V + at * CK_SEQS * kn,
                                   out + at * CK_SEQS * qn, &err),
                   &err);
        }
}

static void test_checkpoint_restore_continues_bit_identical(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/subkv-test-ckpt-%d", (int)getpid());
    svc_rm_rf(dir);
    ck_run r = {.sh = {2, 4, 2, 32}};
    const skv_model_shape *sh = &r.sh;
    const size_t qn = (size_t)sh->q_heads * sh->head_dim, kn = (size_t)sh->kv_heads * sh->head_dim;
    const size_t nsteps = (size_t)CK_STEPS * sh->layers * CK_SEQS;
    r.Q = rand_floats(&rng, nsteps * qn);
    r.K = rand_floats(&rng, nsteps * kn);
    r.V = rand_floats(&rng, nsteps * kn);
    r.out = tu_malloc(nsteps * qn * sizeof(float));
    float *out_b = tu_malloc(nsteps * qn * sizeof(float));
    skv_config cfg[NPOL];
    const char *label[NPOL];
    make_policies(&rng, 32, cfg, label);
    const int pick[CK_SEQS] = {1, 4, 2, 5}; /* subgen-l2, h2o, subgen-cluster, refreshkv */
    const uint32_t shards[CK_SEQS] = {2, 1, 3, 2};
    skv_err err = {0};

    /* job A: create, prefill, steps, checkpoint, steps, checkpoint again, K recorded steps */
    svc_job *a = &f->job[0];
    assert_int_equal(svc_job_start(a, 2, NULL, NULL), 0);
    skv_client *c = svc_connect(a);
    for (int i = 0; i < CK_SEQS; i++)
        SVC_OK(skv_client_create_sequence(c, sh, &cfg[pick[i]], shards[i], 64, &r.ids[i], &err),
               &err);
    for (int i = 0; i < CK_SEQS; i++)
        for (uint32_t l = 0; l < sh->layers; l++) {
            float *K = rand_floats(&rng, 250 * kn), *V = rand_floats(&rng, 250 * kn);
            SVC_OK(skv_client_append(c, sh, r.ids[i], l, 250, K, V, &err), &err);
            free(K), free(V);
        }
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    float *scratch = tu_malloc(nsteps * qn * sizeof(float));
    ck_run warm = r; /* different inputs for the steps between the two checkpoints */
    warm.Q = rand_floats(&rng, nsteps * qn);
    warm.K = rand_floats(&rng, nsteps * kn);
    warm.V = rand_floats(&rng, nsteps * kn);
    ck_steps(c, &warm, scratch);
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err); /* the restore must take this one */
    uint64_t bytes_a, nseq_a, bytes_b, nseq_b;
    svc_stats_numbers(c, &bytes_a, &nseq_a);
    ck_steps(c, &r, r.out);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(a), 0);

    /* job B: restored; the same steps give the same bits */
    const char *restore[] = {"--restore", dir, NULL};
    svc_job *b = &f->job[1];
    assert_int_equal(svc_job_start(b, 2, restore, NULL), 0);
    c = svc_connect(b);
    svc_stats_numbers(c, &bytes_b, &nseq_b);
    assert_int_equal(nseq_b, nseq_a);
    assert_int_equal(bytes_b, bytes_a);
    ck_steps(c, &r, out_b);
    svc_assert_bits_equal(out_b, r.out, nsteps * qn, "restored job vs original job");
    /* ids continue after the restored ones */
    uint64_t id;
    SVC_OK(skv_client_create_sequence(c, sh, &cfg[0], 1, 0, &id, &err), &err);
    assert_true(id > r.ids[CK_SEQS - 1]);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(b), 0);

    /* job C: a 3-worker job must refuse the 2-worker checkpoint and exit non-zero */
    svc_job *j3 = &f->job[2];
    assert_int_equal(svc_job_start_ex(j3, 3, restore, NULL, 0), 0);
    assert_int_equal(svc_job_wait(j3, SVC_STOP_TIMEOUT_S), 0);
    char tail[4096];
    svc_job_log_tail(j3, tail, sizeof tail);
    if (svc_job_exit_code(j3) == 0 || !strstr(tail, "restore") || !strstr(tail, "2-worker")) {
        svc_job_print_log(j3, "restore into a 3-worker job");
        fail_msg("a 3-worker job restoring a 2-worker checkpoint: exit code %d (want non-zero "
                 "and a message naming the worker counts)",
                 svc_job_exit_code(j3));
    }

    svc_rm_rf(dir);
    free(r.Q), free(r.K), free(r.V), free(r.out), free(out_b), free(scratch);
    free(warm.Q), free(warm.K), free(warm.V);
}

static void test_restore_without_checkpoint_fails(void **state) {
    svc_fixture *f = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/subkv-test-nockpt-%d", (int)getpid());
    svc_rm_rf(dir);
    const char *restore[] = {"--restore", dir, NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start_ex(j, 1, restore, NULL, 0), 0);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    if (svc_job_exit_code(j) == 0) {
        svc_job_print_log(j, "restore from a missing checkpoint");
        fail_msg("restoring from %s (no checkpoint) exited 0", dir);
    }
}

/* ---- 4. SIGTERM ---------------------------------------------------------------------------- */

static void test_sigterm_to_coordinator_stops_job_cleanly(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, NULL, NULL), 0);
    skv_client *c = svc_connect(j);
    skv_err err = {0};
    const skv_model_shape sh = {1, 2, 1, 16};
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_EXACT, 16);
    uint64_t id;
    SVC_OK(skv_client_create_sequence(c, &sh, &cfg, 1, 0, &id, &err), &err);
    float *K = rand_floats(&rng, 16), *V = rand_floats(&rng, 16), *Q = rand_floats(&rng, 32);
    float out[32];
    SVC_OK(skv_client_step(c, &sh, 0, 1, &id, Q, K, V, out, &err), &err);
    pid_t coord = svc_job_rank_pid(j, "subkv-coordinat");
    if (coord <= 0) {
        svc_job_kill(j);
        fail_msg("cannot find the coordinator among mpirun's children");
    }
    assert_int_equal(kill(coord, SIGTERM), 0);
    if (svc_job_wait(j, SVC_STOP_TIMEOUT_S) != 0) fail_msg("the job did not stop after SIGTERM");
    const int code = svc_job_exit_code(j);
    if (code != 0) svc_job_print_log(j, "after SIGTERM");
    assert_int_equal(code, 0);
    char tail[4096];
    assert_non_null(strstr(svc_job_log_tail(j, tail, sizeof tail), "subkv-coordinator: stopped"));
    assert_int_equal(access(j->sock, F_OK), -1); /* the socket file is gone */
    /* the open connection is closed: the next call fails cleanly */
    assert_int_equal(skv_client_step(c, &sh, 0, 1, &id, Q, K, V, out, &err), SKV_ERR_IO);
    skv_client_close(c);
    free(K), free(V), free(Q);
}

/* ---- 4. the GPU attend inside the service ------------------------------------------------ */

enum { GPU_NS = 6 };

/*
 * Workers with --backend cuda (2 workers sharing one GPU) answer like the CPU replica within
 * 1e-3 relative (f16/bf16 storage, float32 GPU math): exact with context shards (only the new
 * tail is uploaded each step), sinkwin (re-uploaded each step), subgen l2 and cluster,
 * whose state lives on the GPU (appended there), and refreshkv (full steps on the worker's
 * CPU, partial steps on the GPU over its re-uploaded partial cache; with full_mem = device
 * its full steps too, over the device mirror of its full store). A checkpoint then writes
 * the device state (pulled into the CPU shadows): a job restored from it, again on the GPU,
 * goes on matching the replica. Skipped without a GPU, saying why.
 */
static void test_service_gpu_attend_matches_replica(void **state) {
    svc_fixture *fx = *state;
    svc_need_gpus(1);
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *wargs[] = {"--backend", "cuda", NULL};
    assert_int_equal(svc_job_start(&fx->job[0], 2, NULL, wargs), 0);
    skv_client *c = svc_connect(&fx->job[0]);
    const skv_model_shape sh = {2, 8, 2, 64};
    skv_config cfg[GPU_NS];
    const skv_policy_id pol[GPU_NS] = {SKV_POLICY_EXACT,     SKV_POLICY_SUBGEN,
                                       SKV_POLICY_SINKWIN,   SKV_POLICY_SUBGEN,
                                       SKV_POLICY_REFRESHKV, SKV_POLICY_REFRESHKV};
    const uint32_t shards[GPU_NS] = {2, 1, 1, 2, 1, 1};
    svc_replica rep[GPU_NS];
    uint64_t ids[GPU_NS];
    skv_err err = {0};
    for (int i = 0; i < GPU_NS; i++) {
        skv_config_default(&cfg[i], pol[i], 64);
        cfg[i].dtype = i >= 2 ? SKV_DTYPE_BF16 : SKV_DTYPE_F16;
        cfg[i].values = i == 3 ? SKV_VALUES_CLUSTER : SKV_VALUES_L2;
        cfg[i].seed = synth_rng_u64(&rng) >> 1;
        if (pol[i] != SKV_POLICY_EXACT) cfg[i].budget_bytes = 48 << 10;
        if (pol[i] == SKV_POLICY_REFRESHKV) cfg[i].stride = 4; /* full steps 1, 5, 9 */
        if (i == 5) cfg[i].full_mem = SKV_FULL_MEM_DEVICE;     /* full steps on the GPU too */
        SVC_OK(skv_client_create_sequence(c, &sh, &cfg[i], shards[i], 64, &ids[i], &err), &err);
        SVC_OK(svc_replica_init(&rep[i], &sh, &cfg[i], ids[i], shards[i], 64, &err), &err);
    }
    const char *label[GPU_NS];
    for (int i = 0; i < GPU_NS; i++) label[i] = skv_policy_name(pol[i]);
    svc_prefill_both(c, &sh, GPU_NS, ids, rep, &rng, 700);
    double worst =
        svc_steps_vs_replicas(c, &sh, GPU_NS, ids, rep, label, &rng, 12, 2.0f, 1e-3, "gpu service");
    assert_data_path_mpi(c); /* GPU workers, but a CPU coordinator: NCCL cannot include it */
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/subkv-test-gpuckpt-%d", (int)getpid());
    svc_rm_rf(dir);
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(&fx->job[0]), 0);
    /* a job restored from the checkpoint, on the GPU, goes on where the replicas are */
    const char *restore[] = {"--restore", dir, NULL};
    assert_int_equal(svc_job_start(&fx->job[1], 2, restore, wargs), 0);
    c = svc_connect(&fx->job[1]);
    worst = fmax(worst, svc_steps_vs_replicas(c, &sh, GPU_NS, ids, rep, label, &rng, 3, 2.0f, 1e-3,
                                              "restored gpu service"));
    skv_client_close(c);
    assert_int_equal(svc_job_stop(&fx->job[1]), 0);
    for (int i = 0; i < GPU_NS; i++) svc_replica_free(&rep[i]);
    printf("# gpu service: worst relative error vs the CPU replica %.2e (restored job too)\n",
           worst);
    svc_rm_rf(dir);
}

int main(void) {
    tu_suite_begin("test_service");
    const struct CMUnitTest equivalence_tests[] = {
        cmocka_unit_test_setup_teardown(test_service_equals_replica_1_worker, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_service_equals_replica_2_workers, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_service_equals_replica_3_workers, svc_fixture_setup,
                                        svc_fixture_teardown),
    };
    const struct CMUnitTest bad_tests[] = {
        cmocka_unit_test(test_bad_truncated_frame),
        cmocka_unit_test(test_bad_frame_over_size_limit),
        cmocka_unit_test(test_bad_garbage_bytes),
        cmocka_unit_test(test_bad_wrong_head_dim),
        cmocka_unit_test(test_bad_unknown_sequence),
        cmocka_unit_test(test_bad_nonfinite_inputs),
        cmocka_unit_test(test_bad_step_on_dropped_sequence),
        cmocka_unit_test(test_bad_client_disconnects_mid_request),
        cmocka_unit_test(test_bad_create_past_worker_budget),
        cmocka_unit_test(test_bad_step_past_exact_cap_changes_nothing),
    };
    const struct CMUnitTest lifecycle_tests[] = {
        cmocka_unit_test_setup_teardown(test_checkpoint_restore_continues_bit_identical,
                                        svc_fixture_setup, svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_restore_without_checkpoint_fails, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_to_coordinator_stops_job_cleanly,
                                        svc_fixture_setup, svc_fixture_teardown),
    };
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test_setup_teardown(test_service_gpu_attend_matches_replica, svc_fixture_setup,
                                        svc_fixture_teardown),
    };
    int failed = 0;
    failed += cmocka_run_group_tests_name("service_equivalence", equivalence_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("service_gpu", gpu_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("service_bad_input", bad_tests, bad_setup, bad_teardown);
    failed += cmocka_run_group_tests_name("service_lifecycle", lifecycle_tests, NULL, NULL);
    return failed ? 1 : 0;
}
