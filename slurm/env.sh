# Site settings for the Slurm scripts: the one file to edit per cluster (sourced by slurm/launch.sh on every
# node of the job). Everything here can also be set in the environment before `sbatch`; Slurm passes the
# submitting shell's environment to the job, so `MODA_OUT_DIR=/scratch/me/runs sbatch slurm/train_mmdit.sh`
# works without editing. The defaults run the repository's own .venv, which is what the local test cluster does.

# Python environment. MODA_ACTIVATE is run as shell code before training: load modules, enter a container
# wrapper, activate conda... e.g. MODA_ACTIVATE="module load cuda/12.4 && source /opt/envs/moda/bin/activate".
# When empty, the virtualenv MODA_VENV is activated if it exists.
MODA_VENV=${MODA_VENV:-$MODA_REPO/.venv}
MODA_ACTIVATE=${MODA_ACTIVATE:-}

# Where run folders go: <MODA_OUT_DIR>/<experiment>-<job id>/ (checkpoints, TensorBoard, config.yaml).
# Put it on storage every node sees: a requeued job may restart on other nodes and resumes from there.
MODA_OUT_DIR=${MODA_OUT_DIR:-$MODA_REPO/runs}

# Threads per rank for CPU-side work (data workers have their own processes).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

# A rank that dies must fail the job rather than leave the others blocked in a collective: NCCL then reports
# errors asynchronously and aborts (the process-group timeout bounds the wait; srun --kill-on-bad-exit ends the
# rest of the step).
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Site network settings go here when needed, e.g. NCCL_SOCKET_IFNAME=ib0, NCCL_IB_HCA=mlx5.

if [ -n "$MODA_ACTIVATE" ]; then
  eval "$MODA_ACTIVATE"
elif [ -f "$MODA_VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$MODA_VENV/bin/activate"
fi
