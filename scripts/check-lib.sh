#!/bin/sh
# check-lib.sh: the core library as a user of it meets it, from a clean copy of this tree:
#   1. `make lib-test` where pkg-config knows none of cairo, fontconfig, libmicrohttpd and
#      cJSON (PKG_CONFIG=false): the core, its tests and the core commands build and pass;
#   2. neither libcapsnet.so nor that capsnet needs a presentation library, and the shared
#      library exports the API of capsnet.h and nothing else;
#   3. `make install` into a temporary prefix, then examples/classify.c built against the
#      installed copy with `pkg-config --cflags --libs capsnet` (shared) and with --static,
#      and run on a digit: it prints what the installed `capsnet predict` prints.
# Usage: scripts/check-lib.sh (MNIST_DIR as for make test). Prints "check-lib: ok" at the end.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/capsnet-check-lib.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-lib: FAIL: $*" >&2; exit 1; }

# A clean folder: the files git tracks or would track, none of the builds.
mkdir "$tmp/src"
(cd "$here" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf -) | tar -xf - -C "$tmp/src"
mkdir -p "$tmp/src/data"
[ -d "$here/data/mnist" ] && cp -r "$here/data/mnist" "$tmp/src/data/"
cd "$tmp/src"

echo "check-lib: make lib-test with the presentation libraries unknown to pkg-config"
PKG_CONFIG=false make -s lib-test CAPS_SKIP_E2E=1 MNIST_DIR="${MNIST_DIR:-}" > "$tmp/lib-test.log" 2>&1 ||
    { tail -n 40 "$tmp/lib-test.log"; fail "make lib-test"; }
tail -n 1 "$tmp/lib-test.log"

echo "check-lib: what the core needs and exports"
for f in build-lib/capsnet build-lib/libcapsnet.so; do
    needed=$(objdump -p "$f" | awk '/NEEDED/ { print $2 }' | tr '\n' ' ')
    echo "  $f needs: $needed"
    case "$needed" in
    *cairo* | *fontconfig* | *microhttpd* | *cjson*) fail "$f needs a presentation library" ;;
    esac
done
others=$(nm -D --defined-only build-lib/libcapsnet.so | awk '{ print $3 }' | grep -vE '^caps(net)?_' || true)
[ -z "$others" ] || fail "libcapsnet.so exports more than capsnet.h: $others"
soname=$(objdump -p build-lib/libcapsnet.so | awk '/SONAME/ { print $2 }')
echo "  soname $soname, $(nm -D --defined-only build-lib/libcapsnet.so | wc -l) symbols, all caps_* / capsnet_*"

echo "check-lib: make install, then examples/classify.c against the installed copy"
prefix="$tmp/prefix"
PKG_CONFIG=false make -s BUILD=build-lib FIGURES=0 install PREFIX="$prefix" > /dev/null
for f in bin/capsnet lib/libcapsnet.a "lib/$soname" lib/libcapsnet.so include/capsnet.h \
         lib/pkgconfig/capsnet.pc; do
    [ -e "$prefix/$f" ] || fail "make install did not write $f"
done
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
echo "  pkg-config --cflags --libs capsnet: $(pkg-config --cflags --libs capsnet)"
cc -std=c11 -Wall -Wextra -Werror examples/classify.c $(pkg-config --cflags --libs capsnet) \
    -o "$tmp/classify"
# Static: the archive, and what capsnet.pc says it needs (Libs.private).
cc -std=c11 -Wall -Wextra -Werror examples/classify.c $(pkg-config --cflags capsnet) \
    "$prefix/lib/libcapsnet.a" $(pkg-config --static --libs capsnet | sed 's/-lcapsnet//') \
    -o "$tmp/classify-static"
objdump -p "$tmp/classify-static" | grep -q 'NEEDED.*libcapsnet' && fail "classify-static needs libcapsnet.so"

data=data/mnist
"$prefix/bin/capsnet" train --data "$data" --out "$tmp/tiny.caps" --limit 300 --test-limit 100 \
    --epochs 1 --batch 50 --seed 5 --quiet \
    --config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64 > /dev/null
{ printf 'P5\n28 28\n255\n'; gzip -dc "$data/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784; } \
    > "$tmp/digit.pgm"
want=$("$prefix/bin/capsnet" predict --model "$tmp/tiny.caps" "$tmp/digit.pgm")
got=$(LD_LIBRARY_PATH="$prefix/lib" "$tmp/classify" "$tmp/tiny.caps" "$tmp/digit.pgm")
got_static=$("$tmp/classify-static" "$tmp/tiny.caps" "$tmp/digit.pgm")
echo "  capsnet predict: $want"
echo "  classify:        $got"
[ "$got" = "$want" ] || fail "classify (shared) differs from capsnet predict"
[ "$got_static" = "$want" ] || fail "classify (static) differs from capsnet predict: $got_static"
LD_LIBRARY_PATH="$prefix/lib" ldd "$tmp/classify" | grep -q "$prefix/lib/$soname" ||
    fail "classify does not load the installed $soname"
echo "check-lib: ok"
