/*
 * subgen_dev.cu — the batched SubGen append on the device (see skv_dsub.h for the layout
 * and why it equals cache/subgen.c bit for bit). Every float and double operation that
 * must round like the CPU's is written with an explicit _rn intrinsic, so nvcc cannot
 * contract it into a fused multiply-add the CPU build does not use.
 */
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "skv_check.h"
#include "skv_dsub.h"
#include "skv_hd.h"

namespace {

constexpr int kThreads = 128;
constexpr int kMaxD = 1024;
enum { COIN_CLUSTER = 1, COIN_VALUE = 2, COIN_MERGE = 3 }; /* as cache/skv_internal.h */

struct Block { /* shared memory of one block */
    float k[kMaxD], v[kMaxD];
    double red_d[kThreads];
    int red_i[kThreads];
};

__device__ __forceinline__ float row_get(const void *rows, int dtype, uint64_t r, int d, int e) {
    const uint16_t x = static_cast<const uint16_t *>(rows)[r * (uint64_t)d + e];
    return dtype == SKV_DTYPE_F16 ? skv_hd_f16_to_f32(x) : skv_hd_bf16_to_f32(x);
}
__device__ __forceinline__ void row_put(void *rows, int dtype, uint64_t r, int d, int e, float x) {
    static_cast<uint16_t *>(rows)[r * (uint64_t)d + e] =
        dtype == SKV_DTYPE_F16 ? skv_hd_f32_to_f16(x) : skv_hd_f32_to_bf16(x);
}
/* Store a float row (all threads together). */
__device__ void block_put(void *rows, int dtype, uint64_t r, int d, const float *x) {
    for (int e = threadIdx.x; e < d; e += kThreads) row_put(rows, dtype, r, d, e, x[e]);
}
/* Copy one stored row (one thread). */
__device__ void row_copy(void *rows, uint64_t dst, uint64_t src, int d) {
    uint16_t *p = static_cast<uint16_t *>(rows);
    for (int e = 0; e < d; e++) p[dst * (uint64_t)d + e] = p[src * (uint64_t)d + e];
}

/* ||a - b||^2 exactly as subgen.c's sq_dist: eight float lanes, summed in double. */
__device__ double sq_dist(const float *a, const float *b, int d) {
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const float x = __fsub_rn(a[j + k], b[j + k]);
            lane[k] = __fadd_rn(lane[k], __fmul_rn(x, x));
        }
    for (; j < d; j++) {
        const float x = __fsub_rn(a[j], b[j]);
        lane[0] = __fadd_rn(lane[0], __fmul_rn(x, x));
    }
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < 8; k++) s = __dadd_rn(s, (double)lane[k]);
    return s;
}

/* sum of x[c]^2 in double, in order (subgen.c's ||k|| and ||v||^2). */
__device__ double sum_sq(const float *x, int d) {
    double s = 0.0;
    for (int c = 0; c < d; c++) s = __dadd_rn(s, __dmul_rn((double)x[c], (double)x[c]));
    return s;
}

__device__ uint32_t coin(uint32_t k0, uint32_t k1, uint64_t token, uint32_t slot,
                         uint32_t purpose) {
    const uint32_t ctr[4] = {(uint32_t)token, (uint32_t)(token >> 32), slot >> 2, purpose};
    uint32_t out[4];
    skv_hd_philox4x32(ctr, k0, k1, out);
    return out[slot & 3u];
}

/* Block-wide argmin of (dist, index): smallest distance, ties to the lower index. */
__device__ void argmin(Block &sh, double &best_d, int &best) {
    sh.red_d[threadIdx.x] = best_d;
    sh.red_i[threadIdx.x] = best;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            const double od = sh.red_d[threadIdx.x + w];
            const int oi = sh.red_i[threadIdx.x + w];
            const double md = sh.red_d[threadIdx.x];
            const int mi = sh.red_i[threadIdx.x];
            if (oi >= 0 && (mi < 0 || od < md || (od == md && oi < mi))) {
                sh.red_d[threadIdx.x] = od;
                sh.red_i[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    best_d = sh.red_d[0];
    best = sh.red_i[0];
    __syncthreads();
}

/* The state every thread of the block carries (identical copies, updated in lockstep). */
struct State {
    uint64_t tokens_seen, nsinks, wfill, whead;
    double mu;
    float delta;
    uint32_t merges;
    int nclusters, slots_full;
};

/* Nearest center within delta of sh.k, or -1 (subgen_nearest). */
__device__ int nearest(Block &sh, const skv_dsub_desc &g, const State &st) {
    double best_d = INFINITY;
    int best = -1;
    for (int j = threadIdx.x; j < st.nclusters; j += kThreads) {
        const double dd = sq_dist(sh.k, g.centers + (size_t)j * g.d, g.d);
        if (dd < best_d) best_d = dd, best = j;
    }
    argmin(sh, best_d, best);
    const double r2 = (double)st.delta * (double)st.delta;
    return best >= 0 && best_d <= r2 ? best : -1;
}

/* Double delta; merge every cluster into the first earlier survivor within the new delta
 * (subgen_double_and_merge, with subgen_merge_into's coins and subgen_move_cluster). */
__device__ void double_and_merge(Block &sh, const skv_dsub_desc &g, State &st) {
    st.delta = __fmul_rn(st.delta, 2.0f);
    st.merges++;
    const double r2 = (double)st.delta * (double)st.delta;
    const uint64_t base = (uint64_t)g.S + g.W + g.s; /* first cluster-sample row */
    int survivors = 0;
    for (int j = 0; j < st.nclusters; j++) {
        const float *cj = g.centers + (size_t)j * g.d;
        double hit = INFINITY; /* argmin over the index: distance 0 for every hit */
        int into = -1;
        for (int i = threadIdx.x; i < survivors; i += kThreads)
            if (into < 0 && sq_dist(cj, g.centers + (size_t)i * g.d, g.d) <= r2) into = i, hit = 0;
        argmin(sh, hit, into); /* the lowest index among the hits */
        if (into >= 0) {
            const double p =
                (double)g.count[j] / __dadd_rn((double)g.count[into], (double)g.count[j]);
            for (int r = threadIdx.x; r < g.t; r += kThreads) {
                const uint32_t slot = (uint32_t)j * (uint32_t)g.t + (uint32_t)r;
                if (!skv_hd_coin_accept(coin(g.k0, g.k1, st.merges, slot, COIN_MERGE), p)) continue;
                const uint64_t dst = base + (uint64_t)into * g.t + r, src = base + slot;
                row_copy(g.krows, dst, src, g.d);
                if (g.cluster_values) row_copy(g.vrows, dst, src, g.d);
            }
            __syncthreads();
            if (threadIdx.x == 0) g.count[into] += g.count[j];
        } else {
            if (survivors != j) {
                for (int e = threadIdx.x; e < g.d; e += kThreads)
                    g.centers[(size_t)survivors * g.d + e] = cj[e];
                for (int r = threadIdx.x; r < g.t; r += kThreads) {
                    const uint64_t dst = base + (uint64_t)survivors * g.t + r;
                    const uint64_t src = base + (uint64_t)j * g.t + r;
                    row_copy(g.krows, dst, src, g.d);
                    if (g.cluster_values) row_copy(g.vrows, dst, src, g.d);
                }
                __syncthreads();
                if (threadIdx.x == 0) g.count[survivors] = g.count[j];
            }
            survivors++;
        }
        __syncthreads();
    }
    st.nclusters = survivors;
}

/* Sketch the token in sh.k / sh.v, index idx (subgen_sketch_token). */
__device__ void sketch_token(Block &sh, const skv_dsub_desc &g, State &st, uint64_t idx) {
    const int d = g.d;
    if (st.delta == 0.0f) {
        const double nk = sqrt(sum_sq(sh.k, d));
        st.delta = nk > 0.0 ? (float)(0.25 * nk) : 1e-6f;
    }
    int j = nearest(sh, g, st);
    while (j < 0 && st.nclusters == g.m) {
        double_and_merge(sh, g, st);
        j = nearest(sh, g, st);
    }
    const uint64_t base = (uint64_t)g.S + g.W + g.s;
    if (j < 0) { /* open a cluster: every slot takes its first key */
        j = st.nclusters++;
        for (int e = threadIdx.x; e < d; e += kThreads) g.centers[(size_t)j * d + e] = sh.k[e];
        if (threadIdx.x == 0) g.count[j] = 1;
        for (int r = 0; r < g.t; r++) {
            block_put(g.krows, g.dtype, base + (uint64_t)j * g.t + r, d, sh.k);
            if (g.cluster_values)
                block_put(g.vrows, g.dtype, base + (uint64_t)j * g.t + r, d, sh.v);
        }
    } else {
        const uint64_t n = g.count[j] + 1;
        __syncthreads(); /* every thread read the count before thread 0 bumps it */
        if (threadIdx.x == 0) g.count[j] = n;
        const double p = 1.0 / (double)n;
        for (int r = threadIdx.x; r < g.t; r += kThreads) {
            if (!skv_hd_coin_accept(coin(g.k0, g.k1, idx, (uint32_t)r, COIN_CLUSTER), p)) continue;
            for (int e = 0; e < d; e++) {
                row_put(g.krows, g.dtype, base + (uint64_t)j * g.t + r, d, e, sh.k[e]);
                if (g.cluster_values)
                    row_put(g.vrows, g.dtype, base + (uint64_t)j * g.t + r, d, e, sh.v[e]);
            }
        }
    }
    __syncthreads();
    if (g.cluster_values) return;
    const double w = sum_sq(sh.v, d);
    __syncthreads();        /* everyone has read sh.v before anyone moves on to the next token */
    if (!(w > 0.0)) return; /* a zero value adds nothing to the numerator */
    st.mu = __dadd_rn(st.mu, w);
    const double p = w / st.mu;
    const uint64_t sb = (uint64_t)g.S + g.W;
    for (int r = threadIdx.x; r < g.s; r += kThreads) {
        if (!skv_hd_coin_accept(coin(g.k0, g.k1, idx, (uint32_t)r, COIN_VALUE), p)) continue;
        for (int e = 0; e < d; e++) {
            row_put(g.krows, g.dtype, sb + r, d, e, sh.k[e]);
            row_put(g.vrows, g.dtype, sb + r, d, e, sh.v[e]);
        }
        g.inv_norm[r] = (float)(1.0 / w);
    }
    st.slots_full = 1;
    __syncthreads();
}

__global__ void __launch_bounds__(kThreads) dsub_append(const skv_dsub_op *__restrict__ ops) {
    __shared__ Block sh;
    const skv_dsub_op op = ops[blockIdx.x];
    const skv_dsub_desc &g = op.desc;
    const int d = g.d;
    State st;
    {
        const skv_dsub_hdr h = *g.hdr;
        st = State{h.tokens_seen, h.nsinks, h.wfill,     h.whead,     h.mu,
                   h.delta,       h.merges, h.nclusters, h.slots_full};
    }
    for (uint32_t i = 0; i < op.n; i++) {
        const float *K = op.k + (size_t)i * d, *V = op.v + (size_t)i * d;
        const uint64_t tok = st.tokens_seen;
        st.tokens_seen++;
        if (st.nsinks < (uint64_t)g.S) { /* skv_sinkwin_push */
            block_put(g.krows, g.dtype, st.nsinks, d, K);
            block_put(g.vrows, g.dtype, st.nsinks, d, V);
            st.nsinks++;
            continue;
        }
        bool evicted = false;
        if (g.W == 0) { /* no window: the float32 token itself is sketched */
            for (int e = threadIdx.x; e < d; e += kThreads) sh.k[e] = K[e], sh.v[e] = V[e];
            evicted = true;
        } else {
            const uint64_t row = (uint64_t)g.S + st.whead;
            if (st.wfill == (uint64_t)g.W) {
                for (int e = threadIdx.x; e < d; e += kThreads) {
                    sh.k[e] = row_get(g.krows, g.dtype, row, d, e);
                    sh.v[e] = row_get(g.vrows, g.dtype, row, d, e);
                }
                evicted = true;
            } else {
                st.wfill++;
            }
            __syncthreads(); /* the evicted row is read before it is overwritten */
            block_put(g.krows, g.dtype, row, d, K);
            block_put(g.vrows, g.dtype, row, d, V);
            st.whead = (st.whead + 1) % (uint64_t)g.W;
        }
        __syncthreads();
        if (evicted) sketch_token(sh, g, st, tok - (uint64_t)g.W);
    }
    __syncthreads();
    /* weights as skv_sketch_entries writes them: window and sinks 1 (set at create), value
     * slots b = (mu / s) / ||v||^2, cluster samples a = n_j / t (b = a with values=cluster) */
    const uint64_t sb = (uint64_t)g.S + g.W, cb = sb + g.s;
    for (int r = threadIdx.x; r < g.s; r += kThreads) {
        g.a[sb + r] = 0.0f;
        g.b[sb + r] = (float)((st.mu / (double)g.s) * (double)g.inv_norm[r]);
    }
    for (uint64_t e = threadIdx.x; e < (uint64_t)st.nclusters * g.t; e += kThreads) {
        const float a = (float)((double)g.count[e / g.t] / (double)g.t);
        g.a[cb + e] = a;
        g.b[cb + e] = g.cluster_values ? a : 0.0f;
    }
    if (threadIdx.x == 0) {
        skv_dsub_hdr h;
        h.tokens_seen = st.tokens_seen;
        h.nsinks = st.nsinks;
        h.wfill = st.wfill;
        h.whead = st.whead;
        h.mu = st.mu;
        h.delta = st.delta;
        h.merges = st.merges;
        h.nclusters = st.nclusters;
        h.slots_full = st.slots_full;
        h.n_entries =
            st.tokens_seen <= sb ? st.nsinks + st.wfill : cb + (uint64_t)st.nclusters * g.t;
        *g.hdr = h;
    }
}

} // namespace

extern "C" subkv_status skv_dsub_launch(skv_cuda_ctx *c, const skv_dsub_op *ops, int nops,
                                        skv_err *err) {
    if (nops < 1) return SKV_OK;
    for (int i = 0; i < nops; i++)
        if (ops[i].desc.d < 1 || ops[i].desc.d > kMaxD || ops[i].desc.t < 1 || ops[i].desc.m < 1)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "GPU append: bad sketch shape");
    cudaStream_t s = static_cast<cudaStream_t>(skv_cuda_ctx_stream(c));
    /* the op array travels through the pool: stream-ordered, freed after the kernel */
    void *dops = nullptr;
    const size_t bytes = (size_t)nops * sizeof(skv_dsub_op);
    SKV_CHECK(skv_cuda_pool_alloc(c, &dops, bytes, err));
    SKV_CUDA_CHECK(cudaMemcpyAsync(dops, ops, bytes, cudaMemcpyHostToDevice, s), err);
    dsub_append<<<nops, kThreads, 0, s>>>(static_cast<const skv_dsub_op *>(dops));
    cudaError_t e = cudaGetLastError();
    skv_cuda_pool_free(c, dops);
    if (e != cudaSuccess)
        return skv_set_error(err, SKV_ERR_DEVICE, "GPU append launch: %s", cudaGetErrorString(e));
    return SKV_OK;
}
