#!/usr/bin/python3
"""torch_ddp.py: data-parallel training of the same Capsule Network in PyTorch, with
DistributedDataParallel over gloo on the CPU, for the "1 process x 2 threads" against
"2 processes x 1 thread" comparison in SCALING.md.

    /usr/bin/python3 bench/torch_ddp.py --procs 2 --threads 1
    /usr/bin/python3 bench/torch_ddp.py --procs 1 --threads 2 --json

The network and loss are bench/torch_capsnet.py's (imported, not copied), trained with
Adam. --batch is the global batch: rank r takes images [B*r/N, B*(r+1)/N), as our C code
shares a batch between threads, so the shares differ by at most one. Each rank's loss is
the mean over its own share and DDP averages the gradients over the ranks, so with unequal
shares the gradient is slightly off the global batch mean (a weighting of a few images);
that does not change the speed. With --procs 1 there is no process group at all: plain
training with torch.set_num_threads(T). With N > 1, N processes are spawned, each with
torch.set_num_threads(T), joined by init_process_group("gloo") through a file store, and
the model is wrapped in DistributedDataParallel (default bucket size), whose backward
all-reduces the gradients while it runs.

Random images (1x28x28, fixed seed; speed does not depend on the pixels) and labels, two
warm-up steps, then --steps timed steps without barriers; rank 0's median step gives
step_ms and images_per_s = B / median step. allreduce_ms is the median of 10 plain
dist.all_reduce calls on a float32 tensor of the model's parameter count, i.e. the
communication of one step's full gradient on its own (0 with --procs 1). Prints one JSON
line with --json (procs, threads, batch, steps, step_ms, images_per_s, allreduce_ms,
params, torch), a readable line otherwise.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# Spawned processes re-import this file, so the path insert must be at module level.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_capsnet import CapsNet, loss_fn  # noqa: E402

WARMUP = 2
ALLREDUCE_REPS = 10


def share(batch, rank, procs):
    """Rank's contiguous images [b0, b1): the C code's thread_share."""
    return batch * rank // procs, batch * (rank + 1) // procs


def worker(rank, args, tmpdir):
    torch.set_num_threads(args.threads)
    distributed = args.procs > 1
    if distributed:
        try:
            dist.init_process_group("gloo", init_method="file://" + os.path.join(tmpdir, "store"),
                                    rank=rank, world_size=args.procs)
        except Exception as e:
            raise RuntimeError("rank %d: init_process_group(gloo) failed: %s" % (rank, e)) from e
    # The same seed on every rank: identical initial weights (DDP broadcasts rank 0's
    # anyway) and the same global batch, of which each rank keeps its share.
    torch.manual_seed(1)
    net = CapsNet()
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    b0, b1 = share(args.batch, rank, args.procs)
    x, labels = x[b0:b1].contiguous(), labels[b0:b1].contiguous()
    model = torch.nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    times = []
    for i in range(WARMUP + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        lengths, recon = model(x, labels)
        loss_fn(lengths, recon, x, labels).backward()
        opt.step()
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)

    allreduce_s = 0.0
    if distributed:
        # The gradient's all-reduce alone, as one flat tensor (DDP's buckets split it, so
        # this is a floor on the communication in a step, not an exact share of it).
        buf = torch.ones(params, dtype=torch.float32)
        dist.barrier()
        ar = []
        for i in range(1 + ALLREDUCE_REPS):
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            if i:
                ar.append(time.perf_counter() - t0)
        allreduce_s = statistics.median(ar)
        dist.barrier()
        dist.destroy_process_group()

    if rank == 0:
        step = statistics.median(times)
        result = {"procs": args.procs, "threads": args.threads, "batch": args.batch,
                  "steps": args.steps, "step_ms": 1e3 * step, "images_per_s": args.batch / step,
                  "allreduce_ms": 1e3 * allreduce_s, "params": params,
                  "torch": torch.__version__}
        if tmpdir is None:
            return result
        with open(os.path.join(tmpdir, "result.json"), "w") as f:
            json.dump(result, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=2, help="processes (ranks), default 2")
    ap.add_argument("--threads", type=int, default=1, help="threads per process, default 1")
    ap.add_argument("--batch", type=int, default=100, help="global batch, default 100")
    ap.add_argument("--steps", type=int, default=20, help="timed steps after 2 warm-up ones")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    if args.procs < 1 or args.threads < 1 or args.steps < 1:
        ap.error("--procs, --threads and --steps must be at least 1")
    if args.batch < args.procs:
        ap.error("--batch %d leaves some of the %d ranks without images" % (args.batch, args.procs))

    if args.procs == 1:
        result = worker(0, args, None)
    else:
        if not dist.is_available() or not dist.is_gloo_available():
            sys.exit("torch_ddp.py: this PyTorch (%s) has no torch.distributed gloo backend"
                     % torch.__version__)
        # One machine: talk over loopback. Gloo otherwise picks the interface that the
        # hostname resolves to, which in containers is often missing or unreachable.
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        # Set before the children import torch, so their OpenMP pools start at T threads
        # rather than one per core (set_num_threads then has nothing to shrink).
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        tmpdir = tempfile.mkdtemp(prefix="torch_ddp.")
        try:
            mp.spawn(worker, args=(args, tmpdir), nprocs=args.procs, join=True)
            with open(os.path.join(tmpdir, "result.json")) as f:
                result = json.load(f)
        except Exception as e:
            # mp.spawn re-raises a child's failure with its traceback in the message.
            sys.exit("torch_ddp.py: a rank failed:\n%s" % e)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    if args.json:
        print(json.dumps(result))
    else:
        print("pytorch %s %s: %d procs x %d threads, batch %d: %.1f ms/step, "
              "%.1f images/s, all-reduce of %d params %.1f ms (median of %d steps)"
              % (result["torch"], "DDP gloo" if args.procs > 1 else "no DDP",
                 result["procs"], result["threads"], result["batch"],
                 result["step_ms"], result["images_per_s"], result["params"],
                 result["allreduce_ms"], result["steps"]))


if __name__ == "__main__":
    main()
