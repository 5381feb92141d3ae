"""kill -9 at a random point of the features and train stages, then re-run.

In a fresh git + DVC project on a small built-in dataset: ``dvc repro`` once
(the uninterrupted reference), then for each stage and each way of running
it (``avapipe`` directly, or inside ``dvc repro``) and ``--runs`` times: start
it from scratch, kill its whole process group with SIGKILL after a random
fraction of the time an uninterrupted run of the same command takes, re-run
it, and compare what it wrote with the reference:

- features: every file of ``features.zarr`` byte for byte (sha256), and
  also each Zarr array (dtype, shape, values), the index tables (parquet
  frames) and the group attributes;
- train: the final classifier's weights and config (``state_dict`` tensors
  equal), the kept epoch and best checkpoints (same names, equal weights),
  and ``training_curves.csv`` as text (checkpoint files differ in bytes: they
  hold mmengine's timestamps and run name);
- and that no lock, ``.partial`` or ``.old`` sibling is left behind.

    .venv/bin/python tools/kill_rerun.py [--runs 3] [--seed 0] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
import zarr

REPO = Path(__file__).resolve().parents[1]
# Big enough that most of a stage's time is its work, not Python's start-up.
SIZE = {"synthetic": {"train_videos": 3, "val_videos": 2, "seconds": 10},
        "pretrain": {"epochs": 1}, "train": {"epochs": 30}}
OUTPUT = {"features": Path("data/features/features.zarr"), "train": Path("models/classifier")}
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           GIT_AUTHOR_NAME="avapipe", GIT_AUTHOR_EMAIL="avapipe@localhost",
           GIT_COMMITTER_NAME="avapipe", GIT_COMMITTER_EMAIL="avapipe@localhost")


def sh(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def new_project(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "pipeline", "plots"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in SIZE.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh(["dvc", "init", "-q"], root)
    return root


def command(stage: str, mode: str) -> list[str]:
    """The stage alone. Under DVC with -f: its params are those of the
    reference run, whose outputs DVC would otherwise check out of its cache
    instead of running the stage (DVC removes the old outputs either way)."""
    if mode == "dvc":
        return ["dvc", "repro", "-f", "-s", stage]
    return ["avapipe", "extract", stage]


def start_fresh(project: Path, stage: str) -> None:
    """Removes what an earlier run left, so that the stage starts from nothing."""
    out = project / OUTPUT[stage]
    for path in (out, *(out.with_name(out.name + s) for s in (".partial", ".lock", ".old"))):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    begin = time.monotonic()
    out = sh(args, cwd)
    return time.monotonic() - begin, out


def kill_after(args: list[str], cwd: Path, seconds: float) -> bool:
    """Runs ``args``, SIGKILLs its process group after ``seconds``; whether it still ran."""
    child = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        child.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return True


def state_at_kill(project: Path, stage: str) -> str:
    out = project / OUTPUT[stage]
    partial = out.with_name(out.name + ".partial")
    if not partial.exists():  # the run started from nothing
        return "output in place" if out.exists() else "nothing written yet"
    if stage == "features":
        return f"{len(list((partial / 'progress').glob('*.done')))} videos committed"
    epochs = sorted(p.stem for p in partial.glob("epoch_*.pth"))
    return f"checkpoint {', '.join(epochs) or 'none yet'}"


def file_hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def same_store(a: Path, b: Path) -> list[str]:
    """What differs between two feature stores (empty: identical)."""
    problems = [] if file_hashes(a) == file_hashes(b) else ["file bytes"]
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    if dict(ga.attrs) != dict(gb.attrs):
        problems.append("attributes")
    for name in ("persons", "parts", "part_valid", "objects"):
        x, y = ga[name][:], gb[name][:]
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            problems.append(f"array {name}")
    for table in ("persons", "objects", "videos"):
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(a / f"{table}.parquet"),
                                          pd.read_parquet(b / f"{table}.parquet"))
        except AssertionError:
            problems.append(f"table {table}")
    return problems


def _weights(path: Path) -> tuple[dict, dict]:
    from avapipe.checkpoints import load_trusted_checkpoint

    loaded = load_trusted_checkpoint(path)
    return loaded["state_dict"], loaded.get("avapipe_model", {})


def same_classifier(a: Path, b: Path, curves_a: Path, curves_b: Path) -> list[str]:
    names = sorted(p.name for p in a.glob("*.pth"))
    problems = [] if names == sorted(p.name for p in b.glob("*.pth")) else ["checkpoint names"]
    for name in names:
        if not (b / name).exists():
            continue
        (wa, ca), (wb, cb) = _weights(a / name), _weights(b / name)
        if ca != cb or wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            problems.append(f"weights of {name}")
    if curves_a.read_text() != curves_b.read_text():
        problems.append("training curves")
    return problems


def leftovers(project: Path, stage: str) -> list[str]:
    out = project / OUTPUT[stage]
    return [p.name for p in out.parent.iterdir() if p.name.startswith(out.name + ".")]


def compare(project: Path, reference: Path, stage: str) -> list[str]:
    out = project / OUTPUT[stage]
    if not out.exists():
        return ["output missing"]
    if stage == "features":
        problems = same_store(reference / "features.zarr", out)
    else:
        problems = same_classifier(reference / "classifier", out, reference / "curves.csv",
                                   project / "data/results/training_curves.csv")
    return problems + [f"left {name}" for name in leftovers(project, stage)]


def resumed_note(stage: str, out: str) -> str:
    if stage == "features":
        found = re.search(r"ExtractSummary\(videos=(\d+), computed=(\d+)", out)
        return f"computed {found[2]} of {found[1]} videos" if found else "stage not re-run"
    if "train: " not in out:
        return "stage not re-run"
    return "resumed" if "resuming the interrupted run" in out else "trained from epoch 0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", default=["features", "train"])
    parser.add_argument("--modes", nargs="+", default=["direct", "dvc"])
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="avapipe-kill-"))
    project, reference = new_project(work / "project"), work / "reference"
    seconds, _ = timed(["dvc", "repro"], project)
    print(f"reference: dvc repro in {seconds:.0f} s ({project})", flush=True)
    reference.mkdir()
    shutil.copytree(project / OUTPUT["features"], reference / "features.zarr")
    shutil.copytree(project / OUTPUT["train"], reference / "classifier")
    shutil.copy(project / "data/results/training_curves.csv", reference / "curves.csv")
    print("stage     mode    run  kill at          state at kill               re-run    "
          "                      identical", flush=True)
    failures = 0
    for stage in args.stages:
        for mode in args.modes:
            start_fresh(project, stage)
            whole, _ = timed(command(stage, mode), project)
            problems = compare(project, reference, stage)
            failures += bool(problems)
            print(f"{stage:9} {mode:7} -    uninterrupted {whole:5.1f} s"
                  f"{'':38}{'yes' if not problems else problems}", flush=True)
            for run in range(1, args.runs + 1):
                start_fresh(project, stage)
                at = rng.uniform(0, whole)
                killed = kill_after(command(stage, mode), project, at)
                state = state_at_kill(project, stage) if killed else "finished before the kill"
                took, out = timed(command(stage, mode), project)
                problems = compare(project, reference, stage)
                failures += bool(problems)
                print(f"{stage:9} {mode:7} {run:<4} {at:5.1f} s ({at / whole:4.0%})  {state:27} "
                      f"{took:5.1f} s, {resumed_note(stage, out):23} "
                      f"{'yes' if not problems else problems}", flush=True)
    print(f"{failures} runs differ from the reference")
    if not args.keep:
        shutil.rmtree(work)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
