/*
 * svc_check.h — assertions and probes the service suite shares (header-only): status checks
 * with the service's message, bit-exact output comparison, numbers parsed from the stats
 * text, raw reply frames and connection-close checks, directory removal, and the GPU probe
 * of the suites that start workers with --backend cuda.
 * Include after <cmocka.h>, test_util.h and svc_harness.h.
 */
#ifndef SUBKV_SVC_CHECK_H
#define SUBKV_SVC_CHECK_H

#include <dirent.h>
#include <inttypes.h>

#include "skv_backend.h"
#include "skv_frame.h"
#include "subkv.pb-c.h"
#include "subkv_client.h"
#include "svc_harness.h"

#define SVC_OK(call, errp)                                                                         \
    do {                                                                                           \
        skv_err *e_ = (errp);                                                                      \
        subkv_status st_ = (call);                                                                 \
        if (st_ != SKV_OK) fail_msg("%s -> %s: %s", #call, subkv_status_name(st_), e_->msg);       \
    } while (0)

#define SVC_EXPECT(want, call, errp)                                                               \
    do {                                                                                           \
        skv_err *e_ = (errp);                                                                      \
        subkv_status st_ = (call);                                                                 \
        if (st_ != (want))                                                                         \
            fail_msg("%s -> %s (%s), expected %s", #call, subkv_status_name(st_), e_->msg,         \
                     subkv_status_name(want));                                                     \
    } while (0)

/* The number of CUDA devices here, when at least n; else skips the calling test, saying why
 * (the workers' --backend cuda needs them). */
static inline int svc_need_gpus(int n) {
    skv_backend_info bi;
    skv_backend_select(0, &bi);
    if (bi.kind != SKV_BACKEND_CUDA) {
        printf("# skipped: no GPU: %s\n", bi.reason);
        skip();
    }
    if (bi.device_count < n) {
        printf("# skipped: needs %d GPUs, this machine has %d\n", n, bi.device_count);
        skip();
    }
    return bi.device_count;
}

/* Fail with the position of the first difference when two output arrays are not identical. */
static inline void svc_assert_bits_equal(const float *got, const float *want, size_t n,
                                         const char *what) {
    if (memcmp(got, want, n * sizeof(float)) == 0) return;
    size_t i = 0;
    while (i < n && memcmp(&got[i], &want[i], sizeof(float)) == 0) i++;
    fail_msg("%s: service output differs from the in-process replica at [%zu]: %.9g vs %.9g", what,
             i, (double)got[i], (double)want[i]);
}

/* Parse "total bytes: N" and "sequences: N" from skv_client_stats text. */
static inline void svc_stats_numbers(skv_client *c, uint64_t *total, uint64_t *nseq) {
    char text[16384];
    skv_err err = {0};
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    const char *t = strstr(text, "total bytes:"), *s = strstr(text, "sequences:");
    if (!t || !s) fail_msg("stats text lacks 'total bytes' or 'sequences':\n%s", text);
    *total = strtoull(t + strlen("total bytes:"), NULL, 10);
    *nseq = strtoull(s + strlen("sequences:"), NULL, 10);
}

/* Tokens of layer 0 of sequence id from the stats text; -1 when it is not listed. */
static inline long long svc_stats_tokens_layer0(skv_client *c, uint64_t id) {
    char text[16384], key[64];
    skv_err err = {0};
    SVC_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    snprintf(key, sizeof key, "\nseq %-6" PRIu64, id);
    const char *p = strstr(text, key);
    if (!p) return -1;
    const char *t = strstr(p, "tokens(layer 0)");
    if (!t) return -1;
    return strtoll(t + strlen("tokens(layer 0)"), NULL, 10);
}

static inline void svc_rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[1024];
        const int n = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (n > 0 && (size_t)n < sizeof sub) svc_rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

/* Read one reply frame within 10 s: 0 with *rep, 1 when the peer closed first, -1 error. */
static inline int svc_raw_reply(int fd, Subkv__Reply **rep) {
    uint8_t hdr[4];
    *rep = NULL;
    int r = svc_raw_recv(fd, hdr, 4, 10.0);
    if (r != 0) return r == 1 ? 1 : (errno == ECONNRESET ? 1 : -1);
    uint32_t len = skv_frame_length(hdr);
    if (len > (1u << 20)) return -1;
    uint8_t *buf = tu_malloc(len ? len : 1);
    if (svc_raw_recv(fd, buf, len, 10.0) != 0) {
        free(buf);
        return -1;
    }
    *rep = subkv__reply__unpack(NULL, len, buf);
    free(buf);
    return *rep ? 0 : -1;
}

/* The server closes the connection (EOF or reset) within 10 s, sending nothing more. */
static inline void svc_assert_closed_by_server(int fd) {
    uint8_t b;
    int r = svc_raw_recv(fd, &b, 1, 10.0);
    if (r == 1 || (r == -1 && errno == ECONNRESET)) return;
    fail_msg("expected the server to close the connection; got %s",
             r == 0 ? "more bytes" : strerror(errno));
}

#endif /* SUBKV_SVC_CHECK_H */
