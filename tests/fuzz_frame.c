/*
 * fuzz_frame.c — libFuzzer harness for the frame reader skv_frame_recv (proto/skv_frame.h).
 *
 * The input is written into one end of a Unix socketpair (at most 64 KiB, which fits the
 * socket buffer, so the write never blocks), that end is closed, and frames are read from
 * the other with a 1 MiB limit until the reader reports EOF, a short frame or an oversized
 * length. Each frame it returns must have a length within the limit that matches its
 * header in the input, and the byte count consumed must never exceed the input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "skv_frame.h"

enum { MAX_INPUT = 64 << 10 };
#define MAX_FRAME (1u << 20)

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_frame: " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) size = MAX_INPUT;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) FUZZ_FAIL("socketpair: %s", strerror(errno));
    int sndbuf = 2 * MAX_INPUT;
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(sv[0], data + off, size - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) FUZZ_FAIL("write to the socketpair: %s", strerror(errno));
        off += (size_t)w;
    }
    close(sv[0]);

    size_t pos = 0;
    for (;;) {
        uint8_t *frame = NULL;
        uint32_t len = 0;
        int rc = skv_frame_recv(sv[1], MAX_FRAME, &frame, &len);
        if (rc != 0) {
            if (frame) FUZZ_FAIL("failed recv (rc %d) returned a buffer", rc);
            if (rc == -2 && (size - pos < 4 || skv_frame_length(data + pos) <= MAX_FRAME))
                FUZZ_FAIL("oversized-frame error for a frame within the limit");
            break;
        }
        if (size - pos < SKV_FRAME_HEADER) FUZZ_FAIL("frame returned past the input's end");
        const uint32_t want = skv_frame_length(data + pos);
        if (len != want || len > MAX_FRAME || len > size - pos - SKV_FRAME_HEADER)
            FUZZ_FAIL("frame of %u bytes, header says %u, %zu bytes left", len, want,
                      size - pos - SKV_FRAME_HEADER);
        if (len && memcmp(frame, data + pos + SKV_FRAME_HEADER, len) != 0)
            FUZZ_FAIL("frame payload differs from the input");
        pos += SKV_FRAME_HEADER + len;
        free(frame);
    }
    close(sv[1]);
    return 0;
}
