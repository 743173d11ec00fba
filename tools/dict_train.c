/* dict_train.c — see dict_train.h. */
#include "dict_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csr_dict.h"
#include "skv_check.h"
#include "synth.h"

enum { MAXD = 1024 }; /* MAXD of cache/ */

void dict_train_defaults(dict_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->atoms = 1024;
    o->sparsity = 8;
    o->iters = 8;
    o->kmeans_iters = 5;
    o->incoherence = 0.1f;
    o->ridge = 1e-3f;
    o->max_coherence = 0.99f;
    o->seed = 1;
}

static float dotf(const float *a, const float *b, int n) {
    float lane[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) lane[k] += a[j + k] * b[j + k];
    for (; j < n; j++) lane[0] += a[j] * b[j];
    float acc = 0.0f;
    for (int k = 0; k < 8; k++) acc += lane[k];
    return acc;
}

/* Normalize row to unit length; false when it is (numerically) zero or not finite. */
static int normalize(float *row, int dim) {
    double nn = 0.0;
    for (int j = 0; j < dim; j++) nn += (double)row[j] * row[j];
    if (!(nn > 1e-30) || !isfinite(nn)) return 0;
    const double inv = 1.0 / sqrt(nn);
    for (int j = 0; j < dim; j++) row[j] = (float)(row[j] * inv);
    return 1;
}

double dict_code_error(const float *atoms, int N, int dim, const float *X, size_t n, int s) {
    uint16_t idx[MAXD], coef[MAXD];
    float resid[MAXD + 1];
    double sum = 0.0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        skv_mp_encode(atoms, N, dim, X + i * (size_t)dim, s, idx, coef, resid);
        if (resid[0] > 0.0f) {
            sum += (double)resid[s] / resid[0];
            cnt++;
        }
    }
    return cnt ? sum / (double)cnt : 0.0;
}

/* Spherical k-means init of atoms[N][dim] from N distinct random samples. */
static subkv_status kmeans_init(const float *X, size_t n, int dim, int N, int rounds,
                                synth_rng *rng, float *atoms, skv_err *err) {
    size_t *perm = malloc(n * sizeof *perm);
    double *sum = calloc((size_t)N * dim, sizeof *sum);
    size_t *cnt = calloc((size_t)N, sizeof *cnt);
    subkv_status st = SKV_OK;
    if (!perm || !sum || !cnt) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "no memory for k-means over %zu samples", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = 0; i + 1 < n; i++) { /* Fisher-Yates */
        size_t j = i + (size_t)(synth_rng_u64(rng) % (uint64_t)(n - i));
        size_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    size_t next = 0; /* next unused sample of perm, for seeds and empty clusters */
    for (int a = 0; a < N; a++) {
        float *row = atoms + (size_t)a * dim;
        do {
            memcpy(row, X + perm[next++ % n] * (size_t)dim, (size_t)dim * sizeof(float));
        } while (!normalize(row, dim) && next < 2 * n);
    }
    for (int r = 0; r < rounds; r++) {
        memset(sum, 0, (size_t)N * dim * sizeof *sum);
        memset(cnt, 0, (size_t)N * sizeof *cnt);
        for (size_t i = 0; i < n; i++) {
            const float *x = X + i * (size_t)dim;
            int best = 0;
            float bc = dotf(atoms, x, dim);
            for (int a = 1; a < N; a++) {
                float c = dotf(atoms + (size_t)a * dim, x, dim);
                if (fabsf(c) > fabsf(bc)) best = a, bc = c;
            }
            const double sg = bc < 0.0f ? -1.0 : 1.0;
            for (int j = 0; j < dim; j++) sum[(size_t)best * dim + j] += sg * x[j];
            cnt[best]++;
        }
        for (int a = 0; a < N; a++) {
            float *row = atoms + (size_t)a * dim;
            if (cnt[a])
                for (int j = 0; j < dim; j++) row[j] = (float)sum[(size_t)a * dim + j];
            if (!cnt[a] || !normalize(row, dim)) { /* empty: a fresh sample */
                memcpy(row, X + perm[next++ % n] * (size_t)dim, (size_t)dim * sizeof(float));
                if (!normalize(row, dim)) row[a % dim] = 1.0f;
            }
        }
    }
done:
    free(perm);
    free(sum);
    free(cnt);
    return st;
}

/* In-place Cholesky solve of (G) Y = B, G [N][N] SPD (lower triangle used), B [N][dim]. */
static int cholesky_solve(double *G, int N, double *B, int dim) {
    for (int j = 0; j < N; j++) {
        double *gj = G + (size_t)j * N;
        double dsum = gj[j];
        for (int k = 0; k < j; k++) dsum -= gj[k] * gj[k];
        if (!(dsum > 0.0)) return -1;
        const double ljj = sqrt(dsum);
        gj[j] = ljj;
        for (int i = j + 1; i < N; i++) {
            double *gi = G + (size_t)i * N;
            double t = gi[j];
            for (int k = 0; k < j; k++) t -= gi[k] * gj[k];
            gi[j] = t / ljj;
        }
    }
    for (int c = 0; c < dim; c++) { /* L y = b, then L^T x = y, column by column */
        for (int i = 0; i < N; i++) {
            double t = B[(size_t)i * dim + c];
            for (int k = 0; k < i; k++) t -= G[(size_t)i * N + k] * B[(size_t)k * dim + c];
            B[(size_t)i * dim + c] = t / G[(size_t)i * N + i];
        }
        for (int i = N - 1; i >= 0; i--) {
            double t = B[(size_t)i * dim + c];
            for (int k = i + 1; k < N; k++) t -= G[(size_t)k * N + i] * B[(size_t)k * dim + c];
            B[(size_t)i * dim + c] = t / G[(size_t)i * N + i];
        }
    }
    return 0;
}

/* One round: MP codes of every sample, then A = (C^T C + eps I)^-1 C^T X. Returns the mean
 * relative error of the codes; fills used[N] and the worst-coded samples' order. */
static double mod_round(const float *X, size_t n, int dim, int N, int s, float ridge, float *atoms,
                        double *G, double *B, int *used, float *rel) {
    uint16_t idx[MAXD], coef[MAXD];
    float resid[MAXD + 1];
    memset(G, 0, (size_t)N * N * sizeof *G);
    memset(B, 0, (size_t)N * dim * sizeof *B);
    memset(used, 0, (size_t)N * sizeof *used);
    double err_sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * (size_t)dim;
        skv_mp_encode(atoms, N, dim, x, s, idx, coef, resid);
        rel[i] = resid[0] > 0.0f ? resid[s] / resid[0] : 0.0f;
        err_sum += rel[i];
        /* merge repeated atoms: the code's coefficient of an atom is the sum of its picks */
        int u[MAXD], m = 0;
        double c[MAXD];
        for (int k = 0; k < s; k++) {
            int at = idx[k], f = -1;
            for (int q = 0; q < m; q++)
                if (u[q] == at) f = q;
            if (f < 0) {
                f = m++;
                u[f] = at;
                c[f] = 0.0;
            }
            c[f] += (double)skv_mp_coef(coef[k]);
        }
        for (int a = 0; a < m; a++) {
            used[u[a]] = 1;
            for (int b = 0; b <= a; b++) { /* lower triangle, both orders */
                const int r = u[a] > u[b] ? u[a] : u[b], cc = u[a] > u[b] ? u[b] : u[a];
                G[(size_t)r * N + cc] += c[a] * c[b];
            }
            double *brow = B + (size_t)u[a] * dim;
            for (int j = 0; j < dim; j++) brow[j] += c[a] * x[j];
        }
    }
    double tr = 0.0;
    for (int a = 0; a < N; a++) tr += G[(size_t)a * N + a];
    const double eps = (double)ridge * (tr > 0.0 ? tr / N : 1.0) + 1e-12;
    for (int a = 0; a < N; a++) G[(size_t)a * N + a] += eps;
    if (cholesky_solve(G, N, B, dim) == 0)
        for (size_t k = 0; k < (size_t)N * dim; k++) atoms[k] = (float)B[k];
    return n ? err_sum / (double)n : 0.0;
}

/* Largest eigenvalue of A^T A (= of A A^T), by power iteration on the dim x dim matrix. */
static double top_eigen(const float *A, int N, int dim) {
    double *M = calloc((size_t)dim * dim, sizeof *M), *x = malloc((size_t)dim * sizeof *x);
    double *y = malloc((size_t)dim * sizeof *y), lam = (double)N;
    if (!M || !x || !y) goto done; /* fall back to the bound ||A A^T|| <= N */
    for (int i = 0; i < N; i++) {
        const float *a = A + (size_t)i * dim;
        for (int r = 0; r < dim; r++)
            for (int c = 0; c < dim; c++) M[(size_t)r * dim + c] += (double)a[r] * a[c];
    }
    for (int j = 0; j < dim; j++) x[j] = 1.0 + 0.01 * j;
    for (int it = 0; it < 50; it++) {
        double nn = 0.0;
        for (int r = 0; r < dim; r++) {
            double t = 0.0;
            for (int c = 0; c < dim; c++) t += M[(size_t)r * dim + c] * x[c];
            y[r] = t;
            nn += t * t;
        }
        nn = sqrt(nn);
        if (!(nn > 0.0)) break;
        double xn = 0.0;
        for (int j = 0; j < dim; j++) xn += x[j] * x[j];
        lam = nn / sqrt(xn);
        for (int j = 0; j < dim; j++) x[j] = y[j] / nn;
    }
done:
    free(M), free(x), free(y);
    return lam;
}

/* A <- A - eta (A A^T - I) A: one gradient step on the incoherence penalty ||A A^T - I||^2,
 * with eta = lambda / ||A A^T||. Along a singular direction of A the step maps sigma to
 * sigma (1 + eta (1 - sigma^2)), which is stable for eta sigma^2 < 1: a fixed step is not
 * (clustered keys give ||A A^T|| in the hundreds at N = 1024, and a step of 0.02 wiped the
 * atoms out). */
static void incoherence_step(float *atoms, int N, int dim, float lambda, float *tmp) {
    lambda = (float)(lambda / top_eigen(atoms, N, dim));
    memcpy(tmp, atoms, (size_t)N * dim * sizeof(float));
    for (int i = 0; i < N; i++) {
        const float *ai = tmp + (size_t)i * dim;
        float *out = atoms + (size_t)i * dim;
        for (int j = 0; j < N; j++) {
            if (j == i) continue; /* the diagonal of A A^T - I is 0 for unit atoms */
            const float *aj = tmp + (size_t)j * dim;
            const float g = lambda * dotf(ai, aj, dim);
            for (int k = 0; k < dim; k++) out[k] -= g * aj[k];
        }
    }
}

typedef struct {
    size_t i;
    float r;
} worst_item;
static int cmp_worst(const void *a, const void *b) {
    const worst_item *x = a, *y = b;
    return (x->r < y->r) - (x->r > y->r);
}

subkv_status dict_train_table(const float *X, size_t n, int dim, int s, const dict_train_opts *o,
                              float *atoms, dict_train_report *rep, skv_err *err) {
    const int N = o->atoms;
    if (dim < 1 || dim > MAXD || s < 1 || s > dim || N < 1 || N > SKV_DICT_MAX_ATOMS ||
        o->iters < 0 || o->kmeans_iters < 0 || !(o->incoherence >= 0.0f) || !(o->ridge >= 0.0f))
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "bad training options: dim %d, s %d, atoms %d, iters %d", dim, s, N,
                             o->iters);
    if (n < (size_t)N)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "%zu samples for %d atoms: need >= atoms", n,
                             N);
    memset(rep, 0, sizeof *rep);
    synth_rng rng;
    synth_rng_seed(&rng, o->seed);
    double *G = malloc((size_t)N * N * sizeof *G), *B = malloc((size_t)N * dim * sizeof *B);
    int *used = malloc((size_t)N * sizeof *used);
    float *rel = malloc(n * sizeof *rel), *tmp = malloc((size_t)N * dim * sizeof *tmp);
    float *best = malloc((size_t)N * dim * sizeof *best);
    worst_item *worst = malloc(n * sizeof *worst);
    subkv_status st = SKV_OK;
    if (!G || !B || !used || !rel || !tmp || !best || !worst) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "no memory to train %d atoms", N);
        goto done;
    }
    SKV_CHECK_GOTO(kmeans_init(X, n, dim, N, o->kmeans_iters, &rng, atoms, err), st, done);
    double best_err = HUGE_VAL;
    for (int it = 0; it < o->iters; it++) {
        memcpy(tmp, atoms, (size_t)N * dim * sizeof(float)); /* the set e measures */
        const double e = mod_round(X, n, dim, N, s, o->ridge, atoms, G, B, used, rel);
        if (it == 0) rep->init_error = e;
        if (e < best_err) {
            best_err = e;
            memcpy(best, tmp, (size_t)N * dim * sizeof(float));
        }
        if (o->incoherence > 0.0f) {
            for (int a = 0; a < N; a++) normalize(atoms + (size_t)a * dim, dim);
            incoherence_step(atoms, N, dim, o->incoherence, tmp);
        }
        /* dead atoms (unused, zero after the update, or a near copy of an earlier atom: the
         * penalty step alone does not pull duplicates apart) take the worst-coded samples */
        for (int a = 0; a < N; a++)
            if (!normalize(atoms + (size_t)a * dim, dim)) used[a] = 0;
        for (int a = 0; a < N && o->max_coherence < 1.0f; a++)
            for (int b = 0; b < a && used[a]; b++)
                if (used[b] && fabsf(dotf(atoms + (size_t)a * dim, atoms + (size_t)b * dim, dim)) >
                                   o->max_coherence)
                    used[a] = 0;
        for (size_t i = 0; i < n; i++) worst[i] = (worst_item){i, rel[i]};
        qsort(worst, n, sizeof *worst, cmp_worst);
        size_t w = 0;
        int reseeded = 0;
        for (int a = 0; a < N; a++) {
            float *row = atoms + (size_t)a * dim;
            if (used[a]) continue;
            memcpy(row, X + worst[w++ % n].i * (size_t)dim, (size_t)dim * sizeof(float));
            if (!normalize(row, dim)) row[a % dim] = 1.0f;
            reseeded++;
        }
        rep->reseeded += reseeded;
        if (o->verbose)
            fprintf(stderr,
                    "  iter %d: mean relative error %.4f (codes before update), %d reseeded\n", it,
                    e, reseeded);
    }
    for (int a = 0; a < N; a++)
        if (!normalize(atoms + (size_t)a * dim, dim))
            atoms[(size_t)a * dim + (size_t)(a % dim)] = 1.0f;
    if (o->iters == 0) rep->init_error = dict_code_error(atoms, N, dim, X, n, s);
    rep->final_error = dict_code_error(atoms, N, dim, X, n, s);
    if (rep->final_error > best_err) { /* a later round did worse: keep the best set seen */
        memcpy(atoms, best, (size_t)N * dim * sizeof(float));
        rep->final_error = best_err;
    }
    double mc = 0.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++) {
            double c = fabs((double)dotf(atoms + (size_t)i * dim, atoms + (size_t)j * dim, dim));
            if (c > mc) mc = c;
        }
    rep->max_coherence = mc;
done:
    free(G);
    free(B);
    free(used);
    free(rel);
    free(tmp);
    free(best);
    free(worst);
    return st;
}
