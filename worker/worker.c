/*
 * worker.c — the worker's op handlers (skv_worker, see worker.h, proto/subkv.proto); the
 * MPI serve loop around them is worker_serve.c, and the coordinator's --local-worker calls
 * them in-process.
 *
 * Every handler validates the whole request (sketches exist, payload sizes, budgets)
 * before it changes anything, so a failed request leaves the worker's sketches as they
 * were. Buffers for headers, payloads and partials are kept between requests and only
 * grow (no allocation per op once warm).
 */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "gpu_attend.h"
#include "gpu_csr.h"
#include "gpu_refresh.h"
#include "shard_map.h"
#include "sketch_table.h"
#include "csr_dict.h"
#include "skv_backend.h"
#include "skv_check.h"
#include "skv_wire.h"

struct skv_worker {
    int rank, nworkers;
    skv_worker_opts opts;
    skv_table table;
    skv_dicts *dicts; /* csr dictionary sets by dict_path, loaded once, shared by sketches */
    char backend[256];
    int device;     /* CUDA ordinal of the GPU path, or -1 */
    float *out;     /* partials of the last op */
    size_t out_cap; /* floats */
    int gpu_on;     /* attends go to the GPU where the sketch allows it */
    skv_gpu gpu;
    skv_gpu_item *gitems;
    size_t gitems_cap;
    Subkv__WorkerStats ws; /* WOP_STATS' answer, pointing into by_policy and backend */
    uint64_t by_policy[SKV_POLICY_COUNT];
    int ckpt_count;    /* checkpoints written (the fault hook counts them) */
    int said_full_mem; /* told stderr that full_mem=device runs as host here */
};
typedef struct skv_worker worker;

static skv_item_key item_key(const Subkv__WorkItem *it) {
    skv_item_key k = {it->seq_id, it->layer, it->kv_head, it->shard};
    return k;
}

/* ---- create / drop ---------------------------------------------------------------------- */

/* What the worker budget reserves for a sketch: the most it can ever hold. */
static size_t reservation(const skv_sketch *s) {
    return skv_config_max_bytes(skv_sketch_config(s));
}

static size_t reserved_bytes(const skv_table *t) {
    size_t sum = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].sketch) sum += reservation(t->slots[i].sketch);
    return sum;
}

/*
 * With a worker budget, every sketch reserves the most it can ever hold at create, so an
 * append or step can never run out of budget halfway through a multi-worker op: only
 * creates (rolled back whole by the coordinator) fail on the budget.
 */
static subkv_status op_create(worker *w, const Subkv__WorkerOp *op, skv_err *err) {
    skv_config base;
    SKV_CHECK(skv_wire_config_from_policy(op->policy, (int)op->head_dim, &base, err));
    skv_sketch **made = calloc(op->n_items ? op->n_items : 1, sizeof *made);
    if (!made) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu sketches", op->n_items);
    subkv_status st = SKV_OK;
    size_t added = 0, need = 0;
    /* what the table reserves already: one scan, not one per item */
    const size_t held = w->opts.budget_bytes ? reserved_bytes(&w->table) : 0;
    for (size_t i = 0; i < op->n_items && st == SKV_OK; i++) {
        const Subkv__WorkItem *it = op->items[i];
        skv_item_key k = item_key(it);
        if (skv_table_find(&w->table, &k)) {
            st = skv_set_error(err, SKV_ERR_INVALID_ARG,
                               "sketch (seq %llu, layer %u, head %u) exists",
                               (unsigned long long)k.seq, k.layer, k.head);
            break;
        }
        skv_config c;
        skv_shard_item_config(&base, it->seq_id, it->layer, it->kv_head, it->shard,
                              op->shards ? op->shards : 1, &c);
        st = skv_config_bind_dict(&c, w->dicts, err); /* csr: its set, loaded on first use */
        if (st != SKV_OK) break;
        if (w->opts.budget_bytes) { /* check the reservation before allocating anything */
            skv_config rc;
            st = skv_config_resolve(&c, &rc, err);
            if (st != SKV_OK) break;
            size_t r = skv_config_max_bytes(&rc);
            if (r == SIZE_MAX) {
                st = skv_set_error(err, SKV_ERR_BUDGET,
                                   "worker %d has a memory budget: a %s sketch needs max_tokens"
                                   "%s",
                                   w->rank, skv_policy_name(rc.policy),
                                   rc.policy == SKV_POLICY_REFRESHKV ? "" : " or budget_bytes");
                break;
            }
            need += r;
            if (held + need > w->opts.budget_bytes) {
                st = skv_set_error(err, SKV_ERR_BUDGET,
                                   "worker %d budget: %zu B reserved + %zu B new > %zu B", w->rank,
                                   held, need, w->opts.budget_bytes);
                break;
            }
        }
        st = skv_sketch_create(&c, &made[i], err);
        if (st == SKV_OK && !w->gpu_on && !w->said_full_mem && c.full_mem == SKV_FULL_MEM_DEVICE &&
            c.policy == SKV_POLICY_REFRESHKV) { /* once per worker: not worth a failure */
            fprintf(stderr,
                    "subkv-worker %d: refreshkv full_mem=device on a worker without a GPU (%s): "
                    "the full store and full steps stay in host memory\n",
                    w->rank, w->backend);
            w->said_full_mem = 1;
        }
    }
    for (; st == SKV_OK && added < op->n_items; added++) {
        skv_item_key k = item_key(op->items[added]);
        st = skv_table_insert(&w->table, &k, made[added], err);
        if (st == SKV_OK) made[added] = NULL;
    }
    if (st != SKV_OK) /* roll back: the table holds what it held before */
        for (size_t i = 0; i < added; i++) {
            skv_item_key k = item_key(op->items[i]);
            skv_table_remove(&w->table, &k);
        }
    for (size_t i = 0; i < op->n_items; i++) skv_sketch_destroy(made[i]);
    free(made);
    return st;
}

static subkv_status op_drop(worker *w, const Subkv__WorkerOp *op) {
    for (size_t i = 0; i < op->n_items; i++) skv_table_drop_seq(&w->table, op->items[i]->seq_id);
    return SKV_OK;
}

/* ---- append / step / attend ------------------------------------------------------------- */

/* Would appending n tokens to s break its own cap? (The coordinator checks this before
 * dispatch; this is the worker's own guard.) */
static subkv_status check_cap(skv_sketch *s, size_t n, skv_err *err) {
    const uint64_t cap = skv_config_token_cap(skv_sketch_config(s));
    if (!cap) return SKV_OK;
    skv_stats st;
    skv_sketch_stats(s, &st);
    if (st.tokens_seen + n > cap)
        return skv_set_error(err, SKV_ERR_BUDGET, "sketch holds %llu of %llu tokens, +%zu exceeds",
                             (unsigned long long)st.tokens_seen, (unsigned long long)cap, n);
    return SKV_OK;
}

static subkv_status op_tokens(worker *w, const Subkv__WorkerOp *op, const float *in, size_t nin,
                              size_t *nout, skv_err *err) {
    const size_t d = op->head_dim;
    size_t need_in = 0, need_out = 0;
    skv_sketch **sk = calloc(op->n_items ? op->n_items : 1, sizeof *sk);
    if (!sk) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for %zu items", op->n_items);
    subkv_status st = SKV_OK;
    for (size_t i = 0; i < op->n_items && st == SKV_OK; i++) {
        const Subkv__WorkItem *it = op->items[i];
        skv_item_key k = item_key(it);
        sk[i] = skv_table_find(&w->table, &k);
        if (!sk[i]) {
            st = skv_set_error(err, SKV_ERR_NOT_FOUND,
                               "worker %d has no sketch (seq %llu, layer %u, head %u, shard %u)",
                               w->rank, (unsigned long long)k.seq, k.layer, k.head, k.shard);
            break;
        }
        if ((size_t)skv_sketch_config(sk[i])->head_dim != d)
            st = skv_set_error(err, SKV_ERR_SHAPE, "head_dim %zu, sketch has %d", d,
                               skv_sketch_config(sk[i])->head_dim);
        if (st == SKV_OK && it->n_tokens) st = check_cap(sk[i], it->n_tokens, err);
        if (st == SKV_OK && it->refresh &&
            (!it->group || skv_sketch_config(sk[i])->policy != SKV_POLICY_REFRESHKV))
            st = skv_set_error(
                err, SKV_ERR_PROTOCOL, "refresh flag on a %s item (seq %llu, layer %u, head %u)%s",
                skv_policy_name(skv_sketch_config(sk[i])->policy), (unsigned long long)k.seq,
                k.layer, k.head, it->group ? "" : " without queries");
        need_in += (2 * (size_t)it->n_tokens + it->group) * d;
        need_out += (size_t)it->group * (d + 2);
    }
    if (st == SKV_OK && need_in != nin)
        st = skv_set_error(err, SKV_ERR_PROTOCOL, "payload of %zu floats, items need %zu", nin,
                           need_in);
    if (st == SKV_OK) st = skv_grow((void **)&w->out, &w->out_cap, need_out, sizeof(float), err);
    /* Appends first, then every attend (items are distinct sketches, so the order of an
     * item's append and another's attend does not matter). GPU-resident sketches queue their
     * appends, launched together before the attends; so do the appends of GPU-eligible csr
     * sketches, whose tokens are coded on the GPU in one batch (worker/gpu_csr.h: always,
     * when the request has one that codes a token), then appended to their CPU sketches with
     * those codes after a sync; the other appends run on the CPU meanwhile. GPU-eligible
     * attends batch into one launch; the rest run on the CPU (a resident sketch's CPU shadow
     * is pulled up to date first). One more device sync at the end. */
    const float **qp = NULL;
    if (st == SKV_OK) qp = calloc(op->n_items ? op->n_items : 1, sizeof *qp);
    if (st == SKV_OK && !qp) st = skv_set_error(err, SKV_ERR_NOMEM, "no memory for items");
    if (st == SKV_OK && w->gpu_on)
        st = skv_grow((void **)&w->gitems, &w->gitems_cap, op->n_items, sizeof *w->gitems, err);
    const float *p = in;
    size_t queued = 0;
    for (size_t i = 0; i < op->n_items && st == SKV_OK; i++) { /* the GPU's appends */
        const Subkv__WorkItem *it = op->items[i];
        if (it->n_tokens) {
            const float *K = p, *V = p + (size_t)it->n_tokens * d;
            skv_item_key k = item_key(it);
            if (w->gpu_on && skv_gpu_resident(sk[i])) {
                st = skv_gpu_append(&w->gpu, skv_table_find_entry(&w->table, &k), K, V,
                                    it->n_tokens, err);
                queued++;
            } else if (w->gpu_on && skv_gpu_csr_codes_here(&w->gpu, sk[i])) {
                st = skv_gpu_csr_append(&w->gpu, skv_table_find_entry(&w->table, &k), K, V,
                                        it->n_tokens, err);
                queued++; /* the request's uploads: its staging restarts after the last sync */
            }
            p += 2 * (size_t)it->n_tokens * d;
        }
        qp[i] = p;
        p += (size_t)it->group * d;
    }
    if (w->gpu_on && st == SKV_OK) st = skv_gpu_csr_launch_codes(&w->gpu, err);
    if (w->gpu_on && st == SKV_OK) st = skv_gpu_launch_appends(&w->gpu, err);
    for (size_t i = 0; i < op->n_items && st == SKV_OK; i++) { /* the CPU's, meanwhile */
        const size_t n = op->items[i]->n_tokens;
        if (n &&
            !(w->gpu_on && (skv_gpu_resident(sk[i]) || skv_gpu_csr_codes_here(&w->gpu, sk[i]))))
            st = skv_sketch_append(sk[i], qp[i] - 2 * n * d, qp[i] - n * d, n, (int)d, err);
    }
    if (w->gpu_on && st == SKV_OK) st = skv_gpu_csr_finish_codes(&w->gpu, err);
    if (w->gpu_on && st != SKV_OK) { /* what was queued stays unappended */
        skv_gpu_discard(&w->gpu);
        skv_gpu_csr_discard_codes(&w->gpu);
    }
    float *o = w->out;
    size_t ng = 0;
    int ggroup = 0;
    for (size_t i = 0; i < op->n_items && st == SKV_OK; i++) {
        const Subkv__WorkItem *it = op->items[i];
        if (!it->group) continue;
        skv_item_key k = item_key(it);
        const int on_gpu = w->gpu_on && skv_gpu_eligible(&w->gpu, sk[i], (int)it->group) &&
                           (ng == 0 || ggroup == (int)it->group);
        int done = 0;
        if (it->refresh) /* the coordinator's per-layer decision: a full step now */
            st = skv_sketch_refresh(sk[i], err);
        if (st != SKV_OK) break;
        /* refreshkv with full_mem = device: decided on the CPU, full steps run on the GPU */
        const int dev_full = on_gpu && skv_gpu_refresh_device(sk[i], (int)it->group);
        if (on_gpu && !dev_full) /* the policy's CPU part first: a refreshkv full step here */
            st = skv_sketch_attend_begin(sk[i], qp[i], (int)it->group, (int)d, (skv_partial *)o,
                                         &done, err);
        if (st != SKV_OK || done) {
            /* answered (or failed) on the CPU */
        } else if (on_gpu) {
            skv_gpu_item *gi = &w->gitems[ng];
            *gi =
                (skv_gpu_item){.entry = skv_table_find_entry(&w->table, &k), .q = qp[i], .out = o};
            if (dev_full) st = skv_gpu_refresh_begin(&w->gpu, gi, (int)it->group, err);
            if (st == SKV_OK) ng++, ggroup = (int)it->group;
        } else {
            if (w->gpu_on) st = skv_gpu_pull(&w->gpu, skv_table_find_entry(&w->table, &k), err);
            if (st == SKV_OK)
                st = skv_sketch_attend(sk[i], qp[i], (int)it->group, (int)d, (skv_partial *)o, err);
        }
        o += (size_t)it->group * (d + 2);
    }
    if (w->gpu_on && (ng || queued) && st == SKV_OK)
        st = skv_gpu_finish(&w->gpu, w->gitems, ng, (int)d, ggroup, err);
    if (w->gpu_on) skv_gpu_refresh_end(&w->gpu); /* the request's device scratch, in any case */
    free(qp);
    free(sk);
    *nout = st == SKV_OK ? need_out : 0;
    return st;
}

/* ---- stats and checkpoints -------------------------------------------------------------- */

static Subkv__WorkerStats *op_stats(worker *w) {
    Subkv__WorkerStats *ws = &w->ws;
    subkv__worker_stats__init(ws);
    memset(w->by_policy, 0, sizeof w->by_policy);
    for (size_t i = 0; i < w->table.cap; i++) {
        skv_sketch *s = w->table.slots[i].sketch;
        if (s) w->by_policy[skv_sketch_config(s)->policy] += skv_sketch_bytes(s);
    }
    ws->rank = (uint32_t)w->rank;
    ws->backend = w->backend;
    ws->sketches = (uint32_t)w->table.count;
    ws->bytes = skv_table_bytes(&w->table);
    ws->budget_bytes = w->opts.budget_bytes;
    ws->n_bytes_by_policy = SKV_POLICY_COUNT;
    ws->bytes_by_policy = w->by_policy;
    return ws;
}

static void ckpt_path(const worker *w, const char *dir, char *path, size_t n) {
    snprintf(path, n, "%s/worker-%d.skv", dir, w->rank);
}

/* The fault hook: the process dies with half of its checkpoint file written (the temporary
 * name skv_file_write_atomic uses), as a kill in the middle of the write would leave it. */
static void fault_partial_write(const worker *w, const char *path, const skv_buf *b) {
    const char *f = w->opts.fault, *point = "ckpt-worker-partial";
    const size_t n = strlen(point);
    if (!f || strncmp(f, point, n) != 0 || (f[n] && f[n] != ':')) return;
    if ((f[n] == ':' ? atoi(f + n + 1) : 1) != w->ckpt_count) return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (fp) {
        fwrite(b->data, 1, b->len / 2, fp);
        fclose(fp);
    }
    fprintf(stderr, "subkv-worker %d: SUBKV_FAULT=%s: dying halfway through %s\n", w->rank, f,
            path);
    fflush(stderr);
    /* SIGKILL as from outside, sent by a shell exec'd in this process's place: a memory
     * checker running it (make valgrind) then reports nothing, rather than the request it
     * was halfway through as leaked */
    execl("/bin/sh", "sh", "-c", "kill -9 $$", (char *)NULL);
    raise(SIGKILL); /* no shell */
}

static subkv_status op_checkpoint(worker *w, const Subkv__WorkerOp *op, skv_err *err) {
    char path[4096];
    SKV_CHECK(skv_dir_ensure(op->path, err));
    ckpt_path(w, op->path, path, sizeof path);
    /* GPU-resident sketches: their CPU shadows catch up with the device first */
    for (size_t i = 0; w->gpu_on && i < w->table.cap; i++)
        if (w->table.slots[i].sketch) SKV_CHECK(skv_gpu_pull(&w->gpu, &w->table.slots[i], err));
    skv_buf b = {0};
    w->ckpt_count++;
    subkv_status st = skv_table_save(&w->table, w->rank, w->nworkers, &b, err);
    if (st == SKV_OK) fault_partial_write(w, path, &b);
    if (st == SKV_OK) st = skv_file_write_atomic(path, b.data, b.len, err);
    skv_buf_free(&b);
    return st;
}

static subkv_status op_restore(worker *w, const Subkv__WorkerOp *op, skv_err *err) {
    char path[4096];
    ckpt_path(w, op->path, path, sizeof path);
    unsigned char *data = NULL;
    size_t len = 0;
    SKV_CHECK(skv_file_read(path, (size_t)1 << 40, &data, &len, err));
    skv_table t;
    subkv_status st =
        skv_table_load(data, len, w->rank, w->nworkers,
                       w->opts.budget_bytes ? w->opts.budget_bytes : SIZE_MAX, w->dicts, &t, err);
    free(data);
    if (st != SKV_OK) return st;
    if (w->opts.budget_bytes && reserved_bytes(&t) > w->opts.budget_bytes) {
        size_t b = reserved_bytes(&t);
        skv_table_free(&t);
        return skv_set_error(err, SKV_ERR_BUDGET, "checkpoint reserves %zu B, worker budget %zu B",
                             b, w->opts.budget_bytes);
    }
    skv_table_free(&w->table); /* replaced only once the whole file has loaded */
    w->table = t;
    return SKV_OK;
}

/* ---- the handler ------------------------------------------------------------------------- */

subkv_status skv_worker_new(int rank, int nworkers, int local_rank, const skv_worker_opts *opts,
                            skv_worker **out, skv_err *err) {
    *out = NULL;
    worker *w = calloc(1, sizeof *w);
    if (!w) return skv_set_error(err, SKV_ERR_NOMEM, "no memory for worker %d", rank);
    w->rank = rank;
    w->nworkers = nworkers;
    w->opts = *opts;
    w->device = -1;
    skv_table_init(&w->table);
    subkv_status st = skv_dicts_new(&w->dicts, err);
    if (st != SKV_OK) {
        free(w);
        return st;
    }
    skv_backend_info bi;
    skv_err gerr = {0};
    if (opts->backend != SKV_WORKER_CPU)
        skv_backend_select(local_rank, &bi);
    else
        bi = (skv_backend_info){.kind = SKV_BACKEND_CPU, .device = -1};
    if (bi.kind == SKV_BACKEND_CUDA &&
        skv_gpu_init(&w->gpu, opts->gpu_reserve_bytes, &gerr) == SKV_OK)
        w->gpu_on = 1, w->device = bi.device;
    if (opts->backend == SKV_WORKER_CPU)
        snprintf(bi.reason, sizeof bi.reason, "--backend cpu");
    else if (bi.kind == SKV_BACKEND_CUDA && !w->gpu_on)
        bi.kind = SKV_BACKEND_CPU, snprintf(bi.reason, sizeof bi.reason, "%.150s", gerr.msg);
    skv_backend_describe(&bi, w->backend, sizeof w->backend);
    if (opts->backend == SKV_WORKER_CUDA && !w->gpu_on) {
        /* keep serving (the coordinator waits for every worker), on the CPU, saying so */
        fprintf(stderr, "subkv-worker %d: --backend cuda, but falling back to %s\n", w->rank,
                w->backend);
    }
    *out = w;
    return SKV_OK;
}

subkv_status skv_worker_handle(skv_worker *w, const Subkv__WorkerOp *op, const float *in,
                               size_t nin, skv_worker_result *res, skv_err *err) {
    *res = (skv_worker_result){0};
    subkv_status st = SKV_OK;
    size_t nout = 0;
    switch (op->op) {
    case SUBKV__WORKER_OP_CODE__WOP_CREATE: st = op_create(w, op, err); break;
    case SUBKV__WORKER_OP_CODE__WOP_DROP: st = op_drop(w, op); break;
    case SUBKV__WORKER_OP_CODE__WOP_APPEND:
    case SUBKV__WORKER_OP_CODE__WOP_STEP:
    case SUBKV__WORKER_OP_CODE__WOP_ATTEND: st = op_tokens(w, op, in, nin, &nout, err); break;
    case SUBKV__WORKER_OP_CODE__WOP_STATS: res->stats = op_stats(w); break;
    case SUBKV__WORKER_OP_CODE__WOP_CHECKPOINT: st = op_checkpoint(w, op, err); break;
    case SUBKV__WORKER_OP_CODE__WOP_RESTORE: st = op_restore(w, op, err); break;
    case SUBKV__WORKER_OP_CODE__WOP_SHUTDOWN: res->shutdown = 1; break;
    default: st = skv_set_error(err, SKV_ERR_PROTOCOL, "unknown worker op %d", (int)op->op);
    }
    if (st == SKV_OK) res->out = w->out, res->nout = nout;
    return st;
}

const char *skv_worker_backend_name(const skv_worker *w) { return w->backend; }

int skv_worker_device(const skv_worker *w) { return w->gpu_on ? w->device : -1; }

void skv_worker_free(skv_worker *w) {
    if (!w) return;
    skv_table_free(&w->table); /* mirrors first: they live in the GPU context's device */
    skv_dicts_free(w->dicts);  /* after every sketch that borrowed a set */
    if (w->gpu_on) skv_gpu_fini(&w->gpu);
    free(w->gitems);
    free(w->out);
    free(w);
}
