/*
 * skv_poll.h — the clock and the back-off of the service's polling waits. Each wait polls
 * something of its own with its own give-up rule: MPI requests (coordinator/coord.c,
 * worker/worker_serve.c, skv_mpi_wait in coordinator/payload_xfer.c), a CUDA stream and
 * NCCL's asynchronous error (cuda/nccl_xfer.cu), against a deadline or a peer seen gone.
 * What they share is how long they have waited and how they pause between two polls, so that
 * lives here. Header-only (static inline) so that the C files and the nvcc-compiled
 * cuda/nccl_xfer.cu use the same code without a link dependency between the libraries.
 */
#ifndef SUBKV_SKV_POLL_H
#define SUBKV_SKV_POLL_H

#include <sched.h>
#include <time.h>

/* CLOCK_MONOTONIC in seconds (deadlines and the back-off below). */
static inline double skv_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Who waits, which sets how soon the wait gives its core away. */
typedef enum skv_poll_kind {
    SKV_POLL_OP,  /* an op in flight (replies, payload transfers): done within microseconds */
    SKV_POLL_IDLE /* a worker waiting for its next op: may wait for seconds */
} skv_poll_kind;

/*
 * The pause between two polls of a wait that has lasted waited_s: none for the first 200 us
 * (spin: the answer usually comes that fast), then sched_yield until 2 ms (SKV_POLL_OP) or
 * 5 ms (SKV_POLL_IDLE), then a sleep of 50 us (OP) or 100 us (IDLE) per poll, so a long wait
 * leaves its core to the processes it waits for (workers often share the coordinator's host).
 */
static inline void skv_poll_pause(skv_poll_kind kind, double waited_s) {
    if (waited_s < 2e-4) return;
    if (waited_s < (kind == SKV_POLL_IDLE ? 5e-3 : 2e-3)) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, kind == SKV_POLL_IDLE ? 100000 : 50000};
    nanosleep(&ts, NULL);
}

#endif /* SUBKV_SKV_POLL_H */
