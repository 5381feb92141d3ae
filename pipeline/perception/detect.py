"""Person and object boxes on keyframes from an mmdet detector.

The detector is any mmdet 3 model given by config (a file or a config name
shipped with mmdet) and checkpoint (a path or URL). Person boxes are the
detections of the class named ``person`` (COCO class 0), as detected (the
features stage enlarges them for pooling only); objects are the top-K
detections of every other class.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from avapipe.checkpoints import load_trusted_checkpoint, load_weights, resolve_config
from avapipe.schemas import BOX_COLUMNS, OBJECTS, PERSONS

log = logging.getLogger(__name__)
KeyframeImage = tuple[tuple[str, int], np.ndarray]
_PERSON_COLUMNS = ["video_id", "timestamp", "box_id", *BOX_COLUMNS, "score"]
_OBJECT_COLUMNS = _PERSON_COLUMNS + ["label"]


def load_detector(*, config: str, checkpoint: str, device: str) -> torch.nn.Module:
    """Builds an mmdet detector from ``config`` (a file path, or a config name
    shipped with avapipe or mmdet, e.g. ``faster-rcnn_r50_fpn_1x_coco``) and
    loads ``checkpoint`` (a path or http(s) URL) safely and strictly: weights
    that do not fit the config raise CheckpointMismatchError."""
    from mmdet.apis import init_detector

    config_path = resolve_config(config, package="mmdet")
    state = load_trusted_checkpoint(checkpoint)
    # init_detector warns that it falls back to COCO classes when given no
    # checkpoint (the weights are loaded below) and resets warning filters
    # itself, so its warnings are recorded and only the others re-issued.
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(config_path, checkpoint=None, device="cpu")
    for warning in caught:
        if not re.search("checkpoint is None|palette", str(warning.message)):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    load_weights(model, state, config=config_path, source=str(checkpoint))
    meta = state.get("meta", {}) if isinstance(state.get("meta"), dict) else {}
    if "dataset_meta" in meta:
        model.dataset_meta.update({k.lower(): v for k, v in meta["dataset_meta"].items()})
    elif "CLASSES" in meta:  # mmdet 2.x checkpoints
        model.dataset_meta["classes"] = meta["CLASSES"]
    return model.to(device).eval()


def person_class_index(class_names: Sequence[str]) -> int:
    """Index of the class named 'person' (any case) in the detector's classes."""
    lowered = [str(c).lower() for c in class_names]
    if "person" not in lowered:
        raise ValueError(
            f"the detector's classes {list(class_names)[:8]}... have no 'person'; "
            "use a detector trained with a person class (e.g. on COCO)"
        )
    return lowered.index("person")


def keyframe_detections(
    *, key: tuple[str, int], boxes_px: np.ndarray, scores: np.ndarray, labels: np.ndarray,
    width: int, height: int, class_names: Sequence[str], score_thr: float,
    object_topk: int, object_score_thr: float,
) -> tuple[list[tuple], list[tuple], int]:
    """Turns one keyframe's raw detections into person and object rows.

    boxes_px: float[N, 4] pixel xyxy; scores: float[N]; labels: int[N] indices
    into ``class_names``. Persons: score >= score_thr, normalized, best
    first. Objects: other classes, score >= object_score_thr, the
    ``object_topk`` best. Rows with a NaN score or box are dropped.
    Returns (person rows, object rows, number of dropped rows).
    """
    boxes_px = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    finite = np.isfinite(scores) & np.isfinite(boxes_px).all(axis=1)
    order = np.argsort(-np.where(finite, scores, -np.inf), kind="stable")[: int(finite.sum())]
    boxes = np.clip(boxes_px[order] / np.array([width, height, width, height]), 0.0, 1.0)
    scores, labels = scores[order], labels[order]
    is_person = labels == person_class_index(class_names)
    keep = is_person & (scores >= score_thr)
    person_rows = [(*key, i, *b, s) for i, (b, s) in enumerate(zip(boxes[keep], scores[keep]))]
    keep = np.flatnonzero(~is_person & (scores >= object_score_thr))[: max(object_topk, 0)]
    object_rows = [
        (*key, i, *boxes[j], scores[j], str(class_names[labels[j]])) for i, j in enumerate(keep)
    ]
    return person_rows, object_rows, int((~finite).sum())


def check_image(key: tuple[str, int], image: np.ndarray) -> None:
    """Raises ValueError naming ``key`` unless ``image`` is uint8 RGB [H, W, 3]."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8
            and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) > 0):
        shape = getattr(image, "shape", None)
        raise ValueError(
            f"keyframe {key}: image must be a uint8 RGB array [H, W, 3], got "
            f"{type(image).__name__} {shape} {getattr(image, 'dtype', '')}"
        )


def batched(items: Iterable, *, batch_size: int) -> Iterator[list]:
    """``items`` in lists of ``batch_size`` (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _checked(items: Iterable[KeyframeImage]) -> Iterator[KeyframeImage]:
    for key, image in items:
        check_image(key, image)
        yield key, image


def _detect_batch(detector: torch.nn.Module, pipeline, images: list[np.ndarray]) -> list:
    """mmdet predictions for a batch of RGB images, boxes in input pixels."""
    # mmdet's pipelines expect BGR, as cv2 would have loaded it.
    data = [pipeline(dict(img=np.ascontiguousarray(im[..., ::-1]), img_id=i))
            for i, im in enumerate(images)]
    batch = {"inputs": [d["inputs"] for d in data], "data_samples": [d["data_samples"] for d in data]}
    with torch.no_grad():
        return detector.test_step(batch)


def _test_pipeline(detector: torch.nn.Module):
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg

    # Test pipelines of mmdet's configs load annotations, which keyframes lack.
    steps = [s for s in get_test_pipeline_cfg(detector.cfg.copy())
             if "LoadAnnotations" not in str(s.get("type"))]
    steps[0].type = "mmdet.LoadImageFromNDArray"
    return Compose(steps)


def detect_keyframes(
    *, detector: torch.nn.Module, images: Iterable[KeyframeImage], score_thr: float,
    batch_size: int, object_topk: int, object_score_thr: float, progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs ``detector`` (from ``load_detector``) on keyframe images in batches.

    images: ``((video_id, timestamp), uint8 RGB [H, W, 3])`` pairs.
    Returns (PERSONS table, source 'detector', person_id -1; OBJECTS table
    with the class name as label); see ``keyframe_detections`` for the rules.
    Keyframes without detections simply have no rows.
    """
    from mmengine.registry import DefaultScope

    class_names = list(detector.dataset_meta["classes"])
    person_class_index(class_names)  # refuse a detector without persons up front
    rules = dict(score_thr=score_thr, object_topk=object_topk, object_score_thr=object_score_thr)
    persons, objects, dropped = [], [], 0
    with DefaultScope.overwrite_default_scope("mmdet"):
        pipeline = _test_pipeline(detector)
        items = tqdm(images, desc="detect", unit="keyframe", disable=not progress)
        for batch in batched(_checked(items), batch_size=batch_size):
            p, o, d = _batch_rows(detector, pipeline, batch, class_names, rules)
            persons.extend(p)
            objects.extend(o)
            dropped += d
    if dropped:
        log.warning("detect_keyframes: dropped %d detections with a NaN score or box", dropped)
    return _tables(persons, objects)


def _batch_rows(detector, pipeline, batch: list[KeyframeImage], class_names, rules):
    """(person rows, object rows, dropped count) of one batch of keyframes."""
    persons, objects, dropped = [], [], 0
    results = _detect_batch(detector, pipeline, [image for _, image in batch])
    for ((vid, ts), image), result in zip(batch, results):
        pred = result.pred_instances
        p, o, d = keyframe_detections(
            key=(str(vid), int(ts)), boxes_px=pred.bboxes.cpu().numpy(),
            scores=pred.scores.cpu().numpy(), labels=pred.labels.cpu().numpy(),
            width=image.shape[1], height=image.shape[0], class_names=class_names, **rules,
        )
        persons.extend(p)
        objects.extend(o)
        dropped += d
    return persons, objects, dropped


def _tables(person_rows: list[tuple], object_rows: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    persons = pd.DataFrame(person_rows, columns=_PERSON_COLUMNS)
    persons["source"] = "detector"
    persons["person_id"] = -1
    objects = pd.DataFrame(object_rows, columns=_OBJECT_COLUMNS)
    objects["source"] = "detector"
    return (PERSONS.validate(persons, source="detect_keyframes(persons)"),
            OBJECTS.validate(objects, source="detect_keyframes(objects)"))
