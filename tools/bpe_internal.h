/*
 * bpe_internal.h — the tokenizer's tables, shared by bpe.c (create, decode) and
 * bpe_encode.c (pre-tokenizer and merge loop). Not part of the contract (tools/bpe.h).
 */
#ifndef SUBKV_BPE_INTERNAL_H
#define SUBKV_BPE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpe.h"

/* One merge rule in the pair table: (left id, right id) -> (rank, merged id). */
typedef struct bpe_merge_slot {
    uint64_t key; /* (uint64)left << 32 | right; BPE_EMPTY_KEY when free */
    int32_t rank;
    int32_t id;
} bpe_merge_slot;

#define BPE_EMPTY_KEY UINT64_MAX

typedef enum bpe_pre { BPE_PRE_GPT2 = 0, BPE_PRE_DIGITS_GPT2 = 1 } bpe_pre;

struct skv_bpe {
    size_t n;             /* tokens */
    char *text;           /* every token string as given, back to back */
    size_t *text_off;     /* [n + 1]: token i is text[text_off[i], text_off[i + 1]) */
    char *piece;          /* the bytes each token decodes to, back to back */
    size_t *piece_off;    /* [n + 1] */
    uint8_t *type;        /* [n] SKV_BPE_TYPE_* */
    int32_t *tok_slots;   /* string -> id, open addressing; -1 free */
    size_t tok_mask;      /* slots - 1 (a power of two minus one) */
    bpe_merge_slot *pair; /* merge rules, open addressing */
    size_t pair_mask;
    int32_t byte_id[256]; /* token of each byte, -1 when the vocabulary has none */
    /* Tokens matched literally in the text, grouped by first byte, longest first in a group:
     * the ones starting with byte b are special[special_start[b] .. special_start[b + 1]). */
    int32_t *special;
    uint32_t special_start[257];
    bpe_pre pre;
    pcre2_code *re_digit; /* \p{N} */
    pcre2_code *re_word;  /* GPT-2's expression */
};

/* Hash of a byte string (FNV-1a, 64-bit). */
static inline uint64_t bpe_hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* Slot of a pair key: Fibonacci hashing, so the high bits of the product pick the slot. */
static inline size_t bpe_hash_pair(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 29) & mask;
}

/* The merge rule for (left, right), or NULL. */
static inline const bpe_merge_slot *bpe_pair_find(const skv_bpe *b, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (size_t i = bpe_hash_pair(key, b->pair_mask);; i = (i + 1) & b->pair_mask) {
        if (b->pair[i].key == key) return &b->pair[i];
        if (b->pair[i].key == BPE_EMPTY_KEY) return NULL;
    }
}

#endif /* SUBKV_BPE_INTERNAL_H */
