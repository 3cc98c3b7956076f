#!/usr/bin/env bash
# f16 against f32 on x86-64 (llvm backend, default schedules, 1 thread, pinned to core 0):
# weight size and runner latency of each fixture model compiled with --dtype f32 and
# --dtype f16, measured in one run, interleaved over ROUNDS rounds of RUNS runs each
# (the median of the rounds' medians), with the f16 error against ONNX Runtime's f32 output.
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
printf '| model | weights f32 (MiB) | weights f16 (MiB) | f32 median (ms) | f16 median (ms) | f16 / f32 | f16 rel. error | top-1 |\n|---|---|---|---|---|---|---|---|\n'
for m in "$FIX"/*.onnx; do
  name=$(basename "$m" .onnx)
  for d in f32 f16; do
    target/release/chanasc compile "$m" --arch x86-64 --threads 1 --dtype $d -o "$T/$name-$d" >"$T/c-$d"
  done
  w32=$(grep -o "[0-9.]* MiB weights" "$T/c-f32" | cut -d' ' -f1)
  w16=$(grep -o "[0-9.]* MiB weights" "$T/c-f16" | cut -d' ' -f1)
  $PY -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]).astype(np.float16))" "${m%.onnx}.input.npy" "$T/x16.npy"
  : >"$T/t-f32"; : >"$T/t-f16"
  for _ in $(seq "$ROUNDS"); do
    for d in f32 f16; do
      x="${m%.onnx}.input.npy"; [ $d = f16 ] && x="$T/x16.npy"
      taskset -c 0 "$T/$name-$d/model" --input input="$x" --bench "$RUNS" | awk '/^median/ {print $2}' >>"$T/t-$d"
    done
  done
  t32=$(median <"$T/t-f32"); t16=$(median <"$T/t-f16")
  "$T/$name-f16/model" --input input="$T/x16.npy" -o "$T/y16.npy" >/dev/null
  err=$($PY -c "
import numpy as np, sys
a = np.load(sys.argv[1]).astype(np.float32); b = np.load(sys.argv[2]).astype(np.float32)
print(f'{np.abs(a - b).max() / np.abs(b).max():.2e} {\"same\" if a.argmax() == b.argmax() else \"DIFFERENT\"}')" "$T/y16.npy" "${m%.onnx}.output.npy")
  printf '| %s | %s | %s | %.3f | %.3f | %.2f | %s | %s |\n' "$name" "$w32" "$w16" "$t32" "$t16" "$(echo "$t16 / $t32" | bc -l)" ${err}
done
