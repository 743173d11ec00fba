/*
 * subkv.h — the public contract of the sketch library (cache/, plain C11).
 *
 * One KV head of one layer of one sequence is a *sketch*. A sketch ingests keys and
 * values in token order (skv_sketch_append) and answers the g query heads of one GQA
 * group with mergeable partials (skv_sketch_attend). See DESIGN.md sections 2 and 3.
 *
 * Conventions
 *  - Every fallible function returns a subkv_status and, when `err` is not NULL, fills
 *    it with the same code and a human-readable message. A failed call leaves the
 *    sketch exactly as it was.
 *  - Inputs are float32, row-major: K[n][d], V[n][d], Q[g][d].
 *  - No global mutable state: the library is reentrant; one sketch must not be used by
 *    two threads at once.
 */
#ifndef SUBKV_H
#define SUBKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes -------------------------------------------------------------- */

typedef enum subkv_status {
    SKV_OK = 0,
    SKV_ERR_INVALID_ARG = 1,  /* NULL pointer, bad enum, g < 1, bad parameter      */
    SKV_ERR_SHAPE = 2,        /* head_dim of the call differs from the sketch's    */
    SKV_ERR_EMPTY = 3,        /* n == 0 tokens                                     */
    SKV_ERR_NONFINITE = 4,    /* NaN or Inf in K, V or Q                           */
    SKV_ERR_BUDGET = 5,       /* budget too small for the fixed parts, or exceeded */
    SKV_ERR_NOMEM = 6,        /* allocation failed                                 */
    SKV_ERR_CORRUPT = 7,      /* bad magic, checksum mismatch, inconsistent fields */
    SKV_ERR_TRUNCATED = 8,    /* serialized buffer ends early                      */
    SKV_ERR_VERSION = 9,      /* serialized format version not understood          */
    SKV_ERR_UNSUPPORTED = 10, /* unknown policy or dtype, op not supported         */
    SKV_ERR_NOT_FOUND = 11,   /* unknown sequence / object (service layers)        */
    SKV_ERR_IO = 12,          /* read/write/socket failure (service layers)        */
    SKV_ERR_PROTOCOL = 13,    /* malformed frame or message (service layers)       */
    SKV_ERR_INTERNAL = 14,    /* a bug: an invariant did not hold                  */
    SKV_ERR_DEVICE = 15,      /* CUDA / NCCL failure (GPU backend)                 */
    SKV_ERR_AUTH = 16,        /* missing or wrong shared token (service layers)    */
    SKV_ERR_WORKER_LOST = 17, /* a worker died or missed its deadline (service)    */
    SKV_ERR_LIMIT = 18,       /* a per-client limit would be exceeded (service)    */
    SKV_STATUS_COUNT
} subkv_status;

/* Short stable name of a status ("SKV_ERR_SHAPE"); never NULL. */
const char *subkv_status_name(subkv_status s);

/* Error detail filled by fallible calls. */
typedef struct skv_err {
    subkv_status code;
    char msg[200];
} skv_err;

/* ---- enums ------------------------------------------------------------------------ */

typedef enum skv_dtype { SKV_DTYPE_F32 = 0, SKV_DTYPE_F16 = 1, SKV_DTYPE_BF16 = 2 } skv_dtype;

typedef enum skv_policy_id {
    SKV_POLICY_EXACT = 0,     /* every token, exact attention                       */
    SKV_POLICY_SINKWIN = 1,   /* StreamingLLM: first S sinks + last W tokens        */
    SKV_POLICY_H2O = 2,       /* heavy hitters by accumulated attention + recent W  */
    SKV_POLICY_SUBGEN = 3,    /* SubGen sketch + exact sinks and window             */
    SKV_POLICY_REFRESHKV = 4, /* RefreshKV: full store + refreshed top-K partial  */
    SKV_POLICY_CSR = 5,       /* sparse codes over a learned dictionary + window    */
    SKV_POLICY_COUNT
} skv_policy_id;

typedef enum skv_values_mode {
    SKV_VALUES_L2 = 0,      /* paper: s-slot l2 reservoir for the numerator       */
    SKV_VALUES_CLUSTER = 1, /* stratified: cluster reservoirs keep (k, v) pairs   */
} skv_values_mode;

/* Who decides a refreshkv full step (see skv_config.decide). */
typedef enum skv_decide_mode {
    SKV_DECIDE_LAYER = 0, /* the paper: per (sequence, layer), from all its query heads   */
    SKV_DECIDE_GROUP = 1, /* each (layer, kv-head) sketch from its GQA group's queries    */
} skv_decide_mode;

/* What a refreshkv sketch keeps every token in (see skv_config.full_store). */
typedef enum skv_full_store {
    SKV_FULL_EXACT = 0,  /* every token, exactly (host memory, bounded by max_tokens)    */
    SKV_FULL_SUBGEN = 1, /* a SubGen sketch: bounded memory, full steps are its estimate */
    SKV_FULL_CSR = 2,    /* a csr sketch: 8 s bytes a token, full steps over its codes    */
} skv_full_store;

/* Where a refreshkv worker keeps an exact full store (see skv_config.full_mem). */
typedef enum skv_full_mem {
    SKV_FULL_MEM_HOST = 0, /* host memory of the worker; full steps on the CPU           */
    SKV_FULL_MEM_DEVICE =
        1, /* also a device mirror; full steps on the GPU (worker/gpu_refresh.c) */
} skv_full_mem;

/* Names: "exact", "sinkwin", "h2o", "subgen", "refreshkv", "csr"; "f32", "f16", "bf16"; "l2",
 * "cluster"; "layer", "group"; "exact", "subgen", "csr" (full stores); "host", "device" (full_mem).
 * The parse functions return -1 for an unknown name. */
const char *skv_policy_name(skv_policy_id p);
int skv_policy_parse(const char *name);
const char *skv_dtype_name(skv_dtype t);
int skv_dtype_parse(const char *name);
size_t skv_dtype_size(skv_dtype t);
const char *skv_values_name(skv_values_mode v);
int skv_values_parse(const char *name);
const char *skv_decide_name(skv_decide_mode m);
int skv_decide_parse(const char *name);
const char *skv_full_store_name(skv_full_store f);
int skv_full_store_parse(const char *name);
const char *skv_full_mem_name(skv_full_mem m);
int skv_full_mem_parse(const char *name);

/* ---- configuration ------------------------------------------------------------------ */

/* A CSR dictionary set (cache/csr_dict.h). */
typedef struct skv_dict skv_dict;
enum { SKV_DICT_PATH_MAX = 256 };

/*
 * Parameters of one sketch. Start from skv_config_default(), which fills each policy's
 * defaults, then set what you need; a zero is taken literally (sinks = 0: no sinks).
 * skv_sketch_config() returns the resolved values.
 *
 *  values         subgen's value estimator: cluster (default; stratified: each cluster's
 *                 samples carry (k, v) and one sample set estimates numerator and
 *                 normalizer) or l2 (the paper's ||v||^2 sampler). Chosen on SmolLM2 by
 *                 `make eval`: at 1/8 of exact memory l2's perplexity is 17x-4000x exact's
 *                 (its importance weights explode on high-score, small-value tokens),
 *                 cluster's +130-180%.
 *  budget_bytes   0: use the raw parameters. Otherwise the sketch derives (overwrites)
 *                 the parameters marked [derived] so that skv_sketch_bytes() never
 *                 exceeds it; a budget too small for the fixed parts fails with
 *                 SKV_ERR_BUDGET.
 *                 refreshkv: the budget bounds only the partial cache (the device side:
 *                 partial_tokens [derived], its scores, the queue); the full store holds
 *                 every token in host memory and is bounded by max_tokens alone, so
 *                 skv_sketch_bytes() of a refreshkv sketch exceeds the budget by the full
 *                 store (skv_stats.full_bytes / partial_bytes split the two). With
 *                 full_store = subgen or csr the budget covers both (see full_store).
 *  max_tokens     exact [derived]: most tokens held (0 = unlimited); appending past it
 *                 fails with SKV_ERR_BUDGET and stores nothing. refreshkv: the same cap on
 *                 its full store (never derived from the budget); with full_store = csr
 *                 [derived], csr's cap on the store's coded tokens. csr [derived]: the same
 *                 for the coded tokens (sinks and window not counted).
 *  sinks          sinkwin, subgen: first tokens kept exactly (default 4); csr (default 0).
 *  window         sinkwin [derived]: last tokens kept exactly (default 1024);
 *                 subgen: the same (default 64); h2o [derived]: recent tokens (512);
 *                 csr: the same (default 128).
 *  heavy          h2o [derived]: heavy-hitter slots (default 512; a budget splits
 *                 heavy = recent = half).
 *  samples        subgen t >= 1: uniform reservoir samples per cluster (default 8).
 *  value_slots    subgen s [derived]: l2 value slots (default 256; 0 with values=cluster).
 *  max_clusters   subgen [derived]: cap on clusters (default 256); reaching it doubles
 *                 delta and merges clusters.
 *  delta          subgen initial clustering radius; 0 = auto (a quarter of the norm of
 *                 the first key that enters the sketch).
 *  partial_tokens refreshkv K [derived] >= 1: tokens of the partial cache (default 256).
 *  stride         refreshkv S >= 1: attends between query-similarity checks (default 10).
 *  threshold      refreshkv, in [-1, 1]: a check whose cosine similarity (group-mean query
 *                 now vs at the last full step) is below it runs a full step (default
 *                 0.9); 1.0 makes every check a full step (the paper's fixed stride).
 *  pool_kernel    refreshkv, odd >= 1: max-pool width over token scores (default 7).
 *  decide         refreshkv in the service: layer (default, the paper's rule) — the
 *                 coordinator keeps per (sequence, layer) the check counter and the mean
 *                 of all the layer's query heads at its last full step, decides with
 *                 stride and threshold (skv_layer_rule below), and makes every sketch of
 *                 the layer run its full step at once; the sketches themselves get
 *                 threshold -1 (skv_shard_item_config). group: each sketch decides from
 *                 its GQA group's mean query. A lone sketch ignores decide: it always
 *                 decides from its own group (use threshold -1 + skv_sketch_refresh, or
 *                 skv_layer_rule, to decide above it).
 *  full_store     refreshkv: exact (default) — every token in the full store, full steps
 *                 exact; subgen — the full store is a SubGen sketch built from this
 *                 config's subgen fields (values, sinks, window, samples, value_slots,
 *                 max_clusters, delta; refreshkv's defaults are subgen's): full steps
 *                 answer with its estimate and re-select the partial cache among the rows
 *                 it holds with values (cache/refreshkv_sub.c). Memory is then bounded for
 *                 any input: with budget_bytes, half (less the fixed state) derives
 *                 partial_tokens and the rest the store's value_slots / max_clusters, and
 *                 skv_sketch_bytes() never exceeds the budget; max_tokens is not needed.
 *                 csr — the full store is a csr sketch built from this config's csr fields
 *                 (sparsity, atoms, rope_base, dict_path / dict: required at create, as for
 *                 csr; refreshkv's default sparsity is csr's, 8) and its sinks and window
 *                 (refreshkv's defaults 4 and 64): every token kept, as 8 s bytes of codes
 *                 once it leaves the store's window. Full steps answer with csr's attend
 *                 (exact sinks and window, reconstructions elsewhere) and re-select the
 *                 partial cache from all tokens by pooled score as the exact store does; a
 *                 selected token already in the partial cache keeps its (exact) row there,
 *                 others get the store's row (exact for sinks and window, else decoded)
 *                 (cache/refreshkv_csr.c). With budget_bytes, half (less the fixed state)
 *                 derives partial_tokens and the rest is the csr store's budget, from which
 *                 max_tokens (coded tokens) is derived, so skv_sketch_bytes() never exceeds
 *                 the budget; without one, max_tokens caps the coded tokens (0: none).
 *                 Checkpoints need the dictionary registry (skv_sketch_load_dicts).
 *  full_mem       refreshkv with full_store = exact, in the service: host (default) — the
 *                 worker keeps the full store in host memory and runs full steps on the
 *                 CPU; device — a GPU worker also keeps an append-only device mirror of it
 *                 and runs full steps there, in the request's batched attend launch (the
 *                 host store stays authoritative: checkpoints save it). A CPU worker, or a
 *                 sketch the GPU kernel cannot serve (f32, head_dim not 64/128), treats
 *                 device as host. With full_store = subgen or csr, device is refused
 *                 (SKV_ERR_INVALID_ARG): those stores are bounded and live with the sketch
 *                 (full steps on the CPU; partial steps still on a GPU worker's device).
 *                 A lone sketch has no device: the field changes nothing in its results.
 *  seed, seq_id, layer, head   key of the counter-based RNG (DESIGN.md section 3).
 *  sparsity       csr s (also refreshkv's csr store): atoms per key and per value vector
 *                 (ceil(s/2) for value channels [0, d/2), floor(s/2) for [d/2, d)),
 *                 2..head_dim (default 8);
 *                 32 s / head_dim bits per element.
 *  atoms          csr N: dictionary atoms; 0 = the dictionary's (resolved to it when bound).
 *  rope_base      csr: 0 codes keys as given (post-rotary, with a post-rotary dictionary);
 *                 > 0 codes them before rotary (the paper's choice, a pre-rotary dictionary):
 *                 the sketch undoes RoPE of this base (adjacent pairs (2i, 2i+1), GGUF
 *                 llama order; angle p * base^(-2i/d)) at each token's position p before
 *                 coding and redoes it when decoding. p is the token's index in the sketch's
 *                 own stream: the sequence position for an unsharded sequence; a context
 *                 shard sees other positions, which stays exact but codes less well.
 *  dict_path      csr (and refreshkv with full_store = csr): name of the dictionary set (a
 *                 file path, or a name registered in an skv_dicts registry); what travels
 *                 on the wire and in checkpoints.
 *  dict           csr: the bound set (cache/csr_dict.h), borrowed: it must outlive the
 *                 sketch. Required by create; resolve works without it (a coordinator can
 *                 size csr sketches without loading dictionaries). Fill it with
 *                 skv_config_bind_dict.
 *
 * Errors at create: head_dim outside [1, 1024] -> SKV_ERR_SHAPE; unknown policy or
 * dtype -> SKV_ERR_UNSUPPORTED; other bad values -> SKV_ERR_INVALID_ARG.
 */
typedef struct skv_config {
    skv_policy_id policy;
    int head_dim;
    skv_dtype dtype;
    skv_values_mode values;
    size_t budget_bytes;
    uint64_t max_tokens;
    int sinks;
    int window;
    int heavy;
    int samples;
    int value_slots;
    int max_clusters;
    float delta;
    int partial_tokens;
    int stride;
    float threshold;
    int pool_kernel;
    skv_decide_mode decide;
    skv_full_store full_store;
    skv_full_mem full_mem;
    uint64_t seed;
    uint64_t seq_id;
    uint32_t layer;
    uint32_t head;
    int sparsity;
    int atoms;
    float rope_base;
    char dict_path[SKV_DICT_PATH_MAX];
    const struct skv_dict *dict;
} skv_config;

/* Fill *cfg with the defaults of `policy` at head dimension `head_dim`. */
void skv_config_default(skv_config *cfg, skv_policy_id policy, int head_dim);

/* Validate *in and write the configuration a sketch created from it would have (defaults
 * and budget-derived parameters filled in) to *out; the errors of skv_sketch_create, with
 * nothing allocated. */
subkv_status skv_config_resolve(const skv_config *in, skv_config *out, skv_err *err);

/* The most heap bytes a sketch of resolved config `c` can ever hold (what a memory budget
 * must reserve for it): fixed for every policy but exact, refreshkv (its full store) and csr
 * (its codes), which grow per token up to max_tokens; SIZE_MAX for those without it. */
size_t skv_config_max_bytes(const skv_config *c);

/* The most tokens a sketch of resolved config `c` accepts in all (an append past it fails
 * with SKV_ERR_BUDGET): exact max_tokens; refreshkv max_tokens (its full store); csr
 * max_tokens coded + sinks + window; 0 for no cap (every other policy, or max_tokens = 0).
 * The one cap the service checks: the coordinator before dispatching, the worker before
 * appending. */
uint64_t skv_config_token_cap(const skv_config *c);

/* ---- partials (DESIGN.md section 2) ------------------------------------------------- */

/*
 * A mergeable partial over a set of tokens: numerator o * e^m, normalizer l * e^m.
 * The empty set is m = -INFINITY, l = 0, o = 0. Partials are laid out contiguously
 * with a stride of skv_partial_stride(d) bytes, (2 + d) floats, so an array of them
 * can travel as one message.
 */
typedef struct skv_partial {
    float m;
    float l;
    float o[];
} skv_partial;

static inline size_t skv_partial_stride(int d) { return (size_t)(2 + d) * sizeof(float); }
static inline skv_partial *skv_partial_at(void *base, int d, size_t i) {
    return (skv_partial *)((char *)base + i * skv_partial_stride(d));
}

/* Set *p to the empty partial. */
void skv_partial_init(skv_partial *p, int d);
/* dst = dst (+) src by the log-sum-exp rule; exact for disjoint token sets. */
void skv_partial_merge(skv_partial *dst, const skv_partial *src, int d);
/* out[d] = o / l; zeros when l == 0 (no token). A ratio beyond float range (a sampled
 * estimate whose normalizer underflowed) saturates at +-FLT_MAX instead of becoming Inf. */
void skv_partial_output(const skv_partial *p, int d, float *out);

/* ---- sketches ---------------------------------------------------------------------- */

typedef struct skv_sketch skv_sketch;

typedef struct skv_stats {
    uint64_t tokens_seen;   /* tokens appended so far                             */
    uint64_t tokens_held;   /* exact tokens held (sinks + window + cache)         */
    size_t bytes;           /* == skv_sketch_bytes()                              */
    int clusters;           /* subgen: live clusters                              */
    int cluster_samples;    /* subgen: filled reservoir samples in all clusters   */
    int value_slots_filled; /* subgen l2: filled value slots                      */
    int merges;             /* subgen: delta doublings so far                     */
    float delta;            /* subgen: current radius                             */
    double value_mass;      /* subgen l2: mu = sum ||v||^2 of sketched tokens      */
    uint64_t attends;       /* refreshkv: attend calls (decode steps) so far      */
    uint64_t full_steps;    /* refreshkv: attends answered by full attention      */
    uint64_t bytes_read;    /* refreshkv: key + value bytes all attends read      */
    size_t partial_bytes;   /* refreshkv: partial cache + queue + state (device)  */
    size_t full_bytes;      /* refreshkv: full store + its scratch (host)         */
} skv_stats;

/* Create a sketch. *out is owned by the caller (skv_sketch_destroy). */
subkv_status skv_sketch_create(const skv_config *cfg, skv_sketch **out, skv_err *err);
void skv_sketch_destroy(skv_sketch *s);

/* Append n >= 1 tokens, in order. d must equal the sketch's head_dim. */
subkv_status skv_sketch_append(skv_sketch *s, const float *K, const float *V, size_t n, int d,
                               skv_err *err);

/*
 * Attend the g >= 1 query heads Q[g][d] of one GQA group; writes g partials at `out`
 * (stride skv_partial_stride(d)). Queries are scaled by 1/sqrt(d) inside. h2o also
 * accumulates the attention each held token received (its eviction score).
 */
subkv_status skv_sketch_attend(skv_sketch *s, const float *Q, int g, int d, skv_partial *out,
                               skv_err *err);

/*
 * The CPU half of an attend, for a backend that runs attention elsewhere (the worker's GPU
 * path). Validates like skv_sketch_attend and does everything the policy must do on the
 * CPU for this attend. *done = 1: the attend is answered (out written; h2o's scoring
 * attend, a refreshkv full step over its host store). *done = 0: out is untouched and the
 * answer is plain attention over skv_sketch_entries() as they are after this call (the
 * caller runs it); the sketch's entry list changed only if skv_stats tokens_seen or
 * full_steps did. skv_sketch_attend == this call, then (when !*done) that attention.
 */
subkv_status skv_sketch_attend_begin(skv_sketch *s, const float *Q, int g, int d, skv_partial *out,
                                     int *done, skv_err *err);

/*
 * Ask for a full step at the next attend (refreshkv; other policies: SKV_ERR_UNSUPPORTED).
 * The hook for a decision made above one sketch: the paper refreshes a whole layer when the
 * mean query of all its heads moved, which no single (layer, kv-head) sketch can see; a
 * caller that sees the layer sets threshold = -1 (sketches never decide alone) and calls
 * this on every sketch of the layer when its rule fires. Saved with the sketch.
 */
subkv_status skv_sketch_refresh(skv_sketch *s, skv_err *err);

/*
 * The paper's per-layer refresh decision, for a caller that sees all the query heads of a
 * layer at once (the service's coordinator, which keeps one per (sequence, layer); the
 * tests' in-process replica; subkv-bench refresh). The layer's refreshkv sketches are
 * created with threshold -1, so they never decide alone, and when the rule says "full"
 * the caller calls skv_sketch_refresh on each of them before their attend.
 *
 * A layer's attend is a full step when: no full step has selected tokens yet (primed = 0),
 * or a prefill chunk (an append of n > 1 tokens, as the sketches count it) arrived since the
 * last full step (pending), or it is a check — every `stride` attends since the last full
 * step or check — and the cosine similarity between the mean of the layer's nq query heads
 * now and at the last full step (qref) is below `threshold` (threshold >= 1: every check).
 * These are the sketch's own rules (refreshkv.c) with the group's mean query replaced by
 * the layer's, so with one context shard a layer's sketches run their full steps on exactly
 * the steps this rule names. State: this struct plus qref[head_dim] kept by the caller.
 */
typedef struct skv_layer_rule {
    uint64_t since_check; /* attends since the last full step or check, < stride */
    uint32_t primed;      /* a full step with tokens has happened                 */
    uint32_t pending;     /* a prefill chunk arrived since the last full step      */
} skv_layer_rule;

/* Would this attend be a full step? Q [nq][d] unscaled; reads, never changes, the state. */
int skv_layer_rule_check(const skv_layer_rule *r, const float *qref, int stride, float threshold,
                         const float *Q, int nq, int d);
/* Record the attend (after it succeeded): full is what check said; tokens is the layer's
 * token count after the attend's own append. A full step sets qref to the layers' mean
 * query and primed to tokens > 0. */
void skv_layer_rule_commit(skv_layer_rule *r, float *qref, int stride, int full, const float *Q,
                           int nq, int d, uint64_t tokens);
/* Record an append of n tokens to the layer (a step's own token counts as n = 1). */
void skv_layer_rule_appended(skv_layer_rule *r, uint64_t n);
/* Is a loaded state one that commit could have produced (flags 0/1, counter < stride,
 * finite qref)? For checkpoint readers. */
int skv_layer_rule_valid(const skv_layer_rule *r, const float *qref, int stride, int d);

/* Exact heap bytes the sketch owns (struct and every buffer). */
size_t skv_sketch_bytes(const skv_sketch *s);
void skv_sketch_stats(const skv_sketch *s, skv_stats *out);
/* The resolved configuration (defaults and budget-derived parameters filled in). */
const skv_config *skv_sketch_config(const skv_sketch *s);

/* ---- serialization ----------------------------------------------------------------- */

/* A growable byte buffer; zero-initialise, free with skv_buf_free. */
typedef struct skv_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} skv_buf;
void skv_buf_free(skv_buf *b);

/*
 * Append the sketch to `out` in the versioned, checksummed format:
 *   "SKVS" | u32 version | u32 policy | u64 body_len | u32 crc32c(body) | body
 * (little-endian). Restoring gives a sketch whose future outputs equal the original's.
 */
subkv_status skv_sketch_save(const skv_sketch *s, skv_buf *out, skv_err *err);
/* Parse one sketch from data[len]; *used (optional) gets the bytes consumed.
 * Truncated or corrupted input fails with an error code, never crashes. */
subkv_status skv_sketch_load(const void *data, size_t len, skv_sketch **out, size_t *used,
                             skv_err *err);
/* The same, refusing with SKV_ERR_BUDGET (before allocating) a sketch whose configuration
 * reserves more than max_bytes (skv_config_max_bytes): untrusted checkpoints cannot make the
 * loader allocate more than its caller can hold. */
subkv_status skv_sketch_load_bounded(const void *data, size_t len, size_t max_bytes,
                                     skv_sketch **out, size_t *used, skv_err *err);

/* The same for a checkpoint that may hold csr sketches: their dictionaries are looked up by
 * the dict_path they were saved with in `dicts` (cache/csr_dict.h; loaded on first use) and
 * must have the fingerprint they were saved with (else SKV_ERR_CORRUPT). Without a registry
 * (dicts NULL, as in skv_sketch_load) a csr checkpoint fails with SKV_ERR_UNSUPPORTED. */
struct skv_dicts;
subkv_status skv_sketch_load_dicts(const void *data, size_t len, size_t max_bytes,
                                   struct skv_dicts *dicts, skv_sketch **out, size_t *used,
                                   skv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* SUBKV_H */
