/*
 * subkv-dict — CSR dictionaries (cache/csr_dict.h): learn them from calibration traces, show
 * them, and measure them on other traces.
 *
 *   subkv-dict train TRACE... -o DICT [--atoms N] [--layers-per-dict G] [--iters I] ...
 *   subkv-dict info DICT
 *   subkv-dict eval DICT TRACE [--sparsity 4,6,8,16] [--window W] [--queries Q]
 *
 * Training data: every key (and value half) of every kv head and token of the layers of a
 * group, over all the traces given, subsampled uniformly to --samples vectors per table.
 * Evaluate on traces disjoint from the training ones (another text, another synth seed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csr_dict.h"
#include "dict_train.h"
#include "synth.h"
#include "trace.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv-dict train TRACE... -o DICT [--atoms N] [--layers-per-dict G]\n"
            "                  [--sparsity S] [--iters I] [--kmeans-iters K] [--samples M]\n"
            "                  [--incoherence L] [--max-coherence C] [--rope-base B]\n"
            "                  [--seed X] [--quiet]\n"
            "       subkv-dict info DICT\n"
            "       subkv-dict eval DICT TRACE [--sparsity LIST] [--window W] [--queries Q]\n"
            "                  [--rope-base B]\n"
            "train  learns one dictionary set per group of G layers from the traces' keys and\n"
            "       value halves (k-means init, matching pursuit + least-squares update with an\n"
            "       incoherence step) and writes DICT. Defaults: --atoms 1024\n"
            "       --layers-per-dict 1 --sparsity 8 --iters 8 --kmeans-iters 5 --samples 16384\n"
            "       --incoherence 0.1 --max-coherence 0.99 (atoms closer than this to an earlier\n"
            "       atom are reseeded; 1: never) --seed 1. --rope-base B > 0 learns pre-rotary "
            "keys: each\n"
            "       trace key is un-rotated (RoPE of base B, adjacent pairs) at its token index.\n"
            "info   prints a set's shape, fingerprint and bits per element by sparsity.\n"
            "eval   per sparsity s: key / value reconstruction relative error and the relative\n"
            "       error of csr attention (exact window of W) against float64 exact attention,\n"
            "       for the queries of the last Q tokens of every query head. Defaults:\n"
            "       --sparsity 4,6,8,16 --window 64 --queries 16. --rope-base B: code keys\n"
            "       pre-rotary (csr rope_base; DICT must have been trained with it).\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int fail(const char *what, const skv_err *err) {
    fprintf(stderr, "subkv-dict: %s: %s: %s\n", what, subkv_status_name(err->code), err->msg);
    return 1;
}

/* ---- train ------------------------------------------------------------------------------ */

typedef struct sample_buf {
    float *x;
    size_t n, cap; /* rows */
    int dim;
} sample_buf;

static int buf_push(sample_buf *b, const float *row) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        float *x = realloc(b->x, cap * (size_t)b->dim * sizeof *x);
        if (!x) return -1;
        b->x = x, b->cap = cap;
    }
    memcpy(b->x + b->n * (size_t)b->dim, row, (size_t)b->dim * sizeof(float));
    b->n++;
    return 0;
}

/* Keep a uniform random subset of at most m rows (partial Fisher-Yates, in place). */
static void buf_subsample(sample_buf *b, size_t m, synth_rng *r) {
    if (b->n <= m) return;
    const size_t dim = (size_t)b->dim;
    float *tmp = malloc(dim * sizeof *tmp);
    if (!tmp) return;
    for (size_t i = 0; i < m; i++) {
        size_t j = i + (size_t)(synth_rng_u64(r) % (uint64_t)(b->n - i));
        memcpy(tmp, b->x + i * dim, dim * 4);
        memcpy(b->x + i * dim, b->x + j * dim, dim * 4);
        memcpy(b->x + j * dim, tmp, dim * 4);
    }
    free(tmp);
    b->n = m;
}

static int cmd_train(int argc, char **argv) {
    const char *out = NULL;
    const char *traces[256];
    int ntr = 0, lpg = 1, samples = 16384, quiet = 0;
    double rope = 0.0;
    dict_train_opts o;
    dict_train_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, takes = 1;
        if (!strcmp(a, "-o"))
            out = v, bad = !v;
        else if (!strcmp(a, "--atoms"))
            bad = parse_int(v, 1, SKV_DICT_MAX_ATOMS, &o.atoms);
        else if (!strcmp(a, "--layers-per-dict"))
            bad = parse_int(v, 1, SKV_DICT_MAX_GROUPS, &lpg);
        else if (!strcmp(a, "--sparsity"))
            bad = parse_int(v, 2, 1024, &o.sparsity);
        else if (!strcmp(a, "--iters"))
            bad = parse_int(v, 0, 1000, &o.iters);
        else if (!strcmp(a, "--kmeans-iters"))
            bad = parse_int(v, 0, 1000, &o.kmeans_iters);
        else if (!strcmp(a, "--samples"))
            bad = parse_int(v, 1, 1 << 26, &samples);
        else if (!strcmp(a, "--incoherence"))
            bad = !v || (o.incoherence = strtof(v, NULL)) < 0.0f || o.incoherence > 1.0f;
        else if (!strcmp(a, "--rope-base"))
            bad = !v || !((rope = strtod(v, NULL)) >= 1.0) || rope > 1e12;
        else if (!strcmp(a, "--max-coherence"))
            bad = !v || !((o.max_coherence = strtof(v, NULL)) > 0.0f) || o.max_coherence > 1.0f;
        else if (!strcmp(a, "--seed")) {
            int sd = 0;
            bad = parse_int(v, 0, 2147483647L, &sd);
            o.seed = (uint64_t)sd;
        } else if (!strcmp(a, "--quiet"))
            quiet = 1, takes = 0;
        else if (a[0] == '-')
            bad = 1;
        else {
            takes = 0;
            if (ntr == 256)
                bad = 1;
            else
                traces[ntr++] = a;
        }
        if (bad) {
            fprintf(stderr, "subkv-dict train: bad argument %s %s\n", a, v ? v : "");
            usage(stderr);
            return 2;
        }
        i += takes;
    }
    if (!out || ntr == 0) {
        usage(stderr);
        return 2;
    }
    o.verbose = !quiet;
    skv_err err = {0};
    trace_reader *rd[256] = {0};
    uint32_t layers = 0, d = 0;
    int rc = 1;
    skv_dict *dict = NULL;
    sample_buf kb = {0}, vb[2] = {{0}, {0}};
    float *K = NULL, *V = NULL;
    for (int t = 0; t < ntr; t++) {
        if (trace_reader_open(traces[t], &rd[t], &err) != SKV_OK) {
            rc = fail(traces[t], &err);
            goto done;
        }
        const trace_shape *sh = trace_reader_shape(rd[t]);
        if (t == 0) layers = sh->layers, d = sh->head_dim;
        if (sh->layers != layers || sh->head_dim != d) {
            fprintf(stderr, "subkv-dict: %s: %u layers x d %u, the first trace has %u x %u\n",
                    traces[t], sh->layers, sh->head_dim, layers, d);
            goto done;
        }
    }
    if (o.sparsity > (int)d) {
        fprintf(stderr, "subkv-dict: --sparsity %d > head_dim %u\n", o.sparsity, d);
        goto done;
    }
    const int groups = (int)((layers + (uint32_t)lpg - 1) / (uint32_t)lpg);
    if (skv_dict_new((int)d, o.atoms, groups, lpg, &dict, &err) != SKV_OK) {
        rc = fail("dictionary", &err);
        goto done;
    }
    kb.dim = (int)d, vb[0].dim = vb[1].dim = (int)d / 2;
    synth_rng rng;
    synth_rng_seed(&rng, o.seed ^ 0x5eedf00dull);
    const double t0 = now_s();
    for (int g = 0; g < groups; g++) {
        kb.n = vb[0].n = vb[1].n = 0;
        for (int t = 0; t < ntr; t++) {
            const trace_shape *sh = trace_reader_shape(rd[t]);
            const size_t kn = trace_kv_floats(sh);
            free(K), free(V);
            K = malloc(kn * sizeof *K), V = malloc(kn * sizeof *V);
            if (!K || !V) {
                fprintf(stderr, "subkv-dict: no memory for a layer of %s\n", traces[t]);
                goto done;
            }
            for (uint32_t l = (uint32_t)g * lpg; l < layers && l < (uint32_t)(g + 1) * lpg; l++) {
                if (trace_read_layer(rd[t], l, NULL, K, V, &err) != SKV_OK) {
                    rc = fail(traces[t], &err);
                    goto done;
                }
                for (size_t r = 0; r < kn / d && rope > 0.0; r++) /* row r: token r / kv */
                    skv_rope_apply(K + r * d, (int)d, r / sh->kv_heads, rope, -1.0);
                for (size_t r = 0; r < kn / d; r++)
                    if (buf_push(&kb, K + r * d) || buf_push(&vb[0], V + r * d) ||
                        buf_push(&vb[1], V + r * d + d / 2)) {
                        fprintf(stderr, "subkv-dict: no memory for training samples\n");
                        goto done;
                    }
            }
        }
        sample_buf *bufs[3] = {&kb, &vb[0], &vb[1]};
        const char *names[3] = {"keys", "values[0:d/2]", "values[d/2:d]"};
        for (int tb = 0; tb < 3; tb++) {
            buf_subsample(bufs[tb], (size_t)samples, &rng);
            float *atoms = tb == 0 ? skv_dict_keys(dict, g) : skv_dict_values(dict, g, tb - 1);
            const int s = tb == 0 ? o.sparsity : tb == 1 ? (o.sparsity + 1) / 2 : o.sparsity / 2;
            dict_train_report rep;
            const double t1 = now_s();
            if (!quiet)
                fprintf(stderr, "group %d %s: %zu samples, dim %d, s %d\n", g, names[tb],
                        bufs[tb]->n, bufs[tb]->dim, s);
            if (dict_train_table(bufs[tb]->x, bufs[tb]->n, bufs[tb]->dim, s, &o, atoms, &rep,
                                 &err) != SKV_OK) {
                rc = fail("train", &err);
                goto done;
            }
            printf("group %d %-14s s %2d: relative error init %.4f -> trained %.4f, "
                   "max coherence %.3f, %d reseeded, %.1f s\n",
                   g, names[tb], s, rep.init_error, rep.final_error, rep.max_coherence,
                   rep.reseeded, now_s() - t1);
        }
    }
    dict->key_space = rope > 0.0 ? SKV_KEYS_PRE_ROTARY : SKV_KEYS_POST_ROTARY;
    if (skv_dict_finish(dict, &err) != SKV_OK || skv_dict_save_file(dict, out, &err) != SKV_OK) {
        rc = fail(out, &err);
        goto done;
    }
    printf("wrote %s: %d groups x %d layers, %d atoms, d %u, fingerprint %016llx, %.1f s\n", out,
           groups, lpg, o.atoms, d, (unsigned long long)dict->fingerprint, now_s() - t0);
    rc = 0;
done:
    for (int t = 0; t < ntr; t++) trace_reader_close(rd[t]);
    skv_dict_free(dict);
    free(kb.x), free(vb[0].x), free(vb[1].x), free(K), free(V);
    return rc;
}

/* ---- info ------------------------------------------------------------------------------- */

static int cmd_info(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        usage(argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    skv_dict *dict = NULL;
    skv_err err = {0};
    if (skv_dict_load_file(argv[1], &dict, &err) != SKV_OK) return fail(argv[1], &err);
    printf("%s: head_dim %d, %d atoms, %d groups x %d layers (layers 0..%d), %s keys\n", argv[1],
           dict->d, dict->atoms, dict->groups, dict->layers_per_group,
           dict->groups * dict->layers_per_group - 1,
           dict->key_space == SKV_KEYS_PRE_ROTARY ? "pre-rotary" : "post-rotary");
    printf("fingerprint %016llx, %zu bytes of atoms\n", (unsigned long long)dict->fingerprint,
           (size_t)dict->groups * 2 * (size_t)dict->atoms * (size_t)dict->d * sizeof(float));
    printf("# %8s %14s %16s\n", "sparsity", "bits/element", "bytes per token");
    const int ss[] = {4, 6, 8, 16, 32};
    for (int i = 0; i < 5; i++)
        if (ss[i] <= dict->d)
            printf("  %8d %14.3f %16d\n", ss[i], 32.0 * ss[i] / dict->d, 8 * ss[i]);
    skv_dict_free(dict);
    return 0;
}

/* ---- eval ------------------------------------------------------------------------------- */

static int cmd_eval(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int np = 0, window = 64, queries = 16, ss[16], nss = 0;
    double rope = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--window"))
            bad = parse_int(v, 0, 1 << 24, &window), i++;
        else if (!strcmp(a, "--queries"))
            bad = parse_int(v, 1, 1 << 20, &queries), i++;
        else if (!strcmp(a, "--rope-base"))
            bad = !v || !((rope = strtod(v, NULL)) >= 1.0) || rope > 1e12, i++;
        else if (!strcmp(a, "--sparsity")) {
            char list[256];
            snprintf(list, sizeof list, "%s", v ? v : "");
            for (char *tok = strtok(list, ","); tok && !bad; tok = strtok(NULL, ","))
                bad = nss == 16 || parse_int(tok, 2, 1024, &ss[nss++]);
            bad |= nss == 0;
            i++;
        } else if (a[0] == '-' || np == 2)
            bad = 1;
        else
            pos[np++] = a;
        if (bad) {
            fprintf(stderr, "subkv-dict eval: bad argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (np != 2) {
        usage(stderr);
        return 2;
    }
    if (nss == 0) {
        const int def[4] = {4, 6, 8, 16};
        memcpy(ss, def, sizeof def);
        nss = 4;
    }
    return dict_eval(pos[0], pos[1], ss, nss, window, queries, rope);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 1, argv + 1);
    fprintf(stderr, "subkv-dict: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
