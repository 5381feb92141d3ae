import numpy as np
import pandas as pd
import pytest
import torch

from avapipe.features.memory import build_memory_index, gather_memory
from avapipe.features.store import (NUM_PARTS, commit_video, create_store, finish_store,
                                    open_features, plan_layout)
from avapipe.models.dataset import DatasetError, KeyframeDataset, collate_keyframes
from avapipe.models.head import build_head

C, CP = 6, 3


def person_rows(rows):
    """rows: (video_id, timestamp, box_id, x1, y1, x2, y2[, copy])."""
    table = pd.DataFrame([r[:7] for r in rows],
                         columns=["video_id", "timestamp", "box_id", "x1", "y1", "x2", "y2"])
    table = table.assign(score=0.9, source="gt", person_id=-1)
    if rows and len(rows[0]) > 7:
        table["copy"] = [r[7] for r in rows]
    return table


def object_rows(rows):
    table = pd.DataFrame(rows, columns=["video_id", "timestamp", "box_id", "x1", "y1", "x2", "y2"])
    return table.assign(score=0.8, source="det", label="cup")


def build_store(path, *, persons, objects, person_vectors, object_vectors, part_channels=CP,
                shard_rows=8):
    """A complete store written through the store API. person_vectors(table) ->
    [N, C] for the planned (sorted) person table; part vectors are derived from
    them; a part is valid where its first part channel is positive."""
    layout = plan_layout(persons=persons, objects=objects, shard_rows=shard_rows)
    channels = person_vectors(layout.persons).shape[1] if len(layout.persons) else C
    full = {
        "persons": np.zeros((layout.person_rows, channels), np.float32),
        "parts": np.zeros((layout.person_rows, NUM_PARTS, part_channels), np.float32),
        "part_valid": np.zeros((layout.person_rows, NUM_PARTS), bool),
        "objects": np.zeros((layout.object_rows, channels), np.float32),
    }
    rows = layout.persons["row"].to_numpy()
    if len(rows):
        vectors = person_vectors(layout.persons)
        full["persons"][rows] = vectors
        parts = vectors[:, None, :part_channels] + np.arange(NUM_PARTS)[None, :, None]
        full["part_valid"][rows] = parts[:, :, 0] > 2
        full["parts"][rows] = parts * full["part_valid"][rows][..., None]
    if len(layout.objects):
        full["objects"][layout.objects["row"].to_numpy()] = object_vectors(layout.objects)
    group = create_store(path, layout=layout, person_channels=channels,
                         part_channels=part_channels, dtype="float32", chunk_rows=4,
                         fingerprint="test")
    for position, video in layout.videos.iterrows():
        arrays = {name: array[video["object_start"]:video["object_end"]] if name == "objects"
                  else array[video["person_start"]:video["person_end"]]
                  for name, array in full.items()}
        commit_video(group, video=video, position=position, arrays=arrays)
    finish_store(group, layout=layout)
    return open_features(path)


def coded_vectors(table, channels=C):
    """A vector that encodes its row: [timestamp, box_id, copy, x1, 0...]."""
    out = np.zeros((len(table), channels), np.float32)
    out[:, 0] = table["timestamp"] - 900
    out[:, 1] = table["box_id"]
    out[:, 2] = table["copy"] if "copy" in table else -1
    out[:, 3] = table["x1"]
    return out


@pytest.fixture
def store(tmp_path):
    persons = person_rows([
        ("a", 902, 0, 0.1, 0.1, 0.3, 0.5), ("a", 902, 1, 0.5, 0.1, 0.7, 0.5),
        ("a", 903, 0, 0.2, 0.1, 0.4, 0.5),
        ("a", 905, 0, 0.3, 0.1, 0.5, 0.5),
        ("b", 902, 0, 0.4, 0.2, 0.6, 0.6),
    ])
    objects = object_rows([("a", 902, 0, 0.0, 0.0, 0.1, 0.1), ("a", 903, 0, 0.2, 0.2, 0.3, 0.3),
                           ("a", 903, 1, 0.6, 0.6, 0.7, 0.7)])
    return build_store(tmp_path / "features.zarr", persons=persons, objects=objects,
                       person_vectors=coded_vectors, object_vectors=coded_vectors)


KEYFRAMES = pd.DataFrame({"video_id": ["a", "a", "a", "b", "c"],
                          "timestamp": [902, 903, 904, 902, 902]})


@pytest.mark.parametrize("preload", [True, False])
def test_samples_hold_the_rows_of_their_keyframe(store, preload):
    memory = build_memory_index(persons=store.persons, keyframes=KEYFRAMES, span=1, per_second=5)
    targets = np.arange(len(store.persons) * 2, dtype=np.float32).reshape(-1, 2)
    data = KeyframeDataset(store, memory, keyframes=KEYFRAMES, targets=targets,
                           with_parts=True, preload=preload)
    first = data[0]  # a@902: persons 0, 1; one object; memory = seconds 901..903
    assert (first["video_id"], first["timestamp"]) == ("a", 902)
    np.testing.assert_array_equal(first["box_id"], [0, 1])
    np.testing.assert_allclose(first["boxes"][:, 0], [0.1, 0.5])
    np.testing.assert_array_equal(first["persons"][:, :2], [[2, 0], [2, 1]])
    np.testing.assert_array_equal(first["objects"][:, :2], [[2, 0]])
    np.testing.assert_array_equal(first["memory"][:, :2], [[2, 0], [2, 1], [3, 0]])
    np.testing.assert_array_equal(first["memory_offset"], [0, 0, 1])
    np.testing.assert_array_equal(first["targets"], targets[:2])
    assert first["parts"].shape == (2, NUM_PARTS, CP)
    np.testing.assert_array_equal(first["part_valid"][0], np.arange(NUM_PARTS) + 2 > 2)
    assert data[1]["objects"].shape == (2, C)
    empty = data[2]  # a@904: nobody, no object; memory = seconds 903..905
    assert empty["persons"].shape == (0, C) and empty["targets"].shape == (0, 2)
    np.testing.assert_array_equal(empty["memory_offset"], [-1, 1])
    assert data[4]["persons"].shape == (0, C) and data[4]["memory"].shape == (0, C)
    for i in range(len(KEYFRAMES)):  # the same memory as the memory bank's own reader
        features, offsets, mask = gather_memory(store, memory, [i])
        torch.testing.assert_close(data[i]["memory"], features[0][mask[0]])
        torch.testing.assert_close(data[i]["memory_offset"], offsets[0][mask[0]])


def test_collate_pads_into_the_head_format_and_the_head_runs(store):
    memory = build_memory_index(persons=store.persons, keyframes=KEYFRAMES, span=1, per_second=5)
    data = KeyframeDataset(store, memory, keyframes=KEYFRAMES, targets=None, with_parts=True,
                           preload=True)
    batch = collate_keyframes([data[i] for i in range(5)])
    assert batch["persons"].shape == (5, 2, C)
    np.testing.assert_array_equal(batch["person_mask"],
                                  [[1, 1], [1, 0], [0, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(batch["object_mask"].sum(1), [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(batch["memory_mask"].sum(1), [3, 3, 2, 1, 0])
    np.testing.assert_array_equal(batch["box_id"][1], [0, -1])
    assert batch["parts"].shape == (5, 2, NUM_PARTS, CP)
    assert not batch["part_mask"][1, 1].any()
    assert batch["video_id"] == ["a", "a", "a", "b", "c"]
    head = build_head(fusion="cube", pose_part=True, in_channels=C, part_channels=CP,
                      num_classes=3, hidden=8, memory_span=1, dropout=0.0)
    inputs = {k: batch[k] for k in ("persons", "person_mask", "objects", "object_mask",
                                    "memory", "memory_mask", "memory_offset", "parts",
                                    "part_mask")}
    assert head(**inputs).logits.shape == (5, 2, 3)
    nobody = collate_keyframes([data[2], data[4]])  # zero persons, objects, memory
    assert nobody["persons"].shape == (2, 0, C) and nobody["memory"].shape == (2, 2, C)
    assert head(**{k: nobody[k] for k in inputs}).logits.shape == (2, 0, 3)


def test_without_memory_index_memory_is_empty(store):
    data = KeyframeDataset(store, None, keyframes=KEYFRAMES, targets=None, with_parts=False,
                           preload=False)
    assert data[0]["memory"].shape == (0, C) and "parts" not in data[0]


def test_random_copy_picks_among_stored_copies(tmp_path):
    persons = person_rows([("a", 902, 0, 0.1, 0.1, 0.3, 0.5, 0),
                           ("a", 902, 0, 0.2, 0.1, 0.3, 0.5, 1),
                           ("a", 902, 0, 0.3, 0.1, 0.4, 0.5, 2)])
    store = build_store(tmp_path / "f.zarr", persons=persons, objects=object_rows([]),
                        person_vectors=coded_vectors, object_vectors=coded_vectors)
    keyframes = KEYFRAMES.iloc[:1]
    fixed = KeyframeDataset(store, None, keyframes=keyframes, targets=None, with_parts=False,
                            preload=True)
    assert {float(fixed[0]["persons"][0, 2]) for _ in range(5)} == {0.0}
    torch.manual_seed(0)
    jittered = KeyframeDataset(store, None, keyframes=keyframes, targets=None,
                               with_parts=False, preload=True, random_copy=True)
    seen = {float(jittered[0]["persons"][0, 2]) for _ in range(40)}
    assert seen == {0.0, 1.0, 2.0}
    sample = jittered[0]
    np.testing.assert_allclose(sample["boxes"][0, 0], sample["persons"][0, 3])


def test_bad_inputs_are_named(store):
    with pytest.raises(DatasetError, match="timestamp"):
        KeyframeDataset(store, None, keyframes=KEYFRAMES[["video_id"]], targets=None,
                        with_parts=False, preload=True)
    with pytest.raises(DatasetError, match="persons.parquet"):
        KeyframeDataset(store, None, keyframes=KEYFRAMES, targets=np.zeros((2, 3)),
                        with_parts=False, preload=True)
    memory = build_memory_index(persons=store.persons, keyframes=KEYFRAMES.iloc[:2], span=1,
                                per_second=5)
    with pytest.raises(DatasetError, match="904"):
        KeyframeDataset(store, memory, keyframes=KEYFRAMES, targets=None, with_parts=False,
                        preload=True)
