"""The keyframe index: one row per ``(video_id, timestamp)`` every stage reads.

Where a keyframe lies in which file follows the naming conventions of
``video_files`` (``ava`` movies, ``kinetics`` clips, plain ``seconds``),
decided per file, so AVA movies and Kinetics clips share one index.

AVA movies come either as AVA's 15-minute cut (``ffmpeg -ss 900 -t 901``:
901 s starting at movie second 900, so second ``t`` lies at ``t − 900``) or
as the whole movie, read at ``t`` directly. The file's duration tells them
apart (``ava_file_start``); a file that is neither is refused with the
command that cuts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data.video import VideoInfo, probe_video, read_frame
from avapipe.data.video_files import CONVENTIONS, VideoFile, VideoFolder, scan_videos
from avapipe.schemas import KEYFRAMES

AVA_FILE_START_SEC = 900
AVA_CUT_SEC = 901  # the cut's length in AVA's download instructions (-t 901)
AVA_KEYFRAMES = range(902, 1799)  # the annotated seconds of every AVA movie
# A cut may run this much past 901 s (container rounding, a last long frame).
_CUT_SLACK_SEC = 2.0
MISSING_VIDEO_POLICIES = ("error", "skip")


class KeyframeError(ValueError):
    """A keyframe cannot be located in any video file."""


@dataclass(frozen=True)
class AnnotatedIndex:
    """keyframes: a KEYFRAMES table sorted by ``(video_id, timestamp)``;
    missing: ``video_id, timestamp, split`` of the keyframes left out because
    no file holds them (empty unless ``on_missing_video='skip'``)."""

    keyframes: pd.DataFrame
    missing: pd.DataFrame


def ava_file_start(path: str | Path, duration: float) -> int:
    """The movie second an AVA file starts at: 900 for AVA's cut (at most
    901 s, plus slack), 0 for a whole movie (at least 1800 s, so it holds
    every annotated second). Anything between is refused: it is neither, and
    reading it under either guess would misplace every keyframe."""
    if duration <= AVA_CUT_SEC + _CUT_SLACK_SEC:
        return AVA_FILE_START_SEC
    if duration >= AVA_FILE_START_SEC + AVA_CUT_SEC - 1:
        return 0
    raise KeyframeError(
        f"{path} is {duration:.1f} s long: neither AVA's 15-minute cut (901 s, movie seconds "
        f"900-1801) nor a whole movie (at least 1800 s). Cut the whole movie as AVA's download "
        f"instructions do: ffmpeg -ss 900 -t 901 -i <whole movie> {Path(path).with_suffix('.mp4')}")


def file_start(file: VideoFile, info: VideoInfo) -> int:
    """Source second at which ``file`` starts (module and video_files docs)."""
    if file.convention == "kinetics":
        return file.start
    if file.convention == "ava":
        return ava_file_start(file.path, info.duration)
    return 0


def locate_keyframes(keyframes: pd.DataFrame, folder: VideoFolder) -> list[VideoFile | None]:
    """The file of each row of ``keyframes`` (``video_id, timestamp``), in row
    order; None where no file holds it. Dict lookups only, no file access."""
    return [folder.locate(v, int(t)) for v, t in zip(keyframes["video_id"], keyframes["timestamp"])]


def index_annotated_keyframes(
    *, keyframes: pd.DataFrame, video_dir: Path, convention: str, on_missing_video: str = "error",
) -> AnnotatedIndex:
    """Keyframe index for annotated keyframes.

    Args:
        keyframes: columns ``video_id, timestamp, split`` (one row per keyframe).
        video_dir: folder holding the video files, named as the convention says.
        convention: ``auto`` (per file; non-Kinetics names are AVA movies),
            ``ava``, ``kinetics`` or ``seconds`` (``video_files``).
        on_missing_video: ``error`` raises KeyframeError naming the first
            keyframe without a file; ``skip`` leaves such keyframes out and
            lists them in ``missing``.
    Every file used is probed once (fps, size, duration).
    """
    if on_missing_video not in MISSING_VIDEO_POLICIES:
        raise KeyframeError(f"on_missing_video={on_missing_video!r}; use one of "
                            f"{MISSING_VIDEO_POLICIES}")
    folder = scan_videos(video_dir, convention=convention, default="ava")
    keyframes = keyframes.sort_values(["video_id", "timestamp"]).reset_index(drop=True)
    files = locate_keyframes(keyframes, folder)
    found = np.array([f is not None for f in files], dtype=bool)
    missing = keyframes.loc[~found, ["video_id", "timestamp", "split"]].reset_index(drop=True)
    if len(missing) and on_missing_video == "error":
        v, t = missing.iloc[0][["video_id", "timestamp"]]
        raise KeyframeError(
            f"no video file for {v},{int(t):04d} in {video_dir} ({convention} convention; "
            f"{len(missing)} of {len(keyframes)} keyframes, {missing['video_id'].nunique()} "
            "videos lack one); name the files as the README's real-data layout says, or set "
            "data.on_missing_video: skip to leave them out (normal for Kinetics clips)")
    infos: dict[str, VideoInfo] = {}
    rows = []
    for kf, file in zip(keyframes[found].itertuples(index=False), [f for f in files if f]):
        if file.path not in infos:
            infos[file.path] = probe_video(file.path)
        info = infos[file.path]
        time_sec = float(int(kf.timestamp) - file_start(file, info))
        if not 0.0 <= time_sec <= info.duration:
            raise KeyframeError(
                f"{kf.video_id},{int(kf.timestamp):04d} lies at {time_sec:.1f} s in {file.path} "
                f"({file.convention} file), outside its {info.duration:.1f} s; check the "
                "`data.convention` param and the file")
        rows.append(_row(kf.video_id, int(kf.timestamp), kf.split, file.path, time_sec, info))
    index = KEYFRAMES.validate(_frame(rows), source=f"keyframe index of {video_dir}")
    return AnnotatedIndex(keyframes=index, missing=missing)


def index_unannotated_videos(
    *, video_dir: Path, convention: str = "seconds", margin_sec: int = 1,
) -> pd.DataFrame:
    """Keyframe index of a folder of plain videos: one keyframe per whole second.

    Seconds closer than ``margin_sec`` to either end of a file are left out,
    as AVA leaves out the first and last seconds of each movie. Timestamps
    are source seconds: second ``s`` of the file is keyframe ``s`` under
    ``seconds``, ``900 + s`` (only 0902…1798) for an AVA cut under ``ava``,
    and ``start + s`` of the YouTube id for a Kinetics clip (a second two
    clips share goes to the clip centred closest to it). ``auto``: Kinetics
    names as ``kinetics``, the rest as ``seconds``. The split is ``test``.
    """
    if convention not in CONVENTIONS:
        raise KeyframeError(f"convention {convention!r} is not one of {CONVENTIONS}")
    folder = scan_videos(video_dir, convention=convention, default="seconds")
    rows = []
    for file in folder.files():
        info = probe_video(file.path)
        start = file_start(file, info)
        seconds = range(start + margin_sec, start + int(info.duration) - margin_sec + 1)
        if file.convention == "ava":
            seconds = range(max(seconds.start, AVA_KEYFRAMES.start),
                            min(seconds.stop, AVA_KEYFRAMES.stop))
        for t in seconds:
            if file.convention != "kinetics" or folder.locate(file.video_id, t) == file:
                rows.append(_row(file.video_id, t, "test", file.path, float(t - start), info))
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
