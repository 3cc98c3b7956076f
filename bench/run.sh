#!/usr/bin/env bash
# Times chanasc (llvm backend, default schedules) against ONNX Runtime in the same run, at
# 1 and 2 threads, on the fixture models, and writes the figures to bench/RESULTS.md.
#   bash bench/run.sh [RUNS]      (needs scripts/setup.sh done and ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200}
FIX=${CHANASC_SHARED:-../shared}/fixtures/models
[ -d "$FIX" ] || { echo "bench: no fixture models at $FIX" >&2; exit 2; }
cargo build --release --locked -q
PY=.venv/bin/python
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
rows=()
for m in "$FIX"/*.onnx; do
  name=$(basename "$m" .onnx)
  for threads in 1 2; do
    start=$(date +%s.%N)
    target/release/chanasc compile "$m" --arch x86-64 --threads $threads -o "$T/$name" >/dev/null
    compile_s=$(echo "$(date +%s.%N) - $start" | bc)
    ours=$("$T/$name/model" --input input="${m%.onnx}.input.npy" --bench "$RUNS" | awk '/^median/ {print $2}')
    ort=$($PY - "$m" "$threads" "$RUNS" <<'PY'
import sys, time, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2]); o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = {s.get_inputs()[0].name: np.random.rand(1, 3, 224, 224).astype(np.float32)}
for _ in range(20): s.run(None, x)
t = []
for _ in range(int(sys.argv[3])):
    a = time.perf_counter(); s.run(None, x); t.append(time.perf_counter() - a)
print(f"{np.median(t)*1e3:.4f}")
PY
)
    ratio=$(echo "scale=2; $ours / $ort" | bc)
    printf '%-20s %d thread(s): chanasc %8.3f ms  ORT %8.3f ms  ratio %5.2f  (compile %.1f s)\n' "$name" "$threads" "$ours" "$ort" "$ratio" "$compile_s"
    rows+=("| $name | $threads | $(printf %.3f "$ours") | $(printf %.3f "$ort") | $ratio | $(printf %.1f "$compile_s") |")
  done
done
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
simd=$(grep -m1 -o -w -E "avx512f|avx2" /proc/cpuinfo | head -1)
ortv=$($PY -c "import onnxruntime; print(onnxruntime.__version__)")
{
  echo "# Benchmarks"
  echo
  echo "## chanasc (llvm backend, default schedules) against ONNX Runtime"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $cpu ($(nproc) cores, ${simd:-no avx2}), ONNX Runtime $ortv"
  echo "(CPUExecutionProvider), batch 1, median of $RUNS runs after warm-up, both in the same run of"
  echo "\`bash bench/run.sh $RUNS\`. ratio = chanasc / ORT (below 1 is faster). chanasc: \`chanasc compile"
  echo "--threads N\` with default schedules (no tuning), timed by its runner's \`--bench\`. Compile"
  echo "time is ONNX file to runner executable, wall clock."
  echo
  echo "| model | threads | chanasc ms | ORT ms | ratio | compile s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > bench/RESULTS.md.tmp
mv bench/RESULTS.md.tmp bench/RESULTS.md
echo "wrote bench/RESULTS.md"
