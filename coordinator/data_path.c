/*
 * data_path.c — the MPI-or-NCCL decision (data_path.h). No MPI, no CUDA: tested alone.
 */
#include "data_path.h"

#include <stdarg.h>
#include <stdio.h>

/* It crosses MPI as raw bytes: keep it free of padding. */
_Static_assert(sizeof(skv_rank_device) == 16, "skv_rank_device must be 16 bytes");

uint64_t skv_host_hash(const char *hostname) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a offset basis */
    if (hostname)
        for (const unsigned char *p = (const unsigned char *)hostname; *p; p++)
            h = (h ^ *p) * 0x100000001b3ull; /* FNV prime */
    return h;
}

const char *skv_data_path_name(int path) {
    return path == SKV_PATH_NCCL ? "nccl" : path == SKV_PATH_XFER_MPI ? "mpi-xfer" : "mpi";
}

static void say(char *why, size_t whylen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void say(char *why, size_t whylen, const char *fmt, ...) {
    if (!why || whylen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* "rank 0 (the coordinator)" or "rank 3". */
static const char *who(int r, char *buf, size_t n) {
    snprintf(buf, n, r == 0 ? "rank %d (the coordinator)" : "rank %d", r);
    return buf;
}

int skv_data_path_choose(const skv_rank_device *ranks, int n, char *why, size_t whylen) {
    char a[40];
    if (!ranks || n < 1) {
        say(why, whylen, "no ranks reported a device");
        return SKV_PATH_MPI;
    }
    if (n == 1) {
        say(why, whylen, "1 rank: no workers to reach");
        return SKV_PATH_MPI;
    }
    /* Rule 1: every rank on a GPU. Name the first rank without one, and how many lack one. */
    int first_cpu = -1, ncpu = 0;
    for (int r = 0; r < n; r++)
        if (ranks[r].kind != SKV_RANK_CUDA || ranks[r].device < 0) {
            if (first_cpu < 0) first_cpu = r;
            ncpu++;
        }
    if (first_cpu >= 0) {
        if (ncpu == 1)
            say(why, whylen, "%s has no GPU", who(first_cpu, a, sizeof a));
        else
            say(why, whylen, "%s and %d other rank%s of %d have no GPU",
                who(first_cpu, a, sizeof a), ncpu - 1, ncpu - 1 == 1 ? "" : "s", n);
        return SKV_PATH_MPI;
    }
    /* Rule 2: no two ranks on one GPU (same host, same ordinal). The first pair in rank
     * order; n is a job's rank count, so the pairwise scan is cheap next to start-up. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (ranks[i].host_hash == ranks[j].host_hash && ranks[i].device == ranks[j].device) {
                say(why, whylen, "ranks %d and %d share GPU %d of one host", i, j, ranks[i].device);
                return SKV_PATH_MPI;
            }
    say(why, whylen, "every rank on a GPU of its own (%d ranks)", n);
    return SKV_PATH_NCCL;
}
