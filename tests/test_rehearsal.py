"""The README's real AVA / AVA-Kinetics settings, end to end through DVC, on a
rehearsal of the real downloads (``ava_rehearsal.py``): the params are read
from the README itself, its shell commands run as written; only what this
machine's size forces is overridden (``SIZE``)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from ava_rehearsal import CLIPS, MOVIES, POSE_1X, write_checkpoints, write_rehearsal
from test_dag import REPO, _new_project, _run

from avapipe.data.ava import read_label_map, read_results_csv
from avapipe.schemas import KEYFRAMES, PERSONS, POSES, read_table

# What a 2-core CPU forces; everything else is the README's.
SIZE = {
    "device": "cpu",  # no GPU here
    "detect": {"config": "tiny-faster-rcnn_r18_fpn_coco"},  # R50-FPN at 1333 px: ~s per image
    "pose": {"config": "tiny-td-hm_res18_coco-128x96"},  # HRNet-W32: ~0.2 s per box
    # standard R50 at 256 px, 32 frames: ~7 s per clip on one core
    "backbone": {"width_divisor": 4, "num_frames": 8, "short_side": 64},
    "features": {"num_workers": 1},  # 8 decoding processes on 2 cores
    "train": {"hidden": 64, "epochs": 2},  # 1024 wide for 12 epochs: minutes
}


def readme_real_data(root, models) -> tuple[list[dict], list[str]]:
    """The YAML and bash blocks of the README's real-data section, with its
    example paths (/data/ava, /models) pointed at the rehearsal."""
    text = (REPO / "README.md").read_text().split("## Real AVA v2.2 and AVA-Kinetics")[1]
    text = text.split("\n## ")[0].replace("/data/ava", str(root)).replace("/models", str(models))
    blocks = re.findall(r"```(yaml|bash)\n(.*?)```", text, re.S)
    return ([yaml.safe_load(b) for kind, b in blocks if kind == "yaml"],
            [b for kind, b in blocks if kind == "bash"])


def _merge(params: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key].update(value)
        else:
            params[key] = value


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rehearsal")
    layout = write_rehearsal(folder / "ava")
    write_checkpoints(folder / "models", width_divisor=SIZE["backbone"]["width_divisor"])
    (main, kinetics), shell = readme_real_data(layout["root"], folder / "models")
    for commands in shell:
        subprocess.run(["bash", "-ec", commands], check=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for overrides in (main, kinetics, SIZE):
        _merge(params, overrides)
    project = _new_project(folder / "repo", params)
    out = _run(["dvc", "repro"], project)
    return {"project": project, "out": out, "root": layout["root"], "models": folder / "models"}


def test_prepare_indexes_movies_and_clips_with_the_readme_params(rehearsal):
    out, project = rehearsal["out"], rehearsal["project"]
    assert "80 classes trained" in out and "60 evaluated" in out
    missing = [c for c in CLIPS if c.file is None]
    assert f"left out {len(missing)} keyframes of {len(missing)} videos" in out
    index = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
    at = index.set_index(["video_id", "timestamp"])
    whole = next(m for m in MOVIES if m.seconds > 901)
    assert at.loc[(whole.video_id, 902), "time_sec"] == 902.0  # read at the movie second
    assert at.loc[("0f39OWEqJ24", 903), ["time_sec", "fps"]].tolist() == [3.0, 25.0]
    split_id = [c for c in CLIPS if c.video_id == "3IOE-Q3UWdA"]
    paths = [at.loc[(c.video_id, c.keyframes[0]), "video_path"] for c in split_id]
    assert [p.rsplit("/", 1)[1] for p in paths] == [c.file for c in split_id]
    assert at.loc[("--6bJUbfpnQ", 17), "fps"] == pytest.approx(29.97, abs=0.01)
    expected = {(v.video_id, t) for v in MOVIES + CLIPS if v.file for t in v.keyframes}
    assert set(at.index) == expected


def test_predictions_hold_the_60_scored_classes_and_metrics_both_spaces(rehearsal):
    project, root = rehearsal["project"], rehearsal["root"]
    metrics = json.loads((project / "data/results/metrics.json").read_text())
    assert metrics["classes_trained"] == 80 and metrics["classes_evaluated"] == 60
    assert metrics["mAP"] is not None
    scored = read_label_map(root / "annotations/ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    predictions = read_results_csv(project / "data/results/predictions.csv").rows
    # Only scored classes, and at most the 50 rows per keyframe the official reader keeps.
    assert set(predictions["action_id"]) <= set(scored)
    assert len(set(predictions["action_id"])) > 1
    assert predictions.groupby(["video_id", "timestamp"]).size().max() <= 50
    val = {(v.video_id, t) for v in MOVIES + CLIPS if v.split == "val" and v.file
           for t in v.keyframes}
    assert set(zip(predictions["video_id"], predictions["timestamp"])) <= val


def test_boxes_per_split_whole_frame_boxes_and_enlarged_pooling_only(rehearsal):
    out, project = rehearsal["out"], rehearsal["project"]
    count = {split: sum(len(v.keyframes) for v in MOVIES + CLIPS if v.file and v.split == split)
             for split in ("train", "val")}
    train = f"train: {count['train']} keyframes, {2 * count['train']} persons (gt), "
    assert re.search(re.escape(train) + r"\d+ objects \(mmdet\)", out)
    # the random-weight detector finds (almost) nobody at the README's score_thr 0.8
    assert re.search(rf"val: {count['val']} keyframes, \d+ persons \(mmdet\), \d+ objects "
                     r"\(mmdet\); [1-9]\d* keyframes without a person box got a whole-frame box",
                     out)
    assert "at 30 fps" in out and "enlarged by [0.1, 0.05] for pooling" in out
    persons = read_table(PERSONS, project / "data/interim/persons.parquet")
    predictions = read_results_csv(project / "data/results/predictions.csv").rows
    boxes = ["x1", "y1", "x2", "y2"]
    reported = predictions[["video_id", "timestamp", *boxes]].drop_duplicates()
    assert len(reported.merge(persons[["video_id", "timestamp", *boxes]])) == len(reported) > 0


def test_an_mmpose_1x_checkpoint_in_the_pose_stage(rehearsal, tmp_path):
    project = rehearsal["project"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pose"]["checkpoint"] = str(rehearsal["models"] / POSE_1X)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        _run(["avapipe", "extract", "pose", "--params", str(tmp_path / "params.yaml")], project)
        poses = read_table(POSES, project / "data/interim/poses.parquet")
        assert len(poses) == len(read_table(PERSONS, project / "data/interim/persons.parquet"))
    finally:
        _run(["dvc", "checkout", "--force", "pose"], project)
