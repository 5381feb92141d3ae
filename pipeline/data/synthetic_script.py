"""Scripts of the synthetic mini-AVA videos: who does what, second by second.

Each person's timeline is a list of ``Beat`` (one per second) built from
episodes: idle, walk, sit, hold an object (walk to it, pick it up, maybe lift
it to the head, put it back where it lay), wave, kick, fall (fall, lie for two
seconds, get up). Two people of a video may meet: both walk to a meeting point
in three seconds, face each other, talk, shake hands and talk again.

Every split must show every action class, so a split carries a list of
required episodes that its people take while they fit; in videos longer than
``MEETING_BEATS + 3`` seconds, the first video of each split always has a
meeting with a hand shake. Short videos may therefore miss some classes.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, replace

import numpy as np

from avapipe.data.synthetic_motion import ARM_TARGETS, Beat, Person, SceneObject
from avapipe.data.synthetic_scene import OBJECT_SIZES

REQUIRED_EPISODES = ("fall", "wave", "kick", "phone", "drink", "sit", "walk")
_FREE_EPISODES = ("idle", "walk", "sit", "hold", "wave", "kick", "fall")
_FREE_WEIGHTS = (0.25, 0.2, 0.12, 0.15, 0.1, 0.08, 0.1)
_HEAD_OBJECT = {"phone": "phone", "drink": "cup"}
SHIRTS = ((40, 170, 70), (230, 200, 40), (140, 60, 180), (30, 170, 170), (230, 110, 170))
TROUSERS = ((40, 50, 120), (110, 70, 40), (55, 55, 60), (90, 100, 40))
SKINS = ((230, 190, 160), (190, 140, 100), (140, 95, 65))
WALK_SPEED = 0.6  # body heights per second
APPROACH_BEATS = 3
MEETING_BEATS = APPROACH_BEATS + 3 + 2 + 1  # approach, talk (at most 3), shake, talk
_ID_CHARS = np.array(list(string.ascii_letters + string.digits + "-_"))


@dataclass(frozen=True)
class VideoScript:
    """Everything needed to render and annotate one synthetic video."""

    video_id: str
    split: str
    width: int
    height: int
    floor_y: float
    persons: tuple[Person, ...]
    objects: tuple[SceneObject, ...]  # objects[i] belongs to persons[i]
    backdrop_seed: int

    @property
    def seconds(self) -> int:
        return len(self.persons[0].beats)


class _Timeline:
    """One person's beats under construction and where the person is now."""

    def __init__(self, index: int, x: float, height: float, rest_x: float, bounds: tuple[float, float]):
        self.index, self.x, self.height, self.rest_x, self.bounds = index, x, height, rest_x, bounds
        self.beats: list[Beat] = []
        self.object_kind: str | None = None

    def add(self, beats: list[Beat], object_kind: str | None = None) -> None:
        self.beats += beats
        self.x = beats[-1].x_to if beats else self.x
        self.object_kind = self.object_kind or object_kind


def _stay(x: float, n: int, **beat) -> list[Beat]:
    return [Beat(x_from=x, x_to=x, **beat) for _ in range(int(n))]


def _walk(x: float, target: float, n: int) -> list[Beat]:
    xs = np.linspace(x, target, n + 1)
    return [Beat("walk", float(a), float(b), int(np.sign(target - x))) for a, b in zip(xs[:-1], xs[1:])]


def _walk_to(tl: _Timeline, target: float) -> list[Beat]:
    distance = abs(target - tl.x)
    return _walk(tl.x, target, math.ceil(distance / (WALK_SPEED * tl.height))) if distance >= 1 else []


def _episode(kind: str, rng: np.random.Generator, tl: _Timeline) -> tuple[list[Beat], str | None] | None:
    """Beats of one episode from where ``tl`` stands (and the object kind it
    needs the person to own), or None when this person cannot do it."""
    x, side, any_facing = tl.x, int(rng.choice((-1, 1))), int(rng.choice((-1, 0, 1)))
    if kind == "idle":
        arm = str(rng.choice(("rest", "rest", "rest", "raise", "carry")))  # raise / carry: look-alike negatives
        return _stay(x, rng.integers(1, 4), facing=any_facing, arm=arm), None
    if kind == "walk":
        lo, hi = tl.bounds
        target = rng.uniform(lo, hi)
        if abs(target - x) < 0.4 * tl.height:
            target = lo if x - lo > hi - x else hi
        beats = _walk_to(tl, target)
        return (beats, None) if beats else None
    if kind == "sit":
        return _stay(x, rng.integers(3, 6), base="sit", facing=side), None
    if kind == "wave":
        return _stay(x, rng.integers(2, 4), facing=any_facing, arm="wave"), None
    if kind == "kick":
        return _stay(x, rng.integers(2, 4), facing=side, leg="kick"), None
    if kind == "fall":
        return _stay(x, 1, facing=side) + _stay(x, 2, base="lie", facing=side) + _stay(x, 3, facing=side), None
    return _hold(kind, rng, tl, side)


def _hold(kind: str, rng: np.random.Generator, tl: _Timeline, side: int):
    wanted = _HEAD_OBJECT.get(kind)
    if wanted and tl.object_kind not in (None, wanted):
        return None
    object_kind = wanted or tl.object_kind or str(rng.choice(tuple(OBJECT_SIZES)))
    at_head = wanted is not None or (object_kind != "ball" and rng.random() < 0.5)
    hold = dict(base="sit" if rng.random() < 0.35 else "stand", facing=side, held=tl.index)
    middle = _stay(tl.rest_x, rng.integers(2, 4), arm="head", **hold) if at_head else []
    beats = _stay(tl.rest_x, 1, arm="carry", **hold) + middle + _stay(tl.rest_x, 1, arm="carry", **hold)
    return _walk_to(tl, tl.rest_x) + beats, object_kind


def _fill(tl: _Timeline, rng: np.random.Generator, end: int, required: list[str]) -> None:
    """Add episodes until ``tl`` has ``end`` beats; required ones first."""
    while len(tl.beats) < end:
        room = end - len(tl.beats)
        for i, kind in enumerate(required):
            picked = _episode(kind, rng, tl)
            if picked and len(picked[0]) <= room:
                required.pop(i)
                break
        else:
            picked = _episode(str(rng.choice(_FREE_EPISODES, p=_FREE_WEIGHTS)), rng, tl)
            if not picked or len(picked[0]) > room:
                picked = _stay(tl.x, 1, facing=int(rng.choice((-1, 0, 1)))), None
        tl.add(*picked)


def _meet(rng: np.random.Generator, a: _Timeline, b: _Timeline) -> None:
    """Both walk to a meeting point, then talk, shake hands and talk."""
    gap = ARM_TARGETS["reach"][0] * (a.height + b.height)  # puts the two reaching hands together
    lo, hi = a.bounds
    middle = rng.uniform(lo + gap / 2, hi - gap / 2)
    talk = int(rng.integers(2, 4))
    left, right = (a, b) if a.x <= b.x else (b, a)
    for tl, spot, facing in ((left, middle - gap / 2, 1), (right, middle + gap / 2, -1)):
        there = spot == tl.x
        approach = _stay(tl.x, APPROACH_BEATS, facing=facing) if there else _walk(tl.x, spot, APPROACH_BEATS)
        greet = _stay(spot, talk, facing=facing) + _stay(spot, 2, facing=facing, arm="reach")
        tl.add(approach + greet + _stay(spot, 1, facing=facing))


def _video_id(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_ID_CHARS, size=11))


def plan_video(rng: np.random.Generator, *, split: str, seconds: int, width: int, height: int,
               required: list[str], meet: bool) -> VideoScript:
    """Script one video; takes what fits from ``required`` (in place).
    ``meet`` forces two people who meet and shake hands."""
    count = max(int(rng.choice((1, 2, 3), p=(0.3, 0.45, 0.25))), 2 if meet else 1)
    body = height * rng.uniform(0.5, 0.6)
    floor_y = height * rng.uniform(0.9, 0.95)
    heights = body * rng.uniform(0.96, 1.04, size=count)
    margin = 0.62 * heights.max()  # keeps a figure lying on the floor inside the frame
    bounds = (margin, width - margin)
    if bounds[1] - bounds[0] < 2 * ARM_TARGETS["reach"][0] * heights.max():
        raise ValueError(f"a {width}x{height} frame is too narrow for the people in it; "
                         f"use width >= {1.6 * height:.0f}")
    timelines = [_Timeline(i, rng.uniform(*bounds), h, rng.uniform(*bounds), bounds) for i, h in enumerate(heights)]
    for tl in timelines:  # the first two seconds precede the first keyframe
        tl.add(_stay(tl.x, 2, facing=int(rng.choice((-1, 0, 1)))))
    if count >= 2 and seconds > MEETING_BEATS + 3 and (meet or rng.random() < 0.6):
        start = int(rng.integers(2, seconds - MEETING_BEATS))
        for tl in timelines[:2]:
            _fill(tl, rng, start, required)
        _meet(rng, timelines[0], timelines[1])
    for tl in timelines:
        _fill(tl, rng, seconds - 1, required)
        last = tl.beats[-1]  # the last second has no keyframe: keep still
        tl.add([replace(last, base="stand" if last.base == "walk" else last.base, x_from=tl.x)])
    return _assemble(rng, timelines, video_id=_video_id(rng), split=split, size=(width, height),
                     floor_y=floor_y, body=body)


def _assemble(rng, timelines, *, video_id, split, size, floor_y, body) -> VideoScript:
    shirts = rng.permutation(len(SHIRTS))
    persons = tuple(
        Person(beats=tuple(tl.beats), height=float(tl.height), ground_y=float(floor_y),
               colors=(SHIRTS[shirts[i]], TROUSERS[rng.integers(len(TROUSERS))], SKINS[rng.integers(len(SKINS))]))
        for i, tl in enumerate(timelines)
    )
    objects = tuple(
        SceneObject(kind=tl.object_kind or str(rng.choice(tuple(OBJECT_SIZES))), rest_x=float(tl.rest_x),
                    ground_y=float(floor_y), height=float(body))
        for tl in timelines
    )
    return VideoScript(video_id=video_id, split=split, width=size[0], height=size[1], floor_y=float(floor_y),
                       persons=persons, objects=objects, backdrop_seed=int(rng.integers(2**31)))


def plan_dataset(*, seed: int, num_train_videos: int, num_val_videos: int, seconds: int, width: int,
                 height: int) -> tuple[VideoScript, ...]:
    """Scripts of all videos, train first; the same arguments give the same scripts."""
    if num_train_videos < 0 or num_val_videos < 0 or num_train_videos + num_val_videos == 0:
        raise ValueError(f"need at least one video, got {num_train_videos} train and {num_val_videos} val")
    if seconds < 2 * 2 + 1:
        raise ValueError(f"seconds={seconds}: videos need at least 5 s (2 s margins around keyframes)")
    rng = np.random.default_rng(seed)
    videos: list[VideoScript] = []
    for split, count in (("train", num_train_videos), ("val", num_val_videos)):
        required = list(REQUIRED_EPISODES)
        for i in range(count):
            video = plan_video(rng, split=split, seconds=seconds, width=width, height=height,
                               required=required, meet=i == 0)
            while video.video_id in {v.video_id for v in videos}:
                video = replace(video, video_id=_video_id(rng))
            videos.append(video)
    return tuple(videos)
