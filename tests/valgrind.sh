#!/bin/sh
# valgrind.sh: the program under valgrind's memcheck: a short training run, then test and
# predict on the model it wrote. Any invalid read or write, use of uninitialised memory or
# leak (definite, indirect or possible, after tests/valgrind.supp) fails it.
#   tests/valgrind.sh PROGRAM
# PROGRAM should be built with NATIVE=0 (valgrind does not know AVX-512) and BLAS=none
# (the library then runs only capsnet's own code), as `make valgrind` builds it.
set -u
. "$(dirname "$0")/cli/lib.sh"
capsnet=${1:-build-valgrind/capsnet}
data=${CAPS_DATA:-data/mnist}
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
vg="valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --suppressions=$(dirname "$0")/valgrind.supp
    --quiet"
pgm_from_idx "$data/t10k-images-idx3-ubyte.gz" 0 "$work/digit.pgm"
check "memcheck: train" 0 "test accuracy" -- $vg "$capsnet" train --data "$data" \
    --out "$work/vg.caps" --limit 64 --test-limit 32 --epochs 2 --batch 16 --threads 2 $tiny --quiet
check "memcheck: test" 0 "confusion matrix" -- $vg "$capsnet" test --model "$work/vg.caps" \
    --data "$data" --limit 64 --threads 2
check "memcheck: predict" 0 "digit.pgm: class" -- $vg "$capsnet" predict --model "$work/vg.caps" \
    "$work/digit.pgm"
check "memcheck: predict a bad file" 1 "unsupported image format" -- $vg "$capsnet" predict \
    --model "$work/vg.caps" "$work/vg.csv"
check "memcheck: a damaged model" 1 "not a capsnet model file" -- $vg "$capsnet" test \
    --model "$work/digit.pgm" --data "$data"
summary
