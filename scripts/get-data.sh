#!/usr/bin/env bash
# get-data.sh: puts the four IDX files of MNIST or Fashion-MNIST in DIR and verifies them.
#
#   scripts/get-data.sh mnist|fashion DIR
#
# Files: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
# t10k-labels-idx1-ubyte.gz. Where they come from, first match wins:
#   mnist    $MNIST_DIR when set; else a download, from each mirror in turn.
#   fashion  $FASHION_DIR when set; else /usr/share/datasets/fashion-mnist when it holds all
#            four (Debian package dataset-fashion-mnist); else a download.
# Each file is copied or downloaded to a temporary name in DIR, verified against the SHA-256
# sums below, then renamed, so DIR never holds a bad file under a final name. Files already
# in DIR with the right sums are kept. Exit status: 0 done, 1 failed, 2 usage error.
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
    echo "usage: $prog mnist|fashion DIR" >&2
    echo "  (copies from \$MNIST_DIR / \$FASHION_DIR when set, else downloads)" >&2
    exit 2
}

die() {
    echo "$prog: error: $1" >&2
    if [ $# -gt 1 ]; then echo "hint: $2" >&2; fi
    exit 1
}

case ${1-} in -h | --help)
    echo "usage: $prog mnist|fashion DIR"
    exit 0
    ;;
esac
[ $# -eq 2 ] || usage
set_name=$1
dir=$2
case $set_name in
mnist | fashion) ;;
*)
    echo "$prog: error: unknown data set '$set_name' (expected mnist or fashion)" >&2
    usage
    ;;
esac
[ -n "$dir" ] || usage
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

# The temporary file in flight, removed on any exit or interrupt.
tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi; }
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
