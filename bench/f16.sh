#!/usr/bin/env bash
# f16 against f32 on x86-64 (llvm backend, default schedules, 1 thread, pinned to core 0):
# weight size, working memory and runner latency of each fixture model compiled with
# --dtype f32, --dtype f16 and --dtype f16 --f16-activations, measured in one run,
# interleaved over ROUNDS rounds of RUNS runs each (the median of the rounds' medians), with
# the f16 builds' error against ONNX Runtime's f32 output.
#   bash bench/f16.sh [RUNS] [ROUNDS]     (needs scripts/setup.sh done and ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-100}
ROUNDS=${2:-5}
FIX=${CHANASC_SHARED:-../shared}/fixtures/models
[ -d "$FIX" ] || { echo "bench: no fixture models at $FIX" >&2; exit 2; }
cargo build --release --locked -q
PY=.venv/bin/python
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "$(date -u +%Y-%m-%d) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| model | build | weights (MiB) | working memory (MiB) | median (ms) | / f32 | rel. error | top-1 |\n|---|---|---|---|---|---|---|---|\n'
builds=(f32 f16 f16a)
flags() { case $1 in f32) echo "--dtype f32";; f16) echo "--dtype f16";; f16a) echo "--dtype f16 --f16-activations";; esac; }
for m in "$FIX"/*.onnx; do
  name=$(basename "$m" .onnx)
  $PY -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]).astype(np.float16))" "${m%.onnx}.input.npy" "$T/x16.npy"
  for b in "${builds[@]}"; do
    target/release/chanasc compile "$m" --arch x86-64 --threads 1 $(flags $b) -o "$T/$name-$b" >"$T/c-$b"
    : >"$T/t-$b"
  done
  for _ in $(seq "$ROUNDS"); do
    for b in "${builds[@]}"; do
      x="${m%.onnx}.input.npy"; [ $b != f32 ] && x="$T/x16.npy"
      taskset -c 0 "$T/$name-$b/model" --input input="$x" --bench "$RUNS" | awk '/^median/ {print $2}' >>"$T/t-$b"
    done
  done
  t32=$(median <"$T/t-f32")
  for b in "${builds[@]}"; do
    w=$(grep -o "[0-9.]* MiB weights" "$T/c-$b" | cut -d' ' -f1)
    mem=$(grep -o "[0-9.]* MiB working memory" "$T/c-$b" | cut -d' ' -f1)
    t=$(median <"$T/t-$b")
    x="${m%.onnx}.input.npy"; [ $b != f32 ] && x="$T/x16.npy"
    "$T/$name-$b/model" --input input="$x" -o "$T/y.npy" >/dev/null
    err=$($PY -c "
import numpy as np, sys
a = np.load(sys.argv[1]).astype(np.float32); b = np.load(sys.argv[2]).astype(np.float32)
print(f'{np.abs(a - b).max() / np.abs(b).max():.2e} {\"same\" if a.argmax() == b.argmax() else \"DIFFERENT\"}')" "$T/y.npy" "${m%.onnx}.output.npy")
    printf '| %s | %s | %s | %s | %.3f | %.2f | %s | %s |\n' "$name" "$(flags $b)" "$w" "$mem" "$t" "$(echo "$t / $t32" | bc -l)" ${err}
  done
done
