import numpy as np
import pandas as pd
import pytest

from avapipe.features.store import (
    IncompleteStoreError, StoreError, commit_video, create_store, done_videos, finish_store,
    open_features, plan_layout, read_person_feature, remove_store, resumable_store,
)
from avapipe.schemas import OBJECTS, PERSONS


def persons_table(rows):
    """rows: (video_id, timestamp, box_id[, copy]) → a PERSONS table (+ copy)."""
    df = pd.DataFrame([r[:3] for r in rows], columns=["video_id", "timestamp", "box_id"])
    df = df.assign(x1=0.1, y1=0.2, x2=0.5, y2=0.9, score=0.9, source="gt", person_id=-1)
    if any(len(r) > 3 for r in rows):
        df["copy"] = [r[3] if len(r) > 3 else 0 for r in rows]
    return df if len(rows) else PERSONS.empty()


def objects_table(rows):
    if not rows:
        return OBJECTS.empty()
    df = pd.DataFrame(rows, columns=["video_id", "timestamp", "box_id"])
    return df.assign(x1=0.0, y1=0.0, x2=0.3, y2=0.3, score=0.5, source="det", label="cup")


def test_layout_gives_each_video_whole_shards_in_copy_timestamp_box_order():
    persons = persons_table([("b", 3, 0), ("a", 2, 1), ("a", 1, 0), ("a", 1, 0, 1), ("a", 2, 0)])
    objects = objects_table([("b", 3, 0)])
    layout = plan_layout(persons=persons, objects=objects, shard_rows=2)
    got = layout.persons[["video_id", "copy", "timestamp", "box_id", "row"]].values.tolist()
    assert got == [["a", 0, 1, 0, 0], ["a", 0, 2, 0, 1], ["a", 0, 2, 1, 2], ["a", 1, 1, 0, 3],
                   ["b", 0, 3, 0, 4]]
    v = layout.videos
    assert v[["person_start", "person_stop", "person_end"]].values.tolist() == [[0, 4, 4], [4, 5, 6]]
    assert v[["object_start", "object_stop", "object_end"]].values.tolist() == [[0, 0, 0], [0, 1, 2]]
    assert (layout.person_rows, layout.object_rows) == (6, 2)


def test_layout_refuses_duplicate_person_key_within_a_copy():
    with pytest.raises(ValueError, match="duplicate key"):
        plan_layout(persons=persons_table([("a", 1, 0), ("a", 1, 0)]), objects=objects_table([]),
                    shard_rows=4)


def write_store(path, layout, *, channels=3, part_channels=2, dtype="float32", complete=True):
    """Commits every video with person vectors = [row, row, ...] and objects = -row."""
    group = create_store(path, layout=layout, person_channels=channels, part_channels=part_channels,
                         dtype=dtype, chunk_rows=2, fingerprint="f1")
    for position, video in layout.videos.iterrows():
        rows = np.arange(video.person_start, video.person_end, dtype=np.float32)
        orows = np.arange(video.object_start, video.object_end, dtype=np.float32)
        commit_video(group, video=video, position=position, arrays={
            "persons": np.repeat(rows[:, None], channels, 1),
            "parts": np.repeat(rows[:, None, None], 10, 1).repeat(part_channels, 2),
            "part_valid": np.ones((len(rows), 10), bool),
            "objects": -np.repeat(orows[:, None], channels, 1)})
    if complete:
        finish_store(group, layout=layout)
    return group


def test_committed_rows_read_back_by_key(tmp_path):
    layout = plan_layout(persons=persons_table([("a", 1, 0), ("a", 1, 3), ("b", 2, 0)]),
                         objects=objects_table([("b", 2, 5)]), shard_rows=2)
    write_store(tmp_path / "f.zarr", layout)
    store = open_features(tmp_path / "f.zarr")
    assert read_person_feature(store, "a", 1, 3).tolist() == [1.0, 1.0, 1.0]
    assert read_person_feature(store, "b", 2, 0).tolist() == [2.0, 2.0, 2.0]
    assert store.read_rows("persons", np.array([2, 0, 2]))[:, 0].tolist() == [2.0, 0.0, 2.0]
    assert store.read_rows("objects", store.objects["row"].to_numpy()).tolist() == [[0.0] * 3]
    assert store.array("parts").shape == (4, 10, 2)
    with pytest.raises(KeyError, match="box_id=7"):
        read_person_feature(store, "a", 1, 7)
    assert not (tmp_path / "f.zarr" / "progress").exists()


def test_a_video_writes_only_its_own_shard_files(tmp_path):
    layout = plan_layout(persons=persons_table([("a", 1, 0), ("a", 1, 1), ("a", 1, 2), ("b", 2, 0)]),
                         objects=objects_table([]), shard_rows=2)
    group = create_store(tmp_path / "f.zarr", layout=layout, person_channels=3, part_channels=2,
                         dtype="float16", chunk_rows=2, fingerprint="f")
    video = layout.videos.iloc[1]
    commit_video(group, video=video, position=1, arrays={"persons": np.ones((2, 3), np.float16)})
    shards = sorted(p.name for p in (tmp_path / "f.zarr" / "persons" / "c").iterdir())
    assert shards == ["2"]  # video b's rows 4..5 are shard 2; video a's shards untouched
    assert done_videos(tmp_path / "f.zarr") == {1}
    assert group["persons"].dtype == np.float16


def test_an_unfinished_store_is_refused_and_resumable(tmp_path):
    layout = plan_layout(persons=persons_table([("a", 1, 0)]), objects=objects_table([]), shard_rows=2)
    write_store(tmp_path / "f.zarr", layout, complete=False)
    with pytest.raises(IncompleteStoreError, match="did not finish"):
        open_features(tmp_path / "f.zarr")
    assert resumable_store(tmp_path / "f.zarr", fingerprint="f1") is not None
    assert resumable_store(tmp_path / "f.zarr", fingerprint="other") is None


def test_empty_tables_give_an_empty_complete_store(tmp_path):
    layout = plan_layout(persons=persons_table([]), objects=objects_table([]), shard_rows=4)
    write_store(tmp_path / "f.zarr", layout)
    store = open_features(tmp_path / "f.zarr")
    assert store.array("persons").shape == (0, 3) and len(store.persons) == 0
    assert store.read_rows("persons", np.zeros(0, np.int64)).shape == (0, 3)


def test_a_foreign_folder_is_never_deleted(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(StoreError, match="not a feature store"):
        remove_store(tmp_path / "mine")
    with pytest.raises(StoreError, match="not a feature store"):
        open_features(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_unknown_dtype_is_refused(tmp_path):
    layout = plan_layout(persons=persons_table([]), objects=objects_table([]), shard_rows=4)
    with pytest.raises(ValueError, match="bfloat16"):
        create_store(tmp_path / "f.zarr", layout=layout, person_channels=3, part_channels=2,
                     dtype="bfloat16", chunk_rows=2, fingerprint="f")
