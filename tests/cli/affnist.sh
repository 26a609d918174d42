#!/bin/sh
# affnist.sh: the paper's affNIST experiment (section 5.2) through the program, at a small
# size. capsnet data --make-affnist writes an affNIST-like test set of 200 MNIST test digits as
# IDX test files only (MNIST's test labels in order, the same bytes for the same seed, the
# first images the same whatever --limit); a tiny network trains one epoch on MNIST placed on
# a 40x40 canvas and shifted by up to 6 pixels (--canvas 40 --shift 6) and is tested on that
# set and on plain MNIST centred on 40x40. Refusals: a canvas smaller than the images, a 40x40
# model given 28x28 images without --canvas (the hint names it), a resume with another canvas;
# the resume with the same canvas goes on.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-${CAPS_PROGRAM:-./capsnet}}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
aff="$work/affnist"
N=200

# ---- the test set
check "make-affnist: $N images" 0 "wrote .*/affnist[^:]*: $N affNIST-like test images \($N of .*'s 10000\), 40x40" -- \
    "$capsnet" data --make-affnist "$aff" --data "$data" --limit $N
assert "make-affnist: test files only" [ -f "$aff/t10k-images-idx3-ubyte.gz" ] && \
    [ ! -e "$aff/train-images-idx3-ubyte.gz" ]
check "make-affnist: IDX header ($N images of 40x40)" 0 "^ *00 00 08 03 00 00 00 c8 00 00 00 28 00 00 00 28$" -- \
    sh -c "gzip -dc '$aff/t10k-images-idx3-ubyte.gz' | head -c 16 | od -An -tx1"
gzip -dc "$data/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c $N > "$work/labels.want"
check "make-affnist: MNIST's test labels, in order" 0 "" -- \
    sh -c "gzip -dc '$aff/t10k-labels-idx1-ubyte.gz' | tail -c +9 | cmp - '$work/labels.want'"
"$capsnet" data --make-affnist "$work/again" --data "$data" --limit $N > /dev/null
"$capsnet" data --make-affnist "$work/half" --data "$data" --limit $((N / 2)) > /dev/null
"$capsnet" data --make-affnist "$work/seed2" --data "$data" --limit $N --seed 2 > /dev/null
gzip -dc "$aff/t10k-images-idx3-ubyte.gz" | tail -c +17 > "$work/aff.bytes"
check "make-affnist: same seed, same bytes" 0 "" -- \
    sh -c "gzip -dc '$work/again/t10k-images-idx3-ubyte.gz' | tail -c +17 | cmp - '$work/aff.bytes'"
check "make-affnist: the first images whatever --limit" 0 "" -- \
    sh -c "gzip -dc '$work/half/t10k-images-idx3-ubyte.gz' | tail -c +17 | cmp - '$work/aff.bytes' 2>&1 | grep -q EOF"
check "make-affnist: another seed, other bytes" 1 "" -- \
    sh -c "gzip -dc '$work/seed2/t10k-images-idx3-ubyte.gz' | tail -c +17 | cmp -s - '$work/aff.bytes'"
check "make-affnist: --size below the images refused" 2 "--size 20: the canvas must hold .* 28x28 test images \(expected --size 28 or more\)" -- \
    "$capsnet" data --make-affnist "$work/small" --data "$data" --size 20 --limit 10
check "data --check: the test split is 40x40" 1 "^test: $N images, 40x40 pixels" -- \
    "$capsnet" data --check "$aff"

# ---- a tiny network trained on MNIST placed at random on 40x40, tested on the set
flags="--limit 500 --test-limit 100 --epochs 1 --quiet $tiny"
check "train --canvas 40 --shift 6" 0 "test accuracy [0-9.]+% after 1 epoch" -- \
    "$capsnet" train --data "$data" --out "$work/m40.caps" --canvas 40 --shift 6 $flags
check "the network takes 40x40 images" 0 "image_size=40 " -- "$capsnet" info --model "$work/m40.caps"
check "test on the affNIST-like set" 0 "^accuracy [0-9.]+% \([0-9]+ / $N\)" -- \
    "$capsnet" test --model "$work/m40.caps" --data "$aff"
check "test on MNIST centred on 40x40 (--canvas 40)" 0 "^accuracy [0-9.]+% \([0-9]+ / 100\)" -- \
    "$capsnet" test --model "$work/m40.caps" --data "$data" --canvas 40 --limit 100
check "test on 28x28 without --canvas: the hint" 1 "hint: --canvas 40 places them" -- \
    "$capsnet" test --model "$work/m40.caps" --data "$data" --limit 100

# ---- refusals
check "train --canvas 20 refused" 2 "canvas: a 20x20 canvas is smaller than the 28x28 images \(expected a side of at least 28\)" -- \
    "$capsnet" train --data "$data" --out "$work/m20.caps" --canvas 20 $flags
assert "train --canvas 20: no model written" [ ! -e "$work/m20.caps" ]
check "test --canvas 20 refused" 2 "canvas: a 20x20 canvas is smaller" -- \
    "$capsnet" test --model "$work/m40.caps" --data "$data" --canvas 20
check "resume without --canvas refused, with the hint" 1 "hint: the model was trained on a canvas: --canvas 40" -- \
    "$capsnet" train --resume --out "$work/m40.caps" --data "$data" --epochs 2 --quiet
check "resume with another --canvas refused" 2 "--canvas 32 differs from the model saved in .*m40.caps \(40x40 images\)" -- \
    "$capsnet" train --resume --out "$work/m40.caps" --data "$data" --canvas 32 --epochs 2 --quiet
check "resume with --canvas 40" 0 "test accuracy [0-9.]+% after 2 epochs" -- \
    "$capsnet" train --resume --out "$work/m40.caps" --data "$data" --canvas 40 --epochs 2 \
    --test-limit 100 --quiet

summary
