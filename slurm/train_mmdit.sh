#!/usr/bin/env bash
# Train the MoDA MMDiT (rectified flow over motion) on a Slurm cluster:
#   sbatch slurm/train_mmdit.sh [EXPERIMENT.yaml] [key=value ...]      (default experiment: configs/experiments/mmdit_moda_b.yaml)
# Submit from the repository root. Per-cluster values: edit the #SBATCH lines below or override them on the
# command line (sbatch flags win over these lines), e.g.
#   sbatch -p gpu -A myproject --nodes=4 --time=48:00:00 slurm/train_mmdit.sh
# Partition and account are left to the cluster's defaults (or SBATCH_PARTITION / SBATCH_ACCOUNT).
# Site paths and environment activation live in slurm/env.sh.
#SBATCH --job-name=moda-mmdit
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# --ntasks-per-node must equal --gpus-per-node (one process per GPU); --cpus-per-task feeds the data workers.
# --signal: 90 s before the time limit every rank gets SIGUSR1, saves `last` and the job requeues itself.
# --open-mode=append keeps the log of every restart of the job in one file.
set -euo pipefail
EXPERIMENT=configs/experiments/mmdit_moda_b.yaml
if [[ ${1:-} == *.yaml ]]; then
  EXPERIMENT=$1
  shift
fi
exec bash "${MODA_REPO:-$SLURM_SUBMIT_DIR}/slurm/launch.sh" "$EXPERIMENT" "$@"
