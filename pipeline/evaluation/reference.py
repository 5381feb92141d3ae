"""Slow, readable transcription of the official AVA frame-mAP evaluator.

It follows the official tool (ActivityNet ``get_ava_performance.py`` as it
stands since May 2020, with its PASCAL evaluator) step by step in plain
Python: string keys ``"%s,%.6f" % (video_id, Decimal(timestamp))``, the set of
included keys (every GT keyframe, two-column rows included), a ``heapq`` per
keyframe, detections on keyframes outside that set skipped, then per keyframe
and class a loop over detections and GT boxes. Exclusions take keyframes out
of the ground truth before anything else. It exists to check the vectorized
``avapipe.evaluation.frame_map`` (tests and ``bench/bench_eval.py``); use that
one for real files.

The one numpy call kept on purpose is the final per-class ``np.argsort``: the
official tool orders score ties by numpy's (unstable) default sort, so the
result depends on it.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from decimal import Decimal

import numpy as np
import pandas as pd

Entry = tuple  # (score, action_id, y1, x1, y2, x2), as the official reader stores rows


def reference_frame_map(
    *, groundtruth: pd.DataFrame, detections: pd.DataFrame, label_ids: set[int],
    empty_keyframes: pd.DataFrame | None = None, excluded: pd.DataFrame | None = None,
    iou_threshold: float = 0.5, max_detections_per_keyframe: int = 50,
) -> tuple[float, dict[int, float]]:
    """Returns (mAP, {class id with GT: AP}) for rows given in file order;
    arguments as frame_map.evaluate_frame_map's."""
    dropped = set() if excluded is None else {_key(r) for r in _records(excluded)}
    truth = [r for r in _records(groundtruth) if _key(r) not in dropped]
    empty = [] if empty_keyframes is None else _records(empty_keyframes)
    included = {_key(r) for r in truth + empty} - dropped
    found = [r for r in _records(detections) if _key(r) in included]
    gt = _read_like_official(truth, label_ids, capacity=None)
    det = _read_like_official(found, label_ids, capacity=max_detections_per_keyframe)
    num_gt: dict[int, int] = defaultdict(int)
    for entries in gt.values():
        for entry in entries:
            num_gt[entry[1]] += 1
    scores: dict[int, list[float]] = defaultdict(list)
    is_tp: dict[int, list[bool]] = defaultdict(list)
    for key, entries in det.items():
        valid = [e for e in entries if e[2] < e[4] and e[3] < e[5]]
        gt_entries = gt.get(key, [])
        for action in {e[1] for e in valid}:
            dets = [e for e in valid if e[1] == action]
            gts = [g for g in gt_entries if g[1] == action]
            for entry, tp in zip(dets, _match_one_class(dets, gts, iou_threshold)):
                scores[action].append(entry[0])
                is_tp[action].append(tp)
    per_class = {
        c: _average_precision(scores[c], is_tp[c], num_gt[c]) for c in sorted(num_gt)
    }
    mean = sum(per_class.values()) / len(per_class) if per_class else float("nan")
    return mean, per_class


def _records(table: pd.DataFrame) -> list[dict]:
    return table.to_dict("records")


def _key(row: dict) -> str:
    """The official image key; str() of an int or float timestamp reads back exactly."""
    return "%s,%.6f" % (row["video_id"], Decimal(str(row["timestamp"])))


def _read_like_official(rows: list[dict], label_ids: set[int], capacity: int | None
                        ) -> dict[str, list[Entry]]:
    """One heap per keyframe, capped as the official read_csv caps it."""
    heaps: dict[str, list[Entry]] = defaultdict(list)
    for row in rows:
        action = int(row["action_id"])
        if action not in label_ids:
            continue
        if "score" in row:
            score = float(row["score"])
        else:  # the official reader takes an 8th GT column (person id) as score
            person = int(row.get("person_id", -1))
            score = 1.0 if person == -1 else float(person)
        entry = (score, action, float(row["y1"]), float(row["x1"]),
                 float(row["y2"]), float(row["x2"]))
        heap = heaps[_key(row)]
        if capacity is None or len(heap) < capacity:
            heapq.heappush(heap, entry)
        elif score > heap[0][0]:
            heapq.heapreplace(heap, entry)
    return {key: sorted(heap, key=lambda e: -e[0]) for key, heap in heaps.items()}


def _match_one_class(dets: list[Entry], gts: list[Entry], threshold: float) -> list[bool]:
    """Each detection takes its highest-IoU GT box; TP if IoU >= threshold and
    the box is still free, else FP."""
    taken = [False] * len(gts)
    labels = []
    for det in dets:
        tp = False
        if gts:
            ious = [_iou(det[2:], g[2:]) for g in gts]
            best = 0
            for i, value in enumerate(ious):
                if value > ious[best]:
                    best = i
            if ious[best] >= threshold and not taken[best]:
                taken[best] = tp = True
        labels.append(tp)
    return labels


def _iou(a: tuple, b: tuple) -> float:
    """IoU of (y1, x1, y2, x2) boxes, operations in the official order."""
    height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = height * width
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return intersection / (area_a + area_b - intersection)


def _average_precision(scores: list[float], is_tp: list[bool], num_gt: int) -> float:
    """All-point interpolated AP (VOC devkit), detections by descending score."""
    order = np.argsort(np.array(scores, dtype=float))[::-1]
    precision, recall, tp, fp = [], [], 0, 0
    for i in order:
        tp, fp = (tp + 1, fp) if is_tp[i] else (tp, fp + 1)
        precision.append(tp / (tp + fp))
        recall.append(tp / num_gt)
    if not precision:
        return 0.0
    recall = [0.0] + recall + [1.0]
    precision = [0.0] + precision + [0.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i] - recall[i - 1]) * precision[i]
               for i in range(1, len(recall)) if recall[i] != recall[i - 1])
