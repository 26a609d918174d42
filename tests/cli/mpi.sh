#!/bin/sh
# mpi.sh: capsnet train across processes (a build with MPI=1, under Open MPI's mpirun), on
# this machine's cores, one thread per process.
# - 2 processes follow 1 process step by step: the same 30 steps (global batch 10) within
#   1e-5 relative per step, the model files within 1e-5 (|b - a| / |a| per tensor), the
#   same test accuracy; 3 processes resuming a 2-process run end as 1 process straight.
# - Refused at the start, naming the process: other arguments, another model file.
# - A process killed mid-run ends the run within 10 s, non-zero; the last model file loads.
# - SIGUSR1 (mpirun passes it on) and Ctrl-C's SIGINT stop every process after the same
#   step, process 0 saves, and the run resumes to the end of the run never stopped.
# - The default build refuses to run as one of many; only train runs as many.
# The MPI build is $CAPS_MPI_PROGRAM, else build-mpi/capsnet, made here (make MPI=1).
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=$(cd "${CAPS_DATA:-data/mnist}" && pwd)
checks=21

if ! command -v mpirun > /dev/null 2>&1 || ! command -v mpicc > /dev/null 2>&1; then
    skipped=$checks why="no Open MPI here (apt-get install libopenmpi-dev openmpi-bin)"
    summary
    exit
fi
mpi=${CAPS_MPI_PROGRAM:-}
if [ -z "$mpi" ]; then
    # Built from this tree with the flags of a plain build, whatever make called this (make
    # puts its command line's variables in the environment: SANITIZE=1 would give Open MPI
    # to LeakSanitizer), and the core commands only (train, info: no presentation libraries).
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u SANITIZE -u CUDA -u CUDA_EMU -u BLAS \
        -u NATIVE -u OMP -u FIGURES -u WERROR -u CAPS_SKIP_E2E \
        make -s MPI=1 FIGURES=0 BUILD=build-mpi WERROR=1 build-mpi/capsnet \
        > "$work/make.out" 2>&1 || { cat "$work/make.out"; exit 1; }
    mpi=$(pwd)/build-mpi/capsnet
fi
# As root (containers, CI) mpirun needs leave; more processes than cores are fine here.
# (Started in the background, mpirun itself must be the job, for the signals to reach it.)
mpirun_flags="--allow-run-as-root --oversubscribe"
run_mpi() { mpirun $mpirun_flags "$@"; }
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
short="--data $data --limit 300 --test-limit 101 --batch 10 --threads 1 --seed 3 $tiny --quiet"

# step_gap A B: the largest relative difference of the loss columns of two step logs.
step_gap() {
    paste -d, "$1" "$2" | awk -F, 'NR > 1 { d = $3 - $6; if (d < 0) d = -d;
        r = d / ($3 < 0 ? -$3 : $3); if (r > m) m = r; n++ }
        END { if (n == 0) print "no-steps"; else printf "%.3g\n", m }'
}
# model_gap A B: the largest |b - a| / |a| of a tensor (capsnet info --compare).
model_gap() {
    "$mpi" info --model "$1" --compare "$2" | sed -nE 's/.*\|b - a\| \/ \|a\| at most ([^,]+),.*/\1/p'
}
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 <= b + 0) }'; }
accuracy() { sed -nE 's/^test accuracy ([0-9.]+)%.*/\1/p' "$1"; }

# ---- the same run as one process
check "1 process, 30 steps" 0 "" -- save_output "$work/one.out" "$mpi" train $short \
    --epochs 1 --out "$work/one.caps" --step-log "$work/one.steps"
check "2 processes, 30 steps" 0 "" -- save_output "$work/two.out" run_mpi -np 2 "$mpi" train \
    $short --epochs 1 --out "$work/two.caps" --step-log "$work/two.steps"
gap=$(step_gap "$work/one.steps" "$work/two.steps")
echo "mpi.sh: 2 processes against 1, 30 steps: loss within $gap relative per step" >&2
assert "2 processes: every step's loss within 1e-5 of 1 process's ($gap)" below "$gap" 1e-5
assert "2 processes: 30 steps logged" [ "$(wc -l < "$work/two.steps")" -eq 31 ]
gap=$(model_gap "$work/one.caps" "$work/two.caps")
echo "mpi.sh: model files within $gap" >&2
assert "2 processes: model within 1e-5 of 1 process's ($gap)" below "$gap" 1e-5
assert "2 processes: same test accuracy" [ "$(accuracy "$work/one.out")" = "$(accuracy "$work/two.out")" ]

# ---- resume with another number of processes: 2 for epoch 1, 3 for epoch 2 (shares of 4,
# 3 and 3 images), against 1 process for both.
"$mpi" train $short --epochs 2 --out "$work/one2.caps" > /dev/null 2>&1
run_mpi -np 2 "$mpi" train $short --epochs 1 --out "$work/mix.caps" > /dev/null 2>&1
check "resume with 3 processes" 0 "after 2 epochs" -- run_mpi -np 3 "$mpi" train $short \
    --epochs 2 --out "$work/mix.caps" --resume
gap=$(model_gap "$work/one2.caps" "$work/mix.caps")
assert "2 then 3 processes: model within 1e-5 of 1 process's ($gap)" below "$gap" 1e-5

# ---- refused at the start
rm -f "$work/bad.caps"
check "other arguments are refused by process" 2 "process 1's arguments differ from process 0's" -- \
    run_mpi -np 1 "$mpi" train $short --epochs 1 --out "$work/bad.caps" --lr 0.001 : \
    -np 1 "$mpi" train $short --epochs 1 --out "$work/bad.caps" --lr 0.002
assert "no model written after other arguments" [ ! -e "$work/bad.caps" ]
# The same command in two folders whose model files differ (other seeds' runs).
mkdir -p "$work/a" "$work/b"
"$mpi" train $short --epochs 1 --out "$work/a/m.caps" > /dev/null 2>&1
"$mpi" train $short --epochs 1 --out "$work/b/m.caps" --lr 0.002 > /dev/null 2>&1
check "another model file is refused by process" 1 "process 1's weights or training state \(at the start\) differ" -- \
    run_mpi -np 1 --wdir "$work/a" "$mpi" train --data "$data" --threads 1 --epochs 2 \
    --out m.caps --resume --quiet : -np 1 --wdir "$work/b" "$mpi" train --data "$data" \
    --threads 1 --epochs 2 --out m.caps --resume --quiet

# ---- a process that dies: the others end within 10 s; the last save loads
long="--data $data --limit 6000 --test-limit 100 --batch 50 --threads 1 $tiny --quiet"
# steps_done LOG N: waits (up to 60 s) until the step log has N steps.
steps_done() {
    i=0
    while [ "$i" -lt 600 ]; do
        [ "$(cat "$1" 2>/dev/null | wc -l)" -gt "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
mpirun $mpirun_flags -np 2 "$mpi" train $long --epochs 4 --out "$work/kill.caps" --step-log "$work/kill.steps" \
    > "$work/kill.out" 2>&1 &
pid=$!
steps_done "$work/kill.steps" 150 # into epoch 2: epoch 1 is saved
victim=""
for p in $(pgrep -f "kill.caps"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
done
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait "$pid"
rc=$?
took=$(($(date +%s) - start))
ended=0
[ -n "$victim" ] && [ "$rc" -ne 0 ] && [ "$took" -le 10 ] && ended=1
assert "a killed process ends the run, non-zero, within 10 s (status $rc, $took s)" [ "$ended" -eq 1 ]
check "the last saved model file loads" 0 "epochs done [1-9]" -- "$mpi" info --model "$work/kill.caps"

# ---- stopped by a signal to mpirun: every process stops after the same step, 0 saves.
# SIGUSR1 mpirun passes on; SIGINT (Ctrl-C) it turns into SIGTERM, with a second to stop.
# The reference is 2 processes straight through: over 480 steps the order of float sums
# moves 1 process's weights away by ~1e-2 (|b - a| / |a|); a resumed run repeats its steps.
run_mpi -np 2 "$mpi" train $long --epochs 4 --out "$work/ref.caps" > /dev/null 2>&1
for sig in USR1 INT; do
    rm -f "$work/stop.caps" "$work/stop.steps"
    mpirun $mpirun_flags -np 2 "$mpi" train $long --epochs 4 --out "$work/stop.caps" \
        --step-log "$work/stop.steps" > "$work/stop.out" 2>&1 &
    pid=$!
    steps_done "$work/stop.steps" 20
    kill -s "$sig" "$pid"
    wait "$pid"
    # In an epoch, or between two (testing, saving): resume to the end, then compare.
    check "SIG$sig: process 0 saved where all stopped" 0 "interrupted (in epoch [1-4] at batch [0-9]+|after epoch [1-3]); saved" \
        -- cat "$work/stop.out"
    check "SIG$sig: resume to the end" 0 "after 4 epochs" -- run_mpi -np 2 "$mpi" train $long \
        --epochs 4 --out "$work/stop.caps" --resume
    gap=$(model_gap "$work/ref.caps" "$work/stop.caps")
    assert "SIG$sig: stopped and resumed ends within 1e-5 of the straight run ($gap)" below "$gap" 1e-5
    grep -q "Process received signal" "$work/stop.out" && cat "$work/stop.out" >&2
done

# ---- what runs as many processes, and what does not
check "the default build refuses to run under mpirun" 1 "built without MPI" -- \
    run_mpi -np 2 "$capsnet" train $short --epochs 1 --out "$work/plain.caps"
check "only train runs as several processes" 2 "only .capsnet train. runs as several" -- \
    run_mpi -np 2 "$mpi" info --model "$work/one.caps"

summary
