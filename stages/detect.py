"""detect: person boxes (and object boxes) for every keyframe.

The train split takes its boxes from ``detect.train_source`` (AlphAction
trains on ground-truth boxes); val / test from ``detect.source``.
"""

from __future__ import annotations

import pandas as pd

from avapipe.data import ava
from avapipe.data.keyframes import iter_keyframe_images
from avapipe.data.proposals import read_proposals
from avapipe.perception import boxes
from avapipe.schemas import KEYFRAMES, OBJECTS, PERSONS, read_table, write_table
from stages import labels, paths
from stages.params import DetectParams, Params, ParamsError, check_choice

SOURCES = ("gt", "mmdet", "proposals")


def _groundtruth(keyframes: pd.DataFrame) -> pd.DataFrame:
    tables = [labels.groundtruth(split) for split in sorted(keyframes["split"].unique())
              if paths.groundtruth(split).exists()]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(ava.GT_COLUMNS))


def _gt_boxes(keyframes: pd.DataFrame, p: DetectParams):
    gt = _groundtruth(keyframes).merge(keyframes[["video_id", "timestamp"]])
    persons = boxes.persons_from_gt(groundtruth=gt, jitter=p.jitter, seed=p.seed)
    if paths.GT_OBJECTS.exists():
        gt_objects = pd.read_csv(paths.GT_OBJECTS, dtype={"video_id": str})
        objects = boxes.objects_from_gt(objects=gt_objects.merge(keyframes[["video_id", "timestamp"]]))
    else:
        objects = OBJECTS.empty()
    return persons, objects


def _mmdet_boxes(keyframes: pd.DataFrame, p: DetectParams, device: str):
    from avapipe.perception.detect import detect_keyframes, load_detector

    if not (p.config and p.checkpoint):
        raise ParamsError("params.yaml: detect.source=mmdet needs detect.config and "
                          "detect.checkpoint (a path or URL)")
    detector = load_detector(config=p.config, checkpoint=p.checkpoint, device=device)
    return detect_keyframes(
        detector=detector, images=iter_keyframe_images(keyframes), score_thr=p.score_thr,
        enlarge=p.enlarge, batch_size=p.batch_size, object_topk=p.object_topk,
        object_score_thr=p.object_score_thr,
    )


def _proposal_boxes(keyframes: pd.DataFrame, p: DetectParams):
    if not p.proposals:
        raise ParamsError("params.yaml: detect.source=proposals needs detect.proposals, "
                          "an AVA proposals pickle or a detection CSV")
    reader = boxes.read_detection_csv if p.proposals.endswith(".csv") else read_proposals
    persons = boxes.persons_from_proposals(
        proposals=reader(p.proposals), keyframes=keyframes, score_thr=p.score_thr)
    return persons, OBJECTS.empty()


def boxes_for(source: str, keyframes: pd.DataFrame, params: Params):
    """(persons, objects) of ``keyframes`` from one source."""
    if len(keyframes) == 0:
        return PERSONS.empty(), OBJECTS.empty()
    if source == "gt":
        return _gt_boxes(keyframes, params.detect)
    if source == "mmdet":
        return _mmdet_boxes(keyframes, params.detect, params.device)
    return _proposal_boxes(keyframes, params.detect)


def run(params: Params) -> None:
    p = params.detect
    check_choice(p.source, SOURCES, key="detect.source")
    check_choice(p.train_source, SOURCES + ("same",), key="detect.train_source")
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    train_source = p.source if p.train_source == "same" else p.train_source
    is_train = keyframes["split"] == "train"
    parts = [boxes_for(train_source, keyframes[is_train], params),
             boxes_for(p.source, keyframes[~is_train], params)]
    persons = pd.concat([t for t, _ in parts], ignore_index=True)
    objects = pd.concat([t for _, t in parts], ignore_index=True)
    write_table(objects, OBJECTS, paths.OBJECTS)
    write_table(persons, PERSONS, paths.PERSONS)
    print(f"detect: {len(persons)} persons, {len(objects)} objects on "
          f"{len(keyframes)} keyframes (train: {train_source}, other: {p.source})")
