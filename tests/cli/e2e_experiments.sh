#!/bin/sh
# e2e_experiments.sh: a smoke run of scripts/experiments.sh (--budget tiny: tiny networks, 300
# images, one epoch): every experiment runs and its table gets a measured number in every
# cell it can fill (the CNN's cells only where the program has train --arch).
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-./capsnet}
case "$capsnet" in /*) ;; *) capsnet=$(pwd)/$capsnet ;; esac
dir="$work/exp"
check "the tiny budget runs" 0 "wrote .*EXPERIMENTS.md" -- env CAPSNET="$capsnet" \
    sh scripts/experiments.sh --budget tiny --out "$dir"
md="$dir/EXPERIMENTS.md"
rows() { grep -cE "$1" "$md"; }
assert "ablation: 4 rows of mean +- sd" [ "$(rows '^\| [13] \| (yes|no) \| [0-9.]+ \+- [0-9.]+ \|')" -eq 4 ]
assert "rotations: 5 rows with an accuracy" [ "$(rows '^\| (0|15|30|45|60) \| [0-9.]+% \|')" -eq 5 ]
assert "affNIST-like: the capsule network's row" [ "$(rows '^\| capsule network \| [0-9.]+% \| [0-9.]+% \| 79% \|')" -eq 1 ]
assert "small training sets: 3 rows" [ "$(rows '^\| (100|1000|10000) \| [0-9.]+% \|')" -eq 3 ]
if "$capsnet" train --help 2>&1 | grep -q -- "--arch"; then
    assert "the CNN's cells are filled" [ "$(rows '^\| (0|15|30|45|60|100|1000|10000) \| [0-9.]+% \| [0-9.]+% \|')" -eq 8 ]
fi
assert "MultiMNIST: the capsule network's row" \
    [ "$(rows '^\| capsule network, R=3 \| 200 \| [0-9.]+% \| [0-9.]+% \| 5.2% \|')" -eq 1 ]
is_png() { [ "$(od -An -c -N4 "$1" | tr -d ' ')" = "211PNG" ]; }
assert "the MultiMNIST inputs are a PNG" is_png "$dir/multimnist.png"
if "$capsnet" plot --help > /dev/null 2>&1; then
    assert "the MultiMNIST figure is a PNG" is_png "$dir/multimnist-figure.png"
    assert "the rotation sweep is a PNG" is_png "$dir/rotations.png"
    assert "EXPERIMENTS.md shows both" [ "$(grep -cE '\]\((rotations|multimnist-figure)\.png\)' "$md")" -eq 2 ]
fi
# A section run again alone keeps the others' tables.
check "--only reruns one section" 0 "wrote .*EXPERIMENTS.md" -- env CAPSNET="$capsnet" \
    sh scripts/experiments.sh --budget tiny --out "$dir" --only rotations
assert "the other sections' tables stay" [ "$(rows '^\| [13] \| (yes|no) \| [0-9.]+ \+- [0-9.]+ \|')" -eq 4 ]
check "an unknown section is refused" 2 "unknown section 'speed'" -- \
    sh scripts/experiments.sh --budget tiny --out "$dir" --only speed
assert "every command is logged" [ "$(grep -c '^\$ ' "$dir/commands.log")" -ge 17 ]
summary
