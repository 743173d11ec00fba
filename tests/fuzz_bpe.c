/*
 * fuzz_bpe.c — libFuzzer harness for the tokenizer's encoder (tools/bpe.h) on the tiny
 * English vocabulary of tests/bpe_test_vocab.h (all 256 byte tokens, some merges, a control
 * and a user-defined token).
 *
 * The first input byte picks the options (bit 0: SKV_BPE_PARSE_SPECIAL, bit 1: pre-type
 * "gpt2" instead of "smollm"); the rest is the text, any bytes. Every input must encode to
 * at most one id per byte, all in range, and decode back to exactly the text. The same text
 * on a second vocabulary that lacks byte 0x04 must decode to the text without its 0x04
 * bytes, report that many dropped, and be refused under SKV_BPE_STRICT exactly when it has
 * one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_test_vocab.h"

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz_bpe: " __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

/* The tokenizers, built on the first input and kept (read-only afterwards). */
static skv_bpe *g_tok[2][2]; /* [lacks 0x04][gpt2] */

static void build(void) {
    static bt_vocab v;
    for (int lacks = 0; lacks < 2; lacks++) {
        bt_english(&v);
        if (lacks) strcpy(v.tok[4], "nobyte");
        for (int g2 = 0; g2 < 2; g2++) {
            skv_err e;
            if (bt_create(&v, g2 ? "gpt2" : "smollm", &g_tok[lacks][g2], &e) != SKV_OK)
                FUZZ_FAIL("tiny vocabulary refused: %s", e.msg);
        }
    }
}

/* Encode text, check the ids, decode; returns the decoded bytes (malloc'd). */
static char *encode_decode(const skv_bpe *b, const char *text, size_t len, unsigned flags,
                           size_t *out_len, size_t *dropped) {
    int32_t *ids = NULL;
    size_t n = 0;
    skv_err e;
    if (skv_bpe_encode(b, text, len, flags, &ids, &n, dropped, &e) != SKV_OK)
        FUZZ_FAIL("encode of %zu bytes failed: %s", len, e.msg);
    if (n > len) FUZZ_FAIL("%zu ids for %zu bytes", n, len);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= skv_bpe_n_tokens(b))
            FUZZ_FAIL("id %d at %zu out of range", ids[i], i);
    char *out = NULL;
    if (skv_bpe_decode(b, ids, n, &out, out_len, &e) != SKV_OK)
        FUZZ_FAIL("decode of %zu ids failed: %s", n, e.msg);
    free(ids);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok[0][0]) build();
    if (size == 0) return 0;
    unsigned mode = data[0];
    unsigned flags = (mode & 1) ? SKV_BPE_PARSE_SPECIAL : 0;
    int g2 = (mode >> 1) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1, out_len = 0, dropped = 0;

    char *out = encode_decode(g_tok[0][g2], text, len, flags, &out_len, &dropped);
    if (out_len != len || memcmp(out, text, len) != 0 || dropped != 0)
        FUZZ_FAIL("round trip of %zu bytes gave %zu bytes, %zu dropped", len, out_len, dropped);
    free(out);

    char *want = malloc(len + 1);
    if (!want) FUZZ_FAIL("out of memory");
    size_t kept = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] != 0x04) want[kept++] = text[i];
    out = encode_decode(g_tok[1][g2], text, len, flags, &out_len, &dropped);
    if (out_len != kept || memcmp(out, want, kept) != 0 || dropped != len - kept)
        FUZZ_FAIL("without byte 0x04: %zu bytes back, want %zu; %zu dropped, want %zu", out_len,
                  kept, dropped, len - kept);
    free(out);
    free(want);

    int32_t *ids = NULL;
    size_t n = 0;
    skv_err e;
    subkv_status st =
        skv_bpe_encode(g_tok[1][g2], text, len, flags | SKV_BPE_STRICT, &ids, &n, NULL, &e);
    if ((st == SKV_OK) != (kept == len) || (st != SKV_OK && st != SKV_ERR_UNSUPPORTED))
        FUZZ_FAIL("strict encode with %zu bytes 0x04 returned %s", len - kept,
                  subkv_status_name(st));
    free(ids);
    return 0;
}
