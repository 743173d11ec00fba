#!/usr/bin/env bash
# device-run.sh — build, test and benchmark subkv on the GPU device machine (Ubuntu 24.04 + CUDA,
# no internet, no protobuf-c/cmocka packages).
#
#   bash deploy/device-run.sh            (run tool: carry [".debs"]; logs come back under $OUT)
#   SUBKV_DEVICE_PART=tests|bench bash deploy/device-run.sh   (half of it: one call has 10 min)
#   SUBKV_DEVICE_PART=multigpu bash deploy/device-run.sh      (build + issue 8's multi-GPU runs)
#
# 1. unpacks .debs/ (from `deploy/device-debs.sh fetch`) into $SUBKV_PREFIX (default
#    /tmp/subkv-prefix) unless already there, and sources its env.sh;
# 2. make -j, then make test, with SUBKV_DEPS_SKIP=1 (no apt on the device);
# 3. compute-sanitizer memcheck of the GPU conformance suite, the kernels' resource usage,
#    build/subkv-bench gpu and PyTorch's SDPA on the same shapes (bench/gpu_sdpa.py).
# Every step runs even when an earlier one fails (except: no build, no tests); each writes
# $OUT/<step>.log (OUT defaults to build/device-logs), and $OUT/summary.txt lists step, exit
# status and seconds. Exits non-zero if any step failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/device-logs}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
prefix="${SUBKV_PREFIX:-/tmp/subkv-prefix}"
jobs="$(nproc 2>/dev/null || echo 4)"
export SUBKV_DEPS_SKIP=1
: >"$out/summary.txt"
failed=0

# step NAME CMD...: run CMD, log to $out/NAME.log (and stdout), record status and duration.
step() {
    local name="$1" t0 rc
    shift
    echo "=== $name: $*"
    t0="$(date +%s)"
    "$@" 2>&1 | tee "$out/$name.log"
    rc=${PIPESTATUS[0]}
    printf '%-12s rc=%-4s %5ss  %s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$*" | tee -a "$out/summary.txt"
    [[ $rc -eq 0 ]] || failed=1
    return "$rc"
}

device_info() {
    uname -a
    grep PRETTY_NAME /etc/os-release || true
    nvidia-smi || echo "nvidia-smi: not available"
    nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null || echo "nvcc: not found"
    gcc --version | head -1
    echo "cores: $jobs"
}
step device-info device_info

if [[ ! -f "$prefix/env.sh" ]] && compgen -G ".debs/*.deb" >/dev/null; then
    step prefix bash deploy/device-debs.sh install "$prefix"
fi
if [[ -f "$prefix/env.sh" ]]; then
    # shellcheck disable=SC1091
    source "$prefix/env.sh"
else
    echo "device-run: no $prefix/env.sh and no .debs/ (carry .debs); building with system packages only"
fi

part="${SUBKV_DEVICE_PART:-all}" # tests | bench | multigpu | all: a run tool call has 10 minutes at most
if step build make -j"$jobs"; then
  if [[ $part == multigpu ]]; then
    # issue 8 alone: `subkv-bench multigpu` on every GPU count up to this host's GPUs
    # (bench/multigpu.sh: about 5 minutes on 2 H200s; CSVs, logs and mpirun lines in $out/multigpu)
    # (MGPU_SECTIONS without check, e.g. a second call for "weak comm": no test run)
    if [[ " ${MGPU_SECTIONS:-check} " == *" check "* ]]; then
        step multigpu-test bash -c "make -j$jobs build/tests/test_multigpu && build/tests/test_multigpu"
    fi
    step multigpu env OUT="$out/multigpu" bash bench/multigpu.sh
  elif [[ $part != bench ]]; then
    step test make -j"$jobs" test
    # the GPU conformance suites once more under compute-sanitizer (memcheck)
    if command -v compute-sanitizer >/dev/null 2>&1; then
        step memcheck compute-sanitizer --tool memcheck --error-exitcode 3 build/tests/test_cuda
        step memcheck-csr compute-sanitizer --tool memcheck --error-exitcode 3 build/tests/test_cuda_csr
        step memcheck-refresh compute-sanitizer --tool memcheck --error-exitcode 3 build/tests/test_cuda_refresh
        step memcheck-topk compute-sanitizer --tool memcheck --error-exitcode 3 build/tests/test_cuda_topk
        step memcheck-gpucsr compute-sanitizer --tool memcheck --error-exitcode 3 build/tests/test_gpu_csr
    fi
    step resources bash -c 'for o in build/obj/cuda/*.cu.o; do cuobjdump --dump-resource-usage "$o" | grep -E "Function|REG"; done'
  fi
  if [[ $part != tests && $part != multigpu ]]; then
    step bench-gpu build/subkv-bench gpu ${SUBKV_GPU_BENCH_ARGS:-}
    cp -f build/bench-gpu.csv "$out/" 2>/dev/null || true
    step sdpa python3 bench/gpu_sdpa.py ${SUBKV_SDPA_ARGS:-}
    # the service end to end on this one GPU (coordinator + 2 workers sharing it), against
    # the same service with CPU workers on this machine's cores
    for be in cuda cpu; do
        for pol in subgen exact; do
            budget=64K
            [[ $pol == exact ]] && budget=0
            step "service-$be-$pol" deploy/subkv-with-service --workers 2 --worker-args "--backend $be" \
                -- build/subkv bench service --policy "$pol" --budget "$budget" --batches 1,8 \
                --steps 10 --no-inproc
        done
    done
    # one worker alone on the GPU: how much of a shared GPU's latency is two contexts taking turns
    step service-cuda1-subgen deploy/subkv-with-service --workers 1 --worker-args "--backend cuda" \
        -- build/subkv bench service --policy subgen --budget 64K --batches 1,8 --steps 10 --no-inproc
  fi
fi

echo "=== summary ($out/summary.txt)"
cat "$out/summary.txt"
exit "$failed"
