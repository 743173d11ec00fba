/*
 * subkv-perplexity — the model's per-token negative log-likelihood over the tail of a window
 * of a token stream, with the stored context answered by a subkv policy.
 *
 *   subkv-perplexity FILE [--window 1024] [--tail 128] [--policy P --budget B]
 *   (FILE: text, tokenized with the model's tokenizer; --tokens @ids.txt for token ids)
 *
 * The first window - tail tokens are prefilled in one batch (their causal attention exact);
 * the tail is then decoded teacher-forced, one token per step, every step's attention over
 * the stored context going through the policy's sketches (local or in the service). NLL of
 * token t = -log softmax(logits after tokens < t)[token t]. Prints the mean NLL and the
 * perplexity exp(mean NLL); --csv FILE writes one row per scored token.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "subkv_cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: subkv-perplexity (FILE | --tokens LIST) [options]\n"
            "Mean NLL and perplexity over the last --tail tokens of the first --window tokens.\n"
            "  --window N              tokens of the input used (default 1024; fewer if shorter)\n"
            "  --tail T                tokens scored, decoded one by one (default 128)\n"
            "  --csv FILE              per-token rows: index,position,token,nll\n");
    lcli_usage_common(f);
}

int main(int argc, char **argv) {
    lcli_opts o;
    lcli_defaults(&o);
    uint64_t window = 1024, tail = 128;
    const char *file = NULL, *csv = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = lcli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--window")) {
            if (cli_parse_size(argv[++i], &window) || window < 2) return usage(stderr), 2;
        } else if (i + 1 < argc && !strcmp(a, "--tail")) {
            if (cli_parse_size(argv[++i], &tail) || tail < 1) return usage(stderr), 2;
        } else if (i + 1 < argc && !strcmp(a, "--csv")) {
            csv = argv[++i];
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "subkv-perplexity: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    int32_t *ids = NULL;
    size_t n = 0;
    lcli_run run = {0};
    int rc = 1;
    float *logits = NULL;
    FILE *cf = NULL;
    if (lcli_open(&o, &run) != 0) goto done;
    if (lcli_input(&o, &run, file, 1, 0, &ids, &n) != 0) {
        rc = 2;
        goto done;
    }
    if (n > window) n = (size_t)window;
    if (n < tail + 1) {
        fprintf(stderr, "subkv-perplexity: %zu tokens: need more than --tail %llu\n", n,
                (unsigned long long)tail);
        rc = 2;
        goto done;
    }
    const llama_hparams *hp = llama_model_hparams(run.model);
    logits = malloc(hp->n_vocab * sizeof(float));
    if (!logits) goto done;
    if (csv && !(cf = fopen(csv, "w"))) {
        fprintf(stderr, "subkv-perplexity: cannot write %s\n", csv);
        goto done;
    }
    if (cf) fprintf(cf, "index,position,token,nll\n");
    skv_err err = {0};
    const size_t pre = n - (size_t)tail;
    double t0 = cli_now_ms();
    if (llama_prefill(run.sess, ids, pre, logits, 0, &err) != SKV_OK) {
        cli_fail("prefill", &err);
        goto done;
    }
    const double prefill_ms = cli_now_ms() - t0;
    double sum = 0.0;
    t0 = cli_now_ms();
    for (size_t k = 0; k < tail; k++) {
        const size_t p = pre + k;
        const double nll = llama_nll(logits, hp->n_vocab, ids[p]);
        sum += nll;
        if (cf) fprintf(cf, "%zu,%zu,%d,%.6f\n", k, p, (int)ids[p], nll);
        if (k + 1 < tail && llama_decode(run.sess, ids[p], logits, &err) != SKV_OK) {
            cli_fail("decode", &err);
            goto done;
        }
    }
    const double decode_ms = cli_now_ms() - t0;
    const double mean = sum / (double)tail;
    printf("# model %s; window %zu tokens: prefill %zu (%.1f tokens/s), decode %llu "
           "(%.1f tokens/s)\n",
           o.model, n, pre, (double)pre / (prefill_ms / 1e3), (unsigned long long)tail - 1,
           (double)(tail - 1) / (decode_ms / 1e3));
    printf("# attention %s, policy %s, budget %llu B per sketch, dtype %s; sketches hold %zu "
           "bytes\n",
           o.attention, skv_policy_name((skv_policy_id)o.policy), (unsigned long long)o.budget,
           skv_dtype_name((skv_dtype)o.dtype), run.attn->ops->bytes(run.attn));
    printf("mean_nll %.6f perplexity %.4f tokens %llu\n", mean, exp(mean),
           (unsigned long long)tail);
    rc = 0;
done:
    if (cf && fclose(cf) != 0) rc = 1;
    free(logits);
    free(ids);
    lcli_close(&run);
    return rc;
}
