#!/bin/sh
# reliability.sh: the promises about interruptions and failed writes, on the program.
# - SIGINT (or SIGTERM) mid-epoch: the step finishes, a checkpoint is saved, exit 130 with
#   the resume command; resuming ends bit-identical to a run that was never stopped.
# - A second SIGINT exits at once; the model file still loads; no temporary file is left.
# - A write that fails (the file-size limit standing in for a full disk) stops training
#   with a message and exit 1, and the last good model file is unchanged.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
run="--data $data --limit 6000 --test-limit 100 --batch 50 --epochs 2 --seed 9 $tiny --quiet"
params_bytes() { # bytes of parameters and Adam moments in a model file of this network
    n=$("$capsnet" info --model "$1" | sed -nE 's/^parameters ([0-9]+).*/\1/p')
    echo $((12 * n))
}
no_temporaries() { [ -z "$(ls "$work" | grep '\.tmp\.')" ]; }

# The run never stopped.
check "straight run" 0 "" -- "$capsnet" train $run --out "$work/straight.caps"

# Stopped by a signal after ~1 s, then resumed. A run whose signal came after it ended, or
# between two epochs (during the test pass or the save), is retried with another wait, so the
# test always covers a stop in the middle of an epoch; the checks below still require one.
mid_epoch() { "$capsnet" info --model "$1" 2>/dev/null | grep -q "batch [1-9][0-9]* of the next"; }
for sig in INT TERM; do
    for wait in 1.5 0.8 1.1 0.5 0.3 0.2; do
        stopped=0
        rm -f "$work/stop.caps" "$work/stop.csv"
        "$capsnet" train $run --out "$work/stop.caps" > "$work/stop.out" 2>&1 &
        pid=$!
        sleep "$wait"
        kill -s "$sig" "$pid" 2>/dev/null
        wait "$pid"
        rc=$?
        if [ "$rc" -eq 130 ]; then
            stopped=1
            if mid_epoch "$work/stop.caps"; then break; fi
        fi
    done
    assert "SIG$sig stops the run with status 130" [ "$stopped" -eq 1 ]
    check "SIG$sig: message says how to resume" 0 "resume with: capsnet train --resume --out $work/stop.caps" -- cat "$work/stop.out"
    check "SIG$sig: checkpoint mid-epoch" 0 "batch [1-9][0-9]* of the next" -- "$capsnet" info --model "$work/stop.caps"
    check "SIG$sig: resume" 0 "" -- "$capsnet" train $run --out "$work/stop.caps" --resume
    bytes=$(params_bytes "$work/straight.caps")
    check "SIG$sig: resumed run bit-identical to the straight one" 0 "" -- \
        cmp -i 216 -n "$bytes" "$work/straight.caps" "$work/stop.caps"
    check "SIG$sig: same log, timings aside" 0 "" -- sh -c \
        "cut -d, -f1-6 '$work/straight.csv' > '$work/a' && cut -d, -f1-6 '$work/stop.csv' > '$work/b' && cmp '$work/a' '$work/b'"
done

# Two signals in a row: out at once, whatever the save was doing.
rm -f "$work/twice.caps"
"$capsnet" train $run --out "$work/twice.caps" > /dev/null 2>&1 &
pid=$!
sleep 1
kill -INT "$pid" 2>/dev/null
kill -INT "$pid" 2>/dev/null
start=$(date +%s)
wait "$pid"
assert "second SIGINT exits within 3 s" [ $(($(date +%s) - start)) -le 3 ]
check "model file still loads after two signals" 0 "checksum ok" -- "$capsnet" info --model "$work/twice.caps"
assert "no temporary file after two signals" no_temporaries

# A failed write: the file-size limit (ulimit -f, in 512- or 1024-byte blocks) is far below
# the model's size, so the save after the resumed epoch fails like a full disk would.
cp "$work/straight.caps" "$work/full.caps"
cp "$work/full.caps" "$work/full.before"
check "write failure stops training" 1 "full.caps: write failed \(File too large\)" -- \
    sh -c "ulimit -f 1000 && exec '$capsnet' train $run --out '$work/full.caps' --resume --epochs 3"
check "the last good model file is unchanged" 0 "" -- cmp "$work/full.caps" "$work/full.before"
assert "no temporary file after the failed write" no_temporaries

summary
