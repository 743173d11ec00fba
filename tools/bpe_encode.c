/*
 * bpe_encode.c — encoding: special tokens, the PCRE2 pre-tokenizer, and the merge loop.
 * Contract in bpe.h; tables built by bpe.c.
 *
 * Merge loop of one piece (the algorithm of Hugging Face's BPE::merge_word and llama.cpp's
 * llm_tokenizer_bpe): the piece's bytes become symbols in a doubly linked list; every
 * adjacent pair with a merge rule goes into a min-heap keyed (rank, position of the left
 * symbol). Popping the top merges the two symbols into the left one and queues the pairs
 * the new symbol forms with its neighbours. An entry is only (rank, left position): popped,
 * it is current when the pair now at that position has a rule of that same rank, since a
 * rank names one rule (left id, right id). It cannot be an old copy of a pair that came back:
 * a symbol's id changes only when it absorbs its right neighbour, to a strictly longer token,
 * and its right neighbour changes only then, so a (position, ids) pair never recurs. Eight
 * bytes an entry keep a long piece's heap (at most 3 entries a byte) small.
 * Equal ranks pop leftmost first, which is what repeated "merge the best pair, leftmost"
 * gives on a text like "aaa" -> "aa" "a".
 */
#include "bpe_internal.h"

#include <stdlib.h>
#include <string.h>

#include "skv_check.h"
#include "skv_internal.h"

/* A queued pair: the symbol at pos and its right neighbour, under the rule of this rank. */
typedef struct bpe_qitem {
    int32_t rank, pos;
} bpe_qitem;

/* A symbol of the current piece: its token id (-1 once merged into its left neighbour) and
 * the links of the list (-1 at the ends). */
typedef struct bpe_sym {
    int32_t id, prev, next;
} bpe_sym;

/* Per-call state (the tokenizer itself stays read-only, so calls may run concurrently). */
typedef struct bpe_work {
    const skv_bpe *b;
    const char *text; /* start of the whole input, for error offsets */
    unsigned flags;
    pcre2_match_data *md;
    bpe_sym *sym; /* symbols of the current piece */
    size_t sym_cap;
    bpe_qitem *heap;
    size_t heap_cap, heap_n;
    int32_t *out;
    size_t out_n, out_cap;
    size_t dropped;
} bpe_work;

static bool qless(const bpe_qitem *x, const bpe_qitem *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

/* Queue the pair (pos, sym[pos].next) if a merge rule covers it. heap_cap >= 3 * symbols, and
 * at most (symbols - 1) + 2 * merges <= 3 * symbols items are ever queued per piece. */
static void queue_pair(bpe_work *w, int32_t pos) {
    if (pos < 0) return;
    int32_t r = w->sym[pos].next;
    if (r < 0) return;
    const bpe_merge_slot *m = bpe_pair_find(w->b, w->sym[pos].id, w->sym[r].id);
    if (!m) return;
    bpe_qitem it = {m->rank, pos};
    size_t i = w->heap_n++;
    while (i > 0 && qless(&it, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = it;
}

static bpe_qitem pop_pair(bpe_work *w) {
    bpe_qitem top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && qless(&w->heap[c + 1], &w->heap[c])) c++;
        if (!qless(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static subkv_status emit(bpe_work *w, int32_t id, skv_err *err) {
    if (w->out_n == w->out_cap)
        SKV_CHECK(skv_grow((void **)&w->out, &w->out_cap, w->out_n + 1, sizeof *w->out, err));
    w->out[w->out_n++] = id;
    return SKV_OK;
}

/* BPE of one pre-token p[0..len). */
static subkv_status encode_piece(bpe_work *w, const char *p, size_t len, skv_err *err) {
    const skv_bpe *b = w->b;
    if (len > w->sym_cap) {
        size_t hc = w->heap_cap;
        SKV_CHECK(skv_grow((void **)&w->sym, &w->sym_cap, len, sizeof *w->sym, err));
        SKV_CHECK(skv_grow((void **)&w->heap, &hc, 3 * w->sym_cap, sizeof *w->heap, err));
        w->heap_cap = hc;
    }
    int32_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = b->byte_id[(uint8_t)p[i]];
        if (id < 0) {
            if (w->flags & SKV_BPE_STRICT)
                return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                                     "bpe encode: byte 0x%02x at offset %zu has no token",
                                     (unsigned)(uint8_t)p[i], (size_t)(p + i - w->text));
            w->dropped++;
            continue;
        }
        w->sym[n] = (bpe_sym){id, n - 1, n + 1};
        n++;
    }
    if (n == 0) return SKV_OK;
    w->sym[n - 1].next = -1;
    w->heap_n = 0;
    for (int32_t i = 0; i + 1 < n; i++) queue_pair(w, i);
    while (w->heap_n > 0) {
        bpe_qitem q = pop_pair(w);
        bpe_sym *l = &w->sym[q.pos];
        if (l->id < 0 || l->next < 0) continue; /* stale: merged away, or now last */
        bpe_sym *r = &w->sym[l->next];
        const bpe_merge_slot *m = bpe_pair_find(w->b, l->id, r->id);
        if (!m || m->rank != q.rank) continue; /* stale: another pair there now */
        l->id = m->id;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = q.pos;
        r->id = -1;
        queue_pair(w, l->prev);
        queue_pair(w, q.pos);
    }
    /* Symbol 0 never dies (it has no left neighbour to die into). */
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) SKV_CHECK(emit(w, w->sym[i].id, err));
    return SKV_OK;
}

/* Run one PCRE2 pattern from off: SKV_OK with *found and the match [*ms, *me), or an error. */
static subkv_status find(bpe_work *w, const pcre2_code *re, const char *s, size_t len, size_t off,
                         bool *found, size_t *ms, size_t *me, skv_err *err) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, off, 0, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) {
        *found = false;
        return SKV_OK;
    }
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return skv_set_error(err, SKV_ERR_INTERNAL, "bpe encode: PCRE2 match failed at %zu: %s",
                             (size_t)(s + off - w->text), (const char *)msg);
    }
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    *found = true;
    *ms = ov[0];
    *me = ov[1];
    return SKV_OK;
}

/* GPT-2's expression over s[0..len) (the subject ends there, so (?!\S) sees the end). Text
 * between matches (only bytes that are not UTF-8) is a piece of its own. */
static subkv_status split_words(bpe_work *w, const char *s, size_t len, skv_err *err) {
    size_t off = 0;
    while (off < len) {
        bool found;
        size_t ms = len, me = len;
        SKV_CHECK(find(w, w->b->re_word, s, len, off, &found, &ms, &me, err));
        if (!found) ms = me = len;
        if (ms > off) SKV_CHECK(encode_piece(w, s + off, ms - off, err));
        if (me == ms && ms < len) me = ms + 1; /* every alternative consumes; never loop */
        if (me > ms) SKV_CHECK(encode_piece(w, s + ms, me - ms, err));
        off = me;
    }
    return SKV_OK;
}

/* Pre-tokenize and encode a stretch without special tokens. */
static subkv_status encode_plain(bpe_work *w, const char *s, size_t len, skv_err *err) {
    if (w->b->pre == BPE_PRE_GPT2) return split_words(w, s, len, err);
    /* Digits isolated first: every \p{N} character is a piece; the runs between are split
     * by the second expression on their own (Hugging Face's Sequence[Digits, ByteLevel]). */
    size_t off = 0;
    while (off < len) {
        bool found;
        size_t ds = len, de = len;
        SKV_CHECK(find(w, w->b->re_digit, s, len, off, &found, &ds, &de, err));
        if (!found) ds = de = len;
        if (ds > off) SKV_CHECK(split_words(w, s + off, ds - off, err));
        if (de > ds) SKV_CHECK(encode_piece(w, s + ds, de - ds, err));
        off = de > off ? de : len;
    }
    return SKV_OK;
}

/* The longest special token allowed by the flags that starts at s[0..len), or -1. */
static int32_t match_special(const skv_bpe *b, const char *s, size_t len, unsigned flags,
                             size_t *mlen) {
    uint8_t c = (uint8_t)s[0];
    for (uint32_t k = b->special_start[c]; k < b->special_start[c + 1]; k++) {
        int32_t id = b->special[k];
        if (!(flags & SKV_BPE_PARSE_SPECIAL) && b->type[id] != SKV_BPE_TYPE_USER_DEFINED) continue;
        size_t tl = b->text_off[id + 1] - b->text_off[id];
        if (tl <= len && memcmp(s, b->text + b->text_off[id], tl) == 0) {
            *mlen = tl;
            return id;
        }
    }
    return -1;
}

subkv_status skv_bpe_encode(const skv_bpe *b, const char *text, size_t len, unsigned flags,
                            int32_t **ids, size_t *n_ids, size_t *n_dropped, skv_err *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (n_dropped) *n_dropped = 0;
    if (!b || !ids || !n_ids || (!text && len))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "bpe encode: NULL argument");
    subkv_status st = SKV_OK;
    bpe_work w = {.b = b, .text = text, .flags = flags};
    w.md = pcre2_match_data_create(1, NULL);
    if (!w.md) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "bpe encode: no memory for match data");
        goto done;
    }
    /* A first guess of the output: about one token per four bytes of English text. */
    SKV_CHECK_GOTO(skv_grow((void **)&w.out, &w.out_cap, len / 4 + 16, sizeof *w.out, err), st,
                   done);
    size_t start = 0; /* first byte not yet encoded */
    for (size_t i = 0; i < len;) {
        uint8_t c = (uint8_t)text[i];
        size_t ml = 0;
        int32_t id = b->special_start[c] == b->special_start[c + 1]
                         ? -1
                         : match_special(b, text + i, len - i, flags, &ml);
        if (id < 0) {
            i++;
            continue;
        }
        if (i > start) SKV_CHECK_GOTO(encode_plain(&w, text + start, i - start, err), st, done);
        SKV_CHECK_GOTO(emit(&w, id, err), st, done);
        i += ml;
        start = i;
    }
    if (len > start) SKV_CHECK_GOTO(encode_plain(&w, text + start, len - start, err), st, done);
    *ids = w.out;
    *n_ids = w.out_n;
    w.out = NULL;
    if (n_dropped) *n_dropped = w.dropped;
done:
    pcre2_match_data_free(w.md);
    free(w.out);
    free(w.sym);
    free(w.heap);
    return st;
}
