/*
 * eval_opts.h — subkv-eval's options (tools/subkv_eval_main.c has the program's contract).
 */
#ifndef SUBKV_EVAL_OPTS_H
#define SUBKV_EVAL_OPTS_H

#include <stdint.h>

#include "subkv.h"

enum { MAX_LIST = 16 };

typedef struct opts {
    const char *model, *texts, *words, *out, *csr_dict;
    float csr_rope_base;
    uint64_t win_len[MAX_LIST], win_count[MAX_LIST];
    int n_win;
    unsigned fracs[MAX_LIST];
    int n_frac;
    double depths[MAX_LIST], line_depths[MAX_LIST];
    int n_depth, n_line_depth;
    uint64_t tail, err_queries, observe, passkey_tokens, lines, seed;
    int sg_window[MAX_LIST], sg_samples[MAX_LIST], n_sg_window, n_sg_samples; /* subgen knobs */
    int dtype;
    char policies[256];
} opts;

/* Parse argv into *o (defaults first): 0; 1 after --help (usage printed to stdout); 2 on a bad
 * or unknown argument or a missing --texts (the reason and the usage printed to stderr). */
int eval_opts_parse(int argc, char **argv, opts *o);

#endif /* SUBKV_EVAL_OPTS_H */
