#!/bin/sh
# experiments.sh: the paper's claims measured here, next to its numbers: routing and the
# decoder (Table 1), rotations, the affNIST-like test, small training sets, each for the
# capsule network and, where the program has it (train --arch), the baseline CNN.
#
#   scripts/experiments.sh [--budget tiny|small|full] [--out DIR] [--only SECTION,...]
#
# Writes DIR/EXPERIMENTS.md (DIR: experiments/) with every table, the command and seed of
# every row, parameters, epochs and time per epoch, and the figures beside it as PNG (the
# rotation sweep, the MultiMNIST pairs and Figure 5); docs/experiments/ publishes one run,
# with a reading of each table added by hand. Each section writes its own part (DIR/parts/) and EXPERIMENTS.md is put
# together from the parts, so --only reruns some sections and keeps the others' tables:
# ablation, cnn, rotations (needs ablation's and cnn's models), affnist, small, multimnist.
# Budgets:
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
only=ablation,cnn,rotations,affnist,small,multimnist
while [ $# -gt 0 ]; do
    case "$1" in
    --budget) budget=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "experiments.sh: unknown argument '$1' (expected --budget tiny|small|full, --out DIR, --only SECTIONS)" >&2; exit 2 ;;
    esac
done
capsnet=${CAPSNET:-./capsnet}
[ -x "$capsnet" ] || make
scripts/get-data.sh mnist data/mnist > /dev/null

tiny_caps="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
case "$budget" in
tiny) limit=300 epochs=1 test_limit=200 seeds="1 2" caps_cfg=$tiny_caps cnn_arch=cnn-small
      small_steps=10 canvas_epochs=1 mm_pairs=300 mm_epochs=1 mm_test=200 ;;
small) limit=10000 epochs=3 test_limit=0 seeds="1 2 3" caps_cfg="" cnn_arch=cnn-small
       small_steps=300 canvas_epochs=2 mm_pairs=10000 mm_epochs=3 mm_test=10000 ;;
full) limit=0 epochs=50 test_limit=0 seeds="1 2 3" caps_cfg="" cnn_arch=cnn
      small_steps=3000 canvas_epochs=50 mm_pairs=60000 mm_epochs=50 mm_test=10000 ;;
*) echo "experiments.sh: --budget $budget: expected tiny, small or full" >&2; exit 2 ;;
esac
have_cnn=0
"$capsnet" train --help 2>&1 | grep -q -- "--arch" && have_cnn=1
for sec in $(echo "$only" | tr , ' '); do
    case "$sec" in ablation | cnn | rotations | affnist | small | multimnist) ;;
    *) echo "experiments.sh: --only: unknown section '$sec' (expected ablation, cnn, rotations, affnist, small, multimnist)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out/models" "$out/data" "$out/parts"
md="$out/EXPERIMENTS.md"
log="$out/commands.log"
touch "$log"
# wanted SECTION: whether this run makes SECTION.
wanted() { case ",$only," in *,"$1",*) return 0 ;; *) return 1 ;; esac; }
# part N-NAME: starts a section's part; the rest of the section appends to it.
part=""
section() {
    part="$out/parts/$1.md"
    section_started=$(date +%s)
    echo "experiments.sh: $2" >&2
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) section $1, budget $budget" >> "$log"
    : > "$part"
}
# section_done: the section's measuring machine and time, at the end of its part.
section_done() {
    printf '\n_Measured %s on %s, %s cores, in %s min (budget `%s`)._\n' "$(date -u +%Y-%m-%d)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" \
        "$(( ($(date +%s) - section_started + 30) / 60 ))" "$budget" >> "$part"
}

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
    echo "Written by \`scripts/experiments.sh --budget $budget\`."
    echo "Budget \`$budget\`: training images $([ "$limit" -gt 0 ] && echo "the first $limit" || echo "all 60,000"), $epochs epoch(s), seeds $seeds; test images $([ "$test_limit" -gt 0 ] && echo "the first $test_limit" || echo "all 10,000")."
    echo "Every command is in \`commands.log\` beside this file; each section ends with the machine and the time it took."
    echo
} > "$out/parts/0-header.md"
caps_model="$out/models/r3-yes-s1.caps"
cnn_model="$out/models/cnn-s1.caps"

# ---- Table 1: routing iterations and the decoder
if wanted ablation; then
    section 1-ablation "routing and decoder ablation"
    {
        echo "## Routing and reconstruction (paper, Table 1)"
        echo
        echo "| routing | decoder | test error % (mean +- sd over seeds $seeds) | paper | s/epoch | command (seed S) |"
        echo "|---:|---|---:|---:|---:|---|"
    } >> "$part"
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
            echo "| $r | $dec | $(printf '%s\n' $errs | mean_sd) | $paper | $secs | \`capsnet train $common $caps_cfg --epochs $epochs $flags --seed S\` |" >> "$part"
        done
    done
    printf '\nParameters: %s (capsule network of this budget, with its decoder).\n' "$(params "$caps_model")" >> "$part"
    section_done
fi

# ---- the CNN on the same data
if wanted cnn; then
    section 2-cnn "baseline CNN ($cnn_arch)"
    echo "## The baseline CNN" >> "$part"
    if [ "$have_cnn" = 1 ]; then
        run "$capsnet" train $common --arch "$cnn_arch" --epochs "$epochs" --seed 1 --out "$cnn_model"
        printf '\nBaseline CNN `--arch %s` (%s parameters), same data, epochs and shifts: test error %s%% (paper'"'"'s CNN: 0.39%%), %s s/epoch. Command: `capsnet train %s --arch %s --epochs %s --seed 1`.\n' \
            "$cnn_arch" "$(params "$cnn_model")" "$(awk -v a="$(accuracy "$cnn_model")" 'BEGIN { printf "%.2f", 100 - a }')" \
            "$(per_epoch "$cnn_model")" "$common" "$cnn_arch" "$epochs" >> "$part"
    else
        printf '\nThe baseline CNN is not in this build of the program (no `train --arch`): its rows are missing below.\n' >> "$part"
    fi
    section_done
fi

# ---- rotations
if wanted rotations; then
    section 3-rotations "rotation sweep"
    for m in "$caps_model" "$cnn_model"; do
        [ -f "$m" ] || [ "$m" = "$cnn_model" -a "$have_cnn" = 0 ] || {
            echo "experiments.sh: rotations: $m is missing: run the ablation and cnn sections first" >&2
            exit 1
        }
    done
    {
        echo "## Rotations: accuracy against the largest rotation"
        echo
        echo "Test images rotated by a random angle within +-D degrees (\`capsnet test --rotations 0,15,30,45,60 --seed 1\`), models trained on unrotated digits (shifts of 2 px only): the capsule network of the ablation's \`--routing 3\`, seed 1, and the CNN above."
        echo
        echo "![accuracy against rotation](rotations.png)"
        echo
        echo "| D | capsule network | CNN ($cnn_arch) |"
        echo "|---:|---:|---:|"
    } >> "$part"
    sweep() { "$capsnet" test --model "$1" --rotations 0,15,30,45,60 --seed 1 --limit "$test_limit" --json |
        grep -oE '"max_degrees": [0-9.]+, "accuracy": [0-9.]+' | sed -E 's/.*: ([0-9.]+), .*: ([0-9.]+)/\1 \2/'; }
    sweep "$caps_model" > "$out/sweep-caps.txt"
    if [ -f "$cnn_model" ]; then sweep "$cnn_model" > "$out/sweep-cnn.txt"; else : > "$out/sweep-cnn.txt"; fi
    while read -r d a; do
        c=$(awk -v d="$d" '$1 == d { printf "%.2f%%", 100 * $2 }' "$out/sweep-cnn.txt")
        echo "| $d | $(awk -v a="$a" 'BEGIN { printf "%.2f%%", 100 * a }') | ${c:--} |" >> "$part"
    done < "$out/sweep-caps.txt"
    # The plot, where the program draws (make lib's has no cairo).
    points() { awk '{ printf "%s%s:%.2f", (NR > 1 ? "," : ""), $1, 100 * $2 }' "$1"; }
    series="capsule-network=$(points "$out/sweep-caps.txt")"
    [ -s "$out/sweep-cnn.txt" ] && series="$series $cnn_arch=$(points "$out/sweep-cnn.txt")"
    if "$capsnet" plot --help > /dev/null 2>&1; then
        run "$capsnet" plot --out "$out/rotations.png" --title "Test accuracy against the largest rotation" \
            --xlabel "largest rotation (degrees)" --ylabel "accuracy (%)" $series
    else
        echo "(This build of the program draws no charts: no rotations.png.)" >> "$part"
    fi
    section_done
fi

# ---- affNIST-like
if wanted affnist; then
    section 4-affnist "affNIST-like test"
    run "$capsnet" data --make-affnist "$out/data/affnist" --data data/mnist --seed 1
    m40="$out/models/caps40.caps"
    run "$capsnet" train $common $caps_cfg --canvas 40 --shift 6 --epochs "$canvas_epochs" --seed 1 --out "$m40"
    {
        echo "## affNIST-like: trained on MNIST placed at random on 40x40, tested on affine-transformed digits"
        echo
        echo "| network | MNIST on 40x40 | affNIST-like | paper (affNIST) | command |"
        echo "|---|---:|---:|---:|---|"
        echo "| capsule network | $(accuracy "$m40" --data data/mnist --canvas 40)% | $(accuracy "$m40" --data "$out/data/affnist")% | 79% | \`capsnet train $common $caps_cfg --canvas 40 --shift 6 --epochs $canvas_epochs --seed 1\` |"
    } >> "$part"
    if [ "$have_cnn" = 1 ]; then
        c40="$out/models/cnn40.caps"
        run "$capsnet" train $common --arch "$cnn_arch" --canvas 40 --shift 6 --epochs "$canvas_epochs" --seed 1 --out "$c40"
        echo "| CNN ($cnn_arch) | $(accuracy "$c40" --data data/mnist --canvas 40)% | $(accuracy "$c40" --data "$out/data/affnist")% | 66% | \`capsnet train $common --arch $cnn_arch --canvas 40 --shift 6 --epochs $canvas_epochs --seed 1\` |" >> "$part"
    fi
    section_done
fi

# ---- small training sets, the same number of steps
if wanted small; then
    section 5-small "small training sets"
    {
        echo "## Small training sets: the first N images of each class, $small_steps steps of 100 images (or one epoch, if more)"
        echo
        echo "| training images | capsule network | CNN ($cnn_arch) | command (capsule network; the CNN adds \`--arch $cnn_arch\`) |"
        echo "|---:|---:|---:|---|"
    } >> "$part"
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
            row="$row | $(accuracy "$out/models/small-cnn$per.caps")%"
        else
            row="$row | -"
        fi
        echo "$row | \`capsnet train $sub $caps_cfg\` |" >> "$part"
    done
    section_done
fi

# ---- MultiMNIST
if wanted multimnist; then
    section 6-multimnist "MultiMNIST"
    run "$capsnet" multimnist preview --out "$out/multimnist.png" --count 24 --digits
    mm="$out/models/multimnist.caps"
    mm_train="--data data/mnist --pairs $mm_pairs --epochs $mm_epochs --test-pairs 1000 --seed 1 $caps_cfg"
    run "$capsnet" multimnist train $mm_train --quiet --overwrite --out "$mm"
    json=$("$capsnet" multimnist test --model "$mm" --pairs "$mm_test" --json)
    field() { echo "$json" | grep -oE "\"$1\": [0-9.]+" | awk '{ print $2 }'; }
    echo "\$ capsnet multimnist test --model $mm --pairs $mm_test --json" >> "$log"
    echo "$json" >> "$log"
    {
        echo "## MultiMNIST: two overlapping digits (section 6)"
        echo
        echo "The pairs (\`capsnet multimnist preview\`; each pair, then its two digits alone): ![MultiMNIST inputs](multimnist.png)"
        echo
        echo "| network | test pairs | both digits right | error | paper's error | longest capsule a label | parameters | s/epoch | command |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        echo "| capsule network, R=3 | $(field pairs) | $(awk -v a="$(field accuracy)" 'BEGIN { printf "%.2f%%", 100 * a }') | $(awk -v a="$(field error)" 'BEGIN { printf "%.2f%%", 100 * a }') | 5.2% | $(awk -v a="$(field longest_is_a_label)" 'BEGIN { printf "%.2f%%", 100 * a }') | $(params "$mm") | $(per_epoch "$mm") | \`capsnet multimnist train $mm_train\` |"
        echo
        echo "$mm_epochs epoch(s) of $mm_pairs pairs made on the fly (the paper: 60M pairs); scored on the fixed test pairs as the paper scores: both labels must be the two longest capsules. The baseline CNN has no MultiMNIST row: it has one softmax over the classes, not two present labels."
    } >> "$part"
    if run "$capsnet" multimnist figure --model "$mm" --count 16 --out "$out/multimnist-figure.png"; then
        printf '\nThe paper'"'"'s Figure 5 (`capsnet multimnist figure`): inputs above, the reconstructions from the two longest capsules below, red and green; a red frame marks a pair scored wrong. ![MultiMNIST reconstructions](multimnist-figure.png)\n' >> "$part"
    fi
    section_done
fi

# EXPERIMENTS.md: the parts in order, each section's table as its last run left it.
for p in "$out"/parts/*.md; do
    cat "$p"
    echo
done > "$md.tmp" && mv "$md.tmp" "$md"
echo "experiments.sh: wrote $md" >&2
