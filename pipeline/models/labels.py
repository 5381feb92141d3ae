"""Training targets for cached boxes, and which classes form the pose group.

A cached person box (detected, or a jittered copy of a GT box) takes the
labels of the ground-truth box on the same keyframe that overlaps it most,
when that overlap reaches the IoU threshold; otherwise it is background (all
zeros). Ground truth comes as AVA rows, one per (box, action), so rows are
first grouped into boxes.

Which classes are "pose" classes (one softmax, exactly one per person) is
data: AVA's label map has them at ids 1..14; other label maps ship a groups
table (``action_id,group``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.evaluation.frame_map import AVA_ACTION_GROUPS

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
KEYFRAME_COLUMNS = ["video_id", "timestamp"]
POSE_GROUP = "pose"


class LabelError(ValueError):
    """Labels or class groups are missing, malformed or inconsistent."""


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise LabelError(f"{what} lacks columns {missing}; it has {list(table.columns)}")


def groundtruth_boxes(groundtruth: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The GT boxes of AVA rows (one row per box and action; ``person_id``
    separates two persons with identical boxes where known).

    Returns (boxes, row_box): boxes has one row per GT box, video_id, timestamp,
    x1..y2, gt_box (0..G-1 in first-seen order); row_box: Long[len(groundtruth)],
    the gt_box of each input row.
    """
    _require(groundtruth, KEYFRAME_COLUMNS + BOX_COLUMNS + ["action_id"], "ground truth")
    keys = KEYFRAME_COLUMNS + BOX_COLUMNS + (["person_id"] if "person_id" in groundtruth else [])
    table = groundtruth[keys].astype({"video_id": str, "timestamp": np.int64})
    codes = table.groupby(keys, sort=False).ngroup().to_numpy()
    first = np.unique(codes, return_index=True)[1]  # ngroup numbers in first-seen order
    boxes = table.iloc[first][KEYFRAME_COLUMNS + BOX_COLUMNS].reset_index(drop=True)
    boxes["gt_box"] = np.arange(len(boxes))
    return boxes, codes


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row pairs a[i], b[i]: float arrays [K, 4] of xyxy boxes -> [K]."""
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_targets(*, boxes: pd.DataFrame, groundtruth: pd.DataFrame, action_ids: Sequence[int],
                  iou_threshold: float = 0.5) -> np.ndarray:
    """Multi-hot targets float32 [N, A] for the N rows of ``boxes``.

    boxes: video_id, timestamp, x1, y1, x2, y2 (normalized xyxy), any row order.
    groundtruth: AVA GT rows (video_id, timestamp, x1..y2, action_id[, person_id]).
    action_ids: the A class ids, column order of the result; GT rows of other
        classes are ignored.
    Row i gets the labels of the GT box of its keyframe with the highest IoU,
    if that IoU >= iou_threshold (ties: the GT box seen first); else zeros.
    """
    if not 0 < iou_threshold <= 1:
        raise LabelError(f"iou_threshold={iou_threshold} must lie in (0, 1]")
    _require(boxes, KEYFRAME_COLUMNS + BOX_COLUMNS, "boxes to label")
    gt_boxes, row_box = groundtruth_boxes(groundtruth)
    matched = _best_gt_box(boxes, gt_boxes, iou_threshold)
    column = {int(a): i for i, a in enumerate(action_ids)}
    box_labels = np.zeros((len(gt_boxes), len(column)), np.float32)
    action_column = groundtruth["action_id"].map(column).to_numpy(dtype=np.float64)
    known = ~np.isnan(action_column)
    box_labels[row_box[known], action_column[known].astype(np.int64)] = 1.0
    targets = np.zeros((len(boxes), len(column)), np.float32)
    hit = matched >= 0
    targets[hit] = box_labels[matched[hit]]
    return targets


def _best_gt_box(boxes: pd.DataFrame, gt_boxes: pd.DataFrame, iou_threshold: float) -> np.ndarray:
    """For each row of boxes, the gt_box index it matches, or -1."""
    query = boxes[KEYFRAME_COLUMNS + BOX_COLUMNS].astype({"video_id": str, "timestamp": np.int64})
    query = query.reset_index(drop=True).assign(query_row=np.arange(len(boxes)))
    pairs = query.merge(gt_boxes, on=KEYFRAME_COLUMNS, suffixes=("", "_gt"))
    matched = np.full(len(boxes), -1, np.int64)
    if not len(pairs):
        return matched
    iou = _pairwise_iou(pairs[BOX_COLUMNS].to_numpy(np.float64),
                        pairs[[f"{c}_gt" for c in BOX_COLUMNS]].to_numpy(np.float64))
    # Highest IoU first, then GT order, so the first pair per query row is its match.
    order = np.lexsort((pairs["gt_box"].to_numpy(), -iou, pairs["query_row"].to_numpy()))
    query_row = pairs["query_row"].to_numpy()[order]
    first = np.r_[True, query_row[1:] != query_row[:-1]]
    good = first & (iou[order] >= iou_threshold)
    matched[query_row[good]] = pairs["gt_box"].to_numpy()[order][good]
    return matched


def read_groups_csv(path: str | Path) -> dict[int, str]:
    """Reads a class-groups table (CSV with columns ``action_id,group``) -> {id: group}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class-groups CSV not found")
    table = pd.read_csv(path)
    if list(table.columns[:2]) != ["action_id", "group"]:
        raise LabelError(f"{path}: header is {list(table.columns)}; expected action_id,group")
    ids = pd.to_numeric(table["action_id"], errors="coerce")
    bad = ids.isna() | (ids != ids.round()) | table["group"].isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise LabelError(f"{path}:{line}: needs an integer action_id and a group name")
    if ids.duplicated().any():
        line = int(np.flatnonzero(ids.duplicated().to_numpy())[0]) + 2
        raise LabelError(f"{path}:{line}: action_id {int(ids.iloc[line - 2])} appears twice")
    return dict(zip(ids.astype(int).tolist(), table["group"].astype(str).tolist()))


def ava_groups() -> dict[int, str]:
    """The AVA label map's class groups (pose = ids 1..14) by action id."""
    return {i: name for name, ids in AVA_ACTION_GROUPS.items() for i in ids}


def pose_class_mask(action_ids: Sequence[int], groups: Mapping[int, str] | None) -> np.ndarray:
    """Bool [A]: True where action_ids[a] is in group 'pose'.

    groups: {action id: group name} (e.g. read_groups_csv); None means the AVA
    label map's groups (only right for AVA label maps). Every action id must
    have a group.
    """
    groups = ava_groups() if groups is None else groups
    missing = [int(a) for a in action_ids if int(a) not in groups]
    if missing:
        raise LabelError(f"action ids {missing[:5]} have no group in the class-groups table; "
                         "add rows `action_id,group` for them (group 'pose' for pose classes)")
    return np.array([groups[int(a)] == POSE_GROUP for a in action_ids], dtype=bool)


def keep_one_pose(targets: np.ndarray, pose_classes: np.ndarray) -> tuple[np.ndarray, int]:
    """targets [N, A] with at most one pose label per row (the first pose column
    kept), since the pose softmax models exactly one; returns (targets, rows changed)."""
    pose = targets[:, pose_classes] > 0
    several = pose.sum(axis=1) > 1
    if not several.any():
        return targets, 0
    first = np.argmax(pose, axis=1)
    kept = np.zeros_like(pose)
    kept[np.arange(len(pose)), first] = pose[np.arange(len(pose)), first]
    fixed = targets.copy()
    fixed[:, pose_classes] = np.where(several[:, None], kept, pose).astype(targets.dtype)
    return fixed, int(several.sum())


def training_targets(*, boxes: pd.DataFrame, groundtruth: pd.DataFrame, action_ids: Sequence[int],
                     pose_classes: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, int]:
    """match_targets, then keep_one_pose: (targets float32 [N, A], rows whose
    extra pose labels were dropped)."""
    targets = match_targets(boxes=boxes, groundtruth=groundtruth, action_ids=action_ids,
                            iou_threshold=iou_threshold)
    return keep_one_pose(targets, pose_classes)
