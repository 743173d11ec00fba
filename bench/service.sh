#!/usr/bin/env bash
# bench/service.sh — `make bench-service`: decode step latency through the service against
# the same sketch ops in-process, for 1, 2 and 3 workers (batches 1, 8, 32 of 32 layers x
# 32 q / 8 kv heads x d 128, subgen at 64 KiB per sketch, f16), then requests/s with 16
# concurrent clients. Extra arguments go to every `subkv bench service` call.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$here/.."
for w in ${SUBKV_BENCH_WORKERS:-1 2 3}; do
    echo "## workers: $w"
    "$top/deploy/subkv-with-service" --workers "$w" -- "$top/build/subkv" bench service "$@"
done
echo "## 16 concurrent clients, 2 workers"
"$top/deploy/subkv-with-service" --workers 2 -- "$top/build/subkv" bench service --clients 16 "$@"
