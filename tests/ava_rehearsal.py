"""A rehearsal of the real AVA v2.2 and AVA-Kinetics downloads, written small.

``write_rehearsal(root)`` lays out what a user has after following AVA's and
AVA-Kinetics' download instructions: the real file names, formats and
flaws, with small synthetic frames and short videos.

::

    root/videos/
      -5KQ66BBWC4.mp4          AVA 15-min cut (shortened): movie s 900.., 30 fps H.264 mp4
      053oq2xB3oU.mkv          AVA cut, 30 fps H.264 Matroska
      0f39OWEqJ24.webm         AVA cut, 25 fps VP9 WebM
      1j20qq1JyX4.mp4          AVA cut, 30 fps (val)
      _-Z6wFjXtGQ.mkv          AVA cut, 30 fps (val)
      26V9UzqSguo.mp4          an uncut (whole) movie: 1801 s, read at movie seconds
      <youtube_id>_<start:06d>_<end:06d>.mp4   Kinetics-700 clips, 10 s, 24 / 25 /
                               29.97 / 30 fps, one YouTube id in two clips;
                               some annotated clips absent (as always in Kinetics)
    root/annotations/
      ava_train_v2.2.csv, ava_val_v2.2.csv      all 80 action ids (8 columns)
      ava_action_list_v2.2_for_activitynet_2019.pbtxt   the 60 scored classes,
                               ``label { name label_id label_type }`` blocks
      ava_val_excluded_timestamps_v2.2.csv, ava_train_excluded_timestamps_v2.2.csv
      kinetics_train_v1.0.csv, kinetics_val_v1.0.csv    AVA-Kinetics' Kinetics rows
      ava_dense_proposals_{train,val}.FAIR.recall_93.9.pkl   ``"vid,0902"`` → (N, 5)

and, by ``write_checkpoints(models)``, the checkpoints the README names
(random weights in the real key layouts): ``faster_rcnn_r50_fpn_2x_coco.pth``
(mmdet 2.x), ``hrnet_w32_coco_256x192.pth`` (mmpose 0.x), ``td-hm_hrnet-w32_…
.pth`` (mmpose 1.x), ``SLOWFAST_8x8_R50_DETECTION.pyth`` (pytorchvideo).

``python tests/ava_rehearsal.py OUT`` writes the layout to OUT/ava and the
checkpoints to OUT/models.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avapipe.data import ava

DATA = Path(__file__).parent / "data"
OFFICIAL_60 = DATA / "ava_action_list_v2.1_for_activitynet_2018.pbtxt.txt"
LABEL_MAP = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
# label_type of AVA's three groups, as the official pbtxt writes them
_LABEL_TYPES = ((range(1, 15), "PERSON_MOVEMENT"), (range(15, 64), "OBJECT_MANIPULATION"),
                (range(64, 81), "PERSON_INTERACTION"))
_CODECS = {".mp4": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
           ".webm": ("libvpx-vp9", "yuv420p")}


@dataclass(frozen=True)
class Video:
    """One annotated video: its file (None: annotated but not downloaded),
    source seconds it covers, annotated keyframes (source seconds), split."""

    video_id: str
    file: str | None
    fps: Fraction
    size: tuple[int, int]  # width, height
    first_sec: int  # the source second at the file's first frame
    seconds: int  # file length
    keyframes: tuple[int, ...]
    split: str
    kinetics: bool = False


def _cut(video_id, suffix, fps, split, size=(96, 64)) -> Video:
    # 900..906 s of the movie: keyframes 902-904 (a real cut runs to 1801)
    return Video(video_id, video_id + suffix, Fraction(fps), size, 900, 6, (902, 903, 904), split)


def _clip(youtube_id, start, fps, split, *, present=True, size=(80, 60)) -> Video:
    name = f"{youtube_id}_{start:06d}_{start + 10:06d}.mp4"
    return Video(youtube_id, name if present else None, Fraction(fps), size, start, 10,
                 (start + 5,), split, kinetics=True)


MOVIES = (
    _cut("-5KQ66BBWC4", ".mp4", 30, "train"),
    _cut("053oq2xB3oU", ".mkv", 30, "train"),
    _cut("0f39OWEqJ24", ".webm", 25, "train"),
    _cut("1j20qq1JyX4", ".mp4", 30, "val"),
    _cut("_-Z6wFjXtGQ", ".mkv", 30, "val"),
    # the whole movie: AVA's cut would be seconds 900-1801 of it
    Video("26V9UzqSguo", "26V9UzqSguo.mp4", Fraction(24), (64, 48), 0, 1801, (902, 903), "train"),
)
CLIPS = (
    _clip("--6bJUbfpnQ", 12, Fraction(30000, 1001), "train"),
    _clip("-0sdAXeY8xM", 31, 24, "train"),
    _clip("3IOE-Q3UWdA", 40, 25, "train"),  # one YouTube id, two clips
    _clip("3IOE-Q3UWdA", 120, 30, "train"),
    _clip("5hNw4sWwPDI", 3, 30, "train", present=False),
    _clip("9bK05eBt1GM", 77, 25, "train", present=False),
    _clip("a-0oLPDkZJ0", 0, 30, "val"),
    _clip("bB_kl6mrAYc", 250, Fraction(30000, 1001), "val", size=(64, 48)),
    _clip("c_eV4vVtPQ8", 8, 30, "val", present=False),
)
EXCLUDED_VAL = (("1j20qq1JyX4", 904),)
EXCLUDED_TRAIN = (("-5KQ66BBWC4", 904),)


def frames(video: Video, count: int, *, offset: int = 0):
    """Textured background with two 'persons' (bright blocks) moving slowly."""
    width, height = video.size
    yy, xx = np.mgrid[0:height, 0:width]
    seed = sum(map(ord, video.video_id))
    base = np.stack([(xx * 3 + seed) % 256, (yy * 5 + seed) % 256,
                     ((xx + yy) * 2) % 256], -1).astype(np.uint8)
    for i in range(offset, offset + count):
        frame = base.copy()
        for k, (x0, y0) in enumerate(_person_corners(video, i)):
            frame[y0:y0 + height // 2, x0:x0 + width // 5] = (230 - 60 * k, 200, 170 + 40 * k)
        yield frame


def _person_corners(video: Video, frame: int) -> list[tuple[int, int]]:
    width, height = video.size
    shift = int(frame / float(video.fps) * 2) % (width // 4)
    return [(width // 10 + shift, height // 4), (width // 2 + shift // 2, height // 3)]


def write_video_file(path: Path, video: Video, *, seconds: int | None = None,
                     offset: int = 0) -> None:
    """Encodes the video as its container's usual codec (H.264; VP9 in WebM)."""
    codec, pix_fmt = _CODECS[path.suffix]
    count = int(round((video.seconds if seconds is None else seconds) * video.fps))
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=video.fps)
        stream.width, stream.height = video.size
        stream.pix_fmt = pix_fmt
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast", "g": "30"}
        else:
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "g": "30"}
        for frame in frames(video, count, offset=offset):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


def _box(video: Video, k: int) -> tuple[float, ...]:
    """Person k's box at the keyframe, normalized (as AVA: 3 decimals)."""
    width, height = video.size
    x0, y0 = _person_corners(video, int(round(2 * float(video.fps))))[k]
    return tuple(round(v, 3) for v in (x0 / width, y0 / height,
                                       (x0 + width // 5) / width, (y0 + height // 2) / height))


def _groundtruth_rows(videos, action_cycle) -> list[tuple]:
    rows = []
    for video in videos:
        for t in video.keyframes:
            for k in range(2):
                pose = 1 + next(action_cycle["pose"]) % 14
                others = [15 + next(action_cycle["other"]) % 66 for _ in range(4)]
                rows += [(video.video_id, t, *_box(video, k), a, k) for a in [pose, *others]]
    return rows


def _write_csv(path: Path, rows: list[tuple]) -> None:
    """The official layout: 8 columns, 4-digit seconds, 3-decimal boxes."""
    path.write_text("".join(f"{v},{t:04d},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{a},{p}\n"
                            for v, t, x1, y1, x2, y2, a, p in rows))


def write_label_map_2019(path: Path) -> dict[int, str]:
    """The 60 scored classes in the 2019 file's ``label { … }`` layout."""
    names = ava.read_label_map(OFFICIAL_60)
    kind = {i: label for ids, label in _LABEL_TYPES for i in ids}
    path.write_text("".join(f'label {{\n  name: "{name}"\n  label_id: {i}\n  label_type: '
                            f'{kind[i]}\n}}\n' for i, name in sorted(names.items())))
    return names


def _write_proposals(path: Path, videos) -> None:
    """FAIR's proposals: every annotated person plus a low-scoring extra box."""
    proposals = {}
    for video in videos:
        for t in video.keyframes:
            boxes = [(*_box(video, k), 0.99 - 0.1 * k) for k in range(2)]
            boxes.append((0.0, 0.0, 0.3, 0.3, 0.2))
            proposals[f"{video.video_id},{t:04d}"] = np.array(boxes, np.float64)
    with open(path, "wb") as f:
        pickle.dump(proposals, f, protocol=2)


def write_rehearsal(root: Path) -> dict[str, Path]:
    """Writes the layout of the module docstring under ``root``; returns its parts."""
    root = Path(root)
    videos_dir, ann = root / "videos", root / "annotations"
    videos_dir.mkdir(parents=True)
    ann.mkdir()
    for video in MOVIES + CLIPS:
        if video.file:
            write_video_file(videos_dir / video.file, video)
    cycle = {"pose": iter(range(10**6)), "other": iter(range(10**6))}
    for split in ("train", "val"):
        _write_csv(ann / f"ava_{split}_v2.2.csv",
                   _groundtruth_rows([m for m in MOVIES if m.split == split], cycle))
        _write_csv(ann / f"kinetics_{split}_v1.0.csv",
                   _groundtruth_rows([c for c in CLIPS if c.split == split], cycle))
        _write_proposals(ann / f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl",
                         [v for v in MOVIES + CLIPS if v.split == split])
        excluded = EXCLUDED_VAL if split == "val" else EXCLUDED_TRAIN
        (ann / f"ava_{split}_excluded_timestamps_v2.2.csv").write_text(
            "".join(f"{v},{t:04d}\n" for v, t in excluded))
    write_label_map_2019(ann / LABEL_MAP)
    return {"root": root, "videos": videos_dir, "annotations": ann}


POSE_1X = "td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth"


def write_checkpoints(folder: Path, *, width_divisor: int) -> dict[str, Path]:
    """The checkpoints the README names, with random weights in their real
    layouts (``openmmlab_checkpoints``): an mmdet 2.x detector and an mmpose
    0.x and a 1.x pose model (of the tiny configs a CPU affords), and a
    SlowFast R50 of the given width in pytorchvideo's ``{"model_state": …}``."""
    import torch
    from openmmlab_checkpoints import (
        mmdet_2x_detector_checkpoint, mmpose_0x_pose_checkpoint, random_pose_checkpoint,
    )

    from avapipe.features.backbone import build_slowfast

    folder = Path(folder)
    folder.mkdir(parents=True)
    files = {"detector": mmdet_2x_detector_checkpoint(folder / "faster_rcnn_r50_fpn_2x_coco.pth")[0],
             "pose_0x": mmpose_0x_pose_checkpoint(folder / "hrnet_w32_coco_256x192.pth")[0],
             "pose_1x": random_pose_checkpoint(folder / POSE_1X),
             "backbone": folder / "SLOWFAST_8x8_R50_DETECTION.pyth"}
    torch.manual_seed(0)
    net = build_slowfast(width_divisor=width_divisor, num_classes=80)
    torch.save({"model_state": net.state_dict()}, files["backbone"])
    return files


if __name__ == "__main__":
    print(write_rehearsal(Path(sys.argv[1]) / "ava"))
    print(write_checkpoints(Path(sys.argv[1]) / "models", width_divisor=1))
