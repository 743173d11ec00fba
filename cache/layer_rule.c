/*
 * layer_rule.c — RefreshKV's per-layer refresh decision (subkv.h, skv_layer_rule): the
 * paper's rule, run by whoever sees all of a layer's query heads (the service's
 * coordinator), with the sketches of the layer created with threshold -1 so that they run
 * a full step only when told (skv_sketch_refresh) or when their own state forces one.
 *
 * Why it mirrors the sketch's forced steps (first attend with tokens, first attend after a
 * prefill chunk): those are full steps of every sketch of the layer anyway, so the layer's
 * reference query must be taken there too, or the next check would compare against a
 * query older than the selection it judges.
 */
#include "skv_internal.h"

/* Cosine similarity of the mean of Q's nq rows with ref; a zero side counts as dissimilar
 * (as the sketch's own rule). Accumulated in double in row order, so every caller that
 * passes the same floats gets the same answer. */
static double layer_similarity(const float *Q, int nq, int d, const float *ref) {
    double dot = 0.0, nm = 0.0, nr = 0.0;
    for (int j = 0; j < d; j++) {
        double m = 0.0;
        for (int h = 0; h < nq; h++) m += Q[(size_t)h * (size_t)d + (size_t)j];
        m /= nq;
        dot += m * ref[j];
        nm += m * m;
        nr += (double)ref[j] * ref[j];
    }
    return nm > 0.0 && nr > 0.0 ? dot / sqrt(nm * nr) : 0.0;
}

int skv_layer_rule_check(const skv_layer_rule *r, const float *qref, int stride, float threshold,
                         const float *Q, int nq, int d) {
    if (!r->primed || r->pending) return 1;
    if (r->since_check + 1 < (uint64_t)stride) return 0;
    return threshold >= 1.0f || layer_similarity(Q, nq, d, qref) < (double)threshold;
}

void skv_layer_rule_commit(skv_layer_rule *r, float *qref, int stride, int full, const float *Q,
                           int nq, int d, uint64_t tokens) {
    if (!full) { /* a partial step: count it; a check that passed starts a new count */
        r->since_check = r->since_check + 1 >= (uint64_t)stride ? 0 : r->since_check + 1;
        return;
    }
    for (int j = 0; j < d; j++) {
        double m = 0.0;
        for (int h = 0; h < nq; h++) m += Q[(size_t)h * (size_t)d + (size_t)j];
        qref[j] = (float)(m / nq);
    }
    r->primed = tokens > 0; /* an attend before any token selects nothing: still prefill */
    r->pending = 0;
    r->since_check = 0;
}

void skv_layer_rule_appended(skv_layer_rule *r, uint64_t n) {
    if (n > 1) r->pending = 1; /* a decode step appends one token; more is a prefill chunk */
}

int skv_layer_rule_valid(const skv_layer_rule *r, const float *qref, int stride, int d) {
    if (r->primed > 1 || r->pending > 1 || stride < 1 || r->since_check >= (uint64_t)stride)
        return 0;
    for (int j = 0; j < d; j++)
        if (!isfinite(qref[j])) return 0;
    return 1;
}
