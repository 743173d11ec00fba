/*
 * entries.c — consumers of a sketch's segments (skv_seg_sink): the generic CPU attend
 * (accumulate them for one query) and the flat entry list the GPU backend uploads.
 */
#include <stdlib.h>

#include "skv_internal.h"

typedef struct acc_sink {
    skv_seg_sink base;
    skv_acc acc;
    const float *q;
} acc_sink;

static void acc_rows(skv_seg_sink *sink, const skv_rows *K, const skv_rows *V, size_t start,
                     size_t count, const float *a_w, double a, const float *b_w, double b) {
    acc_sink *s = (acc_sink *)sink;
    skv_acc_add_rows(&s->acc, s->q, K, V, start, count, a_w, a, b_w, b);
}

void skv_attend_segments(const skv_sketch *s, const float *qs, skv_partial *out) {
    double o[SKV_MAX_HEAD_DIM];
    acc_sink sink = {.base = {acc_rows}, .q = qs};
    skv_acc_init(&sink.acc, s->cfg.head_dim, o);
    s->ops->segments(s, &sink.base);
    skv_acc_finish(&sink.acc, out);
}

typedef struct entries_sink {
    skv_seg_sink base;
    skv_entries *e;
    subkv_status st;
    size_t skip; /* entries still to pass over before copying */
} entries_sink;

static int entries_reserve(skv_entries *e, size_t need) {
    if (need <= e->cap) return 0;
    size_t cap = e->cap ? e->cap : 256;
    while (cap < need) cap *= 2;
    const size_t rb = (size_t)e->d * skv_dtype_size(e->dtype);
    void *k = realloc(e->k, cap * rb);
    if (k) e->k = k;
    void *v = realloc(e->v, cap * rb);
    if (v) e->v = v;
    float *a = realloc(e->a, cap * sizeof(float));
    if (a) e->a = a;
    float *b = realloc(e->b, cap * sizeof(float));
    if (b) e->b = b;
    if (!k || !v || !a || !b) return -1;
    e->cap = cap;
    return 0;
}

static void entries_rows(skv_seg_sink *sink, const skv_rows *K, const skv_rows *V, size_t start,
                         size_t count, const float *a_w, double a, const float *b_w, double b) {
    entries_sink *s = (entries_sink *)sink;
    skv_entries *e = s->e;
    if (s->skip >= count) {
        s->skip -= count;
        return;
    }
    start += s->skip, count -= s->skip;
    s->skip = 0;
    if (s->st != SKV_OK || count == 0) return;
    if (entries_reserve(e, e->n + count) != 0) {
        s->st = SKV_ERR_NOMEM;
        return;
    }
    const size_t rb = (size_t)e->d * skv_dtype_size(e->dtype);
    for (size_t i = 0; i < count; i++) {
        const size_t row = start + i, dst = e->n + i;
        memcpy((char *)e->k + dst * rb, (const char *)K->data + row * rb, rb);
        if (V)
            memcpy((char *)e->v + dst * rb, (const char *)V->data + row * rb, rb);
        else
            memset((char *)e->v + dst * rb, 0, rb);
        e->a[dst] = (float)(a_w ? a * a_w[row] : a);
        e->b[dst] = (float)(b_w ? b * b_w[row] : b);
    }
    e->n += count;
}

subkv_status skv_sketch_entries(const skv_sketch *s, skv_entries *out, skv_err *err) {
    return skv_sketch_entries_from(s, out, 0, err);
}

subkv_status skv_sketch_entries_from(const skv_sketch *s, skv_entries *out, size_t first,
                                     skv_err *err) {
    if (!s || !out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "NULL sketch or entries");
    if (out->cap && (out->dtype != s->cfg.dtype || out->d != s->cfg.head_dim))
        skv_entries_free(out);
    out->dtype = s->cfg.dtype;
    out->d = s->cfg.head_dim;
    out->n = 0;
    entries_sink sink = {.base = {entries_rows}, .e = out, .st = SKV_OK, .skip = first};
    s->ops->segments(s, &sink.base);
    if (sink.st != SKV_OK) return skv_set_error(err, sink.st, "no memory for the entry list");
    return SKV_OK;
}

void skv_entries_free(skv_entries *e) {
    if (!e) return;
    free(e->k);
    free(e->v);
    free(e->a);
    free(e->b);
    memset(e, 0, sizeof *e);
}

void skv_entries_attend(const skv_entries *e, const float *qs, skv_partial *out) {
    double o[SKV_MAX_HEAD_DIM];
    skv_acc acc;
    skv_acc_init(&acc, e->d, o);
    skv_rows K = {e->dtype, e->d, e->n, e->k}, V = {e->dtype, e->d, e->n, e->v};
    skv_acc_add_rows(&acc, qs, &K, &V, 0, e->n, e->a, 1.0, e->b, 1.0);
    skv_acc_finish(&acc, out);
}
