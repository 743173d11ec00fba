/* llama_internal.h — the model struct shared by llama_model.c and llama.c (not public). */
#ifndef SUBKV_LLAMA_INTERNAL_H
#define SUBKV_LLAMA_INTERNAL_H

#include <stdio.h>

#include "llama.h"

/* Row-major float32 weights: a GGUF [in, out] matrix is W[out][in] (y = W x). */
typedef struct llama_layer {
    const float *attn_norm, *ffn_norm; /* [E]                        */
    const float *wq, *wo;              /* [E][E]                     */
    const float *wk, *wv;              /* [kv_heads * d][E]          */
    const float *w_gate, *w_up;        /* [F][E]                     */
    const float *w_down;               /* [E][F]                     */
} llama_layer;

struct llama_model {
    llama_hparams hp;
    gguf_file *gguf;
    float *weights;                            /* one allocation holding every tensor below */
    const float *tok_embd, *out_norm, *output; /* [V][E], [E], [V][E] (output == tok_embd: tied) */
    llama_layer *layers;
};

#endif /* SUBKV_LLAMA_INTERNAL_H */
