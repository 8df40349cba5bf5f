#!/usr/bin/env bash
# The one launcher behind slurm/train_*.sh:  bash slurm/launch.sh EXPERIMENT.yaml [key=value ...]
#
# Runs inside an sbatch allocation. Loads the site settings (slurm/env.sh), names the run folder after the job,
# and starts one training process per task with srun. The run folder name depends only on the job id, so a
# requeued job (same id, SLURM_RESTART_COUNT > 0) finds its own `last` checkpoint and resumes (train.resume=auto).
set -euo pipefail

if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "slurm/launch.sh runs inside a Slurm job: submit it with sbatch slurm/train_mmdit.sh (or train_vae.sh, train_alse.sh)" >&2
  exit 2
fi
if [ $# -lt 1 ]; then
  echo "usage: bash slurm/launch.sh EXPERIMENT.yaml [key=value ...]" >&2
  exit 2
fi

# sbatch runs a copy of the script from its spool folder, so the repository is the submit folder unless set.
MODA_REPO=${MODA_REPO:-$SLURM_SUBMIT_DIR}
export MODA_REPO
cd "$MODA_REPO"
# shellcheck source=slurm/env.sh
source "$MODA_REPO/slurm/env.sh"

EXPERIMENT=$1
shift
if [ ! -f "$EXPERIMENT" ]; then
  echo "slurm/launch.sh: experiment config $EXPERIMENT not found (relative paths are from $MODA_REPO)" >&2
  exit 2
fi
JOB=${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}
RUN_NAME=${MODA_RUN_NAME:-$(basename "$EXPERIMENT" .yaml)-job$JOB}

echo "[$(date -u +%FT%TZ)] job $JOB restart ${SLURM_RESTART_COUNT:-0}: ${SLURM_JOB_NUM_NODES} node(s)" \
  "[$SLURM_JOB_NODELIST], ${SLURM_NTASKS} task(s), run folder $MODA_OUT_DIR/$RUN_NAME"

# Always srun: without it Lightning sees SLURM_NTASKS > 1 and waits for ranks that never start.
# --kill-on-bad-exit: one rank dying ends the whole step at once instead of leaving the others waiting.
# --label: every output line starts with its rank.
srun --kill-on-bad-exit=1 --label \
  python -u -m moda_train.train "$EXPERIMENT" \
  train.out_dir="$MODA_OUT_DIR" train.run_name="$RUN_NAME" "$@" &
SRUN_PID=$!

# SIGUSR1 reaches this batch shell with `--signal=B:USR1@<s>` and `scancel --signal=USR1 --full` (or --batch).
# Its default action would kill the shell, and the job would end FAILED before the ranks could save and requeue.
# Trap it and forward it to srun, which passes it to every rank (ranks that got it directly see it twice, which
# is harmless: the handler only sets a flag). `wait` returns early for a trapped signal, hence the loop.
on_usr1() {
  echo "[$(date -u +%FT%TZ)] job $JOB: batch shell got SIGUSR1, forwarded to the training step"
  kill -USR1 "$SRUN_PID" 2>/dev/null || true
}
trap on_usr1 USR1
status=0
while true; do
  wait "$SRUN_PID" && status=0 || status=$?
  kill -0 "$SRUN_PID" 2>/dev/null || break
done
exit "$status"
