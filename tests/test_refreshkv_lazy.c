/*
 * test_refreshkv_lazy.c — skv_rkv_apply_indices' deferred install (cache/refreshkv_impl.h's
 * plo, phi): the GPU worker's device selection records the K tokens and scores, and the host
 * partial rows are copied from the full store only when something reads them. On the CPU, so
 * CI checks it:
 *   - apply_indices writes no row of the partial cache (its bytes are unchanged, the view
 *     names rows [0, k) pending, nothing is materialised); pushes over pending rows shrink the
 *     range from below and a read then copies in exactly the rows still pending — for every
 *     number of pushes from 0 to past K, K below and above the store's rows, through each
 *     reader (save, skv_sketch_entries, the CPU attend, skv_rkv_materialize);
 *   - random sequences of appends, prefill chunks, partial steps, re-selections, refreshes,
 *     CPU attends, entry exports, saves and loads on a lazy sketch (apply_indices of the top K)
 *     and its eager twin (skv_rkv_apply of the same scores), random n, K, dtype and tied
 *     scores: identical checkpoint bytes, attend partials, entries, ring views and rows; and a
 *     simulated GPU ring mirror of the lazy one (gathered at each selection, then only pushed
 *     rows uploaded, as worker/gpu_attend.c's mirror_ring does) always equals the eager
 *     twin's rows without materialising anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "skv_internal.h"
#include "test_util.h"

enum { D = 16, G = 2 };

static skv_config rkv_cfg(int k, int stride, skv_dtype dt) {
    skv_config c;
    skv_config_default(&c, SKV_POLICY_REFRESHKV, D);
    c.partial_tokens = k;
    c.stride = stride;
    c.threshold = 0.5f; /* checks pass and fail with random queries */
    c.dtype = dt;
    return c;
}

/* Fresh scores with ties: `levels` distinct values in [0, 1) (0: continuous). */
static void quantised_scores(synth_rng *r, float *p, size_t n, int levels) {
    for (size_t i = 0; i < n; i++) {
        const double u = synth_rng_uniform(r);
        p[i] = levels ? (float)(floor(u * levels) / levels) : (float)u;
    }
}

static skv_rkv_ring_view ring(const skv_sketch *s) {
    skv_rkv_ring_view v;
    skv_rkv_ring(s, &v);
    return v;
}

static size_t row_bytes(const skv_sketch *s) {
    return skv_rows_bytes(skv_sketch_config(s)->dtype, D, 1);
}

/* A full step planned on s with pooled scores p[n] (n = the store's rows after the flush):
 * eager = skv_rkv_apply, else apply_indices of skv_rkv_topk. idx gets the selection (room for
 * partial_tokens); returns its size. */
static size_t select_rows(skv_sketch *s, const float *Q, const float *p, size_t n, int eager,
                          uint32_t *idx) {
    skv_err err;
    const size_t k = (size_t)skv_sketch_config(s)->partial_tokens;
    float *sc = tu_malloc(k * sizeof(float));
    size_t got = 0;
    TU_OK(skv_rkv_topk(p, n, k, idx, sc, &got, &err), &err);
    if (eager)
        TU_OK(skv_rkv_apply(s, Q, G, p, n, &err), &err);
    else
        TU_OK(skv_rkv_apply_indices(s, Q, G, idx, sc, got, &err), &err);
    free(sc);
    return got;
}

static size_t store_rows(const skv_sketch *s) {
    const skv_rows *fk, *fv;
    size_t n = 0;
    skv_rkv_full_rows(s, &fk, &fv, &n);
    return n;
}

/* Read the partial cache's host rows one of four ways (each materialises). */
static void read_rows(skv_sketch *s, int how) {
    skv_err err;
    if (how == 0) {
        skv_buf b = tu_save(s);
        skv_buf_free(&b);
    } else if (how == 1) {
        skv_entries e = {0};
        TU_OK(skv_sketch_entries(s, &e, &err), &err);
        skv_entries_free(&e);
    } else if (how == 2) {
        float q[D];
        for (int j = 0; j < D; j++) q[j] = 0.1f * (float)j;
        skv_partial *o = tu_partials_new(1, D);
        skv_attend_segments(s, q, o);
        free(o);
    } else {
        skv_rkv_materialize(s);
    }
}

static void assert_same_save(const skv_sketch *a, const skv_sketch *b, const char *what) {
    skv_buf x = tu_save(a), y = tu_save(b);
    if (!tu_bufs_equal(&x, &y)) fail_msg("%s: the checkpoints differ", what);
    skv_buf_free(&x);
    skv_buf_free(&y);
}

/* One case: n tokens, K = k, j pushes after the selection, read `how`. */
static void pending_case(synth_rng *r, size_t n, int k, size_t j, int how) {
    char what[96];
    snprintf(what, sizeof what, "n %zu, K %d, %zu pushes, reader %d", n, k, j, how);
    const skv_config c = rkv_cfg(k, 1000, SKV_DTYPE_F16); /* no check in j steps */
    skv_sketch *a = tu_create(&c), *b = tu_create(&c);
    float *K, *V, Q[G * D];
    tu_make_random_kv(r, n + j, D, &K, &V);
    synth_fill_normal(r, Q, G * D, 1.0f);
    tu_append(a, K, V, n, D);
    tu_append(b, K, V, n, D);
    skv_err err;
    int full = 0;
    TU_OK(skv_rkv_plan(a, Q, G, &full, &err), &err);
    TU_OK(skv_rkv_plan(b, Q, G, &full, &err), &err);
    float *p = tu_malloc(n * sizeof(float));
    uint32_t *idx = tu_malloc((size_t)k * sizeof(uint32_t));
    quantised_scores(r, p, n, 5);
    const skv_rkv_ring_view v0 = ring(b);
    const size_t rb = row_bytes(b), cap = v0.pcap * rb;
    char *k0 = tu_malloc(cap), *vv0 = tu_malloc(cap);
    memcpy(k0, v0.k->data, cap);
    memcpy(vv0, v0.v->data, cap);
    select_rows(a, Q, p, n, 1, idx);
    const size_t got = select_rows(b, Q, p, n, 0, idx);
    skv_rkv_ring_view v = ring(b);
    /* the install wrote no row: the bytes are those from before, rows [0, got) pending */
    assert_memory_equal(v.k->data, k0, cap);
    assert_memory_equal(v.v->data, vv0, cap);
    assert_int_equal(v.pend_lo, 0);
    assert_int_equal(v.pend_hi, got);
    assert_int_equal(v.materialized, 0);
    assert_int_equal(ring(a).pend_hi, 0); /* skv_rkv_apply installs at once */
    for (size_t t = 0; t < j; t++) {      /* decode steps: each push writes one row */
        tu_append(a, K + (n + t) * D, V + (n + t) * D, 1, D);
        tu_append(b, K + (n + t) * D, V + (n + t) * D, 1, D);
        TU_OK(skv_rkv_plan(a, Q, G, &full, &err), &err);
        assert_int_equal(full, 0);
        TU_OK(skv_rkv_plan(b, Q, G, &full, &err), &err);
        assert_int_equal(full, 0);
    }
    /* the first pcap - got pushes fill free rows, the next ones overwrite rows 0, 1, ... */
    const size_t free_rows = (size_t)k - got, over = j > free_rows ? j - free_rows : 0;
    const size_t left = over < got ? got - over : 0;
    v = ring(b);
    assert_int_equal(v.pend_hi - v.pend_lo, left);
    if (left) {
        assert_int_equal(v.pend_lo, over);
        assert_int_equal(v.pend_hi, got);
        if (v.pn == v.pcap) /* a full ring: the next push overwrites the lowest pending row */
            assert_int_equal(v.next, v.pend_lo);
    }
    assert_int_equal(v.materialized, 0);
    read_rows(b, how);
    v = ring(b);
    assert_int_equal(v.materialized, left); /* exactly the rows still due */
    assert_int_equal(v.pend_lo, 0);
    assert_int_equal(v.pend_hi, 0);
    const skv_rkv_ring_view va = ring(a);
    assert_int_equal(va.pn, v.pn);
    assert_memory_equal(va.k->data, v.k->data, v.pn * rb);
    assert_memory_equal(va.v->data, v.v->data, v.pn * rb);
    assert_same_save(a, b, what);
    read_rows(b, how); /* nothing more to copy */
    assert_int_equal(ring(b).materialized, left);
    free(K), free(V), free(p), free(idx), free(k0), free(vv0);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
}

static void test_install_defers_and_pushes_clear(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    const int ks[] = {1, 2, 7, 32};
    int cases = 0;
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++) {
        const int k = ks[a];
        const size_t ns[] = {1, (size_t)k, (size_t)k + 1, tu_rand_range(&r, 2, 4 * (size_t)k + 4)};
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t j = 0; j <= (size_t)k + 2; j++, cases++)
                pending_case(&r, ns[b], k, j, (int)((j + b) % 4));
    }
    printf("# %d cases: installs deferred, pushes clear their rows, reads copy the rest\n", cases);
}

/* A simulated device copy of the lazy sketch's ring, kept like worker/gpu_attend.c's
 * mirror_ring: gathered from the full store at a device selection and marked current
 * (skv_gpu_ring_current), then only pushed rows uploaded; a whole upload (after a load, or
 * more pushes than rows) materialises first. */
typedef struct sim_mirror {
    char *k, *v;
    uint64_t pushes, layout;
    int ok;
    size_t whole, delta; /* uploads of each kind */
} sim_mirror;

static void mirror_current(sim_mirror *m, const skv_sketch *s) {
    const skv_rkv_ring_view v = ring(s);
    m->pushes = v.pushes;
    m->layout = v.layout;
    m->ok = 1;
}

/* The device's top-K gather: ring rows [0, got) = store rows idx[]. */
static void mirror_gather(sim_mirror *m, const skv_sketch *s, const uint32_t *idx, size_t got) {
    const skv_rows *fk, *fv;
    size_t n = 0;
    skv_rkv_full_rows(s, &fk, &fv, &n);
    const size_t rb = row_bytes(s);
    for (size_t i = 0; i < got; i++) {
        assert_true(idx[i] < n);
        memcpy(m->k + i * rb, (const char *)fk->data + idx[i] * rb, rb);
        memcpy(m->v + i * rb, (const char *)fv->data + idx[i] * rb, rb);
    }
    mirror_current(m, s);
}

static void upload(sim_mirror *m, const skv_rkv_ring_view *v, size_t first, size_t n, size_t rb) {
    memcpy(m->k + first * rb, (const char *)v->k->data + first * rb, n * rb);
    memcpy(m->v + first * rb, (const char *)v->v->data + first * rb, n * rb);
}

static void mirror_sync(sim_mirror *m, skv_sketch *s) {
    skv_rkv_ring_view v = ring(s);
    const size_t rb = row_bytes(s);
    const uint64_t delta = v.pushes - m->pushes;
    if (!m->ok || m->layout != v.layout || delta >= v.pcap) {
        skv_rkv_materialize(s);
        upload(m, &v, 0, v.pn, rb);
        m->whole++;
    } else if (delta) {
        const size_t first = (v.next + v.pcap - (size_t)delta) % v.pcap;
        const size_t n1 = first + (size_t)delta <= v.pcap ? (size_t)delta : v.pcap - first;
        for (size_t i = 0; i < delta; i++) { /* the worker's premise: pushed rows are written */
            const size_t row = (first + i) % v.pcap;
            assert_false(row >= v.pend_lo && row < v.pend_hi);
        }
        const uint64_t before = v.materialized;
        upload(m, &v, first, n1, rb);
        upload(m, &v, 0, (size_t)delta - n1, rb);
        assert_int_equal(ring(s).materialized, before);
        m->delta++;
    }
    mirror_current(m, s);
}

/* Everything a reader can see of the twins, equal; the mirror equals the eager rows. */
static void assert_twins(skv_sketch *a, skv_sketch *b, const char *what) {
    const skv_rkv_ring_view va = ring(a), vb = ring(b);
    assert_int_equal(va.pn, vb.pn);
    assert_int_equal(va.next, vb.next);
    assert_int_equal(va.pushes, vb.pushes);
    assert_int_equal(va.layout, vb.layout);
    assert_int_equal(va.pend_hi, 0);
    uint64_t pa[64], pb[64];
    double sa[64], sb[64];
    assert_true(va.pcap <= 64);
    assert_int_equal(skv_rkv_partial(a, pa, sa), skv_rkv_partial(b, pb, sb));
    assert_memory_equal(pa, pb, va.pn * sizeof *pa);
    assert_memory_equal(sa, sb, va.pn * sizeof *sa);
    skv_stats x, y;
    skv_sketch_stats(a, &x);
    skv_sketch_stats(b, &y);
    if (x.tokens_seen != y.tokens_seen || x.attends != y.attends || x.full_steps != y.full_steps ||
        x.bytes_read != y.bytes_read || x.bytes != y.bytes)
        fail_msg("%s: the counters differ", what);
}

static void assert_mirror(const sim_mirror *m, const skv_sketch *a, const char *what) {
    const skv_rkv_ring_view va = ring(a);
    const size_t rb = row_bytes(a);
    if (memcmp(m->k, va.k->data, va.pn * rb) || memcmp(m->v, va.v->data, va.pn * rb))
        fail_msg("%s: the mirror differs from the eager twin's rows", what);
}

/* Reload s from its own checkpoint (a fresh sketch: nothing pending). */
static skv_sketch *reload(skv_sketch *s) {
    skv_buf b = tu_save(s);
    skv_sketch *t = NULL;
    skv_err err;
    TU_OK(skv_sketch_load(b.data, b.len, &t, NULL, &err), &err);
    skv_buf_free(&b);
    skv_sketch_destroy(s);
    return t;
}

typedef struct run_tally {
    size_t selections, partial, whole, delta, reads, loads;
    uint64_t materialized, pushed_over;
} run_tally;

static void twin_run(synth_rng *r, run_tally *t) {
    const skv_dtype dts[] = {SKV_DTYPE_F32, SKV_DTYPE_F16, SKV_DTYPE_BF16};
    const int k = (int)tu_rand_range(r, 1, 40), levels = (int)tu_rand_range(r, 0, 3) * 3;
    const size_t n0 = tu_rand_range(r, 1, 3 * (size_t)k + 10);
    enum { STEPS = 120, MAXCHUNK = 9 };
    const skv_config c = rkv_cfg(k, (int)tu_rand_range(r, 1, 6), dts[synth_rng_u64(r) % 3]);
    char what[128];
    snprintf(what, sizeof what, "K %d, n0 %zu, stride %d, dtype %d, levels %d", k, n0, c.stride,
             (int)c.dtype, levels);
    skv_sketch *a = tu_create(&c), *b = tu_create(&c);
    const size_t total = n0 + STEPS * MAXCHUNK;
    float *K, *V, Q[G * D];
    tu_make_random_kv(r, total, D, &K, &V);
    size_t at = n0;
    tu_append(a, K, V, n0, D);
    tu_append(b, K, V, n0, D);
    const size_t rb = skv_rows_bytes(c.dtype, D, 1);
    sim_mirror m = {tu_malloc((size_t)k * rb), tu_malloc((size_t)k * rb), 0, 0, 0, 0, 0};
    float *p = tu_malloc(total * sizeof(float));
    uint32_t *idx = tu_malloc((size_t)k * sizeof(uint32_t));
    skv_partial *oa = tu_partials_new(G, D), *ob = tu_partials_new(G, D);
    const size_t ps = (size_t)G * skv_partial_stride(D);
    skv_err err;
    for (int step = 0; step < STEPS; step++) {
        const unsigned op = (unsigned)(synth_rng_u64(r) % 100);
        synth_fill_normal(r, Q, G * D, 1.0f);
        if (op < 60) { /* a decode step as the GPU worker runs it: append, plan, then a device
                        * selection or a partial step over the mirror */
            const size_t nt = op < 5 ? tu_rand_range(r, 2, MAXCHUNK) : 1;
            const uint64_t before = ring(b).pend_hi - ring(b).pend_lo;
            tu_append(a, K + at * D, V + at * D, nt, D);
            tu_append(b, K + at * D, V + at * D, nt, D);
            at += nt;
            t->pushed_over += before - (ring(b).pend_hi - ring(b).pend_lo);
            int fa = -1, fb = -1;
            TU_OK(skv_rkv_plan(a, Q, G, &fa, &err), &err);
            TU_OK(skv_rkv_plan(b, Q, G, &fb, &err), &err);
            assert_int_equal(fa, fb);
            if (fa) {
                const size_t n = store_rows(b);
                assert_int_equal(n, store_rows(a));
                quantised_scores(r, p, n, levels);
                select_rows(a, Q, p, n, 1, idx);
                const uint64_t mat = ring(b).materialized;
                const size_t got = select_rows(b, Q, p, n, 0, idx);
                assert_int_equal(ring(b).materialized, mat); /* the install copies nothing */
                mirror_gather(&m, b, idx, got);
                t->selections++;
            } else {
                mirror_sync(&m, b);
                t->partial++;
            }
            assert_mirror(&m, a, what);
        } else if (op < 68) { /* the CPU attend (skv_sketch_attend: its own full steps too) */
            tu_attend(a, Q, G, D, oa);
            tu_attend(b, Q, G, D, ob);
            if (memcmp(oa, ob, ps)) fail_msg("%s: step %d: the attends differ", what, step);
            t->reads++;
        } else if (op < 74) { /* the CPU attend of the partial cache alone */
            skv_attend_segments(a, Q, oa);
            skv_attend_segments(b, Q, ob);
            if (memcmp(oa, ob, skv_partial_stride(D)))
                fail_msg("%s: step %d: the segment attends differ", what, step);
            t->reads++;
        } else if (op < 80) { /* the entry export */
            skv_entries ea = {0}, eb = {0};
            TU_OK(skv_sketch_entries(a, &ea, &err), &err);
            TU_OK(skv_sketch_entries(b, &eb, &err), &err);
            assert_int_equal(ea.n, eb.n);
            if (ea.n && (memcmp(ea.k, eb.k, ea.n * rb) || memcmp(ea.v, eb.v, ea.n * rb) ||
                         memcmp(ea.a, eb.a, ea.n * sizeof(float)) ||
                         memcmp(ea.b, eb.b, ea.n * sizeof(float))))
                fail_msg("%s: step %d: the entries differ", what, step);
            skv_entries_free(&ea);
            skv_entries_free(&eb);
            t->reads++;
        } else if (op < 86) { /* a checkpoint */
            assert_same_save(a, b, what);
            t->reads++;
        } else if (op < 90) { /* saved and loaded: a fresh sketch, a fresh mirror */
            a = reload(a);
            b = reload(b);
            m.ok = 0;
            t->loads++;
        } else if (op < 95) { /* the layer rule's refresh: the next attend is a full step */
            TU_OK(skv_sketch_refresh(a, &err), &err);
            TU_OK(skv_sketch_refresh(b, &err), &err);
        } else { /* a whole-ring read (skv_rkv_ring after materialising) */
            skv_rkv_materialize(b);
            const skv_rkv_ring_view va = ring(a), vb = ring(b);
            assert_int_equal(vb.pend_hi, 0);
            if (memcmp(va.k->data, vb.k->data, va.pn * rb) ||
                memcmp(va.v->data, vb.v->data, va.pn * rb))
                fail_msg("%s: step %d: the ring rows differ", what, step);
            t->reads++;
        }
        assert_twins(a, b, what);
    }
    assert_same_save(a, b, what);
    t->whole += m.whole;
    t->delta += m.delta;
    t->materialized += ring(b).materialized;
    free(K), free(V), free(p), free(idx), free(oa), free(ob), free(m.k), free(m.v);
    skv_sketch_destroy(a);
    skv_sketch_destroy(b);
}

static void test_lazy_twin_equals_eager(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    run_tally t = {0};
    enum { RUNS = 60 };
    for (int i = 0; i < RUNS; i++) twin_run(&r, &t);
    /* the sequences must have exercised what they claim to */
    assert_true(t.selections > 100 && t.partial > 500 && t.delta > 300);
    assert_true(t.loads > 20 && t.reads > 500 && t.pushed_over > 100 && t.materialized > 0);
    printf("# %d twin runs identical: %zu selections, %zu partial steps (mirror: %zu delta, %zu "
           "whole uploads), %zu reads, %zu loads; %llu pending rows pushed over, %llu "
           "materialised\n",
           RUNS, t.selections, t.partial, t.delta, t.whole, t.reads, t.loads,
           (unsigned long long)t.pushed_over, (unsigned long long)t.materialized);
}

int main(void) {
    tu_suite_begin("test_refreshkv_lazy");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_defers_and_pushes_clear),
        cmocka_unit_test(test_lazy_twin_equals_eager),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
