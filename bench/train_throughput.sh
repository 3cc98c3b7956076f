#!/usr/bin/env bash
# Training throughput of the fmnist-mbv3 space's largest subnet (587,418 parameters, 17.1 M
# MACs per image): chanasc (the directly built largest subnet's training graph, LLVM backend;
# also the masked supernet graph every sandwich-rule pass runs) against PyTorch CPU eager
# training of the same network (bench/pytorch_fmnist_mbv3.py), interleaved over ROUNDS rounds
# in one run, each at BATCH for 1 and 2 threads; medians of the rounds.
#   bash bench/train_throughput.sh [BATCH] [ROUNDS] [STEPS]
# PyTorch comes from the venv $TORCH_VENV (default target/torch-venv, made with
# `python3 -m venv target/torch-venv && target/torch-venv/bin/pip install torch`: PyPI's
# Linux wheel, about 5 GiB with its CUDA libraries, which run on the CPU here).
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-64}
ROUNDS=${2:-3}
STEPS=${3:-5}
TORCH_VENV=${TORCH_VENV:-target/torch-venv}
[ -x "$TORCH_VENV/bin/python" ] || { echo "bench: no PyTorch venv at $TORCH_VENV (see the header of $0)" >&2; exit 2; }
cargo build --release --locked -q -p chanasc-train --example profile_step
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "$(date -u +%Y-%m-%d) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$($TORCH_VENV/bin/python -c 'import torch; print("pytorch", torch.__version__)'), batch $BATCH, $ROUNDS rounds of $STEPS steps"
cores() { if [ "$1" = 1 ]; then echo 0; else echo 0,1; fi; }
for _ in $(seq "$ROUNDS"); do
  for threads in 1 2; do
    for net in fmnist-largest fmnist-supernet; do
      taskset -c "$(cores $threads)" target/release/examples/profile_step $net "$BATCH" $threads "$STEPS" 2>/dev/null |
        sed -n 's/^images_per_s=//p' >>"$T/$net-$threads"
    done
    taskset -c "$(cores $threads)" "$TORCH_VENV/bin/python" bench/pytorch_fmnist_mbv3.py "$BATCH" $threads "$STEPS" |
      sed -n 's/^images_per_s=//p' >>"$T/pytorch-$threads"
  done
done
printf '| threads | chanasc, largest subnet (images/s) | PyTorch eager (images/s) | chanasc / PyTorch | chanasc, masked supernet pass (images/s) |\n|---|---|---|---|---|\n'
for threads in 1 2; do
  c=$(median <"$T/fmnist-largest-$threads")
  p=$(median <"$T/pytorch-$threads")
  s=$(median <"$T/fmnist-supernet-$threads")
  awk -v t="$threads" -v c="$c" -v p="$p" -v s="$s" 'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %.1f |\n", t, c, p, c / p, s }'
done
