"""Scripts of the synthetic mini-AVA videos: who does what, second by second.

Each person's timeline is a list of ``Beat`` (one per second) built from
episodes: idle, walk, sit, hold an object (walk to it, pick it up, hold it, put
it back where it lay), wave, kick, gesture (talking to nobody), reach out
(to nobody), watch (sit facing the video's television, if it has one) and
fall (fall, lie for two seconds, get up; only people alone in their
video fall). Two people of a video may meet: both walk to a meeting point in
three seconds, face each other, one talks while the other listens, then the
other way round, both pause, shake hands and stand facing each other.

Some videos have a television on the wall, switched on and off every 2 to 5
seconds. Every split must show every action class, so a split carries a list
of required episodes that its people take while they fit, and its videos take
the ``VIDEO_ROLES`` in turn: in videos longer than ``MEETING_BEATS + 3``
seconds a "meet" video has a meeting with a hand shake, a "tv" video a
television, an "alone" video one person (who may fall). Short videos may
therefore miss some classes.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, replace

import numpy as np

from avapipe.data.synthetic_motion import ARM_TARGETS, Beat, Person, SceneObject
from avapipe.data.synthetic_scene import HELD_KINDS, OBJECT_SIZES

REQUIRED_EPISODES = ("fall", "wave", "kick", "hold", "watch", "sit", "walk")
_FREE_EPISODES = ("idle", "walk", "sit", "hold", "wave", "kick", "fall", "watch", "gesture", "reach")
_FREE_WEIGHTS = np.array((0.16, 0.16, 0.08, 0.12, 0.08, 0.08, 0.0, 0.12, 0.05, 0.05))
_ALONE_WEIGHTS = np.array((0.1, 0.12, 0.06, 0.1, 0.06, 0.06, 0.35, 0.1, 0.03, 0.02))  # people alone fall often
_TV_BONUS = np.array((0, 0, 0, 0, 0, 0, 0, 0.25, 0, 0))  # with a television, people sit and watch often
SHIRTS = ((40, 170, 70), (230, 200, 40), (140, 60, 180), (30, 170, 170), (230, 110, 170))
TROUSERS = ((40, 50, 120), (110, 70, 40), (55, 55, 60), (90, 100, 40))
SKINS = ((230, 190, 160), (190, 140, 100), (140, 95, 65))
WALK_SPEED = 0.6  # body heights per second
APPROACH_BEATS = 3
MEETING_BEATS = APPROACH_BEATS + 3 + 3 + 1 + 2 + 1  # approach, talk, talk back, pause, shake, stand
TV_CHANCE = 0.5  # of a video having a television, unless its role asks for one
# what the i-th video of a split is sure to have, in turn, so that each split shows every class;
# two in five are alone, since only people alone fall and "recover" needs falls to learn from
VIDEO_ROLES = ("meet", "tv", "alone", "free", "alone")
TV_HEIGHT = 1.3  # body heights from the floor to the television's lower edge
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
    objects: tuple[SceneObject, ...]  # objects[i] belongs to persons[i]; a television comes last
    backdrop_seed: int

    @property
    def seconds(self) -> int:
        return len(self.persons[0].beats)


class _Timeline:
    """One person's beats under construction and where the person is now."""

    def __init__(self, index: int, x: float, height: float, rest_x: float, bounds: tuple[float, float],
                 *, alone: bool, tv_x: float | None):
        self.index, self.x, self.height, self.rest_x, self.bounds = index, x, height, rest_x, bounds
        self.alone, self.tv_x = alone, tv_x  # who may fall; where the television hangs (None: none)
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
    if kind in ("gesture", "reach"):
        return _stay(x, rng.integers(2, 4), facing=side, arm=kind), None
    if kind == "fall":
        if not tl.alone:
            return None
        return _stay(x, 1, facing=side) + _stay(x, 2, base="lie", facing=side) + _stay(x, 3, facing=side), None
    if kind == "watch":
        return _watch(rng, tl)
    return _hold(rng, tl, side)


def _watch(rng: np.random.Generator, tl: _Timeline):
    """Sit facing the television (or the camera, when right under it)."""
    if tl.tv_x is None:
        return None
    facing = int(np.sign(tl.tv_x - tl.x)) if abs(tl.tv_x - tl.x) >= 0.4 * tl.height else 0
    return _stay(tl.x, rng.integers(3, 6), base="sit", facing=facing), None


def _hold(rng: np.random.Generator, tl: _Timeline, side: int):
    object_kind = tl.object_kind or str(rng.choice(HELD_KINDS))
    hold = dict(base="sit" if rng.random() < 0.35 else "stand", facing=side, held=tl.index)
    beats = _stay(tl.rest_x, rng.integers(2, 5), arm="carry", **hold)
    walk = _walk_to(tl, tl.rest_x) or (_walk(tl.x, tl.rest_x, 1) if tl.x != tl.rest_x else [])
    return walk + beats, object_kind


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
            weights = (_ALONE_WEIGHTS if tl.alone else _FREE_WEIGHTS) + _TV_BONUS * (tl.tv_x is not None)
            picked = _episode(str(rng.choice(_FREE_EPISODES, p=weights / weights.sum())), rng, tl)
            if not picked or len(picked[0]) > room:
                picked = _stay(tl.x, 1, facing=int(rng.choice((-1, 0, 1)))), None
        tl.add(*picked)


def _meet(rng: np.random.Generator, a: _Timeline, b: _Timeline) -> None:
    """Both walk to a meeting point; one talks, then the other; a pause; they
    shake hands and stand facing each other."""
    gap = ARM_TARGETS["reach"][0] * (a.height + b.height)  # puts the two reaching hands together
    lo, hi = a.bounds
    middle = rng.uniform(lo + gap / 2, hi - gap / 2)
    turns = [int(n) for n in rng.integers(2, 4, size=2)]
    first = int(rng.integers(2))  # who talks first
    left, right = (a, b) if a.x <= b.x else (b, a)
    for who, (tl, spot, facing) in enumerate(((left, middle - gap / 2, 1), (right, middle + gap / 2, -1))):
        there = spot == tl.x
        approach = _stay(tl.x, APPROACH_BEATS, facing=facing) if there else _walk(tl.x, spot, APPROACH_BEATS)
        talk = [_stay(spot, n, facing=facing, arm="gesture" if (turn == 0) == (who == first) else "rest")
                for turn, n in enumerate(turns)]
        greet = talk[0] + talk[1] + _stay(spot, 1, facing=facing) + _stay(spot, 2, facing=facing, arm="reach")
        tl.add(approach + greet + _stay(spot, 1, facing=facing))


def _video_id(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_ID_CHARS, size=11))


def plan_video(rng: np.random.Generator, *, split: str, seconds: int, width: int, height: int,
               required: list[str], meet: bool, tv: bool = False, alone: bool = False) -> VideoScript:
    """Script one video; takes what fits from ``required`` (in place).
    ``meet`` forces two people who meet and shake hands, ``tv`` a television,
    ``alone`` a single person."""
    count = 1 if alone else max(int(rng.choice((1, 2, 3), p=(0.3, 0.45, 0.25))), 2 if meet else 1)
    body = height * rng.uniform(0.5, 0.6)
    floor_y = height * rng.uniform(0.9, 0.95)
    heights = body * rng.uniform(0.96, 1.04, size=count)
    margin = 0.62 * heights.max()  # keeps a figure lying on the floor inside the frame
    bounds = (margin, width - margin)
    if bounds[1] - bounds[0] < 2 * ARM_TARGETS["reach"][0] * heights.max():
        raise ValueError(f"a {width}x{height} frame is too narrow for the people in it; "
                         f"use width >= {1.6 * height:.0f}")
    tv_x = rng.uniform(*bounds) if tv or rng.random() < TV_CHANCE else None
    timelines = [_Timeline(i, rng.uniform(*bounds), h, rng.uniform(*bounds), bounds, alone=count == 1, tv_x=tv_x)
                 for i, h in enumerate(heights)]
    for tl in timelines:  # the first two seconds precede the first keyframe
        tl.add(_stay(tl.x, 2, facing=int(rng.choice((-1, 0, 1)))))
    if count >= 2 and seconds > MEETING_BEATS + 3 and (meet or rng.random() < 0.8):
        start = int(rng.integers(2, seconds - MEETING_BEATS))
        for tl in timelines[:2]:
            _fill(tl, rng, start, required)
        _meet(rng, timelines[0], timelines[1])
    for tl in timelines:
        _fill(tl, rng, seconds - 1, required)
        last = tl.beats[-1]  # the last second has no keyframe: keep still
        tl.add([replace(last, base="stand" if last.base == "walk" else last.base, x_from=tl.x)])
    return _assemble(rng, timelines, video_id=_video_id(rng), split=split, size=(width, height),
                     floor_y=floor_y, body=body, tv_x=tv_x)


def _television(rng: np.random.Generator, *, x: float, floor_y: float, body: float, seconds: int) -> SceneObject:
    """A television at ``x`` whose screen is on and off in turns of 2 to 5 seconds."""
    screen: list[bool] = []
    on = bool(rng.random() < 0.5)
    while len(screen) < seconds:
        screen += [on] * int(rng.integers(2, 6))
        on = not on
    lowest_edge = OBJECT_SIZES["tv"][1] * body + 1.0  # stays inside the frame
    ground_y = max(floor_y - TV_HEIGHT * body, lowest_edge)
    return SceneObject(kind="tv", rest_x=float(x), ground_y=float(ground_y), height=float(body),
                       screen=tuple(screen[:seconds]))


def _assemble(rng, timelines, *, video_id, split, size, floor_y, body, tv_x) -> VideoScript:
    shirts = rng.permutation(len(SHIRTS))
    persons = tuple(
        Person(beats=tuple(tl.beats), height=float(tl.height), ground_y=float(floor_y),
               colors=(SHIRTS[shirts[i]], TROUSERS[rng.integers(len(TROUSERS))], SKINS[rng.integers(len(SKINS))]))
        for i, tl in enumerate(timelines)
    )
    objects = tuple(
        SceneObject(kind=tl.object_kind or str(rng.choice(HELD_KINDS)), rest_x=float(tl.rest_x),
                    ground_y=float(floor_y), height=float(body))
        for tl in timelines
    )
    if tv_x is not None:
        objects += (_television(rng, x=tv_x, floor_y=floor_y, body=body, seconds=len(timelines[0].beats)),)
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
            role = VIDEO_ROLES[i % len(VIDEO_ROLES)]
            video = plan_video(rng, split=split, seconds=seconds, width=width, height=height,
                               required=required, meet=role == "meet", tv=role == "tv",
                               alone=role == "alone")
            while video.video_id in {v.video_id for v in videos}:
                video = replace(video, video_id=_video_id(rng))
            videos.append(video)
    return tuple(videos)
