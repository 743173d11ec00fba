/*
 * test_frame.c — length-prefixed frames (proto/skv_frame.h): the header is little-endian;
 * frames of any size cross a socketpair intact (short reads and writes included); a frame
 * over the limit is refused with -2 before anything is allocated; a closed peer is an error
 * (EPIPE on send, not SIGPIPE); connect parses and reports bad addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "skv_frame.h"
#include "test_util.h"

static void test_frame_header_is_little_endian(void **state) {
    (void)state;
    uint8_t h[4];
    skv_frame_header(h, 0x01020304u);
    assert_int_equal(h[0], 4);
    assert_int_equal(h[1], 3);
    assert_int_equal(h[2], 2);
    assert_int_equal(h[3], 1);
    assert_int_equal(skv_frame_length(h), 0x01020304u);
    synth_rng r;
    tu_rng_for(&r, __func__);
    const uint32_t edge[] = {0, 1, 255, 256, 0xffffffffu};
    for (size_t i = 0; i < 5; i++) {
        skv_frame_header(h, edge[i]);
        assert_int_equal(skv_frame_length(h), edge[i]);
    }
    for (int i = 0; i < 1000; i++) {
        uint32_t v = (uint32_t)synth_rng_u64(&r);
        skv_frame_header(h, v);
        assert_int_equal(skv_frame_length(h), v);
    }
}

typedef struct sender {
    int fd;
    const uint8_t *data;
    uint32_t len;
    int rc, err;
} sender;

static void *send_thread(void *arg) {
    sender *s = arg;
    s->rc = skv_frame_send(s->fd, s->data, s->len);
    s->err = errno;
    return NULL;
}

static void test_frame_round_trip_over_socketpair(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* Sizes past the socket buffer force short writes and reads. */
    const uint32_t sizes[] = {0, 1, 3, 4096, 65537, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t n = sizes[i];
        uint8_t *data = tu_malloc(n);
        for (uint32_t j = 0; j < n; j++) data[j] = (uint8_t)synth_rng_u64(&r);
        sender s = {sv[0], data, n, -1, 0};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, send_thread, &s), 0);
        uint8_t *got = NULL;
        uint32_t len = 12345;
        assert_int_equal(skv_frame_recv(sv[1], 4u << 20, &got, &len), 0);
        pthread_join(th, NULL);
        assert_int_equal(s.rc, 0);
        assert_non_null(got);
        assert_int_equal(len, n);
        if (n) assert_memory_equal(got, data, n);
        free(got);
        free(data);
    }
    close(sv[0]);
    close(sv[1]);
}

static void test_frame_over_max_is_refused_without_allocation(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t payload[1000] = {0};
    assert_int_equal(skv_frame_send(sv[0], payload, sizeof payload), 0);
    uint8_t *got = (uint8_t *)&got; /* must be reset to NULL */
    uint32_t len = 7;
    assert_int_equal(skv_frame_recv(sv[1], 999, &got, &len), -2);
    assert_int_equal(errno, EMSGSIZE);
    assert_null(got);
    assert_int_equal(len, 0);
    /* A header announcing 4 GiB - 1 with the default ceiling: refused before malloc. */
    uint8_t h[4];
    skv_frame_header(h, 0xffffffffu);
    int sv2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    assert_int_equal(write(sv2[0], h, 4), 4);
    assert_int_equal(skv_frame_recv(sv2[1], SKV_FRAME_DEFAULT_MAX, &got, &len), -2);
    assert_null(got);
    close(sv[0]), close(sv[1]), close(sv2[0]), close(sv2[1]);
}

static void test_frame_closed_peer_fails_cleanly(void **state) {
    (void)state;
    int sv[2];
    uint8_t *got = NULL;
    uint32_t len = 0;
    /* Clean EOF before a header. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[0]);
    assert_int_equal(skv_frame_recv(sv[1], 1024, &got, &len), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_null(got);
    /* Send to a closed peer: EPIPE, and the test process is still alive (no SIGPIPE). */
    uint8_t p[16] = {1};
    assert_int_equal(skv_frame_send(sv[1], p, sizeof p), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    close(sv[1]);
    /* EOF in the middle of a payload. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t h[4];
    skv_frame_header(h, 100);
    assert_int_equal(write(sv[0], h, 4), 4);
    assert_int_equal(write(sv[0], p, 10), 10);
    close(sv[0]);
    assert_int_equal(skv_frame_recv(sv[1], 1024, &got, &len), -1);
    assert_null(got);
    /* EOF inside the header. */
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[0], h, 2), 2);
    close(sv[0]);
    assert_int_equal(skv_frame_recv(sv[1], 1024, &got, &len), -1);
    close(sv[1]);
}

static void test_frame_connect_reports_bad_addresses(void **state) {
    (void)state;
    char msg[256];
    const char *bad[] = {"", "nocolon", ":7439", "127.0.0.1:", "unix:", "[::1]7439"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = '\0';
        assert_int_equal(skv_socket_connect(bad[i], msg, sizeof msg), -1);
        assert_true(msg[0] != '\0');
    }
    assert_int_equal(skv_socket_connect("unix:/nonexistent/skv.sock", msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "No such file"));
}

static void test_frame_connect_unix_socket_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/skv_frame_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64], addr[80], msg[256];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(ls, 1), 0);
    int c = skv_socket_connect(addr, msg, sizeof msg);
    if (c < 0) fail_msg("connect %s: %s", addr, msg);
    int s = accept(ls, NULL, NULL);
    assert_true(s >= 0);
    assert_int_equal(skv_frame_send(c, "hello", 5), 0);
    uint8_t *got = NULL;
    uint32_t len = 0;
    assert_int_equal(skv_frame_recv(s, 64, &got, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "hello", 5);
    free(got);
    close(c), close(s), close(ls);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    tu_suite_begin("frame");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header_is_little_endian),
        cmocka_unit_test(test_frame_round_trip_over_socketpair),
        cmocka_unit_test(test_frame_over_max_is_refused_without_allocation),
        cmocka_unit_test(test_frame_closed_peer_fails_cleanly),
        cmocka_unit_test(test_frame_connect_reports_bad_addresses),
        cmocka_unit_test(test_frame_connect_unix_socket_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
