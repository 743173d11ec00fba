/*
 * test_cuda_refresh.c — refreshkv's full step on the GPU (full_mem = device) against the CPU:
 *   - the attend with score output (skv_cuda_job.s) over a full store gives the CPU full
 *     step's partials within the GPU suites' 1e-3 relative, the same partials bit for bit as
 *     without the score output, and raw scores equal to the CPU's dot products; the pool
 *     kernel (skv_cuda_rkv_pool) gives the CPU's pooled token scores within 1e-3 relative; for
 *     n not a multiple of the chunk, g in {1, 2, 4}, pool 1 and 7, f16 and bf16, d 128 and 64;
 *   - the partial cache selected from the GPU's scores (skv_rkv_apply) is the CPU's, but for
 *     tokens whose CPU scores tie the K-th within 1e-3 (swapping those changes nothing real);
 *   - through the worker's GPU path (worker/gpu_refresh.h + skv_gpu_finish, no MPI): threshold
 *     1, stride 1 equals exact attention; stride 3 (full and partial steps in one request,
 *     beside an exact sketch) follows a CPU twin — with the device top-K and gather (the
 *     partial steps read the gathered ring mirror, no upload) and with the CPU selection;
 *     no step copied a host partial row (the device selection's install is lazy), and a
 *     checkpoint afterwards copies each row in from its token's host full-store row.
 * Without a GPU every test is skipped with the reason printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gpu_refresh.h"
#include "skv_cuda.h"
#include "skv_internal.h"
#include "test_util.h"
#include "gpu_suite.h"

static skv_config rkv_cfg(int d, int k, int stride, float threshold, int pool, skv_dtype dt) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, d);
    c.partial_tokens = k;
    c.stride = stride;
    c.threshold = threshold;
    c.pool_kernel = pool;
    c.dtype = dt;
    return c;
}

static int cmp_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The k-th largest of x[n] (k <= n). */
static float kth_largest(const float *x, size_t n, size_t k) {
    float *c = tu_malloc(n * sizeof(float));
    memcpy(c, x, n * sizeof(float));
    qsort(c, n, sizeof(float), cmp_desc);
    const float v = c[k - 1];
    free(c);
    return v;
}

/* The partial caches of a and b hold the same tokens, but for near-ties of the K-th score
 * `kth` under the CPU's scores (cpu[ncpu]: positions past it are tokens appended since, the
 * same in both); returns how many differ. */
static size_t same_selection(const skv_sketch *a, const skv_sketch *b, const float *cpu,
                             size_t ncpu, float kth, const char *what) {
    const size_t k = (size_t)skv_sketch_config(a)->partial_tokens;
    uint64_t *pa = tu_malloc(k * sizeof(uint64_t)), *pb = tu_malloc(k * sizeof(uint64_t));
    double *sa = tu_malloc(k * sizeof(double)), *sb = tu_malloc(k * sizeof(double));
    const size_t na = skv_rkv_partial(a, pa, sa), nb = skv_rkv_partial(b, pb, sb);
    assert_int_equal(na, nb);
    size_t diff = 0;
    for (int side = 0; side < 2; side++) {
        const uint64_t *x = side ? pb : pa, *y = side ? pa : pb;
        for (size_t i = 0; i < na; i++) {
            int found = 0;
            for (size_t j = 0; j < na && !found; j++) found = x[i] == y[j];
            if (found) continue;
            diff++;
            if (x[i] >= ncpu || !(fabsf(cpu[x[i]] - kth) <= 1e-3f * kth))
                fail_msg("%s: token %llu selected on one side only (score %g, K-th %g)", what,
                         (unsigned long long)x[i], x[i] < ncpu ? cpu[x[i]] : -1.0f, kth);
        }
    }
    free(pa), free(pb), free(sa), free(sb);
    return diff;
}

/* One full step of n tokens: twin sketches, CPU step on one, GPU step (plan, attend with
 * scores, pool, apply) on the other, everything compared. */
static void full_step_case(skv_dtype dt, int d, int g, int pool, size_t n, uint64_t chunk) {
    char name[96];
    snprintf(name, sizeof name, "%s d%d g%d pool%d n%zu chunk%llu", skv_dtype_name(dt), d, g, pool,
             n, (unsigned long long)chunk);
    synth_rng r;
    tu_rng_for(&r, name);
    const int K = 64;
    const skv_config c = rkv_cfg(d, K, 4, 0.9f, pool, dt);
    skv_sketch *cpu = tu_create(&c), *gpu = tu_create(&c);
    float *Kf, *Vf, *Q = tu_malloc((size_t)g * d * sizeof(float));
    tu_make_random_kv(&r, n, d, &Kf, &Vf);
    synth_fill_normal(&r, Q, (size_t)g * d, 1.5f);
    tu_append_chunked(cpu, Kf, Vf, n, d, 1000);
    tu_append_chunked(gpu, Kf, Vf, n, d, 1000);
    skv_partial *want = tu_partials_new(g, d);
    tu_attend(cpu, Q, g, d, want); /* the prefill: a CPU full step */
    const float *pooled_cpu = NULL;
    size_t ncpu = 0;
    skv_rkv_scores(cpu, &pooled_cpu, &ncpu);
    assert_int_equal(ncpu, n);

    skv_err err;
    int full = 0;
    TU_OK(skv_rkv_plan(gpu, Q, g, &full, &err), &err);
    assert_int_equal(full, 1);
    const skv_rows *fk, *fv;
    size_t nf = 0;
    skv_rkv_full_rows(gpu, &fk, &fv, &nf);
    assert_int_equal(nf, n);
    const size_t rb = n * (size_t)d * 2, on = (size_t)g * (d + 2);
    float *qs = tu_malloc((size_t)g * d * sizeof(float));
    for (int i = 0; i < g * d; i++) qs[i] = Q[i] / sqrtf((float)d);
    void *dk = upload(fk->data, rb), *dv = upload(fv->data, rb);
    float *dq = upload(qs, (size_t)g * d * sizeof(float)), *dout = upload(NULL, on * 4);
    float *dout0 = upload(NULL, on * 4), *ds = upload(NULL, (size_t)g * n * 4);
    float *dpool = upload(NULL, n * 4);
    /* poison: every score and pooled value must be written */
    float *s = tu_malloc((size_t)g * n * sizeof(float)), *pooled = tu_malloc(n * sizeof(float));
    for (size_t i = 0; i < (size_t)g * n; i++) s[i] = NAN;
    TU_OK(skv_cuda_upload(ds, s, (size_t)g * n * 4, &err), &err);
    TU_OK(skv_cuda_upload(dpool, s, n * 4, &err), &err);
    skv_cuda_job jobs[2] = {
        {.k = dk, .v = dv, .n = n, .q = dq, .out = dout, .s = ds},
        {.k = dk, .v = dv, .n = n, .q = dq, .out = dout0}, /* no score output */
    };
    TU_OK(skv_cuda_attend(g_ctx, jobs, 2, d, g, dt, chunk, &err), &err);
    skv_cuda_pool_job pj = {.s = ds, .part = dout, .pooled = dpool, .n = n, .pool = pool};
    TU_OK(skv_cuda_rkv_pool(g_ctx, &pj, 1, d, g, &err), &err);
    TU_OK(skv_cuda_sync(g_ctx, &err), &err);
    float *part = tu_malloc(on * 4), *part0 = tu_malloc(on * 4);
    TU_OK(skv_cuda_download(part, dout, on * 4, &err), &err);
    TU_OK(skv_cuda_download(part0, dout0, on * 4, &err), &err);
    TU_OK(skv_cuda_download(s, ds, (size_t)g * n * 4, &err), &err);
    TU_OK(skv_cuda_download(pooled, dpool, n * 4, &err), &err);
    /* the score output changes nothing in the partials */
    if (memcmp(part, part0, on * 4) != 0) fail_msg("%s: partials differ with scores on", name);
    float *got = tu_malloc((size_t)d * 4), *ref = tu_malloc((size_t)d * 4);
    float *dots = tu_malloc(n * sizeof(float));
    for (int h = 0; h < g; h++) {
        const skv_partial *pg = (const skv_partial *)(part + (size_t)h * (d + 2));
        const skv_partial *pc = skv_partial_at(want, d, (size_t)h);
        skv_partial_output(pg, d, got);
        skv_partial_output(pc, d, ref);
        const double e = tu_rel_error_ff(got, ref, d);
        if (!(e <= 1e-3)) fail_msg("%s head %d: output rel err %g", name, h, e);
        /* the same maximum and normalizer (as log-sum-exp) */
        if (!(fabs((double)pg->m - pc->m) <= 1e-4 * (1.0 + fabs((double)pc->m))) ||
            !(fabs(log((double)pg->l) + pg->m - log((double)pc->l) - pc->m) <= 1e-4))
            fail_msg("%s head %d: m %g l %g, CPU m %g l %g", name, h, pg->m, pg->l, pc->m, pc->l);
        /* raw scores: the CPU's dot products of the same stored keys */
        skv_rows_dot_block(fk, 0, n, qs + (size_t)h * d, dots);
        for (size_t t = 0; t < n; t++) {
            const float x = s[(size_t)h * n + t];
            if (!(fabsf(x - dots[t]) <= 2e-4f + 1e-4f * fabsf(dots[t])))
                fail_msg("%s head %d token %zu: score %g, CPU %g", name, h, t, x, dots[t]);
        }
    }
    for (size_t t = 0; t < n; t++)
        if (!(fabsf(pooled[t] - pooled_cpu[t]) <= 1e-3f * pooled_cpu[t] + 1e-9f))
            fail_msg("%s token %zu: pooled %g, CPU %g", name, t, pooled[t], pooled_cpu[t]);
    /* the selection from the GPU's scores */
    TU_OK(skv_rkv_apply(gpu, Q, g, pooled, n, &err), &err);
    const size_t k = n < (size_t)K ? n : (size_t)K;
    const size_t diff =
        same_selection(cpu, gpu, pooled_cpu, n, kth_largest(pooled_cpu, n, k), name);
    skv_stats a, b;
    skv_sketch_stats(cpu, &a);
    skv_sketch_stats(gpu, &b);
    assert_int_equal(a.attends, b.attends);
    assert_int_equal(a.full_steps, b.full_steps);
    assert_int_equal(a.bytes_read, b.bytes_read);
    if (diff) printf("# %s: %zu near-tie tokens swapped\n", name, diff);
    skv_cuda_free(dk), skv_cuda_free(dv), skv_cuda_free(dq), skv_cuda_free(dout);
    skv_cuda_free(dout0), skv_cuda_free(ds), skv_cuda_free(dpool);
    skv_sketch_destroy(cpu), skv_sketch_destroy(gpu);
    free(Kf), free(Vf), free(Q), free(qs), free(want), free(s), free(pooled), free(part);
    free(part0), free(got), free(ref), free(dots);
}

static void test_rkv_gpu_full_step_matches_cpu(void **state) {
    (void)state;
    NEED_GPU();
    const size_t ns[] = {1, 37, 1000, 4099, 20011};
    const int gs[] = {1, 2, 4}, pools[] = {1, 7};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof gs / sizeof gs[0]; b++)
            for (size_t c = 0; c < sizeof pools / sizeof pools[0]; c++)
                full_step_case(SKV_DTYPE_F16, 128, gs[b], pools[c], ns[a], a % 2 ? 256 : 0);
    full_step_case(SKV_DTYPE_BF16, 64, 4, 7, 5003, 0);
    full_step_case(SKV_DTYPE_BF16, 64, 2, 1, 777, 128);
    full_step_case(SKV_DTYPE_F16, 64, 1, 31, 3001, 0);
    printf("# rkv full step: %zu GPU cases equal to the CPU\n",
           sizeof ns / sizeof ns[0] * 3 * 2 + 3);
}

/* ---- the worker's GPU path ------------------------------------------------------------- */

enum { WD = 128, WG = 4, WPRE = 3000, WSTEPS = 14, WN = 3 };

/* After a worker run: no step copied a partial row on the host (the device selection's
 * installs are lazy, the ring mirror took the gather and then only pushed rows). due: how many
 * rows are still to copy — 1: all (the last step was a device selection), 0: none (the CPU
 * selection installs at once), -1: any. A checkpoint then copies them in: each physical row is
 * its token's row of the host full store. */
static void lazy_rows_check(skv_sketch *s, int due) {
    skv_rkv_ring_view v;
    skv_rkv_ring(s, &v);
    assert_int_equal(v.materialized, 0);
    const size_t left = v.pend_hi - v.pend_lo;
    if (due >= 0) assert_int_equal(left, due ? v.pn : 0);
    skv_buf b = tu_save(s);
    skv_buf_free(&b);
    skv_rkv_ring(s, &v);
    assert_int_equal(v.materialized, left);
    assert_int_equal(v.pend_hi, 0);
    const skv_rows *fk, *fv;
    size_t nf = 0;
    skv_rkv_full_rows(s, &fk, &fv, &nf);
    uint64_t *pos = tu_malloc(v.pcap * sizeof(uint64_t));
    double *sc = tu_malloc(v.pcap * sizeof(double));
    assert_int_equal(skv_rkv_partial(s, pos, sc), v.pn);
    const size_t rb = skv_rows_row_bytes(v.k), head = v.pn < v.pcap ? 0 : v.next;
    for (size_t i = 0; i < v.pn; i++) {
        const size_t row = (head + i) % v.pcap;
        if (pos[i] >= nf) continue; /* still in the queue: pushed, never pending */
        assert_memory_equal((const char *)v.k->data + row * rb,
                            (const char *)fk->data + pos[i] * rb, rb);
        assert_memory_equal((const char *)v.v->data + row * rb,
                            (const char *)fv->data + pos[i] * rb, rb);
    }
    free(pos), free(sc);
}

/* cpu_select 0: the device top-K, the partial cache gathered into its mirror on the device
 * (partial steps then read it without an upload); 1: the older CPU selection. */
static void worker_path_run(int cpu_select, const char *name) {
    synth_rng r;
    tu_rng_for(&r, name);
    skv_gpu gpu;
    skv_err err;
    TU_OK(skv_gpu_init(&gpu, 0, &err), &err);
    TU_OK(skv_gpu_refresh_cpu_select(&gpu, cpu_select, &err), &err);
    skv_table table;
    skv_table_init(&table);
    /* 0: refreshkv stride 1 threshold 1 (every attend a full step); 1: stride 3; 2: exact */
    skv_config cfg[WN];
    cfg[0] = rkv_cfg(WD, 48, 1, 1.0f, 7, SKV_DTYPE_F16);
    cfg[1] = rkv_cfg(WD, 48, 3, 1.0f, 7, SKV_DTYPE_F16);
    skv_config_default(&cfg[2], SKV_POLICY_EXACT, WD);
    cfg[2].dtype = SKV_DTYPE_F16;
    cfg[0].full_mem = cfg[1].full_mem = SKV_FULL_MEM_DEVICE;
    skv_sketch *ref[WN]; /* CPU twins: exact for 0 and 2, refreshkv (host) for 1 */
    skv_config rc0 = cfg[2];
    skv_config rc1 = cfg[1];
    rc1.full_mem = SKV_FULL_MEM_HOST;
    ref[0] = tu_create(&rc0), ref[1] = tu_create(&rc1), ref[2] = tu_create(&cfg[2]);
    skv_item_key keys[WN];
    for (int i = 0; i < WN; i++) {
        keys[i] = (skv_item_key){7, (uint32_t)i, 0, 0};
        TU_OK(skv_table_insert(&table, &keys[i], tu_create(&cfg[i]), &err), &err);
        assert_int_equal(skv_gpu_refresh_device(skv_table_find(&table, &keys[i]), WG), i < 2);
    }
    const size_t total = WPRE + WSTEPS * 4;
    float *K, *V;
    tu_make_random_kv(&r, total, WD, &K, &V);
    float *Q = tu_malloc((size_t)WN * WG * WD * sizeof(float));
    float *out = tu_malloc((size_t)WN * WG * (WD + 2) * sizeof(float));
    float *want = tu_malloc((size_t)WG * WD * sizeof(float)), *got = tu_malloc(WD * sizeof(float));
    skv_gpu_item items[WN];
    size_t at = 0;
    float kth1 = 0.0f, *scores1 = NULL; /* the twin's scores at its last full step */
    size_t nscores1 = 0;
    double worst = 0.0;
    size_t swapped = 0;
    for (int step = 0; step <= WSTEPS; step++) {
        const size_t n = step == 0 ? WPRE : step == 7 ? 4 : 1; /* step 7: a prefill chunk */
        synth_fill_normal(&r, Q, (size_t)WN * WG * WD, 1.5f);
        int nitems = 0;
        for (int i = 0; i < WN; i++) { /* as worker.c's op_tokens: appends, then attends */
            skv_sketch *s = skv_table_find(&table, &keys[i]);
            tu_append(s, K + at * WD, V + at * WD, n, WD);
            tu_append(ref[i], K + at * WD, V + at * WD, n, WD);
        }
        at += n;
        for (int i = 0; i < WN; i++) {
            skv_table_entry *te = skv_table_find_entry(&table, &keys[i]);
            const float *q = Q + (size_t)i * WG * WD;
            float *o = out + (size_t)i * WG * (WD + 2);
            int done = 0;
            if (!skv_gpu_refresh_device(te->sketch, WG))
                TU_OK(skv_sketch_attend_begin(te->sketch, q, WG, WD, (skv_partial *)o, &done, &err),
                      &err);
            assert_int_equal(done, 0);
            items[nitems] = (skv_gpu_item){.entry = te, .q = q, .out = o};
            if (skv_gpu_refresh_device(te->sketch, WG))
                TU_OK(skv_gpu_refresh_begin(&gpu, &items[nitems], WG, &err), &err);
            nitems++;
        }
        assert_int_equal(items[0].full, 1); /* stride 1, threshold 1: always a full step */
        subkv_status st = skv_gpu_finish(&gpu, items, (size_t)nitems, WD, WG, &err);
        skv_gpu_refresh_end(&gpu);
        TU_OK(st, &err);
        for (int i = 0; i < WN; i++) {
            skv_stats s1;
            skv_sketch_stats(ref[i], &s1);
            const uint64_t f0 = s1.full_steps;
            tu_attend_output(ref[i], Q + (size_t)i * WG * WD, WG, WD, want);
            skv_sketch_stats(ref[i], &s1);
            if (i == 1 && s1.full_steps != f0) { /* the twin's full step: keep its scores (the
                                                  * store's scratch does not survive growth) */
                const float *p = NULL;
                size_t np = 0;
                skv_rkv_scores(ref[1], &p, &np);
                free(scores1);
                scores1 = tu_malloc(np * sizeof(float));
                memcpy(scores1, p, np * sizeof(float));
                nscores1 = np;
                kth1 = kth_largest(p, np, 48);
            }
            size_t diff = 0;
            if (i == 1) {
                diff = same_selection(ref[1], skv_table_find(&table, &keys[1]), scores1, nscores1,
                                      kth1, "worker path stride 3");
                swapped += diff;
            }
            for (int h = 0; h < WG && !diff; h++) {
                const skv_partial *pg =
                    (const skv_partial *)(out + ((size_t)i * WG + (size_t)h) * (WD + 2));
                skv_partial_output(pg, WD, got);
                const double e = tu_rel_error_ff(got, want + (size_t)h * WD, WD);
                if (e > worst) worst = e;
                if (!(e <= 1e-3))
                    fail_msg("worker path: sketch %d step %d head %d: rel err %g", i, step, h, e);
            }
        }
    }
    skv_stats a, b;
    skv_sketch_stats(skv_table_find(&table, &keys[0]), &a);
    assert_int_equal(a.full_steps, WSTEPS + 1);
    assert_int_equal(a.attends, WSTEPS + 1);
    skv_sketch_stats(skv_table_find(&table, &keys[1]), &a);
    skv_sketch_stats(ref[1], &b);
    assert_int_equal(a.full_steps, b.full_steps);
    assert_int_equal(a.attends, b.attends);
    assert_true(a.full_steps >= 4 && a.full_steps < a.attends); /* both kinds of step ran */
    /* the host store stays authoritative: it holds every token, and saves as the twin's */
    const skv_rows *fk, *fv;
    size_t nf = 0;
    skv_rkv_full_rows(skv_table_find(&table, &keys[0]), &fk, &fv, &nf);
    assert_int_equal(nf, at);
    lazy_rows_check(skv_table_find(&table, &keys[0]), !cpu_select);
    lazy_rows_check(skv_table_find(&table, &keys[1]), cpu_select ? 0 : -1);
    printf("# %s: stride-1 refreshkv = exact, stride-3 follows its CPU twin (%llu of "
           "%llu steps full); worst rel err %.2e; %zu near-tie swaps\n",
           name, (unsigned long long)a.full_steps, (unsigned long long)a.attends, worst, swapped);
    skv_table_free(&table); /* its mirrors live in the GPU context: before skv_gpu_fini */
    skv_gpu_fini(&gpu);
    for (int i = 0; i < WN; i++) skv_sketch_destroy(ref[i]);
    free(K), free(V), free(Q), free(out), free(want), free(got), free(scores1);
}

static void test_rkv_gpu_worker_path(void **state) {
    (void)state;
    NEED_GPU();
    worker_path_run(0, "worker path, device top-K");
    worker_path_run(1, "worker path, CPU selection");
}

int main(void) {
    tu_suite_begin("test_cuda_refresh");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rkv_gpu_full_step_matches_cpu),
        cmocka_unit_test(test_rkv_gpu_worker_path),
    };
    return cmocka_run_group_tests(tests, gpu_suite_setup, gpu_suite_teardown);
}
