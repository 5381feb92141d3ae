"""Score-level ensemble of several AVA result tables.

Boxes of one keyframe are matched across tables, then each (box, action)
gets the weighted mean of the tables' scores. A (box, action) that a table
does not list counts as score 0 for that table: result files keep only each
keyframe's top rows (the official evaluator reads at most 50), so a missing
row means "scored too low to be written", and averaging over only the tables
that list it would push rare guesses above actions all tables agree on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from avapipe.data.ava import keyframe_seconds

RESULT_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")
KEYFRAME = ["video_id", "timestamp"]
BOX = ["x1", "y1", "x2", "y2"]


def ensemble_results(
    results: list[pd.DataFrame], weights: list[float] | None = None,
    iou_threshold: float = 0.5,
) -> pd.DataFrame:
    """Weighted mean score per (keyframe, box, action) over result tables.

    results: tables with RESULT_COLUMNS (normalized boxes), e.g.
        ``read_results_csv(path).rows``; at most one row per (keyframe, box, action).
    weights: one non-negative weight per table (default: equal); score =
        sum_i w_i * s_i / sum_i w_i with s_i = 0 where table i lacks the row.
    iou_threshold: boxes of one keyframe match when identical or when their
        IoU >= this. Each table's boxes are matched one to one to the boxes
        gathered from the tables before it, identical pairs first, then by
        descending IoU; a merged box keeps the coordinates of the first table
        that has it; an unmatched box starts a new box.
    Timestamps are compared as the official evaluator's keys.
    Returns RESULT_COLUMNS rows sorted by keyframe, box, action.
    """
    weights = _checked_weights(results, weights)
    boxes = pd.DataFrame()
    scored = []
    for i, table in enumerate(results):
        table = _checked_table(table, i)
        table_boxes = table[KEYFRAME + BOX].drop_duplicates().reset_index(drop=True)
        box_of_table_box, boxes = _match_boxes(boxes, table_boxes, iou_threshold)
        row_box = table.merge(table_boxes.reset_index(names="table_box"),
                              on=KEYFRAME + BOX, how="left")["table_box"].to_numpy()
        scored.append(pd.DataFrame({
            "box": box_of_table_box[row_box], "action_id": table["action_id"].to_numpy(),
            "score": table["score"].to_numpy(np.float64) * weights[i],
        }))
    merged = pd.concat(scored, ignore_index=True) if scored else pd.DataFrame()
    mean = merged.groupby(["box", "action_id"], sort=True)["score"].sum() / sum(weights)
    out = boxes.iloc[mean.index.get_level_values("box")].reset_index(drop=True)
    out["action_id"] = mean.index.get_level_values("action_id").to_numpy(np.int64)
    out["score"] = mean.to_numpy()
    seconds = out["timestamp"].to_numpy(np.float64)
    whole = bool((np.floor(seconds) == seconds).all())
    out = out.astype({"timestamp": np.int64 if whole else np.float64,
                      **{c: np.float64 for c in BOX}})
    return out.sort_values(KEYFRAME, kind="stable").reset_index(drop=True)[list(RESULT_COLUMNS)]


def _checked_weights(results: list[pd.DataFrame], weights) -> list[float]:
    if not results:
        raise ValueError("ensemble_results needs at least one result table")
    weights = [1.0] * len(results) if weights is None else [float(w) for w in weights]
    if len(weights) != len(results) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: need one weight >= 0 per table "
                         f"({len(results)}) and a positive sum")
    return weights


def _checked_table(table: pd.DataFrame, i: int) -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"result table {i} lacks columns {missing}")
    # one value per official keyframe key, so 0902 and 902.0000001 are one keyframe
    table = table.reset_index(drop=True).assign(timestamp=keyframe_seconds(table["timestamp"]))
    duplicated = table.duplicated(KEYFRAME + BOX + ["action_id"])
    if duplicated.any():
        row = table[duplicated].iloc[0].to_dict()
        raise ValueError(f"result table {i} lists (keyframe, box, action) {row} more "
                         "than once; keep one row per box and action")
    return table


def _match_boxes(boxes: pd.DataFrame, new: pd.DataFrame, iou_threshold: float
                 ) -> tuple[np.ndarray, pd.DataFrame]:
    """Index into the grown ``boxes`` for each row of ``new`` (module doc)."""
    if not len(boxes):
        return np.arange(len(new)), new.reset_index(drop=True)
    pairs = new.reset_index(names="new").merge(
        boxes.reset_index(names="old"), on=KEYFRAME, suffixes=("", "_old"))
    a = pairs[BOX].to_numpy(np.float64)
    b = pairs[[c + "_old" for c in BOX]].to_numpy(np.float64)
    identical = (a == b).all(axis=1)
    iou = np.where(identical, np.inf, _iou(a, b))  # identical boxes match first
    pairs = pairs.assign(iou=iou)[identical | (iou >= iou_threshold)]
    pairs = pairs.sort_values("iou", ascending=False, kind="stable")
    target = np.full(len(new), -1, dtype=np.int64)
    taken: set[int] = set()
    for n, old in zip(pairs["new"].to_numpy(), pairs["old"].to_numpy()):
        if target[n] < 0 and old not in taken:
            target[n] = old
            taken.add(old)
    unmatched = np.flatnonzero(target < 0)
    target[unmatched] = len(boxes) + np.arange(len(unmatched))
    grown = pd.concat([boxes, new.iloc[unmatched]], ignore_index=True)
    return target, grown


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two (N, 4) normalized xyxy arrays; 0 for empty boxes."""
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
             + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
