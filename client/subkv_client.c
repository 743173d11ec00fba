/*
 * subkv_client.c — libsubkv: one blocking connection to a coordinator (subkv_client.h).
 *
 * Every call: build a Subkv__Request (id = ++counter, auth_token), pack it, send one
 * frame, receive one frame (at most SKV_CLIENT_MAX_REPLY bytes), unpack a Subkv__Reply,
 * check that reply->id echoes the request's id, then map reply->status (a subkv_status
 * number) and reply->message into the return code and err. Tensors go out as DTYPE_F32
 * with an explicit shape; a reply tensor is checked for dtype, shape and byte size before
 * anything is copied to the caller.
 *
 * After a transport failure (SKV_ERR_IO) or an unparsable / mismatched reply
 * (SKV_ERR_PROTOCOL) the stream may be out of sync, so the connection is closed and every
 * later call fails with SKV_ERR_IO; open a new client.
 */
#include "subkv_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "skv_check.h"
#include "skv_frame.h"
#include "skv_wire.h"
#include "subkv.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libsubkv sends host float32 as little-endian tensors; add byte swapping for this host"
#endif

/* Largest reply frame accepted (a stats reply of a large deployment fits easily). */
#define SKV_CLIENT_MAX_REPLY SKV_FRAME_DEFAULT_MAX

struct skv_client {
    int fd;           /* -1 once the connection failed or was closed */
    char *token;      /* NULL: no auth token */
    uint64_t next_id; /* id of the last request sent */
    char addr[256];
};

/* Close the socket after a failure that may have desynchronized the stream. */
static void client_break(skv_client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Connect and return a client; token may be NULL or empty (no auth). */
subkv_status skv_client_connect(const char *addr, const char *token, skv_client **out,
                                skv_err *err) {
    subkv_status st = SKV_OK;
    skv_client *c = NULL;
    char msg[256];
    if (!out) return skv_set_error(err, SKV_ERR_INVALID_ARG, "skv_client_connect: out is NULL");
    *out = NULL;
    if (!addr || !*addr) addr = SKV_DEFAULT_ADDR;
    c = calloc(1, sizeof *c);
    if (!c) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "skv_client_connect: out of memory");
        goto cleanup;
    }
    c->fd = -1;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    if (token && *token) {
        size_t n = strlen(token);
        c->token = malloc(n + 1);
        if (!c->token) {
            st = skv_set_error(err, SKV_ERR_NOMEM, "skv_client_connect: out of memory");
            goto cleanup;
        }
        memcpy(c->token, token, n + 1);
    }
    c->fd = skv_socket_connect(addr, msg, sizeof msg);
    if (c->fd < 0) {
        st = skv_set_error(err, SKV_ERR_IO, "%s", msg);
        goto cleanup;
    }
    *out = c;
    c = NULL;
cleanup:
    skv_client_close(c);
    return st;
}

/* Close the connection and free the client (NULL is fine). */
void skv_client_close(skv_client *c) {
    if (!c) return;
    client_break(c);
    free(c->token);
    free(c);
}

/*
 * Send req and receive its reply into *out (caller frees with subkv__reply__free_unpacked).
 * Fills the request's id and auth token. Returns SKV_OK only when the service answered
 * SKV_OK; a service error returns its code with "SERVICE_MESSAGE" in err.
 */
static subkv_status client_call(skv_client *c, Subkv__Request *req, Subkv__Reply **out,
                                skv_err *err) {
    subkv_status st = SKV_OK;
    uint8_t *wire = NULL, *rbuf = NULL;
    uint32_t rlen = 0;
    Subkv__Reply *rep = NULL;
    *out = NULL;
    if (c->fd < 0) {
        st = skv_set_error(err, SKV_ERR_IO, "connection to %s is closed (an earlier call failed)",
                           c->addr);
        goto cleanup;
    }
    req->id = ++c->next_id;
    req->auth_token = c->token ? c->token : (char *)"";
    size_t n = subkv__request__get_packed_size(req);
    if (n > UINT32_MAX) {
        st = skv_set_error(err, SKV_ERR_INVALID_ARG,
                           "request of %zu bytes does not fit one frame (max 4 GiB - 1); "
                           "send smaller chunks",
                           n);
        goto cleanup;
    }
    wire = malloc(n ? n : 1);
    if (!wire) {
        st = skv_set_error(err, SKV_ERR_NOMEM, "out of memory packing a %zu-byte request", n);
        goto cleanup;
    }
    subkv__request__pack(req, wire);
    if (skv_frame_send(c->fd, wire, (uint32_t)n) != 0) {
        st = skv_set_error(err, SKV_ERR_IO, "send to %s: %s", c->addr, strerror(errno));
        client_break(c);
        goto cleanup;
    }
    int rr = skv_frame_recv(c->fd, SKV_CLIENT_MAX_REPLY, &rbuf, &rlen);
    if (rr == -2) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "reply from %s exceeds %u bytes", c->addr,
                           SKV_CLIENT_MAX_REPLY);
        client_break(c);
        goto cleanup;
    }
    if (rr != 0) {
        st = skv_set_error(err, SKV_ERR_IO, "receive from %s: %s", c->addr,
                           errno == ECONNRESET ? "connection closed by the service"
                                               : strerror(errno));
        client_break(c);
        goto cleanup;
    }
    rep = subkv__reply__unpack(NULL, rlen, rbuf);
    if (!rep) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "reply from %s (%u bytes) does not parse",
                           c->addr, rlen);
        client_break(c);
        goto cleanup;
    }
    if (rep->id != req->id) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "reply id %" PRIu64 " != request id %" PRIu64,
                           rep->id, req->id);
        client_break(c);
        goto cleanup;
    }
    if (rep->status < 0 || rep->status >= SKV_STATUS_COUNT) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "reply carries unknown status %d: %s",
                           (int)rep->status, rep->message ? rep->message : "");
        goto cleanup;
    }
    if (rep->status != SKV_OK) {
        st = skv_set_error(err, (subkv_status)rep->status, "%s",
                           rep->message && *rep->message
                               ? rep->message
                               : subkv_status_name((subkv_status)rep->status));
        goto cleanup;
    }
    *out = rep;
    rep = NULL;
cleanup:
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    free(rbuf);
    free(wire);
    req->auth_token = NULL;
    return st;
}

/* Validate a model shape (nonzero sizes, GQA divisibility). */
static subkv_status check_shape(const skv_model_shape *s, skv_err *err) {
    if (!s) return skv_set_error(err, SKV_ERR_INVALID_ARG, "model shape is NULL");
    if (!s->layers || !s->q_heads || !s->kv_heads || !s->head_dim)
        return skv_set_error(err, SKV_ERR_SHAPE, "model shape has a zero dimension");
    if (s->q_heads % s->kv_heads)
        return skv_set_error(err, SKV_ERR_SHAPE, "q_heads %u is not a multiple of kv_heads %u",
                             s->q_heads, s->kv_heads);
    if (s->head_dim > 1024 || s->q_heads > 65536 || s->kv_heads > 65536)
        return skv_set_error(err, SKV_ERR_SHAPE, "model shape out of range");
    return SKV_OK;
}

/* Bytes of a rows x heads x d float32 tensor, or 0 on overflow / over 4 GiB. */
static size_t tensor_bytes(size_t rows, uint32_t heads, uint32_t d) {
    if (rows == 0 || rows > UINT32_MAX) return 0;
    size_t per = (size_t)heads * d * sizeof(float);
    if (rows > (size_t)UINT32_MAX / per) return 0;
    return rows * per;
}

/* Point t at a float32 tensor of shape [rows, heads, d] (no copy). */
static void tensor_view(Subkv__Tensor *t, uint32_t shape[3], size_t rows, uint32_t heads,
                        uint32_t d, const float *data) {
    shape[0] = (uint32_t)rows, shape[1] = heads, shape[2] = d;
    skv_wire_tensor_view(t, shape, 3, data);
}

/* Create a sequence; the whole skv_config travels so the service uses exactly it. */
subkv_status skv_client_create_sequence(skv_client *c, const skv_model_shape *shape,
                                        const skv_config *policy, uint32_t context_shards,
                                        uint32_t shard_block, uint64_t *seq_id, skv_err *err) {
    if (!c || !policy || !seq_id)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "create_sequence: NULL argument");
    SKV_CHECK(check_shape(shape, err));
    if ((uint32_t)policy->head_dim != shape->head_dim)
        return skv_set_error(err, SKV_ERR_SHAPE, "policy head_dim %d != model head_dim %u",
                             policy->head_dim, shape->head_dim);
    subkv_status st = SKV_OK;
    Subkv__Reply *rep = NULL;
    Subkv__ModelShape ms = SUBKV__MODEL_SHAPE__INIT;
    ms.layers = shape->layers, ms.q_heads = shape->q_heads;
    ms.kv_heads = shape->kv_heads, ms.head_dim = shape->head_dim;
    skv_wire_policy wp; /* every field set: the service reproduces *policy exactly */
    skv_wire_policy_from_config(&wp, policy);
    Subkv__CreateSequence cs = SUBKV__CREATE_SEQUENCE__INIT;
    cs.shape = &ms, cs.policy = &wp.msg;
    cs.context_shards = context_shards, cs.shard_block = shard_block;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_CREATE, req.create = &cs;
    SKV_CHECK_GOTO(client_call(c, &req, &rep, err), st, cleanup);
    if (rep->body_case != SUBKV__REPLY__BODY_CREATE || !rep->create) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "create reply carries no CreateReply");
        goto cleanup;
    }
    *seq_id = rep->create->seq_id;
cleanup:
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    return st;
}

/* Send a request whose reply carries no body; free the reply. */
static subkv_status call_no_body(skv_client *c, Subkv__Request *req, skv_err *err) {
    Subkv__Reply *rep = NULL;
    subkv_status st = client_call(c, req, &rep, err);
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    return st;
}

/* Drop a sequence and everything it holds. */
subkv_status skv_client_drop_sequence(skv_client *c, uint64_t seq_id, skv_err *err) {
    if (!c) return skv_set_error(err, SKV_ERR_INVALID_ARG, "drop_sequence: NULL client");
    Subkv__DropSequence d = SUBKV__DROP_SEQUENCE__INIT;
    d.seq_id = seq_id;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_DROP, req.drop = &d;
    return call_no_body(c, &req, err);
}

/* Prefill chunk: K, V [n][kv_heads][head_dim] of one layer. */
subkv_status skv_client_append(skv_client *c, const skv_model_shape *shape, uint64_t seq_id,
                               uint32_t layer, size_t n, const float *K, const float *V,
                               skv_err *err) {
    if (!c || !K || !V) return skv_set_error(err, SKV_ERR_INVALID_ARG, "append: NULL argument");
    SKV_CHECK(check_shape(shape, err));
    if (n == 0) return skv_set_error(err, SKV_ERR_EMPTY, "append: n = 0 tokens");
    if (layer >= shape->layers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "append: layer %u >= layers %u", layer,
                             shape->layers);
    if (!tensor_bytes(n, shape->kv_heads, shape->head_dim))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "append: %zu tokens is too large", n);
    uint32_t ks[3], vs[3];
    Subkv__Tensor kt = SUBKV__TENSOR__INIT, vt = SUBKV__TENSOR__INIT;
    tensor_view(&kt, ks, n, shape->kv_heads, shape->head_dim, K);
    tensor_view(&vt, vs, n, shape->kv_heads, shape->head_dim, V);
    Subkv__Append a = SUBKV__APPEND__INIT;
    a.seq_id = seq_id, a.layer = layer, a.k = &kt, a.v = &vt;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_APPEND, req.append = &a;
    return call_no_body(c, &req, err);
}

/* Check an AttendReply tensor is F32 [B, q_heads, head_dim] and copy it to out. */
static subkv_status copy_attend_out(const Subkv__Reply *rep, const skv_model_shape *shape, size_t B,
                                    float *out, skv_err *err) {
    if (rep->body_case != SUBKV__REPLY__BODY_ATTEND || !rep->attend || !rep->attend->out)
        return skv_set_error(err, SKV_ERR_PROTOCOL, "reply carries no AttendReply tensor");
    const Subkv__Tensor *t = rep->attend->out;
    size_t want = (size_t)B * shape->q_heads * shape->head_dim * sizeof(float);
    if (t->dtype != SUBKV__DTYPE__DTYPE_F32 || t->n_shape != 3 || t->shape[0] != B ||
        t->shape[1] != shape->q_heads || t->shape[2] != shape->head_dim || t->data.len != want)
        return skv_set_error(err, SKV_ERR_PROTOCOL,
                             "attend reply tensor is not f32 [%zu, %u, %u] (%zu bytes); got "
                             "%zu dims, %zu bytes",
                             B, shape->q_heads, shape->head_dim, want, t->n_shape, t->data.len);
    memcpy(out, t->data.data, want);
    return SKV_OK;
}

/* Validate the batch arguments shared by step and attend. */
static subkv_status check_batch(const skv_client *c, const skv_model_shape *shape, uint32_t layer,
                                size_t B, const uint64_t *seq_ids, const float *Q, const float *out,
                                skv_err *err) {
    if (!c || !seq_ids || !Q || !out)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "step/attend: NULL argument");
    SKV_CHECK(check_shape(shape, err));
    if (B == 0) return skv_set_error(err, SKV_ERR_EMPTY, "step/attend: batch of 0 sequences");
    if (layer >= shape->layers)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "step/attend: layer %u >= layers %u", layer,
                             shape->layers);
    if (!tensor_bytes(B, shape->q_heads, shape->head_dim))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "step/attend: batch %zu too large", B);
    return SKV_OK;
}

/* Decode step of one layer for B sequences. */
subkv_status skv_client_step(skv_client *c, const skv_model_shape *shape, uint32_t layer, size_t B,
                             const uint64_t *seq_ids, const float *Q, const float *K,
                             const float *V, float *out, skv_err *err) {
    SKV_CHECK(check_batch(c, shape, layer, B, seq_ids, Q, out, err));
    if (!K || !V) return skv_set_error(err, SKV_ERR_INVALID_ARG, "step: K or V is NULL");
    subkv_status st = SKV_OK;
    Subkv__Reply *rep = NULL;
    uint32_t qs[3], ks[3], vs[3];
    Subkv__Tensor qt = SUBKV__TENSOR__INIT, kt = SUBKV__TENSOR__INIT, vt = SUBKV__TENSOR__INIT;
    tensor_view(&qt, qs, B, shape->q_heads, shape->head_dim, Q);
    tensor_view(&kt, ks, B, shape->kv_heads, shape->head_dim, K);
    tensor_view(&vt, vs, B, shape->kv_heads, shape->head_dim, V);
    Subkv__Step s = SUBKV__STEP__INIT;
    s.layer = layer;
    s.n_seq_ids = B, s.seq_ids = (uint64_t *)seq_ids;
    s.q = &qt, s.k = &kt, s.v = &vt;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_STEP, req.step = &s;
    SKV_CHECK_GOTO(client_call(c, &req, &rep, err), st, cleanup);
    SKV_CHECK_GOTO(copy_attend_out(rep, shape, B, out, err), st, cleanup);
cleanup:
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    return st;
}

/* Attend B sequences of one layer without appending. */
subkv_status skv_client_attend(skv_client *c, const skv_model_shape *shape, uint32_t layer,
                               size_t B, const uint64_t *seq_ids, const float *Q, float *out,
                               skv_err *err) {
    SKV_CHECK(check_batch(c, shape, layer, B, seq_ids, Q, out, err));
    subkv_status st = SKV_OK;
    Subkv__Reply *rep = NULL;
    uint32_t qs[3];
    Subkv__Tensor qt = SUBKV__TENSOR__INIT;
    tensor_view(&qt, qs, B, shape->q_heads, shape->head_dim, Q);
    Subkv__Attend a = SUBKV__ATTEND__INIT;
    a.layer = layer;
    a.n_seq_ids = B, a.seq_ids = (uint64_t *)seq_ids;
    a.q = &qt;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_ATTEND, req.attend = &a;
    SKV_CHECK_GOTO(client_call(c, &req, &rep, err), st, cleanup);
    SKV_CHECK_GOTO(copy_attend_out(rep, shape, B, out, err), st, cleanup);
cleanup:
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    return st;
}

/* Bounded text appender: writes what fits, always NUL-terminated. */
typedef struct text_out {
    char *p;
    size_t len, used;
} text_out;

static void tprintf(text_out *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void tprintf(text_out *t, const char *fmt, ...) {
    if (t->used + 1 >= t->len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->used, t->len - t->used, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    t->used += (size_t)n;
    if (t->used >= t->len) t->used = t->len - 1;
}

/* Format a StatsReply as readable text (see skv_client_stats). */
static void format_stats(const Subkv__StatsReply *s, text_out *t) {
    tprintf(t, "workers:   %u\n", s->workers);
    tprintf(t, "data path: %s", s->data_path && *s->data_path ? s->data_path : "?");
    if (s->data_path_why && *s->data_path_why) tprintf(t, " (%s)", s->data_path_why);
    tprintf(t, "\n");
    tprintf(t, "shard map: %s\n", s->shard_map && *s->shard_map ? s->shard_map : "?");
    uint64_t total = 0;
    for (size_t i = 0; i < s->n_worker; i++) {
        const Subkv__WorkerStats *w = s->worker[i];
        if (!w) continue;
        total += w->bytes;
        tprintf(t, "worker %-3u backend %-8s sketches %-6u bytes %-12" PRIu64, w->rank,
                w->backend && *w->backend ? w->backend : "?", w->sketches, w->bytes);
        if (w->budget_bytes)
            tprintf(t, " budget %-12" PRIu64, w->budget_bytes);
        else
            tprintf(t, " budget %-12s", "unlimited");
        for (size_t p = 0; p < w->n_bytes_by_policy; p++) {
            const char *name = p < SKV_POLICY_COUNT ? skv_policy_name((skv_policy_id)p) : "policy?";
            if (w->bytes_by_policy[p]) tprintf(t, " %s=%" PRIu64, name, w->bytes_by_policy[p]);
        }
        tprintf(t, "\n");
    }
    tprintf(t, "total bytes: %" PRIu64 "\n", total);
    tprintf(t, "sequences: %zu\n", s->n_sequence);
    for (size_t i = 0; i < s->n_sequence; i++) {
        const Subkv__SequenceStats *q = s->sequence[i];
        if (!q) continue;
        tprintf(t, "seq %-6" PRIu64, q->seq_id);
        if (q->shape)
            tprintf(t, " shape %ux%ux%ux%u (layers x q x kv x d)", q->shape->layers,
                    q->shape->q_heads, q->shape->kv_heads, q->shape->head_dim);
        tprintf(t, " policy %-8s shards %-3u tokens(layer 0) %" PRIu64 "\n",
                q->policy && *q->policy ? q->policy : "?",
                q->context_shards ? q->context_shards : 1,
                q->n_tokens_by_layer ? q->tokens_by_layer[0] : (uint64_t)0);
    }
}

/* Send a StatsRequest; *out gets the reply (its stats body checked present). */
static subkv_status fetch_stats(skv_client *c, Subkv__Reply **out, skv_err *err) {
    subkv_status st = SKV_OK;
    Subkv__Reply *rep = NULL;
    Subkv__StatsRequest sr = SUBKV__STATS_REQUEST__INIT;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_STATS, req.stats = &sr;
    *out = NULL;
    SKV_CHECK_GOTO(client_call(c, &req, &rep, err), st, cleanup);
    if (rep->body_case != SUBKV__REPLY__BODY_STATS || !rep->stats) {
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "stats reply carries no StatsReply");
        goto cleanup;
    }
    *out = rep;
    rep = NULL;
cleanup:
    if (rep) subkv__reply__free_unpacked(rep, NULL);
    return st;
}

/* Stats as text into text[len] (truncated to fit, NUL-terminated). */
subkv_status skv_client_stats(skv_client *c, char *text, size_t len, skv_err *err) {
    if (!c || !text || len == 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "stats: NULL client or empty buffer");
    text[0] = '\0';
    Subkv__Reply *rep = NULL;
    SKV_CHECK(fetch_stats(c, &rep, err));
    text_out t = {text, len, 0};
    format_stats(rep->stats, &t);
    subkv__reply__free_unpacked(rep, NULL);
    return SKV_OK;
}

/* Bytes held by every worker together, and the number of workers. */
subkv_status skv_client_stats_bytes(skv_client *c, uint64_t *total_bytes, uint32_t *workers,
                                    skv_err *err) {
    if (!c || !total_bytes)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "stats_bytes: NULL argument");
    Subkv__Reply *rep = NULL;
    SKV_CHECK(fetch_stats(c, &rep, err));
    uint64_t total = 0;
    for (size_t i = 0; i < rep->stats->n_worker; i++)
        if (rep->stats->worker[i]) total += rep->stats->worker[i]->bytes;
    *total_bytes = total;
    if (workers) *workers = rep->stats->workers;
    subkv__reply__free_unpacked(rep, NULL);
    return SKV_OK;
}

/* Ask the workers to checkpoint under dir. */
subkv_status skv_client_checkpoint(skv_client *c, const char *dir, skv_err *err) {
    if (!c || !dir || !*dir)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "checkpoint: NULL client or empty dir");
    Subkv__CheckpointRequest cr = SUBKV__CHECKPOINT_REQUEST__INIT;
    cr.dir = (char *)dir;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_CHECKPOINT, req.checkpoint = &cr;
    return call_no_body(c, &req, err);
}

/* Ask the coordinator to stop the service. */
subkv_status skv_client_shutdown(skv_client *c, skv_err *err) {
    if (!c) return skv_set_error(err, SKV_ERR_INVALID_ARG, "shutdown: NULL client");
    Subkv__ShutdownRequest sr = SUBKV__SHUTDOWN_REQUEST__INIT;
    Subkv__Request req = SUBKV__REQUEST__INIT;
    req.body_case = SUBKV__REQUEST__BODY_SHUTDOWN, req.shutdown = &sr;
    return call_no_body(c, &req, err);
}
