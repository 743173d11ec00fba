/*
 * cli_replay.c — `subkv replay TRACE`: drive a recorded (or synthetic) attention trace through
 * the service and measure how far its outputs are from float64 exact attention.
 *
 * The sequence gets the trace's shape. The first n - M tokens of every layer are prefilled
 * with append (chunks of at most 4096 tokens); then for each of the last M tokens, in decode
 * order (token outer, layer inner), one step request carries that token's q, k, v. Each
 * output is compared with exact attention over tokens [0, t] of its layer and kv head
 * (synth_ref_attention, float64). References are computed while a layer is loaded, so
 * memory is one layer of the trace plus the M decode tokens and their references.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_eval.h"
#include "subkv_cli.h"
#include "subkv_client.h"
#include "synth.h"
#include "trace.h"

#define REPLAY_CHUNK 4096u

static void replay_usage(FILE *f) {
    fprintf(f, "usage: subkv replay TRACE [--policy P] [--budget BYTES] [--dtype f32|f16|bf16]\n"
               "                          [--values l2|cluster] [--decode M] [--shards C]\n"
               "                          [--window W] [--dict PATH] [--sparsity S]\n"
               "Creates a sequence with TRACE's shape, prefills the first n-M tokens of every\n"
               "layer, then decodes the last M tokens with one step per (token, layer) and\n"
               "compares each output with float64 exact attention over tokens [0, t].\n"
               "Prints per layer: mean / max relative error, step latency p50 / p99 (ms);\n"
               "then the bytes the service holds. The sequence is dropped at the end.\n"
               "Defaults: --policy subgen, --budget 0 (the policy's raw defaults), --dtype and\n"
               "--values from the policy's defaults, --decode 64, --shards 1; --window and\n"
               "--sparsity (csr) from the policy's defaults. --dict: the csr dictionary set\n"
               "(subkv-dict train), a path the workers can read.\n"
               "Policies: exact, sinkwin, h2o, subgen, refreshkv, csr.\n");
    eval_cli_usage(f, 0);
}

typedef struct replay_opts {
    const char *trace;
    skv_policy_id policy;
    int dtype, values; /* -1: policy default */
    uint64_t budget, decode, shards;
    int64_t window, sparsity; /* -1: policy default */
    const char *dict;
    eval_cli knobs; /* refreshkv's */
} replay_opts;

/* Parse replay's arguments; 0, or 2 after printing the problem (1 never). */
static int replay_parse(int argc, char **argv, replay_opts *o) {
    *o = (replay_opts){.policy = SKV_POLICY_SUBGEN,
                       .dtype = -1,
                       .values = -1,
                       .decode = 64,
                       .shards = 1,
                       .window = -1,
                       .sparsity = -1};
    eval_cli_init(&o->knobs);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, eo = 0;
        if (a[0] != '-') {
            if (o->trace) bad = 1;
            o->trace = a;
            if (!bad) continue;
        } else if (!v) {
            bad = 1;
        } else if (!strcmp(a, "--policy")) {
            int p = skv_policy_parse(v);
            bad = p < 0, o->policy = (skv_policy_id)(p < 0 ? 0 : p);
        } else if (!strcmp(a, "--dtype")) {
            bad = (o->dtype = skv_dtype_parse(v)) < 0;
        } else if (!strcmp(a, "--values")) {
            bad = (o->values = skv_values_parse(v)) < 0;
        } else if (!strcmp(a, "--budget")) {
            bad = cli_parse_size(v, &o->budget) != 0;
        } else if (!strcmp(a, "--decode")) {
            bad = cli_parse_size(v, &o->decode) != 0 || o->decode < 1;
        } else if (!strcmp(a, "--window") || !strcmp(a, "--sparsity")) {
            uint64_t x = 0;
            bad = cli_parse_size(v, &x) != 0 || x > INT32_MAX;
            *(a[2] == 'w' ? &o->window : &o->sparsity) = (int64_t)x;
        } else if (!strcmp(a, "--dict")) {
            bad = strlen(v) >= SKV_DICT_PATH_MAX;
            o->dict = v;
        } else if (!strcmp(a, "--shards")) {
            bad = cli_parse_size(v, &o->shards) != 0 || o->shards < 1 || o->shards > 4096;
        } else if ((eo = eval_cli_option(&o->knobs, a, v)) != 0) {
            bad = eo < 0;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "subkv replay: bad or unknown argument '%s%s%s'\n", a, v ? " " : "",
                    v && a[0] == '-' ? v : "");
            replay_usage(stderr);
            return 2;
        }
        i++;
    }
    if (!o->trace) {
        fprintf(stderr, "subkv replay: missing TRACE\n");
        replay_usage(stderr);
        return 2;
    }
    return 0;
}

/* Per-run buffers (one layer of the trace, the decode tokens, references, results). */
typedef struct replay_bufs {
    float *Q, *K, *V;    /* one layer                                 */
    float *Kg, *Vg;      /* one kv head gathered contiguous [n][d]    */
    float *Qd, *Kd, *Vd; /* decode tokens of every layer [L][M][h][d] */
    double *ref;         /* references [L][M][q_heads][d]             */
    double *lat;         /* step latency ms [L][M]                    */
    float *out;          /* one step's output [q_heads][d]            */
} replay_bufs;

static void replay_bufs_free(replay_bufs *b) {
    free(b->Q), free(b->K), free(b->V), free(b->Kg), free(b->Vg);
    free(b->Qd), free(b->Kd), free(b->Vd), free(b->ref), free(b->lat), free(b->out);
}

static int replay_bufs_alloc(replay_bufs *b, const trace_shape *s, size_t M) {
    size_t n = (size_t)s->n_tokens, d = s->head_dim, L = s->layers;
    memset(b, 0, sizeof *b);
    b->Q = malloc(trace_q_floats(s) * sizeof(float));
    b->K = malloc(trace_kv_floats(s) * sizeof(float));
    b->V = malloc(trace_kv_floats(s) * sizeof(float));
    b->Kg = malloc(n * d * sizeof(float));
    b->Vg = malloc(n * d * sizeof(float));
    b->Qd = malloc(L * M * s->q_heads * d * sizeof(float));
    b->Kd = malloc(L * M * s->kv_heads * d * sizeof(float));
    b->Vd = malloc(L * M * s->kv_heads * d * sizeof(float));
    b->ref = malloc(L * M * s->q_heads * d * sizeof(double));
    b->lat = malloc(L * M * sizeof(double));
    b->out = malloc((size_t)s->q_heads * d * sizeof(float));
    return b->Q && b->K && b->V && b->Kg && b->Vg && b->Qd && b->Kd && b->Vd && b->ref && b->lat &&
                   b->out
               ? 0
               : -1;
}

/*
 * Load layer l, prefill its first P tokens, keep its decode tokens and compute their
 * references. Returns SKV_OK or the failing call's status (err filled).
 */
static subkv_status replay_layer(skv_client *c, trace_reader *tr, const skv_model_shape *ms,
                                 uint64_t seq, uint32_t l, size_t P, size_t M, replay_bufs *b,
                                 skv_err *err) {
    const trace_shape *s = trace_reader_shape(tr);
    const size_t d = s->head_dim, qh = s->q_heads, kvh = s->kv_heads, g = qh / kvh;
    subkv_status st = trace_read_layer(tr, l, b->Q, b->K, b->V, err);
    if (st != SKV_OK) return st;
    for (size_t i = 0; i < P; i += REPLAY_CHUNK) {
        size_t m = P - i < REPLAY_CHUNK ? P - i : REPLAY_CHUNK;
        st = skv_client_append(c, ms, seq, l, m, b->K + i * kvh * d, b->V + i * kvh * d, err);
        if (st != SKV_OK) return st;
    }
    memcpy(b->Qd + (size_t)l * M * qh * d, b->Q + P * qh * d, M * qh * d * sizeof(float));
    memcpy(b->Kd + (size_t)l * M * kvh * d, b->K + P * kvh * d, M * kvh * d * sizeof(float));
    memcpy(b->Vd + (size_t)l * M * kvh * d, b->V + P * kvh * d, M * kvh * d * sizeof(float));
    const size_t n = P + M;
    for (size_t kh = 0; kh < kvh; kh++) {
        for (size_t t = 0; t < n; t++) {
            memcpy(b->Kg + t * d, b->K + (t * kvh + kh) * d, d * sizeof(float));
            memcpy(b->Vg + t * d, b->V + (t * kvh + kh) * d, d * sizeof(float));
        }
        for (size_t i = 0; i < M; i++) {
            size_t t = P + i;
            for (size_t h = kh * g; h < (kh + 1) * g; h++)
                synth_ref_attention(b->Q + (t * qh + h) * d, b->Kg, b->Vg, t + 1, (int)d,
                                    b->ref + (((size_t)l * M + i) * qh + h) * d);
        }
    }
    return SKV_OK;
}

/* Decode: token outer, layer inner; record latency and per-layer error. */
static subkv_status replay_decode(skv_client *c, const skv_model_shape *ms, uint64_t seq, size_t M,
                                  replay_bufs *b, double *err_sum, double *err_max, skv_err *err) {
    const size_t L = ms->layers, d = ms->head_dim, qh = ms->q_heads, kvh = ms->kv_heads;
    for (size_t i = 0; i < M; i++) {
        for (size_t l = 0; l < L; l++) {
            const float *q = b->Qd + (l * M + i) * qh * d;
            const float *k = b->Kd + (l * M + i) * kvh * d;
            const float *v = b->Vd + (l * M + i) * kvh * d;
            double t0 = cli_now_ms();
            subkv_status st = skv_client_step(c, ms, (uint32_t)l, 1, &seq, q, k, v, b->out, err);
            b->lat[l * M + i] = cli_now_ms() - t0;
            if (st != SKV_OK) return st;
            for (size_t h = 0; h < qh; h++) {
                double e =
                    synth_rel_error(b->out + h * d, b->ref + ((l * M + i) * qh + h) * d, (int)d);
                err_sum[l] += e;
                if (e > err_max[l]) err_max[l] = e;
            }
        }
    }
    return SKV_OK;
}

/* Print the per-layer table and the byte counts. */
static void replay_report(const trace_shape *s, size_t M, replay_bufs *b, const double *err_sum,
                          const double *err_max, uint64_t bytes_pre, uint64_t bytes_post,
                          const skv_config *cfg) {
    const size_t L = s->layers;
    printf("# %-5s %14s %14s %10s %10s\n", "layer", "mean_rel_err", "max_rel_err", "p50_ms",
           "p99_ms");
    double all_sum = 0, all_max = 0;
    for (size_t l = 0; l < L; l++) {
        double *lat = b->lat + l * M;
        double mean = err_sum[l] / (double)(M * s->q_heads);
        all_sum += err_sum[l];
        if (err_max[l] > all_max) all_max = err_max[l];
        double p50 = cli_percentile(lat, M, 50), p99 = cli_percentile(lat, M, 99);
        printf("  %-5zu %14.4e %14.4e %10.3f %10.3f\n", l, mean, err_max[l], p50, p99);
    }
    double p50 = cli_percentile(b->lat, L * M, 50), p99 = cli_percentile(b->lat, L * M, 99);
    printf("  %-5s %14.4e %14.4e %10.3f %10.3f\n", "all", all_sum / (double)(L * M * s->q_heads),
           all_max, p50, p99);
    uint64_t exact = (uint64_t)L * s->kv_heads * s->n_tokens * s->head_dim * 2u *
                     (uint64_t)skv_dtype_size(cfg->dtype);
    printf("# service bytes (all workers): %llu after prefill, %llu after decode; exact K+V "
           "of this trace in %s: %llu\n",
           (unsigned long long)bytes_pre, (unsigned long long)bytes_post,
           skv_dtype_name(cfg->dtype), (unsigned long long)exact);
}

/* `subkv replay`. */
int cli_replay(const cli_target *t, int argc, char **argv) {
    replay_opts o;
    replay_bufs b;
    memset(&b, 0, sizeof b);
    trace_reader *tr = NULL;
    skv_client *c = NULL;
    double *err_sum = NULL, *err_max = NULL;
    int rc = 1, have_seq = 0;
    uint64_t seq = 0, bytes_pre = 0, bytes_post = 0;
    skv_err err = {0};
    const char *what = "replay";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            replay_usage(stdout);
            return 0;
        }
    if ((rc = replay_parse(argc, argv, &o)) != 0) return rc;
    rc = 1;
    what = "open trace";
    if (trace_reader_open(o.trace, &tr, &err) != SKV_OK) goto cleanup;
    const trace_shape *s = trace_reader_shape(tr);
    if (o.decode > s->n_tokens) {
        fprintf(stderr, "subkv replay: --decode %llu exceeds the trace's %llu tokens\n",
                (unsigned long long)o.decode, (unsigned long long)s->n_tokens);
        rc = 2;
        goto cleanup;
    }
    const size_t M = (size_t)o.decode, P = (size_t)s->n_tokens - M;
    skv_model_shape ms = {s->layers, s->q_heads, s->kv_heads, s->head_dim};
    skv_config cfg;
    skv_config_default(&cfg, o.policy, (int)s->head_dim);
    if (o.dtype >= 0) cfg.dtype = (skv_dtype)o.dtype;
    if (o.values >= 0) cfg.values = (skv_values_mode)o.values;
    cfg.budget_bytes = (size_t)o.budget;
    if (o.window >= 0) cfg.window = (int)o.window;
    if (o.sparsity >= 0) cfg.sparsity = (int)o.sparsity;
    if (o.dict) snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", o.dict);
    eval_cli_knobs(&o.knobs, &cfg);
    err_sum = calloc(s->layers, sizeof *err_sum);
    err_max = calloc(s->layers, sizeof *err_max);
    if (!err_sum || !err_max || replay_bufs_alloc(&b, s, M) != 0) {
        fprintf(stderr, "subkv replay: out of memory for one layer of the trace\n");
        goto cleanup;
    }
    what = "connect";
    if (skv_client_connect(t->addr, t->token, &c, &err) != SKV_OK) goto cleanup;
    what = "create sequence";
    if (skv_client_create_sequence(c, &ms, &cfg, (uint32_t)o.shards, 0, &seq, &err) != SKV_OK)
        goto cleanup;
    have_seq = 1;
    printf("# replay %s: %u layers x %u q heads x %u kv heads x d %u, %llu tokens; seq %llu\n",
           o.trace, s->layers, s->q_heads, s->kv_heads, s->head_dim,
           (unsigned long long)s->n_tokens, (unsigned long long)seq);
    printf("# policy %s, dtype %s, values %s, budget %llu B per sketch, shards %llu; prefill "
           "%zu tokens, decode %zu\n",
           skv_policy_name(cfg.policy), skv_dtype_name(cfg.dtype), skv_values_name(cfg.values),
           (unsigned long long)o.budget, (unsigned long long)o.shards, P, M);
    fflush(stdout);
    what = "prefill";
    for (uint32_t l = 0; l < s->layers; l++)
        if (replay_layer(c, tr, &ms, seq, l, P, M, &b, &err) != SKV_OK) goto cleanup;
    what = "stats";
    if (skv_client_stats_bytes(c, &bytes_pre, NULL, &err) != SKV_OK) goto cleanup;
    what = "step";
    if (replay_decode(c, &ms, seq, M, &b, err_sum, err_max, &err) != SKV_OK) goto cleanup;
    what = "stats";
    if (skv_client_stats_bytes(c, &bytes_post, NULL, &err) != SKV_OK) goto cleanup;
    replay_report(s, M, &b, err_sum, err_max, bytes_pre, bytes_post, &cfg);
    what = "drop sequence";
    have_seq = 0;
    if (skv_client_drop_sequence(c, seq, &err) != SKV_OK) goto cleanup;
    rc = 0;
cleanup:
    if (rc == 1 && err.code != SKV_OK) cli_fail(what, &err);
    if (have_seq && c) {
        skv_err e2 = {0};
        (void)skv_client_drop_sequence(c, seq, &e2); /* best effort after a failure */
    }
    skv_client_close(c);
    trace_reader_close(tr);
    replay_bufs_free(&b);
    free(err_sum);
    free(err_max);
    return rc;
}
