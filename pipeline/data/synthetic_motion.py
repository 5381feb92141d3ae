"""Motion of the synthetic mini-AVA figures: per-second scripted ``Beat`` s
turned into postures, positions and drawn figures at any instant.

A person does one ``Beat`` per second of video: beat ``k`` covers
``[k - 0.5, k + 0.5)``, so whole seconds (where AVA keyframes are) fall in the
middle of a beat. Postures cross-fade within ``BLEND_SECONDS`` of a beat
boundary and are pure at whole seconds; positions move linearly within a
walking beat. Periodic motions (walk, wave, kick, gesture) and a switched-on
television's picture run on the video clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from avapipe.data.synthetic_scene import (
    LEFT_WRIST, OBJECT_SIZES, RIGHT_WRIST, CameraNoise, Figure, arm_angles_to, draw_figure,
    object_shape, paint,
)

BASES = ("stand", "sit", "walk", "lie")
ARMS = ("rest", "carry", "head", "wave", "raise", "reach", "gesture")
LEGS = ("rest", "kick")
# arms hang a little outwards, legs stand slightly apart
REST_ANGLES = np.array([0.0, 0.12, 0.05, -0.12, -0.05, 0.04, 0.02, -0.04, -0.02])
# wrist targets (body frame, for a figure facing +x) of the arm postures that reach somewhere
ARM_TARGETS = {"carry": (0.24, 0.12), "head": (0.06, 0.40), "reach": (0.34, 0.15)}
WALK_HZ, WAVE_HZ, KICK_HZ, GESTURE_HZ, PICTURE_HZ = 1.6, 2.5, 1.5, 2.0, 1.3
BLEND_SECONDS = 0.2  # postures cross-fade within this distance of a beat boundary


@dataclass(frozen=True)
class Beat:
    """What one person does during second ``k`` of a video, i.e. ``[k - 0.5, k + 0.5)``.

    ``x_from`` / ``x_to``: hip-centre x (pixels) at the beat's start and end;
    they differ only when walking. ``facing``: -1 image left, +1 image right,
    0 the camera. ``arm``: posture of the arm on the facing side (the left arm
    when facing the camera). ``held``: index of the scene object in that hand.
    """

    base: str = "stand"
    x_from: float = 0.0
    x_to: float = 0.0
    facing: int = 0
    arm: str = "rest"
    leg: str = "rest"
    held: int | None = None

    def __post_init__(self):
        for name, value, allowed in (("base", self.base, BASES), ("arm", self.arm, ARMS),
                                     ("leg", self.leg, LEGS), ("facing", self.facing, (-1, 0, 1))):
            if value not in allowed:
                raise ValueError(f"Beat.{name}={value!r} is not one of {allowed}")
        if self.held is not None and self.arm not in ("carry", "head"):
            raise ValueError(f"Beat holds object {self.held} with arm {self.arm!r}; use arm 'carry' or 'head'")


@dataclass(frozen=True)
class Person:
    """One figure for a whole video: ``beats[k]`` covers second ``k``."""

    beats: tuple[Beat, ...]
    height: float  # body height, pixels
    ground_y: float  # image row of the floor under the feet
    colors: tuple[tuple[int, int, int], ...]  # shirt, trousers, skin


@dataclass(frozen=True)
class SceneObject:
    """A ball, cup or phone that rests on the floor at ``rest_x`` unless held,
    or a television (kind "tv") that hangs on the wall with its lower edge on
    row ``ground_y``; ``screen[k]``: whether the television is on in second ``k``."""

    kind: str
    rest_x: float
    ground_y: float
    height: float  # body height (pixels) of the scene's people, sets the size
    screen: tuple[bool, ...] = ()

    def is_on(self, t: float) -> bool:
        """Whether the object is a switched-on television at time ``t``."""
        k = int(np.floor(t + 0.5))
        return bool(self.screen) and bool(self.screen[int(np.clip(k, 0, len(self.screen) - 1))])


def posture_angles(beat: Beat, t: float) -> np.ndarray:
    """Posture ``np.ndarray[9]`` of ``beat`` at time ``t`` (seconds), no blending."""
    f = beat.facing or 1
    a = REST_ANGLES.copy()
    if beat.base == "walk":
        s, c = np.sin(2 * np.pi * WALK_HZ * t), np.cos(2 * np.pi * WALK_HZ * t)
        a[5:9] = [0.4 * s, 0.4 * s - f * 0.3 * (1 + c) / 2, -0.4 * s, -0.4 * s - f * 0.3 * (1 - c) / 2]
        a[[1, 3]] += [-0.3 * s, 0.3 * s]
    elif beat.base == "sit":
        a[0], a[[5, 7]], a[[6, 8]] = 0.08 * f, 1.45 * f, 0.05 * f
    elif beat.base == "lie":
        a[0] = np.pi / 2 * f  # falls backwards, head away from where it faced
    arm = [1, 2] if f > 0 else [3, 4]
    if beat.arm in ARM_TARGETS:
        tx, ty = ARM_TARGETS[beat.arm]
        a[arm] = arm_angles_to((tx * f, ty), f)
    elif beat.arm == "gesture":  # talking: the forearm goes up and down in front of the chest
        a[arm] = [0.45 * f, (1.55 + 0.6 * np.sin(2 * np.pi * GESTURE_HZ * t)) * f]
    elif beat.arm in ("wave", "raise"):
        swing = 0.5 * np.sin(2 * np.pi * WAVE_HZ * t) if beat.arm == "wave" else 0.0
        a[arm] = [2.3 * f, (2.95 + swing) * f]
    if beat.leg == "kick":
        thigh = 0.75 * f * (1 - np.cos(2 * np.pi * KICK_HZ * t)) / 2
        a[[5, 6] if f > 0 else [7, 8]] = [thigh, 1.5 * thigh]
    return a


def beat_at(person: Person, t: float) -> tuple[int, float]:
    """Index of the beat shown at time ``t`` and how far into it (0..1) ``t`` is."""
    k = int(np.clip(np.floor(t + 0.5), 0, len(person.beats) - 1))
    return k, float(np.clip(t - (k - 0.5), 0.0, 1.0))


def person_figure(person: Person, t: float) -> Figure:
    """The person drawn at time ``t``; postures cross-fade at beat boundaries."""
    k, into = beat_at(person, t)
    beat = person.beats[k]
    angles = posture_angles(beat, t)
    if into < BLEND_SECONDS and k > 0:
        weight, other = 0.5 + 0.5 * into / BLEND_SECONDS, person.beats[k - 1]
        angles = weight * angles + (1 - weight) * posture_angles(other, t)
    elif 1 - into < BLEND_SECONDS and k + 1 < len(person.beats):
        weight, other = 0.5 + 0.5 * (1 - into) / BLEND_SECONDS, person.beats[k + 1]
        angles = weight * angles + (1 - weight) * posture_angles(other, t)
    hip_x = beat.x_from + (beat.x_to - beat.x_from) * into
    return draw_figure(angles, facing=beat.facing, hip_x=hip_x, ground_y=person.ground_y,
                       height=person.height, colors=person.colors)


def active_wrist(facing: int) -> int:
    """COCO index of the wrist that does the arm postures (facing side)."""
    return LEFT_WRIST if facing >= 0 else RIGHT_WRIST


def scene_shapes(persons: tuple[Person, ...], objects: tuple[SceneObject, ...], t: float):
    """Figures at time ``t`` and every object's shape (held ones at the hand).

    Returns ``(figures, object_shapes)``: a ``Figure`` per person and a
    ``Shape`` per object, in the order they are painted.
    """
    figures = [person_figure(p, t) for p in persons]
    centers = {}
    for person, figure in zip(persons, figures):
        beat = person.beats[beat_at(person, t)[0]]
        if beat.held is not None:
            centers[beat.held] = figure.keypoints[active_wrist(beat.facing)]
    shapes = []
    for i, obj in enumerate(objects):
        rest = (obj.rest_x, obj.ground_y - OBJECT_SIZES[obj.kind][1] * obj.height / 2)
        shape = object_shape(obj.kind, center=tuple(centers.get(i, rest)), height=obj.height)
        shapes.append(replace(shape, color=picture_color(t)) if obj.is_on(t) else shape)
    return figures, shapes


def picture_color(t: float) -> tuple[int, int, int]:
    """A switched-on screen: bright, its colour cycling at ``PICTURE_HZ``."""
    phase = 2 * np.pi * PICTURE_HZ * t
    return tuple(int(165 + 85 * np.sin(phase + shift)) for shift in (0.0, 2.1, 4.2))


def render_frame(backdrop: np.ndarray, persons, objects, t: float, *, noise: CameraNoise) -> np.ndarray:
    """One video frame ``[H, W, 3] uint8`` at time ``t``: ``backdrop`` (float
    ``[H, W, 3]``), people in order, objects on top, then camera noise."""
    canvas = backdrop.copy()
    figures, object_shapes = scene_shapes(persons, objects, t)
    for figure in figures:
        paint(canvas, figure.shapes)
    paint(canvas, object_shapes)
    return noise(canvas)
