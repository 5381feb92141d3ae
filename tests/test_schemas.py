import numpy as np
import pandas as pd
import pytest

from avapipe.schemas import PARTS, PART_NAMES, PERSONS, POSES, SchemaError, read_table, write_table


def _persons(**overrides) -> pd.DataFrame:
    row = dict(video_id="0f39OWEqJ24", timestamp=902, box_id=0, x1=0.1, y1=0.2, x2=0.5,
               y2=0.9, score=0.9, source="gt", person_id=3)
    row.update(overrides)
    return pd.DataFrame([row])


def test_round_trip_keeps_columns_and_dtypes(tmp_path):
    path = tmp_path / "persons.parquet"
    write_table(_persons(), PERSONS, path)
    back = read_table(PERSONS, path)
    assert list(back.columns) == PERSONS.column_names
    assert back["timestamp"].dtype == np.int64 and back["x1"].dtype == np.float32
    assert back.loc[0, "video_id"] == "0f39OWEqJ24"


@pytest.mark.parametrize("box", [
    dict(x1=-0.1), dict(x2=1.2), dict(x1=0.6, x2=0.5), dict(y1=float("nan")),
])
def test_bad_box_is_rejected_with_source_and_row(box):
    with pytest.raises(SchemaError, match=r"here.*row 0"):
        PERSONS.validate(_persons(**box), source="here")


def test_missing_column_and_duplicate_key_are_named():
    with pytest.raises(SchemaError, match="lacks columns \\['score'\\]"):
        PERSONS.validate(_persons().drop(columns="score"), source="x")
    with pytest.raises(SchemaError, match="duplicate key"):
        PERSONS.validate(pd.concat([_persons(), _persons()]), source="x")


def test_invalid_parts_may_hold_any_box_valid_ones_may_not():
    row = dict(video_id="v", timestamp=902, box_id=0)
    for part in PART_NAMES:
        row.update({f"{part}_x1": 0.1, f"{part}_y1": 0.1, f"{part}_x2": 0.2,
                    f"{part}_y2": 0.2, f"{part}_valid": True})
    row.update(head_x1=5.0, head_valid=False)
    PARTS.validate(pd.DataFrame([row]), source="parts")
    row["head_valid"] = True
    with pytest.raises(SchemaError, match="head_x1"):
        PARTS.validate(pd.DataFrame([row]), source="parts")


def test_empty_tables_validate_and_write(tmp_path):
    path = tmp_path / "poses.parquet"
    write_table(POSES.empty(), POSES, path)
    assert len(read_table(POSES, path)) == 0


def test_failed_write_keeps_the_previous_table(tmp_path):
    path = tmp_path / "persons.parquet"
    write_table(_persons(), PERSONS, path)
    with pytest.raises(SchemaError):
        write_table(_persons(x1=2.0), PERSONS, path)
    assert len(read_table(PERSONS, path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["persons.parquet"]


def test_reading_a_missing_table_says_which_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage"):
        read_table(PERSONS, tmp_path / "nope.parquet")
