"""Frame-mAP@0.5 exactly as the official AVA evaluator computes it, vectorized.

The official tool (ActivityNet ``get_ava_performance.py`` on the TF object
detection PASCAL evaluator) treats each keyframe as an image and does, in order:

1. Reads each CSV keeping only rows whose action is in the label map. Rows go
   into one heap per keyframe of tuples ``(score, action, y1, x1, y2, x2)``;
   for detections the heap holds at most 50: a new row replaces the heap's
   smallest tuple only if its score is strictly greater than that tuple's score.
   Each keyframe's rows are then sorted by descending score, stably over the
   heap's list order. The "score" of a ground-truth row is its 8th column, the
   person id, or 1.0 for a 7-column row; it only orders the GT boxes, which
   decides which box a detection takes when two overlap it equally.
2. Drops excluded keyframes from both; keyframes in the order first seen.
3. Drops detections with ``y1 >= y2`` or ``x1 >= x2``. Each detection of a
   keyframe (per class, in the order above) takes the GT box of its class with
   the highest IoU (first on ties); it is a true positive iff that IoU >= 0.5
   and that GT box was not taken by an earlier detection; otherwise it is a
   false positive, even when another GT box overlaps it enough. Detections on a
   keyframe without ground truth (absent, or only two-column rows) are false
   positives.
4. Per class, all detections are ordered by ``np.argsort(scores)[::-1]`` (not a
   stable sort: ties follow numpy's quicksort) and AP is the all-point
   interpolated area under the monotone precision / recall curve. A class with
   GT and no detections scores 0; classes without GT are NaN and left out of
   the mean (``np.nanmean``), which is the mAP the tool prints.

Every step here builds the same arrays in the same order as the official tool,
so ties come out as they do there; ``reference.py`` is a plain transcription
the tests check this against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data import ava

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
    """Reads the four AVA files (as ``get_ava_performance.py -l -g -d -e`` takes
    them) and evaluates. Rows of classes outside the label map are ignored."""
    excluded = None if exclusions is None else ava.read_excluded_timestamps(exclusions)
    return evaluate_frame_map(
        groundtruth=ava.read_groundtruth_csv(groundtruth, on_bad_row=on_bad_row).rows,
        detections=ava.read_results_csv(detections, on_bad_row=on_bad_row).rows,
        label_map=ava.read_label_map(labelmap), excluded=excluded,
    )


def evaluate_frame_map(
    *, groundtruth: pd.DataFrame, detections: pd.DataFrame, label_map: Mapping[int, str],
    excluded: pd.DataFrame | None = None, iou_threshold: float = 0.5,
    max_detections_per_keyframe: int = OFFICIAL_MAX_DETECTIONS,
) -> FrameMapResult:
    """Frame-mAP of ``detections`` against ``groundtruth`` (module docstring).

    groundtruth: rows ``video_id, timestamp, x1, y1, x2, y2, action_id`` (file order).
    detections: the same plus ``score``, in file order (the order decides ties).
    label_map: {action id >= 1: name}; only these classes count.
    excluded: ``video_id, timestamp`` keyframes dropped from both sides.
    """
    if not label_map or min(label_map) < 1:
        raise ValueError(f"label map ids {sorted(label_map)[:5]}...: need ids >= 1")
    _check_columns(groundtruth, "groundtruth", ())
    _check_columns(detections, "detections", ("score",))
    keys = _KeyframeCodes(groundtruth=groundtruth, detections=detections, excluded=excluded)
    label_ids = np.fromiter(label_map, dtype=np.int64)
    gt = _official_rows(groundtruth, keys.of(groundtruth), label_ids, keys.excluded, None)
    det = _official_rows(detections, keys.of(detections), label_ids, keys.excluded,
                         max_detections_per_keyframe)
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


class _KeyframeCodes:
    """Integer codes for (video_id, timestamp) shared by all tables."""

    def __init__(self, *, groundtruth: pd.DataFrame, detections: pd.DataFrame,
                 excluded: pd.DataFrame | None):
        present = [t for t in (groundtruth, detections, excluded) if t is not None]
        if excluded is not None and {"video_id", "timestamp"} - set(excluded.columns):
            raise ValueError(f"excluded table has columns {list(excluded.columns)}; "
                             "expected video_id, timestamp")
        videos = pd.concat([t["video_id"].astype(str) for t in present], ignore_index=True)
        self._videos = pd.Index(pd.unique(videos))
        seconds = np.concatenate([t["timestamp"].to_numpy(np.int64) for t in present])
        self._low = int(seconds.min()) if len(seconds) else 0
        self._span = int(seconds.max()) - self._low + 1 if len(seconds) else 1
        self.excluded = None if excluded is None else np.unique(self.of(excluded))

    def of(self, table: pd.DataFrame) -> np.ndarray:
        video = self._videos.get_indexer(table["video_id"].astype(str))
        return video * self._span + (table["timestamp"].to_numpy(np.int64) - self._low)


def _official_rows(table: pd.DataFrame, key: np.ndarray, label_ids: np.ndarray,
                   excluded: np.ndarray | None, capacity: int | None) -> pd.DataFrame:
    """The rows the official reader keeps, in the order it hands them on, with
    ``image`` = keyframe number in first-seen order."""
    score = _reader_scores(table)
    frame = pd.DataFrame({
        "key": key, "action_id": table["action_id"].to_numpy(np.int64), "score": score,
        **{c: table[c].to_numpy(np.float64) for c in ("x1", "y1", "x2", "y2")},
    })
    keep = np.isin(frame["action_id"], label_ids)
    if excluded is not None:
        keep &= ~np.isin(key, excluded)
    frame = frame[keep].reset_index(drop=True)
    frame["image"] = pd.factorize(frame["key"])[0]
    tuples = [frame[c].to_numpy() for c in ("score", "action_id", "y1", "x1", "y2", "x2")]
    order = _heap_read_order(frame["image"].to_numpy(), _tuple_rank(tuples),
                             frame["score"].to_numpy(), capacity)
    return frame.iloc[order].reset_index(drop=True)


def _reader_scores(table: pd.DataFrame) -> np.ndarray:
    """The official reader's score: detection score, else GT person id (-1: none)."""
    if "score" in table:
        return table["score"].to_numpy(np.float64)
    if "person_id" not in table:
        return np.ones(len(table))
    person = table["person_id"].to_numpy(np.float64)
    return np.where(person == -1, 1.0, person)


def _tuple_rank(columns: list[np.ndarray]) -> np.ndarray:
    """Dense rank of rows under Python's tuple order of ``columns``."""
    if not len(columns[0]):
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])
    step = np.zeros(len(order), dtype=bool)
    for col in columns:
        ordered = col[order]
        step[1:] |= ordered[1:] != ordered[:-1]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(step)
    return rank


def _heap_read_order(image: np.ndarray, rank: np.ndarray, score: np.ndarray,
                     capacity: int | None) -> np.ndarray:
    """Rows (file order, ``image`` codes in first-seen order) the official
    reader keeps, ordered by image, then descending score stably over the
    final layout of Python's heapq list.

    The heaps of all images are run in lockstep: step t feeds every image its
    t-th row, so the Python loop runs (rows per image) × (heap depth) times.
    """
    n_images = int(image.max()) + 1 if len(image) else 0
    counts = np.bincount(image, minlength=n_images)
    by_image = np.argsort(image, kind="stable")
    first = np.cumsum(counts) - counts
    slots = counts if capacity is None else np.minimum(counts, capacity)
    base = np.cumsum(slots) - slots
    heap = np.zeros(int(slots.sum()), dtype=np.int64)  # row per heap slot
    heap_rank = np.zeros_like(heap)
    busiest = np.argsort(-counts, kind="stable")
    sorted_counts = counts[busiest]
    for t in range(int(counts.max()) if n_images else 0):
        active = busiest[: np.searchsorted(-sorted_counts, -t, side="left")]
        rows = by_image[first[active] + t]
        if capacity is None or t < capacity:
            _heap_push(heap, heap_rank, base[active], t, rows, rank[rows])
        else:
            better = score[rows] > score[heap[base[active]]]
            rows = rows[better]
            _heap_replace_root(heap, heap_rank, base[active[better]], capacity,
                               rows, rank[rows])
    slot_image = np.repeat(np.arange(n_images), slots)
    slot_position = np.arange(len(heap)) - base[slot_image]
    return heap[np.lexsort((slot_position, -score[heap], slot_image))]


def _heap_push(heap, heap_rank, base, size: int, rows, ranks) -> None:
    """heapq.heappush on one heap per ``base``, each currently of ``size``."""
    position = np.full(len(base), size, dtype=np.int64)
    _sift_toward_root(heap, heap_rank, base, position, ranks)
    heap[base + position] = rows
    heap_rank[base + position] = ranks


def _heap_replace_root(heap, heap_rank, base, size: int, rows, ranks) -> None:
    """heapq.heapreplace: as Python's _siftup, move the smaller child up to a
    leaf (the right one when not left < right), then sift the new item up."""
    position = np.zeros(len(base), dtype=np.int64)
    moving = np.arange(len(base))
    while len(moving):
        child = 2 * position[moving] + 1
        inside = child < size
        moving, child = moving[inside], child[inside]
        b = base[moving]
        right = np.minimum(child + 1, size - 1)
        take_right = (child + 1 < size) & ~(heap_rank[b + child] < heap_rank[b + right])
        child = np.where(take_right, child + 1, child)
        heap[b + position[moving]] = heap[b + child]
        heap_rank[b + position[moving]] = heap_rank[b + child]
        position[moving] = child
    _sift_toward_root(heap, heap_rank, base, position, ranks)
    heap[base + position] = rows
    heap_rank[base + position] = ranks


def _sift_toward_root(heap, heap_rank, base, position, ranks) -> None:
    """Python's heapq._siftdown: move parents down while the new item is
    smaller; leaves in ``position`` the slot where the new item goes."""
    moving = np.flatnonzero(position > 0)
    while len(moving):
        at = position[moving]
        parent = (at - 1) >> 1
        b = base[moving]
        up = ranks[moving] < heap_rank[b + parent]
        moving, at, parent, b = moving[up], at[up], parent[up], b[up]
        heap[b + at] = heap[b + parent]
        heap_rank[b + at] = heap_rank[b + parent]
        position[moving] = parent
        moving = moving[parent > 0]


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
