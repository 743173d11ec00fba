/*
 * test_client.c — libsubkv against a scripted fake coordinator on a Unix socket (a thread of
 * this process): requests carry increasing ids and the token; the config of a create
 * round-trips exactly; step/attend outputs are shape-checked and copied; service errors
 * come back with their code and message; a mismatched id, an unparsable reply or a wrong
 * output shape is SKV_ERR_PROTOCOL; a vanished service is SKV_ERR_IO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "skv_frame.h"
#include "skv_wire.h"
#include "subkv.pb-c.h"
#include "subkv_client.h"
#include "test_util.h"

/* How the fake answers the next step/attend. */
enum fake_mode { FAKE_OK, FAKE_BAD_ID, FAKE_GARBAGE, FAKE_BAD_SHAPE, FAKE_HANG_UP };

typedef struct fake {
    int listen_fd;
    char dir[64], path[96], addr[112];
    pthread_t th;
    enum fake_mode mode;
    uint64_t last_id;
    char last_token[64];
    skv_config created; /* config decoded from the last CreateSequence */
} fake;

/* Reply to a step/attend: out = Q (shape [B, q_heads, d]), or a broken variant. */
static void fake_attend(fake *f, const Subkv__Tensor *q, Subkv__Reply *rep, Subkv__AttendReply *ar,
                        Subkv__Tensor *out, uint32_t *dims) {
    subkv__tensor__init(out);
    memcpy(dims, q->shape, 3 * sizeof *dims);
    if (f->mode == FAKE_BAD_SHAPE) dims[1]++;
    out->n_shape = 3, out->shape = dims, out->dtype = SUBKV__DTYPE__DTYPE_F32;
    out->data = q->data;
    ar->out = out;
    rep->body_case = SUBKV__REPLY__BODY_ATTEND, rep->attend = ar;
}

/* Serve one connection until the client closes it or asks for shutdown. */
static void *fake_serve(void *arg) {
    fake *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    for (;;) {
        uint8_t *buf = NULL;
        uint32_t len = 0;
        if (skv_frame_recv(fd, 1u << 26, &buf, &len) != 0) break;
        Subkv__Request *req = subkv__request__unpack(NULL, len, buf);
        free(buf);
        if (!req) break;
        f->last_id = req->id;
        snprintf(f->last_token, sizeof f->last_token, "%s", req->auth_token ? req->auth_token : "");
        Subkv__Reply rep = SUBKV__REPLY__INIT;
        Subkv__CreateReply cr = SUBKV__CREATE_REPLY__INIT;
        Subkv__AttendReply ar = SUBKV__ATTEND_REPLY__INIT;
        Subkv__StatsReply sr = SUBKV__STATS_REPLY__INIT;
        Subkv__WorkerStats ws = SUBKV__WORKER_STATS__INIT, *wsp = &ws;
        Subkv__SequenceStats ss = SUBKV__SEQUENCE_STATS__INIT, *ssp = &ss;
        Subkv__ModelShape ms = SUBKV__MODEL_SHAPE__INIT;
        Subkv__Tensor out;
        uint32_t dims[3];
        uint64_t by_policy[4] = {0, 0, 0, 4096}, tokens[2] = {100, 100};
        rep.id = req->id;
        int stop = 0, hang = 0;
        switch (req->body_case) {
        case SUBKV__REQUEST__BODY_CREATE: {
            skv_err e;
            int d = req->create->shape ? (int)req->create->shape->head_dim : 0;
            if (skv_wire_config_from_policy(req->create->policy, d, &f->created, &e) != SKV_OK) {
                rep.status = e.code, rep.message = e.msg;
                break;
            }
            cr.seq_id = 7;
            rep.body_case = SUBKV__REPLY__BODY_CREATE, rep.create = &cr;
            break;
        }
        case SUBKV__REQUEST__BODY_DROP:
            if (req->drop->seq_id != 7)
                rep.status = SKV_ERR_NOT_FOUND, rep.message = "no such sequence";
            break;
        case SUBKV__REQUEST__BODY_STEP:
        case SUBKV__REQUEST__BODY_ATTEND: {
            const Subkv__Tensor *q =
                req->body_case == SUBKV__REQUEST__BODY_STEP ? req->step->q : req->attend->q;
            hang = f->mode == FAKE_HANG_UP;
            if (f->mode == FAKE_BAD_ID) rep.id++;
            fake_attend(f, q, &rep, &ar, &out, dims);
            break;
        }
        case SUBKV__REQUEST__BODY_STATS:
            ws.rank = 1, ws.backend = "cpu", ws.sketches = 2, ws.bytes = 4096;
            ws.n_bytes_by_policy = 4, ws.bytes_by_policy = by_policy;
            ms.layers = 2, ms.q_heads = 4, ms.kv_heads = 2, ms.head_dim = 8;
            ss.seq_id = 7, ss.shape = &ms, ss.policy = "subgen", ss.context_shards = 1;
            ss.n_tokens_by_layer = 2, ss.tokens_by_layer = tokens;
            sr.workers = 1, sr.data_path = "mpi", sr.shard_map = "(seq,layer,head) mod workers";
            sr.data_path_why = "rank 0 (the coordinator) has no GPU";
            sr.n_worker = 1, sr.worker = &wsp, sr.n_sequence = 1, sr.sequence = &ssp;
            rep.body_case = SUBKV__REPLY__BODY_STATS, rep.stats = &sr;
            break;
        case SUBKV__REQUEST__BODY_SHUTDOWN: stop = 1; break;
        default: break;
        }
        size_t n = subkv__reply__get_packed_size(&rep);
        uint8_t *wire = malloc(n + 1);
        subkv__reply__pack(&rep, wire);
        if (f->mode == FAKE_GARBAGE && req->body_case == SUBKV__REQUEST__BODY_STEP)
            memset(wire, 0xff, n), n = n ? n : 1;
        subkv__request__free_unpacked(req, NULL);
        if (!hang) skv_frame_send(fd, wire, (uint32_t)n);
        free(wire);
        if (stop || hang) break;
    }
    close(fd);
    return NULL;
}

static void fake_start(fake *f, enum fake_mode mode) {
    memset(f, 0, sizeof *f);
    f->mode = mode;
    snprintf(f->dir, sizeof f->dir, "/tmp/skv_client_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/s", f->dir);
    snprintf(f->addr, sizeof f->addr, "unix:%s", f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->listen_fd, 1), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_serve, f), 0);
}

static void fake_stop(fake *f) {
    pthread_join(f->th, NULL);
    close(f->listen_fd);
    unlink(f->path);
    rmdir(f->dir);
}

static const skv_model_shape SHAPE = {2, 4, 2, 8};

static void test_client_requests_round_trip_through_fake_service(void **state) {
    (void)state;
    fake f;
    fake_start(&f, FAKE_OK);
    skv_client *c = NULL;
    skv_err err = {0};
    TU_OK(skv_client_connect(f.addr, "tok", &c, &err), &err);
    skv_config cfg;
    skv_config_default(&cfg, SKV_POLICY_SUBGEN, 8);
    cfg.dtype = SKV_DTYPE_F16, cfg.budget_bytes = 12345, cfg.sinks = 3, cfg.delta = 0.5f;
    cfg.seed = 0xfedcba9876543210ull, cfg.values = SKV_VALUES_CLUSTER;
    uint64_t seq = 0;
    TU_OK(skv_client_create_sequence(c, &SHAPE, &cfg, 1, 0, &seq, &err), &err);
    assert_int_equal(seq, 7);
    assert_int_equal(f.last_id, 1);
    assert_string_equal(f.last_token, "tok");
    /* Every field arrives: the service rebuilds exactly the caller's config. */
    assert_int_equal(f.created.policy, cfg.policy);
    assert_int_equal(f.created.dtype, cfg.dtype);
    assert_int_equal(f.created.values, cfg.values);
    assert_int_equal(f.created.budget_bytes, cfg.budget_bytes);
    assert_int_equal(f.created.sinks, cfg.sinks);
    assert_int_equal(f.created.window, cfg.window);
    assert_int_equal(f.created.samples, cfg.samples);
    assert_int_equal(f.created.value_slots, cfg.value_slots);
    assert_int_equal(f.created.max_clusters, cfg.max_clusters);
    assert_true(f.created.delta == cfg.delta);
    assert_true(f.created.seed == cfg.seed);
    float K[3 * 2 * 8] = {0}, V[3 * 2 * 8] = {0}, Q[2 * 4 * 8], out[2 * 4 * 8];
    TU_OK(skv_client_append(c, &SHAPE, seq, 1, 3, K, V, &err), &err);
    for (int i = 0; i < 64; i++) Q[i] = (float)i;
    uint64_t ids[2] = {7, 7};
    TU_OK(skv_client_step(c, &SHAPE, 0, 2, ids, Q, K, V, out, &err), &err);
    assert_memory_equal(out, Q, sizeof Q);
    memset(out, 0, sizeof out);
    TU_OK(skv_client_attend(c, &SHAPE, 1, 2, ids, Q, out, &err), &err);
    assert_memory_equal(out, Q, sizeof Q);
    char text[2048];
    TU_OK(skv_client_stats(c, text, sizeof text, &err), &err);
    assert_non_null(strstr(text, "data path: mpi (rank 0 (the coordinator) has no GPU)\n"));
    assert_non_null(strstr(text, "subgen=4096"));
    assert_non_null(strstr(text, "seq 7"));
    char tiny[16];
    TU_OK(skv_client_stats(c, tiny, sizeof tiny, &err), &err);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    uint64_t bytes = 0;
    uint32_t workers = 0;
    TU_OK(skv_client_stats_bytes(c, &bytes, &workers, &err), &err);
    assert_int_equal(bytes, 4096);
    assert_int_equal(workers, 1);
    assert_int_equal(skv_client_drop_sequence(c, 8, &err), SKV_ERR_NOT_FOUND);
    assert_string_equal(err.msg, "no such sequence");
    TU_OK(skv_client_drop_sequence(c, 7, &err), &err); /* the connection survives errors */
    TU_OK(skv_client_checkpoint(c, "/tmp/ck", &err), &err);
    assert_int_equal(f.last_id, 10);
    /* Bad arguments never reach the wire. */
    assert_int_equal(skv_client_append(c, &SHAPE, seq, 0, 0, K, V, &err), SKV_ERR_EMPTY);
    assert_int_equal(skv_client_step(c, &SHAPE, 2, 1, ids, Q, K, V, out, &err),
                     SKV_ERR_INVALID_ARG);
    skv_model_shape odd = {2, 3, 2, 8};
    assert_int_equal(skv_client_attend(c, &odd, 0, 1, ids, Q, out, &err), SKV_ERR_SHAPE);
    TU_OK(skv_client_shutdown(c, &err), &err);
    skv_client_close(c);
    fake_stop(&f);
}

static void check_broken_reply(enum fake_mode mode, subkv_status want) {
    fake f;
    fake_start(&f, mode);
    skv_client *c = NULL;
    skv_err err = {0};
    TU_OK(skv_client_connect(f.addr, NULL, &c, &err), &err);
    float Q[4 * 8] = {0}, K[2 * 8] = {0}, V[2 * 8] = {0}, out[4 * 8];
    uint64_t id = 7;
    subkv_status st = skv_client_step(c, &SHAPE, 0, 1, &id, Q, K, V, out, &err);
    if (st != want) fail_msg("mode %d: got %s (%s)", (int)mode, subkv_status_name(st), err.msg);
    if (mode != FAKE_BAD_SHAPE) {
        /* The stream is out of sync (or gone): later calls fail fast with SKV_ERR_IO. */
        assert_int_equal(skv_client_drop_sequence(c, 7, &err), SKV_ERR_IO);
    }
    skv_client_close(c);
    fake_stop(&f);
}

static void test_client_broken_replies_are_protocol_or_io_errors(void **state) {
    (void)state;
    check_broken_reply(FAKE_BAD_ID, SKV_ERR_PROTOCOL);
    check_broken_reply(FAKE_GARBAGE, SKV_ERR_PROTOCOL);
    check_broken_reply(FAKE_BAD_SHAPE, SKV_ERR_PROTOCOL);
    check_broken_reply(FAKE_HANG_UP, SKV_ERR_IO);
}

/* A policy's own fields are read only for that policy, as they are written: a csr field in a
 * refreshkv PolicyConfig (found by fuzz_request) or a refreshkv field in a csr one is ignored,
 * so config -> wire -> config is the identity. */
static void test_wire_ignores_other_policies_fields(void **state) {
    (void)state;
    static const char *const names[2] = {"refreshkv", "csr"};
    for (int i = 0; i < 2; i++) {
        Subkv__PolicyConfig p = SUBKV__POLICY_CONFIG__INIT;
        Subkv__OptInt sparsity = SUBKV__OPT_INT__INIT, stride = SUBKV__OPT_INT__INIT;
        sparsity.v = 5, stride.v = 3;
        p.policy = (char *)names[i];
        p.sparsity = &sparsity;
        p.dict_path = (char *)"bayer";
        p.stride = &stride;
        p.decide = (char *)"group";
        skv_config cfg, def, back;
        skv_err e;
        TU_OK(skv_wire_config_from_policy(&p, 64, &cfg, &e), &e);
        skv_config_default(&def, i == 0 ? SKV_POLICY_REFRESHKV : SKV_POLICY_CSR, 64);
        if (i == 0) { /* refreshkv: its own fields taken, csr's ignored */
            assert_int_equal(cfg.stride, 3);
            assert_int_equal(cfg.decide, SKV_DECIDE_GROUP);
            assert_int_equal(cfg.sparsity, def.sparsity);
            assert_string_equal(cfg.dict_path, def.dict_path);
        } else {
            assert_int_equal(cfg.sparsity, 5);
            assert_string_equal(cfg.dict_path, "bayer");
            assert_int_equal(cfg.stride, def.stride);
            assert_int_equal(cfg.decide, def.decide);
        }
        skv_wire_policy w;
        skv_wire_policy_from_config(&w, &cfg);
        TU_OK(skv_wire_config_from_policy(&w.msg, 64, &back, &e), &e);
        assert_int_equal(back.sparsity, cfg.sparsity);
        assert_int_equal(back.stride, cfg.stride);
        assert_int_equal(back.decide, cfg.decide);
        assert_string_equal(back.dict_path, cfg.dict_path);
    }
    /* refreshkv with full_store "csr": its store's csr fields are taken, and travel back */
    Subkv__PolicyConfig p = SUBKV__POLICY_CONFIG__INIT;
    Subkv__OptInt sparsity = SUBKV__OPT_INT__INIT;
    Subkv__OptFloat rope = SUBKV__OPT_FLOAT__INIT;
    sparsity.v = 3, rope.v = 100000.0f;
    p.policy = (char *)"refreshkv";
    p.full_store = (char *)"csr";
    p.sparsity = &sparsity;
    p.rope_base = &rope;
    p.dict_path = (char *)"pre.skvd";
    skv_config cfg, back;
    skv_err e;
    TU_OK(skv_wire_config_from_policy(&p, 64, &cfg, &e), &e);
    assert_int_equal(cfg.full_store, SKV_FULL_CSR);
    assert_int_equal(cfg.sparsity, 3);
    assert_true(cfg.rope_base == 100000.0f);
    assert_string_equal(cfg.dict_path, "pre.skvd");
    skv_wire_policy w;
    skv_wire_policy_from_config(&w, &cfg);
    TU_OK(skv_wire_config_from_policy(&w.msg, 64, &back, &e), &e);
    assert_int_equal(back.full_store, SKV_FULL_CSR);
    assert_int_equal(back.sparsity, 3);
    assert_true(back.rope_base == 100000.0f);
    assert_string_equal(back.dict_path, "pre.skvd");
}

static void test_client_connect_failure_is_io(void **state) {
    (void)state;
    skv_client *c = NULL;
    skv_err err = {0};
    assert_int_equal(skv_client_connect("unix:/nonexistent/x.sock", NULL, &c, &err), SKV_ERR_IO);
    assert_null(c);
    assert_non_null(strstr(err.msg, "No such file"));
}

int main(void) {
    tu_suite_begin("client");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_requests_round_trip_through_fake_service),
        cmocka_unit_test(test_client_broken_replies_are_protocol_or_io_errors),
        cmocka_unit_test(test_client_connect_failure_is_io),
        cmocka_unit_test(test_wire_ignores_other_policies_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
