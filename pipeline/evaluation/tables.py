"""Evaluation results as the tables the evaluate stage writes for DVC."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from avapipe.evaluation.frame_map import FrameMapResult, group_map


def per_class_table(
    result: FrameMapResult, *, label_map: Mapping[int, str], groups: Mapping[int, str]
) -> pd.DataFrame:
    """One row per label-map class: action_id, name, group, num_gt, ap (NaN without GT)."""
    ids = sorted(label_map)
    return pd.DataFrame({
        "action_id": ids,
        "name": [label_map[i] for i in ids],
        "group": [groups.get(i, "") for i in ids],
        "num_gt": [int(result.num_groundtruth.get(i, 0)) for i in ids],
        "ap": [np.nan if result.per_class.get(i) is None else result.per_class[i] for i in ids],
    })


def pr_curve_table(
    result: FrameMapResult, *, label_map: Mapping[int, str], max_points: int = 200
) -> pd.DataFrame:
    """Long table ``class, recall, precision`` of every class with GT.

    Curves with more than ``max_points`` points are thinned to evenly spaced
    detections (always keeping the last), so the plot file stays small.
    """
    frames = []
    for class_id in sorted(result.precision):
        precision, recall = result.precision[class_id], result.recall[class_id]
        if len(precision) > max_points:
            keep = np.unique(np.linspace(0, len(precision) - 1, max_points).round().astype(int))
            precision, recall = precision[keep], recall[keep]
        frames.append(pd.DataFrame({
            "class": f"{class_id}: {label_map.get(class_id, '?')}",
            "recall": np.asarray(recall, dtype=np.float64),
            "precision": np.asarray(precision, dtype=np.float64),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["class", "recall", "precision"])


def metrics_dict(result: FrameMapResult, *, groups: Mapping[int, str]) -> dict:
    """``{"mAP": …, "mAP_<group>": …, "classes_with_gt": …}`` for ``dvc metrics``."""
    by_group: dict[str, list[int]] = {}
    for class_id, group in groups.items():
        by_group.setdefault(group, []).append(class_id)
    out = {"mAP": None if np.isnan(result.mAP) else float(result.mAP)}
    for name, value in group_map(result=result, groups=by_group).items():
        out[f"mAP_{name}"] = value
    out["classes_with_gt"] = result.num_classes_with_gt
    return out
