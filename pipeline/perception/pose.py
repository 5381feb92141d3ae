"""17 COCO keypoints per person box: mmpose top-down estimation, or ground truth.

Every person row gets exactly one pose row with the same key. Keypoint x, y
are normalized to the frame (a top-down model may place a joint slightly
outside it; that is kept), and every keypoint keeps its score, however low.
A person for which no pose can be had (a box under one pixel wide or high,
or no ground-truth pose to match) gets all 17 keypoints at its box centre
with score 0, so later stages treat them as missing without special cases.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from avapipe.checkpoints import load_trusted_checkpoint, load_weights, resolve_config
from avapipe.perception.boxes import box_iou
from avapipe.perception.detect import KeyframeImage, batched, check_image
from avapipe.schemas import BOX_COLUMNS, KEYPOINT_COLUMNS, NUM_KEYPOINTS, PERSONS, POSES

_FRAME = ["video_id", "timestamp"]
_KEY = _FRAME + ["box_id"]


def load_pose_model(*, config: str, checkpoint: str, device: str) -> torch.nn.Module:
    """Builds an mmpose top-down model from ``config`` (a file path, or a
    config name shipped with avapipe or mmpose, e.g.
    ``td-hm_hrnet-w32_8xb64-210e_coco-256x192``) and loads ``checkpoint`` (a
    path or http(s) URL) safely and strictly (CheckpointMismatchError)."""
    from mmpose.apis import init_model

    config_path = resolve_config(config, package="mmpose")
    state = load_trusted_checkpoint(checkpoint)
    model = init_model(config_path, checkpoint=None, device="cpu")
    load_weights(model, state, config=config_path, source=str(checkpoint))
    meta = state.get("meta", {}) if isinstance(state.get("meta"), dict) else {}
    if "dataset_meta" in meta:
        model.dataset_meta = meta["dataset_meta"]
    # COCO-WholeBody and Halpe start with the 17 COCO joints; others do not fit.
    num_keypoints = model.dataset_meta.get("num_keypoints", NUM_KEYPOINTS)
    if num_keypoints < NUM_KEYPOINTS:
        raise ValueError(
            f"pose model {config!r} predicts {num_keypoints} keypoints; avapipe needs the "
            "17 COCO keypoints (a COCO, COCO-WholeBody or Halpe top-down model)"
        )
    return model.to(device).eval()


def pose_rows(*, keys: pd.DataFrame, keypoints: np.ndarray) -> pd.DataFrame:
    """A POSES table from ``keys`` (video_id, timestamp, box_id; N rows) and
    ``keypoints: float[N, 17, 3]`` (x, y normalized, score), COCO order."""
    flat = np.asarray(keypoints, dtype=np.float64).reshape(len(keys), NUM_KEYPOINTS * 3)
    out = pd.concat(
        [keys[_KEY].reset_index(drop=True), pd.DataFrame(flat, columns=list(KEYPOINT_COLUMNS))],
        axis=1,
    )
    return POSES.validate(out, source="poses")


def centre_poses(boxes: np.ndarray) -> np.ndarray:
    """float[N, 17, 3]: every keypoint at its box's centre with score 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), NUM_KEYPOINTS, 3))
    out[:, :, 0] = ((boxes[:, 0] + boxes[:, 2]) / 2)[:, None]
    out[:, :, 1] = ((boxes[:, 1] + boxes[:, 3]) / 2)[:, None]
    return out


def estimate_poses(
    *, model: torch.nn.Module, images: Iterable[KeyframeImage], persons: pd.DataFrame,
    batch_size: int, progress: bool = True,
) -> pd.DataFrame:
    """Top-down keypoints for every person row, crops batched across keyframes.

    model: from ``load_pose_model``; images: ``((video_id, timestamp), uint8
    RGB [H, W, 3])`` pairs, covering every keyframe of ``persons`` (a PERSONS
    table; boxes normalized xyxy). ``batch_size`` is the number of person
    crops per forward pass. Returns a POSES table, one row per person row.
    """
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    persons = PERSONS.validate(persons, source="estimate_poses(persons)")
    by_frame = {(str(v), int(t)): rows for (v, t), rows in persons.groupby(_FRAME, sort=False)}
    keypoints = centre_poses(persons[list(BOX_COLUMNS)].to_numpy())
    row_of = {(str(v), int(t), int(b)): i for i, (v, t, b)
              in enumerate(persons[_KEY].itertuples(index=False, name=None))}
    seen: set = set()
    with DefaultScope.overwrite_default_scope("mmpose"):
        pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
        crops = _crops(model, pipeline, images, by_frame, seen, progress)
        for batch in batched(crops, batch_size=batch_size):
            for ((key, size), _), result in zip(batch, _predict(model, [c for _, c in batch])):
                keypoints[row_of[key]] = _normalized(result, size)
    missing = [key for key in by_frame if key not in seen]
    if missing:
        raise ValueError(
            f"estimate_poses: {len(missing)} keyframes with persons got no image, first "
            f"{missing[0]}; pass an image for every keyframe of the persons table"
        )
    return pose_rows(keys=persons, keypoints=keypoints)


def _crops(model, pipeline, images, by_frame, seen, progress):
    """Yields ((video_id, timestamp, box_id), (W, H)) and the model input of
    each person box of each image; boxes under one pixel are skipped."""
    items = tqdm(images, desc="pose", unit="keyframe", disable=not progress)
    for (vid, ts), image in items:
        key = (str(vid), int(ts))
        check_image(key, image)
        seen.add(key)
        if key not in by_frame:
            continue
        height, width = image.shape[:2]
        rows = by_frame[key]
        pixels = rows[list(BOX_COLUMNS)].to_numpy(dtype=np.float64) * [width, height, width, height]
        bgr = np.ascontiguousarray(image[..., ::-1])  # mmpose pipelines expect BGR
        for box_id, box in zip(rows["box_id"], pixels):
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            info = dict(img=bgr, bbox=box[None].astype(np.float32),
                        bbox_score=np.ones(1, dtype=np.float32), **model.dataset_meta)
            yield (key + (int(box_id),), (width, height)), pipeline(info)


def _predict(model, crops: list) -> list:
    from mmengine.dataset import pseudo_collate

    with torch.no_grad():
        return model.test_step(pseudo_collate(crops))


def _normalized(result, size: tuple[int, int]) -> np.ndarray:
    """float[17, 3] normalized (x, y, score) from one mmpose prediction."""
    pred = result.pred_instances
    xy = np.asarray(pred.keypoints, dtype=np.float64).reshape(-1, 2)[:NUM_KEYPOINTS]
    scores = np.asarray(pred.keypoint_scores, dtype=np.float64).reshape(-1)[:NUM_KEYPOINTS]
    return np.column_stack([xy / np.asarray(size, dtype=np.float64), scores])


def poses_from_gt(*, keypoints: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """POSES rows for ``persons`` from ground-truth keypoints.

    keypoints: ``video_id, timestamp, person_id`` + the 51 ``<joint>_{x,y,score}``
    columns (x, y normalized; score = confidence or COCO visibility, kept as
    given). A person with ``person_id >= 0`` takes the row of the same
    keyframe and person_id; the others take, one-to-one and best first, the
    row of their keyframe whose box around its keypoints (score > 0) overlaps
    theirs most (IoU > 0). Persons left unmatched get centre poses (score 0).
    """
    needed = _FRAME + ["person_id", *KEYPOINT_COLUMNS]
    missing = [c for c in needed if c not in keypoints.columns]
    if missing:
        raise ValueError(f"poses_from_gt: keypoints table lacks columns {missing[:5]}")
    persons = PERSONS.validate(persons, source="poses_from_gt(persons)")
    gt = keypoints[needed].copy()
    gt["timestamp"] = gt["timestamp"].astype("int64")
    gt["video_id"] = gt["video_id"].astype(str)
    out = centre_poses(persons[list(BOX_COLUMNS)].to_numpy())
    gt_by_frame = {key: rows for key, rows in gt.groupby(_FRAME, sort=False)}
    for key, rows in persons.groupby(_FRAME, sort=False):
        if (key[0], int(key[1])) in gt_by_frame:
            _match_frame(persons_rows=rows, gt_rows=gt_by_frame[(key[0], int(key[1]))], out=out)
    return pose_rows(keys=persons, keypoints=out)


def _match_frame(*, persons_rows: pd.DataFrame, gt_rows: pd.DataFrame, out: np.ndarray) -> None:
    """Writes the matched GT keypoints of one keyframe into ``out`` (rows
    indexed like the persons table)."""
    kps = gt_rows[list(KEYPOINT_COLUMNS)].to_numpy(dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    gt_ids = gt_rows["person_id"].to_numpy()
    free_gt = np.ones(len(gt_rows), dtype=bool)
    unmatched = []
    for idx, pid in zip(persons_rows.index, persons_rows["person_id"]):
        hit = np.flatnonzero((gt_ids == pid) & free_gt) if pid >= 0 else []
        if len(hit):
            out[idx], free_gt[hit[0]] = kps[hit[0]], False
        else:
            unmatched.append(idx)
    if not unmatched or not free_gt.any():
        return
    person_boxes = persons_rows.loc[unmatched, list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    iou = np.nan_to_num(box_iou(person_boxes, _keypoint_boxes(kps)), nan=0.0)
    iou[:, ~free_gt] = 0
    while (iou > 0).any():
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        out[unmatched[i]] = kps[j]
        iou[i, :], iou[:, j] = 0, 0


def _keypoint_boxes(kps: np.ndarray) -> np.ndarray:
    """float[M, 4]: the box around each pose's keypoints with score > 0
    (an empty pose gives a NaN box, which overlaps nothing)."""
    seen = np.isfinite(kps).all(axis=2) & (np.nan_to_num(kps[:, :, 2]) > 0)
    xs, ys = np.where(seen, kps[:, :, 0], np.nan), np.where(seen, kps[:, :, 1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return np.stack([np.nanmin(xs, 1), np.nanmin(ys, 1), np.nanmax(xs, 1), np.nanmax(ys, 1)], 1)
