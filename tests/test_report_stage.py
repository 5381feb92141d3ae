"""Collecting experiment runs from `dvc exp show --json` and the DVC cache."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from avapipe.data.ava import write_results_csv

from stages.report import dvc_cache_dir, runs_from_exp_show


def _predictions(cache, md5, score):
    path = cache / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = pd.DataFrame([dict(video_id="vidAAAAAAAA", timestamp=902, x1=0.1, y1=0.1, x2=0.5,
                              y2=0.9, action_id=1, score=score)])
    write_results_csv(path, rows=rows)


def _record(fusion, seed, md5, padding="mask", pose_part=False, **train):
    return {"params": {"params.yaml": {"data": {"fusion": fusion, "pose_part": pose_part,
                                                "seed": seed,
                                                "train": {"padding": padding,
                                                          "attend_self": False, **train}}}},
            "outs": {"data/results/predictions.csv": {"hash": md5}}}


def test_runs_come_from_finished_experiments_with_cached_predictions(tmp_path):
    cache = tmp_path / "cache"
    _predictions(cache, "aa11", 0.9)
    _predictions(cache, "bb22", 0.4)
    shown = [
        {"rev": "workspace", "data": _record("none", 0, "aa11")},
        {"rev": "abc", "data": _record("none", 0, "aa11"), "experiments": [
            {"executor": {"state": "success"}, "revs": [{"data": _record("cube", 1, "bb22")}]},
            {"executor": {"state": "running"}, "revs": [{"data": _record("cube", 2, "aa11")}]},
            {"executor": None, "revs": [{"data": _record("dense", 0, "not-in-cache")}]},
        ]},
    ]
    runs = runs_from_exp_show(shown, cache=cache)
    assert [(r.config["fusion"], r.seed) for r in runs] == [("none", 0), ("cube", 1)]
    assert runs[1].predictions["score"].tolist() == [0.4]


def test_runs_that_differ_in_a_head_option_are_separate_configurations(tmp_path):
    cache = tmp_path / "cache"
    _predictions(cache, "aa11", 0.9)
    _predictions(cache, "bb22", 0.4)
    same = [{"rev": "a", "data": _record("cube", 0, "aa11")},
            {"rev": "b", "data": _record("cube", 1, "bb22")}]
    assert [r.config for r in runs_from_exp_show(same, cache=cache)] == [
        {"fusion": "cube", "pose_part": False}] * 2
    differ = [{"rev": "a", "data": _record("cube", 0, "aa11")},
              {"rev": "b", "data": _record("cube", 0, "bb22", padding="attend")}]
    assert [r.config["padding"] for r in runs_from_exp_show(differ, cache=cache)] == [
        "mask", "attend"]


def test_the_cache_is_where_dvc_says_it_is(tmp_path, monkeypatch):
    """A shared cache (`dvc cache dir`) is read from there, not from .dvc/cache."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    repo, shared = tmp_path / "repo", tmp_path / "shared-cache"
    repo.mkdir()
    monkeypatch.chdir(repo)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["dvc", "init", "-q"], check=True)
    assert dvc_cache_dir() == repo / ".dvc" / "cache"
    subprocess.run(["dvc", "cache", "dir", str(shared)], check=True)
    assert dvc_cache_dir() == shared


def test_an_experiment_without_a_newer_head_option_had_its_default(tmp_path):
    cache = tmp_path / "cache"
    _predictions(cache, "aa11", 0.9)
    _predictions(cache, "bb22", 0.4)
    newer = _record("parallel", 0, "bb22")
    newer["params"]["params.yaml"]["data"]["train"]["memory_reader"] = "spans"
    shown = [{"rev": "old", "data": _record("parallel", 0, "aa11")},
             {"rev": "new", "data": newer}]
    assert [r.config["memory_reader"] for r in runs_from_exp_show(shown, cache=cache)] == [
        "attention", "spans"]


def test_one_config_and_seed_with_two_results_is_an_error(tmp_path):
    cache = tmp_path / "cache"
    _predictions(cache, "aa11", 0.9)
    _predictions(cache, "bb22", 0.4)
    same = [{"rev": "a", "name": "none-s0", "data": _record("none", 0, "aa11")},
            {"rev": "b", "name": "none-s0-again", "data": _record("none", 0, "aa11")}]
    assert len(runs_from_exp_show(same, cache=cache)) == 1  # the same result twice: one run
    differ = same + [{"rev": "c", "name": "none-s0-other", "data": _record("none", 0, "bb22")}]
    with pytest.raises(RuntimeError, match=r"none-s0 and none-s0-other have the same configuration "
                       r"\(fusion=none, pose_part=False\) "
                       r"and seed 0 but different.*fewer --commits"):
        runs_from_exp_show(differ, cache=cache)
    # params.yaml edited after a run: the workspace's outputs are another config's
    stale = same[:1] + [{"rev": "workspace", "data": _record("none", 0, "bb22")}]
    with pytest.raises(RuntimeError, match=r"none-s0 and workspace .*run `dvc repro`"):
        runs_from_exp_show(stale, cache=cache)


def test_the_baseline_runs_serve_every_head_option_its_head_does_not_read(tmp_path):
    """fusion=none has no memory block: its runs are also the baseline of spans."""
    cache = tmp_path / "cache"
    for md5, score in [("aa11", 0.9), ("bb22", 0.4), ("cc33", 0.2), ("dd44", 0.7)]:
        _predictions(cache, md5, score)
    shown = [{"rev": "a", "data": _record("none", 0, "aa11")},
             {"rev": "b", "data": _record("parallel", 0, "bb22", memory_reader="spans")},
             {"rev": "c", "data": _record("none", 0, "cc33", pose_part=True,
                                          part_pooling="mean")}]
    runs = {tuple(r.config.values()): r for r in runs_from_exp_show(shown, cache=cache)}
    assert set(runs) == {("none", False, "attention", "concat"),
                         ("parallel", False, "spans", "concat"),
                         ("none", True, "attention", "mean"),
                         ("none", False, "spans", "concat"), ("none", False, "attention", "mean")}
    for shared in [("none", False, "spans", "concat"), ("none", False, "attention", "mean")]:
        assert runs[shared].seed == 0 and runs[shared].predictions["score"].tolist() == [0.9]
    # a head option a head does read is never shared: no parallel run with attention
    assert ("parallel", False, "attention", "concat") not in runs


def test_two_configs_of_one_head_with_two_results_are_an_error(tmp_path):
    cache = tmp_path / "cache"
    _predictions(cache, "aa11", 0.9)
    _predictions(cache, "bb22", 0.4)
    _predictions(cache, "cc33", 0.2)
    same_head = [{"rev": "a", "name": "none-s0", "data": _record("none", 0, "aa11")},
                 {"rev": "b", "name": "none-spans-s0",
                  "data": _record("none", 0, "aa11", memory_reader="spans")}]
    assert len(runs_from_exp_show(same_head, cache=cache)) == 2
    differ = [same_head[0], {"rev": "b", "name": "none-spans-s0",
                             "data": _record("none", 0, "bb22", memory_reader="spans")}]
    with pytest.raises(RuntimeError, match=r"none-s0 and none-spans-s0 have the same "
                       r"configuration \(fusion=none, pose_part=False\) and seed 0"):
        runs_from_exp_show(differ, cache=cache)
    parallel = [{"rev": "a", "name": "p-s0", "data": _record("parallel", 0, "aa11")},
                {"rev": "b", "name": "p-s0-again", "data": _record("parallel", 0, "cc33")}]
    with pytest.raises(RuntimeError, match=r"\(fusion=parallel, pose_part=False, padding=mask, "
                       r"attend_self=False, memory_reader=attention\) and seed 0"):
        runs_from_exp_show(parallel, cache=cache)
