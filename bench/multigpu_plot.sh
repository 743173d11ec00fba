#!/usr/bin/env bash
# multigpu_plot.sh — PNGs from the CSVs bench/multigpu.sh wrote (gnuplot; Debian gnuplot-nox):
#
#   bash bench/multigpu_plot.sh [DIR]          (DIR: multigpu.sh's OUT, default build/multigpu)
#
#   strong_step_ms.png    step latency vs GPUs, one line per policy/context/shard/path
#   strong_tok_s.png      tokens/s (batch / step) vs GPUs
#   strong_efficiency.png T(1) / (N T(N)) vs GPUs (1 = linear speed-up)
#   weak_step_ms.png      step latency vs GPUs with context x N and batch x N
#   weak_efficiency.png   T(1) / T(N) (1 = perfect weak scaling)
#   comm_share.png        the parts of a step (bcast, attend, gather, merge, rest) as shares
#                         of it, per configuration of comm.csv (layer batching, graphs)
# The series' data files go to DIR/plot/. A series without a 1-GPU row has no efficiency.
set -euo pipefail

dir="${1:-build/multigpu}"
command -v gnuplot >/dev/null || { echo "multigpu_plot.sh: gnuplot not found (gnuplot-nox)" >&2; exit 1; }
[[ -s $dir/strong.csv ]] || { echo "multigpu_plot.sh: no $dir/strong.csv (run bench/multigpu.sh)" >&2; exit 1; }
pd="$dir/plot"
rm -rf "$pd"
mkdir -p "$pd"

# series CSV KEYCOLS PREFIX MODE: one file PREFIX_<key>.dat per series (key = the named CSV
# columns joined by '_'), rows "gpus step_ms tok_s efficiency" sorted by gpus; MODE strong
# (efficiency T1 / (N TN)) or weak (T1 / TN).
series() {
    local csv="$1" keys="$2" prefix="$3" mode="$4"
    awk -F, -v keys="$keys" -v prefix="$prefix" -v mode="$mode" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; nk = split(keys, k, " "); next }
        {
            key = ""
            for (i = 1; i <= nk; i++) {
                v = $(col[k[i]])
                if (k[i] == "context") # 524288 -> 512K, 1048576 -> 1M
                    v = v % 1048576 == 0 ? v / 1048576 "M" : v % 1024 == 0 ? v / 1024 "K" : v
                key = key (i > 1 ? "_" : "") v
            }
            n = $(col["gpus"]); t = $(col["step_ms"])
            rows[key] = rows[key] n " " t " " $(col["tok_s"]) "\n"
            if (n == 1) t1[key] = t
        }
        END {
            for (key in rows) {
                f = prefix "_" key ".dat"
                m = split(rows[key], lines, "\n")
                for (i = 1; i <= m; i++) {
                    if (lines[i] == "") continue
                    split(lines[i], x, " ")
                    e = "NaN"
                    if (key in t1 && x[2] > 0) e = mode == "strong" ? t1[key] / (x[1] * x[2]) : t1[key] / x[2]
                    print x[1], x[2], x[3], e | ("sort -n > " f)
                }
                close("sort -n > " f)
            }
        }' "$csv"
}

# lines PNG TITLE YLABEL COLUMN PREFIX [LOGY]: one line per PREFIX_*.dat.
lines() {
    local png="$1" title="$2" ylabel="$3" col="$4" prefix="$5" logy="${6:-}" plot="" f t
    for f in "$prefix"_*.dat; do
        [[ -e $f ]] || continue
        t="$(basename "$f" .dat)"
        t="${t#"$(basename "$prefix")"_}"
        plot="$plot${plot:+, }'$f' using 1:$col with linespoints lw 2 title '${t//_/ }'"
    done
    [[ -n $plot ]] || return 0
    gnuplot <<EOF
set terminal pngcairo size 900,560 noenhanced
set output '$png'
set title '$title'
set xlabel 'GPUs (one MPI rank each)'
set ylabel '$ylabel'
set logscale x 2
${logy:+set logscale y}
set key outside right
set grid
plot $plot
EOF
    echo "multigpu_plot.sh: $png"
}

series "$dir/strong.csv" "policy context shard path" "$pd/strong" strong
lines "$dir/strong_step_ms.png" "Strong scaling: decode step (32 layers, batch 8), as rank 0 sees it" \
    "step latency (ms)" 2 "$pd/strong" log
lines "$dir/strong_tok_s.png" "Strong scaling: tokens/s = batch / step" "tokens/s" 3 "$pd/strong" log
lines "$dir/strong_efficiency.png" "Strong scaling efficiency T(1) / (N T(N))" "efficiency" 4 \
    "$pd/strong"

for w in context batch; do
    [[ -s $dir/weak_$w.csv ]] && series "$dir/weak_$w.csv" "policy shard path" "$pd/weak_${w}x" weak
done
cat "$pd"/weak_*.dat >/dev/null 2>&1 && {
    lines "$dir/weak_step_ms.png" "Weak scaling: context x N or batch x N (exact, 256K x 8 per GPU)" \
        "step latency (ms)" 2 "$pd/weak"
    lines "$dir/weak_efficiency.png" "Weak scaling efficiency T(1) / T(N)" "efficiency" 4 "$pd/weak"
}

# comm share: one bar per comm.csv row, parts as % of the step (graphs: the parts come from
# event nodes inside the graphs; a row without parts shows only its step as 'rest').
if [[ -s $dir/comm.csv ]]; then
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        {
            s = $(c["step_ms"]); b = $(c["bcast_ms"]); a = $(c["attend_ms"])
            g = $(c["gather_ms"]); m = $(c["merge_ms"])
            if (b != b + 0 || b == "nan" || b == "NaN") b = a = g = m = 0
            rest = s - b - a - g - m; if (rest < 0) rest = 0
            label = $(c["policy"]) "/" $(c["gpus"]) "gpu/" $(c["path"]) \
                    ($(c["layer_batch"]) == 1 ? "/lb" : "") ($(c["graphs"]) == 1 ? "/graph" : "")
            printf "%s %.3f %.3f %.3f %.3f %.3f %.2f\n", label, 100*b/s, 100*a/s, 100*g/s, \
                100*m/s, 100*rest/s, s
        }' "$dir/comm.csv" >"$pd/comm.dat"
    gnuplot <<EOF
set terminal pngcairo size 1200,600 noenhanced
set output '$dir/comm_share.png'
set title 'Share of a decode step: broadcast + gather (communication) vs attend + merge (512K, batch 8, 32 layers)'
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.75
set ylabel '% of the step (rank 0)'
set yrange [0:105]
set xtics rotate by -40 scale 0
set key outside right
set grid y
plot '$pd/comm.dat' using 2:xtic(1) title 'bcast', '' using 3 title 'attend', \
     '' using 4 title 'gather', '' using 5 title 'merge', '' using 6 title 'rest (sync, launch)'
EOF
    echo "multigpu_plot.sh: $dir/comm_share.png"
fi
