/*
 * eval_docs.c — subkv-eval's texts (see eval_docs.h).
 */
#include "eval_docs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *eval_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n - 1, f);
        if (n + 1 < cap) break;
        char *g = realloc(b, cap * 2);
        if (!g) free(b);
        b = g;
        cap *= 2;
    }
    fclose(f);
    if (b) b[n] = '\0';
    *len = n;
    return b;
}

void eval_docs_free(eval_docs *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->names[i]);
        free(d->ids[i]);
    }
    free(d->text_last);
    memset(d, 0, sizeof *d);
}

int eval_docs_load(const char *list, const llama_tok *tok, eval_docs *d) {
    memset(d, 0, sizeof *d);
    size_t len = 0;
    char *names = eval_read_file(list, &len);
    if (!names) return fprintf(stderr, "subkv-eval: cannot read %s\n", list), -1;
    int rc = 0;
    char *save = NULL;
    for (char *p = strtok_r(names, "\n", &save); p && d->n < EVAL_MAX_DOCS;
         p = strtok_r(NULL, "\n", &save)) {
        size_t tl = 0;
        skv_err err = {0};
        char *text = eval_read_file(p, &tl);
        const int i = d->n;
        if (!text || !(d->names[i] = malloc(strlen(p) + 1))) {
            fprintf(stderr, "subkv-eval: cannot read text %s\n", p);
            free(text);
            rc = -1;
            break;
        }
        strcpy(d->names[i], p);
        if (llama_tok_encode(tok, text, tl, 0, 0, &d->ids[i], &d->n_ids[i], &err) != SKV_OK) {
            fprintf(stderr, "subkv-eval: tokenize %s: %s: %s\n", p, subkv_status_name(err.code),
                    err.msg);
            free(d->names[i]);
            free(text);
            rc = -1;
            break;
        }
        free(d->text_last);
        d->text_last = text;
        d->text_last_len = tl;
        d->n++;
    }
    free(names);
    if (rc == 0 && d->n == 0) fprintf(stderr, "subkv-eval: %s names no text\n", list), rc = -1;
    if (rc != 0) eval_docs_free(d);
    return rc;
}

int32_t *eval_window_ids(const eval_docs *d, int w, uint64_t L, char *used, size_t used_cap) {
    if (d->n == 0 || used_cap == 0) return NULL;
    int32_t *ids = malloc(L * sizeof *ids);
    if (!ids) return NULL;
    size_t n = 0, u = 0;
    used[0] = '\0';
    for (int k = 0; n < L && k < 4 * d->n; k++) {
        const int i = (w + k) % d->n;
        const size_t take = d->n_ids[i] < L - n ? d->n_ids[i] : (size_t)(L - n);
        memcpy(ids + n, d->ids[i], take * sizeof *ids);
        n += take;
        const char *base = strrchr(d->names[i], '/');
        u += (size_t)snprintf(used + u, used_cap - u, "%s%s", u ? "+" : "",
                              base ? base + 1 : d->names[i]);
        if (u >= used_cap) u = used_cap - 1;
    }
    if (n < L) {
        free(ids);
        return NULL;
    }
    return ids;
}
