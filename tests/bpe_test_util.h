/*
 * bpe_test_util.h — CMocka helpers shared by the tokenizer suites (test_bpe.c,
 * test_bpe_model.c). Header-only, static; include after <cmocka.h> and test_util.h.
 */
#ifndef SUBKV_BPE_TEST_UTIL_H
#define SUBKV_BPE_TEST_UTIL_H

#include <time.h>

#include "bpe.h"
#include "bpe_test_vocab.h"

#define GPL3 "/usr/share/common-licenses/GPL-3"

static inline skv_bpe *bt_make(const bt_vocab *v, const char *pre) {
    skv_bpe *b = NULL;
    skv_err err = {0};
    TU_OK(bt_create(v, pre, &b, &err), &err);
    return b;
}

/* Encode and compare with the expected ids. */
static inline void expect_ids(const skv_bpe *b, const char *text, unsigned flags,
                              const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    skv_err err = {0};
    TU_OK(skv_bpe_encode(b, text, strlen(text), flags, &ids, &n, NULL, &err), &err);
    int same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        printf("# '%s': got", text);
        for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
        printf(", want");
        for (size_t i = 0; i < n_want; i++) printf(" %d", want[i]);
        printf("\n");
    }
    free(ids);
    assert_true(same);
}
#define EXPECT(b, text, flags, ...)                                                                \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        expect_ids(b, text, flags, want_, sizeof want_ / sizeof want_[0]);                         \
    } while (0)

/* decode(encode(text)) must equal `want` (text itself, or text less its dropped bytes). */
static inline void expect_round_trip(const skv_bpe *b, const char *text, size_t len,
                                     const char *want, size_t want_len, size_t want_dropped) {
    int32_t *ids = NULL;
    size_t n = 0, dropped = 0, out_len = 0;
    char *out = NULL;
    skv_err err = {0};
    TU_OK(skv_bpe_encode(b, text, len, 0, &ids, &n, &dropped, &err), &err);
    assert_true(n <= len);
    TU_OK(skv_bpe_decode(b, ids, n, &out, &out_len, &err), &err);
    assert_int_equal(dropped, want_dropped);
    assert_int_equal(out_len, want_len);
    assert_memory_equal(out, want, want_len);
    free(ids);
    free(out);
}

static inline char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Append the UTF-8 of cp to s. */
static inline size_t put_utf8(uint32_t cp, char *s) {
    if (cp < 0x80) return s[0] = (char)cp, 1;
    if (cp < 0x800) return s[0] = (char)(0xc0 | cp >> 6), s[1] = (char)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return s[0] = (char)(0xe0 | cp >> 12), s[1] = (char)(0x80 | (cp >> 6 & 63)),
               s[2] = (char)(0x80 | (cp & 63)), 3;
    return s[0] = (char)(0xf0 | cp >> 18), s[1] = (char)(0x80 | (cp >> 12 & 63)),
           s[2] = (char)(0x80 | (cp >> 6 & 63)), s[3] = (char)(0x80 | (cp & 63)), 4;
}

/* Random UTF-8 of about len bytes: words of letters of several scripts, digits, spaces,
 * punctuation, combining marks, emoji, odd spaces, and any scalar value now and then. With
 * avoid_missing, no character uses a byte SmolLM2 lacks (controls 04 06 13 14 16 1D, and
 * the lead bytes F1/F2 of U+40000..U+BFFFF). */
static inline char *random_utf8(synth_rng *r, size_t len, int avoid_missing, size_t *out_len) {
    static const uint32_t ranges[][2] = {
        {'a', 'z'},       {'A', 'Z'},     {'0', '9'},         {' ', ' '},       {'!', '/'},
        {0xa0, 0xff},     {0x391, 0x3c9}, {0x410, 0x44f},     {0x4e00, 0x9fff}, {0xac00, 0xd7a3},
        {0x300, 0x36f},   {0x660, 0x669}, {0x1f300, 0x1faff}, {0x85, 0x85},     {0x2028, 0x2029},
        {0x3000, 0x3000}, {'\t', '\r'},   {0x1, 0x1f},        {0x0, 0x10ffff},  {'\'', '\''},
    };
    size_t nr = sizeof ranges / sizeof ranges[0];
    char *s = tu_malloc(len + 8);
    size_t n = 0;
    while (n < len) {
        const uint32_t *rg = ranges[tu_rand_range(r, 0, nr - 1)];
        uint32_t cp = (uint32_t)tu_rand_range(r, rg[0], rg[1]);
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        if (avoid_missing && (cp == 4 || cp == 6 || cp == 0x13 || cp == 0x14 || cp == 0x16 ||
                              cp == 0x1d || (cp >= 0x40000 && cp < 0xc0000)))
            continue;
        n += put_utf8(cp, s + n);
    }
    *out_len = n;
    return s;
}

/* CPU seconds of this process: encode speeds are reported per CPU second, which the other
 * jobs of a shared machine disturb far less than the wall clock. */
static inline double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif /* SUBKV_BPE_TEST_UTIL_H */
