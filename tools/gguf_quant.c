/*
 * gguf_quant.c — ggml tensor types: block sizes (to validate any tensor's byte size) and
 * dequantisation of the types our models use (see gguf.h for the block layouts).
 */
#include <string.h>

#include "gguf.h"
#include "skv_internal.h"

typedef struct ggml_type_info {
    const char *name;
    uint8_t elems_log2; /* block elements = 1 << elems_log2 */
    uint16_t bytes;     /* bytes per block; 0 = unknown / removed id */
} ggml_type_info;

/* ggml's type table (ggml.h enum ggml_type): ids 4, 5, 31-33 and 36-38 were removed. */
static const ggml_type_info TYPES[] = {
    [0] = {"f32", 0, 4},       [1] = {"f16", 0, 2},       [2] = {"q4_0", 5, 18},
    [3] = {"q4_1", 5, 20},     [6] = {"q5_0", 5, 22},     [7] = {"q5_1", 5, 24},
    [8] = {"q8_0", 5, 34},     [9] = {"q8_1", 5, 36},     [10] = {"q2_k", 8, 84},
    [11] = {"q3_k", 8, 110},   [12] = {"q4_k", 8, 144},   [13] = {"q5_k", 8, 176},
    [14] = {"q6_k", 8, 210},   [15] = {"q8_k", 8, 292},   [16] = {"iq2_xxs", 8, 66},
    [17] = {"iq2_xs", 8, 74},  [18] = {"iq3_xxs", 8, 98}, [19] = {"iq1_s", 8, 50},
    [20] = {"iq4_nl", 5, 18},  [21] = {"iq3_s", 8, 110},  [22] = {"iq2_s", 8, 82},
    [23] = {"iq4_xs", 8, 136}, [24] = {"i8", 0, 1},       [25] = {"i16", 0, 2},
    [26] = {"i32", 0, 4},      [27] = {"i64", 0, 8},      [28] = {"f64", 0, 8},
    [29] = {"iq1_m", 8, 56},   [30] = {"bf16", 0, 2},     [34] = {"tq1_0", 8, 54},
    [35] = {"tq2_0", 8, 66},   [39] = {"mxfp4", 5, 17},
};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

uint32_t ggml_block_elems(uint32_t type) {
    return type < NTYPES && TYPES[type].bytes ? 1u << TYPES[type].elems_log2 : 0;
}
uint32_t ggml_block_bytes(uint32_t type) { return type < NTYPES ? TYPES[type].bytes : 0; }
const char *ggml_type_name(uint32_t type) {
    return type < NTYPES && TYPES[type].bytes ? TYPES[type].name : "?";
}

int ggml_can_dequant(uint32_t type) {
    switch (type) {
    case GGML_F32:
    case GGML_F16:
    case GGML_BF16:
    case GGML_Q8_0:
    case GGML_Q4_0:
    case GGML_Q4_1: return 1;
    default: return 0;
    }
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return skv_f16_to_f32(h);
}

subkv_status gguf_dequant(uint32_t type, const void *src, uint64_t n, float *dst, skv_err *err) {
    if (!ggml_can_dequant(type))
        return skv_set_error(err, SKV_ERR_UNSUPPORTED, "gguf: cannot dequantise type %s (%u)",
                             ggml_type_name(type), (unsigned)type);
    const uint64_t be = ggml_block_elems(type), bb = ggml_block_bytes(type);
    if (n % be != 0)
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "gguf: %llu elements of %s: partial block",
                             (unsigned long long)n, ggml_type_name(type));
    const uint8_t *p = src;
    switch (type) {
    case GGML_F32: memcpy(dst, p, n * 4); break;
    case GGML_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = half_at(p + 2 * i);
        break;
    case GGML_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = skv_bf16_to_f32(h);
        }
        break;
    case GGML_Q8_0:
        for (uint64_t b = 0; b < n / be; b++, p += bb, dst += 32) {
            const float d = half_at(p);
            for (int j = 0; j < 32; j++) dst[j] = d * (float)(int8_t)p[2 + j];
        }
        break;
    case GGML_Q4_0:
        for (uint64_t b = 0; b < n / be; b++, p += bb, dst += 32) {
            const float d = half_at(p);
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                dst[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        break;
    default: /* GGML_Q4_1 */
        for (uint64_t b = 0; b < n / be; b++, p += bb, dst += 32) {
            const float d = half_at(p), m = half_at(p + 2);
            for (int j = 0; j < 16; j++) {
                dst[j] = d * (float)(p[4 + j] & 0x0f) + m;
                dst[j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
        }
        break;
    }
    return SKV_OK;
}
