"""A deterministic synthetic mini-AVA: real encoded videos of articulated
figures and AVA-format annotations, all computed from one seed.

Time follows AVA's cut clips: a video file starts at movie second 900, so the
keyframe with timestamp ``t`` is shown at ``t - 900`` s into the file. A video
of ``S`` seconds has keyframes 902 .. 900 + S - 2 at 1 Hz; each person does one
scripted ``Beat`` per second (see ``synthetic_scene``), and keyframes fall in
the middle of beats, where no posture is cross-fading.

Classes (ids from 1); every label is computed from the scene state at the
keyframe, never drawn at random:

pose (exactly one per person and keyframe)
  1 stand      upright and not moving across the floor.
  2 sit        hips lowered, thighs horizontal.
  3 walk       moving across the floor with swinging legs (needs motion).
  4 lie/sleep  body horizontal on the floor (after a fast fall).
person-object (the objects decide these)
  5 carry/hold (an object)  a ball, cup or phone is in the hand. Figures also
               hold the empty-handed carry pose, so the hand alone is not enough.
  6 watch (e.g., TV)  sitting while the video's television is on. The
               television hangs on the wall above head height, outside every
               person's box, and is switched on and off every few seconds: a
               sitting person looks the same whether it is on or off.
person-person (the other person decides these)
  7 talk to (a person)  upright, gesturing (the forearm goes up and down), facing
               a person who faces back with hips within 0.9 body heights.
               People also gesture alone.
  8 listen to (a person)  upright, not gesturing, facing such a person who is
               gesturing: the listener looks the same as someone facing a silent
               partner (conversations pause).
  9 hand shake  both reach out with the facing-side hand and the two hands
               meet; people also reach out alone. Talk and listen exclude it.
memory (evidence lies further back than a clip reaches)
 10 recover after a fall  from 3.5 to 7.5 s after getting up from the floor
               (keyframes 4..8 s after the last lying keyframe); a clip around
               the keyframe no longer shows the fall, only memory does. Only
               people alone in their video fall, so whoever lay in the
               memory window was the person themself.
part-motion (only a small part of the body moves)
 11 hand wave  the raised forearm swings at 2.5 Hz; at keyframes it is at the
               centre of its swing, so one frame shows the same raised arm as
               the unlabelled static "raise" pose.
 12 kick       one ankle swings forward and back at 1.5 Hz.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from avapipe.data import ava
from avapipe.data.synthetic_motion import (
    Person, SceneObject, active_wrist, person_figure, render_frame, scene_shapes,
)
from avapipe.data.synthetic_scene import COCO_KEYPOINTS, CameraNoise, background, shapes_box
from avapipe.data.synthetic_script import VideoScript, plan_dataset
from avapipe.data.video import write_video

MOVIE_START_SEC = 900
KEYFRAME_MARGIN_SEC = 2
TALK_DISTANCE = 0.9  # body heights between hip centres
SHAKE_DISTANCE = 0.1  # body heights between the two hands
RECOVER_BEATS = range(4, 9)  # beats after the last lying beat that are labelled


@dataclass(frozen=True)
class ActionClass:
    id: int
    name: str
    group: str


ACTIONS = (
    ActionClass(1, "stand", "pose"),
    ActionClass(2, "sit", "pose"),
    ActionClass(3, "walk", "pose"),
    ActionClass(4, "lie/sleep", "pose"),
    ActionClass(5, "carry/hold (an object)", "person-object"),
    ActionClass(6, "watch (e.g., TV)", "person-object"),
    ActionClass(7, "talk to (a person)", "person-person"),
    ActionClass(8, "listen to (a person)", "person-person"),
    ActionClass(9, "hand shake", "person-person"),
    ActionClass(10, "recover after a fall", "memory"),
    ActionClass(11, "hand wave", "part-motion"),
    ActionClass(12, "kick", "part-motion"),
)
ACTION_IDS = {a.name: a.id for a in ACTIONS}
_POSE_OF_BASE = {"stand": "stand", "sit": "sit", "walk": "walk", "lie": "lie/sleep"}


def keyframe_seconds(seconds: int) -> range:
    """Seconds into the file that have keyframes (2 s margins for clips)."""
    return range(KEYFRAME_MARGIN_SEC, seconds - KEYFRAME_MARGIN_SEC + 1)


def person_actions(persons: tuple[Person, ...], objects: tuple[SceneObject, ...], second: int) -> list[list[str]]:
    """Action names of each person at the keyframe ``second`` (file time)."""
    figures = [person_figure(p, second) for p in persons]
    actions = []
    for i, person in enumerate(persons):
        beat = person.beats[second]
        names = [_POSE_OF_BASE[beat.base]]
        if beat.held is not None:
            names.append("carry/hold (an object)")
        if beat.base == "sit" and any(tv.is_on(second) for tv in objects):
            names.append("watch (e.g., TV)")
        others = [j for j in range(len(persons)) if j != i]
        if any(_shaking_hands(persons, figures, second, i, j) for j in others):
            names.append("hand shake")
        else:
            partners = [j for j in others if _conversing(persons, figures, second, i, j)]
            if partners and beat.arm == "gesture":
                names.append("talk to (a person)")
            elif any(persons[j].beats[second].arm == "gesture" for j in partners):
                names.append("listen to (a person)")
        if beat.base != "lie" and _got_up_recently(person, second):
            names.append("recover after a fall")
        names += ["hand wave"] * (beat.arm == "wave") + ["kick"] * (beat.leg == "kick")
        actions.append(names)
    return actions


def _hip_x(figure) -> float:
    return float(figure.keypoints[11:13, 0].mean())


def _facing_each_other(persons, figures, second, i, j) -> bool:
    toward = np.sign(_hip_x(figures[j]) - _hip_x(figures[i]))
    return toward != 0 and persons[i].beats[second].facing == toward and persons[j].beats[second].facing == -toward


def _conversing(persons, figures, second, i, j) -> bool:
    upright = all(persons[k].beats[second].base in ("stand", "sit") for k in (i, j))
    scale = (persons[i].height + persons[j].height) / 2
    near = abs(_hip_x(figures[i]) - _hip_x(figures[j])) <= TALK_DISTANCE * scale
    return upright and near and _facing_each_other(persons, figures, second, i, j)


def _shaking_hands(persons, figures, second, i, j) -> bool:
    beats = [persons[k].beats[second] for k in (i, j)]
    if any(b.arm != "reach" for b in beats) or not _facing_each_other(persons, figures, second, i, j):
        return False
    hands = [figures[k].keypoints[active_wrist(b.facing)] for k, b in zip((i, j), beats)]
    scale = (persons[i].height + persons[j].height) / 2
    return float(np.hypot(*(hands[0] - hands[1]))) <= SHAKE_DISTANCE * scale


def _got_up_recently(person: Person, second: int) -> bool:
    for back in RECOVER_BEATS:
        k = second - back
        if k >= 0 and person.beats[k].base == "lie":
            return all(b.base != "lie" for b in person.beats[k + 1 : second + 1])
    return False


@dataclass(frozen=True)
class KeyframeAnnotations:
    """Rows of the annotation files for a set of videos (see ``generate_dataset``)."""

    groundtruth: pd.DataFrame  # ava.GT_COLUMNS + split
    keypoints: pd.DataFrame  # video_id, timestamp, person_id, {joint}_x / _y / _v
    objects: pd.DataFrame  # video_id, timestamp, object_id, x1, y1, x2, y2, label


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate_dataset`` wrote."""

    out_dir: Path
    train_videos: tuple[str, ...]
    val_videos: tuple[str, ...]
    num_keyframes: int
    num_person_boxes: int
    action_counts: dict[str, dict[str, int]]  # split -> action name -> GT rows
    excluded: tuple[tuple[str, int], ...]
    seconds_taken: float


def normalized_box(box_px: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """Pixel box -> normalized ``[4]`` xyxy in [0, 1], rounded outwards to 3
    decimals so that the written box still encloses the figure."""
    box = np.clip(box_px / [width, height, width, height], 0.0, 1.0)
    return np.concatenate([np.floor(box[:2] * 1000), np.ceil(box[2:] * 1000)]) / 1000


def annotate_video(video: VideoScript) -> KeyframeAnnotations:
    """GT rows, keypoints and object boxes of every keyframe of ``video``."""
    gt, keypoints, objects = [], [], []
    size = np.array([video.width, video.height], dtype=float)
    for second in keyframe_seconds(video.seconds):
        key = {"video_id": video.video_id, "timestamp": MOVIE_START_SEC + second}
        figures, object_shapes = scene_shapes(video.persons, video.objects, second)
        actions = person_actions(video.persons, video.objects, second)
        for person_id, (figure, names) in enumerate(zip(figures, actions)):
            box = normalized_box(shapes_box(figure.shapes), width=video.width, height=video.height)
            gt += [{**key, **dict(zip(ava.BOX_COLUMNS, box)), "action_id": ACTION_IDS[name],
                    "person_id": person_id, "split": video.split} for name in names]
            keypoints.append({**key, "person_id": person_id, **_keypoint_fields(figure, size)})
        for object_id, (shape, obj) in enumerate(zip(object_shapes, video.objects)):
            box = normalized_box(shapes_box([shape]), width=video.width, height=video.height)
            objects.append({**key, "object_id": object_id, **dict(zip(ava.BOX_COLUMNS, box)), "label": obj.kind})
    return KeyframeAnnotations(pd.DataFrame(gt), pd.DataFrame(keypoints), pd.DataFrame(objects))


def _keypoint_fields(figure, size: np.ndarray) -> dict[str, float]:
    xy = figure.keypoints / size
    inside = ((xy >= 0) & (xy <= 1)).all(axis=1)
    vis = np.where(inside, figure.visibility, 0)
    xy = np.clip(xy, 0.0, 1.0)
    fields = {}
    for name, (x, y), v in zip(COCO_KEYPOINTS, xy, vis):
        fields.update({f"{name}_x": round(float(x), 4), f"{name}_y": round(float(y), 4), f"{name}_v": int(v)})
    return fields


def render_video(video: VideoScript, *, fps: int):
    """Frames ``np.ndarray[H, W, 3] uint8`` of ``video`` at ``fps``, in order."""
    rng = np.random.default_rng(video.backdrop_seed)
    backdrop = background(height=video.height, width=video.width, floor_y=video.floor_y, rng=rng)
    noise = CameraNoise(backdrop.shape, rng=rng)
    for i in range(video.seconds * fps):
        yield render_frame(backdrop, video.persons, video.objects, i / fps, noise=noise)


def generate_dataset(*, out_dir: Path, seed: int, num_train_videos: int = 8, num_val_videos: int = 4,
                     seconds: int = 24, fps: int = 10, width: int = 170, height: int = 128,
                     num_excluded: int = 2, crf: int = 23, progress: bool = False) -> SyntheticSummary:
    """Write a synthetic mini-AVA under ``out_dir``:

    ``videos/{video_id}.mp4`` (H.264, file second 0 = movie second 900) and in
    ``annotations/``: ``train.csv`` / ``val.csv`` (AVA GT), ``label_map.pbtxt``,
    ``groups.csv`` (action_id, group, name), ``excluded_timestamps.csv``
    (``num_excluded`` val keyframes whose GT rows are left out, as in AVA),
    ``keypoints.csv`` (one row per person and keyframe: 17 COCO joints as
    normalized x, y and visibility 0/1/2) and ``objects.csv`` (every object
    at every keyframe, normalized box and label). Same arguments, same files.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    videos = plan_dataset(seed=seed, num_train_videos=num_train_videos, num_val_videos=num_val_videos,
                          seconds=seconds, width=width, height=height)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    for video in tqdm(videos, desc="synthetic videos", unit="video", disable=not progress):
        # the fastest x264 preset: on these small noisy frames it measured the same
        # PSNR as "veryfast" at a quarter of the encoding time
        write_video(out_dir / "videos" / f"{video.video_id}.mp4", render_video(video, fps=fps), fps=fps, crf=crf,
                    preset="ultrafast")
    parts = [annotate_video(v) for v in videos]
    gt = pd.concat([p.groundtruth for p in parts], ignore_index=True)
    excluded = _pick_excluded(videos, num_excluded, seed)
    gt = gt[~gt.set_index(["video_id", "timestamp"]).index.isin(excluded)]
    _write_annotations(out_dir / "annotations", gt, parts, excluded)
    return SyntheticSummary(
        out_dir=out_dir,
        train_videos=tuple(v.video_id for v in videos if v.split == "train"),
        val_videos=tuple(v.video_id for v in videos if v.split == "val"),
        num_keyframes=sum(len(keyframe_seconds(v.seconds)) for v in videos),
        num_person_boxes=sum(len(p.keypoints) for p in parts),
        action_counts={split: {a.name: int((rows["action_id"] == a.id).sum()) for a in ACTIONS}
                       for split, rows in gt.groupby("split")},
        excluded=tuple(excluded),
        seconds_taken=time.perf_counter() - started,
    )


def _pick_excluded(videos, count: int, seed: int) -> list[tuple[str, int]]:
    pool = [v for v in videos if v.split == "val"] or list(videos)
    keys = [(v.video_id, MOVIE_START_SEC + s) for v in pool for s in keyframe_seconds(v.seconds)]
    rng = np.random.default_rng([seed, 1])
    picked = rng.choice(len(keys), size=min(count, len(keys)), replace=False) if keys else []
    return sorted(keys[i] for i in picked)


def _write_annotations(folder: Path, gt: pd.DataFrame, parts, excluded) -> None:
    for split in ("train", "val"):
        ava.write_groundtruth_csv(folder / f"{split}.csv", rows=gt[gt["split"] == split])
    ava.write_label_map(folder / "label_map.pbtxt", labels={a.id: a.name for a in ACTIONS})
    ava.write_excluded_timestamps(folder / "excluded_timestamps.csv",
                                  keyframes=pd.DataFrame(excluded, columns=list(ava.KEYFRAME_COLUMNS)))
    with open(folder / "groups.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["action_id", "group", "name"])
        writer.writerows((a.id, a.group, a.name) for a in ACTIONS)
    pd.concat([p.keypoints for p in parts]).to_csv(folder / "keypoints.csv", index=False)
    pd.concat([p.objects for p in parts]).to_csv(folder / "objects.csv", index=False, float_format="%.3f")
