/*
 * eval_opts.c — subkv-eval's options: --help and the parser (see eval_opts.h).
 */
#include "eval_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "subkv_cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv-eval --texts LIST [options]\n"
            "Perplexity, retrieval and attention error of every policy at 1/F of exact memory,\n"
            "and the K + V bytes its attends read per decode step (eval.csv read_bytes_step;\n"
            "summary read/step: fraction of exact's; refreshkv's full_steps_%%).\n"
            "  --texts LIST            file naming one text file per line (Debian texts)\n"
            "  --words PATH            word list for the lines task (default "
            "/usr/share/dict/words)\n"
            "  --out DIR               CSV and tables, made if missing (default build/eval)\n"
            "  --model PATH            GGUF (default %s)\n"
            "  --windows L:N[,L:N]     N perplexity windows of L tokens (default 4096:1,8192:1)\n"
            "  --tail T                tokens scored per window (default 64)\n"
            "  --err-queries Q         last decode steps whose attention error is measured (4)\n"
            "  --fractions F[,F]       memory fractions 1/F (default 4,8,16)\n"
            "  --dtype T               K/V storage of every sketch and the budget (default f16)\n"
            "  --policy L[,L]          labels kept: exact,sinkwin,h2o,subgen-l2,subgen-cluster,"
            "refreshkv,\n"
            "                          refreshkv-subgen,csr,refreshkv-csr (default all)\n"
            "  --csr-dict FILE         dictionary set of csr and refreshkv-csr (refreshkv with\n"
            "                          a csr full store; subkv-dict train; make csr-dicts\n"
            "                          writes build/csr_real/{pre,post}.skvd); without it\n"
            "                          both are skipped\n"
            "  --csr-rope-base B       both code keys pre-rotary with rope base B (a pre-rotary\n"
            "                          dictionary: 100000 for SmolLM2); default 0: post-rotary\n"
            "  --depths D[,D]          passkey depths in [0, 1] (default 0.1,0.3,0.5,0.7,0.9)\n"
            "  --lines-depths D[,D]    depths of the line asked for (default 0.1,0.5,0.9)\n"
            "  --passkey-tokens N      passkey context length, about (default 2048; 0: off)\n"
            "  --lines N               lines of the LongEval task (default 30; 0: off)\n"
            "  --subgen-window W[,W]   subgen's exact window (default 64): one run per value\n"
            "  --subgen-samples T[,T]  subgen's samples per cluster (default 8): one run each\n"
            "  --observe K             h2o: prefix queries observed every K tokens (16; 0 off)\n"
            "  --seed S                sketch RNG and prompt seed (default 1)\n",
            LCLI_DEFAULT_MODEL);
}

static int parse_list_d(const char *s, double *out, int cap) {
    int n = 0;
    for (const char *p = s; *p && n < cap;) {
        char *end = NULL;
        out[n++] = strtod(p, &end);
        if (end == p || !(out[n - 1] >= 0.0 && out[n - 1] <= 1.0)) return -1;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int eval_opts_parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->model = LCLI_DEFAULT_MODEL;
    o->words = "/usr/share/dict/words";
    o->out = "build/eval";
    o->win_len[0] = 4096, o->win_count[0] = 1, o->win_len[1] = 8192, o->win_count[1] = 1;
    o->n_win = 2;
    o->fracs[0] = 4, o->fracs[1] = 8, o->fracs[2] = 16;
    o->n_frac = 3;
    const double dd[5] = {0.1, 0.3, 0.5, 0.7, 0.9};
    memcpy(o->depths, dd, sizeof dd);
    o->n_depth = 5;
    o->line_depths[0] = 0.1, o->line_depths[1] = 0.5, o->line_depths[2] = 0.9;
    o->n_line_depth = 3;
    o->tail = 64, o->err_queries = 4, o->observe = 16, o->passkey_tokens = 2048, o->lines = 30;
    o->seed = 1;
    o->dtype = SKV_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 1;
        if (!v) goto bad;
        i++;
        if (!strcmp(a, "--texts"))
            o->texts = v;
        else if (!strcmp(a, "--words"))
            o->words = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--csr-dict"))
            o->csr_dict = v;
        else if (!strcmp(a, "--csr-rope-base")) {
            char *end = NULL;
            o->csr_rope_base = strtof(v, &end);
            if (end == v || *end || !(o->csr_rope_base == 0.0f || o->csr_rope_base >= 1.0f))
                goto bad;
        } else if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--policy"))
            snprintf(o->policies, sizeof o->policies, "%s", v);
        else if (!strcmp(a, "--dtype")) {
            if ((o->dtype = skv_dtype_parse(v)) < 0) goto bad;
        } else if (!strcmp(a, "--windows")) {
            o->n_win = 0;
            for (const char *p = v; *p && o->n_win < MAX_LIST;) {
                unsigned long long l = 0, c = 0;
                int used = 0;
                if (sscanf(p, "%llu:%llu%n", &l, &c, &used) != 2 || l < 16 || c < 1) goto bad;
                o->win_len[o->n_win] = l, o->win_count[o->n_win++] = c;
                p += used;
                if (*p == ',')
                    p++;
                else if (*p)
                    goto bad;
            }
        } else if (!strcmp(a, "--fractions")) {
            o->n_frac = 0;
            for (const char *p = v; *p && o->n_frac < MAX_LIST;) {
                char *end = NULL;
                const unsigned long f = strtoul(p, &end, 10);
                if (end == p || f < 2) goto bad;
                o->fracs[o->n_frac++] = (unsigned)f;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') goto bad;
            }
        } else if (!strcmp(a, "--subgen-window") || !strcmp(a, "--subgen-samples")) {
            const int w = !strcmp(a, "--subgen-window");
            int *dst = w ? o->sg_window : o->sg_samples,
                *cnt = w ? &o->n_sg_window : &o->n_sg_samples;
            *cnt = 0;
            for (const char *p = v; *p && *cnt < MAX_LIST;) {
                char *end = NULL;
                const long x2 = strtol(p, &end, 10);
                if (end == p || x2 < (w ? 0 : 1) || x2 > 1 << 20) goto bad;
                dst[(*cnt)++] = (int)x2;
                p = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') goto bad;
            }
        } else if (!strcmp(a, "--depths")) {
            if ((o->n_depth = parse_list_d(v, o->depths, MAX_LIST)) < 0) goto bad;
        } else if (!strcmp(a, "--lines-depths")) {
            if ((o->n_line_depth = parse_list_d(v, o->line_depths, MAX_LIST)) < 0) goto bad;
        } else if (cli_parse_size(v, &x) != 0) {
            goto bad;
        } else if (!strcmp(a, "--tail") && x >= 2)
            o->tail = x;
        else if (!strcmp(a, "--err-queries"))
            o->err_queries = x;
        else if (!strcmp(a, "--passkey-tokens"))
            o->passkey_tokens = x;
        else if (!strcmp(a, "--lines"))
            o->lines = x;
        else if (!strcmp(a, "--observe"))
            o->observe = x;
        else if (!strcmp(a, "--seed"))
            o->seed = x;
        else
            goto bad;
        continue;
    bad:
        fprintf(stderr, "subkv-eval: bad or unknown argument '%s'\n", a);
        usage(stderr);
        return 2;
    }
    if (o->csr_dict && strlen(o->csr_dict) >= SKV_DICT_PATH_MAX) {
        fprintf(stderr, "subkv-eval: --csr-dict path longer than %d bytes\n",
                SKV_DICT_PATH_MAX - 1);
        return 2;
    }
    if (!o->texts) {
        fprintf(stderr, "subkv-eval: --texts LIST is required (bench/eval.sh makes one)\n");
        return 2;
    }
    return 0;
}
