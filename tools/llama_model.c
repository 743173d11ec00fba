/*
 * llama_model.c — load a llama GGUF into float32 weights (see llama.h). Every tensor is
 * checked for name, shape and a dequantisable type before any weight is converted.
 */
#include <stdlib.h>
#include <string.h>

#include "llama_internal.h"
#include "skv_check.h"

const llama_hparams *llama_model_hparams(const llama_model *m) { return &m->hp; }
const gguf_file *llama_model_gguf(const llama_model *m) { return m->gguf; }

void llama_model_free(llama_model *m) {
    if (!m) return;
    free(m->weights);
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

static subkv_status read_hparams(const gguf_file *g, llama_hparams *hp, skv_err *err) {
    gguf_str arch;
    SKV_CHECK(gguf_get_str(g, "general.architecture", &arch, err));
    if (!gguf_str_eq(arch, "llama"))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "llama: architecture '%.*s', not llama",
                             (int)(arch.len > 32 ? 32 : arch.len), arch.ptr);
    SKV_CHECK(gguf_get_u32(g, "llama.block_count", &hp->n_layer, err));
    SKV_CHECK(gguf_get_u32(g, "llama.embedding_length", &hp->n_embd, err));
    SKV_CHECK(gguf_get_u32(g, "llama.feed_forward_length", &hp->n_ff, err));
    SKV_CHECK(gguf_get_u32(g, "llama.attention.head_count", &hp->n_head, err));
    hp->n_head_kv = hp->n_head;
    if (gguf_find_kv(g, "llama.attention.head_count_kv"))
        SKV_CHECK(gguf_get_u32(g, "llama.attention.head_count_kv", &hp->n_head_kv, err));
    hp->n_ctx_train = 0;
    if (gguf_find_kv(g, "llama.context_length"))
        SKV_CHECK(gguf_get_u32(g, "llama.context_length", &hp->n_ctx_train, err));
    hp->rope_base = 10000.0f;
    if (gguf_find_kv(g, "llama.rope.freq_base"))
        SKV_CHECK(gguf_get_f32(g, "llama.rope.freq_base", &hp->rope_base, err));
    SKV_CHECK(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps, err));
    if (hp->n_layer < 1 || hp->n_layer > 1024 || hp->n_embd < 1 || hp->n_embd > 65536 ||
        hp->n_ff < 1 || hp->n_ff > 1u << 20 || hp->n_head < 1 || hp->n_head_kv < 1 ||
        hp->n_head % hp->n_head_kv != 0 || hp->n_embd % hp->n_head != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT,
                             "llama: inconsistent shape: %u layers, embd %u, ffn %u, %u/%u heads",
                             hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim % 2 != 0 || hp->head_dim > 1024)
        return skv_set_error(err, SKV_ERR_CORRUPT, "llama: head_dim %u (even, <= 1024)",
                             hp->head_dim);
    if (gguf_find_kv(g, "llama.rope.dimension_count")) {
        uint32_t rd;
        SKV_CHECK(gguf_get_u32(g, "llama.rope.dimension_count", &rd, err));
        if (rd != hp->head_dim)
            return skv_set_error(err, SKV_ERR_UNSUPPORTED,
                                 "llama: partial rotary (%u of %u dims) not supported", rd,
                                 hp->head_dim);
    }
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_base > 1.0f))
        return skv_set_error(err, SKV_ERR_CORRUPT, "llama: rms eps %g or rope base %g invalid",
                             (double)hp->rms_eps, (double)hp->rope_base);
    return SKV_OK;
}

/* One tensor to load: name, shape, where its float copy goes. */
typedef struct want {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    const float **dst;
    const gguf_tensor *t;
} want;

#define DEQUANT_TYPES                                                                              \
    ((1ull << GGML_F32) | (1ull << GGML_F16) | (1ull << GGML_BF16) | (1ull << GGML_Q8_0) |         \
     (1ull << GGML_Q4_0) | (1ull << GGML_Q4_1))

subkv_status llama_model_load(const char *path, llama_model **out, skv_err *err) {
    if (!path || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "llama: NULL arg");
    *out = NULL;
    subkv_status st = SKV_OK;
    want *w = NULL;
    llama_model *m = calloc(1, sizeof *m);
    if (!m) return skv_set_error(err, SKV_ERR_NOMEM, "llama: model struct");
    SKV_CHECK_GOTO(gguf_open(path, &m->gguf, err), st, fail);
    SKV_CHECK_GOTO(read_hparams(m->gguf, &m->hp, err), st, fail);
    const llama_hparams *hp = &m->hp;
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb || emb->ne[0] != hp->n_embd || emb->ne[1] < 1 || emb->ne[1] > 1u << 22) {
        st = skv_set_error(err, SKV_ERR_SHAPE, "llama: token_embd.weight missing or not [%u, V]",
                           hp->n_embd);
        goto fail;
    }
    m->hp.n_vocab = (uint32_t)emb->ne[1];
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    const size_t nw = 3 + 9 * (size_t)hp->n_layer;
    w = calloc(nw, sizeof *w);
    if (!m->layers || !w) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "llama: tables");
        goto fail;
    }
    const uint64_t E = hp->n_embd, F = hp->n_ff, KV = (uint64_t)hp->n_head_kv * hp->head_dim;
    size_t k = 0;
#define WANT(nm, nd, a, b, where)                                                                  \
    do {                                                                                           \
        snprintf(w[k].name, sizeof w[k].name, "%s", nm);                                           \
        w[k].n_dims = (nd), w[k].ne[0] = (a), w[k].ne[1] = (b), w[k].dst = (where);                \
        k++;                                                                                       \
    } while (0)
    WANT("token_embd.weight", 2, E, hp->n_vocab, &m->tok_embd);
    WANT("output_norm.weight", 1, E, 1, &m->out_norm);
    if (gguf_find_tensor(m->gguf, "output.weight"))
        WANT("output.weight", 2, E, hp->n_vocab, &m->output);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        llama_layer *L = &m->layers[l];
        char nm[64];
#define WANT_L(suffix, nd, a, b, field)                                                            \
    snprintf(nm, sizeof nm, "blk.%u." suffix, l);                                                  \
    WANT(nm, nd, a, b, &L->field)
        WANT_L("attn_norm.weight", 1, E, 1, attn_norm);
        WANT_L("ffn_norm.weight", 1, E, 1, ffn_norm);
        WANT_L("attn_q.weight", 2, E, E, wq);
        WANT_L("attn_k.weight", 2, E, KV, wk);
        WANT_L("attn_v.weight", 2, E, KV, wv);
        WANT_L("attn_output.weight", 2, E, E, wo);
        WANT_L("ffn_gate.weight", 2, E, F, w_gate);
        WANT_L("ffn_up.weight", 2, E, F, w_up);
        WANT_L("ffn_down.weight", 2, F, E, w_down);
#undef WANT_L
    }
#undef WANT
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        SKV_CHECK_GOTO(gguf_tensor_expect(m->gguf, w[i].name, DEQUANT_TYPES, w[i].n_dims, w[i].ne,
                                          &w[i].t, err),
                       st, fail);
        total += (size_t)(w[i].ne[0] * w[i].ne[1]);
    }
    m->weights = malloc(total * sizeof(float));
    if (!m->weights) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "llama: %zu MB of weights", total * 4 >> 20);
        goto fail;
    }
    float *p = m->weights;
    for (size_t i = 0; i < k; i++) {
        const uint64_t n = w[i].ne[0] * w[i].ne[1];
        SKV_CHECK_GOTO(gguf_dequant(w[i].t->type, w[i].t->data, n, p, err), st, fail);
        *w[i].dst = p;
        p += n;
    }
    if (!m->output) m->output = m->tok_embd; /* tied */
    free(w);
    *out = m;
    return SKV_OK;
fail:
    free(w);
    llama_model_free(m);
    return st;
}
