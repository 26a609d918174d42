#!/bin/sh
# cli.sh: the capsnet program's interface: usage errors (exit 2), runtime errors (exit 1),
# train -> test -> predict on a tiny network, --json outputs, refusals, resume checks.
# Runs on MNIST (data/mnist, as `make test` fetches it) with a network small enough to
# train a few hundred images in seconds.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"

# ---- usage errors: exit 2, a message, a pointer to --help
check "no command" 2 "Usage: capsnet" -- "$capsnet"
check "unknown command" 2 "unknown command 'frobnicate'" -- "$capsnet" frobnicate
check "help" 0 "Commands:" -- "$capsnet" --help
for cmd in train test predict info bench; do
    check "$cmd --help" 0 "Usage: capsnet $cmd" -- "$capsnet" "$cmd" --help
done
# A program built without the picture libraries (make lib) says so.
if [ "${CAPS_FIGURES:-1}" = 0 ]; then
    for cmd in reconstruct perturb show report serve; do
        check "$cmd not built" 1 "$cmd: not in this build" -- "$capsnet" "$cmd" --help
    done
fi
check "unknown flag" 2 "unknown option '--bogus'" -- "$capsnet" train --bogus
check "bad integer" 2 "bad value 'ten' for --epochs" -- "$capsnet" train --epochs ten
check "integer out of range" 2 "bad value '0' for --batch" -- "$capsnet" train --batch 0
check "bad float" 2 "bad value 'nan' for --lr" -- "$capsnet" train --lr nan
check "missing value" 2 "option '--out' needs a value" -- "$capsnet" train --out
check "flag with value" 2 "takes no value" -- "$capsnet" train --resume=yes
check "bad --config key" 2 "unknown --config key 'wings'" -- "$capsnet" train --config wings=2
check "test without model" 2 "--model is required" -- "$capsnet" test
check "predict without files" 2 "no image files given" -- "$capsnet" predict --model x.caps
check "resume and overwrite" 2 "exclude each other" -- "$capsnet" train --resume --overwrite

# ---- runtime errors: exit 1, the file named
check "missing data" 1 "$work/nodata/train-images-idx3-ubyte.gz.*(No such file|no such file)" -- \
    "$capsnet" train --data "$work/nodata" --out "$work/x.caps"
check "missing model" 1 "$work/none.caps: cannot open" -- "$capsnet" test --model "$work/none.caps"
printf 'not a model' > "$work/junk.caps"
check "junk model" 1 "junk.caps: not a capsnet model file" -- "$capsnet" info --model "$work/junk.caps"
check "resume without model" 1 "cannot open" -- "$capsnet" train --resume --out "$work/none.caps"

# ---- the paper's network at full size, briefly: where make asan (which skips the end-to-end
# runs) sees every buffer of the MNIST network at its real length, forward and backward
check "train the full-size network on 100 images" 0 "test accuracy" -- "$capsnet" train \
    --data "$data" --out "$work/full.caps" --limit 100 --test-limit 100 --epochs 1 --quiet
check "test it" 0 "accuracy [0-9.]+% \([0-9]+ / 100\)" -- "$capsnet" test \
    --model "$work/full.caps" --data "$data" --limit 100

# ---- a tiny run: train, files, test, predict
model="$work/tiny.caps"
check "train tiny" 0 "test accuracy [0-9.]+% after 2 epochs" -- "$capsnet" train --data "$data" \
    --out "$model" --limit 600 --test-limit 200 --epochs 2 --batch 50 $tiny --seed 3
assert "model written" [ -s "$model" ]
assert "log written" [ -s "$work/tiny.csv" ]
assert "log has header and two epochs" [ "$(wc -l < "$work/tiny.csv")" -eq 3 ]
assert "no temporary files left" [ -z "$(ls "$work" | grep '\.tmp\.')" ]
check "log columns" 0 "^epoch,train_loss,.*test_accuracy" -- head -n 1 "$work/tiny.csv"
check "refuses to overwrite" 1 "file exists" -- "$capsnet" train --data "$data" --out "$model" $tiny
check "resume with other lr" 2 "--lr 0.01 differs" -- "$capsnet" train --data "$data" \
    --out "$model" --resume --lr 0.01
check "resume with other shapes" 2 "conv1_channels=32 differs" -- "$capsnet" train --data "$data" \
    --out "$model" --resume --config conv1_channels=32
check "resume with another decoder weight" 2 "--recon-weight 0.001 differs .*\(0.0005\)" -- \
    "$capsnet" train --data "$data" --out "$model" --resume --recon-weight 0.001
check "--no-recon with --recon-weight" 2 "exclude each other" -- "$capsnet" train --data "$data" \
    --out "$work/nr.caps" --no-recon --recon-weight 0.1
check "resume when done" 0 "nothing to do" -- "$capsnet" train --data "$data" --out "$model" \
    --resume --epochs 2
check "info" 0 "epochs done 2" -- "$capsnet" info --model "$model"
check "test text" 0 "confusion matrix" -- "$capsnet" test --model "$model" --data "$data" --limit 300
check "test json" 0 '^\{"model": .*"accuracy": [0-9.]+, "correct": [0-9]+, "total": 300, .*"per_class": \[\{"class": 0' \
    -- "$capsnet" test --model "$model" --data "$data" --limit 300 --json

# --per-image: every length at full precision; predict on the same digits written as PNG
# and PGM gives the same lengths to the last bit (one pixel scaling on every input path).
check "test --per-image csv" 0 "accuracy" -- "$capsnet" test --model "$model" --data "$data" \
    --limit 300 --per-image "$work/per_image.csv"
check "per-image header" 0 "^index,label,prediction,length_0,length_1,.*,length_9$" -- \
    head -n 1 "$work/per_image.csv"
assert "per-image: 300 rows" [ "$(wc -l < "$work/per_image.csv")" -eq 301 ]
check "test --per-image jsonl" 0 "accuracy" -- "$capsnet" test --model "$model" --data "$data" \
    --limit 300 --per-image "$work/per_image.jsonl"
check "per-image jsonl line" 0 '^\{"index": 299, "label": [0-9], "prediction": [0-9], "lengths": \[[0-9.e-]+(, [0-9.e-]+){9}\]\}$' -- \
    tail -n 1 "$work/per_image.jsonl"
check "per-image unwritable" 1 "nodir/p.csv" -- "$capsnet" test --model "$model" --data "$data" \
    --limit 10 --per-image "$work/nodir/p.csv"
# The rotation sweep: each row is `test --affine D,0` of the same seed; D = 0 is plain test.
sweep=$("$capsnet" test --model "$model" --data "$data" --limit 300 --rotations 0,30 --seed 4)
row() { printf '%s\n' "$sweep" | awk -v d="$1" '$1 == d { print $3 }'; }
plain=$("$capsnet" test --model "$model" --data "$data" --limit 300 | sed -nE 's/^accuracy [0-9.]+% \(([0-9]+) \/ ([0-9]+)\).*/\1\/\2/p')
rot=$("$capsnet" test --model "$model" --data "$data" --limit 300 --affine 30,0 --seed 4 | sed -nE 's/^accuracy [0-9.]+% \(([0-9]+) \/ ([0-9]+)\).*/\1\/\2/p')
assert "rotation sweep at 0 is the plain test ($(row 0) = $plain)" [ "$(row 0)" = "${plain:-none}" ]
assert "rotation sweep at 30 is --affine 30,0 ($(row 30) = $rot)" [ "$(row 30)" = "${rot:-none}" ]
check "rotation sweep json" 0 '"rotations": \[\{"max_degrees": 0, .*\{"max_degrees": 45, "accuracy": [0-9.]+, "correct": [0-9]+, "total": 300\}\]\}' \
    -- "$capsnet" test --model "$model" --data "$data" --limit 300 --rotations 0,45 --json
check "rotation sweep, bad angle" 2 "--rotations 10,200: expected" -- "$capsnet" test \
    --model "$model" --rotations 10,200
for i in 0 1 2; do pgm_from_idx "$data/t10k-images-idx3-ubyte.gz" $i "$work/digit$i.pgm"; done
# The first digit as an 8-bit gray PNG too (Python's zlib; PGM where there is no Python).
first="$work/digit0.pgm"
if command -v python3 > /dev/null 2>&1 && python3 - "$work/digit0.pgm" "$work/digit0.png" <<'EOF'
import struct, sys, zlib
raw = open(sys.argv[1], "rb").read()[-784:]
rows = b"".join(b"\0" + raw[y * 28:(y + 1) * 28] for y in range(28))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open(sys.argv[2], "wb").write(png)
EOF
then
    first="$work/digit0.png"
fi
"$capsnet" predict --model "$model" --json "$first" "$work/digit1.pgm" \
    "$work/digit2.pgm" 2>/dev/null | sed -E 's/.*"class": ([0-9]+), "lengths": \[(.*)\]\}/\1,\2/; s/, /,/g' \
    > "$work/predict.txt"
sed -n '2,4p' "$work/per_image.csv" | cut -d, -f3- > "$work/test3.txt"
assert "predict: three results of 11 fields" [ "$(awk -F, 'NF == 11' "$work/predict.txt" | wc -l)" -eq 3 ]
assert "predict and test give bit-identical lengths" cmp -s "$work/predict.txt" "$work/test3.txt"

# Same seed and thread count, same run: the weights and Adam moments of a second run are
# bit-identical (the log differs only in its timing columns).
model2="$work/tiny2.caps"
check "train tiny again" 0 "test accuracy" -- "$capsnet" train --data "$data" \
    --out "$model2" --limit 600 --test-limit 200 --epochs 2 --batch 50 $tiny --seed 3
params=$("$capsnet" info --model "$model" | sed -nE 's/^parameters ([0-9]+).*/\1/p')
check "same seed, same weights" 0 "" -- cmp -i 216 -n $((12 * params)) "$model" "$model2"
cut -d, -f1-6 "$work/tiny2.csv" > "$work/tiny2.csv.cut"
check "same seed, same log" 0 "" -- sh -c "cut -d, -f1-6 '$work/tiny.csv' | cmp - '$work/tiny2.csv.cut'"
check "another seed, other weights" 1 "differ" -- sh -c "'$capsnet' train --data '$data' \
    --out '$work/tiny3.caps' --limit 600 --test-limit 200 --epochs 1 --batch 50 $tiny --seed 4 \
    >/dev/null 2>&1; cmp -n 100000 '$model' '$work/tiny3.caps'"

# predict: a real MNIST digit as PGM, then broken inputs
pgm_from_idx "$data/t10k-images-idx3-ubyte.gz" 0 "$work/seven.pgm"
check "predict text" 0 "seven.pgm: class [0-9] \(length" -- "$capsnet" predict --model "$model" "$work/seven.pgm"
check "predict json" 0 '^\{"file": ".*seven.pgm", "class": [0-9], "lengths": \[([0-9.]+, ){9}[0-9.]+\]\}$' \
    -- "$capsnet" predict --model "$model" --json "$work/seven.pgm"
printf 'P5\n27 28\n255\n' > "$work/small.pgm"
head -c 756 /dev/zero >> "$work/small.pgm"
check "predict wrong size" 1 "small.pgm: wrong image size" -- "$capsnet" predict --model "$model" "$work/small.pgm"
printf '\377\330\377\340JFIF' > "$work/photo.jpg"
check "predict jpeg" 1 "photo.jpg: unsupported image format" -- "$capsnet" predict --model "$model" "$work/photo.jpg"
check "predict keeps going" 1 "seven.pgm: class" -- "$capsnet" predict --model "$model" "$work/photo.jpg" "$work/seven.pgm"

# bench: the keys other tools read, on the tiny network
check "bench json" 0 '"train_images_per_s": [0-9.]+, "infer_images_per_s": [0-9.]+, .*"gflops_per_s": [0-9.]+, .*"peak_fraction": [0-9.]+, .*"peak_rss_mb": [0-9.]+' \
    -- "$capsnet" bench --seconds 0.2 --batch 8 $tiny --json
check "bench text" 0 "layer \(ms/step\)" -- "$capsnet" bench --seconds 0.2 --batch 8 $tiny

# a damaged model: one flipped byte in the weights
cp "$model" "$work/bad.caps"
printf '\377' | dd of="$work/bad.caps" bs=1 seek=5000 conv=notrunc 2>/dev/null
check "damaged model" 1 "bad.caps: checksum mismatch" -- "$capsnet" test --model "$work/bad.caps" --data "$data"

summary
