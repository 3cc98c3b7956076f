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
opt_rows=()
for m in "$FIX"/*.onnx; do
  name=$(basename "$m" .onnx)
  # Graph optimization (e-graph rewrites and fusion) off and on, 1 thread, same run.
  target/release/chanasc compile "$m" --arch x86-64 --threads 1 --no-graph-opt -o "$T/$name-noopt" >"$T/c0"
  target/release/chanasc compile "$m" --arch x86-64 --threads 1 -o "$T/$name-opt" >"$T/c1"
  progs0=$(grep -o "[0-9]* tensor programs" "$T/c0" | cut -d' ' -f1)
  progs1=$(grep -o "[0-9]* tensor programs" "$T/c1" | cut -d' ' -f1)
  before=$("$T/$name-noopt/model" --bench "$RUNS" | awk '/^median/ {print $2}')
  after=$("$T/$name-opt/model" --bench "$RUNS" | awk '/^median/ {print $2}')
  printf '%-20s graph optimization: off %8.3f ms (%s programs), on %8.3f ms (%s programs)\n' "$name" "$before" "$progs0" "$after" "$progs1"
  opt_rows+=("| $name | $progs0 | $(printf %.3f "$before") | $progs1 | $(printf %.3f "$after") | $(echo "scale=2; $before / $after" | bc) |")
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
simd=$(grep -q -w avx512f /proc/cpuinfo && echo avx512f || (grep -q -w avx2 /proc/cpuinfo && echo avx2))
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
  echo
  echo "## Graph optimization: before and after"
  echo
  echo "Same machine and run, 1 thread, median of $RUNS runs. Off: \`chanasc compile --no-graph-opt\`"
  echo "(one tensor program per graph node); on: the e-graph rewrites (batch norm folding, layout"
  echo "propagation to NCHW16c/NCHW8c) and the fusion rules (elementwise ops into convolution and"
  echo "matrix-product epilogues and prologues). Programs on: fused programs + layout changes."
  echo
  echo "| model | programs off | ms off | programs on | ms on | speedup |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${opt_rows[@]}"
  # The sections other scripts write (tuning, latency tables) are kept as they are.
  if [ -f bench/RESULTS.md ]; then
    echo
    awk '/^## / && !/^## chanasc \(llvm backend/ && !/^## Graph optimization/ { keep = 1 } keep' bench/RESULTS.md
  fi
} > bench/RESULTS.md.tmp
mv bench/RESULTS.md.tmp bench/RESULTS.md
echo "wrote bench/RESULTS.md"
