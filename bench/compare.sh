#!/bin/sh
# compare.sh: capsnet against the same network in PyTorch, on this machine, in one run.
#   bench/compare.sh [THREADS] [SECONDS]      (defaults: 2 threads, 10 s per measurement)
# Runs `capsnet bench` and bench/torch_capsnet.py alternately (ROUNDS times each, the best
# round counts), then prints a table: training images/s at batch 100 and 20, inference
# images/s at batch 100, latency at batch 1, peak memory while training at batch 100, and
# the ratios; and capsnet's speed-up from 1 to THREADS threads. PyTorch comes from
# Debian's python3-torch under /usr/bin/python3 (or $TORCH_PYTHON); without it, only
# capsnet is measured.
set -eu
cd "$(dirname "$0")/.."
threads=${1:-2}
seconds=${2:-10}
rounds=${ROUNDS:-2}
capsnet=${CAPSNET:-./capsnet}
torch_py=${TORCH_PYTHON:-/usr/bin/python3}
[ -x "$capsnet" ] || make
have_torch=1
if ! "$torch_py" -c "import torch" 2>/dev/null; then
    have_torch=0
    echo "compare.sh: PyTorch not found ($torch_py -c 'import torch' failed): measuring capsnet only." >&2
    echo "compare.sh: on Debian: apt-get install python3-torch" >&2
fi

# get KEY JSON: the number after "KEY": in a one-line JSON object.
get() { printf '%s\n' "$2" | grep -oE "\"$1\": [0-9.e+-]+" | head -n 1 | sed 's/.*: //'; }
# best A B MODE: the larger (MODE=max) or smaller (MODE=min) of two numbers, A may be empty.
best() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { if (a == "") print b; else if (m == "max") print (a > b ? a : b); else print (a < b ? a : b) }'; }

c_t100= c_i100= c_rss= c_t20= c_lat= t_t100= t_i100= t_rss= t_t20= t_lat= c_one= c_peak= c_frac= c_gf=
for r in $(seq "$rounds"); do
    echo "round $r/$rounds: capsnet batch 100" >&2
    j=$("$capsnet" bench --threads "$threads" --batch 100 --seconds "$seconds" --json)
    c_t100=$(best "$c_t100" "$(get train_images_per_s "$j")" max)
    c_i100=$(best "$c_i100" "$(get infer_images_per_s "$j")" max)
    c_rss=$(best "$c_rss" "$(get peak_rss_mb "$j")" min)
    c_gf=$(best "$c_gf" "$(get gflops_per_s "$j")" max)
    c_frac=$(best "$c_frac" "$(get peak_fraction "$j")" max)
    c_peak=$(get matmul_peak_gflops_per_s "$j")
    backend=$(printf '%s\n' "$j" | sed -E 's/.*"backend": "([^"]*)".*/\1/')
    echo "round $r/$rounds: capsnet batch 20, latency" >&2
    j=$("$capsnet" bench --threads "$threads" --batch 20 --infer-batch 1 --seconds "$seconds" --json)
    c_t20=$(best "$c_t20" "$(get train_images_per_s "$j")" max)
    c_lat=$(best "$c_lat" "$(get infer_batch_ms "$j")" min)
    if [ "$have_torch" = 1 ]; then
        echo "round $r/$rounds: pytorch batch 100" >&2
        j=$("$torch_py" bench/torch_capsnet.py --threads "$threads" --batch 100 --seconds "$seconds")
        t_t100=$(best "$t_t100" "$(get train_images_per_s "$j")" max)
        t_i100=$(best "$t_i100" "$(get infer_images_per_s "$j")" max)
        t_rss=$(best "$t_rss" "$(get peak_rss_mb "$j")" min)
        tbackend=$(printf '%s\n' "$j" | sed -E 's/.*"backend": "([^"]*)".*/\1/')
        echo "round $r/$rounds: pytorch batch 20, latency" >&2
        j=$("$torch_py" bench/torch_capsnet.py --threads "$threads" --batch 20 --infer-batch 1 --seconds "$seconds")
        t_t20=$(best "$t_t20" "$(get train_images_per_s "$j")" max)
        t_lat=$(best "$t_lat" "$(get infer_batch_ms "$j")" min)
    fi
done
echo "capsnet, 1 thread, batch 100" >&2
j=$("$capsnet" bench --threads 1 --batch 100 --seconds "$seconds" --json)
c_one=$(get train_images_per_s "$j")

echo
echo "$(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $threads threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "capsnet: $backend; matrix-product peak measured: $c_peak GFLOP/s"
[ "$have_torch" = 1 ] && echo "PyTorch: $tbackend"
echo
row() { # name ours theirs higher-is-better(1/0)
    if [ "$have_torch" = 1 ]; then
        awk -v n="$1" -v a="$2" -v b="$3" -v h="$4" 'BEGIN { r = h ? a / b : b / a; printf "| %-34s | %10.1f | %10.1f | %5.2fx |\n", n, a, b, r }'
    else
        awk -v n="$1" -v a="$2" 'BEGIN { printf "| %-34s | %10.1f |        n/a |   n/a |\n", n, a }'
    fi
}
echo "| measure                            |    capsnet |    PyTorch | ratio |"
echo "| ---------------------------------- | ---------: | ---------: | ----: |"
row "training images/s, batch 100" "$c_t100" "$t_t100" 1
row "training images/s, batch 20" "$c_t20" "$t_t20" 1
row "inference images/s, batch 100" "$c_i100" "$t_i100" 1
row "inference latency ms, batch 1" "$c_lat" "$t_lat" 0
row "peak RSS MB, training batch 100" "$c_rss" "$t_rss" 0
echo
awk -v a="$c_t100" -v b="$c_one" -v t="$threads" 'BEGIN { printf "capsnet training, batch 100: %.1f images/s on 1 thread, %.1f on %d: %.2fx\n", b, a, t, a / b }'
awk -v g="$c_gf" -v f="$c_frac" 'BEGIN { printf "capsnet training step: %.1f GFLOP/s, %.1f%% of the measured matrix-product peak\n", g, 100 * f }'
echo "(ratios: images/s ours/theirs; latency and memory theirs/ours: above 1 means capsnet is better)"
