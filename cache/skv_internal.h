/*
 * skv_internal.h — what the policies of cache/ share and nothing outside cache/ (and the
 * CUDA backend, which mirrors it) should touch: typed row stores, half conversions, the
 * counter-based RNG, the weighted-entry attend accumulator, (de)serialization cursors,
 * and the policy vtable.
 */
#ifndef SUBKV_INTERNAL_H
#define SUBKV_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "skv_check.h"
#include "skv_hd.h"
#include "subkv.h"

enum { SKV_MAX_HEAD_DIM = 1024 };

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "subkv serializes host floats as little-endian; a big-endian port needs byte swaps"
#endif

/* ---- half precision (round to nearest even) ------------------------------------------ */

static inline uint32_t skv_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float skv_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t skv_f32_to_f16(float f);
float skv_f16_to_f32(uint16_t h);

static inline uint16_t skv_f32_to_bf16(float f) { return skv_hd_f32_to_bf16(f); }
static inline float skv_bf16_to_f32(uint16_t h) { return skv_bits_f32((uint32_t)h << 16); }

/* ---- typed row store: `cap` rows of d elements of one dtype ---------------------------- */

typedef struct skv_rows {
    skv_dtype dtype;
    int d;
    size_t cap;
    void *data;
} skv_rows;

static inline size_t skv_rows_row_bytes(const skv_rows *r) {
    return (size_t)r->d * skv_dtype_size(r->dtype);
}
void skv_rows_put(skv_rows *r, size_t i, const float *x);
void skv_rows_get(const skv_rows *r, size_t i, float *x);
void skv_rows_copy(skv_rows *dst, size_t i, const skv_rows *src, size_t j);
/* <row i, q> accumulated in float with 8 independent lanes. */
float skv_rows_dot(const skv_rows *r, size_t i, const float *q);
/* out[i] = <row start+i, q> for i < count, the same arithmetic as skv_rows_dot. */
void skv_rows_dot_block(const skv_rows *r, size_t start, size_t count, const float *q, float *out);
/* acc[d] += w * row i */
void skv_rows_axpy(const skv_rows *r, size_t i, double w, double *acc);

/* ---- counter-based RNG (Philox4x32-10) ------------------------------------------------- */

/* Purposes keep the streams of different decisions apart. */
enum { SKV_COIN_CLUSTER = 1, SKV_COIN_VALUE = 2, SKV_COIN_MERGE = 3 };

typedef struct skv_rng_key {
    uint32_t k0, k1;
} skv_rng_key;

/* Key from (seed, sequence, layer, head). */
skv_rng_key skv_rng_make_key(uint64_t seed, uint64_t seq, uint32_t layer, uint32_t head);
void skv_philox4x32(const uint32_t ctr[4], skv_rng_key key, uint32_t out[4]);
/*
 * The coin of (token, slot, purpose): a uniform 32-bit word. Slots are grouped by four
 * per Philox call: counter (token lo, token hi, slot / 4, purpose), word slot % 4.
 * A coin "accepts with probability p" when coin < p * 2^32, compared in double; the
 * GPU backend draws and compares identically.
 */
uint32_t skv_coin(skv_rng_key key, uint64_t token, uint32_t slot, uint32_t purpose);
/* coins of slots 0..n-1 of (token, purpose) into out[n], equal to skv_coin of each slot */
void skv_coins(skv_rng_key key, uint64_t token, uint32_t purpose, uint32_t n, uint32_t *out);
static inline bool skv_coin_accept(uint32_t coin, double p) { return skv_hd_coin_accept(coin, p); }

/* ---- weighted-entry accumulator (DESIGN.md section 3) ----------------------------------- */

/*
 * One query's running partial over entries (k, v, a, b): m = max score,
 * l = sum a e^(s-m), o = sum b e^(s-m) v. Accumulates in double; entries are visited
 * in blocks so the rescale of o happens at most once per block.
 */
typedef struct skv_acc {
    int d;
    double m;
    double l;
    double *o; /* d doubles, owned by the caller */
} skv_acc;

void skv_acc_init(skv_acc *acc, int d, double *o_storage);
/*
 * Add rows [start, start + count) of K (and V, when not NULL). Weights of row i:
 * a * a_w[i] and b * b_w[i], the arrays (indexed like the rows) taken as all ones
 * when NULL.
 * q must already be scaled by 1/sqrt(d).
 */
void skv_acc_add_rows(skv_acc *acc, const float *q, const skv_rows *K, const skv_rows *V,
                      size_t start, size_t count, const float *a_w, double a, const float *b_w,
                      double b);
/* Write the accumulator as a float partial (m rounded to float, l and o rescaled). */
void skv_acc_finish(const skv_acc *acc, skv_partial *out);

/*
 * A sketch as its weighted entries (DESIGN.md section 3): every policy lists its stored
 * rows as segments (rows of K, of V or none, weights as in skv_acc_add_rows), and a sink
 * consumes them: the CPU attend accumulates them, skv_sketch_entries copies them out for
 * the GPU backend.
 */
typedef struct skv_seg_sink {
    void (*rows)(struct skv_seg_sink *sink, const skv_rows *K, const skv_rows *V, size_t start,
                 size_t count, const float *a_w, double a, const float *b_w, double b);
} skv_seg_sink;

/*
 * A flat copy of a sketch's entries: n rows of keys and values in the storage dtype (zero
 * value rows where an entry has none) and per-row weights a (normalizer), b (numerator).
 * Attention over them equals the sketch's own attend.
 */
typedef struct skv_entries {
    skv_dtype dtype;
    int d;
    size_t n, cap;
    void *k, *v;
    float *a, *b;
} skv_entries;

/* Fill *out (zero-initialise it first; reusable) with the entries of s. */
subkv_status skv_sketch_entries(const skv_sketch *s, skv_entries *out, skv_err *err);
/* The same from entry index `first` on (the tail an append-only exact cache added since). */
subkv_status skv_sketch_entries_from(const skv_sketch *s, skv_entries *out, size_t first,
                                     skv_err *err);
void skv_entries_free(skv_entries *e);
/* CPU attend of one pre-scaled query over entries (the reference for the GPU kernel). */
void skv_entries_attend(const skv_entries *e, const float *qs, skv_partial *out);

/* The coded rows of a csr sketch (cache/csr.c) for a kernel that reads codes directly
 * (cuda/skv_csr_cuda.h): *n rows of 2 s atom indices and 2 s float16 coefficients each, in
 * token order after the sinks (s key pairs, then ceil(s/2) and floor(s/2) pairs over the
 * value halves). Borrowed: valid until the sketch's next append, load or destroy.
 * SKV_ERR_INVALID_ARG for a sketch of another policy. */
subkv_status skv_csr_codes(const skv_sketch *s, const uint16_t **idx, const uint16_t **coef,
                           size_t *n, skv_err *err);

/*
 * Coding an append elsewhere (the GPU worker, worker/gpu_csr.c). csr codes a token when it
 * leaves the exact part, not when it arrives: with a window, an append of n tokens codes
 * the oldest window rows it pushes out (rows stored earlier, or this append's own tokens
 * once they pass through the window), each read back from the window in the sketch's dtype;
 * without one, every token past the sinks as given. skv_csr_code_inputs says which: *m
 * (<= n) tokens, and with kin/vin (room for *m rows of d floats each) the float32 rows
 * csr_append would hand to skv_mp_encode, in coding order: the key as coded (pre-rotary
 * codes: already turned back by R(-p) at its row's position), the value as is. Changes
 * nothing. SKV_ERR_INVALID_ARG for another policy.
 */
subkv_status skv_csr_code_inputs(const skv_sketch *s, const float *K, const float *V, size_t n,
                                 float *kin, float *vin, size_t *m, skv_err *err);
/*
 * skv_sketch_append(s, K, V, n, d) with the m codes of those rows given (m rows of 2 s atom
 * indices and float16 coefficients each in csr's layout, as skv_mp_encode writes them for
 * skv_csr_code_inputs' rows: key s pairs, then value halves ceil(s/2) and floor(s/2)): the
 * sinks and the window take their rows from K and V as in a plain append, the coded rows
 * are copied instead of coded. With the codes skv_mp_encode gives, the sketch ends exactly
 * (checkpoint bytes) as after skv_sketch_append. Checks what skv_sketch_append checks, that
 * m is the append's count, that every index is < atoms and every coefficient finite, before
 * changing anything; SKV_ERR_INVALID_ARG for another policy or a wrong m.
 */
subkv_status skv_csr_append_codes(skv_sketch *s, const float *K, const float *V, size_t n, int d,
                                  const uint16_t *idx, const uint16_t *coef, size_t m,
                                  skv_err *err);

/* Token t (< tokens seen) of csr sketch s as its attend sees it, into k[d], v[d] (float32; v
 * NULL: the key alone): the stored row of a sink or window token, else the reconstruction of
 * its codes (float32 sums, before the storage rounding csr's segments apply). For a refreshkv
 * csr store (cache/refreshkv_csr.c); no checks: s must be a csr sketch. */
void skv_csr_token(const skv_sketch *s, uint64_t t, float *k, float *v);
/* Key + value bytes one attend of csr sketch s reads: its exact rows and 8 s per coded token. */
uint64_t skv_csr_read_bytes(const skv_sketch *s);

struct skv_sinkwin;
/* A csr sketch as the GPU worker mirrors it (worker/gpu_csr.c), borrowed like
 * skv_csr_codes: the exact part (sinks and window ring as stored, rows in the sketch's
 * dtype), the coded rows from `first` on, and the sketch's dictionary tables. */
typedef struct skv_csr_parts {
    const struct skv_sinkwin *sw;
    const uint16_t *idx, *coef; /* coded rows [first, n): row first at idx[0], coef[0] */
    size_t first, n;            /* n: every coded row; n - first rows from idx / coef */
    int sparsity, atoms;
    int group;                   /* the layer group of cfg.dict the tables belong to */
    const float *dk, *dv0, *dv1; /* host tables of that group: [atoms][d], [atoms][d/2] x 2 */
    float rope_base;             /* > 0: pre-rotary codes (the decoded key is rotated) */
} skv_csr_parts;
/* Fill *out for csr sketch s from coded row `first` on (first <= the coded rows, so an
 * append-only mirror asks for what it lacks). SKV_ERR_INVALID_ARG for another policy or a
 * first past the end. */
subkv_status skv_csr_parts_from(const skv_sketch *s, size_t first, skv_csr_parts *out,
                                skv_err *err);

/* Grow *buf (an array of elements of elem bytes, capacity *cap) to hold at least need,
 * doubling; contents kept. SKV_ERR_NOMEM leaves *buf and *cap as they were. The scratch
 * buffers of the coordinator, the workers and the GPU staging all grow through this. */
subkv_status skv_grow(void **buf, size_t *cap, size_t need, size_t elem, skv_err *err);

/* ---- serialization cursors ------------------------------------------------------------ */

typedef struct skv_writer {
    skv_buf *buf;
    bool failed; /* allocation failed */
} skv_writer;

void skv_w_bytes(skv_writer *w, const void *p, size_t n);
void skv_w_u32(skv_writer *w, uint32_t v);
void skv_w_u64(skv_writer *w, uint64_t v);
void skv_w_f32(skv_writer *w, float v);
void skv_w_f64(skv_writer *w, double v);
void skv_w_rows(skv_writer *w, const skv_rows *r, size_t nrows);

typedef struct skv_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool failed; /* read past the end */
} skv_reader;

bool skv_r_bytes(skv_reader *r, void *dst, size_t n);
uint32_t skv_r_u32(skv_reader *r);
uint64_t skv_r_u64(skv_reader *r);
float skv_r_f32(skv_reader *r);
double skv_r_f64(skv_reader *r);
/* Read nrows rows into r (nrows <= r->cap checked by the caller); false on short input. */
bool skv_r_rows(skv_reader *rd, skv_rows *r, size_t nrows);
/* true when every float of the last nrows rows read is finite */
bool skv_rows_finite(const skv_rows *r, size_t nrows);

uint32_t skv_crc32c(const void *data, size_t n);

/* ---- sketches and policies ------------------------------------------------------------- */

typedef struct skv_policy_ops skv_policy_ops;

struct skv_sketch {
    skv_config cfg; /* resolved */
    const skv_policy_ops *ops;
    uint64_t tokens_seen;
    size_t heap_bytes; /* every allocation of this sketch, the struct included */
    void *impl;
};

struct skv_policy_ops {
    skv_policy_id id;
    /* Fill defaults, derive budgeted parameters, validate; no allocation. */
    subkv_status (*resolve)(skv_config *cfg, skv_err *err);
    /* Exact bytes a sketch with this resolved config allocates at create (without the
     * growth of an unbounded exact cache). */
    size_t (*create_bytes)(const skv_config *cfg);
    /* Optional (policies that grow up to max_tokens: exact, refreshkv's full store, csr's
     * codes): bytes each held token adds beyond create_bytes. NULL: the sketch never grows
     * past create_bytes. skv_config_max_bytes is create_bytes + max_tokens * token_bytes. */
    size_t (*token_bytes)(const skv_config *cfg);
    subkv_status (*init)(skv_sketch *s, skv_err *err);
    void (*fini)(skv_sketch *s);
    /* n >= 1 validated tokens; must leave the sketch unchanged when it fails. */
    subkv_status (*append)(skv_sketch *s, const float *K, const float *V, size_t n, skv_err *err);
    /* List the stored entries as segments into sink (in a fixed order). */
    void (*segments)(const skv_sketch *s, skv_seg_sink *sink);
    /* Optional: attend with side effects (h2o's scores). NULL: the generic attend over the
     * segments. One validated query, already scaled by 1/sqrt(d). */
    subkv_status (*attend)(skv_sketch *s, const float *qs, skv_partial *out, skv_err *err);
    /* Optional: the per-attend CPU work over the whole group (see skv_sketch_attend_begin):
     * g validated, unscaled queries Q[g][d]; sets *done (1: out written). NULL: nothing. */
    subkv_status (*attend_begin)(skv_sketch *s, const float *Q, int g, skv_partial *out, int *done,
                                 skv_err *err);
    /* Optional: make the next attend a full step (refreshkv). */
    void (*refresh)(skv_sketch *s);
    void (*stats)(const skv_sketch *s, skv_stats *st);
    void (*save)(const skv_sketch *s, skv_writer *w);
    subkv_status (*load)(skv_sketch *s, skv_reader *r, skv_err *err);
};

/* ---- refreshkv with a SubGen full store (refreshkv_sub.c) ------------------------------ */

enum { SKV_RKV_DOT_BLOCK = 256 };

/* A candidate of a re-selection: row `row` of k and v (in the store), listing order, score. */
typedef struct skv_rkv_cand {
    const skv_rows *k, *v;
    uint32_t row, order;
    float score;
} skv_rkv_cand;

/* The SubGen store's config from refreshkv config p, with that budget (0: raw fields). */
void skv_rkv_sub_config(const skv_config *p, size_t budget, skv_config *c);
/* The store's resolved config (budget 0: its raw fields) and its cost: the store's bytes
 * plus the candidate scratch. */
subkv_status skv_rkv_sub_resolve(const skv_config *cfg, size_t budget, skv_config *sc, size_t *cost,
                                 skv_err *err);
/* A bounded store's budget (budget_bytes > 0): half of it, less the fixed state, derives the
 * partial cache's K (at least 1, written to cfg); *rest = what is left for the store.
 * SKV_ERR_BUDGET when the budget cannot hold the state and one partial token. */
subkv_status skv_rkv_split_partial(skv_config *cfg, size_t fixed, size_t row, size_t *rest,
                                   skv_err *err);
/* Resolve refreshkv's store fields (and, with a budget, split it: K from half, the store
 * from the rest); fixed = refreshkv's state bytes, row = bytes per partial-cache token. */
subkv_status skv_rkv_sub_split(skv_config *cfg, size_t fixed, size_t row, skv_err *err);
/* Read a saved store from r; it must match expect's config and bytes, and hold tokens_seen
 * tokens. SKV_ERR_CORRUPT otherwise. */
subkv_status skv_rkv_sub_load(skv_reader *r, const skv_sketch *expect, uint64_t tokens_seen,
                              skv_sketch **out, skv_err *err);
/* Write the kept candidates cand[0, n) (descending; those whose k is pk are rows of the
 * partial cache itself, moved in place) as partial rows 0..n-1 ascending, with their scores
 * (capped at 1) and position 0; perm: pcap scratch. The caller sets pn = n, phead = 0. */
void skv_rkv_sub_place(skv_rows *pk, skv_rows *pv, double *pscore, uint64_t *ppos, uint32_t *perm,
                       size_t pcap, const skv_rkv_cand *cand, size_t n);
/* Move partial rows along a partial permutation: row r goes to row dest[r] unless dest[r] is
 * SKV_RKV_NO_ROW (rows that stay put are marked so too); rows nothing lands on keep their bytes
 * (the caller fills them). In place, through two row buffers; dest[pcap] is consumed. */
#define SKV_RKV_NO_ROW UINT32_MAX
void skv_rkv_move_rows(skv_rows *pk, skv_rows *pv, uint32_t *dest, size_t pcap);
/* Most candidates a store of resolved config c lists (rows with values). */
size_t skv_rkv_sub_max_cands(const skv_config *c);
/* Full step over store sub: out[g] = its estimate for Q[g][d] (unscaled); the candidates are
 * the store's rows with values and the rows owner_rows(owner) lists (the partial cache);
 * cand[0, *n_out) = the best min(keep, distinct) of them, descending; *rows_read = key and
 * value rows the step read from the store. cap >= the store's max candidates + the owner's
 * rows. */
subkv_status skv_rkv_sub_full_step(skv_sketch *sub, const skv_sketch *owner,
                                   void (*owner_rows)(const skv_sketch *, skv_seg_sink *),
                                   const float *Q, int g, skv_partial *out, skv_rkv_cand *cand,
                                   size_t cap, size_t keep, size_t *n_out, uint64_t *rows_read,
                                   skv_err *err);

/* ---- refreshkv's attend in parts (cache/refreshkv.c, refreshkv_full.c) ---------------------
 * For a worker that runs the full step's attention and token scores on a GPU (worker/
 * gpu_refresh.c); the decision stays here, on the CPU, and so does the selection's
 * authoritative copy: from the scores (skv_rkv_apply) or from the device's own top-K
 * (skv_rkv_apply_indices). */

/* Decide the attend of Q[g][d] (validated, unscaled). *full = 0: a partial step, counted now
 * (attend the partial cache: skv_sketch_entries / the segments). *full = 1: a full step is
 * due; an exact store's queue has been flushed into the host full store (which stays the
 * authoritative copy: checkpoints save it, a device mirror uploads rows from it), and the
 * caller attends rows [0, n) of skv_rkv_full_rows, scores them and calls skv_rkv_apply. Until
 * then the step stays due (nothing else changed), so a failed device step is retried. */
subkv_status skv_rkv_plan(skv_sketch *s, const float *Q, int g, int *full, skv_err *err);
/* skv_sketch_append's checks of its arguments (NULL, n >= 1, head_dim, overflow, finite K and
 * V), for appends that take another way in (skv_csr_append_codes). */
subkv_status skv_sketch_check_append(const skv_sketch *s, const float *K, const float *V, size_t n,
                                     int d, skv_err *err);
/* skv_sketch_attend's checks of its arguments (NULL, group size, head_dim, finite queries). */
subkv_status skv_sketch_check_attend(const skv_sketch *s, const float *Q, int g, int d,
                                     skv_err *err);
/* An exact full store: rows [0, *n) of *k and *v, host memory, append-only. */
void skv_rkv_full_rows(const skv_sketch *s, const skv_rows **k, const skv_rows **v, size_t *n);
/* Finish a planned full step of an exact store from the pooled token scores pooled[n] (n = the
 * store's rows; what skv_rkv_maxpool gives for prob[t] = max over the g heads of
 * e^(s_h(t) - m_h) / l_h): the partial cache becomes the top partial_tokens tokens ascending
 * (ties: the later token), the reference query Q's group mean, the counters count the step.
 * SKV_ERR_INVALID_ARG for another policy or store, or n not the store's rows. */
subkv_status skv_rkv_apply(skv_sketch *s, const float *Q, int g, const float *pooled, size_t n,
                           skv_err *err);
/* skv_rkv_apply with the selection made elsewhere (a GPU's top-K): idx[k], score[k] are the
 * selected tokens and their pooled scores in the partial cache's order, ascending by (score,
 * token), k = min(partial_tokens, the store's rows). O(k) small writes: the rows themselves
 * are only marked as due from the host full store (the device already gathered its copy) and
 * copied in when something reads the host rows (a save, the CPU attend, skv_sketch_entries,
 * skv_rkv_materialize before a whole-ring upload); a push over a due row just writes it. Every
 * reader thus sees the sketch exactly as skv_rkv_apply(pooled) leaves it when idx, score are
 * the top k of pooled (skv_rkv_topk). SKV_ERR_INVALID_ARG, changing nothing, for another
 * policy or store, a wrong k, a token outside the store, a NaN score or entries not strictly
 * ascending. */
subkv_status skv_rkv_apply_indices(skv_sketch *s, const float *Q, int g, const uint32_t *idx,
                                   const float *score, size_t k, skv_err *err);
/* The host reference of that selection: the *got = min(k, n) best of pooled[n] by (score,
 * token) descending — the later token wins a tie, -0 equals +0 — written ascending into idx,
 * score (room for min(k, n) each). O(n log n): tests and benchmarks. SKV_ERR_INVALID_ARG for
 * a NaN score or n >= 2^32, SKV_ERR_NOMEM. */
subkv_status skv_rkv_topk(const float *pooled, size_t n, size_t k, uint32_t *idx, float *score,
                          size_t *got, skv_err *err);
/* pooled[t] = max of prob[j] over |j - t| <= pool / 2 (pool odd), j in [0, n). */
void skv_rkv_maxpool(const float *prob, size_t n, int pool, float *pooled);
/* The pooled scores of the last CPU full step (an exact store's rows [0, *n)): tests. */
void skv_rkv_scores(const skv_sketch *s, const float **pooled, size_t *n);
/* The partial cache's token positions and scores in ascending score order (room for
 * partial_tokens each); returns how many it holds. */
size_t skv_rkv_partial(const skv_sketch *s, uint64_t *pos, double *score);
/* The partial cache as stored: a ring whose physical rows [0, pn) of k, v hold its tokens
 * (attention over them in any order is the same). A push writes row `next` and advances it
 * (mod pcap), so of the rows pushed since a mirror last saw `pushes`, the last
 * min(delta, pcap) are rows next - delta .. next - 1 (mod pcap); `layout` changes when rows
 * are rearranged wholesale (a selection, a load): then everything changed. Rows
 * [pend_lo, pend_hi) are not yet installed in k, v (skv_rkv_apply_indices): call
 * skv_rkv_materialize before reading them. Pushed rows never are, so a mirror that took the
 * selection on the device (skv_gpu_ring_current) and then uploads only pushed rows never needs
 * it. `materialized` counts the rows installed so far (tests, benchmarks). Reads nothing but
 * counters: no materialisation. */
typedef struct skv_rkv_ring_view {
    const skv_rows *k, *v;
    size_t pn, pcap, next;
    uint64_t pushes, layout;
    size_t pend_lo, pend_hi;
    uint64_t materialized;
} skv_rkv_ring_view;
void skv_rkv_ring(const skv_sketch *s, skv_rkv_ring_view *out);
/* Install the partial-cache rows a skv_rkv_apply_indices left pending (copies from the host
 * full store; nothing when none or for another policy). */
void skv_rkv_materialize(skv_sketch *s);

extern const skv_policy_ops skv_policy_exact_ops;
extern const skv_policy_ops skv_policy_sinkwin_ops;
extern const skv_policy_ops skv_policy_h2o_ops;
extern const skv_policy_ops skv_policy_subgen_ops;
extern const skv_policy_ops skv_policy_refreshkv_ops;
extern const skv_policy_ops skv_policy_csr_ops;

/* Allocation accounted in s->heap_bytes (zeroed). NULL on failure. */
void *skv_sketch_alloc(skv_sketch *s, size_t bytes);
void skv_sketch_free(skv_sketch *s, void *p, size_t bytes);
/* Grow (or shrink) an accounted allocation; NULL on failure with *p untouched. */
void *skv_sketch_realloc(skv_sketch *s, void *p, size_t old_bytes, size_t new_bytes);
/* Allocate a row store of cap rows (cap may be 0). */
subkv_status skv_sketch_rows(skv_sketch *s, skv_rows *r, skv_dtype dt, int d, size_t cap,
                             skv_err *err);
void skv_sketch_rows_free(skv_sketch *s, skv_rows *r);
/* Bytes skv_sketch_rows allocates. */
static inline size_t skv_rows_bytes(skv_dtype dt, int d, size_t cap) {
    return cap * (size_t)d * skv_dtype_size(dt);
}

/* Bytes of the sketch struct itself, counted by every policy's create_bytes. */
size_t skv_sketch_base_bytes(void);

/* ---- exact sinks + sliding window, shared by sinkwin and subgen ------------------------ */

typedef struct skv_sinkwin {
    int sinks, window;
    size_t nsinks;   /* filled sinks */
    size_t wfill;    /* filled window rows */
    size_t whead;    /* next window row to overwrite (oldest when full) */
    skv_rows sk, sv; /* sinks */
    skv_rows wk, wv; /* window ring */
} skv_sinkwin;

size_t skv_sinkwin_bytes(skv_dtype dt, int d, int sinks, int window);
subkv_status skv_sinkwin_init(skv_sketch *s, skv_sinkwin *sw, int sinks, int window, skv_err *err);
void skv_sinkwin_fini(skv_sketch *s, skv_sinkwin *sw);
/*
 * Push one token. When a token leaves the window (or there is no window and the sinks
 * are full) it is returned through k_out/v_out (float32, d each) and the function
 * returns true; the caller sketches it.
 */
bool skv_sinkwin_push(skv_sinkwin *sw, const float *k, const float *v, float *k_out, float *v_out);
void skv_sinkwin_segments(const skv_sinkwin *sw, skv_seg_sink *sink);
/*
 * What pushing the stream's tokens [before, now) changed in sw (as it is after them), for a
 * copy of its rows kept elsewhere (the GPU worker's mirror): sink rows [*s0, nsinks) and
 * window ring slots in up to two ranges w[i] = {first slot, count}; returns how many (0..2).
 * before = 0 (or now < before: a copy of unknown age) reports every held row.
 */
int skv_sinkwin_changed(const skv_sinkwin *sw, uint64_t before, uint64_t now, size_t *s0,
                        size_t w[2][2]);
/* The generic attend: segments of s accumulated for one pre-scaled query. */
void skv_attend_segments(const skv_sketch *s, const float *qs, skv_partial *out);
void skv_sinkwin_save(const skv_sinkwin *sw, skv_writer *w);
subkv_status skv_sinkwin_load(skv_sinkwin *sw, skv_reader *r, skv_err *err);

/* ---- SubGen's state (cache/subgen.c), shared with the GPU ingest (cuda/dsub.c) --------- */

/* The state of a subgen sketch (s->impl). cuda/dsub.c copies it to and from the device
 * image the GPU append kernel updates, so both sides hold the same fields, bit for bit. */
typedef struct skv_subgen_impl {
    skv_sinkwin sw;
    skv_rng_key key;
    int mcap, t, s;
    bool cluster_values;
    int nclusters;
    float delta; /* current radius; 0 until the first key is sketched when auto */
    uint32_t merges;
    float *centers;  /* mcap x d, float32 */
    uint64_t *count; /* mcap */
    skv_rows ck, cv; /* mcap*t reservoir samples: keys, and values with values=cluster */
    double mu;       /* l2: sum of ||v||^2 over sketched tokens */
    bool slots_full; /* l2: every slot holds a token (all fill at the first v != 0) */
    skv_rows lk, lv; /* l2: s slots */
    float *inv_norm; /* l2: 1 / ||v||^2 of each slot's token */
} skv_subgen_impl;

#endif /* SUBKV_INTERNAL_H */
