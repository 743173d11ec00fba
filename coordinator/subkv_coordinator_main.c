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

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: subkv-coordinator [--listen HOST:PORT | --no-tcp] [--unix PATH] [--token TOKEN]\n"
        "                         [--max-frame BYTES] [--max-clients N] [--restore DIR] "
        "[--verbose]\n"
        "Rank 0 of the subkv MPI job; ranks 1..N must be subkv-worker.\n"
        "  --listen HOST:PORT  TCP listener (default 127.0.0.1:7439; loopback unless told)\n"
        "  --no-tcp            no TCP listener (use with --unix)\n"
        "  --unix PATH         also listen on a Unix socket\n"
        "  --token TOKEN       require this shared token in every request (env SUBKV_TOKEN)\n"
        "  --max-frame BYTES   largest request frame accepted (default %u)\n"
        "  --max-clients N     concurrent client connections (default 256)\n"
        "  --restore DIR       load the latest checkpoint under DIR before serving\n"
        "Stops on SIGTERM/SIGINT or a shutdown request: finishes the request in flight,\n"
        "stops the workers, exits 0.\n",
        SKV_FRAME_DEFAULT_MAX);
}

int main(int argc, char **argv) {
    skv_server_opts so = {.listen = "127.0.0.1:7439",
                          .max_frame = SKV_FRAME_DEFAULT_MAX,
                          .max_clients = 256,
                          .token = getenv("SUBKV_TOKEN")};
    const char *restore = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verbose")) {
            so.verbose = 1;
        } else if (!strcmp(a, "--no-tcp")) {
            so.listen = NULL;
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
        } else {
            fprintf(stderr, "subkv-coordinator: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (so.token && !so.token[0]) so.token = NULL;
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
    skv_coord_opts co = {.verbose = so.verbose};
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
        printf("subkv-coordinator: %d workers; listening on%s%s%s%s%s\n", skv_coord_workers(c),
               so.listen ? " tcp:" : "", so.listen ? so.listen : "", so.unix_path ? " unix:" : "",
               so.unix_path ? so.unix_path : "", so.token ? " (token required)" : "");
        fflush(stdout);
        rc = skv_server_run(c, &so, &g_stop);
    }
    skv_coord_destroy(c); /* stops the workers */
    printf("subkv-coordinator: stopped\n");
    MPI_Finalize();
    return rc;
}
