/*
 * coord_limits.c — what each client holds (for its limits), what a lost worker held (for the
 * message every client then gets), and the checkpoint fault hook of the durability tests.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_internal.h"
#include "shard_map.h"

/* ---- per-client usage ------------------------------------------------------------------- */

coord_owner *coord_owner_get(skv_coord *c, uint64_t client, int create) {
    size_t lo = 0, hi = c->nowners;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->owners[mid].client < client)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->nowners && c->owners[lo].client == client) return &c->owners[lo];
    if (!create) return NULL;
    skv_err e;
    if (skv_grow((void **)&c->owners, &c->cap_owners, c->nowners + 1, sizeof *c->owners, &e) !=
        SKV_OK)
        return NULL;
    memmove(&c->owners[lo + 1], &c->owners[lo], (c->nowners - lo) * sizeof *c->owners);
    c->owners[lo] = (coord_owner){client, 0, 0};
    c->nowners++;
    return &c->owners[lo];
}

static uint64_t limit_or(uint64_t v, uint64_t dflt) { return v ? v : dflt; }

subkv_status coord_limit_check(skv_coord *c, uint64_t client, uint64_t seqs, uint64_t bytes,
                               skv_err *err) {
    const uint64_t max_total = limit_or(c->opts.max_seqs, SKV_COORD_DEFAULT_MAX_SEQS);
    const uint64_t max_seqs =
        limit_or(c->opts.max_seqs_per_client, SKV_COORD_DEFAULT_SEQS_PER_CLIENT);
    const uint64_t max_bytes =
        limit_or(c->opts.max_bytes_per_client, SKV_COORD_DEFAULT_BYTES_PER_CLIENT);
    if (seqs && c->nseq + seqs > max_total)
        return skv_set_error(err, SKV_ERR_LIMIT,
                             "the service holds %zu sequences, its limit (--max-seqs)", c->nseq);
    if (client == 0) return SKV_OK; /* restored sequences: no client to charge */
    const coord_owner *o = coord_owner_get(c, client, 0);
    const uint64_t have_s = o ? o->seqs : 0, have_b = o ? o->bytes : 0;
    if (seqs && have_s + seqs > max_seqs)
        return skv_set_error(err, SKV_ERR_LIMIT,
                             "client %llu holds %llu sequences, its limit "
                             "(--max-seqs-per-client %llu)",
                             (unsigned long long)client, (unsigned long long)have_s,
                             (unsigned long long)max_seqs);
    if (bytes && (bytes > max_bytes || have_b > max_bytes - bytes))
        return skv_set_error(err, SKV_ERR_LIMIT,
                             "client %llu: %llu B of K/V stored + %llu B new exceeds its limit "
                             "(--max-bytes-per-client %llu)",
                             (unsigned long long)client, (unsigned long long)have_b,
                             (unsigned long long)bytes, (unsigned long long)max_bytes);
    return SKV_OK;
}

void coord_owner_charge(skv_coord *c, uint64_t client, int64_t seqs, int64_t bytes) {
    if (client == 0) return;
    coord_owner *o = coord_owner_get(c, client, seqs > 0 || bytes > 0);
    if (!o) return; /* no memory for the record: the limit is then not enforced for it */
    o->seqs = (uint64_t)((int64_t)o->seqs + seqs);
    o->bytes = (uint64_t)((int64_t)o->bytes + bytes);
    if (o->seqs == 0 && o->bytes == 0) { /* nothing left: forget the client */
        size_t i = (size_t)(o - c->owners);
        memmove(&c->owners[i], &c->owners[i + 1], (c->nowners - i - 1) * sizeof *c->owners);
        c->nowners--;
    }
}

/* ---- what a lost worker held ------------------------------------------------------------ */

void coord_describe_lost(const skv_coord *c, int r, const char *why, char *out, size_t n) {
    /* the shard map is a pure function: recount the (sequence, layer, head, shard) sketches
     * it placed on r, and name the first few sequences */
    uint64_t sketches = 0, nseqs = 0;
    char ids[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < c->nseq; i++) {
        const coord_seq *s = &c->seqs[i];
        uint64_t mine = 0;
        for (uint32_t l = 0; l < s->layers; l++)
            for (uint32_t h = 0; h < s->kv_heads; h++)
                for (uint32_t k = 0; k < s->shards; k++)
                    mine += coord_owner_rank(c, s->id, l, h, s->kv_heads, k, s->shards) == r;
        if (!mine) continue;
        sketches += mine;
        if (nseqs++ < 6 && used < sizeof ids - 24)
            used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%llu", used ? "," : "",
                                     (unsigned long long)s->id);
    }
    snprintf(out, n,
             "worker rank %d of %d lost (%s); it held %llu sketches of %llu sequences%s%s%s; "
             "restart from the last checkpoint",
             r, c->nworkers, why, (unsigned long long)sketches, (unsigned long long)nseqs,
             nseqs ? " (" : "", ids, nseqs ? (nseqs > 6 ? ",...)" : ")") : "");
}

/* ---- fault hook --------------------------------------------------------------------------- */

void coord_fault(const skv_coord *c, const char *point) {
    const char *f = c->opts.fault;
    const size_t n = strlen(point);
    if (!f || strncmp(f, point, n) != 0 || (f[n] != ':' && f[n] != '\0')) return;
    const int nth = f[n] == ':' ? atoi(f + n + 1) : 1;
    if (nth != c->ckpt_count) return;
    fprintf(stderr, "subkv-coordinator: SUBKV_FAULT=%s: dying at %s\n", f, point);
    fflush(stderr);
    /* SIGKILL as from outside, sent by a shell exec'd in this process's place: a memory
     * checker running it (make valgrind) then reports nothing, rather than the request it
     * was halfway through as leaked */
    execl("/bin/sh", "sh", "-c", "kill -9 $$", (char *)NULL);
    raise(SIGKILL); /* no shell */
}
