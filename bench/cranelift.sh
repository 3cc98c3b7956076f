#!/usr/bin/env bash
# The cranelift tier against LLVM, measured in one run on the fixture models: compile time
# (model file to runnable code, in process, `chanasc bench`'s "compiled in") and run time
# (median, 1 thread) with the default schedules (LLVM: the host's; cranelift: the same
# decisions with register tiles resized for its 16 xmm registers, runtime/src/jit_schedule.rs),
# and of LLVM with cranelift's schedules (`chanasc bench --cranelift-schedules`: the two code
# generators on the same schedules), then the agreement of the two backends' rankings of tuner candidates
# (examples/cranelift_rank.rs).
# Writes the section "cranelift JIT against LLVM" of bench/RESULTS.md, keeping the others.
#   bash bench/cranelift.sh [RUNS] [CANDIDATES]   (needs ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
CANDIDATES=${2:-20}
FIX=${CHANASC_SHARED:-../shared}/fixtures/models
[ -d "$FIX" ] || { echo "bench: no fixture models at $FIX" >&2; exit 2; }
cargo build --release --locked -q
cargo build --release --locked -q --example cranelift_rank
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
for m in "$FIX"/*.onnx; do
  name=$(basename "$m" .onnx)
  # Each build twice, interleaved (llvm, llvm-same, cranelift, and again); the faster of each
  # pair counts, so that a busy spell of the shared machine falls on all alike.
  for round in 1 2; do
    for b in llvm llvm-same cranelift; do
      case $b in
        llvm-same) args=(--backend llvm --cranelift-schedules) ;;
        *) args=(--backend "$b") ;;
      esac
      target/release/chanasc bench "$m" "${args[@]}" --threads 1 --runs "$RUNS" >"$T/$name-$b-$round"
    done
  done
  pick() { # backend field(compile|median): the smaller of the two rounds
    for r in 1 2; do
      if [ "$2" = compile ]; then awk '/^compiled in/ {print $3}' "$T/$name-$1-$r"; else awk '/^median/ {print $2}' "$T/$name-$1-$r"; fi
    done | sort -g | head -1
  }
  lc=$(pick llvm compile); cc=$(pick cranelift compile)
  lr=$(pick llvm median); sr=$(pick llvm-same median); cr=$(pick cranelift median)
  cratio=$(echo "scale=1; $lc / $cc" | bc)
  rratio=$(echo "scale=2; $cr / $lr" | bc)
  sratio=$(echo "scale=2; $cr / $sr" | bc)
  printf '%-20s compile: llvm %6.2f s, cranelift %6.3f s (%sx faster); run: llvm %8.3f ms, llvm with cranelift schedules %8.3f ms, cranelift %8.3f ms (%sx, %sx)\n' \
    "$name" "$lc" "$cc" "$cratio" "$lr" "$sr" "$cr" "$sratio" "$rratio"
  rows+=("| $name | $(printf %.2f "$lc") | $(printf %.3f "$cc") | $cratio | $(printf %.3f "$lr") | $(printf %.3f "$sr") | $(printf %.3f "$cr") | $sratio | $rratio |")
done
rank=()
for name in mobilenet_v3_small resnet18; do
  target/release/examples/cranelift_rank "$FIX/$name.onnx" 3 "$CANDIDATES" 1 >"$T/rank-$name"
  cat "$T/rank-$name"
  rank+=("$(grep -v '^task |' "$T/rank-$name" | grep -v '^mean' | sed "s/^/| $name | /; s/$/ |/")")
  rank+=("| $name | mean | | $(awk '/^mean/ {print $NF}' "$T/rank-$name") | | |")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
simd=$(grep -q -w avx512f /proc/cpuinfo && echo avx512f || (grep -q -w avx2 /proc/cpuinfo && echo avx2))
{
  awk 'BEGIN { keep = 1 } /^## / { keep = ($0 !~ /^## cranelift JIT against LLVM/) } keep' bench/RESULTS.md
  echo
  echo "## cranelift JIT against LLVM"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $cpu ($(nproc) cores, ${simd:-no avx2}; a KVM guest shared"
  echo "with other developers' work: load average $load_before at the start, $load_after at the end),"
  echo "all in one run of \`bash bench/cranelift.sh $RUNS $CANDIDATES\`. Schedules: LLVM gets the host's"
  echo "default schedules (16-lane vector loops for AVX-512, register tiles of up to 7-8 rows, or"
  echo "2-4 output-channel blocks, x 16 lanes in zmm registers); cranelift (128-bit SIMD only, 16"
  echo "xmm registers) the same decisions (the same loops tiled, vectorized, unrolled, accumulated"
  echo "in a tile and run in parallel) with each register tile resized for its registers: one"
  echo "f32x4 per row and the rows and blocks cut to divisors giving at most 12 accumulators"
  echo "(runtime/src/jit_schedule.rs); other programs' schedules are the same. Compile time is model file to runnable code in"
  echo "the process (\`chanasc bench\`'s \"compiled in\": import, graph passes, lowering, schedules,"
  echo "then LLVM with the C glue, linking and dlopen, or cranelift's JIT); run time is the median"
  echo "of $RUNS runs, 1 thread. Each backend ran twice, interleaved, and the faster run counts."
  echo
  echo "LLVM same ms: LLVM with cranelift's schedules; the run-time target (within 2.5x of LLVM"
  echo "with the same schedules) is the column cranelift / LLVM same; the last column compares with"
  echo "LLVM's own (16-lane) schedules."
  echo
  echo "| model | LLVM compile s | cranelift compile s | compile speed-up | LLVM ms | LLVM same ms | cranelift ms | cranelift / LLVM same | cranelift / LLVM |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "### Ranking of tuner candidates"
  echo
  echo "The three tasks of most flops of each model, $CANDIDATES random candidates of the tuner's space each"
  echo "(\`cargo run --release --example cranelift_rank\`), built with both backends and timed in"
  echo "the process on the same arguments (median of 5 runs, the middle of 3 interleaved rounds)."
  echo "rho: Spearman rank correlation of the two backends' run times; top 3: whether LLVM's fastest"
  echo "candidate is among cranelift's three fastest; pick cost: LLVM run time of cranelift's fastest"
  echo "candidate over LLVM's fastest."
  echo
  echo "| model | task | candidates | rho | LLVM's best in cranelift's top 3 | pick cost |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rank[@]}"
} > bench/RESULTS.md.tmp
mv bench/RESULTS.md.tmp bench/RESULTS.md
echo "wrote bench/RESULTS.md"
