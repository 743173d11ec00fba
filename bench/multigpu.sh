#!/usr/bin/env bash
# multigpu.sh — issue 8's runs of `subkv-bench multigpu` on one host's GPUs (one MPI rank per
# GPU), for each GPU count in GPUS (default: 1, 2, 4, 8 up to the GPUs nvidia-smi lists):
#
#   OUT=build/multigpu bash bench/multigpu.sh          (on the GPU machine, after `make`)
#   bash bench/multigpu_plot.sh build/multigpu          (anywhere with gnuplot: the PNGs)
#
#   1. check    --check at context 32K: head and context sharding, NCCL vs MPI (<= 1e-6) and
#               vs a 1-GPU reference (<= 1e-4); at the largest count also --layer-batch,
#               --graphs (NCCL) and subgen16 with context sharding            -> check.csv
#   2. strong   32 layers x 8 kv x 4 q heads, d 128, batch 8, head sharding, both paths:
#               exact and subgen16 at 512K and 1M; exact 512K with context sharding
#                                                                             -> strong.csv
#   3. weak     exact, head sharding: context 256K x N at batch 8   -> weak_context.csv
#               and batch 8 x N at context 256K                      -> weak_batch.csv
#   4. comm     exact and subgen16 at 512K: per-layer vs --layer-batch, without and with
#               --graphs (NCCL only)                                          -> comm.csv
#
# Sizes: exact keeps 64 jobs x context x 512 B of K/V a layer set (--distinct-layers 1:
# every layer re-reads it): 16 GiB at 512K, 32 GiB at 1M on one GPU, half that on each of
# two; subgen16 1/16 of that. A step streams 32 x that (512 GiB exact at 512K on one GPU:
# about 0.15 s on an H200); MGPU_STEPS (10) timed steps after 2 warm-up per path.
# Expected time on 2 H200s: about 4-6 minutes for the 37 runs (each run pays the MPI and
# NCCL start-up, a few seconds); every run is capped by MGPU_TIMEOUT (150 s).
#
# MGPU_SECTIONS (default "check strong weak comm") picks sections, e.g. two calls of a few
# minutes each into one OUT. Every command is printed before it runs and appended to
# OUT/commands.txt; each run's
# output goes to OUT/logs/NAME.log and one line to OUT/summary.txt (exit status, seconds).
# Exit 2 from the harness is a refusal (e.g. data that does not fit), reported and not
# counted as a failure; anything else non-zero is. NCCL_NVLS_ENABLE=0 is exported and
# passed with -x: NVLink multicast stays off.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/multigpu}"
bin="${MGPU_BIN:-build/subkv-bench}"
steps="${MGPU_STEPS:-10}"
sections=" ${MGPU_SECTIONS:-check strong weak comm} "
limit="${MGPU_TIMEOUT:-150}"
mkdir -p "$out/logs"
[[ -x $bin ]] || { echo "multigpu.sh: $bin not built (make)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "multigpu.sh: mpirun not found" >&2; exit 1; }

ngpu="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
if [[ -z ${GPUS:-} ]]; then
    GPUS=""
    for n in 1 2 4 8; do ((n <= ngpu)) && GPUS="$GPUS $n"; done
fi
[[ -n ${GPUS// /} ]] || { echo "multigpu.sh: no GPU (nvidia-smi lists $ngpu)" >&2; exit 1; }
max=0
for n in $GPUS; do ((n > max)) && max=$n; done

export NCCL_NVLS_ENABLE=0
mpi=(mpirun --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE=0)
[[ $(id -u) -eq 0 ]] && mpi+=(--allow-run-as-root)
# a section's CSV starts afresh when the section runs (MGPU_SECTIONS may split the work
# over several calls into one OUT)
for sec in $sections; do
    case $sec in
    weak) rm -f "$out"/weak_context.csv "$out"/weak_batch.csv ;;
    check | strong | comm) rm -f "$out/$sec.csv" ;;
    *) echo "multigpu.sh: unknown section '$sec' in MGPU_SECTIONS" >&2; exit 2 ;;
    esac
done
touch "$out/commands.txt" "$out/summary.txt"
failed=0
echo "multigpu.sh: GPU counts:$GPUS; output in $out"

# run NAME NP CSV ARGS...: one mpirun of the harness.
run() {
    local name="$1" np="$2" csv="$3" t0 rc
    shift 3
    local cmd=("${mpi[@]}" -np "$np" "$bin" multigpu --csv "$out/$csv.csv" "$@")
    echo "+ ${cmd[*]}" | tee -a "$out/commands.txt"
    t0="$(date +%s)"
    timeout "$limit" "${cmd[@]}" >"$out/logs/$name.log" 2>&1
    rc=$?
    grep -E '^#|^  |PASS|FAIL|subkv-bench' "$out/logs/$name.log" | grep -v '^#   rank' || true
    local what=ok
    if [[ $rc -eq 2 ]]; then
        what="refused (see log)"
    elif [[ $rc -ne 0 ]]; then
        what=FAILED
        failed=1
    fi
    printf '%-34s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$what" |
        tee -a "$out/summary.txt"
}

want() { [[ $sections == *" $1 "* ]]; }

want check && echo "## 1. correctness (context 32K)"
want check && for n in $GPUS; do
    for shard in head context; do
        run "check-$shard-n$n" "$n" check --check --context 32K --shard "$shard" --path both \
            --steps 3 --warmup 1
    done
done
if want check; then
    run "check-head-lb-n$max" "$max" check --check --context 32K --layer-batch --steps 3 --warmup 1
    run "check-ctx-graphs-n$max" "$max" check --check --context 32K --shard context --graphs \
        --path nccl --steps 3 --warmup 1
    run "check-ctx-sg16-n$max" "$max" check --check --context 32K --shard context \
        --policy subgen16 --steps 3 --warmup 1
fi

want strong && echo "## 2. strong scaling (batch 8, 32 layers)"
want strong && for n in $GPUS; do
    for ctx in 512K 1M; do
        for pol in exact subgen16; do
            run "strong-$pol-$ctx-n$n" "$n" strong --context "$ctx" --policy "$pol" \
                --steps "$steps"
        done
    done
    run "strong-exact-512K-ctxshard-n$n" "$n" strong --context 512K --shard context \
        --steps "$steps"
done

want weak && echo "## 3. weak scaling (exact, 256K x N context; batch 8 x N)"
want weak && for n in $GPUS; do
    run "weak-context-n$n" "$n" weak_context --context 256K --weak context --steps "$steps"
    run "weak-batch-n$n" "$n" weak_batch --context 256K --weak batch --steps "$steps"
done

want comm && echo "## 4. communication share: per layer vs --layer-batch, with and without --graphs"
want comm && for n in $GPUS; do
    for pol in exact subgen16; do
        run "comm-$pol-n$n" "$n" comm --policy "$pol" --steps "$steps"
        run "comm-$pol-lb-n$n" "$n" comm --policy "$pol" --layer-batch --steps "$steps"
        run "comm-$pol-graphs-n$n" "$n" comm --policy "$pol" --graphs --path nccl \
            --steps "$steps"
        run "comm-$pol-lb-graphs-n$n" "$n" comm --policy "$pol" --layer-batch --graphs \
            --path nccl --steps "$steps"
    done
done

echo "=== summary ($out/summary.txt)"
cat "$out/summary.txt"
exit "$failed"
