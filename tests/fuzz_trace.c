/*
 * fuzz_trace.c — libFuzzer harness for the trace reader (tools/trace.h).
 *
 * The input becomes a file (a memfd, opened through /proc/self/fd, so nothing touches the
 * disk); trace_reader_open validates it, and every layer is read into buffers sized from
 * the validated shape (which, the file size having been checked against it, are never
 * larger than the input). Each input is tried as given and with the header checksum
 * repaired, so the fuzzer gets past the crc32c to the shape and size checks. A file that
 * opens must have exactly the size its shape implies, and every layer must read.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "skv_internal.h"
#include "trace.h"

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_trace: " __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static void try_read(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz_trace", 0);
    if (fd < 0) FUZZ_FAIL("memfd_create failed");
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) FUZZ_FAIL("write to the memfd failed");
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    trace_reader *r = NULL;
    skv_err e;
    if (trace_reader_open(path, &r, &e) == SKV_OK) {
        const trace_shape *s = trace_reader_shape(r);
        const size_t qn = trace_q_floats(s), kvn = trace_kv_floats(s);
        const uint64_t want = TRACE_HEADER_BYTES + (uint64_t)s->layers * (qn + 2 * kvn) * 4;
        if (want != size)
            FUZZ_FAIL("opened a %zu-byte file whose shape implies %llu", size,
                      (unsigned long long)want);
        float *Q = malloc(qn * sizeof *Q), *K = malloc(kvn * sizeof *K),
              *V = malloc(kvn * sizeof *V);
        if (!Q || !K || !V) FUZZ_FAIL("out of memory for a %zu-byte trace", size);
        for (uint32_t l = 0; l < s->layers; l++)
            if (trace_read_layer(r, l, Q, K, V, &e) != SKV_OK)
                FUZZ_FAIL("layer %u of a validated trace: %s", l, e.msg);
        if (trace_read_layer(r, s->layers, Q, K, V, &e) == SKV_OK)
            FUZZ_FAIL("layer %u of a %u-layer trace read", s->layers, s->layers);
        free(Q);
        free(K);
        free(V);
        trace_reader_close(r);
    } else if (r) {
        FUZZ_FAIL("failed open returned a reader");
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_read(data, size);
    if (size < TRACE_HEADER_BYTES) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    const uint32_t crc = skv_crc32c(copy, 40);
    memcpy(copy + 40, &crc, 4);
    if (memcmp(copy, data, size) != 0) try_read(copy, size);
    free(copy);
    return 0;
}
