#!/bin/sh
# data.sh: data sets beyond IDX files, end to end through the program. The first 200 MNIST
# training and 100 test images are written out as PGM class folders (DIR/train/<digit>/*.pgm),
# and, in the same order (class by class, as the folder loader reads them), as IDX files.
# capsnet data --check counts them; capsnet train on the folders and on those IDX files, same
# seed and flags, must log the same losses and accuracy: same bytes, labels and order, so the
# folder path changes nothing the network sees. Then refusals: an image of another size,
# gray and colour mixed, a missing split, splits of other shapes, a CIFAR batch cut short, more
# classes than --classes. Class names: from the folders, a names file, class-names.txt beside
# IDX files; kept in the model and printed; a resumed run with other names refused.
set -u
. "$(dirname "$0")/lib.sh"
capsnet=${1:-${CAPS_PROGRAM:-./capsnet}}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
N_TRAIN=200
N_TEST=100

# be32 N: N as 4 big-endian bytes.
be32() { printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"; }

# export_split PREFIX N SPLIT: the first N images of $data/PREFIX-* as $folder/SPLIT/<label>/
# NNNNN.pgm, then $idx/PREFIX-* IDX files holding the same images class by class.
export_split() {
    prefix=$1 n=$2 split=$3
    mkdir -p "$work/raw/$split"
    gzip -dc "$data/$prefix-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)) |
        split -b 784 -a 5 -d - "$work/raw/$split/"
    labels=$(gzip -dc "$data/$prefix-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n" | od -An -tu1 -v)
    i=0
    for label in $labels; do
        mkdir -p "$folder/$split/$label"
        { printf 'P5\n28 28\n255\n'; cat "$work/raw/$split/$(printf %05d $i)"; } \
            > "$folder/$split/$label/$(printf %05d $i).pgm"
        i=$((i + 1))
    done
    { printf '\000\000\010\003'; be32 "$n"; be32 28; be32 28
      for d in "$folder/$split"/*/; do for f in "$d"*.pgm; do tail -c 784 "$f"; done; done
    } | gzip > "$idx/$prefix-images-idx3-ubyte.gz"
    { printf '\000\000\010\001'; be32 "$n"
      for d in "$folder/$split"/*/; do
          c=$(basename "$d")
          for f in "$d"*.pgm; do printf "\\$(printf %03o "$c")"; done
      done
    } | gzip > "$idx/$prefix-labels-idx1-ubyte.gz"
}

folder="$work/folder"
idx="$work/idx"
mkdir -p "$folder" "$idx"
export_split train $N_TRAIN train
export_split t10k $N_TEST test
assert "folder: $N_TRAIN training images" [ "$(find "$folder/train" -name '*.pgm' | wc -l)" -eq $N_TRAIN ]
echo "a note, not an image" > "$folder/train/README.txt"
echo "skipped too" > "$folder/train/3/notes.txt"

# ---- data --check: the layout, the counts per class, the size
n3=$(ls "$folder/train/3" | grep -c '\.pgm$')
check "check folder" 0 "image folders" -- "$capsnet" data --check "$folder"
check "check: train count" 0 "^train: $N_TRAIN images, 28x28 pixels \(w x h\), 1 channel \(gray\)" -- \
    "$capsnet" data --check "$folder"
check "check: test count" 0 "^test: $N_TEST images" -- "$capsnet" data --check "$folder"
check "check: class 3 count" 0 "^ +3 +$n3  3$" -- "$capsnet" data --check "$folder"
check "check: ok" 0 "^ok: 10 classes" -- "$capsnet" data --check "$folder"
check "check json" 0 "^\{\"data\": .*\"layout\": \"folder\", \"ok\": true, \"classes\": 10, \"train\": \{\"images\": $N_TRAIN, \"rows\": 28, \"cols\": 28, \"channels\": 1, .*\{\"class\": 3, \"name\": \"3\", \"images\": $n3\}" -- \
    "$capsnet" data --check "$folder" --json
check "check idx" 0 "IDX files" -- "$capsnet" data --check "$idx"
check "check needs DIR" 2 "--check DIR is required" -- "$capsnet" data

# ---- the same training run on the folders and on the IDX files of the same images
flags="--limit $N_TRAIN --test-limit $N_TEST --epochs 1 --batch 50 --seed 5 --quiet $tiny"
check "train on folders" 0 "test accuracy [0-9.]+% after 1 epoch" -- \
    "$capsnet" train --data "$folder" --out "$work/folder.caps" $flags
check "train on idx" 0 "test accuracy [0-9.]+% after 1 epoch" -- \
    "$capsnet" train --data "$idx" --out "$work/idx.caps" $flags
cut -d, -f1-6 "$work/idx.csv" > "$work/idx.cut"
check "folders and idx: same losses and accuracy" 0 "" -- \
    sh -c "cut -d, -f1-6 '$work/folder.csv' | cmp - '$work/idx.cut'"
assert "the log has an epoch" [ "$(wc -l < "$work/folder.csv")" -eq 2 ]
check "test on folders" 0 "accuracy [0-9.]+% \(([0-9]+) / $N_TEST\)" -- \
    "$capsnet" test --model "$work/folder.caps" --data "$folder"
# The original IDX test file, first N_TEST images (in their own order): the same images, so
# the same accuracy; each image's result does not depend on its neighbours.
acc_folder=$("$capsnet" test --model "$work/folder.caps" --data "$folder" | grep '^accuracy')
acc_idx=$("$capsnet" test --model "$work/folder.caps" --data "$data" --limit $N_TEST | grep '^accuracy')
assert "accuracy on the folders printed" [ -n "$acc_folder" ]
assert "same accuracy on the original IDX test images ($acc_folder; $acc_idx)" [ "$acc_folder" = "$acc_idx" ]

# Three class folders: a network of three classes, named after the folders, unless told more.
three="$work/three"
for split in train test; do
    mkdir -p "$three/$split"
    cp -r "$folder/$split/0" "$folder/$split/1" "$folder/$split/2" "$three/$split/"
done
tflags="--epochs 1 --batch 20 --limit 40 --test-limit 20 --quiet $tiny"
check "three classes: taken from the folders" 0 "28x28, 3 classes" -- \
    "$capsnet" train --data "$three" --out "$work/three.caps" $tflags
check "three classes: data --check" 0 "^ok: 3 classes, named" -- "$capsnet" data --check "$three"
check "three classes, --classes 4: one capsule for none" 0 "names 3 classes; the network has 4" -- \
    "$capsnet" train --data "$three" --out "$work/four.caps" --classes 4 $tflags
check "--classes 4: the fourth is none-of-the-above" 0 "none-of-the-above" -- \
    "$capsnet" test --model "$work/four.caps" --data "$three" --limit 20
# A names file instead of the folders' names; the model keeps them, and test prints them.
printf 'zero\none\ntwo\n' > "$work/names.txt"
check "--class-names" 0 "test accuracy" -- "$capsnet" train --data "$three" \
    --out "$work/named.caps" --class-names "$work/names.txt" $tflags
check "names kept in the model: test prints them" 0 "two" -- \
    "$capsnet" test --model "$work/named.caps" --data "$three" --limit 20
check "info lists the names" 0 "^classes: 0=zero 1=one 2=two$" -- "$capsnet" info --model "$work/named.caps"
printf 'zero\none\n' > "$work/names2.txt"
check "--class-names: too few" 1 "names2.txt: 2 names for 3 classes" -- "$capsnet" train \
    --data "$three" --out "$work/bad.caps" --class-names "$work/names2.txt" $tflags
assert "--class-names: too few: no model written" [ ! -e "$work/bad.caps" ]
printf 'zero\none\nTWO\n' > "$work/names3.txt"
check "resume with other names refused" 1 "names3.txt names class 2 'TWO', but .*named.caps calls it 'two'" -- \
    "$capsnet" train --data "$three" --out "$work/named.caps" --class-names "$work/names3.txt" \
    --resume --epochs 2 --quiet
check "resume with the same names" 0 "after 2 epochs" -- "$capsnet" train --data "$three" \
    --out "$work/named.caps" --class-names "$work/names.txt" --resume --epochs 2 --quiet

# IDX files name their classes in class-names.txt beside them (get-data.sh fashion writes it).
cp -r "$idx" "$work/idxn"
printf 'n0\nn1\nn2\nn3\nn4\nn5\nn6\nn7\nn8\nn9\n' > "$work/idxn/class-names.txt"
check "idx: class-names.txt read" 0 "^ +7 +[0-9]+  n7$" -- "$capsnet" data --check "$work/idxn"
printf 'n0\nn1\n' > "$work/idxn/class-names.txt"
check "idx: a label without a name" 1 "idxn: label [2-9] of image [0-9]+ has no class name" -- \
    "$capsnet" data --check "$work/idxn"
printf 'n0\n\nn2\n' > "$work/idxn/class-names.txt"
check "idx: broken names file" 1 "idxn/class-names.txt:2" -- "$capsnet" data --check "$work/idxn"

# ---- refusals: exit 1, the file named
bad="$work/bad"
cp -r "$folder" "$bad"
{ printf 'P5\n27 28\n255\n'; head -c 756 /dev/zero; } > "$bad/train/5/zz.pgm"
check "other size refused" 1 "bad/train/5/zz.pgm: wrong image size \(expected 28x28 pixels \(w x h\), got 27x28\)" -- \
    "$capsnet" data --check "$bad"
check "other size: never resized" 1 "hint: .*never resizes" -- "$capsnet" data --check "$bad"
check "other size: train refuses too" 1 "bad/train/5/zz.pgm: wrong image size" -- \
    "$capsnet" train --data "$bad" --out "$work/bad.caps" $flags
rm "$bad/train/5/zz.pgm"
{ printf 'P6\n28 28\n255\n'; head -c 2352 /dev/zero; } > "$bad/train/7/zz.ppm"
check "mixed channels refused" 1 "bad/train/7/zz.ppm: mixed gray and colour images" -- \
    "$capsnet" data --check "$bad"
check "mixed channels: json" 1 "\"ok\": false, .*\"problems\": \[\".*zz.ppm: mixed gray" -- \
    "$capsnet" data --check "$bad" --json
rm "$bad/train/7/zz.ppm"
head -c 100 "$(ls "$bad"/train/2/*.pgm | head -n 1)" > "$bad/train/2/zz.pgm"
check "cut image refused" 1 "bad/train/2/zz.pgm: truncated pixel data" -- "$capsnet" data --check "$bad"
rm "$bad/train/2/zz.pgm"
rm -r "$bad/test"
check "missing test split" 1 "bad/test: no such folder" -- "$capsnet" data --check "$bad"
mkdir -p "$bad/test"
for c in 0 1 2 3 4 5 6 7 8 9 x; do mkdir -p "$bad/test/$c"; done
check "test split with another class" 1 "bad/test: class folder 'x' is not in .*bad/train" -- \
    "$capsnet" data --check "$bad"
mkdir -p "$bad/train/x"
cp "$(ls "$bad"/train/2/*.pgm | head -n 1)" "$bad/train/x/"
check "more classes than --classes" 1 "too many class folders \(expected at most 10, got 11\)" -- \
    "$capsnet" train --data "$bad" --out "$work/bad.caps" --classes 10 $flags
check "more classes: hint" 1 "hint: .*--classes 11" -- \
    "$capsnet" train --data "$bad" --out "$work/bad.caps" --classes 10 $flags

# A class folder whose name cannot be a class name (over 127 bytes) is refused by name.
long=$(printf 'x%.0s' $(seq 130))
mkdir -p "$work/longname/train/$long" "$work/longname/test/$long"
printf 'P2 2 2 255 1 2 3 4\n' > "$work/longname/train/$long/a.pgm"
check "class folder name too long" 1 "longname/train/x+: class folder name unusable as a class name: name too long" -- \
    "$capsnet" data --check "$work/longname"

# Splits that load but cannot train together: other image shapes, images not square.
shapes="$work/shapes"
mkdir -p "$shapes/train/a" "$shapes/test/a"
printf 'P2 2 2 255 1 2 3 4\n' > "$shapes/train/a/1.pgm"
printf 'P2 3 3 255 1 2 3 4 5 6 7 8 9\n' > "$shapes/test/a/1.pgm"
check "splits of other shapes" 1 "shapes: test images differ from training images \(expected 2x2 pixels, 1 channels, got 3x3, 1\)" -- \
    "$capsnet" data --check "$shapes"
printf 'P2 3 2 255 1 2 3 4 5 6\n' > "$shapes/train/a/1.pgm"
printf 'P2 3 2 255 1 2 3 4 5 6\n' > "$shapes/test/a/1.pgm"
check "images not square" 1 "shapes: images are not square \(expected W = H, got 3x2\)" -- \
    "$capsnet" data --check "$shapes"

cifar="$work/cifar"
mkdir -p "$cifar"
head -c $((3073 * 2 + 5)) /dev/zero > "$cifar/test_batch.bin"
check "cifar: cut batch refused" 1 "cifar/data_batch_1.bin: no such file" -- \
    "$capsnet" data --check "$cifar"
check "cifar: wrong length" 1 "cifar/test_batch.bin: length not a whole number of records .*got 6151 bytes" -- \
    "$capsnet" data --check "$cifar"

# Small training sets: the first N of each class of the training split, the whole test split.
check "make a subset of 10 a class" 0 "100 training images \(the first 10 of each class" -- \
    "$capsnet" data --make-subset "$work/sub" --per-class 10 --data "$data"
check "the subset has 10 of each class" 0 "train: 100 images" -- "$capsnet" data --check "$work/sub"
assert "the subset's classes hold 10 each" [ "$("$capsnet" data --check "$work/sub" --json |
    grep -o '"images": 10}' | wc -l)" -eq 10 ]
pgm_from_idx "$data/train-images-idx3-ubyte.gz" 0 "$work/first.pgm"
pgm_from_idx "$work/sub/train-images-idx3-ubyte.gz" 0 "$work/sub-first.pgm"
check "the subset starts with the first training image" 0 "" -- cmp "$work/first.pgm" "$work/sub-first.pgm"
check "a class with too few images is refused" 1 "fewer than --per-class 7000" -- \
    "$capsnet" data --make-subset "$work/sub2" --per-class 7000 --data "$data"
check "--make-subset without --per-class" 2 "needs --per-class" -- "$capsnet" data --make-subset "$work/sub3"

summary
