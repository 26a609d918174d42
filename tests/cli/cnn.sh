#!/bin/sh
# cnn.sh: capsnet train --arch cnn on the program, at a tiny shape (--cnn-config) on 500
# MNIST images: it trains and logs; test reads its file and agrees with the log and with
# predict; info says which CNN it is; the capsule-only commands refuse its file and the CNN
# paths refuse a capsule file, each saying what the file is; a run stopped by SIGINT and
# resumed ends bit-identical to one never stopped.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
tiny="--arch cnn --cnn-config conv1_channels=8,conv2_channels=8,conv3_channels=4,fc1=32,fc2=16"
run="--data $data --limit 500 --test-limit 200 --batch 25 --epochs 2 --seed 3 --lr 0.003 --threads 1 $tiny --quiet"
cnn="$work/tiny.cnn"

check "train --arch cnn" 0 "test accuracy [0-9.]+% after 2 epochs \(baseline CNN cnn-custom\)" -- \
    "$capsnet" train $run --out "$cnn"
assert "the log beside the model" [ -f "$work/tiny.csv" ]
check "the log has the capsule network's columns" 0 "^epoch,train_loss,train_margin_loss,train_recon_loss,test_loss,test_accuracy" -- \
    head -n 1 "$work/tiny.csv"
check "info names the architecture" 0 "baseline CNN model file \(arch cnn-custom\), checksum ok" -- \
    "$capsnet" info --model "$cnn"
check "info shows the configuration" 0 "conv1_channels=8 conv2_channels=8 conv3_channels=4 kernel=5 fc1=32 fc2=16 num_classes=10 dropout=0.5" -- \
    "$capsnet" info --model "$cnn"

# test on the same 200 images gives the log's last accuracy
logged=$(tail -n 1 "$work/tiny.csv" | cut -d, -f6 | awk '{ printf "%.2f", 100 * $1 }')
check "test equals the log's last accuracy" 0 "^accuracy $logged% \(" -- \
    "$capsnet" test --model "$cnn" --data "$data" --limit 200
check "test says which network ran" 0 "baseline CNN cnn-custom, 103702 parameters" -- \
    "$capsnet" test --model "$cnn" --data "$data" --limit 50
check "test --json names the arch" 0 '"arch": "cnn-custom"' -- \
    "$capsnet" test --model "$cnn" --data "$data" --limit 50 --json
check "test --rotations on a CNN" 0 "^ +30 " -- \
    "$capsnet" test --model "$cnn" --data "$data" --limit 50 --rotations 0,30

# predict agrees with test --per-image on test image 0
pgm_from_idx "$data/t10k-images-idx3-ubyte.gz" 0 "$work/d0.pgm"
"$capsnet" test --model "$cnn" --data "$data" --limit 1 --per-image "$work/per.csv" > /dev/null
pred=$(sed -n 2p "$work/per.csv" | cut -d, -f3)
check "per-image columns are probabilities" 0 "probability_9" -- head -n 1 "$work/per.csv"
check "predict agrees with test --per-image" 0 "d0.pgm: class $pred \(probability" -- \
    "$capsnet" predict --model "$cnn" "$work/d0.pgm"
check "predict --json gives probabilities" 0 "\"class\": $pred, \"probabilities\": \[" -- \
    "$capsnet" predict --json --model "$cnn" "$work/d0.pgm"

# each network's commands refuse the other's file
msg="a baseline CNN model \(capsnet train --arch cnn\), not a capsule network"
check "export refuses a CNN" 1 "$msg" -- "$capsnet" export --model "$cnn" --format onnx --out "$work/x.onnx"
if "$capsnet" report --help > /dev/null 2>&1; then # a build with FIGURES (not make lib)
    check "reconstruct refuses a CNN" 1 "$msg" -- "$capsnet" reconstruct --model "$cnn" --data "$data" --out "$work/r.png"
    check "perturb refuses a CNN" 1 "$msg" -- "$capsnet" perturb --model "$cnn" --data "$data" --out "$work/p.png"
    check "report refuses a CNN" 1 "$msg" -- "$capsnet" report --model "$cnn" --data "$data" --out "$work/rep"
    check "serve refuses a CNN" 1 "$msg" -- "$capsnet" serve --model "$cnn" --data "$data" --port 0
fi
check "test --device cuda refuses a CNN" 2 "runs on the CPU only" -- \
    "$capsnet" test --model "$cnn" --data "$data" --device cuda
caps="$work/tiny.caps"
check "a tiny capsule network trains" 0 "" -- "$capsnet" train --data "$data" --limit 100 \
    --test-limit 50 --epochs 1 --quiet --out "$caps" \
    --config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64
check "test still reads a capsule file" 0 "reconstruction" -- \
    "$capsnet" test --model "$caps" --data "$data" --limit 50
check "resume --arch cnn refuses a capsule file" 2 "is a capsule network model" -- \
    "$capsnet" train --arch cnn --resume --out "$caps" --data "$data"
check "resume --arch capsnet refuses a CNN file" 2 "is a baseline CNN model" -- \
    "$capsnet" train --arch capsnet --resume --out "$cnn" --data "$data"
check "capsule-only flags refused for the CNN" 2 "--routing is for the capsule network" -- \
    "$capsnet" train $run --routing 2 --out "$work/x.cnn"
check "info --compare refuses a capsule file against a CNN" 1 "another network" -- \
    "$capsnet" info --model "$cnn" --compare "$caps"

# --canvas (the affNIST experiment's training) works for the CNN too
check "train --arch cnn --canvas 32" 0 "after 1 epoch" -- "$capsnet" train $run --epochs 1 \
    --limit 100 --test-limit 50 --canvas 32 --shift 4 --out "$work/canvas.cnn"
check "info: 32x32 images" 0 "image_size=32" -- "$capsnet" info --model "$work/canvas.cnn"
check "test --canvas 32" 0 "^accuracy " -- "$capsnet" test --model "$work/canvas.cnn" \
    --data "$data" --limit 50 --canvas 32
check "resume --canvas other than the file's refused" 2 "--canvas 36 differs" -- \
    "$capsnet" train --resume --canvas 36 --data "$data" --out "$work/canvas.cnn"

check "bench --arch cnn" 0 "^training: +[0-9.]+ images/s" -- "$capsnet" bench $tiny --threads 1 \
    --batch 10 --seconds 0.1
check "bench --arch cnn --json" 0 '"arch": "cnn-custom", "parameters": 103702' -- \
    "$capsnet" bench $tiny --threads 1 --batch 10 --seconds 0.1 --json

# a damaged CNN file is refused naming it
cp "$cnn" "$work/bad.cnn"
printf 'X' | dd of="$work/bad.cnn" bs=1 seek=300 conv=notrunc 2>/dev/null
check "a damaged CNN file is refused" 1 "bad.cnn: checksum mismatch" -- \
    "$capsnet" test --model "$work/bad.cnn" --data "$data"

# SIGINT mid-epoch, then --resume: the same bits as the straight run
stopped=0
for wait in 0.6 0.4 0.9 0.3 1.2; do
    rm -f "$work/stop.cnn" "$work/stop.csv"
    "$capsnet" train $run --limit 1500 --out "$work/stop.cnn" > "$work/stop.out" 2>&1 &
    pid=$!
    sleep "$wait"
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    if [ $? -eq 130 ] && "$capsnet" info --model "$work/stop.cnn" | grep -q "batch [1-9][0-9]* of the next"; then
        stopped=1
        break
    fi
done
assert "SIGINT stops the CNN mid-epoch with status 130" [ "$stopped" -eq 1 ]
check "the message says how to resume" 0 "resume with: capsnet train --resume --out $work/stop.cnn" -- cat "$work/stop.out"
check "resume" 0 "" -- "$capsnet" train $run --limit 1500 --out "$work/stop.cnn" --resume
check "straight run" 0 "" -- "$capsnet" train $run --limit 1500 --out "$work/straight.cnn"
n=$("$capsnet" info --model "$work/straight.cnn" | sed -nE 's/^parameters ([0-9]+).*/\1/p')
check "resumed run bit-identical to the straight one" 0 "" -- \
    cmp -i 184 -n $((12 * n)) "$work/straight.cnn" "$work/stop.cnn"
check "same log, timings aside" 0 "" -- sh -c \
    "cut -d, -f1-6 '$work/straight.csv' > '$work/a' && cut -d, -f1-6 '$work/stop.csv' > '$work/b' && cmp '$work/a' '$work/b'"

summary
