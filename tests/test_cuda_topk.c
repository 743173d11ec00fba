/*
 * test_cuda_topk.c — refreshkv's device top-K and partial-cache gather (skv_cuda_rkv_topk)
 * against the host reference skv_rkv_topk (itself checked by brute force in
 * test_refreshkv_topk.c), on fresh random scores:
 *   - the same tokens in the same order and the same score bits, for n in {1, 7, K-1, K,
 *     K+1, 5000, 300001} x K in {1, 16, 1000, 65536} (K > n selects every token), continuous
 *     and quantised scores (ties: the later token wins; -0 = +0), the jobs of one K batched in
 *     one call with their different n;
 *   - the gathered rows: row i of the partial cache = full row idx[i], for 16-byte rows and an
 *     odd row size (the byte path), rows past the selection untouched;
 *   - more jobs than one launch round takes, with empty jobs (n = 0, k = 0) among them; bad
 *     jobs refused.
 * Without a GPU every test is skipped with the reason printed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "skv_cuda.h"
#include "skv_internal.h"
#include "test_util.h"
#include "gpu_suite.h"

/* Fresh scores: `levels` distinct values in [0, 1) (0: continuous), some -0 among the zeros. */
static void fill_scores(synth_rng *r, float *p, size_t n, int levels) {
    for (size_t i = 0; i < n; i++) {
        const double u = synth_rng_uniform(r);
        p[i] = levels ? (float)(floor(u * levels) / levels) : (float)u;
        if (p[i] == 0.0f && synth_rng_u64(r) % 2) p[i] = -0.0f;
    }
}

static void fill_bytes(synth_rng *r, unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        const uint64_t x = synth_rng_u64(r);
        memcpy(p + i, &x, n - i < 8 ? n - i : 8);
    }
}

/* One job's host side: scores, full rows, and what the device gave back. */
typedef struct tcase {
    size_t n, k, m, rb;
    float *p;
    unsigned char *fk, *fv;
    skv_cuda_topk_job j;
} tcase;

static void case_make(synth_rng *r, tcase *c, size_t n, size_t k, int levels, size_t rb) {
    *c = (tcase){.n = n, .k = k, .m = k < n ? k : n, .rb = rb};
    c->p = tu_malloc(n * sizeof(float));
    fill_scores(r, c->p, n, levels);
    const size_t fb = n * rb, pb = (c->m + 1) * rb; /* one row past the selection: untouched */
    c->fk = tu_malloc(fb), c->fv = tu_malloc(fb);
    fill_bytes(r, c->fk, fb);
    fill_bytes(r, c->fv, fb);
    unsigned char *poison = tu_malloc(pb);
    memset(poison, 0xA5, pb);
    c->j = (skv_cuda_topk_job){.pooled = upload(c->p, n * sizeof(float)),
                               .n = n,
                               .k = (uint32_t)k,
                               .row_bytes = (uint32_t)rb,
                               .idx = upload(NULL, c->m * sizeof(uint32_t)),
                               .score = upload(NULL, c->m * sizeof(float)),
                               .fk = upload(c->fk, fb),
                               .fv = upload(c->fv, fb),
                               .pk = upload(poison, pb),
                               .pv = upload(poison, pb)};
    free(poison);
}

/* The device's answer against skv_rkv_topk, bit for bit; then frees the case. */
static void case_check(tcase *c, const char *what) {
    skv_err err;
    uint32_t *gi = tu_malloc(c->m * sizeof(uint32_t)), *ri = tu_malloc(c->m * sizeof(uint32_t));
    float *gs = tu_malloc(c->m * sizeof(float)), *rs = tu_malloc(c->m * sizeof(float));
    const size_t pb = (c->m + 1) * c->rb;
    unsigned char *pk = tu_malloc(pb), *pv = tu_malloc(pb);
    TU_OK(skv_cuda_download(gi, c->j.idx, c->m * sizeof(uint32_t), &err), &err);
    TU_OK(skv_cuda_download(gs, c->j.score, c->m * sizeof(float), &err), &err);
    TU_OK(skv_cuda_download(pk, c->j.pk, pb, &err), &err);
    TU_OK(skv_cuda_download(pv, c->j.pv, pb, &err), &err);
    size_t got = 0;
    TU_OK(skv_rkv_topk(c->p, c->n, c->k, ri, rs, &got, &err), &err);
    assert_int_equal(got, c->m);
    for (size_t i = 0; i < c->m; i++) {
        if (gi[i] != ri[i] || memcmp(&gs[i], &rs[i], sizeof(float)) != 0)
            fail_msg("%s n %zu K %zu: entry %zu is token %u score %a, CPU token %u score %a", what,
                     c->n, c->k, i, gi[i], (double)gs[i], ri[i], (double)rs[i]);
        if (memcmp(pk + i * c->rb, c->fk + (size_t)ri[i] * c->rb, c->rb) != 0 ||
            memcmp(pv + i * c->rb, c->fv + (size_t)ri[i] * c->rb, c->rb) != 0)
            fail_msg("%s n %zu K %zu: row %zu is not full row %u", what, c->n, c->k, i, ri[i]);
    }
    for (size_t b = c->m * c->rb; b < pb; b++)
        if (pk[b] != 0xA5 || pv[b] != 0xA5)
            fail_msg("%s n %zu K %zu: a row past the selection was written", what, c->n, c->k);
    skv_cuda_free((void *)c->j.pooled), skv_cuda_free(c->j.idx), skv_cuda_free(c->j.score);
    skv_cuda_free((void *)c->j.fk), skv_cuda_free((void *)c->j.fv);
    skv_cuda_free(c->j.pk), skv_cuda_free(c->j.pv);
    free(c->p), free(c->fk), free(c->fv), free(gi), free(ri), free(gs), free(rs), free(pk);
    free(pv);
}

static void run_batch(tcase *cs, size_t nc, const char *what) {
    skv_cuda_topk_job *jobs = tu_malloc(nc * sizeof *jobs);
    for (size_t i = 0; i < nc; i++) jobs[i] = cs[i].j;
    skv_err err;
    TU_OK(skv_cuda_rkv_topk(g_ctx, jobs, (int)nc, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    for (size_t i = 0; i < nc; i++) case_check(&cs[i], what);
    free(jobs);
}

static void test_topk_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    synth_rng r;
    tu_rng_for(&r, __func__);
    const size_t ks[] = {1, 16, 1000, 65536};
    const int levels[] = {0, 5, 1000};
    int jobs = 0;
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
        for (size_t b = 0; b < sizeof levels / sizeof *levels; b++) {
            const size_t k = ks[a];
            const size_t ns[] = {1, 7, k > 1 ? k - 1 : 2, k, k + 1, 5000, 300001};
            tcase cs[7];
            for (size_t i = 0; i < 7; i++) /* row sizes: f16 d 128, d 64, and an odd one */
                case_make(&r, &cs[i], ns[i], k, levels[b], i % 3 == 2 ? 6 : i % 3 ? 128 : 256);
            char what[64];
            snprintf(what, sizeof what, "levels %d", levels[b]);
            run_batch(cs, 7, what);
            jobs += 7;
        }
    printf("# device top-K: %d jobs equal to the CPU selection, rows gathered\n", jobs);
}

static void test_topk_many_jobs_and_empty_ones(void **state) {
    (void)state;
    NEED_GPU();
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { NJ = 75 }; /* more than one round of launches */
    tcase cs[NJ];
    for (size_t i = 0; i < NJ; i++) {
        const size_t n = tu_rand_range(&r, 1, 20000), k = tu_rand_range(&r, 1, 3000);
        case_make(&r, &cs[i], n, k, i % 2 ? 50 : 0, 128);
    }
    run_batch(cs, NJ, "many jobs");
    /* empty jobs write nothing and refuse nothing */
    skv_err err;
    skv_cuda_topk_job empty[2] = {{.n = 0, .k = 5}, {.n = 9, .k = 0}};
    TU_OK(skv_cuda_rkv_topk(g_ctx, empty, 2, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    /* bad jobs */
    float *d = upload(NULL, 64);
    skv_cuda_topk_job bad = {.pooled = d, .n = 4, .k = 2, .idx = NULL};
    assert_int_equal(skv_cuda_rkv_topk(g_ctx, &bad, 1, &err), SKV_ERR_INVALID_ARG);
    bad = (skv_cuda_topk_job){.pooled = d, .n = 4, .k = 2, .idx = (uint32_t *)(void *)d, .fk = d};
    assert_int_equal(skv_cuda_rkv_topk(g_ctx, &bad, 1, &err), SKV_ERR_INVALID_ARG);
    bad = (skv_cuda_topk_job){.pooled = d, .n = 1ull << 32, .k = 2, .idx = (uint32_t *)(void *)d};
    assert_int_equal(skv_cuda_rkv_topk(g_ctx, &bad, 1, &err), SKV_ERR_INVALID_ARG);
    skv_cuda_free(d);
}

int main(void) {
    tu_suite_begin("test_cuda_topk");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_matches_cpu),
        cmocka_unit_test(test_topk_many_jobs_and_empty_ones),
    };
    return cmocka_run_group_tests(tests, gpu_suite_setup, gpu_suite_teardown);
}
