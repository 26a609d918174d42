#!/usr/bin/env bash
# get-data.sh: puts MNIST, Fashion-MNIST or CIFAR-10 in DIR and verifies them.
#
#   scripts/get-data.sh mnist|fashion|cifar10 DIR
#
# mnist, fashion: the four IDX files, train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
# t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; fashion also writes class-names.txt
# (T-shirt/top ... Ankle boot, the data set's ten names, which capsnet reads beside the IDX
# files and stores in the models it trains). Where they come from, first match wins:
#   mnist    $MNIST_DIR when set; else a download, from each mirror in turn.
#   fashion  $FASHION_DIR when set; else /usr/share/datasets/fashion-mnist when it holds all
#            four (Debian package dataset-fashion-mnist); else a download.
# Each file is copied or downloaded to a temporary name in DIR, verified against the SHA-256
# sums below, then renamed, so DIR never holds a bad file under a final name. Files already
# in DIR with the right sums are kept.
#
# cifar10: CIFAR-10's binary version, data_batch_1.bin .. data_batch_5.bin, test_batch.bin
# and batches.meta.txt, from cifar-10-binary.tar.gz: $CIFAR10_DIR when set (a folder holding
# that archive, or the files it unpacks to), else a download from the authors' page. The
# archive is checked against the MD5 its authors publish (and its length); files copied
# without the archive are checked by length only (30,730,000 bytes a batch: 10,000 records
# of 3073), since no per-file sums are published. The files go to temporary names first too.
#
# Exit status: 0 done, 1 failed, 2 usage error.
set -eu
set -o pipefail # a failed gzip -dc must not pass as the checksum of what it did write

prog=get-data.sh
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
MNIST_MIRRORS="https://ossci-datasets.s3.amazonaws.com/mnist/ https://storage.googleapis.com/cvdf-datasets/mnist/"
# The Fashion-MNIST bucket serves plain HTTP only; the checksums are what we trust.
FASHION_MIRRORS="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_DEBIAN_DIR=/usr/share/datasets/fashion-mnist

# MNIST: SHA-256 of the .gz files as the mirrors serve them.
mnist_sha256() {
    case $1 in
    train-images-idx3-ubyte.gz) echo 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609 ;;
    train-labels-idx1-ubyte.gz) echo 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c ;;
    t10k-images-idx3-ubyte.gz) echo 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6 ;;
    t10k-labels-idx1-ubyte.gz) echo f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6 ;;
    esac
}

# Fashion-MNIST: SHA-256 of the *decompressed* files. Debian recompressed the .gz files, so
# their bytes (and the MD5s in zalandoresearch's README) differ from the download's, but the
# IDX data inside is the official release: its MD5s equal the raw-file MD5s torchvision lists
# (f4a8712d..., 9018921c..., 8181f547..., 15d48437...). Checking the decompressed data accepts
# both sources and still pins every byte a program reads.
fashion_sha256() {
    case $1 in
    train-images-idx3-ubyte.gz) echo c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 ;;
    train-labels-idx1-ubyte.gz) echo bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 ;;
    t10k-images-idx3-ubyte.gz) echo 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b ;;
    t10k-labels-idx1-ubyte.gz) echo 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 ;;
    esac
}

usage() {
    echo "usage: $prog mnist|fashion|cifar10 DIR" >&2
    echo "  (copies from \$MNIST_DIR / \$FASHION_DIR / \$CIFAR10_DIR when set, else downloads)" >&2
    exit 2
}

die() {
    echo "$prog: error: $1" >&2
    if [ $# -gt 1 ]; then echo "hint: $2" >&2; fi
    exit 1
}

case ${1-} in -h | --help)
    echo "usage: $prog mnist|fashion|cifar10 DIR"
    exit 0
    ;;
esac
[ $# -eq 2 ] || usage
set_name=$1
dir=$2
case $set_name in
mnist | fashion | cifar10) ;;
*)
    echo "$prog: error: unknown data set '$set_name' (expected mnist, fashion or cifar10)" >&2
    usage
    ;;
esac
[ -n "$dir" ] || usage

# The temporary file in flight, removed on any exit or interrupt.
tmp=""
unpack=""
cleanup() {
    if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi
    if [ -n "$unpack" ]; then rm -rf -- "$unpack"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# download URL OUT: 0 on success. Timeouts keep a machine without network from hanging;
# --speed-limit aborts a stalled transfer without capping a slow but live one.
download() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --connect-timeout 10 --retry 1 --speed-limit 1024 --speed-time 60 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q --timeout=10 --tries=2 -O "$2" "$1"
    else
        die "neither curl nor wget found (expected one, to download $1)" \
            "install curl, or copy the files by hand and set $env_var to their folder"
    fi
}


# MD5 of cifar-10-binary.tar.gz as https://www.cs.toronto.edu/~kriz/cifar.html publishes it,
# and its length in bytes.
CIFAR10_URL=https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
CIFAR10_MD5=c32a1d4ab5d03f1284b67883e8d87530
CIFAR10_ARCHIVE_BYTES=170052171
CIFAR10_FILES="data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin"
CIFAR10_BATCH_BYTES=30730000

file_bytes() { wc -c <"$1" | tr -d ' '; }

# The six batches and the names in DIR, each of the right length.
cifar10_present() {
    local f
    for f in $CIFAR10_FILES; do
        [ -f "$dir/$f" ] && [ "$(file_bytes "$dir/$f")" = $CIFAR10_BATCH_BYTES ] || return 1
    done
    [ -f "$dir/batches.meta.txt" ]
}

# Puts CIFAR-10 in DIR: from $CIFAR10_DIR (archive or unpacked files) or the download.
get_cifar10() {
    mkdir -p -- "$dir" || die "$dir: cannot create folder"
    if cifar10_present; then
        echo "$dir: cifar10 already present (lengths ok)"
        return 0
    fi
    local src=${CIFAR10_DIR-} archive="" how f
    if [ -n "$src" ] && [ ! -f "$src/cifar-10-binary.tar.gz" ]; then
        # Unpacked files: copied to temporary names, checked by length, then renamed.
        for f in $CIFAR10_FILES batches.meta.txt; do
            [ -f "$src/$f" ] || die "$src/$f: no such file (expected cifar-10-binary.tar.gz or the files it unpacks to in \$CIFAR10_DIR)" \
                "unset CIFAR10_DIR to download the archive, or point it at the cifar-10-batches-bin folder"
            if [ "$f" != batches.meta.txt ] && [ "$(file_bytes "$src/$f")" != $CIFAR10_BATCH_BYTES ]; then
                die "$src/$f: wrong length (expected $CIFAR10_BATCH_BYTES bytes, 10000 records of 3073, got $(file_bytes "$src/$f"))"
            fi
        done
        for f in $CIFAR10_FILES batches.meta.txt; do
            tmp=$dir/.$f.tmp.$$
            cat -- "$src/$f" >"$tmp" || die "$src/$f: cannot copy to $tmp"
            if [ "$f" != batches.meta.txt ] && [ "$(file_bytes "$tmp")" != $CIFAR10_BATCH_BYTES ]; then
                die "$src/$f: wrong length (expected $CIFAR10_BATCH_BYTES bytes, 10000 records of 3073, got $(file_bytes "$tmp"))"
            fi
            mv -f -- "$tmp" "$dir/$f" || die "$dir/$f: cannot rename from $tmp"
            tmp=""
        done
        echo "$dir: cifar10 copied from $src (lengths ok; no archive, so no MD5 to check)"
        return 0
    fi
    tmp=$dir/.cifar-10-binary.tar.gz.tmp.$$
    if [ -n "$src" ]; then
        archive=$src/cifar-10-binary.tar.gz
        cat -- "$archive" >"$tmp" || die "$archive: cannot copy to $tmp"
        how="copied from $archive"
    else
        download "$CIFAR10_URL" "$tmp" || die "$CIFAR10_URL: download failed" \
            "without network, copy cifar-10-binary.tar.gz from another machine and set CIFAR10_DIR to its folder"
        archive=$CIFAR10_URL
        how="downloaded from $CIFAR10_URL"
    fi
    local got_bytes got_md5
    got_bytes=$(file_bytes "$tmp")
    [ "$got_bytes" = $CIFAR10_ARCHIVE_BYTES ] ||
        die "$archive: wrong length (expected $CIFAR10_ARCHIVE_BYTES bytes, got $got_bytes)"
    command -v md5sum >/dev/null 2>&1 || die "md5sum not found (expected it, to verify $archive)"
    got_md5=$(md5sum <"$tmp" | cut -d' ' -f1)
    [ "$got_md5" = $CIFAR10_MD5 ] || die "$archive: MD5 mismatch (expected $CIFAR10_MD5, got $got_md5)"
    # Unpack into a temporary folder inside DIR, then rename each file into place.
    unpack=$dir/.cifar10.unpack.$$
    mkdir -p -- "$unpack" || die "$unpack: cannot create folder"
    if ! tar -xzf "$tmp" -C "$unpack"; then die "$archive: cannot unpack"; fi
    for f in $CIFAR10_FILES batches.meta.txt; do
        [ -f "$unpack/cifar-10-batches-bin/$f" ] || die "$archive: no cifar-10-batches-bin/$f in it"
    done
    for f in $CIFAR10_FILES batches.meta.txt; do
        mv -f -- "$unpack/cifar-10-batches-bin/$f" "$dir/$f" || die "$dir/$f: cannot move into place"
    done
    rm -rf -- "$unpack"
    unpack=""
    rm -f -- "$tmp"
    tmp=""
    echo "$dir: cifar10 $how (MD5 ok)"
}

if [ "$set_name" = cifar10 ]; then
    env_var=CIFAR10_DIR
    get_cifar10
    exit 0
fi
# The variable that names a folder to copy from (no ${set_name^^}: macOS has bash 3.2).
if [ "$set_name" = mnist ]; then env_var=MNIST_DIR; else env_var=FASHION_DIR; fi

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum found (expected one, to verify the files)"
fi

expected_sha256() {
    if [ "$set_name" = mnist ]; then mnist_sha256 "$1"; else fashion_sha256 "$1"; fi
}

# The sum to compare with expected_sha256; never fails, so it is safe in a test.
actual_sha256() {
    local s
    if [ "$set_name" = mnist ]; then
        s=$(sha256 <"$1") || s="(unreadable file)"
    else
        s=$(gzip -dc <"$1" 2>/dev/null | sha256) || s="(not a valid gzip file)"
    fi
    echo "$s"
}

# 0 when path holds the file name with the right sum.
file_ok() { [ -f "$1" ] && [ "$(actual_sha256 "$1")" = "$(expected_sha256 "$2")" ]; }

# Fashion-MNIST's class names, label k on line k+1 (zalandoresearch/fashion-mnist's README),
# written atomically; capsnet reads class-names.txt beside IDX files.
write_fashion_names() {
    local final=$dir/class-names.txt
    tmp=$dir/.class-names.txt.tmp.$$
    printf '%s\n' "T-shirt/top" Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot" >"$tmp" ||
        die "$tmp: cannot write"
    mv -f -- "$tmp" "$final" || die "$final: cannot rename from $tmp"
    tmp=""
}

# Where the files come from: a folder to copy from, or (empty) the mirrors.
# from_env: 1 when the user named that folder, so a missing file there is an error.
src_dir=""
from_env=0
if [ -n "${!env_var-}" ]; then
    src_dir=${!env_var}
    from_env=1
elif [ "$set_name" = fashion ]; then
    debian_has_all=1
    for f in $FILES; do [ -f "$FASHION_DEBIAN_DIR/$f" ] || debian_has_all=0; done
    if [ $debian_has_all = 1 ]; then src_dir=$FASHION_DEBIAN_DIR; fi
fi
if [ "$set_name" = mnist ]; then mirrors=$MNIST_MIRRORS; else mirrors=$FASHION_MIRRORS; fi

mkdir -p -- "$dir" || die "$dir: cannot create folder"

# The files DIR already holds with the right sums; checked once, as a fashion check
# decompresses the file.
missing=""
for f in $FILES; do file_ok "$dir/$f" "$f" || missing="$missing $f"; done
if [ -z "$missing" ]; then
    if [ "$set_name" = fashion ]; then write_fashion_names; fi
    echo "$dir: $set_name already present (checksums ok)"
    exit 0
fi

# A folder named by the user must hold every file we still need, before anything is copied.
if [ $from_env = 1 ]; then
    for f in $missing; do
        [ -f "$src_dir/$f" ] ||
            die "$src_dir/$f: no such file (expected the four $set_name files in \$$env_var)" \
                "unset $env_var to download them, or point it at the folder that holds them"
    done
fi

for f in $FILES; do
    final=$dir/$f
    case " $missing " in
    *" $f "*) ;;
    *)
        echo "$final: already present (checksum ok)"
        continue
        ;;
    esac
    if [ -e "$final" ]; then echo "$final: checksum mismatch, replacing it"; fi
    tmp=$dir/.$f.tmp.$$
    if [ -n "$src_dir" ]; then
        source=$src_dir/$f
        # cat, not cp: the copy gets DIR's usual mode, not a read-only source's.
        cat -- "$source" >"$tmp" || die "$source: cannot copy to $tmp"
        how="copied from $source"
    else
        source=""
        for base in $mirrors; do
            if download "$base$f" "$tmp"; then
                source=$base$f
                break
            fi
            echo "$prog: warning: $base$f: download failed" >&2
        done
        [ -n "$source" ] || die "$f: download failed from every mirror (tried: $mirrors)" \
            "without network, copy the files from another machine and set $env_var to their folder"
        how="downloaded from $source"
    fi
    want=$(expected_sha256 "$f")
    got=$(actual_sha256 "$tmp")
    if [ "$got" != "$want" ]; then
        if [ "$set_name" = fashion ]; then
            die "$source: SHA-256 mismatch (expected $want, got $got)" \
                "Fashion-MNIST sums are of the decompressed data (gzip -dc FILE | sha256sum)"
        fi
        die "$source: SHA-256 mismatch (expected $want, got $got)"
    fi
    mv -f -- "$tmp" "$final" || die "$final: cannot rename from $tmp"
    tmp=""
    echo "$final: $how (checksum ok)"
done
if [ "$set_name" = fashion ]; then
    write_fashion_names
    echo "$dir/class-names.txt: the ten class names"
fi
