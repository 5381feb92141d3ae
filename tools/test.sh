#!/usr/bin/env bash
# README command two: install (if needed) and run the whole test suite.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash tools/install.sh
# pytest's own exit code is the result: 5 (nothing collected) fails too.
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
