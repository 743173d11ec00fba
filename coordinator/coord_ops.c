/*
 * coord_ops.c — one handler per client request. Each validates the whole request first
 * (sequence ids, shapes, finiteness, limits) so a bad request fails alone, before any
 * worker hears of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_internal.h"
#include "shard_map.h"
#include "skv_internal.h"

static subkv_status lookup(skv_coord *c, uint64_t id, coord_seq **out, skv_err *err) {
    *out = coord_seq_find(c, id);
    if (!*out)
        return skv_set_error(err, SKV_ERR_NOT_FOUND, "unknown sequence %llu",
                             (unsigned long long)id);
    if ((*out)->broken)
        return skv_set_error(
            err, SKV_ERR_INTERNAL,
            "sequence %llu is inconsistent after a partial worker failure; drop it",
            (unsigned long long)id);
    return SKV_OK;
}

/* Tokens among [0, T) that context shard r of s holds. */
static uint64_t shard_tokens(const coord_seq *s, uint64_t T, uint32_t r) {
    if (s->shards <= 1) return T;
    const uint64_t blocks = T / s->block, rounds = blocks / s->shards, rem = blocks % s->shards;
    return rounds * s->block + (r < rem ? s->block : 0) + (r == rem ? T % s->block : 0);
}

/* Would layer `layer` of s exceed an exact cap after adding tokens [T, T + n)? Checked by
 * the coordinator before any worker hears of the op, so no worker rejects half of it. */
static subkv_status cap_check(const coord_seq *s, uint32_t layer, uint64_t n, skv_err *err) {
    if (!s->max_tokens) return SKV_OK;
    const uint64_t T = s->tokens[layer];
    for (uint32_t r = 0; r < s->shards; r++)
        if (shard_tokens(s, T + n, r) > s->max_tokens)
            return skv_set_error(
                err, SKV_ERR_BUDGET,
                "sequence %llu layer %u: shard %u would hold %llu tokens, cap %llu",
                (unsigned long long)s->id, layer, r, (unsigned long long)shard_tokens(s, T + n, r),
                (unsigned long long)s->max_tokens);
    return SKV_OK;
}

/* ---- create / drop ------------------------------------------------------------------------ */

subkv_status coord_h_create(skv_coord *c, const Subkv__CreateSequence *m, uint64_t *id_out,
                            skv_err *err) {
    const Subkv__ModelShape *sh = m->shape;
    if (!sh) return skv_set_error(err, SKV_ERR_SHAPE, "create without a model shape");
    if (sh->layers < 1 || sh->layers > COORD_MAX_LAYERS || sh->q_heads < 1 ||
        sh->q_heads > COORD_MAX_HEADS || sh->kv_heads < 1 || sh->kv_heads > sh->q_heads ||
        sh->q_heads % sh->kv_heads != 0 || sh->q_heads / sh->kv_heads > COORD_MAX_GROUP ||
        sh->head_dim < 1 || sh->head_dim > SKV_MAX_HEAD_DIM)
        return skv_set_error(err, SKV_ERR_SHAPE,
                             "bad model shape: %u layers, %u q heads, %u kv heads, head_dim %u",
                             sh->layers, sh->q_heads, sh->kv_heads, sh->head_dim);
    uint32_t shards = m->context_shards ? m->context_shards : 1;
    if (shards > COORD_MAX_SHARDS)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "context_shards %u > %d", shards,
                             COORD_MAX_SHARDS);
    coord_seq s = {.id = c->next_id,
                   .layers = sh->layers,
                   .q_heads = sh->q_heads,
                   .kv_heads = sh->kv_heads,
                   .head_dim = sh->head_dim,
                   .shards = shards,
                   .block = m->shard_block ? m->shard_block : COORD_DEFAULT_BLOCK};
    SKV_CHECK(coord_limit_check(c, c->client, 1, 0, err));
    s.owner = c->client;
    SKV_CHECK(skv_wire_config_from_policy(m->policy, (int)sh->head_dim, &s.cfg, err));
    skv_config resolved;
    SKV_CHECK(skv_config_resolve(&s.cfg, &resolved, err));
    s.max_tokens = skv_config_token_cap(&resolved);
    SKV_CHECK(coord_seq_alloc(&s, err));

    coord_jobs_reset(c);
    subkv_status st = SKV_OK;
    for (uint32_t l = 0; l < s.layers && st == SKV_OK; l++)
        for (uint32_t h = 0; h < s.kv_heads && st == SKV_OK; h++)
            for (uint32_t r = 0; r < shards && st == SKV_OK; r++) {
                int w = coord_owner_rank(c, s.id, l, h, s.kv_heads, r, shards);
                Subkv__WorkItem *it = coord_job_item(c, w, err);
                if (!it)
                    st = SKV_ERR_NOMEM;
                else
                    it->seq_id = s.id, it->layer = l, it->kv_head = h, it->shard = r;
            }
    int ok_any = 0;
    coord_op_extra x = {.head_dim = s.head_dim, .policy = &s.cfg, .shards = shards};
    if (st == SKV_OK) st = coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_CREATE, &x, &ok_any, err);
    if (st != SKV_OK && ok_any) { /* roll back the workers that created theirs */
        skv_err e2;
        coord_jobs_reset(c);
        coord_jobs_all(c);
        for (int w = coord_first_owner(c); w <= c->nworkers; w++) {
            c->jobs[w].active = 0;
            Subkv__WorkItem *it = coord_job_item(c, w, &e2);
            if (it) it->seq_id = s.id;
        }
        (void)coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_DROP, NULL, NULL, &e2);
    }
    if (st == SKV_OK) st = coord_seq_add(c, &s, err);
    if (st != SKV_OK) {
        coord_seq_free(&s);
        return st;
    }
    c->next_id++;
    coord_owner_charge(c, s.owner, 1, 0);
    *id_out = s.id;
    return SKV_OK;
}

subkv_status coord_h_drop(skv_coord *c, uint64_t id, skv_err *err) {
    const coord_seq *s = coord_seq_find(c, id);
    if (!s)
        return skv_set_error(err, SKV_ERR_NOT_FOUND, "unknown sequence %llu",
                             (unsigned long long)id);
    uint64_t held = 0;
    for (uint32_t l = 0; l < s->layers; l++) held += s->tokens[l];
    const uint64_t owner = s->owner, bytes = held * coord_seq_token_bytes(s);
    coord_jobs_reset(c);
    for (int w = coord_first_owner(c); w <= c->nworkers; w++) {
        Subkv__WorkItem *it = coord_job_item(c, w, err);
        if (!it) return SKV_ERR_NOMEM;
        it->seq_id = id;
    }
    subkv_status st = coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_DROP, NULL, NULL, err);
    if (st == SKV_ERR_WORKER_LOST) return st; /* the job is over: keep the table as it was */
    coord_seq_remove(c, id); /* a drop cannot fail on a worker; forget it either way */
    coord_owner_charge(c, owner, -1, -(int64_t)bytes);
    return st;
}

/* ---- append ------------------------------------------------------------------------------- */

subkv_status coord_h_append(skv_coord *c, const Subkv__Append *m, skv_err *err) {
    coord_seq *s;
    SKV_CHECK(lookup(c, m->seq_id, &s, err));
    if (m->layer >= s->layers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "layer %u of a %u-layer sequence", m->layer,
                             s->layers);
    if (!m->k || m->k->n_shape != 3 || !m->v)
        return skv_set_error(err, SKV_ERR_SHAPE, "append needs k and v of shape [n, kv_heads, d]");
    const uint32_t n = m->k->shape[0], kv = s->kv_heads, d = s->head_dim;
    if (n == 0) return skv_set_error(err, SKV_ERR_EMPTY, "append of 0 tokens");
    const uint32_t dims[3] = {n, kv, d};
    const size_t count = (size_t)n * kv * d;
    SKV_CHECK(skv_wire_tensor_check(m->k, dims, 3, "k", err)); /* sizes match the data sent */
    SKV_CHECK(skv_wire_tensor_check(m->v, dims, 3, "v", err));
    SKV_CHECK(cap_check(s, m->layer, n, err));
    const uint64_t bytes = (uint64_t)n * coord_seq_token_bytes(s);
    SKV_CHECK(coord_limit_check(c, s->owner, 0, bytes, err));
    SKV_CHECK(skv_grow((void **)&c->tk, &c->tk_cap, count, sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&c->tv, &c->tv_cap, count, sizeof(float), err));
    SKV_CHECK(skv_wire_tensor_read(m->k, dims, 3, c->tk, "k", err));
    SKV_CHECK(skv_wire_tensor_read(m->v, dims, 3, c->tv, "v", err));

    coord_jobs_reset(c);
    const uint64_t t0 = s->tokens[m->layer];
    for (uint32_t h = 0; h < kv; h++)
        for (uint32_t r = 0; r < s->shards; r++) {
            uint32_t cnt = 0;
            for (uint32_t i = 0; i < n; i++)
                cnt += skv_shard_of_token(t0 + i, s->block, s->shards) == r;
            if (!cnt) continue;
            int w = coord_owner_rank(c, s->id, m->layer, h, kv, r, s->shards);
            Subkv__WorkItem *it = coord_job_item(c, w, err);
            float *p = it ? coord_job_payload(c, w, 2 * (size_t)cnt * d, err) : NULL;
            if (!p) return SKV_ERR_NOMEM;
            it->seq_id = s->id, it->layer = m->layer, it->kv_head = h, it->shard = r;
            it->n_tokens = cnt;
            float *pk = p, *pv = p + (size_t)cnt * d;
            for (uint32_t i = 0; i < n; i++) {
                if (skv_shard_of_token(t0 + i, s->block, s->shards) != r) continue;
                memcpy(pk, c->tk + ((size_t)i * kv + h) * d, d * sizeof(float));
                memcpy(pv, c->tv + ((size_t)i * kv + h) * d, d * sizeof(float));
                pk += d;
                pv += d;
            }
        }
    int ok_any = 0;
    coord_op_extra x = {.head_dim = d};
    subkv_status st = coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_APPEND, &x, &ok_any, err);
    if (st == SKV_OK) {
        s->tokens[m->layer] += n;
        coord_owner_charge(c, s->owner, 0, (int64_t)bytes);
        if (s->rule) skv_layer_rule_appended(&s->rule[m->layer], n);
    } else if (ok_any)
        s->broken = 1;
    return st;
}

/* ---- step / attend ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Validate the batch: known, distinct, same shape, layer in range. */
static subkv_status batch_check(skv_coord *c, uint32_t layer, size_t B, const uint64_t *ids,
                                coord_seq **first, skv_err *err) {
    if (B < 1 || B > COORD_MAX_BATCH)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "batch of %zu sequences outside [1, %d]", B,
                             COORD_MAX_BATCH);
    uint64_t *sorted = malloc(B * sizeof *sorted);
    if (!sorted) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the batch");
    memcpy(sorted, ids, B * sizeof *sorted);
    qsort(sorted, B, sizeof *sorted, cmp_u64);
    subkv_status st = SKV_OK;
    for (size_t i = 1; i < B && st == SKV_OK; i++)
        if (sorted[i] == sorted[i - 1])
            st = skv_set_error(err, SKV_ERR_INVALID_ARG, "sequence %llu twice in one batch",
                               (unsigned long long)sorted[i]);
    free(sorted);
    for (size_t b = 0; b < B && st == SKV_OK; b++) {
        coord_seq *s;
        st = lookup(c, ids[b], &s, err);
        if (st != SKV_OK) break;
        if (b == 0)
            *first = s;
        else if (s->q_heads != (*first)->q_heads || s->kv_heads != (*first)->kv_heads ||
                 s->head_dim != (*first)->head_dim)
            st = skv_set_error(err, SKV_ERR_SHAPE, "sequences %llu and %llu differ in shape",
                               (unsigned long long)ids[0], (unsigned long long)ids[b]);
        if (st == SKV_OK && layer >= s->layers)
            st = skv_set_error(err, SKV_ERR_INVALID_ARG, "layer %u of a %u-layer sequence", layer,
                               s->layers);
    }
    return st;
}

/* One token more for each of B sequences: within every owner's byte limit, counting all of
 * an owner's sequences in the batch (charged one by one, then given back). */
static subkv_status step_limit_check(skv_coord *c, size_t B, const uint64_t *ids, skv_err *err) {
    subkv_status st = SKV_OK;
    size_t b = 0;
    for (; b < B && st == SKV_OK; b++) {
        const coord_seq *s = coord_seq_find(c, ids[b]);
        st = coord_limit_check(c, s->owner, 0, coord_seq_token_bytes(s), err);
        if (st == SKV_OK) coord_owner_charge(c, s->owner, 0, (int64_t)coord_seq_token_bytes(s));
    }
    const size_t charged = st == SKV_OK ? b : b - 1;
    for (size_t k = 0; k < charged; k++) {
        const coord_seq *s = coord_seq_find(c, ids[k]);
        coord_owner_charge(c, s->owner, 0, -(int64_t)coord_seq_token_bytes(s));
    }
    return st;
}

/*
 * Step (k, v given) or attend (k == v == NULL) of `layer` for B sequences. On success
 * c->outbuf holds [B][q_heads][d] and dims[3] its shape.
 */
subkv_status coord_h_tokens(skv_coord *c, uint32_t layer, size_t B, const uint64_t *ids,
                            const Subkv__Tensor *tq, const Subkv__Tensor *tk,
                            const Subkv__Tensor *tv, int is_step, uint32_t dims[3], skv_err *err) {
    coord_seq *s0 = NULL;
    SKV_CHECK(batch_check(c, layer, B, ids, &s0, err));
    const uint32_t qh = s0->q_heads, kv = s0->kv_heads, d = s0->head_dim, g = qh / kv;
    const uint32_t qd[3] = {(uint32_t)B, qh, d}, kd[3] = {(uint32_t)B, kv, d};
    SKV_CHECK(skv_wire_tensor_check(tq, qd, 3, "q", err)); /* before sizing buffers by them */
    if (is_step) {
        SKV_CHECK(skv_wire_tensor_check(tk, kd, 3, "k", err));
        SKV_CHECK(skv_wire_tensor_check(tv, kd, 3, "v", err));
        for (size_t b = 0; b < B; b++)
            SKV_CHECK(cap_check(coord_seq_find(c, ids[b]), layer, 1, err));
        SKV_CHECK(step_limit_check(c, B, ids, err));
    }
    SKV_CHECK(skv_grow((void **)&c->tq, &c->tq_cap, (size_t)B * qh * d, sizeof(float), err));
    SKV_CHECK(skv_wire_tensor_read(tq, qd, 3, c->tq, "q", err));
    if (is_step) {
        SKV_CHECK(skv_grow((void **)&c->tk, &c->tk_cap, (size_t)B * kv * d, sizeof(float), err));
        SKV_CHECK(skv_grow((void **)&c->tv, &c->tv_cap, (size_t)B * kv * d, sizeof(float), err));
        SKV_CHECK(skv_wire_tensor_read(tk, kd, 3, c->tk, "k", err));
        SKV_CHECK(skv_wire_tensor_read(tv, kd, 3, c->tv, "v", err));
    }
    size_t nloc = 0;
    for (size_t b = 0; b < B; b++) nloc += (size_t)kv * coord_seq_find(c, ids[b])->shards;
    SKV_CHECK(skv_grow((void **)&c->loc, &c->loc_cap, nloc, sizeof *c->loc, err));
    size_t *outpos = calloc((size_t)c->nworkers + 1, sizeof *outpos);
    if (!outpos) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the gather map");

    coord_jobs_reset(c);
    subkv_status st = SKV_OK;
    size_t li = 0;
    /* refreshkv, decide = layer: the paper's rule over all the layer's query heads decides
     * now; committed only once the op succeeded (a failed op leaves the rule as it was) */
    uint8_t *full = calloc(B, 1);
    if (!full) {
        free(outpos);
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for the refresh flags");
    }
    for (size_t b = 0; b < B; b++) {
        const coord_seq *s = coord_seq_find(c, ids[b]);
        if (s->rule)
            full[b] = (uint8_t)skv_layer_rule_check(&s->rule[layer], s->rule_q + (size_t)layer * d,
                                                    s->cfg.stride, s->cfg.threshold,
                                                    c->tq + (size_t)b * qh * d, (int)qh, (int)d);
    }
    for (size_t b = 0; b < B && st == SKV_OK; b++) {
        coord_seq *s = coord_seq_find(c, ids[b]);
        const uint32_t s_new = skv_shard_of_token(s->tokens[layer], s->block, s->shards);
        for (uint32_t h = 0; h < kv && st == SKV_OK; h++)
            for (uint32_t r = 0; r < s->shards; r++) {
                int w = coord_owner_rank(c, s->id, layer, h, kv, r, s->shards);
                const uint32_t nt = is_step && r == s_new ? 1u : 0u;
                Subkv__WorkItem *it = coord_job_item(c, w, err);
                float *p = it ? coord_job_payload(c, w, (2 * (size_t)nt + g) * d, err) : NULL;
                if (!p) {
                    st = SKV_ERR_NOMEM;
                    break;
                }
                it->seq_id = s->id, it->layer = layer, it->kv_head = h, it->shard = r;
                it->n_tokens = nt;
                it->group = g;
                it->refresh = full[b];
                if (nt) {
                    memcpy(p, c->tk + ((size_t)b * kv + h) * d, d * sizeof(float));
                    memcpy(p + d, c->tv + ((size_t)b * kv + h) * d, d * sizeof(float));
                    p += 2 * (size_t)d;
                }
                memcpy(p, c->tq + ((size_t)b * qh + (size_t)h * g) * d,
                       (size_t)g * d * sizeof(float));
                c->loc[li].rank = w;
                c->loc[li].offset = outpos[w];
                outpos[w] += (size_t)g * (d + 2);
                li++;
            }
    }
    free(outpos);
    int ok_any = 0;
    coord_op_extra x = {.head_dim = d};
    if (st == SKV_OK)
        st = coord_dispatch(
            c, is_step ? SUBKV__WORKER_OP_CODE__WOP_STEP : SUBKV__WORKER_OP_CODE__WOP_ATTEND, &x,
            &ok_any, err);
    if (st != SKV_OK) {
        if (is_step && ok_any)
            for (size_t b = 0; b < B; b++) coord_seq_find(c, ids[b])->broken = 1;
        free(full);
        return st;
    }
    for (size_t b = 0; b < B; b++) {
        coord_seq *s = coord_seq_find(c, ids[b]);
        if (!s->rule) continue;
        if (is_step) skv_layer_rule_appended(&s->rule[layer], 1);
        skv_layer_rule_commit(&s->rule[layer], s->rule_q + (size_t)layer * d, s->cfg.stride,
                              full[b], c->tq + (size_t)b * qh * d, (int)qh, (int)d,
                              s->tokens[layer] + (is_step ? 1 : 0));
    }
    free(full);
    /* merge each head's context shards in shard order, then o / l per query head */
    const size_t pstride = (size_t)d + 2, gsz = (size_t)g * pstride;
    SKV_CHECK(skv_grow((void **)&c->outbuf, &c->out_cap, (size_t)B * qh * d, sizeof(float), err));
    SKV_CHECK(skv_grow((void **)&c->pmerge, &c->pmerge_cap, gsz, sizeof(float), err));
    li = 0;
    for (size_t b = 0; b < B; b++) {
        coord_seq *s = coord_seq_find(c, ids[b]);
        if (is_step) {
            s->tokens[layer]++;
            coord_owner_charge(c, s->owner, 0, (int64_t)coord_seq_token_bytes(s));
        }
        for (uint32_t h = 0; h < kv; h++) {
            for (uint32_t r = 0; r < s->shards; r++, li++) {
                const float *src = c->jobs[c->loc[li].rank].out + c->loc[li].offset;
                if (r == 0)
                    memcpy(c->pmerge, src, gsz * sizeof(float));
                else
                    for (uint32_t j = 0; j < g; j++)
                        skv_partial_merge((skv_partial *)(c->pmerge + j * pstride),
                                          (const skv_partial *)(src + j * pstride), (int)d);
            }
            for (uint32_t j = 0; j < g; j++)
                skv_partial_output((const skv_partial *)(c->pmerge + j * pstride), (int)d,
                                   c->outbuf + ((size_t)b * qh + (size_t)h * g + j) * d);
        }
    }
    dims[0] = (uint32_t)B, dims[1] = qh, dims[2] = d;
    return SKV_OK;
}
