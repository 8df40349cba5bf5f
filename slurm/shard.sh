#!/usr/bin/env bash
# Shard a corpus with a Slurm array: each array task takes every NUM_TASKS-th input video, and a merge job that
# runs after all of them succeed joins their shards, manifests, failures and statistics into output.dir.
#
#   bash slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]       # submits the array and the merge job
#   bash slurm/shard.sh configs/data_prep/hdtf.yaml 16 workers=8
#
# Re-submitting the same command resumes: finished shards are kept, finished clips skipped. Site paths (virtual
# environment, HuBERT checkpoint via MODA_HUBERT_PATH) come from slurm/env.sh when it exists.
#SBATCH --job-name=moda-shard
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

CONFIG=${1:?usage: slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]}
NUM_TASKS=${2:?usage: slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]}
shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
if [ -f slurm/env.sh ]; then
  source slurm/env.sh
fi

if [ -z "${SLURM_JOB_ID:-}" ]; then
  # Submitting: check the config once here, so a typo fails now instead of in every array task.
  python -m data_prep.shard "$CONFIG" "$@" num_tasks="$NUM_TASKS" --dry-run
  mkdir -p logs
  array=$(sbatch --parsable --array=0-$((NUM_TASKS - 1)) "$0" "$CONFIG" "$NUM_TASKS" "$@")
  merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=moda-shard-merge --ntasks=1 \
    --cpus-per-task=1 --time=02:00:00 --output=logs/%x-%j.out \
    --wrap="srun python -u -m data_prep.shard --merge $CONFIG $* num_tasks=$NUM_TASKS")
  echo "submitted array job $array ($NUM_TASKS tasks) and merge job $merge"
  exit 0
fi

# Inside the array: this task's slice, one worker process per allocated CPU. Always through srun (see DESIGN).
srun python -u -m data_prep.shard "$CONFIG" "$@" num_tasks="$NUM_TASKS" task_index="$SLURM_ARRAY_TASK_ID" \
  workers="${SLURM_CPUS_PER_TASK:-1}" --no-progress
