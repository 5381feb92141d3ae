"""End to end: the real DVC pipeline on a tiny built-in dataset, in a fresh repo."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
import zarr
from openmmlab_checkpoints import (
    DETECTOR_CONFIG, POSE_CONFIG, random_detector_checkpoint, random_pose_checkpoint,
)

from avapipe.data.ava import read_groundtruth_csv, read_results_csv
from avapipe.data.video import probe_video
from avapipe.evaluation.frame_map import evaluate_files
from avapipe.schemas import KEYFRAMES, PERSONS, read_table

REPO = Path(__file__).resolve().parents[1]

# Small enough for the whole DAG to run in about a minute on 2 cores.
TINY = {
    "synthetic": {"train_videos": 2, "val_videos": 1, "seconds": 8},
    "pretrain": {"epochs": 1},
    "train": {"epochs": 2},
}


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "avapipe test", "GIT_AUTHOR_EMAIL": "test@avapipe",
                "GIT_COMMITTER_NAME": "avapipe test", "GIT_COMMITTER_EMAIL": "test@avapipe"}


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               **GIT_IDENTITY)
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
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "baseline"], root)  # experiments start from a commit
    return root


def _ran(out: str, stages: list[str]) -> set[str]:
    return {s for s in stages if f"Running stage '{s}'" in out}


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


def test_metrics_and_plots_show(project, tmp_path):
    metrics = _run(["dvc", "metrics", "show"], project)
    assert "mAP" in metrics and "data/results/metrics.json" in metrics
    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], project)
    page = (tmp_path / "plots" / "index.html").read_text()
    for plot in ("pr_curves.csv", "per_class_ap.csv", "training_curves.csv"):
        assert plot in page


def test_predictions_are_the_challenge_rows_and_score_as_metrics_say(project):
    text = (project / "data/results/predictions.csv").read_text()
    assert all(len(box.split(".")[1]) == 3 for line in text.splitlines()[:20]
               for box in line.split(",")[2:6])
    predictions = read_results_csv(project / "data/results/predictions.csv").rows
    assert predictions.groupby(["video_id", "timestamp"]).size().max() <= 50
    labels = project / "data/interim/labels"
    result = evaluate_files(labelmap=labels / "label_map.pbtxt", groundtruth=labels / "val.csv",
                            detections=project / "data/results/predictions.csv",
                            exclusions=labels / "excluded_timestamps.csv")
    metrics = json.loads((project / "data/results/metrics.json").read_text())
    assert metrics["mAP"] == pytest.approx(result.mAP, abs=1e-12)


def test_experiment_reruns_only_train_and_evaluate_and_reports(project):
    out = _run(["dvc", "exp", "run", "-S", "fusion=cube", "-S", "evaluate.top_k=5"], project)
    assert _ran(out, _stages_in(project / "dvc.yaml")) == {"train", "evaluate"}
    predictions = read_results_csv(project / "data/results/predictions.csv").rows
    assert predictions.groupby(["video_id", "timestamp"]).size().max() == 5
    shown = _run(["dvc", "exp", "show", "--json"], project)
    assert '"fusion": "cube"' in shown and '"fusion": "none"' in shown
    report = _run(["avapipe", "report", "--resamples", "50"], project)
    assert "cube" in report and "none" in report and "diff_low" in report


def test_probe_runs_on_the_cached_features(project, tmp_path):
    out = _run(["avapipe", "probe", "--resamples", "20", "--csv", str(tmp_path / "probe.csv")],
               project)
    assert "| group | person | +objects | +persons | +memory | +parts |" in out
    table = pd.read_csv(tmp_path / "probe.csv")
    groups = pd.read_csv(project / "data/interim/labels/groups.csv")["group"].unique()
    assert set(table["group"]) == {"all", *groups}
    assert set(table["source"]) == {"objects", "persons", "memory", "parts"}
    scored = table.dropna(subset=["ap_person"])  # a group without a val positive has no AP
    assert len(scored) and scored["ap_person"].between(0, 1).all()
    assert (table["group"] == "all").sum() == 4 and table["ap_person"].iloc[0] >= 0


def test_mmdet_detector_on_the_same_keyframes(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["detect"].update(source="mmdet", train_source="mmdet", config=DETECTOR_CONFIG,
                            score_thr=0.0, checkpoint=str(random_detector_checkpoint(
                                tmp_path / "det.pth")))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        _run(["avapipe", "extract", "detect", "--params", str(tmp_path / "params.yaml")], project)
        persons = read_table(PERSONS, project / "data/interim/persons.parquet")
        keyframes = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
        assert len(persons) > 0 and set(persons["source"]) == {"detector"}
        keys = set(zip(keyframes["video_id"], keyframes["timestamp"]))
        assert set(zip(persons["video_id"], persons["timestamp"])) <= keys
    finally:
        _run(["dvc", "checkout", "--force", "detect"], project)


def test_changing_detect_source_reruns_detect_and_downstream_only(project):
    """Val boxes from an AVA proposals pickle made of the val GT boxes."""
    gt = read_groundtruth_csv(project / "data/interim/labels/val.csv").rows
    boxes = gt.drop_duplicates(["video_id", "timestamp", "x1", "y1", "x2", "y2"])
    proposals = {f"{v},{t:04d}": g[["x1", "y1", "x2", "y2"]].assign(score=0.9).to_numpy()
                 for (v, t), g in boxes.groupby(["video_id", "timestamp"])}
    with open(project / "proposals.pkl", "wb") as f:
        pickle.dump(proposals, f)
    _set_params(project, {"detect": {"source": "proposals", "proposals": "proposals.pkl"}})
    stages = _stages_in(project / "dvc.yaml")
    out = _run(["dvc", "repro"], project)
    assert _ran(out, stages) == set(stages) - {"prepare", "pretrain"}
    persons = read_table(PERSONS, project / "data/interim/persons.parquet")
    assert {"gt", "proposal"} <= set(persons["source"])


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
        "detect": {"source": "mmdet", "train_source": "mmdet", "object_source": "mmdet",
                   "config": DETECTOR_CONFIG,
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


def test_features_killed_inside_dvc_repro_resume_from_their_finished_videos(project):
    """Last: leaves the project at other features params. DVC deletes a stage's
    outputs before it runs it; the store being built beside it survives."""
    _set_params(project, {"features": {"dtype": "float32"}})
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               **GIT_IDENTITY)
    child = subprocess.Popen(["dvc", "repro", "features"], cwd=project, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # dvc and the stage it runs: one group
    deadline = time.monotonic() + 300
    features = project / "data/features"
    while not list(features.glob("*/progress/*.done")) and child.poll() is None:
        assert time.monotonic() < deadline, "extraction never committed a video"
        time.sleep(0.002)
    assert child.poll() is None, "dvc repro ended before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    committed = len(list(features.glob("*/progress/*.done")))
    out = _run(["dvc", "repro", "features"], project)
    summary = re.search(r"ExtractSummary\(videos=(\d+), computed=(\d+)", out)
    assert summary and 1 <= committed < int(summary[1]), out
    assert int(summary[2]) == int(summary[1]) - committed  # only the videos not finished
    assert "taking over the stale lock" in out
    store = zarr.open_group(str(features / "features.zarr"), mode="r")
    assert store.attrs["complete"] is True and store["persons"].dtype == "float32"
    assert "up to date" in _run(["dvc", "status", "features"], project)
