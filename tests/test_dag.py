"""End to end: the real DVC pipeline on a tiny built-in dataset, in a fresh repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from openmmlab_checkpoints import (
    DETECTOR_CONFIG, POSE_CONFIG, random_detector_checkpoint, random_pose_checkpoint,
)

from avapipe.data.ava import read_results_csv
from avapipe.data.video import probe_video

REPO = Path(__file__).resolve().parents[1]

# Small enough for the whole DAG to run in about a minute on 2 cores.
TINY = {
    "synthetic": {"train_videos": 2, "val_videos": 1, "seconds": 8},
    "pretrain": {"epochs": 1},
    "train": {"epochs": 2},
}


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def _set_params(project: Path, overrides: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict) and section in params:
            params[section].update(values)
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _stages_in(dvc_yaml: Path) -> list[str]:
    return list(yaml.safe_load(dvc_yaml.read_text())["stages"])


def _new_project(root: Path, overrides: dict) -> Path:
    """A fresh git + DVC repo holding the pipeline's definition."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "pipeline", "plots"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    _set_params(root, overrides)
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The built-in data, tiny, through the whole DAG once."""
    root = _new_project(tmp_path_factory.mktemp("project") / "repo", TINY)
    _run(["dvc", "repro"], root)
    return root


def test_repro_writes_every_stage_output(project):
    for stage, spec in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].items():
        for out in spec.get("outs", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert (project / path).exists(), f"stage {stage} did not write {path}"


def test_second_repro_does_nothing(project):
    out = _run(["dvc", "repro"], project)
    assert "didn't change, skipping" in out or "Data and pipelines are up to date" in out
    for stage in _stages_in(project / "dvc.yaml"):
        assert f"Running stage '{stage}'" not in out


def test_changing_detect_source_reruns_detect_and_downstream_only(project):
    _set_params(project, {"detect": {"jitter": 0.02}})
    status = _run(["dvc", "status"], project)
    stages = _stages_in(project / "dvc.yaml")
    changed = {s for s in stages if f"{s}:" in status.split()}
    assert "detect" in changed and "prepare" not in changed
    out = _run(["dvc", "repro"], project)
    ran = {s for s in stages if f"Running stage '{s}'" in out}
    assert "prepare" not in ran
    assert {"detect", "pose", "parts"} <= ran


def test_own_videos_give_predictions_and_a_viz_mp4(project, tmp_path):
    """data.source=videos: real (random-weight) mmdet and mmpose models, the
    backbone and classifier trained above, no annotations → predictions."""
    footage = tmp_path / "footage"
    (footage / "videos").mkdir(parents=True)
    made = sorted((project / "data/raw/synthetic/videos").glob("*.mp4"))[:2]
    for i, video in enumerate(made):
        shutil.copy(video, footage / "videos" / f"my_clip_{i}.mp4")
    shutil.copy(project / "data/interim/labels/label_map.pbtxt", footage / "labels.pbtxt")
    repo = _new_project(tmp_path / "repo", {
        "data": {"source": "videos", "root": str(footage), "label_map": "labels.pbtxt"},
        "detect": {"source": "mmdet", "train_source": "mmdet", "config": DETECTOR_CONFIG,
                   "checkpoint": str(random_detector_checkpoint(tmp_path / "det.pth")),
                   "score_thr": 0.0},  # random weights: keep whatever it finds
        "pose": {"source": "mmpose", "config": POSE_CONFIG,
                 "checkpoint": str(random_pose_checkpoint(tmp_path / "pose.pth"))},
        "backbone": {"checkpoint": str(project / "models/pretrain/backbone.pt")},
        "train": {"checkpoint": str(project / "models/classifier/final.pth")},
    })
    _run(["dvc", "repro"], repo)
    predictions = read_results_csv(repo / "data/results/predictions.csv").rows
    keyframes = pd.read_parquet(repo / "data/interim/keyframes.parquet")
    assert set(keyframes["split"]) == {"test"}
    assert len(predictions) > 0
    assert set(predictions["video_id"]) <= {"my_clip_0", "my_clip_1"}
    assert json.loads((repo / "data/results/metrics.json").read_text())["mAP"] is None
    _run(["avapipe", "viz", "--split", "test", "--video", "my_clip_0", "--limit", "2"], repo)
    mp4 = repo / "data/results/viz/my_clip_0.mp4"
    assert probe_video(mp4).num_frames == probe_video(footage / "videos/my_clip_0.mp4").num_frames
