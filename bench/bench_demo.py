"""Wall time and peak RSS of every stage of the demo, in a fresh copy of the repo.

    .venv/bin/python bench/bench_demo.py [--keep DIR]

Each stage runs as ``avapipe extract <stage>`` in its own process (as
``dvc repro`` runs it), in DAG order; the peak RSS is that process's
``ru_maxrss``. Prints one line per stage and the total.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _copy_project(dest: Path) -> None:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("stages", "pipeline", "plots"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="run here and keep the outputs")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="avapipe-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    _copy_project(work)
    stages = list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"])
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    total = 0.0
    for stage in stages:
        start = time.perf_counter()
        # A small parent per stage, so that RUSAGE_CHILDREN is that stage's peak alone.
        done = subprocess.run(
            [sys.executable, "-c", "import resource, subprocess, sys; "
             "subprocess.run(['avapipe', 'extract', sys.argv[1]], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", stage],
            cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"stage {stage} failed:\n{done.stderr[-3000:]}")
        peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
        total += wall
        print(f"{stage:10s} wall {wall:7.1f} s   peak RSS {peak_mb:7.0f} MiB", flush=True)
    print(f"{'total':10s} wall {total:7.1f} s")
    metrics = (work / "data/results/metrics.json")
    if metrics.exists():
        print(metrics.read_text())
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
