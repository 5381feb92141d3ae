"""Person and object boxes that do not come from a detector run here.

Sources: AVA ground truth (optionally jittered), AVA-style proposal pickles
and PySlowFast-style detection CSVs (precomputed person detections), and the
object boxes of the synthetic set. Also box jitter and IoU, and the
whole-frame box of a keyframe where a detector found nobody.

All boxes are normalized ``x1, y1, x2, y2`` in [0, 1], origin top-left.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.schemas import BOX_COLUMNS, OBJECTS, PERSONS

log = logging.getLogger(__name__)
_BOX = list(BOX_COLUMNS)


def jitter_boxes(boxes: np.ndarray, *, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Moves each coordinate of ``boxes: float[N, 4]`` (normalized xyxy) by a
    uniform offset in ±jitter × the box's width (x) or height (y), then clips to
    [0, 1] and re-orders so that x1 <= x2 and y1 <= y2."""
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1) (got {jitter!r})")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    size = np.stack([w, h, w, h], axis=1)
    out = boxes + rng.uniform(-jitter, jitter, size=boxes.shape) * size
    out = np.clip(out, 0.0, 1.0)
    xs, ys = np.sort(out[:, [0, 2]], axis=1), np.sort(out[:, [1, 3]], axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a: float[N, 4]`` with every box in ``b: float[M, 4]``
    (xyxy, any common unit) as float[N, M]; 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _require_columns(df: pd.DataFrame, columns: list[str], *, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; got {list(df.columns)}")


def _check_finite_boxes(df: pd.DataFrame, *, what: str) -> None:
    bad = ~np.isfinite(df[_BOX].to_numpy(dtype=np.float64)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: row {i} ({df.iloc[i]['video_id']}, {df.iloc[i]['timestamp']}) "
            f"has a non-numeric box {df.iloc[i][_BOX].tolist()}; fix or drop that row"
        )


def _number_boxes(df: pd.DataFrame) -> pd.Series:
    """box_id: 0, 1, ... within each keyframe, in the rows' order."""
    return df.groupby(["video_id", "timestamp"], sort=False).cumcount()


def persons_from_gt(*, groundtruth: pd.DataFrame, jitter: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """PERSONS rows from AVA ground truth, one per unique box of a keyframe.

    groundtruth: AVA GT rows ``video_id, timestamp, x1, y1, x2, y2, action_id,
    person_id`` (one row per action; person_id optional, blank → -1).
    jitter: if > 0, each box is moved by ±jitter × its size (see
    ``jitter_boxes``), deterministically for a given ``seed`` and table.
    Score 1.0, source 'gt'.
    """
    _require_columns(groundtruth, ["video_id", "timestamp", *_BOX], what="persons_from_gt")
    _check_finite_boxes(groundtruth, what="persons_from_gt")
    gt = groundtruth.copy()
    gt["timestamp"] = gt["timestamp"].astype("int64")
    pid = gt["person_id"] if "person_id" in gt else pd.Series(-1, index=gt.index)
    gt["person_id"] = pd.to_numeric(pid, errors="coerce").fillna(-1).astype("int64")
    gt = gt.drop_duplicates(["video_id", "timestamp", *_BOX, "person_id"])
    gt = gt.sort_values(["video_id", "timestamp", "person_id", *_BOX], kind="stable")
    out = gt[["video_id", "timestamp", *_BOX, "person_id"]].reset_index(drop=True)
    boxes = out[_BOX].to_numpy(dtype=np.float64)
    if jitter > 0:
        boxes = jitter_boxes(boxes, jitter=jitter, rng=np.random.default_rng(seed))
    out[_BOX] = np.clip(boxes, 0.0, 1.0)
    out["box_id"] = _number_boxes(out)
    out["score"] = 1.0
    out["source"] = "gt"
    return PERSONS.validate(out, source="persons_from_gt")


def proposal_key(key: str | tuple[str, int]) -> tuple[str, int]:
    """``(video_id, timestamp)`` from a proposals key: the pickles' string
    ``"vid,0902"`` or an already split tuple."""
    if isinstance(key, tuple) and len(key) == 2:
        return str(key[0]), int(key[1])
    video_id, _, seconds = str(key).rpartition(",")
    if not video_id or not seconds.strip().isdigit():
        raise ValueError(f"proposals key {key!r} is not 'video_id,timestamp' (e.g. 'vid,0902')")
    return video_id, int(seconds)


def _select_proposals(boxes: np.ndarray, *, score_thr: float, key: tuple[str, int]) -> np.ndarray:
    """float[N, 5] rows kept: score >= min(score_thr, best score), so a
    keyframe keeps at least its best box(es) (the AVA dataset loaders' rule)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"proposals of keyframe {key} have shape {boxes.shape}; expected (N, 4) or (N, 5)")
    if boxes.shape[1] == 4:
        boxes = np.hstack([boxes, np.ones((len(boxes), 1))])
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    if len(boxes) == 0:
        return boxes
    return boxes[boxes[:, 4] >= min(score_thr, boxes[:, 4].max())]


def persons_from_proposals(
    *, proposals: Mapping[str | tuple[str, int], np.ndarray], keyframes: pd.DataFrame,
    score_thr: float,
) -> pd.DataFrame:
    """PERSONS rows from precomputed person detections (AVA proposals).

    proposals: keyframe → float[N, 5] normalized ``x1, y1, x2, y2, score``
    (or [N, 4], score 1); keys ``"video_id,0902"`` as in the AVA pickles or
    ``(video_id, timestamp)`` as ``avapipe.data.proposals.read_proposals`` returns.
    keyframes: a table with ``video_id, timestamp``; only these are looked up.
    Boxes with score >= score_thr are kept; a keyframe where none passes keeps
    its best box. Keyframes with no entry get no persons (counted in the log).
    Source 'proposal', person_id -1; boxes clipped to [0, 1].
    """
    _require_columns(keyframes, ["video_id", "timestamp"], what="persons_from_proposals(keyframes)")
    by_key = {proposal_key(k): v for k, v in proposals.items()}
    rows, absent = [], 0
    for vid, ts in keyframes[["video_id", "timestamp"]].itertuples(index=False):
        key = (str(vid), int(ts))
        if key not in by_key:
            absent += 1
            continue
        kept = _select_proposals(by_key[key], score_thr=score_thr, key=key)
        rows += [(*key, i, *box) for i, box in enumerate(kept)]
    if absent:
        log.info("persons_from_proposals: %d of %d keyframes have no proposals", absent, len(keyframes))
    out = pd.DataFrame(rows, columns=["video_id", "timestamp", "box_id", *_BOX, "score"])
    out[_BOX] = np.clip(out[_BOX].to_numpy(dtype=np.float64), 0.0, 1.0)
    out["source"] = "proposal"
    out["person_id"] = -1
    return PERSONS.validate(out, source="persons_from_proposals")


def read_detection_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PySlowFast-style person detection CSV into proposals.

    Rows: ``video_id, timestamp, x1, y1, x2, y2, action_id, score`` without a
    header; action_id is blank or -1 for a plain detection. A box listed more
    than once keeps its highest score. Returns ``(video_id, timestamp)`` →
    float[N, 5], as ``persons_from_proposals`` takes.
    """
    names = ["video_id", "timestamp", *_BOX, "action_id", "score"]
    df = pd.read_csv(path, header=None, names=names, dtype={"video_id": str})
    if df[["timestamp", *_BOX, "score"]].isna().any(axis=None):
        i = int(np.flatnonzero(df[["timestamp", *_BOX, "score"]].isna().any(axis=1))[0])
        raise ValueError(
            f"{path}: row {i + 1} lacks a timestamp, box or score; each row must be "
            "video_id,timestamp,x1,y1,x2,y2,action_id,score"
        )
    df = df.groupby(["video_id", "timestamp", *_BOX], sort=False, as_index=False)["score"].max()
    return {
        (str(vid), int(ts)): group[[*_BOX, "score"]].to_numpy(dtype=np.float64)
        for (vid, ts), group in df.groupby(["video_id", "timestamp"], sort=False)
    }


def objects_from_gt(*, objects: pd.DataFrame) -> pd.DataFrame:
    """OBJECTS rows from a ground-truth object table.

    objects: ``video_id, timestamp, x1, y1, x2, y2, label`` (+ optional
    ``score``, default 1.0). box_id numbers the objects of each keyframe in
    row order; source 'gt'.
    """
    _require_columns(objects, ["video_id", "timestamp", *_BOX, "label"], what="objects_from_gt")
    _check_finite_boxes(objects, what="objects_from_gt")
    out = objects.reset_index(drop=True).copy()
    out["timestamp"] = out["timestamp"].astype("int64")
    out["box_id"] = _number_boxes(out)
    out["score"] = out["score"] if "score" in out else 1.0
    out["source"] = "gt"
    return OBJECTS.validate(out, source="objects_from_gt")


def whole_frame_persons(*, persons: pd.DataFrame, keyframes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``persons`` plus one whole-frame box for every keyframe that has none.

    As mmaction2's AVA dataset does for a keyframe missing from the proposals,
    the box is ``[0, 0, 1, 1]`` with score 1: the keyframe still gets
    predictions (a close-up fills most of the frame) instead of silently
    none. keyframes: a table with ``video_id, timestamp``. Those rows have
    source 'whole_frame', box_id 0, person_id -1. Returns (PERSONS table,
    number of whole-frame boxes added).
    """
    _require_columns(keyframes, ["video_id", "timestamp"], what="whole_frame_persons(keyframes)")
    key = ["video_id", "timestamp"]
    frames = keyframes[key].drop_duplicates().astype({"video_id": str, "timestamp": "int64"})
    seen = frames.merge(persons[key].drop_duplicates(), on=key, how="left", indicator=True)
    empty = seen.loc[seen["_merge"] == "left_only", key].reset_index(drop=True)
    added = empty.assign(box_id=0, x1=0.0, y1=0.0, x2=1.0, y2=1.0, score=1.0,
                         source="whole_frame", person_id=-1)
    table = pd.concat([persons, added], ignore_index=True) if len(added) else persons
    return PERSONS.validate(table, source="whole_frame_persons"), len(added)
