/*
 * multigpu.c — `subkv-bench multigpu` (issue 8): a decode step's attention over several
 * GPUs of one host, one MPI rank per GPU, rank 0 (GPU 0) the coordinator: the NCCL data path
 * (device to device) against the MPI path (staged through pinned host memory), head or
 * context sharding, exact or SubGen-sized entry lists; step latency, its parts and tokens/s,
 * and with --check the outputs of both paths against each other and a 1-GPU reference.
 *
 *   mpirun -np N build/subkv-bench multigpu [options]      (see mgpu_usage: --help)
 *
 * Set-up is agreed among the ranks (an MPI_Allreduce after each step that can fail on one
 * rank: device, plan, memory, data, NCCL), so a refusal exits every rank cleanly; a
 * failure inside a timed step aborts the job (bench/multigpu_step.c). The bookkeeping (who
 * owns what, where it lands) is tools/mgpu_plan.c, tested on the CPU by tests/test_multigpu.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "multigpu.h"
#include "skv_backend.h"
#include "skv_check.h"
#include "skv_nccl.h"

#define PFX "subkv-bench multigpu"

/* Every rank's ok (1/0) -> whether all are; a failing MPI call counts as not ok. */
static int all_ok(MPI_Comm comm, int ok) {
    int all = 0;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return 0;
    return all;
}

static uint64_t data_seed(uint64_t seed, uint64_t id) {
    uint64_t z = seed * 0xd1342543de82ef95ull + (id + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}

/* Fill K, V (and w) for share s of plan p from the global rows: one fill per (layer set,
 * job) segment, so a shard holds exactly the rows of the virtual full data it owns. */
static subkv_status fill_share(const mgpu_plan *p, const mgpu_share *s, uint64_t seed, void *K,
                               void *V, float *w, skv_dtype dt, skv_err *err) {
    const size_t d = (size_t)p->d;
    for (int ls = 0; ls < p->distinct; ls++)
        for (uint64_t i = 0; i < s->nj && s->nt; i++) {
            const uint64_t lr = mgpu_local_row(p, s, ls, i, 0);
            const uint64_t gr = mgpu_global_row(p, ls, s->j0 + i, s->t0);
            const size_t off = (size_t)lr * d * (size_t)p->esize;
            SKV_CHECK(skv_cuda_fill_random_at((char *)K + off, s->nt * d, dt, data_seed(seed, 1),
                                              gr * d, 1.0f, err));
            SKV_CHECK(skv_cuda_fill_random_at((char *)V + off, s->nt * d, dt, data_seed(seed, 2),
                                              gr * d, 1.0f, err));
            if (w) SKV_CHECK(skv_cuda_fill_weights_at(w + lr, s->nt, data_seed(seed, 3), gr, err));
        }
    return SKV_OK;
}

static subkv_status dev_alloc(void **p, size_t bytes, skv_err *err) {
    return skv_cuda_malloc(p, bytes ? bytes : 16, err);
}

/* This rank's buffers and data; SKV_OK or the first failure. */
static subkv_status setup(mgpu_run *r, skv_err *err) {
    const mgpu_plan *p = &r->p;
    const uint64_t rows = mgpu_rank_rows(p, r->rank);
    const size_t kv = (size_t)rows * (size_t)p->d * (size_t)p->esize, pf = p->part_floats;
    const size_t qn = (size_t)p->layers * p->jobs * (size_t)p->group * (size_t)p->d;
    SKV_CHECK(skv_cuda_ctx_create(&r->ctx, err));
    r->stream = skv_cuda_ctx_stream(r->ctx);
    SKV_CHECK(dev_alloc(&r->K, kv, err));
    SKV_CHECK(dev_alloc(&r->V, kv, err));
    if (p->weighted) SKV_CHECK(dev_alloc((void **)&r->w, (size_t)rows * sizeof(float), err));
    SKV_CHECK(dev_alloc((void **)&r->q, qn * sizeof(float), err));
    SKV_CHECK(dev_alloc((void **)&r->send,
                        (size_t)p->layers * (size_t)r->sh.nj * pf * sizeof(float), err));
    size_t host = qn * sizeof(float), own = mgpu_send_floats(p, r->rank, p->layers);
    if (own * sizeof(float) > host) host = own * sizeof(float);
    if (r->rank == 0) {
        SKV_CHECK(
            dev_alloc((void **)&r->res, (size_t)p->layers * p->jobs * pf * sizeof(float), err));
        const size_t rf = mgpu_recv_floats(p, p->layers) * sizeof(float);
        if (p->shard == MGPU_SHARD_CONTEXT) SKV_CHECK(dev_alloc((void **)&r->gbuf, rf, err));
        if (rf > host) host = rf;
    }
    if (r->o->path & MGPU_PATH_MPI) {
        SKV_CHECK(skv_cuda_host_alloc(&r->host, host, err));
        r->host_bytes = host;
    }
    for (int k = 0; k < 2; k++) {
        r->counts[k] = calloc((size_t)r->nranks, sizeof(size_t));
        r->displs[k] = calloc((size_t)r->nranks, sizeof(size_t));
        if (!r->counts[k] || !r->displs[k])
            return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %d counts", r->nranks);
        const int nl = k ? p->layers : 1;
        for (int q = 0; q < r->nranks; q++) {
            r->counts[k][q] = mgpu_send_floats(p, q, nl);
            r->displs[k][q] = mgpu_recv_displ(p, q, nl);
        }
    }
    r->jobs = calloc((size_t)p->layers * (size_t)(r->sh.nj ? r->sh.nj : 1), sizeof *r->jobs);
    if (!r->jobs) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the job table");
    mgpu_build_jobs(p, &r->sh, 0, p->layers, r->K, r->V, r->w, r->q, r->send, r->jobs);
    r->iters = r->o->layer_batch ? 1 : p->layers;
    SKV_CHECK(skv_cuda_events_create(&r->ev, 5 * r->iters + 2, err));
    return fill_share(p, &r->sh, r->o->seed, r->K, r->V, r->w, r->o->dtype, err);
}

static void teardown(mgpu_run *r) {
    mgpu_graphs_free(r);
    skv_cuda_events_destroy(r->ev);
    skv_cuda_free(r->K), skv_cuda_free(r->V), skv_cuda_free(r->w), skv_cuda_free(r->q);
    skv_cuda_free(r->send), skv_cuda_free(r->gbuf), skv_cuda_free(r->res);
    skv_cuda_host_free(r->host);
    for (int k = 0; k < 2; k++) free(r->counts[k]), free(r->displs[k]);
    free(r->jobs);
    skv_cuda_ctx_destroy(r->ctx);
}

/* Rank 0: the step result at r->res, in canonical [layer][job] order, into host out. */
static subkv_status download_result(const mgpu_run *r, float *out, skv_err *err) {
    const mgpu_plan *p = &r->p;
    const size_t pf = p->part_floats, n = (size_t)p->layers * p->jobs * pf;
    float *raw = malloc(n * sizeof(float));
    if (!raw) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the result");
    subkv_status st = skv_cuda_download(raw, r->res, n * sizeof(float), err);
    for (int l = 0; st == SKV_OK && l < p->layers; l++)
        for (uint64_t j = 0; j < p->jobs; j++)
            memcpy(out + ((size_t)l * p->jobs + j) * pf,
                   raw + mgpu_result_offset(p, r->o->layer_batch, l, j), pf * sizeof(float));
    free(raw);
    return st;
}

/* Rank 0 alone: the same step on one GPU over the regenerated full data, canonical order. */
static subkv_status reference(const mgpu_run *r, float *out, skv_err *err) {
    mgpu_plan p1 = r->p;
    p1.nranks = 1;
    const mgpu_share all = mgpu_share_of(&p1, 0);
    const size_t rows = (size_t)mgpu_rank_rows(&p1, 0), pf = p1.part_floats;
    const size_t kv = rows * (size_t)p1.d * (size_t)p1.esize;
    const size_t n = (size_t)p1.layers * p1.jobs * pf;
    void *K = NULL, *V = NULL;
    float *w = NULL, *o = NULL;
    skv_cuda_job *jobs = calloc((size_t)p1.layers * p1.jobs, sizeof *jobs);
    if (!jobs) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the reference's jobs");
    subkv_status st = SKV_OK;
    SKV_CHECK_GOTO(dev_alloc(&K, kv, err), st, done);
    SKV_CHECK_GOTO(dev_alloc(&V, kv, err), st, done);
    if (p1.weighted) SKV_CHECK_GOTO(dev_alloc((void **)&w, rows * sizeof(float), err), st, done);
    SKV_CHECK_GOTO(dev_alloc((void **)&o, n * sizeof(float), err), st, done);
    SKV_CHECK_GOTO(fill_share(&p1, &all, r->o->seed, K, V, w, r->o->dtype, err), st, done);
    mgpu_build_jobs(&p1, &all, 0, p1.layers, K, V, w, r->q, o, jobs);
    for (int l = 0; l < p1.layers; l++) /* one launch per layer, like a 1-GPU decode */
        SKV_CHECK_GOTO(skv_cuda_attend(r->ctx, jobs + (size_t)l * p1.jobs, (int)p1.jobs, p1.d,
                                       p1.group, r->o->dtype, r->o->chunk, err),
                       st, done);
    SKV_CHECK_GOTO(skv_cuda_sync(r->ctx, err), st, done);
    SKV_CHECK_GOTO(skv_cuda_download(out, o, n * sizeof(float), err), st, done);
done:
    skv_cuda_free(K), skv_cuda_free(V), skv_cuda_free(w), skv_cuda_free(o);
    free(jobs);
    return st;
}

/* Largest relative error ||a - b|| / ||b|| over the outputs o / l of every query head. */
static double max_rel(const float *a, const float *b, size_t nq, int d) {
    const size_t ps = (size_t)d + 2;
    float *x = malloc(2 * (size_t)d * sizeof(float));
    if (!x) return INFINITY;
    double worst = 0;
    for (size_t i = 0; i < nq; i++) {
        skv_partial_output((const skv_partial *)(a + i * ps), d, x);
        skv_partial_output((const skv_partial *)(b + i * ps), d, x + d);
        double num = 0, den = 0;
        for (int e = 0; e < d; e++)
            num += ((double)x[e] - x[d + e]) * ((double)x[e] - x[d + e]),
                den += (double)x[d + e] * x[d + e];
        const double rel = sqrt(num / (den > 0 ? den : 1));
        if (isnan(rel) || isnan(worst)) {
            worst = NAN; /* a NaN output fails the check whatever else is found */
            break;
        }
        if (rel > worst) worst = rel;
    }
    free(x);
    return worst;
}

static const char *path_name(int path) { return path == MGPU_PATH_NCCL ? "nccl" : "mpi"; }

static void print_header(const mgpu_run *r, const char *dev) {
    const mgpu_plan *p = &r->p;
    char pol[32];
    mgpu_policy_name(r->o->subgen_f, pol, sizeof pol);
    printf("# " PFX ": %d rank(s), one GPU each (rank 0: %s); NCCL_NVLS_ENABLE=%s\n", r->nranks,
           dev, getenv("NCCL_NVLS_ENABLE"));
    printf("# %d layers x %zu seqs x %d kv heads x %d q heads, d %d, %s; context %zu, policy %s "
           "(%llu rows a job%s); shard %s%s\n",
           p->layers, p->batch, r->o->kv_heads, p->group, p->d, skv_dtype_name(r->o->dtype),
           p->context, pol, (unsigned long long)p->entries, p->weighted ? ", weighted" : "",
           p->shard == MGPU_SHARD_HEAD ? "head" : "context",
           r->o->weak == MGPU_WEAK_CONTEXT ? " (weak: context x N)"
           : r->o->weak == MGPU_WEAK_BATCH ? " (weak: batch x N)"
                                           : "");
    for (int q = 0; q < r->nranks; q++) {
        const mgpu_share s = mgpu_share_of(p, q);
        printf("#   rank %d: jobs [%llu, %llu) x rows [%llu, %llu): %.2f GiB of K/V%s\n", q,
               (unsigned long long)s.j0, (unsigned long long)(s.j0 + s.nj),
               (unsigned long long)s.t0, (unsigned long long)(s.t0 + s.nt),
               (double)mgpu_rank_bytes(p, q) / (1 << 30),
               s.nj && s.nt ? "" : " (nothing to attend: joins the collectives only)");
    }
    const double layer_gib = (double)mgpu_rank_bytes(p, 0) / p->distinct / (1 << 30);
    printf("# --distinct-layers %d: layer l reads K/V set l %% %d%s (rank 0 streams %.3f GiB a "
           "layer, %s)\n",
           p->distinct, p->distinct, p->distinct == 1 ? ": every layer reads the same buffer" : "",
           layer_gib,
           layer_gib >= 0.25 ? "far beyond the ~50 MB L2, so a step times like distinct layers"
                             : "small: partly served from L2, so these times flatter a decode");
    printf("# --layer-batch %d --graphs %d; medians of %d steps after %d warm-up; rank 0's stream "
           "(cudaEvents); comm = (bcast + gather) / step; tok/s = batch / step\n",
           r->o->layer_batch, r->o->graphs, r->o->steps, r->o->warmup);
    printf("# %4s %-4s %-7s %-9s %8s %5s %6s %2s %2s %9s %9s %9s %9s %9s %6s %9s\n", "gpus", "path",
           "shard", "policy", "context", "batch", "layers", "lb", "gr", "step_ms", "bcast_ms",
           "attend_ms", "gather_ms", "merge_ms", "comm%", "tok_s");
}

static void report(const mgpu_run *r, int path, const mgpu_times *t) {
    const mgpu_plan *p = &r->p;
    const int gr = r->o->graphs && path == MGPU_PATH_NCCL;
    char pol[32];
    mgpu_policy_name(r->o->subgen_f, pol, sizeof pol);
    const double tok = (double)p->batch / (t->step * 1e-3);
    const char *shard = p->shard == MGPU_SHARD_HEAD ? "head" : "context";
    printf("  %4d %-4s %-7s %-9s %8zu %5zu %6d %2d %2d %9.3f %9.3f %9.3f %9.3f %9.3f %6.1f %9.1f\n",
           r->nranks, path_name(path), shard, pol, p->context, p->batch, p->layers,
           r->o->layer_batch, gr, t->step, t->bcast, t->attend, t->gather, t->merge,
           100.0 * (t->bcast + t->gather) / t->step, tok);
    fflush(stdout);
    if (!r->o->csv) return;
    FILE *probe = fopen(r->o->csv, "r"); /* a new or empty file gets the header first */
    const int fresh = !probe || (fseek(probe, 0, SEEK_END) == 0 && ftell(probe) == 0);
    if (probe) fclose(probe);
    FILE *f = fopen(r->o->csv, "a");
    if (!f) {
        perror(r->o->csv);
        return;
    }
    if (fresh)
        fprintf(f, "gpus,path,shard,policy,context,batch,layers,layer_batch,graphs,step_ms,"
                   "bcast_ms,attend_ms,gather_ms,merge_ms,tok_s\n");
    fprintf(f, "%d,%s,%s,%s,%zu,%zu,%d,%d,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f\n", r->nranks,
            path_name(path), shard, pol, p->context, p->batch, p->layers, r->o->layer_batch, gr,
            t->step, t->bcast, t->attend, t->gather, t->merge, tok);
    fclose(f);
}

/* Rank 0: compare the paths' results and the reference; 1 when all pass. */
static int check(const mgpu_run *r, float *const res[2], int npaths) {
    const mgpu_plan *p = &r->p;
    const size_t nq = (size_t)p->layers * p->jobs * (size_t)p->group; /* query heads */
    const size_t n = nq * (size_t)(p->d + 2);                         /* their floats */
    int pass = 1;
    if (npaths == 2) {
        const double e = max_rel(res[0], res[1], nq, p->d);
        const int same = !memcmp(res[0], res[1], n * sizeof(float));
        printf("# check nccl vs mpi: max rel err %.3g (%s) over %zu query heads: %s\n", e,
               same ? "bit-identical" : "not bit-identical", nq, e <= 1e-6 ? "PASS" : "FAIL");
        pass &= e <= 1e-6;
    }
    float *ref = malloc(n * sizeof(float));
    skv_err err = {SKV_OK, ""};
    subkv_status st = ref ? reference(r, ref, &err) : SKV_ERR_NOMEM;
    if (st != SKV_OK) {
        printf("# check vs 1 GPU: the reference failed: %s: %s: FAIL\n", subkv_status_name(st),
               err.msg);
        free(ref);
        return 0;
    }
    for (int k = 0; k < npaths; k++) {
        const double e = max_rel(res[k], ref, nq, p->d);
        printf("# check %s vs 1 GPU (rank 0 alone, full data, same kernel): max rel err %.3g "
               "(%s): %s\n",
               npaths == 2 ? (k ? "mpi" : "nccl") : path_name(r->o->path), e,
               memcmp(res[k], ref, n * sizeof(float)) ? "other split-K order" : "bit-identical",
               e <= 1e-4 ? "PASS" : "FAIL");
        pass &= e <= 1e-4;
    }
    free(ref);
    return pass;
}

/* The ranks' run after MPI_Init: 0, 1 (failed check, device error), 2 (refused). */
static int run(const mgpu_opts *o, MPI_Comm comm) {
    mgpu_run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.comm = comm;
    MPI_Comm_rank(comm, &r.rank);
    MPI_Comm_size(comm, &r.nranks);
    MPI_Comm node;
    int lrank = 0, lsize = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, r.rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &lrank);
        MPI_Comm_size(node, &lsize);
        MPI_Comm_free(&node);
    }
    skv_backend_info bi;
    skv_backend_select(lrank, &bi);
    char dev[256];
    skv_backend_describe(&bi, dev, sizeof dev);
    int ok = bi.kind == SKV_BACKEND_CUDA && lsize <= bi.device_count;
    if (bi.kind != SKV_BACKEND_CUDA)
        fprintf(stderr, PFX ": rank %d: needs a GPU: %s\n", r.rank, dev);
    else if (!ok)
        fprintf(stderr,
                PFX ": rank %d: %d ranks on this host but %d GPU(s): one rank per GPU "
                    "(mpirun -np <= %d)\n",
                r.rank, lsize, bi.device_count, bi.device_count);
    if (!all_ok(comm, ok)) return 2;
    char why[320];
    if (mgpu_plan_make(o, r.nranks, &r.p, why, sizeof why)) {
        if (r.rank == 0) fprintf(stderr, PFX ": %s\n", why);
        return 2;
    }
    r.sh = mgpu_share_of(&r.p, r.rank);
    size_t fb = 0, tb = 0;
    skv_err err = {SKV_OK, ""};
    /* data + queries + partials + 1 GiB for scratch and the graphs' contexts; rank 0 also
     * the --check reference */
    size_t need = mgpu_rank_bytes(&r.p, r.rank) + ((size_t)1 << 30) +
                  (size_t)r.p.layers * r.p.jobs * r.p.part_floats * 4 * (size_t)(r.nranks + 2);
    if (r.rank == 0 && o->check) need += mgpu_reference_bytes(&r.p);
    ok = skv_cuda_mem_info(&fb, &tb, &err) == SKV_OK && need <= fb;
    if (!ok)
        fprintf(stderr,
                PFX ": rank %d: needs %.2f GiB of device memory, %.2f GiB free: use more "
                    "GPUs, a smaller --context/--batch or --distinct-layers\n",
                r.rank, (double)need / (1 << 30), (double)fb / (1 << 30));
    if (!all_ok(comm, ok)) return 2;
    if (r.rank == 0) print_header(&r, dev);
    subkv_status st = setup(&r, &err);
    if (st != SKV_OK)
        fprintf(stderr, PFX ": rank %d: set-up: %s: %s\n", r.rank, subkv_status_name(st), err.msg);
    int rc = 1;
    if (!all_ok(comm, st == SKV_OK)) goto done;
    if (o->path & MGPU_PATH_NCCL) {
        st = skv_nccl_init(comm, &r.nccl, &err); /* agreed among the ranks inside */
        if (st != SKV_OK) {
            if (r.rank == 0) fprintf(stderr, PFX ": NCCL: %s\n", err.msg);
            goto done;
        }
    }
    const int paths[2] = {MGPU_PATH_NCCL, MGPU_PATH_MPI};
    float *res[2] = {NULL, NULL};
    int np = 0;
    rc = 0;
    for (int k = 0; k < 2; k++) {
        if (!(o->path & paths[k])) continue;
        mgpu_times t;
        mgpu_time_path(&r, paths[k], &t);
        if (r.rank == 0) report(&r, paths[k], &t);
        if (o->check) {
            if (r.rank == 0) mgpu_fill_queries(&r, 999); /* the same queries on both paths */
            MPI_Barrier(comm);
            mgpu_step(&r, paths[k], o->graphs && paths[k] == MGPU_PATH_NCCL, NULL);
            if (r.rank == 0) {
                const size_t n = (size_t)r.p.layers * r.p.jobs * r.p.part_floats;
                res[np] = malloc(n * sizeof(float));
                st = res[np] ? download_result(&r, res[np], &err) : SKV_ERR_NOMEM;
                if (st != SKV_OK) mgpu_die(&r, st, &err, "result");
            }
            np++;
        }
        mgpu_graphs_free(&r);
    }
    if (o->check && r.rank == 0) rc = check(&r, res, np) ? 0 : 1;
    free(res[0]), free(res[1]);
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
done:
    skv_nccl_destroy(r.nccl);
    teardown(&r);
    return rc;
}

int bench_multigpu(int argc, char **argv) {
    mgpu_opts o;
    mgpu_opts_default(&o);
    char why[320];
    const int pr = mgpu_opts_parse(&o, argc, argv, why, sizeof why);
    if (pr == 1) {
        mgpu_usage(stdout);
        return 0;
    }
    if (pr) {
        fprintf(stderr, PFX ": %s\n", why);
        return 2;
    }
    if (!skv_nccl_ops_available(why, sizeof why)) {
        fprintf(stderr, PFX ": needs CUDA and NCCL: %s\n", why);
        return 2;
    }
    /* NVLink multicast stays off (it can take a shared host's GPUs out of service): set
     * before NCCL reads its environment, over any other value. */
    const char *nvls = getenv("NCCL_NVLS_ENABLE");
    if (!nvls || strcmp(nvls, "0")) setenv("NCCL_NVLS_ENABLE", "0", 1);
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, PFX ": MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    const int rc = run(&o, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
