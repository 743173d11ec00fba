/*
 * subkv-trace — run the model over a token stream and write its attention trace: per layer
 * the post-rotary Q, K, V of every token (format: tools/trace.h), the input of
 * `subkv replay` and of the policy evaluations on real-model data.
 *
 *   subkv-trace FILE -o model.skvt [--window 4096]      (or --tokens @ids.txt for token ids)
 *
 * The window is prefilled in one batch; the forward pass hands each layer's Q, K, V of all
 * its tokens to the trace writer as soon as the layer is computed, so memory stays one layer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_cli.h"
#include "subkv_cli.h"
#include "trace.h"

static void usage(FILE *f) {
    fprintf(f, "usage: subkv-trace (FILE | --tokens LIST) -o OUT [options]\n"
               "Writes the post-rotary Q, K, V of every layer and token (tools/trace.h) to OUT.\n"
               "  -o, --out OUT           the trace file (written as OUT.tmp, renamed when done)\n"
               "  --window N              tokens of the input used (default 4096)\n");
    lcli_usage_common(f);
}

typedef struct hook_ctx {
    trace_writer *w;
    skv_err err;
} hook_ctx;

static int write_layer(void *ctx, uint32_t layer, size_t n, const float *Q, const float *K,
                       const float *V) {
    hook_ctx *h = ctx;
    (void)n;
    return trace_writer_write_layer(h->w, layer, Q, K, V, &h->err) == SKV_OK ? 0 : -1;
}

int main(int argc, char **argv) {
    lcli_opts o;
    lcli_defaults(&o);
    uint64_t window = 4096;
    const char *file = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = lcli_parse_common(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (i + 1 < argc && (!strcmp(a, "-o") || !strcmp(a, "--out"))) {
            out = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--window")) {
            if (cli_parse_size(argv[++i], &window) || window < 1) return usage(stderr), 2;
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "subkv-trace: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "subkv-trace: no output (-o OUT)\n");
        usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    lcli_run run = {0};
    hook_ctx h = {0};
    int rc = 1;
    if (lcli_open(&o, &run) != 0) goto done;
    if (lcli_input(&o, &run, file, 1, 0, &ids, &n) != 0) {
        rc = 2;
        goto done;
    }
    if (n > window) n = (size_t)window;
    const llama_hparams *hp = llama_model_hparams(run.model);
    const trace_shape sh = {hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, n};
    if (trace_writer_open(out, &sh, &h.w, &h.err) != SKV_OK) {
        cli_fail(out, &h.err);
        goto done;
    }
    llama_session_set_hook(run.sess, write_layer, &h);
    skv_err err = {0};
    const double t0 = cli_now_ms();
    if (llama_prefill(run.sess, ids, n, NULL, 0, &err) != SKV_OK) {
        cli_fail(h.err.code ? "trace write" : "prefill", h.err.code ? &h.err : &err);
        trace_writer_abort(h.w);
        goto done;
    }
    if (trace_writer_close(h.w, &h.err) != SKV_OK) {
        cli_fail(out, &h.err);
        goto done;
    }
    printf("# wrote %s: %u layers x %zu tokens x (%u q + 2 x %u kv heads) x d %u, %.1f s\n", out,
           hp->n_layer, n, hp->n_head, hp->n_head_kv, hp->head_dim, (cli_now_ms() - t0) / 1e3);
    rc = 0;
done:
    free(ids);
    lcli_close(&run);
    return rc;
}
