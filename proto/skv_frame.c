/*
 * skv_frame.c — length-prefixed frames on a blocking stream socket (see skv_frame.h).
 *
 * Frame: u32 little-endian payload length, then the payload. Sends go out as one
 * sendmsg() of two iovecs (header + payload), so with TCP_NODELAY a small frame is one
 * segment; MSG_NOSIGNAL turns a write to a closed peer into EPIPE instead of SIGPIPE.
 * Every loop retries EINTR and resumes after short transfers. Plain POSIX 2008.
 */
#include "skv_frame.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* Write the 4-byte little-endian header for a payload of len bytes. */
void skv_frame_header(uint8_t hdr[4], uint32_t len) {
    hdr[0] = (uint8_t)(len & 0xffu);
    hdr[1] = (uint8_t)((len >> 8) & 0xffu);
    hdr[2] = (uint8_t)((len >> 16) & 0xffu);
    hdr[3] = (uint8_t)((len >> 24) & 0xffu);
}

/* Payload length announced by a 4-byte little-endian header. */
uint32_t skv_frame_length(const uint8_t hdr[4]) {
    return (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
           (uint32_t)hdr[3] << 24;
}

/*
 * Send every byte of iov[0..cnt) (cnt <= 2). sendmsg with MSG_NOSIGNAL on sockets;
 * plain write() when fd is not a socket (pipes in tests). Returns 0 or -1 with errno.
 */
static int send_all(int fd, struct iovec *iov, int cnt) {
    int use_write = 0;
    while (cnt > 0) {
        if (iov[0].iov_len == 0) {
            iov++, cnt--;
            continue;
        }
        ssize_t w;
        if (use_write) {
            w = write(fd, iov[0].iov_base, iov[0].iov_len);
        } else {
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)cnt;
            w = sendmsg(fd, &mh, MSG_NOSIGNAL);
            if (w < 0 && errno == ENOTSOCK) {
                use_write = 1;
                continue;
            }
        }
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        size_t done = (size_t)w;
        while (cnt > 0 && done >= iov[0].iov_len) {
            done -= iov[0].iov_len;
            iov++, cnt--;
        }
        if (cnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + done;
            iov[0].iov_len -= done;
        }
    }
    return 0;
}

/* Read exactly n bytes. EOF before n bytes: -1 with errno = ECONNRESET. */
static int recv_all(int fd, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = ECONNRESET;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Send one frame: header + payload. 0 on success, -1 with errno. */
int skv_frame_send(int fd, const void *payload, uint32_t len) {
    uint8_t hdr[SKV_FRAME_HEADER];
    skv_frame_header(hdr, len);
    struct iovec iov[2];
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof hdr;
    iov[1].iov_base = (void *)payload;
    iov[1].iov_len = payload ? len : 0;
    if (!payload && len > 0) {
        errno = EINVAL;
        return -1;
    }
    return send_all(fd, iov, 2);
}

/*
 * Receive one frame into a malloc'd buffer (*out; at least 1 byte even for an empty
 * payload). -2 when the announced length exceeds max_len (errno = EMSGSIZE; nothing
 * allocated, the payload is left unread: the stream is out of sync, close it).
 */
int skv_frame_recv(int fd, uint32_t max_len, uint8_t **out, uint32_t *len) {
    int rc = -1;
    uint8_t hdr[SKV_FRAME_HEADER];
    uint8_t *buf = NULL;
    if (!out || !len) {
        errno = EINVAL;
        goto done;
    }
    *out = NULL;
    *len = 0;
    if (recv_all(fd, hdr, sizeof hdr) != 0) goto done;
    uint32_t n = skv_frame_length(hdr);
    if (n > max_len) {
        errno = EMSGSIZE;
        rc = -2;
        goto done;
    }
    buf = malloc(n ? n : 1);
    if (!buf) {
        errno = ENOMEM;
        goto done;
    }
    if (recv_all(fd, buf, n) != 0) goto done;
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
done:
    if (buf) {
        int e = errno;
        free(buf);
        errno = e;
    }
    return rc;
}

/* Connect to a Unix-domain stream socket at path. */
static int connect_unix(const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path) {
        snprintf(err, errlen, "unix socket path '%s' is empty or longer than %zu bytes", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(AF_UNIX): %s", strerror(errno));
        return -1;
    }
    int r;
    do r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        snprintf(err, errlen, "connect unix:%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Split "HOST:PORT" or "[V6HOST]:PORT" into host[hl] and port[pl]; 0 or -1. */
static int split_host_port(const char *addr, char *host, size_t hl, char *port, size_t pl) {
    const char *colon;
    const char *h = addr;
    size_t hn;
    if (addr[0] == '[') {
        const char *close_br = strchr(addr, ']');
        if (!close_br || close_br[1] != ':') return -1;
        h = addr + 1;
        hn = (size_t)(close_br - h);
        colon = close_br + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) return -1;
        hn = (size_t)(colon - addr);
    }
    size_t pn = strlen(colon + 1);
    if (hn == 0 || hn >= hl || pn == 0 || pn >= pl) return -1;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memcpy(port, colon + 1, pn + 1);
    return 0;
}

/* Connect over TCP to the first address of HOST:PORT that accepts; TCP_NODELAY on. */
static int connect_tcp(const char *addr, char *err, size_t errlen) {
    char host[256], port[32];
    if (split_host_port(addr, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errlen, "bad address '%s' (want HOST:PORT, [V6]:PORT or unix:PATH)", addr);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gr = getaddrinfo(host, port, &hints, &res);
    if (gr != 0) {
        snprintf(err, errlen, "resolve %s: %s", addr, gai_strerror(gr));
        return -1;
    }
    int fd = -1, last_errno = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int r;
        do r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (r < 0 && errno == EINTR);
        if (r == 0) break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "connect %s: %s", addr, strerror(last_errno ? last_errno : EINVAL));
        return -1;
    }
    int one = 1;
    /* Best effort: a failure here costs latency, not correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Open a stream socket to "HOST:PORT" or "unix:PATH"; the fd or -1 with err filled. */
int skv_socket_connect(const char *addr, char *err, size_t errlen) {
    char dummy[8];
    if (!err || errlen == 0) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    if (!addr || !*addr) {
        snprintf(err, errlen, "empty address");
        return -1;
    }
    if (strncmp(addr, "unix:", 5) == 0) return connect_unix(addr + 5, err, errlen);
    return connect_tcp(addr, err, errlen);
}
