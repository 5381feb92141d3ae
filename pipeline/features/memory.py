"""The long-term memory bank (AlphAction / LFB) as an index into the person features.

For a keyframe at second t the memory is the person vectors of the same
video at seconds t−L … t+L (the keyframe itself included), at most K per
second. Nothing is copied: the index keeps the capped person rows in
(video, timestamp, rank) order, so every keyframe's memory is one slice
``[lo, hi)`` of that list, and a batch of keyframes is gathered with a single
read of the persons array.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from avapipe.features.store import FeatureStore

# How the K kept persons of a second are chosen.
RANKINGS = {
    "box_id": (["box_id"], [True]),
    "score": (["score", "box_id"], [False, True]),
}


@dataclass(frozen=True)
class MemoryIndex:
    """entries: video_id, timestamp, box_id, row (store row), the kept persons
    in memory order. windows: video_id, timestamp, lo, hi per keyframe, its
    memory being ``entries[lo:hi]``."""

    entries: pd.DataFrame
    windows: pd.DataFrame
    span: int
    per_second: int


def build_memory_index(
    *, persons: pd.DataFrame, keyframes: pd.DataFrame, span: int, per_second: int,
    rank_by: str = "box_id",
) -> MemoryIndex:
    """persons: the store's person index (video_id, timestamp, box_id, row,
    score, copy); only original boxes (copy 0) enter the memory.
    keyframes: (video_id, timestamp) of the keyframes that need a memory.
    span: L seconds each side. per_second: K."""
    if span < 0 or per_second < 1:
        raise ValueError(f"memory span={span} must be >= 0 and per_second={per_second} >= 1")
    if rank_by not in RANKINGS:
        raise ValueError(f"memory rank_by={rank_by!r} unknown; use one of {sorted(RANKINGS)}")
    entries = _capped_entries(persons, per_second, rank_by)
    windows = keyframes[["video_id", "timestamp"]].drop_duplicates().reset_index(drop=True)
    lo = np.zeros(len(windows), np.int64)
    hi = np.zeros(len(windows), np.int64)
    starts = entries.groupby("video_id", sort=False).indices
    for video_id, kf in windows.groupby("video_id", sort=False).indices.items():
        at = starts.get(video_id)
        if at is None:
            continue  # a video without persons: every window is empty
        seconds = entries["timestamp"].to_numpy()[at]
        t = windows["timestamp"].to_numpy()[kf]
        lo[kf] = at[0] + np.searchsorted(seconds, t - span, side="left")
        hi[kf] = at[0] + np.searchsorted(seconds, t + span, side="right")
    windows["lo"], windows["hi"] = lo, hi
    return MemoryIndex(entries=entries, windows=windows, span=span, per_second=per_second)


def _capped_entries(persons: pd.DataFrame, per_second: int, rank_by: str) -> pd.DataFrame:
    missing = {"video_id", "timestamp", "box_id", "row", *RANKINGS[rank_by][0]} - set(persons)
    if missing:
        raise KeyError(f"person index lacks columns {sorted(missing)} needed by the memory")
    table = persons[persons["copy"] == 0] if "copy" in persons else persons
    by, ascending = RANKINGS[rank_by]
    table = table.sort_values(["video_id", "timestamp", *by], ascending=[True, True, *ascending],
                              kind="stable")
    rank = table.groupby(["video_id", "timestamp"], sort=False).cumcount()
    kept = table[rank.to_numpy() < per_second]
    return kept[["video_id", "timestamp", "box_id", "row"]].reset_index(drop=True)


def gather_memory(
    store: FeatureStore, index: MemoryIndex, keyframe_rows: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The memories of keyframes ``index.windows.iloc[keyframe_rows]``, padded.

    Returns features float32 [B, M, C], offsets int64 [B, M] (memory second
    minus keyframe second, in [-L, L]) and mask bool [B, M] (True = real),
    M being the longest memory of the batch; padded slots are zero.
    """
    windows = index.windows.iloc[np.asarray(keyframe_rows, dtype=np.int64)]
    lo, hi = windows["lo"].to_numpy(), windows["hi"].to_numpy()
    lengths = hi - lo
    picks = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] + [np.zeros(0, np.int64)])
    vectors = store.read_rows("persons", index.entries["row"].to_numpy()[picks])
    batch, width = len(windows), int(lengths.max(initial=0))
    mask = np.arange(width)[None, :] < lengths[:, None]
    features = np.zeros((batch, width, vectors.shape[1]), np.float32)
    offsets = np.zeros((batch, width), np.int64)
    features[mask] = vectors
    seconds = index.entries["timestamp"].to_numpy()[picks]
    offsets[mask] = seconds - np.repeat(windows["timestamp"].to_numpy(), lengths)
    return torch.from_numpy(features), torch.from_numpy(offsets), torch.from_numpy(mask)


def save_memory_index(index: MemoryIndex, path: Path) -> None:
    """Writes the index as a folder (two parquet tables + memory.json), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index.entries.to_parquet(tmp / "entries.parquet", index=False)
    index.windows.to_parquet(tmp / "windows.parquet", index=False)
    (tmp / "memory.json").write_text(json.dumps(
        {"span": index.span, "per_second": index.per_second}))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_memory_index(path: Path) -> MemoryIndex:
    path = Path(path)
    if not (path / "memory.json").is_file():
        raise FileNotFoundError(f"{path}: no memory index here; run the memory stage")
    meta = json.loads((path / "memory.json").read_text())
    return MemoryIndex(entries=pd.read_parquet(path / "entries.parquet"),
                       windows=pd.read_parquet(path / "windows.parquet"),
                       span=int(meta["span"]), per_second=int(meta["per_second"]))
