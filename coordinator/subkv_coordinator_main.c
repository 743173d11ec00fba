/*
 * subkv-coordinator — rank 0 of the subkv MPI job: the coordinator engine (coord.h) behind a
 * socket server (server.h). Usually started by deploy/subkv-launch:
 *   mpirun -np 1 subkv-coordinator [OPTIONS] : -np N subkv-worker [--budget BYTES]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "server.h"
#include "skv_frame.h"

static volatile sig_atomic_t g_stop; /* set by SIGTERM / SIGINT; read by the server loop */

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* A positive count with an optional K/M/G suffix (powers of 1024); 0 on anything else. */
static unsigned long long parse_count(const char *v) {
    char *end;
    unsigned long long n = strtoull(v, &end, 0);
    if (end == v) return 0;
    const int sh = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (sh) end++;
    if (*end || (sh && n >> (64 - sh))) return 0;
    return n << sh;
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: subkv-coordinator [--listen HOST:PORT | --no-tcp] [--unix PATH] [--token TOKEN]\n"
        "                         [--max-frame BYTES] [--max-clients N] [--restore DIR] "
        "[--verbose]\n"
        "                         [--step-deadline-ms MS] [--checkpoint-every S "
        "--checkpoint-dir DIR]\n"
        "                         [--max-seqs N] [--max-seqs-per-client N] "
        "[--max-bytes-per-client B]\n"
        "                         [--local-worker [--local-backend B] [--local-budget BYTES]\n"
        "                         [--local-gpu-reserve BYTES]] [--data-path auto|mpi|mpi-xfer]\n"
        "Rank 0 of the subkv MPI job; ranks 1..N must be subkv-worker.\n"
        "  --listen HOST:PORT  TCP listener (default 127.0.0.1:7439; loopback unless told)\n"
        "  --no-tcp            no TCP listener (use with --unix)\n"
        "  --unix PATH         also listen on a Unix socket\n"
        "  --token TOKEN       require this shared token in every request (env SUBKV_TOKEN)\n"
        "  --max-frame BYTES   largest request frame accepted (default %u)\n"
        "  --max-clients N     concurrent client connections (default 256)\n"
        "  --restore DIR       load the latest checkpoint under DIR before serving\n"
        "  --step-deadline-ms MS  a worker that has not answered an op in MS ms is lost\n"
        "                      (default %d; checkpoint and restore wait at least %d)\n"
        "  --checkpoint-every S   write a checkpoint generation every S seconds into\n"
        "  --checkpoint-dir DIR   DIR (DIR/gen-N, DIR/CURRENT; see subkv-launch --restart)\n"
        "  --max-seqs N        live sequences in all (default %llu)\n"
        "  --max-seqs-per-client N   live sequences one connection may create (default %llu)\n"
        "  --max-bytes-per-client B  float32 K/V bytes stored in one connection's sequences\n"
        "                      (default %llu; suffixes K, M, G); beyond a limit: SKV_ERR_LIMIT\n"
        "  --local-worker      rank 0 also holds a shard of sketches, on the GPU of node-local\n"
        "                      rank 0 (or the CPU, saying so): the shard map spans ranks\n"
        "                      0..N, and the workers take the node's next GPUs (default: off)\n"
        "  --local-backend B   the local worker's backend: auto (default), cpu or cuda\n"
        "  --local-budget BYTES  most sketch memory the local worker may hold (0: unlimited)\n"
        "  --local-gpu-reserve BYTES  device memory its GPU pool reserves at start\n"
        "                      (default: --local-budget)\n"
        "  --data-path P       auto (default): the op payloads go over NCCL when every rank,\n"
        "                      rank 0 included (--local-worker on a GPU), has a GPU of its\n"
        "                      own, else over MPI; mpi: always MPI; mpi-xfer: the NCCL\n"
        "                      path's transfer protocol over MPI (tests without GPUs).\n"
        "                      `subkv stats` says which path is live and why\n"
        "Stops on SIGTERM/SIGINT or a shutdown request: finishes the request in flight,\n"
        "stops the workers, exits 0. When a worker dies or misses its deadline, answers every\n"
        "pending request with SKV_ERR_WORKER_LOST naming it, and ends the MPI job with exit\n"
        "status %d (subkv-launch --restart relaunches it from the last checkpoint).\n",
        SKV_FRAME_DEFAULT_MAX, SKV_COORD_DEFAULT_DEADLINE_MS, SKV_COORD_IO_DEADLINE_MS,
        SKV_COORD_DEFAULT_MAX_SEQS, SKV_COORD_DEFAULT_SEQS_PER_CLIENT,
        SKV_COORD_DEFAULT_BYTES_PER_CLIENT, SKV_SERVER_WORKER_LOST);
}

int main(int argc, char **argv) {
    skv_server_opts so = {.listen = "127.0.0.1:7439",
                          .max_frame = SKV_FRAME_DEFAULT_MAX,
                          .max_clients = 256,
                          .token = getenv("SUBKV_TOKEN")};
    const char *restore = NULL;
    skv_coord_opts co = {.fault = getenv("SUBKV_FAULT")};
    int reserve_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verbose")) {
            so.verbose = 1;
        } else if (!strcmp(a, "--no-tcp")) {
            so.listen = NULL;
        } else if (!strcmp(a, "--local-worker")) {
            co.local_worker = 1;
        } else if (v && !strcmp(a, "--local-backend")) {
            if (!strcmp(v, "auto") || !strcmp(v, "cpu") || !strcmp(v, "cuda")) {
                co.local_backend = !strcmp(v, "auto") ? 0 : !strcmp(v, "cpu") ? 1 : 2;
            } else {
                fprintf(stderr, "subkv-coordinator: --local-backend must be auto, cpu or cuda\n");
                return 2;
            }
            i++;
        } else if (v && (!strcmp(a, "--local-budget") || !strcmp(a, "--local-gpu-reserve"))) {
            const unsigned long long n = strcmp(v, "0") ? parse_count(v) : 1;
            if (n == 0) {
                fprintf(stderr, "subkv-coordinator: %s wants bytes, got '%s'\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--local-budget"))
                co.local_budget_bytes = strcmp(v, "0") ? (size_t)n : 0;
            else
                co.local_gpu_reserve_bytes = strcmp(v, "0") ? (size_t)n : 0, reserve_set = 1;
            i++;
        } else if (v && !strcmp(a, "--data-path")) {
            if (!strcmp(v, "auto") || !strcmp(v, "mpi") || !strcmp(v, "mpi-xfer")) {
                co.data_path = !strcmp(v, "mpi")        ? SKV_COORD_PATH_MPI
                               : !strcmp(v, "mpi-xfer") ? SKV_COORD_PATH_XFER_MPI
                                                        : SKV_COORD_PATH_AUTO;
            } else {
                fprintf(stderr, "subkv-coordinator: --data-path must be auto, mpi or mpi-xfer\n");
                return 2;
            }
            i++;
        } else if (v && !strcmp(a, "--listen")) {
            so.listen = v, i++;
        } else if (v && !strcmp(a, "--unix")) {
            so.unix_path = v, i++;
        } else if (v && !strcmp(a, "--token")) {
            so.token = v, i++;
        } else if (v && !strcmp(a, "--restore")) {
            restore = v, i++;
        } else if (v && !strcmp(a, "--max-frame")) {
            unsigned long long m = strtoull(v, NULL, 0);
            if (m < 64 || m > 0x7fffffffull) {
                fprintf(stderr, "subkv-coordinator: --max-frame must be in [64, 2^31)\n");
                return 2;
            }
            so.max_frame = (uint32_t)m, i++;
        } else if (v && !strcmp(a, "--max-clients")) {
            so.max_clients = atoi(v), i++;
        } else if (v && !strcmp(a, "--step-deadline-ms")) {
            co.deadline_ms = atoi(v), i++;
            if (co.deadline_ms < 1) {
                fprintf(stderr, "subkv-coordinator: --step-deadline-ms must be >= 1\n");
                return 2;
            }
        } else if (v && !strcmp(a, "--checkpoint-every")) {
            so.checkpoint_every_s = strtod(v, NULL), i++;
            if (!(so.checkpoint_every_s > 0)) {
                fprintf(stderr, "subkv-coordinator: --checkpoint-every wants seconds > 0\n");
                return 2;
            }
        } else if (v && !strcmp(a, "--checkpoint-dir")) {
            so.checkpoint_dir = v, i++;
        } else if (v && (!strcmp(a, "--max-seqs") || !strcmp(a, "--max-seqs-per-client") ||
                         !strcmp(a, "--max-bytes-per-client"))) {
            const unsigned long long n = parse_count(v);
            if (n == 0) {
                fprintf(stderr, "subkv-coordinator: %s wants a positive number, got '%s'\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--max-seqs"))
                co.max_seqs = n;
            else if (!strcmp(a, "--max-seqs-per-client"))
                co.max_seqs_per_client = n;
            else
                co.max_bytes_per_client = n;
            i++;
        } else {
            fprintf(stderr, "subkv-coordinator: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (so.token && !so.token[0]) so.token = NULL;
    if (!reserve_set) co.local_gpu_reserve_bytes = co.local_budget_bytes;
    if (!co.local_worker && (co.local_backend || co.local_budget_bytes || reserve_set)) {
        fprintf(stderr, "subkv-coordinator: --local-backend/--local-budget/--local-gpu-reserve "
                        "need --local-worker\n");
        return 2;
    }
    if (so.checkpoint_every_s > 0 && !so.checkpoint_dir) {
        fprintf(stderr, "subkv-coordinator: --checkpoint-every needs --checkpoint-dir\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) {
        fprintf(stderr, "subkv-coordinator: must be rank 0 (mpirun -np 1 subkv-coordinator : "
                        "-np N subkv-worker)\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    skv_coord *c = NULL;
    skv_err err;
    co.verbose = so.verbose;
    if (skv_coord_create(MPI_COMM_WORLD, &co, &c, &err) != SKV_OK) {
        fprintf(stderr, "subkv-coordinator: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rc = 0;
    if (restore && skv_coord_restore(c, restore, &err) != SKV_OK) {
        fprintf(stderr, "subkv-coordinator: restore from %s failed: %s: %s\n", restore,
                subkv_status_name(err.code), err.msg);
        rc = 1;
    }
    if (rc == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR and sees the flag */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        printf("subkv-coordinator: %d workers%s; listening on%s%s%s%s%s\n", skv_coord_workers(c),
               co.local_worker ? " + a local worker on rank 0" : "", so.listen ? " tcp:" : "",
               so.listen ? so.listen : "", so.unix_path ? " unix:" : "",
               so.unix_path ? so.unix_path : "", so.token ? " (token required)" : "");
        fflush(stdout);
        rc = skv_server_run(c, &so, &g_stop);
    }
    if (skv_coord_lost(c)) {
        /* A dead rank's job cannot finalize; MPI_Abort ends every rank (the runtime's
         * teardown), with this status for mpirun and subkv-launch --restart. */
        fprintf(stderr,
                "subkv-coordinator: cannot continue: %s; clients were answered with "
                "SKV_ERR_WORKER_LOST; ending the job with status %d\n",
                skv_coord_lost(c), SKV_SERVER_WORKER_LOST);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, SKV_SERVER_WORKER_LOST);
        return SKV_SERVER_WORKER_LOST;
    }
    skv_coord_destroy(c); /* stops the workers */
    printf("subkv-coordinator: stopped\n");
    MPI_Finalize();
    return rc;
}
