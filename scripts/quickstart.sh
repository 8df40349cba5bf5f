#!/usr/bin/env bash
# The quickstart: demo corpus -> shards -> train the tiny models -> generate -> evaluate, on CPU.
# Run through `make quickstart` (which sets up .venv first). Every step is a plain CLI call you can copy.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1. Check the tiny experiment config"
python -m moda_train.train configs/experiments/mmdit_tiny_cpu.yaml --print-config > /dev/null
echo "configs/experiments/mmdit_tiny_cpu.yaml resolves"
