"""detect: person boxes and object boxes for every keyframe.

Persons: the train split takes its boxes from ``detect.train_source``
(AlphAction trains on ground-truth boxes), val / test from ``detect.source``.
A keyframe where the detector or the proposals have nobody gets one
whole-frame box, as mmaction2 does. Objects: every split from the one
``detect.object_source``, so that the O features a model is trained on come
from where those it is tested on come from.
"""

from __future__ import annotations

import pandas as pd

from avapipe.data import ava
from avapipe.data.keyframes import iter_keyframe_images
from avapipe.data.proposals import read_proposals
from avapipe.perception import boxes
from avapipe.schemas import KEYFRAMES, OBJECTS, PERSONS, read_table, write_table
from stages import labels, paths
from stages.params import DetectParams, Params, ParamsError
from stages.records import checked_inputs

_KEY = ["video_id", "timestamp"]


def _groundtruth(keyframes: pd.DataFrame) -> pd.DataFrame:
    tables = [labels.groundtruth(split) for split in sorted(keyframes["split"].unique())
              if paths.groundtruth(split).exists()]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(ava.GT_COLUMNS))


def _gt_persons(keyframes: pd.DataFrame, p: DetectParams) -> pd.DataFrame:
    gt = _groundtruth(keyframes).merge(keyframes[_KEY])
    return boxes.persons_from_gt(groundtruth=gt, jitter=p.jitter, seed=p.seed)


def _gt_objects(keyframes: pd.DataFrame) -> pd.DataFrame:
    if not paths.GT_OBJECTS.exists():
        raise ParamsError(
            "params.yaml: detect.object_source=gt, but this data has no ground-truth object "
            f"boxes ({paths.GT_OBJECTS}; only the built-in synthetic data has them). Set "
            "detect.object_source=mmdet (objects of every split from the detector "
            "detect.config / detect.checkpoint) or none (no objects: then only fusion=none "
            "with pose_part=false can be trained)")
    gt_objects = pd.read_csv(paths.GT_OBJECTS, dtype={"video_id": str})
    return boxes.objects_from_gt(objects=gt_objects.merge(keyframes[_KEY]))


def _mmdet_boxes(keyframes: pd.DataFrame, p: DetectParams, device: str):
    """(persons, objects) of ``keyframes`` from one pass of the detector."""
    from avapipe.perception.detect import detect_keyframes, load_detector

    if keyframes.empty:
        return PERSONS.empty(), OBJECTS.empty()
    detector = load_detector(config=p.config, checkpoint=p.checkpoint, device=device)
    return detect_keyframes(
        detector=detector, images=iter_keyframe_images(keyframes), score_thr=p.score_thr,
        batch_size=p.batch_size, object_topk=p.object_topk, object_score_thr=p.object_score_thr,
    )


def _proposal_persons(keyframes: pd.DataFrame, p: DetectParams) -> pd.DataFrame:
    reader = boxes.read_detection_csv if p.proposals.endswith(".csv") else read_proposals
    return boxes.persons_from_proposals(
        proposals=reader(p.proposals), keyframes=keyframes, score_thr=p.score_thr)


def _of(table: pd.DataFrame, keyframes: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` at ``keyframes``."""
    return table.merge(keyframes[_KEY], on=_KEY)[table.columns]


def _split_persons(split_frames: pd.DataFrame, source: str, detected: pd.DataFrame,
                   p: DetectParams) -> tuple[pd.DataFrame, int]:
    """(persons of one split from ``source``, whole-frame boxes added)."""
    if source == "gt":
        return _gt_persons(split_frames, p), 0
    found = _of(detected, split_frames) if source == "mmdet" else _proposal_persons(split_frames, p)
    return boxes.whole_frame_persons(persons=found, keyframes=split_frames)


def _person_sources(keyframes: pd.DataFrame, p: DetectParams) -> dict[str, str]:
    train_source = p.source if p.train_source == "same" else p.train_source
    return {split: train_source if split == "train" else p.source
            for split in sorted(keyframes["split"].unique())}


def run(params: Params) -> None:
    p = params.detect
    record = checked_inputs("detect", params, [paths.KEYFRAMES, paths.LABELS])
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    sources = _person_sources(keyframes, p)
    # One detector pass over every keyframe that needs it, for persons and objects.
    wants_detector = keyframes["split"].map(sources).eq("mmdet") | (p.object_source == "mmdet")
    detected, detected_objects = _mmdet_boxes(keyframes[wants_detector], p, params.device)
    if p.object_source == "gt":
        objects = _gt_objects(keyframes)
    else:
        objects = detected_objects if p.object_source == "mmdet" else OBJECTS.empty()
    persons, lines = [], []
    for split, source in sources.items():
        frames = keyframes[keyframes["split"] == split]
        split_persons, whole = _split_persons(frames, source, detected, p)
        persons.append(split_persons)
        lines.append(f"  {split}: {len(frames)} keyframes, {len(split_persons)} persons ({source}), "
                     f"{len(_of(objects, frames))} objects ({p.object_source})"
                     + (f"; {whole} keyframes without a person box got a whole-frame box"
                        if whole else ""))
    persons = pd.concat(persons, ignore_index=True) if persons else PERSONS.empty()
    write_table(objects, OBJECTS, paths.OBJECTS, record=record)
    write_table(persons, PERSONS, paths.PERSONS, record=record)
    print("\n".join([f"detect: {len(persons)} persons, {len(objects)} objects"] + lines))
