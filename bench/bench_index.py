"""Benchmark of keyframe indexing at AVA-Kinetics scale.

Creates N empty clip files named as Kinetics clips are
(``<youtube_id>_<start:06d>_<end:06d>.mp4``; every 50th YouTube id has a
second clip, every 100th annotated clip is absent) plus the 430 AVA movies,
and one annotated keyframe per clip (the clip's middle second) plus 897 per
movie subsample. Times what the prepare stage does before probing: one scan
of the folder and the file of every keyframe. Prints the time, and the ratio
to a scan of every file name per keyframe (the old way) measured on a
subsample of keyframes and scaled up.

Probing (fps, size, duration) is not timed here (empty files cannot be
probed); ``--probe K`` encodes one short clip and times K probes of it.

    python bench/bench_index.py [--clips 170000] [--probe 200]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data.keyframes import locate_keyframes
from avapipe.data.video import probe_video, write_video
from avapipe.data.video_files import scan_videos

_KINETICS = re.compile(r"^(?P<vid>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


def make_layout(folder: Path, clips: int, seed: int = 0) -> pd.DataFrame:
    """Writes the empty files; returns the annotated keyframes (video_id, timestamp, split)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))
    ids = ["".join(rng.choice(alphabet, 11)) for _ in range(clips)]
    starts = rng.integers(0, 600, clips)
    rows = []
    for i, (youtube_id, start) in enumerate(zip(ids, starts)):
        spans = [(start, start + 10)] + ([(start + 200, start + 210)] if i % 50 == 0 else [])
        for s, e in spans:
            if i % 100 != 1:  # ~1% of annotated clips never downloaded
                (folder / f"{youtube_id}_{s:06d}_{e:06d}.mp4").touch()
            rows.append((youtube_id, s + 5))
    for m in range(430):
        (folder / f"movie{m:06d}.mkv").touch()
        rows += [(f"movie{m:06d}", t) for t in range(902, 1799, 60)]
    return pd.DataFrame(rows, columns=["video_id", "timestamp"]).assign(split="train")


def scan_per_keyframe(folder: Path, keyframes: pd.DataFrame) -> list:
    """The old way: every file name examined for every keyframe."""
    stems = [p.stem for p in folder.iterdir()]
    found = []
    for video_id, t in zip(keyframes["video_id"], keyframes["timestamp"]):
        hit = None
        for stem in stems:
            m = _KINETICS.match(stem)
            if m and m["vid"] == video_id and int(m["start"]) <= t <= int(m["end"]):
                hit = stem
        found.append(hit)
    return found


def probe_cost(folder: Path, count: int) -> float:
    path = folder / "probe.mp4"
    write_video(path, (np.zeros((48, 64, 3), np.uint8) for _ in range(300)), fps=30)
    start = time.perf_counter()
    for _ in range(count):
        probe_video(path)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=170_000)
    parser.add_argument("--subsample", type=int, default=20, help="keyframes for the old way")
    parser.add_argument("--probe", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        keyframes = make_layout(folder, args.clips)
        files = sum(1 for _ in folder.iterdir())
        start = time.perf_counter()
        located = locate_keyframes(keyframes, scan_videos(folder, convention="auto"))
        seconds = time.perf_counter() - start
        found = sum(f is not None for f in located)
        sample = keyframes.sample(args.subsample, random_state=0)
        start = time.perf_counter()
        scan_per_keyframe(folder, sample)
        old = (time.perf_counter() - start) / len(sample) * len(keyframes)
        probe = probe_cost(Path(tmp), args.probe) if args.probe else float("nan")
    print(f"files: {files}, keyframes: {len(keyframes)} ({found} located, "
          f"{len(keyframes) - found} without a file)")
    print(f"scan + locate: {seconds:.2f} s ({seconds / len(keyframes) * 1e6:.1f} µs per keyframe)")
    print(f"a scan per keyframe (scaled from {len(sample)}): {old:.0f} s, {old / seconds:.0f}x slower")
    print(f"probe per used file: {probe * 1e3:.2f} ms → {probe * files:.0f} s for {files} files")


if __name__ == "__main__":
    main()
