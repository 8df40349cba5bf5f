#!/usr/bin/env bash
# Evaluate generated videos against a benchmark split as a Slurm job (one task, `workers` processes inside it):
#   sbatch slurm/eval.sh CONFIG.yaml [key=value ...]
#   sbatch slurm/eval.sh configs/eval/benchmark.yaml split=hdtf_test.csv generated_dir=samples/hdtf \
#       out_dir=outputs/eval/hdtf
# Submit from the repository root. Weights: set MODA_I3D_PATH and MODA_SYNCNET_PATH (here, in slurm/env.sh, or in
# the submitting shell) or give fvd.weights= / sync.weights=; a missing file makes that metric "skipped".
# MODA_S3FD_PATH (or sync.s3fd_weights=) makes Sync-C/D detect faces with syncnet_python's S3FD.
# Re-submitting the same command resumes: videos already in <out_dir>/cache are not evaluated again.
# On a GPU node add device=cuda (and e.g. --gpus=1 on the sbatch line).
#SBATCH --job-name=moda-eval
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: sbatch slurm/eval.sh CONFIG.yaml [key=value ...]" >&2
  exit 2
fi
MODA_REPO=${MODA_REPO:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
export MODA_REPO
cd "$MODA_REPO"
# shellcheck source=slurm/env.sh
source "$MODA_REPO/slurm/env.sh"

# One worker process per 2 allocated CPUs, each with 2 torch threads, unless the command line says otherwise.
CPUS=${SLURM_CPUS_PER_TASK:-2}
WORKERS=$((CPUS / 2 > 0 ? CPUS / 2 : 1))
# Always srun inside an allocation (see DESIGN §5); later key=value arguments win over these defaults.
srun python -u -m evaluation.run "$1" workers="$WORKERS" threads=2 "${@:2}"
