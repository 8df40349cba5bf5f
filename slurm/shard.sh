#!/usr/bin/env bash
# Shard a corpus with a Slurm array: each array task takes every NUM_TASKS-th input video, and a merge job that
# runs after all of them succeed joins their shards, manifests, failures and statistics into output.dir.
#
#   bash slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]       # submits the array and the merge job
#   SHARD_CPUS=16 bash slurm/shard.sh configs/data_prep/hdtf.yaml 16
#
# SHARD_CPUS (default 8): CPUs per array task, one worker process each. SHARD_LOG_DIR (default logs): job logs.
# Other sbatch settings (partition, account, memory) come from Slurm's own SBATCH_* environment variables,
# e.g. SBATCH_PARTITION=cpu.
#
# Re-submitting the same command resumes: finished shards are kept, finished clips skipped. Site paths (virtual
# environment, HuBERT checkpoint via MODA_HUBERT_PATH) come from slurm/env.sh when it exists.
#SBATCH --job-name=moda-shard
#SBATCH --ntasks=1
#SBATCH --time=24:00:00
set -euo pipefail

CONFIG=${1:?usage: slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]}
NUM_TASKS=${2:?usage: slurm/shard.sh CONFIG.yaml NUM_TASKS [key=value ...]}
shift 2
SCRIPT=$(realpath "$0")
cd "${SLURM_SUBMIT_DIR:-$(dirname "$SCRIPT")/..}"
export MODA_REPO=${MODA_REPO:-$(pwd)}
if [ -f slurm/env.sh ]; then
  source slurm/env.sh
fi

if [ -z "${SLURM_JOB_ID:-}" ]; then
  # Submitting: check the config once here, so a typo fails now instead of in every array task.
  python -m data_prep.shard "$CONFIG" "$@" num_tasks="$NUM_TASKS" --dry-run
  LOGS=${SHARD_LOG_DIR:-logs}
  mkdir -p "$LOGS"
  array=$(sbatch --parsable --array=0-$((NUM_TASKS - 1)) --cpus-per-task="${SHARD_CPUS:-8}" \
    --output="$LOGS/%x-%A_%a.out" "$SCRIPT" "$CONFIG" "$NUM_TASKS" "$@")
  merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=moda-shard-merge --ntasks=1 \
    --cpus-per-task=1 --time=02:00:00 --output="$LOGS/%x-%j.out" \
    --wrap="srun python -u -m data_prep.shard --merge $CONFIG $* num_tasks=$NUM_TASKS")
  echo "submitted array job $array ($NUM_TASKS tasks) and merge job $merge"
  exit 0
fi

# Inside the array: this task's slice, one worker process per allocated CPU. Always through srun (see DESIGN).
srun python -u -m data_prep.shard "$CONFIG" "$@" num_tasks="$NUM_TASKS" task_index="$SLURM_ARRAY_TASK_ID" \
  workers="${SLURM_CPUS_PER_TASK:-1}" --no-progress
