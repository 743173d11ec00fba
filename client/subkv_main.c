/*
 * subkv — command-line client of the subkv service (libsubkv).
 *
 *   subkv [--addr ADDR] [--token TOKEN] COMMAND [ARGS]
 *
 * Exit codes: 0 ok, 1 the service or the connection failed (status name and message are
 * printed), 2 bad arguments. The long subcommands (replay, bench) are in tools/cli_*.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subkv_cli.h"
#include "subkv_client.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv [--addr ADDR] [--token TOKEN] COMMAND [ARGS]\n"
            "\n"
            "  --addr ADDR    coordinator address: HOST:PORT or unix:PATH\n"
            "                 (default: $SUBKV_ADDR, else " SKV_DEFAULT_ADDR ")\n"
            "  --token TOKEN  shared auth token (default: $SUBKV_TOKEN)\n"
            "\n"
            "commands:\n"
            "  stats                  workers, data path, shard map, bytes, sequences\n"
            "  checkpoint DIR         every worker writes its sketches under DIR\n"
            "  shutdown               stop the coordinator and the workers\n"
            "  replay TRACE [...]     replay a trace, report error vs exact attention\n"
            "  bench service [...]    decode latency through the service vs in-process\n"
            "  demo [...]             every policy on a synthetic workload: bytes, latency, error\n"
            "\n"
            "`subkv COMMAND --help` describes a command's options.\n"
            "Exit status: 0 ok, 1 service/connection failure, 2 bad arguments.\n");
}

/* Connect or print the failure. */
static int connect_or_fail(const cli_target *t, skv_client **c) {
    skv_err err = {0};
    if (skv_client_connect(t->addr, t->token, c, &err) != SKV_OK) return cli_fail("connect", &err);
    return 0;
}

/* True when argv holds --help / -h. */
static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* stats / checkpoint DIR / shutdown. */
static int cmd_simple(const cli_target *t, int argc, char **argv) {
    const char *cmd = argv[0];
    int want_args = !strcmp(cmd, "checkpoint") ? 1 : 0;
    if (wants_help(argc, argv)) {
        if (!strcmp(cmd, "stats"))
            printf("usage: subkv stats\nPrints workers, data path, the shard map rule, per-worker "
                   "bytes (by policy) and per-sequence shape, policy and tokens.\n");
        else if (!strcmp(cmd, "checkpoint"))
            printf("usage: subkv checkpoint DIR\nEvery worker writes its sketches under DIR "
                   "(created if missing); restore with `subkv-coordinator --restore DIR`.\n");
        else
            printf("usage: subkv shutdown\nThe coordinator finishes in-flight requests, stops "
                   "the workers and exits.\n");
        return 0;
    }
    if (argc - 1 != want_args) {
        fprintf(stderr, "subkv %s: expected %s\n", cmd,
                want_args ? "one argument DIR" : "no arguments");
        return 2;
    }
    skv_client *c = NULL;
    int rc = connect_or_fail(t, &c);
    if (rc) return rc;
    skv_err err = {0};
    subkv_status st;
    if (!strcmp(cmd, "stats")) {
        size_t cap = 1 << 20;
        char *text = malloc(cap);
        if (!text) {
            fprintf(stderr, "subkv: out of memory\n");
            skv_client_close(c);
            return 1;
        }
        st = skv_client_stats(c, text, cap, &err);
        if (st == SKV_OK) fputs(text, stdout);
        free(text);
    } else if (!strcmp(cmd, "checkpoint")) {
        st = skv_client_checkpoint(c, argv[1], &err);
        if (st == SKV_OK) printf("checkpoint written under %s\n", argv[1]);
    } else {
        st = skv_client_shutdown(c, &err);
        if (st == SKV_OK) printf("service is shutting down\n");
    }
    skv_client_close(c);
    return st == SKV_OK ? 0 : cli_fail(cmd, &err);
}

int main(int argc, char **argv) {
    cli_target t = {getenv("SUBKV_ADDR"), getenv("SUBKV_TOKEN")};
    if (!t.addr || !*t.addr) t.addr = SKV_DEFAULT_ADDR;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--addr") && i + 1 < argc) {
            t.addr = argv[++i];
        } else if (!strcmp(a, "--token") && i + 1 < argc) {
            t.token = argv[++i];
        } else {
            fprintf(stderr, "subkv: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "subkv: missing COMMAND\n");
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (!strcmp(cmd, "stats") || !strcmp(cmd, "checkpoint") || !strcmp(cmd, "shutdown"))
        return cmd_simple(&t, sub_argc, sub_argv);
    if (!strcmp(cmd, "replay")) return cli_replay(&t, sub_argc, sub_argv);
    if (!strcmp(cmd, "bench")) return cli_bench(&t, sub_argc, sub_argv);
    if (!strcmp(cmd, "demo")) return cli_demo(&t, sub_argc, sub_argv);
    fprintf(stderr, "subkv: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
