"""The extraction loop: decoded clips → SlowFast → RoI vectors → feature store.

DataLoader workers decode the clips of a batch (keyframes of one video) while
the main thread runs the backbone, and a writer thread commits each finished
video to the store, so decoding and writing overlap with compute. A batch
never spans two videos: a resumed run then forms exactly the batches an
uninterrupted one would, which keeps the arrays bit-identical.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avapipe.data.video import read_clip
from avapipe.distributed import barrier, dist_info, run_on_main
from avapipe.features.backbone import (
    ClipSpec, FeatureExtractor, boxes_to_rois, clips_to_pathways, enlarge_rois, pool_rois,
)
from avapipe.features.store import DTYPES, NUM_PARTS, StoreLayout, plan_layout
from avapipe.features.store_writer import VideoWriter, finish_writing, start_writing
from avapipe.outputs import output_lock, staging_path
from avapipe.schemas import BOX_COLUMNS, KEYFRAMES, PART_BOX_COLUMNS, PART_NAMES, PARTS


@dataclass(frozen=True)
class ExtractSummary:
    videos: int  # videos in the store
    computed: int  # videos computed by this call (the rest were already committed)
    keyframes: int  # keyframes passed through the backbone by this call
    person_rows: int
    object_rows: int


@dataclass(frozen=True)
class _Batch:
    position: int  # the video's position in layout.videos
    video_path: str
    times: tuple[float, ...]  # keyframe positions in the file, seconds
    keys: tuple[int, ...]  # keyframe timestamps
    last_of_video: bool


class _ClipBatches(Dataset):
    """Item i: the uint8 clips [B, T, H, W, 3] of batch i, decoded in a worker."""

    def __init__(self, batches: list[_Batch], clip: ClipSpec) -> None:
        self.batches, self.clip = batches, clip

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        b, c = self.batches[i], self.clip
        return torch.from_numpy(np.stack([
            read_clip(b.video_path, center_sec=t, num_frames=c.num_frames,
                      stride=c.stride, short_side=c.short_side, fps=c.fps)
            for t in b.times
        ]))


def extract_features(
    *,
    keyframes: pd.DataFrame,
    persons: pd.DataFrame,
    objects: pd.DataFrame,
    parts: pd.DataFrame,
    extractor: FeatureExtractor,
    clip: ClipSpec,
    store_path: Path,
    dtype: str = "float16",
    batch_size: int = 4,
    num_workers: int = 1,
    device: str = "cpu",
    enlarge: tuple[float, float] = (0.0, 0.0),
    shard_rows: int = 1024,
    chunk_rows: int = 64,
    progress: bool = True,
    record: dict | None = None,
) -> ExtractSummary:
    """Caches the RoI vectors of ``persons`` (+ their ``parts``) and ``objects``.

    keyframes: KEYFRAMES rows (video_path, time_sec locate each clip).
    persons: PERSONS rows to cache — whichever boxes the caller chose for the
        split — optionally with a ``copy`` column for jittered copies.
    objects: OBJECTS rows. parts: PARTS rows; persons without one get invalid
        parts. enlarge: (x, y) growth of the person boxes for pooling only
        (``enlarge_rois``); the stored boxes stay as given. record: the
        provenance record the store carries (``avapipe.provenance``).

    The store is written as ``avapipe.features.store_writer`` describes: one
    writer at a time (a second one fails at once, naming the first's pid),
    built beside the old store and renamed into place when complete, so that
    a failure leaves the old store as it was. A run with the same inputs as
    an interrupted one continues it; a complete store for the same inputs
    is left as it is.

    Under torch.distributed (see avapipe.distributed) every process calls this
    with the same arguments: rank 0 creates or resumes the store, each process
    computes every world_size-th video still to do, and rank 0 completes the
    store once all have committed — the arrays equal a one-process run's.
    The summary's ``computed`` and ``keyframes`` count this process's share.
    """
    keyframes = KEYFRAMES.validate(keyframes, source="keyframes")
    layout = plan_layout(persons=persons, objects=objects, shard_rows=shard_rows)
    _check_keyframes_known(layout, keyframes)
    part_boxes, part_valid = _part_boxes(layout.persons, PARTS.validate(parts, source="parts"))
    fingerprint = _fingerprint(layout, keyframes, part_boxes, part_valid, extractor,
                               {"clip": asdict(clip), "dtype": dtype, "chunk_rows": chunk_rows,
                                "enlarge": [float(f) for f in enlarge],
                                # batch composition and device can change the last bits
                                "batch_size": batch_size, "device": torch.device(device).type})
    rank, world_size = dist_info()
    with ExitStack() as held:
        def start() -> list[int] | None:  # rank 0 only; the others learn what is left
            held.enter_context(output_lock(store_path))
            return start_writing(store_path, layout=layout, dtype=dtype, chunk_rows=chunk_rows,
                                 person_channels=extractor.person_channels,
                                 part_channels=extractor.part_channels,
                                 fingerprint=fingerprint, record=record)

        todo = run_on_main(start)
        if todo is None:  # complete already
            return _summary(layout, computed=0, keyframes=0)
        # Videos own whole shards, so processes with disjoint videos never share a file.
        mine = todo[rank::world_size]
        batches = _plan_batches(layout, keyframes, mine, batch_size)
        buffers = _Buffers(layout, extractor.eval().to(device), DTYPES[dtype], part_boxes,
                           part_valid, enlarge=enlarge)
        _compute(batches, buffers, zarr.open_group(str(staging_path(store_path)), mode="r+"),
                 clip=clip, num_workers=num_workers, device=device,
                 progress=progress and rank == 0)
        barrier()
        if rank == 0:
            finish_writing(store_path, layout=layout, record=record)
        barrier()  # every process returns with the store complete
    return _summary(layout, computed=len(mine), keyframes=sum(len(b.times) for b in batches))


def _compute(batches: list[_Batch], buffers: _Buffers, group: zarr.Group, *, clip: ClipSpec,
             num_workers: int, device: str, progress: bool) -> None:
    """Runs the backbone over ``batches`` and commits each finished video to ``group``."""
    loader = DataLoader(_ClipBatches(batches, clip), batch_size=None, num_workers=num_workers,
                        pin_memory=device.startswith("cuda"))
    writer = VideoWriter(group, buffers.layout)
    try:
        with torch.inference_mode():
            for batch, clips in tqdm(zip(batches, loader), total=len(batches),
                                     disable=not progress, desc="features"):
                buffers.add(batch, clips.to(device, non_blocking=True), alpha=clip.alpha)
                if batch.last_of_video:
                    writer.submit(batch.position, buffers.take(batch.position))
    finally:  # commit what is finished even when a later clip fails: a re-run resumes there
        writer.close()


def _summary(layout: StoreLayout, *, computed: int, keyframes: int) -> ExtractSummary:
    return ExtractSummary(videos=len(layout.videos), computed=computed, keyframes=keyframes,
                          person_rows=len(layout.persons), object_rows=len(layout.objects))


def _check_keyframes_known(layout: StoreLayout, keyframes: pd.DataFrame) -> None:
    key = ["video_id", "timestamp"]
    for name, table in (("persons", layout.persons), ("objects", layout.objects)):
        found = table[key].merge(keyframes[key], on=key, how="left", indicator=True)["_merge"]
        if (found != "both").any():
            video_id, timestamp = table[key].iloc[int(np.flatnonzero(found != "both")[0])]
            raise KeyError(
                f"{name} to cache: keyframe ({video_id!r}, {timestamp}) is not in the "
                "keyframes table; pass the keyframes of every split being cached"
            )


def _part_boxes(persons: pd.DataFrame, parts: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Part boxes [N, 10, 4] and validity [N, 10] of every person row (all copies)."""
    key = ["video_id", "timestamp", "box_id"]
    joined = persons[key].merge(parts, on=key, how="left", validate="many_to_one")
    boxes = np.stack([joined[list(cols)].to_numpy(np.float32) for cols in PART_BOX_COLUMNS], axis=1)
    valid = np.stack([joined[f"{p}_valid"].eq(True).to_numpy(bool) for p in PART_NAMES], axis=1)
    return np.nan_to_num(boxes), valid


def _fingerprint(layout, keyframes, part_boxes, part_valid, extractor, params: dict) -> str:
    """Hash of everything the arrays depend on: boxes, clips, params, weights."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for table in (layout.persons, layout.objects, keyframes):
        h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    h.update(part_boxes.tobytes())
    h.update(part_valid.tobytes())
    for name, tensor in sorted(extractor.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _plan_batches(layout: StoreLayout, keyframes: pd.DataFrame, todo: list[int], batch_size: int) -> list[_Batch]:
    """Batches of up to ``batch_size`` keyframes with at least one box, per video
    and file (a YouTube id's keyframes may lie in several Kinetics clips)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    key = ["video_id", "timestamp"]
    boxed = pd.concat([layout.persons[key], layout.objects[key]]).drop_duplicates()
    by_video = dict(tuple(keyframes.merge(boxed, on=key).sort_values(key).groupby("video_id")))
    batches = []
    for position in todo:  # every video of the layout has a box at some keyframe
        rows = by_video[layout.videos["video_id"].iloc[position]]
        for path, in_file in rows.groupby("video_path", sort=False):
            for s in range(0, len(in_file), batch_size):
                part = in_file.iloc[s:s + batch_size]
                batches.append(_Batch(
                    position=position, video_path=str(path),
                    times=tuple(part["time_sec"].astype(float)),
                    keys=tuple(part["timestamp"].astype(int)), last_of_video=False))
        batches[-1] = replace(batches[-1], last_of_video=True)
    return batches


class _Buffers:
    """Per-video arrays (padded to the video's row range) being filled batch by batch."""

    def __init__(self, layout: StoreLayout, extractor: FeatureExtractor, dtype, part_boxes, part_valid,
                 *, enlarge: tuple[float, float]) -> None:
        self.layout, self.extractor, self.dtype, self.enlarge = layout, extractor, dtype, enlarge
        self.part_boxes, self.part_valid = part_boxes, part_valid
        self.person_boxes = layout.persons[list(BOX_COLUMNS)].to_numpy(np.float32)
        self.object_boxes = layout.objects[list(BOX_COLUMNS)].to_numpy(np.float32)
        self.person_groups = _row_groups(layout.persons)
        self.object_groups = _row_groups(layout.objects)
        self.open: dict[int, dict[str, np.ndarray]] = {}

    def _new(self, position: int) -> dict[str, np.ndarray]:
        v = self.layout.videos.iloc[position]
        n, no = int(v.person_end - v.person_start), int(v.object_end - v.object_start)
        c, cp = self.extractor.person_channels, self.extractor.part_channels
        return {"persons": np.zeros((n, c), self.dtype), "parts": np.zeros((n, NUM_PARTS, cp), self.dtype),
                "part_valid": np.zeros((n, NUM_PARTS), bool), "objects": np.zeros((no, c), self.dtype)}

    def take(self, position: int) -> dict[str, np.ndarray]:
        return self.open.pop(position, None) or self._new(position)

    def add(self, batch: _Batch, clips: torch.Tensor, *, alpha: int) -> None:
        """Runs the backbone on one batch and pools every box of its keyframes."""
        arrays = self.open.setdefault(batch.position, self._new(batch.position))
        video = self.layout.videos.iloc[batch.position]
        maps = self.extractor(*clips_to_pathways(clips, alpha=alpha))
        keys = [(video.video_id, t) for t in batch.keys]

        def pool(stage_maps, boxes: np.ndarray, clip_of: np.ndarray, enlarge=(0.0, 0.0)) -> np.ndarray:
            size = dict(height=clips.shape[2], width=clips.shape[3])
            rois = boxes_to_rois(torch.from_numpy(boxes).to(clips.device),
                                 torch.from_numpy(clip_of).to(clips.device), **size)
            rois = enlarge_rois(rois, enlarge=enlarge, **size)
            return pool_rois(stage_maps, rois).float().cpu().numpy().astype(self.dtype)

        idx, clip_of = _rows_of(self.person_groups, keys)
        rows = self.layout.persons["row"].to_numpy()[idx] - int(video.person_start)
        arrays["persons"][rows] = pool(maps.res5, self.person_boxes[idx], clip_of, self.enlarge)
        valid = self.part_valid[idx]
        parts = np.zeros((len(idx), NUM_PARTS, self.extractor.part_channels), self.dtype)
        parts[valid] = pool(maps.res4, self.part_boxes[idx][valid],
                            np.repeat(clip_of[:, None], NUM_PARTS, axis=1)[valid])
        arrays["parts"][rows], arrays["part_valid"][rows] = parts, valid
        idx, clip_of = _rows_of(self.object_groups, keys)
        rows = self.layout.objects["row"].to_numpy()[idx] - int(video.object_start)
        arrays["objects"][rows] = pool(maps.res5, self.object_boxes[idx], clip_of)


def _row_groups(table: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """(video_id, timestamp) → positions of the table's rows at that keyframe."""
    groups = table.groupby(["video_id", "timestamp"], sort=False).indices
    return {(str(v), int(t)): np.asarray(i) for (v, t), i in groups.items()}


def _rows_of(groups: dict, keys: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Table positions of the rows at ``keys`` and, for each, its clip within the batch."""
    found = [groups.get((str(v), int(t)), np.zeros(0, np.int64)) for v, t in keys]
    clip_of = np.concatenate([np.full(len(f), i) for i, f in enumerate(found)]).astype(np.int64)
    return np.concatenate(found).astype(np.int64), clip_of


def jittered_copies(persons: pd.DataFrame, *, copies: int, max_shift: float, seed: int) -> pd.DataFrame:
    """``persons`` plus ``copies`` jittered copies of each box (column ``copy``).

    Each corner coordinate moves by up to ``max_shift`` × the box's width
    (height), uniformly at random, then is clipped to the frame — a stand-in
    for AlphAction's box augmentation. copy 0 is the original table.
    """
    rng = np.random.default_rng(seed)
    out = [persons.assign(copy=np.int64(0))]
    box = persons[list(BOX_COLUMNS)].to_numpy(np.float64)
    size = np.stack([box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]] * 2, axis=1)
    for k in range(1, copies + 1):
        moved = np.clip(box + rng.uniform(-max_shift, max_shift, box.shape) * size, 0.0, 1.0)
        lo, hi = np.minimum(moved[:, :2], moved[:, 2:]), np.maximum(moved[:, :2], moved[:, 2:])
        out.append(persons.assign(**dict(zip(BOX_COLUMNS, np.concatenate([lo, hi], 1).T)),
                                  copy=np.int64(k)))
    return pd.concat(out, ignore_index=True)
