"""Per-person vectors for the linear probe: the person's own feature and, per
source, a fixed-size summary of what an interaction module would read.

A module reads a set (the keyframe's objects, the other persons, the memory
window) or the person's ten part vectors. A linear probe needs one vector per
person, so a set becomes its mean and its max over members plus a flag for
"the set is empty" (all zero then), and the parts are their ten vectors side
by side (an invalid part's vector is zero in the store). The memory block
knows when each memory entry was seen (its per-second position embedding), so
the memory window is summarised per span of seconds relative to the keyframe
(``MEMORY_BINS``: long before, before, just before, the keyframe's own second,
just after, after, long after), one set summary per span.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from avapipe.models.dataset import KeyframeDataset
from avapipe.models.memory_spans import SPAN_EDGES

SOURCES = ("objects", "persons", "memory", "parts")
# The spans of the memory reader 'spans' (upper edges, inclusive).
MEMORY_BINS = SPAN_EDGES


@dataclass(frozen=True)
class ProbeFeatures:
    """One row per person box (copy 0) of the dataset's keyframes.

    keys: video_id, timestamp, box_id of each row.
    person: float32 [N, C], the person's own vector.
    sources: {source: float32 [N, D_source]} for the requested SOURCES.
    targets: float32 [N, A] (the dataset's targets), or None.
    """

    keys: pd.DataFrame
    person: np.ndarray
    sources: dict[str, np.ndarray]
    targets: np.ndarray | None


def set_summary(members: np.ndarray, channels: int) -> np.ndarray:
    """members: [n, C] -> float32 [2C + 1]: mean, max, and 1.0 if n == 0."""
    if not len(members):
        return np.concatenate([np.zeros(2 * channels, np.float32), [1.0]]).astype(np.float32)
    members = members.astype(np.float32)
    return np.concatenate([members.mean(0), members.max(0), [0.0]]).astype(np.float32)


def memory_summary(memory: np.ndarray, offsets: np.ndarray, channels: int) -> np.ndarray:
    """memory [M, C] seen at offsets Long[M] seconds from the keyframe ->
    float32 [len(MEMORY_BINS) + 1, 2C + 1] flattened: a set_summary per span."""
    span = np.searchsorted(np.asarray(MEMORY_BINS), offsets, side="left")
    return np.concatenate([set_summary(memory[span == i], channels)
                           for i in range(len(MEMORY_BINS) + 1)])


def _others(persons: np.ndarray) -> np.ndarray:
    """persons [P, C] -> [P, 2C + 1]: each person's summary of the other persons."""
    channels = persons.shape[1]
    if not len(persons):
        return np.zeros((0, 2 * channels + 1), np.float32)
    return np.stack([set_summary(np.delete(persons, p, axis=0), channels)
                     for p in range(len(persons))])


def _sample_rows(sample: dict, sources: tuple[str, ...], channels: int) -> dict[str, np.ndarray]:
    persons = sample["persons"].numpy()
    count = len(persons)
    rows = {"person": persons.astype(np.float32)}
    for name in sources:
        if name == "persons":
            rows[name] = _others(persons)
        elif name == "memory":
            summary = memory_summary(sample["memory"].numpy(), sample["memory_offset"].numpy(),
                                     channels)
            rows[name] = np.repeat(summary[None], count, axis=0)
        elif name == "parts":
            parts = sample["parts"].numpy()
            rows[name] = parts.reshape(count, parts.shape[1] * parts.shape[2]).astype(np.float32)
        else:  # a set shared by every person of the keyframe
            summary = set_summary(sample[name].numpy(), channels)
            rows[name] = np.repeat(summary[None], count, axis=0)
    return rows


def probe_features(dataset: KeyframeDataset, *, sources: tuple[str, ...] = SOURCES) -> ProbeFeatures:
    """The probe rows of every keyframe of ``dataset`` (built with_parts=True
    when 'parts' is among ``sources``)."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown probe sources {unknown}; choose from {list(SOURCES)}")
    if "parts" in sources and not dataset.with_parts:
        raise ValueError("the 'parts' source needs a KeyframeDataset built with with_parts=True")
    parts, keys, targets = {name: [] for name in ("person",) + tuple(sources)}, [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        for name, rows in _sample_rows(sample, sources, dataset.channels).items():
            parts[name].append(rows)
        count = len(sample["persons"])
        keys.append(pd.DataFrame({"video_id": [sample["video_id"]] * count,
                                  "timestamp": [sample["timestamp"]] * count,
                                  "box_id": sample["box_id"].numpy()}))
        if "targets" in sample:
            targets.append(sample["targets"].numpy())
    stacked = {name: _stack(rows, dataset, name) for name, rows in parts.items()}
    empty_keys = pd.DataFrame({"video_id": [], "timestamp": [], "box_id": []})
    return ProbeFeatures(
        keys=pd.concat(keys, ignore_index=True) if keys else empty_keys,
        person=stacked.pop("person"), sources=stacked,
        targets=None if dataset.targets is None else _stack(targets, dataset, "targets"))


def _stack(rows: list[np.ndarray], dataset: KeyframeDataset, name: str) -> np.ndarray:
    if rows:
        return np.concatenate(rows).astype(np.float32)
    widths = {"person": dataset.channels, "parts": 0,
              "memory": (len(MEMORY_BINS) + 1) * (2 * dataset.channels + 1),
              "targets": 0 if dataset.targets is None else dataset.targets.shape[1]}
    width = widths.get(name, 2 * dataset.channels + 1)
    return np.zeros((0, width), np.float32)
