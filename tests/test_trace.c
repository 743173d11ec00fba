/*
 * test_trace.c — the trace format (tools/trace.h): a random trace reads back bit for bit;
 * every truncation, every corrupted header byte, a trailing byte, another version or dtype
 * and absurd shapes are refused with their own status codes, before any allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

#include "skv_internal.h"
#include "test_util.h"
#include "trace.h"

/* A scratch directory per test, removed with its files by dir_cleanup. */
typedef struct scratch {
    char dir[64];
    char path[128];
    char cut[128];
} scratch;

static void scratch_init(scratch *s) {
    snprintf(s->dir, sizeof s->dir, "/tmp/skv_trace_XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->path, sizeof s->path, "%s/t.skvt", s->dir);
    snprintf(s->cut, sizeof s->cut, "%s/cut.skvt", s->dir);
}

static void scratch_fini(scratch *s) {
    remove(s->path);
    remove(s->cut);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
    remove(tmp);
    rmdir(s->dir);
}

/* A random small shape. */
static trace_shape random_shape(synth_rng *r) {
    trace_shape s;
    s.kv_heads = (uint32_t)tu_rand_range(r, 1, 3);
    s.q_heads = s.kv_heads * (uint32_t)tu_rand_range(r, 1, 3);
    s.layers = (uint32_t)tu_rand_range(r, 1, 3);
    s.head_dim = (uint32_t)tu_rand_range(r, 1, 9);
    s.n_tokens = tu_rand_range(r, 1, 7);
    return s;
}

/* Write a random trace of shape s to path; returns all its floats layer by layer. */
static float *write_random_trace(synth_rng *r, const trace_shape *s, const char *path) {
    size_t qn = trace_q_floats(s), kn = trace_kv_floats(s), per = qn + 2 * kn;
    float *all = tu_malloc(per * s->layers * sizeof(float));
    synth_fill_normal(r, all, per * s->layers, 1.0f);
    trace_writer *w = NULL;
    skv_err err = {0};
    TU_OK(trace_writer_open(path, s, &w, &err), &err);
    for (uint32_t l = 0; l < s->layers; l++) {
        const float *base = all + per * l;
        TU_OK(trace_writer_write_layer(w, l, base, base + qn, base + qn + kn, &err), &err);
    }
    TU_OK(trace_writer_close(w, &err), &err);
    return all;
}

/* Whole file into memory. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    assert_true(n >= 0);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = tu_malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Status of opening path (the reader is closed again on success). */
static subkv_status open_status(const char *path) {
    trace_reader *r = NULL;
    skv_err err = {0};
    subkv_status st = trace_reader_open(path, &r, &err);
    if (st == SKV_OK) {
        assert_non_null(r);
        trace_reader_close(r);
    } else {
        assert_null(r);
        assert_true(err.msg[0] != '\0');
    }
    return st;
}

static void test_trace_round_trip_is_bit_exact(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (int rep = 0; rep < 10; rep++) {
        scratch sc = {0};
        scratch_init(&sc);
        trace_shape s = random_shape(&r);
        float *all = write_random_trace(&r, &s, sc.path);
        trace_reader *rd = NULL;
        skv_err err = {0};
        TU_OK(trace_reader_open(sc.path, &rd, &err), &err);
        const trace_shape *got = trace_reader_shape(rd);
        assert_memory_equal(got, &s, sizeof s);
        size_t qn = trace_q_floats(&s), kn = trace_kv_floats(&s), per = qn + 2 * kn;
        float *Q = tu_malloc(qn * sizeof(float)), *K = tu_malloc(kn * sizeof(float));
        float *V = tu_malloc(kn * sizeof(float));
        for (uint32_t l = s.layers; l-- > 0;) { /* any order */
            TU_OK(trace_read_layer(rd, l, Q, K, V, &err), &err);
            assert_memory_equal(Q, all + per * l, qn * sizeof(float));
            assert_memory_equal(K, all + per * l + qn, kn * sizeof(float));
            assert_memory_equal(V, all + per * l + qn + kn, kn * sizeof(float));
            TU_OK(trace_read_layer(rd, l, NULL, K, NULL, &err), &err); /* partial read */
            assert_memory_equal(K, all + per * l + qn, kn * sizeof(float));
        }
        assert_int_equal(trace_read_layer(rd, s.layers, Q, K, V, &err), SKV_ERR_INVALID_ARG);
        trace_reader_close(rd);
        free(Q), free(K), free(V), free(all);
        scratch_fini(&sc);
    }
}

static void test_trace_every_truncation_and_extension_is_refused(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    scratch sc = {0};
    scratch_init(&sc);
    trace_shape s = random_shape(&r);
    free(write_random_trace(&r, &s, sc.path));
    size_t len;
    uint8_t *b = slurp(sc.path, &len);
    assert_int_equal(open_status(sc.path), SKV_OK);
    for (size_t cut = 0; cut < len; cut++) {
        spit(sc.cut, b, cut);
        subkv_status st = open_status(sc.cut);
        if (st != SKV_ERR_TRUNCATED)
            fail_msg("cut at %zu of %zu: %s", cut, len, subkv_status_name(st));
    }
    uint8_t *longer = tu_malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    spit(sc.cut, longer, len + 1);
    assert_int_equal(open_status(sc.cut), SKV_ERR_CORRUPT);
    free(longer);
    free(b);
    scratch_fini(&sc);
}

static void test_trace_any_header_byte_flip_is_refused(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    scratch sc = {0};
    scratch_init(&sc);
    trace_shape s = random_shape(&r);
    free(write_random_trace(&r, &s, sc.path));
    size_t len;
    uint8_t *b = slurp(sc.path, &len);
    for (size_t i = 0; i < TRACE_HEADER_BYTES; i++) {
        uint8_t saved = b[i];
        b[i] ^= (uint8_t)(1u << tu_rand_range(&r, 0, 7));
        spit(sc.cut, b, len);
        subkv_status st = open_status(sc.cut);
        subkv_status want = (i >= 4 && i < 8) ? SKV_ERR_VERSION : SKV_ERR_CORRUPT;
        if (st != want)
            fail_msg("flip at byte %zu: got %s, want %s", i, subkv_status_name(st),
                     subkv_status_name(want));
        b[i] = saved;
    }
    free(b);
    scratch_fini(&sc);
}

/* Re-checksum a hand-edited header. */
static void reseal(uint8_t *h) {
    uint32_t c = skv_crc32c(h, 40);
    for (int i = 0; i < 4; i++) h[40 + i] = (uint8_t)(c >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_trace_other_version_and_dtype_have_their_own_codes(void **state) {
    (void)state;
    trace_shape s = {1, 2, 1, 4, 3};
    uint8_t h[TRACE_HEADER_BYTES];
    trace_shape out;
    skv_err err = {0};
    uint64_t size = TRACE_HEADER_BYTES + 3u * (2 + 2) * 4 * 4;
    trace_header_encode(&s, h);
    TU_OK(trace_header_decode(h, size, &out, &err), &err);
    put32(h + 4, 2);
    reseal(h);
    assert_int_equal(trace_header_decode(h, size, &out, &err), SKV_ERR_VERSION);
    trace_header_encode(&s, h);
    put32(h + 32, 1);
    reseal(h);
    assert_int_equal(trace_header_decode(h, size, &out, &err), SKV_ERR_UNSUPPORTED);
    trace_header_encode(&s, h);
    put32(h + 36, 7);
    reseal(h);
    assert_int_equal(trace_header_decode(h, size, &out, &err), SKV_ERR_CORRUPT);
}

static void test_trace_absurd_shapes_are_refused(void **state) {
    (void)state;
    const trace_shape bad[] = {
        {0, 8, 2, 64, 10},
        {1025, 8, 2, 64, 10},
        {1, 2048, 2, 64, 10},
        {1, 8, 0, 64, 10},
        {1, 8, 3, 64, 10},
        {1, 8, 2, 0, 10},
        {1, 8, 2, 4096, 10},
        {1, 8, 2, 64, 0},
        {1024, 1024, 1024, 1024, 1ull << 40},
        {1, 1, 1, 1, UINT64_MAX},
        {2, 4, 2, 8, UINT64_MAX / 64},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t h[TRACE_HEADER_BYTES];
        trace_shape out;
        skv_err err = {0};
        trace_header_encode(&bad[i], h);
        /* Any file size, even the largest: the shape alone is refused. */
        subkv_status st = trace_header_decode(h, UINT64_MAX, &out, &err);
        if (st != SKV_ERR_CORRUPT) fail_msg("shape %zu: got %s", i, subkv_status_name(st));
        trace_writer *w = NULL;
        assert_int_equal(trace_writer_open("/tmp/never-written.skvt", &bad[i], &w, &err),
                         SKV_ERR_SHAPE);
        assert_null(w);
    }
    /* A plausible shape with a file far too short for it: truncated, nothing allocated. */
    trace_shape big = {32, 32, 8, 128, 1ull << 30};
    uint8_t h[TRACE_HEADER_BYTES];
    trace_shape out;
    skv_err err = {0};
    trace_header_encode(&big, h);
    assert_int_equal(trace_header_decode(h, 1 << 20, &out, &err), SKV_ERR_TRUNCATED);
}

static void test_trace_incomplete_writer_leaves_no_file(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    scratch sc = {0};
    scratch_init(&sc);
    trace_shape s = {2, 2, 1, 4, 3};
    float buf[3 * 2 * 4];
    synth_fill_normal(&r, buf, sizeof buf / sizeof buf[0], 1.0f);
    trace_writer *w = NULL;
    skv_err err = {0};
    TU_OK(trace_writer_open(sc.path, &s, &w, &err), &err);
    assert_int_equal(trace_writer_write_layer(w, 1, buf, buf, buf, &err), SKV_ERR_INVALID_ARG);
    TU_OK(trace_writer_write_layer(w, 0, buf, buf, buf, &err), &err);
    assert_int_not_equal(trace_writer_close(w, &err), SKV_OK);
    assert_int_equal(access(sc.path, F_OK), -1);
    assert_int_equal(open_status(sc.path), SKV_ERR_IO);
    scratch_fini(&sc);
}

int main(void) {
    tu_suite_begin("trace");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_round_trip_is_bit_exact),
        cmocka_unit_test(test_trace_every_truncation_and_extension_is_refused),
        cmocka_unit_test(test_trace_any_header_byte_flip_is_refused),
        cmocka_unit_test(test_trace_other_version_and_dtype_have_their_own_codes),
        cmocka_unit_test(test_trace_absurd_shapes_are_refused),
        cmocka_unit_test(test_trace_incomplete_writer_leaves_no_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
