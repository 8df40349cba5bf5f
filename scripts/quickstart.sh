#!/usr/bin/env bash
# The quickstart: demo corpus -> shards -> train the tiny VAE, ALSE and MMDiT -> generate -> evaluate, on CPU.
# Run through `make quickstart` (which sets up .venv first). Every step is a plain CLI call you can copy, and every
# step resumes: running the quickstart again skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-runs}
OUT=${OUT:-outputs/quickstart}
# Two busy threads on a two-core machine wait for each other; one per process is faster for these tiny models.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
step() { printf '\n== [%3ss] %s\n' "$(($(date +%s) - start))" "$*"; }

step "1/8 demo corpus: talking-head videos from a real photo and synthetic speech -> demo/videos"
python -m data_prep.demo_corpus --out demo/videos --num-videos 24

step "2/8 shards: face crops, landmark motion, log-mel audio -> demo/shards (train/val/test by speaker)"
python -m data_prep.shard configs/data_prep/demo.yaml

step "3/8 motion VAE (tiny) -> $RUNS/vae_tiny_cpu"
python -m moda_train.train configs/experiments/vae_tiny_cpu.yaml train.out_dir="$RUNS"

step "4/8 ALSE lip-sync expert (tiny) -> $RUNS/alse_tiny_cpu"
python -m moda_train.train configs/experiments/alse_tiny_cpu.yaml train.out_dir="$RUNS"

step "5/8 emotion classifier (tiny) -> $RUNS/emotion_tiny_cpu"
python -m moda_train.train configs/experiments/emotion_tiny_cpu.yaml train.out_dir="$RUNS"

step "6/8 MMDiT (tiny) with the ALSE loss -> $RUNS/mmdit_tiny_cpu"
python -m moda_train.train configs/experiments/mmdit_tiny_cpu.yaml train.out_dir="$RUNS" \
  sync.checkpoint="$RUNS/alse_tiny_cpu/checkpoints/best.ckpt"
CHECKPOINT="$RUNS/mmdit_tiny_cpu/checkpoints/last.ckpt"

step "7/8 generate a video from a test speaker's first frame and speech -> $OUT/generated"
# spk05 is the demo corpus's test speaker (data_prep.demo_corpus gives the last speaker the test split); a video
# as --image means its first frame
python -m moda_train.generate --checkpoint "$CHECKPOINT" --image demo/videos/spk05_000.mp4 \
  --audio demo/videos/spk05_000.mp4 --out "$OUT/generated" --name demo

step "8/8 evaluate the checkpoint on the demo test split -> $OUT/eval"
python -m evaluation.run configs/eval/demo_checkpoint.yaml checkpoint="$CHECKPOINT" out_dir="$OUT/eval" \
  motion_sync.checkpoint="$RUNS/alse_tiny_cpu/checkpoints/best.ckpt" \
  emotion.checkpoint="$RUNS/emotion_tiny_cpu/checkpoints/last.ckpt"

step "done in $(($(date +%s) - start)) s"
cat <<EOF
  training runs (checkpoints, TensorBoard):  $RUNS/{vae,alse,emotion,mmdit}_tiny_cpu ->  tensorboard --logdir $RUNS
  generated video + motion:                 $OUT/generated/demo_seed0.mp4, demo_seed0.npy
  evaluation report:                        $OUT/eval/report.md (metrics.json beside it)
EOF
