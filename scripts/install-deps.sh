#!/bin/sh
# install-deps.sh: installs, with apt-get, the Debian packages capsnet needs to build and
# test, skipping those already installed. Run as root (or it uses sudo when available).
#   build: gcc, make, pkg-config, oneDNN (matrix products; OpenBLAS for BLAS=openblas),
#   zlib, libpng, cairo (figures), libmicrohttpd and cJSON (capsnet serve), Open MPI (make
#   MPI=1: training across processes; tests/cli/mpi.sh);
#   data: curl, ca-certificates
#   with --ci, what CI's extra checks use: valgrind, clang and libFuzzer (fuzzing),
#   Chromium and Node.js (browser checks; the npm packages: cd tests/browser && npm ci),
#   wrk (load on capsnet serve), python3-torch and python3-onnx (the PyTorch bridge and the
#   ONNX export; the npm package onnxruntime-node runs the export: cd tests/onnx && npm ci)
set -eu
packages="build-essential pkg-config libdnnl-dev libopenblas-dev zlib1g-dev libpng-dev libcairo2-dev libmicrohttpd-dev libcjson-dev libopenmpi-dev openmpi-bin ca-certificates curl"
if [ "${1:-}" = "--ci" ]; then
    packages="$packages valgrind clang libclang-rt-14-dev chromium wrk python3-torch python3-onnx"
    command -v node >/dev/null 2>&1 || packages="$packages nodejs npm"
fi
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps.sh: all packages present"
    exit 0
fi
echo "install-deps.sh: installing$missing"
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "install-deps.sh: error: not root and no sudo; install:$missing" >&2
    exit 1
fi
$sudo apt-get update -qq
# shellcheck disable=SC2086 # the list is meant to split into words
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
