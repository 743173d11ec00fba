/*
 * test_cuda.c — backend conformance (the ggml habit): the GPU attend against the CPU
 * reference on the same inputs. Every policy's sketch is built on the CPU from fresh
 * synthetic data, its entries (skv_sketch_entries) are uploaded, and the batched GPU
 * kernel's partials must give the CPU's outputs within 1e-3 relative (float16/bfloat16
 * storage, float32 math), for every chunking. Without a GPU every test is skipped with
 * the reason printed; on the device machine they run (deploy/device-run.sh).
 * The GPU append of SubGen (cuda/skv_dsub.h) must leave the device image equal, bit for bit
 * (skv_sketch_save of the state copied back), to the CPU sketch fed the same tokens.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "skv_backend.h"
#include "skv_cuda.h"
#include "skv_dsub.h"
#include "skv_internal.h"
#include "test_util.h"
#include "gpu_suite.h"

typedef struct dev_job {
    void *k, *v, *q, *out;
    float *a, *b;
} dev_job;

/* Build J sketches of one policy, attend them in one GPU launch, compare with the CPU. */
static void conformance(skv_policy_id pol, skv_values_mode vm, skv_dtype dt, int d, int g,
                        const char *name) {
    synth_rng r;
    tu_rng_for(&r, name);
    enum { J = 5 };
    const size_t ns[J] = {1, 130, 2000, 5003, 0};
    skv_cuda_job jobs[J];
    dev_job dj[J];
    float *want = tu_malloc((size_t)J * g * d * sizeof(float));
    float *q = tu_malloc((size_t)g * d * sizeof(float)),
          *qs = tu_malloc((size_t)g * d * sizeof(float));
    skv_entries e = {0};
    for (int j = 0; j < J; j++) {
        skv_config c;
        skv_config_default(&c, pol, d);
        c.dtype = dt;
        c.values = vm;
        c.seed = synth_rng_u64(&r);
        if (pol != SKV_POLICY_EXACT) c.budget_bytes = 96 << 10;
        skv_sketch *s = tu_create(&c);
        synth_stream_cfg sc = {.d = d,
                               .clusters = 8,
                               .center_norm = 7.0f,
                               .spread = 0.35f,
                               .value_mean = 4.0f,
                               .value_tail = 0.3f,
                               .seed = synth_rng_u64(&r)};
        synth_stream *st = synth_stream_create(&sc);
        float *K = tu_malloc((ns[j] + 1) * d * sizeof(float)),
              *V = tu_malloc((ns[j] + 1) * d * sizeof(float));
        synth_stream_next(st, K, V, ns[j]);
        if (ns[j]) tu_append_chunked(s, K, V, ns[j], d, 1024);
        for (int h = 0; h < g; h++) synth_stream_query(st, h % 8, 1.0f, 0.3f, q + h * d);
        if (pol == SKV_POLICY_REFRESHKV) {
            /* the prefill attend selects the partial cache; one decode token then evicts the
             * lowest entry (the ring wraps when full); the next attend is a partial step,
             * the one the GPU serves */
            skv_partial *p0 = tu_partials_new(g, d);
            tu_attend(s, q, g, d, p0);
            free(p0);
            synth_stream_next(st, K + ns[j] * d, V + ns[j] * d, 1);
            tu_append(s, K + ns[j] * d, V + ns[j] * d, 1, d);
            int done = -1;
            skv_err e0;
            skv_partial *p1 = tu_partials_new(g, d);
            TU_OK(skv_sketch_attend_begin(s, q, g, d, p1, &done, &e0), &e0);
            /* an attend of an empty sketch selects nothing, so the next one is still the
             * prefill (a full step on the CPU); every other job's is a partial step */
            assert_int_equal(done, ns[j] == 0 ? 1 : 0);
            free(p1);
        }
        for (int i = 0; i < g * d; i++) qs[i] = q[i] / sqrtf((float)d);
        skv_err err;
        TU_OK(skv_sketch_entries(s, &e, &err), &err);
        for (int h = 0; h < g; h++) {
            skv_partial *p = tu_partials_new(1, d);
            skv_entries_attend(&e, qs + h * d, p);
            skv_partial_output(p, d, want + ((size_t)j * g + h) * d);
            free(p);
        }
        const size_t rb = (size_t)e.n * d * 2;
        dj[j].k = upload(e.k, rb);
        dj[j].v = upload(e.v, rb);
        const int weighted = pol == SKV_POLICY_SUBGEN;
        dj[j].a = weighted ? upload(e.a, e.n * sizeof(float)) : NULL;
        dj[j].b = weighted ? upload(e.b, e.n * sizeof(float)) : NULL;
        dj[j].q = upload(qs, (size_t)g * d * sizeof(float));
        dj[j].out = upload(NULL, (size_t)g * (d + 2) * sizeof(float));
        jobs[j] = (skv_cuda_job){.k = dj[j].k,
                                 .v = dj[j].v,
                                 .a = dj[j].a,
                                 .b = dj[j].b,
                                 .n = e.n,
                                 .q = dj[j].q,
                                 .out = dj[j].out};
        skv_sketch_destroy(s);
        synth_stream_destroy(st);
        free(K);
        free(V);
    }
    const uint64_t chunks[3] = {0, 256, 1000};
    float *part = tu_malloc((size_t)g * (d + 2) * sizeof(float)),
          *got = tu_malloc((size_t)d * sizeof(float));
    for (int ci = 0; ci < 3; ci++) {
        skv_err err;
        for (int j = 0; j < J; j++) { /* poison: every output must be written */
            for (int i = 0; i < g * (d + 2); i++) part[i] = NAN;
            TU_OK(skv_cuda_upload(dj[j].out, part, (size_t)g * (d + 2) * sizeof(float), &err),
                  &err);
        }
        TU_OK(skv_cuda_attend(g_ctx, jobs, J, d, g, dt, chunks[ci], &err), &err);
        TU_OK(skv_cuda_sync(g_ctx, &err), &err);
        for (int j = 0; j < J; j++) {
            TU_OK(skv_cuda_download(part, dj[j].out, (size_t)g * (d + 2) * sizeof(float), &err),
                  &err);
            for (int h = 0; h < g; h++) {
                const skv_partial *p = (const skv_partial *)(part + (size_t)h * (d + 2));
                const float *w = want + ((size_t)j * g + h) * d;
                if (jobs[j].n == 0) {
                    assert_true(p->m == -INFINITY && p->l == 0.0f);
                    continue;
                }
                assert_true(isfinite(p->m) && p->l > 0.0f);
                skv_partial_output(p, d, got);
                double num = 0, den = 0;
                for (int i = 0; i < d; i++) {
                    assert_true(isfinite(got[i]));
                    num += (got[i] - w[i]) * (double)(got[i] - w[i]);
                    den += (double)w[i] * w[i];
                }
                if (!(sqrt(num) <= 1e-3 * sqrt(den)))
                    fail_msg("%s: job %d (n=%llu) head %d chunk %llu: rel err %g", name, j,
                             (unsigned long long)jobs[j].n, h, (unsigned long long)chunks[ci],
                             sqrt(num / den));
            }
        }
    }
    for (int j = 0; j < J; j++) {
        skv_cuda_free(dj[j].k), skv_cuda_free(dj[j].v), skv_cuda_free(dj[j].a);
        skv_cuda_free(dj[j].b), skv_cuda_free(dj[j].q), skv_cuda_free(dj[j].out);
    }
    skv_entries_free(&e);
    free(want), free(q), free(qs), free(part), free(got);
}

static void test_cuda_exact_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    conformance(SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_F16, 128, 4, "exact f16 d128 g4");
    conformance(SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_BF16, 64, 1, "exact bf16 d64 g1");
    conformance(SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_F16, 64, 8, "exact f16 d64 g8");
    conformance(SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_F16, 64, 3, "exact f16 d64 g3");
}

static void test_cuda_window_policies_match_cpu(void **state) {
    (void)state;
    NEED_GPU();
    conformance(SKV_POLICY_SINKWIN, SKV_VALUES_L2, SKV_DTYPE_F16, 128, 2, "sinkwin f16 d128 g2");
    conformance(SKV_POLICY_H2O, SKV_VALUES_L2, SKV_DTYPE_BF16, 128, 4, "h2o bf16 d128 g4");
}

static void test_cuda_subgen_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    conformance(SKV_POLICY_SUBGEN, SKV_VALUES_L2, SKV_DTYPE_F16, 128, 4, "subgen-l2 f16 d128 g4");
    conformance(SKV_POLICY_SUBGEN, SKV_VALUES_CLUSTER, SKV_DTYPE_BF16, 64, 8,
                "subgen-cluster bf16 d64 g8");
}

/* One SubGen setting of the append conformance test. */
typedef struct dsub_case {
    const char *name;
    skv_values_mode values;
    skv_dtype dtype;
    int d, sinks, window;
    size_t budget; /* small budgets force delta doubling and cluster merges */
    float drift;
} dsub_case;

/* First differing element of two equal-length arrays of `size`-byte elements, or -1. */
static long first_diff(const void *x, const void *y, size_t n, size_t size) {
    for (size_t i = 0; i < n; i++)
        if (memcmp((const char *)x + i * size, (const char *)y + i * size, size)) return (long)i;
    return -1;
}

/* Why two SubGen sketches that should be equal are not: each part of their state side by
 * side, the first differing element of each (printed before the failure). */
static void dsub_explain(const skv_sketch *cpu, const skv_sketch *gpu) {
    const skv_subgen_impl *x = cpu->impl, *y = gpu->impl;
    const size_t rb = skv_rows_row_bytes(&x->ck);
    printf("# CPU / GPU: tokens %llu / %llu, sinks %zu / %zu, window %zu+%zu / %zu+%zu, clusters "
           "%d / %d, delta %a / %a, merges %u / %u, mu %a / %a, slots_full %d / %d\n",
           (unsigned long long)cpu->tokens_seen, (unsigned long long)gpu->tokens_seen, x->sw.nsinks,
           y->sw.nsinks, x->sw.wfill, x->sw.whead, y->sw.wfill, y->sw.whead, x->nclusters,
           y->nclusters, (double)x->delta, (double)y->delta, x->merges, y->merges, x->mu, y->mu,
           (int)x->slots_full, (int)y->slots_full);
    if (x->nclusters != y->nclusters || x->sw.wfill != y->sw.wfill) return;
    const size_t nsamp = (size_t)x->nclusters * (size_t)x->t, d = (size_t)cpu->cfg.head_dim;
    printf("# first difference (-1: none): sinks k %ld v %ld, window k %ld v %ld, centers %ld, "
           "counts %ld, cluster samples %ld, slots k %ld v %ld, inv_norm %ld\n",
           first_diff(x->sw.sk.data, y->sw.sk.data, x->sw.nsinks, rb),
           first_diff(x->sw.sv.data, y->sw.sv.data, x->sw.nsinks, rb),
           first_diff(x->sw.wk.data, y->sw.wk.data, x->sw.wfill, rb),
           first_diff(x->sw.wv.data, y->sw.wv.data, x->sw.wfill, rb),
           first_diff(x->centers, y->centers, (size_t)x->nclusters, d * sizeof(float)),
           first_diff(x->count, y->count, (size_t)x->nclusters, sizeof(uint64_t)),
           first_diff(x->ck.data, y->ck.data, nsamp, rb),
           x->slots_full ? first_diff(x->lk.data, y->lk.data, (size_t)x->s, rb) : -1,
           x->slots_full ? first_diff(x->lv.data, y->lv.data, (size_t)x->s, rb) : -1,
           x->slots_full ? first_diff(x->inv_norm, y->inv_norm, (size_t)x->s, sizeof(float)) : -1);
    for (int j = 0; j < x->nclusters; j++)
        if (x->count[j] != y->count[j])
            printf("# cluster %d count %llu / %llu\n", j, (unsigned long long)x->count[j],
                   (unsigned long long)y->count[j]);
}

/*
 * J sketches (different sequences and heads, so different coins) take the same rounds of
 * tokens on the CPU and, batched in one launch per round, on the GPU; after every round
 * the device state copied back must save to the same bytes as the CPU sketch, and the GPU
 * attend straight from the device image must match the CPU attend within 1e-3. The last
 * sketches start from a CPU prefix uploaded into the image (a restore).
 */
static void dsub_conformance(const dsub_case *tc) {
    enum { J = 6, ROUNDS = 6, G = 4 };
    const size_t round_len[ROUNDS] = {1, 3, 70, 1, 700, 1};
    const int d = tc->d;
    synth_rng r;
    tu_rng_for(&r, tc->name);
    skv_sketch *cpu[J], *shadow[J];
    skv_dsub *dev[J];
    synth_stream *st[J];
    skv_err err;
    size_t maxn = 0;
    for (int i = 0; i < ROUNDS; i++) maxn = round_len[i] > maxn ? round_len[i] : maxn;
    float *K = tu_malloc((size_t)J * maxn * d * sizeof(float));
    float *V = tu_malloc((size_t)J * maxn * d * sizeof(float));
    float *dK = upload(NULL, (size_t)J * maxn * d * sizeof(float));
    float *dV = upload(NULL, (size_t)J * maxn * d * sizeof(float));
    const uint64_t seed = synth_rng_u64(&r);
    for (int j = 0; j < J; j++) {
        skv_config c;
        skv_config_default(&c, SKV_POLICY_SUBGEN, d);
        c.dtype = tc->dtype;
        c.values = tc->values;
        c.sinks = tc->sinks;
        c.window = tc->window;
        c.budget_bytes = tc->budget;
        c.seed = seed;
        c.seq_id = 100 + (uint64_t)j / 2;
        c.head = (uint32_t)j;
        cpu[j] = tu_create(&c);
        shadow[j] = tu_create(&c);
        synth_stream_cfg sc = {.d = d,
                               .clusters = 12,
                               .center_norm = 6.0f,
                               .spread = 0.5f,
                               .drift = tc->drift,
                               .value_mean = 2.0f,
                               .value_tail = 0.5f,
                               .seed = synth_rng_u64(&r)};
        st[j] = synth_stream_create(&sc);
        if (j >= J - 2) { /* a restored sketch: a CPU prefix goes up with the image */
            const size_t pre = 300 + 97 * (size_t)j;
            float *pk = tu_malloc(pre * d * sizeof(float)),
                  *pv = tu_malloc(pre * d * sizeof(float));
            synth_stream_next(st[j], pk, pv, pre);
            tu_append(cpu[j], pk, pv, pre, d);
            free(pk), free(pv);
            TU_OK(skv_dsub_create(g_ctx, cpu[j], &dev[j], &err), &err);
        } else {
            TU_OK(skv_dsub_create(g_ctx, shadow[j], &dev[j], &err), &err);
        }
    }
    float *q = tu_malloc((size_t)G * d * sizeof(float)),
          *qs = tu_malloc((size_t)G * d * sizeof(float));
    float *dq = upload(NULL, (size_t)G * d * sizeof(float));
    float *dout = upload(NULL, (size_t)G * (d + 2) * sizeof(float));
    float *part = tu_malloc((size_t)G * (d + 2) * sizeof(float)),
          *got = tu_malloc(d * sizeof(float));
    float *want = tu_malloc((size_t)G * d * sizeof(float));
    int merged = 0;
    for (int rd = 0; rd < ROUNDS; rd++) {
        const size_t n = round_len[rd];
        skv_dsub_op ops[J];
        for (int j = 0; j < J; j++) {
            float *k = K + (size_t)j * maxn * d, *v = V + (size_t)j * maxn * d;
            synth_stream_next(st[j], k, v, n);
            tu_append(cpu[j], k, v, n, d);
            ops[j] = (skv_dsub_op){.desc = *skv_dsub_descriptor(dev[j]),
                                   .k = dK + (size_t)j * maxn * d,
                                   .v = dV + (size_t)j * maxn * d,
                                   .n = (uint32_t)n};
        }
        TU_OK(skv_cuda_upload(dK, K, (size_t)J * maxn * d * sizeof(float), &err), &err);
        TU_OK(skv_cuda_upload(dV, V, (size_t)J * maxn * d * sizeof(float), &err), &err);
        TU_OK(skv_dsub_launch(g_ctx, ops, J, &err), &err);
        for (int j = 0; j < J; j++) {
            TU_OK(skv_dsub_pull(g_ctx, dev[j], shadow[j], &err), &err);
            skv_buf a = tu_save(cpu[j]), b = tu_save(shadow[j]);
            if (!tu_bufs_equal(&a, &b)) {
                dsub_explain(cpu[j], shadow[j]);
                fail_msg("%s: sketch %d differs from the CPU after round %d", tc->name, j, rd);
            }
            free(a.data), free(b.data);
            skv_stats sts;
            skv_sketch_stats(cpu[j], &sts);
            merged |= sts.merges > 0;
            /* the attend reads the image directly (n_entries on the device) */
            for (int h = 0; h < G; h++) synth_stream_query(st[j], h, 1.0f, 0.3f, q + h * d);
            for (int i = 0; i < G * d; i++) qs[i] = q[i] / sqrtf((float)d);
            tu_attend_output(cpu[j], q, G, d, want);
            skv_cuda_job job = {.q = dq, .out = dout};
            skv_dsub_job(dev[j], &job);
            TU_OK(skv_cuda_upload(dq, qs, (size_t)G * d * sizeof(float), &err), &err);
            TU_OK(skv_cuda_attend(g_ctx, &job, 1, d, G, tc->dtype, 0, &err), &err);
            TU_OK(skv_cuda_sync(g_ctx, &err), &err);
            TU_OK(skv_cuda_download(part, dout, (size_t)G * (d + 2) * sizeof(float), &err), &err);
            for (int h = 0; h < G; h++) {
                skv_partial_output((const skv_partial *)(part + (size_t)h * (d + 2)), d, got);
                const double e = tu_rel_error_ff(got, want + (size_t)h * d, d);
                if (!(e <= 1e-3))
                    fail_msg("%s: sketch %d round %d head %d: GPU attend rel err %g", tc->name, j,
                             rd, h, e);
            }
        }
    }
    printf("# %s: %d sketches x %d rounds equal to the CPU bit for bit (merges: %s)\n", tc->name, J,
           ROUNDS, merged ? "yes" : "no");
    for (int j = 0; j < J; j++) {
        skv_dsub_destroy(g_ctx, dev[j]);
        skv_sketch_destroy(cpu[j]), skv_sketch_destroy(shadow[j]);
        synth_stream_destroy(st[j]);
    }
    skv_cuda_free(dK), skv_cuda_free(dV), skv_cuda_free(dq), skv_cuda_free(dout);
    free(K), free(V), free(q), free(qs), free(part), free(got), free(want);
}

/*
 * A plain upload must have landed when it returns: an op queued next on a context's
 * (non-blocking) stream reads what was uploaded. cudaMemcpy from pageable memory alone may
 * return with its last DMA in flight, which likely made the append conformance test above
 * read the old tail of its key buffer once (not reproduced). Each round uploads 64 MiB
 * whose last MiB is fresh and copies that MiB on the context's stream at once.
 */
static void test_cuda_plain_upload_lands_before_the_next_stream_op(void **state) {
    (void)state;
    NEED_GPU();
    synth_rng r;
    tu_rng_for(&r, __func__);
    enum { ROUNDS = 40 };
    const size_t n = (size_t)16 << 20, m = (size_t)1 << 18; /* floats: 64 MiB, its last MiB */
    float *h = tu_malloc(n * sizeof(float)), *back = tu_malloc(m * sizeof(float));
    synth_fill_normal(&r, h, n, 1.0f);
    float *d = upload(NULL, n * sizeof(float)), *tail = upload(NULL, m * sizeof(float));
    skv_err err;
    for (int rd = 0; rd < ROUNDS; rd++) {
        synth_fill_normal(&r, h + (n - m), m, 1.0f);
        TU_OK(skv_cuda_upload(d, h, n * sizeof(float), &err), &err);
        TU_OK(skv_cuda_copy_async(g_ctx, tail, d + (n - m), m * sizeof(float), &err), &err);
        TU_OK(skv_cuda_sync(g_ctx, &err), &err);
        TU_OK(skv_cuda_download(back, tail, m * sizeof(float), &err), &err);
        if (memcmp(back, h + (n - m), m * sizeof(float)) != 0)
            fail_msg("round %d: the stream read the buffer's tail before the upload landed", rd);
    }
    skv_cuda_free(d), skv_cuda_free(tail);
    free(h), free(back);
}

static void test_cuda_subgen_append_equals_cpu(void **state) {
    (void)state;
    NEED_GPU();
    const dsub_case cases[] = {
        {"dsub l2 f16 d128 w32", SKV_VALUES_L2, SKV_DTYPE_F16, 128, 4, 32, 64 << 10, 0.0f},
        {"dsub cluster bf16 d64 w0", SKV_VALUES_CLUSTER, SKV_DTYPE_BF16, 64, 0, 0, 24 << 10, 0.02f},
        {"dsub l2 bf16 d64 w16 drift", SKV_VALUES_L2, SKV_DTYPE_BF16, 64, 2, 16, 20 << 10, 0.05f},
        {"dsub cluster f16 d128 w8", SKV_VALUES_CLUSTER, SKV_DTYPE_F16, 128, 1, 8, 48 << 10, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) dsub_conformance(&cases[i]);
}

static void test_cuda_refreshkv_partial_step_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    conformance(SKV_POLICY_REFRESHKV, SKV_VALUES_L2, SKV_DTYPE_F16, 128, 4,
                "refreshkv f16 d128 g4");
    conformance(SKV_POLICY_REFRESHKV, SKV_VALUES_L2, SKV_DTYPE_BF16, 64, 8,
                "refreshkv bf16 d64 g8");
}

static void test_cuda_rejects_unsupported_shapes(void **state) {
    (void)state;
    NEED_GPU();
    skv_cuda_job job = {0};
    skv_err err;
    assert_int_equal(skv_cuda_attend(g_ctx, &job, 1, 96, 4, SKV_DTYPE_F16, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_cuda_attend(g_ctx, &job, 1, 128, 5, SKV_DTYPE_F16, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_cuda_attend(g_ctx, &job, 1, 128, 4, SKV_DTYPE_F32, 0, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_int_equal(skv_cuda_attend(g_ctx, &job, 0, 128, 4, SKV_DTYPE_F16, 0, &err),
                     SKV_ERR_INVALID_ARG);
}

int main(void) {
    tu_suite_begin("test_cuda");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_exact_matches_cpu),
        cmocka_unit_test(test_cuda_window_policies_match_cpu),
        cmocka_unit_test(test_cuda_subgen_matches_cpu),
        cmocka_unit_test(test_cuda_subgen_append_equals_cpu),
        cmocka_unit_test(test_cuda_plain_upload_lands_before_the_next_stream_op),
        cmocka_unit_test(test_cuda_refreshkv_partial_step_matches_cpu),
        cmocka_unit_test(test_cuda_rejects_unsupported_shapes),
    };
    return cmocka_run_group_tests(tests, gpu_suite_setup, gpu_suite_teardown);
}
