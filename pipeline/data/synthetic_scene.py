"""Drawing of synthetic mini-AVA scenes: articulated COCO-17 stick figures with
held objects over a textured, noisy background.

A figure's posture is nine angles (``np.ndarray[9]``: torso tilt, then upper
arm / forearm for the left and right arm, then thigh / shin for the left and
right leg). Angles are absolute directions measured from "straight down",
positive towards image right; the torso tilt rotates the whole body, so a
tilt of pi/2 lays the figure on the floor. Geometry lives in a body frame
measured in body heights (y up, origin at the hip centre) and becomes pixels
only at the end, so the same posture has the same proportions at any size.
The person's left side is drawn at image right, as for someone facing the
camera; a profile (``facing`` -1 / +1) turns the head and puts the eye and nose
on that side.

Shapes are rasterised by testing pixel centres against exact capsule (limb),
disc (head, hand, ball) and convex quad (torso, cup, phone) geometry, so the
bounding box of the geometry encloses every drawn pixel to within half a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
LEFT_WRIST, RIGHT_WRIST = 9, 10

# body proportions, in body heights
UPPER_ARM, FOREARM, THIGH, SHIN = 0.16, 0.15, 0.25, 0.25
SHOULDER_HALF, SHOULDER_UP, HIP_HALF = 0.10, 0.30, 0.07
HEAD_UP, HEAD_RADIUS, LIMB_RADIUS, HAND_RADIUS, EYE_RADIUS = 0.42, 0.075, 0.03, 0.036, 0.016
# width, height; large enough to reach the backbone's coarse feature map at the demo's size
OBJECT_SIZES = {"ball": (0.16, 0.16), "cup": (0.10, 0.14), "phone": (0.07, 0.15), "tv": (0.5, 0.34)}
HELD_KINDS = ("ball", "cup", "phone")
OBJECT_COLORS = {"ball": (225, 60, 35), "cup": (60, 125, 235), "phone": (20, 20, 28), "tv": (28, 30, 34)}
EYE_COLOR = (25, 20, 20)


@dataclass(frozen=True)
class Shape:
    """A filled shape in pixels: ``capsule`` (2 points + radius), ``disc``
    (1 point + radius) or convex ``quad`` (4 points)."""

    kind: str
    points: np.ndarray  # [k, 2] pixel x, y (continuous, pixel centres at +0.5)
    radius: float
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Figure:
    """A figure drawn at one instant: keypoints and the shapes that draw it."""

    keypoints: np.ndarray  # [17, 2] pixel x, y in COCO order
    visibility: np.ndarray  # [17] int: 2 visible, 1 hidden behind the head (COCO)
    shapes: tuple[Shape, ...]


def _direction(angle: float) -> np.ndarray:
    return np.array([np.sin(angle), -np.cos(angle)])


def _rotate(points: np.ndarray, tilt: float) -> np.ndarray:
    c, s = np.cos(tilt), np.sin(tilt)
    return points @ np.array([[c, s], [-s, c]])


def arm_angles_to(target: tuple[float, float], side: int) -> tuple[float, float]:
    """Upper-arm and forearm angles that put the wrist of arm ``side`` (+1 the
    left arm at image right, -1 the right arm) at ``target`` (body frame,
    upright torso). Of the two elbow positions the lower one is used; targets
    out of reach get the closest reachable wrist."""
    shoulder = np.array([side * SHOULDER_HALF, SHOULDER_UP])
    delta = np.asarray(target, dtype=float) - shoulder
    dist = np.clip(np.hypot(*delta), abs(UPPER_ARM - FOREARM) + 1e-6, UPPER_ARM + FOREARM - 1e-6)
    toward = np.arctan2(delta[0], -delta[1])
    bend = np.arccos((UPPER_ARM**2 + dist**2 - FOREARM**2) / (2 * UPPER_ARM * dist))
    elbows = [shoulder + UPPER_ARM * _direction(toward + s * bend) for s in (1, -1)]
    upper = toward + bend if elbows[0][1] <= elbows[1][1] else toward - bend
    elbow = shoulder + UPPER_ARM * _direction(upper)
    wrist = shoulder + dist * _direction(toward)
    return float(upper), float(np.arctan2(*(wrist - elbow) * [1, -1]))


def body_keypoints(angles: np.ndarray, facing: int) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[17, 2]`` and head centre ``[2]`` in the body frame, shifted so
    the lowest keypoint touches the floor (y = 0)."""
    tilt, lu, lf, ru, rf, lt, ls, rt, rs = angles
    pts = np.zeros((17, 2))
    frame = _rotate(np.array([[SHOULDER_HALF, SHOULDER_UP], [-SHOULDER_HALF, SHOULDER_UP],
                              [HIP_HALF, 0.0], [-HIP_HALF, 0.0], [0.0, HEAD_UP]]), tilt)
    pts[5], pts[6], pts[11], pts[12], head = frame
    for root, joint, end, a1, a2, l1, l2 in ((5, 7, 9, lu, lf, UPPER_ARM, FOREARM),
                                             (6, 8, 10, ru, rf, UPPER_ARM, FOREARM),
                                             (11, 13, 15, lt, ls, THIGH, SHIN),
                                             (12, 14, 16, rt, rs, THIGH, SHIN)):
        pts[joint] = pts[root] + l1 * _direction(tilt + a1)
        pts[end] = pts[joint] + l2 * _direction(tilt + a2)
    pts[:5] = head + _rotate(_face_offsets(facing), tilt)
    lift = pts[:, 1].min()
    return pts - [0.0, lift], head - [0.0, lift]


def _face_offsets(facing: int) -> np.ndarray:
    """Nose, eyes and ears around the head centre: a face turned to ``facing``."""
    if facing == 0:
        return np.array([[0, -0.01], [0.03, 0.02], [-0.03, 0.02], [0.055, 0], [-0.055, 0]])
    f = float(facing)
    # turned towards +x the figure shows its right side: right eye / ear in view
    near_eye, far_eye, near_ear, far_ear = [0.035 * f, 0.02], [0.045 * f, 0.022], [-0.01 * f, 0], [0.0, 0.0]
    if facing > 0:
        return np.array([[0.06 * f, -0.01], far_eye, near_eye, far_ear, near_ear])
    return np.array([[0.06 * f, -0.01], near_eye, far_eye, near_ear, far_ear])


def face_visibility(facing: int) -> np.ndarray:
    """COCO visibility ``[17]``: in profile the far eye and ear are hidden (1)."""
    vis = np.full(17, 2, dtype=np.int64)
    if facing > 0:
        vis[[1, 3]] = 1
    elif facing < 0:
        vis[[2, 4]] = 1
    return vis


def draw_figure(angles: np.ndarray, *, facing: int, hip_x: float, ground_y: float, height: float,
                colors: tuple[tuple[int, int, int], ...]) -> Figure:
    """The figure in posture ``angles`` with hip centre at ``hip_x`` and feet on
    image row ``ground_y``; ``colors`` = (shirt, trousers, skin)."""
    body, head = body_keypoints(angles, facing)

    def to_px(points: np.ndarray) -> np.ndarray:
        return np.column_stack([hip_x + points[:, 0] * height, ground_y - points[:, 1] * height])

    kp, head_px = to_px(body), to_px(head[None])[0]
    shirt, trousers, skin = colors
    limb, r = LIMB_RADIUS * height, height
    shapes = [Shape("capsule", kp[[a, b]], limb, trousers) for a, b in ((11, 13), (13, 15), (12, 14), (14, 16))]
    shapes.append(Shape("quad", kp[[5, 6, 12, 11]], 0.0, shirt))
    shapes += [Shape("capsule", kp[[a, b]], limb, shirt) for a, b in ((5, 7), (7, 9), (6, 8), (8, 10))]
    shapes.append(Shape("capsule", np.stack([(kp[5] + kp[6]) / 2, head_px]), limb, skin))
    shapes.append(Shape("disc", head_px[None], HEAD_RADIUS * r, skin))
    if facing:
        nose_tip = to_px(head[None] + _rotate(np.array([[0.075 * facing, -0.012]]), angles[0]))
        shapes.append(Shape("disc", nose_tip, 0.022 * r, skin))
    vis = face_visibility(facing)
    shapes += [Shape("disc", kp[i][None], EYE_RADIUS * r, EYE_COLOR) for i in (1, 2) if vis[i] == 2]
    shapes += [Shape("disc", kp[i][None], HAND_RADIUS * r, skin) for i in (LEFT_WRIST, RIGHT_WRIST)]
    return Figure(keypoints=kp, visibility=vis, shapes=tuple(shapes))


def object_shape(kind: str, *, center: tuple[float, float], height: float) -> Shape:
    """A ball (disc), cup, phone or television (upright rectangles; the
    television's colour is that of a dark screen) centred at ``center`` px;
    ``height`` is the body height in pixels of the scene's people."""
    width, tall = (s * height for s in OBJECT_SIZES[kind])
    cx, cy = center
    if kind == "ball":
        return Shape("disc", np.array([[cx, cy]]), width / 2, OBJECT_COLORS[kind])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [width / 2, tall / 2] + [cx, cy]
    return Shape("quad", corners, 0.0, OBJECT_COLORS[kind])


def shapes_box(shapes: tuple[Shape, ...] | list[Shape]) -> np.ndarray:
    """Tight box ``[4]`` (pixels x1, y1, x2, y2, continuous) around the shapes."""
    lo = np.min([s.points.min(axis=0) - s.radius for s in shapes], axis=0)
    hi = np.max([s.points.max(axis=0) + s.radius for s in shapes], axis=0)
    return np.concatenate([lo, hi])


def paint(canvas: np.ndarray, shapes: tuple[Shape, ...] | list[Shape]) -> None:
    """Fill the shapes into ``canvas[H, W, C]`` (in place); later shapes cover
    earlier ones."""
    if not shapes:
        return
    box = shapes_box(shapes)
    x0, y0 = np.maximum(np.floor(box[:2]).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(box[2:]).astype(int) + 1, [canvas.shape[1], canvas.shape[0]])
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1)[None, :] + 0.5  # pixel centres, broadcast over rows / columns
    py = np.arange(y0, y1)[:, None] + 0.5
    masks = _shape_masks(shapes, px, py)
    covered = masks.any(axis=0)
    top = len(shapes) - 1 - np.argmax(masks[::-1], axis=0)  # the last shape covering each pixel
    colors = np.array([s.color for s in shapes], dtype=canvas.dtype)
    canvas[y0:y1, x0:x1][covered] = colors[top[covered]]


def _shape_masks(shapes, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """``bool[S, h, w]``: which pixel centres each shape covers."""
    masks = np.zeros((len(shapes), py.shape[0], px.shape[1]), dtype=bool)
    rounded = [i for i, s in enumerate(shapes) if s.kind != "quad"]
    if rounded:  # capsules and discs (a disc is a capsule of length 0): distance to a segment
        a = np.array([shapes[i].points[0] for i in rounded])[:, :, None, None]
        ab = np.array([shapes[i].points[-1] for i in rounded])[:, :, None, None] - a
        radius = np.array([shapes[i].radius for i in rounded])[:, None, None]
        t = ((px - a[:, 0]) * ab[:, 0] + (py - a[:, 1]) * ab[:, 1]) / np.maximum((ab**2).sum(axis=1), 1e-12)
        t = np.clip(t, 0.0, 1.0)
        masks[rounded] = (px - a[:, 0] - t * ab[:, 0]) ** 2 + (py - a[:, 1] - t * ab[:, 1]) ** 2 <= radius**2
    for i, shape in enumerate(shapes):
        if shape.kind == "quad":
            masks[i] = _inside_convex(shape.points, px, py)
    return masks


def _inside_convex(corners: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    positive = negative = True
    for a, b in zip(corners, np.roll(corners, -1, axis=0)):
        side = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
        positive, negative = positive & (side >= 0), negative & (side <= 0)
    return positive | negative


def background(*, height: int, width: int, floor_y: float, rng: np.random.Generator) -> np.ndarray:
    """A static backdrop ``[H, W, 3] float32``: a wall with soft random texture
    and a tiled floor below row ``floor_y``; muted greys so figures stand out."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for _ in range(4):
        kx, ky = rng.uniform(0.02, 0.25, size=2)
        texture += rng.uniform(4, 9) * np.sin(kx * xs + ky * ys + rng.uniform(0, 2 * np.pi))
    wall = np.array(rng.uniform(135, 165, size=3), np.float32)
    floor = wall * 0.72
    tiles = 6.0 * np.sign(np.sin(xs * 0.35 + 0.9 * (ys - floor_y)))
    image = np.where((ys < floor_y)[..., None], wall + texture[..., None], floor + (texture + tiles)[..., None])
    return image.astype(np.float32)


class CameraNoise:
    """Sensor noise and a small global flicker; frames draw from a bank of
    noise fields shifted at random, which costs far less than fresh noise."""

    def __init__(self, shape: tuple[int, ...], *, rng: np.random.Generator, sigma: float = 3.0, bank: int = 8):
        self.rng = rng
        self.bank = rng.standard_normal(size=(bank, *shape), dtype=np.float32) * np.float32(sigma)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``image`` (float ``[H, W, 3]``) plus noise, as ``uint8``."""
        field = self.bank[self.rng.integers(len(self.bank))]
        field = np.roll(field, tuple(self.rng.integers(0, field.shape[:2])), axis=(0, 1))
        noisy = image + field + np.float32(self.rng.uniform(-3, 3) + 0.5)
        return np.clip(noisy, 0, 255).astype(np.uint8)
