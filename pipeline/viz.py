"""Pictures of keyframes: persons with their top predicted actions, skeletons,
part boxes, objects and the ground truth, as PNGs or an annotated MP4.

Tables are those of ``avapipe.schemas`` (PERSONS, OBJECTS, POSES, PARTS,
KEYFRAMES), plus AVA result rows (``video_id, timestamp, x1, y1, x2, y2,
action_id, score``) as predictions and AVA ground-truth rows (``..., action_id,
person_id``); one row per (box, action) in both. Every optional table may be
None or empty: it then draws nothing.

What is drawn: a solid box per person (one color each) with the top-k actions
of the predicted box that matches it; predicted boxes that match no person in
gray; skeleton bones and joints above a score; the valid part boxes (thin);
object boxes with label and score; ground-truth boxes dashed white with
``GT <action>`` captions at their bottom.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from avapipe.data.keyframes import iter_keyframe_images
from avapipe.data.video import decode_frames, probe_video, write_video
from avapipe.perception.boxes import box_iou
from avapipe.schemas import BOX_COLUMNS, KEYPOINT_COLUMNS, PART_NAMES
from avapipe.viz_draw import (
    GROUNDTRUTH_COLOR,
    UNMATCHED_COLOR,
    Style,
    draw_box,
    draw_captions,
    draw_objects,
    draw_part_boxes,
    draw_poses,
    person_color,
    upscale,
)

_BOX = list(BOX_COLUMNS)
_KEY = ["video_id", "timestamp"]
_REQUIRED = {
    "persons": _KEY + ["box_id"] + _BOX,
    "objects": _KEY + _BOX + ["label", "score"],
    "poses": _KEY + ["box_id"] + list(KEYPOINT_COLUMNS),
    "parts": _KEY + ["box_id"] + [f"{p}_{c}" for p in PART_NAMES for c in (*BOX_COLUMNS, "valid")],
    "predictions": _KEY + _BOX + ["action_id", "score"],
    "groundtruth": _KEY + _BOX + ["action_id"],
}


def action_captions(
    *, predictions: pd.DataFrame, label_map: Mapping[int, str], top_k: int = 3, min_score: float = 0.0
) -> list[str]:
    """``"<action name> <score:.2f>"`` for the ``top_k`` highest-scoring rows of one
    predicted box with ``score >= min_score``; ties go to the lower action id."""
    kept = predictions[predictions["score"] >= min_score]
    kept = kept.sort_values(["score", "action_id"], ascending=[False, True], kind="stable")
    return [f"{_action_name(label_map, r)} {float(r.score):.2f}" for r in kept.head(top_k).itertuples()]


def match_predictions(
    *, person_boxes: np.ndarray, predicted_boxes: np.ndarray, min_iou: float = 0.5
) -> np.ndarray:
    """For each of ``person_boxes: [N, 4]`` the index into ``predicted_boxes: [M, 4]``
    (normalized xyxy) of its predicted box, or -1: ``int[N]``.

    Pairs are taken greedily by IoU, each box at most once; an identical box
    matches even when it has no area.
    """
    person_boxes = np.asarray(person_boxes, dtype=np.float64).reshape(-1, 4)
    predicted_boxes = np.asarray(predicted_boxes, dtype=np.float64).reshape(-1, 4)
    iou = box_iou(person_boxes, predicted_boxes)
    iou[(person_boxes[:, None, :] == predicted_boxes[None, :, :]).all(axis=2)] = 1.0
    match = np.full(len(person_boxes), -1, dtype=np.int64)
    taken = np.zeros(len(predicted_boxes), dtype=bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        p, q = np.unravel_index(flat, iou.shape)
        if iou[p, q] < min_iou:
            break
        if match[p] < 0 and not taken[q]:
            match[p], taken[q] = q, True
    return match


def keyframe_for_frames(
    *, frame_times: np.ndarray, keyframe_times: np.ndarray, max_gap_sec: float = 0.5
) -> np.ndarray:
    """For each of ``frame_times: [F]`` (seconds) the index of the nearest of
    ``keyframe_times: [K]`` at most ``max_gap_sec`` away, or -1: ``int[F]``.
    Of two equally near keyframes the earlier wins."""
    frame_times = np.asarray(frame_times, dtype=np.float64)
    keyframe_times = np.asarray(keyframe_times, dtype=np.float64)
    if len(keyframe_times) == 0:
        return np.full(len(frame_times), -1, dtype=np.int64)
    # a search in the sorted times, not a frames x keyframes table: a movie has ~10^5 frames
    order = np.argsort(keyframe_times, kind="stable")
    times = keyframe_times[order]
    after = np.clip(np.searchsorted(times, frame_times), 0, len(times) - 1)
    before = np.clip(after - 1, 0, len(times) - 1)
    gap_after, gap_before = np.abs(times[after] - frame_times), np.abs(frame_times - times[before])
    nearest = np.where(gap_after < gap_before, after, before)
    gap = np.minimum(gap_after, gap_before)
    return np.where(gap <= max_gap_sec + 1e-9, order[nearest], -1)


def draw_keyframe(
    *, image: np.ndarray, persons: pd.DataFrame | None, objects: pd.DataFrame | None = None,
    poses: pd.DataFrame | None = None, parts: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None, groundtruth: pd.DataFrame | None = None,
    label_map: Mapping[int, str], top_k: int = 3, min_score: float = 0.0,
    min_keypoint_score: float = 0.3, scale: int = 1,
) -> np.ndarray:
    """The keyframe ``image: [H, W, 3] uint8 RGB`` upscaled by ``scale`` with the
    rows of that one keyframe drawn on it: a new ``[H*scale, W*scale, 3]`` array.

    Captions show the ``top_k`` actions scoring ``>= min_score``; joints show
    when their score is ``> min_keypoint_score``. Raises ValueError when a
    table lacks columns or holds rows of more than one keyframe.
    """
    tables = _checked_tables(dict(persons=persons, objects=objects, poses=poses, parts=parts,
                                  predictions=predictions, groundtruth=groundtruth))
    canvas = upscale(image, scale=scale)
    style = Style.for_canvas(height=canvas.shape[0], width=canvas.shape[1], scale=scale)
    colors = _person_colors(tables["persons"])
    if tables["parts"] is not None:
        draw_part_boxes(canvas, parts=tables["parts"], colors=colors)
    if tables["poses"] is not None:
        draw_poses(canvas, poses=tables["poses"], colors=colors, min_score=min_keypoint_score,
                   line=style.line)
    if tables["objects"] is not None:
        draw_objects(canvas, objects=tables["objects"], style=style)
    _draw_groundtruth(canvas, tables["groundtruth"], label_map, style)
    caption = partial(action_captions, label_map=label_map, top_k=top_k, min_score=min_score)
    _draw_persons(canvas, tables["persons"], tables["predictions"], colors, style, caption)
    return canvas


def render_keyframes(
    *, keyframes: pd.DataFrame, out_dir: Path, label_map: Mapping[int, str], scale: int = 1,
    persons: pd.DataFrame | None = None, objects: pd.DataFrame | None = None,
    poses: pd.DataFrame | None = None, parts: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None, groundtruth: pd.DataFrame | None = None,
    top_k: int = 3, min_score: float = 0.0, min_keypoint_score: float = 0.3,
) -> list[Path]:
    """One PNG per KEYFRAMES row, ``out_dir/{video_id}_{timestamp:04d}.png``, of
    ``draw_keyframe`` on the frame at its ``time_sec``; returns the paths in row order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_key = _group_by_keyframe(dict(persons=persons, objects=objects, poses=poses, parts=parts,
                                     predictions=predictions, groundtruth=groundtruth))
    paths = []
    for (video_id, timestamp), image in iter_keyframe_images(keyframes):
        canvas = draw_keyframe(image=image, label_map=label_map, top_k=top_k, min_score=min_score,
                               min_keypoint_score=min_keypoint_score, scale=scale,
                               **_tables_at(by_key, (video_id, timestamp)))
        path = out_dir / f"{video_id}_{timestamp:04d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the PNG; is the folder writable?")
        paths.append(path)
    return paths


def render_video(
    *, video_path: Path, keyframes: pd.DataFrame, out_path: Path, label_map: Mapping[int, str],
    scale: int = 1, fps: int | None = None, persons: pd.DataFrame | None = None,
    objects: pd.DataFrame | None = None, poses: pd.DataFrame | None = None,
    parts: pd.DataFrame | None = None, predictions: pd.DataFrame | None = None,
    groundtruth: pd.DataFrame | None = None, top_k: int = 3, min_score: float = 0.0,
    min_keypoint_score: float = 0.3, max_gap_sec: float = 0.5, chunk_frames: int = 64,
) -> int:
    """Writes every frame of ``video_path``, upscaled by ``scale``, to the H.264
    ``out_path``, each drawn with the annotations of the nearest of ``keyframes``
    (KEYFRAMES rows of this one video, placed by ``time_sec``) at most
    ``max_gap_sec`` away and plain otherwise; returns the number of frames.

    ``fps`` defaults to the source's, rounded to whole frames per second.
    Frames are decoded ``chunk_frames`` at a time, so memory does not grow
    with the video. An odd output height or width loses its last pixel row
    or column (H.264 yuv420p needs even sizes).
    """
    if chunk_frames < 1:
        raise ValueError(f"render_video: chunk_frames must be >= 1, got {chunk_frames}")
    video_ids = keyframes["video_id"].unique()
    if len(video_ids) > 1:
        raise ValueError(f"render_video: keyframes hold videos {list(video_ids)}; pass the rows of one video")
    info = probe_video(video_path)
    frame_times = np.arange(info.num_frames) / info.fps
    nearest = keyframe_for_frames(frame_times=frame_times, keyframe_times=keyframes["time_sec"].to_numpy(),
                                  max_gap_sec=max_gap_sec)
    by_key = _group_by_keyframe(dict(persons=persons, objects=objects, poses=poses, parts=parts,
                                     predictions=predictions, groundtruth=groundtruth))
    keys = list(zip(keyframes["video_id"].astype(str), keyframes["timestamp"].astype(int)))
    options = dict(label_map=label_map, top_k=top_k, min_score=min_score,
                   min_keypoint_score=min_keypoint_score, scale=scale)

    def annotated() -> Iterator[np.ndarray]:
        for index, frame in enumerate(_stream_frames(video_path, info.num_frames, chunk_frames)):
            key = keys[nearest[index]] if nearest[index] >= 0 else None
            canvas = draw_keyframe(image=frame, **_tables_at(by_key, key), **options)
            yield canvas[: canvas.shape[0] // 2 * 2, : canvas.shape[1] // 2 * 2]

    return write_video(out_path, annotated(), fps=fps or max(1, round(info.fps)))


def _stream_frames(path: Path, num_frames: int, chunk_frames: int) -> Iterator[np.ndarray]:
    for first in range(0, num_frames, chunk_frames):
        last = min(first + chunk_frames, num_frames) - 1
        decoded = decode_frames(path, first=first, last=last)
        for index in range(first, last + 1):
            yield decoded.frames[index]


def _checked_tables(tables: dict[str, pd.DataFrame | None]) -> dict[str, pd.DataFrame | None]:
    keys = set()
    for name, table in tables.items():
        if table is None or len(table) == 0:
            tables[name] = None
            continue
        missing = [c for c in _REQUIRED[name] if c not in table.columns]
        if missing:
            raise ValueError(f"draw_keyframe: {name} table lacks columns {missing}")
        keys |= set(zip(table["video_id"].astype(str), table["timestamp"].astype(int)))
    if len(keys) > 1:
        raise ValueError(f"draw_keyframe: the tables hold rows of keyframes {sorted(keys)}; "
                         "pass the rows of one keyframe (video_id, timestamp)")
    return tables


def _group_by_keyframe(tables: dict[str, pd.DataFrame | None]) -> dict[str, dict[tuple, pd.DataFrame]]:
    grouped = {}
    for name, table in tables.items():
        if table is None or len(table) == 0:
            grouped[name] = {}
            continue
        missing = [c for c in _KEY if c not in table.columns]
        if missing:
            raise ValueError(f"{name} table lacks columns {missing}; every table is keyed by {_KEY}")
        by = [table["video_id"].astype(str), table["timestamp"].astype(int)]
        grouped[name] = {(str(v), int(t)): rows for (v, t), rows in table.groupby(by, sort=False)}
    return grouped


def _tables_at(by_key: dict[str, dict], key: tuple[str, int]) -> dict[str, pd.DataFrame | None]:
    return {name: groups.get(key) for name, groups in by_key.items()}


def _action_name(label_map: Mapping[int, str], row) -> str:
    action_id = int(row.action_id)
    if action_id not in label_map:
        where = f"video {getattr(row, 'video_id', '?')}, timestamp {getattr(row, 'timestamp', '?')}"
        raise ValueError(f"action id {action_id} ({where}) is not in "
                         "the label map; pass the label map the predictions and ground truth use")
    return label_map[action_id]


def _person_colors(persons: pd.DataFrame | None) -> dict[int, tuple[int, int, int]]:
    if persons is None:
        return {}
    # a known identity keeps its color from keyframe to keyframe
    ids = persons["person_id"] if "person_id" in persons.columns else persons["box_id"]
    return {int(b): person_color(int(p) if p >= 0 else int(b)) for b, p in zip(persons["box_id"], ids)}


def _draw_groundtruth(canvas, groundtruth, label_map, style) -> None:
    if groundtruth is None:
        return
    for box, rows in groundtruth.groupby(_BOX, sort=False):
        names = [f"GT {_action_name(label_map, r)}" for r in rows.sort_values("action_id").itertuples()]
        draw_box(canvas, box=box, color=GROUNDTRUTH_COLOR, line=style.line, dashed=True)
        draw_captions(canvas, lines=names, box=box, color=GROUNDTRUTH_COLOR, style=style, at_bottom=True)


def _draw_persons(canvas, persons, predictions, colors, style, caption) -> None:
    """Person boxes, each captioned with its matched predicted box's actions;
    then the predicted boxes no person matched, in gray."""
    boxes = np.zeros((0, 4)) if persons is None else persons[_BOX].to_numpy(dtype=np.float64)
    groups = [] if predictions is None else list(predictions.groupby(_BOX, sort=False))
    predicted_boxes = np.array([box for box, _ in groups]).reshape(-1, 4)
    match = match_predictions(person_boxes=boxes, predicted_boxes=predicted_boxes)
    box_ids = [] if persons is None else persons["box_id"]
    for box_id, box, pred in zip(box_ids, boxes, match):
        color = colors[int(box_id)]
        draw_box(canvas, box=box, color=color, line=style.line)
        if pred >= 0:
            lines = caption(predictions=groups[pred][1])
            draw_captions(canvas, lines=lines, box=box, color=color, style=style)
    for index in sorted(set(range(len(groups))) - set(match.tolist())):
        box, rows = groups[index]
        lines = caption(predictions=rows)
        if lines:  # boxes whose every action falls below min_score stay hidden
            draw_box(canvas, box=box, color=UNMATCHED_COLOR, line=style.line)
            draw_captions(canvas, lines=lines, box=box, color=UNMATCHED_COLOR, style=style)
