#!/usr/bin/env bash
# device-hf-check.sh — tools/hf_check.py on the GPU device machine (no internet): the C llama
# runner against Hugging Face transformers on the same GGUF (next-token logits within 1e-2
# relative, 32 greedy tokens equal). Logs under $OUT (default build/device-logs).
#
#   bash deploy/device-hf-check.sh        (run tool: carry [".debs", ".whl"] and the model, below)
#
# What it needs there:
#  - the build dependencies: .debs/ unpacked by deploy/device-debs.sh (as device-run.sh does;
#    the prefix is reused when already there), for protobuf-c, cmocka and OpenBLAS;
#  - Python packages: torch from the machine itself (the device image has it: bench/gpu_sdpa.py
#    uses it); transformers, gguf, accelerate and their pure-Python dependencies as wheels in
#    the git-ignored .whl/ folder, installed with `pip install --no-index --find-links .whl`
#    into a venv that sees the system site-packages. Prepare .whl on an online machine for the
#    device's Python (Ubuntu 24.04: 3.12), e.g.
#        pip download --dest .whl --only-binary=:all: --python-version 3.12 \
#            --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#            --platform any transformers gguf accelerate numpy
#    then delete torch* and nvidia* wheels from .whl if pip pulled them in (the device has
#    torch; they would exceed the carry limit). Measured set for transformers 5.23 / gguf 0.19 /
#    accelerate 1.15: transformers, tokenizers, safetensors, huggingface_hub, hf-xet, httpx2,
#    httpcore2, h11, anyio, idna, certifi, typer, click, rich, markdown-it-py, mdurl, pygments,
#    shellingham, annotated-doc, regex, pyyaml, packaging, tqdm, filelock, fsspec, gguf,
#    accelerate, psutil, numpy, typing_extensions;
#  - the model: $SUBKV_MODEL, else data/SmolLM2-135M-Instruct.Q4_1.gguf, else
#    shared/SmolLM2-135M-Instruct.Q4_1.gguf (94 MiB: more than the 64 MiB a run may carry, so it
#    has to come through shared/ or another route; its sha256 is checked here).
# Exit: 0 the check passed; 1 it failed; 2 set-up missing (the log says which).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-build/device-logs}"
mkdir -p "$out"
prefix="${SUBKV_PREFIX:-/tmp/subkv-prefix}"
venv="${SUBKV_HF_VENV:-/tmp/subkv-hf-venv}"
name=SmolLM2-135M-Instruct.Q4_1.gguf
log="$out/hf-check.log"
exec > >(tee "$log") 2>&1

model="${SUBKV_MODEL:-}"
for cand in "data/$name" "shared/$name"; do
    [[ -z "$model" && -f "$cand" ]] && model="$cand"
done
if [[ -z "$model" ]]; then
    echo "device-hf-check: no model (set SUBKV_MODEL, or put $name in data/ or shared/)"
    exit 2
fi
want="$(awk -v n="$name" '$2 == n { print $1 }' deploy/models.sha256)"
if [[ "$(sha256sum "$model" | cut -d' ' -f1)" != "$want" ]]; then
    echo "device-hf-check: $model does not have the recorded sha256 $want"
    exit 2
fi

if [[ ! -f "$prefix/env.sh" ]] && compgen -G ".debs/*.deb" >/dev/null; then
    bash deploy/device-debs.sh install "$prefix" || exit 2
fi
# shellcheck disable=SC1091
[[ -f "$prefix/env.sh" ]] && source "$prefix/env.sh"
export SUBKV_DEPS_SKIP=1
make -j"$(nproc)" build/subkv-generate || { echo "device-hf-check: build failed"; exit 2; }

py=python3
if ! "$py" -c "import torch, transformers, gguf, accelerate, numpy" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "device-hf-check: transformers/gguf/accelerate missing and no .whl/ to install from"
        exit 2
    fi
    [[ -x "$venv/bin/python" ]] || python3 -m venv --system-site-packages "$venv" || exit 2
    "$venv/bin/pip" install -q --no-index --find-links .whl transformers gguf accelerate numpy ||
        { echo "device-hf-check: pip install from .whl failed"; exit 2; }
    py="$venv/bin/python"
fi
"$py" -c "import torch, transformers, gguf; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'gguf', gguf.__version__ if hasattr(gguf, '__version__') else '?')"

"$py" tools/hf_check.py --model "$model" --bin build/subkv-generate
