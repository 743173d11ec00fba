/*
 * synth.h — synthetic long-context workloads and the float64 reference attention.
 *
 * Used by the demo, the benchmarks and the tests. Independent of cache/ internals: the
 * reference here is a naive float64 softmax attention, the yardstick every policy is
 * measured against.
 */
#ifndef SUBKV_SYNTH_H
#define SUBKV_SYNTH_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64-based generator: deterministic for a seed. */
typedef struct synth_rng {
    uint64_t state;
} synth_rng;
void synth_rng_seed(synth_rng *r, uint64_t seed);
uint64_t synth_rng_u64(synth_rng *r);
double synth_rng_uniform(synth_rng *r); /* [0, 1)          */
double synth_rng_normal(synth_rng *r);  /* standard normal */
/* A seed from the clock and the process id, for "fresh random inputs" in tests. */
uint64_t synth_fresh_seed(void);

/*
 * A stream of (k, v) drawn from a mixture of `clusters` centers in R^d.
 *  center_norm  norm of each center (centers are random directions)
 *  spread       per-coordinate std of a key around its center (so the cluster
 *               radius is about spread*sqrt(d))
 *  drift        random-walk std per token of every center (0 = fixed); applied every
 *               64 tokens with std drift*8, the same spread at that scale
 *  value_mean   norm of each cluster's mean value: v = (mean_c + N(0, I)) * tail
 *               factor (0: values have mean 0 and carry nothing of the key)
 *  value_tail   0: tail factor 1; > 0: a Pareto(1/tail) factor per token, giving
 *               heavy-tailed norms
 *  uniform      1: ignore clusters, keys ~ N(0, spread^2 I) (not clusterable)
 *  phase_len    > 0: topic shifts. The stream runs in phases of phase_len tokens; phase
 *               p draws only from the phase_clusters clusters starting at
 *               (p * phase_clusters) mod clusters, so some clusters are seen only early
 */
typedef struct synth_stream_cfg {
    int d;
    int clusters;
    float center_norm;
    float spread;
    float drift;
    float value_mean;
    float value_tail;
    int uniform;
    uint32_t phase_len;
    int phase_clusters;
    uint64_t seed;
} synth_stream_cfg;

typedef struct synth_stream synth_stream;
synth_stream *synth_stream_create(const synth_stream_cfg *cfg);
void synth_stream_destroy(synth_stream *s);
/* Next n tokens into K[n][d], V[n][d]. */
void synth_stream_next(synth_stream *s, float *K, float *V, size_t n);
/* A query aimed at cluster c (its current center * scale plus N(0, noise^2)). */
void synth_stream_query(synth_stream *s, int c, float scale, float noise, float *q);
/* Index of the cluster the last generated token came from. */
int synth_stream_last_cluster(const synth_stream *s);

/* Fill x[n] with N(0, std^2). */
void synth_fill_normal(synth_rng *r, float *x, size_t n, float std);

/*
 * Naive float64 attention of one query: out[d] = softmax(q.K^T / sqrt(d)) V.
 * Returns log of the normalizer sum_i exp(<q,k_i>/sqrt(d)).
 */
double synth_ref_attention(const float *q, const float *K, const float *V, size_t n, int d,
                           double *out);

/* ||a - b|| / ||b|| for float a against double b. */
double synth_rel_error(const float *a, const double *b, int d);

#endif /* SUBKV_SYNTH_H */
