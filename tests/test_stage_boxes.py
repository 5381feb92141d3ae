"""Where the detect stage's person and object boxes come from, split by split,
on AVA files in the official layout (no ground-truth objects, as in real AVA)."""

import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from openmmlab_checkpoints import DETECTOR_CONFIG, random_detector_checkpoint, synthetic_frames
from test_dataset import build_store

from avapipe.data.video import write_video
from avapipe.schemas import OBJECTS, PERSONS, read_table
from stages import detect, prepare, train
from stages.params import ParamsError, load_params

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
TRAIN_ID, VAL_ID = "0f39OWEqJ24", "_-Z6wFjXtGQ"


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    """Two 5-s cuts at 30 fps (keyframes 902, 903 each), GT CSVs in the official
    format, and a proposals pickle that lacks the val keyframe 903."""
    root = tmp_path_factory.mktemp("ava")
    (root / "videos").mkdir()
    (root / "annotations").mkdir()
    for i, video_id in enumerate((TRAIN_ID, VAL_ID)):
        frames = (np.roll(f, 40 * i, axis=1) for f in synthetic_frames(5 * 30))
        write_video(root / "videos" / f"{video_id}.mp4", frames, fps=30)
    for split, video_id in (("train", TRAIN_ID), ("val", VAL_ID)):
        (root / "annotations" / f"ava_{split}_v2.2.csv").write_text(
            f"{video_id},0902,0.063,0.049,0.524,0.996,12,0\n"
            f"{video_id},0903,0.101,0.052,0.560,0.990,17,0\n")
    shutil.copy(DATA / "action_list.txt",
                root / "annotations" / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    shutil.copy(DATA / "ava_excluded_timestamps_sample.csv",
                root / "annotations" / "ava_val_excluded_timestamps_v2.2.csv")
    with open(root / "annotations" / "proposals.pkl", "wb") as f:
        pickle.dump({f"{VAL_ID},0902": np.array([[0.07, 0.05, 0.52, 0.99, 0.97]])}, f)
    return root


@pytest.fixture
def project(tmp_path, ava_root, monkeypatch):
    """A project folder after `prepare` on ``ava_root``; stages run in it."""
    monkeypatch.chdir(tmp_path)
    prepare.run(_params(tmp_path, ava_root))
    return tmp_path


def _params(project: Path, ava_root: Path, **detect_params):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="ava", root=str(ava_root))
    params["detect"].update(source="proposals", train_source="gt", score_thr=0.5,
                            proposals=str(ava_root / "annotations" / "proposals.pkl"), **detect_params)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return load_params(project / "params.yaml")


def _boxes(project):
    return (read_table(PERSONS, project / "data/interim/persons.parquet"),
            read_table(OBJECTS, project / "data/interim/objects.parquet"))


def test_real_data_without_gt_objects_needs_an_object_source(project, ava_root):
    with pytest.raises(ParamsError, match=r"detect\.object_source=gt.*no ground-truth object boxes"
                                          r".*object_source=mmdet.*or none"):
        detect.run(_params(project, ava_root))


def test_objects_of_every_split_come_from_the_detector(project, ava_root, capsys):
    checkpoint = random_detector_checkpoint(project / "det.pth")
    detect.run(_params(project, ava_root, object_source="mmdet", config=DETECTOR_CONFIG,
                       checkpoint=str(checkpoint), object_score_thr=0.0, object_topk=2))
    persons, objects = _boxes(project)
    assert sorted(set(zip(objects.video_id, objects.timestamp))) == [
        (TRAIN_ID, 902), (TRAIN_ID, 903), (VAL_ID, 902), (VAL_ID, 903)]
    assert set(objects.source) == {"detector"}
    assert set(persons[persons.video_id == TRAIN_ID].source) == {"gt"}
    out = capsys.readouterr().out
    assert "train: 2 keyframes, 2 persons (gt), 4 objects (mmdet)" in out
    assert "val: 2 keyframes, 2 persons (proposals), 4 objects (mmdet)" in out


def test_a_keyframe_without_proposals_gets_a_whole_frame_box_and_is_counted(project, ava_root, capsys):
    detect.run(_params(project, ava_root, object_source="none"))
    persons, objects = _boxes(project)
    assert objects.empty
    val = persons[persons.video_id == VAL_ID].set_index("timestamp")
    assert val.loc[902, "source"] == "proposal"
    assert val.loc[903, ["x1", "y1", "x2", "y2", "score", "source"]].tolist() == [
        0.0, 0.0, 1.0, 1.0, 1.0, "whole_frame"]
    out = capsys.readouterr().out
    assert "val: 2 keyframes, 2 persons (proposals), 0 objects (none); 1 keyframes without a " \
           "person box got a whole-frame box" in out


def test_training_a_head_that_reads_objects_needs_objects_in_every_split(project, ava_root):
    detect.run(_params(project, ava_root, object_source="none"))
    persons, _ = _boxes(project)
    train_objects = persons[persons.video_id == TRAIN_ID].assign(label="cup")
    for objects, split in ((OBJECTS.empty(), "train"), (train_objects, "val")):
        shutil.rmtree(project / "data/features", ignore_errors=True)
        build_store(project / "data/features/features.zarr", persons=persons, objects=objects,
                    person_vectors=lambda t: np.ones((len(t), 4)),
                    object_vectors=lambda t: np.ones((len(t), 4)))
        for fusion, pose_part in (("cube", False), ("none", True)):
            params = replace(load_params(project / "params.yaml"), fusion=fusion, pose_part=pose_part)
            with pytest.raises(ParamsError, match=rf"reads object features, but the {split} split "
                                                  r"has no object boxes.*detect\.object_source"):
                train.run(params)
