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

void skv_philox4x32(const uint32_t ctr[4], skv_rng_key key, uint32_t out[4]) {
    skv_hd_philox4x32(ctr, key.k0, key.k1, out);
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
