/*
 * gpu_csr_case.h — one case of the GPU worker's csr path (header-only, static; include after
 * test_util.h), shared by tests/test_gpu_csr.c (the GPU) and tests/test_gpu_csr_host.c
 * (the CUDA calls emulated on the host). A request of csr sketches (two dictionary sets,
 * two layer groups, two (sparsity, atoms) kinds, one sketch starting with nothing coded)
 * plus an exact sketch goes through skv_gpu_finish step after step, with appends on the
 * CPU between the steps (0, 1-2 or 1-40 tokens: the window ring wraps, new codes arrive,
 * or none), so the append-only upload of codes and changed exact rows is exercised. Each
 * item's answer (outputs poisoned with NaN first) must equal
 *   - the worker's decomposition in float64 (tests/csr_ref.h: exact rows (+) decoded codes)
 *     within 1e-3 relative, and
 *   - the CPU sketch's own attend within that plus the storage rounding of its decoded
 *     rows (test_csr_parts.c measures it: f16 ~5e-4, bf16 ~2e-3).
 * Also: a step uploads at most its new tokens' codes (8 s bytes) and exact rows, nothing
 * when nothing was appended; the device holds codes (well under exact's bytes); each
 * dictionary group is uploaded once however many sketches share it; pre-rotary csr is not
 * taken by the GPU.
 * With gpu_code, the csr sketches' appends go through the worker's GPU coding instead
 * (skv_gpu_csr_append, one batch per step, one sketch queued twice at one step) and each
 * is checked against a twin appended on the CPU: checkpoint bytes equal after every step,
 * the mirror's device codes equal the CPU sketch's, every token coded since the prefill
 * was coded on the GPU.
 */
#ifndef SUBKV_GPU_CSR_CASE_H
#define SUBKV_GPU_CSR_CASE_H

#include "csr_ref.h"
#include "gpu_csr.h"

/* Called after each step's skv_gpu_finish (the host emulation counts the launches). */
#ifndef GPU_CSR_CASE_STEP_HOOK
#define GPU_CSR_CASE_STEP_HOOK(gpu) ((void)(gpu))
#endif

enum { NS = 5, STEPS = 7 };

typedef struct sk_spec {
    int dict, layer, s, sinks, window;
    size_t prefill;
} sk_spec;

/* The checks of a GPU-coded csr sketch after a step: its checkpoint equals its CPU-coded
 * twin's, its mirror's device codes equal its own, and the tokens coded since the prefill
 * (coded0 of them then) were all coded on the GPU. */
static void gpu_coded_check(const char *name, int step, int i, const skv_sketch *s,
                            const skv_sketch *twin, const skv_csr_mirror *m, size_t coded0) {
    skv_buf a = tu_save(s), b = tu_save(twin);
    if (!tu_bufs_equal(&a, &b))
        fail_msg("%s step %d item %d: the GPU-coded sketch's checkpoint differs from its "
                 "CPU-coded twin's",
                 name, step, i);
    skv_buf_free(&a), skv_buf_free(&b);
    skv_err err = {0};
    const uint16_t *idx = NULL, *coef = NULL;
    size_t n = 0;
    TU_OK(skv_csr_codes(s, &idx, &coef, &n, &err), &err);
    skv_gpu_csr_stats st;
    skv_gpu_csr_mirror_stats(m, &st);
    assert_int_equal(st.codes, n);
    assert_int_equal(st.gpu_coded, n - coded0);
    const size_t cb = n * 2 * (size_t)skv_sketch_config(s)->sparsity * sizeof(uint16_t);
    uint16_t *got = tu_malloc(cb + 2);
    if (cb) {
        TU_OK(skv_cuda_download(got, st.dev_idx, cb, &err), &err);
        assert_memory_equal(got, idx, cb);
        TU_OK(skv_cuda_download(got, st.dev_coef, cb, &err), &err);
        assert_memory_equal(got, coef, cb);
    }
    free(got);
}

static void worker_case(int d, int g, skv_dtype dt, int gpu_code) {
    char name[64];
    snprintf(name, sizeof name, "worker csr d%d g%d %s%s", d, g, skv_dtype_name(dt),
             gpu_code ? " gpu-coded" : "");
    synth_rng r;
    tu_rng_for(&r, name);
    const int NA = 256, NB = 100;
    /* set A: 2 groups of 1 layer; set B: one group */
    skv_dict *dicts[2] = {csr_ref_dict(&r, d, NA, 2, 1, SKV_KEYS_POST_ROTARY),
                          csr_ref_dict(&r, d, NB, 1, 1, SKV_KEYS_POST_ROTARY)};
    const sk_spec spec[NS - 1] = {
        {0, 0, 8, 4, 16, 300},  /* set A group 0 */
        {0, 0, 8, 4, 16, 0},    /* the same group, nothing coded at first */
        {0, 1, 8, 4, 16, 2000}, /* group 1 */
        {1, 0, 3, 0, 5, 700},   /* set B, another (s, atoms): a second launch */
    };
    skv_sketch *sk[NS], *twin[NS] = {0};
    size_t coded0[NS] = {0};
    skv_table_entry te[NS];
    skv_gpu_item items[NS];
    skv_gpu G;
    skv_err err = {0};
    TU_OK(skv_gpu_init(&G, 0, &err), &err);
    const size_t qn = (size_t)g * d, on = (size_t)g * (d + 2), rb = (size_t)d * skv_dtype_size(dt);
    float *Q = tu_malloc(NS * qn * sizeof(float)), *out = tu_malloc(NS * on * sizeof(float));
    skv_partial *want = tu_partials_new(g, d), *ref = tu_partials_new(g, d);
    float *K = NULL, *V = NULL;
    tu_make_random_kv(&r, 2100, d, &K, &V);
    for (int i = 0; i < NS; i++) {
        skv_config c;
        if (i < NS - 1) {
            skv_config_default(&c, SKV_POLICY_CSR, d);
            c.dict = dicts[spec[i].dict], c.layer = (uint32_t)spec[i].layer;
            c.sparsity = spec[i].s, c.sinks = spec[i].sinks, c.window = spec[i].window;
        } else {
            skv_config_default(&c, SKV_POLICY_EXACT, d); /* the same request, the other path */
        }
        c.dtype = dt;
        sk[i] = tu_create(&c);
        const size_t pre = i < NS - 1 ? spec[i].prefill : 200;
        if (pre) tu_append(sk[i], K, V, pre, d);
        if (gpu_code && i < NS - 1) { /* the CPU-coded twin */
            twin[i] = tu_create(&c);
            if (pre) tu_append(twin[i], K, V, pre, d);
            skv_stats ss;
            skv_sketch_stats(sk[i], &ss);
            coded0[i] = ss.tokens_seen - ss.tokens_held;
        }
        te[i] = (skv_table_entry){.sketch = sk[i]};
        items[i] = (skv_gpu_item){.entry = &te[i], .q = Q + i * qn, .out = out + i * on};
        assert_true(skv_gpu_eligible(&G, sk[i], g));
    }
    double worst_ref = 0.0, worst_cpu = 0.0;
    const double tol_cpu = 1e-3 + (dt == SKV_DTYPE_BF16 ? 2e-2 : 3e-3);
    uint64_t up_before[NS] = {0};
    for (int step = 0; step < STEPS; step++) {
        size_t added[NS] = {0};
        for (int i = 0; step > 0 && i < NS; i++) { /* step 3 appends nothing: a pure re-attend */
            added[i] = step == 3 ? 0 : tu_rand_range(&r, 1, step % 2 ? 40 : 2);
            const float *Ks = K + (size_t)(100 * step) * d;
            if (!added[i]) continue;
            if (!twin[i]) {
                tu_append(sk[i], Ks, V, added[i], d);
                continue;
            }
            TU_OK(skv_gpu_csr_append(&G, &te[i], Ks, V, added[i], &err), &err);
            tu_append(twin[i], Ks, V, added[i], d);
            if (i == 0 && step == 5) { /* queued twice: the first lands first */
                const size_t more = tu_rand_range(&r, 1, 30);
                TU_OK(skv_gpu_csr_append(&G, &te[i], Ks + 50 * (size_t)d, V + 60 * (size_t)d, more,
                                         &err),
                      &err);
                tu_append(twin[i], Ks + 50 * (size_t)d, V + 60 * (size_t)d, more, d);
                added[i] += more;
            }
        }
        if (gpu_code) {
            TU_OK(skv_gpu_csr_launch_codes(&G, &err), &err);
            TU_OK(skv_gpu_csr_finish_codes(&G, &err), &err);
        }
        synth_fill_normal(&r, Q, NS * qn, 1.5f);
        for (size_t k = 0; k < NS * on; k++) out[k] = NAN; /* every output must be written */
        TU_OK(skv_gpu_finish(&G, items, NS, d, g, &err), &err);
        GPU_CSR_CASE_STEP_HOOK(&G);
        for (int i = 0; i < NS; i++) {
            tu_attend(sk[i], Q + i * qn, g, d, want);
            if (i < NS - 1) csr_ref_partials(sk[i], Q + i * qn, g, ref);
            for (int h = 0; h < g; h++) {
                const skv_partial *got = skv_partial_at(out + i * on, d, (size_t)h);
                const double ec = csr_ref_rel(got, skv_partial_at(want, d, (size_t)h), d);
                const double er =
                    i < NS - 1 ? csr_ref_rel(got, skv_partial_at(ref, d, (size_t)h), d) : ec;
                worst_ref = er > worst_ref ? er : worst_ref;
                worst_cpu = ec > worst_cpu ? ec : worst_cpu;
                if (!(er <= 1e-3 && ec <= (i < NS - 1 ? tol_cpu : 1e-3)))
                    fail_msg("%s step %d item %d head %d: rel err %g vs the decomposition, %g vs "
                             "the CPU attend",
                             name, step, i, h, er, ec);
            }
            if (i == NS - 1) continue;
            if (twin[i])
                gpu_coded_check(name, step, i, sk[i], twin[i], skv_mirror_csr(te[i].mirror),
                                coded0[i]);
            skv_gpu_csr_stats st;
            skv_gpu_csr_mirror_stats(skv_mirror_csr(te[i].mirror), &st);
            skv_stats ss;
            skv_sketch_stats(sk[i], &ss);
            assert_int_equal(st.codes + st.exact, ss.tokens_seen);
            /* append-only: a step uploads at most its new tokens' codes and exact rows */
            const uint64_t per_token = 8 * (uint64_t)spec[i].s + 2 * rb;
            if (step > 0 && !(st.uploaded_bytes - up_before[i] <= added[i] * per_token))
                fail_msg("%s step %d item %d: %llu B uploaded for %zu new tokens", name, step, i,
                         (unsigned long long)(st.uploaded_bytes - up_before[i]), added[i]);
            up_before[i] = st.uploaded_bytes;
            if (ss.tokens_seen >= 1000) /* codes, not rows: well under exact's K + V */
                assert_true(st.device_bytes < ss.tokens_seen * 2 * rb / 2);
        }
    }
    /* three dictionary groups on the device (A0 shared by two sketches, A1, B0), once each */
    const size_t gb = (size_t)2 * d * sizeof(float);
    assert_int_equal(skv_gpu_csr_dict_bytes(&G), (2 * (size_t)NA + NB) * gb);
    /* pre-rotary codes stay on the CPU */
    skv_dict *pre = csr_ref_dict(&r, d, 32, 1, 1, SKV_KEYS_PRE_ROTARY);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, d);
    c.dict = pre, c.rope_base = 10000.0f, c.sparsity = 4, c.dtype = dt;
    skv_sketch *ps = tu_create(&c);
    assert_false(skv_gpu_eligible(&G, ps, g));
    skv_sketch_destroy(ps);
    skv_dict_free(pre);
    printf("# %s: worst rel err %.2e vs the decomposition, %.2e vs the CPU attend\n", name,
           worst_ref, worst_cpu);
    for (int i = 0; i < NS; i++) {
        skv_mirror_free(te[i].mirror);
        skv_sketch_destroy(sk[i]);
        skv_sketch_destroy(twin[i]);
    }
    skv_gpu_fini(&G);
    skv_dict_free(dicts[0]), skv_dict_free(dicts[1]);
    free(Q), free(out), free(want), free(ref), free(K), free(V);
}

/* A csr sketch the GPU does not attend (pre-rotary keys, or f32 rows) still has its appends
 * coded on the GPU (skv_gpu_csr_append, through the staging only, no mirror): byte for byte
 * its CPU-coded twin after every step. */
static void unmirrored_case(int d, skv_dtype dt, float rope_base) {
    char name[64];
    snprintf(name, sizeof name, "unmirrored csr d%d %s rope %g", d, skv_dtype_name(dt),
             (double)rope_base);
    synth_rng r;
    tu_rng_for(&r, name);
    skv_dict *dict = csr_ref_dict(&r, d, 200, 1, 1,
                                  rope_base > 0.0f ? SKV_KEYS_PRE_ROTARY : SKV_KEYS_POST_ROTARY);
    skv_config c;
    skv_config_default(&c, SKV_POLICY_CSR, d);
    c.dict = dict, c.sparsity = 8, c.sinks = 3, c.window = 10, c.dtype = dt,
    c.rope_base = rope_base;
    skv_sketch *sk = tu_create(&c), *twin = tu_create(&c);
    skv_table_entry te = {.sketch = sk};
    skv_gpu G;
    skv_err err = {0};
    TU_OK(skv_gpu_init(&G, 0, &err), &err);
    assert_false(skv_gpu_eligible(&G, sk, 1));
    assert_true(skv_gpu_csr_codes_here(&G, sk));
    float *K = NULL, *V = NULL;
    tu_make_random_kv(&r, 1000, d, &K, &V);
    size_t at = 0;
    for (int step = 0; step < 8; step++) {
        const size_t n = tu_rand_range(&r, 1, step % 2 ? 60 : 3);
        TU_OK(skv_gpu_csr_append(&G, &te, K + at * d, V + at * d, n, &err), &err);
        tu_append(twin, K + at * d, V + at * d, n, d);
        at += n;
        TU_OK(skv_gpu_csr_finish_codes(&G, &err), &err);
        skv_buf a = tu_save(sk), b = tu_save(twin);
        if (!tu_bufs_equal(&a, &b))
            fail_msg("%s step %d: the GPU-coded sketch differs from its CPU-coded twin", name,
                     step);
        skv_buf_free(&a), skv_buf_free(&b);
    }
    assert_null(te.mirror); /* coded without a mirror */
    skv_stats st;
    skv_sketch_stats(sk, &st);
    assert_true(st.tokens_seen - st.tokens_held > 0);
    skv_gpu_fini(&G);
    skv_sketch_destroy(sk), skv_sketch_destroy(twin);
    skv_dict_free(dict);
    free(K), free(V);
}

#endif /* SUBKV_GPU_CSR_CASE_H */
