"""The action classifier as an mmengine model, its validation metric, checkpoints, prediction.

``ActionClassifier`` wraps an ActionHead for mmengine's Runner: ``mode='loss'``
gives the focal losses, ``mode='predict'`` one record per keyframe (boxes and
class probabilities), ``mode='tensor'`` the raw HeadOutput. Everything needed
to rebuild the model (head arguments, class ids, pose mask, focal gamma) is
written into each checkpoint under ``MODEL_KEY``, so a checkpoint alone is
enough to predict in a fresh process.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch.utils.data import DataLoader

from avapipe.checkpoints import load_trusted_checkpoint
from avapipe.data.ava import RESULT_COLUMNS
from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.features.memory import load_memory_index
from avapipe.features.store import open_features
from avapipe.models.dataset import KeyframeDataset, collate_keyframes
from avapipe.models.head import build_head, head_probabilities
from avapipe.models.losses import head_loss

MODEL_KEY = "avapipe_model"
HEAD_INPUTS = ("persons", "person_mask", "objects", "object_mask", "memory", "memory_mask",
               "memory_offset", "parts", "part_mask")


class ClassifierCheckpointError(ValueError):
    """A file is not a checkpoint of this project's action classifier."""


class ActionClassifier(BaseModel):
    """head: build_head keyword arguments; action_ids: the A class ids of the
    head's outputs; pose_classes: Bool[A] as a list; gamma: focal exponent."""

    def __init__(self, *, head: dict, action_ids: Sequence[int], pose_classes: Sequence[bool],
                 gamma: float) -> None:
        super().__init__()
        if len(action_ids) != head["num_classes"] or len(pose_classes) != len(action_ids):
            raise ValueError(f"{len(action_ids)} action ids and {len(pose_classes)} pose flags "
                             f"for a head of {head['num_classes']} classes")
        self.config = {"head": dict(head), "action_ids": [int(a) for a in action_ids],
                       "pose_classes": [bool(p) for p in pose_classes], "gamma": float(gamma)}
        self.head = build_head(**head)
        self.register_buffer("pose_classes", torch.tensor(self.config["pose_classes"]),
                             persistent=False)

    def forward(self, mode: str = "tensor", **batch):
        """batch: a collate_keyframes batch (with targets for mode='loss')."""
        output = self.head(**{k: batch[k] for k in HEAD_INPUTS if k in batch})
        if mode == "tensor":
            return output
        if mode == "loss":
            loss = head_loss(logits=output.trained_logits(), targets=batch["targets"],
                             person_mask=batch["person_mask"], pose_classes=self.pose_classes,
                             gamma=self.config["gamma"])
            return {"loss_pose": loss.pose, "loss_other": loss.other}
        if mode == "predict":
            scores = head_probabilities(output, pose_classes=self.pose_classes)
            return keyframe_records(batch, scores.float())
        raise ValueError(f"mode={mode!r}; use 'loss', 'predict' or 'tensor'")


def keyframe_records(batch: dict, scores: torch.Tensor) -> list[dict]:
    """One dict per keyframe of a batch: video_id, timestamp, boxes float [P, 4]
    (normalized xyxy) and scores float [P, A], real persons only."""
    mask = batch["person_mask"].cpu().numpy()
    boxes, scores = batch["boxes"].cpu().numpy(), scores.detach().cpu().numpy()
    return [{"video_id": video_id, "timestamp": int(timestamp),
             "boxes": boxes[b][mask[b]], "scores": scores[b][mask[b]]}
            for b, (video_id, timestamp) in enumerate(zip(batch["video_id"],
                                                          batch["timestamp"].tolist()))]


def result_rows(records: Sequence[dict], *, action_ids: Sequence[int],
                min_score: float = 0.0, classes: Collection[int] | None = None) -> pd.DataFrame:
    """AVA result rows (RESULT_COLUMNS), one per (person, class) with score >= min_score,
    from keyframe_records; ``classes``: keep only these action ids (None: all)."""
    action_ids = np.asarray(action_ids, np.int64)
    counts = [len(r["boxes"]) for r in records]
    boxes = np.concatenate([r["boxes"] for r in records] + [np.zeros((0, 4))])
    scores = np.concatenate([r["scores"] for r in records]
                            + [np.zeros((0, len(action_ids)))])
    if classes is not None:
        kept = np.isin(action_ids, np.fromiter(classes, np.int64))
        action_ids, scores = action_ids[kept], scores[:, kept]
    person_video = np.repeat([r["video_id"] for r in records], counts)
    person_time = np.repeat([r["timestamp"] for r in records], counts)
    person, column = np.nonzero(scores >= min_score)
    return pd.DataFrame({
        "video_id": person_video[person].astype(object),
        "timestamp": person_time[person].astype(np.int64),
        **{c: boxes[person, i].astype(np.float64) for i, c in enumerate(("x1", "y1", "x2", "y2"))},
        "action_id": action_ids[column],
        "score": scores[person, column].astype(np.float64),
    }, columns=list(RESULT_COLUMNS))


class FrameMapMetric(BaseMetric):
    """Frame-mAP@0.5 of ``mode='predict'`` records against ``groundtruth`` rows
    (mmengine's validation metric; reported as ``frame/mAP``). keyframes: the
    validation keyframes (``video_id, timestamp``), all annotated, so that
    detections on those without GT boxes count as false positives."""

    default_prefix = "frame"

    def __init__(self, *, groundtruth: pd.DataFrame, label_map: dict[int, str],
                 excluded: pd.DataFrame | None, action_ids: list[int],
                 keyframes: pd.DataFrame | None = None) -> None:
        super().__init__(collect_device="cpu")
        self.groundtruth, self.label_map = groundtruth, label_map
        self.excluded, self.action_ids, self.keyframes = excluded, action_ids, keyframes

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        rows = result_rows(results, action_ids=self.action_ids)
        result = evaluate_frame_map(groundtruth=self.groundtruth, detections=rows,
                                    label_map=self.label_map, excluded=self.excluded,
                                    empty_keyframes=self.keyframes)
        return {"mAP": float(result.mAP)}


def load_classifier(checkpoint: str | Path) -> ActionClassifier:
    """The ActionClassifier saved in an mmengine checkpoint of train_classifier, on CPU."""
    loaded = load_trusted_checkpoint(checkpoint)
    if MODEL_KEY not in loaded or "state_dict" not in loaded:
        raise ClassifierCheckpointError(
            f"{checkpoint}: no {MODEL_KEY!r} entry; pass a checkpoint written by "
            "train_classifier (its work_dir holds best_*.pth and epoch_*.pth)")
    try:
        model = ActionClassifier(**_with_defaults_of_old_heads(loaded[MODEL_KEY]))
        model.load_state_dict(loaded["state_dict"])
    except (TypeError, RuntimeError) as err:
        detail = " ".join(str(err).split())[:300]
        raise ClassifierCheckpointError(
            f"{checkpoint}: its head does not fit the current action head ({detail}); it was "
            "written by an earlier head layout: train the classifier again") from err
    return model.eval()


def _with_defaults_of_old_heads(config: dict) -> dict:
    """Checkpoints written before ``part_pooling`` existed averaged the parts."""
    head = {"part_pooling": "mean", **config["head"]}
    return {**config, "head": head}


@torch.no_grad()
def predict(*, checkpoint: str | Path, store_path: str | Path, memory_path: str | Path | None,
            keyframes: pd.DataFrame, batch_size: int = 32, min_score: float = 0.0,
            device: str = "cpu", preload: bool = True,
            classes: Collection[int] | None = None) -> pd.DataFrame:
    """AVA result rows (video_id, timestamp, x1..y2, action_id, score) for every
    original (copy 0) cached person box of ``keyframes`` and every class with
    score >= min_score; scores are head_probabilities. Keyframes without
    persons give no rows. classes: the action ids to report, e.g. the
    evaluated ones of a classifier trained on more (None: every trained class)."""
    model = load_classifier(checkpoint).to(device)
    store = open_features(Path(store_path))
    memory = None if memory_path is None else load_memory_index(Path(memory_path))
    dataset = KeyframeDataset(store, memory, keyframes=keyframes, targets=None,
                              with_parts=model.head.pose_part is not None, preload=preload)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_keyframes)
    records = []
    for batch in loader:
        records += model(mode="predict", **model.data_preprocessor(batch, False))
    return result_rows(records, action_ids=model.config["action_ids"], min_score=min_score,
                       classes=classes)
