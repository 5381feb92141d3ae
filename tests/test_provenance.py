import json

import pandas as pd
import pyarrow.parquet as pq

from avapipe.features.store import create_store, finish_store, plan_layout
from avapipe.provenance import differences, read_record, write_folder_record
from avapipe.schemas import PERSONS, read_table, write_table

RECORD = {"stage": "detect", "params": {"detect": {"jitter": 0.0, "seed": 0}, "seed": 3}}


def test_a_table_carries_its_record_in_the_parquet_metadata(tmp_path):
    path = tmp_path / "persons.parquet"
    write_table(PERSONS.empty(), PERSONS, path, record=RECORD)
    assert read_record(path) == RECORD
    assert json.loads(pq.read_schema(path).metadata[b"avapipe.provenance"]) == RECORD
    assert read_table(PERSONS, path).empty  # still an ordinary table
    write_table(PERSONS.empty(), PERSONS, path)
    assert read_record(path) is None


def test_folders_and_stores_carry_theirs_inside(tmp_path):
    write_folder_record(tmp_path, RECORD)
    assert read_record(tmp_path) == RECORD
    assert read_record(tmp_path / "absent") is None and read_record(tmp_path / "x.parquet") is None
    layout = plan_layout(persons=PERSONS.empty(), objects=pd.DataFrame(
        columns=["video_id", "timestamp", "box_id", "x1", "y1", "x2", "y2", "score", "source",
                 "label"]), shard_rows=2)
    group = create_store(tmp_path / "f.zarr", layout=layout, person_channels=2, part_channels=1,
                         dtype="float32", chunk_rows=2, fingerprint="f")
    assert read_record(tmp_path / "f.zarr") is None
    finish_store(group, layout=layout, record=RECORD)
    assert read_record(tmp_path / "f.zarr") == RECORD


def test_differences_name_each_key_with_both_values():
    current = {"detect": {"jitter": 0.1, "seed": 0}, "seed": 3}
    assert differences(RECORD["params"], current) == [("detect.jitter", 0.0, 0.1)]
    assert differences({"fusion": "cube"}, {"fusion": "none"}) == [("fusion", "cube", "none")]
    assert differences(RECORD["params"], RECORD["params"]) == []
    assert differences({"train": {"lr": 0.1}}, {}) == [("train.lr", 0.1, None)]
