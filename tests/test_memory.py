import numpy as np
import pandas as pd
import pytest

from avapipe.features.memory import (
    build_memory_index, gather_memory, load_memory_index, save_memory_index,
)
from avapipe.features.store import commit_video, create_store, finish_store, open_features, plan_layout
from avapipe.schemas import OBJECTS


def person_rows(spec):
    """spec: (video_id, timestamp, box_id, score[, copy]) tuples → PERSONS rows (+ copy)."""
    df = pd.DataFrame([s[:4] for s in spec], columns=["video_id", "timestamp", "box_id", "score"])
    df["copy"] = [s[4] if len(s) > 4 else 0 for s in spec]
    return df.assign(x1=0.1, y1=0.1, x2=0.6, y2=0.9, source="det", person_id=-1)


@pytest.fixture()
def store(tmp_path):
    """Video a: seconds 10..13 with boxes of varying count, one jittered copy;
    video k: one keyframe (AVA-Kinetics style). Person vector of row r is [r, r]."""
    spec = [("a", 10, 0, 0.5), ("a", 10, 1, 0.9), ("a", 10, 2, 0.7),
            ("a", 11, 0, 0.8), ("a", 12, 4, 0.3), ("a", 12, 1, 0.6), ("a", 13, 0, 0.9),
            ("a", 11, 0, 0.8, 1), ("k", 5, 0, 0.9)]
    layout = plan_layout(persons=person_rows(spec), objects=OBJECTS.empty(), shard_rows=4)
    group = create_store(tmp_path / "f.zarr", layout=layout, person_channels=2, part_channels=1,
                         dtype="float32", chunk_rows=2, fingerprint="f")
    for position, video in layout.videos.iterrows():
        rows = np.arange(video.person_start, video.person_end, dtype=np.float32)
        commit_video(group, video=video, position=position,
                     arrays={"persons": np.repeat(rows[:, None], 2, 1)})
    finish_store(group, layout=layout)
    return open_features(tmp_path / "f.zarr")


def keyframes(pairs):
    return pd.DataFrame(pairs, columns=["video_id", "timestamp"])


def memory_keys(store, index, k):
    """(timestamp, box_id) of the memory of window k, read from the store."""
    features, offsets, mask = gather_memory(store, index, [k])
    rows = features[0][mask[0]][:, 0].long().numpy()
    by_row = store.persons.set_index("row")
    t0 = int(index.windows["timestamp"].iloc[k])
    assert offsets[0][mask[0]].tolist() == [int(by_row.loc[r, "timestamp"]) - t0 for r in rows]
    return [(int(by_row.loc[r, "timestamp"]), int(by_row.loc[r, "box_id"])) for r in rows]


def test_window_is_plus_minus_span_capped_per_second_by_box_id(store):
    index = build_memory_index(persons=store.persons, keyframes=keyframes([("a", 11), ("a", 13)]),
                               span=1, per_second=2)
    assert memory_keys(store, index, 0) == [(10, 0), (10, 1), (11, 0), (12, 1), (12, 4)]
    assert memory_keys(store, index, 1) == [(12, 1), (12, 4), (13, 0)]


def test_cap_by_score_keeps_the_best_scored_boxes(store):
    index = build_memory_index(persons=store.persons, keyframes=keyframes([("a", 10)]),
                               span=0, per_second=2, rank_by="score")
    assert memory_keys(store, index, 0) == [(10, 1), (10, 2)]


def test_batch_is_padded_with_zero_and_masked(store):
    index = build_memory_index(persons=store.persons,
                               keyframes=keyframes([("a", 13), ("k", 5), ("z", 3)]),
                               span=1, per_second=5)
    features, offsets, mask = gather_memory(store, index, [0, 1, 2])
    assert features.shape == (3, 3, 2) and mask.sum(1).tolist() == [3, 1, 0]
    assert offsets[0].tolist() == [-1, -1, 0] and offsets[1].tolist() == [0, 0, 0]
    assert float(features[~mask].abs().sum()) == 0.0


def test_single_keyframe_video_remembers_only_itself(store):
    index = build_memory_index(persons=store.persons, keyframes=keyframes([("k", 5)]),
                               span=30, per_second=5)
    assert memory_keys(store, index, 0) == [(5, 0)]


def test_empty_batch_and_no_persons_give_empty_memory(store):
    index = build_memory_index(persons=store.persons.iloc[:0], keyframes=keyframes([("a", 10)]),
                               span=3, per_second=5)
    features, offsets, mask = gather_memory(store, index, [0])
    assert features.shape == (1, 0, 2) and mask.shape == (1, 0)
    features, _, _ = gather_memory(store, index, [])
    assert features.shape == (0, 0, 2)


def test_index_round_trips_through_disk(store, tmp_path):
    index = build_memory_index(persons=store.persons, keyframes=keyframes([("a", 11), ("k", 5)]),
                               span=2, per_second=1)
    save_memory_index(index, tmp_path / "memory")
    again = load_memory_index(tmp_path / "memory")
    assert (again.span, again.per_second) == (2, 1)
    pd.testing.assert_frame_equal(again.windows, index.windows)
    pd.testing.assert_frame_equal(again.entries, index.entries)


def test_bad_parameters_are_named(store):
    with pytest.raises(ValueError, match="per_second=0"):
        build_memory_index(persons=store.persons, keyframes=keyframes([]), span=1, per_second=0)
    with pytest.raises(ValueError, match="rank_by='size'"):
        build_memory_index(persons=store.persons, keyframes=keyframes([]), span=1, per_second=1,
                           rank_by="size")
