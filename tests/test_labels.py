import numpy as np
import pandas as pd
import pytest

from avapipe.models.labels import (LabelError, keep_one_pose, match_targets, pose_class_mask,
                                   read_groups_csv)

GT_COLUMNS = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]


def gt_rows(rows):
    return pd.DataFrame(rows, columns=GT_COLUMNS)


def boxes(rows):
    return pd.DataFrame(rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2"])


GT = gt_rows([
    ("v1", 902, 0.0, 0.0, 0.5, 0.5, 1, 0),   # box A: actions 1 and 5
    ("v1", 902, 0.0, 0.0, 0.5, 0.5, 5, 0),
    ("v1", 902, 0.5, 0.5, 1.0, 1.0, 2, 1),   # box B: action 2 (and 99, not a class)
    ("v1", 902, 0.5, 0.5, 1.0, 1.0, 99, 1),
    ("v1", 904, 0.0, 0.0, 0.4, 1.0, 3, 0),   # box C
    ("v1", 904, 0.5, 0.0, 1.0, 1.0, 4, 1),   # box D
])
ACTIONS = [1, 2, 3, 4, 5]


def test_each_box_takes_the_labels_of_its_best_gt_box_over_the_threshold():
    cached = boxes([
        ("v1", 902, 0.0, 0.0, 0.5, 0.4),     # IoU(A) = 0.2 / 0.25 = 0.8
        ("v1", 902, 0.25, 0.25, 0.75, 0.75),  # IoU(A) = IoU(B) = 0.0625 / 0.4375 = 0.143
        ("v1", 902, 0.5, 0.5, 1.0, 0.9),     # IoU(B) = 0.8
        ("v1", 903, 0.0, 0.0, 0.5, 0.5),     # keyframe without GT
        ("v2", 902, 0.0, 0.0, 0.5, 0.5),     # same box, other video
    ])
    targets = match_targets(boxes=cached, groundtruth=GT, action_ids=ACTIONS)
    expected = np.array([[1, 0, 0, 0, 1], [0] * 5, [0, 1, 0, 0, 0], [0] * 5, [0] * 5])
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, expected)


def test_threshold_and_ties():
    cached = boxes([
        ("v1", 902, 0.25, 0.25, 0.75, 0.75),  # 0.143 with A and B: the tie goes to A (first)
        ("v1", 904, 0.2, 0.0, 0.7, 1.0),      # IoU(C) = 0.2/0.7 = 0.286 > IoU(D) = 0.2/0.8
    ])
    low = match_targets(boxes=cached, groundtruth=GT, action_ids=ACTIONS, iou_threshold=0.14)
    np.testing.assert_array_equal(low, [[1, 0, 0, 0, 1], [0, 0, 1, 0, 0]])
    mid = match_targets(boxes=cached, groundtruth=GT, action_ids=ACTIONS, iou_threshold=0.27)
    np.testing.assert_array_equal(mid, [[0] * 5, [0, 0, 1, 0, 0]])
    high = match_targets(boxes=cached, groundtruth=GT, action_ids=ACTIONS, iou_threshold=0.29)
    np.testing.assert_array_equal(high, np.zeros((2, 5)))


def test_two_persons_with_identical_boxes_stay_two_gt_boxes():
    gt = gt_rows([("v", 902, 0.1, 0.1, 0.6, 0.6, 1, 0), ("v", 902, 0.1, 0.1, 0.6, 0.6, 2, 1)])
    targets = match_targets(boxes=boxes([("v", 902, 0.1, 0.1, 0.6, 0.6)]), groundtruth=gt,
                            action_ids=[1, 2])
    np.testing.assert_array_equal(targets, [[1, 0]])


def test_empty_inputs():
    empty_boxes = boxes([])
    assert match_targets(boxes=empty_boxes, groundtruth=GT, action_ids=ACTIONS).shape == (0, 5)
    targets = match_targets(boxes=boxes([("v1", 902, 0, 0, 0.5, 0.5)]),
                            groundtruth=gt_rows([]), action_ids=ACTIONS)
    np.testing.assert_array_equal(targets, np.zeros((1, 5)))


def test_missing_columns_are_named():
    with pytest.raises(LabelError, match="x2"):
        match_targets(boxes=boxes([]).drop(columns="x2"), groundtruth=GT, action_ids=ACTIONS)


def test_pose_mask_from_ava_default_and_from_a_groups_table(tmp_path):
    np.testing.assert_array_equal(pose_class_mask([1, 14, 15, 80], None),
                                  [True, True, False, False])
    path = tmp_path / "groups.csv"
    path.write_text("action_id,group\n1,pose\n2,pose\n5,person-object\n")
    groups = read_groups_csv(path)
    assert groups == {1: "pose", 2: "pose", 5: "person-object"}
    np.testing.assert_array_equal(pose_class_mask([1, 5, 2], groups), [True, False, True])
    with pytest.raises(LabelError, match=r"\[3\]"):
        pose_class_mask([1, 3], groups)


def test_bad_groups_table_names_the_line(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("action_id,group\n1,pose\nx,pose\n")
    with pytest.raises(LabelError, match="groups.csv:3"):
        read_groups_csv(path)
    path.write_text("action_id,group\n1,pose\n1,other\n")
    with pytest.raises(LabelError, match="groups.csv:3: action_id 1 appears twice"):
        read_groups_csv(path)


def test_keep_one_pose():
    targets = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32)
    fixed, changed = keep_one_pose(targets, np.array([True, True, False]))
    np.testing.assert_array_equal(fixed, [[1, 0, 0], [1, 0, 1], [0, 1, 1]])
    assert changed == 1
