from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avapipe.data.ava import read_groundtruth_csv
from avapipe.data.proposals import read_proposals
from avapipe.perception.boxes import (
    box_iou,
    jitter_boxes,
    objects_from_gt,
    persons_from_gt,
    persons_from_proposals,
    read_detection_csv,
    whole_frame_persons,
)
from avapipe.schemas import OBJECTS, PERSONS

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ava"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/ava")


def test_jitter_stays_within_bounds_and_is_seeded():
    boxes = np.array([[0.2, 0.2, 0.4, 0.6], [0.0, 0.0, 1.0, 1.0]])
    a = jitter_boxes(boxes, jitter=0.1, rng=np.random.default_rng(3))
    b = jitter_boxes(boxes, jitter=0.1, rng=np.random.default_rng(3))
    c = jitter_boxes(boxes, jitter=0.1, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    size = np.array([[0.2, 0.4, 0.2, 0.4], [1.0, 1.0, 1.0, 1.0]])
    assert (np.abs(a - boxes) <= 0.1 * size + 1e-12).all()
    assert (a >= 0).all() and (a <= 1).all() and (a[:, 2] >= a[:, 0]).all()
    np.testing.assert_array_equal(jitter_boxes(boxes, jitter=0.0, rng=np.random.default_rng(0)), boxes)


def test_box_iou_hand_computed():
    iou = box_iou(np.array([[0, 0, 2, 2], [5, 5, 5, 5]]), np.array([[1, 1, 3, 3], [0, 0, 2, 2]]))
    np.testing.assert_allclose(iou, [[1 / 7, 1.0], [0.0, 0.0]])


def test_persons_from_gt_one_row_per_unique_box_of_the_real_fixture():
    gt = read_groundtruth_csv(FIXTURES / "ava_sample.csv").rows
    persons = persons_from_gt(groundtruth=gt)
    PERSONS.validate(persons, source="test")
    assert len(persons) == 3  # 8 rows, 3 distinct (keyframe, box, person)
    first = persons[(persons.video_id == "0f39OWEqJ24") & (persons.timestamp == 902)].iloc[0]
    np.testing.assert_allclose(first[["x1", "y1", "x2", "y2"]].to_numpy(float),
                               [0.031, 0.162, 0.670, 0.995], atol=1e-6)
    assert first.person_id == 0 and first.score == 1.0 and first.source == "gt"
    assert set(persons.box_id) == {0}


def test_persons_from_gt_jitter_is_deterministic_and_bounded():
    gt = pd.DataFrame({"video_id": ["v", "v", "v"], "timestamp": [1, 1, 2],
                       "x1": [0.1, 0.5, 0.0], "y1": [0.1, 0.5, 0.0], "x2": [0.3, 0.9, 1.0],
                       "y2": [0.5, 0.7, 1.0], "action_id": [1, 1, 1]})
    a = persons_from_gt(groundtruth=gt, jitter=0.2, seed=1)
    b = persons_from_gt(groundtruth=gt.iloc[::-1], jitter=0.2, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert (a.person_id == -1).all() and list(a.box_id) == [0, 1, 0]
    plain = persons_from_gt(groundtruth=gt)
    moved = np.abs(a[["x1", "y1", "x2", "y2"]].to_numpy() - plain[["x1", "y1", "x2", "y2"]].to_numpy())
    assert moved.max() > 0 and moved.max() <= 0.2 * 1.0 + 1e-6


def test_persons_from_gt_bad_box_names_the_row():
    gt = pd.DataFrame({"video_id": ["v", "w"], "timestamp": [1, 2], "x1": [0.1, np.nan],
                       "y1": [0.1, 0.1], "x2": [0.3, 0.3], "y2": [0.5, 0.5]})
    with pytest.raises(ValueError, match=r"row 1 \(w, 2\)"):
        persons_from_gt(groundtruth=gt)


def test_persons_from_proposals_of_the_real_pickle():
    proposals = read_proposals(FIXTURES / "ava_proposals_sample.pkl")
    keyframes = pd.DataFrame({"video_id": ["0f39OWEqJ24", "_-Z6wFjXtGQ", "absent"],
                              "timestamp": [902, 902, 902]})
    persons = persons_from_proposals(proposals=proposals, keyframes=keyframes, score_thr=0.5)
    assert list(persons.video_id) == ["0f39OWEqJ24", "_-Z6wFjXtGQ", "_-Z6wFjXtGQ"]
    np.testing.assert_allclose(persons.score, [0.998163, 0.994488, 0.996238], atol=1e-6)
    assert list(persons.box_id) == [0, 0, 1] and (persons.source == "proposal").all()
    # No box passes 0.999: each keyframe keeps its best one.
    best = persons_from_proposals(proposals=proposals, keyframes=keyframes, score_thr=0.999)
    np.testing.assert_allclose(best.score, [0.998163, 0.996238], atol=1e-6)
    np.testing.assert_allclose(best.iloc[1][["x1", "y1", "x2", "y2"]].to_numpy(float),
                               [0.387, 0.263, 0.916, 0.984], atol=1e-6)


def test_proposals_with_string_keys_four_columns_and_empty_keyframes():
    proposals = {"v,0902": np.array([[0.1, 0.2, 1.2, 0.8]]), "v,0903": np.zeros((0, 5))}
    keyframes = pd.DataFrame({"video_id": ["v", "v"], "timestamp": [902, 903]})
    persons = persons_from_proposals(proposals=proposals, keyframes=keyframes, score_thr=0.9)
    assert len(persons) == 1 and persons.score.iloc[0] == 1.0
    assert persons.x2.iloc[0] == 1.0  # clipped
    empty = persons_from_proposals(proposals={}, keyframes=keyframes, score_thr=0.9)
    assert len(empty) == 0 and list(empty.columns) == PERSONS.column_names


def test_read_detection_csv(tmp_path):
    path = tmp_path / "det.csv"
    path.write_text(
        "vid,0902,0.1,0.1,0.5,0.9,,0.8\n"
        "vid,0902,0.1,0.1,0.5,0.9,-1,0.9\n"  # same box again: keeps 0.9
        "vid,0902,0.6,0.1,0.9,0.9,,0.3\n"
        "vid,0903,0.2,0.1,0.5,0.9,,0.2\n"
    )
    proposals = read_detection_csv(path)
    assert set(proposals) == {("vid", 902), ("vid", 903)}
    np.testing.assert_allclose(proposals[("vid", 902)][:, 4], [0.9, 0.3])
    keyframes = pd.DataFrame({"video_id": ["vid", "vid"], "timestamp": [902, 903]})
    persons = persons_from_proposals(proposals=proposals, keyframes=keyframes, score_thr=0.5)
    np.testing.assert_allclose(persons.score, [0.9, 0.2])
    path.write_text("vid,0902,0.1,,0.5,0.9,,0.8\n")
    with pytest.raises(ValueError, match="row 1"):
        read_detection_csv(path)


def test_objects_from_gt_numbers_boxes_per_keyframe():
    objects = pd.DataFrame({"video_id": ["v", "v", "w"], "timestamp": [1, 1, 1],
                            "x1": [0.1, 0.2, 0.3], "y1": [0.1, 0.2, 0.3], "x2": [0.2, 0.3, 0.4],
                            "y2": [0.2, 0.3, 0.4], "label": ["cup", "phone", "cup"]})
    out = objects_from_gt(objects=objects)
    OBJECTS.validate(out, source="test")
    assert list(out.box_id) == [0, 1, 0] and list(out.label) == ["cup", "phone", "cup"]
    assert (out.score == 1.0).all()
    with pytest.raises(ValueError, match="label"):
        objects_from_gt(objects=objects.drop(columns="label"))


def test_keyframes_without_a_person_get_one_whole_frame_box():
    """mmaction2's rule for a keyframe missing from the proposals: [0, 0, 1, 1], score 1."""
    keyframes = pd.DataFrame({"video_id": ["a", "a", "b"], "timestamp": [902, 903, 902]})
    found = persons_from_proposals(proposals={"a,0902": np.array([[0.1, 0.2, 0.3, 0.4, 0.9]])},
                                   keyframes=keyframes, score_thr=0.5)
    persons, added = whole_frame_persons(persons=found, keyframes=keyframes)
    assert added == 2
    whole = persons[persons["source"] == "whole_frame"]
    assert sorted(zip(whole.video_id, whole.timestamp)) == [("a", 903), ("b", 902)]
    assert (whole[["x1", "y1", "x2", "y2", "score"]].to_numpy() == [0, 0, 1, 1, 1]).all()
    assert (whole.box_id == 0).all() and (whole.person_id == -1).all()
    assert persons[persons["source"] == "proposal"].equals(found)
    same, none_added = whole_frame_persons(persons=persons, keyframes=keyframes)
    assert none_added == 0 and same.equals(persons)
    empty, n = whole_frame_persons(persons=PERSONS.empty(), keyframes=keyframes.iloc[:0])
    assert n == 0 and empty.empty
