"""The keyframe index: one row per ``(video_id, timestamp)`` every stage reads.

Two timestamp conventions locate a keyframe inside a video file:

- ``ava``: AVA movies are used as the 15-minute cut that starts at movie
  second 900, so keyframe second ``t`` (902 … 1798) lies at ``t − 900`` s in
  the file (frame ``(t − 900) · fps``).
- ``kinetics``: AVA-Kinetics clips are files named
  ``{youtube_id}_{start:06d}_{end:06d}`` cut from a YouTube video; keyframe
  second ``t`` of that video lies at ``t − start`` s in the clip. The GT CSV
  names the clip by its YouTube id only, so the file is found by that prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data.video import probe_video, read_frame
from avapipe.schemas import KEYFRAMES

AVA_FILE_START_SEC = 900
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_KINETICS_NAME = re.compile(r"^(?P<vid>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


class KeyframeError(ValueError):
    """A keyframe cannot be located in any video file."""


def _video_files(video_dir: Path) -> dict[str, Path]:
    files = sorted(p for p in Path(video_dir).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    return {p.stem: p for p in files}


def _locate(video_id: str, timestamp: int, files: dict[str, Path], convention: str):
    """Returns (path, seconds into the file) of one keyframe."""
    if convention == "ava":
        path = files.get(video_id)
        return (path, float(timestamp - AVA_FILE_START_SEC)) if path else (None, 0.0)
    for stem, path in files.items():
        m = _KINETICS_NAME.match(stem)
        if m and m["vid"] == video_id and int(m["start"]) <= timestamp <= int(m["end"]):
            return path, float(timestamp - int(m["start"]))
    return None, 0.0


CONVENTIONS = ("ava", "kinetics")


def index_annotated_keyframes(
    *, keyframes: pd.DataFrame, video_dir: Path, convention: str
) -> pd.DataFrame:
    """Keyframe index for annotated keyframes.

    Args:
        keyframes: columns ``video_id, timestamp, split`` (one row per keyframe).
        video_dir: folder holding the video files, named as the convention says.
        convention: ``ava`` or ``kinetics`` (module docstring).
    Returns:
        A KEYFRAMES table sorted by ``(video_id, timestamp)``.
    """
    if convention not in CONVENTIONS:
        raise KeyframeError(f"convention {convention!r} is not one of {CONVENTIONS}")
    files = _video_files(video_dir)
    infos: dict[Path, object] = {}
    rows = []
    for kf in keyframes.sort_values(["video_id", "timestamp"]).itertuples(index=False):
        path, time_sec = _locate(kf.video_id, int(kf.timestamp), files, convention)
        if path is None:
            raise KeyframeError(
                f"no video file for {kf.video_id},{int(kf.timestamp):04d} in {video_dir} "
                f"({convention} convention); expected a file named as the README's "
                "real-data layout says"
            )
        info = infos.setdefault(path, probe_video(path))
        if not 0.0 <= time_sec <= info.duration:
            raise KeyframeError(
                f"{kf.video_id},{int(kf.timestamp):04d} lies at {time_sec:.1f} s in {path}, "
                f"outside its {info.duration:.1f} s; check the `data.convention` param"
            )
        rows.append(_row(kf.video_id, int(kf.timestamp), kf.split, path, time_sec, info))
    return KEYFRAMES.validate(_frame(rows), source=f"keyframe index of {video_dir}")


def index_unannotated_videos(*, video_dir: Path, margin_sec: int = 1) -> pd.DataFrame:
    """Keyframe index of a folder of plain videos: one keyframe per whole second.

    Seconds closer than ``margin_sec`` to either end are left out, as AVA leaves
    out the first and last seconds of each movie. The timestamp is the second
    into the file; the split is ``test``.
    """
    rows = []
    for video_id, path in _video_files(video_dir).items():
        info = probe_video(path)
        last = int(info.duration) - margin_sec
        for sec in range(margin_sec, last + 1):
            rows.append(_row(video_id, sec, "test", path, float(sec), info))
    return KEYFRAMES.validate(_frame(rows), source=f"keyframe index of {video_dir}")


def _row(video_id, timestamp, split, path, time_sec, info) -> dict:
    return dict(
        video_id=video_id, timestamp=timestamp, split=split, video_path=str(path),
        time_sec=time_sec, fps=float(info.fps), width=int(info.width),
        height=int(info.height),
    )


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else KEYFRAMES.empty()


def iter_keyframe_images(
    keyframes: pd.DataFrame, *, short_side: int | None = None
) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    """Yields ``((video_id, timestamp), uint8 RGB [H, W, 3])`` per KEYFRAMES row."""
    for kf in keyframes.itertuples(index=False):
        image = read_frame(kf.video_path, time_sec=kf.time_sec, short_side=short_side)
        yield (str(kf.video_id), int(kf.timestamp)), image
