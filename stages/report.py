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
from avapipe.evaluation.ablation import AblationReport, full_report
from avapipe.evaluation.report import BASELINE, ExperimentRun
from avapipe.models.head import HEAD_OPTIONS, unused_options
from stages import labels, paths
from stages.params import TrainParams

PREDICTIONS = str(paths.RESULTS / "predictions.csv")
CONFIG_KEYS = ("fusion", "pose_part")  # HEAD_OPTIONS: the train.* keys that change the head


def _records(node) -> Iterator[tuple[str, dict]]:
    """(name, data block) of every experiment / commit in ``dvc exp show --json``."""
    if isinstance(node, list):
        for item in node:
            yield from _records(item)
    elif isinstance(node, dict):
        state = (node.get("executor") or {}).get("state")
        if state not in (None, "success"):  # queued, running or failed: no results yet
            return
        data = node.get("data")
        if isinstance(data, dict) and "params" in data:
            yield str(node.get("name") or node.get("rev") or "?"), data
        for key in ("experiments", "revs"):
            yield from _records(node.get(key) or [])


def _cached_file(md5: str, cache: Path) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def runs_from_exp_show(exp_show: list, *, cache: Path) -> list[ExperimentRun]:
    """One run per distinct (config, seed, predictions); experiments whose
    predictions are not in the local cache are left out. A run's config is its
    CONFIG_KEYS plus each of the head options (HEAD_OPTIONS, under ``train``)
    that differs between the runs, so that such runs are never pooled as seeds; an
    experiment that predates a head option had its default. Two experiments of the
    same config and seed with different predictions (other code, data or params)
    are an error rather than two seeds; so are two configs of one head (that differ
    only in options it does not read, ``unused_options``), whose runs are also the
    runs of each other's config where it has none (e.g. the baseline)."""
    found, seen, named = [], set(), {}
    for name, data in _records(exp_show):
        params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        out = (data.get("outs") or {}).get(PREDICTIONS) or {}
        md5 = out.get("hash")
        if not params or not md5 or not _cached_file(md5, cache).exists():
            continue
        config = {k: params.get(k) for k in CONFIG_KEYS}
        train = params.get("train") or {}
        config.update({k: train.get(k, getattr(TrainParams(), k)) for k in HEAD_OPTIONS})
        key = (tuple(config.values()), int(params.get("seed", 0)), md5)
        _check_one_result(named, config, key[1], md5, name)
        if key not in seen:
            seen.add(key)
            found.append((config, key[1], md5))
    found += _shared_baselines(found)
    varying = [k for k in HEAD_OPTIONS if len({str(c[k]) for c, _, _ in found}) > 1]
    return [ExperimentRun(
        config={k: v for k, v in config.items() if k in CONFIG_KEYS or k in varying},
        seed=seed, predictions=ava.read_results_csv(_cached_file(md5, cache)).rows)
        for config, seed, md5 in found]


def _same_head(config: dict) -> tuple:
    """config's items, with the head options its head does not read set to None."""
    unused = unused_options(fusion=config["fusion"], pose_part=bool(config["pose_part"]))
    return tuple((k, None if k in unused else v) for k, v in config.items())


def _shared_baselines(found: list[tuple[dict, int, str]]) -> list[tuple[dict, int, str]]:
    """(baseline config, seed, md5) for each baseline of a found config that has no
    run of its own for a seed, from a run of the same head: fusion=none has no memory
    block, so its runs with memory_reader=attention are those of memory_reader=spans."""
    have = {(tuple(c.items()), seed) for c, seed, _ in found}
    baselines = dict.fromkeys(tuple({**c, **BASELINE}.items()) for c, _, _ in found)
    shared = []
    for wanted in baselines:
        head = _same_head(dict(wanted))
        for other, seed, md5 in found:
            if (wanted, seed) not in have and _same_head(other) == head:
                have.add((wanted, seed))
                shared.append((dict(wanted), seed, md5))
    return shared


def _check_one_result(named: dict, config: dict, seed: int, md5: str, name: str) -> None:
    """Raises unless every experiment of config's head and seed has predictions md5."""
    head = _same_head(config)
    other = named.setdefault((head, seed), (md5, name))
    if other[0] != md5:
        config = ", ".join(f"{k}={v}" for k, v in head if v is not None)
        fix = ("Report one baseline at a time (fewer --commits), or remove one "
               "(`dvc exp remove`)")
        if "workspace" in (name, other[1]):
            fix = ("The workspace's outputs are not those of its params.yaml: run `dvc repro`, "
                   "or `dvc exp apply` the experiment they came from")
        raise RuntimeError(
            f"experiments {other[1]} and {name} have the same configuration ({config}) and seed "
            f"{seed} but different predictions: they ran other code, data or params. {fix}")


def dvc_cache_dir() -> Path:
    """The repo's DVC cache, wherever `dvc cache dir` put it (shared caches are common)."""
    found = subprocess.run(["dvc", "cache", "dir"], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


def experiments_report(*, resamples: int, seed: int, commits: int = 1) -> AblationReport:
    """The AblationReport of this repo's DVC experiments, with the data's class groups.
    commits: the experiments of HEAD and its commits - 1 first parents as baselines
    (``dvc exp show -n``), for experiments whose results later commits do not change."""
    if commits < 1:
        raise ValueError(f"commits={commits}; report the experiments of at least 1 commit")
    shown = subprocess.run(["dvc", "exp", "show", "--json", "-n", str(commits)],
                           capture_output=True, text=True, check=True)
    cache = dvc_cache_dir()
    runs = runs_from_exp_show(json.loads(shown.stdout), cache=cache)
    if not runs:
        raise RuntimeError(f"no experiments with predictions in the DVC cache {cache}; run "
                           "`dvc repro` or `dvc exp run` first (or `dvc pull` them)")
    truth = labels.groundtruth_csv("val")
    return full_report(
        runs=runs, groundtruth=truth.rows, empty_keyframes=truth.empty_keyframes,
        label_map=ava.read_label_map(paths.LABEL_MAP), excluded=labels.exclusions(),
        groups=labels.groups(), resamples=resamples, seed=seed,
    )
