/* server.c — see server.h. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "skv_frame.h"
#include "skv_poll.h"
#include "subkv.h"
#include "subkv.pb-c.h"

typedef struct client {
    int fd;
    uint64_t id; /* connection number: the client its sequences are charged to */
    uint8_t *in;
    size_t in_len, in_cap;
    skv_buf out;
    size_t out_sent;
    int closing; /* close once out is flushed */
} client;

static int set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int listen_tcp(const char *addr) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "subkv-coordinator: --listen wants HOST:PORT, got '%s'\n", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "subkv-coordinator: %s: %s\n", addr, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            fprintf(stderr, "subkv-coordinator: cannot listen on %s: %s\n", addr, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) set_nonblocking(fd);
    return fd;
}

static int listen_unix(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "subkv-coordinator: unix socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    unlink(path); /* a stale socket of an earlier run */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        fprintf(stderr, "subkv-coordinator: cannot listen on unix:%s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    set_nonblocking(fd);
    return fd;
}

static void client_free(client *cl) {
    if (cl->fd >= 0) close(cl->fd);
    free(cl->in);
    skv_buf_free(&cl->out);
    memset(cl, 0, sizeof *cl);
    cl->fd = -1;
}

/* Append a frame header placeholder, let the engine append the reply, patch the length. */
static skv_handle_result respond(skv_coord *c, const skv_server_opts *o, client *cl,
                                 const uint8_t *req, size_t len) {
    skv_buf *b = &cl->out;
    uint8_t hdr[4] = {0};
    const size_t at = b->len;
    if (b->len + 4 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        uint8_t *p = realloc(b->data, cap);
        if (!p) return SKV_HANDLE_CLOSE;
        b->data = p, b->cap = cap;
    }
    memcpy(b->data + b->len, hdr, 4);
    b->len += 4;
    skv_handle_result r = skv_coord_handle_client(c, cl->id, req, len, o->token, b);
    if (b->len == at + 4) { /* the engine could not grow the buffer: drop the client */
        b->len = at;
        return SKV_HANDLE_CLOSE;
    }
    skv_frame_header(b->data + at, (uint32_t)(b->len - at - 4));
    return r;
}

/* Error reply for a frame refused before decoding (too large). */
static void refuse(client *cl, uint32_t flen, uint32_t max) {
    /* a tiny Reply by hand would duplicate the engine: build it with protobuf-c */
    Subkv__Reply rep = SUBKV__REPLY__INIT;
    char msg[128];
    snprintf(msg, sizeof msg, "frame of %u bytes exceeds the limit of %u", flen, max);
    rep.status = SKV_ERR_PROTOCOL;
    rep.message = msg;
    size_t len = subkv__reply__get_packed_size(&rep);
    uint8_t *p = realloc(cl->out.data, cl->out.len + 4 + len);
    if (!p) return;
    cl->out.data = p;
    cl->out.cap = cl->out.len + 4 + len;
    skv_frame_header(p + cl->out.len, (uint32_t)len);
    subkv__reply__pack(&rep, p + cl->out.len + 4);
    cl->out.len += 4 + len;
}

/* Handle every complete frame in cl's buffer. Returns 1 on a shutdown request. */
static int handle_frames(skv_coord *c, const skv_server_opts *o, client *cl) {
    size_t pos = 0;
    int shutdown = 0;
    while (!cl->closing && cl->in_len - pos >= 4) {
        uint32_t flen = skv_frame_length(cl->in + pos);
        if (flen > o->max_frame) {
            refuse(cl, flen, o->max_frame);
            cl->closing = 1;
            break;
        }
        if (cl->in_len - pos < 4 + (size_t)flen) break;
        skv_handle_result hr = respond(c, o, cl, cl->in + pos + 4, flen);
        pos += 4 + (size_t)flen;
        if (hr == SKV_HANDLE_CLOSE) cl->closing = 1;
        if (hr == SKV_HANDLE_SHUTDOWN) shutdown = 1;
    }
    memmove(cl->in, cl->in + pos, cl->in_len - pos);
    cl->in_len -= pos;
    return shutdown;
}

/* One read (poll is level-triggered: more comes next round); then handle every complete
 * frame. The buffer never holds more than one maximal frame plus one read. Returns 1 on a
 * shutdown request. */
static int on_readable(skv_coord *c, const skv_server_opts *o, client *cl) {
    const size_t chunk = 65536, limit = (size_t)o->max_frame + 4 + chunk;
    if (cl->in_cap - cl->in_len < chunk && cl->in_cap < limit) {
        size_t cap = cl->in_cap ? 2 * cl->in_cap : chunk;
        while (cap - cl->in_len < chunk && cap < limit) cap *= 2;
        if (cap > limit) cap = limit;
        uint8_t *p = realloc(cl->in, cap);
        if (!p) {
            cl->closing = 2;
            return 0;
        }
        cl->in = p, cl->in_cap = cap;
    }
    ssize_t r = recv(cl->fd, cl->in + cl->in_len, cl->in_cap - cl->in_len, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) { /* peer closed (or reset): nothing more to answer */
        cl->closing = 2;
        return 0;
    }
    cl->in_len += (size_t)r;
    return handle_frames(c, o, cl);
}

static void on_writable(client *cl) {
    while (cl->out_sent < cl->out.len) {
        ssize_t w =
            send(cl->fd, cl->out.data + cl->out_sent, cl->out.len - cl->out_sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w < 0) {
            cl->closing = 2;
            return;
        }
        cl->out_sent += (size_t)w;
    }
    cl->out.len = cl->out_sent = 0;
}

/* A worker is lost: answer what every client has sent so far (the engine fails each request
 * at once with the message naming the worker), reading what its socket holds. */
static void answer_pending(skv_coord *c, const skv_server_opts *o, client *cls, int n) {
    for (int i = 0; i < n; i++) {
        client *cl = &cls[i];
        if (cl->fd < 0 || cl->closing) continue;
        (void)handle_frames(c, o, cl);
        for (int k = 0; k < 64 && !cl->closing; k++) { /* EAGAIN reads cost little */
            (void)on_readable(c, o, cl);
            if (cl->out.len > cl->out_sent) on_writable(cl);
        }
    }
}

/* Periodic checkpoint when one is due; returns the next time one is due. */
static double maybe_checkpoint(skv_coord *c, const skv_server_opts *o, double due) {
    if (o->checkpoint_every_s <= 0 || !o->checkpoint_dir) return 0;
    const double t = skv_now_s();
    if (t < due) return due;
    skv_err err;
    if (skv_coord_checkpoint(c, o->checkpoint_dir, &err) != SKV_OK)
        fprintf(stderr, "subkv-coordinator: periodic checkpoint to %s failed: %s: %s\n",
                o->checkpoint_dir, subkv_status_name(err.code), err.msg);
    else if (o->verbose)
        fprintf(stderr, "subkv-coordinator: periodic checkpoint to %s\n", o->checkpoint_dir);
    return skv_now_s() + o->checkpoint_every_s;
}

/* Best effort: push what is queued for every client before the service stops. */
static void flush_all(client *cls, int n) {
    for (int i = 0; i < n; i++) {
        if (cls[i].fd < 0) continue;
        int fl = fcntl(cls[i].fd, F_GETFL, 0);
        fcntl(cls[i].fd, F_SETFL, fl & ~O_NONBLOCK);
        on_writable(&cls[i]);
    }
}

int skv_server_run(skv_coord *c, const skv_server_opts *o, volatile sig_atomic_t *stop) {
    int lfd[2] = {-1, -1}, nl = 0;
    if (o->listen && (lfd[nl++] = listen_tcp(o->listen)) < 0) return 1;
    if (o->unix_path && (lfd[nl++] = listen_unix(o->unix_path)) < 0) {
        if (lfd[0] >= 0) close(lfd[0]);
        return 1;
    }
    if (nl == 0) {
        fprintf(stderr, "subkv-coordinator: nothing to listen on (give --listen or --unix)\n");
        return 1;
    }
    const int maxc = o->max_clients > 0 ? o->max_clients : 256;
    client *cls = calloc((size_t)maxc, sizeof *cls);
    struct pollfd *pfd = calloc((size_t)(maxc + 2), sizeof *pfd);
    if (!cls || !pfd) {
        free(cls);
        free(pfd);
        return 1;
    }
    for (int i = 0; i < maxc; i++) cls[i].fd = -1;
    int shutdown = 0;
    uint64_t next_client = 1;
    double ckpt_due = o->checkpoint_every_s > 0 ? skv_now_s() + o->checkpoint_every_s : 0;
    while (!shutdown && !skv_coord_lost(c)) {
        if (*stop) { /* told to stop, or the runtime's teardown after a worker died */
            (void)skv_coord_check_workers(c);
            break;
        }
        ckpt_due = maybe_checkpoint(c, o, ckpt_due);
        if (skv_coord_lost(c)) break;
        int timeout_ms = 1000;
        if (ckpt_due > 0) {
            const double left = ckpt_due - skv_now_s();
            timeout_ms = left <= 0 ? 0 : left < 1.0 ? (int)(left * 1000.0) + 1 : 1000;
        }
        int np = 0;
        for (int i = 0; i < nl; i++) pfd[np++] = (struct pollfd){.fd = lfd[i], .events = POLLIN};
        for (int i = 0; i < maxc; i++) {
            client *cl = &cls[i];
            short ev = cl->closing ? 0 : POLLIN;
            if (cl->out.len > cl->out_sent) ev |= POLLOUT;
            pfd[np++] = (struct pollfd){.fd = cl->fd, .events = ev}; /* fd -1 is ignored */
        }
        int pr = poll(pfd, (nfds_t)np, timeout_ms);
        if (pr < 0 && errno != EINTR) {
            perror("subkv-coordinator: poll");
            break;
        }
        if (pr == 0) (void)skv_coord_check_workers(c); /* idle: notice a dead worker now */
        if (pr <= 0) continue;
        for (int i = 0; i < nl; i++) {
            if (!(pfd[i].revents & POLLIN)) continue;
            int fd;
            while ((fd = accept(lfd[i], NULL, NULL)) >= 0) {
                int slot = -1;
                for (int k = 0; k < maxc && slot < 0; k++)
                    if (cls[k].fd < 0) slot = k;
                if (slot < 0) { /* full: refuse politely by closing */
                    close(fd);
                    continue;
                }
                set_nonblocking(fd);
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
                           sizeof one); /* fails on unix: fine */
                cls[slot].fd = fd;
                cls[slot].id = next_client++;
            }
        }
        for (int i = 0; i < maxc && !shutdown && !skv_coord_lost(c); i++) {
            client *cl = &cls[i];
            short re = pfd[nl + i].revents;
            if (cl->fd < 0 || !re) continue;
            if (re & (POLLIN | POLLHUP | POLLERR)) shutdown = on_readable(c, o, cl);
            if (cl->out.len > cl->out_sent && cl->closing != 2) on_writable(cl);
            if (cl->closing == 2 || (cl->closing && cl->out.len == cl->out_sent)) client_free(cl);
        }
    }
    const int lost = skv_coord_lost(c) != NULL;
    if (lost) answer_pending(c, o, cls, maxc);
    flush_all(cls, maxc);
    for (int i = 0; i < maxc; i++)
        if (cls[i].fd >= 0) client_free(&cls[i]);
    for (int i = 0; i < nl; i++) close(lfd[i]);
    if (o->unix_path) unlink(o->unix_path);
    free(cls);
    free(pfd);
    return lost ? SKV_SERVER_WORKER_LOST : 0;
}
