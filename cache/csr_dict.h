/*
 * csr_dict.h — dictionaries of the CSR policy (arXiv 2412.11741): unit atoms, matching
 * pursuit, the versioned dictionary file, and a caller-owned registry that binds a config's
 * dict_path to a loaded dictionary.
 *
 * A dictionary *set* covers a whole model: G groups of layers_per_group consecutive layers,
 * and per group three tables of N unit atoms (float32, row-major):
 *   keys    [N][d]     one key vector      = s atoms
 *   value 0 [N][d/2]   channels [0, d/2)   = s/2 atoms   (the paper codes each value half
 *   value 1 [N][d/2]   channels [d/2, d)   = s/2 atoms    on its own)
 * Layer l uses group l / layers_per_group. A set is immutable once finished (skv_dict_finish)
 * and shared, read-only, by every sketch bound to it: sketches borrow it, so it must outlive
 * them. Its bytes are not counted in any sketch's bytes() (one copy per process, not per head).
 *
 * File format (version 1), little-endian:
 *   "SKVD" | u32 version | u64 body_len | u32 crc32c(body) | body
 *   body: u32 head_dim, u32 atoms, u32 groups, u32 layers_per_group, u32 key_space, u32 0,
 *         then per group: keys [N][d], value 0 [N][d/2], value 1 [N][d/2] float32.
 * Loaders check magic, version, checksum, every bound, the exact body length, that every
 * atom is finite and of unit norm (within 1e-3) before handing anything out.
 */
#ifndef SUBKV_CSR_DICT_H
#define SUBKV_CSR_DICT_H

#include <stddef.h>
#include <stdint.h>

#include "subkv.h"

enum {
    SKV_DICT_MAX_ATOMS = 65536, /* indices are stored as u16 */
    SKV_DICT_MAX_GROUPS = 1024,
    SKV_DICT_HEADER_BYTES = 20,
};

/* Which keys a dictionary was trained on. The paper codes keys before rotary embedding
 * (pre-rotary: a sketch with rope_base > 0 undoes RoPE before coding and redoes it when
 * decoding, cache/csr.c); post-rotary codes the keys as given. */
typedef enum skv_key_space { SKV_KEYS_POST_ROTARY = 0, SKV_KEYS_PRE_ROTARY = 1 } skv_key_space;

struct skv_dict {
    int d;                /* head_dim (even)                                      */
    int atoms;            /* N, 1..SKV_DICT_MAX_ATOMS                             */
    int groups;           /* G                                                    */
    int layers_per_group; /* >= 1                                                 */
    skv_key_space key_space;
    float *data;          /* groups * 2 * N * d floats: per group keys, value 0, value 1 */
    uint64_t fingerprint; /* FNV-1a 64 of the serialized body (skv_dict_finish)   */
};

/* A zeroed set of the given shape; SKV_ERR_INVALID_ARG / SKV_ERR_SHAPE on bad shapes. */
subkv_status skv_dict_new(int d, int atoms, int groups, int layers_per_group, skv_dict **out,
                          skv_err *err);
void skv_dict_free(skv_dict *dict);

/* Atom tables of group g (0 <= g < groups): keys [N][d]; value half h (0 or 1) [N][d/2]. */
float *skv_dict_keys(const skv_dict *dict, int g);
float *skv_dict_values(const skv_dict *dict, int g, int half);
/* Group of a layer, or -1 when the set has no group for it. */
int skv_dict_group_of(const skv_dict *dict, uint32_t layer);

/* Normalize every atom to unit length and compute the fingerprint. A zero or non-finite
 * atom fails with SKV_ERR_INVALID_ARG. Call after filling or changing atoms. */
subkv_status skv_dict_finish(skv_dict *dict, skv_err *err);

/* Serialize (appending to out) / parse one set; see the format above. */
subkv_status skv_dict_save(const skv_dict *dict, skv_buf *out, skv_err *err);
subkv_status skv_dict_load(const void *data, size_t len, skv_dict **out, skv_err *err);
/* The same through a file (written atomically; read at most 4 GiB). */
subkv_status skv_dict_save_file(const skv_dict *dict, const char *path, skv_err *err);
subkv_status skv_dict_load_file(const char *path, skv_dict **out, skv_err *err);

/* ---- matching pursuit ----------------------------------------------------------------- */

/*
 * Code x[dim] with s steps of matching pursuit over atoms[n][dim] (unit rows): each step
 * picks the atom of largest |<r, a>| (lowest index on ties), rounds c = <r, a> to float16
 * (saturating at +-65504) and subtracts the *rounded* coefficient, so the residual is exactly
 * what the stored code leaves: ||r'||^2 = ||r||^2 - c^2 + (c - f16(c))^2 <= ||r||^2.
 * Writes idx[s], coef[s] (float16 bits); resid[s + 1] (optional) gets ||r|| before each step
 * and after the last. Cost s * n * dim.
 */
void skv_mp_encode(const float *atoms, int n, int dim, const float *x, int s, uint16_t *idx,
                   uint16_t *coef, float *resid);
/* The value of a stored float16 coefficient. */
float skv_mp_coef(uint16_t coef);
/* out[dim] = sum_i f16(coef[i]) * atoms[idx[i]] (indices must be < n). */
void skv_mp_decode(const float *atoms, int dim, const uint16_t *idx, const uint16_t *coef, int s,
                   float *out);

/* x[d] <- R(pos)^sign x: RoPE of `base` on channel pairs (2i, 2i+1), angle
 * sign * pos * base^(-2i/d) (sign -1 undoes it), in double: the rule csr's rope_base uses
 * (cache/subkv.h), for tools that turn trace keys into pre-rotary keys. */
void skv_rope_apply(float *x, int d, uint64_t pos, double base, double sign);

/* ---- registry: dict_path -> loaded set ------------------------------------------------- */

/*
 * A caller-owned table of named sets (no global state: a worker or a tool keeps one). A name
 * is a file path (loaded on first use) or a name given to skv_dicts_add (an in-memory set).
 * The registry owns its sets and frees them with itself; sketches bound to them must be
 * destroyed first.
 */
typedef struct skv_dicts skv_dicts;

subkv_status skv_dicts_new(skv_dicts **out, skv_err *err);
void skv_dicts_free(skv_dicts *reg);
/* Register `dict` (ownership passes to reg, also on failure) under `name`; a name already
 * present fails with SKV_ERR_INVALID_ARG. */
subkv_status skv_dicts_add(skv_dicts *reg, const char *name, skv_dict *dict, skv_err *err);
/* The set named `name`, loading the file of that path on first use. */
subkv_status skv_dicts_get(skv_dicts *reg, const char *name, const skv_dict **out, skv_err *err);
/* Whether a config codes with a dictionary: csr, or refreshkv with full_store = csr. */
int skv_config_needs_dict(const skv_config *cfg);
/* For such a config without cfg->dict: bind the set named cfg->dict_path (loading it); other
 * configs and bound ones are left alone. */
subkv_status skv_config_bind_dict(skv_config *cfg, skv_dicts *reg, skv_err *err);

#endif /* SUBKV_CSR_DICT_H */
