/*
 * rng.c — Philox4x32-10 (Salmon et al., SC'11), the counter-based generator behind every
 * coin of a sketch. A coin is a pure function of (key, token, slot, purpose), so the CPU
 * and the GPU draw the same coins in any order and a parallel ingest equals the
 * sequential one (DESIGN.md section 3).
 */
#include "skv_internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

skv_rng_key skv_rng_make_key(uint64_t seed, uint64_t seq, uint32_t layer, uint32_t head) {
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ seq;
    h = splitmix64(&x);
    x = h ^ (((uint64_t)layer << 32) | head);
    h = splitmix64(&x);
    skv_rng_key k = {(uint32_t)h, (uint32_t)(h >> 32)};
    return k;
}

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void skv_philox4x32(const uint32_t ctr[4], skv_rng_key key, uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

uint32_t skv_coin(skv_rng_key key, uint64_t token, uint32_t slot, uint32_t purpose) {
    uint32_t ctr[4] = {(uint32_t)token, (uint32_t)(token >> 32), slot >> 2, purpose};
    uint32_t out[4];
    skv_philox4x32(ctr, key, out);
    return out[slot & 3u];
}

void skv_coins(skv_rng_key key, uint64_t token, uint32_t purpose, uint32_t n, uint32_t *out) {
    uint32_t ctr[4] = {(uint32_t)token, (uint32_t)(token >> 32), 0, purpose};
    uint32_t w[4];
    for (uint32_t i = 0; i < n; i += 4) {
        ctr[2] = i >> 2;
        skv_philox4x32(ctr, key, w);
        for (uint32_t j = 0; j < 4 && i + j < n; j++) out[i + j] = w[j];
    }
}
