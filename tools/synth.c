/*
 * synth.c — synthetic long-context workloads and the float64 reference attention.
 *
 * Depends on libc and libm only. Everything random flows from one splitmix64 state,
 * so a (cfg, seed) pair reproduces a stream bit-for-bit on any platform.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- RNG ----------------------------------------------------------------------- */

/* One splitmix64 step on a bare state (Steele, Lea, Flood 2014). */
static uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void synth_rng_seed(synth_rng *r, uint64_t seed) { r->state = seed; }

uint64_t synth_rng_u64(synth_rng *r) { return splitmix64_next(&r->state); }

/* Top 53 bits -> a double in [0, 1) with every value equally spaced. */
double synth_rng_uniform(synth_rng *r) {
    return (double)(synth_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Box-Muller; draws two uniforms per normal and discards the sine twin so the
 * generator stays stateless beyond `state` (no cached spare to serialize). */
double synth_rng_normal(synth_rng *r) {
    double u1 = 1.0 - synth_rng_uniform(r); /* (0, 1]: log() stays finite */
    double u2 = synth_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t synth_fresh_seed(void) {
    const char *env = getenv("SUBKV_TEST_SEED");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 0);
        if (end != env && *end == '\0') return (uint64_t)v;
        fprintf(stderr, "synth: ignoring unparsable SUBKV_TEST_SEED='%s'\n", env);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t mix = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    uint64_t out = splitmix64_next(&mix);
    mix ^= (uint64_t)getpid() << 32;
    out ^= splitmix64_next(&mix);
    return out;
}

void synth_fill_normal(synth_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(synth_rng_normal(r) * std);
}

/* ---- streams ------------------------------------------------------------------- */

struct synth_stream {
    synth_stream_cfg cfg;
    synth_rng rng;
    int nclusters;      /* >= 1: centers exist even in uniform mode, for queries */
    float *centers;     /* [nclusters][d] */
    float *vmeans;      /* [nclusters][d]: mean value of each cluster */
    uint64_t tokens;    /* drift clock */
    uint64_t generated; /* tokens generated so far */
    int last;           /* cluster of the last token; -1 before any or in uniform mode */
};

synth_stream *synth_stream_create(const synth_stream_cfg *cfg) {
    if (cfg == NULL || cfg->d < 1) return NULL;
    synth_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->cfg = *cfg;
    s->nclusters = cfg->clusters > 0 ? cfg->clusters : 1;
    s->last = -1;
    synth_rng_seed(&s->rng, cfg->seed);
    size_t d = (size_t)cfg->d;
    s->centers = malloc((size_t)s->nclusters * d * sizeof(float));
    s->vmeans = malloc((size_t)s->nclusters * d * sizeof(float));
    if (s->centers == NULL || s->vmeans == NULL) {
        free(s->centers);
        free(s->vmeans);
        free(s);
        return NULL;
    }
    /* Random directions: a normalised Gaussian vector is uniform on the sphere. */
    for (int c = 0; c < s->nclusters; c++) {
        float *ctr = s->centers + (size_t)c * d;
        double norm2 = 0.0;
        do {
            norm2 = 0.0;
            for (size_t j = 0; j < d; j++) {
                ctr[j] = (float)synth_rng_normal(&s->rng);
                norm2 += (double)ctr[j] * ctr[j];
            }
        } while (norm2 == 0.0);
        double scale = cfg->center_norm / sqrt(norm2);
        for (size_t j = 0; j < d; j++) ctr[j] = (float)(ctr[j] * scale);
    }
    /* Value means: random directions of norm value_mean, drawn after the centers so
     * streams with value_mean = 0 keep the draws they had before the field existed. */
    for (int c = 0; c < s->nclusters; c++) {
        float *vm = s->vmeans + (size_t)c * d;
        double norm2 = 0.0;
        for (size_t j = 0; j < d; j++) {
            vm[j] = cfg->value_mean > 0.0f ? (float)synth_rng_normal(&s->rng) : 0.0f;
            norm2 += (double)vm[j] * vm[j];
        }
        double scale = norm2 > 0.0 ? cfg->value_mean / sqrt(norm2) : 0.0;
        for (size_t j = 0; j < d; j++) vm[j] = (float)(vm[j] * scale);
    }
    return s;
}

void synth_stream_destroy(synth_stream *s) {
    if (s == NULL) return;
    free(s->centers);
    free(s->vmeans);
    free(s);
}

void synth_stream_next(synth_stream *s, float *K, float *V, size_t n) {
    size_t d = (size_t)s->cfg.d;
    for (size_t i = 0; i < n; i++) {
        float *k = K + i * d;
        float *v = V + i * d;
        if (s->cfg.drift > 0.0f && (s->tokens++ & 63u) == 63u) {
            size_t total = (size_t)s->nclusters * d;
            for (size_t j = 0; j < total; j++)
                s->centers[j] += (float)(synth_rng_normal(&s->rng) * s->cfg.drift * 8.0);
        }
        if (s->cfg.uniform) {
            s->last = -1;
            for (size_t j = 0; j < d; j++)
                k[j] = (float)(synth_rng_normal(&s->rng) * s->cfg.spread);
        } else {
            int span = s->nclusters, first = 0;
            if (s->cfg.phase_len > 0 && s->cfg.phase_clusters > 0 &&
                s->cfg.phase_clusters < s->nclusters) {
                uint64_t phase = s->generated / s->cfg.phase_len;
                span = s->cfg.phase_clusters;
                first = (int)((phase * (uint64_t)span) % (uint64_t)s->nclusters);
            }
            int c = (int)(synth_rng_uniform(&s->rng) * span);
            if (c >= span) c = span - 1;
            c = (first + c) % s->nclusters;
            s->last = c;
            const float *ctr = s->centers + (size_t)c * d;
            for (size_t j = 0; j < d; j++)
                k[j] = ctr[j] + (float)(synth_rng_normal(&s->rng) * s->cfg.spread);
        }
        s->generated++;
        /* Pareto(alpha = 1/tail) with x_min = 1: (1 - u)^(-1/alpha), u in [0, 1). */
        double scale = 1.0;
        if (s->cfg.value_tail > 0.0f)
            scale = pow(1.0 - synth_rng_uniform(&s->rng), -(double)s->cfg.value_tail);
        const float *vm = s->vmeans + (size_t)(s->last < 0 ? 0 : s->last) * d;
        for (size_t j = 0; j < d; j++) v[j] = (float)((vm[j] + synth_rng_normal(&s->rng)) * scale);
    }
}

void synth_stream_query(synth_stream *s, int c, float scale, float noise, float *q) {
    size_t d = (size_t)s->cfg.d;
    if (c < 0) c = 0;
    c %= s->nclusters;
    const float *ctr = s->centers + (size_t)c * d;
    for (size_t j = 0; j < d; j++)
        q[j] = ctr[j] * scale + (float)(synth_rng_normal(&s->rng) * noise);
}

int synth_stream_last_cluster(const synth_stream *s) { return s->last; }

/* ---- reference ----------------------------------------------------------------- */

/*
 * One pass of online softmax in float64 (the flash-attention recurrence): keep the
 * running max m, normalizer l = sum e^(x-m) and numerator acc = sum e^(x-m) v, and
 * rescale both by e^(m_old - m_new) whenever the max grows. Nothing overflows and no
 * scratch of size n is needed.
 */
double synth_ref_attention(const float *q, const float *K, const float *V, size_t n, int d,
                           double *out) {
    double inv_sqrt_d = 1.0 / sqrt((double)d);
    for (int j = 0; j < d; j++) out[j] = 0.0;
    if (n == 0) return -INFINITY;
    double m = -INFINITY, l = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *k = K + i * (size_t)d;
        const float *v = V + i * (size_t)d;
        double x = 0.0;
        for (int j = 0; j < d; j++) x += (double)q[j] * (double)k[j];
        x *= inv_sqrt_d;
        if (x > m) {
            double r = exp(m - x); /* 0 on the first token: m = -inf */
            l *= r;
            for (int j = 0; j < d; j++) out[j] *= r;
            m = x;
        }
        double w = exp(x - m);
        l += w;
        for (int j = 0; j < d; j++) out[j] += w * (double)v[j];
    }
    for (int j = 0; j < d; j++) out[j] /= l;
    return m + log(l);
}

double synth_rel_error(const float *a, const double *b, int d) {
    double num = 0.0, den = 0.0;
    for (int j = 0; j < d; j++) {
        double e = (double)a[j] - b[j];
        num += e * e;
        den += b[j] * b[j];
    }
    if (den == 0.0) return sqrt(num);
    return sqrt(num / den);
}
