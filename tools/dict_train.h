/*
 * dict_train.h — offline dictionary learning for the CSR policy (cache/csr_dict.h), used by
 * `subkv-dict train` and the tests.
 *
 * One table of N unit atoms in R^dim is learned from samples X[n][dim]:
 *   1. init: spherical k-means (k-means on directions with sign-aligned means: what the first
 *      matching-pursuit step matches) from N distinct random samples;
 *   2. for each iteration: code every sample with s steps of matching pursuit (float16
 *      coefficients, skv_mp_encode), then the least-squares dictionary update (MOD, Engan et
 *      al.): A = (C^T C + eps I)^-1 C^T X with C the n x N sparse codes, solved by Cholesky;
 *   3. the paper's incoherence penalty mu ||A A^T - I||_F^2, as one gradient step on it,
 *      A <- A - eta (A A^T - I) A with eta = incoherence / ||A A^T|| (stable, see the .c),
 *      then every atom renormalized;
 *      atoms no sample used, and atoms within max_coherence of an earlier atom, are reseeded
 *      with the worst-coded samples (their directions).
 * The reported error is the mean over samples of ||x - x^|| / ||x|| of the codes of that
 * iteration (before its update); the final error is measured after the last update, and
 * when an earlier round's set (the init included) coded better, that set is kept: reseeding
 * can make a round worse (many atoms in few dimensions), never the result.
 */
#ifndef SUBKV_DICT_TRAIN_H
#define SUBKV_DICT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

typedef struct dict_train_opts {
    int atoms;           /* N (default 1024)                                        */
    int sparsity;        /* s for keys (default 8); value halves ceil/floor(s/2)   */
    int iters;           /* MP + update rounds (default 8)                           */
    int kmeans_iters;    /* spherical k-means rounds of the init (default 5)        */
    float incoherence;   /* incoherence step, a fraction of 1/norm(A A^T) (0.1; 0: none) */
    float ridge;         /* eps of the least-squares update (default 1e-3)          */
    float max_coherence; /* an atom with |<a, b>| above this for an earlier b is   */
                         /* reseeded (default 0.99; >= 1: never)                   */
    uint64_t seed;
    int verbose; /* print one line per iteration to stderr */
} dict_train_opts;

void dict_train_defaults(dict_train_opts *o);

typedef struct dict_train_report {
    double init_error;    /* mean relative error of the k-means init, s atoms       */
    double final_error;   /* the same after the last update                          */
    double max_coherence; /* max |<a_i, a_j>|, i != j, of the result              */
    int reseeded;         /* atoms reseeded over all iterations                      */
} dict_train_report;

/*
 * Learn atoms[N][dim] (written, unit rows) from X[n][dim] (n >= N samples, not all zero).
 * s here is the number of atoms per sample. SKV_ERR_INVALID_ARG on bad options or too few
 * samples, SKV_ERR_NOMEM.
 */
subkv_status dict_train_table(const float *X, size_t n, int dim, int s, const dict_train_opts *o,
                              float *atoms, dict_train_report *rep, skv_err *err);

/* Mean relative reconstruction error of X[n][dim] coded with s MP steps over atoms[N][dim]. */
double dict_code_error(const float *atoms, int N, int dim, const float *X, size_t n, int s);

/*
 * `subkv-dict eval` (tools/dict_eval.c): the set at dict_path measured on a trace, one table
 * row per sparsity ss[i] (key / value reconstruction error, csr attention error against
 * float64 exact with an exact window, sinkwin at the same bytes); rope_base > 0 codes keys
 * pre-rotary (csr rope_base, a pre-rotary set). Prints to stdout; returns
 * the exit code (0 ok, 1 failure, the message on stderr).
 */
int dict_eval(const char *dict_path, const char *trace_path, const int *ss, int nss, int window,
              int queries, double rope_base);

#endif /* SUBKV_DICT_TRAIN_H */
