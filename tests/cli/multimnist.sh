#!/bin/sh
# multimnist.sh: capsnet multimnist preview, the MultiMNIST pairs of the paper's section 6 as
# a grayscale PNG grid (no cairo: in every build). The grid's size follows from the count
# (36x36 tiles drawn twice as large, 2 pixels apart, 10 pairs a row; with --digits 4 pairs of
# three tiles); the same seed writes the same file, another seed another; one line a pair and
# the mean overlap are printed; usage errors exit 2, a missing data set or an unwritable
# output 1, naming the file.
# Then train, test and figure on a tiny network: the model takes 36x36 inputs and writes a
# log row an epoch; a run stopped and resumed ends as one run straight through; test scores
# pairs (JSON agrees with the log's last epoch on the same pairs); a plain MNIST model and a
# changed recipe on --resume are refused; figure draws 2 rows of tiles per 8 pairs.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-${CAPS_PROGRAM:-./capsnet}}
data=${CAPS_DATA:-data/mnist}

# png_size FILE: "W H" from the PNG's IHDR chunk (big-endian at bytes 16 and 20).
png_size() {
    od -An -tu1 -j16 -N8 "$1" |
        awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4,
                     (($5 * 256 + $6) * 256 + $7) * 256 + $8 }'
}

check "help" 0 "Subcommands:" -- "$capsnet" multimnist --help
check "preview help" 0 "Usage: capsnet multimnist preview" -- "$capsnet" multimnist preview --help
check "no subcommand" 2 "Usage: capsnet multimnist" -- "$capsnet" multimnist
check "unknown subcommand" 2 "unknown subcommand 'show'" -- "$capsnet" multimnist show
check "no --out" 2 "--out FILE.png is required" -- "$capsnet" multimnist preview --data "$data"
check "bad count" 2 "bad value '0' for --count" -- "$capsnet" multimnist preview --count 0 \
    --out "$work/x.png"
check "missing data" 1 "$work/nodata/t10k-images-idx3-ubyte.gz.*no such file" -- \
    "$capsnet" multimnist preview --data "$work/nodata" --out "$work/x.png"
check "unwritable output" 1 "$work/no/such/dir/x.png" -- \
    "$capsnet" multimnist preview --data "$data" --count 2 --out "$work/no/such/dir/x.png"

check "preview" 0 "mean overlap of 23 pairs: 0\.[0-9]+" -- \
    "$capsnet" multimnist preview --data "$data" --count 23 --out "$work/a.png"
save_output "$work/a.txt" \
    "$capsnet" multimnist preview --data "$data" --count 23 --out "$work/b.png"
# 10 pairs a row of (2 + 72) pixels, plus 2: 742 wide; 3 rows of 74, plus 2: 224 high.
assert "grid size" [ "$(png_size "$work/a.png")" = "742 224" ]
assert "same seed, same file" cmp -s "$work/a.png" "$work/b.png"
pair_line='^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9] +[0-9] +[01]\.[0-9]+$'
assert "one line a pair" [ "$(grep -cE "$pair_line" "$work/a.txt")" = 23 ]
assert "labels differ" [ "$(awk '/^ +[0-9]+ / && $4 == $5' "$work/a.txt" | wc -l)" = 0 ]
"$capsnet" multimnist preview --data "$data" --count 23 --seed 5 --out "$work/c.png" > /dev/null
assert "another seed, another file" [ "$(cmp -s "$work/a.png" "$work/c.png"; echo $?)" = 1 ]
"$capsnet" multimnist preview --data "$data" --count 5 --digits --out "$work/d.png" > /dev/null
# 4 pairs a row, 3 tiles each: 12 * 74 + 2 = 890 wide; 2 rows: 150 high.
assert "grid with digits" [ "$(png_size "$work/d.png")" = "890 150" ]

# ---- train, test, figure (a tiny network: seconds)
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
mm() { "$capsnet" multimnist train --data "$data" --pairs 300 --test-pairs 200 --threads 1 \
    --batch 50 --quiet $tiny "$@"; }
check "train help" 0 "Usage: capsnet multimnist train" -- "$capsnet" multimnist train --help
check "train" 0 "" -- mm --epochs 2 --out "$work/m.caps"
check "the model takes 36x36 pairs" 0 "image_size=36 .*routing_iters=3" -- \
    "$capsnet" info --model "$work/m.caps"
assert "a log row an epoch" [ "$(grep -cE '^[12],' "$work/m.csv")" = 2 ]
check "file exists" 1 "$work/m.caps: file exists" -- mm --epochs 2 --out "$work/m.caps"
check "resume with another recipe" 2 "--lr: a resumed run keeps the recipe" -- \
    "$capsnet" multimnist train --data "$data" --epochs 3 --out "$work/m.caps" --resume --lr 0.01
# One epoch, then a second by --resume: the same weights as two epochs straight through.
mm --epochs 1 --out "$work/r.caps" > /dev/null 2>&1
check "resume" 0 "" -- "$capsnet" multimnist train --data "$data" --epochs 2 --out "$work/r.caps" \
    --resume --quiet --test-pairs 200 --threads 1
check "resumed run ends where a straight run ends" 0 \
    "largest difference 0 of a tensor's largest weight, .* Adam steps 12 and 12" -- \
    "$capsnet" info --model "$work/m.caps" --compare "$work/r.caps"
check "nothing left to resume" 2 "has 2 epochs already" -- \
    "$capsnet" multimnist train --data "$data" --epochs 2 --out "$work/r.caps" --resume
save_output "$work/t.json" "$capsnet" multimnist test --model "$work/m.caps" --data "$data" \
    --pairs 200 --json --threads 1
acc=$(grep -oE '"accuracy": [0-9.]+' "$work/t.json" | awk '{ print $2 }')
last=$(awk -F, 'END { print $6 }' "$work/m.csv")
assert "test scores the pairs the log scored" [ "$(awk -v a="$acc" -v b="$last" \
    'BEGIN { print (a == b) }')" = 1 ]
check "test" 0 "both digits right \(the two longest capsules\): [0-9.]+%, error [0-9.]+%" -- \
    "$capsnet" multimnist test --model "$work/m.caps" --data "$data" --pairs 100 --threads 1
if [ -f "${caps_model:-}" ] || "$capsnet" train --data "$data" --limit 100 --epochs 1 --quiet \
    --test-limit 10 --threads 1 $tiny --out "$work/plain.caps" > /dev/null 2>&1; then
    check "a model of 28x28 images is refused" 1 "$work/plain.caps: takes 28x28 .* 36x36" -- \
        "$capsnet" multimnist test --model "$work/plain.caps" --data "$data" --pairs 10
fi
if "$capsnet" multimnist figure --help > /dev/null 2>&1 && \
    ! "$capsnet" multimnist figure --model "$work/m.caps" --data "$data" --count 1 \
        --out "$work/f1.png" 2>&1 | grep -q "not in this build"; then
    check "figure" 0 "wrote $work/f.png: 10 test pairs, [0-9]+ with both digits right" -- \
        "$capsnet" multimnist figure --model "$work/m.caps" --data "$data" --count 10 \
        --out "$work/f.png"
    assert "the figure is a PNG" [ "$(od -An -c -N4 "$work/f.png" | tr -d ' ')" = "211PNG" ]
else
    check "figure not in this build" 1 "not in this build" -- \
        "$capsnet" multimnist figure --model "$work/m.caps" --data "$data" --out "$work/f.png"
fi
summary
