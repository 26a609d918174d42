#!/bin/sh
# onnx_runtime.sh: a model exported to ONNX by python/capsnet_torch.py (directly, and through
# capsnet export --format onnx) runs in ONNX Runtime
# (Node's onnxruntime-node, tests/onnx/check_onnx.mjs) with the capsule lengths (<= 1e-5)
# and predictions of capsnet test --per-image, with batches of 1 and of 100 images:
# - without training: a fresh network of another shape (16x16 images of 3 channels,
#   4 classes, stride-1 PrimaryCaps, 2 routing rounds) on a test set of that shape;
# - the MNIST network trained briefly in capsnet, on 1000 test images (skipped with
#   CAPS_SKIP_E2E=1).
# Needs python3-torch and python3-onnx (the export and its check) and tests/onnx/node_modules
# (cd tests/onnx && ONNXRUNTIME_NODE_INSTALL=skip npm ci); without them every check counts
# as skipped.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-${CAPS_PROGRAM:-./capsnet}}
data=${CAPS_DATA:-data/mnist}
py=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
bridge="$root/python/capsnet_torch.py"
checker="$root/tests/onnx/check_onnx.mjs"
# The checks below, by part: keep in step when adding one (they count as skipped).
quick_checks=4
train_checks=4

why=""
if ! "$py" -c 'import torch, onnx' > /dev/null 2>&1; then
    why="needs python3-torch and python3-onnx"
elif ! command -v node > /dev/null 2>&1; then
    why="needs node"
elif [ ! -d "$root/tests/onnx/node_modules/onnxruntime-node" ]; then
    why="needs tests/onnx/node_modules: cd tests/onnx && ONNXRUNTIME_NODE_INSTALL=skip npm ci"
fi
if [ -n "$why" ]; then
    echo "  skipped: $why"
    skipped=$((quick_checks + train_checks))
    summary
    exit
fi

# timed NAME COMMAND...: runs COMMAND, then prints how long it took.
timed() {
    t0=$(date +%s.%N)
    "$@"
    rc=$?
    echo "($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
    return $rc
}

# ---------------------------------------------------------------- without training
fresh="$work/fresh.caps"
set4="$work/set4"
"$py" - "$root/python" "$fresh" "$set4" <<'EOF'
import os, struct, sys
import torch
sys.path.insert(0, sys.argv[1])
import capsnet_torch as ct

model, folder, count = sys.argv[2], sys.argv[3], 50
config = dict(image_size=16, in_channels=3, conv1_channels=8, conv1_kernel=3, conv1_stride=1,
              primary_types=2, primary_dim=5, primary_kernel=5, primary_stride=1,
              num_classes=4, digit_dim=6, routing_iters=2, decoder_hidden1=20,
              decoder_hidden2=30)
torch.manual_seed(11)
net = ct.CapsNet(config)
with torch.no_grad():  # lengths spread over 0..1 rather than all near 0
    net.primary_caps.weight.mul_(4.0)
    net.primary_caps.bias.mul_(4.0)
    net.digit_caps.weight.normal_(0.0, 0.3)
ct.save(net, model)
g = torch.Generator().manual_seed(12)
pixels = torch.randint(0, 256, (count, 3, 16, 16), generator=g, dtype=torch.uint8)
labels = torch.randint(0, 4, (count,), generator=g, dtype=torch.uint8)
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(struct.pack(">5I", 0x804, count, 3, 16, 16) + pixels.numpy().tobytes())
with open(os.path.join(folder, "t10k-labels-idx1-ubyte"), "wb") as f:
    f.write(struct.pack(">2I", 0x801, count) + labels.numpy().tobytes())
EOF
check "export a fresh 3-channel network" 0 "wrote" -- "$py" "$bridge" onnx "$fresh" \
    "$work/fresh.onnx"
check "capsnet test --per-image on its test set" 0 "" -- save_output "$work/fresh.out" \
    "$capsnet" test --model "$fresh" --data "$set4" --per-image "$work/fresh.csv"
out=$(timed node "$checker" "$work/fresh.onnx" "$set4" 50 "$work/fresh.csv" 2>&1)
printf '%s\n' "$out" | sed 's/^/  fresh network: /'
check "ONNX Runtime: capsnet's lengths and predictions" 0 ": ok" -- printf '%s\n' "$out"
assert "  lengths not all near 0" awk -F, \
    'NR > 1 { for (k = 4; k <= NF; k++) if ($k > 0.05) ok = 1 } END { exit !ok }' "$work/fresh.csv"

# ---------------------------------------------------------------- after training
if [ "${CAPS_SKIP_E2E:-0}" = 1 ]; then
    echo "  the checks on a trained MNIST model: skipped (CAPS_SKIP_E2E=1)"
    skipped=$train_checks why="CAPS_SKIP_E2E=1"
    summary
    exit
fi
model="$work/mnist.caps"
check "train the MNIST network briefly" 0 "test accuracy" -- "$capsnet" train --data "$data" \
    --out "$model" --limit 1000 --test-limit 100 --epochs 1 --seed 1 --quiet
# Through the program this time: capsnet export runs the same bridge with /usr/bin/python3.
check "capsnet export --format onnx" 0 "wrote .*mnist.onnx" -- "$capsnet" export \
    --model "$model" --format onnx --out "$work/mnist.onnx"
check "capsnet test --per-image, 1000 images" 0 "" -- save_output "$work/mnist.out" \
    "$capsnet" test --model "$model" --data "$data" --limit 1000 --per-image "$work/mnist.csv"
out=$(timed node "$checker" "$work/mnist.onnx" "$data" 1000 "$work/mnist.csv" 2>&1)
printf '%s\n' "$out" | sed 's/^/  MNIST: /'
check "ONNX Runtime: capsnet's lengths and predictions" 0 ": ok" -- printf '%s\n' "$out"
summary
