#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]: builds the libFuzzer targets of fuzz/ with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs each for SECONDS (default 30)
# on a scratch copy of its seed corpus. TARGETs: idx, model, cnn, image, data (default: all five;
# "fuzz_idx" works too). One line per target:
#   fuzz_idx: 123456 runs in 30 s, 0 crashes (cov 812, corpus 17 -> 230)
# Exits 1 if any target crashed, leaked, timed out or ran out of memory, after printing the
# reproducer (build-fuzz/artifacts/<target>/) and the head of the report; 2 on a usage or
# build error. Everything it writes goes to build-fuzz/ (git-ignored); fuzz/corpus/ is only
# read. Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev), libpng and zlib.
# FUZZ_CC overrides the compiler; extra libFuzzer flags can go in FUZZ_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/fuzz.sh [SECONDS] [idx|model|cnn|image|data ...]" >&2; exit 2; }
secs=30
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
[ "$secs" -ge 1 ] || usage
targets=()
for t in "${@:-idx model cnn image data}"; do
    for u in $t; do
        u=${u#fuzz_}
        case $u in idx|model|cnn|image|data) targets+=("$u") ;; *) usage ;; esac
    done
done

# Longest input per target: a few times the largest seed, so inputs can grow but each run
# stays fast (fuzz_model also skips inputs over 1 MB by itself).
max_len() { case $1 in idx) echo 16384 ;; model|cnn) echo 32768 ;; image) echo 16384 ;; data) echo 16384 ;; esac; }

CC=${FUZZ_CC:-clang}
out=build-fuzz
CFLAGS=(-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        -Wall -Wextra -Wno-unknown-pragmas -Iinclude -Isrc
        $(pkg-config --cflags cairo fontconfig 2>/dev/null))
# No CAPS_USE_DNNL / CAPS_USE_CBLAS: src/gemm.c then builds its own loops, and no OpenMP.
LIBS=(-lpng -lz -lm)

command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (install clang)" >&2; exit 2; }
rm -rf "$out/obj"
mkdir -p "$out/obj"
# The library, instrumented, as an archive: each target links only the objects it uses. A
# source that does not compile here (a library of the program that is not installed) is
# skipped with a note; if a target needed it, its link fails below.
ls src/*.c | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} sh -c '
    o='"$out"'/obj/$(basename {} .c).o
    if '"$CC ${CFLAGS[*]}"' -c {} -o "$o" 2>"$o.err"; then cat "$o.err" >&2
    else echo "fuzz.sh: skipped {}: $(grep -m 1 error: "$o.err")" >&2; rm -f "$o"; fi
    rm -f "$o.err"' 
ar rcs "$out/libcapsnet-fuzz.a" "$out"/obj/*.o
for t in "${targets[@]}"; do
    "$CC" "${CFLAGS[@]}" "fuzz/fuzz_$t.c" "$out/libcapsnet-fuzz.a" "${LIBS[@]}" -o "$out/fuzz_$t" ||
        { echo "fuzz.sh: building fuzz_$t failed" >&2; exit 2; }
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
failed=0
for t in "${targets[@]}"; do
    work=$out/corpus/$t art=$out/artifacts/$t log=$out/fuzz_$t.log
    rm -rf "$work" "$art"
    mkdir -p "$work" "$art"
    cp fuzz/corpus/"$t"/* "$work"/ # a scratch copy: new inputs never land in fuzz/corpus
    seeds=$(ls "$work" | wc -l)
    start=$(date +%s)
    rc=0
    # In the background so that its pid is known: fuzz targets name their scratch input
    # files after it, and a crashed run cannot remove them itself.
    "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$art/" \
        ${FUZZ_FLAGS:-} "$work" >"$log" 2>&1 &
    pid=$!
    wait "$pid" || rc=$?
    rm -rf /dev/shm/capsnet-fuzz-"$pid"-* /tmp/capsnet-fuzz-"$pid"-*
    elapsed=$(( $(date +%s) - start ))
    # libFuzzer's final stats; after a crash, the last status line ("#N ...") instead.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1) || true
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(ls "$art" | wc -l)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    echo "fuzz_$t: ${runs:-0} runs in $elapsed s, $crashes crashes" \
        "(cov ${cov:-?}, corpus $seeds -> ${corp:-?})"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        for a in "$art"/*; do [ -e "$a" ] && echo "  reproducer: $a (run: $out/fuzz_$t $a)"; done
        echo "  report ($log):"
        pat='ERROR:|runtime error:|fuzz_[a-z]+: |deadly signal|out-of-memory|timeout'
        first=$(grep -n -m 1 -E "$pat" "$log" | cut -d: -f1) || true
        sed -n "${first:-1},+24p" "$log" | sed 's/^/    /'
    fi
done
exit "$failed"
