#!/bin/sh
# mpi_compare.sh: one machine's cores as 1 process x T threads against T processes x 1
# thread (data-parallel over MPI), capsnet and PyTorch DDP, in one run, for SCALING.md.
#   bench/mpi_compare.sh [IMAGES] [ROUNDS]     (defaults: 3000 training images, 2 rounds)
# Trains the paper's network for one epoch of IMAGES at global batch 100 (the same steps for
# every layout), alternating the layouts ROUNDS times, and prints for each its training
# images/s (the epoch's, from the log) and the seconds the processes waited for the sums of
# the gradients and losses (the rest of the step is compute); the MPI runs with the sums
# overlapped with backward and without (--no-overlap). Then PyTorch's DistributedDataParallel
# (gloo) on the same network and batch, 1 x T against T x 1 (bench/torch_ddp.py), when
# Debian's python3-torch is there. Needs a build with MPI=1 (built here into build-mpi).
set -eu
cd "$(dirname "$0")/.."
images=${1:-3000}
rounds=${2:-2}
T=$(nproc)
torch_py=${TORCH_PYTHON:-/usr/bin/python3}
env -u MAKEFLAGS make -s MPI=1 FIGURES=0 BUILD=build-mpi build-mpi/capsnet
scripts/get-data.sh mnist data/mnist > /dev/null
capsnet=build-mpi/capsnet
work=$(mktemp -d /tmp/mpi-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
run="--data data/mnist --limit $images --test-limit 100 --batch 100 --epochs 1 --quiet --overwrite"

# one NAME COMMAND...: runs a training, prints "NAME images/s wait-seconds".
one() {
    name=$1
    shift
    "$@" --out "$work/m.caps" > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }
    ips=$(tail -n 1 "$work/m.csv" | cut -d, -f8)
    wait=$(sed -nE 's/.*\(([0-9.]+) s waiting for the sums\).*/\1/p' "$work/out")
    echo "$name $ips ${wait:-0}"
}
mpi="mpirun --allow-run-as-root --oversubscribe -np $T"
for r in $(seq "$rounds"); do
    echo "round $r/$rounds" >&2
    one "capsnet 1x$T" "$capsnet" train $run --threads "$T"
    one "capsnet ${T}x1" $mpi "$capsnet" train $run --threads 1
    one "capsnet ${T}x1-no-overlap" $mpi "$capsnet" train $run --threads 1 --no-overlap
done > "$work/rows"
echo
echo "capsnet, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $T cores,"
echo "one epoch of $images images at global batch 100 (best of $rounds rounds):"
printf '%-26s %12s %14s\n' layout images/s "wait for sums"
for name in "capsnet 1x$T" "capsnet ${T}x1" "capsnet ${T}x1-no-overlap"; do
    grep "^$name " "$work/rows" | sort -k3 -g -r | head -n 1 |
        awk -v n="$name" '{ printf "%-26s %12.1f %12.1f s\n", n, $(NF-1), $NF }'
done
if "$torch_py" -c "import torch, torch.distributed as d; assert d.is_available()" 2>/dev/null; then
    echo
    echo "PyTorch DistributedDataParallel (gloo), same network, global batch 100, 5 steps:"
    for r in $(seq "$rounds"); do
        "$torch_py" bench/torch_ddp.py --procs 1 --threads "$T" --steps 5
        "$torch_py" bench/torch_ddp.py --procs "$T" --threads 1 --steps 5
    done
else
    echo "(PyTorch with torch.distributed not found under $torch_py: its rows skipped)"
fi
