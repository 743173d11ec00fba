/*
 * rkv_topk.cu — refreshkv's full-step selection on the GPU (skv_cuda_rkv_topk in skv_cuda.h):
 * the m = min(K, n) best tokens of pooled[n] and the partial cache rebuilt from them, with no
 * round trip through the host.
 *
 * Keys. Token t's key is (u(score) << 32) | t, u the float's bits mapped to an unsigned order
 * (negative: all bits flipped; otherwise the sign bit set; -0 taken as +0; NaN lowest). Keys
 * are distinct, and descending key order is descending (score, token): the CPU's order with
 * its tie rule (the later token wins; cache/refreshkv_full.c's rkv_select, skv_rkv_topk). So
 * the selection is exactly the keys >= T, T the m-th largest key, with no tie handling left.
 *
 * Radix select for T, one byte per pass from the top (8 passes at most): every job keeps a
 * prefix/mask of the bytes decided and krem, how many of the keys under the prefix are still
 * to take. A pass histograms the next byte of the keys under the prefix (shared-memory
 * counters, one global add per bin and block); a one-thread-per-job step walks the bins from
 * the top and fixes the byte whose bucket holds the krem-th key. When that bucket is taken
 * whole (its count == krem) the job is done: every key >= prefix (lower bytes zero) is
 * selected, exactly m of them; the later passes skip it. With distinct scores this happens by
 * the 4th pass; ties go down into the token bytes. m == n: done at once (T = 0).
 *
 * Then a compaction writes the m keys >= T of each job into its segment (warp-aggregated
 * atomics), CUB's segmented radix sort orders each segment ascending, and the gather writes
 * idx, score (read back from pooled, bit-exact) and the rows, one warp per row.
 * Jobs travel by value in the kernels' parameters, kBatch per round of launches.
 */
#include <cstdint>

#include <cub/device/device_segmented_radix_sort.cuh>

#include "skv_check.h"
#include "skv_cuda.h"

namespace {

constexpr int kBatch = 32;            /* jobs per round of launches */
constexpr int kThreads = 256;         /* threads per block of the passes */
constexpr int kPerThread = 16;        /* tokens per thread per block sweep, roughly */
constexpr unsigned kMaxBlocks = 4096; /* blocks per job of a pass: a grid-stride loop covers more */

struct topk_state {
    unsigned long long prefix, mask; /* bytes decided so far */
    unsigned long long krem;         /* keys still to take under the prefix */
    unsigned int done, count;        /* done: keys >= prefix are the selection; count: compacted */
};

struct topk_job {
    skv_cuda_topk_job j;
    uint64_t m;   /* min(k, n) */
    uint64_t off; /* first key of its segment */
};

struct topk_batch {
    topk_job j[kBatch];
};

__device__ __forceinline__ unsigned long long topk_key(const float *pooled, uint64_t t) {
    uint32_t b = __float_as_uint(pooled[t]);
    if (b == 0x80000000u) b = 0;           /* -0 = +0 */
    if ((b & 0x7fffffffu) > 0x7f800000u) { /* NaN: below everything (-inf maps above 0) */
        b = 0;
    } else {
        b = (b & 0x80000000u) ? ~b : (b | 0x80000000u); /* >= 0x007fffff (-inf) */
    }
    return ((unsigned long long)b << 32) | (unsigned long long)(uint32_t)t;
}

__global__ void topk_init(topk_batch b, topk_state *st, unsigned int *hist, int *seg) {
    const int j = blockIdx.x;
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[j * 256 + i] = 0;
    if (threadIdx.x == 0) {
        const topk_job &tj = b.j[j];
        st[j] = topk_state{0ull, 0ull, tj.m, tj.m >= tj.j.n ? 1u : 0u, 0u};
        seg[j] = (int)tj.off;
        seg[j + 1] = (int)(tj.off + tj.m); /* the next job writes the same value */
    }
}

__global__ void __launch_bounds__(kThreads)
    topk_hist(topk_batch b, const topk_state *st, unsigned int *hist, int shift) {
    const int j = blockIdx.y;
    if (st[j].done) return; /* the whole block, before any barrier */
    __shared__ unsigned int h[256];
    for (int i = threadIdx.x; i < 256; i += kThreads) h[i] = 0;
    __syncthreads();
    const topk_job &tj = b.j[j];
    const unsigned long long prefix = st[j].prefix, mask = st[j].mask;
    const uint64_t stride = (uint64_t)gridDim.x * kThreads;
    const unsigned lane = threadIdx.x & 31u;
    /* Scores crowd into few bins (probabilities share exponents): lanes with the same bin add
     * once (__match_any_sync), not 32 times on one shared counter. Whole warps step together. */
    for (uint64_t base = (uint64_t)blockIdx.x * kThreads + (threadIdx.x & ~31u); base < tj.j.n;
         base += stride) {
        const uint64_t t = base + lane;
        int bin = -1;
        if (t < tj.j.n) {
            const unsigned long long key = topk_key(tj.j.pooled, t);
            if ((key & mask) == prefix) bin = (int)((key >> shift) & 255u);
        }
        const unsigned peers = __match_any_sync(0xffffffffu, bin);
        if (bin >= 0 && lane == (unsigned)(__ffs(peers) - 1))
            atomicAdd(&h[bin], (unsigned)__popc(peers));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += kThreads)
        if (h[i]) atomicAdd(&hist[j * 256 + i], h[i]);
}

/* One thread per job: fix the byte at `shift` and clear the bins for the next pass. */
__global__ void topk_pick(int nb, topk_state *st, unsigned int *hist, int shift) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nb) return;
    unsigned int *h = hist + j * 256;
    topk_state s = st[j];
    if (!s.done) {
        unsigned long long above = 0;
        for (int d = 255; d >= 0; d--) {
            const unsigned long long c = h[d];
            if (above + c >= s.krem) { /* the krem-th key (counting from the top) is here */
                s.prefix |= (unsigned long long)d << shift;
                s.mask |= 255ull << shift;
                s.krem -= above;
                if (c == s.krem || shift == 0) s.done = 1; /* keys are distinct: c == krem == 1 */
                break;
            }
            above += c;
        }
        st[j] = s;
    }
    for (int d = 0; d < 256; d++) h[d] = 0;
}

/* Keys >= prefix of each job into its segment, in any order (the sort follows). */
__global__ void __launch_bounds__(kThreads)
    topk_compact(topk_batch b, topk_state *st, unsigned long long *keys) {
    const int j = blockIdx.y;
    const topk_job &tj = b.j[j];
    if (tj.m == 0) return;
    const unsigned long long thr = st[j].prefix;
    const unsigned lane = threadIdx.x & 31u;
    const uint64_t stride = (uint64_t)gridDim.x * kThreads;
    /* whole warps step together so the ballot sees every lane */
    for (uint64_t base = (uint64_t)blockIdx.x * kThreads + (threadIdx.x & ~31u); base < tj.j.n;
         base += stride) {
        const uint64_t t = base + lane;
        unsigned long long key = 0;
        const bool take = t < tj.j.n && (key = topk_key(tj.j.pooled, t)) >= thr;
        const unsigned ballot = __ballot_sync(0xffffffffu, take);
        if (!ballot) continue;
        unsigned first = 0;
        if (lane == 0) first = atomicAdd(&st[j].count, (unsigned)__popc(ballot));
        first = __shfl_sync(0xffffffffu, first, 0);
        const unsigned slot = first + (unsigned)__popc(ballot & ((1u << lane) - 1u));
        if (take && slot < tj.m) keys[tj.off + slot] = key; /* slot < m by construction */
    }
}

/* One warp per selected row: idx, score, and the row copied from the full store. */
__global__ void __launch_bounds__(kThreads)
    topk_gather(topk_batch b, const unsigned long long *sorted) {
    const int j = blockIdx.y;
    const topk_job &tj = b.j[j];
    const unsigned lane = threadIdx.x & 31u;
    const uint64_t warps = (uint64_t)gridDim.x * (kThreads / 32);
    for (uint64_t i = (uint64_t)blockIdx.x * (kThreads / 32) + threadIdx.x / 32; i < tj.m;
         i += warps) {
        const uint32_t tok = (uint32_t)sorted[tj.off + i];
        if (tok >= tj.j.n) continue; /* cannot happen: keys carry tokens < n */
        if (lane == 0) {
            tj.j.idx[i] = tok;
            if (tj.j.score) tj.j.score[i] = tj.j.pooled[tok];
        }
        if (!tj.j.fk) continue;
        const uint64_t rb = tj.j.row_bytes;
        const char *fk = (const char *)tj.j.fk + tok * rb, *fv = (const char *)tj.j.fv + tok * rb;
        char *pk = (char *)tj.j.pk + i * rb, *pv = (char *)tj.j.pv + i * rb;
        const bool vec = rb % 16 == 0 &&
                         ((uintptr_t)fk | (uintptr_t)fv | (uintptr_t)pk | (uintptr_t)pv) % 16 == 0;
        if (vec) {
            for (uint64_t o = lane * 16ull; o < rb; o += 32 * 16) {
                *(uint4 *)(pk + o) = *(const uint4 *)(fk + o);
                *(uint4 *)(pv + o) = *(const uint4 *)(fv + o);
            }
        } else {
            for (uint64_t o = lane; o < rb; o += 32) pk[o] = fk[o], pv[o] = fv[o];
        }
    }
}

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

/* One round: jobs[0, nb), their m summing to total (< 2^31). */
subkv_status topk_round(skv_cuda_ctx *c, const topk_batch &b, int nb, uint64_t total, uint64_t maxn,
                        uint64_t maxm, skv_err *err) {
    cudaStream_t stream = static_cast<cudaStream_t>(skv_cuda_ctx_stream(c));
    const int nseg = nb;
    size_t cub_bytes = 0;
    SKV_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(
                       nullptr, cub_bytes, (const unsigned long long *)nullptr,
                       (unsigned long long *)nullptr, (int)total, nseg, (const int *)nullptr,
                       (const int *)nullptr, 0, 64, stream),
                   err);
    const size_t o_st = 0, o_hist = o_st + align_up(nb * sizeof(topk_state)),
                 o_seg = o_hist + align_up((size_t)nb * 256 * sizeof(unsigned int)),
                 o_in = o_seg + align_up((size_t)(nb + 1) * sizeof(int)),
                 o_out = o_in + align_up(total * sizeof(unsigned long long)),
                 o_cub = o_out + align_up(total * sizeof(unsigned long long)),
                 bytes = o_cub + align_up(cub_bytes);
    void *scratch = nullptr;
    SKV_CHECK(skv_cuda_pool_alloc(c, &scratch, bytes, err));
    char *base = static_cast<char *>(scratch);
    topk_state *st = reinterpret_cast<topk_state *>(base + o_st);
    unsigned int *hist = reinterpret_cast<unsigned int *>(base + o_hist);
    int *seg = reinterpret_cast<int *>(base + o_seg);
    unsigned long long *kin = reinterpret_cast<unsigned long long *>(base + o_in);
    unsigned long long *kout = reinterpret_cast<unsigned long long *>(base + o_out);
    subkv_status ret = SKV_OK;
    cudaError_t e = cudaSuccess;
    uint64_t blocks =
        (maxn + (uint64_t)kThreads * kPerThread - 1) / ((uint64_t)kThreads * kPerThread);
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    uint64_t gblocks = (maxm + kThreads / 32 - 1) / (kThreads / 32);
    if (gblocks < 1) gblocks = 1;
    if (gblocks > kMaxBlocks) gblocks = kMaxBlocks;
    const dim3 pass_grid((unsigned)blocks, (unsigned)nb),
        gather_grid((unsigned)gblocks, (unsigned)nb);
    topk_init<<<nb, 256, 0, stream>>>(b, st, hist, seg);
    for (int shift = 56; shift >= 0 && e == cudaSuccess; shift -= 8) {
        topk_hist<<<pass_grid, kThreads, 0, stream>>>(b, st, hist, shift);
        topk_pick<<<(nb + 31) / 32, 32, 0, stream>>>(nb, st, hist, shift);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) {
        topk_compact<<<pass_grid, kThreads, 0, stream>>>(b, st, kin);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && total > 0)
        e = cub::DeviceSegmentedRadixSort::SortKeys(base + o_cub, cub_bytes,
                                                    (const unsigned long long *)kin, kout,
                                                    (int)total, nseg, seg, seg + 1, 0, 64, stream);
    if (e == cudaSuccess) {
        topk_gather<<<gather_grid, kThreads, 0, stream>>>(b, kout);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess)
        ret = skv_set_error(err, SKV_ERR_DEVICE, "rkv top-k: %s", cudaGetErrorString(e));
    skv_cuda_pool_free(c, scratch); /* stream-ordered: after the kernels above */
    return ret;
}

} // namespace

extern "C" subkv_status skv_cuda_rkv_topk(skv_cuda_ctx *c, const skv_cuda_topk_job *jobs, int njobs,
                                          skv_err *err) {
    if (!c || njobs < 0 || (njobs > 0 && !jobs))
        return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv top-k: %d jobs", njobs);
    for (int i = 0; i < njobs; i++) {
        const skv_cuda_topk_job &j = jobs[i];
        if (j.n > 0xffffffffull)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv top-k job %d: %llu tokens", i,
                                 (unsigned long long)j.n);
        if ((j.k < j.n ? j.k : j.n) > 0x7fffffffull)
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv top-k job %d: k %u", i, j.k);
        if (j.n && j.k && (!j.pooled || !j.idx))
            return skv_set_error(err, SKV_ERR_INVALID_ARG, "rkv top-k job %d: NULL buffer", i);
        if (j.fk && (!j.fv || !j.pk || !j.pv || !j.row_bytes))
            return skv_set_error(err, SKV_ERR_INVALID_ARG,
                                 "rkv top-k job %d: a gather needs fv, pk, pv and row_bytes", i);
    }
    for (int at = 0; at < njobs;) {
        topk_batch b = {};
        int nb = 0;
        uint64_t total = 0, maxn = 0, maxm = 0;
        for (; at < njobs && nb < kBatch; at++) {
            const skv_cuda_topk_job &j = jobs[at];
            const uint64_t m = j.k < j.n ? j.k : j.n;
            if (m == 0) continue;
            if (total + m > 0x7fffffffull) break; /* CUB's int offsets: the next round */
            b.j[nb++] = topk_job{j, m, total};
            total += m;
            if (j.n > maxn) maxn = j.n;
            if (m > maxm) maxm = m;
        }
        if (!nb) continue;
        SKV_CHECK(topk_round(c, b, nb, total, maxn, maxm, err));
    }
    return SKV_OK;
}
