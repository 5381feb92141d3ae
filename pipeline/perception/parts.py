"""Ten body-part boxes per person from its 17 COCO keypoints (PaStaNet-style).

Each part is the box spanned by its keypoints, padded on each side by a
fraction of the person box: ``pad_x = fx * person_width`` and
``pad_y = fy * person_height``, then clipped to the frame [0, 1]. Padding is
relative to the person box (not the frame) so a part covers the same share of
a near and a far person.

========== ============================================ ==== ==== =====
part       keypoints (COCO)                             fx   fy   needs
========== ============================================ ==== ==== =====
head       nose, left/right eye, left/right ear         0.15 0.08 any
hip        left_hip, right_hip                          0.10 0.06 all
left_arm   left_shoulder, left_elbow                    0.10 0.05 all
right_arm  right_shoulder, right_elbow                  0.10 0.05 all
left_hand  left_wrist                                   0.15 0.07 all
right_hand right_wrist                                  0.15 0.07 all
left_leg   left_hip, left_knee (the thigh)              0.10 0.05 all
right_leg  right_hip, right_knee (the thigh)            0.10 0.05 all
left_foot  left_ankle                                   0.15 0.07 all
right_foot right_ankle                                  0.15 0.07 all
========== ============================================ ==== ==== =====

A keypoint counts when its x, y and score are finite and ``score >=
min_score``. "all": every listed keypoint must count; "any": at least one
must, and the box spans those that do. A part that fails is ``valid=False``
and carries the person box (so it still passes the schema); it is never
dropped. A person with no pose row gets ten invalid parts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from avapipe.schemas import (
    BOX_COLUMNS,
    COCO_KEYPOINTS,
    PART_NAMES,
    PARTS,
    PERSONS,
    POSES,
)

_KEY = ["video_id", "timestamp", "box_id"]
# part -> (keypoint names, fx, fy, needs)
PART_RULES: dict[str, tuple[tuple[str, ...], float, float, str]] = {
    "head": (("nose", "left_eye", "right_eye", "left_ear", "right_ear"), 0.15, 0.08, "any"),
    "hip": (("left_hip", "right_hip"), 0.10, 0.06, "all"),
    "left_arm": (("left_shoulder", "left_elbow"), 0.10, 0.05, "all"),
    "right_arm": (("right_shoulder", "right_elbow"), 0.10, 0.05, "all"),
    "left_hand": (("left_wrist",), 0.15, 0.07, "all"),
    "right_hand": (("right_wrist",), 0.15, 0.07, "all"),
    "left_leg": (("left_hip", "left_knee"), 0.10, 0.05, "all"),
    "right_leg": (("right_hip", "right_knee"), 0.10, 0.05, "all"),
    "left_foot": (("left_ankle",), 0.15, 0.07, "all"),
    "right_foot": (("right_ankle",), 0.15, 0.07, "all"),
}
assert tuple(PART_RULES) == PART_NAMES


def keypoint_array(poses: pd.DataFrame) -> np.ndarray:
    """Returns ``Tensor[N, 17, 3]`` float64 (x, y, score) from a poses table."""
    cols = [f"{j}_{a}" for j in COCO_KEYPOINTS for a in ("x", "y", "score")]
    return poses[cols].to_numpy(dtype=np.float64).reshape(len(poses), len(COCO_KEYPOINTS), 3)


def part_boxes_array(
    *, keypoints: np.ndarray, person_boxes: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Part boxes for N persons, vectorized over persons.

    keypoints: float[N, 17, 3] (x, y normalized to the frame, score), COCO order.
    person_boxes: float[N, 4], normalized xyxy.
    Returns (boxes: float[N, 10, 4] normalized xyxy clipped to [0, 1],
    valid: bool[N, 10]), parts in ``PART_NAMES`` order; invalid parts carry
    the person box.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    person_boxes = np.asarray(person_boxes, dtype=np.float64)
    n = len(person_boxes)
    if keypoints.shape != (n, len(COCO_KEYPOINTS), 3) or person_boxes.shape != (n, 4):
        raise ValueError(
            f"part_boxes_array: keypoints {keypoints.shape} and person_boxes "
            f"{person_boxes.shape} must be (N, 17, 3) and (N, 4) for the same N"
        )
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(keypoints).all(axis=2) & (keypoints[:, :, 2] >= min_score)
    widths = (person_boxes[:, 2] - person_boxes[:, 0])[:, None]
    heights = (person_boxes[:, 3] - person_boxes[:, 1])[:, None]
    boxes = np.empty((n, len(PART_NAMES), 4))
    valid = np.empty((n, len(PART_NAMES)), dtype=bool)
    for p, (names, fx, fy, needs) in enumerate(PART_RULES.values()):
        idx = [COCO_KEYPOINTS.index(name) for name in names]
        ok = counts[:, idx]
        valid[:, p] = ok.all(axis=1) if needs == "all" else ok.any(axis=1)
        xs, ys = keypoints[:, idx, 0], keypoints[:, idx, 1]
        lo_x = np.where(ok, xs, np.inf).min(axis=1, keepdims=True)
        hi_x = np.where(ok, xs, -np.inf).max(axis=1, keepdims=True)
        lo_y = np.where(ok, ys, np.inf).min(axis=1, keepdims=True)
        hi_y = np.where(ok, ys, -np.inf).max(axis=1, keepdims=True)
        box = np.hstack([lo_x - fx * widths, lo_y - fy * heights,
                         hi_x + fx * widths, hi_y + fy * heights])
        box = np.clip(np.where(valid[:, p:p + 1], box, person_boxes), 0.0, 1.0)
        boxes[:, p] = box
    return boxes, valid


def part_boxes(
    *, poses: pd.DataFrame, persons: pd.DataFrame, min_score: float
) -> pd.DataFrame:
    """The PARTS table: one row per person row, ten boxes + validity each.

    poses: a POSES table; persons: a PERSONS table (the boxes the poses were
    estimated in). Rules and sizes are in the module docstring. A pose row
    whose key has no person row raises ValueError naming the key.
    """
    poses = POSES.validate(poses, source="part_boxes(poses)")
    persons = PERSONS.validate(persons, source="part_boxes(persons)")
    merged = persons[_KEY + list(BOX_COLUMNS)].merge(
        poses, on=_KEY, how="outer", indicator=True
    )
    orphans = merged[merged["_merge"] == "right_only"]
    if len(orphans):
        key = orphans.iloc[0][_KEY].to_dict()
        raise ValueError(
            f"part_boxes: {len(orphans)} pose rows have no person row, first {key}; "
            "pass the persons table the poses were estimated from"
        )
    merged = merged.sort_values(_KEY, kind="stable").reset_index(drop=True)
    boxes, valid = part_boxes_array(
        keypoints=keypoint_array(merged),  # a missing pose is all-NaN -> invalid
        person_boxes=merged[list(BOX_COLUMNS)].to_numpy(dtype=np.float64),
        min_score=min_score,
    )
    out = merged[_KEY].copy()
    for p, part in enumerate(PART_NAMES):
        for c, col in enumerate(BOX_COLUMNS):
            out[f"{part}_{col}"] = boxes[:, p, c]
        out[f"{part}_valid"] = valid[:, p]
    return PARTS.validate(out, source="part_boxes")
