#!/bin/sh
# csr_real.sh — CSR dictionaries from SmolLM2-135M traces over Debian text, and their
# evaluation on disjoint text (issue 6, the real-model part of CSR).
#
#   tools/csr_real.sh [STEP...]      steps: texts traces train eval ppl (default: all, in order)
#                                    big: a larger pre-rotary set (BIG_ATOMS, BIG_LPD) + its eval
#
# Everything is written under $CSR_DIR (default build/csr_real; never in git). Needs the model
# (`make model`), man, col, and build/subkv-trace, build/subkv-dict, build/subkv-perplexity
# (`make NVCC= build/subkv-trace build/subkv-dict build/subkv-perplexity`).
#
# Texts (disjoint by construction: no file is in both sets):
#   train: /usr/share/common-licenses/{GPL-3,Apache-2.0} and man pages find(1), tar(1)
#   eval:  man page bash(1)
# Man pages are rendered with `man -l` at 80 columns and `col -bx` (plain text).
#
# Knobs (environment): TRACE_TOKENS (2048: tokens per trace), ATOMS (1024), LPD (5: layers
# per dictionary group), SAMPLES (8192: training vectors per table), ITERS (6), SPARSITY
# ("2,3,4,8": bits per element 32 s / 64 = 1, 1.5, 2, 4), PPL_WINDOW (2048), PPL_TAIL (128),
# CSR_WINDOW (128: csr's exact recent window), ROPE_BASE (100000: the model's).
set -eu

CSR_DIR=${CSR_DIR:-build/csr_real}
TRACE_TOKENS=${TRACE_TOKENS:-2048}
ATOMS=${ATOMS:-1024}
LPD=${LPD:-5}
SAMPLES=${SAMPLES:-8192}
ITERS=${ITERS:-6}
SPARSITY=${SPARSITY:-2,3,4,8}
PPL_WINDOW=${PPL_WINDOW:-2048}
PPL_TAIL=${PPL_TAIL:-128}
CSR_WINDOW=${CSR_WINDOW:-128}
ROPE_BASE=${ROPE_BASE:-100000}
B=${B:-build}
BIG_ATOMS=${BIG_ATOMS:-4096}
BIG_LPD=${BIG_LPD:-10}

TRAIN_LICENSES="GPL-3 Apache-2.0"
TRAIN_MAN="find tar"
EVAL_MAN="bash"

mkdir -p "$CSR_DIR"

stamp() { date -u +%H:%M:%S; }
timed() { # timed LABEL CMD...: run, print the wall time
    label=$1
    shift
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    printf '# %s: %.1f s wall\n' "$label" "$(echo "$t1 - $t0" | bc)"
}

man_text() { MANWIDTH=80 man -l "/usr/share/man/man1/$1.1.gz" 2>/dev/null | col -bx; }

step_texts() {
    for l in $TRAIN_LICENSES; do cp "/usr/share/common-licenses/$l" "$CSR_DIR/train_$l.txt"; done
    for m in $TRAIN_MAN; do man_text "$m" >"$CSR_DIR/train_$m.txt"; done
    for m in $EVAL_MAN; do man_text "$m" >"$CSR_DIR/eval_$m.txt"; done
    wc -c "$CSR_DIR"/*.txt
}

step_traces() {
    for t in "$CSR_DIR"/train_*.txt "$CSR_DIR"/eval_*.txt; do
        timed "trace $t" "$B/subkv-trace" "$t" -o "${t%.txt}.skvt" --window "$TRACE_TOKENS"
    done
}

step_train() {
    set -- "$CSR_DIR"/train_*.skvt
    timed "train post-rotary" "$B/subkv-dict" train "$@" -o "$CSR_DIR/post.skvd" --atoms "$ATOMS" \
        --layers-per-dict "$LPD" --samples "$SAMPLES" --iters "$ITERS" --quiet
    timed "train pre-rotary" "$B/subkv-dict" train "$@" -o "$CSR_DIR/pre.skvd" --atoms "$ATOMS" \
        --layers-per-dict "$LPD" --samples "$SAMPLES" --iters "$ITERS" --rope-base "$ROPE_BASE" \
        --quiet
}

step_eval() {
    for e in "$CSR_DIR"/eval_*.skvt; do
        timed "eval post $e" "$B/subkv-dict" eval "$CSR_DIR/post.skvd" "$e" --sparsity "$SPARSITY" \
            --window 64 --queries 16
        timed "eval pre $e" "$B/subkv-dict" eval "$CSR_DIR/pre.skvd" "$e" --sparsity "$SPARSITY" \
            --window 64 --queries 16 --rope-base "$ROPE_BASE"
    done
}

# One perplexity run; prints its output and keeps it in $CSR_DIR/ppl_LABEL.txt.
ppl() {
    label=$1
    shift
    timed "ppl $label" "$B/subkv-perplexity" "$CSR_DIR/eval_$EVAL_MAN.txt" --window "$PPL_WINDOW" \
        --tail "$PPL_TAIL" "$@" | tee "$CSR_DIR/ppl_$label.txt"
}

# Bytes per sketch a run reported ("sketches hold N bytes" over n_layer * n_head_kv sketches).
sketch_bytes() {
    sed -n 's/.*sketches hold \([0-9]*\) .*/\1/p' "$CSR_DIR/ppl_$1.txt" | awk '{print int($1 / 90)}'
}

step_ppl() {
    ppl exact --policy exact
    for s in $(echo "$SPARSITY" | tr , ' '); do
        ppl "csr_post_s$s" --policy csr --dict "$CSR_DIR/post.skvd" --sparsity "$s" \
            --sketch-window "$CSR_WINDOW"
        ppl "csr_pre_s$s" --policy csr --dict "$CSR_DIR/pre.skvd" --sparsity "$s" \
            --sketch-window "$CSR_WINDOW" --rope-base "$ROPE_BASE"
        bytes=$(sketch_bytes "csr_post_s$s")
        ppl "sinkwin_s$s" --policy sinkwin --budget "$bytes"
    done
}

step_big() {
    timed "train pre-rotary N=$BIG_ATOMS" "$B/subkv-dict" train "$CSR_DIR"/train_*.skvt \
        -o "$CSR_DIR/pre_big.skvd" --atoms "$BIG_ATOMS" --layers-per-dict "$BIG_LPD" \
        --samples "$SAMPLES" --iters "$ITERS" --rope-base "$ROPE_BASE" --quiet
    for e in "$CSR_DIR"/eval_*.skvt; do
        timed "eval pre N=$BIG_ATOMS $e" "$B/subkv-dict" eval "$CSR_DIR/pre_big.skvd" "$e" \
            --sparsity "$SPARSITY" --window 64 --queries 16 --rope-base "$ROPE_BASE"
    done
}

[ $# -gt 0 ] || set -- texts traces train eval ppl
for step in "$@"; do
    echo "## $(stamp) step $step"
    "step_$step"
done
