/* policy_eval.c — see policy_eval.h. */
#include "policy_eval.h"

#include "skv_check.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

synth_stream_cfg eval_workload(int d, int clusters, uint32_t phase_len, float drift,
                               uint64_t seed) {
    return (synth_stream_cfg){.d = d,
                              .clusters = clusters,
                              .center_norm = 8.0f,
                              .spread = 0.4f,
                              .drift = drift,
                              .value_mean = 8.0f,
                              .value_tail = 0.25f,
                              .phase_len = phase_len,
                              .phase_clusters = 4,
                              .seed = seed};
}

const eval_label eval_labels[EVAL_N_LABELS] = {
    {"exact", SKV_POLICY_EXACT, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 0},
    {"sinkwin", SKV_POLICY_SINKWIN, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 0},
    {"h2o", SKV_POLICY_H2O, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 0},
    {"subgen-l2", SKV_POLICY_SUBGEN, SKV_VALUES_L2, SKV_FULL_EXACT, 0},
    {"subgen-cluster", SKV_POLICY_SUBGEN, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 0},
    {"refreshkv", SKV_POLICY_REFRESHKV, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 0},
    {"refreshkv-subgen", SKV_POLICY_REFRESHKV, SKV_VALUES_CLUSTER, SKV_FULL_SUBGEN, 0},
    {"csr", SKV_POLICY_CSR, SKV_VALUES_CLUSTER, SKV_FULL_EXACT, 1},
    {"refreshkv-csr", SKV_POLICY_REFRESHKV, SKV_VALUES_CLUSTER, SKV_FULL_CSR, 1},
};

int eval_standard_lineup(int d, skv_dtype dtype, size_t budget, uint64_t seed, skv_config *cfgs,
                         const char **labels) {
    int n = 0;
    for (int i = 0; i < EVAL_N_LABELS; i++) {
        const eval_label *l = &eval_labels[i];
        if (l->coded) continue; /* no dictionary here */
        skv_config_default(&cfgs[n], l->policy, d);
        cfgs[n].dtype = dtype;
        cfgs[n].seed = seed;
        cfgs[n].budget_bytes = l->policy == SKV_POLICY_EXACT ? 0 : budget;
        cfgs[n].values = l->values;
        cfgs[n].full_store = l->full_store;
        labels[n++] = l->name;
    }
    return n;
}

void eval_cli_init(eval_cli *c) {
    memset(c, 0, sizeof *c);
    c->threshold = NAN;
    c->decide = -1;
}

static int parse_pos_int(const char *v, int *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 1 || x > INT32_MAX) return -1;
    *out = (int)x;
    return 1;
}

int eval_cli_option(eval_cli *c, const char *opt, const char *val) {
    if (!strcmp(opt, "--policy")) {
        if (!val || !*val || strlen(val) >= sizeof c->policies) return -1;
        snprintf(c->policies, sizeof c->policies, "%s", val);
        return 1;
    }
    if (!strcmp(opt, "--partial-tokens")) return val ? parse_pos_int(val, &c->partial_tokens) : -1;
    if (!strcmp(opt, "--stride")) return val ? parse_pos_int(val, &c->stride) : -1;
    if (!strcmp(opt, "--pool-kernel")) return val ? parse_pos_int(val, &c->pool_kernel) : -1;
    if (!strcmp(opt, "--decide")) {
        const int m = val ? skv_decide_parse(val) : -1;
        if (m < 0) return -1;
        c->decide = m;
        return 1;
    }
    if (!strcmp(opt, "--threshold")) {
        char *end = NULL;
        if (!val) return -1;
        float t = strtof(val, &end);
        if (end == val || *end || !(t >= -1.0f && t <= 1.0f)) return -1;
        c->threshold = t;
        return 1;
    }
    return 0;
}

void eval_cli_usage(FILE *f, int lineup) {
    if (lineup)
        fprintf(f, "  --policy NAME[,NAME...]  run only these (exact, sinkwin, h2o, subgen-l2,\n"
                   "                           subgen-cluster, refreshkv; a policy name keeps all\n"
                   "                           its entries)\n");
    fprintf(f,
            "  refreshkv: --partial-tokens K (default: derived from --budget), --stride S (10),\n"
            "             --threshold T in [-1, 1] (0.9; 1: a full step every S), --pool-kernel\n"
            "             P (odd, 7), --decide layer|group (in the service: layer, the paper's\n"
            "             rule run by the coordinator; group: each kv head's sketch alone)\n");
}

void eval_cli_knobs(const eval_cli *c, skv_config *cfg) {
    if (cfg->policy != SKV_POLICY_REFRESHKV) return;
    if (c->partial_tokens) cfg->partial_tokens = c->partial_tokens, cfg->budget_bytes = 0;
    if (c->stride) cfg->stride = c->stride;
    if (c->pool_kernel) cfg->pool_kernel = c->pool_kernel;
    if (!isnan(c->threshold)) cfg->threshold = c->threshold;
    if (c->decide >= 0) cfg->decide = (skv_decide_mode)c->decide;
}

/* Is `name` one of the comma-separated words of list? */
static bool in_list(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

int eval_cli_apply(const eval_cli *c, skv_config *cfgs, const char **labels, int np) {
    int k = 0;
    for (int i = 0; i < np; i++) {
        if (c->policies[0] && !in_list(c->policies, labels[i]) &&
            !in_list(c->policies, skv_policy_name(cfgs[i].policy)))
            continue;
        cfgs[k] = cfgs[i];
        labels[k] = labels[i];
        eval_cli_knobs(c, &cfgs[k]);
        k++;
    }
    return k;
}

/* Feed all tokens (timed); h2o also sees an observing query every `every` tokens. */
static subkv_status eval_feed(skv_sketch *sk, const eval_opts *o, const float *K, const float *V,
                              const float *obs, double *secs, skv_err *err) {
    const int d = o->data.d;
    const size_t chunk = o->observe_every > 0 ? (size_t)o->observe_every : 4096;
    skv_partial *scratch = malloc(skv_partial_stride(d));
    if (!scratch) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a partial");
    const bool observe = o->observe_every > 0 && skv_sketch_config(sk)->policy == SKV_POLICY_H2O;
    double t0 = now_s(), next_report = t0 + 5.0;
    subkv_status st = SKV_OK;
    for (size_t i = 0; i < o->n && st == SKV_OK; i += chunk) {
        size_t m = o->n - i < chunk ? o->n - i : chunk;
        st = skv_sketch_append(sk, K + i * (size_t)d, V + i * (size_t)d, m, d, err);
        if (st == SKV_OK && observe) /* the query of the chunk's last token */
            st = skv_sketch_attend(sk, obs + ((i / chunk) % 64) * (size_t)d, 1, d, scratch, err);
        if (o->progress && now_s() > next_report) {
            fprintf(stderr, "  ... %s: %zu / %zu tokens\n",
                    skv_policy_name(skv_sketch_config(sk)->policy), i + m, o->n);
            next_report = now_s() + 5.0;
        }
    }
    *secs = now_s() - t0;
    free(scratch);
    return st;
}

static void eval_one(const eval_opts *o, const skv_config *cfg, const float *K, const float *V,
                     const float *Q, const float *obs, const double *ref, eval_result *r) {
    const int d = o->data.d, g = o->group;
    skv_err err = {0};
    skv_sketch *sk = NULL;
    skv_partial *parts = NULL;
    float *out = malloc((size_t)d * sizeof(float));
    double secs = 0.0;
    r->status = skv_sketch_create(cfg, &sk, &err);
    if (r->status == SKV_OK) r->status = eval_feed(sk, o, K, V, obs, &secs, &err);
    parts = malloc((size_t)g * skv_partial_stride(d));
    if (r->status == SKV_OK && (!parts || !out))
        r->status = skv_set_error(&err, SKV_ERR_NOMEM, "no memory for outputs");
    if (r->status == SKV_OK) {
        r->append_ns = 1e9 * secs / (double)o->n;
        r->err_mean = r->err_max = 0.0;
        double t_att = 0.0;
        for (int qi = 0; qi < o->queries && r->status == SKV_OK; qi++) {
            double t0 = now_s();
            r->status =
                skv_sketch_attend(sk, Q + (size_t)qi * (size_t)g * (size_t)d, g, d, parts, &err);
            t_att += now_s() - t0;
            for (int h = 0; h < g && r->status == SKV_OK; h++) {
                skv_partial_output(skv_partial_at(parts, d, (size_t)h), d, out);
                double e =
                    synth_rel_error(out, ref + ((size_t)qi * (size_t)g + (size_t)h) * (size_t)d, d);
                r->err_mean += e;
                if (e > r->err_max) r->err_max = e;
            }
        }
        r->err_mean /= (double)(o->queries * g);
        r->attend_us = 1e6 * t_att / (double)o->queries;
        r->bytes = skv_sketch_bytes(sk);
        skv_sketch_stats(sk, &r->stats);
        const bool rkv = cfg->policy == SKV_POLICY_REFRESHKV && r->stats.attends;
        r->full_frac = rkv ? (double)r->stats.full_steps / (double)r->stats.attends : -1.0;
        r->read_step =
            rkv ? (double)r->stats.bytes_read / (double)r->stats.attends : (double)r->bytes;
    }
    if (r->status != SKV_OK) snprintf(r->msg, sizeof r->msg, "%s", err.msg);
    skv_sketch_destroy(sk);
    free(parts);
    free(out);
}

int eval_run(const eval_opts *o, const skv_config *cfgs, const char *const *labels, int npol,
             eval_result *out) {
    const int d = o->data.d, g = o->group;
    const size_t nq = (size_t)o->queries * (size_t)g;
    float *K = malloc(o->n * (size_t)d * sizeof(float));
    float *V = malloc(o->n * (size_t)d * sizeof(float));
    float *Q = malloc(nq * (size_t)d * sizeof(float));
    float *obs = malloc(64 * (size_t)d * sizeof(float));
    double *ref = malloc(nq * (size_t)d * sizeof(double));
    synth_stream *st = synth_stream_create(&o->data);
    int rc = -1;
    if (!K || !V || !Q || !obs || !ref || !st) goto done;
    /* Observing queries follow the stream: aimed at random clusters as it goes. */
    synth_stream_next(st, K, V, o->n);
    synth_rng rng;
    synth_rng_seed(&rng, o->data.seed ^ 0x5eedu);
    const int ncl = o->data.clusters > 0 ? o->data.clusters : 1;
    for (int i = 0; i < 64; i++)
        synth_stream_query(st, (int)(synth_rng_uniform(&rng) * ncl), 1.0f, 0.3f,
                           obs + (size_t)i * (size_t)d);
    /* A group's heads share a target cluster (heads of one KV group attend alike). */
    int c = 0;
    for (int qi = 0; qi < o->queries; qi++) {
        /* a fresh target, or (query_persist) the previous group's: a topic that lasts a
         * few steps (no extra draw when 0, so the default stream is unchanged) */
        if (qi == 0 || o->query_persist <= 0.0 || synth_rng_uniform(&rng) >= o->query_persist)
            c = (int)(synth_rng_uniform(&rng) * ncl);
        for (int h = 0; h < g; h++) {
            float *q = Q + ((size_t)qi * (size_t)g + (size_t)h) * (size_t)d;
            synth_stream_query(st, c, 1.0f, 0.3f, q);
            synth_ref_attention(q, K, V, o->n, d,
                                ref + ((size_t)qi * (size_t)g + (size_t)h) * (size_t)d);
        }
    }
    for (int p = 0; p < npol; p++) {
        memset(&out[p], 0, sizeof out[p]);
        snprintf(out[p].label, sizeof out[p].label, "%s", labels[p]);
        if (o->progress) fprintf(stderr, "  n=%zu %s ...\n", o->n, labels[p]);
        eval_one(o, &cfgs[p], K, V, Q, obs, ref, &out[p]);
    }
    rc = 0;
done:
    synth_stream_destroy(st);
    free(K);
    free(V);
    free(Q);
    free(obs);
    free(ref);
    return rc;
}

void eval_print_table(FILE *f, size_t n, const eval_result *r, int npol) {
    fprintf(f, "# %-15s %9s %12s %12s %12s %10s %10s %8s %9s %12s\n", "policy", "n", "bytes",
            "append_ns", "attend_us", "err_mean", "err_max", "clusters", "full_frac",
            "read_B/step");
    for (int p = 0; p < npol; p++) {
        if (r[p].status != SKV_OK) {
            fprintf(f, "  %-15s %9zu  error %s: %s\n", r[p].label, n,
                    subkv_status_name(r[p].status), r[p].msg);
            continue;
        }
        char frac[16] = "-";
        if (r[p].full_frac >= 0.0) snprintf(frac, sizeof frac, "%.3f", r[p].full_frac);
        fprintf(f, "  %-15s %9zu %12zu %12.1f %12.1f %10.4f %10.4f %8d %9s %12.0f\n", r[p].label, n,
                r[p].bytes, r[p].append_ns, r[p].attend_us, r[p].err_mean, r[p].err_max,
                r[p].stats.clusters, frac, r[p].read_step);
    }
}

void eval_write_csv(FILE *f, size_t n, const eval_result *r, int npol, int header) {
    if (header)
        fprintf(f, "policy,n,bytes,append_ns,attend_us,err_mean,err_max,clusters,full_frac,"
                   "read_bytes_per_step,status\n");
    for (int p = 0; p < npol; p++)
        fprintf(f, "%s,%zu,%zu,%.2f,%.2f,%.6f,%.6f,%d,%.4f,%.0f,%s\n", r[p].label, n, r[p].bytes,
                r[p].append_ns, r[p].attend_us, r[p].err_mean, r[p].err_max, r[p].stats.clusters,
                r[p].full_frac, r[p].read_step, subkv_status_name(r[p].status));
}
