"""Frame-mAP@0.5 exactly as the official AVA evaluator computes it, vectorized.

The official tool (ActivityNet ``get_ava_performance.py`` as it stands since
May 2020, on the TF object detection PASCAL evaluator) treats each keyframe as
an image and does, in order:

1. Reads both CSVs as ``official_reader`` describes: keys ``video,%.6f`` of
   the decimal timestamp; label-map classes only; at most 50 detections per
   keyframe, kept by its heap; rows by descending score. The included keys are
   every keyframe of the ground truth, two-column rows included; avapipe's
   optional exclusions remove keys from it, which equals the official result
   on a ground truth without those keyframes (it takes no exclusions).
2. Ignores detections on keyframes that are not included keys. Detections on
   an included keyframe that has no GT box of their class are false positives.
3. Drops detections with ``y1 >= y2`` or ``x1 >= x2``. Each detection of a
   keyframe (per class, in the order above) takes the GT box of its class with
   the highest IoU (first on ties); it is a true positive iff that IoU >= 0.5
   and that GT box was not taken by an earlier detection; otherwise it is a
   false positive, even when another GT box overlaps it enough.
4. Per class, all detections are ordered by ``np.argsort(scores)[::-1]`` (not a
   stable sort: ties follow numpy's quicksort, whose order of ties differs
   between numpy 1.23, which the official code needs, and numpy 2's AVX2 /
   AVX-512 sort) and AP is the all-point
   interpolated area under the monotone precision / recall curve. A class with
   GT and no detections scores 0; classes without GT are NaN and left out of
   the mean (``np.nanmean``), which is the mAP the tool prints.

Every step here builds the same arrays in the same order as the official tool,
so ties come out as they do there; ``reference.py`` is a plain transcription
the tests check this against.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data import ava
from avapipe.evaluation.official_reader import KeyframeCodes, included_keys, official_rows

log = logging.getLogger(__name__)

OFFICIAL_MAX_DETECTIONS = 50
# AVA's three kinds of action, by id, as the label_type of the official
# ava_action_list_v2.x.pbtxt gives them: PERSON_MOVEMENT, OBJECT_MANIPULATION,
# PERSON_INTERACTION.
AVA_ACTION_GROUPS = {
    "pose": range(1, 15), "person-object": range(15, 64), "person-person": range(64, 81),
}


@dataclass(frozen=True)
class FrameMapResult:
    """mAP: mean AP over classes with ground truth (NaN if none has any).
    per_class: label-map id → AP, None where the class has no ground truth.
    precision, recall: per class with GT, one value per detection in
        descending score order (the PR curve); empty arrays if no detections.
    num_groundtruth: label-map id → number of GT instances (box, action)."""

    mAP: float
    per_class: dict[int, float | None]
    precision: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]
    num_groundtruth: dict[int, int]

    @property
    def num_classes_with_gt(self) -> int:
        return sum(ap is not None for ap in self.per_class.values())

    def to_json_dict(self) -> dict:
        return {
            "mAP": None if math.isnan(self.mAP) else float(self.mAP),
            "per_class": {str(c): ap for c, ap in self.per_class.items()},
            "num_classes_with_gt": self.num_classes_with_gt,
        }


def evaluate_files(
    *, labelmap: str | Path, groundtruth: str | Path, detections: str | Path,
    exclusions: str | Path | None = None, on_bad_row: ava.BadRowPolicy = "error",
) -> FrameMapResult:
    """Reads the AVA files (``get_ava_performance.py -l -g -d`` takes the first
    three) and evaluates. Timestamps may be fractional, as there."""
    read = {"on_bad_row": on_bad_row, "whole_seconds": False}
    truth = ava.read_groundtruth_csv(groundtruth, **read)
    excluded = None if exclusions is None else ava.read_excluded_timestamps(exclusions, **read)
    return evaluate_frame_map(
        groundtruth=truth.rows, empty_keyframes=truth.empty_keyframes,
        detections=ava.read_results_csv(detections, **read).rows,
        label_map=ava.read_label_map(labelmap), excluded=excluded,
    )


def evaluate_frame_map(
    *, groundtruth: pd.DataFrame, detections: pd.DataFrame, label_map: Mapping[int, str],
    empty_keyframes: pd.DataFrame | None = None, excluded: pd.DataFrame | None = None,
    iou_threshold: float = 0.5, max_detections_per_keyframe: int = OFFICIAL_MAX_DETECTIONS,
) -> FrameMapResult:
    """Frame-mAP of ``detections`` against ``groundtruth`` (module docstring).

    groundtruth: rows ``video_id, timestamp, x1, y1, x2, y2, action_id`` (file order).
    detections: the same plus ``score``, in file order (the order decides ties).
    label_map: {action id >= 1: name}; only these classes count.
    empty_keyframes: ``video_id, timestamp`` of keyframes annotated with no
        boxes (the GT file's two-column rows); their detections are false
        positives. Detections on keyframes neither here nor in ``groundtruth``
        are ignored. Listing a keyframe that has GT rows too is harmless.
    excluded: ``video_id, timestamp`` keyframes taken out of the ground truth.
    Timestamps: whole or fractional seconds, compared as official keys.
    """
    if not label_map or min(label_map) < 1:
        raise ValueError(f"label map ids {sorted(label_map)[:5]}...: need ids >= 1")
    _check_columns(groundtruth, "groundtruth", ())
    _check_columns(detections, "detections", ("score",))
    extra = [t for t in (empty_keyframes, excluded) if t is not None]
    codes = KeyframeCodes([groundtruth, detections, *extra])
    included = included_keys(codes, groundtruth=groundtruth, empty_keyframes=empty_keyframes,
                             excluded=excluded)
    label_ids = np.fromiter(label_map, dtype=np.int64)
    gt = official_rows(groundtruth, codes.of(groundtruth), label_ids, included, None)
    det_keys = codes.of(detections)
    _log_ignored(detections, det_keys, included)
    det = official_rows(detections, det_keys, label_ids, included, max_detections_per_keyframe)
    det = det[(det["y1"] < det["y2"]) & (det["x1"] < det["x2"])]
    n_classes = int(label_ids.max()) + 1
    is_tp = _true_positives(det, gt, n_classes=n_classes, iou_threshold=iou_threshold)
    num_gt = np.bincount(gt["action_id"], minlength=n_classes)
    return _summarize(det, is_tp, num_gt, sorted(label_map))


def group_map(*, result: FrameMapResult, groups: Mapping[str, Iterable[int]]
              ) -> dict[str, float | None]:
    """Mean AP per group of classes (e.g. AVA_ACTION_GROUPS) over the group's
    classes that have ground truth; None for a group with none."""
    out = {}
    for name, ids in groups.items():
        aps = [result.per_class[c] for c in ids if result.per_class.get(c) is not None]
        out[name] = float(np.mean(aps)) if aps else None
    return out


def _check_columns(table: pd.DataFrame, name: str, extra: tuple[str, ...]) -> None:
    needed = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", *extra]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; read it with "
                         "avapipe.data.ava.read_groundtruth_csv / read_results_csv")
    values = table[needed[2:6] + list(extra)].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} table has NaN or infinite boxes or scores")


def _log_ignored(detections: pd.DataFrame, keys: np.ndarray, included: np.ndarray) -> None:
    ignored = ~np.isin(keys, included)
    if ignored.any():
        first = detections.iloc[int(np.flatnonzero(ignored)[0])]
        log.warning("ignored %d detection rows on %d keyframes that are not in the ground "
                    "truth (as the official evaluator does), e.g. %s,%s", ignored.sum(),
                    len(np.unique(keys[ignored])), first["video_id"], first["timestamp"])


def _true_positives(det: pd.DataFrame, gt: pd.DataFrame, *, n_classes: int,
                    iou_threshold: float) -> np.ndarray:
    """Official per-image matching (module doc, 3) for all detections at once:
    the first detection (in reader order) whose best GT box is that box, at
    IoU >= threshold, is its true positive."""
    gt_group = gt["key"].to_numpy() * n_classes + gt["action_id"].to_numpy()
    gt_order = np.argsort(gt_group, kind="stable")  # keeps reader order in a group
    det_group = det["key"].to_numpy() * n_classes + det["action_id"].to_numpy()
    low = np.searchsorted(gt_group[gt_order], det_group, side="left")
    count = np.searchsorted(gt_group[gt_order], det_group, side="right") - low
    start = np.cumsum(count) - count
    pair_det = np.repeat(np.arange(len(det)), count)
    offset = np.arange(len(pair_det)) - start[pair_det]
    iou = _official_iou(det, pair_det, gt, gt_order[low[pair_det] + offset])
    is_tp = np.zeros(len(det), dtype=bool)
    with_gt = np.flatnonzero(count)
    if not len(with_gt):
        return is_tp
    best = np.maximum.reduceat(iou, start[with_gt])
    is_best = iou == np.repeat(best, count[with_gt])
    first_best = np.minimum.reduceat(np.where(is_best, offset, len(gt)), start[with_gt])
    taken = gt_order[low[with_gt] + np.minimum(first_best, count[with_gt] - 1)]
    candidate = best >= iou_threshold
    _, first = np.unique(taken[candidate], return_index=True)
    is_tp[with_gt[candidate][first]] = True
    return is_tp


def _official_iou(det: pd.DataFrame, det_rows: np.ndarray, gt: pd.DataFrame,
                  gt_rows: np.ndarray) -> np.ndarray:
    """IoU of row pairs with the official operations in their order (no +1)."""
    d = {c: det[c].to_numpy()[det_rows] for c in ("x1", "y1", "x2", "y2")}
    g = {c: gt[c].to_numpy()[gt_rows] for c in ("x1", "y1", "x2", "y2")}
    heights = np.maximum(0.0, np.minimum(d["y2"], g["y2"]) - np.maximum(d["y1"], g["y1"]))
    widths = np.maximum(0.0, np.minimum(d["x2"], g["x2"]) - np.maximum(d["x1"], g["x1"]))
    intersection = heights * widths
    det_area = (d["y2"] - d["y1"]) * (d["x2"] - d["x1"])
    gt_area = (g["y2"] - g["y1"]) * (g["x2"] - g["x1"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (det_area + gt_area - intersection)


def _summarize(det: pd.DataFrame, is_tp: np.ndarray, num_gt: np.ndarray,
               label_ids: list[int]) -> FrameMapResult:
    by_class = np.argsort(det["action_id"].to_numpy(), kind="stable")
    classes = det["action_id"].to_numpy()[by_class]
    scores, labels = det["score"].to_numpy()[by_class], is_tp[by_class]
    ap_by_index = np.full(max(label_ids), np.nan)  # the official per-class array
    per_class, precision, recall = {}, {}, {}
    for c in label_ids:
        per_class[c] = None
        if num_gt[c] == 0:
            continue
        low, high = np.searchsorted(classes, [c, c + 1])
        precision[c], recall[c] = _precision_recall(scores[low:high], labels[low:high],
                                                    int(num_gt[c]))
        ap_by_index[c - 1] = _average_precision(precision[c], recall[c])
        per_class[c] = float(ap_by_index[c - 1])
    mean = float(np.nanmean(ap_by_index)) if precision else math.nan
    return FrameMapResult(mAP=mean, per_class=per_class, precision=precision,
                          recall=recall, num_groundtruth={c: int(num_gt[c]) for c in label_ids})


def _precision_recall(scores: np.ndarray, is_tp: np.ndarray, num_gt: int):
    """As metrics.compute_precision_recall: numpy's default (unstable) argsort."""
    true_positives = is_tp.astype(int)[np.argsort(scores)[::-1]]
    cum_tp = np.cumsum(true_positives)
    cum_fp = np.cumsum(1 - true_positives)
    return cum_tp.astype(float) / (cum_tp + cum_fp), cum_tp.astype(float) / num_gt


def _average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """As metrics.compute_average_precision: all-point interpolated AP."""
    if not precision.size:
        return 0.0
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return np.sum((recall[steps] - recall[steps - 1]) * precision[steps])
