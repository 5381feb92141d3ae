"""Which file holds a keyframe: one scan of the video folder, then a dict
lookup per keyframe (AVA-Kinetics has ~170,000 clips; a scan per keyframe
would take hours).

A keyframe is ``(video_id, timestamp)``; the timestamp is a second of the
*source* video (the movie, the YouTube video). Each file is read under one
naming convention, decided per file:

- ``kinetics``: ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, a clip cut from
  seconds ``start..end`` of YouTube video ``youtube_id``; second ``t`` lies
  at ``t − start`` in the clip. A YouTube id may have several clips; a
  keyframe uses the clip that contains it, the one centred closest to it
  when several do (the most temporal context on both sides).
- ``ava``: ``<video_id>.<ext>``, an AVA movie. AVA's 15-minute cut
  (``ffmpeg -ss 900 -t 901``) starts at movie second 900, so ``t`` lies at
  ``t − 900``; which of cut or whole movie a file is, its duration decides
  (``keyframes.ava_file_start``).
- ``seconds``: ``<video_id>.<ext>``, own footage; ``t`` is second ``t`` of the file.

``auto`` reads Kinetics-named files as ``kinetics`` and every other file under
a default (``ava`` for AVA annotations, ``seconds`` for own videos), so one
folder can hold the AVA movies and the Kinetics clips of AVA-Kinetics.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
CONVENTIONS = ("auto", "ava", "kinetics", "seconds")
_KINETICS_NAME = re.compile(r"^(?P<vid>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


class VideoFolderError(ValueError):
    """The video folder or the naming convention asked for is unusable."""


@dataclass(frozen=True)
class VideoFile:
    """One video file as a convention reads it.

    video_id: the id keyframes name (movie id, YouTube id, file stem).
    convention: ``ava`` | ``kinetics`` | ``seconds``.
    start, end: for ``kinetics``, the source seconds the clip covers; else 0, None.
    """

    path: str  # a string: pathlib objects cost more than the scan at 170,000 files
    video_id: str
    convention: str
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class VideoFolder:
    """The files of one folder by video id: ``movies`` (ava / seconds, one file
    per id) and ``clips`` (kinetics, a list per YouTube id sorted by start)."""

    root: Path
    movies: dict[str, VideoFile] = field(default_factory=dict)
    clips: dict[str, list[VideoFile]] = field(default_factory=dict)

    def files(self) -> list[VideoFile]:
        """Every file, sorted by path."""
        every = list(self.movies.values()) + [c for cs in self.clips.values() for c in cs]
        return sorted(every, key=lambda f: f.path)

    def locate(self, video_id: str, timestamp: int) -> VideoFile | None:
        """The file holding second ``timestamp`` of ``video_id``, or None: a
        clip containing it, else the movie of that id."""
        best = None
        for clip in self.clips.get(video_id, ()):
            if clip.start <= timestamp <= clip.end:
                off_centre = abs(timestamp - (clip.start + clip.end) / 2)
                if best is None or off_centre < best[0]:
                    best = (off_centre, clip)
        return best[1] if best is not None else self.movies.get(video_id)


def file_convention(stem: str, convention: str, *, default: str) -> str | None:
    """The convention one file is read under (None: the file does not fit an
    explicit ``kinetics``); ``default`` is what ``auto`` gives non-Kinetics names."""
    if convention not in CONVENTIONS:
        raise VideoFolderError(f"convention {convention!r} is not one of {CONVENTIONS}")
    return _convention(_KINETICS_NAME.match(stem) is not None, convention, default)


def _convention(is_clip: bool, convention: str, default: str) -> str | None:
    if convention == "auto":
        return "kinetics" if is_clip else default
    if convention == "kinetics" and not is_clip:
        return None
    return convention


def scan_videos(video_dir: str | Path, *, convention: str, default: str = "ava") -> VideoFolder:
    """One ``os.scandir`` of ``video_dir`` → its video files by id (see module doc).

    Files with other suffixes are ignored; two files for one id (``x.mp4`` and
    ``x.mkv``) are an error naming both.
    """
    file_convention("", convention, default=default)  # checks the name
    root = Path(video_dir)
    if not root.is_dir():
        raise VideoFolderError(f"{root}: video folder not found; put the videos in "
                               "<data.root>/videos/ as the README's layout says")
    folder = VideoFolder(root=root)
    with os.scandir(root) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() not in VIDEO_SUFFIXES or not entry.is_file():
                continue
            match = _KINETICS_NAME.match(stem)
            kind = _convention(match is not None, convention, default)
            if kind is not None:
                _add(folder, entry.path, stem, kind, match)
    for clips in folder.clips.values():
        clips.sort(key=lambda c: (c.start, c.end, c.path))
    return folder


def _add(folder: VideoFolder, path: str, stem: str, kind: str, match) -> None:
    if kind == "kinetics":
        clip = VideoFile(path, match["vid"], kind, int(match["start"]), int(match["end"]))
        folder.clips.setdefault(clip.video_id, []).append(clip)
        return
    other = folder.movies.get(stem)
    if other is not None:
        first, second = sorted([other.path, path])
        raise VideoFolderError(f"two files for video {stem!r}: {first} and {second}; "
                               "keep one")
    folder.movies[stem] = VideoFile(path, stem, kind)
