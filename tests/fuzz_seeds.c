/*
 * fuzz_seeds.c — writes a few valid inputs for each fuzz harness (not a harness itself):
 *
 *   build/fuzz/fuzz-seeds DIR   ->  DIR/{sketch_load,table_load,request,frame,trace,bpe,gguf,
 *                                        dict_load}/seed-*
 *
 * libFuzzer finds checksummed, nested formats slowly from nothing; starting from one real
 * sketch of each policy and dtype, a worker checkpoint, each kind of request, framed
 * requests, a small trace and tokenizer text, it mutates structure it could not easily invent.
 * Sizes stay small (head_dim 4, tens of tokens) so every seed is a few KiB. Deterministic.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_dict.h"
#include "gguf_build.h"
#include "sketch_table.h"
#include "skv_frame.h"
#include "skv_wire.h"
#include "subkv.h"
#include "subkv.pb-c.h"
#include "synth.h"
#include "trace.h"

enum { D = 4, TOKENS = 48 };

static const char *outdir;

static void die(const char *what) {
    fprintf(stderr, "fuzz-seeds: %s\n", what);
    exit(1);
}

static void put(const char *harness, const char *name, const void *data, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) die(path);
    snprintf(path, sizeof path, "%s/%s/seed-%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die(path);
}

static void fill(synth_rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)synth_rng_normal(r);
}

typedef struct seed_case {
    const char *name;
    skv_policy_id policy;
    skv_values_mode values;
    skv_dtype dtype;
} seed_case;

static const seed_case CASES[] = {
    {"exact-f32", SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_F32},
    {"exact-f16", SKV_POLICY_EXACT, SKV_VALUES_L2, SKV_DTYPE_F16},
    {"sinkwin-bf16", SKV_POLICY_SINKWIN, SKV_VALUES_L2, SKV_DTYPE_BF16},
    {"h2o-f16", SKV_POLICY_H2O, SKV_VALUES_L2, SKV_DTYPE_F16},
    {"subgen-l2-f16", SKV_POLICY_SUBGEN, SKV_VALUES_L2, SKV_DTYPE_F16},
    {"subgen-cluster-f32", SKV_POLICY_SUBGEN, SKV_VALUES_CLUSTER, SKV_DTYPE_F32},
    {"refreshkv-bf16", SKV_POLICY_REFRESHKV, SKV_VALUES_L2, SKV_DTYPE_BF16},
    /* values = cluster marks the refreshkv case whose full store is a SubGen sketch */
    {"refreshkv-subgen-f32", SKV_POLICY_REFRESHKV, SKV_VALUES_CLUSTER, SKV_DTYPE_F32},
    {"csr-f16", SKV_POLICY_CSR, SKV_VALUES_L2, SKV_DTYPE_F16},
    /* the name marks the refreshkv case whose full store is a csr sketch */
    {"refreshkv-csr-f16", SKV_POLICY_REFRESHKV, SKV_VALUES_L2, SKV_DTYPE_F16},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* Small parameters so every structure fills, evicts and (subgen) merges clusters. */
static skv_sketch *make_sketch(synth_rng *r, const seed_case *c, const skv_dict *dict) {
    skv_config cfg;
    skv_config_default(&cfg, c->policy, D);
    cfg.dtype = c->dtype;
    cfg.values = c->values;
    cfg.seed = 7;
    if (c->policy == SKV_POLICY_SINKWIN) cfg.sinks = 2, cfg.window = 8;
    if (c->policy == SKV_POLICY_H2O) cfg.heavy = 6, cfg.window = 4;
    if (c->policy == SKV_POLICY_SUBGEN)
        cfg.sinks = 2, cfg.window = 4, cfg.samples = 2, cfg.value_slots = 6, cfg.max_clusters = 3;
    if (c->policy == SKV_POLICY_CSR) { /* coded with the harness's set, by its name */
        cfg.sinks = 1, cfg.window = 5, cfg.sparsity = 2, cfg.layer = 2, cfg.dict = dict;
        snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", FUZZ_DICT_NAME);
    }
    if (c->policy == SKV_POLICY_REFRESHKV) cfg.partial_tokens = 6, cfg.stride = 3;
    if (c->policy == SKV_POLICY_REFRESHKV && c->values == SKV_VALUES_CLUSTER)
        cfg.full_store = SKV_FULL_SUBGEN, cfg.sinks = 2, cfg.window = 4, cfg.samples = 2,
        cfg.max_clusters = 3;
    if (!strcmp(c->name, "refreshkv-csr-f16")) { /* coded with the harness's set, as csr's */
        cfg.full_store = SKV_FULL_CSR, cfg.sinks = 1, cfg.window = 5, cfg.sparsity = 2;
        cfg.layer = 2, cfg.dict = dict;
        snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", FUZZ_DICT_NAME);
    }
    skv_sketch *s;
    skv_err e;
    if (skv_sketch_create(&cfg, &s, &e) != SKV_OK) die(e.msg);
    float K[TOKENS * D], V[TOKENS * D], Q[2 * D];
    fill(r, K, TOKENS * D);
    fill(r, V, TOKENS * D);
    fill(r, Q, 2 * D);
    float pbuf[2 * (2 + D)];
    for (size_t t = 0; t < TOKENS; t += 16) {
        if (skv_sketch_append(s, K + t * D, V + t * D, 16, D, &e) != SKV_OK) die(e.msg);
        if (skv_sketch_attend(s, Q, 2, D, (skv_partial *)pbuf, &e) != SKV_OK) die(e.msg);
    }
    return s;
}

static void sketch_and_table_seeds(synth_rng *r) {
    skv_table t;
    skv_table_init(&t);
    skv_err e;
    skv_dict *dict = fuzz_dict_make();
    if (!dict) die("cannot build the fuzz dictionary");
    skv_buf db = {0};
    if (skv_dict_save(dict, &db, &e) != SKV_OK) die(e.msg);
    put("dict_load", "small", db.data, db.len);
    skv_buf_free(&db);
    for (size_t i = 0; i < NCASES; i++) {
        skv_sketch *s = make_sketch(r, &CASES[i], dict);
        skv_buf b = {0};
        if (skv_sketch_save(s, &b, &e) != SKV_OK) die(e.msg);
        put("sketch_load", CASES[i].name, b.data, b.len);
        const int coded = skv_config_needs_dict(skv_sketch_config(s));
        if (coded) { /* the harness's registry resolves it */
            skv_dicts *reg = fuzz_dicts_make();
            skv_sketch *back = NULL;
            if (!reg ||
                skv_sketch_load_dicts(b.data, b.len, SIZE_MAX, reg, &back, NULL, &e) != SKV_OK)
                die("a csr-coded seed does not load with the fuzz dictionary");
            skv_sketch_destroy(back);
            skv_dicts_free(reg);
        }
        skv_buf_free(&b);
        skv_item_key k = {.seq = 1 + i / 3, .layer = (uint32_t)(i % 3), .head = 1, .shard = 0};
        if (i % 2 == 0 && !coded) { /* every other sketch */
            if (skv_table_insert(&t, &k, s, &e) != SKV_OK) die(e.msg);
        } else {
            skv_sketch_destroy(s);
        }
    }
    skv_buf b = {0};
    if (skv_table_save(&t, 1, 2, &b, &e) != SKV_OK) die(e.msg);
    put("table_load", "three", b.data, b.len);
    skv_buf_free(&b);
    skv_table_free(&t);
    if (skv_table_save(&t, 1, 2, &b, &e) != SKV_OK) die(e.msg);
    put("table_load", "empty", b.data, b.len);
    skv_buf_free(&b);
    skv_dict_free(dict);
}

/* Pack m into a malloc'd buffer; *len gets its size. */
static uint8_t *pack(const Subkv__Request *m, size_t *len) {
    *len = subkv__request__get_packed_size(m);
    uint8_t *p = malloc(*len ? *len : 1);
    if (!p) die("out of memory");
    subkv__request__pack(m, p);
    return p;
}

static void request_seeds(synth_rng *r) {
    uint8_t *reqs[8];
    size_t lens[8], n = 0;
    /* create, one per policy but h2o, every field set */
    static const size_t creates[] = {0, 2, 4, 6, 7};
    for (size_t ci = 0; ci < sizeof creates / sizeof creates[0]; ci++) {
        const size_t i = creates[ci];
        skv_config cfg;
        skv_config_default(&cfg, CASES[i].policy, D);
        cfg.dtype = CASES[i].dtype;
        cfg.values = CASES[i].values;
        cfg.budget_bytes = i ? 4096 : 0;
        if (CASES[i].policy == SKV_POLICY_CSR)
            snprintf(cfg.dict_path, sizeof cfg.dict_path, "%s", FUZZ_DICT_NAME);
        skv_wire_policy w;
        skv_wire_policy_from_config(&w, &cfg);
        Subkv__ModelShape sh = SUBKV__MODEL_SHAPE__INIT;
        sh.layers = 2, sh.q_heads = 4, sh.kv_heads = 2, sh.head_dim = D;
        Subkv__CreateSequence c = SUBKV__CREATE_SEQUENCE__INIT;
        c.shape = &sh, c.policy = &w.msg, c.context_shards = (uint32_t)i % 3;
        Subkv__Request m = SUBKV__REQUEST__INIT;
        m.id = i + 1, m.body_case = SUBKV__REQUEST__BODY_CREATE, m.create = &c;
        reqs[n] = pack(&m, &lens[n]);
        n++;
    }
    float k[3 * 2 * D], v[3 * 2 * D], q[2 * 4 * D];
    fill(r, k, 3 * 2 * D);
    fill(r, v, 3 * 2 * D);
    fill(r, q, 2 * 4 * D);
    uint32_t kd[3] = {3, 2, D}, sd[3] = {2, 2, D}, qd[3] = {2, 4, D};
    Subkv__Tensor tk = SUBKV__TENSOR__INIT, tv = SUBKV__TENSOR__INIT, tq = SUBKV__TENSOR__INIT;
    /* append: f32 k, f16 v (half the bytes: the f32 data reinterpreted, finite or not) */
    skv_wire_tensor_view(&tk, kd, 3, k);
    skv_wire_tensor_view(&tv, kd, 3, v);
    uint16_t h[3 * 2 * D]; /* f16 values 1, 1 + 2^-10, ... */
    for (size_t i = 0; i < 3 * 2 * D; i++) h[i] = (uint16_t)(0x3c00 + i);
    tv.dtype = SUBKV__DTYPE__DTYPE_F16;
    tv.data.data = (uint8_t *)h;
    tv.data.len = sizeof h;
    Subkv__Append a = SUBKV__APPEND__INIT;
    a.seq_id = 1, a.layer = 1, a.k = &tk, a.v = &tv;
    Subkv__Request m = SUBKV__REQUEST__INIT;
    m.id = 10, m.body_case = SUBKV__REQUEST__BODY_APPEND, m.append = &a;
    reqs[n] = pack(&m, &lens[n]);
    n++;
    /* step and attend of 2 sequences */
    uint64_t ids[2] = {1, 2};
    skv_wire_tensor_view(&tk, sd, 3, k);
    skv_wire_tensor_view(&tv, sd, 3, k + 2 * D);
    skv_wire_tensor_view(&tq, qd, 3, q);
    Subkv__Step st = SUBKV__STEP__INIT;
    st.layer = 0, st.n_seq_ids = 2, st.seq_ids = ids, st.q = &tq, st.k = &tk, st.v = &tv;
    m.id = 11, m.body_case = SUBKV__REQUEST__BODY_STEP, m.step = &st;
    reqs[n] = pack(&m, &lens[n]);
    n++;
    Subkv__Attend at = SUBKV__ATTEND__INIT;
    at.layer = 1, at.n_seq_ids = 2, at.seq_ids = ids, at.q = &tq;
    m.id = 12, m.body_case = SUBKV__REQUEST__BODY_ATTEND, m.attend = &at;
    reqs[n] = pack(&m, &lens[n]);
    n++;

    static const char *names[8] = {
        "create-exact", "create-sinkwin", "create-subgen", "create-refreshkv",
        "create-csr",   "append",         "step",          "attend"};
    uint8_t frames[8192];
    size_t flen = 0;
    for (size_t i = 0; i < n; i++) {
        put("request", names[i], reqs[i], lens[i]);
        if (flen + 4 + lens[i] <= sizeof frames) { /* every request, framed, in one stream */
            skv_frame_header(frames + flen, (uint32_t)lens[i]);
            memcpy(frames + flen + 4, reqs[i], lens[i]);
            flen += 4 + lens[i];
        }
        free(reqs[i]);
    }
    put("frame", "requests", frames, flen);
    put("frame", "one", frames, 4 + lens[0]);
    uint8_t empty[4];
    skv_frame_header(empty, 0);
    put("frame", "empty", empty, 4);
}

static void trace_seed(synth_rng *r) {
    const trace_shape sh = {.layers = 2, .q_heads = 2, .kv_heads = 1, .head_dim = D, .n_tokens = 3};
    uint8_t buf[TRACE_HEADER_BYTES + 2 * 3 * (2 + 2 * 1) * D * 4];
    trace_header_encode(&sh, buf);
    float x[(sizeof buf - TRACE_HEADER_BYTES) / 4];
    fill(r, x, sizeof x / sizeof x[0]);
    memcpy(buf + TRACE_HEADER_BYTES, x, sizeof x);
    put("trace", "small", buf, sizeof buf);
}

/* Tokenizer inputs: a mode byte (bit 0 parse specials, bit 1 pre-type gpt2), then text with
 * the tiny vocabulary's merges, its special tokens, digits, contractions, whitespace runs,
 * U+0085, other scripts, a byte 0x04 and bytes that are not UTF-8. */
static void bpe_seeds(void) {
    static const char text[] = "the thing's  in\n\n    aaaa 1234 <|x|>[U]<|x| caf\xc3\xa9 "
                               "\xc2\x85!\xc2\x85 \xd0\x9f\xe4\xbd\xa0\xf0\x9f\x98\x80 "
                               "\x04!\x04! \xff\xfe\xc3 it'S   ";
    char buf[sizeof text];
    for (unsigned mode = 0; mode < 4; mode++) {
        char name[16];
        buf[0] = (char)mode;
        memcpy(buf + 1, text, sizeof text - 1);
        snprintf(name, sizeof name, "mode%u", mode);
        put("bpe", name, buf, sizeof text);
    }
}

/* A llama-shaped GGUF: typed metadata, a token list, one tensor of each dequantised type. */
static void gguf_seed(synth_rng *r) {
    gguf_builder b;
    gguf_build_init(&b, 32);
    const uint32_t blocks = 2, heads = 4;
    const float eps = 1e-5f;
    const uint8_t yes = 1;
    gguf_build_string(&b, "general.architecture", "llama");
    gguf_build_scalar(&b, "llama.block_count", GGUF_TYPE_UINT32, &blocks);
    gguf_build_scalar(&b, "llama.attention.head_count", GGUF_TYPE_UINT32, &heads);
    gguf_build_scalar(&b, "llama.attention.layer_norm_rms_epsilon", GGUF_TYPE_FLOAT32, &eps);
    gguf_build_scalar(&b, "tokenizer.ggml.add_bos_token", GGUF_TYPE_BOOL, &yes);
    static const char *const toks[] = {"<|endoftext|>", "a", "b", "ab"};
    const int32_t types[] = {3, 1, 1, 1};
    gguf_build_str_array(&b, "tokenizer.ggml.tokens", toks, 4);
    gguf_build_array(&b, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 4);
    uint8_t q[2 * 34];
    for (size_t i = 0; i < sizeof q; i++) q[i] = (uint8_t)synth_rng_u64(r);
    q[0] = 0x00, q[1] = 0x38, q[34] = 0x00, q[35] = 0x34; /* finite half scales */
    float w[8];
    fill(r, w, 8);
    gguf_build_tensor(&b, "f32", 1, (uint64_t[]){8}, GGML_F32, w, sizeof w);
    gguf_build_tensor(&b, "q8_0", 2, (uint64_t[]){32, 2}, GGML_Q8_0, q, sizeof q);
    gguf_build_tensor(&b, "q4_1", 1, (uint64_t[]){32}, GGML_Q4_1, q, 20);
    gguf_build_tensor(&b, "q4_0", 1, (uint64_t[]){32}, GGML_Q4_0, q, 18);
    skv_buf img = {0};
    skv_err e;
    if (gguf_build_finish(&b, &img, &e) != SKV_OK) die(e.msg);
    put("gguf", "llama", img.data, img.len);
    skv_buf_free(&img);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) die(outdir);
    synth_rng r;
    synth_rng_seed(&r, 20240501);
    sketch_and_table_seeds(&r);
    request_seeds(&r);
    trace_seed(&r);
    bpe_seeds();
    gguf_seed(&r);
    return 0;
}
