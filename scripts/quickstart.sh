#!/bin/sh
# quickstart.sh: from a fresh clone to a trained model: installs the build dependencies
# (apt-get), builds ./capsnet, fetches MNIST into data/mnist (from $MNIST_DIR when set,
# else from the public mirrors, checksums verified), trains one epoch and tests it.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make
scripts/get-data.sh mnist data/mnist
./capsnet train --data data/mnist --out mnist.caps --epochs 1 --overwrite
./capsnet test --model mnist.caps --data data/mnist
