/*
 * skv_hd.h — the arithmetic the CPU sketches and the CUDA kernels must do bit for bit
 * alike: float <-> half/bfloat16 rounding (to nearest even) and the Philox4x32-10 block
 * behind every coin. Plain C99 that nvcc also compiles for the device (SKV_HD), so the GPU
 * ingest of a SubGen sketch (cuda/subgen_dev.cu) draws the same coins and stores the same
 * bits as cache/subgen.c.
 */
#ifndef SUBKV_HD_H
#define SUBKV_HD_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define SKV_HD __host__ __device__ __forceinline__
#else
#define SKV_HD static inline
#endif

SKV_HD uint32_t skv_hd_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

SKV_HD float skv_hd_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* float -> IEEE half, round to nearest even; overflow -> Inf, NaN stays NaN. */
SKV_HD uint16_t skv_hd_f32_to_f16(float f) {
    const uint32_t x = skv_hd_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: Inf */
    if (ax < 0x38800000u) {                                   /* subnormal half or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;          /* below half the smallest */
        const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(ax >> 23); /* 14..24 */
        uint32_t half = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((ax >> 13) - (112u << 10)); /* rebias exponent 127 -> 15 */
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

/* Exact for every half, subnormals, Inf and NaN included, and free of branches on the
 * common path so row loops vectorize (after F. Giesen's half_to_float). */
SKV_HD float skv_hd_f16_to_f32(uint16_t h) {
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    const uint32_t exp = shifted_exp & o;
    o += (127u - 15u) << 23;
    if (exp == shifted_exp) { /* Inf / NaN */
        o += (128u - 16u) << 23;
    } else if (exp == 0) { /* zero / subnormal: renormalize through a float subtraction */
        o += 1u << 23;
        o = skv_hd_f32_bits(skv_hd_bits_f32(o) - skv_hd_bits_f32(113u << 23));
    }
    return skv_hd_bits_f32(o | ((uint32_t)(h & 0x8000u) << 16));
}

SKV_HD uint16_t skv_hd_f32_to_bf16(float f) {
    uint32_t u = skv_hd_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

SKV_HD float skv_hd_bf16_to_f32(uint16_t h) { return skv_hd_bits_f32((uint32_t)h << 16); }

/* Philox4x32-10 (Salmon et al., SC'11) of counter ctr[4] under key (k0, k1). */
SKV_HD void skv_hd_philox4x32(const uint32_t ctr[4], uint32_t k0, uint32_t k1, uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* "coin accepts with probability p": coin < p * 2^32, compared in double. */
SKV_HD int skv_hd_coin_accept(uint32_t coin, double p) { return (double)coin < p * 4294967296.0; }

#endif /* SUBKV_HD_H */
