#!/usr/bin/env python3
"""gpu_sdpa.py — PyTorch's scaled_dot_product_attention on the shapes `subkv-bench gpu` times
(8 kv heads x 4 query heads, d 128, float16, one decode query per sequence), for the side-by-side
comparison in the GPU benchmark. Random normal inputs (the same distribution as the C bench,
not the same bytes). Prints a '#'-headed table: median ms over 20 runs (CUDA events) and the
bandwidth of reading K and V once.

usage: python3 bench/gpu_sdpa.py [--contexts 32768,131072,...] [--batches 1,8,32]
"""
import argparse
import sys

import torch
import torch.nn.functional as F

KVH, G, D = 8, 4, 128


def median_ms(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="32768,131072,524288,1048576")
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_sdpa: no GPU", file=sys.stderr)
        return 1
    free = torch.cuda.mem_get_info()[0]
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name()}: "
          f"F.scaled_dot_product_attention, q [B,{KVH*G},1,{D}], k/v [B,{KVH},n,{D}] f16, enable_gqa")
    print(f"# {'context':>8} {'batch':>5} {'sdpa_ms':>10} {'GB/s':>9}")
    for n in [int(x) for x in args.contexts.split(",")]:
        for b in [int(x) for x in args.batches.split(",")]:
            need = 2 * b * KVH * n * D * 2
            if need > 0.8 * free:
                print(f"  {n:>8} {b:>5}  does not fit")
                continue
            q = torch.randn(b, KVH * G, 1, D, device="cuda", dtype=torch.float16)
            k = torch.randn(b, KVH, n, D, device="cuda", dtype=torch.float16)
            v = torch.randn(b, KVH, n, D, device="cuda", dtype=torch.float16)
            try:
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            except Exception as e:  # an older torch without enable_gqa: expand the kv heads
                print(f"  {n:>8} {b:>5}  sdpa failed: {e}")
                continue
            print(f"  {n:>8} {b:>5} {ms:>10.4f} {need / (ms * 1e-3) / 1e9:>9.1f}")
            del q, k, v
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
