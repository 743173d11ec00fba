/*
 * eval_text.c — budget math, retrieval prompts and answer checking of subkv-eval (see
 * eval_text.h).
 */
#include "eval_text.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

size_t eval_budget_bytes(int head_dim, skv_dtype dtype, uint64_t tokens, unsigned frac) {
    if (frac == 0) return 0;
    skv_config c;
    skv_config_default(&c, SKV_POLICY_EXACT, head_dim);
    c.dtype = dtype;
    c.max_tokens = tokens;
    return skv_config_max_bytes(&c) / frac;
}

int eval_csr_sparsity(const skv_config *cfg, size_t budget, uint64_t tokens) {
    static const int cand[4] = {8, 4, 3, 2};
    for (int i = 0; i < 4; i++) {
        skv_config c = *cfg, res;
        skv_err err = {0};
        if (c.policy != SKV_POLICY_REFRESHKV) c.policy = SKV_POLICY_CSR; /* else: its store */
        c.budget_bytes = budget;
        c.sparsity = cand[i];
        if (cand[i] <= c.head_dim && skv_config_resolve(&c, &res, &err) == SKV_OK &&
            skv_config_token_cap(&res) >= tokens)
            return cand[i];
    }
    return 0;
}

void eval_prompt_free(eval_prompt *p) {
    if (!p) return;
    free(p->context);
    free(p->question);
    p->context = p->question = NULL;
}

static char *dup_str(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

int eval_passkey_prompt(const char *filler, size_t filler_len, size_t filler_chars, double depth,
                        unsigned key, eval_prompt *out) {
    static const char head[] = "There is a pass key hidden inside a lot of irrelevant text. "
                               "Find it and memorize it. I will quiz you about the pass key.\n\n";
    memset(out, 0, sizeof *out);
    if (!filler || filler_len == 0 || filler_chars == 0 || !(depth >= 0.0 && depth <= 1.0))
        return -1;
    snprintf(out->answer, sizeof out->answer, "%05u", key % 100000u);
    char needle[160];
    const int nl =
        snprintf(needle, sizeof needle, "\nThe pass key is %s. Remember it. %s is the pass key.\n",
                 out->answer, out->answer);
    /* Filler: the text repeated until filler_chars, cut back to a line end. */
    char *fill = malloc(filler_chars + 1);
    if (!fill) return -1;
    for (size_t i = 0; i < filler_chars; i++) fill[i] = filler[i % filler_len];
    size_t flen = filler_chars;
    while (flen > 0 && fill[flen - 1] != '\n') flen--;
    if (flen == 0) flen = filler_chars; /* no line end at all: keep the cut as it is */
    size_t at = (size_t)(depth * (double)flen);
    while (at > 0 && at < flen && fill[at - 1] != '\n') at--; /* the line end before */
    const size_t hl = sizeof head - 1;
    out->context = malloc(hl + flen + (size_t)nl + 1);
    out->question = dup_str("\n\nWhat is the pass key? The pass key is");
    if (!out->context || !out->question) {
        free(fill);
        eval_prompt_free(out);
        return -1;
    }
    char *p = out->context;
    memcpy(p, head, hl);
    p += hl;
    memcpy(p, fill, at);
    p += at;
    memcpy(p, needle, (size_t)nl);
    p += nl;
    memcpy(p, fill + at, flen - at);
    p += flen - at;
    *p = '\0';
    free(fill);
    out->depth = depth;
    return 0;
}

int eval_lines_prompt(const char *const *words, size_t n_words, size_t n_lines, double depth,
                      uint64_t seed, eval_prompt *out) {
    static const char head[] =
        "Below is a record of lines I want you to remember. Each line begins with 'line <line "
        "index>' and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical "
        "value. For each line index, memorize its corresponding <REGISTER_CONTENT>. At the end "
        "of the record, I will ask you to retrieve the corresponding <REGISTER_CONTENT> of a "
        "certain line index. Now the record start:\n\n";
    memset(out, 0, sizeof *out);
    if (!words || n_words < 2 || n_lines < 1 || !(depth >= 0.0 && depth <= 1.0)) return -1;
    synth_rng r;
    synth_rng_seed(&r, seed);
    const size_t ask = (size_t)llround(depth * (double)(n_lines - 1));
    size_t cap = sizeof head + n_lines * 64, len = 0;
    size_t *w1 = malloc(n_lines * sizeof *w1), *w2 = malloc(n_lines * sizeof *w2);
    out->context = malloc(cap);
    if (!w1 || !w2 || !out->context) goto fail;
    memcpy(out->context, head, sizeof head - 1);
    len = sizeof head - 1;
    for (size_t i = 0; i < n_lines; i++) {
        int fresh = 0;
        for (int tries = 0; !fresh && tries < 64; tries++) { /* distinct line names */
            w1[i] = (size_t)(synth_rng_u64(&r) % n_words);
            w2[i] = (size_t)(synth_rng_u64(&r) % n_words);
            fresh = w1[i] != w2[i];
            for (size_t j = 0; fresh && j < i; j++) fresh = !(w1[j] == w1[i] && w2[j] == w2[i]);
        }
        const unsigned val = 1u + (unsigned)(synth_rng_u64(&r) % 50000u);
        char line[128];
        const int n = snprintf(line, sizeof line, "line %.20s-%.20s: REGISTER_CONTENT is <%u>\n",
                               words[w1[i]], words[w2[i]], val);
        if (len + (size_t)n + 1 > cap) {
            char *g = realloc(out->context, cap * 2);
            if (!g) goto fail;
            out->context = g;
            cap *= 2;
        }
        memcpy(out->context + len, line, (size_t)n);
        len += (size_t)n;
        if (i == ask) snprintf(out->answer, sizeof out->answer, "%u", val);
    }
    out->context[len] = '\0';
    char q[256];
    snprintf(q, sizeof q,
             "\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line "
             "%.20s-%.20s? I need the number.\nThe <REGISTER_CONTENT> in line %.20s-%.20s is <",
             words[w1[ask]], words[w2[ask]], words[w1[ask]], words[w2[ask]]);
    if (!(out->question = dup_str(q))) goto fail;
    out->depth = depth;
    free(w1);
    free(w2);
    return 0;
fail:
    free(w1);
    free(w2);
    eval_prompt_free(out);
    return -1;
}

int eval_answer_match(const char *generated, const char *answer) {
    if (!generated || !answer || !*answer) return 0;
    const char *p = generated;
    while (*p && !isdigit((unsigned char)*p)) p++;
    size_t n = 0;
    while (isdigit((unsigned char)p[n])) n++;
    return n > 0 && n == strlen(answer) && memcmp(p, answer, n) == 0;
}

int eval_load_words(const char *path, char **buf, char ***words, size_t *n) {
    *buf = NULL;
    *words = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 20, len = 0;
    char *b = malloc(cap);
    while (b) {
        const size_t got = fread(b + len, 1, cap - len - 1, f);
        len += got;
        if (len + 1 < cap) break;
        char *g = realloc(b, cap * 2);
        if (!g) {
            free(b);
            b = NULL;
            break;
        }
        b = g;
        cap *= 2;
    }
    fclose(f);
    if (!b) return -1;
    b[len] = '\0';
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += b[i] == '\n';
    char **w = malloc(lines * sizeof *w);
    if (!w) {
        free(b);
        return -1;
    }
    size_t k = 0;
    for (char *s = b; s < b + len;) {
        char *e = strchr(s, '\n');
        if (!e) e = b + len;
        *e = '\0';
        const size_t l = (size_t)(e - s);
        int ok = l >= 3 && l <= 8;
        for (size_t i = 0; ok && i < l; i++) ok = s[i] >= 'a' && s[i] <= 'z';
        if (ok) w[k++] = s;
        s = e + 1;
    }
    if (k == 0) {
        free(w);
        free(b);
        return -1;
    }
    *buf = b;
    *words = w;
    *n = k;
    return 0;
}

double eval_attn_rel_err(const float *q, const float *const K[2], const float *const V[2],
                         const size_t n[2], size_t stride, int d, const float *out,
                         double *scores) {
    const double scale = 1.0 / sqrt((double)d);
    double m = -INFINITY, l = 0.0, o[1024] = {0};
    size_t i = 0;
    for (int g = 0; g < 2; g++)
        for (size_t t = 0; t < n[g]; t++, i++) {
            const float *k = K[g] + t * stride;
            double s = 0.0;
            for (int c = 0; c < d; c++) s += (double)q[c] * k[c];
            scores[i] = s * scale;
            m = scores[i] > m ? scores[i] : m;
        }
    i = 0;
    for (int g = 0; g < 2; g++)
        for (size_t t = 0; t < n[g]; t++, i++) {
            const float *v = V[g] + t * stride;
            const double p = exp(scores[i] - m);
            l += p;
            for (int c = 0; c < d; c++) o[c] += p * v[c];
        }
    double num = 0.0, den = 0.0;
    for (int c = 0; c < d; c++) {
        const double ref = l > 0.0 ? o[c] / l : 0.0, e = (double)out[c] - ref;
        num += e * e;
        den += ref * ref;
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

double eval_logsumexp(const double *x, size_t n) {
    size_t top = 0;
    for (size_t i = 1; i < n; i++) top = x[i] > x[top] ? i : top;
    double l = 1.0; /* the max's own term: e^0 */
    for (size_t i = 0; i < n; i++)
        if (i != top) l += exp(x[i] - x[top]);
    return x[top] + log(l);
}
