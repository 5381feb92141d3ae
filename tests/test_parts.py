import numpy as np
import pandas as pd
import pytest

from avapipe.perception.parts import part_boxes, part_boxes_array
from avapipe.schemas import COCO_KEYPOINTS, PART_NAMES, PARTS

PERSON = (0.2, 0.1, 0.6, 0.9)  # width 0.4, height 0.8


def persons_table(boxes):
    return pd.DataFrame({
        "video_id": "v", "timestamp": 902, "box_id": list(range(len(boxes))),
        "x1": [b[0] for b in boxes], "y1": [b[1] for b in boxes],
        "x2": [b[2] for b in boxes], "y2": [b[3] for b in boxes],
        "score": 1.0, "source": "gt", "person_id": -1,
    })


def poses_table(joints_per_person, box_ids=None):
    """joints_per_person: list of {joint: (x, y, score)}; absent joints are NaN, score 0."""
    rows = []
    for i, joints in enumerate(joints_per_person):
        row = {"video_id": "v", "timestamp": 902,
               "box_id": i if box_ids is None else box_ids[i]}
        for name in COCO_KEYPOINTS:
            x, y, s = joints.get(name, (np.nan, np.nan, 0.0))
            row.update({f"{name}_x": x, f"{name}_y": y, f"{name}_score": s})
        rows.append(row)
    return pd.DataFrame(rows)


JOINTS = {
    "nose": (0.40, 0.15, 0.9),
    "left_eye": (0.38, 0.13, 0.1),  # below min_score: left out of the head box
    "right_eye": (0.42, 0.13, 0.1),
    "left_shoulder": (0.35, 0.30, 0.9), "left_elbow": (0.30, 0.40, 0.9),
    "left_wrist": (0.30, 0.50, 0.9),
    "right_wrist": (0.50, 0.50, 0.1),  # low confidence: invalid right hand
    "left_hip": (0.35, 0.55, 0.9), "right_hip": (0.45, 0.56, 0.9),
    "left_knee": (0.34, 0.70, 0.9),
    "left_ankle": (0.98, 0.99, 0.9),  # near the corner: clipped to the frame
    "right_ankle": (np.nan, np.nan, 0.9),  # missing joint with a score
}


def part(table, row, name):
    r = table.iloc[row]
    return [float(r[f"{name}_{c}"]) for c in ("x1", "y1", "x2", "y2")], bool(r[f"{name}_valid"])


def test_part_boxes_match_hand_computed_rules():
    parts = part_boxes(poses=poses_table([JOINTS]), persons=persons_table([PERSON]), min_score=0.3)
    assert len(parts) == 1
    expected = {
        # nose +- (0.15 * 0.4, 0.08 * 0.8)
        "head": ([0.34, 0.086, 0.46, 0.214], True),
        # hips' extent +- (0.10 * 0.4, 0.06 * 0.8)
        "hip": ([0.31, 0.502, 0.49, 0.608], True),
        # shoulder-elbow extent +- (0.04, 0.04)
        "left_arm": ([0.26, 0.26, 0.39, 0.44], True),
        # wrist +- (0.06, 0.056)
        "left_hand": ([0.24, 0.444, 0.36, 0.556], True),
        # hip-knee extent +- (0.04, 0.04)
        "left_leg": ([0.30, 0.51, 0.39, 0.74], True),
        # ankle +- (0.06, 0.056), clipped at 1
        "left_foot": ([0.92, 0.934, 1.0, 1.0], True),
        # invalid parts carry the person box
        "right_hand": (list(PERSON), False),
        "right_foot": (list(PERSON), False),
        "right_arm": (list(PERSON), False),
        "right_leg": (list(PERSON), False),  # right knee absent
    }
    for name, (box, valid) in expected.items():
        got_box, got_valid = part(parts, 0, name)
        assert got_valid == valid, name
        np.testing.assert_allclose(got_box, box, atol=1e-6, err_msg=name)


def test_head_needs_one_joint_hip_needs_both():
    joints = {"left_ear": (0.5, 0.2, 0.9), "left_hip": (0.4, 0.6, 0.9)}
    parts = part_boxes(poses=poses_table([joints]), persons=persons_table([PERSON]), min_score=0.3)
    box, valid = part(parts, 0, "head")
    assert valid
    np.testing.assert_allclose(box, [0.44, 0.136, 0.56, 0.264], atol=1e-6)
    box, valid = part(parts, 0, "hip")
    assert not valid
    np.testing.assert_allclose(box, PERSON, atol=1e-6)


def test_min_score_is_inclusive_and_raising_it_invalidates():
    joints = {"left_wrist": (0.3, 0.5, 0.5)}
    persons = persons_table([PERSON])
    assert part(part_boxes(poses=poses_table([joints]), persons=persons, min_score=0.5), 0, "left_hand")[1]
    assert not part(part_boxes(poses=poses_table([joints]), persons=persons, min_score=0.51), 0, "left_hand")[1]


def test_vectorized_rows_equal_single_person_results():
    rng = np.random.default_rng(0)
    n = 7
    kps = np.concatenate([rng.uniform(0, 1, (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))], axis=2)
    kps[rng.uniform(size=(n, 17)) < 0.2, 0] = np.nan
    corners = np.sort(rng.uniform(0, 1, (n, 2, 2)), axis=1)
    person_boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1)
    boxes, valid = part_boxes_array(keypoints=kps, person_boxes=person_boxes, min_score=0.4)
    assert boxes.shape == (n, 10, 4) and valid.shape == (n, 10)
    for i in range(n):
        one_boxes, one_valid = part_boxes_array(
            keypoints=kps[i:i + 1], person_boxes=person_boxes[i:i + 1], min_score=0.4)
        np.testing.assert_array_equal(one_boxes[0], boxes[i])
        np.testing.assert_array_equal(one_valid[0], valid[i])
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()


def test_person_without_pose_gets_ten_invalid_parts_and_orphan_pose_raises():
    persons = persons_table([PERSON, (0.0, 0.0, 0.5, 0.5)])
    parts = part_boxes(poses=poses_table([JOINTS]), persons=persons, min_score=0.3)
    assert len(parts) == 2
    assert not parts.loc[1, [f"{p}_valid" for p in PART_NAMES]].any()
    np.testing.assert_allclose(part(parts, 1, "head")[0], [0.0, 0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="no person row"):
        part_boxes(poses=poses_table([JOINTS], box_ids=[5]), persons=persons, min_score=0.3)


def test_empty_input_gives_an_empty_valid_table():
    parts = part_boxes(poses=poses_table([]).reindex(columns=poses_table([{}]).columns),
                       persons=persons_table([]), min_score=0.3)
    assert len(parts) == 0
    assert list(parts.columns) == PARTS.column_names
