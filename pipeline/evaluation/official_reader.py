"""What the official AVA evaluator's reader does with the rows of a CSV.

ActivityNet ``get_ava_performance.py`` (the version since May 2020) reads a
ground-truth or result CSV with ``read_csv``:

- A keyframe ("image") is the key ``"%s,%.6f" % (video_id, Decimal(timestamp))``;
  ``KeyframeCodes`` numbers these keys (``ava.keyframe_seconds``).
- Every key of the ground truth, two-column rows included, is an "included key";
  ``run_evaluation`` ignores detections on any other keyframe
  (``included_keys``; avapipe's exclusions take keys out of this set).
- Rows whose action is not in the label map are dropped. The rest go into one
  heap per keyframe of tuples ``(score, action, y1, x1, y2, x2)``; for
  detections the heap holds at most 50: a new row replaces the heap's smallest
  tuple only if its score is strictly greater than that tuple's score. Each
  keyframe's rows are then sorted by descending score, stably over the heap's
  list order. The "score" of a ground-truth row is its 8th column, the person
  id, or 1.0 for a 7-column row; it only orders the GT boxes.

``official_rows`` reproduces the kept rows in the order handed on (vectorized,
all heaps in lockstep); ``kept_positions`` tells which rows of a table the
reader keeps, which is what a challenge result file should contain.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from avapipe.data import ava


class KeyframeCodes:
    """Integer codes for the official keyframe keys of the rows of ``tables``
    (each with ``video_id, timestamp``): two rows share a code iff their keys
    are equal, so ``0902``, ``902`` and ``902.0000001`` share one."""

    def __init__(self, tables: Sequence[pd.DataFrame]):
        for table in tables:
            if {"video_id", "timestamp"} - set(table.columns):
                raise ValueError(f"a keyframe table has columns {list(table.columns)}; "
                                 "expected video_id, timestamp")
        videos = pd.concat([t["video_id"] for t in tables], ignore_index=True).astype(str)
        video, uniques = pd.factorize(videos)
        self._videos = pd.Index(uniques)
        timestamps = np.concatenate([t["timestamp"].to_numpy(np.float64) for t in tables]
                                    + [np.zeros(0)])
        # keyframe_seconds on the distinct values only: a few per second of video
        raw, raw_code = np.unique(timestamps, return_inverse=True)
        self._seconds, second_code = np.unique(ava.keyframe_seconds(raw), return_inverse=True)
        codes = video * len(self._seconds) + second_code[raw_code]
        ends = np.cumsum([len(t) for t in tables])
        self._tables = list(tables)  # keeps the ids below valid
        self._known = {id(t): c for t, c in zip(tables, np.split(codes, ends[:-1]))}

    def of(self, table: pd.DataFrame) -> np.ndarray:
        """Int64[len(table)] codes >= 0; -1 for a key not in the tables."""
        if id(table) in self._known:
            return self._known[id(table)]
        video = self._videos.get_indexer(table["video_id"].astype(str))
        seconds = ava.keyframe_seconds(table["timestamp"])
        second = np.searchsorted(self._seconds, seconds)
        known = (video >= 0) & (second < len(self._seconds))
        known[known] &= self._seconds[second[known]] == seconds[known]
        return np.where(known, video * len(self._seconds) + second, -1)


def included_keys(codes: KeyframeCodes, *, groundtruth: pd.DataFrame,
                  empty_keyframes: pd.DataFrame | None,
                  excluded: pd.DataFrame | None) -> np.ndarray:
    """Sorted codes of the keyframes that are scored: those of every GT row
    (of any class) and of the two-column GT rows, less the excluded ones."""
    keys = codes.of(groundtruth)
    if empty_keyframes is not None:
        keys = np.concatenate([keys, codes.of(empty_keyframes)])
    keys = np.unique(keys)
    if excluded is not None:
        keys = np.setdiff1d(keys, codes.of(excluded))
    return keys


def official_rows(table: pd.DataFrame, key: np.ndarray, label_ids: np.ndarray,
                  included: np.ndarray | None, capacity: int | None) -> pd.DataFrame:
    """The rows of ``table`` the official reader keeps on ``included`` keys (all
    keys if None), in the order it hands them on: columns key, action_id,
    score, x1..y2."""
    positions = kept_positions(table, key, label_ids, included, capacity)
    return pd.DataFrame({
        "key": key[positions], "action_id": table["action_id"].to_numpy(np.int64)[positions],
        "score": _reader_scores(table)[positions],
        **{c: table[c].to_numpy(np.float64)[positions] for c in ("x1", "y1", "x2", "y2")},
    })


def kept_positions(table: pd.DataFrame, key: np.ndarray, label_ids: np.ndarray | None,
                   included: np.ndarray | None, capacity: int | None) -> np.ndarray:
    """Positions in ``table`` of the rows the official reader keeps, in its
    order: by keyframe in first-seen order, then descending score, ties in the
    order of its heap's list (module docstring). label_ids None: every class."""
    action = table["action_id"].to_numpy(np.int64)
    keep = np.ones(len(table), dtype=bool) if label_ids is None else np.isin(action, label_ids)
    if included is not None:
        keep &= np.isin(key, included)
    candidates = np.flatnonzero(keep)
    score = _reader_scores(table)[candidates]
    image = pd.factorize(key[candidates], sort=False)[0]
    tuples = [score, action[candidates],
              *(table[c].to_numpy(np.float64)[candidates] for c in ("y1", "x1", "y2", "x2"))]
    return candidates[_read_order(image, tuples, capacity)]


def challenge_rows(rows: pd.DataFrame, *, label_ids: Collection[int] | None,
                   top_k: int) -> pd.DataFrame:
    """The result rows to write for the challenge, in ``rows``' order, with
    boxes and scores as ``ava.write_results_csv`` writes them: only classes in
    ``label_ids`` (None: all), and per keyframe the ``top_k`` rows the official
    reader would keep from all of them (0: no cap). With top_k = 50 the file
    scores as the full one would; the reader keeps every row of it."""
    if top_k < 0:
        raise ValueError(f"top_k={top_k}: use a positive number of rows per keyframe, "
                         "or 0 for all")
    # The heap compares written boxes (ties of score and action fall to them);
    # scores only by order, which their written text keeps.
    boxed = pd.DataFrame({
        **{c: rows[c].to_numpy() for c in ("video_id", "timestamp", "action_id", "score")},
        **{c: ava.written_boxes(rows[c].to_numpy(np.float64)) for c in ava.BOX_COLUMNS}})
    key = KeyframeCodes([boxed]).of(boxed)
    ids = None if label_ids is None else np.fromiter(label_ids, dtype=np.int64)
    positions = np.sort(kept_positions(boxed, key, ids, None, top_k or None))
    return ava.results_as_written(rows.iloc[positions]).reset_index(drop=True)


def _reader_scores(table: pd.DataFrame) -> np.ndarray:
    """The official reader's score: detection score, else GT person id (-1: none)."""
    if "score" in table:
        return table["score"].to_numpy(np.float64)
    if "person_id" not in table:
        return np.ones(len(table))
    person = table["person_id"].to_numpy(np.float64)
    return np.where(person == -1, 1.0, person)


def _tuple_rank(image: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Dense rank of rows under Python's tuple order of ``columns``, valid
    between rows of one image (the heap compares no others). Sorting by
    (image, first column) leaves only rows tied there to sort by the rest."""
    if not len(image):
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((columns[0], image))
    first, where = columns[0][order], image[order]
    tie = (where[1:] == where[:-1]) & (first[1:] == first[:-1])
    if tie.any():
        in_run = np.zeros(len(order), dtype=bool)
        in_run[1:] |= tie
        in_run[:-1] |= tie
        run = np.cumsum(np.concatenate([[True], ~tie]))[in_run]  # runs are contiguous
        rows = order[in_run]
        order[in_run] = rows[np.lexsort([c[rows] for c in columns[:0:-1]] + [run])]
    step = np.zeros(len(order), dtype=bool)
    for col in (image, *columns):
        ordered = col[order]
        step[1:] |= ordered[1:] != ordered[:-1]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(step)
    return rank


def _read_order(image: np.ndarray, tuples: list[np.ndarray], capacity: int | None
                ) -> np.ndarray:
    """Rows (file order, ``image`` codes in first-seen order) the official
    reader keeps, ordered by image, then descending score stably over the
    final layout of Python's heapq list.

    The heap always ends with the ``capacity`` highest scores; it picks among
    rows only where scores tie at the cut, and orders its rows differently
    from a plain sort only where they tie among themselves. So an image with
    no tie among its first ``capacity`` scores or across the cut gives its top
    rows by descending score; only the other images run through the heap."""
    score = tuples[0]
    by_score = np.lexsort((-score, image))
    ordered = image[by_score]
    counts = np.bincount(image, minlength=int(image.max()) + 1 if len(image) else 0)
    keep = counts if capacity is None else np.minimum(counts, capacity)
    position = np.arange(len(image)) - (np.cumsum(counts) - counts)[ordered]
    tie = (ordered[1:] == ordered[:-1]) & (score[by_score][1:] == score[by_score][:-1])
    tie &= position[:-1] < keep[ordered[:-1]]  # within the kept rows, or across the cut
    hard = np.zeros(len(counts), dtype=bool)
    hard[ordered[:-1][tie]] = True
    easy_rows = by_score[~hard[ordered] & (position < keep[ordered])]
    rows = np.flatnonzero(hard[image])
    sub_image = np.unique(image[rows], return_inverse=True)[1]  # keeps first-seen order
    sub_tuples = [column[rows] for column in tuples]
    heap_rows = rows[_heap_read_order(sub_image, _tuple_rank(sub_image, sub_tuples),
                                      sub_tuples[0], capacity)]
    kept = np.concatenate([easy_rows, heap_rows])
    # both parts are grouped by image in their final order; a stable sort merges them
    return kept[np.argsort(image[kept], kind="stable")]


def _heap_read_order(image: np.ndarray, rank: np.ndarray, score: np.ndarray,
                     capacity: int | None) -> np.ndarray:
    """Rows (file order, ``image`` codes in first-seen order) the official
    reader keeps, ordered by image, then descending score stably over the
    final layout of Python's heapq list.

    The heaps of all images are run in lockstep: step t feeds every image its
    t-th row, so the Python loop runs (rows per image) × (heap depth) times.
    """
    n_images = int(image.max()) + 1 if len(image) else 0
    counts = np.bincount(image, minlength=n_images)
    by_image = np.argsort(image, kind="stable")
    first = np.cumsum(counts) - counts
    slots = counts if capacity is None else np.minimum(counts, capacity)
    base = np.cumsum(slots) - slots
    heap = np.zeros(int(slots.sum()), dtype=np.int64)  # row per heap slot
    heap_rank = np.zeros_like(heap)
    busiest = np.argsort(-counts, kind="stable")
    sorted_counts = counts[busiest]
    for t in range(int(counts.max()) if n_images else 0):
        active = busiest[: np.searchsorted(-sorted_counts, -t, side="left")]
        rows = by_image[first[active] + t]
        if capacity is None or t < capacity:
            _heap_push(heap, heap_rank, base[active], t, rows, rank[rows])
        else:
            better = score[rows] > score[heap[base[active]]]
            rows = rows[better]
            _heap_replace_root(heap, heap_rank, base[active[better]], capacity,
                               rows, rank[rows])
    slot_image = np.repeat(np.arange(n_images), slots)
    slot_position = np.arange(len(heap)) - base[slot_image]
    return heap[np.lexsort((slot_position, -score[heap], slot_image))]


def _heap_push(heap, heap_rank, base, size: int, rows, ranks) -> None:
    """heapq.heappush on one heap per ``base``, each currently of ``size``."""
    position = np.full(len(base), size, dtype=np.int64)
    _sift_toward_root(heap, heap_rank, base, position, ranks)
    heap[base + position] = rows
    heap_rank[base + position] = ranks


def _heap_replace_root(heap, heap_rank, base, size: int, rows, ranks) -> None:
    """heapq.heapreplace: as Python's _siftup, move the smaller child up to a
    leaf (the right one when not left < right), then sift the new item up."""
    position = np.zeros(len(base), dtype=np.int64)
    moving = np.arange(len(base))
    while len(moving):
        child = 2 * position[moving] + 1
        inside = child < size
        moving, child = moving[inside], child[inside]
        b = base[moving]
        right = np.minimum(child + 1, size - 1)
        take_right = (child + 1 < size) & ~(heap_rank[b + child] < heap_rank[b + right])
        child = np.where(take_right, child + 1, child)
        heap[b + position[moving]] = heap[b + child]
        heap_rank[b + position[moving]] = heap_rank[b + child]
        position[moving] = child
    _sift_toward_root(heap, heap_rank, base, position, ranks)
    heap[base + position] = rows
    heap_rank[base + position] = ranks


def _sift_toward_root(heap, heap_rank, base, position, ranks) -> None:
    """Python's heapq._siftdown: move parents down while the new item is
    smaller; leaves in ``position`` the slot where the new item goes."""
    moving = np.flatnonzero(position > 0)
    while len(moving):
        at = position[moving]
        parent = (at - 1) >> 1
        b = base[moving]
        up = ranks[moving] < heap_rank[b + parent]
        moving, at, parent, b = moving[up], at[up], parent[up], b[up]
        heap[b + at] = heap[b + parent]
        heap_rank[b + at] = heap_rank[b + parent]
        position[moving] = parent
        moving = moving[parent > 0]
