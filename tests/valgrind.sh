#!/usr/bin/env bash
# valgrind.sh — run service suites (test binaries that launch mpirun jobs) with every
# coordinator and worker rank under valgrind memcheck, then judge the ranks' logs.
#
# usage: tests/valgrind.sh BUILD/tests/test_service [BUILD/tests/test_faults ...]
#
# Each rank runs as  valgrind --leak-check=full --errors-for-leak-kinds=definite
#   --error-exitcode=97 --suppressions=(Open MPI's + tests/valgrind.supp) --log-file=DIR/vg-%p.log
# (through SUBKV_TEST_WRAP, tests/svc_harness.h; SUBKV_RANK_WRAP for subkv-launch). A rank that
# exits with a finding exits 97, which fails the suite's clean-shutdown checks; ranks the fault
# tests kill leave no summary, so the logs are also searched for findings reported before the
# end. Exit status 0 only when every suite passed and no log holds a finding. The logs stay in
# DIR (default build/valgrind; VALGRIND_DIR). The suppressions cover Open MPI / PMIx / hwloc
# internals only.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${VALGRIND_DIR:-$root/build/valgrind}"
rm -rf "$dir" && mkdir -p "$dir"
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
supp=(--suppressions="$root/tests/valgrind.supp")
[[ -r /usr/share/openmpi/openmpi-valgrind.supp ]] && supp+=(--suppressions=/usr/share/openmpi/openmpi-valgrind.supp)
export SUBKV_TEST_WRAP="valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=97 ${supp[*]} --log-file=$dir/vg-%p.log"
export SUBKV_TEST_TIMEOUT="${SUBKV_TEST_TIMEOUT:-3600}"
t0=$(date +%s)
bash "$root/tests/run_tests.sh" "$@" | tee "$dir/suites.log"
suites_rc=${PIPESTATUS[0]}
logs=("$dir"/vg-*.log)
[[ -e "${logs[0]}" ]] || { echo "valgrind.sh: no valgrind logs in $dir (did any rank start?)" >&2; exit 1; }
finding='(Invalid (read|write|free)|Conditional jump|uninitialised|Mismatched free|Source and destination overlap|definitely lost in|ERROR SUMMARY: [1-9])'
bad=$(grep -lE "$finding" "${logs[@]}" || true)
summaries=$(grep -l "ERROR SUMMARY: 0 errors" "${logs[@]}" | wc -l)
echo "valgrind: ${#logs[@]} ranks ran under memcheck in $(( $(date +%s) - t0 )) s; $summaries ended with" \
     "'ERROR SUMMARY: 0 errors', $(( ${#logs[@]} - summaries - $(echo -n "$bad" | grep -c .) )) were killed by the" \
     "fault tests before a summary; logs with findings: $(echo -n "$bad" | grep -c .)"
if [[ -n "$bad" ]]; then
    for f in $bad; do echo "---- $f"; grep -E -A12 "$finding" "$f" | head -40; done
    exit 1
fi
exit "$suites_rc"
