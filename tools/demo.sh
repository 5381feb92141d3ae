#!/usr/bin/env bash
# README command one: install, then run the whole pipeline on the built-in data.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash tools/install.sh
export PATH="$repo/.venv/bin:$PATH"
dvc repro "$@"
if [ -f data/results/metrics.json ]; then
  python -c 'import json; m = json.load(open("data/results/metrics.json")); print(f"frame-mAP@0.5 (val): {m[\"mAP\"]:.4f}")'
fi
