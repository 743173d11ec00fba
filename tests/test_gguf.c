/*
 * test_gguf.c — the GGUF reader (tools/gguf.h): a file holding metadata of every type and
 * tensors of every dequantised type reads back value for value; every truncation is refused;
 * random byte flips in the header / metadata / tensor-info region give an error or a file
 * whose every tensor lies inside the image (never a crash or an out-of-bounds read, which
 * ASan would catch); targeted corruptions get their own codes; dequantisation matches blocks
 * computed by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <unistd.h>

#include "gguf.h"
#include "gguf_build.h"
#include "test_util.h"

/* The test file: its metadata values (random per run) and tensor bytes. */
typedef struct sample {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    float f32;
    uint8_t b;
    uint64_t u64;
    int64_t i64;
    double f64;
    int32_t iarr[5];
    float farr[3];
    uint8_t q8[2 * 34], q40[18], q41[2 * 20];
    uint16_t f16[8], bf16[8];
    float f32t[12];
} sample;

static const char *const STRS[] = {"hello", "", "Ġthe", "<|im_start|>"};

static uint16_t half_bits(synth_rng *r) { /* a finite half in [-2, 2] */
    return skv_f32_to_f16((float)(4.0 * synth_rng_uniform(r) - 2.0));
}

static void sample_fill(synth_rng *r, sample *s) {
    memset(s, 0, sizeof *s);
    s->u8 = (uint8_t)synth_rng_u64(r), s->i8 = (int8_t)synth_rng_u64(r);
    s->u16 = (uint16_t)synth_rng_u64(r), s->i16 = (int16_t)synth_rng_u64(r);
    s->u32 = (uint32_t)synth_rng_u64(r), s->i32 = -(int32_t)(synth_rng_u64(r) >> 34);
    s->f32 = (float)synth_rng_normal(r), s->b = 1, s->u64 = synth_rng_u64(r) | (1ull << 63);
    s->i64 = -(int64_t)(synth_rng_u64(r) >> 2), s->f64 = synth_rng_normal(r);
    for (int i = 0; i < 5; i++) s->iarr[i] = (int32_t)(synth_rng_u64(r) >> 33) - (1 << 29);
    for (int i = 0; i < 3; i++) s->farr[i] = (float)synth_rng_normal(r);
    for (size_t i = 0; i < sizeof s->q8; i++) s->q8[i] = (uint8_t)synth_rng_u64(r);
    for (size_t i = 0; i < sizeof s->q40; i++) s->q40[i] = (uint8_t)synth_rng_u64(r);
    for (size_t i = 0; i < sizeof s->q41; i++) s->q41[i] = (uint8_t)synth_rng_u64(r);
    for (int b = 0; b < 2; b++) { /* scales must be finite halves */
        uint16_t d = half_bits(r), m = half_bits(r);
        memcpy(s->q8 + 34 * b, &d, 2);
        memcpy(s->q41 + 20 * b, &d, 2);
        memcpy(s->q41 + 20 * b + 2, &m, 2);
    }
    uint16_t d = half_bits(r);
    memcpy(s->q40, &d, 2);
    for (int i = 0; i < 8; i++) {
        s->f16[i] = half_bits(r);
        s->bf16[i] = skv_f32_to_bf16((float)synth_rng_normal(r));
    }
    synth_fill_normal(r, s->f32t, 12, 1.0f);
}

/* Build the image of s (alignment 32 or 64). */
static skv_buf sample_image(const sample *s, uint32_t alignment) {
    gguf_builder b;
    gguf_build_init(&b, alignment);
    gguf_build_scalar(&b, "t.u8", GGUF_TYPE_UINT8, &s->u8);
    gguf_build_scalar(&b, "t.i8", GGUF_TYPE_INT8, &s->i8);
    gguf_build_scalar(&b, "t.u16", GGUF_TYPE_UINT16, &s->u16);
    gguf_build_scalar(&b, "t.i16", GGUF_TYPE_INT16, &s->i16);
    gguf_build_scalar(&b, "t.u32", GGUF_TYPE_UINT32, &s->u32);
    gguf_build_scalar(&b, "t.i32", GGUF_TYPE_INT32, &s->i32);
    gguf_build_scalar(&b, "t.f32", GGUF_TYPE_FLOAT32, &s->f32);
    gguf_build_scalar(&b, "t.bool", GGUF_TYPE_BOOL, &s->b);
    gguf_build_string(&b, "t.str", "subkv ✓");
    gguf_build_scalar(&b, "t.u64", GGUF_TYPE_UINT64, &s->u64);
    gguf_build_scalar(&b, "t.i64", GGUF_TYPE_INT64, &s->i64);
    gguf_build_scalar(&b, "t.f64", GGUF_TYPE_FLOAT64, &s->f64);
    gguf_build_array(&b, "t.iarr", GGUF_TYPE_INT32, s->iarr, 5);
    gguf_build_array(&b, "t.farr", GGUF_TYPE_FLOAT32, s->farr, 3);
    gguf_build_str_array(&b, "t.sarr", STRS, 4);
    gguf_build_array(&b, "t.empty", GGUF_TYPE_UINT8, NULL, 0);
    gguf_build_tensor(&b, "f32", 2, (uint64_t[]){4, 3}, GGML_F32, s->f32t, sizeof s->f32t);
    gguf_build_tensor(&b, "f16", 1, (uint64_t[]){8}, GGML_F16, s->f16, sizeof s->f16);
    gguf_build_tensor(&b, "bf16", 1, (uint64_t[]){8}, GGML_BF16, s->bf16, sizeof s->bf16);
    gguf_build_tensor(&b, "q4_0", 1, (uint64_t[]){32}, GGML_Q4_0, s->q40, sizeof s->q40);
    gguf_build_tensor(&b, "q4_1", 2, (uint64_t[]){32, 2}, GGML_Q4_1, s->q41, sizeof s->q41);
    gguf_build_tensor(&b, "q8_0", 3, (uint64_t[]){64, 1, 1}, GGML_Q8_0, s->q8, sizeof s->q8);
    skv_buf img = {0};
    skv_err err = {0};
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    return img;
}

static gguf_file *open_ok(const skv_buf *img) {
    gguf_file *f = NULL;
    skv_err err = {0};
    TU_OK(gguf_open_memory(img->data, img->len, &f, &err), &err);
    return f;
}

/* Hand-decoded values of the sample's tensors (independent of gguf_dequant). */
static float ref_q8(const sample *s, int i) {
    const uint8_t *blk = s->q8 + 34 * (i / 32);
    uint16_t d;
    memcpy(&d, blk, 2);
    return skv_f16_to_f32(d) * (float)(int8_t)blk[2 + i % 32];
}
static float ref_q40(const sample *s, int i) {
    uint16_t d;
    memcpy(&d, s->q40, 2);
    const int j = i % 16, q = i < 16 ? (s->q40[2 + j] & 15) : (s->q40[2 + j] >> 4);
    return skv_f16_to_f32(d) * (float)(q - 8);
}
static float ref_q41(const sample *s, int i) {
    const uint8_t *blk = s->q41 + 20 * (i / 32);
    uint16_t d, m;
    memcpy(&d, blk, 2);
    memcpy(&m, blk + 2, 2);
    const int k = i % 32, j = k % 16, q = k < 16 ? (blk[4 + j] & 15) : (blk[4 + j] >> 4);
    return skv_f16_to_f32(d) * (float)q + skv_f16_to_f32(m);
}

static void check_tensor(const gguf_file *f, const char *name, uint32_t type, uint64_t n,
                         const float *want) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    assert_non_null(t);
    assert_int_equal(t->type, type);
    assert_int_equal(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3], n);
    assert_int_equal((t->data - f->base - f->data_offset) % f->alignment, 0);
    float *got = tu_malloc(n * sizeof(float));
    skv_err err = {0};
    TU_OK(gguf_dequant(t->type, t->data, n, got, &err), &err);
    for (uint64_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s[%llu] = %g, expected %g", name, (unsigned long long)i, (double)got[i],
                     (double)want[i]);
    free(got);
}

static void check_sample(const gguf_file *f, const sample *s) {
    skv_err err = {0};
    int64_t i64;
    uint64_t u64;
    uint32_t u32;
    double f64;
    float f32;
    int b;
    TU_OK(gguf_get_i64(f, "t.u8", &i64, &err), &err);
    assert_int_equal(i64, s->u8);
    TU_OK(gguf_get_i64(f, "t.i8", &i64, &err), &err);
    assert_int_equal(i64, s->i8);
    TU_OK(gguf_get_i64(f, "t.u16", &i64, &err), &err);
    assert_int_equal(i64, s->u16);
    TU_OK(gguf_get_i64(f, "t.i16", &i64, &err), &err);
    assert_int_equal(i64, s->i16);
    TU_OK(gguf_get_u32(f, "t.u32", &u32, &err), &err);
    assert_int_equal(u32, s->u32);
    TU_OK(gguf_get_i64(f, "t.i32", &i64, &err), &err);
    assert_int_equal(i64, s->i32);
    TU_OK(gguf_get_f32(f, "t.f32", &f32, &err), &err);
    assert_true(f32 == s->f32);
    TU_OK(gguf_get_bool(f, "t.bool", &b, &err), &err);
    assert_int_equal(b, 1);
    TU_OK(gguf_get_u64(f, "t.u64", &u64, &err), &err);
    assert_true(u64 == s->u64);
    TU_OK(gguf_get_i64(f, "t.i64", &i64, &err), &err);
    assert_true(i64 == s->i64);
    TU_OK(gguf_get_f64(f, "t.f64", &f64, &err), &err);
    assert_true(f64 == s->f64);
    gguf_str str;
    TU_OK(gguf_get_str(f, "t.str", &str, &err), &err);
    assert_true(gguf_str_eq(str, "subkv ✓"));
    const gguf_kv *kv = gguf_find_kv(f, "t.iarr");
    assert_non_null(kv);
    for (int i = 0; i < 5; i++) {
        TU_OK(gguf_arr_i64(kv, (uint64_t)i, &i64, &err), &err);
        assert_int_equal(i64, s->iarr[i]);
    }
    kv = gguf_find_kv(f, "t.farr");
    for (int i = 0; i < 3; i++) {
        TU_OK(gguf_arr_f64(kv, (uint64_t)i, &f64, &err), &err);
        assert_true(f64 == (double)s->farr[i]);
    }
    kv = gguf_find_kv(f, "t.sarr");
    for (int i = 3; i >= 0; i--) { /* any order: the index gives random access */
        TU_OK(gguf_arr_str(kv, (uint64_t)i, &str, &err), &err);
        assert_true(gguf_str_eq(str, STRS[i]));
    }
    gguf_type et;
    TU_OK(gguf_get_arr(f, "t.empty", &et, &u64, &err), &err);
    assert_int_equal(et, GGUF_TYPE_UINT8);
    assert_int_equal(u64, 0);

    float want[64];
    check_tensor(f, "f32", GGML_F32, 12, s->f32t);
    for (int i = 0; i < 8; i++) want[i] = skv_f16_to_f32(s->f16[i]);
    check_tensor(f, "f16", GGML_F16, 8, want);
    for (int i = 0; i < 8; i++) want[i] = skv_bf16_to_f32(s->bf16[i]);
    check_tensor(f, "bf16", GGML_BF16, 8, want);
    for (int i = 0; i < 32; i++) want[i] = ref_q40(s, i);
    check_tensor(f, "q4_0", GGML_Q4_0, 32, want);
    for (int i = 0; i < 64; i++) want[i] = ref_q41(s, i);
    check_tensor(f, "q4_1", GGML_Q4_1, 64, want);
    for (int i = 0; i < 64; i++) want[i] = ref_q8(s, i);
    check_tensor(f, "q8_0", GGML_Q8_0, 64, want);
}

static void test_gguf_every_type_round_trips(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    for (uint32_t alignment = 32; alignment <= 64; alignment *= 2) {
        sample s;
        sample_fill(&r, &s);
        skv_buf img = sample_image(&s, alignment);
        gguf_file *f = open_ok(&img);
        assert_int_equal(f->version, 3);
        assert_int_equal(f->alignment, alignment);
        assert_int_equal(f->n_tensors, 6);
        assert_int_equal(f->data_offset % alignment, 0);
        check_sample(f, &s);
        gguf_close(f);
        /* the same through a file and mmap */
        char path[] = "/tmp/skv_gguf_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, img.data, img.len), (ssize_t)img.len);
        close(fd);
        skv_err err = {0};
        TU_OK(gguf_open(path, &f, &err), &err);
        check_sample(f, &s);
        gguf_close(f);
        unlink(path);
        skv_buf_free(&img);
    }
}

static void test_gguf_getters_report_missing_wrong_type_and_range(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    sample s;
    sample_fill(&r, &s);
    skv_buf img = sample_image(&s, 32);
    gguf_file *f = open_ok(&img);
    skv_err err = {0};
    uint32_t u32;
    float f32;
    gguf_str str;
    assert_int_equal(gguf_get_u32(f, "no.such", &u32, &err), SKV_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "no.such"));
    assert_int_equal(gguf_get_u32(f, "t.str", &u32, &err), SKV_ERR_CORRUPT);
    assert_int_equal(gguf_get_u32(f, "t.u64", &u32, &err), SKV_ERR_CORRUPT); /* > 2^32 */
    assert_int_equal(gguf_get_u32(f, "t.i64", &u32, &err), SKV_ERR_CORRUPT); /* negative */
    assert_int_equal(gguf_get_f32(f, "t.u32", &f32, &err), SKV_ERR_CORRUPT);
    assert_int_equal(gguf_get_str(f, "t.sarr", &str, &err), SKV_ERR_CORRUPT);
    const gguf_kv *kv = gguf_find_kv(f, "t.sarr");
    assert_int_equal(gguf_arr_str(kv, 4, &str, &err), SKV_ERR_INVALID_ARG);
    int64_t i64;
    assert_int_equal(gguf_arr_i64(kv, 0, &i64, &err), SKV_ERR_CORRUPT);
    const gguf_tensor *t;
    assert_int_equal(gguf_tensor_expect(f, "nope", 0, 1, (uint64_t[]){8}, &t, &err),
                     SKV_ERR_NOT_FOUND);
    assert_int_equal(gguf_tensor_expect(f, "f16", 0, 1, (uint64_t[]){9}, &t, &err), SKV_ERR_SHAPE);
    assert_int_equal(gguf_tensor_expect(f, "f16", 1u << GGML_F32, 1, (uint64_t[]){8}, &t, &err),
                     SKV_ERR_UNSUPPORTED);
    TU_OK(gguf_tensor_expect(f, "q4_1", 1u << GGML_Q4_1, 2, (uint64_t[]){32, 2}, &t, &err), &err);
    gguf_close(f);
    skv_buf_free(&img);
}

static void test_gguf_every_truncation_is_refused(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    sample s;
    sample_fill(&r, &s);
    skv_buf img = sample_image(&s, 32);
    for (size_t n = 0; n < img.len; n++) {
        uint8_t *cut = tu_malloc(n); /* exactly n bytes: ASan sees any read past them */
        memcpy(cut, img.data, n);
        gguf_file *f = NULL;
        skv_err err = {0};
        subkv_status st = gguf_open_memory(cut, n, &f, &err);
        if (st == SKV_OK) fail_msg("a %zu-byte prefix of %zu opened", n, img.len);
        assert_null(f);
        free(cut);
    }
    skv_buf_free(&img);
}

static void test_gguf_byte_flips_never_escape_the_image(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    sample s;
    sample_fill(&r, &s);
    skv_buf img = sample_image(&s, 32);
    gguf_file *f0 = open_ok(&img);
    const size_t meta_end = (size_t)f0->data_offset;
    gguf_close(f0);
    int opened = 0, refused = 0;
    for (int trial = 0; trial < 3000; trial++) {
        uint8_t *bad = tu_malloc(img.len);
        memcpy(bad, img.data, img.len);
        const int flips = 1 + (int)(synth_rng_u64(&r) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = synth_rng_u64(&r) % meta_end;
            bad[at] ^= (uint8_t)(1u << (synth_rng_u64(&r) % 8));
        }
        gguf_file *f = NULL;
        skv_err err = {0};
        if (gguf_open_memory(bad, img.len, &f, &err) == SKV_OK) {
            opened++;
            for (uint64_t i = 0; i < f->n_tensors; i++) { /* every tensor inside the image */
                const gguf_tensor *t = &f->tensors[i];
                assert_true(t->data >= bad && t->nbytes <= img.len &&
                            (size_t)(t->data - bad) <= img.len - t->nbytes);
            }
            gguf_close(f);
        } else {
            refused++;
            assert_true(err.code != SKV_OK && err.msg[0] != '\0');
        }
        free(bad);
    }
    printf("# byte flips: %d opened (values changed), %d refused\n", opened, refused);
    assert_true(refused > 0);
    skv_buf_free(&img);
}

/* A minimal image with one tensor info written raw, to corrupt fields one at a time. */
static subkv_status open_one_tensor(uint32_t n_dims, const uint64_t *ne, uint32_t type,
                                    uint64_t offset, uint64_t data_bytes) {
    gguf_builder b;
    gguf_build_init(&b, 32);
    uint8_t *data = calloc(1, data_bytes ? data_bytes : 1);
    assert_non_null(data);
    gguf_build_tensor(&b, "t", n_dims, ne, type, data, data_bytes);
    skv_buf img = {0};
    skv_err err = {0};
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    /* patch the offset: the last 8 bytes of the tensor info precede the padding */
    const size_t info_end = 24 + 8 + 1 + 4 + 8ull * n_dims + 4 + 8;
    memcpy(img.data + info_end - 8, &offset, 8);
    gguf_file *f = NULL;
    subkv_status st = gguf_open_memory(img.data, img.len, &f, &err);
    gguf_close(f);
    skv_buf_free(&img);
    free(data);
    return st;
}

static void test_gguf_targeted_corruptions_have_their_codes(void **state) {
    (void)state;
    gguf_file *f = NULL;
    skv_err err = {0};
    uint8_t hdr[24] = "GGUF";
    uint32_t v = 3;
    memcpy(hdr + 4, &v, 4);
    TU_OK(gguf_open_memory(hdr, 24, &f, &err), &err); /* empty but valid */
    gguf_close(f);
    hdr[0] = 'X';
    assert_int_equal(gguf_open_memory(hdr, 24, &f, &err), SKV_ERR_CORRUPT);
    hdr[0] = 'G', v = 4;
    memcpy(hdr + 4, &v, 4);
    assert_int_equal(gguf_open_memory(hdr, 24, &f, &err), SKV_ERR_VERSION);
    v = 3;
    memcpy(hdr + 4, &v, 4);
    const uint64_t huge = UINT64_MAX / 2;
    memcpy(hdr + 16, &huge, 8);
    assert_int_equal(gguf_open_memory(hdr, 24, &f, &err), SKV_ERR_TRUNCATED);
    /* tensors: misaligned offset, overflowing shape, partial block, unknown type, past end */
    uint64_t ne[4] = {8, 2};
    assert_int_equal(open_one_tensor(2, ne, GGML_F32, 0, 64), SKV_OK);
    assert_int_equal(open_one_tensor(2, ne, GGML_F32, 4, 64), SKV_ERR_CORRUPT);
    assert_int_equal(open_one_tensor(2, ne, GGML_F32, 32, 64), SKV_ERR_TRUNCATED);
    assert_int_equal(open_one_tensor(2, ne, 77, 0, 64), SKV_ERR_UNSUPPORTED);
    assert_int_equal(open_one_tensor(2, ne, GGML_Q8_0, 0, 64), SKV_ERR_CORRUPT); /* 8 % 32 */
    uint64_t big[4] = {1ull << 40, 1ull << 40, 1ull << 40, 1};
    assert_int_equal(open_one_tensor(4, big, GGML_F32, 0, 64), SKV_ERR_CORRUPT);
    assert_int_equal(open_one_tensor(0, ne, GGML_F32, 0, 0), SKV_ERR_CORRUPT);
    /* duplicate keys, nested arrays, a bad alignment */
    gguf_builder b;
    gguf_build_init(&b, 32);
    uint32_t one = 1;
    gguf_build_scalar(&b, "k", GGUF_TYPE_UINT32, &one);
    gguf_build_scalar(&b, "k", GGUF_TYPE_UINT32, &one);
    skv_buf img = {0};
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    assert_int_equal(gguf_open_memory(img.data, img.len, &f, &err), SKV_ERR_CORRUPT);
    assert_non_null(strstr(err.msg, "duplicate"));
    skv_buf_free(&img);
    gguf_build_init(&b, 32);
    gguf_build_array(&b, "nested", GGUF_TYPE_ARRAY, NULL, 0);
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    assert_int_equal(gguf_open_memory(img.data, img.len, &f, &err), SKV_ERR_UNSUPPORTED);
    skv_buf_free(&img);
    gguf_build_init(&b, 32);
    uint32_t three = 3;
    gguf_build_scalar(&b, "general.alignment", GGUF_TYPE_UINT32, &three);
    TU_OK(gguf_build_finish(&b, &img, &err), &err);
    assert_int_equal(gguf_open_memory(img.data, img.len, &f, &err), SKV_ERR_CORRUPT);
    skv_buf_free(&img);
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &f, &err), SKV_ERR_IO);
}

static void test_gguf_dequant_matches_hand_computed_blocks(void **state) {
    (void)state;
    skv_err err = {0};
    float out[32];
    /* q8_0: d = 0.5 (f16 0x3800), q[j] = j - 16 -> x = (j - 16) / 2 */
    uint8_t q8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    TU_OK(gguf_dequant(GGML_Q8_0, q8, 32, out, &err), &err);
    for (int j = 0; j < 32; j++) assert_true(out[j] == (float)(j - 16) * 0.5f);
    /* q4_0: d = 2 (0x4000), qs[j] = lo 1, hi 15 -> x[j] = (1-8)*2 = -14, x[j+16] = 14 */
    uint8_t q40[18] = {0x00, 0x40};
    memset(q40 + 2, 0xF1, 16);
    TU_OK(gguf_dequant(GGML_Q4_0, q40, 32, out, &err), &err);
    for (int j = 0; j < 16; j++) assert_true(out[j] == -14.0f && out[j + 16] == 14.0f);
    /* q4_1: d = 0.25 (0x3400), m = -1 (0xBC00), lo 3, hi 10 -> -0.25 and 1.5 */
    uint8_t q41[20] = {0x00, 0x34, 0x00, 0xBC};
    memset(q41 + 4, 0xA3, 16);
    TU_OK(gguf_dequant(GGML_Q4_1, q41, 32, out, &err), &err);
    for (int j = 0; j < 16; j++) assert_true(out[j] == -0.25f && out[j + 16] == 1.5f);
    /* f16 1, -2; bf16 1, 3.140625 */
    uint16_t h[2] = {0x3C00, 0xC000}, bf[2] = {0x3F80, 0x4049};
    TU_OK(gguf_dequant(GGML_F16, h, 2, out, &err), &err);
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    TU_OK(gguf_dequant(GGML_BF16, bf, 2, out, &err), &err);
    assert_true(out[0] == 1.0f && out[1] == 3.140625f);
    assert_int_equal(gguf_dequant(GGML_Q8_0, q8, 16, out, &err), SKV_ERR_INVALID_ARG);
    assert_int_equal(gguf_dequant(12 /* q4_k */, q8, 256, out, &err), SKV_ERR_UNSUPPORTED);
}

int main(void) {
    tu_suite_begin("gguf");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_every_type_round_trips),
        cmocka_unit_test(test_gguf_getters_report_missing_wrong_type_and_range),
        cmocka_unit_test(test_gguf_every_truncation_is_refused),
        cmocka_unit_test(test_gguf_byte_flips_never_escape_the_image),
        cmocka_unit_test(test_gguf_targeted_corruptions_have_their_codes),
        cmocka_unit_test(test_gguf_dequant_matches_hand_computed_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
