#!/bin/sh
# torch_bridge.sh: python/capsnet_torch.py, the PyTorch bridge, against the program.
# Without training (a fresh network of another shape: 21x21 images of 2 channels, 5 classes,
# strides 2, 4 routing rounds, weights scaled so that the lengths spread over 0..1):
# - a CapsNet(config) saved from PyTorch loads in capsnet with the header and defaults
#   intended, and capsnet test gives the same capsule lengths (<= 1e-5), predictions and
#   losses (margin and reconstruction: the decoder and its mask) on an IDX test set of that
#   shape written here;
# - load then save is byte-identical, for version 3, 2 and 1 files alike;
# - class names set in PyTorch are saved (version 3), read back by the bridge and by capsnet
#   (its safetensors export shows them), kept by load then save, and added to a version 1 or
#   2 file make it version 3; a names block of the wrong count is refused by both;
# - damaged files (truncated, bad magic, a flipped payload or CRC byte, trailing data,
#   another version, a lying header) are refused with exit 1 and a line naming the file;
# - torch's x.float() / 255 is the float32 nearest to x / 255, as capsnet scales pixels.
# After training the MNIST network briefly in capsnet (skipped with CAPS_SKIP_E2E=1):
# - (a) capsnet test --per-image and capsnet_torch.py lengths agree on 1000 test images;
# - (b) load then save is byte-identical;
# - (c) a module trained a few SGD steps in PyTorch, then saved, loads in capsnet with the
#   header of the original (epochs, Adam steps) and gives PyTorch's lengths.
# Without python3-torch everything counts as skipped.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-${CAPS_PROGRAM:-./capsnet}}
data=${CAPS_DATA:-data/mnist}
py=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
bridge="$root/python/capsnet_torch.py"
tol=1e-5
# The checks below, by part: keep in step when adding one (they count as skipped).
quick_checks=43
train_checks=13

if ! "$py" -c 'import torch' > /dev/null 2>&1; then
    echo "  $py cannot import torch: skipped (Debian: apt-get install python3-torch)"
    skipped=$((quick_checks + train_checks)) why="needs python3-torch"
    summary
    exit
fi

# compare_csv A B N [MIN_LONGEST]: two per-image CSVs (index,label,prediction,length_0,...)
# hold the same N images with the same labels and predictions and lengths within $tol.
# Prints the largest difference; the longest length must reach MIN_LONGEST (0.05), so that
# lengths all near 0 cannot agree by being small.
compare_csv() {
    awk -F, -v tol="$tol" -v want="$3" -v min_longest="${4:-0.05}" '
        FNR == 1 { if (NR == 1) head = $0; else if ($0 != head) bad = bad " headers differ;"; next }
        NR == FNR { a[FNR] = $0; next }
        {
            n++
            split(a[FNR], x, ",")
            if (x[1] != $1 || x[2] != $2) bad = bad " line " FNR ": index or label differ;"
            if (x[3] != $3) preds++
            for (k = 4; k <= NF; k++) {
                if ($k !~ /^[0-9.e+-]+$/ || x[k] !~ /^[0-9.e+-]+$/)
                    bad = bad " line " FNR ": not a number;"
                d = x[k] - $k
                if (d < 0) d = -d
                if (d > max) max = d
                if ($k > longest) longest = $k
            }
        }
        END {
            printf "%d images: max |length difference| %.3g, %d predictions differ, ", n, max, preds
            printf "longest %.3g\n", longest
            if (n != want) bad = bad " expected " want " images;"
            if (max > tol) bad = bad " difference above " tol ";"
            if (longest < min_longest) bad = bad " lengths all below " min_longest ";"
            if (preds) bad = bad " predictions differ;"
            if (bad != "") { print "mismatch:" bad; exit 1 }
        }' "$1" "$2"
}

# The Python side of the checks (PyTorch, the bridge), one subcommand each.
cat > "$work/checks.py" <<'EOF'
import json, os, struct, sys, zlib
import torch
sys.path.insert(0, os.environ["BRIDGE_DIR"])
import capsnet_torch as ct

torch.set_num_threads(len(os.sched_getaffinity(0)))

# Every field differs from the MNIST network's: Conv1 21 -> 9 (stride 2), PrimaryCaps
# 9 -> 4 (stride 2, I = 3 * 16 = 48 capsules of 4), 5 classes of 7, 4 routing rounds.
CONFIG = dict(image_size=21, in_channels=2, conv1_channels=10, conv1_kernel=5, conv1_stride=2,
              primary_types=3, primary_dim=4, primary_kernel=3, primary_stride=2,
              num_classes=5, digit_dim=7, routing_iters=4, decoder_hidden1=24,
              decoder_hidden2=40)


def fresh(model, folder, count):
    """A fresh CapsNet(CONFIG) saved as model (and as model_rw with recon_weight 0.05), and
    count random images of its shape with labels as an IDX test set in folder (rank 4
    images, [N][C][H][W])."""
    torch.manual_seed(7)
    net = ct.CapsNet(CONFIG)
    with torch.no_grad():  # lengths spread over 0..1 rather than all near 0
        net.primary_caps.weight.mul_(4.0)
        net.primary_caps.bias.mul_(4.0)
        net.digit_caps.weight.normal_(0.0, 0.5)
        for k in (0, 2, 4):  # a reconstruction that depends on the capsule it is given
            net.decoder[k].weight.mul_(3.0)
    ct.save(net, model)
    # The same network with a reconstruction weight large enough that capsnet's test loss
    # shows what the decoder makes of the capsule it is given.
    net.capsnet_file = ct.CapsFile(CONFIG, dict(ct.DEFAULT_STATE, recon_weight=0.05))
    ct.save(net, model.replace(".caps", "_rw.caps"))
    C, S, J = CONFIG["in_channels"], CONFIG["image_size"], CONFIG["num_classes"]
    g = torch.Generator().manual_seed(8)
    pixels = torch.randint(0, 256, (count, C, S, S), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, J, (count,), generator=g, dtype=torch.uint8)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">5I", 0x804, count, C, S, S) + pixels.numpy().tobytes())
    with open(os.path.join(folder, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">2I", 0x801, count) + labels.numpy().tobytes())
    print("saved %s: %d parameters; %d test images in %s" % (model, ct.num_params(CONFIG),
                                                            count, folder))


def losses(model, folder, count, capsnet_json):
    """The test losses (decoder masked by the prediction) against capsnet test --json's."""
    net = ct.load(model)
    x, labels = ct.read_test_set(folder, count)
    w = net.capsnet_file.state["recon_weight"]
    margin = recon_loss = 0.0
    with torch.no_grad():
        for k in range(0, count, 100):  # capsnet's batches: each batch's mean, weighted
            xb, yb = x[k:k + 100], labels[k:k + 100]
            lengths, recon = net(xb)
            m = ct.capsnet_loss(lengths, recon, xb, yb, 0.0).item()
            margin += m * len(xb) / count
            recon_loss += (ct.capsnet_loss(lengths, recon, xb, yb, w).item() - m) * len(xb) / count
    theirs = json.load(open(capsnet_json))
    m, r = theirs["margin_loss"], theirs["recon_loss"]
    print("margin %.6f recon %.6f, capsnet %.6f %.6f: max difference %.2g and %.2g"
          % (margin, recon_loss, m, r, abs(margin - m), abs(recon_loss - r)))
    # capsnet prints 6 decimals (5e-7 of rounding); the rest is float32 sums over pixels.
    ok = abs(margin - m) <= 1e-5 and abs(recon_loss - r) <= 1e-5 * max(1.0, r)
    sys.exit(0 if ok and recon_loss > 1e-3 else 1)


def make_older(v3, old, version):
    """The version 2 or 1 file of a version 3 one without names: no names_bytes field,
    header_bytes 192 (version 1: no routing field either, 176), a new CRC."""
    data = open(v3, "rb").read()
    assert data[208:216] == bytes(8), "the version 3 file has names"
    header = {1: 192, 2: 208}[version]
    body = data[:8] + struct.pack("<II", version, header - 16) + data[16:header] + data[216:-4]
    open(old, "wb").write(body + struct.pack("<I", zlib.crc32(body)))


NAMES = ["zero", "caf\u00e9", "T-shirt/top", 'say "three"', "four"]


def named(model, out):
    """model with NAMES as its class names, saved as out."""
    net = ct.load(model)
    net.class_names = list(NAMES)
    ct.save(net, out)
    print("saved %s: version %d, %d class names" % (out, ct.load(out).capsnet_file.version,
                                                    len(ct.load(out).class_names)))


def names(model):
    """The class names the bridge reads from model, as JSON (null for none)."""
    print(json.dumps(ct.load(model).class_names, ensure_ascii=False,
                     separators=(",", ":")))


def st_names(path):
    """The class names in a safetensors file's __metadata__ (a JSON array in a string), as
    JSON."""
    data = open(path, "rb").read()
    n = struct.unpack_from("<Q", data, 0)[0]
    meta = json.loads(data[8:8 + n])["__metadata__"]
    print(json.dumps(json.loads(meta["class_names"]), ensure_ascii=False,
                     separators=(",", ":")))


def bad_count(model, out):
    """model (named) with one name fewer in its names block, the CRC made right again."""
    data = open(model, "rb").read()
    nb = struct.unpack_from("<Q", data, 208)[0]
    block = data[-4 - nb:-4]
    cut = block[:block.index(b"\n")] + b"X" + block[block.index(b"\n") + 1:]
    body = data[:-4 - nb] + cut
    open(out, "wb").write(body + struct.pack("<I", zlib.crc32(body)))


def sgd(model, out, csv):
    """A few SGD steps in PyTorch on the first 100 test images, saved as out; the lengths
    of the trained module on the first 200 test images written to csv."""
    torch.manual_seed(3)
    net = ct.load(model)
    before = [p.detach().clone() for p in net.parameter_list()]
    x, labels = ct.read_test_set(os.environ["DATA"], 200)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    for step in range(4):
        b = slice(50 * (step % 2), 50 * (step % 2) + 50)
        lengths, recon = net(x[b], labels[b])
        loss = ct.capsnet_loss(lengths, recon, x[b], labels[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        print("step %d: loss %.4f" % (step + 1, loss.item()))
    changed = sum(not torch.equal(a, p) for a, p in zip(before, net.parameter_list()))
    ct.save(net, out)
    net.eval()
    with torch.no_grad():
        lengths = net(x)[0]
    with open(csv, "w") as f:
        ct.write_per_image(f, lengths, labels)
    print("%d of 11 tensors changed" % changed)
    sys.exit(0 if changed == 11 else 1)


def pixels():
    """torch's x.float() / 255 is the float32 nearest to x / 255 for every byte (a double
    quotient rounded once to float32 is; capsnet computes (float)b / 255.0f)."""
    t = (torch.arange(256, dtype=torch.uint8).float() / 255).tolist()
    want = [struct.unpack("<f", struct.pack("<f", b / 255))[0] for b in range(256)]
    bad = [b for b in range(256) if t[b] != want[b]]
    print("%d of 256 bytes scale differently" % len(bad))
    sys.exit(1 if bad else 0)


cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "fresh":
    fresh(args[0], args[1], int(args[2]))
elif cmd == "losses":
    losses(args[0], args[1], int(args[2]), args[3])
elif cmd in ("v1", "v2"):
    make_older(args[0], args[1], int(cmd[1]))
elif cmd == "named":
    named(args[0], args[1])
elif cmd == "names":
    names(args[0])
elif cmd == "st_names":
    st_names(args[0])
elif cmd == "bad_count":
    bad_count(args[0], args[1])
elif cmd == "sgd":
    sgd(args[0], args[1], args[2])
elif cmd == "pixels":
    pixels()
EOF
export BRIDGE_DIR="$root/python" DATA="$data"
checks() { "$py" "$work/checks.py" "$@"; }
bridge() { "$py" "$bridge" "$@"; }
size_of() { wc -c < "$1" | tr -d ' '; }

# ---------------------------------------------------------------- without training
fresh="$work/fresh.caps"
set5="$work/set5"
check "a fresh CapsNet(config) saved from PyTorch" 0 "saved .*: 46348 parameters" -- \
    checks fresh "$fresh" "$set5" 60
config="image_size=21 in_channels=2 conv1_channels=10 conv1_kernel=5 conv1_stride=2"
config="$config primary_types=3 primary_dim=4 primary_kernel=3 primary_stride=2 num_classes=5"
config="$config digit_dim=7 routing_iters=4 decoder_hidden1=24 decoder_hidden2=40 routing=dynamic"
check "capsnet loads it: the configuration" 0 "^config: $config$" -- "$capsnet" info \
    --model "$fresh"
state="epochs done 0, batch 0 of the next, batch size 100, lr 0.001, decay 0.9,"
state="$state recon weight 0.0005, shift 2, limit 0, seed 1$"
check "capsnet loads it: a fresh training state" 0 "$state" -- "$capsnet" info --model "$fresh"
check "capsnet loads it: no Adam steps, no log" 0 "parameters 46348, Adam steps 0$" -- \
    "$capsnet" info --model "$fresh"
check "capsnet test on that 2-channel test set" 0 "" -- save_output "$work/fresh.json" \
    "$capsnet" test --model "$work/fresh_rw.caps" --data "$set5" --json \
    --per-image "$work/fresh_c.csv"
check "capsnet_torch.py lengths" 0 "wrote .*: 60 images" -- bridge lengths "$fresh" \
    --data "$set5" --out "$work/fresh_t.csv"
out=$(compare_csv "$work/fresh_c.csv" "$work/fresh_t.csv" 60)
echo "  fresh 2-channel network, capsnet vs PyTorch: $out"
check "same lengths and predictions as capsnet" 0 "" -- compare_csv "$work/fresh_c.csv" \
    "$work/fresh_t.csv" 60
check "same test losses as capsnet (decoder masked by the prediction)" 0 "max difference" -- \
    checks losses "$work/fresh_rw.caps" "$set5" 60 "$work/fresh.json"
check "roundtrip of a fresh file" 0 "wrote" -- bridge roundtrip "$fresh" "$work/fresh2.caps"
check "  byte-identical" 0 "" -- cmp "$fresh" "$work/fresh2.caps"
assert "  no temporary file left" [ -z "$(ls "$work" | grep '\.tmp\.')" ]

# Older versions: load then save keeps the version, byte for byte.
for v in 1 2; do
    checks v$v "$fresh" "$work/v$v.caps"
    check "version $v file: capsnet reads it" 0 "routing=dynamic" -- "$capsnet" info \
        --model "$work/v$v.caps"
    check "version $v file: load and save" 0 "wrote" -- bridge roundtrip "$work/v$v.caps" \
        "$work/v${v}again.caps"
    check "  gives the same version $v file" 0 "" -- cmp "$work/v$v.caps" "$work/v${v}again.caps"
    check "  without class names" 0 "^null$" -- checks names "$work/v$v.caps"
done

# Class names: set in PyTorch, saved as version 3, read by both sides.
names_json='\["zero","café","T-shirt/top","say \\"three\\"","four"\]'
check "class names set in PyTorch, saved" 0 "version 3, 5 class names" -- checks named \
    "$fresh" "$work/named.caps"
check "  the bridge reads them back" 0 "^$names_json$" -- checks names "$work/named.caps"
check "  capsnet reads the file" 0 "^config: $config$" -- "$capsnet" info --model \
    "$work/named.caps"
check "  and has the names: they reach its safetensors export" 0 "" -- "$capsnet" export \
    --model "$work/named.caps" --format safetensors --out "$work/named.safetensors"
check "  (the export's __metadata__ class_names)" 0 "^$names_json$" -- checks st_names \
    "$work/named.safetensors"
check "  load and save" 0 "wrote" -- bridge roundtrip "$work/named.caps" "$work/named2.caps"
check "  byte-identical" 0 "" -- cmp "$work/named.caps" "$work/named2.caps"
check "names added to a version 1 file make it version 3" 0 "version 3, 5 class names" -- \
    checks named "$work/v1.caps" "$work/v1named.caps"
check "  the same file as names added to the version 3 one" 0 "" -- cmp "$work/named.caps" \
    "$work/v1named.caps"
checks bad_count "$work/named.caps" "$work/count.caps"
check "a names block of the wrong count: the bridge refuses it" 1 \
    "count.caps: class names: wrong count \(expected 5, one per class, got 4\)$" -- \
    bridge roundtrip "$work/count.caps" "$work/x.caps"
check "  and so does capsnet" 1 \
    "count.caps: class names: wrong count \(expected 5, one per class, got 4\)$" -- \
    "$capsnet" export --model "$work/count.caps" --format safetensors --out "$work/x.st"

# Damaged files: exit 1 and one line naming the file and what is wrong.
# refused NAME FILE MESSAGE: capsnet_torch.py refuses FILE with "<FILE>: MESSAGE" (a regex).
refused() {
    check "$1" 1 "^capsnet_torch.py: error: $2: $3" -- one_line bridge roundtrip "$2" "$work/x.caps"
}
one_line() { # COMMAND...: its status, or 99 when it prints more than one line
    lines=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$lines"
    [ "$(printf '%s\n' "$lines" | wc -l)" -le 1 ] || return 99
    return $rc
}
# flip OFFSET IN OUT: IN with the byte at OFFSET inverted.
flip() {
    { head -c "$1" "$2"
      head -c $(($1 + 1)) "$2" | tail -c 1 | od -An -tu1 | awk '{ printf "%c", 255 - $1 }'
      tail -c +$(($1 + 2)) "$2"; } > "$3"
}
n=$(size_of "$fresh")
head -c $((n - 1)) "$fresh" > "$work/short.caps"
refused "truncated file" "$work/short.caps" "truncated \(expected $n bytes, got $((n - 1))\)$"
{ cat "$fresh"; printf 'x'; } > "$work/long.caps"
refused "trailing data" "$work/long.caps" "trailing data \(expected $n bytes, got $((n + 1))\)$"
head -c 100 "$fresh" > "$work/header.caps"
refused "truncated header" "$work/header.caps" "truncated header \(expected 216 bytes, got 100\)$"
{ printf 'CAPSNEt'; tail -c +8 "$fresh"; } > "$work/magic.caps"
refused "bad magic" "$work/magic.caps" \
    "not a capsnet model file \(expected magic \"CAPSNET.x00\", got \"CAPSNEt.x00\"\)$"
flip $((n - 1)) "$fresh" "$work/crc.caps"
refused "flipped CRC byte" "$work/crc.caps" \
    "checksum mismatch \(expected 0x[0-9a-f]{8}, got 0x[0-9a-f]{8}\)$"
flip 5000 "$fresh" "$work/payload.caps"
refused "flipped parameter byte" "$work/payload.caps" "checksum mismatch"
flip 8 "$fresh" "$work/version.caps"
refused "another version" "$work/version.caps" \
    "unsupported model file version \(expected 1 to 3, got 252\)$"
flip 63 "$fresh" "$work/config.caps"  # the high byte of routing_iters (offset 60): negative
refused "a configuration out of range" "$work/config.caps" \
    "config: routing_iters out of range \(expected 1..4096, got -16777212\)$"
flip 177 "$fresh" "$work/count.caps"  # a byte of num_params (offset 176)
refused "a parameter count that lies" "$work/count.caps" \
    "parameter count does not match the configuration \(expected 46348, got 18956\)$"
refused "a missing file" "$work/none.caps" "No such file or directory$"
assert "nothing written for a damaged file" [ ! -e "$work/x.caps" ]
check "without PyTorch: says which package" 1 "not installed .*apt-get install python3-torch" \
    -- one_line "$py" -S "$bridge" roundtrip "$fresh" "$work/x.caps"
check "pixels: torch's x.float() / 255 is the nearest float32" 0 "^0 of 256" -- checks pixels

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
# (a) the same lengths in capsnet and in PyTorch
check "(a) capsnet test --per-image" 0 "" -- save_output "$work/mnist.json" "$capsnet" test \
    --model "$model" --data "$data" --limit 1000 --json --per-image "$work/mnist_c.csv"
check "(a) capsnet_torch.py lengths" 0 "wrote .*: 1000 images" -- bridge lengths "$model" \
    --data "$data" --count 1000 --out "$work/mnist_t.csv"
out=$(compare_csv "$work/mnist_c.csv" "$work/mnist_t.csv" 1000)
echo "  MNIST, capsnet vs PyTorch: $out"
check "(a) same lengths and predictions" 0 "" -- compare_csv "$work/mnist_c.csv" \
    "$work/mnist_t.csv" 1000
check "(a) same test losses" 0 "max difference" -- checks losses "$model" "$data" 1000 \
    "$work/mnist.json"
# (b) load then save without training: the same bytes
check "(b) roundtrip" 0 "wrote" -- bridge roundtrip "$model" "$work/mnist2.caps"
check "(b) byte-identical" 0 "" -- cmp "$model" "$work/mnist2.caps"
# (c) trained in PyTorch, saved, used by capsnet
check "(c) SGD steps in PyTorch, saved" 0 "11 of 11 tensors changed" -- checks sgd "$model" \
    "$work/sgd.caps" "$work/sgd_t.csv"
check "(c) capsnet keeps the file's header" 0 "epochs done 1, batch 0 of the next" -- \
    "$capsnet" info --model "$work/sgd.caps"
check "(c) and its Adam step count" 0 "Adam steps 10$" -- "$capsnet" info --model "$work/sgd.caps"
assert "(c) the parameters changed" sh -c "! cmp -s '$model' '$work/sgd.caps'"
check "(c) capsnet test on the PyTorch-trained file" 0 "" -- "$capsnet" test \
    --model "$work/sgd.caps" --data "$data" --limit 200 --per-image "$work/sgd_c.csv"
out=$(compare_csv "$work/sgd_c.csv" "$work/sgd_t.csv" 200)
echo "  after SGD in PyTorch, capsnet vs PyTorch: $out"
check "(c) capsnet gives PyTorch's lengths" 0 "" -- compare_csv "$work/sgd_c.csv" \
    "$work/sgd_t.csv" 200
summary
