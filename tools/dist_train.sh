#!/usr/bin/env bash
# The train stage as data-parallel training (DDP through mmengine's Runner)
# on several processes of one machine, started by torchrun. Every process
# trains on its share of each epoch, train.batch_size keyframes per process
# per step (the effective batch is NPROC times larger: scale train.lr if
# needed); rank 0 writes the checkpoints, the curves and models/classifier/final.pth.
#
#   bash tools/dist_train.sh 2                     # 2 processes, params.yaml
#   bash tools/dist_train.sh 8 --params my.yaml
#
# Equivalent by hand:
#   torchrun --standalone --nproc_per_node 2 "$(which avapipe)" train
# Then `dvc commit train` so that DVC records the outputs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
nproc="${1:?usage: tools/dist_train.sh NPROC [--params FILE]}"
shift
exec "$repo/.venv/bin/torchrun" --standalone --nproc_per_node "$nproc" \
  "$repo/.venv/bin/avapipe" train "$@"
