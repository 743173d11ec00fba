/*
 * test_gpu_csr_worker_host.c — the worker's op handler (worker/worker.c, op_tokens) with its
 * GPU side on the host emulation of tests/cuda_emu.h: csr appends coded by the (emulated)
 * GPU encode, the other appends on the CPU meanwhile, then the attends. A GPU worker and a
 * CPU worker get the same requests: their answers match (within the storage rounding the
 * GPU's code attend skips) and their checkpoints are byte for byte the same after several
 * steps, with windows > 0 and 0, pre-rotary keys and f32 rows (coded on the GPU, attended
 * on the CPU), a sketch twice in one request, an exact sketch beside, and a refused request
 * that changes nothing. Beside them, refreshkv with each full store (exact, subgen, csr):
 * partial steps attended on the (emulated) GPU from the worker's ring mirror, full steps on
 * the CPU at the attends the item's refresh flag names, the mirror following each
 * re-selection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <unistd.h>

#include "test_util.h"

#include "cuda_emu.h"
#include "fileio.h"
#include "skv_backend.h"
#include "worker.h"

/* A CUDA device, so that the worker's GPU side comes up (on the emulation). */
int skv_backend_select(int local_rank, skv_backend_info *out) {
    (void)local_rank;
    memset(out, 0, sizeof *out);
    out->kind = SKV_BACKEND_CUDA;
    out->device = 0;
    out->device_count = 1;
    snprintf(out->name, sizeof out->name, "host emulation");
    return 0;
}

enum { D = 64, G = 4, NSEQ = 8, LAYERS = 2, HEADS = 2, NIT = NSEQ * LAYERS * HEADS };
/* sequences 0 .. RKV_SEQ0 - 1 are csr or exact; RKV_SEQ0 .. NSEQ - 1 refreshkv */
enum { RKV_SEQ0 = 5 };

typedef struct wk_pair {
    skv_worker *w[2]; /* 0: GPU, 1: CPU */
} wk_pair;

static Subkv__WorkItem g_items[NIT + 1];
static Subkv__WorkItem *g_item_ptrs[NIT + 1];

/* items for sequences [s0, s1) (every layer and head), with n_tokens / group set later */
static size_t make_items(uint64_t s0, uint64_t s1) {
    size_t n = 0;
    for (uint64_t s = s0; s < s1; s++)
        for (uint32_t l = 0; l < LAYERS; l++)
            for (uint32_t h = 0; h < HEADS; h++) {
                subkv__work_item__init(&g_items[n]);
                g_items[n].seq_id = s, g_items[n].layer = l, g_items[n].kv_head = h;
                g_item_ptrs[n] = &g_items[n];
                n++;
            }
    return n;
}

/* full_store: NULL for csr and exact; "exact", "subgen" or "csr" makes the sequence
 * refreshkv with that store and a partial cache of RKV_K rows. */
enum { RKV_K = 24 };
static void create_seq(wk_pair *p, uint64_t seq, const char *policy, const char *dtype, int sinks,
                       int window, int sparsity, const char *dict_path, float rope_base,
                       const char *full_store) {
    Subkv__PolicyConfig pc = SUBKV__POLICY_CONFIG__INIT;
    Subkv__OptInt oi_s = SUBKV__OPT_INT__INIT, oi_w = SUBKV__OPT_INT__INIT,
                  oi_sp = SUBKV__OPT_INT__INIT, oi_k = SUBKV__OPT_INT__INIT;
    Subkv__OptFloat of_r = SUBKV__OPT_FLOAT__INIT;
    pc.policy = (char *)(full_store ? "refreshkv" : policy);
    pc.dtype = (char *)dtype;
    oi_s.v = sinks, oi_w.v = window, oi_sp.v = sparsity, of_r.v = rope_base, oi_k.v = RKV_K;
    if (!strcmp(policy, "csr")) {
        pc.sinks = &oi_s, pc.window = &oi_w, pc.sparsity = &oi_sp;
        pc.dict_path = (char *)dict_path;
        if (rope_base > 0.0f) pc.rope_base = &of_r;
    }
    if (full_store) {
        pc.full_store = (char *)full_store;
        pc.partial_tokens = &oi_k;
    }
    Subkv__WorkerOp op = SUBKV__WORKER_OP__INIT;
    op.op = SUBKV__WORKER_OP_CODE__WOP_CREATE;
    op.head_dim = D;
    op.policy = &pc;
    op.n_items = make_items(seq, seq + 1);
    op.items = g_item_ptrs;
    for (int k = 0; k < 2; k++) {
        skv_worker_result res;
        skv_err err = {0};
        TU_OK(skv_worker_handle(p->w[k], &op, NULL, 0, &res, &err), &err);
    }
}

/* Checkpoint both workers and compare the files byte for byte. */
static void same_checkpoints(wk_pair *p, const char *dir, int step) {
    unsigned char *data[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char sub[4200], path[4300];
        snprintf(sub, sizeof sub, "%s/%s-%d", dir, k ? "cpu" : "gpu", step);
        Subkv__WorkerOp op = SUBKV__WORKER_OP__INIT;
        op.op = SUBKV__WORKER_OP_CODE__WOP_CHECKPOINT;
        op.path = sub;
        op.nworkers = 1;
        skv_worker_result res;
        skv_err err = {0};
        TU_OK(skv_worker_handle(p->w[k], &op, NULL, 0, &res, &err), &err);
        snprintf(path, sizeof path, "%s/worker-0.skv", sub);
        TU_OK(skv_file_read(path, (size_t)1 << 30, &data[k], &len[k], &err), &err);
        unlink(path);
        rmdir(sub);
    }
    if (len[0] != len[1] || memcmp(data[0], data[1], len[0]) != 0)
        fail_msg("step %d: the GPU worker's checkpoint (%zu B) differs from the CPU worker's "
                 "(%zu B)",
                 step, len[0], len[1]);
    free(data[0]), free(data[1]);
}

static void test_gpu_csr_worker_matches_cpu_worker(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, "gpu csr worker");
    char dir[] = "/tmp/subkv-csrw-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dict_path[128], pre_path[128];
    snprintf(dict_path, sizeof dict_path, "%s/dict.skvd", dir);
    snprintf(pre_path, sizeof pre_path, "%s/dict-pre.skvd", dir);
    skv_err err = {0};
    for (int k = 0; k < 2; k++) { /* a post- and a pre-rotary set */
        skv_dict *dict = csr_ref_dict(&r, D, k ? 96 : 128, LAYERS, 1,
                                      k ? SKV_KEYS_PRE_ROTARY : SKV_KEYS_POST_ROTARY);
        TU_OK(skv_dict_save_file(dict, k ? pre_path : dict_path, &err), &err);
        skv_dict_free(dict);
    }

    wk_pair p;
    skv_worker_opts o = {0};
    o.backend = SKV_WORKER_AUTO;
    TU_OK(skv_worker_new(0, 1, 0, &o, &p.w[0], &err), &err);
    o.backend = SKV_WORKER_CPU;
    TU_OK(skv_worker_new(0, 1, 0, &o, &p.w[1], &err), &err);
    assert_int_equal(skv_worker_device(p.w[0]), 0); /* the GPU path is on */
    assert_int_equal(skv_worker_device(p.w[1]), -1);
    /* a window: tokens are coded as they leave it; none: as they come; an exact sequence:
     * CPU appends beside the GPU's; pre-rotary keys and f32 rows: coded on the GPU, attended
     * on the CPU */
    create_seq(&p, 0, "csr", "f16", 4, 16, 8, dict_path, 0.0f, NULL);
    create_seq(&p, 1, "csr", "f16", 0, 0, 5, dict_path, 0.0f, NULL);
    create_seq(&p, 2, "exact", "f16", 0, 0, 0, NULL, 0.0f, NULL);
    create_seq(&p, 3, "csr", "f16", 2, 8, 6, pre_path, 10000.0f, NULL);
    create_seq(&p, 4, "csr", "f32", 0, 4, 4, dict_path, 0.0f, NULL);
    /* refreshkv: the csr store coded on the CPU inside the sketch (not by the GPU encode) */
    create_seq(&p, 5, "csr", "f16", 2, 8, 6, dict_path, 0.0f, "csr");
    create_seq(&p, 6, "exact", "f16", 0, 0, 0, NULL, 0.0f, "exact");
    create_seq(&p, 7, "exact", "f16", 0, 0, 0, NULL, 0.0f, "subgen");

    const size_t on = (size_t)G * (D + 2);
    float *outs[2] = {tu_malloc(NIT * 2 * on * sizeof(float)),
                      tu_malloc(NIT * 2 * on * sizeof(float))};
    double worst = 0.0;
    uint64_t seen[NIT] = {0}; /* tokens appended to each sketch (item index of make_items) */
    const uint64_t encoded0 = g_emu_encoded;
    for (int step = 0; step < 7; step++) {
        size_t n = make_items(0, NSEQ);
        if (step == 4) g_items[n++] = g_items[1], g_item_ptrs[n - 1] = &g_items[n - 1]; /* twice */
        size_t floats = 0;
        for (size_t i = 0; i < n; i++) {
            /* a prefill first, then decode-like steps; step 2 only attends */
            g_items[i].n_tokens = step == 0   ? (uint32_t)tu_rand_range(&r, 50, 300)
                                  : step == 2 ? 0
                                              : (uint32_t)tu_rand_range(&r, 1, step % 2 ? 40 : 3);
            g_items[i].group = G;
            /* refreshkv: a full step at steps 1, 3 and 6 (decide=layer: the flag decides);
             * after the prefill at most 3 tokens a step, fewer than K, so that the ring mirror
             * takes its one-row-per-token path unless a re-selection is noticed */
            const int rkv = g_items[i].seq_id >= RKV_SEQ0;
            g_items[i].refresh = rkv && (step == 1 || step == 3 || step == 6);
            if (rkv && step > 0 && step != 2)
                g_items[i].n_tokens = (uint32_t)tu_rand_range(&r, 1, 3);
            floats += (2 * (size_t)g_items[i].n_tokens + G) * D;
        }
        float *in = tu_malloc(floats * sizeof(float) + 4);
        synth_fill_normal(&r, in, floats, 1.0f);
        Subkv__WorkerOp op = SUBKV__WORKER_OP__INIT;
        op.op = SUBKV__WORKER_OP_CODE__WOP_STEP;
        op.head_dim = D;
        op.n_items = n;
        op.items = g_item_ptrs;
        if (step == 5) { /* a NaN in the first item's keys: refused, nothing changes */
            in[3] = NAN;
            for (int k = 0; k < 2; k++) {
                skv_worker_result res;
                assert_int_equal(skv_worker_handle(p.w[k], &op, in, floats, &res, &err),
                                 SKV_ERR_NONFINITE);
            }
            same_checkpoints(&p, dir, 50 + step);
            in[3] = 0.25f;
        }
        size_t nout[2];
        for (int k = 0; k < 2; k++) {
            skv_worker_result res;
            TU_OK(skv_worker_handle(p.w[k], &op, in, floats, &res, &err), &err);
            memcpy(outs[k], res.out, res.nout * sizeof(float));
            nout[k] = res.nout;
        }
        assert_int_equal(nout[0], nout[1]);
        assert_int_equal(nout[0], n * on);
        for (size_t i = 0; i < n * G; i++) {
            const skv_partial *a = skv_partial_at(outs[0], D, i),
                              *b = skv_partial_at(outs[1], D, i);
            const double e = csr_ref_rel(a, b, D);
            worst = e > worst ? e : worst;
            if (!(e <= 4e-3))
                fail_msg("step %d partial %zu: rel err %g GPU vs CPU worker", step, i, e);
        }
        same_checkpoints(&p, dir, step);
        for (size_t i = 0; i < n; i++)
            seen[(g_items[i].seq_id * LAYERS + g_items[i].layer) * HEADS + g_items[i].kv_head] +=
                g_items[i].n_tokens;
        free(in);
    }
    /* every token the csr sketches coded was coded by the (emulated) GPU encode: past the
     * sinks + window rows of sequences 0 (20), 3 (10) and 4 (4), every token of sequence 1 */
    uint64_t coded = 0;
    const uint64_t exact_rows[RKV_SEQ0] = {20, 0, 0, 10, 4};
    for (int q = 0; q < RKV_SEQ0; q++)
        for (int i = 0; q != 2 && i < LAYERS * HEADS; i++) {
            const uint64_t t = seen[q * LAYERS * HEADS + i];
            coded += t > exact_rows[q] ? t - exact_rows[q] : 0;
        }
    assert_true(coded > 0);
    assert_int_equal(g_emu_encoded - encoded0, coded);
    printf("# GPU-coding worker vs CPU worker: worst rel err %.2e, checkpoints identical\n", worst);
    skv_worker_free(p.w[0]), skv_worker_free(p.w[1]);
    free(outs[0]), free(outs[1]);
    unlink(dict_path);
    unlink(pre_path);
    rmdir(dir);
}

int main(void) {
    tu_suite_begin("test_gpu_csr_worker_host");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_csr_worker_matches_cpu_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
