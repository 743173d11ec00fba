/*
 * bpe.h — byte-level BPE tokenizer (GPT-2 style) for GGUF vocabularies with
 * tokenizer.ggml.model = "gpt2", such as SmolLM2's (issue 5).
 *
 * Encoding, as Hugging Face `tokenizers` does for SmolLM2's tokenizer.json:
 *  1. Special tokens written literally in the text ("<|im_start|>") become their own ids:
 *     control and unknown-type tokens with SKV_BPE_PARSE_SPECIAL, user-defined tokens always
 *     (llama.cpp's parse_special rule); at each position the longest one wins, leftmost first.
 *  2. The rest is pre-tokenized with PCRE2 (UTF + UCP). Pre-type "smollm" (also "starcoder",
 *     llama.cpp's group with the same expressions) first isolates every \p{N} character, then
 *     splits each remaining run with GPT-2's expression
 *         's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     where \s is Unicode White_Space (PCRE2's \s plus U+0085, as Oniguruma's is).
 *     Pre-type "gpt2" is the second step alone.
 *  3. Each piece's bytes become byte tokens (GPT-2's bytes_to_unicode spelling), and adjacent
 *     pairs are merged lowest merge rank first, leftmost among equal ranks, until no pair of
 *     the merge list remains (a heap per piece: O(L log L) for a piece of L bytes).
 * A byte whose token the vocabulary lacks (SmolLM2 has none for 0x04, 0x06, 0x13, 0x14, 0x16,
 * 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5..0xFF) is dropped and counted, as Hugging Face drops it;
 * SKV_BPE_STRICT refuses it instead. Bytes that are not valid UTF-8 never match the
 * expression and form pieces of their own, so any byte string encodes, and with a vocabulary
 * that has all 256 byte tokens decode(encode(x)) == x for every x.
 *
 * An skv_bpe is immutable after create: encode and decode may run on many threads at once.
 * Errors follow subkv.h: a status code, and *err filled when err is not NULL.
 */
#ifndef SUBKV_BPE_H
#define SUBKV_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
    SKV_BPE_TYPE_UNDEFINED = 0,
    SKV_BPE_TYPE_NORMAL = 1,
    SKV_BPE_TYPE_UNKNOWN = 2,
    SKV_BPE_TYPE_CONTROL = 3,
    SKV_BPE_TYPE_USER_DEFINED = 4,
    SKV_BPE_TYPE_UNUSED = 5,
    SKV_BPE_TYPE_BYTE = 6,
};

/* Encode flags. */
enum {
    SKV_BPE_PARSE_SPECIAL = 1u << 0, /* match control tokens written in the text            */
    SKV_BPE_STRICT = 1u << 1,        /* a byte without a token is an error, not dropped     */
};

typedef struct skv_bpe skv_bpe;

/*
 * Build a tokenizer from a GGUF vocabulary. Everything is copied: the arrays may be freed
 * after the call.
 *   tokens[n]       token strings as the vocabulary spells them (GPT-2 byte characters for
 *                   normal tokens); tok_lens[n] their byte lengths, or tok_lens = NULL for
 *                   NUL-terminated strings. Id = index.
 *   types[n]        SKV_BPE_TYPE_* per token, or NULL for all normal. Normal, undefined,
 *                   unused and byte tokens decode through the byte mapping; unknown, control
 *                   and user-defined tokens decode as their literal text.
 *   merges[m]       "LEFT RIGHT" strings, rank = index (m may be 0); merge_lens as tok_lens.
 *   pre_type        tokenizer.ggml.pre: "smollm", "starcoder" or "gpt2".
 * Errors: NULL pointers, n == 0 or n > INT32_MAX -> SKV_ERR_INVALID_ARG; unknown pre_type ->
 * SKV_ERR_UNSUPPORTED; a duplicate token string, a type outside 0..6, a merge that is not
 * "LEFT RIGHT", names a token the vocabulary lacks, whose concatenation is not a token, or
 * repeats an earlier pair -> SKV_ERR_CORRUPT (the message names the index);
 * SKV_ERR_NOMEM. On error *out is NULL.
 */
subkv_status skv_bpe_create(const char *const *tokens, const size_t *tok_lens, const int32_t *types,
                            size_t n, const char *const *merges, const size_t *merge_lens, size_t m,
                            const char *pre_type, skv_bpe **out, skv_err *err);

/* Free a tokenizer (NULL is fine). */
void skv_bpe_free(skv_bpe *bpe);

/*
 * Encode len bytes of text (any bytes; NUL is an ordinary byte) into token ids.
 * *ids is a malloc'd array of *n_ids ids (the caller frees it; non-NULL even when
 * *n_ids == 0). n_dropped (may be NULL) receives the number of bytes dropped for lack of a
 * byte token. flags: SKV_BPE_* encode flags.
 * Errors: NULL bpe/ids/n_ids, or text NULL with len > 0 -> SKV_ERR_INVALID_ARG; with
 * SKV_BPE_STRICT a byte without a token -> SKV_ERR_UNSUPPORTED (the message gives its
 * offset); SKV_ERR_NOMEM. On error *ids is NULL and *n_ids 0.
 */
subkv_status skv_bpe_encode(const skv_bpe *bpe, const char *text, size_t len, unsigned flags,
                            int32_t **ids, size_t *n_ids, size_t *n_dropped, skv_err *err);

/*
 * Decode n ids into bytes: *text is malloc'd, *len bytes plus a terminating NUL (the caller
 * frees it). Normal tokens give their bytes, control and user-defined tokens their literal
 * text. Errors: NULL pointers (ids may be NULL when n == 0) -> SKV_ERR_INVALID_ARG; an id
 * outside [0, n_tokens) -> SKV_ERR_INVALID_ARG naming its position; SKV_ERR_NOMEM.
 */
subkv_status skv_bpe_decode(const skv_bpe *bpe, const int32_t *ids, size_t n, char **text,
                            size_t *len, skv_err *err);

/* Number of tokens in the vocabulary. */
size_t skv_bpe_n_tokens(const skv_bpe *bpe);

/* The bytes one token decodes to (not NUL-terminated; valid while bpe lives), *len their
 * count; NULL for an id out of range. For printing generated tokens one at a time. */
const char *skv_bpe_piece(const skv_bpe *bpe, int32_t id, size_t *len);

/* SKV_BPE_TYPE_* of a token; -1 for an id out of range. */
int skv_bpe_token_type(const skv_bpe *bpe, int32_t id);

/* Id of the token spelled exactly text[0..len) in the vocabulary (e.g. "<|im_end|>"), or -1. */
int32_t skv_bpe_token_id(const skv_bpe *bpe, const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SUBKV_BPE_H */
