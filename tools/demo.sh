#!/usr/bin/env bash
# README command one: install, then run the whole pipeline on the built-in data.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash tools/install.sh
export PATH="$repo/.venv/bin:$PATH"
dvc repro "$@"
if [ -f data/results/metrics.json ]; then
  python -c 'import json; v = json.load(open("data/results/metrics.json"))["mAP"]; print("frame-mAP@0.5:", "n/a (no ground truth)" if v is None else "%.4f" % v)'
fi
