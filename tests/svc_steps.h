/*
 * svc_steps.h — the service-vs-replica loop the service suites share (header-only, static;
 * include after <cmocka.h>, test_util.h, svc_check.h and svc_replica.h): prefill every
 * layer of a set of sequences on the service and on their replicas, then decode steps of
 * every layer for all of them in one request each, comparing the service's outputs with
 * the replicas' bit for bit (CPU workers) or within a relative tolerance (GPU workers).
 */
#ifndef SUBKV_SVC_STEPS_H
#define SUBKV_SVC_STEPS_H

#include <math.h>

/* Append n random N(0, 1) tokens to every layer of sequences ids[ns], on the service and
 * on rep[ns]. */
static inline void svc_prefill_both(skv_client *c, const skv_model_shape *sh, size_t ns,
                                    const uint64_t *ids, svc_replica *rep, synth_rng *rng,
                                    size_t n) {
    const size_t kn = (size_t)sh->kv_heads * sh->head_dim;
    float *K = tu_malloc(n * kn * sizeof(float)), *V = tu_malloc(n * kn * sizeof(float));
    skv_err err = {0};
    for (size_t i = 0; i < ns; i++)
        for (uint32_t l = 0; l < sh->layers; l++) {
            synth_fill_normal(rng, K, n * kn, 1.0f);
            synth_fill_normal(rng, V, n * kn, 1.0f);
            SVC_OK(skv_client_append(c, sh, ids[i], l, n, K, V, &err), &err);
            SVC_OK(svc_replica_append(&rep[i], l, n, K, V, &err), &err);
        }
    free(K), free(V);
}

/*
 * `steps` decode steps of every layer: one skv_client_step for the ns sequences ids (fresh
 * N(0, qscale^2) queries, N(0, 1) keys and values), each replica stepped the same way. tol 0:
 * the outputs must equal the replica's bit for bit; else within tol relative per query head.
 * Failures name `what` and labels[i] (labels may be NULL). Returns the worst relative error.
 */
static inline double svc_steps_vs_replicas(skv_client *c, const skv_model_shape *sh, size_t ns,
                                           const uint64_t *ids, svc_replica *rep,
                                           const char *const *labels, synth_rng *rng, int steps,
                                           float qscale, double tol, const char *what) {
    const size_t d = sh->head_dim, qn = (size_t)sh->q_heads * d, kn = (size_t)sh->kv_heads * d;
    float *Q = tu_malloc(ns * qn * sizeof(float)), *K = tu_malloc(ns * kn * sizeof(float));
    float *V = tu_malloc(ns * kn * sizeof(float)), *out = tu_malloc(ns * qn * sizeof(float));
    float *want = tu_malloc(qn * sizeof(float));
    double worst = 0.0;
    skv_err err = {0};
    char where[256];
    for (int step = 0; step < steps; step++)
        for (uint32_t l = 0; l < sh->layers; l++) {
            synth_fill_normal(rng, Q, ns * qn, qscale);
            synth_fill_normal(rng, K, ns * kn, 1.0f);
            synth_fill_normal(rng, V, ns * kn, 1.0f);
            SVC_OK(skv_client_step(c, sh, l, ns, ids, Q, K, V, out, &err), &err);
            for (size_t i = 0; i < ns; i++) {
                SVC_OK(svc_replica_step(&rep[i], l, Q + i * qn, K + i * kn, V + i * kn, want, &err),
                       &err);
                snprintf(where, sizeof where, "%s: sequence %zu (%s) step %d layer %u", what, i,
                         labels ? labels[i] : "-", step, l);
                if (tol == 0.0) {
                    svc_assert_bits_equal(out + i * qn, want, qn, where);
                    continue;
                }
                for (uint32_t h = 0; h < sh->q_heads; h++) {
                    const double r = tu_rel_error_ff(out + i * qn + h * d, want + h * d, (int)d);
                    if (r > worst) worst = r;
                    if (!(r <= tol)) fail_msg("%s head %u: rel err %g > %g", where, h, r, tol);
                }
            }
        }
    free(Q), free(K), free(V), free(out), free(want);
    return worst;
}

#endif /* SUBKV_SVC_STEPS_H */
