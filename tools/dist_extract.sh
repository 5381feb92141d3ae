#!/usr/bin/env bash
# The features stage on several processes of one machine (one per GPU, or a
# few CPU processes), started by torchrun. Each process takes every N-th video
# still to do; the store equals a one-process run's, and an interrupted run
# resumes (with any number of processes).
#
#   bash tools/dist_extract.sh 4                   # 4 processes, params.yaml
#   bash tools/dist_extract.sh 2 --params my.yaml
#
# Backend: NCCL when params.yaml says device: cuda, gloo for device: cpu.
# Equivalent by hand:
#   torchrun --standalone --nproc_per_node 4 "$(which avapipe)" extract features
#   torchrun --standalone --nproc_per_node 4 -m stages.cli extract features
# The stage's outputs are the same as `dvc repro features`'s; run
# `dvc commit features` afterwards so that DVC records them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
nproc="${1:?usage: tools/dist_extract.sh NPROC [--params FILE]}"
shift
exec "$repo/.venv/bin/torchrun" --standalone --nproc_per_node "$nproc" \
  "$repo/.venv/bin/avapipe" extract features "$@"
