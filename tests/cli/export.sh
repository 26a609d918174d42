#!/bin/sh
# export.sh: capsnet export. safetensors: its layout (8-byte header length, JSON header
# padded to 8 bytes, tensors in the model file's order) and its tensor bytes equal the model
# file's parameters bit for bit. onnx: a clear error and no file when Python cannot run it
# (tests/cli/onnx_runtime.sh runs the exported network). Bad input: exit 1 or 2, nothing
# written.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
# A small network of other shapes than MNIST's (2 classes fewer would need other data).
config="conv1_channels=16,primary_types=4,primary_dim=6,digit_dim=12,decoder_hidden1=32,decoder_hidden2=64"
model="$work/small.caps"
check "train a small model" 0 "test accuracy" -- "$capsnet" train --data "$data" --out "$model" \
    --limit 300 --test-limit 100 --epochs 1 --batch 50 --config "$config" --seed 2 --quiet

st="$work/small.safetensors"
check "export safetensors" 0 "wrote .*small.safetensors: 11 tensors" -- "$capsnet" export \
    --model "$model" --format safetensors --out "$st"
# u64 little-endian header length n, then n bytes of JSON, then the data.
n=$(od -An -tu8 -N8 "$st" | tr -d ' ')
assert "header length a multiple of 8" [ $((n % 8)) -eq 0 ]
header=$(tail -c +9 "$st" | head -c "$n")
check "tensor names and shapes of the PyTorch module" 0 \
    '^\{"conv1.weight":\{"dtype":"F32","shape":\[16,1,9,9\],"data_offsets":\[0,5184\]\},.*"primary_caps.weight":\{"dtype":"F32","shape":\[24,16,9,9\].*"digit_caps.weight":\{"dtype":"F32","shape":\[144,10,12,6\].*"decoder.0.weight":\{"dtype":"F32","shape":\[32,120\].*"decoder.4.bias":\{"dtype":"F32","shape":\[784\]' \
    -- printf '%s\n' "$header"
check "metadata names the routing and config" 0 '"routing":"dynamic","config":"image_size=28,.*primary_dim=6' \
    -- printf '%s\n' "$header"
# The parameters of a version-2 model file start at byte 208 (docs/model-format.md).
params=$("$capsnet" info --model "$model" | sed -nE 's/^parameters ([0-9]+).*/\1/p')
assert "file size = 8 + header + 4 x parameters" [ "$(wc -c < "$st")" -eq $((8 + n + 4 * params)) ]
tail -c +$((9 + n)) "$st" > "$work/st.bin"
tail -c +209 "$model" | head -c $((4 * params)) > "$work/model.bin"
assert "tensor bytes equal the model's parameters" cmp -s "$work/st.bin" "$work/model.bin"
assert "parameters not empty" [ -s "$work/st.bin" ]

# PyTorch takes the file as the bridge module's state_dict, strictly (names and shapes), and
# its tensors are the module's own when loaded from the model file.
if /usr/bin/python3 -c 'import torch' > /dev/null 2>&1; then
    root=$(cd "$(dirname "$0")/../.." && pwd)
    check "torch loads it into the bridge's module, strict" 0 "^loaded 11 tensors, equal$" -- \
        /usr/bin/python3 - "$root/python" "$st" "$model" <<'EOF'
import json, struct, sys
import torch
sys.path.insert(0, sys.argv[1])
import capsnet_torch
data = open(sys.argv[2], "rb").read()
n = struct.unpack_from("<Q", data, 0)[0]
header = json.loads(data[8:8 + n])
header.pop("__metadata__")
state = {}
for name, t in header.items():
    begin, end = t["data_offsets"]
    flat = torch.frombuffer(bytearray(data[8 + n + begin:8 + n + end]), dtype=torch.float32)
    state[name] = flat.reshape(t["shape"])
net = capsnet_torch.load(sys.argv[3])
reference = {k: v.clone() for k, v in net.state_dict().items()}
net.load_state_dict(state, strict=True)
same = all(torch.equal(state[k], reference[k]) for k in reference)
print("loaded %d tensors, %s" % (len(state), "equal" if same else "DIFFERENT"))
EOF
else
    skipped=1 why="needs python3-torch"
fi

# Errors: nothing is written.
check "unknown format" 2 "unknown --format 'tflite'" -- "$capsnet" export --model "$model" \
    --format tflite --out "$work/x"
check "missing --out" 2 "--out is required" -- "$capsnet" export --model "$model" \
    --format safetensors
printf 'not a model' > "$work/junk.caps"
check "bad model" 1 "junk.caps: not a capsnet model file" -- "$capsnet" export \
    --model "$work/junk.caps" --format safetensors --out "$work/junk.safetensors"
assert "nothing written for a bad model" [ ! -e "$work/junk.safetensors" ]
check "unwritable output" 1 "nodir/x.safetensors" -- "$capsnet" export --model "$model" \
    --format safetensors --out "$work/nodir/x.safetensors"
: > "$work/bridge.py"
check "onnx without Python" 1 "cannot run /nonexistent/python3" -- env \
    CAPSNET_PYTHON=/nonexistent/python3 CAPSNET_TORCH="$work/bridge.py" "$capsnet" export \
    --model "$model" --format onnx --out "$work/x.onnx"
check "onnx when the bridge fails" 1 "x.onnx: ONNX export failed" -- env CAPSNET_PYTHON=false \
    CAPSNET_TORCH="$work/bridge.py" "$capsnet" export --model "$model" --format onnx \
    --out "$work/x.onnx"
check "onnx without the bridge" 1 "needs python/capsnet_torch.py" -- env \
    CAPSNET_TORCH=/nonexistent/capsnet_torch.py "$capsnet" export --model "$model" \
    --format onnx --out "$work/x.onnx"
assert "no ONNX file or temporary left" [ -z "$(ls "$work" | grep -E 'x\.onnx')" ]
summary
