#!/usr/bin/env bash
# Pre-schedules a restricted OFA MobileNetV3 w1.2 space on this machine, then runs the
# co-search against the schedule-blind baseline at each budget, all with OFA's accuracy
# predictor (bench/RESULTS.md, "Co-search").
#   bash bench/cosearch.sh OUT RESOLUTIONS TRIALS_PER_TASK TUNING_SECONDS "BUDGET_MS ..."
# e.g. bash bench/cosearch.sh target/cosearch 176,192 12 780 "8 10 13"
# With BUDGETS empty it stops after pre-scheduling (and `lut show`); run again with budgets:
# the build resumes (nothing left to do) and only the searches run. SEARCH_ARGS adds options
# to every search (e.g. SEARCH_ARGS="--restarts 4").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?output folder}
RES=${2:-176,192}
TRIALS=${3:-12}
TUNING=${4:-780}
BUDGETS=${5:-}
PRED=${CHANASC_SHARED:-../shared}/data/ofa/ofa_mbv3_w12_acc_predictor.safetensors
mkdir -p "$OUT"
cargo build --release --locked -q
# A copy of the compiler, so that rebuilding the checkout during the run changes nothing.
BIN="$OUT/chanasc"
cp target/release/chanasc "$BIN"
start=$(date +%s)
"$BIN" lut build --space ofa-mbv3 --width 1.2 --arch host --resolutions "$RES" \
  --tune-trials "$TRIALS" --time-budget "$TUNING" -o "$OUT/lut.yaml" | tee "$OUT/lut_build.txt"
echo "pre-scheduling wall time (this run): $(( $(date +%s) - start )) s" | tee -a "$OUT/lut_build.txt"
"$BIN" lut show "$OUT/lut.default.yaml" | tee "$OUT/lut_show_default.txt"
"$BIN" lut show "$OUT/lut.yaml" | tee "$OUT/lut_show_tuned.txt"
for B in $BUDGETS; do
  s=$(date +%s)
  "$BIN" search --space ofa-mbv3 --width 1.2 --arch host --latency-ms "$B" \
    --accuracy "predictor:$PRED" --lut "$OUT/lut.yaml" --records "$OUT/lut.records.jsonl" \
    --compare-baseline --seed 0 ${SEARCH_ARGS:-} -o "$OUT/search-$B" | tee "$OUT/search-$B.txt"
  echo "search wall time: $(( $(date +%s) - s )) s" | tee -a "$OUT/search-$B.txt"
done
