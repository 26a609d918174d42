#!/bin/sh
# Runs every test binary of a build, then prints one "N passed, N failed" line over all (with
# ", N skipped" when tests could not run here, such as GPU tests on a machine without one).
#   tests/run.sh BUILD_DIR PROGRAM
# CAPS_TEST_THREADS (default "1 2") lists the thread counts the unit tests run with;
# the program's tests (tests/cli) run once on all cores. CAPS_SKIP_E2E=1 skips the
# end-to-end MNIST training (tests/cli/e2e_*.sh), for slow builds. CAPS_FIGURES=0 (make lib)
# skips the tests of the pictures, report and explorer, which such a build does not have.
set -u
build=${1:-build}
program=${2:-./capsnet}
threads=${CAPS_TEST_THREADS:-"1 2"}
passed=0
failed=0
skipped=0
broken=""
export CAPS_PROGRAM="$program"

tally() { # $1: a test's output; adds its "N passed, M failed" line to the totals
    line=$(printf '%s\n' "$1" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(printf '%s\n' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
    f=$(printf '%s\n' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(printf '%s\n' "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
}

run() { # $1: label, rest: command
    label=$1
    shift
    start=$(date +%s)
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed 's/^/  /'
    printf '%s (%ss)\n' "$label" $(($(date +%s) - start))
    tally "$out"
    if [ $rc -ne 0 ]; then
        # A crash prints no summary: count it as one failure so it cannot pass silently.
        printf '%s\n' "$out" | grep -qE '[0-9]+ passed, [1-9][0-9]* failed' || failed=$((failed + 1))
        broken="$broken $label"
    fi
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    for n in $threads; do OMP_NUM_THREADS=$n run "$name (threads $n)" "$t"; done
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t")
    case "$name" in
    lib.sh) continue ;;
    e2e_*) if [ "${CAPS_SKIP_E2E:-0}" = 1 ]; then echo "$name: skipped (CAPS_SKIP_E2E=1)"; continue; fi ;;
    figures.sh | serve.sh)
        if [ "${CAPS_FIGURES:-1}" = 0 ]; then echo "$name: skipped (built without figures)"; continue; fi ;;
    esac
    run "$name" sh "$t" "$program"
done

[ -n "$broken" ] && echo "failing:$broken"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
