/*
 * subkv_cli.h — the long subcommands of the `subkv` command-line tool (client/subkv_main.c):
 * `replay` (a trace through the service, checked against float64 exact attention) and
 * `bench service` (service decode latency against the same ops in-process). They live in
 * tools/ because they use the trace reader, the synthetic workloads and the sketch library,
 * none of which belongs in libsubkv (the client library).
 *
 * Exit codes of every cli_* command: 0 ok, 1 service or I/O failure (the status name and
 * message are printed), 2 bad arguments (usage printed).
 */
#ifndef SUBKV_CLI_H
#define SUBKV_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

/* Where to reach the service; filled from --addr / --token / SUBKV_ADDR / SUBKV_TOKEN. */
typedef struct cli_target {
    const char *addr;
    const char *token;
} cli_target;

/* `subkv replay TRACE [...]`: argv[0] is "replay". */
int cli_replay(const cli_target *t, int argc, char **argv);

/* `subkv bench service [...]`: argv[0] is "bench". */
int cli_bench(const cli_target *t, int argc, char **argv);

/* `subkv demo [...]`: argv[0] is "demo" (tools/cli_demo.c). */
int cli_demo(const cli_target *t, int argc, char **argv);

/* ---- helpers shared by the subcommands ----------------------------------------------------- */

/* Parse a non-negative integer with an optional K/M/G suffix (powers of 1024). 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);
/* Monotonic clock in milliseconds. */
double cli_now_ms(void);
/* The p-th percentile (0..100) of x[n] (sorts x in place); 0 when n == 0. */
double cli_percentile(double *x, size_t n, double p);
/* Print "subkv: STATUS_NAME: message" for a failed call; returns 1 (the exit code). */
int cli_fail(const char *what, const skv_err *err);

#endif /* SUBKV_CLI_H */
