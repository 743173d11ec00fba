/*
 * mgpu_plan.c — options, shard bookkeeping and the host merge of `subkv-bench multigpu`
 * (mgpu_plan.h).
 */
#include "mgpu_plan.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void mgpu_opts_default(mgpu_opts *o) {
    memset(o, 0, sizeof *o);
    o->layers = 32, o->kv_heads = 8, o->group = 4, o->d = 128;
    o->dtype = SKV_DTYPE_F16;
    o->batch = 8, o->context = (size_t)512 << 10;
    o->subgen_f = 1;
    o->shard = MGPU_SHARD_HEAD, o->path = MGPU_PATH_BOTH, o->weak = MGPU_WEAK_NONE;
    o->steps = 10, o->warmup = 2;
    o->distinct_layers = 1;
    o->seed = 1;
}

void mgpu_usage(FILE *f) {
    fprintf(
        f,
        "usage: mpirun -np N subkv-bench multigpu [options]   (one rank per GPU of a host)\n"
        "  --layers L (32) --kv-heads H (8) --group G (4: query heads per kv head) --d D (128)\n"
        "  --dtype f16|bf16 (f16) --batch B (8) --context T (512K; K and M are 1024 and 1024^2)\n"
        "  --policy exact|subgenF (exact; subgenF: T/F rows a job with random weights, SubGen's\n"
        "           memory at 1/F, like `subkv-bench gpu`'s sgNx)\n"
        "  --shard head|context (head: the batch x kv-head jobs split over the ranks in\n"
        "           contiguous ranges, the first J %% N ranks one job more, ranks past J idle;\n"
        "           context: every job's rows split likewise, rank 0 merges by log-sum-exp)\n"
        "  --path nccl|mpi|both (both: NCCL, then MPI staged through pinned host memory)\n"
        "  --steps S (10, medians) --warmup W (2) --seed X (1) --chunk C (0: attend's choice)\n"
        "  --layer-batch  one broadcast + one attend launch + one gather for all layers of a\n"
        "           step, instead of one each per layer\n"
        "  --graphs       capture each layer's (or the batched step's) bcast + attend + gather\n"
        "           (+ merge) as a CUDA graph and replay it every step (NCCL path only)\n"
        "  --weak context|batch  multiply the context or the batch by N (weak scaling)\n"
        "  --distinct-layers L (1) K/V sets: layer l reads set l %% L. With 1 every layer reads\n"
        "           the same per-rank buffer: each layer still streams its whole K/V (GiBs per\n"
        "           GPU, far beyond the ~50 MB L2), so a step times like distinct layers while\n"
        "           512K-1M x batch 8 x 32 layers (512 GiB at 512K, exact) need not fit\n"
        "  --csv FILE     append one row per path (header when the file is new)\n"
        "  --check        after timing: rank 0's outputs of one step, NCCL vs MPI (<= 1e-6) and\n"
        "           vs a 1-GPU reference over the regenerated full data (<= 1e-4: other split-K\n"
        "           order); needs the whole data on one GPU (<= 4 GiB, e.g. --context 32K)\n"
        "Timings: rank 0's stream (cudaEvents): step, broadcast, attend, gather, merge; comm =\n"
        "(bcast + gather) / step; tokens/s = batch / step. Needs CUDA and NCCL; exits 2 on a bad\n"
        "option, a build without them, more ranks on a host than GPUs, or data that does not\n"
        "fit; 1 on a failed check or a device error. Sets NCCL_NVLS_ENABLE=0 (multicast off).\n");
}

static int fail(char *why, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 2;
}

/* "512K", "1M", "4096" -> *out; 0 on success. */
static int parse_size(const char *s, size_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || v == 0 || *s == '-') return -1;
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    if (*end) return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* One option with a value; 0, or 2 with why. */
static int option(mgpu_opts *o, const char *a, const char *v, char *why, size_t n) {
    int bad = 0;
    size_t sz = 0;
    if (!strcmp(a, "--layers"))
        bad = parse_int(v, 1, 4096, &o->layers);
    else if (!strcmp(a, "--kv-heads"))
        bad = parse_int(v, 1, 1024, &o->kv_heads);
    else if (!strcmp(a, "--group")) {
        bad = parse_int(v, 1, 8, &o->group);
        bad = bad || !(o->group <= 4 || o->group == 8); /* the attend's groups: 1,2,3,4,8 */
    } else if (!strcmp(a, "--d")) {
        bad = parse_int(v, 64, 128, &o->d) || (o->d != 64 && o->d != 128);
    } else if (!strcmp(a, "--dtype")) {
        if (!strcmp(v, "f16"))
            o->dtype = SKV_DTYPE_F16;
        else if (!strcmp(v, "bf16"))
            o->dtype = SKV_DTYPE_BF16;
        else
            bad = 1;
    } else if (!strcmp(a, "--batch"))
        bad = parse_size(v, &o->batch) || o->batch > 65536;
    else if (!strcmp(a, "--context")) {
        bad = parse_size(v, &sz);
        if (!bad) o->context = sz;
    } else if (!strcmp(a, "--policy")) {
        if (!strcmp(v, "exact"))
            o->subgen_f = 1;
        else if (!strncmp(v, "subgen", 6))
            bad = parse_int(v + 6, 2, 1 << 20, &o->subgen_f);
        else
            bad = 1;
    } else if (!strcmp(a, "--shard")) {
        if (!strcmp(v, "head"))
            o->shard = MGPU_SHARD_HEAD;
        else if (!strcmp(v, "context"))
            o->shard = MGPU_SHARD_CONTEXT;
        else
            bad = 1;
    } else if (!strcmp(a, "--path")) {
        o->path = !strcmp(v, "nccl")   ? MGPU_PATH_NCCL
                  : !strcmp(v, "mpi")  ? MGPU_PATH_MPI
                  : !strcmp(v, "both") ? MGPU_PATH_BOTH
                                       : 0;
        bad = o->path == 0;
    } else if (!strcmp(a, "--weak")) {
        o->weak = !strcmp(v, "context") ? MGPU_WEAK_CONTEXT
                  : !strcmp(v, "batch") ? MGPU_WEAK_BATCH
                                        : -1;
        bad = o->weak < 0;
    } else if (!strcmp(a, "--steps"))
        bad = parse_int(v, 1, 100000, &o->steps);
    else if (!strcmp(a, "--warmup"))
        bad = parse_int(v, 0, 100000, &o->warmup);
    else if (!strcmp(a, "--distinct-layers"))
        bad = parse_int(v, 1, 4096, &o->distinct_layers);
    else if (!strcmp(a, "--chunk")) {
        char *end;
        o->chunk = strtoull(v, &end, 10);
        bad = end == v || *end || *v == '-';
    } else if (!strcmp(a, "--seed")) {
        char *end;
        o->seed = strtoull(v, &end, 0);
        bad = end == v || *end;
    } else if (!strcmp(a, "--csv"))
        o->csv = v;
    else
        return fail(why, n, "unknown option '%s' (see --help)", a);
    return bad ? fail(why, n, "bad value '%s' for %s (see --help)", v, a) : 0;
}

int mgpu_opts_parse(mgpu_opts *o, int argc, char **argv, char *why, size_t whylen) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--layer-batch")) {
            o->layer_batch = 1;
            continue;
        }
        if (!strcmp(a, "--graphs")) {
            o->graphs = 1;
            continue;
        }
        if (!strcmp(a, "--check")) {
            o->check = 1;
            continue;
        }
        if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) {
            if (strncmp(a, "--", 2)) return fail(why, whylen, "unexpected argument '%s'", a);
            return fail(why, whylen, "option %s needs a value", a);
        }
        int rc = option(o, a, argv[++i], why, whylen);
        if (rc) return rc;
    }
    if (o->distinct_layers > o->layers)
        return fail(why, whylen, "--distinct-layers %d exceeds --layers %d", o->distinct_layers,
                    o->layers);
    if (o->graphs && o->path != MGPU_PATH_NCCL)
        return fail(why, whylen,
                    "--graphs needs --path nccl: the MPI path stages through the host (a "
                    "blocking MPI call between copies), which a CUDA graph cannot hold");
    mgpu_plan p;
    return mgpu_plan_make(o, 1, &p, why, whylen);
}

int mgpu_plan_make(const mgpu_opts *o, int nranks, mgpu_plan *p, char *why, size_t whylen) {
    memset(p, 0, sizeof *p);
    if (nranks < 1) return fail(why, whylen, "no ranks");
    p->nranks = nranks;
    p->layers = o->layers;
    p->distinct = o->distinct_layers;
    p->group = o->group;
    p->d = o->d;
    p->shard = o->shard;
    p->batch = o->batch * (o->weak == MGPU_WEAK_BATCH ? (size_t)nranks : 1);
    p->context = o->context * (o->weak == MGPU_WEAK_CONTEXT ? (size_t)nranks : 1);
    p->jobs = (uint64_t)p->batch * (uint64_t)o->kv_heads;
    p->entries = p->context / (uint64_t)o->subgen_f;
    p->part_floats = (size_t)o->group * (size_t)(o->d + 2);
    p->weighted = o->subgen_f > 1;
    p->esize = 2;
    if (p->entries == 0)
        return fail(why, whylen, "--context %zu leaves no rows at subgen%d", p->context,
                    o->subgen_f);
    if (p->jobs * (uint64_t)p->layers > (uint64_t)1 << 30)
        return fail(why, whylen, "%llu jobs x %d layers is too many attend jobs",
                    (unsigned long long)p->jobs, p->layers);
    if (o->check && mgpu_reference_bytes(p) > MGPU_CHECK_MAX_BYTES)
        return fail(why, whylen,
                    "--check computes a 1-GPU reference over the whole data on rank 0's GPU: "
                    "%.2f GiB at context %zu x batch %zu exceeds %.0f GiB; use a smaller "
                    "--context (e.g. 32K)",
                    (double)mgpu_reference_bytes(p) / (1 << 30), p->context, p->batch,
                    (double)MGPU_CHECK_MAX_BYTES / (1 << 30));
    return 0;
}

void mgpu_split(uint64_t n, int parts, int r, uint64_t *lo, uint64_t *hi) {
    const uint64_t P = (uint64_t)(parts > 0 ? parts : 1), R = (uint64_t)(r > 0 ? r : 0);
    const uint64_t base = n / P, rem = n % P;
    /* parts before r: R of them, min(R, rem) of which have one item more */
    *lo = R * base + (R < rem ? R : rem);
    *hi = *lo + (R < P ? base + (R < rem ? 1 : 0) : 0);
    if (R >= P) *lo = *hi = n;
}

mgpu_share mgpu_share_of(const mgpu_plan *p, int r) {
    mgpu_share s = {0, p->jobs, 0, p->entries};
    uint64_t lo, hi;
    if (p->shard == MGPU_SHARD_HEAD) {
        mgpu_split(p->jobs, p->nranks, r, &lo, &hi);
        s.j0 = lo, s.nj = hi - lo;
    } else {
        mgpu_split(p->entries, p->nranks, r, &lo, &hi);
        s.t0 = lo, s.nt = hi - lo;
    }
    return s;
}

size_t mgpu_send_floats(const mgpu_plan *p, int r, int layers) {
    const mgpu_share s = mgpu_share_of(p, r);
    return (size_t)s.nj * (size_t)layers * p->part_floats;
}

size_t mgpu_recv_displ(const mgpu_plan *p, int r, int layers) {
    const size_t lf = (size_t)layers * p->part_floats;
    if (p->shard == MGPU_SHARD_HEAD) return (size_t)mgpu_share_of(p, r).j0 * lf;
    return (size_t)r * (size_t)p->jobs * lf;
}

size_t mgpu_recv_floats(const mgpu_plan *p, int layers) {
    const size_t one = (size_t)p->jobs * (size_t)layers * p->part_floats;
    return p->shard == MGPU_SHARD_HEAD ? one : one * (size_t)p->nranks;
}

size_t mgpu_result_offset(const mgpu_plan *p, int layer_batch, int layer, uint64_t job) {
    if (!(layer_batch && p->shard == MGPU_SHARD_HEAD))
        return ((size_t)layer * p->jobs + job) * p->part_floats;
    for (int r = 0; r < p->nranks; r++) {
        const mgpu_share s = mgpu_share_of(p, r);
        if (job >= s.j0 && job < s.j0 + s.nj)
            return mgpu_recv_displ(p, r, p->layers) +
                   ((size_t)layer * s.nj + (job - s.j0)) * p->part_floats;
    }
    return (size_t)-1; /* job out of range */
}

uint64_t mgpu_global_row(const mgpu_plan *p, int ls, uint64_t job, uint64_t token) {
    return ((uint64_t)ls * p->jobs + job) * p->entries + token;
}

uint64_t mgpu_local_row(const mgpu_plan *p, const mgpu_share *s, int ls, uint64_t i, uint64_t t) {
    (void)p;
    return ((uint64_t)ls * s->nj + i) * s->nt + t;
}

uint64_t mgpu_rank_rows(const mgpu_plan *p, int r) {
    const mgpu_share s = mgpu_share_of(p, r);
    return (uint64_t)p->distinct * s.nj * s.nt;
}

static size_t row_bytes(const mgpu_plan *p) {
    return 2 * (size_t)p->d * (size_t)p->esize + (p->weighted ? sizeof(float) : 0);
}

size_t mgpu_rank_bytes(const mgpu_plan *p, int r) { return mgpu_rank_rows(p, r) * row_bytes(p); }

size_t mgpu_reference_bytes(const mgpu_plan *p) {
    return (size_t)p->distinct * p->jobs * p->entries * row_bytes(p);
}

int mgpu_build_jobs(const mgpu_plan *p, const mgpu_share *s, int l0, int l1, const void *K,
                    const void *V, const float *w, const float *q, float *out, skv_cuda_job *jobs) {
    int n = 0;
    const size_t qf = (size_t)p->group * (size_t)p->d;
    for (int l = l0; l < l1; l++)
        for (uint64_t i = 0; i < s->nj; i++, n++) {
            const uint64_t row = mgpu_local_row(p, s, l % p->distinct, i, 0);
            const size_t eoff = (size_t)row * (size_t)p->d * (size_t)p->esize;
            jobs[n] = (skv_cuda_job){
                .k = (const char *)K + eoff,
                .v = (const char *)V + eoff,
                .a = w ? w + row : NULL,
                .b = w ? w + row : NULL,
                .n = s->nt,
                .q = q + ((size_t)l * p->jobs + s->j0 + i) * qf,
                .out = out + ((size_t)(l - l0) * s->nj + i) * p->part_floats,
            };
        }
    return n;
}

void mgpu_merge_host(const float *in, int nsets, size_t set_stride, size_t nparts, int d,
                     float *out) {
    const size_t ps = (size_t)d + 2;
    for (size_t i = 0; i < nparts; i++) {
        skv_partial *dst = (skv_partial *)(out + i * ps);
        skv_partial_init(dst, d);
        for (int k = 0; k < nsets; k++)
            skv_partial_merge(dst, (const skv_partial *)(in + (size_t)k * set_stride + i * ps), d);
    }
}

void mgpu_policy_name(int subgen_f, char *buf, size_t n) {
    if (subgen_f <= 1)
        snprintf(buf, n, "exact");
    else
        snprintf(buf, n, "subgen%d", subgen_f);
}
