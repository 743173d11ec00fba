#!/usr/bin/env bash
# run_tests.sh — run CMocka test binaries, keep going past failures, print one summary line.
#
# Usage: tests/run_tests.sh [BINARY...]      (default: every build/tests/test_* executable)
#
# Counts CMocka test *cases*, summed over every group in every binary, from the
# "[  PASSED  ] N test(s).", "[  FAILED  ] N test(s), listed below:" and
# "[  SKIPPED ] N test(s), listed below:" lines (GPU suites skip, printing why, where there
# is no GPU). A binary that
# crashes, times out or exits non-zero without reporting all the cases it started adds the
# unreported cases (at least 1) to the failures. The last line of output is exactly
#     N passed, N failed, N skipped
# and the exit status is non-zero when anything failed.
#
# The environment passes through untouched (SUBKV_TEST_SEED and friends), except that CMocka
# is told to print its standard text format, which is what we parse.
# SUBKV_TEST_TIMEOUT: seconds per binary (default 600; 0 = no limit).
set -uo pipefail

export CMOCKA_MESSAGE_OUTPUT=stdout
timeout_s="${SUBKV_TEST_TIMEOUT:-600}"

bins=("$@")
if [[ ${#bins[@]} -eq 0 ]]; then
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    for f in "$root"/build/tests/test_*; do
        [[ -f "$f" && -x "$f" ]] && bins+=("$f")
    done
fi

passed=0
failed=0
skipped=0
bad_bins=()

for bin in "${bins[@]}"; do
    name="$(basename "$bin")"
    echo "=== $name"
    log="$(mktemp)"
    if [[ "$timeout_s" != 0 ]] && command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$timeout_s" "$bin" 2>&1 | tee "$log"
    else
        "$bin" 2>&1 | tee "$log"
    fi
    rc=${PIPESTATUS[0]}

    # Sum over groups: a binary may call cmocka_run_group_tests more than once.
    read -r ran ok bad skip < <(awk '
        /^\[==========\] Running [0-9]+ test\(s\)\./   { r += $3 }
        /^\[  PASSED  \] [0-9]+ test\(s\)\./            { p += $4 }
        /^\[  FAILED  \] [0-9]+ test\(s\), listed below/ { f += $4 }
        /^\[  SKIPPED \] [0-9]+ test\(s\), listed below/ { s += $4 }
        END { printf "%d %d %d %d\n", r, p, f, s }' "$log")
    rm -f "$log"

    unreported=$((ran - ok - bad - skip))
    if [[ $rc -ne 0 && $bad -eq 0 ]] || [[ $unreported -gt 0 ]]; then
        # Crash, sanitizer abort, timeout, group setup failure, or no CMocka output at all.
        extra=$((unreported > 0 ? unreported : 1))
        bad=$((bad + extra))
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then why="timed out after ${timeout_s}s"
        elif [[ $rc -gt 128 ]]; then why="killed by signal $((rc - 128))"
        else why="exit status $rc"; fi
        echo "=== $name: $why with $unreported case(s) unreported; counting $extra as failed"
        bad_bins+=("$name")
    elif [[ $rc -ne 0 ]]; then
        bad_bins+=("$name")
    fi
    echo "=== $name: $ok passed, $bad failed, $skip skipped"
    passed=$((passed + ok))
    failed=$((failed + bad))
    skipped=$((skipped + skip))
done

if [[ ${#bins[@]} -eq 0 ]]; then
    echo "run_tests: no test binaries (tests/test_*.c)"
fi
if [[ ${#bad_bins[@]} -gt 0 ]]; then
    echo "run_tests: failing binaries: ${bad_bins[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 && ${#bad_bins[@]} -eq 0 ]]
