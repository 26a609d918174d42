#!/bin/sh
# figures.sh: the picture commands and the report, from a tiny trained model: every file
# is a PNG (or SVG, HTML) that decodes; the report refers only to files that exist and
# loads in headless Chromium with no console error, failed request or broken image.
# (tests/test_visualize.c checks the pixels; tests/test_figure.c the drawing.)
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
model="$work/tiny.caps"
here=$(cd "$(dirname "$0")/../.." && pwd)
is_png() { [ "$(od -An -tx1 -N8 "$1" 2>/dev/null | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d\n", $3*256+$4, $7*256+$8 }'; }

check "train a tiny model" 0 "test accuracy" -- "$capsnet" train --data "$data" --out "$model" \
    --limit 600 --test-limit 200 --epochs 2 --batch 50 $tiny --seed 2

check "reconstruct" 0 "wrote .*rec.png: 12 test images" -- "$capsnet" reconstruct \
    --model "$model" --data "$data" --out "$work/rec.png" --count 12
assert "reconstruct writes a PNG" is_png "$work/rec.png"
check "reconstruct --affine" 0 "wrote" -- "$capsnet" reconstruct --model "$model" --data "$data" \
    --out "$work/rec_affine.png" --count 5 --affine 30,0.1
check "perturb" 0 "16 dimensions x 11 shifts" -- "$capsnet" perturb --model "$model" \
    --data "$data" --index 3 --out "$work/perturb.png"
assert "perturb writes a PNG" is_png "$work/perturb.png"
check "perturb: 16 rows of 11 tiles of 112 px" 0 "^(1[3-9][0-9]{2})x(1[89][0-9]{2}|2[0-9]{3})$" -- png_size "$work/perturb.png"
check "show" 0 "wrote .*show.png: 20 images" -- "$capsnet" show --data "$data" \
    --out "$work/show.png" --count 20
check "show --shift" 0 "wrote" -- "$capsnet" show --data "$data" --out "$work/shift.png" --shift
check "show --affine" 0 "wrote" -- "$capsnet" show --data "$data" --out "$work/affine.png" \
    --affine 30,0.1 --test
for f in show shift affine rec_affine; do assert "$f.png is a PNG" is_png "$work/$f.png"; done

check "test --affine" 0 '"affine": \{"max_degrees": 30, "max_shift_frac": 0.1, "seed": 1\}, .*"accuracy"' \
    -- "$capsnet" test --model "$model" --data "$data" --limit 200 --affine 30,0.1 --json
check "test --affine text" 0 "rotated by up to 30 degrees" -- "$capsnet" test --model "$model" \
    --data "$data" --limit 100 --affine 30,0.1

check "bad --affine" 2 "expected DEG,FRAC" -- "$capsnet" test --model "$model" --affine 30
check "perturb past the test set" 2 "past the 10000 test images" -- "$capsnet" perturb \
    --model "$model" --data "$data" --index 10000
check "reconstruct past the test set" 2 "runs past" -- "$capsnet" reconstruct --model "$model" \
    --data "$data" --start 9995 --count 10
check "figure into a missing folder" 1 "nofolder/x.png" -- "$capsnet" perturb --model "$model" \
    --data "$data" --out "$work/nofolder/x.png"

# plot: a chart of series from the command line, PNG or SVG by the name; the size is the
# chart's (640 x 400); series that disagree on x, and other names, are refused.
check "plot PNG" 0 "wrote .*sweep.png: 2 series of 3 points" -- "$capsnet" plot \
    --out "$work/sweep.png" --xlabel degrees --ylabel "accuracy %" a=0:99,30:95,60:70 b=0:98,30:nan,60:60
assert "plot writes a PNG" is_png "$work/sweep.png"
check "plot: 640 x 400" 0 "^640x400$" -- png_size "$work/sweep.png"
check "plot SVG" 0 "wrote .*sweep.svg" -- "$capsnet" plot --out "$work/sweep.svg" a=1:2,2:3
assert "plot writes an SVG" grep -q "<svg" "$work/sweep.svg"
check "plot: other x values refused" 2 "series 'b' has other x values than 'a'" -- \
    "$capsnet" plot --out "$work/x.png" a=0:1,1:2 b=0:1,2:2
check "plot: a bad point refused" 2 "series 1: a point is not X:Y" -- \
    "$capsnet" plot --out "$work/x.png" a=0:1,1
check "plot: another format refused" 2 "expected a name ending in .png or .svg" -- \
    "$capsnet" plot --out "$work/x.jpg" a=0:1

# The report: every file it refers to exists, and a browser shows it without an error.
check "report" 0 "wrote .*index.html: accuracy" -- "$capsnet" report --model "$model" \
    --data "$data" --out "$work/report" --limit 300
missing=""
for ref in $(grep -oE '(src|href)="[^"]+"' "$work/report/index.html" | sed -E 's/.*="([^"]+)"/\1/'); do
    [ -f "$work/report/$ref" ] || missing="$missing $ref"
done
assert "report refers only to files that exist (missing:$missing)" [ -z "$missing" ]
for f in loss.svg accuracy.svg speed.svg confusion.png reconstructions.png perturb_0.png perturb_9.png; do
    assert "report wrote $f" [ -s "$work/report/$f" ]
done
if [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ -d "$here/tests/browser/node_modules/playwright-core" ]; then
    check "report loads in Chromium without errors" 0 "index.html: ok \([0-9]+ images\)" -- \
        node "$here/tests/browser/check_page.mjs" "file://$work/report/index.html"
else
    echo "  note: browser check skipped: needs /usr/bin/chromium and tests/browser/node_modules"
    echo "        (apt-get install chromium; cd tests/browser && npm ci)"
fi
summary
