"""Table schemas of the pipeline's parquet artifacts, defined once.

Every stage validates what it writes and what it reads with these schemas, so
a column mix-up or an out-of-range box is caught at the stage boundary that
caused it, with the file named.

Conventions: boxes are normalized ``x1, y1, x2, y2`` in [0, 1], origin top-left;
a keyframe is keyed by ``(video_id: str, timestamp: int seconds)``; a person
(or object) within a keyframe by ``box_id``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avapipe.provenance import parquet_metadata

NUM_KEYPOINTS = 17
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
PART_NAMES = (
    "head", "hip", "left_arm", "right_arm", "left_hand", "right_hand",
    "left_leg", "right_leg", "left_foot", "right_foot",
)
BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class SchemaError(ValueError):
    """An artifact does not match its schema; the message names file and column."""


@dataclass(frozen=True)
class TableSchema:
    """Column names → dtypes, the key columns, and the groups of box columns."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    # Box column groups; each (x1, y1, x2, y2) plus the bool column that says
    # whether the box is valid (None: always valid). Invalid boxes are not checked.
    boxes: tuple[tuple[tuple[str, str, str, str], str | None], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({n: pd.Series([], dtype=d) for n, d in self.columns})

    def validate(self, df: pd.DataFrame, *, source: str) -> pd.DataFrame:
        """Returns ``df`` with exactly the schema's columns, in order and dtype.

        Raises SchemaError naming ``source`` (a file or stage) on a missing
        column, an uncastable dtype, a duplicate key, NaN in a box or a box
        outside [0, 1] / with x2 < x1.
        """
        missing = [c for c in self.column_names if c not in df.columns]
        if missing:
            raise SchemaError(
                f"{source}: {self.name} table lacks columns {missing}; "
                f"expected {self.column_names}"
            )
        out = df[self.column_names].reset_index(drop=True)
        for name, dtype in self.columns:
            try:
                out[name] = out[name].astype(dtype)
            except (TypeError, ValueError) as err:
                raise SchemaError(
                    f"{source}: column {name!r} of {self.name} is not {dtype}: {err}"
                ) from err
        self._check_key(out, source)
        for cols, valid in self.boxes:
            _check_boxes(out, cols, valid, source=f"{source} ({self.name})")
        return out

    def _check_key(self, df: pd.DataFrame, source: str) -> None:
        dup = df.duplicated(list(self.key), keep=False)
        if dup.any():
            row = df[dup].iloc[0]
            key = {k: row[k] for k in self.key}
            raise SchemaError(
                f"{source}: {self.name} has {int(dup.sum())} rows with a duplicate "
                f"key {self.key}, first {key}; each key must appear once"
            )


def _check_boxes(
    df: pd.DataFrame, cols: tuple[str, ...], valid_col: str | None, *, source: str
) -> None:
    x1, y1, x2, y2 = (df[c].to_numpy(dtype=np.float64) for c in cols)
    bad = ~(np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2))
    bad |= (x1 < 0) | (y1 < 0) | (x2 > 1) | (y2 > 1) | (x2 < x1) | (y2 < y1)
    if valid_col is not None:
        bad &= df[valid_col].to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(
            f"{source}: row {i} has box {cols} = "
            f"{[float(v[i]) for v in (x1, y1, x2, y2)]}; boxes must be normalized "
            "x1<=x2, y1<=y2 in [0, 1]"
        )



_KEYFRAME_KEY = (("video_id", "string"), ("timestamp", "int64"))
_BOX = tuple((c, "float32") for c in BOX_COLUMNS)

KEYFRAMES = TableSchema(
    name="keyframes",
    columns=_KEYFRAME_KEY + (
        ("split", "string"),
        ("video_path", "string"),
        ("time_sec", "float64"),  # keyframe position inside the video file
        ("fps", "float64"),
        ("width", "int64"),
        ("height", "int64"),
    ),
    key=("video_id", "timestamp"),
)

PERSONS = TableSchema(
    name="persons",
    columns=_KEYFRAME_KEY + (("box_id", "int64"),) + _BOX + (
        ("score", "float32"),
        ("source", "string"),
        ("person_id", "int64"),  # -1 where unknown
    ),
    key=("video_id", "timestamp", "box_id"),
    boxes=((BOX_COLUMNS, None),),
)

OBJECTS = TableSchema(
    name="objects",
    columns=PERSONS.columns[:-1] + (("label", "string"),),
    key=("video_id", "timestamp", "box_id"),
    boxes=((BOX_COLUMNS, None),),
)

KEYPOINT_COLUMNS = tuple(
    f"{joint}_{axis}" for joint in COCO_KEYPOINTS for axis in ("x", "y", "score")
)
POSES = TableSchema(
    name="poses",
    columns=_KEYFRAME_KEY + (("box_id", "int64"),)
    + tuple((c, "float32") for c in KEYPOINT_COLUMNS),  # x, y normalized to the frame
    key=("video_id", "timestamp", "box_id"),
)

PART_BOX_COLUMNS = tuple(
    tuple(f"{part}_{c}" for c in BOX_COLUMNS) for part in PART_NAMES
)
PARTS = TableSchema(
    name="parts",
    columns=_KEYFRAME_KEY + (("box_id", "int64"),) + tuple(
        col
        for part, box in zip(PART_NAMES, PART_BOX_COLUMNS)
        for col in tuple((c, "float32") for c in box) + ((f"{part}_valid", "bool"),)
    ),
    key=("video_id", "timestamp", "box_id"),
    boxes=tuple(
        (box, f"{part}_valid") for part, box in zip(PART_NAMES, PART_BOX_COLUMNS)
    ),
)


def write_table(df: pd.DataFrame, schema: TableSchema, path: Path, *,
                record: dict | None = None) -> pd.DataFrame:
    """Validates and writes ``df`` atomically (temp file + rename): a crash
    never leaves a partial table a later stage would read as complete.
    record: the provenance record (``avapipe.provenance``) the file carries."""
    path = Path(path)
    out = schema.validate(df, source=str(path))
    table = pa.Table.from_pandas(out, preserve_index=False)
    if record is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **parquet_metadata(record)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return out


def read_table(schema: TableSchema, path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: {schema.name} table not found; run the stage that writes it"
        )
    return schema.validate(pd.read_parquet(path), source=str(path))
