/*
 * layer_rule.c — RefreshKV's per-layer refresh decision (subkv.h, skv_layer_rule): the
 * paper's rule, run by whoever sees all of a layer's query heads (the service's
 * coordinator), with the sketches of the layer created with threshold -1 so that they run
 * a full step only when told (skv_sketch_refresh) or when their own state forces one.
 *
 * Per layer vs per group. The paper decides per layer from the mean query of all the
 * layer's heads; a sketch sees only its own GQA group's queries, so a lone sketch decides
 * from its group's mean query. In the service the paper's rule is the default
 * (skv_config.decide = layer): the coordinator, which sees every query head of a layer in a
 * step request, keeps this state per (sequence, layer), and when the rule fires it flags
 * every item of the layer (WorkItem.refresh), so all the layer's sketches run their full
 * step in that one batched step op; the sketches get threshold -1 and never decide alone.
 * decide = group keeps the per-group rule in the service. Per group is finer: a group whose
 * queries stay put keeps its partial cache while a group whose queries move refreshes (a
 * layer-wide rule refreshes all or none). Measured (`subkv-bench refresh`, which runs the same
 * skv_layer_rule; one layer of 8 groups x 4 heads, d 64, 8K tokens per group, K 256, S 10,
 * threshold 0.9, topics lasting ~10 steps): when groups change topic independently,
 * per-group decisions run 6.1% full steps vs 10.0% per layer (381 KB vs 537 KB read per
 * attend) at the same error (0.367 vs 0.362); when the whole layer shifts at once, 7.5% vs
 * 8.3%, error 0.323 vs 0.322. With a check every step (--stride 1) and independent topics
 * the layer rule fires on most steps: 52.5% full steps (error 0.056, 2.26 MB read per
 * attend) against 10.0% per group (error 0.100, 0.54 MB): it buys its lower error with 4x
 * the reads.
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
