/*
 * coord_ckpt.c — checkpoints as generations: DIR/gen-N/ holds worker-R.skv from each worker
 * and coordinator.skv (the sequence table); DIR/CURRENT names the newest complete one and is
 * replaced atomically last. A checkpoint interrupted anywhere leaves CURRENT pointing at the
 * previous generation, which stays loadable; the generation before that is removed.
 *
 * coordinator.skv: "SKVC" | u32 version | u32 nworkers | u64 next_id | u64 nseq |
 *   nseq x (u64 id | u32 layers, q_heads, kv_heads, head_dim, shards, block, broken |
 *           u32 n | PolicyConfig (n bytes, protobuf) | u64 tokens[layers] |
 *           [refreshkv, decide = layer: layers x (u64 since_check | u32 primed | u32 pending |
 *            f32 qref[head_dim])]) | u32 crc32c
 * Version 2 added the per-layer refresh rule's state. Version 3 (written only by a job with
 * the coordinator's --local-worker, whose rank 0 holds sketches too: worker-0.skv) adds
 * u32 local_worker = 1 after nworkers; a job restores only a checkpoint of its own shape.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_internal.h"
#include "fileio.h"
#include "shard_map.h"
#include "skv_internal.h"

enum { SKVC_VERSION = 2, SKVC_VERSION_LOCAL = 3 };

static long read_current(const char *dir) {
    char path[4096], buf[64];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long gen = 0;
    if (fgets(buf, sizeof buf, f) && sscanf(buf, "gen-%ld", &gen) != 1) gen = 0;
    fclose(f);
    return gen > 0 ? gen : 0;
}

static void remove_generation(const char *dir, long gen) {
    char gdir[4096], path[4400];
    snprintf(gdir, sizeof gdir, "%s/gen-%ld", dir, gen);
    DIR *d = opendir(gdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", gdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(gdir);
}

static subkv_status save_table(const skv_coord *c, skv_buf *b, skv_err *err) {
    skv_writer w = {b, false};
    skv_w_bytes(&w, "SKVC", 4);
    skv_w_u32(&w, c->local ? SKVC_VERSION_LOCAL : SKVC_VERSION);
    skv_w_u32(&w, (uint32_t)c->nworkers);
    if (c->local) skv_w_u32(&w, 1u);
    skv_w_u64(&w, c->next_id);
    skv_w_u64(&w, c->nseq);
    for (size_t i = 0; i < c->nseq && !w.failed; i++) {
        const coord_seq *s = &c->seqs[i];
        skv_w_u64(&w, s->id);
        const uint32_t f[7] = {s->layers, s->q_heads, s->kv_heads,        s->head_dim,
                               s->shards, s->block,   (uint32_t)s->broken};
        for (int k = 0; k < 7; k++) skv_w_u32(&w, f[k]);
        skv_wire_policy wp;
        skv_wire_policy_from_config(&wp, &s->cfg);
        size_t n = subkv__policy_config__get_packed_size(&wp.msg);
        uint8_t tmp[512];
        if (n > sizeof tmp) return skv_set_error(err, SKV_ERR_INTERNAL, "policy record too long");
        subkv__policy_config__pack(&wp.msg, tmp);
        skv_w_u32(&w, (uint32_t)n);
        skv_w_bytes(&w, tmp, n);
        skv_w_bytes(&w, s->tokens, s->layers * sizeof(uint64_t));
        for (uint32_t l = 0; s->rule && l < s->layers; l++) {
            skv_w_u64(&w, s->rule[l].since_check);
            skv_w_u32(&w, s->rule[l].primed);
            skv_w_u32(&w, s->rule[l].pending);
            for (uint32_t j = 0; j < s->head_dim; j++)
                skv_w_f32(&w, s->rule_q[(size_t)l * s->head_dim + j]);
        }
    }
    if (!w.failed) skv_w_u32(&w, skv_crc32c(b->data, b->len));
    return w.failed ? skv_set_error(err, SKV_ERR_NOMEM, "checkpoint buffer") : SKV_OK;
}

subkv_status skv_coord_checkpoint(skv_coord *c, const char *dir, skv_err *err) {
    char gdir[4096], path[4200];
    if (!dir || !dir[0])
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "checkpoint needs a directory");
    if (strlen(dir) > 3000)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "directory path too long");
    SKV_CHECK(skv_dir_ensure(dir, err));
    const long prev = read_current(dir), gen = prev + 1;
    snprintf(gdir, sizeof gdir, "%s/gen-%ld", dir, gen);
    remove_generation(dir, gen); /* leftovers of an interrupted attempt */
    SKV_CHECK(skv_dir_ensure(gdir, err));
    c->ckpt_count++;
    coord_jobs_reset(c);
    coord_jobs_all(c);
    coord_op_extra x = {.path = gdir};
    SKV_CHECK(coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_CHECKPOINT, &x, NULL, err));
    coord_fault(c, "ckpt-before-table");
    skv_buf b = {0};
    subkv_status st = save_table(c, &b, err);
    snprintf(path, sizeof path, "%s/coordinator.skv", gdir);
    if (st == SKV_OK) st = skv_file_write_atomic(path, b.data, b.len, err);
    skv_buf_free(&b);
    if (st != SKV_OK) return st;
    coord_fault(c, "ckpt-before-current");
    char cur[64];
    int n = snprintf(cur, sizeof cur, "gen-%ld\n", gen);
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    SKV_CHECK(skv_file_write_atomic(path, cur, (size_t)n, err));
    coord_fault(c, "ckpt-after-current");
    if (prev > 1) remove_generation(dir, prev - 1);
    return SKV_OK;
}

static subkv_status load_table(skv_coord *c, const unsigned char *data, size_t len,
                               coord_seq **seqs_out, size_t *nseq_out, uint64_t *next_id,
                               skv_err *err) {
    *seqs_out = NULL;
    *nseq_out = 0;
    if (len < 32 || memcmp(data, "SKVC", 4) != 0)
        return skv_set_error(err, SKV_ERR_CORRUPT, "not a coordinator checkpoint");
    uint32_t crc;
    memcpy(&crc, data + len - 4, 4);
    if (skv_crc32c(data, len - 4) != crc)
        return skv_set_error(err, SKV_ERR_CORRUPT, "coordinator checkpoint checksum mismatch");
    skv_reader r = {data + 4, len - 8, 0, false};
    uint32_t version = skv_r_u32(&r), nw = skv_r_u32(&r);
    const uint32_t local = version == SKVC_VERSION_LOCAL ? skv_r_u32(&r) : 0;
    *next_id = skv_r_u64(&r);
    uint64_t nseq = skv_r_u64(&r);
    if (version != SKVC_VERSION && version != SKVC_VERSION_LOCAL)
        return skv_set_error(err, SKV_ERR_VERSION, "coordinator checkpoint version %u", version);
    if ((int)nw != c->nworkers || (local != 0) != (c->local != 0))
        return skv_set_error(err, SKV_ERR_INVALID_ARG,
                             "checkpoint of a %u-worker job%s; this job has %d workers%s", nw,
                             local ? " with a local worker on rank 0" : "", c->nworkers,
                             c->local ? " and a local worker on rank 0" : "");
    if (nseq > r.len / 40) return skv_set_error(err, SKV_ERR_CORRUPT, "sequence count too large");
    coord_seq *seqs = calloc(nseq ? nseq : 1, sizeof *seqs);
    if (!seqs)
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %llu sequences",
                             (unsigned long long)nseq);
    subkv_status st = SKV_OK;
    size_t i = 0;
    for (; i < nseq && st == SKV_OK; i++) {
        coord_seq *s = &seqs[i];
        s->id = skv_r_u64(&r);
        uint32_t *f[6] = {&s->layers,   &s->q_heads, &s->kv_heads,
                          &s->head_dim, &s->shards,  &s->block};
        for (int k = 0; k < 6; k++) *f[k] = skv_r_u32(&r);
        s->broken = (int)skv_r_u32(&r);
        uint32_t n = skv_r_u32(&r);
        if (r.failed || n > r.len - r.pos || s->layers < 1 || s->layers > COORD_MAX_LAYERS ||
            s->shards < 1 || s->block < 1 || (i && s->id <= seqs[i - 1].id) || s->id >= *next_id) {
            st = skv_set_error(err, SKV_ERR_CORRUPT, "sequence record %zu damaged", i);
            break;
        }
        Subkv__PolicyConfig *pc = subkv__policy_config__unpack(NULL, n, r.p + r.pos);
        r.pos += n;
        if (!pc)
            st = skv_set_error(err, SKV_ERR_CORRUPT, "policy of sequence record %zu damaged", i);
        else
            st = skv_wire_config_from_policy(pc, (int)s->head_dim, &s->cfg, err);
        skv_config rc;
        if (st == SKV_OK) st = skv_config_resolve(&s->cfg, &rc, err);
        if (st == SKV_OK) s->max_tokens = skv_config_token_cap(&rc);
        if (pc) subkv__policy_config__free_unpacked(pc, NULL);
        if (st == SKV_OK && (s->head_dim < 1 || s->head_dim > SKV_MAX_HEAD_DIM))
            st = skv_set_error(err, SKV_ERR_CORRUPT, "head_dim of sequence record %zu", i);
        if (st == SKV_OK) st = coord_seq_alloc(s, err);
        if (st != SKV_OK) break;
        if (!skv_r_bytes(&r, s->tokens, s->layers * sizeof(uint64_t)))
            st = skv_set_error(err, SKV_ERR_CORRUPT, "tokens of sequence record %zu", i);
        for (uint32_t l = 0; st == SKV_OK && s->rule && l < s->layers; l++) {
            skv_layer_rule *lr = &s->rule[l];
            float *q = s->rule_q + (size_t)l * s->head_dim;
            lr->since_check = skv_r_u64(&r);
            lr->primed = skv_r_u32(&r);
            lr->pending = skv_r_u32(&r);
            for (uint32_t j = 0; j < s->head_dim; j++) q[j] = skv_r_f32(&r);
            if (r.failed || !skv_layer_rule_valid(lr, q, s->cfg.stride, (int)s->head_dim))
                st = skv_set_error(err, SKV_ERR_CORRUPT,
                                   "refresh rule of sequence record %zu, layer %u", i, l);
        }
    }
    if (st == SKV_OK && r.pos != r.len)
        st = skv_set_error(err, SKV_ERR_CORRUPT, "trailing bytes in coordinator checkpoint");
    if (st != SKV_OK) {
        for (size_t k = 0; k < nseq; k++) coord_seq_free(&seqs[k]);
        free(seqs);
        return st;
    }
    *seqs_out = seqs;
    *nseq_out = (size_t)nseq;
    return SKV_OK;
}

subkv_status skv_coord_restore(skv_coord *c, const char *dir, skv_err *err) {
    const long gen = read_current(dir);
    if (gen == 0)
        return skv_set_error(err, SKV_ERR_NOT_FOUND, "no checkpoint under %s (no CURRENT)", dir);
    char gdir[4096], path[4200];
    snprintf(gdir, sizeof gdir, "%s/gen-%ld", dir, gen);
    snprintf(path, sizeof path, "%s/coordinator.skv", gdir);
    unsigned char *data = NULL;
    size_t len = 0;
    SKV_CHECK(skv_file_read(path, (size_t)1 << 32, &data, &len, err));
    coord_seq *seqs = NULL;
    size_t nseq = 0;
    uint64_t next_id = 1;
    subkv_status st = load_table(c, data, len, &seqs, &nseq, &next_id, err);
    free(data);
    if (st != SKV_OK) return st;
    coord_jobs_reset(c);
    coord_jobs_all(c);
    coord_op_extra x = {.path = gdir};
    st = coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_RESTORE, &x, NULL, err);
    if (st != SKV_OK) {
        for (size_t k = 0; k < nseq; k++) coord_seq_free(&seqs[k]);
        free(seqs);
        return st;
    }
    for (size_t k = 0; k < c->nseq; k++) coord_seq_free(&c->seqs[k]);
    free(c->seqs);
    c->seqs = seqs;
    c->nseq = c->cap_seq = nseq;
    if (nseq == 0) c->cap_seq = 1;
    c->next_id = next_id;
    c->nowners = 0; /* restored sequences belong to no client */
    return SKV_OK;
}
