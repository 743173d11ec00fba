/*
 * cli_bench.c — `subkv bench service`: decode-step latency through the service against the
 * same sketch operations run in this process (DESIGN.md section 5, "service overhead").
 *
 * Batch mode (default): for each batch size B, create B sequences, prefill each with
 * --context tokens per layer, then time --steps decode steps; a step is one step request per
 * layer carrying all B sequences. Reported: p50 / p99 of one layer-step request and of one
 * token (all layers), and decode tokens per second. The in-process baseline builds the same
 * sketches (same config, seq_id, layer, head) with the cache library, prefills the same
 * data, and times the same steps: per layer, per sequence, per kv head one append of the
 * token and one attend of its query group, outputs formed. Single-threaded.
 *
 * Clients mode (--clients C): C threads, each with its own connection and sequence, step
 * concurrently; reported: requests/s, tokens/s and per-request p50 / p99.
 *
 * Prefill data is one synthetic clustered stream per kv head, reused for every layer and
 * sequence (the sketches' RNG keys differ, so their coins do); decode inputs are N(0, 1).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_eval.h"
#include "subkv_cli.h"
#include "subkv_client.h"
#include "synth.h"

#define BENCH_CHUNK 4096u
#define BENCH_MAX_BATCHES 16

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: subkv bench service [--layers L] [--q-heads H] [--kv-heads KV] [--d D]\n"
            "                           [--policy P] [--budget BYTES] [--dtype T] [--values V]\n"
            "                           [--context N] [--steps S] [--batches B1,B2,...]\n"
            "                           [--clients C] [--no-inproc] [--seed S]\n"
            "Times decode steps through the service (one step request per layer for a batch\n"
            "of sequences) and the same sketch ops in this process; prints a '#'-headed table.\n"
            "--clients C: C threads with one connection and sequence each, report requests/s.\n"
            "Defaults: 32 layers x 32 q heads x 8 kv heads x d 128, --policy subgen --budget 64K\n"
            "          --dtype f16 --context 2048 --steps 20 --batches 1,8,32.\n");
}

typedef struct bench_opts {
    skv_model_shape shape;
    skv_config cfg;
    uint64_t context, steps, clients, seed;
    size_t batches[BENCH_MAX_BATCHES];
    int nbatches, inproc;
} bench_opts;

/* Parse "1,8,32" into o->batches. */
static int parse_batches(const char *s, bench_opts *o) {
    o->nbatches = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = buf; *p;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        uint64_t v;
        if (cli_parse_size(p, &v) != 0 || v < 1 || v > 4096 || o->nbatches == BENCH_MAX_BATCHES)
            return -1;
        o->batches[o->nbatches++] = (size_t)v;
        if (!comma) break;
        p = comma + 1;
    }
    return o->nbatches > 0 ? 0 : -1;
}

/* Parse bench's arguments (argv[1] must be "service"); 0 or 2. */
static int bench_parse(int argc, char **argv, bench_opts *o) {
    uint64_t layers = 32, qh = 32, kvh = 8, d = 128, budget = 64 << 10;
    int policy = SKV_POLICY_SUBGEN, dtype = SKV_DTYPE_F16, values = -1;
    const char *batches = "1,8,32";
    *o = (bench_opts){.context = 2048, .steps = 20, .seed = 42, .inproc = 1};
    if (argc < 2 || strcmp(argv[1], "service") != 0) {
        fprintf(stderr, "subkv bench: expected 'service' (the only benchmark so far)\n");
        bench_usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (!strcmp(a, "--no-inproc")) {
            o->inproc = 0;
            continue;
        }
        if (bad) {
        } else if (!strcmp(a, "--layers")) {
            bad = cli_parse_size(v, &layers) || layers < 1 || layers > 1024;
        } else if (!strcmp(a, "--q-heads")) {
            bad = cli_parse_size(v, &qh) || qh < 1 || qh > 1024;
        } else if (!strcmp(a, "--kv-heads")) {
            bad = cli_parse_size(v, &kvh) || kvh < 1 || kvh > 1024;
        } else if (!strcmp(a, "--d")) {
            bad = cli_parse_size(v, &d) || d < 1 || d > 1024;
        } else if (!strcmp(a, "--policy")) {
            bad = (policy = skv_policy_parse(v)) < 0;
        } else if (!strcmp(a, "--dtype")) {
            bad = (dtype = skv_dtype_parse(v)) < 0;
        } else if (!strcmp(a, "--values")) {
            bad = (values = skv_values_parse(v)) < 0;
        } else if (!strcmp(a, "--budget")) {
            bad = cli_parse_size(v, &budget) != 0;
        } else if (!strcmp(a, "--context")) {
            bad = cli_parse_size(v, &o->context) || o->context < 1 || o->context > (1u << 24);
        } else if (!strcmp(a, "--steps")) {
            bad = cli_parse_size(v, &o->steps) || o->steps < 1 || o->steps > 1000000;
        } else if (!strcmp(a, "--clients")) {
            bad = cli_parse_size(v, &o->clients) || o->clients > 1024;
        } else if (!strcmp(a, "--seed")) {
            bad = cli_parse_size(v, &o->seed) != 0;
        } else if (!strcmp(a, "--batches")) {
            batches = v;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "subkv bench: bad or unknown argument '%s'%s%s\n", a, v ? " " : "",
                    v ? v : "");
            bench_usage(stderr);
            return 2;
        }
        i++;
    }
    if (parse_batches(batches, o) != 0) {
        fprintf(stderr, "subkv bench: --batches wants sizes in [1, 4096] like 1,8,32\n");
        return 2;
    }
    if (qh % kvh) {
        fprintf(stderr, "subkv bench: --q-heads must be a multiple of --kv-heads\n");
        return 2;
    }
    o->shape = (skv_model_shape){(uint32_t)layers, (uint32_t)qh, (uint32_t)kvh, (uint32_t)d};
    skv_config_default(&o->cfg, (skv_policy_id)policy, (int)d);
    if (dtype >= 0) o->cfg.dtype = (skv_dtype)dtype;
    if (values >= 0) o->cfg.values = (skv_values_mode)values;
    o->cfg.budget_bytes = (size_t)budget;
    o->cfg.seed = o->seed;
    return 0;
}

/* Prefill data: K, V [context][kv_heads][d] (one clustered stream per kv head). */
static int make_prefill(const bench_opts *o, float **K, float **V) {
    const size_t n = o->context, kvh = o->shape.kv_heads, d = o->shape.head_dim;
    *K = malloc(n * kvh * d * sizeof(float));
    *V = malloc(n * kvh * d * sizeof(float));
    float *k = malloc(d * sizeof(float)), *v = malloc(d * sizeof(float));
    int rc = (*K && *V && k && v) ? 0 : -1;
    for (size_t h = 0; rc == 0 && h < kvh; h++) {
        synth_stream_cfg sc = eval_workload((int)d, 32, 2048, 0.0f, o->seed + 7919u * h);
        synth_stream *st = synth_stream_create(&sc);
        if (!st) {
            rc = -1;
            break;
        }
        for (size_t t = 0; t < n; t++) {
            synth_stream_next(st, k, v, 1);
            memcpy(*K + (t * kvh + h) * d, k, d * sizeof(float));
            memcpy(*V + (t * kvh + h) * d, v, d * sizeof(float));
        }
        synth_stream_destroy(st);
    }
    free(k);
    free(v);
    return rc;
}

/* Decode inputs of one layer-step for B sequences. */
typedef struct step_bufs {
    float *Q, *K, *V, *out;
} step_bufs;

static int step_bufs_alloc(step_bufs *s, const skv_model_shape *m, size_t B) {
    size_t qn = B * m->q_heads * m->head_dim, kn = B * m->kv_heads * m->head_dim;
    s->Q = malloc(qn * sizeof(float)), s->out = malloc(qn * sizeof(float));
    s->K = malloc(kn * sizeof(float)), s->V = malloc(kn * sizeof(float));
    return s->Q && s->K && s->V && s->out ? 0 : -1;
}
static void step_bufs_free(step_bufs *s) { free(s->Q), free(s->K), free(s->V), free(s->out); }
static void step_bufs_fill(step_bufs *s, const skv_model_shape *m, size_t B, synth_rng *r) {
    synth_fill_normal(r, s->Q, B * m->q_heads * m->head_dim, 1.0f);
    synth_fill_normal(r, s->K, B * m->kv_heads * m->head_dim, 1.0f);
    synth_fill_normal(r, s->V, B * m->kv_heads * m->head_dim, 1.0f);
}

/* One result row. lat_layer[steps*L], lat_tok[steps] in ms; wall_ms of all decode steps. */
static void print_row(const char *mode, size_t B, double *lat_layer, size_t nl, double *lat_tok,
                      size_t nt, double wall_ms) {
    double lp50 = cli_percentile(lat_layer, nl, 50), lp99 = cli_percentile(lat_layer, nl, 99);
    double tp50 = cli_percentile(lat_tok, nt, 50), tp99 = cli_percentile(lat_tok, nt, 99);
    printf("  %-8s %6zu %13.3f %13.3f %13.3f %13.3f %13.1f\n", mode, B, lp50, lp99, tp50, tp99,
           wall_ms > 0 ? (double)(B * nt) / (wall_ms / 1e3) : 0.0);
    fflush(stdout);
}

/* Service: B sequences, prefill, timed steps, drop. Returns 0 or 1 (printed). */
static int bench_service_batch(skv_client *c, const bench_opts *o, size_t B, const float *Kp,
                               const float *Vp) {
    const skv_model_shape *m = &o->shape;
    const size_t L = m->layers, S = o->steps, n = o->context, rowf = m->kv_heads * m->head_dim;
    uint64_t *seqs = calloc(B, sizeof *seqs);
    double *lat_layer = malloc(S * L * sizeof(double)), *lat_tok = calloc(S, sizeof(double));
    step_bufs sb = {0};
    size_t created = 0;
    skv_err err = {0};
    const char *what = "out of memory";
    int rc = 1;
    synth_rng r;
    synth_rng_seed(&r, o->seed ^ B);
    if (!seqs || !lat_layer || !lat_tok || step_bufs_alloc(&sb, m, B) != 0) goto cleanup;
    what = "create sequence";
    for (; created < B; created++)
        if (skv_client_create_sequence(c, m, &o->cfg, 1, 0, &seqs[created], &err)) goto cleanup;
    what = "append";
    for (size_t b = 0; b < B; b++)
        for (size_t l = 0; l < L; l++)
            for (size_t i = 0; i < n; i += BENCH_CHUNK) {
                size_t cnt = n - i < BENCH_CHUNK ? n - i : BENCH_CHUNK;
                if (skv_client_append(c, m, seqs[b], (uint32_t)l, cnt, Kp + i * rowf, Vp + i * rowf,
                                      &err))
                    goto cleanup;
            }
    what = "step";
    double wall = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t l = 0; l < L; l++) {
            step_bufs_fill(&sb, m, B, &r);
            double t0 = cli_now_ms();
            if (skv_client_step(c, m, (uint32_t)l, B, seqs, sb.Q, sb.K, sb.V, sb.out, &err))
                goto cleanup;
            double dt = cli_now_ms() - t0;
            lat_layer[s * L + l] = dt, lat_tok[s] += dt, wall += dt;
        }
    print_row("service", B, lat_layer, S * L, lat_tok, S, wall);
    rc = 0;
cleanup:
    if (rc) {
        if (err.code != SKV_OK)
            cli_fail(what, &err);
        else
            fprintf(stderr, "subkv bench: %s\n", what);
    }
    for (size_t b = 0; b < created; b++) {
        skv_err e2 = {0};
        if (skv_client_drop_sequence(c, seqs[b], &e2) != SKV_OK && !rc) rc = cli_fail("drop", &e2);
    }
    free(seqs), free(lat_layer), free(lat_tok);
    step_bufs_free(&sb);
    return rc;
}

/* In-process: the same sketches and steps through the cache library. Returns 0 or 1. */
static int bench_inproc_batch(const bench_opts *o, size_t B, const float *Kp, const float *Vp) {
    const skv_model_shape *m = &o->shape;
    const size_t L = m->layers, S = o->steps, n = o->context, kvh = m->kv_heads;
    const size_t d = m->head_dim, g = m->q_heads / kvh, ns = B * L * kvh;
    skv_sketch **sk = calloc(ns, sizeof *sk);
    float *Kg = malloc(kvh * n * d * sizeof(float)), *Vg = malloc(kvh * n * d * sizeof(float));
    skv_partial *part = malloc(g * skv_partial_stride((int)d));
    double *lat_layer = malloc(S * L * sizeof(double)), *lat_tok = calloc(S, sizeof(double));
    step_bufs sb = {0};
    skv_err err = {0};
    int rc = 1;
    synth_rng r;
    synth_rng_seed(&r, o->seed ^ B);
    if (!sk || !Kg || !Vg || !part || !lat_layer || !lat_tok || step_bufs_alloc(&sb, m, B)) {
        fprintf(stderr, "subkv bench: out of memory for %zu in-process sketches\n", ns);
        goto cleanup;
    }
    for (size_t h = 0; h < kvh; h++) /* [n][kv][d] -> per head [n][d] */
        for (size_t t = 0; t < n; t++) {
            memcpy(Kg + (h * n + t) * d, Kp + (t * kvh + h) * d, d * sizeof(float));
            memcpy(Vg + (h * n + t) * d, Vp + (t * kvh + h) * d, d * sizeof(float));
        }
    for (size_t i = 0; i < ns; i++) {
        skv_config c = o->cfg;
        c.seq_id = i / (L * kvh) + 1, c.layer = (uint32_t)(i / kvh % L),
        c.head = (uint32_t)(i % kvh);
        if (skv_sketch_create(&c, &sk[i], &err)) goto cleanup;
        for (size_t t = 0; t < n; t += BENCH_CHUNK) {
            size_t cnt = n - t < BENCH_CHUNK ? n - t : BENCH_CHUNK;
            const float *k = Kg + (c.head * n + t) * d, *v = Vg + (c.head * n + t) * d;
            if (skv_sketch_append(sk[i], k, v, cnt, (int)d, &err)) goto cleanup;
        }
    }
    double wall = 0;
    for (size_t s = 0; s < S; s++)
        for (size_t l = 0; l < L; l++) {
            step_bufs_fill(&sb, m, B, &r);
            double t0 = cli_now_ms();
            for (size_t b = 0; b < B; b++)
                for (size_t h = 0; h < kvh; h++) {
                    skv_sketch *x = sk[(b * L + l) * kvh + h];
                    const float *k = sb.K + (b * kvh + h) * d, *v = sb.V + (b * kvh + h) * d;
                    const float *q = sb.Q + (b * m->q_heads + h * g) * d;
                    if (skv_sketch_append(x, k, v, 1, (int)d, &err)) goto cleanup;
                    if (skv_sketch_attend(x, q, (int)g, (int)d, part, &err)) goto cleanup;
                    for (size_t j = 0; j < g; j++)
                        skv_partial_output(skv_partial_at(part, (int)d, j), (int)d,
                                           sb.out + (b * m->q_heads + h * g + j) * d);
                }
            double dt = cli_now_ms() - t0;
            lat_layer[s * L + l] = dt, lat_tok[s] += dt, wall += dt;
        }
    print_row("inproc", B, lat_layer, S * L, lat_tok, S, wall);
    rc = 0;
cleanup:
    if (rc && err.code != SKV_OK) cli_fail("in-process sketch", &err);
    for (size_t i = 0; sk && i < ns; i++) skv_sketch_destroy(sk[i]);
    free(sk), free(Kg), free(Vg), free(part), free(lat_layer), free(lat_tok);
    step_bufs_free(&sb);
    return rc;
}

/* ---- clients mode ------------------------------------------------------------------------ */

typedef struct client_job {
    const bench_opts *o;
    const cli_target *t;
    const float *Kp, *Vp;
    pthread_barrier_t *ready, *done;
    double *lat; /* steps * layers */
    skv_err err;
    const char *what;
    int failed;
} client_job;

/* One client thread: connect, create, prefill, wait, step, wait, drop. */
static void *client_thread(void *arg) {
    client_job *j = arg;
    const bench_opts *o = j->o;
    const skv_model_shape *m = &o->shape;
    const size_t L = m->layers, n = o->context, rowf = m->kv_heads * m->head_dim;
    skv_client *c = NULL;
    uint64_t seq = 0;
    int have_seq = 0, waited_ready = 0;
    step_bufs sb = {0};
    synth_rng r;
    synth_rng_seed(&r, o->seed ^ (uintptr_t)j);
    j->failed = 1;
    j->what = "out of memory";
    if (step_bufs_alloc(&sb, m, 1)) goto cleanup;
    j->what = "connect";
    if (skv_client_connect(j->t->addr, j->t->token, &c, &j->err)) goto cleanup;
    j->what = "create sequence";
    if (skv_client_create_sequence(c, m, &o->cfg, 1, 0, &seq, &j->err)) goto cleanup;
    have_seq = 1;
    j->what = "append";
    for (size_t l = 0; l < L; l++)
        for (size_t i = 0; i < n; i += BENCH_CHUNK) {
            size_t cnt = n - i < BENCH_CHUNK ? n - i : BENCH_CHUNK;
            if (skv_client_append(c, m, seq, (uint32_t)l, cnt, j->Kp + i * rowf, j->Vp + i * rowf,
                                  &j->err))
                goto cleanup;
        }
    pthread_barrier_wait(j->ready);
    waited_ready = 1;
    j->what = "step";
    for (size_t s = 0; s < o->steps; s++)
        for (size_t l = 0; l < L; l++) {
            step_bufs_fill(&sb, m, 1, &r);
            double t0 = cli_now_ms();
            if (skv_client_step(c, m, (uint32_t)l, 1, &seq, sb.Q, sb.K, sb.V, sb.out, &j->err))
                goto cleanup;
            j->lat[s * L + l] = cli_now_ms() - t0;
        }
    j->failed = 0;
cleanup:
    if (!waited_ready) pthread_barrier_wait(j->ready); /* never strand the others */
    pthread_barrier_wait(j->done);
    if (have_seq) {
        skv_err e2 = {0};
        (void)skv_client_drop_sequence(c, seq, &e2);
    }
    skv_client_close(c);
    step_bufs_free(&sb);
    return NULL;
}

/* C concurrent clients; the main thread times from "all prefilled" to "all done". */
static int bench_clients(const cli_target *t, const bench_opts *o, const float *Kp,
                         const float *Vp) {
    const size_t C = o->clients, per = o->steps * o->shape.layers;
    client_job *jobs = calloc(C, sizeof *jobs);
    pthread_t *th = calloc(C, sizeof *th);
    double *lat = malloc(C * per * sizeof(double));
    pthread_barrier_t ready, done;
    size_t started = 0;
    int rc = 1;
    if (!jobs || !th || !lat) goto cleanup;
    pthread_barrier_init(&ready, NULL, (unsigned)C + 1);
    pthread_barrier_init(&done, NULL, (unsigned)C + 1);
    for (; started < C; started++) {
        jobs[started] = (client_job){.o = o,
                                     .t = t,
                                     .Kp = Kp,
                                     .Vp = Vp,
                                     .ready = &ready,
                                     .done = &done,
                                     .lat = lat + started * per};
        if (pthread_create(&th[started], NULL, client_thread, &jobs[started]) != 0) {
            fprintf(stderr, "subkv bench: pthread_create failed; run with fewer --clients\n");
            exit(1); /* the started threads wait on barriers sized for C: cannot unwind */
        }
    }
    pthread_barrier_wait(&ready);
    double t0 = cli_now_ms();
    pthread_barrier_wait(&done);
    double wall = cli_now_ms() - t0;
    for (size_t i = 0; i < C; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&done);
    rc = 0;
    for (size_t i = 0; i < C; i++)
        if (jobs[i].failed) rc = cli_fail(jobs[i].what, &jobs[i].err);
    if (rc) goto cleanup;
    printf("# %-8s %7s %9s %9s %13s %13s %11s %11s\n", "mode", "clients", "requests", "wall_s",
           "requests_s", "tokens_s", "req_p50_ms", "req_p99_ms");
    printf("  %-8s %7zu %9zu %9.3f %13.1f %13.1f %11.3f %11.3f\n", "clients", C, C * per,
           wall / 1e3, (double)(C * per) / (wall / 1e3), (double)(C * o->steps) / (wall / 1e3),
           cli_percentile(lat, C * per, 50), cli_percentile(lat, C * per, 99));
cleanup:
    free(jobs), free(th), free(lat);
    return rc;
}

/* `subkv bench service`. */
int cli_bench(const cli_target *t, int argc, char **argv) {
    bench_opts o;
    float *Kp = NULL, *Vp = NULL;
    skv_client *c = NULL;
    skv_err err = {0};
    int rc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            bench_usage(stdout);
            return 0;
        }
    if ((rc = bench_parse(argc, argv, &o)) != 0) return rc;
    rc = 1;
    if (make_prefill(&o, &Kp, &Vp) != 0) {
        fprintf(stderr, "subkv bench: out of memory for the prefill data\n");
        goto cleanup;
    }
    printf("# subkv bench service: %s; %u layers x %u q heads x %u kv heads x d %u\n", t->addr,
           o.shape.layers, o.shape.q_heads, o.shape.kv_heads, o.shape.head_dim);
    printf("# policy %s, dtype %s, values %s, budget %zu B per sketch; context %llu, %llu steps\n",
           skv_policy_name(o.cfg.policy), skv_dtype_name(o.cfg.dtype),
           skv_values_name(o.cfg.values), o.cfg.budget_bytes, (unsigned long long)o.context,
           (unsigned long long)o.steps);
    fflush(stdout);
    if (o.clients > 0) {
        rc = bench_clients(t, &o, Kp, Vp);
        goto cleanup;
    }
    if (skv_client_connect(t->addr, t->token, &c, &err) != SKV_OK) {
        rc = cli_fail("connect", &err);
        goto cleanup;
    }
    printf("# %-8s %6s %13s %13s %13s %13s %13s\n", "mode", "batch", "layer_p50_ms", "layer_p99_ms",
           "token_p50_ms", "token_p99_ms", "tokens_s");
    rc = 0;
    for (int i = 0; i < o.nbatches && !rc; i++) {
        rc = bench_service_batch(c, &o, o.batches[i], Kp, Vp);
        if (!rc && o.inproc) rc = bench_inproc_batch(&o, o.batches[i], Kp, Vp);
    }
cleanup:
    skv_client_close(c);
    free(Kp);
    free(Vp);
    return rc;
}
