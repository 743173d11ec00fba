/*
 * test_service_local.c — the coordinator's --local-worker (rank 0 owns a shard, handled
 * in-process) and --data-path (issue 8):
 *
 *  1. the shard map over ranks 0..N: every sketch on one owner in range, owners balanced,
 *     a head's context shards on distinct owners while shards <= owners, and the map
 *     without the local worker unchanged (pinned);
 *  2. option parsing: bad --data-path / --local-backend / --local-budget values and local
 *     options without --local-worker exit 2 with a message; --help documents them;
 *  3. real jobs (coordinator + local worker + 0..3 workers, CPU backend; 0: the coordinator
 *     alone, embedded mode's shape): head and context
 *     sharding, every step bit for bit the in-process replica's; stats lists worker 0
 *     holding exactly the sketches the shard map gives rank 0 and the path; on the MPI path
 *     and on --data-path mpi-xfer (the NCCL path's transfer protocol over MPI: its
 *     bookkeeping without GPUs), with and without the local worker; a stopped worker on
 *     that path is lost at the deadline, not waited for;
 *  4. the local worker's budget refuses a create, rolled back on every rank;
 *  5. checkpoint/restore with the local worker continues bit for bit (worker-0.skv written),
 *     and a job without --local-worker refuses that checkpoint;
 *  6. GPU (skipped without 2 GPUs, saying so): coordinator + local worker on GPU 0 and one
 *     worker per further GPU (up to 8) agree on NCCL; the outputs match the CPU replica
 *     (1e-3), a --data-path mpi job's bit for bit, and one GPU's (the coordinator alone) to
 *     1e-5 (bit-identical or not is printed).
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
#include "subkv_client.h"
#include "svc_check.h"
#include "svc_harness.h"
#include "svc_replica.h"
#include "svc_seqs.h"

/* ---- 1. shard map ---------------------------------------------------------------------- */

static void test_shard_map_without_local_worker_unchanged(void **state) {
    (void)state;
    /* the pinned rule: 1 + (((l * kv + h) * shards + r) + seq) mod nworkers */
    assert_int_equal(skv_shard_owner(3, 5, 0, 0, 2, 0, 1), 1 + (0 + 5) % 3);
    assert_int_equal(skv_shard_owner(4, 7, 2, 1, 4, 2, 3), 1 + (((2 * 4 + 1) * 3 + 2) + 7) % 4);
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    for (int i = 0; i < 2000; i++) {
        const int nw = 1 + (int)tu_rand_range(&rng, 0, 7);
        const uint32_t kv = 1 + (uint32_t)tu_rand_range(&rng, 0, 7),
                       sh = 1 + (uint32_t)tu_rand_range(&rng, 0, 5);
        const uint64_t seq = synth_rng_u64(&rng) >> 20;
        const uint32_t l = (uint32_t)tu_rand_range(&rng, 0, 31),
                       h = (uint32_t)tu_rand_range(&rng, 0, kv - 1),
                       r = (uint32_t)tu_rand_range(&rng, 0, sh - 1);
        assert_int_equal(skv_shard_owner_of(1, nw, seq, l, h, kv, r, sh),
                         skv_shard_owner(nw, seq, l, h, kv, r, sh));
    }
}

static void test_shard_map_with_local_worker(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    for (int nw = 0; nw <= 7; nw++) {
        const int owners = nw + 1; /* ranks 0..nw */
        for (int trial = 0; trial < 40; trial++) {
            const uint32_t layers = 1 + (uint32_t)tu_rand_range(&rng, 0, 5);
            const uint32_t kv = 1 + (uint32_t)tu_rand_range(&rng, 0, 7);
            const uint32_t shards = 1 + (uint32_t)tu_rand_range(&rng, 0, 5);
            const uint64_t seq = 1 + (synth_rng_u64(&rng) >> 40);
            int count[8] = {0};
            for (uint32_t l = 0; l < layers; l++)
                for (uint32_t h = 0; h < kv; h++) {
                    int seen[8] = {0};
                    for (uint32_t r = 0; r < shards; r++) {
                        const int o = skv_shard_owner_of(0, owners, seq, l, h, kv, r, shards);
                        assert_true(o >= 0 && o <= nw);
                        count[o]++;
                        /* context shards of one head on distinct owners when they fit */
                        if ((int)shards <= owners) assert_int_equal(seen[o], 0);
                        seen[o] = 1;
                    }
                }
            /* consecutive sketches dealt round-robin: owners differ by at most one */
            int lo = count[0], hi = count[0], total = 0;
            for (int o = 0; o < owners; o++) {
                lo = count[o] < lo ? count[o] : lo;
                hi = count[o] > hi ? count[o] : hi;
                total += count[o];
            }
            assert_int_equal(total, (int)(layers * kv * shards));
            assert_true(hi - lo <= 1);
            if (total >= owners) assert_true(lo >= 1); /* rank 0 gets its share too */
        }
    }
}

/* ---- 2. options ------------------------------------------------------------------------- */

/* Run subkv-coordinator with args (no mpirun: options are parsed before MPI starts); its
 * exit code, and its output in out. */
static int run_coordinator(const char *args, char *out, size_t n) {
    char bdir[PATH_MAX], cmd[PATH_MAX + 512];
    svc_build_dir(bdir, sizeof bdir);
    snprintf(cmd, sizeof cmd, "%s/subkv-coordinator %s 2>&1", bdir, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_options(void **state) {
    (void)state;
    char out[8192];
    assert_int_equal(run_coordinator("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "--local-worker"));
    assert_non_null(strstr(out, "--local-backend"));
    assert_non_null(strstr(out, "--data-path"));
    static const struct {
        const char *args, *says;
    } bad[] = {
        {"--data-path nccl", "--data-path must be auto, mpi or mpi-xfer"},
        {"--data-path", "unknown or incomplete option '--data-path'"},
        {"--local-worker --local-backend gpu", "--local-backend must be auto, cpu or cuda"},
        {"--local-worker --local-budget lots", "--local-budget wants bytes"},
        {"--local-backend cpu", "need --local-worker"},
        {"--local-budget 1M", "need --local-worker"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int code = run_coordinator(bad[i].args, out, sizeof out);
        if (code != 2 || !strstr(out, bad[i].says))
            fail_msg("subkv-coordinator %s: exit %d, output '%s' (want 2 and '%s')", bad[i].args,
                     code, out, bad[i].says);
    }
}

/* ---- 3. equivalence --------------------------------------------------------------------- */

/* Sketches the shard map gives rank 0 (the local worker) for the sequences of s. */
static uint64_t rank0_sketches(const svc_seqs *s, int nworkers) {
    uint64_t n = 0;
    for (int i = 0; i < s->n; i++)
        for (uint32_t l = 0; l < s->sh.layers; l++)
            for (uint32_t h = 0; h < s->sh.kv_heads; h++)
                for (uint32_t r = 0; r < s->shards[i]; r++)
                    n += skv_shard_owner_of(0, nworkers + 1, s->ids[i], l, h, s->sh.kv_heads, r,
                                            s->shards[i]) == 0;
    return n;
}

/* The stats text names nworkers + 1 workers, the local rule, and worker 0 with `sketches`
 * sketches; the data path is `path` ("mpi", "mpi-xfer"). */
static void check_local_stats(skv_client *c, int nworkers, uint64_t sketches, const char *path) {
    char text[16384], want[64];
    skv_err err = {0};
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    snprintf(want, sizeof want, "workers:   %d\n", nworkers + 1);
    if (!strstr(text, want)) fail_msg("stats lacks '%s':\n%s", want, text);
    snprintf(want, sizeof want, "\ndata path: %s (", path);
    if (!strstr(text, want)) fail_msg("stats: data path not %s:\n%s", path, text);
    if (!strstr(text, "rank 0: the coordinator's local worker"))
        fail_msg("stats: shard map rule without the local worker:\n%s", text);
    const char *w0 = strstr(text, "\nworker 0 ");
    if (!w0) fail_msg("stats lists no worker 0:\n%s", text);
    const char *sk = strstr(w0, "sketches");
    assert_non_null(sk);
    const unsigned long long got = strtoull(sk + strlen("sketches"), NULL, 10);
    if (got != sketches)
        fail_msg("worker 0 holds %llu sketches, the shard map gives rank 0 %llu:\n%s", got,
                 (unsigned long long)sketches, text);
}

static void local_equivalence(svc_fixture *f, int nworkers, const char *data_path) {
    char name[64];
    snprintf(name, sizeof name, "local_equivalence_%d_%s", nworkers, data_path);
    synth_rng rng;
    tu_rng_for(&rng, name);
    const double t0 = svc_now();
    const char *cargs[] = {"--local-worker", "--local-backend", "cpu",
                           "--data-path",    data_path,         NULL};
    svc_job *job = &f->job[0];
    assert_int_equal(svc_job_start(job, nworkers, cargs, NULL), 0);
    skv_client *c = svc_connect(job);
    svc_seqs s;
    svc_seqs_create(&s, c, SVC_SEQS_MAX, &rng); /* shards 2, 1, 3, 1: head + context */
    const uint64_t mine = rank0_sketches(&s, nworkers);
    assert_true(mine > 0);
    check_local_stats(c, nworkers, mine, strcmp(data_path, "mpi-xfer") ? "mpi" : "mpi-xfer");
    char what[96];
    for (int k = 0; k < 6; k++) {
        snprintf(what, sizeof what, "local worker + %d workers, step %d", nworkers, k);
        svc_seqs_check(&s, c, &rng, what);
    }
    /* drop frees every rank's sketches, rank 0's included */
    skv_err err = {0};
    for (int i = 0; i < s.n; i++) SVC_OK(skv_client_drop_sequence(c, s.ids[i], &err), &err);
    uint64_t total = 0, nseq = 0;
    svc_stats_numbers(c, &total, &nseq);
    assert_int_equal(nseq, 0);
    assert_int_equal(total, 0);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(job), 0);
    svc_seqs_free(&s);
    printf("# local worker + %d worker(s), --data-path %s: %llu sketches on rank 0, 6 steps "
           "bit-identical; %.2f s\n",
           nworkers, data_path, (unsigned long long)mine, svc_now() - t0);
}

static void test_local_alone(void **state) { local_equivalence(*state, 0, "auto"); }
static void test_local_1_worker_xfer(void **state) { local_equivalence(*state, 1, "mpi-xfer"); }
static void test_local_2_workers(void **state) { local_equivalence(*state, 2, "auto"); }
static void test_local_2_workers_xfer(void **state) { local_equivalence(*state, 2, "mpi-xfer"); }
static void test_local_3_workers_mpi(void **state) { local_equivalence(*state, 3, "mpi"); }
static void test_local_3_workers_xfer(void **state) { local_equivalence(*state, 3, "mpi-xfer"); }

/* The transfer protocol without the local worker: rank 0 only coordinates. */
static void test_xfer_without_local_worker(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *cargs[] = {"--data-path", "mpi-xfer", NULL};
    svc_job *job = &f->job[0];
    assert_int_equal(svc_job_start(job, 3, cargs, NULL), 0);
    skv_client *c = svc_connect(job);
    svc_seqs s;
    svc_seqs_create(&s, c, SVC_SEQS_MAX, &rng);
    char text[16384];
    skv_err err = {0};
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    if (!strstr(text, "workers:   3\n") || !strstr(text, "\ndata path: mpi-xfer (") ||
        strstr(text, "\nworker 0 "))
        fail_msg("stats of 3 workers on mpi-xfer without a local worker:\n%s", text);
    for (int k = 0; k < 4; k++) svc_seqs_check(&s, c, &rng, "mpi-xfer, no local worker");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(job), 0);
    svc_seqs_free(&s);
}

/* A worker that stops answering while payloads go through the transfer is lost at the op
 * deadline, named, and the job ends non-zero: nothing waits for it forever. */
static void test_xfer_hung_worker_is_lost(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *cargs[] = {"--local-worker", "--local-backend",    "cpu",  "--data-path",
                           "mpi-xfer",       "--step-deadline-ms", "1500", NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, cargs, NULL), 0);
    skv_client *c = svc_connect(j);
    svc_seqs s;
    svc_seqs_create(&s, c, 2, &rng);
    const pid_t victim = svc_job_rank_pid(j, "subkv-worker");
    assert_true(victim > 0);
    const int rank = svc_rank_of(victim);
    assert_true(rank >= 1);
    kill(victim, SIGSTOP);
    skv_err err = {0};
    const double t0 = svc_now();
    const subkv_status st = svc_seqs_steps(&s, c, 1, &rng, 0, &err);
    const double waited = svc_now() - t0;
    kill(victim, SIGCONT);
    printf("# mpi-xfer: stopped worker rank %d; the step failed after %.2f s: %s\n", rank, waited,
           err.msg);
    char want[32];
    snprintf(want, sizeof want, "worker rank %d ", rank);
    assert_int_equal(st, SKV_ERR_WORKER_LOST);
    assert_non_null(strstr(err.msg, want));
    assert_true(waited >= 1.4 && waited < 20.0);
    skv_client_close(c);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    assert_int_not_equal(svc_job_exit_code(j), 0);
    svc_seqs_free(&s);
}

/* ---- 4. the local worker's budget -------------------------------------------------------- */

static void test_local_budget_rolls_back(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *cargs[] = {
        "--local-worker", "--local-backend", "cpu", "--local-budget", "64K", NULL};
    svc_job *job = &f->job[0];
    assert_int_equal(svc_job_start(job, 2, cargs, NULL), 0);
    skv_client *c = svc_connect(job);
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_SUBGEN, 32);
    cfg.seed = synth_rng_u64(&rng) >> 1;
    cfg.budget_bytes = 48u << 10; /* two on rank 0 exceed its 64 KiB; workers are unlimited */
    const skv_model_shape sh = {2, 3, 3, 32};
    skv_err err = {0};
    uint64_t id = 0, total = 1, nseq = 1;
    SVC_EXPECT(SKV_ERR_BUDGET, skv_client_create_sequence(c, &sh, &cfg, 1, 0, &id, &err), &err);
    if (!strstr(err.msg, "worker 0")) fail_msg("budget error does not name worker 0: %s", err.msg);
    svc_stats_numbers(c, &total, &nseq);
    assert_int_equal(nseq, 0);
    assert_int_equal(total, 0);                /* the workers that created theirs rolled back */
    const skv_model_shape one = {1, 1, 1, 32}; /* one sketch: fits wherever it lands */
    SVC_OK(skv_client_create_sequence(c, &one, &cfg, 1, 0, &id, &err), &err);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(job), 0);
}

/* ---- 5. checkpoint / restore ------------------------------------------------------------- */

static int gen_has_file(const char *dir, const char *file) {
    char path[512], cur[64] = "";
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    if (!fgets(cur, sizeof cur, fp)) cur[0] = '\0';
    fclose(fp);
    cur[strcspn(cur, "\n")] = '\0';
    snprintf(path, sizeof path, "%s/%s/%s", dir, cur, file);
    return access(path, R_OK) == 0;
}

static void test_local_checkpoint_restore(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/subkv-test-localckpt-%d", (int)getpid());
    svc_rm_rf(dir);
    const char *cargs[] = {"--local-worker", "--local-backend", "cpu", NULL};
    svc_job *a = &f->job[0];
    assert_int_equal(svc_job_start(a, 2, cargs, NULL), 0);
    skv_client *c = svc_connect(a);
    svc_seqs s;
    svc_seqs_create(&s, c, SVC_SEQS_MAX, &rng);
    skv_err err = {0};
    SVC_OK(svc_seqs_steps(&s, c, 3, &rng, 1, &err), &err);
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    assert_true(gen_has_file(dir, "worker-0.skv")); /* rank 0's shard */
    assert_true(gen_has_file(dir, "worker-2.skv"));
    uint64_t bytes_a, nseq_a, bytes_b, nseq_b;
    svc_stats_numbers(c, &bytes_a, &nseq_a);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(a), 0);

    const char *rargs[] = {"--local-worker", "--local-backend", "cpu", "--data-path",
                           "mpi-xfer",       "--restore",       dir,   NULL};
    svc_job *b = &f->job[1];
    assert_int_equal(svc_job_start(b, 2, rargs, NULL), 0);
    c = svc_connect(b);
    svc_stats_numbers(c, &bytes_b, &nseq_b);
    assert_int_equal(nseq_b, nseq_a);
    assert_int_equal(bytes_b, bytes_a);
    check_local_stats(c, 2, rank0_sketches(&s, 2), "mpi-xfer");
    for (int k = 0; k < 3; k++) svc_seqs_check(&s, c, &rng, "restored job with a local worker");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(b), 0);

    /* the same worker count without the local worker: the shard map differs; refused */
    const char *plain[] = {"--restore", dir, NULL};
    svc_job *j = &f->job[2];
    assert_int_equal(svc_job_start_ex(j, 2, plain, NULL, 0), 0);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    char tail[4096];
    svc_job_log_tail(j, tail, sizeof tail);
    if (svc_job_exit_code(j) == 0 || !strstr(tail, "local worker")) {
        svc_job_print_log(j, "restore of a local-worker checkpoint without --local-worker");
        fail_msg("exit code %d (want non-zero and a message naming the local worker)",
                 svc_job_exit_code(j));
    }
    svc_seqs_free(&s);
    svc_rm_rf(dir);
}

/* ---- 6. GPU: the NCCL path ------------------------------------------------------------- */

enum { GPU_STEPS = 8 };

/* Run the same creates, prefill and steps (inputs from a fresh rng seeded by `seed`) on a
 * job; outputs of every step into out [GPU_STEPS][layers][B][q_heads][d]. */
static void gpu_run(svc_job *job, uint64_t seed, const char *want_path, float *out, double *worst) {
    synth_rng rng;
    synth_rng_seed(&rng, seed);
    skv_client *c = svc_connect(job);
    const skv_model_shape sh = {2, 8, 4, 64};
    enum { B = 3 };
    const skv_policy_id pol[B] = {SKV_POLICY_EXACT, SKV_POLICY_SUBGEN, SKV_POLICY_SINKWIN};
    const uint32_t shards[B] = {2, 1, 3}; /* head and context sharding */
    skv_config cfg[B];
    svc_replica rep[B];
    uint64_t ids[B];
    skv_err err = {0};
    for (int i = 0; i < B; i++) {
        skv_config_default(&cfg[i], pol[i], 64);
        cfg[i].dtype = SKV_DTYPE_F16;
        cfg[i].seed = synth_rng_u64(&rng) >> 1;
        if (pol[i] != SKV_POLICY_EXACT) cfg[i].budget_bytes = 48 << 10;
        SVC_OK(skv_client_create_sequence(c, &sh, &cfg[i], shards[i], 64, &ids[i], &err), &err);
        SVC_OK(svc_replica_init(&rep[i], &sh, &cfg[i], ids[i], shards[i], 64, &err), &err);
    }
    const size_t n = 500, kn = (size_t)sh.kv_heads * sh.head_dim,
                 qn = (size_t)sh.q_heads * sh.head_dim;
    for (int i = 0; i < B; i++)
        for (uint32_t l = 0; l < sh.layers; l++) {
            float *K = svc_seqs_rand(&rng, n * kn), *V = svc_seqs_rand(&rng, n * kn);
            SVC_OK(skv_client_append(c, &sh, ids[i], l, n, K, V, &err), &err);
            SVC_OK(svc_replica_append(&rep[i], l, n, K, V, &err), &err);
            free(K), free(V);
        }
    float *want = tu_malloc(qn * sizeof(float));
    for (int t = 0; t < GPU_STEPS; t++)
        for (uint32_t l = 0; l < sh.layers; l++) {
            float *Q = svc_seqs_rand(&rng, B * qn), *K = svc_seqs_rand(&rng, B * kn);
            float *V = svc_seqs_rand(&rng, B * kn);
            float *o = out + ((size_t)t * sh.layers + l) * B * qn;
            SVC_OK(skv_client_step(c, &sh, l, B, ids, Q, K, V, o, &err), &err);
            for (int b = 0; b < B; b++) {
                SVC_OK(svc_replica_step(&rep[b], l, Q + b * qn, K + b * kn, V + b * kn, want, &err),
                       &err);
                for (uint32_t h = 0; h < sh.q_heads; h++) {
                    const double e =
                        tu_rel_error_ff(o + b * qn + (size_t)h * sh.head_dim,
                                        want + (size_t)h * sh.head_dim, (int)sh.head_dim);
                    if (!(e <= 1e-3))
                        fail_msg("%s path: step %d layer %u seq %d head %u: rel error %.3e vs "
                                 "the CPU replica",
                                 want_path, t, l, b, h, e);
                    *worst = fmax(*worst, e);
                }
            }
            free(Q), free(K), free(V);
        }
    char text[16384], key[64];
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    snprintf(key, sizeof key, "\ndata path: %s (", want_path);
    if (!strstr(text, key)) fail_msg("stats: data path is not %s:\n%s", want_path, text);
    printf("# %s", strstr(text, "data path:"));
    for (int i = 0; i < B; i++) svc_replica_free(&rep[i]);
    free(want);
    skv_client_close(c);
}

static void test_gpu_nccl_matches_mpi_and_replica(void **state) {
    svc_fixture *f = *state;
    const int ndev = svc_need_gpus(2); /* the NCCL path */
    const int gpus = ndev > 8 ? 8 : ndev, nw = gpus - 1;
    setenv("NCCL_NVLS_ENABLE", "0", 0); /* NVLink multicast stays off on the lent machines */
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const uint64_t seed = synth_rng_u64(&rng);
    const size_t nout = (size_t)GPU_STEPS * 2 * 3 * 8 * 64;
    float *nccl_out = tu_malloc(nout * sizeof(float)), *mpi_out = tu_malloc(nout * sizeof(float));
    double worst = 0.0;
    const char *wargs[] = {"--backend", "cuda", NULL};
    const char *nccl_args[] = {"--local-worker", "--local-backend", "cuda", NULL};
    assert_int_equal(svc_job_start(&f->job[0], nw, nccl_args, wargs), 0);
    gpu_run(&f->job[0], seed, "nccl", nccl_out, &worst);
    assert_int_equal(svc_job_stop(&f->job[0]), 0);
    const char *mpi_args[] = {
        "--local-worker", "--local-backend", "cuda", "--data-path", "mpi", NULL};
    assert_int_equal(svc_job_start(&f->job[1], nw, mpi_args, wargs), 0);
    gpu_run(&f->job[1], seed, "mpi", mpi_out, &worst);
    assert_int_equal(svc_job_stop(&f->job[1]), 0);
    svc_assert_bits_equal(nccl_out, mpi_out, nout, "NCCL path vs --data-path mpi");
    /* one GPU: the coordinator alone, every sketch on its local worker */
    float *one_out = tu_malloc(nout * sizeof(float));
    assert_int_equal(svc_job_start(&f->job[2], 0, nccl_args, NULL), 0);
    gpu_run(&f->job[2], seed, "mpi", one_out, &worst);
    assert_int_equal(svc_job_stop(&f->job[2]), 0);
    double one_diff = 0.0;
    for (size_t i = 0; i < nout; i += 64)
        one_diff = fmax(one_diff, tu_rel_error_ff(nccl_out + i, one_out + i, 64));
    const int one_bits = memcmp(nccl_out, one_out, nout * sizeof(float)) == 0;
    if (!(one_diff <= 1e-5))
        fail_msg("NCCL path vs one GPU: rel difference %.3e (want <= 1e-5)", one_diff);
    printf("# NCCL path, %d GPUs (local worker + %d workers): bit-identical to the MPI path; "
           "vs one GPU %s (worst rel diff %.2e); worst rel error vs the CPU replica %.2e\n",
           gpus, nw, one_bits ? "bit-identical" : "not bit-identical", one_diff, worst);
    free(nccl_out), free(mpi_out), free(one_out);
}

int main(void) {
    tu_suite_begin("test_service_local");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_map_without_local_worker_unchanged),
        cmocka_unit_test(test_shard_map_with_local_worker),
        cmocka_unit_test(test_options),
        cmocka_unit_test_setup_teardown(test_local_alone, svc_fixture_setup, svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_1_worker_xfer, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_2_workers, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_2_workers_xfer, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_3_workers_mpi, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_3_workers_xfer, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_xfer_without_local_worker, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_xfer_hung_worker_is_lost, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_budget_rolls_back, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_local_checkpoint_restore, svc_fixture_setup,
                                        svc_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_gpu_nccl_matches_mpi_and_replica, svc_fixture_setup,
                                        svc_fixture_teardown),
    };
    return cmocka_run_group_tests_name("service_local_worker", tests, NULL, NULL);
}
