#!/usr/bin/env bash
# Train a default prior on one CUDA GPU (issue 13, item 6), data generated on that machine.
#   bash training/gpu_recipe.sh [WORKDIR]        (default WORKDIR: ./gpu_run)
# Needs the project installed (README set-up) with a CUDA torch wheel. Steps and expected times on one
# modern GPU with >= 16 CPU cores: data ~2 min (CPU, simulator), training <= 9.5 min (train.max_minutes),
# validation ~1 min. The result is WORKDIR/runs/gpu/model (a checkpoint directory: --model DIR).
set -euo pipefail
W="${1:-gpu_run}"
N="$(nproc)"
mkdir -p "$W"
contextmri simulate-dataset --out "$W/data" --split train --n-slices 12000 --seed 1 --no-maps --workers "$N"
contextmri simulate-dataset --out "$W/data" --split val   --n-slices 32    --seed 1 --workers "$N"
contextmri simulate-dataset --out "$W/data" --split test  --n-slices 32    --seed 1 --workers "$N"
contextmri train --config training/configs/gpu.yaml --data "$W/data" --out "$W/runs/gpu" --device cuda
contextmri validate-prior --model "$W/runs/gpu/model" --data "$W/data" --json "$W/runs/gpu/val.json"
echo "model: $W/runs/gpu/model  (compare: contextmri validate-prior --model default --data $W/data)"
