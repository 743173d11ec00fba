/*
 * eval_docs.h — subkv-eval's texts: a list file naming one text file per line (bench/eval.sh
 * renders Debian man pages into them), each tokenized whole, and windows of L tokens cut from
 * their concatenation.
 */
#ifndef SUBKV_EVAL_DOCS_H
#define SUBKV_EVAL_DOCS_H

#include <stddef.h>
#include <stdint.h>

#include "llama_tok.h"

enum { EVAL_MAX_DOCS = 64 };

typedef struct eval_docs {
    char *names[EVAL_MAX_DOCS]; /* paths as listed */
    int32_t *ids[EVAL_MAX_DOCS];
    size_t n_ids[EVAL_MAX_DOCS];
    char *text_last; /* the last document's text (the passkey filler) */
    size_t text_last_len;
    int n;
} eval_docs;

/* Read a whole file into a NUL-terminated malloc'd buffer (*len bytes); NULL on failure. */
char *eval_read_file(const char *path, size_t *len);

/* Tokenize every file the list names (no BOS; at most EVAL_MAX_DOCS). 0, or -1 with the
 * reason printed and nothing kept. */
int eval_docs_load(const char *list, const llama_tok *tok, eval_docs *d);
void eval_docs_free(eval_docs *d);

/* Window w of L tokens: documents w, w+1, ... (cyclically) concatenated until L tokens; the
 * documents' base names joined by '+' go to used. malloc'd; NULL when the texts (four rounds
 * of the list) hold fewer than L tokens or memory is short. */
int32_t *eval_window_ids(const eval_docs *d, int w, uint64_t L, char *used, size_t used_cap);

#endif /* SUBKV_EVAL_DOCS_H */
