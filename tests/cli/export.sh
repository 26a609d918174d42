#!/bin/sh
# export.sh: capsnet export. safetensors: its layout (8-byte header length, JSON header
# padded to 8 bytes, tensors in the model file's order) and its tensor bytes equal the model
# file's parameters bit for bit; a model's class names in its __metadata__ ("class_names", a
# JSON array as a string: quotes, backslashes and UTF-8 kept, bytes that are not UTF-8 as
# U+FFFD), none for a model without names. onnx: the class names in the ONNX model's
# metadata_props (with PyTorch and onnx); a clear error and no file when Python cannot run it
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
assert "no class names for a model without them" sh -c "! printf '%s' '$header' | grep -q class_names"
# The parameters of a version-3 model file start at byte 216 (docs/model-format.md).
params=$("$capsnet" info --model "$model" | sed -nE 's/^parameters ([0-9]+).*/\1/p')
assert "file size = 8 + header + 4 x parameters" [ "$(wc -c < "$st")" -eq $((8 + n + 4 * params)) ]
tail -c +$((9 + n)) "$st" > "$work/st.bin"
tail -c +217 "$model" | head -c $((4 * params)) > "$work/model.bin"
assert "tensor bytes equal the model's parameters" cmp -s "$work/st.bin" "$work/model.bin"
assert "parameters not empty" [ -s "$work/st.bin" ]

# Class names. with_names IN OUT NAME...: IN (a version 3 model file without class names) with
# the class names NAME..., as capsnet saves them: names_bytes (u64) at offset 208, the names
# one per line before the CRC, the CRC made right (gzip's trailer holds the CRC-32 of its
# input, the one model files use).
with_names() {
    in=$1 out=$2
    shift 2
    printf '%s\n' "$@" > "$work/block"
    nb=$(wc -c < "$work/block" | tr -d ' ')
    size=$(wc -c < "$in" | tr -d ' ')
    { head -c 208 "$in"
      printf "$(printf '\\%03o' $((nb & 255)) $((nb >> 8 & 255)) 0 0 0 0 0 0)"
      tail -c +217 "$in" | head -c $((size - 216 - 4))
      cat "$work/block"; } > "$work/body"
    { cat "$work/body"; gzip -c < "$work/body" | tail -c 8 | head -c 4; } > "$out"
}
named="$work/named.caps"
with_names "$model" "$named" T-shirt/top Trouser Pullover Dress Coat 'Sandal "5"' Shirt \
    'Sneaker\7' "$(printf 'Bag\377')" 'Ankle boot é'
nst="$work/named.safetensors"
check "export safetensors of a model with class names" 0 "wrote .*named.safetensors" -- \
    "$capsnet" export --model "$named" --format safetensors --out "$nst"
n=$(od -An -tu8 -N8 "$nst" | tr -d ' ')
tail -c +9 "$nst" | head -c "$n" > "$work/named.json"
want='"class_names":"[\"T-shirt/top\",\"Trouser\",\"Pullover\",\"Dress\",\"Coat\",\"Sandal \\\"5\\\"\",\"Shirt\",\"Sneaker\\\\7\",\"Bag\\ufffd\",\"Ankle boot é\"]"'
assert "the names in __metadata__, a JSON array as a string" grep -qF -- "$want" "$work/named.json"
tail -c +$((9 + n)) "$nst" > "$work/named.bin"
assert "the same tensors as without names" cmp -s "$work/named.bin" "$work/model.bin"

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
    # The names: JSON, valid UTF-8; the same list from the safetensors export and the bridge.
    check "the names parse as JSON, as the bridge reads them" 0 "^10 names, equal$" -- \
        /usr/bin/python3 - "$root/python" "$nst" "$named" <<'EOF'
import json, struct, sys
sys.path.insert(0, sys.argv[1])
import capsnet_torch as ct
data = open(sys.argv[2], "rb").read()
n = struct.unpack_from("<Q", data, 0)[0]
names = json.loads(json.loads(data[8:8 + n].decode("utf-8"))["__metadata__"]["class_names"])
want = json.loads(ct.class_names_json(ct.load(sys.argv[3]).class_names))
print("%d names, %s" % (len(names), "equal" if names == want else "DIFFERENT: %r" % names))
EOF
else
    skipped=$((skipped + 2)) why="needs python3-torch"
fi
# ONNX: the same names in the model's metadata_props.
if /usr/bin/python3 -c 'import torch, onnx' > /dev/null 2>&1; then
    check "export onnx of a model with class names" 0 "wrote .*named.onnx" -- "$capsnet" export \
        --model "$named" --format onnx --out "$work/named.onnx"
    check "the names in metadata_props" 0 "^class_names: 10 names, equal$" -- \
        /usr/bin/python3 - "$work/named.onnx" "$work/named.json" <<'EOF'
import json, sys
import onnx
props = {p.key: p.value for p in onnx.load(sys.argv[1]).metadata_props}
header = json.loads(open(sys.argv[2], encoding="utf-8").read())  # the safetensors export's
want = json.loads(header["__metadata__"]["class_names"])
got = json.loads(props["class_names"])
print("class_names: %d names, %s" % (len(got), "equal" if got == want else "DIFFERENT: %r" % got))
EOF
else
    skipped=$((skipped + 2)) why="needs python3-torch and python3-onnx"
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
