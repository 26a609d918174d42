#!/bin/sh
# experiments.sh: the paper's claims measured here, next to its numbers: routing and the
# decoder (Table 1), rotations, the affNIST-like test, small training sets, each for the
# capsule network and, where the program has it (train --arch), the baseline CNN.
#
#   scripts/experiments.sh [--budget tiny|small|full] [--out DIR]
#
# Writes DIR/EXPERIMENTS.md (DIR: experiments/) with every table, the command and seed of
# every row, parameters, epochs and time per epoch, and the figures beside it (the rotation
# sweep as SVG data rows; the MultiMNIST inputs as PNG); copy it to the top of the project to
# publish it. Budgets:
#   tiny   a smoke run (CI): tiny networks, 300 images, one epoch, two seeds; minutes
#   small  what a 2-core machine runs in about 2 hours: the paper's capsule network on the
#          first 10,000 MNIST images for 3 epochs, three seeds, the CNN of the capsule
#          network's cost (cnn-small); the numbers say what holds at this size, not the paper's
#   full   the paper's sizes: all 60,000 images, 50 epochs, the paper's CNN; for a machine
#          with many cores or a GPU (--device cuda where built), days on 2 cores
# Every run is seeded; the same budget and seeds give the same tables (timings aside).
set -eu
cd "$(dirname "$0")/.."
budget=small
out=experiments
while [ $# -gt 0 ]; do
    case "$1" in
    --budget) budget=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "experiments.sh: unknown argument '$1' (expected --budget tiny|small|full, --out DIR)" >&2; exit 2 ;;
    esac
done
capsnet=${CAPSNET:-./capsnet}
[ -x "$capsnet" ] || make
scripts/get-data.sh mnist data/mnist > /dev/null

tiny_caps="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
case "$budget" in
tiny) limit=300 epochs=1 test_limit=200 seeds="1 2" caps_cfg=$tiny_caps cnn_arch=cnn-small
      small_steps=10 canvas_epochs=1 ;;
small) limit=10000 epochs=3 test_limit=0 seeds="1 2 3" caps_cfg="" cnn_arch=cnn-small
       small_steps=300 canvas_epochs=2 ;;
full) limit=0 epochs=50 test_limit=0 seeds="1 2 3" caps_cfg="" cnn_arch=cnn
      small_steps=3000 canvas_epochs=50 ;;
*) echo "experiments.sh: --budget $budget: expected tiny, small or full" >&2; exit 2 ;;
esac
have_cnn=0
"$capsnet" train --help 2>&1 | grep -q -- "--arch" && have_cnn=1
mkdir -p "$out/models" "$out/data"
md="$out/EXPERIMENTS.md"
log="$out/commands.log"
: > "$log"
started=$(date +%s)

# run CMD...: runs and records a command (and its output, in the log).
run() {
    echo "\$ $*" >> "$log"
    "$@" >> "$log" 2>&1
}
common="--data data/mnist --quiet --overwrite --test-limit $test_limit"
[ "$limit" -gt 0 ] && common="$common --limit $limit"
# accuracy MODEL [ARGS]: test accuracy in percent (2 decimals) of MODEL on the test set.
accuracy() {
    m=$1
    shift
    "$capsnet" test --model "$m" --json --limit "$test_limit" "$@" |
        grep -oE '"accuracy": [0-9.]+' | head -n 1 | awk '{ printf "%.2f", 100 * $2 }'
}
# per_epoch MODEL: mean training seconds per epoch, from the log beside MODEL.
per_epoch() { awk -F, 'NR > 1 { s += $7; n++ } END { if (n) printf "%.0f", s / n }' "${1%.caps}.csv"; }
params() { "$capsnet" info --model "$1" | sed -nE 's/^parameters ([0-9]+).*/\1/p'; }
mean_sd() { # numbers on stdin: "mean +- sd"
    awk '{ x[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) v += (x[i] - m)^2;
        printf "%.2f +- %.2f", m, (NR > 1 ? sqrt(v / (NR - 1)) : 0) }'
}

{
    echo "# Experiments: the paper's claims, measured here"
    echo
    echo "Written by \`scripts/experiments.sh --budget $budget\` on $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores."
    echo "Budget \`$budget\`: training images $([ "$limit" -gt 0 ] && echo "the first $limit" || echo "all 60,000"), $epochs epoch(s), seeds $seeds; test images $([ "$test_limit" -gt 0 ] && echo "the first $test_limit" || echo "all 10,000")."
    echo "Every command is in \`commands.log\` beside this file."
    echo
} > "$md"

# ---- Table 1: routing iterations and the decoder
echo "experiments.sh: routing and decoder ablation" >&2
{
    echo "## Routing and reconstruction (paper, Table 1)"
    echo
    echo "| routing | decoder | test error % (mean +- sd over seeds $seeds) | paper | s/epoch | command (seed S) |"
    echo "|---:|---|---:|---:|---:|---|"
} >> "$md"
for r in 1 3; do
    for dec in yes no; do
        flags="--routing $r"
        [ "$dec" = no ] && flags="$flags --no-recon"
        errs="" secs=""
        for s in $seeds; do
            m="$out/models/r$r-$dec-s$s.caps"
            run "$capsnet" train $common $caps_cfg --epochs "$epochs" $flags --seed "$s" --out "$m"
            a=$(accuracy "$m")
            errs="$errs $(awk -v a="$a" 'BEGIN { printf "%.2f", 100 - a }')"
            secs=$(per_epoch "$m")
        done
        case "$r$dec" in 1yes) paper=0.29 ;; 1no) paper=0.34 ;; 3yes) paper=0.25 ;; *) paper=0.35 ;; esac
        echo "| $r | $dec | $(printf '%s\n' $errs | mean_sd) | $paper | $secs | \`capsnet train $common $caps_cfg --epochs $epochs $flags --seed S\` |" >> "$md"
    done
done
caps_model="$out/models/r3-yes-s1.caps"
echo >> "$md"
echo "Parameters: $(params "$caps_model") (capsule network of this budget, with its decoder)." >> "$md"

# ---- the CNN on the same data
cnn_model=""
if [ "$have_cnn" = 1 ]; then
    echo "experiments.sh: baseline CNN ($cnn_arch)" >&2
    cnn_model="$out/models/cnn-s1.caps"
    run "$capsnet" train $common --arch "$cnn_arch" --epochs "$epochs" --seed 1 --out "$cnn_model"
    {
        echo
        echo "Baseline CNN \`--arch $cnn_arch\` ($(params "$cnn_model") parameters), same data, epochs and shifts: test error $(awk -v a="$(accuracy "$cnn_model")" 'BEGIN { printf "%.2f", 100 - a }')% (paper's CNN: 0.39%), $(per_epoch "$cnn_model") s/epoch."
    } >> "$md"
else
    printf '\nThe baseline CNN is not in this build of the program (no `train --arch`): its rows are missing below.\n' >> "$md"
fi

# ---- rotations
echo "experiments.sh: rotation sweep" >&2
{
    echo
    echo "## Rotations: accuracy against the largest rotation"
    echo
    echo "Test images rotated by a random angle within +-D degrees (\`capsnet test --rotations 0,15,30,45,60 --seed 1\`), models trained on unrotated digits (shifts of 2 px only)."
    echo
    echo "| D | capsule network | CNN ($cnn_arch) |"
    echo "|---:|---:|---:|"
} >> "$md"
sweep() { "$capsnet" test --model "$1" --rotations 0,15,30,45,60 --seed 1 --limit "$test_limit" --json |
    grep -oE '"max_degrees": [0-9.]+, "accuracy": [0-9.]+' | sed -E 's/.*: ([0-9.]+), .*: ([0-9.]+)/\1 \2/'; }
sweep "$caps_model" > "$out/sweep-caps.txt"
if [ -n "$cnn_model" ]; then sweep "$cnn_model" > "$out/sweep-cnn.txt"; else : > "$out/sweep-cnn.txt"; fi
while read -r d a; do
    c=$(awk -v d="$d" '$1 == d { printf "%.2f%%", 100 * $2 }' "$out/sweep-cnn.txt")
    echo "| $d | $(awk -v a="$a" 'BEGIN { printf "%.2f%%", 100 * a }') | ${c:--} |" >> "$md"
done < "$out/sweep-caps.txt"

# ---- affNIST-like
echo "experiments.sh: affNIST-like test" >&2
run "$capsnet" data --make-affnist "$out/data/affnist" --data data/mnist --seed 1
m40="$out/models/caps40.caps"
run "$capsnet" train $common $caps_cfg --canvas 40 --shift 6 --epochs "$canvas_epochs" --seed 1 --out "$m40"
{
    echo
    echo "## affNIST-like: trained on MNIST placed at random on 40x40, tested on affine-transformed digits"
    echo
    echo "| network | MNIST on 40x40 | affNIST-like | paper (affNIST) | command |"
    echo "|---|---:|---:|---:|---|"
    echo "| capsule network | $(accuracy "$m40" --data data/mnist --canvas 40)% | $(accuracy "$m40" --data "$out/data/affnist")% | 79% | \`capsnet train $common $caps_cfg --canvas 40 --shift 6 --epochs $canvas_epochs --seed 1\` |"
} >> "$md"
if [ -n "$cnn_model" ]; then
    c40="$out/models/cnn40.caps"
    run "$capsnet" train $common --arch "$cnn_arch" --canvas 40 --shift 6 --epochs "$canvas_epochs" --seed 1 --out "$c40"
    echo "| CNN ($cnn_arch) | $(accuracy "$c40" --data data/mnist --canvas 40)% | $(accuracy "$c40" --data "$out/data/affnist")% | 66% | \`capsnet train $common --arch $cnn_arch --canvas 40 --shift 6 --epochs $canvas_epochs --seed 1\` |" >> "$md"
fi

# ---- small training sets, the same number of steps
echo "experiments.sh: small training sets" >&2
{
    echo
    echo "## Small training sets: the first N images of each class, $small_steps steps of 100 images (or one epoch, if more)"
    echo
    echo "| training images | capsule network | CNN ($cnn_arch) |"
    echo "|---:|---:|---:|"
} >> "$md"
for per in 10 100 1000; do
    n=$((per * 10))
    run "$capsnet" data --make-subset "$out/data/sub$per" --per-class "$per" --data data/mnist
    ep=$(( (small_steps * 100 + n - 1) / n ))
    # Each epoch tests 100 images only (a progress check); the table's number is the whole
    # test set's, measured once at the end.
    sub="--data $out/data/sub$per --quiet --overwrite --test-limit 100 --epochs $ep --seed 1"
    run "$capsnet" train $sub $caps_cfg --out "$out/models/small$per.caps"
    row="| $n | $(accuracy "$out/models/small$per.caps")%"
    if [ "$have_cnn" = 1 ]; then
        run "$capsnet" train $sub --arch "$cnn_arch" --out "$out/models/small-cnn$per.caps"
        row="$row | $(accuracy "$out/models/small-cnn$per.caps")% |"
    else
        row="$row | - |"
    fi
    echo "$row" >> "$md"
done

# ---- MultiMNIST
run "$capsnet" multimnist preview --out "$out/multimnist.png" --count 24 --digits
{
    echo
    echo "## MultiMNIST"
    echo
    echo "The pairs of section 6 (\`capsnet multimnist preview\`): ![MultiMNIST inputs](multimnist.png)."
    echo "Training and scoring on them (two present classes in the margin loss, one reconstruction per digit) is not in the program yet: no MultiMNIST accuracy here."
    echo
    echo "Total time: $(( ($(date +%s) - started) / 60 )) min."
} >> "$md"
echo "experiments.sh: wrote $md" >&2
