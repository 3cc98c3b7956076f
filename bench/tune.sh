#!/usr/bin/env bash
# Tunes one fixture model for a time budget, then times chanasc with default schedules, chanasc
# with the tuned records and ONNX Runtime in the same run (1 and 2 threads, interleaved), and
# prints the per-program profiles of both chanasc builds. The records go to RECORDS (default
# target/tune/MODEL.jsonl: they belong to this machine), the tuning curve beside them.
#   bash bench/tune.sh MODEL SECONDS [RUNS] [RECORDS]   (MODEL: mobilenet_v3_small, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model name}
BUDGET=${2:?seconds}
RUNS=${3:-200}
FIX=${CHANASC_SHARED:-../shared}/fixtures/models
M="$FIX/$MODEL.onnx"
REC=${4:-target/tune/$MODEL.jsonl}
mkdir -p "$(dirname "$REC")"
[ -f "$M" ] || { echo "tune: no model $M" >&2; exit 2; }
cargo build --release --locked -q
PY=.venv/bin/python
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# A copy of the compiler, so that rebuilding the checkout during the run changes nothing.
cp target/release/chanasc "$T/chanasc"
start=$(date +%s)
"$T/chanasc" tune "$M" --arch host --trials 1000000 --time-budget "$BUDGET" --records "$REC" | tee "$T/tune.txt"
echo "tuning wall time: $(( $(date +%s) - start )) s"
for threads in 1 2; do
  "$T/chanasc" compile "$M" --threads $threads -o "$T/default-$threads" >/dev/null
  "$T/chanasc" compile "$M" --threads $threads --records "$REC" -o "$T/tuned-$threads" | grep "use tuned"
done
ort() {
  $PY - "$M" "$1" "$RUNS" <<'PY'
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
}
runner() { "$T/$1/model" --input input="${M%.onnx}.input.npy" --bench "$RUNS" | awk '/^median/ {print $2}'; }
for threads in 1 2; do
  # Interleaved, three rounds each, the median of the three medians.
  d=(); t=(); o=()
  for round in 1 2 3; do
    d+=("$(runner default-$threads)"); t+=("$(runner tuned-$threads)"); o+=("$(ort $threads)")
  done
  med() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
  dm=$(med "${d[@]}"); tm=$(med "${t[@]}"); om=$(med "${o[@]}")
  printf '%s %d thread(s): default %s ms  tuned %s ms  ORT %s ms  tuned/default %s  tuned/ORT %s  default/ORT %s\n' \
    "$MODEL" "$threads" "$dm" "$tm" "$om" "$(echo "scale=3; $tm / $dm" | bc)" "$(echo "scale=3; $tm / $om" | bc)" "$(echo "scale=3; $dm / $om" | bc)"
done
echo "== per-program profile, default schedules, 1 thread"
"$T/chanasc" bench "$M" --runs "$RUNS" | sed -n 1,40p
echo "== per-program profile, tuned, 1 thread"
"$T/chanasc" bench "$M" --runs "$RUNS" --records "$REC" | sed -n 1,40p
