"""The README's real-data layout: `data.source: ava` on real-format AVA files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from avapipe.data.ava import read_groundtruth_csv, read_label_map
from avapipe.data.video import write_video
from avapipe.schemas import KEYFRAMES, PERSONS, read_table

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
VIDEO_IDS = ("0f39OWEqJ24", "_-Z6wFjXtGQ")


@pytest.fixture
def ava_root(tmp_path):
    """videos/ + annotations/ named as the official files; the fixture CSV's rows of
    one video as train, of the other as val (label 74, absent from the map, is in val)."""
    root = tmp_path / "ava"
    (root / "videos").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i, video_id in enumerate(VIDEO_IDS):  # 5 s cut clips: movie seconds 900..905
        frames = (np.full((48, 64, 3), 40 * i + f, np.uint8) for f in range(5 * 10))
        write_video(root / "videos" / f"{video_id}.mp4", frames, fps=10)
    lines = (DATA / "ava_sample.csv").read_text().splitlines(keepends=True)
    for split, video_id in zip(("train", "val"), VIDEO_IDS):
        (root / "annotations" / f"ava_{split}_v2.2.csv").write_text(
            "".join(line for line in lines if line.startswith(video_id + ",")))
    shutil.copy(DATA / "action_list.txt",
                root / "annotations" / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    shutil.copy(DATA / "ava_excluded_timestamps_sample.csv",
                root / "annotations" / "ava_val_excluded_timestamps_v2.2.csv")
    shutil.copy(DATA / "ava_proposals_sample.pkl", root / "annotations" / "proposals.pkl")
    return root


def _project(tmp_path, ava_root, on_bad_row):
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="ava", root=str(ava_root), on_bad_row=on_bad_row)
    params["detect"].update(source="proposals", score_thr=0.5, object_source="none",
                            proposals=str(ava_root / "annotations" / "proposals.pkl"))
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return project


def _avapipe(*args, cwd):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["avapipe", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_training_ids_outside_the_scored_label_map_are_kept(tmp_path, ava_root):
    """Label 74 is an AVA action, absent from this 4-class label map: trained on
    where the training CSV has it, kept (and not scored) in val."""
    project = _project(tmp_path, ava_root, "error")
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "4 classes trained (action ids of ava_train_v2.2.csv in AVA's ids 1-80), " \
           "4 evaluated" in done.stdout
    labels = project / "data/interim/labels"
    assert 74 in set(read_groundtruth_csv(labels / "val.csv").rows["action_id"])
    assert sorted(read_label_map(labels / "train_label_map.pbtxt")) == [12, 17, 79, 80]
    assert sorted(read_label_map(labels / "label_map.pbtxt")) == [12, 17, 79, 80]


def test_an_id_in_neither_label_space_stops_prepare_naming_file_and_line(tmp_path, ava_root):
    val = ava_root / "annotations" / "ava_val_v2.2.csv"
    val.write_text(val.read_text().replace(",74,", ",81,"))
    done = _avapipe("extract", "prepare", cwd=_project(tmp_path, ava_root, "error"))
    assert done.returncode != 0
    assert "ava_val_v2.2.csv:2" in done.stderr and "not in the label map" in done.stderr


def test_a_missing_video_stops_prepare_or_is_skipped_and_reported(tmp_path, ava_root):
    with open(ava_root / "annotations" / "ava_val_v2.2.csv", "a") as f:
        f.write("missingVid1,0902,0.1,0.1,0.5,0.9,12,0\n")
    project = _project(tmp_path, ava_root, "skip")
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode != 0 and "missingVid1,0902" in done.stderr
    assert "on_missing_video: skip" in done.stderr
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["on_missing_video"] = "skip"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "left out 1 keyframes of 1 videos without a video file" in done.stdout
    keyframes = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
    assert set(keyframes["video_id"]) == set(VIDEO_IDS)
    val = read_groundtruth_csv(project / "data/interim/labels/val.csv")
    assert set(val.rows["video_id"]) == {"_-Z6wFjXtGQ"}
    # Left without any video, the val split could be neither trained nor scored.
    (ava_root / "videos" / "_-Z6wFjXtGQ.mp4").unlink()
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode != 0
    assert "ava_val_v2.2.csv: none of its labelled keyframes has a video file" in done.stderr


@pytest.mark.parametrize("split, text, message", [
    ("train", "", "ava_train_v2.2.csv: no annotation rows; the train split needs labelled person boxes"),
    ("train", "0f39OWEqJ24,0902\n0f39OWEqJ24,0903\n",
     "ava_train_v2.2.csv: 2 keyframes, all two-column rows (no boxes); the train split needs"),
    ("val", "", "ava_val_v2.2.csv: no annotation rows; the val split needs labelled person boxes"),
    ("val", "_-Z6wFjXtGQ,0902,0.1,0.1,0.5,0.9,74,0\n",
     "ava_val_v2.2.csv: 1 labelled boxes, none of a class of the label map"),
])
def test_an_empty_or_label_less_split_stops_prepare_naming_the_file(tmp_path, ava_root, split,
                                                                    text, message):
    (ava_root / "annotations" / f"ava_{split}_v2.2.csv").write_text(text)
    done = _avapipe("extract", "prepare", cwd=_project(tmp_path, ava_root, "error"))
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "project" / "data").exists()  # nothing written


def test_prepare_and_proposals_on_the_official_layout(tmp_path, ava_root):
    project = _project(tmp_path, ava_root, "skip")
    for stage in ("prepare", "detect"):
        done = _avapipe("extract", stage, cwd=project)
        assert done.returncode == 0, done.stderr
    keyframes = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
    assert sorted(zip(keyframes["video_id"], keyframes["timestamp"], keyframes["split"])) == [
        ("0f39OWEqJ24", 902, "train"), ("0f39OWEqJ24", 903, "train"), ("_-Z6wFjXtGQ", 902, "val")]
    assert set(keyframes["time_sec"]) == {2.0, 3.0}  # movie second 902 is 2 s into the cut
    persons = read_table(PERSONS, project / "data/interim/persons.parquet")
    val = persons.merge(keyframes[keyframes["split"] == "val"][["video_id", "timestamp"]])
    assert set(val["source"]) == {"proposal"}
    # the sample keeps boxes >= 0.5; a keyframe where none passes keeps its best one
    assert val.groupby(["video_id", "timestamp"]).size().min() >= 1


def test_splits_sharing_a_keyframe_are_refused(tmp_path, ava_root):
    shutil.copy(ava_root / "annotations/ava_train_v2.2.csv", ava_root / "annotations/ava_val_v2.2.csv")
    done = _avapipe("extract", "prepare", cwd=_project(tmp_path, ava_root, "skip"))
    assert done.returncode != 0 and "both annotate 0f39OWEqJ24,0902" in done.stderr


def test_keyframes_annotated_with_no_boxes_are_indexed_for_prediction(tmp_path, ava_root):
    # The official evaluator scores a two-column GT row's keyframe (detections
    # there are false positives), so the val keyframe index, which the evaluate
    # stage predicts on, must hold it.
    with open(ava_root / "annotations/ava_val_v2.2.csv", "a") as f:
        f.write("_-Z6wFjXtGQ,0903\n")
    project = _project(tmp_path, ava_root, "skip")
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    keyframes = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
    val = keyframes[keyframes["split"] == "val"]
    assert sorted(zip(val["video_id"], val["timestamp"])) == [
        ("_-Z6wFjXtGQ", 902), ("_-Z6wFjXtGQ", 903)]


def test_ava_test_videos_are_named_by_movie_second(tmp_path, ava_root):
    """data.source=videos with convention=ava: keyframes 0902… so that the
    predictions form an AVA submission."""
    project = _project(tmp_path, ava_root, "error")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(source="videos", convention="ava")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = _avapipe("extract", "prepare", cwd=project)
    assert done.returncode == 0, done.stderr
    keyframes = read_table(KEYFRAMES, project / "data/interim/keyframes.parquet")
    for video_id in VIDEO_IDS:  # 5 s cuts: movie seconds 900-905
        mine = keyframes[keyframes["video_id"] == video_id]
        assert mine["timestamp"].tolist() == [902, 903, 904]
        assert mine["time_sec"].tolist() == [2.0, 3.0, 4.0]
