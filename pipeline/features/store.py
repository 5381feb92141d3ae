"""The feature store: one Zarr v3 group, row-aligned with parquet index tables.

Layout of ``features.zarr/``::

    persons     [N, C]       person vectors (res5), float16 or float32
    parts       [N, 10, Cp]  part vectors (res4), same rows as persons
    part_valid  [N, 10]      bool; an invalid part's vector is all zero
    objects     [No, C]      object vectors (res5)
    persons.parquet, objects.parquet   input box rows + ``row`` (+ ``copy``)
    videos.parquet                     each video's row ranges
    progress/<i>.done                  only while extraction is under way

Rows. Each video owns a fixed row range, planned up front from the box
tables, starting on a shard boundary and padded to whole shards. A video's
commit therefore rewrites only shards no other video touches: a crash during
a write can only damage the video being written (and zarr replaces shard
files atomically anyway), and a later multi-process writer may give videos to
different processes without two ever sharing a shard. Padding rows hold the
fill value 0; their chunks are never stored, so the cost is a few empty rows
in the index space, not on disk. Within a video rows are ordered by
(copy, timestamp, box_id): the original boxes (copy 0) come first, in time
order, and their jittered copies after them.

Sizes. A chunk (``chunk_rows`` rows, default 64: 295 kB of float16 R50
vectors) is the unit a training read decodes; a shard (``shard_rows``,
default 1024 rows ≈ 4.7 MB) is the unit on disk, so DVC tracks about one
file per array per video instead of one per chunk.

Completion. ``complete: true`` is set only after every video is committed and
the index tables are written; ``open_features`` refuses any other store.
Writers build a store beside the old one and rename it into place
(``avapipe.features.store_writer``); the attribute ``provenance`` records
the parameters that made it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from avapipe.outputs import staging_path
from avapipe.provenance import STORE_ATTRIBUTE
from avapipe.schemas import OBJECTS, PERSONS

STORE_FORMAT = "avapipe.features/1"
NUM_PARTS = 10
DTYPES = {"float16": np.float16, "float32": np.float32}
PERSON_ORDER = ["video_id", "copy", "timestamp", "box_id"]
OBJECT_ORDER = ["video_id", "timestamp", "box_id"]


class StoreError(ValueError):
    """A feature store is missing, foreign, or does not match its inputs."""


class IncompleteStoreError(StoreError):
    """The store was not finished (an interrupted or running extraction)."""


@dataclass(frozen=True)
class StoreLayout:
    """Which row of each array holds which box.

    persons: the person rows to cache, sorted, with ``copy`` and ``row``.
    objects: the object rows, sorted, with ``row``.
    videos: video_id, person_start/person_stop (rows in use), person_end
        (padded), and the same three for objects.
    """

    persons: pd.DataFrame
    objects: pd.DataFrame
    videos: pd.DataFrame
    shard_rows: int

    @property
    def person_rows(self) -> int:
        return int(self.videos["person_end"].max()) if len(self.videos) else 0

    @property
    def object_rows(self) -> int:
        return int(self.videos["object_end"].max()) if len(self.videos) else 0


def plan_layout(*, persons: pd.DataFrame, objects: pd.DataFrame, shard_rows: int) -> StoreLayout:
    """Assigns every person and object row of the tables its store row.

    persons: PERSONS rows, optionally with an int ``copy`` column (0 = the
    original box, k > 0 = its k-th jittered copy); key (video_id, timestamp,
    box_id) unique per copy. objects: OBJECTS rows.
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows={shard_rows} must be >= 1")
    persons = _sorted(_with_copy(persons), PERSON_ORDER)
    objects = _sorted(OBJECTS.validate(objects, source="objects to cache"), OBJECT_ORDER)
    video_ids = sorted(set(persons["video_id"]) | set(objects["video_id"]))
    videos = pd.DataFrame({"video_id": pd.Series(video_ids, dtype="string")})
    for name, table in (("person", persons), ("object", objects)):
        counts = table.groupby("video_id").size().reindex(video_ids, fill_value=0).to_numpy()
        padded = -(-counts // shard_rows) * shard_rows
        end = np.cumsum(padded)
        start = end - padded
        videos[f"{name}_start"], videos[f"{name}_stop"], videos[f"{name}_end"] = start, start + counts, end
        first = np.repeat(start, counts)
        within = table.groupby("video_id", sort=False).cumcount().to_numpy()
        table["row"] = (first + within).astype(np.int64)
    return StoreLayout(persons=persons, objects=objects, videos=videos, shard_rows=shard_rows)


def _with_copy(persons: pd.DataFrame) -> pd.DataFrame:
    copy = persons["copy"].astype(np.int64) if "copy" in persons else pd.Series(0, index=persons.index)
    parts = []
    for k in sorted(copy.unique()):
        if k < 0:
            raise StoreError(f"persons to cache: copy {k} < 0; copies are 0 (original) or k >= 1")
        table = PERSONS.validate(persons[copy == k], source=f"persons to cache (copy {k})")
        parts.append(table.assign(copy=np.int64(k)))
    return pd.concat(parts, ignore_index=True) if parts else PERSONS.empty().assign(copy=np.int64(0))


def _sorted(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def create_store(
    path: Path, *, layout: StoreLayout, person_channels: int, part_channels: int,
    dtype: str, chunk_rows: int, fingerprint: str,
) -> zarr.Group:
    """A new, empty, incomplete store for ``layout`` (replacing an old one of ours)."""
    if dtype not in DTYPES:
        raise ValueError(f"feature dtype {dtype!r} unknown; use one of {sorted(DTYPES)}")
    if chunk_rows < 1 or layout.shard_rows % chunk_rows:
        raise ValueError(
            f"shard_rows={layout.shard_rows} must be a multiple of chunk_rows={chunk_rows}"
        )
    remove_store(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3,
                            attributes={"format": STORE_FORMAT, "complete": False})
    n, no, shard = layout.person_rows, layout.object_rows, layout.shard_rows
    for name, shape, dt in (
        ("persons", (n, person_channels), dtype),
        ("parts", (n, NUM_PARTS, part_channels), dtype),
        ("part_valid", (n, NUM_PARTS), "bool"),
        ("objects", (no, person_channels), dtype),
    ):
        group.create_array(
            name, shape=shape, dtype=dt, chunks=(chunk_rows,) + shape[1:],
            shards=(shard,) + shape[1:], fill_value=0,
            compressors=BloscCodec(cname="zstd", clevel=3),
        )
    # Written last: a store killed while being created has no fingerprint and
    # is never resumed.
    group.update_attributes({"fingerprint": fingerprint, "shard_rows": shard,
                             "chunk_rows": chunk_rows, "dtype": dtype})
    return group


def remove_store(path: Path) -> None:
    """Deletes a store written by this module; refuses to delete anything else."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        return
    if store_attributes(path).get("format") != STORE_FORMAT:
        raise StoreError(
            f"{path}: exists and is not a feature store; move it away or choose "
            "another store path"
        )
    shutil.rmtree(path)


def store_attributes(path: Path) -> dict:
    """The group attributes of the Zarr store at ``path``; {} if there is none."""
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        return {}


def resumable_store(path: Path, *, fingerprint: str) -> zarr.Group | None:
    """The store at ``path`` if it was started for the same inputs, else None."""
    attrs = store_attributes(Path(path))
    if attrs.get("format") == STORE_FORMAT and attrs.get("fingerprint") == fingerprint:
        return zarr.open_group(str(path), mode="r+")
    return None


def done_videos(path: Path) -> set[int]:
    """Positions (in ``layout.videos``) of the videos already committed."""
    progress = Path(path) / "progress"
    return {int(p.stem) for p in progress.glob("*.done")} if progress.is_dir() else set()


def commit_video(group: zarr.Group, *, video: pd.Series, position: int, arrays: dict[str, np.ndarray]) -> None:
    """Writes one video's padded row blocks, then its done marker.

    arrays: persons/parts/part_valid with ``person_end - person_start`` rows
    and objects with ``object_end - object_start`` rows (padding included, so
    that every write covers whole shards).
    """
    for name, value in arrays.items():
        kind = "object" if name == "objects" else "person"
        start, end = int(video[f"{kind}_start"]), int(video[f"{kind}_end"])
        if value.shape[0] != end - start:
            raise StoreError(f"video {video['video_id']}: {name} has {value.shape[0]} rows, "
                             f"its range needs {end - start}")
        if end > start:
            group[name][start:end] = value
    marker = Path(group.store.root) / "progress" / f"{position:06d}.done"
    marker.parent.mkdir(exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(str(video["video_id"]))
    tmp.replace(marker)


def finish_store(group: zarr.Group, *, layout: StoreLayout, record: dict | None = None) -> None:
    """Writes the index tables and marks the store complete; ``record``: the
    provenance record (``avapipe.provenance``) it carries, if any."""
    root = Path(group.store.root)
    _write_index(layout.persons, root / "persons.parquet")
    _write_index(layout.objects, root / "objects.parquet")
    _write_index(layout.videos, root / "videos.parquet")
    marks = {"complete": True} if record is None else {"complete": True, STORE_ATTRIBUTE: record}
    group.update_attributes(marks)
    shutil.rmtree(root / "progress", ignore_errors=True)
    for leftover in root.rglob("*.partial"):  # temp files of writes cut by a kill
        leftover.unlink()


def _write_index(table: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)


@dataclass(frozen=True)
class FeatureStore:
    """A complete store opened for reading: zarr arrays + index tables."""

    path: Path
    group: zarr.Group
    persons: pd.DataFrame
    objects: pd.DataFrame
    videos: pd.DataFrame

    def array(self, name: str) -> zarr.Array:
        return self.group[name]

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) of array ``name``, one read."""
        rows = np.asarray(rows, dtype=np.int64)
        array = self.group[name]
        if rows.size == 0:
            return np.zeros((0,) + array.shape[1:], dtype=array.dtype)
        unique, inverse = np.unique(rows, return_inverse=True)
        return array.get_orthogonal_selection((unique,))[inverse]


def open_features(path: Path) -> FeatureStore:
    """Opens a complete feature store; an unfinished one raises IncompleteStoreError."""
    path = Path(path)
    attrs = store_attributes(path)
    if not path.exists() and staging_path(path).exists():
        raise IncompleteStoreError(
            f"{path}: feature extraction did not finish ({staging_path(path)} holds "
            f"{len(done_videos(staging_path(path)))} finished videos); re-run the features "
            "stage, it resumes from them")
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: not a feature store; run the features stage to write it")
    if attrs.get("complete") is not True:
        raise IncompleteStoreError(
            f"{path}: feature extraction did not finish (no 'complete' mark); "
            "re-run the features stage, it resumes from the committed videos"
        )
    return FeatureStore(
        path=path, group=zarr.open_group(str(path), mode="r"),
        persons=pd.read_parquet(path / "persons.parquet"),
        objects=pd.read_parquet(path / "objects.parquet"),
        videos=pd.read_parquet(path / "videos.parquet"),
    )


def read_person_feature(
    store: FeatureStore, video_id: str, timestamp: int, box_id: int, copy: int = 0
) -> np.ndarray:
    """The person vector [C] of one box of a keyframe."""
    p = store.persons
    hit = p[(p["video_id"] == video_id) & (p["timestamp"] == timestamp)
            & (p["box_id"] == box_id) & (p["copy"] == copy)]
    if len(hit) != 1:
        raise KeyError(
            f"{store.path}: no person (video_id={video_id!r}, timestamp={timestamp}, "
            f"box_id={box_id}, copy={copy}) in persons.parquet"
        )
    return store.read_rows("persons", hit["row"].to_numpy())[0]
