/*
 * test_multigpu.c — the host-side bookkeeping of `subkv-bench multigpu` (tools/mgpu_plan.h):
 * shard ranges for head and context sharding on 1..8 ranks (sizes that divide and sizes
 * that do not), that every rank's attend jobs, gather messages and result offsets put every
 * (layer, job) partial exactly once where rank 0 reads it, the merge of context shards
 * against exact attention in float64, option errors, and the harness's exit 2 without CUDA.
 * The GPU group (skipped, saying why, without a GPU) holds the merge kernel to its host
 * mirror and the fill-at-index to a slice of the full fill, and runs the harness's --check
 * under mpirun on 1 and 2 GPUs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mgpu_plan.h"
#include "skv_nccl_ops.h"
#include "test_util.h"

#include "gpu_suite.h"

static const uint64_t sizes[] = {1, 2, 3, 5, 7, 8, 13, 64, 65, 1000, 4097};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_mgpu_split_tiles_in_order_with_sizes_one_apart(void **state) {
    (void)state;
    for (size_t k = 0; k < NSIZES; k++)
        for (int parts = 1; parts <= 8; parts++) {
            const uint64_t n = sizes[k];
            uint64_t next = 0;
            for (int r = 0; r < parts; r++) {
                uint64_t lo, hi;
                mgpu_split(n, parts, r, &lo, &hi);
                assert_true(lo == next && hi >= lo);
                const uint64_t want = n / (uint64_t)parts + ((uint64_t)r < n % parts ? 1 : 0);
                if (hi - lo != want)
                    fail_msg("n %llu parts %d r %d: %llu items, want %llu", (unsigned long long)n,
                             parts, r, (unsigned long long)(hi - lo), (unsigned long long)want);
                next = hi;
            }
            assert_true(next == n);
        }
}

static mgpu_plan plan_for(int shard, size_t batch, int kvh, size_t context, int f, int nranks,
                          int layers, int distinct) {
    mgpu_opts o;
    mgpu_opts_default(&o);
    o.shard = shard, o.batch = batch, o.kv_heads = kvh, o.context = context, o.subgen_f = f;
    o.layers = layers, o.distinct_layers = distinct, o.group = 2, o.d = 64;
    mgpu_plan p;
    char why[256];
    if (mgpu_plan_make(&o, nranks, &p, why, sizeof why)) fail_msg("plan: %s", why);
    return p;
}

/* Every (layer set, job, row) of the virtual data is held by exactly one rank, and a job's
 * rows on a rank are the contiguous global rows the fill gives them. */
static void test_mgpu_shards_hold_every_row_exactly_once(void **state) {
    (void)state;
    for (int shard = 0; shard < 2; shard++)
        for (size_t k = 0; k < NSIZES; k++)
            for (int n = 1; n <= 8; n++) {
                /* head: jobs = sizes[k] (batch sizes[k] x 1 kv head); context: rows */
                const size_t batch = shard == MGPU_SHARD_HEAD ? sizes[k] : 3;
                const size_t ctx = shard == MGPU_SHARD_HEAD ? 40 : sizes[k] * 4;
                const mgpu_plan p = plan_for(shard, batch, 1, ctx, 4, n, 3, 2);
                const uint64_t total = (uint64_t)p.distinct * p.jobs * p.entries;
                unsigned char *seen = calloc(total, 1);
                assert_non_null(seen);
                uint64_t held = 0;
                for (int r = 0; r < n; r++) {
                    const mgpu_share s = mgpu_share_of(&p, r);
                    if (shard == MGPU_SHARD_HEAD)
                        assert_true(s.t0 == 0 && s.nt == p.entries);
                    else
                        assert_true(s.j0 == 0 && s.nj == p.jobs);
                    held += mgpu_rank_rows(&p, r);
                    for (int ls = 0; ls < p.distinct; ls++)
                        for (uint64_t i = 0; i < s.nj; i++)
                            for (uint64_t t = 0; t < s.nt; t++) {
                                const uint64_t g = mgpu_global_row(&p, ls, s.j0 + i, s.t0 + t);
                                assert_true(g < total && !seen[g]);
                                seen[g] = 1;
                                /* contiguous: the fill of a (ls, job) segment */
                                assert_true(mgpu_local_row(&p, &s, ls, i, t) ==
                                            mgpu_local_row(&p, &s, ls, i, 0) + t);
                            }
                }
                assert_true(held == total);
                for (uint64_t g = 0; g < total; g++) assert_true(seen[g]);
                free(seen);
            }
}

/*
 * The whole step's data flow on the host: every rank's jobs (mgpu_build_jobs) tag their
 * output partial with (layer, global job) read back from the query pointer; the gather
 * copies each rank's message (counts, displacements) into rank 0's buffer; rank 0 must then
 * find every (layer, job) where mgpu_result_offset says — for context sharding in every one
 * of the N sets — with no message overlapping another or leaving the buffer.
 */
static void check_flow(const mgpu_plan *p, int lb) {
    const size_t pf = p->part_floats, qf = (size_t)p->group * (size_t)p->d;
    const int nl = lb ? p->layers : 1, iters = lb ? 1 : p->layers;
    const size_t rf = mgpu_recv_floats(p, nl);
    float *q = tu_malloc((size_t)p->layers * p->jobs * qf * sizeof(float));
    float *res = tu_malloc((size_t)p->layers * p->jobs * pf * sizeof(float));
    float *recv = tu_malloc(rf * sizeof(float));
    int *owner = tu_malloc(rf * sizeof(int));
    for (int it = 0; it < iters; it++) {
        const int l0 = lb ? 0 : it;
        for (size_t x = 0; x < rf; x++) recv[x] = -1.0f, owner[x] = -1;
        for (int r = 0; r < p->nranks; r++) {
            const mgpu_share s = mgpu_share_of(p, r);
            const size_t nj = (size_t)s.nj;
            float *send = tu_malloc(((size_t)p->layers * nj + 1) * pf * sizeof(float));
            skv_cuda_job *jobs = tu_malloc(((size_t)p->layers * nj + 1) * sizeof *jobs);
            const size_t kvb = (size_t)mgpu_rank_rows(p, r) * (size_t)p->d * (size_t)p->esize;
            char *K = tu_malloc(kvb), *V = tu_malloc(kvb);
            const int nb = mgpu_build_jobs(p, &s, 0, p->layers, K, V, NULL, q, send, jobs);
            assert_int_equal(nb, p->layers * (int)nj);
            for (int j = 0; j < nb; j++) {
                const size_t qi = (size_t)(jobs[j].q - q) / qf; /* l * J + job */
                assert_true(jobs[j].n == s.nt && jobs[j].a == NULL);
                assert_true((const char *)jobs[j].v - V == (const char *)jobs[j].k - K);
                assert_true((size_t)((const char *)jobs[j].k - K) ==
                            (size_t)mgpu_local_row(p, &s, (int)(qi / p->jobs) % p->distinct,
                                                   qi % p->jobs - s.j0, 0) *
                                (size_t)p->d * (size_t)p->esize);
                for (size_t e = 0; e < pf; e++) jobs[j].out[e] = (float)qi;
            }
            /* this iteration's message: layers [l0, l0 + nl) */
            const size_t cnt = mgpu_send_floats(p, r, nl), dis = mgpu_recv_displ(p, r, nl);
            assert_true(dis + cnt <= rf);
            for (size_t x = 0; x < cnt; x++) {
                assert_int_equal(owner[dis + x], -1); /* no overlap */
                owner[dis + x] = r;
                recv[dis + x] = send[(size_t)l0 * nj * pf + x];
            }
            free(send), free(jobs), free(K), free(V);
        }
        for (int l = l0; l < l0 + nl; l++)
            for (uint64_t j = 0; j < p->jobs; j++) {
                const float want = (float)((size_t)l * p->jobs + j);
                if (p->shard == MGPU_SHARD_HEAD) {
                    /* per layer, rank 0 receives layer l at res + l * J * pf */
                    const size_t off =
                        lb ? mgpu_result_offset(p, 1, l, j)
                           : mgpu_result_offset(p, 0, l, j) - (size_t)l * p->jobs * pf;
                    assert_true(off + pf <= rf);
                    assert_true(recv[off] == want && recv[off + pf - 1] == want);
                } else {
                    const size_t set = (size_t)nl * p->jobs * pf;
                    const size_t off = ((size_t)(l - l0) * p->jobs + j) * pf;
                    for (int r = 0; r < p->nranks; r++)
                        assert_true(recv[(size_t)r * set + off] == want);
                    /* the merge writes [layer][job]: the canonical offset */
                    assert_true(mgpu_result_offset(p, lb, l, j) == ((size_t)l * p->jobs + j) * pf);
                }
            }
    }
    free(q), free(res), free(recv), free(owner);
}

static void test_mgpu_gather_puts_every_partial_where_rank0_reads_it(void **state) {
    (void)state;
    const size_t batches[] = {1, 3, 8};
    for (int shard = 0; shard < 2; shard++)
        for (size_t b = 0; b < 3; b++)
            for (int n = 1; n <= 8; n++)
                for (int lb = 0; lb < 2; lb++) {
                    /* context 37 at subgen4: 9 rows a job, fewer than 8 ranks' worth */
                    const mgpu_plan p = plan_for(shard, batches[b], 3, 37, 4, n, 4, 3);
                    check_flow(&p, lb);
                }
}

/* Partial of query q over rows [lo, hi) of K/V (float64 sums, stored as floats). */
static void range_partial(const float *K, const float *V, const float *q, size_t lo, size_t hi,
                          int d, float *out) {
    skv_partial *p = (skv_partial *)out;
    skv_partial_init(p, d);
    if (hi <= lo) return;
    double m = -INFINITY;
    for (size_t t = lo; t < hi; t++) {
        double s = 0;
        for (int e = 0; e < d; e++) s += (double)q[e] * K[t * (size_t)d + e];
        if (s > m) m = s;
    }
    double l = 0, *o = calloc((size_t)d, sizeof(double));
    assert_non_null(o);
    for (size_t t = lo; t < hi; t++) {
        double s = 0;
        for (int e = 0; e < d; e++) s += (double)q[e] * K[t * (size_t)d + e];
        const double w = exp(s - m);
        l += w;
        for (int e = 0; e < d; e++) o[e] += w * V[t * (size_t)d + e];
    }
    p->m = (float)m;
    p->l = (float)l;
    for (int e = 0; e < d; e++) p->o[e] = (float)o[e];
    free(o);
}

/* Context shards' partials, merged by mgpu_merge_host in set order, give exact attention
 * (float64 over all rows) on fresh random data, for 1..8 shards including empty ones. */
static void test_mgpu_merge_of_context_shards_equals_exact_attention(void **state) {
    (void)state;
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const int d = 64, g = 3;
    const size_t ps = (size_t)d + 2;
    for (int n = 1; n <= 8; n++) {
        const size_t rows = n == 8 ? 5 : tu_rand_range(&rng, 50, 400); /* 5 < 8: empty shards */
        float *K, *V;
        tu_make_random_kv(&rng, rows, d, &K, &V);
        float *Q = tu_malloc((size_t)g * d * sizeof(float));
        synth_fill_normal(&rng, Q, (size_t)g * d, 1.0f / sqrtf((float)d));
        float *sets = tu_malloc((size_t)n * g * ps * sizeof(float));
        for (int r = 0; r < n; r++) {
            uint64_t lo, hi;
            mgpu_split(rows, n, r, &lo, &hi);
            for (int h = 0; h < g; h++)
                range_partial(K, V, Q + (size_t)h * d, lo, hi, d, sets + ((size_t)r * g + h) * ps);
        }
        float *out = tu_malloc((size_t)g * ps * sizeof(float));
        mgpu_merge_host(sets, n, (size_t)g * ps, (size_t)g, d, out);
        for (int h = 0; h < g; h++) {
            float whole[66], got[64], want[64];
            range_partial(K, V, Q + (size_t)h * d, 0, rows, d, whole);
            skv_partial_output((const skv_partial *)whole, d, want);
            skv_partial_output((const skv_partial *)(out + h * ps), d, got);
            const double e = tu_rel_error_ff(got, want, d);
            if (!(e < 1e-5)) fail_msg("%d shards of %zu rows, head %d: rel err %g", n, rows, h, e);
            /* the fold is skv_partial_merge's, in set order */
            float fold[66];
            skv_partial_init((skv_partial *)fold, d);
            for (int r = 0; r < n; r++)
                skv_partial_merge((skv_partial *)fold,
                                  (const skv_partial *)(sets + ((size_t)r * g + h) * ps), d);
            assert_memory_equal(fold, out + h * ps, ps * sizeof(float));
        }
        free(K), free(V), free(Q), free(sets), free(out);
    }
}

/* Parse a space-separated command line; returns mgpu_opts_parse's code, why filled. */
static int parse(const char *line, mgpu_opts *o, char *why, size_t n) {
    char buf[512], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " ")) argv[argc++] = t;
    mgpu_opts_default(o);
    why[0] = '\0';
    return mgpu_opts_parse(o, argc, argv, why, n);
}

static void expect_refused(const char *line, const char *want) {
    mgpu_opts o;
    char why[320];
    const int rc = parse(line, &o, why, sizeof why);
    if (rc != 2 || !strstr(why, want))
        fail_msg("'%s': rc %d, '%s'; wanted 2 with '%s'", line, rc, why, want);
}

static void test_mgpu_options_refuse_bad_input_with_a_reason(void **state) {
    (void)state;
    expect_refused("--shard rows", "bad value 'rows' for --shard");
    expect_refused("--path tcp", "bad value 'tcp' for --path");
    expect_refused("--graphs --path mpi", "--graphs needs --path nccl");
    expect_refused("--graphs", "--graphs needs --path nccl"); /* default path: both */
    expect_refused("--check", "use a smaller --context (e.g. 32K)");
    expect_refused("--check --context 256K", "exceeds 4 GiB");
    expect_refused("--policy subgen", "bad value 'subgen' for --policy");
    expect_refused("--policy subgen16 --context 8", "leaves no rows");
    expect_refused("--group 5", "bad value '5' for --group");
    expect_refused("--d 96", "bad value '96' for --d");
    expect_refused("--distinct-layers 3 --layers 2", "exceeds --layers");
    expect_refused("--steps", "--steps needs a value");
    expect_refused("--context -5", "bad value");
    expect_refused("--frobnicate 1", "unknown option '--frobnicate'");
    mgpu_opts o;
    char why[320];
    assert_int_equal(parse("--help", &o, why, sizeof why), 1);
    assert_int_equal(parse("--check --context 32K --path nccl --graphs --shard context "
                           "--policy subgen16 --weak batch --layer-batch --distinct-layers 4",
                           &o, why, sizeof why),
                     0);
    assert_true(o.check && o.graphs && o.layer_batch && o.context == 32768 && o.subgen_f == 16);
    assert_true(o.shard == MGPU_SHARD_CONTEXT && o.path == MGPU_PATH_NCCL && o.weak == 2);
    /* weak scaling grows the check's reference with N: refused at plan time */
    assert_int_equal(parse("--check --context 32K --weak context", &o, why, sizeof why), 0);
    mgpu_plan p;
    assert_int_equal(mgpu_plan_make(&o, 2, &p, why, sizeof why), 0);
    assert_true(p.context == 65536 && p.batch == 8);
    assert_int_equal(mgpu_plan_make(&o, 8, &p, why, sizeof why), 2);
    assert_non_null(strstr(why, "--check computes a 1-GPU reference"));
}

static void test_mgpu_defaults_are_the_issues_workload(void **state) {
    (void)state;
    mgpu_opts o;
    char why[320];
    assert_int_equal(parse("", &o, why, sizeof why), 0);
    assert_true(o.layers == 32 && o.kv_heads == 8 && o.group == 4 && o.d == 128);
    assert_true(o.batch == 8 && o.context == 512 * 1024 && o.subgen_f == 1);
    assert_true(o.distinct_layers == 1 && o.dtype == SKV_DTYPE_F16 && o.path == MGPU_PATH_BOTH);
    mgpu_plan p;
    assert_int_equal(mgpu_plan_make(&o, 2, &p, why, sizeof why), 0);
    /* 64 jobs x 512K rows x 128 dims x 2 B x (K + V): 16 GiB, 8 GiB a rank on 2 GPUs */
    assert_true(mgpu_reference_bytes(&p) == (size_t)16 << 30);
    assert_true(mgpu_rank_bytes(&p, 0) == (size_t)8 << 30 &&
                mgpu_rank_bytes(&p, 1) == mgpu_rank_bytes(&p, 0));
}

/* Run `PREFIX BUILD/subkv-bench multigpu ARGS` through the shell (BUILD: this binary's
 * BUILD/tests/..); exit status, output (stdout and stderr) in out[n]. */
static int run_bench_with(const char *prefix, const char *args, char *out, size_t n) {
    char exe[PATH_MAX], cmd[PATH_MAX + 1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(len > 0);
    exe[len] = '\0';
    for (int up = 0; up < 2; up++) *strrchr(exe, '/') = '\0'; /* BUILD/tests/x -> BUILD */
    snprintf(cmd, sizeof cmd, "%s%s/subkv-bench multigpu %s 2>&1", prefix, exe, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    const int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run build/subkv-bench with args (no mpirun); exit status, output in out[n]. */
static int run_bench(const char *args, char *out, size_t n) {
    return run_bench_with("", args, out, n);
}

/* The same under `mpirun -np n` (root allowed, NVLink multicast off). */
static int run_bench_mpi(int n, const char *args, char *out, size_t size) {
    char prefix[256];
    snprintf(prefix, sizeof prefix,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0 "
             "mpirun --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE -np %d ",
             n);
    return run_bench_with(prefix, args, out, size);
}

static void test_mgpu_harness_exits_2_on_a_bad_option_and_without_cuda(void **state) {
    (void)state;
    char out[8192];
    int rc = run_bench("--shard rows", out, sizeof out);
    if (rc != 2 || !strstr(out, "bad value 'rows' for --shard"))
        fail_msg("bad option: exit %d, output '%s'", rc, out);
    rc = run_bench("--help", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "NCCL_NVLS_ENABLE=0"));
    char why[160];
    if (skv_nccl_ops_available(why, sizeof why)) {
        printf("# this build has CUDA and NCCL: the no-CUDA exit is the CPU build's to test\n");
        return;
    }
    rc = run_bench("--context 32K --check", out, sizeof out);
    if (rc != 2 || !strstr(out, "needs CUDA and NCCL"))
        fail_msg("without CUDA: exit %d, output '%s'", rc, out);
}

/* ---- GPU: the kernels behind the harness ---- */

static void test_mgpu_merge_kernel_matches_its_host_mirror(void **state) {
    (void)state;
    NEED_GPU();
    synth_rng rng;
    tu_rng_for(&rng, __func__);
    const int d = 128, nsets = 5;
    const size_t nparts = 300, ps = (size_t)d + 2, stride = nparts * ps + 7;
    float *in = tu_malloc((size_t)nsets * stride * sizeof(float));
    synth_fill_normal(&rng, in, (size_t)nsets * stride, 1.0f);
    for (int k = 0; k < nsets; k++)
        for (size_t i = 0; i < nparts; i++) {
            float *p = in + (size_t)k * stride + i * ps;
            p[0] *= 4.0f;                                 /* maxima a few units apart */
            p[1] = 0.5f + (float)synth_rng_uniform(&rng); /* positive normalizers */
            if ((i + (size_t)k) % 7 == 0) skv_partial_init((skv_partial *)p, d); /* empty */
        }
    /* device expf is within 2 ulp of the host's: a few 1e-7 relative over five sets; a wrong
     * index or order is off by O(1) */
    float *want = tu_malloc(nparts * ps * sizeof(float)), *got = tu_malloc(nparts * ps * 4);
    mgpu_merge_host(in, nsets, stride, nparts, d, want);
    skv_err err;
    float *din = upload(in, (size_t)nsets * stride * sizeof(float)),
          *dout = upload(NULL, nparts * ps * 4);
    void *s = skv_cuda_ctx_stream(g_ctx);
    TU_OK(skv_cuda_merge_partial_sets(din, nsets, stride, nparts, d, dout, s, &err), &err);
    TU_OK(skv_cuda_stream_sync(s, &err), &err);
    TU_OK(skv_cuda_download(got, dout, nparts * ps * 4, &err), &err);
    for (size_t i = 0; i < nparts * ps; i++) {
        const double diff = fabs((double)got[i] - want[i]), mag = fabs((double)want[i]);
        if (!(diff <= 1e-5 * (mag > 1 ? mag : 1) || (isinf(got[i]) && got[i] == want[i])))
            fail_msg("float %zu: GPU %.9g, host %.9g", i, got[i], want[i]);
    }
    skv_cuda_free(din), skv_cuda_free(dout);
    free(in), free(want), free(got);
}

static void test_mgpu_fill_at_index_is_a_slice_of_the_full_fill(void **state) {
    (void)state;
    NEED_GPU();
    const size_t n = 100003, first = 31337, m = 5000;
    skv_err err;
    void *full = upload(NULL, n * 2), *part = upload(NULL, m * 2);
    float *w = upload(NULL, m * 4);
    TU_OK(skv_cuda_fill_random(full, n, SKV_DTYPE_BF16, 77, 1.0f, &err), &err);
    TU_OK(skv_cuda_fill_random_at(part, m, SKV_DTYPE_BF16, 77, first, 1.0f, &err), &err);
    TU_OK(skv_cuda_fill_weights_at(w, m, 78, first, &err), &err);
    uint16_t *a = tu_malloc(n * 2), *b = tu_malloc(m * 2);
    float *hw = tu_malloc(m * 4);
    TU_OK(skv_cuda_download(a, full, n * 2, &err), &err);
    TU_OK(skv_cuda_download(b, part, m * 2, &err), &err);
    TU_OK(skv_cuda_download(hw, w, m * 4, &err), &err);
    assert_memory_equal(a + first, b, m * 2);
    int distinct = 0;
    for (size_t i = 0; i < m; i++) {
        assert_true(hw[i] >= 1.0f && hw[i] < 5.0f);
        distinct += i && hw[i] != hw[i - 1];
    }
    assert_true(distinct > (int)m / 2); /* random, not a constant */
    skv_cuda_free(full), skv_cuda_free(part), skv_cuda_free(w);
    free(a), free(b), free(hw);
}

/* The harness end to end under mpirun on 1 and (when there are two) 2 GPUs: both paths,
 * both shardings, layer batching and graphs; --check must PASS (NCCL vs MPI, vs 1 GPU). */
static void test_mgpu_harness_checks_pass_on_the_gpus(void **state) {
    (void)state;
    NEED_GPU();
    char why[160];
    if (!skv_nccl_ops_available(why, sizeof why)) {
        printf("# skipped: %s\n", why);
        skip();
    }
    int ndev = 0;
    skv_err err;
    TU_OK(skv_cuda_device_count(&ndev, &err), &err);
    static const char *const variants[] = {
        "--shard head",
        "--shard context --policy subgen4",
        "--shard head --layer-batch",
        "--shard context --graphs --path nccl",
    };
    char out[16384];
    for (int n = 1; n <= (ndev >= 2 ? 2 : 1); n++)
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            char args[512];
            snprintf(args, sizeof args, "--check --context 4K --layers 3 --steps 2 --warmup 1 %s",
                     variants[v]);
            const int rc = run_bench_mpi(n, args, out, sizeof out);
            printf("# %d GPU(s), %s: exit %d\n", n, variants[v], rc);
            if (rc != 0 || !strstr(out, "PASS") || strstr(out, "FAIL"))
                fail_msg("mpirun -np %d subkv-bench multigpu %s: exit %d\n%s", n, args, rc, out);
        }
}

int main(void) {
    tu_suite_begin("test_multigpu");
    const struct CMUnitTest host[] = {
        cmocka_unit_test(test_mgpu_split_tiles_in_order_with_sizes_one_apart),
        cmocka_unit_test(test_mgpu_shards_hold_every_row_exactly_once),
        cmocka_unit_test(test_mgpu_gather_puts_every_partial_where_rank0_reads_it),
        cmocka_unit_test(test_mgpu_merge_of_context_shards_equals_exact_attention),
        cmocka_unit_test(test_mgpu_options_refuse_bad_input_with_a_reason),
        cmocka_unit_test(test_mgpu_defaults_are_the_issues_workload),
        cmocka_unit_test(test_mgpu_harness_exits_2_on_a_bad_option_and_without_cuda),
    };
    const struct CMUnitTest gpu[] = {
        cmocka_unit_test(test_mgpu_merge_kernel_matches_its_host_mirror),
        cmocka_unit_test(test_mgpu_fill_at_index_is_a_slice_of_the_full_fill),
        cmocka_unit_test(test_mgpu_harness_checks_pass_on_the_gpus),
    };
    const int rc = cmocka_run_group_tests_name("multigpu_host", host, NULL, NULL);
    return rc |
           cmocka_run_group_tests_name("multigpu_gpu", gpu, gpu_suite_setup, gpu_suite_teardown);
}
