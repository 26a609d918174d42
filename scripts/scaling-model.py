#!/usr/bin/env python3
"""scaling-model.py: step time and efficiency of data-parallel capsnet on N machines, from
one machine's measured speed, for SCALING.md (Python's standard library only).

    python3 scripts/scaling-model.py --images-per-s 170 [--params 8215568] [--batch 100]

Each machine trains its share of the global batch at the measured speed (compute time
c = 1 / images-per-s seconds per image), then the machines sum the gradients with a ring
allreduce (what MPI libraries use for large messages): every machine sends and receives
2 (N - 1) / N of the gradient's bytes, in 2 (N - 1) messages, so

    allreduce(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency
    step(N)      = c * ceil(B / N) + allreduce(N)           (no overlap: the upper bound)
    efficiency   = c * B / (N * step(N))                    (1: N times one machine's speed)

and the smallest global batch with efficiency >= 0.9 is the B with c * B / N >= 9 *
allreduce(N). Overlapping the sums with the backward pass can hide up to the backward
pass's share of the compute; the model leaves that out, so its efficiencies are floors.
"""
import argparse
import math


def allreduce_s(n, nbytes, gbit, latency):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes * 8 / (gbit * 1e9) + 2 * (n - 1) * latency


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images-per-s", type=float, required=True,
                    help="one machine's measured training speed")
    ap.add_argument("--params", type=int, default=8215568, help="parameters (MNIST network)")
    ap.add_argument("--batch", type=int, default=100, help="global batch")
    ap.add_argument("--latency-us", type=float, default=25.0,
                    help="one message's latency in microseconds (TCP over Ethernet: ~25)")
    args = ap.parse_args()
    c = 1.0 / args.images_per_s
    nbytes = 4 * args.params
    lat = args.latency_us * 1e-6
    print(f"one machine: {args.images_per_s:g} images/s (c = {1e3 * c:.2f} ms an image); "
          f"gradient {nbytes / 1e6:.1f} MB; latency {args.latency_us:g} us; global batch "
          f"{args.batch}")
    print()
    print("| machines | link | allreduce | step | images/s | efficiency | "
          "global batch for 90% |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for gbit in (10, 100):
        for n in (1, 2, 4, 8, 16, 32, 64):
            a = allreduce_s(n, nbytes, gbit, lat)
            step = c * math.ceil(args.batch / n) + a
            eff = c * args.batch / (n * step)
            if n == 1 and gbit != 10:
                continue  # one machine has no link: its row is the same
            b90 = math.ceil(9 * n * a / c)
            need = f"{b90} ({b90 / n:.0f} a machine)" if n > 1 else "any"
            link = f"{gbit} Gbit/s" if n > 1 else "none"
            print(f"| {n} | {link} | {1e3 * a:.1f} ms | {1e3 * step:.0f} ms | "
                  f"{args.batch / step:.0f} | {100 * eff:.0f}% | {need} |")


if __name__ == "__main__":
    main()
