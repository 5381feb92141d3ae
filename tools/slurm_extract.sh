#!/usr/bin/env bash
# The features stage as Slurm tasks, one per GPU, possibly over several nodes
# (the store must be on a file system every node sees). Submit this script
# with sbatch; it starts one task per allocated task slot with srun. Each task
# reads its rank from SLURM_PROCID / SLURM_STEP_NUM_TASKS; the first node of
# the allocation is the rendezvous address unless MASTER_ADDR is set.
#
#   sbatch --nodes 2 --ntasks-per-node 4 --gpus-per-node 4 tools/slurm_extract.sh
#   PARAMS=my.yaml sbatch -p PARTITION --ntasks 4 --gpus-per-task 1 tools/slurm_extract.sh
#
# Interactively, the same without this script:
#   srun -p PARTITION --ntasks 4 --gpus-per-task 1 .venv/bin/avapipe extract features
#
# Optional: MASTER_PORT (default 29500), PARAMS (default params.yaml).
# A cancelled job resumes where it stopped when submitted again.
#SBATCH --job-name=avapipe-features
#SBATCH --cpus-per-task=4
set -euo pipefail
repo="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$repo"
exec srun --kill-on-bad-exit=1 "$repo/.venv/bin/avapipe" extract features \
  --params "${PARAMS:-params.yaml}"
