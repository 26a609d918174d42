#!/bin/sh
# gpu-check.sh OUT [MNIST_DIR]: every check of the CUDA backend that needs a GPU, in one
# run of a few minutes on the lent GPU machine (../.library/device/README.md):
#   build    make CUDA=1 (OpenBLAS if its headers are there, else BLAS=none; FIGURES=0)
#   tests    tests/test_cuda.c: every layer against the CPU, 200 steps, determinism,
#            a GPU model file on the CPU, the out-of-memory message
#   memcheck compute-sanitizer on a short training run
#   bench    capsnet bench --device cuda --json, fp32 and tf32, batch 100 and 1
#   epoch    one MNIST epoch on the GPU (the CPU recipe), its test accuracy, and the same
#            model tested on the CPU
#   torch    bench/torch_capsnet.py --device cuda, fp32 and tf32, in the same run
# Prints one summary table and writes it, with every step's output, under OUT
# (summary.json, summary.txt, <step>.txt). MNIST_DIR (default .gpu-data/mnist) holds the
# four MNIST .gz files: carry it, an ignored folder, to the device machine.
# Exit status: 0 when every check that ran passed.
set -u
out=${1:?usage: scripts/gpu-check.sh OUT [MNIST_DIR]}
data=${2:-.gpu-data/mnist}
cd "$(dirname "$0")/.."
mkdir -p "$out"
: > "$out/steps.tsv"
tiny="--config conv1_channels=16,primary_types=4,decoder_hidden1=32,decoder_hidden2=64"
jobs=$(nproc 2>/dev/null || echo 8)

# step NAME LIMIT_S COMMAND...: runs it with a time limit, its output in OUT/NAME.txt, and a
# line "NAME<TAB>status<TAB>seconds" in OUT/steps.tsv.
step() {
    name=$1 limit=$2
    shift 2
    echo "gpu-check: $name ..." >&2
    t0=$(date +%s.%N)
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" \
        >> "$out/steps.tsv"
    tail -n 3 "$out/$name.txt" | sed "s/^/  $name: /" >&2
    return $rc
}

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  command -v nvcc && nvcc --version | tail -n 2; gcc --version | head -n 1;
  python3 -c 'import torch; print("torch", torch.__version__)'; } > "$out/machine.txt" 2>&1

blas=none
[ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] && blas=openblas
prog=build-gpu/capsnet
step build 400 make -j"$jobs" CUDA=1 BLAS=$blas FIGURES=0 BUILD=build-gpu all tests ||
    { echo "gpu-check: the build failed; see $out/build.txt" >&2; }

if [ -x "$prog" ]; then
    step tests 240 build-gpu/tests/test_cuda
    if command -v compute-sanitizer > /dev/null; then
        step memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
            "$prog" train --device cuda --data "$data" --out /tmp/gpu-check-mc.caps --overwrite \
            --limit 64 --test-limit 32 --epochs 1 --batch 16 $tiny --quiet
    fi
    step bench_fp32 120 "$prog" bench --device cuda --json --seconds 5
    step bench_tf32 120 "$prog" bench --device cuda --tf32 --json --seconds 5
    step bench_batch1 60 "$prog" bench --device cuda --json --seconds 2 --batch 1
    step epoch 300 "$prog" train --device cuda --data "$data" --out /tmp/gpu-check.caps \
        --overwrite --epochs 1
    step test_gpu 120 "$prog" test --device cuda --model /tmp/gpu-check.caps --data "$data" --json
    step test_cpu 300 "$prog" test --device cpu --model /tmp/gpu-check.caps --data "$data" \
        --limit 2000 --json
    step test_gpu_2000 120 "$prog" test --device cuda --model /tmp/gpu-check.caps --data "$data" \
        --limit 2000 --json
fi
if python3 -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
    step torch_fp32 120 python3 bench/torch_capsnet.py --device cuda --precision fp32 --seconds 5
    step torch_tf32 120 python3 bench/torch_capsnet.py --device cuda --precision tf32 --seconds 5
fi

python3 - "$out" << 'EOF'
import json, os, re, sys
out = sys.argv[1]
def text(name):
    p = os.path.join(out, name + ".txt")
    return open(p, errors="replace").read() if os.path.exists(p) else ""
def last_json(name):
    for line in reversed(text(name).splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return {}
steps = {}
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, secs = line.rstrip("\n").split("\t")
    steps[name] = {"exit": int(rc), "seconds": round(float(secs or 0), 1)}
s = {"machine": text("machine").strip().splitlines()[:3], "steps": steps}
m = re.search(r"(\d+) passed, (\d+) failed", text("tests"))
s["gpu_tests"] = {"passed": int(m.group(1)), "failed": int(m.group(2))} if m else None
m = re.search(r"ERROR SUMMARY: (\d+) error", text("memcheck"))
s["memcheck_errors"] = int(m.group(1)) if m else None
for k in ["bench_fp32", "bench_tf32", "bench_batch1", "torch_fp32", "torch_tf32"]:
    j = last_json(k)
    s[k] = {f: j.get(f) for f in ["precision", "batch", "train_images_per_s", "infer_images_per_s",
                                   "train_step_ms", "infer_batch_ms", "peak_gpu_mb"] if f in j}
m = re.search(r"epoch 1/1: train loss ([0-9.]+), test accuracy ([0-9.]+)%.*?, ([0-9.]+) s", text("epoch"))
s["epoch"] = {"train_loss": float(m.group(1)), "test_accuracy": float(m.group(2)),
              "seconds": float(m.group(3))} if m else None
for k in ["test_gpu", "test_cpu", "test_gpu_2000"]:
    j = last_json(k)
    s[k] = {"accuracy": j.get("accuracy"), "total": j.get("total")} if j else None
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
rows = [("check", "result")]
for name, st in steps.items():
    rows.append(("%s (exit, s)" % name, "%d, %.1f" % (st["exit"], st["seconds"])))
if s["gpu_tests"]: rows.append(("GPU tests passed / failed", "%(passed)d / %(failed)d" % s["gpu_tests"]))
if s["memcheck_errors"] is not None: rows.append(("compute-sanitizer errors", str(s["memcheck_errors"])))
for k, label in [("bench_fp32", "capsnet fp32"), ("bench_tf32", "capsnet tf32"),
                 ("torch_fp32", "PyTorch eager fp32"), ("torch_tf32", "PyTorch eager tf32")]:
    b = s.get(k) or {}
    if b.get("train_images_per_s"):
        rows.append((label + ": train / infer img/s (batch 100)",
                     "%.0f / %.0f" % (b["train_images_per_s"], b["infer_images_per_s"])))
if (s.get("bench_batch1") or {}).get("infer_batch_ms"):
    rows.append(("capsnet batch-1 inference ms", "%.3f" % s["bench_batch1"]["infer_batch_ms"]))
if s["epoch"]:
    rows.append(("one MNIST epoch on the GPU", "%.2f%% test accuracy, %.1f s" %
                 (s["epoch"]["test_accuracy"], s["epoch"]["seconds"])))
if s["test_cpu"] and s["test_gpu_2000"]:
    rows.append(("GPU model, first 2000 test images: CPU / GPU accuracy",
                 "%.4f / %.4f" % (s["test_cpu"]["accuracy"], s["test_gpu_2000"]["accuracy"])))
w = max(len(r[0]) for r in rows)
table = "\n".join("%-*s  %s" % (w, a, b) for a, b in rows)
open(os.path.join(out, "summary.txt"), "w").write(table + "\n")
print(table)
EOF
! grep -qv "	0	" "$out/steps.tsv"
