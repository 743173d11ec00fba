/*
 * eval_text.h — the pieces of `subkv-eval` (issue 5's evaluation) that need no model: memory
 * fraction -> sketch budget, the retrieval prompts (passkey in Debian text; LongEval "lines")
 * and their answer checker, and the float64 relative error of an attention output.
 */
#ifndef SUBKV_EVAL_TEXT_H
#define SUBKV_EVAL_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

/*
 * Budget of one (layer, kv head) sketch at 1/frac of exact memory: exact's bytes for `tokens`
 * tokens stored as `dtype` (skv_config_max_bytes of an exact sketch with max_tokens = tokens:
 * K and V rows plus the sketch's fixed part) divided by frac (>= 1). 0 when frac == 0.
 */
size_t eval_budget_bytes(int head_dim, skv_dtype dtype, uint64_t tokens, unsigned frac);

/*
 * csr's sparsity at a budget: the largest s of {8, 4, 3, 2} for which a csr sketch of `cfg`
 * (its sinks, window, dtype, head_dim, rope_base as given) with budget_bytes = `budget` holds
 * `tokens` tokens (skv_config_token_cap >= tokens: the max_tokens that cache/csr.c derives,
 * (budget - fixed) / (8 s), covers every token past the sinks and the window). 0 when none
 * does (the budget is below the window and 2 * 8 bytes a coded token). A refreshkv config
 * (full_store = csr) is resolved as it is: its store gets what the budget split leaves it.
 */
int eval_csr_sparsity(const skv_config *cfg, size_t budget, uint64_t tokens);

/* A retrieval prompt: `context` is prefilled exactly, `question` is decoded through the
 * policy teacher-forced, then the answer is generated greedily and checked against `answer`. */
typedef struct eval_prompt {
    char *context;  /* malloc'd */
    char *question; /* malloc'd */
    char answer[24];
    double depth; /* where the needle sits, as a fraction of the context (0 start, 1 end) */
} eval_prompt;
void eval_prompt_free(eval_prompt *p);

/*
 * Passkey: `filler_chars` characters of filler (the filler repeated from its start when
 * shorter; cut at a line end) with the sentence "The pass key is N. Remember it. N is the pass
 * key." inserted at the line end nearest depth * filler_chars. key: the 5-digit N. Returns 0,
 * or -1 (no memory, empty filler, depth outside [0, 1]).
 */
int eval_passkey_prompt(const char *filler, size_t filler_len, size_t filler_chars, double depth,
                        unsigned key, eval_prompt *out);

/*
 * LongEval lines: n_lines lines "line <w1>-<w2>: REGISTER_CONTENT is <N>" with words drawn
 * from words[n_words] and N in [1, 50000] (distinct line names), all from seed; the line asked
 * for is number round(depth * (n_lines - 1)). Returns 0, or -1 (no memory, n_words < 2,
 * n_lines < 1, depth outside [0, 1]).
 */
int eval_lines_prompt(const char *const *words, size_t n_words, size_t n_lines, double depth,
                      uint64_t seed, eval_prompt *out);

/* 1 when the first run of digits in `generated` (skipping leading non-digits) equals answer
 * (all digits); 0 otherwise (no digits, a different or longer number). */
int eval_answer_match(const char *generated, const char *answer);

/*
 * Words of a word list (one per line, e.g. /usr/share/dict/words): those of 3..8 lowercase
 * ASCII letters, malloc'd (*words[*n] pointing into *buf). 0, or -1 with nothing allocated.
 */
int eval_load_words(const char *path, char **buf, char ***words, size_t *n);

/*
 * ||out - ref|| / ||ref|| for one query head (d <= 1024), with ref = softmax(q K^T / sqrt(d)) V
 * computed in float64 over two segments of rows (seg 0 then seg 1, e.g. a prefix and a tail;
 * n[i] may be 0): K[i], V[i] point at the head's first row, `stride` floats between tokens.
 * scores: room for n[0] + n[1] doubles; on return they hold the scaled scores q.k / sqrt(d)
 * (so eval_logsumexp(scores, n[0] + n[1]) is the log of the softmax normalizer).
 * 0 when ref and out are both 0.
 */
double eval_attn_rel_err(const float *q, const float *const K[2], const float *const V[2],
                         const size_t n[2], size_t stride, int d, const float *out, double *scores);

/* log sum_i e^{x_i} in float64, shifted by the max (n >= 1). */
double eval_logsumexp(const double *x, size_t n);

#endif /* SUBKV_EVAL_TEXT_H */
