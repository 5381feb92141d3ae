"""Writing a feature store: one writer at a time, built beside the old store, resumable.

A store at ``path`` is never written in place. Its writer holds
``<path>.lock`` (``avapipe.outputs.output_lock``), builds the new store in
``<path>.partial`` and renames it into place once complete; a crash leaves
the old store as it was and the partial one where it was, and the next run
for the same inputs (same fingerprint) continues the partial one from its
committed videos. That holds under ``dvc repro`` as well: DVC removes the
old output before it runs the stage, but it knows nothing of the sibling.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
import zarr

from avapipe.features.store import (
    STORE_FORMAT, StoreError, StoreLayout, commit_video, create_store, done_videos,
    finish_store, resumable_store, store_attributes,
)
from avapipe.outputs import publish, restore_interrupted, staging_path
from avapipe.provenance import STORE_ATTRIBUTE


def start_writing(store_path: Path, *, layout: StoreLayout, dtype: str, chunk_rows: int,
                  person_channels: int, part_channels: int, fingerprint: str,
                  record: dict | None) -> list[int] | None:
    """Prepares ``staging_path(store_path)`` (under the caller's lock) and returns
    the positions of the videos still to compute there, or None when
    ``store_path`` is already complete for these inputs (its record is then
    brought up to date: params that leave the arrays as they are may differ)."""
    store_path = Path(store_path)
    restore_interrupted(store_path)
    attrs = store_attributes(store_path)
    if store_path.exists() and any(store_path.iterdir()) and attrs.get("format") != STORE_FORMAT:
        raise StoreError(f"{store_path}: exists and is not a feature store; move it away "
                         "or choose another store path")
    done = resumable_store(store_path, fingerprint=fingerprint)
    if done is not None and done.attrs.get("complete") is True:
        if record is not None and done.attrs.get(STORE_ATTRIBUTE) != record:
            done.update_attributes({STORE_ATTRIBUTE: record})
        return None
    staging = staging_path(store_path)
    group = resumable_store(staging, fingerprint=fingerprint)
    if group is not None and group.attrs.get("complete") is True:
        return []  # finished, not yet renamed into place
    if group is None:
        create_store(staging, layout=layout, dtype=dtype, chunk_rows=chunk_rows,
                     person_channels=person_channels, part_channels=part_channels,
                     fingerprint=fingerprint)
    return sorted(set(range(len(layout.videos))) - done_videos(staging))


def finish_writing(store_path: Path, *, layout: StoreLayout, record: dict | None) -> None:
    """Completes the staged store and puts it in place of ``store_path``."""
    staging = staging_path(store_path)
    finish_store(zarr.open_group(str(staging), mode="r+"), layout=layout, record=record)
    publish(staging, Path(store_path))


class VideoWriter:
    """A background thread that commits finished videos in submission order."""

    def __init__(self, group: zarr.Group, layout: StoreLayout) -> None:
        self.group, self.layout = group, layout
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="feature-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    position, arrays = item
                    commit_video(self.group, video=self.layout.videos.iloc[position],
                                 position=position, arrays=arrays)
                except BaseException as err:  # re-raised in the main thread
                    self.error = err

    def submit(self, position: int, arrays: dict[str, np.ndarray]) -> None:
        self._raise_error()
        self.queue.put((position, arrays))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing the feature store failed: {self.error}") from self.error
