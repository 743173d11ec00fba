/* llama_cli.c — shared option handling and set-up of the model programs (see llama_cli.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "llama_tok.h"
#include "subkv_cli.h"
#include "subkv_client.h"

void lcli_defaults(lcli_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = LCLI_DEFAULT_MODEL;
    o->attention = "local";
    o->addr = getenv("SUBKV_ADDR");
    o->token = getenv("SUBKV_TOKEN");
    o->policy = SKV_POLICY_EXACT;
    o->dtype = SKV_DTYPE_F32;
    o->values = -1;
    o->seed = 1;
    o->sinks = o->window = o->partial_tokens = o->stride = -1;
    o->full_store = o->full_mem = o->decide = o->sparsity = o->atoms = -1;
    o->threshold = o->rope_base = NAN;
}

void lcli_usage_common(FILE *f) {
    fprintf(
        f,
        "  --model PATH            GGUF model (default " LCLI_DEFAULT_MODEL ")\n"
        "  --attention local|service  sketches in-process or in the subkv service (local)\n"
        "  --addr ADDR --token T   the service (SUBKV_ADDR / SUBKV_TOKEN; default %s)\n"
        "  --policy P              exact|sinkwin|h2o|subgen|refreshkv|csr (default exact)\n"
        "  --budget BYTES          per (layer, kv head) sketch, K/M/G suffixes (0: raw params)\n"
        "  --dtype T               f32|f16|bf16 key/value storage (default f32)\n"
        "  --values V              subgen value estimator: l2|cluster\n"
        "  --seed S                sketch RNG seed (default 1)\n"
        "  --tokens LIST           token ids '1,2,3' or '@FILE' instead of text\n"
        "policy knobs (left out: the policy's default, or what --budget derives):\n"
        "  --sinks N --sketch-window N  exact first / last tokens (sinkwin, subgen, csr,\n"
        "                          h2o window, refreshkv with --full-store subgen or csr)\n"
        "  --partial-tokens K --stride S --threshold T --full-store exact|subgen|csr\n"
        "  --decide layer|group    refreshkv (threshold 1: a full step every stride)\n"
        "  --full-mem host|device  refreshkv, exact store, service: the full store (and full\n"
        "                          steps) on the worker's host or its GPU (default host)\n"
        "  --dict FILE             csr, refreshkv --full-store csr: dictionary set (subkv-dict\n"
        "                          train); required\n"
        "  --sparsity S --atoms N  csr (and that store): atoms per vector (32 S / head_dim bits)\n"
        "  --rope-base B           csr (and that store): code keys pre-rotary (B = the model's\n"
        "                          rope base; the dictionary must be pre-rotary); 0: post-rotary\n",
        SKV_DEFAULT_ADDR);
}

/* An int in [lo, hi] / a finite float; 0 or -1. */
static int parse_int(const char *v, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int parse_float(const char *v, float *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x)) return -1;
    *out = (float)x;
    return 0;
}

/* The knobs: name, and which policies take it (bit per skv_policy_id). */
#define P(x) (1u << SKV_POLICY_##x)
static const struct knob {
    const char *name;
    unsigned policies;
} KNOBS[] = {
    {"--sinks", P(SINKWIN) | P(SUBGEN) | P(CSR) | P(REFRESHKV)},
    {"--sketch-window", P(SINKWIN) | P(SUBGEN) | P(CSR) | P(H2O) | P(REFRESHKV)},
    {"--partial-tokens", P(REFRESHKV)},
    {"--stride", P(REFRESHKV)},
    {"--threshold", P(REFRESHKV)},
    {"--full-store", P(REFRESHKV)},
    {"--full-mem", P(REFRESHKV)},
    {"--decide", P(REFRESHKV)},
    {"--dict", P(CSR) | P(REFRESHKV)}, /* refreshkv: its csr store (--full-store csr) */
    {"--sparsity", P(CSR) | P(REFRESHKV)},
    {"--atoms", P(CSR) | P(REFRESHKV)},
    {"--rope-base", P(CSR) | P(REFRESHKV)},
    {NULL, 0},
};
#undef P

/* Set a knob from its value; 0, or -1 for a bad value. */
static int set_knob(lcli_opts *o, const char *a, const char *v) {
    if (!strcmp(a, "--sinks")) return parse_int(v, 0, 1 << 24, &o->sinks);
    if (!strcmp(a, "--sketch-window")) return parse_int(v, 0, 1 << 24, &o->window);
    if (!strcmp(a, "--partial-tokens")) return parse_int(v, 1, 1 << 24, &o->partial_tokens);
    if (!strcmp(a, "--stride")) return parse_int(v, 1, 1 << 24, &o->stride);
    if (!strcmp(a, "--threshold"))
        return parse_float(v, &o->threshold) || o->threshold < -1 || o->threshold > 1 ? -1 : 0;
    if (!strcmp(a, "--full-store")) return (o->full_store = skv_full_store_parse(v)) < 0 ? -1 : 0;
    if (!strcmp(a, "--full-mem")) return (o->full_mem = skv_full_mem_parse(v)) < 0 ? -1 : 0;
    if (!strcmp(a, "--decide")) return (o->decide = skv_decide_parse(v)) < 0 ? -1 : 0;
    if (!strcmp(a, "--dict")) return o->dict = v, *v ? 0 : -1;
    if (!strcmp(a, "--sparsity")) return parse_int(v, 2, 1024, &o->sparsity);
    if (!strcmp(a, "--atoms")) return parse_int(v, 1, SKV_DICT_MAX_ATOMS, &o->atoms);
    /* --rope-base */
    return parse_float(v, &o->rope_base) || o->rope_base < 0 ? -1 : 0;
}

int lcli_parse_common(lcli_opts *o, int argc, char **argv, int *i) {
    static const char *const with_value[] = {"--model",  "--attention", "--addr",  "--token",
                                             "--policy", "--budget",    "--dtype", "--values",
                                             "--seed",   "--tokens",    NULL};
    const char *a = argv[*i];
    int known = 0, knob = 0;
    for (int k = 0; with_value[k]; k++) known |= strcmp(a, with_value[k]) == 0;
    for (int k = 0; KNOBS[k].name; k++) knob |= strcmp(a, KNOBS[k].name) == 0;
    if (!known && !knob) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    int bad = 0;
    if (knob)
        bad = set_knob(o, a, v) != 0;
    else if (!strcmp(a, "--model"))
        o->model = v;
    else if (!strcmp(a, "--attention"))
        o->attention = v, bad = strcmp(v, "local") != 0 && strcmp(v, "service") != 0;
    else if (!strcmp(a, "--addr"))
        o->addr = v;
    else if (!strcmp(a, "--token"))
        o->token = v;
    else if (!strcmp(a, "--policy"))
        bad = (o->policy = skv_policy_parse(v)) < 0;
    else if (!strcmp(a, "--budget"))
        bad = cli_parse_size(v, &o->budget) != 0;
    else if (!strcmp(a, "--dtype"))
        bad = (o->dtype = skv_dtype_parse(v)) < 0;
    else if (!strcmp(a, "--values"))
        bad = (o->values = skv_values_parse(v)) < 0;
    else if (!strcmp(a, "--seed"))
        bad = cli_parse_size(v, &o->seed) != 0;
    else
        o->tokens = v;
    if (bad) {
        fprintf(stderr, "bad value '%s' for %s\n", v, a);
        return -1;
    }
    return 1;
}

/* Whether knob `name` was given. */
static int knob_given(const lcli_opts *o, const char *name) {
    if (!strcmp(name, "--sinks")) return o->sinks >= 0;
    if (!strcmp(name, "--sketch-window")) return o->window >= 0;
    if (!strcmp(name, "--partial-tokens")) return o->partial_tokens >= 0;
    if (!strcmp(name, "--stride")) return o->stride >= 0;
    if (!strcmp(name, "--threshold")) return !isnan(o->threshold);
    if (!strcmp(name, "--full-store")) return o->full_store >= 0;
    if (!strcmp(name, "--full-mem")) return o->full_mem >= 0;
    if (!strcmp(name, "--decide")) return o->decide >= 0;
    if (!strcmp(name, "--dict")) return o->dict != NULL;
    if (!strcmp(name, "--sparsity")) return o->sparsity >= 0;
    if (!strcmp(name, "--atoms")) return o->atoms >= 0;
    return !isnan(o->rope_base);
}

int lcli_policy(const lcli_opts *o, skv_config *cfg) {
    const char *pname = skv_policy_name((skv_policy_id)o->policy);
    for (int k = 0; KNOBS[k].name; k++)
        if (knob_given(o, KNOBS[k].name) && !(KNOBS[k].policies & (1u << o->policy))) {
            fprintf(stderr, "%s does not apply to --policy %s\n", KNOBS[k].name, pname);
            return -1;
        }
    if (o->policy == SKV_POLICY_REFRESHKV && o->full_store != SKV_FULL_CSR &&
        (o->dict || o->sparsity >= 0 || o->atoms >= 0 || !isnan(o->rope_base))) {
        fprintf(stderr, "--dict, --sparsity, --atoms, --rope-base apply to refreshkv only with "
                        "--full-store csr\n");
        return -1;
    }
    skv_config_default(cfg, (skv_policy_id)o->policy, 64);
    cfg->dtype = (skv_dtype)o->dtype;
    if (o->values >= 0) cfg->values = (skv_values_mode)o->values;
    cfg->budget_bytes = (size_t)o->budget;
    cfg->seed = o->seed;
    if (o->sinks >= 0) cfg->sinks = o->sinks;
    if (o->window >= 0) cfg->window = o->window;
    if (o->partial_tokens >= 0) cfg->partial_tokens = o->partial_tokens;
    if (o->stride >= 0) cfg->stride = o->stride;
    if (!isnan(o->threshold)) cfg->threshold = o->threshold;
    if (o->full_store >= 0) cfg->full_store = (skv_full_store)o->full_store;
    if (o->full_mem >= 0) cfg->full_mem = (skv_full_mem)o->full_mem;
    if (o->decide >= 0) cfg->decide = (skv_decide_mode)o->decide;
    if (o->sparsity >= 0) cfg->sparsity = o->sparsity;
    if (o->atoms >= 0) cfg->atoms = o->atoms;
    if (!isnan(o->rope_base)) cfg->rope_base = o->rope_base;
    if (!skv_config_needs_dict(cfg)) return 0;
    if (!o->dict) {
        fprintf(stderr, "--policy %s needs --dict FILE (a dictionary set: subkv-dict train)\n",
                o->policy == SKV_POLICY_CSR ? "csr" : "refreshkv --full-store csr");
        return -1;
    }
    if (strlen(o->dict) >= sizeof cfg->dict_path) {
        fprintf(stderr, "--dict path longer than %zu bytes\n", sizeof cfg->dict_path - 1);
        return -1;
    }
    memcpy(cfg->dict_path, o->dict, strlen(o->dict) + 1);
    return 0;
}

int lcli_parse_tokens(const char *spec, int32_t **out, size_t *n) {
    char *text = NULL;
    if (spec[0] == '@') {
        FILE *f = fopen(spec + 1, "rb");
        if (!f) {
            fprintf(stderr, "cannot open token file %s: %s\n", spec + 1, strerror(errno));
            return -1;
        }
        size_t cap = 4096, len = 0;
        text = malloc(cap);
        for (size_t got; text && (got = fread(text + len, 1, cap - len - 1, f)) > 0;) {
            len += got;
            if (cap - len < 2) {
                char *t = realloc(text, cap *= 2);
                if (!t) free(text);
                text = t;
            }
        }
        fclose(f);
        if (!text) {
            fprintf(stderr, "out of memory reading %s\n", spec + 1);
            return -1;
        }
        text[len] = '\0';
    } else {
        text = strdup(spec);
        if (!text) return -1;
    }
    size_t cap = 16, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    int rc = 0;
    if (!ids) p = ""; /* reported below */
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "bad token id near '%.16s'\n", p);
            rc = -1;
            break;
        }
        if (k == cap) {
            int32_t *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) free(ids);
            ids = t;
            if (!ids) break;
        }
        ids[k++] = (int32_t)v;
        p = end;
    }
    free(text);
    if (!ids) {
        fprintf(stderr, "out of memory for token ids\n");
        return -1;
    }
    if (rc == 0 && k == 0) {
        fprintf(stderr, "no token ids in '%s'\n", spec);
        rc = -1;
    }
    if (rc != 0) {
        free(ids);
        return rc;
    }
    *out = ids;
    *n = k;
    return 0;
}

/* See llama_cli.h (subkv-eval shares it). */
int lcli_dict_load(skv_dicts **dicts, const llama_hparams *hp, skv_config *cfg, int bind) {
    skv_err err = {0};
    if (!*dicts && skv_dicts_new(dicts, &err) != SKV_OK)
        return cli_fail("dictionary registry", &err) ? -1 : -1;
    const skv_dict *d = NULL;
    if (skv_dicts_get(*dicts, cfg->dict_path, &d, &err) != SKV_OK)
        return cli_fail(cfg->dict_path, &err) ? -1 : -1;
    if ((uint32_t)d->d != hp->head_dim || skv_dict_group_of(d, hp->n_layer - 1) < 0) {
        fprintf(stderr,
                "%s: dictionary of head_dim %d for %d layers; the model has head_dim %u, %u "
                "layers\n",
                cfg->dict_path, d->d, d->groups * d->layers_per_group, hp->head_dim, hp->n_layer);
        return -1;
    }
    if ((d->key_space == SKV_KEYS_PRE_ROTARY) != (cfg->rope_base > 0)) {
        fprintf(stderr, "%s holds %s-rotary keys: %s\n", cfg->dict_path,
                d->key_space == SKV_KEYS_PRE_ROTARY ? "pre" : "post",
                d->key_space == SKV_KEYS_PRE_ROTARY ? "give --rope-base B (the model's rope base)"
                                                    : "leave out --rope-base");
        return -1;
    }
    if (bind && skv_config_bind_dict(cfg, *dicts, &err) != SKV_OK)
        return cli_fail("bind dictionary", &err) ? -1 : -1;
    return 0;
}

/* csr: bind the dictionary. Local sketches borrow the set from r->dicts (loaded on the first
 * open, kept across resets); the service's workers load it themselves by path, so it travels
 * as an absolute path (they need not share our working directory) after we check it loads. */
static int bind_dict(const lcli_opts *o, lcli_run *r, skv_config *cfg) {
    const int local = strcmp(o->attention, "service") != 0;
    if (lcli_dict_load(&r->dicts, llama_model_hparams(r->model), cfg, local) != 0) return -1;
    if (local) return 0;
    char *abs = realpath(cfg->dict_path, NULL);
    if (!abs || strlen(abs) >= sizeof cfg->dict_path) {
        fprintf(stderr, "%s: no absolute path of at most %zu bytes\n", cfg->dict_path,
                sizeof cfg->dict_path - 1);
        free(abs);
        return -1;
    }
    memcpy(cfg->dict_path, abs, strlen(abs) + 1);
    free(abs);
    return 0;
}

static int attn_open(const lcli_opts *o, lcli_run *r) {
    skv_config cfg;
    if (lcli_policy(o, &cfg) != 0) return -1;
    if (skv_config_needs_dict(&cfg) && bind_dict(o, r, &cfg) != 0) return -1;
    skv_err err = {0};
    if (llama_attn_create(o->attention, llama_model_hparams(r->model), &cfg, o->addr, o->token,
                          &r->attn, &err) != SKV_OK)
        return cli_fail("attention backend", &err) ? -1 : -1;
    if (llama_session_create(r->model, r->attn, &r->sess, &err) != SKV_OK)
        return cli_fail("session", &err) ? -1 : -1;
    return 0;
}

int lcli_open(const lcli_opts *o, lcli_run *r) {
    memset(r, 0, sizeof *r);
    skv_err err = {0};
    if (llama_model_load(o->model, &r->model, &err) != SKV_OK) {
        cli_fail(o->model, &err);
        if (err.code == SKV_ERR_IO) fprintf(stderr, "(run `make model` to fetch it)\n");
        return -1;
    }
    return attn_open(o, r);
}

int lcli_reset(const lcli_opts *o, lcli_run *r) {
    llama_session_destroy(r->sess);
    llama_attn_destroy(r->attn);
    r->sess = NULL;
    r->attn = NULL;
    return attn_open(o, r);
}

void lcli_close(lcli_run *r) {
    llama_session_destroy(r->sess);
    llama_attn_destroy(r->attn);
    skv_dicts_free(r->dicts); /* after the sketches that borrow its sets */
    llama_model_free(r->model);
    memset(r, 0, sizeof *r);
}

/*
 * GPT-2 byte-level pieces: bytes 33..126, 161..172 and 174..255 stand for themselves; the
 * other 68 bytes (0..32, 127..160, 173), in increasing order, were mapped to code points
 * 256, 257, ... so every piece is printable. Undo that per code point.
 */
static int byte_of_codepoint(uint32_t c) {
    if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)) return (int)c;
    if (c < 256 || c >= 256 + 68) return -1;
    uint32_t n = c - 256;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) continue;
        if (n-- == 0) return b;
    }
    return -1;
}

void lcli_write_token(const gguf_file *g, int32_t id, FILE *f) {
    const gguf_kv *toks = gguf_find_kv(g, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    gguf_str s;
    skv_err e;
    if (!toks || id < 0 || gguf_arr_str(toks, (uint64_t)id, &s, &e) != SKV_OK) {
        fprintf(f, "<%d>", (int)id);
        return;
    }
    int64_t type = 1;
    if (types && gguf_arr_i64(types, (uint64_t)id, &type, &e) != SKV_OK) type = 1;
    if (type == 3) { /* control: <|im_end|> and the like, as written */
        fwrite(s.ptr, 1, s.len, f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s.ptr, *end = p + s.len;
    while (p < end) {
        uint32_t c = *p;
        int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
        c &= extra == 0 ? 0x7F : extra == 1 ? 0x1F : extra == 2 ? 0x0F : 0x07;
        const unsigned char *q = p + 1;
        for (int k = 0; k < extra && q < end; k++, q++) c = c << 6 | (*q & 0x3F);
        int b = byte_of_codepoint(c);
        if (b >= 0)
            fputc(b, f);
        else
            fwrite(p, 1, (size_t)(q - p), f); /* not byte-level: the piece as it is */
        p = q;
    }
}

/* The whole file into a malloc'd buffer (NUL-terminated); NULL with a message. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "out of memory reading %s\n", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int lcli_input(const lcli_opts *o, const lcli_run *r, const char *text, int is_file, int special,
               int32_t **ids, size_t *n) {
    if (o->tokens) return lcli_parse_tokens(o->tokens, ids, n);
    if (!text) {
        fprintf(stderr, "no input: give %s or --tokens\n", is_file ? "FILE" : "PROMPT");
        return -1;
    }
    llama_tok *tok = NULL;
    skv_err err = {0};
    if (llama_tok_open(llama_model_gguf(r->model), &tok, &err) != SKV_OK) {
        cli_fail("tokenizer", &err);
        return -1;
    }
    size_t len = strlen(text);
    char *owned = NULL;
    if (is_file && !(owned = read_file(text, &len))) {
        llama_tok_free(tok);
        return -1;
    }
    subkv_status st = llama_tok_encode(tok, owned ? owned : text, len, special, 1, ids, n, &err);
    free(owned);
    llama_tok_free(tok);
    if (st != SKV_OK) return cli_fail("tokenize", &err) ? -1 : -1;
    if (*n == 0) {
        free(*ids);
        fprintf(stderr, "the input has no tokens\n");
        return -1;
    }
    return 0;
}
