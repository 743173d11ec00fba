/*
 * test_bpe.c — the byte-level BPE tokenizer (tools/bpe.h) on tiny vocabularies built here
 * (tests/bpe_test_vocab.h: token b spells byte b, so byte ids equal byte values): merges are
 * applied lowest rank first and leftmost among equals; the pre-tokenizer's pieces (per-digit
 * split, contractions, whitespace runs, U+0085 as a space) bound the merges; special tokens
 * follow their flag and the longest match; every malformed vocabulary is refused with its
 * code; decode(encode(x)) == x on random UTF-8, random bytes and a Debian text; a byte
 * without a token is dropped and counted, or refused with SKV_BPE_STRICT.
 * SmolLM2's own vocabulary is tested by test_bpe_model.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include "bpe_test_util.h"

static bt_vocab g_v; /* scratch vocabulary (large: static rather than on the stack) */

static void test_bpe_lower_rank_merges_first(void **state) {
    (void)state;
    bt_init(&g_v);
    int32_t bc = bt_merge(&g_v, "b", "c"), ab = bt_merge(&g_v, "a", "b");
    skv_bpe *b = bt_make(&g_v, "smollm");
    EXPECT(b, "abc", 0, 'a', bc);
    EXPECT(b, "ab", 0, ab);
    skv_bpe_free(b);

    bt_init(&g_v); /* the same two rules, the other order */
    ab = bt_merge(&g_v, "a", "b");
    bc = bt_merge(&g_v, "b", "c");
    b = bt_make(&g_v, "smollm");
    EXPECT(b, "abc", 0, ab, 'c');
    skv_bpe_free(b);

    /* Rank beats position: in "aab" the pair (a,b) at 1 has rank 0, (a,a) at 0 rank 1. */
    bt_init(&g_v);
    ab = bt_merge(&g_v, "a", "b");
    bt_merge(&g_v, "a", "a");
    b = bt_make(&g_v, "smollm");
    EXPECT(b, "aab", 0, 'a', ab);
    skv_bpe_free(b);
}

static void test_bpe_equal_ranks_merge_leftmost(void **state) {
    (void)state;
    bt_init(&g_v);
    int32_t aa = bt_merge(&g_v, "a", "a");
    skv_bpe *b = bt_make(&g_v, "smollm");
    EXPECT(b, "aaa", 0, aa, 'a');
    EXPECT(b, "aaaaa", 0, aa, aa, 'a');
    skv_bpe_free(b);

    int32_t aaaa = bt_merge(&g_v, "aa", "aa");
    b = bt_make(&g_v, "smollm");
    EXPECT(b, "aaaa", 0, aaaa);
    EXPECT(b, "aaaaaa", 0, aaaa, aa);
    EXPECT(b, "aaaaaaa", 0, aaaa, aa, 'a');
    skv_bpe_free(b);
}

static void test_bpe_pieces_bound_the_merges(void **state) {
    (void)state;
    bt_init(&g_v);
    int32_t sp1 = bt_merge(&g_v, " ", "1"), d12 = bt_merge(&g_v, "1", "2");
    int32_t spb = bt_merge(&g_v, " ", "b"), aps = bt_merge(&g_v, "'", "s");
    bt_merge(&g_v, "t", "'"); /* never applies: "'s" is a piece of its own */
    int32_t xy = bt_merge(&g_v, "x", "y"), bang = bt_merge(&g_v, "!", "\xc2");
    int32_t sps = bt_merge(&g_v, " ", " ");
    skv_bpe *sm = bt_make(&g_v, "smollm"), *g2 = bt_make(&g_v, "gpt2");

    /* smollm isolates every digit; gpt2 keeps " ?\p{N}+" together. */
    EXPECT(sm, " 12", 0, ' ', '1', '2');
    EXPECT(g2, " 12", 0, sp1, '2');
    EXPECT(sm, "12", 0, '1', '2');
    EXPECT(g2, "12", 0, d12);
    EXPECT(sm, "x\xd9\xa3y", 0, 'x', 0xd9, 0xa3, 'y'); /* U+0663 ARABIC-INDIC THREE is \p{N} */

    EXPECT(sm, "it's", 0, 'i', 't', aps);
    EXPECT(sm, "IT'S", 0, 'I', 'T', '\'', 'S'); /* the contractions are lower case only */
    /* A run of spaces gives its last one to the next word; trailing spaces stay together. */
    EXPECT(sm, "a  b", 0, 'a', ' ', spb);
    EXPECT(sm, "a \n b", 0, 'a', ' ', '\n', spb);
    EXPECT(sm, "b   ", 0, 'b', sps, ' ');
    EXPECT(sm, "xy!xy", 0, xy, '!', xy);
    EXPECT(sm, "\xc3\xa9xy", 0, 0xc3, 0xa9, xy); /* é is a letter: one piece with "xy" */
    /* U+0085 (C2 85) is white space (as in Oniguruma), so "!" and it are two pieces and the
     * rule "! \xc2" cannot apply; "!\xc2\xa1" (U+00A1, punctuation) is one piece. */
    EXPECT(sm, "!\xc2\x85", 0, '!', 0xc2, 0x85);
    EXPECT(sm, "!\xc2\xa1", 0, bang, 0xa1);
    skv_bpe_free(sm);
    skv_bpe_free(g2);
}

static void test_bpe_special_tokens_follow_flag_and_longest_match(void **state) {
    (void)state;
    bt_init(&g_v);
    int32_t x = bt_add_token(&g_v, "<|x|>", SKV_BPE_TYPE_CONTROL);
    int32_t xyy = bt_add_token(&g_v, "<|x|>yy", SKV_BPE_TYPE_CONTROL);
    int32_t u = bt_add_token(&g_v, "[U]", SKV_BPE_TYPE_USER_DEFINED);
    skv_bpe *b = bt_make(&g_v, "smollm");
    EXPECT(b, "a<|x|>b", SKV_BPE_PARSE_SPECIAL, 'a', x, 'b');
    EXPECT(b, "a<|x|>b", 0, 'a', '<', '|', 'x', '|', '>', 'b');
    EXPECT(b, "<|x|>yy<|x|>y", SKV_BPE_PARSE_SPECIAL, xyy, x, 'y');
    EXPECT(b, "q[U]q", 0, 'q', u, 'q'); /* user-defined tokens match without the flag */
    EXPECT(b, "<|x|", SKV_BPE_PARSE_SPECIAL, '<', '|', 'x', '|');
    assert_int_equal(skv_bpe_token_id(b, "<|x|>", 5), x);
    assert_int_equal(skv_bpe_token_id(b, "<|x", 3), -1);
    assert_int_equal(skv_bpe_token_type(b, x), SKV_BPE_TYPE_CONTROL);
    assert_int_equal(skv_bpe_token_type(b, -1), -1);
    /* Specials decode as their text; byte tokens through the byte spelling. */
    const int32_t ids[] = {x, ' ', u, 0x00, 0xff};
    char *out = NULL;
    size_t len = 0;
    skv_err err = {0};
    TU_OK(skv_bpe_decode(b, ids, 5, &out, &len, &err), &err);
    assert_int_equal(len, 5 + 1 + 3 + 2);
    assert_memory_equal(out, "<|x|> [U]\0\xff", len);
    size_t pl = 0;
    assert_memory_equal(skv_bpe_piece(b, ' ', &pl), " ", 1);
    assert_int_equal(pl, 1);
    assert_null(skv_bpe_piece(b, (int32_t)skv_bpe_n_tokens(b), &pl));
    free(out);
    skv_bpe_free(b);
}

/* Create from g_v plus one raw merge string; returns the status and checks the message. */
static subkv_status create_status(const char *extra_merge, const char *pre, const char *needle) {
    const char *merges[BT_MAX_MERGES + 1];
    size_t m = g_v.m;
    for (size_t i = 0; i < m; i++) merges[i] = g_v.merge_ptr[i];
    if (extra_merge) merges[m++] = extra_merge;
    skv_bpe *b = (skv_bpe *)&g_v; /* must come back NULL */
    skv_err err = {0};
    subkv_status st =
        skv_bpe_create(g_v.tok_ptr, NULL, g_v.type, g_v.n, merges, NULL, m, pre, &b, &err);
    assert_null(b);
    assert_int_equal(err.code, st);
    if (needle && !strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
    return st;
}

static void test_bpe_bad_vocabularies_are_refused(void **state) {
    (void)state;
    bt_init(&g_v);
    bt_merge(&g_v, "a", "b");
    assert_int_equal(create_status("a zz", "smollm", "unknown token 'zz'"), SKV_ERR_CORRUPT);
    assert_int_equal(create_status("ab", "smollm", "is not 'LEFT RIGHT'"), SKV_ERR_CORRUPT);
    assert_int_equal(create_status("a ", "smollm", "is not 'LEFT RIGHT'"), SKV_ERR_CORRUPT);
    assert_int_equal(create_status("b a", "smollm", "merged string is not a token"),
                     SKV_ERR_CORRUPT);
    assert_int_equal(create_status("a b", "smollm", "repeats merge 0"), SKV_ERR_CORRUPT);
    assert_int_equal(create_status(NULL, "llama3", "unknown pre-tokenizer type 'llama3'"),
                     SKV_ERR_UNSUPPORTED);
    bt_add_token(&g_v, "ab", SKV_BPE_TYPE_NORMAL); /* already there from the merge */
    assert_int_equal(create_status(NULL, "smollm", "duplicates token"), SKV_ERR_CORRUPT);
    g_v.n--;
    g_v.type[3] = 7;
    assert_int_equal(create_status(NULL, "smollm", "token 3 has type 7"), SKV_ERR_CORRUPT);
    g_v.type[3] = SKV_BPE_TYPE_NORMAL;

    skv_bpe *b = NULL;
    skv_err err = {0};
    assert_int_equal(skv_bpe_create(NULL, NULL, NULL, 3, NULL, NULL, 0, "gpt2", &b, &err),
                     SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_bpe_create(g_v.tok_ptr, NULL, NULL, 0, NULL, NULL, 0, "gpt2", &b, &err),
                     SKV_ERR_INVALID_ARG);
    assert_int_equal(
        skv_bpe_create(g_v.tok_ptr, NULL, NULL, g_v.n, NULL, NULL, 1, "gpt2", &b, &err),
        SKV_ERR_INVALID_ARG);
    assert_int_equal(skv_bpe_create(g_v.tok_ptr, NULL, NULL, g_v.n, NULL, NULL, 0, NULL, &b, &err),
                     SKV_ERR_INVALID_ARG);
    assert_int_equal(
        skv_bpe_create(g_v.tok_ptr, NULL, NULL, g_v.n, NULL, NULL, 0, "gpt2", NULL, &err),
        SKV_ERR_INVALID_ARG);
    assert_null(b);
}

/* Token and merge strings given with lengths, not terminated, inside one buffer. */
static void test_bpe_lengths_instead_of_terminators(void **state) {
    (void)state;
    bt_init(&g_v);
    int32_t he = bt_merge(&g_v, "h", "e");
    char buf[BT_MAX_TOKENS * BT_TOK_BYTES + 64];
    const char *tok[BT_MAX_TOKENS], *mer[1];
    size_t tl[BT_MAX_TOKENS], ml[1], off = 0;
    for (size_t i = 0; i < g_v.n; i++) {
        tl[i] = strlen(g_v.tok[i]);
        memcpy(buf + off, g_v.tok[i], tl[i]);
        tok[i] = buf + off;
        off += tl[i];
    }
    ml[0] = 3;
    memcpy(buf + off, "h exyz", 6); /* only "h e" counts */
    mer[0] = buf + off;
    skv_bpe *b = NULL;
    skv_err err = {0};
    TU_OK(skv_bpe_create(tok, tl, NULL, g_v.n, mer, ml, 1, "smollm", &b, &err), &err);
    EXPECT(b, "hex", 0, he, 'x');
    skv_bpe_free(b);
}

static void test_bpe_bad_calls_are_refused(void **state) {
    (void)state;
    bt_english(&g_v);
    skv_bpe *b = bt_make(&g_v, "smollm");
    int32_t *ids = (int32_t *)&g_v;
    size_t n = 7;
    char *out = (char *)&g_v;
    size_t len = 9;
    skv_err err = {0};
    assert_int_equal(skv_bpe_encode(b, NULL, 3, 0, &ids, &n, NULL, &err), SKV_ERR_INVALID_ARG);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_int_equal(skv_bpe_encode(NULL, "a", 1, 0, &ids, &n, NULL, &err), SKV_ERR_INVALID_ARG);
    TU_OK(skv_bpe_encode(b, NULL, 0, 0, &ids, &n, NULL, &err), &err);
    assert_non_null(ids);
    assert_int_equal(n, 0);
    free(ids);
    const int32_t bad[] = {'a', (int32_t)g_v.n, 'b'};
    assert_int_equal(skv_bpe_decode(b, bad, 3, &out, &len, &err), SKV_ERR_INVALID_ARG);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err.msg, "at position 1"));
    const int32_t neg[] = {-1};
    assert_int_equal(skv_bpe_decode(b, neg, 1, &out, &len, &err), SKV_ERR_INVALID_ARG);
    TU_OK(skv_bpe_decode(b, NULL, 0, &out, &len, &err), &err);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
    skv_bpe_free(b);
}

/* A vocabulary without a token for byte 0x04 (token 4 respelled as a word), like SmolLM2's. */
static void test_bpe_missing_byte_is_dropped_or_refused(void **state) {
    (void)state;
    bt_init(&g_v);
    strcpy(g_v.tok[4], "nobyte");
    int32_t bb = bt_merge(&g_v, "!", "!");
    skv_bpe *b = bt_make(&g_v, "smollm");
    /* The piece "!\x04\x04!" loses its middle bytes and "!" "!" then merge, as in Hugging
     * Face, whose BPE skips a character that has no token. */
    EXPECT(b, "a!\x04\x04!b", 0, 'a', bb, 'b');
    expect_round_trip(b, "x\x04y\x04", 4, "xy", 2, 2);
    int32_t *ids = NULL;
    size_t n = 0;
    skv_err err = {0};
    assert_int_equal(skv_bpe_encode(b, "ab c\x04", 5, SKV_BPE_STRICT, &ids, &n, NULL, &err),
                     SKV_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "byte 0x04 at offset 4"));
    assert_null(ids);
    skv_bpe_free(b);
}

static void test_bpe_round_trip_random_utf8(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    bt_english(&g_v);
    skv_bpe *sm = bt_make(&g_v, "smollm"), *g2 = bt_make(&g_v, "gpt2");
    for (int it = 0; it < 300; it++) {
        size_t len;
        char *s = random_utf8(&r, tu_rand_range(&r, 0, 3000), 0, &len);
        expect_round_trip(it % 2 ? sm : g2, s, len, s, len, 0);
        free(s);
    }
    skv_bpe_free(sm);
    skv_bpe_free(g2);
}

/* Arbitrary bytes, invalid UTF-8 included: pieces of their own, every byte back. */
static void test_bpe_round_trip_random_bytes(void **state) {
    (void)state;
    synth_rng r;
    tu_rng_for(&r, __func__);
    bt_english(&g_v);
    skv_bpe *b = bt_make(&g_v, "smollm");
    static const char common[] = " a1\n'<|x>[U]\xc3\xa9\xc2\x85";
    for (int it = 0; it < 300; it++) {
        size_t len = tu_rand_range(&r, 0, 2000);
        char *s = tu_malloc(len);
        for (size_t i = 0; i < len; i++)
            s[i] = (it % 3 == 0 || synth_rng_u64(&r) % 2)
                       ? (char)synth_rng_u64(&r)
                       : common[synth_rng_u64(&r) % (sizeof common - 1)];
        expect_round_trip(b, s, len, s, len, 0);
        /* With specials parsed the bytes come back too ("<|x|>" decodes as itself). */
        int32_t *ids = NULL;
        size_t n = 0, ol = 0;
        char *out = NULL;
        skv_err err = {0};
        TU_OK(skv_bpe_encode(b, s, len, SKV_BPE_PARSE_SPECIAL, &ids, &n, NULL, &err), &err);
        TU_OK(skv_bpe_decode(b, ids, n, &out, &ol, &err), &err);
        assert_int_equal(ol, len);
        assert_memory_equal(out, s, len);
        free(ids);
        free(out);
        free(s);
    }
    skv_bpe_free(b);
}

static void test_bpe_round_trip_debian_text(void **state) {
    (void)state;
    size_t len = 0;
    char *text = read_file(GPL3, &len);
    if (!text) fail_msg("cannot read %s (Debian's base-files)", GPL3);
    bt_english(&g_v);
    skv_bpe *b = bt_make(&g_v, "smollm");
    expect_round_trip(b, text, len, text, len, 0);
    skv_bpe_free(b);
    free(text);
}

/* One piece of 1 MiB ("a" x 2^20) goes through the heap in one go: 2^18 tokens "aaaa". */
static void test_bpe_long_piece(void **state) {
    (void)state;
    bt_init(&g_v);
    bt_merge(&g_v, "a", "a");
    int32_t aaaa = bt_merge(&g_v, "aa", "aa");
    skv_bpe *b = bt_make(&g_v, "smollm");
    size_t len = (size_t)1 << 20;
    char *s = tu_malloc(len);
    memset(s, 'a', len);
    int32_t *ids = NULL;
    size_t n = 0;
    skv_err err = {0};
    TU_OK(skv_bpe_encode(b, s, len, 0, &ids, &n, NULL, &err), &err);
    assert_int_equal(n, len / 4);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], aaaa);
    free(ids);
    memset(s, ' ', len); /* and 1 MiB of spaces: one whitespace piece */
    expect_round_trip(b, s, len, s, len, 0);
    free(s);
    skv_bpe_free(b);
}

int main(void) {
    tu_suite_begin("bpe");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_lower_rank_merges_first),
        cmocka_unit_test(test_bpe_equal_ranks_merge_leftmost),
        cmocka_unit_test(test_bpe_pieces_bound_the_merges),
        cmocka_unit_test(test_bpe_special_tokens_follow_flag_and_longest_match),
        cmocka_unit_test(test_bpe_bad_vocabularies_are_refused),
        cmocka_unit_test(test_bpe_lengths_instead_of_terminators),
        cmocka_unit_test(test_bpe_bad_calls_are_refused),
        cmocka_unit_test(test_bpe_missing_byte_is_dropped_or_refused),
        cmocka_unit_test(test_bpe_round_trip_random_utf8),
        cmocka_unit_test(test_bpe_round_trip_random_bytes),
        cmocka_unit_test(test_bpe_round_trip_debian_text),
        cmocka_unit_test(test_bpe_long_piece),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
