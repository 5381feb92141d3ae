#!/usr/bin/env bash
# Creates .venv in the repo root and installs avapipe with the full stack
# (torch, OpenMMLab with mmcv's compiled ops, pytorchvideo, dvc, zarr).
#
# mmcv 2.1.0, xtcocotools and chumpy ship no usable wheels for this stack, so
# they are built once into a wheel cache outside the repository
# (AVAPIPE_WHEEL_CACHE, default ~/.cache/avapipe/wheels); later installs on the
# same machine reuse the cached wheels and take seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${AVAPIPE_WHEEL_CACHE:-$HOME/.cache/avapipe/wheels}"
python="${PYTHON:-python3}"
venv="$repo/.venv"
pip="$venv/bin/pip"
mkdir -p "$cache"
log() { printf '[install] %s\n' "$*" >&2; }
# pip, without the warning this machine's pip config prints for every package
# its extra local index lacks.
pipq() { "$pip" "$@" 2> >(grep -v '^WARNING: Location' >&2); }

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.avapipe-installed"
lock="$repo/requirements.lock"
if [ -f "$stamp" ] && cmp -s "$stamp" <(cat "$lock" "$repo/pyproject.toml"); then
  pipq install -q --no-deps --no-build-isolation -e "$repo" >/dev/null
  log "environment up to date ($venv)"
  exit 0
fi

# setuptools: torch needs >=77; 82 removed pkg_resources, which mmcv's setup
# and mmengine import.
pipq install -q --upgrade "pip==25.3" "setuptools>=77,<82" wheel
pipq install -q -c "$lock" torch torchvision numpy Cython ninja

build_wheel() {  # name version: build into the cache unless already there
  local name="$1" version="$2"
  if ls "$cache"/"${name}"-"${version}"-*.whl >/dev/null 2>&1; then
    log "cached wheel: $name $version"; return
  fi
  log "building $name $version (once; cached in $cache)"
  local work; work="$(mktemp -d)"
  pipq download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" "$name==$version"
  tar -xzf "$work"/*.tar.gz -C "$work"
  local src; src="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
  if [ "$name" = mmcv ]; then
    # torch 2.14 headers require C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  fi
  # No build isolation: mmcv's isolated build silently skips mmcv._ext, and
  # xtcocotools must compile against the numpy installed here (numpy 2).
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA=0 \
    pipq wheel -q --no-deps --no-build-isolation -w "$cache" "$src"
  rm -rf "$work"
}
build_wheel mmcv 2.1.0
build_wheel xtcocotools 1.14.3
build_wheel chumpy 0.70

log "installing avapipe and pinned dependencies"
# The locally built wheels by file: PyPI's xtcocotools wheel has the same
# version but is compiled against numpy 1 and fails to import beside numpy 2.
pipq install -q --no-deps --force-reinstall \
  "$cache"/mmcv-2.1.0-*.whl "$cache"/xtcocotools-1.14.3-*.whl "$cache"/chumpy-0.70-*.whl
pipq install -q --find-links "$cache" -c "$lock" -e "$repo[test]"
cat "$lock" "$repo/pyproject.toml" > "$stamp"
log "done: $venv"
