/*
 * bpe.c — building the byte-level BPE tokenizer's tables from a GGUF vocabulary, and
 * decoding. Encoding is in bpe_encode.c. Contract in bpe.h.
 *
 * GPT-2 spells a byte string as characters so that vocabularies hold only printable text:
 * bytes_to_unicode() keeps the 188 bytes 0x21..0x7E, 0xA1..0xAC and 0xAE..0xFF as the
 * characters of the same code point and gives the other 68 (controls, space, 0x7F..0xA0,
 * 0xAD) the code points 256, 257, ... in byte order. So "Ġ" (U+0120 = 256 + 32) is the
 * space byte 0x20, and a token's bytes are read back one character at a time.
 */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

#include "skv_check.h"
#include "skv_internal.h"

/* ---- GPT-2's byte <-> character mapping ---------------------------------------------- */

static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* Code point that spells byte b. */
static uint32_t byte_to_cp(unsigned b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0; /* rank of b among the non-printable bytes */
    for (unsigned c = 0; c < b; c++) k += !byte_is_printable(c);
    return 256 + k;
}

/* Byte spelled by code point cp, or -1 when cp spells none. */
static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_printable(c) && k-- == 0) return (int)c;
    return -1;
}

/* UTF-8 of a code point below 0x800 (all the mapping needs); returns the length. */
static size_t utf8_put(uint32_t cp, char out[2]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* Decode one UTF-8 sequence of s[0..len) (len >= 1): its code point and length, or
 * cp = UINT32_MAX and length 1 for a byte that does not start a valid sequence. */
static size_t utf8_get(const uint8_t *s, size_t len, uint32_t *cp) {
    uint8_t c = s[0];
    size_t need = c < 0x80             ? 1
                  : (c & 0xe0) == 0xc0 ? 2
                  : (c & 0xf0) == 0xe0 ? 3
                  : (c & 0xf8) == 0xf0 ? 4
                                       : 0;
    *cp = UINT32_MAX;
    if (need == 0 || need > len) return 1;
    uint32_t v = need == 1 ? c : need == 2 ? (c & 0x1fu) : need == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) return 1;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_cp[need] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 1;
    *cp = v;
    return need;
}

/* ---- token string -> id ---------------------------------------------------------------- */

static bool tok_equal(const skv_bpe *b, int32_t id, const char *s, size_t len) {
    size_t off = b->text_off[id], tl = b->text_off[id + 1] - off;
    return tl == len && memcmp(b->text + off, s, len) == 0;
}

int32_t skv_bpe_token_id(const skv_bpe *b, const char *s, size_t len) {
    if (!b || (!s && len)) return -1;
    for (size_t i = bpe_hash_bytes(s, len) & b->tok_mask;; i = (i + 1) & b->tok_mask) {
        int32_t id = b->tok_slots[i];
        if (id < 0) return -1;
        if (tok_equal(b, id, s, len)) return id;
    }
}

/* Insert token id; a string already present is SKV_ERR_CORRUPT. */
static subkv_status tok_insert(skv_bpe *b, int32_t id, skv_err *err) {
    const char *s = b->text + b->text_off[id];
    size_t len = b->text_off[id + 1] - b->text_off[id];
    for (size_t i = bpe_hash_bytes(s, len) & b->tok_mask;; i = (i + 1) & b->tok_mask) {
        int32_t other = b->tok_slots[i];
        if (other < 0) {
            b->tok_slots[i] = id;
            return SKV_OK;
        }
        if (tok_equal(b, other, s, len))
            return skv_set_error(err, SKV_ERR_CORRUPT, "token %d duplicates token %d ('%.*s')",
                                 (int)id, (int)other, (int)(len > 60 ? 60 : len), s);
    }
}

/* Smallest power of two >= 2 * count (a load factor of at most one half), at least 2. */
static size_t table_size(size_t count) {
    size_t cap = 2;
    while (cap < 2 * count) cap *= 2;
    return cap;
}

/* ---- construction ---------------------------------------------------------------------- */

static bool type_is_literal(int t) {
    return t == SKV_BPE_TYPE_UNKNOWN || t == SKV_BPE_TYPE_CONTROL || t == SKV_BPE_TYPE_USER_DEFINED;
}

/* Copy the token strings, types and their decoded bytes; index the strings. */
static subkv_status build_vocab(skv_bpe *b, const char *const *tokens, const size_t *tok_lens,
                                const int32_t *types, skv_err *err) {
    size_t n = b->n, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tokens[i])
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "token %zu is a NULL string", i);
        total += tok_lens ? tok_lens[i] : strlen(tokens[i]);
    }
    b->text = malloc(total ? total : 1);
    b->piece = malloc(total ? total : 1); /* a token never decodes to more bytes than it has */
    b->text_off = malloc((n + 1) * sizeof *b->text_off);
    b->piece_off = malloc((n + 1) * sizeof *b->piece_off);
    b->type = malloc(n);
    b->tok_mask = table_size(n) - 1;
    b->tok_slots = malloc((b->tok_mask + 1) * sizeof *b->tok_slots);
    if (!b->text || !b->piece || !b->text_off || !b->piece_off || !b->type || !b->tok_slots)
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a vocabulary of %zu tokens", n);
    memset(b->tok_slots, 0xff, (b->tok_mask + 1) * sizeof *b->tok_slots);

    size_t off = 0, poff = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = tok_lens ? tok_lens[i] : strlen(tokens[i]);
        int t = types ? types[i] : SKV_BPE_TYPE_NORMAL;
        if (t < SKV_BPE_TYPE_UNDEFINED || t > SKV_BPE_TYPE_BYTE)
            return skv_set_error(err, SKV_ERR_CORRUPT, "token %zu has type %d (known: 0..6)", i, t);
        b->type[i] = (uint8_t)t;
        b->text_off[i] = off;
        memcpy(b->text + off, tokens[i], len);
        b->piece_off[i] = poff;
        if (type_is_literal(t)) {
            memcpy(b->piece + poff, tokens[i], len);
            poff += len;
        } else {
            /* Each character spells one byte; one that spells none (not in the mapping, or
             * not UTF-8) is kept as it is written, as Hugging Face's ByteLevel decoder does. */
            const uint8_t *s = (const uint8_t *)tokens[i];
            for (size_t k = 0; k < len;) {
                uint32_t cp;
                size_t cl = utf8_get(s + k, len - k, &cp);
                int byte = cp == UINT32_MAX ? -1 : cp_to_byte(cp);
                if (byte >= 0) {
                    b->piece[poff++] = (char)byte;
                } else {
                    memcpy(b->piece + poff, s + k, cl);
                    poff += cl;
                }
                k += cl;
            }
        }
        off += len;
        b->text_off[i + 1] = off; /* the string's end, for the lookup */
        b->piece_off[i + 1] = poff;
        SKV_CHECK(tok_insert(b, (int32_t)i, err));
    }

    for (unsigned c = 0; c < 256; c++) {
        char sp[2];
        int32_t id = skv_bpe_token_id(b, sp, utf8_put(byte_to_cp(c), sp));
        b->byte_id[c] = (id >= 0 && !type_is_literal(b->type[id])) ? id : -1;
    }
    return SKV_OK;
}

/* Parse the merge list into the pair table. */
static subkv_status build_merges(skv_bpe *b, const char *const *merges, const size_t *merge_lens,
                                 size_t m, skv_err *err) {
    b->pair_mask = table_size(m) - 1;
    b->pair = malloc((b->pair_mask + 1) * sizeof *b->pair);
    if (!b->pair) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu merges", m);
    for (size_t i = 0; i <= b->pair_mask; i++) b->pair[i].key = BPE_EMPTY_KEY;

    char *cat = NULL;
    size_t cat_cap = 0;
    subkv_status st = SKV_OK;
    for (size_t r = 0; r < m; r++) {
        const char *s = merges[r];
        if (!s) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG, "merge %zu is a NULL string", r);
            goto done;
        }
        size_t len = merge_lens ? merge_lens[r] : strlen(s);
        int shown = (int)(len > 60 ? 60 : len);
        /* The separator is the first space after the first byte (llama.cpp's rule; byte-level
         * tokens never contain a space, which they spell "Ġ"). */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp || sp + 1 == s + len) {
            st = skv_set_error(err, SKV_ERR_CORRUPT, "merge %zu ('%.*s') is not 'LEFT RIGHT'", r,
                               shown, s);
            goto done;
        }
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        int32_t left = skv_bpe_token_id(b, s, ll), right = skv_bpe_token_id(b, sp + 1, rl);
        if (left < 0 || right < 0) {
            st =
                skv_set_error(err, SKV_ERR_CORRUPT, "merge %zu ('%.*s') names unknown token '%.*s'",
                              r, shown, s, left < 0 ? (int)ll : (int)rl, left < 0 ? s : sp + 1);
            goto done;
        }
        SKV_CHECK_GOTO(skv_grow((void **)&cat, &cat_cap, ll + rl, 1, err), st, done);
        memcpy(cat, s, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t merged = skv_bpe_token_id(b, cat, ll + rl);
        if (merged < 0) {
            st = skv_set_error(err, SKV_ERR_CORRUPT,
                               "merge %zu ('%.*s'): the merged string is not a token", r, shown, s);
            goto done;
        }
        uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        size_t i = bpe_hash_pair(key, b->pair_mask);
        while (b->pair[i].key != BPE_EMPTY_KEY && b->pair[i].key != key) i = (i + 1) & b->pair_mask;
        if (b->pair[i].key == key) {
            st = skv_set_error(err, SKV_ERR_CORRUPT, "merge %zu ('%.*s') repeats merge %d", r,
                               shown, s, (int)b->pair[i].rank);
            goto done;
        }
        b->pair[i] = (bpe_merge_slot){key, (int32_t)r, merged};
    }
done:
    free(cat);
    return st;
}

/* One entry of the special-token table while it is sorted. */
typedef struct special_key {
    size_t len;
    int32_t id;
    uint8_t first;
} special_key;

/* First byte, then longer first, then id: at a position the first hit is the longest. */
static int special_cmp(const void *pa, const void *pb) {
    const special_key *x = pa, *y = pb;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Control/unknown/user-defined tokens (the ones matched literally), by first byte. */
static subkv_status build_specials(skv_bpe *b, skv_err *err) {
    size_t count = 0;
    for (size_t i = 0; i < b->n; i++)
        count += type_is_literal(b->type[i]) && b->text_off[i + 1] > b->text_off[i];
    b->special = malloc((count ? count : 1) * sizeof *b->special);
    special_key *keys = malloc((count ? count : 1) * sizeof *keys);
    if (!b->special || !keys) {
        free(keys);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu special tokens", count);
    }
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        size_t len = b->text_off[i + 1] - b->text_off[i];
        if (type_is_literal(b->type[i]) && len > 0)
            keys[k++] = (special_key){len, (int32_t)i, (uint8_t)b->text[b->text_off[i]]};
    }
    qsort(keys, count, sizeof *keys, special_cmp);
    memset(b->special_start, 0, sizeof b->special_start);
    for (size_t i = 0; i < count; i++) {
        b->special[i] = keys[i].id;
        b->special_start[keys[i].first + 1]++;
    }
    for (int c = 0; c < 256; c++) b->special_start[c + 1] += b->special_start[c];
    free(keys);
    return SKV_OK;
}

/* Compile one pattern (JIT when the library has it; the interpreter otherwise). */
static subkv_status compile(const char *pattern, pcre2_code **out, skv_err *err) {
    int code;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return skv_set_error(err, SKV_ERR_INTERNAL, "PCRE2 rejects '%s' at %zu: %s", pattern,
                             (size_t)at, (const char *)msg);
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* a failure keeps the interpreter */
    return SKV_OK;
}

/* GPT-2's expression with \s widened to Unicode White_Space: PCRE2's \s (with UCP: Z plus
 * \t\n\v\f\r) lacks U+0085, which Oniguruma (Hugging Face) and llama.cpp count as space. */
#define WS "\\s\\x{85}"
static const char GPT2_WORD[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

static const struct {
    const char *name;
    bpe_pre pre;
} PRE_TYPES[] = {
    {"smollm", BPE_PRE_DIGITS_GPT2},
    {"starcoder", BPE_PRE_DIGITS_GPT2},
    {"gpt2", BPE_PRE_GPT2},
};

subkv_status skv_bpe_create(const char *const *tokens, const size_t *tok_lens, const int32_t *types,
                            size_t n, const char *const *merges, const size_t *merge_lens, size_t m,
                            const char *pre_type, skv_bpe **out, skv_err *err) {
    if (!out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "bpe create: out is NULL");
    *out = NULL;
    if (!tokens || (!merges && m) || !pre_type)
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "bpe create: tokens, merges or pre_type "
                             "is NULL");
    if (n == 0 || n > INT32_MAX)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "bpe create: %zu tokens (need 1..%d)", n,
                             INT32_MAX);
    size_t p = 0, np = sizeof PRE_TYPES / sizeof PRE_TYPES[0];
    while (p < np && strcmp(PRE_TYPES[p].name, pre_type) != 0) p++;
    if (p == np)
        return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                             "unknown pre-tokenizer type '%.60s' (known: smollm, starcoder, gpt2)",
                             pre_type);

    subkv_status st = SKV_OK;
    skv_bpe *b = calloc(1, sizeof *b);
    if (!b) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for a tokenizer");
    b->n = n;
    b->pre = PRE_TYPES[p].pre;
    SKV_CHECK_GOTO(build_vocab(b, tokens, tok_lens, types, err), st, fail);
    SKV_CHECK_GOTO(build_merges(b, merges, merge_lens, m, err), st, fail);
    SKV_CHECK_GOTO(build_specials(b, err), st, fail);
    SKV_CHECK_GOTO(compile("\\p{N}", &b->re_digit, err), st, fail);
    SKV_CHECK_GOTO(compile(GPT2_WORD, &b->re_word, err), st, fail);
    *out = b;
    return SKV_OK;
fail:
    skv_bpe_free(b);
    return st;
}

void skv_bpe_free(skv_bpe *b) {
    if (!b) return;
    pcre2_code_free(b->re_digit);
    pcre2_code_free(b->re_word);
    free(b->special);
    free(b->pair);
    free(b->tok_slots);
    free(b->type);
    free(b->piece_off);
    free(b->text_off);
    free(b->piece);
    free(b->text);
    free(b);
}

/* ---- decoding and accessors ------------------------------------------------------------ */

size_t skv_bpe_n_tokens(const skv_bpe *b) { return b ? b->n : 0; }

const char *skv_bpe_piece(const skv_bpe *b, int32_t id, size_t *len) {
    if (!b || id < 0 || (size_t)id >= b->n) return NULL;
    if (len) *len = b->piece_off[id + 1] - b->piece_off[id];
    return b->piece + b->piece_off[id];
}

int skv_bpe_token_type(const skv_bpe *b, int32_t id) {
    return (!b || id < 0 || (size_t)id >= b->n) ? -1 : b->type[id];
}

subkv_status skv_bpe_decode(const skv_bpe *b, const int32_t *ids, size_t n, char **text,
                            size_t *len, skv_err *err) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!b || (!ids && n) || !text || !len)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "bpe decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= b->n)
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "bpe decode: id %d at position %zu is outside [0, %zu)",
                                 (int)ids[i], i, b->n);
        total += b->piece_off[ids[i] + 1] - b->piece_off[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s) return skv_set_error(err, SKV_ERR_NOMEM, "bpe decode: no memory for %zu bytes", total);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl = b->piece_off[ids[i] + 1] - b->piece_off[ids[i]];
        memcpy(s + off, b->piece + b->piece_off[ids[i]], pl);
        off += pl;
    }
    s[off] = '\0';
    *text = s;
    *len = off;
    return SKV_OK;
}
