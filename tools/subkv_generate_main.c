/*
 * subkv-generate — greedy generation with the C llama runner, attention through subkv.
 *
 *   subkv-generate "PROMPT" [--max-tokens 32] [--chat] [--policy P --budget B]
 *   (or --tokens 1,9690,314: token ids instead of text)
 *
 * Prefills the prompt in one batch, then decodes one token at a time (each step's attention
 * goes through the backend: in-process sketches or the service), printing the text as it
 * goes, then one line with the token ids and prefill / decode speed in tokens per second.
 * --dump-logits FILE writes the prompt's next-token logits (float32, n_vocab values, raw
 * little-endian) for tools/hf_check.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "subkv_cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: subkv-generate (PROMPT | --tokens LIST) [options]\n"
               "Greedy generation; prints the text, the generated ids and tokens/s.\n"
               "  --max-tokens N          tokens to generate (default 32)\n"
               "  --chat                  wrap the prompt as one user turn of the chat template\n"
               "  --stop-at-eos 0|1       stop at the end-of-sequence token (default 1)\n"
               "  --dump-logits FILE      write the prompt's next-token logits (f32, raw)\n"
               "  --quiet                 no text, only the summary lines\n");
    lcli_usage_common(f);
}

/* One user turn of the chat template (ChatML), ready for the assistant's answer. */
static char *chat_text(const char *prompt) {
    static const char pre[] = "<|im_start|>user\n", post[] = "<|im_end|>\n<|im_start|>assistant\n";
    const size_t n = strlen(prompt);
    char *t = malloc(sizeof pre + n + sizeof post);
    if (t) snprintf(t, sizeof pre + n + sizeof post, "%s%s%s", pre, prompt, post);
    return t;
}

int main(int argc, char **argv) {
    lcli_opts o;
    lcli_defaults(&o);
    uint64_t max_tokens = 32, stop_eos = 1;
    int chat = 0, quiet = 0;
    const char *prompt = NULL, *dump = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = lcli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (i + 1 < argc && !strcmp(a, "--max-tokens")) {
            if (cli_parse_size(argv[++i], &max_tokens)) return usage(stderr), 2;
        } else if (i + 1 < argc && !strcmp(a, "--stop-at-eos")) {
            if (cli_parse_size(argv[++i], &stop_eos)) return usage(stderr), 2;
        } else if (i + 1 < argc && !strcmp(a, "--dump-logits")) {
            dump = argv[++i];
        } else if (a[0] != '-' && !prompt) {
            prompt = a;
        } else {
            fprintf(stderr, "subkv-generate: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (chat && o.tokens) {
        fprintf(stderr, "subkv-generate: --chat wraps a text PROMPT; with --tokens give the "
                        "template's ids yourself\n");
        return 2;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *wrapped = NULL;
    lcli_run run = {0};
    int rc = 1;
    float *logits = NULL;
    int32_t *out = NULL;
    if (lcli_open(&o, &run) != 0) goto done;
    const llama_hparams *hp = llama_model_hparams(run.model);
    const gguf_file *g = llama_model_gguf(run.model);
    if (chat && prompt && !(wrapped = chat_text(prompt))) goto done;
    if (lcli_input(&o, &run, wrapped ? wrapped : prompt, 0, 1, &ids, &n) != 0) {
        rc = 2;
        goto done;
    }
    uint32_t eos = UINT32_MAX;
    skv_err err = {0};
    if (gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos, &err) != SKV_OK) eos = UINT32_MAX;
    logits = malloc(hp->n_vocab * sizeof(float));
    out = malloc((max_tokens + 1) * sizeof *out);
    if (!logits || !out) goto done;
    double t0 = cli_now_ms();
    if (llama_prefill(run.sess, ids, n, logits, 0, &err) != SKV_OK) {
        cli_fail("prefill", &err);
        goto done;
    }
    const double prefill_ms = cli_now_ms() - t0;
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(logits, sizeof(float), hp->n_vocab, f) != hp->n_vocab || fclose(f)) {
            fprintf(stderr, "subkv-generate: cannot write %s\n", dump);
            goto done;
        }
    }
    size_t made = 0;
    double decode_ms = 0.0;
    while (made < max_tokens) {
        const int32_t next = llama_argmax(logits, hp->n_vocab);
        out[made++] = next;
        if (!quiet) {
            lcli_write_token(g, next, stdout);
            fflush(stdout);
        }
        if (stop_eos && (uint32_t)next == eos) break;
        if (made == max_tokens) break;
        t0 = cli_now_ms();
        if (llama_decode(run.sess, next, logits, &err) != SKV_OK) {
            cli_fail("decode", &err);
            goto done;
        }
        decode_ms += cli_now_ms() - t0;
    }
    if (!quiet) printf("\n");
    printf("# tokens:");
    for (size_t i = 0; i < made; i++) printf("%s%d", i ? "," : " ", (int)out[i]);
    printf("\n# prompt %zu tokens: prefill %.1f ms (%.1f tokens/s); decode %zu steps %.1f ms "
           "(%.1f tokens/s); attention %s, policy %s, sketches %zu bytes\n",
           n, prefill_ms, (double)n / (prefill_ms / 1e3), made > 0 ? made - 1 : 0, decode_ms,
           made > 1 ? (double)(made - 1) / (decode_ms / 1e3) : 0.0, o.attention,
           skv_policy_name((skv_policy_id)o.policy), run.attn->ops->bytes(run.attn));
    rc = 0;
done:
    free(wrapped);
    free(logits);
    free(out);
    free(ids);
    lcli_close(&run);
    return rc;
}
