"""``avapipe report``: the DVC experiments of this repo as an ablation table.

Each experiment (``dvc exp show --json``) gives its params and the hash of
its ``predictions.csv``; the predictions are read back from the DVC cache so
that differences from the baseline get paired bootstrap intervals over the
same validation keyframes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from avapipe.data import ava
from avapipe.evaluation.report import ExperimentRun, ablation_report
from stages import labels, paths

PREDICTIONS = str(paths.RESULTS / "predictions.csv")
CONFIG_KEYS = ("fusion", "pose_part")


def _records(node) -> Iterator[dict]:
    """Every experiment / commit ``data`` block in ``dvc exp show --json``."""
    if isinstance(node, list):
        for item in node:
            yield from _records(item)
    elif isinstance(node, dict):
        state = (node.get("executor") or {}).get("state")
        if state not in (None, "success"):  # queued, running or failed: no results yet
            return
        data = node.get("data")
        if isinstance(data, dict) and "params" in data:
            yield data
        for key in ("experiments", "revs"):
            yield from _records(node.get(key) or [])


def _cached_file(md5: str, cache: Path) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def runs_from_exp_show(exp_show: list, *, cache: Path) -> list[ExperimentRun]:
    """One run per distinct (config, seed, predictions); experiments whose
    predictions are not in the local cache are left out."""
    runs, seen = [], set()
    for data in _records(exp_show):
        params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        out = (data.get("outs") or {}).get(PREDICTIONS) or {}
        md5 = out.get("hash")
        if not params or not md5 or not _cached_file(md5, cache).exists():
            continue
        config = {k: params.get(k) for k in CONFIG_KEYS}
        key = (tuple(config.values()), params.get("seed"), md5)
        if key in seen:
            continue
        seen.add(key)
        predictions = ava.read_results_csv(_cached_file(md5, cache)).rows
        runs.append(ExperimentRun(config=config, seed=int(params.get("seed", 0)),
                                  predictions=predictions))
    return runs


def ablation_table(*, resamples: int, seed: int) -> pd.DataFrame:
    shown = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True,
                           text=True, check=True)
    runs = runs_from_exp_show(json.loads(shown.stdout), cache=Path(".dvc/cache"))
    if not runs:
        raise RuntimeError("no experiments with cached predictions; run `dvc repro` "
                           "or `dvc exp run` first")
    truth = labels.groundtruth_csv("val")
    return ablation_report(
        runs=runs, groundtruth=truth.rows, empty_keyframes=truth.empty_keyframes,
        label_map=ava.read_label_map(paths.LABEL_MAP), excluded=labels.exclusions(),
        resamples=resamples, seed=seed,
    )
