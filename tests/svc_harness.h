/*
 * svc_harness.h — launch a real subkv MPI job from a test, talk to it, stop it (header-only).
 *
 *   svc_job j;
 *   svc_job_start(&j, 2, coord_args, worker_args)   fork/exec mpirun --oversubscribe
 *       -np 1 subkv-coordinator --no-tcp --unix /tmp/subkv-test-PID-N.sock ARGS
 *       : -np W subkv-worker ARGS; output to a log file; waits (60 s) until the socket accepts
 *   svc_job_stop(&j)       skv_client_shutdown, waitpid with a timeout; returns the exit status
 *   svc_job_wait(&j, s)    waitpid with a timeout (for jobs that stop by themselves)
 *   svc_job_kill(&j)       SIGKILL mpirun's process group and every rank (see below)
 *   svc_fixture_setup / svc_fixture_teardown   per-test jobs that a failed assertion cannot
 *                          leave running
 *
 * mpirun runs in its own process group (setpgid in the child), but Open MPI puts each rank in
 * a process group of its own, so killing mpirun's group alone would orphan the ranks:
 * svc_job_kill first collects mpirun's children from /proc, then kills them and the group.
 * The binaries are found next to the test binary (build/tests/.. = build/).
 * SUBKV_TEST_WRAP (e.g. "valgrind --error-exitcode=97 ..."; split on spaces) runs every rank
 * under that command (make valgrind, tests/valgrind.sh); the start and stop waits are then
 * five times longer.
 * Include after <cmocka.h> and test_util.h. POSIX + Linux /proc; no global state.
 */
#ifndef SUBKV_SVC_HARNESS_H
#define SUBKV_SVC_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "skv_frame.h"
#include "subkv.h"
#include "subkv_client.h"

enum { SVC_MAX_ARGS = 32 };
#define SVC_WRAP_SLOWDOWN (getenv("SUBKV_TEST_WRAP") ? 5.0 : 1.0)
#define SVC_START_TIMEOUT_S (60.0 * SVC_WRAP_SLOWDOWN)
#define SVC_STOP_TIMEOUT_S (30.0 * SVC_WRAP_SLOWDOWN)

typedef struct svc_job {
    pid_t pid;  /* mpirun; also its process group; 0 once reaped */
    int status; /* waitpid status once reaped */
    int nworkers;
    char sock[108];
    char addr[128];
    char log[128];
} svc_job;

static inline double svc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void svc_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Directory of the subkv binaries: the test binary lives in BUILD/tests/. */
static inline void svc_build_dir(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (r <= 0) {
        snprintf(out, n, "build");
        return;
    }
    exe[r] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
    }
    snprintf(out, n, "%s", exe);
}

/* The last `max` bytes of the job's log, NUL-terminated, in buf. */
static inline const char *svc_job_log_tail(const svc_job *j, char *buf, size_t max) {
    buf[0] = '\0';
    FILE *f = fopen(j->log, "r");
    if (!f) return buf;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    long from = sz > (long)max - 1 ? sz - (long)max + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, max - 1, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Print the job's log to stdout (the test failed or wants to show it). */
static inline void svc_job_print_log(const svc_job *j, const char *why) {
    char tail[4096];
    printf("---- %s; subkv job log (%s) ----\n%s\n---- end of log ----\n", why, j->log,
           svc_job_log_tail(j, tail, sizeof tail));
    fflush(stdout);
}

/* Non-blocking reap; 1 when the job has exited (j->status valid). */
static inline int svc_job_exited(svc_job *j) {
    if (j->pid <= 0) return 1;
    int st = 0;
    pid_t r = waitpid(j->pid, &st, WNOHANG);
    if (r == j->pid) {
        j->pid = 0;
        j->status = st;
        return 1;
    }
    return 0;
}

/* Children of pid (from /proc/N/stat); returns how many were written to out[cap]. */
static inline int svc_children(pid_t pid, pid_t *out, int cap) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        char *end;
        long p = strtol(e->d_name, &end, 10);
        if (*end || p <= 0) continue;
        char path[64], line[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", p);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t got = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[got] = '\0';
        const char *rp = strrchr(line, ')'); /* comm may hold spaces */
        char state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)pid)
            out[n++] = (pid_t)p;
    }
    closedir(d);
    return n;
}

/* Does process pid run a program whose file name starts with `name` (its comm, or any
 * argument's base name: under a wrapper such as valgrind the comm is the wrapper's)? */
static inline int svc_pid_runs(pid_t pid, const char *name) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        const char *slash = strrchr(buf + i, '/'), *base = slash ? slash + 1 : buf + i;
        if (!strncmp(base, name, strlen(name))) return 1;
    }
    return 0;
}

/* MPI rank of process pid (Open MPI's OMPI_COMM_WORLD_RANK in its environment), or -1. */
static inline int svc_rank_of(pid_t pid) {
    char path[64], env[16384];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    env[n] = '\0';
    for (size_t i = 0; i < n; i += strlen(env + i) + 1)
        if (!strncmp(env + i, "OMPI_COMM_WORLD_RANK=", 21)) return atoi(env + i + 21);
    return -1;
}

/* The child of mpirun that runs a program named `name...` (e.g. "subkv-coordinat"), or -1. */
static inline pid_t svc_job_rank_pid(const svc_job *j, const char *name) {
    pid_t kids[64];
    int n = svc_children(j->pid, kids, 64);
    for (int i = 0; i < n; i++)
        if (svc_pid_runs(kids[i], name)) return kids[i];
    return -1;
}

/* Kill everything the job started, then reap mpirun. */
static inline void svc_job_kill(svc_job *j) {
    if (j->pid <= 0) return;
    pid_t kids[64];
    int n = svc_children(j->pid, kids, 64);
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    kill(-j->pid, SIGKILL);
    int st = 0;
    if (waitpid(j->pid, &st, 0) == j->pid) j->status = st;
    j->pid = 0;
    unlink(j->sock);
}

/* Wait up to timeout_s for the job to exit. Returns 0 when it did (j->status set), -1 after
 * killing it on timeout. */
static inline int svc_job_wait(svc_job *j, double timeout_s) {
    const double t_end = svc_now() + timeout_s;
    while (!svc_job_exited(j)) {
        if (svc_now() > t_end) {
            svc_job_print_log(j, "job did not exit in time; killing it");
            svc_job_kill(j);
            return -1;
        }
        svc_sleep_ms(10);
    }
    return 0;
}

/* Exit code of a reaped job, or -1 (killed by a signal / not reaped). */
static inline int svc_job_exit_code(const svc_job *j) {
    return j->pid == 0 && WIFEXITED(j->status) ? WEXITSTATUS(j->status) : -1;
}

/* Does the socket accept a connection now? */
static inline int svc_socket_ready(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/*
 * Start a job of nworkers workers (0: the coordinator alone, for --local-worker).
 * coord_args / worker_args: extra arguments, NULL-terminated
 * (or NULL). wait_ready: wait until the socket accepts (fails on timeout or early exit,
 * printing the log); 0: return at once (for jobs expected to fail). Returns 0 or -1.
 */
static inline int svc_job_start_ex(svc_job *j, int nworkers, const char *const *coord_args,
                                   const char *const *worker_args, int wait_ready) {
    static const char *const none[] = {NULL};
    if (!coord_args) coord_args = none;
    if (!worker_args) worker_args = none;
    memset(j, 0, sizeof *j);
    j->nworkers = nworkers;
    static unsigned svc_counter; /* names this process's sockets and logs: pid + counter */
    unsigned k = ++svc_counter;
    snprintf(j->sock, sizeof j->sock, "/tmp/subkv-test-%d-%u.sock", (int)getpid(), k);
    snprintf(j->addr, sizeof j->addr, "unix:%s", j->sock);
    snprintf(j->log, sizeof j->log, "/tmp/subkv-test-%d-%u.log", (int)getpid(), k);
    unlink(j->sock);
    char bdir[PATH_MAX], coord[PATH_MAX + 32], worker[PATH_MAX + 32], np[16];
    svc_build_dir(bdir, sizeof bdir);
    snprintf(coord, sizeof coord, "%s/subkv-coordinator", bdir);
    snprintf(worker, sizeof worker, "%s/subkv-worker", bdir);
    snprintf(np, sizeof np, "%d", nworkers);
    const char *argv[5 * SVC_MAX_ARGS];
    int a = 0;
    /* the optional wrapper, split on spaces (the copy lives until exec) */
    char wrapbuf[1024];
    const char *wrap[SVC_MAX_ARGS];
    int nwrap = 0;
    snprintf(wrapbuf, sizeof wrapbuf, "%s",
             getenv("SUBKV_TEST_WRAP") ? getenv("SUBKV_TEST_WRAP") : "");
    for (char *save = NULL, *t = strtok_r(wrapbuf, " ", &save); t && nwrap < SVC_MAX_ARGS;
         t = strtok_r(NULL, " ", &save))
        wrap[nwrap++] = t;
    const char *pre[] = {"mpirun", "--oversubscribe", "--bind-to", "none", "-np", "1"};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) argv[a++] = pre[i];
    for (int i = 0; i < nwrap; i++) argv[a++] = wrap[i];
    argv[a++] = coord;
    argv[a++] = "--no-tcp";
    argv[a++] = "--unix";
    argv[a++] = j->sock;
    for (int i = 0; i < SVC_MAX_ARGS && coord_args[i]; i++) argv[a++] = coord_args[i];
    int has_backend = 0;
    if (nworkers > 0) { /* 0: the coordinator alone (its --local-worker holds everything) */
        argv[a++] = ":";
        argv[a++] = "-np";
        argv[a++] = np;
        for (int i = 0; i < nwrap; i++) argv[a++] = wrap[i];
        argv[a++] = worker;
        for (int i = 0; i < SVC_MAX_ARGS && worker_args[i]; i++) {
            has_backend |= strcmp(worker_args[i], "--backend") == 0;
            argv[a++] = worker_args[i];
        }
        if (!has_backend) { /* the bit-exact suites compare with the CPU reference */
            argv[a++] = "--backend";
            argv[a++] = "cpu";
        }
    }
    argv[a] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        printf("svc_job_start: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(j->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        execvp("mpirun", (char *const *)argv);
        fprintf(stderr, "exec mpirun: %s\n", strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* both sides: no race with the child's own call */
    j->pid = pid;
    if (!wait_ready) return 0;
    const double t_end = svc_now() + SVC_START_TIMEOUT_S;
    for (;;) {
        if (svc_socket_ready(j->sock)) return 0;
        if (svc_job_exited(j)) {
            svc_job_print_log(j, "job exited before its socket accepted connections");
            return -1;
        }
        if (svc_now() > t_end) {
            svc_job_print_log(j, "socket not accepting after 60 s");
            svc_job_kill(j);
            return -1;
        }
        svc_sleep_ms(20);
    }
}

static inline int svc_job_start(svc_job *j, int nworkers, const char *const *coord_args,
                                const char *const *worker_args) {
    return svc_job_start_ex(j, nworkers, coord_args, worker_args, 1);
}

/*
 * Clean shutdown: skv_client_shutdown on a fresh connection, then wait for the job to exit.
 * Returns the job's exit code (0 expected), or -1 when the shutdown call failed or the job
 * had to be killed (the log is printed then).
 */
static inline int svc_job_stop(svc_job *j) {
    if (j->pid <= 0) return svc_job_exit_code(j);
    skv_client *c = NULL;
    skv_err err = {0};
    int ok = skv_client_connect(j->addr, NULL, &c, &err) == SKV_OK &&
             skv_client_shutdown(c, &err) == SKV_OK;
    if (!ok) printf("svc_job_stop: shutdown request failed: %s\n", err.msg);
    skv_client_close(c);
    if (!ok) {
        svc_job_print_log(j, "shutdown request failed");
        svc_job_kill(j);
        return -1;
    }
    if (svc_job_wait(j, SVC_STOP_TIMEOUT_S) != 0) return -1;
    int code = svc_job_exit_code(j);
    if (code != 0) svc_job_print_log(j, "job exited non-zero after a clean shutdown");
    unlink(j->sock);
    return code;
}

/* Remove the job's log (call once the test no longer needs it). */
static inline void svc_job_cleanup(svc_job *j) {
    if (j->pid > 0) svc_job_kill(j);
    unlink(j->log);
    unlink(j->sock);
}

/*
 * Per-test fixture holding the test's jobs: a failed assertion jumps out of the test, so the
 * teardown (cmocka_unit_test_setup_teardown(t, svc_fixture_setup, svc_fixture_teardown))
 * kills whatever is still running, printing its log first, and removes the files.
 */
enum { SVC_FIXTURE_JOBS = 4 };
typedef struct svc_fixture {
    svc_job job[SVC_FIXTURE_JOBS];
} svc_fixture;

static inline int svc_fixture_setup(void **state) {
    *state = calloc(1, sizeof(svc_fixture));
    return *state ? 0 : -1;
}

static inline int svc_fixture_teardown(void **state) {
    svc_fixture *f = *state;
    if (!f) return 0;
    for (int i = 0; i < SVC_FIXTURE_JOBS; i++) {
        svc_job *j = &f->job[i];
        if (!j->log[0]) continue;
        if (j->pid > 0 && !svc_job_exited(j))
            svc_job_print_log(j, "test ended with the job running; killing it");
        svc_job_cleanup(j);
    }
    free(f);
    return 0;
}

/* A client connected to the job; fails the test otherwise. */
static inline skv_client *svc_connect(const svc_job *j) {
    skv_client *c = NULL;
    skv_err err = {0};
    subkv_status st = skv_client_connect(j->addr, NULL, &c, &err);
    if (st != SKV_OK) fail_msg("connect %s: %s", j->addr, err.msg);
    return c;
}

/* A raw stream socket to the job (for malformed frames); fails the test otherwise. */
static inline int svc_raw_connect(const svc_job *j) {
    char msg[256];
    int fd = skv_socket_connect(j->addr, msg, sizeof msg);
    if (fd < 0) fail_msg("raw connect %s: %s", j->addr, msg);
    return fd;
}

/* Write all n bytes (MSG_NOSIGNAL); 0 or -1. */
static inline int svc_raw_send(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes within timeout_s. 0 ok; 1 orderly EOF before any byte; -1 error,
 * EOF mid-way or timeout (errno ETIMEDOUT). */
static inline int svc_raw_recv(int fd, void *buf, size_t n, double timeout_s) {
    char *p = buf;
    size_t got = 0;
    const double t_end = svc_now() + timeout_s;
    while (got < n) {
        int left_ms = (int)((t_end - svc_now()) * 1000.0);
        if (left_ms <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, left_ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return got == 0 ? 1 : -1;
        got += (size_t)r;
    }
    return 0;
}

#endif /* SUBKV_SVC_HARNESS_H */
