#!/usr/bin/env bash
# eval.sh — `make eval`: issue 5's evaluation of the policies on SmolLM2-135M (build/subkv-eval)
# over English text from Debian packages, then plots (gnuplot) and a README snippet.
#
#   bash bench/eval.sh [subkv-eval options...]     (EVAL_OUT=build/eval by default)
#
# Texts: man pages rendered to plain text by groff (no hyphenation, no overstrike, spaces
# squeezed): bash(1) from `bash`, and overview pages of section 7 from `manpages`; the list of
# files used goes to OUT/texts.list, the window -> documents map to OUT/windows.txt. The
# passkey filler is the last text of the list; the lines task draws words from wamerican's
# /usr/share/dict/words. Nothing here is written by hand.
set -euo pipefail

OUT="${EVAL_OUT:-build/eval}"
BIN="${EVAL_BIN:-build/subkv-eval}"
mkdir -p "$OUT/texts"

PAGES=(man1/bash.1 man7/tcp.7 man7/capabilities.7 man7/cgroups.7 man7/signal.7 man7/socket.7)
: > "$OUT/texts.list"
for p in "${PAGES[@]}"; do
    src="/usr/share/man/$p.gz"
    [[ -f "$src" ]] || { echo "eval: $src missing (Debian packages bash, manpages)" >&2; exit 1; }
    dst="$OUT/texts/$(basename "$p").txt"
    zcat "$src" | groff -man -rHY=0 -Tutf8 -P-cbou 2>/dev/null | sed 's/^ *//; s/  */ /g' \
        | cat -s > "$dst"
    echo "$dst" >> "$OUT/texts.list"
done
echo "eval: texts: $(wc -c $(cat "$OUT/texts.list") | tail -n 1 | awk '{print $1}') bytes from ${PAGES[*]}"

start=$(date +%s)
"$BIN" --texts "$OUT/texts.list" --out "$OUT" "$@" | tee "$OUT/summary-stdout.txt"
wall=$(( $(date +%s) - start ))
echo "eval: subkv-eval took ${wall} s" | tee -a "$OUT/summary-stdout.txt"

# ---- plots: quality vs memory (x: 1/F of exact memory, log scale) ---------------------------
# summary.csv columns: policy,memory,budget_B,ppl<L>,dppl<L>_%,...,passkey_acc,lines_acc,attn_err
python3 - "$OUT" <<'PY'
import csv, sys, os
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "summary.csv"))))
cols = [c for c in rows[0].keys() if c.startswith("dppl") or c.endswith("_acc") or c == "attn_err"]
labels = sorted({r["policy"] for r in rows if r["policy"] != "exact"}, key=lambda s: [r["policy"] for r in rows].index(s))
for c in cols:
    with open(os.path.join(out, "plot-%s.dat" % c.replace("%", "pct")), "w") as f:
        f.write("# fraction " + " ".join(labels) + " exact\n")
        ex = next((r[c] for r in rows if r["policy"] == "exact"), "-")
        fr = sorted({int(r["memory"].split("/")[1]) for r in rows if "/" in r["memory"]})
        for F in fr:
            vals = []
            for l in labels:
                v = next((r[c] for r in rows if r["policy"] == l and r["memory"] == "1/%d" % F), "-")
                vals.append(v if v not in ("", "-") else "NaN")
            f.write("%g %s %s\n" % (1.0 / F, " ".join(vals), ex if ex != "-" else "NaN"))
PY
if command -v gnuplot >/dev/null 2>&1; then
    for dat in "$OUT"/plot-*.dat; do
        name=$(basename "$dat" .dat); metric=${name#plot-}
        ncol=$(head -n 1 "$dat" | wc -w)
        {
            echo "set terminal pngcairo size 720,480 noenhanced" 2>/dev/null
            echo "set output '$OUT/$name.png'"
            echo "set logscale x 2; set xlabel 'KV memory (fraction of exact, f16)'; set ylabel '$metric'"
            echo "set key outside right; set grid; set title 'SmolLM2-135M: $metric vs memory'"
            printf "plot "
            for ((i = 2; i <= ncol - 1; i++)); do
                t=$(head -n 1 "$dat" | awk -v k=$((i + 1)) '{print $k}')
                printf "'%s' using 1:%d with linespoints title '%s', " "$dat" "$i" "$t"
            done
            printf "'%s' using 1:%d with lines dashtype 2 title 'exact'\n" "$dat" "$ncol"
        } > "$OUT/$name.gp"
        gnuplot "$OUT/$name.gp" 2>/dev/null || {
            sed -i 's/pngcairo/png/' "$OUT/$name.gp"; gnuplot "$OUT/$name.gp"; }
    done
    echo "eval: plots: $(ls "$OUT"/plot-*.png | tr '\n' ' ')"
else
    echo "eval: gnuplot not found (Debian: gnuplot-nox): no plots" >&2
fi

# ---- README snippet ----------------------------------------------------------------------
{
    echo "### Evaluation on SmolLM2-135M (make eval)"
    echo
    echo "Command: \`make eval\` (bench/eval.sh → build/subkv-eval $*), ${wall} s on this machine."
    echo "Memory: each (layer, kv head) sketch gets exact's bytes for the sequence length at f16,"
    echo "divided by F; refreshkv's budget bounds only its partial cache (its full store is host"
    echo "memory on top). Texts: $(sed 's#.*/##' "$OUT/texts.list" | tr '\n' ' ')(Debian man pages)."
    echo
    cat "$OUT/summary.md"
    echo
    echo "Per-layer relative attention-output error at 1/8 (last decode steps of each window), with"
    echo "SubGen's clusters and final radius over the mean key norm:"
    echo
    cat "$OUT/layers.md"
    echo
    cat "$OUT/depths.md"
    echo
    for p in "$OUT"/plot-*.png; do [[ -f "$p" ]] && echo "![$(basename "$p" .png)]($p)"; done
} > "$OUT/README-snippet.md"
echo "eval: wrote $OUT/eval.csv, summary.{txt,csv,md}, layers.{csv,md}, README-snippet.md"
