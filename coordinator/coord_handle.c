/*
 * coord_handle.c — skv_coord_handle: decode one request, authenticate it, run its handler,
 * and pack exactly one reply (status code + message, plus the op's body).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_internal.h"
#include "shard_map.h"

/* Equal strings in time independent of where they differ (the token is a secret). */
static int token_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
    return diff == 0;
}

static subkv_status h_stats(skv_coord *c, Subkv__StatsReply *sr, Subkv__WorkerStats ***ws,
                            Subkv__SequenceStats **ss, Subkv__SequenceStats ***ssp,
                            Subkv__ModelShape **shapes, skv_err *err) {
    coord_jobs_reset(c);
    coord_jobs_all(c);
    SKV_CHECK(coord_dispatch(c, SUBKV__WORKER_OP_CODE__WOP_STATS, NULL, NULL, err));
    *ws = calloc((size_t)c->nworkers + 1, sizeof **ws);
    *ss = calloc(c->nseq ? c->nseq : 1, sizeof **ss);
    *ssp = calloc(c->nseq ? c->nseq : 1, sizeof **ssp);
    *shapes = calloc(c->nseq ? c->nseq : 1, sizeof **shapes);
    if (!*ws || !*ss || !*ssp || !*shapes)
        return skv_set_error(err, SKV_ERR_NOMEM, "no memory for stats");
    size_t nws = 0;
    for (int r = coord_first_owner(c); r <= c->nworkers; r++)
        if (c->jobs[r].reply && c->jobs[r].reply->stats) (*ws)[nws++] = c->jobs[r].reply->stats;
    for (size_t i = 0; i < c->nseq; i++) {
        const coord_seq *s = &c->seqs[i];
        Subkv__SequenceStats *q = &(*ss)[i];
        Subkv__ModelShape *m = &(*shapes)[i];
        subkv__sequence_stats__init(q);
        subkv__model_shape__init(m);
        m->layers = s->layers, m->q_heads = s->q_heads, m->kv_heads = s->kv_heads;
        m->head_dim = s->head_dim;
        q->seq_id = s->id;
        q->shape = m;
        q->policy = (char *)skv_policy_name(s->cfg.policy);
        q->context_shards = s->shards;
        q->n_tokens_by_layer = s->layers;
        q->tokens_by_layer = s->tokens;
        (*ssp)[i] = q;
    }
    sr->workers = (uint32_t)(c->nworkers + c->local); /* the local worker is one */
    sr->data_path = (char *)skv_data_path_name(c->dp.path);
    sr->data_path_why = c->dp.why;
    sr->n_worker = nws;
    sr->worker = *ws;
    sr->n_sequence = c->nseq;
    sr->sequence = *ssp;
    sr->shard_map = (char *)skv_shard_rule_for(c->local);
    return SKV_OK;
}

static void pack_reply(const Subkv__Reply *rep, skv_buf *out) {
    size_t len = subkv__reply__get_packed_size(rep);
    skv_err e;
    if (skv_grow((void **)&out->data, &out->cap, out->len + len, 1, &e) != SKV_OK) return;
    subkv__reply__pack(rep, out->data + out->len);
    out->len += len;
}

skv_handle_result skv_coord_handle(skv_coord *c, const uint8_t *bytes, size_t len,
                                   const char *token, skv_buf *reply) {
    return skv_coord_handle_client(c, 0, bytes, len, token, reply);
}

skv_handle_result skv_coord_handle_client(skv_coord *c, uint64_t client, const uint8_t *bytes,
                                          size_t len, const char *token, skv_buf *reply) {
    Subkv__Reply rep = SUBKV__REPLY__INIT;
    skv_err err = {SKV_OK, ""};
    skv_handle_result res = SKV_HANDLE_REPLY;
    Subkv__Request *req = subkv__request__unpack(NULL, len, bytes);
    if (!req) {
        rep.status = SKV_ERR_PROTOCOL;
        rep.message = (char *)"undecodable request frame";
        pack_reply(&rep, reply);
        return SKV_HANDLE_CLOSE;
    }
    rep.id = req->id;
    subkv_status st = SKV_OK;
    Subkv__CreateReply cr = SUBKV__CREATE_REPLY__INIT;
    Subkv__AttendReply ar = SUBKV__ATTEND_REPLY__INIT;
    Subkv__Tensor out = SUBKV__TENSOR__INIT;
    Subkv__StatsReply sr = SUBKV__STATS_REPLY__INIT;
    Subkv__WorkerStats **ws = NULL;
    Subkv__SequenceStats *ss = NULL, **ssp = NULL;
    Subkv__ModelShape *shapes = NULL;
    uint32_t dims[3];
    if (token && !token_equal(req->auth_token ? req->auth_token : "", token)) {
        st = skv_set_error(&err, SKV_ERR_AUTH, "missing or wrong auth token");
        goto reply;
    }
    if (c->lost && req->body_case != SUBKV__REQUEST__BODY_SHUTDOWN) {
        st = skv_set_error(&err, SKV_ERR_WORKER_LOST, "%s", c->lost_msg);
        goto reply;
    }
    c->client = client;
    switch (req->body_case) {
    case SUBKV__REQUEST__BODY_CREATE:
        st = coord_h_create(c, req->create, &cr.seq_id, &err);
        if (st == SKV_OK) rep.body_case = SUBKV__REPLY__BODY_CREATE, rep.create = &cr;
        break;
    case SUBKV__REQUEST__BODY_DROP: st = coord_h_drop(c, req->drop->seq_id, &err); break;
    case SUBKV__REQUEST__BODY_APPEND: st = coord_h_append(c, req->append, &err); break;
    case SUBKV__REQUEST__BODY_STEP:
    case SUBKV__REQUEST__BODY_ATTEND: {
        const int is_step = req->body_case == SUBKV__REQUEST__BODY_STEP;
        st = is_step
                 ? coord_h_tokens(c, req->step->layer, req->step->n_seq_ids, req->step->seq_ids,
                                  req->step->q, req->step->k, req->step->v, 1, dims, &err)
                 : coord_h_tokens(c, req->attend->layer, req->attend->n_seq_ids,
                                  req->attend->seq_ids, req->attend->q, NULL, NULL, 0, dims, &err);
        if (st == SKV_OK) {
            skv_wire_tensor_view(&out, dims, 3, c->outbuf);
            ar.out = &out;
            rep.body_case = SUBKV__REPLY__BODY_ATTEND;
            rep.attend = &ar;
        }
        break;
    }
    case SUBKV__REQUEST__BODY_STATS:
        st = h_stats(c, &sr, &ws, &ss, &ssp, &shapes, &err);
        if (st == SKV_OK) rep.body_case = SUBKV__REPLY__BODY_STATS, rep.stats = &sr;
        break;
    case SUBKV__REQUEST__BODY_CHECKPOINT:
        st = skv_coord_checkpoint(c, req->checkpoint->dir, &err);
        break;
    case SUBKV__REQUEST__BODY_SHUTDOWN: res = SKV_HANDLE_SHUTDOWN; break;
    default: st = skv_set_error(&err, SKV_ERR_PROTOCOL, "request without a known op"); break;
    }
reply:
    rep.status = (int32_t)st;
    rep.message = st == SKV_OK ? (char *)"" : err.msg;
    if (c->opts.verbose && st != SKV_OK)
        fprintf(stderr, "subkv-coordinator: request %llu: %s: %s\n", (unsigned long long)req->id,
                subkv_status_name(st), err.msg);
    pack_reply(&rep, reply);
    free(ws);
    free(ss);
    free(ssp);
    free(shapes);
    subkv__request__free_unpacked(req, NULL);
    return res;
}
