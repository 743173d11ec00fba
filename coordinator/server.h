/*
 * server.h — the coordinator's socket front end: TCP and/or a Unix socket, length-prefixed
 * frames (proto/skv_frame.h), many clients in one poll loop. Requests run one at a time in
 * arrival order, so clients interleave safely; one client's bad frame or disconnect closes
 * only that client.
 */
#ifndef SUBKV_SERVER_H
#define SUBKV_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "coord.h"

typedef struct skv_server_opts {
    const char *listen;    /* "HOST:PORT", or NULL for no TCP listener */
    const char *unix_path; /* Unix socket path, or NULL */
    const char *token;     /* shared auth token, or NULL */
    uint32_t max_frame;    /* largest request accepted, bytes */
    int max_clients;
    int verbose;
    double checkpoint_every_s;  /* > 0: write a checkpoint generation this often */
    const char *checkpoint_dir; /* where (required with checkpoint_every_s) */
} skv_server_opts;

/* skv_server_run's exit code once a worker is lost (skv_coord_lost). */
enum { SKV_SERVER_WORKER_LOST = 3 };

/*
 * Serve until a client's shutdown request or *stop becomes non-zero (a signal handler sets
 * it). Returns 0 after a clean stop, non-zero when the listeners could not be set up
 * (message on stderr). When a worker is lost, every request already received (the one in
 * flight, and complete frames waiting in any client's buffer or socket) is answered with
 * SKV_ERR_WORKER_LOST naming the worker, the replies are flushed, and it returns
 * SKV_SERVER_WORKER_LOST. Each connection is its own client for the limits (coord.h).
 */
int skv_server_run(skv_coord *c, const skv_server_opts *o, volatile sig_atomic_t *stop);

#endif /* SUBKV_SERVER_H */
