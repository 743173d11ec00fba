/*
 * test_util.h — shared helpers for the CMocka suites (header-only, static inline).
 *
 * Seeds: each suite draws one fresh seed in main (tu_suite_begin), prints it, and every
 * test derives its own stream from (suite seed, test name), so one printed number
 * reproduces a failing run:   SUBKV_TEST_SEED=<seed> ./test_x
 * Include after <stdarg.h> <stddef.h> <setjmp.h> <stdint.h> and <cmocka.h>.
 */
#ifndef SUBKV_TEST_UTIL_H
#define SUBKV_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subkv.h"
#include "synth.h"

/* The suite's seed and name; written once by tu_suite_begin() in main, read by the tests. */
static uint64_t tu_suite_seed;
static const char *tu_suite_name = "test";

static inline void tu_suite_begin(const char *suite) {
    tu_suite_name = suite;
    tu_suite_seed = synth_fresh_seed();
    printf("# %s: seed %llu (reproduce with SUBKV_TEST_SEED=%llu)\n", suite,
           (unsigned long long)tu_suite_seed, (unsigned long long)tu_suite_seed);
    fflush(stdout);
}

/* A per-test seed: the suite seed mixed with an FNV-1a hash of the test's name. */
static inline uint64_t tu_seed_for(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    synth_rng r;
    synth_rng_seed(&r, tu_suite_seed ^ h);
    return synth_rng_u64(&r);
}

static inline void tu_rng_for(synth_rng *r, const char *name) {
    synth_rng_seed(r, tu_seed_for(name));
}

/* Uniform integer in [lo, hi]. */
static inline size_t tu_rand_range(synth_rng *r, size_t lo, size_t hi) {
    return lo + (size_t)(synth_rng_u64(r) % (uint64_t)(hi - lo + 1));
}

/* malloc that fails the test instead of returning NULL. */
static inline void *tu_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

/* Fresh K[n][d], V[n][d] ~ N(0, 1) (never zeros). Caller frees both. */
static inline void tu_make_random_kv(synth_rng *r, size_t n, int d, float **K, float **V) {
    *K = tu_malloc(n * (size_t)d * sizeof(float));
    *V = tu_malloc(n * (size_t)d * sizeof(float));
    synth_fill_normal(r, *K, n * (size_t)d, 1.0f);
    synth_fill_normal(r, *V, n * (size_t)d, 1.0f);
}

/* An array of g partials at stride skv_partial_stride(d), each set empty. */
static inline skv_partial *tu_partials_new(int g, int d) {
    skv_partial *p = tu_malloc((size_t)g * skv_partial_stride(d));
    for (int h = 0; h < g; h++) skv_partial_init(skv_partial_at(p, d, (size_t)h), d);
    return p;
}

/* Fail with the library's message when a call did not return SKV_OK. */
#define TU_OK(call, errp)                                                                          \
    do {                                                                                           \
        subkv_status tu_st_ = (call);                                                              \
        if (tu_st_ != SKV_OK)                                                                      \
            fail_msg("%s -> %s: %s", #call, subkv_status_name(tu_st_), (errp)->msg);               \
    } while (0)

static inline skv_sketch *tu_create(const skv_config *cfg) {
    skv_sketch *s = NULL;
    skv_err err = {0};
    TU_OK(skv_sketch_create(cfg, &s, &err), &err);
    assert_non_null(s);
    return s;
}

static inline void tu_append(skv_sketch *s, const float *K, const float *V, size_t n, int d) {
    skv_err err = {0};
    TU_OK(skv_sketch_append(s, K, V, n, d, &err), &err);
}

/* Append in chunks of at most `chunk` tokens. */
static inline void tu_append_chunked(skv_sketch *s, const float *K, const float *V, size_t n, int d,
                                     size_t chunk) {
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        tu_append(s, K + i * (size_t)d, V + i * (size_t)d, m, d);
    }
}

static inline void tu_attend(skv_sketch *s, const float *Q, int g, int d, skv_partial *out) {
    skv_err err = {0};
    TU_OK(skv_sketch_attend(s, Q, g, d, out, &err), &err);
}

/* Attend g heads and write the g outputs o/l into out[g][d]. */
static inline void tu_attend_output(skv_sketch *s, const float *Q, int g, int d, float *out) {
    skv_partial *p = tu_partials_new(g, d);
    tu_attend(s, Q, g, d, p);
    for (int h = 0; h < g; h++)
        skv_partial_output(skv_partial_at(p, d, (size_t)h), d, out + (size_t)h * d);
    free(p);
}

static inline int tu_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Assert ||a - b|| / ||b|| <= tol, printing the error and the context on failure. */
#define TU_ASSERT_REL_CLOSE(a, b, d, tol, ...)                                                     \
    do {                                                                                           \
        double tu_e_ = synth_rel_error((a), (b), (d));                                             \
        if (!(tu_e_ <= (tol))) {                                                                   \
            char tu_ctx_[256];                                                                     \
            snprintf(tu_ctx_, sizeof tu_ctx_, __VA_ARGS__);                                        \
            fail_msg("relative error %.3e > %.1e (%s)", tu_e_, (double)(tol), tu_ctx_);            \
        }                                                                                          \
    } while (0)

/* Float vs float relative error: ||a - b|| / ||b||. */
static inline double tu_rel_error_ff(const float *a, const float *b, int d) {
    double num = 0.0, den = 0.0;
    for (int j = 0; j < d; j++) {
        double e = (double)a[j] - (double)b[j];
        num += e * e;
        den += (double)b[j] * (double)b[j];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Serialize a sketch; caller frees with skv_buf_free. */
static inline skv_buf tu_save(const skv_sketch *s) {
    skv_buf b = {0};
    skv_err err = {0};
    TU_OK(skv_sketch_save(s, &b, &err), &err);
    assert_true(b.len > 0);
    return b;
}

static inline int tu_bufs_equal(const skv_buf *a, const skv_buf *b) {
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

#endif /* SUBKV_TEST_UTIL_H */
