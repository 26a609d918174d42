#!/usr/bin/env python3
"""colour-mnist.py: writes a colour image-folder data set made from MNIST, for trying
capsnet's colour path (and its class names) on a machine that cannot download CIFAR-10.

    scripts/colour-mnist.py MNIST_DIR OUT_DIR [--train N] [--test N] [--seed S]

Each digit is drawn in a random colour (hue uniform, full saturation and value) over a
background of another random colour at a quarter of the brightness, pixel by pixel

    out_c = bg_c + (fg_c - bg_c) * x / 255        (x the MNIST pixel, c = red, green, blue)

so that colour carries no information about the class: the network has to find the digit's
shape in three planes, and its decoder has to reconstruct the colours too. Written as
OUT_DIR/train/<name>/<index>.ppm and OUT_DIR/test/<name>/<index>.ppm (binary PPM, P6) with the
class folders named 0-zero .. 9-nine, so the model learns those names. The first N images of each
MNIST split are used (defaults 10000 and 2000), and the colours come from a seeded generator:
the same arguments write the same bytes. Python's standard library only.
"""
import argparse
import colorsys
import gzip
import os
import random
import struct
import sys

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Class folders sort by name and label k is the k-th (ImageFolder's rule): the digit in front
# keeps label k the digit k.
NAMES = [f"{d}-{w}" for d, w in enumerate(WORDS)]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    rank = magic & 0xFF
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def find(mnist, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(mnist, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"colour-mnist.py: error: {os.path.join(mnist, name)}[.gz]: no such file "
             "(expected MNIST's IDX files; scripts/get-data.sh mnist DIR writes them)")


def colour(rng, value):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), 1.0, value)
    return (r * 255.0, g * 255.0, b * 255.0)


def write_split(mnist, out, split, prefix, count, rng):
    dims, pixels = read_idx(find(mnist, f"{prefix}-images-idx3-ubyte"))
    _, labels = read_idx(find(mnist, f"{prefix}-labels-idx1-ubyte"))
    n, rows, cols = dims
    count = min(count, n)
    for name in NAMES:
        os.makedirs(os.path.join(out, split, name), exist_ok=True)
    hw = rows * cols
    for i in range(count):
        fg, bg = colour(rng, 1.0), colour(rng, 0.25)
        img = pixels[i * hw:(i + 1) * hw]
        body = bytearray(3 * hw)
        for p, x in enumerate(img):
            t = x / 255.0
            for c in range(3):
                body[3 * p + c] = int(round(bg[c] + (fg[c] - bg[c]) * t))
        path = os.path.join(out, split, NAMES[labels[i]], f"{i:05d}.ppm")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (cols, rows) + bytes(body))
        os.replace(tmp, path)
    return count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mnist")
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    n_train = write_split(a.mnist, a.out, "train", "train", a.train, rng)
    n_test = write_split(a.mnist, a.out, "test", "t10k", a.test, rng)
    print(f"{a.out}: {n_train} training and {n_test} test images, 28x28 colour, classes "
          + " ".join(NAMES))


if __name__ == "__main__":
    main()
