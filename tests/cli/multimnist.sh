#!/bin/sh
# multimnist.sh: capsnet multimnist preview, the MultiMNIST pairs of the paper's section 6 as
# a grayscale PNG grid (no cairo: in every build). The grid's size follows from the count
# (36x36 tiles drawn twice as large, 2 pixels apart, 10 pairs a row; with --digits 4 pairs of
# three tiles); the same seed writes the same file, another seed another; one line a pair and
# the mean overlap are printed; usage errors exit 2, a missing data set or an unwritable
# output 1, naming the file.
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
summary
