/*
 * llama_cli.h — what the model programs (subkv-generate, subkv-perplexity, subkv-trace) share:
 * the common options, model + attention backend + session set-up, token-list input and the
 * detokeniser (GGUF vocabulary, GPT-2 byte-level pieces back to bytes).
 *
 * Common options (each program's --help lists them):
 *   --model PATH           GGUF (default data/SmolLM2-135M-Instruct.Q4_1.gguf)
 *   --attention local|service   where the sketches live (default local)
 *   --addr ADDR --token T  the service (default SUBKV_ADDR or 127.0.0.1:7439; SUBKV_TOKEN)
 *   --policy P             exact | sinkwin | h2o | subgen | refreshkv | csr (default exact)
 *   --budget BYTES         per (layer, kv head) sketch, K/M/G suffixes (default 0: raw params)
 *   --dtype T              f32 | f16 | bf16 storage of keys and values (default f32)
 *   --values V             subgen: l2 | cluster
 *   --seed S               sketch RNG seed (default 1)
 *   --tokens LIST          input token ids "1,2,3", or "@FILE" (ids separated by commas or
 *                          whitespace) instead of text
 * Policy knobs (cache/subkv.h's skv_config; each is refused with a policy it does not apply to;
 * left out, the policy's default or what the budget derives):
 *   --sinks N --sketch-window N     sinkwin, subgen, csr (refreshkv with a subgen or csr store)
 *   --partial-tokens K --stride S --threshold T --full-store exact|subgen|csr
 *   --decide layer|group --full-mem host|device   refreshkv
 *   --dict FILE --sparsity S --rope-base B --atoms N
 *                                   csr, refreshkv --full-store csr (--dict required for
 *                                   both). The dictionary is loaded once per
 *                                   run into a registry and bound to every sketch's config
 *                                   (local); the service's workers load it by its absolute path.
 */
#ifndef SUBKV_LLAMA_CLI_H
#define SUBKV_LLAMA_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "csr_dict.h"
#include "llama.h"

#define LCLI_DEFAULT_MODEL "data/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct lcli_opts {
    const char *model, *attention, *addr, *token, *tokens;
    int policy, dtype, values;
    uint64_t budget, seed;
    /* Policy knobs; -1 (NaN for the floats, NULL for dict) = not given. */
    int sinks, window, partial_tokens, stride, full_store, full_mem, decide, sparsity, atoms;
    float threshold, rope_base;
    const char *dict;
} lcli_opts;

void lcli_defaults(lcli_opts *o);
/* The common options' help lines. */
void lcli_usage_common(FILE *f);
/* If argv[*i] is a common option, consume it (and its value): 1; not one: 0; a bad value or a
 * missing one: -1 (a message is printed). */
int lcli_parse_common(lcli_opts *o, int argc, char **argv, int *i);
/* The sketch configuration the options describe (head_dim set by the backend; csr's
 * dict_path copied from --dict, dict not bound). 0, or -1 with a message printed: a knob of
 * another policy, csr without --dict, a --dict path longer than SKV_DICT_PATH_MAX - 1. */
int lcli_policy(const lcli_opts *o, skv_config *cfg);

/* csr: load cfg->dict_path into the registry *dicts (created on first use) and check it fits
 * the model (head_dim, layers) and cfg->rope_base (a pre-rotary set needs rope_base > 0, a
 * post-rotary one 0); with `bind`, bind it to cfg (skv_config_bind_dict). 0, or -1 with the
 * reason printed. */
int lcli_dict_load(skv_dicts **dicts, const llama_hparams *hp, skv_config *cfg, int bind);

/* Parse "1,2,3" or "@FILE" into a malloc'd array; 0, or -1 with a message printed. */
int lcli_parse_tokens(const char *spec, int32_t **out, size_t *n);

typedef struct lcli_run {
    llama_model *model;
    llama_attn *attn;
    llama_session *sess;
    skv_dicts *dicts; /* csr dictionaries, loaded once per run (kept across lcli_reset) */
} lcli_run;

/* Load the model and open a fresh backend + session; 0, or -1 with the error printed. */
int lcli_open(const lcli_opts *o, lcli_run *r);
/* A fresh backend + session over the loaded model (the previous ones are destroyed). */
int lcli_reset(const lcli_opts *o, lcli_run *r);
void lcli_close(lcli_run *r);

/*
 * The input's token ids: --tokens when given; else `text` (is_file: the path of a file whose
 * bytes are the text) through the model's tokenizer (llama_tok.h), with control tokens written
 * in the text parsed when `special`. 0, or -1 with the reason printed (no tokenizer in this
 * build, an unreadable file, no tokens).
 */
int lcli_input(const lcli_opts *o, const lcli_run *r, const char *text, int is_file, int special,
               int32_t **ids, size_t *n);

/* Write the bytes of token `id` (the GGUF vocabulary's piece, GPT-2 byte-level decoded) to f;
 * control tokens are written as their piece text. */
void lcli_write_token(const gguf_file *g, int32_t id, FILE *f);

#endif /* SUBKV_LLAMA_CLI_H */
