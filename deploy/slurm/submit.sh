#!/bin/bash
# Submits a sharded pre-scheduling build to Slurm: SHARDS tune elements, then (after all of
# them succeeded) SHARDS measure elements, then the merge. The settings of
# preschedule.sbatch (OUT, WIDTH, RESOLUTIONS, TUNE_TRIALS, TIME_BUDGET, CHANASC) pass
# through the environment; extra arguments go to every sbatch (e.g. --partition=cpu).
#
#   SHARDS=8 OUT=/shared/presched TUNE_TRIALS=20 deploy/slurm/submit.sh --partition=cpu
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${SHARDS:-4}
export SHARDS=$N
tune=$(sbatch --parsable "$@" --array="0-$((N - 1))" --export=ALL,PHASE=tune "$here/preschedule.sbatch")
measure=$(sbatch --parsable "$@" --array="0-$((N - 1))" --dependency="afterok:$tune" --export=ALL,PHASE=measure "$here/preschedule.sbatch")
merge=$(sbatch --parsable "$@" --array=0 --dependency="afterok:$measure" --export=ALL,PHASE=merge "$here/preschedule.sbatch")
echo "submitted: tune $tune, measure $measure, merge $merge (squeue -u $USER to follow)"
