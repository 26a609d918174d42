# lib.sh: the shell side of the test harness, sourced by tests/cli/*.sh.
# check NAME RC_WANTED PATTERN -- COMMAND...: runs COMMAND, expects exit status RC_WANTED
# and PATTERN (an extended regex, or "" for none) somewhere in its stdout+stderr.
# Ends with summary, which prints "<file>: N passed, N failed" (and ", N skipped (why)")
# and sets the exit status.
passed=0
failed=0
work=$(mktemp -d /tmp/capsnet-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT

check() {
    name=$1 want=$2 pattern=$3
    shift 4
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        failed=$((failed + 1))
        printf '  FAIL %s: exit status %s, expected %s\n%s\n' "$name" "$rc" "$want" "$out" | head -n 20
    elif [ -n "$pattern" ] && ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        failed=$((failed + 1))
        printf '  FAIL %s: output lacks /%s/\n%s\n' "$name" "$pattern" "$out" | head -n 20
    else
        passed=$((passed + 1))
    fi
}

# assert NAME CONDITION...: a test command (e.g. [ -f x ]) that must succeed.
assert() {
    name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else
        failed=$((failed + 1))
        printf '  FAIL %s\n' "$name"
    fi
}

# save_output FILE COMMAND...: runs COMMAND with its standard output in FILE (for check).
save_output() {
    file=$1
    shift
    "$@" > "$file"
}

# A test that cannot run here (no PyTorch, say) adds to skipped and says why; tests/run.sh
# counts them as skipped, never as passed.
skipped=0
why=""
summary() {
    if [ "$skipped" -gt 0 ]; then
        printf '%s: %d passed, %d failed, %d skipped (%s)\n' "$0" "$passed" "$failed" \
            "$skipped" "$why"
    else
        printf '%s: %d passed, %d failed\n' "$0" "$passed" "$failed"
    fi
    [ "$failed" -eq 0 ]
}

# pgm_from_idx IMAGES.gz INDEX OUT: test image INDEX of an IDX file as a 28x28 PGM.
pgm_from_idx() {
    { printf 'P5\n28 28\n255\n'
      gzip -dc "$1" | tail -c +17 | head -c $(( ($2 + 1) * 784 )) | tail -c 784; } > "$3"
}

# start_serve OUT ERR ARG...: runs `$capsnet serve ARG... --port 0` in the background, stdout
# to OUT, stderr to ERR; sets pid, and url to http://127.0.0.1:PORT (no trailing /) once the
# server prints it, or to "" if it has not within 5 s. The caller kills $pid.
start_serve() {
    serve_out=$1 serve_err=$2
    shift 2
    "$capsnet" serve "$@" --port 0 > "$serve_out" 2> "$serve_err" &
    pid=$!
    url=""
    for _ in $(seq 50); do
        url=$(sed -nE 's|.* on (http://127\.0\.0\.1:[0-9]+)/.*|\1|p' "$serve_out")
        [ -n "$url" ] && break
        sleep 0.1
    done
}
