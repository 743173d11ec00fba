/*
 * bpe_test_vocab.h — vocabularies for the tokenizer's test and fuzz harness (test-only,
 * header-only, static inline).
 *
 *  - A tiny byte-level vocabulary built in code: the 256 byte tokens (token b spells byte b,
 *    so its id is b), then whatever merges and special tokens a test adds.
 *  - A minimal GGUF walker that reads tokenizer.ggml.{tokens,token_type,merges,pre} from
 *    the model file. TEST-ONLY: it exists so this suite does not depend on the model
 *    loader (tools/gguf.h); it checks bounds but nothing else of the file.
 *
 * GPT-2's byte spelling is written out here independently of tools/bpe.c, the way
 * bytes_to_unicode() in GPT-2's encoder.py builds it (a list of printable bytes, the rest
 * appended as 256, 257, ...), so a mistake in one is caught by the other.
 */
#ifndef SUBKV_BPE_TEST_VOCAB_H
#define SUBKV_BPE_TEST_VOCAB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"

/* ---- GPT-2 spelling --------------------------------------------------------------------- */

/* cp[b] = code point that spells byte b. */
static inline void bt_byte_table(uint32_t cp[256]) {
    int printable[256] = {0};
    for (int b = '!'; b <= '~'; b++) printable[b] = 1;
    for (int b = 0xa1; b <= 0xac; b++) printable[b] = 1;
    for (int b = 0xae; b <= 0xff; b++) printable[b] = 1;
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) cp[b] = printable[b] ? (uint32_t)b : next++;
}

/* Spell raw bytes the GPT-2 way into out (room for 2 * len + 1); returns the length. */
static inline size_t bt_spell(const char *raw, size_t len, char *out) {
    uint32_t cp[256];
    bt_byte_table(cp);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = cp[(uint8_t)raw[i]];
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xc0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- tiny vocabulary -------------------------------------------------------------------- */

#define BT_MAX_TOKENS 512
#define BT_MAX_MERGES 256
#define BT_TOK_BYTES 48

typedef struct bt_vocab {
    size_t n, m;
    char tok[BT_MAX_TOKENS][BT_TOK_BYTES];
    const char *tok_ptr[BT_MAX_TOKENS];
    int32_t type[BT_MAX_TOKENS];
    char merge[BT_MAX_MERGES][2 * BT_TOK_BYTES + 2];
    const char *merge_ptr[BT_MAX_MERGES];
} bt_vocab;

/* Add a token spelled exactly `spelled` (NUL-terminated) with a type; returns its id. */
static inline int32_t bt_add_token(bt_vocab *v, const char *spelled, int32_t type) {
    if (v->n >= BT_MAX_TOKENS || strlen(spelled) >= BT_TOK_BYTES) abort();
    strcpy(v->tok[v->n], spelled);
    v->tok_ptr[v->n] = v->tok[v->n];
    v->type[v->n] = type;
    return (int32_t)v->n++;
}

/* Id of a spelled token, or -1. */
static inline int32_t bt_find(const bt_vocab *v, const char *spelled) {
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->tok[i], spelled) == 0) return (int32_t)i;
    return -1;
}

/* The 256 byte tokens, ids 0..255 in byte order. */
static inline void bt_init(bt_vocab *v) {
    v->n = v->m = 0;
    for (int b = 0; b < 256; b++) {
        char raw = (char)b, sp[4];
        bt_spell(&raw, 1, sp);
        bt_add_token(v, sp, SKV_BPE_TYPE_NORMAL);
    }
}

/* Append the merge of raw strings left + right (next rank), adding the merged token if it
 * is new; returns the merged token's id. */
static inline int32_t bt_merge(bt_vocab *v, const char *left, const char *right) {
    char l[BT_TOK_BYTES], r[BT_TOK_BYTES], cat[2 * BT_TOK_BYTES];
    if (v->m >= BT_MAX_MERGES || 2 * (strlen(left) + strlen(right)) >= BT_TOK_BYTES) abort();
    bt_spell(left, strlen(left), l);
    bt_spell(right, strlen(right), r);
    snprintf(v->merge[v->m], sizeof v->merge[v->m], "%s %s", l, r);
    v->merge_ptr[v->m] = v->merge[v->m];
    v->m++;
    snprintf(cat, sizeof cat, "%s%s", l, r);
    int32_t id = bt_find(v, cat);
    return id >= 0 ? id : bt_add_token(v, cat, SKV_BPE_TYPE_NORMAL);
}

static inline subkv_status bt_create(const bt_vocab *v, const char *pre, skv_bpe **out,
                                     skv_err *err) {
    return skv_bpe_create(v->tok_ptr, NULL, v->type, v->n, v->merge_ptr, NULL, v->m, pre, out, err);
}

/* A vocabulary with merges for some English, so that random text exercises the merge loop:
 * "Ġt", "th", "the", "he", "Ġthe", "in", "ing", runs of spaces and of
 * "a", digits "12", and two special tokens. */
static inline void bt_english(bt_vocab *v) {
    bt_init(v);
    bt_merge(v, " ", "t");
    bt_merge(v, "t", "h");
    bt_merge(v, "th", "e");
    bt_merge(v, "h", "e");
    bt_merge(v, " t", "he");
    bt_merge(v, "i", "n");
    bt_merge(v, "in", "g");
    bt_merge(v, " ", " ");
    bt_merge(v, "  ", "  ");
    bt_merge(v, "a", "a");
    bt_merge(v, "aa", "aa");
    bt_merge(v, "1", "2");
    bt_merge(v, "e", "r");
    bt_merge(v, " ", "a");
    bt_merge(v, "\xc3", "\xa9"); /* é */
    bt_merge(v, "'", "s");
    bt_merge(v, "\n", "\n");
    bt_add_token(v, "<|x|>", SKV_BPE_TYPE_CONTROL);
    bt_add_token(v, "[U]", SKV_BPE_TYPE_USER_DEFINED);
}

/* ---- TEST-ONLY minimal GGUF walker ------------------------------------------------------- */

typedef struct bt_gguf {
    uint8_t *buf; /* the file's first bytes (the metadata) */
    size_t n, m, n_type;
    const char **tok, **merge;
    size_t *tok_len, *merge_len;
    int32_t *type;
    char pre[64];
} bt_gguf;

typedef struct bt_cur {
    const uint8_t *p, *end;
    int bad;
} bt_cur;

static inline uint64_t bt_rd(bt_cur *c, size_t k) {
    uint64_t v = 0;
    if ((size_t)(c->end - c->p) < k) {
        c->bad = 1;
        c->p = c->end;
        return 0;
    }
    for (size_t i = 0; i < k; i++) v |= (uint64_t)c->p[i] << (8 * i);
    c->p += k;
    return v;
}

static inline const char *bt_rd_str(bt_cur *c, size_t *len) {
    uint64_t l = bt_rd(c, 8);
    if (c->bad || (uint64_t)(c->end - c->p) < l) {
        c->bad = 1;
        *len = 0;
        return "";
    }
    const char *s = (const char *)c->p;
    c->p += l;
    *len = (size_t)l;
    return s;
}

/* Bytes of a scalar GGUF type, 0 for string/array. */
static inline size_t bt_scalar(uint32_t t) {
    static const size_t sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? sz[t] : 0;
}

static inline void bt_gguf_free(bt_gguf *g) {
    free(g->buf);
    free(g->tok);
    free(g->merge);
    free(g->tok_len);
    free(g->merge_len);
    free(g->type);
    memset(g, 0, sizeof *g);
}

/* Read the tokenizer arrays of a GGUF v2/v3 file. 0 on success; with a reason in why, -1 when
 * the file cannot be opened and -2 when it is not a readable GGUF vocabulary. */
static inline int bt_gguf_load(const char *path, bt_gguf *g, char *why, size_t why_len) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(why, why_len, "cannot open %s", path), -1;
    size_t cap = 32u << 20; /* metadata is ~2 MB; the tensors after it are not read */
    g->buf = malloc(cap);
    size_t got = g->buf ? fread(g->buf, 1, cap, f) : 0;
    fclose(f);
    bt_cur c = {g->buf, g->buf + got, 0};
    if (got < 24 || memcmp(g->buf, "GGUF", 4) != 0)
        return snprintf(why, why_len, "%s is not GGUF", path), bt_gguf_free(g), -2;
    c.p += 4;
    uint32_t version = (uint32_t)bt_rd(&c, 4);
    if (version < 2) return snprintf(why, why_len, "GGUF v%u", version), bt_gguf_free(g), -2;
    bt_rd(&c, 8); /* tensors */
    uint64_t kvs = bt_rd(&c, 8);
    uint64_t k = 0;
    for (; k < kvs && !c.bad; k++) {
        size_t kl, sl;
        const char *key = bt_rd_str(&c, &kl);
        uint32_t t = (uint32_t)bt_rd(&c, 4);
#define BT_KEY(s) (kl == strlen(s) && memcmp(key, s, kl) == 0)
        if (t == 8) {
            const char *s = bt_rd_str(&c, &sl);
            if (BT_KEY("tokenizer.ggml.pre"))
                snprintf(g->pre, sizeof g->pre, "%.*s", (int)(sl < 63 ? sl : 63), s);
        } else if (t == 9) {
            uint32_t et = (uint32_t)bt_rd(&c, 4);
            uint64_t cnt = bt_rd(&c, 8);
            int is_tok = BT_KEY("tokenizer.ggml.tokens"), is_mer = BT_KEY("tokenizer.ggml.merges");
            int is_typ = BT_KEY("tokenizer.ggml.token_type");
            if ((is_tok || is_mer) && et == 8 && cnt < (1u << 24)) {
                if (is_tok ? g->tok != NULL : g->merge != NULL) break; /* repeated key */
                const char **s = malloc((cnt + 1) * sizeof *s);
                size_t *l = malloc((cnt + 1) * sizeof *l);
                if (is_tok) {
                    g->tok = s;
                    g->tok_len = l;
                    g->n = (size_t)cnt;
                } else {
                    g->merge = s;
                    g->merge_len = l;
                    g->m = (size_t)cnt;
                }
                if (!s || !l) break;
                for (uint64_t i = 0; i < cnt; i++) s[i] = bt_rd_str(&c, &l[i]);
            } else if (is_typ && et == 5 && cnt < (1u << 24)) {
                if (g->type != NULL) break;
                g->type = malloc((cnt + 1) * sizeof *g->type);
                g->n_type = (size_t)cnt;
                if (!g->type) break;
                for (uint64_t i = 0; i < cnt; i++) g->type[i] = (int32_t)bt_rd(&c, 4);
            } else if (et == 8) {
                for (uint64_t i = 0; i < cnt && !c.bad; i++) bt_rd_str(&c, &sl);
            } else if (bt_scalar(et) && cnt <= (uint64_t)(c.end - c.p) / bt_scalar(et)) {
                c.p += cnt * bt_scalar(et);
            } else {
                c.bad = 1;
            }
        } else if (bt_scalar(t)) {
            bt_rd(&c, bt_scalar(t));
        } else {
            c.bad = 1;
        }
#undef BT_KEY
    }
    if (c.bad || k < kvs || !g->tok || !g->merge || !g->type || g->n_type != g->n || !g->pre[0])
        return snprintf(why, why_len, "%s: tokenizer metadata missing or cut", path),
               bt_gguf_free(g), -2;
    return 0;
}

#endif /* SUBKV_BPE_TEST_VOCAB_H */
