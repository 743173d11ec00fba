/*
 * llama_tok.h — the tokenizer of a GGUF model: tokenizer.ggml.{model, pre, tokens, token_type,
 * merges, bos_token_id, eos_token_id, add_bos_token} handed to the byte-level BPE tokenizer
 * (tools/bpe.h, skv_bpe_create).
 *
 * Built without tools/bpe.h (a tree where the tokenizer has not landed), llama_tok_open fails
 * with SKV_ERR_UNSUPPORTED and the programs take token ids (--tokens) only.
 */
#ifndef SUBKV_LLAMA_TOK_H
#define SUBKV_LLAMA_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct llama_tok llama_tok;

/* The tokenizer of g: tokenizer.ggml.model must be "gpt2" (SKV_ERR_UNSUPPORTED otherwise);
 * the vocabulary's errors come from skv_bpe_create. *out: llama_tok_free. */
subkv_status llama_tok_open(const gguf_file *g, llama_tok **out, skv_err *err);
void llama_tok_free(llama_tok *t);

/* Encode text[len] into a malloc'd *ids[*n]. special: control tokens written in the text
 * ("<|im_start|>") become their ids (for chat templates); add_bos: prepend the BOS id when the
 * model asks for it (tokenizer.ggml.add_bos_token). */
subkv_status llama_tok_encode(const llama_tok *t, const char *text, size_t len, int special,
                              int add_bos, int32_t **ids, size_t *n, skv_err *err);

/* End-of-sequence id (-1 when the model has none). */
int32_t llama_tok_eos(const llama_tok *t);

/* 1 when this build has the tokenizer (tools/bpe.h). */
int llama_tok_available(void);

#endif /* SUBKV_LLAMA_TOK_H */
