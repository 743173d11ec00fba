/*
 * test_faults.c — what the service promises when things go wrong (RELIABILITY.md):
 *
 *  1. durability: a checkpoint killed at any point (a worker halfway through its file, the
 *     coordinator before its table, before CURRENT, after CURRENT) leaves a loadable
 *     checkpoint: the restored job answers bit for bit as the replicas of the last complete
 *     generation; periodic checkpoints (--checkpoint-every) restore the same way;
 *  2. faults: a worker killed (SIGKILL) during a load run gives the client
 *     SKV_ERR_WORKER_LOST naming its rank and what it held, not a hang; subkv-launch
 *     --restart brings the job back from the last checkpoint with identical next steps; a
 *     hung worker (SIGSTOP) is declared lost at --step-deadline-ms and the job exits non-zero;
 *  3. limits: sequences and bytes per client and sequences in all are refused with
 *     SKV_ERR_LIMIT, and what the client holds is untouched; --token is required and
 *     checked (SKV_ERR_AUTH, nothing changed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>

#include "test_util.h"

#include "svc_check.h"
#include "svc_harness.h"
#include "svc_replica.h"
#include "svc_seqs.h"

/* ---- process helpers ----------------------------------------------------------------------- */

/* Descendants of pid (children first, then theirs), at most cap. */
static int descendants(pid_t pid, pid_t *out, int cap) {
    int n = svc_children(pid, out, cap);
    for (int i = 0; i < n && n < cap; i++) n += svc_children(out[i], out + n, cap - n);
    return n;
}

/* A worker process of the job rooted at root (the last one found), its rank in *rank. */
static pid_t find_worker(pid_t root, int *rank) {
    pid_t all[128];
    int n = descendants(root, all, 128);
    pid_t found = -1;
    for (int i = 0; i < n; i++)
        if (svc_pid_runs(all[i], "subkv-worker")) found = all[i];
    if (found > 0) *rank = svc_rank_of(found);
    return found;
}

static void kill_tree(svc_job *j) {
    if (j->pid <= 0) return;
    pid_t all[128];
    int n = descendants(j->pid, all, 128);
    for (int i = 0; i < n; i++) kill(all[i], SIGKILL);
    svc_job_kill(j);
}

/* ---- 1. durability ------------------------------------------------------------------------- */

static void checkpoint_dir(char *dir, size_t n, const char *what) {
    snprintf(dir, n, "/tmp/subkv-test-%s-%d", what, (int)getpid());
    svc_rm_rf(dir);
}

/*
 * Checkpoint 1 of state A, steps, checkpoint 2 of state B killed at `fault`. The restored
 * job must be state B when the kill came after CURRENT was replaced, else state A.
 */
static void interrupted_checkpoint(svc_fixture *f, const char *fault, int expect_b) {
    synth_rng rng;
    tu_rng_for(&rng, fault);
    char dir[128];
    checkpoint_dir(dir, sizeof dir, "dur");
    svc_job *j = &f->job[0];
    setenv("SUBKV_FAULT", fault, 1); /* inherited by mpirun and its ranks */
    int started = svc_job_start(j, 2, NULL, NULL);
    unsetenv("SUBKV_FAULT");
    assert_int_equal(started, 0);
    skv_client *c = svc_connect(j);
    skv_err err = {0};
    svc_seqs a, b;
    svc_seqs_create(&a, c, 3, &rng);
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    svc_seqs_copy_replicas(&b, &a);
    SVC_OK(svc_seqs_steps(&b, c, 3, &rng, 1, &err), &err);
    const subkv_status st = skv_client_checkpoint(c, dir, &err); /* dies on the way */
    if (st == SKV_OK) fail_msg("%s: the checkpoint that should have died succeeded", fault);
    if (st != SKV_ERR_IO && st != SKV_ERR_WORKER_LOST)
        fail_msg("%s: checkpoint failed with %s (%s)", fault, subkv_status_name(st), err.msg);
    skv_client_close(c);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    if (svc_job_exit_code(j) == 0) fail_msg("%s: the job exited 0 after the kill", fault);

    const char *restore[] = {"--restore", dir, NULL};
    svc_job *r = &f->job[1];
    assert_int_equal(svc_job_start(r, 2, restore, NULL), 0);
    c = svc_connect(r);
    char what[96];
    snprintf(what, sizeof what, "restored after %s (expect state %s)", fault, expect_b ? "B" : "A");
    svc_seqs_check(expect_b ? &b : &a, c, &rng, what);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(r), 0);
    svc_seqs_free(&a), svc_seqs_free(&b);
    svc_rm_rf(dir);
}

static void test_checkpoint_killed_mid_worker_write_keeps_previous(void **state) {
    interrupted_checkpoint(*state, "ckpt-worker-partial:2", 0);
}
static void test_checkpoint_killed_before_table_keeps_previous(void **state) {
    interrupted_checkpoint(*state, "ckpt-before-table:2", 0);
}
static void test_checkpoint_killed_before_current_keeps_previous(void **state) {
    interrupted_checkpoint(*state, "ckpt-before-current:2", 0);
}
static void test_checkpoint_killed_after_current_keeps_new(void **state) {
    interrupted_checkpoint(*state, "ckpt-after-current:2", 1);
}

static long current_gen(const char *dir) {
    char path[256], buf[64] = "";
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    long g = 0;
    if (fgets(buf, sizeof buf, fp)) sscanf(buf, "gen-%ld", &g);
    fclose(fp);
    return g;
}

static void test_periodic_checkpoints_restore(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    char dir[128];
    checkpoint_dir(dir, sizeof dir, "periodic");
    const char *args[] = {"--checkpoint-every", "0.2", "--checkpoint-dir", dir, NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, args, NULL), 0);
    skv_client *c = svc_connect(j);
    svc_seqs s;
    svc_seqs_create(&s, c, 2, &rng);
    /* the state is still from here on: wait for two generations written after it */
    const long g0 = current_gen(dir);
    const double t_end = svc_now() + 30.0;
    while (current_gen(dir) < g0 + 2 && svc_now() < t_end) svc_sleep_ms(50);
    const long g1 = current_gen(dir);
    if (g1 < g0 + 2) fail_msg("periodic checkpoints: CURRENT went from gen %ld to %ld", g0, g1);
    /* older generations are removed: at most the current one and the one before remain */
    char old[256];
    snprintf(old, sizeof old, "%s/gen-%ld", dir, g1 - 2);
    assert_int_equal(access(old, F_OK), -1);
    skv_client_close(c);
    assert_int_equal(svc_job_stop(j), 0);
    const char *restore[] = {"--restore", dir, NULL};
    assert_int_equal(svc_job_start(&f->job[1], 2, restore, NULL), 0);
    c = svc_connect(&f->job[1]);
    svc_seqs_check(&s, c, &rng, "restored from a periodic checkpoint");
    skv_client_close(c);
    assert_int_equal(svc_job_stop(&f->job[1]), 0);
    svc_seqs_free(&s);
    svc_rm_rf(dir);
}

/* ---- 2. a worker dies or hangs ------------------------------------------------------------- */

/* deploy/subkv-launch of this checkout: build/ or build/sanitize/ is next to deploy/. */
static void launcher_path(char *out, size_t n) {
    char bdir[PATH_MAX];
    svc_build_dir(bdir, sizeof bdir);
    const char *ups[] = {"/../deploy/subkv-launch", "/../../deploy/subkv-launch"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, "%s%s", bdir, ups[i]);
        if (access(out, R_OK) == 0) return;
    }
}

/* Start deploy/subkv-launch with coordinator args (NULL-terminated) as job j. */
static int launch_start(svc_job *j, const char *const *extra, const char *const *coord_args) {
    static unsigned counter;
    memset(j, 0, sizeof *j);
    j->nworkers = 2;
    snprintf(j->sock, sizeof j->sock, "/tmp/subkv-test-launch-%d-%u.sock", (int)getpid(),
             ++counter);
    snprintf(j->addr, sizeof j->addr, "unix:%s", j->sock);
    snprintf(j->log, sizeof j->log, "/tmp/subkv-test-launch-%d-%u.log", (int)getpid(), counter);
    unlink(j->sock);
    char bdir[PATH_MAX], launcher[PATH_MAX + 64];
    svc_build_dir(bdir, sizeof bdir);
    launcher_path(launcher, sizeof launcher);
    const char *argv[64];
    int a = 0;
    const char *pre[] = {"bash", launcher, "--workers", "2", "--worker-args", "--backend cpu"};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) argv[a++] = pre[i];
    for (int i = 0; extra && extra[i]; i++) argv[a++] = extra[i];
    argv[a++] = "--";
    argv[a++] = "--no-tcp";
    argv[a++] = "--unix";
    argv[a++] = j->sock;
    for (int i = 0; coord_args && coord_args[i]; i++) argv[a++] = coord_args[i];
    argv[a] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(j->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        setenv("SUBKV_BUILD", bdir, 1);
        if (getenv("SUBKV_TEST_WRAP")) setenv("SUBKV_RANK_WRAP", getenv("SUBKV_TEST_WRAP"), 1);
        execvp("bash", (char *const *)argv);
        _exit(127);
    }
    setpgid(pid, pid);
    j->pid = pid;
    return 0;
}

/* Wait until the job's socket accepts (a restart brings up a new one). */
static void wait_ready(svc_job *j, const char *when) {
    const double t_end = svc_now() + SVC_START_TIMEOUT_S;
    while (!svc_socket_ready(j->sock)) {
        if (svc_job_exited(j) || svc_now() > t_end) {
            svc_job_print_log(j, when);
            fail_msg("%s: the service did not come up", when);
        }
        svc_sleep_ms(20);
    }
}

typedef struct killer {
    pid_t root, victim;
    int rank, delay_ms, sig;
} killer;

static void *killer_main(void *arg) {
    killer *k = arg;
    svc_sleep_ms(k->delay_ms);
    k->victim = find_worker(k->root, &k->rank);
    if (k->victim > 0) kill(k->victim, k->sig);
    return NULL;
}

/* The client's call that met the fault names the worker: status and "worker rank R". */
static void assert_names_worker(subkv_status st, const skv_err *err, int rank, const char *why) {
    if (st != SKV_ERR_WORKER_LOST)
        fail_msg("%s: the client got %s (%s), expected SKV_ERR_WORKER_LOST", why,
                 subkv_status_name(st), err->msg);
    char want[48];
    snprintf(want, sizeof want, "worker rank %d of 2 lost", rank);
    if (!strstr(err->msg, want) || !strstr(err->msg, "sketches of"))
        fail_msg("%s: message '%s' does not name %s and what it held", why, err->msg, want);
}

static void test_worker_killed_under_load_then_restart_restores(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    char dir[128];
    checkpoint_dir(dir, sizeof dir, "restart");
    const char *extra[] = {"--restart", "1", NULL};
    const char *cargs[] = {"--checkpoint-dir", dir, "--step-deadline-ms", "10000", NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(launch_start(j, extra, cargs), 0);
    wait_ready(j, "first launch");
    skv_client *c = svc_connect(j);
    skv_err err = {0};
    svc_seqs s;
    svc_seqs_create(&s, c, 3, &rng);
    SVC_OK(skv_client_checkpoint(c, dir, &err), &err);
    /* load: steps as fast as they go until the killer's SIGKILL lands on a worker */
    killer k = {.root = j->pid, .delay_ms = 300, .sig = SIGKILL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_main, &k), 0);
    subkv_status st = SKV_OK;
    const double t_end = svc_now() + 60.0;
    int steps = 0;
    while (st == SKV_OK && svc_now() < t_end) {
        st = svc_seqs_steps(&s, c, 1, &rng, 0, &err);
        steps += st == SKV_OK;
    }
    pthread_join(th, NULL);
    if (k.victim <= 0) fail_msg("no worker process found to kill");
    printf("# killed worker rank %d (pid %d) after %d load steps; client got: %s: %s\n", k.rank,
           (int)k.victim, steps, subkv_status_name(st), err.msg);
    assert_names_worker(st, &err, k.rank, "worker killed under load");
    skv_client_close(c);
    /* the launcher relaunches from the checkpoint */
    svc_sleep_ms(200);
    wait_ready(j, "after the restart");
    c = svc_connect(j);
    svc_seqs_check(&s, c, &rng, "after subkv-launch --restart");
    skv_client_close(c);
    char tail[4096];
    svc_job_log_tail(j, tail, sizeof tail);
    if (!strstr(tail, "restart 1 of 1 from")) {
        svc_job_print_log(j, "restart");
        fail_msg("the launcher log does not record the restart");
    }
    assert_int_equal(svc_job_stop(j), 0); /* a clean stop ends the loop with 0 */
    svc_seqs_free(&s);
    svc_rm_rf(dir);
}

/* --restart N is bounded and logged: with an mpirun that always fails (a stand-in script that
 * records its arguments and exits 3), the launcher runs it 1 + N times, the restarts with
 * --restore DIR (a checkpoint exists), then gives up with the job's status. */
static void test_launcher_restarts_are_bounded_and_logged(void **state) {
    (void)state;
    char dir[128], fake[160], calls[160], cmd[3 * PATH_MAX], bdir[PATH_MAX],
        launcher[PATH_MAX + 64];
    checkpoint_dir(dir, sizeof dir, "launcher");
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(fake, sizeof fake, "%s/CURRENT", dir);
    FILE *fp = fopen(fake, "w");
    assert_non_null(fp);
    fputs("gen-4\n", fp);
    fclose(fp);
    snprintf(fake, sizeof fake, "%s/fake-mpirun", dir);
    snprintf(calls, sizeof calls, "%s/calls", dir);
    fp = fopen(fake, "w");
    assert_non_null(fp);
    fprintf(fp, "#!/bin/sh\necho \"$*\" >> %s\nexit 3\n", calls);
    fclose(fp);
    assert_int_equal(chmod(fake, 0755), 0);
    svc_build_dir(bdir, sizeof bdir);
    launcher_path(launcher, sizeof launcher);
    snprintf(cmd, sizeof cmd,
             "SUBKV_BUILD=%s MPIRUN=%s bash %s --restart 2 -- --checkpoint-dir %s --restore "
             "/elsewhere 2> %s/stderr",
             bdir, fake, launcher, dir, dir);
    const int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 3);
    char text[8192] = "";
    snprintf(fake, sizeof fake, "%s/stderr", dir);
    fp = fopen(fake, "r");
    assert_non_null(fp);
    text[fread(text, 1, sizeof text - 1, fp)] = '\0';
    fclose(fp);
    if (!strstr(text, "restart 1 of 2 from") || !strstr(text, "restart 2 of 2 from") ||
        !strstr(text, "(gen-4)") || !strstr(text, "no restarts left"))
        fail_msg("launcher log lacks the restarts:\n%s", text);
    fp = fopen(calls, "r");
    assert_non_null(fp);
    int n = 0, restored = 0;
    char line[2048], want[192];
    snprintf(want, sizeof want, "--restore %s ", dir);
    while (fgets(line, sizeof line, fp)) {
        n++;
        restored += strstr(line, want) != NULL && !strstr(line, "/elsewhere");
    }
    fclose(fp);
    assert_int_equal(n, 3);        /* the first run and two restarts */
    assert_int_equal(restored, 2); /* each restart from DIR, the caller's --restore dropped */
    svc_rm_rf(dir);
}

static void test_hung_worker_is_lost_at_the_deadline(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *cargs[] = {"--step-deadline-ms", "1500", NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, cargs, NULL), 0);
    skv_client *c = svc_connect(j);
    skv_err err = {0};
    svc_seqs s;
    svc_seqs_create(&s, c, 2, &rng);
    killer k = {.root = j->pid, .delay_ms = 0, .sig = SIGSTOP};
    killer_main(&k);
    if (k.victim <= 0) fail_msg("no worker process found to stop");
    const double t0 = svc_now();
    subkv_status st = svc_seqs_steps(&s, c, 1, &rng, 0, &err);
    const double waited = svc_now() - t0;
    printf("# stopped worker rank %d; the step failed after %.2f s: %s\n", k.rank, waited, err.msg);
    kill(k.victim, SIGCONT);
    assert_names_worker(st, &err, k.rank, "hung worker");
    assert_non_null(strstr(err.msg, "within 1500 ms"));
    assert_true(waited >= 1.4 && waited < 20.0);
    skv_client_close(c);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    assert_int_not_equal(svc_job_exit_code(j), 0);
    char tail[4096];
    assert_non_null(strstr(svc_job_log_tail(j, tail, sizeof tail), "cannot continue"));
    svc_seqs_free(&s);
}

static int fault_teardown(void **state) {
    svc_fixture *f = *state;
    for (int i = 0; f && i < SVC_FIXTURE_JOBS; i++) kill_tree(&f->job[i]);
    return svc_fixture_teardown(state);
}

/* ---- 3. limits ----------------------------------------------------------------------------- */

static void test_limits_refuse_and_keep_state(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    /* a token of the 2-kv-head, d = 16 shape stores 2 * 16 * 8 = 256 B of K/V */
    const uint64_t per_client = (uint64_t)(SVC_SEQS_PREFILL * 2 + 40) * 256;
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)per_client);
    const char *cargs[] = {"--max-seqs-per-client",  "2",   "--max-seqs", "3",
                           "--max-bytes-per-client", bytes, NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, cargs, NULL), 0);
    skv_client *a = svc_connect(j), *b = svc_connect(j);
    skv_err err = {0};
    svc_seqs s; /* client a: 1 sequence (2 layers x 120 tokens = 61440 B) */
    svc_seqs_create(&s, a, 1, &rng);
    uint64_t id2, idb, idx;
    SVC_OK(skv_client_create_sequence(a, &s.sh, &s.cfg[0], 1, 0, &id2, &err), &err);
    SVC_EXPECT(SKV_ERR_LIMIT, skv_client_create_sequence(a, &s.sh, &s.cfg[0], 1, 0, &idx, &err),
               &err);
    assert_non_null(strstr(err.msg, "--max-seqs-per-client"));
    SVC_OK(skv_client_create_sequence(b, &s.sh, &s.cfg[0], 1, 0, &idb, &err), &err);
    SVC_EXPECT(SKV_ERR_LIMIT, skv_client_create_sequence(b, &s.sh, &s.cfg[0], 1, 0, &idx, &err),
               &err);
    assert_non_null(strstr(err.msg, "--max-seqs"));
    /* bytes: 40 tokens of room left for a; an append of 41 is refused whole */
    const size_t kn = (size_t)s.sh.kv_heads * s.sh.head_dim;
    float *K = svc_seqs_rand(&rng, 41 * kn), *V = svc_seqs_rand(&rng, 41 * kn);
    SVC_EXPECT(SKV_ERR_LIMIT, skv_client_append(a, &s.sh, s.ids[0], 0, 41, K, V, &err), &err);
    assert_non_null(strstr(err.msg, "--max-bytes-per-client"));
    /* b appending into a's sequence is charged to a (its owner): refused as well */
    SVC_EXPECT(SKV_ERR_LIMIT, skv_client_append(b, &s.sh, id2, 0, 41, K, V, &err), &err);
    free(K), free(V);
    svc_seqs_check(&s, a, &rng, "after refused requests"); /* a's state is untouched */
    /* 19 more steps fit (1 + 19 = 20 tokens x 2 layers = 40); the next one does not */
    SVC_OK(svc_seqs_steps(&s, a, 19, &rng, 1, &err), &err);
    SVC_EXPECT(SKV_ERR_LIMIT, svc_seqs_steps(&s, a, 1, &rng, 1, &err), &err);
    assert_int_equal(svc_stats_tokens_layer0(a, s.ids[0]), (long long)s.tokens);
    /* dropping gives the quota back */
    SVC_OK(skv_client_drop_sequence(a, id2, &err), &err);
    SVC_OK(skv_client_create_sequence(a, &s.sh, &s.cfg[0], 1, 0, &id2, &err), &err);
    skv_client_close(a), skv_client_close(b);
    assert_int_equal(svc_job_stop(j), 0);
    svc_seqs_free(&s);
}

/* --token: requests without it or with a wrong one (same length, one byte off) fail with
 * SKV_ERR_AUTH and change nothing; with it they work. */
static void test_auth_token_required_and_checked(void **state) {
    svc_fixture *f = *state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const char *cargs[] = {"--token", "s3cret-token", NULL};
    svc_job *j = &f->job[0];
    assert_int_equal(svc_job_start(j, 2, cargs, NULL), 0);
    skv_client *none = NULL, *wrong = NULL, *right = NULL;
    skv_err err = {0};
    SVC_OK(skv_client_connect(j->addr, NULL, &none, &err), &err);
    SVC_OK(skv_client_connect(j->addr, "s3cret-tokem", &wrong, &err), &err);
    SVC_OK(skv_client_connect(j->addr, "s3cret-token", &right, &err), &err);
    const skv_model_shape sh = {1, 2, 1, 16};
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_EXACT, 16);
    uint64_t id;
    SVC_EXPECT(SKV_ERR_AUTH, skv_client_create_sequence(none, &sh, &cfg, 1, 0, &id, &err), &err);
    SVC_EXPECT(SKV_ERR_AUTH, skv_client_create_sequence(wrong, &sh, &cfg, 1, 0, &id, &err), &err);
    SVC_EXPECT(SKV_ERR_AUTH, skv_client_shutdown(wrong, &err), &err);
    uint64_t total = 0, nseq = 1;
    svc_stats_numbers(right, &total, &nseq);
    assert_int_equal(nseq, 0); /* nothing was created */
    SVC_OK(skv_client_create_sequence(right, &sh, &cfg, 1, 0, &id, &err), &err);
    svc_stats_numbers(right, &total, &nseq);
    assert_int_equal(nseq, 1);
    SVC_OK(skv_client_shutdown(right, &err), &err);
    skv_client_close(none), skv_client_close(wrong), skv_client_close(right);
    assert_int_equal(svc_job_wait(j, SVC_STOP_TIMEOUT_S), 0);
    assert_int_equal(svc_job_exit_code(j), 0);
}

int main(void) {
    tu_suite_begin("test_faults");
    const struct CMUnitTest durability[] = {
        cmocka_unit_test_setup_teardown(test_checkpoint_killed_mid_worker_write_keeps_previous,
                                        svc_fixture_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_killed_before_table_keeps_previous,
                                        svc_fixture_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_killed_before_current_keeps_previous,
                                        svc_fixture_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_killed_after_current_keeps_new,
                                        svc_fixture_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_periodic_checkpoints_restore, svc_fixture_setup,
                                        fault_teardown),
    };
    const struct CMUnitTest faults[] = {
        cmocka_unit_test_setup_teardown(test_worker_killed_under_load_then_restart_restores,
                                        svc_fixture_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_hung_worker_is_lost_at_the_deadline, svc_fixture_setup,
                                        fault_teardown),
        cmocka_unit_test(test_launcher_restarts_are_bounded_and_logged),
    };
    const struct CMUnitTest limits[] = {
        cmocka_unit_test_setup_teardown(test_limits_refuse_and_keep_state, svc_fixture_setup,
                                        fault_teardown),
        cmocka_unit_test_setup_teardown(test_auth_token_required_and_checked, svc_fixture_setup,
                                        fault_teardown),
    };
    int failed = 0;
    failed += cmocka_run_group_tests_name("durability", durability, NULL, NULL);
    failed += cmocka_run_group_tests_name("faults", faults, NULL, NULL);
    failed += cmocka_run_group_tests_name("limits", limits, NULL, NULL);
    return failed ? 1 : 0;
}
