"""Keyframe samples from the feature store, and their collation into head batches.

One sample is one keyframe: all its cached persons, objects, part vectors
and its memory window. The store keeps the rows of a keyframe contiguous
(persons ordered by copy, timestamp, box_id within a video), so a sample is
one slice per array. With ``preload`` the rows in use are read once into
memory, which for a small store makes an epoch a matter of indexing; without
it every sample reads its slices from Zarr (a chunk decode each).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from avapipe.features.memory import MemoryIndex
from avapipe.features.store import FeatureStore

KEYFRAME_COLUMNS = ["video_id", "timestamp"]
PERSON_ARRAYS = ("persons", "parts", "part_valid")


class DatasetError(ValueError):
    """Keyframes, targets or memory do not fit the feature store."""


class _ZarrRows:
    """Reads store rows straight from the Zarr arrays."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def read_slice(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.store.array(name)[start:stop]

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.store.read_rows(name, rows)


class _PreloadedRows:
    """The rows in use of the named arrays, held in memory in store order.

    Videos are padded to whole shards in the store; only each video's used
    range is kept, and ``position`` maps a store row to its row here.
    """

    def __init__(self, store: FeatureStore, names: Sequence[str]) -> None:
        videos = store.videos
        self.arrays, self.position = {}, {}
        for kind, arrays in (("person", [n for n in names if n in PERSON_ARRAYS]),
                             ("object", [n for n in names if n == "objects"])):
            starts = videos[f"{kind}_start"].to_numpy(np.int64)
            stops = videos[f"{kind}_stop"].to_numpy(np.int64)
            total = int(videos[f"{kind}_end"].max()) if len(videos) else 0
            position = np.full(total, -1, np.int64)
            used = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)]
                                  + [np.zeros(0, np.int64)])
            position[used] = np.arange(len(used))
            for name in arrays:
                array = store.array(name)
                self.arrays[name] = np.concatenate(
                    [array[a:b] for a, b in zip(starts, stops)]
                    or [np.zeros((0,) + array.shape[1:], array.dtype)])
                self.position[name] = position

    def read_slice(self, name: str, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return self.arrays[name][:0]
        first = self.position[name][start]
        return self.arrays[name][first:first + stop - start]

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.arrays[name][self.position[name][np.asarray(rows, np.int64)]]


def _row_ranges(table: pd.DataFrame, keys: list[str]) -> dict[tuple, tuple[int, int, int]]:
    """{key: (first table position, first store row, count)} of each group of
    ``table`` (sorted so that groups are contiguous in positions and rows)."""
    if not len(table):
        return {}
    codes = table.groupby(keys, sort=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    counts = np.diff(np.r_[starts, len(table)])
    heads = table.iloc[starts]
    rows = table["row"].to_numpy(np.int64)[starts]
    names = zip(*(heads[k].tolist() for k in keys))
    return {key: (int(s), int(r), int(c)) for key, s, r, c in zip(names, starts, rows, counts)}


class KeyframeDataset(Dataset):
    """Item i: the sample dict of keyframe ``keyframes.iloc[i]`` (see ``__getitem__``).

    store: an open feature store. memory_index: windows for at least these
        keyframes, or None (every memory is empty).
    keyframes: video_id, timestamp of the samples.
    targets: float32 [len(store.persons), A] multi-hot, aligned with the rows
        of ``store.persons`` (all copies), or None (prediction).
    with_parts: read part vectors (Pose-Part needs them).
    preload: read the used rows into memory once instead of per sample.
    random_copy: pick one of the keyframe's stored box copies (0 = original,
        k > 0 jittered) at random per sample; else always copy 0.
    """

    def __init__(self, store: FeatureStore, memory_index: MemoryIndex | None, *,
                 keyframes: pd.DataFrame, targets: np.ndarray | None, with_parts: bool,
                 preload: bool, random_copy: bool = False) -> None:
        self.keyframes = _checked_keyframes(keyframes)
        self.keys = list(zip(self.keyframes["video_id"], self.keyframes["timestamp"].tolist()))
        self.targets = _checked_targets(targets, store)
        self.with_parts, self.random_copy = with_parts, random_copy
        names = ["persons", "objects"] + (["parts", "part_valid"] if with_parts else [])
        self.source = _PreloadedRows(store, names) if preload else _ZarrRows(store)
        persons = store.persons
        self.box_ids = persons["box_id"].to_numpy(np.int64)
        self.boxes = persons[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
        self.person_ranges = _row_ranges(persons, ["video_id", "timestamp", "copy"])
        self.copies = persons.groupby(["video_id", "timestamp"])["copy"].unique().to_dict()
        self.object_ranges = _row_ranges(store.objects, KEYFRAME_COLUMNS)
        self.memory = _MemoryWindows(memory_index, self.keyframes)
        self.channels = store.array("persons").shape[1]

    def __len__(self) -> int:
        return len(self.keyframes)

    @property
    def metainfo(self) -> dict:
        """What mmengine records about a dataset in checkpoints (and compares on resume)."""
        return {"keyframes": len(self), "channels": int(self.channels)}

    def __getitem__(self, i: int) -> dict:
        """video_id: str, timestamp: int; box_id Long[P], boxes Tensor[P, 4]
        normalized xyxy; persons Tensor[P, C]; objects Tensor[O, C]; memory
        Tensor[M, C], memory_offset Long[M]; parts Tensor[P, 10, Cp] and
        part_valid Bool[P, 10] (with_parts); targets Tensor[P, A] (with targets)."""
        key = self.keys[i]
        first, row, count = self.person_ranges.get(key + (self._copy(key),), (0, 0, 0))
        sample = {
            "video_id": key[0], "timestamp": key[1],
            "box_id": torch.from_numpy(self.box_ids[first:first + count]),
            "boxes": torch.from_numpy(self.boxes[first:first + count]),
            "persons": self._features("persons", row, count),
            "objects": self._objects(key),
            **self.memory.read(self.source, i, self.channels),
        }
        if self.with_parts:
            sample["parts"] = self._features("parts", row, count)
            sample["part_valid"] = torch.from_numpy(
                self.source.read_slice("part_valid", row, row + count).astype(bool))
        if self.targets is not None:
            sample["targets"] = torch.from_numpy(self.targets[first:first + count])
        return sample

    def _copy(self, key: tuple) -> int:
        copies = self.copies.get(key)
        if not self.random_copy or copies is None or len(copies) < 2:
            return 0
        return int(copies[torch.randint(len(copies), ()).item()])

    def _features(self, name: str, row: int, count: int) -> Tensor:
        return torch.from_numpy(self.source.read_slice(name, row, row + count).astype(np.float32))

    def _objects(self, key: tuple) -> Tensor:
        _, row, count = self.object_ranges.get(key, (0, 0, 0))
        return self._features("objects", row, count)


def _checked_keyframes(keyframes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in KEYFRAME_COLUMNS if c not in keyframes.columns]
    if missing:
        raise DatasetError(f"keyframes table lacks columns {missing}; pass video_id, timestamp")
    table = keyframes[KEYFRAME_COLUMNS].astype({"video_id": str, "timestamp": np.int64})
    return table.drop_duplicates().reset_index(drop=True)


def _checked_targets(targets: np.ndarray | None, store: FeatureStore) -> np.ndarray | None:
    if targets is None:
        return None
    if targets.ndim != 2 or len(targets) != len(store.persons):
        raise DatasetError(
            f"targets have shape {targets.shape}; expected [{len(store.persons)}, A], one "
            f"row per row of {store.path}/persons.parquet (match_targets on store.persons)")
    return targets.astype(np.float32, copy=False)


class _MemoryWindows:
    """Each keyframe's memory, as gather_memory gives it for one keyframe, from
    index arrays held in numpy (per-sample pandas indexing would dominate an epoch)."""

    def __init__(self, index: MemoryIndex | None, keyframes: pd.DataFrame) -> None:
        window = _window_rows(index, keyframes)
        if index is None:
            self.lo = self.hi = np.zeros(len(keyframes), np.int64)
            self.rows = self.seconds = np.zeros(0, np.int64)
        else:
            self.lo = index.windows["lo"].to_numpy(np.int64)[window]
            self.hi = index.windows["hi"].to_numpy(np.int64)[window]
            self.rows = index.entries["row"].to_numpy(np.int64)
            self.seconds = index.entries["timestamp"].to_numpy(np.int64)
        self.keyframe_seconds = keyframes["timestamp"].to_numpy(np.int64)

    def read(self, source, i: int, channels: int) -> dict[str, Tensor]:
        """memory float32 [M, C] and memory_offset Long[M] of keyframe i."""
        lo, hi = self.lo[i], self.hi[i]
        vectors = source.read_rows("persons", self.rows[lo:hi]).astype(np.float32)
        return {"memory": torch.from_numpy(vectors.reshape(hi - lo, channels)),
                "memory_offset": torch.from_numpy(self.seconds[lo:hi] - self.keyframe_seconds[i])}


def _window_rows(index: MemoryIndex | None, keyframes: pd.DataFrame) -> np.ndarray:
    """Row of each keyframe in index.windows, -1 for every row without an index."""
    if index is None:
        return np.full(len(keyframes), -1, np.int64)
    windows = index.windows[KEYFRAME_COLUMNS].astype({"video_id": str, "timestamp": np.int64})
    lookup = pd.Series(np.arange(len(windows)), index=pd.MultiIndex.from_frame(windows))
    rows = lookup.reindex(pd.MultiIndex.from_frame(keyframes)).to_numpy()
    if np.isnan(rows).any():
        missing = keyframes[np.isnan(rows)].iloc[0].tolist()
        raise DatasetError(
            f"keyframe {missing} has no memory window; rebuild the memory index with "
            "these keyframes (the memory stage) or pass memory_index=None")
    return rows.astype(np.int64)


def _padded(tensors: list[Tensor], fill: float = 0) -> tuple[Tensor, Tensor]:
    """Tensors [n_b, ...] -> (Tensor[B, max n_b, ...] padded with fill, Bool[B, max n_b])."""
    lengths = torch.tensor([len(t) for t in tensors])
    stacked = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=fill)
    mask = torch.arange(stacked.shape[1])[None, :] < lengths[:, None]
    return stacked, mask


def collate_keyframes(samples: Sequence[dict]) -> dict:
    """KeyframeDataset samples -> one batch in ActionHead's masked format.

    persons Tensor[B, P, C], person_mask Bool[B, P]; objects Tensor[B, O, C],
    object_mask Bool[B, O]; memory Tensor[B, M, C], memory_mask Bool[B, M],
    memory_offset Long[B, M]; parts Tensor[B, P, 10, Cp], part_mask Bool[B, P, 10]
    (if the samples have parts); targets Tensor[B, P, A] (if they have targets);
    boxes Tensor[B, P, 4], box_id Long[B, P] (-1 at padding), video_id list[str],
    timestamp Long[B]. P, O, M are the batch's largest counts (0 is fine).
    """
    if not samples:
        raise DatasetError("collate_keyframes got no samples")
    column = {key: [s[key] for s in samples] for key in samples[0]}
    persons, person_mask = _padded(column["persons"])
    objects, object_mask = _padded(column["objects"])
    memory, memory_mask = _padded(column["memory"])
    batch = {
        "persons": persons, "person_mask": person_mask,
        "objects": objects, "object_mask": object_mask,
        "memory": memory, "memory_mask": memory_mask,
        "memory_offset": _padded(column["memory_offset"])[0],
        "boxes": _padded(column["boxes"])[0],
        "box_id": _padded(column["box_id"], fill=-1)[0],
        "video_id": list(column["video_id"]),
        "timestamp": torch.tensor(column["timestamp"], dtype=torch.int64),
    }
    if "parts" in column:
        batch["parts"] = _padded(column["parts"])[0]
        batch["part_mask"] = _padded(column["part_valid"], fill=False)[0]
    if "targets" in column:
        batch["targets"] = _padded(column["targets"])[0]
    return batch
