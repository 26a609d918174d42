#!/usr/bin/python3
"""torch_capsnet.py: the same Capsule Network in PyTorch, timed the way `capsnet bench`
times ours, for the side-by-side comparison in bench/compare.sh.

    /usr/bin/python3 bench/torch_capsnet.py --batch 100 --infer-batch 100 --threads 2
    python3 bench/torch_capsnet.py --device cuda --precision tf32   (on a GPU machine)

The network and recipe are the paper's (and ours): Conv1 256 @ 9x9 + ReLU, PrimaryCaps
32 x 8D @ 9x9 stride 2 + squash, DigitCaps 10 x 16D with 3 routing iterations (softmax
over the parents, gradients through every iteration), margin loss, decoder 160 -> 512 ->
1024 -> 784 masked by the label in training and the prediction at inference, loss weight
0.0005, Adam. It is written as a PyTorch user would write it for speed: float32, the
prediction vectors as one einsum into a [B, J, I, E] layout so that both routing sums
are batched matrix products (broadcast multiplies of [B, 1152, 10, 16] tensors, the
common way, train 25% slower here), no Python loop over images.

Random images (speed does not depend on the pixels), two warm-up steps, then steps until
--seconds have passed (at least 5); the median step gives images/s. Prints one JSON object
with the keys `capsnet bench --json` prints: train_images_per_s, infer_images_per_s,
train_step_ms, infer_batch_ms, peak_rss_mb (after the training steps), and the versions.
With --device cuda each step ends with torch.cuda.synchronize() (the step's time is the
GPU's), and the JSON adds peak_gpu_mb (torch.cuda.max_memory_allocated while training).
--precision fp32 turns TF32 off for cuDNN's convolutions and cuBLAS's products (strict
fp32); tf32 allows both (PyTorch's default for convolutions).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def squash(s):
    """Eq. 1: s |s| / (1 + |s|^2) over the last dimension."""
    n2 = (s * s).sum(-1, keepdim=True)
    return s * n2.sqrt() / (1 + n2)


class CapsNet(nn.Module):
    def __init__(self, routing=3):
        super().__init__()
        self.routing = routing
        self.conv1 = nn.Conv2d(1, 256, 9)
        self.prim = nn.Conv2d(256, 32 * 8, 9, stride=2)
        self.W = nn.Parameter(0.03 * torch.randn(1152, 10, 16, 8))
        self.decoder = nn.Sequential(nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024),
                                     nn.ReLU(), nn.Linear(1024, 784), nn.Sigmoid())

    def forward(self, x, labels=None):
        B = x.shape[0]
        h = F.relu(self.conv1(x))
        p = self.prim(h).view(B, 32, 8, 6, 6).permute(0, 1, 3, 4, 2).reshape(B, 1152, 8)
        u = squash(p)
        # u_hat laid out [B, J, I, E], so both routing sums are batched matrix products.
        u_hat = torch.einsum("ijed,bid->bjie", self.W, u).contiguous()
        b = torch.zeros(B, 10, 1152, device=x.device)
        for r in range(self.routing):
            c = F.softmax(b, dim=1)  # over the 10 parents
            v = squash(torch.matmul(c.unsqueeze(2), u_hat).squeeze(2))  # [B, 10, 16]
            if r < self.routing - 1:
                b = b + torch.matmul(u_hat, v.unsqueeze(-1)).squeeze(-1)
        lengths = v.norm(dim=-1)
        cls = labels if labels is not None else lengths.argmax(1)
        mask = F.one_hot(cls, 10).to(v.dtype)
        recon = self.decoder((v * mask.unsqueeze(-1)).reshape(B, 160))
        return lengths, recon


def loss_fn(lengths, recon, x, labels):
    t = F.one_hot(labels, 10).to(lengths.dtype)
    margin = (t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2).sum(1)
    sse = ((recon - x.view(x.shape[0], -1)) ** 2).sum(1)
    return (margin + 0.0005 * sse).mean()


def time_steps(fn, seconds, sync=lambda: None):
    for _ in range(2):
        fn()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--infer-batch", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32"])
    args = ap.parse_args()
    infer_batch = args.infer_batch or args.batch
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    dev = torch.device(args.device)
    sync = lambda: None
    if args.device == "cuda":
        tf32 = args.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        sync = torch.cuda.synchronize
    net = CapsNet().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    x = torch.rand(max(args.batch, infer_batch), 1, 28, 28, device=dev)
    labels = torch.randint(0, 10, (x.shape[0],), device=dev)
    xt, lt = x[: args.batch], labels[: args.batch]

    def train_step():
        opt.zero_grad()
        lengths, recon = net(xt, lt)
        loss_fn(lengths, recon, xt, lt).backward()
        opt.step()

    xi = x[:infer_batch]

    def infer_step():
        with torch.no_grad():
            net(xi)

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s, n_train = time_steps(train_step, args.seconds, sync)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    extra = {"device": args.device, "precision": args.precision}
    if args.device == "cuda":
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        extra["gpu"] = torch.cuda.get_device_name()
    infer_s, n_infer = time_steps(infer_step, args.seconds, sync)
    print(json.dumps({**extra,
        "backend": "pytorch %s (%s)" % (torch.__version__,
                                        "oneDNN on" if torch.backends.mkldnn.is_available()
                                        else "oneDNN off"),
        "threads": args.threads, "batch": args.batch, "infer_batch": infer_batch,
        "train_images_per_s": args.batch / train_s, "infer_images_per_s": infer_batch / infer_s,
        "train_step_ms": 1e3 * train_s, "infer_batch_ms": 1e3 * infer_s,
        "peak_rss_mb": rss, "train_steps": n_train, "infer_batches": n_infer}))


if __name__ == "__main__":
    main()
