"""evaluate: val predictions in the official result CSV, frame-mAP@0.5, per-class
AP and PR curves for ``dvc metrics`` / ``dvc plots``.

The CSV holds what the challenge expects: label-map classes only and, per
keyframe, the ``evaluate.top_k`` rows (default 50) the official evaluator's
reader keeps; the metrics are those of exactly the rows written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from avapipe.data import ava
from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.evaluation.official_reader import challenge_rows
from avapipe.evaluation.tables import metrics_dict, per_class_table, pr_curve_table
from avapipe.models.predict import load_classifier, predict
from avapipe.outputs import replacing_file, staging_path
from stages import labels, paths
from stages.features import STORE
from stages.memory import MEMORY
from stages.params import Params
from stages.records import checked_inputs
from stages.train import CHECKPOINT, WORK_DIR

PREDICTIONS = paths.RESULTS / "predictions.csv"
METRICS = paths.RESULTS / "metrics.json"
PER_CLASS = paths.RESULTS / "per_class_ap.csv"
PR_CURVES = paths.RESULTS / "pr_curves.csv"


def _label_spaces(label_map: dict[int, str] | None) -> dict:
    """Both label spaces for metrics.json: the classifier's classes and the scored ones."""
    trained = load_classifier(CHECKPOINT).config["action_ids"]
    scored = sorted(label_map) if label_map is not None else trained
    lacking = sorted(set(scored) - set(trained))
    if lacking:
        print(f"evaluate: the classifier does not output evaluated classes {lacking[:10]}; "
              "they score 0")
    print(f"evaluate: {len(trained)} classes trained, {len(scored)} evaluated; the "
          f"predictions hold the evaluated ones")
    return {"classes_trained": len(trained), "classes_evaluated": len(scored)}


def _write(path: Path, write: Callable[[Path], None]) -> None:
    """Each result file is replaced whole: a crash leaves the previous one."""
    with replacing_file(path) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _write(path, lambda tmp: tmp.write_text(text))


def _write_without_groundtruth(rows, split: str, spaces: dict) -> None:
    """Own videos: predictions only; no GT means no mAP, which is not an error."""
    _write_text(METRICS, json.dumps({"mAP": None, "keyframes": int(rows[["video_id", "timestamp"]]
                                     .drop_duplicates().shape[0]), **spaces}, indent=2) + "\n")
    _write_text(PER_CLASS, "action_id,name,group,num_gt,ap\n")
    _write_text(PR_CURVES, "class,recall,precision\n")
    print(f"evaluate: {len(rows)} predictions on the {split} split (no ground truth, no mAP) "
          f"→ {PREDICTIONS}")


def run(params: Params) -> None:
    split = "test" if params.data.source == "videos" else "val"
    checked_inputs("evaluate", params, [WORK_DIR, STORE, MEMORY, paths.LABELS, paths.KEYFRAMES])
    if not CHECKPOINT.is_file():
        hint = (f" (an unfinished run left {staging_path(WORK_DIR)}; it resumes there)"
                if staging_path(WORK_DIR).exists() else "")
        raise FileNotFoundError(f"{CHECKPOINT}: no trained classifier; run the train stage{hint}")
    # Own videos may come without a label map: then every trained class is reported.
    label_map = ava.read_label_map(paths.LABEL_MAP) if paths.LABEL_MAP.exists() else None
    spaces = _label_spaces(label_map)
    # Every keyframe of the split's GT, two-column ones included: all are scored.
    rows = predict(checkpoint=CHECKPOINT, store_path=STORE, memory_path=MEMORY,
                   keyframes=labels.keyframes_of(split), device=params.device,
                   classes=None if label_map is None else list(label_map))
    rows = challenge_rows(rows, label_ids=label_map, top_k=params.evaluate.top_k)
    _write(PREDICTIONS, lambda tmp: ava.write_results_csv(tmp, rows=rows))
    if not paths.groundtruth(split).exists():
        _write_without_groundtruth(rows, split, spaces)
        return
    groups = labels.groups()
    truth = labels.groundtruth_csv(split)
    result = evaluate_frame_map(
        groundtruth=truth.rows, empty_keyframes=truth.empty_keyframes, detections=rows,
        label_map=label_map, excluded=labels.exclusions(),
    )
    metrics = {**metrics_dict(result, groups=groups), **spaces}
    _write_text(METRICS, json.dumps(metrics, indent=2) + "\n")
    per_class = per_class_table(result, label_map=label_map, groups=groups)
    _write(PER_CLASS, lambda tmp: per_class.to_csv(tmp, index=False))
    curves = pr_curve_table(result, label_map=label_map)
    _write(PR_CURVES, lambda tmp: curves.to_csv(tmp, index=False))
    print(f"evaluate: frame-mAP@0.5 on {split} = {metrics['mAP']:.4f} "
          f"({metrics['classes_with_gt']} classes with GT) → {METRICS}")
