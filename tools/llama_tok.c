/*
 * llama_tok.c — GGUF tokenizer metadata to the BPE tokenizer (see llama_tok.h). The GGUF's
 * strings are not NUL-terminated, so they go over as pointer + length arrays (skv_bpe_create
 * copies them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_tok.h"
#include "skv_check.h"

#if defined(__has_include)
#if __has_include("bpe.h")
#define LLAMA_HAVE_BPE 1
#include "bpe.h"
#endif
#endif

#ifndef LLAMA_HAVE_BPE

int llama_tok_available(void) { return 0; }
subkv_status llama_tok_open(const gguf_file *g, llama_tok **out, skv_err *err) {
    (void)g;
    if (out) *out = NULL;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                         "this build has no tokenizer (tools/bpe.h); give token ids");
}
void llama_tok_free(llama_tok *t) { (void)t; }
subkv_status llama_tok_encode(const llama_tok *t, const char *text, size_t len, int special,
                              int add_bos, int32_t **ids, size_t *n, skv_err *err) {
    (void)t, (void)text, (void)len, (void)special, (void)add_bos, (void)ids, (void)n;
    return skv_set_error(err, SKV_ERR_UNSUPPORTED, "this build has no tokenizer");
}
int32_t llama_tok_eos(const llama_tok *t) {
    (void)t;
    return -1;
}

#else

struct llama_tok {
    skv_bpe *bpe;
    int32_t bos, eos;
    int add_bos;
};

int llama_tok_available(void) { return 1; }

/* Optional u32 id: -1 when absent. */
static subkv_status opt_id(const gguf_file *g, const char *key, int32_t *out, skv_err *err) {
    *out = -1;
    if (!gguf_find_kv(g, key)) return SKV_OK;
    uint32_t v;
    SKV_CHECK(gguf_get_u32(g, key, &v, err));
    if (v > INT32_MAX) return skv_set_error(err, SKV_ERR_CORRUPT, "%s = %u", key, v);
    *out = (int32_t)v;
    return SKV_OK;
}

/* A string array as pointer + length arrays (pointing into the GGUF image). */
static subkv_status str_array(const gguf_file *g, const char *key, const char ***s, size_t **len,
                              size_t *n, skv_err *err) {
    gguf_type et;
    uint64_t cnt;
    SKV_CHECK(gguf_get_arr(g, key, &et, &cnt, err));
    if (et != GGUF_TYPE_STRING)
        return skv_set_error(err, SKV_ERR_CORRUPT, "%s holds %s, not strings", key,
                             gguf_type_name(et));
    const gguf_kv *kv = gguf_find_kv(g, key);
    *s = malloc((cnt ? cnt : 1) * sizeof **s);
    *len = malloc((cnt ? cnt : 1) * sizeof **len);
    if (!*s || !*len)
        return skv_set_error(err, SKV_ERR_NOMEM, "%s: %llu strings", key, (unsigned long long)cnt);
    for (uint64_t i = 0; i < cnt; i++) {
        gguf_str str;
        SKV_CHECK(gguf_arr_str(kv, i, &str, err));
        (*s)[i] = str.ptr;
        (*len)[i] = (size_t)str.len;
    }
    *n = (size_t)cnt;
    return SKV_OK;
}

subkv_status llama_tok_open(const gguf_file *g, llama_tok **out, skv_err *err) {
    if (!g || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama_tok: NULL arg");
    *out = NULL;
    subkv_status st = SKV_OK;
    const char **toks = NULL, **merges = NULL;
    size_t *tlen = NULL, *mlen = NULL, nt = 0, nm = 0;
    int32_t *types = NULL;
    char pre[64] = "gpt2";
    llama_tok *t = calloc(1, sizeof *t);
    if (!t) return skv_set_error(err, SKV_ERR_NOMEM, "llama_tok");
    gguf_str model, p;
    SKV_CHECK_GOTO(gguf_get_str(g, "tokenizer.ggml.model", &model, err), st, done);
    if (!gguf_str_eq(model, "gpt2")) {
        st = skv_set_error(err, SKV_ERR_UNSUPPORTED, "tokenizer model '%.*s' (only gpt2 BPE)",
                           (int)(model.len > 32 ? 32 : model.len), model.ptr);
        goto done;
    }
    if (gguf_find_kv(g, "tokenizer.ggml.pre")) {
        SKV_CHECK_GOTO(gguf_get_str(g, "tokenizer.ggml.pre", &p, err), st, done);
        snprintf(pre, sizeof pre, "%.*s", (int)(p.len > 63 ? 63 : p.len), p.ptr);
    }
    SKV_CHECK_GOTO(str_array(g, "tokenizer.ggml.tokens", &toks, &tlen, &nt, err), st, done);
    if (gguf_find_kv(g, "tokenizer.ggml.merges"))
        SKV_CHECK_GOTO(str_array(g, "tokenizer.ggml.merges", &merges, &mlen, &nm, err), st, done);
    const gguf_kv *tt = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (tt) {
        if (tt->type != GGUF_TYPE_ARRAY || tt->arr_n != nt) {
            st = skv_set_error(err, SKV_ERR_CORRUPT, "token_type is not an array of %zu", nt);
            goto done;
        }
        types = malloc((nt ? nt : 1) * sizeof *types);
        if (!types) {
            st = skv_set_error(err, SKV_ERR_NOMEM, "token types");
            goto done;
        }
        for (size_t i = 0; i < nt; i++) {
            int64_t v;
            SKV_CHECK_GOTO(gguf_arr_i64(tt, i, &v, err), st, done);
            types[i] = (int32_t)(v < INT32_MIN || v > INT32_MAX ? -1 : v);
        }
    }
    SKV_CHECK_GOTO(opt_id(g, "tokenizer.ggml.bos_token_id", &t->bos, err), st, done);
    SKV_CHECK_GOTO(opt_id(g, "tokenizer.ggml.eos_token_id", &t->eos, err), st, done);
    if (gguf_find_kv(g, "tokenizer.ggml.add_bos_token"))
        SKV_CHECK_GOTO(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err), st,
                       done);
    SKV_CHECK_GOTO(skv_bpe_create(toks, tlen, types, nt, merges, mlen, nm, pre, &t->bpe, err), st,
                   done);
done:
    free(toks);
    free(tlen);
    free(merges);
    free(mlen);
    free(types);
    if (st != SKV_OK) {
        llama_tok_free(t);
        return st;
    }
    *out = t;
    return SKV_OK;
}

void llama_tok_free(llama_tok *t) {
    if (!t) return;
    skv_bpe_free(t->bpe);
    free(t);
}

subkv_status llama_tok_encode(const llama_tok *t, const char *text, size_t len, int special,
                              int add_bos, int32_t **ids, size_t *n, skv_err *err) {
    int32_t *raw = NULL;
    size_t k = 0;
    SKV_CHECK(skv_bpe_encode(t->bpe, text, len, special ? SKV_BPE_PARSE_SPECIAL : 0, &raw, &k, NULL,
                             err));
    if (!(add_bos && t->add_bos && t->bos >= 0)) {
        *ids = raw;
        *n = k;
        return SKV_OK;
    }
    int32_t *w = malloc((k + 1) * sizeof *w);
    if (!w) {
        free(raw);
        return skv_set_error(err, SKV_ERR_NOMEM, "token ids");
    }
    w[0] = t->bos;
    memcpy(w + 1, raw, k * sizeof *w);
    free(raw);
    *ids = w;
    *n = k + 1;
    return SKV_OK;
}

int32_t llama_tok_eos(const llama_tok *t) { return t->eos; }

#endif
