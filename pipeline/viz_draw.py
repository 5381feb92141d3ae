"""Drawing on RGB images ``np.ndarray[H, W, 3] uint8``: boxes, skeletons,
captions, and the PARTS / POSES / OBJECTS tables of one keyframe.

Geometry arrives normalized (boxes ``x1, y1, x2, y2``, keypoints ``x, y`` in
[0, 1], origin top-left) and becomes pixels only here. The ``draw_*``
functions paint onto the canvas they are given (in place) and return nothing;
callers own the copy. Colors are RGB tuples: the canvas stays RGB until a
file writer converts it.

Boxes are painted with numpy slicing rather than ``cv2.rectangle``: a box of
line width ``t`` covers exactly the ``t`` outermost pixel rows and columns of
its pixel rectangle, with square corners, so what a box changes is known to
the pixel. Lines and text use cv2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from avapipe.schemas import BOX_COLUMNS, COCO_KEYPOINTS, KEYPOINT_COLUMNS, NUM_KEYPOINTS, PART_NAMES

Color = tuple[int, int, int]

# Person colors (RGB), chosen far from each other and from the fixed colors below.
PERSON_COLORS: tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40),
)
GROUNDTRUTH_COLOR: Color = (255, 255, 255)
OBJECT_COLOR: Color = (255, 225, 25)
UNMATCHED_COLOR: Color = (160, 160, 160)  # predicted boxes that match no person

_SKELETON_NAMES = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
    ("left_eye", "left_ear"), ("right_eye", "right_ear"),
    ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
)
# The COCO person skeleton as pairs of keypoint indices (COCO order).
COCO_SKELETON: tuple[tuple[int, int], ...] = tuple(
    (COCO_KEYPOINTS.index(a), COCO_KEYPOINTS.index(b)) for a, b in _SKELETON_NAMES
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_DASH = 6  # dash and gap length of dashed boxes, in line widths


@dataclass(frozen=True)
class Style:
    """Line width and text size for one canvas.

    Text size follows the canvas, not ``scale``: upscaling a small frame is
    what makes room for text of a legible pixel size.
    """

    line: int
    font_scale: float

    @classmethod
    def for_canvas(cls, *, height: int, width: int, scale: int) -> "Style":
        return cls(line=max(1, scale // 2), font_scale=max(0.35, min(height, width) / 1200))


def upscale(image: np.ndarray, *, scale: int) -> np.ndarray:
    """``image: [H, W, 3] uint8`` → ``[H*scale, W*scale, 3]`` (bilinear), always a new array."""
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
    if scale == 1:
        return np.ascontiguousarray(image).copy()
    height, width = image.shape[:2]
    return cv2.resize(image, (width * scale, height * scale), interpolation=cv2.INTER_LINEAR)


def box_to_pixels(box, *, height: int, width: int) -> tuple[int, int, int, int]:
    """Normalized xyxy → inclusive pixel corners ``(x1, y1, x2, y2)`` inside the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = np.clip(np.round(np.array([x1, x2]) * width), 0, width - 1).astype(int)
    ys = np.clip(np.round(np.array([y1, y2]) * height), 0, height - 1).astype(int)
    return int(xs[0]), int(ys[0]), int(xs[1]), int(ys[1])


def draw_box(image: np.ndarray, *, box, color: Color, line: int, dashed: bool = False) -> None:
    """Outline of the normalized ``box`` (xyxy), ``line`` pixels wide, inside its pixel rectangle."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box_to_pixels(box, height=height, width=width)
    mask = np.zeros((y2 - y1 + 1, x2 - x1 + 1), dtype=bool)
    mask[:line, :] = mask[-line:, :] = True
    mask[:, :line] = mask[:, -line:] = True
    if dashed:
        rows, cols = np.indices(mask.shape)
        on_top_or_bottom = (rows < line) | (rows >= mask.shape[0] - line)
        along_edge = np.where(on_top_or_bottom, cols, rows)
        mask &= (along_edge // (_DASH * line)) % 2 == 0
    image[y1 : y2 + 1, x1 : x2 + 1][mask] = color


def draw_skeleton(
    image: np.ndarray, *, keypoints: np.ndarray, min_score: float, color: Color, line: int
) -> None:
    """COCO skeleton of one person: ``keypoints: [17, 3]`` normalized ``x, y, score``.

    A joint is drawn (a dot) when its score is above ``min_score`` and its
    position is finite; a bone when both its joints are.
    """
    height, width = image.shape[:2]
    keypoints = np.asarray(keypoints, dtype=np.float64)
    shown = np.isfinite(keypoints).all(axis=1) & (keypoints[:, 2] > min_score)
    points = np.zeros((len(keypoints), 2), dtype=int)
    points[shown] = np.round(keypoints[shown, :2] * [width, height]).astype(int)
    for a, b in COCO_SKELETON:
        if shown[a] and shown[b]:
            cv2.line(image, tuple(points[a]), tuple(points[b]), color, line, cv2.LINE_AA)
    for x, y in points[shown]:
        cv2.circle(image, (int(x), int(y)), line + 1, color, -1, cv2.LINE_AA)


def draw_captions(
    image: np.ndarray, *, lines: list[str], box, color: Color, style: Style, at_bottom: bool = False
) -> None:
    """Text lines on tags of ``color``, inside the normalized ``box``: stacked down
    from its top-left corner, or ending at its bottom-left with ``at_bottom``;
    either way the first line is the highest."""
    if not lines:
        return
    height, width = image.shape[:2]
    x1, y1, _, y2 = box_to_pixels(box, height=height, width=width)
    text_color = (0, 0, 0) if sum(color) > 3 * 128 else (255, 255, 255)
    (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, style.font_scale, 1)
    step = text_h + baseline + 2
    for i, text in enumerate(lines):
        top = y2 - (len(lines) - i) * step if at_bottom else y1 + i * step
        (text_w, _), _ = cv2.getTextSize(text, _FONT, style.font_scale, 1)
        cv2.rectangle(image, (x1, top), (x1 + text_w + 2, top + step - 1), color, -1)
        origin = (x1 + 1, top + text_h + 1)
        cv2.putText(image, text, origin, _FONT, style.font_scale, text_color, 1, cv2.LINE_AA)


def person_color(index: int) -> Color:
    """The color of the person numbered ``index`` (cycles through PERSON_COLORS)."""
    return PERSON_COLORS[int(index) % len(PERSON_COLORS)]


def draw_part_boxes(image: np.ndarray, *, parts: pd.DataFrame, colors: Mapping[int, Color]) -> None:
    """The valid part boxes of PARTS rows, one pixel wide, in their person's
    color (``colors``: box_id → color; gray for a box_id it lacks)."""
    for row in parts.itertuples(index=False):
        color = colors.get(int(row.box_id), UNMATCHED_COLOR)
        for part in PART_NAMES:
            if bool(getattr(row, f"{part}_valid")):
                box = [getattr(row, f"{part}_{c}") for c in BOX_COLUMNS]
                draw_box(image, box=box, color=color, line=1)


def draw_poses(
    image: np.ndarray, *, poses: pd.DataFrame, colors: Mapping[int, Color], min_score: float, line: int
) -> None:
    """The skeleton of each POSES row in its person's color (as draw_part_boxes)."""
    keypoints = poses[list(KEYPOINT_COLUMNS)].to_numpy(dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    for box_id, joints in zip(poses["box_id"], keypoints):
        color = colors.get(int(box_id), UNMATCHED_COLOR)
        draw_skeleton(image, keypoints=joints, min_score=min_score, color=color, line=line)


def draw_objects(image: np.ndarray, *, objects: pd.DataFrame, style: Style) -> None:
    """OBJECTS rows: a box each, captioned ``<label> <score:.2f>``."""
    for row in objects.itertuples(index=False):
        box = [row.x1, row.y1, row.x2, row.y2]
        draw_box(image, box=box, color=OBJECT_COLOR, line=style.line)
        caption = f"{row.label} {float(row.score):.2f}"
        draw_captions(image, lines=[caption], box=box, color=OBJECT_COLOR, style=style)
