/* cli_util.c — small helpers shared by the `subkv` subcommands (see subkv_cli.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "subkv_cli.h"

/* Non-negative integer with optional K, M, G (KiB, MiB, GiB) suffix. */
int cli_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K')
        shift = 10, end++;
    else if (*end == 'm' || *end == 'M')
        shift = 20, end++;
    else if (*end == 'g' || *end == 'G')
        shift = 30, end++;
    if (*end == 'i' || *end == 'B') {
        if (*end == 'i') end++;
        if (*end == 'B') end++;
    }
    if (*end) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* CLOCK_MONOTONIC in ms. */
double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile; sorts x. */
double cli_percentile(double *x, size_t n, double p) {
    if (n == 0) return 0.0;
    qsort(x, n, sizeof *x, cmp_double);
    double r = p / 100.0 * (double)n;
    size_t k = r <= 1.0 ? 0 : (size_t)(r + 0.999999) - 1;
    if (k >= n) k = n - 1;
    return x[k];
}

/* Report a failed library call. */
int cli_fail(const char *what, const skv_err *err) {
    fprintf(stderr, "subkv: %s: %s: %s\n", what, subkv_status_name(err->code), err->msg);
    return 1;
}
